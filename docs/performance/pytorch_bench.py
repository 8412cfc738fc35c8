#!/usr/bin/env python3
"""The workloads of `cargo xtask bench` in PyTorch + torchattacks, for a side-by-side comparison.

Same models (mlp, small-cnn, madry-cnn, preact-resnet18, wrn-28-10, as Bulwark's zoo defines
them), same inputs (MNIST-shaped models: the 256 real MNIST test images committed under
crates/data/tests/fixtures/mnist, repeated cyclically; CIFAR-shaped models: seeded uniform inputs
in [0, 1] with labels cycling through the classes), same attacks (FGSM, PGD-10 and TRADES' KL
attack with 10 steps, random start: L-inf eps 0.3, step 0.01 on MNIST shapes; eps 8/255, step
2/255 on CIFAR shapes), same workloads (the PGD-AT step trains on PGD-10's examples; the TRADES
step on CE(f(x), y) + 6 KL(f(x) || f(x')) over the clean and adversarial batch), same timing rule
(one untimed warm-up run, then the median of up to REPEATS runs, stopping after TIME_BOX seconds),
for 1 and 2 threads, plus a 4096 x 4096 float32 matrix multiply. Not part of CI. Usage (from any
directory):

    python3 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install torch torchattacks==3.5.1
    /tmp/torch-venv/bin/python docs/performance/pytorch_bench.py --json target/bench/pytorch.json
    /tmp/torch-venv/bin/python docs/performance/pytorch_bench.py --models preact-resnet18 \
        --workloads clean,pgd-10,pgd-at-step,trades-step --batch 64 --threads 2

See docs/performance.md.
"""

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torchattacks

FIXTURE = Path(__file__).resolve().parents[2] / "crates/data/tests/fixtures/mnist"
TIME_BOX = 20.0
# Forward-pass equivalents per image (as Workload::forward_passes in crates/trainer/src/bench.rs).
PASSES = {"clean": 1, "fgsm": 2, "pgd-10": 20, "pgd-at-step": 23, "trades-step": 27,
          "train-step": 3}
# Analytic forward FLOPs per image (bulwark_models::forward_flops).
FLOPS = {"mlp": 537_600, "small-cnn": 1_218_768, "madry-cnn": 27_767_808}
CIFAR = {"preact-resnet18", "wrn-28-10"}
# CIFAR-10's per-channel mean and standard deviation, which the zoo's PreAct-ResNet-18 normalizes
# with (its WideResNet, as RobustBench's, takes inputs in [0, 1] unnormalized).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


def conv3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class Normalize(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; a 1x1 convolution of the pre-activation where the shape changes."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv3(cin, planes, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), conv3(planes, planes)
        self.shortcut = (nn.Conv2d(cin, planes, 1, stride=stride, bias=False)
                         if stride != 1 or cin != planes else None)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        return self.conv2(torch.relu(self.bn2(out))) + shortcut


class PreActResNet18(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.norm, self.conv1 = Normalize(), conv3(3, 64)
        blocks, cin = [], 64
        for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [PreActBlock(cin, planes, stride), PreActBlock(planes, planes, 1)]
            cin = planes
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.linear = nn.BatchNorm2d(512), nn.Linear(512, classes)

    def forward(self, x):
        out = self.blocks(self.conv1(self.norm(x)))
        out = torch.relu(self.bn(out)).mean((2, 3))
        return self.linear(out)


class WideBlock(nn.Module):
    """RobustBench's WideResNet block: BN-ReLU-conv twice; where the width changes, the 1x1
    shortcut convolution takes the first pre-activation."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv3(cin, cout, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), conv3(cout, cout)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if cin != cout else None)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth=28, k=10, classes=10):
        super().__init__()
        n = (depth - 4) // 6
        self.conv1 = conv3(3, 16)
        blocks, cin = [], 16
        for cout, stride in [(16 * k, 1), (32 * k, 2), (64 * k, 2)]:
            for i in range(n):
                blocks.append(WideBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.fc = nn.BatchNorm2d(cin), nn.Linear(cin, classes)

    def forward(self, x):
        out = self.blocks(self.conv1(x))
        return self.fc(torch.relu(self.bn(out)).mean((2, 3)))


def conv_flops(cin, cout, k, out):
    return 2 * cin * cout * k * k * out * out


def resnet_flops(name):
    """bulwark_models::forward_flops for the CIFAR models (convolutions and the linear layer)."""
    if name == "preact-resnet18":
        total, cin = conv_flops(3, 64, 3, 32), 64
        for planes, out in [(64, 32), (128, 16), (256, 8), (512, 4)]:
            for block in range(2):
                total += conv_flops(cin, planes, 3, out)
                total += conv_flops(planes, planes, 3, out)
                if block == 0 and cin != planes:
                    total += conv_flops(cin, planes, 1, out)
                cin = planes
        return total + 2 * 512 * 10
    total, cin = conv_flops(3, 16, 3, 32), 16
    for planes, out in [(160, 32), (320, 16), (640, 8)]:
        for _ in range(4):
            total += conv_flops(cin, planes, 3, out) + conv_flops(planes, planes, 3, out)
            if cin != planes:
                total += conv_flops(cin, planes, 1, out)
            cin = planes
    return total + 2 * 640 * 10


for _name in CIFAR:
    FLOPS[_name] = resnet_flops(_name)


def model(name):
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
            nn.Linear(256, 10))
    if name == "small-cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))
    if name == "madry-cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, 10))
    if name == "preact-resnet18":
        return PreActResNet18()
    if name == "wrn-28-10":
        return WideResNet(28, 10)
    raise ValueError(name)


def uniform_batch(batch, classes=10):
    """Seeded uniform inputs of CIFAR's shape with labels cycling through the classes (timing
    inputs; Bulwark draws its own from SplitMix64, and the time does not depend on the values)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, 32, 32, generator=g), torch.arange(batch) % classes


def mnist_batch(batch):
    raw = gzip.open(FIXTURE / "t10k-images-idx3-ubyte.gz").read()[16:]
    labels = gzip.open(FIXTURE / "t10k-labels-idx1-ubyte.gz").read()[8:]
    n = len(labels)
    x = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(n, 1, 28, 28).float() / 255.0
    y = torch.tensor(list(labels), dtype=torch.long)
    idx = torch.arange(batch) % n
    return x[idx].contiguous(), y[idx].contiguous()


def timed(repeats, run):
    """Runs per second: one untimed warm-up, then up to `repeats` (at least one) timed runs within
    the time box."""
    run()
    rates, began = [], time.perf_counter()
    while len(rates) < max(repeats, 1):
        start = time.perf_counter()
        run()
        rates.append(1.0 / (time.perf_counter() - start))
        if time.perf_counter() - began >= TIME_BOX:
            break
    return rates


def workload(name, net, x, y, eps, alpha):
    fgsm = torchattacks.FGSM(net, eps=eps)
    pgd = torchattacks.PGD(net, eps=eps, alpha=alpha, steps=10, random_start=True)
    # TRADES' inner maximization: KL(f(x) || f(x')) from x + 0.001 N(0, I), signed steps.
    tpgd = torchattacks.TPGD(net, eps=eps, alpha=alpha, steps=10)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    def step(inputs):
        net.train()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(inputs), y)
        loss.backward()
        opt.step()
        net.eval()

    def trades_step():
        adv = tpgd(x, y)
        net.train()
        opt.zero_grad(set_to_none=True)
        clean = net(x)
        kl = nn.functional.kl_div(torch.log_softmax(net(adv), 1), torch.softmax(clean, 1),
                                  reduction="sum") / len(x)
        (loss_fn(clean, y) + 6.0 * kl).backward()
        opt.step()
        net.eval()

    def clean():
        with torch.no_grad():
            net(x)

    return {
        "clean": clean,
        "fgsm": lambda: fgsm(x, y),
        "pgd-10": lambda: pgd(x, y),
        "pgd-at-step": lambda: step(pgd(x, y)),
        "trades-step": trades_step,
        "train-step": lambda: step(x),
    }[name]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--models", default="mlp,small-cnn,madry-cnn")
    p.add_argument("--workloads", default=",".join(PASSES))
    p.add_argument("--matmul", type=int, default=4096)
    p.add_argument("--json")
    a = p.parse_args()
    torch.manual_seed(0)
    mnist = mnist_batch(a.batch)
    cifar = uniform_batch(a.batch)
    rows = []
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}")
    print(f"{'threads':>7} {'model':<10} {'workload':<12} {'median img/s':>12} "
          f"{'range (img/s)':>24} {'repeats':>7} {'GFLOP/s':>8}")
    for name in a.models.split(","):
        model(name)  # unknown names fail before anything is timed
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        if a.matmul:
            m = torch.randn(a.matmul, a.matmul)
            rates = timed(a.repeats, lambda: m @ m)
            flops = 2.0 * a.matmul ** 3
            med = statistics.median(rates)
            rows.append({"threads": threads, "model": "-", "workload": f"matmul-{a.matmul}",
                         "median_per_second": med, "gflops_per_second": med * flops / 1e9})
            print(f"{threads:>7} {'-':<10} {'matmul-' + str(a.matmul):<12} {med:>12.2f} "
                  f"{'':>24} {len(rates):>7} {med * flops / 1e9:>8.1f}")
        for name in a.models.split(","):
            net = model(name).eval()
            x, y = cifar if name in CIFAR else mnist
            eps, alpha = (8 / 255, 2 / 255) if name in CIFAR else (0.3, 0.01)
            for w in a.workloads.split(","):
                run = workload(w, net, x, y, eps, alpha)
                rates = [r * a.batch for r in timed(a.repeats, run)]
                med = statistics.median(rates)
                gflops = med * FLOPS[name] * PASSES[w] / 1e9
                rows.append({"threads": threads, "model": name, "workload": w, "batch": a.batch,
                             "median_images_per_second": med,
                             "min_images_per_second": min(rates),
                             "max_images_per_second": max(rates), "repeats": len(rates),
                             "gflops_per_second": gflops})
                print(f"{threads:>7} {name:<10} {w:<12} {med:>12.1f} "
                      f"{min(rates):>11.1f} - {max(rates):<10.1f} {len(rates):>7} {gflops:>8.1f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=2))
        print(f"results: {a.json}")


if __name__ == "__main__":
    main()

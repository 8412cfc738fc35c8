#!/usr/bin/env python3
"""The workloads of `cargo xtask bench` in PyTorch + torchattacks, for a side-by-side comparison.

Same models (mlp, small-cnn, madry-cnn, as Bulwark's zoo defines them), same batch of real MNIST
test images (the 256 committed under crates/data/tests/fixtures/mnist, repeated cyclically), same
attacks (FGSM and PGD-10 at L-inf eps 0.3, step 0.01, random start), same timing rule (one untimed
warm-up run, then the median of up to REPEATS runs, stopping after TIME_BOX seconds), for 1 and 2 threads,
plus a 4096 x 4096 float32 matrix multiply. Not part of CI. Usage (from the repository root):

    python3 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install torch torchattacks==3.5.1
    /tmp/torch-venv/bin/python docs/performance/pytorch_bench.py --json target/bench/pytorch.json

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
PASSES = {"clean": 1, "fgsm": 2, "pgd-10": 20, "pgd-at-step": 23, "train-step": 3}
# Analytic forward FLOPs per image (bulwark_models::forward_flops).
FLOPS = {"mlp": 537_600, "small-cnn": 1_218_768, "madry-cnn": 27_767_808}


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
    raise ValueError(name)


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


def workload(name, net, x, y):
    fgsm = torchattacks.FGSM(net, eps=0.3)
    pgd = torchattacks.PGD(net, eps=0.3, alpha=0.01, steps=10, random_start=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    def step(inputs):
        net.train()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(inputs), y)
        loss.backward()
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
    x, y = mnist_batch(a.batch)
    rows = []
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}")
    print(f"{'threads':>7} {'model':<10} {'workload':<12} {'median img/s':>12} "
          f"{'range (img/s)':>24} {'repeats':>7} {'GFLOP/s':>8}")
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
            for w in a.workloads.split(","):
                rates = [r * a.batch for r in timed(a.repeats, workload(w, net, x, y))]
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

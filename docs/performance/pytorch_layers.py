#!/usr/bin/env python3
"""The layers of `bulwark bench layers` in PyTorch, for a side-by-side per-layer table.

Every distinct convolution of a zoo model (the shapes of bulwark_models::conv_shapes, listed
below), at the batch given, on random inputs, timed the same way as Bulwark: the forward pass
alone; the input gradient as forward + backward with only the input requiring a gradient, less
the forward median; the weight gradient the same with only the weight. Same timing rule as
pytorch_bench.py (one untimed warm-up, then the median of up to REPEATS runs within a 20 s time
box). Not part of CI. Usage (from any directory):

    /tmp/torch-venv/bin/python docs/performance/pytorch_layers.py --model preact-resnet18 \
        --batch 64 --threads 2 --json torch-layers.json

See docs/performance.md, "CIFAR scale".
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

TIME_BOX = 20.0


def preact_resnet18():
    shapes = [(3, 64, 3, 1, 1, 32, False)]
    cin, side = 64, 32
    for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            s = stride if block == 0 else 1
            shapes.append((cin, planes, 3, s, 1, side, False))
            out = (side - 1) // s + 1
            shapes.append((planes, planes, 3, 1, 1, out, False))
            if block == 0 and cin != planes:
                shapes.append((cin, planes, 1, s, 0, side, False))
            cin, side = planes, out
    return shapes


def wrn(depth):
    n, k = (depth - 4) // 6, 10
    shapes = [(3, 16, 3, 1, 1, 32, False)]
    cin, side = 16, 32
    for planes, stride in [(16 * k, 1), (32 * k, 2), (64 * k, 2)]:
        for block in range(n):
            s = stride if block == 0 else 1
            shapes.append((cin, planes, 3, s, 1, side, False))
            out = (side - 1) // s + 1
            shapes.append((planes, planes, 3, 1, 1, out, False))
            if cin != planes:
                shapes.append((cin, planes, 1, s, 0, side, False))
            cin, side = planes, out
    return shapes


# (in, out, kernel, stride, padding, input side, bias), as bulwark_models' layer lists.
MODELS = {
    "small-cnn": lambda: [(1, 16, 4, 2, 1, 28, True), (16, 32, 4, 2, 1, 14, True)],
    "madry-cnn": lambda: [(1, 32, 5, 1, 2, 28, True), (32, 64, 5, 1, 2, 14, True)],
    "preact-resnet18": preact_resnet18,
    "wrn-28-10": lambda: wrn(28),
}


def distinct(shapes):
    """Distinct shapes in first-use order, with their counts."""
    out = []
    for s in shapes:
        for entry in out:
            if entry[0] == s:
                entry[1] += 1
                break
        else:
            out.append([s, 1])
    return out


def median_seconds(repeats, run):
    run()
    times, began = [], time.perf_counter()
    while len(times) < max(repeats, 1):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        if time.perf_counter() - began >= TIME_BOX:
            break
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="preact-resnet18", choices=sorted(MODELS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = []
    print(f"PyTorch {torch.__version__}, {a.threads} threads, batch {a.batch}")
    print(f"{'layer':<22} {'count':>5} {'direction':<12} {'median ms':>10} {'GFLOP/s':>9}")
    for (cin, cout, k, s, pad, side, bias), count in distinct(MODELS[a.model]()):
        x = torch.rand(a.batch, cin, side, side)
        w = torch.randn(cout, cin, k, k) * 0.05
        b = torch.rand(cout) if bias else None
        out = (side + 2 * pad - k) // s + 1
        flops = 2.0 * cout * cin * k * k * out * out * a.batch

        def forward():
            with torch.no_grad():
                F.conv2d(x, w, b, stride=s, padding=pad)

        def backward(track_input):
            xs = x.detach().requires_grad_(track_input)
            ws = w.detach().requires_grad_(not track_input)
            y = F.conv2d(xs, ws, b, stride=s, padding=pad)
            y.backward(torch.ones_like(y))

        fwd = median_seconds(a.repeats, forward)
        dx = median_seconds(a.repeats, lambda: backward(True)) - fwd
        dw = median_seconds(a.repeats, lambda: backward(False)) - fwd
        name = f"{cin}>{cout} {k}x{k} s{s} {side}x{side}"
        for direction, sec in [("forward", fwd), ("input-grad", dx), ("weight-grad", dw)]:
            gflops = flops / sec / 1e9 if sec > 0 else 0.0
            print(f"{name:<22} {count:>5} {direction:<12} {sec * 1e3:>10.2f} {gflops:>9.1f}")
            rows.append({"model": a.model, "layer": name, "count": count, "direction": direction,
                         "batch": a.batch, "threads": a.threads, "median_ms": sec * 1e3,
                         "flops": flops, "gflops_per_second": gflops})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"results: {a.json}")


if __name__ == "__main__":
    main()

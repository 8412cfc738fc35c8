#!/usr/bin/env python3
"""Bulwark against PyTorch (2 threads) over short rounds of the same workloads.

Reads DIR/new-R.json (`bulwark bench throughput --json`) and DIR/torch-R.json
(`pytorch_bench.py --threads 2 --json`) for R = 1..N, and prints one table row per model and
workload: Bulwark's and PyTorch's median images per second over the rounds, the per-round ratios,
their median, and how many rounds fell below 1.2x.

    python3 docs/performance/short_rounds.py /tmp/bw12 10
"""
import json
import statistics
import sys


def rates(path, threads=None):
    with open(path) as f:
        rows = json.load(f)
    return {(r["model"], r["workload"]): r["median_images_per_second"]
            for r in rows if threads is None or r.get("threads") == threads}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    d, n = sys.argv[1], int(sys.argv[2])
    runs = {}
    for r in range(1, n + 1):
        ours, torch = rates(f"{d}/new-{r}.json"), rates(f"{d}/torch-{r}.json", threads=2)
        for key, rate in ours.items():
            if key in torch:
                runs.setdefault(key, []).append((rate, torch[key]))
    for (model, workload), pairs in runs.items():
        ratios = [a / b for a, b in pairs]
        print(f"| {model} | {workload} | {statistics.median(a for a, _ in pairs):,.0f} "
              f"| {statistics.median(b for _, b in pairs):,.0f} "
              f"| {', '.join(f'{x:.2f}' for x in ratios)} | {statistics.median(ratios):.2f}x "
              f"| {sum(x < 1.2 for x in ratios)} |")


if __name__ == "__main__":
    main()

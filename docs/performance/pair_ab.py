#!/usr/bin/env python3
"""Paired A/B of Bulwark builds on one model and workload, for changes too small for full rounds.

Runs `BIN bench throughput --backend-list flex --models MODEL --workloads WORKLOAD --matmul 0
--repeats 5` for every binary, N times, alternating the order (A B, B A, ...), so that each pair
of runs is seconds apart; this machine's speed drifts between minutes, and a full round
(compare_rounds.py) takes minutes. Prints, per binary, the median images per second and the
per-pair ratios to the first binary with their median.

    python3 docs/performance/pair_ab.py 16 small-cnn pgd-10 /tmp/bulwark-old /tmp/bulwark-new

Run it from the repository root (the benchmark reads the committed MNIST slice from there).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile


def rate(binary, model, workload):
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        subprocess.run(
            [binary, "bench", "throughput", "--backend-list", "flex", "--models", model,
             "--workloads", workload, "--matmul", "0", "--repeats", "5", "--json", path],
            capture_output=True, check=True)
        with open(path) as f:
            return json.load(f)[0]["median_images_per_second"]
    finally:
        os.unlink(path)


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    n, model, workload, bins = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    runs = {b: [] for b in bins}
    for i in range(n):
        for b in bins if i % 2 == 0 else bins[::-1]:
            runs[b].append(rate(b, model, workload))
    base = runs[bins[0]]
    for b in bins:
        ratios = [x / y for x, y in zip(runs[b], base)]
        print(f"{model} {workload} {os.path.basename(b)}: median {statistics.median(runs[b]):,.1f}"
              f" images/s; / {os.path.basename(bins[0])} per pair: median"
              f" {statistics.median(ratios):.3f} [{', '.join(f'{r:.2f}' for r in ratios)}]")


if __name__ == "__main__":
    main()

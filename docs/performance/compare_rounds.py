#!/usr/bin/env python3
"""Summarizes alternating benchmark rounds: Bulwark before and after a change and PyTorch.

Reads DIR/old-N.json and DIR/new-N.json (`bulwark bench throughput --json`) and DIR/torch-N.json
(`pytorch_bench.py --json`) for every round N, and prints a Markdown table: per model and workload
the median over rounds of each side, the median of the per-round ratios new / old, and new / best
PyTorch thread setting per round with its median; then per round the matrix-multiply rates and
madry-cnn PGD-10's share of them. Ratios are taken within a round (the runs of one round are back
to back), because this machine's speed drifts by up to 1.5x between minutes.

    python3 docs/performance/compare_rounds.py /tmp/bw5
"""
import json
import re
import statistics
import sys
from pathlib import Path

NAMES = {"clean": "clean", "fgsm": "FGSM", "pgd-10": "PGD-10", "pgd-at-step": "PGD-AT step",
         "train-step": "training step"}
MODELS = ["mlp", "small-cnn", "madry-cnn"]


def ours(path):
    return {(x["model"], x["workload"]): x for x in json.loads(path.read_text())}


def torch(path):
    out = {}
    for x in json.loads(path.read_text()):
        rate = x.get("median_images_per_second", x.get("median_per_second"))
        out.setdefault((x["model"], x["workload"]), {})[x["threads"]] = (rate, x["gflops_per_second"])
    return out


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def main():
    d = Path(sys.argv[1])
    rounds = sorted(int(re.search(r"-(\d+)\.json$", p.name).group(1)) for p in d.glob("torch-*.json"))
    old = {r: ours(d / f"old-{r}.json") for r in rounds}
    new = {r: ours(d / f"new-{r}.json") for r in rounds}
    tor = {r: torch(d / f"torch-{r}.json") for r in rounds}
    med = statistics.median
    print(f"rounds: {rounds}\n")
    print("| model | workload | before | after | after / before | PyTorch, 1 thread | PyTorch, 2 threads "
          "| after / best PyTorch, per round | median |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in MODELS:
        for w in NAMES:
            k = (m, w)
            if not all(k in old[r] and k in new[r] and k in tor[r] for r in rounds):
                continue
            rate = lambda side, r: side[r][k]["median_images_per_second"]
            best = lambda r: max(v[0] for v in tor[r][k].values())
            per_round = [rate(new, r) / best(r) for r in rounds]
            threads = lambda t: fmt(med(tor[r][k][t][0] for r in rounds)) if all(t in tor[r][k] for r in rounds) else "-"
            print(f"| {m} | {NAMES[w]} | {fmt(med(rate(old, r) for r in rounds))} "
                  f"| {fmt(med(rate(new, r) for r in rounds))} "
                  f"| {med(rate(new, r) / rate(old, r) for r in rounds):.2f}x "
                  f"| {threads(1)} | {threads(2)} "
                  f"| {', '.join(f'{x:.2f}' for x in per_round)} | {med(per_round):.2f}x |")
    print()
    for r in rounds:
        mm = next(k for k in new[r] if k[1].startswith("matmul"))
        flex_mm = new[r][mm]["gflops_per_second"]
        pgd = new[r][("madry-cnn", "pgd-10")]["gflops_per_second"]
        t_mm = tor[r][mm]
        t_pgd = tor[r][("madry-cnn", "pgd-10")]
        t_threads = max(t_mm, key=lambda t: t_mm[t][1])
        print(f"- round {r}: {mm[1]} flex {old[r][mm]['gflops_per_second']:.1f} (before) and {flex_mm:.1f} "
              f"(after) GFLOP/s, PyTorch {', '.join(f'{t_mm[t][1]:.1f} ({t} thr)' for t in sorted(t_mm))}; "
              f"madry-cnn PGD-10 {pgd:.1f} GFLOP/s = {100 * pgd / flex_mm:.1f} % of flex's matmul "
              f"(PyTorch {t_pgd[t_threads][1]:.1f} = {100 * t_pgd[t_threads][1] / t_mm[t_threads][1]:.1f} % of its own)")


if __name__ == "__main__":
    main()

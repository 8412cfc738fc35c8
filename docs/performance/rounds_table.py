#!/usr/bin/env python3
"""Markdown table of alternating throughput rounds without a matrix multiply: Bulwark before and
after a change and PyTorch, matched by round number.

    python3 docs/performance/rounds_table.py 'DIR/old-b64-r*.json' 'DIR/new-b64-r*.json' \
        'DIR/torch-b64-r*.json'

Each argument is a glob of JSON files (`bulwark bench throughput --json`, `pytorch_bench.py
--json`) whose names end in the round number (`...-r3.json`, `...-3.json`). Per model and
workload: the median over rounds of each side's images/s, and the medians of the per-round ratios
after / before and after / PyTorch (its best thread setting in the round): ratios within a round,
whose runs were back to back, because the machine's speed drifts between minutes.
"""
import glob
import json
import re
import statistics
import sys

NAMES = {"clean": "clean", "fgsm": "FGSM", "pgd-10": "PGD-10", "pgd-at-step": "PGD-AT step",
         "trades-step": "TRADES step", "train-step": "training step"}


def by_round(pattern, torch):
    out = {}
    for path in glob.glob(pattern):
        r = int(re.search(r"(\d+)\.json$", path).group(1))
        rows = {}
        for x in json.load(open(path)):
            key = (x["model"], x["workload"])
            rate = x.get("median_images_per_second", x.get("median_per_second"))
            rows[key] = max(rate, rows.get(key, 0.0)) if torch else rate
        out[r] = rows
    return out


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def main():
    old, new, tor = by_round(sys.argv[1], False), by_round(sys.argv[2], False), by_round(sys.argv[3], True)
    rounds = sorted(set(old) & set(new) & set(tor))
    if not rounds:
        raise SystemExit("no round has all three sides")
    med = statistics.median
    print(f"rounds: {rounds}\n")
    print("| model | workload | before | after | after / before, per round | median "
          "| PyTorch | after / PyTorch, per round | median |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in new[rounds[0]]:
        if not all(k in old[r] and k in new[r] and k in tor[r] for r in rounds):
            continue
        up = [new[r][k] / old[r][k] for r in rounds]
        vs = [new[r][k] / tor[r][k] for r in rounds]
        print(f"| {k[0]} | {NAMES.get(k[1], k[1])} | {fmt(med(old[r][k] for r in rounds))} "
              f"| {fmt(med(new[r][k] for r in rounds))} | {' / '.join(f'{x:.2f}' for x in up)} "
              f"| **{med(up):.2f}x** | {fmt(med(tor[r][k] for r in rounds))} "
              f"| {' / '.join(f'{x:.2f}' for x in vs)} | **{med(vs):.2f}x** |")


if __name__ == "__main__":
    main()

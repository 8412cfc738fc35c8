#!/usr/bin/env python3
"""Markdown table of per-layer rounds: `bulwark bench layers` JSON files (one or more builds) and
pytorch_layers.py JSON files, medians over rounds of each layer's milliseconds per direction, the
share of the FMA peak (measured by the Bulwark runs), and the ratio to PyTorch.

    python3 docs/performance/layers_table.py --bulwark old=DIR/old-*.json new=DIR/new-*.json \
        --torch DIR/torch-*.json

Each `--bulwark` argument is NAME=GLOB; the last NAME is compared with PyTorch. The totals weigh
each layer by how many of the model's layers have its shape.
"""

import argparse
import glob
import json
import statistics


def load_bulwark(pattern, backend):
    rounds, peaks = [], []
    for path in sorted(glob.glob(pattern)):
        doc = json.load(open(path))
        rounds.append({(r["layer"], r["direction"]): r for r in doc["layers"]
                       if r["backend"] == backend})
        if doc.get("fma_peak"):
            peaks.append(doc["fma_peak"]["gflops_per_second"])
    return rounds, peaks


def load_torch(pattern):
    return [{(r["layer"], r["direction"]): r for r in json.load(open(p))}
            for p in sorted(glob.glob(pattern))]


def median_ms(rounds, key):
    return statistics.median(r[key]["median_ms"] for r in rounds)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bulwark", nargs="+", required=True)
    p.add_argument("--torch")
    p.add_argument("--backend", default="flex", help="Bulwark rows of this backend only")
    a = p.parse_args()
    builds = []
    peaks = []
    for arg in a.bulwark:
        name, pattern = arg.split("=", 1)
        rounds, pk = load_bulwark(pattern, a.backend)
        if not rounds:
            raise SystemExit(f"no files match {pattern}")
        builds.append((name, rounds))
        peaks += pk
    torch = load_torch(a.torch) if a.torch else []
    peak = statistics.median(peaks) if peaks else None
    last = builds[-1][1]
    keys = list(last[0].keys())
    head = ["layer", "count", "direction"] + [f"{n} ms" for n, _ in builds]
    if peak:
        head.append(f"{builds[-1][0]} % of peak")
    if torch:
        head += ["PyTorch ms", "PyTorch % of peak" if peak else None, f"PyTorch / {builds[-1][0]}"]
        head = [h for h in head if h]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    totals = {n: 0.0 for n, _ in builds}
    totals["torch"] = 0.0
    for key in keys:
        layer, direction = key
        count = last[0][key]["count"]
        flops = last[0][key]["flops"]
        cells = [layer, str(count), direction]
        for n, rounds in builds:
            ms = median_ms(rounds, key)
            totals[n] += count * ms
            cells.append(f"{ms:.2f}")
        ms_last = median_ms(last, key)
        if peak:
            cells.append(f"{100 * flops / (ms_last / 1e3) / 1e9 / peak:.0f} %" if ms_last > 0 else "-")
        if torch:
            tms = median_ms(torch, key)
            totals["torch"] += count * tms
            cells.append(f"{tms:.2f}")
            if peak:
                cells.append(f"{100 * flops / (tms / 1e3) / 1e9 / peak:.0f} %" if tms > 0 else "-")
            cells.append(f"{tms / ms_last:.2f}x" if ms_last > 0 and tms > 0 else "-")
        print("| " + " | ".join(cells) + " |")
    line = ["**all layers**", "", "sum × count"] + [f"**{totals[n]:.1f}**" for n, _ in builds]
    if peak:
        line.append("")
    if torch:
        line += [f"**{totals['torch']:.1f}**"] + ([""] if peak else [])
        ours = totals[builds[-1][0]]
        line.append(f"**{totals['torch'] / ours:.2f}x**" if ours > 0 else "-")
    print("| " + " | ".join(line) + " |")
    if peak:
        print(f"\nFMA peak (median of the Bulwark runs): {peak:.1f} GFLOP/s; rounds: "
              + ", ".join(f"{n} {len(r)}" for n, r in builds)
              + (f", PyTorch {len(torch)}" if torch else ""))


if __name__ == "__main__":
    main()

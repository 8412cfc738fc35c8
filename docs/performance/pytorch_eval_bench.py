#!/usr/bin/env python3
"""The workloads of `bulwark bench eval` in PyTorch + torchattacks, for a side-by-side comparison.

Same model and weights (a zoo model's PyTorch-layout safetensors, from `bulwark export`), same
images (the first LIMIT of the MNIST test set), same threat model (L-inf, eps 0.3). Workloads:

- `torchattacks-standard`: torchattacks' `AutoAttack(version='standard')` as it ships. Its APGD,
  APGD-T and FAB take torchattacks' default of 10 iterations, not the 100 of AutoAttack's paper
  and reference code.
- `paper-standard`: the same four attacks with AutoAttack's published settings: APGD-CE and APGD-T
  (9 target classes) with 100 iterations, FAB-T (9 target classes) with 100 iterations, Square with
  5000 queries; each runs only on the points the earlier ones left robust (torchattacks'
  MultiAttack).
- `apgd-ce`, `apgd-t`, `square`: one attack alone at the paper's settings, on all the images.

For each: seconds (median of REPEATS, no warm-up beyond the first repeat's), and the robust
accuracy (the model's accuracy on the returned examples). Not part of CI. Usage (from the
repository root; see docs/performance.md, "Evaluation"):

    python3 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install torch torchattacks==3.5.1 safetensors
    /tmp/torch-venv/bin/python docs/performance/pytorch_eval_bench.py \
        --weights small-cnn.safetensors --data-dir "$(bulwark data fetch mnist)" --limit 1000
"""

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torchattacks
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pytorch_bench import model  # noqa: E402  (the zoo's definitions, shared)

WORKLOADS = ["torchattacks-standard", "paper-standard", "apgd-ce", "apgd-t", "square"]


def read_idx(d, name):
    """An IDX file of the MNIST test set, gzipped or not (`bulwark data fetch` keeps it plain)."""
    plain = d / name
    return plain.read_bytes() if plain.exists() else gzip.open(d / (name + ".gz")).read()


def mnist_test(data_dir, limit):
    d = Path(data_dir)
    raw = read_idx(d, "t10k-images-idx3-ubyte")[16:]
    labels = read_idx(d, "t10k-labels-idx1-ubyte")[8:]
    n = min(limit, len(labels))
    x = torch.frombuffer(bytearray(raw), dtype=torch.uint8)[: n * 784].view(n, 1, 28, 28)
    return x.float() / 255.0, torch.tensor(list(labels[:n]), dtype=torch.long)


def attack(name, net, eps, seed):
    a = torchattacks
    paper = {
        "apgd-ce": lambda: a.APGD(net, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=seed,
                                  loss="ce"),
        "apgd-t": lambda: a.APGDT(net, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=seed,
                                  n_classes=10),
        "fab-t": lambda: a.FAB(net, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=seed,
                               multi_targeted=True, n_classes=10),
        "square": lambda: a.Square(net, norm="Linf", eps=eps, n_queries=5000, n_restarts=1,
                                   seed=seed),
    }
    if name == "torchattacks-standard":
        return a.AutoAttack(net, norm="Linf", eps=eps, version="standard", n_classes=10,
                            seed=seed)
    if name == "paper-standard":
        return a.MultiAttack([paper[s]() for s in ("apgd-ce", "apgd-t", "fab-t", "square")])
    return paper[name]()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small-cnn")
    p.add_argument("--weights", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    net = model(a.model)
    net.load_state_dict(load_file(a.weights))
    net.eval()
    x, y = mnist_test(a.data_dir, a.limit)
    with torch.no_grad():
        clean = (net(x).argmax(1) == y).float().mean().item() * 100
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"{a.threads} threads, {a.model} on {len(y)} MNIST test images, clean {clean:.2f} %")
    print(f"{'workload':<22} {'median s':>9} {'range (s)':>20} {'img/s':>8} {'robust %':>9}")
    rows = []
    for w in a.workloads.split(","):
        seconds, robust = [], None
        for _ in range(max(a.repeats, 1)):
            atk = attack(w, net, a.eps, a.seed)
            start = time.perf_counter()
            correct = 0
            for i in range(0, len(y), a.batch):
                xb, yb = x[i:i + a.batch], y[i:i + a.batch]
                adv = atk(xb, yb)
                with torch.no_grad():
                    correct += (net(adv).argmax(1) == yb).sum().item()
            seconds.append(time.perf_counter() - start)
            robust = 100.0 * correct / len(y)
        med = statistics.median(seconds)
        rows.append({"workload": w, "images": len(y), "threads": a.threads,
                     "median_seconds": med, "min_seconds": min(seconds),
                     "max_seconds": max(seconds), "repeats": len(seconds),
                     "images_per_second": len(y) / med, "clean_accuracy": clean,
                     "robust_accuracy": robust})
        print(f"{w:<22} {med:>9.2f} {min(seconds):>9.2f} – {max(seconds):<8.2f} "
              f"{len(y) / med:>8.1f} {robust:>9.2f}", flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

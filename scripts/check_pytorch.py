"""Cross-checks Bulwark's weight files against real PyTorch.

    python scripts/check_pytorch.py fixtures crates/models/tests/fixtures/pytorch
        Writes state dicts saved by PyTorch itself (safetensors.torch.save_file) for the small
        zoo models, plus their logits on a fixed input; the Rust test
        crates/models/tests/pytorch_fixtures.rs loads them and must reproduce the logits.

    python scripts/check_pytorch.py fixtures --all /tmp/torch-fixtures
    BULWARK_TORCH_FIXTURES=/tmp/torch-fixtures cargo test -p bulwark-models \
        --test pytorch_fixtures -- --ignored
        The same for every zoo model, madry-cnn and preact-resnet18 included (BatchNorm running
        statistics made non-trivial first), too large to commit.

    python scripts/check_pytorch.py check --bulwark target/debug/bulwark \
        --data-dir ../shared/data/mnist --weights runs/<name>/model.safetensors
        1. exports every zoo model with `bulwark export --init-seed 0` and loads each file into
           the PyTorch definition (torch_zoo.py) with load_state_dict(strict=True);
        2. evaluates the trained small-cnn weights on the 10,000 MNIST test images in PyTorch and
           compares every prediction with `bulwark eval --predictions`.

Needs torch, safetensors and numpy (not needed by the Rust test suite).
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
from torch_zoo import BUILDERS, INPUT_SHAPES, build  # noqa: E402

FIXTURE_MODELS = ["seed-mlp", "seed-net", "mlp", "small-cnn"]


def fixed_input(shape, batch=2):
    """x.flat[i] = ((i * 37) % 101) / 100, the same formula the Rust test uses."""
    n = batch * int(np.prod(shape))
    flat = ((np.arange(n) * 37) % 101).astype(np.float32) / 100.0
    return torch.from_numpy(flat.reshape((batch,) + tuple(shape)))


def cmd_fixtures(out_dir, names):
    os.makedirs(out_dir, exist_ok=True)
    expected = {"torch_version": torch.__version__, "input": "x.flat[i] = ((i * 37) % 101) / 100, batch 2", "models": {}}
    for name in names:
        torch.manual_seed(0)
        model = build(name)
        if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
            # Non-trivial BatchNorm running statistics, so that their mapping is checked too.
            model.train()
            with torch.no_grad():
                for _ in range(3):
                    model(torch.rand((8,) + INPUT_SHAPES[name]))
        model = model.eval()
        path = os.path.join(out_dir, f"{name}.safetensors")
        save_file(model.state_dict(), path, metadata={"format": "pt"})
        with torch.no_grad():
            logits = model(fixed_input(INPUT_SHAPES[name]))
        expected["models"][name] = logits.tolist()
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    with open(os.path.join(out_dir, "expected_logits.json"), "w") as f:
        json.dump(expected, f, indent=1)


def read_idx_gz(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def cmd_check(bulwark, data_dir, weights):
    with tempfile.TemporaryDirectory() as tmp:
        for name in BUILDERS:
            path = os.path.join(tmp, f"{name}.safetensors")
            subprocess.run([bulwark, "export", "--model", name, "--init-seed", "0", "--to", path],
                           check=True, capture_output=True)
            model = build(name)
            result = model.load_state_dict(load_file(path), strict=True)
            print(f"{name:16s} loads into PyTorch with strict load_state_dict: {result}")
        preds_path = os.path.join(tmp, "preds.txt")
        out = subprocess.run([bulwark, "eval", "--model", "small-cnn", "--weights", weights,
                              "--data-dir", data_dir, "--predictions", preds_path],
                             check=True, capture_output=True, text=True)
        print(out.stdout.strip())
        ours = np.loadtxt(preds_path, dtype=np.int64)
    images = read_idx_gz(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx_gz(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    model = build("small-cnn").eval()
    model.load_state_dict(load_file(weights), strict=True)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    with torch.no_grad():
        theirs = torch.cat([model(b).argmax(1) for b in x.split(1000)]).numpy()
    print(f"PyTorch accuracy on {len(labels)} test images: {100 * (theirs == labels).mean():.2f} %")
    print(f"Bulwark accuracy on {len(labels)} test images: {100 * (ours == labels).mean():.2f} %")
    diff = int((theirs != ours).sum())
    print(f"predictions that differ between PyTorch and Bulwark: {diff}")
    return 0 if diff == 0 else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("out_dir")
    f.add_argument("--all", action="store_true", help="every zoo model (large files; not committed)")
    c = sub.add_parser("check")
    c.add_argument("--bulwark", default="target/debug/bulwark")
    c.add_argument("--data-dir", required=True)
    c.add_argument("--weights", required=True)
    a = p.parse_args()
    if a.cmd == "fixtures":
        cmd_fixtures(a.out_dir, list(BUILDERS) if a.all else FIXTURE_MODELS)
        return 0
    return cmd_check(a.bulwark, a.data_dir, a.weights)


if __name__ == "__main__":
    sys.exit(main())

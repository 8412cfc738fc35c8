"""Makes the ONNX example's model: Bulwark's `small-cnn` defined in PyTorch (scripts/torch_zoo.py),
trained briefly by PyTorch itself on MNIST, exported to ONNX, with PyTorch's own logits saved for
the example's test.

    python scripts/export_onnx.py --mnist ~/.cache/bulwark/data/mnist examples/onnx-eval/model

Writes into the output folder:
- small-cnn.onnx          the exported graph with its weights (opset 18, dynamic batch size; torch.export-based exporter);
- small-cnn.safetensors   the same weights as a PyTorch state dict, for Bulwark's native zoo model;
- expected.json           the first 16 MNIST test images (bytes) and PyTorch's logits for them.

Deterministic on one machine (seeded, one thread); PyTorch versions may differ in the last bits.
Needs torch, onnx, safetensors and numpy; MNIST as the four uncompressed or gzipped IDX files.
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from torch_zoo import build  # noqa: E402


def read_idx(folder, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                data = f.read()
            dims = data[3]
            shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    raise SystemExit(f"{name} not found in {folder}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", required=True, help="folder with the MNIST IDX files")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("out")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x_train = torch.from_numpy(read_idx(a.mnist, "train-images-idx3-ubyte").copy()).float().div(255).unsqueeze(1)
    y_train = torch.from_numpy(read_idx(a.mnist, "train-labels-idx1-ubyte").copy()).long()
    x_test = read_idx(a.mnist, "t10k-images-idx3-ubyte")

    model = build("small-cnn")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for epoch in range(a.epochs):
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), 100):
            idx = order[i:i + 100]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: last batch loss {loss.item():.4f}")
    model.eval()

    os.makedirs(a.out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(a.out, "small-cnn.safetensors"))
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(
        model, (dummy,), os.path.join(a.out, "small-cnn.onnx"),
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=18, dynamo=True, external_data=False,
    )
    images = x_test[:16]
    with torch.no_grad():
        logits = model(torch.from_numpy(images.copy()).float().div(255).unsqueeze(1))
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump({
            "torch_version": torch.__version__,
            "images": "the first 16 MNIST test images, 28x28 bytes each, row-major",
            "pixels": images.reshape(16, -1).tolist(),
            "logits": logits.tolist(),
        }, f)
    print("wrote", a.out)


if __name__ == "__main__":
    main()

"""Fixtures for Bulwark's WideResNet, made by PyTorch from scripts/torch_zoo.py's definition.

    python scripts/wrn_fixtures.py crates/models/tests/fixtures/pytorch

Writes `wrn-10-1.safetensors` (a WRN-10-1, small enough to commit, with trained-looking BatchNorm
statistics) and `wrn.json`: its logits on the fixed input of check_pytorch.py, and the state-dict
keys, shapes and trainable parameter counts of WRN-28-10 and WRN-34-10 (the leaderboard's), whose
weights are too large to commit.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from check_pytorch import fixed_input  # noqa: E402
from torch_zoo import WideResNet  # noqa: E402


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    small = WideResNet(depth=10, widen_factor=1)
    small.train()
    with torch.no_grad():
        for _ in range(3):
            small(torch.rand(8, 3, 32, 32))
    small.eval()
    save_file({k: v.contiguous() for k, v in small.state_dict().items()},
              os.path.join(out, "wrn-10-1.safetensors"))
    x = fixed_input((3, 32, 32))
    with torch.no_grad():
        logits = small(x).tolist()
    layouts = {}
    for depth in (28, 34):
        m = WideResNet(depth=depth, widen_factor=10)
        layouts[f"wrn-{depth}-10"] = {
            "keys": [[k, list(v.shape)] for k, v in m.state_dict().items()],
            "trainable_parameters": sum(p.numel() for p in m.parameters()),
        }
    with open(os.path.join(out, "wrn.json"), "w") as f:
        json.dump({"torch_version": torch.__version__,
                   "input": "x.flat[i] = ((i * 37) % 101) / 100, batch 2",
                   "wrn-10-1": logits, "layouts": layouts}, f)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])

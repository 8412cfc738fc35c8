#!/usr/bin/env bash
# The GPU check of docs/backends.md: the wgpu backend on a real GPU. Build first with
#   cargo build -p bulwark-cli --features wgpu
# then run from the repository root:
#   docs/performance/gpu_check.sh [BULWARK_BINARY] [MNIST_DIR] [OUT_DIR]
# (defaults: target/debug/bulwark, ../shared/data/mnist, target/gpu-check). It writes the benchmark
# JSON, the run's report and a log under OUT_DIR.
set -euo pipefail
B=${1:-target/debug/bulwark}
DATA=${2:-../shared/data/mnist}
OUT=${3:-target/gpu-check}
mkdir -p "$OUT"
nvidia-smi -L 2>/dev/null || true
echo "== bench, batch 128"
"$B" bench throughput --backend-list wgpu --models small-cnn,madry-cnn \
  --workloads clean,pgd-10,pgd-at-step --repeats 3 --json "$OUT/wgpu-b128.json"
echo "== bench, batch 1024"
"$B" bench throughput --backend-list wgpu --batch 1024 --models small-cnn,madry-cnn \
  --workloads pgd-10,pgd-at-step --repeats 3 --matmul 0 --json "$OUT/wgpu-b1024.json"
echo "== PGD-AT, small-cnn, 2 epochs on 20,000 training images, final evaluation on 2,000 test images"
"$B" --backend wgpu train --config docs/performance/gpu-smoke.toml --train-limit 21000 \
  --data-dir "$DATA" --runs-dir "$OUT/runs" --name gpu --no-progress

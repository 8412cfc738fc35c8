#!/usr/bin/env bash
# `cargo xtask gpu-check` for a GPU machine without a Rust toolchain: the same steps (the GPU test
# set, the wgpu throughput benchmark, a short PGD-AT training with its evaluation) plus the
# evaluation benchmark, run from binaries built elsewhere, with the GPU's utilisation sampled
# every 100 ms so that the time the attack loops spend outside kernels can be read per step.
#
# Prepare on the build machine with docs/performance/gpu_pack.sh (it builds and packs the five
# binaries, MNIST and the Vulkan loader into .gpu/ and .gl/), carry those two folders beside a
# copy of the checkout, then on the GPU machine:
#   bash docs/performance/gpu_check_prebuilt.sh OUTDIR [SECONDS]
# SECONDS (default 540) bounds the steps: each has its own limit and the last one, the `standard`
# evaluation of all 10,000 test images, gets what is left; the summary and the archive take about
# 10 s more. Every step runs even when an earlier one failed; OUTDIR/logs.tgz holds every log,
# OUTDIR/summary.txt the measured lines; docs/performance/gpu_util.py reads the utilisation per step
# from the unpacked logs.
set -u
out=${1:?usage: gpu_check_prebuilt.sh OUTDIR [SECONDS]}
budget=${2:-540}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
here=$(pwd)
start=$(date +%s)
deadline=$((start + budget))
# Fresh folders: a second run on the same machine must not mix its logs, runs and binaries with
# the first's.
logs=/tmp/bulwark-gpu-logs
bin=/tmp/bulwark-gpu-bin
rm -rf "$logs" "$bin"
mkdir -p "$logs" "$bin"

# The Vulkan loader and glvnd, where the machine lacks them: NVIDIA's Vulkan driver lives in
# libGLX_nvidia.so.0, which needs glvnd's libGLdispatch.so.0; without it the loader reports
# "Could not get 'vkCreateInstance' via 'vk_icdGetInstanceProcAddr'" and finds no adapter (seen on
# an H200 machine). Then the NVIDIA driver's own ICD file.
# Only what is missing: a machine's own loader is never overwritten.
unpacked=0
if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  for f in .gl/libvulkan1_*.deb; do [ -f "$f" ] && dpkg -x "$f" / && unpacked=1; done
fi
if ! ldconfig -p | grep -q 'libGLdispatch.so.0'; then
  for f in .gl/*.deb; do
    case $f in .gl/libvulkan1_*) ;; *) [ -f "$f" ] && dpkg -x "$f" / && unpacked=1 ;; esac
  done
fi
[ "$unpacked" = 1 ] && ldconfig
if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json; do
    # VK_ICD_FILENAMES for loaders older than 1.3.207, which do not read VK_DRIVER_FILES.
    [ -f "$f" ] && export VK_DRIVER_FILES="$f" VK_ICD_FILENAMES="$f" && break
  done
fi
# The binaries travel as one xz archive (with a dictionary larger than one binary, the second and
# later, which share most of their code with the first, cost a fraction of it).
if command -v xz >/dev/null 2>&1; then
  xz -dc .gpu/bin.tar.xz | tar -xf - -C "$bin"
else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' \
    .gpu/bin.tar.xz "$bin"
fi
for b in bulwark-release bulwark-dev bulwark-dev-fusion gpu-tests gpu-tests-fusion; do
  [ -x "$bin/$b" ] || { echo "unpacking .gpu/bin.tar.xz gave no $b: run gpu_pack.sh first" >&2; exit 1; }
done
# The test binary reads its fixtures by the absolute path of the checkout it was built in.
root_at=$(cat .gpu/built-at.txt 2>/dev/null)
if [ -n "$root_at" ] && [ ! -e "$root_at" ]; then
  mkdir -p "$(dirname "$root_at")" && ln -s "$here" "$root_at"
fi

{
  date -u
  echo "commit: $(cat .gpu/commit.txt 2>/dev/null)"
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
  lscpu | grep 'Model name'
  echo "cores: $(nproc)"
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
} > "$logs/machine.txt" 2>&1
cat "$logs/machine.txt"

# utilization.gpu: the share of the sample period in which a kernel was running.
nvidia-smi --query-gpu=timestamp,utilization.gpu,clocks.sm,power.draw,memory.used \
  --format=csv,noheader,nounits -lms 100 > "$logs/util.csv" 2>&1 &
sampler=$!
trap 'kill "$sampler" 2>/dev/null' EXIT

# step NAME LIMIT COMMAND...: runs COMMAND with its output in NAME.log, within LIMIT seconds and
# the overall deadline; records its start, end and exit status in steps.txt.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - $(date +%s)))
  if [ "$left" -lt 15 ]; then
    echo "== $name: skipped, ${left} s left"
    echo "$name skipped" >> "$logs/steps.txt"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (at most $limit s): $*"
  local s e rc
  s=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  e=$(date +%s.%N)
  echo "$name $s $e $rc" >> "$logs/steps.txt"
  awk -v s="$s" -v e="$e" -v rc="$rc" 'BEGIN { printf "   exit %d after %.1f s\n", rc, e - s }'
}

R=$bin/bulwark-release
D=$bin/bulwark-dev
W=crates/trainer/tests/fixtures/main-job/small-cnn.safetensors
F=$bin/bulwark-dev-fusion
step tests 90 bash -c "cd crates/trainer && exec $bin/gpu-tests gpu:: --test-threads 1 --nocapture"
step bench-b128 90 "$R" bench throughput --backend-list wgpu --models small-cnn,madry-cnn \
  --workloads clean,pgd-10,pgd-at-step,train-step --repeats 3 --json "$logs/bench-b128.json"
step bench-b1024 75 "$R" bench throughput --backend-list wgpu --models small-cnn,madry-cnn \
  --workloads clean,pgd-10,pgd-at-step --batch 1024 --repeats 3 --matmul 8192 --json "$logs/bench-b1024.json"
# One workload repeated 20 times: the last 20 repeats' window of util.csv is the attack loop alone.
step busy-madry-pgd10 40 "$R" bench throughput --backend-list wgpu --models madry-cnn \
  --workloads pgd-10 --batch 1024 --repeats 20 --matmul 0
# On an H200 (2026-12-04) `standard` took 41 s on these images, and 100 s for the warm-up on 8
# images plus that run gave no row: the warm-up took about a minute (Square's 5,000 sequential
# queries and the other stages' steps are latency-bound, whatever the batch).
step eval-1000 200 "$R" --backend wgpu bench eval --model small-cnn --weights "$W" \
  --data-dir .gpu/mnist --limit 1000 --batch 1000 --workloads standard,apgd-ce,apgd-t \
  --json "$logs/eval-1000.json"
# burn's kernel fusion and autotuning (off in Bulwark's GPU features: docs/backends.md).
# Only the training test: it is the one that fails with fusion (every method's first-layer weight
# update on the H200), and the whole set spends minutes autotuning the CIFAR models.
step tests-fusion 60 bash -c "cd crates/trainer && exec $bin/gpu-tests-fusion gpu::a_training_step --test-threads 1 --nocapture"
# small-cnn alone: its two rows took 77 s with autotuning on the H200, and madry-cnn's never came.
step bench-fusion-b1024 90 "$F" bench throughput --backend-list wgpu --models small-cnn \
  --workloads pgd-10,pgd-at-step --batch 1024 --repeats 3 --matmul 0 --json "$logs/bench-fusion-b1024.json"
step bench-dev-b1024 45 "$D" bench throughput --backend-list wgpu --models small-cnn,madry-cnn \
  --workloads pgd-10,pgd-at-step --batch 1024 --repeats 3 --matmul 0 --json "$logs/bench-dev-b1024.json"
step train 90 "$R" --backend wgpu train --config docs/performance/gpu-smoke.toml --name gpu-smoke \
  --no-progress --runs-dir "$logs/runs" --train-limit 21000 --data-dir .gpu/mnist
step eval-10000 "$budget" "$R" --backend wgpu eval --model small-cnn --weights "$W" --eps 0.3 \
  --preset standard --batch-size 2000 --data-dir .gpu/mnist --out "$logs/eval-10000" --no-progress

kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null
{
  cat "$logs/machine.txt"
  echo "== steps (name start end exit)"
  cat "$logs/steps.txt"
  # show NAME FILTER...: the lines of NAME.log the summary keeps, or why there are none.
  show() {
    local name=$1
    shift
    echo "== $name"
    if [ -f "$logs/$name.log" ]; then "$@" "$logs/$name.log"; else echo "(not run)"; fi
  }
  for t in tests tests-fusion; do
    show "$t" grep -E '^test |test result| differ|logits|weights|gap|panicked'
  done
  for b in bench-b128 bench-b1024 busy-madry-pgd10 bench-fusion-b1024 bench-dev-b1024; do
    show "$b" grep -E '^(backend|wgpu)'
  done
  show eval-1000 tail -8
  show train tail -12
  show eval-10000 tail -25
} > "$out/summary.txt" 2>&1
tar czf "$out/logs.tgz" -C "$logs" .
cat "$out/summary.txt"
echo "whole run: $(( $(date +%s) - start )) s"

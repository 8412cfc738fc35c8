#!/usr/bin/env bash
# Builds and packs what docs/performance/gpu_check_prebuilt.sh runs on a GPU machine that has no
# Rust toolchain, into .gpu/ and .gl/ at the repository root (both ignored through
# .git/info/exclude, which this script extends). On a 2-core machine the builds take about 45
# minutes from a warm dev build (the release build of the GPU stack alone about 25) and the packing
# about 5; the packed binaries are about 43 MB, the MNIST files 11 MB.
#
#   bash docs/performance/gpu_pack.sh [MNIST_DIR]
#
# MNIST_DIR holds MNIST's four .gz files (default: whatever `bulwark data fetch mnist` finds).
# Five binaries, each stripped:
#   bulwark-release     cargo build --release -p bulwark-cli --features bulwark-cli/wgpu
#   bulwark-dev         the same in the dev profile (the GPU stack's host code at opt-level 1)
#   gpu-tests           the trainer's integration tests as CI builds them (the GPU test set)
#   bulwark-dev-fusion  the dev bulwark with burn's kernel fusion and autotuning turned back on
#   gpu-tests-fusion    the GPU test set with fusion and autotuning
# The Vulkan loader's packages (for a GPU image without it) come from Debian through apt-get.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
mkdir -p .gpu .gl
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for p in /.gpu/ /.gl/; do
  grep -qx "$p" "$exclude" 2>/dev/null || echo "$p" >> "$exclude"
done

# The integration-test executable that holds the GPU test set: `cargo test --no-run` builds one
# per workspace member, all named `integration`; the trainer's is the one that lists gpu:: tests.
# cargo's messages go to stdout as JSON, its progress and errors to stderr (shown).
trainer_tests() {
  local exe
  for exe in $(cargo test "$@" --test integration --no-run --message-format=json \
      | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "integration":
        print(m["executable"])'); do
    # grep without -q reads the whole list: under pipefail an early exit would fail the pipe.
    if "$exe" --list 2>/dev/null | grep '^gpu::' >/dev/null; then
      echo "$exe"
      return
    fi
  done
  echo "no integration test binary with gpu:: tests" >&2
  return 1
}

cargo build --release -p bulwark-cli --features bulwark-cli/wgpu
cp target/release/bulwark .gpu/bulwark-release
cargo build -p bulwark-cli --features bulwark-cli/wgpu
cp target/debug/bulwark .gpu/bulwark-dev
cp "$(trainer_tests --workspace --features bulwark-cli/wgpu)" .gpu/gpu-tests
cargo build -p bulwark-cli --features bulwark-cli/wgpu,burn/fusion,burn/autotune
cp target/debug/bulwark .gpu/bulwark-dev-fusion
cp "$(trainer_tests -p bulwark-trainer --features wgpu,burn/fusion,burn/autotune)" .gpu/gpu-tests-fusion

cd .gpu
bins=(bulwark-release bulwark-dev gpu-tests bulwark-dev-fusion gpu-tests-fusion)
strip "${bins[@]}"
# A dictionary larger than one binary: the later binaries share most of their code with the first.
# (About 5.5 GiB of memory to compress, 512 MiB to decompress.)
tar -cf - "${bins[@]}" | xz -9 -T1 --lzma2=preset=9,dict=512MiB > bin.tar.xz
rm "${bins[@]}"
cd "$root"

mnist=${1:-$(target/release/bulwark data fetch mnist | tail -1)}
mkdir -p .gpu/mnist
# The cache holds the files decompressed; the checksums are of the decompressed bytes
# (docs/data.md), so gzipping them again changes nothing the loader checks.
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -f "$mnist/$f.gz" ]; then
    cp "$mnist/$f.gz" .gpu/mnist/
  else
    gzip -9 -c "$mnist/$f" > ".gpu/mnist/$f.gz"
  fi
done
git rev-parse HEAD > .gpu/commit.txt
echo "$root" > .gpu/built-at.txt

o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
# shellcheck disable=SC2086
apt-get $o update -qq
# shellcheck disable=SC2086
(cd .gl && rm -f ./*.deb && apt-get $o download libvulkan1 libglvnd0 libegl1 libglx0 libgl1 libopengl0 libgles2)
du -sh .gpu/bin.tar.xz .gpu/mnist .gl
echo "carry: .gpu/bin.tar.xz .gpu/mnist .gpu/commit.txt .gpu/built-at.txt .gl"

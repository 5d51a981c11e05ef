#!/usr/bin/env bash
# bundle.sh — for GPU machines that cannot build regrad (this workplace lends bare CUDA
# images: no Debian packages, no network): builds regrad and test_cuda here with the CUDA
# backend and without MPI, and gathers into build-gpu/carry/ what they need there: the
# programs (regrad, test_cuda, test_device_gpu, ckpt_diff), their shared libraries but the C
# library's own (xz, ~12 MB), and Fashion-MNIST unpacked and packed with xz (~25 MB against
# its gzip files' 30: a run carries 64 MiB with the working tree): a cut (8,192 training
# images, 1,024 test) and the whole; and test_device_random.sh's networks.
# bench/gpu/check.sh runs from build-gpu/carry/ when it finds it, built from the sources of
# the tree it runs in, and unpacks both archives.
# Usage: bench/gpu/bundle.sh            (from the repository root, after tools/setup-deps.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DREGRAD_CUDA=ON -DREGRAD_MPI=OFF >/dev/null
cmake --build build-gpu -j "$(nproc)" --target regrad test_cuda test_device_gpu ckpt_diff >/dev/null
carry=build-gpu/carry
rm -rf "$carry" && mkdir -p "$carry/lib"
bench/gpu/sources-digest.sh >"$carry/sources" # what check.sh compares with its tree's
cp build-gpu/regrad build-gpu/tests/test_cuda build-gpu/tests/test_device_gpu build-gpu/tests/ckpt_diff "$carry/"
ldd "$carry/regrad" "$carry/test_cuda" "$carry/test_device_gpu" | awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/(libc|libm|libdl|libpthread|librt|libresolv|libgcc_s|libstdc\+\+)\.so' |
  while read -r lib; do cp -L "$lib" "$carry/lib/"; done
tar -C "$carry" -cJf "$carry/lib.tar.xz" lib && rm -rf "${carry:?}/lib"
# the first images of each split, enough for the checks, and the whole of Fashion-MNIST for
# GRA's (its accuracy after an epoch), unpacked: xz packs them smaller than gzip
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
mkdir -p "$data/fashion-mnist" "$data/fashion-mnist-full"
python3 - /usr/share/datasets/fashion-mnist "$data" <<'EOF'
import gzip, os, sys
for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
    head, item = (16, 784) if "images" in name else (8, 1)
    count = 8192 if name.startswith("train") else 1024
    with gzip.open(os.path.join(sys.argv[1], name + ".gz")) as f:
        whole = f.read()
    with open(os.path.join(sys.argv[2], "fashion-mnist-full", name), "wb") as f:
        f.write(whole)
    cut = bytearray(whole[:head + count * item])
    cut[4:8] = count.to_bytes(4, "big")
    with open(os.path.join(sys.argv[2], "fashion-mnist", name), "wb") as f:
        f.write(cut)
EOF
XZ_OPT=-9 tar -C "$data" -cJf "$carry/data.tar.xz" fashion-mnist fashion-mnist-full
# the random networks of tests/test_device_random.sh, made here (a GPU machine may have no
# onnx for Python): seeds 1 to 24, and 1 to 16 of the vanishing ones, a few KiB each
for seed in $(seq 1 24); do /usr/bin/python3 tests/random_nets.py "$seed" "$carry/random_nets/$seed"; done
for seed in $(seq 1 16); do
  /usr/bin/python3 tests/random_nets.py "$seed" "$carry/random_nets_vanishing/$seed" vanishing
done
# what a run carries: this tree's files and the carry, under the device's 64 MiB
tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb | tail -1 | cut -f1)
total=$((tree + $(du -sb "$carry" | cut -f1)))
if [ "$total" -gt $((64 * 1024 * 1024)) ]; then
  echo "bundle.sh: the tree and $carry come to $((total / 1048576)) MiB, over the 64 MiB a device run carries" >&2
  exit 1
fi
echo "$carry: $(du -sh "$carry" | cut -f1), $((total / 1048576)) MiB with the tree (64 at most)"

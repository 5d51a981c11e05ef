#!/usr/bin/env bash
# bundle.sh — for GPU machines that cannot build regrad (this workplace lends bare CUDA
# images: no Debian packages, no network): builds regrad and test_cuda here with the CUDA
# backend and without MPI, and gathers into build-gpu/carry/ what they need there: the
# programs (regrad, test_cuda, test_device_gpu, ckpt_diff), their shared libraries but the C
# library's own (xz, ~12 MB) and a cut of Fashion-MNIST (8,192 training images, 1,024 test).  bench/gpu/check.sh runs from build-gpu/carry/ when it finds it.
# Usage: bench/gpu/bundle.sh            (from the repository root, after tools/setup-deps.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DREGRAD_CUDA=ON -DREGRAD_MPI=OFF >/dev/null
cmake --build build-gpu -j "$(nproc)" --target regrad test_cuda test_device_gpu ckpt_diff >/dev/null
carry=build-gpu/carry
rm -rf "$carry" && mkdir -p "$carry/lib" "$carry/fashion-mnist"
cp build-gpu/regrad build-gpu/tests/test_cuda build-gpu/tests/test_device_gpu build-gpu/tests/ckpt_diff "$carry/"
ldd "$carry/regrad" "$carry/test_cuda" "$carry/test_device_gpu" | awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/(libc|libm|libdl|libpthread|librt|libresolv|libgcc_s|libstdc\+\+)\.so' |
  while read -r lib; do cp -L "$lib" "$carry/lib/"; done
tar -C "$carry" -cJf "$carry/lib.tar.xz" lib && rm -rf "$carry/lib"
# the first images of each split: enough for the checks, small enough to travel
python3 - /usr/share/datasets/fashion-mnist "$carry/fashion-mnist" <<'EOF'
import gzip, os, sys
for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
    head, item = (16, 784) if "images" in name else (8, 1)
    count = 8192 if name.startswith("train") else 1024
    with gzip.open(os.path.join(sys.argv[1], name + ".gz")) as f:
        b = bytearray(f.read(head + count * item))
    b[4:8] = count.to_bytes(4, "big")
    with gzip.open(os.path.join(sys.argv[2], name + ".gz"), "wb") as f:
        f.write(b)
EOF
# and the whole of Fashion-MNIST for GRA's check (its accuracy after an epoch)
mkdir -p "$carry/fashion-mnist-full" && cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$carry/fashion-mnist-full/"
du -sh "$carry"

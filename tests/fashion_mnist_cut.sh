#!/usr/bin/env bash
# fashion_mnist_cut.sh — the first TRAIN training and TEST test samples of Fashion-MNIST as IDX
# files in DIR, for tests that train on the device emulation or under the sanitizers, where
# evaluating on all 10,000 test images would take most of the test's time.  Prints the
# `--data` spec that reads them.
# Usage: fashion_mnist_cut.sh DIR TRAIN TEST
set -euo pipefail
dir=$1 train=$2 test=$3
src=${REGRAD_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
mkdir -p "$dir"
# cut NAME COUNT HEADER_BYTES ITEM_BYTES: the header with COUNT in place of the file's count
cut_idx() {
  local out="$dir/$1" n=$2
  { zcat "$src/$1.gz" || true; } | head -c $(($3 + n * $4)) >"$out"
  [ "$(stat -c %s "$out")" = $(($3 + n * $4)) ] || { echo "fashion_mnist_cut: $src/$1.gz has fewer than $n samples" >&2; exit 1; }
  printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))" |
    dd of="$out" bs=1 seek=4 count=4 conv=notrunc status=none
}
cut_idx train-images-idx3-ubyte "$train" 16 784
cut_idx train-labels-idx1-ubyte "$train" 8 1
cut_idx t10k-images-idx3-ubyte "$test" 16 784
cut_idx t10k-labels-idx1-ubyte "$test" 8 1
echo "idx:$dir/train-images-idx3-ubyte,$dir/train-labels-idx1-ubyte,$dir/t10k-images-idx3-ubyte,$dir/t10k-labels-idx1-ubyte"

#!/usr/bin/env bash
# run.sh — builds one libFuzzer target with clang (ASan + UBSan) and runs it briefly from
# the committed seeds.  Usage: tests/fuzz/run.sh TARGET SECONDS [BUILD_DIR]
# TARGET is image (decoding) or safetensors (the checkpoint reader).  Exit 0: no crash found.
set -euo pipefail
target=$1 secs=$2 out=${3:-build/fuzz}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang >/dev/null || { echo "fuzz: clang not installed (apt-get install clang)"; exit 1; }
mkdir -p "$out/corpus-$target"
case $target in
  image) srcs="src/data/image.c src/core/status.c"; seeds=tests/fixtures/images ;;
  safetensors) srcs="src/io/safetensors.c src/core/status.c"; seeds=tests/fuzz/seeds-safetensors ;;
  *) echo "fuzz: unknown target '$target'"; exit 2 ;;
esac
cflags="-g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# shellcheck disable=SC2086
(cd "$root" && clang $cflags -Iinclude -Isrc $srcs "tests/fuzz/fuzz_$target.c" \
    -ljpeg -lpng -lcjson -lz -lm -o "$out/fuzz_$target")
cp "$root/$seeds"/* "$out/corpus-$target/" 2>/dev/null || true
"$out/fuzz_$target" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    "$out/corpus-$target" 2>&1 | tail -3

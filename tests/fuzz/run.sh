#!/usr/bin/env bash
# run.sh — builds one libFuzzer target with clang (ASan + UBSan) against the whole library
# (compiled once into BUILD_DIR/libregrad_fuzz.a, under a lock) and runs it for SECONDS from
# the committed seeds in tests/fuzz/seeds-TARGET.  Exit 0: no crash found; a crash leaves
# its input in BUILD_DIR (crash-*) to add to the seeds as a regression case.
# Usage: tests/fuzz/run.sh TARGET SECONDS [BUILD_DIR]
#   TARGET: image, safetensors, checkpoint, idx, spec, values, keras, keras_model, onnx
#   (one fuzz_TARGET.c each)
set -euo pipefail
target=$1 secs=$2 out=${3:-build/fuzz}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang >/dev/null || { echo "fuzz: clang not installed (apt-get install clang)"; exit 1; }
[ -f "$root/tests/fuzz/fuzz_$target.c" ] || { echo "fuzz: unknown target '$target'"; exit 2; }
mkdir -p "$out/obj" "$out/corpus-$target"
out=$(cd "$out" && pwd)
cflags="-g -O1 -std=gnu11 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Wno-unknown-pragmas"
includes="-I$root/include -I$root/src -I$root/cli -I/usr/include/x86_64-linux-gnu/openblas-pthread -I/usr/include/hdf5/serial -I$out/onnx"
(
  flock 9
  lib=$out/libregrad_fuzz.a
  if [ ! -f "$lib" ] || [ -n "$(find "$root/src" "$root/include" "$root/cli/common.c" "$root/cli/options.c" -newer "$lib" -name '*.[ch]' | head -1)" ]; then
    rm -f "$out"/obj/*.o
    mkdir -p "$out/onnx" # the ONNX reader's protobuf code, generated as CMake does
    protoc-c --c_out="$out/onnx" --proto_path=/usr/include/onnx /usr/include/onnx/onnx.proto
    # shellcheck disable=SC2086
    find "$root/src" -name '*.c' | xargs -P "$(nproc)" -I{} sh -c \
      'clang '"$cflags $includes"' -c "$1" -o "'"$out"'/obj/$(echo "$1" | tr / _).o"' _ {}
    clang $cflags $includes -w -c "$out/onnx/onnx.pb-c.c" -o "$out/obj/onnx_pb.o"
    clang $cflags $includes -c "$root/cli/common.c" -o "$out/obj/cli_common.o"
    clang $cflags $includes -c "$root/cli/options.c" -o "$out/obj/cli_options.o"
    ar rcs "$lib" "$out"/obj/*.o
  fi
) 9>"$out/.lock"
# shellcheck disable=SC2086
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $includes \
  "$root/tests/fuzz/fuzz_$target.c" "$out/libregrad_fuzz.a" \
  -lopenblas -lcjson -lprotobuf-c -ljpeg -lpng -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -lz -lm -lpthread \
  -o "$out/fuzz_$target"
cp "$root/tests/fuzz/seeds-$target"/* "$out/corpus-$target/" 2>/dev/null || true
cd "$out"
"./fuzz_$target" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "corpus-$target" 2>&1 | grep -E "^(stat::number_of_executed_units|Done|==|SUMMARY)" | tail -4

#!/usr/bin/env bash
# check.sh — the one script to run on a GPU machine (device time is short: prepare on the
# CPU, run this once, read it, fix, run again).  Builds regrad with the CUDA backend in
# build-gpu/, runs the GPU tests (the kernels against the CPU: test_cuda), the CLI's
# device check and onnxruntime against regrad on every zoo model's ONNX export (that
# machine's Python has onnxruntime), and prints one summary table.  Takes about two minutes on 16 cores.
# Usage: bench/gpu/check.sh            (from the repository root)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
log=${REGRAD_CHECK_LOGS:-$(mktemp -d)}
mkdir -p "$log"
row() { printf '%-34s %-6s %s\n' "$1" "$2" "$3"; }
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$log/gpu" 2>&1
else echo "none (no nvidia-smi)" >"$log/gpu"; fi
t0=$(date +%s)
carry=build-gpu/carry data=fashion-mnist
if [ -x "$carry/regrad" ]; then
  mkdir -p /tmp/regrad-carry && tar -C /tmp/regrad-carry -xJf "$carry/lib.tar.xz"
  export LD_LIBRARY_PATH=/tmp/regrad-carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  regrad=$carry/regrad test_cuda=$carry/test_cuda data=fashion-mnist:$carry/fashion-mnist build=ok how=carried
elif cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DREGRAD_CUDA=ON >"$log/cmake" 2>&1 &&
     cmake --build build-gpu -j "$(nproc)" >"$log/build" 2>&1; then
  regrad=build-gpu/regrad test_cuda=build-gpu/tests/test_cuda build=ok how=built
else build=FAIL how=built; fi
t1=$(date +%s)
tests=SKIP
if [ "$build" = ok ]; then
  "$test_cuda" >"$log/ctest" 2>&1
  case $? in 0) tests=ok ;; 77) tests=SKIP ;; *) tests=FAIL ;; esac
  "$regrad" train --data "$data" --device cuda --limit 256 >"$log/device" 2>&1
  python3 tools/onnxruntime_check.py "$regrad" --data "$data" >"$log/ortcheck" 2>&1
  case $? in 0) ort=ok ;; 77) ort=SKIP ;; *) ort=FAIL ;; esac
fi
echo "== regrad GPU check ($(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null))"
row "GPU" "" "$(head -1 "$log/gpu")"
row "build (REGRAD_CUDA=ON)" "$build" "$how, $((t1 - t0)) s"
row "test_cuda (kernels vs CPU)" "$tests" "$(grep -E "PASSED|FAILED|SKIP" "$log/ctest" 2>/dev/null | head -1)"
row "regrad train --device cuda" "" "$(tail -1 "$log/device" 2>/dev/null)"
row "onnxruntime vs regrad (zoo, ONNX)" "${ort:-SKIP}" "$(tail -1 "$log/ortcheck" 2>/dev/null)"
if [ "$build" != ok ]; then echo "--- build"; tail -30 "$log/build" "$log/cmake"; fi
if [ "$tests" != ok ] && [ -f "$log/ctest" ]; then echo "--- test_cuda"; tail -60 "$log/ctest"; fi
if [ "${ort:-}" = FAIL ]; then echo "--- onnxruntime_check"; tail -30 "$log/ortcheck"; fi
[ -n "${REGRAD_CHECK_LOGS:-}" ] || rm -rf "$log"
[ "$build" = ok ] && [ "$tests" = ok ]

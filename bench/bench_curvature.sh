#!/usr/bin/env bash
# bench_curvature.sh — regrad's curvature products against PyTorch's, side by side in one run:
# the same 20-layer sigmoid MLP (width 128, PyTorch's default init) on one batch of 128, one
# thread each; the median time of a gradient, a Gauss-Newton product G v and an exact
# Hessian product H v, and the ratios.  (The two nets' weights differ: the figures compare
# costs, not values; values are compared in tests/test_golden.c.)
# Usage: bench/bench_curvature.sh [ROUNDS]   (default 9; build first: make build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-9}
EX=${REGRAD_EXAMPLES:-build/examples}/curvature
[ -x "$EX" ] || { echo "bench: build regrad first (make build)"; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "bench: needs python3-torch (apt-get install python3-torch)"; exit 1; }
ours=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$EX" mlp:depth=20,width=128,act=sigmoid,init=torch 128 "$ROUNDS" | head -1)
theirs=$(/usr/bin/python3 bench/torch_curvature.py 128 "$ROUNDS" 1 | head -1)
echo "regrad:  $ours"
echo "PyTorch: $theirs"
ms() { sed -E "s/.*$1 ([0-9.]+) ms.*/\1/" <<<"$2"; }
for what in gradient "G v" "H v"; do
  awk -v w="$what" -v a="$(ms "$what" "$ours")" -v b="$(ms "$what" "$theirs")" \
    'BEGIN { printf "%-8s regrad %.2f ms, PyTorch %.2f ms: regrad %.2fx faster\n", w, a, b, b / a }'
done

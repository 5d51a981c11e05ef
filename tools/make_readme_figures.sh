#!/usr/bin/env bash
# make_readme_figures.sh — the README's gradient-flow pictures, made by regrad itself: a
# 20-layer sigmoid MLP (PyTorch's default init, Adam, 10,000 Fashion-MNIST images, one
# epoch) trained with GRA off and on; each report's heat map is cut out as an SVG.
# Usage: tools/make_readme_figures.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/regrad
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p docs/images
for mode in off auto; do
  "$BIN" train --model mlp:depth=20,width=128,act=sigmoid,init=torch --limit 10000 --seed 1 \
    --repair "$mode" --monitor-every 2 --quiet --report "$tmp/$mode.html" >/dev/null
  name=$([ "$mode" = off ] && echo gra-off || echo gra-on)
  # the first <svg> after the "Gradient flow" heading
  awk '/<h2>Gradient flow/ {f = 1} f && /<svg/ {p = 1} p' "$tmp/$mode.html" |
    sed -n 's/.*\(<svg.*<\/svg>\).*/\1/p' | sed -n 1p |
    sed 's|role="img">|role="img"><style>text{font:12px sans-serif;fill:#222}.t{font-weight:600;font-size:14px}.yl{text-anchor:end}.xl{text-anchor:middle}.al{text-anchor:middle;fill:#444}.lg{fill:#222}</style><rect width="100%" height="100%" fill="#fff"/>|' \
    > "docs/images/gradient-flow-$name.svg"
  echo "wrote docs/images/gradient-flow-$name.svg"
done

#!/usr/bin/env bash
# bench_images.sh — the image loader against PIL, side by side in one run, one core each:
# read + decode + resize to 224x224 + random flip + float CHW output, over a generated
# folder of ~500x375 JPEGs (bench/make_jpeg_folder.py).  Alternating rounds, medians and
# the ratio printed.  Then, end to end: training `cnn` for one epoch from the PNG export of
# Fashion-MNIST against training from the IDX files.
# Usage: bench/bench_images.sh [COUNT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${REGRAD_BIN:-build/regrad}
COUNT=${1:-600}
ROUNDS=${2:-3}
[ -x "$BIN" ] || { echo "bench: build regrad first (make build)"; exit 1; }
/usr/bin/python3 -c "import PIL, numpy" 2>/dev/null || { echo "bench: needs python3-pil and python3-numpy"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "bench: writing $COUNT JPEGs of 500x375"
/usr/bin/python3 bench/make_jpeg_folder.py "$tmp/jpeg" "$COUNT"
du -sh "$tmp/jpeg" | awk '{print "bench: folder size " $1}'
cat "$tmp"/jpeg/*/* > /dev/null # warm the page cache for both
for r in $(seq "$ROUNDS"); do
  "$BIN" bench-data --data "$tmp/jpeg" --input-size 224x224 --augment flip --workers 1 \
    | sed 's/.*: \([0-9.]*\) images\/s.*/\1/' >> "$tmp/rg"
  /usr/bin/python3 bench/pil_loader.py "$tmp/jpeg" 224 | sed 's/.*: \([0-9.]*\) images\/s.*/\1/' >> "$tmp/pil"
done
rg=$(median < "$tmp/rg"); pil=$(median < "$tmp/pil")
printf "loader, one core, 500x375 JPEG -> 224x224 + flip: regrad %.1f img/s, PIL %.1f img/s, ratio %.2fx\n" \
  "$rg" "$pil" "$(echo "$rg / $pil" | bc -l)"

echo "bench: exporting Fashion-MNIST as PNG folders"
"$BIN" export-images --out "$tmp/png" >/dev/null
for r in $(seq "$ROUNDS"); do
  "$BIN" train --model cnn --epochs 1 --seed "$r" --quiet --metrics "$tmp/idx.jsonl" >/dev/null
  sed -n 's/.*"images_per_sec":\([0-9.e+]*\).*/\1/p' "$tmp/idx.jsonl" >> "$tmp/idx"
  "$BIN" train --model cnn --epochs 1 --seed "$r" --quiet --data "$tmp/png" --input-size 28x28 \
    --channels 1 --metrics "$tmp/png.jsonl" >/dev/null
  sed -n 's/.*"images_per_sec":\([0-9.e+]*\).*/\1/p' "$tmp/png.jsonl" >> "$tmp/pngr"
done
idx=$(median < "$tmp/idx"); png=$(median < "$tmp/pngr")
printf "training cnn, 1 epoch: IDX %.0f img/s, PNG folder %.0f img/s, PNG/IDX %.3f\n" \
  "$idx" "$png" "$(echo "$png / $idx" | bc -l)"

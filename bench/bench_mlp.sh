#!/usr/bin/env bash
# bench_mlp.sh — regrad against PyTorch, side by side in one run: MLP 784-256-256-10 ReLU,
# batch 128, Adam 1e-3, one epoch of Fashion-MNIST, 2 threads each.  Prints both training
# throughputs, test accuracies, peak RSS (from /usr/bin/time) and the ratios.
# Usage: bench/bench_mlp.sh [ROUNDS]   (default 3 alternating rounds; the median is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${REGRAD_BIN:-build/regrad}
ROUNDS=${1:-3}
THREADS=${THREADS:-2}
[ -x "$BIN" ] || { echo "bench: build regrad first (make build)"; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "bench: needs python3-torch (apt-get install python3-torch)"; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (apt-get install time)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for r in $(seq "$ROUNDS"); do
  /usr/bin/time -f "%M" -o "$tmp/rg_rss" "$BIN" train --model mlp:depth=2,width=256 --epochs 1 \
      --batch 128 --optimizer adam --lr 0.001 --threads "$THREADS" --seed "$r" --quiet \
      --metrics "$tmp/rg.jsonl" >/dev/null
  /usr/bin/python3 -c 'import json,sys; e=[json.loads(l) for l in open(sys.argv[1])]; print(e[0]["images_per_sec"], e[-1]["test_acc"])' "$tmp/rg.jsonl" >> "$tmp/rg"
  cat "$tmp/rg_rss" >> "$tmp/rg_rss_all"
  /usr/bin/time -f "%M" -o "$tmp/pt_rss" /usr/bin/python3 bench/torch_mlp.py --threads "$THREADS" > "$tmp/pt.json"
  /usr/bin/python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print(e["images_per_sec"], e["test_acc"])' "$tmp/pt.json" >> "$tmp/pt"
  cat "$tmp/pt_rss" >> "$tmp/pt_rss_all"
done
rg_ips=$(cut -d' ' -f1 "$tmp/rg" | median); pt_ips=$(cut -d' ' -f1 "$tmp/pt" | median)
rg_acc=$(cut -d' ' -f2 "$tmp/rg" | median); pt_acc=$(cut -d' ' -f2 "$tmp/pt" | median)
rg_rss=$(median < "$tmp/rg_rss_all"); pt_rss=$(median < "$tmp/pt_rss_all")
printf 'MLP 784-256-256-10 relu, batch 128, adam, 1 epoch, %s threads, median of %s rounds\n' "$THREADS" "$ROUNDS"
printf '%-8s %14s %10s %14s\n' "" "train img/s" "test acc" "peak RSS MiB"
printf '%-8s %14.0f %10.4f %14.1f\n' regrad "$rg_ips" "$rg_acc" "$(echo "$rg_rss/1024" | bc -l)"
printf '%-8s %14.0f %10.4f %14.1f\n' pytorch "$pt_ips" "$pt_acc" "$(echo "$pt_rss/1024" | bc -l)"
printf 'speed ratio regrad/pytorch: %.2fx   memory ratio regrad/pytorch: %.2f\n' \
  "$(echo "$rg_ips/$pt_ips" | bc -l)" "$(echo "$rg_rss/$pt_rss" | bc -l)"

#!/usr/bin/env bash
# bench_train.sh — regrad against PyTorch, side by side in one run: the same network,
# batch 128, Adam 1e-3, Fashion-MNIST, 2 threads each, alternating rounds.  Prints both
# training throughputs, test accuracies, peak RSS (from /usr/bin/time) and the ratios, once
# per instruction-set mode in ISA (default "avx2 native"; see bench/isa.sh).
# Usage: [ISA="avx2 native"] bench/bench_train.sh [MODEL] [ROUNDS] [LIMIT]
#   MODEL  mlp (default; regrad mlp:depth=2,width=256), cnn or resnet20v2
#   ROUNDS alternating rounds, median reported (default 3)
#   LIMIT  train on the first LIMIT images only (default: all 60000)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${REGRAD_BIN:-build/regrad}
MODEL=${1:-mlp}
ROUNDS=${2:-3}
LIMIT=${3:-60000}
THREADS=${THREADS:-2}
ISA=${ISA:-avx2 native}
. bench/isa.sh
for mode in $ISA; do isa_env "$mode" >/dev/null || exit 2; done
[ -x "$BIN" ] || { echo "bench: build regrad first (make build)"; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "bench: needs python3-torch (apt-get install python3-torch)"; exit 1; }
[ -x /usr/bin/time ] || { echo "bench: needs /usr/bin/time (apt-get install time)"; exit 1; }
case "$MODEL" in
  mlp) SPEC=mlp:depth=2,width=256 ;;
  cnn|resnet20v2) SPEC=$MODEL ;;
  *) echo "bench: unknown model $MODEL (mlp, cnn, resnet20v2)"; exit 2 ;;
esac
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # MODE: the rounds and the table under one instruction-set mode
  local mode=$1 isa; isa=$(isa_env "$mode")
  rm -f "$tmp"/rg "$tmp"/pt "$tmp"/rg_rss "$tmp"/pt_rss
  for r in $(seq "$ROUNDS"); do
    /usr/bin/time -f "%M" -o "$tmp/rss" env $isa "$BIN" train --model "$SPEC" --epochs 1 --batch 128 \
        --optimizer adam --lr 0.001 --threads "$THREADS" --seed "$r" --limit "$LIMIT" --quiet \
        --metrics "$tmp/rg.jsonl" >/dev/null
    /usr/bin/python3 -c 'import json,sys; e=[json.loads(l) for l in open(sys.argv[1])]; ep=[x for x in e if x.get("event")=="epoch"]; print(ep[0]["images_per_sec"], e[-1]["test_acc"])' "$tmp/rg.jsonl" >> "$tmp/rg"
    cat "$tmp/rss" >> "$tmp/rg_rss"
    /usr/bin/time -f "%M" -o "$tmp/rss" env $isa /usr/bin/python3 bench/torch_train.py --model "$MODEL" \
        --threads "$THREADS" --limit "$LIMIT" > "$tmp/pt.json"
    /usr/bin/python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print(e["images_per_sec"], e["test_acc"])' "$tmp/pt.json" >> "$tmp/pt"
    cat "$tmp/rss" >> "$tmp/pt_rss"
  done
  rg_ips=$(cut -d' ' -f1 "$tmp/rg" | median); pt_ips=$(cut -d' ' -f1 "$tmp/pt" | median)
  rg_acc=$(cut -d' ' -f2 "$tmp/rg" | median); pt_acc=$(cut -d' ' -f2 "$tmp/pt" | median)
  rg_rss=$(median < "$tmp/rg_rss"); pt_rss=$(median < "$tmp/pt_rss")
  printf '%s (regrad %s), batch 128, adam, 1 epoch of %s images, %s threads, median of %s rounds, ISA mode %s\n' \
    "$MODEL" "$SPEC" "$LIMIT" "$THREADS" "$ROUNDS" "$mode"
  printf '%-8s %14s %10s %14s\n' "" "train img/s" "test acc" "peak RSS MiB"
  printf '%-8s %14.0f %10.4f %14.1f\n' regrad "$rg_ips" "$rg_acc" "$(echo "$rg_rss/1024" | bc -l)"
  printf '%-8s %14.0f %10.4f %14.1f\n' pytorch "$pt_ips" "$pt_acc" "$(echo "$pt_rss/1024" | bc -l)"
  printf 'speed ratio regrad/pytorch: %.2fx   memory ratio regrad/pytorch: %.2f\n' \
    "$(echo "$rg_ips/$pt_ips" | bc -l)" "$(echo "$rg_rss/$pt_rss" | bc -l)"
}
for mode in $ISA; do measure "$mode"; done

#!/usr/bin/env bash
# bench_resnet50v2.sh — ResNet50V2 (Keras structure, 25,613,800 parameters in both) at
# 224x224x3, batch 32, Adam, random data: a few timed training steps with regrad and with
# PyTorch, side by side, 2 threads each.  Prints images/s, peak RSS and the ratios, once per
# instruction-set mode in ISA (default "avx2 native"; see bench/isa.sh).
# Usage: [ISA="avx2 native"] bench/bench_resnet50v2.sh [STEPS]   (default 3, after 1 warm-up)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${REGRAD_BIN:-build/regrad}
STEPS=${1:-3}
THREADS=${THREADS:-2}
ISA=${ISA:-avx2 native}
. bench/isa.sh
for mode in $ISA; do isa_env "$mode" >/dev/null || exit 2; done
[ -x "$BIN" ] || { echo "bench: build regrad first (make build)"; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "bench: needs python3-torch"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
measure() { # MODE: both sides and the table under one instruction-set mode
  local mode=$1 isa; isa=$(isa_env "$mode")
  /usr/bin/time -f "%M" -o "$tmp/rg_rss" env $isa "$BIN" bench --model resnet50v2 --batch 32 --steps "$STEPS" \
      --warmup 1 --threads "$THREADS" --json > "$tmp/rg.json"
  /usr/bin/time -f "%M" -o "$tmp/pt_rss" env $isa /usr/bin/python3 bench/torch_resnet50v2.py --batch 32 \
      --steps "$STEPS" --warmup 1 --threads "$THREADS" > "$tmp/pt.json"
  rg=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["images_per_sec"])' "$tmp/rg.json")
  pt=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["images_per_sec"])' "$tmp/pt.json")
  rg_rss=$(cat "$tmp/rg_rss"); pt_rss=$(cat "$tmp/pt_rss")
  printf 'ResNet50V2 224x224x3, batch 32, adam, %s timed steps, %s threads, ISA mode %s\n' "$STEPS" "$THREADS" "$mode"
  printf '%-8s %12s %14s\n' "" "images/s" "peak RSS MiB"
  printf '%-8s %12.2f %14.0f\n' regrad "$rg" "$(echo "$rg_rss/1024" | bc -l)"
  printf '%-8s %12.2f %14.0f\n' pytorch "$pt" "$(echo "$pt_rss/1024" | bc -l)"
  printf 'speed ratio regrad/pytorch: %.2fx   memory ratio regrad/pytorch: %.2f\n' \
    "$(echo "$rg/$pt" | bc -l)" "$(echo "$rg_rss/$pt_rss" | bc -l)"
}
for mode in $ISA; do measure "$mode"; done

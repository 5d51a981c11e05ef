#!/usr/bin/env bash
# test_seed_workflow.sh — the workflow regrad was started for, end to end at a small input
# size: an image folder; ResNet50V2 from a Keras-layout `notop` weights file (made here from
# seeded weights by tools/make_keras_fixtures.py: no download); everything frozen but conv5
# and a new head; Adam 1e-4; a validation split of 0.2; a checkpoint every 5 epochs; then
# predict.  Needs /usr/bin/python3 with h5py and numpy (skipped, exit 77, without).
# Usage: test_seed_workflow.sh PATH/TO/regrad SOURCE_DIR
set -u
BIN=${1:?usage: test_seed_workflow.sh PATH/TO/regrad SOURCE_DIR}
SRC=${2:?usage: test_seed_workflow.sh PATH/TO/regrad SOURCE_DIR}
/usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null || { echo "SKIP: /usr/bin/python3 without h5py"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }

"$BIN" export-images --limit 60 --out "$tmp/photos" >/dev/null
rm -rf "$tmp"/photos/[3-9]_*   # three classes, 18 images
# seeded ImageNet-shaped weights in Keras's layout, without the top
"$BIN" train --data "$tmp/photos" --model resnet50v2 --input-size 32x32 --channels 3 --epochs 1 \
  --batch 6 --limit 6 --seed 11 --quiet --checkpoint-dir "$tmp/seed" >/dev/null 2>&1
/usr/bin/python3 "$SRC/tools/make_keras_fixtures.py" from-safetensors "$tmp/seed/last.safetensors" \
  "$tmp/resnet50v2_notop.h5" predictions
check "notop file made" '[ -s "$tmp/resnet50v2_notop.h5" ]'

"$BIN" train --data "$tmp/photos" --model resnet50v2 --input-size 32x32 --channels 3 --classes 3 \
  --weights "$tmp/resnet50v2_notop.h5" --weights-partial --freeze '*' --trainable 'conv5*' \
  --trainable post_bn --trainable predictions --optimizer adam --lr 1e-4 --val-split 0.2 \
  --epochs 5 --batch 6 --checkpoint-dir "$tmp/ck" --checkpoint-every 5 --preprocess tf \
  >"$tmp/out" 2>"$tmp/err"; code=$?
check "train exits 0 ($code): $(tail -2 "$tmp/err")" '[ "$code" -eq 0 ]'
check "every weight but the head from the file: $(grep weights: "$tmp/out")" \
  'grep -q "weights: [0-9]* tensors loaded from .*resnet50v2_notop.h5.*, 2 missing (e.g. predictions.kernel)" "$tmp/out"'
check "validation each epoch" '[ "$(grep -c "val_acc" "$tmp/out")" -eq 5 ]'
check "a checkpoint at epoch 5 only" '[ -f "$tmp/ck/epoch_5.safetensors" ] && [ ! -f "$tmp/ck/epoch_1.safetensors" ]'
img=$(ls "$tmp"/photos/1_*/*.png | head -1)
"$BIN" predict --weights "$tmp/ck/last.safetensors" --top 2 "$img" >"$tmp/pred" 2>&1
check "predict names classes: $(cat "$tmp/pred")" 'grep -q "$(basename "$img"): .*\(T-shirt_top\|Trouser\|Pullover\) 0\.[0-9]*" "$tmp/pred"'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

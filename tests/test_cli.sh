#!/usr/bin/env bash
# test_cli.sh — the regrad command as a user meets it: help, version, every kind of bad
# input (one line on stderr naming the problem, exit 2 for usage and 1 for runtime errors,
# never a crash), an end-to-end training run on a Fashion-MNIST subset, and reproducibility.
# Usage: test_cli.sh PATH/TO/regrad
set -u
BIN=${1:?usage: test_cli.sh PATH/TO/regrad}
FM=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect CODE PATTERN ARGS...: exit code CODE, exactly one stderr line matching PATTERN.
expect() {
  local code=$1 pattern=$2; shift 2
  "$BIN" "$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
  local lines; lines=$(wc -l <"$tmp/err")
  if [ "$got" -ne "$code" ]; then bad "regrad $* -> exit $got, expected $code: $(head -c 300 "$tmp/err")"
  elif [ "$code" -ne 0 ] && [ "$lines" -ne 1 ]; then bad "regrad $* -> $lines stderr lines, expected 1: $(cat "$tmp/err")"
  elif ! grep -q -- "$pattern" "$tmp/err" "$tmp/out"; then bad "regrad $* -> output lacks '$pattern': $(head -c 300 "$tmp/err")"
  else ok; fi
}

# ---- help and version
expect 0 "regrad 0" --version
expect 0 "Commands:" --help
expect 2 "Usage" 
expect 2 "unknown command 'trian'" trian
expect 0 "Usage: regrad train" train --help
expect 0 "Usage: regrad summary" summary --help
expect 0 "Total params: 269,322" summary --model mlp
expect 0 "Total params: 7,850" summary --model mlp:depth=0
# the memory training plans (--batch): more at a larger batch; bf16 and cuda refused here
expect 0 "Memory at batch 32 on cpu in fp32: " summary --model resnet20v2 --batch 32
mib() { "$BIN" summary --model resnet20v2 --batch "$1" | sed -n 's/^Memory at .*: \([0-9.]*\) MiB$/\1/p'; }
m8=$(mib 8) m64=$(mib 64)
awk -v a="$m8" -v b="$m64" 'BEGIN { exit !(a > 0 && b > 2 * a) }' && ok || bad "summary --batch: $m8 MiB at 8, $m64 at 64"
expect 1 "bf16 is a GPU's" summary --model resnet20v2 --batch 8 --precision bf16
expect 1 "cuda" summary --model resnet20v2 --batch 8 --device cuda
expect 2 "precision 'fp16': use fp32, tf32 or bf16" summary --model mlp --precision fp16 # without --batch too

# ---- the zoo: parameter counts as Keras counts them, Keras layer names
expect 0 "Total params: 25,613,800" summary --model resnet50v2
expect 0 "Total params: 23,564,800" summary --model resnet50v2:top=0
expect 0 "Non-trainable params: 45,440" summary --model resnet50v2
expect 0 "Total params: 44,675,560" summary --model resnet101v2
expect 0 "Total params: 8,062,504" summary --model densenet121
expect 0 "Total params: 7,037,504" summary --model densenet121:top=0
"$BIN" summary --model resnet50v2 > "$tmp/r50.txt" 2>&1
for name in conv1_conv conv2_block1_preact_bn conv2_block1_0_conv conv3_block4_out conv5_block3_out post_bn avg_pool predictions; do
  grep -q "^ $name " "$tmp/r50.txt" && ok || bad "resnet50v2 summary lacks layer $name"
done
expect 0 "Total params: 421,642" summary --model cnn
expect 1 "too small for this network" summary --model cnn --input 1x2x2
expect 2 "--input '0x28x28'" summary --input 0x28x28
expect 2 "input=0x28x28" summary --model cnn:input=0x28x28
expect 2 "unknown option 'depth' for model resnet50v2" summary --model resnet50v2:depth=3
expect 2 "multiple of 6" summary --model densenet:depth=20

# ---- usage errors (exit 2), all before any data is read
expect 2 "did you mean --epochs" train --epocs 2
expect 2 "did you mean --optimizer" train --optimiser adam
expect 2 "needs a value" train --epochs
expect 2 "--lr '-1'" train --lr -1
expect 2 "--lr '0'" train --lr 0
expect 2 "--lr 'abc'" train --lr abc
expect 2 "--batch '0'" train --batch 0
expect 2 "--val-split '1'" train --val-split 1
expect 2 "--val-split '-0.1'" train --val-split -0.1
expect 2 "takes all 20 training samples: lower --val-split" train --limit 20 --val-split 0.99 --quiet
expect 2 "--epochs '1.5'" train --epochs 1.5
expect 2 "--threads" train --threads -3
expect 2 "unknown optimizer 'adamax'" train --optimizer adamax
expect 2 "unknown schedule 'linear'" train --schedule linear
expect 2 "unknown loss 'hinge': use xent or mse" train --loss hinge
expect 2 "unknown model 'resnet9000'" train --model resnet9000
expect 2 "depth=x" train --model mlp:depth=x
expect 2 "unknown option 'widht'" train --model mlp:widht=3
expect 2 "unknown activation 'swish'" train --model mlp:act=swish
expect 2 "unexpected argument 'extra'" train extra
expect 2 "unknown data spec 'mnist'" train --data mnist
expect 2 "--input 'abc'" summary --input abc

# ---- diagnose, experiment, bench
expect 0 "Usage: regrad diagnose" diagnose --help
expect 0 "Usage: regrad experiment" experiment --help
expect 0 "Usage: regrad bench" bench --help
expect 0 "vanishing" diagnose --model mlp:depth=10,width=32,act=sigmoid,init=torch --batch 64
expect 0 "0 of 3 layers unhealthy" diagnose --model mlp:depth=2,width=64 --batch 64
"$BIN" diagnose --model cnn --batch 32 --json > "$tmp/diag.json" 2>&1
grep -q '"layers":\[{"layer":"conv2d_1"' "$tmp/diag.json" && ok || bad "diagnose --json: $(head -c 200 "$tmp/diag.json")"
expect 2 "--batch '1'" diagnose --batch 1
expect 2 "unknown remedy 'dropout'" experiment --remedies dropout
expect 2 "not adam or sgd" experiment --optimizers rmsprop
expect 2 "unknown activation 'swish'" experiment --acts swish
expect 2 "--depths 'x'" experiment --depths x
expect 2 "--model-family 'rnn': give mlp or cnn" experiment --model-family rnn
expect 2 "no remedy left for --model-family cnn" experiment --model-family cnn --remedies residual
expect 0 "plaincnn:depth=2,width=4,act=tanh,init=torch,bn=1" experiment --model-family cnn --depths 2 --width 4 --acts tanh --optimizers adam --remedies bn --limit 256 --json /dev/stdout
expect 0 "plaincnn:depth=2,width=4" experiment --model-family cnn --depths 2 --width 4 --acts tanh --optimizers adam --remedies off --limit 256 --json /dev/stdout
# diagnose's curvature figures: sigmoid inputs are ill-conditioned, the GN eigenvalue is shown
expect 0 "ill_conditioned" diagnose --model mlp:depth=3,width=32,act=sigmoid,bn=1 --batch 64
expect 0 "GN top" diagnose --model mlp:depth=2,width=16 --batch 32 --curvature 5
expect 0 "Sharpness (top Hessian eigenvalue, this batch): [0-9]" diagnose --model mlp:depth=2,width=16 --batch 32 --curvature 5
expect 0 "images/s" bench --model mlp --batch 16 --steps 2 --warmup 0
expect 0 "monitor: a watched step takes" bench --model mlp --batch 16 --steps 4 --warmup 0 --monitor
expect 0 "\"monitor_step_cost\":" bench --model mlp --batch 16 --steps 4 --warmup 0 --monitor --json
expect 0 "give --steps 2 or more" bench --model mlp --batch 16 --steps 1 --warmup 0 --monitor
expect 2 "no classifier" bench --model resnet18v2:top=0
# a small experiment end to end: GRA rescues what plain training cannot
"$BIN" experiment --depths 8 --acts sigmoid --optimizers adam --remedies off,gra --limit 6000 \
    --json "$tmp/exp.json" > "$tmp/exp.txt" 2>&1
off=$(sed -n 's/.*"remedy":"off".*"test_acc":\([0-9.]*\).*/\1/p' "$tmp/exp.json")
gra=$(sed -n 's/.*"remedy":"gra".*"test_acc":\([0-9.]*\).*/\1/p' "$tmp/exp.json")
if awk -v o="$off" -v g="$gra" 'BEGIN {exit !(o < 0.2 && g > 0.6)}'; then ok; else bad "experiment: off $off, gra $gra"; fi
grep -q "Test accuracy" "$tmp/exp.txt" && ok || bad "experiment prints no table"
# train logs GRA's actions as JSON lines
"$BIN" train --model mlp:depth=8,width=32,act=sigmoid,init=torch --limit 3000 --quiet --metrics "$tmp/g.jsonl" >/dev/null 2>&1
grep -q '"event":"repair","step":0,"layer":"dense_1","verdict":"vanishing","action":"recondition"' "$tmp/g.jsonl" && ok || bad "no repair event in metrics: $(head -c 300 "$tmp/g.jsonl")"
grep -q '"repairs":[1-9]' "$tmp/g.jsonl" && ok || bad "epoch line lacks the repair count"
"$BIN" train --limit 2000 --quiet --monitor-every 5 --metrics "$tmp/m5.jsonl" >/dev/null 2>&1
[ "$(grep -c '"event":"health"' "$tmp/m5.jsonl")" -eq 4 ] && ok || bad "--monitor-every 5 over 16 steps should give 4 health lines"
expect 2 "--repair 'maybe'" train --repair maybe
# watching is not training: GRA trains the same weights whatever the monitor is asked to watch
gra_run() { "$BIN" train --model mlp:depth=8,width=32,act=sigmoid,init=torch --limit 3000 --quiet "$@" 2>&1 | grep -o 'weights [0-9a-f]*'; }
w0=$(gra_run); w1=$(gra_run --monitor-every 1); w2=$(gra_run --report "$tmp/w.html")
[ -n "$w0" ] && [ "$w0" = "$w1" ] && [ "$w0" = "$w2" ] && ok ||
  bad "GRA's weights changed with --monitor-every 1 or --report: '$w0' '$w1' '$w2'"
grep -q '"update_ratio":[0-9]' "$tmp/m5.jsonl" && ok || bad "health lines lack update_ratio"
grep -q '"newton_ratio":[0-9]' "$tmp/m5.jsonl" && bad "the curvature along steps without --curvature-every" || ok
"$BIN" train --limit 2000 --quiet --curvature-every 2 2>"$tmp/err"; [ $? -eq 2 ] && grep -q "add --monitor-every" "$tmp/err" &&
  ok || bad "--curvature-every without --monitor-every should exit 2 saying what to add"
"$BIN" train --limit 2000 --quiet --monitor-every 5 --curvature-every 2 --metrics "$tmp/c2.jsonl" >/dev/null 2>&1
[ "$(grep -Ec '"step_slope":-[0-9.e-]*,"step_curvature":[0-9.e-]*,"newton_ratio":[0-9]' "$tmp/c2.jsonl")" -eq 2 ] && ok ||
  bad "--curvature-every 2 over 4 health lines should measure 2 descent steps (negative slope, positive curvature)"
# --report measures each layer's curvature before and after training
"$BIN" train --model mlp:depth=3,width=16,act=sigmoid --limit 1000 --quiet --report "$tmp/c.html" >/dev/null 2>&1
[ "$(grep -c '"event":"curvature"' "$tmp/c.html.jsonl")" -eq 2 ] && ok || bad "--report should write two curvature events"
grep -q "Top Gauss-Newton eigenvalue per layer" "$tmp/c.html" && ok || bad "the report lacks the curvature chart"
# a learning rate a million times too high: GRA's first early check finds the network ill
# and goes back to the weights the probe kept, and it trains; without GRA the loss is lost
expect 0 "test_acc" train --optimizer sgd --lr 1e6 --limit 6000 --quiet --metrics "$tmp/lr.jsonl"
grep -q '"action":"back_to_healthy"' "$tmp/lr.jsonl" && ok || bad "lr 1e6: no back_to_healthy in $(head -c 300 "$tmp/lr.jsonl")"
expect 1 "train with GRA" train --optimizer sgd --lr 1e6 --limit 6000 --quiet --repair off

# ---- runtime errors on bad data (exit 1)
mkdir -p "$tmp/fm"
cp "$FM"/*.gz "$tmp/fm/"
expect 1 "cannot open" train --data idx:/nonexistent/images,/nonexistent/labels
expect 1 "cannot open" train --data fashion-mnist:/nonexistent
head -c 1000 "$FM/train-images-idx3-ubyte.gz" > "$tmp/fm/train-images-idx3-ubyte.gz"
expect 1 "train-images" train --data "fashion-mnist:$tmp/fm"
printf 'this is not an idx file at all' > "$tmp/fm/train-images-idx3-ubyte.gz"
expect 1 "bad magic" train --data "fashion-mnist:$tmp/fm"
cp "$FM/train-images-idx3-ubyte.gz" "$tmp/fm/"
expect 1 "holds 60000 images but" train --data "idx:$tmp/fm/train-images-idx3-ubyte.gz,$FM/t10k-labels-idx1-ubyte.gz"
# a labels file with one label out of range (12 for a 10-class set)
printf '\x00\x00\x08\x01\x00\x00\xea\x60' > "$tmp/lbl"
{ head -c 100 /dev/zero; printf '\x0c'; head -c 59899 /dev/zero; } >> "$tmp/lbl"
gzip -c "$tmp/lbl" > "$tmp/fm/train-labels-idx1-ubyte.gz"
expect 1 "label 12 of sample 100 is out of range" train --data "fashion-mnist:$tmp/fm"
# idx data with one stray label (200 among 0-9): one warning naming the empty classes; with
# --classes (or a checkpoint's classes) an error naming the sample
gzip -dc "$FM/train-labels-idx1-ubyte.gz" > "$tmp/lbl200"
printf '\xc8' | dd of="$tmp/lbl200" bs=1 seek=$((8 + 100)) conv=notrunc 2>/dev/null
stray=(--data "idx:$FM/train-images-idx3-ubyte.gz,$tmp/lbl200" --limit 512 --quiet)
"$BIN" train "${stray[@]}" >"$tmp/out" 2>"$tmp/err"; code=$?
[ "$code" -eq 0 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
  grep -q "warning: 190 of the 201 classes (1 + the largest label) have no samples: 10-199" "$tmp/err" &&
  ok || bad "stray label: exit $code, $(cat "$tmp/err")"
expect 1 "label 200 of sample 100 is out of range (this dataset has 10 classes" train "${stray[@]}" --classes 10
expect 1 "cannot write metrics" train --limit 256 --metrics /nonexistent/dir/m.jsonl

# ---- end to end: a subset of Fashion-MNIST reaches a stated accuracy
"$BIN" train --limit 10000 --epochs 2 --val-split 0.1 --seed 1 --metrics "$tmp/m.jsonl" >"$tmp/out" 2>&1
acc=$(grep '"event":"end"' "$tmp/m.jsonl" | sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
if awk -v a="$acc" 'BEGIN {exit !(a >= 0.80)}'; then ok; else bad "end-to-end test accuracy $acc < 0.80"; fi
[ "$(grep -c '"event":"epoch"' "$tmp/m.jsonl")" -eq 2 ] && ok || bad "metrics should hold 2 epoch lines"
grep -q '"val_acc":0\.[0-9]' "$tmp/m.jsonl" && ok || bad "metrics lack val_acc"

# ---- reproducibility: same seed and threads, same weights; another seed, other weights
run_hash() { "$BIN" train --limit 3000 --epochs 1 --model mlp:dropout=0.1 --threads 2 --seed "$1" --quiet | sed 's/.*weights \([0-9a-f]*\).*/\1/'; }
h1=$(run_hash 7); h2=$(run_hash 7); h3=$(run_hash 8)
[ -n "$h1" ] && [ "$h1" = "$h2" ] && ok || bad "same seed gave weights $h1 and $h2"
[ "$h1" != "$h3" ] && ok || bad "different seeds gave the same weights"

# ---- image folders: export, train, augment, bad files
expect 0 "Usage: regrad export-images" export-images --help
expect 0 "Usage: regrad augment-preview" augment-preview --help
expect 0 "Usage: regrad bench-data" bench-data --help
expect 2 "--out is required" export-images --limit 10
expect 0 "wrote 600 images in 10 class folders" export-images --limit 600 --out "$tmp/png"
[ -f "$tmp/png/0_T-shirt_top/000001.png" ] && [ -f "$tmp/png/9_Ankle_boot/000000.png" ] && ok || bad "export layout"
expect 0 "wrote $tmp/grid.png" augment-preview --data "$tmp/png" --input-size 28x28 --channels 1 \
  --augment flip,crop=3,rotate=10,noise=0.05,brightness=0.2,contrast=0.2,resized-crop --out "$tmp/grid.png"
head -c 8 "$tmp/grid.png" | od -An -c | grep -q "P   N   G" && ok || bad "preview is not a PNG"
expect 2 "unknown augmentation 'flop'" train --data "$tmp/png" --augment flop
expect 2 "input-size '28'" train --data "$tmp/png" --input-size 28
expect 2 "channels" train --data "$tmp/png" --channels 2
expect 2 "unknown preprocessing 'imagenet'" train --data "$tmp/png" --preprocess imagenet
expect 1 "cannot open data folder '/nonexistent/dir'" train --data /nonexistent/dir
mkdir -p "$tmp/noclass"
expect 2 "no class folders" train --data "$tmp/noclass"
# a folder trains, with augmentation, a separate test folder and a validation split
"$BIN" export-images --split test --limit 300 --out "$tmp/pngtest" >/dev/null
"$BIN" train --data "$tmp/png" --test-data "$tmp/pngtest" --input-size 28x28 --channels 1 \
  --model cnn --epochs 2 --val-split 0.2 --augment flip --seed 3 >"$tmp/out" 2>"$tmp/err"
grep -q "test_acc 0\.[3-9]" "$tmp/out" && ok || bad "folder training: $(cat "$tmp/out" "$tmp/err")"
grep -q "val_acc" "$tmp/out" && ok || bad "folder training shows no validation"
# bad files are skipped with a warning naming them, or stop the run with --strict
cp -r "$tmp/png" "$tmp/bad"
: > "$tmp/bad/1_Trouser/zero.png"
echo "not an image" > "$tmp/bad/1_Trouser/notes.png"
head -c 60 "$tmp/png/1_Trouser/000016.png" > "$tmp/bad/1_Trouser/truncated.png"
printf '\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\x01\x86\xa0\0\x01\x86\xa0\x08\x00\0\0\0' > "$tmp/bad/2_Pullover/bomb.png"
mkdir -p "$tmp/bad/empty_class"
timeout 60 "$BIN" train --data "$tmp/bad" --input-size 28x28 --channels 1 --limit 600 --epochs 1 \
  --quiet >"$tmp/out" 2>"$tmp/err"; code=$?
[ "$code" -eq 0 ] && ok || bad "bad files should be skipped, exit $code: $(cat "$tmp/err")"
grep -q "skipping '.*zero.png': empty file" "$tmp/err" && ok || bad "no warning for the empty file"
grep -q "decompression bomb" "$tmp/err" && ok || bad "no warning for the bomb: $(cat "$tmp/err")"
grep -q "skipped 3 of 604 files" "$tmp/err" && ok || bad "no skip count: $(cat "$tmp/err")"
grep -q "skipping '.*truncated.png' (zeros in its place)" "$tmp/err" && ok || bad "no warning for the truncated file"
grep -q "empty_class' has no images" "$tmp/err" && ok || bad "no warning for the empty class"
expect 1 "strict checking off" train --data "$tmp/bad" --input-size 28x28 --channels 1 --strict

# ---- checkpoints, exact resume, transfer learning, eval, predict, inspect
expect 0 "Usage: regrad eval" eval --help
expect 0 "Usage: regrad predict" predict --help
expect 0 "Usage: regrad inspect" inspect --help
ck=(train --limit 2000 --model mlp:dropout=0.1 --optimizer momentum --seed 4 --quiet)
"$BIN" "${ck[@]}" --epochs 2 --checkpoint-dir "$tmp/ckA" >"$tmp/a.out" 2>&1
"$BIN" "${ck[@]}" --epochs 1 --checkpoint-dir "$tmp/ckB" >/dev/null 2>&1
"$BIN" train --resume "$tmp/ckB" --epochs 2 >"$tmp/b.out" 2>&1
ha=$(sed -n 's/.*weights \([0-9a-f]*\).*/\1/p' "$tmp/a.out"); hb=$(sed -n 's/.*weights \([0-9a-f]*\).*/\1/p' "$tmp/b.out")
[ -n "$ha" ] && [ "$ha" = "$hb" ] && ok || bad "2 epochs straight gave $ha, 1 + resume 1 gave $hb"
py=/usr/bin/python3; [ -x "$py" ] || py=true  # the two Python checks need only its standard library
"$py" - "$tmp/ckA/epoch_2.safetensors" "$tmp/ckB/epoch_2.safetensors" <<'PY' && ok || bad "resumed checkpoint's tensors differ"
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), "differ"
PY
# GRA's repaired sigmoid CNN resumes exactly too: its convolutions step in whitened
# coordinates, whose matrices are made again from the checkpoint's input moments
wk=(train --limit 3000 --model plaincnn:depth=8,width=8,act=sigmoid,init=torch --seed 3 --quiet)
"$BIN" "${wk[@]}" --epochs 2 --metrics "$tmp/wA.jsonl" >"$tmp/a.out" 2>&1
"$BIN" "${wk[@]}" --epochs 1 --checkpoint-dir "$tmp/ckW" >/dev/null 2>&1
"$BIN" train --resume "$tmp/ckW" --epochs 2 >"$tmp/b.out" 2>&1
ha=$(sed -n 's/.*weights \([0-9a-f]*\).*/\1/p' "$tmp/a.out"); hb=$(sed -n 's/.*weights \([0-9a-f]*\).*/\1/p' "$tmp/b.out")
grep -q '"layer":"conv2d_2","verdict":"ill_conditioned","action":"centre_inputs"' "$tmp/wA.jsonl" &&
  [ -n "$ha" ] && [ "$ha" = "$hb" ] && ok || bad "GRA sigmoid CNN: 2 epochs straight gave $ha, 1 + resume 1 gave $hb"
# non-finite values never reach the weights: GRA skips such steps, then stops with a message
# (the first layer's weights set to 1e30: no healthy weights to go back to)
if [ "$py" != true ]; then
  "$py" - "$tmp/ckA/epoch_2.safetensors" "$tmp/huge.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
first, v = min(((k, v) for k, v in h.items() if k.endswith("kernel")), key=lambda kv: kv[1]["data_offsets"][0])
lo, hi = v["data_offsets"]
b[8 + n + lo:8 + n + hi] = struct.pack("<f", 1e30) * ((hi - lo) // 4)
open(sys.argv[2], "wb").write(b)
PY
  expect 1 "25 steps in a row had non-finite gradients" train --weights "$tmp/huge.safetensors" --limit 6000 --quiet
else ok; fi
[ "$(readlink "$tmp/ckA/last.safetensors")" = "epoch_2.safetensors" ] && ok || bad "last.safetensors link"
"$py" - "$tmp/ckA/last.safetensors" <<'PY' 2>/dev/null && ok || bad "checkpoint does not open as safetensors in Python"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["__metadata__"]["model"] == "mlp:dropout=0.1" and h["dense_1.kernel"]["shape"] == [256, 784]
assert "optimizer.momentum_buffer.dense_1.kernel" in h
PY
expect 0 "accuracy 0\.[6-9]" eval --weights "$tmp/ckA/last.safetensors"
expect 0 '"confusion":\[\[' eval --weights "$tmp/ckA/last.safetensors" --json
expect 1 "label 200 of sample 100 is out of range (this dataset has 10 classes" eval --weights "$tmp/ckA/last.safetensors" \
  --data "idx:$FM/train-images-idx3-ubyte.gz,$tmp/lbl200"
"$BIN" export-images --split test --limit 20 --out "$tmp/pred" >/dev/null
expect 0 "accuracy 0\.[6-9]" eval --weights "$tmp/ckA/last.safetensors" --data "$tmp/pred"
rm -rf "$tmp/pred/"[02-9]_*; mkdir -p "$tmp/pred/9_Ankle_boot"; cp "$tmp/pred/1_Trouser/"*.png "$tmp/pred/9_Ankle_boot/"
expect 0 "Ankle_boot  *[1-9]" eval --weights "$tmp/ckA/last.safetensors" --data "$tmp/pred"
expect 0 "000003.png: Trouser" predict --weights "$tmp/ckA/last.safetensors" --top 2 "$tmp/pred/1_Trouser/000003.png"
expect 0 '"probability"' predict --weights "$tmp/ckA/last.safetensors" --json "$tmp/pred/1_Trouser/000003.png"
expect 1 "notes.png': not a JPEG or PNG" predict --weights "$tmp/ckA/last.safetensors" "$tmp/bad/1_Trouser/notes.png"
expect 2 "give at least one image" predict --weights "$tmp/ckA/last.safetensors"
expect 0 "optimizer.momentum_buffer.dense_1.kernel" inspect "$tmp/ckA/epoch_1.safetensors"
expect 0 "Frozen params: 200,960 (in 1 layers" summary --model mlp --freeze dense_1
expect 2 "matches no layer" train --freeze 'conv9*'
# transfer: everything frozen but the last hidden layer; a new 5-class head on a folder
"$BIN" export-images --limit 500 --out "$tmp/png5" >/dev/null
rm -rf "$tmp"/png5/[5-9]_*
expect 0 "classifier re-initialised (2 tensors)" train --data "$tmp/png5" --input-size 28x28 --channels 1 \
  --model mlp:dropout=0.1 --weights "$tmp/ckA/last.safetensors" --classes 5 --freeze '*' --trainable dense_3 --trainable dense_2
expect 1 "does not fit model 'cnn'" train --model cnn --weights "$tmp/ckA/last.safetensors" --limit 100
expect 0 "weights: 0 tensors loaded" train --model cnn --weights "$tmp/ckA/last.safetensors" --weights-partial --limit 256
# Keras's HDF5 weights: a checkpoint exported, then trained from (matched by layer name)
expect 0 "wrote $tmp/m.h5 (keras-h5)" export --format keras-h5 --weights "$tmp/ckA/last.safetensors" -o "$tmp/m.h5"
expect 0 "weights: 6 tensors loaded from $tmp/m.h5" train --model mlp:dropout=0.1 --weights "$tmp/m.h5" --limit 256
expect 0 "weights: 6 tensors loaded from $tmp/m.h5" summary --model mlp:dropout=0.1 --weights "$tmp/m.h5"
expect 1 "does not fit model 'cnn'" summary --model cnn --weights "$tmp/m.h5"
expect 2 "--format 'tflite': use keras-h5 or onnx" export --format tflite --weights "$tmp/ckA/last.safetensors" -o "$tmp/x"
# Keras models from their JSON (to_json text, .keras, whole-model .h5): shown as Keras does,
# trained from their weights (a new 10-class head), exported to Keras 3, predicted with
K="$(cd "$(dirname "$0")" && pwd)/fixtures/keras"
expect 0 "Total params: 509" summary --model "keras:$K/branchy.json"
expect 0 "cat (Concatenate) *(None, 6, 6, 8) *0 *sum\[0\]\[0\], conv_a\[0\]\[0\]" summary --model "keras:$K/branchy.json"
expect 0 "Non-trainable params: 8" summary --model "keras:$K/small_model.h5"
expect 0 "weights: 8 tensors loaded from $K/small.keras" train --model "keras:$K/small.keras" \
  --weights "$K/small.keras" --weights-partial --limit 256 --checkpoint-dir "$tmp/ckK"
expect 0 "on fashion-mnist (10000 samples): loss" eval --weights "$tmp/ckK/last.safetensors"
expect 0 "wrote $tmp/k.weights.h5" export --weights "$tmp/ckK/last.safetensors" -o "$tmp/k.weights.h5"
expect 0 "weights: 10 tensors loaded from $tmp/k.weights.h5" train --model "keras:$K/small.keras" \
  --weights "$tmp/k.weights.h5" --limit 256
img=$(ls "$tmp"/png5/*/*.png | head -1)
expect 0 "$(basename "$img"): [0-2] 0\.[0-9]*, [0-2] 0\." predict --weights "$K/small.keras" "$img"
expect 1 "Keras weights without the model" predict --weights "$K/small_h5py2.h5" "$img"
printf '{"class_name": "Sequential", "config": {"layers": [{"class_name": "InputLayer", "config": {"name": "i", "batch_shape": [null, 28, 28, 1]}}, {"class_name": "LSTM", "config": {"name": "rnn"}}]}}' >"$tmp/lstm.json"
expect 1 "layer 'rnn' (LSTM): regrad has no LSTM layer" train --model "keras:$tmp/lstm.json" --limit 256
expect 1 "none.json: cannot open" summary --model "keras:$tmp/none.json"
expect 1 "model keras:$tmp/none.json: no such file" train --model "keras:$tmp/none.json" --limit 256
printf '{"class_name": "Sequential", "config": {"layers": [{"class_name": "InputLayer", "config": {"name": "i", "batch_shape": [null, null, null, 1]}}, {"class_name": "Conv2D", "config": {"name": "c", "filters": 4, "kernel_size": 3}}, {"class_name": "GlobalAveragePooling2D", "config": {"name": "g"}}, {"class_name": "Dense", "config": {"name": "d", "units": 10}}]}}' >"$tmp/open.json"
expect 0 "test_acc" train --model "keras:$tmp/open.json" --limit 256
expect 1 "the input size is not in the model (None)" summary --model "keras:$tmp/open.json"
# ONNX models from PyTorch: trained with their own weights, evaluated, predicted with
O="$(cd "$(dirname "$0")" && pwd)/fixtures/onnx"
expect 0 "fc (dense) *(None, 10) *15,690" summary --model "onnx:$O/fashion_cnn.onnx"
expect 0 "weights: 10 tensors loaded from $O/fashion_cnn.onnx" train --model "onnx:$O/fashion_cnn.onnx" \
  --limit 512 --checkpoint-dir "$tmp/ckO"
expect 0 "on fashion-mnist (10000 samples): loss" eval --weights "$tmp/ckO/last.safetensors"
expect 0 "$(basename "$img"): [0-9] 0\.[0-9]*" predict --weights "$O/fashion_cnn.onnx" "$img"
expect 1 "the model takes 12 features, the data has 1x28x28" train --model "onnx:$O/mlp.onnx" --limit 256
expect 1 "does not fit model 'onnx:$O/fashion_cnn.onnx'" train --model "onnx:$O/fashion_cnn.onnx" --data "$tmp/png5" \
  --input-size 28x28 --channels 1
expect 0 "wrote $tmp/out.onnx (onnx)" export --format onnx --weights "$tmp/ckO/last.safetensors" -o "$tmp/out.onnx"
# the format from the extension when --format is not given; neither: an error, nothing written
expect 0 "wrote $tmp/named.onnx (onnx)" export --weights "$tmp/ckO/last.safetensors" -o "$tmp/named.onnx"
cmp -s "$tmp/out.onnx" "$tmp/named.onnx" && ok || bad "export -o NAME.onnx: not the --format onnx file"
expect 2 "cannot tell the format from '$tmp/model.bin': name it .h5 or .onnx" export --weights "$tmp/ckO/last.safetensors" -o "$tmp/model.bin"
[ ! -e "$tmp/model.bin" ] && ok || bad "export with no format wrote $tmp/model.bin"
expect 0 "on fashion-mnist (10000 samples): loss" eval --weights "$tmp/out.onnx" --data fashion-mnist
a=$("$BIN" eval --weights "$tmp/ckO/last.safetensors" | head -1 | sed 's/.*: //')
b=$("$BIN" eval --weights "$tmp/out.onnx" --data fashion-mnist | head -1 | sed 's/.*: //')
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "the ONNX export evaluates to '$b', the checkpoint to '$a'"
head -c 1000 "$O/cnn.onnx" >"$tmp/cut.onnx"
expect 1 "cut.onnx: not an ONNX model" train --model "onnx:$tmp/cut.onnx" --limit 256
# devices: a malformed name is a usage error; CUDA says why it cannot run (no device here,
# or a build without it, or no whole graph on it yet)
expect 2 "device 'gpu': use cpu, cuda or cuda:N" train --device gpu
for d in cuda:99999999999 cuda:+1 "cuda: 1" cuda: cuda:1x; do
  expect 2 "device '$d': use cpu, cuda or cuda:N" train --device "$d"
done
expect 1 "no CUDA device here\|built without the CUDA backend\|no whole graph yet" train --device cuda
expect 1 "no CUDA device here\|built without the CUDA backend\|no whole graph yet" eval --device cuda:0 --weights "$tmp/ckK/last.safetensors"
head -c 3000 "$tmp/m.h5" > "$tmp/trunc.h5"
expect 1 "trunc.h5" train --weights "$tmp/trunc.h5" --limit 256
# bad checkpoints: one line, exit 1, never a crash
head -c 100 "$tmp/ckA/epoch_1.safetensors" > "$tmp/trunc.safetensors"
expect 1 "does not fit the file" eval --weights "$tmp/trunc.safetensors"
printf 'abc' > "$tmp/tiny.safetensors"
expect 1 "too short" inspect "$tmp/tiny.safetensors"
expect 1 "missing or not a regular file" eval --weights "$tmp/none.safetensors"
expect 1 "does not fit the file" train --resume "$tmp/trunc.safetensors"
mkdir -p "$tmp/no-checkpoint"
expect 1 "no checkpoint in that folder (no last.safetensors): give a run's --checkpoint-dir" train --resume "$tmp/no-checkpoint"

# ---- the classic remedies: clipping, max-norm, pruning
expect 0 "Usage: regrad prune" prune --help
expect 0 "sparsity 0.5000" prune --weights "$tmp/ckA/last.safetensors" --amount 0.5 --out "$tmp/p50.safetensors"
expect 0 "mask.dense_1.kernel" inspect "$tmp/p50.safetensors"
expect 0 "0.90     0.9000" prune --weights "$tmp/ckA/last.safetensors" --sweep 0.5,0.9 --structure weights
expect 2 "amount '2'" prune --weights "$tmp/ckA/last.safetensors" --amount 2 --out "$tmp/x.safetensors"
expect 2 "--out FILE is required" prune --weights "$tmp/ckA/last.safetensors" --amount 0.5
expect 2 "one of --amount" prune --weights "$tmp/ckA/last.safetensors" --amount 0.5 --sweep 0.1 --out "$tmp/x"
expect 2 "--structure 'rows'" prune --weights "$tmp/ckA/last.safetensors" --amount 0.5 --structure rows --out "$tmp/x"
expect 2 "clip-norm '0'" train --clip-norm 0
expect 2 "max-norm '-3'" train --max-norm -3
expect 2 "prune-schedule '0.5:3:2'" train --prune-schedule 0.5:3:2
expect 0 "GRA off" train --limit 512 --clip-norm 1 --agc 0.05 --max-norm 3
expect 0 "sparsity 0.600" train --limit 1024 --epochs 2 --prune-schedule 0.6:1:2

expect 0 "aux_head_2 (after dense_3): test_acc" train --limit 1024 --model mlp:depth=4,width=32 --aux-heads 2
expect 2 "no dense or conv layer 'nope'" train --limit 256 --aux-heads nope
expect 0 "selected features (" train --limit 1024 --model lassonet:width=16 --lasso-path 1:4:2
expect 2 "need a lassonet model" train --limit 256 --lasso 1
expect 2 "lasso-path '1:0.5:3'" train --lasso-path 1:0.5:3

# ---- progress and Ctrl-C: plain lines with --log-every; the first SIGINT stops after the
# step with a checkpoint that resumes mid-epoch to the same weights as a run never stopped
"$BIN" train --limit 2048 --log-every 4 --batch 128 >"$tmp/out" 2>"$tmp/err"
[ "$(grep -c '^epoch 1  batch [0-9]*/16  loss' "$tmp/err")" -eq 4 ] && ok || bad "--log-every 4: $(head -c 300 "$tmp/err")"
# (the signal is sent once the second step is logged, so a small run is still mid-epoch)
int_run=(train --limit 12000 --batch 32 --epochs 3 --seed 5)
"$BIN" "${int_run[@]}" --log-every 1 --checkpoint-dir "$tmp/ckI" >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!
for _ in $(seq 600); do grep -q 'batch 2/' "$tmp/int.err" && break; sleep 0.05; done
kill -INT "$pid"; wait "$pid"; code=$?
if [ "$code" -eq 130 ] && [ -f "$tmp/ckI/interrupted.safetensors" ]; then
  ok
  "$BIN" train --resume "$tmp/ckI" >"$tmp/res.out" 2>&1
  "$BIN" "${int_run[@]}" >"$tmp/str.out" 2>&1
  hr=$(sed -n 's/.*weights \([0-9a-f]*\).*/\1/p' "$tmp/res.out"); hs=$(sed -n 's/.*weights \([0-9a-f]*\).*/\1/p' "$tmp/str.out")
  [ -n "$hr" ] && [ "$hr" = "$hs" ] && ok || bad "interrupted + resumed gave $hr, straight $hs"
elif [ "$code" -eq 0 ]; then
  echo "note: the run finished before SIGINT arrived; interruption not exercised"; ok; ok
else
  bad "SIGINT: exit $code, expected 130 and a checkpoint: $(cat "$tmp/int.err")"
fi

# ---- numerical faults: the first non-finite value names its op and layer
expect 1 "Inf in the output of dense_3 (op dense)" train --limit 512 --optimizer sgd --lr 1e5 --repair off --check-numerics

# ---- resource limits: refused before allocating, with what and how much
expect 1 "the model needs .* MiB at batch 128 (parameters and gradients" train --model cnn --max-memory 20M --limit 256
expect 1 "optimizer's state .* alone exceed" train --model cnn --max-memory 1M --limit 256
expect 2 "max-memory '12Q'" train --max-memory 12Q
expect 1 "132.55 GiB at batch 2048" train --model resnet50v2 --input-size 224x224 --channels 3 --batch 2048 --limit 256 --max-memory 64G

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

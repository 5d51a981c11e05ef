#!/usr/bin/env bash
# test_device_cli.sh — `regrad train --device cuda` end to end on the CPU: regrad_fake_device
# is the command linked with tests/fake_cuda.c in place of the CUDA kernels (host code over
# poisoned pointers, the CPU's arithmetic), so a run on its "device" must give the CPU's
# weights bit for bit: for several optimizers, through checkpoints, resuming on the device
# from the device's or the CPU's checkpoint; eval, predict and prune there give the CPU's
# figures.
# GRA, the curvature along the steps and the report's Gauss-Newton eigenvalues run there
# (the CPU's bits for MLPs); what does not
# run on the device yet is one clear error.  Usage: test_device_cli.sh REGRAD REGRAD_FAKE_DEVICE CKPT_DIFF
set -u
CPU=${1:?usage: test_device_cli.sh REGRAD REGRAD_FAKE_DEVICE CKPT_DIFF}
DEV=${2:?usage}
DIFF=${3:?usage}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
same() { "$DIFF" "$1" "$2" 0 >/dev/null && ok || bad "$3: $("$DIFF" "$1" "$2")"; }
# the first 3,000 training and 1,000 test images: evaluating on all 10,000 would take most of
# the time of the convolutional runs, under the sanitizers most of all
data=$("$(dirname "$0")/fashion_mnist_cut.sh" "$tmp/data" 3000 1000) || exit 1
common=(train --data "$data" --limit 1024 --batch 64 --seed 3 --threads 1 --quiet)
for opt in adam momentum rmsprop; do
  "$CPU" "${common[@]}" --epochs 2 --optimizer "$opt" --repair off --checkpoint-dir "$tmp/cpu-$opt" >/dev/null 2>&1
  "$DEV" "${common[@]}" --epochs 2 --optimizer "$opt" --repair off --device cuda --checkpoint-dir "$tmp/dev-$opt" \
    >"$tmp/dev-$opt.out" 2>&1 || bad "$opt on the device: $(tail -2 "$tmp/dev-$opt.out")"
  same "$tmp/cpu-$opt/last.safetensors" "$tmp/dev-$opt/last.safetensors" "$opt: the device's weights"
done
# the remedies and schedules that run through the backend's passes, and a frozen layer
extra=(--epochs 1 --optimizer nesterov --schedule cosine,warmup:4 --clip-norm 0.5 --clip-value 0.05 --max-norm 2 --freeze dense_1)
"$CPU" "${common[@]}" "${extra[@]}" --checkpoint-dir "$tmp/cpu-extra" >/dev/null 2>&1
"$DEV" "${common[@]}" "${extra[@]}" --device cuda --checkpoint-dir "$tmp/dev-extra" >"$tmp/dev-extra.out" 2>&1 \
  || bad "remedies on the device: $(tail -2 "$tmp/dev-extra.out")"
same "$tmp/cpu-extra/last.safetensors" "$tmp/dev-extra/last.safetensors" "clipping, max-norm, a schedule, a frozen layer"
# auxiliary heads (a weighted sum of the losses, its weight decaying each step)
aux=(--epochs 1 --model mlp:depth=4,width=64 --aux-heads 2 --repair off)
"$CPU" "${common[@]}" "${aux[@]}" --checkpoint-dir "$tmp/cpu-aux" >/dev/null 2>&1
"$DEV" "${common[@]}" "${aux[@]}" --device cuda --checkpoint-dir "$tmp/dev-aux" >"$tmp/dev-aux.out" 2>&1 \
  || bad "auxiliary heads on the device: $(tail -2 "$tmp/dev-aux.out")"
same "$tmp/cpu-aux/last.safetensors" "$tmp/dev-aux/last.safetensors" "auxiliary heads"
# a residual MLP (the add)
res=(--epochs 1 --model mlp:depth=3,width=64,residual=1 --repair off)
"$CPU" "${common[@]}" "${res[@]}" --checkpoint-dir "$tmp/cpu-res" >/dev/null 2>&1
"$DEV" "${common[@]}" "${res[@]}" --device cuda --checkpoint-dir "$tmp/dev-res" >"$tmp/dev-res.out" 2>&1 \
  || bad "a residual MLP on the device: $(tail -2 "$tmp/dev-res.out")"
same "$tmp/cpu-res/last.safetensors" "$tmp/dev-res/last.safetensors" "a residual MLP"
# the CNN (convolutions, max pooling) and resnet20v2 (batch norm with fused relus, adds,
# global pooling) against the CPU's im2col path, which computes the convolutions as the
# device does, within float tolerance: batch norm's sums and dW's (each sample's product,
# then added) go in another order.  resnet20v2 runs 3 steps: its batch statistics make it
# chaotic (the CPU at 1 and 2 threads is 4e-5 apart after 3 steps, 4e-2 after 8; its own
# direct convolution kernels 4e-4 from its im2col path after 3)
cnn=(--epochs 1 --model cnn)
REGRAD_DIRECT_CONV=0 "$CPU" "${common[@]}" "${cnn[@]}" --repair off --checkpoint-dir "$tmp/cpu-cnn" >/dev/null 2>&1
"$DEV" "${common[@]}" "${cnn[@]}" --device cuda --checkpoint-dir "$tmp/dev-cnn" >"$tmp/dev-cnn.out" 2>&1 \
  || bad "the CNN on the device: $(tail -2 "$tmp/dev-cnn.out")"
"$DIFF" "$tmp/cpu-cnn/last.safetensors" "$tmp/dev-cnn/last.safetensors" 1e-5 >/dev/null && ok \
  || bad "the CNN: $("$DIFF" "$tmp/cpu-cnn/last.safetensors" "$tmp/dev-cnn/last.safetensors")"
small=(train --data "$data" --limit 96 --batch 32 --seed 3 --threads 1 --quiet --epochs 1 --model resnet20v2 --optimizer momentum)
REGRAD_DIRECT_CONV=0 "$CPU" "${small[@]}" --repair off --checkpoint-dir "$tmp/cpu-res20" >/dev/null 2>&1
"$DEV" "${small[@]}" --device cuda --checkpoint-dir "$tmp/dev-res20" >"$tmp/dev-res20.out" 2>&1 \
  || bad "resnet20v2 on the device: $(tail -2 "$tmp/dev-res20.out")"
"$DIFF" "$tmp/cpu-res20/last.safetensors" "$tmp/dev-res20/last.safetensors" 2e-4 >/dev/null && ok \
  || bad "resnet20v2: $("$DIFF" "$tmp/cpu-res20/last.safetensors" "$tmp/dev-res20/last.safetensors")"
# a pruned checkpoint (its masks) loaded for fine-tuning on the device and saved again
"$CPU" "${common[@]}" --epochs 1 --repair off --prune-schedule 0.5:1:1 --checkpoint-dir "$tmp/pruned" >/dev/null 2>&1
for side in cpu dev; do
  bin=$CPU; [ $side = dev ] && bin=$DEV
  "$bin" "${common[@]}" --epochs 1 --repair off --weights "$tmp/pruned/last.safetensors" \
    $([ $side = dev ] && echo --device cuda) --checkpoint-dir "$tmp/tuned-$side" >"$tmp/tuned-$side.out" 2>&1 \
    || bad "fine-tuning a pruned model ($side): $(tail -2 "$tmp/tuned-$side.out")"
done
same "$tmp/tuned-cpu/last.safetensors" "$tmp/tuned-dev/last.safetensors" "a pruned model fine-tuned on the device"
# a pruning schedule on the device (weights by magnitude, then units across layers)
for structure in "weights --prune-scope layer" "units --prune-scope global"; do
  sched=(--epochs 3 --repair off --prune-schedule 0.5:1:3 --prune-structure $structure)
  "$CPU" "${common[@]}" "${sched[@]}" --checkpoint-dir "$tmp/prune-cpu" >/dev/null 2>&1
  "$DEV" "${common[@]}" "${sched[@]}" --device cuda --checkpoint-dir "$tmp/prune-dev" >"$tmp/prune.out" 2>&1 \
    || bad "pruning on the device: $(tail -2 "$tmp/prune.out")"
  same "$tmp/prune-cpu/last.safetensors" "$tmp/prune-dev/last.safetensors" "pruning $structure on the device"
done
# stopped after epoch 1 on the device and resumed there; the CPU's epoch-1 checkpoint
# resumed on the device: both end with the CPU's weights
"$DEV" "${common[@]}" --epochs 2 --repair off --device cuda --stop-after 1 --checkpoint-dir "$tmp/stop" >/dev/null 2>&1
"$DEV" train --resume "$tmp/stop" --device cuda --quiet >"$tmp/resume.out" 2>&1 || bad "resume on the device: $(tail -2 "$tmp/resume.out")"
same "$tmp/cpu-adam/last.safetensors" "$tmp/stop/last.safetensors" "resumed on the device"
"$CPU" "${common[@]}" --epochs 2 --repair off --stop-after 1 --checkpoint-dir "$tmp/from-cpu" >/dev/null 2>&1
"$DEV" train --resume "$tmp/from-cpu" --device cuda --quiet >"$tmp/cross.out" 2>&1 || bad "the CPU's checkpoint on the device: $(tail -2 "$tmp/cross.out")"
same "$tmp/cpu-adam/last.safetensors" "$tmp/from-cpu/last.safetensors" "the CPU's checkpoint resumed on the device"
# GRA on the device: an MLP, the CPU's bits and repairs, its Newton guard's curvature
# included; a plain CNN: the CPU's repairs, its weights within 1e-3 of the CPU's im2col
# path (its whitened steps, up to 5.9x standardised ones and those 4.5x Adam's, carry the
# convolutions' different summation order further: 2.4e-4 apart after these 16 steps,
# where standardised steps instead of whitened ones end 0.94 apart); the
# CNN above (max pooling) ran with it, found healthy
gra=(train --data "$data" --limit 3000 --seed 2 --threads 1 --quiet --epochs 1 --model mlp:depth=10,width=64,act=sigmoid --repair auto)
"$CPU" "${gra[@]}" --metrics "$tmp/gra-cpu.jsonl" --checkpoint-dir "$tmp/gra-cpu" >/dev/null 2>&1
"$DEV" "${gra[@]}" --device cuda --metrics "$tmp/gra-dev.jsonl" --checkpoint-dir "$tmp/gra-dev" >"$tmp/gra.out" 2>&1 \
  || bad "GRA on the device: $(tail -2 "$tmp/gra.out")"
same "$tmp/gra-cpu/last.safetensors" "$tmp/gra-dev/last.safetensors" "GRA on the device"
grep '"event":"repair"' "$tmp/gra-cpu.jsonl" >"$tmp/r-cpu"; grep '"event":"repair"' "$tmp/gra-dev.jsonl" >"$tmp/r-dev"
[ -s "$tmp/r-cpu" ] && cmp -s "$tmp/r-cpu" "$tmp/r-dev" && ok || bad "GRA's repairs on the device: $(head -c 300 "$tmp/r-dev")"
plain=(train --data "$data" --limit 2000 --seed 2 --threads 1 --quiet --epochs 1 --model plaincnn:depth=6,width=8,act=sigmoid --repair auto)
REGRAD_DIRECT_CONV=0 "$CPU" "${plain[@]}" --metrics "$tmp/plain-cpu.jsonl" --checkpoint-dir "$tmp/plain-cpu" >/dev/null 2>&1
"$DEV" "${plain[@]}" --device cuda --metrics "$tmp/plain-dev.jsonl" --checkpoint-dir "$tmp/plain-dev" >"$tmp/plain.out" 2>&1 \
  || bad "GRA on a plain CNN on the device: $(tail -2 "$tmp/plain.out")"
"$DIFF" "$tmp/plain-cpu/last.safetensors" "$tmp/plain-dev/last.safetensors" 1e-3 >/dev/null && ok \
  || bad "GRA on a plain CNN: $("$DIFF" "$tmp/plain-cpu/last.safetensors" "$tmp/plain-dev/last.safetensors")"
actions() { grep '"event":"repair"' "$1" | sed 's/"factor":[0-9.e-]*//'; }
[ -n "$(actions "$tmp/plain-cpu.jsonl")" ] && cmp -s <(actions "$tmp/plain-cpu.jsonl") <(actions "$tmp/plain-dev.jsonl") && ok \
  || bad "GRA's repairs of a plain CNN on the device: $(actions "$tmp/plain-dev.jsonl" | head -c 300)"
! grep -q "GRA does not run" "$tmp/dev-cnn.out" && ok || bad "GRA is off for the CNN: $(cat "$tmp/dev-cnn.out")"
expect() { # expect CODE PATTERN COMMAND...: exit code and message
  local want=$1 pattern=$2; shift 2
  "$@" >"$tmp/err.out" 2>&1; local got=$?
  [ "$got" = "$want" ] && grep -q -- "$pattern" "$tmp/err.out" && ok || bad "$*: exit $got, $(tail -1 "$tmp/err.out")"
}
# the curvature along the watched steps on the device: an MLP's health lines, the CPU's
# byte for byte; with batch norm and dropout, and the CNN (max pooling), its figures within
# 1e-4 of the CPU's (im2col path; batch norm's sums in another order)
curv=(--epochs 1 --repair off --monitor-every 4 --curvature-every 2)
"$CPU" "${common[@]}" "${curv[@]}" --metrics "$tmp/curv-cpu.jsonl" >/dev/null 2>&1
"$DEV" "${common[@]}" "${curv[@]}" --device cuda --metrics "$tmp/curv-dev.jsonl" >/dev/null 2>&1
grep '"event":"health"' "$tmp/curv-cpu.jsonl" >"$tmp/c-cpu"; grep '"event":"health"' "$tmp/curv-dev.jsonl" >"$tmp/c-dev"
grep -q '"step_curvature":[0-9]' "$tmp/c-cpu" && cmp -s "$tmp/c-cpu" "$tmp/c-dev" && ok \
  || bad "the curvature along the steps on the device: $(head -c 300 "$tmp/c-dev")"
curvatures() { grep -oE '"step_(slope|curvature)":[-0-9.e+]+' "$1" | cut -d: -f2; }
for model in mlp:depth=4,width=64,act=sigmoid,bn=1,dropout=0.2 cnn; do
  REGRAD_DIRECT_CONV=0 "$CPU" "${common[@]}" "${curv[@]}" --model $model --metrics "$tmp/curv-cpu.jsonl" >/dev/null 2>&1
  "$DEV" "${common[@]}" "${curv[@]}" --model $model --device cuda --metrics "$tmp/curv-dev.jsonl" >/dev/null 2>&1
  [ "$(curvatures "$tmp/curv-cpu.jsonl" | wc -l)" -ge 4 ] &&
    [ "$(curvatures "$tmp/curv-cpu.jsonl" | wc -l)" = "$(curvatures "$tmp/curv-dev.jsonl" | wc -l)" ] &&
    paste <(curvatures "$tmp/curv-cpu.jsonl") <(curvatures "$tmp/curv-dev.jsonl") |
    awk '{ d = $1 - $2; a = $1 < 0 ? -$1 : $1; if (d < 0) d = -d; if (!(d <= 1e-4 * a)) bad = 1 } END { exit bad }' && ok \
    || bad "the curvature along the steps of $model on the device: $(curvatures "$tmp/curv-dev.jsonl" | head -4 | tr '\n' ' ')"
done
# the health monitor on the device: the CPU's figures (an MLP: every health line byte for
# byte; the CNN within the convolutions' summation order), and the report
mon=(--epochs 1 --repair off --monitor-every 4)
"$CPU" "${common[@]}" "${mon[@]}" --metrics "$tmp/mon-cpu.jsonl" >/dev/null 2>&1
"$DEV" "${common[@]}" "${mon[@]}" --device cuda --metrics "$tmp/mon-dev.jsonl" >/dev/null 2>&1
grep '"event":"health"' "$tmp/mon-cpu.jsonl" >"$tmp/h-cpu"; grep '"event":"health"' "$tmp/mon-dev.jsonl" >"$tmp/h-dev"
[ "$(wc -l <"$tmp/h-cpu")" = 4 ] && cmp -s "$tmp/h-cpu" "$tmp/h-dev" && ok || bad "the monitor on the device: $(head -c 300 "$tmp/h-dev")"
"$DEV" "${common[@]}" --limit 256 --epochs 1 --model cnn --device cuda --monitor-every 2 --report "$tmp/cnn.html" \
  >"$tmp/report.out" 2>&1 && grep -q "vanishing\|healthy" "$tmp/cnn.html" && [ "$(grep -c '"event":"health"' "$tmp/cnn.html.jsonl")" = 2 ] \
  && ok || bad "--report on the device: $(tail -2 "$tmp/report.out")"
[ "$(grep -c '"event":"curvature"' "$tmp/cnn.html.jsonl")" = 2 ] && grep -q '"input_cond":[0-9]' "$tmp/cnn.html.jsonl" \
  && grep -q '"gn_top":[0-9]' "$tmp/cnn.html.jsonl" && ok || bad "the report's curvature on the device"
# and an MLP's: the inputs' conditioning and the layers' Gauss-Newton eigenvalues, the CPU's
rep=(--limit 256 --epochs 1 --repair off --model mlp:depth=4,width=32,act=sigmoid)
"$CPU" "${common[@]}" "${rep[@]}" --report "$tmp/rep-cpu.html" >/dev/null 2>&1
"$DEV" "${common[@]}" "${rep[@]}" --device cuda --report "$tmp/rep-dev.html" >/dev/null 2>&1
grep '"event":"curvature"' "$tmp/rep-cpu.html.jsonl" >"$tmp/rc-cpu"; grep '"event":"curvature"' "$tmp/rep-dev.html.jsonl" >"$tmp/rc-dev"
[ "$(grep -o '"gn_top":[0-9]' "$tmp/rc-cpu" | wc -l)" = 10 ] && cmp -s "$tmp/rc-cpu" "$tmp/rc-dev" && ok \
  || bad "the report's Gauss-Newton eigenvalues on the device: $(head -c 300 "$tmp/rc-dev")"
# diagnose on the device: the CPU's table, and with --curvature its layers' Gauss-Newton
# and the network's Hessian top eigenvalues (the device's curvature products)
"$CPU" diagnose --model mlp:depth=6,act=sigmoid --batch 128 --json >"$tmp/diag-cpu.json" 2>&1
"$DEV" diagnose --model mlp:depth=6,act=sigmoid --batch 128 --json --device cuda >"$tmp/diag-dev.json" 2>&1
grep -q '"vanishing"\|"healthy"' "$tmp/diag-cpu.json" && cmp -s "$tmp/diag-cpu.json" "$tmp/diag-dev.json" && ok \
  || bad "diagnose on the device: $(head -c 200 "$tmp/diag-dev.json")"
"$CPU" diagnose --model mlp:depth=6,act=sigmoid --batch 64 --curvature 5 --json >"$tmp/dc-cpu.json" 2>&1
"$DEV" diagnose --model mlp:depth=6,act=sigmoid --batch 64 --curvature 5 --json --device cuda >"$tmp/dc-dev.json" 2>&1
grep -q '"hessian_top":[0-9]' "$tmp/dc-cpu.json" && cmp -s "$tmp/dc-cpu.json" "$tmp/dc-dev.json" && ok \
  || bad "diagnose --curvature on the device: $(head -c 200 "$tmp/dc-dev.json")"
# lassonet's proximal step on the weights each step, and its selection: the CPU's
lasso=(train --limit 1024 --batch 64 --seed 3 --threads 1 --repair off --epochs 1 --model lassonet --lasso-path 200:2:2)
"$CPU" "${lasso[@]}" 2>/dev/null | grep "features selected" >"$tmp/lasso-cpu"
"$DEV" "${lasso[@]}" --device cuda 2>/dev/null | grep "features selected" >"$tmp/lasso-dev"
[ "$(wc -l <"$tmp/lasso-cpu")" = 2 ] && ! tail -1 "$tmp/lasso-cpu" | grep -q " 784 features" && cmp -s "$tmp/lasso-cpu" "$tmp/lasso-dev" && ok \
  || bad "lassonet on the device: $(cat "$tmp/lasso-dev")"
# the experiment on the device: the CPU's runs (GRA's among them)
exp=(experiment --depths 6 --acts sigmoid --optimizers adam --remedies off,gra,bn --limit 2000)
"$CPU" "${exp[@]}" --json "$tmp/exp-cpu.json" >/dev/null 2>&1
"$DEV" "${exp[@]}" --device cuda --json "$tmp/exp-dev.json" >/dev/null 2>&1
grep -q '"remedy":"gra".*"repairs":[1-9]' "$tmp/exp-cpu.json" &&
  cmp -s <(sed 's/"seconds":[0-9.]*//' "$tmp/exp-cpu.json") <(sed 's/"seconds":[0-9.]*//' "$tmp/exp-dev.json") && ok \
  || bad "the experiment on the device: $(head -c 300 "$tmp/exp-dev.json")"
# eval and predict on the device: the CPU's figures and probabilities, digit for digit
"$CPU" eval --weights "$tmp/cpu-adam/last.safetensors" --json >"$tmp/eval-cpu.json" 2>&1
"$DEV" eval --weights "$tmp/cpu-adam/last.safetensors" --json --device cuda >"$tmp/eval-dev.json" 2>&1
grep -q '"accuracy":0\.[5-9]' "$tmp/eval-cpu.json" && cmp -s "$tmp/eval-cpu.json" "$tmp/eval-dev.json" && ok \
  || bad "eval on the device: $(head -c 200 "$tmp/eval-dev.json")"
"$CPU" export-images --split test --limit 40 --out "$tmp/pred" >/dev/null
images=("$tmp"/pred/*/*.png)
"$CPU" predict --weights "$tmp/cpu-res/last.safetensors" --json "${images[@]}" >"$tmp/pred-cpu.json" 2>&1
"$DEV" predict --weights "$tmp/cpu-res/last.safetensors" --json --device cuda "${images[@]}" >"$tmp/pred-dev.json" 2>&1
[ "$(grep -c probability "$tmp/pred-cpu.json")" = 40 ] && cmp -s "$tmp/pred-cpu.json" "$tmp/pred-dev.json" && ok \
  || bad "predict on the device: $(head -c 200 "$tmp/pred-dev.json")"
# --precision reaches each command's graph: tf32 on the device (the stand-in's products are
# fp32 either way: the CPU's figures), bf16 refused by the stand-in, either refused on the CPU
"$DEV" eval --weights "$tmp/cpu-adam/last.safetensors" --json --device cuda --precision tf32 >"$tmp/eval-tf32.json" 2>&1
cmp -s "$tmp/eval-cpu.json" "$tmp/eval-tf32.json" && ok || bad "eval --precision tf32: $(head -c 200 "$tmp/eval-tf32.json")"
ck=$tmp/cpu-adam/last.safetensors
for c in "eval --weights $ck" "predict --weights $ck ${images[0]}" "prune --weights $ck --sweep 0.5" \
         "diagnose --model mlp --batch 16" "experiment --depths 2 --seeds 1 --limit 256 --remedies off"; do
  # shellcheck disable=SC2086
  expect 1 "stand-in (tests/fake_cuda.c) has no bf16" "$DEV" $c --device cuda --precision bf16
  # shellcheck disable=SC2086
  expect 1 "precision tf32 is a GPU's: run on --device cuda" "$CPU" $c --precision tf32
done
# prune on the device: the CPU's pruned checkpoint bit for bit, and its sweep's table
for dev in cpu cuda; do
  bin=$CPU; [ "$dev" = cuda ] && bin=$DEV
  "$bin" prune --weights "$tmp/cpu-adam/last.safetensors" --amount 0.5 --structure units --out "$tmp/pruned-$dev.safetensors" \
    --device "$dev" >/dev/null 2>&1
  "$bin" prune --weights "$tmp/cpu-adam/last.safetensors" --sweep 0.3,0.7 --data "$data" --device "$dev" >"$tmp/sweep-$dev" 2>&1
done
same "$tmp/pruned-cpu.safetensors" "$tmp/pruned-cuda.safetensors" "prune on the device"
[ "$(grep -c '^0\.[037]0 ' "$tmp/sweep-cpu")" = 3 ] && cmp -s "$tmp/sweep-cpu" "$tmp/sweep-cuda" && ok \
  || bad "prune --sweep on the device: $(cat "$tmp/sweep-cuda")"
# TF32 on the device (the stand-in's products are fp32 either way); not on the CPU; bf16 on
# neither (its kernels run in test_device_cli_emulated.sh)
"$DEV" "${common[@]}" --epochs 1 --device cuda --precision tf32 --checkpoint-dir "$tmp/tf32" >/dev/null 2>&1 \
  && ok || bad "--precision tf32 on the device"
expect 1 "precision tf32 is a GPU's" "$CPU" "${common[@]}" --precision tf32
expect 1 "stand-in (tests/fake_cuda.c) has no bf16" "$DEV" "${common[@]}" --device cuda --precision bf16
expect 1 "precision bf16 is a GPU's" "$CPU" "${common[@]}" --precision bf16
expect 2 "precision 'fp16': use fp32, tf32 or bf16" "$CPU" "${common[@]}" --precision fp16
# on the device too: that line alone, before GRA's default asks the precision for its tangents
expect 2 "precision 'fp16': use fp32, tf32 or bf16" "$DEV" "${common[@]}" --device cuda --precision fp16
[ "$(wc -l <"$tmp/err.out")" = 1 ] && ok || bad "--precision fp16 on the device: $(cat "$tmp/err.out")"
# bench on the device: per-op times (each op waited for) and the memory the model holds there
"$DEV" bench --model cnn --device cuda --batch 16 --steps 2 --layers >"$tmp/bench.out" 2>&1
grep -q "^conv2d " "$tmp/bench.out" && grep -Eq "device memory [1-9][0-9]* MiB" "$tmp/bench.out" && ok \
  || bad "bench --device cuda --layers: $(head -3 "$tmp/bench.out")"
"$DEV" bench --model cnn --device cuda --batch 16 --steps 4 --monitor >"$tmp/bench.out" 2>&1
grep -q "monitor: a watched step takes" "$tmp/bench.out" && ok || bad "bench --device cuda --monitor: $(tail -2 "$tmp/bench.out")"
# more than the device has free (the stand-in has 256 MiB): said before anything is allocated
expect 1 "is free on the device: lower --batch" "$DEV" "${common[@]}" --device cuda --model mlp:depth=4,width=4096 --batch 2048
echo "test_device_cli: $pass passed, $fail failed"
[ "$fail" = 0 ]

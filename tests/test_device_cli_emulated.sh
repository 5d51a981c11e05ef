#!/usr/bin/env bash
# test_device_cli_emulated.sh — `regrad train --device cuda` end to end with the CUDA backend's
# own kernels run on the host (regrad_emulated_device: the command linked with the .cu files
# built as plain C++, tests/cuda_emulation/), against the CPU's `regrad`: the checks
# bench/gpu/check.sh makes on a GPU, small.  An MLP takes the CPU's bits (the same products,
# kernels rounding as the CPU rounds); the monitor's sums and GRA's arithmetic add in the
# device's order, so their figures, GRA's repairs on an MLP and on a plain sigmoid CNN (every
# op's tangent kernel) and diagnose are compared within float rounding; and GRA's runs give
# the same bits with the device's blocks and threads run in the reverse order, and when
# stopped and resumed; a training step, a validation batch, an auxiliary head's test and
# lassonet's proximal step never wait for all the device's work, a watched step once, a
# step of GRA's about twice.
# bf16 trains
# an MLP to the CPU's fp32 accuracy within 0.02, resumes with its own bits and gives them
# in either order, watches it, repairs a deep sigmoid MLP with GRA, and plans resnet20v2 in
# well under fp32's memory.  Passes replayed as CUDA graphs give the bits of the passes run
# as they are; through cuDNN's convolutions (emulated) too, GRA's repairs of a plain CNN are
# the CPU's within float rounding.
# Usage: test_device_cli_emulated.sh REGRAD REGRAD_EMULATED_DEVICE CKPT_DIFF
set -uo pipefail
CPU=$1 DEV=$2 DIFF=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
# whether two files of JSON lines agree: the same text, numbers within relative tolerance tol
close() {
  local tol=$1
  paste <(tr ',:{}[]' '\n\n\n\n\n\n' <"$2") <(tr ',:{}[]' '\n\n\n\n\n\n' <"$3") | awk -F'\t' -v tol="$tol" '
    function num(s) { return s ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ }
    $1 != $2 {
      if (!num($1) || !num($2)) { bad = 1; print "differ: " $1 " " $2; exit }
      d = $1 - $2; if (d < 0) d = -d; m = $2 < 0 ? -$2 : $2
      if (d > tol * m && d > 1e-9) { bad = 1; print "differ: " $1 " " $2; exit }
    }
    END { exit bad }'
}
# the first 2,048 training and 1,000 test images: evaluating on all 10,000 would take most
# of the emulation's time
data=$("$(dirname "$0")/fashion_mnist_cut.sh" "$tmp/data" 2048 1000) || exit 1
common=(train --data "$data" --limit 2048 --batch 64 --seed 3 --threads 1 --quiet)

acc() { grep -o 'test_acc [0-9.]*' "$1" | cut -d' ' -f2; }
# an MLP over two epochs, and stopped after one and resumed: the CPU's bits
"$CPU" "${common[@]}" --epochs 2 --repair off --checkpoint-dir "$tmp/mlp-cpu" >"$tmp/mlp-cpu.out" 2>&1
"$DEV" "${common[@]}" --epochs 2 --repair off --device cuda --checkpoint-dir "$tmp/mlp-dev" >/dev/null 2>&1
r=$("$DIFF" "$tmp/mlp-cpu/last.safetensors" "$tmp/mlp-dev/last.safetensors" 2>&1 | tail -1)
[[ "$r" == *" 0 values differ" ]] && ok || bad "an MLP on the device: $r"
"$DEV" "${common[@]}" --epochs 2 --repair off --device cuda --stop-after 1 --checkpoint-dir "$tmp/mlp-stop" >/dev/null 2>&1
"$DEV" train --resume "$tmp/mlp-stop" --device cuda --quiet >/dev/null 2>&1
r=$("$DIFF" "$tmp/mlp-cpu/last.safetensors" "$tmp/mlp-stop/last.safetensors" 2>&1 | tail -1)
[[ "$r" == *" 0 values differ" ]] && ok || bad "stopped and resumed on the device: $r"

# neither a training step nor a validation batch waits for all the work queued (the loss
# and logits are read behind forward, the device going on meanwhile): twice the samples,
# twice the steps and validation batches, the same waits; and a watched step waits once
# (the pass's sums arrive with the update's)
waits() { grep -o '[0-9]* waits for all' "$1" | cut -d' ' -f1; }
for n in 512 1024; do
  for every in 0 1; do
    watch=(); [ "$every" = 1 ] && watch=(--monitor-every 1)
    REGRAD_EMULATION_COUNT=1 "$DEV" "${common[@]}" --limit "$n" --val-split 0.5 --epochs 1 --repair off \
      --model mlp:depth=2,width=32 --device cuda "${watch[@]}" >"$tmp/waits-$n-$every" 2>&1
  done
done
[ -n "$(waits "$tmp/waits-512-0")" ] && [ "$(waits "$tmp/waits-512-0")" = "$(waits "$tmp/waits-1024-0")" ] \
  && ok || bad "waits for the device: $(waits "$tmp/waits-512-0") over 4 steps, $(waits "$tmp/waits-1024-0") over 8"
[ -n "$(waits "$tmp/waits-512-1")" ] && [ "$(($(waits "$tmp/waits-1024-1") - $(waits "$tmp/waits-512-1")))" = 4 ] \
  && ok || bad "waits for the device, every step watched: $(waits "$tmp/waits-512-1") over 4 steps, $(waits "$tmp/waits-1024-1") over 8"
# the classic remedies on the device's kernels: the CPU's weights within float rounding,
# each remedy waiting for the device once a step (not once a unit or a tensor)
remedies=(--clip-norm 1 --clip-layer-norm 0.5 --agc 0.05 --max-norm 3 --model mlp:depth=2,width=32 --repair off --epochs 1)
"$CPU" "${common[@]}" --limit 1024 "${remedies[@]}" --checkpoint-dir "$tmp/rem-cpu" >/dev/null 2>&1
for n in 512 1024; do
  REGRAD_EMULATION_COUNT=1 "$DEV" "${common[@]}" --limit "$n" "${remedies[@]}" --device cuda \
    --checkpoint-dir "$tmp/rem-$n" >"$tmp/rem-$n.out" 2>&1
done
r=$("$DIFF" "$tmp/rem-cpu/last.safetensors" "$tmp/rem-1024/last.safetensors" 1e-5 2>&1 | tail -1)
w=$(($(waits "$tmp/rem-1024.out") - $(waits "$tmp/rem-512.out")))
[[ "$r" == *" 0 values differ" ]] && [ "$w" -le 32 ] && ok || bad "the remedies on the device: $r; $w waits over 8 more steps"

# lassonet's proximal step on the device's weights after each update: the CPU's weights,
# and no wait for the device that grows with the steps
lasso=("${common[@]}" --epochs 1 --repair off --model lassonet:width=40 --lasso 3)
"$CPU" "${lasso[@]}" --limit 1024 --checkpoint-dir "$tmp/lasso-cpu" >/dev/null 2>&1
for n in 512 1024; do
  REGRAD_EMULATION_COUNT=1 "$DEV" "${lasso[@]}" --limit "$n" --device cuda --checkpoint-dir "$tmp/lasso-$n" >"$tmp/lasso-$n.out" 2>&1
done
r=$("$DIFF" "$tmp/lasso-cpu/last.safetensors" "$tmp/lasso-1024/last.safetensors" 2>&1 | tail -1)
[[ "$r" == *" 0 values differ" ]] && [ -n "$(waits "$tmp/lasso-512.out")" ] \
  && [ "$(waits "$tmp/lasso-512.out")" = "$(waits "$tmp/lasso-1024.out")" ] \
  && ok || bad "lassonet on the device: $r; $(waits "$tmp/lasso-512.out") waits over 8 steps, $(waits "$tmp/lasso-1024.out") over 16"
# auxiliary heads' predictions read behind forward as well: the CPU's accuracies, and no
# wait for the device more than without the heads
aux=("${common[@]}" --limit 512 --epochs 1 --repair off --model mlp:depth=4,width=32)
"$CPU" "${aux[@]}" --aux-heads 2 >"$tmp/aux-cpu" 2>&1
REGRAD_EMULATION_COUNT=1 "$DEV" "${aux[@]}" --aux-heads 2 --device cuda >"$tmp/aux-dev" 2>&1
REGRAD_EMULATION_COUNT=1 "$DEV" "${aux[@]}" --device cuda >"$tmp/aux-none" 2>&1
[ "$(grep -c '^aux_head_.*test_acc' "$tmp/aux-cpu")" = 2 ] && cmp -s <(grep aux_head "$tmp/aux-cpu") <(grep aux_head "$tmp/aux-dev") \
  && [ -n "$(waits "$tmp/aux-none")" ] && [ "$(waits "$tmp/aux-dev")" = "$(waits "$tmp/aux-none")" ] \
  && ok || bad "auxiliary heads on the device: $(grep aux_head "$tmp/aux-dev"), $(waits "$tmp/aux-dev") waits against $(waits "$tmp/aux-none")"

# bf16: the CPU's fp32 accuracy within 0.02; stopped and resumed, and in the reverse
# order, its own bits; the monitor's figures within 2e-2 of fp32's on the CPU (but the
# means, near zero: bf16 moves them by ~0.5% of the spread); GRA repairing a 10-layer
# sigmoid MLP in bf16 to the CPU's fp32 accuracy within 0.01
bf16=("${common[@]}" --epochs 2 --repair off --device cuda --precision bf16)
# the memory it plans (summary --batch): resnet20v2's well under fp32's
plan() { "$DEV" summary --model resnet20v2 --batch 64 --device cuda --precision "$1" | sed -n 's/^Memory at .*: \([0-9.]*\) MiB$/\1/p'; }
p32=$(plan fp32) p16=$(plan bf16)
awk -v a="$p32" -v b="$p16" 'BEGIN { exit !(b > 0 && b < 0.6 * a) }' && ok || bad "bf16 plans $p16 MiB against fp32's $p32"
"$DEV" "${bf16[@]}" --checkpoint-dir "$tmp/bf16" >"$tmp/bf16.out" 2>&1
awk -v a="$(acc "$tmp/bf16.out")" -v b="$(acc "$tmp/mlp-cpu.out")" 'BEGIN { d = a - b; exit !(a > 0.5 && d < 0.02 && d > -0.02) }' \
  && ok || bad "an MLP in bf16: accuracy $(acc "$tmp/bf16.out") against fp32's $(acc "$tmp/mlp-cpu.out"): $(tail -1 "$tmp/bf16.out")"
# eval in bf16 on the device: the fp32 checkpoint's loss within 2e-2 of the CPU's, not its bits
figure() { grep -o "\"$1\":[0-9.e-]*" "$2" | tail -1 | cut -d: -f2; }
"$CPU" eval --weights "$tmp/mlp-cpu/last.safetensors" --json >"$tmp/eval-cpu.json" 2>&1
"$DEV" eval --weights "$tmp/mlp-cpu/last.safetensors" --json --device cuda --precision bf16 >"$tmp/eval-bf16.json" 2>&1
awk -v a="$(figure loss "$tmp/eval-bf16.json")" -v b="$(figure loss "$tmp/eval-cpu.json")" \
  'BEGIN { d = (a - b) / b; exit !(b > 0 && a != b && d < 2e-2 && d > -2e-2) }' \
  && ok || bad "eval in bf16: loss $(figure loss "$tmp/eval-bf16.json") against fp32's $(figure loss "$tmp/eval-cpu.json")"
"$DEV" "${bf16[@]}" --stop-after 1 --checkpoint-dir "$tmp/bf16-stop" >/dev/null 2>&1
"$DEV" train --resume "$tmp/bf16-stop" --device cuda --precision bf16 --quiet >/dev/null 2>&1
REGRAD_EMULATION_ORDER=reverse "$DEV" "${bf16[@]}" --checkpoint-dir "$tmp/bf16-rev" >/dev/null 2>&1
for other in bf16-stop bf16-rev; do
  r=$("$DIFF" "$tmp/bf16/last.safetensors" "$tmp/$other/last.safetensors" 2>&1 | tail -1)
  [[ "$r" == *" 0 values differ" ]] && ok || bad "bf16, $other: $r"
done
"$CPU" "${common[@]}" --epochs 1 --repair off --monitor-every 4 --limit 512 --metrics "$tmp/bm-cpu.jsonl" >/dev/null 2>&1
"$DEV" "${bf16[@]}" --epochs 1 --repair off --monitor-every 4 --limit 512 --metrics "$tmp/bm-dev.jsonl" >/dev/null 2>&1
nomeans() { grep '"event":"health"' "$1" | sed -E 's/"(pre_mean|act_mean)":[^,}]*//g'; }
[ "$(nomeans "$tmp/bm-cpu.jsonl" | wc -l)" = 2 ] && r=$(close 2e-2 <(nomeans "$tmp/bm-dev.jsonl") <(nomeans "$tmp/bm-cpu.jsonl")) \
  && ok || bad "the monitor on bf16: $r"
gra=(--epochs 1 --repair auto --model mlp:depth=10,width=64,act=sigmoid --metrics)
"$CPU" "${common[@]}" "${gra[@]}" "$tmp/bg-cpu.jsonl" >"$tmp/bg-cpu" 2>&1
"$DEV" "${common[@]}" "${gra[@]}" "$tmp/bg-dev.jsonl" --device cuda --precision bf16 >"$tmp/bg-dev" 2>&1
[ "$(grep -c '"event":"repair"' "$tmp/bg-dev.jsonl")" -gt 4 ] \
  && awk -v a="$(acc "$tmp/bg-dev")" -v b="$(acc "$tmp/bg-cpu")" 'BEGIN { d = a - b; exit !(a > 0.5 && d < 0.01 && d > -0.01) }' \
  && ok || bad "GRA in bf16: accuracy $(acc "$tmp/bg-dev") against fp32's $(acc "$tmp/bg-cpu") on the CPU"

# the monitor's figures and the curvature along the steps, from the device's sums
mon=(--epochs 1 --repair off --monitor-every 4 --curvature-every 2 --limit 512)
"$CPU" "${common[@]}" "${mon[@]}" --metrics "$tmp/mon-cpu.jsonl" >/dev/null 2>&1
"$DEV" "${common[@]}" "${mon[@]}" --device cuda --metrics "$tmp/mon-dev.jsonl" >/dev/null 2>&1
grep '"event":"health"' "$tmp/mon-cpu.jsonl" >"$tmp/h-cpu"; grep '"event":"health"' "$tmp/mon-dev.jsonl" >"$tmp/h-dev"
[ "$(wc -l <"$tmp/h-cpu")" = 2 ] && grep -q '"step_curvature":[0-9]' "$tmp/h-cpu" && r=$(close 1e-4 "$tmp/h-dev" "$tmp/h-cpu") \
  && ok || bad "the monitor on the device: $r"
# diagnose, its curvature too (the layers' Gauss-Newton and the network's Hessian top
# eigenvalues from the device's products): the CPU's within float rounding
"$CPU" diagnose --model mlp:depth=6,act=sigmoid --batch 128 --curvature 5 --json >"$tmp/diag-cpu.json" 2>&1
"$DEV" diagnose --model mlp:depth=6,act=sigmoid --batch 128 --curvature 5 --json --device cuda >"$tmp/diag-dev.json" 2>&1
# (but for the figures of a deep sigmoid layer that a spread of 1e-3 or less around its mean
# leaves to rounding: the CPU adds a dense layer's units in float, the device in double; and
# the inputs' condition numbers, 1e9 to 1e10 here)
rounded() { sed -E 's/"(pre_std|mean_outlier|input_cond)":[^,}]*//g' "$1"; }
grep -q '"vanishing"' "$tmp/diag-cpu.json" && grep -q '"hessian_top":[0-9]' "$tmp/diag-cpu.json" \
  && r=$(close 1e-4 <(rounded "$tmp/diag-dev.json") <(rounded "$tmp/diag-cpu.json")) && ok || bad "diagnose on the device: $r"

# the report's layers' Gauss-Newton eigenvalues (power iteration on the device's products):
# the CPU's within 1e-4 (batch 16: the report measures on one batch's samples, up to 64, and
# a small one keeps the emulation's 80 passes short)
gn() { grep '"event":"curvature"' "$1" | grep -o '"gn_top":[^,]*'; }
rep=(--limit 256 --batch 16 --epochs 1 --repair off --model cnn)
"$CPU" "${common[@]}" "${rep[@]}" --report "$tmp/rep-cpu.html" >/dev/null 2>&1
"$DEV" "${common[@]}" "${rep[@]}" --device cuda --report "$tmp/rep-dev.html" >/dev/null 2>&1
[ "$(gn "$tmp/rep-cpu.html.jsonl" | grep -c ':[0-9]')" = 8 ] && r=$(close 1e-4 <(gn "$tmp/rep-dev.html.jsonl") <(gn "$tmp/rep-cpu.html.jsonl")) \
  && ok || bad "the report's Gauss-Newton eigenvalues on the device: $r"

# GRA repairing a 10-layer sigmoid MLP and a 6-layer sigmoid plain CNN: the CPU's actions at
# the CPU's steps, their factors within float rounding, the same test accuracy
repairs() { grep '"event":"repair"' "$1"; }
for model in mlp:depth=10,width=64,act=sigmoid plaincnn:depth=6,width=8,act=sigmoid,init=torch; do
  gra=(--epochs 1 --repair auto --model "$model" --metrics)
  [ "${model%%:*}" = plaincnn ] && gra=(--limit 512 "${gra[@]}")
  "$CPU" "${common[@]}" "${gra[@]}" "$tmp/gra-cpu.jsonl" >"$tmp/gra-cpu" 2>&1
  "$DEV" "${common[@]}" "${gra[@]}" "$tmp/gra-dev.jsonl" --device cuda --checkpoint-dir "$tmp/gra" >"$tmp/gra-dev" 2>&1
  # every block and thread run in the reverse order: the same bits (no result depends on
  # the order a GPU runs them in)
  REGRAD_EMULATION_ORDER=reverse "$DEV" "${common[@]}" "${gra[@]}" "$tmp/gra-rev.jsonl" --device cuda \
    --checkpoint-dir "$tmp/gra-rev" >/dev/null 2>&1
  r=$("$DIFF" "$tmp/gra/last.safetensors" "$tmp/gra-rev/last.safetensors" 2>&1 | tail -1)
  [[ "$r" == *" 0 values differ" ]] && ok || bad "GRA on $model, blocks and threads in reverse: $r"
  repairs "$tmp/gra-cpu.jsonl" >"$tmp/r-cpu"; repairs "$tmp/gra-dev.jsonl" >"$tmp/r-dev"
  [ "$(wc -l <"$tmp/r-cpu")" -gt 4 ] && r=$(close 1e-3 "$tmp/r-dev" "$tmp/r-cpu") \
    && awk -v a="$(acc "$tmp/gra-dev")" -v b="$(acc "$tmp/gra-cpu")" 'BEGIN { d = a - b; exit !(a > 0 && d < 0.005 && d > -0.005) }' \
    && ok || bad "GRA on $model on the device: $(wc -l <"$tmp/r-dev") repairs against $(wc -l <"$tmp/r-cpu"), $r, accuracy $(acc "$tmp/gra-dev") against $(acc "$tmp/gra-cpu")"
done
# GRA stopped after an epoch and resumed on the device: the straight run's bits over 64
# steps (its guards' levels, the Newton guard's scale and the inputs' moments come back from
# the checkpoint, and the device's copies of the moments are made again; the re-probe and
# the Newton guard's measurement at step 50 fall after the resume)
gr=(--epochs 2 --repair auto --model mlp:depth=6,width=32,act=sigmoid --device cuda)
"$DEV" "${common[@]}" "${gr[@]}" --checkpoint-dir "$tmp/gr-straight" >/dev/null 2>&1
"$DEV" "${common[@]}" "${gr[@]}" --stop-after 1 --checkpoint-dir "$tmp/gr-stop" >/dev/null 2>&1
"$DEV" train --resume "$tmp/gr-stop" --device cuda --quiet >/dev/null 2>&1
r=$("$DIFF" "$tmp/gr-straight/last.safetensors" "$tmp/gr-stop/last.safetensors" 2>&1 | tail -1)
[[ "$r" == *" 0 values differ" ]] && ok || bad "GRA stopped and resumed on the device: $r"
# GRA's step waits for the device about twice: once for its guards, once for its trust
# region (a layer whose coarse bounds leave its cap open has the sums of its split's bound
# queued with the step's own the next step, not in a wait of its own, and so has one whose
# cap needed the exact figure): over 16 more steps of a 20-layer sigmoid MLP (width 32,
# whose waits and caps are width 64's, in less time), at most 40
# more waits (52 before the split bounds went ahead); over its steps 9 to 16, where the
# first layer's cap needs the exact figure every step, at most 20 (25 before it went ahead);
# and GRA's probe with the first step at most 205 (231 when each layer's input moments were
# read back at once, not with the pass's sums, 161 now; the probe's repairs copy weights up
# and down)
for n in 64 512 1024 2048; do
  REGRAD_EMULATION_COUNT=1 "$DEV" "${common[@]}" --limit "$n" --epochs 1 --repair auto \
    --model mlp:depth=20,width=32,act=sigmoid --device cuda >"$tmp/gra-waits-$n" 2>&1
done
w=$(($(waits "$tmp/gra-waits-2048") - $(waits "$tmp/gra-waits-1024")))
[ -n "$(waits "$tmp/gra-waits-1024")" ] && [ "$w" -le 40 ] && ok || bad "GRA's waits for the device: $w over 16 steps"
w=$(($(waits "$tmp/gra-waits-1024") - $(waits "$tmp/gra-waits-512")))
[ -n "$(waits "$tmp/gra-waits-512")" ] && [ "$w" -le 20 ] && ok || bad "GRA's waits for the device: $w over steps 9 to 16"
w=$(waits "$tmp/gra-waits-64")
[ -n "$w" ] && [ "$w" -le 205 ] && ok || bad "GRA's waits for the device: ${w:-none} over its probe and first step"
# CUDA graphs (REGRAD_GRAPHS=1): passes captured and replayed give the bits of the passes
# run as they are: the MLP (the CPU's bits), bf16, and GRA on the plain sigmoid CNN (its
# watched passes replayed too); and the emulation replayed graphs
graphs() { grep -o '[0-9]* graphs$' "$1" | cut -d' ' -f1; }
replayed() {
  local name=$1 base=$2; shift 2
  REGRAD_GRAPHS=1 REGRAD_EMULATION_COUNT=1 "$DEV" "$@" --checkpoint-dir "$tmp/graphs-$name" >"$tmp/graphs-$name.out" 2>&1
  r=$("$DIFF" "$base" "$tmp/graphs-$name/last.safetensors" 2>&1 | tail -1)
  [[ "$r" == *" 0 values differ" ]] && [ "$(graphs "$tmp/graphs-$name.out")" -gt 0 ] \
    && ok || bad "CUDA graphs, $name: $r, $(graphs "$tmp/graphs-$name.out") graphs launched"
}
replayed mlp "$tmp/mlp-cpu/last.safetensors" "${common[@]}" --epochs 2 --repair off --device cuda
# and its test loss and accuracy, read behind replayed forward passes, the CPU's
tested() { grep -o 'test_loss [0-9.]*  test_acc [0-9.]*' "$1"; }
[ -n "$(tested "$tmp/mlp-cpu.out")" ] && [ "$(tested "$tmp/mlp-cpu.out")" = "$(tested "$tmp/graphs-mlp.out")" ] \
  && ok || bad "CUDA graphs, the MLP's test figures: $(tested "$tmp/graphs-mlp.out") against $(tested "$tmp/mlp-cpu.out")"
replayed bf16 "$tmp/bf16/last.safetensors" "${bf16[@]}"
replayed gra "$tmp/gra/last.safetensors" "${common[@]}" "${gra[@]}" "$tmp/graphs-gra.jsonl" --device cuda
# cuDNN's convolutions (emulated: cudnn.cu's plans, algorithms, scratch, beta) in replayed
# passes: GRA's repairs of the plain CNN within float rounding of the CPU's, its accuracy
REGRAD_EMULATION_CUDNN=1 REGRAD_GRAPHS=1 REGRAD_EMULATION_COUNT=1 "$DEV" "${common[@]}" "${gra[@]}" "$tmp/cudnn.jsonl" \
  --device cuda >"$tmp/cudnn.out" 2>&1
repairs "$tmp/cudnn.jsonl" >"$tmp/r-cudnn"
[ "$(graphs "$tmp/cudnn.out")" -gt 0 ] && r=$(close 1e-3 "$tmp/r-cudnn" "$tmp/r-cpu") \
  && awk -v a="$(acc "$tmp/cudnn.out")" -v b="$(acc "$tmp/gra-cpu")" 'BEGIN { d = a - b; exit !(a > 0 && d < 0.005 && d > -0.005) }' \
  && ok || bad "GRA on the plain CNN through cuDNN, replayed: $(wc -l <"$tmp/r-cudnn") repairs, $r, accuracy $(acc "$tmp/cudnn.out") against $(acc "$tmp/gra-cpu")"
# cuDNN's nondeterministic algorithms only when asked for (REGRAD_CUDNN_DETERMINISTIC=0): a
# small CNN through the emulated cuDNN runs none by default and some so (the emulation's
# nondeterministic algorithm computes what the deterministic one does: the same bits)
nd() { grep -o '[0-9]* convolutions on nondeterministic' "$1" | cut -d' ' -f1; }
small=(--model plaincnn:depth=3,width=4 --limit 256 --epochs 1 --repair off --device cuda)
for d in 1 0; do
  REGRAD_EMULATION_CUDNN=1 REGRAD_CUDNN_DETERMINISTIC=$d REGRAD_EMULATION_COUNT=1 "$DEV" "${common[@]}" "${small[@]}" \
    --checkpoint-dir "$tmp/nd-$d" >"$tmp/nd-$d.out" 2>&1
done
r=$("$DIFF" "$tmp/nd-1/last.safetensors" "$tmp/nd-0/last.safetensors" 2>&1 | tail -1)
[ -z "$(nd "$tmp/nd-1.out")" ] && [ -z "$(nd "$tmp/cudnn.out")" ] && [ "$(nd "$tmp/nd-0.out")" -gt 0 ] \
  && [[ "$r" == *" 0 values differ" ]] && ok \
  || bad "cuDNN's nondeterministic algorithms: $(nd "$tmp/nd-1.out") by default, $(nd "$tmp/nd-0.out") when allowed; $r"
# the step's curvature is measured in a side pass at the weights the step began from: not
# the training forward's replay (its kernels hold the training weights' address), so the
# health lines (step_slope among them) are those without graphs
curv=(train --limit 512 --batch 32 --seed 3 --threads 1 --quiet --epochs 1 --repair off --monitor-every 2
      --curvature-every 1 --model mlp:depth=4,width=32,act=sigmoid --device cuda)
health() { grep '"event":"health"' "$1"; }
"$DEV" "${curv[@]}" --metrics "$tmp/curv.jsonl" >/dev/null 2>&1
REGRAD_GRAPHS=1 REGRAD_EMULATION_COUNT=1 "$DEV" "${curv[@]}" --metrics "$tmp/curv-graphs.jsonl" >"$tmp/curv-graphs.out" 2>&1
[ "$(health "$tmp/curv.jsonl" | wc -l)" -gt 4 ] && cmp -s <(health "$tmp/curv.jsonl") <(health "$tmp/curv-graphs.jsonl") \
  && [ "$(graphs "$tmp/curv-graphs.out")" -gt 0 ] && ok || bad "CUDA graphs, the step's curvature: the health lines differ"
# every capture broken at its first launch: each pass runs again uncaptured (bf16: its
# weights' copies made again), the same bits, no graph, and the warning
REGRAD_GRAPHS=1 REGRAD_EMULATION_BREAK_CAPTURE=1 REGRAD_EMULATION_COUNT=1 "$DEV" "${bf16[@]}" \
  --checkpoint-dir "$tmp/graphs-broken" >"$tmp/graphs-broken.out" 2>&1
r=$("$DIFF" "$tmp/bf16/last.safetensors" "$tmp/graphs-broken/last.safetensors" 2>&1 | tail -1)
[[ "$r" == *" 0 values differ" ]] && [ "$(graphs "$tmp/graphs-broken.out")" = 0 ] \
  && grep -q 'a pass ran uncaptured' "$tmp/graphs-broken.out" && ok || bad "CUDA graphs, every capture broken: $r"
echo "test_device_cli_emulated: $pass passed, $fail failed"
[ "$fail" = 0 ]

#!/usr/bin/env bash
# test_device_random.sh — random small networks (tests/random_nets.py: odd map sizes,
# padding that differs on every side, dilation, strides, groups, depthwise, pooling with
# padding, residual adds and concatenations, batch norm, dense layers) trained for an epoch
# of 64 random images on the CPU and on the device, from the same ONNX weights: the weights
# must end within 1e-4 of the CPU's (float rounding: 4.4e-5 at most over 600 such networks
# on the emulation; two others past it are ill-conditioned, docs/cuda.md) and the test
# split's loss within 1e-4.  The networks take turns through the backend's own
# convolutions (batch 16, batch norms frozen: on their running statistics), the emulated
# cuDNN's (momentum, weight decay, clipping, batch 5, every launch's blocks and threads run
# in the reverse order) and CUDA graphs (Nesterov, batch 7, graphs replayed where the
# network has no dropout), each with options drawn from its seed (drawn_options below);
# those drawn a second epoch are also stopped after the first and resumed on the device,
# which must give the straight run's bits.  The device runs with guarded memory: a kernel
# that writes past its output fails the run; and each network trains on it once more in
# bf16, to a finite test loss (under GRA too).  In CI the device is regrad_emulated_device (the
# kernels on the host); on a GPU (bench/gpu/check.sh) regrad itself, whose cuDNN takes
# every convolution it can express in all three turns.
# The networks are made with /usr/bin/python3's onnx and numpy (make test's setup installs
# them; without them the test says so and is skipped), or read from REGRAD_RANDOM_NETS/SEED
# where made beforehand (bench/gpu/bundle.sh: a GPU machine may have neither).
# With REGRAD_RANDOM_REPAIR=1 each network trains with GRA (--repair auto, SGD, batch 8)
# instead, and the device must take the CPU's repairs: the same step, layer, verdict and
# action for each, in order, their factors within 1e-3 (under Adam, whose first steps go by
# the gradients' signs, a gradient that is zero but for rounding moves its weight by the
# learning rate, one way or the other).  With REGRAD_RANDOM_REPAIR=vanishing (CTest's
# test_device_random_repair) the networks are random_nets.py's vanishing ones, plain stacks
# of sigmoid or tanh convolutions that GRA repairs throughout, and the weights must also
# end within 1e-3 of each tensor's largest value.
# REGRAD_RANDOM_SECONDS=S starts no network after S seconds (check.sh's device time is
# short), and says so.
# Usage: test_device_random.sh REGRAD DEVICE_REGRAD CKPT_DIFF [FIRST_SEED LAST_SEED]
set -u
CPU=$1 DEV=$2 DIFF=$3 first=${4:-1} last=${5:-48}
here=$(cd "$(dirname "$0")" && pwd)
made=${REGRAD_RANDOM_NETS:-} gra=${REGRAD_RANDOM_REPAIR:-} vanishing=
[ "$gra" = vanishing ] && vanishing=1
if [ -z "$made" ] && ! /usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 has no onnx or numpy (apt-get install python3-onnx python3-numpy)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 runs=0 largest=0 resumed=0
loss() { grep -o 'test_loss [0-9.e+-]*' "$1" | cut -d' ' -f2; } # the test split's, from --quiet's line
repairs() { grep '"event":"repair"' "$1" | sed -E 's/,"factor":[^,}]*//'; } # GRA's actions but their factors
factors() { grep '"event":"repair"' "$1" | grep -o '"factor":[^,}]*' | cut -d: -f2; }
# the device's regrad in the turn's environment, each activation buffer in memory of its
# own with canaries after it, checked after every pass (a kernel that writes past its
# output fails the run, though the value it wrote may change nothing)
device() { env "${env[@]}" REGRAD_GUARD_MEMORY=1 "$DEV" "$@"; }
# bf16_fails: the network trained once more on the device in bf16 (its own kernels, four
# values a load), guarded, and what failed if it does not end at a finite test loss (how
# far bf16 moves a step: tools/bf16_error.py)
bf16_fails() {
  device train "${args[@]}" --device cuda --precision bf16 --checkpoint-dir "$d/bf16" >"$d/bf16.log" 2>&1 &&
    [[ "$(loss "$d/bf16.log")" =~ ^[0-9]+(\.[0-9]*)?(e[-+]?[0-9]+)?$ ]] && return 1
  echo "FAIL: $what: in bf16 on the device: $(tail -n 1 "$d/bf16.log")"
}
actions=0
# pick K N: a number below N drawn from the seed and K, by bash's own 64-bit arithmetic
# (the same options for a seed on every machine)
pick() {
  local h=$(( (seed * 2654435761 + $1 * 40503 + 12345) & 0xffffffff ))
  h=$(( ((h ^ (h >> 15)) * 2246822519) & 0xffffffff ))
  echo $(( (h ^ (h >> 13)) % $2 ))
}
# drawn_options DIR: the options each network trains with besides its turn's, drawn from
# its seed: the turn of the backend's own convolutions takes SGD, Adagrad, RMSProp, Adam or
# AdamW (the others take momentum and Nesterov; its batch norms are frozen, so no gradient
# is zero but for rounding, which the adaptive ones' first steps would follow by its sign),
# and every turn a schedule, a loss, a clipping, max-norm, a frozen convolution, and
# pruning at the end of a first epoch with a second trained on its masks (epochs=2)
drawn_options() {
  if [ "$turn" = 0 ]; then
    local opt=(sgd adagrad rmsprop adam adamw)
    opt=${opt[$(pick 1 5)]}
    flags=("${flags[@]/sgd/$opt}")
    [ "$opt" != sgd ] && repair=(--repair off --lr 0.001)
  fi
  local schedule=(constant cosine cosine:0.001,warmup:3 step:1:0.5)
  flags+=(--schedule "${schedule[$(pick 2 4)]}")
  case $(pick 3 4) in 0) flags+=(--loss mse) ;; 1) flags+=(--label-smoothing 0.1) ;; esac
  case $(pick 4 4) in 0) flags+=(--clip-value 0.05) ;; 1) flags+=(--clip-layer-norm 0.5) ;; 2) flags+=(--agc 0.05) ;; esac
  [ "$(pick 5 3)" = 0 ] && flags+=(--max-norm 1)
  # (the convolutions and hidden dense layers: what pruning takes; the classifier is fc)
  local summary convs
  summary=$("$CPU" summary --model "onnx:$1/model.onnx")
  convs=($(awk '$2 == "(conv2d)" { print $1 }' <<<"$summary"))
  [ "${#convs[@]}" -gt 0 ] && [ "$(pick 6 3)" = 0 ] && flags+=(--freeze "${convs[$(pick 7 ${#convs[@]})]}")
  if grep -q '(conv2d)\|^ dense[0-9]* (dense)' <<<"$summary" && [ "$(pick 8 4)" = 0 ]; then
    local structure=(weights units)
    epochs=2 flags+=(--prune-schedule 0.5:1:1 --prune-structure "${structure[$(pick 9 2)]}")
  fi
}
started=$SECONDS stopped=
for seed in $(seq "$first" "$last"); do
  if [ -n "${REGRAD_RANDOM_SECONDS:-}" ] && [ $((SECONDS - started)) -ge "$REGRAD_RANDOM_SECONDS" ]; then
    stopped=" (out of time after $((seed - first)) networks)"
    break
  fi
  d=$tmp/$seed
  if [ -n "$made" ]; then
    cp -r "$made/$seed" "$d" || { echo "FAIL: seed $seed: not in $made"; fail=$((fail + 1)); continue; }
  elif ! /usr/bin/python3 "$here/random_nets.py" "$seed" "$d" ${vanishing:+vanishing}; then
    echo "FAIL: seed $seed: random_nets.py failed"; fail=$((fail + 1)); continue
  fi
  turn=$((seed % 3)) epochs=1 cpu_metrics=() dev_metrics=()
  if [ -n "$gra" ]; then
    env=() flags=(--batch 8 --optimizer sgd) repair=(--repair auto)
    cpu_metrics=(--metrics "$d/cpu.metrics") dev_metrics=(--metrics "$d/dev.metrics")
  else
    case $turn in
      0) env=() flags=(--batch 16 --optimizer sgd) ;;
      1) env=(REGRAD_EMULATION_CUDNN=1 REGRAD_EMULATION_ORDER=reverse) flags=(--batch 5 --optimizer momentum --weight-decay 1e-3 --clip-norm 1) ;;
      2) env=(REGRAD_GRAPHS=1 REGRAD_EMULATION_COUNT=1) flags=(--batch 7 --optimizer nesterov) ;;
    esac
    # (frozen batch norms run on their running statistics in training too)
    [ "$turn" = 0 ] && grep -q BatchNormalization "$d/layers.txt" && flags+=(--freeze 'bn*')
    repair=(--repair off --lr 0.01)
    drawn_options "$d"
  fi
  args=(--model "onnx:$d/model.onnx" --data "idx:$d/train-images,$d/train-labels,$d/test-images,$d/test-labels"
        --epochs "$epochs" --seed 1 --threads 1 --quiet "${repair[@]}" "${flags[@]}")
  what="seed $seed (${env[*]} --epochs $epochs ${flags[*]}; $(cat "$d/layers.txt"))"
  if ! "$CPU" train "${args[@]}" "${cpu_metrics[@]}" --checkpoint-dir "$d/cpu" >"$d/cpu.log" 2>&1; then
    echo "FAIL: $what: the CPU's run: $(tail -n 1 "$d/cpu.log")"; fail=$((fail + 1)); continue
  fi
  if ! device train "${args[@]}" "${dev_metrics[@]}" --device cuda --checkpoint-dir "$d/dev" \
       >"$d/dev.log" 2>&1; then
    echo "FAIL: $what: the device's run: $(tail -n 2 "$d/dev.log")"; fail=$((fail + 1)); continue
  fi
  if [ -n "$gra" ]; then
    if ! diff <(repairs "$d/cpu.metrics") <(repairs "$d/dev.metrics") >"$d/repairs.diff"; then
      echo "FAIL: $what: the device's repairs are not the CPU's: $(head -n 4 "$d/repairs.diff" | tr '\n' ' ')"
      fail=$((fail + 1)); continue
    fi
    # their factors: within 1e-3 of the CPU's, and the weights the repairs leave within 1e-3
    apart=$(paste -d' ' <(factors "$d/cpu.metrics") <(factors "$d/dev.metrics") |
            awk '{ d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1; r = d / (m > 1e-30 ? m : 1e-30); if (r > worst) worst = r }
                 END { print worst + 0 }')
    if awk -v a="$apart" 'BEGIN { exit !(a > 1e-3) }'; then
      echo "FAIL: $what: the device's repair factors are $apart apart from the CPU's"; fail=$((fail + 1)); continue
    fi
    if [ -n "$vanishing" ] && ! out=$("$DIFF" "$d/cpu/last.safetensors" "$d/dev/last.safetensors" 1e-3 relative); then
      echo "FAIL: $what: the device's weights under GRA are not the CPU's: $out"; fail=$((fail + 1)); continue
    fi
    if bf16_fails; then fail=$((fail + 1)); continue; fi
    largest=$(awk -v a="$largest" -v b="$apart" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
    runs=$((runs + 1)) actions=$((actions + $(repairs "$d/dev.metrics" | wc -l)))
    continue
  fi
  # (the emulation counts the graphs it replays; a pass with dropout draws new masks each
  # step and is never captured)
  if [ "$turn" = 2 ] && grep -q 'cuda emulation' "$d/dev.log" && ! grep -q Dropout "$d/layers.txt" &&
     ! grep -q ' [1-9][0-9]* graphs' "$d/dev.log"; then
    echo "FAIL: $what: no graph replayed: $(grep 'cuda emulation' "$d/dev.log")"; fail=$((fail + 1)); continue
  fi
  out=$("$DIFF" "$d/cpu/last.safetensors" "$d/dev/last.safetensors" 1e-4)
  ok=$?
  if [ "$ok" != 0 ]; then
    echo "FAIL: $what: the device's weights are not the CPU's: $out"; fail=$((fail + 1)); continue
  fi
  diff=$(echo "$out" | grep -o 'difference| [0-9.e+-]*' | cut -d' ' -f2)
  largest=$(awk -v a="$largest" -v b="${diff:-0}" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
  # and the test split's loss after training (inference: batch norm on its running statistics)
  if ! awk -v a="$(loss "$d/cpu.log")" -v b="$(loss "$d/dev.log")" \
       'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-4 * (a < 0 ? -a : a) + 1e-6) }'; then
    echo "FAIL: $what: test loss $(loss "$d/dev.log") on the device, $(loss "$d/cpu.log") on the CPU"; fail=$((fail + 1)); continue
  fi
  # two epochs stopped after the first and resumed on the device: the straight run's bits
  if [ "$epochs" = 2 ]; then
    if ! device train "${args[@]}" --device cuda --stop-after 1 --checkpoint-dir "$d/half" >"$d/half.log" 2>&1 ||
       ! device train --resume "$d/half" --device cuda >"$d/resumed.log" 2>&1; then
      echo "FAIL: $what: stopping or resuming on the device: $(tail -n 1 "$d/half.log" "$d/resumed.log" | tr '\n' ' ')"
      fail=$((fail + 1)); continue
    fi
    if ! out=$("$DIFF" "$d/dev/last.safetensors" "$d/half/last.safetensors" 0); then
      echo "FAIL: $what: resumed on the device, not the straight run's bits: $out"; fail=$((fail + 1)); continue
    fi
    resumed=$((resumed + 1))
  fi
  if bf16_fails; then fail=$((fail + 1)); continue; fi
  runs=$((runs + 1))
done
if [ -n "$gra" ]; then
  echo "test_device_random: $runs of $((last - first + 1)) random${vanishing:+ vanishing} networks take the CPU's repairs ($actions actions, their factors within $largest)$stopped"
else
  echo "test_device_random: $runs of $((last - first + 1)) random networks end at the CPU's weights and test loss (within 1e-4, the largest weight difference $largest; $resumed resumed after their first epoch with the straight run's bits)$stopped"
fi
[ "$fail" = 0 ]

#!/usr/bin/env bash
# test_device_random.sh — random small networks (tests/random_nets.py: odd map sizes,
# padding that differs on every side, dilation, strides, groups, depthwise, pooling with
# padding, residual adds and concatenations, batch norm, dense layers) trained for an epoch
# of 64 random images on the CPU and on the device, from the same ONNX weights: the weights
# must end within 1e-4 (float rounding: 4.4e-5 at most over 600 such networks on the
# emulation) and the test split's loss within 1e-4 of the CPU's.  The networks take turns
# through the backend's own convolutions (SGD, batch 16, batch norms frozen: on their
# running statistics), the emulated cuDNN's (momentum, weight decay, clipping, batch 5,
# every launch's blocks and threads run in the reverse order) and CUDA graphs (Nesterov,
# batch 7, graphs replayed where the network has no dropout).  In CI the device
# is regrad_emulated_device (the kernels on the host); on a GPU (bench/gpu/check.sh) regrad
# itself, whose cuDNN takes every convolution it can express in all three turns.
# The networks are made with /usr/bin/python3's onnx and numpy (make test's setup installs
# them; without them the test says so and is skipped), or read from REGRAD_RANDOM_NETS/SEED
# where made beforehand (bench/gpu/bundle.sh: a GPU machine may have neither).
# With REGRAD_RANDOM_REPAIR=1 (not in CTest) each network trains with GRA (--repair auto,
# SGD, batch 8) instead, and the device must take the CPU's repairs: the same step, layer,
# verdict and action for each, in order (their factors and the weights are rounding apart;
# under Adam, whose first steps go by the gradients' signs, a gradient that is zero but for
# rounding moves its weight by the learning rate, one way or the other).
# Usage: test_device_random.sh REGRAD DEVICE_REGRAD CKPT_DIFF [FIRST_SEED LAST_SEED]
set -u
CPU=$1 DEV=$2 DIFF=$3 first=${4:-1} last=${5:-48}
here=$(cd "$(dirname "$0")" && pwd)
made=${REGRAD_RANDOM_NETS:-} gra=${REGRAD_RANDOM_REPAIR:-}
if [ -z "$made" ] && ! /usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 has no onnx or numpy (apt-get install python3-onnx python3-numpy)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 runs=0 largest=0
loss() { grep -o 'test_loss [0-9.e+-]*' "$1" | cut -d' ' -f2; } # the test split's, from --quiet's line
repairs() { grep '"event":"repair"' "$1" | sed -E 's/,"factor":[^,}]*//'; } # GRA's actions but their factors
actions=0
for seed in $(seq "$first" "$last"); do
  d=$tmp/$seed
  if [ -n "$made" ]; then
    cp -r "$made/$seed" "$d" || { echo "FAIL: seed $seed: not in $made"; fail=$((fail + 1)); continue; }
  elif ! /usr/bin/python3 "$here/random_nets.py" "$seed" "$d"; then
    echo "FAIL: seed $seed: random_nets.py failed"; fail=$((fail + 1)); continue
  fi
  turn=$((seed % 3))
  case $turn in
    0) env=() flags=(--batch 16 --optimizer sgd) ;;
    1) env=(REGRAD_EMULATION_CUDNN=1 REGRAD_EMULATION_ORDER=reverse) flags=(--batch 5 --optimizer momentum --weight-decay 1e-3 --clip-norm 1) ;;
    2) env=(REGRAD_GRAPHS=1 REGRAD_EMULATION_COUNT=1) flags=(--batch 7 --optimizer nesterov) ;;
  esac
  # (frozen batch norms run on their running statistics in training too)
  [ "$turn" = 0 ] && grep -q BatchNormalization "$d/layers.txt" && flags+=(--freeze 'bn*')
  repair=(--repair off --lr 0.01) cpu_metrics=() dev_metrics=()
  if [ -n "$gra" ]; then
    env=() flags=(--batch 8 --optimizer sgd) repair=(--repair auto)
    cpu_metrics=(--metrics "$d/cpu.metrics") dev_metrics=(--metrics "$d/dev.metrics")
  fi
  args=(--model "onnx:$d/model.onnx" --data "idx:$d/train-images,$d/train-labels,$d/test-images,$d/test-labels"
        --epochs 1 --seed 1 --threads 1 --quiet "${repair[@]}" "${flags[@]}")
  what="seed $seed (${env[*]} ${flags[*]}; $(cat "$d/layers.txt"))"
  if ! "$CPU" train "${args[@]}" "${cpu_metrics[@]}" --checkpoint-dir "$d/cpu" >"$d/cpu.log" 2>&1; then
    echo "FAIL: $what: the CPU's run: $(tail -n 1 "$d/cpu.log")"; fail=$((fail + 1)); continue
  fi
  if ! env "${env[@]}" "$DEV" train "${args[@]}" "${dev_metrics[@]}" --device cuda --checkpoint-dir "$d/dev" \
       >"$d/dev.log" 2>&1; then
    echo "FAIL: $what: the device's run: $(tail -n 2 "$d/dev.log")"; fail=$((fail + 1)); continue
  fi
  if [ -n "$gra" ]; then
    if ! diff <(repairs "$d/cpu.metrics") <(repairs "$d/dev.metrics") >"$d/repairs.diff"; then
      echo "FAIL: $what: the device's repairs are not the CPU's: $(head -n 4 "$d/repairs.diff" | tr '\n' ' ')"
      fail=$((fail + 1)); continue
    fi
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
  diff=$(echo "$out" | grep -o 'difference| [0-9.e+-]*' | cut -d' ' -f2)
  largest=$(awk -v a="$largest" -v b="${diff:-0}" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
  if [ "$ok" != 0 ]; then
    echo "FAIL: $what: the device's weights are not the CPU's: $out"; fail=$((fail + 1)); continue
  fi
  # and the test split's loss after training (inference: batch norm on its running statistics)
  if ! awk -v a="$(loss "$d/cpu.log")" -v b="$(loss "$d/dev.log")" \
       'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-4 * (a < 0 ? -a : a) + 1e-6) }'; then
    echo "FAIL: $what: test loss $(loss "$d/dev.log") on the device, $(loss "$d/cpu.log") on the CPU"; fail=$((fail + 1)); continue
  fi
  runs=$((runs + 1))
done
if [ -n "$gra" ]; then
  echo "test_device_random: $runs of $((last - first + 1)) random networks take the CPU's repairs ($actions actions)"
else
  echo "test_device_random: $runs of $((last - first + 1)) random networks end at the CPU's weights and test loss (within 1e-4; largest weight difference $largest)"
fi
[ "$fail" = 0 ]

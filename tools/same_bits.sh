#!/usr/bin/env bash
# same_bits.sh — do two regrad binaries train to the same weights, bit for bit, and write
# the same health figures?  For a change meant to keep every bit (a kernel, a schedule, a
# memory layout): short runs over the model families, optimizers and kernel paths, each
# compared with `ckpt_diff A B 0` and the health lines of --monitor-every 1 (times aside).
# Usage: tools/same_bits.sh BIN_A BIN_B [CKPT_DIFF]   (default build/tests/ckpt_diff)
# Prints one line a run; exits 1 when any run differs.  Takes a few minutes.
set -uo pipefail
A=${1:?usage: same_bits.sh BIN_A BIN_B [CKPT_DIFF]}
B=${2:?usage: same_bits.sh BIN_A BIN_B [CKPT_DIFF]}
DIFF=${3:-build/tests/ckpt_diff}
for f in "$A" "$B" "$DIFF"; do [ -x "$f" ] || { echo "same_bits: no executable $f"; exit 2; }; done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# each run: [ENV=VALUE] train flags
runs=(
  "--model mlp:depth=2,width=256 --limit 3000"
  "--model mlp:depth=6,width=64,act=sigmoid --limit 3000"
  "--model mlp:depth=12,width=128,act=sigmoid --limit 3000 --repair auto"
  "--model mlp:depth=3,width=100,act=tanh --limit 2000 --max-norm 3"
  "--model mlp:depth=3,width=64,bn=1,residual=1 --limit 1000"
  "--model cnn --limit 1000"
  "REGRAD_DIRECT_CONV=0 --model cnn --limit 512"
  "--model plaincnn:depth=6,width=8,act=tanh --limit 1000"
  "--model resnet20v2 --limit 512"
  "REGRAD_MAX_ISA=AVX2 --model resnet20v2 --limit 256"
  "--model plain20 --limit 256"
  "--model densenet:depth=10,growth=8 --limit 256"
  "--model resnet18v2 --input-size 32x32 --limit 128"
)
for opt in sgd momentum nesterov adagrad rmsprop "rmsprop --momentum 0.9" adamw "sgd --weight-decay 0.01"; do
  runs+=("--model mlp:depth=3,width=100,act=tanh --limit 1500 --optimizer $opt")
done

health() { # the health and repair lines of a metrics file, without times and paths (nor the
            # curvature along a step, which only --curvature-every measures and older binaries lack)
  grep -v '"event":"epoch"\|"event":"end"' "$1" |
    sed 's/"path":"[^"]*"//g; s/"seconds":[0-9.e+-]*//g; s/"time[a-z_]*":[0-9.e+-]*//g
         s/"step_slope":[^,]*,"step_curvature":[^,]*,"newton_ratio":[^,]*,//g'
}
status=0
for run in "${runs[@]}"; do
  env_set=X=1
  case $run in REGRAD_*) env_set=${run%% *}; run=${run#* } ;; esac
  for side in A B; do
    bin=${!side}
    rm -rf "$tmp/$side" && mkdir -p "$tmp/$side"
    # shellcheck disable=SC2086
    if ! env "$env_set" "$bin" train $run --epochs 1 --seed 3 --monitor-every 1 \
        --metrics "$tmp/$side/m.jsonl" --checkpoint-dir "$tmp/$side/ck" >"$tmp/$side/out" 2>&1; then
      echo "FAILED ($side): $run: $(tail -1 "$tmp/$side/out")"; status=1; continue 2
    fi
    health "$tmp/$side/m.jsonl" >"$tmp/$side/h"
  done
  weights=$("$DIFF" "$tmp/A/ck/epoch_1.safetensors" "$tmp/B/ck/epoch_1.safetensors" 0)
  w=$?
  cmp -s "$tmp/A/h" "$tmp/B/h"; h=$?
  label="$run"; [ "$env_set" = X=1 ] || label="$env_set $run"
  if [ $w -eq 0 ] && [ $h -eq 0 ]; then
    echo "same       $label"
  else
    echo "DIFFERENT  $label: weights ${weights#*tensors, }; health lines $([ $h -eq 0 ] && echo same || echo differ)"
    status=1
  fi
done
exit $status

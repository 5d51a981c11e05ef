#!/usr/bin/env bash
# check.sh — the one script to run on a GPU machine (device time is short: prepare on the
# CPU, run this once, read it, fix, run again).  Builds regrad with the CUDA backend in
# build-gpu/ (or runs the programs bench/gpu/bundle.sh carried in build-gpu/carry/), runs
# the GPU tests (test_cuda: the kernels against the CPU; test_device_gpu: a graph on the
# device against the CPU, with cuDNN's convolutions and with regrad's own), ResNet50V2 and
# DenseNet121 with guarded memory (no kernel writes past a buffer), an MLP trained
# with `--device cuda` and `--device cpu` (test accuracy, weights apart), a CNN trained twice
# on the GPU (the same bits), diagnose's curvature of resnet20v2 from the device's products
# beside the CPU's, GRA repairing a 20-layer sigmoid MLP (and its cost a step
# against the same MLP untouched) and a 12-layer sigmoid
# plain CNN on the GPU and on the CPU, GRA leaving a healthy resnet20v2 as it was, resnet20v2
# trained with each batch's upload and its loss's and logits' reads overlapped and in line (images/s, the same bits),
# ResNet50V2 (also with cuDNN's algorithms timed, and with its nondeterministic ones), DenseNet121 and resnet20v2 steps (op times
# in the logs), the monitor's watched step against a plain one, the image loader on every
# core alone and feeding ResNet50V2 from a folder of JPEGs, the passes captured as CUDA graphs
# and replayed (the same bits; ResNet50V2's and the MLP monitor's times), random networks
# of odd shapes against the CPU and random vanishing ones repaired by GRA (the CPU's
# repairs; tests/test_device_random.sh), bench/gpu/mlp.py (regrad and PyTorch on the GPU) and
# onnxruntime against regrad on every zoo model's ONNX export (that machine's Python has
# onnxruntime), test_cuda under compute-sanitizer's memcheck and racecheck, and prints one
# summary table.  A few minutes on 16 cores.
# Usage: bench/gpu/check.sh            (from the repository root; REGRAD_CHECK_LOGS=DIR keeps the logs,
#                                      REGRAD_CHECK_ARCHIVE=FILE.tar.xz packs them into one file)
#        REGRAD_CHECK_ONLY=targets bench/gpu/check.sh
#                                      the issue's targets alone, for a second run after a fix:
#                                      ResNet50V2's five settings against PyTorch (and with
#                                      CUDA graphs, cuDNN's nondeterministic algorithms and
#                                      its 1x1 convolutions) and the monitor's cost, no tests
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
log=${REGRAD_CHECK_LOGS:-$(mktemp -d)}
mkdir -p "$log"
row() { printf '%-34s %-6s %s\n' "$1" "$2" "$3"; }
# whether the run takes every part (REGRAD_CHECK_ONLY=targets: the issue's targets alone)
all_parts() { [ "${REGRAD_CHECK_ONLY:-}" != targets ]; }
# whether there is time left for part $1, and it is wanted (else it is named among those skipped)
in_time() {
  all_parts && [ $(($(date +%s) - start)) -lt "${REGRAD_CHECK_BUDGET:-420}" ] && return 0
  skipped="${skipped:+$skipped; }$1"; return 1
}
start=$(date +%s) skipped=
# random_row LOG NETS LAST [VAR=VALUE...]: tests/test_device_random.sh over seeds 1..LAST
# (the networks carried in $carry/NETS where bundled), into $log/LOG; prints ok, SKIP or
# FAIL.  It starts no network after 90 s (its last line says how many ran), and is stopped
# at 150 s: a hang would cost the whole run's table.
random_row() {
  local name=$1 nets=$2 last=$3 made=()
  shift 3
  [ -n "${carry:-}" ] && [ -d "$carry/$nets" ] && made=(REGRAD_RANDOM_NETS="$carry/$nets")
  env "${made[@]}" REGRAD_RANDOM_SECONDS=90 "$@" timeout -k 5 150 tests/test_device_random.sh "$regrad" "$regrad" \
    "$diff" 1 "$last" >"$log/$name" 2>&1
  case $? in 0) echo ok ;; 77) echo SKIP ;; 124 | 137) echo FAIL && echo "FAIL: stopped after 150 s" >>"$log/$name" ;; *) echo FAIL ;; esac
}
# a training run's images/s in its last epoch (its metrics file)
ips() { grep '"event":"epoch"' "$1" 2>/dev/null | tail -1 | grep -o '"images_per_sec":[0-9.]*' | cut -d: -f2; }
# images/s and device memory (total - free: the context and libraries included) from regrad's bench
# line and PyTorch's JSON line
r50row() {
  local ips mib tips tmib
  ips=$(grep -o '[0-9.]* images/s' "$1" | head -1 | cut -d' ' -f1); mib=$(grep -o 'device memory [0-9]*' "$1" | head -1 | cut -d' ' -f3)
  tips=$(grep -o '"images_per_sec": [0-9.]*' "$2" | cut -d' ' -f2); tmib=$(grep -o '"device_mib": [0-9.]*' "$2" | cut -d' ' -f2)
  printf 'regrad %s images/s %s MiB, pytorch %.1f images/s %.0f MiB\n' "$ips" "$mib" "${tips:-0}" "${tmib:-0}"
}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$log/gpu" 2>&1
else echo "none (no nvidia-smi)" >"$log/gpu"; fi
t0=$(date +%s)
# CUDA's libraries, which regrad opens at first use (cuBLAS)
[ -d /usr/local/cuda/lib64 ] && export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
carry=build-gpu/carry data=fashion-mnist unpacked=
if [ -x "$carry/regrad" ]; then
  # programs built from other sources would measure, and pass or fail, another regrad
  built_from=$(cat "$carry/sources" 2>/dev/null) tree=$(bench/gpu/sources-digest.sh)
  if [ "$built_from" != "$tree" ]; then
    echo "check.sh: $carry was built from other sources (${built_from:-unknown}) than this tree's ($tree): run bench/gpu/bundle.sh again before the device run"
    exit 2
  fi
  unpacked=/tmp/regrad-carry # the carry's libraries and Fashion-MNIST
  mkdir -p $unpacked && tar -C $unpacked -xJf "$carry/lib.tar.xz" && tar -C $unpacked -xJf "$carry/data.tar.xz"
  export LD_LIBRARY_PATH=$unpacked/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  regrad=$carry/regrad test_cuda=$carry/test_cuda test_device=$carry/test_device_gpu
  diff=$carry/ckpt_diff data=fashion-mnist:$unpacked/fashion-mnist build=ok how=carried
elif cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DREGRAD_CUDA=ON >"$log/cmake" 2>&1 &&
     cmake --build build-gpu -j "$(nproc)" >"$log/build" 2>&1; then
  regrad=build-gpu/regrad test_cuda=build-gpu/tests/test_cuda test_device=build-gpu/tests/test_device_gpu
  diff=build-gpu/tests/ckpt_diff build=ok how=built
else build=FAIL how=built; fi
t1=$(date +%s)
tests=SKIP
if [ "$build" = ok ]; then
  if all_parts; then # (REGRAD_CHECK_ONLY=targets: none of this)
    "$test_cuda" >"$log/ctest" 2>&1
    case $? in 0) tests=ok ;; 77) tests=SKIP ;; *) tests=FAIL ;; esac
    "$test_device" >"$log/dtest" 2>&1
    case $? in 0) dtests=ok ;; 77) dtests=SKIP ;; *) dtests=FAIL ;; esac
    # the same graphs with regrad's own convolutions (im2col and cuBLAS) in place of cuDNN's
    REGRAD_CUDNN=0 "$test_device" >"$log/dtest-im2col" 2>&1
    case $? in 0) itests=ok ;; 77) itests=SKIP ;; *) itests=FAIL ;; esac
    # guarded memory (every buffer alone, canaries after it, checked by every pass): no kernel
    # writes past a buffer at the sizes the targets run, cuDNN's algorithms for them included
    guarded=
    for run in "resnet50v2 32 fp32" "resnet50v2 32 tf32" "resnet50v2 32 bf16" "densenet121 16 fp32"; do
      set -- $run
      REGRAD_GUARD_MEMORY=1 "$regrad" bench --model "$1" --batch "$2" --precision "$3" --device cuda --steps 2 \
        --warmup 0 >"$log/guarded-$1-$3" 2>&1
      guarded="$guarded$1 $3: $([ $? = 0 ] && echo ok || tail -1 "$log/guarded-$1-$3" | cut -c1-160); "
    done
    echo "$guarded" >"$log/guarded-row"
    # a CNN trained twice with one seed on the GPU: the same bits (fp32, cuDNN's deterministic algorithms)
    for run in a b; do
      "$regrad" train --data "$data" --model cnn --device cuda --repair off --epochs 1 --seed 3 --quiet \
        --checkpoint-dir "$log/ck-cnn-$run" >"$log/cnn-$run" 2>&1
    done
    echo "$(tail -1 "$log/cnn-a" | cut -c1-40); $("$diff" "$log/ck-cnn-a/last.safetensors" "$log/ck-cnn-b/last.safetensors" 2>&1 | tail -1)" >"$log/cnn-twice"
    # and with its passes captured as CUDA graphs and replayed: the same bits again
    REGRAD_GRAPHS=1 "$regrad" train --data "$data" --model cnn --device cuda --repair off --epochs 1 --seed 3 --quiet \
      --checkpoint-dir "$log/ck-cnn-graphs" >"$log/cnn-graphs" 2>&1
    echo "$(tail -1 "$log/cnn-graphs" | cut -c1-40); $("$diff" "$log/ck-cnn-a/last.safetensors" "$log/ck-cnn-graphs/last.safetensors" 2>&1 | tail -1)" >"$log/cnn-graphs-row"
    # the health monitor and the report on the GPU
    "$regrad" train --data "$data" --model cnn --device cuda --epochs 1 --seed 3 --quiet --monitor-every 8 \
      --report "$log/cnn.html" --checkpoint-dir "$log/ck-cnn-report" >"$log/cnn-report" 2>&1
    echo "exit $?, $(grep -c '"event":"health"' "$log/cnn.html.jsonl" 2>/dev/null) health lines, $(grep -o '"verdict":"[a-z_-]*"' "$log/cnn.html.jsonl" 2>/dev/null | sort | uniq -c | tr -s ' ' | tr '\n' ' ')" >"$log/cnn-report-row"
    # diagnose's curvature from the device's products (the exact Hessian's top eigenvalue,
    # the layers' Gauss-Newton ones) beside the CPU's
    for dev in cuda cpu; do
      "$regrad" diagnose --model resnet20v2 --batch 32 --curvature 5 --json --device $dev >"$log/diag-$dev.json" 2>&1
    done
    top() { grep -o '"hessian_top":[^,]*' "$1" 2>/dev/null | cut -d: -f2; }
    echo "Hessian's top eigenvalue: cuda $(top "$log/diag-cuda.json"), cpu $(top "$log/diag-cpu.json")" >"$log/diag-row"
    # stopped after epoch 1 and resumed: the bits of the straight run of two epochs
    "$regrad" train --data "$data" --model cnn --device cuda --repair off --epochs 2 --seed 3 --quiet \
      --checkpoint-dir "$log/ck-cnn-straight" >/dev/null 2>&1
    "$regrad" train --data "$data" --model cnn --device cuda --repair off --epochs 2 --seed 3 --quiet \
      --stop-after 1 --checkpoint-dir "$log/ck-cnn-stop" >/dev/null 2>&1
    "$regrad" train --resume "$log/ck-cnn-stop" --device cuda --quiet >"$log/cnn-resume" 2>&1
    echo "$("$diff" "$log/ck-cnn-straight/last.safetensors" "$log/ck-cnn-stop/last.safetensors" 2>&1 | tail -1)" >"$log/cnn-resume-row"
    rm -rf "$log/ck-cnn-a" "$log/ck-cnn-b" "$log/ck-cnn-graphs" "$log/ck-cnn-straight" "$log/ck-cnn-stop"
    # the same MLP trained on the GPU and on the CPU: test accuracy of each, weights apart
    ck=$(mktemp -d)
    for dev in cuda cpu; do
      "$regrad" train --data "$data" --device $dev --repair off --epochs 2 --seed 1 --quiet \
        --checkpoint-dir "$ck/$dev" >"$log/train-$dev" 2>&1
    done
    echo "cuda: $(tail -1 "$log/train-cuda" | cut -c1-40); cpu: $(tail -1 "$log/train-cpu" | cut -c1-40);" \
         "$("$diff" "$ck/cuda/last.safetensors" "$ck/cpu/last.safetensors" 2>&1 | tail -1)" >"$log/device"
    # GRA on the GPU: the 20-layer sigmoid MLP repaired over one epoch of the whole of
    # Fashion-MNIST, on the GPU and on the CPU: test accuracy of each (the issue: within 0.01)
    full=fashion-mnist; [ -d "$unpacked/fashion-mnist-full" ] && full=fashion-mnist:$unpacked/fashion-mnist-full
    for dev in cuda cpu; do
      "$regrad" train --data "$full" --device $dev --model mlp:depth=20,width=128,act=sigmoid --repair auto --epochs 1 \
        --seed 1 --quiet --metrics "$log/gra-$dev.jsonl" >"$log/gra-$dev" 2>&1
    done
    echo "cuda: $(tail -1 "$log/gra-cuda" | cut -c1-40), $(grep -c '"event":"repair"' "$log/gra-cuda.jsonl" 2>/dev/null) actions;" \
         "cpu: $(tail -1 "$log/gra-cpu" | cut -c1-40), $(grep -c '"event":"repair"' "$log/gra-cpu.jsonl" 2>/dev/null) actions" >"$log/gra-row"
    # what GRA costs a step on the GPU (its guards and trust region every step, its watched
    # steps, probes and re-probes): that epoch's training images/s against a plain epoch's
    "$regrad" train --data "$full" --device cuda --model mlp:depth=20,width=128,act=sigmoid --repair off --epochs 1 \
      --seed 1 --quiet --metrics "$log/plain-cuda.jsonl" >"$log/plain-cuda" 2>&1
    echo "$(ips "$log/gra-cuda.jsonl") vs $(ips "$log/plain-cuda.jsonl") images/s" |
      awk '{ printf "%s", $0; if ($1 > 0 && $3 > 0) printf " (GRA %+.1f%% a step)", 100 * ($3 / $1 - 1) }' >"$log/gra-cost-row"
    # GRA on a 12-layer sigmoid plain CNN, GPU and CPU (test accuracy, actions); GRA on a
    # healthy resnet20v2 (batch norm) on the GPU: the bits of the run without it
    for dev in cuda cpu; do
      "$regrad" train --data "$data" --device $dev --model plaincnn:depth=12,width=16,act=sigmoid,init=torch --repair auto \
        --epochs 1 --seed 1 --quiet --metrics "$log/gracnn-$dev.jsonl" >"$log/gracnn-$dev" 2>&1
    done
    echo "cuda: $(tail -1 "$log/gracnn-cuda" | cut -c1-40), $(grep -c '"event":"repair"' "$log/gracnn-cuda.jsonl" 2>/dev/null) actions;" \
         "cpu: $(tail -1 "$log/gracnn-cpu" | cut -c1-40), $(grep -c '"event":"repair"' "$log/gracnn-cpu.jsonl" 2>/dev/null) actions" >"$log/gracnn-row"
    for repair in auto off; do
      "$regrad" train --data "$data" --device cuda --model resnet20v2 --repair $repair --limit 2560 --epochs 1 --seed 1 \
        --quiet --checkpoint-dir "$ck/res-$repair" --metrics "$log/gra-res-$repair.jsonl" >"$log/gra-res-$repair" 2>&1
    done
    echo "$(tail -1 "$log/gra-res-auto" | cut -c1-40); $("$diff" "$ck/res-auto/last.safetensors" "$ck/res-off/last.safetensors" 2>&1 | tail -1);" \
         "$(ips "$log/gra-res-auto.jsonl") vs $(ips "$log/gra-res-off.jsonl") images/s" >"$log/gra-res-row"
    [ -n "$data" ] && [ "${data#fashion-mnist:}" != "$data" ] && mlp_data=${data#fashion-mnist:} || mlp_data=/usr/share/datasets/fashion-mnist
    python3 bench/gpu/mlp.py "$regrad" "$mlp_data" >"$log/mlp" 2>&1
  fi
  # ResNet50V2, 224x224, batch 32, fp32 and TF32: regrad's step (im2col and cuBLAS so far)
  # and PyTorch's (cuDNN), images/s
  for p in fp32 tf32; do
    "$regrad" bench --model resnet50v2 --device cuda --precision $p --batch 32 --steps 10 --layers >"$log/r50-$p" 2>&1
    python3 bench/torch_resnet50v2.py --device cuda --precision $p --batch 32 --steps 5 >"$log/r50torch-$p" 2>&1
    r50row "$log/r50-$p" "$log/r50torch-$p" >"$log/r50row-$p"
  done
  # (op times too: batch 256 is where run g fell short of PyTorch, 0.99x in TF32)
  for p in tf32 bf16; do
    "$regrad" bench --model resnet50v2 --device cuda --precision $p --batch 256 --steps 5 --layers >"$log/r50-$p-256" 2>&1
    python3 bench/torch_resnet50v2.py --device cuda --precision $p --batch 256 --steps 5 >"$log/r50torch-$p-256" 2>&1
    r50row "$log/r50-$p-256" "$log/r50torch-$p-256" >"$log/r50row-$p-256"
  done
  # bf16 at batch 32 (PyTorch under bf16 autocast), and an MLP trained in bf16 on the GPU
  "$regrad" bench --model resnet50v2 --device cuda --precision bf16 --batch 32 --steps 10 --layers >"$log/r50-bf16" 2>&1
  python3 bench/torch_resnet50v2.py --device cuda --precision bf16 --batch 32 --steps 5 >"$log/r50torch-bf16" 2>&1
  r50row "$log/r50-bf16" "$log/r50torch-bf16" >"$log/r50row-bf16"
  if all_parts; then
    "$regrad" train --data "$data" --device cuda --precision bf16 --repair off --epochs 2 --seed 1 --quiet >"$log/bf16-mlp" 2>&1
    # GRA in bf16: the 20-layer sigmoid MLP, on the GPU in bf16 and on the CPU in fp32
    for p in bf16:cuda fp32:cpu; do
      "$regrad" train --data "$data" --device ${p#*:} --precision ${p%:*} --model mlp:depth=20,width=128,act=sigmoid \
        --repair auto --epochs 1 --seed 1 --quiet >"$log/bf16-gra-${p#*:}" 2>&1
    done
  fi
  # the health monitor's watched step against a plain one (the issue: within 5%, every 10 steps)
  "$regrad" bench --model resnet50v2 --device cuda --batch 32 --steps 10 --monitor >"$log/r50-monitor" 2>&1
  "$regrad" bench --model mlp:depth=20,width=128,act=sigmoid --device cuda --batch 128 --steps 20 --monitor >"$log/mlp-monitor" 2>&1
  # each pass captured once as a CUDA graph and replayed (REGRAD_GRAPHS=1): the launch-bound
  # settings (ResNet50V2 at batch 32, the 1-ms MLP step and its monitor's cost), and b256;
  # 6 steps before the clock, as a half's forward and backward are captured by the 6th
  for pb in tf32:32 fp32:32 bf16:32 tf32:256; do
    REGRAD_GRAPHS=1 "$regrad" bench --model resnet50v2 --device cuda --precision ${pb%:*} --batch ${pb#*:} \
      --warmup 6 --steps $((${pb#*:} == 32 ? 10 : 5)) >"$log/r50-graphs-${pb%:*}-${pb#*:}" 2>&1
  done
  REGRAD_GRAPHS=1 "$regrad" bench --model mlp:depth=20,width=128,act=sigmoid --device cuda --batch 128 --warmup 6 \
    --steps 20 --monitor >"$log/mlp-monitor-graphs" 2>&1
  # cuDNN's algorithms as PyTorch's default picks them (REGRAD_CUDNN_DETERMINISTIC=0): its
  # heuristics' first, deterministic or not (atomics: not the same bits every run)
  for pb in tf32:32 tf32:256 bf16:256; do
    REGRAD_CUDNN_DETERMINISTIC=0 "$regrad" bench --model resnet50v2 --device cuda --precision ${pb%:*} \
      --batch ${pb#*:} --steps $((${pb#*:} == 32 ? 10 : 5)) >"$log/r50-any-${pb%:*}-${pb#*:}" 2>&1
  done
  # the 1x1 stride-1 convolutions through cuDNN too (REGRAD_CUDNN_1X1=1), not cuBLAS's
  # products: deterministic algorithms, and any
  for d in 1 0; do
    REGRAD_CUDNN_1X1=1 REGRAD_CUDNN_DETERMINISTIC=$d "$regrad" bench --model resnet50v2 --device cuda \
      --precision tf32 --batch 256 --steps 5 >"$log/r50-1x1-det$d" 2>&1
  done
  # what follows, each part while the time lasts (REGRAD_CHECK_BUDGET seconds from the start,
  # default 420: the device machine allows 600 a command, and the table comes at the end)
  if in_time "compute-sanitizer"; then
    # the kernels under NVIDIA's memory checker (out-of-bounds and misaligned accesses) and
    # race checker (shared-memory hazards), test_cuda's every kernel against the CPU, a
    # minute each at most (only where the runtime allows it: not on gVisor)
    cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for tool in memcheck racecheck; do
      if [ -x "$cs" ]; then timeout -k 5 60 "$cs" --tool $tool "$test_cuda" >"$log/sanitizer-$tool" 2>&1
      else echo "no compute-sanitizer" >"$log/sanitizer-$tool"; fi
    done
  fi
  if in_time "cuDNN's algorithms timed"; then
    # cuDNN's deterministic algorithms timed on each convolution (REGRAD_CUDNN_TUNE=1), not ranked by heuristics
    for pb in fp32:32 tf32:32 tf32:256 bf16:256; do
      REGRAD_CUDNN_TUNE=1 "$regrad" bench --model resnet50v2 --device cuda --precision ${pb%:*} --batch ${pb#*:} \
        --steps $((${pb#*:} == 32 ? 10 : 5)) >"$log/r50-tuned-${pb%:*}-${pb#*:}" 2>&1
    done
  fi
  if in_time "regrad's own convolutions"; then
    REGRAD_CUDNN=0 "$regrad" bench --model resnet50v2 --device cuda --batch 32 --steps 5 >"$log/r50-im2col" 2>&1
    REGRAD_CUDNN=0 "$regrad" bench --model resnet50v2 --device cuda --precision bf16 --batch 32 --steps 5 \
      >"$log/r50-im2col-bf16" 2>&1
  fi
  if in_time "uploads overlapped and in line"; then
    # training with each batch's upload beside the last step's work and the loss and logits
    # read while backward runs, and with both in line: images/s of the second epoch, and the
    # same bits
    for o in 1 0; do
      REGRAD_OVERLAP=$o "$regrad" train --data "$data" --device cuda --model resnet20v2 --repair off --limit 8192 \
        --epochs 2 --seed 1 --quiet --metrics "$log/overlap-$o.jsonl" --checkpoint-dir "$log/ck-overlap-$o" >"$log/overlap-$o" 2>&1
    done
    echo "$(ips "$log/overlap-1.jsonl") images/s, in line $(ips "$log/overlap-0.jsonl");" \
         "$("$diff" "$log/ck-overlap-1/last.safetensors" "$log/ck-overlap-0/last.safetensors" 2>&1 | tail -1)" >"$log/overlap-row"
    # each batch's upload in line with the step, as before it overlapped the last step's work
    REGRAD_OVERLAP=0 "$regrad" bench --model resnet50v2 --device cuda --precision tf32 --batch 32 --steps 10 >"$log/r50-inline" 2>&1
  fi
  if in_time "the image loader"; then
    # the seed's input path: JPEGs (500x375) decoded, cropped at random to 224x224 and flipped
    # by every core, alone and feeding ResNet50V2 in TF32 (images/s of the second epoch)
    fm=/usr/share/datasets/fashion-mnist; [ -d "$unpacked/fashion-mnist" ] && fm=$unpacked/fashion-mnist
    jpeg=$(mktemp -d)
    if python3 bench/make_jpeg_folder.py "$jpeg" 640 "$fm" >"$log/jpeg" 2>&1; then
      folder=(--data "$jpeg" --augment resized-crop,flip --preprocess torch)
      "$regrad" bench-data "${folder[@]}" --workers "$(nproc)" --epochs 3 >"$log/loader" 2>&1
      "$regrad" train "${folder[@]}" --model resnet50v2 --device cuda --precision tf32 --batch 32 --epochs 2 \
        --repair off --seed 1 --quiet --metrics "$log/folder.jsonl" >"$log/folder" 2>&1
      echo "loader $(grep -o '[0-9.]* images/s with [0-9]* workers' "$log/loader"); ResNet50V2 b32 tf32 trained from" \
           "them $(ips "$log/folder.jsonl") images/s" >"$log/loader-row"
    else echo "no JPEGs: $(tail -1 "$log/jpeg")" >"$log/loader-row"; fi
    rm -rf "$jpeg"
  fi
  if in_time "DenseNet121 and resnet20v2"; then
    for m in densenet121 resnet20v2; do
      "$regrad" bench --model $m --device cuda --batch 64 --steps 10 --layers >"$log/$m" 2>&1
    done
  fi
  # random networks of odd shapes through cuDNN and the own kernels, against the CPU, and
  # random vanishing networks repaired by GRA, whose repairs must be the CPU's
  if [ "${dtests:-}" = SKIP ]; then
    random=SKIP randgra=SKIP
    for f in random randgra; do echo "no CUDA device (test_device_gpu)" >"$log/$f"; done
  else
    in_time "random networks" && random=$(random_row random random_nets 24)
    in_time "GRA on random networks" && randgra=$(random_row randgra random_nets_vanishing 16 REGRAD_RANDOM_REPAIR=vanishing)
  fi
  if in_time "onnxruntime"; then
    python3 tools/onnxruntime_check.py "$regrad" --data "$data" >"$log/ortcheck" 2>&1
    case $? in 0) ort=ok ;; 77) ort=SKIP ;; *) ort=FAIL ;; esac
  fi
fi
# the logs of what failed first, then the table: the device tool returns the last 12,000
# characters a command prints
if [ "$build" != ok ]; then echo "--- build"; tail -30 "$log/build" "$log/cmake"; fi
if [ "$tests" != ok ] && [ -f "$log/ctest" ]; then echo "--- test_cuda"; tail -60 "$log/ctest"; fi
if [ "${dtests:-}" != ok ] && [ -f "$log/dtest" ]; then echo "--- test_device_gpu"; tail -30 "$log/dtest"; fi
if [ "${itests:-}" != ok ] && [ -f "$log/dtest-im2col" ]; then echo "--- test_device_gpu, REGRAD_CUDNN=0"; tail -20 "$log/dtest-im2col"; fi
for f in train-cuda cnn-a gra-cuda gracnn-cuda gra-res-auto mlp r50torch-fp32 r50-bf16 r50torch-bf16 bf16-mlp; do [ -f "$log/$f" ] && { echo "--- $f"; tail -6 "$log/$f"; }; done
[ -f "$log/r50-fp32" ] && { echo "--- r50-fp32"; head -16 "$log/r50-fp32"; }
if [ "${ort:-}" = FAIL ]; then echo "--- onnxruntime_check"; tail -30 "$log/ortcheck"; fi
for f in random randgra; do
  [ "${!f:-}" = FAIL ] && { echo "--- test_device_random ($f)"; grep FAIL "$log/$f" | cut -c1-400 | tail -8; }
done
echo "== regrad GPU check ($(date -u +%Y-%m-%dT%H:%MZ), $(git describe --always --dirty 2>/dev/null))"
row "GPU" "" "$(head -1 "$log/gpu")"
row "build (REGRAD_CUDA=ON)" "$build" "$how, $((t1 - t0)) s"
row "test_cuda (kernels vs CPU)" "$tests" "$(grep -E "PASSED|FAILED|SKIP" "$log/ctest" 2>/dev/null | head -1)"
row "test_device_gpu (graph vs CPU)" "${dtests:-SKIP}" "$(grep -E "PASSED|FAILED|SKIP" "$log/dtest" 2>/dev/null | head -1)"
row "test_device_gpu, REGRAD_CUDNN=0" "${itests:-SKIP}" "$(grep -E "PASSED|FAILED|SKIP" "$log/dtest-im2col" 2>/dev/null | head -1)"
row "guarded memory, 224x224 (no overrun)" "" "$(cat "$log/guarded-row" 2>/dev/null)"
row "train MLP: cuda vs cpu" "" "$(tail -1 "$log/device" 2>/dev/null)"
row "train CNN twice on cuda (bits)" "" "$(cat "$log/cnn-twice" 2>/dev/null)"
row "train CNN, CUDA graphs (bits)" "" "$(cat "$log/cnn-graphs-row" 2>/dev/null)"
row "CNN --report on cuda" "" "$(cat "$log/cnn-report-row" 2>/dev/null)"
row "CNN stopped, resumed on cuda (bits)" "" "$(cat "$log/cnn-resume-row" 2>/dev/null)"
row "diagnose --curvature, resnet20v2" "" "$(cat "$log/diag-row" 2>/dev/null)"
row "GRA, 20-sigmoid MLP, 1 epoch" "" "$(cat "$log/gra-row" 2>/dev/null)"
row "GRA's cost: MLP epoch, GRA vs off" "" "$(cat "$log/gra-cost-row" 2>/dev/null)"
row "GRA, 12-sigmoid plain CNN, 1 epoch" "" "$(cat "$log/gracnn-row" 2>/dev/null)"
row "GRA on healthy resnet20v2 = off (bits, speed)" "" "$(cat "$log/gra-res-row" 2>/dev/null)"
row "MLP speed vs PyTorch (cuda)" "" "$(tail -1 "$log/mlp" 2>/dev/null)"
row "ResNet50V2 b32 fp32 vs PyTorch" "" "$(cat "$log/r50row-fp32" 2>/dev/null)"
row "ResNet50V2 b32 tf32 vs PyTorch" "" "$(cat "$log/r50row-tf32" 2>/dev/null)"
row "ResNet50V2 b256 tf32 vs PyTorch" "" "$(cat "$log/r50row-tf32-256" 2>/dev/null)"
row "ResNet50V2 b32 bf16 vs PyTorch" "" "$(cat "$log/r50row-bf16" 2>/dev/null)"
row "ResNet50V2 b256 bf16 vs PyTorch" "" "$(cat "$log/r50row-bf16-256" 2>/dev/null)"
row "train MLP in bf16 on cuda" "" "$(tail -1 "$log/bf16-mlp" 2>/dev/null | cut -c1-60)"
row "GRA, 20-sigmoid MLP: bf16 cuda, fp32 cpu" "" "$(tail -1 "$log/bf16-gra-cuda" 2>/dev/null | cut -c1-40); $(tail -1 "$log/bf16-gra-cpu" 2>/dev/null | cut -c1-40)"
for pb in fp32-32 tf32-32 tf32-256 bf16-256; do
  row "ResNet50V2 b${pb#*-} ${pb%-*}, REGRAD_CUDNN_TUNE=1" "" "$(grep -o '[0-9.]* images/s.*' "$log/r50-tuned-$pb" 2>/dev/null | head -1)"
done
for pb in tf32-32 tf32-256 bf16-256; do
  row "ResNet50V2 b${pb#*-} ${pb%-*}, REGRAD_CUDNN_DETERMINISTIC=0" "" "$(grep -o '[0-9.]* images/s.*' "$log/r50-any-$pb" 2>/dev/null | head -1)"
done
for d in 1 0; do
  row "ResNet50V2 b256 tf32, REGRAD_CUDNN_1X1=1, DETERMINISTIC=$d" "" "$(grep -o '[0-9.]* images/s.*' "$log/r50-1x1-det$d" 2>/dev/null | head -1)"
done
row "ResNet50V2 b32 fp32, REGRAD_CUDNN=0" "" "$(grep -o '[0-9.]* images/s' "$log/r50-im2col" 2>/dev/null | head -1)"
row "ResNet50V2 b32 bf16, REGRAD_CUDNN=0" "" "$(grep -o '[0-9.]* images/s.*' "$log/r50-im2col-bf16" 2>/dev/null | head -1)"
row "ResNet50V2 b32 tf32, REGRAD_OVERLAP=0" "" "$(grep -o '[0-9.]* images/s' "$log/r50-inline" 2>/dev/null | head -1)"
row "train resnet20v2, copies overlapped" "" "$(cat "$log/overlap-row" 2>/dev/null)"
monitor_row() { grep -o 'monitor: .*' "$1" 2>/dev/null | sed 's/a watched step takes //; s/, a plain one / vs /; s/ (medians)//; s/ (.*//'; }
row "monitor cost, ResNet50V2 b32" "" "$(monitor_row "$log/r50-monitor")"
row "monitor cost, 20-sigmoid MLP b128" "" "$(monitor_row "$log/mlp-monitor")"
# images/s with CUDA graphs, and the passes replayed (or why one could not be captured)
graphs_row() {
  echo "$(grep -o '[0-9.]* images/s, device memory [0-9]* MiB' "$1" 2>/dev/null | head -1 | sed 's/device memory //');" \
       "$(grep -o 'CUDA graphs.*' "$1" 2>/dev/null | cut -c32-)"
}
for pb in tf32-32 fp32-32 bf16-32 tf32-256; do
  row "ResNet50V2 b${pb#*-} ${pb%-*}, REGRAD_GRAPHS=1" "" "$(graphs_row "$log/r50-graphs-$pb")"
done
row "monitor cost, MLP, REGRAD_GRAPHS=1" "" "$(monitor_row "$log/mlp-monitor-graphs"); $(grep -o 'CUDA graphs.*' "$log/mlp-monitor-graphs" 2>/dev/null | cut -c32-)"
row "JPEG folder to the GPU" "" "$(cat "$log/loader-row" 2>/dev/null)"
row "DenseNet121 b64 fp32" "" "$(grep -o '[0-9.]* images/s' "$log/densenet121" 2>/dev/null | head -1)"
row "resnet20v2 b64 fp32" "" "$(grep -o '[0-9.]* images/s' "$log/resnet20v2" 2>/dev/null | head -1)"
sanitized() { # compute-sanitizer's summary, or what stopped it
  grep -oE '(RACECHECK|ERROR) SUMMARY: [0-9]+ [a-z]+' "$1" 2>/dev/null | tr '\n' ' ' | grep . ||
    { [ -f "$1" ] && echo "no summary ($(grep -c '^========= [A-Z]' "$1") reports; $(tail -1 "$1" | cut -c1-50))"; }
}
row "compute-sanitizer, test_cuda" "" "memcheck: $(sanitized "$log/sanitizer-memcheck"); racecheck: $(sanitized "$log/sanitizer-racecheck")"
row "random networks: cuda vs cpu" "${random:-SKIP}" "$(tail -1 "$log/random" 2>/dev/null | sed 's/^test_device_random: //')"
row "GRA, random networks: cuda vs cpu" "${randgra:-SKIP}" "$(tail -1 "$log/randgra" 2>/dev/null | sed 's/^test_device_random: //')"
row "onnxruntime vs regrad (zoo, ONNX)" "${ort:-SKIP}" "$(tail -1 "$log/ortcheck" 2>/dev/null)"
why="out of time ($(($(date +%s) - start)) s)"; all_parts || why="REGRAD_CHECK_ONLY=targets"
[ -z "$skipped" ] || echo "not run, $why: $skipped"
echo "check.sh took $(($(date +%s) - start)) s"
# every log in one file (REGRAD_CHECK_ARCHIVE=FILE.tar.xz): the device tool returns 8 files
[ -z "${REGRAD_CHECK_ARCHIVE:-}" ] || tar -C "$log" -cJf "$REGRAD_CHECK_ARCHIVE" .
[ -n "${REGRAD_CHECK_LOGS:-}" ] || rm -rf "$log"
[ "$build" = ok ] && [ "$tests" = ok ] && [ "${dtests:-}" = ok ] && [ "${itests:-}" = ok ]

#!/usr/bin/env bash
# bench_mpi.sh — data-parallel scaling on this machine: one process with 1 thread and
# batch 128 against 2 MPI ranks with 1 thread and batch 64 each (the same 128 per step),
# one epoch of Fashion-MNIST, GRA off (plain all-reduce).  Prints images/s, the scaling
# efficiency (2-rank throughput over twice the 1-rank one), the time in collectives per
# step and the bytes all-reduced per step (to estimate a real network's cost).
# Usage: bench/bench_mpi.sh [MODEL...]   (default: mlp cnn)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${REGRAD_BIN:-build/regrad}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ips() { sed -n 's/.*"images_per_sec":\([0-9.e+]*\).*/\1/p' "$1" | head -1; }
for model in "${@:-mlp cnn}"; do
  for model1 in $model; do
    "$BIN" train --model "$model1" --batch 128 --threads 1 --repair off --quiet --metrics "$tmp/one.jsonl" >/dev/null
    mpirun -np 2 --oversubscribe "$BIN" train --model "$model1" --batch 64 --repair off \
      --metrics "$tmp/two.jsonl" >"$tmp/two.out"
    one=$(ips "$tmp/one.jsonl"); two=$(ips "$tmp/two.jsonl")
    comm=$(sed -n 's/.*per step, \([0-9.]*\) s in collectives.*/\1/p' "$tmp/two.out")
    mib=$(sed -n 's/.*identical on 2 ranks; \([0-9.]*\) MiB.*/\1/p' "$tmp/two.out")
    steps=$(( (60000 + 127) / 128 ))
    printf "%-5s 1 rank %8.0f img/s, 2 ranks %8.0f img/s, efficiency %.2f, collectives %.2f ms/step, %s MiB all-reduced/step\n" \
      "$model1" "$one" "$two" "$(echo "$two / (2 * $one)" | bc -l)" "$(echo "$comm * 1000 / $steps" | bc -l)" "$mib"
  done
done

#!/usr/bin/env bash
# test_mpi.sh — data-parallel training on one machine: N ranks with batch B match one
# process with batch N x B (same data order) within float tolerance, for 2 and 3 ranks;
# with GRA every rank ends with the same weights; a run checkpointed by 2 ranks resumes on
# 3; a failing job exits, never hangs.  Usage: test_mpi.sh PATH/TO/regrad PATH/TO/ckpt_diff
set -u
BIN=${1:?usage: test_mpi.sh REGRAD CKPT_DIFF}
DIFF=${2:?usage: test_mpi.sh REGRAD CKPT_DIFF}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(timeout 300 mpirun --oversubscribe)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
close() { # max |difference| of two checkpoints below $3
  local d; d=$("$DIFF" "$1" "$2" | sed -n 's/.*max |difference| \([^,]*\),.*/\1/p')
  awk -v d="$d" -v t="$3" 'BEGIN {exit !(d != "" && d <= t)}' && ok || bad "$1 vs $2: difference ${d:-none} > $3"
}
common=(train --limit 3072 --epochs 2 --seed 4 --quiet --repair off --optimizer momentum)
for n in 2 3; do
  "$BIN" "${common[@]}" --batch $((32 * n)) --threads 1 --checkpoint-dir "$tmp/one$n" >/dev/null 2>&1
  "${MPIRUN[@]}" -np $n "$BIN" "${common[@]}" --batch 32 --checkpoint-dir "$tmp/ranks$n" >"$tmp/out$n" 2>&1 \
    && ok || bad "$n ranks: $(tail -3 "$tmp/out$n")"
  close "$tmp/one$n/last.safetensors" "$tmp/ranks$n/last.safetensors" 1e-4
done
# synchronised batch norm: 2 ranks x 32 match one process at 64 on a batch-norm MLP
bn=(train --model mlp:depth=2,width=64,bn=1 --limit 3072 --epochs 2 --seed 4 --quiet --repair off --optimizer momentum)
"$BIN" "${bn[@]}" --batch 64 --threads 1 --checkpoint-dir "$tmp/bn1" >/dev/null 2>&1
"${MPIRUN[@]}" -np 2 "$BIN" "${bn[@]}" --batch 32 --sync-bn --checkpoint-dir "$tmp/bn2" >"$tmp/bn.out" 2>&1 \
  && ok || bad "sync-bn on 2 ranks: $(tail -3 "$tmp/bn.out")"
close "$tmp/bn1/last.safetensors" "$tmp/bn2/last.safetensors" 1e-4
# GRA on 3 ranks on a deep sigmoid net (the probe, re-conditioning, trust region): the
# weights agree on every rank
"${MPIRUN[@]}" -np 3 "$BIN" train --model mlp:depth=8,width=32,act=sigmoid,init=torch --limit 2048 \
  --batch 32 --seed 2 --checkpoint-dir "$tmp/gra" >"$tmp/gra.out" 2>&1
grep -q "weights identical on 3 ranks" "$tmp/gra.out" && ok || bad "GRA on 3 ranks: $(tail -3 "$tmp/gra.out")"
# checkpointed by 2 ranks (epoch 1 of 2), resumed on 3 (a global batch of 96, not 64, for
# its second epoch): it finishes with the ranks in agreement (a disagreement exits 1)
"${MPIRUN[@]}" -np 2 "$BIN" "${common[@]}" --batch 32 --stop-after 1 --checkpoint-dir "$tmp/r" >/dev/null 2>&1
"${MPIRUN[@]}" -np 3 "$BIN" train --resume "$tmp/r" >"$tmp/res.out" 2>&1 && grep -q "test_acc 0\.[5-9]" "$tmp/res.out" \
  && ok || bad "resume on 3 ranks: $(tail -3 "$tmp/res.out")"
# a job that fails exits with an error (every rank), never hangs
"${MPIRUN[@]}" -np 2 "$BIN" train --model nosuch >"$tmp/bad.out" 2>&1; code=$?
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] && grep -q "unknown model 'nosuch'" "$tmp/bad.out" && ok || bad "failing job: exit $code"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

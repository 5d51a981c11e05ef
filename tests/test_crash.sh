#!/usr/bin/env bash
# test_crash.sh — crash safety: regrad train killed with SIGKILL, once in the middle of a
# checkpoint write (fault injection) and ROUNDS times at random moments; after every kill
# the newest checkpoint must load whole, and --resume must end with the same weights as a
# run never interrupted.
# Usage: test_crash.sh PATH/TO/regrad [ROUNDS]
set -u
BIN=${1:?usage: test_crash.sh PATH/TO/regrad [ROUNDS]}
ROUNDS=${2:-8}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
hash_of() { sed -n 's/.*weights \([0-9a-f]*\).*/\1/p' "$1"; }
run=(train --model cnn --limit 1024 --epochs 12 --batch 64 --seed 9 --augment flip --quiet)
"$BIN" "${run[@]}" >"$tmp/straight" 2>&1
want=$(hash_of "$tmp/straight")
[ -n "$want" ] && ok || bad "the straight run failed: $(cat "$tmp/straight")"

# 1. killed in the middle of writing the third checkpoint
REGRAD_FAULT=write:3 "$BIN" "${run[@]}" --checkpoint-dir "$tmp/w" >/dev/null 2>&1; code=$?
[ "$code" -eq 137 ] && ok || bad "fault injection: exit $code, expected 137 (SIGKILL)"
[ "$(readlink "$tmp/w/last.safetensors")" = "epoch_2.safetensors" ] && ok || bad "last should still be epoch 2"
ls "$tmp/w" | grep -q "epoch_3.safetensors.tmp-" && ok || bad "no partial temporary file: the kill missed the write"
"$BIN" inspect "$tmp/w/last.safetensors" >/dev/null && ok || bad "epoch 2 does not load after the kill"
"$BIN" train --resume "$tmp/w" >"$tmp/out" 2>&1
[ "$(hash_of "$tmp/out")" = "$want" ] && ok || bad "resumed after the write kill: $(tail -1 "$tmp/out"), want $want"
ls "$tmp/w" | grep -q "tmp-" && bad "the partial file was not cleaned up" || ok

# 2. killed at random moments, resumed each time from the newest checkpoint
RANDOM=7
: >"$tmp/out"
kills=0
for r in $(seq "$ROUNDS"); do
  if [ -e "$tmp/k/last.safetensors" ]; then args=(train --resume "$tmp/k")
  else args=("${run[@]}" --checkpoint-dir "$tmp/k"); fi
  "$BIN" "${args[@]}" >"$tmp/out" 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 "$pid" 2>/dev/null && kills=$((kills + 1)); wait "$pid" 2>/dev/null
  [ -n "$(hash_of "$tmp/out")" ] && break # it finished before the kill
  if [ -e "$tmp/k/last.safetensors" ]; then
    "$BIN" inspect "$tmp/k/last.safetensors" >/dev/null 2>&1 && ok || bad "round $r: the newest checkpoint does not load"
  else ok; fi
done
if [ -z "$(hash_of "$tmp/out")" ]; then
  if [ -e "$tmp/k/last.safetensors" ]; then "$BIN" train --resume "$tmp/k" >"$tmp/out" 2>&1
  else "$BIN" "${run[@]}" --checkpoint-dir "$tmp/k" >"$tmp/out" 2>&1; fi
fi
[ "$(hash_of "$tmp/out")" = "$want" ] && ok || bad "after $kills random kills: $(tail -1 "$tmp/out"), want $want"
echo "random kills: $kills"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

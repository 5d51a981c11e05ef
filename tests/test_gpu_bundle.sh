#!/usr/bin/env bash
# test_gpu_bundle.sh — bench/gpu/check.sh runs only programs built from its own tree's
# sources: in a copy of the tree, a carry with another digest (or none) stops it at once
# with one line naming both and the fix, before any program runs; the digest
# (bench/gpu/sources-digest.sh) follows a change to any source and to nothing else.
# Usage: test_gpu_bundle.sh            (from anywhere: it finds the tree beside it)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tree=$tmp/tree
mkdir -p "$tree/bench" && cp -r "$root/bench/gpu" "$tree/bench/"
for d in CMakeLists.txt cmake include src cli tests; do cp -r "$root/$d" "$tree/"; done
digest() { "$tree/bench/gpu/sources-digest.sh"; }
d0=$(digest)
[[ "$d0" =~ ^[0-9a-f]{16}$ ]] && [ "$(digest)" = "$d0" ] && ok || bad "the digest: '$d0'"
echo "/* a change */" >>"$tree/src/core/rng.c"
d1=$(digest)
[ "$d1" != "$d0" ] && ok || bad "a changed source leaves the digest as it was"
echo "a note" >>"$tree/tests/fuzz/run.sh"; touch "$tree/bench/gpu/new-file"
[ "$(digest)" = "$d1" ] && ok || bad "a script's change moves the digest"
# a carry whose programs are stand-ins that record being run
mkdir -p "$tree/build-gpu/carry"
for p in regrad test_cuda test_device_gpu ckpt_diff; do
  printf '#!/bin/sh\ntouch %s/ran\n' "$tmp" >"$tree/build-gpu/carry/$p"
  chmod +x "$tree/build-gpu/carry/$p"
done
for built in none "$d0"; do
  [ "$built" = none ] && rm -f "$tree/build-gpu/carry/sources" || echo "$built" >"$tree/build-gpu/carry/sources"
  "$tree/bench/gpu/check.sh" >"$tmp/out" 2>&1
  rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l <"$tmp/out")" = 1 ] && grep -q "built from other sources.*$d1.*run bench/gpu/bundle.sh" "$tmp/out" &&
    [ ! -e "$tmp/ran" ] && ok || bad "a carry built from $built: exit $rc, $(cat "$tmp/out")"
done
echo "test_gpu_bundle: $pass passed, $fail failed"
[ "$fail" = 0 ]

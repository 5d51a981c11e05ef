#!/usr/bin/env bash
# test_tabular.sh — examples/tabular_csv on a CSV file made here: three Gaussian classes in
# six features (random centres, unit noise: they barely overlap; a header line), 1,500 rows.
# The held-out accuracy must reach 0.9, and a malformed row is one error.
# Usage: test_tabular.sh PATH/TO/tabular_csv
set -u
BIN=${1:?usage: test_tabular.sh PATH/TO/tabular_csv}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
awk 'function gauss() { return sqrt(-2 * log(1 - rand())) * cos(6.283185307 * rand()) }
     BEGIN { srand(7); print "f1,f2,f3,f4,f5,f6,class"
             for (k = 0; k < 3; k++) for (j = 1; j <= 6; j++) c[k, j] = 3 * gauss() / sqrt(2)
             for (i = 0; i < 1500; i++) { k = i % 3; line = ""
               for (j = 1; j <= 6; j++) line = line sprintf("%.4f,", c[k, j] + gauss())
               print line k } }' > "$tmp/blobs.csv"
out=$("$BIN" "$tmp/blobs.csv" 2>&1); code=$?
acc=$(echo "$out" | sed -n 's/.*accuracy \([0-9.]*\).*/\1/p')
status=0
if [ "$code" -eq 0 ] && awk -v a="$acc" 'BEGIN {exit !(a >= 0.9)}'; then echo "ok: $out"
else echo "FAIL: exit $code: $out"; status=1; fi
printf 'a,b,class\n1,2,0\n1,x,1\n' > "$tmp/bad.csv"
out=$("$BIN" "$tmp/bad.csv" 2>&1); code=$?
if [ "$code" -eq 1 ] && echo "$out" | grep -q "bad.csv:3: expected as many numbers"; then echo "ok: $out"
else echo "FAIL: a malformed row gave exit $code: $out"; status=1; fi
[ $status -eq 0 ] && echo "2 passed, 0 failed"
exit $status

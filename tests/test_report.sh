#!/usr/bin/env bash
# test_report.sh — the HTML report for real: written by train --report and experiment
# --report and by regrad report, well-formed (xmllint), and rendered by headless Chromium
# into a PNG that shows charts (enough inked pixels and colours), not a blank page.
# Usage: test_report.sh PATH/TO/regrad PATH/TO/png_stats
set -u
BIN=${1:?usage: test_report.sh REGRAD PNG_STATS}
STATS=${2:?usage: test_report.sh REGRAD PNG_STATS}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$BIN" train --model mlp:depth=8,width=32,act=sigmoid,init=torch --limit 3000 --epochs 3 \
  --val-split 0.1 --quiet --report "$tmp/train.html" >/dev/null 2>"$tmp/err" && ok || bad "train --report: $(cat "$tmp/err")"
"$BIN" experiment --depths 4 --acts tanh --optimizers adam --remedies off,gra,clip --limit 1000 \
  --report "$tmp/exp.html" >/dev/null 2>&1 && ok || bad "experiment --report"
"$BIN" report "$tmp/train.html.jsonl" -o "$tmp/again.html" >/dev/null && ok || bad "regrad report"
cmp -s "$tmp/train.html" "$tmp/again.html" && ok || bad "report from the metrics differs from train's"
for f in train exp; do
  xmllint --noout "$tmp/$f.html" 2>"$tmp/xml" && ok || bad "$f.html is not well-formed: $(head -3 "$tmp/xml")"
done
grep -q "<svg" "$tmp/train.html" && grep -q "Gradient flow" "$tmp/train.html" && ok || bad "train report lacks the gradient flow"
grep -q "Newton ratio of each monitored step" "$tmp/train.html" && ok || bad "train report lacks the curvature along the steps"
grep -q "Top Gauss-Newton eigenvalue per layer" "$tmp/train.html" && ok || bad "train report lacks the layers' curvature"
# metrics without the layers' Gauss-Newton eigenvalues (a bf16 run's): the report says why
sed -E 's/"gn_top":[-0-9.e+]*/"gn_top":null/g' "$tmp/train.html.jsonl" >"$tmp/nogn.jsonl"
"$BIN" report "$tmp/nogn.jsonl" -o "$tmp/nogn.html" >/dev/null && xmllint --noout "$tmp/nogn.html" &&
  ! grep -q "Top Gauss-Newton eigenvalue per layer" "$tmp/nogn.html" && grep -q "No Gauss-Newton eigenvalues" "$tmp/nogn.html" \
  && ok || bad "a report without Gauss-Newton eigenvalues does not say why"
"$BIN" train --limit 1024 --quiet --checkpoint-dir "$tmp/ck" >/dev/null 2>&1
"$BIN" prune --weights "$tmp/ck/last.safetensors" --sweep 0.5,0.9 --report "$tmp/sweep.html" >/dev/null 2>&1 &&
  xmllint --noout "$tmp/sweep.html" && grep -q "Accuracy against sparsity" "$tmp/sweep.html" && ok || bad "the pruning sweep's report"
grep -q "script" "$tmp/train.html" && bad "the report has a script" || ok
grep -Eq "(src|href)=\"https?:" "$tmp/train.html" && bad "the report reaches the network" || ok
echo "not json" > "$tmp/bad.jsonl"
"$BIN" report "$tmp/bad.jsonl" -o "$tmp/bad.html" 2>"$tmp/err"; [ $? -eq 1 ] && grep -q "neither JSON lines" "$tmp/err" && ok || bad "bad input to report"
"$BIN" report 2>/dev/null; [ $? -eq 2 ] && ok || bad "report without arguments should exit 2"

# render both in headless Chromium
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
  bad "chromium is not installed (make test installs it)"
else
  for f in train exp; do
    # the training report has a viridis heat map (many colours); the experiment's a table
    # and bars in one colour
    height=2400 min_ink=0.03 min_colours=40
    [ "$f" = exp ] && height=900 min_ink=0.01 min_colours=8
    timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars \
      --window-size=1100,$height --screenshot="$tmp/$f.png" "file://$tmp/$f.html" >/dev/null 2>&1
    read -r w h inked colours < <("$STATS" "$tmp/$f.png" 2>/dev/null || echo 0 0 0 0)
    if [ "$w" -eq 1100 ] && awk -v i="$inked" -v c="$colours" -v mi="$min_ink" -v mc="$min_colours" \
         'BEGIN {exit !(i > mi && c >= mc)}'; then ok
    else bad "$f.html rendered to ${w}x${h}, inked $inked, $colours colours"; fi
  done
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

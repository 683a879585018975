#!/usr/bin/env bash
# make demo: every phase that exists, on the embedded synthetic market, into $DATA_DIR.
# A phase whose capability is not built yet exits 2 with "not available yet"; the demo says
# so and goes on. Any other failure stops the demo.
set -uo pipefail
PORTFLOW=${PORTFLOW:-portflow}
DATA_DIR=${DATA_DIR:-data}
args=(--data-dir "$DATA_DIR")
[ -n "${AS_OF:-}" ] && args+=(--as-of "$AS_OF")

step() {
  echo
  echo "==> portflow ${args[*]} $*"
  err=$(mktemp)
  "$PORTFLOW" "${args[@]}" "$@" 2> >(tee "$err" >&2); rc=$?
  sleep 0.1
  if [ $rc -eq 2 ] && tail -n 1 "$err" | grep -q "not available yet"; then
    echo "    (not available yet: skipped)"; rm -f "$err"; return 0
  fi
  rm -f "$err"
  [ $rc -eq 0 ] || { echo "demo: '$*' failed with exit $rc"; exit $rc; }
}

step flow-data --profile fractal_meta
for p in crypto_long crypto_short equities_long; do
  step flow-production --profile "$p"
done
step flow-meta-production --profile fractal_meta --executor local

echo
echo "demo done. Data dir: $DATA_DIR"
"$PORTFLOW" "${args[@]}" runs list
report=$(ls -t "$DATA_DIR"/runs/*/report.html 2>/dev/null | head -n 1)
if [ -n "$report" ]; then echo "report: $report"; else echo "report: none yet (reporting is not available yet)"; fi
weights=$(ls -t "$DATA_DIR"/runs/*/weights.csv 2>/dev/null | head -n 1)
[ -n "$weights" ] && echo "latest weights: $weights"
exit 0

#!/usr/bin/env bash
# config_table.sh [BUILD_DIR] [NP] [CONFIG ...]: train each shipped config
# (default: every configs/lenet5 and configs/mlp one) on NP ranks (default
# 2), as README's config table states them, and print one markdown row per
# config: final and best validation accuracy, epochs run, wall time. The
# runs go to a temporary directory; the figures are the README's.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"; np="${2:-2}"; shift $(( $# < 2 ? $# : 2 ))
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=("$root"/configs/lenet5/*.yaml "$root"/configs/mlp/*.yaml)
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "| config | final val. accuracy (best) | epochs | wall time, $np ranks |"
echo "| --- | --- | --- | --- |"
for cfg in "${configs[@]}"; do
  name="$(basename "$(dirname "$cfg")")/$(basename "$cfg" .yaml)"
  start=$(date +%s.%N)
  mpirun --oversubscribe --bind-to none -np "$np" "$build/odyssey-dist" "$cfg" logging.plot=false \
    experiment.output_dir="$out/$name" >"$out/log" 2>&1 || { tail -5 "$out/log" >&2; echo "| \`$name\` | failed | | |"; continue; }
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  metrics=$(find "$out/$name" -name metrics.jsonl | head -1)
  /usr/bin/python3 - "$metrics" "$name" "$secs" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
acc = [r["val_accuracy"] for r in rows if "val_accuracy" in r]
print(f"| `configs/{sys.argv[2]}.yaml` | {100 * acc[-1]:.2f}% ({100 * max(acc):.2f}%) | {len(rows)} | {float(sys.argv[3]):.0f} s |")
PY
done

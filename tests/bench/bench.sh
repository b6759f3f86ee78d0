#!/usr/bin/env bash
# bench.sh [BUILD_DIR] [ROUNDS] [STEPS]: LeNet-5 training throughput, ours
# against PyTorch's, side by side on one rank and one thread, batch 64.
#
# Runs bench_lenet5 (from BUILD_DIR, default ./build) and torch_nets.py --net lenet5
# alternately ROUNDS times (default 3), STEPS steps each (default 600), so
# that both see the same machine load, and prints each median and the
# ratio next to issue 7's target (ours >= 2.0x PyTorch) with PASS/MISS.
# Without /usr/bin/python3 and torch it prints our figure alone. A miss is
# reported, not an error: the exit status is 0 unless a run fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build}"
rounds="${2:-3}"
steps="${3:-600}"
target=2.0
ours_bin="$build/tests/bench/bench_lenet5"
[ -x "$ours_bin" ] || { echo "bench.sh: $ours_bin not built (cmake --build $build --target bench_lenet5)" >&2; exit 2; }

export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
torch_ok=0
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  torch_ok=1
fi

# The value of key=... on the RESULT line of a run's output.
figure() { sed -n 's/^RESULT .*images_per_sec=\([0-9.]*\).*/\1/p' | tail -n 1; }
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

ours=() torch=()
for ((r = 1; r <= rounds; r++)); do
  o="$("$ours_bin" --steps "$steps" --runs 1 --breakdown-steps 0 | figure)"
  ours+=("$o")
  line="round $r: odyssey $o images/s"
  if [ "$torch_ok" = 1 ]; then
    t="$(/usr/bin/python3 "$here/torch_nets.py" --net lenet5 --steps "$steps" --threads 1 | figure)"
    torch+=("$t")
    line="$line, pytorch $t images/s"
  fi
  echo "$line"
done

ours_median="$(printf '%s\n' "${ours[@]}" | median)"
echo "odyssey median: $ours_median images/s (LeNet-5, batch 64, 1 rank, 1 thread)"
if [ "$torch_ok" = 1 ]; then
  torch_median="$(printf '%s\n' "${torch[@]}" | median)"
  verdict="$(awk -v o="$ours_median" -v t="$torch_median" -v g="$target" \
    'BEGIN {r = o / t; printf "ratio %.2fx, target %.1fx: %s", r, g, (r >= g) ? "PASS" : "MISS"}')"
  echo "pytorch median: $torch_median images/s ($(/usr/bin/python3 -c 'import torch; print("torch", torch.__version__)'))"
  echo "RESULT bench.sh odyssey=$ours_median pytorch=$torch_median $verdict"
else
  echo "RESULT bench.sh odyssey=$ours_median pytorch=unavailable (no /usr/bin/python3 with torch)"
fi

#!/usr/bin/env bash
# chunk_sweep.sh BUILD [ROUNDS] [STEPS] [OVERRIDE...]: images/s of
# deterministic mode at distributed.chunk_size 8, 16, 32 and 64, and of the
# fast mode (distributed.deterministic=false) for reference, for LeNet-5
# (configs/lenet5/baseline.yaml) and the VGG-style net (configs/vgg/plain.yaml),
# batch 64 per rank, one thread per rank, on $ODY_BENCH_NP ranks (default 1),
# so that a default chunk size can be picked (issue 21).
#
# Each round runs every setting of a net back to back, in the opposite order
# from the round before, so that a drift in the machine's speed does not
# favour one setting. STEPS (default 400) is LeNet-5's timed steps, VGG runs
# STEPS / 10 (at least 3), each after a warm-up, with bench_config. OVERRIDEs
# (section.key=value) go to every run. Prints each round's figures, then per
# setting the median images/s and the median over the rounds of its ratio
# to chunk_size 8 of the same round. The exit status is 0 unless a run fails.
# shellcheck source=tests/bench/common.sh
source "$(dirname "$0")/common.sh" chunk_sweep "${1:-}"
rounds="${2:-3}"
steps="${3:-400}"
shift $(($# < 3 ? $# : 3))
overrides=("$@")
np="${ODY_BENCH_NP:-1}"
vgg_steps=$((steps / 10 > 3 ? steps / 10 : 3))
bench="$build/tests/bench/bench_config"
[ -x "$bench" ] || { echo "chunk_sweep: $bench not built (cmake --build $build --target bench_config)" >&2; exit 2; }
cpu_line
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
[ -d /usr/share/datasets/fashion-mnist ] || overrides=(data.name=synthetic "${overrides[@]}")
settings=(8 16 32 64 fast)

# run NET SETTING: one bench_config run; prints its images/s
run() {
  local net="$1" setting="$2" cfg="$root/configs/vgg/plain.yaml" n="$vgg_steps" w=3 mode
  [ "$net" = lenet5 ] && cfg="$root/configs/lenet5/baseline.yaml" n="$steps" w=20
  mode=(distributed.deterministic=true "distributed.chunk_size=$setting")
  [ "$setting" = fast ] && mode=(distributed.deterministic=false)
  "${mpirun[@]}" -np "$np" "$bench" "$cfg" --steps "$n" --warmup "$w" --label "$net-$setting" \
    training.batch_size_per_rank=64 "${overrides[@]}" "${mode[@]}" </dev/null >"$work/run.log" 2>&1 \
    || { echo "chunk_sweep: $net $setting failed:" >&2; cat "$work/run.log" >&2; exit 1; }
  sed -n 's/^RESULT .*images_per_sec=\([0-9.]*\).*/\1/p' "$work/run.log" | tail -n 1
}

echo "chunk_sweep: $(getconf _NPROCESSORS_ONLN) cores, $np rank(s), $rounds rounds; LeNet-5 $steps steps, VGG $vgg_steps steps, batch 64 per rank"
echo "  overrides: ${overrides[*]:-(none)}"
results="$work/results"  # lines: round net setting images/s
: >"$results"
for ((r = 1; r <= rounds; r++)); do
  order=("${settings[@]}")
  ((r % 2)) || order=(fast 64 32 16 8)
  for net in lenet5 vgg; do
    line=""
    for s in "${order[@]}"; do
      v="$(run "$net" "$s")"
      [ -n "$v" ] || { echo "chunk_sweep: $net $s printed no figure" >&2; exit 1; }
      echo "$r $net $s $v" >>"$results"
      line+=" $s:$v"
    done
    echo "round $r: $net$line"
  done
done

"$py" - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for net in ("lenet5", "vgg"):
    by = {}
    for r, n, s, v in rows:
        if n == net:
            by.setdefault(s, {})[r] = float(v)
    print(f"{net}: setting, median images/s, median of the rounds' ratios to chunk_size 8 (rounds)")
    for s in ("8", "16", "32", "64", "fast"):
        ratios = [by[s][r] / by["8"][r] for r in sorted(by[s])]
        label = "fast mode" if s == "fast" else f"chunk_size {s}"
        print(f"  {label:14s} {statistics.median(by[s].values()):10.1f}  {statistics.median(ratios):.3f}x"
              f"  ({' '.join(f'{x:.3f}' for x in ratios)})")
PY

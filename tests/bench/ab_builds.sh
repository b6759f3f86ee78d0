#!/usr/bin/env bash
# ab_builds.sh BUILD_A BUILD_B [ROUNDS] [STEPS]: two builds of odyssey-dist
# side by side, LeNet-5 on Fashion-MNIST (deterministic mode, 64 images per
# rank), global images/s on 1 rank and on 2 ranks. Each round runs A, B,
# B, A for each rank count (the mirrored order cancels a steady drift of
# the machine within the round) and its ratio B/A is the mean of B's over
# the mean of A's; reported: every round's ratio and their geometric mean
# with a 95% bootstrap interval. For "did this change make it slower?".
# ROUNDS defaults to 6, STEPS to 400 per run. Exit 0 unless a run fails.
# Both builds train this checkout's configs/lenet5/baseline.yaml; with
# AB_OWN_CONFIGS=1 each trains the one of its own source tree (a build
# directory inside its checkout: BUILD/../configs), so that a change of
# the shipped config (its chunk size) counts too.
source "$(dirname "$0")/common.sh" ab_builds "${1:?usage: ab_builds.sh BUILD_A BUILD_B [ROUNDS] [STEPS]}"
prog_a="$prog"
prog_b="$(cd "${2:?usage: ab_builds.sh BUILD_A BUILD_B [ROUNDS] [STEPS]}" && pwd)/odyssey-dist"
[ -x "$prog_b" ] || { echo "ab_builds: $prog_b not built" >&2; exit 2; }
rounds="${3:-6}"
steps="${4:-400}"

# rate_of PROG NP: images/s of STEPS steps
rate_of() {
  prog="$1"
  train_config="" # train's config: this checkout's, or (AB_OWN_CONFIGS=1) the build's own
  if [ "${AB_OWN_CONFIGS:-0}" = 1 ]; then train_config="$(dirname "$prog")/../configs/lenet5/baseline.yaml"; fi
  train "$2" run training.batch_size_per_rank=64 training.max_steps="$steps"
  rate
}

echo "ab_builds: A = $prog_a"
echo "           B = $prog_b"
echo "$(nproc) cores, $rounds rounds of A B B A, $steps steps each$([ "${AB_OWN_CONFIGS:-0}" = 1 ] && echo ", each build's own configs/lenet5/baseline.yaml")"
cpu_line
for np in 1 2; do
  : >"$work/ratios"
  for ((r = 1; r <= rounds; r++)); do
    a1=$(rate_of "$prog_a" "$np"); b1=$(rate_of "$prog_b" "$np")
    b2=$(rate_of "$prog_b" "$np"); a2=$(rate_of "$prog_a" "$np")
    awk -v a1="$a1" -v a2="$a2" -v b1="$b1" -v b2="$b2" -v r="$r" -v np="$np" 'BEGIN {
      printf "  %d rank(s), round %d: A %.0f %.0f  B %.0f %.0f images/s  B/A %.3f\n",
             np, r, a1, a2, b1, b2, (b1 + b2) / (a1 + a2) }' >&2
    awk -v a1="$a1" -v a2="$a2" -v b1="$b1" -v b2="$b2" 'BEGIN { print (b1 + b2) / (a1 + a2) }' \
      >>"$work/ratios"
  done
  "$py" - "$work/ratios" "$np" <<'PY'
import math, random, sys
r = [float(x) for x in open(sys.argv[1])]
gm = lambda v: math.exp(sum(map(math.log, v)) / len(v))
random.seed(1)
boot = sorted(gm([random.choice(r) for _ in r]) for _ in range(2000))
print(f"{sys.argv[2]} rank(s): B/A {gm(r):.3f} (95% interval {boot[50]:.3f} to {boot[1949]:.3f}; "
      f"rounds {min(r):.3f} to {max(r):.3f})")
PY
done

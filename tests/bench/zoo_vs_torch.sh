#!/usr/bin/env bash
# zoo_vs_torch.sh BUILD [ROUNDS] [STEPS]: the zoo's batch-normalised nets
# against PyTorch side by side (issue 22), one thread each, the configs'
# global batch of 128 on 1 rank, fp32: configs/vgg/bn.yaml against
# torch_nets.py --net vgg_bn, configs/resnet/resnet20.yaml against --net
# resnet20 (same layers, optimizer and label smoothing; no augmentation on
# either side: the loaders are not timed). Every round runs both nets, ours
# then PyTorch's in odd rounds and the other way round in even ones; it
# prints each round's images/s and ratio, then each ratio's median over the
# rounds. STEPS (default 20) timed steps after 5 warm-up steps.
# shellcheck source=tests/bench/common.sh
source "$(dirname "$0")/common.sh" zoo_vs_torch "${1:-}"
rounds="${2:-3}"
steps="${3:-20}"
bench="$build/tests/bench/bench_config"
[ -x "$bench" ] || { echo "zoo_vs_torch: $bench not built (cmake --build $build --target bench_config)" >&2; exit 2; }
"$py" -c 'import torch' 2>/dev/null || { echo "zoo_vs_torch: $py cannot import torch (apt-get install python3-torch)" >&2; exit 2; }
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

figure() { sed -n 's/^RESULT .*images_per_sec=\([0-9.]*\).*/\1/p' "$1" | tail -n 1; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
config_of() { [ "$1" = vgg_bn ] && echo "$root/configs/vgg/bn.yaml" || echo "$root/configs/resnet/resnet20.yaml"; }
# ours NET / torch NET: one timed run; sets rate
ours() {
  "$bench" "$(config_of "$1")" --steps "$steps" --warmup 5 --label "$1" </dev/null >"$work/ours.log" 2>&1 \
    || { cat "$work/ours.log" >&2; exit 1; }
  rate="$(figure "$work/ours.log")"
}
torch() {
  "$py" "$here/torch_nets.py" --net "$1" --steps "$steps" --warmup 5 --batch 128 --threads 1 </dev/null \
    >"$work/torch.log" 2>&1 || { cat "$work/torch.log" >&2; exit 1; }
  rate="$(figure "$work/torch.log")"
}

echo "zoo_vs_torch: $rounds rounds of $steps steps, batch 128, 1 thread per process; pytorch $("$py" -c 'import torch; print(torch.__version__)')"
cpu_line
declare -A ratios
for ((r = 1; r <= rounds; r++)); do
  echo "round $r:"
  for net in vgg_bn resnet20; do
    if ((r % 2)); then ours "$net"; o="$rate"; torch "$net"; t="$rate"
    else torch "$net"; t="$rate"; ours "$net"; o="$rate"; fi
    q="$(awk -v a="$o" -v b="$t" 'BEGIN {printf "%.3f", a / b}')"
    ratios[$net]+="$q"$'\n'
    printf '  %-9s ours %8s  pytorch %8s images/s  ratio %s\n' "$net" "$o" "$t" "$q"
  done
done
echo "medians of the rounds' ratios (ours / PyTorch):"
for net in vgg_bn resnet20; do
  printf '  %-9s %s (rounds: %s)\n' "$net" "$(grep . <<<"${ratios[$net]}" | median)" "$(grep . <<<"${ratios[$net]}" | tr '\n' ' ')"
done

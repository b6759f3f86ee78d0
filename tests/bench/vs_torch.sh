#!/usr/bin/env bash
# vs_torch.sh BUILD [ROUNDS] [STEPS] [OVERRIDE...]: odyssey-dist against
# PyTorch side by side, one thread each (issue 21), for LeNet-5
# (configs/lenet5/baseline.yaml) and the VGG-style net (configs/vgg/plain.yaml)
# in fp32 and bf16, batch 64 per rank.
#
# Every round runs, for each net and precision, ours (bench_config, timed
# over steady-state steps) and PyTorch's (torch_nets.py), the order flipped
# from one round to the next, then VGG fp32 on 2 ranks and two independent
# 1-rank VGG runs at the same time (the pair). STEPS (default 400) is
# LeNet-5's timed steps; VGG runs STEPS / 10 (at least 3). OVERRIDEs
# (section.key=value) go to all of our runs, e.g. model.backend=openblas;
# our bf16 runs add $ODY_BENCH_BF16 (default "training.use_mixed_precision=true
# training.precision_dtype=bf16"). PyTorch's bf16 is torch.autocast('cpu').
#
# It prints each round's figures and ratios, then the median of each
# ratio over the rounds (a ratio per round, measured seconds apart, so that
# a change in the machine's speed between rounds does not land in it) next
# to the issue's targets with PASS or MISS:
#   LeNet-5 fp32, deterministic, 1 rank: ours >= 5x PyTorch
#   VGG fp32, 1 rank:                     ours >= 1.25x PyTorch
#   VGG, our bf16:                        >= 2x PyTorch fp32
#   VGG fp32, 2 ranks / the pair:         >= 0.95
# A miss is printed, not an error; a failed run is (exit 1). A build whose
# config does not take an override (a config error, exit 2, e.g. bf16
# compute not there yet) gets "n/a" for those runs. Without /usr/bin/python3
# and torch ($ODY_BENCH_PYTHON names another python) the PyTorch half is
# skipped and said so.
# shellcheck source=tests/bench/common.sh
source "$(dirname "$0")/common.sh" vs_torch "${1:-}"
rounds="${2:-3}"
steps="${3:-400}"
shift $(($# < 3 ? $# : 3))
overrides=("$@")
read -r -a bf16 <<<"${ODY_BENCH_BF16:-training.use_mixed_precision=true training.precision_dtype=bf16}"
vgg_steps=$((steps / 10 > 3 ? steps / 10 : 3))
bench="$build/tests/bench/bench_config"
[ -x "$bench" ] || { echo "vs_torch: $bench not built (cmake --build $build --target bench_config)" >&2; exit 2; }
cpu_line
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
py="${ODY_BENCH_PYTHON:-$py}"
synthetic=()  # without Fashion-MNIST installed, both sides train on synthetic data
[ -d /usr/share/datasets/fashion-mnist ] || synthetic=(--synthetic)
[ -z "${synthetic[*]}" ] || overrides=(data.name=synthetic "${overrides[@]}")
torch_ok=0
"$py" -c 'import torch' 2>/dev/null && torch_ok=1

# images/s on the RESULT line of a log
figure() { sed -n 's/^RESULT .*images_per_sec=\([0-9.]*\).*/\1/p' "$1" | tail -n 1; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.3f", a / b}'; }

net_config() { [ "$1" = lenet5 ] && echo "$root/configs/lenet5/baseline.yaml" || echo "$root/configs/vgg/plain.yaml"; }
net_steps() { [ "$1" = lenet5 ] && echo "$steps 20" || echo "$vgg_steps 3"; }

# ours NP NET PREC NAME: bench_config on NP ranks, its output in
# $work/NAME.log and its exit status in $work/NAME.rc (ours_rate reads them).
ours() {
  local np="$1" net="$2" prec="$3" name="$4" n w extra=()
  read -r n w <<<"$(net_steps "$net")"
  [ "$prec" = bf16 ] && extra=("${bf16[@]}")
  local cmd=("${mpirun[@]}" -np "$np" "$bench" "$(net_config "$net")" --steps "$n" --warmup "$w"
    --label "$net-$prec" training.batch_size_per_rank=64 "${overrides[@]}" "${extra[@]}")
  local rc=0
  "${cmd[@]}" </dev/null >"$work/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$name.rc"
}
# ours_rate NAME: the figure of a finished run of ours, into rate
ours_rate() {
  local rc
  rc="$(cat "$work/$1.rc")"
  if [ "$rc" = 2 ]; then
    rate=n/a
    [ -e "$work/$1.said" ] || { echo "  ($1: not run: $(grep -m1 'bench_config:' "$work/$1.log" || tail -n 1 "$work/$1.log"))"; touch "$work/$1.said"; }
  elif [ "$rc" != 0 ] || [ -z "$(figure "$work/$1.log")" ]; then
    echo "vs_torch: $1 failed (exit $rc):" >&2
    cat "$work/$1.log" >&2
    exit 1
  else
    rate="$(figure "$work/$1.log")"
  fi
}
# torch NET PREC: torch_nets.py on one thread, batch 64; sets rate
torch() {
  local n w
  read -r n w <<<"$(net_steps "$1")"
  if [ "$torch_ok" = 0 ]; then rate=n/a; return; fi
  "$py" "$here/torch_nets.py" --net "$1" --dtype "$2" --steps "$n" --warmup "$w" --batch 64 --threads 1 \
    "${synthetic[@]}" </dev/null >"$work/torch.log" 2>&1 || { cat "$work/torch.log" >&2; exit 1; }
  rate="$(figure "$work/torch.log")"
}

echo "vs_torch: $(getconf _NPROCESSORS_ONLN) cores, $rounds rounds; LeNet-5 $steps steps, VGG $vgg_steps steps, batch 64 per rank, 1 thread per process"
echo "  our overrides: ${overrides[*]:-(none)}; our bf16: ${bf16[*]}; data: ${synthetic[*]:+synthetic}${synthetic[*]:-Fashion-MNIST}"
if [ "$torch_ok" = 1 ]; then
  echo "  pytorch: $("$py" -c 'import torch; print(torch.__version__)') ($py), bf16 = autocast('cpu')"
else
  echo "  pytorch: unavailable ($py cannot import torch): its half is skipped"
fi
declare -A col  # col[KEY]: that figure's values over the rounds, one per line
add() { col[$1]+="$2"$'\n'; }
last() { tail -n 2 <<<"${col[$1]}" | head -n 1; }

for ((r = 1; r <= rounds; r++)); do
  echo "round $r:"
  for net in lenet5 vgg; do
    for prec in fp32 bf16; do
      if ((r % 2)); then
        ours 1 "$net" "$prec" "$net-$prec"; ours_rate "$net-$prec"; o="$rate"
        torch "$net" "$prec"; t="$rate"
      else
        torch "$net" "$prec"; t="$rate"
        ours 1 "$net" "$prec" "$net-$prec"; ours_rate "$net-$prec"; o="$rate"
      fi
      add "ours-$net-$prec" "$o"
      add "torch-$net-$prec" "$t"
      printf '  %-6s %-4s ours %9s  pytorch %9s images/s  ratio %s\n' "$net" "$prec" "$o" "$t" "$(ratio "$o" "$t")"
    done
  done
  ours 2 vgg fp32 two; ours_rate two; two="$rate"
  ours 1 vgg fp32 pa & ours 1 vgg fp32 pb & wait
  ours_rate pa; a="$rate"; ours_rate pb; b="$rate"
  pair="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f", a + b}')"
  add two "$two"
  add pair "$pair"
  printf '  vgg    fp32 2 ranks %9s, the pair %9s (%s + %s) images/s  ratio %s\n' "$two" "$pair" "$a" "$b" "$(ratio "$two" "$pair")"
  # the ratios the targets judge, each of this round's own figures
  add r1 "$(ratio "$(last ours-lenet5-fp32)" "$(last torch-lenet5-fp32)")"
  add r2 "$(ratio "$(last ours-vgg-fp32)" "$(last torch-vgg-fp32)")"
  add r3 "$(ratio "$(last ours-vgg-bf16)" "$(last torch-vgg-fp32)")"
  add r4 "$(ratio "$two" "$pair")"
  add r5 "$(ratio "$(last ours-lenet5-bf16)" "$(last torch-lenet5-bf16)")"
  add r6 "$(ratio "$(last ours-vgg-bf16)" "$(last torch-vgg-bf16)")"
done

# summary KEY LABEL TARGET: the median of a ratio's rounds next to its target
summary() {
  local values med
  values="$(grep -v '^n/a$' <<<"${col[$1]}" | grep . || true)"
  if [ -z "$values" ]; then
    printf '  %-44s %8s  %-8s %s\n' "$2" "n/a" "${3:-}" ""
    return
  fi
  med="$(median <<<"$values")"
  local verdict=""
  [ -n "${3:-}" ] && verdict="$(awk -v m="$med" -v t="${3#>= }" 'BEGIN {print (m >= t) ? "PASS" : "MISS"}')"
  printf '  %-44s %8.3f  %-8s %-4s (rounds: %s)\n' "$2" "$med" "${3:-}" "$verdict" "$(tr '\n' ' ' <<<"$values" | sed 's/ $//')"
}
echo "medians of the rounds' ratios:"
summary r1 "LeNet-5 fp32, 1 rank: ours / PyTorch" ">= 5"
summary r2 "VGG fp32, 1 rank: ours / PyTorch" ">= 1.25"
summary r3 "VGG: our bf16 / PyTorch fp32" ">= 2"
summary r4 "VGG fp32: 2 ranks / the pair of 1-rank runs" ">= 0.95"
summary r5 "LeNet-5 bf16: ours / PyTorch bf16" ""
summary r6 "VGG bf16: ours / PyTorch bf16" ""
echo "medians of the figures (images/s):"
for k in ours-lenet5-fp32 torch-lenet5-fp32 ours-lenet5-bf16 torch-lenet5-bf16 ours-vgg-fp32 torch-vgg-fp32 \
  ours-vgg-bf16 torch-vgg-bf16 two pair; do
  values="$(grep -v '^n/a$' <<<"${col[$k]}" | grep . || true)"
  printf '  %-18s %s\n' "$k" "$([ -n "$values" ] && median <<<"$values" || echo n/a)"
done

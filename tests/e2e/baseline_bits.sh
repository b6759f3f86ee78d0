#!/usr/bin/env bash
# The README's baseline figures are what this build trains: the seed config
# (configs/lenet5/baseline.yaml, 10 epochs of real Fashion-MNIST) on 2
# ranks ends at the validation accuracy and parameter sha256 that tests/bench/README.md
# states for the kernels this machine runs: the project's own (direct
# convolution: avx512, avx2 or portable, picked by CPU) and oneDNN's (its
# sgemm for the linear layers, JIT-compiled for the CPU: avx512_core_amx,
# ...); they fix the float summation order, hence the bits. A change of bits
# fails here, and the README is updated with it.
source "$(dirname "$0")/common.sh"
[ -d "$FMNIST" ] || fail "$FMNIST missing: apt-get install dataset-fashion-mnist"
readme="$ODY_SOURCE_DIR/tests/bench/README.md" # its "Baseline bits per kernel set" table
own=$("$ODY_PROGRAM" --version | sed -n 's/^own kernels: \([a-z0-9_]*\).*/\1/p')
dnnl=$("$ODY_PROGRAM" --version | sed -n 's/^kernels: oneDNN [0-9.]* on \([a-z0-9_]*\).*/\1/p')
[ -n "$own" ] && [ -n "$dnnl" ] || fail "--version names no kernels: $("$ODY_PROGRAM" --version)"
# oneDNN's fp32 sgemm is the same code on every AVX-512 (or every AVX2) level
# it names; the extensions beyond (VNNI, BF16, AMX) serve other data types.
case "$dnnl" in avx512_core*) dnnl=avx512_core ;; avx2*) dnnl=avx2 ;; esac
core="\`$own\`, oneDNN \`$dnnl\`"
# | `avx512`, oneDNN `avx512_core` ... | 89.88% | `16b0165d...` |
row=$(grep -F "| $core" "$readme" | head -1) \
  || fail "tests/bench/README.md states no baseline figures for the kernels $core: add a row to its table"
want_acc=$(sed -E 's/.*\| ([0-9.]+)% \| `([0-9a-f]+)\.\.\.` \|$/\1/' <<<"$row")
want_sha=$(sed -E 's/.*\| ([0-9.]+)% \| `([0-9a-f]+)\.\.\.` \|$/\2/' <<<"$row")

expect_exit 0 base.log 2 lenet5/baseline logging.plot=false experiment.output_dir="$scratch/out"
run="$scratch/out/lenet5-baseline"
sha=$(params_sha256 "$run/latest.h5")
acc=$(/usr/bin/python3 -c 'import sys; print(f"{100 * float(sys.argv[1]):.2f}")' \
      "$(json_last "$run/metrics.jsonl" val_accuracy)")
echo "baseline, 2 ranks, kernels $core: val_accuracy $acc%, parameter sha256 $sha"
echo "the table states:                    val_accuracy $want_acc%, parameter sha256 $want_sha..."
[ "$acc" = "$want_acc" ] && [ "${#want_sha}" -ge 8 ] && [ "${sha:0:${#want_sha}}" = "$want_sha" ] \
  || fail "the baseline's bits changed: update the row in tests/bench/README.md for $core with the figures above"

#!/usr/bin/env bash
# The README's baseline figures are what this build trains: the seed config
# (configs/lenet5/baseline.yaml, 10 epochs of real Fashion-MNIST) on 2
# ranks ends at the validation accuracy and parameter sha256 that README.md
# states for the OpenBLAS kernels this machine runs (OpenBLAS picks them by
# CPU, or OPENBLAS_CORETYPE; they fix the float summation order, hence the
# bits). A change of bits fails here, and the README is updated with it.
source "$(dirname "$0")/common.sh"
[ -d "$FMNIST" ] || fail "$FMNIST missing: apt-get install dataset-fashion-mnist"
readme="$ODY_SOURCE_DIR/README.md"
core=$(OPENBLAS_VERBOSE=2 "$ODY_PROGRAM" --version 2>&1 | sed -n 's/^Core: //p' | head -1)
[ -n "$core" ] || fail "cannot tell which OpenBLAS kernels run here (OPENBLAS_VERBOSE=2 printed no Core:)"
# | `CORE` ... | 89.88% | `16b0165d...` |
row=$(grep -E "^\| \`$core\`" "$readme" | head -1) \
  || fail "README.md states no baseline figures for OpenBLAS's $core kernels: add a row to its table"
want_acc=$(sed -E 's/.*\| ([0-9.]+)% \| `([0-9a-f]+)\.\.\.` \|$/\1/' <<<"$row")
want_sha=$(sed -E 's/.*\| ([0-9.]+)% \| `([0-9a-f]+)\.\.\.` \|$/\2/' <<<"$row")

expect_exit 0 base.log 2 lenet5/baseline logging.plot=false experiment.output_dir="$scratch/out"
run="$scratch/out/lenet5-baseline"
sha=$(params_sha256 "$run/latest.h5")
acc=$(/usr/bin/python3 -c 'import sys; print(f"{100 * float(sys.argv[1]):.2f}")' \
      "$(json_last "$run/metrics.jsonl" val_accuracy)")
echo "baseline, 2 ranks, OpenBLAS $core: val_accuracy $acc%, parameter sha256 $sha"
echo "README.md states:                   val_accuracy $want_acc%, parameter sha256 $want_sha..."
[ "$acc" = "$want_acc" ] && [ "${#want_sha}" -ge 8 ] && [ "${sha:0:${#want_sha}}" = "$want_sha" ] \
  || fail "the baseline's bits changed: update README.md's row for $core with the figures above"

#!/usr/bin/env bash
# One rank fails (its node lacks the data: here, its working directory),
# and every rank exits non-zero within seconds, with the failing rank named.
source "$(dirname "$0")/common.sh"
mkdir -p good/data lost
ln -s "$FMNIST"/*.gz good/data/
cfg="$ODY_SOURCE_DIR/configs/lenet5/baseline.yaml"
args=("$cfg" data.path=data experiment.output_dir="$scratch/out" training.epochs=1)

note "ranks 0-2 see data/, rank 3 does not"
start=$(date +%s.%N)
set +e
# shellcheck disable=SC2086
$ODY_MPIEXEC $ODY_NUMPROC_FLAG 3 --wdir "$scratch/good" "$ODY_PROGRAM" "${args[@]}" : \
  $ODY_NUMPROC_FLAG 1 --wdir "$scratch/lost" "$ODY_PROGRAM" "${args[@]}" >fail.log 2>&1
code=$?
set -e
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
cat fail.log
[ "$code" = 3 ] || fail "expected exit 3 (data error), got $code"
expect_in fail.log "odyssey-dist: data error: rank 3: data/train-images-idx3-ubyte(.gz)?: "
echo "all ranks exited in $elapsed s"
(( $(echo "$elapsed < 10" | bc) )) || fail "took $elapsed s (limit 10 s)"
[ -z "$(rank_pids "$scratch")" ] || fail "processes left behind"
exit 0

#!/usr/bin/env bash
# One rank fails (its node lacks the data: here, its working directory),
# and every rank exits non-zero within seconds, with the failing rank named.
# Then one rank's kernels fail mid-run (the test knob at a step): every rank
# ends with its message, and the checkpoint before resumes.
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

note "rank 1's kernels fail at step 30 (the test knob): every rank exits 1 with its message, the checkpoint of step 25 resumes"
kargs=(lenet5/baseline data.name=synthetic data.synthetic_train=3000 data.synthetic_val=200 training.epochs=1
       training.batch_size=60 checkpoint.every_steps=25 experiment.output_dir="$scratch/kernel")
with_knob 1 30 kernel expect_exit 1 kernel.log 2 "${kargs[@]}"
expect_in kernel.log 'test knob: rank 1 .* fails its first layer.s kernels at step 30,'
expect_in kernel.log 'rank 1: .*conv1: test knob: its kernels fail at step 30'
expect_in kernel.log 'saved checkpoint .*s00000025'
[ -z "$(rank_pids "output_dir=$scratch/kernel")" ] || fail "rank processes left behind"
expect_exit 0 kresume.log 2 "${kargs[@]}" --resume auto
expect_in kresume.log "resumed from $scratch/kernel/lenet5-baseline/ckpt-.*s00000025"
exit 0

#!/usr/bin/env bash
# A full disk while checkpointing: the error names the file and the reason,
# the run exits 4 on every rank, and the previous checkpoint is intact.
# Needs a small tmpfs (mount as root); skipped where mounting is not allowed.
source "$(dirname "$0")/common.sh"
mkdir -p small
if ! mount -t tmpfs -o size=900k tmpfs small 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs here (needs root)"
  exit 0
fi
trap 'umount "$scratch/small" 2>/dev/null; cleanup' EXIT
args=(lenet5/baseline data.name=synthetic data.synthetic_train=2400 data.synthetic_val=300
      training.epochs=2 training.batch_size=60 checkpoint.every_steps=10 checkpoint.keep_last=0
      experiment.output_dir="$scratch/small")
run="$scratch/small/lenet5-baseline"

expect_exit 4 full.log 2 "${args[@]}"
cat full.log | grep -E 'saved|error' || true
expect_in full.log "odyssey-dist: checkpoint error: rank 0: $run/ckpt-e0001-s00000020.h5: cannot write .*: No space left on device"
[ "$(grep -c 'odyssey-dist: ' full.log)" = 1 ] || fail "expected one error line"
ls -la "$run"
[ -z "$(ls "$run" | grep '\.tmp\.')" ] || fail "temporary file left behind"
[ "$(readlink "$run/latest.h5")" = ckpt-e0001-s00000010.h5 ] || fail "latest.h5 moved"
expect_exit 0 eval.log 1 --eval "$run/latest.h5"
expect_in eval.log 'accuracy'

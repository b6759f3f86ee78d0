#!/usr/bin/env bash
# Stop with SIGTERM at 2 ranks mid-epoch (exit 75 after a checkpoint),
# resume at 1 rank and stop again, resume at 3 ranks to the end: the final
# parameters match an uninterrupted run's to 1e-5 relative.
source "$(dirname "$0")/common.sh"
args=(lenet5/baseline data.name=synthetic data.synthetic_train=12000 data.synthetic_val=1000
      training.epochs=2 training.batch_size=60 optimizer.learning_rate=0.02
      training.log_interval=20 training.checkpoint_interval=100)
final() { readlink -f "$1/lenet5-baseline/latest.h5"; }

note "uninterrupted run on 2 ranks"
expect_exit 0 a.log 2 "${args[@]}" experiment.output_dir="$scratch/a"

# stop STEP NP LOG [resume]: train into $scratch/b on NP ranks until the
# last rank raises SIGTERM at optimizer step STEP: exit 75 after a checkpoint.
stop() {
  stop_at "$1" "$3" "$2" "${args[@]}" experiment.output_dir="$scratch/b" ${4:+--resume auto}
  expect_in "$3" 'saved checkpoint .*\(stop signal\)'
  expect_in "$3" 'stopped by a signal; continue with --resume auto'
}

note "2 ranks, SIGTERM in epoch 1 (step 61 of 200)"
stop 61 2 b1.log
note "resume on 1 rank, SIGTERM in epoch 2 (step 241, the 41st of the epoch)"
stop 241 1 b2.log resume
expect_in b2.log 'resumed from .*written on 2 rank\(s\), continuing on 1'
note "resume on 3 ranks to the end"
expect_exit 0 b3.log 3 "${args[@]}" experiment.output_dir="$scratch/b" --resume auto
expect_in b3.log 'continuing on 3'
expect_in b3.log 'epoch 2/2 done'

note "final parameters: uninterrupted vs stopped twice and resumed"
params_close "$(final "$scratch/a")" "$(final "$scratch/b")" 1e-5
/usr/bin/python3 - "$scratch/a/lenet5-baseline/metrics.jsonl" "$scratch/b/lenet5-baseline/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [r["epoch"] for r in b] == [1, 2], [r["epoch"] for r in b]   # no duplicate epochs
for x, y in zip(a, b):
    assert abs(x["val_accuracy"] - y["val_accuracy"]) <= 0.002, (x, y)
    assert abs(x["train_loss"] - y["train_loss"]) <= 1e-4, (x, y)
print("metrics match:", [r["val_accuracy"] for r in b])
PY

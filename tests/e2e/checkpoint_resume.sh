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

# start NP LOG: train in the background into $scratch/b; sets $bg.
start() {
  ody_bg "$1" "${args[@]}" experiment.output_dir="$scratch/b" ${3:+--resume auto} >"$2" 2>&1
}
# stop LOG PATTERN: SIGTERM the ranks once PATTERN is logged: exit 75 after a checkpoint.
stop() {
  stop_at "$1" "$2" "output_dir=$scratch/b"
  expect_in "$1" 'saved checkpoint .*\(stop signal\)'
  expect_in "$1" 'stopped by a signal; continue with --resume auto'
}

note "2 ranks, SIGTERM in epoch 1"
start 2 b1.log
stop b1.log 'epoch 1/2 step 60/200'
note "resume on 1 rank, SIGTERM in epoch 2"
start 1 b2.log resume
stop b2.log 'epoch 2/2 step 40/200'
expect_in b2.log 'resumed from .*written on 2 rank\(s\), continuing on 1'
note "resume on 3 ranks to the end"
start 3 b3.log resume
set +e; wait "$bg"; code=$?; set -e
[ "$code" = 0 ] || { cat b3.log >&2; fail "final resume exited $code"; }
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

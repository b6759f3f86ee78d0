#!/usr/bin/env bash
# The seed config trains on real Fashion-MNIST (a short version of it):
# per-epoch lines, the run directory with config.yaml and metrics.jsonl
# carrying the contract's keys, and a sane accuracy.
source "$(dirname "$0")/common.sh"
[ -d "$FMNIST" ] || fail "$FMNIST missing: apt-get install dataset-fashion-mnist"

note "2 ranks, 2 short epochs of the baseline config"
expect_exit 0 train.log 2 lenet5/baseline training.epochs=2 data.limit_train=6000 \
  data.limit_val=2000 experiment.output_dir="$scratch/out"
expect_in train.log 'epoch 1/2 done: train_loss [0-9.]+ train_acc [0-9.]+% val_loss [0-9.]+ val_acc'
expect_in train.log 'epoch 2/2 done'
expect_in train.log 'best val_accuracy'
run="$scratch/out/lenet5-baseline"
[ -f "$run/config.yaml" ] || fail "no config.yaml in $run"
[ "$(wc -l <"$run/metrics.jsonl")" = 2 ] || fail "metrics.jsonl should have one line per epoch"
/usr/bin/python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
keys = ["epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
        "samples_per_sec", "world_size", "time_data", "time_forward", "time_backward",
        "time_comm_wait", "time_optimizer", "time_checkpoint", "time_data_max"]
recs = [json.loads(l) for l in open(sys.argv[1])]
for r in recs:
    missing = [k for k in keys if k not in r]
    assert not missing, f"missing keys {missing} in {r}"
assert recs[-1]["epoch"] == 2 and recs[-1]["world_size"] == 2, recs[-1]
assert recs[-1]["step"] == 2 * 94, recs[-1]["step"]          # ceil(6000 / 64) steps per epoch
assert recs[-1]["val_accuracy"] > 0.70, recs[-1]["val_accuracy"]
assert recs[-1]["train_loss"] < recs[0]["train_loss"]
print("metrics ok:", recs[-1]["val_accuracy"])
PY

note "the saved config resolves to itself"
ody 0 "$run/config.yaml" --print-config >again.yaml
ody 0 again.yaml --print-config >again2.yaml
cmp again.yaml again2.yaml || fail "resolved config does not round-trip"
expect_in again.yaml 'batch_size: 64'
expect_in again.yaml 'epochs: 2'

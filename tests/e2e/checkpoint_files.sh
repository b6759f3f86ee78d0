#!/usr/bin/env bash
# Checkpoint files: the documented layout read with h5py, --eval, a model
# that does not match is refused, a corrupt newest checkpoint is skipped by
# --resume auto and refused by --resume PATH (exit 4).
source "$(dirname "$0")/common.sh"
args=(lenet5/baseline data.name=synthetic data.synthetic_train=2400 data.synthetic_val=600
      training.epochs=2 training.batch_size=60 optimizer.learning_rate=0.02
      checkpoint.every_steps=10 checkpoint.keep_last=0 experiment.output_dir="$scratch/out")
run="$scratch/out/lenet5-baseline"

note "2 ranks, a checkpoint every 10 steps, all kept"
expect_exit 0 train.log 2 "${args[@]}"
ls "$run"
n=$(ls "$run"/ckpt-*.h5 | wc -l)
[ "$n" -ge 8 ] || fail "expected at least 8 checkpoints, found $n"
[ -L "$run/latest.h5" ] && [ -L "$run/best.h5" ] || fail "latest.h5 and best.h5 must be links"

note "h5py finds everything by its documented name"
/usr/bin/python3 - "$run/latest.h5" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] == "odyssey-dist checkpoint", f.attrs["format"]
assert f.attrs["complete"] == 1
shapes = {"conv1.weight": (6, 1, 5, 5), "conv1.bias": (6,), "conv2.weight": (16, 6, 5, 5),
          "fc1.weight": (120, 400), "fc2.weight": (84, 120), "fc3.weight": (10, 84), "fc3.bias": (10,)}
for name, shape in shapes.items():
    assert f["model"][name].shape == shape, (name, f["model"][name].shape)
    assert f["model"][name].dtype == np.float32
    assert f["optimizer/momentum"][name].shape == shape
assert f["model"].attrs["name"] == "lenet5" and f["model"].attrs["parameters"] == 61706
st = f["state"].attrs
assert st["epoch"] == 2 and st["step_in_epoch"] == 0 and st["global_step"] == 80, dict(st)
assert st["world_size"] == 2 and st["global_batch"] == 60
assert list(f["metrics/epoch"][()]) == [0, 1]
assert len(f["metrics/val_accuracy"][()]) == 2
assert "training:" in f.attrs["config"]
print("h5py ok:", sorted(f["model"].keys()))
PY

note "--eval prints the checkpoint's metrics (the checkpoint's own config)"
expect_exit 0 eval.log 2 --eval "$run/latest.h5"
expect_in eval.log "^eval $run/latest.h5: loss [0-9.]+ accuracy [0-9.]+ \([0-9.]+%\) on 600 samples of synthetic"
last_acc=$(json_last "$run/metrics.jsonl" val_accuracy)
grep -q "accuracy $(printf '%.4f' "$last_acc")" eval.log || fail "eval accuracy differs from the run's last val_accuracy $last_acc"

note "a checkpoint of another model is refused"
expect_exit 4 evalmismatch.log 1 --eval "$run/latest.h5" "${args[@]}" model.variant=classic
expect_in evalmismatch.log "model does not match the config: layer 2: the checkpoint has 'relu 6x28x28', the config 'tanh 6x28x28'"
expect_exit 0 evalopt.log 1 --eval "$run/latest.h5" "${args[@]}" optimizer.name=adam
expect_exit 4 mismatch.log 1 "${args[@]}" model.variant=classic --resume auto
expect_in mismatch.log "model does not match the config: layer 2: the checkpoint has 'relu 6x28x28', the config 'tanh 6x28x28'"
expect_exit 4 mismatch2.log 1 "${args[@]}" model.name=mlp --resume "$run/latest.h5"
expect_in mismatch2.log "latest.h5.*model does not match: the checkpoint holds a lenet5, the config builds a mlp"
expect_exit 4 batch.log 1 "${args[@]}" training.batch_size=30 --resume auto
expect_in batch.log "global batch does not match: the checkpoint was written with 60 .*training.batch_size=60"

note "corrupt the two newest: truncate one, flip a byte in the other"
mapfile -t ckpts < <(ls -r "$run"/ckpt-*.h5)
newest=${ckpts[0]} second=${ckpts[1]} third=${ckpts[2]}
size=$(stat -c %s "$newest")
truncate -s $((size / 2)) "$newest"
size=$(stat -c %s "$second")
printf '\xff' | dd of="$second" bs=1 seek=$((size / 2)) conv=notrunc status=none
cmp -s "$second" "${ckpts[3]}" && fail "byte flip went wrong"
note "--resume PATH on either bad file exits 4 naming it"
expect_exit 4 bad.log 2 "${args[@]}" --resume "$newest"
one=$(grep -c 'odyssey-dist: ' bad.log)
[ "$one" = 1 ] || fail "expected one error line"
expect_in bad.log "odyssey-dist: checkpoint error: .*$newest.*(truncated|corrupt)"
expect_exit 4 bad2.log 1 "${args[@]}" --resume "$second"
expect_in bad2.log "checkpoint error: .*$second"
expect_exit 4 missing.log 1 "${args[@]}" --resume "$scratch/nonexistent.h5"
expect_in missing.log "nonexistent.h5"
note "--resume auto reports both and resumes from the newest good one"
expect_exit 0 resume.log 2 "${args[@]}" training.epochs=3 --resume auto
expect_in resume.log "skipping checkpoint $newest: "
expect_in resume.log "skipping checkpoint $second: "
expect_in resume.log "resumed from $third"
expect_in resume.log 'epoch 3/3 done'

note "a fresh run moves the earlier run aside, never deletes it"
expect_exit 0 fresh.log 1 "${args[@]}" training.epochs=1
expect_in fresh.log "moved it to $run.1"
[ -f "$run.1/$(basename "$third")" ] || fail "earlier checkpoints lost"

note "--resume auto follows latest.h5: after --resume PATH from an early checkpoint, the later names belong to the abandoned run"
branch=(lenet5/baseline data.name=synthetic data.synthetic_train=1200 data.synthetic_val=120
        training.epochs=2 training.batch_size=60 checkpoint.every_steps=10 checkpoint.keep_last=0
        experiment.output_dir="$scratch/branch")
brun="$scratch/branch/lenet5-baseline"
expect_exit 0 branch1.log 1 "${branch[@]}"
early=$(ls "$brun"/ckpt-*-s00000010.h5)
expect_exit 0 branch2.log 1 "${branch[@]}" training.max_steps=20 --resume "$early"
[ "$(readlink "$brun/latest.h5")" = "$(basename "$(ls "$brun"/ckpt-*-s00000020.h5)")" ] \
  || fail "latest.h5 should name the step-20 checkpoint of the resumed run"
expect_exit 0 branch3.log 1 "${branch[@]}" training.max_steps=30 --resume auto
expect_in branch3.log "resumed from $brun/ckpt-e[0-9]+-s00000020.h5"

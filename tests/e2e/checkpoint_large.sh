#!/usr/bin/env bash
# Checkpoints of a model with tensors of several MiB (written and read past
# the page cache with O_DIRECT, src/io/ckpt_direct.c): an MLP with
# Adam, stopped with SIGTERM on 2 ranks mid-epoch and resumed on 3, ends
# with bitwise the parameters and optimizer state of an uninterrupted run
# (deterministic mode); the large tensors sit on 4 KiB boundaries of the
# file, h5py reads them, and --eval scores the final checkpoint.
source "$(dirname "$0")/common.sh"
args=(mlp/baseline 'model.hidden_sizes=[2048]' data.name=synthetic data.synthetic_train=4800
      data.synthetic_val=600 training.epochs=2 training.batch_size=60 training.log_interval=10
      logging.plot=false)
state_sha256() {  # every tensor under /model and /optimizer, in name order
  /usr/bin/python3 - "$1/mlp-baseline/latest.h5" <<'PY'
import hashlib, sys, h5py
f = h5py.File(sys.argv[1], "r")
h, names = hashlib.sha256(), []
f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset)
             and n.split("/")[0] in ("model", "optimizer") else None)
for n in sorted(names):
    h.update(f[n][()].tobytes())
print(h.hexdigest())
PY
}

note "uninterrupted, 2 ranks"
expect_exit 0 a.log 2 "${args[@]}" experiment.output_dir="$scratch/a"
/usr/bin/python3 - "$scratch/a/mlp-baseline/latest.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
w = f["model/fc1.weight"]
assert w.shape == (2048, 784), w.shape
for name in ("model/fc1.weight", "optimizer/exp_avg/fc1.weight", "optimizer/exp_avg_sq/fc1.weight"):
    off = f[name].id.get_offset()
    assert off % 4096 == 0, (name, off)
print("large tensors at 4 KiB boundaries; fc1.weight", w.shape, "reads in h5py")
PY

note "2 ranks stopped mid-epoch, resumed on 3"
stop_at 41 b1.log 2 "${args[@]}" experiment.output_dir="$scratch/b"
expect_exit 0 b2.log 3 "${args[@]}" experiment.output_dir="$scratch/b" --resume auto
expect_in b2.log 'written on 2 rank\(s\), continuing on 3'
a=$(state_sha256 "$scratch/a") b=$(state_sha256 "$scratch/b")
echo "uninterrupted $a"
echo "resumed       $b"
[ "$a" = "$b" ] || fail "the resumed run's parameters or optimizer state differ"

note "--eval reads the final checkpoint"
expect_exit 0 eval.log 1 --eval "$scratch/a/mlp-baseline/latest.h5" "${args[@]}"
expect_in eval.log 'accuracy'

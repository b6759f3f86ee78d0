#!/usr/bin/env bash
# The ResNet config (residual blocks, batchnorm, augmentation, label
# smoothing) in deterministic mode, on 960 Fashion-MNIST images, in both
# batchnorm statistics modes (over each chunk; over the global batch, in
# lockstep): the sha256 of the parameters and the running statistics is
# the same at 1, 2, 3 and 4 ranks and after a stop on 2 ranks resumed on
# 3, and --eval of the last checkpoint (evaluation uses the running
# statistics) reports the accuracy the run ended with.
# (Batch 80 in chunks of 32: every step has a short chunk of 16, whose
# batch statistics are its own; 12 steps an epoch.)
source "$(dirname "$0")/common.sh"
run_sha256() { params_sha256 "$1/resnet20/latest.h5"; }
args=(resnet/resnet20 data.limit_train=960 data.limit_val=300 training.epochs=2 training.batch_size=80
      distributed.chunk_size=32 scheduler.warmup_steps=5 training.log_interval=4 logging.plot=false)

# check_eval RUN LOG: --eval of RUN's last checkpoint (log LOG.log) reports the
# validation loss and accuracy the run ended with (to the digits it prints).
check_eval() {
  expect_exit 0 "$2.log" 0 --eval "$scratch/$1/resnet20/latest.h5" data.limit_val=300
  local loss acc
  loss=$(json_last "$scratch/$1/resnet20/metrics.jsonl" val_loss)
  acc=$(json_last "$scratch/$1/resnet20/metrics.jsonl" val_accuracy)
  echo "$1: end of training: loss $loss, accuracy $acc; $(grep -o 'loss .* on' "$2.log")"
  /usr/bin/python3 - "$2.log" "$loss" "$acc" <<'PY' || fail "$1: --eval differs from the end of training"
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"loss ([0-9.]+) accuracy ([0-9.]+)", text)
loss, acc = float(m.group(1)), float(m.group(2))
sys.exit(abs(loss - float(sys.argv[2])) > 5e-7 * max(1.0, loss) or abs(acc - float(sys.argv[3])) > 5e-5)
PY
}

declare -A hash
for np in 1 2 3 4; do
  expect_exit 0 "p$np.log" "$np" "${args[@]}" experiment.output_dir="$scratch/p$np"
  hash[$np]=$(run_sha256 "$scratch/p$np")
  echo "P=$np sha256 ${hash[$np]}"
done
for np in 2 3 4; do
  [ "${hash[$np]}" = "${hash[1]}" ] || fail "P=$np differs from P=1"
done
expect_in p1.log 'training augmentation: random crop from 2 pixels of padding, horizontal flip on, random erasing with probability 0.5; label smoothing 0.1'
expect_in p1.log 'add9 +add'
cmp <(sed 's/"samples_per_sec.*//' "$scratch/p1/resnet20/metrics.jsonl") \
    <(sed 's/"samples_per_sec.*//' "$scratch/p4/resnet20/metrics.jsonl") \
  || fail "metrics differ between 1 and 4 ranks"

note "the running statistics are in the checkpoint under their names, and moved"
/usr/bin/python3 - "$scratch/p1/resnet20/latest.h5" <<'PY' || fail "running statistics missing or unchanged"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
m = f["model"]
names = [k for k in m.keys() if k.endswith(".running_mean")]
assert len(names) == 21, names                      # 19 convs' batchnorms and 2 projections'
for k in names:
    var = np.asarray(m[k.replace("running_mean", "running_var")])
    assert np.abs(np.asarray(m[k])).max() > 0 and np.abs(var - 1).max() > 0, k
assert "optimizer/momentum_buffer/bn1.running_mean" not in f, "a buffer has optimizer state"
print(len(names), "batchnorm layers, running statistics moved")
PY

note "--eval of the last checkpoint: the running statistics give the run's last accuracy"
check_eval p1 eval

note "stop on 2 ranks mid-epoch, resume on 3"
stop_at 7 stop.log 2 "${args[@]}" experiment.output_dir="$scratch/stop"
expect_exit 0 resume.log 3 "${args[@]}" experiment.output_dir="$scratch/stop" --resume auto
expect_in resume.log 'written on 2 rank\(s\), continuing on 3'
resumed=$(run_sha256 "$scratch/stop")
echo "stop at 2 + resume at 3: ${resumed}"
[ "$resumed" = "${hash[1]}" ] || fail "the resumed run differs"

note "batchnorm over the global batch (model.batchnorm=global): 1 = 2 = 3 = 4 ranks, stopped on 2 and resumed on 3"
args+=(model.batchnorm=global)
declare -A ghash
for np in 1 2 3 4; do
  expect_exit 0 "g$np.log" "$np" "${args[@]}" experiment.output_dir="$scratch/g$np"
  ghash[$np]=$(run_sha256 "$scratch/g$np")
  echo "global, P=$np sha256 ${ghash[$np]}"
  [ "${ghash[$np]}" = "${ghash[1]}" ] || fail "global statistics: P=$np differs from P=1"
done
expect_in g1.log 'bn1 +batchnorm .*global-batch statistics'
[ "${ghash[1]}" != "${hash[1]}" ] || fail "model.batchnorm=global changed nothing"
stop_at 7 gstop.log 2 "${args[@]}" experiment.output_dir="$scratch/gstop"
expect_exit 0 gresume.log 3 "${args[@]}" experiment.output_dir="$scratch/gstop" --resume auto
[ "$(run_sha256 "$scratch/gstop")" = "${ghash[1]}" ] || fail "global statistics: the resumed run differs"
check_eval g1 geval
echo "PASS"

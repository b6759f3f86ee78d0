#!/usr/bin/env bash
# Deterministic mode: the sha256 of the final parameters is the same for
# 1, 2, 3 and 4 ranks (sums in shared memory, and through MPI; with and
# without chunk stealing), run to run, with steps redone at a wider scale,
# with a loader thread, and after a stop on 2 ranks resumed on 3. With
# stealing, a step's rows are read while waiting at the end of the step
# before (all but an epoch's first step).
# (Batch 60 in chunks of 8: the last chunk of every step is short; dropout
# on, so its random keys are covered too.)
source "$(dirname "$0")/common.sh"
run_sha256() { params_sha256 "$1/lenet5-baseline/latest.h5"; }
args=(lenet5/baseline data.name=synthetic data.synthetic_train=4800 data.synthetic_val=600
      training.epochs=2 training.batch_size=60 model.dropout=0.2 optimizer.learning_rate=0.05
      distributed.deterministic=true distributed.chunk_size=8 training.log_interval=10
      logging.plot=false)

declare -A hash
for np in 1 2 3 4; do
  expect_exit 0 "p$np.log" "$np" "${args[@]}" experiment.output_dir="$scratch/p$np"
  hash[$np]=$(run_sha256 "$scratch/p$np")
  echo "P=$np sha256 ${hash[$np]}"
done
expect_exit 0 again.log 2 "${args[@]}" experiment.output_dir="$scratch/again"
again=$(run_sha256 "$scratch/again")
echo "P=2 again ${again}"
for np in 2 3 4; do
  [ "${hash[$np]}" = "${hash[1]}" ] || fail "P=$np differs from P=1"
done
expect_in p4.log 'gradient sums: exact, in node shared memory \(4 rank'
expect_in p4.log 'chunk stealing: the 4 ranks of a node share'
expect_in p4.log 'chunk stealing: [0-9]+ of 1280 chunks'
# every step but an epoch's first reads its rows while waiting for the last
expect_in p4.log '158 of 160 steps had their rows read while the ranks waited'
grep -o 'chunk stealing: [0-9]* of.*' p4.log
note "4 ranks without chunk stealing: the same bits"
expect_exit 0 nosteal4.log 4 "${args[@]}" distributed.work_stealing=false \
  experiment.output_dir="$scratch/nosteal4"
grep -q 'chunk stealing' nosteal4.log && fail "work_stealing=false still stole chunks"
[ "$(run_sha256 "$scratch/nosteal4")" = "${hash[1]}" ] || fail "sums without stealing differ"
note "4 ranks summing through MPI instead of shared memory: the same bits"
expect_exit 0 mpi4.log 4 "${args[@]}" distributed.shared_memory=false experiment.output_dir="$scratch/mpi4"
grep -q 'shared memory' mpi4.log && fail "shared_memory=false still used shared memory"
[ "$(run_sha256 "$scratch/mpi4")" = "${hash[1]}" ] || fail "MPI sums differ from shared-memory sums"
[ "$again" = "${hash[1]}" ] || fail "a second run differs"
cmp <(sed 's/"samples_per_sec.*//' "$scratch/p1/lenet5-baseline/metrics.jsonl") \
    <(sed 's/"samples_per_sec.*//' "$scratch/p4/lenet5-baseline/metrics.jsonl") \
  || fail "metrics differ between 1 and 4 ranks"

# same_bits NAME P Q WHAT OVERRIDES...: runs NAME<P> on P ranks and NAME<Q> on
# Q (logs NAME<P>.log, NAME<Q>.log) with args and OVERRIDES; their parameters
# must match.
same_bits() {
  local name=$1 p=$2 q=$3 what=$4 np; shift 4
  for np in "$p" "$q"; do
    expect_exit 0 "$name$np.log" "$np" "${args[@]}" "$@" experiment.output_dir="$scratch/$name$np"
  done
  [ "$(run_sha256 "$scratch/$name$p")" = "$(run_sha256 "$scratch/$name$q")" ] \
    || fail "$what differ between $p and $q ranks"
}

note "with gradient accumulation (3 micro-batches of 20 per step): 1 rank = 3 ranks"
same_bits acc 1 3 "accumulated steps" training.batch_size=20 training.accumulation_steps=3 \
  training.epochs=1

note "steps redone with a wider scale, and skipped (learning rate 2): 1 rank = 3 ranks"
same_bits hot 1 3 "redone steps" optimizer.learning_rate=2 training.on_nonfinite=skip \
  training.epochs=1 logging.level=debug
expect_in hot3.log 'redone with a wider fixed-point scale'

note "the loader on a thread (data.prefetch), validation between steps read ahead: 1 rank = 3 ranks"
same_bits thread 1 3 "runs with a loader thread" data.prefetch=true training.validate_interval=7 \
  training.epochs=1
expect_in thread3.log '79 of 80 steps had their rows read'

note "a last step of 10 samples (2 chunks): ranks without rows still take chunks; 1 rank = 4 ranks"
same_bits tail 1 4 "a short last step" data.synthetic_train=4810 training.epochs=1
expect_in tail4.log 'chunk stealing: [0-9]+ of 642 chunks'

note "oneDNN convolutions (model.conv_algorithm=onednn): 1 rank = 2 = 3 = 4 ranks, metrics too"
for np in 2 3; do
  same_bits onednn 1 "$np" "oneDNN convolutions" model.conv_algorithm=onednn training.epochs=1
done
same_bits onednn 1 4 "oneDNN convolutions" model.conv_algorithm=onednn training.epochs=1
expect_in onednn4.log 'onednn jit'
cmp <(sed 's/"samples_per_sec.*//' "$scratch/onednn1/lenet5-baseline/metrics.jsonl") \
    <(sed 's/"samples_per_sec.*//' "$scratch/onednn4/lenet5-baseline/metrics.jsonl") \
  || fail "oneDNN metrics differ between 1 and 4 ranks"
[ "$(run_sha256 "$scratch/onednn1")" != "${hash[1]}" ] || fail "conv_algorithm=onednn changed nothing"

note "the openblas backend: 1 rank = 3 ranks"
same_bits openblas 1 3 "openblas-backend runs" model.backend=openblas training.epochs=1

if "$ODY_PROGRAM" --version 2>&1 | grep -q 'bf16 compute: yes'; then
  note "bf16 compute: 1 rank = 2 = 3 ranks, and not the fp32 bits"
  for np in 2 3; do
    same_bits bf16 1 "$np" "bf16-compute runs" training.use_mixed_precision=true training.epochs=1
  done
  expect_in bf163.log 'onednn .* bf16'
  [ "$(run_sha256 "$scratch/bf161")" != "$(run_sha256 "$scratch/onednn1")" ] || fail "bf16 gave the fp32 bits"
else
  note "bf16 compute: skipped, this CPU has no native bf16 ($("$ODY_PROGRAM" --version 2>&1 | grep 'bf16 compute'))"
fi

note "stop on 2 ranks mid-epoch, resume on 3"
stop_at 31 stop.log 2 "${args[@]}" experiment.output_dir="$scratch/stop"
expect_exit 0 resume.log 3 "${args[@]}" experiment.output_dir="$scratch/stop" --resume auto
expect_in resume.log 'written on 2 rank\(s\), continuing on 3'
resumed=$(run_sha256 "$scratch/stop")
echo "stop at 2 + resume at 3: ${resumed}"
[ "$resumed" = "${hash[1]}" ] || fail "the resumed run differs"

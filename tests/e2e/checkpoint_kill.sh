#!/usr/bin/env bash
# SIGKILL one of 2 ranks mid-run: every process is gone within 10 s, the
# last complete checkpoint is intact, and the run resumes from it.
source "$(dirname "$0")/common.sh"
args=(lenet5/baseline data.name=synthetic data.synthetic_train=30000 data.synthetic_val=500
      training.epochs=2 training.batch_size=60 optimizer.learning_rate=0.02
      checkpoint.every_steps=25 training.log_interval=25 experiment.output_dir="$scratch/out")
run="$scratch/out/lenet5-baseline"

ody_bg 2 "${args[@]}" >kill.log 2>&1
wait_for kill.log 'saved checkpoint .*s00000050' 120
pids=($(rank_pids "output_dir=$scratch/out"))
[ "${#pids[@]}" = 2 ] || fail "expected 2 rank processes, found ${#pids[@]}"
kill -KILL "${pids[1]}"
start=$(date +%s.%N)
set +e; wait "$bg"; code=$?; set -e
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
echo "mpirun exited $code, $elapsed s after the SIGKILL"
[ "$code" != 0 ] || fail "a killed rank must fail the job"
(( $(echo "$elapsed < 10" | bc) )) || fail "took $elapsed s to end the job (limit 10 s)"
sleep 0.5
[ -z "$(rank_pids "output_dir=$scratch/out")" ] || fail "rank processes left behind"

note "resume from the last complete checkpoint"
last=$(readlink "$run/latest.h5")
expect_exit 0 resume.log 2 "${args[@]}" training.epochs=1 --resume auto
expect_in resume.log "resumed from $run/$last"

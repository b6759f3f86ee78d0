#!/usr/bin/env bash
# One of 2 ranks is SIGKILLed mid-run (by the test knob, at a known step):
# every process is gone within 10 s, the last complete checkpoint is
# intact, and the run resumes from it.
source "$(dirname "$0")/common.sh"
args=(lenet5/baseline data.name=synthetic data.synthetic_train=30000 data.synthetic_val=500
      training.epochs=2 training.batch_size=60 optimizer.learning_rate=0.02
      checkpoint.every_steps=25 training.log_interval=25 experiment.output_dir="$scratch/out")
run="$scratch/out/lenet5-baseline"

note "rank 1 raises SIGKILL at step 60 (checkpoints at 25 and 50)"
set +e
with_knob 1 60 kill ody 2 "${args[@]}" >kill.log 2>&1
code=$?
set -e
end=$(date +%s.%N)
cat kill.log
[ "$code" != 0 ] || fail "a killed rank must fail the job"
expect_in kill.log 'saved checkpoint .*s00000050'
killed=$(knob_time kill.log)
[ -n "$killed" ] || fail "the knob's line is missing"
elapsed=$(echo "$end - $killed" | bc)
echo "mpirun exited $code, $elapsed s after the SIGKILL"
(( $(echo "$elapsed < 10" | bc) )) || fail "took $elapsed s to end the job (limit 10 s)"
[ -z "$(rank_pids "output_dir=$scratch/out")" ] || fail "rank processes left behind"

note "resume from the last complete checkpoint"
last=$(readlink "$run/latest.h5")
expect_exit 0 resume.log 2 "${args[@]}" training.epochs=1 --resume auto
expect_in resume.log "resumed from $run/$last"

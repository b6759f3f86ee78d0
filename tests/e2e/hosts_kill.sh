#!/usr/bin/env bash
# Two namespace hosts x 2 ranks (tests/e2e/hosts.sh): rank 3, on ody-h2,
# is SIGKILLed mid-run (the test knob, at step 50; checkpoints at 20 and
# 40). Every process on every host is gone within 15 s of the kill, the
# message names the rank and its host, and the last checkpoint resumes on
# 3 ranks of one host with the bits of an uninterrupted run.
source "$(dirname "$0")/hosts.sh"
args=(lenet5/baseline data.limit_train=3840 data.limit_val=500 training.epochs=1
      checkpoint.every_steps=20 training.log_interval=10 logging.plot=false)
run="$scratch/out/lenet5-baseline"

note "uninterrupted, 1 rank, on this machine"
expect_exit 0 whole.log 0 "${args[@]}" experiment.output_dir="$scratch/whole"
want=$(params_sha256 "$scratch/whole/lenet5-baseline/latest.h5")
echo "uninterrupted: sha256 $want"

hosts_up 2
note "2 hosts x 2 ranks; rank 3 (on ody-h2) raises SIGKILL at step 50"
set +e
with_knob 3 50 kill hosts_run 2x2 "${args[@]}" experiment.output_dir="$scratch/out" >kill.log 2>&1
code=$?
set -e
cat kill.log
[ "$code" != 0 ] || fail "a killed rank must fail the job"
killed=$(knob_time kill.log)
[ -n "$killed" ] || fail "the knob's line is missing"
expect_in kill.log 'test knob: rank 3 \(pid [0-9]+\) raises SIGKILL at step 50,'
expect_in kill.log 'saved checkpoint .*s00000040'
# Open MPI names the rank and its host.
expect_in kill.log 'process rank 3 with PID [0-9]+ on node ody-h2 exited on signal 9'
# Every process on every host (mpirun and the ranks on ody-h1, the daemon
# and the ranks on ody-h2) gone by 15 s after the kill.
while [ -n "$(hosts_pids)" ] && (( $(echo "$(date +%s.%N) - $killed < 15" | bc) )); do sleep 0.2; done
elapsed=$(echo "$(date +%s.%N) - $killed" | bc)
left=$(hosts_pids)
[ -z "$left" ] || { ps -o pid,args -p "${left//$'\n'/,}" >&2 || true; fail "processes left on the hosts $elapsed s after the kill"; }
echo "mpirun exited $code; every process on both hosts gone $elapsed s after the SIGKILL"
[ -z "$(rank_pids "output_dir=$scratch/out")" ] || fail "rank processes left behind"

note "resume from the last checkpoint on 1 host x 3 ranks"
last=$(readlink "$run/latest.h5")
[[ "$last" == *s00000040* ]] || fail "the last checkpoint is $last, expected step 40's"
hosts_expect_exit 0 resume.log 1x3 "${args[@]}" experiment.output_dir="$scratch/out" --resume auto
expect_in resume.log "resumed from $run/$last: .*written on 4 rank\(s\), continuing on 3"
got=$(params_sha256 "$run/latest.h5")
echo "killed at 50 on 2 x 2, resumed from 40 on 1 x 3: sha256 $got"
[ "$got" = "$want" ] || fail "the resumed run differs from the uninterrupted one"

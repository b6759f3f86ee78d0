#!/usr/bin/env bash
# Namespace hosts (tests/e2e/hosts.sh): a stop by SIGTERM (the test knob on
# the last rank; the step's vote spreads it) writes the step's checkpoint
# and every rank on every host exits 75; the run resumes on another host
# count: 2 hosts x 2 ranks stopped at step 25 (mpirun exits 75), resumed on
# 4 hosts x 1 rank (no shared memory: every sum over TCP) and stopped again
# at step 45 (each rank, on its host, exits 75), finished on 1 host x 3
# ranks, with the bits of an uninterrupted run.
source "$(dirname "$0")/hosts.sh"
args=(lenet5/baseline data.limit_train=3840 data.limit_val=500 training.epochs=1
      training.log_interval=10 logging.plot=false)
run="$scratch/out/lenet5-baseline"

note "uninterrupted, 1 rank, on this machine"
expect_exit 0 whole.log 0 "${args[@]}" experiment.output_dir="$scratch/whole"
want=$(params_sha256 "$scratch/whole/lenet5-baseline/latest.h5")
echo "uninterrupted: sha256 $want"

# stop_on SPEC STEP LOG ARGS...: run on SPEC, the last rank raising SIGTERM
# at STEP: mpirun exits 75 (HOSTS_EXIT), the step's checkpoint is written.
stop_on() {
  local spec="$1" step="$2" log="$3" np=$(( ${1%x*} * ${1#*x} ))
  with_knob $((np - 1)) "$step" term hosts_expect_exit "${HOSTS_EXIT:-75}" "$log" "$spec" \
    "${args[@]}" experiment.output_dir="$scratch/out" "${@:4}"
  expect_in "$log" "test knob: rank $((np - 1)) .* raises SIGTERM at step $step,"
  expect_in "$log" "saved checkpoint .*s000000$step"
  [ -z "$(hosts_pids)" ] || fail "processes left on the hosts after the stop"
}

# Each rank's own exit status, with its host: a wrapper on the shared file
# system writes it, and mpirun lets every rank end (orte_abort_on_non_zero_status
# 0; by default it kills the others at the first exit 75).
mkdir -p "$scratch/exits"
printf '#!/bin/sh\n"%s" "$@"\ncode=$?\necho "$code" >"%s/$(hostname)-rank$OMPI_COMM_WORLD_RANK"\nexit $code\n' \
  "$ODY_PROGRAM" "$scratch/exits" >"$scratch/rank.sh"
chmod +x "$scratch/rank.sh"
# every_rank_75 SPEC: each rank of SPEC exited 75, on its own host group.
every_rank_75() {
  local spec="$1" np=$(( ${1%x*} * ${1#*x} )) exits
  exits=$(cd "$scratch/exits" && grep -H . -- * | sort)
  echo "exit status per host and rank: $(tr '\n' ' ' <<<"$exits")"
  [ "$(grep -c ':75$' <<<"$exits")" = "$np" ] || fail "$spec: not every rank exited 75: $exits"
  [ "$(sed 's/-rank.*//' <<<"$exits" | sort -u | wc -l)" = "${spec%x*}" ] ||
    fail "$spec: the exits are not from ${spec%x*} hosts: $exits"
}

hosts_up 4
note "2 hosts x 2 ranks, stopped at step 25"
stop_on 2x2 25 stop1.log
note "resumed on 4 hosts x 1 rank, stopped at step 45"
HOSTS_EXIT=0 HOSTS_MPIRUN_ARGS="--mca orte_abort_on_non_zero_status 0" HOSTS_PROGRAM="$scratch/rank.sh" \
  stop_on 4x1 45 stop2.log --resume auto
every_rank_75 4x1
expect_in stop2.log "resumed from $run/.*s00000025.*written on 4 rank\(s\), continuing on 4"
note "finished on 1 host x 3 ranks"
hosts_expect_exit 0 end.log 1x3 "${args[@]}" experiment.output_dir="$scratch/out" --resume auto
expect_in end.log "resumed from $run/.*s00000045.*written on 4 rank\(s\), continuing on 3"
got=$(params_sha256 "$run/latest.h5")
echo "stopped on 2 x 2 and 4 x 1, finished on 1 x 3: sha256 $got"
[ "$got" = "$want" ] || fail "the resumed run differs from the uninterrupted one"

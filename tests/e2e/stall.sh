#!/usr/bin/env bash
# A rank that is alive but stuck is reported, not waited on forever
# (distributed.stall_seconds): rank 1 of 3 is held at step 5 by the test
# knob (asleep, or stopped by SIGSTOP); the others warn at half the bound,
# then name it (pid, process state), the step and what they wait in, and
# the job ends with exit 1 within the bound, leaving no process behind.
# In deterministic mode (the node's shared-memory sum) and in the fast mode
# (MPI sums). Under SLURM's srun: tests/e2e/slurm.sh.
source "$(dirname "$0")/common.sh"
bound=4
args=(lenet5/baseline data.name=synthetic data.synthetic_train=3000 data.synthetic_val=300
      training.epochs=1 training.batch_size=60 logging.plot=false
      distributed.stall_seconds=$bound experiment.output_dir="$scratch/out")

# stalled NAME ACTION STATE OVERRIDES...: rank 1 does ACTION at step 5.
stalled() {
  local name="$1" action="$2" state="$3"; shift 3
  set +e
  with_knob 1 5 "$action" timeout -k 5 120 $ODY_MPIEXEC $ODY_NUMPROC_FLAG 3 "$ODY_PROGRAM" \
    "${args[@]}" "$@" >"$name.log" 2>&1
  local code=$?
  set -e
  local end elapsed
  end=$(date +%s.%N)
  cat "$name.log"
  [ "$code" = 1 ] || fail "$name: expected exit 1, got $code"
  elapsed=$(echo "$end - $(knob_time "$name.log")" | bc)
  echo "--- $name: the job ended $elapsed s after rank 1 stopped (bound $bound s)"
  (( $(echo "$elapsed < $bound + 6" | bc) )) || fail "$name: took $elapsed s (bound $bound s)"
  local waited
  waited=$(sed -n 's/.*stalled: rank [02] .* has waited \([0-9.]*\) s in .*/\1/p' "$name.log" | head -1)
  (( $(echo "$waited >= $bound && $waited < $bound + 5" | bc) )) \
    || fail "$name: a rank ended its wait after $waited s (bound $bound s)"
  expect_in "$name.log" "warning: rank [02] \(host [^)]+\) has waited [0-9.]+ s in .* at step 5 for rank 1 \(pid [0-9]+, $state\); the job ends at $bound s"
  expect_in "$name.log" "stalled: rank [02] \(host [^)]+\) has waited [0-9.]+ s in .* at step 5 for rank 1 \(pid [0-9]+, $state\); ending the job \(distributed.stall_seconds: $bound\)"
  [ -z "$(rank_pids "output_dir=$scratch/out")" ] || fail "$name: rank processes left behind"
  rm -rf "$scratch/out"
}

note "deterministic mode, rank 1 asleep at step 5"
stalled sleep stall sleeping
expect_in sleep.log 'in the gradient sum in node shared memory at step 5'
note "deterministic mode, rank 1 stopped (SIGSTOP) at step 5"
stalled stop stop stopped
note "fast mode (MPI sums), rank 1 asleep at step 5"
stalled fast stall sleeping distributed.deterministic=false

note "a run without a stall says nothing of it"
expect_exit 0 quiet.log 3 "${args[@]}"
grep -q 'stalled\|has waited' quiet.log && fail "a healthy run reported a stall"
note "stall tests passed"

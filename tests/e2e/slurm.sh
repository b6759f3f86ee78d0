#!/usr/bin/env bash
# launch/slurm.sbatch on a single-node SLURM started here (munged, slurmctld,
# slurmd; all state in the scratch directory, stopped on every exit path):
#  1. a job (launcher srun when SLURM offers pmix) is preempted with SIGUSR1
#     to its batch shell (what --signal=B:USR1@T sends before the time limit):
#     it checkpoints, exits 75 and requeues itself; the requeued job is
#     requeued again from outside (scontrol requeue: SIGTERM to every
#     process), and the third start runs to the end;
#  2. the same with --launcher mpirun --tcp, preempted once;
#  3. a two-task job array with a sweep file;
#  4. a rank that stalls (alive) under srun: the stall watchdog of the other
#     names it and exits 1 within the bound, and srun (--kill-on-bad-exit)
#     ends the step.
# Signals land at known steps: the test knob holds rank 0 there until the
# signal comes.
# Both preempted runs end with the parameters and last metrics of an
# uninterrupted run. Skips (exit 0) only when the SLURM packages are missing.
source "$(dirname "$0")/common.sh"

for cmd in munged slurmctld slurmd sbatch scontrol squeue scancel srun; do
  command -v "$cmd" >/dev/null || { echo "SKIP: $cmd not found (Debian packages slurm-wlm and munge)"; exit 0; }
done

# --- a one-node cluster in $scratch --------------------------------------
daemons=()
stop_cluster() {
  local status=$? log
  set +e
  if [ "$status" != 0 ]; then
    for log in munge/munged.out slurm/log/slurmctld.log slurm/log/slurmd.log; do
      [ -s "$log" ] && { echo "--- tail of $log" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  if [ -n "${SLURM_CONF:-}" ] && [ ${#daemons[@]} -gt 0 ]; then
    scancel --quiet --partition=odytest 2>/dev/null
    for _ in $(seq 100); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  local pid
  for pid in "${daemons[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${daemons[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  rm -rf "$scratch"
}
trap stop_cluster EXIT

# free_port: a TCP port nobody listens on now.
free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# until_true SECONDS WHAT CMD...: poll CMD every 0.2 s until it succeeds.
until_true() {
  local seconds="$1" what="$2" i; shift 2
  for ((i = 0; i < seconds * 5; i++)); do "$@" && return 0; sleep 0.2; done
  fail "timed out after $seconds s waiting for $what"
}

start_cluster() {
  local host cores memory_mb
  host=$(hostname -s)
  cores=$(nproc)
  memory_mb=$(awk '/^MemTotal:/ { print int($2 / 1024 / 2) }' /proc/meminfo)
  chmod 755 "$scratch"        # munged wants its socket directory reachable by all
  mkdir -p slurm/state slurm/spool slurm/log
  mkdir -m 755 munge
  head -c 1024 /dev/urandom >munge/munge.key
  chmod 600 munge/munge.key
  mkdir -m 755 munge/run
  munged -F --key-file="$scratch/munge/munge.key" --socket="$scratch/munge/run/socket" \
    --pid-file="$scratch/munge/munged.pid" --log-file="$scratch/munge/munged.log" \
    --seed-file="$scratch/munge/munged.seed" >munge/munged.out 2>&1 &
  daemons+=($!)
  until_true 20 "munged" test -S munge/run/socket

  export SLURM_CONF="$scratch/slurm/slurm.conf"
  # cred_expire: a requeued job may start again after this many seconds
  # (default 120); sched_interval: how often pending jobs are looked at.
  cat >"$SLURM_CONF" <<EOF
ClusterName=odytest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$scratch/munge/run/socket,cred_expire=5
CredType=cred/munge
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation=$scratch/slurm/state
SlurmdSpoolDir=$scratch/slurm/spool
SlurmctldPidFile=$scratch/slurm/slurmctld.pid
SlurmdPidFile=$scratch/slurm/slurmd.pid
SlurmctldLogFile=$scratch/slurm/log/slurmctld.log
SlurmdLogFile=$scratch/slurm/log/slurmd.log
ReturnToService=2
MinJobAge=600
KillWait=30
SchedulerParameters=sched_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cores RealMemory=$memory_mb State=UNKNOWN
PartitionName=odytest Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
  slurmctld -D -c -f "$SLURM_CONF" >slurm/log/slurmctld.out 2>&1 &
  daemons+=($!)
  slurmd -D -N "$host" -f "$SLURM_CONF" >slurm/log/slurmd.out 2>&1 &
  daemons+=($!)
  until_true 60 "the node to be idle (see $scratch/slurm/log)" node_idle
  note "SLURM up: node $host, $cores CPUs; srun --mpi=list: $(srun --mpi=list 2>&1 | grep -v '^MPI' | tr -s '\n\t ' ' ')"
}
node_idle() { sinfo -h -o %T 2>/dev/null | grep -qx idle; }

# --- job helpers ----------------------------------------------------------
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
job_state_is() { [ "$(job_field "$1" JobState)" = "$2" ]; }
job_out() { echo "$scratch/job-$1.out"; }
restarts_are() { [ "$(job_field "$1" Restarts)" = "$2" ] && job_state_is "$1" RUNNING; }
# log_has JOB PATTERN: the job's output has a line matching PATTERN.
log_has() { grep -Eq -- "$2" "$(job_out "$1")" 2>/dev/null; }
# job_done JOB: finished, in any final state.
job_done() {
  case "$(job_field "$1" JobState)" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) return 0 ;; esac
  return 1
}
# wait_log JOB PATTERN SECONDS
wait_log() {
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    log_has "$1" "$2" && return 0
    job_done "$1" && break
    sleep 0.2
  done
  cat "$(job_out "$1")" >&2 || true
  scontrol show job "$1" >&2 || true
  fail "job $1: no '$2' in its output after $3 s"
}
expect_completed() {
  until_true 180 "job $1 to end" job_done "$1"
  local state code
  state=$(job_field "$1" JobState)
  code=$(job_field "$1" ExitCode)
  if [ "$state" != COMPLETED ] || [ "$code" != 0:0 ]; then
    cat "$(job_out "$1")" >&2
    fail "job $1 ended $state, exit $code"
  fi
}
# show_history FILE: what the job's starts did, for the test log.
show_history() { grep -E '^slurm\.sbatch:|resumed from|saved checkpoint|epoch 2/2 done' "$1" | sed 's/^/    /'; }
# submit [sbatch options] -- [slurm.sbatch arguments]: prints the job id.
submit() {
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  (cd "$ODY_SOURCE_DIR" && sbatch --parsable --output="$scratch/job-%j.out" --time=10 "${opts[@]}" \
     launch/slurm.sbatch "$@")
}

start_cluster
export ODYSSEY_BIN="$ODY_PROGRAM"
tasks=(--ntasks=2)
[ "$(nproc)" -ge 2 ] || tasks+=(--overcommit)
args=(lenet5/baseline data.name=synthetic data.synthetic_train=60000 data.synthetic_val=1000
      training.epochs=2 training.batch_size=60 optimizer.learning_rate=0.02
      training.log_interval=50 training.checkpoint_interval=100)

note "reference: uninterrupted run on 2 ranks"
expect_exit 0 ref.log 2 "${args[@]}" experiment.output_dir="$scratch/ref"
reference="$scratch/ref/lenet5-baseline"

# same_result RUN_DIR: final parameters and last metrics equal the reference's.
same_result() {
  params_close "$reference/latest.h5" "$1/latest.h5" 1e-5 || fail "$1: parameters differ from the reference"
  /usr/bin/python3 - "$reference/metrics.jsonl" "$1/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert [r["epoch"] for r in b] == [r["epoch"] for r in a], ([r["epoch"] for r in a], [r["epoch"] for r in b])
for key in ("step", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
    assert abs(a[-1][key] - b[-1][key]) <= 1e-4 * max(1.0, abs(a[-1][key])), (key, a[-1][key], b[-1][key])
print("last metrics match:", {k: b[-1][k] for k in ("epoch", "step", "train_loss", "val_accuracy")})
PY
}

# The signals land at known steps: rank 0 holds at them (the test knob,
# hold) until a stop signal comes, so the run cannot end first.
note "job 1: SIGUSR1 to the batch shell, self-requeue; scontrol requeue from outside; run to the end"
job=$(with_knob 0 200,1200 hold submit "${tasks[@]}" -- "${args[@]}" \
      experiment.output_dir="$scratch/slurm1")
wait_log "$job" 'test knob: rank 0 .* holds until a stop signal at step 200,' 120
scancel --batch --signal=USR1 "$job"
wait_log "$job" 'checkpoint written: requeueing' 60
until_true 120 "job $job to restart" restarts_are "$job" 1
wait_log "$job" 'test knob: rank 0 .* holds until a stop signal at step 1200,' 120
scontrol requeue "$job"
until_true 120 "job $job to restart again" restarts_are "$job" 2
expect_completed "$job"
out=$(job_out "$job")
expect_in "$out" 'slurm.sbatch: got SIGUSR1 \(restart 0\)'
expect_in "$out" 'saved checkpoint .*\(stop signal\)'
expect_in "$out" 'slurm.sbatch: odyssey-dist exited 75'
expect_in "$out" 'slurm.sbatch: job [0-9]+ restart 1 on'
expect_in "$out" 'resumed from .*ckpt-e0001'
expect_in "$out" 'slurm.sbatch: got SIGTERM \(restart 1\)'
expect_in "$out" 'resumed from .*ckpt-e0002'
expect_in "$out" 'epoch 2/2 done'
show_history "$out"
same_result "$scratch/slurm1/lenet5-baseline"

note "job 2: --launcher mpirun --tcp, SIGUSR1 once"
job=$(with_knob 0 600 hold submit "${tasks[@]}" -- --launcher mpirun --tcp "${args[@]}" \
      experiment.output_dir="$scratch/slurm2")
wait_log "$job" 'test knob: rank 0 .* holds until a stop signal at step 600,' 120
scancel --batch --signal=USR1 "$job"
until_true 120 "job $job to restart" restarts_are "$job" 1
expect_completed "$job"
out=$(job_out "$job")
expect_in "$out" '\(mpirun\)'
expect_in "$out" 'mpirun: Forwarding signal 10'
expect_in "$out" 'slurm.sbatch: odyssey-dist exited 75'
expect_in "$out" 'resumed from .*ckpt-e0001'
show_history "$out"
same_result "$scratch/slurm2/lenet5-baseline"

note "job 4: under srun, rank 1 stalls at step 5: rank 0 names it and exits 1, and the job fails"
job=$(with_knob 1 5 stall submit "${tasks[@]}" -- --launcher srun "${args[@]}" training.epochs=1 \
      distributed.stall_seconds=4 experiment.output_dir="$scratch/stall")
until_true 120 "job $job to end" job_done "$job"
ended=$(date +%s.%N)
out=$(job_out "$job")
cat "$out"
[ "$(job_field "$job" JobState)" = FAILED ] || fail "job $job: $(job_field "$job" JobState), expected FAILED"
# the waiting rank exits 1; srun then kills the stuck one (the step's code, 137)
expect_in "$out" 'srun: error: .*: task 0: Exited with exit code 1'
expect_in "$out" 'stalled: rank 0 \(host [^)]+\) has waited [0-9.]+ s in .* at step 5 for rank 1 \(pid [0-9]+, sleeping\); ending the job'
# rank 0 gave up at the bound (its own measure); srun then ends the step:
# SIGTERM, which the stuck rank does not act on, and SIGKILL KillWait (30 s
# here) later
waited=$(sed -n 's/.*stalled: rank 0 .* has waited \([0-9.]*\) s in .*/\1/p' "$out" | head -1)
(( $(echo "$waited >= 4 && $waited < 9" | bc) )) || fail "rank 0 ended its wait after $waited s (bound 4 s)"
elapsed=$(echo "$ended - $(knob_time "$out")" | bc)
echo "--- rank 0 waited $waited s; the job ended $elapsed s after rank 1 stalled (bound 4 s, KillWait 30 s)"
(( $(echo "$elapsed < 4 + 30 + 20" | bc) )) || fail "job $job took $elapsed s to end"
[ -z "$(rank_pids "output_dir=$scratch/stall")" ] || fail "rank processes left behind"

note "job 3: a job array over a sweep file"
cat >sweep.txt <<'EOF'
# learning rates
optimizer.learning_rate=0.05

optimizer.learning_rate=0.1 training.batch_size=32
EOF
job=$(submit --ntasks=1 --array=0-1 -- --sweep "$scratch/sweep.txt" "${args[@]}" training.max_steps=5 \
      training.epochs=1 experiment.output_dir="$scratch/sweep")
for task in 0 1; do expect_completed "${job}_$task"; done
grep -q 'learning_rate: 0.05' sweep/lenet5-baseline-0/config.yaml || fail "task 0 did not get its override"
grep -q 'learning_rate: 0.1' sweep/lenet5-baseline-1/config.yaml || fail "task 1 did not get its override"
grep -q 'batch_size: 32' sweep/lenet5-baseline-1/config.yaml || fail "task 1 did not get its batch size"
note "SLURM e2e passed"

#!/usr/bin/env bash
# What a user sees and what a run records, at 2 ranks under mpirun:
# - on a terminal (a pty from script(1)) rank 0 draws the live line
#   (carriage returns: epoch, step/steps, loss, accuracy, img/s, ETA), though
#   mpirun hands its ranks a pipe as stderr; with output to a file the log
#   has plain lines, each with its ISO time, and no carriage return;
#   ODY_PROGRESS=always|never overrides the choice;
# - steps.jsonl and steps.csv hold one record every training.log_interval
#   steps with the documented keys; loss and accuracy are the same at 1
#   and 2 ranks (exact sums, deterministic mode);
# - a run killed after its checkpoint at step 10 and resumed records every
#   step once, with the uninterrupted run's loss and accuracy;
# - under taskset -c CPU the log reports 1 core (affinity, not the online count).
source "$(dirname "$0")/common.sh"
args=(lenet5/baseline training.epochs=1 data.limit_train=2000 data.limit_val=500
      training.log_interval=5 checkpoint.save_best=false)
iso='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}'

note "on a terminal: the live line, under mpirun at 2 ranks"
command -v script >/dev/null || fail "script(1) is missing (apt-get install bsdutils)"
script -qec "$ODY_MPIEXEC $ODY_NUMPROC_FLAG 2 $ODY_PROGRAM ${args[*]} experiment.output_dir=$scratch/tty" \
  /dev/null >tty.log 2>&1 </dev/null || { cat tty.log; fail "the run on a pty failed"; }
# The line is redrawn at most every 0.2 s, but always at the epoch's end.
grep -aqE $'\r''epoch 1/1 step 32/32 \| loss [0-9.]+ acc [0-9.]+% \| [0-9]+ img/s \| lr [0-9.e-]+ \| ETA [0-9]+s' tty.log ||
  { cat -A tty.log | head -40; fail "no live line on the terminal"; }
grep -aqE "^$iso epoch 1/1 done: train_loss" <(tr '\r' '\n' <tty.log | sed 's/\x1b\[K//g') ||
  fail "no timestamped epoch line on the terminal"

note "output to a file: plain lines with their time, no carriage return"
expect_exit 0 plain.log 2 "${args[@]}" experiment.output_dir="$scratch/plain"
! grep -q $'\r' plain.log || { cat -A plain.log | head; fail "a carriage return in a file"; }
expect_in plain.log "^$iso epoch 1/1 step 5/32 loss [0-9.]+ acc [0-9.]+% lr 0.01 [0-9]+ img/s$"
expect_in plain.log "^$iso epoch 1/1 step 30/32 "
expect_in plain.log "^$iso odyssey-dist .*: 2 rank\(s\)"

note "ODY_PROGRESS overrides the choice"
ODY_PROGRESS=always expect_exit 0 always.log 2 "${args[@]}" experiment.output_dir="$scratch/always"
grep -q $'\r''epoch 1/1 step 32/32 |' always.log || fail "ODY_PROGRESS=always drew no line"
script -qec "env ODY_PROGRESS=never $ODY_MPIEXEC $ODY_NUMPROC_FLAG 2 $ODY_PROGRAM ${args[*]} experiment.output_dir=$scratch/never" \
  /dev/null >never.log 2>&1 </dev/null || { cat never.log; fail "the run with never failed"; }
! grep -aq 'step 32/32 |' never.log || fail "ODY_PROGRESS=never drew the live line"
grep -aqE "$iso epoch 1/1 step 5/32 loss" never.log || fail "ODY_PROGRESS=never: no log lines"
ODY_PROGRESS=sometimes expect_exit 0 bad-env.log 2 "${args[@]}" experiment.output_dir="$scratch/bad-env"
expect_in bad-env.log "ODY_PROGRESS: 'sometimes' is not auto, always or never; taken as auto"

note "steps.jsonl and steps.csv: every 5 steps, the listed keys"
/usr/bin/python3 - "$scratch/plain/lenet5-baseline" <<'EOF'
import csv, json, math, sys
run = sys.argv[1]
rows = [json.loads(line) for line in open(f"{run}/steps.jsonl")]
keys = ["step", "epoch", "loss", "accuracy", "lr", "grad_norm", "samples_per_sec",
        "elapsed_seconds", "time_data", "time_forward", "time_backward", "time_comm_wait",
        "time_optimizer", "time_checkpoint"]
assert [r["step"] for r in rows] == list(range(5, 31, 5)), [r["step"] for r in rows]
for r in rows:
    assert list(r) == keys, list(r)
    assert r["epoch"] == 1 and 0 < r["loss"] < 10 and 0 <= r["accuracy"] <= 1, r
    assert r["lr"] == 0.01 and r["grad_norm"] > 0 and r["samples_per_sec"] > 0, r
    assert all(r[k] >= 0 for k in keys if k.startswith("time_")), r
table = list(csv.DictReader(open(f"{run}/steps.csv")))
assert list(table[0]) == keys, list(table[0])
assert [int(t["step"]) for t in table] == [r["step"] for r in rows]
assert all(math.isclose(float(t["loss"]), r["loss"], rel_tol=1e-8) for t, r in zip(table, rows))
epochs = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
assert len(epochs) == 1 and epochs[0]["step"] == 32, epochs
print(f"{len(rows)} records with {len(keys)} keys")
EOF

note "loss and accuracy do not depend on the rank count"
expect_exit 0 one.log 1 "${args[@]}" experiment.output_dir="$scratch/one"
/usr/bin/python3 - "$scratch/one/lenet5-baseline/steps.jsonl" "$scratch/plain/lenet5-baseline/steps.jsonl" <<'EOF'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert [(r["step"], r["loss"], r["accuracy"]) for r in a] == \
       [(r["step"], r["loss"], r["accuracy"]) for r in b], (a, b)
print("1 rank and 2 ranks: the same loss and accuracy at every record")
EOF

note "killed after the checkpoint at step 10 (rows up to 15 written), resumed"
resume_args=("${args[@]}" checkpoint.every_steps=10 experiment.output_dir="$scratch/killed")
set +e
with_knob 0 17 kill ody 2 "${resume_args[@]}" >kill.log 2>&1
code=$?
set -e
[ "$code" != 0 ] || { cat kill.log; fail "a killed rank must fail the job"; }
grep -q '"step": 15,' "$scratch/killed/lenet5-baseline/steps.jsonl" || fail "row 15 was not written"
expect_exit 0 resume.log 2 "${resume_args[@]}" --resume auto
expect_in resume.log 'resumed from .*global step 10'
/usr/bin/python3 - "$scratch/killed/lenet5-baseline" "$scratch/plain/lenet5-baseline/steps.jsonl" <<'EOF'
import csv, json, sys
run, plain = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{run}/steps.jsonl")]
want = [json.loads(l) for l in open(plain)]
assert [r["step"] for r in rows] == list(range(5, 31, 5)), [r["step"] for r in rows]
assert [int(t["step"]) for t in csv.DictReader(open(f"{run}/steps.csv"))] == list(range(5, 31, 5))
assert [(r["loss"], r["accuracy"]) for r in rows] == [(r["loss"], r["accuracy"]) for r in want]
print("resumed: every step once, as the uninterrupted run")
EOF

note "cores from the affinity mask: taskset -c CPU gives 1 core"
cpu=$(taskset -pc $$ | sed 's/.*: //; s/[-,].*//') # the first CPU this test may use
# shellcheck disable=SC2086
$ODY_MPIEXEC $ODY_NUMPROC_FLAG 2 taskset -c "$cpu" "$ODY_PROGRAM" "${args[@]}" training.max_steps=1 \
  experiment.output_dir="$scratch/taskset" >taskset.log 2>&1 || { cat taskset.log; fail "taskset run"; }
expect_in taskset.log "2 rank\(s\), 2 on rank 0's node with 1 core\(s\)"
taskset -c "$cpu" "$ODY_PROGRAM" "${args[@]}" training.max_steps=1 \
  experiment.output_dir="$scratch/taskset1" >taskset1.log 2>&1 || { cat taskset1.log; fail "taskset singleton"; }
expect_in taskset1.log "1 rank\(s\), 1 on rank 0's node with 1 core\(s\)"
echo "PASS"

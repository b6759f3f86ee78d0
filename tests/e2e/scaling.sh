#!/usr/bin/env bash
# launch/scaling.py on tiny settings (1 and 2 ranks, a few steps, both modes):
# the CSV has its columns and a row per run, the JSON every run, the PNGs are
# PNGs; --trace collects per-rank Chrome traces.
source "$(dirname "$0")/common.sh"
export ODYSSEY_BIN="$ODY_PROGRAM"
scaling=("$ODY_SOURCE_DIR/launch/scaling.py" --ranks "1,2" --steps 4 --samples 512 --batch 64 --batch-per-rank 32)

note "study: strong and weak, 1 and 2 ranks"
"${scaling[@]}" --out "$scratch/study" >study.log 2>&1 || { cat study.log >&2; fail "scaling.py failed"; }
/usr/bin/python3 - "$scratch/study" <<'PY'
import csv, json, sys
from pathlib import Path
study = Path(sys.argv[1])
rows = list(csv.DictReader(open(study / "scaling.csv")))
phases = ["data", "forward", "backward", "comm_wait", "optimizer", "checkpoint"]
want = ["mode", "ranks", "global_batch", "per_rank_batch", "steps", "epoch_seconds", "throughput",
        "speedup", "efficiency", "ms_per_step", "time_other", "exit_code"] + \
       [f"time_{p}{s}" for p in phases for s in ("", "_max")]
missing = [c for c in want if c not in rows[0]]
assert not missing, f"scaling.csv lacks {missing}"
assert [(r["mode"], r["ranks"]) for r in rows] == [("strong", "1"), ("strong", "2"), ("weak", "1"), ("weak", "2")], rows
for r in rows:
    assert r["exit_code"] == "0" and float(r["throughput"]) > 0 and int(r["steps"]) == 4, r
    assert int(r["global_batch"]) == (64 if r["mode"] == "strong" else 32 * int(r["ranks"])), r
    assert float(r["time_forward_max"]) >= float(r["time_forward"]) > 0, r
assert float(rows[0]["speedup"]) == 1.0 and float(rows[0]["efficiency"]) == 1.0
study_json = json.load(open(study / "scaling.json"))
assert len(study_json["runs"]) == 4 and study_json["study"]["ranks"] == [1, 2]
assert all(r["metrics"]["world_size"] == r["ranks"] for r in study_json["runs"])
for png in ["throughput.png", "efficiency.png", "breakdown-strong.png", "breakdown-weak.png"]:
    head = (study / png).read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
assert study_json["plots"] == ["throughput.png", "efficiency.png", "breakdown-strong.png", "breakdown-weak.png"]
assert "| strong | 2 |" in (study / "table.md").read_text()
print("study ok:", [(r["mode"], r["ranks"], r["throughput"]) for r in rows])
PY

note "--trace"
"${scaling[@]}" --mode strong --trace --out "$scratch/traced" >trace.log 2>&1 \
  || { cat trace.log >&2; fail "scaling.py --trace failed"; }
for f in strong-r1/rank-0.json strong-r2/rank-0.json strong-r2/rank-1.json strong-r2.json; do
  [ -s "$scratch/traced/trace/$f" ] || fail "trace/$f missing"
done
/usr/bin/python3 - "$scratch/traced/trace/strong-r2.json" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
phases = {e["name"] for e in events if e.get("ph") == "X"}
assert {"forward", "backward"} <= phases, phases
assert {e["pid"] for e in events if e.get("ph") == "X"} == {0, 1}
print("merged trace:", len(events), "events, phases", sorted(phases))
PY

note "usage errors exit 2"
for bad in "--ranks 0" "--ranks x" "--batch 0" "--mode sideways" "--hosts 0" "--hosts x" "--ranks 1 --hosts 2"; do
  set +e
  # shellcheck disable=SC2086  # $bad is a word list on purpose
  "${scaling[@]}" $bad --out "$scratch/bad" >bad.log 2>&1
  code=$?
  set -e
  [ "$code" = 2 ] || { cat bad.log >&2; fail "scaling.py $bad: exit $code, expected 2"; }
done

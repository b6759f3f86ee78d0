#!/usr/bin/env bash
# launch/scaling.py --hosts: a tiny study over 1 and 2 namespace hosts
# (2 ranks: on this machine, and 2 hosts x 1): the CSV has a row per point
# with its hosts, each run's log shows its node layout, the plots are
# drawn, and no host is left behind.
source "$(dirname "$0")/hosts.sh"
# (the hosts are the study's own; hosts.sh only checks that they may be made)
export ODYSSEY_BIN="$ODY_PROGRAM"

"$ODY_SOURCE_DIR/launch/scaling.py" --ranks 2 --hosts 1,2 --mode strong --steps 3 --samples 512 \
  --batch 64 --out "$scratch/study" >study.log 2>&1 || { cat study.log >&2; fail "scaling.py --hosts failed"; }
cat "$scratch/study/table.md"
/usr/bin/python3 - "$scratch/study" <<'PY'
import csv, json, sys
from pathlib import Path
study = Path(sys.argv[1])
rows = list(csv.DictReader(open(study / "scaling.csv")))
assert [(r["mode"], r["hosts"], r["ranks"], r["ranks_per_host"]) for r in rows] == \
    [("strong", "1", "2", "2"), ("strong", "2", "2", "1")], rows
for r in rows:
    assert r["exit_code"] == "0" and int(r["steps"]) == 3, r
    assert 0 < float(r["comm_share"]) < 1, r
runs = json.load(open(study / "scaling.json"))["runs"]
assert all(r["metrics"]["world_size"] == 2 for r in runs)
two = (study / "logs" / "strong-h2-r2.log").read_text()
assert "one rank per node sums across nodes" not in two, "2 x 1: one rank per node, no shared memory expected"
one = (study / "logs" / "strong-r2.log").read_text()
assert "gradient sums: exact, in node shared memory (2 rank(s) on this node)" in one, one
assert (study / "hostfiles" / "h2x1").read_text() == "ody-h1 slots=1\nody-h2 slots=1\n"
assert "| strong | 2 (2 hosts x 1) |" in (study / "table.md").read_text()
for png in ["throughput.png", "efficiency.png", "breakdown-strong.png"]:
    assert (study / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
print("hosts study ok:", [(r["hosts"], r["ranks"], r["throughput"], r["comm_share"]) for r in rows])
PY
grep -q 'hosts up: ody-h1 [0-9]* ody-h2 ' study.log || fail "the study did not say which hosts it made"
# the study's hosts are gone with it: no holder left (hosts_holder.sh ends in sleep)
pids=$(sed -n 's/.*hosts up: ody-h1 \([0-9]*\) ody-h2 \([0-9]*\) (bridge in pid \([0-9]*\)).*/\1 \2 \3/p' study.log)
for pid in $pids; do
  ns=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || continue  # gone
  [ "$ns" = "$(readlink "/proc/$$/ns/net")" ] || fail "host holder $pid outlived the study"
done

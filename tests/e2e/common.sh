# Helpers for end-to-end tests (sourced). ctest sets ODY_PROGRAM, ODY_MPIEXEC,
# ODY_NUMPROC_FLAG, ODY_SOURCE_DIR; every test works in its own scratch dir.
set -euo pipefail

: "${ODY_PROGRAM:?run through ctest}"
: "${ODY_SOURCE_DIR:?run through ctest}"
export ODY_CONFIG_DIR="$ODY_SOURCE_DIR/configs"
FMNIST=/usr/share/datasets/fashion-mnist

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ody-e2e.XXXXXX")
# On any exit: kill any rank of a run in the scratch directory, so a failed
# test leaves no training behind.
cleanup() {
  local pid
  for pid in $(rank_pids "$scratch"); do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT
cd "$scratch"

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

# ody NP ARGS...: run the program on NP ranks (NP=0: started directly, an MPI singleton).
ody() {
  local np="$1"; shift
  if [ "$np" = 0 ]; then
    "$ODY_PROGRAM" "$@"
  else
    # shellcheck disable=SC2086
    $ODY_MPIEXEC $ODY_NUMPROC_FLAG "$np" "$ODY_PROGRAM" "$@"
  fi
}

# expect_exit CODE LOGFILE NP ARGS...: run, capture stdout+stderr, check the exit code.
expect_exit() {
  local want="$1" log="$2"; shift 2
  set +e
  ody "$@" >"$log" 2>&1
  local got=$?
  set -e
  if [ "$got" != "$want" ]; then
    cat "$log" >&2
    fail "expected exit $want, got $got: $*"
  fi
}

# with_shim SHIM NP RANK AT ARGS...: one run on NP ranks with the LD_PRELOAD
# shim SHIM (fail_shim.h) failing its call AT on RANK (AT=0: only
# counting), killed after 60 s; sets code (124 or 137: it hung).
with_shim() {
  local shim="$1" np="$2" rank="$3" at="$4"; shift 4
  set +e
  # shellcheck disable=SC2086
  timeout -k 5 60 $ODY_MPIEXEC $ODY_NUMPROC_FLAG "$np" -x LD_PRELOAD="$shim" \
    -x ODY_FAIL_RANK="$rank" -x ODY_FAIL_AT="$at" "$ODY_PROGRAM" "$@"
  code=$?
  set -e
}

# shim_sweep SHIM NP RANK DIR PREPARE JUDGE ARGS...: what the fail_* shims
# are for: every call the shim counts on RANK, failed in turn, one run of
# ARGS each. PREPARE D makes output directory $scratch/D; a first run in
# DIR-count, failing nothing, counts the calls (from the shim's exit line,
# fail_shim.h); then for N = 1, 2, ... the run in DIR-N with call N failing
# (output in DIR-N.log) must not hang nor leave a rank behind, and
# JUDGE DIR-N RANK N gives the verdict (with the exit status in code)
# before DIR-N is removed. Sets shim_total, and shim_worst (the slowest
# run's seconds).
shim_sweep() {
  local shim="$1" np="$2" rank="$3" dir="$4" prepare="$5" judge="$6"; shift 6
  $prepare "$dir-count"
  with_shim "$shim" "$np" "$rank" 0 "$@" experiment.output_dir="$scratch/$dir-count" \
    >"$dir-count.log" 2>&1
  [ "$code" = 0 ] || { cat "$dir-count.log" >&2; fail "$dir: the counting run failed ($code)"; }
  shim_total=$(sed -n "s/^[a-z_]*: rank $rank: \([0-9]*\) .*, failed number 0\$/\1/p" "$dir-count.log")
  [ "${shim_total:-0}" -gt 20 ] ||
    { cat "$dir-count.log" >&2; fail "$dir: only ${shim_total:-0} calls counted on rank $rank"; }
  rm -rf "$scratch/$dir-count"
  shim_worst=0
  local at start secs
  for ((at = 1; at <= shim_total; at++)); do
    $prepare "$dir-$at"
    start=$(date +%s.%N)
    with_shim "$shim" "$np" "$rank" "$at" "$@" experiment.output_dir="$scratch/$dir-$at" \
      >"$dir-$at.log" 2>&1
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    shim_worst=$(echo "if ($secs > $shim_worst) $secs else $shim_worst" | bc)
    [ "$code" != 124 ] && [ "$code" != 137 ] ||
      { cat "$dir-$at.log" >&2; fail "$dir-$at: hung (killed after 60 s)"; }
    [ -z "$(rank_pids "$scratch/$dir-$at")" ] || fail "$dir-$at: rank processes left behind"
    $judge "$dir-$at" "$rank" "$at"
    rm -rf "$scratch/$dir-$at"
  done
}

# expect_in FILE PATTERN: grep -E for PATTERN in FILE.
expect_in() {
  grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "'$2' not found in $1"; }
}

# json_last FILE KEY: the KEY of the last line of a JSONL file.
json_last() {
  /usr/bin/python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])[sys.argv[2]])' "$1" "$2"
}

# with_knob RANK STEP ACTION CMD...: CMD with the program's test knob set
# (README, Development): rank RANK does ACTION (term, usr1, kill, stop,
# stall, hold, kernel) to itself at the start of optimizer step STEP (1-based over
# the whole run; a comma-separated list for several), so a test reaches
# its point by construction, never by timing.
with_knob() {
  local rank="$1" step="$2" action="$3"; shift 3
  ODY_FAIL_RANK="$rank" ODY_FAIL_STEP="$step" ODY_FAIL_ACTION="$action" "$@"
}

# stop_at STEP LOG NP ARGS...: run on NP ranks with the last rank raising
# SIGTERM at optimizer step STEP: that step's checkpoint is written and
# every rank exits 75.
stop_at() {
  local step="$1" log="$2" np="$3"
  local rank=$((np > 1 ? np - 1 : 0))
  with_knob "$rank" "$step" term expect_exit 75 "$log" "${@:3}"
  expect_in "$log" "test knob: rank $rank .* raises SIGTERM at step $step,"
}

# knob_time LOG: the wall-clock time (seconds) at which the knob acted.
knob_time() { sed -n 's/.*test knob: .*, at \([0-9.]*\)$/\1/p' "$1" | head -1; }

# rank_pids PATTERN: pids of the program's rank processes (not mpirun) whose
# command line contains PATTERN.
rank_pids() {
  local pid
  for pid in $(pgrep -f -- "$1" || true); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$ODY_PROGRAM" | cut -c1-15)" ] && echo "$pid"
  done
  return 0
}

# params_sha256 CKPT.h5: sha256 of every parameter tensor's bytes, in
# LeNet-5's layout order for LeNet-5, else in name order.
params_sha256() {
  /usr/bin/python3 - "$1" <<'PY'
import hashlib, sys, h5py
f = h5py.File(sys.argv[1], "r")
order = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
         "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
if sorted(order) != sorted(f["model"].keys()):
    order = sorted(f["model"].keys())
h = hashlib.sha256()
for name in order:
    h.update(f["model"][name][()].tobytes())
print(h.hexdigest())
PY
}

# params_close A.h5 B.h5 [TOL]: every model/* dataset agrees to TOL relative
# (max |a - b| / max |a| over all parameters; default 1e-5).
params_close() {
  /usr/bin/python3 - "$1" "$2" "${3:-1e-5}" <<'PY'
import sys, h5py, numpy as np
a, b, tol = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r"), float(sys.argv[3])
names = sorted(a["model"].keys())
assert names == sorted(b["model"].keys()), "different parameter names"
diff = max(float(np.max(np.abs(a["model"][n][()] - b["model"][n][()]))) for n in names)
scale = max(float(np.max(np.abs(a["model"][n][()]))) for n in names)
print(f"max |diff| / max |param| = {diff / scale:.3g} over {len(names)} tensors")
sys.exit(0 if diff / scale <= tol else 1)
PY
}

# fmnist_cut DIR NTRAIN NTEST: the first NTRAIN training and NTEST test
# images of Fashion-MNIST, as IDX files like the originals (real data, read
# by the same code, in less time).
fmnist_cut() {
  /usr/bin/python3 - "$FMNIST" "$@" <<'PY'
import gzip, struct, sys
src, dst, ntrain, ntest = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for name, n in (("train", ntrain), ("t10k", ntest)):
    for kind, dims in (("images-idx3", 3), ("labels-idx1", 1)):
        f = f"{name}-{kind}-ubyte.gz"
        raw = gzip.open(f"{src}/{f}").read()
        head = list(struct.unpack(f">{1 + dims}I", raw[:4 * (1 + dims)]))
        size = 1
        for d in head[2:]:
            size *= d
        head[1] = n
        body = raw[4 * (1 + dims):4 * (1 + dims) + n * size]
        gzip.open(f"{dst}/{f}", "wb").write(struct.pack(f">{1 + dims}I", *head) + body)
PY
}

# Helpers for end-to-end tests (sourced). ctest sets ODY_PROGRAM, ODY_MPIEXEC,
# ODY_NUMPROC_FLAG, ODY_SOURCE_DIR; every test works in its own scratch dir.
set -euo pipefail

: "${ODY_PROGRAM:?run through ctest}"
: "${ODY_SOURCE_DIR:?run through ctest}"
export ODY_CONFIG_DIR="$ODY_SOURCE_DIR/configs"
FMNIST=/usr/share/datasets/fashion-mnist

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ody-e2e.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
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

# expect_in FILE PATTERN: grep -E for PATTERN in FILE.
expect_in() {
  grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "'$2' not found in $1"; }
}

# json_last FILE KEY: the KEY of the last line of a JSONL file.
json_last() {
  python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])[sys.argv[2]])' "$1" "$2"
}

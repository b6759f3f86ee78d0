#!/usr/bin/env bash
# Out of memory on one rank, at every allocation the program's own code
# makes, one run each: every rank must exit (no hang), all with exit 1 and
# an "out of memory" error naming the rank (or exit 0 where the program can
# do without that allocation), and a resumed run must not lose the
# checkpoint it resumed from.
#
# fail_alloc.c (an LD_PRELOAD shim, built as ody_fail_alloc, path in $1)
# makes allocation number ODY_FAIL_AT of rank ODY_FAIL_RANK fail.
#   fresh run, 2 ranks: rank 1, then rank 0 (config, logs, checkpoints)
#   --resume auto of that run on 3 ranks: rank 2, then rank 0 (which reads
#   the checkpoint); the checkpoint files it resumed from must be unchanged
#   after every run
#   --eval of that checkpoint on 2 ranks: rank 0
source "$(dirname "$0")/common.sh"
shim="${1:?usage: fail_alloc.sh LIBODY_FAIL_ALLOC.so}"
if [[ "$(ldd "$ODY_PROGRAM")" == *libasan* ]]; then # (no grep -q: SIGPIPE + pipefail)
  echo "SKIP: a sanitizer build has its own allocator in front of the shim"
  exit 77
fi
mkdir data
fmnist_cut data 1024 512
args=("$ODY_SOURCE_DIR/configs/lenet5/baseline.yaml" data.path=data training.epochs=1
  training.max_steps=12 training.validate_interval=0 logging.plot=false)

# mpiexec waits a second (SIGTERM, then SIGKILL) after a rank exits non-zero,
# 200 times over here. Not waiting hides no hang: a rank stuck in a
# collective keeps the others in MPI_Finalize, and nothing exits.
export OMPI_MCA_odls_base_sigkill_timeout=0

# judge DIR RANK AT: the verdict on the run just made (shim_sweep).
judge() {
  local log="$1.log" rank="$2" at="$3"
  grep -q "^fail_alloc: rank $rank: allocation $at fails" "$log" ||
    { cat "$log" >&2; fail "$1: allocation $at of rank $rank was not made"; }
  case "$code" in
    0) tolerated+=("$at") ;;
    1)
      local what
      what=$(grep -m1 '^odyssey-dist: out of memory: ' "$log") ||
        { cat "$log" >&2; fail "$1: exit 1 without an out-of-memory error"; }
      # The error names the failing rank; rank 0's own config and the MPI
      # context come before ranks share errors (the latter says so).
      if [ "$rank" != 0 ] && ! grep -Eq "rank $rank: |on some rank" <<<"$what"; then
        cat "$log" >&2; fail "$1: the error does not name rank $rank: $what"
      fi ;;
    *) cat "$log" >&2; fail "$1: exit $code (a crash?); expected 1, or 0" ;;
  esac
}

# sweep NP RANK BASE PREPARE JUDGE [ARGS...]: every allocation of RANK,
# one run each (shim_sweep over args and ARGS).
sweep() {
  local np="$1" rank="$2"
  tolerated=()
  shim_sweep "$shim" "$np" "$rank" "$3" "$4" "$5" "${args[@]}" "${@:6}"
  echo "rank $rank of $np: $shim_total allocations failed one at a time: every rank exited," \
    "slowest in $shim_worst s; exit 0 (done without it) at: ${tolerated[*]:-none}"
}

none() { :; }
note "fresh run, 2 ranks: fail each allocation of rank 1"
sweep 2 1 fresh1 none judge
note "fresh run, 2 ranks: fail each allocation of rank 0"
sweep 2 0 fresh0 none judge

note "resume on 3 ranks: fail each allocation of rank 2; the checkpoint it resumes from stays"
ody 2 "${args[@]}" experiment.output_dir="$scratch/origin" >origin.log 2>&1 ||
  { cat origin.log; fail "the run to resume failed"; }
(cd origin/lenet5-baseline && sha256sum ckpt-*.h5) >origin.sha
from_origin() { rm -rf "$scratch/$1"; cp -a "$scratch/origin" "$scratch/$1"; }
judge_resume() {
  judge "$@"
  (cd "$1/lenet5-baseline" && sha256sum --quiet -c "$scratch/origin.sha") ||
    fail "$1: the checkpoint it resumed from changed or is gone"
}
resume=(--resume auto training.max_steps=24 checkpoint.keep_last=0)
sweep 3 2 resume from_origin judge_resume "${resume[@]}"
note "resume on 3 ranks: fail each allocation of rank 0, which reads the checkpoint"
sweep 3 0 resume from_origin judge_resume "${resume[@]}"

note "--eval on 2 ranks, no config but an override: fail each allocation of rank 0"
args=(data.path=data)
sweep 2 0 eval none judge --eval "$scratch/origin/lenet5-baseline/latest.h5"
exit 0

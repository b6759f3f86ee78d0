#!/usr/bin/env bash
# A checkpoint write that fails, at every write the save makes, one run
# each: the run must exit 4 on every rank with an error naming the file,
# leave the checkpoint it resumed from as it was and no temporary file, and
# a later --resume auto must work (it reads the newest checkpoint whole,
# checksums included). Exit 0 is right in one case: an O_DIRECT write that
# fails is made again through the buffered descriptor, and if that works
# the checkpoint is whole (the resume after it checks that).
#
# fail_io.c (an LD_PRELOAD shim, built as ody_fail_io, path in $1) makes
# call number ODY_FAIL_AT of rank 0 fail with EIO: a write, pwrite, fsync
# or fdatasync of a .h5 file, or a rename or symlink onto one.
#   LeNet-5 (HDF5's writes only), 3 ranks resuming a 2-rank run, and the
#     disk gone bad: every read of a .h5 file after the failed call fails
#     too (ODY_FAIL_READS), the writer's copy of what it wrote included
#   an MLP with 3 MB tensors (written with O_DIRECT past HDF5), 2 ranks
source "$(dirname "$0")/common.sh"
shim="${1:?usage: fail_io.sh LIBODY_FAIL_IO.so}"
if [[ "$(ldd "$ODY_PROGRAM")" == *libasan* ]]; then # (no grep -q: SIGPIPE + pipefail)
  echo "SKIP: a sanitizer build intercepts the same calls"
  exit 77
fi
# as in fail_alloc.sh: no second's grace after an exit 4, 100 times over
export OMPI_MCA_odls_base_sigkill_timeout=0
mkdir data
fmnist_cut data 1024 512

# from_origin D: a copy of the run being resumed, in $scratch/D.
from_origin() { rm -rf "$scratch/$1"; cp -a "$scratch/$origin" "$scratch/$1"; }

# judge DIR RANK AT: the verdict on the run just made (shim_sweep).
judge() {
  local dir="$scratch/$1/$run" log="$1.log" at="$3"
  grep -q "^fail_io: rank $2: call $at " "$log" || { cat "$log"; fail "$1: call $at not made"; }
  case "$code" in
    0) done_anyway+=("$at") ;; # written another way (see the header)
    4) expect_in "$log" "^odyssey-dist: checkpoint error: rank $2: .*$dir/.*(Input/output error)" ;;
    *) cat "$log"; fail "$1: exit $code, expected 4 (or 0)" ;;
  esac
  (cd "$dir" && sha256sum --quiet -c "$scratch/$origin.sha") ||
    fail "$1: the checkpoint it resumed from changed or is gone"
  ! ls "$dir" | grep -q tmp || fail "$1: a temporary file was left: $(ls "$dir")"
  [ -e "$dir/latest.h5" ] || fail "$1: latest.h5 points nowhere"
  ody 1 "${args[@]}" "${more[@]}" experiment.output_dir="$scratch/$1" >again.log 2>&1 ||
    { cat again.log; fail "$1: resuming after the failed save failed"; }
}

# sweep NAME NP RUN_NAME ARGS...: one origin run of ARGS (12 steps), then
# for every checkpoint write of the resumed run (to step 24), that write
# failing on rank 0.
sweep() {
  local np="$2"
  origin="$1" run="$3"
  shift 3
  args=("$@" training.epochs=1 training.validate_interval=0 logging.plot=false
    checkpoint.keep_last=0)
  more=(--resume auto training.max_steps=24)
  ody 2 "${args[@]}" training.max_steps=12 experiment.output_dir="$scratch/$origin" \
    >"$origin.log" 2>&1 || { cat "$origin.log"; fail "$origin: the run to resume failed"; }
  (cd "$origin/$run" && sha256sum ckpt-*.h5) >"$origin.sha"
  done_anyway=()
  shim_sweep "$shim" "$np" 0 "$origin-try" from_origin judge "${args[@]}" "${more[@]}"
  echo "$origin: each of $shim_total checkpoint writes failed in turn (EIO on rank 0): exit 4," \
    "or 0 at ${done_anyway[*]:-none}; the checkpoint resumed from intact, no temporary file," \
    "the run resumed (reading every tensor's checksum) each time; slowest in $shim_worst s"
}

note "LeNet-5 on 3 ranks, resuming a 2-rank run; reads fail too after the failed call"
export ODY_FAIL_READS=1
sweep lenet 3 lenet5-baseline "$ODY_SOURCE_DIR/configs/lenet5/baseline.yaml" data.path=data
unset ODY_FAIL_READS
note "MLP 784-1024-10 with Adam (3 MB tensors, O_DIRECT) on 2 ranks"
sweep mlp 2 mlp-baseline mlp/baseline 'model.hidden_sizes=[1024]' training.batch_size=64 \
  data.path=data
exit 0

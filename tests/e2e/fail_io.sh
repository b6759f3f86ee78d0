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
#   LeNet-5 (HDF5's writes only), 3 ranks resuming a 2-rank run
#   an MLP with 3 MB tensors (written with O_DIRECT past HDF5), 2 ranks
source "$(dirname "$0")/common.sh"
shim="${1:?usage: fail_io.sh LIBODY_FAIL_IO.so}"
if ldd "$ODY_PROGRAM" | grep -q libasan; then
  echo "SKIP: a sanitizer build intercepts the same calls"
  exit 77
fi
# as in fail_alloc.sh: no second's grace after an exit 4, 100 times over
export OMPI_MCA_odls_base_sigkill_timeout=0
mkdir data
fmnist_cut data 1024 512

# sweep NAME NP RUN_NAME ARGS...: one origin run of ARGS (12 steps), then
# for every checkpoint write of the resumed run (to step 24), that write
# failing.
sweep() {
  local name="$1" np="$2" run="$3"; shift 3
  local args=("$@" training.epochs=1 training.validate_interval=0 logging.plot=false
    checkpoint.keep_last=0)
  ody 2 "${args[@]}" training.max_steps=12 experiment.output_dir="$scratch/$name" >"$name.log" 2>&1 ||
    { cat "$name.log"; fail "$name: the run to resume failed"; }
  (cd "$name/$run" && sha256sum ckpt-*.h5) >"$name.sha"
  local more=(--resume auto training.max_steps=24)
  rm -rf "$scratch/try"
  cp -a "$scratch/$name" "$scratch/try"
  with_shim "$shim" "$np" 0 0 "${args[@]}" "${more[@]}" experiment.output_dir="$scratch/try" \
    >count.log 2>&1
  [ "$code" = 0 ] || { cat count.log; fail "$name: the counting run failed"; }
  local total at done_anyway=()
  total=$(sed -n 's/^fail_io: rank 0: \([0-9]*\) checkpoint writes.*/\1/p' count.log)
  [ "${total:-0}" -gt 20 ] || { cat count.log; fail "$name: only ${total:-0} writes counted"; }
  for ((at = 1; at <= total; at++)); do
    rm -rf "$scratch/try"
    cp -a "$scratch/$name" "$scratch/try"
    with_shim "$shim" "$np" 0 "$at" "${args[@]}" "${more[@]}" experiment.output_dir="$scratch/try" \
      >try.log 2>&1
    local dir="$scratch/try/$run"
    grep -q "^fail_io: rank 0: call $at " try.log || { cat try.log; fail "$name-$at: call $at not made"; }
    case "$code" in
      0) done_anyway+=("$at") ;; # written another way (see the header)
      4) expect_in try.log "^odyssey-dist: checkpoint error: rank 0: .*$dir/.*(Input/output error)" ;;
      *) cat try.log; fail "$name-$at: exit $code, expected 4 (or 0)" ;;
    esac
    (cd "$dir" && sha256sum --quiet -c "$scratch/$name.sha") ||
      fail "$name-$at: the checkpoint it resumed from changed or is gone"
    ! ls "$dir" | grep -q tmp || fail "$name-$at: a temporary file was left: $(ls "$dir")"
    [ -e "$dir/latest.h5" ] || fail "$name-$at: latest.h5 points nowhere"
    ody 1 "${args[@]}" "${more[@]}" experiment.output_dir="$scratch/try" >again.log 2>&1 ||
      { cat again.log; fail "$name-$at: resuming after the failed save failed"; }
  done
  echo "$name: each of $total checkpoint writes failed in turn (EIO on rank 0): exit 4, or 0" \
    "at ${done_anyway[*]:-none}; the checkpoint resumed from intact, no temporary file, and" \
    "the run resumed (reading every tensor's checksum) each time"
}

note "LeNet-5 on 3 ranks, resuming a 2-rank run"
sweep lenet 3 lenet5-baseline "$ODY_SOURCE_DIR/configs/lenet5/baseline.yaml" data.path=data
note "MLP 784-1024-10 with Adam (3 MB tensors, O_DIRECT) on 2 ranks"
sweep mlp 2 mlp-baseline mlp/baseline 'model.hidden_sizes=[1024]' training.batch_size=64 \
  data.path=data
exit 0

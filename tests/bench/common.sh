# shellcheck shell=bash
# Sourced by the bench scripts (targets.sh, weak_scaling.sh) as
#   source "$(dirname "$0")/common.sh" NAME [BUILD_DIR]
# Sets here, root, build (BUILD_DIR or root/build), prog (odyssey-dist,
# which must be built), work (a scratch directory removed at exit), py (a
# python3, /usr/bin's first: the one python3-torch installs into), the
# environment for one BLAS thread per rank and MPI as root, and the mpirun
# array that oversubscribes without binding; defines run_dir_in, field,
# train, rate and cpu_line.
set -euo pipefail
bench_name="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(cd "${2:-$root/build}" && pwd)"
prog="$build/odyssey-dist"
[ -x "$prog" ] || { echo "$bench_name: $prog not built (launch/setup.sh)" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/ody-$bench_name.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
py=/usr/bin/python3
[ -x "$py" ] || py=python3

# run_dir_in DIR: the run directory (the one holding metrics.jsonl) that a
# run with experiment.output_dir=DIR wrote, whatever its experiment's name
run_dir_in() { dirname "$(find "$1" -name metrics.jsonl | head -n 1)"; }
# field FILE KEY: KEY of the last record of a metrics.jsonl
field() { "$py" -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])[sys.argv[2]])' "$1" "$2"; }

# train NP NAME OVERRIDES...: 400 steps (an override may say otherwise: the
# last one given wins) of $train_config (default this checkout's
# configs/lenet5/baseline.yaml: LeNet-5 on Fashion-MNIST), no validation or
# checkpoints, in $work/NAME, its output in $work/NAME.log; sets run_dir
# (the run's directory, named by the config's experiment).
# A failed run ends the script with its output.
train() {
  local np="$1" name="$2"; shift 2
  rm -rf "${work:?}/$name"
  "${mpirun[@]}" -np "$np" "$prog" "${train_config:-$root/configs/lenet5/baseline.yaml}" training.epochs=1 \
    training.max_steps=400 training.validate_interval=0 training.save_checkpoints=false \
    logging.level=info logging.plot=false experiment.output_dir="$work/$name" "$@" \
    </dev/null >"$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; exit 1; }
  run_dir="$(run_dir_in "$work/$name")"
}
# rate: images/s of the last train (its epoch record's samples_per_sec)
rate() { field "$run_dir/metrics.jsonl" samples_per_sec; }

# cpu_line: the CPU the figures come from, for a script's header: its model
# name, family and model (AMD family 25 model 17 is Zen 4, which runs a
# 512-bit FMA as two halves: half the FMA rate per cycle of a Xeon with
# two 512-bit FMA units) and the instruction sets the kernels use.
cpu_line() {
  local name fam model flags sets=""
  name="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  fam="$(grep -m1 '^cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')"
  model="$(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')"
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  for f in avx2 avx512f avx512_bf16 amx_tile; do [[ "$flags" == *" $f "* ]] && sets+=" $f"; done
  echo "cpu: ${name:-unknown} (family ${fam:-?}, model ${model:-?}; ${sets# })"
}

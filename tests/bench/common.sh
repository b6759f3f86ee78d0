# Sourced by the bench scripts (targets.sh, weak_scaling.sh) as
#   source "$(dirname "$0")/common.sh" NAME [BUILD_DIR]
# Sets here, root, build (BUILD_DIR or root/build), prog (odyssey-dist,
# which must be built), work (a scratch directory removed at exit), py (a
# python3, /usr/bin's first: the one python3-torch installs into), the
# environment for one BLAS thread per rank and MPI as root, and the mpirun
# array that oversubscribes without binding.
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

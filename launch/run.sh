#!/usr/bin/env bash
# Run odyssey-dist under mpirun with the right settings for this machine.
#
#   launch/run.sh [-np N] [--tcp] [--hostfile FILE] [--bind cores|none]
#                 [--dry-run] [--] CONFIG [section.key=value ...] [odyssey-dist options]
#
#   -np N           ranks (default: 2, or SLURM_NTASKS inside a SLURM job)
#   --tcp           TCP-only transport (--mca btl tcp,self): the stand-in for a
#                   multi-node network on one machine
#   --hostfile F    several nodes: passed to mpirun; ranks per node from the file
#   --bind MODE     core binding when ranks fit the cores (default cores)
#   --dry-run       print the mpirun line instead of running it
#
# More ranks than cores: --oversubscribe, no binding, and idle ranks yield
# (mpi_yield_when_idle) instead of spinning. OpenBLAS gets cores/ranks
# threads per rank (at least 1) unless OPENBLAS_NUM_THREADS is set.
# Running as root adds --allow-run-as-root. ODYSSEY_BIN overrides the program.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
np="${SLURM_NTASKS:-2}"
tcp=0
hostfile=""
bind=cores
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    -np|-n) np="$2"; shift 2 ;;
    --tcp) tcp=1; shift ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --bind) bind="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "run.sh: missing CONFIG (try --help)" >&2; exit 2; }
case "$np" in ''|*[!0-9]*|0) echo "run.sh: -np needs a positive integer, got '$np'" >&2; exit 2 ;; esac

bin="${ODYSSEY_BIN:-$root/build/odyssey-dist}"
[ -x "$bin" ] || { echo "run.sh: $bin not found: run launch/setup.sh first" >&2; exit 2; }

cores=$(nproc)
args=(-np "$np")
if [ -n "$hostfile" ]; then
  args+=(--hostfile "$hostfile")
  cores=$((cores * $(grep -cv '^\s*\(#\|$\)' "$hostfile")))
fi
if [ "$np" -gt "$cores" ]; then
  args+=(--oversubscribe --bind-to none --mca mpi_yield_when_idle 1)
elif [ "$bind" = none ]; then
  args+=(--bind-to none)
else
  args+=(--bind-to core --map-by core)
fi
[ "$tcp" = 1 ] && args+=(--mca btl tcp,self --mca btl_tcp_if_include lo)
[ "$(id -u)" = 0 ] && args+=(--allow-run-as-root)

threads=$((cores / np))
[ "$threads" -ge 1 ] || threads=1
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$threads}"
args+=(-x OPENBLAS_NUM_THREADS)
[ -n "${OPENBLAS_CORETYPE:-}" ] && args+=(-x OPENBLAS_CORETYPE)

cmd=(mpirun "${args[@]}" "$bin" "$@")
if [ "$dry" = 1 ]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
cd "$root"
exec "${cmd[@]}"

#!/usr/bin/env bash
# Run odyssey-dist under mpirun (or srun) with the right settings for this machine.
# Installed as odyssey-run.
#
#   odyssey-run [-np N] [--tcp] [--tcp-if IFACES] [--hostfile FILE]
#               [--bind cores|none] [--threads T] [--mca KEY VALUE]...
#               [--launcher mpirun|srun] [--dry-run]
#               [odyssey-dist options] [--] [CONFIG] [section.key=value ...]
#
#   -np N           ranks (default: SLURM_NTASKS inside a SLURM job, else 2)
#   --tcp           TCP-only transport (pml ob1, btl tcp,self): the stand-in
#                   for a multi-node network on one machine (there it also
#                   sets distributed.shared_memory=false)
#   --tcp-if LIST   interfaces for --tcp (default: lo on one node, Open MPI's
#                   choice across nodes), e.g. eth0 or 10.0.0.0/16
#   --hostfile F    several nodes (mpirun): slots per host from its slots=N,
#                   else this machine's core count
#   --bind MODE     core binding when ranks fit the cores (default cores)
#   --threads T     OpenBLAS threads per rank (default: OPENBLAS_NUM_THREADS,
#                   else cores / ranks on one node, else the program shares
#                   out each node's cores among its ranks)
#   --mca KEY VAL   an Open MPI parameter (repeatable)
#   --launcher L    mpirun (default), or srun inside a SLURM allocation:
#                   srun --mpi=pmix (ODY_SRUN_MPI overrides pmix) starts the
#                   ranks directly, Open MPI parameters go as OMPI_MCA_* variables
#   --dry-run       print the command line instead of running it
#
# odyssey-dist's options (--resume, --eval, --print-config, --config-reference,
# --version, as --opt VALUE or --opt=VALUE) go to the program, with or without
# a CONFIG: odyssey-run -np 2 --eval run/latest.h5. After "--" or the CONFIG
# every argument goes to the program as it is.
#
# Cores: this machine's, a hostfile's slots, or the SLURM allocation's
# (mpirun then takes the nodes from SLURM itself). More ranks than cores:
# --oversubscribe (srun: --overcommit), no binding, and idle ranks yield
# (mpi_yield_when_idle) instead of spinning. Running as root adds
# --allow-run-as-root. The program: ODYSSEY_BIN, else build/odyssey-dist when
# this script runs from a checkout (launch/run.sh), else the odyssey-dist
# installed beside it, else the one on PATH. From a checkout, MODEL/NAME
# configs are looked up in ODY_CONFIG_DIR (default: the checkout's configs/);
# installed, odyssey-dist finds its own (./configs first).
# The launcher replaces this script (exec): a signal sent to its pid reaches
# mpirun or srun, and both forward SIGUSR1 and SIGTERM to every rank.
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
me=$(basename "$0")
die() { echo "$me: $*" >&2; exit 2; }
need_value() { [ "$2" -ge 2 ] || die "$1 needs a value (try --help)"; }

np="${SLURM_NTASKS:-2}"
tcp=0
tcp_if=""
hostfile=""
bind=cores
threads="${OPENBLAS_NUM_THREADS:-}"
mca=()
launcher=mpirun
dry=0
program_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    -np|-n) need_value "$1" $#; np="$2"; shift 2 ;;
    --tcp) tcp=1; shift ;;
    --tcp-if) need_value "$1" $#; tcp=1; tcp_if="$2"; shift 2 ;;
    --hostfile) need_value "$1" $#; hostfile="$2"; shift 2 ;;
    --bind) need_value "$1" $#; bind="$2"; shift 2 ;;
    --threads) need_value "$1" $#; threads="$2"; shift 2 ;;
    --mca) [ $# -ge 3 ] || die "--mca needs KEY VALUE"; mca+=("$2" "$3"); shift 3 ;;
    --launcher) need_value "$1" $#; launcher="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --resume|--eval) need_value "$1" $#; program_opts+=("$1" "$2"); shift 2 ;;
    --resume=*|--eval=*|--print-config|--config-reference|-V|--version) program_opts+=("$1"); shift ;;
    --) shift; break ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    -*) die "unknown option $1 (try --help)" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || [ ${#program_opts[@]} -gt 0 ] || die "missing CONFIG (try --help)"
is_count() { case "$1" in ''|*[!0-9]*|0*) return 1 ;; esac; }
is_count "$np" || die "-np needs a positive integer, got '$np'"
[ -z "$threads" ] || is_count "$threads" || die "--threads needs a positive integer, got '$threads'"
case "$bind" in cores|none) ;; *) die "--bind is cores or none, got '$bind'" ;; esac
case "$launcher" in mpirun|srun) ;; *) die "--launcher is mpirun or srun, got '$launcher'" ;; esac
[ "$launcher" = srun ] && [ -n "$hostfile" ] && die "--hostfile is for mpirun; srun takes the nodes from SLURM"

# The program: a checkout's build (this is its launch/run.sh), the installed
# one beside this script (odyssey-run), or PATH's.
checkout=""
[ -f "$here/run.sh" ] && [ -f "$here/../CMakeLists.txt" ] && checkout=$(cd "$here/.." && pwd)
if [ -n "${ODYSSEY_BIN:-}" ]; then
  bin="$ODYSSEY_BIN"
elif [ -n "$checkout" ]; then
  bin="$checkout/build/odyssey-dist"
elif [ -x "$here/odyssey-dist" ]; then
  bin="$here/odyssey-dist"
else
  bin=$(command -v odyssey-dist) || die "odyssey-dist not found beside $here nor on PATH"
fi
[ -x "$bin" ] || die "$bin not found: run launch/setup.sh first"

# slots: cores the ranks may use in all; nodes: how many machines.
# hostfile_slots FILE: "SLOTS NODES" from its host lines.
hostfile_slots() {
  awk -v cores="$(nproc)" '
    { sub(/#.*/, "") } NF == 0 { next }
    { n = cores; for (i = 2; i <= NF; i++) if ($i ~ /^(slots|max_slots)=/) { sub(/^[a-z_]+=/, "", $i); n = $i; break }
      slots += n; nodes++ }
    END { print slots + 0, nodes + 0 }' "$1"
}
# slurm_cpus "4(x2),2": the CPUs of a SLURM allocation in all (8 + 2).
slurm_cpus() {
  echo "$1" | tr ',' '\n' | awk -F'[(x)]' '{ total += $1 * ($3 == "" ? 1 : $3) } END { print total + 0 }'
}
if [ -n "$hostfile" ]; then
  [ -r "$hostfile" ] || die "cannot read hostfile $hostfile"
  read -r slots nodes < <(hostfile_slots "$hostfile")
  [ "$nodes" -ge 1 ] || die "hostfile $hostfile names no hosts"
elif [ -n "${SLURM_JOB_ID:-}" ] && [ -n "${SLURM_JOB_CPUS_PER_NODE:-}" ]; then
  slots=$(slurm_cpus "$SLURM_JOB_CPUS_PER_NODE")
  nodes="${SLURM_JOB_NUM_NODES:-1}"
else
  slots=$(nproc)
  nodes=1
fi
oversubscribed=0
[ "$np" -gt "$slots" ] && oversubscribed=1

# Open MPI parameters, whichever launcher passes them on.
[ "$oversubscribed" = 1 ] && mca+=(mpi_yield_when_idle 1)
if [ "$tcp" = 1 ]; then
  mca+=(pml ob1 btl "tcp,self")
  [ -z "$tcp_if" ] && [ "$nodes" = 1 ] && tcp_if=lo
  [ -n "$tcp_if" ] && mca+=(btl_tcp_if_include "$tcp_if" oob_tcp_if_include "$tcp_if")
fi

# OpenBLAS threads: on one node, its cores shared out among the ranks; across
# nodes the program shares out each node's cores among the ranks on it.
if [ -z "$threads" ] && [ "$nodes" = 1 ]; then
  threads=$((slots / np))
  [ "$threads" -ge 1 ] || threads=1
fi
# From a checkout, its configs/ stand in for the installed ones.
[ -n "$checkout" ] && export ODY_CONFIG_DIR="${ODY_CONFIG_DIR:-$checkout/configs}"
exported=()
[ -n "${ODY_CONFIG_DIR:-}" ] && exported+=(ODY_CONFIG_DIR)
if [ -n "$threads" ]; then
  export OPENBLAS_NUM_THREADS="$threads"
  exported+=(OPENBLAS_NUM_THREADS)
fi
[ -n "${OPENBLAS_CORETYPE:-}" ] && exported+=(OPENBLAS_CORETYPE)

if [ "$launcher" = mpirun ]; then
  cmd=(mpirun -np "$np")
  [ -n "$hostfile" ] && cmd+=(--hostfile "$hostfile")
  if [ "$oversubscribed" = 1 ]; then
    cmd+=(--oversubscribe --bind-to none)
  elif [ "$bind" = none ]; then
    cmd+=(--bind-to none)
  else
    cmd+=(--bind-to core --map-by core)
  fi
  [ "$(id -u)" = 0 ] && cmd+=(--allow-run-as-root)
  for ((i = 0; i < ${#mca[@]}; i += 2)); do cmd+=(--mca "${mca[i]}" "${mca[i + 1]}"); done
  for name in "${exported[@]}"; do cmd+=(-x "$name"); done
else
  # srun hands the whole environment to the ranks.
  cmd=(env)
  for ((i = 0; i < ${#mca[@]}; i += 2)); do cmd+=("OMPI_MCA_${mca[i]}=${mca[i + 1]}"); done
  for name in "${exported[@]}"; do cmd+=("$name=${!name}"); done
  # --kill-on-bad-exit: a rank that fails (or ends a stall) ends the step at once.
  cmd+=(srun "--mpi=${ODY_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 -n "$np")
  if [ "$oversubscribed" = 1 ]; then
    cmd+=(--overcommit --cpu-bind=none)
  elif [ "$bind" = none ]; then
    cmd+=(--cpu-bind=none)
  else
    cmd+=(--cpu-bind=cores)
  fi
fi
# One machine standing in for several (--tcp): the gradient sums leave
# shared memory too (a later distributed.shared_memory on the line wins).
# The program's options first, then the CONFIG (when the line names one
# before "--"), then the --tcp override and everything else.
cmd+=("$bin" "${program_opts[@]}")
if [ $# -gt 0 ] && [[ "$1" != -* && "$1" != *.*=* ]]; then
  cmd+=("$1")
  shift
fi
[ "$tcp" = 1 ] && [ "$nodes" = 1 ] && cmd+=(distributed.shared_memory=false)
cmd+=("$@")

if [ "$dry" = 1 ]; then
  # Quote only the words a shell would need quoted, so the line reads plainly.
  for word in "${cmd[@]}"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./=,:+@%-]+$ ]]; then printf '%s ' "$word"; else printf '%q ' "$word"; fi
  done
  echo
  exit 0
fi
exec "${cmd[@]}"

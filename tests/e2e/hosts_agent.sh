#!/bin/bash
# Open MPI's launch agent for the namespace hosts of tests/e2e/hosts.sh
# (--mca plm_rsh_agent this file): called like ssh, `hosts_agent.sh HOST
# COMMAND...`, it runs COMMAND (a shell command line, as ssh would) inside
# HOST's network, UTS and mount namespaces, through the host's holder
# process (ODY_HOSTS_MAP: lines "HOST PID"). As over ssh, the command starts
# with a bare environment: a rank on another host sees only what mpirun
# sends (-x NAME and OMPI_* variables), and a sanitizer build's settings
# (ASAN_OPTIONS, UBSAN_OPTIONS, as a login profile would set them).
set -euo pipefail
[ $# -ge 2 ] || { echo "hosts_agent.sh: usage: hosts_agent.sh HOST COMMAND..." >&2; exit 255; }
host="$1"
shift
map="${ODY_HOSTS_MAP:?hosts_agent.sh: ODY_HOSTS_MAP is not set}"
pid=$(awk -v h="$host" '$1 == h { print $2 }' "$map")
[ -n "$pid" ] || { echo "hosts_agent.sh: no host '$host' in $map" >&2; exit 255; }
keep=()
for name in ASAN_OPTIONS UBSAN_OPTIONS; do
  [ -z "${!name:-}" ] || keep+=("$name=${!name}")
done
exec nsenter -t "$pid" -n -u -m -- env -i PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
  HOME="${HOME:-/root}" ODY_HOSTS_MAP="$map" "${keep[@]}" /bin/sh -c "$*"

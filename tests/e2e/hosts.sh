# A cluster of 2 to 4 hosts on this machine, out of Linux namespaces, for
# end-to-end tests (sourced instead of common.sh; needs root):
#
#   hosts_up N          make hosts ody-h1 .. ody-hN (skips the test, exit 77,
#                       where namespaces are not permitted)
#   hosts_run SPEC ARGS...
#                       the program under mpirun on SPEC = HOSTSxRANKS (2x2:
#                       ranks 0, 1 on ody-h1, 2, 3 on ody-h2), mpirun itself
#                       on ody-h1 as on a cluster's first node
#                       (HOSTS_PROGRAM instead of ODY_PROGRAM: a wrapper)
#   hosts_expect_exit CODE LOG SPEC ARGS...   hosts_run, checking its exit code
#   hosts_pids          every process on any host (not the holders)
#
# Each host has its own network namespace (an eth0 on a bridge, address
# 10.213.0.I/24), UTS namespace (hostname ody-hI) and mount namespace (its
# own tmpfs /dev/shm and /tmp; /etc/hosts naming every host); the rest of
# the file system is shared, as a cluster's shared file system would be: the
# program, the data and the scratch directory (so it is made outside /tmp).
# The bridge sits in a namespace of its own, so nothing is added to this
# machine's network and parallel tests do not collide (each test has its
# own switch, hosts and addresses). A holder process per host keeps its
# namespaces alive (tests/e2e/hosts_holder.sh); Open MPI starts its daemons
# on the other hosts through tests/e2e/hosts_agent.sh (plm_rsh_agent), which
# enters the host's namespaces with nsenter as ssh would log in. TCP
# between hosts (btl tcp on 10.213.0.0/24, oob too), shared memory (vader)
# within a host. Every exit of the test (EXIT, INT, TERM) kills every
# process on the hosts and then the holders; the holders also die with the
# test's shell (SIGKILL as parent-death signal).
HOSTS_SUBNET=10.213.0.0/24
HOSTS_PREFIX=10.213.0

hosts_skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || hosts_skip "namespace hosts need root"
for tool in unshare nsenter setpriv ip; do
  command -v "$tool" >/dev/null || hosts_skip "namespace hosts need $tool"
done
unshare --net --uts --mount true 2>/dev/null ||
  hosts_skip "network, UTS and mount namespaces are not permitted here"
# /tmp and /dev/shm are each host's own: the source and build directories,
# when they live there, are bound into every host at the same path
# (hosts_holder.sh), as a cluster's shared file system would show them.
HOSTS_KEEP=""
# shellcheck disable=SC2086 # HOSTS_EXTRA_KEEP: more directories (scaling.py's study), split on spaces
for dir in "${ODY_SOURCE_DIR:?run through ctest}" "${ODY_BINARY_DIR:?run through ctest}" ${HOSTS_EXTRA_KEEP:-}; do
  case "$dir/" in /tmp/*|/dev/shm/*) ;; *) continue ;; esac
  [[ "$dir" != *[[:space:]]* ]] || hosts_skip "$dir (under /tmp or /dev/shm) has a space in its path"
  inside=0
  for kept in $HOSTS_KEEP; do
    [[ "$dir/" == "$kept/"* ]] && inside=1
  done
  [ "$inside" = 1 ] || HOSTS_KEEP="$HOSTS_KEEP $dir"
done
export HOSTS_KEEP
mkdir -p "$ODY_BINARY_DIR/hosts-scratch"
export TMPDIR="$ODY_BINARY_DIR/hosts-scratch"
# shellcheck source=tests/e2e/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

hosts_count=0
hosts_dir=""
declare -a hosts_holders=()   # switch first, then ody-h1 ..
hosts_nets=""                 # the hosts' and the switch's network namespaces

# hosts_in PID CMD...: CMD in PID's network namespace, never in this
# machine's (this shell's).
hosts_in() {
  local pid="$1" theirs mine; shift
  theirs=$(readlink "/proc/$pid/ns/net") && mine=$(readlink "/proc/$$/ns/net") &&
    [ -n "$theirs" ] && [ -n "$mine" ] && [ "$theirs" != "$mine" ] ||
    fail "hosts: pid $pid is not in a network namespace of its own"
  nsenter -t "$pid" -n -- "$@"
}

# hosts_hold NAME UNSHARE_FLAGS...: start a holder; sets hosts_pid.
hosts_hold() {
  local name="$1" fifo="$hosts_dir/$1.ready" fd line=""; shift
  mkfifo "$fifo"
  exec {fd}<>"$fifo"
  unshare "$@" -- setpriv --pdeathsig KILL -- /bin/bash "$ODY_SOURCE_DIR/tests/e2e/hosts_holder.sh" \
    "$name" "$fifo" "$hosts_dir/etc-hosts" </dev/null >/dev/null 2>"$hosts_dir/$name.err" &
  hosts_pid=$!
  hosts_holders+=("$hosts_pid")
  read -r -t 30 -u "$fd" line || true
  exec {fd}>&-
  [ "$line" = ready ] || fail "hosts: $name did not come up: $(cat "$hosts_dir/$name.err")"
  hosts_nets+=" $(readlink "/proc/$hosts_pid/ns/net")"
}

hosts_up() {
  local n="$1" i pid
  [ "$n" -ge 1 ] && [ "$n" -le 250 ] || fail "hosts_up: 1 to 250 hosts, not $n"
  hosts_dir="$scratch/hosts"
  mkdir -p "$hosts_dir"
  { echo "127.0.0.1 localhost"
    for ((i = 1; i <= n; i++)); do echo "$HOSTS_PREFIX.$i ody-h$i"; done; } >"$hosts_dir/etc-hosts"
  : >"$hosts_dir/map"
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'hosts_down; cleanup' EXIT
  hosts_hold switch --net
  local switch="$hosts_pid"
  hosts_in "$switch" ip link show br0 >/dev/null 2>&1 || hosts_skip "no bridge in a network namespace here"
  for ((i = 1; i <= n; i++)); do
    hosts_hold "ody-h$i" --net --uts --mount --propagation private
    pid="$hosts_pid"
    hosts_in "$switch" ip link add "h$i" type veth peer name eth0 netns "$pid" ||
      hosts_skip "veth pairs between network namespaces are not permitted here"
    hosts_in "$switch" ip link set "h$i" master br0 up
    hosts_in "$pid" ip addr add "$HOSTS_PREFIX.$i/24" dev eth0
    hosts_in "$pid" ip link set eth0 up
    echo "ody-h$i $pid" >>"$hosts_dir/map"
  done
  hosts_count="$n"
  for ((i = 2; i <= n; i++)); do hosts_reachable "$i"; done
  note "hosts up: $(tr '\n' ' ' <"$hosts_dir/map")(bridge in pid $switch)"
}

# hosts_reachable I: ody-h1 reaches ody-hI (a refused TCP connection will do).
hosts_reachable() {
  local out
  out=$(nsenter -t "$(hosts_pid_of ody-h1)" -n -u -m -- timeout 10 \
        bash -c "echo > /dev/tcp/ody-h$1/9" 2>&1) && return 0
  [[ "$out" == *"Connection refused"* ]] || fail "hosts: ody-h1 cannot reach ody-h$1: $out"
}

hosts_pid_of() { awk -v h="$1" '$1 == h { print $2 }' "$hosts_dir/map"; }

hosts_pids() {
  local p ns pid
  for p in /proc/[0-9]*; do
    ns=$(readlink "$p/ns/net" 2>/dev/null) || continue
    [[ "$hosts_nets " == *" $ns "* ]] || continue
    pid="${p#/proc/}"
    [[ " ${hosts_holders[*]} " == *" $pid "* ]] || echo "$pid"
  done
  return 0
}

hosts_down() {
  local pid
  [ -n "$hosts_dir" ] || return 0
  for pid in $(hosts_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${hosts_holders[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${hosts_holders[@]}"; do wait "$pid" 2>/dev/null || true; done
  hosts_holders=()
  hosts_dir=""
}

# hosts_hostfile SPEC: write the hostfile for SPEC = HOSTSxRANKS; prints its path.
hosts_hostfile() {
  local h="${1%x*}" r="${1#*x}" i file="$hosts_dir/hostfile-$1"
  [ "$h" -ge 1 ] && [ "$h" -le "$hosts_count" ] || fail "hosts: $1 asks for $h of $hosts_count hosts"
  : >"$file"
  for ((i = 1; i <= h; i++)); do echo "ody-h$i slots=$r" >>"$file"; done
  echo "$file"
}

# hosts_run SPEC ARGS...: the program on SPEC's ranks, mpirun on ody-h1.
# Variables a rank needs go with -x (the other hosts' ranks start with a
# bare environment, as over ssh); HOSTS_MPIRUN_ARGS adds mpirun options.
hosts_run() {
  local spec="$1"; shift
  local np=$(( ${spec%x*} * ${spec#*x} )) file name
  file=$(hosts_hostfile "$spec")
  # shellcheck disable=SC2054  # tcp,self,vader is one value
  local cmd=(--hostfile "$file" --mca plm_rsh_agent "$ODY_SOURCE_DIR/tests/e2e/hosts_agent.sh"
             --mca btl tcp,self,vader --mca btl_tcp_if_include "$HOSTS_SUBNET"
             --mca oob_tcp_if_include "$HOSTS_SUBNET")
  for name in OPENBLAS_NUM_THREADS OPENBLAS_CORETYPE ODY_CONFIG_DIR ODY_FAIL_ACTION ODY_FAIL_RANK \
              ODY_FAIL_STEP ASAN_OPTIONS UBSAN_OPTIONS; do
    [ -z "${!name:-}" ] || cmd+=(-x "$name")
  done
  # shellcheck disable=SC2086  # ODY_MPIEXEC is a command line
  nsenter -t "$(hosts_pid_of ody-h1)" -n -u -m --wd="$PWD" -- env -u TMPDIR \
    ODY_HOSTS_MAP="$hosts_dir/map" $ODY_MPIEXEC $ODY_NUMPROC_FLAG "$np" "${cmd[@]}" \
    ${HOSTS_MPIRUN_ARGS:-} "${HOSTS_PROGRAM:-$ODY_PROGRAM}" "$@"
}

# hosts_expect_exit CODE LOG SPEC ARGS...: hosts_run, output in LOG, exit CODE.
hosts_expect_exit() {
  local want="$1" log="$2" got; shift 2
  set +e
  hosts_run "$@" >"$log" 2>&1
  got=$?
  set -e
  [ "$got" = "$want" ] || { cat "$log" >&2; fail "expected exit $want, got $got: hosts_run $*"; }
}

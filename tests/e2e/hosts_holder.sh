#!/bin/bash
# The process that holds one namespace host of tests/e2e/hosts.sh alive
# (started by hosts.sh under `unshare`, in new namespaces):
#   hosts_holder.sh switch FIFO            the switch: a bridge br0
#   hosts_holder.sh HOST FIFO HOSTS_FILE   a host: hostname HOST, its own
#                                          /dev/shm and /tmp (tmpfs), HOSTS_FILE
#                                          as /etc/hosts
# It sets its namespaces up, writes "ready" into FIFO and sleeps until it is
# killed; its namespaces end with it (and with the last process inside).
set -euo pipefail
name="$1" fifo="$2"
# Never touch this machine's own network: refuse unless the namespaces are
# new ones, not those of the test that started this (the parent: unshare
# and setpriv exec into this script). pid 1's may be unreadable.
new_ns() {
  local mine theirs
  mine=$(readlink "/proc/self/ns/$1") && theirs=$(readlink "/proc/$PPID/ns/$1") &&
    [ -n "$mine" ] && [ -n "$theirs" ] && [ "$mine" != "$theirs" ]
}
new_ns net || { echo "hosts_holder.sh: $name: not in a new network namespace" >&2; exit 1; }
if [ "$name" = switch ]; then
  ip link add br0 type bridge
  ip link set br0 up
else
  new_ns mnt || { echo "hosts_holder.sh: $name: not in a new mount namespace" >&2; exit 1; }
  hostname "$name"
  # The shared directories that live under /tmp or /dev/shm (HOSTS_KEEP,
  # from hosts.sh): held open across the tmpfs mounts, then bound back at
  # their paths (mount must not canonicalise the /proc fd link).
  declare -a kept=()
  for dir in ${HOSTS_KEEP:-}; do
    exec {fd}<"$dir"
    kept+=("$fd:$dir")
  done
  mount -t tmpfs -o size=1g,mode=1777 "shm-$name" /dev/shm
  mount -t tmpfs -o size=1g,mode=1777 "tmp-$name" /tmp
  for entry in "${kept[@]}"; do
    mkdir -p "${entry#*:}"
    fd=${entry%%:*}
    mount --no-canonicalize --bind "/proc/self/fd/$fd" "${entry#*:}"
    exec {fd}<&-
  done
  mount --bind "$3" /etc/hosts
fi
ip link set lo up
echo ready >"$fifo"
exec sleep infinity

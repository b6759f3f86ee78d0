#!/usr/bin/env bash
# Two namespace hosts x 2 ranks (tests/e2e/hosts.sh): LeNet-5 on real
# Fashion-MNIST ends with the same parameter sha256 as on 1 rank
# (deterministic mode); each node sums in its shared memory and its leader
# sums across the nodes (the program's debug log, per node); Open MPI's
# own log shows TCP between the hosts and only there, shared memory
# (vader) within each.
source "$(dirname "$0")/hosts.sh"
args=(lenet5/baseline data.limit_train=1920 data.limit_val=500 training.epochs=1
      training.log_interval=10 logging.plot=false logging.level=debug)

note "1 rank, on this machine"
expect_exit 0 p1.log 0 "${args[@]}" experiment.output_dir="$scratch/p1"
want=$(params_sha256 "$scratch/p1/lenet5-baseline/latest.h5")
echo "1 rank:   sha256 $want"

hosts_up 2
note "2 hosts x 2 ranks"
HOSTS_MPIRUN_ARGS="--mca btl_base_verbose 100" \
  hosts_expect_exit 0 h2x2.log 2x2 "${args[@]}" experiment.output_dir="$scratch/h2x2"
got=$(params_sha256 "$scratch/h2x2/lenet5-baseline/latest.h5")
echo "2 x 2:    sha256 $got"
[ "$got" = "$want" ] || fail "2 hosts x 2 ranks differ from 1 rank"

note "the program's log: node sums, then the sum across nodes"
expect_in h2x2.log 'odyssey-dist [0-9.]+: 4 rank\(s\)'
expect_in h2x2.log 'gradient sums: exact, in node shared memory \(2 rank\(s\) on this node; one rank per node sums across nodes with MPI\)'
expect_in h2x2.log 'chunk stealing: the 2 ranks of a node share'
for host in "rank 0: .*node ody-h1" "rank 2: .*node ody-h2"; do
  expect_in h2x2.log "$host: its 2 rank\(s\) add their gradients in its shared memory; this rank, its leader, sums the totals of the 2 nodes with MPI_Allreduce"
done
grep -E 'node ody-h[12]:|gradient sums' h2x2.log

note "Open MPI's log: vader and TCP on both hosts; TCP connections only between hosts"
for host in ody-h1 ody-h2; do
  for btl in vader tcp; do
    expect_in h2x2.log "^\[$host:[0-9]+\] select: init of component $btl returned success"
  done
done
# "[ody-hA:pid] btl:tcp: now connected to 10.213.0.B, process [[job,1],R]"
connected=$(sed -n 's/^\[ody-h\([0-9]*\):[0-9]*\] btl:tcp: now connected to 10\.213\.0\.\([0-9]*\), process .*,\([0-9]*\)\]$/\1 \2 \3/p' h2x2.log)
echo "TCP connections (from host, to host, to rank):"
echo "$connected"
[ "$(wc -l <<<"$connected")" -ge 2 ] || fail "fewer than 2 TCP connections between the hosts"
while read -r from to rank; do
  [ "$from" != "$to" ] || fail "a TCP connection within ody-h$from: shared memory was not used there"
  [ "$to" = $((rank / 2 + 1)) ] || fail "rank $rank reached at ody-h$to, expected ody-h$((rank / 2 + 1))"
done <<<"$connected"
[ -z "$(hosts_pids)" ] || fail "processes left on the hosts: $(hosts_pids)"

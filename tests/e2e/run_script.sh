#!/usr/bin/env bash
# launch/run.sh: the mpirun (and srun) lines it builds for this machine, a
# hostfile and a SLURM allocation, its errors, and a real TCP-only run on 2
# ranks whose ranks connect over TCP and nothing else.
source "$(dirname "$0")/common.sh"
export ODYSSEY_BIN="$ODY_PROGRAM"
run_sh="$ODY_SOURCE_DIR/launch/run.sh"
cores=$(nproc)

# line WANT ARGS...: run.sh --dry-run ARGS prints a line containing every
# space-separated word group of WANT ("a b|c d": "a b" and "c d").
line() {
  local want="$1" got part; shift
  got=$(env -u OPENBLAS_NUM_THREADS -u SLURM_JOB_ID -u SLURM_NTASKS "$run_sh" --dry-run "$@")
  IFS='|' read -r -a parts <<<"$want"
  for part in "${parts[@]}"; do
    [[ " $got " == *" $part "* ]] || fail "run.sh $*: no '$part' in: $got"
  done
  echo "$got"
}
# no_word WORD ARGS...: the dry-run line lacks WORD.
no_word() {
  local word="$1" got; shift
  got=$(env -u OPENBLAS_NUM_THREADS -u SLURM_JOB_ID -u SLURM_NTASKS "$run_sh" --dry-run "$@")
  [[ " $got " != *" $word "* ]] || fail "run.sh $*: unexpected '$word' in: $got"
}

note "ranks that fit the cores: bound, cores/ranks BLAS threads"
line "mpirun -np 1|--bind-to core --map-by core|-x OPENBLAS_NUM_THREADS|$ODY_PROGRAM c.yaml a=1" -np 1 c.yaml a=1
[ "$(env -u OPENBLAS_NUM_THREADS "$run_sh" --dry-run -np 1 c.yaml | grep -c .)" = 1 ] || fail "one line expected"
no_word --oversubscribe -np 1 c.yaml
note "more ranks than cores: oversubscribed, unbound, yielding, 1 BLAS thread"
line "-np $((cores + 1))|--oversubscribe --bind-to none|--mca mpi_yield_when_idle 1" -np $((cores + 1)) c.yaml
no_word "--map-by" -np $((cores + 1)) c.yaml
line "--bind-to none" -np 1 --bind none c.yaml
note "TCP only"
line "--mca pml ob1|--mca btl tcp,self|--mca btl_tcp_if_include lo|c.yaml distributed.shared_memory=false" -np 2 --tcp c.yaml
line "--mca btl_tcp_if_include eth1|--mca oob_tcp_if_include eth1" -np 2 --tcp-if eth1 c.yaml
line "--mca btl_base_verbose 5" --mca btl_base_verbose 5 c.yaml
note "root"
if [ "$(id -u)" = 0 ]; then line "--allow-run-as-root" c.yaml; else no_word --allow-run-as-root c.yaml; fi

note "hostfile: slots summed over hosts; no lo, no BLAS threads across nodes"
printf '# two nodes\nnode1 slots=4\n\nnode2 slots=4 # second\n' >hosts
line "-np 8 --hostfile hosts --bind-to core|--mca btl tcp,self" -np 8 --hostfile hosts --tcp c.yaml
no_word "--oversubscribe" -np 8 --hostfile hosts c.yaml
no_word "lo" -np 8 --hostfile hosts --tcp c.yaml
no_word "distributed.shared_memory=false" -np 8 --hostfile hosts --tcp c.yaml
no_word "OPENBLAS_NUM_THREADS" -np 8 --hostfile hosts c.yaml
line "--oversubscribe" -np 9 --hostfile hosts c.yaml

note "inside a SLURM allocation: ranks and cores from SLURM; srun"
got=$(env -u OPENBLAS_NUM_THREADS SLURM_JOB_ID=7 SLURM_NTASKS=6 SLURM_JOB_CPUS_PER_NODE='2(x3)' \
      SLURM_JOB_NUM_NODES=3 "$run_sh" --dry-run c.yaml)
[[ "$got" == "mpirun -np 6 --bind-to core "* ]] || fail "SLURM: $got"
got=$(env -u OPENBLAS_NUM_THREADS SLURM_JOB_ID=7 SLURM_NTASKS=2 SLURM_JOB_CPUS_PER_NODE=2 \
      "$run_sh" --dry-run --launcher srun -np 3 --tcp c.yaml)
for want in "OMPI_MCA_pml=ob1" "OMPI_MCA_btl=tcp,self" "OMPI_MCA_mpi_yield_when_idle=1" \
            "OPENBLAS_NUM_THREADS=1" "srun --mpi=pmix --kill-on-bad-exit=1 -n 3 --overcommit"; do
  [[ "$got" == *"$want"* ]] || fail "srun line lacks $want: $got"
done
echo "$got"

note "the program's options go through, with or without a CONFIG"
line "-np 2|$ODY_PROGRAM --eval run/latest.h5" -np 2 --eval run/latest.h5
line "$ODY_PROGRAM --eval=run/latest.h5 training.epochs=1" --eval=run/latest.h5 training.epochs=1
line "$ODY_PROGRAM --resume auto c.yaml a.b=1" --resume auto c.yaml a.b=1
line "$ODY_PROGRAM --resume=auto c.yaml" --resume=auto c.yaml
line "$ODY_PROGRAM --print-config c.yaml a.b=1" -np 1 --print-config c.yaml a.b=1
line "$ODY_PROGRAM --config-reference" --config-reference
line "$ODY_PROGRAM --eval x.h5 distributed.shared_memory=false a.b=1" --tcp --eval x.h5 a.b=1
note "after -- or the CONFIG, everything goes to the program as it is"
line "$ODY_PROGRAM --eval x.h5 -np 3" -np 2 -- --eval x.h5 -np 3
line "-np 2|$ODY_PROGRAM c.yaml --resume auto --dry-run" -np 2 c.yaml --resume auto --dry-run

note "errors: exit 2 with a message"
for bad in "-np 0 c.yaml" "-np x c.yaml" "-np" "--bind sometimes c.yaml" "--bogus c.yaml" "" "--eval" "-np 2 --resume" \
           "--hostfile missing-file c.yaml" "--launcher srun --hostfile hosts c.yaml" "--threads 0 c.yaml"; do
  set +e
  # shellcheck disable=SC2086  # $bad is a word list on purpose
  "$run_sh" --dry-run $bad >err.log 2>&1
  code=$?
  set -e
  [ "$code" = 2 ] || { cat err.log >&2; fail "run.sh $bad: exit $code, expected 2"; }
  expect_in err.log '^run\.sh: '
done

note "a real run, TCP only: the ranks connect over TCP, shared memory unused"
"$run_sh" -np 2 --tcp --mca btl_base_verbose 100 lenet5/baseline data.name=synthetic \
  data.synthetic_train=600 data.synthetic_val=100 training.epochs=1 training.save_checkpoints=false \
  experiment.output_dir="$scratch/tcp" >tcp.log 2>&1 || { cat tcp.log >&2; fail "run.sh --tcp failed"; }
expect_in tcp.log 'epoch 1/1 done'
expect_in tcp.log 'btl:tcp: now connected to'
if grep -Eq 'initializing btl component (vader|sm)' tcp.log; then fail "--tcp still loaded shared memory"; fi
if grep -q 'gradient sums: exact, in node shared memory' tcp.log; then fail "--tcp still summed in shared memory"; fi
note "a relative config path works from any directory"
cp "$ODY_SOURCE_DIR/configs/lenet5/baseline.yaml" my.yaml
mkdir sub
(cd sub && "$run_sh" -np 1 ../my.yaml data.name=synthetic data.synthetic_train=64 \
  data.synthetic_val=64 training.epochs=1 \
  experiment.output_dir="$scratch/rel" >../rel.log 2>&1) || { cat rel.log >&2; fail "relative config"; }
note "a real --eval through run.sh, without the CONFIG"
"$run_sh" -np 2 --eval "$scratch/rel/lenet5-my/latest.h5" >eval.log 2>&1 || { cat eval.log >&2; fail "run.sh --eval"; }
expect_in eval.log "^eval $scratch/rel/lenet5-my/latest.h5: loss [0-9.]+ accuracy .* on 64 samples"

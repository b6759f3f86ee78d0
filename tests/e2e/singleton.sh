#!/usr/bin/env bash
# The program started directly (an MPI singleton, no mpirun) trains and
# exits 0; --help and --version work without starting MPI; options follow
# getopt_long's conventions; usage errors exit 2.
source "$(dirname "$0")/common.sh"

expect_exit 0 help.log 0 --help
expect_in help.log 'usage: odyssey-dist'
expect_exit 0 version.log 0 --version
expect_in version.log '^odyssey-dist [0-9]+\.[0-9]+'
expect_exit 2 noarg.log 0
expect_in noarg.log 'missing CONFIG'
expect_exit 2 badopt.log 0 --frobnicate x.yaml
expect_in badopt.log "unknown option '--frobnicate'"

note "-h, -V, --opt=value, --; --help, --version and --config-reference start no MPI"
# (with an Open MPI that cannot start: MPI_Init would abort)
for opt in -h --help -V --version --config-reference; do
  OMPI_MCA_pml=no-such-pml expect_exit 0 "nompi$opt.log" 0 "$opt"
done
expect_in nompi-h.log 'usage: odyssey-dist'
expect_in nompi-h.log 'ODY_CONFIG_DIR'
expect_in nompi-V.log '^odyssey-dist [0-9]+\.[0-9]+'
expect_in nompi--config-reference.log '^\| `experiment.name` '
expect_exit 2 badshort.log 0 -x lenet5/baseline
expect_in badshort.log "unknown option '-x'"
expect_exit 2 novalue.log 0 lenet5/baseline --print-config=yes
expect_in novalue.log "'--print-config=yes' takes no value"
expect_exit 2 needsvalue.log 0 lenet5/baseline --resume
expect_in needsvalue.log '--resume needs a value'
# options anywhere, --opt=value, and -- ends them (the config may come after)
expect_exit 0 anywhere.log 0 training.epochs=3 --print-config lenet5/baseline -- model.dropout=0.5
expect_in anywhere.log '^  epochs: 3$'
expect_in anywhere.log '^  dropout: 0.5$'
expect_exit 4 resume-eq.log 0 lenet5/baseline --resume="$scratch/none.h5" data.name=synthetic
expect_in resume-eq.log "$scratch/none.h5"

note "singleton training on synthetic data"
expect_exit 0 train.log 0 lenet5/baseline data.name=synthetic data.synthetic_train=512 \
  data.synthetic_val=256 training.epochs=1 experiment.output_dir="$scratch/out"
expect_in train.log 'epoch 1/1 done'
[ -s "$scratch/out/lenet5-baseline/metrics.jsonl" ] || fail "no metrics.jsonl"

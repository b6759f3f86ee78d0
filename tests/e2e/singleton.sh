#!/usr/bin/env bash
# The program started directly (an MPI singleton, no mpirun) trains and
# exits 0; --help and --version work; usage errors exit 2.
source "$(dirname "$0")/common.sh"

expect_exit 0 help.log 0 --help
expect_in help.log 'usage: odyssey-dist'
expect_exit 0 version.log 0 --version
expect_in version.log '^odyssey-dist [0-9]+\.[0-9]+'
expect_exit 2 noarg.log 0
expect_in noarg.log 'missing CONFIG'
expect_exit 2 badopt.log 0 --frobnicate x.yaml
expect_in badopt.log "unknown option '--frobnicate'"

note "singleton training on synthetic data"
expect_exit 0 train.log 0 lenet5/baseline data.name=synthetic data.synthetic_train=512 \
  data.synthetic_val=256 training.epochs=1 experiment.output_dir="$scratch/out"
expect_in train.log 'epoch 1/1 done'
[ -s "$scratch/out/lenet5-baseline/metrics.jsonl" ] || fail "no metrics.jsonl"

#!/usr/bin/env bash
# Bad input gets a one-line error naming the file, key, line or rank, and
# the documented exit status, on every rank.
source "$(dirname "$0")/common.sh"

one_error_line() {  # the log has exactly one error line, and it matches
  local n
  n=$(grep -c 'odyssey-dist: ' "$1" || true)
  [ "$n" = 1 ] || { cat "$1" >&2; fail "expected one error line in $1, found $n"; }
  expect_in "$1" "$2"
}

cp "$ODY_SOURCE_DIR/configs/lenet5/baseline.yaml" good.yaml

note "misspelled key"
sed 's/batch_size: 64/batch_sise: 64/' good.yaml >typo.yaml
expect_exit 2 typo.log 2 typo.yaml
one_error_line typo.log "typo.yaml:10:3: unknown key 'batch_sise' in section 'training' \(did you mean 'batch_size'\?\)"

note "wrong type"
sed 's/epochs: 10/epochs: ten/' good.yaml >type.yaml
expect_exit 2 type.log 2 type.yaml
one_error_line type.log "type.yaml:9:11: training.epochs: expected an integer, got 'ten'"

note "negative batch size, in the file and on the command line"
sed 's/batch_size: 64/batch_size: -64/' good.yaml >neg.yaml
expect_exit 2 neg.log 2 neg.yaml
one_error_line neg.log "neg.yaml:10:15: training.batch_size: -64 is out of range"
expect_exit 2 negcli.log 2 good.yaml training.batch_size=-1
one_error_line negcli.log "command line: training.batch_size=-1: -1 is out of range"

note "malformed YAML"
printf 'model:\n  name: [lenet5\n' >broken.yaml
expect_exit 2 broken.log 1 broken.yaml
one_error_line broken.log 'broken.yaml:[0-9]+:[0-9]+: '

note "missing config file"
expect_exit 2 nofile.log 1 nosuch.yaml
one_error_line nofile.log 'nosuch.yaml'

note "missing data file"
mkdir -p partial
cp "$FMNIST"/train-*.gz partial/
expect_exit 3 nodata.log 2 good.yaml data.name=idx data.path="$scratch/partial" \
  data.train_images=train-images-idx3-ubyte data.train_labels=train-labels-idx1-ubyte \
  data.test_images=t10k-images-idx3-ubyte data.test_labels=t10k-labels-idx1-ubyte
one_error_line nodata.log 't10k-images-idx3-ubyte'

note "truncated IDX file"
mkdir -p trunc
cp "$FMNIST"/t10k-*.gz "$FMNIST"/train-labels-idx1-ubyte.gz trunc/
(gzip -dc "$FMNIST/train-images-idx3-ubyte.gz" || true) | head -c 1000000 >trunc/train-images-idx3-ubyte
expect_exit 3 trunc.log 2 good.yaml data.path="$scratch/trunc"
one_error_line trunc.log 'trunc/train-images-idx3-ubyte.*truncated'

note "non-finite loss is a numeric failure (exit 5)"
expect_exit 5 nan.log 2 good.yaml data.name=synthetic data.synthetic_train=2048 \
  optimizer.learning_rate=10 model.init=kaiming_uniform training.epochs=3 experiment.output_dir="$scratch/out"
one_error_line nan.log 'non-finite loss'

note "a run directory that cannot take the metrics log (rank 0 only), trace on: no hang"
mkdir -p "$scratch/blocked/exp/metrics.jsonl"
set +e
# shellcheck disable=SC2086
timeout 60 $ODY_MPIEXEC $ODY_NUMPROC_FLAG 2 "$ODY_PROGRAM" good.yaml data.name=synthetic \
  logging.trace=true experiment.output_dir="$scratch/blocked" experiment.name=exp >blocked.log 2>&1
code=$?
set -e
[ "$code" != 124 ] || fail "hung: rank 0 failed adding a callback, the others waited"
[ "$code" != 0 ] || fail "expected a failure"
expect_in blocked.log 'rank 0: .*metrics.jsonl: cannot open for writing'

#!/usr/bin/env bash
# README.md stays true: its config reference is what the program prints,
# and its two commands are the ones .ci/run and the quick start use.
source "$(dirname "$0")/common.sh"
readme="$ODY_SOURCE_DIR/README.md"
sed -n '/<!-- config-reference:begin -->/,/<!-- config-reference:end -->/p' "$readme" \
  | sed '1d;$d' >readme-ref.md
ody 0 --config-reference >program-ref.md
diff -u readme-ref.md program-ref.md \
  || fail "README config reference is stale: regenerate it from odyssey-dist --config-reference"
grep -q '^\./launch/test\.sh$' "$readme" || fail "README lost its test command"
grep -q '^\./launch/setup\.sh && \./launch/run\.sh -np 2 configs/lenet5/baseline\.yaml$' "$readme" \
  || fail "README lost its run command"
grep -q '\./launch/test\.sh' "$ODY_SOURCE_DIR/.ci/run" || fail ".ci/run does not run the README's test command"

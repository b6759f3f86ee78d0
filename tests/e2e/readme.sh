#!/usr/bin/env bash
# README.md stays true: its config reference is what the program prints,
# and its two commands are the ones .ci/run and the quick start use.
#   ODY_UPDATE_README=1 ctest -R e2e_readme   rewrites the reference instead.
source "$(dirname "$0")/common.sh"
readme="$ODY_SOURCE_DIR/README.md"
if [ "${ODY_UPDATE_README:-}" = 1 ]; then
  ody 0 --config-reference >ref.md
  /usr/bin/python3 - "$readme" ref.md <<'PY'
import sys
readme, ref = sys.argv[1], open(sys.argv[2]).read()
s = open(readme).read()
begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
s = s[:s.index(begin) + len(begin)] + ref + s[s.index(end):]
open(readme, "w").write(s)
PY
fi
sed -n '/<!-- config-reference:begin -->/,/<!-- config-reference:end -->/p' "$readme" \
  | sed '1d;$d' >readme-ref.md
ody 0 --config-reference >program-ref.md
diff -u readme-ref.md program-ref.md \
  || fail "README config reference is stale: ODY_UPDATE_README=1 ctest -R e2e_readme"
grep -q '^\./launch/test\.sh$' "$readme" || fail "README lost its test command"
grep -q '^\./launch/setup\.sh && \./launch/run\.sh -np 2 configs/lenet5/baseline\.yaml$' "$readme" \
  || fail "README lost its run command"
grep -q '\./launch/test\.sh' "$ODY_SOURCE_DIR/.ci/run" || fail ".ci/run does not run the README's test command"

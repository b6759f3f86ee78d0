#!/usr/bin/env bash
# The documentation stays true: configs/README.md's config reference is what
# the program prints, and README.md's two commands are the ones .ci/run and
# the quick start use.
#   ODY_UPDATE_README=1 ctest -R e2e_readme   rewrites the reference instead.
source "$(dirname "$0")/common.sh"
readme="$ODY_SOURCE_DIR/README.md"
reference="$ODY_SOURCE_DIR/configs/README.md"
[ -f "$reference" ] || fail "$reference missing: it holds the config reference"
if [ "${ODY_UPDATE_README:-}" = 1 ]; then
  ody 0 --config-reference >ref.md
  /usr/bin/python3 - "$reference" ref.md <<'PY'
import sys
path, ref = sys.argv[1], open(sys.argv[2]).read()
s = open(path).read()
begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
s = s[:s.index(begin) + len(begin)] + ref + s[s.index(end):]
open(path, "w").write(s)
PY
fi
for marker in begin end; do
  grep -q "^<!-- config-reference:$marker -->\$" "$reference" \
    || fail "configs/README.md lost its <!-- config-reference:$marker --> marker"
done
sed -n '/<!-- config-reference:begin -->/,/<!-- config-reference:end -->/p' "$reference" \
  | sed '1d;$d' >doc-ref.md
ody 0 --config-reference >program-ref.md
diff -u doc-ref.md program-ref.md \
  || fail "configs/README.md's config reference is stale: ODY_UPDATE_README=1 ctest -R e2e_readme"
grep -q 'configs/README\.md' "$readme" || fail "README does not link the config reference (configs/README.md)"
grep -q '^\./launch/test\.sh$' "$readme" || fail "README lost its test command"
grep -q '^\./launch/setup\.sh && odyssey-run -np 2 lenet5/baseline$' "$readme" \
  || fail "README lost its run command"
# The run command uses what setup.sh installs (e2e_install checks the rest).
grep -q 'cmake --install' "$ODY_SOURCE_DIR/launch/setup.sh" || fail "launch/setup.sh no longer installs"
grep -q 'RENAME odyssey-run' "$ODY_SOURCE_DIR/cmake/install.cmake" || fail "odyssey-run is not installed"
grep -q '\./launch/test\.sh' "$ODY_SOURCE_DIR/.ci/run" || fail ".ci/run does not run the README's test command"
lines=$(wc -l <"$readme")
[ "$lines" -le 650 ] || echo "warning: README.md has $lines lines; the user guide is meant to stay near 600 (measurements go to tests/bench/README.md)" >&2

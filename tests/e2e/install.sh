#!/usr/bin/env bash
# The installed tool as a user gets it. `cmake --install` into a staged
# prefix (not the configured one: the programs find the prefix from their
# own location), then, in a fresh directory outside the checkout and with
# only the prefix's bin/ added to PATH:
# - MODEL/NAME configs found in the installed share/odyssey-dist/configs,
#   ./configs first, and a missing one names every place searched;
# - the README's line `mpirun --allow-run-as-root -np 8 --oversubscribe
#   odyssey-dist lenet5/baseline training.epochs=1` trains and writes its
#   run directory there (the ASan build trains on a 6,400-image subset);
# - odyssey-run passes the program's options with no CONFIG (--eval);
# - the out-of-tree callback example builds against the installed library
#   with pkg-config (Makefile) and with find_package (CMakeLists.txt), runs,
#   and its callback sees every step;
# - the man page (when help2man is installed) and the bash completion of
#   options, config keys and values.
source "$(dirname "$0")/common.sh"
# common.sh points ODY_CONFIG_DIR at the checkout; an installed program finds its own.
unset ODY_CONFIG_DIR
sanitized=0
case "$(ldd "$ODY_PROGRAM")" in *libasan*) sanitized=1 ;; esac

prefix="$scratch/prefix"
note "cmake --install into $prefix"
cmake --install "$ODY_BINARY_DIR" --prefix "$prefix" >install.log 2>&1 ||
  { cat install.log >&2; fail "cmake --install failed"; }
pc=$(find "$prefix" -name odyssey-dist.pc)
[ -n "$pc" ] || fail "no odyssey-dist.pc installed"
for file in bin/odyssey-dist bin/odyssey-convert bin/odyssey-run bin/odyssey-sbatch \
            bin/odyssey-scaling share/odyssey-dist/configs/lenet5/baseline.yaml \
            share/odyssey-dist/configs/README.md include/odyssey/train.h \
            share/bash-completion/completions/odyssey-dist \
            share/bash-completion/completions/odyssey-run; do
  [ -e "$prefix/$file" ] || fail "$file not installed"
done
[ -n "$(find "$prefix" -name libodyssey.a)" ] || fail "libodyssey.a not installed"
[ -n "$(find "$prefix" -name odyssey-dist-config.cmake)" ] || fail "no CMake package installed"
if command -v help2man >/dev/null; then
  man="$prefix/share/man/man1/odyssey-dist.1"
  [ -f "$man" ] || fail "help2man is installed but no man page was made"
  grep -q 'resume' "$man" || fail "$man lacks --resume"
  grep -q 'ODY_CONFIG_DIR' "$man" || fail "$man lacks the environment"
else
  echo "help2man not installed: no man page to check"
fi

user="$scratch/user"
mkdir "$user"
case "$(cd "$user" && pwd -P)" in "$(cd "$ODY_SOURCE_DIR" && pwd -P)"/*) fail "$user is inside the checkout" ;; esac
cd "$user"
export PATH="$prefix/bin:$PATH"
[ "$(command -v odyssey-dist)" = "$prefix/bin/odyssey-dist" ] || fail "PATH finds $(command -v odyssey-dist)"

note "config lookup: installed, ./configs first, errors name every directory"
odyssey-dist --print-config lenet5/baseline >print.log 2>&1 || { cat print.log >&2; fail "lenet5/baseline not found"; }
expect_in print.log '^  epochs: 10$'
mkdir -p configs/lenet5
sed 's/^  epochs: 10$/  epochs: 3/' "$prefix/share/odyssey-dist/configs/lenet5/baseline.yaml" >configs/lenet5/baseline.yaml
odyssey-dist --print-config lenet5/baseline >print-local.log 2>&1
expect_in print-local.log '^  epochs: 3$'
rm -r configs
set +e
odyssey-dist lenet5/no-such >missing.log 2>&1
code=$?
set -e
[ "$code" = 2 ] || { cat missing.log >&2; fail "a missing config exited $code, expected 2"; }
expect_in missing.log "no such config file: lenet5/no-such .*\./configs, $(cd "$prefix" && pwd -P)/share/odyssey-dist/configs"

note "the README's command: 8 ranks, oversubscribed, from a fresh directory"
limit=()
[ "$sanitized" = 1 ] && limit=(data.limit_train=6400 data.limit_val=1000)
mpirun --allow-run-as-root -np 8 --oversubscribe odyssey-dist lenet5/baseline training.epochs=1 \
  "${limit[@]}" >train.log 2>&1 || { cat train.log >&2; fail "training on 8 ranks failed"; }
expect_in train.log 'epoch 1/1 done'
run="$user/checkpoints/lenet5-baseline"
for file in config.yaml metrics.jsonl latest.h5; do
  [ -e "$run/$file" ] || fail "no $run/$file"
done
[ "$(json_last "$run/metrics.jsonl" world_size)" = 8 ] || fail "world_size is not 8"
accuracy=$(json_last "$run/metrics.jsonl" val_accuracy)
echo "val_accuracy after one epoch on 8 ranks: $accuracy"
[ "$(echo "$accuracy > 0.6" | bc)" = 1 ] || fail "val_accuracy $accuracy after one epoch"

note "odyssey-run: the installed launcher, program options without a CONFIG"
odyssey-run --dry-run -np 2 --eval "$run/latest.h5" >dry.log
expect_in dry.log " $prefix/bin/odyssey-dist --eval $run/latest.h5"
if grep -q ODY_CONFIG_DIR dry.log; then fail "the installed odyssey-run sets ODY_CONFIG_DIR"; fi
odyssey-run -np 2 --eval "$run/latest.h5" "${limit[@]}" >eval.log 2>&1 ||
  { cat eval.log >&2; fail "odyssey-run --eval failed"; }
expect_in eval.log "^eval $run/latest.h5: loss [0-9.]+ accuracy"
odyssey-sbatch --help >/dev/null || fail "odyssey-sbatch --help"
odyssey-scaling --help >/dev/null || fail "odyssey-scaling --help"

note "the out-of-tree callback example, against the installed library"
cp -r "$ODY_SOURCE_DIR/tests/examples/outoftree" example
export PKG_CONFIG_PATH="$(dirname "$pc")"
make -C example >make.log 2>&1 || { cat make.log >&2; fail "make (pkg-config) failed"; }
cmake -S example -B example-build -DCMAKE_PREFIX_PATH="$prefix" >cmake.log 2>&1 &&
  cmake --build example-build >>cmake.log 2>&1 || { cat cmake.log >&2; fail "find_package build failed"; }
configs=$(pkg-config --variable=configdir odyssey-dist)
for program in example/my_callback example-build/my_callback; do
  ODY_CONFIG_DIR="$configs" mpirun --allow-run-as-root -np 2 --oversubscribe "$program" \
    lenet5/baseline data.name=synthetic data.synthetic_train=640 data.synthetic_val=64 \
    training.max_steps=3 experiment.output_dir="$user/example-runs" >example.log 2>&1 ||
    { cat example.log >&2; fail "$program failed"; }
  expect_in example.log '^my_callback: step 3 lr 0.01 loss [0-9.]+$'
  expect_in example.log '^my_callback: saw 3 steps$'
done

note "bash completion"
cat >complete.sh <<'EOF'
source "$1"
# complete LINE: what the completion offers for LINE (cursor at its end).
complete_line() {
  COMP_LINE="$1" COMP_POINT=${#1}
  read -r -a COMP_WORDS <<<"$1"
  [[ "$1" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _odyssey_dist
  printf '%s\n' "${COMPREPLY[@]}"
}
expect() { complete_line "$1" | grep -qx -- "$2" || { echo "'$1' does not offer '$2': $(complete_line "$1" | tr '\n' ' ')" >&2; exit 1; }; }
expect "odyssey-dist --res" --resume
expect "odyssey-dist lenet5/baseline training.ep" training.epochs=
expect "odyssey-dist lenet5/baseline optimizer.name=ad" adamw
expect "odyssey-dist --resume " auto
expect "odyssey-dist lenet5/ba" lenet5/baseline
expect "odyssey-run -np 2 --ev" --eval
EOF
bash complete.sh "$prefix/share/bash-completion/completions/odyssey-dist" || fail "bash completion"

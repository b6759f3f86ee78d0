#!/usr/bin/env bash
# Install the packages (PyTorch too: the layers are compared with its own),
# build and run the whole test suite (what CI runs; the suite installs into
# a scratch prefix itself, e2e_install).
#
#   launch/test.sh [--sanitize] [ctest arguments ...]
#
# --sanitize builds with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/ and runs the suite there. Extra arguments go to ctest
# (e.g. -L unit, -R config). Exits non-zero when any test fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
setup_args=(--build-only --with-torch)
build_dir="$root/build"
if [ "${1:-}" = "--sanitize" ]; then
  setup_args+=(--sanitize)
  build_dir="$root/build-asan"
  shift
fi
"$root/launch/setup.sh" "${setup_args[@]}"
cd "$build_dir"
ctest --output-on-failure --timeout 900 -j "$(nproc)" "$@"

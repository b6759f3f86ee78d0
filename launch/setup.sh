#!/usr/bin/env bash
# Install what odyssey-dist needs (Debian 12 packages) and build it.
#
#   launch/setup.sh [--sanitize] [--build-dir DIR] [--no-install]
#
# Runs apt-get as root (or through sudo). Builds into build/ (or
# build-asan/ with --sanitize: AddressSanitizer + UndefinedBehaviorSanitizer).
# Warnings are errors. Safe to run again: it only rebuilds what changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=""
sanitize=OFF
install=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=ON ;;
    --build-dir) build_dir="$2"; shift ;;
    --no-install) install=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$build_dir" ] || { [ "$sanitize" = ON ] && build_dir="$root/build-asan" || build_dir="$root/build"; }

packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin
  libopenblas-dev
  libyaml-dev
  libhdf5-openmpi-dev hdf5-tools
  libcmocka-dev
  zlib1g-dev
  libxxhash-dev
  librandom123-dev
  gnuplot-nox
  dataset-fashion-mnist
  python3-h5py python3-numpy
  slurm-wlm munge bc
)

if [ "$install" = 1 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing Debian packages"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

echo "setup: building in $build_dir"
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DODY_WERROR=ON -DODY_SANITIZE="$sanitize" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/odyssey-dist"

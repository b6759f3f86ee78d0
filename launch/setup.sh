#!/usr/bin/env bash
# Install what odyssey-dist needs (Debian 12 packages), build it, and
# install it.
#
#   launch/setup.sh [--sanitize] [--build-dir DIR] [--no-install] [--prefix DIR] [--build-only]
#                   [--with-torch]
#
# Runs apt-get as root (or through sudo; --no-install skips the packages).
# Builds into build/ (or build-asan/ with --sanitize: AddressSanitizer +
# UndefinedBehaviorSanitizer). Warnings are errors. Then installs
# odyssey-dist, its commands (odyssey-run, odyssey-sbatch, odyssey-scaling,
# odyssey-convert), the configs, the library and headers, the man page and
# bash completion into DIR/bin, DIR/share, ... with DIR: --prefix, else
# $PREFIX, else /usr/local (through sudo when not writable). --build-only,
# and --sanitize without a prefix, stop after the build. --with-torch also
# installs PyTorch (python3-torch), which the tests compare the layers with.
# Safe to run again: it only rebuilds what changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=""
sanitize=OFF
install=1
prefix="${PREFIX:-}"
build_only=0
with_torch=0
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=ON ;;
    --build-dir) build_dir="$2"; shift ;;
    --no-install) install=0 ;;
    --prefix) [ $# -ge 2 ] || { echo "setup.sh: --prefix needs a directory" >&2; exit 2; }; prefix="$2"; shift ;;
    --build-only) build_only=1 ;;
    --with-torch) with_torch=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
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
  libdnnl-dev
  librandom123-dev
  gnuplot-nox
  dataset-fashion-mnist
  python3-h5py python3-numpy
  help2man bash-completion
  slurm-wlm munge bc
)
[ "$with_torch" = 1 ] && packages+=(python3-torch)

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

[ "$sanitize" = ON ] && [ -z "$prefix" ] && build_only=1
[ "$build_only" = 1 ] && exit 0
prefix="${prefix:-/usr/local}"
# sudo when the prefix (or the directory it will be made in) is not ours to write.
target="$prefix"
while [ ! -e "$target" ]; do target=$(dirname "$target"); done
as=""
[ -w "$target" ] || as="sudo"
echo "setup: installing into $prefix"
$as cmake --install "$build_dir" --prefix "$prefix" >/dev/null
echo "setup: installed $prefix/bin/odyssey-dist and odyssey-run (mpirun with this machine's settings)"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "setup: $prefix/bin is not on PATH: export PATH=\"$prefix/bin:\$PATH\"" >&2 ;;
esac

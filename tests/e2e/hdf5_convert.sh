#!/usr/bin/env bash
# odyssey-convert turns Fashion-MNIST into the HDF5 layout of data.name:
# hdf5: usage and data errors exit 2 and 3; the layout is checked with
# h5ls and h5dump -H; every image and label is compared with the IDX files
# (h5py, numpy, gzip), for the uint8 and the float32 output; hdf5_memory
# shows a rank reading it holds the labels and small buffers, not the
# images; and, where odyssey-dist is built, one epoch trained from it on 2
# ranks (standardised by the file's pixel_mean and pixel_std, as the IDX
# reader does with the same constants) gives the same parameters, bit for
# bit, as from the IDX files; a file without those attributes (an older
# converter's, or of an unknown data set) is still read, with a warning.
source "$(dirname "$0")/common.sh"

convert="$(dirname "$ODY_PROGRAM")/odyssey-convert"
memory="${ODY_BINARY_DIR:?run through ctest}/tests/bench/hdf5_memory"
[ -x "$convert" ] || fail "$convert is not built"
if [ ! -r "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  echo "skipped: $FMNIST is missing (apt-get install dataset-fashion-mnist)"
  exit 0
fi

# expect_convert CODE LOGFILE ARGS...: run odyssey-convert, check the exit code.
expect_convert() {
  local want="$1" log="$2"; shift 2
  set +e
  "$convert" "$@" >"$log" 2>&1
  local got=$?
  set -e
  [ "$got" = "$want" ] || { cat "$log" >&2; fail "expected exit $want, got $got: odyssey-convert $*"; }
}

note "usage and data errors"
expect_convert 0 help.log --help
expect_in help.log '^usage: odyssey-convert'
expect_convert 2 noarg.log
expect_convert 2 badopt.log --frobnicate "$FMNIST" x.h5
expect_in badopt.log "unknown option '--frobnicate'"
expect_convert 2 badchunk.log --chunk lots "$FMNIST" x.h5
mkdir empty
expect_convert 3 missing.log empty x.h5
expect_in missing.log 'empty/train-images-idx3-ubyte: cannot open'
[ ! -e x.h5 ] && [ ! -e x.h5.tmp ] || fail "a failed conversion left a file"

note "convert (uint8, contiguous; float32 in chunks of 64)"
expect_convert 0 convert.log fashion_mnist fm.h5
expect_convert 0 convert32.log --float32 --chunk 64 "$FMNIST" fm32.h5
[ ! -e fm.h5.tmp ] || fail "fm.h5.tmp left behind"

note "layout"
h5ls -r fm.h5 >ls.log
expect_in ls.log '^/train/images +Dataset \{60000, 1, 28, 28\}$'
expect_in ls.log '^/train/labels +Dataset \{60000\}$'
expect_in ls.log '^/test/images +Dataset \{10000, 1, 28, 28\}$'
expect_in ls.log '^/test/labels +Dataset \{10000\}$'
h5dump -H fm.h5 >header.log
expect_in header.log 'ATTRIBUTE "num_classes"'
[ "$(grep -c 'DATATYPE  H5T_STD_U8LE' header.log)" = 4 ] || { cat header.log; fail "expected 4 uint8 data sets"; }
h5dump -a num_classes fm.h5 >attr.log
expect_in attr.log '\(0\): 10$'
expect_in convert.log 'wrote fm.h5 \(pixel_mean 0.2860, pixel_std 0.3530\)'
expect_in convert32.log 'wrote fm32.h5 \(pixel_mean 0.2860, pixel_std 0.3530\)'
for group in train test; do
  h5dump -a /$group/images/pixel_mean -a /$group/images/pixel_std fm.h5 >stats.log
  expect_in stats.log 'DATATYPE  H5T_IEEE_F32LE'
  expect_in stats.log '\(0\): 0.286$'
  expect_in stats.log '\(0\): 0.353$'
done
h5dump -p -H fm32.h5 >header32.log
expect_in header32.log 'DATATYPE  H5T_IEEE_F32LE'
expect_in header32.log 'CHUNKED \( 64, 1, 28, 28 \)'

note "contents against the IDX files"
py=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c 'import h5py, numpy' 2>/dev/null; then py="$candidate"; break; fi
done
if [ -z "$py" ]; then
  echo "skipped: no python3 with h5py and numpy (apt-get install python3-h5py python3-numpy)"
else
  "$py" - "$FMNIST" fm.h5 fm32.h5 <<'EOF'
import gzip, sys
import h5py, numpy as np

idx_dir, plain, as_float = sys.argv[1:]

def idx(name, header):
    with gzip.open(f"{idx_dir}/{name}.gz", "rb") as f:
        data = f.read()
    return np.frombuffer(data, dtype=np.uint8, offset=header)

with h5py.File(plain, "r") as f, h5py.File(as_float, "r") as g:
    assert f.attrs["num_classes"] == 10
    for group, prefix, n in (("train", "train", 60000), ("test", "t10k", 10000)):
        images = idx(f"{prefix}-images-idx3-ubyte", 16).reshape(n, 1, 28, 28)
        labels = idx(f"{prefix}-labels-idx1-ubyte", 8)
        h_images, h_labels = f[group]["images"], f[group]["labels"]
        assert h_images.dtype == np.uint8 and h_images.shape == (n, 1, 28, 28)
        for i in (0, 1, n // 2, n - 1):  # a few samples alone, then everything
            assert (h_images[i] == images[i]).all() and h_labels[i] == labels[i], (group, i)
        assert (h_images[...] == images).all() and (h_labels[...] == labels).all(), group
        # float32: the IDX reader's own scaling, v * float32(1/255), bit for bit.
        scaled = images.astype(np.float32) * np.float32(1.0 / 255.0)
        assert g[group]["images"].dtype == np.float32
        assert (g[group]["images"][...] == scaled).all(), group
        assert (g[group]["labels"][...] == labels).all(), group
print("contents match the IDX files")
EOF
fi

note "what a rank holds (hdf5_memory)"
if [ -x "$memory" ]; then
  "$memory" fm.h5 200 64 | tee memory.log
  /usr/bin/python3 - memory.log <<'EOF'
import sys
fields = dict(kv.split("=") for kv in open(sys.argv[1]).read().split())
held, images = int(fields["bytes_held"]), int(fields["image_bytes"])
assert images == 60000 * 784, fields
assert held < images // 50, f"bytes_held {held} is not small next to {images} image bytes"
assert int(fields["allocated"]) < held + 4096, fields
print(f"holds {held} bytes for {images} bytes of images")
EOF
else
  echo "skipped: $memory is not built"
fi

if [ -x "$ODY_PROGRAM" ]; then
  note "train one epoch from the HDF5 files (2 ranks), standardised by default"
  expect_exit 0 train.log 2 lenet5/baseline data.name=hdf5 data.path="$scratch/fm.h5" \
    training.epochs=1 data.limit_train=2000 experiment.output_dir="$scratch/out"
  expect_exit 0 train32.log 2 lenet5/baseline data.name=hdf5 data.path="$scratch/fm32.h5" \
    training.epochs=1 data.limit_train=2000 experiment.output_dir="$scratch/out32"
  ! grep -q 'not standardised' train.log train32.log || fail "a converted file read unstandardised"
  note "the same run from the IDX files gives the same parameters, bit for bit"
  expect_exit 0 train-idx.log 2 lenet5/baseline training.epochs=1 data.limit_train=2000 \
    experiment.output_dir="$scratch/out-idx"
  idx_sha=$(params_sha256 "$scratch/out-idx/lenet5-baseline/latest.h5")
  for out in out out32; do
    sha=$(params_sha256 "$scratch/$out/lenet5-baseline/latest.h5")
    [ "$sha" = "$idx_sha" ] || fail "parameters from HDF5 ($out) $sha, from IDX $idx_sha"
  done
  for key in train_loss train_accuracy val_loss val_accuracy; do
    h5=$(json_last "$scratch/out/lenet5-baseline/metrics.jsonl" "$key")
    idx=$(json_last "$scratch/out-idx/lenet5-baseline/metrics.jsonl" "$key")
    [ "$h5" = "$idx" ] || fail "$key: $h5 from HDF5 but $idx from IDX"
  done
  note "a file without pixel_mean and pixel_std is read unstandardised, with a warning"
  mkdir cut
  fmnist_cut cut 300 100
  expect_convert 0 convert-cut.log cut cut.h5
  expect_in convert-cut.log 'no pixel_mean and pixel_std'
  h5dump -H cut.h5 >header-cut.log
  ! grep -q pixel_mean header-cut.log || fail "cut.h5 has pixel_mean"
  expect_exit 0 train-cut.log 2 lenet5/baseline data.name=hdf5 data.path="$scratch/cut.h5" \
    training.epochs=1 experiment.output_dir="$scratch/out-cut"
  expect_in train-cut.log "cut.h5:/train/images: no pixel_mean and pixel_std attributes .*not standardised"
  expect_exit 0 train-cut-given.log 2 lenet5/baseline data.name=hdf5 \
    data.path="$scratch/cut.h5" data.mean=0.2860 data.std=0.3530 training.epochs=1 \
    experiment.output_dir="$scratch/out-cut-given"
  ! grep -q 'not standardised' train-cut-given.log || fail "warned although data.std was given"
  printf 'not HDF5\n' >text.h5
  expect_exit 3 bad.log 2 lenet5/baseline data.name=hdf5 data.path="$scratch/text.h5" \
    training.epochs=1 experiment.output_dir="$scratch/out-bad"
  expect_in bad.log 'text.h5: not an HDF5 file'
else
  echo "skipped: training from the file ($ODY_PROGRAM is not built)"
fi
echo "PASS"

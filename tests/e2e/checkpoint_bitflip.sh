#!/usr/bin/env bash
# Damage to a real checkpoint is a checkpoint error, never anything else.
# A short LeNet-5 run writes one; then, each in a copy of it:
# - one random bit flipped in every dataset (tensors, and the series'
#   chunks), found with h5py: --resume PATH exits 4 naming that dataset;
# - random bytes flipped anywhere in the file: --eval PATH exits 4 naming
#   the file, or 0 where it reads nothing the byte belongs to (optimizer
#   state, padding, free space; then a flip inside a dataset is still
#   reported by --resume PATH); never 2 (a corrupt stored config read as a
#   config error), never a crash.
# ODY_BITFLIP_SEED and ODY_BITFLIP_BYTES choose other flips (default 19, 40).
source "$(dirname "$0")/common.sh"
seed=${ODY_BITFLIP_SEED:-19}
nbytes=${ODY_BITFLIP_BYTES:-40}
args=(lenet5/baseline data.name=synthetic data.synthetic_train=240 data.synthetic_val=60
      training.epochs=1 training.batch_size=60 logging.plot=false)

note "a one-epoch run (4 steps, singleton) writes the checkpoint"
expect_exit 0 train.log 0 "${args[@]}" experiment.output_dir="$scratch/out"
ckpt=$(readlink -f "$scratch/out/lenet5-baseline/latest.h5")
[ -f "$ckpt" ] || fail "no checkpoint written"
note "it resumes (and has nothing left to train) and evaluates as it is"
expect_exit 0 clean-resume.log 0 "${args[@]}" experiment.output_dir="$scratch/clean" --resume "$ckpt"
expect_exit 0 clean-eval.log 0 --eval "$ckpt"

note "the damaged copies (seed $seed)"
mkdir flips
/usr/bin/python3 - "$ckpt" flips "$seed" "$nbytes" >flips/manifest <<'PY'
import os, random, shutil, sys, h5py
src, out, seed, nbytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
size = os.path.getsize(src)
spans = []  # (dataset, first byte, bytes): its data (a series: its one chunk)
with h5py.File(src, "r") as f:
    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        at = obj.id.get_offset()
        length = obj.id.get_storage_size()
        if at is None:
            assert obj.id.get_num_chunks() == 1, name
            info = obj.id.get_chunk_info(0)
            at, length = info.byte_offset, info.size
        spans.append((name, at, length))
    f.visititems(visit)
assert sum(n.startswith("model/") for n, _, _ in spans) == 10, spans
assert sum(n.startswith("optimizer/") for n, _, _ in spans) == 10, spans
data = open(src, "rb").read()
def flipped(path, offset, mask):
    copy = bytearray(data)
    copy[offset] ^= mask
    with open(path, "wb") as g:
        g.write(copy)
for i, (name, at, length) in enumerate(spans):
    bit = rng.randrange(8 * length)
    flipped(f"{out}/bit{i}.h5", at + bit // 8, 1 << (bit % 8))
    print(f"bit {out}/bit{i}.h5 {name} {at + bit // 8}")
for i in range(nbytes):
    offset = rng.randrange(size)
    flipped(f"{out}/byte{i}.h5", offset, rng.randrange(1, 256))
    inside = [n for n, at, length in spans if at <= offset < at + length]
    print(f"byte {out}/byte{i}.h5 {inside[0] if inside else '-'} {offset}")
PY
[ "$(grep -c '^bit ' flips/manifest)" -ge 20 ] || fail "too few datasets found"

note "one flipped bit in each dataset: --resume PATH exits 4 naming it"
while read -r kind file name offset; do
  [ "$kind" = bit ] || continue
  expect_exit 4 "$file.log" 0 "${args[@]}" experiment.output_dir="$scratch/r" --resume "$file"
  expect_in "$file.log" "$file: $name: checksum mismatch \(corrupt data\)"
  echo "  $name (byte $offset): exit 4, named"
done <flips/manifest

note "$nbytes flipped bytes anywhere: --eval PATH exits 4 (naming the file) or 0"
found=0 unread=0
while read -r kind file name offset; do
  [ "$kind" = byte ] || continue
  set +e
  timeout -k 5 60 "$ODY_PROGRAM" --eval "$file" >"$file.log" 2>&1
  code=$?
  set -e
  case "$code" in
    4) expect_in "$file.log" "$file"; found=$((found + 1))
       echo "  byte $offset: exit 4: $(grep -m1 -o "$file: .*" "$file.log")" ;;
    0) unread=$((unread + 1))
       case "$name" in
         -) echo "  byte $offset: exit 0 (in no dataset: metadata --eval does not read, or unused)" ;;
         model/*) cat "$file.log" >&2; fail "byte $offset, in $name, flipped: --eval exited 0" ;;
         *) expect_exit 4 "$file.resume.log" 0 "${args[@]}" experiment.output_dir="$scratch/r" \
              --resume "$file"
            expect_in "$file.resume.log" "$file: $name: checksum mismatch \(corrupt data\)"
            echo "  byte $offset: exit 0 (in $name, which --eval does not read; --resume: exit 4)" ;;
       esac ;;
    *) cat "$file.log" >&2; fail "byte $offset of the checkpoint flipped: --eval exited $code" ;;
  esac
done <flips/manifest
echo "flipped bytes: $found reported by --eval (exit 4), $unread where --eval reads nothing damaged"
[ "$found" -gt 0 ] || fail "no flipped byte was reported"

#!/usr/bin/env bash
# Training features end to end: EarlyStopping stops a plateaued run at the
# right epoch; bf16 gradients halve the bytes sent and keep the accuracy;
# the non-finite policy skips; augmentation and label smoothing give the
# same bits at any rank count and across a resume; the live progress line;
# the plot; every shipped config trains a few steps.
source "$(dirname "$0")/common.sh"
syn=(data.name=synthetic data.synthetic_train=1200 data.synthetic_val=400 training.batch_size=60)

note "EarlyStopping: a plateau (lr 1e-9) stops after epoch 1 + patience 2 = 3"
expect_exit 0 es.log 2 lenet5/baseline "${syn[@]}" training.epochs=10 optimizer.learning_rate=1e-9 \
  early_stopping.enabled=true early_stopping.monitor=val_loss early_stopping.patience=2 \
  early_stopping.min_delta=0.001 experiment.output_dir="$scratch/es"
expect_in es.log 'early stopping after epoch 3: val_loss has not improved'
run="$scratch/es/lenet5-baseline"
[ "$(wc -l <"$run/metrics.jsonl")" = 3 ] || fail "expected 3 epochs in metrics.jsonl"
/usr/bin/python3 -c "
import h5py, sys
f = h5py.File('$run/latest.h5', 'r')
assert f['state'].attrs['epoch'] == 3, f['state'].attrs['epoch']   # saved after epoch 3
assert list(f['callbacks/early_stopping'][()])[1] == 2              # wait = patience
"

note "bf16 gradients: half the bytes of fp32, accuracy within 0.5 points (Fashion-MNIST)"
fm=(training.epochs=2 data.limit_train=30000 logging.plot=false distributed.deterministic=false)
expect_exit 0 fp32.log 2 lenet5/baseline "${fm[@]}" experiment.output_dir="$scratch/fp32"
expect_exit 0 bf16.log 2 lenet5/baseline "${fm[@]}" training.use_mixed_precision=true \
  training.precision_dtype=bf16 experiment.output_dir="$scratch/bf16"
/usr/bin/python3 - "$scratch/fp32/lenet5-baseline/metrics.jsonl" "$scratch/bf16/lenet5-baseline/metrics.jsonl" <<'PY'
import json, sys
a = json.loads(open(sys.argv[1]).read().splitlines()[-1])
b = json.loads(open(sys.argv[2]).read().splitlines()[-1])
print(f"comm bytes fp32 {a['comm_bytes']} bf16 {b['comm_bytes']}; "
      f"val_accuracy fp32 {a['val_accuracy']:.4f} bf16 {b['val_accuracy']:.4f}")
assert b["comm_bytes"] * 2 == a["comm_bytes"], "bf16 must send exactly half the bytes"
assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 0.005
PY

note "fp16 with dynamic loss scaling trains and logs its scale"
expect_exit 0 fp16.log 2 lenet5/baseline "${syn[@]}" training.epochs=1 \
  training.use_mixed_precision=true distributed.deterministic=false training.precision_dtype=fp16 experiment.output_dir="$scratch/fp16"
[ "$(json_last "$scratch/fp16/lenet5-baseline/metrics.jsonl" loss_scale)" = 65536 ] \
  || fail "loss_scale missing or changed"

note "on_nonfinite: skip keeps going, counting the skipped steps; stop exits 5"
expect_exit 0 skip.log 1 lenet5/baseline "${syn[@]}" training.epochs=1 optimizer.learning_rate=10 \
  model.init=kaiming_uniform training.on_nonfinite=skip experiment.output_dir="$scratch/skip"
skipped=$(json_last "$scratch/skip/lenet5-baseline/metrics.jsonl" skipped_steps)
[ "$skipped" -gt 0 ] || fail "expected skipped steps, got $skipped"
expect_in skip.log "skipped $skipped step"

note "augmentation + label smoothing: 1 rank = 2 ranks with a loader thread = stopped on 2 mid-epoch, resumed on 1"
aug=(lenet5/baseline "${syn[@]}" training.epochs=2 logging.plot=false data.crop_padding=4
     data.horizontal_flip=true data.random_erasing=0.5 training.label_smoothing=0.1)
aug_sha() { params_sha256 "$scratch/$1/lenet5-baseline/latest.h5"; }
expect_exit 0 aug1.log 1 "${aug[@]}" experiment.output_dir="$scratch/aug1"
expect_in aug1.log 'training augmentation: random crop from 4 pixels of padding, horizontal flip on, random erasing with probability 0.5; label smoothing 0.1'
expect_exit 0 aug2.log 2 "${aug[@]}" data.prefetch=true experiment.output_dir="$scratch/aug2"
stop_at 27 augstop.log 2 "${aug[@]}" experiment.output_dir="$scratch/augstop"
expect_exit 0 augresume.log 1 "${aug[@]}" experiment.output_dir="$scratch/augstop" --resume auto
expect_exit 0 noerase.log 1 "${aug[@]}" data.random_erasing=0 experiment.output_dir="$scratch/noerase"
expect_exit 0 smooth.log 1 "${aug[@]}" data.crop_padding=0 data.horizontal_flip=false \
  data.random_erasing=0 experiment.output_dir="$scratch/smooth"
expect_exit 0 plain.log 1 "${aug[@]}" data.crop_padding=0 data.horizontal_flip=false \
  data.random_erasing=0 training.label_smoothing=0 experiment.output_dir="$scratch/plain"
sha=$(aug_sha aug1)
echo "augmented, smoothed: sha256 $sha"
[ "$(aug_sha aug2)" = "$sha" ] || fail "augmented runs differ between 1 and 2 ranks"
[ "$(aug_sha augstop)" = "$sha" ] || fail "the augmented run stopped and resumed differs"
[ "$(aug_sha noerase)" != "$sha" ] || fail "random erasing changed nothing"
[ "$(aug_sha smooth)" != "$(aug_sha noerase)" ] || fail "crops and flips changed nothing"
[ "$(aug_sha plain)" != "$(aug_sha smooth)" ] || fail "label smoothing changed nothing"

note "the live progress line (forced on: no terminal here)"
expect_exit 0 live.log 1 lenet5/baseline "${syn[@]}" training.epochs=1 logging.progress=always \
  experiment.output_dir="$scratch/live"
grep -q $'\r''epoch 1/1 step [0-9]*/20 | loss [0-9.]* acc [0-9.]*% | [0-9]* img/s | lr 0.01 | ETA' live.log \
  || { cat -A live.log | head -20; fail "no live progress line"; }

note "the plot is a PNG"
png="$scratch/live/lenet5-baseline/metrics.png"
[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png is not a PNG"

note "a run name with a quote and a newline plots too (gnuplot gets the paths as arguments)"
odd_name=$'it\'s a_b\nline 2'
expect_exit 0 odd.log 1 lenet5/baseline "${syn[@]}" training.epochs=2 \
  $'experiment.name="it\'s a_b\\nline 2"' experiment.output_dir="$scratch/odd"
expect_in odd.log 'plot of loss and accuracy: '
/usr/bin/python3 - "$scratch/odd" "$odd_name" <<'PY'
import os, sys
out, name = sys.argv[1], sys.argv[2]
assert os.listdir(out) == [name], f"expected only {name!r} in {out}: {os.listdir(out)}"
with open(os.path.join(out, name, "metrics.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n", "metrics.png is not a PNG"
PY

note "every shipped config resolves and trains a few steps"
for cfg in "$ODY_SOURCE_DIR"/configs/*/*.yaml; do
  name=$(basename "$(dirname "$cfg")")-$(basename "$cfg" .yaml)
  expect_exit 0 "$name.log" 2 "$cfg" training.epochs=1 training.max_steps=6 data.limit_val=500 \
    logging.plot=false experiment.output_dir="$scratch/configs"
  expect_in "$name.log" 'epoch 1/1 done'
done

#!/usr/bin/env bash
# The kernel backends (model.backend) and bf16 compute, end to end:
# --version names what oneDNN runs on; the onednn and openblas backends
# train a conv net to the same losses (to rounding); bf16 compute runs
# where the CPU has native bf16 and stops with exit 2, saying why, where
# oneDNN sees none (ONEDNN_MAX_CPU_ISA caps what oneDNN uses, as an older
# CPU would); a oneDNN capped at SSE4.1 still trains, on the kernels it has.
source "$(dirname "$0")/common.sh"
"$ODY_PROGRAM" --version >version.txt
cat version.txt
grep -q '^kernels: oneDNN [0-9.]* on ' version.txt || fail "--version does not name oneDNN's ISA"
grep -q '^bf16 compute: ' version.txt || fail "--version does not say whether bf16 compute is native"

# A small conv net (3x3 convolutions with relus and a pool) on a few steps of synthetic data.
net=("$ODY_SOURCE_DIR/configs/vgg/plain.yaml" data.name=synthetic data.synthetic_train=512 data.synthetic_val=128
     training.epochs=1 training.batch_size=32 logging.plot=false)

note "onednn and openblas: the same training to rounding"
expect_exit 0 onednn.log 1 "${net[@]}" experiment.output_dir="$scratch/onednn"
expect_exit 0 openblas.log 1 "${net[@]}" model.backend=openblas experiment.output_dir="$scratch/openblas"
expect_in onednn.log 'conv2 .*onednn jit.* \+ relu'
expect_in openblas.log 'conv2 .*(direct|gemm)'
/usr/bin/python3 - "$scratch/onednn/vgg-plain/metrics.jsonl" "$scratch/openblas/vgg-plain/metrics.jsonl" <<'PY'
import json, sys
a, b = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:])
for k in ("train_loss", "val_loss"):
    rel = abs(a[k] - b[k]) / abs(b[k])
    print(f"{k}: onednn {a[k]:.6f} openblas {b[k]:.6f} (relative difference {rel:.1e})")
    assert rel < 1e-3, k
PY

note "bf16 compute where oneDNN sees no native bf16: exit 2 with the reason"
ONEDNN_MAX_CPU_ISA=AVX512_CORE expect_exit 2 nobf16.log 1 "${net[@]}" training.use_mixed_precision=true \
  experiment.output_dir="$scratch/nobf16"
expect_in nobf16.log 'bf16 compute needs a CPU with native bf16 arithmetic'
expect_exit 2 blasbf16.log 1 "${net[@]}" training.use_mixed_precision=true model.backend=openblas \
  experiment.output_dir="$scratch/blasbf16"
expect_in blasbf16.log 'needs model.backend: onednn'

if grep -q '^bf16 compute: yes' version.txt; then
  note "bf16 compute: trains, every conv on oneDNN in bf16, losses near fp32's"
  expect_exit 0 bf16.log 1 "${net[@]}" training.use_mixed_precision=true experiment.output_dir="$scratch/bf16"
  expect_in bf16.log 'conv1 .*onednn .* bf16'
  /usr/bin/python3 - "$scratch/onednn/vgg-plain/metrics.jsonl" "$scratch/bf16/vgg-plain/metrics.jsonl" <<'PY'
import json, sys
a, b = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:])
rel = abs(a["train_loss"] - b["train_loss"]) / a["train_loss"]
print(f"train_loss fp32 {a['train_loss']:.5f} bf16 {b['train_loss']:.5f} ({rel:.1e})")
assert rel < 0.05
PY
else
  note "bf16 compute: not native on this CPU, only the refusal is tested"
fi

note "oneDNN capped at SSE4.1 (a CPU without AVX): still trains, on the kernels oneDNN has"
ONEDNN_MAX_CPU_ISA=SSE41 expect_exit 0 sse41.log 1 "${net[@]}" training.max_steps=3 \
  experiment.output_dir="$scratch/sse41"
expect_in sse41.log 'conv2 .*onednn'
echo "PASS"

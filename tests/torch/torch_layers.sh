#!/bin/bash
# torch_layers.sh CHECKER: the layers against PyTorch's (issue 22).
# torch_layers.py writes each case's inputs, parameters, upstream gradient
# and PyTorch's results into a scratch directory; CHECKER (torch_layers.c,
# built against the library) runs our layers on them and compares, on the
# best kernels this CPU has, then on AVX2 and on the portable C loops
# (ODY_CPU_ISA; a level above this CPU's runs its best). Exit 77 (skipped)
# where /usr/bin/python3 (or $ODY_TORCH_PYTHON) cannot import torch.
set -u
checker="${1:?usage: torch_layers.sh CHECKER}"
here="$(cd "$(dirname "$0")" && pwd)"
py="${ODY_TORCH_PYTHON:-/usr/bin/python3}"
if ! [ -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
  echo "torch_layers: SKIPPED: $py cannot import torch (install python3-torch to compare the layers with PyTorch)"
  exit 77
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/ody_torch_layers_XXXXXX")" || exit 1
trap 'rm -rf "$work"' EXIT
echo "torch_layers: PyTorch $("$py" -c 'import torch; print(torch.__version__)') ($py)"
"$py" "$here/torch_layers.py" "$work" || { echo "torch_layers: torch_layers.py failed" >&2; exit 1; }
rc=0
for isa in "" avx2 portable; do
  ODY_CPU_ISA="$isa" "$checker" "$work" || rc=1
done
exit "$rc"

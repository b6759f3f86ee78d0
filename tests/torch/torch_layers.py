#!/usr/bin/python3
"""PyTorch's side of the layer comparison (tests/torch/torch_layers.c).

  torch_layers.py OUTDIR

For every case: random inputs, parameters and an upstream gradient, PyTorch's
layer forward (train mode) and backward on them, and what the layer gave.
OUTDIR receives manifest.txt, a line per case,

  case NAME kind=KIND data=PREFIX n=N in=D0xD1xD2 backend=onednn|openblas [arg.KEY=VALUE ...]

(arguments by their key in odyssey's layer table; the C side puts them in
place), and PREFIX.ARRAY.f32 files: float32, little-endian, no header.
Arrays: x (N, in), dy (N, out), p0.. (parameters, and batchnorm's buffers,
in odyssey's order), y (N, out), dx (N, in), g0.. (trainable parameters'
gradients); batchnorm also r2, r3 (running mean and variance after one
update, momentum as given) and y_eval (eval mode on x, with those updated
statistics). Cases of one data PREFIX share their arrays: the conv2d
shapes run on every backend and algorithm.

Deterministic (fixed seed) and on one thread; OPENBLAS_CORETYPE and the
rest of the environment are left as they are."""
import os
import sys

import torch
import torch.nn as nn

CONV_VARIANTS = [("onednn", 1), ("onednn", 2), ("onednn", 3), ("openblas", 1), ("openblas", 2)]
ALGORITHM_NAMES = {1: "direct", 2: "gemm", 3: "onednn"}


class Writer:
    def __init__(self, outdir):
        self.outdir = outdir
        self.lines = []
        self.gen = torch.Generator().manual_seed(20261207)

    def randn(self, *shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=self.gen) * scale + shift

    def uniform(self, *shape, lo=-1.0, hi=1.0):
        return torch.rand(*shape, generator=self.gen) * (hi - lo) + lo

    def array(self, prefix, name, t):
        t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(
            os.path.join(self.outdir, f"{prefix}.{name}.f32"))

    def case(self, name, kind, prefix, n, in_shape, backend="onednn", **args):
        fields = [f"case {name}", f"kind={kind}", f"data={prefix}", f"n={n}",
                  "in=" + "x".join(str(d) for d in in_shape), f"backend={backend}"]
        fields += [f"arg.{k}={v}" for k, v in args.items()]
        self.lines.append(" ".join(fields))

    def run(self, prefix, module, x, params, train=True):
        """Forward and backward of module on x with a random upstream gradient; writes every array."""
        x = x.clone().requires_grad_(True)
        module.train(train)
        y = module(x)
        dy = self.randn(*y.shape)
        y.backward(dy)
        self.array(prefix, "x", x)
        self.array(prefix, "dy", dy)
        self.array(prefix, "y", y)
        self.array(prefix, "dx", x.grad)
        for i, p in enumerate(params):
            self.array(prefix, f"g{i}", p.grad)

    def finish(self):
        with open(os.path.join(self.outdir, "manifest.txt"), "w") as f:
            f.write("\n".join(self.lines) + "\n")


def conv2d(w, tag, n, c, h, oc, k, stride, pad):
    prefix = f"conv2d_{tag}"
    m = nn.Conv2d(c, oc, k, stride=stride, padding=pad)
    with torch.no_grad():
        m.weight.copy_(w.uniform(oc, c, k, k, lo=-0.5, hi=0.5))
        m.bias.copy_(w.uniform(oc, lo=-0.5, hi=0.5))
    w.array(prefix, "p0", m.weight)
    w.array(prefix, "p1", m.bias)
    w.run(prefix, m, w.randn(n, c, h, h), [m.weight, m.bias])
    for backend, algorithm in CONV_VARIANTS:
        w.case(f"{prefix}/{backend}/{ALGORITHM_NAMES[algorithm]}", "conv2d", prefix, n, (c, h, h), backend,
               out_channels=oc, kernel_size=k, stride=stride, padding=pad, algorithm=algorithm)


def linear(w, tag, n, in_shape, out):
    prefix = f"linear_{tag}"
    fan_in = 1
    for d in in_shape:
        fan_in *= d
    m = nn.Sequential(nn.Flatten(), nn.Linear(fan_in, out))
    fc = m[1]
    with torch.no_grad():
        fc.weight.copy_(w.uniform(out, fan_in, lo=-0.3, hi=0.3))
        fc.bias.copy_(w.uniform(out, lo=-0.3, hi=0.3))
    w.array(prefix, "p0", fc.weight)
    w.array(prefix, "p1", fc.bias)
    w.run(prefix, m, w.randn(n, *in_shape), [fc.weight, fc.bias])
    for backend in ("onednn", "openblas"):
        w.case(f"{prefix}/{backend}", "linear", prefix, n, in_shape, backend, out_features=out)


def pool(w, kind, tag, n, c, h, k, stride, pad):
    prefix = f"{kind}_{tag}"
    s = stride or k
    m = (nn.MaxPool2d(k, s, pad) if kind == "maxpool2d" else nn.AvgPool2d(k, s, pad, count_include_pad=True))
    w.run(prefix, m, w.randn(n, c, h, h), [])
    w.case(prefix, kind, prefix, n, (c, h, h), kernel_size=k, stride=stride, padding=pad)


def activation(w, kind, tag, n, in_shape):
    prefix = f"{kind}_{tag}"
    m = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}[kind]
    w.run(prefix, m, w.randn(n, *in_shape, scale=2.0), [])
    w.case(prefix, kind, prefix, n, in_shape)


def global_avgpool(w, tag, n, c, h):
    prefix = f"global_avgpool_{tag}"
    m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    w.run(prefix, m, w.randn(n, c, h, h), [])
    w.case(prefix, "global_avgpool", prefix, n, (c, h, h))


def batchnorm(w, tag, n, in_shape, momentum=0.1, eps=1e-5):
    """Train-mode forward and backward, the running statistics after one
    update, then eval mode on the same input with those statistics."""
    prefix = f"batchnorm_{tag}"
    c = in_shape[0]
    m = (nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d)(c, eps=eps, momentum=momentum)
    with torch.no_grad():
        m.weight.copy_(w.uniform(c, lo=0.5, hi=1.5))
        m.bias.copy_(w.uniform(c, lo=-0.5, hi=0.5))
        m.running_mean.copy_(w.uniform(c, lo=-1.0, hi=1.0))
        m.running_var.copy_(w.uniform(c, lo=0.5, hi=2.0))
    for i, t in enumerate((m.weight, m.bias, m.running_mean, m.running_var)):
        w.array(prefix, f"p{i}", t)
    # Channels of their own mean and scale, so that the statistics matter.
    shape = (1, c) + (1,) * (len(in_shape) - 1)
    x = w.randn(n, *in_shape) * w.uniform(*shape, lo=0.5, hi=3.0) + w.uniform(*shape, lo=-2.0, hi=2.0)
    w.run(prefix, m, x, [m.weight, m.bias])
    w.array(prefix, "r2", m.running_mean)
    w.array(prefix, "r3", m.running_var)
    m.eval()
    with torch.no_grad():
        w.array(prefix, "y_eval", m(x))
    w.case(prefix, "batchnorm", prefix, n, in_shape, momentum=momentum, eps=eps)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torch_layers.py OUTDIR")
    torch.set_num_threads(1)
    w = Writer(sys.argv[1])
    # conv2d: tag, n, C, H(=W), OC, k, stride, pad
    conv2d(w, "3x3_p1", 4, 3, 9, 8, 3, 1, 1)
    conv2d(w, "3x3_s2_p1", 3, 4, 10, 6, 3, 2, 1)
    conv2d(w, "3x3_s2_p1_odd", 2, 5, 9, 4, 3, 2, 1)
    conv2d(w, "1x1", 4, 8, 7, 16, 1, 1, 0)
    conv2d(w, "1x1_s2", 3, 8, 8, 16, 1, 2, 0)
    conv2d(w, "5x5_p2", 2, 2, 12, 5, 5, 1, 2)
    conv2d(w, "5x5_valid", 2, 3, 11, 6, 5, 1, 0)
    conv2d(w, "3x3_c16", 4, 16, 14, 32, 3, 1, 1)
    linear(w, "vector", 5, (20,), 7)
    linear(w, "image", 3, (3, 4, 4), 10)
    for kind in ("maxpool2d", "avgpool2d"):
        pool(w, kind, "2x2", 3, 3, 8, 2, 0, 0)
        pool(w, kind, "3x3_s2_p1", 3, 2, 9, 3, 2, 1)
        pool(w, kind, "3x3_s1", 2, 4, 7, 3, 1, 0)
    for kind in ("relu", "tanh", "sigmoid"):
        activation(w, kind, "chw", 4, (3, 5, 5))
        activation(w, kind, "vector", 3, (17,))
    global_avgpool(w, "5x6", 3, 5, 6)
    global_avgpool(w, "16x7", 2, 16, 7)
    batchnorm(w, "chw", 8, (6, 5, 5))
    batchnorm(w, "chw_wide", 4, (16, 14, 14))
    batchnorm(w, "features", 16, (12,))
    batchnorm(w, "features_m03_eps1e-3", 5, (9,), momentum=0.3, eps=1e-3)
    w.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch references for bench_config (issue 21): the same networks,
batch, optimizer and thread count as the configs the bench scripts run,
trained on Fashion-MNIST held in memory as float32 tensors.

  --net lenet5  LeNet-5 (ReLU, 2x2 max pool) with SGD (lr 0.01, momentum
                0.9, weight decay 1e-4): configs/lenet5/baseline.yaml
  --net vgg     conv 32, conv 32, pool, conv 64, conv 64, pool (3x3, pad 1,
                ReLU), linear 256, ReLU, linear 10, with AdamW (lr 1e-3,
                weight decay 0.05): configs/vgg/plain.yaml
  --net vgg_bn  the same with BatchNorm after every conv and after linear
                256 (before each ReLU), SGD (lr 0.05, momentum 0.9, weight
                decay 5e-4) and cross-entropy with label smoothing 0.1
                (issue 22)
  --net resnet20  ResNet-20 for 1x28x28: a 16-channel stem, three stages of
                three basic blocks (16, 32, 64 channels, stride 2 into
                stages 2 and 3, a 1x1 conv + BatchNorm shortcut where the
                shape changes), global average pooling, linear 10; SGD (lr
                0.1, momentum 0.9, weight decay 5e-4), label smoothing 0.1
                (issue 22)
Every conv keeps its bias (odyssey's conv2d always has one), also before a
BatchNorm; weight decay applies to every parameter, as SGD's does.

Usage: torch_nets.py --net lenet5|vgg|vgg_bn|resnet20 [--steps N] [--warmup W] [--batch B]
                     [--threads T] [--dtype fp32|bf16] [--synthetic]
--dtype bf16 runs forward and loss under torch.autocast('cpu',
dtype=torch.bfloat16) (master weights and the optimizer stay float32).
Prints the network's FLOPs per image (conv and linear multiply-adds x2,
counted by hooks; backward = 2x forward but the first layer's input
gradient, which autograd does not compute; BatchNorm, pooling and the
residual adds are not counted), then
  RESULT torch_nets net=NET dtype=DTYPE images_per_sec=X ...
for the N steps after W warm-up steps (loader-free: a batch is an index
into the tensors). With WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT in
the environment it runs under DistributedDataParallel (gloo), every
process with its own batch of B; rank 0 prints the global images/s."""
import argparse
import gzip
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = struct.unpack(">I", raw[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.features(x).flatten(1))))


def conv_bn(cin, cout, stride=1):
    """3x3 conv (with its bias) + BatchNorm2d + ReLU."""
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


class VGGBN(nn.Module):
    """The VGG-style net with BatchNorm before every hidden ReLU (issue 22)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(1, 32), *conv_bn(32, 32), nn.MaxPool2d(2),
            *conv_bn(32, 64), *conv_bn(64, 64), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Linear(64 * 7 * 7, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """conv3x3(stride)+BN+ReLU, conv3x3+BN, plus the shortcut, then ReLU. The
    shortcut is the identity, or a strided 1x1 conv + BN where the shape
    changes (option B)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR-style ResNet-20 for 1x28x28: 28x28x16 -> 14x14x32 -> 7x7x64."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, 16))
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(3):
                blocks.append(BasicBlock(cin, cout, stride if b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def sgd(lr, weight_decay):
    return lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=weight_decay)


# name: (network class, optimizer factory, label smoothing of the cross-entropy)
NETS = {
    "lenet5": (LeNet5, sgd(0.01, 1e-4), 0.0),
    "vgg": (VGG, lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05), 0.0),
    "vgg_bn": (VGGBN, sgd(0.05, 5e-4), 0.1),
    "resnet20": (ResNet20, sgd(0.1, 5e-4), 0.1),
}


def flops_per_image(model):
    """Forward and backward FLOPs of one image, from the conv and linear layers' multiply-adds."""
    macs = []

    def hook(mod, inp, out):
        per_out = mod.weight[0].numel()  # in_channels/groups * kh * kw, or in_features
        macs.append(out[0].numel() * per_out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # Eval mode: BatchNorm1d cannot train on one row, and the running statistics stay untouched.
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train(was_training)
    for h in handles:
        h.remove()
    fwd = 2 * sum(macs)
    return fwd, 2 * fwd - 2 * macs[0]


def load(synthetic):
    if synthetic or not os.path.exists(f"{DATA}/train-images-idx3-ubyte.gz"):
        g = torch.Generator().manual_seed(0)
        return torch.rand(60000, 1, 28, 28, generator=g), torch.randint(0, 10, (60000,), generator=g)
    x = torch.tensor(read_idx(f"{DATA}/train-images-idx3-ubyte.gz"), dtype=torch.float32)
    y = torch.tensor(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    return ((x / 255.0 - 0.2860) / 0.3530).unsqueeze(1), y


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--net", choices=sorted(NETS), default="lenet5")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--synthetic", action="store_true")
    return p.parse_args()


def main():
    a = parse()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    x, y = load(a.synthetic)
    net_class, make_opt, smoothing = NETS[a.net]
    model = net_class()
    fwd, bwd = flops_per_image(model)
    if rank == 0:
        print(f"net {a.net}: {sum(p.numel() for p in model.parameters())} parameters; "
              f"{fwd / 1e6:.2f} MFLOP per image forward, {bwd / 1e6:.2f} backward, "
              f"{(fwd + bwd) / 1e6:.2f} in all", flush=True)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    opt = make_opt(model.parameters())
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    model.train()
    t0 = 0.0
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            t0 = time.perf_counter()
        at = (step * world + rank) * a.batch % (x.shape[0] - a.batch)
        idx = order[at:at + a.batch]
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=smoothing)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    if rank == 0:
        rate = world * a.steps * a.batch / seconds
        print(f"RESULT torch_nets net={a.net} dtype={a.dtype} images_per_sec={rate:.1f} "
              f"gflops={rate * (fwd + bwd) / 1e9:.2f} steps={a.steps} batch={a.batch} threads={a.threads} "
              f"world={world} loss={loss.item():.4f} torch={torch.__version__}")
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

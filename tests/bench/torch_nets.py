#!/usr/bin/python3
"""PyTorch references for bench_config (issue 21): the same networks,
batch, optimizer and thread count as the configs the bench scripts run,
trained on Fashion-MNIST held in memory as float32 tensors.

  --net lenet5  LeNet-5 (ReLU, 2x2 max pool) with SGD (lr 0.01, momentum
                0.9, weight decay 1e-4): configs/lenet5/baseline.yaml
  --net vgg     conv 32, conv 32, pool, conv 64, conv 64, pool (3x3, pad 1,
                ReLU), linear 256, ReLU, linear 10, with AdamW (lr 1e-3,
                weight decay 0.05): configs/vgg/plain.yaml

Usage: torch_nets.py --net lenet5|vgg [--steps N] [--warmup W] [--batch B]
                     [--threads T] [--dtype fp32|bf16] [--synthetic]
--dtype bf16 runs forward and loss under torch.autocast('cpu',
dtype=torch.bfloat16) (master weights and the optimizer stay float32).
Prints the network's FLOPs per image (conv and linear multiply-adds x2,
counted by hooks; backward = 2x forward but the first layer's input
gradient, which autograd does not compute), then
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


NETS = {
    "lenet5": (LeNet5, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=1e-4)),
    "vgg": (VGG, lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05)),
}


def flops_per_image(model):
    """Forward and backward FLOPs of one image, from the conv and linear layers' multiply-adds."""
    macs = []

    def hook(mod, inp, out):
        per_out = mod.weight[0].numel()  # in_channels/groups * kh * kw, or in_features
        macs.append(out[0].numel() * per_out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
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
    net_class, make_opt = NETS[a.net]
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
            loss = F.cross_entropy(model(x[idx]), y[idx])
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


main()

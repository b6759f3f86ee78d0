#!/usr/bin/python3
"""PyTorch reference for bench_lenet5: the same LeNet-5 (ReLU, 2x2 max pool),
batch, optimizer (SGD, lr 0.01, momentum 0.9, weight decay 1e-4) and thread
count, trained on Fashion-MNIST held in memory as float32 tensors.

Usage: torch_lenet5.py [--steps N] [--batch B] [--threads T] [--warmup W]
Prints "RESULT torch_lenet5 images_per_sec=..." for the N steps after W
warm-up steps (loader-free: a batch is an index into the tensors).

With WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT in the environment it
runs under DistributedDataParallel (gloo), every process with its own
batch of B (weak scaling); rank 0 prints the global images/s."""
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


def load(synthetic):
    if synthetic or not os.path.exists(f"{DATA}/train-images-idx3-ubyte.gz"):
        g = torch.Generator().manual_seed(0)
        return torch.rand(60000, 1, 28, 28, generator=g), torch.randint(0, 10, (60000,), generator=g)
    x = torch.tensor(read_idx(f"{DATA}/train-images-idx3-ubyte.gz"), dtype=torch.float32)
    y = torch.tensor(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    return ((x / 255.0 - 0.2860) / 0.3530).unsqueeze(1), y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--synthetic", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    x, y = load(a.synthetic)
    model = LeNet5()
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    model.train()
    t0 = 0.0
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            t0 = time.perf_counter()
        at = (step * world + rank) * a.batch % (x.shape[0] - a.batch)
        idx = order[at:at + a.batch]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    if rank == 0:
        print(f"RESULT torch_lenet5 images_per_sec={world * a.steps * a.batch / seconds:.0f} "
              f"steps={a.steps} batch={a.batch} threads={a.threads} world={world} "
              f"loss={loss.item():.4f}")
    if world > 1:
        torch.distributed.destroy_process_group()


main()

#!/usr/bin/python3
"""Time to accuracy with PyTorch DDP (issue 22, "must show" 3): the nets of
torch_nets.py (vgg_bn, resnet20, ...) trained on Fashion-MNIST by P
processes (torch.multiprocessing, gloo, one thread each), evaluated on the
10,000 test images after every epoch.

Recipe, as the odyssey configs of issue 22 have it:
  - global batch 128 (128 / P per process), a DistributedSampler with --seed
    (reshuffled every epoch);
  - the net's optimizer and label smoothing from torch_nets.NETS;
  - per-step learning rate base * warmup(s) * cosine(s): a linear warmup
    from 0 over --warmup-steps (200) steps, times cosine decay from base to
    0 over every step of the run (--epochs);
  - augmentation per sample on the normalised tensors: RandomCrop(28,
    padding=2) whose padding is a black pixel's normalised value, then
    RandomHorizontalFlip(0.5), then with --erase P torchvision's
    RandomErasing(P, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0) (the
    resnet20 config has P = 0.5); none at evaluation;
  - pixels normalised with the mean and standard deviation of the 60,000
    training images.

Prints one line per epoch and a summary (rank 0):
  EPOCH e wall_s=... train_loss=... test_acc=... lr=... train_images_per_sec=... eval_s=...
  RESULT torch_tta net=... target=... reached_epoch=E|none wall_s_to_target=S|none final_acc=...
wall_s counts from the first step (every process ready: data in memory,
process group up, model built) to the end of that epoch's evaluation, so it
includes evaluation; start-up is printed apart (setup_s). train_loss is the
mean smoothed loss over the epoch's samples on all processes.

Usage: torch_tta.py --net vgg_bn --target 0.93 --epochs E [--procs 2]
                    [--batch 128] [--seed 1] [--warmup-steps 200]
                    [--erase P] [--train-subset N] [--stop-at-target] [--data DIR]
--train-subset N trains on the first N training images (a smoke test); the
mean/std stay the full training set's and evaluation stays on all 10,000."""
import argparse
import math
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_nets import DATA, NETS, read_idx  # noqa: E402

PAD = 2         # RandomCrop(28, padding=2)
EVAL_ROWS = 500  # rows per evaluation forward


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--net", choices=sorted(NETS), default="vgg_bn")
    p.add_argument("--target", type=float, default=0.93, help="test accuracy to reach, as a fraction")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128, help="global batch, split over the processes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--erase", type=float, default=0.0,
                   help="random erasing probability (data.random_erasing; 0: off)")
    p.add_argument("--train-subset", type=int, default=0, help="train on the first N images (0: all)")
    p.add_argument("--stop-at-target", action="store_true",
                   help="stop after the epoch that reaches the target")
    p.add_argument("--data", default=DATA)
    a = p.parse_args()
    if a.batch % a.procs:
        p.error(f"--batch {a.batch} is not a multiple of --procs {a.procs}")
    return a


def load(data_dir, subset):
    """Normalised (N, 1, 28, 28) float tensors, labels, and a black pixel's value."""
    def images(name):
        return torch.tensor(read_idx(f"{data_dir}/{name}"), dtype=torch.float32).div_(255.0)

    train_x, test_x = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    train_y = torch.tensor(read_idx(f"{data_dir}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    test_y = torch.tensor(read_idx(f"{data_dir}/t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    mean, std = train_x.double().mean().item(), train_x.double().std().item()
    if subset:
        train_x, train_y = train_x[:subset], train_y[:subset]
    norm = lambda t: ((t - mean) / std).unsqueeze(1).contiguous()  # noqa: E731
    return norm(train_x), train_y, norm(test_x), test_y, mean, std, (0.0 - mean) / std


def augment(x, black, gen):
    """RandomCrop(28, padding=PAD, fill=black) then RandomHorizontalFlip, per
    sample, as one gather: row/column indices into the padded batch."""
    n, h, w = x.shape[0], x.shape[2], x.shape[3]
    padded = F.pad(x, (PAD, PAD, PAD, PAD), value=black)
    top = torch.randint(0, 2 * PAD + 1, (n, 1), generator=gen)
    left = torch.randint(0, 2 * PAD + 1, (n, 1), generator=gen)
    flip = torch.rand(n, 1, generator=gen) < 0.5
    rows = top + torch.arange(h)
    cols = left + torch.where(flip, torch.arange(w - 1, -1, -1), torch.arange(w))
    batch = torch.arange(n)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def erase(x, p, gen):
    """torchvision's RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3),
    value=0) on each (1, H, W) sample of x, in place."""
    n, h, w = x.shape[0], x.shape[2], x.shape[3]
    log_lo, log_hi = math.log(0.3), math.log(3.3)
    for i in range(n):
        if torch.rand(1, generator=gen).item() >= p:
            continue
        for _ in range(10):
            area = h * w * (0.02 + 0.31 * torch.rand(1, generator=gen).item())
            aspect = math.exp(log_lo + (log_hi - log_lo) * torch.rand(1, generator=gen).item())
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if not (eh < h and ew < w):
                continue
            top = int(torch.randint(0, h - eh + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - ew + 1, (1,), generator=gen))
            x[i, :, top:top + eh, left:left + ew] = 0.0
            break
    return x


def lr_at(step, total, base, warmup):
    """Linear warmup from 0 over `warmup` steps, times cosine decay to 0 over `total` steps."""
    rise = min(1.0, step / warmup) if warmup > 0 else 1.0
    return base * rise * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def evaluate(model, x, y, rank, procs):
    """Test accuracy over every image: each process takes a contiguous share, counts summed."""
    share = (x.shape[0] + procs - 1) // procs
    lo, hi = rank * share, min(x.shape[0], (rank + 1) * share)
    model.eval()
    correct = torch.zeros(1, dtype=torch.float64)
    with torch.no_grad():
        for at in range(lo, hi, EVAL_ROWS):
            logits = model(x[at:min(hi, at + EVAL_ROWS)])
            correct += (logits.argmax(1) == y[at:min(hi, at + EVAL_ROWS)]).sum()
    model.train()
    dist.all_reduce(correct)
    return correct.item() / x.shape[0]


def sync_buffers(model):
    """Rank 0's BatchNorm running statistics everywhere (DDP does it at the next forward anyway)."""
    for b in model.buffers():
        dist.broadcast(b, 0)


def local_batches(sampler, epoch, local_batch):
    """This process's index batches of an epoch. A last batch of one row is
    left out: BatchNorm1d cannot train on it."""
    sampler.set_epoch(epoch)
    idx = torch.tensor(list(iter(sampler)), dtype=torch.long)
    return [b for b in idx.split(local_batch) if b.numel() > 1]


def worker(rank, a, port, data, t_spawn):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=a.procs)
    train_x, train_y, test_x, test_y, mean, std, black = data
    torch.manual_seed(a.seed)
    net_class, make_opt, smoothing = NETS[a.net]
    model = torch.nn.parallel.DistributedDataParallel(net_class())
    opt = make_opt(model.parameters())
    base_lr = opt.param_groups[0]["lr"]
    sampler = torch.utils.data.distributed.DistributedSampler(
        torch.utils.data.TensorDataset(train_y), num_replicas=a.procs, rank=rank, shuffle=True, seed=a.seed)
    local_batch = a.batch // a.procs
    steps_per_epoch = len(local_batches(sampler, 0, local_batch))
    total = steps_per_epoch * a.epochs
    gen = torch.Generator()
    if rank == 0:
        print(f"torch_tta: net {a.net}, {a.procs} processes (gloo, 1 thread each), global batch {a.batch}, "
              f"{train_x.shape[0]} training images, {steps_per_epoch} steps per epoch, {a.epochs} epochs, "
              f"lr {base_lr} warmup {a.warmup_steps} steps + cosine, label smoothing {smoothing}, erasing {a.erase}, "
              f"mean {mean:.4f} std {std:.4f}, torch {torch.__version__}", flush=True)
    dist.barrier()
    t0 = time.perf_counter()
    if rank == 0:
        print(f"setup_s={time.time() - t_spawn:.1f}", flush=True)
    step, reached, wall_to_target, acc = 0, None, None, 0.0
    for epoch in range(a.epochs):
        gen.manual_seed(a.seed * 1_000_003 + epoch * 1009 + rank)
        loss_sum = torch.zeros(2, dtype=torch.float64)  # smoothed loss summed over rows, rows
        t_epoch = time.perf_counter()
        for idx in local_batches(sampler, epoch, local_batch):
            lr = lr_at(step, total, base_lr, a.warmup_steps)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            x = augment(train_x[idx], black, gen)
            if a.erase > 0:
                x = erase(x, a.erase, gen)
            loss = F.cross_entropy(model(x), train_y[idx],
                                   label_smoothing=smoothing)
            loss.backward()
            opt.step()
            loss_sum += torch.tensor([loss.item() * idx.numel(), idx.numel()], dtype=torch.float64)
            step += 1
        dist.all_reduce(loss_sum)
        t_eval = time.perf_counter()
        rate = loss_sum[1].item() / (t_eval - t_epoch)
        sync_buffers(model.module)
        acc = evaluate(model.module, test_x, test_y, rank, a.procs)
        wall = time.perf_counter() - t0
        if reached is None and acc >= a.target:
            reached, wall_to_target = epoch + 1, wall
        if rank == 0:
            train_loss = loss_sum[0].item() / loss_sum[1].item()
            print(f"EPOCH {epoch + 1} wall_s={wall:.1f} train_loss={train_loss:.4f} test_acc={acc:.4f} "
                  f"lr={lr:.5f} train_images_per_sec={rate:.0f} eval_s={time.perf_counter() - t_eval:.1f}",
                  flush=True)
        if reached is not None and a.stop_at_target:
            break
    if rank == 0:
        print(f"RESULT torch_tta net={a.net} target={a.target} reached_epoch={reached or 'none'} "
              f"wall_s_to_target={'none' if wall_to_target is None else f'{wall_to_target:.1f}'} "
              f"final_acc={acc:.4f} procs={a.procs} batch={a.batch} epochs={a.epochs}", flush=True)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    a = parse()
    t_spawn = time.time()
    torch.set_num_threads(1)
    data = load(a.data, a.train_subset)
    mp.spawn(worker, args=(a, free_port(), data, t_spawn), nprocs=a.procs, join=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""pwrite_probe.py [DIR] [ROUNDS]: the disk path without the trainer.

Writes 4 x 100 MB buffers to DIR/probe.bin with pwrite, then fsync, ROUNDS
times (default 3) each with and without sync_file_range(SYNC_FILE_RANGE_WRITE)
after every buffer (what the checkpoint writer does), and prints each call's
seconds. On a healthy disk every pwrite into the page cache takes about the
same time; a stall of one call (0.2 s against 0.02 s on the VM where
odyssey-dist was measured) slows any writer, ours and dd alike.
"""
import ctypes
import os
import sys
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
libc = ctypes.CDLL("libc.so.6", use_errno=True)
buffers = [os.urandom(100 * 1000 * 1000) for _ in range(4)]
path = os.path.join(directory, "probe.bin")


def run(writeback):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    start, offset, calls = time.time(), 0, []
    for buf in buffers:
        t = time.time()
        os.pwrite(fd, buf, offset)
        offset += len(buf)
        calls.append(time.time() - t)
        if writeback:
            libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), 2)
    t = time.time()
    os.fsync(fd)
    sync_s = time.time() - t
    os.close(fd)
    total = time.time() - start
    os.unlink(path)
    print(f"sync_file_range={'on ' if writeback else 'off'} {offset / total / 1e6:6.0f} MB/s  "
          f"pwrite s {' '.join(f'{c:.3f}' for c in calls)}  fsync {sync_s:.3f} s")


for _ in range(rounds):
    run(True)
    run(False)

/*
 * fail_io: an LD_PRELOAD shim for e2e_fail_io (tests/e2e/fail_io.sh).
 *
 * On the rank whose OMPI_COMM_WORLD_RANK is ODY_FAIL_RANK, the
 * ODY_FAIL_AT-th call that writes a checkpoint fails with errno
 * ODY_FAIL_ERRNO (default EIO), as a failing disk would. Counted calls:
 * write, pwrite, pwrite64 and fsync, fdatasync on a file whose name holds
 * ".h5" (checkpoints, their temporary files, HDF5's own writes and the
 * O_DIRECT ones alike), and rename or symlink onto such a name (the
 * commit, latest.h5). ODY_FAIL_AT=0 only counts. With ODY_FAIL_READS=1,
 * once that call has failed every read, pread and pread64 of a checkpoint
 * file fails too (not counted), as a disk that has gone bad would.
 *
 * On that rank the shim writes to stderr which call failed, and at exit
 *   fail_io: rank R: K checkpoint writes, failed number N
 * (fail_shim.h), so a test can find how many there are.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "fail_shim.h"

static int fail_errno = EIO;
static bool fail_reads;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_symlink)(const char *, const char *);

__attribute__((constructor)) static void setup(void)
{
    real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    real_pwrite = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
    real_read = (ssize_t(*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    real_pread = (ssize_t(*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread");
    real_pread64 = (ssize_t(*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    real_symlink = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "symlink");
    if (!shim_this_rank())
        return;
    const char *err = getenv("ODY_FAIL_ERRNO");
    if (err && atoi(err) > 0)
        fail_errno = atoi(err);
    const char *reads = getenv("ODY_FAIL_READS");
    fail_reads = reads && atoi(reads) == 1;
    shim_active = true;
}

__attribute__((destructor)) static void report(void) { shim_report("fail_io", "checkpoint writes"); }

static bool checkpoint_name(const char *name) { return name && strstr(name, ".h5") != NULL; }

static bool checkpoint_fd(int fd)
{
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    return checkpoint_name(target);
}

/* Whether this call (`what` on `name`) is the one to fail. */
static bool fail_now(bool counted, const char *what, const char *name)
{
    if (!shim_active || !counted)
        return false;
    long k = shim_count();
    if (!k)
        return false;
    char line[512];
    int len = snprintf(line, sizeof line, "fail_io: rank %d: call %ld (%s %s) fails: %s\n", shim_rank, k,
                       what, name ? name : "", strerror(fail_errno));
    if (len > 0)
        len = (int)real_write(2, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    errno = fail_errno;
    return true;
}

static bool fd_now(int fd, const char *what)
{
    return shim_active && fail_now(checkpoint_fd(fd), what, "a checkpoint file");
}

ssize_t write(int fd, const void *buf, size_t n)
{
    return fd_now(fd, "write") ? -1 : real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t at)
{
    return fd_now(fd, "pwrite") ? -1 : real_pwrite(fd, buf, n, at);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at)
{
    return fd_now(fd, "pwrite64") ? -1 : real_pwrite64(fd, buf, n, at);
}

/* A read of a checkpoint file after the failed call, with ODY_FAIL_READS. */
static bool read_fails(int fd)
{
    if (!shim_active || !fail_reads || !atomic_load(&shim_failed) || !checkpoint_fd(fd))
        return false;
    errno = fail_errno;
    return true;
}

ssize_t read(int fd, void *buf, size_t n) { return read_fails(fd) ? -1 : real_read(fd, buf, n); }

ssize_t pread(int fd, void *buf, size_t n, off_t at)
{
    return read_fails(fd) ? -1 : real_pread(fd, buf, n, at);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t at)
{
    return read_fails(fd) ? -1 : real_pread64(fd, buf, n, at);
}

int fsync(int fd) { return fd_now(fd, "fsync") ? -1 : real_fsync(fd); }

int fdatasync(int fd) { return fd_now(fd, "fdatasync") ? -1 : real_fdatasync(fd); }

int rename(const char *from, const char *to)
{
    return fail_now(checkpoint_name(to), "rename to", to) ? -1 : real_rename(from, to);
}

int symlink(const char *target, const char *path)
{
    return fail_now(checkpoint_name(path), "symlink", path) ? -1 : real_symlink(target, path);
}

/*
 * io: the HDF5 file driver checkpoints are written through.
 *
 * POSIX I/O as in HDF5's own sec2 driver: pread and pwrite at offsets, the
 * same bytes in the file, so any HDF5 program reads a checkpoint with its
 * default driver. One difference: a write that fails is not handed back
 * to HDF5 when the owner can take it. HDF5 1.10 cannot survive a write that
 * fails inside H5Fclose (its last metadata and the superblock go out
 * there): it frees the file, fails, leaves the identifier behind and
 * crashes on it when the library shuts down. So a failed write (or
 * truncate) calls the owner's hook first. The checkpoint writer records
 * the error there and points the descriptor at a copy of the file in
 * memory (ckpt_common.c, divert_writes), and the write is then made again
 * into that copy. HDF5 goes on and closes cleanly; the writer sees the
 * failure in ck->failed, reports the first error, and removes the file.
 */
#define _GNU_SOURCE
#include "io/ckpt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define VFD_MAXADDR (((haddr_t)1 << (8 * sizeof(off_t) - 1)) - 1)

typedef struct {
    H5FD_t pub;        /* first, as HDF5 requires */
    int fd;            /* H5Fget_vfd_handle gives &fd, as with sec2 */
    haddr_t eoa, eof;
    dev_t dev;
    ino_t ino;
    ody_ckpt_vfd_info info;
} vfd_file;

static hid_t driver = -1;

/* An HDF5 error with the errno in sec2's words ("errno = N"), which
 * ckpt_common.c's error walk reads. */
static herr_t fail(H5E_major_t major, H5E_minor_t minor, const char *what, int err)
{
    H5Epush2(H5E_DEFAULT, __FILE__, what, __LINE__, H5E_ERR_CLS, major, minor,
             "%s failed: errno = %d, error message = '%s'", what, err, strerror(err));
    return -1;
}

static H5FD_t *vfd_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr)
{
    if (!name || !*name || maxaddr == 0 || maxaddr == HADDR_UNDEF || maxaddr > VFD_MAXADDR) {
        fail(H5E_ARGS, H5E_BADVALUE, "open", EINVAL);
        return NULL;
    }
    int mode = (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & H5F_ACC_TRUNC)
        mode |= O_TRUNC;
    if (flags & H5F_ACC_CREAT)
        mode |= O_CREAT;
    if (flags & H5F_ACC_EXCL)
        mode |= O_EXCL;
    int fd = open(name, mode | O_CLOEXEC, 0666);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        fail(H5E_FILE, H5E_CANTOPENFILE, "open", err);
        return NULL;
    }
    vfd_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        fail(H5E_RESOURCE, H5E_NOSPACE, "open", ENOMEM);
        return NULL;
    }
    f->fd = fd;
    f->eof = (haddr_t)sb.st_size;
    f->dev = sb.st_dev;
    f->ino = sb.st_ino;
    const ody_ckpt_vfd_info *info = H5Pget_driver_info(fapl);
    if (info)
        f->info = *info;
    return &f->pub;
}

static herr_t vfd_close(H5FD_t *file)
{
    vfd_file *f = (vfd_file *)file;
    int rc = close(f->fd);
    int err = errno;
    free(f);
    return rc == 0 ? 0 : fail(H5E_IO, H5E_CANTCLOSEFILE, "close", err);
}

static int vfd_cmp(const H5FD_t *a, const H5FD_t *b)
{
    const vfd_file *f = (const vfd_file *)a, *g = (const vfd_file *)b;
    if (f->dev != g->dev)
        return f->dev < g->dev ? -1 : 1;
    if (f->ino != g->ino)
        return f->ino < g->ino ? -1 : 1;
    return 0;
}

static herr_t vfd_query(const H5FD_t *file, unsigned long *flags)
{
    (void)file;
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_AGGREGATE_SMALLDATA | H5FD_FEAT_POSIX_COMPAT_HANDLE;
    return 0;
}

static haddr_t vfd_get_eoa(const H5FD_t *file, H5FD_mem_t type)
{
    (void)type;
    return ((const vfd_file *)file)->eoa;
}

static herr_t vfd_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr)
{
    (void)type;
    ((vfd_file *)file)->eoa = addr;
    return 0;
}

static haddr_t vfd_get_eof(const H5FD_t *file, H5FD_mem_t type)
{
    (void)type;
    return ((const vfd_file *)file)->eof;
}

static herr_t vfd_get_handle(H5FD_t *file, hid_t fapl, void **handle)
{
    (void)fapl;
    *handle = &((vfd_file *)file)->fd;
    return 0;
}

static herr_t vfd_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                       void *buf)
{
    (void)type;
    (void)dxpl;
    vfd_file *f = (vfd_file *)file;
    if (addr == HADDR_UNDEF || addr + size > f->eoa)
        return fail(H5E_ARGS, H5E_OVERFLOW, "read", EINVAL);
    unsigned char *p = buf;
    while (size > 0) {
        ssize_t n = pread(f->fd, p, size, (off_t)addr);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail(H5E_IO, H5E_READERROR, "read", errno);
        if (n == 0) { /* past the end of the file: zeros, as sec2 gives */
            memset(p, 0, size);
            break;
        }
        p += n;
        addr += (haddr_t)n;
        size -= (size_t)n;
    }
    return 0;
}

/* After a failed call with errno err: whether the owner took it (the
 * descriptor now points somewhere the call can be made again). */
static bool owner_takes(vfd_file *f, int err)
{
    return f->info.on_error && f->info.on_error(f->info.owner, err);
}

static int write_all(int fd, const unsigned char *p, size_t size, haddr_t addr)
{
    while (size > 0) {
        ssize_t n = pwrite(fd, p, size, (off_t)addr);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
        p += n;
        addr += (haddr_t)n;
        size -= (size_t)n;
    }
    return 0;
}

static herr_t vfd_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                        const void *buf)
{
    (void)type;
    (void)dxpl;
    vfd_file *f = (vfd_file *)file;
    if (addr == HADDR_UNDEF || addr + size > f->eoa)
        return fail(H5E_ARGS, H5E_OVERFLOW, "write", EINVAL);
    int err = write_all(f->fd, buf, size, addr);
    if (err && owner_takes(f, err))
        err = write_all(f->fd, buf, size, addr);
    if (err)
        return fail(H5E_IO, H5E_WRITEERROR, "write", err);
    if (addr + size > f->eof)
        f->eof = addr + size;
    return 0;
}

static herr_t vfd_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing)
{
    (void)dxpl;
    (void)closing;
    vfd_file *f = (vfd_file *)file;
    if (f->eoa == f->eof)
        return 0;
    int err = ftruncate(f->fd, (off_t)f->eoa) == 0 ? 0 : errno;
    if (err && owner_takes(f, err))
        err = ftruncate(f->fd, (off_t)f->eoa) == 0 ? 0 : errno;
    if (err)
        return fail(H5E_IO, H5E_SEEKERROR, "truncate", err);
    f->eof = f->eoa;
    return 0;
}

/* Advisory locks where the file system has them; none is no error. */
static herr_t vfd_lock(H5FD_t *file, hbool_t rw)
{
    vfd_file *f = (vfd_file *)file;
    if (flock(f->fd, (rw ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 || errno == ENOSYS ||
        errno == ENOTSUP || errno == EINVAL)
        return 0;
    return fail(H5E_VFL, H5E_CANTLOCKFILE, "lock", errno);
}

static herr_t vfd_unlock(H5FD_t *file)
{
    vfd_file *f = (vfd_file *)file;
    if (flock(f->fd, LOCK_UN) == 0 || errno == ENOSYS || errno == ENOTSUP || errno == EINVAL)
        return 0;
    return fail(H5E_VFL, H5E_CANTUNLOCKFILE, "unlock", errno);
}

static const H5FD_class_t vfd_class = {
#if H5_VERSION_GE(1, 13, 0)
    /* H5FDregister refuses a class without the struct's version; value:
     * HDF5 keeps 256-511 for drivers not registered with The HDF Group. */
    .version = H5FD_CLASS_VERSION,
    .value = (H5FD_class_value_t)511,
#endif
    .name = "odyssey_checkpoint",
    .maxaddr = VFD_MAXADDR,
    .fc_degree = H5F_CLOSE_WEAK,
    .fapl_size = sizeof(ody_ckpt_vfd_info),
    .open = vfd_open,
    .close = vfd_close,
    .cmp = vfd_cmp,
    .query = vfd_query,
    .get_eoa = vfd_get_eoa,
    .set_eoa = vfd_set_eoa,
    .get_eof = vfd_get_eof,
    .get_handle = vfd_get_handle,
    .read = vfd_read,
    .write = vfd_write,
    .truncate = vfd_truncate,
    .lock = vfd_lock,
    .unlock = vfd_unlock,
    .fl_map = H5FD_FLMAP_DICHOTOMY,
};

herr_t ody_ckpt_vfd_set(hid_t fapl, const ody_ckpt_vfd_info *info)
{
    if (driver < 0 || H5Iis_valid(driver) <= 0)
        driver = H5FDregister(&vfd_class);
    return driver < 0 ? -1 : H5Pset_driver(fapl, driver, info);
}

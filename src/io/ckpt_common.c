/*
 * io: checkpoint files, what writing and reading share: HDF5's errors
 * (quietly, with the system's reason), the checksums, names and groups,
 * the writer's diverted writes, and the handle. Writing: ckpt_write.c;
 * reading and verifying: ckpt_read.c; the file driver: ckpt_driver.c;
 * O_DIRECT tensors: ckpt_direct.c. The on-disk layout:
 * checkpoints/README.md. Public API: odyssey/io.h.
 */
#define _GNU_SOURCE /* memfd_create */
#include "io/ckpt_internal.h"
#include "odyssey/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "odyssey/tensor.h"


/* ------------------------------------------------- HDF5 errors, quietly */

static bool mentions(const char *text, const char *word)
{
    for (size_t n = strlen(word); *text; text++) {
        size_t i = 0;
        while (i < n && text[i] && (text[i] | 0x20) == (word[i] | 0x20))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

static herr_t walk_error(unsigned n, const H5E_error2_t *rec, void *data)
{
    ody_ckpt_h5_error *e = data;
    const char *desc = rec->desc ? rec->desc : "";
    const char *no = strstr(desc, "errno = ");
    if (n == 0)
        snprintf(e->inner, sizeof e->inner, "%s", desc);
    if (no && !e->sys_errno)
        e->sys_errno = atoi(no + strlen("errno = "));
    e->checksum |= mentions(desc, "checksum");
    e->truncated |= rec->min_num == H5E_TRUNCATED || mentions(desc, "truncated");
    e->unfinished |= mentions(desc, "already open for write");
    return 0;
}

/*
 * HDF5 1.10 cannot close a file whose writes fail: H5Fclose (or H5Dclose)
 * frees the object, fails, and leaves its identifier behind, and the
 * library crashes on it at exit. So at the first failed write, whether
 * HDF5's (our file driver, ckpt_driver.c, calls ody_ckpt_driver_failed from
 * inside it) or our own O_DIRECT one, the driver's descriptor is pointed
 * at an in-memory copy of the file. The driver makes its write again
 * there, so HDF5 sees no failure at all, even inside H5Fclose; the
 * closes succeed, and the temporary file is removed anyway.
 *
 * The copy holds what the file gave back, for HDF5 to read again; where
 * the disk fails reads too, zeros, at the file's length. It is diverted
 * either way: the file is thrown away, and what matters is that no write
 * fails from here on. Without memory for a copy, /dev/null takes the
 * writes (reads then find the end of the file).
 */
static void divert_writes(ody_ckpt *ck)
{
    ck->failed = true;
    ody_ckpt_direct_close(ck);
    if (!ck->fd || ck->diverted)
        return;
    int copy = memfd_create("odyssey-dist discarded checkpoint", MFD_CLOEXEC);
    off_t end = copy < 0 ? -1 : lseek(*ck->fd, 0, SEEK_END), done = 0;
    if (end > 0 && ftruncate(copy, end) != 0) { /* no memory for the copy */
        close(copy);
        copy = -1;
    }
    char buf[65536];
    while (copy >= 0 && done < end) {
        ssize_t n = pread(*ck->fd, buf, sizeof buf, done);
        if (n <= 0 || pwrite(copy, buf, (size_t)n, done) != n)
            break;
        done += n;
    }
    if (copy < 0)
        copy = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (copy >= 0) {
        ck->diverted = dup2(copy, *ck->fd) >= 0;
        close(copy);
    }
}

/* The file driver's on_error: a write or truncate failed with sys_errno. */
bool ody_ckpt_driver_failed(void *owner, int sys_errno)
{
    ody_ckpt *ck = owner;
    ody_ckpt_note_error(ck, sys_errno, false);
    return ck->diverted;
}

/* HDF5 calls this when an API call fails: keep what the first failure
 * said (a failed write was diverted already, in the driver). */
static herr_t record_error(hid_t stack, void *data)
{
    ody_ckpt *ck = data;
    if (!ck->err.set) {
        memset(&ck->err, 0, sizeof ck->err);
        H5Ewalk2(stack, H5E_WALK_UPWARD, walk_error, &ck->err);
        ck->err.set = true;
    }
    return 0;
}

void ody_ckpt_note_error(ody_ckpt *ck, int sys_errno, bool truncated)
{
    if (!ck->err.set) {
        memset(&ck->err, 0, sizeof ck->err);
        ck->err.set = true;
        ck->err.sys_errno = sys_errno;
        ck->err.truncated = truncated;
    }
    if (ck->writing)
        divert_writes(ck);
}

/* Every HDF5 call of this layer happens between quiet_begin and quiet_end,
 * which also hold the process-wide HDF5 lock: the library is not built
 * thread-safe, and a loader's prefetch thread may be reading an HDF5 data
 * set while rank 0 writes a checkpoint. */

ody_ckpt_quiet ody_ckpt_quiet_begin(ody_ckpt *ck)
{
    ody_hdf5_lock();
    ody_ckpt_quiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    if (ck)
        memset(&ck->err, 0, sizeof ck->err);
    H5Eset_auto2(H5E_DEFAULT, ck ? record_error : NULL, ck);
    return q;
}

void ody_ckpt_quiet_end(ody_ckpt_quiet q)
{
    H5Eset_auto2(H5E_DEFAULT, q.func, q.data);
    ody_hdf5_unlock();
}

void ody_ckpt_release(hid_t id)
{
    if (id >= 0)
        H5Idec_ref(id);
}

/* The system's reason, a checksum, truncation, or else HDF5's innermost message. */
static const char *reason(const ody_ckpt_h5_error *e, bool reading, char *buf, size_t len)
{
    if (e->sys_errno > 0)
        snprintf(buf, len, "%s", strerror(e->sys_errno));
    else if (e->checksum)
        snprintf(buf, len, "checksum mismatch (corrupt data)");
    else if (e->unsummed)
        snprintf(buf, len, "checksum missing (corrupt file)");
    else if (e->truncated)
        snprintf(buf, len, "truncated or corrupt file");
    else if (reading) /* in a file that opened as ours, a failed read means damage */
        snprintf(buf, len, "truncated or corrupt file (HDF5: %s)", e->inner);
    else
        snprintf(buf, len, "HDF5: %s", e->inner[0] ? e->inner : "unknown error");
    return buf;
}

const char *ody_ckpt_read_reason(const ody_ckpt *ck, char *buf, size_t len)
{
    return reason(&ck->err, true, buf, len);
}

/* ---------------------------------------------------------------- checksums */

ody_checksum_kind ody_ckpt_checksum_kind(const ody_ckpt *ck)
{
    return ck->version == 2 ? ODY_CHECKSUM_LEGACY_V2 : ODY_CHECKSUM_XXH3;
}

uint64_t ody_ckpt_data_sum(const ody_ckpt *ck, const void *data, size_t n)
{
    return ody_ckpt_checksum_kind(ck) == ODY_CHECKSUM_LEGACY_V2 ? ody_checksum64_legacy_v2(data, n)
                                                                : ody_checksum64(data, n);
}

uint64_t ody_ckpt_value_sum(H5T_class_t cls, const void *value)
{
    if (cls == H5T_STRING) {
        const char *text = *(const char *const *)value;
        return text ? ody_checksum64(text, strlen(text)) : ody_checksum64("", 0);
    }
    uint64_t bits = 0;
    unsigned char le[8];
    if (cls == H5T_INTEGER) {
        int64_t v;
        memcpy(&v, value, sizeof v);
        bits = (uint64_t)v;
    } else {
        memcpy(&bits, value, sizeof bits); /* a double's bits */
    }
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(bits >> (8 * i));
    return ody_checksum64(le, sizeof le);
}

bool ody_ckpt_is_value_checksum(const char *leaf)
{
    size_t n = strlen(leaf), k = strlen(ODY_CKPT_VALUE_CHECKSUM);
    return n > k && strcmp(leaf + n - k, ODY_CKPT_VALUE_CHECKSUM) == 0;
}

ody_status ody_ckpt_fail_read(ody_ctx *ctx, const ody_ckpt *ck, const char *name)
{
    char why[256];
    return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: %s: %s", ck->path, name,
                    reason(&ck->err, true, why, sizeof why));
}

ody_status ody_ckpt_fail_write(ody_ctx *ctx, ody_ckpt *ck, const char *name)
{
    char why[256];
    ck->failed = true;
    if (ck->err.sys_errno == ENOMEM) /* the machine's fault, not the disk's */
        return ody_fail(ctx, ODY_ERR_NOMEM, "%s: out of memory writing %s", ck->path, name);
    return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: cannot write %s: %s", ck->path, name,
                    reason(&ck->err, false, why, sizeof why));
}

ody_status ody_ckpt_fail_name(ody_ctx *ctx, const ody_ckpt *ck, const char *name)
{
    return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: invalid checkpoint name '%s'", ck->path,
                    name ? name : "(null)");
}

/* ------------------------------------------------------------------ names */

bool ody_ckpt_parse_name(const char *name, char *group, size_t len, const char **leaf)
{
    const char *slash = name ? strrchr(name, '/') : NULL;
    size_t glen = slash ? (size_t)(slash - name) : 0;
    if (!name || !*name || glen + 2 > len)
        return false;
    for (const char *p = name; *p; p++) {
        bool start = (p == name || p[-1] == '/');
        bool dot = *p == '.' && (p[1] == '/' || !p[1]);
        if ((start && (*p == '/' || dot)) || (*p == '/' && !p[1]))
            return false;
    }
    group[0] = '/';
    memcpy(group + 1, name, glen);
    group[glen + 1] = '\0';
    *leaf = slash ? slash + 1 : name;
    return true;
}

int ody_ckpt_group_open(ody_ckpt *ck, const char *path, bool create, hid_t *out)
{
    char buf[ODY_CKPT_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (p[1] != '/' && p[1] != '\0')
            continue;
        char keep = p[1];
        p[1] = '\0'; /* buf is the path up to and including *p */
        htri_t exists = H5Lexists(ck->file, buf, H5P_DEFAULT);
        hid_t made = -1;
        if (exists == 0 && create)
            made = H5Gcreate2(ck->file, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        p[1] = keep;
        if (exists < 0 || (exists == 0 && create && made < 0))
            return -1;
        if (exists == 0 && !create)
            return 0;
        ody_ckpt_release(made);
    }
    *out = H5Gopen2(ck->file, path, H5P_DEFAULT);
    return *out >= 0 ? 1 : -1;
}

ody_status ody_ckpt_alloc(ody_ctx *ctx, const char *path, ody_ckpt **out)
{
    ody_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck)
        return ody_fail(ctx, ODY_ERR_NOMEM, "%s: out of memory for a checkpoint", path);
    ck->file = -1;
    ck->direct_fd = -1;
    if (snprintf(ck->path, sizeof ck->path, "%s", path) >= (int)sizeof ck->path) {
        free(ck);
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "checkpoint path too long: %s", path);
    }
    *out = ck;
    return ODY_OK;
}

void ody_ckpt_discard(ody_ckpt *ck)
{
    if (!ck)
        return;
    ody_ckpt_direct_close(ck);
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(NULL);
    if (ck->file >= 0)
        H5Fclose(ck->file);
    ody_ckpt_quiet_end(q);
    if (ck->writing)
        unlink(ck->tmp);
    free(ck);
}

/* ---------------------------------------------------------------- writing */

/*
 * io: checkpoint files (HDF5), the shared helpers and writing. Opening,
 * reading and verifying: checkpoint_read.c. Public API: odyssey/io.h.
 *
 * On disk (format version 3), written through our own file driver with
 * sec2's layout (checkpoint_vfd.c) in the HDF5 1.10 file format, so that
 * HDF5 itself checksums the superblock, object headers, B-trees and
 * fractal heap blocks (attributes included):
 *
 *   /                  attributes format and format_version (written by
 *                      create), program_version, created (ISO-8601 UTC) and,
 *                      last of all, complete = 1 (written by commit)
 *   /<group>/<name>    tensors: float32 (H5T_IEEE_F32LE) in the tensor's
 *                      shape; series: 1-D float64 (H5T_IEEE_F64LE) with an
 *                      unlimited maximum extent, so that an empty series is an
 *                      ordinary dataset. Every dataset has a uint64
 *                      attribute "checksum": XXH3-64 (ody_checksum64) of its
 *                      data's little-endian bytes. Tensors contiguous (HDF5
 *                      writes small ones straight from the caller's buffer;
 *                      those of 1 MiB or more start on a 4 KiB boundary and
 *                      go past the page cache with O_DIRECT:
 *                      checkpoint_direct.c); series chunked (a chunk holds
 *                      at most 1 MiB) with Fletcher32 as well. No compression.
 *   attributes         of the group named by the path: int64 (H5T_STD_I64LE)
 *                      and float64 (H5T_IEEE_F64LE) scalars; strings are scalar
 *                      variable-length UTF-8, which h5py reads as str. Each
 *                      attribute <name> has a uint64 companion
 *                      "<name>.checksum": XXH3-64 of its value
 *                      (ody_ckpt_value_sum), so that attributes are covered
 *                      by the same checksum as the data, and strings at all:
 *                      a variable-length string's text lives in HDF5's
 *                      global heap, which HDF5 does not checksum.
 *
 * The reader takes older files too. Format 2 (legacy): tensors contiguous
 * with "checksum" = ody_checksum64_legacy_v2, series with Fletcher32 only,
 * attributes without companions. Format 1: tensors chunked with Fletcher32
 * too. In those, a string's text has no checksum at all.
 */
#define _GNU_SOURCE /* memfd_create */
#include "io/checkpoint_internal.h"
#include "odyssey/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "odyssey/tensor.h"

#define CHUNK_BYTES ((size_t)1 << 20) /* the most a chunk holds */

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
 * HDF5's (our file driver, checkpoint_vfd.c, calls driver_failed from
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
static bool driver_failed(void *owner, int sys_errno)
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
/* Let the disk start on what is written so far while the next tensors are
 * checksummed and copied: the final fsync then finds little left to do.
 * Only a hint: errors surface at the fsync. */
static void start_writeback(const ody_ckpt *ck)
{
    if (ck->writing && ck->fd && !ck->diverted)
        sync_file_range(*ck->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

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

/* Open (making) the group of `name` for a new object; *leaf is its name there. */
static ody_status put_begin(ody_ctx *ctx, ody_ckpt *ck, const char *name, hid_t *group,
                            const char **leaf)
{
    char path[ODY_CKPT_PATH_MAX];
    if (!ck->writing)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "%s: checkpoint opened for reading, not writing",
                        ck->path);
    if (!ody_ckpt_parse_name(name, path, sizeof path, leaf))
        return ody_ckpt_fail_name(ctx, ck, name);
    if (ody_ckpt_group_open(ck, path, true, group) < 0)
        return ody_ckpt_fail_write(ctx, ck, name);
    return ODY_OK;
}

/* Scalar attribute `leaf` of object loc (replacing one of that name), of
 * file_type, from *value. */
static herr_t write_scalar_attr(hid_t loc, const char *leaf, hid_t file_type, hid_t mem_type,
                                const void *value)
{
    hid_t space = -1, attr = -1;
    herr_t rc = H5Aexists(loc, leaf) > 0 ? H5Adelete(loc, leaf) : 0;
    if (rc >= 0 && (space = H5Screate(H5S_SCALAR)) >= 0)
        attr = H5Acreate2(loc, leaf, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    rc = attr >= 0 ? H5Awrite(attr, mem_type, value) : -1;
    if (attr >= 0 && H5Aclose(attr) < 0)
        rc = -1;
    ody_ckpt_release(space);
    return rc;
}

/* Scalar attribute `name` (a path: the group, then the attribute) of class
 * cls, and its checksum companion. */
static ody_status put_attr(ody_ctx *ctx, ody_ckpt *ck, const char *name, H5T_class_t cls,
                           hid_t file_type, hid_t mem_type, const void *value)
{
    hid_t group = -1;
    const char *leaf = NULL;
    char sum_leaf[ODY_CKPT_PATH_MAX + sizeof ODY_CKPT_VALUE_CHECKSUM];
    ody_status st = put_begin(ctx, ck, name, &group, &leaf);
    if (st != ODY_OK)
        return st;
    if (ody_ckpt_is_value_checksum(leaf)) { /* the name of another attribute's checksum */
        ody_ckpt_release(group);
        return ody_ckpt_fail_name(ctx, ck, name);
    }
    uint64_t sum = ody_ckpt_value_sum(cls, value);
    snprintf(sum_leaf, sizeof sum_leaf, "%s%s", leaf, ODY_CKPT_VALUE_CHECKSUM);
    herr_t rc = write_scalar_attr(group, leaf, file_type, mem_type, value);
    if (rc >= 0)
        rc = write_scalar_attr(group, sum_leaf, H5T_STD_U64LE, H5T_NATIVE_UINT64, &sum);
    ody_ckpt_release(group);
    return rc < 0 || ck->failed ? ody_ckpt_fail_write(ctx, ck, name) : ODY_OK;
}

/* Chunk shape: the whole shape, its leading dimensions halved until a chunk fits CHUNK_BYTES. */
static void chunk_shape(int rank, const hsize_t *dims, size_t elem_size, hsize_t *chunk)
{
    size_t bytes = elem_size;
    for (int i = 0; i < rank; i++) {
        chunk[i] = dims[i] > 0 ? dims[i] : 1;
        bytes *= chunk[i];
    }
    for (int i = 0; i < rank && bytes > CHUNK_BYTES; i++) {
        while (chunk[i] > 1 && bytes > CHUNK_BYTES) {
            bytes = bytes / chunk[i] * ((chunk[i] + 1) / 2);
            chunk[i] = (chunk[i] + 1) / 2;
        }
    }
}

typedef struct {
    hid_t file_type, mem_type;
    size_t elem_size;
    int rank;
    hsize_t dims[ODY_MAX_DIMS], maxdims[ODY_MAX_DIMS];
    const void *data; /* may be NULL when the dataset is empty */
    bool contiguous;  /* a tensor: one contiguous block */
} dataset_spec;

/* Create dataset `name` and write its data with its checksum: a tensor
 * contiguous (HDF5 writes it straight from the caller's buffer), anything
 * else chunked with Fletcher32. */
static ody_status put_dataset(ody_ctx *ctx, ody_ckpt *ck, const char *name, const dataset_spec *s)
{
    hid_t group = -1, space = -1, dcpl = -1, dapl = -1, dset = -1;
    const char *leaf = NULL;
    ody_status st = put_begin(ctx, ck, name, &group, &leaf);
    if (st != ODY_OK)
        return st;
    if (H5Lexists(group, leaf, H5P_DEFAULT) > 0) {
        ody_ckpt_release(group);
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: %s written twice", ck->path, name);
    }
    hsize_t chunk[ODY_MAX_DIMS], numel = 1;
    chunk_shape(s->rank, s->dims, s->elem_size, chunk);
    for (int i = 0; i < s->rank; i++)
        numel *= s->dims[i];
    space = H5Screate_simple(s->rank, s->dims, s->maxdims);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    dapl = H5Pcreate(H5P_DATASET_ACCESS);
    /* No chunk cache: the data is written by H5Dwrite, whose failure can be handled. */
    bool made = space >= 0 && dcpl >= 0 && dapl >= 0;
    size_t bytes = (size_t)numel * s->elem_size;
    /* A large tensor gets its space now, unfilled, for direct_write (checkpoint_direct.c). */
    bool direct = s->contiguous && bytes >= ODY_CKPT_DIRECT_MIN && ck->direct_fd >= 0;
    if (made && s->contiguous)
        made = H5Pset_layout(dcpl, H5D_CONTIGUOUS) >= 0;
    else if (made)
        made = H5Pset_chunk(dcpl, s->rank, chunk) >= 0 && H5Pset_fletcher32(dcpl) >= 0 &&
               H5Pset_chunk_cache(dapl, 0, 0, 1.0) >= 0;
    if (made && direct)
        made = H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0 &&
               H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0;
    if (made)
        dset = H5Dcreate2(group, leaf, s->file_type, space, H5P_DEFAULT, dcpl, dapl);
    haddr_t addr = direct && dset >= 0 ? H5Dget_offset(dset) : HADDR_UNDEF;
    uint64_t sum = 0;
    herr_t rc = dset < 0 ? -1 : 0;
    if (rc >= 0 && addr != HADDR_UNDEF && addr % ODY_CKPT_DIRECT_ALIGN == 0) {
        int err = ody_ckpt_direct_write(ck, addr, s->data, bytes, &sum);
        if (err) {
            ody_ckpt_note_error(ck, err, false);
            rc = -1;
        }
    } else if (rc >= 0) {
        if (numel)
            rc = H5Dwrite(dset, s->mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->data);
        sum = ody_ckpt_data_sum(ck, numel ? s->data : "", bytes);
    }
    if (rc >= 0) /* the checksum of the bytes just written */
        rc = write_scalar_attr(dset, ODY_CKPT_CHECKSUM, H5T_STD_U64LE, H5T_NATIVE_UINT64, &sum);
    if (dset >= 0 && H5Dclose(dset) < 0)
        rc = -1;
    ody_ckpt_release(dapl);
    ody_ckpt_release(dcpl);
    ody_ckpt_release(space);
    ody_ckpt_release(group);
    return rc < 0 || ck->failed ? ody_ckpt_fail_write(ctx, ck, name) : ODY_OK;
}

/* The temporary file, with the attributes that say what it is. */
static ody_status create_file(ody_ctx *ctx, ody_ckpt *ck)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    ody_ckpt_vfd_info driver = {driver_failed, ck};
    herr_t rc = fapl < 0 ? -1 : ody_ckpt_vfd_set(fapl, &driver);
    if (rc >= 0)
        rc = H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    if (rc >= 0) /* large tensors at block boundaries, for O_DIRECT */
        rc = H5Pset_alignment(fapl, ODY_CKPT_DIRECT_MIN, ODY_CKPT_DIRECT_ALIGN);
#if H5_VERSION_GE(1, 10, 7)
    if (rc >= 0) /* lock where the file system can, go on where it cannot */
        rc = H5Pset_file_locking(fapl, true, true);
#endif
    if (rc >= 0)
        ck->file = H5Fcreate(ck->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    ody_ckpt_release(fapl);
    if (ck->file < 0 || H5Fget_vfd_handle(ck->file, H5P_DEFAULT, (void **)&ck->fd) < 0)
        return ody_ckpt_fail_write(ctx, ck, "checkpoint");
    ody_ckpt_direct_open(ck);
    ody_status st = ody_ckpt_put_string(ctx, ck, "format", ODY_CKPT_FORMAT);
    if (st == ODY_OK)
        st = ody_ckpt_put_i64(ctx, ck, "format_version", ODY_CKPT_FORMAT_VERSION);
    return st;
}

ody_status ody_ckpt_create(ody_ctx *ctx, const char *path, ody_ckpt **out)
{
    *out = NULL;
    ody_ckpt *ck = NULL;
    ody_status st = ody_ckpt_alloc(ctx, path, &ck);
    if (st != ODY_OK)
        return st;
    snprintf(ck->tmp, sizeof ck->tmp, "%s.tmp.%ld", path, (long)getpid());
    ck->writing = true;
    ck->version = ODY_CKPT_FORMAT_VERSION;
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    st = create_file(ctx, ck);
    ody_ckpt_quiet_end(q);
    if (st != ODY_OK) {
        ody_ckpt_discard(ck);
        return st;
    }
    *out = ck;
    return ODY_OK;
}

ody_status ody_ckpt_put_tensor(ody_ctx *ctx, ody_ckpt *ck, const char *name, const ody_shape *shape,
                               const float *data)
{
    dataset_spec s = {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float), shape->ndim, {0}, {0}, data,
                      .contiguous = true};
    char text[96];
    bool ok = shape->ndim >= 1 && shape->ndim <= ODY_MAX_DIMS;
    for (int i = 0; ok && i < shape->ndim; i++) {
        ok = shape->dims[i] > 0;
        s.dims[i] = s.maxdims[i] = (hsize_t)shape->dims[i];
    }
    if (!ok)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: %s: invalid tensor shape %s (%d dimensions)",
                        ck->path, name, ody_shape_format(shape, text, sizeof text), shape->ndim);
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = put_dataset(ctx, ck, name, &s);
    ody_ckpt_quiet_end(q);
    start_writeback(ck);
    ody_heartbeat(ctx); /* ranks waiting for this checkpoint see it progress */
    return st;
}

ody_status ody_ckpt_put_series(ody_ctx *ctx, ody_ckpt *ck, const char *name, const double *v,
                               int64_t n)
{
    if (n < 0)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: %s: negative series length %lld", ck->path,
                        name, (long long)n);
    dataset_spec s = {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sizeof(double), 1, {(hsize_t)n},
                      {H5S_UNLIMITED}, v, false};
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = put_dataset(ctx, ck, name, &s);
    ody_ckpt_quiet_end(q);
    return st;
}

ody_status ody_ckpt_put_i64(ody_ctx *ctx, ody_ckpt *ck, const char *name, int64_t v)
{
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = put_attr(ctx, ck, name, H5T_INTEGER, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
    ody_ckpt_quiet_end(q);
    return st;
}

ody_status ody_ckpt_put_f64(ody_ctx *ctx, ody_ckpt *ck, const char *name, double v)
{
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = put_attr(ctx, ck, name, H5T_FLOAT, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
    ody_ckpt_quiet_end(q);
    return st;
}

ody_status ody_ckpt_put_string(ody_ctx *ctx, ody_ckpt *ck, const char *name, const char *text)
{
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    hid_t type = H5Tcopy(H5T_C_S1);
    herr_t rc = type < 0 ? -1 : H5Tset_size(type, H5T_VARIABLE);
    if (rc >= 0)
        rc = H5Tset_cset(type, H5T_CSET_UTF8);
    ody_status st = rc < 0 ? ody_ckpt_fail_write(ctx, ck, name)
                           : put_attr(ctx, ck, name, H5T_STRING, type, type, &text);
    ody_ckpt_release(type);
    ody_ckpt_quiet_end(q);
    return st;
}

/* ------------------------------------------------------------- committing */

/* fsync a file or directory by path; returns 0 or an errno. */
static int sync_path(const char *path, bool directory)
{
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
        return errno;
    int err = fsync(fd) == 0 ? 0 : errno;
    if (close(fd) != 0 && !err)
        err = errno;
    /* Some file systems cannot sync a directory; the rename stands. */
    if (directory && (err == EINVAL || err == ENOTSUP))
        err = 0;
    return err;
}

/* The directory part of path ("." when none). */
static void dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, len, ".");
    else if (slash == path)
        snprintf(dir, len, "/");
    else
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

/* The closing attributes, complete = 1 last; then flush and close the file. */
static ody_status finish_file(ody_ctx *ctx, ody_ckpt *ck)
{
    char created[32];
    time_t now = time(NULL);
    struct tm utc;
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &utc));
    ody_status st = ody_ckpt_put_string(ctx, ck, "program_version", ODY_VERSION);
    if (st == ODY_OK)
        st = ody_ckpt_put_string(ctx, ck, "created", created);
    if (st == ODY_OK)
        st = ody_ckpt_put_i64(ctx, ck, "complete", 1);
    if (st != ODY_OK)
        return st;
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_ckpt_direct_close(ck);
    herr_t rc = H5Fflush(ck->file, H5F_SCOPE_GLOBAL);
    if (rc >= 0) {
        rc = H5Fclose(ck->file); /* its writes may still fail over to memory */
        ck->file = -1;           /* not to close again */
        ck->fd = NULL;           /* the driver is gone */
    }
    ody_ckpt_quiet_end(q);
    return rc < 0 || ck->failed ? ody_ckpt_fail_write(ctx, ck, "checkpoint") : ODY_OK;
}

/* After finish_file: the temporary file to disk, renamed, and the rename to disk. */
static ody_status publish(ody_ctx *ctx, ody_ckpt *ck)
{
    char dir[ODY_CKPT_PATH_MAX];
    int err = sync_path(ck->tmp, false);
    if (err)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: cannot write checkpoint: %s", ck->path,
                        strerror(err));
    if (rename(ck->tmp, ck->path) != 0)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: cannot rename %s to it: %s", ck->path,
                        ck->tmp, strerror(errno));
    ck->writing = false; /* the temporary name is gone */
    dir_of(ck->path, dir, sizeof dir);
    err = sync_path(dir, true);
    if (err)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT,
                        "%s: written, but its directory %s cannot be synced: %s", ck->path, dir,
                        strerror(err));
    return ODY_OK;
}

ody_status ody_ckpt_commit(ody_ctx *ctx, ody_ckpt *ck)
{
    ody_status st;
    if (!ck->writing)
        st = ody_fail(ctx, ODY_ERR_INTERNAL, "%s: checkpoint opened for reading, not writing",
                      ck->path);
    else if (ck->failed)
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT,
                      "%s: cannot write checkpoint: an earlier write failed", ck->path);
    else
        st = finish_file(ctx, ck);
    if (st == ODY_OK)
        st = publish(ctx, ck);
    ody_ckpt_discard(ck);
    return st;
}

void ody_ckpt_abort(ody_ckpt *ck) { ody_ckpt_discard(ck); }

/*
 * io: writing a checkpoint file: create, put tensors, series and
 * attributes (each with its XXH3-64 checksum), commit (flushed, fsynced,
 * renamed into place, its directory fsynced). The on-disk layout:
 * checkpoints/README.md. Shared helpers: ckpt_common.c.
 */
#define _GNU_SOURCE
#include "io/ckpt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "odyssey/tensor.h"

#define CHUNK_BYTES ((size_t)1 << 20) /* the most a chunk holds */

/* Let the disk start on what is written so far while the next tensors are
 * checksummed and copied: the final fsync then finds little left to do.
 * Only a hint: errors surface at the fsync. */
static void start_writeback(const ody_ckpt *ck)
{
    if (ck->writing && ck->fd && !ck->diverted)
        sync_file_range(*ck->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

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
    /* A large tensor gets its space now, unfilled, for direct_write (ckpt_direct.c). */
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
    ody_ckpt_vfd_info driver = {ody_ckpt_driver_failed, ck};
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

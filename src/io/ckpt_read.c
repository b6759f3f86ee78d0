/*
 * io: checkpoint files (HDF5), opening, reading and verifying. The layout
 * and the shared helpers: ckpt_common.c. Public API: odyssey/io.h.
 */
#include "io/ckpt_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "odyssey/tensor.h"

#define VERIFY_BYTES ((size_t)4 << 20) /* the most ody_ckpt_verify reads at once */

/* ---------------------------------------------------------------- reading */

/*
 * Open dataset or attribute `name`. Missing: "PATH: no NAME in this
 * checkpoint"; a link that is not a dataset counts as missing too. With
 * parent, the group that holds it stays open there (release it), and
 * *leaf_out (unless NULL) points at its name in name.
 */
static ody_status open_member(ody_ctx *ctx, ody_ckpt *ck, const char *name, bool attribute,
                              hid_t *out, hid_t *parent, const char **leaf_out)
{
    char path[ODY_CKPT_PATH_MAX];
    const char *leaf = NULL;
    hid_t group = -1;
    *out = -1;
    if (parent)
        *parent = -1;
    if (!ody_ckpt_parse_name(name, path, sizeof path, &leaf))
        return ody_ckpt_fail_name(ctx, ck, name);
    int found = ody_ckpt_group_open(ck, path, false, &group);
    if (found < 0)
        return ody_ckpt_fail_read(ctx, ck, name);
    htri_t exists = !found      ? 0
                    : attribute ? H5Aexists(group, leaf)
                                : H5Lexists(group, leaf, H5P_DEFAULT);
    if (exists > 0)
        *out = attribute ? H5Aopen(group, leaf, H5P_DEFAULT) : H5Oopen(group, leaf, H5P_DEFAULT);
    if (parent && exists > 0 && *out >= 0) {
        *parent = group;
        if (leaf_out)
            *leaf_out = leaf;
    } else {
        ody_ckpt_release(group);
    }
    if (exists < 0 || (exists > 0 && *out < 0))
        return ody_ckpt_fail_read(ctx, ck, name);
    if (*out >= 0 && !attribute && H5Iget_type(*out) != H5I_DATASET) {
        ody_ckpt_release(*out);
        *out = -1;
    }
    if (*out < 0)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: no %s in this checkpoint", ck->path, name);
    return ODY_OK;
}

/* "120x400" */
static const char *dims_text(int rank, const hsize_t *dims, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? "x" : "",
                                 (unsigned long long)dims[i]);
    return rank ? buf : "scalar";
}

/*
 * Open float dataset `name`: *dset, its rank and dimensions (at most
 * ODY_MAX_DIMS). On failure nothing is left open.
 */
static ody_status open_floats(ody_ctx *ctx, ody_ckpt *ck, const char *name, hid_t *dset, int *rank,
                              hsize_t *dims)
{
    ody_status st = open_member(ctx, ck, name, false, dset, NULL, NULL);
    if (st != ODY_OK)
        return st;
    hid_t type = H5Dget_type(*dset), space = H5Dget_space(*dset);
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    *rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    bool fits = *rank >= 0 && *rank <= ODY_MAX_DIMS &&
                H5Sget_simple_extent_dims(space, dims, NULL) >= 0;
    ody_ckpt_release(type);
    ody_ckpt_release(space);
    if (*rank < 0 || cls == H5T_NO_CLASS)
        st = ody_ckpt_fail_read(ctx, ck, name);
    else if (cls != H5T_FLOAT || !fits)
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT,
                      "%s: %s is not a float array of at most %d dimensions", ck->path, name,
                      ODY_MAX_DIMS);
    if (st != ODY_OK) {
        ody_ckpt_release(*dset);
        *dset = -1;
    }
    return st;
}

/* Bytes of dset's data in mem_type (-1 if unreadable). */
static ssize_t dataset_bytes(hid_t dset, hid_t mem_type)
{
    hid_t space = H5Dget_space(dset);
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    ody_ckpt_release(space);
    return n < 0 ? -1 : (ssize_t)n * (ssize_t)H5Tget_size(mem_type);
}

/* dset's checksum attribute into *want: 1, 0 when it has none (format 1,
 * or a series of format 2), -1 when unreadable. */
static int stored_checksum(hid_t dset, uint64_t *want)
{
    htri_t has = H5Aexists(dset, ODY_CKPT_CHECKSUM);
    if (has <= 0)
        return has < 0 ? -1 : 0;
    hid_t attr = H5Aopen(dset, ODY_CKPT_CHECKSUM, H5P_DEFAULT);
    herr_t rc = attr >= 0 ? H5Aread(attr, H5T_NATIVE_UINT64, want) : -1;
    ody_ckpt_release(attr);
    return rc < 0 ? -1 : 1;
}

/* Where dset's `bytes` of data start in the file if they can be read
 * there directly (contiguous, all stored, in mem_type already), else HADDR_UNDEF. */
static haddr_t direct_address(hid_t dset, hid_t mem_type, size_t bytes)
{
    hid_t dcpl = H5Dget_create_plist(dset), type = H5Dget_type(dset);
    bool plain = dcpl >= 0 && type >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS &&
                 H5Tequal(type, mem_type) > 0 && H5Dget_storage_size(dset) == bytes;
    ody_ckpt_release(type);
    ody_ckpt_release(dcpl);
    return plain ? H5Dget_offset(dset) : HADDR_UNDEF;
}

/* Read all of dset (`bytes` in mem_type) into out and check it against its
 * checksum (of the file's kind), large tensors through O_DIRECT
 * (ckpt_direct.c): 1 read and matching (or no checksum, before format
 * 3), 0 a mismatch or, in format 3, no checksum (marked in ck's error), -1
 * a failed read. */
static int read_checked(ody_ckpt *ck, hid_t dset, hid_t mem_type, void *out, size_t bytes)
{
    uint64_t want = 0, got = 0;
    int has = stored_checksum(dset, &want);
    if (has < 0)
        return -1;
    if (!has && ck->version >= 3) {
        ck->err.unsummed = true;
        return 0;
    }
    haddr_t addr = has && ck->direct_fd >= 0 && bytes >= ODY_CKPT_DIRECT_MIN
                       ? direct_address(dset, mem_type, bytes)
                       : HADDR_UNDEF;
    int err = addr != HADDR_UNDEF ? ody_ckpt_direct_read(ck, addr, out, bytes, &got)
                                  : ODY_CKPT_DIRECT_UNAVAILABLE;
    if (err != ODY_CKPT_DIRECT_UNAVAILABLE && err) {
        ody_ckpt_note_error(ck, err > 0 ? err : 0, err < 0);
        return -1;
    }
    if (err == ODY_CKPT_DIRECT_UNAVAILABLE) {
        if (bytes && H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
            return -1;
        if (has)
            got = ody_ckpt_data_sum(ck, out, bytes);
    }
    if (has && got != want)
        ck->err.checksum = true; /* reported as HDF5's own Fletcher32 failures are */
    return !has || got == want ? 1 : 0;
}

static ody_status read_dataset(ody_ctx *ctx, ody_ckpt *ck, const char *name, hid_t dset,
                               hid_t mem_type, void *out)
{
    ssize_t bytes = dataset_bytes(dset, mem_type);
    int ok = bytes < 0 ? -1 : read_checked(ck, dset, mem_type, out, (size_t)bytes);
    return ok == 1 ? ODY_OK : ody_ckpt_fail_read(ctx, ck, name);
}

static ody_status get_tensor(ody_ctx *ctx, ody_ckpt *ck, const char *name, const ody_shape *shape,
                             float *out)
{
    hid_t dset = -1;
    hsize_t dims[ODY_MAX_DIMS];
    int rank = 0;
    ody_status st = open_floats(ctx, ck, name, &dset, &rank, dims);
    bool same = st == ODY_OK && rank == shape->ndim;
    for (int i = 0; same && i < rank; i++)
        same = dims[i] == (hsize_t)shape->dims[i];
    if (st == ODY_OK && !same) {
        char have[96], want[96];
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: %s has shape %s but the model expects %s",
                      ck->path, name, dims_text(rank, dims, have, sizeof have),
                      ody_shape_format(shape, want, sizeof want));
    }
    if (st == ODY_OK)
        st = read_dataset(ctx, ck, name, dset, H5T_NATIVE_FLOAT, out);
    ody_ckpt_release(dset);
    return st;
}

static ody_status get_series(ody_ctx *ctx, ody_ckpt *ck, const char *name, double **v, int64_t *n)
{
    hid_t dset = -1;
    hsize_t dims[ODY_MAX_DIMS];
    int rank = 0;
    ody_status st = open_floats(ctx, ck, name, &dset, &rank, dims);
    if (st == ODY_OK && rank != 1)
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: %s is not a series (%d dimensions)", ck->path,
                      name, rank);
    double *values = NULL;
    if (st == ODY_OK && dims[0] > 0 && !(values = malloc(dims[0] * sizeof *values)))
        st = ody_fail(ctx, ODY_ERR_NOMEM, "%s: out of memory for %s", ck->path, name);
    if (st == ODY_OK && dims[0] > 0)
        st = read_dataset(ctx, ck, name, dset, H5T_NATIVE_DOUBLE, values);
    ody_ckpt_release(dset);
    if (st != ODY_OK) {
        free(values);
        return st;
    }
    *v = values;
    *n = (int64_t)dims[0];
    return ODY_OK;
}

/* Read a string attribute (variable-length or fixed-length) into malloc'd *text. */
/* 0 read, -1 HDF5 could not, -2 out of memory (not the file's fault). */
static int read_string(hid_t attr, hid_t type, char **text)
{
    htri_t vlen = H5Tis_variable_str(type);
    size_t size = vlen > 0 ? sizeof(char *) : H5Tget_size(type);
    char *raw = NULL, *fixed = malloc(size + 1);
    if (!fixed)
        return -2;
    herr_t rc = vlen < 0 ? -1 : H5Aread(attr, type, vlen > 0 ? (void *)&raw : fixed);
    if (rc >= 0 && vlen > 0) {
        *text = strdup(raw ? raw : "");
        H5free_memory(raw);
        free(fixed);
        return *text ? 0 : -2;
    }
    if (rc < 0) {
        free(fixed);
        return -1;
    }
    fixed[size] = '\0';
    *text = fixed;
    return 0;
}

static const char *class_text(H5T_class_t cls)
{
    switch (cls) {
    case H5T_INTEGER: return "an integer";
    case H5T_FLOAT: return "a float";
    case H5T_STRING: return "a string";
    default: return "of another type";
    }
}

/*
 * Format 3: compare got, the checksum of the value of attribute `leaf` of
 * loc, with its companion "<leaf>.checksum": 1 equal; 0 different or no
 * companion (marked in ck's error); -1 unreadable.
 */
static int value_sum_matches(ody_ckpt *ck, hid_t loc, const char *leaf, uint64_t got)
{
    char sum_leaf[ODY_CKPT_PATH_MAX + sizeof ODY_CKPT_VALUE_CHECKSUM];
    snprintf(sum_leaf, sizeof sum_leaf, "%s%s", leaf, ODY_CKPT_VALUE_CHECKSUM);
    htri_t has = H5Aexists(loc, sum_leaf);
    if (has == 0)
        ck->err.unsummed = true;
    if (has <= 0)
        return has < 0 ? -1 : 0;
    uint64_t want = 0;
    hid_t attr = H5Aopen(loc, sum_leaf, H5P_DEFAULT);
    herr_t rc = attr >= 0 ? H5Aread(attr, H5T_NATIVE_UINT64, &want) : -1;
    ody_ckpt_release(attr);
    if (rc < 0)
        return -1;
    if (want != got)
        ck->err.checksum = true;
    return want == got;
}

/* Read scalar attribute `name` of class `want` (a string into char **out),
 * checked against its checksum in format 3. */
static ody_status get_attr(ody_ctx *ctx, ody_ckpt *ck, const char *name, H5T_class_t want,
                           hid_t mem_type, void *out)
{
    hid_t attr = -1, type = -1, space = -1, group = -1;
    const char *leaf = NULL;
    ody_status st = open_member(ctx, ck, name, true, &attr, &group, &leaf);
    if (st != ODY_OK)
        return st;
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    herr_t rc = -1;
    if (cls == want && npoints == 1)
        rc = want == H5T_STRING ? read_string(attr, type, out) : H5Aread(attr, mem_type, out);
    if (rc == -2)
        st = ody_fail(ctx, ODY_ERR_NOMEM, "%s: out of memory reading %s", ck->path, name);
    else if (cls == H5T_NO_CLASS || npoints < 0 || (cls == want && npoints == 1 && rc < 0))
        st = ody_ckpt_fail_read(ctx, ck, name);
    else if (cls != want || npoints != 1)
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: %s is %s%s, not %s", ck->path, name,
                      class_text(cls), npoints != 1 ? " array" : "", class_text(want));
    if (st == ODY_OK && ck->version >= 3 &&
        value_sum_matches(ck, group, leaf, ody_ckpt_value_sum(want, out)) != 1) {
        st = ody_ckpt_fail_read(ctx, ck, name);
        if (want == H5T_STRING) { /* nothing trusted leaves */
            free(*(char **)out);
            *(char **)out = NULL;
        }
    }
    ody_ckpt_release(space);
    ody_ckpt_release(type);
    ody_ckpt_release(attr);
    ody_ckpt_release(group);
    return st;
}

bool ody_ckpt_has(ody_ckpt *ck, const char *name)
{
    char path[ODY_CKPT_PATH_MAX];
    const char *leaf = NULL;
    hid_t group = -1;
    if (!ck || !ody_ckpt_parse_name(name, path, sizeof path, &leaf))
        return false;
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    bool found = ody_ckpt_group_open(ck, path, false, &group) > 0 &&
                 (H5Lexists(group, leaf, H5P_DEFAULT) > 0 || H5Aexists(group, leaf) > 0);
    ody_ckpt_release(group);
    H5Eclear2(H5E_DEFAULT);
    ody_ckpt_quiet_end(q);
    return found;
}

ody_status ody_ckpt_get_tensor(ody_ctx *ctx, ody_ckpt *ck, const char *name, const ody_shape *shape,
                               float *out)
{
    ody_heartbeat(ctx); /* ranks waiting for this read see it progress */
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = get_tensor(ctx, ck, name, shape, out);
    ody_ckpt_quiet_end(q);
    return st;
}

ody_status ody_ckpt_get_series(ody_ctx *ctx, ody_ckpt *ck, const char *name, double **v,
                               int64_t *n)
{
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = get_series(ctx, ck, name, v, n);
    ody_ckpt_quiet_end(q);
    return st;
}

ody_status ody_ckpt_get_i64(ody_ctx *ctx, ody_ckpt *ck, const char *name, int64_t *v)
{
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = get_attr(ctx, ck, name, H5T_INTEGER, H5T_NATIVE_INT64, v);
    ody_ckpt_quiet_end(q);
    return st;
}

ody_status ody_ckpt_get_f64(ody_ctx *ctx, ody_ckpt *ck, const char *name, double *v)
{
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = get_attr(ctx, ck, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v);
    ody_ckpt_quiet_end(q);
    return st;
}

ody_status ody_ckpt_get_string(ody_ctx *ctx, ody_ckpt *ck, const char *name, char **text)
{
    *text = NULL;
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    ody_status st = get_attr(ctx, ck, name, H5T_STRING, -1, text);
    ody_ckpt_quiet_end(q);
    return st;
}

/* -------------------------------------------------------------- verifying */

typedef struct {
    ody_ctx *ctx;
    ody_ckpt *ck;
    char name[ODY_CKPT_PATH_MAX]; /* the object visited: "" (the root), "model/fc1.weight" */
    ody_status st;
} verifier;

/* Append "/part" (or "part" at the root) to v->name; returns the old length to restore. */
static size_t enter(verifier *v, const char *part)
{
    size_t len = strlen(v->name);
    snprintf(v->name + len, sizeof v->name - len, "%s%s", len ? "/" : "", part);
    return len;
}

/* Read every element of a numeric dataset, in slabs along its first dimension. */
static herr_t read_slabs(hid_t dset, hid_t mem_type)
{
    hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
    hid_t fspace = H5Dget_space(dset), mspace = -1;
    int rank = fspace >= 0 ? H5Sget_simple_extent_dims(fspace, dims, NULL) : -1;
    size_t row = H5Tget_size(mem_type);
    for (int i = 1; i < rank; i++)
        row *= dims[i];
    hsize_t rows = rank > 0 ? (hsize_t)(VERIFY_BYTES / (row ? row : 1)) : 1;
    rows = rows < 1 ? 1 : rank > 0 && rows > dims[0] ? dims[0] : rows;
    void *buf = rank >= 0 ? malloc(rows * row + 1) : NULL;
    herr_t rc = buf ? 0 : -1;
    if (rank == 0 && buf)
        rc = H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    for (hsize_t first = 0; rank > 0 && rc >= 0 && first < dims[0]; first += rows) {
        memcpy(count, dims, sizeof count);
        start[0] = first;
        count[0] = first + rows > dims[0] ? dims[0] - first : rows;
        mspace = H5Screate_simple(rank, count, NULL);
        rc = mspace < 0 ? -1
                        : H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
        if (rc >= 0)
            rc = H5Dread(dset, mem_type, mspace, fspace, H5P_DEFAULT, buf);
        ody_ckpt_release(mspace);
    }
    ody_ckpt_release(fspace);
    free(buf);
    return rc;
}

/* Read a dataset with a checksum whole and check it (-1 on a mismatch,
 * marked in ck's error). */
static herr_t read_summed(ody_ckpt *ck, hid_t dset, hid_t mem_type)
{
    ssize_t bytes = dataset_bytes(dset, mem_type);
    void *buf = bytes >= 0 ? malloc((size_t)bytes + 1) : NULL;
    herr_t rc = buf && read_checked(ck, dset, mem_type, buf, (size_t)bytes) == 1 ? 0 : -1;
    free(buf);
    return rc;
}

/* Read the data of a dataset (numeric ones; our checkpoints hold no others). */
static herr_t verify_data(ody_ckpt *ck, hid_t dset)
{
    hid_t type = H5Dget_type(dset), mem_type = -1;
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    bool numeric = cls == H5T_INTEGER || cls == H5T_FLOAT;
    if (numeric)
        mem_type = H5Tget_native_type(type, H5T_DIR_ASCEND);
    htri_t summed = numeric ? H5Aexists(dset, ODY_CKPT_CHECKSUM) : 0;
    bool unsummed = summed == 0 && ck->version >= 3; /* format 3: every dataset has one */
    if (unsummed)
        ck->err.unsummed = true;
    herr_t rc = cls == H5T_NO_CLASS || summed < 0 || unsummed ? -1
                : !numeric                        ? 0
                : mem_type < 0                    ? -1
                : summed                          ? read_summed(ck, dset, mem_type)
                                                  : read_slabs(dset, mem_type);
    ody_ckpt_release(mem_type);
    ody_ckpt_release(type);
    return rc;
}

/* A scalar integer, float or string attribute's value, read as get_attr
 * reads it, into *sum (ody_ckpt_value_sum); -1 when it is none of those
 * or unreadable. */
static herr_t read_value_sum(hid_t attr, hid_t type, H5T_class_t cls, uint64_t *sum)
{
    char *text = NULL;
    int64_t i64 = 0;
    double f64 = 0;
    herr_t rc = -1;
    if (cls == H5T_STRING && (rc = read_string(attr, type, &text)) == 0)
        *sum = ody_ckpt_value_sum(cls, &text);
    else if (cls == H5T_INTEGER && (rc = H5Aread(attr, H5T_NATIVE_INT64, &i64)) >= 0)
        *sum = ody_ckpt_value_sum(cls, &i64);
    else if (cls == H5T_FLOAT && (rc = H5Aread(attr, H5T_NATIVE_DOUBLE, &f64)) >= 0)
        *sum = ody_ckpt_value_sum(cls, &f64);
    free(text);
    return rc < 0 ? -1 : 0;
}

/*
 * Read attribute `leaf` of loc: strings as strings, anything else in its
 * native type. In format 3 an attribute of a group (other than a checksum
 * companion) must be a scalar that matches its checksum (-1 otherwise,
 * marked in ck's error).
 */
static herr_t verify_attr(ody_ckpt *ck, hid_t loc, const char *leaf, hid_t attr)
{
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr), mem_type = -1;
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    bool summed = ck->version >= 3 && H5Iget_type(loc) == H5I_GROUP &&
                  !ody_ckpt_is_value_checksum(leaf);
    herr_t rc = -1;
    char *text = NULL;
    uint64_t sum = 0;
    if (summed && npoints == 1) {
        rc = read_value_sum(attr, type, cls, &sum);
        if (rc >= 0 && value_sum_matches(ck, loc, leaf, sum) != 1)
            rc = -1;
    } else if (summed) {
        ck->err.unsummed = npoints >= 0; /* not one of ours: it has none */
    } else if (cls == H5T_STRING && npoints == 1) {
        rc = read_string(attr, type, &text);
        free(text);
    } else if (cls != H5T_NO_CLASS && npoints >= 0 &&
               (mem_type = H5Tget_native_type(type, H5T_DIR_ASCEND)) >= 0) {
        void *buf = malloc((size_t)npoints * H5Tget_size(mem_type) + 1);
        rc = buf ? H5Aread(attr, mem_type, buf) : -1;
        free(buf);
    }
    ody_ckpt_release(mem_type);
    ody_ckpt_release(space);
    ody_ckpt_release(type);
    return rc;
}

static herr_t visit_attr(hid_t loc, const char *attr_name, const H5A_info_t *info, void *data)
{
    verifier *v = data;
    size_t len = enter(v, attr_name);
    hid_t attr = H5Aopen(loc, attr_name, H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : verify_attr(v->ck, loc, attr_name, attr);
    ody_ckpt_release(attr);
    if (rc < 0)
        v->st = ody_ckpt_fail_read(v->ctx, v->ck, v->name);
    v->name[len] = '\0';
    return rc < 0 ? 1 : 0;
}

static herr_t visit_link(hid_t group, const char *link, const H5L_info_t *info, void *data);

/* The attributes of an object, then its members (a group) or its data (a dataset). */
static herr_t visit_object(verifier *v, hid_t obj)
{
    H5I_type_t kind = H5Iget_type(obj);
    herr_t rc = H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, NULL, visit_attr, v);
    if (rc == 0 && kind == H5I_GROUP)
        rc = H5Literate(obj, H5_INDEX_NAME, H5_ITER_INC, NULL, visit_link, v);
    else if (rc == 0 && kind == H5I_DATASET)
        rc = verify_data(v->ck, obj);
    if (rc < 0)
        v->st = ody_ckpt_fail_read(v->ctx, v->ck, v->name[0] ? v->name : "/");
    return rc != 0 ? 1 : 0;
}

static herr_t visit_link(hid_t group, const char *link, const H5L_info_t *info, void *data)
{
    verifier *v = data;
    if (info->type != H5L_TYPE_HARD) /* our files hold none; do not follow */
        return 0;
    size_t len = enter(v, link);
    hid_t obj = H5Oopen(group, link, H5P_DEFAULT);
    herr_t rc = obj >= 0 ? visit_object(v, obj) : -1;
    if (obj < 0)
        v->st = ody_ckpt_fail_read(v->ctx, v->ck, v->name);
    ody_ckpt_release(obj);
    v->name[len] = '\0';
    return rc != 0 ? 1 : 0;
}

ody_status ody_ckpt_verify(ody_ctx *ctx, ody_ckpt *ck)
{
    verifier v = {ctx, ck, "", ODY_OK};
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    hid_t root = H5Gopen2(ck->file, "/", H5P_DEFAULT);
    if (root < 0) {
        v.st = ody_ckpt_fail_read(ctx, ck, "/");
    } else {
        visit_object(&v, root);
        ody_ckpt_release(root);
    }
    ody_ckpt_quiet_end(q);
    return v.st;
}

/* ---------------------------------------------------------------- opening */

static htri_t is_hdf5(const char *path)
{
#if H5_VERSION_GE(1, 12, 0)
    return H5Fis_accessible(path, H5P_DEFAULT);
#else
    return H5Fis_hdf5(path);
#endif
}

static ody_status fail_incomplete(ody_ctx *ctx, const ody_ckpt *ck)
{
    return ody_fail(ctx, ODY_ERR_CHECKPOINT,
                    "%s: incomplete checkpoint (the writer did not finish)", ck->path);
}

static ody_status open_file(ody_ctx *ctx, ody_ckpt *ck)
{
    struct stat sb;
    char why[256];
    int err = stat(ck->path, &sb) != 0 ? errno : S_ISDIR(sb.st_mode) ? EISDIR : 0;
    if (err)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: cannot open checkpoint: %s", ck->path,
                        strerror(err));
    htri_t hdf5 = is_hdf5(ck->path);
    if (hdf5 == 0)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: not an HDF5 file", ck->path);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    herr_t rc = hdf5 < 0 || fapl < 0 ? -1 : H5Pset_fapl_sec2(fapl);
#if H5_VERSION_GE(1, 10, 7)
    if (rc >= 0)
        rc = H5Pset_file_locking(fapl, true, true);
#endif
    if (rc >= 0)
        ck->file = H5Fopen(ck->path, H5F_ACC_RDONLY, fapl);
    ody_ckpt_release(fapl);
    /* Large tensors come through O_DIRECT (ckpt_direct.c). Where the
     * file system refuses it, ask the kernel to read the whole file ahead,
     * so the disk works while tensors are checksummed and copied (a hint:
     * nothing fails with it). */
    int *fd = NULL;
    if (ck->file >= 0)
        ody_ckpt_direct_open(ck);
    if (ck->file >= 0 && ck->direct_fd < 0 &&
        H5Fget_vfd_handle(ck->file, H5P_DEFAULT, (void **)&fd) >= 0 && fd) {
        posix_fadvise(*fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        posix_fadvise(*fd, 0, 0, POSIX_FADV_WILLNEED);
    }
    if (ck->file < 0 && ck->err.unfinished) /* its writer never closed it */
        return fail_incomplete(ctx, ck);
    if (ck->file < 0)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s: cannot open checkpoint: %s", ck->path,
                        ody_ckpt_read_reason(ck, why, sizeof why));
    return ODY_OK;
}

/* Our format attribute, a version we read, and the completion mark. */
static ody_status check_identity(ody_ctx *ctx, ody_ckpt *ck)
{
    char *format = NULL;
    int64_t version = 0, complete = 0;
    if (!ody_ckpt_has(ck, "format"))
        return ody_fail(ctx, ODY_ERR_CHECKPOINT,
                        "%s: not an odyssey-dist checkpoint (no format attribute)", ck->path);
    ody_status st = get_attr(ctx, ck, "format", H5T_STRING, -1, &format);
    if (st == ODY_OK && strcmp(format, ODY_CKPT_FORMAT) != 0)
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT,
                      "%s: not an odyssey-dist checkpoint (format '%.80s')", ck->path, format);
    free(format);
    if (st == ODY_OK)
        st = get_attr(ctx, ck, "format_version", H5T_INTEGER, H5T_NATIVE_INT64, &version);
    if (st == ODY_OK && (version < 1 || version > ODY_CKPT_FORMAT_VERSION))
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT,
                      "%s: checkpoint format version %lld is not supported (this program "
                      "reads versions 1 to %d%s)",
                      ck->path, (long long)version, ODY_CKPT_FORMAT_VERSION,
                      version > ODY_CKPT_FORMAT_VERSION ? "; the file is from a newer odyssey-dist"
                                                        : "");
    /* From here on, attributes are checked against their checksums (format
     * 3), the two read before as well; datasets get the version's checksum. */
    if (st == ODY_OK)
        ck->version = version;
    if (st == ODY_OK && version >= 3) {
        format = NULL;
        st = get_attr(ctx, ck, "format", H5T_STRING, -1, &format);
        free(format);
        if (st == ODY_OK)
            st = get_attr(ctx, ck, "format_version", H5T_INTEGER, H5T_NATIVE_INT64, &version);
    }
    if (st == ODY_OK && ody_ckpt_has(ck, "complete"))
        st = get_attr(ctx, ck, "complete", H5T_INTEGER, H5T_NATIVE_INT64, &complete);
    if (st == ODY_OK && complete != 1)
        st = fail_incomplete(ctx, ck);
    return st;
}

ody_status ody_ckpt_open(ody_ctx *ctx, const char *path, ody_ckpt **out)
{
    *out = NULL;
    ody_ckpt *ck = NULL;
    ody_status st = ody_ckpt_alloc(ctx, path, &ck);
    if (st != ODY_OK)
        return st;
    ody_ckpt_quiet q = ody_ckpt_quiet_begin(ck);
    st = open_file(ctx, ck);
    if (st == ODY_OK)
        st = check_identity(ctx, ck);
    ody_ckpt_quiet_end(q);
    if (st != ODY_OK) {
        ody_ckpt_discard(ck);
        return st;
    }
    *out = ck;
    return ODY_OK;
}

void ody_ckpt_close(ody_ckpt *ck) { ody_ckpt_abort(ck); }

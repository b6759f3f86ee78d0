/*
 * data: HDF5 data sets, read a batch at a time through HDF5 selections.
 *
 * Layout of the file (data.name: hdf5, data.path: the file):
 *
 *   /train/images   (N, C, H, W) or (N, H, W) (then C = 1); uint8 or float32
 *   /train/labels   (N); any integer type, read as int32; 0 <= label < classes
 *   /test/images    the same, optional: needed only for data.validation: test
 *   /test/labels
 *   attribute num_classes on the root group: integer, optional; when present
 *                   it must equal the model's model.num_classes
 *
 *   attributes pixel_mean and pixel_std on an images data set: floats,
 *                   optional (both or neither); the pixels' mean and standard
 *                   deviation after scaling to [0, 1] (odyssey-convert
 *                   writes those of the data sets it knows)
 *
 * uint8 images are normalised like IDX ones: (raw * scale - mean) / std,
 * with the same float operations (ody_normalize_table), so a converted file
 * trains to the same bits as the IDX files. mean and std are data.mean and
 * data.std when given, else (data.standardize) the file's pixel_mean and
 * pixel_std; a file without them is read unstandardised, with a warning.
 * float32 images are used as stored, so data.scale does not apply to them:
 * (raw - mean) / std. Any chunking or none; compression works but costs
 * time on every read, since every batch touches chunks all over the file.
 *
 * What a data set holds: the open file and images data set (for its
 * lifetime), every label (N int32s, read and range-checked at open, so a
 * bad label is reported before training starts) and read buffers for one
 * piece of at most PIECE_ROWS samples. Never the images: a read selects the
 * rows it needs as a union of hyperslabs, one per run of consecutive
 * indices. HDF5 delivers such a selection in file order, so a piece's
 * indices are sorted first (duplicates read once) and the rows scattered
 * back into the order asked for. A batch longer than a piece is read piece
 * by piece. read() never allocates: it may run on a loader's prefetch
 * thread, whose ctx is a private copy that cannot account for memory.
 *
 * A read moves only the selected samples: the file is opened without a
 * sieve buffer (else every sample of a contiguous data set would cost a
 * 64 KiB read) and the images data set without a chunk cache (else every
 * sample of a chunked one would bring in its whole chunk). Measured on
 * Fashion-MNIST, 10 batches of 64: 570 KB read, the samples and labels.
 *
 * Threads: Debian's HDF5 is not built thread-safe, so every HDF5 call here
 * is made holding ody_hdf5_lock. A read holds it from start to end, which
 * also guards the data set's buffers: the two halves of a split share one
 * HDF5 data set and may be read from two loaders' threads at once.
 */
#include "data/data_internal.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

/* A piece: at most this many samples and (unless one sample is larger) this many bytes. */
#define PIECE_ROWS 256
#define PIECE_BYTES ((size_t)4 << 20)
/* Samples claiming more elements than this are a corrupt file, not a data set. */
#define MAX_SAMPLE_NUMEL ((int64_t)1 << 28)

/*
 * The one global of the library: HDF5 itself is a process-wide, non-thread-
 * safe singleton, so the lock that serialises calls into it has to be
 * process-wide too.
 */
static pthread_mutex_t hdf5_mutex;
static pthread_once_t hdf5_mutex_once = PTHREAD_ONCE_INIT;

/* Recursive: a holder (the checkpoint writer) may call helpers that lock too. */
static void hdf5_mutex_init(void)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&hdf5_mutex, &attr);
    pthread_mutexattr_destroy(&attr);
}

void ody_hdf5_lock(void)
{
    pthread_once(&hdf5_mutex_once, hdf5_mutex_init);
    pthread_mutex_lock(&hdf5_mutex);
}

void ody_hdf5_unlock(void) { pthread_mutex_unlock(&hdf5_mutex); }

/* One sample of a piece: its index in the file and its position in the batch. */
typedef struct {
    int64_t index;
    int position;
} row_ref;

typedef struct {
    ody_dataset ds;
    hid_t file, images;  /* open for the data set's lifetime */
    hid_t file_space;    /* images' dataspace, reselected on every read */
    hid_t mem_space;     /* (piece_rows * numel), reselected on every read */
    hid_t mem_type;      /* H5T_NATIVE_UINT8 or H5T_NATIVE_FLOAT */
    bool is_float;
    int rank;            /* of images: 3 or 4 */
    hsize_t dims[4];     /* of images */
    size_t numel;        /* elements of one sample */
    size_t row_bytes;    /* bytes of one sample in memory */
    int piece_rows;
    int32_t *labels;     /* (labels_n) every label of the group */
    int64_t labels_n;
    uint8_t *raw;        /* (piece_rows, row_bytes) one piece, in file order */
    row_ref *refs;       /* (piece_rows) the piece sorted by index */
    int *slot;           /* (piece_rows) batch position -> row of raw */
    float table[256];    /* uint8: normalised value of each raw byte */
} hdf5_dataset;

/* --------------------------------------------------------- HDF5 errors */

/* The first line of the innermost (most specific) error into data (160 bytes). */
static herr_t innermost_error(unsigned n, const H5E_error2_t *err, void *data)
{
    if (n == 0 && err->desc)
        snprintf(data, 160, "%.*s", (int)strcspn(err->desc, "\n"), err->desc);
    return 0;
}

/* Fail with "source: what: HDF5's innermost message" (call with the lock held). */
static ody_status h5_fail(ody_ctx *ctx, const char *source, const char *what)
{
    char reason[160] = "unknown HDF5 error";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, reason);
    H5Eclear2(H5E_DEFAULT);
    return ody_fail(ctx, ODY_ERR_DATA, "%s: %s (HDF5: %s)", source, what, reason);
}

static void close_id(hid_t id, herr_t (*close)(hid_t))
{
    if (id > 0)
        close(id);
}

/* ----------------------------------------------------------------- read */

static int by_index(const void *a, const void *b)
{
    int64_t x = ((const row_ref *)a)->index, y = ((const row_ref *)b)->index;
    return (x > y) - (x < y);
}

/* Sort the piece by index into refs, fill slot; returns the distinct indices. */
static int plan_piece(hdf5_dataset *d, const int64_t *indices, int count)
{
    for (int r = 0; r < count; r++)
        d->refs[r] = (row_ref){.index = indices[r], .position = r};
    qsort(d->refs, (size_t)count, sizeof *d->refs, by_index);
    int distinct = 0;
    for (int k = 0; k < count; k++) {
        if (k == 0 || d->refs[k].index != d->refs[k - 1].index)
            distinct++;
        d->slot[d->refs[k].position] = distinct - 1;
    }
    return distinct;
}

/* Select the piece's rows in the file (a hyperslab per run) and `distinct` rows in memory. */
static herr_t select_piece(hdf5_dataset *d, int count, int distinct)
{
    hsize_t start[4] = {0}, block[4];
    memcpy(block, d->dims, sizeof block);
    if (H5Sselect_none(d->file_space) < 0)
        return -1;
    for (int k = 0; k < count;) {
        start[0] = (hsize_t)d->refs[k].index;
        block[0] = 1;
        for (k++; k < count; k++) {
            hsize_t next = (hsize_t)d->refs[k].index;
            if (next == start[0] + block[0])
                block[0]++;
            else if (next != start[0] + block[0] - 1) /* not a duplicate either: a gap */
                break;
        }
        if (H5Sselect_hyperslab(d->file_space, H5S_SELECT_OR, start, NULL, block, NULL) < 0)
            return -1;
    }
    hsize_t mem_start = 0, mem_count = (hsize_t)distinct * d->numel;
    return H5Sselect_hyperslab(d->mem_space, H5S_SELECT_SET, &mem_start, NULL, &mem_count, NULL);
}

/* Rows of raw back into batch order, normalised. */
static void scatter_piece(const hdf5_dataset *d, const int64_t *indices, int count, float *x,
                          int32_t *y)
{
    const float mean = d->ds.norm.mean, std = d->ds.norm.std;
    for (int r = 0; r < count; r++) {
        const uint8_t *src = d->raw + (size_t)d->slot[r] * d->row_bytes;
        float *dst = x + (size_t)r * d->numel;
        if (d->is_float) {
            const float *values = (const float *)src;
            for (size_t e = 0; e < d->numel; e++)
                dst[e] = (values[e] - mean) / std;
        } else {
            ody_normalize_bytes(d->ds.norm, d->table, src, d->numel, dst);
        }
        y[r] = d->labels[indices[r]];
    }
}

/* Read one piece (count <= piece_rows). Call with the lock held. */
static ody_status read_piece(hdf5_dataset *d, ody_ctx *ctx, const int64_t *indices, int count,
                             float *x, int32_t *y)
{
    int distinct = plan_piece(d, indices, count);
    herr_t rc = select_piece(d, count, distinct);
    if (rc >= 0)
        rc = H5Dread(d->images, d->mem_type, d->mem_space, d->file_space, H5P_DEFAULT, d->raw);
    if (rc < 0) {
        char what[64];
        snprintf(what, sizeof what, "cannot read %d samples", distinct);
        return h5_fail(ctx, d->ds.source, what);
    }
    scatter_piece(d, indices, count, x, y);
    return ODY_OK;
}

static ody_status hdf5_read(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n, float *x,
                            int32_t *y)
{
    hdf5_dataset *d = (hdf5_dataset *)ds;
    ody_status st = ODY_OK;
    ody_hdf5_lock();
    H5E_BEGIN_TRY
    {
        for (int first = 0; first < n && st == ODY_OK; first += d->piece_rows) {
            int count = n - first < d->piece_rows ? n - first : d->piece_rows;
            st = read_piece(d, ctx, indices + first, count, x + (size_t)first * d->numel,
                            y + first);
        }
    }
    H5E_END_TRY;
    ody_hdf5_unlock();
    return st;
}

/* -------------------------------------------------------------- release */

static void hdf5_destroy(ody_dataset *ds, ody_ctx *ctx)
{
    hdf5_dataset *d = (hdf5_dataset *)ds;
    /* Closing cannot fail in a way worth reporting: the file was opened read-only. */
    ody_hdf5_lock();
    H5E_BEGIN_TRY
    {
        close_id(d->mem_space, H5Sclose);
        close_id(d->file_space, H5Sclose);
        close_id(d->images, H5Dclose);
        close_id(d->file, H5Fclose);
    }
    H5E_END_TRY;
    ody_hdf5_unlock();
    size_t rows = (size_t)d->piece_rows;
    ody_free(ctx, d->labels, (size_t)d->labels_n * sizeof *d->labels);
    ody_free(ctx, d->raw, rows * d->row_bytes);
    ody_free(ctx, d->refs, rows * sizeof *d->refs);
    ody_free(ctx, d->slot, rows * sizeof *d->slot);
    ody_free(ctx, d, sizeof *d);
}

static const ody_dataset_ops hdf5_ops = {
    .kind = "hdf5", .read = hdf5_read, .destroy = hdf5_destroy};

/* ----------------------------------------------------------------- open */

/* What ody_hdf5_open is opening, and the names its messages use. */
typedef struct {
    const char *path;
    const char *group;   /* "train" or "test" */
    char images[48];     /* "/train/images" */
    char labels[48];     /* "/train/labels" */
    char where[640];     /* "PATH:/train/images": the data set's source */
    char where_labels[640];
    int num_classes;
} open_request;

/* "uint8", "int64", "float32", "string", ... for messages. */
static const char *type_text(hid_t type, char *buf, size_t len)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t bits = 8 * H5Tget_size(type);
    if (cls == H5T_INTEGER)
        snprintf(buf, len, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
    else if (cls == H5T_FLOAT)
        snprintf(buf, len, "float%zu", bits);
    else
        snprintf(buf, len, "%s",
                 cls == H5T_STRING     ? "string"
                 : cls == H5T_COMPOUND ? "compound"
                 : cls == H5T_ENUM     ? "enum"
                 : cls == H5T_ARRAY    ? "array"
                                       : "a non-numeric type");
    return buf;
}

static ody_status open_file(ody_ctx *ctx, const char *path, hid_t *file)
{
    struct stat sb;
    if (access(path, R_OK) != 0 || stat(path, &sb) != 0)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return ody_fail(ctx, ODY_ERR_DATA, "%s: is a directory, not an HDF5 file", path);
#if H5_VERSION_GE(1, 12, 0)
    htri_t is_hdf5 = H5Fis_accessible(path, H5P_DEFAULT);
#else
    htri_t is_hdf5 = H5Fis_hdf5(path);
#endif
    if (is_hdf5 == 0)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: not an HDF5 file", path);
    hid_t fapl = is_hdf5 > 0 ? H5Pcreate(H5P_FILE_ACCESS) : H5I_INVALID_HID;
    *file = H5I_INVALID_HID;
    if (fapl >= 0 && H5Pset_sieve_buf_size(fapl, 0) >= 0)
        *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    /* HDF5's message first: the next HDF5 call clears it. */
    ody_status st = *file < 0 ? h5_fail(ctx, path, "cannot open as HDF5") : ODY_OK;
    close_id(fapl, H5Pclose);
    return st;
}

/* The root attribute num_classes, when present, must agree with the model. */
static ody_status check_num_classes(ody_ctx *ctx, hid_t file, const open_request *req)
{
    htri_t exists = H5Aexists(file, "num_classes");
    if (exists <= 0)
        return exists < 0 ? h5_fail(ctx, req->path, "cannot look for attribute num_classes")
                          : ODY_OK;
    hid_t attr = H5Aopen(file, "num_classes", H5P_DEFAULT);
    if (attr < 0)
        return h5_fail(ctx, req->path, "cannot open attribute num_classes");
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr);
    bool one_integer = type >= 0 && space >= 0 && H5Tget_class(type) == H5T_INTEGER &&
                       H5Sget_simple_extent_npoints(space) == 1;
    int value = 0;
    ody_status st = ODY_OK;
    if (!one_integer)
        st = ody_fail(ctx, ODY_ERR_DATA, "%s: attribute num_classes is not one integer",
                      req->path);
    else if (H5Aread(attr, H5T_NATIVE_INT, &value) < 0)
        st = h5_fail(ctx, req->path, "cannot read attribute num_classes");
    else if (value != req->num_classes)
        st = ody_fail(ctx, ODY_ERR_DATA,
                      "%s: attribute num_classes is %d but the model has %d classes "
                      "(model.num_classes)",
                      req->path, value, req->num_classes);
    close_id(space, H5Sclose);
    close_id(type, H5Tclose);
    H5Aclose(attr);
    return st;
}

/* The group and the two data sets in it exist (so missing ones are named, not HDF5's words). */
static ody_status check_objects(ody_ctx *ctx, hid_t file, const open_request *req)
{
    char group[24];
    snprintf(group, sizeof group, "/%s", req->group);
    const char *names[3] = {group, req->images, req->labels};
    for (int i = 0; i < 3; i++) {
        htri_t exists = H5Lexists(file, names[i], H5P_DEFAULT);
        if (exists < 0)
            return h5_fail(ctx, req->path, "cannot look up an object");
        if (exists == 0)
            return ody_fail(ctx, ODY_ERR_DATA,
                            "%s: no %s (expected /%s/images and /%s/labels%s)", req->path,
                            names[i], req->group, req->group,
                            strcmp(req->group, "test") == 0
                                ? "; without them use data.validation: split or none"
                                : "");
    }
    return ODY_OK;
}

/* Images must be uint8 or float32; sets d->is_float, d->mem_type. */
static ody_status check_image_type(ody_ctx *ctx, hdf5_dataset *d, const open_request *req)
{
    hid_t type = H5Dget_type(d->images);
    if (type < 0)
        return h5_fail(ctx, req->where, "cannot read the element type");
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    bool u8 = cls == H5T_INTEGER && size == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    bool f32 = cls == H5T_FLOAT && size == 4;
    char text[32];
    type_text(type, text, sizeof text);
    H5Tclose(type);
    if (!u8 && !f32)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: elements are %s; expected uint8 or float32",
                        req->where, text);
    d->is_float = f32;
    d->mem_type = f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
    return ODY_OK;
}

/* "(60000, 28, 28)" */
static const char *dims_text(const hsize_t *dims, int rank, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)dims[i]);
    if (used < len)
        snprintf(buf + used, len - used, ")");
    return buf;
}

/* Images are (N, C, H, W) or (N, H, W), nothing empty; keeps the dataspace in d. */
static ody_status check_image_shape(ody_ctx *ctx, hdf5_dataset *d, const open_request *req)
{
    d->file_space = H5Dget_space(d->images);
    hsize_t dims[H5S_MAX_RANK];
    int rank = d->file_space < 0 ? -1 : H5Sget_simple_extent_dims(d->file_space, dims, NULL);
    if (rank < 0)
        return h5_fail(ctx, req->where, "cannot read the shape");
    char text[160];
    if (rank != 3 && rank != 4)
        return ody_fail(ctx, ODY_ERR_DATA,
                        "%s: shape %s has %d dimensions; expected (N, C, H, W) or (N, H, W)",
                        req->where, dims_text(dims, rank, text, sizeof text), rank);
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0)
            return ody_fail(ctx, ODY_ERR_DATA, "%s: shape %s is empty", req->where,
                            dims_text(dims, rank, text, sizeof text));
        if (i > 0 && dims[i] <= (hsize_t)MAX_SAMPLE_NUMEL)
            numel *= (int64_t)dims[i]; /* at most 2^56: no overflow */
        if ((i > 0 && dims[i] > (hsize_t)MAX_SAMPLE_NUMEL) || numel > MAX_SAMPLE_NUMEL ||
            dims[0] > ((hsize_t)1 << 48))
            return ody_fail(ctx, ODY_ERR_DATA, "%s: absurd shape %s", req->where,
                            dims_text(dims, rank, text, sizeof text));
    }
    d->rank = rank;
    memcpy(d->dims, dims, sizeof d->dims);
    d->numel = (size_t)numel;
    d->row_bytes = d->numel * (d->is_float ? sizeof(float) : 1);
    return ODY_OK;
}

/* Chunks a chunked data set of this shape is cut into (saturating far above any real count). */
static hsize_t chunks_needed(hid_t dcpl, hid_t space)
{
    hsize_t dims[H5S_MAX_RANK], chunk[H5S_MAX_RANK];
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    if (rank < 0 || H5Pget_chunk(dcpl, rank, chunk) != rank)
        return 0;
    hsize_t need = 1;
    for (int i = 0; i < rank; i++) {
        hsize_t along = chunk[i] ? (dims[i] + chunk[i] - 1) / chunk[i] : 0;
        need = along && need > ((hsize_t)1 << 62) / along ? (hsize_t)1 << 62 : need * along;
    }
    return need;
}

/*
 * The file holds the data the shape of `dset` claims (`rows` rows of
 * row_bytes bytes), checked before any memory is spent on the claim: a
 * chunked data set has every chunk written (one never written would read
 * back as zeros, so a small file could claim billions of samples), a
 * contiguous or compact one holds rows * row_bytes bytes (HDF5 itself
 * finds out only when a read runs past the end of the file). A virtual
 * data set is left to HDF5.
 */
static ody_status check_stored(ody_ctx *ctx, hid_t dset, const char *where, hsize_t rows,
                               size_t row_bytes)
{
    hid_t dcpl = H5Dget_create_plist(dset), space = H5Dget_space(dset);
    H5D_layout_t layout = dcpl < 0 ? H5D_LAYOUT_ERROR : H5Pget_layout(dcpl);
    hsize_t need = 0, have = 0;
    ody_status st = ODY_OK;
    if (layout == H5D_CHUNKED) {
        need = chunks_needed(dcpl, space);
        if (need == 0 || H5Dget_num_chunks(dset, space, &have) < 0)
            st = h5_fail(ctx, where, "cannot count its chunks");
        else if (have < need)
            st = ody_fail(ctx, ODY_ERR_DATA,
                          "%s: the file holds %llu of the %llu chunks its shape needs (a header "
                          "claiming more samples than the file has?)",
                          where, (unsigned long long)have, (unsigned long long)need);
    } else if (layout == H5D_LAYOUT_ERROR) {
        st = h5_fail(ctx, where, "cannot read the storage layout");
    } else if (layout != H5D_VIRTUAL && H5Dget_storage_size(dset) / row_bytes < rows) {
        st = ody_fail(ctx, ODY_ERR_DATA,
                      "%s: the file holds %llu bytes of it but its shape needs %llu rows of %zu "
                      "bytes (a header claiming more samples than the file has?)",
                      where, (unsigned long long)H5Dget_storage_size(dset),
                      (unsigned long long)rows, row_bytes);
    }
    close_id(space, H5Sclose);
    close_id(dcpl, H5Pclose);
    return st;
}

/* Open the images with no chunk cache (a read moves the selected samples only) and check them. */
static ody_status open_images(ody_ctx *ctx, hdf5_dataset *d, const open_request *req)
{
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0 && H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0,
                                        H5D_CHUNK_CACHE_W0_DEFAULT) >= 0)
        d->images = H5Dopen2(d->file, req->images, dapl);
    else
        d->images = H5I_INVALID_HID;
    ody_status st = d->images < 0 ? h5_fail(ctx, req->where, "cannot open as a data set") : ODY_OK;
    close_id(dapl, H5Pclose);
    if (st == ODY_OK)
        st = check_image_type(ctx, d, req);
    if (st == ODY_OK)
        st = check_image_shape(ctx, d, req);
    return st == ODY_OK ? check_stored(ctx, d->images, req->where, d->dims[0], d->row_bytes) : st;
}

/* Labels are integers of shape (N) for the images' N. */
static ody_status check_labels_layout(ody_ctx *ctx, hid_t labels, const open_request *req,
                                      hsize_t n)
{
    hid_t type = H5Dget_type(labels), space = H5Dget_space(labels);
    hsize_t dims[H5S_MAX_RANK];
    int rank = space < 0 ? -1 : H5Sget_simple_extent_dims(space, dims, NULL);
    char type_name[32] = "", shape[160] = "";
    ody_status st = ODY_OK;
    if (type < 0 || rank < 0)
        st = h5_fail(ctx, req->where_labels, "cannot read the type and shape");
    bool integer = type >= 0 && H5Tget_class(type) == H5T_INTEGER;
    if (type >= 0)
        type_text(type, type_name, sizeof type_name);
    if (rank >= 0)
        dims_text(dims, rank, shape, sizeof shape);
    close_id(space, H5Sclose);
    close_id(type, H5Tclose);
    if (st != ODY_OK)
        return st;
    if (!integer)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: labels are %s; expected an integer type",
                        req->where_labels, type_name);
    if (rank != 1)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: shape %s; expected (N)", req->where_labels,
                        shape);
    if (dims[0] != n)
        return ody_fail(ctx, ODY_ERR_DATA, "%s has %llu samples but %s has %llu labels",
                        req->where, (unsigned long long)n, req->where_labels,
                        (unsigned long long)dims[0]);
    return ODY_OK;
}

static ody_status check_label_range(ody_ctx *ctx, const hdf5_dataset *d, const open_request *req)
{
    for (int64_t i = 0; i < d->labels_n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= req->num_classes)
            return ody_fail(ctx, ODY_ERR_DATA,
                            "%s: label %d of sample %lld is out of range: the model has %d "
                            "classes (model.num_classes)",
                            req->where_labels, d->labels[i], (long long)i, req->num_classes);
    return ODY_OK;
}

/* Read every label into d->labels (N int32s: small next to the images) and check them. */
static ody_status read_labels(ody_ctx *ctx, hdf5_dataset *d, const open_request *req)
{
    hid_t labels = H5Dopen2(d->file, req->labels, H5P_DEFAULT);
    if (labels < 0)
        return h5_fail(ctx, req->where_labels, "cannot open as a data set");
    ody_status st = check_labels_layout(ctx, labels, req, d->dims[0]);
    hid_t type = st == ODY_OK ? H5Dget_type(labels) : H5I_INVALID_HID;
    if (st == ODY_OK)
        st = type < 0 ? h5_fail(ctx, req->where_labels, "cannot read the type")
                      : check_stored(ctx, labels, req->where_labels, d->dims[0], H5Tget_size(type));
    close_id(type, H5Tclose);
    void *buf = NULL;
    if (st == ODY_OK)
        st = ody_alloc(ctx, (size_t)d->dims[0] * sizeof(int32_t), req->where_labels, &buf);
    if (st == ODY_OK) {
        d->labels = buf;
        d->labels_n = (int64_t)d->dims[0];
        if (H5Dread(labels, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->labels) < 0)
            st = h5_fail(ctx, req->where_labels, "cannot read");
    }
    H5Dclose(labels);
    return st == ODY_OK ? check_label_range(ctx, d, req) : st;
}

/* The read buffers for one piece and its memory dataspace. */
static ody_status make_buffers(ody_ctx *ctx, hdf5_dataset *d, const open_request *req)
{
    size_t rows = PIECE_BYTES / d->row_bytes;
    rows = rows < 1 ? 1 : rows > PIECE_ROWS ? PIECE_ROWS : rows;
    rows = rows > d->dims[0] ? (size_t)d->dims[0] : rows;
    d->piece_rows = (int)rows;
    void *raw = NULL, *refs = NULL, *slot = NULL;
    ody_status st = ody_alloc(ctx, rows * d->row_bytes, req->where, &raw);
    d->raw = raw;
    if (st == ODY_OK)
        st = ody_alloc(ctx, rows * sizeof *d->refs, req->where, &refs);
    d->refs = refs;
    if (st == ODY_OK)
        st = ody_alloc(ctx, rows * sizeof *d->slot, req->where, &slot);
    d->slot = slot;
    if (st != ODY_OK)
        return st;
    hsize_t elements = (hsize_t)(rows * d->numel);
    d->mem_space = H5Screate_simple(1, &elements, NULL);
    return d->mem_space < 0 ? h5_fail(ctx, req->where, "cannot make a dataspace") : ODY_OK;
}

/* One float attribute of the images into *out; *found false when absent. */
static ody_status read_float_attr(ody_ctx *ctx, hdf5_dataset *d, const open_request *req,
                                  const char *name, float *out, bool *found)
{
    htri_t exists = H5Aexists(d->images, name);
    *found = exists > 0;
    if (exists <= 0)
        return exists < 0 ? h5_fail(ctx, req->where, "cannot look for its attributes") : ODY_OK;
    hid_t attr = H5Aopen(d->images, name, H5P_DEFAULT);
    hid_t type = attr < 0 ? -1 : H5Aget_type(attr), space = attr < 0 ? -1 : H5Aget_space(attr);
    bool one_number = type >= 0 && space >= 0 && H5Sget_simple_extent_npoints(space) == 1 &&
                      (H5Tget_class(type) == H5T_FLOAT || H5Tget_class(type) == H5T_INTEGER);
    ody_status st = ODY_OK;
    if (attr < 0)
        st = h5_fail(ctx, req->where, "cannot open an attribute");
    else if (!one_number)
        st = ody_fail(ctx, ODY_ERR_DATA, "%s: attribute %s is not one number", req->where, name);
    else if (H5Aread(attr, H5T_NATIVE_FLOAT, out) < 0)
        st = h5_fail(ctx, req->where, "cannot read an attribute");
    close_id(space, H5Sclose);
    close_id(type, H5Tclose);
    close_id(attr, H5Aclose);
    return st;
}

/* With norm->from_file: the images' pixel_mean and pixel_std into norm
 * (*missing when the file has neither). */
static ody_status read_stats(ody_ctx *ctx, hdf5_dataset *d, const open_request *req,
                             ody_normalize *norm, bool *missing)
{
    *missing = false;
    if (!norm->from_file)
        return ODY_OK;
    float mean = 0, std = 1;
    bool have_mean = false, have_std = false;
    ody_status st = read_float_attr(ctx, d, req, "pixel_mean", &mean, &have_mean);
    if (st == ODY_OK)
        st = read_float_attr(ctx, d, req, "pixel_std", &std, &have_std);
    if (st != ODY_OK)
        return st;
    if (have_mean != have_std)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: has attribute %s without %s", req->where,
                        have_mean ? "pixel_mean" : "pixel_std",
                        have_mean ? "pixel_std" : "pixel_mean");
    *missing = !have_mean;
    if (*missing)
        return ODY_OK;
    if (!isfinite(mean) || !isfinite(std) || std <= 0)
        return ody_fail(ctx, ODY_ERR_DATA,
                        "%s: attributes pixel_mean %g and pixel_std %g: need finite values and "
                        "pixel_std > 0",
                        req->where, mean, std);
    norm->mean = mean;
    norm->std = std;
    return ODY_OK;
}

/* Everything that calls HDF5 while opening (with the lock held). */
static ody_status open_locked(ody_ctx *ctx, hdf5_dataset *d, const open_request *req)
{
    ody_status st = open_file(ctx, req->path, &d->file);
    if (st == ODY_OK)
        st = check_num_classes(ctx, d->file, req);
    if (st == ODY_OK)
        st = check_objects(ctx, d->file, req);
    if (st == ODY_OK)
        st = open_images(ctx, d, req);
    if (st == ODY_OK)
        st = read_labels(ctx, d, req);
    if (st == ODY_OK)
        st = make_buffers(ctx, d, req);
    return st;
}

static ody_status make_request(ody_ctx *ctx, const char *path, const char *group,
                               int num_classes, open_request *req)
{
    *req = (open_request){.path = path, .group = group, .num_classes = num_classes};
    if (strlen(group) > 16 || strchr(group, '/'))
        return ody_fail(ctx, ODY_ERR_INTERNAL, "%s: bad group name '%s'", path, group);
    if (strlen(path) > 500)
        return ody_fail(ctx, ODY_ERR_CONFIG, "data.path: %.64s... is too long", path);
    snprintf(req->images, sizeof req->images, "/%s/images", group);
    snprintf(req->labels, sizeof req->labels, "/%s/labels", group);
    snprintf(req->where, sizeof req->where, "%s:%s", path, req->images);
    snprintf(req->where_labels, sizeof req->where_labels, "%s:%s", path, req->labels);
    return ODY_OK;
}

ody_status ody_hdf5_open(ody_ctx *ctx, const char *path, const char *group, int num_classes,
                         ody_normalize norm, ody_dataset **out)
{
    *out = NULL;
    open_request req;
    ody_status st = make_request(ctx, path, group, num_classes, &req);
    if (st == ODY_OK)
        st = ody_normalize_check(ctx, req.where, norm);
    if (st == ODY_OK)
        st = ody_data_new(ctx, sizeof(hdf5_dataset), &hdf5_ops, req.where, out);
    if (st != ODY_OK)
        return st;
    hdf5_dataset *d = (hdf5_dataset *)*out;
    bool no_stats = false;
    ody_hdf5_lock();
    H5E_BEGIN_TRY {
        st = open_locked(ctx, d, &req);
        if (st == ODY_OK)
            st = read_stats(ctx, d, &req, &norm, &no_stats);
    }
    H5E_END_TRY;
    ody_hdf5_unlock();
    if (st != ODY_OK) {
        hdf5_destroy(*out, ctx);
        *out = NULL;
        return st;
    }
    if (no_stats)
        ody_log(ctx, ODY_LOG_WARN,
                "%s: no pixel_mean and pixel_std attributes (a file from an older "
                "odyssey-convert?): its images are not standardised, so training differs from "
                "the IDX files'; convert it again, or set data.mean and data.std",
                req.where);
    if (d->is_float)
        norm.scale = 1.0f; /* float32 images are used as stored */
    ody_normalize_table(norm, d->table);
    d->ds.n = (int64_t)d->dims[0];
    d->ds.sample_shape = ody_shape3(d->rank == 4 ? (int64_t)d->dims[1] : 1,
                                    (int64_t)d->dims[d->rank - 2], (int64_t)d->dims[d->rank - 1]);
    d->ds.num_classes = num_classes;
    d->ds.norm = norm;
    size_t rows = (size_t)d->piece_rows;
    d->ds.bytes_held = (size_t)d->labels_n * sizeof *d->labels +
                       rows * (d->row_bytes + sizeof *d->refs + sizeof *d->slot);
    return ODY_OK;
}

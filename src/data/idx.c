/*
 * data: IDX (MNIST format) images and labels, raw or gzip-compressed.
 *
 * Both files are read whole into memory as uint8 (a float copy would be 4x
 * larger, and every rank holds one). zlib's gzread reads raw and gzip files
 * alike. Pixels become floats in read() through a 256-entry table, so the
 * normalisation costs one lookup per pixel and is the same float
 * expression, (raw * scale - mean) / std, for every pixel.
 *
 * Layout of an IDX file: magic 0x0000TTDD (TT the element type, 0x08 for
 * unsigned bytes; DD the number of dimensions), DD big-endian uint32
 * dimensions, then the elements.
 */
#include "data/data_internal.h"

#include <errno.h>
#include <string.h>

#include <zlib.h>

#define IDX_UBYTE 0x08
#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
/* Headers claiming more than this are corrupt, not data sets to read. */
#define IDX_MAX_SIDE 65536u
#define IDX_MAX_BYTES ((uint64_t)1 << 36)

typedef struct {
    ody_dataset ds;
    uint8_t *pixels; /* (n, H*W) */
    uint8_t *labels; /* (n) */
    size_t pixel_bytes, label_bytes;
    float table[256]; /* normalised value of each raw byte */
} idx_dataset;

/* One IDX file's contents: up to 3 dimensions and the bytes after the header. */
typedef struct {
    const char *path;
    uint32_t dims[3];
    uint8_t *data;
    size_t bytes;
} idx_file;

static ody_status gz_error(ody_ctx *ctx, gzFile f, const char *path)
{
    int code = 0;
    const char *msg = gzerror(f, &code);
    if (code == Z_ERRNO)
        msg = strerror(errno);
    return ody_fail(ctx, ODY_ERR_DATA, "%s: read error: %s", path, msg);
}

/* Read exactly `want` bytes; fewer is "truncated", naming `what` was being read. */
static ody_status read_exact(ody_ctx *ctx, gzFile f, const char *path, void *buf, size_t want,
                             const char *what)
{
    size_t got = 0;
    while (got < want) {
        size_t ask = want - got;
        if (ask > (1u << 30))
            ask = 1u << 30;
        int r = gzread(f, (char *)buf + got, (unsigned)ask);
        if (r < 0)
            return gz_error(ctx, f, path);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got < want)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: truncated: expected %zu bytes of %s, got %zu", path,
                        want, what, got);
    return ODY_OK;
}

static const char *type_name(unsigned type)
{
    switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown type";
    }
}

static ody_status bad_magic(ody_ctx *ctx, const char *path, uint32_t found, uint32_t want,
                            const char *what)
{
    char desc[96];
    if (found >> 16)
        snprintf(desc, sizeof desc, "not an IDX file");
    else
        snprintf(desc, sizeof desc, "type 0x%02x (%s), %u dimension%s", (found >> 8) & 0xFFu,
                 type_name((found >> 8) & 0xFFu), found & 0xFFu, (found & 0xFFu) == 1 ? "" : "s");
    return ody_fail(
        ctx, ODY_ERR_DATA,
        "%s: bad magic 0x%08x (%s): expected 0x%08x (IDX %ss: unsigned bytes, %u dimension%s)",
        path, found, desc, want, what, want & 0xFFu, (want & 0xFFu) == 1 ? "" : "s");
}

static uint32_t big_endian(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/*
 * Read and check the magic and the dimensions into file->dims, and the
 * byte count they declare into file->bytes. `what` is "image" or "label".
 */
static ody_status read_header(ody_ctx *ctx, gzFile f, idx_file *file, uint32_t magic,
                              const char *what)
{
    int ndim = (int)(magic & 0xFFu);
    uint8_t head[16];
    /* The magic first, so a wrong file is named as such even when it is short. */
    ody_status st = read_exact(ctx, f, file->path, head, 4, "header");
    if (st != ODY_OK)
        return st;
    uint32_t found = big_endian(head);
    if (found != magic)
        return bad_magic(ctx, file->path, found, magic, what);
    st = read_exact(ctx, f, file->path, head + 4, 4 * (size_t)ndim, "header dimensions");
    if (st != ODY_OK)
        return st;
    uint64_t bytes = 1;
    for (int i = 0; i < ndim; i++) {
        file->dims[i] = big_endian(head + 4 + 4 * i);
        if (file->dims[i] == 0)
            return ody_fail(ctx, ODY_ERR_DATA, "%s: dimension %d of the header is zero", file->path,
                            i);
        if (i > 0 && file->dims[i] > IDX_MAX_SIDE)
            return ody_fail(ctx, ODY_ERR_DATA, "%s: absurd dimension %d in the header: %u",
                            file->path, i, file->dims[i]);
        bytes *= file->dims[i]; /* checked each time, so it never overflows */
        if (bytes > IDX_MAX_BYTES)
            return ody_fail(ctx, ODY_ERR_DATA, "%s: absurd header: more than %llu bytes of %s data",
                            file->path, (unsigned long long)IDX_MAX_BYTES, what);
    }
    file->bytes = (size_t)bytes;
    return ODY_OK;
}

/*
 * Data after what the header declares is rejected: it means the header and
 * the data disagree (or two files were concatenated), and reading on would
 * pair images with the wrong labels. (zlib itself ignores non-gzip bytes
 * after the last gzip member; those cannot be seen here.)
 */
static ody_status check_end(ody_ctx *ctx, gzFile f, const idx_file *file, const char *what)
{
    const char *path = file->path;
    uint8_t extra;
    int r = gzread(f, &extra, 1);
    if (r < 0)
        return gz_error(ctx, f, path);
    if (r > 0)
        return ody_fail(ctx, ODY_ERR_DATA,
                        "%s: unexpected data after the %u %ss the header declares", path,
                        file->dims[0], what);
    return ODY_OK;
}

/* Read one whole IDX file with the given magic into file (data allocated here). */
static ody_status load_file(ody_ctx *ctx, idx_file *file, uint32_t magic, const char *what)
{
    errno = 0;
    gzFile f = gzopen(file->path, "rb");
    if (!f)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: cannot open: %s", file->path,
                        strerror(errno ? errno : ENOMEM));
    ody_status st = read_header(ctx, f, file, magic, what);
    void *data = NULL;
    if (st == ODY_OK)
        st = ody_alloc(ctx, file->bytes, file->path, &data);
    file->data = data;
    if (st == ODY_OK) {
        char noun[32];
        snprintf(noun, sizeof noun, "%s data", what);
        st = read_exact(ctx, f, file->path, file->data, file->bytes, noun);
    }
    if (st == ODY_OK)
        st = check_end(ctx, f, file, what);
    gzclose(f);
    if (st != ODY_OK) {
        ody_free(ctx, file->data, file->bytes);
        file->data = NULL;
    }
    return st;
}

static ody_status check_labels(ody_ctx *ctx, const idx_file *labels, int num_classes)
{
    for (size_t i = 0; i < labels->bytes; i++)
        if (labels->data[i] >= num_classes)
            return ody_fail(ctx, ODY_ERR_DATA,
                            "%s: label %u of sample %zu is out of range: the model has %d classes "
                            "(model.num_classes)",
                            labels->path, labels->data[i], i, num_classes);
    return ODY_OK;
}

static ody_status idx_read(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n, float *x,
                           int32_t *y)
{
    const idx_dataset *d = (const idx_dataset *)ds;
    size_t numel = (size_t)ody_shape_numel(&ds->sample_shape);
    for (int r = 0; r < n; r++) {
        const uint8_t *src = d->pixels + (size_t)indices[r] * numel;
        float *dst = x + (size_t)r * numel;
        for (size_t p = 0; p < numel; p++)
            dst[p] = d->table[src[p]];
        y[r] = d->labels[indices[r]];
    }
    return ODY_OK;
}

static void idx_destroy(ody_dataset *ds, ody_ctx *ctx)
{
    idx_dataset *d = (idx_dataset *)ds;
    ody_free(ctx, d->pixels, d->pixel_bytes);
    ody_free(ctx, d->labels, d->label_bytes);
    ody_free(ctx, d, sizeof *d);
}

static const ody_dataset_ops idx_ops = {.kind = "idx", .read = idx_read, .destroy = idx_destroy};

/* Move the two files' contents into a new data set (the files keep nothing). */
static ody_status make_dataset(ody_ctx *ctx, idx_file *images, idx_file *labels, int num_classes,
                               ody_normalize norm, ody_dataset **out)
{
    ody_status st = ody_data_new(ctx, sizeof(idx_dataset), &idx_ops, images->path, out);
    if (st != ODY_OK)
        return st;
    idx_dataset *d = (idx_dataset *)*out;
    d->pixels = images->data;
    d->pixel_bytes = images->bytes;
    d->labels = labels->data;
    d->label_bytes = labels->bytes;
    images->data = labels->data = NULL;
    ody_normalize_table(norm, d->table);
    d->ds.n = images->dims[0];
    d->ds.sample_shape = ody_shape3(1, images->dims[1], images->dims[2]);
    d->ds.num_classes = num_classes;
    d->ds.norm = norm;
    d->ds.bytes_held = d->pixel_bytes + d->label_bytes;
    return ODY_OK;
}

ody_status ody_idx_open(ody_ctx *ctx, const char *images_path, const char *labels_path,
                        int num_classes, ody_normalize norm, ody_dataset **out)
{
    *out = NULL;
    if (ody_normalize_check(ctx, images_path, norm) != ODY_OK)
        return ODY_ERR_CONFIG;
    idx_file images = {.path = images_path}, labels = {.path = labels_path};
    ody_status st = load_file(ctx, &images, IDX_IMAGES_MAGIC, "image");
    if (st == ODY_OK)
        st = load_file(ctx, &labels, IDX_LABELS_MAGIC, "label");
    if (st == ODY_OK && images.dims[0] != labels.dims[0])
        st = ody_fail(ctx, ODY_ERR_DATA, "%s has %u images but %s has %u labels", images_path,
                      images.dims[0], labels_path, labels.dims[0]);
    if (st == ODY_OK)
        st = check_labels(ctx, &labels, num_classes);
    if (st == ODY_OK)
        st = make_dataset(ctx, &images, &labels, num_classes, norm, out);
    ody_free(ctx, images.data, images.bytes);
    ody_free(ctx, labels.data, labels.bytes);
    return st;
}

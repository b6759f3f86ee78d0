/*
 * data: IDX (MNIST format) images and labels, raw or gzip-compressed.
 *
 * Both files are read whole into memory as uint8 (a float copy would be 4x
 * larger, and every rank holds one). zlib's gzread reads raw and gzip files
 * alike. Pixels become floats in read() as the float expression
 * (raw * scale - mean) / std (ody_normalize_bytes).
 *
 * A header is a claim, checked before it is trusted with memory: a raw
 * file's size must match it before anything is allocated, and a gzip
 * file's data (whose size is unknown until read) goes into a buffer that
 * starts near the file's size and doubles as data arrives, up to the
 * claim. So a corrupt count is reported after reading what the file holds,
 * with memory of the order of that, never of the claim.
 *
 * Layout of an IDX file: magic 0x0000TTDD (TT the element type, 0x08 for
 * unsigned bytes; DD the number of dimensions), DD big-endian uint32
 * dimensions, then the elements.
 */
#include "data/data_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>


#define IDX_UBYTE 0x08
#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
/* Headers claiming more than this are corrupt, not data sets to read. */
#define IDX_MAX_SIDE 65536u
#define IDX_MAX_BYTES ((uint64_t)1 << 36)
/* A gzip file's data buffer starts at this many times the file's size (so
 * that MNIST's files, 4.8x, and Fashion-MNIST's, 1.8x, are read without
 * growing), and at least at GZ_FIRST_BYTES. */
#define GZ_FIRST_RATIO 8
#define GZ_FIRST_BYTES ((size_t)1 << 20)

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

/* Read up to `want` bytes into buf; *got says how many (fewer only at the end of the file). */
static ody_status read_upto(ody_ctx *ctx, gzFile f, const char *path, void *buf, size_t want,
                            size_t *got)
{
    *got = 0;
    while (*got < want) {
        size_t ask = want - *got;
        if (ask > (1u << 30))
            ask = 1u << 30;
        int r = gzread(f, (char *)buf + *got, (unsigned)ask);
        if (r < 0)
            return gz_error(ctx, f, path);
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return ODY_OK;
}

/* Read exactly `want` bytes; fewer is "truncated", naming `what` was being read. */
static ody_status read_exact(ody_ctx *ctx, gzFile f, const char *path, void *buf, size_t want,
                             const char *what)
{
    size_t got = 0;
    ody_status st = read_upto(ctx, f, path, buf, want, &got);
    if (st == ODY_OK && got < want)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: truncated: expected %zu bytes of %s, got %zu", path,
                        want, what, got);
    return st;
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

static ody_status extra_data(ody_ctx *ctx, const idx_file *file, const char *what)
{
    return ody_fail(ctx, ODY_ERR_DATA, "%s: unexpected data after the %u %ss the header declares",
                    file->path, file->dims[0], what);
}

/* The data is shorter than the header says: "truncated", with the count it claims. */
static ody_status data_truncated(ody_ctx *ctx, const idx_file *file, const char *what,
                                 uint64_t got)
{
    return ody_fail(ctx, ODY_ERR_DATA,
                    "%s: truncated: expected %zu bytes of %s data, got %llu (the header declares "
                    "%u %ss)",
                    file->path, file->bytes, what, (unsigned long long)got, file->dims[0], what);
}

/*
 * Data after what the header declares is rejected: it means the header and
 * the data disagree (or two files were concatenated), and reading on would
 * pair images with the wrong labels. (zlib itself ignores non-gzip bytes
 * after the last gzip member; those cannot be seen here.) A gzip stream cut
 * after its data but before its trailer (checksum and length) is truncated
 * too: zlib reports it only through gzerror's Z_BUF_ERROR.
 */
static ody_status check_end(ody_ctx *ctx, gzFile f, const idx_file *file, const char *what)
{
    uint8_t extra;
    int r = gzread(f, &extra, 1), code = Z_OK;
    if (r < 0)
        return gz_error(ctx, f, file->path);
    if (r > 0)
        return extra_data(ctx, file, what);
    gzerror(f, &code);
    if (code == Z_BUF_ERROR)
        return ody_fail(ctx, ODY_ERR_DATA,
                        "%s: truncated: the gzip stream ends before its checksum", file->path);
    return ODY_OK;
}

/*
 * How many bytes to allocate before reading the data: all of them for a raw
 * file, once its size is checked against the header here (so a corrupt
 * count costs nothing); for a gzip file or a pipe, a first guess to grow
 * from.
 */
static ody_status first_capacity(ody_ctx *ctx, gzFile f, const idx_file *file,
                                 const struct stat *sb, const char *what, size_t *capacity)
{
    uint64_t size = (uint64_t)sb->st_size;
    if (S_ISREG(sb->st_mode) && gzdirect(f)) {
        uint64_t header = (uint64_t)gztell(f);
        uint64_t held = size > header ? size - header : 0;
        if (held < file->bytes)
            return data_truncated(ctx, file, what, held);
        if (held > file->bytes)
            return extra_data(ctx, file, what);
        *capacity = file->bytes;
        return ODY_OK;
    }
    uint64_t guess = S_ISREG(sb->st_mode) && size < IDX_MAX_BYTES ? GZ_FIRST_RATIO * size : 0;
    guess = guess > GZ_FIRST_BYTES ? guess : GZ_FIRST_BYTES;
    *capacity = guess < file->bytes ? (size_t)guess : file->bytes;
    return ODY_OK;
}

/* Double *capacity (at most to `limit`), keeping the first `used` bytes of *data. */
static ody_status grow(ody_ctx *ctx, const char *path, size_t used, size_t limit, uint8_t **data,
                       size_t *capacity)
{
    size_t next = *capacity > limit / 2 ? limit : 2 * *capacity;
    void *bigger = NULL;
    ody_status st = ody_alloc(ctx, next, path, &bigger);
    if (st != ODY_OK)
        return st;
    memcpy(bigger, *data, used);
    ody_free(ctx, *data, *capacity);
    *data = bigger;
    *capacity = next;
    return ODY_OK;
}

/*
 * Read the file->bytes bytes of data the header declares into file->data
 * (allocated here), starting with `capacity` bytes and growing as data
 * arrives: a file shorter than its claim fails as "truncated" having held
 * about what it has.
 */
static ody_status read_data(ody_ctx *ctx, gzFile f, idx_file *file, size_t capacity,
                            const char *what)
{
    void *first = NULL;
    ody_status st = ody_alloc(ctx, capacity, file->path, &first);
    uint8_t *data = first;
    size_t got = 0;
    while (st == ODY_OK) {
        size_t more = 0;
        st = read_upto(ctx, f, file->path, data + got, capacity - got, &more);
        got += more;
        if (st != ODY_OK || capacity == file->bytes || got < capacity)
            break;
        st = grow(ctx, file->path, got, file->bytes, &data, &capacity);
    }
    if (st == ODY_OK && got < file->bytes)
        st = data_truncated(ctx, file, what, got);
    if (st != ODY_OK) {
        ody_free(ctx, data, capacity);
        return st;
    }
    file->data = data;
    return ODY_OK;
}

/* Read one whole IDX file with the given magic into file (data allocated here). */
static ody_status load_file(ody_ctx *ctx, idx_file *file, uint32_t magic, const char *what)
{
    struct stat sb;
    int fd = open(file->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        ody_status st = ody_fail(ctx, ODY_ERR_DATA, "%s: cannot open: %s", file->path,
                                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return st;
    }
    errno = 0;
    gzFile f = gzdopen(fd, "rb"); /* closes fd when closed */
    if (!f) {
        close(fd);
        return ody_fail(ctx, ODY_ERR_DATA, "%s: cannot open: %s", file->path,
                        strerror(errno ? errno : ENOMEM));
    }
    size_t capacity = 0;
    ody_status st = read_header(ctx, f, file, magic, what);
    if (st == ODY_OK)
        st = first_capacity(ctx, f, file, &sb, what, &capacity);
    if (st == ODY_OK)
        st = read_data(ctx, f, file, capacity, what);
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

/* Ask for the cache lines of src[0, n) now. */
static void prefetch(const uint8_t *src, size_t n)
{
    for (size_t p = 0; p < n; p += 64)
        __builtin_prefetch(src + p);
    __builtin_prefetch(src + n - 1);
}

static ody_status idx_read(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n, float *x,
                           int32_t *y)
{
    const idx_dataset *d = (const idx_dataset *)ds;
    size_t numel = (size_t)ody_shape_numel(&ds->sample_shape);
    enum { AHEAD = 4 }; /* samples whose pixels are fetched ahead (random rows of a large array) */
    for (int r = 0; r < n && r < AHEAD; r++)
        prefetch(d->pixels + (size_t)indices[r] * numel, numel);
    for (int r = 0; r < n; r++) {
        if (r + AHEAD < n)
            prefetch(d->pixels + (size_t)indices[r + AHEAD] * numel, numel);
        ody_normalize_bytes(ds->norm, d->table, d->pixels + (size_t)indices[r] * numel, numel, x + (size_t)r * numel);
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

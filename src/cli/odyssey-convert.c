/*
 * odyssey-convert: MNIST-format IDX files -> one HDF5 file in the layout
 * of data.name: hdf5 (see src/data/hdf5.c): /train and /test, each with
 * images (N, C, H, W) and labels (N), and the root attribute num_classes
 * (the largest label + 1). For a data set it knows (fashion_mnist, mnist:
 * by name, or by its default directory) each images data set gets the
 * attributes pixel_mean and pixel_std, the constants data.standardize uses
 * for the IDX files (ody_data_known_stats): the HDF5 reader standardises
 * with them, so training from the file gives the same bits as from the
 * IDX files.
 *
 * The IDX files are read with the library's reader (ody_idx_open) and
 * taken back out through ody_dataset_read with the identity normalisation,
 * which returns every byte as an exact float. The output is written to
 * OUT.tmp and renamed over OUT only when complete, so OUT is never a
 * half-written file.
 *
 * Images are stored contiguous unless --chunk asks for chunks, and never
 * compressed: training reads random batches, and with HDF5 1.10 a batch of
 * 64 random Fashion-MNIST samples took 0.23 ms from a contiguous data set
 * but 2.1 ms from one in chunks of 64 (or of 1024) samples, HDF5 mapping
 * the selection onto every chunk it touches.
 */
#define _DEFAULT_SOURCE /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "odyssey/core.h"
#include "odyssey/data.h"

static const char usage_text[] =
    "usage: odyssey-convert [--float32] [--chunk N] IDX_DIR_OR_NAME OUT.h5\n"
    "\n"
    "Convert MNIST-format IDX files into one HDF5 file for data.name: hdf5.\n"
    "IDX_DIR_OR_NAME is a directory holding train-images-idx3-ubyte,\n"
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte\n"
    "(each raw or .gz), or fashion_mnist (/usr/share/datasets/fashion-mnist)\n"
    "or mnist (/usr/share/datasets/mnist).\n"
    "\n"
    "options:\n"
    "  --float32   store images as float32 pixel/255, in [0, 1] (default: uint8)\n"
    "  --chunk N   store images in chunks of N samples (default 0: contiguous,\n"
    "              the fastest for random batches)\n"
    "  --help      this text\n"
    "\n"
    "Images of fashion_mnist and mnist (by name or default directory) get the\n"
    "attributes pixel_mean and pixel_std (after scaling to [0, 1]), with which\n"
    "data.name: hdf5 standardises them as the IDX reader does.\n"
    "OUT.h5 is written as OUT.h5.tmp and renamed when complete.\n"
    "exit status: 0 done, 2 usage error, 3 data error, 1 other failure.\n";

/* Samples converted per HDF5 write. */
#define BLOCK_ROWS 1024
#define EXIT_USAGE 2

typedef struct {
    bool float32;
    long chunk;
    const char *input; /* a directory, or fashion_mnist / mnist */
    const char *output;
    bool have_stats;   /* the input is a data set with known statistics: */
    float mean, std;   /* written as pixel_mean, pixel_std */
} convert_options;

/* The IDX file names of the four files, MNIST's. */
static const char *const idx_names[2][2] = {
    {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
    {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
};
static const char *const group_names[2] = {"train", "test"};

/* Returns 0 to convert, -1 after --help, or EXIT_USAGE. */
static int parse_args(int argc, char **argv, convert_options *o)
{
    *o = (convert_options){.chunk = 0};
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return -1;
        } else if (strcmp(argv[i], "--float32") == 0) {
            o->float32 = true;
        } else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
            char *end = NULL;
            errno = 0;
            o->chunk = strtol(argv[++i], &end, 10);
            if (errno || end == argv[i] || *end || o->chunk < 0 || o->chunk > 1000000) {
                fprintf(stderr, "odyssey-convert: --chunk: '%s' is not a count in 0..1000000\n",
                        argv[i]);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "odyssey-convert: unknown option '%s'\n%s", argv[i], usage_text);
            return EXIT_USAGE;
        }
    }
    if (argc - i != 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    o->input = argv[i];
    o->output = argv[i + 1];
    return 0;
}

static const char *input_dir(const char *input)
{
    if (strcmp(input, "fashion_mnist") == 0)
        return "/usr/share/datasets/fashion-mnist";
    if (strcmp(input, "mnist") == 0)
        return "/usr/share/datasets/mnist";
    return input;
}

/* The statistics of the input when it is a known data set: by name, or by
 * its default directory (whatever path leads there). */
static void find_stats(convert_options *o)
{
    static const char *const known[] = {"fashion_mnist", "mnist"};
    char input[PATH_MAX], dir[PATH_MAX];
    bool resolved = realpath(o->input, input) != NULL;
    for (size_t i = 0; i < sizeof known / sizeof *known && !o->have_stats; i++) {
        bool same = strcmp(o->input, known[i]) == 0 ||
                    (resolved && realpath(input_dir(known[i]), dir) && strcmp(input, dir) == 0);
        if (same)
            o->have_stats = ody_data_known_stats(known[i], &o->mean, &o->std);
    }
}

/* dir/name, or dir/name.gz when only that exists. */
static ody_status find_idx(ody_ctx *ctx, const char *dir, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s.gz", dir, name);
    if (access(out, F_OK) != 0)
        snprintf(out, len, "%s/%s", dir, name);
    if (access(out, F_OK) != 0)
        return ody_fail(ctx, ODY_ERR_DATA, "%s: cannot open: %s (tried %s.gz too)", out,
                        strerror(errno), name);
    return ODY_OK;
}

/* Open the train (set 0) or test (set 1) IDX pair of dir, bytes as floats 0..255. */
static ody_status open_idx_set(ody_ctx *ctx, const char *dir, int set, ody_dataset **out)
{
    char images[1024], labels[1024];
    ody_status st = find_idx(ctx, dir, idx_names[set][0], images, sizeof images);
    if (st == ODY_OK)
        st = find_idx(ctx, dir, idx_names[set][1], labels, sizeof labels);
    ody_normalize identity = {.scale = 1, .mean = 0, .std = 1};
    return st == ODY_OK ? ody_idx_open(ctx, images, labels, 256, identity, out) : st;
}

/* A data set of `dims` (rank 1 or 4), chunked along N by `chunk` samples (0: contiguous). */
static hid_t create_dataset(hid_t group, const char *name, hid_t file_type, int rank,
                           const hsize_t *dims, long chunk)
{
    hsize_t chunk_dims[4];
    memcpy(chunk_dims, dims, (size_t)rank * sizeof *dims);
    if (chunk > 0 && (hsize_t)chunk < dims[0])
        chunk_dims[0] = (hsize_t)chunk;
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t dset = H5I_INVALID_HID;
    if (space >= 0 && dcpl >= 0 && (chunk == 0 || H5Pset_chunk(dcpl, rank, chunk_dims) >= 0))
        dset = H5Dcreate2(group, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    return dset;
}

/* Write rows [first, first + count) of dset (rank 1 or 4, `dims`) from buf. */
static herr_t write_rows(hid_t dset, hid_t mem_type, int rank, const hsize_t *dims, hsize_t first,
                         hsize_t count, const void *buf)
{
    hsize_t start[4] = {first, 0, 0, 0}, block[4];
    memcpy(block, dims, (size_t)rank * sizeof *dims);
    block[0] = count;
    hid_t file_space = H5Dget_space(dset);
    hid_t mem_space = H5Screate_simple(rank, block, NULL);
    herr_t rc = -1;
    if (file_space >= 0 && mem_space >= 0 &&
        H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, block, NULL) >= 0)
        rc = H5Dwrite(dset, mem_type, mem_space, file_space, H5P_DEFAULT, buf);
    if (mem_space >= 0)
        H5Sclose(mem_space);
    if (file_space >= 0)
        H5Sclose(file_space);
    return rc;
}

/* One group's output data sets and the buffers of one block. */
typedef struct {
    hid_t images, labels;
    hsize_t dims[4]; /* (N, C, H, W) */
    size_t numel;
    float *x;        /* (BLOCK_ROWS, numel) as read: bytes as floats, or float32 output */
    int32_t *y;      /* (BLOCK_ROWS) */
    uint8_t *bytes;  /* (BLOCK_ROWS, numel) uint8 output */
    int64_t ids[BLOCK_ROWS];
} group_writer;

/* Samples [first, first + count) of ds into the writer's data sets. */
static ody_status write_block(ody_ctx *ctx, group_writer *w, ody_dataset *ds, bool float32,
                              int64_t first, int count, int *max_label)
{
    for (int r = 0; r < count; r++)
        w->ids[r] = first + r;
    ody_status st = ody_dataset_read(ds, ctx, w->ids, count, w->x, w->y);
    if (st != ODY_OK)
        return st;
    size_t elements = (size_t)count * w->numel;
    for (size_t e = 0; e < elements; e++) {
        if (float32)
            w->x[e] = w->x[e] * (1.0f / 255.0f); /* the IDX reader's own scaling, bit for bit */
        else
            w->bytes[e] = (uint8_t)w->x[e]; /* an exact byte value: identity normalisation */
    }
    for (int r = 0; r < count; r++)
        *max_label = w->y[r] > *max_label ? w->y[r] : *max_label;
    hid_t mem_type = float32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
    const void *pixels = float32 ? (const void *)w->x : (const void *)w->bytes;
    if (write_rows(w->images, mem_type, 4, w->dims, (hsize_t)first, (hsize_t)count, pixels) < 0 ||
        write_rows(w->labels, H5T_NATIVE_INT32, 1, w->dims, (hsize_t)first, (hsize_t)count,
                   w->y) < 0)
        return ody_fail(ctx, ODY_ERR_IO, "cannot write samples %lld.. of %s", (long long)first,
                        ds->source);
    return ODY_OK;
}

static ody_status write_samples(ody_ctx *ctx, group_writer *w, ody_dataset *ds, bool float32,
                                int *max_label)
{
    size_t rows = BLOCK_ROWS;
    void *x = NULL, *y = NULL, *bytes = NULL;
    ody_status st = ody_alloc(ctx, rows * w->numel * sizeof(float), "convert block", &x);
    if (st == ODY_OK)
        st = ody_alloc(ctx, rows * sizeof(int32_t), "convert labels", &y);
    if (st == ODY_OK)
        st = ody_alloc(ctx, rows * w->numel, "convert bytes", &bytes);
    w->x = x, w->y = y, w->bytes = bytes;
    for (int64_t first = 0; st == ODY_OK && first < ds->n; first += BLOCK_ROWS) {
        int count = ds->n - first < BLOCK_ROWS ? (int)(ds->n - first) : BLOCK_ROWS;
        st = write_block(ctx, w, ds, float32, first, count, max_label);
    }
    ody_free(ctx, x, rows * w->numel * sizeof(float));
    ody_free(ctx, y, rows * sizeof(int32_t));
    ody_free(ctx, bytes, rows * w->numel);
    return st;
}

/* A float32 scalar attribute `name` = value on object obj. */
static herr_t write_float_attr(hid_t obj, const char *name, float value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = space < 0 ? -1
                           : H5Acreate2(obj, name, H5T_IEEE_F32LE, space, H5P_DEFAULT,
                                        H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : H5Awrite(attr, H5T_NATIVE_FLOAT, &value);
    if (attr >= 0 && H5Aclose(attr) < 0)
        rc = -1;
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* /name/images and /name/labels from ds. */
static ody_status write_group(ody_ctx *ctx, hid_t file, const char *name, ody_dataset *ds,
                              const convert_options *o, int *max_label)
{
    const ody_shape *shape = &ds->sample_shape; /* (1, H, W) from IDX */
    group_writer w = {.dims = {(hsize_t)ds->n, (hsize_t)shape->dims[0], (hsize_t)shape->dims[1],
                               (hsize_t)shape->dims[2]},
                      .numel = (size_t)ody_shape_numel(shape)};
    hid_t group = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t pixel_type = o->float32 ? H5T_IEEE_F32LE : H5T_STD_U8LE;
    w.images = group < 0 ? -1 : create_dataset(group, "images", pixel_type, 4, w.dims, o->chunk);
    w.labels = group < 0 ? -1 : create_dataset(group, "labels", H5T_STD_U8LE, 1, w.dims, 0);
    ody_status st = ODY_OK;
    if (w.images < 0 || w.labels < 0)
        st = ody_fail(ctx, ODY_ERR_IO, "%s: cannot create /%s/images and /%s/labels", o->output,
                      name, name);
    if (st == ODY_OK && o->have_stats &&
        (write_float_attr(w.images, "pixel_mean", o->mean) < 0 ||
         write_float_attr(w.images, "pixel_std", o->std) < 0))
        st = ody_fail(ctx, ODY_ERR_IO, "%s: cannot write attributes pixel_mean and pixel_std of "
                      "/%s/images", o->output, name);
    if (st == ODY_OK)
        st = write_samples(ctx, &w, ds, o->float32, max_label);
    herr_t closed = 0;
    closed |= w.labels >= 0 ? H5Dclose(w.labels) : 0;
    closed |= w.images >= 0 ? H5Dclose(w.images) : 0;
    closed |= group >= 0 ? H5Gclose(group) : 0;
    if (st == ODY_OK && closed < 0)
        st = ody_fail(ctx, ODY_ERR_IO, "%s: cannot finish /%s", o->output, name);
    return st;
}

static herr_t write_num_classes(hid_t file, int num_classes)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = space < 0 ? -1
                           : H5Acreate2(file, "num_classes", H5T_STD_I32LE, space, H5P_DEFAULT,
                                        H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : H5Awrite(attr, H5T_NATIVE_INT, &num_classes);
    if (attr >= 0 && H5Aclose(attr) < 0)
        rc = -1;
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* The whole file at path: both groups, then num_classes (the largest label + 1). */
static ody_status write_file(ody_ctx *ctx, const char *path, ody_dataset *const sets[2],
                             const convert_options *o)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot create", path);
    int max_label = 0;
    ody_status st = ODY_OK;
    for (int set = 0; set < 2 && st == ODY_OK; set++)
        st = write_group(ctx, file, group_names[set], sets[set], o, &max_label);
    if (st == ODY_OK && write_num_classes(file, max_label + 1) < 0)
        st = ody_fail(ctx, ODY_ERR_IO, "%s: cannot write attribute num_classes", path);
    if (H5Fclose(file) < 0 && st == ODY_OK)
        st = ody_fail(ctx, ODY_ERR_IO, "%s: cannot close", path);
    return st;
}

static ody_status convert(ody_ctx *ctx, const convert_options *o)
{
    const char *dir = input_dir(o->input);
    ody_dataset *sets[2] = {NULL, NULL};
    ody_status st = open_idx_set(ctx, dir, 0, &sets[0]);
    if (st == ODY_OK)
        st = open_idx_set(ctx, dir, 1, &sets[1]);
    char tmp[4096];
    if (st == ODY_OK && snprintf(tmp, sizeof tmp, "%s.tmp", o->output) >= (int)sizeof tmp)
        st = ody_fail(ctx, ODY_ERR_USAGE, "%s: path too long", o->output);
    if (st == ODY_OK) {
        st = write_file(ctx, tmp, sets, o);
        if (st == ODY_OK && rename(tmp, o->output) != 0)
            st = ody_fail(ctx, ODY_ERR_IO, "cannot rename %s to %s: %s", tmp, o->output,
                          strerror(errno));
        if (st != ODY_OK)
            unlink(tmp);
    }
    ody_dataset_destroy(ctx, sets[0]);
    ody_dataset_destroy(ctx, sets[1]);
    return st;
}

int main(int argc, char **argv)
{
    convert_options o;
    int code = parse_args(argc, argv, &o);
    if (code != 0)
        return code < 0 ? 0 : code;
    find_stats(&o);
    MPI_Init(&argc, &argv);
    ody_ctx *ctx = NULL;
    ody_status st = ody_ctx_create(&ctx, MPI_COMM_WORLD);
    if (st == ODY_OK && ctx->size > 1)
        st = ody_fail(ctx, ODY_ERR_USAGE, "run odyssey-convert as one process, not under mpirun");
    if (st == ODY_OK)
        st = convert(ctx, &o);
    if (st != ODY_OK)
        fprintf(stderr, "odyssey-convert: %s: %s\n", ody_status_name(st),
                ctx ? ody_ctx_error(ctx) : "cannot start");
    else if (o.have_stats)
        printf("odyssey-convert: wrote %s (pixel_mean %.4f, pixel_std %.4f)\n", o.output,
               (double)o.mean, (double)o.std);
    else
        printf("odyssey-convert: wrote %s (no pixel_mean and pixel_std: not a data set it "
               "knows; set data.mean and data.std to standardise)\n",
               o.output);
    code = ody_status_exit_code(st);
    ody_ctx_destroy(ctx);
    MPI_Finalize();
    return code;
}

/* Unit tests: data (IDX and HDF5 readers, synthetic, subsets and splits, sampler, loader). */
#include "ody_test.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>
#include <zlib.h>

#include "odyssey/data.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ------------------------------------------------------------- fixture */

typedef struct {
    ody_ctx *ctx;
    char dir[256]; /* scratch directory, removed with its files in teardown */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || ody_test_ctx_setup((void **)&f->ctx) != 0)
        return -1;
    if (ody_test_make_scratch(f->dir, sizeof f->dir, "data") != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ody_test_remove_tree(f->dir);
    /* Every test releases what it opened: nothing from ody_alloc, no HDF5 object. */
    int leaked = f->ctx->bytes_allocated != 0;
    if (leaked)
        print_error("%zu bytes still allocated\n", f->ctx->bytes_allocated);
    ssize_t h5_open = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (h5_open != 0) {
        print_error("%zd HDF5 objects still open\n", h5_open);
        leaked = 1;
    }
    ody_test_ctx_teardown((void **)&f->ctx);
    free(f);
    return leaked ? -1 : 0;
}

#define FIXTURE(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

static const char *path_in(const fixture *f, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", f->dir, name);
    return buf;
}

#define assert_error_has ody_assert_error_has

/* ------------------------------------------------------- IDX fixtures */

/*
 * Write the IDX file `name` in the fixture directory (gzipped when the name
 * ends in ".gz"): header (magic, dims) then data_len bytes of data.
 */
static void write_idx(const fixture *f, const char *name, uint32_t magic, const uint32_t *dims,
                      int ndim, const uint8_t *data, size_t data_len)
{
    char path[512];
    path_in(f, name, path, sizeof path);
    size_t len = 4 + 4 * (size_t)ndim + data_len, name_len = strlen(name);
    uint8_t *buf = malloc(len);
    uint32_t words[4] = {magic, dims[0], ndim > 1 ? dims[1] : 0, ndim > 2 ? dims[2] : 0};
    for (int w = 0; w <= ndim; w++)
        for (int b = 0; b < 4; b++)
            buf[4 * w + b] = (uint8_t)(words[w] >> (24 - 8 * b));
    if (data_len)
        memcpy(buf + 4 + 4 * ndim, data, data_len);
    if (name_len > 3 && strcmp(name + name_len - 3, ".gz") == 0) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, buf, (unsigned)len), (int)len);
        gzclose(g);
    } else {
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(buf, 1, len, fp), len);
        fclose(fp);
    }
    free(buf);
}

static uint8_t pixel(int64_t i, int p) { return (uint8_t)((i * 31 + p * 7) & 255); }

/* n images of h x w with pixel(i, p); keep = bytes of data actually written (SIZE_MAX: all). */
static void write_images(const fixture *f, const char *name, uint32_t n, uint32_t h, uint32_t w,
                         size_t keep)
{
    size_t bytes = (size_t)n * h * w;
    uint8_t *data = malloc(bytes + 1);
    for (size_t k = 0; k < bytes; k++)
        data[k] = pixel((int64_t)(k / (h * w)), (int)(k % (h * w)));
    write_idx(f, name, 0x803, (uint32_t[]){n, h, w}, 3, data, keep < bytes ? keep : bytes);
    free(data);
}

/* n labels i % 10, except sample `odd` gets label `odd_value` (odd < 0: none). */
static void write_labels(const fixture *f, const char *name, uint32_t n, int odd, uint8_t odd_value)
{
    uint8_t *labels = malloc(n);
    for (uint32_t i = 0; i < n; i++)
        labels[i] = (uint8_t)(i % 10);
    if (odd >= 0)
        labels[odd] = odd_value;
    write_idx(f, name, 0x801, (uint32_t[]){n}, 1, labels, n);
    free(labels);
}

/* n images of 3x4 and their labels. */
static void write_set(const fixture *f, const char *images, const char *labels, uint32_t n)
{
    write_images(f, images, n, 3, 4, SIZE_MAX);
    write_labels(f, labels, n, -1, 0);
}

static ody_normalize plain(void) { return (ody_normalize){.scale = 1, .mean = 0, .std = 1}; }

/* The status of opening images/labels in the fixture directory (a data set opened is closed again).
 */
static ody_status try_open(fixture *f, const char *images, const char *labels, int classes)
{
    char ip[512], lp[512];
    ody_dataset *ds = NULL;
    ody_status st = ody_idx_open(f->ctx, path_in(f, images, ip, sizeof ip),
                                 path_in(f, labels, lp, sizeof lp), classes, plain(), &ds);
    ody_dataset_destroy(f->ctx, ds);
    return st;
}

/* Opening images/labels fails with ODY_ERR_DATA and a message containing text. */
static void assert_open_fails(fixture *f, const char *images, const char *labels, int classes,
                              const char *text)
{
    assert_int_equal(try_open(f, images, labels, classes), ODY_ERR_DATA);
    assert_error_has(f->ctx, text);
}

/* --------------------------------------------------------- IDX tests */

static void test_idx_reads_and_normalises(void **state)
{
    fixture *f = *state;
    const ody_normalize norm = {.scale = 1.0f / 255.0f, .mean = 0.5f, .std = 0.25f};
    for (int gz = 0; gz <= 1; gz++) {
        const char *images = gz ? "img.gz" : "img", *labels = gz ? "lbl.gz" : "lbl";
        char ip[512], lp[512];
        path_in(f, images, ip, sizeof ip);
        path_in(f, labels, lp, sizeof lp);
        write_set(f, images, labels, 5);
        ody_dataset *ds = NULL;
        assert_int_equal(ody_idx_open(f->ctx, ip, lp, 10, norm, &ds), ODY_OK);
        assert_int_equal(ds->n, 5);
        assert_true(ody_shape_equal(&ds->sample_shape, &(ody_shape){3, {1, 3, 4}}));
        assert_int_equal(ds->num_classes, 10);
        assert_int_equal(ds->bytes_held, 5 * 12 + 5);
        assert_string_equal(ds->source, ip);
        assert_string_equal(ds->ops->kind, "idx");
        const int64_t rows[3] = {4, 0, 2};
        float x[3 * 12];
        int32_t y[3];
        assert_int_equal(ody_dataset_read(ds, f->ctx, rows, 3, x, y), ODY_OK);
        for (int r = 0; r < 3; r++) {
            assert_int_equal(y[r], rows[r] % 10);
            for (int p = 0; p < 12; p++) {
                float want = ((float)pixel(rows[r], p) * norm.scale - norm.mean) / norm.std;
                assert_true(x[r * 12 + p] == want);
            }
        }
        ody_dataset_destroy(f->ctx, ds);
    }
}

/*
 * Every byte value, through the reader's vector normalisation (8 or 16 at
 * a time, a masked or scalar tail: 272-pixel samples) at this run's CPU
 * level: the bits of the scalar expression, for two normalisations.
 */
static void test_idx_normalises_every_byte_value(void **state)
{
    fixture *f = *state;
    enum { H = 16, W = 17, N = 3, P = H * W };
    write_images(f, "img", N, H, W, SIZE_MAX);
    write_labels(f, "lbl", N, -1, 0);
    const ody_normalize norms[2] = {{.scale = 1.0f / 255.0f, .mean = 0.2860f, .std = 0.3530f},
                                    {.scale = 1.0f, .mean = -1.0f, .std = 3.0f}};
    for (int k = 0; k < 2; k++) {
        char ip[512], lp[512];
        ody_dataset *ds = NULL;
        assert_int_equal(ody_idx_open(f->ctx, path_in(f, "img", ip, sizeof ip), path_in(f, "lbl", lp, sizeof lp),
                                      10, norms[k], &ds),
                         ODY_OK);
        const int64_t rows[N] = {2, 0, 1};
        static float x[N * P], want[N * P];
        int32_t y[N];
        bool seen[256] = {false};
        assert_int_equal(ody_dataset_read(ds, f->ctx, rows, N, x, y), ODY_OK);
        for (int r = 0; r < N; r++)
            for (int p = 0; p < P; p++) {
                uint8_t v = pixel(rows[r], p);
                seen[v] = true;
                want[r * P + p] = ((float)v * norms[k].scale - norms[k].mean) / norms[k].std;
            }
        for (int v = 0; v < 256; v++)
            assert_true(seen[v]);
        assert_memory_equal(x, want, sizeof x);
        ody_dataset_destroy(f->ctx, ds);
    }
}

static void test_idx_truncated(void **state)
{
    fixture *f = *state;
    for (int gz = 0; gz <= 1; gz++) {
        const char *name = gz ? "short.gz" : "short";
        char p[512];
        write_images(f, name, 5, 3, 4, 30);
        write_labels(f, "lbl", 5, -1, 0);
        assert_open_fails(f, name, "lbl", 10, path_in(f, name, p, sizeof p));
        assert_error_has(f->ctx, "truncated: expected 60 bytes of image data, got 30");
    }
    write_idx(f, "stub", 0x803, (uint32_t[]){5}, 1, NULL, 0);
    assert_open_fails(f, "stub", "lbl", 10,
                      "truncated: expected 12 bytes of header dimensions, got 4");
    /* Every byte of data there, but the gzip trailer (CRC-32, length) cut short. */
    char p[512];
    write_images(f, "cut.gz", 5, 3, 4, SIZE_MAX);
    FILE *fp = fopen(path_in(f, "cut.gz", p, sizeof p), "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fclose(fp);
    assert_int_equal(truncate(p, size - 3), 0);
    assert_open_fails(f, "cut.gz", "lbl", 10, "cut.gz: truncated: the gzip stream ends before");
}

/*
 * A header claiming 16 million images over 200 KB of data (raw and gzip)
 * fails as truncated at once, holding memory of the order of the file, not
 * of the 12.5 GB claimed: a raw file's size is checked before anything is
 * allocated, a gzip file's buffer grows only as data arrives.
 */
static void test_idx_claim_beyond_data(void **state)
{
    fixture *f = *state;
    const uint32_t claim = 16000000;
    const size_t held = 255 * 784;
    uint8_t *data = malloc(held);
    for (size_t k = 0; k < held; k++)
        data[k] = pixel((int64_t)(k / 784), (int)(k % 784));
    write_labels(f, "lbl", 255, -1, 0);
    for (int gz = 0; gz <= 1; gz++) {
        const char *name = gz ? "claim.gz" : "claim";
        char p[512];
        write_idx(f, name, 0x803, (uint32_t[]){claim, 28, 28}, 3, data, held);
        f->ctx->bytes_peak = f->ctx->bytes_allocated;
        double start = ody_now();
        assert_open_fails(f, name, "lbl", 10, path_in(f, name, p, sizeof p));
        double seconds = ody_now() - start;
        assert_error_has(f->ctx, "truncated: expected 12544000000 bytes of image data, got 199920 "
                                 "(the header declares 16000000 images)");
        print_message("%s: %.3f s, peak %zu bytes allocated\n", name, seconds,
                      f->ctx->bytes_peak);
        assert_true(f->ctx->bytes_peak <= ((size_t)2 << 20));
        assert_true(seconds < 5.0);
    }
    free(data);
    /* A raw file longer than its header says is refused before it is read too. */
    write_idx(f, "few", 0x803, (uint32_t[]){3, 28, 28}, 3, (uint8_t[4 * 784]){0}, 4 * 784);
    assert_open_fails(f, "few", "lbl", 10, "unexpected data after the 3 images");
}

/* A gzip file whose data outgrows the first buffer (1 MiB here) reads whole through the growth. */
static void test_idx_gz_grows(void **state)
{
    fixture *f = *state;
    const uint32_t n = 30000; /* 30000 x 8 x 8 = 1.92 MB: the 1 MiB buffer doubles once */
    write_images(f, "big.gz", n, 8, 8, SIZE_MAX);
    write_labels(f, "big-lbl.gz", n, -1, 0);
    char ip[512], lp[512];
    ody_dataset *ds = NULL;
    assert_int_equal(ody_idx_open(f->ctx, path_in(f, "big.gz", ip, sizeof ip),
                                  path_in(f, "big-lbl.gz", lp, sizeof lp), 10, plain(), &ds),
                     ODY_OK);
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->bytes_held, (size_t)n * 64 + n);
    const int64_t rows[3] = {0, 16384, n - 1}; /* before, at and after the first buffer's end */
    float x[3 * 64];
    int32_t y[3];
    assert_int_equal(ody_dataset_read(ds, f->ctx, rows, 3, x, y), ODY_OK);
    for (int r = 0; r < 3; r++) {
        assert_int_equal(y[r], rows[r] % 10);
        for (int p = 0; p < 64; p++)
            assert_true(x[r * 64 + p] == (float)pixel(rows[r], p));
    }
    ody_dataset_destroy(f->ctx, ds);
    /* The same data under a header claiming twice as many: truncated after the last byte. */
    write_images(f, "short.gz", 2 * n, 8, 8, (size_t)n * 64);
    assert_open_fails(f, "short.gz", "big-lbl.gz", 10,
                      "truncated: expected 3840000 bytes of image data, got 1920000");
}

static void test_idx_bad_magic(void **state)
{
    fixture *f = *state;
    char p[512];
    write_labels(f, "lbl", 5, -1, 0);
    assert_open_fails(f, "lbl", "lbl", 10,
                      "lbl: bad magic 0x00000801 (type 0x08 (unsigned byte), 1 dimension)");
    assert_error_has(f->ctx, "expected 0x00000803");
    write_idx(f, "float", 0xD03, (uint32_t[]){1, 1, 1}, 3, (uint8_t[4]){0}, 4);
    assert_open_fails(f, "float", "lbl", 10, "type 0x0d (float), 3 dimensions");
    FILE *fp = fopen(path_in(f, "text", p, sizeof p), "w");
    fputs("hello, this is not IDX", fp);
    fclose(fp);
    assert_open_fails(f, "text", "lbl", 10, "not an IDX file");
    write_images(f, "img", 5, 3, 4, SIZE_MAX);
    assert_open_fails(f, "img", "img", 10, "expected 0x00000801 (IDX labels");
}

static void test_idx_bad_dimensions_and_trailing_data(void **state)
{
    fixture *f = *state;
    write_labels(f, "lbl", 5, -1, 0);
    write_idx(f, "zero", 0x803, (uint32_t[]){5, 0, 4}, 3, NULL, 0);
    assert_open_fails(f, "zero", "lbl", 10, "dimension 1 of the header is zero");
    write_idx(f, "huge", 0x803, (uint32_t[]){5, 100000, 4}, 3, NULL, 0);
    assert_open_fails(f, "huge", "lbl", 10, "absurd");
    write_idx(f, "many", 0x803, (uint32_t[]){4000000000u, 28, 28}, 3, NULL, 0);
    assert_open_fails(f, "many", "lbl", 10, "absurd");
    /* A header for 5 images over the data of 6. */
    uint8_t data[72];
    for (int k = 0; k < 72; k++)
        data[k] = (uint8_t)k;
    write_idx(f, "long", 0x803, (uint32_t[]){5, 3, 4}, 3, data, 72);
    assert_open_fails(f, "long", "lbl", 10, "unexpected data after the 5 images");
}

static void test_idx_label_out_of_range(void **state)
{
    fixture *f = *state;
    char p[512];
    write_images(f, "img", 5, 3, 4, SIZE_MAX);
    write_labels(f, "lbl", 5, 3, 10);
    assert_open_fails(f, "img", "lbl", 10, path_in(f, "lbl", p, sizeof p));
    assert_error_has(f->ctx, "label 10 of sample 3 is out of range");
    assert_error_has(f->ctx, "10 classes");
    assert_int_equal(try_open(f, "img", "lbl", 11), ODY_OK);
}

static void test_idx_count_mismatch_and_missing(void **state)
{
    fixture *f = *state;
    char ip[512], lp[512];
    write_images(f, "img", 5, 3, 4, SIZE_MAX);
    write_labels(f, "lbl", 4, -1, 0);
    assert_open_fails(f, "img", "lbl", 10, path_in(f, "img", ip, sizeof ip));
    assert_error_has(f->ctx, path_in(f, "lbl", lp, sizeof lp));
    assert_error_has(f->ctx, "5 images but");
    assert_error_has(f->ctx, "4 labels");
    assert_open_fails(f, "nothing-here", "lbl", 10,
                      "nothing-here: cannot open: No such file or directory");
}

static void test_read_checks_indices(void **state)
{
    fixture *f = *state;
    char ip[512], lp[512];
    write_set(f, "img", "lbl", 5);
    ody_dataset *ds = NULL;
    assert_int_equal(ody_idx_open(f->ctx, path_in(f, "img", ip, sizeof ip),
                                  path_in(f, "lbl", lp, sizeof lp), 10, plain(), &ds),
                     ODY_OK);
    float x[24];
    int32_t y[2];
    assert_int_equal(ody_dataset_read(ds, f->ctx, (int64_t[]){0, 5}, 2, x, y), ODY_ERR_DATA);
    assert_error_has(f->ctx, "sample index 5 is out of range");
    assert_int_equal(ody_dataset_read(ds, f->ctx, (int64_t[]){-1}, 1, x, y), ODY_ERR_DATA);
    ody_dataset_destroy(f->ctx, ds);
}

/* ------------------------------------------------------ ody_data_open */

static ody_data_options idx_options(const fixture *f)
{
    ody_data_options opt = {.scale = false};
    snprintf(opt.name, sizeof opt.name, "idx");
    snprintf(opt.path, sizeof opt.path, "%s", f->dir);
    snprintf(opt.train_images, sizeof opt.train_images, "train-img");
    snprintf(opt.train_labels, sizeof opt.train_labels, "train-lbl");
    snprintf(opt.validation, sizeof opt.validation, "none");
    return opt;
}

static void test_open_idx_tries_gz(void **state)
{
    fixture *f = *state;
    char p[512];
    write_set(f, "train-img.gz", "train-lbl", 5);
    ody_data_options opt = idx_options(f);
    ody_dataset *train = NULL, *val = (ody_dataset *)1;
    assert_int_equal(ody_data_open(f->ctx, &opt, 1, ody_shape3(1, 3, 4), 10, &train, &val), ODY_OK);
    assert_non_null(train);
    assert_null(val);
    assert_int_equal(train->n, 5);
    assert_string_equal(train->source, path_in(f, "train-img.gz", p, sizeof p));
    ody_dataset_destroy(f->ctx, train);

    /* Default file names (fashion_mnist in another directory), ".gz" or not. */
    write_set(f, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 5);
    write_set(f, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 3);
    ody_data_options fm = {.name = "fashion_mnist", .validation = "test", .scale = true};
    snprintf(fm.path, sizeof fm.path, "%s", f->dir);
    assert_int_equal(ody_data_open(f->ctx, &fm, 1, ody_shape3(1, 3, 4), 10, &train, &val), ODY_OK);
    assert_int_equal(train->n, 5);
    assert_int_equal(val->n, 3);
    assert_true(train->norm.scale == 1.0f / 255.0f);
    ody_dataset_destroy(f->ctx, val);
    ody_dataset_destroy(f->ctx, train);

    /* Training files but no test files: an error, and the training set is released again. */
    unlink(path_in(f, "t10k-images-idx3-ubyte", p, sizeof p));
    assert_int_equal(ody_data_open(f->ctx, &fm, 1, ody_shape3(1, 3, 4), 10, &train, &val),
                     ODY_ERR_DATA);
    assert_error_has(f->ctx, "t10k-images-idx3-ubyte: cannot open: No such file or directory");
    assert_null(train);
    assert_null(val);
}

/* The status of ody_data_open (what it opened is closed again). */
static ody_status try_data_open(fixture *f, const ody_data_options *opt, ody_shape shape,
                                int classes)
{
    ody_dataset *train = NULL, *val = NULL;
    ody_status st = ody_data_open(f->ctx, opt, 1, shape, classes, &train, &val);
    ody_dataset_destroy(f->ctx, train);
    ody_dataset_destroy(f->ctx, val);
    return st;
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    char p[512];
    write_set(f, "train-img", "train-lbl", 5);
    ody_shape shape = ody_shape3(1, 3, 4);
    ody_data_options opt = idx_options(f);
    assert_int_equal(try_data_open(f, &opt, ody_shape3(3, 32, 32), 10), ODY_ERR_DATA);
    char want[700];
    snprintf(want, sizeof want,
             "%s: images are 1x3x4 but the model expects 3x32x32 (model.input_shape)",
             path_in(f, "train-img", p, sizeof p));
    assert_string_equal(ody_ctx_error(f->ctx), want);
    assert_int_equal(try_data_open(f, &opt, ody_shape1(12), 10),
                     ODY_OK); /* flat input: same size */
    assert_int_equal(try_data_open(f, &opt, shape, 4), ODY_ERR_DATA);
    assert_error_has(f->ctx, "label 4 of sample 4 is out of range");

    snprintf(opt.validation, sizeof opt.validation, "test");
    assert_int_equal(try_data_open(f, &opt, shape, 10), ODY_ERR_CONFIG);
    assert_error_has(f->ctx, "data.test_images");
    snprintf(opt.validation, sizeof opt.validation, "maybe");
    assert_int_equal(try_data_open(f, &opt, shape, 10), ODY_ERR_CONFIG);
    assert_error_has(f->ctx, "data.validation: 'maybe'");
    snprintf(opt.validation, sizeof opt.validation, "none");
    snprintf(opt.train_images, sizeof opt.train_images, "absent");
    assert_int_equal(try_data_open(f, &opt, shape, 10), ODY_ERR_DATA);
    assert_error_has(f->ctx, "absent: cannot open: No such file or directory (tried ");
    assert_error_has(f->ctx, "absent.gz too)");

    snprintf(opt.name, sizeof opt.name, "hdf5");
    assert_int_equal(try_data_open(f, &opt, shape, 10), ODY_ERR_DATA);
    snprintf(want, sizeof want, "%s: is a directory, not an HDF5 file", f->dir);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    opt.path[0] = '\0';
    assert_int_equal(try_data_open(f, &opt, shape, 10), ODY_ERR_CONFIG);
    assert_error_has(f->ctx, "data.path: required for data.name hdf5");
    snprintf(opt.name, sizeof opt.name, "cifar");
    assert_int_equal(try_data_open(f, &opt, shape, 10), ODY_ERR_CONFIG);
    assert_error_has(f->ctx, "data.name: unknown data set 'cifar'");
    if (access("/usr/share/datasets/mnist", F_OK) != 0) {
        ody_data_options mnist = {.name = "mnist", .validation = "none"};
        assert_int_equal(try_data_open(f, &mnist, shape, 10), ODY_ERR_CONFIG);
        assert_error_has(f->ctx, "data.path: required for data.name mnist");
    }
}

static void test_fashion_mnist(void **state)
{
    fixture *f = *state;
    if (access(FASHION_DIR, R_OK) != 0) {
        print_message("skipped: %s is missing (apt-get install dataset-fashion-mnist)\n",
                      FASHION_DIR);
        skip();
    }
    ody_data_options opt = {.scale = true}; /* no name, no validation: fashion_mnist, test */
    ody_dataset *train = NULL, *val = NULL;
    assert_int_equal(ody_data_open(f->ctx, &opt, 1, ody_shape3(1, 28, 28), 10, &train, &val),
                     ODY_OK);
    assert_int_equal(train->n, 60000);
    assert_int_equal(val->n, 10000);
    assert_int_equal(train->bytes_held, 60000 * 785);
    enum { CHUNK = 1000 };
    float *x = malloc(CHUNK * 784 * sizeof *x);
    int32_t y[CHUNK];
    int64_t ids[CHUNK], counts[10] = {0};
    float lo = 1, hi = 0;
    for (int64_t first = 0; first < train->n; first += CHUNK) {
        for (int i = 0; i < CHUNK; i++)
            ids[i] = first + i;
        assert_int_equal(ody_dataset_read(train, f->ctx, ids, CHUNK, x, y), ODY_OK);
        if (first == 0)
            assert_int_equal(y[0], 9);
        for (int i = 0; i < CHUNK; i++)
            counts[y[i]]++;
        for (int k = 0; k < CHUNK * 784; k++) {
            lo = fminf(lo, x[k]);
            hi = fmaxf(hi, x[k]);
        }
    }
    for (int c = 0; c < 10; c++)
        assert_int_equal(counts[c], 6000);
    assert_true(lo == 0.0f && hi == 1.0f);
    free(x);
    ody_dataset_destroy(f->ctx, train);
    ody_dataset_destroy(f->ctx, val);

    /* No name means fashion_mnist for standardisation too. */
    opt.standardize = true;
    assert_int_equal(ody_data_open(f->ctx, &opt, 1, ody_shape3(1, 28, 28), 10, &train, &val),
                     ODY_OK);
    assert_true(train->norm.mean == 0.2860f && train->norm.std == 0.3530f);
    assert_true(val->norm.mean == 0.2860f);
    ody_dataset_destroy(f->ctx, train);
    ody_dataset_destroy(f->ctx, val);
}

/* -------------------------------------------------------------- split */

/* 1000 images of 1x2x2 whose first two pixels spell the sample index. */
static void write_numbered(fixture *f)
{
    enum { N = 1000 };
    uint8_t *data = malloc(N * 4), labels[N];
    for (int i = 0; i < N; i++) {
        data[4 * i] = (uint8_t)(i & 255);
        data[4 * i + 1] = (uint8_t)(i >> 8);
        data[4 * i + 2] = data[4 * i + 3] = 0;
        labels[i] = (uint8_t)(i % 10);
    }
    write_idx(f, "train-img", 0x803, (uint32_t[]){N, 2, 2}, 3, data, N * 4);
    write_idx(f, "train-lbl", 0x801, (uint32_t[]){N}, 1, labels, N);
    free(data);
}

/* The base index of every sample of ds (from the numbered images), into ids[0..ds->n). */
static void numbers_of(fixture *f, ody_dataset *ds, int64_t *ids)
{
    float x[4];
    int32_t y;
    for (int64_t i = 0; i < ds->n; i++) {
        assert_int_equal(ody_dataset_read(ds, f->ctx, &i, 1, x, &y), ODY_OK);
        ids[i] = (int64_t)x[0] + 256 * (int64_t)x[1];
        assert_int_equal(y, ids[i] % 10);
    }
}

/* Open the numbered set with validation: split and return both halves' base indices. */
static void split_numbers(fixture *f, uint64_t seed, int64_t limit_train, int64_t limit_val,
                          int64_t *train_ids, int64_t *n_train, int64_t *val_ids, int64_t *n_val)
{
    ody_data_options opt = idx_options(f);
    snprintf(opt.validation, sizeof opt.validation, "split");
    opt.val_fraction = 0.25;
    opt.limit_train = limit_train;
    opt.limit_val = limit_val;
    ody_dataset *train = NULL, *val = NULL;
    assert_int_equal(ody_data_open(f->ctx, &opt, seed, ody_shape3(1, 2, 2), 10, &train, &val),
                     ODY_OK);
    assert_string_equal(train->ops->kind, "subset");
    *n_train = train->n;
    *n_val = val->n;
    numbers_of(f, train, train_ids);
    numbers_of(f, val, val_ids);
    /* Either half may go first: the base lives until both are gone. */
    ody_dataset_destroy(f->ctx, seed % 2 ? train : val);
    ody_dataset_destroy(f->ctx, seed % 2 ? val : train);
}

static void test_split(void **state)
{
    fixture *f = *state;
    write_numbered(f);
    int64_t a_train[1000], a_val[1000], b_train[1000], b_val[1000], nt, nv, mt, mv;
    split_numbers(f, 7, 0, 0, a_train, &nt, a_val, &nv);
    assert_int_equal(nt, 750);
    assert_int_equal(nv, 250);
    char seen[1000] = {0};
    for (int64_t i = 0; i < nt; i++)
        seen[a_train[i]]++;
    for (int64_t i = 0; i < nv; i++)
        seen[a_val[i]]++;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(seen[i], 1); /* disjoint, and together the whole set */
    split_numbers(f, 7, 0, 0, b_train, &mt, b_val, &mv);
    assert_memory_equal(a_train, b_train, sizeof(int64_t) * 750);
    assert_memory_equal(a_val, b_val, sizeof(int64_t) * 250);
    split_numbers(f, 8, 0, 0, b_train, &mt, b_val, &mv);
    assert_memory_not_equal(a_val, b_val, sizeof(int64_t) * 250);
    split_numbers(f, 7, 100, 10, b_train, &mt, b_val, &mv);
    assert_int_equal(mt, 100);
    assert_int_equal(mv, 10);
    assert_memory_equal(a_train, b_train, sizeof(int64_t) * 100);
    assert_memory_equal(a_val, b_val, sizeof(int64_t) * 10);

    ody_data_options opt = idx_options(f);
    snprintf(opt.validation, sizeof opt.validation, "split");
    assert_int_equal(try_data_open(f, &opt, ody_shape3(1, 2, 2), 10), ODY_ERR_CONFIG);
    assert_error_has(f->ctx, "data.val_fraction");
}

static void test_subset(void **state)
{
    fixture *f = *state;
    ody_dataset *base = NULL, *sub = NULL;
    assert_int_equal(ody_synthetic_open(f->ctx, 20, ody_shape1(3), 4, 1, 0, &base), ODY_OK);
    const int64_t map[3] = {7, 2, 19};
    assert_int_equal(ody_subset_open(f->ctx, base, map, 3, &sub), ODY_OK);
    assert_int_equal(sub->n, 3);
    float xs[9], xb[9];
    int32_t ys[3], yb[3];
    assert_int_equal(ody_dataset_read(sub, f->ctx, (int64_t[]){0, 1, 2}, 3, xs, ys), ODY_OK);
    assert_int_equal(ody_dataset_read(base, f->ctx, map, 3, xb, yb), ODY_OK);
    assert_memory_equal(xs, xb, sizeof xs);
    assert_memory_equal(ys, yb, sizeof ys);
    assert_int_equal(ody_dataset_read(sub, f->ctx, (int64_t[]){3}, 1, xs, ys), ODY_ERR_DATA);
    assert_error_has(f->ctx, "sample index 3 is out of range");
    ody_dataset_destroy(f->ctx, sub);
    assert_int_equal(ody_subset_open(f->ctx, base, (int64_t[]){1, 20}, 2, &sub), ODY_ERR_DATA);
    assert_error_has(f->ctx, "subset index 20 (entry 1) is out of range");
    assert_null(sub);
    ody_dataset_destroy(f->ctx, base);
}

/* ---------------------------------------------------------- synthetic */

static void test_synthetic(void **state)
{
    fixture *f = *state;
    enum { N = 2000, D = 64, K = 10 };
    ody_shape shape = ody_shape3(1, 8, 8);
    ody_dataset *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(ody_synthetic_open(f->ctx, N, shape, K, 3, 1, &a), ODY_OK);
    assert_int_equal(ody_synthetic_open(f->ctx, N, shape, K, 3, 1, &b), ODY_OK);
    assert_int_equal(ody_synthetic_open(f->ctx, N, shape, K, 3, 2, &c), ODY_OK);
    assert_string_equal(a->ops->kind, "synthetic");
    int64_t *ids = malloc(N * sizeof *ids);
    for (int i = 0; i < N; i++)
        ids[i] = i;
    float *xa = malloc(N * D * sizeof *xa), *xb = malloc(N * D * sizeof *xb),
          *xc = malloc(N * D * sizeof *xc);
    int32_t *ya = malloc(N * sizeof *ya), *yb = malloc(N * sizeof *yb),
            *yc = malloc(N * sizeof *yc);
    assert_int_equal(ody_dataset_read(a, f->ctx, ids, N, xa, ya), ODY_OK);
    assert_int_equal(ody_dataset_read(b, f->ctx, ids, N, xb, yb), ODY_OK);
    assert_int_equal(ody_dataset_read(c, f->ctx, ids, N, xc, yc), ODY_OK);
    assert_memory_equal(xa, xb, N * D * sizeof *xa);
    assert_memory_equal(ya, yb, N * sizeof *ya);
    assert_memory_not_equal(xa, xc, N * D * sizeof *xa);
    /* A sample read alone is the same as in a batch. */
    float one[D];
    int32_t y1;
    assert_int_equal(ody_dataset_read(a, f->ctx, &ids[1234], 1, one, &y1), ODY_OK);
    assert_memory_equal(one, xa + 1234 * D, sizeof one);
    assert_int_equal(y1, ya[1234]);
    /* Learnable: class means of set a classify set c (other salt) far above chance. */
    double mean[K][D] = {{0}};
    int count[K] = {0}, right = 0;
    for (int i = 0; i < N; i++) {
        assert_true(ya[i] >= 0 && ya[i] < K);
        count[ya[i]]++;
        for (int e = 0; e < D; e++)
            mean[ya[i]][e] += xa[i * D + e];
    }
    for (int k = 0; k < K; k++) {
        assert_true(count[k] > N / K / 2);
        for (int e = 0; e < D; e++)
            mean[k][e] /= count[k];
    }
    for (int i = 0; i < N; i++) {
        int best = 0;
        double best_d = INFINITY;
        for (int k = 0; k < K; k++) {
            double d = 0;
            for (int e = 0; e < D; e++)
                d += (xc[i * D + e] - mean[k][e]) * (xc[i * D + e] - mean[k][e]);
            if (d < best_d) {
                best_d = d;
                best = k;
            }
        }
        right += best == yc[i];
    }
    assert_true(right > N / 2);
    assert_int_equal(ody_dataset_read(a, f->ctx, (int64_t[]){N}, 1, one, &y1), ODY_ERR_DATA);
    free(ids), free(xa), free(xb), free(xc), free(ya), free(yb), free(yc);
    ody_dataset_destroy(f->ctx, a);
    ody_dataset_destroy(f->ctx, b);
    ody_dataset_destroy(f->ctx, c);
}

static void test_open_synthetic(void **state)
{
    fixture *f = *state;
    ody_data_options opt = {
        .name = "synthetic", .validation = "test", .synthetic_train = 100, .synthetic_val = 30};
    ody_dataset *train = NULL, *val = NULL;
    assert_int_equal(ody_data_open(f->ctx, &opt, 5, ody_shape3(3, 4, 4), 7, &train, &val), ODY_OK);
    assert_int_equal(train->n, 100);
    assert_int_equal(val->n, 30);
    assert_int_equal(train->num_classes, 7);
    assert_true(ody_shape_equal(&train->sample_shape, &(ody_shape){3, {3, 4, 4}}));
    float xt[48], xv[48];
    int32_t yt, yv;
    int64_t zero = 0;
    assert_int_equal(ody_dataset_read(train, f->ctx, &zero, 1, xt, &yt), ODY_OK);
    assert_int_equal(ody_dataset_read(val, f->ctx, &zero, 1, xv, &yv), ODY_OK);
    assert_memory_not_equal(xt, xv, sizeof xt); /* different salts */
    ody_dataset_destroy(f->ctx, train);
    ody_dataset_destroy(f->ctx, val);
    opt.synthetic_val = 0;
    assert_int_equal(try_data_open(f, &opt, ody_shape3(3, 4, 4), 7), ODY_ERR_CONFIG);
    assert_error_has(f->ctx, "data.synthetic_val");
}

/* ------------------------------------------------------------ sampler */

/* A copy of ctx that claims to be rank `rank` of `size` (the sampler reads only those). */
static ody_ctx as_rank(const ody_ctx *ctx, int rank, int size)
{
    ody_ctx fake = *ctx;
    fake.rank = rank;
    fake.size = size;
    fake.bytes_allocated = 0;
    return fake;
}

static void test_sampler_order(void **state)
{
    fixture *f = *state;
    enum { N = 103 };
    int64_t reference[N];
    for (int size = 1; size <= 8; size++)
        for (int rank = 0; rank < size; rank++) {
            ody_ctx fake = as_rank(f->ctx, rank, size);
            ody_sampler *s = NULL;
            assert_int_equal(ody_sampler_create(&fake, &s, N, 10, true, false, 5, 1), ODY_OK);
            assert_int_equal(s->rank, rank);
            assert_int_equal(s->size, size);
            assert_int_equal(s->epoch, -1);
            ody_sampler_set_epoch(s, 2);
            if (size == 1)
                memcpy(reference, s->order, sizeof reference);
            assert_memory_equal(s->order, reference, sizeof reference);
            ody_sampler_destroy(&fake, s);
            assert_int_equal(fake.bytes_allocated, 0);
        }
    char seen[N] = {0};
    for (int i = 0; i < N; i++)
        seen[reference[i]]++;
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    ody_sampler *s = NULL, *plain_order = NULL;
    assert_int_equal(ody_sampler_create(f->ctx, &s, N, 10, true, false, 5, 1), ODY_OK);
    ody_sampler_set_epoch(s, 3);
    assert_memory_not_equal(s->order, reference, sizeof reference);
    ody_sampler_set_epoch(s, 2);
    assert_memory_equal(s->order, reference, sizeof reference);
    assert_int_equal(ody_sampler_create(f->ctx, &plain_order, N, 10, false, false, 5, 1), ODY_OK);
    ody_sampler_set_epoch(plain_order, 4);
    for (int i = 0; i < N; i++)
        assert_int_equal(plain_order->order[i], i);
    ody_sampler_destroy(f->ctx, s);
    ody_sampler_destroy(f->ctx, plain_order);
}

/* Check every step of one sampler configuration over all ranks; returns the largest share. */
static int64_t check_shares(const ody_ctx *ctx, int64_t n, int64_t batch, int size, int chunk,
                            bool drop_last)
{
    ody_sampler *s[8] = {0};
    ody_ctx fake[8];
    for (int r = 0; r < size; r++) {
        fake[r] = as_rank(ctx, r, size);
        assert_int_equal(ody_sampler_create(&fake[r], &s[r], n, batch, true, drop_last, 9, chunk),
                         ODY_OK);
        ody_sampler_set_epoch(s[r], 1);
    }
    int64_t steps = ody_sampler_steps(s[0]), most = 0;
    assert_int_equal(steps, drop_last ? n / batch : (n + batch - 1) / batch);
    for (int64_t step = 0; step < steps; step++) {
        int64_t want = n - step * batch < batch ? n - step * batch : batch;
        int64_t next = step * batch, fewest = INT64_MAX, largest = 0;
        for (int r = 0; r < size; r++) {
            ody_share sh;
            ody_sampler_share(s[r], step, &sh);
            assert_int_equal(sh.step, step);
            assert_int_equal(sh.global_first, step * batch);
            assert_int_equal(sh.global_count, want);
            assert_int_equal(sh.local_first, next); /* contiguous, in rank order, no overlap */
            assert_ptr_equal(sh.indices, s[r]->order + sh.local_first);
            next += sh.local_count;
            int64_t chunks =
                (sh.local_count + chunk - 1) / chunk; /* only the step's end is short */
            fewest = chunks < fewest ? chunks : fewest;
            largest = chunks > largest ? chunks : largest;
            most = sh.local_count > most ? sh.local_count : most;
            if (sh.local_first + sh.local_count < step * batch + want)
                assert_int_equal(sh.local_count % chunk, 0);
        }
        assert_int_equal(next, step * batch + want); /* the union is the whole step */
        assert_true(largest - fewest <= 1);
    }
    assert_int_equal(ody_sampler_max_local(s[0]), most);
    for (int r = 0; r < size; r++)
        ody_sampler_destroy(&fake[r], s[r]);
    return most;
}

static void test_sampler_shares(void **state)
{
    fixture *f = *state;
    const int64_t ns[] = {1, 7, 29, 64, 100}, batches[] = {1, 2, 3, 5, 7, 8, 13, 16, 64};
    for (int size = 1; size <= 8; size++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
                for (int chunk = 1; chunk <= 3; chunk++)
                    for (int drop = 0; drop <= 1; drop++)
                        check_shares(f->ctx, ns[i], batches[b], size, chunk, drop);
    /* With chunk 1 the largest share is ceil(B / P). */
    assert_int_equal(check_shares(f->ctx, 100, 16, 3, 1, false), 6);
    assert_int_equal(check_shares(f->ctx, 100, 2, 8, 1, false), 1);
}

static void test_sampler_drop_last(void **state)
{
    fixture *f = *state;
    const struct {
        int64_t n, batch, keep, drop, max_keep, max_drop;
    } cases[] = {{10, 4, 3, 2, 4, 4}, {8, 4, 2, 2, 4, 4}, {3, 4, 1, 0, 3, 0}, {0, 4, 0, 0, 0, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int drop = 0; drop <= 1; drop++) {
            ody_sampler *s = NULL;
            assert_int_equal(
                ody_sampler_create(f->ctx, &s, cases[c].n, cases[c].batch, false, drop, 1, 1),
                ODY_OK);
            assert_int_equal(ody_sampler_steps(s), drop ? cases[c].drop : cases[c].keep);
            assert_int_equal(ody_sampler_max_local(s),
                             drop ? cases[c].max_drop : cases[c].max_keep);
            ody_share sh;
            ody_sampler_share(s, ody_sampler_steps(s), &sh); /* past the end: empty */
            assert_int_equal(sh.global_count, 0);
            assert_int_equal(sh.local_count, 0);
            ody_sampler_destroy(f->ctx, s);
        }
    ody_sampler *s = NULL;
    assert_int_equal(ody_sampler_create(f->ctx, &s, 10, 0, false, false, 1, 1), ODY_ERR_CONFIG);
    assert_null(s);
}

/* ------------------------------------------------------- augmentation */

/* (C, H, W) = (2, 5, 4) values that differ everywhere. */
enum { AUG_C = 2, AUG_H = 5, AUG_W = 4, AUG_N = AUG_C * AUG_H * AUG_W };
static const ody_shape aug_shape = {3, {AUG_C, AUG_H, AUG_W}};

static bool same_draw(ody_augment_draw a, ody_augment_draw b)
{
    return a.dy == b.dy && a.dx == b.dx && a.flip == b.flip;
}

/* A draw is a pure function of (seed, epoch, index); crop and flip are drawn apart. */
static void test_augment_draws_are_keyed(void **state)
{
    (void)state;
    const ody_augment_options both = {.crop_padding = 3, .horizontal_flip = true};
    const ody_augment_options crop = {.crop_padding = 3}, flip = {.horizontal_flip = true};
    const ody_augment_options none = {0};
    int differ_seed = 0, differ_epoch = 0, differ_index = 0;
    for (int64_t i = 0; i < 200; i++) {
        ody_augment_draw a = ody_augment_choose(&both, &aug_shape, 7, 2, i);
        assert_true(same_draw(a, ody_augment_choose(&both, &aug_shape, 7, 2, i)));
        assert_true(a.dy >= 0 && a.dy <= 6 && a.dx >= 0 && a.dx <= 6);
        differ_seed += !same_draw(a, ody_augment_choose(&both, &aug_shape, 8, 2, i));
        differ_epoch += !same_draw(a, ody_augment_choose(&both, &aug_shape, 7, 3, i));
        differ_index += !same_draw(a, ody_augment_choose(&both, &aug_shape, 7, 2, i + 1000));
        ody_augment_draw c = ody_augment_choose(&crop, &aug_shape, 7, 2, i);
        assert_true(c.dy == a.dy && c.dx == a.dx && !c.flip);
        ody_augment_draw f = ody_augment_choose(&flip, &aug_shape, 7, 2, i);
        assert_true(f.dy == 0 && f.dx == 0 && f.flip == a.flip);
        assert_true(same_draw(ody_augment_choose(&none, &aug_shape, 7, 2, i), (ody_augment_draw){0}));
    }
    /* Two draws agree by chance 1 time in 98. */
    assert_true(differ_seed > 180 && differ_epoch > 180 && differ_index > 180);
}

/* Offsets are uniform over [0, 2p] x [0, 2p], flips half the time. */
static void test_augment_draws_are_uniform(void **state)
{
    (void)state;
    enum { N = 50000, P = 2, SPAN = 2 * P + 1 };
    const ody_augment_options opt = {.crop_padding = P, .horizontal_flip = true};
    int cells[SPAN][SPAN] = {{0}}, rows[SPAN] = {0}, cols[SPAN] = {0}, flips = 0;
    for (int64_t i = 0; i < N; i++) {
        ody_augment_draw d = ody_augment_choose(&opt, &aug_shape, 42, i % 7, i);
        cells[d.dy][d.dx]++;
        rows[d.dy]++;
        cols[d.dx]++;
        flips += d.flip;
    }
    /* Expected N/5 = 10000 per offset (sd 89) and N/25 = 2000 per cell (sd 44): 5-6 sd. */
    for (int a = 0; a < SPAN; a++) {
        assert_true(abs(rows[a] - N / SPAN) < 500 && abs(cols[a] - N / SPAN) < 500);
        for (int b = 0; b < SPAN; b++)
            assert_true(abs(cells[a][b] - N / (SPAN * SPAN)) < 250);
    }
    assert_true(abs(flips - N / 2) < 600);
}


static void aug_image(float *x)
{
    for (int i = 0; i < AUG_N; i++)
        x[i] = (float)i + 0.5f;
}

/* Window (p, p) without a flip is the image; a flip mirrors each row; two flips undo it. */
static void test_augment_identity_and_flip(void **state)
{
    (void)state;
    float orig[AUG_N], x[AUG_N], scratch[AUG_H * AUG_W];
    aug_image(orig);
    for (int p = 0; p <= 2; p++) {
        memcpy(x, orig, sizeof x);
        ody_augment_apply(x, aug_shape, p, (ody_augment_draw){.dy = p, .dx = p}, -9.0f, scratch);
        assert_memory_equal(x, orig, sizeof x);
        const ody_augment_draw flip = {.dy = p, .dx = p, .flip = true};
        ody_augment_apply(x, aug_shape, p, flip, -9.0f, scratch);
        for (int c = 0; c < AUG_C; c++)
            for (int y = 0; y < AUG_H; y++)
                for (int w = 0; w < AUG_W; w++)
                    assert_true(x[(c * AUG_H + y) * AUG_W + w] ==
                                orig[(c * AUG_H + y) * AUG_W + AUG_W - 1 - w]);
        ody_augment_apply(x, aug_shape, p, flip, -9.0f, scratch);
        assert_memory_equal(x, orig, sizeof x);
    }
}

/*
 * Random erasing on 1x28x28 images, torchvision's ranges: erases with
 * probability p, a rectangle inside the image of 2% to 33% of it (up to
 * rounding) with aspect ratio in [0.3, 3.3] (up to rounding); the crop and
 * flip are those drawn without erasing; keyed like them.
 */
static void test_augment_erase_draws(void **state)
{
    (void)state;
    enum { N = 20000, H = 28, W = 28 };
    const ody_shape shape = {3, {1, H, W}};
    const ody_augment_options plain = {.crop_padding = 2, .horizontal_flip = true};
    const double probs[] = {0.0, 0.5, 1.0};
    for (size_t k = 0; k < sizeof probs / sizeof probs[0]; k++) {
        ody_augment_options opt = plain;
        opt.random_erasing = probs[k];
        int erased = 0, differ_epoch = 0;
        double area_sum = 0;
        for (int64_t i = 0; i < N; i++) {
            ody_augment_draw d = ody_augment_choose(&opt, &shape, 9, 4, i);
            ody_augment_draw c = ody_augment_choose(&plain, &shape, 9, 4, i);
            assert_true(same_draw(d, c) && c.eh == 0 && c.ew == 0);
            ody_augment_draw again = ody_augment_choose(&opt, &shape, 9, 4, i);
            assert_true(memcmp(&d, &again, sizeof d) == 0);
            ody_augment_draw other = ody_augment_choose(&opt, &shape, 9, 5, i);
            differ_epoch += d.ey != other.ey || d.ex != other.ex || d.eh != other.eh;
            assert_true((d.eh == 0) == (d.ew == 0));
            if (d.eh == 0)
                continue;
            erased++;
            assert_true(d.ey >= 0 && d.ex >= 0 && d.eh < H && d.ew < W);
            assert_true(d.ey + d.eh <= H && d.ex + d.ew <= W);
            /* h and w are sqrt(area * r) and sqrt(area / r) rounded: each within 0.5 */
            double lo = sqrt(ODY_ERASE_SCALE_MIN * H * W), hi = sqrt(ODY_ERASE_SCALE_MAX * H * W);
            assert_true((d.eh + 0.5) * (d.ew + 0.5) >= lo * lo);
            assert_true((d.eh - 0.5) * (d.ew - 0.5) <= hi * hi);
            assert_true((d.eh + 0.5) / (d.ew - 0.5) >= ODY_ERASE_RATIO_MIN);
            assert_true((d.eh - 0.5) / (d.ew + 0.5) <= ODY_ERASE_RATIO_MAX);
            area_sum += (double)d.eh * d.ew / (H * W);
        }
        /* p N erased (sd 71 at p = 0.5); at p = 1 a few draws find no rectangle in 10 tries */
        if (probs[k] == 0.0)
            assert_int_equal(erased, 0);
        else if (probs[k] == 1.0)
            assert_true(erased > N * 99 / 100);
        else
            assert_true(abs(erased - N / 2) < 400);
        if (erased > 0) {
            /* area uniform in [0.02, 0.33] of the image, a little less where tall or wide
             * rectangles do not fit: mean near 0.175 */
            double mean = area_sum / erased;
            assert_true(mean > 0.15 && mean < 0.185);
            assert_true(differ_epoch > N * probs[k] / 2);
        }
    }
}

/* Erasing sets the rectangle to 0 in every channel, after the crop and flip, and nothing else. */
static void test_augment_erase_apply(void **state)
{
    (void)state;
    float orig[AUG_N], x[AUG_N], want[AUG_N], scratch[AUG_H * AUG_W];
    aug_image(orig);
    const ody_augment_draw moved = {.dy = 0, .dx = 2, .flip = true};
    ody_augment_draw d = moved;
    d.ey = 1, d.ex = 2, d.eh = 3, d.ew = 1;
    memcpy(want, orig, sizeof want);
    ody_augment_apply(want, aug_shape, 1, moved, -5.0f, scratch);
    memcpy(x, orig, sizeof x);
    ody_augment_apply(x, aug_shape, 1, d, -5.0f, scratch);
    for (int c = 0; c < AUG_C; c++)
        for (int y = 0; y < AUG_H; y++)
            for (int w = 0; w < AUG_W; w++) {
                int i = (c * AUG_H + y) * AUG_W + w;
                bool in = y >= 1 && y < 4 && w == 2;
                assert_true(x[i] == (in ? 0.0f : want[i]));
            }
    /* erasing alone, the window being the image */
    memcpy(x, orig, sizeof x);
    ody_augment_apply(x, aug_shape, 1, (ody_augment_draw){.dy = 1, .dx = 1, .ey = 4, .ex = 0,
                                                          .eh = 1, .ew = 4},
                      -5.0f, scratch);
    for (int i = 0; i < AUG_N; i++)
        assert_true(x[i] == ((i / AUG_W) % AUG_H == 4 ? 0.0f : orig[i]));
}

/* Where the window leaves the image there is padding, and the image is shifted under it. */
static void test_augment_padding_where_expected(void **state)
{
    (void)state;
    /* 1x3x3 image 1..9, padding 1, window at row 0, column 2 of the padded 5x5:
     * padded rows -1..1 and columns 1..3 of the image. */
    const ody_shape small = {3, {1, 3, 3}};
    const float f = -7.0f;
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, scratch[9];
    ody_augment_apply(x, small, 1, (ody_augment_draw){.dy = 0, .dx = 2}, f, scratch);
    assert_memory_equal(x, ((float[9]){f, f, f, 2, 3, f, 5, 6, f}), sizeof x);
    float y[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    ody_augment_apply(y, small, 1, (ody_augment_draw){.dy = 0, .dx = 2, .flip = true}, f, scratch);
    assert_memory_equal(y, ((float[9]){f, f, f, f, 3, 2, f, 6, 5}), sizeof y);
    /* The corners of the padded image, padding 2, on both channels: window (0, 0) puts 2 rows
     * and 2 columns of padding at the top left, window (4, 4) at the bottom right. */
    enum { P = 2 };
    float orig[AUG_N], z[AUG_N], plane[AUG_H * AUG_W];
    aug_image(orig);
    for (int corner = 0; corner <= 1; corner++) {
        int shift = corner ? P : -P; /* out[y][x] = in[y + shift][x + shift] */
        memcpy(z, orig, sizeof z);
        ody_augment_draw d = {.dy = corner * 2 * P, .dx = corner * 2 * P};
        ody_augment_apply(z, aug_shape, P, d, f, plane);
        for (int c = 0; c < AUG_C; c++)
            for (int r = 0; r < AUG_H; r++)
                for (int w = 0; w < AUG_W; w++) {
                    int sr = r + shift, sw = w + shift;
                    bool inside = sr >= 0 && sr < AUG_H && sw >= 0 && sw < AUG_W;
                    float want = inside ? orig[(c * AUG_H + sr) * AUG_W + sw] : f;
                    assert_true(z[(c * AUG_H + r) * AUG_W + w] == want);
                }
    }
}

/* The padding is a black pixel as stored, normalised: what a stored 0 reads as. */
static void test_augment_fill_is_a_black_pixel(void **state)
{
    fixture *f = *state;
    char ip[512], lp[512];
    write_set(f, "img", "lbl", 5); /* sample 0's first pixel is 0 */
    const ody_normalize norm = {.scale = 1.0f / 255.0f, .mean = 0.2860f, .std = 0.3530f};
    ody_dataset *ds = NULL;
    assert_int_equal(ody_idx_open(f->ctx, path_in(f, "img", ip, sizeof ip),
                                  path_in(f, "lbl", lp, sizeof lp), 10, norm, &ds),
                     ODY_OK);
    float x[12];
    int32_t y;
    assert_int_equal(ody_dataset_read(ds, f->ctx, (int64_t[]){0}, 1, x, &y), ODY_OK);
    assert_true(ody_augment_fill(norm) == x[0]);
    assert_true(ody_augment_fill(norm) < -0.8f); /* -0.2860 / 0.3530, not 0.0 */
    assert_true(ody_augment_fill(plain()) == 0.0f);
    ody_dataset_destroy(f->ctx, ds);
}

/* ------------------------------------------------------------- loader */

typedef struct {
    int64_t step, global_count;
    int n;
    float x[16 * 6];
    int32_t y[16];
    int64_t ids[16];
} saved_batch;

/* Run one epoch from first_step into out[]; returns the batches seen. */
static int run_epoch(ody_ctx *ctx, ody_loader *l, int64_t epoch, int64_t first_step,
                     saved_batch *out, size_t numel)
{
    assert_int_equal(ody_loader_start_epoch(ctx, l, epoch, first_step), ODY_OK);
    int count = 0;
    for (;;) {
        ody_batch b;
        bool done = true;
        assert_int_equal(ody_loader_next(ctx, l, &b, &done), ODY_OK);
        if (done)
            break;
        saved_batch *s = &out[count++];
        memset(s, 0, sizeof *s); /* padding too: batches are compared as memory */
        s->step = b.step;
        s->global_count = b.global_count;
        s->n = b.n;
        assert_true(b.n <= 16);
        memcpy(s->x, b.x, (size_t)b.n * numel * sizeof(float));
        memcpy(s->y, b.y, (size_t)b.n * sizeof(int32_t));
        memcpy(s->ids, b.ids, (size_t)b.n * sizeof(int64_t));
    }
    return count;
}

/*
 * Loaders with and without prefetch over ds (37 samples of 1x2x3, as rank
 * 1 of 3, batch 8) give the same batches, and they are the sampler's
 * shares read directly. Releases ds.
 */
static void check_prefetch_matches_sync(ody_ctx *fake, ody_dataset *ds)
{
    ody_sampler *s[2] = {0};
    ody_loader *l[2] = {0};
    static saved_batch got[2][8];
    for (int p = 0; p < 2; p++) {
        assert_int_equal(ody_sampler_create(fake, &s[p], 37, 8, true, false, 11, 1), ODY_OK);
        assert_int_equal(ody_loader_create(fake, &l[p], ds, s[p], p == 1), ODY_OK);
    }
    for (int64_t epoch = 0; epoch < 3; epoch++) {
        int count[2];
        for (int p = 0; p < 2; p++)
            count[p] = run_epoch(fake, l[p], epoch, 0, got[p], 6);
        assert_int_equal(count[0], 5);
        assert_int_equal(count[1], 5);
        assert_memory_equal(got[0], got[1], sizeof got[0]);
        assert_int_equal(got[1][4].global_count, 5); /* 37 = 4 * 8 + 5: a partial last batch */
        for (int k = 0; k < 5; k++) {
            ody_share sh;
            ody_sampler_share(s[1], k, &sh);
            assert_int_equal(got[1][k].step, k);
            assert_int_equal(got[1][k].n, sh.local_count);
            assert_memory_equal(got[1][k].ids, sh.indices,
                                (size_t)sh.local_count * sizeof(int64_t));
            float x[16 * 6];
            int32_t y[16];
            assert_int_equal(ody_dataset_read(ds, fake, sh.indices, (int)sh.local_count, x, y),
                             ODY_OK);
            assert_memory_equal(got[1][k].x, x, (size_t)sh.local_count * 6 * sizeof(float));
            assert_memory_equal(got[1][k].y, y, (size_t)sh.local_count * sizeof(int32_t));
        }
    }
    for (int p = 0; p < 2; p++) {
        ody_loader_destroy(fake, l[p]);
        ody_sampler_destroy(fake, s[p]);
    }
    ody_dataset_destroy(fake, ds);
    assert_int_equal(fake->bytes_allocated, 0);
}

static void test_loader_prefetch_matches_sync(void **state)
{
    fixture *f = *state;
    ody_ctx fake = as_rank(f->ctx, 1, 3);
    ody_dataset *ds = NULL;
    assert_int_equal(ody_synthetic_open(&fake, 37, ody_shape3(1, 2, 3), 4, 2, 0, &ds), ODY_OK);
    check_prefetch_matches_sync(&fake, ds);
}

static void test_loader_start_epoch_later(void **state)
{
    fixture *f = *state;
    ody_ctx *ctx = f->ctx;
    ody_dataset *ds = NULL;
    assert_int_equal(ody_synthetic_open(ctx, 37, ody_shape3(1, 2, 3), 4, 2, 0, &ds), ODY_OK);
    ody_sampler *s[2] = {0};
    ody_loader *l[2] = {0};
    for (int p = 0; p < 2; p++) {
        assert_int_equal(ody_sampler_create(ctx, &s[p], 37, 8, true, false, 11, 1), ODY_OK);
        assert_int_equal(ody_loader_create(ctx, &l[p], ds, s[p], p == 1), ODY_OK);
    }
    ody_batch b;
    bool done;
    assert_int_equal(ody_loader_next(ctx, l[1], &b, &done), ODY_ERR_INTERNAL); /* not started */
    static saved_batch whole[8], later[8];
    assert_int_equal(run_epoch(ctx, l[0], 1, 0, whole, 6), 5);
    /* Prefetching loader: leave epoch 0 mid-way, with a read in flight, and resume epoch 1 at
     * step 3. */
    assert_int_equal(ody_loader_start_epoch(ctx, l[1], 0, 0), ODY_OK);
    assert_int_equal(ody_loader_next(ctx, l[1], &b, &done), ODY_OK);
    assert_int_equal(ody_loader_next(ctx, l[1], &b, &done), ODY_OK);
    assert_int_equal(run_epoch(ctx, l[1], 1, 3, later, 6), 2);
    assert_memory_equal(&later[0], &whole[3], 2 * sizeof(saved_batch));
    assert_int_equal(run_epoch(ctx, l[1], 1, 5, later, 6), 0); /* resumed at the end: done */
    assert_int_equal(ody_loader_start_epoch(ctx, l[1], 1, 6), ODY_ERR_INTERNAL);
    assert_int_equal(ody_loader_next(ctx, l[1], &b, &done), ODY_ERR_INTERNAL);
    for (int p = 0; p < 2; p++) {
        ody_loader_destroy(ctx, l[p]);
        ody_sampler_destroy(ctx, s[p]);
    }
    /* Destroy with a read still in flight. */
    assert_int_equal(ody_sampler_create(ctx, &s[0], 37, 8, true, false, 11, 1), ODY_OK);
    assert_int_equal(ody_loader_create(ctx, &l[0], ds, s[0], true), ODY_OK);
    assert_int_equal(ody_loader_start_epoch(ctx, l[0], 0, 0), ODY_OK);
    ody_loader_destroy(ctx, l[0]);
    ody_sampler_destroy(ctx, s[0]);
    ody_dataset_destroy(ctx, ds);
}

/* (2, 6, 5) synthetic samples for the augmenting loader. */
enum { AUG_LOADER_NUMEL = 2 * 6 * 5, AUG_LOADER_SEED = 5 };

/*
 * One epoch of l from first_step: every row must be its sample read
 * directly, then augmented by its draw for (seed, epoch, data-set index).
 * Adds the rows to *rows and those the augmentation changed to *changed.
 */
static void check_augmented_epoch(ody_ctx *ctx, ody_loader *l, ody_dataset *ds,
                                  const ody_augment_options *opt, int64_t epoch,
                                  int64_t first_step, int64_t *rows, int64_t *changed)
{
    assert_int_equal(ody_loader_start_epoch(ctx, l, epoch, first_step), ODY_OK);
    for (;;) {
        ody_batch b;
        bool done = true;
        assert_int_equal(ody_loader_next(ctx, l, &b, &done), ODY_OK);
        if (done)
            break;
        for (int i = 0; i < b.n; i++) {
            float raw[AUG_LOADER_NUMEL], want[AUG_LOADER_NUMEL], scratch[6 * 5];
            int32_t y;
            assert_int_equal(ody_dataset_read(ds, ctx, &b.ids[i], 1, raw, &y), ODY_OK);
            memcpy(want, raw, sizeof want);
            ody_augment_draw d = ody_augment_choose(opt, &ds->sample_shape, AUG_LOADER_SEED, epoch, b.ids[i]);
            ody_augment_apply(want, ds->sample_shape, opt->crop_padding, d,
                              ody_augment_fill(ds->norm), scratch);
            assert_memory_equal(b.x + (size_t)i * AUG_LOADER_NUMEL, want, sizeof want);
            assert_int_equal(b.y[i], y);
            *changed += memcmp(raw, want, sizeof raw) != 0;
        }
        *rows += b.n;
    }
}

/* The same augmented samples at 1 and 3 ranks, with and without prefetch, and on resuming. */
static void test_loader_augments_by_sample(void **state)
{
    fixture *f = *state;
    ody_dataset *ds = NULL;
    assert_int_equal(ody_synthetic_open(f->ctx, 37, ody_shape3(2, 6, 5), 4, 2, 0, &ds), ODY_OK);
    const ody_augment_options opt = {.crop_padding = 2, .horizontal_flip = true,
                                     .random_erasing = 0.5};
    const struct {
        int rank, size;
        bool prefetch;
    } runs[] = {{0, 1, false}, {0, 1, true}, {1, 3, false}, {2, 3, true}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        ody_ctx fake = as_rank(f->ctx, runs[r].rank, runs[r].size);
        ody_sampler *s = NULL;
        ody_loader *l = NULL;
        assert_int_equal(ody_sampler_create(&fake, &s, 37, 8, true, false, 11, 1), ODY_OK);
        assert_int_equal(ody_loader_create(&fake, &l, ds, s, runs[r].prefetch), ODY_OK);
        assert_int_equal(ody_loader_augment(&fake, l, &opt, AUG_LOADER_SEED), ODY_OK);
        int64_t rows = 0, changed = 0;
        for (int64_t epoch = 0; epoch < 3; epoch++)
            check_augmented_epoch(&fake, l, ds, &opt, epoch, 0, &rows, &changed);
        check_augmented_epoch(&fake, l, ds, &opt, 1, 3, &rows, &changed); /* a resume */
        if (runs[r].size == 1) {
            assert_int_equal(rows, 3 * 37 + 13); /* steps 3 and 4 of 8 and 5 samples */
            assert_true(changed > rows * 8 / 10); /* 1 sample in 50 is left as it is */
        }
        ody_loader_destroy(&fake, l);
        ody_sampler_destroy(&fake, s);
        assert_int_equal(fake.bytes_allocated, 0);
    }
    ody_dataset_destroy(f->ctx, ds);
}

/* Augmentation needs (C, H, W) samples and a padding of at most half the image. */
static void test_loader_augment_errors(void **state)
{
    fixture *f = *state;
    ody_ctx *ctx = f->ctx;
    ody_dataset *flat = NULL, *image = NULL;
    assert_int_equal(ody_synthetic_open(ctx, 20, ody_shape1(12), 4, 2, 0, &flat), ODY_OK);
    assert_int_equal(ody_synthetic_open(ctx, 20, ody_shape3(2, 6, 5), 4, 2, 0, &image), ODY_OK);
    ody_sampler *s = NULL;
    ody_loader *l[2] = {0};
    assert_int_equal(ody_sampler_create(ctx, &s, 20, 8, true, false, 11, 1), ODY_OK);
    assert_int_equal(ody_loader_create(ctx, &l[0], flat, s, true), ODY_OK);
    assert_int_equal(ody_loader_create(ctx, &l[1], image, s, false), ODY_OK);
    const ody_augment_options flip = {.horizontal_flip = true}, none = {0};
    assert_int_equal(ody_loader_augment(ctx, l[0], &flip, 1), ODY_ERR_CONFIG);
    assert_string_equal(ody_ctx_error(ctx), "data.horizontal_flip: augmentation needs image "
                                            "samples (C, H, W), but the samples are 12 "
                                            "(synthetic)");
    assert_int_equal(ody_loader_augment(ctx, l[0], &none, 1), ODY_OK); /* nothing to do */
    const ody_augment_options wide = {.crop_padding = 3, .horizontal_flip = true};
    assert_int_equal(ody_loader_augment(ctx, l[1], &wide, 1), ODY_ERR_CONFIG);
    assert_string_equal(ody_ctx_error(ctx), "data.crop_padding: 3 is more than half the image "
                                            "(samples 2x6x5, synthetic): at most 2");
    const ody_augment_options erase = {.random_erasing = 0.5}, certain = {.random_erasing = 1.5};
    assert_int_equal(ody_loader_augment(ctx, l[0], &erase, 1), ODY_ERR_CONFIG);
    assert_string_equal(ody_ctx_error(ctx), "data.random_erasing: augmentation needs image "
                                            "samples (C, H, W), but the samples are 12 "
                                            "(synthetic)");
    assert_int_equal(ody_loader_augment(ctx, l[1], &certain, 1), ODY_ERR_CONFIG);
    assert_string_equal(ody_ctx_error(ctx),
                        "data.random_erasing: 1.5 is not a probability (0 to 1)");
    assert_int_equal(ody_loader_augment(ctx, l[1], &erase, 1), ODY_OK);
    for (int i = 0; i < 2; i++)
        ody_loader_destroy(ctx, l[i]);
    ody_sampler_destroy(ctx, s);
    ody_dataset_destroy(ctx, flat);
    ody_dataset_destroy(ctx, image);
}

/* A data set kind that fails to read one sample, as a broken file would. */
static ody_status faulty_read(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n,
                              float *x, int32_t *y)
{
    for (int i = 0; i < n; i++) {
        if (indices[i] == 13)
            return ody_fail(ctx, ODY_ERR_DATA, "%s: cannot read sample 13", ds->source);
        x[i] = (float)indices[i];
        y[i] = 0;
    }
    return ODY_OK;
}

static void faulty_destroy(ody_dataset *ds, ody_ctx *ctx) { free(ds); }

static const ody_dataset_ops faulty_ops = {
    .kind = "faulty", .read = faulty_read, .destroy = faulty_destroy};

static void test_loader_error_propagates(void **state)
{
    fixture *f = *state;
    ody_ctx *ctx = f->ctx;
    ody_dataset *ds = calloc(1, sizeof *ds);
    *ds = (ody_dataset){.ops = &faulty_ops,
                        .source = "faulty.idx",
                        .n = 20,
                        .sample_shape = {1, {1}},
                        .num_classes = 1};
    for (int prefetch = 0; prefetch <= 1; prefetch++) {
        ody_sampler *s = NULL;
        ody_loader *l = NULL;
        assert_int_equal(ody_sampler_create(ctx, &s, 20, 4, false, false, 1, 1), ODY_OK);
        assert_int_equal(ody_loader_create(ctx, &l, ds, s, prefetch), ODY_OK);
        for (int epoch = 0; epoch < 2; epoch++) {
            assert_int_equal(ody_loader_start_epoch(ctx, l, epoch, 0), ODY_OK);
            ody_batch b;
            bool done;
            for (int step = 0; step < 3; step++) {
                assert_int_equal(ody_loader_next(ctx, l, &b, &done), ODY_OK);
                assert_false(done);
                assert_true(b.x[0] == (float)(4 * step));
            }
            ody_ctx_clear_error(ctx);
            assert_int_equal(ody_loader_next(ctx, l, &b, &done),
                             ODY_ERR_DATA); /* step 3 holds 13 */
            assert_string_equal(ody_ctx_error(ctx), "faulty.idx: cannot read sample 13");
            assert_int_equal(ody_loader_next(ctx, l, &b, &done), ODY_ERR_DATA); /* still failed */
        }
        ody_loader_destroy(ctx, l);
        ody_sampler_destroy(ctx, s);
    }
    ody_sampler *big = NULL;
    ody_loader *l = NULL;
    assert_int_equal(ody_sampler_create(ctx, &big, 21, 4, false, false, 1, 1), ODY_OK);
    assert_int_equal(ody_loader_create(ctx, &l, ds, big, true), ODY_ERR_INTERNAL);
    assert_null(l);
    ody_sampler_destroy(ctx, big);
    ody_dataset_destroy(ctx, ds);
}

/* --------------------------------------------------------------- HDF5 */

/* What write_h5 puts into one group of a test file. */
typedef struct {
    const char *group;  /* "train", "test" */
    int rank;           /* of images: 4, 3, or a wrong one (2); 0 writes no images */
    hsize_t n, c, h, w; /* c is 1 unless rank is 4 */
    hid_t image_type;   /* file type: H5T_STD_U8LE, H5T_IEEE_F32LE or one to refuse */
    hid_t label_type;   /* file type of the labels; 0 writes no labels */
    hsize_t labels;     /* how many labels (n unless testing a mismatch) */
    hsize_t chunk;      /* samples per chunk; 0: contiguous */
    bool deflate;       /* gzip-compress the chunks of the images */
    int bad_label;      /* sample whose label is bad_value; -1: none */
    int bad_value;
} h5_group;

static float fpixel(int64_t i, int p) { return (float)pixel(i, p) * 0.5f - 3.0f; }
static int32_t h5_label(int64_t i) { return (int32_t)((i * 7 + 3) % 10); }

static bool is_float_type(hid_t type) { return H5Tget_class(type) == H5T_FLOAT; }

static void write_h5_dataset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                             int rank, const hsize_t *dims, hsize_t chunk, bool deflate,
                             const void *data)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk_dims[4] = {chunk, 0, 0, 0};
    for (int i = 1; i < rank; i++)
        chunk_dims[i] = dims[i];
    if (chunk > 0)
        assert_true(H5Pset_chunk(dcpl, rank, chunk_dims) >= 0);
    if (deflate)
        assert_true(H5Pset_deflate(dcpl, 6) >= 0);
    hid_t dset = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(dset >= 0);
    assert_true(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(dset);
    H5Pclose(dcpl);
    H5Sclose(space);
}

/* /group/images with pixel() (fpixel() when float), the shape g says. */
static void write_h5_images(hid_t loc, const h5_group *g)
{
    hsize_t c = g->rank == 4 ? g->c : 1, numel = c * g->h * g->w, total = g->n * numel;
    hsize_t dims[4] = {g->n, g->c, g->h, g->w};
    if (g->rank == 3)
        dims[1] = g->h, dims[2] = g->w;
    if (g->rank == 2)
        dims[1] = g->h * g->w;
    bool as_float = is_float_type(g->image_type);
    void *data = malloc(total * (as_float ? sizeof(float) : 1) + 1);
    for (hsize_t k = 0; k < total; k++) {
        int64_t i = (int64_t)(k / numel);
        int p = (int)(k % numel);
        if (as_float)
            ((float *)data)[k] = fpixel(i, p);
        else
            ((uint8_t *)data)[k] = pixel(i, p);
    }
    write_h5_dataset(loc, "images", g->image_type, as_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8,
                     g->rank, dims, g->chunk, g->deflate, data);
    free(data);
}

static void write_h5_group(hid_t file, const h5_group *g)
{
    hid_t group = H5Gcreate2(file, g->group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(group >= 0);
    if (g->rank)
        write_h5_images(group, g);
    if (g->label_type) {
        int32_t *labels = malloc(g->labels * sizeof *labels + 1);
        for (hsize_t i = 0; i < g->labels; i++)
            labels[i] = (int)i == g->bad_label ? g->bad_value : h5_label((int64_t)i);
        write_h5_dataset(group, "labels", g->label_type, H5T_NATIVE_INT32, 1, &g->labels, 0,
                         false, labels);
        free(labels);
    }
    H5Gclose(group);
}

/* Write the HDF5 file `name` of the fixture with these groups; num_classes < 0: no attribute. */
static const char *write_h5(const fixture *f, const char *name, const h5_group *groups,
                            int count, int num_classes, char *path, size_t len)
{
    path_in(f, name, path, len);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0);
    for (int i = 0; i < count; i++)
        write_h5_group(file, &groups[i]);
    if (num_classes >= 0) {
        hid_t space = H5Screate(H5S_SCALAR);
        hid_t attr = H5Acreate2(file, "num_classes", H5T_STD_I32LE, space, H5P_DEFAULT,
                                H5P_DEFAULT);
        assert_true(H5Awrite(attr, H5T_NATIVE_INT, &num_classes) >= 0);
        H5Aclose(attr);
        H5Sclose(space);
    }
    assert_true(H5Fclose(file) >= 0);
    return path;
}

/* A well-formed group: n uint8 samples of c x h x w (rank 4) with int64 labels. */
static h5_group h5_uint8(const char *group, hsize_t n, hsize_t c, hsize_t h, hsize_t w)
{
    return (h5_group){.group = group, .rank = 4, .n = n, .c = c, .h = h, .w = w,
                      .image_type = H5T_STD_U8LE, .label_type = H5T_STD_I64LE, .labels = n,
                      .bad_label = -1};
}

/* Read indices[0..n) of ds and compare with what g wrote, normalised with norm. */
static void check_h5_read(fixture *f, ody_dataset *ds, const h5_group *g, ody_normalize norm,
                          const int64_t *indices, int n)
{
    size_t numel = (size_t)ody_shape_numel(&ds->sample_shape);
    float *x = malloc((size_t)n * numel * sizeof *x + 1);
    int32_t *y = malloc((size_t)n * sizeof *y + 1);
    assert_int_equal(ody_dataset_read(ds, f->ctx, indices, n, x, y), ODY_OK);
    bool as_float = is_float_type(g->image_type);
    for (int r = 0; r < n; r++) {
        assert_int_equal(y[r], h5_label(indices[r]));
        for (size_t p = 0; p < numel; p++) {
            float want = as_float ? (fpixel(indices[r], (int)p) - norm.mean) / norm.std
                                  : ((float)pixel(indices[r], (int)p) * norm.scale - norm.mean) /
                                        norm.std;
            if (x[r * numel + p] != want)
                fail_msg("row %d (sample %lld) element %zu: %g, expected %g", r,
                         (long long)indices[r], p, x[r * numel + p], want);
        }
    }
    free(x);
    free(y);
}

/* n pseudo-random indices below limit, duplicates likely. */
static void random_indices(int64_t *out, int n, int64_t limit, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        out[i] = (int64_t)((seed >> 8) % (uint32_t)limit);
    }
}

static void test_hdf5_reads_samples(void **state)
{
    fixture *f = *state;
    h5_group groups[2] = {h5_uint8("train", 50, 2, 3, 4), h5_uint8("test", 20, 1, 3, 4)};
    groups[0].chunk = 7; /* chunks that do not divide N */
    groups[1].rank = 3;  /* (N, H, W) */
    groups[1].label_type = H5T_STD_U8LE;
    char path[512], want[600];
    write_h5(f, "set.h5", groups, 2, 10, path, sizeof path);
    const ody_normalize norm = {.scale = 1.0f / 255.0f, .mean = 0.5f, .std = 0.25f};
    for (int gi = 0; gi < 2; gi++) {
        ody_dataset *ds = NULL;
        assert_int_equal(ody_hdf5_open(f->ctx, path, groups[gi].group, 10, norm, &ds), ODY_OK);
        assert_string_equal(ds->ops->kind, "hdf5");
        snprintf(want, sizeof want, "%s:/%s/images", path, groups[gi].group);
        assert_string_equal(ds->source, want);
        assert_int_equal(ds->n, groups[gi].n);
        ody_shape shape = ody_shape3(gi == 0 ? 2 : 1, 3, 4);
        assert_true(ody_shape_equal(&ds->sample_shape, &shape));
        assert_int_equal(ds->num_classes, 10);
        assert_true(ds->norm.scale == norm.scale);
        /* Unsorted, with duplicates and runs; then more than one piece (N rows) at once. */
        const int64_t few[] = {19, 0, 7, 7, 18, 1, 2, 3, 12, 7, 0, 19};
        check_h5_read(f, ds, &groups[gi], norm, few, 12);
        int64_t many[130];
        random_indices(many, 130, ds->n, 5 + (uint32_t)gi);
        check_h5_read(f, ds, &groups[gi], norm, many, 130);
        check_h5_read(f, ds, &groups[gi], norm, many, 0);
        assert_int_equal(ody_dataset_read(ds, f->ctx, (int64_t[]){ds->n}, 1, NULL, NULL),
                         ODY_ERR_DATA);
        assert_error_has(f->ctx, want);
        ody_dataset_destroy(f->ctx, ds);
    }
}

static void test_hdf5_float32(void **state)
{
    fixture *f = *state;
    h5_group groups[2] = {h5_uint8("train", 10, 1, 2, 3), h5_uint8("test", 4, 1, 2, 3)};
    groups[0].image_type = H5T_IEEE_F32LE;
    groups[1].image_type = H5T_IEEE_F32BE; /* any byte order */
    groups[1].chunk = 3;
    groups[1].deflate = true; /* slow for random batches, but it works */
    char path[512];
    write_h5(f, "float.h5", groups, 2, -1, path, sizeof path);
    const ody_normalize norm = {.scale = 1.0f / 255.0f, .mean = -1.0f, .std = 2.0f};
    for (int gi = 0; gi < 2; gi++) {
        ody_dataset *ds = NULL;
        assert_int_equal(ody_hdf5_open(f->ctx, path, groups[gi].group, 10, norm, &ds), ODY_OK);
        assert_true(ds->norm.scale == 1.0f); /* float32 images are used as stored */
        assert_true(ds->norm.mean == norm.mean && ds->norm.std == norm.std);
        const int64_t rows[] = {3, 1, 3, 0};
        check_h5_read(f, ds, &groups[gi], ds->norm, rows, 4);
        ody_dataset_destroy(f->ctx, ds);
    }
}

/* ody_hdf5_open of group "train" of the fixture file `name` fails with a message holding text. */
static void assert_h5_fails(fixture *f, const char *name, int classes, const char *text)
{
    char path[512];
    ody_dataset *ds = NULL;
    ody_status st = ody_hdf5_open(f->ctx, path_in(f, name, path, sizeof path), "train", classes,
                                  plain(), &ds);
    ody_dataset_destroy(f->ctx, ds);
    if (st != ODY_ERR_DATA)
        fail_msg("%s: status %d, expected a data error (%s)", name, st, ody_ctx_error(f->ctx));
    assert_null(ds);
    assert_error_has(f->ctx, path);
    assert_error_has(f->ctx, text);
}

/* Write `name` with the one group g (and no attribute), then expect opening it to fail. */
static void assert_h5_group_fails(fixture *f, const char *name, h5_group g, const char *text)
{
    char path[512];
    write_h5(f, name, &g, 1, -1, path, sizeof path);
    assert_h5_fails(f, name, 10, text);
}

static void test_hdf5_errors(void **state)
{
    fixture *f = *state;
    char p[512];
    assert_h5_fails(f, "absent.h5", 10, "absent.h5: cannot open: No such file or directory");
    FILE *fp = fopen(path_in(f, "text.h5", p, sizeof p), "w");
    fputs("hello, this is not HDF5\n", fp);
    fclose(fp);
    assert_h5_fails(f, "text.h5", 10, "text.h5: not an HDF5 file");
    h5_group g = h5_uint8("test", 5, 1, 3, 4);
    assert_h5_group_fails(f, "no-train.h5", g, "no-train.h5: no /train (expected /train/images");
    g = h5_uint8("train", 5, 1, 3, 4);
    g.rank = 0;
    assert_h5_group_fails(f, "no-images.h5", g, "no-images.h5: no /train/images");
    g = h5_uint8("train", 5, 1, 3, 4);
    g.label_type = 0;
    assert_h5_group_fails(f, "no-labels.h5", g, "no-labels.h5: no /train/labels");
    g.label_type = H5T_STD_I32LE;
    g.rank = 2;
    assert_h5_group_fails(f, "flat.h5", g,
                          "flat.h5:/train/images: shape (5, 12) has 2 dimensions; expected "
                          "(N, C, H, W) or (N, H, W)");
    g.rank = 4;
    g.image_type = H5T_STD_I16LE;
    assert_h5_group_fails(f, "int16.h5", g, "int16.h5:/train/images: elements are int16");
    g.image_type = H5T_IEEE_F64LE;
    assert_h5_group_fails(f, "double.h5", g, "elements are float64; expected uint8 or float32");
    g.image_type = H5T_STD_U8LE;
    g.label_type = H5T_IEEE_F32LE;
    assert_h5_group_fails(f, "flabel.h5", g,
                          "flabel.h5:/train/labels: labels are float32; expected an integer");
    g.label_type = H5T_STD_I8LE;
    g.labels = 4;
    assert_h5_group_fails(f, "count.h5", g, "count.h5:/train/images has 5 samples but");
    assert_error_has(f->ctx, "count.h5:/train/labels has 4 labels");
    g.labels = 5;
    g.bad_label = 3;
    g.bad_value = 10;
    assert_h5_group_fails(f, "range.h5", g,
                          "range.h5:/train/labels: label 10 of sample 3 is out of range: the "
                          "model has 10 classes (model.num_classes)");
    g.bad_value = -1;
    assert_h5_group_fails(f, "negative.h5", g, "label -1 of sample 3 is out of range");
    g = h5_uint8("train", 0, 1, 3, 4);
    assert_h5_group_fails(f, "empty.h5", g, "empty.h5:/train/images: shape (0, 1, 3, 4) is empty");
    g = h5_uint8("train", 5, 1, 3, 4);
    write_h5(f, "short.h5", &g, 1, -1, p, sizeof p);
    assert_int_equal(truncate(p, 1000), 0); /* the superblock, but not everything it points to */
    assert_h5_fails(f, "short.h5", 10, "short.h5: cannot open as HDF5 (HDF5: truncated file");
    write_h5(f, "classes.h5", &g, 1, 10, p, sizeof p);
    assert_h5_fails(f, "classes.h5", 12,
                    "classes.h5: attribute num_classes is 10 but the model has 12 classes");
}

/* /train/images (n, 1, 3, 4) uint8 and /train/labels (n) int64 of which only the first `written`
 * rows are written; chunk > 0: chunks of that many rows, else contiguous. */
static void write_h5_sparse(const fixture *f, const char *name, hsize_t n, hsize_t written,
                            hsize_t chunk)
{
    char path[512];
    hid_t file = H5Fcreate(path_in(f, name, path, sizeof path), H5F_ACC_TRUNC, H5P_DEFAULT,
                           H5P_DEFAULT);
    hid_t group = H5Gcreate2(file, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0 && group >= 0);
    const hsize_t dims[2][4] = {{n, 1, 3, 4}, {n}}, rows[2][4] = {{written, 1, 3, 4}, {written}};
    const int ranks[2] = {4, 1};
    const char *names[2] = {"images", "labels"};
    const hid_t types[2] = {H5T_STD_U8LE, H5T_STD_I64LE};
    uint8_t zeros[64 * 12 * 8] = {0};
    for (int k = 0; k < 2; k++) {
        hid_t space = H5Screate_simple(ranks[k], dims[k], NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        hsize_t chunk_dims[4] = {chunk, 1, 3, 4};
        if (chunk)
            assert_true(H5Pset_chunk(dcpl, ranks[k], chunk_dims) >= 0);
        hid_t dset = H5Dcreate2(group, names[k], types[k], space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        assert_true(dset >= 0);
        if (written) {
            hsize_t start[4] = {0};
            hid_t mem = H5Screate_simple(ranks[k], rows[k], NULL);
            assert_true(H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, rows[k], NULL) >=
                        0);
            assert_true(H5Dwrite(dset, k ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT8, mem, space,
                                 H5P_DEFAULT, zeros) >= 0);
            H5Sclose(mem);
        }
        H5Dclose(dset);
        H5Pclose(dcpl);
        H5Sclose(space);
    }
    H5Gclose(group);
    assert_true(H5Fclose(file) >= 0);
}

/*
 * A shape claiming more samples than the file holds is a data error found
 * before the labels are read (else 1e9 unwritten labels would be read back
 * as zeros into 4 GB): a chunked data set must have every chunk, a
 * contiguous one its bytes.
 */
static void test_hdf5_claim_beyond_data(void **state)
{
    fixture *f = *state;
    write_h5_sparse(f, "sparse.h5", 1000000000, 64, 64);
    f->ctx->bytes_peak = f->ctx->bytes_allocated;
    assert_h5_fails(f, "sparse.h5", 10,
                    "sparse.h5:/train/images: the file holds 1 of the 15625000 chunks its shape "
                    "needs");
    assert_true(f->ctx->bytes_peak < ((size_t)1 << 20));
    write_h5_sparse(f, "unwritten.h5", 1000, 0, 0);
    assert_h5_fails(f, "unwritten.h5", 10,
                    "unwritten.h5:/train/images: the file holds 0 bytes of it but its shape needs "
                    "1000 rows of 12 bytes");
    write_h5_sparse(f, "full.h5", 64, 64, 64); /* the same writer, every row written: fine */
    char path[512];
    ody_dataset *ds = NULL;
    assert_int_equal(ody_hdf5_open(f->ctx, path_in(f, "full.h5", path, sizeof path), "train", 10,
                                   plain(), &ds),
                     ODY_OK);
    ody_dataset_destroy(f->ctx, ds);
}

static ody_data_options h5_options(const char *path, const char *validation)
{
    ody_data_options opt = {.name = "hdf5", .scale = true};
    snprintf(opt.path, sizeof opt.path, "%s", path);
    snprintf(opt.validation, sizeof opt.validation, "%s", validation);
    return opt;
}

static void test_hdf5_data_open(void **state)
{
    fixture *f = *state;
    h5_group groups[2] = {h5_uint8("train", 30, 1, 3, 4), h5_uint8("test", 10, 1, 3, 4)};
    groups[1].rank = 3;
    char path[512], want[700];
    write_h5(f, "both.h5", groups, 2, 10, path, sizeof path);
    ody_shape shape = ody_shape3(1, 3, 4);
    ody_data_options opt = h5_options(path, "test");
    opt.limit_train = 25;
    ody_dataset *train = NULL, *val = NULL;
    assert_int_equal(ody_data_open(f->ctx, &opt, 3, shape, 10, &train, &val), ODY_OK);
    assert_int_equal(train->n, 25);
    assert_int_equal(val->n, 10);
    assert_true(train->norm.scale == 1.0f / 255.0f);
    snprintf(want, sizeof want, "%s:/test/images", path);
    assert_string_equal(val->source, want);
    check_h5_read(f, val, &groups[1], val->norm, (int64_t[]){9, 0}, 2);
    ody_dataset_destroy(f->ctx, train);
    ody_dataset_destroy(f->ctx, val);

    opt = h5_options(path, "split");
    opt.val_fraction = 0.2;
    assert_int_equal(ody_data_open(f->ctx, &opt, 3, ody_shape1(12), 10, &train, &val), ODY_OK);
    assert_int_equal(train->n, 24);
    assert_int_equal(val->n, 6);
    assert_string_equal(val->ops->kind, "subset");
    ody_dataset_destroy(f->ctx, val);
    ody_dataset_destroy(f->ctx, train);

    opt = h5_options(path, "none");
    assert_int_equal(try_data_open(f, &opt, ody_shape3(3, 32, 32), 10), ODY_ERR_DATA);
    snprintf(want, sizeof want,
             "%s:/train/images: images are 1x3x4 but the model expects 3x32x32 "
             "(model.input_shape)",
             path);
    assert_string_equal(ody_ctx_error(f->ctx), want);

    /* No /test: an error for validation test only, and the training set is released again. */
    write_h5(f, "train-only.h5", groups, 1, -1, path, sizeof path);
    opt = h5_options(path, "test");
    assert_int_equal(try_data_open(f, &opt, shape, 10), ODY_ERR_DATA);
    assert_error_has(f->ctx, "train-only.h5: no /test (expected /test/images and /test/labels; "
                             "without them use data.validation: split or none)");
    opt = h5_options(path, "none");
    assert_int_equal(try_data_open(f, &opt, shape, 10), ODY_OK);
}

/* What a rank holds for an HDF5 set: labels and a piece's buffers, not the images. */
static void test_hdf5_holds_no_images(void **state)
{
    fixture *f = *state;
    enum { N = 3000 };
    h5_group g = h5_uint8("train", N, 1, 28, 28);
    g.chunk = 64;
    char path[512];
    write_h5(f, "mnist-like.h5", &g, 1, -1, path, sizeof path);
    size_t before = f->ctx->bytes_allocated, image_bytes = (size_t)N * 784;
    ody_dataset *ds = NULL;
    assert_int_equal(ody_hdf5_open(f->ctx, path, "train", 10, plain(), &ds), ODY_OK);
    size_t held = f->ctx->bytes_allocated - before;
    print_message("HDF5 set of %d 28x28 uint8 images (%zu bytes): bytes_held %zu, allocated %zu\n",
                  N, image_bytes, ds->bytes_held, held);
    assert_true(held >= ds->bytes_held && held < ds->bytes_held + 4096); /* + the struct */
    assert_true(ds->bytes_held == N * sizeof(int32_t) + 256 * (784 + 16 + sizeof(int)));
    assert_true(ds->bytes_held < image_bytes / 10);
    ody_dataset_destroy(f->ctx, ds);
}

/* A file of 37 samples of 1x2x3 in train and test (the loader tests' shape). */
static const char *write_h5_small(fixture *f, char *path, size_t len)
{
    h5_group groups[2] = {h5_uint8("train", 37, 1, 2, 3), h5_uint8("test", 37, 1, 2, 3)};
    groups[0].chunk = 4;
    return write_h5(f, "small.h5", groups, 2, 10, path, len);
}

/* A loader over an HDF5 set: the same batches with and without prefetch. */
static void test_hdf5_loader(void **state)
{
    fixture *f = *state;
    char path[512];
    write_h5_small(f, path, sizeof path);
    ody_ctx fake = as_rank(f->ctx, 1, 3);
    ody_dataset *ds = NULL;
    assert_int_equal(ody_hdf5_open(&fake, path, "train", 10, plain(), &ds), ODY_OK);
    check_prefetch_matches_sync(&fake, ds);
}

/* True when the epoch is over; else checks the next batch against a direct read of its ids. */
static bool epoch_done_or_checked(ody_ctx *ctx, ody_loader *l, ody_dataset *ds)
{
    ody_batch b;
    bool done = false;
    assert_int_equal(ody_loader_next(ctx, l, &b, &done), ODY_OK);
    if (done)
        return true;
    float x[3 * 6];
    int32_t y[3];
    assert_int_equal(ody_dataset_read(ds, ctx, b.ids, b.n, x, y), ODY_OK);
    assert_memory_equal(b.x, x, (size_t)b.n * 6 * sizeof(float));
    assert_memory_equal(b.y, y, (size_t)b.n * sizeof(int32_t));
    return false;
}

static void test_hdf5_concurrent_loaders(void **state)
{
    fixture *f = *state;
    char path[512];
    write_h5_small(f, path, sizeof path);
    ody_data_options opt = h5_options(path, "split");
    opt.scale = false;
    opt.val_fraction = 0.5;
    ody_dataset *sets[4] = {0};
    assert_int_equal(ody_data_open(f->ctx, &opt, 1, ody_shape3(1, 2, 3), 10, &sets[0], &sets[1]),
                     ODY_OK);
    opt = h5_options(path, "test");
    opt.scale = false;
    assert_int_equal(ody_data_open(f->ctx, &opt, 1, ody_shape3(1, 2, 3), 10, &sets[2], &sets[3]),
                     ODY_OK);
    ody_sampler *s[4] = {0};
    ody_loader *l[4] = {0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ody_sampler_create(f->ctx, &s[i], sets[i]->n, 3, true, false, 7, 1),
                         ODY_OK);
        assert_int_equal(ody_loader_create(f->ctx, &l[i], sets[i], s[i], true), ODY_OK);
    }
    for (int64_t epoch = 0; epoch < 20; epoch++) {
        for (int i = 0; i < 4; i++)
            assert_int_equal(ody_loader_start_epoch(f->ctx, l[i], epoch, 0), ODY_OK);
        bool done[4] = {false, false, false, false};
        for (int left = 4; left > 0;)
            for (int i = 0; i < 4; i++)
                if (!done[i] && (done[i] = epoch_done_or_checked(f->ctx, l[i], sets[i])))
                    left--;
    }
    for (int i = 0; i < 4; i++) {
        ody_loader_destroy(f->ctx, l[i]);
        ody_sampler_destroy(f->ctx, s[i]);
        ody_dataset_destroy(f->ctx, sets[i]);
    }
}

static const struct CMUnitTest group[] = {
    FIXTURE(test_idx_reads_and_normalises),
    FIXTURE(test_idx_normalises_every_byte_value),
    FIXTURE(test_idx_truncated),
    FIXTURE(test_idx_claim_beyond_data),
    FIXTURE(test_idx_gz_grows),
    FIXTURE(test_idx_bad_magic),
    FIXTURE(test_idx_bad_dimensions_and_trailing_data),
    FIXTURE(test_idx_label_out_of_range),
    FIXTURE(test_idx_count_mismatch_and_missing),
    FIXTURE(test_read_checks_indices),
    FIXTURE(test_open_idx_tries_gz),
    FIXTURE(test_open_errors),
    FIXTURE(test_fashion_mnist),
    FIXTURE(test_split),
    FIXTURE(test_subset),
    FIXTURE(test_synthetic),
    FIXTURE(test_open_synthetic),
    FIXTURE(test_sampler_order),
    FIXTURE(test_sampler_shares),
    FIXTURE(test_sampler_drop_last),
    FIXTURE(test_loader_prefetch_matches_sync),
    FIXTURE(test_loader_start_epoch_later),
    FIXTURE(test_loader_error_propagates),
    cmocka_unit_test(test_augment_draws_are_keyed),
    cmocka_unit_test(test_augment_draws_are_uniform),
    cmocka_unit_test(test_augment_identity_and_flip),
    cmocka_unit_test(test_augment_padding_where_expected),
    cmocka_unit_test(test_augment_erase_draws),
    cmocka_unit_test(test_augment_erase_apply),
    FIXTURE(test_augment_fill_is_a_black_pixel),
    FIXTURE(test_loader_augments_by_sample),
    FIXTURE(test_loader_augment_errors),
    FIXTURE(test_hdf5_reads_samples),
    FIXTURE(test_hdf5_float32),
    FIXTURE(test_hdf5_errors),
    FIXTURE(test_hdf5_claim_beyond_data),
    FIXTURE(test_hdf5_data_open),
    FIXTURE(test_hdf5_holds_no_images),
    FIXTURE(test_hdf5_loader),
    FIXTURE(test_hdf5_concurrent_loaders),
};

ODY_TEST_MAIN(group)

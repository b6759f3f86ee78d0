/*
 * data: opening the data sets a config's data: section describes, and the
 * operations every data set kind shares.
 */
#include "data/data_internal.h"

#include "core/cpu_internal.h"
#ifdef ODY_X86_KERNELS /* the vector normalisations, run where the CPU has them (core/cpu.c) */
#include <immintrin.h>
#endif

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define MNIST_DIR "/usr/share/datasets/mnist"

/* Salts of the synthetic sets: same task (seed), different samples. */
enum { SALT_TRAIN = 1, SALT_VAL = 2 };

typedef enum { VALIDATE_TEST, VALIDATE_SPLIT, VALIDATE_NONE } validation_mode;

/* What every opener gets: the options and what the model expects. */
typedef struct {
    const ody_data_options *opt;
    const char *name; /* opt->name, or the default fashion_mnist when empty */
    uint64_t seed;
    ody_shape shape;
    int num_classes;
    ody_normalize norm;
    bool want_test; /* open the test set too (validation: test) */
} open_request;

ody_status ody_data_new(ody_ctx *ctx, size_t size, const ody_dataset_ops *ops, const char *source,
                        ody_dataset **out)
{
    void *p = NULL;
    ody_status st = ody_alloc(ctx, size, source, &p);
    *out = p;
    if (st != ODY_OK)
        return st;
    (*out)->ops = ops;
    snprintf((*out)->source, sizeof(*out)->source, "%s", source);
    return ODY_OK;
}

void ody_normalize_table(ody_normalize norm, float table[256])
{
    for (int v = 0; v < 256; v++)
        table[v] = ((float)v * norm.scale - norm.mean) / norm.std;
}

#ifdef ODY_X86_KERNELS
/*
 * (raw * scale - mean) / std, 8 (AVX2) or 16 (AVX-512, the last ones
 * masked) at a time; returns how many it did. Multiply, subtract and
 * divide, each correctly rounded as ody_normalize_table's (never
 * contracted into an FMA: the table's bits). Through the table with AVX2's
 * gather a batch of 64 Fashion-MNIST images took 19-20 us on an AMD EPYC
 * (Zen 4), whose gathers are slow; the expression 5.4.
 */
__attribute__((target("avx2"))) static size_t normalize_avx2(ody_normalize norm, const uint8_t *src, size_t n,
                                                             float *dst)
{
    const __m256 scale = _mm256_set1_ps(norm.scale), mean = _mm256_set1_ps(norm.mean),
                 std = _mm256_set1_ps(norm.std);
    size_t p = 0;
    for (; p + 8 <= n; p += 8) {
        __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + p))));
        _mm256_storeu_ps(dst + p, _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(v, scale), mean), std));
    }
    return p;
}

ODY_TARGET_AVX512 static size_t normalize_avx512(ody_normalize norm, const uint8_t *src, size_t n, float *dst)
{
    const __m512 scale = _mm512_set1_ps(norm.scale), mean = _mm512_set1_ps(norm.mean),
                 std = _mm512_set1_ps(norm.std);
    for (size_t p = 0; p < n; p += 16) {
        __mmask16 keep = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(keep, src + p)));
        _mm512_mask_storeu_ps(dst + p, keep, _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(v, scale), mean), std));
    }
    return n;
}
#endif

void ody_normalize_bytes(ody_normalize norm, const float table[256], const uint8_t *src, size_t n, float *dst)
{
    size_t p = 0;
#ifdef ODY_X86_KERNELS
    ody_cpu_isa isa = ody_cpu_isa_active();
    if (isa >= ODY_ISA_AVX512)
        p = normalize_avx512(norm, src, n, dst);
    else if (isa >= ODY_ISA_AVX2)
        p = normalize_avx2(norm, src, n, dst);
#else
    (void)norm;
#endif
    for (; p < n; p++)
        dst[p] = table[src[p]];
}

ody_status ody_normalize_check(ody_ctx *ctx, const char *source, ody_normalize norm)
{
    if (norm.std > 0 && norm.scale > 0)
        return ODY_OK;
    return ody_fail(ctx, ODY_ERR_CONFIG,
                    "%s: normalisation needs scale > 0 and std > 0 (got %g, %g)", source,
                    norm.scale, norm.std);
}

/* Every read goes through here, so no kind ever reads outside its samples. */
static ody_status check_indices(const ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n)
{
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= ds->n)
            return ody_fail(ctx, ODY_ERR_DATA,
                            "%s: sample index %lld is out of range: the data set "
                            "has %lld samples",
                            ds->source, (long long)indices[i], (long long)ds->n);
    return ODY_OK;
}

ody_status ody_dataset_read(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n, float *x,
                            int32_t *y)
{
    if (n < 0)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "%s: read of %d samples", ds->source, n);
    ody_status st = check_indices(ds, ctx, indices, n);
    return st == ODY_OK ? ds->ops->read(ds, ctx, indices, n, x, y) : st;
}

void ody_dataset_destroy(ody_ctx *ctx, ody_dataset *ds)
{
    if (ds)
        ds->ops->destroy(ds, ctx);
}

/* ------------------------------------------------------------ IDX files */

/* dir/name (or name alone when dir is empty), as given or with ".gz" appended. */
static ody_status find_file(ody_ctx *ctx, const char *dir, const char *name, char *out, size_t len)
{
    int w = *dir ? snprintf(out, len, "%s/%s", dir, name) : snprintf(out, len, "%s", name);
    if (w < 0 || (size_t)w + 3 >= len)
        return ody_fail(ctx, ODY_ERR_CONFIG, "data.path: %s/%s is too long", dir, name);
    if (access(out, F_OK) == 0)
        return ODY_OK;
    char error[128];
    snprintf(error, sizeof error, "%s", strerror(errno));
    strcat(out, ".gz");
    if (access(out, F_OK) == 0)
        return ODY_OK;
    out[w] = '\0';
    return ody_fail(ctx, ODY_ERR_DATA, "%s: cannot open: %s (tried %s.gz too)", out, error, out);
}

/* Open the images/labels pair `images`, `labels` inside dir. */
static ody_status open_idx_pair(ody_ctx *ctx, const open_request *req, const char *dir,
                                const char *images, const char *labels, ody_dataset **out)
{
    char images_path[1024], labels_path[1024];
    ody_status st = find_file(ctx, dir, images, images_path, sizeof images_path);
    if (st == ODY_OK)
        st = find_file(ctx, dir, labels, labels_path, sizeof labels_path);
    if (st == ODY_OK)
        st = ody_idx_open(ctx, images_path, labels_path, req->num_classes, req->norm, out);
    return st;
}

static const char *name_or(const char *name, const char *fallback)
{
    return *name ? name : fallback;
}

/* The training pair and (when wanted) the test pair inside dir; names default to MNIST's. */
static ody_status open_idx_sets(ody_ctx *ctx, const open_request *req, const char *dir,
                                ody_dataset **train, ody_dataset **test)
{
    const ody_data_options *opt = req->opt;
    ody_status st =
        open_idx_pair(ctx, req, dir, name_or(opt->train_images, "train-images-idx3-ubyte"),
                      name_or(opt->train_labels, "train-labels-idx1-ubyte"), train);
    if (st == ODY_OK && req->want_test)
        st = open_idx_pair(ctx, req, dir, name_or(opt->test_images, "t10k-images-idx3-ubyte"),
                           name_or(opt->test_labels, "t10k-labels-idx1-ubyte"), test);
    return st;
}

static ody_status open_fashion_mnist(ody_ctx *ctx, const open_request *req, ody_dataset **train,
                                     ody_dataset **test)
{
    if (*req->opt->path)
        return open_idx_sets(ctx, req, req->opt->path, train, test);
    ody_status st = open_idx_sets(ctx, req, FASHION_MNIST_DIR, train, test);
    if (st == ODY_ERR_DATA && access(FASHION_MNIST_DIR, F_OK) != 0) {
        char why[ODY_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", ody_ctx_error(ctx));
        ody_fail(ctx, st,
                 "%.900s; install the Debian package dataset-fashion-mnist or set data.path", why);
    }
    return st;
}

static ody_status open_mnist(ody_ctx *ctx, const open_request *req, ody_dataset **train,
                             ody_dataset **test)
{
    const char *dir = req->opt->path;
    if (!*dir) {
        struct stat sb;
        if (stat(MNIST_DIR, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return ody_fail(ctx, ODY_ERR_CONFIG,
                            "data.path: required for data.name mnist (%s does "
                            "not exist on this machine)",
                            MNIST_DIR);
        dir = MNIST_DIR;
    }
    return open_idx_sets(ctx, req, dir, train, test);
}

static ody_status open_idx(ody_ctx *ctx, const open_request *req, ody_dataset **train,
                           ody_dataset **test)
{
    const ody_data_options *opt = req->opt;
    if (!*opt->train_images || !*opt->train_labels)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "data.train_images and data.train_labels: required for "
                        "data.name idx");
    if (req->want_test && (!*opt->test_images || !*opt->test_labels))
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "data.test_images and data.test_labels: required for "
                        "data.name idx when data.validation is test");
    return open_idx_sets(ctx, req, opt->path, train, test);
}

/* ------------------------------------------------------- other kinds */

static ody_status open_synthetic(ody_ctx *ctx, const open_request *req, ody_dataset **train,
                                 ody_dataset **test)
{
    const ody_data_options *opt = req->opt;
    if (opt->synthetic_train <= 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "data.synthetic_train: must be > 0 for data.name synthetic");
    if (req->want_test && opt->synthetic_val <= 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "data.synthetic_val: must be > 0 for data.name synthetic "
                        "when data.validation is test");
    ody_status st = ody_synthetic_open(ctx, opt->synthetic_train, req->shape, req->num_classes,
                                       req->seed, SALT_TRAIN, train);
    if (st == ODY_OK && req->want_test)
        st = ody_synthetic_open(ctx, opt->synthetic_val, req->shape, req->num_classes, req->seed,
                                SALT_VAL, test);
    return st;
}

static ody_status open_hdf5(ody_ctx *ctx, const open_request *req, ody_dataset **train,
                            ody_dataset **test)
{
    const char *path = req->opt->path;
    if (!*path)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "data.path: required for data.name hdf5 (the HDF5 file)");
    ody_status st = ody_hdf5_open(ctx, path, "train", req->num_classes, req->norm, train);
    if (st == ODY_OK && req->want_test)
        st = ody_hdf5_open(ctx, path, "test", req->num_classes, req->norm, test);
    return st;
}

typedef ody_status (*opener)(ody_ctx *ctx, const open_request *req, ody_dataset **train,
                             ody_dataset **test);

/* The data sets: names (NULL-terminated) and their openers, in the same order. */
static const char *const data_names[] = {"fashion_mnist", "mnist", "idx", "hdf5", "synthetic", NULL};
static const opener openers[] = {open_fashion_mnist, open_mnist, open_idx, open_hdf5,
                                 open_synthetic};
_Static_assert(sizeof data_names / sizeof data_names[0] ==
                   sizeof openers / sizeof openers[0] + 1,
               "one opener per name");

const char *const *ody_data_names(void) { return data_names; }

/* ----------------------------------------------------------- the sets */

/* IDX images (N, H, W) are (1, H, W) samples; a flat model input of the same size is fine too. */
static ody_status check_shape(ody_ctx *ctx, const ody_dataset *ds, const ody_shape *want)
{
    bool flat = want->ndim == 1 && ody_shape_numel(want) == ody_shape_numel(&ds->sample_shape);
    if (ody_shape_equal(&ds->sample_shape, want) || flat)
        return ODY_OK;
    char have_text[64], want_text[64];
    return ody_fail(ctx, ODY_ERR_DATA,
                    "%s: images are %s but the model expects %s (model.input_shape)", ds->source,
                    ody_shape_format(&ds->sample_shape, have_text, sizeof have_text),
                    ody_shape_format(want, want_text, sizeof want_text));
}

/* Split full into train and val (round(fraction * N) samples), keyed by the seed. */
static ody_status split(ody_ctx *ctx, ody_dataset *full, double fraction, uint64_t seed,
                        ody_dataset **train, ody_dataset **val)
{
    if (!(fraction > 0.0 && fraction < 1.0))
        return ody_fail(ctx, ODY_ERR_CONFIG, "data.val_fraction: %g is not in (0, 1)", fraction);
    int64_t n_val = llround(fraction * (double)full->n);
    if (n_val < 1 || n_val >= full->n)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "data.val_fraction: %g of %lld samples leaves the "
                        "training or the validation set empty",
                        fraction, (long long)full->n);
    size_t bytes = (size_t)full->n * sizeof(int64_t);
    void *order = NULL;
    ody_status st = ody_alloc(ctx, bytes, "train/validation split", &order);
    if (st != ODY_OK)
        return st;
    ody_rng_permutation((ody_rng_key){.seed = seed, .stream = ODY_STREAM_SPLIT}, 0, full->n, order);
    st = ody_subset_split(ctx, full, order, n_val, val, train);
    ody_free(ctx, order, bytes);
    return st;
}

/* Keep the first `limit` samples (0 = all): every read op checks indices against n. */
static void keep_first(ody_dataset *ds, int64_t limit_n)
{
    if (ds && limit_n > 0 && limit_n < ds->n)
        ds->n = limit_n;
}

static ody_status parse_validation(ody_ctx *ctx, const char *text, validation_mode *mode)
{
    static const char *names[] = {
        [VALIDATE_TEST] = "test", [VALIDATE_SPLIT] = "split", [VALIDATE_NONE] = "none"};
    for (int m = 0; m < 3; m++)
        if (strcmp(text, names[m]) == 0 || (!*text && m == VALIDATE_TEST)) {
            *mode = (validation_mode)m;
            return ODY_OK;
        }
    return ody_fail(ctx, ODY_ERR_CONFIG, "data.validation: '%s' is not one of test, split, none",
                    text);
}

static ody_status open_by_name(ody_ctx *ctx, const open_request *req, ody_dataset **train,
                               ody_dataset **test)
{
    const char *name = req->name;
    char known[128] = "";
    for (size_t i = 0; data_names[i]; i++) {
        if (strcmp(name, data_names[i]) == 0)
            return openers[i](ctx, req, train, test);
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                 data_names[i]);
    }
    return ody_fail(ctx, ODY_ERR_CONFIG, "data.name: unknown data set '%s' (known: %s)", name,
                    known);
}

static ody_status check_model(ody_ctx *ctx, ody_shape shape, int num_classes)
{
    bool ok = shape.ndim >= 1 && shape.ndim <= ODY_MAX_DIMS;
    for (int i = 0; ok && i < shape.ndim; i++)
        ok = shape.dims[i] > 0;
    if (!ok)
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.input_shape: needs 1 to %d positive dimensions",
                        ODY_MAX_DIMS);
    if (num_classes < 1)
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.num_classes: %d (need at least 1)",
                        num_classes);
    return ODY_OK;
}

/* Pixel mean and standard deviation of the training sets we know by name
 * (after scaling to [0, 1]), used by data.standardize. */
static const struct {
    const char *name;
    float mean, std;
} known_stats[] = {
    {"fashion_mnist", 0.2860f, 0.3530f},
    {"mnist", 0.1307f, 0.3081f},
};

bool ody_data_known_stats(const char *name, float *mean, float *std)
{
    for (size_t i = 0; i < sizeof known_stats / sizeof *known_stats; i++)
        if (strcmp(name, known_stats[i].name) == 0) {
            *mean = known_stats[i].mean;
            *std = known_stats[i].std;
            return true;
        }
    return false;
}

/* data.mean and data.std when given; else, with data.standardize (and
 * data.scale), a known set's statistics or an HDF5 file's own. */
static ody_normalize normalization(const ody_data_options *opt, const char *name)
{
    ody_normalize norm = {.scale = opt->scale ? 1.0f / 255.0f : 1.0f, .mean = 0.0f, .std = 1.0f};
    if (opt->std > 0) {
        norm.mean = (float)opt->mean;
        norm.std = (float)opt->std;
        return norm;
    }
    if (!opt->standardize || !opt->scale)
        return norm;
    if (strcmp(name, "hdf5") == 0)
        norm.from_file = true;
    else
        ody_data_known_stats(name, &norm.mean, &norm.std);
    return norm;
}

/* Open, check shapes, then arrange validation; on failure nothing is left open. */
static ody_status open_sets(ody_ctx *ctx, const open_request *req, validation_mode mode,
                            ody_dataset **train, ody_dataset **val)
{
    ody_dataset *full = NULL, *test = NULL;
    ody_status st = open_by_name(ctx, req, &full, &test);
    if (st == ODY_OK)
        st = check_shape(ctx, full, &req->shape);
    if (st == ODY_OK && test)
        st = check_shape(ctx, test, &req->shape);
    if (st == ODY_OK && mode == VALIDATE_SPLIT)
        st = split(ctx, full, req->opt->val_fraction, req->seed, train, val);
    else if (st == ODY_OK) {
        *train = full;
        *val = test;
    }
    if (st != ODY_OK) {
        ody_dataset_destroy(ctx, full);
        ody_dataset_destroy(ctx, test);
    }
    return st;
}

ody_status ody_data_open(ody_ctx *ctx, const ody_data_options *opt, uint64_t seed, ody_shape shape,
                         int num_classes, ody_dataset **train, ody_dataset **val)
{
    *train = *val = NULL;
    validation_mode mode = VALIDATE_TEST;
    ody_status st = parse_validation(ctx, opt->validation, &mode);
    if (st == ODY_OK)
        st = check_model(ctx, shape, num_classes);
    if (st != ODY_OK)
        return st;
    const char *name = name_or(opt->name, "fashion_mnist"); /* data.h: empty is the default */
    open_request req = {.opt = opt,
                        .name = name,
                        .seed = seed,
                        .shape = shape,
                        .num_classes = num_classes,
                        .norm = normalization(opt, name),
                        .want_test = mode == VALIDATE_TEST};
    st = open_sets(ctx, &req, mode, train, val);
    if (st != ODY_OK)
        return st;
    keep_first(*train, opt->limit_train);
    keep_first(*val, opt->limit_val);
    return ODY_OK;
}

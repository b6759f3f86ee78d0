/*
 * Unit tests: io checkpoints (HDF5): round trips, atomic commit, corruption
 * (truncation, flipped data and metadata bytes, missing marks, foreign
 * files), write errors, h5py compatibility, and no HDF5 object left open.
 */
#include "ody_test.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "odyssey/io.h"
#include "odyssey/tensor.h"

/* ------------------------------------------------------------- fixture */

typedef struct {
    ody_ctx *ctx;
    char dir[256];       /* scratch directory, removed with its files in teardown */
    bool mounted;        /* dir/small is a tmpfs this test mounted */
    hsize_t h5_ids;      /* HDF5 identifiers open when the test began */
} fixture;

/* HDF5 files, groups, datasets, attributes and named datatypes open in this process. */
static hsize_t h5_open_ids(void)
{
    ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    return n < 0 ? (hsize_t)-1 : (hsize_t)n;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || ody_test_ctx_setup((void **)&f->ctx) != 0)
        return -1;
    if (ody_test_make_scratch(f->dir, sizeof f->dir, "ckpt") != 0)
        return -1;
    H5open();
    f->h5_ids = h5_open_ids();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char small[300];
    snprintf(small, sizeof small, "%s/small", f->dir);
    if (f->mounted)
        umount2(small, MNT_DETACH);
    ody_test_remove_tree(f->dir);
    /* Every test closes what it opened: no HDF5 identifier may be left. */
    hsize_t ids = h5_open_ids();
    bool leaked = ids != f->h5_ids;
    if (leaked)
        print_error("%llu HDF5 identifiers open before the test, %llu after\n",
                    (unsigned long long)f->h5_ids, (unsigned long long)ids);
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

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Names in f->dir, sorted and joined by spaces ("" when empty). */
static const char *listing(const fixture *f, char *buf, size_t len)
{
    struct dirent **names = NULL;
    int n = scandir(f->dir, &names, NULL, alphasort);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.' && used < len)
            used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? " " : "",
                                     names[i]->d_name);
        free(names[i]);
    }
    free(names);
    return buf;
}

/* The bytes of a file (malloc'd), *len its size. */
static unsigned char *slurp(const char *path, long *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = ftell(fp);
    rewind(fp);
    unsigned char *buf = malloc((size_t)*len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)*len, fp), (size_t)*len);
    fclose(fp);
    return buf;
}

static void flip_byte(const char *path, long offset)
{
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, offset, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_true(c != EOF);
    assert_int_equal(fseek(fp, offset, SEEK_SET), 0);
    fputc(c ^ 0xff, fp);
    assert_int_equal(fclose(fp), 0);
}

/* ----------------------------------------------------------- test data */

/* value i of tensor `seed`: distinct, exactly representable, never zero */
static float value_at(int seed, int64_t i) { return (float)seed + (float)(i % 4093) / 4096.0f + 0.5f; }

static float *make_values(int seed, int64_t n)
{
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = value_at(seed, i);
    return v;
}

typedef struct {
    const char *name;
    ody_shape shape;
} named_shape;

/* LeNet-5's parameters: 61,706 floats. */
static const named_shape lenet[] = {
    {"model/conv1.weight", {4, {6, 1, 5, 5}}}, {"model/conv1.bias", {1, {6}}},
    {"model/conv2.weight", {4, {16, 6, 5, 5}}}, {"model/conv2.bias", {1, {16}}},
    {"model/fc1.weight", {2, {120, 400}}},     {"model/fc1.bias", {1, {120}}},
    {"model/fc2.weight", {2, {84, 120}}},      {"model/fc2.bias", {1, {84}}},
    {"model/fc3.weight", {2, {10, 84}}},       {"model/fc3.bias", {1, {10}}},
};
#define LENET_COUNT ((int)(sizeof lenet / sizeof lenet[0]))

static void put_lenet(fixture *f, ody_ckpt *ck)
{
    for (int i = 0; i < LENET_COUNT; i++) {
        float *v = make_values(i, ody_shape_numel(&lenet[i].shape));
        assert_int_equal(ody_ckpt_put_tensor(f->ctx, ck, lenet[i].name, &lenet[i].shape, v), ODY_OK);
        free(v);
    }
}

/* A committed checkpoint at `path` holding LeNet's tensors and a few scalars. */
static void write_lenet(fixture *f, const char *path, int64_t epoch)
{
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_OK);
    put_lenet(f, ck);
    assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, "state/epoch", epoch), ODY_OK);
    assert_int_equal(ody_ckpt_put_string(f->ctx, ck, "config", "model:\n  name: lenet5\n"), ODY_OK);
    assert_int_equal(ody_ckpt_commit(f->ctx, ck), ODY_OK);
}

static void assert_tensor(fixture *f, ody_ckpt *ck, const char *name, const ody_shape *shape,
                          int seed)
{
    int64_t n = ody_shape_numel(shape);
    float *got = malloc((size_t)n * sizeof *got);
    assert_non_null(got);
    if (ody_ckpt_get_tensor(f->ctx, ck, name, shape, got) != ODY_OK)
        fail_msg("%s: %s", name, ody_ctx_error(f->ctx));
    for (int64_t i = 0; i < n; i++)
        if (got[i] != value_at(seed, i))
            fail_msg("%s[%lld] = %g, want %g", name, (long long)i, got[i], value_at(seed, i));
    free(got);
}

/* ---------------------------------------------------------- round trips */

static void test_tensors_round_trip(void **state)
{
    fixture *f = *state;
    char path[300];
    path_in(f, "t.h5", path, sizeof path);
    const named_shape big[] = {
        {"big/rows", {2, {1000, 700}}},    /* 2.8 MB */
        {"big/vector", {1, {300001}}},     /* 1.2 MB, not a multiple of the checksum's block */
        {"deep/a/b/c.d.e", {3, {3, 4, 5}}},
        {"big/long", {1, {3000001}}},      /* 12 MB: more than one O_DIRECT buffer */
    };
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_OK);
    put_lenet(f, ck);
    for (int i = 0; i < 4; i++) {
        float *v = make_values(100 + i, ody_shape_numel(&big[i].shape));
        assert_int_equal(ody_ckpt_put_tensor(f->ctx, ck, big[i].name, &big[i].shape, v), ODY_OK);
        free(v);
    }
    assert_int_equal(ody_ckpt_commit(f->ctx, ck), ODY_OK);

    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    int64_t total = 0;
    for (int i = 0; i < LENET_COUNT; i++) {
        assert_tensor(f, ck, lenet[i].name, &lenet[i].shape, i);
        total += ody_shape_numel(&lenet[i].shape);
    }
    assert_int_equal(total, 61706);
    for (int i = 0; i < 4; i++)
        assert_tensor(f, ck, big[i].name, &big[i].shape, 100 + i);
    assert_int_equal(ody_ckpt_verify(f->ctx, ck), ODY_OK);
    ody_ckpt_close(ck);

    /* A tensor is one contiguous block with the checksum of its bytes. */
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dset = H5Dopen2(file, "big/rows", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(dset);
    assert_int_equal(H5Pget_layout(dcpl), H5D_CONTIGUOUS);
    assert_int_equal(H5Pget_nfilters(dcpl), 0);
    assert_int_equal(H5Dget_offset(dset) % 4096, 0); /* large: on a block boundary, for O_DIRECT */
    uint64_t sum = 0;
    hid_t attr = H5Aopen(dset, "checksum", H5P_DEFAULT);
    assert_true(attr >= 0 && H5Aread(attr, H5T_NATIVE_UINT64, &sum) >= 0);
    float *v = make_values(100, 1000 * 700);
    assert_true(sum == ody_checksum64(v, 1000 * 700 * sizeof *v));
    free(v);
    H5Aclose(attr);
    H5Pclose(dcpl);
    H5Dclose(dset);
    assert_int_equal(H5Fget_obj_count(file, H5F_OBJ_ALL), 1);
    H5Fclose(file);
}

static void test_series_round_trip(void **state)
{
    fixture *f = *state;
    char path[300];
    path_in(f, "s.h5", path, sizeof path);
    enum { LONG = 200000 }; /* 1.6 MB: two chunks */
    double loss[5] = {2.3, 1.1, 0.7, 0.5, 0.25}, *many = malloc(LONG * sizeof *many);
    assert_non_null(many);
    for (int i = 0; i < LONG; i++)
        many[i] = i * 0.5;
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_OK);
    assert_int_equal(ody_ckpt_put_series(f->ctx, ck, "history/loss", loss, 5), ODY_OK);
    assert_int_equal(ody_ckpt_put_series(f->ctx, ck, "history/empty", NULL, 0), ODY_OK);
    assert_int_equal(ody_ckpt_put_series(f->ctx, ck, "history/long", many, LONG), ODY_OK);
    assert_int_equal(ody_ckpt_put_series(f->ctx, ck, "history/loss", loss, 5),
                     ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, "history/loss written twice");
    assert_int_equal(ody_ckpt_commit(f->ctx, ck), ODY_OK); /* a usage error spoils nothing */

    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    double *got = NULL;
    int64_t n = -1;
    assert_int_equal(ody_ckpt_get_series(f->ctx, ck, "history/loss", &got, &n), ODY_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(got, loss, sizeof loss);
    free(got);
    assert_int_equal(ody_ckpt_get_series(f->ctx, ck, "history/empty", &got, &n), ODY_OK);
    assert_int_equal(n, 0);
    assert_null(got);
    assert_int_equal(ody_ckpt_get_series(f->ctx, ck, "history/long", &got, &n), ODY_OK);
    assert_int_equal(n, LONG);
    assert_memory_equal(got, many, LONG * sizeof *many);
    free(got);
    assert_true(ody_ckpt_has(ck, "history/empty"));
    assert_false(ody_ckpt_has(ck, "history/loss/deeper"));
    assert_int_equal(ody_ckpt_verify(f->ctx, ck), ODY_OK);
    ody_ckpt_close(ck);
    free(many);
}

/* 20 KB of text with newlines and UTF-8; malloc'd. */
static char *long_text(void)
{
    size_t len = 0;
    char *text = malloc(21000);
    assert_non_null(text);
    while (len < 20000)
        len += (size_t)sprintf(text + len, "line %zu: héllo wörld ✓ 日本語\n", len);
    return text;
}

static void put_scalars(fixture *f, ody_ckpt *ck, const char *text)
{
    assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, "state/epoch", 3), ODY_OK);
    assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, "state/step", INT64_MIN), ODY_OK);
    assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, "state/epoch", 7), ODY_OK); /* replaces */
    assert_int_equal(ody_ckpt_put_f64(f->ctx, ck, "state/lr", 0.1), ODY_OK);
    assert_int_equal(ody_ckpt_put_f64(f->ctx, ck, "state/best", -INFINITY), ODY_OK);
    assert_int_equal(ody_ckpt_put_string(f->ctx, ck, "config", text), ODY_OK);
    assert_int_equal(ody_ckpt_put_string(f->ctx, ck, "state/empty", ""), ODY_OK);
    for (int i = 0; i < 20; i++) { /* more than 8 attributes: HDF5's dense storage */
        char name[32];
        snprintf(name, sizeof name, "many/value%02d", i);
        assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, name, i * 1000), ODY_OK);
    }
    assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, "state//x", 1), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, "invalid checkpoint name 'state//x'");
}

static void test_scalars_and_strings_round_trip(void **state)
{
    fixture *f = *state;
    char path[300], *text = long_text(), *s = NULL;
    path_in(f, "a.h5", path, sizeof path);
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_OK);
    put_scalars(f, ck, text);
    assert_int_equal(ody_ckpt_commit(f->ctx, ck), ODY_OK);

    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    int64_t i64 = 0;
    double f64 = 0;
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "state/epoch", &i64), ODY_OK);
    assert_int_equal(i64, 7);
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "state/step", &i64), ODY_OK);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "many/value19", &i64), ODY_OK);
    assert_int_equal(i64, 19000);
    assert_int_equal(ody_ckpt_get_f64(f->ctx, ck, "state/lr", &f64), ODY_OK);
    assert_true(f64 == 0.1);
    assert_int_equal(ody_ckpt_get_f64(f->ctx, ck, "state/best", &f64), ODY_OK);
    assert_true(isinf(f64) && f64 < 0);
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "config", &s), ODY_OK);
    assert_string_equal(s, text);
    free(s);
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "state/empty", &s), ODY_OK);
    assert_string_equal(s, "");
    free(s);
    assert_true(ody_ckpt_has(ck, "state/epoch"));
    assert_true(ody_ckpt_has(ck, "config"));
    assert_false(ody_ckpt_has(ck, "state/missing"));
    assert_false(ody_ckpt_has(ck, "nowhere/epoch"));
    assert_false(ody_ckpt_has(ck, ""));
    assert_int_equal(ody_ckpt_verify(f->ctx, ck), ODY_OK);
    ody_ckpt_close(ck);
    free(text);
}

static void test_read_errors_name_the_object(void **state)
{
    fixture *f = *state;
    char path[300], want[600];
    path_in(f, "e.h5", path, sizeof path);
    write_lenet(f, path, 2);
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    float buf[84 * 400];
    ody_shape wrong = ody_shape2(84, 400);
    assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, "model/fc1.weight", &wrong, buf),
                     ODY_ERR_CHECKPOINT);
    snprintf(want, sizeof want, "%s: model/fc1.weight has shape 120x400 but the model expects 84x400",
             path);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    ody_shape three = ody_shape3(120, 400, 1);
    assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, "model/fc1.weight", &three, buf),
                     ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, "has shape 120x400 but the model expects 120x400x1");
    assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, "model/fc9.weight", &wrong, buf),
                     ODY_ERR_CHECKPOINT);
    snprintf(want, sizeof want, "%s: no model/fc9.weight in this checkpoint", path);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, "model", &wrong, buf), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, "no model in this checkpoint");

    double d = 0;
    char *s = NULL;
    int64_t i = 0;
    assert_int_equal(ody_ckpt_get_f64(f->ctx, ck, "state/epoch", &d), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, ": state/epoch is an integer, not a float");
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "state/epoch", &s), ODY_ERR_CHECKPOINT);
    assert_null(s);
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "config", &i), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, ": config is a string, not an integer");
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "state/nothing", &i), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, ": no state/nothing in this checkpoint");
    double *series = NULL;
    int64_t n = 0;
    assert_int_equal(ody_ckpt_get_series(f->ctx, ck, "model/fc1.weight", &series, &n),
                     ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, "model/fc1.weight is not a series (2 dimensions)");
    ody_ckpt_close(ck);
}

static void test_format_attributes(void **state)
{
    fixture *f = *state;
    char path[300];
    path_in(f, "a.h5", path, sizeof path);
    write_lenet(f, path, 1);
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    char *s = NULL;
    int64_t v = 0;
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "format", &s), ODY_OK);
    assert_string_equal(s, ODY_CKPT_FORMAT);
    free(s);
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "format_version", &v), ODY_OK);
    assert_int_equal(v, ODY_CKPT_FORMAT_VERSION);
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "complete", &v), ODY_OK);
    assert_int_equal(v, 1);
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "program_version", &s), ODY_OK);
    assert_true(strlen(s) > 0);
    free(s);
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "created", &s), ODY_OK);
    int year = 0, mon = 0, day = 0, h = 0, m = 0, sec = 0;
    char z = 0;
    assert_int_equal(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &year, &mon, &day, &h, &m, &sec, &z), 7);
    assert_int_equal(z, 'Z');
    assert_int_equal(strlen(s), 20);
    assert_true(year >= 2024);
    free(s);
    ody_ckpt_close(ck);
}

/* ------------------------------------------------------------ atomicity */

static void test_commit_is_atomic(void **state)
{
    fixture *f = *state;
    char path[300], older[300], tmp[400], names[1024];
    path_in(f, "ckpt-e0002.h5", path, sizeof path);
    path_in(f, "ckpt-e0001.h5", older, sizeof older);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    write_lenet(f, older, 1);
    long older_len = 0, after_len = 0;
    unsigned char *older_bytes = slurp(older, &older_len);

    /* Before commit: only the temporary file. */
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_OK);
    put_lenet(f, ck);
    assert_false(exists(path));
    assert_true(exists(tmp));
    ody_ckpt_abort(ck);
    assert_string_equal(listing(f, names, sizeof names), "ckpt-e0001.h5");
    ody_ckpt_abort(NULL);
    ody_ckpt_close(NULL);

    /* Commit: the final name appears, the temporary one goes. */
    write_lenet(f, path, 2);
    assert_string_equal(listing(f, names, sizeof names), "ckpt-e0001.h5 ckpt-e0002.h5");

    /* Commit over an existing file replaces it. */
    write_lenet(f, path, 3);
    ody_ckpt *rd = NULL;
    int64_t epoch = 0;
    assert_int_equal(ody_ckpt_open(f->ctx, path, &rd), ODY_OK);
    assert_int_equal(ody_ckpt_get_i64(f->ctx, rd, "state/epoch", &epoch), ODY_OK);
    assert_int_equal(epoch, 3);
    ody_ckpt_close(rd);

    /* The older checkpoint was never touched. */
    unsigned char *after = slurp(older, &after_len);
    assert_int_equal(after_len, older_len);
    assert_memory_equal(after, older_bytes, (size_t)older_len);
    free(after);
    free(older_bytes);
    assert_string_equal(listing(f, names, sizeof names), "ckpt-e0001.h5 ckpt-e0002.h5");
}

/* ----------------------------------------------------------- corruption */

static void test_truncated_file(void **state)
{
    fixture *f = *state;
    char path[300];
    path_in(f, "trunc.h5", path, sizeof path);
    write_lenet(f, path, 1);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    ody_ckpt *ck = NULL;
    ody_status st = ody_ckpt_open(f->ctx, path, &ck);
    if (st == ODY_OK) {
        st = ody_ckpt_verify(f->ctx, ck);
        ody_ckpt_close(ck);
    }
    assert_int_equal(st, ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, path);
    assert_error_has(f->ctx, "truncated or corrupt");
}

/* File offset and size of the data of contiguous dataset `name`. */
static void data_location(const char *path, const char *name, haddr_t *addr, hsize_t *size)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    *addr = H5Dget_offset(dset);
    *size = H5Dget_storage_size(dset);
    assert_true(*addr != HADDR_UNDEF);
    H5Dclose(dset);
    H5Fclose(file);
}

/* Reading tensor `name` of ck, and verifying ck, both fail with a checksum mismatch. */
static void assert_corrupt(fixture *f, ody_ckpt *ck, const char *path, const char *name,
                           const ody_shape *shape, float *buf)
{
    char want[600];
    assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, name, shape, buf), ODY_ERR_CHECKPOINT);
    snprintf(want, sizeof want, "%s: %s: checksum mismatch (corrupt data)", path, name);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    ody_ctx_clear_error(f->ctx);
    assert_int_equal(ody_ckpt_verify(f->ctx, ck), ODY_ERR_CHECKPOINT);
    assert_string_equal(ody_ctx_error(f->ctx), want);
}

static void test_flipped_data_byte(void **state)
{
    fixture *f = *state;
    char path[300];
    path_in(f, "flip.h5", path, sizeof path);
    write_lenet(f, path, 1);
    haddr_t addr = 0;
    hsize_t size = 0;
    data_location(path, "model/fc1.weight", &addr, &size);
    assert_true(size >= 120 * 400 * 4);
    flip_byte(path, (long)(addr + size / 2));

    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    assert_tensor(f, ck, "model/fc2.weight", &lenet[6].shape, 6); /* the others still read */
    float *buf = malloc(120 * 400 * sizeof *buf);
    assert_corrupt(f, ck, path, "model/fc1.weight", &lenet[4].shape, buf);
    free(buf);
    ody_ckpt_close(ck);
}

/* Large tensors are written and read past the page cache (O_DIRECT), in
 * pieces: a flipped byte in any piece, or in the bytes after the last whole
 * block, is still found. */
static void test_flipped_byte_in_large_tensor(void **state)
{
    fixture *f = *state;
    char path[300];
    const ody_shape shape = {1, {3000001}}; /* 12 MB, ends mid-block */
    const long at[] = {0, 9 << 20, 3000001 * 4 - 2};
    float *v = make_values(5, 3000001), *got = malloc(3000001 * sizeof *got);
    assert_non_null(got);
    for (int i = 0; i < 3; i++) {
        path_in(f, "flip-large.h5", path, sizeof path);
        ody_ckpt *ck = NULL;
        assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_OK);
        assert_int_equal(ody_ckpt_put_tensor(f->ctx, ck, "model/large", &shape, v), ODY_OK);
        assert_int_equal(ody_ckpt_commit(f->ctx, ck), ODY_OK);
        haddr_t addr = 0;
        hsize_t size = 0;
        data_location(path, "model/large", &addr, &size);
        assert_int_equal(addr % 4096, 0);
        assert_true(size == 3000001 * 4);
        flip_byte(path, (long)addr + at[i]);
        assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
        assert_corrupt(f, ck, path, "model/large", &shape, got);
        ody_ctx_clear_error(f->ctx);
        ody_ckpt_close(ck);
        flip_byte(path, (long)addr + at[i]); /* back: it reads whole again */
        assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
        assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, "model/large", &shape, got), ODY_OK);
        assert_memory_equal(got, v, 3000001 * sizeof *v);
        ody_ckpt_close(ck);
        remove(path);
    }
    free(got);
    free(v);
}

/* Offset of the last v2 object header ("OHDR") in a file. */
static long last_object_header(const char *path)
{
    long len = 0, found = -1;
    unsigned char *bytes = slurp(path, &len);
    for (long i = 0; i + 4 <= len; i++)
        if (!memcmp(bytes + i, "OHDR", 4))
            found = i;
    free(bytes);
    assert_true(found > 0);
    return found;
}

/* Open and verify: the first failure's status (its message in the context). */
static ody_status open_and_verify(fixture *f, const char *path)
{
    ody_ckpt *ck = NULL;
    ody_status st = ody_ckpt_open(f->ctx, path, &ck);
    if (st == ODY_OK) {
        st = ody_ckpt_verify(f->ctx, ck);
        ody_ckpt_close(ck);
    }
    return st;
}

static void test_flipped_metadata_byte(void **state)
{
    fixture *f = *state;
    char path[300];
    path_in(f, "meta.h5", path, sizeof path);

    /* Superblock (version 3): byte 20 is inside the superblock extension address. */
    write_lenet(f, path, 1);
    flip_byte(path, 20);
    assert_int_equal(open_and_verify(f, path), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, path);
    assert_error_has(f->ctx, "cannot open checkpoint: checksum mismatch");

    /* An object header: its checksum no longer matches. */
    write_lenet(f, path, 1);
    flip_byte(path, last_object_header(path) + 8);
    assert_int_equal(open_and_verify(f, path), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, path);
    assert_error_has(f->ctx, "checksum mismatch");
    /*
     * HDF5 1.10.8 itself keeps some memory after failing to load a corrupt
     * object header (raw H5Oopen does it too) and, with error printing on,
     * says "HDF5: infinite loop closing library" at exit. Keep that out of
     * the test's output.
     */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* A file written by raw HDF5 with the given root attributes (NULL / < 0: left out). */
static void write_foreign(const char *path, const char *format, int64_t version, int64_t complete)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    hid_t space = H5Screate(H5S_SCALAR), str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    assert_true(file >= 0);
    if (format) {
        hid_t a = H5Acreate2(file, "format", str, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, str, &format);
        H5Aclose(a);
    }
    const char *names[] = {"format_version", "complete"};
    int64_t values[] = {version, complete};
    for (int i = 0; i < 2; i++) {
        if (values[i] < 0)
            continue;
        hid_t a = H5Acreate2(file, names[i], H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &values[i]);
        H5Aclose(a);
    }
    H5Tclose(str);
    H5Sclose(space);
    H5Fclose(file);
    H5Pclose(fapl);
}

static void assert_open_fails(fixture *f, const char *path, const char *why)
{
    char want[600];
    ody_ckpt *ck = (ody_ckpt *)&want; /* must come back NULL */
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_ERR_CHECKPOINT);
    assert_null(ck);
    snprintf(want, sizeof want, "%s: %s", path, why);
    assert_string_equal(ody_ctx_error(f->ctx), want);
}

/* Format 1 (tensors chunked with Fletcher32, no checksum attribute) still
 * reads, and HDF5 still catches its damage. */
static void test_format_1_still_reads(void **state)
{
    fixture *f = *state;
    char path[300];
    path_in(f, "v1.h5", path, sizeof path);
    write_foreign(path, ODY_CKPT_FORMAT, 1, 1);
    const ody_shape shape = {2, {300, 200}};
    float *v = make_values(7, 300 * 200);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t group = H5Gcreate2(file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {300, 200}, chunk[2] = {100, 200};
    hid_t space = H5Screate_simple(2, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_fletcher32(dcpl);
    hid_t dset = H5Dcreate2(group, "w", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    haddr_t addr = 0;
    hsize_t offset[2], size = 0;
    unsigned mask = 0;
    H5Dflush(dset);
    assert_true(H5Dget_chunk_info(dset, space, 1, offset, &mask, &addr, &size) >= 0);
    H5Dclose(dset);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Gclose(group);
    H5Fclose(file);
    free(v);

    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    assert_tensor(f, ck, "model/w", &shape, 7);
    ody_ckpt_close(ck);
    flip_byte(path, (long)(addr + size / 2));
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    float *got = malloc(300 * 200 * sizeof *got);
    assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, "model/w", &shape, got), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, "model/w: checksum mismatch (corrupt data)");
    free(got);
    ody_ckpt_close(ck);
}

/* A float32 dataset `name` of group, contiguous, with a uint64 attribute
 * "checksum" = sum unless with_sum is false (format 2 as it was written). */
static void put_raw_tensor(hid_t group, const char *name, const float *v, hsize_t n,
                           bool with_sum, uint64_t sum)
{
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t dset = H5Dcreate2(group, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                            H5P_DEFAULT);
    assert_true(dset >= 0);
    assert_true(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    if (with_sum) {
        hid_t scalar = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(dset, "checksum", H5T_STD_U64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_UINT64, &sum) >= 0);
        H5Aclose(a);
        H5Sclose(scalar);
    }
    H5Dclose(dset);
    H5Sclose(space);
}

/* A variable-length UTF-8 string attribute of loc, as format 2 wrote it. */
static void put_raw_string(hid_t loc, const char *name, const char *text)
{
    hid_t space = H5Screate(H5S_SCALAR), str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    hid_t a = H5Acreate2(loc, name, str, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, str, &text) >= 0);
    H5Aclose(a);
    H5Tclose(str);
    H5Sclose(space);
}

/*
 * Format 2 (tensors contiguous with the legacy checksum, series chunked with
 * Fletcher32 only, attributes without checksums), as version 2 of the
 * program wrote it: it still reads and verifies, its tensors checked with
 * the legacy checksum (the O_DIRECT path included, for the 1.2 MB one), and
 * damage to a tensor is still found.
 */
static void test_format_2_still_reads(void **state)
{
    fixture *f = *state;
    char path[300], *s = NULL;
    path_in(f, "v2.h5", path, sizeof path);
    write_foreign(path, ODY_CKPT_FORMAT, 2, 1);
    enum { SMALL = 300 * 200, BIG = 300001 }; /* BIG: 1.2 MB, read through O_DIRECT */
    float *small = make_values(7, SMALL), *big = make_values(8, BIG);
    double loss[3] = {2.5, 1.25, 0.5};
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t model = H5Gcreate2(file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put_raw_tensor(model, "w", small, SMALL, true,
                   ody_checksum64_legacy_v2(small, SMALL * sizeof *small));
    put_raw_tensor(model, "big", big, BIG, true, ody_checksum64_legacy_v2(big, BIG * sizeof *big));
    /* XXH3 where format 2 has the legacy checksum: must not pass. */
    put_raw_tensor(model, "xxh3", small, SMALL, true, ody_checksum64(small, SMALL * sizeof *small));
    put_raw_string(file, "config", "model:\n  name: lenet5\n");
    hid_t history = H5Gcreate2(file, "history", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 3, unlimited = H5S_UNLIMITED, chunk = 3;
    hid_t space = H5Screate_simple(1, &n, &unlimited), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_fletcher32(dcpl);
    hid_t dset = H5Dcreate2(history, "loss", H5T_IEEE_F64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, loss) >= 0);
    H5Dclose(dset);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Gclose(history);
    H5Gclose(model);
    H5Fclose(file);

    ody_ckpt *ck = NULL;
    const ody_shape small_shape = {1, {SMALL}}, big_shape = {1, {BIG}};
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    assert_tensor(f, ck, "model/w", &small_shape, 7);
    assert_tensor(f, ck, "model/big", &big_shape, 8);
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "config", &s), ODY_OK);
    assert_string_equal(s, "model:\n  name: lenet5\n");
    free(s);
    double *got = NULL;
    int64_t len = 0;
    assert_int_equal(ody_ckpt_get_series(f->ctx, ck, "history/loss", &got, &len), ODY_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(got, loss, sizeof loss);
    free(got);
    float *buf = malloc(BIG * sizeof *buf);
    assert_non_null(buf);
    assert_corrupt(f, ck, path, "model/xxh3", &small_shape, buf);
    ody_ctx_clear_error(f->ctx);
    ody_ckpt_close(ck);

    haddr_t addr = 0;
    hsize_t size = 0;
    data_location(path, "model/big", &addr, &size);
    flip_byte(path, (long)(addr + size - 5));
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, "model/big", &big_shape, buf),
                     ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, "model/big: checksum mismatch (corrupt data)");
    ody_ckpt_close(ck);
    free(buf);
    free(big);
    free(small);
}

/* Offset of the first occurrence of text in the file at path. */
static long find_text(const char *path, const char *text)
{
    long len = 0, found = -1;
    unsigned char *bytes = slurp(path, &len);
    size_t n = strlen(text);
    for (long i = 0; found < 0 && i + (long)n <= len; i++)
        if (!memcmp(bytes + i, text, n))
            found = i;
    free(bytes);
    assert_true(found >= 0);
    return found;
}

/* Format 3: a flipped byte in a string's text (HDF5's global heap, which
 * HDF5 does not checksum) is a checkpoint error naming the attribute. */
static void test_flipped_string_byte(void **state)
{
    fixture *f = *state;
    char path[300], want[600], *s = NULL;
    path_in(f, "str.h5", path, sizeof path);
    write_lenet(f, path, 1);
    flip_byte(path, find_text(path, "name: lenet5") + 7);
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "config", &s), ODY_ERR_CHECKPOINT);
    assert_null(s);
    snprintf(want, sizeof want, "%s: config: checksum mismatch (corrupt data)", path);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    ody_ctx_clear_error(f->ctx);
    assert_int_equal(ody_ckpt_verify(f->ctx, ck), ODY_ERR_CHECKPOINT);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    ody_ckpt_close(ck);
}

/* Rewrite attribute `leaf` of object `obj` of the file behind our back:
 * an int64, or a string when text is not NULL. */
static void rewrite_attr(const char *path, const char *obj, const char *leaf, int64_t v,
                         const char *text)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t loc = H5Oopen(file, obj, H5P_DEFAULT);
    hid_t a = H5Aopen(loc, leaf, H5P_DEFAULT), type = H5Aget_type(a);
    assert_true(a >= 0 && type >= 0);
    assert_true((text ? H5Awrite(a, type, &text) : H5Awrite(a, H5T_NATIVE_INT64, &v)) >= 0);
    H5Tclose(type);
    H5Aclose(a);
    H5Oclose(loc);
    H5Fclose(file);
}

static void delete_attr(const char *path, const char *obj, const char *leaf)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Adelete_by_name(file, obj, leaf, H5P_DEFAULT) >= 0);
    H5Fclose(file);
}

/* Format 3: every attribute and every series has a checksum too; a value
 * changed or a checksum missing is an error naming the attribute or series. */
static void test_attribute_and_series_checksums(void **state)
{
    fixture *f = *state;
    char path[300], want[600], *s = NULL;
    int64_t v = 0;
    double loss[3] = {2.5, 1.25, 0.5}, *got = NULL;
    path_in(f, "sums.h5", path, sizeof path);
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_OK);
    put_lenet(f, ck);
    assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, "state/epoch", 3), ODY_OK);
    assert_int_equal(ody_ckpt_put_string(f->ctx, ck, "config", "a: 1\n"), ODY_OK);
    assert_int_equal(ody_ckpt_put_series(f->ctx, ck, "history/loss", loss, 3), ODY_OK);
    assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, "state/epoch.checksum", 1), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, "invalid checkpoint name 'state/epoch.checksum'");
    assert_int_equal(ody_ckpt_commit(f->ctx, ck), ODY_OK);
    assert_int_equal(open_and_verify(f, path), ODY_OK);

    rewrite_attr(path, "/state", "epoch", 4, NULL);
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "state/epoch", &v), ODY_ERR_CHECKPOINT);
    snprintf(want, sizeof want, "%s: state/epoch: checksum mismatch (corrupt data)", path);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    ody_ckpt_close(ck);
    assert_int_equal(open_and_verify(f, path), ODY_ERR_CHECKPOINT);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    rewrite_attr(path, "/state", "epoch", 3, NULL);
    assert_int_equal(open_and_verify(f, path), ODY_OK);

    rewrite_attr(path, "/", "config", 0, "a: 2\n");
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    assert_int_equal(ody_ckpt_get_string(f->ctx, ck, "config", &s), ODY_ERR_CHECKPOINT);
    assert_null(s);
    assert_error_has(f->ctx, ": config: checksum mismatch (corrupt data)");
    ody_ckpt_close(ck);
    rewrite_attr(path, "/", "config", 0, "a: 1\n");

    delete_attr(path, "/state", "epoch.checksum");
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    assert_int_equal(ody_ckpt_get_i64(f->ctx, ck, "state/epoch", &v), ODY_ERR_CHECKPOINT);
    snprintf(want, sizeof want, "%s: state/epoch: checksum missing (corrupt file)", path);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    ody_ckpt_close(ck);
    assert_int_equal(open_and_verify(f, path), ODY_ERR_CHECKPOINT);
    assert_string_equal(ody_ctx_error(f->ctx), want);

    /* A series' values changed (Fletcher32 recomputed by HDF5): its checksum. */
    double other[3] = {2.5, 1.25, 0.75};
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t dset = H5Dopen2(file, "history/loss", H5P_DEFAULT);
    assert_true(H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, other) >= 0);
    H5Dclose(dset);
    H5Fclose(file);
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    int64_t n = 0;
    assert_int_equal(ody_ckpt_get_series(f->ctx, ck, "history/loss", &got, &n), ODY_ERR_CHECKPOINT);
    assert_null(got);
    snprintf(want, sizeof want, "%s: history/loss: checksum mismatch (corrupt data)", path);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    ody_ckpt_close(ck);

    /* A dataset without its checksum. */
    delete_attr(path, "/model/fc1.bias", "checksum");
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    float bias[120];
    assert_int_equal(ody_ckpt_get_tensor(f->ctx, ck, "model/fc1.bias", &lenet[5].shape, bias),
                     ODY_ERR_CHECKPOINT);
    snprintf(want, sizeof want, "%s: model/fc1.bias: checksum missing (corrupt file)", path);
    assert_string_equal(ody_ctx_error(f->ctx), want);
    ody_ckpt_close(ck);
}

static void test_not_a_checkpoint(void **state)
{
    fixture *f = *state;
    char path[300];
    path_in(f, "x.h5", path, sizeof path);
    assert_open_fails(f, path, "cannot open checkpoint: No such file or directory");
    assert_open_fails(f, f->dir, "cannot open checkpoint: Is a directory");

    FILE *fp = fopen(path, "w");
    fputs("model:\n  name: lenet5\n", fp);
    fclose(fp);
    assert_open_fails(f, path, "not an HDF5 file");

    write_foreign(path, NULL, -1, -1);
    assert_open_fails(f, path, "not an odyssey-dist checkpoint (no format attribute)");
    write_foreign(path, "someone else's", 1, 1);
    assert_open_fails(f, path, "not an odyssey-dist checkpoint (format 'someone else's')");
    write_foreign(path, ODY_CKPT_FORMAT, 1, -1);
    assert_open_fails(f, path, "incomplete checkpoint (the writer did not finish)");
    write_foreign(path, ODY_CKPT_FORMAT, 1, 0);
    assert_open_fails(f, path, "incomplete checkpoint (the writer did not finish)");
    write_foreign(path, ODY_CKPT_FORMAT, ODY_CKPT_FORMAT_VERSION + 1, 1);
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_ERR_CHECKPOINT);
    char newer[80];
    snprintf(newer, sizeof newer, "checkpoint format version %d is not supported",
             ODY_CKPT_FORMAT_VERSION + 1);
    assert_error_has(f->ctx, newer);
    assert_error_has(f->ctx, "from a newer odyssey-dist");
    write_foreign(path, ODY_CKPT_FORMAT, 1, 1);
    assert_int_equal(ody_ckpt_open(f->ctx, path, &ck), ODY_OK);
    ody_ckpt_close(ck);
}

/* A writer killed before commit leaves a temporary file that does not open as a checkpoint. */
static void test_crashed_writer(void **state)
{
    fixture *f = *state;
    char path[300], tmp[400];
    path_in(f, "crash.h5", path, sizeof path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the writer: no cmocka asserts here, and _exit skips HDF5's atexit flush */
        ody_ckpt *ck = NULL;
        float *v = make_values(0, 120 * 400);
        ody_status st = ody_ckpt_create(f->ctx, path, &ck);
        for (int i = 0; i < LENET_COUNT && st == ODY_OK; i++)
            st = ody_ckpt_put_tensor(f->ctx, ck, lenet[i].name, &lenet[i].shape, v);
        _exit(st == ODY_OK ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_false(exists(path));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
    assert_true(exists(tmp));
    assert_open_fails(f, tmp, "incomplete checkpoint (the writer did not finish)");
}

/* --------------------------------------------------------- write errors */

static void test_create_in_missing_directory(void **state)
{
    fixture *f = *state;
    char path[300], want[600];
    path_in(f, "no/such/dir/ckpt.h5", path, sizeof path);
    ody_ckpt *ck = (ody_ckpt *)&want;
    assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_ERR_CHECKPOINT);
    assert_null(ck);
    snprintf(want, sizeof want, "%s: cannot write checkpoint: No such file or directory", path);
    assert_string_equal(ody_ctx_error(f->ctx), want);
}

/* Create `path` and put LeNet and a 4 MB tensor; returns the first failure's status. */
static ody_status put_big(fixture *f, const char *path, ody_ckpt **ck)
{
    ody_status st = ody_ckpt_create(f->ctx, path, ck);
    if (st != ODY_OK)
        return st;
    ody_shape shape = ody_shape2(1024, 1024);
    float *v = make_values(7, 1024 * 1024);
    for (int i = 0; i < LENET_COUNT && st == ODY_OK; i++)
        st = ody_ckpt_put_tensor(f->ctx, *ck, lenet[i].name, &lenet[i].shape, v);
    if (st == ODY_OK)
        st = ody_ckpt_put_tensor(f->ctx, *ck, "model/huge", &shape, v);
    free(v);
    return st;
}

/* After a failed put, commit refuses; the first error is restored into the context. */
static void assert_commit_refuses(fixture *f, ody_ckpt *ck)
{
    char first[ODY_ERRMSG_MAX];
    snprintf(first, sizeof first, "%s", ody_ctx_error(f->ctx));
    assert_int_equal(ody_ckpt_commit(f->ctx, ck), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, ": cannot write checkpoint: an earlier write failed");
    ody_fail(f->ctx, ODY_ERR_CHECKPOINT, "%s", first);
}

/*
 * A file-size limit (RLIMIT_FSIZE): writes past 256 KiB fail with EFBIG.
 * The limit is lifted before commit: the discarded file's last writes go to
 * memory, and under the limit they would fail there too.
 */
static void test_file_size_limit(void **state)
{
    fixture *f = *state;
    char path[300], names[1024];
    path_in(f, "limited.h5", path, sizeof path);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    struct rlimit small = {256 * 1024, old.rlim_max};
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    ody_ckpt *ck = NULL;
    ody_status st = put_big(f, path, &ck);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(st, ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, path);
    assert_error_has(f->ctx, ": cannot write model/huge: File too large");
    assert_commit_refuses(f, ck);
    assert_string_equal(listing(f, names, sizeof names), "");
}

static void test_no_space_left(void **state)
{
    fixture *f = *state;
    char small[300], path[400];
    path_in(f, "small", small, sizeof small);
    assert_int_equal(mkdir(small, 0755), 0);
    if (mount("tmpfs", small, "tmpfs", 0, "size=256k") != 0) {
        print_message("skipped: cannot mount a small tmpfs here (%s); ENOSPC is not tested\n",
                      strerror(errno));
        skip();
    }
    f->mounted = true;
    snprintf(path, sizeof path, "%s/ckpt.h5", small);
    ody_ckpt *ck = NULL;
    assert_int_equal(put_big(f, path, &ck), ODY_ERR_CHECKPOINT);
    assert_error_has(f->ctx, path);
    assert_error_has(f->ctx, ": cannot write model/huge: No space left on device");
    assert_commit_refuses(f, ck); /* the disk still full */
    assert_false(exists(path));
    DIR *d = opendir(small);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        entries += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 0);
}

/* ----------------------------------------------------------------- h5py */

static void test_h5py_reads_it(void **state)
{
    fixture *f = *state;
    char path[300], cmd[2048];
    if (system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0) {
        print_message("skipped: /usr/bin/python3 with h5py not found (apt-get install python3-h5py)\n");
        skip();
    }
    path_in(f, "py.h5", path, sizeof path);
    ody_ckpt *ck = NULL;
    assert_int_equal(ody_ckpt_create(f->ctx, path, &ck), ODY_OK);
    put_lenet(f, ck);
    assert_int_equal(ody_ckpt_put_i64(f->ctx, ck, "state/epoch", 4), ODY_OK);
    assert_int_equal(ody_ckpt_put_f64(f->ctx, ck, "state/lr", 0.01), ODY_OK);
    assert_int_equal(ody_ckpt_put_string(f->ctx, ck, "config", "model:\n  name: lenet5 ✓\n"), ODY_OK);
    assert_int_equal(ody_ckpt_put_series(f->ctx, ck, "history/loss", NULL, 0), ODY_OK);
    assert_int_equal(ody_ckpt_commit(f->ctx, ck), ODY_OK);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c '\n"
             "import sys, h5py, numpy as np\n"
             "f = h5py.File(sys.argv[1], \"r\")\n"
             "w = f[\"model/fc1.weight\"]\n"
             "assert w.shape == (120, 400) and w.dtype == np.float32, (w.shape, w.dtype)\n"
             "i = np.arange(120 * 400).reshape(120, 400)\n"
             "assert (w[()] == (4 + (i %% 4093) / 4096 + 0.5).astype(np.float32)).all()\n"
             "assert f[\"model/conv1.weight\"].shape == (6, 1, 5, 5)\n"
             "assert f[\"history/loss\"].shape == (0,)\n"
             "assert f[\"state\"].attrs[\"epoch\"] == 4 and f[\"state\"].attrs[\"lr\"] == 0.01\n"
             "c = f.attrs[\"config\"]\n"
             "assert isinstance(c, str) and c == \"model:\\n  name: lenet5 \\u2713\\n\", repr(c)\n"
             "assert f.attrs[\"format\"] == \"%s\" and f.attrs[\"complete\"] == 1\n"
             "' %s",
             ODY_CKPT_FORMAT, path);
    assert_int_equal(system(cmd), 0);
}

static const struct CMUnitTest group[] = {
    FIXTURE(test_tensors_round_trip),
    FIXTURE(test_series_round_trip),
    FIXTURE(test_scalars_and_strings_round_trip),
    FIXTURE(test_read_errors_name_the_object),
    FIXTURE(test_format_attributes),
    FIXTURE(test_commit_is_atomic),
    FIXTURE(test_truncated_file),
    FIXTURE(test_flipped_byte_in_large_tensor),
    FIXTURE(test_flipped_data_byte),
    FIXTURE(test_flipped_metadata_byte),
    FIXTURE(test_not_a_checkpoint),
    FIXTURE(test_format_1_still_reads),
    FIXTURE(test_format_2_still_reads),
    FIXTURE(test_flipped_string_byte),
    FIXTURE(test_attribute_and_series_checksums),
    FIXTURE(test_crashed_writer),
    FIXTURE(test_create_in_missing_directory),
    FIXTURE(test_file_size_limit),
    FIXTURE(test_no_space_left),
    FIXTURE(test_h5py_reads_it),
};

ODY_TEST_MAIN(group)

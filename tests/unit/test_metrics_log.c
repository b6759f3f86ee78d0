/* Unit tests: io metrics log (named logs, CSV beside the JSONL, truncation after a resume). */
#include "ody_test.h"

#include "odyssey/io.h"

typedef struct {
    ody_ctx *ctx;
    char dir[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || ody_test_ctx_setup((void **)&f->ctx) != 0 ||
        ody_test_make_scratch(f->dir, sizeof f->dir, "metrics") != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ody_test_remove_tree(f->dir);
    ody_test_ctx_teardown((void **)&f->ctx);
    free(f);
    return 0;
}

/* The whole of dir/name into buf. */
static const char *slurp(const fixture *f, const char *name, char *buf, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    size_t n = fread(buf, 1, len - 1, in);
    fclose(in);
    buf[n] = '\0';
    return buf;
}

/* Records at steps 5, 10, ..., last into steps.jsonl and steps.csv. */
static void write_steps(fixture *f, ody_metrics_log **log, bool append, int first, int last)
{
    assert_int_equal(ody_metrics_log_open_named(f->ctx, f->dir, "steps", append, log), ODY_OK);
    assert_int_equal(ody_metrics_log_enable_csv(f->ctx, *log, append), ODY_OK);
    for (int step = first; step <= last; step += 5) {
        ody_metric rec[] = {{"epoch", 1, true, false},
                            {"step", step, true, false},
                            {"loss", 1.0 / step, false, false}};
        assert_int_equal(ody_metrics_log_write(f->ctx, *log, rec, 3), ODY_OK);
    }
}

static void test_named_log_writes_jsonl_and_csv(void **state)
{
    fixture *f = *state;
    ody_metrics_log *log = NULL;
    write_steps(f, &log, false, 5, 10);
    ody_metrics_log_close(log);
    char buf[1024];
    assert_string_equal(slurp(f, "steps.jsonl", buf, sizeof buf),
                        "{\"epoch\": 1, \"step\": 5, \"loss\": 0.2}\n"
                        "{\"epoch\": 1, \"step\": 10, \"loss\": 0.1}\n");
    assert_string_equal(slurp(f, "steps.csv", buf, sizeof buf),
                        "epoch,step,loss\n1,5,0.2\n1,10,0.1\n");
}

/* A resume at step 15 drops the rows after it, in both files, and the
 * resumed run's rows follow; a line cut short by a crash goes too. */
static void test_truncate_after_a_step(void **state)
{
    fixture *f = *state;
    ody_metrics_log *log = NULL;
    write_steps(f, &log, false, 5, 25);
    ody_metrics_log_close(log);
    char path[512];
    snprintf(path, sizeof path, "%s/steps.jsonl", f->dir);
    FILE *out = fopen(path, "a");
    fputs("{\"epoch\": 1, \"st", out); /* killed mid-write */
    fclose(out);
    write_steps(f, &log, true, 5, 0); /* reopen for appending, as a resumed run does */
    assert_int_equal(ody_metrics_log_truncate_after(f->ctx, log, "step", 15), ODY_OK);
    ody_metric rec[] = {{"epoch", 1, true, false}, {"step", 20, true, false}, {"loss", 0.5, false, false}};
    assert_int_equal(ody_metrics_log_write(f->ctx, log, rec, 3), ODY_OK);
    ody_metrics_log_close(log);
    char buf[1024];
    assert_string_equal(slurp(f, "steps.jsonl", buf, sizeof buf),
                        "{\"epoch\": 1, \"step\": 5, \"loss\": 0.2}\n"
                        "{\"epoch\": 1, \"step\": 10, \"loss\": 0.1}\n"
                        "{\"epoch\": 1, \"step\": 15, \"loss\": 0.0666666667}\n"
                        "{\"epoch\": 1, \"step\": 20, \"loss\": 0.5}\n");
    assert_string_equal(slurp(f, "steps.csv", buf, sizeof buf),
                        "epoch,step,loss\n1,5,0.2\n1,10,0.1\n1,15,0.0666666667\n1,20,0.5\n");
}

/* A resume before the first record keeps only the CSV header. */
static void test_truncate_to_nothing(void **state)
{
    fixture *f = *state;
    ody_metrics_log *log = NULL;
    write_steps(f, &log, false, 5, 10);
    assert_int_equal(ody_metrics_log_truncate_after(f->ctx, log, "step", 3), ODY_OK);
    ody_metrics_log_close(log);
    char buf[1024];
    assert_string_equal(slurp(f, "steps.jsonl", buf, sizeof buf), "");
    assert_string_equal(slurp(f, "steps.csv", buf, sizeof buf), "epoch,step,loss\n");
}

static const struct CMUnitTest group[] = {
    cmocka_unit_test_setup_teardown(test_named_log_writes_jsonl_and_csv, setup, teardown),
    cmocka_unit_test_setup_teardown(test_truncate_after_a_step, setup, teardown),
    cmocka_unit_test_setup_teardown(test_truncate_to_nothing, setup, teardown),
};

ODY_TEST_MAIN(group)

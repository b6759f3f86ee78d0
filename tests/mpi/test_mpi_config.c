/* MPI tests: ody_config_resolve reads on rank 0 only and every rank ends up agreeing. */
#include "ody_test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "odyssey/io.h"

/* Whether every rank holds the same 64-bit value. */
static bool same_everywhere(ody_ctx *ctx, uint64_t value)
{
    uint64_t lo = 0, hi = 0;
    MPI_Allreduce(&value, &lo, 1, MPI_UINT64_T, MPI_MIN, ctx->comm);
    MPI_Allreduce(&value, &hi, 1, MPI_UINT64_T, MPI_MAX, ctx->comm);
    return lo == hi;
}

static void test_resolve_agrees_on_every_rank(void **state)
{
    ody_ctx *ctx = *state;
    char dir[64] = "/tmp/ody-mpi-config-XXXXXX", path[96] = "";
    if (ctx->rank == 0) {
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/run.yaml", dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("training:\n  epochs: 7\noptimizer:\n  momentum: 0.9\n", f);
        fclose(f);
    }
    /* Only rank 0 looks at the argument. */
    char *args[] = {"training.batch_size=96"};
    ody_config cfg;
    ody_status st = ody_config_resolve(ctx, ctx->rank == 0 ? path : "not read here", 1, args, &cfg);
    if (ctx->rank == 0) {
        unlink(path);
        rmdir(dir);
    }
    assert_int_equal(st, ODY_OK);
    assert_int_equal(cfg.training.epochs, 7);
    assert_int_equal(cfg.training.batch_size, 96);
    assert_string_equal(cfg.experiment.name, "lenet5-run");
    assert_non_null(strstr(cfg.source, "/run.yaml"));
    assert_true(same_everywhere(ctx, ody_checksum64(&cfg, sizeof cfg)));
}

static void test_resolve_error_reaches_every_rank(void **state)
{
    ody_ctx *ctx = *state;
    char *args[] = {"training.epochs=0"};
    ody_config cfg;
    const char *arg = ctx->rank == 0 ? "/nonexistent/odyssey.yaml" : "not read here";
    assert_int_equal(ody_config_resolve(ctx, arg, 1, args, &cfg), ODY_ERR_CONFIG);
    assert_string_equal(ody_ctx_error(ctx), "no such config file: /nonexistent/odyssey.yaml");
    const char *msg = ody_ctx_error(ctx);
    assert_true(same_everywhere(ctx, ody_checksum64(msg, strlen(msg))));
}

static const struct CMUnitTest group[] = {
    cmocka_unit_test_setup_teardown(test_resolve_agrees_on_every_rank, ody_test_ctx_setup,
                                    ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_resolve_error_reaches_every_rank, ody_test_ctx_setup,
                                    ody_test_ctx_teardown),
};

ODY_TEST_MAIN(group)

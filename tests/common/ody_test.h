/*
 * Shared scaffolding for cmocka tests: MPI start-up around the test run
 * and a fixture that gives each test an ody_ctx on MPI_COMM_WORLD.
 */
#ifndef ODY_TEST_H
#define ODY_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <mpi.h>

#include "odyssey/core.h"

/* setup/teardown: *state becomes an ody_ctx. */
static inline int ody_test_ctx_setup(void **state)
{
    ody_ctx *ctx = NULL;
    if (ody_ctx_create(&ctx, MPI_COMM_WORLD) != ODY_OK)
        return -1;
    ctx->log_level = ODY_LOG_WARN;
    *state = ctx;
    return 0;
}

static inline int ody_test_ctx_teardown(void **state)
{
    ody_ctx_destroy(*state);
    return 0;
}

/* main() for a cmocka group that needs MPI. Every rank runs the group. */
#define ODY_TEST_MAIN(group)                                                   \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        MPI_Init(&argc, &argv);                                                \
        int failed = cmocka_run_group_tests(group, NULL, NULL);                \
        int any = 0;                                                           \
        MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);     \
        MPI_Finalize();                                                        \
        return any ? 1 : 0;                                                    \
    }

#endif /* ODY_TEST_H */

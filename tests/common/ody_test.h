/*
 * Shared scaffolding for cmocka tests: MPI start-up around the test run
 * and a fixture that gives each test an ody_ctx on MPI_COMM_WORLD.
 */
#ifndef ODY_TEST_H
#define ODY_TEST_H

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A new scratch directory $TMPDIR/ody_test_<tag>_XXXXXX (or under /tmp) in dir. */
static inline int ody_test_make_scratch(char *dir, size_t len, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, len, "%s/ody_test_%s_XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    return mkdtemp(dir) ? 0 : -1;
}

/* Remove dir and everything below it (links are removed, not followed). */
static inline void ody_test_remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[1024];
        struct stat sb;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            ody_test_remove_tree(path);
        else
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* The context's last error message contains text. */
static inline void ody_assert_error_has(const ody_ctx *ctx, const char *text)
{
    if (!strstr(ody_ctx_error(ctx), text))
        fail_msg("error \"%s\" does not contain \"%s\"", ody_ctx_error(ctx), text);
}

/* main() for a cmocka group that needs MPI. Every rank runs the group. */
#define ODY_TEST_MAIN(group)                                                   \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        MPI_Init(&argc, &argv);                                                \
        if (getenv("ODY_TEST_FILTER")) /* only the tests whose names match */  \
            cmocka_set_test_filter(getenv("ODY_TEST_FILTER"));                 \
        int failed = cmocka_run_group_tests(group, NULL, NULL);                \
        int any = 0;                                                           \
        MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);     \
        MPI_Finalize();                                                        \
        return any ? 1 : 0;                                                    \
    }

#endif /* ODY_TEST_H */

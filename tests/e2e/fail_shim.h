/*
 * What the fail_* shims (fail_alloc.c, fail_io.c) share: the contract with
 * their scripts. On the rank whose OMPI_COMM_WORLD_RANK is ODY_FAIL_RANK,
 * call number ODY_FAIL_AT of the kind the shim counts fails (0: none, only
 * counted), and at exit the shim writes
 *   NAME: rank R: K WHAT, failed number N
 * to stderr (N is 0 when none failed), which is how a script learns K.
 */
#ifndef ODY_FAIL_SHIM_H
#define ODY_FAIL_SHIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static bool shim_active; /* this is the rank (and the shim is ready) */
static int shim_rank;
static long shim_fail_at;
static atomic_long shim_calls, shim_failed;

/* Whether this process is the rank to fail; if so, reads which call. */
static bool shim_this_rank(void)
{
    const char *want = getenv("ODY_FAIL_RANK"), *me = getenv("OMPI_COMM_WORLD_RANK");
    const char *at = getenv("ODY_FAIL_AT");
    if (!want || !me || atoi(want) != atoi(me))
        return false;
    shim_rank = atoi(me);
    shim_fail_at = at ? atol(at) : 0;
    return true;
}

/* Count one call: its number when it is the one to fail, else 0. */
static long shim_count(void)
{
    long k = atomic_fetch_add(&shim_calls, 1) + 1;
    if (k != shim_fail_at)
        return 0;
    atomic_store(&shim_failed, k);
    return k;
}

/* The line at exit ("NAME: rank R: K WHAT, failed number N"). */
static void shim_report(const char *name, const char *what)
{
    if (shim_active)
        fprintf(stderr, "%s: rank %d: %ld %s, failed number %ld\n", name, shim_rank,
                atomic_load(&shim_calls), what, atomic_load(&shim_failed));
}

#endif /* ODY_FAIL_SHIM_H */

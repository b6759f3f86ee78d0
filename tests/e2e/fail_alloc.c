/*
 * fail_alloc: an LD_PRELOAD shim for e2e_fail_alloc.
 *
 * On the rank whose OMPI_COMM_WORLD_RANK is ODY_FAIL_RANK, the
 * ODY_FAIL_AT-th allocation made by the program's own code returns NULL
 * with errno ENOMEM, as a real out-of-memory would. "The program's own
 * code" is a caller inside the executable (odyssey-dist links libodyssey
 * statically); allocations inside MPI, HDF5, OpenBLAS or libc are left
 * alone, since what is under test is how odyssey-dist handles a failure,
 * not how Open MPI does. ODY_FAIL_AT=0 only counts.
 *
 * On that rank the shim writes to stderr where the failed allocation was
 * called from (an offset into the executable, for addr2line), and at exit
 *   fail_alloc: rank R: K allocations, failed number N
 * (fail_shim.h), so a test can find how many there are.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fail_shim.h"

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t count, size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

#define MAX_SEGMENTS 8

static uintptr_t seg_lo[MAX_SEGMENTS], seg_hi[MAX_SEGMENTS];
static uintptr_t base; /* the executable's load address */
static int nseg;

/* The first object dl_iterate_phdr reports is the executable: keep its
 * executable segments. */
static int first_object(struct dl_phdr_info *info, size_t size, void *unused)
{
    (void)size;
    (void)unused;
    base = info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum && nseg < MAX_SEGMENTS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            seg_lo[nseg] = info->dlpi_addr + ph->p_vaddr;
            seg_hi[nseg++] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        }
    }
    return 1;
}

__attribute__((constructor)) static void setup(void)
{
    if (!shim_this_rank())
        return;
    dl_iterate_phdr(first_object, NULL);
    shim_active = nseg > 0; /* the executable's code is known */
}

__attribute__((destructor)) static void report(void) { shim_report("fail_alloc", "allocations"); }

/* Whether this allocation, called from `caller`, is the one to fail. */
static bool fail_now(const void *caller)
{
    if (!shim_active)
        return false;
    uintptr_t a = (uintptr_t)caller;
    bool ours = false;
    for (int i = 0; i < nseg && !ours; i++)
        ours = a >= seg_lo[i] && a < seg_hi[i];
    if (!ours)
        return false;
    long k = shim_count();
    if (!k)
        return false;
    /* where, for addr2line -e odyssey-dist (no allocation on the way) */
    char line[128];
    int len = snprintf(line, sizeof line, "fail_alloc: rank %d: allocation %ld fails, called from 0x%lx\n",
                       shim_rank, k, (unsigned long)(a - base));
    if (len > 0 && write(2, line, (size_t)len) < 0)
        len = 0;
    errno = ENOMEM;
    return true;
}

#define CALLER __builtin_extract_return_addr(__builtin_return_address(0))

void *malloc(size_t n) { return fail_now(CALLER) ? NULL : __libc_malloc(n); }

void *calloc(size_t count, size_t n) { return fail_now(CALLER) ? NULL : __libc_calloc(count, n); }

void *realloc(void *p, size_t n) { return fail_now(CALLER) ? NULL : __libc_realloc(p, n); }

void *aligned_alloc(size_t align, size_t n)
{
    return fail_now(CALLER) ? NULL : __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (fail_now(CALLER))
        return ENOMEM;
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

/*
 * core: the CPU's instruction sets for odyssey's own kernels. The build
 * targets the baseline of its architecture (no -mavx2); the kernels for
 * AVX2 and AVX-512 are compiled per file (CMakeLists.txt) and chosen here
 * at run time. ODY_X86_KERNELS says those files were built.
 */
#include "core/cpu_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const isa_names[ODY_ISA_COUNT] = {"portable", "avx2", "avx512"};

const char *ody_cpu_isa_name(ody_cpu_isa isa)
{
    return isa >= 0 && isa < ODY_ISA_COUNT ? isa_names[isa] : "unknown";
}

static ody_cpu_isa detected = ODY_ISA_PORTABLE;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

/* __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0). */
static void detect(void)
{
#if defined(ODY_X86_KERNELS) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        detected = ODY_ISA_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl"))
            detected = ODY_ISA_AVX512;
    }
#endif
}

ody_cpu_isa ody_cpu_isa_best(void)
{
    pthread_once(&detect_once, detect);
    return detected;
}

/* ODY_CPU_ISA as a level; ODY_ISA_COUNT when unset or empty, -1 when unknown. */
static int requested(const char *want)
{
    if (!want || !*want)
        return ODY_ISA_COUNT;
    for (int isa = 0; isa < ODY_ISA_COUNT; isa++)
        if (strcmp(want, isa_names[isa]) == 0)
            return isa;
    return -1;
}

ody_status ody_cpu_isa_select(ody_ctx *ctx, ody_cpu_isa *out)
{
    ody_cpu_isa best = ody_cpu_isa_best();
    const char *want = getenv("ODY_CPU_ISA");
    int isa = requested(want);
    *out = best;
    if (isa < 0)
        return ody_fail(ctx, ODY_ERR_USAGE, "ODY_CPU_ISA=%s is not known (portable, avx2 or avx512)", want);
    if (isa == ODY_ISA_COUNT)
        return ODY_OK;
    if (isa > (int)best)
        return ody_fail(ctx, ODY_ERR_USAGE,
                        "ODY_CPU_ISA=%s: this CPU (or this build) has no %s kernels; the best here is %s",
                        want, want, isa_names[best]);
    *out = (ody_cpu_isa)isa;
    return ODY_OK;
}

static ody_cpu_isa active;
static pthread_once_t active_once = PTHREAD_ONCE_INIT;

static void choose_active(void)
{
    int isa = requested(getenv("ODY_CPU_ISA"));
    ody_cpu_isa best = ody_cpu_isa_best();
    active = isa >= 0 && isa < (int)best ? (ody_cpu_isa)isa : best;
}

ody_cpu_isa ody_cpu_isa_active(void)
{
    pthread_once(&active_once, choose_active);
    return active;
}

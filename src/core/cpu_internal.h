/*
 * The instruction sets odyssey's own kernels can use, detected once per
 * process, and ODY_CPU_ISA, which lowers the choice (tests run every path
 * on one machine with it). Internal to src/.
 */
#ifndef ODYSSEY_CORE_CPU_INTERNAL_H
#define ODYSSEY_CORE_CPU_INTERNAL_H

#include "odyssey/core.h"

/* In order: each level needs what the ones before it need. */
typedef enum {
    ODY_ISA_PORTABLE = 0, /* plain C, any CPU */
    ODY_ISA_AVX2,         /* x86-64 with AVX2 and FMA */
    ODY_ISA_AVX512,       /* and AVX-512 F, BW, VL */
    ODY_ISA_COUNT
} ody_cpu_isa;

/* "portable", "avx2", "avx512": a static string. */
const char *ody_cpu_isa_name(ody_cpu_isa isa);
/* The best level this CPU (and its OS) supports and this build has kernels for. Detected once. */
ody_cpu_isa ody_cpu_isa_best(void);
/*
 * The level to use: ODY_CPU_ISA when set (portable, avx2 or avx512), else
 * the best. ODY_ERR_USAGE with a message naming the variable when it is
 * unknown or asks for more than ody_cpu_isa_best(); *out is the best then.
 */
ody_status ody_cpu_isa_select(ody_ctx *ctx, ody_cpu_isa *out);
/*
 * The level the kernels run at in this process, fixed at the first call:
 * as ody_cpu_isa_select, the best where ODY_CPU_ISA is not usable (the
 * library reports that where models are made, ody_model_create*).
 */
ody_cpu_isa ody_cpu_isa_active(void);

/*
 * For a second copy of a loop compiled for the AVX-512 level in a file the
 * build compiles for its baseline (the optimizer's step, the gradient
 * norm): run it only where ody_cpu_isa_active() says AVX-512.
 */
#ifdef ODY_X86_KERNELS
#define ODY_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,prefer-vector-width=512")))
#endif

#endif /* ODYSSEY_CORE_CPU_INTERNAL_H */

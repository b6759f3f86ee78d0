/*
 * The oneDNN backend's shared pieces: one CPU engine and one stream for
 * the process (layers run one at a time on the rank's thread), error text,
 * reorders, and what the CPU offers (see nn_dnnl.h).
 */
#include "nn/nn_dnnl.h"
#include "core/cpu_internal.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

static dnnl_engine_t engine;
static dnnl_stream_t stream;

const char *nn_dnnl_status_text(dnnl_status_t s)
{
    switch (s) {
    case dnnl_success:
        return "success";
    case dnnl_out_of_memory:
        return "out of memory";
    case dnnl_invalid_arguments:
        return "invalid arguments";
    case dnnl_unimplemented:
        return "no implementation for this shape on this CPU";
    case dnnl_runtime_error:
        return "runtime error";
    default:
        return "error";
    }
}

ody_status nn_dnnl_check(ody_ctx *ctx, dnnl_status_t s, const char *what)
{
    if (s == dnnl_success)
        return ODY_OK;
    return ody_fail(ctx, s == dnnl_out_of_memory ? ODY_ERR_NOMEM : ODY_ERR_CONFIG, "oneDNN %s: %s (status %d)",
                    what, nn_dnnl_status_text(s), (int)s);
}

ody_status nn_dnnl_engine(ody_ctx *ctx, dnnl_engine_t *out_engine, dnnl_stream_t *out_stream)
{
    if (!engine) {
        if (dnnl_engine_get_count(dnnl_cpu) == 0)
            return ody_fail(ctx, ODY_ERR_CONFIG, "oneDNN has no CPU engine on this machine "
                                                 "(use model.backend: openblas)");
        dnnl_engine_t e;
        ody_status st = nn_dnnl_check(ctx, dnnl_engine_create(&e, dnnl_cpu, 0), "CPU engine");
        if (st != ODY_OK)
            return st;
        st = nn_dnnl_check(ctx, dnnl_stream_create(&stream, e, dnnl_stream_default_flags), "stream");
        if (st != ODY_OK) {
            dnnl_engine_destroy(e);
            return st;
        }
        engine = e;
    }
    *out_engine = engine;
    if (out_stream)
        *out_stream = stream;
    return ODY_OK;
}

ody_status nn_dnnl_memory(ody_ctx *ctx, const dnnl_memory_desc_t *desc, dnnl_memory_t *out)
{
    dnnl_engine_t e = NULL;
    ody_status st = nn_dnnl_engine(ctx, &e, NULL);
    if (st != ODY_OK)
        return st;
    return nn_dnnl_check(ctx, dnnl_memory_create(out, desc, e, DNNL_MEMORY_NONE), "memory");
}

ody_status nn_dnnl_primitive(ody_ctx *ctx, const_dnnl_primitive_desc_t pd, const char *what,
                             dnnl_primitive_t *out)
{
    return nn_dnnl_check(ctx, dnnl_primitive_create(out, pd), what);
}

const char *nn_dnnl_impl(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl)
        return "?";
    return impl;
}

ody_status nn_dnnl_reorder_make(ody_ctx *ctx, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                nn_dnnl_reorder *r)
{
    *r = (nn_dnnl_reorder){.same = dnnl_memory_desc_equal(from, to) != 0};
    if (r->same)
        return ODY_OK;
    dnnl_engine_t e = NULL;
    ody_status st = nn_dnnl_engine(ctx, &e, NULL);
    if (st != ODY_OK)
        return st;
    dnnl_primitive_desc_t pd;
    st = nn_dnnl_check(ctx, dnnl_reorder_primitive_desc_create(&pd, from, e, to, e, NULL), "reorder");
    if (st != ODY_OK)
        return st;
    st = nn_dnnl_primitive(ctx, pd, "reorder", &r->prim);
    dnnl_primitive_desc_destroy(pd);
    if (st == ODY_OK)
        st = nn_dnnl_memory(ctx, from, &r->from);
    if (st == ODY_OK)
        st = nn_dnnl_memory(ctx, to, &r->to);
    if (st != ODY_OK)
        nn_dnnl_reorder_free(r);
    return st;
}

void nn_dnnl_execute(dnnl_status_t *status, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args)
{
    if (*status == dnnl_success)
        *status = dnnl_primitive_execute(prim, stream, nargs, args);
}

void nn_dnnl_reorder_run(dnnl_status_t *status, const nn_dnnl_reorder *r, const void *from, void *to)
{
    if (r->same)
        return;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, nn_dnnl_at(r->from, from)}, {DNNL_ARG_TO, nn_dnnl_at(r->to, to)}};
    nn_dnnl_execute(status, r->prim, 2, args);
}

void nn_dnnl_reorder_free(nn_dnnl_reorder *r)
{
    if (r->prim)
        dnnl_primitive_destroy(r->prim);
    if (r->from)
        dnnl_memory_destroy(r->from);
    if (r->to)
        dnnl_memory_destroy(r->to);
    *r = (nn_dnnl_reorder){0};
}

bool nn_dnnl_has_bf16(void)
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

const char *nn_dnnl_isa_name(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41:
        return "sse41";
    case dnnl_cpu_isa_avx:
        return "avx";
    case dnnl_cpu_isa_avx2:
        return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
        return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core:
        return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
        return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
        return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
        return "avx512_core_amx";
    default:
        return "generic";
    }
}

/* libgomp's, linked for oneDNN's OpenMP threads (a C declaration avoids needing omp.h's flags). */
extern void omp_set_num_threads(int n);


void ody_kernel_threads(int threads)
{
    int n = threads > 0 ? threads : 1;
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

ody_status ody_bf16_supported(ody_ctx *ctx)
{
    if (nn_dnnl_has_bf16())
        return ODY_OK;
    return ody_fail(ctx, ODY_ERR_CONFIG, "bf16 compute needs a CPU with native bf16 arithmetic (AVX512_BF16 or "
                                         "AMX); oneDNN sees %s here, and emulating it would be slower than "
                                         "fp32: set training.use_mixed_precision: false",
                    nn_dnnl_isa_name());
}


void ody_kernels_report(FILE *out)
{
    const dnnl_version_t *v = dnnl_version();
    fprintf(out, "kernels: oneDNN %d.%d.%d on %s (model.backend: onednn, the default); OpenBLAS with its %s kernels\n",
            v->major, v->minor, v->patch, nn_dnnl_isa_name(), openblas_get_corename());
    fprintf(out, "own kernels: %s (the best this CPU has; ODY_CPU_ISA lowers it)\n",
            ody_cpu_isa_name(ody_cpu_isa_best()));
    fprintf(out, "bf16 compute: %s\n",
            nn_dnnl_has_bf16() ? "yes (native bf16 arithmetic)" : "no (this CPU has no native bf16)");
}

/* comm: agreement, broadcast, fingerprints, exact reductions, the step vote. */
#include "odyssey/comm.h"

#include <stdio.h>
#include <string.h>

ody_status ody_comm_agree(ody_ctx *ctx, ody_status local)
{
    int mine = (local == ODY_OK) ? ctx->size : ctx->rank;
    int first = ctx->size;
    ody_wait_begin(ctx, ODY_WAIT_AGREE);
    ody_status st = ody_mpi_check(ctx, MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, ctx->comm),
                              "agreement allreduce");
    ody_wait_end(ctx);
    if (st != ODY_OK || first == ctx->size)
        return st;
    /* The first failing rank tells everyone its status and message. */
    struct {
        int status;
        char msg[ODY_ERRMSG_MAX];
    } report = {0};
    if (ctx->rank == first) {
        report.status = (int)local;
        snprintf(report.msg, sizeof report.msg, "%s", ctx->err);
    }
    ody_wait_begin(ctx, ODY_WAIT_AGREE);
    st = ody_mpi_check(ctx, MPI_Bcast(&report, (int)sizeof report, MPI_BYTE, first, ctx->comm),
                   "agreement broadcast");
    ody_wait_end(ctx);
    if (st != ODY_OK)
        return st;
    report.msg[sizeof report.msg - 1] = '\0';
    /* A message agreed on before (an inner agreement) already names the
     * rank it came from, which every rank now holds: keep that name. */
    int named = 0, end = 0;
    if (ctx->size > 1 && !(sscanf(report.msg, "rank %d: %n", &named, &end) == 1 && end > 0))
        return ody_fail(ctx, (ody_status)report.status, "rank %d: %s", first, report.msg);
    return ody_fail(ctx, (ody_status)report.status, "%s", report.msg);
}

ody_status ody_comm_bcast_floats(ody_ctx *ctx, float *buf, size_t n)
{
    /* MPI counts are int: send in pieces for buffers beyond 2^31 floats. */
    const size_t piece = (size_t)1 << 30;
    ody_status st = ODY_OK;
    ody_wait_begin(ctx, ODY_WAIT_BROADCAST);
    for (size_t off = 0; off < n && st == ODY_OK; off += piece) {
        int count = (int)((n - off < piece) ? n - off : piece);
        st = ody_mpi_check(ctx, MPI_Bcast(buf + off, count, MPI_FLOAT, 0, ctx->comm),
                           "parameter broadcast");
    }
    ody_wait_end(ctx);
    return st;
}

ody_status ody_comm_check_consistent(ody_ctx *ctx, const float *buf, size_t n, const char *when)
{
    unsigned long long mine = ody_checksum64(buf, n * sizeof *buf);
    unsigned long long root = mine;
    ody_wait_begin(ctx, ODY_WAIT_BROADCAST);
    ody_status st = ody_mpi_check(ctx, MPI_Bcast(&root, 1, MPI_UNSIGNED_LONG_LONG, 0, ctx->comm),
                              "fingerprint broadcast");
    int differs = (mine != root) ? ctx->rank : ctx->size;
    int first = ctx->size;
    if (st == ODY_OK)
        st = ody_mpi_check(ctx, MPI_Allreduce(&differs, &first, 1, MPI_INT, MPI_MIN, ctx->comm),
                           "fingerprint allreduce");
    ody_wait_end(ctx);
    if (st != ODY_OK)
        return st;
    if (first == ctx->size)
        return ODY_OK;
    return ody_fail(ctx, ODY_ERR_INTERNAL,
                    "parameters differ across ranks %s: rank %d's fingerprint differs from rank 0's",
                    when, first);
}

ody_status ody_comm_sum_i64(ody_ctx *ctx, int64_t *vals, int n)
{
    ody_wait_begin(ctx, ODY_WAIT_METRICS);
    ody_status st = ody_mpi_check(
        ctx, MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_INT64_T, MPI_SUM, ctx->comm), "metric allreduce");
    ody_wait_end(ctx);
    return st;
}

ody_status ody_comm_mean_max(ody_ctx *ctx, const double *vals, double *mean, double *max, int n)
{
    ody_wait_begin(ctx, ODY_WAIT_METRICS);
    ody_status st = ody_mpi_check(ctx, MPI_Allreduce(vals, mean, n, MPI_DOUBLE, MPI_SUM, ctx->comm),
                              "timing allreduce");
    if (st == ODY_OK)
        st = ody_mpi_check(ctx, MPI_Allreduce(vals, max, n, MPI_DOUBLE, MPI_MAX, ctx->comm),
                           "timing allreduce");
    ody_wait_end(ctx);
    for (int i = 0; i < n && st == ODY_OK; i++)
        mean[i] /= ctx->size;
    return st;
}

ody_status ody_vote_start(ody_ctx *ctx, ody_vote *vote)
{
    vote->started = true;
    return ody_mpi_check(ctx, MPI_Iallreduce(vote->local, vote->total, ODY_VOTE_COUNT, MPI_INT64_T,
                                         MPI_SUM, ctx->comm, &vote->req),
                     "step vote");
}

ody_status ody_vote_finish(ody_ctx *ctx, ody_vote *vote)
{
    if (!vote->started)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "step vote finished before it started");
    ody_wait_begin(ctx, ODY_WAIT_VOTE);
    ody_status st = ody_mpi_check(ctx, MPI_Wait(&vote->req, MPI_STATUS_IGNORE), "step vote");
    ody_wait_end(ctx);
    vote->started = false;
    return st;
}

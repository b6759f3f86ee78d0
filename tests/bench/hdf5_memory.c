/*
 * hdf5_memory FILE.h5 [BATCHES [BATCH]]: what one rank holds for an HDF5
 * data set. Opens /train of FILE, reads BATCHES (default 200) random
 * batches of BATCH (default 64) samples, and prints one line of key=value:
 * the samples and image bytes in the file, bytes_held, the bytes the
 * library allocated (ody_alloc) and the growth of this process's resident
 * set (VmRSS) over the open and the reads, and the mean read time.
 * The e2e test hdf5_convert.sh checks the numbers; a multi-rank RSS
 * measurement starts it under mpirun (every rank prints its own line).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odyssey/core.h"
#include "odyssey/data.h"

/* This process's resident set in bytes (0 if /proc is not there). */
static size_t resident_bytes(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %zu kB", &kib) == 1)
            break;
    if (fp)
        fclose(fp);
    return kib * 1024;
}

static int run(ody_ctx *ctx, const char *path, int batches, int batch)
{
    size_t rss0 = resident_bytes(), alloc0 = ctx->bytes_allocated;
    ody_dataset *ds = NULL;
    ody_normalize norm = {.scale = 1.0f / 255.0f, .mean = 0, .std = 1};
    if (ody_hdf5_open(ctx, path, "train", 10, norm, &ds) != ODY_OK) {
        fprintf(stderr, "hdf5_memory: %s\n", ody_ctx_error(ctx));
        return 3;
    }
    size_t rss_open = resident_bytes(), numel = (size_t)ody_shape_numel(&ds->sample_shape);
    float *x = malloc((size_t)batch * numel * sizeof *x);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    int64_t *ids = malloc((size_t)batch * sizeof *ids);
    uint64_t state = 12345 + (uint64_t)ctx->rank;
    double t0 = ody_now();
    int status = 0;
    for (int b = 0; b < batches && status == 0; b++) {
        for (int i = 0; i < batch; i++) {
            state = state * 6364136223846793005u + 1442695040888963407u;
            ids[i] = (int64_t)((state >> 33) % (uint64_t)ds->n);
        }
        if (ody_dataset_read(ds, ctx, ids, batch, x, y) != ODY_OK) {
            fprintf(stderr, "hdf5_memory: %s\n", ody_ctx_error(ctx));
            status = 3;
        }
    }
    double seconds = ody_now() - t0;
    printf("rank=%d samples=%lld image_bytes=%zu bytes_held=%zu allocated=%zu "
           "rss_open_growth=%zu rss_read_growth=%zu read_ms_per_batch=%.3f\n",
           ctx->rank, (long long)ds->n, (size_t)ds->n * numel, ds->bytes_held,
           ctx->bytes_allocated - alloc0, rss_open > rss0 ? rss_open - rss0 : 0,
           resident_bytes() > rss_open ? resident_bytes() - rss_open : 0,
           batches > 0 ? 1000.0 * seconds / batches : 0.0);
    free(x), free(y), free(ids);
    ody_dataset_destroy(ctx, ds);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: hdf5_memory FILE.h5 [BATCHES [BATCH]]\n");
        return 2;
    }
    int batches = argc > 2 ? atoi(argv[2]) : 200, batch = argc > 3 ? atoi(argv[3]) : 64;
    if (batches < 0 || batch < 1) {
        fprintf(stderr, "hdf5_memory: BATCHES >= 0 and BATCH >= 1\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    ody_ctx *ctx = NULL;
    int status = 1;
    if (ody_ctx_create(&ctx, MPI_COMM_WORLD) == ODY_OK)
        status = run(ctx, argv[1], batches, batch);
    ody_ctx_destroy(ctx);
    MPI_Finalize();
    return status;
}

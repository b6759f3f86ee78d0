/*
 * bench_checkpoint DIR [HIDDEN]: write and read the checkpoint of a large
 * MLP (default 784-5000-5000-4000-10, 49.1M parameters: parameters and SGD
 * momentum, ~393 MB) through the trainer's own save and load, and print
 * the bandwidths:
 *
 *   RESULT bench_checkpoint parameters=N bytes=B write_mb_s=W read_mb_s=R
 *
 * tests/bench/targets.sh compares them with what dd gets in the same
 * directory. The write includes everything a real save does (HDF5 with
 * checksums, fsync of the file, rename, fsync of the directory); the read
 * includes verifying every checksum. As root, the page cache is dropped
 * between the two (sync, /proc/sys/vm/drop_caches), so the read comes from
 * the disk, as dd's does in targets.sh.
 */
#define _DEFAULT_SOURCE /* sync() */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "odyssey/train.h"
#include "train/train_internal.h"

static const char *yaml_fmt =
    "model: {name: mlp, num_classes: 10, input_shape: [1, 28, 28], hidden_sizes: [%s]}\n"
    "training: {epochs: 1, batch_size: 8, save_checkpoints: false}\n"
    "optimizer: {name: sgd, learning_rate: 0.01, momentum: 0.9}\n"
    "data: {name: synthetic, synthetic_train: 8, synthetic_val: 8}\n"
    "logging: {level: warn, csv: false, plot: false}\n";

/* As root: write dirty pages out and drop the page cache (else nothing). */
static void drop_caches(void)
{
    sync();
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
    if (f) {
        fputs("3\n", f);
        fclose(f);
    }
}

static int run(ody_ctx *ctx, const char *dir, const char *hidden)
{
    char yaml[1024], outdir[600], path[700];
    snprintf(yaml, sizeof yaml, yaml_fmt, hidden);
    snprintf(outdir, sizeof outdir, "experiment.output_dir=%s", dir);
    char *overrides[] = {outdir};
    ody_config *cfg = calloc(1, sizeof *cfg);
    ody_config_defaults(cfg);
    ody_trainer *t = NULL;
    ody_status st = ody_config_parse(ctx, yaml, "bench_checkpoint", 1, overrides, cfg);
    if (st == ODY_OK)
        st = ody_trainer_create(ctx, cfg, NULL, &t);
    if (st != ODY_OK) {
        fprintf(stderr, "bench_checkpoint: %s\n", ody_ctx_error(ctx));
        free(cfg);
        return 1;
    }
    ody_training_loop *loop = ody_trainer_loop(t);
    snprintf(path, sizeof path, "%s/bench.h5", dir);
    double t0 = ody_now();
    st = ody_train_checkpoint_save(loop, path, true);
    double t1 = ody_now();
    drop_caches();
    double t2 = ody_now();
    if (st == ODY_OK)
        st = ody_train_checkpoint_load(loop, path);
    double t3 = ody_now();
    struct stat sb;
    if (st != ODY_OK || stat(path, &sb) != 0) {
        fprintf(stderr, "bench_checkpoint: %s\n", ody_ctx_error(ctx));
        ody_trainer_destroy(t);
        free(cfg);
        return 1;
    }
    double mb = (double)sb.st_size / 1e6;
    if (ctx->rank == 0)
        printf("RESULT bench_checkpoint parameters=%zu bytes=%lld write_mb_s=%.0f read_mb_s=%.0f\n",
               loop->model->nparams, (long long)sb.st_size, mb / (t1 - t0), mb / (t3 - t2));
    remove(path);
    ody_trainer_destroy(t);
    free(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    ody_ctx *ctx = NULL;
    int rc = 1;
    if (argc < 2) {
        fprintf(stderr, "usage: bench_checkpoint DIR [HIDDEN, e.g. 5000,5000,4000]\n");
    } else if (ody_ctx_create(&ctx, MPI_COMM_WORLD) == ODY_OK) {
        ctx->log_level = ODY_LOG_WARN;
        rc = run(ctx, argv[1], argc > 2 ? argv[2] : "5000, 5000, 4000");
    }
    ody_ctx_destroy(ctx);
    MPI_Finalize();
    return rc;
}

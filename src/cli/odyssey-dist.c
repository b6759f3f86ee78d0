/*
 * odyssey-dist: the program. Parses the command line, resolves the config
 * on rank 0 and broadcasts it, runs the trainer, and turns the agreed
 * status into the exit code of every rank (DESIGN.md's contract).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "odyssey/core.h"
#include "odyssey/io.h"
#include "odyssey/train.h"

static const char usage_text[] =
    "usage: odyssey-dist [OPTIONS] CONFIG.yaml [section.key=value ...]\n"
    "\n"
    "Train a model data-parallel across the MPI ranks it is started on:\n"
    "  mpirun -np 4 odyssey-dist configs/lenet5/baseline.yaml training.epochs=2\n"
    "\n"
    "CONFIG is a YAML file, or MODEL/NAME for configs/MODEL/NAME.yaml.\n"
    "Overrides after it set any key of the config (see README.md).\n"
    "\n"
    "options:\n"
    "  --resume auto|PATH   continue from the newest valid checkpoint of the run, or from PATH\n"
    "  --eval PATH          evaluate a checkpoint on the test set and print its metrics\n"
    "                       (CONFIG is optional then: the checkpoint's own config is used)\n"
    "  --print-config       print the resolved config as YAML and exit\n"
    "  --config-reference   print every config key as a markdown table and exit\n"
    "  --help               this text\n"
    "  --version            the program version\n"
    "\n"
    "exit status: 0 done, 2 usage or config error, 3 data error, 4 checkpoint error,\n"
    "5 numeric failure, 75 stopped by a signal after writing a checkpoint.\n";

typedef struct {
    bool print_config;
    const char *resume;
    const char *eval;
    const char *config;
    int noverrides;
    char **overrides;
} cli_args;

/* section.key=value, and not a file of that name: an override, never the
 * config (with --eval the config may be left out). */
static bool is_override(const char *arg)
{
    const char *eq = strchr(arg, '='), *dot = strchr(arg, '.');
    return eq && dot && dot < eq && dot > arg && access(arg, F_OK) != 0;
}

/* Parse argv: options may stand anywhere; the first other argument that is
 * no override is the config and the rest are overrides. Returns 0 to run,
 * -1 when done (help, version, reference), or an exit code. */
static int parse_args(int argc, char **argv, int rank, cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->overrides = calloc((size_t)argc, sizeof *a->overrides);
    if (!a->overrides)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            if (!a->config && !is_override(arg))
                a->config = arg;
            else
                a->overrides[a->noverrides++] = argv[i];
        } else if (strcmp(arg, "--help") == 0) {
            if (rank == 0)
                fputs(usage_text, stdout);
            return -1;
        } else if (strcmp(arg, "--version") == 0) {
            if (rank == 0)
                printf("odyssey-dist %s\n", ODY_VERSION);
            return -1;
        } else if (strcmp(arg, "--config-reference") == 0) {
            if (rank == 0)
                ody_config_write_reference(stdout);
            return -1;
        } else if (strcmp(arg, "--print-config") == 0) {
            a->print_config = true;
        } else if (strcmp(arg, "--resume") == 0 || strcmp(arg, "--eval") == 0) {
            if (i + 1 >= argc) {
                if (rank == 0)
                    fprintf(stderr, "odyssey-dist: %s needs a value (try --help)\n", arg);
                return 2;
            }
            *(arg[2] == 'r' ? &a->resume : &a->eval) = argv[++i];
        } else {
            if (rank == 0)
                fprintf(stderr, "odyssey-dist: unknown option '%s' (try --help)\n", arg);
            return 2;
        }
    }
    const char *conflict = a->eval && a->resume ? "--eval and --resume"
                           : a->eval && a->print_config ? "--eval and --print-config"
                                                        : NULL;
    if (conflict) {
        if (rank == 0)
            fprintf(stderr, "odyssey-dist: %s do not go together\n", conflict);
        return 2;
    }
    if (!a->config && !a->eval) {
        if (rank == 0)
            fprintf(stderr, "odyssey-dist: missing CONFIG (try --help)\n");
        return 2;
    }
    return 0;
}

static ody_status print_config(ody_ctx *ctx, const ody_config *cfg)
{
    if (ctx->rank != 0)
        return ODY_OK;
    char *yaml = NULL;
    ody_status st = ody_config_to_yaml(ctx, cfg, &yaml);
    if (st == ODY_OK)
        fputs(yaml, stdout);
    free(yaml);
    return st;
}

static ody_log_level level_from_name(const char *name)
{
    if (strcmp(name, "error") == 0)
        return ODY_LOG_ERROR;
    if (strcmp(name, "warn") == 0)
        return ODY_LOG_WARN;
    if (strcmp(name, "debug") == 0)
        return ODY_LOG_DEBUG;
    return ODY_LOG_INFO;
}

static ody_status train(ody_ctx *ctx, const ody_config *cfg, const char *resume)
{
    ody_trainer *trainer = NULL;
    ody_status st = ody_trainer_create(ctx, cfg, resume, &trainer);
    if (st == ODY_OK)
        st = ody_trainer_run(trainer);
    ody_trainer_destroy(trainer);
    if (st == ODY_STOPPED)
        ody_fail(ctx, st, "stopped by a signal; continue with --resume auto");
    return st;
}

/* The config stored in a checkpoint, with the command line's overrides:
 * rank 0 reads it, every rank parses the same text. Collective. */
static ody_status config_from_checkpoint(ody_ctx *ctx, const cli_args *a, ody_config *cfg)
{
    char *text = NULL;
    ody_status st = ODY_OK;
    if (ctx->rank == 0) {
        ody_ckpt *ck = NULL;
        st = ody_ckpt_open(ctx, a->eval, &ck);
        if (st == ODY_OK)
            st = ody_ckpt_get_string(ctx, ck, "config", &text);
        ody_ckpt_close(ck);
    }
    st = ody_comm_agree(ctx, st);
    long len = text ? (long)strlen(text) + 1 : 0;
    if (st == ODY_OK)
        MPI_Bcast(&len, 1, MPI_LONG, 0, ctx->comm);
    if (st == ODY_OK && ctx->rank != 0 && !(text = malloc((size_t)len)))
        st = ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the config");
    st = ody_comm_agree(ctx, st);
    if (st == ODY_OK) {
        MPI_Bcast(text, (int)len, MPI_CHAR, 0, ctx->comm);
        ody_config_defaults(cfg);
        st = ody_config_parse(ctx, text, a->eval, a->noverrides, a->overrides, cfg);
    }
    free(text);
    return st;
}

static ody_status evaluate(ody_ctx *ctx, const ody_config *cfg, const char *path)
{
    double loss = 0, accuracy = 0;
    int64_t samples = 0;
    ody_status st = ody_evaluate_checkpoint(ctx, cfg, path, &loss, &accuracy, &samples);
    if (st == ODY_OK && ctx->rank == 0)
        printf("eval %s: loss %.6f accuracy %.4f (%.2f%%) on %lld samples of %s (%s)\n", path,
               loss, accuracy, 100.0 * accuracy, (long long)samples, cfg->data.name,
               cfg->data.validation);
    return st;
}

static int run(int argc, char **argv)
{
    ody_ctx *ctx = NULL;
    ody_status st = ody_ctx_create(&ctx, MPI_COMM_WORLD);
    if (st != ODY_OK) {
        int rank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (rank == 0)
            fprintf(stderr, "odyssey-dist: %s: creating the MPI context failed on some rank\n",
                    ody_status_name(st));
        return ody_status_exit_code(st);
    }
    cli_args args;
    int code = parse_args(argc, argv, ctx->rank, &args);
    /* The command line is the same on every rank; memory may not be. */
    st = ody_comm_agree(ctx, code == 1 ? ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the command line")
                                       : ODY_OK);
    if (st != ODY_OK || code != 0) {
        if (st != ODY_OK && ctx->rank == 0)
            fprintf(stderr, "odyssey-dist: %s: %s\n", ody_status_name(st), ody_ctx_error(ctx));
        free(args.overrides);
        ody_ctx_destroy(ctx);
        return st != ODY_OK ? ody_status_exit_code(st) : code < 0 ? 0 : code;
    }
    ody_config *cfg = calloc(1, sizeof *cfg);
    st = cfg ? ODY_OK : ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the config");
    st = ody_comm_agree(ctx, st);
    if (st == ODY_OK && args.config)
        st = ody_config_resolve(ctx, args.config, args.noverrides, args.overrides, cfg);
    else if (st == ODY_OK)
        st = config_from_checkpoint(ctx, &args, cfg);
    ody_stall *stall = NULL;
    if (st == ODY_OK && !args.print_config)
        st = ody_stall_create(ctx, cfg->distributed.stall_seconds, &stall);
    if (st == ODY_OK) {
        ctx->log_level = level_from_name(cfg->logging.level);
        if (args.print_config)
            st = print_config(ctx, cfg);
        else if (args.eval)
            st = evaluate(ctx, cfg, args.eval);
        else if ((st = ody_stop_signals_install(ctx)) == ODY_OK)
            st = train(ctx, cfg, args.resume);
    }
    ody_stall_destroy(stall);
    if (st != ODY_OK && ctx->rank == 0)
        fprintf(stderr, "odyssey-dist: %s: %s\n", ody_status_name(st), ody_ctx_error(ctx));
    free(cfg);
    free(args.overrides);
    ody_ctx_destroy(ctx);
    return ody_status_exit_code(st);
}

int main(int argc, char **argv)
{
    int provided = 0;
    /* The loader's prefetch thread never calls MPI. */
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "odyssey-dist: MPI_Init failed\n");
        return 1;
    }
    int code = run(argc, argv);
    MPI_Finalize();
    return code;
}

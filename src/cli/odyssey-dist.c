/*
 * odyssey-dist: the program. Parses the command line, resolves the config
 * on rank 0 and broadcasts it, runs the trainer, and turns the agreed
 * status into the exit code of every rank (DESIGN.md's contract).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "odyssey/core.h"
#include "odyssey/io.h"
#include "odyssey/nn.h"
#include "odyssey/train.h"

#ifndef ODY_CONFIG_INSTALL_DIR /* set by the build: <prefix>/share/odyssey-dist/configs */
#define ODY_CONFIG_INSTALL_DIR "share/odyssey-dist/configs"
#endif

static const char usage_text[] =
    "usage: odyssey-dist [OPTIONS] CONFIG.yaml [section.key=value ...]\n"
    "       odyssey-dist [OPTIONS] --eval CHECKPOINT.h5 [section.key=value ...]\n"
    "\n"
    "Train a model data-parallel across the MPI ranks it is started on:\n"
    "  mpirun -np 4 odyssey-dist configs/lenet5/baseline.yaml training.epochs=2\n"
    "\n"
    "CONFIG is a YAML file, or MODEL/NAME for configs/MODEL/NAME.yaml.\n"
    "Overrides after it set any key of the config (odyssey-dist --config-reference).\n"
    "Options may stand anywhere, as --opt VALUE or --opt=VALUE; -- ends them.\n"
    "\n"
    "options:\n"
    "  --resume auto|PATH   continue from the newest valid checkpoint of the run, or from PATH\n"
    "  --eval PATH          evaluate a checkpoint on the test set and print its metrics\n"
    "                       (CONFIG is optional then: the checkpoint's own config is used)\n"
    "  --print-config       print the resolved config as YAML and exit\n"
    "  --config-reference   print every config key as a markdown table and exit\n"
    "  -h, --help           this text\n"
    "  -V, --version        the program version\n"
    "(--help, --version and --config-reference do not start MPI.)\n"
    "\n"
    "environment:\n"
    "  ODY_CONFIG_DIR       where MODEL/NAME configs are looked up first; then in ./configs,\n"
    "                       then in the installed ones (" ODY_CONFIG_INSTALL_DIR ")\n"
    "  OPENBLAS_NUM_THREADS\n"
    "                       BLAS threads per rank in the fast mode (deterministic mode: 1)\n"
    "  ODY_CPU_ISA          portable, avx2 or avx512: the instruction set of odyssey's own\n"
    "                       kernels, at most what the CPU has (default: the best it has)\n"
    "  ODY_PROGRESS         auto, always or never: the live progress line on rank 0's\n"
    "                       terminal, when logging.progress is auto (the default)\n"
    "  ODY_FAIL_ACTION, ODY_FAIL_RANK, ODY_FAIL_STEP\n"
    "                       the test knob: a rank stops, kills or stalls itself at a step\n"
    "\n"
    "exit status: 0 done, 1 out of memory, an I/O or MPI error or an internal error,\n"
    "2 usage or config error, 3 data error, 4 checkpoint error, 5 numeric failure,\n"
    "75 stopped by a signal after writing a checkpoint. Every rank exits alike.\n";

typedef struct {
    bool print_config;
    const char *resume;
    const char *eval;
    const char *config;
    int noverrides;
    char **overrides; /* into argv */
} cli_args;

/* section.key=value, and not a file of that name: an override, never the
 * config (with --eval the config may be left out). */
static bool is_override(const char *arg)
{
    const char *eq = strchr(arg, '='), *dot = strchr(arg, '.');
    return eq && dot && dot < eq && dot > arg && access(arg, F_OK) != 0;
}

/* Before MPI starts, a process knows its rank only from its launcher:
 * true unless the launcher says it is not rank 0. */
static bool launcher_rank0(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK",
                                       "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return strcmp(v, "0") == 0;
    }
    return true;
}

/* Parse argv with getopt_long (options anywhere, --opt=value, -h, -V, --
 * ends them) before MPI starts: the first argument that is no override is
 * the config (moved in front of the others, which are the overrides, in
 * argv itself: nothing is allocated). Only rank 0 speaks. Returns 0 to run,
 * -1 when done (help, version, reference), or an exit code. */
static int parse_args(int argc, char **argv, cli_args *a)
{
    enum { OPT_RESUME = 256, OPT_EVAL, OPT_PRINT_CONFIG, OPT_REFERENCE };
    static const struct option options[] = {
        {"resume", required_argument, NULL, OPT_RESUME},
        {"eval", required_argument, NULL, OPT_EVAL},
        {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
        {"config-reference", no_argument, NULL, OPT_REFERENCE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    bool speak = launcher_rank0();
    memset(a, 0, sizeof *a);
    opterr = 0; /* our own messages */
    for (int c; (c = getopt_long(argc, argv, ":hV", options, NULL)) != -1;) {
        switch (c) {
        case 'h':
            if (speak)
                fputs(usage_text, stdout);
            return -1;
        case 'V':
            if (speak) {
                printf("odyssey-dist %s\n", ODY_VERSION);
                ody_kernels_report(stdout);
            }
            return -1;
        case OPT_REFERENCE:
            if (speak)
                ody_config_write_reference(stdout);
            return -1;
        case OPT_PRINT_CONFIG: a->print_config = true; break;
        case OPT_RESUME: a->resume = optarg; break;
        case OPT_EVAL: a->eval = optarg; break;
        case ':':
            if (speak)
                fprintf(stderr, "odyssey-dist: %s needs a value (try --help)\n", argv[optind - 1]);
            return 2;
        default: /* '?': unknown, or a value given to an option that takes none */
            if (speak && optopt >= OPT_RESUME)
                fprintf(stderr, "odyssey-dist: '%s' takes no value (try --help)\n",
                        argv[optind - 1]);
            else if (speak && optopt)
                fprintf(stderr, "odyssey-dist: unknown option '-%c' (try --help)\n", optopt);
            else if (speak)
                fprintf(stderr, "odyssey-dist: unknown option '%s' (try --help)\n",
                        argv[optind - 1]);
            return 2;
        }
    }
    /* argv[optind..] are the operands, in order: the config, then overrides */
    for (int i = optind; i < argc; i++) {
        if (!is_override(argv[i])) {
            char *config = argv[i];
            memmove(argv + optind + 1, argv + optind, (size_t)(i - optind) * sizeof *argv);
            argv[optind] = config;
            a->config = config;
            break;
        }
    }
    a->overrides = argv + optind + (a->config != NULL);
    a->noverrides = argc - optind - (a->config != NULL);
    const char *conflict = a->eval && a->resume ? "--eval and --resume"
                           : a->eval && a->print_config ? "--eval and --print-config"
                                                        : NULL;
    if (conflict) {
        if (speak)
            fprintf(stderr, "odyssey-dist: %s do not go together\n", conflict);
        return 2;
    }
    if (!a->config && !a->eval) {
        if (speak)
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

static int run(const cli_args *a)
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
    ody_config *cfg = calloc(1, sizeof *cfg);
    st = cfg ? ODY_OK : ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the config");
    st = ody_comm_agree(ctx, st);
    if (st == ODY_OK && a->config)
        st = ody_config_resolve(ctx, a->config, a->noverrides, a->overrides, cfg);
    else if (st == ODY_OK)
        st = config_from_checkpoint(ctx, a, cfg);
    ody_stall *stall = NULL;
    if (st == ODY_OK && !a->print_config)
        st = ody_stall_create(ctx, cfg->distributed.stall_seconds, &stall);
    if (st == ODY_OK) {
        ctx->log_level = level_from_name(cfg->logging.level);
        if (a->print_config)
            st = print_config(ctx, cfg);
        else if (a->eval)
            st = evaluate(ctx, cfg, a->eval);
        else if ((st = ody_stop_signals_install(ctx)) == ODY_OK)
            st = train(ctx, cfg, a->resume);
    }
    ody_stall_destroy(stall);
    if (st != ODY_OK && ctx->rank == 0)
        fprintf(stderr, "odyssey-dist: %s: %s\n", ody_status_name(st), ody_ctx_error(ctx));
    free(cfg);
    ody_ctx_destroy(ctx);
    return ody_status_exit_code(st);
}

int main(int argc, char **argv)
{
    cli_args args;
    int code = parse_args(argc, argv, &args);
    if (code != 0) /* help, version, the reference, or a usage error: no MPI */
        return code < 0 ? 0 : code;
    int provided = 0;
    /* The loader's prefetch thread and the stall watchdog never call MPI. */
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "odyssey-dist: MPI_Init failed\n");
        return 1;
    }
    code = run(&args);
    MPI_Finalize();
    return code;
}

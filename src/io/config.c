/*
 * io: the config API. A config is the schema's defaults, then a YAML file,
 * then command-line overrides in order, then derived defaults
 * (experiment.name) and the checks that involve more than one key.
 * ody_config_resolve does that once, on rank 0, and broadcasts the result.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include "io/io_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_CONFIG_BYTES = 16 << 20 };

void ody_config_defaults(ody_config *cfg)
{
    /* The defaults are tested to parse; a broken one would leave its field zero. */
    ody_ctx scratch;
    memset(&scratch, 0, sizeof scratch);
    ody_cfg_reader r = {.ctx = &scratch, .source = "schema default"};
    int nrows = 0;
    const ody_cfg_row *rows = ody_cfg_schema(&nrows);
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < nrows; i++)
        ody_cfg_apply_text(&r, &rows[i], rows[i].def, cfg);
}

/* ------------------------------------------------- derived values, checks */

/* "<model.name>-<file stem>" for a file, "<model.name>" otherwise. */
static ody_status derive_experiment_name(ody_ctx *ctx, ody_config *cfg, const char *where)
{
    ody_experiment_config *e = &cfg->experiment;
    if (e->name[0])
        return ODY_OK;
    const char *base = strrchr(cfg->source, '/');
    base = base ? base + 1 : cfg->source;
    const char *dot = strrchr(base, '.');
    int stem_len = (int)(dot && dot > base ? (size_t)(dot - base) : strlen(base));
    char name[sizeof e->name + sizeof cfg->source];
    if (stem_len > 0)
        snprintf(name, sizeof name, "%s-%.*s", cfg->model.name, stem_len, base);
    else
        snprintf(name, sizeof name, "%s", cfg->model.name);
    if (strlen(name) >= sizeof e->name)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: experiment.name: the derived name '%.40s...' is too long (at most "
                        "%zu characters); set experiment.name",
                        where, name, sizeof e->name - 1);
    memset(e->name, 0, sizeof e->name);
    memcpy(e->name, name, strlen(name));
    return ODY_OK;
}

/*
 * idx and hdf5 read data.path; idx also needs its file names, the test
 * files only when validating on them.
 */
static ody_status check_data_files(ody_ctx *ctx, const ody_data_options *d, const char *where)
{
    bool idx = strcmp(d->name, "idx") == 0, hdf5 = strcmp(d->name, "hdf5") == 0;
    bool test = strcmp(d->validation, "test") == 0;
    const struct {
        const char *key, *value;
        bool needed;
    } files[] = {
        {"path", d->path, idx || hdf5},
        {"train_images", d->train_images, idx},
        {"train_labels", d->train_labels, idx},
        {"test_images", d->test_images, idx && test},
        {"test_labels", d->test_labels, idx && test},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (files[i].needed && !files[i].value[0])
            return ody_fail(ctx, ODY_ERR_CONFIG, "%s: data.%s: required when data.name is %s",
                            where, files[i].key, d->name);
    }
    return ODY_OK;
}

static ody_status check_model(ody_ctx *ctx, const ody_model_options *m, const char *where)
{
    bool sequential = strcmp(m->name, "sequential") == 0;
    if (sequential && m->n_layers == 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: model.layers: required when model.name is sequential", where);
    if (!sequential && m->n_layers > 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: model.layers: only read when model.name is sequential (it is '%s')",
                        where, m->name);
    return ODY_OK;
}

/*
 * Build the model once on rank 0 while its layers still carry their lines
 * in the user's file: a layer that does not fit its input, or a residual
 * block whose shapes do not match, is an error located there (the ranks
 * build it again from the resolved config, whose lines are its own).
 */
static ody_status try_model(ody_ctx *ctx, const ody_config *cfg, const char *path)
{
    ody_model_options options = cfg->model;
    options.compute_bf16 = cfg->training.use_mixed_precision && strcmp(cfg->training.precision_dtype, "bf16") == 0;
    ody_model *model = NULL;
    ody_status st = ody_model_create(ctx, &options, &model);
    ody_model_destroy(ctx, model);
    if (st != ODY_OK)
        ody_error_prefix(ctx, "%s", path);
    return st;
}

/*
 * Augmentation crops, flips and erases (C, H, W) images. The samples are
 * model.input_shape, except that image files may feed a flat input: their
 * image shape is known once they are read, and the loader checks it then.
 */
static ody_status check_augmentation(ody_ctx *ctx, const ody_config *cfg, const char *where)
{
    const ody_data_options *d = &cfg->data;
    ody_augment_options opt = ody_augment_options_of(d);
    const ody_shape *shape = &cfg->model.input_shape;
    if (shape->ndim != 3 && strcmp(d->name, "synthetic") != 0)
        return ODY_OK;
    ody_status st = ody_augment_check(ctx, &opt, shape, "model.input_shape");
    if (st != ODY_OK)
        ody_error_prefix(ctx, "%s", where);
    return st;
}

/* A scheduler key set while nothing is scheduled would silently do nothing. */
static ody_status check_scheduler_used(ody_ctx *ctx, const ody_config *cfg, const char *where)
{
    const ody_training_config *t = &cfg->training;
    const ody_scheduler_config *s = &cfg->scheduler;
    bool typed = strcmp(t->scheduler_type, "none") != 0;
    if (!t->use_scheduler && typed)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: training.scheduler_type: has no effect while training.use_scheduler "
                        "is false",
                        where);
    if (!t->use_scheduler && s->warmup_steps > 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: scheduler.warmup_steps: has no effect while training.use_scheduler "
                        "is false",
                        where);
    if (t->use_scheduler && !typed && s->warmup_steps == 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: training.use_scheduler: needs training.scheduler_type (or "
                        "scheduler.warmup_steps > 0 for a warmup alone)",
                        where);
    return ODY_OK;
}

/* Milestones of multistep, the metric plateau watches. */
static ody_status check_scheduler(ody_ctx *ctx, const ody_config *cfg, const char *where)
{
    ody_status st = check_scheduler_used(ctx, cfg, where);
    if (st != ODY_OK)
        return st;
    const ody_training_config *t = &cfg->training;
    const ody_scheduler_config *s = &cfg->scheduler;
    for (int i = 1; i < s->n_milestones; i++)
        if (s->milestones[i] <= s->milestones[i - 1])
            return ody_fail(ctx, ODY_ERR_CONFIG,
                            "%s: scheduler.milestones: must be increasing (%d after %d)", where,
                            s->milestones[i], s->milestones[i - 1]);
    if (t->use_scheduler && strcmp(t->scheduler_type, "multistep") == 0 && s->n_milestones == 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: scheduler.milestones: required when training.scheduler_type is "
                        "multistep",
                        where);
    bool validated = strcmp(cfg->data.validation, "none") != 0 && t->validate_interval > 0;
    if (t->use_scheduler && strcmp(t->scheduler_type, "plateau") == 0 &&
        strncmp(s->monitor, "val_", 4) == 0 && !validated)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: scheduler.monitor: %s needs validation (data.validation is %s, "
                        "training.validate_interval is %lld)",
                        where, s->monitor, cfg->data.validation, (long long)t->validate_interval);
    return ODY_OK;
}

/* Checks that involve more than one key, or a derived value. */
static ody_status check_config(ody_ctx *ctx, const ody_config *cfg, const char *where)
{
    const char *name = cfg->experiment.name;
    if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: experiment.name: '%s' is not a directory name (no '/', not . or ..)",
                        where, name);
    ody_status st = check_model(ctx, &cfg->model, where);
    if (st != ODY_OK)
        return st;
    if ((st = check_data_files(ctx, &cfg->data, where)) != ODY_OK)
        return st;
    if ((st = check_augmentation(ctx, cfg, where)) != ODY_OK)
        return st;
    if (strcmp(cfg->model.batchnorm, "global") == 0 && cfg->training.accumulation_steps > 1)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: model.batchnorm: global takes the statistics over a step's global batch; "
                        "with training.accumulation_steps %lld each micro-batch would need its own "
                        "(set one of them back)",
                        where, (long long)cfg->training.accumulation_steps);
    if (cfg->training.label_smoothing > 0 && strcmp(cfg->training.loss, "cross_entropy") != 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: training.label_smoothing: only applies to training.loss "
                        "cross_entropy (it is %s)",
                        where, cfg->training.loss);
    if (cfg->data.mean != 0 && cfg->data.std == 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: data.mean: has no effect while data.std is 0 (set data.std > 0 to "
                        "standardise)",
                        where);
    const ody_optimizer_config *o = &cfg->optimizer;
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: optimizer.nesterov: needs momentum > 0 and dampening 0", where);
    if (cfg->training.gradient_clip_norm > 0 && cfg->training.gradient_clip_value > 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: training.gradient_clip_value: set at most one of gradient_clip_norm "
                        "and gradient_clip_value",
                        where);
    if (cfg->distributed.deterministic && cfg->training.use_mixed_precision &&
        strcmp(cfg->training.precision_dtype, "fp16") == 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: training.precision_dtype: fp16 (half-precision gradients with loss "
                        "scaling) needs distributed.deterministic: false (deterministic mode, the "
                        "default, sums gradients exactly in integers; bf16 compute works there)",
                        where);
    return check_scheduler(ctx, cfg, where);
}

/* --------------------------------------------------------------- parsing */

static ody_status apply_file_text(ody_ctx *ctx, const char *text, const char *where,
                                  ody_config *cfg)
{
    ody_cfg_reader r = {.ctx = ctx, .source = where};
    yaml_document_t doc;
    yaml_node_t *root = NULL;
    ody_status st = ody_cfg_load_document(&r, text, &doc, &root);
    if (st != ODY_OK)
        return st;
    if (root) /* an empty file is all defaults */
        st = ody_cfg_apply_root(&r, &doc, root, cfg);
    yaml_document_delete(&doc);
    return st;
}

ody_status ody_config_parse(ody_ctx *ctx, const char *text, const char *source, int noverrides,
                            char *const *overrides, ody_config *cfg)
{
    if (!source)
        source = "";
    const char *where = source[0] ? source : "<string>";
    if (strlen(source) >= sizeof cfg->source)
        return ody_fail(ctx, ODY_ERR_CONFIG, "%.60s...: config path too long", source);
    memset(cfg->source, 0, sizeof cfg->source);
    memcpy(cfg->source, source, strlen(source));
    ody_status st = text ? apply_file_text(ctx, text, where, cfg) : ODY_OK;
    for (int i = 0; st == ODY_OK && i < noverrides; i++)
        st = ody_cfg_apply_override(ctx, overrides[i], cfg);
    if (st == ODY_OK)
        st = derive_experiment_name(ctx, cfg, where);
    if (st == ODY_OK)
        st = check_config(ctx, cfg, where);
    return st;
}

/* ----------------------------------------------------------------- files */

/* The whole file as a NUL-terminated string (malloc'd). */
static ody_status read_text_file(ody_ctx *ctx, const char *path, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT
                   ? ody_fail(ctx, ODY_ERR_CONFIG, "no such config file: %s", path)
                   : ody_fail(ctx, ODY_ERR_CONFIG, "%s: %s", path, strerror(errno));
    size_t len = 0, cap = 4096;
    char *text = malloc(cap);
    ody_status st = text ? ODY_OK : ody_fail(ctx, ODY_ERR_NOMEM, "out of memory reading %s", path);
    while (st == ODY_OK) {
        len += fread(text + len, 1, cap - len - 1, f);
        if (ferror(f))
            st = ody_fail(ctx, ODY_ERR_CONFIG, "%s: %s", path, strerror(errno));
        else if (feof(f))
            break;
        else if (cap >= MAX_CONFIG_BYTES)
            st = ody_fail(ctx, ODY_ERR_CONFIG, "%s: larger than %d MiB; not a config file", path,
                          MAX_CONFIG_BYTES >> 20);
        else {
            char *grown = realloc(text, cap * 2);
            if (!grown)
                st = ody_fail(ctx, ODY_ERR_NOMEM, "out of memory reading %s", path);
            else {
                text = grown;
                cap *= 2;
            }
        }
    }
    fclose(f);
    if (st == ODY_OK) {
        text[len] = '\0';
        if (strlen(text) != len)
            st = ody_fail(ctx, ODY_ERR_CONFIG, "%s: not a text file (NUL byte at offset %zu)",
                          path, strlen(text));
    }
    if (st != ODY_OK)
        free(text);
    else
        *out = text;
    return st;
}

ody_status ody_config_load(ody_ctx *ctx, const char *path, int noverrides, char *const *overrides,
                           ody_config *cfg)
{
    char *text = NULL;
    ody_status st = read_text_file(ctx, path, &text);
    if (st == ODY_OK)
        st = ody_config_parse(ctx, text, path, noverrides, overrides, cfg);
    free(text);
    return st;
}

/*
 * Where MODEL/NAME configs are looked for, in order: $ODY_CONFIG_DIR,
 * ./configs, the installed ones next to the running program
 * (<its dir>/ODY_CONFIG_DIR_FROM_BIN: a moved install prefix still works)
 * and where the build installs them (ODY_CONFIG_INSTALL_DIR). Both macros
 * come from the build; without them only the first two are searched.
 */
enum { MAX_CONFIG_DIRS = 4, CONFIG_DIR_LEN = 512 };
typedef struct {
    int n;
    char dir[MAX_CONFIG_DIRS][CONFIG_DIR_LEN];
} config_dirs;

static void add_config_dir(config_dirs *d, const char *dir)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->dir[i], dir) == 0)
            return;
    int n = snprintf(d->dir[d->n], CONFIG_DIR_LEN, "%s", dir);
    if (n > 0 && n < CONFIG_DIR_LEN)
        d->n++;
}

/* The installed configs relative to this executable, when they exist. */
static void add_dir_beside_program(config_dirs *d)
{
#ifdef ODY_CONFIG_DIR_FROM_BIN
    char exe[CONFIG_DIR_LEN], dir[2 * CONFIG_DIR_LEN], real[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || n >= (ssize_t)sizeof exe - 1)
        return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return;
    *slash = '\0';
    snprintf(dir, sizeof dir, "%s/%s", exe, ODY_CONFIG_DIR_FROM_BIN);
    if (realpath(dir, real))
        add_config_dir(d, real);
#else
    (void)d;
#endif
}

static void config_dirs_list(config_dirs *d)
{
    d->n = 0;
    const char *env = getenv("ODY_CONFIG_DIR");
    if (env && env[0])
        add_config_dir(d, env);
    add_config_dir(d, "configs");
    add_dir_beside_program(d);
#ifdef ODY_CONFIG_INSTALL_DIR
    char real[PATH_MAX];
    add_config_dir(d, realpath(ODY_CONFIG_INSTALL_DIR, real) ? real : ODY_CONFIG_INSTALL_DIR);
#endif
}

static bool is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Copy a found candidate into path (len bytes). */
static ody_status found(ody_ctx *ctx, const char *candidate, char *path, size_t len)
{
    size_t n = strlen(candidate);
    if (n >= len)
        return ody_fail(ctx, ODY_ERR_CONFIG, "%s: config path too long", candidate);
    memcpy(path, candidate, n + 1);
    return ODY_OK;
}

/* "no such config file: ARG (looked in ...)" naming every place searched. */
static ody_status not_found(ody_ctx *ctx, const char *arg, const config_dirs *d)
{
    char where[ODY_ERRMSG_MAX / 2] = "";
    size_t used = 0;
    for (int i = 0; i < d->n && used < sizeof where; i++) {
        int n = snprintf(where + used, sizeof where - used, "%s%s%s", i ? ", " : "",
                         strcmp(d->dir[i], "configs") == 0 ? "./" : "", d->dir[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    return ody_fail(ctx, ODY_ERR_CONFIG,
                    "no such config file: %s (nor %s.yaml in the config directories: %s; "
                    "ODY_CONFIG_DIR adds one)",
                    arg, arg, where);
}

ody_status ody_config_find(ody_ctx *ctx, const char *arg, char *path, size_t len)
{
    if (is_regular_file(arg))
        return found(ctx, arg, path, len);
    if (arg[0] == '/')
        return ody_fail(ctx, ODY_ERR_CONFIG, "no such config file: %s", arg);
    config_dirs dirs;
    config_dirs_list(&dirs);
    char candidate[2 * CONFIG_DIR_LEN];
    for (int i = 0; i < dirs.n; i++) {
        for (int yaml = 1; yaml >= 0; yaml--) {
            int n = snprintf(candidate, sizeof candidate, "%s/%s%s", dirs.dir[i], arg,
                             yaml ? ".yaml" : "");
            if (n > 0 && (size_t)n < sizeof candidate && is_regular_file(candidate))
                return found(ctx, candidate, path, len);
        }
    }
    return not_found(ctx, arg, &dirs);
}

ody_status ody_config_load_experiment(ody_ctx *ctx, const char *model, const char *name,
                                      ody_config *cfg)
{
    char arg[512], path[1024];
    int n = snprintf(arg, sizeof arg, "%s/%s", model, name);
    if (n < 0 || (size_t)n >= sizeof arg)
        return ody_fail(ctx, ODY_ERR_CONFIG, "config path for %s/%s too long", model, name);
    ody_status st = ody_config_find(ctx, arg, path, sizeof path);
    if (st != ODY_OK)
        return st;
    ody_config_defaults(cfg);
    return ody_config_load(ctx, path, 0, NULL, cfg);
}

/* ------------------------------------------------------------- resolving */

/* Rank 0's part: find, load with overrides, write the result as YAML. */
static ody_status resolve_on_root(ody_ctx *ctx, const char *arg, int noverrides,
                                  char *const *overrides, char *path, size_t len, char **text)
{
    ody_config cfg;
    ody_status st = ody_config_find(ctx, arg, path, len);
    if (st != ODY_OK)
        return st;
    ody_config_defaults(&cfg);
    st = ody_config_load(ctx, path, noverrides, overrides, &cfg);
    if (st == ODY_OK)
        st = try_model(ctx, &cfg, path);
    if (st != ODY_OK)
        return st;
    return ody_config_to_yaml(ctx, &cfg, text);
}

/*
 * Broadcast rank 0's status and then its message (on error) or YAML text
 * (on success) into *payload (malloc'd on every rank, rank 0 included).
 * Every rank agrees on the result, out-of-memory on any rank included.
 */
static ody_status broadcast_result(ody_ctx *ctx, ody_status root_status, const char *root_payload,
                                   char *path, size_t path_len, char **payload)
{
    const char *what = "broadcasting the config";
    int header[2] = {(int)root_status, root_payload ? (int)strlen(root_payload) + 1 : 0};
    ody_status st = ody_mpi_check(ctx, MPI_Bcast(header, 2, MPI_INT, 0, ctx->comm), what);
    if (st == ODY_OK)
        st = ody_mpi_check(ctx, MPI_Bcast(path, (int)path_len, MPI_CHAR, 0, ctx->comm), what);
    if (st != ODY_OK)
        return st;
    *payload = malloc((size_t)header[1] + 1);
    int mine = *payload ? ctx->size : ctx->rank, first = ctx->size; /* the first rank without */
    st = ody_mpi_check(ctx, MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, ctx->comm), what);
    if (st == ODY_OK && first < ctx->size)
        st = ody_fail(ctx, ODY_ERR_NOMEM, "rank %d: out of memory receiving the config", first);
    if (st == ODY_OK && ctx->rank == 0)
        memcpy(*payload, root_payload, (size_t)header[1]);
    if (st == ODY_OK)
        st = ody_mpi_check(ctx, MPI_Bcast(*payload, header[1], MPI_CHAR, 0, ctx->comm), what);
    if (st == ODY_OK && header[0] != ODY_OK)
        st = ody_fail(ctx, (ody_status)header[0], "%s", *payload);
    if (st != ODY_OK) {
        free(*payload);
        *payload = NULL;
    }
    return st;
}

ody_status ody_config_resolve(ody_ctx *ctx, const char *arg, int noverrides,
                              char *const *overrides, ody_config *cfg)
{
    char path[sizeof cfg->source] = "";
    char *text = NULL, *payload = NULL;
    ody_status st = ODY_OK;
    if (ctx->rank == 0)
        st = resolve_on_root(ctx, arg, noverrides, overrides, path, sizeof path, &text);
    const char *root_payload = ctx->rank != 0 ? NULL : st == ODY_OK ? text : ody_ctx_error(ctx);
    st = broadcast_result(ctx, st, root_payload, path, sizeof path, &payload);
    free(text);
    if (st != ODY_OK)
        return st;
    ody_config_defaults(cfg);
    st = ody_config_parse(ctx, payload, path, 0, NULL, cfg);
    free(payload);
    return st;
}

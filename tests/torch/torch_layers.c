/*
 * PyTorch comparison of odyssey's layers (issue 22): torch_layers_check DIR
 * reads what tests/torch/torch_layers.py wrote into DIR (manifest.txt, a
 * line per case, and the float32 arrays), runs each case's layer on the same
 * input, parameters and upstream gradient, and checks every output against
 * PyTorch's: the output, the input gradient, every trainable parameter's
 * gradient and, for layers with buffers (batchnorm), the running statistics
 * after one update and the eval-mode output.
 *
 * A layer runs alone, as the model would run it unfused: its kind's
 * constructor, parameters in buffers of our own, prepare, then forward
 * (training, batch_rows = n: one chunk per step) and backward. Error of an
 * array: max |ours - torch| / max |torch|, at most TOL. A kind missing from
 * the layer table is reported and skipped.
 *
 * Exit status: 0 every case within TOL (skips allowed), 1 a case outside
 * it or failing to run, 2 unreadable input.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_internal.h"

#define TOL 1e-5
#define LINE_MAX_CHARS 1024

/* One line of manifest.txt. */
typedef struct {
    char name[96];
    char kind[16];
    char data[96]; /* file prefix of the arrays */
    int n;
    ody_shape in;
    ody_backend backend;
    int nargs;
    char arg_keys[ODY_LAYER_MAX_ARGS][32];
    double arg_values[ODY_LAYER_MAX_ARGS];
} test_case;

/* What one case needs in memory; released by case_free. */
typedef struct {
    float *x, *dy, *y, *dx, *scratch, *saved;
    float *value[ODY_LAYER_MAX_PARAMS], *grad[ODY_LAYER_MAX_PARAMS];
    int64_t *ids;
} case_buffers;

static const char *dir;

/* ------------------------------------------------------------------ input */

static float *falloc(size_t n)
{
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        fprintf(stderr, "torch_layers: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    memset(p, 0, bytes);
    return p;
}

/*
 * DIR/PREFIX.NAME.f32 into a new buffer of count floats. Returns NULL when
 * the file is absent and optional is set; a file of another size, or a
 * required one missing, ends the program (the two sides disagree on a case).
 */
static float *read_array(const char *prefix, const char *name, size_t count, bool optional)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.%s.f32", dir, prefix, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (optional)
            return NULL;
        fprintf(stderr, "torch_layers: cannot open %s\n", path);
        exit(2);
    }
    float *p = falloc(count + 1);
    size_t got = fread(p, sizeof(float), count + 1, f);
    fclose(f);
    if (got != count) {
        fprintf(stderr, "torch_layers: %s holds %s%zu floats, the layer expects %zu\n", path,
                got > count ? "more than " : "", got > count ? count : got, count);
        exit(2);
    }
    return p;
}

static bool parse_shape(const char *s, ody_shape *out)
{
    long long d[3];
    int k = sscanf(s, "%lldx%lldx%lld", &d[0], &d[1], &d[2]);
    if (k == 3)
        *out = ody_shape3(d[0], d[1], d[2]);
    else if (k == 1)
        *out = ody_shape1(d[0]);
    return k == 1 || k == 3;
}

/* One key=value token of a case line into c; false when it is not understood. */
static bool parse_field(test_case *c, const char *tok)
{
    const char *eq = strchr(tok, '=');
    if (!eq)
        return false;
    const char *v = eq + 1;
    size_t klen = (size_t)(eq - tok);
    if (klen == 4 && !strncmp(tok, "kind", 4))
        return snprintf(c->kind, sizeof c->kind, "%s", v) < (int)sizeof c->kind;
    if (klen == 4 && !strncmp(tok, "data", 4))
        return snprintf(c->data, sizeof c->data, "%s", v) < (int)sizeof c->data;
    if (klen == 1 && tok[0] == 'n')
        return (c->n = atoi(v)) > 0;
    if (klen == 2 && !strncmp(tok, "in", 2))
        return parse_shape(v, &c->in);
    if (klen == 7 && !strncmp(tok, "backend", 7)) {
        c->backend = strcmp(v, "openblas") == 0 ? ODY_BACKEND_OPENBLAS : ODY_BACKEND_ONEDNN;
        return !strcmp(v, "openblas") || !strcmp(v, "onednn");
    }
    if (klen > 4 && !strncmp(tok, "arg.", 4) && c->nargs < ODY_LAYER_MAX_ARGS && klen - 4 < 32) {
        memcpy(c->arg_keys[c->nargs], tok + 4, klen - 4);
        c->arg_keys[c->nargs][klen - 4] = '\0';
        c->arg_values[c->nargs++] = strtod(v, NULL);
        return true;
    }
    return false;
}

/* "case NAME key=value ..." into c. */
static bool parse_case(char *line, test_case *c)
{
    memset(c, 0, sizeof *c);
    char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
    if (!tok || strcmp(tok, "case") != 0 || !(tok = strtok_r(NULL, " \t\r\n", &save)))
        return false;
    snprintf(c->name, sizeof c->name, "%s", tok);
    while ((tok = strtok_r(NULL, " \t\r\n", &save)))
        if (!parse_field(c, tok)) {
            fprintf(stderr, "torch_layers: case %s: cannot read \"%s\"\n", c->name, tok);
            return false;
        }
    return c->kind[0] && c->data[0] && c->n > 0 && c->in.ndim > 0;
}

/* ------------------------------------------------------------- comparison */

/* max |a - b| / max |b| over count floats (0 when both are all zeros). */
static double rel_error(const float *a, const float *b, size_t count)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)a[i] - b[i]);
        diff = d > diff || isnan(d) ? d : diff;
        scale = fmax(scale, fabs((double)b[i]));
    }
    return diff / fmax(scale, 1e-30);
}

/* The worst array of a case so far, and whether any array failed. */
typedef struct {
    double worst;
    char worst_what[32];
    char report[512]; /* every array's error, printed on failure */
    bool failed;
} verdict;

static void check(verdict *v, const char *what, const float *ours, const float *ref, size_t count)
{
    double e = rel_error(ours, ref, count);
    size_t used = strlen(v->report);
    snprintf(v->report + used, sizeof v->report - used, " %s=%.2e", what, e);
    if (!(e <= TOL))
        v->failed = true;
    if (!(e <= v->worst)) {
        v->worst = e;
        snprintf(v->worst_what, sizeof v->worst_what, "%s", what);
    }
}

/* ---------------------------------------------------------------- one case */

/* The spec of a case: defaults, then its arguments by key. */
static bool make_spec(ody_ctx *ctx, const ody_layer_kind *kind, const test_case *c, ody_layer_spec *spec)
{
    if (ody_layer_spec_default(ctx, c->kind, spec) != ODY_OK)
        return false;
    spec->backend = c->backend;
    for (int a = 0; a < c->nargs; a++) {
        int at = -1;
        for (int k = 0; k < kind->nargs; k++)
            if (strcmp(kind->args[k].key, c->arg_keys[a]) == 0)
                at = k;
        if (at < 0) {
            fprintf(stderr, "torch_layers: %s: %s has no argument %s\n", c->name, c->kind, c->arg_keys[a]);
            return false;
        }
        spec->args[at] = c->arg_values[a];
    }
    if (nn_spec_check(ctx, kind, spec) != ODY_OK) {
        fprintf(stderr, "torch_layers: %s: %s\n", c->name, ody_ctx_error(ctx));
        return false;
    }
    return true;
}

static void case_free(case_buffers *b)
{
    free(b->x);
    free(b->dy);
    free(b->y);
    free(b->dx);
    free(b->scratch);
    free(b->saved);
    free(b->ids);
    for (int i = 0; i < ODY_LAYER_MAX_PARAMS; i++) {
        free(b->value[i]);
        free(b->grad[i]);
    }
}

/* Parameters from the case's p<i> files into buffers of ours, gradients zeroed. */
static void bind_params(ody_layer *l, const test_case *c, case_buffers *b)
{
    for (int i = 0; i < l->nparams; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        size_t count = nn_numel(l->params[i].shape);
        b->value[i] = read_array(c->data, name, count, false);
        b->grad[i] = falloc(count);
        l->params[i].value = b->value[i];
        l->params[i].grad = b->grad[i];
    }
}

/* Prepare for n rows and give the layer its scratch and saved buffers, as ody_model_prepare does. */
static bool prepare(ody_ctx *ctx, ody_layer *l, int n, case_buffers *b)
{
    ody_layer *none[1] = {NULL};
    if (l->ops->fuse)
        l->ops->fuse(l, none, 0); /* alone: settles what fusion would */
    if (l->ops->prepare && l->ops->prepare(ctx, l, n) != ODY_OK) {
        fprintf(stderr, "  prepare: %s\n", ody_ctx_error(ctx));
        return false;
    }
    b->scratch = falloc(l->ops->scratch_floats ? l->ops->scratch_floats(l, n) : 0);
    b->saved = falloc(l->ops->saved_floats ? l->ops->saved_floats(l, n) : 0);
    l->scratch = b->scratch;
    l->saved = b->saved;
    return true;
}

/*
 * Train-mode forward and backward, then (with buffers) the update and an
 * eval-mode forward; every result checked into v.
 */
static bool run_layer(ody_layer *l, const test_case *c, case_buffers *b, verdict *v)
{
    const int n = c->n;
    size_t nin = (size_t)n * nn_numel(l->in_shape), nout = (size_t)n * nn_numel(l->out_shape);
    b->x = read_array(c->data, "x", nin, false);
    b->dy = read_array(c->data, "dy", nout, false);
    b->y = falloc(nout);
    b->dx = falloc(nin);
    b->ids = calloc((size_t)n, sizeof *b->ids);
    for (int i = 0; b->ids && i < n; i++)
        b->ids[i] = i;
    ody_forward_info info = {.training = true, .seed = 1, .step = 0, .sample_ids = b->ids, .batch_rows = n};
    l->ops->forward(l, &info, n, b->x, b->y);
    l->ops->backward(l, &info, n, b->x, b->y, b->dy, b->dx);
    if (l->status != ODY_OK)
        return false;
    float *ref = read_array(c->data, "y", nout, false);
    check(v, "y", b->y, ref, nout);
    free(ref);
    ref = read_array(c->data, "dx", nin, false);
    check(v, "dx", b->dx, ref, nin);
    free(ref);
    for (int i = 0, g = 0; i < l->nparams; i++) {
        if (l->params[i].buffer)
            continue;
        char name[16];
        snprintf(name, sizeof name, "g%d", g++);
        ref = read_array(c->data, name, nn_numel(l->params[i].shape), false);
        check(v, l->params[i].name, b->grad[i], ref, nn_numel(l->params[i].shape));
        free(ref);
    }
    if (!l->ops->update_buffers)
        return true;
    l->ops->update_buffers(l);
    for (int i = 0; i < l->nparams; i++) {
        if (!l->params[i].buffer)
            continue;
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        ref = read_array(c->data, name, nn_numel(l->params[i].shape), false);
        check(v, l->params[i].name, b->value[i], ref, nn_numel(l->params[i].shape));
        free(ref);
    }
    if ((ref = read_array(c->data, "y_eval", nout, true))) {
        /* Evaluation either way: no info, or info with training off. */
        l->ops->forward(l, NULL, n, b->x, b->y);
        check(v, "y_eval", b->y, ref, nout);
        memset(b->y, 0, nout * sizeof *b->y);
        info.training = false;
        l->ops->forward(l, &info, n, b->x, b->y);
        check(v, "y_eval_info", b->y, ref, nout);
        free(ref);
    }
    return l->status == ODY_OK;
}

/* Run one case: 1 passed, 0 failed, -1 skipped (kind not in the table). */
static int run_case(ody_ctx *ctx, const test_case *c)
{
    const ody_layer_kind *kind = ody_layer_kind_find(c->kind);
    if (!kind) {
        printf("SKIP %-44s layer kind %s is not in the layer table (src/nn/registry.c)\n", c->name, c->kind);
        return -1;
    }
    ody_layer_spec spec;
    ody_layer *l = NULL;
    if (!make_spec(ctx, kind, c, &spec)) {
        printf("FAIL %-44s its spec (above)\n", c->name);
        return 0;
    }
    if (kind->create(ctx, &spec, c->in, &l) != ODY_OK) {
        printf("FAIL %-44s create: %s\n", c->name, ody_ctx_error(ctx));
        return 0;
    }
    case_buffers b = {0};
    verdict v = {.worst = -1.0};
    bind_params(l, c, &b);
    bool ran = prepare(ctx, l, c->n, &b) && run_layer(l, c, &b, &v);
    if (!ran)
        printf("FAIL %-44s the layer failed: %s\n", c->name, ody_ctx_error(ctx));
    else
        printf("%s %-44s worst %.2e (%s)%s%s\n", v.failed ? "FAIL" : "ok  ", c->name, v.worst, v.worst_what,
               v.failed ? ":" : "", v.failed ? v.report : "");
    nn_layer_free(ctx, l);
    case_free(&b);
    return ran && !v.failed;
}

/* ------------------------------------------------------------------- main */

static int run_manifest(ody_ctx *ctx)
{
    char path[512], line[LINE_MAX_CHARS];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "torch_layers: cannot open %s\n", path);
        return 2;
    }
    int passed = 0, failed = 0, skipped = 0;
    while (fgets(line, sizeof line, f)) {
        test_case c;
        if (line[0] == '\n' || line[0] == '#')
            continue;
        if (!parse_case(line, &c)) {
            fprintf(stderr, "torch_layers: %s: a line it cannot read\n", path);
            fclose(f);
            return 2;
        }
        int r = run_case(ctx, &c);
        passed += r == 1;
        failed += r == 0;
        skipped += r < 0;
    }
    fclose(f);
    const char *isa = getenv("ODY_CPU_ISA");
    printf("torch_layers: %d cases within %.0e of PyTorch, %d failed, %d skipped (kernels: %s)\n", passed, TOL,
           failed, skipped, isa && *isa ? isa : "the best this CPU has");
    return failed || passed == 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rc = 2;
    ody_ctx *ctx = NULL;
    if (argc != 2)
        fprintf(stderr, "usage: torch_layers_check DIR (written by tests/torch/torch_layers.py)\n");
    else if (ody_ctx_create(&ctx, MPI_COMM_WORLD) != ODY_OK)
        fprintf(stderr, "torch_layers: no context\n");
    else {
        ctx->log_level = ODY_LOG_WARN;
        dir = argv[1];
        rc = run_manifest(ctx);
    }
    ody_ctx_destroy(ctx);
    MPI_Finalize();
    return rc;
}

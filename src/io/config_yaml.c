/*
 * io: the resolved config as YAML (--print-config, the run directory's
 * config.yaml, the text ody_config_resolve broadcasts). Every schema row in
 * schema order; values written so that parsing the text gives the same
 * ody_config bit for bit: doubles in the shortest form that reads back
 * exactly, strings quoted where YAML would read them as something else.
 */
#include "io/io_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A growing text buffer; after a failed allocation it stops growing and remembers. */
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} text_buf;

static void put(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text_buf *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->failed || n < 0) {
        t->failed = true;
        return;
    }
    size_t need = t->len + (size_t)n + 1;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(t->data, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* The shortest %g form that reads back as v, with ".0" on whole numbers. */
static const char *format_double(double v, char *out, size_t len)
{
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(out, len, "%.*g", precision, v);
        if (strtod(out, NULL) == v)
            break;
    }
    if (!strpbrk(out, ".e"))
        strncat(out, ".0", len - strlen(out) - 1);
    return out;
}

/* Whether s can be written without quotes and still reads back as this string. */
static bool plain_safe(const char *s)
{
    static const char *const special[] = {"true", "false", "yes", "no", "on",  "off",
                                          "y",    "n",     "null", "~", NULL};
    if (!isalpha((unsigned char)s[0]) && s[0] != '_' && s[0] != '/')
        return false;
    for (const char *c = s; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("_./-", *c))
            return false;
    for (int i = 0; special[i]; i++)
        if (strcasecmp(s, special[i]) == 0)
            return false;
    return true;
}

static void put_string(text_buf *t, const char *s)
{
    if (plain_safe(s)) {
        put(t, "%s", s);
        return;
    }
    put(t, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            put(t, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            put(t, "\\x%02x", *c);
        else
            put(t, "%c", *c);
    }
    put(t, "\"");
}

static void put_int_list(text_buf *t, const int64_t *values, int count)
{
    put(t, "[");
    for (int i = 0; i < count; i++)
        put(t, "%s%" PRId64, i > 0 ? ", " : "", values[i]);
    put(t, "]");
}

/* One layer as a flow mapping, every argument written: {type: conv2d, out_channels: 6, ...}. */
static void put_layer(text_buf *t, const ody_layer_spec *spec)
{
    const ody_layer_kind *kind = ody_layer_kind_find(spec->kind);
    char num[40];
    put(t, "{type: ");
    put_string(t, spec->kind);
    for (int a = 0; kind && a < kind->nargs; a++) {
        double v = spec->args[a];
        if (!isfinite(v)) /* a required argument never set: null, which parsing rejects */
            put(t, ", %s: null", kind->args[a].key);
        else if (kind->args[a].integer)
            put(t, ", %s: %" PRId64, kind->args[a].key, (int64_t)v);
        else
            put(t, ", %s: %s", kind->args[a].key, format_double(v, num, sizeof num));
    }
    if (spec->init != ODY_INIT_AUTO)
        put(t, ", init: %s", ody_cfg_init_name(spec->init));
    put(t, "}");
}

/*
 * model.layers as a block list of flow mappings; a residual block (its
 * repeats already written out as blocks) with its layers inline:
 *     - {type: conv2d, out_channels: 6, kernel_size: 5, stride: 1, padding: 2}
 *     - {type: residual, shortcut: auto, activation: relu, layers: [{...}, {...}]}
 */
static void put_layers(text_buf *t, const ody_cfg_row *row, const ody_config *cfg)
{
    const ody_layer_spec *specs = (const void *)((const char *)cfg + row->offset);
    int count = *(const int *)((const char *)cfg + row->count_offset);
    if (count == 0)
        put(t, " []");
    for (int i = 0; i < count; i++) {
        put(t, "\n    - ");
        if (strcmp(specs[i].kind, "residual") != 0) {
            put_layer(t, &specs[i]);
            continue;
        }
        const ody_layer_spec *head = &specs[i];
        int inner = (int)head->args[ODY_RESIDUAL_LAYERS];
        put(t, "{type: residual, shortcut: %s, activation: %s, layers: [",
            ody_cfg_shortcut_names[(int)head->args[ODY_RESIDUAL_SHORTCUT]],
            ody_cfg_block_activation_names[(int)head->args[ODY_RESIDUAL_ACTIVATION]]);
        for (int j = 1; j <= inner && i + j < count; j++) {
            put(t, j > 1 ? ", " : "");
            put_layer(t, &specs[i + j]);
        }
        put(t, "]}");
        i += inner;
    }
}

/* " value" (or a block for model.layers) after "  key:". */
static void put_value(text_buf *t, const ody_cfg_row *row, const ody_config *cfg)
{
    const void *p = (const char *)cfg + row->offset;
    char num[40];
    int64_t values[64];
    int count = 0;
    if (row->type != ODY_CFG_LAYERS)
        put(t, " ");
    switch (row->type) {
    case ODY_CFG_INT:
        put(t, "%" PRId64, row->size == sizeof(int) ? *(const int *)p : *(const int64_t *)p);
        break;
    case ODY_CFG_FLOAT:
        put(t, "%s", format_double(*(const double *)p, num, sizeof num));
        break;
    case ODY_CFG_BOOL:
        put(t, "%s", *(const bool *)p ? "true" : "false");
        break;
    case ODY_CFG_STRING:
    case ODY_CFG_ENUM:
        put_string(t, row->size > 0 ? (const char *)p : row->def);
        break;
    case ODY_CFG_INIT:
        put(t, "%s", ody_cfg_init_name(*(const ody_init *)p));
        break;
    case ODY_CFG_INT_LIST:
        count = *(const int *)((const char *)cfg + row->count_offset);
        for (int i = 0; i < count && i < 64; i++)
            values[i] = ((const int *)p)[i];
        put_int_list(t, values, count);
        break;
    case ODY_CFG_SHAPE:
        put_int_list(t, ((const ody_shape *)p)->dims, ((const ody_shape *)p)->ndim);
        break;
    case ODY_CFG_LAYERS:
        put_layers(t, row, cfg);
        break;
    }
}

ody_status ody_config_to_yaml(ody_ctx *ctx, const ody_config *cfg, char **text)
{
    int nrows = 0;
    const ody_cfg_row *rows = ody_cfg_schema(&nrows);
    text_buf t = {0};
    *text = NULL;
    put(&t, "# odyssey-dist resolved config\n");
    for (int i = 0; i < nrows; i++) {
        if (i == 0 || strcmp(rows[i].section, rows[i - 1].section) != 0)
            put(&t, "%s%s:\n", i > 0 ? "\n" : "", rows[i].section);
        put(&t, "  %s:", rows[i].key);
        put_value(&t, &rows[i], cfg);
        put(&t, "\n");
    }
    if (t.failed) {
        free(t.data);
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory writing the config as YAML");
    }
    *text = t.data;
    return ODY_OK;
}

/*
 * io: reading config values. libyaml's document API gives nodes with
 * their line and column; each node is checked against its schema row
 * (type, range, allowed values) and stored into ody_config. Messages name
 * the place ("FILE:LINE:COL" or "command line: ARG"), the key and what is
 * wrong, on one line.
 */
#include "io/io_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- messages */

/*
 * Fail with "WHERE: PATH: WHAT". WHERE is the node's FILE:LINE:COL, or
 * "command line: ARG" for an override, whose ARG already names the key
 * (so PATH is left out when it is just that key).
 */
static ody_status fail_at(const ody_cfg_reader *r, const yaml_node_t *node, const char *path,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static ody_status fail_at(const ody_cfg_reader *r, const yaml_node_t *node, const char *path,
                          const char *fmt, ...)
{
    char what[ODY_ERRMSG_MAX], where[ODY_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (r->arg)
        snprintf(where, sizeof where, "command line: %s", r->arg);
    else if (node)
        snprintf(where, sizeof where, "%s:%zu:%zu", r->source, node->start_mark.line + 1,
                 node->start_mark.column + 1);
    else
        snprintf(where, sizeof where, "%s", r->source);
    bool show_path = path && !(r->arg_path && strcmp(path, r->arg_path) == 0);
    return ody_fail(r->ctx, ODY_ERR_CONFIG, "%s: %s%s%s", where, show_path ? path : "",
                    show_path ? ": " : "", what);
}

static const char *text_of(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: the key is written with no value. */
static bool is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = text_of(node);
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

/* What a node is, for "got ...": 'text', a list or a mapping. */
static const char *describe(const yaml_node_t *node, char *out, size_t len)
{
    if (node->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (is_null(node))
        return "nothing";
    snprintf(out, len, "'%s'", text_of(node));
    return out;
}

static ody_status expected(const ody_cfg_reader *r, const yaml_node_t *node, const char *path,
                           const char *what)
{
    char buf[ODY_ERRMSG_MAX / 2];
    return fail_at(r, node, path, "expected %s, got %s", what, describe(node, buf, sizeof buf));
}

static ody_status out_of_range(const ody_cfg_reader *r, const yaml_node_t *node, const char *path,
                               const ody_cfg_range *range)
{
    char text[128];
    return fail_at(r, node, path, "%s is out of range (must be %s)", text_of(node),
                   ody_cfg_range_text(range, text, sizeof text));
}

/* ----------------------------------------------------------------- scalars */

typedef enum { NUMBER_OK, NUMBER_BAD, NUMBER_TOO_BIG } number_result;

/* A whole decimal number: no spaces, no trailing junk, no 0x or octal. */
static number_result parse_int(const char *s, int64_t *out)
{
    if (!*s || s[strspn(s, "+-0123456789")] != '\0')
        return NUMBER_BAD;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end)
        return NUMBER_BAD;
    if (errno == ERANGE)
        return NUMBER_TOO_BIG;
    *out = v;
    return NUMBER_OK;
}

/* A finite decimal number (no inf, nan or hex). */
static number_result parse_float(const char *s, double *out)
{
    if (!*s || s[strspn(s, "+-.0123456789eE")] != '\0')
        return NUMBER_BAD;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end)
        return NUMBER_BAD;
    if (errno == ERANGE || !isfinite(v))
        return NUMBER_TOO_BIG;
    *out = v;
    return NUMBER_OK;
}

/* YAML 1.1 booleans, any case. */
static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
            *out = strcasecmp(s, yes[i]) == 0;
            return true;
        }
    }
    return false;
}

/*
 * A number in range: a whole one into *whole when whole is not NULL, else
 * any finite one into *real.
 */
static ody_status read_number(const ody_cfg_reader *r, const yaml_node_t *node, const char *path,
                              const ody_cfg_range *range, int64_t *whole, double *real)
{
    const char *what = whole ? "an integer" : "a number";
    if (node->type != YAML_SCALAR_NODE)
        return expected(r, node, path, what);
    number_result res = whole ? parse_int(text_of(node), whole) : parse_float(text_of(node), real);
    if (res == NUMBER_BAD)
        return expected(r, node, path, what);
    if (res == NUMBER_TOO_BIG || !ody_cfg_in_range(range, whole ? (double)*whole : *real))
        return out_of_range(r, node, path, range);
    return ODY_OK;
}

/* The index of the node's text in values (NULL-terminated). */
static ody_status read_choice(const ody_cfg_reader *r, const yaml_node_t *node, const char *path,
                               const char *const *values, int *index)
{
    if (node->type != YAML_SCALAR_NODE)
        return expected(r, node, path, "a name");
    for (int i = 0; values[i]; i++) {
        if (strcmp(values[i], text_of(node)) == 0) {
            *index = i;
            return ODY_OK;
        }
    }
    char list[512];
    return fail_at(r, node, path, "'%s' is not one of: %s", text_of(node),
                   ody_cfg_join(values, list, sizeof list));
}

/* A string into char[size]; a key with no value gives "". */
static ody_status read_string(const ody_cfg_reader *r, const yaml_node_t *node, const char *path,
                              char *out, size_t size)
{
    if (node->type != YAML_SCALAR_NODE)
        return expected(r, node, path, "a string");
    const char *s = is_null(node) ? "" : text_of(node);
    size_t n = strlen(s);
    if (n >= size)
        return fail_at(r, node, path, "'%.40s...' is too long (at most %zu characters)", s,
                       size - 1);
    memset(out, 0, size);
    memcpy(out, s, n);
    return ODY_OK;
}

static void *field(ody_config *cfg, const ody_cfg_row *row) { return (char *)cfg + row->offset; }

/* An int-typed row is an int64_t or (model.num_classes) an int; its range keeps it in int. */
static void store_int(void *p, size_t size, int64_t v)
{
    if (size == sizeof(int))
        *(int *)p = (int)v;
    else
        *(int64_t *)p = v;
}

static ody_status apply_scalar(const ody_cfg_reader *r, const ody_cfg_row *row,
                               const yaml_node_t *node, const char *path, ody_config *cfg)
{
    ody_status st = ODY_OK;
    int64_t i = 0;
    double f = 0;
    int choice = 0;
    switch (row->type) {
    case ODY_CFG_INT:
        if ((st = read_number(r, node, path, &row->range, &i, NULL)) == ODY_OK)
            store_int(field(cfg, row), row->size, i);
        return st;
    case ODY_CFG_FLOAT:
        if ((st = read_number(r, node, path, &row->range, NULL, &f)) == ODY_OK)
            *(double *)field(cfg, row) = f;
        return st;
    case ODY_CFG_BOOL:
        if (node->type != YAML_SCALAR_NODE || !parse_bool(text_of(node), field(cfg, row)))
            return expected(r, node, path, "true or false");
        return ODY_OK;
    case ODY_CFG_STRING:
        return read_string(r, node, path, field(cfg, row), row->size);
    case ODY_CFG_ENUM:
        st = read_choice(r, node, path, ody_cfg_values(row), &choice);
        if (st == ODY_OK && row->size > 0)
            st = read_string(r, node, path, field(cfg, row), row->size);
        return st;
    case ODY_CFG_INIT:
        if ((st = read_choice(r, node, path, ody_cfg_values(row), &choice)) == ODY_OK)
            *(ody_init *)field(cfg, row) = (ody_init)choice;
        return st;
    default:
        return ody_fail(r->ctx, ODY_ERR_INTERNAL, "%s: not a scalar row", path);
    }
}

/* ------------------------------------------------------------------- lists */

static int list_length(const yaml_node_t *seq)
{
    return (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

/* Item i of a sequence; item_path receives "PATH[i]" for messages. */
static yaml_node_t *list_item(yaml_document_t *doc, const yaml_node_t *seq, int i,
                              const char *path, char *item_path, size_t len)
{
    snprintf(item_path, len, "%s[%d]", path, i);
    return yaml_document_get_node(doc, seq->data.sequence.items.start[i]);
}

/* Read a list of 1..max (or 0..max) integers in range into values[]. */
static ody_status read_int_list(const ody_cfg_reader *r, yaml_document_t *doc,
                                const yaml_node_t *node, const char *path, const ody_cfg_row *row,
                                int min_count, int max_count, int64_t *values, int *count)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return expected(r, node, path, "a list of integers");
    int n = list_length(node);
    if (n < min_count || n > max_count)
        return fail_at(r, node, path, "expected %d to %d values, got %d", min_count, max_count, n);
    for (int i = 0; i < n; i++) {
        char item_path[160];
        yaml_node_t *item = list_item(doc, node, i, path, item_path, sizeof item_path);
        ody_status st = read_number(r, item, item_path, &row->range, &values[i], NULL);
        if (st != ODY_OK)
            return st;
    }
    *count = n;
    return ODY_OK;
}

static ody_status apply_list(const ody_cfg_reader *r, yaml_document_t *doc, const ody_cfg_row *row,
                             const yaml_node_t *node, const char *path, ody_config *cfg)
{
    enum { MAX_VALUES = 64 };
    int64_t values[MAX_VALUES];
    int count = 0;
    if (row->type == ODY_CFG_SHAPE) {
        ody_status st = read_int_list(r, doc, node, path, row, 1, 3, values, &count);
        if (st != ODY_OK)
            return st;
        ody_shape *shape = field(cfg, row);
        memset(shape, 0, sizeof *shape);
        shape->ndim = count;
        for (int i = 0; i < count; i++)
            shape->dims[i] = values[i];
        return ODY_OK;
    }
    int capacity = (int)(row->size / sizeof(int));
    if (capacity > MAX_VALUES)
        capacity = MAX_VALUES;
    ody_status st = read_int_list(r, doc, node, path, row, 0, capacity, values, &count);
    if (st != ODY_OK)
        return st;
    int *out = field(cfg, row);
    memset(out, 0, row->size);
    for (int i = 0; i < count; i++)
        out[i] = (int)values[i];
    *(int *)((char *)cfg + row->count_offset) = count;
    return ODY_OK;
}

/*
 * Check that a mapping's keys are names and unique. noun and in make the
 * message: "duplicate key 'epochs' in section 'training' (first at 3:3)".
 */
static ody_status check_keys(const ody_cfg_reader *r, yaml_document_t *doc,
                              const yaml_node_t *map, const char *path, const char *noun,
                              const char *in)
{
    char buf[256];
    const yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    for (const yaml_node_pair_t *p = pairs; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        if (key->type != YAML_SCALAR_NODE)
            return fail_at(r, key, path, "expected a %s name, got %s", noun,
                           describe(key, buf, sizeof buf));
        for (const yaml_node_pair_t *q = pairs; q < p; q++) {
            yaml_node_t *first = yaml_document_get_node(doc, q->key);
            if (strcmp(text_of(first), text_of(key)) == 0)
                return fail_at(r, key, path, "duplicate %s '%s'%s (first at %zu:%zu)", noun,
                               text_of(key), in, first->start_mark.line + 1,
                               first->start_mark.column + 1);
        }
    }
    return ODY_OK;
}

/* ------------------------------------------------------------------ layers */

/* The mapping's value for key, or NULL. */
static yaml_node_t *lookup(yaml_document_t *doc, const yaml_node_t *map, const char *key)
{
    const yaml_node_pair_t *end = map->data.mapping.pairs.top;
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < end; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(text_of(k), key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

/* "conv2d, maxpool2d, ..." */
static const char *kind_names(char *out, size_t len)
{
    int n = 0;
    const ody_layer_kind *kinds = ody_layer_kinds(&n);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && used < len; i++) {
        int w = snprintf(out + used, len - used, "%s%s", i ? ", " : "", kinds[i].kind);
        used += w > 0 ? (size_t)w : 0;
    }
    return out;
}

/* The layer kind a mapping's 'type' names. */
static ody_status read_kind(const ody_cfg_reader *r, yaml_document_t *doc, const yaml_node_t *map,
                            const char *path, const ody_layer_kind **kind)
{
    char kinds[512];
    yaml_node_t *type = lookup(doc, map, "type");
    if (!type)
        return fail_at(r, map, path, "missing 'type' (one of: %s)",
                       kind_names(kinds, sizeof kinds));
    if (type->type != YAML_SCALAR_NODE)
        return expected(r, type, path, "a layer type");
    if (!(*kind = ody_layer_kind_find(text_of(type))))
        return fail_at(r, type, path, "unknown layer type '%s' (one of: %s)", text_of(type),
                       kind_names(kinds, sizeof kinds));
    return ODY_OK;
}

static ody_status unknown_argument(const ody_cfg_reader *r, const yaml_node_t *key,
                                   const char *path, const ody_layer_kind *kind)
{
    const char *names[ODY_LAYER_MAX_ARGS + 2] = {NULL};
    for (int i = 0; i < kind->nargs; i++)
        names[i] = kind->args[i].key;
    names[kind->nargs] = "init";
    ody_cfg_suggestion s;
    ody_cfg_suggest_init(&s, text_of(key));
    for (int i = 0; names[i]; i++)
        ody_cfg_suggest_offer(&s, NULL, names[i]);
    char hint[160], list[256];
    if (s.best[0])
        return fail_at(r, key, path, "unknown argument '%s' for %s%s", text_of(key), kind->kind,
                       ody_cfg_suggest_text(&s, hint, sizeof hint));
    return fail_at(r, key, path, "unknown argument '%s' for %s (it takes: %s)", text_of(key),
                   kind->kind, ody_cfg_join(names, list, sizeof list));
}

/* One argument's value: a whole number where the kind says so, in the kind's range. */
static ody_status read_argument(const ody_cfg_reader *r, const ody_layer_arg *arg,
                                const yaml_node_t *node, const char *layer_path, double *out)
{
    char path[224];
    snprintf(path, sizeof path, "%s.%s", layer_path, arg->key);
    ody_cfg_range range = {arg->min, arg->max, false, false};
    int64_t whole = 0;
    ody_status st = read_number(r, node, path, &range, arg->integer ? &whole : NULL, out);
    if (st == ODY_OK && arg->integer)
        *out = (double)whole;
    return st;
}

/* One entry of model.layers: {type: KIND, ARG: value, ..., init: SCHEME}. */
static ody_status read_layer(const ody_cfg_reader *r, yaml_document_t *doc, const yaml_node_t *map,
                             const char *path, ody_layer_spec *spec)
{
    const ody_layer_kind *kind = NULL;
    if (map->type != YAML_MAPPING_NODE)
        return expected(r, map, path, "a mapping {type: KIND, ...}");
    ody_status st = check_keys(r, doc, map, path, "argument", "");
    if (st == ODY_OK)
        st = read_kind(r, doc, map, path, &kind);
    if (st == ODY_OK)
        st = ody_layer_spec_default(r->ctx, kind->kind, spec);
    spec->line = (int)map->start_mark.line + 1;
    unsigned given = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         st == ODY_OK && p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        yaml_node_t *value = yaml_document_get_node(doc, p->value);
        int i = 0;
        while (i < kind->nargs && strcmp(kind->args[i].key, text_of(key)) != 0)
            i++;
        if (i < kind->nargs) {
            st = read_argument(r, &kind->args[i], value, path, &spec->args[i]);
            given |= 1u << i;
        } else if (strcmp(text_of(key), "init") == 0) {
            int choice = 0;
            char init_path[224];
            snprintf(init_path, sizeof init_path, "%s.init", path);
            st = read_choice(r, value, init_path, ody_cfg_init_names, &choice);
            spec->init = (ody_init)choice;
        } else if (strcmp(text_of(key), "type") != 0) {
            st = unknown_argument(r, key, path, kind);
        }
    }
    for (int i = 0; st == ODY_OK && i < kind->nargs; i++)
        if (kind->args[i].required && !(given & (1u << i)))
            st = fail_at(r, map, path, "%s needs '%s' (%s)", kind->kind, kind->args[i].key,
                         kind->args[i].doc);
    return st;
}

/* A list of layers into specs[*n..capacity) (a residual block takes 1 + its layers, per repeat). */
static ody_status read_layer_list(const ody_cfg_reader *r, yaml_document_t *doc, const yaml_node_t *node,
                                  const char *path, bool in_block, ody_layer_spec *specs, int capacity, int *n);

const char *const ody_cfg_shortcut_names[] = {[ODY_SHORTCUT_AUTO] = "auto", [ODY_SHORTCUT_IDENTITY] = "identity",
                                              [ODY_SHORTCUT_PROJECTION] = "projection", NULL};
const char *const ody_cfg_block_activation_names[] = {[ODY_RESIDUAL_NONE] = "none", [ODY_RESIDUAL_RELU] = "relu",
                                                      NULL};

/*
 * {type: residual, layers: [...], shortcut: auto|identity|projection,
 * activation: relu|none, repeat: N}: a header spec and the block's layers,
 * repeat times.
 */
static ody_status read_residual(const ody_cfg_reader *r, yaml_document_t *doc, const yaml_node_t *map,
                                const char *path, ody_layer_spec *specs, int capacity, int *n)
{
    static const char *const keys[] = {"type", "layers", "shortcut", "activation", "repeat", NULL};
    int shortcut = ODY_SHORTCUT_AUTO, activation = ODY_RESIDUAL_RELU;
    int64_t repeat = 1;
    const yaml_node_t *layers = NULL;
    char sub[224];
    ody_status st = ODY_OK;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; st == ODY_OK && p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key), *value = yaml_document_get_node(doc, p->value);
        const char *k = text_of(key);
        snprintf(sub, sizeof sub, "%s.%s", path, k);
        if (strcmp(k, "layers") == 0) {
            layers = value;
        } else if (strcmp(k, "shortcut") == 0) {
            st = read_choice(r, value, sub, ody_cfg_shortcut_names, &shortcut);
        } else if (strcmp(k, "activation") == 0) {
            st = read_choice(r, value, sub, ody_cfg_block_activation_names, &activation);
        } else if (strcmp(k, "repeat") == 0) {
            ody_cfg_range range = {1, ODY_MODEL_MAX_LAYERS, false, false};
            st = read_number(r, value, sub, &range, &repeat, NULL);
        } else if (strcmp(k, "type") != 0) {
            char list[128];
            st = fail_at(r, key, path, "unknown key '%s' for a residual block (it takes: %s)", k,
                         ody_cfg_join(keys + 1, list, sizeof list));
        }
    }
    if (st == ODY_OK && !layers)
        st = fail_at(r, map, path, "a residual block needs 'layers' (the list of its layers)");
    for (int64_t copy = 0; st == ODY_OK && copy < repeat; copy++) {
        if (*n >= capacity)
            return fail_at(r, map, path, "model.layers holds at most %d entries (a residual block takes one "
                           "plus its layers, per repeat)", capacity);
        ody_layer_spec *head = &specs[(*n)++];
        memset(head, 0, sizeof *head);
        snprintf(head->kind, sizeof head->kind, "residual");
        head->line = (int)map->start_mark.line + 1;
        head->args[ODY_RESIDUAL_SHORTCUT] = shortcut;
        head->args[ODY_RESIDUAL_ACTIVATION] = activation;
        head->args[ODY_RESIDUAL_CONV_ALGORITHM] = ODY_CONV_AUTO;
        int first = *n;
        snprintf(sub, sizeof sub, "%s.layers", path);
        st = read_layer_list(r, doc, layers, sub, true, specs, capacity, n);
        head->args[ODY_RESIDUAL_LAYERS] = *n - first;
    }
    return st;
}

static ody_status read_layer_list(const ody_cfg_reader *r, yaml_document_t *doc, const yaml_node_t *node,
                                  const char *path, bool in_block, ody_layer_spec *specs, int capacity, int *n)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return expected(r, node, path, "a list of layers");
    if (in_block && list_length(node) == 0)
        return fail_at(r, node, path, "a residual block needs at least one layer");
    for (int i = 0; i < list_length(node); i++) {
        char item_path[192];
        yaml_node_t *item = list_item(doc, node, i, path, item_path, sizeof item_path);
        yaml_node_t *type = item->type == YAML_MAPPING_NODE ? lookup(doc, item, "type") : NULL;
        bool residual = type && type->type == YAML_SCALAR_NODE && strcmp(text_of(type), "residual") == 0;
        ody_status st;
        if (residual && in_block)
            st = fail_at(r, item, item_path, "a residual block cannot hold another residual block");
        else if (residual)
            st = read_residual(r, doc, item, item_path, specs, capacity, n);
        else if (*n >= capacity)
            st = fail_at(r, item, item_path, "model.layers holds at most %d entries", capacity);
        else
            st = read_layer(r, doc, item, item_path, &specs[(*n)++]);
        if (st != ODY_OK)
            return st;
    }
    return ODY_OK;
}

static ody_status apply_layers(const ody_cfg_reader *r, yaml_document_t *doc,
                               const ody_cfg_row *row, const yaml_node_t *node, const char *path,
                               ody_config *cfg)
{
    int capacity = (int)(row->size / sizeof(ody_layer_spec)), n = 0;
    if (node->type == YAML_SEQUENCE_NODE && list_length(node) > capacity)
        return fail_at(r, node, path, "expected at most %d layers, got %d", capacity, list_length(node));
    ody_layer_spec *specs = field(cfg, row);
    memset(specs, 0, row->size);
    ody_status st = read_layer_list(r, doc, node, path, false, specs, capacity, &n);
    if (st == ODY_OK)
        *(int *)((char *)cfg + row->count_offset) = n;
    return st;
}

/* ------------------------------------------------------------- the document */

static ody_status apply_node(const ody_cfg_reader *r, yaml_document_t *doc, const ody_cfg_row *row,
                             const yaml_node_t *node, ody_config *cfg)
{
    char path[96];
    snprintf(path, sizeof path, "%s.%s", row->section, row->key);
    switch (row->type) {
    case ODY_CFG_INT_LIST:
    case ODY_CFG_SHAPE:
        return apply_list(r, doc, row, node, path, cfg);
    case ODY_CFG_LAYERS:
        return apply_layers(r, doc, row, node, path, cfg);
    default:
        return apply_scalar(r, row, node, path, cfg);
    }
}

static ody_status unknown_key(const ody_cfg_reader *r, const yaml_node_t *at, const char *section,
                              const char *key)
{
    char hint[160];
    return fail_at(r, at, NULL, "unknown key '%s' in section '%s'%s", key, section,
                   ody_cfg_suggest_key(section, key, hint, sizeof hint));
}

static ody_status unknown_section(const ody_cfg_reader *r, const yaml_node_t *at,
                                  const char *section)
{
    char hint[160];
    return fail_at(r, at, NULL, "unknown section '%s'%s", section,
                   ody_cfg_suggest_section(section, hint, sizeof hint));
}

static ody_status apply_section(const ody_cfg_reader *r, yaml_document_t *doc, const char *section,
                                const yaml_node_t *map, ody_config *cfg)
{
    char in[96];
    snprintf(in, sizeof in, " in section '%s'", section);
    ody_status st = check_keys(r, doc, map, NULL, "key", in);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         st == ODY_OK && p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        const ody_cfg_row *row = ody_cfg_find(section, text_of(key));
        if (!row)
            return unknown_key(r, key, section, text_of(key));
        st = apply_node(r, doc, row, yaml_document_get_node(doc, p->value), cfg);
    }
    return st;
}

ody_status ody_cfg_apply_root(const ody_cfg_reader *r, yaml_document_t *doc, yaml_node_t *root,
                              ody_config *cfg)
{
    if (root->type != YAML_MAPPING_NODE)
        return expected(r, root, NULL, "a mapping of sections (model:, training:, ...)");
    ody_status st = check_keys(r, doc, root, NULL, "section", "");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
         st == ODY_OK && p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        yaml_node_t *value = yaml_document_get_node(doc, p->value);
        const char *section = text_of(key);
        if (!ody_cfg_section_exists(section))
            return unknown_section(r, key, section);
        if (is_null(value)) /* "data:" with every key commented out */
            continue;
        if (value->type != YAML_MAPPING_NODE)
            return expected(r, value, section, "a mapping of keys");
        st = apply_section(r, doc, section, value, cfg);
    }
    return st;
}

/* The parser's problem as "WHERE: problem (context at LINE:COL)". */
static ody_status yaml_failure(const ody_cfg_reader *r, const yaml_parser_t *parser)
{
    const char *problem = parser->problem ? parser->problem : "malformed YAML";
    if (parser->error == YAML_MEMORY_ERROR)
        return ody_fail(r->ctx, ODY_ERR_NOMEM, "%s: out of memory parsing YAML", r->source);
    if (parser->error == YAML_READER_ERROR)
        return fail_at(r, NULL, NULL, "%s at byte %zu", problem, parser->problem_offset);
    yaml_node_t at = {.start_mark = parser->problem_mark};
    if (!parser->context)
        return fail_at(r, &at, NULL, "%s", problem);
    return fail_at(r, &at, NULL, "%s (%s at %zu:%zu)", problem, parser->context,
                   parser->context_mark.line + 1, parser->context_mark.column + 1);
}

ody_status ody_cfg_load_document(const ody_cfg_reader *r, const char *text, yaml_document_t *doc,
                                 yaml_node_t **root)
{
    yaml_parser_t parser;
    *root = NULL;
    if (!yaml_parser_initialize(&parser))
        return ody_fail(r->ctx, ODY_ERR_NOMEM, "out of memory starting the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    /* On failure the loader deletes the document itself. */
    if (!yaml_parser_load(&parser, doc)) {
        ody_status st = yaml_failure(r, &parser);
        yaml_parser_delete(&parser);
        return st;
    }
    ody_status st = ODY_OK;
    *root = yaml_document_get_root_node(doc);
    yaml_document_t extra;
    if (*root && !yaml_parser_load(&parser, &extra)) {
        st = yaml_failure(r, &parser);
    } else if (*root) {
        yaml_node_t *second = yaml_document_get_root_node(&extra);
        if (second)
            st = fail_at(r, second, NULL, "a config holds one YAML document; found a second");
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&parser);
    if (st != ODY_OK) {
        yaml_document_delete(doc);
        *root = NULL;
    }
    return st;
}

ody_status ody_cfg_apply_text(const ody_cfg_reader *r, const ody_cfg_row *row, const char *text,
                              ody_config *cfg)
{
    yaml_document_t doc;
    yaml_node_t *root = NULL;
    ody_status st = ody_cfg_load_document(r, text, &doc, &root);
    if (st != ODY_OK)
        return st;
    /* "key=" sets an empty value: a plain empty scalar, as "key:" in a file. */
    yaml_node_t empty = {.type = YAML_SCALAR_NODE,
                         .data.scalar = {.value = (yaml_char_t *)"", .length = 0,
                                         .style = YAML_PLAIN_SCALAR_STYLE}};
    st = apply_node(r, &doc, row, root ? root : &empty, cfg);
    yaml_document_delete(&doc);
    return st;
}

ody_status ody_cfg_apply_override(ody_ctx *ctx, const char *arg, ody_config *cfg)
{
    ody_cfg_reader r = {.ctx = ctx, .source = "command line", .arg = arg};
    char section[64] = "", key[64] = "", hint[160];
    const char *eq = strchr(arg, '=');
    size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
    const char *dot = memchr(arg, '.', name_len);
    if (!eq || !dot || dot == arg || dot + 1 == eq) {
        snprintf(key, sizeof key, "%.*s", (int)(name_len < 63 ? name_len : 63), arg);
        return fail_at(&r, NULL, NULL, "expected section.key=value%s",
                       ody_cfg_suggest_section(key, hint, sizeof hint));
    }
    /* Names longer than any in the schema are simply unknown. */
    snprintf(section, sizeof section, "%.*s", (int)(dot - arg < 63 ? dot - arg : 63), arg);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1 < 63 ? eq - dot - 1 : 63), dot + 1);
    if (!ody_cfg_section_exists(section))
        return unknown_section(&r, NULL, section);
    const ody_cfg_row *row = ody_cfg_find(section, key);
    if (!row)
        return unknown_key(&r, NULL, section, key);
    char path[160];
    snprintf(path, sizeof path, "%s.%s", section, key);
    r.arg_path = path;
    return ody_cfg_apply_text(&r, row, eq + 1, cfg);
}

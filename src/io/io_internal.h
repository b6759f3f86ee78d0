/*
 * io internals shared by src/io/ only: the config schema table and the
 * helpers that read, write and document it. Public API: odyssey/io.h.
 *
 * One table (config_schema.c) drives everything a config key needs:
 * defaults, parsing and range checks (config_parse.c), the resolved YAML
 * (config_yaml.c) and the markdown reference. A new key is one new row.
 */
#ifndef ODY_IO_INTERNAL_H
#define ODY_IO_INTERNAL_H

#include <yaml.h>

#include "odyssey/io.h"

/* What a row's value is and how it is stored. */
typedef enum {
    ODY_CFG_INT,      /* int64_t or int (size says which), in range */
    ODY_CFG_FLOAT,    /* double, finite, in range; integers accepted */
    ODY_CFG_BOOL,     /* bool; true/false/yes/no/on/off, any case */
    ODY_CFG_STRING,   /* char[size]; too long is an error */
    ODY_CFG_ENUM,     /* char[size] holding one of values (size 0: checked, not stored) */
    ODY_CFG_INT_LIST, /* int[size / sizeof(int)] + int count at count_offset; each in range */
    ODY_CFG_SHAPE,    /* ody_shape from a list of 1 to 3 ints in range */
    ODY_CFG_INIT,     /* ody_init from its name (ody_cfg_init_names) */
    ODY_CFG_LAYERS    /* ody_layer_spec[] + int count: a list of {type: KIND, ARG: value, ...} */
} ody_cfg_type;

/* Allowed numeric range; an open end excludes its bound. */
typedef struct {
    double min, max; /* -INFINITY / INFINITY: unbounded */
    bool min_open, max_open;
} ody_cfg_range;

typedef struct {
    const char *section;
    const char *key;
    ody_cfg_type type;
    size_t offset;       /* of the value in ody_config */
    size_t size;         /* bytes of the value (0: enum checked but not stored) */
    size_t count_offset; /* INT_LIST, LAYERS: the int element count in ody_config */
    const char *def;     /* default, as YAML text */
    ody_cfg_range range; /* INT, FLOAT, and the elements of INT_LIST and SHAPE */
    const char *const *values;              /* ENUM, INIT: NULL-terminated */
    const char *const *(*values_fn)(void);  /* ENUM: the values when known only at run time */
    const char *doc;     /* one line, markdown-safe */
} ody_cfg_row;

/* --------------------------------------------------- config_schema.c */

/* Every row, sections contiguous, in output order; *count receives their number. */
const ody_cfg_row *ody_cfg_schema(int *count);
/* The row section.key, or NULL. */
const ody_cfg_row *ody_cfg_find(const char *section, const char *key);
/* Whether any row belongs to section. */
bool ody_cfg_section_exists(const char *section);
/* A row's allowed values (ENUM, INIT), NULL-terminated; NULL for other types. */
const char *const *ody_cfg_values(const ody_cfg_row *row);
/* Names of ody_init values, indexed by ody_init, NULL-terminated. */
extern const char *const ody_cfg_init_names[];
/* A residual block's shortcut and activation names (indexed by ODY_SHORTCUT_*, ODY_RESIDUAL_NONE/RELU). */
extern const char *const ody_cfg_shortcut_names[];
extern const char *const ody_cfg_block_activation_names[];
/* The name of an init scheme ("auto"); "invalid" outside the enum. */
const char *ody_cfg_init_name(ody_init init);
/* Short name of a type for messages and the reference ("int", "list of int"). */
const char *ody_cfg_type_name(ody_cfg_type type);

/*
 * Did-you-mean: the closest candidate by edit distance, when close enough
 * to be a typo. Start with ody_cfg_suggest_init, offer every candidate
 * (prefix, when not NULL, is written before it: "optimizer.momentum"),
 * then ody_cfg_suggest_text gives " (did you mean 'X'?)" or "".
 */
typedef struct {
    const char *word;
    char best[96];
    int distance;
} ody_cfg_suggestion;
void ody_cfg_suggest_init(ody_cfg_suggestion *s, const char *word);
void ody_cfg_suggest_offer(ody_cfg_suggestion *s, const char *prefix, const char *candidate);
const char *ody_cfg_suggest_text(const ody_cfg_suggestion *s, char *out, size_t len);
/* Suggest section.key for an unknown key (in section, or the same key elsewhere). */
const char *ody_cfg_suggest_key(const char *section, const char *key, char *out, size_t len);
/* Suggest a section (or section.key for a key written at the top level). */
const char *ody_cfg_suggest_section(const char *section, char *out, size_t len);

/* ">= 1", "> 0 and <= 10" ("" for an unbounded range). */
const char *ody_cfg_range_text(const ody_cfg_range *range, char *out, size_t len);
bool ody_cfg_in_range(const ody_cfg_range *range, double v);
/* "a, b, c" of a NULL-terminated list. */
const char *ody_cfg_join(const char *const *values, char *out, size_t len);

/* ---------------------------------------------------- config_parse.c */

/*
 * Where values come from, for messages: a file (FILE:LINE:COL), a
 * command-line override ("command line: ARG") or a schema default.
 */
typedef struct {
    ody_ctx *ctx;
    const char *source;   /* file name in messages */
    const char *arg;      /* the override being applied, or NULL */
    const char *arg_path; /* "section.key" the override names (not repeated in messages) */
} ody_cfg_reader;

/*
 * Parse text as one YAML document (a second one is an error). On success
 * the caller deletes doc; *root is NULL for an empty text. On failure
 * there is nothing to delete.
 */
ody_status ody_cfg_load_document(const ody_cfg_reader *r, const char *text, yaml_document_t *doc,
                                 yaml_node_t **root);
/* Apply the sections of a top-level mapping to cfg. */
ody_status ody_cfg_apply_root(const ody_cfg_reader *r, yaml_document_t *doc, yaml_node_t *root,
                              ody_config *cfg);
/* Parse text (a YAML scalar or flow collection) as the value of row into cfg. */
ody_status ody_cfg_apply_text(const ody_cfg_reader *r, const ody_cfg_row *row, const char *text,
                              ody_config *cfg);
/* Apply one "section.key=value" command-line override. */
ody_status ody_cfg_apply_override(ody_ctx *ctx, const char *arg, ody_config *cfg);

#endif /* ODY_IO_INTERNAL_H */

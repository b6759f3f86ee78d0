/*
 * data, internal: what the files of src/data share and nothing else uses.
 *
 * Every data set kind is a struct whose first member is an ody_dataset
 * (so an ody_dataset * is also a pointer to the kind's struct); its
 * destroy op frees the struct with the size it was created with.
 *
 * Read ops are called through ody_dataset_read, which has already checked
 * that every index is in [0, ds->n) (ODY_ERR_DATA naming ds->source if
 * not), so a read op never reads outside its samples.
 */
#ifndef ODY_DATA_INTERNAL_H
#define ODY_DATA_INTERNAL_H

#include "odyssey/data.h"

/*
 * Allocate a zeroed data set object of `size` bytes (an ody_dataset first)
 * with ops and source filled in. The caller fills in the rest.
 */
ody_status ody_data_new(ody_ctx *ctx, size_t size, const ody_dataset_ops *ops, const char *source,
                        ody_dataset **out);

/*
 * Split base into two subsets that share it: *first gets base samples
 * order[0..n_first), *second order[n_first..n). On success the two subsets
 * own base together (the last one destroyed releases it); on failure base
 * is still the caller's.
 */
ody_status ody_subset_split(ody_ctx *ctx, ody_dataset *base, const int64_t *order, int64_t n_first,
                            ody_dataset **first, ody_dataset **second);

/*
 * The normalised value of every raw byte: table[v] = (v * scale - mean) / std,
 * the same float expression for every reader of uint8 pixels.
 */
void ody_normalize_table(ody_normalize norm, float table[256]);
/*
 * dst[p] = table[src[p]] for p < n, table ody_normalize_table's of norm:
 * computed as the expression 8 or 16 at a time where the CPU has AVX2 or
 * AVX-512 (each operation rounded as the table's: the same bits), looked
 * up elsewhere.
 */
void ody_normalize_bytes(ody_normalize norm, const float table[256], const uint8_t *src, size_t n, float *dst);

/* ODY_ERR_CONFIG naming `source` unless scale > 0 and std > 0. */
ody_status ody_normalize_check(ody_ctx *ctx, const char *source, ody_normalize norm);

#endif /* ODY_DATA_INTERNAL_H */

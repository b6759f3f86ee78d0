/* tensor: shapes and flat arenas. */
#include "odyssey/tensor.h"

#include <string.h>

static ody_shape shape_of(int ndim, const int64_t *dims)
{
    ody_shape s = {.ndim = ndim};
    for (int i = 0; i < ndim; i++)
        s.dims[i] = dims[i];
    return s;
}

ody_shape ody_shape1(int64_t d0) { return shape_of(1, (int64_t[]){d0}); }
ody_shape ody_shape2(int64_t d0, int64_t d1) { return shape_of(2, (int64_t[]){d0, d1}); }
ody_shape ody_shape3(int64_t d0, int64_t d1, int64_t d2) { return shape_of(3, (int64_t[]){d0, d1, d2}); }
ody_shape ody_shape4(int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    return shape_of(4, (int64_t[]){d0, d1, d2, d3});
}

int64_t ody_shape_numel(const ody_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= s->dims[i];
    return n;
}

bool ody_shape_equal(const ody_shape *a, const ody_shape *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

char *ody_shape_format(const ody_shape *s, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "x" : "", (long long)s->dims[i]);
    return buf;
}

ody_status ody_arena_create(ody_ctx *ctx, ody_arena *arena, size_t capacity, const char *what)
{
    memset(arena, 0, sizeof *arena);
    capacity = ody_arena_round(capacity);
    void *p;
    ody_status st = ody_alloc(ctx, capacity * sizeof(float), what, &p);
    if (st != ODY_OK)
        return st;
    arena->data = p;
    arena->capacity = capacity;
    return ODY_OK;
}

void ody_arena_destroy(ody_ctx *ctx, ody_arena *arena)
{
    ody_free(ctx, arena->data, arena->capacity * sizeof(float));
    memset(arena, 0, sizeof *arena);
}

size_t ody_arena_take(ody_arena *arena, size_t n)
{
    size_t need = ody_arena_round(n);
    if (arena->size + need > arena->capacity)
        return SIZE_MAX;
    size_t off = arena->size;
    arena->size += need;
    return off;
}

/*
 * comm: chunk stealing between the ranks of a node (deterministic mode).
 *
 * In deterministic mode a chunk's gradient has the same bits whichever
 * rank computes it, and the sum over chunks is exact, so who computes a
 * chunk is free. A synchronous step goes at the pace of its slowest rank:
 * on cores of unequal speed (a VM's vCPUs, a busy neighbour, turbo
 * differences) the fast ones wait at the barrier. Here each rank publishes
 * its share of the step in node shared memory, a slot per rank, with a
 * queue of its chunks; a rank takes its own chunks from the front of its
 * queue and, when it has none left, takes other ranks' chunks from the
 * back of theirs. Every chunk is taken exactly once, by one compare-and-
 * swap on its queue's word, so the sum (and the parameters) keep their
 * bits while the ranks finish together.
 *
 * A queue word packs (round, head, tail): a thief only takes from a queue
 * published for the same round (the caller's step number), so a slot
 * being refilled for the next step is never read: its owner refills it
 * only after the step's barrier, which every rank reaches only when no
 * chunk of the step is left, and publishes the new round after the data.
 */
#include "comm/comm_internal.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STEAL_ALIGN 64

struct ody_steal {
    MPI_Win win;
    int nranks, me;
    _Atomic uint64_t **word; /* (nranks) each rank's queue word */
    unsigned char **slot;    /* (nranks) each rank's slot */
};

static uint64_t pack(uint32_t round, uint32_t head, uint32_t tail)
{
    return (uint64_t)round << 32 | (uint64_t)(head & 0xffff) << 16 | (tail & 0xffff);
}
static uint32_t round_of(uint64_t w) { return (uint32_t)(w >> 32); }
static uint32_t head_of(uint64_t w) { return (uint32_t)(w >> 16) & 0xffff; }
static uint32_t tail_of(uint64_t w) { return (uint32_t)w & 0xffff; }

static size_t align_up(size_t x) { return (x + STEAL_ALIGN - 1) / STEAL_ALIGN * STEAL_ALIGN; }

ody_status ody_steal_create(ody_ctx *ctx, size_t slot_bytes, int max_chunks, ody_steal **out)
{
    *out = NULL;
    /* my part: the word on its own cache line, then the slot */
    size_t part = STEAL_ALIGN + align_up(slot_bytes);
    ody_steal *s = calloc(1, sizeof *s);
    if (s) {
        s->win = MPI_WIN_NULL;
        s->word = calloc((size_t)ctx->node_size, sizeof *s->word);
        s->slot = calloc((size_t)ctx->node_size, sizeof *s->slot);
    }
    /* Every rank takes the same path: agree on room, the chunk limit, one
     * rank per node everywhere, and every rank's allocation (before the
     * collective window). */
    int local[4] = {ody_shm_room_for(part * (size_t)ctx->node_size), max_chunks < 0xffff,
                    ctx->node_size == 1, s && s->word && s->slot};
    int all[4];
    ody_status st = ODY_OK;
    if (MPI_Allreduce(local, all, 4, MPI_INT, MPI_MIN, ctx->comm) != MPI_SUCCESS)
        st = ody_fail(ctx, ODY_ERR_MPI, "chunk stealing: agreeing on /dev/shm space failed");
    else if (!all[3])
        st = ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for chunk stealing on some rank");
    else if (!all[2] && (!all[0] || !all[1]))
        ody_log(ctx, ODY_LOG_INFO, "chunk stealing off: %s", !all[1]
                ? "too many chunks per step (at most 65534 per rank)"
                : "not enough room in /dev/shm on some node");
    if (st != ODY_OK || all[2] || !all[0] || !all[1]) {
        ody_steal_destroy(s);
        return st;
    }
    int good = ody_node_window(ctx, part, &s->win), all_good = 0;
    for (int r = 0; good && r < ctx->node_size; r++) {
        char *p = ody_node_window_part(s->win, r);
        good = p != NULL;
        s->word[r] = (_Atomic uint64_t *)p;
        s->slot[r] = (unsigned char *)p + STEAL_ALIGN;
    }
    if (good) /* an empty queue of round 0, which no step uses */
        atomic_store(s->word[ctx->node_rank], pack(0, 0, 0));
    if (MPI_Allreduce(&good, &all_good, 1, MPI_INT, MPI_MIN, ctx->comm) != MPI_SUCCESS ||
        !all_good) {
        ody_steal_destroy(s);
        return ody_fail(ctx, ODY_ERR_MPI, "chunk stealing: shared slots could not be set up");
    }
    /* every word is initialised before any rank publishes */
    if (MPI_Barrier(ctx->node_comm) != MPI_SUCCESS) {
        ody_steal_destroy(s);
        return ody_fail(ctx, ODY_ERR_MPI, "chunk stealing: node barrier failed");
    }
    s->nranks = ctx->node_size;
    s->me = ctx->node_rank;
    ody_log(ctx, ODY_LOG_INFO, "chunk stealing: the %d ranks of a node share each step's chunks",
            ctx->node_size);
    *out = s;
    return ODY_OK;
}

void ody_steal_destroy(ody_steal *s)
{
    if (!s)
        return;
    ody_node_window_free(&s->win);
    free(s->word);
    free(s->slot);
    free(s);
}

void *ody_steal_slot(ody_steal *s, int node_rank) { return s->slot[node_rank]; }

int ody_steal_me(const ody_steal *s) { return s->me; }

void ody_steal_publish(ody_steal *s, uint32_t round, int nchunks)
{
    atomic_store_explicit(s->word[s->me], pack(round, 0, (uint32_t)nchunks), memory_order_release);
}

/* Take a chunk from rank r's queue: the front for its owner, else the back. */
static bool take(ody_steal *s, int r, uint32_t round, int *index)
{
    _Atomic uint64_t *word = s->word[r];
    uint64_t w = atomic_load_explicit(word, memory_order_acquire);
    for (;;) {
        uint32_t head = head_of(w), tail = tail_of(w);
        if (round_of(w) != round || head >= tail)
            return false;
        bool own = r == s->me;
        uint64_t next = own ? pack(round, head + 1, tail) : pack(round, head, tail - 1);
        if (atomic_compare_exchange_weak_explicit(word, &w, next, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *index = (int)(own ? head : tail - 1);
            return true;
        }
    }
}

/* Chunks left in rank r's queue for round. */
static uint32_t left(const ody_steal *s, int r, uint32_t round)
{
    uint64_t w = atomic_load_explicit(s->word[r], memory_order_acquire);
    return round_of(w) == round && head_of(w) < tail_of(w) ? tail_of(w) - head_of(w) : 0;
}

bool ody_steal_claim(ody_steal *s, uint32_t round, int *owner, int *index)
{
    if (take(s, s->me, round, index)) {
        *owner = s->me;
        return true;
    }
    /* the rank with the most left, until one gives a chunk or none has any */
    for (;;) {
        int best = -1;
        uint32_t most = 0;
        for (int r = 0; r < s->nranks; r++) {
            uint32_t n = r == s->me ? 0 : left(s, r, round);
            if (n > most) {
                most = n;
                best = r;
            }
        }
        if (best < 0)
            return false;
        if (take(s, best, round, index)) {
            *owner = best;
            return true;
        }
    }
}

bool ody_steal_drained(const ody_steal *s, uint32_t round)
{
    for (int r = 0; r < s->nranks; r++)
        if (left(s, r, round) > 0)
            return false;
    return true;
}

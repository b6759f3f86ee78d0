/*
 * io: a checkpoint's large tensors written with O_DIRECT.
 *
 * A tensor of at least ODY_CKPT_DIRECT_MIN bytes gets its file space from
 * HDF5 at creation (aligned to ODY_CKPT_DIRECT_ALIGN by the file access
 * property list), and its bytes go to that space through a second
 * descriptor of the temporary file opened with O_DIRECT: straight from a
 * bounce buffer to the disk, past the page cache. Why:
 * - a checkpoint is written once and read, if ever, at a resume: through
 *   the page cache it would evict the data set and everything else a node
 *   caches, and every page of it must first be found and filled;
 * - the disk then sees large aligned writes, as dd's.
 * The tensor's bytes are copied into the bounce buffer a piece at a time
 * (O_DIRECT needs aligned memory; the model's arena is 64-byte aligned),
 * and the checksum (XXH3-64, streamed) is taken from the piece while it is
 * in the cache. The last bytes that do not fill an aligned block go
 * through HDF5's own (buffered) descriptor. HDF5 never writes the tensor's
 * space itself (no fill value), so the two descriptors never write the
 * same block; the commit's fsync makes both durable.
 *
 * Reading takes the same way back for any large contiguous tensor with a
 * checksum: aligned blocks into the bounce buffer, the tensor's bytes
 * copied out and summed with the file's checksum (ody_ckpt_checksum_kind:
 * the legacy one for format 2 files; the pieces summed are multiples of
 * 64 bytes but the last, as it needs, where XXH3 takes any). (The whole
 * file through the page cache would be read ahead into pages that are
 * thrown away once the model has its copy.)
 *
 * Where the file system refuses O_DIRECT (EINVAL at open), every tensor
 * goes through HDF5 as before.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include "io/ckpt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The bounce buffer: written from in one piece, read into in READ_SLOTS
 * pieces; and the piece checksummed while it is in the cache. */
#define READ_PIECE ((size_t)4 << 20)
#define READ_SLOTS 4
#define BOUNCE_BYTES (READ_PIECE * READ_SLOTS)
#define CHECKSUM_PIECE ((size_t)256 << 10)

void ody_ckpt_direct_open(ody_ckpt *ck)
{
    ck->direct_fd = ck->writing ? open(ck->tmp, O_WRONLY | O_DIRECT | O_CLOEXEC)
                                : open(ck->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
}

void ody_ckpt_direct_close(ody_ckpt *ck)
{
    if (ck->direct_fd >= 0)
        close(ck->direct_fd);
    ck->direct_fd = -1;
    free(ck->bounce);
    ck->bounce = NULL;
}

/* Write all n bytes at off through fd; 0 or an errno (ENOSPC for a write of 0). */
static int write_all(int fd, const unsigned char *p, size_t n, uint64_t off, size_t *done)
{
    *done = 0;
    while (*done < n) {
        ssize_t w = pwrite(fd, p + *done, n - *done, (off_t)(off + *done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        if (w == 0)
            return ENOSPC;
        *done += (size_t)w;
    }
    return 0;
}

int ody_ckpt_direct_write(ody_ckpt *ck, uint64_t addr, const void *data, size_t n,
                          uint64_t *checksum)
{
    const unsigned char *src = data;
    ody_checksum sum;
    ody_checksum64_init(&sum, ody_ckpt_checksum_kind(ck));
    if (!ck->bounce && posix_memalign((void **)&ck->bounce, ODY_CKPT_DIRECT_ALIGN, BOUNCE_BYTES))
        return ENOMEM;
    size_t aligned = n / ODY_CKPT_DIRECT_ALIGN * ODY_CKPT_DIRECT_ALIGN, at = 0;
    while (at < aligned) {
        size_t piece = aligned - at < BOUNCE_BYTES ? aligned - at : BOUNCE_BYTES;
        for (size_t c = 0; c < piece; c += CHECKSUM_PIECE) {
            size_t len = piece - c < CHECKSUM_PIECE ? piece - c : CHECKSUM_PIECE;
            memcpy(ck->bounce + c, src + at + c, len);
            ody_checksum64_update(&sum, ck->bounce + c, len);
        }
        bool direct = ck->direct_fd >= 0;
        size_t done = 0;
        int err = write_all(direct ? ck->direct_fd : *ck->fd, ck->bounce, piece, addr + at, &done);
        if (err && direct) {
            if (err == EINVAL) { /* other alignment wanted: buffered from now on */
                close(ck->direct_fd);
                ck->direct_fd = -1;
            }
            /* What is left of the piece goes buffered (after a short write its
             * offset is unaligned); a real failure says there why it cannot. */
            size_t rest = 0;
            err = write_all(*ck->fd, ck->bounce + done, piece - done, addr + at + done, &rest);
        }
        if (err)
            return err;
        at += piece;
    }
    size_t done;
    ody_checksum64_update(&sum, src + at, n - at);
    int err = write_all(*ck->fd, src + at, n - at, addr + at, &done);
    *checksum = ody_checksum64_final(&sum);
    return err;
}

/* Read up to n bytes at off through fd; the count read (short at the end
 * of the file), or -1 with errno set. */
static ssize_t read_all(int fd, unsigned char *p, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* A read-ahead thread fills READ_SLOTS pieces of the bounce buffer in
 * turn while the caller copies and sums the previous ones, so the disk
 * never waits for the copy. */
typedef struct {
    int fd;
    unsigned char *buf;
    uint64_t pos, end;             /* the aligned range, read piece by piece */
    ssize_t got[READ_SLOTS];       /* bytes read into each slot, or -1 */
    int err[READ_SLOTS];           /* errno of a failed read */
    bool full[READ_SLOTS];
    bool stop;                     /* the caller gives up: read no more */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} read_ahead;

static size_t piece_len(const read_ahead *ra, uint64_t at)
{
    return ra->end - at < READ_PIECE ? (size_t)(ra->end - at) : READ_PIECE;
}

static void *read_pieces(void *arg)
{
    read_ahead *ra = arg;
    for (uint64_t at = ra->pos, k = 0; at < ra->end; at += READ_PIECE, k++) {
        int slot = (int)(k % READ_SLOTS);
        pthread_mutex_lock(&ra->mu);
        while (ra->full[slot] && !ra->stop)
            pthread_cond_wait(&ra->cv, &ra->mu);
        bool stop = ra->stop;
        pthread_mutex_unlock(&ra->mu);
        if (stop)
            break;
        ssize_t got = read_all(ra->fd, ra->buf + (size_t)slot * READ_PIECE, piece_len(ra, at), at);
        int err = got < 0 ? errno : 0;
        pthread_mutex_lock(&ra->mu);
        ra->got[slot] = got;
        ra->err[slot] = err;
        ra->full[slot] = true;
        pthread_cond_broadcast(&ra->cv);
        pthread_mutex_unlock(&ra->mu);
        if (got < (ssize_t)piece_len(ra, at))
            break; /* an error or the end of the file: nothing after it */
    }
    return NULL;
}

int ody_ckpt_direct_read(ody_ckpt *ck, uint64_t addr, void *out, size_t n, uint64_t *checksum)
{
    unsigned char *dst = out;
    ody_checksum sum;
    ody_checksum64_init(&sum, ody_ckpt_checksum_kind(ck));
    if (!ck->bounce && posix_memalign((void **)&ck->bounce, ODY_CKPT_DIRECT_ALIGN, BOUNCE_BYTES))
        return ENOMEM;
    /* Whole aligned blocks from below addr to above addr + n; the bytes of
     * the tensor are copied out of each piece, and summed in whole checksum
     * blocks while they are in the cache (the rest waits for the next). */
    read_ahead ra = {.fd = ck->direct_fd, .buf = ck->bounce};
    ra.pos = addr / ODY_CKPT_DIRECT_ALIGN * ODY_CKPT_DIRECT_ALIGN;
    ra.end = (addr + n + ODY_CKPT_DIRECT_ALIGN - 1) / ODY_CKPT_DIRECT_ALIGN * ODY_CKPT_DIRECT_ALIGN;
    pthread_t thread;
    if (pthread_mutex_init(&ra.mu, NULL) != 0)
        return ENOMEM;
    if (pthread_cond_init(&ra.cv, NULL) != 0) {
        pthread_mutex_destroy(&ra.mu);
        return ENOMEM;
    }
    bool started = pthread_create(&thread, NULL, read_pieces, &ra) == 0;
    int rc = started ? 0 : ODY_CKPT_DIRECT_UNAVAILABLE;
    size_t copied = 0, summed = 0;
    for (uint64_t at = ra.pos, k = 0; rc == 0 && copied < n; at += READ_PIECE, k++) {
        int slot = (int)(k % READ_SLOTS);
        pthread_mutex_lock(&ra.mu);
        while (!ra.full[slot])
            pthread_cond_wait(&ra.cv, &ra.mu);
        ssize_t got = ra.got[slot];
        rc = ra.err[slot];
        pthread_mutex_unlock(&ra.mu);
        uint64_t from = addr + copied; /* the next tensor byte, inside this piece */
        if (rc == 0 && (got < 0 || (uint64_t)got <= from - at))
            rc = -1; /* the file ends before the tensor does */
        if (rc != 0)
            break;
        size_t len = (size_t)(at + (uint64_t)got - from);
        len = len < n - copied ? len : n - copied;
        memcpy(dst + copied, ra.buf + (size_t)slot * READ_PIECE + (from - at), len);
        copied += len;
        size_t whole = (copied - summed) / 64 * 64;
        ody_checksum64_update(&sum, dst + summed, whole);
        summed += whole;
        if (copied < n && (size_t)got < piece_len(&ra, at))
            rc = -1; /* the file ends before the tensor does (no more pieces come) */
        pthread_mutex_lock(&ra.mu);
        ra.full[slot] = false;
        pthread_cond_broadcast(&ra.cv);
        pthread_mutex_unlock(&ra.mu);
    }
    if (rc == EINVAL) { /* the file system wants other alignment: let HDF5 read, now and on */
        rc = ODY_CKPT_DIRECT_UNAVAILABLE;
        close(ck->direct_fd);
        ck->direct_fd = -1;
    }
    if (started) {
        pthread_mutex_lock(&ra.mu);
        ra.stop = true;
        pthread_cond_broadcast(&ra.cv);
        pthread_mutex_unlock(&ra.mu);
        pthread_join(thread, NULL);
    }
    pthread_cond_destroy(&ra.cv);
    pthread_mutex_destroy(&ra.mu);
    if (rc == 0) {
        ody_checksum64_update(&sum, dst + summed, n - summed);
        *checksum = ody_checksum64_final(&sum);
    }
    return rc;
}

/*
 * Checkpoint internals shared by ckpt_common.c, ckpt_write.c (writing) and
 * ckpt_read.c (opening, reading, verifying) only. Public API:
 * odyssey/io.h; the on-disk layout: checkpoints/README.md.
 *
 * Every public checkpoint call runs between ody_ckpt_quiet_begin and
 * ody_ckpt_quiet_end: HDF5 prints nothing, and the first HDF5 call that
 * fails in between leaves what its error stack said in ck->err, from which
 * ody_ckpt_fail_read/_write make one line naming the file and the object.
 */
#ifndef ODY_CHECKPOINT_INTERNAL_H
#define ODY_CHECKPOINT_INTERNAL_H

#include <hdf5.h>

#include "odyssey/io.h"

#define ODY_CKPT_PATH_MAX 1024
/*
 * Checksums (the layout: checkpoints/README.md). Format 3: every dataset has a
 * uint64 attribute ODY_CKPT_CHECKSUM, ody_checksum64 (XXH3-64) of its
 * data's little-endian bytes, and every attribute <name> of a group has a
 * uint64 companion "<name>" ODY_CKPT_VALUE_CHECKSUM, the checksum of its
 * value (ody_ckpt_value_sum). Format 2 (legacy): tensors only, with
 * ody_checksum64_legacy_v2. Format 1: none (Fletcher32 chunks).
 */
#define ODY_CKPT_CHECKSUM "checksum"
#define ODY_CKPT_VALUE_CHECKSUM ".checksum"

/* What HDF5's error stack said about the first failed call. */
typedef struct {
    bool set;        /* a call failed since quiet_begin */
    int sys_errno;   /* errno the file driver reported, 0 if none */
    bool checksum;   /* a checksum did not match */
    bool unsummed;   /* format 3: a dataset or attribute without its checksum */
    bool truncated;  /* the file is shorter than its superblock says */
    bool unfinished; /* the superblock says a writer still has the file open */
    char inner[160]; /* the innermost message */
} ody_ckpt_h5_error;

struct ody_ckpt {
    hid_t file;                        /* -1 once closed */
    bool writing;                      /* made by ody_ckpt_create, not yet renamed */
    bool failed;                       /* a write failed: commit refuses */
    int *fd;                           /* writing: the file driver's descriptor, until closed */
    bool diverted;                     /* writes go to a copy in memory (see ckpt_common.c) */
    int direct_fd;                     /* writing: the file opened O_DIRECT, or -1 */
    unsigned char *bounce;             /* its aligned buffer, made at the first use */
    ody_ckpt_h5_error err;             /* see ody_ckpt_quiet_begin */
    int64_t version;                   /* format version: the file's when reading (0 until
                                          known), ODY_CKPT_FORMAT_VERSION when writing */
    char path[ODY_CKPT_PATH_MAX];      /* the checkpoint's (final) path */
    char tmp[ODY_CKPT_PATH_MAX + 32];  /* writing: "<path>.tmp.<pid>" */
};

typedef struct {
    H5E_auto2_t func;
    void *data;
} ody_ckpt_quiet;

/* The file driver checkpoints are written through (ckpt_driver.c):
 * sec2's I/O, but a failed write or truncate first goes to on_error, and
 * is made again when that returns true (the descriptor now points at a
 * copy in memory), so that HDF5 never sees it fail. */
typedef struct {
    bool (*on_error)(void *owner, int sys_errno);
    void *owner;
} ody_ckpt_vfd_info;
/* Make fapl use that driver, with info (copied). */
herr_t ody_ckpt_vfd_set(hid_t fapl, const ody_ckpt_vfd_info *info);

/*
 * Switch HDF5's error printing off and clear ck->err, which then records
 * the first failure (ck may be NULL: nothing is recorded); a failed write
 * makes the checkpoint uncommittable. quiet_end restores the handler that
 * was there. Pairs nest.
 */
ody_ckpt_quiet ody_ckpt_quiet_begin(ody_ckpt *ck);
void ody_ckpt_quiet_end(ody_ckpt_quiet q);

/* Close a property list, dataspace, datatype, group, dataset or attribute (< 0: nothing). */
void ody_ckpt_release(hid_t id);

/* The checksum of ck's datasets: the legacy one for format 2 files (read
 * only), XXH3-64 (ody_checksum64) otherwise. */
ody_checksum_kind ody_ckpt_checksum_kind(const ody_ckpt *ck);
/* That checksum of n bytes. */
uint64_t ody_ckpt_data_sum(const ody_ckpt *ck, const void *data, size_t n);
/*
 * Format 3: the checksum of an attribute's value, by its class:
 * H5T_INTEGER *(const int64_t *)value and H5T_FLOAT *(const double *)value
 * as 8 little-endian bytes, H5T_STRING *(const char *const *)value as its
 * UTF-8 text without the terminating NUL; ody_checksum64 of those bytes.
 */
uint64_t ody_ckpt_value_sum(H5T_class_t cls, const void *value);
/* True when an attribute's name (leaf) ends in ODY_CKPT_VALUE_CHECKSUM:
 * another attribute's checksum, a name writers may not use. */
bool ody_ckpt_is_value_checksum(const char *leaf);

/* "PATH: NAME: REASON" for a failed read (REASON from ck->err). */
ody_status ody_ckpt_fail_read(ody_ctx *ctx, const ody_ckpt *ck, const char *name);
/* A failure of our own I/O (not HDF5's): recorded as HDF5's would be, the
 * system's errno or a file that ends early; a writer's further writes go
 * to memory (it can no longer be committed). */
/* The file driver's hook for a failed system call (its owner is the
 * ody_ckpt): notes the error; a write's failure diverts the rest of the
 * file to memory, so HDF5 can finish cleanly (returns true: retry). */
bool ody_ckpt_driver_failed(void *owner, int sys_errno);
void ody_ckpt_note_error(ody_ckpt *ck, int sys_errno, bool truncated);
/* "PATH: cannot write NAME: REASON"; the checkpoint can no longer be committed. */
ody_status ody_ckpt_fail_write(ody_ctx *ctx, ody_ckpt *ck, const char *name);
/* "PATH: invalid checkpoint name 'NAME'". */
ody_status ody_ckpt_fail_name(ody_ctx *ctx, const ody_ckpt *ck, const char *name);
/* The reason ck->err gives, as ody_ckpt_fail_read words it. */
const char *ody_ckpt_read_reason(const ody_ckpt *ck, char *buf, size_t len);

/*
 * Split "a/b/leaf" into the group "/a/b" ("/" for "leaf") and the leaf, a
 * pointer into name. False for an invalid name: empty, or with an empty
 * or "." component.
 */
bool ody_ckpt_parse_name(const char *name, char *group, size_t len, const char **leaf);
/*
 * Open group `path` ("/" or "/a/b"), making missing groups when create.
 * Returns 1 with *out set, 0 when a group is missing (and not create), -1
 * when HDF5 failed.
 */
int ody_ckpt_group_open(ody_ckpt *ck, const char *path, bool create, hid_t *out);

/* A handle for path, no file open yet (errors: out of memory, path too long). */
ody_status ody_ckpt_alloc(ody_ctx *ctx, const char *path, ody_ckpt **out);
/*
 * Large tensors written and read with O_DIRECT (ckpt_direct.c). A
 * tensor of at least ODY_CKPT_DIRECT_MIN bytes is placed at an
 * ODY_CKPT_DIRECT_ALIGN boundary of the file; direct_open opens ck->tmp
 * (writing) or ck->path (reading) a second time with O_DIRECT (direct_fd
 * stays -1 where the file system refuses); direct_write puts n bytes of
 * data at file address addr (aligned) and gives their checksum
 * (ody_ckpt_data_sum's), returning 0 or an errno; direct_read reads n bytes
 * at addr (any) into out and gives their checksum (the file's kind,
 * ody_ckpt_checksum_kind), returning 0, an errno, -1 when the file
 * ends first, or ODY_CKPT_DIRECT_UNAVAILABLE when its read-ahead thread
 * cannot start or the file system refuses the alignment (read another way
 * then; after a refusal direct_fd is closed, and writes likewise go on
 * buffered); direct_close closes and frees (safe to call twice).
 */
#define ODY_CKPT_DIRECT_UNAVAILABLE (-2)
#define ODY_CKPT_DIRECT_MIN ((size_t)1 << 20)
#define ODY_CKPT_DIRECT_ALIGN ((size_t)4096)
void ody_ckpt_direct_open(ody_ckpt *ck);
int ody_ckpt_direct_write(ody_ckpt *ck, uint64_t addr, const void *data, size_t n,
                          uint64_t *checksum);
int ody_ckpt_direct_read(ody_ckpt *ck, uint64_t addr, void *out, size_t n, uint64_t *checksum);
void ody_ckpt_direct_close(ody_ckpt *ck);
/* Close the file if open, remove the temporary file of a writer, free ck (NULL is fine). */
void ody_ckpt_discard(ody_ckpt *ck);

#endif /* ODY_CHECKPOINT_INTERNAL_H */

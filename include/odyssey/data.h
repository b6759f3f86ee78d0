/*
 * data: data set readers (IDX and IDX.gz, HDF5, synthetic), augmentation
 * (random crop and flip, keyed by (seed, epoch, sample)), the sampler (the
 * global order of an epoch -> this rank's share of each step) and the
 * loader (batches, optional prefetch of the next batch).
 *
 * Invariant: the order of an epoch is a function of (seed, epoch) alone;
 * step s uses global positions [s*B, s*B + count) of that order and each
 * rank takes a fixed contiguous part of them. Nothing depends on the rank
 * count except which part a rank takes.
 */
#ifndef ODYSSEY_DATA_H
#define ODYSSEY_DATA_H

#include "odyssey/core.h"
#include "odyssey/tensor.h"

/* ------------------------------------------------------------- data sets */

/* How raw pixels become floats: x = (raw * scale - mean) / std. */
typedef struct {
    float scale; /* 1/255 for "scale to [0,1]" on uint8 data, 1 otherwise */
    float mean;  /* 0 when not normalising */
    float std;   /* 1 when not normalising */
    /* ody_hdf5_open: take mean and std from the images' pixel_mean and
     * pixel_std attributes when it has them (odyssey-convert writes them) */
    bool from_file;
} ody_normalize;

/*
 * The pixel mean and standard deviation (after scaling to [0, 1]) of the
 * training set of a data set known by name (fashion_mnist, mnist): the
 * constants data.standardize uses for the IDX files, and odyssey-convert
 * stores with them. False for other names.
 */
bool ody_data_known_stats(const char *name, float *mean, float *std);

typedef struct ody_dataset ody_dataset;

typedef struct {
    const char *kind; /* "idx", "hdf5", "synthetic", "subset" */
    /*
     * Read samples indices[0..n) into x (n, numel(sample_shape)), normalised,
     * and y (n). May run on the loader's prefetch thread: it must not
     * allocate through ctx, and reports errors only through ody_fail on the
     * ctx it is given.
     */
    ody_status (*read)(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n, float *x,
                       int32_t *y);
    /* Release everything the data set holds. */
    void (*destroy)(ody_dataset *ds, ody_ctx *ctx);
} ody_dataset_ops;

struct ody_dataset {
    const ody_dataset_ops *ops;
    char source[512];       /* what errors name: a file path, "synthetic", ... */
    int64_t n;              /* samples */
    ody_shape sample_shape; /* (C, H, W) */
    int num_classes;
    ody_normalize norm;
    size_t bytes_held;      /* memory this data set keeps (for memory reports) */
};

/* What the config's data: section says. */
typedef struct {
    char name[16];          /* fashion_mnist | mnist | idx | hdf5 | synthetic */
    char path[512];         /* directory of IDX files, or the HDF5 file */
    char train_images[128]; /* IDX file names inside path (".gz" tried too) */
    char train_labels[128];
    char test_images[128];
    char test_labels[128];
    bool scale;             /* uint8 pixels scaled to [0, 1] */
    double mean, std;       /* applied after scaling when std > 0 */
    bool standardize;       /* std == 0: standardise fashion_mnist and mnist with their known statistics */
    char validation[8];     /* test | split | none */
    double val_fraction;    /* for validation: split */
    int64_t limit_train;    /* use only the first N training samples (0 = all) */
    int64_t limit_val;      /* likewise for validation */
    int64_t synthetic_train; /* sizes of the synthetic data set */
    int64_t synthetic_val;
    bool prefetch;          /* read the next batch on a thread while this one computes */
    int crop_padding;       /* training: random crop from this much black padding (0: off) */
    bool horizontal_flip;   /* training augmentation: mirror left-right with probability 0.5 */
    double random_erasing;  /* training: erase a random rectangle with this probability (0: off) */
} ody_data_options;

/* The data.name values ody_data_open knows, NULL-terminated. */
const char *const *ody_data_names(void);

/*
 * Open the training and validation data sets the options describe. shape
 * and num_classes are what the model expects (synthetic data is made in
 * that shape; other sets are checked against it). *val is NULL when
 * validation is "none". The split for validation: split is a function of
 * the seed. Errors (ODY_ERR_DATA) name the file and what is wrong.
 * An empty name means fashion_mnist and an empty validation means test; a
 * 1-D shape of the same size as the samples (a flat input) is accepted.
 * Every rank opens its own handles; not collective.
 */
ody_status ody_data_open(ody_ctx *ctx, const ody_data_options *opt, uint64_t seed, ody_shape shape,
                         int num_classes, ody_dataset **train, ody_dataset **val);
/* Release a data set (NULL is fine). */
void ody_dataset_destroy(ody_ctx *ctx, ody_dataset *ds);
/* Read samples through the data set's ops (see ody_dataset_ops.read). */
ody_status ody_dataset_read(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n, float *x,
                            int32_t *y);

/*
 * IDX (MNIST format) images and labels, raw or gzip-compressed, read whole
 * into memory as uint8. Validates magic, type, dimensions, counts, label
 * range (< num_classes) and that images and labels agree.
 */
ody_status ody_idx_open(ody_ctx *ctx, const char *images_path, const char *labels_path,
                        int num_classes, ody_normalize norm, ody_dataset **out);
/*
 * The samples of group `group` ("train" or "test") of the HDF5 file at
 * path, in the layout of src/data/hdf5.c: /GROUP/images (N, C, H, W) or
 * (N, H, W), uint8 or float32; /GROUP/labels (N), integers in
 * [0, num_classes); optional root attribute num_classes (must equal
 * num_classes). uint8 images are normalised with norm; float32 ones with
 * norm's mean and std only (scale 1). With norm.from_file, mean and std
 * are the images' pixel_mean and pixel_std attributes (float; both or
 * neither; std > 0), and without them norm's own, with a warning that the
 * images are not standardised. Reads select only the samples asked
 * for: the data set holds the labels and small read buffers, never the
 * images, and keeps the file open until it is destroyed. Errors
 * (ODY_ERR_DATA) name the file and the object. Not collective.
 */
ody_status ody_hdf5_open(ody_ctx *ctx, const char *path, const char *group, int num_classes,
                         ody_normalize norm, ody_dataset **out);
/*
 * Debian's HDF5 is not thread-safe: no two threads may be inside it at
 * once. HDF5 data sets hold this process-wide lock around every HDF5 call
 * (their reads may run on a loader's prefetch thread); any other code
 * calling HDF5 while a prefetching loader may be reading (the checkpoint
 * writer, for one) must hold it too. Not recursive.
 */
void ody_hdf5_lock(void);
void ody_hdf5_unlock(void);
/*
 * Synthetic classification data: n samples of `shape`, `classes` classes,
 * sample i a pure function of (seed, i): a class-dependent pattern plus
 * noise, learnable. No I/O, no memory per sample.
 */
ody_status ody_synthetic_open(ody_ctx *ctx, int64_t n, ody_shape shape, int classes, uint64_t seed,
                              uint64_t salt, ody_dataset **out);
/* The samples indices[0..n) of base, as a data set of its own (base stays owned by the caller). */
ody_status ody_subset_open(ody_ctx *ctx, ody_dataset *base, const int64_t *indices, int64_t n,
                           ody_dataset **out);

/* ---------------------------------------------------------- augmentation */

/*
 * Training-data augmentation of (C, H, W) images, as torchvision's
 * RandomCrop((H, W), padding=p) then RandomHorizontalFlip(0.5) in the usual
 * recipe, where both come before Normalize: the padding is black pixels,
 * i.e. the normalised value of a stored 0 (ody_augment_fill), not 0.0.
 * Then, as torchvision's RandomErasing(p, scale=(0.02, 0.33),
 * ratio=(0.3, 3.3), value=0) after Normalize (Zhong et al. 2020): with
 * probability p a rectangle of 2% to 33% of the image, aspect ratio
 * log-uniform in [0.3, 3.3], at a uniform position, is set to 0.0, the
 * normalised data set mean, in every channel.
 * What a sample gets is a pure function of (seed, epoch, data-set index of
 * the sample), drawn from ODY_STREAM_AUGMENT (crop, flip) and
 * ODY_STREAM_ERASE, so it is the same at any rank count, with or without
 * prefetch, and after a resume mid-epoch; and turning erasing on changes no
 * crop or flip.
 */
typedef struct {
    int crop_padding;      /* p: pad p pixels on each side, crop (H, W) back at random; 0: no crop */
    bool horizontal_flip;  /* mirror left-right with probability 0.5 */
    double random_erasing; /* probability of erasing a rectangle; 0: never */
} ody_augment_options;

/* Erasing's fixed ranges (torchvision's defaults) and attempts at a rectangle that fits. */
#define ODY_ERASE_SCALE_MIN 0.02
#define ODY_ERASE_SCALE_MAX 0.33
#define ODY_ERASE_RATIO_MIN 0.3
#define ODY_ERASE_RATIO_MAX 3.3
#define ODY_ERASE_ATTEMPTS 10

/*
 * One sample's draw: the crop window's corner in the padded image, the
 * flip, and the erased rectangle (in the cropped, flipped image).
 */
typedef struct {
    int dy, dx; /* each uniform in [0, 2p]; (p, p) is the image itself; 0 without a crop */
    bool flip;  /* always false without horizontal_flip */
    int ey, ex, eh, ew; /* erased rows [ey, ey + eh), columns [ex, ex + ew); eh = ew = 0: none */
} ody_augment_draw;

/*
 * The draw of data-set sample `index` in `epoch` for (C, H, W) samples of
 * `shape`: a pure function of its arguments.
 */
ody_augment_draw ody_augment_choose(const ody_augment_options *opt, const ody_shape *shape,
                                    uint64_t seed, int64_t epoch, int64_t index);
/*
 * Apply draw d, made with padding `padding`, to the (C, H, W) sample x in
 * place: crop window (d.dy, d.dx) of x padded with `fill`, then the flip,
 * then the erasing. scratch holds H * W floats. Never allocates.
 */
void ody_augment_apply(float *x, ody_shape shape, int padding, ody_augment_draw d, float fill,
                       float *scratch);
/* The padding value: a stored 0 (a black pixel) normalised by norm, as the readers do it. */
float ody_augment_fill(ody_normalize norm);
/* The augmentation the data options ask for (data.crop_padding, horizontal_flip, random_erasing). */
ody_augment_options ody_augment_options_of(const ody_data_options *d);
/* True when opt changes anything. */
bool ody_augment_active(const ody_augment_options *opt);
/*
 * ODY_OK when samples of `shape` can take opt (always when opt does
 * nothing): (C, H, W) images, crop_padding at most H/2 and W/2,
 * random_erasing in [0, 1]. Otherwise ODY_ERR_CONFIG naming the key set
 * (data.crop_padding, else data.horizontal_flip, else data.random_erasing),
 * the shape and `what` it is ("model.input_shape", a file).
 */
ody_status ody_augment_check(ody_ctx *ctx, const ody_augment_options *opt, const ody_shape *shape,
                             const char *what);

/* --------------------------------------------------------------- sampler */

typedef struct {
    int64_t n;          /* samples in the data set */
    int64_t batch;      /* global batch B */
    bool shuffle;
    bool drop_last;
    uint64_t seed;
    int rank, size;
    int chunk;          /* rank shares are whole chunks of this many samples (>= 1) */
    int64_t epoch;      /* epoch the order below belongs to (-1 before the first) */
    int64_t *order;     /* (n) global order of the current epoch */
} ody_sampler;

/* This rank's part of one step. */
typedef struct {
    int64_t step;
    int64_t global_first;  /* first global position of the step: step * B */
    int64_t global_count;  /* samples in the whole step (B, or fewer at the end) */
    int64_t local_first;   /* this rank's first global position */
    int64_t local_count;   /* this rank's samples (may be 0) */
    const int64_t *indices; /* (local_count) data-set indices, into the sampler's order */
} ody_share;

/*
 * Create a sampler. Collective in meaning only (every rank makes the same
 * one with its own rank); no communication.
 */
ody_status ody_sampler_create(ody_ctx *ctx, ody_sampler **out, int64_t n, int64_t batch,
                              bool shuffle, bool drop_last, uint64_t seed, int chunk);
void ody_sampler_destroy(ody_ctx *ctx, ody_sampler *s);
/* Steps in one epoch (partial last step counted unless drop_last). */
int64_t ody_sampler_steps(const ody_sampler *s);
/* Compute the order of `epoch` (a permutation keyed by (seed, epoch), or identity). */
void ody_sampler_set_epoch(ody_sampler *s, int64_t epoch);
/*
 * This rank's share of `step`: the step's global positions split into
 * contiguous parts in rank order, sizes differing by at most one chunk
 * (counted in chunks: the step's last chunk may be short).
 */
void ody_sampler_share(const ody_sampler *s, int64_t step, ody_share *out);
/* Largest local_count any rank gets in any step. */
int64_t ody_sampler_max_local(const ody_sampler *s);

/* ---------------------------------------------------------------- loader */

/* One batch on this rank (the seed design's DataBatch). */
typedef struct {
    int64_t step;          /* step within the epoch */
    int n;                 /* rows on this rank */
    int64_t global_count;  /* rows in the global batch */
    float *x;              /* (n, sample numel), owned by the loader */
    int32_t *y;            /* (n) */
    int64_t *ids;          /* (n) data-set index of each row (keys dropout) */
} ody_batch;

typedef struct ody_loader ody_loader;

/*
 * A loader reads this rank's share of each step from ds in the sampler's
 * order. With prefetch, the next step is read on a thread while the caller
 * computes. Buffers are allocated here, never per step. ds and sampler
 * stay the caller's and must outlive the loader; start_epoch sets the
 * sampler's epoch, and nothing else may change the sampler meanwhile.
 */
ody_status ody_loader_create(ody_ctx *ctx, ody_loader **out, ody_dataset *ds, ody_sampler *sampler,
                             bool prefetch);
void ody_loader_destroy(ody_ctx *ctx, ody_loader *l);
/*
 * Augment every sample this loader reads from now on (training loaders
 * only), keyed by (seed, the sampler's epoch, data-set index); the
 * padding is ody_augment_fill of the data set's normalisation. Call before
 * start_epoch. Errors: ody_augment_check's against the data set's sample
 * shape (nothing changes then), or out of memory for the one-plane
 * scratch buffer.
 */
ody_status ody_loader_augment(ody_ctx *ctx, ody_loader *l, const ody_augment_options *opt,
                              uint64_t seed);
/* Start an epoch at step first_step (0, or later when resuming). */
ody_status ody_loader_start_epoch(ody_ctx *ctx, ody_loader *l, int64_t epoch, int64_t first_step);
/*
 * The next batch of the epoch into *out (valid until the next call); *done
 * is set instead when the epoch has no more steps. A rank may get n = 0
 * rows in a step that has fewer samples than ranks. Read errors come back
 * with the data set's message (again on each call, until start_epoch).
 */
ody_status ody_loader_next(ody_ctx *ctx, ody_loader *l, ody_batch *out, bool *done);

#endif /* ODYSSEY_DATA_H */

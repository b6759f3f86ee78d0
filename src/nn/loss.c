/*
 * Losses over logits (n, classes) and integer labels (n), each label in
 * [0, classes). Cross-entropy works from logsumexp shifted by the row
 * maximum, so logits in the thousands neither overflow nor lose the answer.
 * Sums run in double: one row is short, and the loss feeds metrics.
 *
 * Label smoothing eps (PyTorch's definition) makes the target
 * q = (1 - eps) onehot(y) + eps / classes, so
 *   loss = -sum_c q_c (z_c - lse) = (1 - eps) (lse - z_y) + (eps / classes) sum_c (lse - z_c)
 * (sum_c q_c = 1) and d loss / d z = softmax(z) - q. With eps = 0 the
 * smoothing terms are skipped, so the bits are those of plain cross-entropy.
 */
#include "odyssey/nn.h"

#include <math.h>

static int argmax(const float *z, int classes)
{
    int best = 0;
    for (int c = 1; c < classes; c++)
        if (z[c] > z[best])
            best = c;
    return best;
}

/* log sum_c exp(z_c), stably. */
static double logsumexp(const float *z, int classes)
{
    double m = z[argmax(z, classes)], sum = 0.0;
    for (int c = 0; c < classes; c++)
        sum += exp((double)z[c] - m);
    return m + log(sum);
}

/* The loss of a row from its logsumexp. */
static double cross_entropy_row(const float *z, int classes, int label, double eps, double lse)
{
    if (eps == 0.0)
        return lse - z[label];
    /* sum_c q_c (lse - z_c): every term >= 0, so nothing cancels */
    double smooth = 0.0;
    for (int c = 0; c < classes; c++)
        smooth += lse - z[c];
    return (1.0 - eps) * (lse - z[label]) + eps / classes * smooth;
}

static double mse_row(const float *z, int classes, int label)
{
    double sum = 0.0;
    for (int c = 0; c < classes; c++) {
        double d = (double)z[c] - (c == label ? 1.0 : 0.0);
        sum += d * d;
    }
    return sum / classes;
}

/* scale * (softmax(z) - q) into dz, from the row's logsumexp. */
static void cross_entropy_grad(const float *z, int classes, int label, double eps, double lse, float scale,
                               float *dz)
{
    if (eps == 0.0) {
        for (int c = 0; c < classes; c++)
            dz[c] = scale * (float)(exp((double)z[c] - lse) - (c == label));
        return;
    }
    double off = eps / classes, on = 1.0 - eps + off;
    for (int c = 0; c < classes; c++)
        dz[c] = scale * (float)(exp((double)z[c] - lse) - (c == label ? on : off));
}

/*
 * Rows [0, n): their loss (loss not NULL: into loss, and the rows whose
 * argmax is the label added to *correct unless it is NULL) and their
 * gradient (dlogits not NULL), each row's logsumexp once for both.
 */
static void rows(ody_loss_kind kind, double eps, int n, int classes, const float *logits, const int32_t *labels,
                 float *loss, int64_t *correct, float scale, float *dlogits)
{
    int64_t hits = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        int label = labels[i];
        double lse = kind == ODY_LOSS_CROSS_ENTROPY ? logsumexp(z, classes) : 0.0;
        if (loss) {
            loss[i] = (float)(kind == ODY_LOSS_CROSS_ENTROPY ? cross_entropy_row(z, classes, label, eps, lse)
                                                             : mse_row(z, classes, label));
            hits += argmax(z, classes) == label;
        }
        if (!dlogits)
            continue;
        float *dz = dlogits + (size_t)i * classes;
        if (kind == ODY_LOSS_CROSS_ENTROPY) {
            cross_entropy_grad(z, classes, label, eps, lse, scale, dz);
        } else {
            /* 2 (z - onehot(y)) / classes */
            for (int c = 0; c < classes; c++)
                dz[c] = scale * (float)(2.0 * ((double)z[c] - (c == label)) / classes);
        }
    }
    if (correct)
        *correct += hits;
}

void ody_loss_forward(ody_loss_kind kind, double label_smoothing, int n, int classes,
                      const float *logits, const int32_t *labels, float *loss, int64_t *correct)
{
    rows(kind, label_smoothing, n, classes, logits, labels, loss, correct, 0.0f, NULL);
}

void ody_loss_backward(ody_loss_kind kind, double label_smoothing, int n, int classes,
                       const float *logits, const int32_t *labels, float scale, float *dlogits)
{
    rows(kind, label_smoothing, n, classes, logits, labels, NULL, NULL, scale, dlogits);
}

void ody_loss_forward_backward(ody_loss_kind kind, double label_smoothing, int n, int classes,
                               const float *logits, const int32_t *labels, float *loss, int64_t *correct,
                               float scale, float *dlogits)
{
    rows(kind, label_smoothing, n, classes, logits, labels, loss, correct, scale, dlogits);
}

/*
 * Losses over logits (n, classes) and integer labels (n), each label in
 * [0, classes). Cross-entropy works from logsumexp shifted by the row
 * maximum, so logits in the thousands neither overflow nor lose the answer.
 * Sums run in double: one row is short, and the loss feeds metrics.
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

static double mse_row(const float *z, int classes, int label)
{
    double sum = 0.0;
    for (int c = 0; c < classes; c++) {
        double d = (double)z[c] - (c == label ? 1.0 : 0.0);
        sum += d * d;
    }
    return sum / classes;
}

void ody_loss_forward(ody_loss_kind kind, int n, int classes, const float *logits,
                      const int32_t *labels, float *loss, int64_t *correct)
{
    int64_t hits = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        if (kind == ODY_LOSS_CROSS_ENTROPY)
            loss[i] = (float)(logsumexp(z, classes) - z[labels[i]]);
        else
            loss[i] = (float)mse_row(z, classes, labels[i]);
        hits += argmax(z, classes) == labels[i];
    }
    if (correct)
        *correct += hits;
}

void ody_loss_backward(ody_loss_kind kind, int n, int classes, const float *logits,
                       const int32_t *labels, float scale, float *dlogits)
{
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        float *dz = dlogits + (size_t)i * classes;
        if (kind == ODY_LOSS_CROSS_ENTROPY) {
            /* softmax(z) - onehot(y) */
            double lse = logsumexp(z, classes);
            for (int c = 0; c < classes; c++)
                dz[c] = scale * (float)(exp((double)z[c] - lse) - (c == labels[i]));
        } else {
            /* 2 (z - onehot(y)) / classes */
            for (int c = 0; c < classes; c++)
                dz[c] = scale * (float)(2.0 * ((double)z[c] - (c == labels[i])) / classes);
        }
    }
}

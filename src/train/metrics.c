/* train: TrainingMetrics and LossTracker. */
#include "odyssey/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ody_training_metrics_init(ody_training_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->train_loss = m->train_accuracy = NAN;
    m->val_loss = m->val_accuracy = NAN;
    m->best_val_loss = INFINITY;
    m->best_val_accuracy = -INFINITY;
    m->best_epoch = -1;
}

void ody_training_metrics_free(ody_training_metrics *m)
{
    free(m->history);
    m->history = NULL;
    m->history_len = m->history_cap = 0;
}

void ody_training_metrics_reset_epoch(ody_training_metrics *m, int64_t epoch)
{
    m->current_epoch = epoch;
    m->current_batch = 0;
    m->epoch_loss_fixed = m->epoch_correct = m->epoch_count = 0;
    m->val_loss = m->val_accuracy = NAN;
}

void ody_training_metrics_update_train(ody_training_metrics *m, const ody_step_result *r)
{
    m->epoch_loss_fixed = ody_add_sat(m->epoch_loss_fixed, r->loss_fixed);
    m->epoch_correct += r->correct;
    m->epoch_count += r->count;
    m->current_batch++;
}

void ody_training_metrics_set_train(ody_training_metrics *m, int64_t loss_fixed, int64_t correct,
                                    int64_t count)
{
    m->train_loss = count ? ody_loss_from_fixed(loss_fixed) / (double)count : NAN;
    m->train_accuracy = count ? (double)correct / (double)count : NAN;
}

bool ody_training_metrics_update_val(ody_training_metrics *m, double loss, double accuracy)
{
    m->val_loss = loss;
    m->val_accuracy = accuracy;
    if (loss < m->best_val_loss)
        m->best_val_loss = loss;
    if (accuracy > m->best_val_accuracy) {
        m->best_val_accuracy = accuracy;
        m->best_epoch = m->current_epoch;
        return true;
    }
    return false;
}

bool ody_training_metrics_push_epoch(ody_training_metrics *m, double lr, double samples_per_sec)
{
    if (m->history_len == m->history_cap) {
        int64_t cap = m->history_cap ? 2 * m->history_cap : 16;
        ody_epoch_record *h = realloc(m->history, (size_t)cap * sizeof *h);
        if (!h)
            return false;
        m->history = h;
        m->history_cap = cap;
    }
    m->history[m->history_len++] = (ody_epoch_record){
        .epoch = m->current_epoch,
        .train_loss = m->train_loss,
        .train_accuracy = m->train_accuracy,
        .val_loss = m->val_loss,
        .val_accuracy = m->val_accuracy,
        .lr = lr,
        .samples_per_sec = samples_per_sec,
    };
    return true;
}

static void print_cell(FILE *out, double v, bool percent)
{
    if (isnan(v))
        fprintf(out, " %10s", "-");
    else if (percent)
        fprintf(out, " %9.2f%%", 100.0 * v);
    else
        fprintf(out, " %10.4f", v);
}

void ody_training_metrics_print_summary(const ody_training_metrics *m, FILE *out)
{
    fprintf(out, "\n%6s %10s %10s %10s %10s %10s %10s\n", "epoch", "train_loss", "train_acc",
            "val_loss", "val_acc", "lr", "img/s");
    for (int64_t i = 0; i < m->history_len; i++) {
        const ody_epoch_record *r = &m->history[i];
        fprintf(out, "%6lld", (long long)r->epoch + 1);
        print_cell(out, r->train_loss, false);
        print_cell(out, r->train_accuracy, true);
        print_cell(out, r->val_loss, false);
        print_cell(out, r->val_accuracy, true);
        fprintf(out, " %10.3g %10.0f\n", r->lr, r->samples_per_sec);
    }
    if (m->best_epoch >= 0)
        fprintf(out, "best val_accuracy %.2f%% at epoch %lld, best val_loss %.4f\n",
                100.0 * m->best_val_accuracy, (long long)m->best_epoch + 1, m->best_val_loss);
    fflush(out);
}

ody_status ody_loss_tracker_init(ody_ctx *ctx, ody_loss_tracker *t, int window)
{
    memset(t, 0, sizeof *t);
    if (window < 1)
        window = 1;
    t->recent = calloc((size_t)window, sizeof *t->recent);
    if (!t->recent)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the loss tracker");
    t->window = window;
    return ODY_OK;
}

void ody_loss_tracker_free(ody_loss_tracker *t)
{
    free(t->recent);
    t->recent = NULL;
}

void ody_loss_tracker_add(ody_loss_tracker *t, double loss)
{
    t->recent[t->next] = loss;
    t->next = (t->next + 1) % t->window;
    if (t->filled < t->window)
        t->filled++;
    t->total += loss;
    t->count++;
}

double ody_loss_tracker_average(const ody_loss_tracker *t)
{
    return t->count ? t->total / (double)t->count : 0.0;
}

double ody_loss_tracker_recent_average(const ody_loss_tracker *t)
{
    double s = 0.0;
    for (int i = 0; i < t->filled; i++)
        s += t->recent[i];
    return t->filled ? s / t->filled : 0.0;
}

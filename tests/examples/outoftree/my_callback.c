/*
 * Example: a callback of your own, built against the installed library
 * (out of the source tree; see Makefile and CMakeLists.txt beside it).
 *
 *   my_callback CONFIG [section.key=value ...]
 *
 * Trains CONFIG like odyssey-dist does, with one callback added to the
 * loop: on rank 0 it prints the step, the learning rate and rank 0's
 * running loss after every optimizer step, and at the end how many steps
 * it saw. Its count is state that must survive a resume, so it goes
 * through save_state/load_state into the checkpoint. Run it under mpirun
 * like the program: mpirun -np 2 ./my_callback lenet5/baseline training.max_steps=3
 */
#include <stdio.h>
#include <stdlib.h>

#include <odyssey/train.h>

typedef struct {
    int64_t steps_seen;
} step_printer;

static ody_status on_batch_end(void *self, ody_training_loop *loop)
{
    step_printer *p = self;
    const ody_loop_state *s = ody_training_loop_state(loop);
    const ody_training_metrics *m = ody_training_loop_metrics(loop);
    p->steps_seen++;
    if (ody_training_loop_ctx(loop)->rank == 0 && m->epoch_count > 0)
        printf("my_callback: step %lld lr %.4g loss %.4f\n", (long long)s->global_step, s->lr,
               ody_loss_from_fixed(m->epoch_loss_fixed) / (double)m->epoch_count);
    return ODY_OK;
}

static ody_status on_train_end(void *self, ody_training_loop *loop)
{
    step_printer *p = self;
    if (ody_training_loop_ctx(loop)->rank == 0)
        printf("my_callback: saw %lld steps\n", (long long)p->steps_seen);
    return ODY_OK;
}

static int save_state(void *self, const ody_training_loop *loop, double *v)
{
    (void)loop;
    v[0] = (double)((step_printer *)self)->steps_seen;
    return 1;
}

static void load_state(void *self, ody_training_loop *loop, const double *v, int n)
{
    (void)loop;
    if (n >= 1)
        ((step_printer *)self)->steps_seen = (int64_t)v[0];
}

static const ody_callback_ops step_printer_ops = {
    .name = "step_printer",
    .on_batch_end = on_batch_end,
    .on_train_end = on_train_end,
    .save_state = save_state,
    .load_state = load_state,
    .destroy = free,
};

/* Resolve the config, build the trainer, add the callback, train. Collective. */
static ody_status train(ody_ctx *ctx, int argc, char **argv)
{
    ody_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the config");
    ody_trainer *trainer = NULL;
    ody_status st = ody_config_resolve(ctx, argv[1], argc - 2, argv + 2, cfg);
    if (st == ODY_OK)
        st = ody_trainer_create(ctx, cfg, NULL, &trainer);
    if (st == ODY_OK) {
        step_printer *p = calloc(1, sizeof *p);
        st = p ? ody_training_loop_add_callback(ody_trainer_loop(trainer), &step_printer_ops, p)
               : ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the callback");
    }
    if (st == ODY_OK)
        st = ody_trainer_run(trainer);
    ody_trainer_destroy(trainer);
    free(cfg);
    return st;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: my_callback CONFIG [section.key=value ...]\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    ody_ctx *ctx = NULL;
    ody_status st = ody_ctx_create(&ctx, MPI_COMM_WORLD);
    if (st == ODY_OK) {
        st = train(ctx, argc, argv);
        if (st != ODY_OK && ctx->rank == 0)
            fprintf(stderr, "my_callback: %s: %s\n", ody_status_name(st), ody_ctx_error(ctx));
    }
    ody_ctx_destroy(ctx);
    MPI_Finalize();
    return ody_status_exit_code(st);
}

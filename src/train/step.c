/* train: the seed design's training_step over function pointers. */
#include "odyssey/train.h"

ody_status ody_training_step(const ody_step_ops *ops, void *user, const ody_batch *batch,
                             bool zero_grad_first, bool step_optimizer, ody_step_result *res)
{
    ody_status st = ODY_OK;
    if (zero_grad_first && ops->zero_grad)
        st = ops->zero_grad(user);
    if (st == ODY_OK && ops->forward)
        st = ops->forward(user, batch);
    if (st == ODY_OK && ops->loss)
        st = ops->loss(user, batch, res);
    if (st == ODY_OK && ops->backward)
        st = ops->backward(user, batch);
    if (st == ODY_OK && step_optimizer && ops->optimizer_step)
        st = ops->optimizer_step(user);
    return st;
}

/*
 * norm.c — batch normalisation over the channel dimension of (C) or (C, H, W) samples.
 *
 * Training, per channel c over the m = B*H*W values of the batch:
 *   mean = sum x / m,  var = sum (x - mean)^2 / m,  xhat = (x - mean) / sqrt(var + eps)
 *   y = gamma xhat + beta
 *   running_mean = (1 - momentum) running_mean + momentum mean
 *   running_var  = (1 - momentum) running_var  + momentum var m/(m-1)      (as PyTorch)
 *   dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat mean(dy xhat))
 *   dgamma = sum dy xhat,  dbeta = sum dy
 * Evaluation, and training with the layer frozen (gamma and beta not trainable, as Keras's
 * trainable=False): y = gamma (x - running_mean) / sqrt(running_var + eps) + beta, and
 * dx = dy gamma / sqrt(running_var + eps); the running statistics stay as they are.
 * aux keeps each channel's mean, 1/sqrt(var + eps), then its {scale, shift} pair for
 * backward.
 *
 * A relu in place after it is fused in (memory.c): the affine pass writes relu(y), and
 * backward reads the relu's gradient, taken as 0 where x scale + shift <= 0: the relu's
 * own passes over the tensor do not run, and the bits are those of the two ops apart.
 */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static rg_status bn_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    if (x->ndim != 1 && x->ndim != 3)
        return rg_fail(RG_ERR_SHAPE, "batch norm needs (channels) or (channels, height, width)");
    n->ndim = x->ndim;
    memcpy(n->shape, x->shape, sizeof n->shape);
    const int c = x->shape[0];
    n->aux_fixed = 4 * (size_t)c; /* each channel's mean, 1/sqrt(var + eps), scale and shift */
    if (rg_param_declare(g, n, "gamma", 1, &c, RG_INIT(RG_INIT_ONES), c, c) < 0 ||
        rg_param_declare(g, n, "beta", 1, &c, RG_INIT(RG_INIT_ZEROS), c, c) < 0 ||
        rg_state_declare(g, n, "moving_mean", 1, &c, RG_INIT(RG_INIT_ZEROS)) < 0 ||
        rg_state_declare(g, n, "moving_variance", 1, &c, RG_INIT(RG_INIT_ONES)) < 0)
        return RG_ERR_MEMORY;
    return RG_OK;
}

const rg_op_def rg_op_batch_norm_def = {
    .name = "batch_norm", .min_inputs = 1, .max_inputs = 1,
    .infer = bn_infer,
    .backward_reads_inputs = true, .fills_fresh_grads = true,
};

rg_node rg_batch_norm(rg_graph *g, rg_node x, float momentum, float eps) {
    if (!(momentum >= 0 && momentum <= 1) || !(eps > 0))
        return rg_graph_error(g, RG_ERR_ARG, "batch norm: momentum %g must be in [0, 1] and "
                              "eps %g positive", (double)momentum, (double)eps);
    bn_attr *a = calloc(1, sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->momentum = momentum;
    a->eps = eps;
    return rg_graph_add_node(g, RG_OP_BATCH_NORM, &x, 1, a);
}

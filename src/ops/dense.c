/*
 * dense.c — the fully connected layer.
 *
 *   y = x W^T + b      x (B, IN), W (OUT, IN) as torch.nn.Linear, b (OUT), y (B, OUT)
 *   dW += dy^T x,  db += sum_b dy,  dx += dy W
 */
#include "../internal.h"
#include "../kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

typedef struct dense_attr {
    int units;
    rg_init init;
} dense_attr;

static rg_status dense_infer(rg_graph *g, rg_node_impl *n) {
    const dense_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    if (x->ndim != 1)
        return rg_fail(RG_ERR_SHAPE, "dense needs a flat input (one dimension per sample), "
                                     "got %d dimensions: add a flatten before it", x->ndim);
    int in = x->shape[0];
    n->flops = 2.0 * in * a->units;
    n->ndim = 1;
    n->shape[0] = a->units;
    rg_init bias_init = a->init.kind == RG_INIT_TORCH ? a->init : RG_INIT(RG_INIT_ZEROS);
    if (rg_param_declare(g, n, "kernel", 2, (int[]){a->units, in}, a->init, in, a->units) < 0 ||
        rg_param_declare(g, n, "bias", 1, (int[]){a->units}, bias_init, in, a->units) < 0)
        return RG_ERR_MEMORY;
    return RG_OK;
}

/* The units [lo, hi) of a watched dense output: their sums over the batch (kernels.h),
 * called by the thread that just computed them. */
typedef struct {
    const float *y;
    int batch, units;
    rg_output_stats *st;
} unit_sums_job;

static void sum_units(void *ctx, int lo, int hi) {
    const unit_sums_job *j = ctx;
    rg_output_stats *st = j->st;
    for (int u0 = lo; u0 < hi; u0 += RG_UNIT_BLOCK) {
        const int width = hi - u0 < RG_UNIT_BLOCK ? hi - u0 : RG_UNIT_BLOCK;
        float s[RG_UNIT_BLOCK], s2[RG_UNIT_BLOCK], rs[RG_UNIT_BLOCK] = {0}, rs2[RG_UNIT_BLOCK] = {0};
        int counted[RG_UNIT_BLOCK];
        rg_unit_block_sums(j->y + u0, (size_t)j->units, j->batch, width, (rg_count_kind)st->want,
                           0, 0, s, s2, counted, rs, rs2);
        for (int k = 0; k < width; k++) {
            double *t = st->sums + (size_t)(u0 + k) * 4;
            t[0] = s[k], t[1] = s2[k], t[2] = rs[k], t[3] = rs2[k];
            st->counts[u0 + k] = counted[k];
        }
    }
}

static void dense_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *x = rg_in(g, n, 0);
    const int in = x->shape[0], out = n->shape[0];
    const float *w = rg_param_data(g, n, 0), *b = rg_param_data(g, n, 1);
    float *y = n->out;
    for (int i = 0; i < batch; i++) memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *b);
    /* watched: the units' sums, each thread's while its part of the product is in cache */
    unit_sums_job job = {y, batch, out, n->stats};
    rg_sgemm_then(false, true, batch, out, in, 1.0f, x->out, in, w, in, 1.0f, y, out,
                  n->stats ? sum_units : NULL, &job);
}

static void dense_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    const int in = x->shape[0], out = n->shape[0];
    const float *dy = n->dout;
    float *dw = rg_param_grad(g, n, 0), *db = rg_param_grad(g, n, 1);
    rg_sgemm(true, false, out, in, batch, 1.0f, dy, out, x->out, in, 1.0f, dw, in);
    for (int i = 0; i < batch; i++) {
        const float *row = dy + (size_t)i * out;
        for (int j = 0; j < out; j++) db[j] += row[j];
    }
    if (x->needs_grad)
        rg_sgemm(false, false, batch, in, out, 1.0f, dy, out, rg_param_data(g, n, 0), in,
                 rg_grad_fresh(g, 0) ? 0.0f : 1.0f, x->dout, in);
}

const rg_op_def rg_op_dense_def = {
    .name = "dense", .min_inputs = 1, .max_inputs = 1,
    .infer = dense_infer, .forward = dense_forward, .backward = dense_backward,
    .backward_reads_inputs = true, .fills_fresh_grads = true,
};

rg_node rg_dense(rg_graph *g, rg_node x, int units, rg_init init) {
    if (units < 1)
        return rg_graph_error(g, RG_ERR_ARG, "dense: units must be at least 1, got %d", units);
    if (init.kind < 0 || init.kind >= RG_INIT_COUNT)
        return rg_graph_error(g, RG_ERR_ARG, "dense: unknown initialiser %d", init.kind);
    dense_attr *a = malloc(sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->units = units;
    a->init = init;
    return rg_graph_add_node(g, RG_OP_DENSE, &x, 1, a);
}

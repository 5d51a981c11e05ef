/*
 * op_dense.c — the fully connected layer on the CPU: the BLAS through rg_sgemm, and the
 * units' statistics for the monitor while each thread's part of the output is in cache;
 * and its tangent (forward mode) and backward tangent.
 */
#include "../../ops/ops.h"
#include "cpu.h"

#include <string.h>

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

void rg_cpu_dense_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
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

/* dW += dy^T x, then db += the sum of dy over the batch (when db), then dx (+)= dy W (when
 * dx; = when fresh) */
static void gradients(int batch, int in, int out, const float *x, const float *dy, const float *w,
                      float *dw, float *db, float *dx, bool fresh) {
    rg_sgemm(true, false, out, in, batch, 1.0f, dy, out, x, in, 1.0f, dw, in);
    for (int i = 0; db && i < batch; i++) {
        const float *row = dy + (size_t)i * out;
        for (int j = 0; j < out; j++) db[j] += row[j];
    }
    if (dx) rg_sgemm(false, false, batch, in, out, 1.0f, dy, out, w, in, fresh ? 0.0f : 1.0f, dx, in);
}

void rg_cpu_dense_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    gradients(batch, x->shape[0], n->shape[0], x->out, n->dout, rg_param_data(g, n, 0),
              rg_param_grad(g, n, 0), rg_param_grad(g, n, 1), x->needs_grad ? x->dout : NULL,
              rg_grad_fresh(g, 0));
}

/* Backward is bilinear in (x, W) given dy: its tangent is backward's products with x and W
 * replaced by their tangents, dW += dy^T x_t and dx += dy W_t (db does not move). */
void rg_cpu_dense_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    const float *dw_t = rg_param_tangent(g, n, 0);
    gradients(batch, x->shape[0], n->shape[0], rg_tangent_in(g, n, 0), rg_adjoint(g, n),
              dw_t, rg_param_grad(g, n, 0), NULL, x->needs_grad && dw_t ? x->dout : NULL, false);
}

/* dy = dx W^T + x dW^T + db (dx W^T skipped where dx is zero: the first layer on the data) */
void rg_cpu_dense_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const rg_node_impl *x = rg_in(g, n, 0);
    const int in = x->shape[0], out = n->shape[0];
    const float *dw = rg_param_tangent(g, n, 0), *db = rg_param_tangent(g, n, 1);
    float *t = rg_tangent_out(g, n);
    for (int i = 0; i < batch; i++)
        if (db) memcpy(t + (size_t)i * out, db, (size_t)out * sizeof *db);
        else memset(t + (size_t)i * out, 0, (size_t)out * sizeof *t);
    if (!rg_tangent_in_is_zero(g, n, 0))
        rg_sgemm(false, true, batch, out, in, 1.0f, rg_tangent_in(g, n, 0), in, rg_param_data(g, n, 0), in,
                 1.0f, t, out);
    if (dw) rg_sgemm(false, true, batch, out, in, 1.0f, x->out, in, dw, in, 1.0f, t, out);
}

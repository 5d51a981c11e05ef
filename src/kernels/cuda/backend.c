/*
 * backend.c — the CUDA backend's table (built with RG_HAVE_CUDA): the ops it has, each
 * reading and writing the graph's device buffers through the kernels of the .cu files
 * beside it, device buffers and copies, the optimizer's update and the passes, the
 * monitor's reductions, GRA's arithmetic (per step on the device, gra.cu; its repairs over
 * host copies) and every op's tangent.  An op it lacks has no forward here, and
 * rg_graph_set_device names it.
 */
#ifdef RG_HAVE_CUDA

#include "../../ops/ops.h"
#include "../backend.h"
#include "../cpu/cpu.h"
#include "cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rg_status rg_cuda_select(const char *device) {
    int index;
    rg_status s = rg_device_index(device, &index);
    if (!s) s = rg_cuda_use(index);
    return s ? s : rg_cuda_blas_ready();
}

static size_t rows(const rg_node_impl *n, int batch) { return (n->batched ? (size_t)batch : 1) * n->size; }

/* The caller wrote the input's rows; forward uploaded them.  Under bf16 they are cast into
 * the input's scratch, which its readers then read as its output. */
static void input_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    if (!g->bf16) return;
    rg_cuda_to_bf16(n->aux, n->out, rows(n, batch));
    n->out = n->aux;
}

/* A flatten's output is its input's buffer (memory planning; an input's bf16 cast since). */
static void alias_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)batch, (void)train;
    n->out = rg_in(g, n, 0)->out;
}

static void dense_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *x = rg_in(g, n, 0);
    rg_cuda_dense_forward(x->out, rg_param_data(g, n, 0), rg_param_data(g, n, 1), n->out, batch, x->shape[0],
                          n->shape[0]);
}

static void dense_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    rg_cuda_dense_backward(x->out, n->dout, rg_param_data(g, n, 0), rg_param_grad(g, n, 0), rg_param_grad(g, n, 1),
                           x->needs_grad ? x->dout : NULL, rg_grad_fresh(g, 0), batch, x->shape[0], n->shape[0]);
}

static void activation_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    if (n->fused) return;
    rg_cuda_activation_forward(*(const rg_act *)n->attr, rg_in(g, n, 0)->out, n->out, (size_t)batch * n->size);
}

static void activation_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad || n->fused) return;
    rg_cuda_activation_backward(*(const rg_act *)n->attr, in->out, n->out, n->dout, in->dout,
                                (size_t)batch * n->size, rg_grad_fresh(g, 0));
}

/* The backward tangents (curvature.c's exact Hessian products; docs/curvature.md), as the
 * CPU's: a piecewise-linear activation has none */
static void activation_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *in = rg_in(g, n, 0);
    const rg_act a = *(const rg_act *)n->attr;
    if (!in->needs_grad || n->fused || a == RG_ACT_LINEAR || a == RG_ACT_RELU || a == RG_ACT_LEAKY_RELU) return;
    rg_cuda_activation_backward_tangent(a, in->out, n->out, rg_tangent_in(g, n, 0), rg_adjoint(g, n), in->dout,
                                        (size_t)batch * n->size);
}

/* backward is bilinear in (x, W) given dy: backward again with x and W's tangents, dy held */
static void dense_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    const float *dw_t = rg_param_tangent(g, n, 0);
    rg_cuda_dense_backward(rg_tangent_in(g, n, 0), rg_adjoint(g, n), dw_t, rg_param_grad(g, n, 0), NULL,
                           x->needs_grad && dw_t ? x->dout : NULL, false, batch, x->shape[0], n->shape[0]);
}

static void add_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    if (n->inplace && rg_in(g, n, n->inplace_of)->added) return; /* its convolution did it */
    rg_cuda_add(n->out, rg_in(g, n, 0)->out, rg_in(g, n, 1)->out, rows(n, batch));
}

/* the inputs' tangents added (add_forward over them would leave it to a convolution) */
static void add_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_cuda_add(rg_tangent_out(g, n), rg_tangent_in(g, n, 0), rg_tangent_in(g, n, 1), rows(n, batch));
}

static void add_backward(rg_graph *g, rg_node_impl *n, int batch) {
    float *dx[2];
    bool fresh[2];
    int k = 0;
    for (int i = 0; i < 2; i++) /* (an input whose gradient is this one: memory.c) */
        if (rg_in(g, n, i)->needs_grad && rg_in(g, n, i)->grad_owner != n->grad_owner)
            dx[k] = rg_in(g, n, i)->dout, fresh[k++] = rg_grad_fresh(g, i);
    if (k) rg_cuda_pass_on(dx[0], fresh[0], k == 2 ? dx[1] : NULL, k == 2 && fresh[1], n->dout, rows(n, batch));
}

_Static_assert(RG_CUDA_MAX_TERMS == RG_MAX_INPUTS, "a weighted sum's terms fit the kernel's");

static void weighted_sum_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const wsum_attr *a = n->attr;
    rg_cuda_terms t = {.n = n->n_inputs};
    for (int k = 0; k < n->n_inputs; k++) t.w[k] = a->w[k], t.x[k] = rg_in(g, n, k)->out;
    rg_cuda_weighted_sum(n->out, &t, rows(n, batch));
}

static void weighted_sum_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const wsum_attr *a = n->attr;
    for (int k = 0; k < n->n_inputs; k++)
        if (rg_in(g, n, k)->needs_grad) rg_cuda_add_scaled(rg_in(g, n, k)->dout, n->dout, a->w[k], rows(n, batch));
}

static void zero_pad_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const pad_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    rg_cuda_zero_pad_forward(x->out, n->out, (size_t)batch * x->shape[0], x->shape[1], x->shape[2], n->shape[1],
                             n->shape[2], a->top, a->left);
}

static void zero_pad_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const pad_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    if (x->needs_grad)
        rg_cuda_zero_pad_backward(n->dout, x->dout, (size_t)batch * x->shape[0], x->shape[1], x->shape[2],
                                  n->shape[1], n->shape[2], a->top, a->left);
}

static void concat_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    size_t at = 0;
    for (int k = 0; k < n->n_inputs; at += rg_in(g, n, k)->size, k++)
        rg_cuda_concat_forward(rg_in(g, n, k)->out, n->out, batch, rg_in(g, n, k)->size, n->size, at);
}

static void concat_backward(rg_graph *g, rg_node_impl *n, int batch) {
    size_t at = 0;
    for (int k = 0; k < n->n_inputs; at += rg_in(g, n, k)->size, k++)
        if (rg_in(g, n, k)->needs_grad)
            rg_cuda_concat_backward(n->dout, rg_in(g, n, k)->dout, batch, rg_in(g, n, k)->size, n->size, at);
}

static void global_avg_pool_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *x = rg_in(g, n, 0);
    rg_cuda_global_avg_pool_forward(x->out, n->out, (size_t)batch * n->size, x->size / n->size);
}

static void global_avg_pool_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    if (x->needs_grad) rg_cuda_global_avg_pool_backward(n->dout, x->dout, (size_t)batch * n->size, x->size / n->size);
}

static void flatten_hwc_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *x = rg_in(g, n, 0);
    rg_cuda_flatten_hwc_forward(x->out, n->out, batch, (size_t)x->shape[0], (size_t)x->shape[1] * x->shape[2]);
}

static void flatten_hwc_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    if (x->needs_grad)
        rg_cuda_flatten_hwc_backward(n->dout, x->dout, batch, (size_t)x->shape[0], (size_t)x->shape[1] * x->shape[2]);
}

/* The batch's columns and each sample's dW, in the shared workspace (again when a zero
 * padding is folded into the convolution: never shrinking). */
static void conv_plan(rg_graph *g, rg_node_impl *n) {
    const conv_attr *a = n->attr;
    const size_t need = rg_cuda_conv2d_workspace(&a->geom, a->filters, a->o.groups, g->bf16);
    if (need > n->workspace_per_sample) n->workspace_per_sample = need;
}

/* Whether batch norm n takes the batch's statistics (as on the CPU: one value per channel,
 * or a frozen layer, keeps the running statistics) */
static bool batch_norm_trains(const rg_graph *g, const rg_node_impl *n, int batch, bool train) {
    return train && (size_t)batch * (n->size / (size_t)n->shape[0]) > 1 && !rg_node_frozen(g, n);
}

/* A batch norm's parameters for its batch's statistics */
static rg_cuda_norm_statistics statistics_of(rg_graph *g, rg_node_impl *n) {
    const bn_attr *a = n->attr;
    return (rg_cuda_norm_statistics){a->eps, a->momentum, rg_param_data(g, n, 0), rg_param_data(g, n, 1),
                                     rg_param_data(g, n, 2), rg_param_data(g, n, 3), n->aux, false};
}

static void conv_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    const conv_attr *a = n->attr;
    /* the add in place on this output (memory.c), done here when the monitor does not read
     * the output itself this pass; and then the statistics of the batch norm that reads the
     * sum, made as it is written */
    n->added = n->adds_from >= 0 && !n->watched;
    rg_node_impl *norm = n->added && n->stats_for >= 0 ? &g->nodes[n->stats_for] : NULL;
    const bool give = norm && batch_norm_trains(g, norm, batch, train);
    rg_cuda_norm_statistics stats = give ? statistics_of(g, norm) : (rg_cuda_norm_statistics){0};
    rg_cuda_conv2d_forward(rg_in(g, n, 0)->out, rg_param_data(g, n, 0), a->o.bias ? rg_param_data(g, n, 1) : NULL,
                           n->added ? g->nodes[n->adds_from].out : NULL, n->out, false, batch, &a->geom, a->filters,
                           a->o.groups, g->workspace, give ? &stats : NULL);
    n->stats_span = give && stats.made ? g->forward_spans : 0;
}

static void conv_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const conv_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    rg_cuda_conv2d_backward(x->out, n->dout, rg_param_data(g, n, 0), rg_param_grad(g, n, 0),
                            a->o.bias ? rg_param_grad(g, n, 1) : NULL, x->needs_grad ? x->dout : NULL,
                            rg_grad_fresh(g, 0), batch, &a->geom, a->filters, a->o.groups, g->workspace);
}

static void conv_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const conv_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    const float *dw_t = rg_param_tangent(g, n, 0);
    rg_cuda_conv2d_backward(rg_tangent_in(g, n, 0), rg_adjoint(g, n), dw_t, rg_param_grad(g, n, 0), NULL,
                            x->needs_grad && dw_t ? x->dout : NULL, false, batch, &a->geom, a->filters, a->o.groups,
                            g->workspace);
}

static void max_pool_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const pool_attr *a = n->attr;
    rg_cuda_max_pool_forward(rg_in(g, n, 0)->out, n->out, (int *)n->aux, batch, &a->geom, a->kernel, a->stride,
                             a->pad, a->zero_padded);
}

static void max_pool_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const pool_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    if (x->needs_grad)
        rg_cuda_max_pool_backward(x->out, n->out, (const int *)n->aux, n->dout, x->dout, batch, &a->geom, a->kernel,
                                  a->stride, a->pad);
}

static void max_pool_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const pool_attr *a = n->attr;
    rg_cuda_max_pool_tangent(rg_in(g, n, 0)->out, rg_tangent_in(g, n, 0), rg_tangent_out(g, n), batch, &a->geom,
                             a->kernel, a->stride, a->pad, a->zero_padded);
}

static void avg_pool_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const pool_attr *a = n->attr;
    rg_cuda_avg_pool_forward(rg_in(g, n, 0)->out, n->out, batch, &a->geom, a->kernel, a->stride, a->pad);
}

static void avg_pool_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const pool_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    if (x->needs_grad) rg_cuda_avg_pool_backward(n->dout, x->dout, batch, &a->geom, a->kernel, a->stride, a->pad);
}

/* Batch norm's scratch: three floats a channel for backward. */
static void batch_norm_plan(rg_graph *g, rg_node_impl *n) {
    (void)g;
    n->workspace = 3 * (size_t)n->shape[0];
}

static void batch_norm_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    bn_attr *a = n->attr;
    const int C = n->shape[0];
    const size_t hw = n->size / (size_t)C;
    a->last_train = batch_norm_trains(g, n, batch, train);
    rg_cuda_norm_statistics p = statistics_of(g, n);
    /* statistics the convolution before it made in this span of nodes, as it wrote this input */
    p.made = n->stats_from >= 0 && g->nodes[n->stats_from].stats_span == g->forward_spans && a->last_train;
    rg_cuda_batch_norm_forward(rg_in(g, n, 0)->out, n->out, batch, C, hw, a->last_train, &p, n->fused_relu >= 0);
}

static void batch_norm_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const bn_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    const int C = n->shape[0];
    /* a fused relu that took part in this backward: its gradient, masked here */
    const bool fused = n->fused_relu >= 0 && g->live[n->fused_relu];
    rg_cuda_batch_norm_backward(x->out, fused ? g->nodes[n->fused_relu].dout : n->dout, x->needs_grad ? x->dout : NULL,
                                batch, C, n->size / (size_t)C, a->last_train, rg_param_data(g, n, 0), n->aux, fused,
                                rg_param_grad(g, n, 0), rg_param_grad(g, n, 1), g->workspace, rg_grad_fresh(g, 0));
}

static void batch_norm_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const bn_attr *a = n->attr;
    const int C = n->shape[0];
    rg_cuda_batch_norm_tangent(rg_in(g, n, 0)->out, rg_tangent_in(g, n, 0), rg_tangent_out(g, n), batch, C,
                               n->size / (size_t)C, a->last_train, rg_param_data(g, n, 0), n->aux,
                               rg_param_tangent(g, n, 0), rg_param_tangent(g, n, 1), g->workspace);
}

static void batch_norm_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const bn_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    const int C = n->shape[0];
    const bool fused = n->fused_relu >= 0 && g->live[n->fused_relu];
    rg_cuda_batch_norm_backward_tangent(x->out, rg_tangent_in(g, n, 0),
                                        rg_adjoint(g, fused ? &g->nodes[n->fused_relu] : n),
                                        x->needs_grad ? x->dout : NULL, rg_param_grad(g, n, 0), batch, C,
                                        n->size / (size_t)C, a->last_train, n->aux, fused, rg_param_data(g, n, 0),
                                        rg_param_tangent(g, n, 0));
}

static void dropout_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    dropout_attr *a = n->attr;
    a->last_train = train && a->rate > 0;
    const uint64_t key = g->seed ^ ((uint64_t)(n - g->nodes) << 48) ^ (g->dropout_calls << 20); /* the CPU's */
    rg_cuda_dropout_forward(rg_in(g, n, 0)->out, n->out, n->aux, (size_t)batch * n->size, a->rate, key, a->last_train);
}

static void dropout_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const dropout_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    if (x->needs_grad) rg_cuda_dropout_backward(n->dout, n->aux, x->dout, (size_t)batch * n->size, a->last_train);
}

/* the mask (or nothing, outside training) on the tangent: backward's map, which adds */
static void dropout_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const size_t count = (size_t)batch * n->size;
    rg_cuda_fill(rg_tangent_out(g, n), count, 0.0f);
    rg_cuda_dropout_backward(rg_tangent_in(g, n, 0), n->aux, rg_tangent_out(g, n), count,
                             ((const dropout_attr *)n->attr)->last_train);
}

static void softmax_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const int k = n->shape[n->ndim - 1];
    rg_cuda_softmax_forward(rg_in(g, n, 0)->out, n->out, (size_t)batch * (n->size / (size_t)k), k);
}

static void softmax_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    const int k = n->shape[n->ndim - 1];
    if (x->needs_grad) rg_cuda_softmax_backward(n->out, n->dout, x->dout, (size_t)batch * (n->size / (size_t)k), k);
}

static void softmax_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    const int k = n->shape[n->ndim - 1];
    if (x->needs_grad)
        rg_cuda_softmax_backward_tangent(n->out, rg_tangent_out(g, n), rg_adjoint(g, n), x->dout,
                                         (size_t)batch * (n->size / (size_t)k), k);
}

/* softmax's Jacobian is symmetric: its tangent is backward's map of the input's tangent */
static void softmax_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const int k = n->shape[n->ndim - 1];
    const size_t rows = (size_t)batch * (n->size / (size_t)k);
    rg_cuda_fill(rg_tangent_out(g, n), rows * k, 0.0f);
    rg_cuda_softmax_backward(n->out, rg_tangent_in(g, n, 0), rg_tangent_out(g, n), rows, k);
}

static void mse_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *y = rg_in(g, n, 0);
    rg_cuda_mse_forward(y->out, n->n_inputs == 2 ? rg_in(g, n, 1)->out : NULL, g->device_labels, y->size, batch, n->out);
}

static void mse_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *y = rg_in(g, n, 0), *t = n->n_inputs == 2 ? rg_in(g, n, 1) : NULL;
    rg_cuda_mse_backward(y->out, t ? t->out : NULL, g->device_labels, n->dout, y->needs_grad ? y->dout : NULL,
                         t && t->needs_grad ? t->dout : NULL, y->size, batch);
}

static void mse_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const rg_node_impl *y = rg_in(g, n, 0);
    const bool target = n->n_inputs == 2;
    rg_cuda_mse_tangent(y->out, target ? rg_in(g, n, 1)->out : NULL, g->device_labels, rg_tangent_in(g, n, 0),
                        target ? rg_tangent_in(g, n, 1) : NULL, rg_tangent_out(g, n), y->size, batch);
}

/* Cross-entropy's scratch: a double a sample in the shared workspace. */
static void xent_plan(rg_graph *g, rg_node_impl *n) {
    (void)g;
    n->workspace_per_sample = sizeof(double) / sizeof(float);
}

static void xent_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *z = rg_in(g, n, 0);
    rg_cuda_softmax_xent_forward(z->out, g->device_labels, n->aux, (double *)g->workspace, n->out, batch,
                                 z->shape[0], ((const xent_attr *)n->attr)->smoothing);
}

static void xent_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *z = rg_in(g, n, 0);
    if (!z->needs_grad) return;
    rg_cuda_softmax_xent_backward(n->aux, g->device_labels, n->dout, z->dout, batch, z->shape[0],
                                  ((const xent_attr *)n->attr)->smoothing);
}

/* Tangents (forward mode, curvature.c) of the ops MLPs and plain CNNs are made of: an
 * input's is zero (or the direction a check gives), a flatten's its input's, a dense
 * layer's db + t_in W^T + x dW^T, an activation's f'(x) t_in (backward's rule on the
 * tangent), the cross-entropy's the mean of its gradient's product with the logits'
 * tangent; an add's the sum of its inputs' (add_tangent); the other linear ops' their forward
 * over the tangents (rg_cpu_linear_tangent swaps the buffers and calls this backend's
 * forward). */
static void input_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const float *dir = g->tangent_inputs ? g->tangent_inputs[n - g->nodes] : NULL;
    if (dir) rg_cuda_upload(rg_tangent_out(g, n), dir, rows(n, batch));
    else rg_cuda_fill(rg_tangent_out(g, n), rows(n, batch), 0.0f);
}

static void flatten_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_cuda_copy(rg_tangent_out(g, n), rg_tangent_in(g, n, 0), rows(n, batch));
}

static void dense_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const rg_node_impl *x = rg_in(g, n, 0);
    rg_cuda_dense_tangent(x->out, rg_tangent_in(g, n, 0), rg_param_data(g, n, 0), rg_param_tangent(g, n, 0),
                          rg_param_tangent(g, n, 1), rg_tangent_out(g, n), batch, x->shape[0], n->shape[0]);
}

static void activation_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_cuda_activation_backward(*(const rg_act *)n->attr, rg_in(g, n, 0)->out, n->out, rg_tangent_in(g, n, 0),
                                rg_tangent_out(g, n), (size_t)batch * n->size, true);
}

/* A convolution's: conv(t_in; W) + db, then + conv(x; dW) (the second product added). */
static void conv_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const conv_attr *a = n->attr;
    const float *dw = rg_param_tangent(g, n, 0), *db = a->o.bias ? rg_param_tangent(g, n, 1) : NULL;
    float *t = rg_tangent_out(g, n);
    rg_cuda_conv2d_forward(rg_tangent_in(g, n, 0), rg_param_data(g, n, 0), db, NULL, t, false, batch, &a->geom,
                           a->filters, a->o.groups, g->workspace, NULL);
    if (dw)
        rg_cuda_conv2d_forward(rg_in(g, n, 0)->out, dw, NULL, NULL, t, true, batch, &a->geom, a->filters, a->o.groups,
                               g->workspace, NULL);
}

static void xent_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_cuda_softmax_xent_tangent(n->aux, g->device_labels, rg_tangent_in(g, n, 0), rg_tangent_out(g, n), batch,
                                 rg_in(g, n, 0)->shape[0], ((const xent_attr *)n->attr)->smoothing);
}

/* n bf16 values, come down as the (n + 1) / 2 floats that hold them, widened in place from
 * the last down (value i lands on the bytes of values 2i and 2i + 1, which are read by
 * then). */
static void widen_bf16(float *buf, size_t n) {
    for (size_t i = n; i-- > 0;) {
        uint16_t h;
        memcpy(&h, (const char *)buf + 2 * i, sizeof h);
        const uint32_t bits = (uint32_t)h << 16;
        memcpy(&buf[i], &bits, sizeof bits);
    }
}

/* The last copy down, kept for the caller until the next call; NaN where the copy failed
 * (the step's status check then says why). */
static const float *host_copy(const float *x, size_t n, bool bf16) {
    static _Thread_local float *buf;
    static _Thread_local size_t room;
    static const float nan_one = NAN;
    if (n > room) {
        float *b = realloc(buf, n * sizeof *b);
        if (!b) return &nan_one; /* callers read one value or many: one is what is safe */
        buf = b, room = n;
    }
    if (rg_cuda_download(buf, x, bf16 ? (n + 1) / 2 : n) != RG_OK)
        for (size_t i = 0; i < n; i++) buf[i] = NAN;
    else if (bf16)
        widen_bf16(buf, n);
    return buf;
}

/* Copies down that do not wait (device.cu's), a bf16 buffer's widened once it lands. */
typedef struct {
    float *dst;
    size_t n;
} bf16_read;
static _Thread_local bf16_read *bf16_reads;
static _Thread_local size_t n_bf16_reads, bf16_reads_room;

static void read_later(float *dst, const float *x, size_t n, bool bf16) {
    if (bf16 && n_bf16_reads == bf16_reads_room) {
        const size_t want = bf16_reads_room ? 2 * bf16_reads_room : 8;
        bf16_read *r = realloc(bf16_reads, want * sizeof *r);
        if (!r) { /* read at once instead */
            memcpy(dst, host_copy(x, n, true), n * sizeof *dst);
            return;
        }
        bf16_reads = r, bf16_reads_room = want;
    }
    rg_cuda_download_later(dst, x, bf16 ? (n + 1) / 2 : n);
    if (bf16) bf16_reads[n_bf16_reads++] = (bf16_read){dst, n};
}

static rg_status reads_done(void) {
    const rg_status s = rg_cuda_downloads_done();
    for (size_t i = 0; i < n_bf16_reads; i++)
        if (s) {
            for (size_t j = 0; j < bf16_reads[i].n; j++) bf16_reads[i].dst[j] = NAN;
        } else
            widen_bf16(bf16_reads[i].dst, bf16_reads[i].n);
    n_bf16_reads = 0;
    return s;
}

static const float *host_view(const float *x, size_t n) { return host_copy(x, n, false); }
static const float *host_view_bf16(const float *x, size_t n) { return host_copy(x, n, true); }

/* The health monitor's sums: device reductions, queued (health.cu); the inputs' second
 * moments (the report's conditioning, GRA's trust region) device products read back at
 * once; a device failure gives NaN figures. */
static void unit_sums(const rg_node_impl *n, int batch, rg_count_kind want, float lo, float hi, float *scratch,
                      double *sum, double *sq, double *relu, long *near, int *dead) {
    (void)scratch;
    rg_cuda_unit_sums(n->out, n->size, n->shape[0], batch, want, lo, hi, sum, sq, relu, near, dead);
}

static void unit_sums_through(const rg_node_impl *n, int batch, rg_count_kind want, float lo, float hi, double *sums,
                              long *near, int *dead, rg_act act, rg_count_kind act_want, float act_lo,
                              double *act_sums, long *act_near, int *act_dead) {
    rg_cuda_unit_sums_through(n->out, n->size, n->shape[0], batch, want, lo, hi, sums, near, dead, act, act_want,
                              act_lo, act_sums, act_near, act_dead);
}

/* A device buffer's host copy (NULL when memory or the copy fails), for the sums and the
 * arithmetic below that run the CPU's code. */
static float *down(const float *device, size_t n) {
    float *h = device ? malloc((n ? n : 1) * sizeof *h) : NULL;
    if (h && rg_cuda_download(h, device, n) != RG_OK) free(h), h = NULL;
    return h;
}

/* products and column sums on the device, arriving at flush_sums (health.cu); NaN where
 * it fails */
static void input_moments(const float *x, size_t size, int batch, int f, const rg_conv_geom *q, float *moment,
                          float *mean, float *rows) {
    if (!rg_cuda_input_moments(x, size, batch, f, q, moment, mean, rows)) return;
    for (size_t i = 0; i < (size_t)f * f; i++) moment[i] = NAN;
    for (int i = 0; i < f; i++) mean[i] = NAN;
    for (size_t i = 0; rows && !q && i < (size_t)batch * f; i++) rows[i] = NAN;
}

/* GRA's repairs of a layer (at the probe and re-probes) over host copies by the CPU's code
 * (kernels/cpu/gra.c): its weights come down, the CPU's function runs, what it changed goes
 * back up; the monitor's figures it reads (scales, means) are in host memory already.  A
 * copy that fails leaves the weights as they were (the step's status check says why).
 * Its per-step arithmetic runs on the device (gra.cu), but for the bounds' last sums over
 * a few values a unit. */
static double polar(float *w, int rows, int cols, int max_steps, double tolerance, double max_flops) {
    const size_t n = (size_t)rows * cols;
    float *h = down(w, n);
    const double moved = h ? rg_cpu_polar(h, rows, cols, max_steps, tolerance, max_flops) : -1;
    if (moved >= 0) rg_cuda_upload(w, h, n);
    free(h);
    return moved;
}

static void recenter_units(float *w, float *b, int units, size_t row, const double *scale, const double *mean) {
    float *hw = down(w, (size_t)units * row), *hb = b ? down(b, (size_t)units) : NULL;
    if (hw && (!b || hb)) {
        rg_cpu_recenter_units(hw, hb, units, row, scale, mean);
        rg_cuda_upload(w, hw, (size_t)units * row);
        if (b) rg_cuda_upload(b, hb, (size_t)units);
    }
    free(hw), free(hb);
}

static double zero_sum_taps(float *w, int units, int channels, int taps) {
    const size_t n = (size_t)units * channels * taps;
    float *h = down(w, n);
    const double moved = h ? rg_cpu_zero_sum_taps(h, units, channels, taps) : 0;
    if (h) rg_cuda_upload(w, h, n);
    free(h);
    return moved;
}

static void function_change(const float *dw, const float *db, int units, int f, const float *moment,
                            const float *mean, float *scratch, double *sum) {
    (void)scratch;
    rg_cuda_function_change(dw, db, units, f, moment, mean, sum);
}

static void function_change_rows(const float *dw, const float *db, int units, int f, const float *rows, int n,
                                 float *scratch, double *sum) {
    (void)scratch;
    rg_cuda_function_change_rows(dw, db, units, f, rows, n, sum);
}

/* the sums queued on the device (gra.cu); rg_bound_from_sums makes the bound of them */
static void function_change_bound(const float *dw, const float *db, int units, int f, const float *qm, int k,
                                  float *scratch, rg_bound_sums *sums) {
    (void)scratch;
    *sums = (rg_bound_sums){0};
    if (!rg_cuda_bound_sums(dw, db, units, f, qm, k, sums)) sums->shift = NAN;
}

/* outside the passes (GRA's copies, the optimizer's moments, checkpoints): without a wait */
static void upload(float *dst, const float *src, size_t n) { rg_cuda_upload_later(dst, src, n * sizeof *src); }
static void download(float *dst, const float *src, size_t n) { rg_cuda_download(dst, src, n); }
static void upload_batch(const rg_upload *copies, int n) {
    rg_cuda_upload_batch_begin();
    for (int i = 0; i < n; i++) rg_cuda_upload_async(copies[i].device, copies[i].host, copies[i].bytes);
    rg_cuda_upload_batch_end();
}

const rg_backend rg_cuda_backend = {
    .name = "cuda",
    .bf16_ready = rg_cuda_bf16_ready,
    .begin_pass = rg_cuda_begin_pass,
    .host_view_bf16 = host_view_bf16,
    .ops = {
        [RG_OP_INPUT] = {input_forward, NULL, input_tangent, NULL},
        [RG_OP_DENSE] = {dense_forward, dense_backward, dense_tangent, NULL, dense_backward_tangent},
        [RG_OP_CONV2D] = {conv_forward, conv_backward, conv_tangent, conv_plan, conv_backward_tangent},
        [RG_OP_MAX_POOL] = {max_pool_forward, max_pool_backward, max_pool_tangent, NULL},
        [RG_OP_BATCH_NORM] = {batch_norm_forward, batch_norm_backward, batch_norm_tangent, batch_norm_plan,
                              batch_norm_backward_tangent},
        [RG_OP_AVG_POOL] = {avg_pool_forward, avg_pool_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_ACTIVATION] = {activation_forward, activation_backward, activation_tangent, NULL,
                              activation_backward_tangent},
        [RG_OP_FLATTEN] = {alias_forward, NULL, flatten_tangent, NULL},
        [RG_OP_FLATTEN_HWC] = {flatten_hwc_forward, flatten_hwc_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_ADD] = {add_forward, add_backward, add_tangent, NULL},
        [RG_OP_WEIGHTED_SUM] = {weighted_sum_forward, weighted_sum_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_ZERO_PAD] = {zero_pad_forward, zero_pad_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_CONCAT] = {concat_forward, concat_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_GLOBAL_AVG_POOL] = {global_avg_pool_forward, global_avg_pool_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_SOFTMAX_XENT] = {xent_forward, xent_backward, xent_tangent, xent_plan},
        [RG_OP_MSE] = {mse_forward, mse_backward, mse_tangent, NULL},
        [RG_OP_SOFTMAX] = {softmax_forward, softmax_backward, softmax_tangent, NULL, softmax_backward_tangent},
        [RG_OP_DROPOUT] = {dropout_forward, dropout_backward, dropout_tangent, NULL},
    },
    .alloc = rg_cuda_alloc,
    .release = rg_cuda_release,
    .host_view = host_view,
    .first_nonfinite = rg_cuda_first_nonfinite,
    .device = true,
    .upload = upload,
    .download = download,
    .read_later = read_later,
    .reads_done = reads_done,
    .pin = rg_cuda_pin,
    .upload_batch = upload_batch,
    .optim_update = rg_cuda_optim_update,
    .status = rg_cuda_status,
    .capture_begin = rg_cuda_capture_begin,
    .capture_end = rg_cuda_capture_end,
    .replay_begin = rg_cuda_replay_begin,
    .replay = rg_cuda_replay,
    .replay_free = rg_cuda_replay_free,
    .sums_mark = rg_cuda_sums_mark,
    .sums_back = rg_cuda_sums_back,
    .memory_moves = rg_cuda_memory_moves,
    .set_precision = rg_cuda_set_precision,
    .count_nonfinite = rg_cuda_count_nonfinite,
    .squares2 = rg_cuda_squares2,
    .squares_apart = rg_cuda_squares_apart,
    .unit_sums = unit_sums,
    .unit_sums_through = unit_sums_through,
    .sample_squares = rg_cuda_sample_squares,
    .input_moments = input_moments,
    .chunk_squares = rg_cuda_chunk_squares,
    .flush_sums = rg_cuda_sums_flush,
    .polar = polar,
    .recenter_units = recenter_units,
    .zero_sum_taps = zero_sum_taps,
    .function_change = function_change,
    .function_change_rows = function_change_rows,
    .function_change_bound = function_change_bound,
    .layer_steps = rg_cuda_layer_steps,
    .uncentre_steps = rg_cuda_uncentre_steps,
    .step_shifts = rg_cuda_step_shifts,
    .centre_gradients = rg_cuda_centre_gradients,
    .sums_of_squares = rg_cuda_sums_of_squares,
    .times_matrix = rg_cuda_times_matrix,
    .scale = rg_cuda_scale,
    .copy = rg_cuda_copy,
    .subtract = rg_cuda_subtract,
    .step_along = rg_cuda_step_along,
    .multiply = rg_cuda_multiply,
    .clamp = rg_cuda_clamp,
    .sum_squares = rg_cuda_sum_squares,
    .squares_in_order = rg_cuda_sum_squares, /* a fixed order, not the index order: ~1e-15 apart */
    .pieces_squares = rg_cuda_pieces_squares,
    .scale_pieces = rg_cuda_scale_pieces,
    .hier_prox = rg_cuda_hier_prox,
    .fill = rg_cuda_fill,
    .count_zeros = rg_cuda_count_zeros,
};

#endif

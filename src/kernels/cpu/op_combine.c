/*
 * op_combine.c — add, weighted sum, flatten (and its channels-last copy), zero padding and
 * concat on the CPU; their tangents, and that of any op linear in its inputs.
 */
#include "../../ops/ops.h"
#include "cpu.h"

#include <string.h>

void rg_cpu_add_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    if (n->inplace && rg_in(g, n, n->inplace_of)->added) return; /* its convolution did it */
    const float *a = rg_in(g, n, 0)->out, *b = rg_in(g, n, 1)->out; /* y may be a or b */
    float *y = n->out;
    const long count = (n->batched ? (long)batch : 1) * (long)n->size;
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
    for (long i = 0; i < count; i++) y[i] = a[i] + b[i];
}

void rg_cpu_add_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const long count = (n->batched ? (long)batch : 1) * (long)n->size;
    for (int k = 0; k < 2; k++) {
        rg_node_impl *in = rg_in(g, n, k);
        if (!in->needs_grad || in->grad_owner == n->grad_owner) continue; /* its gradient is this one */
        float *dx = in->dout;
        const float *dy = n->dout;
        if (rg_grad_fresh(g, k)) {
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
            for (long i = 0; i < count; i++) dx[i] = dy[i];
            continue;
        }
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
        for (long i = 0; i < count; i++) dx[i] += dy[i];
    }
}

void rg_cpu_weighted_sum_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const wsum_attr *a = n->attr;
    const long count = (n->batched ? (long)batch : 1) * (long)n->size;
    for (long i = 0; i < count; i++) {
        float y = 0;
        for (int k = 0; k < n->n_inputs; k++) y += a->w[k] * rg_in(g, n, k)->out[i];
        n->out[i] = y;
    }
}

void rg_cpu_weighted_sum_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const wsum_attr *a = n->attr;
    const long count = (n->batched ? (long)batch : 1) * (long)n->size;
    for (int k = 0; k < n->n_inputs; k++) {
        rg_node_impl *in = rg_in(g, n, k);
        if (!in->needs_grad) continue;
        for (long i = 0; i < count; i++) in->dout[i] += a->w[k] * n->dout[i];
    }
}

void rg_cpu_flatten_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)g, (void)n, (void)batch, (void)train; /* out aliases the input's buffer */
}

/* y[(h W + w) C + c] = x[c][h][w] for each sample, and its transpose backward. */
void rg_cpu_flatten_hwc_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *x = rg_in(g, n, 0);
    const size_t c = (size_t)x->shape[0], hw = (size_t)x->shape[1] * x->shape[2];
    for (int b = 0; b < batch; b++) {
        const float *xs = x->out + (size_t)b * n->size;
        float *ys = n->out + (size_t)b * n->size;
        for (size_t k = 0; k < c; k++)
            for (size_t p = 0; p < hw; p++) ys[p * c + k] = xs[k * hw + p];
    }
}

void rg_cpu_flatten_hwc_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    if (!x->needs_grad) return;
    const size_t c = (size_t)x->shape[0], hw = (size_t)x->shape[1] * x->shape[2];
    for (int b = 0; b < batch; b++) {
        float *dxs = x->dout + (size_t)b * n->size;
        const float *dys = n->dout + (size_t)b * n->size;
        for (size_t k = 0; k < c; k++)
            for (size_t p = 0; p < hw; p++) dxs[k * hw + p] += dys[p * c + k];
    }
}

void rg_cpu_zero_pad_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const pad_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    const int h = x->shape[1], w = x->shape[2], ow = n->shape[2];
    const long planes = (long)batch * x->shape[0];
    memset(n->out, 0, (size_t)batch * n->size * sizeof(float));
    for (long p = 0; p < planes; p++) {
        const float *xp = x->out + (size_t)p * h * w;
        float *yp = n->out + (size_t)p * n->shape[1] * ow;
        for (int i = 0; i < h; i++)
            memcpy(yp + (size_t)(i + a->top) * ow + a->left, xp + (size_t)i * w, (size_t)w * sizeof(float));
    }
}

void rg_cpu_zero_pad_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const pad_attr *a = n->attr;
    rg_node_impl *x = rg_in(g, n, 0);
    if (!x->needs_grad) return;
    const int h = x->shape[1], w = x->shape[2], ow = n->shape[2];
    const long planes = (long)batch * x->shape[0];
    for (long p = 0; p < planes; p++) {
        float *dxp = x->dout + (size_t)p * h * w;
        const float *dyp = n->dout + (size_t)p * n->shape[1] * ow;
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) dxp[i * w + j] += dyp[(size_t)(i + a->top) * ow + a->left + j];
    }
}

void rg_cpu_concat_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    for (int b = 0; b < batch; b++) {
        float *y = n->out + (size_t)b * n->size;
        for (int k = 0; k < n->n_inputs; k++) {
            const rg_node_impl *x = rg_in(g, n, k);
            memcpy(y, x->out + (size_t)b * x->size, x->size * sizeof(float));
            y += x->size;
        }
    }
}

void rg_cpu_concat_backward(rg_graph *g, rg_node_impl *n, int batch) {
    for (int b = 0; b < batch; b++) {
        const float *dy = n->dout + (size_t)b * n->size;
        for (int k = 0; k < n->n_inputs; k++) {
            rg_node_impl *x = rg_in(g, n, k);
            if (x->needs_grad) {
                float *dx = x->dout + (size_t)b * x->size;
                for (size_t i = 0; i < x->size; i++) dx[i] += dy[i];
            }
            dy += x->size;
        }
    }
}

void rg_cpu_add_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const long count = (n->batched ? (long)batch : 1) * (long)n->size;
    const float *a = rg_tangent_in(g, n, 0), *b = rg_tangent_in(g, n, 1);
    float *t = rg_tangent_out(g, n);
    for (long i = 0; i < count; i++) t[i] = a[i] + b[i];
}

void rg_cpu_flatten_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    memcpy(rg_tangent_out(g, n), rg_tangent_in(g, n, 0), (size_t)batch * n->size * sizeof(float));
}

void rg_cpu_linear_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    float *keep[RG_MAX_INPUTS], *out = n->out;
    for (int k = 0; k < n->n_inputs; k++) {
        keep[k] = rg_in(g, n, k)->out;
        rg_in(g, n, k)->out = (float *)rg_tangent_in(g, n, k);
    }
    n->out = rg_tangent_out(g, n);
    g->backend->ops[n->op].forward(g, n, batch, false);
    n->out = out;
    for (int k = n->n_inputs - 1; k >= 0; k--) rg_in(g, n, k)->out = keep[k];
}

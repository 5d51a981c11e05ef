/*
 * constraints.c — the classic remedies that act on gradients and weights around the
 * optimizer step: gradient clipping by value, by each tensor's norm (Keras clipnorm), by
 * the global norm (torch.nn.utils.clip_grad_norm_), adaptive gradient clipping per unit
 * (Brock et al. 2021, NFNets), and the max-norm weight constraint (Keras MaxNorm).
 *
 * A "unit" is one output of a dense or conv layer: a dense kernel's row (regrad's kernels
 * are [out, in]) or a conv kernel's output filter (OIHW: the C/groups x K x K block of one
 * O).  Only trainable parameters are touched.  Sums of squares run in double.
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <math.h>
#include <string.h>

#define AGC_EPS 1e-3  /* NFNets' floor on a unit's weight norm */
#define MAXNORM_EPS 1e-7 /* Keras's backend epsilon in MaxNorm */


void rg_clip_grad_value(rg_graph *g, float v) {
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        if (!p->trainable) continue;
        g->backend->clamp(g->grad_buf + p->offset, p->size, v);
    }
}

void rg_clip_grad_tensor_norm(rg_graph *g, float c) {
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        if (!p->trainable) continue;
        float *d = g->grad_buf + p->offset;
        const double norm = sqrt(g->backend->squares_in_order(d, p->size));
        if (norm > c) g->backend->scale(d, p->size, (float)(c / norm));
    }
}

double rg_clip_grad_norm(rg_graph *g, float c) {
    double total = 0;
    for (int i = 0; i < g->n_params; i++)
        if (g->params[i].trainable) total += g->backend->squares_in_order(g->grad_buf + g->params[i].offset, g->params[i].size);
    const double norm = sqrt(total);
    if (norm > c) { /* torch: coefficient c / (norm + 1e-6), applied when below 1 */
        const float f = (float)(c / (norm + 1e-6));
        for (int i = 0; i < g->n_params; i++)
            if (g->params[i].trainable) g->backend->scale(g->grad_buf + g->params[i].offset, g->params[i].size, f);
    }
    return norm;
}

static bool is_kernel(const rg_param_impl *p) { return strcmp(p->suffix, "kernel") == 0; }

void rg_clip_grad_agc(rg_graph *g, float lambda, rg_node skip) {
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        if (!p->trainable || p->node == skip || p->state) continue;
        /* units: a kernel's rows; any other tensor (bias, gamma, beta): its elements */
        const size_t units = is_kernel(p) ? (size_t)p->shape[0] : p->size;
        const size_t len = p->size / units;
        const float *w = g->param_buf + p->offset;
        float *d = g->grad_buf + p->offset;
        for (size_t u = 0; u < units; u++) {
            const double wn = fmax(sqrt(g->backend->squares_in_order(w + u * len, len)), AGC_EPS);
            const double gn = sqrt(g->backend->squares_in_order(d + u * len, len));
            if (gn > lambda * wn) g->backend->scale(d + u * len, len, (float)(lambda * wn / gn));
        }
    }
}

void rg_apply_max_norm(rg_graph *g, float c) {
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        if (!p->trainable || !is_kernel(p)) continue;
        const size_t units = (size_t)p->shape[0], len = p->size / units;
        float *w = g->param_buf + p->offset;
        for (size_t u = 0; u < units; u++) {
            /* Keras, exactly: w * clip(norm, 0, c) / (eps + norm), for every unit */
            const double norm = sqrt(g->backend->squares_in_order(w + u * len, len));
            g->backend->scale(w + u * len, len, (float)(fmin(norm, c) / (MAXNORM_EPS + norm)));
        }
    }
}

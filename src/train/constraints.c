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
#include <stdint.h>
#include <stdlib.h>
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

/* The pieces a remedy sums and scales: whole tensors, or their units (a kernel's rows,
 * another tensor's elements).  They go to the backend in batches, all of them at once
 * where the scratch holds them (a device then waits once a call, not once a piece), else
 * as many as a small batch on the stack holds. */
typedef enum { WHOLE, UNITS } cut;
typedef bool (*takes_fn)(const rg_param_impl *p, rg_node skip);
enum { SMALL = 64 };
typedef struct {
    size_t *at, *len;   /* each piece's place in the flat buffers */
    double *sum, *sum2; /* its sums of squares (the weights' or the gradients'; AGC: both) */
    float *f;           /* the factor it is scaled by */
    size_t cap;
} batch;
typedef struct {
    size_t at[SMALL], len[SMALL];
    double sum[SMALL], sum2[SMALL];
    float f[SMALL];
} small_batch;

static bool is_kernel(const rg_param_impl *p) { return strcmp(p->suffix, "kernel") == 0; }

static size_t pieces_of(const rg_param_impl *p, cut how) {
    return how == WHOLE ? 1 : is_kernel(p) ? (size_t)p->shape[0] : p->size;
}

/* Room for `want` pieces: a scratch kept between calls (grown as asked), or the small one. */
static batch batch_for(size_t want, small_batch *small) {
    static _Thread_local char *kept;
    static _Thread_local size_t kept_cap;
    const size_t each = 2 * sizeof(size_t) + 2 * sizeof(double) + sizeof(float);
    if (want > SMALL && want > kept_cap && want < SIZE_MAX / each) {
        char *p = realloc(kept, want * each);
        if (p) kept = p, kept_cap = want;
    }
    if (kept_cap <= SMALL) return (batch){small->at, small->len, small->sum, small->sum2, small->f, SMALL};
    const size_t cap = kept_cap;
    size_t *at = (size_t *)kept;
    double *sum = (double *)(at + 2 * cap);
    return (batch){at, at + cap, sum, sum + cap, (float *)(sum + 2 * cap), cap};
}

/* A walk over the pieces of the tensors `takes` accepts, a batch at a time. */
typedef struct {
    const rg_graph *g;
    takes_fn takes;
    rg_node skip;
    cut how;
    int param;   /* where it stands: a tensor, */
    size_t unit; /* and a piece of it */
    small_batch small;
    batch b;
} walk;

static size_t count_pieces(const rg_graph *g, takes_fn takes, rg_node skip, cut how) {
    size_t n = 0;
    for (int i = 0; i < g->n_params; i++)
        if (takes(&g->params[i], skip)) n += pieces_of(&g->params[i], how);
    return n;
}

static void walk_start(walk *w, const rg_graph *g, takes_fn takes, rg_node skip, cut how) {
    w->g = g, w->takes = takes, w->skip = skip, w->how = how, w->param = 0, w->unit = 0;
    w->b = batch_for(count_pieces(g, takes, skip, how), &w->small);
}

/* The walk's next pieces into w->b, with the sums of squares of x's (and x2's, when given)
 * in b.sum (b.sum2), arrived; how many (0: the walk is done). */
static size_t walk_next(walk *w, const float *x, const float *x2) {
    const rg_graph *g = w->g;
    const batch *b = &w->b;
    size_t n = 0;
    for (; w->param < g->n_params && n < b->cap; w->param++, w->unit = 0) {
        const rg_param_impl *p = &g->params[w->param];
        const size_t units = w->takes(p, w->skip) ? pieces_of(p, w->how) : 0;
        if (!units) continue;
        const size_t len = p->size / units;
        for (; w->unit < units && n < b->cap; w->unit++, n++) b->at[n] = p->offset + w->unit * len, b->len[n] = len;
        if (w->unit < units) break; /* the batch is full inside this tensor */
    }
    if (n && x) g->backend->pieces_squares(x, b->at, b->len, n, b->sum);
    if (n && x2) g->backend->pieces_squares(x2, b->at, b->len, n, b->sum2);
    if (n && x) rg_graph_sums_arrive(g);
    return n;
}

/* Piece i of the batch kept as the k-th to scale, by f; k + 1. */
static size_t keep(const batch *b, size_t k, size_t i, float f) {
    b->at[k] = b->at[i], b->len[k] = b->len[i], b->f[k] = f;
    return k + 1;
}

static bool trainable(const rg_param_impl *p, rg_node skip) { return (void)skip, p->trainable; }
static bool trainable_kernel(const rg_param_impl *p, rg_node skip) { return (void)skip, p->trainable && is_kernel(p); }
static bool agc_takes(const rg_param_impl *p, rg_node skip) { return p->trainable && p->node != skip && !p->state; }

void rg_clip_grad_tensor_norm(rg_graph *g, float c) {
    walk w;
    walk_start(&w, g, trainable, RG_NONE, WHOLE);
    for (size_t n; (n = walk_next(&w, g->grad_buf, NULL));) {
        size_t k = 0; /* the tensors over c, scaled down to it */
        for (size_t i = 0; i < n; i++) {
            const double norm = sqrt(w.b.sum[i]);
            if (norm > c) k = keep(&w.b, k, i, (float)(c / norm));
        }
        g->backend->scale_pieces(g->grad_buf, w.b.at, w.b.len, k, w.b.f);
    }
}

double rg_clip_grad_norm(rg_graph *g, float c) {
    walk w;
    double total = 0;
    walk_start(&w, g, trainable, RG_NONE, WHOLE);
    for (size_t n; (n = walk_next(&w, g->grad_buf, NULL));)
        for (size_t i = 0; i < n; i++) total += w.b.sum[i];
    const double norm = sqrt(total);
    if (norm > c) { /* torch: coefficient c / (norm + 1e-6), applied when below 1 */
        const float f = (float)(c / (norm + 1e-6));
        walk_start(&w, g, trainable, RG_NONE, WHOLE);
        for (size_t n; (n = walk_next(&w, NULL, NULL));) {
            for (size_t i = 0; i < n; i++) w.b.f[i] = f;
            g->backend->scale_pieces(g->grad_buf, w.b.at, w.b.len, n, w.b.f);
        }
    }
    return norm;
}

void rg_clip_grad_agc(rg_graph *g, float lambda, rg_node skip) {
    walk w;
    walk_start(&w, g, agc_takes, skip, UNITS);
    for (size_t n; (n = walk_next(&w, g->param_buf, g->grad_buf));) {
        size_t k = 0; /* the units whose gradient is over lambda x their weights' norm */
        for (size_t i = 0; i < n; i++) {
            const double wn = fmax(sqrt(w.b.sum[i]), AGC_EPS), gn = sqrt(w.b.sum2[i]);
            if (gn > lambda * wn) k = keep(&w.b, k, i, (float)(lambda * wn / gn));
        }
        g->backend->scale_pieces(g->grad_buf, w.b.at, w.b.len, k, w.b.f);
    }
}

void rg_apply_max_norm(rg_graph *g, float c) {
    walk w;
    walk_start(&w, g, trainable_kernel, RG_NONE, UNITS);
    for (size_t n; (n = walk_next(&w, g->param_buf, NULL));) {
        for (size_t i = 0; i < n; i++) { /* Keras, exactly: w * clip(norm, 0, c) / (eps + norm), every unit */
            const double norm = sqrt(w.b.sum[i]);
            w.b.f[i] = (float)(fmin(norm, c) / (MAXNORM_EPS + norm));
        }
        g->backend->scale_pieces(g->param_buf, w.b.at, w.b.len, n, w.b.f);
    }
}

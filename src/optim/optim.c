/*
 * optim.c — optimizers as flat loops over the parameter, gradient and moment buffers.
 *
 * The update rules and defaults are PyTorch 1.13's (torch.optim, single-tensor path), so a
 * run can be checked against it step for step (tests/test_golden.c does, for 3 steps):
 *   sgd       d = g + wd w;  buf = d (first step) | mu buf + d;  d = nesterov ? d + mu buf : buf
 *             w -= lr d
 *   adagrad   d = g + wd w;  sum += d^2;  w -= lr d / (sqrt(sum) + eps)
 *   rmsprop   d = g + wd w;  v = a v + (1-a) d^2;  avg = sqrt(v) + eps
 *             w -= lr d / avg   (momentum: buf = mu buf + d / avg;  w -= lr buf)
 *   adam      d = g + wd w;  m = b1 m + (1-b1) d;  v = b2 v + (1-b2) d^2
 *             w -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   adamw     w *= 1 - lr wd, then adam without the L2 term
 */
#include "../internal.h"
#include "../kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MOMENTS 2

struct rg_optim {
    rg_optim_config c;
    size_t n;
    long steps;
    int n_moments;
    float *moment[MAX_MOMENTS];
    const char *moment_name[MAX_MOMENTS];
    int n_ranges;                 /* 0: update everything; else only these ranges */
    size_t *range_off, *range_len;
    int n_measured;               /* ranges the next step measures (in order) */
    const size_t *measure_off, *measure_len;
    double *measured;             /* 3 per range: squared change, gradient, weights before */
};

static const char *const optim_names[RG_OPTIM_COUNT] = {
    [RG_OPTIM_SGD] = "sgd",         [RG_OPTIM_MOMENTUM] = "momentum",
    [RG_OPTIM_NESTEROV] = "nesterov", [RG_OPTIM_ADAGRAD] = "adagrad",
    [RG_OPTIM_RMSPROP] = "rmsprop", [RG_OPTIM_ADAM] = "adam",
    [RG_OPTIM_ADAMW] = "adamw",
};

const char *rg_optim_name(rg_optim_kind k) {
    return (k >= 0 && k < RG_OPTIM_COUNT) ? optim_names[k] : "?";
}

rg_status rg_optim_parse(const char *name, rg_optim_kind *out) {
    for (int k = 0; k < RG_OPTIM_COUNT; k++)
        if (name && strcmp(name, optim_names[k]) == 0) {
            *out = (rg_optim_kind)k;
            return RG_OK;
        }
    return rg_fail(RG_ERR_ARG, "unknown optimizer '%s': use sgd, momentum, nesterov, adagrad, "
                               "rmsprop, adam or adamw", name ? name : "");
}

rg_optim_config rg_optim_defaults(rg_optim_kind kind) {
    rg_optim_config c = {.kind = kind, .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f,
                         .alpha = 0.99f, .eps = 1e-8f};
    switch (kind) {
    case RG_OPTIM_MOMENTUM:
    case RG_OPTIM_NESTEROV: c.momentum = 0.9f; break;
    case RG_OPTIM_ADAGRAD: c.eps = 1e-10f; break;
    case RG_OPTIM_ADAM: c.lr = 1e-3f; break;
    case RG_OPTIM_ADAMW: c.lr = 1e-3f; c.weight_decay = 0.01f; break;
    default: break;
    }
    return c;
}

rg_status rg_optim_check(const rg_optim_config *c) {
    if (c->kind < 0 || c->kind >= RG_OPTIM_COUNT) return rg_fail(RG_ERR_ARG, "unknown optimizer");
    if (!(c->lr > 0) || !isfinite(c->lr))
        return rg_fail(RG_ERR_ARG, "learning rate must be a positive number, got %g", (double)c->lr);
    if (!(c->momentum >= 0 && c->momentum < 1))
        return rg_fail(RG_ERR_ARG, "momentum must be in [0, 1), got %g", (double)c->momentum);
    if (c->kind == RG_OPTIM_NESTEROV && c->momentum == 0)
        return rg_fail(RG_ERR_ARG, "nesterov needs a momentum above 0");
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return rg_fail(RG_ERR_ARG, "adam betas must be in [0, 1), got %g and %g",
                       (double)c->beta1, (double)c->beta2);
    if (!(c->alpha >= 0 && c->alpha < 1))
        return rg_fail(RG_ERR_ARG, "rmsprop alpha must be in [0, 1), got %g", (double)c->alpha);
    if (!(c->eps > 0) || !isfinite(c->eps))
        return rg_fail(RG_ERR_ARG, "eps must be a positive number, got %g", (double)c->eps);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return rg_fail(RG_ERR_ARG, "weight decay must be 0 or more, got %g",
                       (double)c->weight_decay);
    return RG_OK;
}

/* The moment buffers a configuration keeps, by name (PyTorch's state keys). */
static int moment_names(const rg_optim_config *c, const char *names[MAX_MOMENTS]) {
    int n = 0;
    switch (c->kind) {
    case RG_OPTIM_SGD:
    case RG_OPTIM_MOMENTUM:
    case RG_OPTIM_NESTEROV:
        if (c->momentum > 0) names[n++] = "momentum_buffer";
        break;
    case RG_OPTIM_ADAGRAD: names[n++] = "sum"; break;
    case RG_OPTIM_RMSPROP:
        names[n++] = "square_avg";
        if (c->momentum > 0) names[n++] = "momentum_buffer";
        break;
    case RG_OPTIM_ADAM:
    case RG_OPTIM_ADAMW:
        names[n++] = "exp_avg";
        names[n++] = "exp_avg_sq";
        break;
    default: break;
    }
    return n;
}

int rg_optim_moment_count(const rg_optim_config *c) {
    const char *names[MAX_MOMENTS];
    return moment_names(c, names);
}

rg_optim *rg_optim_create(const rg_optim_config *c, size_t n) {
    if (rg_optim_check(c) != RG_OK) return NULL;
    rg_optim *o = calloc(1, sizeof *o);
    if (!o) goto oom;
    o->c = *c;
    o->n = n;
    o->n_moments = moment_names(c, o->moment_name);
    for (int k = 0; k < o->n_moments; k++)
        if (!(o->moment[k] = calloc(n ? n : 1, sizeof(float)))) goto oom;
    return o;
oom:
    rg_optim_free(o);
    rg_fail(RG_ERR_MEMORY, "out of memory for optimizer state (%zu floats)", n);
    return NULL;
}

void rg_optim_free(rg_optim *o) {
    if (!o) return;
    for (int k = 0; k < MAX_MOMENTS; k++) free(o->moment[k]);
    free(o->range_off);
    free(o->range_len);
    free(o);
}

long rg_optim_steps(const rg_optim *o) { return o->steps; }

float *rg_optim_moment(rg_optim *o, int k, const char **name) {
    if (!o || k < 0 || k >= o->n_moments) return NULL;
    if (name) *name = o->moment_name[k];
    return o->moment[k];
}

/* What one step's update needs besides the buffers, computed once per step. */
typedef struct step_consts {
    float lr;
    float step_size, bc2_sqrt, l2, shrink; /* adam, adamw */
    bool first;                           /* sgd: the momentum buffer starts as d */
} step_consts;

/* The loop of a kind's update over w[0, n): BODY turns w[i] into its new value (reading
 * g[i] and the kind's moments at i).  Measured, each value is first kept in old[] (the
 * same BODY, so the update's bits are the same either way), for rg_update_squares. */
#define UPDATE_LOOP(BODY)                                                                     \
    do {                                                                                      \
        if (!old) {                                                                           \
            for (size_t i = 0; i < n; i++) { BODY }                                           \
            break;                                                                            \
        }                                                                                     \
        for (size_t i = 0; i < n; i++) {                                                      \
            old[i] = w[i];                                                                    \
            BODY                                                                              \
        }                                                                                     \
    } while (0)

/* Each kind's update of [off, off + n) on one thread (update_range shares the pieces), for
 * plain x86-64 and again for AVX2 and AVX-512, picked by rg_cpu_isa: the same bits. */
#define RULE(name) name##_base
#include "update_rules.h"
#undef RULE
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2")
#define RULE(name) name##_avx2
#include "update_rules.h"
#undef RULE
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f")
#define RULE(name) name##_avx512
#include "update_rules.h"
#undef RULE
#pragma GCC pop_options
#endif

/* Updates [off, off + n), n at most RG_SQUARES_PIECE; measured, sums[0..2] = the squares
 * of the change, of the gradient and of the old values, kept on the stack (in L1) for it. */
static void update_piece(rg_optim *o, const step_consts *k, size_t off, size_t n,
                         float *params, const float *grads, double *sums) {
    float *w = params + off;
    const float *g = grads + off;
    float kept[RG_SQUARES_PIECE], *old = sums ? kept : NULL;
    void (*rule)(rg_optim *, const step_consts *, size_t, size_t, float *, const float *,
                 float *) = update_rule_base;
#if defined(__x86_64__) && defined(__GNUC__)
    if (rg_cpu_isa() == RG_ISA_AVX512) rule = update_rule_avx512;
    else if (rg_cpu_isa() == RG_ISA_AVX2) rule = update_rule_avx2;
#endif
    rule(o, k, off, n, w, g, old);
    if (sums) rg_update_squares(w, old, g, n, sums);
}

/* Updates [off, off + n) in pieces shared by the team.  With `sums`, each piece keeps its
 * old values on the stack (in L1) and takes the squares of its gradient, of those old
 * values and of their change, the pieces' sums added in order into sums[0..2]: the same
 * figures whatever the thread count, without a copy of the weights or another pass over
 * them or their gradients. */
#define PIECE RG_SQUARES_PIECE
static void update_range(rg_optim *o, const step_consts *k, size_t off, size_t n,
                         float *params, const float *grads, double *sums) {
    const size_t pieces = (n + PIECE - 1) / PIECE;
    double local[3 * 64], *part = !sums ? NULL : pieces <= 64 ? local : malloc(3 * pieces * sizeof *part);
    if (sums && !part) { /* no memory for the pieces' sums: one piece at a time */
        for (size_t at = off; at < off + n; at += PIECE)
            update_range(o, k, at, off + n - at < PIECE ? off + n - at : PIECE, params, grads, sums);
        return;
    }
#pragma omp parallel for schedule(static) if (n > RG_PARALLEL_MIN)
    for (size_t i = 0; i < pieces; i++) {
        const size_t lo = off + i * PIECE, len = off + n - lo < PIECE ? off + n - lo : PIECE;
        update_piece(o, k, lo, len, params, grads, part ? part + 3 * i : NULL);
    }
    for (size_t i = 0; part && i < pieces; i++)
        for (int j = 0; j < 3; j++) sums[j] += part[3 * i + j];
    if (part != local) free(part);
}

/* Updates [off, off + len), measuring the parts that lie in measured ranges. */
static void update(rg_optim *o, const step_consts *k, size_t off, size_t len, float *params,
                   const float *grads) {
    size_t at = off;
    const size_t end = off + len;
    for (int i = 0; i < o->n_measured && at < end; i++) {
        const size_t mo = o->measure_off[i], me = mo + o->measure_len[i];
        const size_t lo = mo > at ? mo : at, hi = me < end ? me : end;
        if (lo >= hi) continue;
        if (lo > at) update_range(o, k, at, lo - at, params, grads, NULL);
        update_range(o, k, lo, hi - lo, params, grads, o->measured + 3 * i);
        at = hi;
    }
    if (at < end) update_range(o, k, at, end - at, params, grads, NULL);
}

void rg_optim_step(rg_optim *o, float *params, const float *grads, float lr) {
    const bool decoupled = o->c.kind == RG_OPTIM_ADAMW;
    const double t = (double)(o->steps + 1);
    const step_consts k = {
        .lr = lr,
        .first = o->steps == 0,
        .step_size = (float)(lr / (1.0 - pow(o->c.beta1, t))),
        .bc2_sqrt = (float)sqrt(1.0 - pow(o->c.beta2, t)),
        .l2 = decoupled ? 0.0f : o->c.weight_decay,
        .shrink = decoupled ? 1.0f - lr * o->c.weight_decay : 1.0f,
    };
    for (int i = 0; i < 3 * o->n_measured; i++) o->measured[i] = 0;
    if (!o->n_ranges) {
        update(o, &k, 0, o->n, params, grads);
    } else {
        for (int r = 0; r < o->n_ranges; r++)
            update(o, &k, o->range_off[r], o->range_len[r], params, grads);
    }
    o->n_measured = 0; /* for the next step only */
    o->steps++;
}

rg_status rg_optim_measure_next(rg_optim *o, int n, const size_t *offset, const size_t *length,
                                double *sums) {
    for (int i = 0; i < n; i++)
        if (offset[i] > o->n || length[i] > o->n - offset[i] ||
            (i > 0 && offset[i] < offset[i - 1] + length[i - 1]))
            return rg_fail(RG_ERR_ARG, "measured range %d is out of order or outside the %zu "
                                       "parameters", i, o->n);
    o->n_measured = n;
    o->measure_off = offset, o->measure_len = length, o->measured = sums;
    return RG_OK;
}

rg_status rg_optim_limit(rg_optim *o, int n, const size_t *offset, const size_t *length) {
    free(o->range_off);
    free(o->range_len);
    o->range_off = o->range_len = NULL;
    o->n_ranges = 0;
    if (n <= 0) return RG_OK;
    o->range_off = malloc((size_t)n * sizeof(size_t));
    o->range_len = malloc((size_t)n * sizeof(size_t));
    if (!o->range_off || !o->range_len) return rg_fail(RG_ERR_MEMORY, "out of memory");
    for (int r = 0; r < n; r++) {
        if (offset[r] > o->n || length[r] > o->n - offset[r])
            return rg_fail(RG_ERR_ARG, "optimizer range %d lies outside its %zu floats", r, o->n);
        o->range_off[r] = offset[r];
        o->range_len[r] = length[r];
    }
    o->n_ranges = n;
    return RG_OK;
}

void rg_optim_set_steps(rg_optim *o, long steps) { o->steps = steps; }

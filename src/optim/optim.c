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
#include "../kernels/backend.h"
#include "../kernels/kernels.h"
#include "step.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

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
    float *keep;                  /* where the next step keeps the weights it starts from */
    int n_then;                   /* ranges the next step hands to then() once written */
    const size_t *then_off, *then_len;
    void (*then)(void *ctx, int i);
    void *then_ctx;
    unsigned char *then_done;     /* per range: then() called (then_room of them) */
    int then_room;
    struct update_piece_plan *plan; /* the next step's pieces (see plan_step) */
    size_t plan_room;
    const rg_backend *device;     /* where the moments live when not in host memory */
};

static rg_status make_room(rg_optim *o);

static const char *const optim_names[RG_OPTIM_COUNT] = {
    [RG_OPTIM_SGD] = "sgd",         [RG_OPTIM_MOMENTUM] = "momentum",
    [RG_OPTIM_NESTEROV] = "nesterov", [RG_OPTIM_ADAGRAD] = "adagrad",
    [RG_OPTIM_RMSPROP] = "rmsprop", [RG_OPTIM_ADAM] = "adam",
    [RG_OPTIM_ADAMW] = "adamw",
};

const char *const *rg_optim_names(int *n) {
    *n = RG_OPTIM_COUNT;
    return optim_names;
}

const char *rg_optim_name(rg_optim_kind k) {
    return (k >= 0 && k < RG_OPTIM_COUNT) ? optim_names[k] : "?";
}

rg_status rg_optim_parse(const char *name, rg_optim_kind *out) {
    const int k = rg_name_index(optim_names, RG_OPTIM_COUNT, name);
    if (k < 0) return rg_fail_unknown("optimizer", name, optim_names, RG_OPTIM_COUNT);
    *out = (rg_optim_kind)k;
    return RG_OK;
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
    if (make_room(o) != RG_OK) goto oom;
    return o;
oom:
    rg_optim_free(o);
    rg_fail(RG_ERR_MEMORY, "out of memory for optimizer state (%zu floats)", n);
    return NULL;
}

void rg_optim_free(rg_optim *o) {
    if (!o) return;
    for (int k = 0; k < MAX_MOMENTS; k++)
        if (o->device) o->device->release(o->moment[k]);
        else free(o->moment[k]);
    free(o->plan);
    free(o->then_done);
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

/* Each kind's update of a piece on one thread (update_share hands them out), for plain
 * x86-64 and again for AVX2 and AVX-512, picked by rg_cpu_isa: the same bits. */
typedef float v4f __attribute__((vector_size(16)));
#if defined(__x86_64__) && defined(__GNUC__)
#define VSQRT(x) _mm_sqrt_ps(x)
#else
static v4f sqrt_lanes(v4f x) {
    for (int i = 0; i < 4; i++) x[i] = sqrtf(x[i]);
    return x;
}
#define VSQRT(x) sqrt_lanes(x)
#endif
#define VF v4f
#define TARGET
#define RULE(name) name##_base
#include "update_rules.h"
#undef RULE
#undef TARGET
#undef VF
#undef VSQRT
#if defined(__x86_64__) && defined(__GNUC__)
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
#define VF v8f
#define VSQRT(x) _mm256_sqrt_ps(x)
#define TARGET __attribute__((target("avx2")))
#define RULE(name) name##_avx2
#include "update_rules.h"
#undef RULE
#undef TARGET
#undef VF
#undef VSQRT
#define VF v16f
#define VSQRT(x) _mm512_sqrt_ps(x)
#define TARGET __attribute__((target("avx512f")))
#define RULE(name) name##_avx512
#include "update_rules.h"
#undef RULE
#undef TARGET
#undef VF
#undef VSQRT
#endif

void rg_optim_update_range(rg_optim_kind kind, const step_consts *k, size_t n, float *w, const float *g,
                           float *m0, float *m1) {
    RG_PICK(update_rule)(kind, k, n, w, g, m0, m1, NULL, NULL);
}

/* Updates [off, off + n), n at most RG_SQUARES_PIECE; measured, sums[0..2] = the squares
 * of the change, of the gradient and of the old values, taken in the update's own pass
 * (the old values kept on the stack, in L1, for the tail and for rg_finish_update_squares'
 * second look at sums out of float's range). */
static void update_piece(rg_optim *o, const step_consts *k, size_t off, size_t n,
                         float *params, const float *grads, double *sums) {
    float *w = params + off, *m0 = o->moment[0] ? o->moment[0] + off : NULL;
    float *m1 = o->moment[1] ? o->moment[1] + off : NULL;
    _Alignas(64) float stack[RG_SQUARES_PIECE];
    float lanes[3 * 64];
    float *kept = o->keep ? o->keep + off : sums ? stack : NULL;
    RG_PICK(update_rule)(o->c.kind, k, n, w, grads + off, m0, m1, kept, sums ? lanes : NULL);
    if (sums) rg_finish_update_squares(lanes, w, kept, grads + off, n, sums);
}

/* A step updates the parameters in pieces of at most RG_SQUARES_PIECE floats (the one
 * size the monitor sums in too), cut from the start of each stretch that is updated alike:
 * the parts of the updated ranges inside or outside each measured range.  The team shares
 * all of a step's pieces in one parallel region, each thread a run of them holding about
 * its share of the floats; a measured piece's sums are added into its range's in order
 * afterwards, so a figure does not depend on the thread count. */
typedef struct update_piece_plan {
    size_t lo, len;  /* params[lo, lo + len) */
    size_t before;   /* floats in the pieces before this one */
    int measured;    /* the measured range it lies in, or -1 */
    double sums[3];  /* measured: its sums of squares */
} update_piece_plan;

#define PIECE RG_SQUARES_PIECE

/* Cuts [lo, hi) into pieces from lo, appended to plan[*count] when plan is given. */
static void cut(size_t lo, size_t hi, int measured, update_piece_plan *plan, size_t *count,
                size_t *floats) {
    for (size_t at = lo; at < hi; at += PIECE) {
        const size_t len = hi - at < PIECE ? hi - at : PIECE;
        if (plan) plan[*count] = (update_piece_plan){at, len, *floats, measured, {0, 0, 0}};
        ++*count, *floats += len;
    }
}

/* The pieces of the next step (plan NULL: only counted); returns how many, *floats their
 * total length. */
static size_t plan_step(const rg_optim *o, update_piece_plan *plan, size_t *floats) {
    const size_t whole = o->n;
    const int ranges = o->n_ranges ? o->n_ranges : 1;
    size_t count = 0;
    *floats = 0;
    for (int r = 0; r < ranges; r++) {
        size_t at = o->n_ranges ? o->range_off[r] : 0;
        const size_t end = o->n_ranges ? at + o->range_len[r] : whole;
        for (int i = 0; i < o->n_measured && at < end; i++) {
            const size_t mo = o->measure_off[i], me = mo + o->measure_len[i];
            const size_t lo = mo > at ? mo : at, hi = me < end ? me : end;
            if (lo >= hi) continue;
            cut(at, lo, -1, plan, &count, floats);
            cut(lo, hi, i, plan, &count, floats);
            at = hi;
        }
        cut(at, end, -1, plan, &count, floats);
    }
    return count;
}

/* Room for the next step's plan, made whenever what it depends on changes, so that a step
 * never allocates (cutting a stretch further never gives fewer pieces, so a plan with the
 * measured ranges has room for the steps after it). */
static rg_status make_room(rg_optim *o) {
    size_t floats, need = plan_step(o, NULL, &floats);
    if (need <= o->plan_room) return RG_OK;
    update_piece_plan *p = realloc(o->plan, need * sizeof *p);
    if (!p) return rg_fail(RG_ERR_MEMORY, "out of memory for the optimizer's plan of %zu pieces", need);
    o->plan = p, o->plan_room = need;
    return RG_OK;
}

/* Updates the pieces of plan[0, count) whose floats fall in thread t's share of n, and
 * hands each then-range that this share wrote all of to then() as soon as it is written. */
static void update_share(rg_optim *o, const step_consts *k, update_piece_plan *plan,
                         size_t count, size_t n, int t, int threads, float *params,
                         const float *grads) {
    const size_t from = n / threads * t + (n % threads) * t / threads;
    const size_t to = t == threads - 1 ? n : n / threads * (t + 1) + (n % threads) * (t + 1) / threads;
    size_t start = SIZE_MAX; /* where this share's first piece begins in the parameters */
    int next = 0;            /* the next then-range that may end in this share */
    for (size_t i = 0; i < count; i++) {
        const update_piece_plan *p = &plan[i];
        if (p->before < from) continue;
        if (p->before >= to) break;
        update_piece(o, k, p->lo, p->len, params, grads, p->measured >= 0 ? plan[i].sums : NULL);
        if (start == SIZE_MAX) start = p->lo;
        for (; next < o->n_then && o->then_off[next] + o->then_len[next] <= p->lo + p->len; next++)
            if (o->then_off[next] >= start) o->then(o->then_ctx, next), o->then_done[next] = 1;
    }
}

rg_optim_kind rg_optim_kind_of(const rg_optim *o) { return o->c.kind; }

step_consts rg_optim_consts(const rg_optim *o, float lr) {
    const bool decoupled = o->c.kind == RG_OPTIM_ADAMW;
    const double t = (double)(o->steps + 1);
    return (step_consts){
        .lr = lr,
        .wd = o->c.weight_decay,
        .mu = o->c.momentum,
        .eps = o->c.eps,
        .alpha = o->c.alpha,
        .beta1 = o->c.beta1,
        .beta2 = o->c.beta2,
        .first = o->steps == 0,
        .nesterov = o->c.kind == RG_OPTIM_NESTEROV,
        .step_size = (float)(lr / (1.0 - pow(o->c.beta1, t))),
        .bc2_sqrt = (float)sqrt(1.0 - pow(o->c.beta2, t)),
        .l2 = decoupled ? 0.0f : o->c.weight_decay,
        .shrink = decoupled ? 1.0f - lr * o->c.weight_decay : 1.0f,
    };
}

rg_status rg_optim_place(rg_optim *o, const rg_graph *g) {
    const rg_backend *b = g->backend;
    if (!b->device || o->device == b) return RG_OK;
    if (o->device) return rg_fail(RG_ERR_STATE, "the optimizer's moments are on another device");
    float *moved[MAX_MOMENTS] = {NULL};
    for (int k = 0; k < o->n_moments; k++) {
        if (!(moved[k] = b->alloc(o->n))) {
            for (int j = 0; j < k; j++) b->release(moved[j]);
            return rg_fail(RG_ERR_MEMORY, "out of device memory for the optimizer's %zu-float moments", o->n);
        }
        b->upload(moved[k], o->moment[k], o->n);
    }
    for (int k = 0; k < o->n_moments; k++) free(o->moment[k]), o->moment[k] = moved[k];
    o->device = b;
    return RG_OK;
}

void rg_optim_write(const rg_optim *o, float *dst, const float *src, size_t n) {
    if (o->device) o->device->upload(dst, src, n);
    else memcpy(dst, src, n * sizeof *dst);
}

/* On a device: one update of each trained range (nothing is measured there). */
static void step_on_device(rg_optim *o, const step_consts *k, float *params, const float *grads) {
    const int ranges = o->n_ranges ? o->n_ranges : 1;
    for (int r = 0; r < ranges; r++) {
        const size_t at = o->n_ranges ? o->range_off[r] : 0, len = o->n_ranges ? o->range_len[r] : o->n;
        o->device->optim_update(o->c.kind, k, len, params + at, grads + at, o->moment[0] ? o->moment[0] + at : NULL,
                                o->moment[1] ? o->moment[1] + at : NULL);
    }
}

static void step_on_host(rg_optim *o, const step_consts *k, float *params, const float *grads);

void rg_optim_step(rg_optim *o, float *params, const float *grads, float lr) {
    const step_consts k = rg_optim_consts(o, lr);
    if (o->n_then) memset(o->then_done, 0, (size_t)o->n_then);
    if (o->device) {
        if (o->keep) o->device->copy(o->keep, params, o->n);
        step_on_device(o, &k, params, grads);
    } else {
        step_on_host(o, &k, params, grads);
    }
    for (int i = 0; i < o->n_then; i++) /* the ranges no one thread wrote all of */
        if (!o->then_done[i]) o->then(o->then_ctx, i);
    o->n_measured = 0, o->keep = NULL, o->n_then = 0; /* for the next step only */
    o->steps++;
}

void rg_optim_then_next(rg_optim *o, int n, const size_t *offset, const size_t *length,
                        void (*then)(void *ctx, int i), void *ctx) {
    o->n_then = 0;
    if (n <= 0 || !then) return;
    if (n > o->then_room) {
        unsigned char *d = realloc(o->then_done, (size_t)n);
        if (d) o->then_done = d, o->then_room = n;
        else n = o->then_room; /* no room: the ranges past it are not handed over */
    }
    o->n_then = n, o->then_off = offset, o->then_len = length, o->then = then, o->then_ctx = ctx;
}

/* The host's update: the plan's pieces shared by the team, then the measured sums. */
static void step_on_host(rg_optim *o, const step_consts *k, float *params, const float *grads) {
    if (o->keep && o->n_ranges) /* the floats outside the ranges too, which the update skips */
        memcpy(o->keep, params, o->n * sizeof *params);
    size_t floats;
    const size_t count = plan_step(o, o->plan, &floats); /* count <= plan_room: make_room */
#pragma omp parallel if (floats > RG_PARALLEL_MIN)
    {
#ifdef _OPENMP
        const int me = omp_get_thread_num(), threads = omp_get_num_threads();
#else
        const int me = 0, threads = 1;
#endif
        update_share(o, k, o->plan, count, floats, me, threads, params, grads);
    }
    for (int i = 0; i < 3 * o->n_measured; i++) o->measured[i] = 0;
    for (size_t i = 0; i < count; i++)
        for (int j = 0; o->plan[i].measured >= 0 && j < 3; j++)
            o->measured[3 * o->plan[i].measured + j] += o->plan[i].sums[j];
}

void rg_optim_keep_next(rg_optim *o, float *before) { o->keep = before; }

rg_status rg_optim_measure_next(rg_optim *o, int n, const size_t *offset, const size_t *length,
                                double *sums) {
    for (int i = 0; i < n; i++)
        if (offset[i] > o->n || length[i] > o->n - offset[i] ||
            (i > 0 && offset[i] < offset[i - 1] + length[i - 1]))
            return rg_fail(RG_ERR_ARG, "measured range %d is out of order or outside the %zu "
                                       "parameters", i, o->n);
    o->n_measured = n;
    o->measure_off = offset, o->measure_len = length, o->measured = sums;
    const rg_status s = make_room(o);
    if (s != RG_OK) o->n_measured = 0;
    return s;
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
    const rg_status s = make_room(o);
    if (s != RG_OK) o->n_ranges = 0; /* as after any failed call: no limit */
    return s;
}

void rg_optim_set_steps(rg_optim *o, long steps) { o->steps = steps; }

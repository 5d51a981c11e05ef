/*
 * op_activation.c — element-wise activations and softmax on the CPU: one OpenMP loop per
 * activation, forward and backward (derivatives from the output y where they can be, so
 * activations run in place), their tangents and backward tangents.
 */
#include "../../ops/ops.h"
#include "cpu.h"
#include "../act_rules.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#define THREAD_NUM() omp_get_thread_num()
#define THREAD_COUNT() omp_get_num_threads()
#else
#define THREAD_NUM() 0
#define THREAD_COUNT() 1
#endif

/* One forward and one backward loop per activation, each with the activation as a literal
 * inside its parallel body, so act_f's switch folds away and relu-like loops vectorise.
 * (With the switch in the loop, relu alone took a quarter of the CNN's training time; an
 * always-inline helper does not help, since OpenMP outlines the loop body before the
 * constant reaches it.) */
#define ACT_FORWARD(NAME, A)                                                                \
    static void fwd_##NAME(const float *x, float *y, long count) { /* x == y in place */    \
        _Pragma("omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)")           \
        for (long i = 0; i < count; i++) y[i] = act_f(A, x[i]);                             \
    }
#define ACT_BACKWARD(NAME, A)                                                               \
    static void bwd_##NAME(const float *restrict x, const float *restrict y,                \
                           const float *restrict dy, float *restrict dx, long count,        \
                           bool fresh) {                                                    \
        if (fresh) {                                                                        \
            _Pragma("omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)")       \
            for (long i = 0; i < count; i++) dx[i] = act_dx(A, x[i], y[i], dy[i]);          \
            return;                                                                         \
        }                                                                                   \
        _Pragma("omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)")           \
        for (long i = 0; i < count; i++) dx[i] += act_dx(A, x[i], y[i], dy[i]);             \
    }
#define ACT_LOOPS(NAME, A) ACT_FORWARD(NAME, A) ACT_BACKWARD(NAME, A)

/* The sigmoid and tanh forward in vector lanes (act_math.c), a run of whole 64-value
 * pieces a thread: each value's bits do not depend on the split. */
#define LANES_FORWARD(NAME)                                                                 \
    static void fwd_##NAME(const float *x, float *y, long count) {                          \
        const long pieces = (count + 63) / 64;                                              \
        _Pragma("omp parallel if (count > RG_PARALLEL_MIN)")                                \
        {                                                                                   \
            const long t = THREAD_NUM(), nt = THREAD_COUNT();                                  \
            const long lo = pieces * t / nt * 64, hi = pieces * (t + 1) / nt * 64;          \
            if (lo < count) rg_cpu_##NAME##_run(x + lo, y + lo, (hi < count ? hi : count) - lo); \
        }                                                                                   \
    }

ACT_LOOPS(linear, RG_ACT_LINEAR)

ACT_LOOPS(relu, RG_ACT_RELU)

ACT_LOOPS(leaky_relu, RG_ACT_LEAKY_RELU)

ACT_LOOPS(elu, RG_ACT_ELU)

ACT_LOOPS(gelu, RG_ACT_GELU)

LANES_FORWARD(sigmoid)
ACT_BACKWARD(sigmoid, RG_ACT_SIGMOID)

LANES_FORWARD(tanh)
ACT_BACKWARD(tanh, RG_ACT_TANH)

ACT_LOOPS(softplus, RG_ACT_SOFTPLUS)

typedef struct act_loops {
    void (*fwd)(const float *, float *, long);
    void (*bwd)(const float *restrict, const float *restrict, const float *restrict,
                float *restrict, long, bool);
} act_loops;

static const act_loops loops[RG_ACT_COUNT] = {
    [RG_ACT_LINEAR] = {fwd_linear, bwd_linear},
    [RG_ACT_RELU] = {fwd_relu, bwd_relu},
    [RG_ACT_LEAKY_RELU] = {fwd_leaky_relu, bwd_leaky_relu},
    [RG_ACT_ELU] = {fwd_elu, bwd_elu},
    [RG_ACT_GELU] = {fwd_gelu, bwd_gelu},
    [RG_ACT_SIGMOID] = {fwd_sigmoid, bwd_sigmoid},
    [RG_ACT_TANH] = {fwd_tanh, bwd_tanh},
    [RG_ACT_SOFTPLUS] = {fwd_softplus, bwd_softplus},
};

void rg_cpu_activation_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    if (n->fused) return; /* its batch norm applied it */
    const rg_act a = *(const rg_act *)n->attr;
    loops[a].fwd(rg_in(g, n, 0)->out, n->out, (long)batch * (long)n->size);
}

void rg_cpu_activation_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad || n->fused) return; /* its batch norm reads n->dout */
    const rg_act a = *(const rg_act *)n->attr;
    loops[a].bwd(in->out, n->out, n->dout, in->dout, (long)batch * (long)n->size,
                 rg_grad_fresh(g, 0));
}

void rg_cpu_softmax_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const int k = n->shape[n->ndim - 1];
    const long rows = (long)batch * (long)(n->size / (size_t)k);
    const float *x = rg_in(g, n, 0)->out;
    float *y = n->out;
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        float *yr = y + r * k;
        float m = xr[0], sum = 0;
        for (int j = 1; j < k; j++) m = xr[j] > m ? xr[j] : m;
        for (int j = 0; j < k; j++) sum += (yr[j] = expf(xr[j] - m));
        for (int j = 0; j < k; j++) yr[j] /= sum;
    }
}

void rg_cpu_softmax_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad) return;
    const int k = n->shape[n->ndim - 1];
    const long rows = (long)batch * (long)(n->size / (size_t)k);
    for (long r = 0; r < rows; r++) {
        const float *yr = n->out + r * k, *dyr = n->dout + r * k;
        float *dxr = in->dout + r * k;
        float dot = 0;
        for (int j = 0; j < k; j++) dot += dyr[j] * yr[j];
        for (int j = 0; j < k; j++) dxr[j] += yr[j] * (dyr[j] - dot);
    }
}

/* An element-wise activation's Jacobian is diagonal: the tangent is backward's rule on the
 * input's tangent (from y, so also in place, and for a relu its batch norm applied). */
void rg_cpu_activation_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const rg_act a = *(const rg_act *)n->attr;
    loops[a].bwd(rg_in(g, n, 0)->out, n->out, rg_tangent_in(g, n, 0), rg_tangent_out(g, n),
                 (long)batch * (long)n->size, true);
}

/* softmax's Jacobian diag(y) - y y^T is symmetric: backward's rule on the tangent */
void rg_cpu_softmax_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const int k = n->shape[n->ndim - 1];
    const long rows = (long)batch * (long)(n->size / (size_t)k);
    const float *t_in = rg_tangent_in(g, n, 0);
    float *t = rg_tangent_out(g, n);
    for (long r = 0; r < rows; r++) {
        const float *yr = n->out + r * k, *dr = t_in + r * k;
        float dot = 0;
        for (int j = 0; j < k; j++) dot += dr[j] * yr[j];
        for (int j = 0; j < k; j++) t[r * k + j] = yr[j] * (dr[j] - dot);
    }
}

/* dx += f''(x) dx_t dy: the derivative of backward's dy f'(x) along the input's tangent
 * (none for the piecewise linear ones, nor for a relu its batch norm applies) */
void rg_cpu_activation_backward_tangent_values(rg_act a, const float *x, const float *y, const float *t,
                                               const float *dy, float *dx, long count) {
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
    for (long i = 0; i < count; i++) dx[i] += act_d2f(a, x[i], y[i]) * t[i] * dy[i];
}

void rg_cpu_activation_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *in = rg_in(g, n, 0);
    const rg_act a = *(const rg_act *)n->attr;
    if (!in->needs_grad || n->fused || a == RG_ACT_LINEAR || a == RG_ACT_RELU || a == RG_ACT_LEAKY_RELU)
        return;
    rg_cpu_activation_backward_tangent_values(a, in->out, n->out, rg_tangent_in(g, n, 0), rg_adjoint(g, n), in->dout,
                                              (long)batch * (long)n->size);
}

/* backward's dx = y (dy - dy.y) along y's tangent y_t, dy held:
 * dx += y_t (dy - dy.y) - y (dy.y_t) */
void rg_cpu_softmax_backward_tangent_values(const float *y, const float *t, const float *dy, float *dx, long rows,
                                            int k) {
    for (long r = 0; r < rows; r++) {
        const float *yr = y + r * k, *dyr = dy + r * k, *tr = t + r * k;
        float *dxr = dx + r * k;
        float dot = 0, dot_t = 0;
        for (int j = 0; j < k; j++) dot += dyr[j] * yr[j], dot_t += dyr[j] * tr[j];
        for (int j = 0; j < k; j++) dxr[j] += tr[j] * (dyr[j] - dot) - yr[j] * dot_t;
    }
}

void rg_cpu_softmax_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad) return;
    const int k = n->shape[n->ndim - 1];
    rg_cpu_softmax_backward_tangent_values(n->out, rg_tangent_out(g, n), rg_adjoint(g, n), in->dout,
                                           (long)batch * (long)(n->size / (size_t)k), k);
}

/*
 * activation.c — element-wise activations (relu, leaky_relu, elu, gelu, sigmoid, tanh,
 * softplus) and softmax over the last dimension.
 *
 * Each activation is a pair of scalar functions: f(x) and f'(x) given x and y = f(x).
 * Constants and edge cases follow PyTorch (leaky slope 0.01, elu alpha 1, exact gelu,
 * softplus linear above 20, relu'(0) = 0).
 */
#include "../internal.h"
#include "../kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LEAKY_SLOPE 0.01f
#define SOFTPLUS_THRESHOLD 20.0f

static const char *const act_names[RG_ACT_COUNT] = {
    [RG_ACT_LINEAR] = "linear",   [RG_ACT_RELU] = "relu",       [RG_ACT_LEAKY_RELU] = "leaky_relu",
    [RG_ACT_ELU] = "elu",         [RG_ACT_GELU] = "gelu",       [RG_ACT_SIGMOID] = "sigmoid",
    [RG_ACT_TANH] = "tanh",       [RG_ACT_SOFTPLUS] = "softplus",
};

const char *const *rg_act_names(int *n) {
    *n = RG_ACT_COUNT;
    return act_names;
}

const char *rg_act_name(rg_act a) { return (a >= 0 && a < RG_ACT_COUNT) ? act_names[a] : "?"; }

rg_status rg_act_parse(const char *text, rg_act *out) {
    const int a = rg_name_index(act_names, RG_ACT_COUNT, text);
    if (a < 0) return rg_fail_unknown("activation", text, act_names, RG_ACT_COUNT);
    *out = (rg_act)a;
    return RG_OK;
}

static inline float act_f(rg_act a, float x) {
    switch (a) {
    /* written so that NaN passes through, as in PyTorch, and the loop vectorises */
    case RG_ACT_RELU: return x < 0 ? 0.0f : x;
    case RG_ACT_LEAKY_RELU: return x < 0 ? LEAKY_SLOPE * x : x;
    case RG_ACT_ELU: return x > 0 ? x : expm1f(x);                      /* alpha = 1 */
    case RG_ACT_GELU: return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); /* x Phi(x) */
    case RG_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case RG_ACT_TANH: return tanhf(x);
    case RG_ACT_SOFTPLUS: return x > SOFTPLUS_THRESHOLD ? x : log1pf(expf(x));
    default: return x;
    }
}

/* f'(x) from y = f(x) alone, so the activation can run in place (memory.c); only GELU
 * needs x, and never runs in place.  The sign of y is the sign of x for relu, leaky relu
 * and elu; softplus' = sigmoid(x) = 1 - exp(-y). */
static inline float act_df(rg_act a, float x, float y) {
    switch (a) {
    case RG_ACT_RELU: return y > 0 ? 1.0f : 0.0f;
    case RG_ACT_LEAKY_RELU: return y > 0 ? 1.0f : LEAKY_SLOPE;
    case RG_ACT_ELU: return y > 0 ? 1.0f : y + 1.0f;
    case RG_ACT_GELU: /* Phi(x) + x phi(x) */
        return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) +
               x * 0.3989422804014327f * expf(-0.5f * x * x);
    case RG_ACT_SIGMOID: return y * (1.0f - y);
    case RG_ACT_TANH: return 1.0f - y * y;
    case RG_ACT_SOFTPLUS: return -expm1f(-y);
    default: return 1.0f;
    }
}

/* dy * f'(x), given x, y = f(x) and dy.  relu and leaky relu select instead of multiplying
 * by a 0/1 derivative: GCC vectorises the select, not the multiply by a branch result. */
static inline float act_dx(rg_act a, float x, float y, float dy) {
    switch (a) {
    case RG_ACT_RELU: return y > 0 ? dy : 0.0f;
    case RG_ACT_LEAKY_RELU: return y > 0 ? dy : LEAKY_SLOPE * dy;
    default: return dy * act_df(a, x, y);
    }
}

static rg_status same_shape_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    n->ndim = x->ndim;
    memcpy(n->shape, x->shape, sizeof n->shape);
    return RG_OK;
}

/* One forward and one backward loop per activation, each with the activation as a literal
 * inside its parallel body, so act_f's switch folds away and relu-like loops vectorise.
 * (With the switch in the loop, relu alone took a quarter of the CNN's training time; an
 * always-inline helper does not help, since OpenMP outlines the loop body before the
 * constant reaches it.) */
#define ACT_LOOPS(NAME, A)                                                                  \
    static void fwd_##NAME(const float *x, float *y, long count) { /* x == y in place */    \
        _Pragma("omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)")           \
        for (long i = 0; i < count; i++) y[i] = act_f(A, x[i]);                             \
    }                                                                                       \
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
ACT_LOOPS(linear, RG_ACT_LINEAR)
ACT_LOOPS(relu, RG_ACT_RELU)
ACT_LOOPS(leaky_relu, RG_ACT_LEAKY_RELU)
ACT_LOOPS(elu, RG_ACT_ELU)
ACT_LOOPS(gelu, RG_ACT_GELU)
ACT_LOOPS(sigmoid, RG_ACT_SIGMOID)
ACT_LOOPS(tanh, RG_ACT_TANH)
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

static void act_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    if (n->fused) return; /* its batch norm applied it */
    const rg_act a = *(const rg_act *)n->attr;
    loops[a].fwd(rg_in(g, n, 0)->out, n->out, (long)batch * (long)n->size);
}

static void act_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad || n->fused) return; /* its batch norm reads n->dout */
    const rg_act a = *(const rg_act *)n->attr;
    loops[a].bwd(in->out, n->out, n->dout, in->dout, (long)batch * (long)n->size,
                 rg_grad_fresh(g, 0));
}

const rg_op_def rg_op_activation_def = {
    .name = "activation", .min_inputs = 1, .max_inputs = 1,
    .infer = same_shape_infer, .forward = act_forward, .backward = act_backward,
    .backward_reads_output = true,
    .backward_reads_inputs = true,
    .fills_fresh_grads = true,
};

rg_node rg_activation(rg_graph *g, rg_node x, rg_act act) {
    if (act < 0 || act >= RG_ACT_COUNT)
        return rg_graph_error(g, RG_ERR_ARG, "activation: unknown kind %d", act);
    rg_act *a = malloc(sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    *a = act;
    rg_node n = rg_graph_add_node(g, RG_OP_ACTIVATION, &x, 1, a);
    if (n != RG_NONE) {
        /* Name it after the function ("relu_1"), counting only nodes of that function. */
        int k = 0;
        for (int i = 0; i <= n; i++)
            if (g->nodes[i].op == RG_OP_ACTIVATION && *(rg_act *)g->nodes[i].attr == act) k++;
        snprintf(g->nodes[n].name, sizeof g->nodes[n].name, "%s_%d", act_names[act], k);
    }
    return n;
}

rg_node rg_relu(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_RELU); }
rg_node rg_leaky_relu(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_LEAKY_RELU); }
rg_node rg_elu(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_ELU); }
rg_node rg_gelu(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_GELU); }
rg_node rg_sigmoid(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_SIGMOID); }
rg_node rg_tanh(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_TANH); }
rg_node rg_softplus(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_SOFTPLUS); }

/* ---- softmax over the last dimension:  y = exp(x - max) / sum exp(x - max)
 *      dx = y * (dy - sum(dy * y)) */

static void softmax_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
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

static void softmax_backward(rg_graph *g, rg_node_impl *n, int batch) {
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

const rg_op_def rg_op_softmax_def = {
    .name = "softmax", .min_inputs = 1, .max_inputs = 1,
    .infer = same_shape_infer, .forward = softmax_forward, .backward = softmax_backward,
    .backward_reads_output = true,
};

rg_node rg_softmax(rg_graph *g, rg_node x) { return rg_graph_add_node(g, RG_OP_SOFTMAX, &x, 1, NULL); }

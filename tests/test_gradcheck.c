/*
 * test_gradcheck.c — the finite-difference gradient check every op goes through.
 *
 * For each case a tiny graph ends in the op under test; with a fixed random r, the scalar
 * L = sum(out * r) is differentiated analytically (backward seeded with r) and by central
 * differences, (L(v+e) - L(v-e)) / 2e for every input value and every parameter.
 *
 * The same graph's tangent (forward mode, curvature.c) along random directions of every
 * input and parameter is checked against the central difference of the output along them,
 * and the tangent of its gradients (the R-backward, the exact Hessian product) against the
 * central difference of the gradients along them.
 *
 * Tolerance: |analytic - numeric| <= 2e-3 + 2e-2 * |numeric|.  With e = 1e-2 in float32,
 * the rounding error of L's difference is ~1e-5 / 2e-2 and the truncation error O(e^2 f''')
 * is ~1e-4; kinks (relu at 0) are kept away from by drawing inputs with |v| >= 0.1.
 */
#include "test_util.h"

#include "internal.h"
#include "kernels/backend.h"
#include "kernels/kernels.h"

#define EPS 1e-2f
/* The step for the gradients' differences: their truncation error O(e^2) is ~3% at 1e-2
 * through the residual block's two batch norms, 10x less at 3e-3, while rounding
 * (~1e-7 / 6e-3) stays far below the tolerance. */
#define H_EPS 3e-3f
#define ATOL 2e-3
#define RTOL 2e-2

typedef rg_node (*case_builder)(rg_graph *g, rg_node a, rg_node b);

typedef struct grad_case {
    const char *name;
    case_builder build;
    int ndim;
    int shape[3];
    bool two_inputs;
    bool train; /* forward in training mode (dropout) */
    bool distinct; /* inputs at least 0.03 apart and 0.015 from zero (a zero padding's cells), so
                      a max cannot change hands within EPS */
} grad_case;

static rg_rng rng;

static float away_from_zero(void) {
    float v = 0.1f + 0.9f * rg_rng_uniform(&rng);
    return rg_rng_uniform(&rng) < 0.5f ? -v : v;
}

static double objective(rg_graph *g, rg_node out, const float *r, int batch, bool train,
                        uint64_t calls) {
    g->dropout_calls = calls; /* the same dropout mask on every evaluation */
    rg_graph_forward(g, batch, train);
    g->dropout_calls = calls;
    size_t n = (g->nodes[out].batched ? (size_t)batch : 1) * rg_node_size(g, out);
    const float *y = rg_node_output(g, out);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * r[i];
    return s;
}

/* Checks d objective / d v for every value v in buf[0..n) against grad[0..n). */
static void check_values(const char *what, rg_graph *g, rg_node out, const float *r, int batch,
                         bool train, float *buf, const float *grad, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float keep = buf[i];
        buf[i] = keep + EPS;
        double up = objective(g, out, r, batch, train, 7);
        buf[i] = keep - EPS;
        double down = objective(g, out, r, batch, train, 7);
        buf[i] = keep;
        double numeric = (up - down) / (2.0 * EPS), analytic = grad[i];
        if (!(fabs(analytic - numeric) <= ATOL + RTOL * fabs(numeric)))
            fail_msg("%s[%zu]: analytic %.6g, numeric %.6g", what, i, analytic, numeric);
    }
}

/* Random directions of every parameter (v) and input (dirs, by node for the tangent
 * pass), and the point they start from. */
typedef struct directions {
    float *v, *w0, *dirs[2], *x0[2];
    const float **by_node;
    const rg_node *inputs;
    size_t in_n;
} directions;

static directions draw_directions(const grad_case *c, rg_graph *g, const rg_node *inputs, size_t in_n) {
    const size_t pn = rg_graph_param_floats(g);
    directions d = {calloc(pn + 1, sizeof(float)), malloc((pn + 1) * sizeof(float)), {NULL, NULL},
                    {NULL, NULL}, calloc((size_t)g->n_nodes, sizeof(float *)), inputs, in_n};
    memcpy(d.w0, rg_graph_params(g), pn * sizeof(float));
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        for (size_t j = 0; !p.state && j < p.size; j++) d.v[p.offset + j] = 2 * rg_rng_uniform(&rng) - 1;
    }
    for (int k = 0; k < (c->two_inputs ? 2 : 1); k++) {
        d.dirs[k] = malloc(in_n * sizeof(float));
        d.x0[k] = malloc(in_n * sizeof(float));
        for (size_t i = 0; i < in_n; i++) d.dirs[k][i] = 2 * rg_rng_uniform(&rng) - 1;
        memcpy(d.x0[k], rg_graph_input_buffer(g, inputs[k]), in_n * sizeof(float));
        d.by_node[inputs[k]] = d.dirs[k];
    }
    return d;
}

/* Parameters and inputs moved to the start + step * direction (step 0: back to the start). */
static void move_along(rg_graph *g, const directions *d, float step) {
    for (size_t i = 0; i < rg_graph_param_floats(g); i++) rg_graph_params(g)[i] = d->w0[i] + step * d->v[i];
    for (int k = 0; k < 2 && d->dirs[k]; k++)
        for (size_t i = 0; i < d->in_n; i++)
            rg_graph_input_buffer(g, d->inputs[k])[i] = d->x0[k][i] + step * d->dirs[k][i];
}

static void free_directions(directions *d) {
    for (int k = 0; k < 2; k++) free(d->dirs[k]), free(d->x0[k]);
    free(d->v), free(d->w0), free(d->by_node);
}

/* The op's tangent (forward mode) along random directions of every input and parameter
 * at once, against the central difference of the output along them. */
static void check_tangent(const grad_case *c, rg_graph *g, rg_node out, int batch,
                          const rg_node *inputs, size_t in_n) {
    const size_t out_n = (g->nodes[out].batched ? (size_t)batch : 1) * rg_node_size(g, out);
    float *analytic = malloc(out_n * sizeof *analytic);
    float *up = malloc(out_n * sizeof *up), *down = malloc(out_n * sizeof *down);
    directions d = draw_directions(c, g, inputs, in_n);
    g->dropout_calls = 7;
    if (rg_graph_tangent_from(g, batch, c->train, d.v, d.by_node, out, analytic) != RG_OK)
        fail_msg("%s tangent: %s", c->name, rg_last_error());
    for (int side = 1; side >= -1; side -= 2) {
        move_along(g, &d, side * EPS);
        g->dropout_calls = 7;
        rg_graph_forward(g, batch, c->train);
        memcpy(side > 0 ? up : down, rg_node_output(g, out), out_n * sizeof *up);
    }
    move_along(g, &d, 0);
    for (size_t i = 0; i < out_n; i++) {
        const double numeric = ((double)up[i] - down[i]) / (2.0 * EPS);
        if (!(fabs(analytic[i] - numeric) <= ATOL + RTOL * fabs(numeric)))
            fail_msg("%s tangent[%zu]: analytic %.6g, numeric %.6g", c->name, i, (double)analytic[i], numeric);
    }
    free_directions(&d);
    free(analytic), free(up), free(down);
}

/* The gradients of sum(out * r) with the parameters and inputs moved by step along the
 * directions: the parameters' into pg, input k's into ig[k]. */
static void gradients_at(rg_graph *g, rg_node out, const float *r, int batch, bool train,
                         const directions *d, float step, float *pg, float *const *ig) {
    move_along(g, d, step);
    objective(g, out, r, batch, train, 7);
    if (rg_graph_backward_from(g, out, r) != RG_OK) fail_msg("backward: %s", rg_last_error());
    memcpy(pg, rg_graph_grads(g), rg_graph_param_floats(g) * sizeof *pg);
    for (int k = 0; k < 2 && d->dirs[k]; k++) memcpy(ig[k], rg_node_grad(g, d->inputs[k]), d->in_n * sizeof(float));
}

/* The op's backward tangent (the exact Hessian's second-order term, curvature.c): the
 * tangent of the gradients of sum(out * r) along random directions of every input and
 * parameter at once, against the central difference of those gradients along them. */
static void check_backward_tangent(const grad_case *c, rg_graph *g, rg_node out, const float *r,
                                   int batch, const rg_node *inputs, size_t in_n) {
    const size_t pn = rg_graph_param_floats(g);
    directions d = draw_directions(c, g, inputs, in_n);
    float *pg[3], *ig[3][2] = {{NULL}}; /* analytic, up, down */
    for (int j = 0; j < 3; j++) {
        pg[j] = malloc((pn + 1) * sizeof(float));
        for (int k = 0; k < 2 && d.dirs[k]; k++) ig[j][k] = malloc(in_n * sizeof(float));
    }
    g->dropout_calls = 7;
    if (rg_graph_backward_tangent(g, out, r, batch, c->train, false, d.v, d.by_node) != RG_OK)
        fail_msg("%s backward tangent: %s", c->name, rg_last_error());
    memcpy(pg[0], rg_graph_grads(g), pn * sizeof(float));
    for (int k = 0; k < 2 && d.dirs[k]; k++) memcpy(ig[0][k], rg_node_grad(g, inputs[k]), in_n * sizeof(float));
    gradients_at(g, out, r, batch, c->train, &d, H_EPS, pg[1], ig[1]);
    gradients_at(g, out, r, batch, c->train, &d, -H_EPS, pg[2], ig[2]);
    move_along(g, &d, 0);
    for (int k = -1; k < 2; k++) { /* the parameters, then each input */
        if (k >= 0 && !d.dirs[k]) continue;
        const size_t n = k < 0 ? pn : in_n;
        const float *a = k < 0 ? pg[0] : ig[0][k], *up = k < 0 ? pg[1] : ig[1][k], *down = k < 0 ? pg[2] : ig[2][k];
        for (size_t i = 0; i < n; i++) {
            const double numeric = ((double)up[i] - down[i]) / (2.0 * H_EPS);
            if (!(fabs(a[i] - numeric) <= ATOL + RTOL * fabs(numeric)))
                fail_msg("%s backward tangent of %s[%zu]: analytic %.6g, numeric %.6g", c->name,
                         k < 0 ? "the parameters" : "an input", i, (double)a[i], numeric);
        }
    }
    for (int j = 0; j < 3; j++) free(pg[j]), free(ig[j][0]), free(ig[j][1]);
    free_directions(&d);
}

static void run_case(const grad_case *c) {
    const int batch = 3;
    rg_rng_seed(&rng, 99);
    rg_graph *g = rg_graph_create(5);
    rg_graph_want_input_grads(g, 1);
    rg_node a = rg_input(g, "a", c->ndim, c->shape);
    rg_node b = c->two_inputs ? rg_input(g, "b", c->ndim, c->shape) : RG_NONE;
    rg_node out = c->build(g, a, b);
    if (rg_graph_compile(g, batch) != RG_OK) fail_msg("%s: %s", c->name, rg_last_error());
    for (int i = 0; i < rg_graph_param_count(g); i++) { /* parameters away from zero too */
        rg_param_info p;
        rg_graph_param(g, i, &p);
        if (p.state) continue;
        for (size_t j = 0; j < p.size; j++) p.data[j] = away_from_zero() * 0.5f;
    }
    size_t in_n = (size_t)batch * rg_node_size(g, a);
    rg_node inputs[2] = {a, b};
    for (int k = 0; k < (c->two_inputs ? 2 : 1); k++) {
        float *in = rg_graph_input_buffer(g, inputs[k]);
        for (size_t i = 0; i < in_n; i++) in[i] = away_from_zero();
        if (c->distinct) {
            int *perm = malloc(in_n * sizeof *perm);
            for (size_t i = 0; i < in_n; i++) perm[i] = (int)i;
            rg_rng_shuffle(&rng, perm, (int)in_n);
            for (size_t i = 0; i < in_n; i++) in[i] = -1.485f + 0.03f * (float)perm[i]; /* none near 0 either */
            free(perm);
        }
    }
    for (int i = 0; i < batch; i++) rg_graph_labels(g)[i] = (int)rg_rng_below(&rng, 2);
    size_t out_n = (g->nodes[out].batched ? (size_t)batch : 1) * rg_node_size(g, out);
    float *r = malloc(out_n * sizeof *r);
    for (size_t i = 0; i < out_n; i++) r[i] = rg_rng_normal(&rng);

    objective(g, out, r, batch, c->train, 7);
    assert_int_equal(rg_graph_backward_from(g, out, r), RG_OK);
    size_t pn = rg_graph_param_floats(g);
    float *pgrad = malloc((pn ? pn : 1) * sizeof *pgrad), *igrad[2];
    memcpy(pgrad, rg_graph_grads(g), pn * sizeof *pgrad);
    for (int k = 0; k < 2; k++) {
        igrad[k] = malloc(in_n * sizeof(float));
        if (inputs[k] != RG_NONE) memcpy(igrad[k], rg_node_grad(g, inputs[k]), in_n * sizeof(float));
    }
    char what[96];
    for (int k = 0; k < (c->two_inputs ? 2 : 1); k++) {
        snprintf(what, sizeof what, "%s d/d input %d", c->name, k + 1);
        check_values(what, g, out, r, batch, c->train, rg_graph_input_buffer(g, inputs[k]),
                     igrad[k], in_n);
    }
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        if (p.state) continue;
        snprintf(what, sizeof what, "%s d/d %s", c->name, p.name);
        check_values(what, g, out, r, batch, c->train, p.data, pgrad + p.offset, p.size);
    }
    check_tangent(c, g, out, batch, inputs, in_n);
    check_backward_tangent(c, g, out, r, batch, inputs, in_n);
    free(r);
    free(pgrad);
    free(igrad[0]);
    free(igrad[1]);
    rg_graph_free(g);
}

static rg_node b_dense(rg_graph *g, rg_node a, rg_node b) { return rg_dense(g, a, 4, RG_INIT(RG_INIT_ZEROS)); }
#define ACT_BUILDER(fn) \
    static rg_node b_##fn(rg_graph *g, rg_node a, rg_node b) { return rg_##fn(g, a); }
ACT_BUILDER(relu)
ACT_BUILDER(leaky_relu)
ACT_BUILDER(elu)
ACT_BUILDER(gelu)
ACT_BUILDER(sigmoid)
ACT_BUILDER(tanh)
ACT_BUILDER(softplus)
ACT_BUILDER(softmax)
ACT_BUILDER(flatten)
ACT_BUILDER(flatten_channels_last)
static rg_node b_linear(rg_graph *g, rg_node a, rg_node b) { return rg_activation(g, a, RG_ACT_LINEAR); }
static rg_node b_dropout(rg_graph *g, rg_node a, rg_node b) { return rg_dropout(g, a, 0.3f); }
static rg_node b_add(rg_graph *g, rg_node a, rg_node b) { return rg_add(g, a, b); }
static rg_node b_wsum(rg_graph *g, rg_node a, rg_node b) {
    return rg_weighted_sum(g, 2, (rg_node[]){a, b}, (float[]){0.7f, -1.3f});
}
static rg_node b_xent(rg_graph *g, rg_node a, rg_node b) { return rg_softmax_cross_entropy(g, a, 0.0f); }
static rg_node b_xent_smooth(rg_graph *g, rg_node a, rg_node b) { return rg_softmax_cross_entropy(g, a, 0.2f); }
static rg_node b_mse_labels(rg_graph *g, rg_node a, rg_node b) { return rg_mse(g, a, RG_NONE); }
static rg_node b_mse_target(rg_graph *g, rg_node a, rg_node b) { return rg_mse(g, a, b); }

static rg_node b_conv_same(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 3, 3, 1, RG_PAD_SAME, 0, 1, 1, 1); }
static rg_node b_conv_stride2(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 2, 3, 2, RG_PAD_SAME, 0, 1, 1, 1); }
static rg_node b_conv_valid(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 2, 2, 1, RG_PAD_VALID, 0, 1, 1, 0); }
static rg_node b_conv_dilated(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 2, 2, 1, RG_PAD_EXPLICIT, 1, 2, 1, 1); }
static rg_node b_conv_groups(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 4, 3, 1, RG_PAD_EXPLICIT, 1, 1, 2, 1); }
static rg_node b_conv_depthwise(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 2, 3, 2, RG_PAD_EXPLICIT, 1, 1, 2, 0); }
static rg_node b_conv_1x1(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 3, 1, 1, RG_PAD_VALID, 0, 1, 1, 1); }
static rg_node b_max_pool(rg_graph *g, rg_node a, rg_node b) { return rg_max_pool2d(g, a, 2, 2, 1); }
static rg_node b_max_pool_2x2(rg_graph *g, rg_node a, rg_node b) { return rg_max_pool2d(g, a, 2, 2, 0); }
static rg_node b_max_pool_1x1(rg_graph *g, rg_node a, rg_node b) { return rg_max_pool2d(g, a, 1, 2, 0); }
static rg_node b_avg_pool(rg_graph *g, rg_node a, rg_node b) { return rg_avg_pool2d(g, a, 3, 2, 1); }
static rg_node b_gap(rg_graph *g, rg_node a, rg_node b) { return rg_global_avg_pool(g, a); }
static rg_node b_zero_pad(rg_graph *g, rg_node a, rg_node b) { return rg_zero_pad2d(g, a, 1, 0, 2, 1); }
static rg_node b_concat(rg_graph *g, rg_node a, rg_node b) { return rg_concat(g, 2, (rg_node[]){a, b}); }
static rg_node b_bn(rg_graph *g, rg_node a, rg_node b) { return rg_batch_norm(g, a, 0.1f, 1e-5f); }

/* A pre-activation residual block: exercises in-place activations after batch norm,
 * gradient buffers shared by liveness, and a skip connection accumulating into one
 * gradient.  tanh, not relu: with random beta a relu input can sit within EPS of its kink,
 * where central differences are meaningless (seen with this seed). */
static rg_node b_resblock(rg_graph *g, rg_node a, rg_node b) {
    rg_node h = rg_tanh(g, rg_batch_norm(g, a, 0.1f, 1e-5f));
    h = rg_tanh(g, rg_batch_norm(g, rg_conv2d(g, h, 2, 3, NULL), 0.1f, 1e-5f));
    h = rg_conv2d(g, h, 2, 3, NULL);
    return rg_add(g, a, h);
}
static rg_node b_dense_softplus(rg_graph *g, rg_node a, rg_node b) {
    return rg_softplus(g, rg_dense(g, a, 4, RG_INIT(RG_INIT_ZEROS))); /* in place */
}

/* Zero padding folded into the convolution that reads it (memory.c). */
static rg_node b_pad_conv(rg_graph *g, rg_node a, rg_node b) {
    rg_conv_opts o = rg_conv_defaults();
    o.padding = RG_PAD_VALID, o.stride = 2;
    return rg_conv2d(g, rg_zero_pad2d(g, a, 1, 2, 0, 1), 2, 3, &o);
}

/* Zero padding folded into the max pool that reads it: padding cells are zeros. */
static rg_node b_pad_max_pool(rg_graph *g, rg_node a, rg_node b) {
    return rg_max_pool2d(g, rg_zero_pad2d(g, a, 1, 1, 1, 1), 3, 2, 0);
}

static const grad_case cases[] = {
    {"zero pad folded into conv", b_pad_conv, 3, {2, 4, 5}, false, false},
    {"zero pad folded into max_pool2d", b_pad_max_pool, 3, {2, 5, 5}, false, false, true},
    {"residual block", b_resblock, 3, {2, 3, 3}, false, true},
    {"dense then softplus in place", b_dense_softplus, 1, {3}, false, false},
    {"conv2d same", b_conv_same, 3, {2, 4, 4}, false, false},
    {"conv2d stride 2", b_conv_stride2, 3, {2, 5, 5}, false, false},
    {"conv2d valid no bias", b_conv_valid, 3, {2, 3, 4}, false, false},
    {"conv2d dilation 2", b_conv_dilated, 3, {2, 4, 4}, false, false},
    {"conv2d groups 2", b_conv_groups, 3, {2, 3, 3}, false, false},
    {"conv2d depthwise stride 2", b_conv_depthwise, 3, {2, 4, 4}, false, false},
    {"conv2d 1x1", b_conv_1x1, 3, {2, 3, 3}, false, false},
    {"max_pool2d", b_max_pool, 3, {2, 4, 4}, false, false, true},
    {"max_pool2d 2x2 fast path", b_max_pool_2x2, 3, {2, 4, 10}, false, false, true},
    {"max_pool2d 1x1 stride 2", b_max_pool_1x1, 3, {2, 5, 4}, false, false},
    {"avg_pool2d", b_avg_pool, 3, {2, 5, 5}, false, false},
    {"global_avg_pool", b_gap, 3, {3, 2, 2}, false, false},
    {"zero_pad2d", b_zero_pad, 3, {2, 2, 3}, false, false},
    {"concat", b_concat, 3, {2, 2, 2}, true, false},
    {"batch_norm conv train", b_bn, 3, {2, 2, 2}, false, true},
    {"batch_norm dense train", b_bn, 1, {3}, false, true},
    {"batch_norm eval", b_bn, 3, {2, 2, 2}, false, false},
    {"dense", b_dense, 1, {5}, false, false},
    {"relu", b_relu, 1, {6}, false, false},
    {"leaky_relu", b_leaky_relu, 1, {6}, false, false},
    {"elu", b_elu, 1, {6}, false, false},
    {"gelu", b_gelu, 1, {6}, false, false},
    {"sigmoid", b_sigmoid, 1, {6}, false, false},
    {"tanh", b_tanh, 1, {6}, false, false},
    {"softplus", b_softplus, 1, {6}, false, false},
    {"linear", b_linear, 1, {6}, false, false},
    {"softmax", b_softmax, 2, {2, 4}, false, false},
    {"dropout", b_dropout, 1, {8}, false, true},
    {"add", b_add, 2, {2, 3}, true, false},
    {"weighted_sum", b_wsum, 2, {2, 3}, true, false},
    {"flatten", b_flatten, 3, {2, 2, 2}, false, false},
    {"flatten_hwc", b_flatten_channels_last, 3, {3, 2, 4}, false, false},
    {"softmax_cross_entropy", b_xent, 1, {4}, false, false},
    {"softmax_cross_entropy smoothing", b_xent_smooth, 1, {4}, false, false},
    {"mse labels", b_mse_labels, 1, {4}, false, false},
    {"mse target", b_mse_target, 1, {4}, true, false},
};

static void test_all_ops(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i]);
}

/* Every op kind has a complete table row, the CPU backend computes it, and every kind
 * appears in some case above (by its op name), so a new op cannot skip the gradient check. */
static void test_op_table_covered(void **state) {
    (void)state;
    for (int k = 0; k < RG_OP_COUNT; k++) {
        const rg_op_def *d = rg_op_table[k];
        assert_non_null(d);
        assert_non_null(d->infer);
        assert_non_null(rg_cpu_backend.ops[k].forward);
        if (k == RG_OP_INPUT) continue;
        assert_true(rg_cpu_backend.ops[k].backward || d->aliases_input);
        bool found = false;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            rg_graph *g = rg_graph_create(1);
            rg_node a = rg_input(g, "a", cases[i].ndim, cases[i].shape);
            rg_node b = cases[i].two_inputs ? rg_input(g, "b", cases[i].ndim, cases[i].shape) : RG_NONE;
            rg_node out = cases[i].build(g, a, b);
            if (out != RG_NONE && g->nodes[out].op == (rg_op_kind)k) found = true;
            rg_graph_free(g);
        }
        if (!found) fail_msg("op '%s' has no gradient-check case", d->name);
    }
}

/* The direct kernels (kernels/cpu/conv_direct.c) against im2col and the BLAS on the same
 * graph: outputs, the input's gradient and the parameters' gradients agree to float
 * rounding, over shapes that exercise every edge of their tiling: filters and taps not
 * multiples of the tile, dilation, valid, explicit and folded padding, one channel, and
 * stride 2 with odd sizes. */
static void test_direct_conv_matches_im2col(void **state) {
    (void)state;
    static const struct {
        int c, h, w, filters, k, dilation, pad;
        rg_padding mode;
        bool folded; /* a zero_pad in front, absorbed into the conv */
        int stride;
    } shapes[] = {
        {16, 28, 28, 6, 3, 1, 0, RG_PAD_SAME, false, 1},  {1, 28, 28, 32, 3, 1, 0, RG_PAD_SAME, false, 1},
        {3, 9, 13, 5, 5, 2, 0, RG_PAD_SAME, false, 1},    {7, 10, 10, 9, 2, 1, 0, RG_PAD_VALID, false, 1},
        {4, 7, 7, 64, 3, 1, 2, RG_PAD_EXPLICIT, false, 1}, {5, 6, 11, 3, 3, 1, 0, RG_PAD_VALID, true, 1},
        {16, 28, 28, 32, 3, 1, 0, RG_PAD_SAME, false, 2}, {3, 9, 13, 5, 5, 2, 0, RG_PAD_SAME, false, 2},
        {5, 10, 11, 7, 3, 1, 1, RG_PAD_EXPLICIT, false, 2}, {6, 9, 9, 4, 4, 1, 0, RG_PAD_VALID, true, 2},
        /* Winograd (3x3, stride 1, 8 channels or more both ways): even and odd sizes, one
         * tile row, several samples in one product, filters not a multiple of 4, padding 0
         * to 2, folded padding (dx's tiles then start a row and a column up) */
        {16, 28, 28, 16, 3, 1, 0, RG_PAD_SAME, false, 1}, {64, 7, 7, 64, 3, 1, 0, RG_PAD_SAME, false, 1},
        {12, 9, 11, 10, 3, 1, 0, RG_PAD_SAME, false, 1},  {8, 2, 2, 9, 3, 1, 1, RG_PAD_EXPLICIT, false, 1},
        {9, 14, 5, 8, 3, 1, 0, RG_PAD_SAME, false, 1},   {8, 10, 9, 12, 3, 1, 0, RG_PAD_VALID, false, 1},
        {10, 6, 7, 8, 3, 1, 2, RG_PAD_EXPLICIT, false, 1}, {16, 8, 9, 16, 3, 1, 0, RG_PAD_VALID, true, 1},
        {8, 7, 6, 8, 3, 1, 1, RG_PAD_EXPLICIT, true, 1},
        /* channels in lanes (AVX-512, multiples of 16 both ways): several channel and
         * filter blocks, widths past 16 and not a multiple of it, one column, padding 0-2,
         * folded padding, several samples in a group */
        {32, 9, 19, 48, 3, 1, 0, RG_PAD_SAME, false, 1},  {48, 6, 5, 16, 3, 1, 2, RG_PAD_EXPLICIT, false, 1},
        {16, 5, 1, 32, 3, 1, 1, RG_PAD_EXPLICIT, false, 1}, {16, 18, 17, 16, 3, 1, 0, RG_PAD_VALID, false, 1},
        {32, 7, 8, 64, 3, 1, 1, RG_PAD_EXPLICIT, true, 1}, {128, 3, 3, 16, 3, 1, 0, RG_PAD_SAME, false, 1},
        {16, 6, 16, 16, 3, 1, 0, RG_PAD_SAME, false, 1},
    };
    const int batch = 5;
    for (size_t ci = 0; ci < sizeof shapes / sizeof *shapes; ci++) {
        rg_rng_seed(&rng, 7 + ci);
        rg_direct_conv_allow(true); /* before compiling: the graph sizes its buffers for them */
        rg_graph *g = rg_graph_create(5);
        rg_graph_want_input_grads(g, 1);
        rg_node x = rg_input(g, "x", 3, (int[]){shapes[ci].c, shapes[ci].h, shapes[ci].w});
        rg_node in = shapes[ci].folded ? rg_zero_pad2d(g, x, 1, 1, 1, 1) : x;
        rg_node y = test_conv(g, in, shapes[ci].filters, shapes[ci].k, shapes[ci].stride, shapes[ci].mode,
                              shapes[ci].pad, shapes[ci].dilation, 1, 1);
        if (rg_graph_compile(g, batch) != RG_OK) fail_msg("case %zu: %s", ci, rg_last_error());
        int groups;
        const rg_conv_geom *q = rg_conv_geometry(&g->nodes[y], &groups);
        if (!rg_direct_conv_fits(q, shapes[ci].filters, 1)) {
            if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
                fail_msg("case %zu: the direct kernels should take this convolution", ci);
            rg_graph_free(g);
            continue;
        }
        for (int i = 0; i < rg_graph_param_count(g); i++) {
            rg_param_info p;
            rg_graph_param(g, i, &p);
            for (size_t j = 0; j < p.size; j++) p.data[j] = rg_rng_normal(&rng) * 0.3f;
        }
        const size_t in_n = (size_t)batch * rg_node_size(g, x), out_n = (size_t)batch * rg_node_size(g, y);
        for (size_t i = 0; i < in_n; i++) rg_graph_input_buffer(g, x)[i] = rg_rng_normal(&rng);
        float *r = malloc(out_n * sizeof *r);
        for (size_t i = 0; i < out_n; i++) r[i] = rg_rng_normal(&rng);
        const size_t pn = rg_graph_param_floats(g);
        float *got[2][3];
        for (int pass = 0; pass < 2; pass++) { /* direct, then im2col */
            rg_direct_conv_allow(pass == 0);
            rg_graph_forward(g, batch, true);
            got[pass][0] = malloc(out_n * sizeof(float));
            got[pass][1] = malloc(in_n * sizeof(float));
            got[pass][2] = malloc(pn * sizeof(float));
            memcpy(got[pass][0], rg_node_output(g, y), out_n * sizeof(float)); /* backward may reuse it */
            assert_int_equal(rg_graph_backward_from(g, y, r), RG_OK);
            memcpy(got[pass][1], rg_node_grad(g, x), in_n * sizeof(float));
            memcpy(got[pass][2], rg_graph_grads(g), pn * sizeof(float));
        }
        const size_t len[3] = {out_n, in_n, pn};
        static const char *const what[3] = {"output", "input gradient", "parameter gradient"};
        for (int k = 0; k < 3; k++) {
            for (size_t i = 0; i < len[k]; i++)
                if (!(fabsf(got[0][k][i] - got[1][k][i]) <= 1e-4f + 1e-4f * fabsf(got[1][k][i])))
                    fail_msg("case %zu: %s[%zu] direct %.7g, im2col %.7g", ci, what[k], i,
                             (double)got[0][k][i], (double)got[1][k][i]);
            free(got[0][k]), free(got[1][k]);
        }
        free(r);
        rg_graph_free(g);
    }
    rg_direct_conv_allow(true);
}

/* An add in place on the convolution before it, which adds the add's other input itself as
 * it writes its output (memory.c): the output and every gradient bitwise those of the
 * graph keeping every output (no in-place, the add run on its own), on each kernel path:
 * the direct kernels (4 channels), Winograd's planes (8 channels, and 16 held to AVX2) and
 * lanes (16 channels with AVX-512); odd sizes, bias, a relu between the two convs. */
static void test_add_in_convolution_is_exact(void **state) {
    (void)state;
    static const struct { int c; bool avx2; } paths[] = {{4, false}, {8, false}, {16, true}, {16, false}};
    const int batch = 3;
    for (size_t ci = 0; ci < sizeof paths / sizeof *paths; ci++) {
        if (paths[ci].avx2) rg_cpu_isa_cap(RG_ISA_AVX2);
        float *got[2][3] = {{NULL}};
        size_t len[3];
        for (int keep = 0; keep < 2; keep++) {
            rg_rng_seed(&rng, 11 + ci);
            rg_graph *g = rg_graph_create(5);
            rg_graph_want_input_grads(g, 1);
            rg_graph_keep_outputs(g, keep);
            rg_node x = rg_input(g, "x", 3, (int[]){paths[ci].c, 9, 7});
            rg_node h = rg_relu(g, test_conv(g, x, paths[ci].c, 3, 1, RG_PAD_SAME, 0, 1, 1, 1));
            rg_node y = rg_add(g, x, test_conv(g, h, paths[ci].c, 3, 1, RG_PAD_SAME, 0, 1, 1, 1));
            if (rg_graph_compile(g, batch) != RG_OK) fail_msg("case %zu: %s", ci, rg_last_error());
            if (!keep && !(g->nodes[y].inplace && g->nodes[g->nodes[y].inputs[1]].adds_from == x))
                fail_msg("case %zu: the add should be in place, done by its convolution", ci);
            for (int i = 0; i < rg_graph_param_count(g); i++) {
                rg_param_info p;
                rg_graph_param(g, i, &p);
                for (size_t j = 0; j < p.size; j++) p.data[j] = rg_rng_normal(&rng) * 0.3f;
            }
            len[0] = (size_t)batch * rg_node_size(g, y), len[1] = (size_t)batch * rg_node_size(g, x);
            len[2] = rg_graph_param_floats(g);
            for (size_t i = 0; i < len[1]; i++) rg_graph_input_buffer(g, x)[i] = rg_rng_normal(&rng);
            float *r = malloc(len[0] * sizeof *r);
            for (size_t i = 0; i < len[0]; i++) r[i] = rg_rng_normal(&rng);
            assert_int_equal(rg_graph_forward(g, batch, true), RG_OK);
            if (!keep && !g->nodes[g->nodes[y].inputs[1]].added) fail_msg("case %zu: the convolution did not add", ci);
            for (int k = 0; k < 3; k++) got[keep][k] = malloc(len[k] * sizeof(float));
            memcpy(got[keep][0], rg_node_output(g, y), len[0] * sizeof(float));
            assert_int_equal(rg_graph_backward_from(g, y, r), RG_OK);
            memcpy(got[keep][1], rg_node_grad(g, x), len[1] * sizeof(float));
            memcpy(got[keep][2], rg_graph_grads(g), len[2] * sizeof(float));
            free(r);
            rg_graph_free(g);
        }
        static const char *const what[3] = {"output", "input gradient", "parameter gradient"};
        for (int k = 0; k < 3; k++) {
            if (memcmp(got[0][k], got[1][k], len[k] * sizeof(float)) != 0)
                fail_msg("case %zu (%d channels%s): %s differs", ci, paths[ci].c, paths[ci].avx2 ? ", AVX2" : "",
                         what[k]);
            free(got[0][k]), free(got[1][k]);
        }
        rg_cpu_isa_cap(RG_ISA_AVX512);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_ops),
        cmocka_unit_test(test_direct_conv_matches_im2col),
        cmocka_unit_test(test_add_in_convolution_is_exact),
        cmocka_unit_test(test_op_table_covered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

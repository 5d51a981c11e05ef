/*
 * test_golden.c — regrad against PyTorch: forward values, loss, every parameter gradient,
 * and parameters after 3 steps of each optimizer, from fixtures written by
 * tools/make_golden.py; tangents and curvature products (tools/make_curvature_fixtures.py).
 *
 * Tolerances: forward and gradients 1e-5 absolute + 1e-4 relative (float32 sums in a
 * different order than PyTorch's kernels); after 3 optimizer steps 2e-5 + 1e-4 (Adam and
 * RMSProp divide by small square roots, which amplifies those differences a little).
 */
#include "test_util.h"

#include "internal.h"

#include <unistd.h>

#define B 6
#define IN 8
#define H 12
#define K 5

typedef struct net {
    rg_graph *g;
    rg_node x, logits, loss;
} net;

/* The same network as Chain in tools/make_golden.py. */
static net build_chain(void) {
    net n;
    n.g = rg_graph_create(1);
    n.x = rg_input(n.g, "x", 1, (int[]){IN});
    const rg_act acts[7] = {RG_ACT_RELU, RG_ACT_LEAKY_RELU, RG_ACT_ELU, RG_ACT_GELU,
                            RG_ACT_SIGMOID, RG_ACT_TANH, RG_ACT_SOFTPLUS};
    rg_node h = n.x, skip = RG_NONE;
    for (int i = 0; i < 7; i++) {
        if (i == 6) skip = h;
        h = rg_activation(n.g, rg_dense(n.g, h, H, RG_INIT(RG_INIT_TORCH)), acts[i]);
    }
    n.logits = rg_dense(n.g, rg_add(n.g, h, skip), K, RG_INIT(RG_INIT_TORCH));
    n.loss = rg_softmax_cross_entropy(n.g, n.logits, 0.1f);
    assert_int_equal(rg_graph_compile(n.g, B), RG_OK);
    return n;
}

/* Copies the fixture's tensors named PREFIX + parameter name into the graph. */
static void load_params(rg_graph *g, const rg_tensor_file *f, const char *prefix) {
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info info;
        assert_int_equal(rg_graph_param(g, i, &info), RG_OK);
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, info.name);
        size_t count;
        const float *src = rg_tensor_file_find(f, name, &count, NULL, NULL);
        if (!src) fail_msg("fixture lacks %s", name);
        assert_int_equal(count, info.size);
        memcpy(info.data, src, count * sizeof *src);
    }
}

/* Compares each parameter (grads: its gradient) with the fixture's PREFIX + name tensor. */
static void compare_params(rg_graph *g, bool grads, const rg_tensor_file *f,
                           const char *prefix, double atol, double rtol) {
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info info;
        rg_graph_param(g, i, &info);
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, info.name);
        const float *want = rg_tensor_file_find(f, name, NULL, NULL, NULL);
        if (!want) fail_msg("fixture lacks %s", name);
        assert_close(name, grads ? info.grad : info.data, want, info.size, atol, rtol);
    }
}

static void set_batch(rg_graph *g, rg_node x, const rg_tensor_file *f) {
    memcpy(rg_graph_input_buffer(g, x), rg_tensor_file_find(f, "x", NULL, NULL, NULL),
           B * IN * sizeof(float));
    const float *labels = rg_tensor_file_find(f, "labels", NULL, NULL, NULL);
    for (int b = 0; b < B; b++) rg_graph_labels(g)[b] = (int)labels[b];
}

static void test_chain_forward_backward(void **state) {
    (void)state;
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(fixture_path("mlp_chain.safetensors"), &f), RG_OK);
    net n = build_chain();
    load_params(n.g, f, "");
    set_batch(n.g, n.x, f);
    assert_int_equal(rg_graph_forward(n.g, B, 1), RG_OK);
    assert_close("logits", rg_node_output(n.g, n.logits),
                 rg_tensor_file_find(f, "logits", NULL, NULL, NULL), B * K, 1e-5, 1e-4);
    assert_close("loss", rg_node_output(n.g, n.loss),
                 rg_tensor_file_find(f, "loss", NULL, NULL, NULL), 1, 1e-6, 1e-5);
    assert_int_equal(rg_graph_backward(n.g, n.loss), RG_OK);
    compare_params(n.g, true, f, "grad.", 1e-5, 1e-4);
    rg_graph_free(n.g);
    rg_tensor_file_free(f);
}

/* Each optimizer as configured in tools/make_golden.py's OPTIMIZERS. */
static rg_optim_config golden_optim(const char *name) {
    rg_optim_kind k;
    assert_int_equal(rg_optim_parse(name, &k), RG_OK);
    rg_optim_config c = rg_optim_defaults(k);
    if (!strcmp(name, "sgd") || !strcmp(name, "momentum")) c.lr = 0.1f;
    if (!strcmp(name, "nesterov")) c.lr = 0.1f, c.weight_decay = 0.01f;
    if (!strcmp(name, "adagrad")) c.lr = 0.1f, c.weight_decay = 0.01f;
    if (!strcmp(name, "rmsprop")) c.lr = 0.01f, c.momentum = 0.5f;
    if (!strcmp(name, "adam")) c.lr = 0.01f, c.weight_decay = 0.01f;
    if (!strcmp(name, "adamw")) c.lr = 0.01f, c.weight_decay = 0.1f;
    return c;
}

static void test_optimizers_three_steps(void **state) {
    (void)state;
    static const char *const names[] = {"sgd", "momentum", "nesterov", "adagrad",
                                        "rmsprop", "adam", "adamw"};
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(fixture_path("mlp_chain.safetensors"), &f), RG_OK);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        net n = build_chain();
        load_params(n.g, f, "");
        set_batch(n.g, n.x, f);
        rg_optim_config c = golden_optim(names[i]);
        rg_optim *o = rg_optim_create(&c, rg_graph_param_floats(n.g));
        assert_non_null(o);
        for (int step = 0; step < 3; step++) {
            rg_graph_forward(n.g, B, 1);
            rg_graph_backward(n.g, n.loss);
            rg_optim_step(o, rg_graph_params(n.g), rg_graph_grads(n.g), c.lr);
        }
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%s.", names[i]);
        compare_params(n.g, false, f, prefix, 2e-5, 1e-4);
        rg_optim_free(o);
        rg_graph_free(n.g);
    }
    rg_tensor_file_free(f);
}

static void test_softmax_mse(void **state) {
    (void)state;
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(fixture_path("mse_softmax.safetensors"), &f), RG_OK);
    rg_graph *g = rg_graph_create(1);
    rg_node x = rg_input(g, "x", 1, (int[]){IN});
    rg_node p = rg_softmax(g, rg_dense(g, x, K, RG_INIT(RG_INIT_TORCH)));
    rg_node loss = rg_mse(g, p, RG_NONE);
    assert_int_equal(rg_graph_compile(g, B), RG_OK);
    load_params(g, f, "");
    set_batch(g, x, f);
    rg_graph_forward(g, B, 1);
    assert_close("probs", rg_node_output(g, p), rg_tensor_file_find(f, "probs", NULL, NULL, NULL),
                 B * K, 1e-6, 1e-5);
    assert_close("loss", rg_node_output(g, loss), rg_tensor_file_find(f, "loss", NULL, NULL, NULL),
                 1, 1e-7, 1e-5);
    rg_graph_backward(g, loss);
    compare_params(g, true, f, "grad.", 1e-6, 1e-4);
    rg_graph_free(g);
    rg_tensor_file_free(f);
}

/* ---- the convolution family, one PyTorch case each (tools/make_golden.py ops_fixture) */

typedef struct op_case {
    const char *name;     /* the fixture case */
    rg_node (*build)(rg_graph *g, rg_node a, rg_node b);
    int inputs;
    bool train;
} op_case;

static rg_node c_same(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 4, 3, 1, RG_PAD_SAME, 0, 1, 1, 1); }
static rg_node c_dil(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 4, 3, 2, RG_PAD_EXPLICIT, 2, 2, 1, 1); }
static rg_node c_groups(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 6, 3, 1, RG_PAD_EXPLICIT, 1, 1, 2, 0); }
static rg_node c_dw(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 4, 3, 2, RG_PAD_EXPLICIT, 1, 1, 4, 1); }
static rg_node c_same2(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 5, 3, 2, RG_PAD_SAME, 0, 1, 1, 1); }
/* The same case as Keras builds it: an explicit zero_pad layer (folded into the conv by
 * memory planning) and a valid convolution. */
static rg_node c_pad_same2(rg_graph *g, rg_node a, rg_node b) {
    return test_conv(g, rg_zero_pad2d(g, a, 0, 1, 0, 1), 5, 3, 2, RG_PAD_VALID, 0, 1, 1, 1);
}
static rg_node c_1x1(rg_graph *g, rg_node a, rg_node b) { return test_conv(g, a, 3, 1, 1, RG_PAD_VALID, 0, 1, 1, 1); }
static rg_node c_max(rg_graph *g, rg_node a, rg_node b) { return rg_max_pool2d(g, a, 3, 2, 1); }
static rg_node c_max2(rg_graph *g, rg_node a, rg_node b) { return rg_max_pool2d(g, a, 2, 2, 0); }
static rg_node c_avg(rg_graph *g, rg_node a, rg_node b) { return rg_avg_pool2d(g, a, 2, 2, 0); }
static rg_node c_avgp(rg_graph *g, rg_node a, rg_node b) { return rg_avg_pool2d(g, a, 3, 2, 1); }
static rg_node c_gap(rg_graph *g, rg_node a, rg_node b) { return rg_global_avg_pool(g, a); }
static rg_node c_pad(rg_graph *g, rg_node a, rg_node b) { return rg_zero_pad2d(g, a, 1, 2, 0, 1); }
static rg_node c_cat(rg_graph *g, rg_node a, rg_node b) { return rg_concat(g, 2, (rg_node[]){a, b}); }
static rg_node c_bn(rg_graph *g, rg_node a, rg_node b) { return rg_batch_norm(g, a, 0.1f, 1e-5f); }
static rg_node c_bn_eval(rg_graph *g, rg_node a, rg_node b) { return rg_batch_norm(g, a, 0.1f, 1e-3f); }

/* Keras's ResNet stem: a zero padding and a valid pool, the padding folded into the pool. */
static rg_node c_pad_max(rg_graph *g, rg_node a, rg_node b) { return rg_max_pool2d(g, rg_zero_pad2d(g, a, 1, 1, 1, 1), 3, 2, 0); }
static rg_node c_pad_avg(rg_graph *g, rg_node a, rg_node b) { return rg_avg_pool2d(g, rg_zero_pad2d(g, a, 1, 1, 1, 1), 3, 2, 0); }
static rg_node c_max1(rg_graph *g, rg_node a, rg_node b) { return rg_max_pool2d(g, a, 1, 2, 0); }

static rg_node c_wsum(rg_graph *g, rg_node a, rg_node b) {
    return rg_weighted_sum(g, 2, (rg_node[]){a, b}, (float[]){0.7f, -1.3f});
}

static const op_case op_cases[] = {
    {"conv_same", c_same, 1, false},          {"conv_stride2_dilated", c_dil, 1, false},
    {"conv_groups", c_groups, 1, false},      {"conv_depthwise", c_dw, 1, false},
    {"conv_same_stride2", c_same2, 1, false}, {"conv_same_stride2", c_pad_same2, 1, false},
    {"conv_1x1", c_1x1, 1, false},
    {"max_pool", c_max, 1, false},            {"max_pool_2x2", c_max2, 1, false},
    {"avg_pool", c_avg, 1, false},
    {"avg_pool_padded", c_avgp, 1, false},    {"global_avg_pool", c_gap, 1, false},
    {"zero_pad", c_pad, 1, false},            {"concat", c_cat, 2, false},
    {"bn_conv_train", c_bn, 1, true},         {"bn_dense_train", c_bn, 1, true},
    {"bn_eval", c_bn_eval, 1, false},         {"weighted_sum", c_wsum, 2, false},
    {"pad_max_pool", c_pad_max, 1, false},    {"pad_avg_pool", c_pad_avg, 1, false},
    {"max_pool_1x1", c_max1, 1, false},
};

static const float *case_tensor(const rg_tensor_file *f, const char *cs, const char *what,
                                size_t *count, int *ndim, int *shape) {
    char key[320];
    snprintf(key, sizeof key, "%s.%s", cs, what);
    const float *t = rg_tensor_file_find(f, key, count, ndim, shape);
    if (!t) fail_msg("fixture lacks %s", key);
    return t;
}

static void run_op_case(const rg_tensor_file *f, const op_case *c) {
    rg_graph *g = rg_graph_create(1);
    rg_graph_want_input_grads(g, 1);
    rg_node in[2] = {RG_NONE, RG_NONE};
    int batch = 0;
    for (int k = 0; k < c->inputs; k++) {
        int ndim, shape[RG_MAX_DIMS];
        char what[16];
        snprintf(what, sizeof what, "x%d", k);
        case_tensor(f, c->name, what, NULL, &ndim, shape);
        batch = shape[0];
        in[k] = rg_input(g, what, ndim - 1, shape + 1);
    }
    rg_node out = c->build(g, in[0], in[1]);
    if (rg_graph_compile(g, batch) != RG_OK) fail_msg("%s: %s", c->name, rg_last_error());
    for (int k = 0; k < c->inputs; k++) {
        char what[16];
        snprintf(what, sizeof what, "x%d", k);
        size_t count;
        const float *x = case_tensor(f, c->name, what, &count, NULL, NULL);
        memcpy(rg_graph_input_buffer(g, in[k]), x, count * sizeof *x);
    }
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        size_t count;
        const float *v = case_tensor(f, c->name, strchr(p.name, '.') + 1, &count, NULL, NULL);
        assert_int_equal(count, p.size);
        memcpy(p.data, v, count * sizeof *v);
    }
    rg_graph_forward(g, batch, c->train);
    size_t count;
    const float *y = case_tensor(f, c->name, "y", &count, NULL, NULL);
    assert_int_equal(count, (size_t)batch * rg_node_size(g, out));
    char what[160];
    snprintf(what, sizeof what, "%s.y", c->name);
    assert_close(what, rg_node_output(g, out), y, count, 1e-5, 1e-4);
    assert_int_equal(rg_graph_backward_from(g, out, case_tensor(f, c->name, "dy", NULL, NULL, NULL)), RG_OK);
    for (int k = 0; k < c->inputs; k++) {
        snprintf(what, sizeof what, "dx%d", k);
        const float *dx = case_tensor(f, c->name, what, &count, NULL, NULL);
        snprintf(what, sizeof what, "%s.dx%d", c->name, k);
        assert_close(what, rg_node_grad(g, in[k]), dx, count, 1e-5, 1e-4);
    }
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        const char *suffix = strchr(p.name, '.') + 1;
        snprintf(what, sizeof what, p.state ? "after.%s" : "grad.%s", suffix);
        if (p.state && !c->train) continue; /* evaluation leaves the statistics alone */
        const float *want = case_tensor(f, c->name, what, NULL, NULL, NULL);
        snprintf(what, sizeof what, "%s.%s", c->name, p.name);
        assert_close(what, p.state ? p.data : p.grad, want, p.size, 1e-5, 1e-4);
    }
    rg_graph_free(g);
}

static void test_conv_family(void **state) {
    (void)state;
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(fixture_path("conv_ops.safetensors"), &f), RG_OK);
    for (size_t i = 0; i < sizeof op_cases / sizeof *op_cases; i++) run_op_case(f, &op_cases[i]);
    rg_tensor_file_free(f);
}

/* PyTorch networks built like the zoo's mlp, cnn and resnet20v2 (tools/make_interop.py),
 * saved as safetensors under regrad's names: each loads strictly into the zoo model and
 * gives PyTorch's eval-mode logits; saved by regrad and loaded again, the same. */
static void test_pytorch_interop(void **state) {
    (void)state;
    static const char *const models[] = {"mlp", "cnn", "resnet20v2"};
    rg_tensor_file *io;
    assert_int_equal(rg_safetensors_load(fixture_path("interop_io.safetensors"), &io), RG_OK);
    for (int k = 0; k < 3; k++) {
        char name[64], key[64];
        snprintf(name, sizeof name, "interop_%s.safetensors", models[k]);
        rg_tensor_file *f;
        assert_int_equal(rg_safetensors_load(fixture_path(name), &f), RG_OK);
        rg_model m;
        assert_int_equal(rg_model_build(models[k], &(rg_model_opts){.c = 1, .h = 28, .w = 28, .classes = 10, .seed = 1}, &m), RG_OK);
        assert_int_equal(rg_graph_compile(m.graph, 4), RG_OK);
        rg_load_report rep;
        if (rg_model_load(&m, f, RG_LOAD_STRICT, &rep)) fail_msg("%s: %s", models[k], rg_last_error());
        assert_int_equal(rep.loaded, rg_graph_param_count(m.graph));
        size_t n;
        snprintf(key, sizeof key, "%s.input", models[k]);
        const float *x = rg_tensor_file_find(io, key, &n, NULL, NULL);
        snprintf(key, sizeof key, "%s.logits", models[k]);
        const float *want = rg_tensor_file_find(io, key, NULL, NULL, NULL);
        assert_non_null(x);
        assert_non_null(want);
        for (int round = 0; round < 2; round++) {
            memcpy(rg_graph_input_buffer(m.graph, m.input), x, n * sizeof(float));
            assert_int_equal(rg_graph_forward(m.graph, 4, 0), RG_OK);
            assert_close(models[k], rg_node_output(m.graph, m.logits), want, 40, 1e-4, 1e-4);
            if (round) break;
            /* regrad's own file of the same network: reloaded into a fresh model */
            rg_tensor_file *again = saved_and_loaded(&m);
            rg_model_free(&m);
            assert_int_equal(rg_model_build(models[k], &(rg_model_opts){.c = 1, .h = 28, .w = 28, .classes = 10, .seed = 7}, &m), RG_OK);
            assert_int_equal(rg_graph_compile(m.graph, 4), RG_OK);
            assert_int_equal(rg_model_load(&m, again, RG_LOAD_STRICT, NULL), RG_OK);
            rg_tensor_file_free(again);
        }
        rg_model_free(&m);
        rg_tensor_file_free(f);
    }
    rg_tensor_file_free(io);
}

/* ---- curvature against PyTorch (tools/make_curvature_fixtures.py): the chain above and a
 * small CNN (conv, batch norm in training, relu, max pool, strided conv, sigmoid, global
 * average pool, dense), each with a direction v and float64 references. */

static net build_small_cnn(void) {
    net n;
    n.g = rg_graph_create(1);
    n.x = rg_input(n.g, "x", 3, (int[]){3, 6, 6});
    rg_conv_opts o = rg_conv_defaults();
    o.padding = RG_PAD_EXPLICIT, o.pad = 1;
    rg_node h = rg_conv2d(n.g, n.x, 4, 3, &o);
    h = rg_activation(n.g, rg_batch_norm(n.g, h, 0.1f, 1e-3f), RG_ACT_RELU);
    h = rg_max_pool2d(n.g, h, 2, 2, 0);
    o.stride = 2;
    h = rg_activation(n.g, rg_conv2d(n.g, h, 5, 3, &o), RG_ACT_SIGMOID);
    n.logits = rg_dense(n.g, rg_global_avg_pool(n.g, h), K, RG_INIT(RG_INIT_TORCH));
    n.loss = rg_softmax_cross_entropy(n.g, n.logits, 0.0f);
    assert_int_equal(rg_graph_compile(n.g, B), RG_OK);
    return n;
}

static const float *find(const rg_tensor_file *f, const char *prefix, const char *name, size_t *count) {
    char key[200];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    const float *t = rg_tensor_file_find(f, key, count, NULL, NULL);
    if (!t) fail_msg("fixture lacks %s", key);
    return t;
}

/* The parameter-layout vector of the fixture's tensors PREFIX + parameter name. */
static float *param_vector(rg_graph *g, const rg_tensor_file *f, const char *prefix) {
    float *v = calloc(rg_graph_param_floats(g) + 1, sizeof *v);
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        if (p.state) continue;
        memcpy(v + p.offset, find(f, prefix, p.name, NULL), p.size * sizeof *v);
    }
    return v;
}

/* ||a - b|| / ||b|| over the trainable entries. */
static double relative_error(rg_graph *g, const float *a, const float *b) {
    double d = 0, r = 0;
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        for (size_t j = 0; !p.state && j < p.size; j++) {
            d += ((double)a[p.offset + j] - b[p.offset + j]) * ((double)a[p.offset + j] - b[p.offset + j]);
            r += (double)b[p.offset + j] * b[p.offset + j];
        }
    }
    return sqrt(d / r);
}

static void curvature_case(net n, const rg_tensor_file *f, const char *model, int batch, const char *block) {
    char pre[32], what[64];
    snprintf(pre, sizeof pre, "%s.", model);
    rg_graph *g = n.g;
    const size_t pn = rg_graph_param_floats(g);
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        if (!p.state) memcpy(p.data, find(f, pre, p.name, NULL), p.size * sizeof(float));
    }
    size_t xn;
    const float *x = find(f, pre, "x", &xn), *labels = find(f, pre, "labels", NULL);
    memcpy(rg_graph_input_buffer(g, n.x), x, xn * sizeof(float));
    for (int b = 0; b < batch; b++) rg_graph_labels(g)[b] = (int)labels[b];
    char vp[40];
    snprintf(vp, sizeof vp, "%sv.", pre);
    float *v = param_vector(g, f, vp), *out = malloc(pn * sizeof *out);
    float *w0 = malloc(pn * sizeof *w0), *s0 = malloc((g->state_floats + 1) * sizeof *s0);
    memcpy(w0, rg_graph_params(g), pn * sizeof *w0);
    memcpy(s0, g->state_buf, g->state_floats * sizeof *s0);

    float jz[B * K];
    assert_int_equal(rg_graph_tangent(g, batch, 1, v, n.logits, jz), RG_OK);
    snprintf(what, sizeof what, "%s J v", model);
    assert_close(what, jz, find(f, pre, "jvp_logits", NULL), (size_t)batch * K, 1e-5, 1e-4);

    char kp[40];
    snprintf(kp, sizeof kp, "%sgn.", pre);
    float *want = param_vector(g, f, kp);
    assert_int_equal(rg_graph_curvature_product(g, n.loss, batch, 1, RG_CURVATURE_GAUSS_NEWTON, v, out), RG_OK);
    snprintf(what, sizeof what, "%s G v", model);
    if (!(relative_error(g, out, want) < 1e-5)) fail_msg("%s: relative error %.3g", what, relative_error(g, out, want));
    free(want);
    /* the R-backward against double backward, through the CNN's relu and max pool too
     * (piecewise linear: no second-order term in either) */
    snprintf(kp, sizeof kp, "%shv.", pre);
    want = param_vector(g, f, kp);
    assert_int_equal(rg_graph_curvature_product(g, n.loss, batch, 1, RG_CURVATURE_HESSIAN, v, out), RG_OK);
    if (!(relative_error(g, out, want) < 1e-5))
        fail_msg("%s H v: relative error %.3g", model, relative_error(g, out, want));
    free(want);

    double slope, vgv;
    assert_int_equal(rg_graph_curvature_along(g, n.loss, batch, 1, v, &slope, &vgv), RG_OK);
    const double want_slope = find(f, pre, "slope", NULL)[0], want_vgv = find(f, pre, "vgv", NULL)[0];
    if (!(fabs(slope - want_slope) <= 1e-5 + 1e-4 * fabs(want_slope)) || !(fabs(vgv - want_vgv) <= 1e-4 * want_vgv))
        fail_msg("%s along v: slope %.8g (want %.8g), v'Gv %.8g (want %.8g)", model, slope, want_slope, vgv, want_vgv);

    double top, top_block;
    rg_node layer = RG_NONE;
    for (int i = 0; i < rg_graph_node_count(g); i++)
        if (!strcmp(rg_node_name(g, i), block)) layer = i;
    assert_int_equal(rg_graph_top_curvature(g, n.loss, batch, 1, RG_CURVATURE_GAUSS_NEWTON, RG_NONE, 300, 1e-7, &top), RG_OK);
    assert_int_equal(rg_graph_top_curvature(g, n.loss, batch, 1, RG_CURVATURE_GAUSS_NEWTON, layer, 300, 1e-7, &top_block), RG_OK);
    const double want_top = find(f, pre, "top_gn", NULL)[0], want_block = find(f, pre, "top_gn_block", NULL)[0];
    if (!(fabs(top - want_top) <= 1e-3 * want_top) || !(fabs(top_block - want_block) <= 1e-3 * want_block))
        fail_msg("%s top eigenvalue %.8g (want %.8g), of %s %.8g (want %.8g)", model, top, want_top, block,
                 top_block, want_block);

    /* every call left the parameters and the running statistics as they were */
    assert_memory_equal(w0, rg_graph_params(g), pn * sizeof *w0);
    assert_memory_equal(s0, g->state_buf, g->state_floats * sizeof *s0);
    free(v), free(out), free(w0), free(s0);
    rg_graph_free(g);
}

static void test_curvature(void **state) {
    (void)state;
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(fixture_path("curvature.safetensors"), &f), RG_OK);
    curvature_case(build_chain(), f, "mlp", B, "dense_4");
    curvature_case(build_small_cnn(), f, "cnn", 4, "conv2d_2");
    rg_tensor_file_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_forward_backward),
        cmocka_unit_test(test_optimizers_three_steps),
        cmocka_unit_test(test_softmax_mse),
        cmocka_unit_test(test_conv_family),
        cmocka_unit_test(test_curvature),
        cmocka_unit_test(test_pytorch_interop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

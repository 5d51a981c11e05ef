/*
 * test_golden.c — regrad against PyTorch: forward values, loss, every parameter gradient,
 * and parameters after 3 steps of each optimizer, from fixtures written by
 * tools/make_golden.py.
 *
 * Tolerances: forward and gradients 1e-5 absolute + 1e-4 relative (float32 sums in a
 * different order than PyTorch's kernels); after 3 optimizer steps 2e-5 + 1e-4 (Adam and
 * RMSProp divide by small square roots, which amplifies those differences a little).
 */
#include "test_util.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_forward_backward),
        cmocka_unit_test(test_optimizers_three_steps),
        cmocka_unit_test(test_softmax_mse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

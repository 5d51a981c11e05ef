/*
 * test_remedies.c — the classic remedies: gradient clipping by value, per tensor, global
 * and adaptive (AGC), the max-norm constraint with Keras's axes for dense and conv layers,
 * and magnitude pruning (weights and units, per layer and global, masks kept while
 * training and saved with checkpoints).
 */
#include "test_util.h"

#include "internal.h"

#include <unistd.h>

/* dense 4->3 (+bias), conv 2->3 3x3 (+bias) on a 2x4x4 input, flatten, dense -> 2 */
static rg_graph *small_graph(rg_node *logits_out) {
    rg_graph *g = rg_graph_create(3);
    rg_node x = rg_input(g, "input", 3, (int[]){2, 4, 4});
    rg_node c = rg_conv2d(g, x, 3, 3, NULL);
    rg_node d = rg_dense(g, rg_flatten(g, c), 4, RG_INIT(RG_INIT_HE_NORMAL));
    rg_node logits = rg_dense(g, d, 2, RG_INIT(RG_INIT_HE_NORMAL));
    rg_softmax_cross_entropy(g, logits, 0);
    assert_int_equal(rg_graph_compile(g, 2), RG_OK);
    if (logits_out) *logits_out = logits;
    return g;
}

static double norm_of(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    rg_rng r;
    rg_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = scale * rg_rng_normal(&r);
}

static void clipping(void **state) {
    rg_node logits;
    rg_graph *g = small_graph(&logits);
    const size_t n = rg_graph_param_floats(g);
    float *grad = rg_graph_grads(g), *copy = malloc(n * sizeof *copy);
    /* by value */
    fill(grad, n, 1, 2.0f);
    memcpy(copy, grad, n * sizeof *copy);
    rg_clip_grad_value(g, 0.5f);
    for (size_t i = 0; i < n; i++)
        assert_true(grad[i] == (copy[i] > 0.5f ? 0.5f : copy[i] < -0.5f ? -0.5f : copy[i]));
    /* per tensor: each norm at most c, direction kept; small tensors untouched */
    fill(grad, n, 2, 1.0f);
    memcpy(copy, grad, n * sizeof *copy);
    rg_clip_grad_tensor_norm(g, 1.5f);
    rg_param_info p;
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_graph_param(g, i, &p);
        if (p.state) continue;
        double before = norm_of(copy + p.offset, p.size), after = norm_of(grad + p.offset, p.size);
        if (before <= 1.5) assert_memory_equal(copy + p.offset, grad + p.offset, p.size * 4);
        else assert_true(fabs(after - 1.5) < 1e-4);
        for (size_t j = 0; j < p.size; j++)
            assert_true(fabs(grad[p.offset + j] - copy[p.offset + j] * after / before) < 1e-5);
    }
    /* global: returns the norm before; after, the norm is c (up to torch's 1e-6) */
    fill(grad, n, 3, 1.0f);
    const double before = norm_of(grad, n);
    assert_true(fabs(rg_clip_grad_norm(g, 2.0f) - before) < 1e-6 * before);
    assert_true(fabs(norm_of(grad, n) - 2.0) < 1e-4);
    /* AGC: every unit's gradient norm at most lambda x max(|w|, 1e-3); the classifier alone */
    fill(grad, n, 4, 3.0f);
    memcpy(copy, grad, n * sizeof *copy);
    rg_clip_grad_agc(g, 0.01f, logits);
    const float *w = rg_graph_params(g);
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_graph_param(g, i, &p);
        if (p.state) continue;
        if (p.node == logits) {
            assert_memory_equal(copy + p.offset, grad + p.offset, p.size * 4);
            continue;
        }
        const bool kernel = strstr(p.name, ".kernel") != NULL;
        const size_t units = kernel ? (size_t)p.shape[0] : p.size, len = p.size / units;
        for (size_t u = 0; u < units; u++) {
            double wn = fmax(norm_of(w + p.offset + u * len, len), 1e-3);
            assert_true(norm_of(grad + p.offset + u * len, len) <= 0.01 * wn * (1 + 1e-5));
        }
    }
    free(copy);
    rg_graph_free(g);
}

static void max_norm_axes(void **state) {
    rg_graph *g = small_graph(NULL);
    const size_t n = rg_graph_param_floats(g);
    float *w = rg_graph_params(g), *copy = malloc(n * sizeof *copy);
    fill(w, n, 5, 1.0f);
    memcpy(copy, w, n * sizeof *copy);
    rg_apply_max_norm(g, 1.0f);
    rg_param_info p;
    int kernels = 0;
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_graph_param(g, i, &p);
        if (p.state) continue;
        if (!strstr(p.name, ".kernel")) { /* biases are not constrained */
            assert_memory_equal(copy + p.offset, w + p.offset, p.size * 4);
            continue;
        }
        kernels++;
        /* one unit = one output: a dense row [in], a conv filter [C, K, K] (Keras's axis 0
         * of a Dense kernel (in, out), axes 0..2 of a Conv2D kernel (K, K, C, out)) */
        const size_t units = (size_t)p.shape[0], len = p.size / units;
        if (p.ndim == 4) assert_int_equal(len, (size_t)p.shape[1] * p.shape[2] * p.shape[3]);
        for (size_t u = 0; u < units; u++) {
            const double before = norm_of(copy + p.offset + u * len, len);
            const double k = fmin(before, 1.0) / (1e-7 + before);
            for (size_t j = 0; j < len; j++)
                assert_true(fabs(w[p.offset + u * len + j] - copy[p.offset + u * len + j] * k) < 1e-6);
            assert_true(norm_of(w + p.offset + u * len, len) <= 1.0 + 1e-5);
        }
    }
    assert_int_equal(kernels, 3);
    free(copy);
    rg_graph_free(g);
    /* bad thresholds are errors, not silent flips */
    rg_dataset *d = synthetic(64, 2, 1);
    rg_model m;
    assert_int_equal(rg_model_build("mlp:depth=1,width=4", 1, 4, 4, 2, RG_LOSS_XENT, 0, 1, &m), RG_OK);
    assert_int_equal(rg_graph_compile(m.graph, 16), RG_OK);
    rg_fit_config c = {.epochs = 1, .batch = 16, .optim = rg_optim_defaults(RG_OPTIM_SGD), .clip_norm = -1};
    assert_int_equal(rg_fit(&m, d, &c, NULL), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "must be positive"));
    c.clip_norm = 0, c.max_norm = NAN;
    assert_int_equal(rg_fit(&m, d, &c, NULL), RG_ERR_ARG);
    /* trained with max-norm 0.5: every unit ends within it */
    c.max_norm = 0.5f, c.agc = 0.05f, c.clip_value = 1;
    assert_int_equal(rg_fit(&m, d, &c, NULL), RG_OK);
    rg_param_info p2;
    for (int i = 0; i < rg_graph_param_count(m.graph); i++) {
        rg_graph_param(m.graph, i, &p2);
        if (!strstr(p2.name, ".kernel")) continue;
        const size_t len = p2.size / (size_t)p2.shape[0];
        for (int u = 0; u < p2.shape[0]; u++) assert_true(norm_of(p2.data + u * len, len) <= 0.5 + 1e-5);
    }
    rg_model_free(&m);
    rg_dataset_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clipping),
        cmocka_unit_test(max_norm_axes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

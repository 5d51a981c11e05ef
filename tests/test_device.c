/*
 * test_device.c — the library's device path, built twice.  test_device links it with
 * tests/fake_cuda.c in place of the CUDA kernels (host code over poisoned pointers, the
 * CPU's arithmetic, RG_FAKE_DEVICE): a graph placed with rg_graph_set_device("cuda") must
 * train with the CPU's bits (inputs and labels uploaded by forward, the loss and logits
 * read through rg_host, the optimizer's moments on the device, frozen layers left alone)
 * and touch device memory only through the backend (a direct touch faults).
 * test_device_gpu runs the same on a real GPU, within float tolerance (cuBLAS sums in
 * another order), or prints "SKIP: no CUDA device" and exits 77.  Placement errors are one
 * clear status each.
 */
#include "test_util.h"

#include "internal.h"

/* The fake device computes as the CPU does; a GPU within these of the CPU after 12 steps. */
#ifdef RG_FAKE_DEVICE
#define LOSS_RTOL 0.0
#define WEIGHT_ATOL 0.0
#else
#define LOSS_RTOL 1e-4
#define WEIGHT_ATOL 1e-4
#endif

#define IN 20
#define CLASSES 10
#define BATCH 16

/* input(20) -> dense 32 sigmoid -> dense 24 tanh -> dense 10 -> cross-entropy, on device. */
static rg_graph *mlp(const char *device, rg_node *x, rg_node *logits, rg_node *loss) {
    rg_graph *g = rg_graph_create(7);
    const int in = IN;
    *x = rg_input(g, "x", 1, &in);
    rg_node h = rg_sigmoid(g, rg_dense(g, *x, 32, RG_INIT(RG_INIT_GLOROT_UNIFORM)));
    h = rg_tanh(g, rg_dense(g, h, 24, RG_INIT(RG_INIT_GLOROT_UNIFORM)));
    *logits = rg_dense(g, h, CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    *loss = rg_softmax_cross_entropy(g, *logits, 0.05f);
    assert_int_equal(rg_graph_set_device(g, device), RG_OK);
    assert_int_equal(rg_graph_compile(g, BATCH), RG_OK);
    return g;
}

/* One step on g: the batch written where callers write it, forward, backward, update;
 * returns the loss as read back. */
static float step(rg_graph *g, rg_optim *o, rg_node x, rg_node loss, int s) {
    float *in = rg_graph_input_buffer(g, x);
    for (int i = 0; i < BATCH * IN; i++) in[i] = (float)sin(0.37 * i + s);
    for (int b = 0; b < BATCH; b++) rg_graph_labels(g)[b] = (b * 3 + s) % CLASSES;
    assert_int_equal(rg_graph_forward(g, BATCH, 1), RG_OK);
    const float l = rg_host(g, g->nodes[loss].out, 1)[0];
    assert_int_equal(rg_graph_backward(g, loss), RG_OK);
    rg_optim_step(o, g->param_buf, g->grad_buf, 0.01f);
    return l;
}

static void trains_with_the_cpus_bits(void **state) {
    for (int kind = 0; kind < RG_OPTIM_COUNT; kind++) {
        rg_node x[2], logits[2], loss[2];
        rg_graph *g[2] = {mlp("cpu", &x[0], &logits[0], &loss[0]), mlp("cuda", &x[1], &logits[1], &loss[1])};
        rg_optim_config c = rg_optim_defaults((rg_optim_kind)kind);
        c.weight_decay = 0.001f;
        rg_optim *o[2];
        for (int d = 0; d < 2; d++) {
            assert_non_null(o[d] = rg_optim_create(&c, g[d]->param_floats));
            assert_int_equal(rg_optim_place(o[d], g[d]), RG_OK);
        }
        /* the first layer frozen: its range is left out of the updates */
        const rg_param_impl *first = &g[0]->params[0];
        const size_t off = first->offset + first->size + g[0]->params[1].size;
        const size_t len = g[0]->param_floats - off;
        for (int d = 0; d < 2; d++) assert_int_equal(rg_optim_limit(o[d], 1, &off, &len), RG_OK);
        for (int s = 0; s < 12; s++) {
            const float a = step(g[0], o[0], x[0], loss[0], s), b = step(g[1], o[1], x[1], loss[1], s);
            if (!(fabsf(a - b) <= LOSS_RTOL * fabsf(a)))
                fail_msg("%s step %d: loss %.9g on the device, %.9g on the CPU", rg_optim_name((rg_optim_kind)kind), s, b, a);
        }
        const size_t n = g[0]->param_floats;
        const char *name = rg_optim_name((rg_optim_kind)kind);
        assert_close(name, rg_host(g[1], g[1]->param_buf, n), g[0]->param_buf, n, WEIGHT_ATOL, 0);
        assert_close(name, rg_host(g[1], g[1]->nodes[logits[1]].out, (size_t)BATCH * CLASSES),
                     g[0]->nodes[logits[0]].out, (size_t)BATCH * CLASSES, 10 * WEIGHT_ATOL, 0);
        for (int d = 0; d < 2; d++) rg_optim_free(o[d]), rg_graph_free(g[d]);
    }
}

static void placement_errors_say_why(void **state) {
    rg_graph *g = rg_graph_create(1);
    const int chw[3] = {1, 8, 8};
    rg_node x = rg_input(g, "image", 3, chw);
    rg_softmax_cross_entropy(g, rg_dense(g, rg_flatten(g, rg_conv2d(g, x, 4, 3, NULL)), 10, RG_INIT(RG_INIT_HE_NORMAL)), 0);
    assert_int_equal(rg_graph_set_device(g, "cuda"), RG_ERR_STATE);
    assert_non_null(strstr(rg_last_error(), "conv2d"));
    assert_int_equal(rg_graph_set_device(g, "cuda:3"), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "no such device"));
    assert_int_equal(rg_graph_set_device(g, "gpu"), RG_ERR_ARG);
    assert_int_equal(rg_graph_set_device(g, "cpu"), RG_OK);
    assert_int_equal(rg_graph_compile(g, 4), RG_OK);
    assert_int_equal(rg_graph_set_device(g, "cuda"), RG_ERR_STATE);
    assert_non_null(strstr(rg_last_error(), "before compiling"));
    rg_graph_free(g);
}

int main(void) {
#ifndef RG_FAKE_DEVICE
    char desc[160];
    if (rg_device_check("cuda", desc, sizeof desc) != RG_OK) {
        printf("SKIP: no CUDA device (%s)\n", rg_last_error());
        return 77;
    }
    printf("%s\n", desc);
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trains_with_the_cpus_bits),
        cmocka_unit_test(placement_errors_say_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_device.c — the library's device path, built twice.  test_device links it with
 * tests/fake_cuda.c in place of the CUDA kernels (host code over poisoned pointers, the
 * CPU's arithmetic, RG_FAKE_DEVICE): a graph placed with rg_graph_set_device("cuda") must
 * train with the CPU's bits (inputs and labels uploaded by forward, the loss and logits
 * read through rg_host, the optimizer's moments on the device, frozen layers left alone)
 * and touch device memory only through the backend (a direct touch faults); resnet20v2,
 * ResNet50V2 and DenseNet121's first step must give the CPU's loss and gradient norms, and
 * the health monitor the CPU's figures, the classic remedies the CPU's results; with TF32
 * products the networks stay within 5e-3.
 * test_device_gpu runs the same on a real GPU, within float tolerance (cuBLAS sums in
 * another order), or prints "SKIP: no CUDA device" and exits 77.  Placement errors are one
 * clear status each.
 */
#include "test_util.h"

#include "internal.h"
#include "kernels/backend.h"
#include "kernels/cuda/divide.h"

/* The fake device computes as the CPU's plain path does (the CPU's bits, but where the CPU
 * takes its own convolution kernels); a GPU within these of the CPU after 12 steps. */
#ifdef RG_FAKE_DEVICE
#define EXACT 0.0
#define CONV_TOL 1e-5
#else
#define EXACT 1e-4
#define CONV_TOL 1e-4
#endif
/* a zoo model's loss after one step (its gradient norms: 10x), either way; TF32's products */
#define ZOO_TOL 1e-4
#define TF32_TOL 5e-3

#define CLASSES 10
#define BATCH 16

/* A network under test: its input, logits and loss, built on a graph. */
typedef struct net {
    rg_graph *g;
    rg_node x, logits, loss;
} net;
typedef void (*net_builder)(net *n);

/* input (1, 4, 5) -> flatten -> dense 32 sigmoid -> dense 24 tanh -> dense 10 ->
 * cross-entropy (the flatten's output is the input's buffer, which forward alternates on a
 * device: the stand-in spoils the last batch's half) */
static void mlp(net *n) {
    const int in[3] = {1, 4, 5};
    n->x = rg_input(n->g, "x", 3, in);
    rg_node h = rg_sigmoid(n->g, rg_dense(n->g, rg_flatten(n->g, n->x), 32, RG_INIT(RG_INIT_GLOROT_UNIFORM)));
    h = rg_tanh(n->g, rg_dense(n->g, h, 24, RG_INIT(RG_INIT_GLOROT_UNIFORM)));
    n->logits = rg_dense(n->g, h, CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
}

/* An image input (c, h, w) whose gradient backward computes too, so that backward runs
 * through every op after it; returns the graph. */
static rg_graph *image_input(net *n, int c, int h, int w) {
    const int chw[3] = {c, h, w};
    rg_graph_want_input_grads(n->g, 1);
    n->x = rg_input(n->g, "x", 3, chw);
    return n->g;
}

/* The ops without weights: input (4, 5, 5) -> zero padding (1, 2, 0, 1) -> a channels-last
 * flatten and a global average pool, each to a dense 16; their sum's tanh concatenated with
 * the pool's branch -> dense 10. */
static void combine_net(net *n) {
    rg_graph *g = image_input(n, 4, 5, 5);
    const rg_node padded = rg_zero_pad2d(g, n->x, 1, 2, 0, 1);
    const rg_node a = rg_dense(g, rg_flatten_channels_last(g, padded), 16, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    const rg_node b = rg_dense(g, rg_global_avg_pool(g, padded), 16, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    const rg_node both[2] = {rg_tanh(g, rg_add(g, a, b)), b};
    n->logits = rg_dense(g, rg_concat(g, 2, both), CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
}

/* input (3, 9, 9) -> zero padding (1, bottom, 1, 1) -> 3x3 stride 2 to 8 channels */
static rg_node padded_strided_conv(net *n, int bottom) {
    rg_graph *g = image_input(n, 3, 9, 9);
    rg_conv_opts o = rg_conv_defaults();
    o.stride = 2, o.padding = RG_PAD_VALID;
    return rg_conv2d(g, rg_zero_pad2d(g, n->x, 1, bottom, 1, 1), 8, 3, &o);
}

/* Convolutions of every kind: input (3, 9, 9) -> zero padding (folded into the next) ->
 * 3x3 stride 2 -> relu -> 1x1 direct (no bias) -> 3x3 dilation 2, padding 2, 2 groups ->
 * depthwise 3x3 stride 1 padding 1 -> max 2x2 -> 1x1 direct to 24 (its weights more than a
 * sample's input and output: one product over the batch backward) -> dense 10. */
static void conv_net(net *n) {
    rg_graph *g = n->g;
    rg_node h = rg_relu(g, padded_strided_conv(n, 0));
    rg_conv_opts o = rg_conv_defaults();
    o.bias = 0;
    h = rg_conv2d(g, h, 6, 1, &o);
    o = rg_conv_defaults(), o.dilation = 2, o.padding = RG_PAD_EXPLICIT, o.pad = 2, o.groups = 2;
    h = rg_tanh(g, rg_conv2d(g, h, 8, 3, &o));
    o = rg_conv_defaults(), o.groups = 8, o.padding = RG_PAD_EXPLICIT, o.pad = 1;
    h = rg_conv2d(g, h, 8, 3, &o);
    h = rg_conv2d(g, rg_max_pool2d(g, h, 2, 2, 0), 24, 1, NULL);
    n->logits = rg_dense(g, rg_flatten(g, h), CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
}

/* Pooling: input (2, 10, 10) -> conv 3x3 (4) -> max 3x3 stride 2 padding 1 -> relu -> two
 * branches, average 2x2 stride 1 padding 1 and max 2x2 stride 2, and from the conv two
 * more, zero padding 1 -> max 3x3 stride 2 (the padding folded into the pool, its zeros
 * some windows' maximum) and max 1x1 stride 2, concatenated flat -> dense 10. */
static void pool_net(net *n) {
    rg_graph *g = image_input(n, 2, 10, 10);
    const rg_node c = rg_conv2d(g, n->x, 4, 3, NULL);
    const rg_node one = rg_flatten(g, rg_max_pool2d(g, c, 1, 2, 0)); /* backward last: it adds to c's gradient */
    const rg_node h = rg_relu(g, rg_max_pool2d(g, c, 3, 2, 1));
    const rg_node padded = rg_flatten(g, rg_max_pool2d(g, rg_zero_pad2d(g, c, 1, 1, 1, 1), 3, 2, 0));
    const rg_node all[4] = {rg_flatten(g, rg_avg_pool2d(g, h, 2, 1, 1)), rg_flatten(g, rg_max_pool2d(g, h, 2, 2, 0)),
                            padded, one};
    n->logits = rg_dense(g, rg_concat(g, 4, all), CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
}

/* Batch norm: input (3, 24, 24) -> conv 3x3 -> batch norm (channels long enough for the
 * device to cut into runs) -> relu (fused into it) -> conv 3x3 stride 2 -> batch norm ->
 * global average pool -> dense 12 -> batch norm (one value a channel) -> tanh -> dense 10. */
static void norm_net(net *n) {
    rg_graph *g = image_input(n, 3, 24, 24);
    rg_node h = rg_relu(g, rg_batch_norm(g, rg_conv2d(g, n->x, 6, 3, NULL), 0.1f, 1e-5f));
    rg_conv_opts o = rg_conv_defaults();
    o.stride = 2;
    h = rg_global_avg_pool(g, rg_batch_norm(g, rg_conv2d(g, h, 5, 3, &o), 0.1f, 1e-3f));
    h = rg_tanh(g, rg_batch_norm(g, rg_dense(g, h, 12, RG_INIT(RG_INIT_GLOROT_UNIFORM)), 0.2f, 1e-5f));
    n->logits = rg_dense(g, h, CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
}

/* Dropout, softmax and a squared-error loss against the one-hot labels: input (20) ->
 * dense 32 -> dropout 0.3 -> tanh -> dense 10 (the logits) -> softmax -> MSE. */
static void misc_net(net *n) {
    const int in = 20;
    rg_graph *g = n->g;
    n->x = rg_input(g, "x", 1, &in);
    const rg_node h = rg_tanh(g, rg_dropout(g, rg_dense(g, n->x, 32, RG_INIT(RG_INIT_GLOROT_UNIFORM)), 0.3f));
    n->logits = rg_dense(g, h, CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    n->loss = rg_mse(g, rg_softmax(g, n->logits), RG_NONE);
}

/* The network on a device (its products in `precision`) or the CPU, compiled for BATCH;
 * guarded: each buffer alone, canaries after it, checked by every pass (memory.c). */
static net build_in(net_builder builder, const char *device, const char *precision, bool guarded) {
    net n = {.g = rg_graph_create(7), .loss = RG_NONE};
    builder(&n);
    if (n.loss == RG_NONE) n.loss = rg_softmax_cross_entropy(n.g, n.logits, 0.05f);
    assert_int_equal(rg_graph_set_device(n.g, device), RG_OK);
    if (strcmp(device, "cpu") != 0) assert_int_equal(rg_graph_set_precision(n.g, precision), RG_OK);
    rg_graph_guard_memory(n.g, guarded);
    assert_int_equal(rg_graph_compile(n.g, BATCH), RG_OK);
    return n;
}
static net build(net_builder builder, const char *device, const char *precision) {
    return build_in(builder, device, precision, false);
}

/* a pass's status, with its message when it fails (a guard's names the buffer) */
static void passed(rg_status s) {
    if (s != RG_OK) fail_msg("%s", rg_last_error());
}

/* Batch s written where callers write it; one step: that, forward, backward, update;
 * returns the loss as read back. */
static void feed(net *n, int s) {
    float *in = rg_graph_input_buffer(n->g, n->x);
    const size_t size = rg_node_size(n->g, n->x);
    for (size_t i = 0; i < BATCH * size; i++) in[i] = (float)sin(0.37 * (double)i + s);
    for (int b = 0; b < BATCH; b++) rg_graph_labels(n->g)[b] = (b * 3 + s) % CLASSES;
}

static float step(net *n, rg_optim *o, int s) {
    feed(n, s);
    passed(rg_graph_forward(n->g, BATCH, 1));
    const float l = rg_host(n->g, n->g->nodes[n->loss].out, 1)[0];
    passed(rg_graph_backward(n->g, n->loss));
    rg_optim_step(o, n->g->param_buf, n->g->grad_buf, 0.01f);
    return l;
}

/* The network trained `steps` steps with optimizer `kind` on the CPU and on the device, its
 * products in `precision` (the first layer frozen when asked): the losses, the weights, the
 * logits and (when the graph computes it) the input's gradient agree. */
static void compare_in(const char *precision, net_builder builder, rg_optim_kind kind, bool freeze_first,
                       double tol, int steps) {
    net n[2] = {build(builder, "cpu", precision), build(builder, "cuda", precision)};
    rg_optim_config c = rg_optim_defaults(kind);
    c.weight_decay = 0.001f;
    rg_optim *o[2];
    const char *name = rg_optim_name(kind);
    for (int d = 0; d < 2; d++) {
        assert_non_null(o[d] = rg_optim_create(&c, n[d].g->param_floats));
        assert_int_equal(rg_optim_place(o[d], n[d].g), RG_OK);
        if (freeze_first) { /* the first layer's range left out of the updates */
            const size_t off = n[d].g->params[0].size + n[d].g->params[1].size, len = n[d].g->param_floats - off;
            assert_int_equal(rg_optim_limit(o[d], 1, &off, &len), RG_OK);
        }
    }
    for (int s = 0; s < steps; s++) {
        const float a = step(&n[0], o[0], s), b = step(&n[1], o[1], s);
        if (!(fabsf(a - b) <= tol * fabsf(a)))
            fail_msg("%s step %d: loss %.9g on the device, %.9g on the CPU", name, s, b, a);
    }
    const size_t pn = n[0].g->param_floats, ln = (size_t)BATCH * CLASSES;
    assert_close(name, rg_host(n[1].g, n[1].g->param_buf, pn), n[0].g->param_buf, pn, tol, 0);
    /* a training pass's logits at the weights reached (read before a backward, which may
     * reuse their buffer) */
    for (int d = 0; d < 2; d++) passed(rg_graph_forward(n[d].g, BATCH, 1));
    assert_close(name, rg_host(n[1].g, n[1].g->nodes[n[1].logits].out, ln), n[0].g->nodes[n[0].logits].out, ln,
                 10 * tol, 0);
    /* inference: batch norm on its running statistics */
    for (int d = 0; d < 2; d++) passed(rg_graph_forward(n[d].g, BATCH, 0));
    assert_close("inference logits", rg_host(n[1].g, n[1].g->nodes[n[1].logits].out, ln),
                 n[0].g->nodes[n[0].logits].out, ln, 10 * tol, 0);
    for (int d = 0; d < 2; d++) { /* and the input's gradient of a training step again */
        passed(rg_graph_forward(n[d].g, BATCH, 1));
        passed(rg_graph_backward(n[d].g, n[d].loss));
    }
    const float *dx = rg_node_grad(n[0].g, n[0].x);
    const size_t xn = BATCH * rg_node_size(n[0].g, n[0].x);
    if (dx) assert_close("input gradient", rg_host(n[1].g, n[1].g->nodes[n[1].x].dout, xn), dx, xn, tol, 0);
    for (int d = 0; d < 2; d++) rg_optim_free(o[d]), rg_graph_free(n[d].g);
}

static void compare(net_builder builder, rg_optim_kind kind, bool freeze_first, double tol) {
    compare_in("fp32", builder, kind, freeze_first, tol, 12);
}

static void trains_with_the_cpus_bits(void **state) {
    for (int kind = 0; kind < RG_OPTIM_COUNT; kind++) compare(mlp, (rg_optim_kind)kind, true, EXACT);
}

static void ops_without_weights_match_the_cpu(void **state) { compare(combine_net, RG_OPTIM_ADAM, false, EXACT); }

static void convolutions_match_the_cpu(void **state) { compare(conv_net, RG_OPTIM_MOMENTUM, false, CONV_TOL); }

/* A residual block: input (4, 6, 6) -> 3x3 conv (6) -> tanh, h -> 3x3 conv (6) -> + h (the
 * add in place on the convolution, which adds h as it writes: memory.c) -> relu -> global
 * average pool -> dense 10. */
static void residual_net(net *n) {
    rg_graph *g = image_input(n, 4, 6, 6);
    const rg_node h = rg_tanh(g, rg_conv2d(g, n->x, 6, 3, NULL));
    const rg_node sum = rg_add(g, rg_conv2d(g, h, 6, 3, NULL), h);
    n->logits = rg_dense(g, rg_global_avg_pool(g, rg_relu(g, sum)), CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
}

/* The residual block trains as on the CPU; on the device, once training has moved the
 * biases, a pass where the convolution does the add and one where the add runs on its own
 * (the monitor reading the convolution's output) give the same logits, bit for bit. */
static void a_convolution_does_its_add(void **state) {
    compare(residual_net, RG_OPTIM_MOMENTUM, false, CONV_TOL);
    net n = build(residual_net, "cuda", "fp32");
    rg_optim_config c = rg_optim_defaults(RG_OPTIM_MOMENTUM);
    rg_optim *o = rg_optim_create(&c, n.g->param_floats);
    assert_non_null(o);
    assert_int_equal(rg_optim_place(o, n.g), RG_OK);
    for (int s = 0; s < 3; s++) step(&n, o, s);
    rg_node_impl *conv = NULL;
    for (int i = 0; i < n.g->n_nodes; i++)
        if (n.g->nodes[i].adds_from >= 0) conv = &n.g->nodes[i];
    assert_non_null(conv);
    const size_t ln = (size_t)BATCH * CLASSES;
    float fused[BATCH * CLASSES];
    for (int watched = 0; watched < 2; watched++) {
        conv->watched = watched;
        feed(&n, 9);
        assert_int_equal(rg_graph_forward(n.g, BATCH, 1), RG_OK);
        assert_int_equal(conv->added, !watched);
        const float *logits = rg_host(n.g, n.g->nodes[n.logits].out, ln);
        if (!watched) memcpy(fused, logits, sizeof fused);
        else assert_memory_equal(fused, logits, sizeof fused);
    }
    conv->watched = false;
    rg_optim_free(o), rg_graph_free(n.g);
}

/* The residual block's sum read by a batch norm, in planes of 36 values (four a load) or
 * of 25 (one) */
static void residual_norm_net_of(net *n, int side) {
    rg_graph *g = image_input(n, 4, side, side);
    const rg_node h = rg_tanh(g, rg_conv2d(g, n->x, 6, 3, NULL));
    const rg_node sum = rg_add(g, rg_conv2d(g, h, 6, 3, NULL), h);
    const rg_node y = rg_relu(g, rg_batch_norm(g, sum, 0.1f, 1e-5f));
    n->logits = rg_dense(g, rg_global_avg_pool(g, y), CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
}
static void residual_norm_net(net *n) { residual_norm_net_of(n, 6); }
static void residual_norm_net5(net *n) { residual_norm_net_of(n, 5); }

/* A convolution that does its residual add also takes, as it writes the sum, the batch
 * statistics of the batch norm that reads it (memory.c; on the device): trained so, and
 * with the monitor reading the convolution's output (the add then runs on its own and the
 * batch norm takes its statistics itself), the same weights, running statistics and
 * logits, bit for bit. */
static void statistics_taken_either_way(net_builder builder, const char *precision) {
    net n[2] = {build(builder, "cuda", precision), build(builder, "cuda", precision)};
    rg_optim_config c = rg_optim_defaults(RG_OPTIM_MOMENTUM);
    rg_optim *o[2];
    rg_node_impl *conv[2] = {NULL, NULL};
    for (int d = 0; d < 2; d++) {
        assert_non_null(o[d] = rg_optim_create(&c, n[d].g->param_floats));
        assert_int_equal(rg_optim_place(o[d], n[d].g), RG_OK);
        for (int i = 0; i < n[d].g->n_nodes; i++)
            if (n[d].g->nodes[i].stats_for >= 0) conv[d] = &n[d].g->nodes[i];
        assert_non_null(conv[d]);
        conv[d]->watched = d == 1;
    }
    for (int s = 0; s < 4; s++)
        for (int d = 0; d < 2; d++) {
            step(&n[d], o[d], s);
#ifndef RG_FAKE_DEVICE /* (the stand-in leaves the statistics to the batch norm) */
            assert_int_equal(conv[d]->stats_span != 0, d == 0);
#endif
        }
    const size_t pn = n[0].g->param_floats, sn = n[0].g->state_floats, ln = (size_t)BATCH * CLASSES;
    float *kept = malloc((pn + sn + ln) * sizeof *kept); /* the weights, running statistics, logits */
    assert_non_null(kept);
    memcpy(kept, rg_host(n[0].g, n[0].g->param_buf, pn), pn * sizeof *kept);
    memcpy(kept + pn, rg_host(n[0].g, n[0].g->state_buf, sn), sn * sizeof *kept);
    memcpy(kept + pn + sn, rg_host(n[0].g, n[0].g->nodes[n[0].logits].out, ln), ln * sizeof *kept);
    assert_memory_equal(kept, rg_host(n[1].g, n[1].g->param_buf, pn), pn * sizeof *kept);
    assert_memory_equal(kept + pn, rg_host(n[1].g, n[1].g->state_buf, sn), sn * sizeof *kept);
    assert_memory_equal(kept + pn + sn, rg_host(n[1].g, n[1].g->nodes[n[1].logits].out, ln), ln * sizeof *kept);
    free(kept);
    for (int d = 0; d < 2; d++) conv[d]->watched = false, rg_optim_free(o[d]), rg_graph_free(n[d].g);
}

/* ... in planes of four values a load and of one, in fp32 and (but on the stand-in, which
 * refuses it) bf16, where the statistics are of the sum as stored; and as the CPU within
 * rounding. */
static void a_convolution_takes_its_norms_statistics(void **state) {
    const net_builder builders[] = {residual_norm_net, residual_norm_net5};
    for (size_t k = 0; k < sizeof builders / sizeof *builders; k++) {
        compare(builders[k], RG_OPTIM_MOMENTUM, false, CONV_TOL);
        statistics_taken_either_way(builders[k], "fp32");
#ifndef RG_FAKE_DEVICE
        statistics_taken_either_way(builders[k], "bf16");
#endif
    }
}

/* A layer's health figures, in one order */
#define FIGURES 11
static void figures_of(const rg_layer_health *h, double f[FIGURES]) {
    const double all[FIGURES] = {h->grad_norm, h->weight_norm, h->update_ratio, h->backward_gain, h->grad_rms,
                                 h->pre_mean,  h->pre_std,     h->act_mean,     h->act_std,      h->saturated,
                                 h->dead};
    memcpy(f, all, sizeof all);
}

/* Step s of replayed_passes_give_the_same_bits, watched by the monitor when given, two
 * steps in four (so that each half of the inputs' block has passes watched and not). */
static void step_watched(net *n, rg_optim *o, rg_monitor *m, int s) {
    if (m && s / 2 % 2) m = NULL;
    if (m) {
        rg_monitor_enable(m, 1);
        assert_int_equal(rg_monitor_track_update(m, 1, o, 1), RG_OK);
    }
    step(n, o, s);
    if (m) {
        rg_monitor_enable(m, 0);
        rg_monitor_note_update(m);
    }
}

/* Passes captured as CUDA graphs and replayed (REGRAD_GRAPHS=1) train the residual block
 * (and with a batch norm on its sum, whose statistics the convolution takes) and the
 * batch-norm network with the bits of the passes run as they are: the weights, the
 * running statistics, and the logits of an inference pass; and with the health monitor
 * watching half the steps, its figures too (the watched passes replayed as passes of their
 * own, their sums kernels of the graph).  On the stand-in, which cannot capture, every pass
 * runs as is and the reason is kept. */
static void replayed_passes_give_the_same_bits(void **state) {
    const net_builder builders[] = {residual_net, norm_net, residual_norm_net};
    for (int watching = 0; watching < 2; watching++)
        for (size_t b = 0; b < sizeof builders / sizeof *builders; b++) {
            net n[2];
            rg_optim *o[2];
            rg_monitor *m[2] = {NULL, NULL};
            rg_optim_config c = rg_optim_defaults(RG_OPTIM_MOMENTUM);
            for (int d = 0; d < 2; d++) {
                if (d) setenv("REGRAD_GRAPHS", "1", 1); /* read at a graph's first pass */
                n[d] = build(builders[b], "cuda", "fp32");
                assert_non_null(o[d] = rg_optim_create(&c, n[d].g->param_floats));
                assert_int_equal(rg_optim_place(o[d], n[d].g), RG_OK);
                if (watching) assert_non_null(m[d] = rg_monitor_create(n[d].g));
                step_watched(&n[d], o[d], m[d], 0);
                unsetenv("REGRAD_GRAPHS");
            }
            for (int s = 1; s < 16; s++)
                for (int d = 0; d < 2; d++) step_watched(&n[d], o[d], m[d], s);
            for (int d = 0; d < 2; d++) assert_int_equal(rg_graph_forward(n[d].g, BATCH, 0), RG_OK);
            const char *broken;
            const long replays = rg_graph_replays(n[1].g, &broken);
#ifdef RG_FAKE_DEVICE
            assert_int_equal(replays, 0);
            assert_non_null(broken);
#else
            if (broken) fail_msg("a pass could not be captured: %s", broken);
            assert_true(replays >= 16); /* from the second run of each kind of forward and the third backward on */
#endif
            assert_int_equal(rg_graph_replays(n[0].g, NULL), 0);
            const size_t pn = n[0].g->param_floats, sn = n[0].g->state_floats, ln = (size_t)BATCH * CLASSES;
            float *kept = malloc((pn + sn + ln) * sizeof *kept);
            assert_non_null(kept);
            memcpy(kept, rg_host(n[0].g, n[0].g->param_buf, pn), pn * sizeof *kept);
            if (sn) memcpy(kept + pn, rg_host(n[0].g, n[0].g->state_buf, sn), sn * sizeof *kept);
            memcpy(kept + pn + sn, rg_host(n[0].g, n[0].g->nodes[n[0].logits].out, ln), ln * sizeof *kept);
            assert_memory_equal(kept, rg_host(n[1].g, n[1].g->param_buf, pn), pn * sizeof *kept);
            if (sn) assert_memory_equal(kept + pn, rg_host(n[1].g, n[1].g->state_buf, sn), sn * sizeof *kept);
            assert_memory_equal(kept + pn + sn, rg_host(n[1].g, n[1].g->nodes[n[1].logits].out, ln),
                                ln * sizeof *kept);
            free(kept);
            for (int i = 0; watching && i < rg_monitor_layer_count(m[0]); i++) {
                double want[FIGURES], got[FIGURES];
                figures_of(rg_monitor_layer(m[0], i), want), figures_of(rg_monitor_layer(m[1], i), got);
                assert_memory_equal(want, got, sizeof want);
            }
            for (int d = 0; d < 2; d++) rg_monitor_free(m[d]), rg_optim_free(o[d]), rg_graph_free(n[d].g);
        }
}

static void pooling_matches_the_cpu(void **state) { compare(pool_net, RG_OPTIM_ADAM, false, CONV_TOL); }

static void dropout_softmax_mse_match_the_cpu(void **state) { compare(misc_net, RG_OPTIM_SGD, false, EXACT); }

/* momentum, not Adam: a convolution's bias before batch norm has a gradient of rounding
 * noise only, which Adam's normalised steps would turn into full-size moves */
static void batch_norm_matches_the_cpu(void **state) { compare(norm_net, RG_OPTIM_MOMENTUM, false, CONV_TOL); }

/* The health monitor watching 3 steps of a network on the CPU and on the device: every
 * layer's figures within tol (relative, plus 1e-6 absolute) and the same verdicts, and its
 * inputs' moments (GRA's and the report's E[x x^T] and E[x]) within tol of the largest. */
static void watch(net_builder builder, double tol) {
    net n[2] = {build(builder, "cpu", "fp32"), build(builder, "cuda", "fp32")};
    rg_optim_config c = rg_optim_defaults(RG_OPTIM_MOMENTUM);
    rg_optim *o[2];
    rg_monitor *mon[2];
    for (int d = 0; d < 2; d++) {
        assert_non_null(o[d] = rg_optim_create(&c, n[d].g->param_floats));
        assert_int_equal(rg_optim_place(o[d], n[d].g), RG_OK);
        assert_non_null(mon[d] = rg_monitor_create(n[d].g));
        rg_monitor_want_moments(mon[d], 1);
    }
    for (int s = 0; s < 3; s++)
        for (int d = 0; d < 2; d++) {
            rg_monitor_enable(mon[d], 1);
            assert_int_equal(rg_monitor_track_update(mon[d], 1, o[d], 1), RG_OK);
            float *in = rg_graph_input_buffer(n[d].g, n[d].x);
            const size_t size = rg_node_size(n[d].g, n[d].x);
            for (size_t i = 0; i < BATCH * size; i++) in[i] = (float)sin(0.37 * (double)i + s);
            for (int b = 0; b < BATCH; b++) rg_graph_labels(n[d].g)[b] = (b * 3 + s) % CLASSES;
            assert_int_equal(rg_graph_forward(n[d].g, BATCH, 1), RG_OK);
            assert_int_equal(rg_graph_backward(n[d].g, n[d].loss), RG_OK);
            rg_monitor_enable(mon[d], 0);
            rg_optim_step(o[d], n[d].g->param_buf, n[d].g->grad_buf, 0.01f);
            rg_monitor_note_update(mon[d]);
            rg_monitor_judge(mon[d]);
        }
    assert_int_equal(rg_monitor_layer_count(mon[0]), rg_monitor_layer_count(mon[1]));
    for (int i = 0; i < rg_monitor_layer_count(mon[0]); i++) {
        const rg_layer_health *a = rg_monitor_layer(mon[0], i), *b = rg_monitor_layer(mon[1], i);
        double want[FIGURES], got[FIGURES];
        figures_of(a, want), figures_of(b, got);
        for (size_t k = 0; k < FIGURES; k++)
            if (!(isnan(want[k]) ? isnan(got[k]) : fabs(want[k] - got[k]) <= tol * fabs(want[k]) + 1e-6))
                fail_msg("%s: figure %zu is %.9g on the device, %.9g on the CPU", a->name, k, got[k], want[k]);
        assert_int_equal(a->verdict, b->verdict);
        const float *mean[2], *moment[2];
        int f[2];
        for (int d = 0; d < 2; d++) moment[d] = rg_monitor_input_moment(mon[d], i, &mean[d], &f[d]);
        if (!moment[0]) continue; /* a grouped convolution: none */
        assert_non_null(moment[1]);
        assert_int_equal(f[0], f[1]);
        float largest = 0;
        for (size_t k = 0; k < (size_t)f[0] * f[0]; k++) largest = fmaxf(largest, fabsf(moment[0][k]));
        assert_close("input moment", moment[1], moment[0], (size_t)f[0] * f[0], tol * largest, tol);
        assert_close("input mean", mean[1], mean[0], (size_t)f[0], tol * sqrtf(largest), tol);
    }
    /* the inputs' conditioning (the report's), measured by a monitor whose watched passes'
     * figures wait for the update's note on the device: its moments arrive all the same */
    for (int d = 0; d < 2; d++) assert_int_equal(rg_monitor_measure_curvature(mon[d], n[d].loss, BATCH, 0), RG_OK);
    for (int i = 0; i < rg_monitor_layer_count(mon[0]); i++) {
        const rg_layer_health *a = rg_monitor_layer(mon[0], i), *b = rg_monitor_layer(mon[1], i);
        if (isnan(a->mean_outlier)) continue; /* no moments */
        /* a conditioning past 1e6 divides by a median eigenvalue at the moments' rounding */
        if (!(fabs(b->mean_outlier - a->mean_outlier) <= 1e-3 * fabs(a->mean_outlier) + 1e-6 &&
              (fabs(b->input_cond - a->input_cond) <= 1e-2 * a->input_cond ||
               (a->input_cond > 1e6 && b->input_cond > 1e6 && isfinite(b->input_cond)))))
            fail_msg("%s: conditioning %.9g and mean outlier %.9g on the device, %.9g and %.9g on the CPU", a->name,
                     b->input_cond, b->mean_outlier, a->input_cond, a->mean_outlier);
    }
    for (int d = 0; d < 2; d++) rg_monitor_free(mon[d]), rg_optim_free(o[d]), rg_graph_free(n[d].g);
}

/* dense, convolutions of every kind, batch norm with a fused relu, tanh */
static void the_monitor_sees_what_the_cpus_sees(void **state) {
    watch(mlp, 10 * CONV_TOL);
    watch(conv_net, 10 * CONV_TOL);
    watch(norm_net, 10 * CONV_TOL);
}

/* Every op with a tangent on the device: input (3, 9, 9) -> zero padding -> 3x3 stride 2
 * -> tanh -> average 2x2 stride 1 padding 1 -> 1x1 (no bias) -> sigmoid -> a global
 * average pool and the sigmoid's own flattened sum with itself, concatenated -> dense 10. */
static void tangent_net(net *n) {
    rg_graph *g = n->g;
    rg_node h = rg_tanh(g, padded_strided_conv(n, 1));
    rg_conv_opts o = rg_conv_defaults();
    o.bias = 0;
    h = rg_sigmoid(g, rg_conv2d(g, rg_avg_pool2d(g, h, 2, 1, 1), 6, 1, &o));
    const rg_node both[2] = {rg_global_avg_pool(g, h), rg_flatten(g, rg_add(g, h, h))};
    n->logits = rg_dense(g, rg_concat(g, 2, both), CLASSES, RG_INIT(RG_INIT_GLOROT_UNIFORM));
}

/* v (the graph's pn parameter floats, in host memory) copied to where g's parameters are */
static float *parameter_direction(rg_graph *g, const float *v, size_t pn) {
    float *dir = g->backend->alloc(pn);
    assert_non_null(dir);
    rg_graph_write(g, dir, v, pn);
    return dir;
}

/* The curvature along a direction (a forward and a tangent pass) on the CPU and on the
 * device: the loss's slope and v^T G v within tol of the CPU's, and the parameters as they
 * were. */
static void curvature_along(net_builder builder, const char *precision, double tol) {
    net n[2] = {build(builder, "cpu", "fp32"), build(builder, "cuda", precision)};
    const size_t pn = n[0].g->param_floats;
    float *v = malloc(pn * sizeof *v), *before = malloc(pn * sizeof *before);
    assert_non_null(v), assert_non_null(before);
    for (size_t i = 0; i < pn; i++) v[i] = 0.01f * (float)sin(0.1 * (double)i);
    double slope[2], curvature[2];
    for (int d = 0; d < 2; d++) {
        rg_graph *g = n[d].g;
        float *in = rg_graph_input_buffer(g, n[d].x);
        for (size_t i = 0; i < BATCH * rg_node_size(g, n[d].x); i++) in[i] = (float)sin(0.37 * (double)i);
        for (int b = 0; b < BATCH; b++) rg_graph_labels(g)[b] = (b * 3) % CLASSES;
        float *dir = parameter_direction(g, v, pn);
        memcpy(before, rg_host(g, g->param_buf, pn), pn * sizeof *before);
        assert_int_equal(rg_graph_curvature_along(g, n[d].loss, BATCH, 1, dir, &slope[d], &curvature[d]), RG_OK);
        assert_memory_equal(before, rg_host(g, g->param_buf, pn), pn * sizeof *before);
        g->backend->release(dir);
    }
    if (!(fabs(slope[1] - slope[0]) <= tol * fabs(slope[0]) && curvature[0] > 0 &&
          fabs(curvature[1] - curvature[0]) <= tol * curvature[0]))
        fail_msg("slope %.9g and curvature %.9g on the device, %.9g and %.9g on the CPU", slope[1], curvature[1],
                 slope[0], curvature[0]);
    free(v), free(before);
    for (int d = 0; d < 2; d++) rg_graph_free(n[d].g);
}

/* every op's tangent: the MLP's (dense, activations, cross-entropy), plain CNNs', every
 * kind of convolution and pooling, batch norm (a fused relu, on a dense layer), dropout,
 * softmax and a squared error */
static void curvature_along_matches_the_cpu(void **state) {
    curvature_along(mlp, "fp32", EXACT);
    curvature_along(misc_net, "fp32", EXACT);
    curvature_along(tangent_net, "fp32", CONV_TOL);
    curvature_along(conv_net, "fp32", CONV_TOL);
    curvature_along(pool_net, "fp32", CONV_TOL);
    curvature_along(norm_net, "fp32", CONV_TOL);
    curvature_along(residual_net, "fp32", CONV_TOL); /* the add's tangent, its convolution's add in forward */
}

/* ||a - b|| against ||b|| over n values */
static double relative(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) d += pow((double)a[i] - b[i], 2), m += pow(b[i], 2);
    return sqrt(d / m);
}

/* Curvature products on the device (v where the parameters are, C v in host memory), the
 * Gauss-Newton's and the exact Hessian's (every op's second-order backward term): the
 * CPU's within tol, relative over the vector, and so their top eigenvalues by power
 * iteration; bf16 refused. */
static void curvature_products(net_builder builder, double tol) {
    net n[2] = {build(builder, "cpu", "fp32"), build(builder, "cuda", "fp32")};
    const size_t pn = n[0].g->param_floats;
    float *v = malloc(pn * sizeof *v), *cv[2] = {malloc(pn * sizeof(float)), malloc(pn * sizeof(float))};
    assert_non_null(v), assert_non_null(cv[0]), assert_non_null(cv[1]);
    for (size_t i = 0; i < pn; i++) v[i] = 0.01f * (float)sin(0.1 * (double)i);
    rg_graph_write(n[1].g, n[1].g->param_buf, n[0].g->param_buf, pn); /* the CPU's weights */
    for (int kind = 0; kind < 2; kind++) {
        double top[2];
        for (int d = 0; d < 2; d++) {
            rg_graph *g = n[d].g;
            feed(&n[d], 0);
            float *dir = parameter_direction(g, v, pn);
            assert_int_equal(rg_graph_curvature_product(g, n[d].loss, BATCH, 1, (rg_curvature)kind, dir, cv[d]),
                             RG_OK);
            assert_int_equal(rg_graph_top_curvature(g, n[d].loss, BATCH, 1, (rg_curvature)kind, RG_NONE, 6, 0,
                                                    &top[d]), RG_OK);
            g->backend->release(dir);
        }
        double dot = 0;
        for (size_t i = 0; i < pn; i++) dot += (double)v[i] * cv[0][i];
        assert_true(dot != 0 && (kind == RG_CURVATURE_HESSIAN || dot > 0)); /* G is positive semi-definite */
        const double apart = relative(cv[1], cv[0], pn);
        if (!(apart <= tol) || !(top[0] != 0 && fabs(top[1] - top[0]) <= fmax(tol, 1e-6) * fabs(top[0])))
            fail_msg("%s: C v %.3g apart from the CPU's; top eigenvalue %.9g on the device, %.9g on the CPU",
                     kind ? "the Hessian" : "Gauss-Newton", apart, top[1], top[0]);
    }
    free(v), free(cv[0]), free(cv[1]);
    for (int d = 0; d < 2; d++) rg_graph_free(n[d].g);
}

static void curvature_products_match_the_cpu(void **state) {
    (void)state;
    curvature_products(mlp, EXACT);
    curvature_products(misc_net, EXACT);
    curvature_products(conv_net, CONV_TOL);
    curvature_products(norm_net, CONV_TOL);
    curvature_products(residual_net, CONV_TOL);
}

/* Tangents along the input's direction as well as the parameters' (how test_gradcheck checks
 * every op's tangent and backward tangent against finite differences): the logits'
 * tangent, and the exact Hessian's backward tangent of the loss (its parameters' part and
 * its input's, the input's gradient), on the device within tol of the CPU's. */
static void along_the_input(net_builder builder, const char *name, double tol) {
    net n[2] = {build(builder, "cpu", "fp32"), build(builder, "cuda", "fp32")};
    const size_t pn = n[0].g->param_floats, in_n = BATCH * rg_node_size(n[0].g, n[0].x);
    const size_t out_n = BATCH * rg_node_size(n[0].g, n[0].logits);
    float *v = malloc(pn * sizeof *v), *dir = malloc(in_n * sizeof *dir);
    float *t[2] = {malloc(out_n * sizeof(float)), malloc(out_n * sizeof(float))};
    float *hv[2] = {malloc(pn * sizeof(float)), malloc(pn * sizeof(float))};
    float *hx[2] = {malloc(in_n * sizeof(float)), malloc(in_n * sizeof(float))};
    const float **by_node = calloc((size_t)n[0].g->n_nodes, sizeof *by_node);
    assert_true(v && dir && t[0] && t[1] && hv[0] && hv[1] && hx[0] && hx[1] && by_node);
    for (size_t i = 0; i < pn; i++) v[i] = 0.01f * (float)sin(0.1 * (double)i);
    for (size_t i = 0; i < in_n; i++) dir[i] = (float)cos(0.23 * (double)i);
    by_node[n[0].x] = dir;
    rg_graph_write(n[1].g, n[1].g->param_buf, n[0].g->param_buf, pn); /* the CPU's weights */
    const float seed = 1;
    for (int d = 0; d < 2; d++) {
        rg_graph *g = n[d].g;
        feed(&n[d], 0);
        float *dv = parameter_direction(g, v, pn);
        if (rg_graph_tangent_from(g, BATCH, 1, dv, by_node, n[d].logits, t[d]) != RG_OK)
            fail_msg("tangent along the input: %s", rg_last_error());
        if (rg_graph_backward_tangent(g, n[d].loss, &seed, BATCH, 1, false, dv, by_node) != RG_OK)
            fail_msg("backward tangent along the input: %s", rg_last_error());
        memcpy(hv[d], rg_host(g, g->grad_buf, pn), pn * sizeof(float));
        memcpy(hx[d], rg_host(g, rg_node_grad(g, n[d].x), in_n), in_n * sizeof(float));
        g->backend->release(dv);
    }
    /* (H v's terms of either sign cancel: its rounding is relatively larger) */
    const double apart[3] = {relative(t[1], t[0], out_n), relative(hv[1], hv[0], pn), relative(hx[1], hx[0], in_n)};
    if (!(apart[0] <= tol && apart[1] <= 10 * tol && apart[2] <= 10 * tol))
        fail_msg("%s along its input, the device's from the CPU's: the logits' tangent %.3g, H v's parameters "
                 "%.3g, its input %.3g", name, apart[0], apart[1], apart[2]);
    free(v), free(dir), free(by_node);
    for (int d = 0; d < 2; d++) free(t[d]), free(hv[d]), free(hx[d]), rg_graph_free(n[d].g);
}

static void tangents_along_the_input_match_the_cpu(void **state) {
    (void)state;
    along_the_input(tangent_net, "tangent_net", CONV_TOL);
    along_the_input(conv_net, "conv_net", CONV_TOL);
    along_the_input(pool_net, "pool_net", CONV_TOL);
    along_the_input(norm_net, "norm_net", CONV_TOL);
    along_the_input(residual_net, "residual_net", CONV_TOL);
    along_the_input(combine_net, "combine_net", CONV_TOL);
}

/* Device buffers of n floats holding host values, and their values back. */
static float *up_copy(const rg_backend *b, const float *host, size_t n) {
    float *d = b->alloc(n);
    assert_non_null(d);
    b->upload(d, host, n);
    return d;
}
static float *down_copy(const rg_backend *b, const float *d, size_t n) {
    float *h = malloc(n * sizeof *h);
    assert_non_null(h);
    b->download(h, d, n);
    return h;
}

/* GRA's per-step arithmetic on a layer (units x f, an odd f; the monitor's mean, moments
 * and covariance split in host memory) by the device's backend and by the CPU's: the trust
 * region's figures from the step w - w0, within float rounding. */
static void gra_arithmetic_matches_the_cpu(void **state) {
    enum { UNITS = 24, F = 37, K = 8 };
    net n = build(mlp, "cuda", "fp32");
    const rg_backend *dev = n.g->backend, *cpu = &rg_cpu_backend;
    static float a[F * F], moment[F * F], mean[F], qm[(K + 1) * F], db[UNITS], split_s[8 * 8], dw[UNITS * F];
    static float scratch[UNITS * F];
    for (int i = 0; i < UNITS * F; i++) dw[i] = 0.01f * (float)cos(0.7 * i);
    for (int i = 0; i < F * F; i++) a[i] = (float)sin(0.13 * i);
    for (int i = 0; i < F; i++) {
        mean[i] = 0.5f + 0.1f * (float)sin(0.9 * i);
        for (int j = 0; j < F; j++) { /* A A^T / F: symmetric, positive semi-definite */
            double m = 0;
            for (int k = 0; k < F; k++) m += (double)a[i * F + k] * a[j * F + k];
            moment[i * F + j] = (float)(m / F);
        }
    }
    for (int i = 0; i < (K + 1) * F; i++) qm[i] = (float)cos(0.21 * i);
    for (int i = 0; i < 8 * 8; i++) split_s[i] = (float)(1.0 + 0.1 * sin(0.5 * i));
    for (int u = 0; u < UNITS; u++) db[u] = 0.01f * (float)cos(1.7 * u);
    float *d_dw = up_copy(dev, dw, UNITS * F), *d_db = up_copy(dev, db, UNITS);
    double change, d_change, rows, d_rows;
    cpu->function_change(dw, db, UNITS, F, moment, mean, scratch, &change);
    dev->function_change(d_dw, d_db, UNITS, F, moment, mean, NULL, &d_change);
    float *products = malloc((size_t)F * UNITS * sizeof *products); /* from F samples, A's columns */
    float *samples = malloc((size_t)F * F * sizeof *samples);
    for (int k = 0; k < F; k++)
        for (int i = 0; i < F; i++) samples[k * F + i] = a[i * F + k];
    cpu->function_change_rows(dw, db, UNITS, F, samples, F, products, &rows);
    float *d_samples = up_copy(dev, samples, F * F); /* GRA keeps the samples there */
    dev->function_change_rows(d_dw, d_db, UNITS, F, d_samples, F, NULL, &d_rows);
    rg_bound_sums sums, d_sums;
    cpu->function_change_bound(dw, db, UNITS, F, qm, K, scratch, &sums);
    const double bound = rg_bound_from_sums(&sums, split_s, K, 0.25, UNITS);
    float *d_qm = up_copy(dev, qm, (K + 1) * F); /* GRA keeps the split's rows there */
    dev->function_change_bound(d_dw, d_db, UNITS, F, d_qm, K, NULL, &d_sums);
    dev->flush_sums(); /* the three figures arrive together */
    dev->release(d_samples);
    free(products), free(samples);
    if (!(change > 0 && fabs(d_change - change) <= 1e-5 * change))
        fail_msg("function change %.9g on the device, %.9g on the CPU", d_change, change);
    if (!(rows > 0 && fabs(d_rows - rows) <= 1e-5 * rows))
        fail_msg("function change from samples %.9g on the device, %.9g on the CPU", d_rows, rows);
    const double d_bound = rg_bound_from_sums(&d_sums, split_s, K, 0.25, UNITS);
    if (!(bound > 0 && fabs(d_bound - bound) <= 1e-5 * bound))
        fail_msg("the bound %.9g on the device, %.9g on the CPU", d_bound, bound);
    dev->release(d_dw), dev->release(d_db), dev->release(d_qm);
    rg_graph_free(n.g);
    (void)state;
}

/* One layer of GRA's batched arithmetic, on the host (h) and on the device (d): its buffers
 * in one block each, w w0 gw | b b0 gb pm db | mean. */
typedef struct gra_case {
    rg_gra_layer h, d;
    float *hw, *hu, *dw, *du; /* the weight-sized block, the unit-sized block */
    double squares[2], shift[2];
} gra_case;

static void gra_case_make(gra_case *c, const rg_backend *dev, int units, int f, bool bias, int seed) {
    const size_t nw = (size_t)units * f, nu = (size_t)units;
    c->hw = malloc(3 * nw * sizeof *c->hw), c->hu = malloc((5 * nu + (size_t)f) * sizeof *c->hu);
    assert_non_null(c->hw), assert_non_null(c->hu);
    for (size_t i = 0; i < 3 * nw; i++) c->hw[i] = (float)sin(0.37 * (double)i + seed) * (i < 2 * nw ? 1.0f : 0.3f);
    for (size_t i = nw; i < 2 * nw; i++) c->hw[i] = c->hw[i - nw] - 0.01f * (float)cos(0.7 * (double)i + seed);
    for (size_t i = 0; i < 5 * nu + (size_t)f; i++) c->hu[i] = 0.5f + 0.4f * (float)sin(1.3 * (double)i + 2 * seed);
    c->dw = up_copy(dev, c->hw, 3 * nw), c->du = up_copy(dev, c->hu, 5 * nu + (size_t)f);
    float *blocks[2][2] = {{c->hw, c->hu}, {c->dw, c->du}};
    for (int side = 0; side < 2; side++) {
        float *w = blocks[side][0], *u = blocks[side][1];
        rg_gra_layer *l = side ? &c->d : &c->h;
        *l = (rg_gra_layer){.w = w, .w0 = w + nw, .gw = w + 2 * nw, .b = bias ? u : NULL, .b0 = bias ? u + nu : NULL,
                            .gb = bias ? u + 2 * nu : NULL, .pm = u + 3 * nu, .db = u + 4 * nu, .mean = u + 5 * nu,
                            .units = units, .f = f, .squares = &c->squares[side], .shift = &c->shift[side]};
    }
}

/* the case's host block and its device block, which must match within rel (0: exactly) */
static void gra_case_compare(const char *what, const gra_case *c, const rg_backend *dev, double rel) {
    const size_t nw = (size_t)c->h.units * c->h.f, nu = (size_t)c->h.units;
    float *w = down_copy(dev, c->dw, 3 * nw), *u = down_copy(dev, c->du, 5 * nu + (size_t)c->h.f);
    if (rel == 0) {
        assert_memory_equal(w, c->hw, 3 * nw * sizeof *w);
        assert_memory_equal(u, c->hu, (5 * nu + (size_t)c->h.f) * sizeof *u);
    } else {
        assert_close(what, w, c->hw, 3 * nw, rel, rel);
        assert_close(what, u, c->hu, 5 * nu + (size_t)c->h.f, rel, rel);
    }
    free(w), free(u);
}

/* GRA's arithmetic on many layers at once (more than one launch's worth; with and without
 * a bias; of different shapes), by the device's backend and the CPU's: centred gradients
 * the CPU's bits; the steps' products with the mean, squares, the steps back, the bias
 * steps and shifts within float rounding; the guards' sums of squares of more pieces than
 * a launch takes, each the bits of the device's sum_squares read at once. */
static void gra_batches_match_the_cpu(void **state) {
    enum { LAYERS = 19 };
    net n = build(mlp, "cuda", "fp32");
    const rg_backend *dev = n.g->backend, *cpu = &rg_cpu_backend;
    gra_case c[LAYERS];
    rg_gra_layer h[LAYERS], d[LAYERS];
    for (int i = 0; i < LAYERS; i++) {
        gra_case_make(&c[i], dev, 3 + 5 * i % 29, 2 + 7 * i % 41, i % 3 != 1, i);
        h[i] = c[i].h, d[i] = c[i].d;
    }
    int centred = 0; /* the layers with a bias, which centring needs, first */
    rg_gra_layer hb[LAYERS], dbl[LAYERS];
    for (int i = 0; i < LAYERS; i++)
        if (h[i].b) hb[centred] = h[i], dbl[centred++] = d[i];
    cpu->centre_gradients(hb, centred), dev->centre_gradients(dbl, centred);
    for (int i = 0; i < LAYERS; i++) gra_case_compare("the centred gradient", &c[i], dev, 0);
    cpu->layer_steps(h, LAYERS), dev->layer_steps(d, LAYERS);
    cpu->uncentre_steps(hb, centred), dev->uncentre_steps(dbl, centred);
    cpu->step_shifts(h, LAYERS), dev->step_shifts(d, LAYERS);
    if (dev->flush_sums) dev->flush_sums();
    for (int i = 0; i < LAYERS; i++) {
        gra_case_compare("the steps' products, steps back and bias steps", &c[i], dev, 1e-5);
        double size = 0; /* the shift's terms' size: pm and db may nearly cancel */
        for (int u = 0; u < h[i].units; u++) {
            const double t = fabs(h[i].pm[u]) + (h[i].b ? fabs(h[i].db[u]) : 0);
            size += t * t;
        }
        if (!(fabs(c[i].squares[1] - c[i].squares[0]) <= 1e-6 * c[i].squares[0] &&
              fabs(c[i].shift[1] - c[i].shift[0]) <= 1e-5 * size))
            fail_msg("layer %d: squares %.9g, shift %.9g on the device; %.9g, %.9g on the CPU", i, c[i].squares[1],
                     c[i].shift[1], c[i].squares[0], c[i].shift[0]);
    }
    enum { PIECES = 2 * LAYERS + 1 };
    const float *piece[PIECES];
    size_t len[PIECES];
    double sums[PIECES], *sum[PIECES];
    for (int i = 0; i < PIECES; i++) { /* each layer's weights and its gradient, and an empty piece */
        const gra_case *k = &c[i / 2 % LAYERS];
        piece[i] = i % 2 ? k->d.gw : k->d.w, len[i] = i < 2 * LAYERS ? (size_t)k->d.units * k->d.f : 0;
        sum[i] = &sums[i];
    }
    dev->sums_of_squares(piece, len, sum, PIECES);
    if (dev->flush_sums) dev->flush_sums();
    for (int i = 0; i < PIECES; i++)
        if (!(sums[i] == dev->sum_squares(piece[i], len[i])))
            fail_msg("piece %d: %.17g queued, %.17g at once", i, sums[i], dev->sum_squares(piece[i], len[i]));
    for (int i = 0; i < LAYERS; i++) dev->release(c[i].dw), dev->release(c[i].du), free(c[i].hw), free(c[i].hu);
    rg_graph_free(n.g);
    (void)state;
}

/* With the device's products in TF32 (10 bits of mantissa in the products, sums in fp32):
 * within the 5e-3 of the CPU's strict fp32 (the stand-in computes fp32 either way).
 * One step: the tolerance is the ops' own, forward and backward; a trajectory adds each
 * step's difference to the next's inputs (on an H200, conv_net's loss was 5.5e-3 apart at
 * its fourth momentum step). */
static void tf32_products_stay_close(void **state) {
    compare_in("tf32", mlp, RG_OPTIM_ADAM, false, TF32_TOL, 1);
    compare_in("tf32", conv_net, RG_OPTIM_MOMENTUM, false, TF32_TOL, 1);
    compare_in("tf32", norm_net, RG_OPTIM_MOMENTUM, false, TF32_TOL, 1);
}

/* bf16 on the device (activations and their gradients stored as bf16, products of bf16
 * operands summed in fp32; weights, loss and optimizer fp32) beside the CPU's fp32, from
 * the same weights and batches.  Every op alone (one_op: the input, the op, a flatten and
 * the loss), forward and backward: its output within the 2e-2 of the largest, each
 * value a bf16 one (the low 16 bits of its float zero), the first step's gradient of each
 * parameter and of the input within 2e-2 of its norm.  Whole networks: the logits within
 * 2e-2 of the largest and every step's loss within 2e-2 over a few Adam steps (their
 * gradients are not compared: through several layers, a relu's input that bf16 moves across
 * zero, or batch norm's cancellations, leave bf16's gradients as far from fp32's as
 * PyTorch's bf16 autocast leaves its own, docs/cuda.md); the zoo's ResNets and DenseNet
 * through a step forward and backward, their loss as close as bf16 keeps a deep net's
 * (BF16_ZOO_TOL); the curvature along a direction (every op's tangent in bf16) within 2e-2
 * of the CPU's on the nets without relus, BF16_RELU_TOL on those with them.  The stand-in
 * refuses bf16. */
#define BF16_TOL 2e-2
#define BF16_RELU_TOL 0.1

#ifndef RG_FAKE_DEVICE
static int one_op_case; /* which op one_op builds */
enum { ONE_OP_CASES = 28 };

static void one_op(net *n) {
    rg_graph *g = n->g;
    const int c = one_op_case;
    if (c == 6) image_input(n, 16, 2, 2);
    else if (c == 10) image_input(n, 12, 3, 3);
    else image_input(n, 4, 6, 6);
    const rg_node x = n->x, both[2] = {x, c >= 22 && c <= 24 ? rg_tanh(g, x) : x};
    const float w[2] = {0.3f, -1.2f};
    rg_conv_opts o = rg_conv_defaults();
    o.padding = RG_PAD_EXPLICIT, o.pad = 1;
    rg_node y = x;
    switch (c) {
    case 0: y = rg_dense(g, rg_flatten(g, x), 12, RG_INIT(RG_INIT_GLOROT_UNIFORM)); break;
    case 1: y = rg_conv2d(g, x, 4, 3, &o); break;
    case 2: o.stride = 2, y = rg_conv2d(g, x, 4, 3, &o); break;
    case 3: o.dilation = 2, o.pad = 2, o.groups = 2, y = rg_conv2d(g, x, 4, 3, &o); break;
    case 4: o.groups = 4, y = rg_conv2d(g, x, 4, 3, &o); break;
    case 5: o = rg_conv_defaults(), o.bias = 0, y = rg_conv2d(g, x, 6, 1, &o); break;
    case 6: y = rg_conv2d(g, x, 24, 1, NULL); break; /* its weights more than a sample's input and output */
    case 7: y = rg_max_pool2d(g, x, 2, 2, 0); break;
    case 8: y = rg_max_pool2d(g, x, 3, 2, 1); break;
    case 9: y = rg_avg_pool2d(g, x, 2, 1, 1); break;
    case 10: y = rg_global_avg_pool(g, x); break;
    case 11: y = rg_zero_pad2d(g, x, 1, 2, 0, 1); break;
    case 12: y = rg_batch_norm(g, x, 0.1f, 1e-5f); break;
    case 13: y = rg_relu(g, rg_batch_norm(g, x, 0.1f, 1e-5f)); break; /* the relu fused into it */
    case 14: y = rg_batch_norm(g, rg_flatten(g, x), 0.2f, 1e-3f); break;
    case 22: y = rg_add(g, both[1], x); break;
    case 23: y = rg_weighted_sum(g, 2, both, w); break;
    case 24: y = rg_concat(g, 2, both); break;
    case 25: y = rg_flatten_channels_last(g, x); break;
    case 26: y = rg_dropout(g, x, 0.3f); break;
    case 27: y = rg_softmax(g, rg_flatten(g, x)), n->loss = rg_mse(g, y, RG_NONE); break;
    default: y = rg_activation(g, x, (rg_act)(RG_ACT_RELU + c - 15)); /* cases 15 to 21 */
    }
    n->logits = rg_node_ndim(g, y) > 1 ? rg_flatten(g, y) : y;
}

static void compare_bf16(net_builder builder, int steps, bool gradients) {
    net n[2] = {build(builder, "cpu", "fp32"), build(builder, "cuda", "bf16")};
    rg_optim_config c = rg_optim_defaults(RG_OPTIM_ADAM);
    rg_optim *o[2];
    for (int d = 0; d < 2; d++) {
        assert_non_null(o[d] = rg_optim_create(&c, n[d].g->param_floats));
        assert_int_equal(rg_optim_place(o[d], n[d].g), RG_OK);
    }
    const size_t zn = BATCH * rg_node_size(n[0].g, n[0].logits);
    float *z[2] = {malloc(zn * sizeof(float)), malloc(zn * sizeof(float))}, top = 0;
    for (int d = 0; d < 2; d++) { /* the logits of an inference pass (backward may reuse their buffer) */
        feed(&n[d], 0);
        passed(rg_graph_forward(n[d].g, BATCH, 0));
        assert_int_equal(rg_node_read(n[d].g, n[d].logits, BATCH, z[d]), RG_OK);
    }
    for (size_t i = 0; i < zn; i++) top = fmaxf(top, fabsf(z[0][i]));
    assert_close("bf16 output", z[1], z[0], zn, BF16_TOL * top, 0);
    for (size_t i = 0; i < zn; i++) {
        uint32_t bits;
        memcpy(&bits, &z[1][i], sizeof bits);
        if (bits & 0xffffu) fail_msg("bf16 output %zu is %.9g, not a bf16 value", i, (double)z[1][i]);
    }
    free(z[0]), free(z[1]);
    for (int s = 0; s < steps; s++) {
        const float a = step(&n[0], o[0], s), b = step(&n[1], o[1], s);
        if (!(fabsf(a - b) <= BF16_TOL * fabsf(a)))
            fail_msg("bf16 step %d: loss %.9g on the device, %.9g on the CPU", s, b, a);
        if (s || !gradients) continue;
        const float *g = rg_host(n[1].g, n[1].g->grad_buf, n[1].g->param_floats);
        for (int p = 0; p < n[0].g->n_params; p++) {
            const rg_param_impl *pi = &n[0].g->params[p];
            const double r = relative(g + pi->offset, n[0].g->grad_buf + pi->offset, pi->size);
            if (!(r <= BF16_TOL)) fail_msg("bf16 gradient of %s: %.3g of its norm apart", pi->name, r);
        }
        const rg_node_impl *x = &n[1].g->nodes[n[1].x];
        const size_t xn = BATCH * x->size;
        const double r = relative(rg_node_host(n[1].g, x, x->dout, xn), rg_node_grad(n[0].g, n[0].x), xn);
        if (!(r <= BF16_TOL)) fail_msg("bf16 input gradient: %.3g of its norm apart", r);
    }
    for (int d = 0; d < 2; d++) rg_optim_free(o[d]), rg_graph_free(n[d].g);
}

/* A zoo model's step in bf16 on the device from the CPU's weights and batch: its loss
 * within BF16_ZOO_TOL of the CPU's fp32 loss (at random weights, batch 4, a deep net's loss
 * moves that far under bf16: PyTorch's own bf16 autocast moves torchvision's ResNet50's
 * by 2% to 12% over five seeds at 64x64, docs/cuda.md). */
#define BF16_ZOO_TOL 0.15
static void zoo_loss_bf16(const char *spec, int side, int batch) {
    const rg_model_opts o = {.c = 3, .h = side, .w = side, .classes = CLASSES, .seed = 1};
    rg_model m[2];
    float loss[2];
    for (int d = 0; d < 2; d++) {
        assert_int_equal(rg_model_build(spec, &o, &m[d]), RG_OK);
        assert_int_equal(rg_graph_set_device(m[d].graph, d ? "cuda" : "cpu"), RG_OK);
        if (d) assert_int_equal(rg_graph_set_precision(m[d].graph, "bf16"), RG_OK);
        assert_int_equal(rg_graph_compile(m[d].graph, batch), RG_OK);
        rg_graph *g = m[d].graph;
        float *in = rg_graph_input_buffer(g, m[d].input);
        for (size_t i = 0; i < (size_t)batch * rg_node_size(g, m[d].input); i++) in[i] = (float)sin(0.37 * (double)i);
        for (int b = 0; b < batch; b++) rg_graph_labels(g)[b] = (b * 3) % CLASSES;
        assert_int_equal(rg_graph_forward(g, batch, 1), RG_OK);
        loss[d] = rg_host(g, g->nodes[m[d].loss].out, 1)[0];
        assert_int_equal(rg_graph_backward(g, m[d].loss), RG_OK);
        assert_int_equal(rg_graph_finish(g), RG_OK);
    }
    if (!(fabsf(loss[1] - loss[0]) <= BF16_ZOO_TOL * fabsf(loss[0])))
        fail_msg("%s in bf16: loss %.9g on the device, %.9g on the CPU in fp32", spec, loss[1], loss[0]);
    for (int d = 0; d < 2; d++) rg_model_free(&m[d]);
}

/* bf16's copies of the weights for the products follow the weights: after they move
 * between passes (through the backend, as the optimizer and GRA move them), a pass, whole
 * or from a later node as GRA's probe runs them, gives the CPU's logits for the moved
 * weights, not those of the copies of the pass before. */
static void copies_follow_the_weights(net_builder builder) {
    net n[2] = {build(builder, "cpu", "fp32"), build(builder, "cuda", "bf16")};
    const size_t zn = BATCH * rg_node_size(n[0].g, n[0].logits);
    float *z[2] = {malloc(zn * sizeof(float)), malloc(zn * sizeof(float))}, *before = malloc(zn * sizeof(float));
    for (int d = 0; d < 2; d++) {
        feed(&n[d], 0);
        assert_int_equal(rg_graph_forward(n[d].g, BATCH, 0), RG_OK);
    }
    assert_int_equal(rg_node_read(n[1].g, n[1].logits, BATCH, before), RG_OK);
    for (int move = 0; move < 2; move++) {
        float top = 0;
        for (int d = 0; d < 2; d++) {
            rg_graph *g = n[d].g;
            g->backend->scale(g->param_buf, g->param_floats, -1.5f);
            assert_int_equal(move ? rg_graph_forward_nodes(g, BATCH, 0, 1, g->n_nodes - 1)
                                  : rg_graph_forward(g, BATCH, 0), RG_OK);
            assert_int_equal(rg_node_read(g, n[d].logits, BATCH, z[d]), RG_OK);
        }
        for (size_t i = 0; i < zn; i++) top = fmaxf(top, fabsf(z[0][i]));
        assert_close("bf16 logits after the weights moved", z[1], z[0], zn, BF16_TOL * top, 0);
        if (relative(z[1], before, zn) < 0.1) fail_msg("bf16 logits did not move with the weights");
        memcpy(before, z[1], zn * sizeof(float));
    }
    free(z[0]), free(z[1]), free(before);
    for (int d = 0; d < 2; d++) rg_graph_free(n[d].g);
}
#endif

static void bf16_stays_close(void **state) {
    (void)state;
    net n = {.g = rg_graph_create(7), .loss = RG_NONE};
    mlp(&n);
    assert_int_equal(rg_graph_set_precision(n.g, "bf16"), RG_ERR_STATE); /* on the CPU */
    assert_non_null(strstr(rg_last_error(), "bf16 is a GPU's"));
    assert_int_equal(rg_graph_set_device(n.g, "cuda"), RG_OK);
#ifdef RG_FAKE_DEVICE
    assert_int_equal(rg_graph_set_precision(n.g, "bf16"), RG_ERR_STATE);
    assert_non_null(strstr(rg_last_error(), "has no bf16"));
#else
    assert_int_equal(rg_graph_set_precision(n.g, "bf16"), RG_OK);
    assert_int_equal(rg_graph_compile(n.g, BATCH), RG_OK);
    assert_int_equal(rg_graph_set_precision(n.g, "fp32"), RG_ERR_STATE);
    assert_non_null(strstr(rg_last_error(), "build it again"));
    assert_int_equal(rg_graph_check_tangents(n.g), RG_OK);
    for (one_op_case = 0; one_op_case < ONE_OP_CASES; one_op_case++) {
        compare_bf16(one_op, 2, true);
    }
    const net_builder nets[] = {mlp, misc_net, combine_net, conv_net, pool_net, norm_net};
    for (size_t i = 0; i < sizeof nets / sizeof *nets; i++) compare_bf16(nets[i], 4, false);
    copies_follow_the_weights(mlp);
    copies_follow_the_weights(conv_net);
    zoo_loss_bf16("resnet20v2", 32, 4);
    zoo_loss_bf16("resnet50v2", 64, 4);
    zoo_loss_bf16("densenet121", 64, 4);
    const net_builder smooth[] = {mlp, misc_net, tangent_net}, relus[] = {conv_net, pool_net, norm_net};
    for (size_t i = 0; i < sizeof smooth / sizeof *smooth; i++) curvature_along(smooth[i], "bf16", BF16_TOL);
    for (size_t i = 0; i < sizeof relus / sizeof *relus; i++) curvature_along(relus[i], "bf16", BF16_RELU_TOL);
#endif
    rg_graph_free(n.g);
}


/* A zoo model's first training step from the same weights and batch, on the device, on the
 * CPU, and on the CPU again with every input value moved by one unit in its last place: the
 * device's loss within loss_tol of the CPU's, and every parameter's gradient norm within
 * norm_tol of the CPU's, or (deep in a net, where each layer's rounding is carried through
 * every layer above) within 3x what the CPU itself moved for that one rounding of the input,
 * plus a floor of 1e-4 of the largest norm (a convolution's bias before batch norm has a
 * gradient of rounding noise only). */
enum { ON_DEVICE, ON_CPU, NUDGED };
static void zoo_step(const char *spec, int side, int batch, double loss_tol, double norm_tol) {
    const rg_model_opts o = {.c = 3, .h = side, .w = side, .classes = CLASSES, .seed = 1};
    rg_model m[3];
    float loss[3];
    const float *grads[3];
    for (int d = 0; d < 3; d++) {
        assert_int_equal(rg_model_build(spec, &o, &m[d]), RG_OK);
        assert_int_equal(rg_graph_set_device(m[d].graph, d == ON_DEVICE ? "cuda" : "cpu"), RG_OK);
        assert_int_equal(rg_graph_compile(m[d].graph, batch), RG_OK);
        rg_graph *g = m[d].graph;
        float *in = rg_graph_input_buffer(g, m[d].input);
        const size_t size = rg_node_size(g, m[d].input);
        for (size_t i = 0; i < (size_t)batch * size; i++) {
            in[i] = (float)sin(0.37 * (double)i);
            if (d == NUDGED) in[i] = nextafterf(in[i], i % 2 ? INFINITY : -INFINITY);
        }
        for (int b = 0; b < batch; b++) rg_graph_labels(g)[b] = (b * 3) % CLASSES;
        assert_int_equal(rg_graph_forward(g, batch, 1), RG_OK);
        loss[d] = rg_host(g, g->nodes[m[d].loss].out, 1)[0];
        assert_int_equal(rg_graph_backward(g, m[d].loss), RG_OK);
        grads[d] = d == ON_DEVICE ? rg_host(g, g->grad_buf, g->param_floats) : g->grad_buf;
    }
    if (!(fabsf(loss[ON_CPU] - loss[ON_DEVICE]) <= loss_tol * fabsf(loss[ON_CPU])))
        fail_msg("%s: loss %.9g on the device, %.9g on the CPU", spec, loss[ON_DEVICE], loss[ON_CPU]);
    const rg_graph *cpu = m[ON_CPU].graph;
    double *norm = malloc(3 * (size_t)cpu->n_params * sizeof *norm), largest = 0;
    for (int p = 0; p < cpu->n_params; p++) {
        const rg_param_impl *pi = &cpu->params[p];
        for (int d = 0; d < 3; d++) {
            double a = 0;
            for (size_t i = 0; i < pi->size; i++) a += (double)grads[d][pi->offset + i] * grads[d][pi->offset + i];
            norm[3 * p + d] = sqrt(a);
        }
        if (!pi->state) largest = fmax(largest, norm[3 * p + ON_CPU]); /* running statistics: no gradient */
    }
    for (int p = 0; p < cpu->n_params; p++) {
        const double *n = norm + 3 * p, own = fabs(n[NUDGED] - n[ON_CPU]);
        if (!cpu->params[p].state &&
            !(fabs(n[ON_CPU] - n[ON_DEVICE]) <= fmax(norm_tol * n[ON_CPU], 3 * own) + 1e-4 * largest))
            fail_msg("%s: %s's gradient norm %.9g on the device, %.9g on the CPU (%.9g with the input nudged)",
                     spec, cpu->params[p].name, n[ON_DEVICE], n[ON_CPU], n[NUDGED]);
    }
    free(norm);
    for (int d = 0; d < 3; d++) rg_model_free(&m[d]);
}

/* ResNet50V2 and DenseNet121 at 64x64 (every stage still there, the last at 2x2) and
 * resnet20v2 at 32x32, batch 4 */
static void zoo_models_match_the_cpu(void **state) {
    zoo_step("resnet20v2", 32, 4, ZOO_TOL, 10 * ZOO_TOL);
    zoo_step("resnet50v2", 64, 4, ZOO_TOL, 10 * ZOO_TOL);
    zoo_step("densenet121", 64, 4, ZOO_TOL, 10 * ZOO_TOL);
}

/* The kernels' index arithmetic (kernels/cuda/divide.h), run here on the host: every
 * quotient the plain division's, exhaustively for small divisors and dividends, at each
 * multiple's edges for divisors up to 2^31 and past it, and for random pairs; and a value's
 * plane, row and column. */
static void index_division_is_exact(void **state) {
    for (uint64_t d = 1; d <= 300; d++) {
        const rg_divider v = rg_divider_of(d);
        for (uint64_t n = 0; n < 70000; n++)
            if (rg_divide(v, n) != n / d) fail_msg("%llu / %llu", (unsigned long long)n, (unsigned long long)d);
    }
    const uint64_t top = (uint64_t)1 << 31, large[] = {301, 1000, 3136, 12544, 65535, 65536, 65537, 1000003,
                                                      (1u << 30) - 1, 1u << 30, (1u << 30) + 1, top - 1, top, top + 1,
                                                      (uint64_t)1 << 32, ((uint64_t)1 << 32) + 3};
    uint64_t r = 88172645463325252ull; /* xorshift64 */
#define NEXT() (r ^= r << 13, r ^= r >> 7, r ^= r << 17, r)
    for (size_t k = 0; k < sizeof large / sizeof *large; k++) {
        const uint64_t d = large[k];
        const rg_divider v = rg_divider_of(d);
        for (uint64_t m = 0; m < 4000; m++) {
            const uint64_t edge = m < 2000 ? m * d : NEXT() % (((uint64_t)1 << 33) / d) * d, near[] = {edge - 1, edge, edge + 1};
            for (int j = 0; j < 3; j++) {
                const uint64_t n = near[j];
                if (edge == 0 && j == 0) continue;
                if (rg_divide(v, n) != n / d) fail_msg("%llu / %llu", (unsigned long long)n, (unsigned long long)d);
            }
        }
        for (uint64_t n = top - 3000; n < top + 3000; n++)
            if (rg_divide(v, n) != n / d) fail_msg("%llu / %llu", (unsigned long long)n, (unsigned long long)d);
    }
    for (int k = 0; k < 2000000; k++) {
        const uint64_t d = NEXT() % top + 1, n = NEXT() % (top + top / 8);
        if (rg_divide(rg_divider_of(d), n) != n / d) fail_msg("%llu / %llu", (unsigned long long)n, (unsigned long long)d);
    }
    for (int k = 0; k < 100000; k++) {
        const uint64_t rows = NEXT() % 300 + 1, cols = NEXT() % 300 + 1, e = NEXT() % (top + top / 8);
        const rg_cell c = rg_cell_of(e, rg_planes_of(rows, cols));
        assert_true(c.plane == e / cols / rows && (uint64_t)c.y == e / cols % rows && (uint64_t)c.x == e % cols);
        assert_int_equal(rg_channel_of(e, rg_planes_of(rows, cols)), (int)(e / cols % rows));
    }
#undef NEXT
}

/* The classic remedies on the device (their sums as queued pieces, their scalings one
 * launch) against the CPU's, one after the other on a step's gradients and then the
 * weights, each from the device's buffers as they stand (copied to the CPU's graph
 * first): clipping by value, by each tensor's norm, by the global norm, AGC, and
 * max-norm, each of which acts here (the CPU's buffer moves). */
static void remedies_match_the_cpu_on(net_builder builder) {
    net n[2] = {build(builder, "cpu", "fp32"), build(builder, "cuda", "fp32")};
    const size_t pn = n[0].g->param_floats;
    float *before = malloc(pn * sizeof *before);
    assert_non_null(before);
    for (int d = 0; d < 2; d++) {
        feed(&n[d], 0);
        assert_int_equal(rg_graph_forward(n[d].g, BATCH, 1), RG_OK);
        assert_int_equal(rg_graph_backward(n[d].g, n[d].loss), RG_OK);
    }
    for (int r = 0; r < 5; r++) {
        float *cpu = r == 4 ? n[0].g->param_buf : n[0].g->grad_buf;
        memcpy(n[0].g->param_buf, rg_host(n[1].g, n[1].g->param_buf, pn), pn * sizeof *before);
        memcpy(n[0].g->grad_buf, rg_host(n[1].g, n[1].g->grad_buf, pn), pn * sizeof *before);
        memcpy(before, cpu, pn * sizeof *before);
        double norm[2] = {0, 0};
        for (int d = 0; d < 2; d++) {
            rg_graph *g = n[d].g;
            switch (r) {
            case 0: rg_clip_grad_value(g, 0.02f); break;
            case 1: rg_clip_grad_tensor_norm(g, 0.05f); break;
            case 2: norm[d] = rg_clip_grad_norm(g, 0.05f); break;
            case 3: rg_clip_grad_agc(g, 0.01f, n[d].logits); break;
            default: rg_apply_max_norm(g, 0.3f); break;
            }
        }
        static const char *const names[5] = {"clip value", "clip tensor norm", "clip norm", "AGC", "max-norm"};
        assert_true(memcmp(before, cpu, pn * sizeof *before) != 0); /* it acted */
        if (r == 2 && !(fabs(norm[1] - norm[0]) <= 1e-6 * norm[0]))
            fail_msg("the global norm: %.17g on the device, %.17g on the CPU", norm[1], norm[0]);
        const float *dev = rg_host(n[1].g, r == 4 ? n[1].g->param_buf : n[1].g->grad_buf, pn);
        assert_close(names[r], dev, cpu, pn, 1e-12, EXACT);
    }
    free(before);
    for (int d = 0; d < 2; d++) rg_graph_free(n[d].g);
}

static void remedies_match_the_cpu(void **state) {
    (void)state;
    remedies_match_the_cpu_on(mlp);
    remedies_match_the_cpu_on(conv_net);
}

/* LassoNet's proximal step on the device's weights gives the CPU's bits: first hidden
 * layers narrower than a block, wider than two (each thread sorting several slots), and
 * not a power of two; weights in steps of 1/64 so that magnitudes tie; a feature whose
 * weights are all zero; thresholds that cut none, some and every feature. */
static void hier_prox_matches_the_cpu(void **state) {
    (void)state;
    static const int widths[3] = {5, 37, 600};
    static const float lambdas[3] = {1e-3f, 0.4f, 1e9f};
    enum { FEATURES = 24 };
    for (int w = 0; w < 3; w++) {
        char spec[64];
        snprintf(spec, sizeof spec, "lassonet:width=%d,M=2", widths[w]);
        const rg_model_opts o = {.c = 1, .h = 1, .w = FEATURES, .classes = 3, .seed = 5};
        rg_model m[2];
        for (int d = 0; d < 2; d++) {
            assert_int_equal(rg_model_build(spec, &o, &m[d]), RG_OK);
            assert_int_equal(rg_graph_set_device(m[d].graph, d ? "cuda" : "cpu"), RG_OK);
            assert_int_equal(rg_graph_compile(m[d].graph, 4), RG_OK);
        }
        const size_t pn = m[0].graph->param_floats;
        float *host = malloc(pn * sizeof *host), *before = malloc(pn * sizeof *before);
        assert_non_null(host), assert_non_null(before);
        for (int l = 0; l < 3; l++) {
            rg_rng r;
            rg_rng_seed(&r, (uint64_t)(10 * w + l));
            for (size_t i = 0; i < pn; i++) host[i] = ((float)rg_rng_below(&r, 129) - 64.0f) / 64.0f;
            for (int i = 0; i < rg_graph_param_count(m[0].graph); i++) { /* feature 3: nothing */
                rg_param_info p;
                rg_graph_param(m[0].graph, i, &p);
                if (!strcmp(p.name, "skip.kernel") || !strcmp(p.name, "dense_1.kernel"))
                    for (int u = 0; u < p.shape[0]; u++) host[p.offset + (size_t)u * FEATURES + 3] = 0;
            }
            memcpy(before, host, pn * sizeof *host);
            memcpy(m[0].graph->param_buf, host, pn * sizeof *host);
            rg_graph_write(m[1].graph, m[1].graph->param_buf, host, pn);
            for (int d = 0; d < 2; d++) assert_int_equal(rg_lassonet_prox(&m[d], lambdas[l]), RG_OK);
            const float *dev = rg_host(m[1].graph, m[1].graph->param_buf, pn);
            assert_true(memcmp(before, m[0].graph->param_buf, pn * sizeof *host) != 0); /* it acted */
            if (memcmp(dev, m[0].graph->param_buf, pn * sizeof *host) != 0)
                fail_msg("lassonet's proximal step, width %d, lambda %g: not the CPU's bits", widths[w],
                         (double)lambdas[l]);
            const int kept = rg_lassonet_selected(&m[1], NULL);
            assert_int_equal(kept, rg_lassonet_selected(&m[0], NULL));
            if (l == 0) assert_int_equal(kept, FEATURES - 1);
            if (l == 2) assert_int_equal(kept, 0);
        }
        free(host), free(before);
        for (int d = 0; d < 2; d++) rg_model_free(&m[d]);
    }
}

/* A read that does not wait takes the values its place in the queue sees, not those of the
 * work queued after it (a second forward rewrites the logits before the reads are done),
 * and lands only at rg_graph_reads_done (the stand-in holds it back, NaN till then); reads
 * that outgrow the staging land too.  fp32, and bf16 where the device has it (widened as
 * rg_node_host widens). */
static void reads_later_take_their_place_in_the_queue_in(const char *precision) {
    net n = {.g = rg_graph_create(7), .loss = RG_NONE};
    mlp(&n);
    n.loss = rg_softmax_cross_entropy(n.g, n.logits, 0.05f);
    assert_int_equal(rg_graph_set_device(n.g, "cuda"), RG_OK);
    assert_int_equal(rg_graph_set_precision(n.g, precision), RG_OK);
    assert_int_equal(rg_graph_compile(n.g, BATCH), RG_OK);
    const rg_node_impl *z = &n.g->nodes[n.logits], *l = &n.g->nodes[n.loss];
    const size_t k = (size_t)BATCH * CLASSES, pn = n.g->param_floats, copies = ((size_t)1 << 16) / pn + 2;
    float want[BATCH * CLASSES], got[BATCH * CLASSES], want_loss, got_loss = 0.0f;
    float *params = malloc(copies * pn * sizeof *params), *want_params = malloc(pn * sizeof *want_params);
    assert_non_null(params), assert_non_null(want_params);
    feed(&n, 0);
    assert_int_equal(rg_graph_forward(n.g, BATCH, 1), RG_OK);
    memcpy(want, rg_node_host(n.g, z, z->out, k), sizeof want);
    want_loss = rg_host(n.g, l->out, 1)[0];
    memcpy(want_params, rg_host(n.g, n.g->param_buf, pn), pn * sizeof *want_params);
    rg_node_read_later(n.g, z, z->out, k, got);
    rg_node_read_later(n.g, l, l->out, 1, &got_loss);
    for (size_t c = 0; c < copies; c++) rg_node_read_later(n.g, l, n.g->param_buf, pn, params + c * pn);
#ifdef RG_FAKE_DEVICE
    assert_true(isnan(got[0]) && isnan(got_loss)); /* held back */
#endif
    feed(&n, 1);
    assert_int_equal(rg_graph_forward(n.g, BATCH, 1), RG_OK);
    assert_int_equal(rg_graph_backward(n.g, n.loss), RG_OK);
    assert_int_equal(rg_graph_reads_done(n.g), RG_OK);
    assert_memory_equal(got, want, sizeof want);
    assert_memory_equal(&got_loss, &want_loss, sizeof want_loss);
    for (size_t c = 0; c < copies; c++) assert_memory_equal(params + c * pn, want_params, pn * sizeof *params);
    memcpy(want, rg_node_host(n.g, z, z->out, k), sizeof want); /* the second forward's, once more */
    rg_node_read_later(n.g, z, z->out, k, got);
    assert_int_equal(rg_graph_reads_done(n.g), RG_OK);
    assert_memory_equal(got, want, sizeof want);
    free(params), free(want_params);
    rg_graph_free(n.g);
}

static void reads_later_take_their_place_in_the_queue(void **state) {
    (void)state;
    reads_later_take_their_place_in_the_queue_in("fp32");
#ifndef RG_FAKE_DEVICE
    reads_later_take_their_place_in_the_queue_in("bf16");
#endif
}

/* Guarded memory (memory.c: each buffer alone, canaries after it, checked by every pass):
 * no kernel writes past its output, gradient or scratch, in a training step and an
 * inference pass of every network above, in each precision the device has, nor in the
 * zoo's deepest models (ResNet50V2's fused convolutions, DenseNet's concatenations) ... */
static void no_kernel_writes_past_its_buffers(void **state) {
    (void)state;
    const net_builder nets[] = {mlp,          combine_net,       conv_net,           pool_net,   norm_net, misc_net,
                                residual_net, residual_norm_net, residual_norm_net5, tangent_net};
#ifdef RG_FAKE_DEVICE
    const char *precisions[] = {"fp32"}; /* the stand-in has no bf16 */
    const int cases = 0;
#else
    const char *precisions[] = {"fp32", "bf16"};
    const int cases = ONE_OP_CASES; /* and bf16's ops one at a time */
#endif
    const size_t n_nets = sizeof nets / sizeof *nets;
    for (size_t p = 0; p < sizeof precisions / sizeof *precisions; p++) {
        for (size_t i = 0; i < n_nets + (size_t)cases; i++) {
#ifndef RG_FAKE_DEVICE
            one_op_case = (int)(i - n_nets);
            const net_builder builder = i < n_nets ? nets[i] : one_op;
#else
            const net_builder builder = nets[i];
#endif
            net n = build_in(builder, "cuda", precisions[p], true);
            feed(&n, 0);
            passed(rg_graph_forward(n.g, BATCH, 1));
            passed(rg_graph_backward(n.g, n.loss));
            passed(rg_graph_forward(n.g, BATCH, 0));
            rg_graph_free(n.g);
        }
        const char *zoo[] = {"resnet50v2", "densenet:depth=10,growth=4"};
        for (size_t i = 0; i < sizeof zoo / sizeof *zoo; i++) {
            rg_model m;
            assert_int_equal(rg_model_build(zoo[i], &(rg_model_opts){.c = 3, .h = 32, .w = 32, .classes = CLASSES}, &m),
                             RG_OK);
            assert_int_equal(rg_graph_set_device(m.graph, "cuda"), RG_OK);
            assert_int_equal(rg_graph_set_precision(m.graph, precisions[p]), RG_OK);
            rg_graph_guard_memory(m.graph, 1);
            assert_int_equal(rg_graph_compile(m.graph, 2), RG_OK);
            float *in = rg_graph_input_buffer(m.graph, m.input);
            for (size_t k = 0; k < 2 * rg_node_size(m.graph, m.input); k++) in[k] = (float)sin(0.37 * (double)k);
            rg_graph_labels(m.graph)[0] = 1, rg_graph_labels(m.graph)[1] = 3;
            passed(rg_graph_forward(m.graph, 2, 1));
            passed(rg_graph_backward(m.graph, m.loss));
            rg_model_free(&m);
        }
    }
}

/* ... and a canary spoilt after an output, a gradient or a scratch buffer (as a kernel
 * writing past it would) fails the next pass, naming that buffer. */
static void guarded_memory_names_an_overrun(void **state) {
    (void)state;
    const char *kinds[] = {"output", "gradient", "scratch"};
    for (int k = 0; k < 3; k++) {
        net n = build_in(conv_net, "cuda", "fp32", true);
        feed(&n, 0);
        passed(rg_graph_forward(n.g, BATCH, 1));
        passed(rg_graph_backward(n.g, n.loss));
        const rg_guard *q = NULL; /* the last of its kind: past the first buffers */
        for (int j = 0; j < n.g->n_guards; j++)
            if (strcmp(n.g->guards[j].what, kinds[k]) == 0) q = &n.g->guards[j];
        assert_non_null(q);
        const float spoilt = 0.0f;
        n.g->backend->upload(n.g->act_buf + q->at + q->len - 1, &spoilt, 1);
        assert_int_equal(rg_graph_forward(n.g, BATCH, 1), RG_ERR_STATE);
        char want[160];
        snprintf(want, sizeof want, "float %zu after the end of the %s of %s", q->len, kinds[k],
                 n.g->nodes[q->node].name);
        if (!strstr(rg_last_error(), want)) fail_msg("'%s' does not say '%s'", rg_last_error(), want);
        rg_graph_free(n.g);
    }
}

static void placement_errors_say_why(void **state) {
    rg_graph *g = rg_graph_create(1);
    const int chw[3] = {1, 8, 8};
    rg_node x = rg_input(g, "image", 3, chw);
    rg_softmax_cross_entropy(g, rg_dense(g, rg_flatten(g, x), 10, RG_INIT(RG_INIT_HE_NORMAL)), 0);
    assert_int_equal(rg_graph_set_device(g, "cuda:3"), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "no such device"));
    assert_int_equal(rg_graph_set_device(g, "gpu"), RG_ERR_ARG);
    assert_int_equal(rg_graph_set_device(g, "cuda"), RG_OK); /* and back: the CPU's plans again */
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
    /* REGRAD_TEST_FILTER=PATTERN runs the tests whose names match (cmocka's * and ?) */
    if (getenv("REGRAD_TEST_FILTER")) cmocka_set_test_filter(getenv("REGRAD_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trains_with_the_cpus_bits),
        cmocka_unit_test(ops_without_weights_match_the_cpu),
        cmocka_unit_test(convolutions_match_the_cpu),
        cmocka_unit_test(a_convolution_does_its_add),
        cmocka_unit_test(a_convolution_takes_its_norms_statistics),
        cmocka_unit_test(replayed_passes_give_the_same_bits),
        cmocka_unit_test(pooling_matches_the_cpu),
        cmocka_unit_test(dropout_softmax_mse_match_the_cpu),
        cmocka_unit_test(batch_norm_matches_the_cpu),
        cmocka_unit_test(curvature_along_matches_the_cpu),
        cmocka_unit_test(curvature_products_match_the_cpu),
        cmocka_unit_test(tangents_along_the_input_match_the_cpu),
        cmocka_unit_test(gra_arithmetic_matches_the_cpu),
        cmocka_unit_test(gra_batches_match_the_cpu),
        cmocka_unit_test(tf32_products_stay_close),
        cmocka_unit_test(bf16_stays_close),
        cmocka_unit_test(zoo_models_match_the_cpu),
        cmocka_unit_test(the_monitor_sees_what_the_cpus_sees),
        cmocka_unit_test(remedies_match_the_cpu),
        cmocka_unit_test(hier_prox_matches_the_cpu),
        cmocka_unit_test(reads_later_take_their_place_in_the_queue),
        cmocka_unit_test(no_kernel_writes_past_its_buffers),
        cmocka_unit_test(guarded_memory_names_an_overrun),
        cmocka_unit_test(placement_errors_say_why),
        cmocka_unit_test(index_division_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

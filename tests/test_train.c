/*
 * test_train.c — the training loop and its parts: bitwise reproducibility, learning on a
 * separable synthetic problem, learning-rate schedules, optimizer validation, model specs,
 * graph-builder errors, and a forward pass that stops at a node.
 */
#include "test_util.h"

#include "internal.h"
#include "kernels/kernels.h"

static rg_fit_config config(rg_optim_kind k) {
    rg_fit_config c = {.epochs = 3, .batch = 16, .seed = 3, .val_split = 0.2f,
                       .optim = rg_optim_defaults(k)};
    rg_schedule_parse("constant", &c.schedule);
    return c;
}

static void train_once(const char *spec, rg_optim_kind k, uint64_t seed, int epochs, float *out,
                       size_t *n, double *val_acc) {
    rg_dataset *d = synthetic(400, 3, 11);
    rg_model m;
    assert_int_equal(rg_model_build(spec, &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = seed}, &m), RG_OK);
    assert_int_equal(rg_graph_compile(m.graph, 16), RG_OK);
    rg_fit_config c = config(k);
    c.seed = seed;
    c.epochs = epochs;
    assert_int_equal(rg_fit(&m, d, &c, NULL), RG_OK);
    *n = rg_graph_param_floats(m.graph);
    memcpy(out, rg_graph_params(m.graph), *n * sizeof *out);
    if (val_acc) {
        double loss;
        assert_int_equal(rg_evaluate(&m, d, NULL, d->n, &loss, val_acc), RG_OK);
    }
    rg_model_free(&m);
    rg_dataset_free(d);
}

static void test_bitwise_reproducible(void **state) {
    (void)state;
    static float a[4096], b[4096], c[4096];
    size_t na, nb, nc;
    const char *spec = "mlp:depth=2,width=32,dropout=0.2";
    train_once(spec, RG_OPTIM_ADAM, 5, 3, a, &na, NULL);
    train_once(spec, RG_OPTIM_ADAM, 5, 3, b, &nb, NULL);
    train_once(spec, RG_OPTIM_ADAM, 6, 3, c, &nc, NULL);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);           /* same seed: same bits */
    assert_memory_not_equal(a, c, na * sizeof *a);       /* another seed: other weights */
}

static void test_every_optimizer_learns(void **state) {
    (void)state;
    static float w[4096];
    size_t n;
    for (int k = 0; k < RG_OPTIM_COUNT; k++) {
        double acc;
        /* 20 epochs of 20 steps at each optimizer's default rate: plain SGD at 0.01 is the
         * slowest and needs them. */
        train_once("mlp:depth=1,width=32", (rg_optim_kind)k, 1, 20, w, &n, &acc);
        if (acc < 0.9) fail_msg("%s reached only %.3f on a separable problem", rg_optim_name(k), acc);
    }
}

static void test_schedules(void **state) {
    (void)state;
    rg_schedule s;
    assert_int_equal(rg_schedule_parse("step:2:0.5", &s), RG_OK);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 0, 0, 100), 1.0f, 1e-7);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 50, 2, 100), 0.5f, 1e-7);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 90, 5, 100), 0.25f, 1e-7);
    assert_int_equal(rg_schedule_parse("cosine:0.1", &s), RG_OK);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 0, 0, 100), 1.0f, 1e-6);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 50, 0, 100), 0.55f, 1e-6);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 100, 0, 100), 0.1f, 1e-6);
    assert_int_equal(rg_schedule_parse("constant,warmup:4", &s), RG_OK);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 0, 0, 100), 0.25f, 1e-7);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 3, 0, 100), 1.0f, 1e-7);
    assert_float_equal(rg_schedule_lr(&s, 1.0f, 50, 0, 100), 1.0f, 1e-7);
    const char *bad[] = {"", "linear", "step:0:0.1", "step:2", "step:2:1.5", "cosine:-1",
                         "constant,warmup:x", "step:2:0.1junk"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (rg_schedule_parse(bad[i], &s) != RG_ERR_ARG) fail_msg("schedule '%s' accepted", bad[i]);
}

static void test_optimizer_validation(void **state) {
    (void)state;
    rg_optim_kind k;
    assert_int_equal(rg_optim_parse("adamax", &k), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "unknown optimizer 'adamax'"));
    rg_optim_config c = rg_optim_defaults(RG_OPTIM_ADAM);
    assert_float_equal(c.lr, 1e-3f, 0);
    c.lr = -1;
    assert_int_equal(rg_optim_check(&c), RG_ERR_ARG);
    c = rg_optim_defaults(RG_OPTIM_ADAM);
    c.beta2 = 1.0f;
    assert_int_equal(rg_optim_check(&c), RG_ERR_ARG);
    c = rg_optim_defaults(RG_OPTIM_NESTEROV);
    c.momentum = 0;
    assert_int_equal(rg_optim_check(&c), RG_ERR_ARG);
    assert_float_equal(rg_optim_defaults(RG_OPTIM_ADAMW).weight_decay, 0.01f, 0);
    assert_float_equal(rg_optim_defaults(RG_OPTIM_ADAGRAD).eps, 1e-10f, 0);
}

static void test_model_specs(void **state) {
    (void)state;
    rg_model m;
    assert_int_equal(rg_model_build("mlp:depth=3,width=64,act=tanh,init=glorot", &(rg_model_opts){.c = 1, .h = 28, .w = 28, .classes = 10, .seed = 1}, &m), RG_OK);
    /* 784*64+64 + 2*(64*64+64) + 64*10+10 */
    size_t total = 0;
    for (int i = 0; i < rg_graph_param_count(m.graph); i++) {
        rg_param_info p;
        rg_graph_param(m.graph, i, &p);
        total += p.size;
    }
    assert_int_equal(total, 784 * 64 + 64 + 2 * (64 * 64 + 64) + 64 * 10 + 10);
    assert_int_equal(rg_graph_compile(m.graph, 8), RG_OK);
    rg_param_info p;
    rg_graph_param(m.graph, 2, &p);
    assert_string_equal(p.name, "dense_2.kernel");
    rg_model_free(&m);
    const struct { const char *spec, *msg; } bad[] = {
        {"resnet9000", "unknown model 'resnet9000'"},
        {"mlp:depth=-1", "depth=-1"},
        {"mlp:width=abc", "width=abc"},
        {"mlp:act=swish", "unknown activation 'swish'"},
        {"mlp:init=kaiming", "unknown initialiser 'kaiming'"},
        {"mlp:depht=3", "unknown option 'depht'"},
        {"mlp:depth", "write key=value"},
        {"mlp:depth=2,depth=3", "given twice"},
        {"mlp:dropout=1.5", "dropout=1.5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rg_status s = rg_model_build(bad[i].spec, &(rg_model_opts){.c = 1, .h = 28, .w = 28, .classes = 10, .seed = 1}, &m);
        if (s != RG_ERR_ARG || !strstr(rg_last_error(), bad[i].msg))
            fail_msg("spec '%s': status %d, '%s'", bad[i].spec, s, rg_last_error());
    }
}

static void test_builder_errors(void **state) {
    (void)state;
    rg_graph *g = rg_graph_create(1);
    rg_node x = rg_input(g, "x", 2, (int[]){3, 4});
    rg_node y = rg_dense(g, x, 5, RG_INIT(RG_INIT_HE_NORMAL)); /* not flat */
    assert_int_equal(y, RG_NONE);
    assert_int_equal(rg_relu(g, y), RG_NONE); /* errors are sticky */
    assert_int_equal(rg_graph_compile(g, 4), RG_ERR_SHAPE);
    assert_non_null(strstr(rg_last_error(), "add a flatten"));
    rg_graph_free(g);

    g = rg_graph_create(1);
    rg_node a = rg_input(g, "a", 1, (int[]){3}), b = rg_input(g, "b", 1, (int[]){4});
    rg_add(g, a, b);
    assert_int_equal(rg_graph_compile(g, 4), RG_ERR_SHAPE);
    assert_non_null(strstr(rg_last_error(), "same shape"));
    rg_graph_free(g);

    g = rg_graph_create(1);
    a = rg_input(g, "a", 1, (int[]){3});
    rg_node loss = rg_softmax_cross_entropy(g, rg_dense(g, a, 2, RG_INIT(RG_INIT_TORCH)), 0);
    assert_int_equal(rg_graph_compile(g, 0), RG_ERR_ARG);
    assert_int_equal(rg_graph_compile(g, 4), RG_OK);
    assert_int_equal(rg_graph_backward(g, loss), RG_ERR_STATE); /* no forward yet */
    assert_non_null(strstr(rg_last_error(), "forward pass first"));
    assert_int_equal(rg_graph_compile(g, 4), RG_ERR_STATE);
    assert_int_equal(rg_graph_forward(g, 5, 1), RG_ERR_ARG);
    assert_int_equal(rg_graph_forward(g, 4, 1), RG_OK);
    assert_int_equal(rg_graph_backward(g, loss), RG_OK);
    rg_graph_free(g);
    rg_graph_free(NULL);
    rg_dataset_free(NULL);
    rg_optim_free(NULL);
    rg_tensor_file_free(NULL);
}

/* Activations whose size at the compiled batch overflows size_t fail compile with one
 * line, before anything is allocated and without leaking the planner's scratch (the
 * sanitizer build's leak check fails this test otherwise). */
static void test_compile_refuses_sizes_that_overflow(void **state) {
    (void)state;
    rg_graph *g = rg_graph_create(1);
    rg_node x = rg_input(g, "x", 3, (int[]){1, 32768, 32768}); /* 2^30 values a sample */
    rg_conv_opts o = rg_conv_defaults();
    o.padding = RG_PAD_VALID;
    x = rg_conv2d(g, x, 1 << 20, 1, &o); /* 2^50 values a sample */
    rg_dropout(g, x, 0.5f);
    assert_int_equal(rg_graph_compile(g, 1 << 16), RG_ERR_MEMORY);
    assert_non_null(strstr(rg_last_error(), "overflows"));
    assert_int_equal(rg_graph_memory(g), 0);
    rg_graph_free(g);
}

static void test_initialisers(void **state) {
    (void)state;
    const struct { const char *name; double var; } cases[] = {
        {"he", 2.0 / 400}, {"he_uniform", 2.0 / 400}, {"glorot", 2.0 / 500},
        {"glorot_normal", 2.0 / 500}, {"lecun", 1.0 / 400}, {"lecun_uniform", 1.0 / 400},
        {"torch", 1.0 / (3 * 400)}, {"normal:0.1", 0.01},
    };
    static float w[400 * 100];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rg_init init;
        assert_int_equal(rg_init_parse(cases[i].name, &init), RG_OK);
        rg_rng r;
        rg_rng_seed(&r, 1);
        rg_init_fill(w, 40000, init, 400, 100, &r);
        double s = 0, s2 = 0;
        for (int j = 0; j < 40000; j++) s += w[j], s2 += (double)w[j] * w[j];
        double mean = s / 40000, var = s2 / 40000 - mean * mean;
        if (fabs(mean) > 0.02 * sqrt(cases[i].var) * 10 || fabs(var / cases[i].var - 1) > 0.05)
            fail_msg("%s: mean %.4g var %.4g, expected var %.4g", cases[i].name, mean, var,
                     cases[i].var);
    }
    rg_init init;
    assert_int_equal(rg_init_parse("normal:-1", &init), RG_ERR_ARG);
}

/* One forward and backward of `spec`, with or without memory planning (in-place
 * activations, folded padding, shared buffers, a relu fused into the batch norm before
 * it), the layers named by `frozen` (a pattern, or NULL) not trainable; returns the loss
 * and copies the gradients into grads. */
static float grads_of(const char *spec, int c, int hw, bool keep, bool guard, const char *frozen, float *grads,
                      size_t *n) {
    rg_model m;
    assert_int_equal(rg_model_build(spec, &(rg_model_opts){.c = c, .h = hw, .w = hw, .classes = 5, .seed = 3}, &m), RG_OK);
    rg_graph_keep_outputs(m.graph, keep);
    rg_graph_guard_memory(m.graph, guard);
    if (frozen) assert_true(rg_graph_set_trainable(m.graph, frozen, 0) > 0);
    assert_int_equal(rg_graph_compile(m.graph, 2), RG_OK);
    rg_rng r;
    rg_rng_seed(&r, 4);
    float *x = rg_graph_input_buffer(m.graph, m.input);
    for (size_t i = 0; i < 2 * rg_node_size(m.graph, m.input); i++) x[i] = rg_rng_uniform(&r);
    rg_graph_labels(m.graph)[0] = 1, rg_graph_labels(m.graph)[1] = 3;
    if (rg_graph_forward(m.graph, 2, 1) != RG_OK) fail_msg("%s: %s", spec, rg_last_error());
    float loss = rg_node_output(m.graph, m.loss)[0];
    if (rg_graph_backward(m.graph, m.loss) != RG_OK) fail_msg("%s: %s", spec, rg_last_error());
    *n = rg_graph_param_floats(m.graph);
    memcpy(grads, rg_graph_grads(m.graph), *n * sizeof *grads);
    rg_model_free(&m);
    return loss;
}

/* Memory planning must not change a single bit of any gradient, on every zoo family; nor
 * must guarded memory (each buffer alone, canaries after it), whose passes also find that
 * no kernel wrote past a buffer. */
static void test_memory_planning_is_exact(void **state) {
    (void)state;
    const struct { const char *spec; int c, hw; const char *frozen; } cases[] = {
        {"mlp:depth=3,width=16,bn=1,residual=1,act=tanh", 1, 6, NULL},
        /* batch norm + relu fused, dense (one value a plane) and conv, trained and frozen
         * (its running statistics in forward, k dy in backward) */
        {"mlp:depth=3,width=16,bn=1", 1, 6, NULL},
        {"mlp:depth=3,width=16,bn=1", 1, 6, "batch_norm*"},
        {"resnet20v2", 1, 12, "*_bn"},
        {"cnn", 1, 12, NULL},
        {"plaincnn:depth=4,width=4,act=sigmoid", 1, 8, NULL},
        {"resnet20v2", 1, 12, NULL},
        {"plain20", 1, 12, NULL},
        {"resnet18v2", 3, 32, NULL},
        {"resnet50v2", 3, 32, NULL},
        {"densenet:depth=10,growth=4", 1, 12, NULL},
        {"densenet121", 3, 32, NULL},
    };
    const size_t cap = 26000000;
    float *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t na, nb;
        float la = grads_of(cases[i].spec, cases[i].c, cases[i].hw, true, false, cases[i].frozen, a, &na);
        for (int guard = 0; guard < 2; guard++) {
            float lb = grads_of(cases[i].spec, cases[i].c, cases[i].hw, false, guard, cases[i].frozen, b, &nb);
            assert_int_equal(na, nb);
            if (memcmp(&la, &lb, sizeof la) != 0 || memcmp(a, b, na * sizeof *a) != 0)
                fail_msg("%s: %s memory changed the loss (%.9g vs %.9g) or gradients", cases[i].spec,
                         guard ? "guarded" : "planned", (double)la, (double)lb);
        }
    }
    free(a);
    free(b);
}

/* Guarded memory on the CPU: a canary spoilt after an output, a gradient or a scratch
 * buffer (as a kernel writing one float past it would) fails the next pass, naming that
 * buffer; REGRAD_GUARD_MEMORY=1 turns it on at compile. */
static void test_guarded_memory_names_an_overrun(void **state) {
    (void)state;
    const char *kinds[] = {"output", "gradient", "scratch"};
    for (int k = 0; k < 3; k++) {
        rg_model m;
        assert_int_equal(rg_model_build("resnet20v2", &(rg_model_opts){.c = 1, .h = 8, .w = 8, .classes = 5}, &m),
                         RG_OK);
        if (k == 2) setenv("REGRAD_GUARD_MEMORY", "1", 1);
        else rg_graph_guard_memory(m.graph, 1);
        assert_int_equal(rg_graph_compile(m.graph, 2), RG_OK);
        unsetenv("REGRAD_GUARD_MEMORY");
        assert_true(m.graph->guard_memory);
        rg_graph_labels(m.graph)[0] = 1, rg_graph_labels(m.graph)[1] = 3;
        assert_int_equal(rg_graph_forward(m.graph, 2, 1), RG_OK);
        assert_int_equal(rg_graph_backward(m.graph, m.loss), RG_OK);
        const rg_guard *q = NULL; /* the first of its kind with a scratch to spoil after */
        for (int j = 0; j < m.graph->n_guards && !q; j++)
            if (strcmp(m.graph->guards[j].what, kinds[k]) == 0 && m.graph->guards[j].at > 0 &&
                (k < 2 || m.graph->nodes[m.graph->guards[j].node].aux_per_sample))
                q = &m.graph->guards[j];
        assert_non_null(q);
        m.graph->act_buf[q->at] = 0.0f; /* the float right after the buffer */
        assert_int_equal(rg_graph_backward(m.graph, m.loss), RG_ERR_STATE);
        char want[160];
        snprintf(want, sizeof want, "float 1 after the end of the %s of %s", kinds[k], m.graph->nodes[q->node].name);
        if (!strstr(rg_last_error(), want)) fail_msg("'%s' does not say '%s'", rg_last_error(), want);
        rg_model_free(&m);
    }
}

/* Residual adds that pass their gradient on without a pass of their own (memory.c: the
 * add's, its branch's last convolution's and its shortcut's gradient one buffer): how many
 * a compiled graph has. */
static int adds_sharing_gradients(rg_graph *g) {
    int shared = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const rg_node_impl *n = &g->nodes[i];
        shared += n->op == RG_OP_ADD && n->inplace && rg_in(g, n, n->inplace_of)->grad_owner == n->grad_owner &&
                  rg_in(g, n, 1 - n->inplace_of)->grad_owner == n->grad_owner;
    }
    return shared;
}

/* One forward and backward of g (inputs in, logits into a cross-entropy loss), compiled
 * with or without memory planning, at batch 2: input i is sin(freq i) - shift; returns the
 * loss and copies the gradients into grads. */
static float one_step(rg_graph *g, rg_node in, rg_node logits, bool keep, double freq, float shift, float *grads,
                      size_t *n) {
    const rg_node loss = rg_softmax_cross_entropy(g, logits, 0);
    rg_graph_keep_outputs(g, keep);
    assert_int_equal(rg_graph_compile(g, 2), RG_OK);
    float *xs = rg_graph_input_buffer(g, in);
    for (size_t i = 0; i < 2 * rg_node_size(g, in); i++) xs[i] = (float)sin(freq * (double)i) - shift;
    rg_graph_labels(g)[0] = 1, rg_graph_labels(g)[1] = 3;
    assert_int_equal(rg_graph_forward(g, 2, 1), RG_OK);
    const float l = rg_node_output(g, loss)[0];
    assert_int_equal(rg_graph_backward(g, loss), RG_OK);
    *n = rg_graph_param_floats(g);
    memcpy(grads, rg_graph_grads(g), *n * sizeof *grads);
    return l;
}

/* A builder of one step, with or without memory planning (keep), of a case kind: its loss,
 * its gradients into grads, and into *rewritten how many of the rewrites under test planning
 * made. */
typedef float (*planned_step)(int kind, bool keep, float *grads, size_t *n, int *rewritten);

/* Case kind of build planned and unplanned: the same loss and gradients bit for bit, and no
 * rewrite unplanned; returns the rewrites planning made. */
static int planning_keeps_the_bits(planned_step build, int kind) {
    float a[1024], b[1024];
    size_t na, nb;
    int done, unplanned;
    const float la = build(kind, false, a, &na, &done);
    const float lb = build(kind, true, b, &nb, &unplanned);
    assert_true(na <= 1024);
    assert_int_equal(na, nb);
    assert_int_equal(unplanned, 0);
    assert_memory_equal(&la, &lb, sizeof la);
    assert_memory_equal(a, b, na * sizeof *a);
    return done;
}

/* A block x -> add(conv(sigmoid(x)), x); or (BLOCK_LATE) with a layer that reads x made
 * after the block's convolution, whose part of x's gradient would reach a shared buffer
 * before the convolution reads it; or (BLOCK_DIRECT) the convolution reading x itself,
 * whose backward would write the gradient it reads.  One forward and backward, with or
 * without memory planning; the gradients into grads, the adds sharing their gradient into
 * *shared. */
enum { BLOCK_SHARES, BLOCK_LATE, BLOCK_DIRECT };
static float block_grads(int kind, bool keep, float *grads, size_t *n, int *shared) {
    rg_graph *g = rg_graph_create(5);
    const int chw[3] = {1, 6, 6};
    const rg_node in = rg_input(g, "x", 3, chw);
    const rg_node x = rg_tanh(g, rg_conv2d(g, in, 4, 3, NULL));
    const rg_node branch = rg_conv2d(g, kind == BLOCK_DIRECT ? x : rg_sigmoid(g, x), 4, 3, NULL);
    rg_node sum = rg_add(g, branch, x);
    if (kind == BLOCK_LATE) sum = rg_add(g, sum, rg_sigmoid(g, x));
    const rg_node logits = rg_dense(g, rg_global_avg_pool(g, sum), 5, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    const float l = one_step(g, in, logits, keep, 0.7, 0, grads, n);
    *shared = adds_sharing_gradients(g);
    rg_graph_free(g);
    return l;
}

/* ResNet50V2's 16 residual adds pass their gradient on without a pass; a block whose
 * shortcut another layer reads after the block's convolution, or the convolution itself,
 * does not share; and every way the gradients are the unplanned graph's, bit for bit. */
static void test_residual_adds_share_their_gradient(void **state) {
    (void)state;
    rg_model m;
    assert_int_equal(rg_model_build("resnet50v2", &(rg_model_opts){.c = 3, .h = 32, .w = 32, .classes = 5, .seed = 3}, &m),
                     RG_OK);
    assert_int_equal(rg_graph_compile(m.graph, 2), RG_OK);
    assert_int_equal(adds_sharing_gradients(m.graph), 16);
    rg_model_free(&m);
    for (int kind = BLOCK_SHARES; kind <= BLOCK_DIRECT; kind++)
        assert_int_equal(planning_keeps_the_bits(block_grads, kind), kind == BLOCK_SHARES);
}

/* A zero padding before a pooling layer, folded into it (memory.c; pool.c's
 * pool_absorb_padding): x -> tanh(conv) -> zero_pad(p) -> pool, for a 3x3 stride-2 max pool
 * (ResNet50V2's pool1), a 2x2 stride-2 one (which then keeps an argmax it did not need),
 * a 3x3 average pool, and a max pool after uneven padding, which stays unfolded.  One
 * forward and backward, with or without memory planning; the gradients into grads,
 * whether the padding was folded into *folded. */
static float pooled_grads(int kind, bool keep, float *grads, size_t *n, int *folded) {
    rg_graph *g = rg_graph_create(6);
    const rg_node in = rg_input(g, "x", 3, (int[]){2, 7, 7});
    const rg_node x = rg_tanh(g, rg_conv2d(g, in, 3, 3, NULL));
    const rg_node pad = kind == 3 ? rg_zero_pad2d(g, x, 1, 0, 1, 0) : rg_zero_pad2d(g, x, 1, 1, 1, 1);
    const rg_node pool = kind == 2   ? rg_avg_pool2d(g, pad, 3, 2, 0)
                         : kind == 1 ? rg_max_pool2d(g, pad, 2, 2, 0)
                                     : rg_max_pool2d(g, pad, 3, 2, 0);
    const rg_node logits = rg_dense(g, rg_flatten(g, pool), 5, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    const float l = one_step(g, in, logits, keep, 0.9, 0.4f, grads, n); /* mostly negative: zeros win */
    *folded = g->nodes[pad].bypassed;
    rg_graph_free(g);
    return l;
}

/* ResNet50V2's pool1_pad is folded into pool1; folded or not, every gradient is the same,
 * bit for bit, where windows take a padding cell's zero as their maximum. */
static void test_padding_folds_into_pooling(void **state) {
    (void)state;
    rg_model m;
    assert_int_equal(rg_model_build("resnet50v2", &(rg_model_opts){.c = 3, .h = 32, .w = 32, .classes = 5, .seed = 3}, &m),
                     RG_OK);
    assert_int_equal(rg_graph_compile(m.graph, 2), RG_OK);
    int pads = 0;
    for (int i = 0; i < m.graph->n_nodes; i++)
        if (strcmp(m.graph->nodes[i].name, "pool1_pad") == 0) pads++, assert_true(m.graph->nodes[i].bypassed);
    assert_int_equal(pads, 1);
    rg_model_free(&m);
    for (int kind = 0; kind < 4; kind++) assert_int_equal(planning_keeps_the_bits(pooled_grads, kind), kind != 3);
}

/* rg_optim_measure_next: the squared change it sums in the update's own pass equals the
 * change of a copy taken before the step, and its sums of squares of the gradient and of
 * the weights before the step are theirs, over ranges that cross pieces and the edges of
 * what the optimizer updates; and the update itself is bitwise the unmeasured one.
 * rg_optim_keep_next keeps that copy, measured or not, for one step. */
static void test_optimizer_measures_its_update(void **state) {
    (void)state;
    const size_t n = 20000;
    static const char *const names[] = {"adam", "sgd", "rmsprop"};
    for (int k = 0; k < 3; k++) {
        rg_optim_kind kind;
        assert_int_equal(rg_optim_parse(names[k], &kind), RG_OK);
        rg_optim_config c = rg_optim_defaults(kind);
        c.lr = 0.01f;
        rg_optim *a = rg_optim_create(&c, n), *b = rg_optim_create(&c, n);
        const size_t lim_off[2] = {0, 16000}, lim_len[2] = {15000, 4000};
        assert_int_equal(rg_optim_limit(a, 2, lim_off, lim_len), RG_OK);
        assert_int_equal(rg_optim_limit(b, 2, lim_off, lim_len), RG_OK);
        float *wa = malloc(n * sizeof *wa), *wb = malloc(n * sizeof *wb), *g = malloc(n * sizeof *g),
              *before = malloc(n * sizeof *before), *kept = malloc(n * sizeof *kept);
        rg_rng r;
        rg_rng_seed(&r, 11);
        for (size_t i = 0; i < n; i++) wa[i] = wb[i] = rg_rng_normal(&r), g[i] = rg_rng_normal(&r);
        rg_optim_step(a, wa, g, c.lr), rg_optim_step(b, wb, g, c.lr); /* moments non-zero */
        const size_t off[3] = {100, 12000, 19000}, len[3] = {8900, 5000, 500};
        double sums[9];
        memcpy(before, wa, n * sizeof *before);
        assert_int_equal(rg_optim_measure_next(a, 3, off, len, sums), RG_OK);
        rg_optim_keep_next(a, kept);
        rg_optim_step(a, wa, g, c.lr), rg_optim_step(b, wb, g, c.lr);
        assert_memory_equal(wa, wb, n * sizeof *wa);
        assert_memory_equal(kept, before, n * sizeof *kept); /* outside the ranges too */
        for (int i = 0; i < 3; i++) {
            double d = 0, gg = 0, ww = 0; /* only what the optimizer updates counts */
            for (size_t j = off[i]; j < off[i] + len[i]; j++)
                if (j < 15000 || j >= 16000) {
                    d += ((double)wa[j] - before[j]) * ((double)wa[j] - before[j]);
                    gg += (double)g[j] * g[j], ww += (double)before[j] * before[j];
                }
            assert_true(d > 0);
            assert_true(fabs(sums[3 * i] - d) <= 1e-5 * d);
            assert_true(fabs(sums[3 * i + 1] - gg) <= 1e-5 * gg);
            assert_true(fabs(sums[3 * i + 2] - ww) <= 1e-5 * ww);
        }
        memcpy(before, wa, n * sizeof *before); /* kept without measuring, and only once */
        rg_optim_keep_next(a, kept);
        rg_optim_step(a, wa, g, c.lr), rg_optim_step(b, wb, g, c.lr);
        assert_memory_equal(wa, wb, n * sizeof *wa);
        assert_memory_equal(kept, before, n * sizeof *kept);
        rg_optim_step(a, wa, g, c.lr), rg_optim_step(b, wb, g, c.lr);
        assert_memory_equal(kept, before, n * sizeof *kept);
        const size_t bad_off[2] = {5000, 100}, bad_len[2] = {10, 10};
        assert_int_equal(rg_optim_measure_next(a, 2, bad_off, bad_len, sums), RG_ERR_ARG);
        free(wa), free(wb), free(g), free(before), free(kept);
        rg_optim_free(a), rg_optim_free(b);
    }
}

/* rg_optim_then_next hands each range over once, after the update wrote all of it (its
 * values then are its final ones), on one thread and on two (where a range crosses from
 * one thread's share into the other's), with and without limits on what is updated; the
 * update is bitwise the one without it, and the step after forgets the ranges. */
typedef struct {
    const float *w;
    float *seen;
    const size_t *off, *len;
    int calls[4];
} handed_over;
static void note_handed_over(void *ctx, int i) {
    handed_over *h = ctx;
    h->calls[i]++; /* distinct i on distinct threads: distinct counters */
    memcpy(h->seen + h->off[i], h->w + h->off[i], h->len[i] * sizeof *h->seen);
}
static void test_optimizer_hands_over_written_ranges(void **state) {
    (void)state;
    const size_t n = 200000;
    const size_t off[4] = {0, 50000, 160000, 199000}, len[4] = {1000, 100000, 10000, 1000};
    const int threads = rg_get_threads();
    for (int t = 1; t <= 2; t++)
        for (int limited = 0; limited < 2; limited++) {
            rg_set_threads(t);
            rg_optim_config c = rg_optim_defaults(RG_OPTIM_ADAM);
            c.lr = 0.01f;
            rg_optim *a = rg_optim_create(&c, n), *b = rg_optim_create(&c, n);
            const size_t lim_off[2] = {0, 120000}, lim_len[2] = {100000, 80000};
            if (limited) {
                assert_int_equal(rg_optim_limit(a, 2, lim_off, lim_len), RG_OK);
                assert_int_equal(rg_optim_limit(b, 2, lim_off, lim_len), RG_OK);
            }
            float *wa = malloc(n * sizeof *wa), *wb = malloc(n * sizeof *wb), *g = malloc(n * sizeof *g);
            float *seen = calloc(n, sizeof *seen);
            assert_non_null(wa), assert_non_null(wb), assert_non_null(g), assert_non_null(seen);
            rg_rng r;
            rg_rng_seed(&r, 12);
            for (size_t i = 0; i < n; i++) wa[i] = wb[i] = rg_rng_normal(&r), g[i] = rg_rng_normal(&r);
            handed_over h = {.w = wa, .seen = seen, .off = off, .len = len};
            rg_optim_then_next(a, 4, off, len, note_handed_over, &h);
            rg_optim_step(a, wa, g, c.lr), rg_optim_step(b, wb, g, c.lr);
            assert_memory_equal(wa, wb, n * sizeof *wa);
            for (int i = 0; i < 4; i++) {
                assert_int_equal(h.calls[i], 1);
                assert_memory_equal(seen + off[i], wa + off[i], len[i] * sizeof *wa);
            }
            rg_optim_step(a, wa, g, c.lr); /* forgotten */
            for (int i = 0; i < 4; i++) assert_int_equal(h.calls[i], 1);
            free(wa), free(wb), free(g), free(seen);
            rg_optim_free(a), rg_optim_free(b);
        }
    rg_set_threads(threads);
}

/* The update rules come in plain, AVX2 and AVX-512 builds (optim/update_rules.h): each gives
 * the same weights, moments and measured sums, bit for bit, for every optimizer, and keeps
 * the weights before the step when asked, measured or not. */
static void test_optimizers_same_bits_on_every_isa(void **state) {
    (void)state;
    const size_t n = 10000 + 37; /* pieces and a ragged tail */
    for (int kind = 0; kind < RG_OPTIM_COUNT; kind++) {
        float *first = NULL;
        double first_sums[3];
        for (int isa = RG_ISA_BASE; isa <= RG_ISA_AVX512; isa++) {
            if ((int)rg_cpu_isa_cap((rg_isa)isa) != isa) continue; /* the CPU has not got it */
            rg_optim_config c = rg_optim_defaults((rg_optim_kind)kind);
            c.lr = 0.01f, c.weight_decay = 0.01f;
            if (kind == RG_OPTIM_RMSPROP) c.momentum = 0.5f;
            rg_optim *o = rg_optim_create(&c, n);
            float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g), *kept = malloc(n * sizeof *kept),
                  *copy = malloc(n * sizeof *copy);
            rg_rng r;
            rg_rng_seed(&r, 5);
            for (size_t i = 0; i < n; i++) w[i] = rg_rng_normal(&r);
            double sums[3];
            for (int step = 0; step < 3; step++) {
                for (size_t i = 0; i < n; i++) g[i] = rg_rng_normal(&r) * 0.1f;
                const size_t off = 50, len = n - 100;
                if (step == 2) assert_int_equal(rg_optim_measure_next(o, 1, &off, &len, sums), RG_OK);
                if (step >= 1) memcpy(copy, w, n * sizeof *w), rg_optim_keep_next(o, kept);
                rg_optim_step(o, w, g, c.lr);
                if (step >= 1) assert_memory_equal(kept, copy, n * sizeof *kept); /* and its ragged tail */
            }
            if (!first) {
                first = w, memcpy(first_sums, sums, sizeof sums);
            } else {
                assert_memory_equal(w, first, n * sizeof *w);
                assert_memory_equal(sums, first_sums, sizeof sums);
                free(w);
            }
            free(g), free(kept), free(copy);
            rg_optim_free(o);
        }
        free(first);
    }
    rg_cpu_isa_cap(RG_ISA_AVX512); /* back to the widest the CPU allows */
}

/* Batch norm's plane passes (kernels/cpu/norm.c): every instruction set gives the bits of a
 * plain model, 16 float lanes (value i in lane i mod 16) added in double in a fixed tree,
 * and the element-wise passes the bits of the scalar formula. */
static double lane_model(const float *lane) {
    double part[4];
    for (int j = 0; j < 4; j++) part[j] = lane[j];
    for (int k = 4; k < 16; k += 4)
        for (int j = 0; j < 4; j++) part[j] += lane[k + j];
    return (part[0] + part[1]) + (part[2] + part[3]);
}

static void test_batch_norm_kernels_same_bits_on_every_isa(void **state) {
    (void)state;
    enum { MAX = 800 };
    float x[MAX], dy[MAX], dx0[MAX];
    rg_rng r;
    rg_rng_seed(&r, 9);
    for (int i = 0; i < MAX; i++)
        x[i] = rg_rng_normal(&r) + 0.3f, dy[i] = rg_rng_normal(&r) * 0.01f, dx0[i] = rg_rng_normal(&r);
    const size_t sizes[] = {2, 7, 16, 17, 49, 196, 787};
    const float mu = 0.25f, k = 1.5f, mdy = 0.002f, inv = 0.8f, mdyx = -0.01f;
    const float relu[2] = {k, mdy}; /* the fused relu's scale and shift: about 60% pass */
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const size_t n = sizes[si];
        float l1[16] = {0}, l2[16] = {0}, la[16] = {0}, lb[16] = {0}, ra[16] = {0}, rb[16] = {0};
        for (size_t i = 0; i < n; i++) {
            const float d = x[i] - mu, g = x[i] * relu[0] + relu[1] > 0 ? dy[i] : 0.0f;
            l1[i % 16] += x[i], l2[i % 16] += d * d, la[i % 16] += dy[i], lb[i % 16] += dy[i] * d;
            ra[i % 16] += g, rb[i % 16] += g * d;
        }
        for (int isa = RG_ISA_BASE; isa <= RG_ISA_AVX512; isa++) {
            if ((int)rg_cpu_isa_cap((rg_isa)isa) != isa) continue;
            assert_true(rg_bn_plane_sum(x, n) == lane_model(l1));
            assert_true(rg_bn_plane_centred_squares(x, n, mu) == lane_model(l2));
            double sdy = 0, sdyx = 0;
            rg_bn_plane_dy_sums(x, dy, n, mu, NULL, &sdy, &sdyx);
            assert_true(sdy == lane_model(la) && sdyx == lane_model(lb));
            /* a fused relu: dy masked where x k + mdy <= 0, exactly as the relu op would */
            double rdy = 0, rdyx = 0;
            rg_bn_plane_dy_sums(x, dy, n, mu, relu, &rdy, &rdyx);
            assert_true(rdy == lane_model(ra) && rdyx == lane_model(rb));
            float y[MAX], yr[MAX], dx[MAX], dxe[MAX], dxf[MAX], dxr[MAX];
            rg_bn_plane_affine(x, y, n, k, mdy, false);
            rg_bn_plane_affine(x, yr, n, k, mdy, true);
            memcpy(dx, dx0, sizeof dx), memcpy(dxe, dx0, sizeof dxe), memcpy(dxf, dx0, sizeof dxf);
            memcpy(dxr, dx0, sizeof dxr);
            rg_bn_plane_input_grad(x, dy, dx, n, k, mdy, mu, inv, mdyx, true, NULL, false);
            rg_bn_plane_input_grad(x, dy, dxe, n, k, 0, 0, 0, 0, false, NULL, false);
            rg_bn_plane_input_grad(x, dy, dxf, n, k, mdy, mu, inv, mdyx, true, NULL, true); /* dx = */
            rg_bn_plane_input_grad(x, dy, dxr, n, k, mdy, mu, inv, mdyx, true, relu, false);
            for (size_t i = 0; i < n; i++) {
                const float yi = x[i] * k + mdy, yri = yi < 0 ? 0.0f : yi;
                const float grad = k * (dy[i] - mdy - (x[i] - mu) * inv * mdyx);
                const float dxi = dx0[i] + grad, dxei = dx0[i] + k * dy[i];
                const float dyr = yi > 0 ? dy[i] : 0.0f;
                const float dxri = dx0[i] + k * (dyr - mdy - (x[i] - mu) * inv * mdyx);
                assert_memory_equal(&y[i], &yi, sizeof yi);
                assert_memory_equal(&yr[i], &yri, sizeof yri);
                assert_memory_equal(&dx[i], &dxi, sizeof dxi);
                assert_memory_equal(&dxe[i], &dxei, sizeof dxei);
                assert_memory_equal(&dxf[i], &grad, sizeof grad);
                assert_memory_equal(&dxr[i], &dxri, sizeof dxri);
            }
        }
    }
    rg_cpu_isa_cap(RG_ISA_AVX512);
}

/* rg_graph_forward_nodes from node 0: the nodes up to `last` run as in a whole forward pass (the same
 * bits at `last`), none after it. */
typedef struct seen {
    int calls, highest, watch;
    float out[16 * 8];
} seen;

static void note_forward(rg_graph *g, int node, bool backward, void *user) {
    seen *s = user;
    if (backward) return;
    s->calls++;
    s->highest = node > s->highest ? node : s->highest;
    if (node == s->watch) memcpy(s->out, g->nodes[node].out, sizeof s->out);
}

static void test_forward_through_stops_at_its_node(void **state) {
    (void)state;
    rg_model m;
    assert_int_equal(rg_model_build("mlp:depth=4,width=8,act=tanh",
                                    &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = 5}, &m),
                     RG_OK);
    rg_graph *g = m.graph;
    assert_int_equal(rg_graph_compile(g, 16), RG_OK);
    float *x = rg_graph_input_buffer(g, m.input);
    for (int i = 0; i < 16 * 16; i++) x[i] = (float)((i * 37) % 11) / 11.0f - 0.4f;
    for (int i = 0; i < 16; i++) g->labels[i] = i % 3;
    int last = -1; /* the second dense layer, whose output is 16 x 8 */
    for (int i = 0, dense = 0; i < g->n_nodes && last < 0; i++)
        if (g->nodes[i].op == RG_OP_DENSE && ++dense == 2) last = i;
    assert_true(last > 0 && g->nodes[last].size == 8 && last < g->n_nodes - 2);
    seen whole = {.highest = -1, .watch = last}, part = {.highest = -1, .watch = last};
    g->hook = note_forward, g->hook_user = &whole;
    assert_int_equal(rg_graph_forward(g, 16, 1), RG_OK);
    g->hook_user = &part;
    assert_int_equal(rg_graph_forward_nodes(g, 16, 1, 0, last), RG_OK);
    g->hook = NULL;
    assert_int_equal(whole.highest, g->n_nodes - 1);
    assert_int_equal(part.highest, last);
    assert_int_equal(part.calls, last + 1);
    assert_memory_equal(whole.out, part.out, sizeof whole.out);
    rg_model_free(&m);
}


/* rg_graph_frontier and rg_graph_forward_nodes: a pass stopped at a node, its frontier kept,
 * another batch run whole over it, the frontier put back and the pass continued gives every
 * later node the bits of an uninterrupted pass; on a residual MLP (an add reads across the
 * cut), a DenseNet (concats, batch norm) and a ResNet18 v2 (cut at a convolution that reads
 * a zero padding folded into it). */
static void input_pattern(float *x, size_t n, int salt) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 37 + (size_t)salt * 11) % 13) / 13.0f - 0.4f;
}

static size_t outputs_from(const rg_graph *g, int first, int batch, float *to) {
    size_t floats = 0;
    for (int i = first; i < g->n_nodes; i++) {
        const rg_node_impl *n = &g->nodes[i];
        if (n->bypassed) continue;
        const size_t len = (n->batched ? (size_t)batch : 1) * n->size;
        if (to) memcpy(to + floats, n->out, len * sizeof *to);
        floats += len;
    }
    return floats;
}

static void test_forward_continues_from_a_kept_frontier(void **state) {
    (void)state;
    const struct { const char *spec; int c, h, w; } nets[] = {
        {"mlp:depth=6,width=8,act=tanh,residual=1", 1, 4, 4},
        {"densenet:depth=10,growth=4", 1, 12, 12},
        {"resnet18v2", 3, 32, 32},
    };
    for (size_t t = 0; t < sizeof nets / sizeof *nets; t++) {
        rg_model m;
        assert_int_equal(rg_model_build(nets[t].spec,
                                        &(rg_model_opts){.c = nets[t].c, .h = nets[t].h, .w = nets[t].w,
                                                         .classes = 3, .seed = 5},
                                        &m),
                         RG_OK);
        rg_graph *g = m.graph;
        const int batch = 4;
        assert_int_equal(rg_graph_compile(g, batch), RG_OK);
        float *x = rg_graph_input_buffer(g, m.input);
        const size_t in = (size_t)batch * g->nodes[m.input].size;
        for (int i = 0; i < batch; i++) g->labels[i] = i % 3;
        /* the cut: past an add's or a concat's inputs, and where there is one, just after a
         * zero padding folded into the convolution after it (which reads the pad's input) */
        int cut = g->n_nodes / 2;
        for (int i = cut; i < g->n_nodes; i++)
            if (g->nodes[i - 1].bypassed && !g->nodes[i].bypassed) {
                cut = i;
                break;
            }
        while (g->nodes[cut].bypassed) cut++;
        const size_t later = outputs_from(g, cut, batch, NULL);
        float *whole = malloc(later * sizeof *whole), *resumed = malloc(later * sizeof *resumed);
        assert_non_null(whole);
        assert_non_null(resumed);
        input_pattern(x, in, 2); /* batch B whole */
        assert_int_equal(rg_graph_forward(g, batch, 1), RG_OK);
        outputs_from(g, cut, batch, whole);
        const size_t kept_floats = rg_graph_frontier(g, cut, batch, NULL, false);
        assert_true(kept_floats > 0);
        float *kept = malloc(kept_floats * sizeof *kept);
        assert_non_null(kept);
        input_pattern(x, in, 2); /* batch B up to the cut, its frontier kept */
        assert_int_equal(rg_graph_forward_nodes(g, batch, 1, 0, cut - 1), RG_OK);
        assert_int_equal(rg_graph_frontier(g, cut, batch, kept, true), kept_floats);
        input_pattern(x, in, 7); /* batch A over every buffer */
        assert_int_equal(rg_graph_forward(g, batch, 1), RG_OK);
        g->dropout_calls--; /* B's pass's masks (none here) */
        assert_int_equal(rg_graph_frontier(g, cut, batch, kept, false), kept_floats);
        assert_int_equal(rg_graph_forward_nodes(g, batch, 1, cut, g->n_nodes - 1), RG_OK);
        outputs_from(g, cut, batch, resumed);
        assert_memory_equal(whole, resumed, later * sizeof *whole);
        /* without the frontier put back the later nodes see A: the test can tell */
        input_pattern(x, in, 7);
        assert_int_equal(rg_graph_forward(g, batch, 1), RG_OK);
        assert_int_equal(rg_graph_forward_nodes(g, batch, 1, cut, g->n_nodes - 1), RG_OK);
        outputs_from(g, cut, batch, resumed);
        assert_true(memcmp(whole, resumed, later * sizeof *whole) != 0);
        free(kept), free(whole), free(resumed);
        rg_model_free(&m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bitwise_reproducible),
        cmocka_unit_test(test_every_optimizer_learns),
        cmocka_unit_test(test_optimizer_measures_its_update),
        cmocka_unit_test(test_optimizer_hands_over_written_ranges),
        cmocka_unit_test(test_optimizers_same_bits_on_every_isa),
        cmocka_unit_test(test_batch_norm_kernels_same_bits_on_every_isa),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_optimizer_validation),
        cmocka_unit_test(test_model_specs),
        cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_compile_refuses_sizes_that_overflow),
        cmocka_unit_test(test_initialisers),
        cmocka_unit_test(test_memory_planning_is_exact),
        cmocka_unit_test(test_guarded_memory_names_an_overrun),
        cmocka_unit_test(test_residual_adds_share_their_gradient),
        cmocka_unit_test(test_padding_folds_into_pooling),
        cmocka_unit_test(test_forward_through_stops_at_its_node),
        cmocka_unit_test(test_forward_continues_from_a_kept_frontier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_api.c — the public API's short paths: a network built by hand with the builder calls
 * trains with rg_fit exactly as a zoo model (GRA, checkpoints, bitwise resume, prediction),
 * datasets made from floats in memory, rg_fit_defaults, and the errors of each.
 */
#include "test_util.h"

static int make_dir(void **state) { return test_dir_make("api") ? 0 : -1; }
static int remove_dir(void **state) { return test_dir_remove() == 0 ? 0 : -1; }

/* 8x8 one-channel samples: class k has a bright 3x3 patch in quadrant k (of 3) at a random
 * place inside it, on noise. */
static rg_dataset *patches(int n, uint64_t seed) {
    float *x = malloc((size_t)n * 64 * sizeof *x);
    int *y = malloc((size_t)n * sizeof *y);
    rg_rng r;
    rg_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        const int k = (int)rg_rng_below(&r, 3);
        float *s = x + (size_t)i * 64;
        for (int j = 0; j < 64; j++) s[j] = 0.2f * rg_rng_normal(&r);
        const int top = (k == 2 ? 4 : 0) + (int)rg_rng_below(&r, 2);
        const int left = (k == 1 ? 4 : 0) + (int)rg_rng_below(&r, 2);
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) s[(top + a) * 8 + left + b] += 1.0f;
        y[i] = k;
    }
    rg_dataset *d;
    assert_int_equal(rg_dataset_from_floats(n, 3, (int[]){1, 8, 8}, x, y, 0, &d), RG_OK);
    free(x);
    free(y);
    return d;
}

/* A small CNN by hand: conv, relu, pool, conv, relu, flatten, dense. */
static rg_model hand_built_cnn(uint64_t seed) {
    rg_graph *g = rg_graph_create(seed);
    rg_node x = rg_input(g, "pixels", 3, (int[]){1, 8, 8});
    rg_node h = rg_max_pool2d(g, rg_relu(g, rg_conv2d(g, x, 8, 3, NULL)), 2, 2, 0);
    h = rg_relu(g, rg_conv2d(g, h, 16, 3, NULL));
    rg_node logits = rg_dense(g, rg_flatten(g, h), 3, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    rg_node loss = rg_softmax_cross_entropy(g, logits, 0.0f);
    rg_model m;
    assert_int_equal(rg_model_from_graph(g, RG_NONE, logits, loss, &m), RG_OK);
    return m;
}

/* Trains a fresh hand-built CNN with GRA and checkpoints: for `epochs`, stopping after
 * stop_after of them (0: not), resuming from `resume` when given; the weights' hash. */
static uint64_t train_cnn(const rg_dataset *d, int epochs, int stop_after, const char *resume,
                          const char *dir) {
    rg_model m = hand_built_cnn(5);
    rg_fit_config cfg = rg_fit_defaults();
    cfg.epochs = epochs, cfg.batch = 32, cfg.seed = 9, cfg.val_split = 0.1f;
    cfg.stop_after = stop_after, cfg.checkpoint_dir = dir;
    rg_tensor_file *f = NULL;
    if (resume) assert_int_equal(rg_safetensors_load(resume, &f), RG_OK);
    cfg.resume = f;
    assert_int_equal(rg_fit(&m, d, &cfg, NULL), RG_OK);
    const uint64_t h = rg_graph_params_hash(m.graph);
    rg_tensor_file_free(f);
    rg_model_free(&m);
    return h;
}

static void hand_built_graph_trains_like_a_zoo_model(void **state) {
    rg_dataset *train = patches(600, 1), *test = patches(300, 2);
    /* compiled by rg_fit (batch 32); learns the patches */
    rg_model m = hand_built_cnn(5);
    rg_fit_config cfg = rg_fit_defaults();
    cfg.epochs = 3, cfg.batch = 32;
    assert_int_equal(rg_fit(&m, train, &cfg, NULL), RG_OK);
    assert_int_equal(rg_graph_max_batch(m.graph), 32);
    double loss, acc;
    assert_int_equal(rg_evaluate(&m, test, NULL, test->n, &loss, &acc), RG_OK);
    if (!(acc > 0.9)) fail_msg("test accuracy %.3f", acc);
    /* prediction: saved, loaded into a fresh graph of the same build, the same logits */
    rg_tensor_file *f = saved_and_loaded(&m);
    assert_null(rg_tensor_file_meta(f, "model")); /* no zoo spec to rebuild from */
    rg_model fresh = hand_built_cnn(77);
    assert_int_equal(rg_graph_compile(fresh.graph, 32), RG_OK);
    assert_int_equal(rg_model_load(&fresh, f, RG_LOAD_STRICT, NULL), RG_OK);
    const int idx[4] = {0, 1, 2, 3};
    for (int k = 0; k < 2; k++) {
        rg_model *p = k ? &fresh : &m;
        assert_int_equal(rg_dataset_batch(test, idx, 4, rg_graph_input_buffer(p->graph, p->input),
                                          rg_graph_labels(p->graph)), RG_OK);
        assert_int_equal(rg_graph_forward(p->graph, 4, 0), RG_OK);
    }
    assert_memory_equal(rg_node_output(m.graph, m.logits), rg_node_output(fresh.graph, fresh.logits),
                        4 * 3 * sizeof(float));
    float read[4 * 3];
    assert_int_equal(rg_node_read(fresh.graph, fresh.logits, 4, read), RG_OK);
    assert_memory_equal(read, rg_node_output(m.graph, m.logits), sizeof read);
    assert_int_equal(rg_node_read(fresh.graph, fresh.logits, 33, read), RG_ERR_STATE); /* compiled for 32 */
    assert_int_equal(rg_node_read(fresh.graph, 9999, 1, read), RG_ERR_ARG);
    rg_tensor_file_free(f);
    rg_model_free(&fresh);
    rg_model_free(&m);
    /* checkpoints and exact resume: 2 epochs straight = 1, stop, resume 1 */
    const uint64_t straight = train_cnn(train, 2, 0, NULL, test_path("straight"));
    const uint64_t stopped = train_cnn(train, 2, 1, NULL, test_path("stopped"));
    assert_true(stopped != straight);
    const uint64_t resumed = train_cnn(train, 2, 0, test_path("stopped/epoch_1.safetensors"),
                                       test_path("stopped"));
    assert_true(resumed == straight);
    rg_dataset_free(train);
    rg_dataset_free(test);
}

static void count_action(void *user, const rg_repair_event *e) {
    (void)e;
    ++*(long *)user;
}

/* GRA repairs a hand-built deep sigmoid MLP as it repairs the zoo's. */
static void gra_repairs_a_hand_built_network(void **state) {
    rg_graph *g = rg_graph_create(3);
    rg_node h = rg_flatten(g, rg_input(g, "x", 3, (int[]){1, 8, 8}));
    for (int i = 0; i < 10; i++) h = rg_sigmoid(g, rg_dense(g, h, 32, RG_INIT(RG_INIT_TORCH)));
    rg_node logits = rg_dense(g, h, 3, RG_INIT(RG_INIT_TORCH));
    rg_model m;
    assert_int_equal(rg_model_from_graph(g, RG_NONE, logits, rg_softmax_cross_entropy(g, logits, 0), &m), RG_OK);
    rg_dataset *d = patches(1000, 3);
    long actions = 0;
    rg_fit_callbacks cb = {.on_repair = count_action, .user = &actions};
    rg_fit_config cfg = rg_fit_defaults();
    cfg.epochs = 4, cfg.batch = 50;
    rg_model plain;
    assert_int_equal(rg_fit(&m, d, &cfg, &cb), RG_OK);
    assert_true(actions >= 10); /* every layer re-conditioned by the probe */
    double loss, acc_gra, acc_off;
    assert_int_equal(rg_evaluate(&m, d, NULL, d->n, &loss, &acc_gra), RG_OK);
    /* the same network without GRA stays near chance */
    g = rg_graph_create(3);
    h = rg_flatten(g, rg_input(g, "x", 3, (int[]){1, 8, 8}));
    for (int i = 0; i < 10; i++) h = rg_sigmoid(g, rg_dense(g, h, 32, RG_INIT(RG_INIT_TORCH)));
    logits = rg_dense(g, h, 3, RG_INIT(RG_INIT_TORCH));
    assert_int_equal(rg_model_from_graph(g, RG_NONE, logits, rg_softmax_cross_entropy(g, logits, 0), &plain), RG_OK);
    cfg.repair = 0;
    assert_int_equal(rg_fit(&plain, d, &cfg, NULL), RG_OK);
    assert_int_equal(rg_evaluate(&plain, d, NULL, d->n, &loss, &acc_off), RG_OK);
    if (!(acc_gra > 0.8 && acc_off < 0.5)) fail_msg("GRA %.3f, off %.3f", acc_gra, acc_off);
    rg_model_free(&plain);
    rg_model_free(&m);
    rg_dataset_free(d);
}

static void datasets_from_floats(void **state) {
    const float x[6] = {0, 1, 2, 3, 4, 5};
    rg_dataset *d;
    assert_int_equal(rg_dataset_from_floats(3, 1, (int[]){2}, x, (int[]){0, 2, 1}, 0, &d), RG_OK);
    assert_int_equal(d->classes, 3);
    assert_int_equal(d->c * d->h * d->w, 2);
    float out[4];
    int y[2];
    assert_int_equal(rg_dataset_batch(d, (int[]){2, 0}, 2, out, y), RG_OK);
    assert_true(out[0] == 4 && out[1] == 5 && out[2] == 0 && out[3] == 1 && y[0] == 1 && y[1] == 0);
    rg_dataset_free(d);
    /* every kind of bad input: one line naming it */
    const float nan_x[4] = {0, 1, NAN, 3};
    assert_int_equal(rg_dataset_from_floats(2, 1, (int[]){2}, nan_x, (int[]){0, 1}, 0, &d), RG_ERR_NUMERIC);
    assert_non_null(strstr(rg_last_error(), "feature 0 of sample 1 is nan"));
    assert_null(d);
    assert_int_equal(rg_dataset_from_floats(2, 1, (int[]){2}, nan_x, (int[]){0, -1}, 0, &d), RG_ERR_NUMERIC);
    assert_int_equal(rg_dataset_from_floats(2, 1, (int[]){2}, x, (int[]){0, -1}, 0, &d), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "sample 1 has label -1"));
    assert_int_equal(rg_dataset_from_floats(2, 1, (int[]){2}, x, (int[]){0, 5}, 3, &d), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "sample 1 has label 5, outside the model's 3 classes"));
    assert_int_equal(rg_dataset_from_floats(1, 4, (int[]){1, 1, 1, 2}, x, (int[]){0}, 0, &d), RG_ERR_SHAPE);
    assert_int_equal(rg_dataset_from_floats(1, 2, (int[]){2, 0}, x, (int[]){0}, 0, &d), RG_ERR_SHAPE);
    assert_int_equal(rg_dataset_from_floats(0, 1, (int[]){2}, x, (int[]){0}, 0, &d), RG_ERR_ARG);
    /* a model of fewer classes than the data's labels: rg_fit names the sample */
    assert_int_equal(rg_dataset_from_floats(3, 1, (int[]){2}, x, (int[]){0, 2, 1}, 0, &d), RG_OK);
    rg_model m;
    assert_int_equal(rg_model_build("mlp:depth=1,width=4", &(rg_model_opts){.c = 2, .h = 1, .w = 1, .classes = 2}, &m), RG_OK);
    rg_fit_config cfg = rg_fit_defaults();
    assert_int_equal(rg_fit(&m, d, &cfg, NULL), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "sample 1 has label 2, outside the model's 2 classes"));
    cfg.augment.flip = true;
    rg_model_free(&m);
    assert_int_equal(rg_model_build("mlp:depth=1,width=4", &(rg_model_opts){.c = 2, .h = 1, .w = 1, .classes = 3}, &m), RG_OK);
    assert_int_equal(rg_fit(&m, d, &cfg, NULL), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "augmentation works on images"));
    rg_model_free(&m);
    rg_dataset_free(d);
}

static void defaults_and_model_errors(void **state) {
    const rg_fit_config c = rg_fit_defaults();
    assert_int_equal(c.epochs, 1);
    assert_int_equal(c.batch, 0);
    assert_int_equal(c.repair, 1);
    assert_int_equal(c.optim.kind, RG_OPTIM_ADAM);
    assert_true(c.optim.lr == 1e-3f);
    rg_model m;
    /* two inputs: the data's must be named */
    rg_graph *g = rg_graph_create(1);
    rg_node a = rg_input(g, "a", 1, (int[]){4}), b = rg_input(g, "b", 1, (int[]){4});
    rg_node z = rg_dense(g, rg_add(g, a, b), 2, RG_INIT(RG_INIT_TORCH));
    rg_node loss = rg_softmax_cross_entropy(g, z, 0);
    assert_int_equal(rg_model_from_graph(g, RG_NONE, z, loss, &m), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "several inputs ('a', 'b')"));
    assert_int_equal(rg_model_from_graph(g, a, z, z, &m), RG_ERR_ARG); /* not a scalar */
    assert_non_null(strstr(rg_last_error(), "the loss must be a scalar"));
    assert_int_equal(rg_model_from_graph(g, z, z, loss, &m), RG_ERR_ARG); /* not an input */
    assert_int_equal(rg_model_from_graph(g, a, z, loss, &m), RG_OK);
    rg_model_free(&m); /* frees g */
    /* a builder error surfaces here, not at the first step */
    g = rg_graph_create(1);
    rg_node x = rg_input(g, "x", 2, (int[]){3, 4});
    rg_node y = rg_dense(g, x, 5, RG_INIT(RG_INIT_TORCH)); /* not flat */
    assert_int_equal(rg_model_from_graph(g, x, y, y, &m), RG_ERR_SHAPE);
    rg_graph_free(g);
    assert_int_equal(rg_model_from_graph(NULL, 0, 0, 0, &m), RG_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_and_model_errors),
        cmocka_unit_test(datasets_from_floats),
        cmocka_unit_test(hand_built_graph_trains_like_a_zoo_model),
        cmocka_unit_test(gra_repairs_a_hand_built_network),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}

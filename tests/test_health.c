/*
 * test_health.c — the gradient health monitor and GRA: verdicts on constructed vanishing,
 * exploding, saturated, dead, non-finite and healthy networks; the probe bringing the
 * gradient ratio back into the band; per-step repairs; no action on a healthy network.
 */
#include "test_util.h"

#include "internal.h"
#include "kernels/backend.h"
#include "kernels/kernels.h"
#include "kernels/cpu/cpu.h"

typedef struct built {
    rg_model m;
    rg_monitor *mon;
    rg_dataset *d;
    int idx[256];
} built;

static void build(built *b, const char *spec, int batch) {
    b->d = synthetic(512, 3, 5);
    assert_int_equal(rg_model_build(spec, &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = 7}, &b->m), RG_OK);
    assert_int_equal(rg_graph_compile(b->m.graph, batch), RG_OK);
    b->mon = rg_monitor_create(b->m.graph);
    assert_non_null(b->mon);
    for (int i = 0; i < 256; i++) b->idx[i] = i;
}

static void release(built *b) {
    rg_monitor_free(b->mon);
    rg_model_free(&b->m);
    rg_dataset_free(b->d);
}

/* One observed forward and backward on the first batch; pixels scaled by `gain`. */
static void observe(built *b, int batch, float gain) {
    rg_graph *g = b->m.graph;
    float *x = rg_graph_input_buffer(g, b->m.input);
    rg_dataset_batch(b->d, b->idx, batch, x, rg_graph_labels(g));
    for (size_t i = 0; i < (size_t)batch * 16; i++) x[i] *= gain;
    rg_monitor_enable(b->mon, 1);
    rg_graph_forward(g, batch, 1);
    rg_graph_backward(g, b->m.loss);
    rg_monitor_enable(b->mon, 0);
    rg_monitor_judge(b->mon);
}

static int count(const built *b, rg_verdict v) {
    int n = 0;
    for (int i = 0; i < rg_monitor_layer_count(b->mon); i++) n += rg_monitor_layer(b->mon, i)->verdict == v;
    return n;
}

static void test_healthy_network_is_healthy(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=3,width=32,act=relu,init=he", 64);
    observe(&b, 64, 1);
    assert_int_equal(rg_monitor_layer_count(b.mon), 4);
    assert_int_equal(count(&b, RG_HEALTHY), 4);
    const rg_layer_health *h = rg_monitor_layer(b.mon, 1);
    assert_string_equal(h->name, "dense_2");
    assert_string_equal(h->act, "relu");
    assert_true(h->grad_norm > 0 && h->weight_norm > 0 && isfinite(h->backward_gain));
    assert_true(h->dead >= 0 && h->dead <= 1);
    release(&b);
}

static void test_vanishing_detected_and_repaired(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=10,width=32,act=sigmoid,init=torch", 128);
    observe(&b, 128, 1);
    assert_true(count(&b, RG_VANISHING) >= 1);
    assert_int_equal(rg_monitor_layer(b.mon, 0)->verdict, RG_VANISHING);
    const int n = rg_monitor_layer_count(b.mon);
    const double before = rg_monitor_layer(b.mon, 0)->grad_norm / rg_monitor_layer(b.mon, n - 1)->grad_norm;
    rg_repair *r = rg_repair_create(&b.m, b.mon, NULL, NULL);
    assert_int_equal(rg_repair_probe(r, b.d, b.idx, 256), RG_OK);
    assert_true(rg_repair_actions(r) >= n - 1); /* every layer from the first re-conditioned */
    observe(&b, 128, 1);
    const double after = rg_monitor_layer(b.mon, 0)->grad_norm / rg_monitor_layer(b.mon, n - 1)->grad_norm;
    /* the first layer's gradient comes back within the band of the network's */
    assert_true(after > 100 * before);
    assert_int_equal(count(&b, RG_VANISHING), 0);
    for (int i = 0; i < n - 1; i++) { /* pre-activations centred with unit spread */
        const rg_layer_health *h = rg_monitor_layer(b.mon, i);
        assert_true(fabs(h->pre_mean) < 0.3 && fabs(h->pre_std - 1) < 0.3);
    }
    /* equal singular values, then each unit rescaled: a square hidden layer's rows are
     * mutually orthogonal (the default init's are not: cosines up to ~0.5 at width 32) */
    const rg_graph *g = b.m.graph;
    const rg_node_impl *hidden = &g->nodes[rg_monitor_layer_node(b.mon, 4)];
    const float *w = g->param_buf + g->params[hidden->first_param].offset;
    double worst = 0;
    for (int u = 0; u < 32; u++)
        for (int v = u + 1; v < 32; v++) {
            const double uv = rg_dot(w + u * 32, w + v * 32, 32);
            const double cos = uv / sqrt(rg_dot(w + u * 32, w + u * 32, 32) * rg_dot(w + v * 32, w + v * 32, 32));
            worst = fmax(worst, fabs(cos));
        }
    assert_true(worst < 1e-2);
    rg_repair_free(r);
    release(&b);
}

typedef struct log_capture {
    int n;
    char action[16][24], verdict[16][24], layer[16][32];
    double factor[16];
    long step[16];
} log_capture;

static void capture(void *user, const rg_repair_event *e) {
    log_capture *c = user;
    if (c->n < 16) {
        snprintf(c->action[c->n], 24, "%s", e->action);
        snprintf(c->verdict[c->n], 24, "%s", e->verdict);
        snprintf(c->layer[c->n], 32, "%s", e->layer);
        c->factor[c->n] = e->factor;
        c->step[c->n] = e->step;
    }
    c->n++;
}

/* Builds spec (batch 128) and runs GRA's probe on it, its actions logged into c. */
static rg_repair *probed(built *b, const char *spec, log_capture *c) {
    build(b, spec, 128);
    rg_repair *r = rg_repair_create(&b->m, b->mon, capture, c);
    assert_int_equal(rg_repair_probe(r, b->d, b->idx, 256), RG_OK);
    return r;
}

/* A unit whose spread lies below float's resolution of it (1e-3 of its mean: here weights
 * 3e-3 of their own against a bias of 3, a spread of ~1e-4 of its mean) is left as it is by
 * re-conditioning, not scaled up ~5,000 times to make its rounding a unit spread; its
 * neighbours are re-conditioned. */
static void test_constant_unit_left_as_it_is(void **state) {
    (void)state;
    built b;
    build(&b, "plaincnn:depth=4,width=8,act=sigmoid,init=torch", 128);
    rg_graph *g = b.m.graph;
    const rg_node_impl *conv = &g->nodes[rg_monitor_layer_node(b.mon, 1)];
    assert_int_equal(conv->n_params, 2);
    float *w = g->param_buf + g->params[conv->first_param].offset, *bias = g->param_buf + g->params[conv->first_param + 1].offset;
    const size_t row = g->params[conv->first_param].size / (size_t)conv->shape[0];
    float before[2] = {0, 0}; /* the largest |w| of unit 0 and of unit 1 */
    for (size_t k = 0; k < row; k++) w[k] *= 3e-3f, before[0] = fmaxf(before[0], fabsf(w[k]));
    for (size_t k = 0; k < row; k++) before[1] = fmaxf(before[1], fabsf(w[row + k]));
    bias[0] = 3;
    rg_repair *r = rg_repair_create(&b.m, b.mon, NULL, NULL);
    assert_int_equal(rg_repair_probe(r, b.d, b.idx, 256), RG_OK);
    float after[2] = {0, 0};
    for (int u = 0; u < 2; u++)
        for (size_t k = 0; k < row; k++) after[u] = fmaxf(after[u], fabsf(w[u * row + k]));
    if (!(after[0] < 2 * before[0])) fail_msg("the constant unit scaled: |w| %g, before %g", after[0], before[0]);
    if (!(fabsf(after[1] - before[1]) > 0.1f * before[1])) fail_msg("unit 1 not re-conditioned: |w| %g", after[1]);
    rg_repair_free(r);
    release(&b);
}

/* An exploding relu net (weights N(0, 0.5^2)): the probe re-conditions from the first layer,
 * judged healthy or not, and each relu layer as a whole, one scale to an RMS spread of 1
 * with no shift, so its units keep their own means and unequal spreads. */
static void test_relu_reconditioned_as_a_whole(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=6,width=32,act=relu,init=normal:0.5", 128);
    observe(&b, 128, 1);
    assert_int_equal(rg_monitor_layer(b.mon, 0)->verdict, RG_HEALTHY);
    assert_true(count(&b, RG_EXPLODING) >= 1);
    log_capture c = {0};
    rg_repair *r = rg_repair_create(&b.m, b.mon, capture, &c);
    assert_int_equal(rg_repair_probe(r, b.d, b.idx, 256), RG_OK);
    bool first = false;
    for (int e = 0; e < c.n && e < 16; e++)
        first |= !strcmp(c.layer[e], "dense_1") && !strcmp(c.action[e], "recondition");
    assert_true(first);
    observe(&b, 128, 1);
    const int n = rg_monitor_layer_count(b.mon);
    for (int i = 0; i < n - 1; i++) {
        const double *mu = rg_monitor_unit_mean(b.mon, i), *sd = rg_monitor_unit_std(b.mon, i);
        double sq = 0, lo = INFINITY, hi = 0, off = 0;
        for (int u = 0; u < 32; u++)
            sq += sd[u] * sd[u] / 32, lo = fmin(lo, sd[u]), hi = fmax(hi, sd[u]), off = fmax(off, fabs(mu[u]));
        assert_true(fabs(sqrt(sq) - 1) < 0.2); /* RMS spread 1 */
        assert_true(hi > 1.5 * lo);           /* the units' spreads not made equal */
        assert_true(off > 0.3);               /* nor their means moved to 0 */
    }
    rg_repair_free(r);
    release(&b);
}

/* The worst |sum over input channels| of a tap of conv node n's kernel, relative to the sum
 * of the tap's |weights|. */
static double worst_tap_sum(const rg_graph *g, const rg_node_impl *n) {
    const rg_param_impl *kp = &g->params[n->first_param];
    const int channels = kp->shape[1], taps = kp->shape[2] * kp->shape[3];
    const float *w = g->param_buf + kp->offset;
    double worst = 0;
    for (int o = 0; o < kp->shape[0]; o++)
        for (int t = 0; t < taps; t++) {
            double sum = 0, size = 0;
            for (int c = 0; c < channels; c++) {
                const float v = w[((size_t)o * channels + c) * taps + t];
                sum += v, size += fabs(v);
            }
            worst = fmax(worst, fabs(sum) / size);
        }
    return worst;
}

/* A sigmoid CNN's probe makes each tap of every convolution reading a sigmoid through zero
 * padding sum to zero across input channels (the mean 1/2 then contributes as the padding's
 * 0 does); the first convolution (one input channel) keeps its kernel, and a tanh CNN's
 * repair leaves every kernel's taps as they were. */
static void test_sigmoid_conv_taps_sum_to_zero(void **state) {
    (void)state;
    for (int sigmoid = 0; sigmoid < 2; sigmoid++) {
        built b;
        log_capture c = {0};
        rg_repair *r = probed(&b, sigmoid ? "plaincnn:depth=6,width=8,act=sigmoid,init=torch"
                                          : "plaincnn:depth=6,width=8,act=tanh,init=torch", &c);
        assert_true(rg_repair_actions(r) > 0); /* both re-conditioned */
        bool logged = false;
        for (int e = 0; e < c.n && e < 16; e++)
            logged |= !strcmp(c.layer[e], "conv2d_2") && !strcmp(c.action[e], "zero_sum_taps");
        assert_int_equal(logged, sigmoid);
        const rg_graph *g = b.m.graph;
        int convs = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            if (g->nodes[i].op != RG_OP_CONV2D) continue;
            const double worst = worst_tap_sum(g, &g->nodes[i]);
            if (sigmoid && convs > 0) assert_true(worst < 1e-5);
            else assert_true(worst > 0.1);
            convs++;
        }
        assert_int_equal(convs, 6);
        rg_repair_free(r);
        release(&b);
    }
}

/* A relu layer that falls ill while training (half its units dead): the repair centres
 * the dead units, which revives them, and leaves the live ones' means where they were. */
static void test_relu_dead_units_revived(void **state) {
    (void)state;
    built b;
    log_capture c = {0};
    rg_repair *r = probed(&b, "mlp:depth=3,width=32,act=relu,init=he", &c);
    assert_int_equal(rg_repair_actions(r), 0); /* healthy */
    rg_param_info p;
    rg_graph_param(b.m.graph, 3, &p); /* dense_2.bias */
    for (size_t i = 0; i < p.size; i += 2) p.data[i] = -100;
    observe(&b, 128, 1);
    assert_int_equal(rg_monitor_layer(b.mon, 1)->verdict, RG_DEAD);
    assert_int_equal(rg_repair_check(r, 50), RG_OK);
    assert_true(rg_repair_actions(r) > 0);
    observe(&b, 128, 1);
    const double *mu = rg_monitor_unit_mean(b.mon, 1), *sd = rg_monitor_unit_std(b.mon, 1);
    double live_off = 0;
    for (int u = 0; u < 32; u++) {
        if (u % 2 == 0) assert_true(fabs(mu[u]) < 0.25 * sd[u] && sd[u] > 0); /* revived */
        else live_off = fmax(live_off, fabs(mu[u]) / sd[u]);
    }
    assert_true(live_off > 0.2);
    /* repaired from then on as the probe's: its layers' centred coordinates decided at step 50 */
    int centred = 0;
    for (int e = 0; e < c.n && e < 16; e++)
        if (!strcmp(c.action[e], "centre_inputs")) centred++, assert_int_equal(c.step[e], 50);
    assert_true(centred > 0);
    rg_repair_free(r);
    release(&b);
}

/* A network the probe finds healthy is re-checked at steps 1, 2, 4, ... 32 as well as every
 * 50 (its first steps do the most damage); one the probe repaired keeps the 50-step rhythm,
 * and a checkpoint keeps which is which. */
static void test_healthy_network_watched_early(void **state) {
    (void)state;
    built b;
    log_capture c = {0};
    rg_repair *r = probed(&b, "mlp:depth=3,width=32,act=relu,init=he", &c);
    assert_int_equal(rg_repair_actions(r), 0);
    for (long step = 0; step <= 120; step++) {
        const bool early = step > 0 && step < 50 && (step & (step - 1)) == 0;
        assert_int_equal(rg_repair_wants_check(r, step), early || (step > 0 && step % 50 == 0));
    }
    char *json = rg_repair_state_json(r);
    assert_non_null(strstr(json, "\"watch_early\":true"));
    free(json);
    rg_repair_free(r);
    release(&b);
    r = probed(&b, "mlp:depth=6,width=32,act=sigmoid,init=torch", &c);
    assert_true(rg_repair_actions(r) > 0);
    for (long step = 0; step <= 120; step++)
        assert_int_equal(rg_repair_wants_check(r, step), step > 0 && step % 50 == 0);
    rg_repair_free(r);
    release(&b);
}

/* GRA's tensors written to `name` in the test directory (made here) and loaded back. */
static rg_tensor_file *gra_saved_and_loaded(const rg_repair *r, const char *name) {
    assert_true(test_dir_make("health"));
    rg_tensor_writer *w = rg_tensor_writer_create();
    assert_int_equal(rg_repair_add_tensors(r, w), RG_OK);
    assert_int_equal(rg_tensor_writer_save(w, test_path(name)), RG_OK);
    rg_tensor_writer_free(w);
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(test_path(name), &f), RG_OK);
    return f;
}

/* A network the probe found healthy keeps its weights at each early check that finds it
 * healthy; one that an early check finds ill (a step that moved every weight and killed half
 * a layer's units) goes back to the weights the last healthy check kept, bit for bit, and is
 * repaired from then on (the trust region on).  The kept weights travel in a checkpoint:
 * here the check that goes back runs on a GRA restored from one.  (At a check past the early
 * ones the network is re-conditioned instead: test_relu_dead_units_revived.) */
static void test_ill_at_an_early_check_goes_back(void **state) {
    (void)state;
    built b;
    log_capture c = {0};
    rg_repair *r = probed(&b, "mlp:depth=3,width=32,act=relu,init=he", &c);
    assert_int_equal(rg_repair_actions(r), 0);
    rg_graph *g = b.m.graph;
    const size_t n = g->param_floats;
    for (size_t i = 0; i < n; i++) g->param_buf[i] += 1e-3f * (float)((int)(i % 7) - 3); /* a step */
    observe(&b, 128, 1);
    assert_int_equal(rg_repair_check(r, 2), RG_OK); /* healthy: these weights kept */
    assert_int_equal(rg_repair_actions(r), 0);
    float *kept = malloc(n * sizeof *kept);
    assert_non_null(kept);
    memcpy(kept, g->param_buf, n * sizeof *kept);
    char *json = rg_repair_state_json(r);
    assert_non_null(strstr(json, "\"healthy_step\":2"));
    rg_tensor_file *f = gra_saved_and_loaded(r, "gra.safetensors");
    rg_repair_free(r);
    r = rg_repair_create(&b.m, b.mon, capture, &c);
    assert_int_equal(rg_repair_restore(r, json, f, b.d, b.idx, 256), RG_OK);
    for (size_t i = 0; i < n; i++) g->param_buf[i] -= 2e-3f * (float)((int)(i % 5) - 2); /* another */
    rg_param_info p;
    rg_graph_param(g, 3, &p); /* dense_2.bias: half its units killed */
    for (size_t i = 0; i < p.size; i += 2) p.data[i] = -100;
    observe(&b, 128, 1);
    assert_int_equal(rg_monitor_layer(b.mon, 1)->verdict, RG_DEAD);
    assert_false(rg_repair_caps_updates(r));
    assert_int_equal(rg_repair_check(r, 4), RG_OK);
    assert_memory_equal(g->param_buf, kept, n * sizeof *kept);
    assert_true(c.n > 0);
    assert_string_equal(c.action[0], "back_to_healthy");
    assert_string_equal(c.layer[0], "dense_2");
    assert_string_equal(c.verdict[0], "dead");
    assert_int_equal(c.step[0], 4);
    assert_true(c.factor[0] == 2); /* the step whose weights it went back to */
    assert_true(rg_repair_caps_updates(r));
    char *after = rg_repair_state_json(r);
    assert_null(strstr(after, "healthy_step")); /* used: kept no more */
    free(after);
    /* a checkpoint that names kept weights it does not hold is refused */
    rg_repair_free(r);
    r = rg_repair_create(&b.m, b.mon, capture, &c);
    rg_tensor_file_free(f);
    f = rg_tensor_file_new();
    assert_int_equal(rg_repair_restore(r, json, f, b.d, b.idx, 256), RG_ERR_FORMAT);
    assert_non_null(strstr(rg_last_error(), "healthy weights"));
    rg_tensor_file_free(f);
    free(json);
    free(kept);
    test_dir_remove();
    rg_repair_free(r);
    release(&b);
}

/* A dense layer with more inputs than its batch has samples keeps the samples its input
 * moment came from (the trust region's exact figure comes from them, more cheaply), and
 * they travel in a checkpoint, so that a resumed run takes the same figure; samples that do
 * not fit the moment are refused, more than the batch holds left out. */
static void test_input_rows_travel_in_checkpoints(void **state) {
    (void)state;
    built b;
    log_capture c = {0};
    build(&b, "mlp:depth=6,width=32,act=sigmoid,init=torch", 8); /* 16 and 32 inputs, 8 samples */
    rg_repair *r = rg_repair_create(&b.m, b.mon, capture, &c);
    assert_int_equal(rg_repair_probe(r, b.d, b.idx, 256), RG_OK);
    assert_true(rg_repair_caps_updates(r));
    int n, f;
    const float *rows = rg_monitor_input_rows(b.mon, 0, &n), *mu;
    const float *mm = rg_monitor_input_moment(b.mon, 0, &mu, &f);
    assert_non_null(rows), assert_non_null(mm);
    assert_int_equal(n, 8);
    for (int a = 0; a < f; a++) /* the moment is theirs */
        for (int k = 0; k < f; k++) {
            double want = 0;
            for (int s = 0; s < n; s++) want += (double)rows[s * f + a] * rows[s * f + k] / n;
            if (!(fabs(mm[a * f + k] - want) <= 1e-5 * (1 + fabs(want)))) fail_msg("moment %d,%d", a, k);
        }
    float *kept = malloc((size_t)n * f * sizeof *kept), *moment = malloc((size_t)f * f * sizeof *moment), mean[64];
    memcpy(kept, rows, (size_t)n * f * sizeof *kept), memcpy(moment, mm, (size_t)f * f * sizeof *moment);
    memcpy(mean, mu, (size_t)f * sizeof *mean);
    char *json = rg_repair_state_json(r);
    rg_tensor_file *file = gra_saved_and_loaded(r, "rows.safetensors");
    rg_repair_free(r);
    assert_int_equal(rg_monitor_set_input_moment(b.mon, 0, moment, mean, f), RG_OK); /* samples gone */
    assert_null(rg_monitor_input_rows(b.mon, 0, &n));
    r = rg_repair_create(&b.m, b.mon, capture, &c);
    assert_int_equal(rg_repair_restore(r, json, file, b.d, b.idx, 256), RG_OK);
    rows = rg_monitor_input_rows(b.mon, 0, &n);
    assert_non_null(rows);
    assert_int_equal(n, 8);
    assert_memory_equal(rows, kept, (size_t)n * f * sizeof *kept);
    rg_tensor_file_free(file);
    /* samples of another width than the moment's: refused; more than this run's batch
     * holds (a resume with a smaller batch): left out, the figure from the moment */
    const char *layer = b.m.graph->nodes[rg_monitor_layer_node(b.mon, 0)].name;
    float *many = calloc((size_t)12 * f, sizeof *many);
    for (int k = 0; k < 2; k++) {
        const int shape[2] = {k ? 12 : 8, k ? f : f - 1};
        char name[RG_NAME_MAX + 32];
        rg_tensor_writer *w = rg_tensor_writer_create();
        snprintf(name, sizeof name, "gra.%s.input_moment", layer);
        assert_int_equal(rg_tensor_writer_add(w, name, moment, 2, (int[]){f, f}), RG_OK);
        snprintf(name, sizeof name, "gra.%s.input_mean", layer);
        assert_int_equal(rg_tensor_writer_add(w, name, mean, 1, &f), RG_OK);
        snprintf(name, sizeof name, "gra.%s.input_rows", layer);
        assert_int_equal(rg_tensor_writer_add(w, name, many, 2, shape), RG_OK);
        assert_int_equal(rg_tensor_writer_save(w, test_path("rows.safetensors")), RG_OK);
        rg_tensor_writer_free(w);
        assert_int_equal(rg_safetensors_load(test_path("rows.safetensors"), &file), RG_OK);
        rg_repair_free(r);
        r = rg_repair_create(&b.m, b.mon, capture, &c);
        assert_int_equal(rg_repair_restore(r, json, file, b.d, b.idx, 256), k ? RG_OK : RG_ERR_FORMAT);
        if (k) assert_null(rg_monitor_input_rows(b.mon, 0, &n));
        else assert_non_null(strstr(rg_last_error(), "corrupt"));
        rg_tensor_file_free(file);
    }
    free(many), free(kept), free(moment), free(json);
    test_dir_remove();
    rg_repair_free(r);
    release(&b);
}

/* A convolution that reads a sigmoid or a tanh (centred for it: a tanh's mean alone would
 * not call for it) steps in whitened coordinates: its gradient in centred coordinates times
 * P = sqrt(1 + d) (C + d m I)^(-1/2) (C its input's covariance, m C's mean eigenvalue,
 * d = 0.03, repair.c's WHITEN_DAMPING), the optimizer's step on that times P again on its
 * way back.  Plain SGD's step is then -lr (1 + d) (g - gb mu^T) (C + d m I)^(-1), found
 * here by solving with C + d m I
 * (Cholesky, in double), not with the eigenvectors P was made from; a step too small for
 * any cap to bind; within 0.1% of the layer's RMS step and the rounding of the optimizer's
 * step to the weights'.  Past 576 inputs, standardised coordinates: -lr (g - gb mu^T) / m.
 * A centred dense layer's step is the centred one,
 * -lr (g - gb mu^T). */
static void test_convolutions_step_whitened(void **state) {
    (void)state;
    const double damping = 0.03;
    const struct {
        const char *spec;
        bool conv, standardised; /* standardised: over 576 inputs, P = I / sqrt(m) */
    } cases[] = {{"plaincnn:depth=4,width=8,act=sigmoid,init=torch", true, false},
                 {"plaincnn:depth=4,width=8,act=tanh,init=torch", true, false}, /* centred for its whitening */
                 {"plaincnn:depth=8,width=72,act=tanh,init=torch", true, true},
                 {"mlp:depth=4,width=64,act=sigmoid,init=torch", false, false}};
    for (int k = 0; k < RG_COUNT_OF(cases); k++) {
        built b;
        log_capture c = {0};
        rg_repair *r = probed(&b, cases[k].spec, &c);
        int centred = -1; /* the first centred layer's monitor index */
        for (int e = 0; e < c.n && e < 16 && centred < 0; e++)
            if (!strcmp(c.action[e], "centre_inputs"))
                for (int i = 0; i < rg_monitor_layer_count(b.mon); i++)
                    if (!strcmp(rg_monitor_layer(b.mon, i)->name, c.layer[e])) centred = i;
        assert_true(centred >= 0);
        rg_graph *g = b.m.graph;
        const rg_node_impl *n = NULL;
        for (int i = 0; i < g->n_nodes; i++)
            if (!strcmp(g->nodes[i].name, rg_monitor_layer(b.mon, centred)->name)) n = &g->nodes[i];
        assert_non_null(n);
        assert_int_equal(n->op == RG_OP_CONV2D, cases[k].conv);
        const rg_param_impl *wp = &g->params[n->first_param], *bp = &g->params[n->first_param + 1];
        const float *mu;
        int f;
        const float *mm = rg_monitor_input_moment(b.mon, centred, &mu, &f);
        assert_non_null(mm);
        /* A = C + d m I and its Cholesky factor L (A = L L^T), for the conv; I for the dense */
        double *a = calloc((size_t)f * f, sizeof *a), trace = 0;
        assert_non_null(a);
        for (int i = 0; i < f; i++)
            for (int j = 0; j < f; j++)
                a[(size_t)i * f + j] = cases[k].conv ? (double)mm[(size_t)i * f + j] - (double)mu[i] * mu[j] : i == j;
        for (int i = 0; i < f; i++) trace += a[(size_t)i * f + i];
        const double m = trace / f;
        const double scale = cases[k].conv && !cases[k].standardised ? 1 + damping : 1;
        assert_true(!cases[k].conv || (m > 1e-4 && m < 1)); /* a sigmoid's or a tanh's outputs */
        assert_true(cases[k].standardised == (f > 576));
        for (int i = 0; cases[k].standardised && i < f; i++) /* A = m I */
            for (int j = 0; j < f; j++) a[(size_t)i * f + j] = i == j ? m : 0;
        if (cases[k].conv && !cases[k].standardised)
            for (int i = 0; i < f; i++) a[(size_t)i * f + i] += damping * m;
        for (int j = 0; j < f; j++) {
            for (int i = j; i < f; i++) {
                double v = a[(size_t)i * f + j];
                for (int q = 0; q < j; q++) v -= a[(size_t)i * f + q] * a[(size_t)j * f + q];
                if (i == j) assert_true(v > 0);
                a[(size_t)i * f + j] = i == j ? sqrt(v) : v / a[(size_t)j * f + j];
            }
        }
        observe(&b, 128, 1);
        const size_t size = wp->size;
        const int units = (int)(size / f);
        float *want = malloc(size * sizeof *want), *w0 = malloc(size * sizeof *w0);
        double *x = malloc((size_t)f * sizeof *x);
        assert_non_null(want), assert_non_null(w0), assert_non_null(x);
        const float lr = 1e-3f, *gw = g->grad_buf + wp->offset, *gb = g->grad_buf + bp->offset;
        float *w = g->param_buf + wp->offset;
        memcpy(w0, w, size * sizeof *w0);
        double rms = 0;
        for (int u = 0; u < units; u++) { /* x = A^-1 (g - gb mu^T) by L and L^T */
            for (int i = 0; i < f; i++) {
                double v = gw[(size_t)u * f + i] - (double)gb[u] * mu[i];
                for (int q = 0; q < i; q++) v -= a[(size_t)i * f + q] * x[q];
                x[i] = v / a[(size_t)i * f + i];
            }
            for (int i = f - 1; i >= 0; i--) {
                double v = x[i];
                for (int q = i + 1; q < f; q++) v -= a[(size_t)q * f + i] * x[q];
                x[i] = v / a[(size_t)i * f + i];
            }
            for (int i = 0; i < f; i++) {
                want[(size_t)u * f + i] = w0[(size_t)u * f + i] - (float)(lr * scale * x[i]);
                rms += lr * scale * x[i] * lr * scale * x[i] / (double)size;
            }
        }
        rms = sqrt(rms);
        const double stretch = cases[k].standardised ? 1 / sqrt(m)
                               : cases[k].conv ? sqrt((1 + damping) / (damping * m)) : 1; /* P's largest */
        rg_repair_before_update(r, NULL);
        for (size_t i = 0; i < g->param_floats; i++) g->param_buf[i] -= lr * g->grad_buf[i]; /* plain SGD */
        rg_repair_after_update(r, 3); /* a step the Newton guard does not measure */
        for (size_t i = 0; i < size; i++) {
            const float big = fmaxf(fabsf(w0[i]), fabsf(want[i]));
            const double ulp = nextafterf(big, INFINITY) - big; /* the optimizer's step is rounded to the weights' */
            if (!(fabs(w[i] - want[i]) <= 1e-3 * rms + 2 * ulp * stretch))
                fail_msg("%s: weight %zu (%.9g) moved by %.9g, not %.9g", cases[k].spec, i, w0[i], w[i] - w0[i], want[i] - w0[i]);
        }
        free(want), free(w0), free(x), free(a);
        rg_repair_free(r);
        release(&b);
    }
}

/* GRA's probe passes leave what a training pass would change besides the weights: batch
 * norm's running statistics and the dropout stream, so that a network it finds healthy
 * trains bit for bit as without it. */
static void test_probe_leaves_running_statistics(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=3,width=32,act=relu,init=he,bn=1,dropout=0.2", 128);
    rg_graph *g = b.m.graph;
    assert_true(g->state_floats > 0);
    float *before = malloc(g->state_floats * sizeof *before);
    assert_non_null(before);
    memcpy(before, g->state_buf, g->state_floats * sizeof *before);
    const uint64_t calls = g->dropout_calls;
    log_capture c = {0};
    rg_repair *r = rg_repair_create(&b.m, b.mon, capture, &c);
    assert_int_equal(rg_repair_probe(r, b.d, b.idx, 256), RG_OK);
    assert_int_equal(rg_repair_actions(r), 0);
    assert_memory_equal(before, g->state_buf, g->state_floats * sizeof *before);
    assert_true(g->dropout_calls == calls);
    free(before);
    rg_repair_free(r);
    release(&b);
}

/* Re-conditioning gives tanh units a spread of 0.75, but in a net so deep that the backward
 * gain across its layers (1.047 each at 0.75) would compound past 4, less: the spread whose
 * gain is 4^(1/depth) per layer, ~0.61 at depth 50 and ~0.47 at depth 100. */
static void test_deep_tanh_spread_bounded(void **state) {
    (void)state;
    const struct {
        const char *spec;
        double lo, hi;
    } cases[] = {{"mlp:depth=10,width=16,act=tanh,init=torch", 0.70, 0.80},
                 {"mlp:depth=50,width=16,act=tanh,init=torch", 0.55, 0.67},
                 {"mlp:depth=100,width=16,act=tanh,init=torch", 0.41, 0.53}};
    for (int k = 0; k < 3; k++) {
        built b;
        log_capture c = {0};
        rg_repair *r = probed(&b, cases[k].spec, &c);
        assert_true(rg_repair_actions(r) > 0);
        observe(&b, 128, 1);
        const int n = rg_monitor_layer_count(b.mon);
        for (int i = 1; i < n - 1; i++) {
            const double s = rg_monitor_layer(b.mon, i)->pre_std;
            if (s < cases[k].lo || s > cases[k].hi) fail_msg("%s layer %d: spread %g", cases[k].spec, i, s);
        }
        rg_repair_free(r);
        release(&b);
    }
}

/* A probe batch that fails (here a NaN weight under check_numerics) fails the probe with
 * its status, naming the layer, instead of re-conditioning from figures never measured. */
static void test_probe_reports_failed_passes(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=10,width=32,act=sigmoid,init=torch", 128);
    rg_graph_params(b.m.graph)[3] = NAN;
    rg_graph_check_numerics(b.m.graph, 1);
    rg_repair *r = rg_repair_create(&b.m, b.mon, NULL, NULL);
    assert_int_equal(rg_repair_probe(r, b.d, b.idx, 256), RG_ERR_NUMERIC);
    assert_non_null(strstr(rg_last_error(), "GRA's probe"));
    assert_non_null(strstr(rg_last_error(), "dense_1"));
    assert_int_equal(rg_repair_actions(r), 0);
    rg_repair_free(r);
    release(&b);
}

static void test_exploding_detected(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=3,width=32,act=relu,init=he", 64);
    /* The first layer's weights 10^4 too small: its gradient is unchanged, so next to its
     * weights it is 10^4 too large.  (Scaling the inputs would not do: in a relu net every
     * layer's gradient grows alike, and none stands out from the median.) */
    rg_param_info p;
    rg_graph_param(b.m.graph, 0, &p);
    for (size_t i = 0; i < p.size; i++) p.data[i] *= 1e-4f;
    observe(&b, 64, 1);
    assert_int_equal(rg_monitor_layer(b.mon, 0)->verdict, RG_EXPLODING);
    assert_non_null(strstr(rg_monitor_layer(b.mon, 0)->evidence, "median"));
    release(&b);
}

static void test_saturated_and_dead_detected(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=2,width=32,act=sigmoid,init=normal:3", 64);
    observe(&b, 64, 1);
    assert_true(count(&b, RG_SATURATED) >= 1);
    release(&b);
    build(&b, "mlp:depth=2,width=32,act=relu,init=he", 64);
    rg_param_info p;
    rg_graph_param(b.m.graph, 1, &p); /* dense_1.bias */
    for (size_t i = 0; i < p.size; i++) p.data[i] = -100;
    observe(&b, 64, 1);
    assert_int_equal(rg_monitor_layer(b.mon, 0)->verdict, RG_DEAD);
    release(&b);
}

static void test_per_step_repairs(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=2,width=16,act=relu,init=he", 64);
    log_capture c = {0};
    rg_repair *r = rg_repair_create(&b.m, b.mon, capture, &c);
    rg_graph *g = b.m.graph;
    float *grads = rg_graph_grads(g);
    const size_t n = rg_graph_param_floats(g);
    /* 40 ordinary steps: no action */
    for (long step = 0; step < 40; step++) {
        for (size_t i = 0; i < n; i++) grads[i] = 0.01f * (float)((i * 7 + (size_t)step) % 11) - 0.05f;
        assert_int_equal(rg_repair_gradients(r, step), 0);
    }
    assert_int_equal(c.n, 0);
    /* a spike 1000x in dense_2: scaled back into the band */
    rg_param_info p;
    rg_graph_param(g, 2, &p);
    for (size_t i = 0; i < n; i++) grads[i] = 0.01f * (float)((i * 7 + 40) % 11) - 0.05f;
    for (size_t i = 0; i < p.size; i++) p.grad[i] *= 1000;
    assert_int_equal(rg_repair_gradients(r, 40), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.action[0], "scale_grad");
    assert_string_equal(c.verdict[0], "exploding");
    assert_string_equal(c.layer[0], "dense_2");
    assert_true(c.factor[0] < 0.1);
    /* a non-finite gradient: the step is skipped and the layer named */
    grads[0] = NAN;
    assert_int_equal(rg_repair_gradients(r, 41), 1);
    assert_string_equal(c.action[1], "skip_step");
    assert_string_equal(c.layer[1], "dense_1");
    /* and a long run of them stops training */
    int last = 0;
    for (long step = 42; step < 80 && last >= 0; step++) last = rg_repair_gradients(r, step);
    assert_int_equal(last, -RG_ERR_NUMERIC);
    assert_non_null(strstr(rg_last_error(), "non-finite"));
    rg_repair_free(r);
    release(&b);
}

/* GRA on a healthy network takes no action and changes no weight. */
static void test_no_action_on_healthy(void **state) {
    (void)state;
    float *w[2];
    size_t n = 0;
    long actions[2] = {0, 0};
    for (int repair = 0; repair < 2; repair++) {
        rg_dataset *d = synthetic(600, 3, 9);
        rg_model m;
        assert_int_equal(rg_model_build("mlp:depth=3,width=32,act=relu,init=he", &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = 2}, &m), RG_OK);
        assert_int_equal(rg_graph_compile(m.graph, 32), RG_OK);
        rg_fit_config c = {.epochs = 3, .batch = 32, .seed = 1, .repair = repair,
                           .optim = rg_optim_defaults(RG_OPTIM_ADAM)};
        rg_schedule_parse("constant", &c.schedule);
        rg_fit_callbacks cb = {.on_repair = capture, .user = &(log_capture){0}};
        assert_int_equal(rg_fit(&m, d, &c, &cb), RG_OK);
        actions[repair] = ((log_capture *)cb.user)->n;
        n = rg_graph_param_floats(m.graph);
        w[repair] = malloc(n * sizeof(float));
        memcpy(w[repair], rg_graph_params(m.graph), n * sizeof(float));
        rg_model_free(&m);
        rg_dataset_free(d);
    }
    assert_int_equal(actions[1], 0);
    assert_memory_equal(w[0], w[1], n * sizeof(float));
    free(w[0]);
    free(w[1]);
}

/* The Newton guard's scale, from GRA's state. */
static double newton_scale_of(const rg_repair *r) {
    char *json = rg_repair_state_json(r), *at = strstr(json, "\"newton_scale\":");
    assert_non_null(at);
    const double scale = atof(at + 15);
    free(json);
    return scale;
}

/* Before its every-NEWTON_EVERY measurements, the Newton guard measures at steps 1, 2, 4 ...
 * the updates that have grown past the last one it measured (momentum builds its steps up
 * over the first ones): an update 3 times the gradient overshoots, and is measured at step
 * 1, after a short one at step 0, but not at step 3 (no power of 2), nor at steps 2 and 4
 * (no larger than the one measured at step 1), nor at step 64 (past NEWTON_EVERY). */
static void test_newton_guard_measures_a_grown_step(void **state) {
    (void)state;
    built b;
    log_capture c = {0};
    rg_repair *r = probed(&b, "mlp:depth=4,width=32,act=sigmoid,init=torch", &c);
    assert_true(rg_repair_caps_updates(r));
    rg_graph *g = b.m.graph;
    assert_int_equal(rg_dataset_batch(b.d, b.idx, 128, rg_graph_input_buffer(g, b.m.input), rg_graph_labels(g)), RG_OK);
    assert_int_equal(rg_graph_forward(g, 128, 1), RG_OK);
    assert_int_equal(rg_graph_backward(g, b.m.loss), RG_OK);
    const size_t n = g->param_floats;
    float *w0 = malloc(n * sizeof *w0), *grad = malloc(n * sizeof *grad);
    assert_non_null(w0), assert_non_null(grad);
    memcpy(w0, g->param_buf, n * sizeof *w0);
    memcpy(grad, g->grad_buf, n * sizeof *grad);
    /* steps of -size g from w0 in turn; the guard's scale after each */
    const struct { long step; float size; bool measured; } steps[] = {
        {0, 0.01f, true},  /* every NEWTON_EVERY steps: a short step, no overshoot */
        {3, 3.0f, false},  /* not a power of 2 */
        {1, 3.0f, true},   /* grown: measured, an overshoot */
        {2, 3.0f, false},  /* no larger than the last measured */
        {4, 2.0f, false},
        {64, 3.0f, false}, /* past NEWTON_EVERY */
    };
    double scale = 1;
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        memcpy(g->param_buf, w0, n * sizeof *w0);
        rg_repair_before_update(r, NULL);
        for (size_t i = 0; i < n; i++) g->param_buf[i] -= steps[k].size * grad[i];
        rg_repair_after_update(r, steps[k].step);
        const double now = newton_scale_of(r);
        if (steps[k].step == 0 && now != 1) fail_msg("step 0: a short step overshot (scale %g)", now);
        if (steps[k].step == 1 && !(now < 1)) fail_msg("step 1: the grown step was not measured (scale %g)", now);
        if (!steps[k].measured && now != scale) fail_msg("step %ld: measured (scale %g, was %g)", steps[k].step, now, scale);
        scale = now;
    }
    free(w0), free(grad);
    rg_repair_free(r);
    release(&b);
}

/* The curvature along a step: for plain gradient descent u = -lr g, the slope is
 * -lr |g|^2 and u^T G u is u . (G u) from the Gauss-Newton product at the starting
 * weights (the tangent pass against the R-backward); the weights the step left stay. */
static void test_step_curvature(void **state) {
    (void)state;
    built b;
    build(&b, "mlp:depth=3,width=16,act=tanh", 32);
    rg_graph *g = b.m.graph;
    float *x = rg_graph_input_buffer(g, b.m.input);
    assert_int_equal(rg_dataset_batch(b.d, b.idx, 32, x, rg_graph_labels(g)), RG_OK);
    const size_t n = rg_graph_param_floats(g);
    const float lr = 0.05f;
    float *w0 = malloc(n * sizeof *w0), *u = malloc(n * sizeof *u), *gu = malloc(n * sizeof *gu), *w1 = malloc(n * sizeof *w1);
    memcpy(w0, rg_graph_params(g), n * sizeof *w0);
    assert_int_equal(rg_graph_forward(g, 32, 1), RG_OK);
    assert_int_equal(rg_graph_backward(g, b.m.loss), RG_OK);
    double gg = 0;
    for (size_t i = 0; i < n; i++) u[i] = -lr * rg_graph_grads(g)[i], gg += (double)rg_graph_grads(g)[i] * rg_graph_grads(g)[i];
    assert_int_equal(rg_monitor_before_step(b.mon), RG_OK);
    for (size_t i = 0; i < n; i++) rg_graph_params(g)[i] = w0[i] + u[i];
    memcpy(w1, rg_graph_params(g), n * sizeof *w1);
    for (size_t i = 0; i < n; i++) u[i] = w1[i] - w0[i]; /* the step as float stored it */
    assert_int_equal(rg_monitor_measure_step(b.mon, b.m.loss, 32), RG_OK);
    assert_memory_equal(w1, rg_graph_params(g), n * sizeof *w1);
    double slope, curvature, ugu = 0;
    rg_monitor_step_curvature(b.mon, &slope, &curvature);
    memcpy(rg_graph_params(g), w0, n * sizeof *w0);
    assert_int_equal(rg_graph_curvature_product(g, b.m.loss, 32, 1, RG_CURVATURE_GAUSS_NEWTON, u, gu), RG_OK);
    for (size_t i = 0; i < n; i++) ugu += (double)u[i] * gu[i];
    if (!(fabs(slope + lr * gg) <= 1e-3 * lr * gg) || !(curvature > 0) || !(fabs(curvature - ugu) <= 1e-4 * ugu))
        fail_msg("slope %.8g (want %.8g), curvature %.8g (want %.8g)", slope, -lr * gg, curvature, ugu);
    free(w0), free(u), free(gu), free(w1);
    release(&b);
}

/* The Newton guard measures the proposed update on a batch of the probe set, not on the
 * step's batch that made it: the same update over two different step batches gives the
 * same scale, bit for bit (one between the floor and 1: an update 3 times the gradient;
 * measured on each step's batch, the two differ in the third digit), and the
 * step's inputs, labels and batch size are as they were afterwards, for what reads them
 * next (the report's curvature along the step). */
static void test_newton_guard_measures_on_a_probe_batch(void **state) {
    (void)state;
    double scale[2];
    float *params[2] = {NULL, NULL};
    size_t n = 0;
    for (int run = 0; run < 2; run++) {
        built b;
        log_capture c = {0};
        rg_repair *r = probed(&b, "mlp:depth=4,width=32,act=sigmoid,init=torch", &c);
        assert_true(rg_repair_caps_updates(r));
        rg_graph *g = b.m.graph;
        int idx[100], *labels = rg_graph_labels(g), kept_labels[100];
        for (int i = 0; i < 100; i++) idx[i] = 300 + 100 * run + i; /* outside the probe set */
        float *x = rg_graph_input_buffer(g, b.m.input), kept_x[100 * 16];
        assert_int_equal(rg_dataset_batch(b.d, idx, 100, x, labels), RG_OK);
        memcpy(kept_x, x, sizeof kept_x), memcpy(kept_labels, labels, sizeof kept_labels);
        assert_int_equal(rg_graph_forward(g, 100, 1), RG_OK);
        assert_int_equal(rg_graph_backward(g, b.m.loss), RG_OK);
        n = g->param_floats;
        float *u = malloc(n * sizeof *u);
        assert_non_null(u);
        if (!run) /* the update of the first run's gradient, for both runs */
            for (size_t i = 0; i < n; i++) u[i] = -3.0f * g->grad_buf[i];
        else
            memcpy(u, params[0] + n, n * sizeof *u);
        rg_repair_before_update(r, NULL);
        for (size_t i = 0; i < n; i++) g->param_buf[i] += u[i];
        rg_repair_after_update(r, 50);
        assert_memory_equal(x, kept_x, sizeof kept_x);
        assert_memory_equal(labels, kept_labels, sizeof kept_labels);
        assert_int_equal(g->batch, 100);
        scale[run] = newton_scale_of(r);
        assert_true(scale[run] < 1); /* it measured an overshoot */
        params[run] = malloc(2 * n * sizeof *params[run]);
        assert_non_null(params[run]);
        memcpy(params[run], g->param_buf, n * sizeof *params[run]);
        memcpy(params[run] + n, u, n * sizeof *u);
        free(u);
        rg_repair_free(r);
        release(&b);
    }
    assert_true(scale[0] == scale[1]); /* bit for bit */
    assert_memory_equal(params[0], params[1], n * sizeof *params[0]);
    free(params[0]), free(params[1]);
}

/* Curvature figures: behind batch norm (centred pre-activations) a sigmoid net's hidden
 * inputs (mean ~0.5) are ill-conditioned, a tanh net's (mean ~0) are not; every layer's Gauss-Newton block has a positive top
 * eigenvalue; nothing the network holds moves. */
static void test_curvature_figures(void **state) {
    (void)state;
    static const struct { const char *spec; bool ill; } nets[] = {
        {"mlp:depth=3,width=32,act=sigmoid,bn=1", true},
        {"mlp:depth=3,width=32,act=tanh,bn=1", false},
    };
    for (int k = 0; k < 2; k++) {
        built b;
        build(&b, nets[k].spec, 64);
        observe(&b, 64, 1);
        rg_graph *g = b.m.graph;
        const size_t n = rg_graph_param_floats(g);
        float *w = malloc(n * sizeof *w), *st = malloc(g->state_floats * sizeof *st);
        memcpy(w, rg_graph_params(g), n * sizeof *w);
        memcpy(st, g->state_buf, g->state_floats * sizeof *st);
        assert_int_equal(rg_monitor_measure_curvature(b.mon, b.m.loss, 64, 30), RG_OK);
        assert_memory_equal(w, rg_graph_params(g), n * sizeof *w);
        assert_memory_equal(st, g->state_buf, g->state_floats * sizeof *st);
        for (int i = 0; i < rg_monitor_layer_count(b.mon); i++) {
            const rg_layer_health *h = rg_monitor_layer(b.mon, i);
            if (!(h->gn_top > 0 && isfinite(h->gn_top) && h->input_cond >= 1))
                fail_msg("%s %s: GN top %g, input cond %g", nets[k].spec, h->name, h->gn_top, h->input_cond);
            if (i > 0 && h->ill_conditioned != nets[k].ill)
                fail_msg("%s %s: mean outlier %g", nets[k].spec, h->name, h->mean_outlier);
        }
        free(w), free(st);
        release(&b);
    }
}

/* Eigenvalues by rank of Q diag(1..n) Q^T, Q a Householder reflection: 1..n back. */
static void test_symmetric_eigenvalues(void **state) {
    (void)state;
    enum { N = 40 };
    float u[N], *m = malloc(N * N * sizeof *m);
    double uu = 0;
    for (int i = 0; i < N; i++) u[i] = (float)sin(1.0 + i), uu += (double)u[i] * u[i];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0; /* (Q D Q)[i][j] with Q = I - 2 u u^T / u.u */
            for (int k = 0; k < N; k++)
                s += ((i == k) - 2 * u[i] * u[k] / uu) * (k + 1) * ((k == j) - 2 * u[k] * u[j] / uu);
            m[i * N + j] = (float)s;
        }
    int ranks[N];
    double eig[N];
    for (int i = 0; i < N; i++) ranks[i] = i;
    assert_int_equal(rg_symmetric_eigenvalues(m, N, ranks, N, eig), 0);
    for (int i = 0; i < N; i++)
        if (!(fabs(eig[i] - (i + 1)) < 1e-4 * N)) fail_msg("eigenvalue %d: %.8g", i, eig[i]);
    free(m);
}

/* The whole decomposition of symmetric matrices: a random one, one with a repeated
 * eigenvalue (a projection plus the identity), one of rank 1, a diagonal one, 1 x 1 and
 * 2 x 2, and a convolution's input covariance as GRA measures it where four of five taps
 * read only padding (zero rows between those of a covariance of 12 samples of 30 values
 * near 0.5, in float: its reduction leaves rounding's residue of 1e-160 under the zero
 * rows, whose squares are denormal): A v_j = lambda_j v_j and V^T V = I within float
 * rounding of A's entries. */
static void padded_covariance(float *a, int n, const float *noise) {
    enum { SAMPLES = 12, TAPS = 30 };
    float x[SAMPLES][TAPS], mean[TAPS] = {0};
    for (int s = 0; s < SAMPLES; s++)
        for (int t = 0; t < TAPS; t++) x[s][t] = 0.5f + 0.1f * noise[s * TAPS + t], mean[t] += x[s][t] / SAMPLES;
    for (int i = 0; i < n * n; i++) a[i] = 0;
    for (int i = 0; i < TAPS; i++)
        for (int j = 0; j < TAPS; j++) {
            float moment = 0;
            for (int s = 0; s < SAMPLES; s++) moment += x[s][i] * x[s][j] / SAMPLES;
            a[(size_t)5 * i * n + 5 * j] = (float)((double)moment - (double)mean[i] * mean[j]);
        }
}

static void test_symmetric_eigen(void **state) {
    (void)state;
    rg_rng rng;
    rg_rng_seed(&rng, 7);
    static const struct { int n, kind; } cases[] = {{50, 0}, {48, 1}, {30, 2}, {20, 3}, {1, 0}, {2, 0}, {144, 0}, {150, 4}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int n = cases[c].n;
        float *a = malloc((size_t)n * n * sizeof *a), *x = malloc((size_t)n * n * sizeof *x);
        double *val = malloc((size_t)n * sizeof *val), *vec = malloc((size_t)n * n * sizeof *vec);
        for (int i = 0; i < n * n; i++) x[i] = rg_rng_normal(&rng);
        if (cases[c].kind == 4) padded_covariance(a, n, x);
        for (int i = 0; i < n && cases[c].kind != 4; i++)
            for (int j = 0; j < n; j++) {
                double s = 0; /* X X^T / n, or its first rows' outer products, or diagonal */
                const int k_end = cases[c].kind == 1 ? n / 3 : cases[c].kind == 2 ? 1 : n;
                for (int k = 0; k < k_end; k++) s += (double)x[i * n + k] * x[j * n + k];
                if (cases[c].kind == 1) s = s / n + (i == j); /* eigenvalue 1 repeated 2n/3 times */
                else if (cases[c].kind == 3) s = i == j ? (i % 5) + 0.5 : 0;
                else s /= n;
                a[i * n + j] = (float)s;
            }
        for (int i = 0; i < n; i++) /* exactly symmetric */
            for (int j = 0; j < i; j++) a[i * n + j] = a[j * n + i];
        assert_int_equal(rg_symmetric_eigen(a, n, val, vec), 0);
        double scale = 0;
        for (int i = 0; i < n * n; i++) scale = fmax(scale, fabs(a[i]));
        for (int j = 0; j < n; j++) {
            for (int i = 0; i < n; i++) {
                double av = 0;
                for (int k = 0; k < n; k++) av += a[i * n + k] * vec[j * n + k];
                if (!(fabs(av - val[j] * vec[j * n + i]) < 1e-9 * n * scale))
                    fail_msg("case %zu: (A v)[%d] of eigenvector %d: %.10g against %.10g", c, i, j, av,
                             val[j] * vec[j * n + i]);
            }
            for (int k = 0; k < n; k++) {
                double d = 0;
                for (int i = 0; i < n; i++) d += vec[j * n + i] * vec[k * n + i];
                if (!(fabs(d - (j == k)) < 1e-10 * n)) fail_msg("case %zu: v%d . v%d = %.3g", c, j, k, d);
            }
        }
        free(a), free(x), free(val), free(vec);
    }
}

/* The probe's equal singular values (the CPU backend's polar): for wide, tall, ill-conditioned and
 * near-orthogonal layers, the result is the polar factor times the RMS singular value:
 * its rows (or columns) orthogonal with that norm, and its product with the layer, W X^T
 * (or X^T W), symmetric and positive definite, as it is for the polar factor alone (a
 * singular direction whose sign flipped would give a negative eigenvalue).  A
 * rank-deficient layer is left as it was, with -1. */
static void test_polar_factor(void **state) {
    (void)state;
    static const struct { int rows, cols, kind; } cases[] = {
        {64, 64, 0}, {32, 100, 0}, {100, 32, 0}, {10, 128, 0}, {150, 200, 0}, {48, 48, 1}, {40, 40, 2}, {30, 30, 3}};
    rg_rng rng;
    rg_rng_seed(&rng, 3);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int rows = cases[c].rows, cols = cases[c].cols, kind = cases[c].kind;
        const bool wide = rows <= cols;
        const int k = wide ? rows : cols, n = wide ? cols : rows;
        float *w = malloc((size_t)rows * cols * sizeof *w), *x = malloc((size_t)rows * cols * sizeof *x);
        float *h = malloc((size_t)k * k * sizeof *h);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) { /* 1: columns scaled over three decades; 2: I + noise */
                float v = rg_rng_uniform(&rng) * 2 - 1;
                if (kind == 1) v *= (float)pow(10, -3.0 * j / (cols - 1));
                if (kind == 2) v = (i == j) + 0.01f * v;
                w[(size_t)i * cols + j] = v;
            }
        if (kind == 3) memset(w + 7 * cols, 0, (size_t)cols * sizeof *w); /* a dead unit: rank deficient */
        memcpy(x, w, (size_t)rows * cols * sizeof *x);
        const double moved = rg_cpu_backend.polar(x, rows, cols, 100, 1e-3, 1e10);
        if (kind == 3) {
            assert_true(moved == -1);
            assert_memory_equal(x, w, (size_t)rows * cols * sizeof *x);
        } else {
            double norm2 = 0;
            for (int i = 0; i < rows * cols; i++) norm2 += (double)w[i] * w[i];
            const double rms2 = norm2 / k, tol = 2e-3 * rms2;
            assert_true(moved >= 0 && moved < 2);
            double off = 0, asym = 0;
            for (int a = 0; a < k; a++) /* X X^T (wide) or X^T X against rms^2 I; H = W X^T or X^T W */
                for (int b = 0; b < k; b++) {
                    double xx = 0, wx = 0;
                    for (int t = 0; t < n; t++) {
                        const size_t ia = wide ? (size_t)a * cols + t : (size_t)t * cols + a;
                        const size_t ib = wide ? (size_t)b * cols + t : (size_t)t * cols + b;
                        xx += (double)x[ia] * x[ib], wx += (double)w[ia] * x[ib];
                    }
                    off += (xx - (a == b) * rms2) * (xx - (a == b) * rms2);
                    h[(size_t)a * k + b] = (float)wx;
                }
            for (int a = 0; a < k; a++)
                for (int b = 0; b < k; b++) asym = fmax(asym, fabs(h[(size_t)a * k + b] - h[(size_t)b * k + a]));
            if (!(sqrt(off) <= tol)) fail_msg("%dx%d: ||X X^T - rms^2 I|| = %.3g", rows, cols, sqrt(off));
            if (!(asym <= 1e-3 * sqrt(rms2 * norm2))) fail_msg("%dx%d: W X^T is not symmetric (%.3g)", rows, cols, asym);
            const int lowest = 0;
            double eig;
            assert_int_equal(rg_symmetric_eigenvalues(h, k, &lowest, 1, &eig), 0);
            if (!(eig > 0)) fail_msg("%dx%d: W X^T has eigenvalue %.3g", rows, cols, eig);
        }
        free(w), free(x), free(h);
    }
}

/* The trust region's two cheap bounds on a step's change of a layer's output are never
 * below the exact E||dW x + db||^2, which the samples give as the moment does (a random
 * step; a step of equal weights, which the
 * inputs' common factor makes large; one along the covariance's top direction) and are
 * exact for a bias-only step; the monitor's covariance split C = Q^T S Q + R has orthonormal rows Q and
 * reports a bound on the rest's norm that is close to it. */
static void test_trust_region_bound(void **state) {
    (void)state;
    enum { B = 200, F = 24, U = 6 };
    built b;
    build(&b, "mlp:depth=3,width=24,act=sigmoid", 64);
    rg_rng rng;
    rg_rng_seed(&rng, 17);
    float *x = malloc(B * F * sizeof *x), moment[F * F], mean[F] = {0}, w[U * F], w0[U * F], bias[U], b0[U];
    for (int n = 0; n < B; n++) { /* correlated features around a large mean, as a sigmoid's */
        const float common = rg_rng_normal(&rng);
        for (int k = 0; k < F; k++) x[n * F + k] = 0.5f + 0.2f * common + 0.1f * rg_rng_normal(&rng) * (1 + k % 3);
    }
    for (int i = 0; i < F; i++)
        for (int j = 0; j < F; j++) {
            double s = 0;
            for (int n = 0; n < B; n++) s += (double)x[n * F + i] * x[n * F + j];
            moment[i * F + j] = (float)(s / B);
        }
    for (int n = 0; n < B; n++)
        for (int k = 0; k < F; k++) mean[k] += x[n * F + k] / B;
    assert_int_equal(rg_monitor_set_input_moment(b.mon, 1, moment, mean, F), RG_OK);
    int k;
    const float *s;
    double rest, top, want = 0;
    const float *q = rg_monitor_input_covariance_split(b.mon, 1, &k, &s, &rest, &top);
    assert_non_null(q);
    assert_int_equal(k, 8);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double d = 0;
            for (int c = 0; c < F; c++) d += (double)q[i * F + c] * q[j * F + c];
            assert_true(fabs(d - (i == j)) < 1e-5);
        }
    double whole = 0; /* ||C||_F^2 */
    for (int a = 0; a < F; a++)
        for (int c = 0; c < F; c++) {
            double r = moment[a * F + c] - (double)mean[a] * mean[c];
            whole += r * r;
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) r -= (double)q[i * F + a] * s[i * 8 + j] * q[j * F + c];
            want += r * r;
        }
    /* the rest's norm, from above, and by no more than its floor of 4e-4 ||C||_F^2 */
    if (!(rest >= sqrt(want) && rest <= sqrt(want + 5e-4 * whole)))
        fail_msg("rest %.9g against ||C - Q^T S Q|| %.9g, ||C|| %.9g", rest, sqrt(want), sqrt(whole));
    for (int c = 0; c < F; c++) assert_true(q[k * F + c] == mean[c]); /* the mean's row after Q's */
    float dw[U * F], db[U], scratch[U * F], projections[U * 9];
    for (int kind = 0; kind < 4; kind++) { /* random; equal weights; along q's first row; bias only */
        for (int u = 0; u < U; u++) {
            b0[u] = rg_rng_normal(&rng), bias[u] = b0[u] + (kind == 0 ? 0.01f : kind == 3 ? 0.05f : 0) * rg_rng_normal(&rng);
            const float along = 0.01f * rg_rng_normal(&rng);
            for (int c = 0; c < F; c++) {
                w0[u * F + c] = rg_rng_normal(&rng);
                const float step = kind == 0 ? 0.01f * rg_rng_normal(&rng) : kind == 1 ? along : kind == 2 ? along * q[c] : 0;
                w[u * F + c] = w0[u * F + c] + step;
            }
        }
        for (int i = 0; i < U * F; i++) dw[i] = w[i] - w0[i];
        for (int u = 0; u < U; u++) db[u] = bias[u] - b0[u];
        double exact, from_rows;
        rg_cpu_backend.function_change(dw, db, U, F, moment, mean, scratch, &exact);
        exact /= U;
        float *products = malloc(B * U * sizeof *products); /* the same from the samples */
        rg_cpu_backend.function_change_rows(dw, db, U, F, x, B, products, &from_rows);
        from_rows = from_rows / B / U;
        free(products);
        if (!(fabs(from_rows - exact) <= 1e-5 * exact))
            fail_msg("step %d: from the moment %.9g, from the samples %.9g", kind, exact, from_rows);
        rg_bound_sums sums;
        rg_cpu_backend.function_change_bound(dw, db, U, F, q, k, projections, &sums);
        const double bound = rg_bound_from_sums(&sums, s, k, rest, U);
        if (!(exact <= bound * (1 + 1e-6)) || (kind == 3 && !(bound <= exact * (1 + 1e-5))))
            fail_msg("step %d: exact %.8g, bound %.8g", kind, exact, bound);
        /* the step taken with its rows' mean products and squares in one pass, in every
         * instruction set: the very dw, the sums, the same as the backend's for GRA, and a
         * coarse bound from them and the step's shift above the exact figure */
        for (int isa = RG_ISA_BASE; isa <= RG_ISA_AVX512; isa++) {
            if ((int)rg_cpu_isa_cap((rg_isa)isa) != isa) continue; /* the CPU has not got it */
            float taken[U * F], pm[U], gra_pm[U], gra_db[U];
            const double squares = rg_cpu_layer_step(taken, w, w0, U, F, mean, pm);
            assert_memory_equal(taken, dw, sizeof taken);
            double gra_squares, shift;
            const rg_gra_layer layer = {.w = w, .b = bias, .w0 = w0, .b0 = b0, .mean = mean, .pm = gra_pm,
                                        .db = gra_db, .units = U, .f = F, .squares = &gra_squares, .shift = &shift};
            rg_cpu_backend.layer_steps(&layer, 1);
            rg_cpu_backend.step_shifts(&layer, 1); /* the bias's step, and |pm + db|^2 */
            assert_true(gra_squares == squares);
            assert_memory_equal(gra_pm, pm, sizeof pm);
            assert_memory_equal(gra_db, db, sizeof db);
            double want_sq = 0;
            for (int u = 0; u < U; u++) {
                double p = 0, size = 0;
                for (int c = 0; c < F; c++) {
                    p += (double)dw[u * F + c] * mean[c], size += fabs((double)dw[u * F + c] * mean[c]);
                    want_sq += (double)dw[u * F + c] * dw[u * F + c];
                }
                assert_true(fabs(pm[u] - p) <= 1e-6 * size);
            }
            assert_true(fabs(squares - want_sq) <= 1e-6 * want_sq);
            const double coarse = (shift + top * squares) / U; /* GRA's trust region's first bound */
            if (!(exact <= coarse * (1 + 1e-6)) || (kind == 3 && !(coarse <= exact * (1 + 1e-5))))
                fail_msg("step %d, isa %d: exact %.8g, coarse bound %.8g", kind, isa, exact, coarse);
        }
        rg_cpu_isa_cap(RG_ISA_AVX512);
    }
    free(x);
    release(&b);
}

/* The sigmoid and tanh in vector lanes (kernels/cpu/act_math.c): within a unit in the last
 * place of the true value (taken in double), and nearly always the nearest float, over
 * sweeps of floats from 1e-30 to the limits, either sign; tanh odd; NaN through and the limits at the infinities; and the
 * same bits from every instruction set this CPU has, whatever the run's length and start
 * (the tails). */
static void test_sigmoid_tanh_lanes(void **state) {
    (void)state;
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x), *ys = malloc(N * sizeof *ys), *yt = malloc(N * sizeof *yt);
    float *again = malloc(N * sizeof *again);
    assert_non_null(x), assert_non_null(ys), assert_non_null(yt), assert_non_null(again);
    int n = 0;
    const float special[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, 88.0f, -88.0f, 104.0f, -104.0f,
                             1e30f, -1e30f, 3e38f, -3e38f, INFINITY, -INFINITY, NAN, 0.03f, -0.03f};
    for (size_t k = 0; k < sizeof special / sizeof *special; k++) x[n++] = special[k];
    for (float v = 1e-30f; v < 120.0f && n + 2 <= N; v *= 1.003f) x[n++] = v, x[n++] = -v;
    for (int k = 1; k <= 22000 && n + 2 <= N; k++) x[n++] = 0.005f * k, x[n++] = -0.005f * k;
    const rg_isa top = rg_cpu_isa();
    for (int isa = RG_ISA_BASE; isa <= (int)top; isa++) {
        rg_cpu_isa_cap((rg_isa)isa);
        rg_cpu_sigmoid_run(x, isa == RG_ISA_BASE ? ys : again, n);
        if (isa != RG_ISA_BASE) assert_memory_equal(ys, again, (size_t)n * sizeof *ys);
        rg_cpu_tanh_run(x, isa == RG_ISA_BASE ? yt : again, n);
        if (isa != RG_ISA_BASE) assert_memory_equal(yt, again, (size_t)n * sizeof *yt);
        for (int start = 0; start < 3; start++) /* runs of every length to 40: the tails */
            for (int len = 1; len <= 40; len++) {
                rg_cpu_sigmoid_run(x + 100 + start, again, len);
                assert_memory_equal(again, ys + 100 + start, (size_t)len * sizeof *again);
                rg_cpu_tanh_run(x + 100 + start, again, len);
                assert_memory_equal(again, yt + 100 + start, (size_t)len * sizeof *again);
            }
    }
    rg_cpu_isa_cap(top);
    int off_nearest = 0;
    for (int i = 0; i < n; i++) {
        const double d = x[i];
        if (isnan(x[i])) {
            assert_true(isnan(ys[i]) && isnan(yt[i]));
            continue;
        }
        const float want[2] = {(float)(1.0 / (1.0 + exp(-d))), (float)tanh(d)}, got[2] = {ys[i], yt[i]};
        for (int k = 0; k < 2; k++) {
            off_nearest += got[k] != want[k];
            if (!(got[k] == want[k] || got[k] == nextafterf(want[k], INFINITY) || got[k] == nextafterf(want[k], -INFINITY))) {
                print_message("%s(%.9g) = %.9g, true %.9g\n", k ? "tanh" : "sigmoid", d, got[k], want[k]);
                fail();
            }
        }
        assert_true(ys[i] >= 0.0f && ys[i] <= 1.0f && yt[i] >= -1.0f && yt[i] <= 1.0f);
        if (i >= 18 && i % 2) assert_true(yt[i] == -yt[i - 1]); /* the sweep's pairs v, -v */
    }
    assert_true(ys[13] == 1.0f && ys[14] == 0.0f && yt[13] == 1.0f && yt[14] == -1.0f); /* +-inf */
    print_message("%d of %d values off the nearest float\n", off_nearest, 2 * n);
    assert_true(off_nearest <= n / 10000); /* nearly always the nearest float */
    free(x), free(ys), free(yt), free(again);
}

/* A convolution's input moments, the trust region's metric (kernels/cpu/moments.c), against
 * their definition over the im2col columns in double: windows inside and around the
 * input, border rows and columns on both sides or none, dilation, a window wider than the
 * input, one-tap and strided convolutions (which take the columns). */
static void test_convolution_input_moments(void **state) {
    (void)state;
    static const rg_conv_geom geoms[] = {
        /* c, h, w, kh, kw, stride, dilation, pad_t, pad_l, oh, ow */
        {3, 7, 6, 3, 3, 1, 1, 1, 1, 7, 6, 0, 0},  /* same */
        {2, 6, 7, 3, 3, 1, 1, 0, 0, 4, 5, 0, 0},  /* valid: two border rows each side */
        {2, 9, 8, 5, 5, 1, 2, 4, 4, 9, 8, 0, 0},  /* dilated */
        {3, 5, 6, 3, 2, 1, 1, 0, 1, 5, 6, 0, 0},  /* padding on one side only */
        {2, 4, 5, 3, 3, 1, 1, 2, 2, 6, 7, 0, 0},  /* wider than same: no border */
        {2, 3, 3, 5, 5, 1, 1, 2, 2, 3, 3, 0, 0},  /* window wider than the input */
        {4, 5, 5, 1, 1, 1, 1, 0, 0, 5, 5, 0, 0},  /* one tap */
        {2, 8, 8, 3, 3, 2, 1, 1, 1, 4, 4, 0, 0},  /* strided: the columns */
    };
    rg_rng rng;
    rg_rng_seed(&rng, 5);
    for (size_t gi = 0; gi < sizeof geoms / sizeof *geoms; gi++) {
        const rg_conv_geom *q = &geoms[gi];
        enum { B = 3 };
        const int f = q->c * q->kh * q->kw, p = q->oh * q->ow;
        const size_t size = (size_t)q->c * q->h * q->w;
        float *x = malloc(B * size * sizeof *x), *cols = malloc((size_t)f * p * sizeof *cols);
        float *moment = malloc((size_t)f * f * sizeof *moment);
        float *mean = malloc((size_t)f * sizeof *mean);
        double *ref = calloc((size_t)f * f + f, sizeof *ref);
        assert_non_null(x), assert_non_null(cols), assert_non_null(moment);
        assert_non_null(mean), assert_non_null(ref);
        for (size_t i = 0; i < B * size; i++) x[i] = 0.5f + rg_rng_uniform(&rng) - 0.5f * rg_rng_uniform(&rng);
        for (int b = 0; b < B; b++) {
            rg_im2col(x + b * size, q, cols);
            for (int r = 0; r < f; r++)
                for (int o = 0; o < p; o++) {
                    const double v = cols[(size_t)r * p + o];
                    ref[(size_t)f * f + r] += v / (B * p);
                    for (int c = 0; c < f; c++) ref[(size_t)r * f + c] += v * cols[(size_t)c * p + o] / (B * p);
                }
        }
        rg_cpu_backend.input_moments(x, size, B, f, q, moment, mean, NULL);
        double top = 0;
        for (int i = 0; i < f * f; i++) top = fmax(top, fabs(ref[i]));
        for (int r = 0; r < f; r++) {
            assert_true(fabs(mean[r] - ref[(size_t)f * f + r]) <= 1e-6);
            for (int c = 0; c < f; c++)
                if (!(fabs(moment[(size_t)r * f + c] - ref[(size_t)r * f + c]) <= 2e-6 * top)) {
                    print_message("geometry %zu: moment[%d][%d] %.9g, by definition %.9g\n", gi, r, c,
                                  moment[(size_t)r * f + c], ref[(size_t)r * f + c]);
                    fail();
                }
        }
        free(x), free(cols), free(moment), free(mean), free(ref);
    }
}

/* The Gram matrix (rg_sgram, the input moments' and the polar's product) against its
 * definition in double, for one block, a block and a column, and several (A^T A and A A^T,
 * with beta 0 and 1); exactly symmetric; the same bits on one thread and on two.  A dense
 * layer's input moments are the Gram matrix over the batch and the inputs' means. */
static void test_gram_matrix(void **state) {
    (void)state;
    static const int sizes[] = {1, 5, 128, 129, 300};
    rg_rng rng;
    rg_rng_seed(&rng, 9);
    const int threads = rg_get_threads();
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (int trans = 0; trans < 2; trans++)
            for (int beta = 0; beta < 2; beta++) {
                const int n = sizes[si], k = 37;
                float *a = malloc((size_t)n * k * sizeof *a), *c[2];
                double *ref = malloc((size_t)n * n * sizeof *ref);
                assert_non_null(a), assert_non_null(ref);
                for (int i = 0; i < n * k; i++) a[i] = rg_rng_uniform(&rng) - 0.25f;
                for (int t = 0; t < 2; t++) {
                    assert_non_null(c[t] = malloc((size_t)n * n * sizeof *c[t]));
                    for (int i = 0; i < n * n; i++) c[t][i] = (float)(i % 7) * 0.5f; /* symmetric or not: beta reads the upper */
                    rg_set_threads(t + 1);
                    rg_sgram(trans, n, k, 0.5f, a, trans ? n : k, (float)beta, c[t], n);
                }
                rg_set_threads(threads);
                assert_memory_equal(c[0], c[1], (size_t)n * n * sizeof *c[0]);
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++) {
                        double s = 0;
                        for (int t = 0; t < k; t++)
                            s += trans ? (double)a[(size_t)t * n + i] * a[(size_t)t * n + j]
                                       : (double)a[(size_t)i * k + t] * a[(size_t)j * k + t];
                        const int up = i <= j ? i * n + j : j * n + i;
                        ref[(size_t)i * n + j] = 0.5 * s + beta * (float)(up % 7) * 0.5;
                    }
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++) {
                        const float v = c[0][(size_t)i * n + j];
                        assert_true(memcmp(&v, &c[0][(size_t)j * n + i], sizeof v) == 0);
                        if (!(fabs(v - ref[(size_t)i * n + j]) <= 1e-5 * (1 + fabs(ref[(size_t)i * n + j]))))
                            fail_msg("n %d trans %d beta %d: [%d][%d] %.9g, by definition %.9g", n, trans, beta, i,
                                     j, v, ref[(size_t)i * n + j]);
                    }
                if (trans && !beta) { /* the same a as a batch of k samples of n inputs */
                    float *moment = malloc((size_t)n * n * sizeof *moment), *mean = malloc((size_t)n * sizeof *mean);
                    assert_non_null(moment), assert_non_null(mean);
                    rg_cpu_backend.input_moments(a, (size_t)n, k, n, NULL, moment, mean, NULL);
                    for (int i = 0; i < n; i++) {
                        double m = 0;
                        for (int t = 0; t < k; t++) m += a[(size_t)t * n + i];
                        assert_true(fabs(mean[i] - m / k) <= 1e-6);
                        for (int j = 0; j < n; j++)
                            assert_true(fabs(moment[(size_t)i * n + j] - 2 * c[0][(size_t)i * n + j] / k) <=
                                        1e-6 * (1 + fabs(moment[(size_t)i * n + j])));
                    }
                    free(moment), free(mean);
                }
                free(a), free(ref), free(c[0]), free(c[1]);
            }
}

/* A convolution's statistics, taken by the op as it writes each sample's output (with the
 * relu after it from the same pass), are the very figures of scanning the outputs after
 * the fact; so are a dense layer's with its relu folded in, also where the layer splits
 * its product across the threads by whole blocks of units.  Also with sigmoid after the
 * conv (the activation scans its own output). */
static void test_statistics_in_the_op_match_a_scan(void **state) {
    (void)state;
    static const char *const specs[] = {"plaincnn:depth=3,width=6,act=relu",
                                        "plaincnn:depth=2,width=5,act=sigmoid",
                                        "mlp:depth=2,width=20,act=relu",
                                        /* split across threads other than rg_sgemm splits it */
                                        "mlp:depth=3,width=200,act=relu"};
    for (int k = 0; k < 4; k++) {
        built b;
        build(&b, specs[k], 32);
        rg_layer_health in_op[8], scanned[8];
        const int n = rg_monitor_layer_count(b.mon);
        assert_true(n <= 8);
        observe(&b, 32, 1);
        for (int i = 0; i < n; i++) in_op[i] = *rg_monitor_layer(b.mon, i);
        /* the same pass again, the ops told nothing: the hooks scan the outputs */
        rg_graph *g = b.m.graph;
        float *x = rg_graph_input_buffer(g, b.m.input);
        rg_dataset_batch(b.d, b.idx, 32, x, rg_graph_labels(g));
        rg_monitor_enable(b.mon, 1);
        bool any = false;
        for (int i = 0; i < g->n_nodes; i++) any |= g->nodes[i].stats != NULL, g->nodes[i].stats = NULL;
        assert_true(any); /* convolutions and dense layers take them */
        rg_graph_forward(g, 32, 1);
        rg_graph_backward(g, b.m.loss);
        rg_monitor_enable(b.mon, 0);
        rg_monitor_judge(b.mon);
        for (int i = 0; i < n; i++) scanned[i] = *rg_monitor_layer(b.mon, i);
        for (int i = 0; i < n; i++) {
            assert_true(in_op[i].pre_mean == scanned[i].pre_mean);
            assert_true(in_op[i].pre_std == scanned[i].pre_std);
            assert_true(in_op[i].act_mean == scanned[i].act_mean || (isnan(in_op[i].act_mean) && isnan(scanned[i].act_mean)));
            assert_true(in_op[i].act_std == scanned[i].act_std || (isnan(in_op[i].act_std) && isnan(scanned[i].act_std)));
            assert_true(in_op[i].dead == scanned[i].dead || (isnan(in_op[i].dead) && isnan(scanned[i].dead)));
            assert_true(in_op[i].saturated == scanned[i].saturated ||
                        (isnan(in_op[i].saturated) && isnan(scanned[i].saturated)));
        }
        release(&b);
    }
}

/* A watched step's figures are the same bits however they are taken: the monitor's own
 * passes and a copy of the weights (no optimizer given), the optimizer measuring the update,
 * the optimizer also summing the weights and gradients (judged after the step, or before
 * it, when the monitor takes the norms itself); for weights across several pieces. */
static void test_figures_the_same_whoever_takes_them(void **state) {
    (void)state;
    static const char *const specs[] = {"mlp:depth=2,width=700", "plaincnn:depth=3,width=40"};
    for (int k = 0; k < 2; k++) {
        rg_layer_health seen[4][8];
        int n = 0;
        for (int mode = 0; mode < 4; mode++) {
            built b;
            build(&b, specs[k], 32);
            rg_graph *g = b.m.graph;
            rg_optim_config c = rg_optim_defaults(RG_OPTIM_ADAM);
            rg_optim *o = rg_optim_create(&c, rg_graph_param_floats(g));
            n = rg_monitor_layer_count(b.mon);
            assert_true(n <= 8);
            assert_int_equal(rg_monitor_track_update(b.mon, 1, mode ? o : NULL, mode >= 2), RG_OK);
            float *x = rg_graph_input_buffer(g, b.m.input);
            rg_dataset_batch(b.d, b.idx, 32, x, rg_graph_labels(g));
            rg_monitor_enable(b.mon, 1);
            rg_graph_forward(g, 32, 1);
            rg_graph_backward(g, b.m.loss);
            rg_monitor_enable(b.mon, 0);
            if (mode == 3) rg_monitor_judge(b.mon); /* before the step: it sums them itself */
            rg_optim_step(o, rg_graph_params(g), rg_graph_grads(g), c.lr);
            rg_monitor_note_update(b.mon);
            rg_monitor_judge(b.mon);
            for (int i = 0; i < n; i++) seen[mode][i] = *rg_monitor_layer(b.mon, i);
            rg_optim_free(o);
            release(&b);
        }
        for (int mode = 1; mode < 4; mode++)
            for (int i = 0; i < n; i++) {
                const rg_layer_health *a = &seen[0][i], *h = &seen[mode][i];
                assert_true(h->grad_norm == a->grad_norm && h->weight_norm == a->weight_norm);
                assert_true(h->grad_ratio == a->grad_ratio && h->nonfinite == a->nonfinite);
                assert_true(h->update_ratio == a->update_ratio && h->update_ratio > 0);
                assert_int_equal(h->verdict, a->verdict);
            }
    }
}

/* The monitor's sums (kernels/cpu/stats.c) are the bits of a plain model of their lanes,
 * whichever instruction set rg_cpu_isa chose: CTest runs this file again under
 * REGRAD_MAX_ISA=AVX2 and =BASE.  Sizes with tails; values around 0 and the tanh bounds. */
static void test_statistics_kernels_match_their_lane_model(void **state) {
    (void)state;
    rg_rng rng;
    rg_rng_seed(&rng, 11);
    enum { ROWS = 37, STRIDE = 71, N = ROWS * STRIDE };
    float x[N], y[N];
    for (int i = 0; i < N; i++) {
        const float u = rg_rng_uniform(&rng);
        x[i] = u < 0.1f ? 0.995f : u < 0.2f ? -0.999f : 2.0f * u - 1.0f;
        y[i] = x[i] + 0.01f * (rg_rng_uniform(&rng) - 0.5f);
    }
    const rg_count_kind kinds[] = {RG_COUNT_NONE, RG_COUNT_POSITIVE, RG_COUNT_NEAR_BOUND, RG_COUNT_RELU_OF};
    for (int kind = 0; kind < 4; kind++) {
        const rg_count_kind want = kinds[kind];
        for (size_t n = 0; n < 100; n += 7) { /* one plane: 8 float lanes, the tail in double */
            float a[8] = {0}, a2[8] = {0}, r[8] = {0}, r2[8] = {0};
            long counted = 0;
            double u[4] = {0, 0, 0, 0};
            const size_t body = n / 8 * 8;
            for (size_t i = 0; i < n; i++) {
                const float v = x[i], pos = v > 0 ? v : 0;
                counted += want == RG_COUNT_NEAR_BOUND ? (v < -0.99f) | (v > 0.99f)
                                                       : want != RG_COUNT_NONE && v > 0;
                if (i < body) {
                    a[i % 8] += v, a2[i % 8] += v * v, r[i % 8] += pos, r2[i % 8] += pos * pos;
                } else {
                    u[0] += v, u[1] += (double)v * v, u[2] += pos, u[3] += (double)pos * pos;
                }
            }
            for (int k = 0; k < 8; k++) u[0] += a[k], u[1] += a2[k], u[2] += r[k], u[3] += r2[k];
            double t[4] = {0, 0, 0, 0};
            assert_int_equal(rg_plane_sums(x, n, want, -0.99f, 0.99f, t), counted);
            assert_true(t[0] == u[0] && t[1] == u[1]);
            if (want == RG_COUNT_RELU_OF) assert_true(t[2] == u[2] && t[3] == u[3]);
        }
        /* dense units: each over the rows in order, in float */
        for (int width = 1; width <= RG_UNIT_BLOCK; width += 9) { /* vectors and a tail */
            float s[RG_UNIT_BLOCK], s2[RG_UNIT_BLOCK], rs[RG_UNIT_BLOCK], rs2[RG_UNIT_BLOCK];
            int c[RG_UNIT_BLOCK];
            rg_unit_block_sums(x + 5, STRIDE, ROWS, width, want, -0.99f, 0.99f, s, s2, c, rs, rs2);
            for (int k = 0; k < width; k++) {
                float e = 0, e2 = 0, er = 0, er2 = 0;
                int ec = 0;
                for (int b = 0; b < ROWS; b++) {
                    const float v = x[5 + b * STRIDE + k], pos = v > 0 ? v : 0;
                    e += v, e2 += v * v, er += pos, er2 += pos * pos;
                    ec += want == RG_COUNT_NEAR_BOUND ? (v < -0.99f) | (v > 0.99f)
                                                      : want != RG_COUNT_NONE && v > 0;
                }
                assert_true(s[k] == e && s2[k] == e2);
                assert_int_equal(c[k], ec);
                if (want == RG_COUNT_RELU_OF) assert_true(rs[k] == er && rs2[k] == er2);
            }
        }
    }
    for (size_t n = 0; n < 300; n += 29) /* squares and distances: 64 float lanes, then double */
        for (int with_b = 0; with_b < 2; with_b++) {
            float lanes[64] = {0};
            double total = 0;
            for (size_t i = 0; i < n; i++) {
                const float d = x[i] - (with_b ? y[i] : 0.0f);
                if (i < n / 64 * 64) lanes[i % 64] += d * d;
                else total += ((double)x[i] - (with_b ? y[i] : 0.0f)) * ((double)x[i] - (with_b ? y[i] : 0.0f));
            }
            double part[8]; /* the lanes in double: 8 sums of every 8th, then in pairs */
            for (int j = 0; j < 8; j++) part[j] = lanes[j];
            for (int k = 8; k < 64; k += 8)
                for (int j = 0; j < 8; j++) part[j] += lanes[k + j];
            total += ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
            assert_true(rg_squares(x, with_b ? y : NULL, n) == total);
            /* both at once, with b's copy */
            float keep[300];
            double pair[2];
            rg_squares_pair(x, y, with_b ? keep : NULL, n, pair);
            assert_true(pair[0] == rg_squares(x, NULL, n) && pair[1] == rg_squares(y, NULL, n));
            if (with_b && n) assert_memory_equal(keep, y, n * sizeof *keep);
            /* an update's three sums from lanes taken in another pass (the optimizer's) */
            float three_lanes[3 * 64] = {0};
            for (size_t i = 0; i < n / 64 * 64; i++) {
                const float d = x[i] - y[i];
                three_lanes[i % 64] += d * d, three_lanes[64 + i % 64] += x[300 + i] * x[300 + i];
                three_lanes[128 + i % 64] += y[i] * y[i];
            }
            double three[3];
            rg_finish_update_squares(three_lanes, x, y, x + 300, n, three);
            assert_true(three[0] == rg_squares(x, y, n) && three[1] == rg_squares(x + 300, NULL, n) &&
                        three[2] == rg_squares(y, NULL, n));
        }
    /* beyond float squares' range: in double (a 1e-20 gradient is not 0; 1e20 is not Inf) */
    float tiny[100], huge[100];
    for (int i = 0; i < 100; i++) tiny[i] = 1e-20f, huge[i] = 1e20f;
    assert_true(fabs(rg_squares(tiny, NULL, 100) / 1e-38 - 1) < 1e-6);
    assert_true(fabs(rg_squares(huge, NULL, 100) / 1e42 - 1) < 1e-6);
    tiny[70] = NAN;
    assert_true(isnan(rg_squares(tiny, NULL, 100)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy_network_is_healthy),
        cmocka_unit_test(test_statistics_in_the_op_match_a_scan),
        cmocka_unit_test(test_statistics_kernels_match_their_lane_model),
        cmocka_unit_test(test_figures_the_same_whoever_takes_them),
        cmocka_unit_test(test_vanishing_detected_and_repaired),
        cmocka_unit_test(test_probe_reports_failed_passes),
        cmocka_unit_test(test_constant_unit_left_as_it_is),
        cmocka_unit_test(test_relu_reconditioned_as_a_whole),
        cmocka_unit_test(test_relu_dead_units_revived),
        cmocka_unit_test(test_healthy_network_watched_early),
        cmocka_unit_test(test_ill_at_an_early_check_goes_back),
        cmocka_unit_test(test_probe_leaves_running_statistics),
        cmocka_unit_test(test_convolutions_step_whitened),
        cmocka_unit_test(test_deep_tanh_spread_bounded),
        cmocka_unit_test(test_sigmoid_conv_taps_sum_to_zero),
        cmocka_unit_test(test_exploding_detected),
        cmocka_unit_test(test_saturated_and_dead_detected),
        cmocka_unit_test(test_per_step_repairs),
        cmocka_unit_test(test_no_action_on_healthy),
        cmocka_unit_test(test_curvature_figures),
        cmocka_unit_test(test_symmetric_eigenvalues),
        cmocka_unit_test(test_symmetric_eigen),
        cmocka_unit_test(test_polar_factor),
        cmocka_unit_test(test_input_rows_travel_in_checkpoints),
        cmocka_unit_test(test_trust_region_bound),
        cmocka_unit_test(test_convolution_input_moments),
        cmocka_unit_test(test_gram_matrix),
        cmocka_unit_test(test_sigmoid_tanh_lanes),
        cmocka_unit_test(test_step_curvature),
        cmocka_unit_test(test_newton_guard_measures_on_a_probe_batch),
        cmocka_unit_test(test_newton_guard_measures_a_grown_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_cuda.c — the CUDA backend's kernels against the CPU: each optimizer's 100 steps bit
 * for bit (weights and moments), the activations forward and backward (1e-5), the fixed-
 * order sum of squares (the same bits twice, 1e-13 of the exact sum), pieces' sums of
 * squares queued one call after another and brought by one flush, the element-wise
 * kernels' float4 and one-value paths, guard words after every device output, and the
 * device names.  Without a CUDA device it prints one line,
 * "SKIP: no CUDA device", and exits 77, which CTest counts as skipped.
 */
#include "test_util.h"

#include "internal.h"
#include "kernels/act_rules.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cuda/cuda.h"

#define GUARD 64
#define GUARD_VALUE 12345.678f

/* A device buffer of n zeros with GUARD guard floats after it. */
static float *device_zeros(size_t n) {
    float *d = rg_cuda_alloc(n + GUARD), guard[GUARD];
    assert_non_null(d);
    for (int i = 0; i < GUARD; i++) guard[i] = GUARD_VALUE;
    assert_int_equal(rg_cuda_upload(d + n, guard, GUARD), RG_OK);
    return d;
}

/* The same with n floats from host values. */
static float *device_copy(const float *host, size_t n) {
    float *d = device_zeros(n);
    assert_int_equal(rg_cuda_upload(d, host, n), RG_OK);
    return d;
}

/* The n floats back, the guard checked untouched. */
static void host_copy(float *host, const float *d, size_t n, const char *what) {
    float guard[GUARD];
    assert_int_equal(rg_cuda_download(host, d, n), RG_OK);
    assert_int_equal(rg_cuda_download(guard, d + n, GUARD), RG_OK);
    for (int i = 0; i < GUARD; i++)
        if (guard[i] != GUARD_VALUE) fail_msg("%s: a write past the end (guard %d)", what, i);
}

static void fill(float *x, size_t n, uint64_t *state, float lo, float hi) {
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = lo + (hi - lo) * (float)((*state >> 40) * 0x1p-24);
    }
}

static void optimizers_match_cpu_bitwise(void **state) {
    const size_t n = 10007; /* not a multiple of the CPU's blocks */
    float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g), *back = malloc(n * sizeof *back);
    for (int kind = 0; kind < RG_OPTIM_COUNT; kind++)
        for (int variant = 0; variant < 2; variant++) {
            rg_optim_config c = rg_optim_defaults((rg_optim_kind)kind);
            if (variant) c.weight_decay = 0.01f, c.momentum = kind == RG_OPTIM_RMSPROP ? 0.9f : c.momentum;
            rg_optim *o = rg_optim_create(&c, n);
            assert_non_null(o);
            uint64_t seed = 7 + (uint64_t)kind;
            fill(w, n, &seed, -1, 1);
            float *dw = device_copy(w, n), *dg = rg_cuda_alloc(n), *dm[2] = {NULL, NULL};
            for (int k = 0; k < rg_optim_moment_count(&c); k++) dm[k] = rg_cuda_alloc(n + GUARD);
            for (int step = 0; step < 100; step++) {
                fill(g, n, &seed, -0.5f, 0.5f);
                assert_int_equal(rg_cuda_upload(dg, g, n), RG_OK);
                const float lr = c.lr * (1.0f - 0.005f * (float)step); /* a schedule */
                const step_consts k = rg_optim_consts(o, lr);
                rg_cuda_optim_update((rg_optim_kind)kind, &k, n, dw, dg, dm[0], dm[1]);
                rg_optim_step(o, w, g, lr);
            }
            char what[64];
            snprintf(what, sizeof what, "%s variant %d weights", rg_optim_name((rg_optim_kind)kind), variant);
            host_copy(back, dw, n, what);
            if (memcmp(back, w, n * sizeof *w) != 0) fail_msg("%s differ from the CPU's", what);
            for (int k = 0; k < rg_optim_moment_count(&c); k++) {
                assert_int_equal(rg_cuda_download(back, dm[k], n), RG_OK);
                if (memcmp(back, rg_optim_moment(o, k, NULL), n * sizeof *w) != 0)
                    fail_msg("%s: moment %d differs from the CPU's", what, k);
                rg_cuda_release(dm[k]);
            }
            rg_cuda_release(dw), rg_cuda_release(dg);
            rg_optim_free(o);
        }
    free(w), free(g), free(back);
}

static void activations_match_cpu(void **state) {
    const size_t n = 4099;
    float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy), *dx0 = malloc(n * sizeof *dx0);
    float *y = malloc(n * sizeof *y), *dx = malloc(n * sizeof *dx), *want = malloc(n * sizeof *want);
    uint64_t seed = 3;
    fill(x, n, &seed, -25, 25); /* past softplus' threshold, both ways */
    fill(x, 200, &seed, -1e-3f, 1e-3f);
    fill(dy, n, &seed, -1, 1);
    fill(dx0, n, &seed, -1, 1);
    for (int a = 0; a < RG_ACT_COUNT; a++) {
        const rg_act act = (rg_act)a;
        float *d_x = device_copy(x, n), *d_y = device_copy(x, n), *d_dy = device_copy(dy, n);
        float *d_dx = device_copy(dx0, n);
        rg_cuda_activation_forward(act, d_x, d_y, n);
        host_copy(y, d_y, n, rg_act_name(act));
        for (size_t i = 0; i < n; i++) want[i] = act_f(act, x[i]);
        assert_close(rg_act_name(act), y, want, n, 1e-5, 1e-6);
        rg_cuda_activation_backward(act, d_x, d_y, d_dy, d_dx, n, false);
        host_copy(dx, d_dx, n, rg_act_name(act));
        for (size_t i = 0; i < n; i++) want[i] = dx0[i] + act_dx(act, x[i], act_f(act, x[i]), dy[i]);
        assert_close(rg_act_name(act), dx, want, n, 1e-5, 1e-6);
        rg_cuda_release(d_x), rg_cuda_release(d_y), rg_cuda_release(d_dy), rg_cuda_release(d_dx);
    }
    free(x), free(dy), free(dx0), free(y), free(dx), free(want);
}

static void sum_of_squares_in_fixed_order(void **state) {
    const size_t n = 3000017;
    float *x = malloc(n * sizeof *x);
    uint64_t seed = 11;
    fill(x, n, &seed, -2, 2);
    /* the reference in long double: a plain double sum of 3M terms drifts by ~1e-12 of the
     * total, where the device's order (~46 terms a thread, a tree of 8, 256 blocks) is
     * bounded by ~300 roundings, 3e-14 */
    long double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (long double)x[i] * x[i];
    const double exact = (double)sum;
    float *d = device_copy(x, n);
    const double a = rg_cuda_sum_squares(d, n), b = rg_cuda_sum_squares(d, n);
    assert_memory_equal(&a, &b, sizeof a);
    if (fabs(a - exact) > 1e-13 * exact) fail_msg("sum %.17g, exact %.17g", a, exact);
    rg_cuda_release(d);
    free(x);
}

/* Pieces' sums of squares queued one call after another (the monitor's: a watched pass's
 * gradients, weights and step), each with its own pieces in the staging they share, one
 * large enough to make it grow mid-queue, and two buffers' sums apart (a layer's output and
 * input gradients) in the same queue: every sum once rg_cuda_sums_flush has brought them,
 * within 1e-12 of the exact one, skipped pieces left as they were. */
static void queued_piece_squares_arrive(void **state) {
    enum { N = 50000, CALLS = 4 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    uint64_t seed = 5;
    fill(a, N, &seed, -2, 2), fill(b, N, &seed, -2, 2);
    float *da = device_copy(a, N), *db = device_copy(b, N);
    const size_t pieces[CALLS] = {3, 7, 400, 5}; /* the third outgrows the staging */
    size_t *at[CALLS], *len[CALLS];
    double *out[CALLS];
    for (int c = 0; c < CALLS; c++) {
        at[c] = malloc(pieces[c] * sizeof *at[c]), len[c] = malloc(pieces[c] * sizeof *len[c]);
        out[c] = malloc(pieces[c] * sizeof *out[c]);
        for (size_t p = 0; p < pieces[c]; p++) {
            at[c][p] = p % 5 == 3 ? SIZE_MAX : (p * 977 + (size_t)c * 131) % (N - 200);
            len[c][p] = 1 + (p * 37 + (size_t)c) % 199;
            out[c][p] = -1;
        }
        rg_cuda_chunk_squares(da, c % 2 ? db : NULL, at[c], len[c], pieces[c], out[c]);
    }
    double apart[2];
    rg_cuda_squares_apart(da, 4099, db + 1000, 37, &apart[0], &apart[1]);
    rg_cuda_sums_flush();
    for (int k = 0; k < 2; k++) {
        long double s = 0;
        for (size_t i = 0; i < (k ? 37 : 4099); i++) {
            const long double v = k ? b[1000 + i] : a[i];
            s += v * v;
        }
        if (!(fabs(apart[k] - (double)s) <= 1e-12 * (double)s))
            fail_msg("squares apart %d: %.17g, exact %.17g", k, apart[k], (double)s);
    }
    for (int c = 0; c < CALLS; c++) {
        for (size_t p = 0; p < pieces[c]; p++) {
            if (at[c][p] == SIZE_MAX) {
                assert_true(out[c][p] == -1);
                continue;
            }
            long double s = 0;
            for (size_t i = at[c][p]; i < at[c][p] + len[c][p]; i++) {
                const long double d = (long double)a[i] - (c % 2 ? b[i] : 0.0f);
                s += d * d;
            }
            if (!(fabs(out[c][p] - (double)s) <= 1e-12 * (double)s))
                fail_msg("call %d piece %zu: %.17g, exact %.17g", c, p, out[c][p], (double)s);
        }
        free(at[c]), free(len[c]), free(out[c]);
    }
    rg_cuda_release(da), rg_cuda_release(db);
    free(a), free(b);
}

/* A CPU graph input(in) -> dense(out), compiled for `batch`, with weights from `seed`. */
static rg_graph *cpu_dense(int batch, int in, int out, uint64_t *seed, rg_node *x, rg_node *y) {
    rg_graph *g = rg_graph_create(1);
    rg_graph_want_input_grads(g, 1);
    *x = rg_input(g, "x", 1, &in);
    *y = rg_dense(g, *x, out, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    assert_int_equal(rg_graph_compile(g, batch), RG_OK);
    fill(rg_param_data(g, &g->nodes[*y], 0), (size_t)out * in, seed, -1, 1);
    fill(rg_param_data(g, &g->nodes[*y], 1), (size_t)out, seed, -1, 1);
    fill(rg_graph_input_buffer(g, *x), (size_t)batch * in, seed, -1, 1);
    return g;
}

/* The dense layer's forward and backward (cuBLAS) against the CPU's op: products within
 * 1e-4, the bias gradient (the same sums in the same order) bit for bit; a second backward
 * adds (dx too, when not fresh). */
static void dense_case(int batch, int in, int out) {
    uint64_t seed = 5;
    rg_node x, y;
    rg_graph *g = cpu_dense(batch, in, out, &seed, &x, &y);
    rg_node_impl *n = &g->nodes[y];
    const size_t nx = (size_t)batch * in, ny = (size_t)batch * out, nw = (size_t)out * in;
    float *dy = malloc(ny * sizeof *dy), *back = malloc(2 * nx * sizeof *back + 2 * nw * sizeof *back);
    float *want_y = malloc(ny * sizeof *want_y);
    fill(dy, ny, &seed, -1, 1);
    assert_int_equal(rg_graph_forward(g, batch, true), RG_OK);
    memcpy(want_y, rg_node_output(g, y), ny * sizeof *want_y); /* backward may reuse it */
    assert_int_equal(rg_graph_backward_from(g, y, dy), RG_OK);
    const float *w = rg_param_data(g, n, 0), *b = rg_param_data(g, n, 1);
    float *d_x = device_copy(rg_graph_input_buffer(g, x), nx), *d_w = device_copy(w, nw);
    float *d_b = device_copy(b, (size_t)out), *d_y = device_copy(dy, ny), *d_dy = device_copy(dy, ny);
    float *d_dw = device_zeros(nw), *d_db = device_zeros((size_t)out), *d_dx = device_zeros(nx);
    assert_int_equal(rg_cuda_dense_forward(d_x, d_w, d_b, d_y, batch, in, out), RG_OK);
    host_copy(back, d_y, ny, "dense y");
    assert_close("dense y", back, want_y, ny, 1e-5, 1e-4);
    for (int pass = 1; pass <= 2; pass++) {
        assert_int_equal(rg_cuda_dense_backward(d_x, d_dy, d_w, d_dw, d_db, d_dx, pass == 1, batch, in, out),
                         RG_OK);
        const float *want[3] = {rg_param_grad(g, n, 0), rg_param_grad(g, n, 1), rg_node_grad(g, x)};
        float *d[3] = {d_dw, d_db, d_dx};
        const size_t len[3] = {nw, (size_t)out, nx};
        const char *what[3] = {"dense dW", "dense db", "dense dx"};
        for (int k = 0; k < 3; k++) {
            float *twice = back + nx + nw;
            host_copy(back, d[k], len[k], what[k]);
            for (size_t i = 0; i < len[k]; i++) twice[i] = pass * want[k][i];
            if (k == 1 && pass == 1 && memcmp(back, want[k], len[k] * sizeof *back) != 0)
                fail_msg("dense db: not the CPU's bits");
            assert_close(what[k], back, twice, len[k], 1e-5, 1e-4);
        }
    }
    float *all[] = {d_x, d_w, d_b, d_y, d_dy, d_dw, d_db, d_dx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) rg_cuda_release(all[i]);
    free(dy), free(back), free(want_y);
    rg_graph_free(g);
}

static void dense_matches_cpu(void **state) {
    if (rg_cuda_blas_ready() != RG_OK) fail_msg("%s", rg_last_error());
    dense_case(37, 129, 67); /* no size a multiple of a tile */
    dense_case(5, 3, 1100);  /* more units than the emulation's threads a launch: the bias gradient's stride */
}

/* Softmax cross-entropy, with and without label smoothing, against the CPU's op: the
 * probabilities and the loss within 1e-6, the logits' gradient within 1e-6. */
static void softmax_xent_matches_cpu(void **state) {
    const int batch = 33, k = 10;
    for (int smooth = 0; smooth < 2; smooth++) {
        const float s = smooth ? 0.1f : 0.0f;
        rg_graph *g = rg_graph_create(1);
        rg_graph_want_input_grads(g, 1);
        const rg_node z = rg_input(g, "z", 1, &k), loss = rg_softmax_cross_entropy(g, z, s);
        assert_int_equal(rg_graph_compile(g, batch), RG_OK);
        uint64_t seed = 9 + (uint64_t)smooth;
        fill(rg_graph_input_buffer(g, z), (size_t)batch * k, &seed, -5, 5);
        int *labels = rg_graph_labels(g);
        for (int b = 0; b < batch; b++) labels[b] = (int)(b * 7 % k);
        const float dloss = 1.5f;
        const size_t nz = (size_t)batch * k;
        float *want_p = malloc(nz * sizeof *want_p), want_loss;
        assert_int_equal(rg_graph_forward(g, batch, true), RG_OK);
        memcpy(want_p, g->nodes[loss].aux, nz * sizeof *want_p); /* backward may reuse them */
        want_loss = rg_node_output(g, loss)[0];
        assert_int_equal(rg_graph_backward_from(g, loss, &dloss), RG_OK);
        float *d_z = device_copy(rg_graph_input_buffer(g, z), nz), *d_p = device_zeros(nz);
        float *d_loss = device_zeros(1), *d_dloss = device_copy(&dloss, 1), *d_dz = device_zeros(nz);
        float *d_scratch = rg_cuda_alloc((size_t)batch * 2);
        int *d_labels = (int *)rg_cuda_alloc((size_t)batch); /* as many ints as floats */
        assert_int_equal(rg_cuda_upload((float *)d_labels, (const float *)labels, (size_t)batch), RG_OK); /* ints travel as floats */
        rg_cuda_softmax_xent_forward(d_z, d_labels, d_p, (double *)d_scratch, d_loss, batch, k, s);
        rg_cuda_softmax_xent_backward(d_p, d_labels, d_dloss, d_dz, batch, k, s);
        float *back = malloc(nz * sizeof *back), got_loss;
        host_copy(back, d_p, nz, "xent p");
        assert_close("xent p", back, want_p, nz, 1e-6, 1e-5);
        assert_int_equal(rg_cuda_download(&got_loss, d_loss, 1), RG_OK);
        assert_close("xent loss", &got_loss, &want_loss, 1, 1e-6, 1e-6);
        host_copy(back, d_dz, nz, "xent dz");
        assert_close("xent dz", back, rg_node_grad(g, z), nz, 1e-6, 1e-5);
        float *all[] = {d_z, d_p, d_loss, d_dloss, d_dz, d_scratch, (float *)d_labels};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) rg_cuda_release(all[i]);
        free(back), free(want_p);
        rg_graph_free(g);
    }
}

/* The passes give the CPU's bits; the counts and the first non-finite index are exact. */
static void passes_match_cpu(void **state) {
    const size_t n = 70001;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *want = malloc(n * sizeof *want);
    float *got = malloc(n * sizeof *got);
    uint64_t seed = 13;
    fill(a, n, &seed, -3, 3);
    fill(b, n, &seed, -3, 3);
    for (size_t i = 0; i < n; i += 7) b[i] = 0; /* zeros to count, a mask's */
    float *d_a = device_copy(a, n), *d_b = device_copy(b, n), *d_x = device_copy(a, n);
#define CHECK(what, device_call, cpu_call) \
    do { \
        assert_int_equal(rg_cuda_upload(d_x, a, n), RG_OK); \
        memcpy(want, a, n * sizeof *want); \
        device_call; \
        cpu_call; \
        host_copy(got, d_x, n, what); \
        if (memcmp(got, want, n * sizeof *got) != 0) fail_msg("%s: not the CPU's bits", what); \
    } while (0)
    CHECK("fill", rg_cuda_fill(d_x, n, 0.37f), rg_cpu_fill(want, n, 0.37f));
    CHECK("scale", rg_cuda_scale(d_x, n, 0.37f), rg_cpu_scale(want, n, 0.37f));
    CHECK("copy", rg_cuda_copy(d_x, d_b, n), rg_cpu_copy(want, b, n));
    CHECK("subtract", rg_cuda_subtract(d_x, d_a, d_b, n), rg_cpu_subtract(want, a, b, n));
    CHECK("step_along", rg_cuda_step_along(d_x, d_b, d_a, n, 0.37f), rg_cpu_step_along(want, b, a, n, 0.37f));
    CHECK("multiply", rg_cuda_multiply(d_x, d_b, n), rg_cpu_multiply(want, b, n));
    CHECK("clamp", rg_cuda_clamp(d_x, n, 1.5f), rg_cpu_clamp(want, n, 1.5f));
#undef CHECK
    assert_int_equal(rg_cuda_count_zeros(d_b, n), rg_cpu_count_zeros(b, n));
    assert_int_equal(rg_cuda_first_nonfinite(d_a, n), n);
    assert_int_equal(rg_cuda_count_nonfinite(d_a, n), 0);
    const float bad[2] = {NAN, INFINITY};
    assert_int_equal(rg_cuda_upload(d_a + 40000, bad, 1), RG_OK);
    assert_int_equal(rg_cuda_upload(d_a + 12345, bad + 1, 1), RG_OK);
    assert_int_equal(rg_cuda_first_nonfinite(d_a, n), 12345);
    assert_int_equal(rg_cuda_count_nonfinite(d_a, n), 2);
    rg_cuda_release(d_a), rg_cuda_release(d_b), rg_cuda_release(d_x);
    free(a), free(b), free(want), free(got);
}

/* The element-wise kernels' two paths, four values a thread (float4) and one: the add and
 * the gradient passed on to two inputs, on lengths that are and are not multiples of 4 and
 * on buffers that are and are not 16-byte aligned, give the host's sums; batch norm with
 * the running statistics, with and without its fused relu, over planes of 5 and 8 values,
 * gives y = x scale + shift as the host computes it. */
static void element_wise_paths_match_cpu(void **state) {
    const size_t most = 70001;
    const struct { size_t n, offset; } cases[] = {{70000, 0}, {70001, 0}, {70000, 1}, {3, 0}};
    float *a = malloc(most * sizeof *a), *b = malloc(most * sizeof *b), *want = malloc(most * sizeof *want);
    float *want1 = malloc(most * sizeof *want1), *got = malloc((most + 1) * sizeof *got);
    uint64_t seed = 21;
    fill(a, most, &seed, -3, 3);
    fill(b, most, &seed, -3, 3);
    float *d_a = device_zeros(most + 1), *d_b = device_zeros(most + 1), *d_y = device_zeros(most + 1);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const size_t n = cases[c].n, o = cases[c].offset;
        assert_int_equal(rg_cuda_upload(d_a + o, a, n), RG_OK);
        assert_int_equal(rg_cuda_upload(d_b + o, b, n), RG_OK);
        rg_cuda_add(d_y + o, d_a + o, d_b + o, n);
        for (size_t i = 0; i < n; i++) want[i] = a[i] + b[i];
        assert_int_equal(rg_cuda_download(got, d_y + o, n), RG_OK);
        if (memcmp(got, want, n * sizeof *got) != 0) fail_msg("add of %zu at offset %zu", n, o);
        for (int fresh = 0; fresh < 4; fresh++) { /* dx0 = a (+)= b, dx1 = y (+)= b */
            const bool f0 = fresh & 1, f1 = fresh & 2;
            assert_int_equal(rg_cuda_upload(d_a + o, a, n), RG_OK);
            assert_int_equal(rg_cuda_upload(d_y + o, b, n), RG_OK);
            rg_cuda_pass_on(d_a + o, f0, d_y + o, f1, d_b + o, n);
            for (size_t i = 0; i < n; i++) want[i] = f0 ? b[i] : a[i] + b[i], want1[i] = f1 ? b[i] : b[i] + b[i];
            assert_int_equal(rg_cuda_download(got, d_a + o, n), RG_OK);
            if (memcmp(got, want, n * sizeof *got) != 0) fail_msg("pass_on's first of %zu at offset %zu", n, o);
            assert_int_equal(rg_cuda_download(got, d_y + o, n), RG_OK);
            if (memcmp(got, want1, n * sizeof *got) != 0) fail_msg("pass_on's second of %zu at offset %zu", n, o);
        }
        host_copy(got, d_a, most + 1, "pass_on"); /* nothing written past the buffers */
        host_copy(got, d_y, most + 1, "add and pass_on");
    }
    const int batch = 4, C = 3;
    const float gamma[3] = {1.5f, -0.5f, 2.0f}, beta[3] = {0.1f, 0.2f, -0.3f}, rmean[3] = {0.3f, -0.2f, 0.05f},
                rvar[3] = {0.8f, 1.7f, 0.25f}, eps = 1e-5f;
    float *d_gamma = device_copy(gamma, C), *d_beta = device_copy(beta, C), *d_rmean = device_copy(rmean, C);
    float *d_rvar = device_copy(rvar, C), *d_aux = device_zeros(4 * (size_t)C);
    for (int hw = 5; hw <= 8; hw += 3)
        for (int relu = 0; relu < 2; relu++) {
            const size_t n = (size_t)batch * C * hw;
            assert_int_equal(rg_cuda_upload(d_a, a, n), RG_OK);
            const rg_cuda_norm_statistics p = {eps, 0.1f, d_gamma, d_beta, d_rmean, d_rvar, d_aux, false};
            rg_cuda_batch_norm_forward(d_a, d_y, batch, C, (size_t)hw, false, &p, relu);
            for (size_t i = 0; i < n; i++) {
                const int ch = (int)(i / (size_t)hw % C);
                const float scale = gamma[ch] * (1.0f / sqrtf(rvar[ch] + eps)), shift = beta[ch] - rmean[ch] * scale;
                const float v = a[i] * scale + shift;
                want[i] = relu && v < 0 ? 0.0f : v;
            }
            assert_int_equal(rg_cuda_download(got, d_y, n), RG_OK);
            assert_close("batch norm with the running statistics", got, want, n, 1e-6, 1e-6);
        }
    host_copy(got, d_y, most + 1, "batch norm");
    host_copy(got, d_aux, 4 * (size_t)C, "batch norm's aux");
    float *all[] = {d_a, d_b, d_y, d_gamma, d_beta, d_rmean, d_rvar, d_aux};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) rg_cuda_release(all[i]);
    free(a), free(b), free(want), free(want1), free(got);
}

static void device_names(void **state) {
    char desc[160];
    assert_int_equal(rg_device_check("cuda", desc, sizeof desc), RG_OK);
    assert_non_null(strstr(desc, "cuda:0 "));
    assert_int_equal(rg_device_check("cuda:4096", desc, sizeof desc), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "no such device"));
}

int main(void) {
    char desc[160];
    if (rg_cuda_probe(0, desc, sizeof desc) != RG_OK) {
        printf("SKIP: no CUDA device (%s)\n", rg_last_error());
        return 77;
    }
    printf("%s\n", desc);
    assert_int_equal(rg_cuda_use(0), RG_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_names),
        cmocka_unit_test(optimizers_match_cpu_bitwise),
        cmocka_unit_test(activations_match_cpu),
        cmocka_unit_test(sum_of_squares_in_fixed_order),
        cmocka_unit_test(queued_piece_squares_arrive),
        cmocka_unit_test(passes_match_cpu),
        cmocka_unit_test(element_wise_paths_match_cpu),
        cmocka_unit_test(dense_matches_cpu),
        cmocka_unit_test(softmax_xent_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

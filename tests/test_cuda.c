/*
 * test_cuda.c — the CUDA backend's kernels against the CPU: each optimizer's 100 steps bit
 * for bit (weights and moments), the activations forward and backward (1e-5), the fixed-
 * order sum of squares (the same bits twice, 1e-13 of the exact sum), guard words after
 * every device output, and the device names.  Without a CUDA device it prints one line,
 * "SKIP: no CUDA device", and exits 77, which CTest counts as skipped.
 */
#include "test_util.h"

#include "internal.h"
#include "kernels/act_rules.h"
#include "kernels/cuda/cuda.h"

#define GUARD 64
#define GUARD_VALUE 12345.678f

/* A device buffer of n floats from host values, with GUARD guard floats after it. */
static float *device_copy(const float *host, size_t n) {
    float *d = rg_cuda_alloc(n + GUARD), guard[GUARD];
    assert_non_null(d);
    for (int i = 0; i < GUARD; i++) guard[i] = GUARD_VALUE;
    assert_int_equal(rg_cuda_upload(d, host, n), RG_OK);
    assert_int_equal(rg_cuda_upload(d + n, guard, GUARD), RG_OK);
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
        rg_cuda_activation_backward(act, d_x, d_y, d_dy, d_dx, n);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

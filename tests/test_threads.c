/*
 * test_threads.c — what two threads may do at once: build, compile and run their own
 * graphs from the process's first kernel call on (the kernel switches are read then, by
 * whichever thread comes first).  Run under ThreadSanitizer by `make test-sanitize`, where
 * a race is a failure; in the plain build it checks that both threads get the same bits.
 */
#include "test_util.h"

#include <pthread.h>

typedef struct run {
    uint64_t hash; /* of the parameters after one step */
    rg_status status;
} run;

/* A small CNN whose 3x3 convolutions ask for the direct and Winograd kernels. */
static void *train_step(void *arg) {
    run *r = arg;
    rg_set_threads(1); /* OpenMP's teams are per thread, and ThreadSanitizer cannot see
                          libgomp's barriers: each thread here runs its kernels alone */
    rg_graph *g = rg_graph_create(3);
    rg_node x = rg_input(g, "x", 3, (int[]){8, 10, 10});
    rg_node h = rg_relu(g, rg_conv2d(g, x, 16, 3, NULL));
    h = rg_relu(g, rg_conv2d(g, h, 16, 3, NULL));
    rg_node loss = rg_softmax_cross_entropy(g, rg_dense(g, rg_global_avg_pool(g, h), 3,
                                                        RG_INIT(RG_INIT_GLOROT_UNIFORM)), 0);
    r->status = rg_graph_compile(g, 4);
    if (r->status == RG_OK) {
        rg_rng rng;
        rg_rng_seed(&rng, 1);
        float *in = rg_graph_input_buffer(g, x);
        for (int i = 0; i < 4 * 8 * 10 * 10; i++) in[i] = rg_rng_normal(&rng);
        for (int b = 0; b < 4; b++) rg_graph_labels(g)[b] = b % 3;
        if (!(r->status = rg_graph_forward(g, 4, 1))) r->status = rg_graph_backward(g, loss);
        float *w = rg_graph_params(g);
        const float *dw = rg_graph_grads(g);
        for (size_t i = 0; i < rg_graph_param_floats(g); i++) w[i] -= 0.1f * dw[i];
        r->hash = rg_graph_params_hash(g);
    }
    rg_graph_free(g);
    return NULL;
}

static void kernel_switches_first_read_by_two_threads(void **state) {
    (void)state;
    run runs[2] = {{0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, train_step, &runs[i]), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(runs[i].status, RG_OK);
    assert_true(runs[0].hash == runs[1].hash);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kernel_switches_first_read_by_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * curvature.c — second-order information on the public API: a 20-layer sigmoid MLP
 * (PyTorch's default initialisation) on one batch, the cost of a gradient, a Gauss-Newton
 * product G v and an exact Hessian product H v, and the top eigenvalue ("sharpness") of
 * the whole Hessian, and of the first and last layers' Gauss-Newton blocks (with vanishing
 * gradients the first layer's curvature vanishes too), by power iteration.
 *   Usage: curvature [SPEC] [BATCH] [ROUNDS]   (bench/bench_curvature.sh runs it beside PyTorch)
 */
#include <regrad.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "mlp:depth=20,width=128,act=sigmoid,init=torch";
    const int batch = argc > 2 ? atoi(argv[2]) : 128, rounds = argc > 3 ? atoi(argv[3]) : 5;
    rg_model m;
    if (batch < 1 || rounds < 1 || rg_model_build(spec, &(rg_model_opts){.classes = 10, .seed = 1}, &m) != RG_OK ||
        rg_graph_compile(m.graph, batch) != RG_OK) {
        fprintf(stderr, "curvature: %s\n", batch < 1 || rounds < 1 ? "BATCH and ROUNDS must be positive" : rg_last_error());
        return 1;
    }
    rg_graph *g = m.graph;
    rg_rng r;
    rg_rng_seed(&r, 2);
    float *x = rg_graph_input_buffer(g, m.input);
    for (size_t i = 0; i < (size_t)batch * rg_node_size(g, m.input); i++) x[i] = rg_rng_uniform(&r);
    for (int b = 0; b < batch; b++) rg_graph_labels(g)[b] = b % 10;
    const size_t n = rg_graph_param_floats(g);
    float *v = malloc(n * sizeof *v), *out = malloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++) v[i] = rg_rng_normal(&r);

    /* the median of `rounds` timings of each: a gradient, G v, H v */
    double ms[3][64];
    rg_status s = RG_OK;
    for (int k = 0; k < rounds && k < 64 && !s; k++) {
        double t = now();
        if (!(s = rg_graph_forward(g, batch, 1))) s = rg_graph_backward(g, m.loss);
        ms[0][k] = 1e3 * (now() - t), t = now();
        if (!s) s = rg_graph_curvature_product(g, m.loss, batch, 1, RG_CURVATURE_GAUSS_NEWTON, v, out);
        ms[1][k] = 1e3 * (now() - t), t = now();
        if (!s) s = rg_graph_curvature_product(g, m.loss, batch, 1, RG_CURVATURE_HESSIAN, v, out);
        ms[2][k] = 1e3 * (now() - t);
    }
    double sharp = 0, first = 0, last = 0;
    rg_param_info p, q; /* the first parameter's layer and the last one's */
    if (!s) s = rg_graph_param(g, 0, &p);
    if (!s) s = rg_graph_param(g, rg_graph_param_count(g) - 1, &q);
    if (!s) s = rg_graph_top_curvature(g, m.loss, batch, 1, RG_CURVATURE_HESSIAN, RG_NONE, 50, 1e-4, &sharp);
    if (!s) s = rg_graph_top_curvature(g, m.loss, batch, 1, RG_CURVATURE_GAUSS_NEWTON, p.node, 50, 1e-4, &first);
    if (!s) s = rg_graph_top_curvature(g, m.loss, batch, 1, RG_CURVATURE_GAUSS_NEWTON, q.node, 50, 1e-4, &last);
    if (s) {
        fprintf(stderr, "curvature: %s\n", rg_last_error());
        return 1;
    }
    const int k = rounds < 64 ? rounds : 64;
    for (int a = 0; a < 3; a++) /* insertion sort for the median */
        for (int i = 1; i < k; i++)
            for (int j = i; j > 0 && ms[a][j - 1] > ms[a][j]; j--) {
                const double t = ms[a][j];
                ms[a][j] = ms[a][j - 1], ms[a][j - 1] = t;
            }
    printf("%s, batch %d: gradient %.2f ms, G v %.2f ms, H v %.2f ms (median of %d)\n", spec, batch,
           ms[0][k / 2], ms[1][k / 2], ms[2][k / 2], k);
    printf("top eigenvalue of H %.6g; of the Gauss-Newton block of %s %.6g, of %s %.6g\n", sharp,
           rg_node_name(g, p.node), first, rg_node_name(g, q.node), last);
    free(v), free(out);
    rg_model_free(&m);
    return 0;
}

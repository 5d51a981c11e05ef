/*
 * health_monitor.c — watching gradients: a 12-layer sigmoid MLP with PyTorch's default
 * initialisation (whose gradients vanish), the health monitor attached, one forward and
 * backward pass, and each layer's verdict with its evidence.
 */
#include <regrad.h>
#include <stdio.h>

int main(void) {
    rg_model m;
    if (rg_model_build("mlp:depth=12,width=64,act=sigmoid,init=torch", &(rg_model_opts){.c = 1, .h = 28, .w = 28, .classes = 10, .seed = 3}, &m) != RG_OK ||
        rg_graph_compile(m.graph, 64) != RG_OK) {
        fprintf(stderr, "health_monitor: %s\n", rg_last_error());
        return 1;
    }
    rg_monitor *mon = rg_monitor_create(m.graph);
    rg_rng r;
    rg_rng_seed(&r, 2);
    float *x = rg_graph_input_buffer(m.graph, m.input);
    for (int i = 0; i < 64 * 784; i++) x[i] = rg_rng_uniform(&r);
    for (int b = 0; b < 64; b++) rg_graph_labels(m.graph)[b] = b % 10;
    rg_monitor_enable(mon, 1);
    if (rg_graph_forward(m.graph, 64, 1) != RG_OK || rg_graph_backward(m.graph, m.loss) != RG_OK) {
        fprintf(stderr, "health_monitor: %s\n", rg_last_error());
        return 1;
    }
    rg_monitor_enable(mon, 0);
    rg_monitor_judge(mon);
    printf("%-10s %-11s %12s  %s\n", "layer", "verdict", "grad norm", "evidence");
    for (int i = 0; i < rg_monitor_layer_count(mon); i++) {
        const rg_layer_health *h = rg_monitor_layer(mon, i);
        printf("%-10s %-11s %12.3g  %s\n", h->name, rg_verdict_name(h->verdict), h->grad_norm,
               h->evidence);
    }
    rg_monitor_free(mon);
    rg_model_free(&m);
    return 0;
}

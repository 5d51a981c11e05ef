/*
 * resnet_block.c — the graph builder by hand: a pre-activation residual block (batch norm,
 * ReLU, 3x3 convolution, twice, plus the identity), one training step on random data, and
 * the gradient every parameter received.
 */
#include <math.h>
#include <regrad.h>
#include <stdio.h>

int main(void) {
    rg_graph *g = rg_graph_create(7);
    rg_node x = rg_input(g, "input", 3, (int[]){16, 8, 8});
    rg_node h = rg_relu(g, rg_batch_norm(g, x, 0.1f, 1e-5f));
    h = rg_conv2d(g, h, 16, 3, NULL); /* 3x3, same padding, He init */
    h = rg_relu(g, rg_batch_norm(g, h, 0.1f, 1e-5f));
    h = rg_conv2d(g, h, 16, 3, NULL);
    rg_node out = rg_add(g, x, h); /* the skip connection */
    rg_node logits = rg_dense(g, rg_global_avg_pool(g, out), 4, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    rg_node loss = rg_softmax_cross_entropy(g, logits, 0.0f);
    if (rg_graph_compile(g, 8) != RG_OK) {
        fprintf(stderr, "resnet_block: %s\n", rg_last_error());
        return 1;
    }
    rg_graph_summary(g, stdout);
    /* one step on random data */
    rg_rng r;
    rg_rng_seed(&r, 1);
    float *in = rg_graph_input_buffer(g, x);
    for (int i = 0; i < 8 * 16 * 8 * 8; i++) in[i] = rg_rng_normal(&r);
    for (int b = 0; b < 8; b++) rg_graph_labels(g)[b] = b % 4;
    if (rg_graph_forward(g, 8, 1) != RG_OK || rg_graph_backward(g, loss) != RG_OK) {
        fprintf(stderr, "resnet_block: %s\n", rg_last_error());
        return 1;
    }
    printf("loss %.4f\n", (double)rg_node_output(g, loss)[0]);
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        if (p.state) continue;
        double s = 0;
        for (size_t j = 0; j < p.size; j++) s += (double)p.grad[j] * p.grad[j];
        printf("  %-24s %6zu values  |grad| %.3g\n", p.name, p.size, sqrt(s));
    }
    rg_graph_free(g);
    return 0;
}

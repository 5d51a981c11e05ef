/*
 * activation.c — element-wise activations (relu, leaky_relu, elu, gelu, sigmoid, tanh,
 * softplus) and softmax over the last dimension.
 *
 * Each activation is a pair of scalar functions: f(x) and f'(x) given x and y = f(x).
 * Constants and edge cases follow PyTorch (leaky slope 0.01, elu alpha 1, exact gelu,
 * softplus linear above 20, relu'(0) = 0).
 */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const act_names[RG_ACT_COUNT] = {
    [RG_ACT_LINEAR] = "linear",   [RG_ACT_RELU] = "relu",       [RG_ACT_LEAKY_RELU] = "leaky_relu",
    [RG_ACT_ELU] = "elu",         [RG_ACT_GELU] = "gelu",       [RG_ACT_SIGMOID] = "sigmoid",
    [RG_ACT_TANH] = "tanh",       [RG_ACT_SOFTPLUS] = "softplus",
};

const char *const *rg_act_names(int *n) {
    *n = RG_ACT_COUNT;
    return act_names;
}

const char *rg_act_name(rg_act a) { return (a >= 0 && a < RG_ACT_COUNT) ? act_names[a] : "?"; }

rg_status rg_act_parse(const char *text, rg_act *out) {
    const int a = rg_name_index(act_names, RG_ACT_COUNT, text);
    if (a < 0) return rg_fail_unknown("activation", text, act_names, RG_ACT_COUNT);
    *out = (rg_act)a;
    return RG_OK;
}

static rg_status same_shape_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    n->ndim = x->ndim;
    memcpy(n->shape, x->shape, sizeof n->shape);
    return RG_OK;
}

const rg_op_def rg_op_activation_def = {
    .name = "activation", .min_inputs = 1, .max_inputs = 1,
    .infer = same_shape_infer,
    .backward_reads_output = true,
    .backward_reads_inputs = true,
    .fills_fresh_grads = true,
};

rg_node rg_activation(rg_graph *g, rg_node x, rg_act act) {
    if (act < 0 || act >= RG_ACT_COUNT)
        return rg_graph_error(g, RG_ERR_ARG, "activation: unknown kind %d", act);
    rg_act *a = malloc(sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    *a = act;
    rg_node n = rg_graph_add_node(g, RG_OP_ACTIVATION, &x, 1, a);
    if (n != RG_NONE) {
        /* Name it after the function ("relu_1"), counting only nodes of that function. */
        int k = 0;
        for (int i = 0; i <= n; i++)
            if (g->nodes[i].op == RG_OP_ACTIVATION && *(rg_act *)g->nodes[i].attr == act) k++;
        snprintf(g->nodes[n].name, sizeof g->nodes[n].name, "%s_%d", act_names[act], k);
    }
    return n;
}

rg_node rg_relu(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_RELU); }
rg_node rg_leaky_relu(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_LEAKY_RELU); }
rg_node rg_elu(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_ELU); }
rg_node rg_gelu(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_GELU); }
rg_node rg_sigmoid(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_SIGMOID); }
rg_node rg_tanh(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_TANH); }
rg_node rg_softplus(rg_graph *g, rg_node x) { return rg_activation(g, x, RG_ACT_SOFTPLUS); }

/* ---- softmax over the last dimension:  y = exp(x - max) / sum exp(x - max)
 *      dx = y * (dy - sum(dy * y)) */

const rg_op_def rg_op_softmax_def = {
    .name = "softmax", .min_inputs = 1, .max_inputs = 1,
    .infer = same_shape_infer,
    .backward_reads_output = true,
};

rg_node rg_softmax(rg_graph *g, rg_node x) { return rg_graph_add_node(g, RG_OP_SOFTMAX, &x, 1, NULL); }

/*
 * densenet.c — densely connected networks (Huang et al. 2017).
 *
 * densenet121: Keras's keras.applications.DenseNet121 exactly (names, structure, batch
 *   norm eps 1.001e-5, momentum 0.99 i.e. 0.01 here):
 *   zero pad 3 -> conv1/conv 7x7/2 (no bias) -> conv1/bn -> conv1/relu -> zero pad 1
 *   -> pool1 max 3/2 -> dense blocks of 6, 12, 24, 16 layers with transitions pool2..pool4
 *   between them -> bn -> relu [-> avg_pool -> predictions].
 *   A layer NAME (convK_blockI): NAME_0_bn/relu -> NAME_1_conv 1x1 4*growth (no bias)
 *   -> NAME_1_bn/relu -> NAME_2_conv 3x3 same growth (no bias) -> NAME_concat [x, new].
 *   A transition NAME (poolK): NAME_bn/relu -> NAME_conv 1x1 half the channels (no bias)
 *   -> NAME_pool average 2/2.
 * densenet:depth=D,growth=K: DenseNet-BC for small inputs: conv1/conv 3x3 2K -> three
 *   dense blocks of (D-4)/6 layers with two transitions -> bn -> relu -> avg_pool
 *   -> predictions; PyTorch's batch-norm defaults.
 */
#include "models.h"

#define KERAS_BN_MOMENTUM 0.01f
#define KERAS_BN_EPS 1.001e-5f

typedef struct dn_cfg {
    float momentum, eps;
    rg_init init;
} dn_cfg;

static rg_node bn_relu(rg_graph *g, rg_node x, const dn_cfg *c, const char *bn, const char *relu) {
    x = named(g, rg_batch_norm(g, x, c->momentum, c->eps), "%s", bn);
    return named(g, rg_relu(g, x), "%s", relu);
}

static rg_node conv(rg_graph *g, rg_node x, int filters, int k, const dn_cfg *c, const char *name) {
    return model_conv(g, x, filters, k, 1, RG_PAD_SAME, 0, false, c->init, name);
}

static rg_node dense_block(rg_graph *g, rg_node x, int layers, int growth, const dn_cfg *c,
                           const char *name, int *channels) {
    char a[96], b[96];
    for (int i = 1; i <= layers; i++) {
        snprintf(a, sizeof a, "%s_block%d_0_bn", name, i);
        snprintf(b, sizeof b, "%s_block%d_0_relu", name, i);
        rg_node h = bn_relu(g, x, c, a, b);
        snprintf(a, sizeof a, "%s_block%d_1_conv", name, i);
        h = conv(g, h, 4 * growth, 1, c, a);
        snprintf(a, sizeof a, "%s_block%d_1_bn", name, i);
        snprintf(b, sizeof b, "%s_block%d_1_relu", name, i);
        h = bn_relu(g, h, c, a, b);
        snprintf(a, sizeof a, "%s_block%d_2_conv", name, i);
        h = conv(g, h, growth, 3, c, a);
        x = named(g, rg_concat(g, 2, (rg_node[]){x, h}), "%s_block%d_concat", name, i);
        *channels += growth;
    }
    return x;
}

static rg_node transition(rg_graph *g, rg_node x, const dn_cfg *c, const char *name, int *channels) {
    char a[96], b[96];
    snprintf(a, sizeof a, "%s_bn", name);
    snprintf(b, sizeof b, "%s_relu", name);
    x = bn_relu(g, x, c, a, b);
    *channels /= 2;
    snprintf(a, sizeof a, "%s_conv", name);
    x = conv(g, x, *channels, 1, c, a);
    return named(g, rg_avg_pool2d(g, x, 2, 2, 0), "%s_pool", name);
}

static rg_node dn_head(rg_graph *g, rg_node x, const model_dims *d, const dn_cfg *c) {
    x = bn_relu(g, x, c, "bn", "relu");
    if (!d->top) return x;
    x = named(g, rg_global_avg_pool(g, x), "avg_pool");
    return named(g, rg_dense(g, x, d->classes, c->init), "predictions");
}

rg_status build_densenet121(spec_opts *o, const model_dims *d, rg_model *m) {
    dn_cfg c = {KERAS_BN_MOMENTUM, KERAS_BN_EPS, RG_INIT(RG_INIT_GLOROT_UNIFORM)};
    rg_status s;
    if ((s = spec_init_only(o, c.init, &c.init))) return s;
    rg_graph *g = m->graph;
    rg_node x = rg_zero_pad2d(g, model_input(m, d), 3, 3, 3, 3);
    x = model_conv(g, x, 64, 7, 2, RG_PAD_VALID, 0, false, c.init, "conv1/conv");
    x = bn_relu(g, x, &c, "conv1/bn", "conv1/relu");
    x = named(g, rg_max_pool2d(g, rg_zero_pad2d(g, x, 1, 1, 1, 1), 3, 2, 0), "pool1");
    static const int blocks[4] = {6, 12, 24, 16};
    int channels = 64;
    char name[16];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "conv%d", i + 2);
        x = dense_block(g, x, blocks[i], 32, &c, name, &channels);
        if (i < 3) {
            snprintf(name, sizeof name, "pool%d", i + 2);
            x = transition(g, x, &c, name, &channels);
        }
    }
    m->logits = dn_head(g, x, d, &c);
    return RG_OK;
}

rg_status build_densenet_small(spec_opts *o, const model_dims *d, rg_model *m) {
    dn_cfg c = {0.1f, 1e-5f, RG_INIT(RG_INIT_HE_NORMAL)};
    int depth, growth;
    rg_status s;
    if ((s = spec_int(o, "depth", 40, 10, 400, &depth)) ||
        (s = spec_int(o, "growth", 12, 1, 256, &growth)) || (s = spec_init(o, c.init, &c.init)) ||
        (s = spec_done(o, "depth, growth, init, classes, input, top")))
        return s;
    if ((depth - 4) % 6)
        return rg_fail(RG_ERR_ARG, "densenet depth=%d: depth - 4 must be a multiple of 6 "
                                   "(e.g. 22, 40, 100)", depth);
    const int layers = (depth - 4) / 6;
    rg_graph *g = m->graph;
    int channels = 2 * growth;
    rg_node x = conv(g, model_input(m, d), channels, 3, &c, "conv1/conv");
    char name[16];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "conv%d", i + 2);
        x = dense_block(g, x, layers, growth, &c, name, &channels);
        if (i < 2) {
            snprintf(name, sizeof name, "pool%d", i + 2);
            x = transition(g, x, &c, name, &channels);
        }
    }
    m->logits = dn_head(g, x, d, &c);
    return RG_OK;
}

/*
 * resnet.c — pre-activation residual networks (He et al. 2016, "Identity Mappings in Deep
 * Residual Networks") and their plain counterparts.
 *
 * CIFAR style (resnet20v2, resnet56v2; plain20, plain56 without the skip connections):
 *   conv1_conv 3x3/16 -> 3 stages (16, 32, 64 filters) of n basic blocks (n = 3 or 9;
 *   depth 6n+2) -> post_bn -> post_relu -> avg_pool -> predictions.  A basic block is
 *   BN-ReLU (preact) -> 3x3 conv -> BN-ReLU -> 3x3 conv, plus the shortcut: the input, or a
 *   1x1 projection of the pre-activation where the stage changes width or stride (the
 *   first block of stages 2 and 3, stride 2).  3x3 convolutions pad 1 on every side, as
 *   the PyTorch reference does.  Batch norm uses PyTorch's momentum 0.1, eps 1e-5.
 *
 * ImageNet style, Keras's keras.applications.resnet_v2 exactly for resnet50v2 and
 * resnet101v2 (names, structure, biases, batch-norm eps 1.001e-5 and momentum 0.99, i.e.
 * 0.01 here):
 *   conv1_pad -> conv1_conv 7x7/2 (bias) -> pool1_pad -> pool1_pool max 3/2
 *   -> stages conv2..conv5 of bottleneck blocks (64, 128, 256, 512 filters; 3-4-6-3 or
 *      3-4-23-3 blocks) -> post_bn -> post_relu [-> avg_pool -> predictions]
 *   Bottleneck block NAME: NAME_preact_bn/relu; shortcut NAME_0_conv 1x1 (bias, on the
 *   preact) in the first block of a stage, else the input, subsampled by a 1x1 max pool
 *   when the block strides; NAME_1_conv 1x1 (no bias) -> _1_bn/_1_relu -> _2_pad ->
 *   _2_conv 3x3 with the stride (no bias) -> _2_bn/_2_relu -> _3_conv 1x1 x4 (bias);
 *   NAME_out = shortcut + that.  The stride sits on the last block of conv2..conv4.
 * resnet18v2 uses basic blocks (2-2-2-2) in the same frame: _1_conv and _2_conv 3x3
 * after zero padding, the stride on the first block of conv3..conv5, whose shortcut is a
 * 1x1 projection _0_conv.
 */
#include "models.h"

#include <string.h>

#define KERAS_BN_MOMENTUM 0.01f /* Keras momentum 0.99 */
#define KERAS_BN_EPS 1.001e-5f
#define TORCH_BN_MOMENTUM 0.1f
#define TORCH_BN_EPS 1e-5f

static rg_node bn_relu(rg_graph *g, rg_node x, float momentum, float eps, const char *prefix) {
    x = named(g, rg_batch_norm(g, x, momentum, eps), "%s_bn", prefix);
    return named(g, rg_relu(g, x), "%s_relu", prefix);
}

/* The classifier head shared by every v2 network. */
static rg_node head(rg_graph *g, rg_node x, const model_dims *d, float momentum, float eps,
                    rg_init init) {
    x = bn_relu(g, x, momentum, eps, "post");
    if (!d->top) return x;
    x = named(g, rg_global_avg_pool(g, x), "avg_pool");
    return named(g, rg_dense(g, x, d->classes, init), "predictions");
}

rg_status build_resnet_cifar(spec_opts *o, const model_dims *d, rg_model *m) {
    const bool plain = strncmp(o->model, "plain", 5) == 0;
    const int depth = strstr(o->model, "56") ? 56 : 20, n = (depth - 2) / 6;
    rg_init init;
    rg_status s;
    if ((s = spec_init_only(o, RG_INIT(RG_INIT_HE_NORMAL), &init))) return s;
    rg_graph *g = m->graph;
    rg_node x = model_conv(g, model_input(m, d), 16, 3, 1, RG_PAD_EXPLICIT, 1, false, init, "conv1_conv");
    int channels = 16;
    char p[64], nm[96];
    for (int stage = 1; stage <= 3; stage++) {
        const int filters = 16 << (stage - 1);
        for (int b = 1; b <= n; b++) {
            const int stride = stage > 1 && b == 1 ? 2 : 1;
            snprintf(p, sizeof p, "stage%d_block%d", stage, b);
            snprintf(nm, sizeof nm, "%s_preact", p);
            rg_node pre = bn_relu(g, x, TORCH_BN_MOMENTUM, TORCH_BN_EPS, nm);
            rg_node shortcut = x;
            if (!plain && (stride > 1 || channels != filters)) {
                snprintf(nm, sizeof nm, "%s_0_conv", p);
                shortcut = model_conv(g, pre, filters, 1, stride, RG_PAD_VALID, 0, false, init, nm);
            }
            snprintf(nm, sizeof nm, "%s_1_conv", p);
            rg_node h = model_conv(g, pre, filters, 3, stride, RG_PAD_EXPLICIT, 1, false, init, nm);
            snprintf(nm, sizeof nm, "%s_1", p);
            h = bn_relu(g, h, TORCH_BN_MOMENTUM, TORCH_BN_EPS, nm);
            snprintf(nm, sizeof nm, "%s_2_conv", p);
            h = model_conv(g, h, filters, 3, 1, RG_PAD_EXPLICIT, 1, false, init, nm);
            x = plain ? h : named(g, rg_add(g, shortcut, h), "%s_out", p);
            channels = filters;
        }
    }
    m->logits = head(g, x, d, TORCH_BN_MOMENTUM, TORCH_BN_EPS, init);
    return RG_OK;
}

/* NAME_preact_bn/relu, and the shortcut: a 1x1 projection NAME_0_conv (bias) of the
 * pre-activation when `project`, else the input, subsampled by a 1x1 max pool when the
 * block strides.  Returns the pre-activation. */
static rg_node preact_and_shortcut(rg_graph *g, rg_node x, int out_filters, int stride,
                                   bool project, rg_init init, const char *p, rg_node *shortcut) {
    char nm[96];
    snprintf(nm, sizeof nm, "%s_preact", p);
    rg_node pre = bn_relu(g, x, KERAS_BN_MOMENTUM, KERAS_BN_EPS, nm);
    snprintf(nm, sizeof nm, "%s_0_conv", p);
    *shortcut = project ? model_conv(g, pre, out_filters, 1, stride, RG_PAD_VALID, 0, true, init, nm)
                : stride > 1 ? rg_max_pool2d(g, x, 1, stride, 0) : x;
    return pre;
}

/* Keras block2: the bottleneck block of ResNet50V2/101V2. */
static rg_node bottleneck(rg_graph *g, rg_node x, int filters, int stride, bool conv_shortcut,
                          rg_init init, const char *p) {
    char nm[96];
    rg_node shortcut;
    rg_node pre = preact_and_shortcut(g, x, 4 * filters, stride, conv_shortcut, init, p, &shortcut);
    snprintf(nm, sizeof nm, "%s_1_conv", p);
    rg_node h = model_conv(g, pre, filters, 1, 1, RG_PAD_VALID, 0, false, init, nm);
    snprintf(nm, sizeof nm, "%s_1", p);
    h = bn_relu(g, h, KERAS_BN_MOMENTUM, KERAS_BN_EPS, nm);
    h = named(g, rg_zero_pad2d(g, h, 1, 1, 1, 1), "%s_2_pad", p);
    snprintf(nm, sizeof nm, "%s_2_conv", p);
    h = model_conv(g, h, filters, 3, stride, RG_PAD_VALID, 0, false, init, nm);
    snprintf(nm, sizeof nm, "%s_2", p);
    h = bn_relu(g, h, KERAS_BN_MOMENTUM, KERAS_BN_EPS, nm);
    snprintf(nm, sizeof nm, "%s_3_conv", p);
    h = model_conv(g, h, 4 * filters, 1, 1, RG_PAD_VALID, 0, true, init, nm);
    return named(g, rg_add(g, shortcut, h), "%s_out", p);
}

/* The basic block of resnet18v2 in the same naming frame. */
static rg_node basic(rg_graph *g, rg_node x, int filters, int stride, bool project,
                     rg_init init, const char *p) {
    char nm[96];
    rg_node shortcut;
    rg_node pre = preact_and_shortcut(g, x, filters, stride, project, init, p, &shortcut);
    rg_node h = named(g, rg_zero_pad2d(g, pre, 1, 1, 1, 1), "%s_1_pad", p);
    snprintf(nm, sizeof nm, "%s_1_conv", p);
    h = model_conv(g, h, filters, 3, stride, RG_PAD_VALID, 0, false, init, nm);
    snprintf(nm, sizeof nm, "%s_1", p);
    h = bn_relu(g, h, KERAS_BN_MOMENTUM, KERAS_BN_EPS, nm);
    h = named(g, rg_zero_pad2d(g, h, 1, 1, 1, 1), "%s_2_pad", p);
    snprintf(nm, sizeof nm, "%s_2_conv", p);
    h = model_conv(g, h, filters, 3, 1, RG_PAD_VALID, 0, false, init, nm);
    return named(g, rg_add(g, shortcut, h), "%s_out", p);
}

rg_status build_resnet_imagenet(spec_opts *o, const model_dims *d, rg_model *m) {
    static const int blocks18[4] = {2, 2, 2, 2}, blocks50[4] = {3, 4, 6, 3},
                     blocks101[4] = {3, 4, 23, 3};
    const bool basic_blocks = strcmp(o->model, "resnet18v2") == 0;
    const int *blocks = basic_blocks ? blocks18
                        : strcmp(o->model, "resnet101v2") == 0 ? blocks101 : blocks50;
    rg_init init;
    rg_status s;
    /* Keras's default kernel initialiser is glorot_uniform. */
    if ((s = spec_init_only(o, RG_INIT(RG_INIT_GLOROT_UNIFORM), &init))) return s;
    rg_graph *g = m->graph;
    rg_node x = named(g, rg_zero_pad2d(g, model_input(m, d), 3, 3, 3, 3), "conv1_pad");
    x = model_conv(g, x, 64, 7, 2, RG_PAD_VALID, 0, true, init, "conv1_conv");
    x = named(g, rg_zero_pad2d(g, x, 1, 1, 1, 1), "pool1_pad");
    x = named(g, rg_max_pool2d(g, x, 3, 2, 0), "pool1_pool");
    char p[64];
    int channels = 64;
    for (int stage = 0; stage < 4; stage++) {
        const int filters = 64 << stage;
        for (int b = 1; b <= blocks[stage]; b++) {
            snprintf(p, sizeof p, "conv%d_block%d", stage + 2, b);
            if (basic_blocks) {
                const int stride = stage > 0 && b == 1 ? 2 : 1;
                x = basic(g, x, filters, stride, b == 1 && (stride > 1 || channels != filters), init, p);
                channels = filters;
            } else {
                /* Keras stack2: stride 2 on the last block, except in the last stage. */
                const int stride = b == blocks[stage] && stage < 3 ? 2 : 1;
                x = bottleneck(g, x, filters, stride, b == 1, init, p);
            }
        }
    }
    m->logits = head(g, x, d, KERAS_BN_MOMENTUM, KERAS_BN_EPS, init);
    return RG_OK;
}

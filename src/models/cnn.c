/*
 * cnn.c — small convolutional networks for 28x28-class inputs.
 *
 * cnn:      conv32 3x3 pad 1 -> relu -> maxpool 2 -> conv64 3x3 pad 1 -> relu -> maxpool 2
 *           -> flatten -> dense128 -> relu -> dense(classes): the reference small CNN.
 * plaincnn: depth x (conv 3x3 same, width filters [-> batch norm] -> act), no skip; the
 *           convolutions at depth/3 and 2*depth/3 have stride 2 so deep nets stay cheap;
 *           then global average pooling and a dense classifier.  The deep plain CNN of the
 *           vanishing-gradient experiments; bn=1 is its batch-norm remedy (the
 *           convolutions then without bias, which the norm's shift replaces).
 */
#include "models.h"

rg_status build_cnn(spec_opts *o, const model_dims *d, rg_model *m) {
    rg_init init;
    rg_status s;
    if ((s = spec_init_only(o, RG_INIT(RG_INIT_HE_NORMAL), &init))) return s;
    rg_graph *g = m->graph;
    rg_node x = model_conv(g, model_input(m, d), 32, 3, 1, RG_PAD_EXPLICIT, 1, true, init, NULL);
    x = rg_max_pool2d(g, rg_relu(g, x), 2, 2, 0);
    x = model_conv(g, x, 64, 3, 1, RG_PAD_EXPLICIT, 1, true, init, NULL);
    x = rg_max_pool2d(g, rg_relu(g, x), 2, 2, 0);
    x = rg_flatten(g, x);
    if (d->top) x = rg_dense(g, rg_relu(g, rg_dense(g, x, 128, init)), d->classes, init);
    m->logits = x;
    return RG_OK;
}

rg_status build_plaincnn(spec_opts *o, const model_dims *d, rg_model *m) {
    int depth, width, bn;
    rg_act act;
    rg_init init;
    rg_status s;
    if ((s = spec_int(o, "depth", 20, 1, 1000, &depth)) ||
        (s = spec_int(o, "width", 16, 1, 4096, &width)) || (s = spec_act(o, RG_ACT_RELU, &act)) ||
        (s = spec_init(o, RG_INIT(RG_INIT_HE_NORMAL), &init)) || (s = spec_int(o, "bn", 0, 0, 1, &bn)) ||
        (s = spec_done(o, "depth, width, act, init, bn, classes, input, top")))
        return s;
    rg_graph *g = m->graph;
    rg_node x = model_input(m, d);
    for (int i = 0; i < depth; i++) {
        const int stride = depth >= 3 && (i == depth / 3 || i == 2 * depth / 3) ? 2 : 1;
        x = model_conv(g, x, width, 3, stride, RG_PAD_SAME, 0, !bn, init, NULL);
        if (bn) x = rg_batch_norm(g, x, 0.1f, 1e-5f);
        x = rg_activation(g, x, act);
    }
    x = rg_global_avg_pool(g, x);
    m->logits = d->top ? rg_dense(g, x, d->classes, init) : x;
    return RG_OK;
}

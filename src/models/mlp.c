/*
 * mlp.c — multi-layer perceptrons:
 *   input -> flatten -> depth x (dense(width) [-> batch norm] -> act [-> dropout]
 *                                [+ the layer's input when residual=1 and widths match])
 *         -> dense(classes)
 * The classifier keeps the hidden layers' initialiser, as a plain PyTorch or Keras MLP does.
 */
#include "models.h"

rg_status build_mlp(spec_opts *o, const model_dims *d, rg_model *m) {
    int depth, width, bn, residual;
    float dropout;
    rg_act act;
    rg_init init;
    rg_status s;
    if ((s = spec_int(o, "depth", 2, 0, 1000, &depth)) ||
        (s = spec_int(o, "width", 256, 1, 1 << 16, &width)) ||
        (s = spec_float(o, "dropout", 0.0f, 0.0f, 1.0f, &dropout)) ||
        (s = spec_int(o, "bn", 0, 0, 1, &bn)) || (s = spec_int(o, "residual", 0, 0, 1, &residual)) ||
        (s = spec_act(o, RG_ACT_RELU, &act)) || (s = spec_init(o, RG_INIT(RG_INIT_HE_NORMAL), &init)) ||
        (s = spec_done(o, "depth, width, act, init, dropout, bn, residual, classes, input, top")))
        return s;
    rg_graph *g = m->graph;
    rg_node x = rg_flatten(g, model_input(m, d));
    int x_width = d->c * d->h * d->w;
    for (int i = 0; i < depth; i++) {
        rg_node h = rg_dense(g, x, width, init);
        if (bn) h = rg_batch_norm(g, h, 0.1f, 1e-5f);
        h = rg_activation(g, h, act);
        if (dropout > 0) h = rg_dropout(g, h, dropout);
        x = residual && x_width == width ? rg_add(g, x, h) : h;
        x_width = width;
    }
    m->logits = d->top ? rg_dense(g, x, d->classes, init) : x;
    return RG_OK;
}

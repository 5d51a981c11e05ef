/*
 * conv.c — 2-D convolution with stride, padding (same, valid, explicit), dilation and
 * groups: its geometry, parameters and builder (the window geometry is shared with the
 * pools).
 *
 *   x (B, C, H, W), W (O, C/G, K, K) OIHW, b (O), y (B, O, OH, OW)
 *   y_b[g] = W[g] · im2col(x_b)[g] + b
 *   dW[g] += dy_b[g] · col[g]^T,  db += sum dy_b,  dx_b += col2im(W[g]^T · dy_b[g])
 */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

rg_conv_opts rg_conv_defaults(void) {
    return (rg_conv_opts){.stride = 1, .dilation = 1, .groups = 1, .padding = RG_PAD_SAME,
                          .bias = 1, .init = RG_INIT(RG_INIT_HE_NORMAL)};
}

/* Output size and leading pad of one axis. */
static bool axis_geometry(int in, int k_eff, int stride, rg_padding mode, int pad, int *out,
                          int *lead) {
    if (mode == RG_PAD_SAME) {
        *out = (in + stride - 1) / stride;
        int total = (*out - 1) * stride + k_eff - in;
        *lead = total > 0 ? total / 2 : 0;
    } else {
        int p = mode == RG_PAD_EXPLICIT ? pad : 0;
        *lead = p;
        *out = in + 2 * p >= k_eff ? (in + 2 * p - k_eff) / stride + 1 : 0;
    }
    return *out >= 1;
}

/* Shared by conv and the pools: validates a (C, H, W) input and fills the geometry. */
rg_status rg_window_geometry(const rg_node_impl *x, int kernel, int stride, int dilation,
                             rg_padding mode, int pad, rg_conv_geom *g) {
    if (x->ndim != 3)
        return rg_fail(RG_ERR_SHAPE, "needs an input of shape (channels, height, width), got "
                                     "%d dimensions", x->ndim);
    memset(g, 0, sizeof *g);
    g->c = x->shape[0], g->h = x->shape[1], g->w = x->shape[2];
    g->kh = g->kw = kernel;
    g->stride = stride, g->dilation = dilation;
    int k_eff = (kernel - 1) * dilation + 1;
    if (!axis_geometry(g->h, k_eff, stride, mode, pad, &g->oh, &g->pad_t) ||
        !axis_geometry(g->w, k_eff, stride, mode, pad, &g->ow, &g->pad_l))
        return rg_fail(RG_ERR_SHAPE, "a %dx%d window (dilation %d) does not fit an input of "
                                     "%dx%d with padding %d: the input is too small for this "
                                     "network", kernel, kernel, dilation, g->h, g->w,
                       mode == RG_PAD_EXPLICIT ? pad : 0);
    return RG_OK;
}

static rg_status conv_infer(rg_graph *g, rg_node_impl *n) {
    conv_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    rg_status s = rg_window_geometry(x, a->kernel, a->o.stride, a->o.dilation, a->o.padding,
                                     a->o.pad, &a->geom);
    if (s) return s;
    const rg_conv_geom *q = &a->geom;
    const int groups = a->o.groups;
    if (q->c % groups || a->filters % groups)
        return rg_fail(RG_ERR_SHAPE, "groups=%d must divide the input channels (%d) and the "
                                     "filters (%d)", groups, q->c, a->filters);
    a->direct = a->kernel == 1 && a->o.stride == 1 && q->pad_t == 0 && q->pad_l == 0;
    n->ndim = 3;
    n->shape[0] = a->filters, n->shape[1] = q->oh, n->shape[2] = q->ow;
    const int cg = q->c / groups, k2 = a->kernel * a->kernel;
    a->fast_work = 0, n->workspace = 0; /* the backend's plan sizes them */
    n->flops = 2.0 * a->filters * q->oh * q->ow * (double)cg * k2;
    const int fan_in = cg * k2, fan_out = a->filters / groups * k2;
    if (rg_param_declare(g, n, "kernel", 4, (int[]){a->filters, cg, a->kernel, a->kernel},
                         a->o.init, fan_in, fan_out) < 0)
        return RG_ERR_MEMORY;
    if (a->o.bias) {
        rg_init bi = a->o.init.kind == RG_INIT_TORCH ? a->o.init : RG_INIT(RG_INIT_ZEROS);
        if (rg_param_declare(g, n, "bias", 1, (int[]){a->filters}, bi, fan_in, fan_out) < 0)
            return RG_ERR_MEMORY;
    }
    return RG_OK;
}

int rg_conv_channels(const rg_conv_geom *q) { return q->c; }

void rg_conv_pads(const rg_conv_geom *q, int pads[4]) {
    const int bottom = (q->oh - 1) * q->stride + (q->kh - 1) * q->dilation + 1 - q->h - q->pad_t;
    const int right = (q->ow - 1) * q->stride + (q->kw - 1) * q->dilation + 1 - q->w - q->pad_l;
    pads[0] = q->pad_t, pads[1] = q->pad_l, pads[2] = bottom > 0 ? bottom : 0, pads[3] = right > 0 ? right : 0;
}

const rg_conv_geom *rg_conv_geometry(const rg_node_impl *n, int *groups) {
    const conv_attr *a = n->attr;
    *groups = a->o.groups;
    return &a->geom;
}

/* Reads the unpadded input and pads in the im2col instead: saves the padded copy. */
static bool conv_absorb_padding(rg_node_impl *n, const int pad[4]) {
    conv_attr *a = n->attr;
    if (a->direct) return false; /* its workspace has no column buffer */
    a->geom.h -= pad[0] + pad[1];
    a->geom.w -= pad[2] + pad[3];
    a->geom.pad_t += pad[0];
    a->geom.pad_l += pad[2];
    a->geom.folded_t += pad[0];
    a->geom.folded_l += pad[2];
    /* the backend plans the workspace again for the unpadded geometry */
    return true;
}

const rg_op_def rg_op_conv2d_def = {
    .name = "conv2d", .min_inputs = 1, .max_inputs = 1,
    .infer = conv_infer,
    .absorb_padding = conv_absorb_padding,
    .backward_reads_inputs = true, .fills_fresh_grads = true,
};

rg_node rg_conv2d(rg_graph *g, rg_node x, int filters, int kernel, const rg_conv_opts *opts) {
    rg_conv_opts o = opts ? *opts : rg_conv_defaults();
    if (filters < 1 || kernel < 1 || o.stride < 1 || o.dilation < 1 || o.groups < 1 ||
        o.pad < 0 || o.padding < RG_PAD_SAME || o.padding > RG_PAD_EXPLICIT)
        return rg_graph_error(g, RG_ERR_ARG, "conv2d: filters %d, kernel %d, stride %d, "
                              "dilation %d, groups %d and pad %d must be positive (pad may be 0)",
                              filters, kernel, o.stride, o.dilation, o.groups, o.pad);
    if (o.init.kind < 0 || o.init.kind >= RG_INIT_COUNT)
        return rg_graph_error(g, RG_ERR_ARG, "conv2d: unknown initialiser %d", o.init.kind);
    conv_attr *a = calloc(1, sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->filters = filters;
    a->kernel = kernel;
    a->o = o;
    return rg_graph_add_node(g, RG_OP_CONV2D, &x, 1, a);
}

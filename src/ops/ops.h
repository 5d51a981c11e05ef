/*
 * ops.h — what each op keeps about itself (its attributes, n->attr), shared by its file in
 * src/ops/ (shapes, parameters, builders) and every backend that computes it.
 */
#ifndef RG_OPS_H
#define RG_OPS_H

#include "../internal.h"
#include "../kernels/kernels.h"

typedef struct dense_attr {
    int units;
    rg_init init;
} dense_attr;

typedef struct conv_attr {
    int filters, kernel;
    rg_conv_opts o;
    rg_conv_geom geom; /* filled by infer */
    bool direct;       /* 1x1, stride 1, no padding: skip im2col */
    size_t fast_work;  /* floats per thread for the CPU's direct kernels; 0: they do not apply */
    int slots;         /* threads the workspace has slices for */
} conv_attr;

typedef struct pool_attr {
    int kernel, stride, pad;
    bool zero_padded;  /* max pooling's padding cells are zeros, not -inf: the pad is a zero
                          padding before it, folded in (pool_absorb_padding) */
    rg_conv_geom geom;
} pool_attr;

/* The common 2x2, stride-2, unpadded pooling window, which needs no argmax kept. */
static inline bool rg_pool_is_2x2(const pool_attr *a) {
    return a->kernel == 2 && a->stride == 2 && a->pad == 0;
}

/* A 1x1 unpadded window (ResNet50V2's strided shortcuts): every output one input, no
 * argmax kept. */
static inline bool rg_pool_is_1x1(const pool_attr *a) {
    return a->kernel == 1 && a->pad == 0;
}

typedef struct bn_attr {
    float momentum, eps;
    bool last_train; /* mode of the last forward: backward follows it */
} bn_attr;

typedef struct dropout_attr {
    float rate;
    bool last_train; /* mode of the last forward: backward follows it */
} dropout_attr;

typedef struct xent_attr {
    float smoothing;
} xent_attr;

typedef struct wsum_attr {
    float w[RG_MAX_INPUTS];
} wsum_attr;

typedef struct pad_attr {
    int top, bottom, left, right; /* in this order: rg_zero_pad_amounts reads them as int[4] */
} pad_attr;

#endif

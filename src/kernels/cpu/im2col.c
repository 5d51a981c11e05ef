/*
 * im2col.c — unrolling convolution windows into columns (and back) so a convolution is one
 * matrix product: y (O, OH*OW) = W (O, C*KH*KW) · col (C*KH*KW, OH*OW).
 *
 * Each row of col is one (channel, tap) pair; for each output row the valid range of output
 * columns is computed once, so the inner loop has no bounds checks and, at stride 1, is a
 * straight copy.
 */
#include "../kernels.h"

#include <string.h>

/* Output columns ow whose input column ow*stride - pad_l + j*dilation lies in [0, w). */
static void valid_cols(const rg_conv_geom *g, int j, int *lo, int *hi) {
    int off = j * g->dilation - g->pad_l; /* iw = ow*stride + off */
    int a = off >= 0 ? 0 : (-off + g->stride - 1) / g->stride;
    int b = g->w - off <= 0 ? 0 : (g->w - off + g->stride - 1) / g->stride;
    if (b > g->ow) b = g->ow;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

void rg_im2col(const float *x, const rg_conv_geom *g, float *col) {
    const int ohw = g->oh * g->ow;
    for (int c = 0; c < g->c; c++)
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                float *row = col + ((size_t)(c * g->kh + i) * g->kw + j) * ohw;
                int lo, hi;
                valid_cols(g, j, &lo, &hi);
                const int off = j * g->dilation - g->pad_l;
                for (int oy = 0; oy < g->oh; oy++) {
                    float *dst = row + oy * g->ow;
                    const int iy = oy * g->stride - g->pad_t + i * g->dilation;
                    if (iy < 0 || iy >= g->h) {
                        memset(dst, 0, (size_t)g->ow * sizeof *dst);
                        continue;
                    }
                    const float *src = x + ((size_t)c * g->h + iy) * g->w; /* input row */
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0;
                    if (g->stride == 1 && hi > lo)
                        memcpy(dst + lo, src + lo + off, (size_t)(hi - lo) * sizeof *dst);
                    else
                        for (int ox = lo; ox < hi; ox++) dst[ox] = src[ox * g->stride + off];
                    for (int ox = hi; ox < g->ow; ox++) dst[ox] = 0;
                }
            }
}

void rg_col2im_add(const float *dcol, const rg_conv_geom *g, float *dx) {
    const int ohw = g->oh * g->ow;
    for (int c = 0; c < g->c; c++)
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                const float *row = dcol + ((size_t)(c * g->kh + i) * g->kw + j) * ohw;
                int lo, hi;
                valid_cols(g, j, &lo, &hi);
                const int off = j * g->dilation - g->pad_l;
                for (int oy = 0; oy < g->oh; oy++) {
                    const int iy = oy * g->stride - g->pad_t + i * g->dilation;
                    if (iy < 0 || iy >= g->h) continue;
                    const float *src = row + oy * g->ow;
                    float *dst = dx + ((size_t)c * g->h + iy) * g->w; /* input row */
                    for (int ox = lo; ox < hi; ox++) dst[ox * g->stride + off] += src[ox];
                }
            }
}

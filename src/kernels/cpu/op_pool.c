/*
 * op_pool.c — max, average and global average pooling on the CPU (the 2x2 stride-2 max
 * pool in SSE2 where the CPU has it), and max pooling's tangent (the others are linear:
 * op_combine.c's rg_cpu_linear_tangent).
 */
#include "../../ops/ops.h"
#include "cpu.h"

#include <float.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* The common 2x2, stride 2, unpadded window.  Forward computes only the maximum, a loop
 * GCC vectorises; backward finds each window's first maximum (scan order a b / c d) again
 * by comparison.  Storing the argmax in forward made GCC branch on every window (3 ms a
 * step on the CNN's first pool), and the scalar backward search is no better, so the
 * search runs four windows at a time in SSE2 (every x86-64) with a scalar tail. */
static void max_plane_2x2(const float *xp, float *yp, const rg_conv_geom *q) {
    for (int oy = 0; oy < q->oh; oy++) {
        const float *restrict r0 = xp + (size_t)(2 * oy) * q->w, *restrict r1 = r0 + q->w;
        float *restrict yr = yp + (size_t)oy * q->ow;
        for (int ox = 0; ox < q->ow; ox++) {
            const float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
            const float top = b > a ? b : a, bottom = d > c ? d : c;
            yr[ox] = bottom > top ? bottom : top;
        }
    }
}

static inline void window_2x2_backward(const float *r0, const float *r1, float *d0, float *d1,
                                       int j, float y, float dy) {
    const bool a = r0[j] == y, b = !a && r0[j + 1] == y, c = !a && !b && r1[j] == y,
               d = !a && !b && !c && r1[j + 1] == y;
    d0[j] += a ? dy : 0.0f;
    d0[j + 1] += b ? dy : 0.0f;
    d1[j] += c ? dy : 0.0f;
    d1[j + 1] += d ? dy : 0.0f;
}

static void max_plane_2x2_backward(const float *xp, const float *yp, const float *dyp,
                                   float *dxp, const rg_conv_geom *q) {
    for (int oy = 0; oy < q->oh; oy++) {
        const float *r0 = xp + (size_t)(2 * oy) * q->w, *r1 = r0 + q->w;
        const float *yr = yp + (size_t)oy * q->ow, *dyr = dyp + (size_t)oy * q->ow;
        float *d0 = dxp + (size_t)(2 * oy) * q->w, *d1 = d0 + q->w;
        int ox = 0;
#ifdef __SSE2__
        for (; ox + 4 <= q->ow; ox += 4) {
            const __m128 y = _mm_loadu_ps(yr + ox), dy = _mm_loadu_ps(dyr + ox);
            const __m128 t0 = _mm_loadu_ps(r0 + 2 * ox), t1 = _mm_loadu_ps(r0 + 2 * ox + 4);
            const __m128 u0 = _mm_loadu_ps(r1 + 2 * ox), u1 = _mm_loadu_ps(r1 + 2 * ox + 4);
            const __m128 a = _mm_shuffle_ps(t0, t1, _MM_SHUFFLE(2, 0, 2, 0));
            const __m128 b = _mm_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 1, 3, 1));
            const __m128 c = _mm_shuffle_ps(u0, u1, _MM_SHUFFLE(2, 0, 2, 0));
            const __m128 d = _mm_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 1, 3, 1));
            const __m128 ma = _mm_cmpeq_ps(a, y);
            const __m128 mb = _mm_andnot_ps(ma, _mm_cmpeq_ps(b, y));
            const __m128 mab = _mm_or_ps(ma, mb);
            const __m128 mc = _mm_andnot_ps(mab, _mm_cmpeq_ps(c, y));
            const __m128 md = _mm_andnot_ps(_mm_or_ps(mab, mc), _mm_cmpeq_ps(d, y));
            const __m128 ga = _mm_and_ps(ma, dy), gb = _mm_and_ps(mb, dy);
            const __m128 gc = _mm_and_ps(mc, dy), gd = _mm_and_ps(md, dy);
            float *p0 = d0 + 2 * ox, *p1 = d1 + 2 * ox;
            _mm_storeu_ps(p0, _mm_add_ps(_mm_loadu_ps(p0), _mm_unpacklo_ps(ga, gb)));
            _mm_storeu_ps(p0 + 4, _mm_add_ps(_mm_loadu_ps(p0 + 4), _mm_unpackhi_ps(ga, gb)));
            _mm_storeu_ps(p1, _mm_add_ps(_mm_loadu_ps(p1), _mm_unpacklo_ps(gc, gd)));
            _mm_storeu_ps(p1 + 4, _mm_add_ps(_mm_loadu_ps(p1 + 4), _mm_unpackhi_ps(gc, gd)));
        }
#endif
        for (; ox < q->ow; ox++) window_2x2_backward(r0, r1, d0, d1, 2 * ox, yr[ox], dyr[ox]);
    }
}

/* Output (oy, ox)'s window over plane xp: its first maximum in scan order into *max, and
 * that cell's offset in the plane; -1 for a padding cell (a zero where the padding is a
 * folded zero padding, else left out: -1 and -FLT_MAX only for a window wholly in it). */
static int first_max(const float *xp, int oy, int ox, const pool_attr *a, float *max) {
    const rg_conv_geom *q = &a->geom;
    int where = -1;
    bool any = false;
    float best = -FLT_MAX;
    for (int i = 0; i < a->kernel; i++) {
        const int iy = oy * a->stride - a->pad + i;
        const bool row = iy >= 0 && iy < q->h;
        if (!row && !a->zero_padded) continue;
        for (int j = 0; j < a->kernel; j++) {
            const int ix = ox * a->stride - a->pad + j;
            const bool in = row && ix >= 0 && ix < q->w;
            if (!in && !a->zero_padded) continue;
            const float v = in ? xp[iy * q->w + ix] : 0.0f;
            if (!any || v > best) best = v, where = in ? iy * q->w + ix : -1, any = true;
        }
    }
    *max = best;
    return where;
}

void rg_cpu_max_pool_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const float *x = rg_in(g, n, 0)->out;
    int32_t *arg = (int32_t *)n->aux; /* input offset within the channel plane (none for 2x2, 1x1) */
    const long planes = (long)batch * q->c;
    const bool fast = rg_pool_is_2x2(a), one = rg_pool_is_1x1(a);
#pragma omp parallel for schedule(static) if (planes * q->oh * q->ow > RG_PARALLEL_MIN)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * q->h * q->w;
        float *yp = n->out + (size_t)p * q->oh * q->ow;
        if (fast) {
            max_plane_2x2(xp, yp, q);
            continue;
        }
        if (one) { /* every output one input */
            for (int oy = 0; oy < q->oh; oy++)
                for (int ox = 0; ox < q->ow; ox++) yp[oy * q->ow + ox] = xp[(size_t)oy * a->stride * q->w + ox * a->stride];
            continue;
        }
        int32_t *ap = arg + (size_t)p * q->oh * q->ow;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) ap[oy * q->ow + ox] = first_max(xp, oy, ox, a, &yp[oy * q->ow + ox]);
    }
}

void rg_cpu_max_pool_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad) return;
    const int32_t *arg = (const int32_t *)n->aux;
    const long planes = (long)batch * q->c;
    const bool fast = rg_pool_is_2x2(a), one = rg_pool_is_1x1(a);
#pragma omp parallel for schedule(static) if (planes * q->oh * q->ow > RG_PARALLEL_MIN)
    for (long p = 0; p < planes; p++) {
        float *dxp = in->dout + (size_t)p * q->h * q->w;
        const float *dyp = n->dout + (size_t)p * q->oh * q->ow;
        if (fast) {
            max_plane_2x2_backward(in->out + (size_t)p * q->h * q->w,
                                   n->out + (size_t)p * q->oh * q->ow, dyp, dxp, q);
            continue;
        }
        if (one) {
            for (int oy = 0; oy < q->oh; oy++)
                for (int ox = 0; ox < q->ow; ox++) dxp[(size_t)oy * a->stride * q->w + ox * a->stride] += dyp[oy * q->ow + ox];
            continue;
        }
        const int32_t *ap = arg + (size_t)p * q->oh * q->ow;
        for (int i = 0; i < q->oh * q->ow; i++)
            if (ap[i] >= 0) dxp[ap[i]] += dyp[i];
    }
}

void rg_cpu_avg_pool_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const float *x = rg_in(g, n, 0)->out;
    const float scale = 1.0f / (float)(a->kernel * a->kernel);
    const long planes = (long)batch * q->c;
#pragma omp parallel for schedule(static) if (planes * q->oh * q->ow > RG_PARALLEL_MIN)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * q->h * q->w;
        float *yp = n->out + (size_t)p * q->oh * q->ow;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                float s = 0;
                for (int i = 0; i < a->kernel; i++) {
                    int iy = oy * a->stride - a->pad + i;
                    if (iy < 0 || iy >= q->h) continue;
                    for (int j = 0; j < a->kernel; j++) {
                        int ix = ox * a->stride - a->pad + j;
                        if (ix >= 0 && ix < q->w) s += xp[iy * q->w + ix];
                    }
                }
                yp[oy * q->ow + ox] = s * scale;
            }
    }
}

void rg_cpu_avg_pool_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad) return;
    const float scale = 1.0f / (float)(a->kernel * a->kernel);
    const long planes = (long)batch * q->c;
#pragma omp parallel for schedule(static) if (planes * q->oh * q->ow > RG_PARALLEL_MIN)
    for (long p = 0; p < planes; p++) {
        float *dxp = in->dout + (size_t)p * q->h * q->w;
        const float *dyp = n->dout + (size_t)p * q->oh * q->ow;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                const float d = dyp[oy * q->ow + ox] * scale;
                for (int i = 0; i < a->kernel; i++) {
                    int iy = oy * a->stride - a->pad + i;
                    if (iy < 0 || iy >= q->h) continue;
                    for (int j = 0; j < a->kernel; j++) {
                        int ix = ox * a->stride - a->pad + j;
                        if (ix >= 0 && ix < q->w) dxp[iy * q->w + ix] += d;
                    }
                }
            }
    }
}

void rg_cpu_global_avg_pool_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *x = rg_in(g, n, 0);
    const size_t hw = x->size / n->size;
    const long planes = (long)batch * (long)n->size;
    for (long p = 0; p < planes; p++) {
        const float *xp = x->out + (size_t)p * hw;
        float s = 0;
        for (size_t i = 0; i < hw; i++) s += xp[i];
        n->out[p] = s / (float)hw;
    }
}

void rg_cpu_global_avg_pool_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    if (!x->needs_grad) return;
    const size_t hw = x->size / n->size;
    const long planes = (long)batch * (long)n->size;
    for (long p = 0; p < planes; p++) {
        float *dxp = x->dout + (size_t)p * hw;
        const float d = n->dout[p] / (float)hw;
        for (size_t i = 0; i < hw; i++) dxp[i] += d;
    }
}

/* The tangent at each window's maximum (found again from the input: the 2x2 path keeps no
 * index; the first of equal values, as the general path's). */
void rg_cpu_max_pool_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const float *x = rg_in(g, n, 0)->out, *t_in = rg_tangent_in(g, n, 0);
    float *t = rg_tangent_out(g, n);
    const long planes = (long)batch * q->c;
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * q->h * q->w, *tp = t_in + (size_t)p * q->h * q->w;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                float best;
                const int where = first_max(xp, oy, ox, a, &best);
                t[(size_t)p * q->oh * q->ow + oy * q->ow + ox] = where < 0 ? 0.0f : tp[where];
            }
    }
}

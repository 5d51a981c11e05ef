/*
 * conv_direct.c — stride-1 and stride-2 convolution of small channel counts without im2col
 * (AVX2 + FMA, or AVX-512).
 *
 * Each input channel is copied once into a zero-padded plane Hp x Wp.  An output position
 * (oy, ox) is then given the "virtual" index p = oy * Wp + ox, and window tap (c, i, j)
 * reads the padded input at p + c*Hp*Wp + i*d*Wp + j*d: for every tap, consecutive p are
 * consecutive addresses.  So the convolution is a matrix product whose right-hand rows are
 * shifted views of the padded input, and the microkernel loads them straight from it, with
 * no column matrix and no packing: y (O, P) = W (O, K) . X (K, P), K = C*kh*kw taps.  The
 * Wp - OW columns past each output row are computed and dropped (2 of 30 for a 3x3 conv on
 * 28x28).  At stride 2 each channel is stored as four phase planes (even and odd rows
 * times even and odd columns), and tap (i, j) reads the plane of (i*d mod 2, j*d mod 2):
 * again consecutive addresses.  A table of offsets per tap carries either layout.  The
 * products of training:
 *   forward    y  = W . X                       (4 x 24 register tiles)
 *   dW         dW += dY . X^T  over p            (4 x 3 tiles, dY laid out on the same p)
 *   dx         dx += W~ . dY~: the forward product over dY with W transposed and flipped
 *              (at stride 2 four such products, one per phase of dx's rows and columns)
 *
 * 3x3 stride-1 convolutions of 8 channels or more both ways take Winograd's F(2x2, 3x3)
 * instead for the forward product and dx (conv_winograd.c, on rg_direct_product below).
 *
 * Each kernel comes for AVX2 (8 lanes) and AVX-512 (16 lanes), chosen once at run time.
 * Sums run in a fixed order per output, so results do not depend on threads.  Used where
 * the taps fit: K <= RG_DIRECT_MAX_TAPS (the right-hand panel, K x 24 floats, stays in
 * L1/L2); larger convolutions keep im2col and the BLAS, which wins there.
 */
#include "../kernels.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DIRECT_X86 1
#endif

#define TILE_ROWS 4   /* output channels per register tile */
#define TILE_COLS 24  /* AVX2: virtual positions per register tile, 3 vectors of 8 */
#define WIDE_COLS 48  /* AVX-512: 3 vectors of 16, the last positions in tiles of 16 */
#define ROW_ALIGN 48  /* virtual output rows are allocated to a multiple of both */
#define SUM_ALIGN 16  /* dW's sums over positions run to a multiple of one vector */
#define SLACK 96      /* zeroed floats after each padded input: the last tile reads past it */
/* dW sums over positions, which a 7x7 map has few of: samples are taken in groups whose
 * buffers fit in L2 (GROUP_FLOATS), summed in one pass of the accumulators. */
#define GROUP_FLOATS (128 * 1024)
#define MAX_GROUP 16

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* Each channel of the zero-padded input as s x s phase planes of hq x wq (stride s; one
 * plane at stride 1): phase (a, b) holds the padded rows s*u + a and columns s*v + b, so
 * for every tap consecutive outputs of a row read consecutive addresses.  Output (oy, ox)
 * is the virtual position oy * wq + ox; the padded input has room for every tap of every
 * output. */
typedef struct grid {
    int s, hq, wq;
    size_t chan; /* floats per channel: s * s * hq * wq */
} grid;

static grid layout(const rg_conv_geom *q) {
    const int s = q->stride, ekh = (q->kh - 1) * q->dilation, ekw = (q->kw - 1) * q->dilation;
    const int hpad = s * (q->oh - 1) + ekh + 1 > q->pad_t + q->h ? s * (q->oh - 1) + ekh + 1 : q->pad_t + q->h;
    const int wpad = s * (q->ow - 1) + ekw + 1 > q->pad_l + q->w ? s * (q->ow - 1) + ekw + 1 : q->pad_l + q->w;
    grid g = {s, (hpad + s - 1) / s, (wpad + s - 1) / s, 0};
    g.chan = (size_t)s * s * g.hq * g.wq;
    return g;
}

/* The instruction set the direct kernels use: the one decided at the first use of any
 * kernel (policy.c), none without AVX2. */
static rg_isa direct_isa(void) {
#ifdef DIRECT_X86
    return rg_cpu_isa_first();
#else
    return RG_ISA_BASE;
#endif
}

bool rg_direct_conv_fits(const rg_conv_geom *q, int filters, int groups) {
    if (direct_isa() == RG_ISA_BASE || !rg_direct_conv_allowed() || groups != 1) return false;
    /* Winograd's products take the channels as taps, not channels x 9 */
    if (rg_winograd_fits(q, filters) && q->c <= RG_DIRECT_MAX_TAPS && filters <= RG_DIRECT_MAX_TAPS)
        return true;
    if ((q->stride != 1 && q->stride != 2) ||
        q->kh * q->kw < 2 || q->c * q->kh * q->kw > RG_DIRECT_MAX_TAPS ||
        filters * q->kh * q->kw > RG_DIRECT_MAX_TAPS ||
        (q->kw - 1) * q->dilation + WIDE_COLS > SLACK)
        return false;
    const rg_conv_geom t = rg_conv_transposed(q, filters); /* tap offsets are ints, dx's too */
    const grid g = layout(q), gt = q->stride == 1 ? layout(&t) : g;
    return (double)q->c * (double)g.chan + SLACK < (double)INT_MAX &&
           (double)filters * (double)gt.chan + SLACK < (double)INT_MAX;
}

bool rg_direct_conv_takes_dx(const rg_conv_geom *q, int filters) {
    const rg_conv_geom t = rg_conv_transposed(q, filters);
    return q->stride == 2 || (t.pad_t >= 0 && t.pad_l >= 0);
}

/* dx of a stride-2 convolution is four stride-1 products, one per phase (a, b) of dx's
 * rows and columns: dx (2u + a, 2v + b) takes the taps (i, j) with a + pad_t - i d and
 * b + pad_l - j d even, tap i reading dY's row u + (a + pad_t - i d) / 2 (columns alike).
 * dY is kept zero-padded by `top` rows and `left` columns, rows wq floats long; phase
 * (a, b) computes u < its rows and every v < wq, the columns past its own dropped. */
typedef struct phases {
    int top, left, hq, wq;
    size_t chan; /* floats per channel of padded dY: hq * wq */
    size_t ldc;  /* floats per channel of a phase's output */
} phases;

static int floor_half(int n) { return n >= 0 ? n / 2 : -((1 - n) / 2); }

static phases phase_layout(const rg_conv_geom *q) {
    const int d = q->dilation;
    phases p;
    p.top = -floor_half(q->pad_t - (q->kh - 1) * d), p.left = -floor_half(q->pad_l - (q->kw - 1) * d);
    if (p.top < 0) p.top = 0;
    if (p.left < 0) p.left = 0;
    const int rows = (q->h + 1) / 2 + (1 + q->pad_t) / 2, cols = (q->w + 1) / 2 + (1 + q->pad_l) / 2;
    p.hq = p.top + (rows > q->oh ? rows : q->oh);
    p.wq = p.left + (cols > q->ow ? cols : q->ow);
    p.chan = (size_t)p.hq * p.wq;
    p.ldc = round_up((size_t)(q->h + 1) / 2 * p.wq, ROW_ALIGN);
    return p;
}

/* Floats of the four products' buffers: dY padded, then one phase's output. */
static size_t phase_floats(const rg_conv_geom *q, int filters) {
    const phases p = phase_layout(q);
    return (size_t)filters * p.chan + SLACK + round_up((size_t)q->c, TILE_ROWS) * p.ldc;
}

/* Taps (filter, i, j) of phase (a, b), in the packed order; returns their count. */
static int phase_taps(const rg_conv_geom *q, int filters, int a, int b, int *i_of, int *j_of) {
    int n = 0;
    for (int i = 0; i < q->kh; i++)
        for (int j = 0; j < q->kw; j++)
            if ((a + q->pad_t - i * q->dilation) % 2 == 0 && (b + q->pad_l - j * q->dilation) % 2 == 0)
                i_of[n] = i, j_of[n] = j, n++;
    return n * filters;
}

/* Floats of one forward product's buffers: padded input and the virtual output. */
static size_t forward_floats(const rg_conv_geom *q, int filters) {
    const grid g = layout(q);
    return (size_t)q->c * g.chan + SLACK +
           round_up((size_t)filters, TILE_ROWS) * round_up((size_t)q->oh * g.wq, ROW_ALIGN);
}

size_t rg_direct_conv_packed_floats(const rg_conv_geom *q, int filters) {
    if (rg_winograd_fits(q, filters)) {
        const rg_conv_geom t = rg_conv_transposed(q, filters);
        const size_t fw = rg_winograd_packed_floats(q, filters), bw = rg_winograd_packed_floats(&t, q->c);
        return fw > bw ? fw : bw;
    }
    const size_t fw = round_up((size_t)filters, TILE_ROWS) * q->c * q->kh * q->kw;
    const size_t bw = round_up((size_t)q->c, TILE_ROWS) * filters * q->kh * q->kw;
    return fw > bw ? fw : bw;
}

/* Floats of one sample's padded input and of its dY on the virtual positions. */
static size_t backward_sample_floats(const rg_conv_geom *q, int filters, size_t *xp_floats) {
    const grid g = layout(q);
    *xp_floats = (size_t)q->c * g.chan + SLACK;
    return *xp_floats + round_up((size_t)filters, TILE_ROWS) * round_up((size_t)q->oh * g.wq, SUM_ALIGN);
}

int rg_direct_conv_group(const rg_conv_geom *q, int filters) {
    if (rg_winograd_fits(q, filters)) return INT_MAX; /* it takes its own groups: any run */
    size_t xp;
    const size_t each = backward_sample_floats(q, filters, &xp);
    const size_t group = GROUP_FLOATS / each;
    return group < 1 ? 1 : group > MAX_GROUP ? MAX_GROUP : (int)group;
}

size_t rg_direct_conv_work_floats(const rg_conv_geom *q, int filters) {
    size_t xp;
    const rg_conv_geom t = rg_conv_transposed(q, filters);
    if (rg_winograd_fits(q, filters)) { /* forward, dW, then dx, each in the whole buffer */
        const size_t fwd = rg_winograd_work_floats(q, filters), dx = rg_winograd_work_floats(&t, q->c);
        return fwd > dx ? fwd : dx;
    }
    const size_t fwd = forward_floats(q, filters);
    const size_t dx = q->stride == 2 ? phase_floats(q, filters)
                      : rg_direct_conv_takes_dx(q, filters) ? forward_floats(&t, q->c) : 0;
    const size_t bwd = (size_t)rg_direct_conv_group(q, filters) * backward_sample_floats(q, filters, &xp) + dx;
    return fwd > bwd ? fwd : bwd;
}

void rg_direct_conv_pack(const float *w, int filters, const rg_conv_geom *q, bool for_dx,
                         float *packed) {
    if (rg_winograd_fits(q, filters)) {
        rg_winograd_pack(w, filters, q, for_dx, packed);
        return;
    }
    const int kk = q->kh * q->kw;
    if (for_dx && q->stride == 2) { /* per phase: rows the channels, taps (filter, i, j) */
        for (int ph = 0; ph < 4; ph++) {
            int i_of[RG_DIRECT_MAX_TAPS], j_of[RG_DIRECT_MAX_TAPS];
            const int taps = phase_taps(q, filters, ph / 2, ph % 2, i_of, j_of), per = taps / filters;
            for (int r0 = 0; r0 < q->c; r0 += TILE_ROWS)
                for (int k = 0; k < taps; k++)
                    for (int r = r0; r < r0 + TILE_ROWS; r++)
                        *packed++ = r < q->c ? rg_conv_weight(w, q, false, k / per, r,
                                                              i_of[k % per] * q->kw + j_of[k % per])
                                             : 0.0f;
        }
        return;
    }
    const int rows = for_dx ? q->c : filters, cols = for_dx ? filters : q->c;
    const int taps = cols * kk;
    for (int r0 = 0; r0 < rows; r0 += TILE_ROWS)
        for (int k = 0; k < taps; k++)
            for (int i = 0; i < TILE_ROWS; i++) {
                const int r = r0 + i;
                *packed++ = r < rows ? rg_conv_weight(w, q, for_dx, r, k / kk, k % kk) : 0.0f;
            }
}

#ifdef DIRECT_X86
static void fill_padded(const float *x, const rg_conv_geom *q, const grid *g, float *xp) {
    memset(xp, 0, ((size_t)q->c * g->chan + SLACK) * sizeof *xp);
    const int s = g->s;
    for (int a = 0; a < s; a++)
        for (int b = 0; b < s; b++) {
            /* columns v0 + k of the phase take x's columns first + s k, k < n */
            const int v0 = (q->pad_l - b + s - 1) / s, first = s * v0 + b - q->pad_l;
            const int n = first < q->w ? (q->w - first + s - 1) / s : 0;
            const int cols = v0 + n > g->wq ? g->wq - v0 : n;
            for (int c = 0; c < q->c; c++) {
                float *plane = xp + c * g->chan + (size_t)(a * s + b) * g->hq * g->wq;
                for (int u = 0; u < g->hq; u++) {
                    const int iy = s * u + a - q->pad_t;
                    if (iy < 0 || iy >= q->h) continue;
                    const float *src = x + ((size_t)c * q->h + iy) * q->w + first;
                    float *dst = plane + (size_t)u * g->wq + v0;
                    if (s == 1) memcpy(dst, src, (size_t)cols * sizeof *dst);
                    else /* s is 2 (rg_direct_conv_fits): a constant stride GCC vectorises */
                        for (int k = 0; k < cols; k++) dst[k] = src[2 * k];
                }
            }
        }
}

/* Where each tap (c, i, j) of the window reads, relative to the output's virtual position:
 * its channel's phase plane for (i*d mod s, j*d mod s), (i*d div s) rows and (j*d div s)
 * columns on. */
static void tap_offsets(const rg_conv_geom *q, const grid *g, int *off) {
    int k = 0;
    const int s = g->s, d = q->dilation;
    for (int c = 0; c < q->c; c++)
        for (int i = 0; i < q->kh; i++)
            for (int j = 0; j < q->kw; j++)
                off[k++] = (int)(c * g->chan + (size_t)((i * d % s) * s + j * d % s) * g->hq * g->wq +
                                 (size_t)(i * d / s) * g->wq + j * d / s);
}

/* c[4][24] = a (taps x 4, packed) . the 24 positions of x under every tap.  The twelve sums
 * are named variables: as an array GCC stores them back on every tap. */
__attribute__((target("avx2,fma"))) static void
forward_tile(const float *restrict a, const float *restrict x, const int *off, int taps,
             float *restrict c, size_t ldc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    for (int k = 0; k < taps; k++, a += TILE_ROWS) {
        const float *b = x + off[k];
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), b2 = _mm256_loadu_ps(b + 16);
        __m256 s = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(s, b0, c00), c01 = _mm256_fmadd_ps(s, b1, c01), c02 = _mm256_fmadd_ps(s, b2, c02);
        s = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(s, b0, c10), c11 = _mm256_fmadd_ps(s, b1, c11), c12 = _mm256_fmadd_ps(s, b2, c12);
        s = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(s, b0, c20), c21 = _mm256_fmadd_ps(s, b1, c21), c22 = _mm256_fmadd_ps(s, b2, c22);
        s = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(s, b0, c30), c31 = _mm256_fmadd_ps(s, b1, c31), c32 = _mm256_fmadd_ps(s, b2, c32);
    }
    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01), _mm256_storeu_ps(c + 16, c02);
    c += ldc;
    _mm256_storeu_ps(c, c10), _mm256_storeu_ps(c + 8, c11), _mm256_storeu_ps(c + 16, c12);
    c += ldc;
    _mm256_storeu_ps(c, c20), _mm256_storeu_ps(c + 8, c21), _mm256_storeu_ps(c + 16, c22);
    c += ldc;
    _mm256_storeu_ps(c, c30), _mm256_storeu_ps(c + 8, c31), _mm256_storeu_ps(c + 16, c32);
}

/* The AVX-512 forward tile: `panels` packed 4-row panels (1 or 2, `a_step` apart) x nv
 * vectors of 16 positions (3, or 1 for the last positions): with 32 registers, 8 rows x 48
 * positions keep 24 sums while each loaded vector feeds eight products.  Specialised by
 * the wrappers below. */
__attribute__((target("avx512f"), always_inline)) static inline void
forward_tile_512(const float *restrict a, size_t a_step, const float *restrict x, const int *off,
                 int taps, float *restrict c, size_t ldc, const int panels, const int nv) {
    __m512 acc[2 * TILE_ROWS][3];
    for (int r = 0; r < panels * TILE_ROWS; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
    for (int k = 0; k < taps; k++, a += TILE_ROWS) {
        __m512 b[3];
        for (int v = 0; v < nv; v++) b[v] = _mm512_loadu_ps(x + off[k] + 16 * v);
        for (int r = 0; r < panels * TILE_ROWS; r++) {
            const __m512 s = _mm512_set1_ps(a[(r / TILE_ROWS) * a_step + r % TILE_ROWS]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(s, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < panels * TILE_ROWS; r++)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
}

#define FORWARD_512(name, panels, nv)                                                        \
    __attribute__((target("avx512f"))) static void name(                                     \
        const float *a, size_t a_step, const float *x, const int *off, int taps, float *c,    \
        size_t ldc) {                                                                        \
        forward_tile_512(a, a_step, x, off, taps, c, ldc, panels, nv);                       \
    }
FORWARD_512(forward_8x48, 2, 3)
FORWARD_512(forward_4x48, 1, 3)
FORWARD_512(forward_8x32, 2, 2)
FORWARD_512(forward_4x32, 1, 2)
FORWARD_512(forward_8x16, 2, 1)
FORWARD_512(forward_4x16, 1, 1)

/* c (rows, positions) = packed (rows, taps) . the rows of x at off[tap]: computed to the
 * next multiple of 16 positions (AVX-512) or 24 (AVX2), rows to the next multiple of 4. */
void rg_direct_product(const float *packed, int rows, int taps, const float *x, const int *off,
                       size_t positions, float *c, size_t ldc) {
    const size_t p = positions;
    if (direct_isa() == RG_ISA_AVX512) {
        typedef void (*tile_fn)(const float *, size_t, const float *, const int *, int, float *,
                                size_t);
        static const tile_fn tiles[2][3] = {{forward_4x16, forward_4x32, forward_4x48},
                                            {forward_8x16, forward_8x32, forward_8x48}};
        for (size_t p0 = 0; p0 < p;) { /* 48 positions a tile, the last 16 or 32 */
            const size_t left = (round_up(p, 16) - p0) / 16, nv = left < 3 ? left : 3;
            for (int r0 = 0; r0 < rows;) {
                const bool two = r0 + 2 * TILE_ROWS <= rows;
                tiles[two][nv - 1](packed + (size_t)r0 * taps, TILE_ROWS * taps, x + p0, off, taps,
                                   c + (size_t)r0 * ldc + p0, ldc);
                r0 += two ? 2 * TILE_ROWS : TILE_ROWS;
            }
            p0 += 16 * nv;
        }
    } else {
        for (size_t p0 = 0; p0 < p; p0 += TILE_COLS)
            for (int r0 = 0; r0 < rows; r0 += TILE_ROWS)
                forward_tile(packed + (size_t)r0 * taps, x + p0, off, taps, c + (size_t)r0 * ldc + p0,
                             ldc);
    }
}

/* One sample: y (filters, oh, ow) = (or +=) W . x + bias. */
static void direct_forward(const float *x, const rg_conv_geom *q, int filters,
                           const float *packed, const float *bias, const float *sum, float *y,
                           bool add, float *work) {
    const grid g = layout(q);
    const size_t taps = (size_t)q->c * q->kh * q->kw, p = (size_t)q->oh * g.wq;
    const size_t ldc = round_up(p, ROW_ALIGN);
    float *xp = work, *cv = xp + (size_t)q->c * g.chan + SLACK;
    int off[RG_DIRECT_MAX_TAPS];
    tap_offsets(q, &g, off);
    fill_padded(x, q, &g, xp);
    rg_direct_product(packed, filters, (int)taps, xp, off, p, cv, ldc);
    for (int o = 0; o < filters; o++) {
        const float b = bias ? bias[o] : 0.0f;
        for (int oy = 0; oy < q->oh; oy++) {
            const float *src = cv + (size_t)o * ldc + (size_t)oy * g.wq;
            float *dst = y + ((size_t)o * q->oh + oy) * q->ow;
            const float *plus = sum ? sum + ((size_t)o * q->oh + oy) * q->ow : NULL;
            if (add)
                for (int ox = 0; ox < q->ow; ox++) dst[ox] += src[ox] + b;
            else if (plus)
                for (int ox = 0; ox < q->ow; ox++) dst[ox] = src[ox] + b + plus[ox];
            else
                for (int ox = 0; ox < q->ow; ox++) dst[ox] = src[ox] + b;
        }
    }
}

static float hsum(__m256 v) __attribute__((target("avx2,fma")));
static float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* dw[r][t] += sum over the group's samples s and positions p of dy_s[r][p] x_s,t[p], for 4
 * rows of dY (ldd apart) and `n` taps (1 to 3); a sample's buffers follow the last one's at
 * dy_step and x_step. */
__attribute__((target("avx2,fma"))) static void
dw_tile(const float *restrict dy, size_t ldd, size_t dy_step, const float *const x[],
        size_t x_step, int samples, int n, size_t len, float *restrict dw, size_t ldw, int rows) {
    __m256 acc[TILE_ROWS][3];
    for (int r = 0; r < TILE_ROWS; r++)
        for (int t = 0; t < 3; t++) acc[r][t] = _mm256_setzero_ps();
    for (int smp = 0; smp < samples; smp++) {
        const float *x0 = x[0] + smp * x_step, *x1 = x[n > 1 ? 1 : 0] + smp * x_step,
                    *x2 = x[n > 2 ? 2 : 0] + smp * x_step, *g0 = dy + smp * dy_step;
        for (size_t p = 0; p < len; p += 8) {
            const __m256 a = _mm256_loadu_ps(x0 + p), b = _mm256_loadu_ps(x1 + p),
                         c = _mm256_loadu_ps(x2 + p);
            for (int r = 0; r < TILE_ROWS; r++) {
                const __m256 g = _mm256_loadu_ps(g0 + r * ldd + p);
                acc[r][0] = _mm256_fmadd_ps(g, a, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(g, b, acc[r][1]);
                acc[r][2] = _mm256_fmadd_ps(g, c, acc[r][2]);
            }
        }
    }
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < n; t++) dw[r * ldw + t] += hsum(acc[r][t]);
}

/* The sums of the 16 lanes of v[0..7], in lanes 0..7: the halves, quarters and lanes of
 * all eight added side by side (instead of each vector alone, which leaves the adder
 * waiting on its own shuffles). */
__attribute__((target("avx512f"))) static __m256 lane_sums8(const __m512 v[8]) {
    __m512 a[4], b[2];
    for (int i = 0; i < 4; i++) /* [v.q0+v.q2, v.q1+v.q3] of v[2i], then of v[2i+1] */
        a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; i++) /* 4 partial lanes of each of v[4i..4i+3] in turn */
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xDD));
    /* quarter q: lanes 0 and 2 become the sums of v[q] and v[q + 4] */
    __m512 c = _mm512_add_ps(_mm512_shuffle_ps(b[0], b[1], 0x44), _mm512_shuffle_ps(b[0], b[1], 0xEE));
    c = _mm512_add_ps(c, _mm512_shuffle_ps(c, c, 0xB1));
    const __m512i order = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 10, 6, 2, 12, 8, 4, 0);
    return _mm512_castps512_ps256(_mm512_permutexvar_ps(order, c));
}

/* dw_tile with AVX-512: 16 positions per step (len is a multiple of 16) and up to
 * DW_TAPS_512 taps, so each loaded vector of dY feeds six products, not three (the
 * sums stream dY and X from L2). */
#define DW_TAPS_512 6
__attribute__((target("avx512f"))) static void
dw_tile_512(const float *restrict dy, size_t ldd, size_t dy_step, const float *const x[],
            size_t x_step, int samples, int n, size_t len, float *restrict dw, size_t ldw, int rows) {
    __m512 acc[TILE_ROWS][DW_TAPS_512];
    for (int r = 0; r < TILE_ROWS; r++)
        for (int t = 0; t < DW_TAPS_512; t++) acc[r][t] = _mm512_setzero_ps();
    for (int smp = 0; smp < samples; smp++) {
        const float *xs[DW_TAPS_512], *g0 = dy + smp * dy_step;
        for (int t = 0; t < DW_TAPS_512; t++) xs[t] = x[t < n ? t : 0] + smp * x_step;
        for (size_t p = 0; p < len; p += 16) {
            __m512 v[DW_TAPS_512];
            for (int t = 0; t < DW_TAPS_512; t++) v[t] = _mm512_loadu_ps(xs[t] + p);
            for (int r = 0; r < TILE_ROWS; r++) {
                const __m512 g = _mm512_loadu_ps(g0 + r * ldd + p);
                for (int t = 0; t < DW_TAPS_512; t++) acc[r][t] = _mm512_fmadd_ps(g, v[t], acc[r][t]);
            }
        }
    }
    for (int r = 0; r < rows; r++) {
        __m512 v[8];
        for (int t = 0; t < 8; t++) v[t] = t < DW_TAPS_512 ? acc[r][t] : _mm512_setzero_ps();
        float sum[8];
        _mm256_storeu_ps(sum, lane_sums8(v));
        for (int t = 0; t < n; t++) dw[r * ldw + t] += sum[t];
    }
}

void rg_direct_product_t(const float *a, size_t lda, int rows, const float *b, size_t ldb, int cols,
                         size_t len, float *c, size_t ldc) {
    const int n_max = direct_isa() == RG_ISA_AVX512 ? DW_TAPS_512 : 3;
    for (int r0 = 0; r0 < rows; r0 += TILE_ROWS)
        for (int j0 = 0; j0 < cols; j0 += n_max) {
            const float *bs[DW_TAPS_512];
            const int n = cols - j0 < n_max ? cols - j0 : n_max;
            for (int j = 0; j < n; j++) bs[j] = b + (size_t)(j0 + j) * ldb;
            (direct_isa() == RG_ISA_AVX512 ? dw_tile_512 : dw_tile)(a + (size_t)r0 * lda, lda, 0, bs, 0, 1, n, len,
                                                          c + (size_t)r0 * ldc + j0, ldc,
                                                          rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS);
        }
}

/* One sample's dx (= when fresh, else +=) of a stride-2 convolution, phase by phase. */
static void phase_input_grad(const float *dy, const rg_conv_geom *q, int filters, const float *packed,
                             float *dx, bool fresh, float *work) {
    const phases p = phase_layout(q);
    float *dyp = work, *out = dyp + (size_t)filters * p.chan + SLACK;
    memset(dyp, 0, ((size_t)filters * p.chan + SLACK) * sizeof *dyp);
    for (int o = 0; o < filters; o++)
        for (int oy = 0; oy < q->oh; oy++)
            memcpy(dyp + o * p.chan + (size_t)(oy + p.top) * p.wq + p.left, dy + ((size_t)o * q->oh + oy) * q->ow,
                   (size_t)q->ow * sizeof *dyp);
    for (int ph = 0; ph < 4; ph++) {
        const int a = ph / 2, b = ph % 2, rows = (q->h - a + 1) / 2, cols = (q->w - b + 1) / 2;
        int i_of[RG_DIRECT_MAX_TAPS], j_of[RG_DIRECT_MAX_TAPS], off[RG_DIRECT_MAX_TAPS];
        const int taps = phase_taps(q, filters, a, b, i_of, j_of), per = taps ? taps / filters : 1;
        for (int k = 0; k < taps; k++) /* dY's row u + (a + pad_t - i d) / 2, columns alike */
            off[k] = (int)((size_t)(k / per) * p.chan +
                           (size_t)(p.top + (a + q->pad_t - i_of[k % per] * q->dilation) / 2) * p.wq +
                           p.left + (b + q->pad_l - j_of[k % per] * q->dilation) / 2);
        if (taps) rg_direct_product(packed, q->c, taps, dyp, off, (size_t)rows * p.wq, out, p.ldc);
        packed += round_up((size_t)q->c, TILE_ROWS) * taps;
        for (int c = 0; c < q->c; c++)
            for (int u = 0; u < rows; u++) {
                const float *src = out + (size_t)c * p.ldc + (size_t)u * p.wq;
                float *dst = dx + ((size_t)c * q->h + 2 * u + a) * q->w + b;
                for (int v = 0; v < cols; v++) {
                    const float g = taps ? src[v] : 0.0f;
                    dst[2 * v] = fresh ? g : dst[2 * v] + g;
                }
            }
    }
}

/* `samples` samples (x_size and dy_size apart): dw (filters, taps) += sum dY . X^T, and
 * each dx += conv(dY, W~) when dx is given (dx_size apart; = when dx_fresh). */
static void direct_backward(const float *x, size_t x_size, const float *dy, size_t dy_size,
                            int samples, const rg_conv_geom *q, int filters,
                            const float *packed_dx, float *dw, float *dx, bool dx_fresh,
                            float *work) {
    if (rg_winograd_fits(q, filters)) {
        rg_winograd_backward(x, x_size, dy, dy_size, samples, q, filters, dw, packed_dx, dx, dx_fresh, work);
        return;
    }
    const grid g = layout(q);
    size_t xp_floats;
    const size_t each = backward_sample_floats(q, filters, &xp_floats);
    const size_t len = round_up((size_t)q->oh * g.wq, SUM_ALIGN);
    const int taps = q->c * q->kh * q->kw;
    const int rows4 = (int)round_up((size_t)filters, TILE_ROWS);
    int off[RG_DIRECT_MAX_TAPS];
    tap_offsets(q, &g, off);
    for (int smp = 0; smp < samples; smp++) {
        float *xp = work + smp * each, *dyv = xp + xp_floats;
        fill_padded(x + smp * x_size, q, &g, xp);
        /* dY on the virtual positions, zero past each row and at the end */
        memset(dyv, 0, (size_t)rows4 * len * sizeof *dyv);
        for (int o = 0; o < filters; o++)
            for (int oy = 0; oy < q->oh; oy++)
                memcpy(dyv + o * len + (size_t)oy * g.wq,
                       dy + smp * dy_size + ((size_t)o * q->oh + oy) * q->ow,
                       (size_t)q->ow * sizeof *dyv);
    }
    const int tap_tile = direct_isa() == RG_ISA_AVX512 ? DW_TAPS_512 : 3;
    for (int r0 = 0; r0 < filters; r0 += TILE_ROWS)
        for (int k0 = 0; k0 < taps; k0 += tap_tile) {
            const float *xs[DW_TAPS_512];
            const int n = taps - k0 < tap_tile ? taps - k0 : tap_tile;
            for (int t = 0; t < n; t++) xs[t] = work + off[k0 + t];
            (direct_isa() == RG_ISA_AVX512 ? dw_tile_512 : dw_tile)(
                work + xp_floats + r0 * len, len, each, xs, each, samples, n, len,
                dw + (size_t)r0 * taps + k0, taps, filters - r0 < TILE_ROWS ? filters - r0 : TILE_ROWS);
        }
    if (dx && q->stride == 2) {
        for (int smp = 0; smp < samples; smp++)
            phase_input_grad(dy + smp * dy_size, q, filters, packed_dx, dx + smp * x_size, dx_fresh,
                             work + samples * each);
        return;
    }
    if (dx) {
        const rg_conv_geom t = rg_conv_transposed(q, filters);
        for (int smp = 0; smp < samples; smp++)
            direct_forward(dy + smp * dy_size, &t, q->c, packed_dx, NULL, NULL, dx + smp * x_size,
                           !dx_fresh, work + samples * each);
    }
}
#endif

void rg_direct_conv_forward(const float *x, int samples, const rg_conv_geom *q, int filters,
                            const float *packed, const float *bias, const float *sum, float *y,
                            float *work) {
#ifdef DIRECT_X86
    const size_t x_size = (size_t)q->c * q->h * q->w, y_size = (size_t)filters * q->oh * q->ow;
    if (rg_winograd_fits(q, filters)) {
        rg_winograd_forward(x, x_size, samples, q, filters, packed, bias, sum, y, y_size, false, 0, 0, work);
        return;
    }
    for (int s = 0; s < samples; s++)
        direct_forward(x + s * x_size, q, filters, packed, bias, sum ? sum + s * y_size : NULL, y + s * y_size,
                       false, work);
#else
    (void)x, (void)samples, (void)q, (void)filters, (void)packed, (void)bias, (void)sum, (void)y, (void)work;
#endif
}

void rg_direct_conv_backward(const float *x, const float *dy, int samples,
                             const rg_conv_geom *q, int filters, const float *packed_dx,
                             float *dw, float *dx, bool dx_fresh, float *work) {
#ifdef DIRECT_X86
    direct_backward(x, (size_t)q->c * q->h * q->w, dy, (size_t)filters * q->oh * q->ow, samples,
                    q, filters, packed_dx, dw, dx, dx_fresh, work);
#else
    (void)x, (void)dy, (void)samples, (void)q, (void)filters, (void)packed_dx, (void)dw,
        (void)dx, (void)dx_fresh, (void)work;
#endif
}

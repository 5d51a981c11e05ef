/*
 * kernels.h — the CPU kernel library: matrix products, convolution kernels, the monitor's
 * sums, batch norm's passes, and the instruction-set policy, which the CPU backend's ops
 * and reductions (kernels/cpu/) are built from.  The seam other backends implement is
 * backend.h.
 */
#ifndef RG_KERNELS_H
#define RG_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major; op transposes when trans_* is true.
 * A is (M,K) after op, B is (K,N) after op. */
void rg_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* rg_sgemm, then then(ctx, lo, hi) on columns [lo, hi) of C, ranges covering [0, N) once:
 * where the product is split by columns, each thread calls it on the columns it computed
 * (still in its cache); else once, after the whole product.  C's bits are rg_sgemm's. */
void rg_sgemm_then(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc,
                   void (*then)(void *ctx, int lo, int hi), void *ctx);

/* The Gram matrix C (N,N) = alpha * A^T A + beta * C (trans: A is (K,N)) or alpha * A A^T +
 * beta * C (A is (N,K)), row-major, symmetric: the upper triangle in blocks of 128 columns
 * (a rank-k update on each diagonal block, a product above it: about half rg_sgemm's
 * multiply-adds), mirrored below.  The same blocks for any thread count, so the same bits. */
void rg_sgram(bool trans, int n, int k, float alpha, const float *a, int lda, float beta, float *c, int ldc);

/* sum x[i] y[i] through the BLAS (chunked for n beyond int), in double: a plain loop
 * accumulating in double is not vectorised without reassociation.  Any NaN or Inf in x
 * or y makes the result non-finite. */
double rg_dot(const float *x, const float *y, size_t n);

/* sum x[i]^2, exact in range: rg_dot when the result is between 1e-30 and 1e30, else a
 * scaled double loop (gradients of 1e-26 must not read as 0). */
double rg_sum_squares(const float *x, size_t n);

/* The widest vector instructions the hand-written kernels may use (policy.c): AVX-512, AVX2
 * with FMA, or neither (plain C, SSE2 on x86-64); REGRAD_MAX_ISA=AVX2 or =BASE caps it. */
typedef enum { RG_ISA_BASE, RG_ISA_AVX2, RG_ISA_AVX512 } rg_isa;
rg_isa rg_cpu_isa(void);
/* The instruction set decided at the first use of any kernel (before any rg_cpu_isa_cap),
 * which the direct convolutions keep. */
rg_isa rg_cpu_isa_first(void);
/* The variant of a kernel for this CPU, for kernels compiled once per instruction set as
 * name_base, name_avx2 and name_avx512 (only name_base off x86-64 or without GCC). */
#if defined(__x86_64__) && defined(__GNUC__)
#define RG_PICK(name)                                                                         \
    (rg_cpu_isa() == RG_ISA_AVX512 ? name##_avx512                                           \
     : rg_cpu_isa() == RG_ISA_AVX2 ? name##_avx2 : name##_base)
#else
#define RG_PICK(name) name##_base
#endif
/* From now on at most cap (and what the CPU has): for tests that compare the variants of a
 * kernel, which must give the same bits.  Returns what it set.  The direct convolutions
 * keep the choice they made on their first use. */
rg_isa rg_cpu_isa_cap(rg_isa cap);

/* What the monitor counts besides sums: nothing (a layer's output), positive values (relu:
 * a unit never positive is dead), values within 1% of a sigmoid/tanh bound (lo, hi), or,
 * on a layer's output a relu reads next, the positive values and the sums of relu(x), so
 * the relu's statistics come from the same pass. */
typedef enum { RG_COUNT_NONE, RG_COUNT_POSITIVE, RG_COUNT_NEAR_BOUND, RG_COUNT_RELU_OF } rg_count_kind;
/* One plane of n values (stats.c): adds its sum and sum of squares to t[0], t[1], for
 * RG_COUNT_RELU_OF those of relu(x) to t[2], t[3]; returns the count `want` asks for. */
long rg_plane_sums(const float *p, size_t n, rg_count_kind want, float lo, float hi, double t[4]);
/* Units [0, width) of a dense output (width at most RG_UNIT_BLOCK), rows `stride` apart,
 * over `batch` rows in order: per unit the sum (s), sum of squares (s2), count, and for
 * RG_COUNT_RELU_OF the sums of relu(x) (rs, rs2), in float; units side by side in vectors,
 * several vectors at a time so that their sums do not wait on each other. */
#define RG_UNIT_BLOCK 64
void rg_unit_block_sums(const float *out, size_t stride, int batch, int width,
                        rg_count_kind want, float lo, float hi, float *s, float *s2, int *counted,
                        float *rs, float *rs2);

/* sum (a[i] - b[i])^2, or sum a[i]^2 when b is NULL (stats.c): for the monitor's figures,
 * in 64 float lanes added in double, the same bits on every CPU; in double throughout when
 * that sum is below 1e-30 or above 1e30 (a float square would lose it) or not finite.
 * GRA and the clipping remedies keep rg_sum_squares, whose bits their results rest on. */
double rg_squares(const float *a, const float *b, size_t n);
/* An update's three sums of squares, for a pass that took their 64 float lanes itself
 * (the optimizer's, update_rules.h; lanes[0, 64) of the change now - before, [64, 128) of
 * the gradient, [128, 192) of the values before, lane j over the values at j mod 64 of the
 * first n / 64 * 64): out[0..2], each the bits rg_squares gives that sum. */
void rg_finish_update_squares(const float lanes[3 * 64], const float *now, const float *before,
                              const float *grad, size_t n, double out[3]);
/* out[0] = rg_squares(a, NULL, n), out[1] = rg_squares(b, NULL, n), the same bits, in one
 * pass that also copies b to keep when keep is given. */
void rg_squares_pair(const float *a, const float *b, float *keep, size_t n, double out[2]);
/* Batch norm's passes over one (sample, channel) plane of n values (norm.c): sums in 16
 * float lanes (value i in lane i mod 16) added in double, the same bits on every CPU. */
double rg_bn_plane_sum(const float *x, size_t n);
double rg_bn_plane_centred_squares(const float *x, size_t n, float mu); /* sum (x - mu)^2 */
/* A relu after the batch norm, fused into it (relu non-NULL: {scale, shift}): dy is taken
 * as 0 wherever x scale + shift <= 0, as the relu's backward would have made it. */
static inline float rg_bn_relu_masked(float dy, float x, const float *relu) {
    return relu && !(x * relu[0] + relu[1] > 0) ? 0.0f : dy;
}
/* *sdy += sum dy, *sdyx += sum dy (x - mu) */
void rg_bn_plane_dy_sums(const float *x, const float *dy, size_t n, float mu, const float *relu,
                         double *sdy, double *sdyx);
/* y = x scale + shift, then relu(y) when relu */
void rg_bn_plane_affine(const float *x, float *y, size_t n, float scale, float shift, bool relu);
/* dx += k (dy - mdy - (x - mu) inv mdyx) when train, else dx += k dy; fresh: = */
void rg_bn_plane_input_grad(const float *x, const float *dy, float *dx, size_t n, float k,
                            float mdy, float mu, float inv, float mdyx, bool train,
                            const float *relu, bool fresh);
/* Sums of squares over a layer's weights and gradients are taken in pieces of this many
 * floats from the layer's start, added in order, by the monitor and by the optimizer
 * alike (a piece fits L1): the same figure whoever takes it and whatever the thread count. */
#define RG_SQUARES_PIECE 4096

/* Below this many elements an element-wise loop stays on one thread: waking the team costs
 * more than it saves. */
#define RG_PARALLEL_MIN 32768

/* One layer as GRA's per-step arithmetic sees it (src/health/repair.c), every buffer in the
 * backend's memory: its weights w (units x f) and bias b (units; NULL: none), them as they
 * were before the optimizer's step (w0, b0), their gradients (gw, gb), its input mean
 * (NULL: none measured), GRA's per-unit buffers for it (the step's rows' products with
 * the mean, pm; the bias's step, db), and the host doubles where its step's sum of squares
 * and shift arrive (squares, shift). */
typedef struct rg_gra_layer {
    float *w, *b, *gw, *pm, *db;
    const float *w0, *b0, *gb, *mean;
    int units, f;
    double *squares, *shift;
} rg_gra_layer;

/* The sums GRA's trust-region bound from a covariance split C = Q^T S Q + R is made of
 * (backend.h's function_change_bound), for a step dW (units x f), db: |dW mu + db|^2,
 * the upper triangle of P^T P for P = dW Q^T (Q's k <= 8 rows; row stride 8) and ||dW||^2;
 * and the bound from them, E||dz||^2 per unit at most (kernels/cpu/gra.c). */
typedef struct rg_bound_sums {
    double shift, gram[8 * 8], squares;
} rg_bound_sums;
double rg_bound_from_sums(const rg_bound_sums *b, const float *s, int k, double rest, int units);

/* Geometry of a 2-D convolution or pooling window over one (C, H, W) sample. */
typedef struct rg_conv_geom {
    int c, h, w;          /* input channels and size */
    int kh, kw;           /* window */
    int stride, dilation;
    int pad_t, pad_l;     /* zeros before the first row / column (the rest follow from oh, ow) */
    int oh, ow;           /* output size */
    int folded_t, folded_l; /* of pad_t, pad_l: a zero_pad's before the conv, folded into it */
} rg_conv_geom;

/* col (C*KH*KW, OH*OW) from x (C, H, W): row (c, i, j) holds the input under window tap
 * (i, j) of channel c for every output position, zero where the tap falls in padding. */
void rg_im2col(const float *x, const rg_conv_geom *g, float *col);
/* dx (C, H, W) += the scatter of dcol (C*KH*KW, OH*OW): the adjoint of rg_im2col. */
void rg_col2im_add(const float *dcol, const rg_conv_geom *g, float *dx);

/* Direct stride-1 and stride-2 convolution without im2col (conv_direct.c), for convolutions of at most
 * RG_DIRECT_MAX_TAPS taps (channels x kh x kw, both ways), or Winograd's channels, on a CPU
 * with AVX2 and FMA (or AVX-512; REGRAD_MAX_ISA=AVX2 holds it to AVX2); rg_direct_conv_fits
 * says whether it applies. */
#define RG_DIRECT_MAX_TAPS 1152
bool rg_direct_conv_fits(const rg_conv_geom *g, int filters, int groups);
/* Off: every convolution takes im2col and the BLAS (also REGRAD_DIRECT_CONV=0 in the
 * environment), so tests and benchmarks can compare the two.  On: where the CPU can. */
void rg_direct_conv_allow(bool on);
bool rg_direct_conv_allowed(void);
/* Whether Winograd's products may run (REGRAD_WINOGRAD=0 in the environment: never). */
bool rg_winograd_allowed(void);
/* Floats of the packed weights (shared by all threads) and of one thread's buffers. */
size_t rg_direct_conv_packed_floats(const rg_conv_geom *g, int filters);
size_t rg_direct_conv_work_floats(const rg_conv_geom *g, int filters);
/* Packs W (filters, C, kh, kw) for the forward product, or (for_dx) transposed and
 * flipped for the input's gradient. */
void rg_direct_conv_pack(const float *w, int filters, const rg_conv_geom *g, bool for_dx,
                         float *packed);
/* The weight at (row, column, tap) of a convolution's product: W[row][col][tap] forward, or
 * for dx (rows the channels, columns the filters) W[col][row] turned 180 degrees. */
static inline float rg_conv_weight(const float *w, const rg_conv_geom *g, bool for_dx, int row, int col,
                                   int tap) {
    const int kk = g->kh * g->kw;
    return for_dx ? w[((size_t)col * g->c + row) * kk + (kk - 1 - tap)] : w[((size_t)row * g->c + col) * kk + tap];
}
/* The geometry of dx = conv(dY, W~): the filters as channels, dY's size as the input's,
 * stride 1, the padding mirrored, x's size as the output's. */
static inline rg_conv_geom rg_conv_transposed(const rg_conv_geom *g, int filters) {
    rg_conv_geom t = *g;
    t.c = filters, t.h = g->oh, t.w = g->ow;
    t.pad_t = (g->kh - 1) * g->dilation - g->pad_t;
    t.pad_l = (g->kw - 1) * g->dilation - g->pad_l;
    t.oh = g->h, t.ow = g->w;
    return t;
}
/* For `samples` consecutive samples: y (filters, OH, OW) = W . x + bias (bias may be NULL),
 * plus sum (y's shape, or NULL) added last. */
void rg_direct_conv_forward(const float *x, int samples, const rg_conv_geom *g, int filters,
                            const float *packed, const float *bias, const float *sum, float *y,
                            float *work);
/* Whether rg_direct_conv_backward also takes dx; else the caller does. */
bool rg_direct_conv_takes_dx(const rg_conv_geom *g, int filters);
/* Samples per backward call, at most (its buffers fit in L2; Winograd: any number). */
int rg_direct_conv_group(const rg_conv_geom *g, int filters);
/* For `samples` consecutive samples (at most the group): dw (filters, C*kh*kw) += the sum
 * of dY . X^T; dx (C, H, W) += each input's gradient when dx is not NULL (= when dx_fresh;
 * only where rg_direct_conv_takes_dx; packed_dx from rg_direct_conv_pack(..., true, ...)). */
void rg_direct_conv_backward(const float *x, const float *dy, int samples,
                             const rg_conv_geom *g, int filters, const float *packed_dx,
                             float *dw, float *dx, bool dx_fresh, float *work);
/* The direct kernels' matrix product: c (rows, positions) = packed (rows, taps, in panels
 * of 4 rows) . the rows of x at off[tap], computed up to the next multiple of 16 (AVX-512)
 * or 24 (AVX2) positions and of 4 rows, which c must have room for. */
void rg_direct_product(const float *packed, int rows, int taps, const float *x, const int *off,
                       size_t positions, float *c, size_t ldc);
/* c (rows, cols) += a (rows, len) . b (cols, len)^T, rows lda and ldb floats apart: the
 * direct kernels' sums over positions (len a multiple of 16; a reads up to 4 rows). */
void rg_direct_product_t(const float *a, size_t lda, int rows, const float *b, size_t ldb, int cols,
                         size_t len, float *c, size_t ldc);

/* Winograd F(2x2, 3x3) for 3x3, stride-1 convolutions of 8 to RG_DIRECT_MAX_TAPS channels
 * both ways (conv_winograd.c), taken by the direct kernels for the forward product, dW and
 * dx when it fits (REGRAD_WINOGRAD=0 turns it off).  Packed weights and buffers as the
 * direct kernels' (for dx: the transposed geometry, which is again such a convolution). */
bool rg_winograd_fits(const rg_conv_geom *g, int filters);
size_t rg_winograd_packed_floats(const rg_conv_geom *g, int filters);
size_t rg_winograd_work_floats(const rg_conv_geom *g, int filters);
void rg_winograd_pack(const float *w, int filters, const rg_conv_geom *g, bool for_dx, float *packed);
/* y (filters, OH, OW) = (or += when add) W . x + bias (+ sum, y's shape, when not NULL)
 * for `samples` samples x_size and y_size floats apart.  The 2x2 tiles of y start at row
 * -origin_t, column -origin_l (0 or 1): dx of a conv with a zero_pad folded in tiles as dx
 * of the padded input would. */
void rg_winograd_forward(const float *x, size_t x_size, int samples, const rg_conv_geom *g,
                         int filters, const float *packed, const float *bias, const float *sum,
                         float *y, size_t y_size, bool add, int origin_t, int origin_l, float *work);
/* dw (filters, C, 3, 3) += the sum over `samples` samples of dY . X (the forward's tiles),
 * and when dx is given dx (x_size apart) = (dx_fresh) or += conv(dY, W~) with packed_dx,
 * tiled as dx of the padded input would be were a zero_pad folded in. */
void rg_winograd_backward(const float *x, size_t x_size, const float *dy, size_t dy_size,
                          int samples, const rg_conv_geom *g, int filters, float *dw,
                          const float *packed_dx, float *dx, bool dx_fresh, float *work);

#endif

/*
 * cuda.h — the CUDA backend's entry points for the C side (the .cu files beside it, built when
 * CMake finds nvcc: REGRAD_CUDA=AUTO|ON|OFF, RG_HAVE_CUDA defined): the device probe,
 * device buffers and copies, the optimizers' update rules (the same bits as the CPU's:
 * every operation rounded as the C source rounds it, no contraction), every op of the zoo
 * forward and backward (products through cuBLAS, convolutions through cuDNN where it is
 * found, both opened at first use), the backend's passes over buffers, and reductions in a
 * fixed order.  Each launch goes on the default stream, and so do the copies, but for a
 * batch's uploads, which have a stream of their own, and a pass being captured as a CUDA
 * graph (capture.cu), which has its own too.  What is left: docs/cuda.md.
 */
#ifndef RG_CUDA_H
#define RG_CUDA_H

#include <regrad.h>
#include <stddef.h>
#include <stdint.h>

#include "../../optim/step.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "../kernels.h" /* rg_conv_geom */

#define RG_CUDA_MAX_TERMS 8 /* a weighted sum's inputs: RG_MAX_INPUTS */

/* Whether device `index` can be used: RG_OK with its name, memory and compute capability
 * in desc; else RG_ERR_STATE with the reason (no driver, no device), or RG_ERR_ARG for an
 * index past the devices there are. */
rg_status rg_cuda_probe(int index, char *desc, size_t len);
/* Makes device `index` the calling thread's (after a successful probe). */
rg_status rg_cuda_use(int index);
/* RG_OK, or the first failure since the last call (a kernel, a copy, a product), named,
 * once the device's work so far has finished (wait) or at once; and how the host side
 * records one. */
rg_status rg_cuda_status(bool wait);
void rg_cuda_note_failure(const char *what, const char *why);

/* Device memory: zeroed floats (NULL when out of memory; n ints fit in n floats),
 * released; copies of n floats up and down. */
float *rg_cuda_alloc(size_t floats);
void rg_cuda_release(float *p);
rg_status rg_cuda_upload(float *device, const float *host, size_t n);
rg_status rg_cuda_download(float *host, const float *device, size_t n);
/* Copies down that do not wait (backend.h, read_later): n floats of device memory queued
 * behind the work so far, to land in `host` at rg_cuda_downloads_done, which waits for
 * them alone (pinned staging between); NaN in each that failed, the failure returned. */
void rg_cuda_download_later(float *host, const float *device, size_t n);
rg_status rg_cuda_downloads_done(void);
/* A copy up that does not wait, outside a captured pass: `bytes` of host memory, which the
 * caller may rewrite at once, copied into `device` behind the work so far (through pinned
 * staging; at once, waiting, where there is none or past 4 MiB); a failure noted for the
 * step's status. */
void rg_cuda_upload_later(void *device, const void *host, size_t bytes);
/* A batch's copies up from pinned host memory (backend.h, upload_batch): begin, each copy,
 * end, which returns once they are done. */
void rg_cuda_upload_batch_begin(void);
void rg_cuda_upload_async(void *device, const void *host, size_t bytes);
void rg_cuda_upload_batch_end(void);
/* A scratch buffer of the device's (*p, *have bytes) grown to at least `bytes`, its old
 * contents dropped; false when the device has no room (*p NULL then). */
bool rg_cuda_grow(void **p, size_t *have, size_t bytes);
/* The device scratch of per-channel sums in runs (launch.h's rg_cuda_run_sums): room for
 * `doubles` sums and `channels` tickets; part NULL, with the failure noted for `what`, when
 * the device has no room. */
typedef struct {
    double *part;
    unsigned *tickets;
} rg_cuda_runs_scratch;
rg_cuda_runs_scratch rg_cuda_run_scratch(size_t doubles, int channels, const char *what);
/* A pass captured as a CUDA graph (capture.cu): begin sends the launches to a capture's
 * stream; end returns the graph ready to replay, or NULL with why the capture broke (the
 * failures it caused dropped: run the pass again); replay_begin drops the work asked from
 * then on, noting it; replay launches the graph on the default stream, after replay_begin
 * only when the work noted is the capture's (else *changed); free drops it.  memory_moves
 * counts the scratch buffers moved so far (a graph captured before a move holds an old
 * address).  The queued sums' place (health.cu), and back to it. */
rg_status rg_cuda_capture_begin(char *why, size_t len);
void *rg_cuda_capture_end(char *why, size_t len);
void rg_cuda_replay_begin(void);
rg_status rg_cuda_replay(void *graph, bool *changed);
void rg_cuda_replay_free(void *graph);
unsigned long rg_cuda_memory_moves(void);
void rg_cuda_sums_mark(size_t mark[3]);
void rg_cuda_sums_back(const size_t mark[3]);
/* Host memory of `bytes` at p pinned (on) for faster copies, or unpinned; a pin refused
 * leaves the copies as they were, slower. */
void rg_cuda_pin(void *p, size_t bytes, bool on);

/* One optimizer step of kind over w[0, n) (device buffers; m0, m1 NULL where the kind keeps
 * fewer moments), with the constants of rg_optim_consts: bit for bit the CPU's update. */
void rg_cuda_optim_update(rg_optim_kind kind, const step_consts *k, size_t n, float *w,
                          const float *g, float *m0, float *m1);

/* y = act(x) over n values (x may be y: in place); dx = (fresh) or += act'(x) dy (y the
 * forward's output). */
void rg_cuda_activation_forward(rg_act act, const float *x, float *y, size_t n);
void rg_cuda_activation_backward(rg_act act, const float *x, const float *y, const float *dy,
                                 float *dx, size_t n, bool fresh);

/* The health monitor's reductions (health.cu), in a fixed order, queued: their results
 * arrive in the host memory given (which must stay until then) at rg_cuda_sums_flush, NaN
 * where the device failed: per unit of an output (units x inner values a sample, size a
 * sample) its sums as rg_cpu_unit_sums gives them; each sample's sum of squares; the sums
 * of squares of a and b (b copied to keep, device memory, when given); each piece's
 * squared change a - b (b NULL: its squares) (at, len: host arrays; at SIZE_MAX: skipped, out left). */
void rg_cuda_unit_sums(const float *out, size_t size, int units, int batch, rg_count_kind want, float lo,
                       float hi, double *sum, double *sq, double *relu, long *near, int *dead);
/* rg_cuda_unit_sums of out into sums (sum, sq, relu: units each, in that order) and, in the
 * same pass, of act(out) as the activation's forward stores it into act_sums (counting
 * act_want within act_lo and hi) */
void rg_cuda_unit_sums_through(const float *out, size_t size, int units, int batch, rg_count_kind want, float lo,
                               float hi, double *sums, long *near, int *dead, rg_act act, rg_count_kind act_want,
                               float act_lo, double *act_sums, long *act_near, int *act_dead);
void rg_cuda_sample_squares(const float *x, size_t size, int batch, double *out);
void rg_cuda_squares_apart(const float *a, size_t na, const float *b, size_t nb, double *sa, double *sb);
void rg_cuda_squares2(const float *a, const float *b, float *keep, size_t n, double *sa, double *sb);
void rg_cuda_chunk_squares(const float *a, const float *b, const size_t *at, const size_t *len, size_t n,
                           double *out);
/* Room in that queue for n figures' parts that a kernel writes, figure i's parts[i] doubles
 * after those before it, added in order into *out[i] at the flush: the first's device
 * address, or NULL (each *out[i] NaN) without device memory for them. */
double *rg_cuda_sums_slots(size_t n, const size_t *parts, double *const *out);
/* A layer's input moments into host memory, queued for rg_cuda_sums_flush: moment (f x f)
 * = E[x x^T] and mean = E[x] over the batch of a dense layer's inputs (q NULL; f values a
 * sample; and with rows the inputs themselves, as floats) or over samples and positions of
 * a convolution's im2col columns (geometry q, f = c kh kw, size values a sample), as
 * rg_cpu_input_moments; a status when the device fails. */
rg_status rg_cuda_input_moments(const float *x, size_t size, int batch, int f, const rg_conv_geom *q, float *moment,
                                float *mean, float *rows);

/* GRA's per-step arithmetic on layers' device buffers (gra.cu); the mean is device memory
 * for the centred gradient and the layer's step (GRA's own copy), a host array with the
 * moment; the moment is a host array, qm and the samples device memory (GRA's own
 * copies).  On n layers at once (backend.h's rg_gra_layer; a launch for up to 16), their
 * figures queued for rg_cuda_sums_flush: centred gradients gw -= gb mean^T and steps back
 * b -= pm (the CPU's bits); steps w - w0, each row's product with the mean into pm and the
 * squares into *squares; bias steps db = b - b0 and shifts |pm + db|^2 into *shift.  On
 * one layer, queued for rg_cuda_sums_flush too: the sum over units of E||dW x + db||^2
 * from the input's moments, or over the samples of |dW x + db|^2 (backend.h's
 * function_change and function_change_rows); the sums of the bound from the covariance
 * split (rg_bound_sums; gram's upper triangle, the rest left as it was) from the step's
 * products with qm's k + 1 rows (false: no device memory for them).  NaN where the device
 * fails. */
void rg_cuda_centre_gradients(const rg_gra_layer *l, int n);
void rg_cuda_layer_steps(const rg_gra_layer *l, int n);
void rg_cuda_uncentre_steps(const rg_gra_layer *l, int n);
void rg_cuda_step_shifts(const rg_gra_layer *l, int n);
void rg_cuda_times_matrix(float *out, const float *x, int units, int f, const float *p);
void rg_cuda_function_change(const float *dw, const float *db, int units, int f, const float *moment,
                             const float *mean, double *sum);
void rg_cuda_function_change_rows(const float *dw, const float *db, int units, int f, const float *rows, int n,
                                  double *sum);
bool rg_cuda_bound_sums(const float *dw, const float *db, int units, int f, const float *qm, int k,
                        rg_bound_sums *sums);
void rg_cuda_sums_flush(void);

/* Reductions over n values in a fixed order (blocks folded in order on the host), so the
 * same input gives the same bits on every run: sum x^2 in double; how many are 0; how many
 * are NaN or Inf; the index of the first NaN or Inf (n: none). */
double rg_cuda_sum_squares(const float *x, size_t n);
/* rg_cuda_sum_squares's figure of each of n pieces, the same bits, queued for *out[i]
 * (rg_cuda_sums_flush), up to 32 pieces a launch */
void rg_cuda_sums_of_squares(const float *const *x, const size_t *len, double *const *out, int n);
size_t rg_cuda_count_zeros(const float *x, size_t n);
long rg_cuda_count_nonfinite(const float *x, size_t n);
size_t rg_cuda_first_nonfinite(const float *x, size_t n);

/* Passes over n floats, each the CPU's bits: x = v; x *= f; dst = src; out = a - b;
 * x = x0 + f d; x *= m; x clamped to [-v, v]. */
void rg_cuda_fill(float *x, size_t n, float v);
void rg_cuda_scale(float *x, size_t n, float f);
void rg_cuda_copy(float *dst, const float *src, size_t n);
void rg_cuda_subtract(float *out, const float *a, const float *b, size_t n);
void rg_cuda_step_along(float *x, const float *x0, const float *d, size_t n, float f);
void rg_cuda_multiply(float *x, const float *m, size_t n);
void rg_cuda_clamp(float *x, size_t n, float v);
/* The classic remedies' pieces (backend.h): each piece's sum of squares in a fixed order,
 * queued for out[c] (rg_cuda_sums_flush); each piece scaled by f[c] in one launch. */
void rg_cuda_pieces_squares(const float *x, const size_t *at, const size_t *len, size_t n, double *out);
void rg_cuda_scale_pieces(float *x, const size_t *at, const size_t *len, size_t n, const float *f);
/* LassoNet's proximal step (prox.cu; backend.h's hier_prox), queued: the CPU's bits. */
rg_status rg_cuda_hier_prox(float *theta, float *w1, int k, int d, int h, double M, double lambda);

/* The precision of the graph that runs next (precision.cu): its products on TF32 tensor
 * cores, and its activations and their gradients stored as bf16 (their buffers keep a
 * float's room a value, so copies and fills of whole buffers stay right; the losses stay
 * float).  Whether this device has bf16 (RG_OK, or why not).  n floats into dst as bf16
 * (an input's upload into the activations' type).  A bf16 copy of n floats (weights for a
 * bf16 product), the same one for the same weights until the next pass begins; NULL when
 * the device has no room (noted).  A pass begins: the weights may have moved since the
 * last, so their copies are made again. */
extern bool rg_cuda_activations_bf16;
void rg_cuda_set_precision(bool tf32, bool bf16);
rg_status rg_cuda_bf16_ready(void);
void rg_cuda_to_bf16(float *dst, const float *src, size_t n);
const void *rg_cuda_bf16_copy(const float *src, size_t n);
void rg_cuda_begin_pass(void);
/* dst += src over n values, src bf16 (a gradient made in bf16 into its float one) */
void rg_cuda_add_bf16(float *dst, const void *src, size_t n);

/* cuBLAS, opened at first use: RG_OK, or RG_ERR_STATE saying what is missing.  The product
 * C = alpha op(A) op(B) + beta C of row-major matrices (rg_sgemm's arguments), fp32 strict. */
rg_status rg_cuda_blas_ready(void);
/* The products from now on: fp32's on TF32 tensor cores (tf32) or strict; bf16's (bf16)
 * on the tensor cores. */
void rg_cuda_set_products(bool tf32, bool bf16);
rg_status rg_cuda_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                        int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* `count` such products, the i-th of a + i stride_a, b + i stride_b into c + i stride_c
 * (a stride of 0 shares that operand). */
rg_status rg_cuda_sgemm_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                                int lda, size_t stride_a, const float *b, int ldb, size_t stride_b, float beta,
                                float *c, int ldc, size_t stride_c, int count);

/* C = alpha op(A) op(B) + beta C with A and B bf16 and C bf16 (c_bf16) or float, summed
 * in fp32 (cublasGemmEx): bf16's products. */
rg_status rg_cuda_gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const void *a, int lda,
                            const void *b, int ldb, float beta, void *c, bool c_bf16, int ldc);
/* `count` such products, strides in values (cublasGemmStridedBatchedEx) */
rg_status rg_cuda_gemm_bf16_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const void *a,
                                    int lda, size_t stride_a, const void *b, int ldb, size_t stride_b, float beta,
                                    void *c, bool c_bf16, int ldc, size_t stride_c, int count);

/* The dense layer (W: out x in, row-major): y = b + x W^T; dW += dy^T x, db += the sum of
 * dy over the batch (when db), dx = (fresh) or += dy W (when dx). */
rg_status rg_cuda_dense_forward(const float *x, const float *w, const float *b, float *y, int batch,
                                int in, int out);
rg_status rg_cuda_dense_backward(const float *x, const float *dy, const float *w, float *dw, float *db,
                                 float *dx, bool fresh, int batch, int in, int out);
/* the dense layer's tangent: t = db + t_in W^T + x dW^T (db, dw: NULL for no direction) */
rg_status rg_cuda_dense_tangent(const float *x, const float *t_in, const float *w, const float *dw, const float *db,
                                float *t, int batch, int in, int out);

/* The ops without weights, each the CPU's bits: y = a + b; dx = (fresh) or += dy; zero
 * padding of `planes` h x w planes into oh x ow at (top, left), and back (+=); input k's
 * `part` floats a sample at `at` within a concat's `size`, and back (+=); each plane's mean
 * (its hw values added in order in float), and back (+= dy / hw); (c, h, w) to channels-last
 * order, and back (+=). */
void rg_cuda_add(float *y, const float *a, const float *b, size_t n);
/* y = sum_k w_k x_k over n values (the terms in order, as the CPU adds them), and a
 * term's gradient dx += w dy. */
typedef struct rg_cuda_terms {
    int n;
    float w[RG_CUDA_MAX_TERMS];
    const float *x[RG_CUDA_MAX_TERMS];
} rg_cuda_terms;
void rg_cuda_weighted_sum(float *y, const rg_cuda_terms *t, size_t n);
void rg_cuda_add_scaled(float *dx, const float *dy, float w, size_t n);
/* An add's gradient to its inputs in one pass: dx0 = dy (fresh0) or dx0 += dy, and the
 * same for dx1 (NULL: only dx0). */
void rg_cuda_pass_on(float *dx0, bool fresh0, float *dx1, bool fresh1, const float *dy, size_t n);
void rg_cuda_zero_pad_forward(const float *x, float *y, size_t planes, int h, int w, int oh, int ow, int top,
                              int left);
void rg_cuda_zero_pad_backward(const float *dy, float *dx, size_t planes, int h, int w, int oh, int ow, int top,
                               int left);
void rg_cuda_concat_forward(const float *x, float *y, int batch, size_t part, size_t size, size_t at);
void rg_cuda_concat_backward(const float *dy, float *dx, int batch, size_t part, size_t size, size_t at);
void rg_cuda_global_avg_pool_forward(const float *x, float *y, size_t planes, size_t hw);
void rg_cuda_global_avg_pool_backward(const float *dy, float *dx, size_t planes, size_t hw);
void rg_cuda_flatten_hwc_forward(const float *x, float *y, int batch, size_t c, size_t hw);
void rg_cuda_flatten_hwc_backward(const float *dy, float *dx, int batch, size_t c, size_t hw);

/* 2-D convolution of `batch` samples of geometry q (W: filters x c/groups x kh x kw; bias
 * NULL for none): y = W col(x) + bias; dW += dY col(x)^T, db += dY's sums (when db), dx =
 * (fresh) or += the scatter of W^T dY (when dx).  col: device scratch of
 * rg_cuda_conv2d_workspace floats a sample (its activations in bf16 or not). */
size_t rg_cuda_conv2d_workspace(const rg_conv_geom *q, int filters, int groups, bool bf16);
/* Whether x itself is the column matrix (a 1x1 window at stride 1 without padding), and a
 * sample's column floats otherwise (0 when direct). */
static inline bool rg_cuda_conv_direct(const rg_conv_geom *q) {
    return q->kh == 1 && q->kw == 1 && q->stride == 1 && q->pad_t == 0 && q->pad_l == 0 && q->oh == q->h &&
           q->ow == q->w;
}
static inline size_t rg_cuda_conv_columns(const rg_conv_geom *q) {
    return rg_cuda_conv_direct(q) ? 0 : (size_t)q->c * q->kh * q->kw * q->oh * q->ow;
}
/* cuDNN's convolutions (cudnn.cu): whether it was found (and REGRAD_CUDNN is not 0) and
 * takes geometry q (not a direct one); its products in TF32 or strict fp32; y = (beta 0) or
 * += the convolution; dw += the filters' gradient, dx = (beta 0) or += the input's when dx. */
bool rg_cudnn_usable(const rg_conv_geom *q);
void rg_cudnn_set_tf32(bool on);
rg_status rg_cudnn_conv2d_forward(const float *x, const float *w, float *y, float beta, int batch,
                                  const rg_conv_geom *q, int filters, int groups);
rg_status rg_cudnn_conv2d_backward(const float *x, const float *dy, const float *w, float *dw, float *dx, float beta,
                                   int batch, const rg_conv_geom *q, int filters, int groups);
/* A batch norm's parameters for its statistics of a batch (rg_cuda_batch_norm_forward's:
 * eps, momentum, gamma, beta, the running mean and variance, aux), and whether another
 * kernel made them this pass (made). */
typedef struct rg_cuda_norm_statistics {
    float eps, momentum;
    const float *gamma, *beta;
    float *rmean, *rvar, *aux;
    bool made;
} rg_cuda_norm_statistics;
/* y = the convolution of x by w (+ what y holds when add), then + bias, then + sum, the
 * other input of an add in place on y that the convolution does (each NULL: none).  With
 * stats (NULL: none), the training statistics of y as it is finally written, for the
 * batch norm that reads it next, in the same pass where there is one (a bias or a sum to
 * add) and y's layout allows (stats->made then; the running ones updated and aux made as
 * rg_cuda_batch_norm_forward makes them, bit for bit). */
rg_status rg_cuda_conv2d_forward(const float *x, const float *w, const float *bias, const float *sum, float *y,
                                 bool add, int batch, const rg_conv_geom *q, int filters, int groups, float *col,
                                 rg_cuda_norm_statistics *stats);
rg_status rg_cuda_conv2d_backward(const float *x, const float *dy, const float *w, float *dw, float *db,
                                  float *dx, bool fresh, int batch, const rg_conv_geom *q, int filters, int groups,
                                  float *col);

/* Max and average pooling of `batch` samples of geometry q over k x k windows at `stride`
 * with `pad` cells each side: the first maximum (its offset in the plane into arg, -1 for
 * a padding cell, but for the 2x2 stride-2 unpadded window, which finds it again
 * backward, and the 1x1 unpadded one, whose one input it is; padding cells are zeros
 * where zero_padded, else left out) and the mean
 * counting padded cells as zeros; backward dx += each output's gradient at what it took. */
void rg_cuda_max_pool_forward(const float *x, float *y, int *arg, int batch, const rg_conv_geom *q, int k,
                              int stride, int pad, bool zero_padded);
void rg_cuda_max_pool_backward(const float *x, const float *y, const int *arg, const float *dy, float *dx,
                               int batch, const rg_conv_geom *q, int k, int stride, int pad);
/* max pooling's tangent: t_in at each window's first maximum of x (0 for a padding cell) */
void rg_cuda_max_pool_tangent(const float *x, const float *t_in, float *t, int batch, const rg_conv_geom *q, int k,
                              int stride, int pad, bool zero_padded);
void rg_cuda_avg_pool_forward(const float *x, float *y, int batch, const rg_conv_geom *q, int k, int stride,
                              int pad);
void rg_cuda_avg_pool_backward(const float *dy, float *dx, int batch, const rg_conv_geom *q, int k, int stride,
                               int pad);

/* Batch normalisation of `batch` samples of C channels of hw values, of parameters p: with
 * the batch's statistics (train; the running ones updated; made already by the convolution
 * before it when p->made) or the running ones, into p->aux (mean[C], inv[C], then (scale,
 * shift) per channel), y = x scale + shift, then relu when fused.
 * Backward: dgamma, dbeta += their sums; dx = (fresh) or += the input's gradient (when dx),
 * dy masked by the fused relu when relu; coef: 3C floats of device scratch. */
void rg_cuda_batch_norm_forward(const float *x, float *y, int batch, int C, size_t hw, bool train,
                                const rg_cuda_norm_statistics *p, bool relu);
void rg_cuda_batch_norm_backward(const float *x, const float *dy, float *dx, int batch, int C, size_t hw, bool train,
                                 const float *gamma, const float *aux, bool relu, float *dgamma, float *dbeta,
                                 float *coef, bool fresh);
/* Its tangent along the input's (t_in) and gamma's and beta's directions (NULL: none),
 * after a forward (aux, coef: as backward's); the fused relu's mask is the relu's own. */
void rg_cuda_batch_norm_tangent(const float *x, const float *t_in, float *t, int batch, int C, size_t hw, bool train,
                                const float *gamma, const float *aux, const float *dgamma, const float *dbeta,
                                float *coef);

/* Inverted dropout of n values at `rate`: in training mask = keep or 0 by the CPU's hash
 * of (key, index), y = x mask; else y = x.  Backward dx += dy mask (training) or dy. */
void rg_cuda_dropout_forward(const float *x, float *y, float *mask, size_t n, float rate, uint64_t key, bool train);
void rg_cuda_dropout_backward(const float *dy, const float *mask, float *dx, size_t n, bool train);

/* Softmax over rows of k values, and back (dx += y (dy - dy.y)). */
void rg_cuda_softmax_forward(const float *x, float *y, size_t rows, int k);
void rg_cuda_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, int k);
/* The backward tangents of the exact Hessian's products (curvature.c; fp32 and tf32 only),
 * as the CPU's *_backward_tangent_values: an activation's dx += f''(x) t dy over n values
 * and softmax's rows along its output's tangent t (activation.cu); batch norm's (norm.cu:
 * aux as its forward left it, dx NULL for dgamma's term alone). */
void rg_cuda_activation_backward_tangent(rg_act act, const float *x, const float *y, const float *t,
                                         const float *dy, float *dx, size_t n);
void rg_cuda_softmax_backward_tangent(const float *y, const float *t, const float *dy, float *dx, size_t rows,
                                      int k);
void rg_cuda_batch_norm_backward_tangent(const float *x, const float *t, const float *dy, float *dx, float *dgamma,
                                         int batch, int C, size_t hw, bool train, const float *aux, bool fused,
                                         const float *gamma, const float *gamma_t);

/* Mean squared error of y (batch x d) against target (NULL: the one-hot labels): loss[0];
 * backward dy += and dtarget -= 2 dloss[0] / (batch d) (y - target) (each when not NULL). */
void rg_cuda_mse_forward(const float *y, const float *target, const int *labels, size_t d, int batch, float *loss);
void rg_cuda_mse_backward(const float *y, const float *target, const int *labels, const float *dloss, float *dy,
                          float *dtarget, size_t d, int batch);
/* its tangent along y's t_y and the target's t_target (NULL: none): 2 / (batch d) times the
 * sum of (y - target) (t_y - t_target), in double in order, into t[0] */
void rg_cuda_mse_tangent(const float *y, const float *target, const int *labels, const float *t_y,
                         const float *t_target, float *t, size_t d, int batch);

/* Softmax cross-entropy of logits z (batch x k) against labels (device ints), label
 * smoothing s: p = softmax(z), loss[0] = the batch's mean (scratch: batch doubles); dz +=
 * dloss[0] / batch (p - s/k - (1 - s) onehot). */
void rg_cuda_softmax_xent_forward(const float *z, const int *labels, float *p, double *scratch,
                                  float *loss, int batch, int k, float smoothing);
void rg_cuda_softmax_xent_backward(const float *p, const int *labels, const float *dloss, float *dz,
                                   int batch, int k, float smoothing);
/* the loss's tangent along the logits' t_in: the batch's mean of its gradient . t_in */
void rg_cuda_softmax_xent_tangent(const float *p, const int *labels, const float *t_in, float *t, int batch, int k,
                                  float smoothing);

#ifdef __cplusplus
}
#endif

#endif

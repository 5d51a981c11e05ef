/*
 * cpu.h — what the CPU backend's table (backend.c) lists: every op's forward, backward,
 * tangent and backward tangent (op_*.c), the workspace plans of the ops that need one, and the reductions and passes
 * the trainer, the monitor and GRA ask for (health.c, gra.c, vector.c).
 */
#ifndef RG_CPU_H
#define RG_CPU_H

#include "../backend.h"

#define RG_CPU_OP(kind, name)                                                                 \
    void rg_cpu_##name##_forward(rg_graph *g, rg_node_impl *n, int batch, bool train);       \
    void rg_cpu_##name##_backward(rg_graph *g, rg_node_impl *n, int batch);                  \
    void rg_cpu_##name##_tangent(rg_graph *g, rg_node_impl *n, int batch);
RG_OPS(RG_CPU_OP)
#undef RG_CPU_OP
void rg_cpu_conv2d_plan(rg_graph *g, rg_node_impl *n);
void rg_cpu_batch_norm_plan(rg_graph *g, rg_node_impl *n);
/* The tangent of an op linear in its inputs and without parameters: its own forward run
 * on the inputs' tangents (op_combine.c). */
void rg_cpu_linear_tangent(rg_graph *g, rg_node_impl *n, int batch);
/* Batch norm's tangent over plain arrays (op_norm.c; the device stand-in's too): t from the
 * input x and its tangent t_in, the statistics used forward and the directions of gamma and
 * beta (NULL: none). */
void rg_cpu_batch_norm_tangent_values(const float *x, const float *t_in, float *t, int batch, int C, size_t hw,
                                      bool train, const float *mean, const float *inv, const float *gamma,
                                      const float *dgamma, const float *dbeta);
/* The backward tangents of the ops whose backward is not linear in their forward values,
 * and three of them over plain arrays (the device stand-in's too): dx += (activation's f''
 * x t x dy) over count values; softmax's rows of k along its output's tangent t; batch
 * norm's (aux: mean[C], inv[C], the fused relu's pairs; dx NULL: dgamma's term alone). */
void rg_cpu_activation_backward_tangent_values(rg_act a, const float *x, const float *y, const float *t,
                                               const float *dy, float *dx, long count);
void rg_cpu_softmax_backward_tangent_values(const float *y, const float *t, const float *dy, float *dx, long rows,
                                            int k);
void rg_cpu_batch_norm_backward_tangent_values(const float *x, const float *t, const float *dy, float *dx,
                                               float *dgamma, int batch, int C, size_t hw, bool train,
                                               const float *aux, bool fused, const float *gamma,
                                               const float *gamma_t);
void rg_cpu_dense_backward_tangent(rg_graph *g, rg_node_impl *n, int batch);
void rg_cpu_conv2d_backward_tangent(rg_graph *g, rg_node_impl *n, int batch);
void rg_cpu_activation_backward_tangent(rg_graph *g, rg_node_impl *n, int batch);
void rg_cpu_softmax_backward_tangent(rg_graph *g, rg_node_impl *n, int batch);
void rg_cpu_batch_norm_backward_tangent(rg_graph *g, rg_node_impl *n, int batch);

void rg_cpu_squares2(const float *a, const float *b, float *keep, size_t n, double *sa, double *sb);
void rg_cpu_squares_apart(const float *a, size_t na, const float *b, size_t nb, double *sa, double *sb);
void rg_cpu_unit_sums(const rg_node_impl *n, int batch, rg_count_kind want, float lo, float hi,
                      float *scratch, double *sum, double *sq, double *relu, long *near, int *dead);
void rg_cpu_sample_squares(const float *x, size_t size, int batch, double *out);
/* y[i] = sigmoid(x[i]) or tanh(x[i]) for i < n, in vector lanes (act_math.c); x == y allowed */
void rg_cpu_sigmoid_run(const float *x, float *y, long n);
void rg_cpu_tanh_run(const float *x, float *y, long n);
void rg_cpu_input_moments(const float *x, size_t size, int batch, int f, const rg_conv_geom *q,
                          float *moment, float *mean, float *rows);
void rg_cpu_chunk_squares(const float *a, const float *b, const size_t *at, const size_t *len,
                          size_t n, double *out);
long rg_cpu_count_nonfinite(const float *x, size_t n);

double rg_cpu_polar(float *w, int rows, int cols, int max_steps, double tolerance, double max_flops);
void rg_cpu_function_change_rows(const float *dw, const float *db, int units, int f, const float *rows, int n,
                                 float *scratch, double *sum);
void rg_cpu_recenter_units(float *w, float *b, int units, size_t row, const double *scale,
                           const double *mean);
double rg_cpu_zero_sum_taps(float *w, int units, int channels, int taps);
void rg_cpu_function_change(const float *dw, const float *db, int units, int f,
                            const float *moment, const float *mean, float *scratch, double *sum);
void rg_cpu_function_change_bound(const float *dw, const float *db, int units, int f, const float *qm, int k,
                                  float *scratch, rg_bound_sums *sums);
/* The bound's sums in parts: the step's products with the split's k rows and the mean
 * (rows = k + 1 a unit) and its sum of squares, returned; the sums over units of the
 * shift's terms (p[k] + db)^2 and of P^T P's upper triangle (added into gram, row
 * stride 8). */
double rg_cpu_step_products(const float *dw, int units, int f, const float *qm, int rows, float *products);
void rg_cpu_bound_sums(const float *products, const float *db, int units, int k, double *shift, double *gram);
double rg_cpu_layer_step(float *dw, const float *w, const float *w0, int units, int f, const float *mean,
                         float *pm);
void rg_cpu_centre_gradient(float *gw, const float *gb, int units, int f, const float *mean);
void rg_cpu_layer_steps(const rg_gra_layer *l, int n);
void rg_cpu_uncentre_steps(const rg_gra_layer *l, int n);
void rg_cpu_step_shifts(const rg_gra_layer *l, int n);
void rg_cpu_centre_gradients(const rg_gra_layer *l, int n);
void rg_cpu_sums_of_squares(const float *const *x, const size_t *len, double *const *out, int n);
void rg_cpu_times_matrix(float *out, const float *x, int units, int f, const float *p);
void rg_cpu_scale(float *x, size_t n, float f);
void rg_cpu_copy(float *dst, const float *src, size_t n);
void rg_cpu_subtract(float *out, const float *a, const float *b, size_t n);
void rg_cpu_step_along(float *x, const float *x0, const float *d, size_t n, float f);
void rg_cpu_multiply(float *x, const float *m, size_t n);
void rg_cpu_clamp(float *x, size_t n, float v);
double rg_cpu_squares_in_order(const float *x, size_t n);
void rg_cpu_pieces_squares(const float *x, const size_t *at, const size_t *len, size_t n, double *out);
void rg_cpu_scale_pieces(float *x, const size_t *at, const size_t *len, size_t n, const float *f);
/* LassoNet's proximal step (prox.c; backend.h's hier_prox) */
rg_status rg_cpu_hier_prox(float *theta, float *w1, int k, int d, int h, double M, double lambda);
void rg_cpu_fill(float *x, size_t n, float v);
size_t rg_cpu_first_nonfinite(const float *x, size_t n);
size_t rg_cpu_count_zeros(const float *x, size_t n);
void rg_cpu_unit_scores(const float *w, size_t units, size_t len, int norm, bool per_weight,
                        float *out);

#endif

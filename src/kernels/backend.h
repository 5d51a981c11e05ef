/*
 * backend.h — the seam between what the graph describes and where it runs.  An op's file in
 * src/ops/ says what the op is (shapes, parameters, flags, builders); a backend computes it:
 * its forward and backward for every op kind, where its buffers live, and the reductions
 * and element-wise passes the trainer, the monitor and GRA ask of parameters, gradients and
 * activations.  The CPU backend (src/kernels/cpu/) is the one there is; a CUDA one
 * (src/kernels/cuda/) fills the same table.
 */
#ifndef RG_BACKEND_H
#define RG_BACKEND_H

#include "../internal.h"
#include "../optim/step.h"
#include "kernels.h"

/* One op on one backend.  forward computes n->out for `batch` samples from the inputs'
 * outputs; backward accumulates (+=) into the inputs' dout and the parameter gradients
 * from n->dout (NULL: the op does not propagate); tangent, after a forward pass, writes
 * n's tangent (forward mode: the derivative of n->out along the inputs' tangents and the
 * parameters' direction, rg_tangent_in / rg_param_tangent) to rg_tangent_out, reading only
 * what backward reads; plan, when present, sizes what the op
 * needs of the graph's shared workspace (n->workspace, n->workspace_per_sample) for its
 * geometry, at build and again when memory planning folds padding into it;
 * backward_tangent, for an op whose backward is not linear in its forward values (NULL:
 * it is, so the term is zero), adds to the inputs' dout and the parameter gradients the
 * tangent of backward's result along the forward tangents with the op's gradient held at
 * rg_adjoint (the exact Hessian's second-order term, curvature.c), reading only what
 * backward reads. */
typedef struct rg_backend_op {
    void (*forward)(rg_graph *g, rg_node_impl *n, int batch, bool train);
    void (*backward)(rg_graph *g, rg_node_impl *n, int batch);
    void (*tangent)(rg_graph *g, rg_node_impl *n, int batch);
    void (*plan)(rg_graph *g, rg_node_impl *n);
    void (*backward_tangent)(rg_graph *g, rg_node_impl *n, int batch);
} rg_backend_op;

/* One copy of a batch's to the device (backend->upload_batch). */
typedef struct rg_upload {
    void *device;
    const void *host;
    size_t bytes;
} rg_upload;

struct rg_backend {
    const char *name;
    rg_backend_op ops[RG_OP_COUNT];
    /* A device's bf16 (--precision bf16: every op's forward and backward store their
     * outputs and gradients as bf16): whether this device has it (RG_OK, or why not), and
     * n values of a bf16 buffer as floats the host can read, valid until the next call
     * (host_view's).  NULL where the backend has no bf16. */
    rg_status (*bf16_ready)(void);
    const float *(*host_view_bf16)(const float *x, size_t n);
    /* floats of zeroed memory aligned to at least RG_BUFFER_ALIGN bytes, and its release
     * (NULL is fine) */
    float *(*alloc)(size_t floats);
    void (*release)(float *p);
    /* n floats of one of the backend's buffers as the host can read them, valid until the
     * next call (the CPU's: the buffer itself); the index of the first NaN or Inf (n: none). */
    const float *(*host_view)(const float *x, size_t n);
    size_t (*first_nonfinite)(const float *x, size_t n);
    /* A device's (false: the host cannot touch its buffers) copies between host memory and
     * its buffers: n floats up and down, n ints (labels) up; and the optimizer's update of
     * n weights with their gradients and moments (m0, m1 NULL where the kind keeps fewer),
     * the CPU's rule and bits.  The CPU's are NULL: its buffers are the host's. */
    bool device;
    void (*upload)(float *dst, const float *src, size_t n);
    void (*download)(float *dst, const float *src, size_t n);
    /* A device's copies down that do not wait: read_later queues n values of x (stored as
     * bf16 where bf16) to land in dst as floats, behind the work queued so far; reads_done
     * waits for those copies alone (the device goes on with the work queued after them) and
     * fills each dst, NaN where a copy failed, the failure returned.  NULL (the CPU's): the
     * graph copies at once (rg_node_read_later). */
    void (*read_later)(float *dst, const float *x, size_t n, bool bf16);
    rg_status (*reads_done)(void);
    /* host memory pinned (on) for the uploads' speed, or unpinned before it is freed */
    void (*pin)(void *p, size_t bytes, bool on);
    /* A batch's copies up (its inputs and labels, from pinned host memory), run beside the
     * work queued before the last batch's copies were (which may still read the last
     * batch's buffers, never these: rg_graph_forward alternates them), the work queued
     * after them waiting for them; returns once they are done, so callers may rewrite the
     * host memory while the device still works on the last batch. */
    void (*upload_batch)(const rg_upload *copies, int n);
    void (*optim_update)(rg_optim_kind kind, const step_consts *k, size_t n, float *w, const float *g,
                         float *m0, float *m1);
    /* A device's failure so far (a kernel, a copy, a product), named, or RG_OK; with wait,
     * once its work so far has finished, which brings out a failure still running;
     * without, at once: a failure still running comes out at the next wait, or the next
     * read of the device's memory. */
    rg_status (*status)(bool wait);
    /* A device's passes captured and replayed (CUDA graphs; src/graph/replay.c): begin
     * records the work queued from then on instead of running it; end returns it ready to
     * replay, or NULL with why the capture broke (nothing ran: run the pass again);
     * replay_begin drops the device work asked from then on, only noting what it was;
     * replay queues the graph as one launch, or after replay_begin only if the work
     * asked since is what the capture recorded (else *changed, and nothing ran: run the
     * pass again); memory_moves counts the backend's scratch buffers moved so far (a
     * capture before a move holds old addresses).  NULL where the backend cannot. */
    rg_status (*capture_begin)(char *why, size_t len);
    void *(*capture_end)(char *why, size_t len);
    void (*replay_begin)(void);
    rg_status (*replay)(void *graph, bool *changed);
    void (*replay_free)(void *graph);
    unsigned long (*memory_moves)(void);
    /* Where the queued sums (flush_sums) stand, and back to there: a pass that did not
     * run (a capture that broke, a replay whose work changed) leaves none queued. */
    void (*sums_mark)(size_t mark[3]);
    void (*sums_back)(const size_t mark[3]);
    /* A device's precision from now on: its fp32 products in TF32 (tf32) or strict, and
     * its activations and their gradients stored as bf16 (bf16). */
    void (*set_precision)(bool tf32, bool bf16);
    /* The start of a pass (a forward, or a tangent pass): the weights may have moved since
     * the last one, so what a device derived from them (bf16's copies for its products) is
     * made again; inside a pass they stay put.  NULL where nothing is derived. */
    void (*begin_pass)(void);
    /* The health monitor's and GRA's reductions, each in a fixed order (no atomics), so a
     * figure does not depend on the thread count:
     * squares2: sum a[i]^2 over n values into *sa and, when b is given, sum b[i]^2 into
     *   *sb, copying b to keep when given, in the same pass;
     * unit_sums: per unit u (the first per-sample dimension) of n's output over the batch,
     *   sum[u], sq[u], and for RG_COUNT_RELU_OF relu[2u], relu[2u + 1] (sums of relu(x) and
     *   its square); *near the values `want` counts (within lo/hi of a bound, or positive),
     *   *dead the units that counted none; scratch holds 5 floats a unit;
     * unit_sums_through: unit_sums of n's output into sums (sum, sq, relu: units each) and,
     *   in the same pass, of act applied to it as the activation's forward stores it, into
     *   act_sums (counting act_want within act_lo and hi); NULL where the backend has none
     *   (the monitor then sums the activation's output apart);
     * sample_squares: out[b] = sum of squares of sample b's `size` values;
     * squares_apart: the sums of squares of a (na values) into *sa and of b (nb) into *sb,
     *   both stored as the activations' gradients are (bf16 under a device's bf16), in one
     *   reduction where the backend can;
     * input_moments: E[x x^T] (f x f) and E[x] of a dense layer's input over the batch, or
     *   with q of a convolution's im2col columns over batch and positions, and for a dense
     *   layer with rows (else NULL) its input itself, batch rows of f floats;
     * chunk_squares: out[c] = sum (a - b)^2 (b NULL: a^2) over len[c] values from at[c]
     *   (SIZE_MAX: skip);
     * count_nonfinite: NaN and Inf among n values;
     * flush_sums: a device's squares2, unit_sums, sample_squares, squares_apart,
     *   input_moments and chunk_squares (and GRA's layer_steps, step_shifts and sums_of_squares, below) may
     *   leave their results to arrive at this call (the host memory they were given kept
     *   till then), so that a watched pass, or GRA's guards over every layer, wait on the
     *   device once (NULL: they arrive at once). */
    void (*squares2)(const float *a, const float *b, float *keep, size_t n, double *sa, double *sb);
    void (*unit_sums)(const rg_node_impl *n, int batch, rg_count_kind want, float lo, float hi,
                      float *scratch, double *sum, double *sq, double *relu, long *near, int *dead);
    void (*unit_sums_through)(const rg_node_impl *n, int batch, rg_count_kind want, float lo, float hi,
                              double *sums, long *near, int *dead, rg_act act, rg_count_kind act_want, float act_lo,
                              double *act_sums, long *act_near, int *act_dead);
    void (*sample_squares)(const float *x, size_t size, int batch, double *out);
    void (*squares_apart)(const float *a, size_t na, const float *b, size_t nb, double *sa, double *sb);
    void (*input_moments)(const float *x, size_t size, int batch, int f, const rg_conv_geom *q,
                          float *moment, float *mean, float *rows);
    void (*chunk_squares)(const float *a, const float *b, const size_t *at, const size_t *len,
                          size_t n, double *out);
    long (*count_nonfinite)(const float *x, size_t n);
    void (*flush_sums)(void);
    /* GRA's arithmetic on a layer:
     * polar: w (rows x cols) replaced by its polar factor times its RMS singular value;
     *   returns ||W' - W|| / ||W||, or -1 (w unchanged) when it does not converge in
     *   max_steps to tolerance or would cost more than max_flops a step;
     * recenter_units: for each unit u with scale[u] != 0, its row of w times scale[u] and
     *   b[u] = (b[u] - mean[u]) scale[u] (b may be NULL);
     * zero_sum_taps: each of `units` rows of w, laid out (channels, taps), less its mean
     *   over channels at every tap, so each tap's weights sum to 0; returns ||W' - W|| / ||W||;
     * function_change: units times E||dz||^2 per unit of a step dW (units x f), db (units,
     *   or NULL) for an input of second moment `moment` (f x f) and mean `mean`:
     *   tr(dW M dW^T) + 2 db.(dW mu) + |db|^2, into *sum (a device's arriving at
     *   flush_sums; NaN where it fails; scratch: units x f);
     * function_change_rows: the same from the n samples (rows of f, in the backend's
     *   memory) the moment came from, the sum over them of |dW x + db|^2, n units times the
     *   figure, into *sum as function_change's (scratch: n x units);
     * function_change_bound: the sums of an upper bound on it from the covariance split
     *   C = Q^T S Q + R (qm, in the backend's memory: Q's k rows of f, then the mean's),
     *   into *sums (a device's arriving at flush_sums; NaN where it fails), from which
     *   rg_bound_from_sums (S: k x k host memory with row stride 8, rest >= ||R||) gives
     *   (|dW mu + db|^2 + tr((dW Q^T) S (dW Q^T)^T) + rest ||dW||^2) over units, to within
     *   float rounding (scratch: units x (k + 1));
     * GRA's per-step arithmetic on n layers at once (a device's in a launch or two, its
     * figures arriving at flush_sums; the layers share no buffer):
     * layer_steps: each layer's step dw = w - w0, its rows' products with the input mean
     *   into pm and its sum of squares into *squares (dw itself is not kept);
     * uncentre_steps: each layer's step taken back from centred coordinates, b -= pm;
     * step_shifts: each layer's bias step db = b - b0 (when b) and |pm + db|^2 into
     *   *shift, with which a coarse upper bound needs no more than layer_steps' sums:
     *   (shift + top squares) / units, top >= the covariance's largest eigenvalue;
     * centre_gradients: each layer's gw[u][k] -= gb[u] mean[k]: its gradient in the
     *   coordinates where its input is centred (w' = w, b' = b + w mean; the mean in the
     *   backend's memory, where GRA copies it once each time the moments are measured);
     * sums_of_squares: sum_squares's figure of each of n pieces x[i] (len[i] floats) into
     *   *out[i] (the guards' norms).
     * times_matrix: out = x P (units x f), P (f x f) in the backend's memory (GRA copies it
     *   there once each time it makes it): a gradient or a step into or out of whitened
     *   coordinates. */
    double (*polar)(float *w, int rows, int cols, int max_steps, double tolerance, double max_flops);
    void (*recenter_units)(float *w, float *b, int units, size_t row, const double *scale,
                           const double *mean);
    double (*zero_sum_taps)(float *w, int units, int channels, int taps);
    void (*function_change)(const float *dw, const float *db, int units, int f, const float *moment,
                            const float *mean, float *scratch, double *sum);
    void (*function_change_rows)(const float *dw, const float *db, int units, int f, const float *rows, int n,
                                 float *scratch, double *sum);
    void (*function_change_bound)(const float *dw, const float *db, int units, int f, const float *qm, int k,
                                  float *scratch, rg_bound_sums *sums);
    void (*layer_steps)(const rg_gra_layer *l, int n);
    void (*uncentre_steps)(const rg_gra_layer *l, int n);
    void (*step_shifts)(const rg_gra_layer *l, int n);
    void (*centre_gradients)(const rg_gra_layer *l, int n);
    void (*sums_of_squares)(const float *const *x, const size_t *len, double *const *out, int n);
    void (*times_matrix)(float *out, const float *x, int units, int f, const float *p);
    /* Passes over n floats: x *= f; dst = src; out = a - b; x = x0 + f d (d NULL: along
     * x - x0, x = x0 + f (x - x0)); x *= m (masks);
     * x clamped to [-v, v]; sum x^2 the fast way (non-finite iff a value is); and in index
     * order in double (the classic remedies' exact sums). */
    void (*scale)(float *x, size_t n, float f);
    void (*copy)(float *dst, const float *src, size_t n);
    void (*subtract)(float *out, const float *a, const float *b, size_t n);
    void (*step_along)(float *x, const float *x0, const float *d, size_t n, float f);
    void (*multiply)(float *x, const float *m, size_t n);
    void (*clamp)(float *x, size_t n, float v);
    double (*sum_squares)(const float *x, size_t n);
    double (*squares_in_order)(const float *x, size_t n);
    /* The classic remedies' exact sums and scalings over n pieces of x at once (a kernel's
     * rows, a tensor's elements, whole tensors), piece c len[c] values from at[c]:
     * out[c] = its sum of squares (the CPU's in index order in double, squares_in_order's
     * bits; a device's in a fixed order, arriving at flush_sums), and each piece scaled by
     * f[c] (x *= f, scale's bits). */
    void (*pieces_squares)(const float *x, const size_t *at, const size_t *len, size_t n, double *out);
    void (*scale_pieces)(float *x, const size_t *at, const size_t *len, size_t n, const float *f);
    /* LassoNet's hierarchical proximal step (models/lassonet.c) on theta (k x d, the skip's
     * kernel) and w1 (h x d, the first hidden layer's), feature by feature, in place: a
     * device's queued, its failure noted like a kernel's; the CPU's out of memory returned. */
    rg_status (*hier_prox)(float *theta, float *w1, int k, int d, int h, double M, double lambda);
    /* Pruning: x = v over n floats; how many of n are 0; each of `units` rows of len
     * values' score into out: its L1 (norm 1) or L2 (norm 2) norm, divided by len or
     * sqrt(len) when per_weight, or (norm 0, len 1) |w| itself. */
    void (*fill)(float *x, size_t n, float v);
    size_t (*count_zeros)(const float *x, size_t n);
    void (*unit_scores)(const float *w, size_t units, size_t len, int norm, bool per_weight,
                        float *out);
};

#define RG_BUFFER_ALIGN 64

extern const rg_backend rg_cpu_backend;
#ifdef RG_HAVE_CUDA
extern const rg_backend rg_cuda_backend; /* src/kernels/cuda/backend.c */
/* Makes device "cuda" or "cuda:N" the calling thread's. */
rg_status rg_cuda_select(const char *device);
/* The selected device's free and total memory, in bytes. */
rg_status rg_cuda_memory(size_t *free_bytes, size_t *total);
#endif

#endif

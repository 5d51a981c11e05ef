/*
 * regrad.h — the one public header of libregrad.
 *
 * regrad trains neural networks in plain C11 and watches their gradients.  A network is a
 * graph of ops built with a small builder API; all trainable parameters live in one flat
 * float buffer, their gradients and every optimizer moment in parallel buffers of the same
 * layout, and each parameter tensor is a named view (offset, shape) into them.
 *
 * Conventions
 *  - Every fallible call returns rg_status.  On failure, rg_last_error() returns a one-line
 *    message naming the cause (file, offset, layer, value) and, where there is one, the fix.
 *    The library never exits and never prints.
 *  - Ownership: each *_create / *_load has a *_free that accepts NULL.  Buffers returned by
 *    accessors belong to the object they came from and live as long as it does.
 *  - Layouts match PyTorch: activations NCHW (batch first), dense weights [out, in],
 *    conv weights OIHW.
 *  - Builder calls never fail loudly: they return RG_NONE (-1) and record the first error in
 *    the graph; rg_graph_compile() (or rg_model_from_graph) then reports it, so a network
 *    reads like the network.
 *
 * A whole program (the tests build and run it as it stands here):
 *
 *     #include <regrad.h>
 *     #include <stdio.h>
 *
 *     int main(void) {
 *         rg_dataset *train, *test;
 *         rg_model m;
 *         double loss, acc;
 *         rg_fit_config cfg = rg_fit_defaults(); // 1 epoch, batch 128, Adam, GRA on
 *         if (rg_dataset_open("fashion-mnist", NULL, &train, &test) ||
 *             rg_model_build("mlp:depth=2,width=128", NULL, &m) ||
 *             rg_fit(&m, train, &cfg, NULL) ||
 *             rg_evaluate(&m, test, NULL, test->n, &loss, &acc))
 *             return fprintf(stderr, "%s\n", rg_last_error()), 1;
 *         printf("test accuracy %.3f\n", acc);
 *         rg_model_free(&m);
 *         rg_dataset_free(train);
 *         rg_dataset_free(test);
 *         return 0;
 *     }
 */
#ifndef REGRAD_H
#define REGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RG_VERSION "0.1.0"

/* ---------------------------------------------------------------- status and errors */

typedef enum rg_status {
    RG_OK = 0,
    RG_ERR_ARG,      /* a bad argument or specification: the caller's mistake (CLI exit 2) */
    RG_ERR_IO,       /* a file could not be opened, read or written */
    RG_ERR_FORMAT,   /* a file is corrupt, truncated or not what it claims to be */
    RG_ERR_SHAPE,    /* shapes do not fit together */
    RG_ERR_MEMORY,   /* an allocation failed or would exceed a limit */
    RG_ERR_NUMERIC,  /* NaN or Inf where a finite value is required */
    RG_ERR_STATE,    /* a call made in the wrong order (e.g. forward before compile) */
    RG_STOPPED       /* training was asked to stop (rg_fit_config.stop) and did */
} rg_status;

/* The message of the most recent failure in this thread ("" if none). */
const char *rg_last_error(void);
/* A short name of a status ("argument", "io", ...). */
const char *rg_status_name(rg_status s);

/* What each parser of names takes, joined "a, b or c" into buf (returned): for help texts. */
typedef enum rg_names_of {
    RG_NAMES_ACTIVATIONS, RG_NAMES_INITIALISERS, RG_NAMES_OPTIMIZERS, RG_NAMES_SCHEDULES,
    RG_NAMES_PREPROCESSING, RG_NAMES_AUGMENTATIONS, RG_NAMES_MODELS, RG_NAMES_LOSSES
} rg_names_of;
const char *rg_names(rg_names_of which, char *buf, size_t len);

/* ---------------------------------------------------------------- threads and RNG */

/* Seconds on a monotonic clock, for timing. */
double rg_seconds(void);

/* Sets the threads used by OpenMP loops and the BLAS together (n <= 0: all cores). */
void rg_set_threads(int n);
int rg_get_threads(void);

/* The machine's single-precision matrix-multiply rate through regrad's own GEMM path
 * (all threads): the best of `repeats` n x n x n products, in GFLOP/s. */
double rg_sgemm_gflops(int n, int repeats);

/* xoshiro256** seeded through splitmix64: fast, 256-bit state, reproducible everywhere. */
typedef struct rg_rng {
    uint64_t s[4];
} rg_rng;

void rg_rng_seed(rg_rng *r, uint64_t seed);
uint64_t rg_rng_next(rg_rng *r);
float rg_rng_uniform(rg_rng *r);            /* [0, 1) with 24 random bits */
float rg_rng_normal(rg_rng *r);             /* standard normal (Box-Muller) */
uint32_t rg_rng_below(rg_rng *r, uint32_t n); /* uniform in [0, n), unbiased */
void rg_rng_shuffle(rg_rng *r, int *a, int n); /* Fisher-Yates */

/* ---------------------------------------------------------------- initialisers */

typedef enum rg_init_kind {
    RG_INIT_ZEROS = 0,
    RG_INIT_ONES,
    RG_INIT_HE_NORMAL,      /* N(0, 2/fan_in) */
    RG_INIT_HE_UNIFORM,     /* U(±sqrt(6/fan_in)) */
    RG_INIT_GLOROT_NORMAL,  /* N(0, 2/(fan_in+fan_out)) */
    RG_INIT_GLOROT_UNIFORM, /* U(±sqrt(6/(fan_in+fan_out))) */
    RG_INIT_LECUN_NORMAL,   /* N(0, 1/fan_in) */
    RG_INIT_LECUN_UNIFORM,  /* U(±sqrt(3/fan_in)) */
    RG_INIT_TORCH,          /* PyTorch's Linear/Conv default: U(±1/sqrt(fan_in)), bias too */
    RG_INIT_NORMAL,         /* N(0, arg^2) */
    RG_INIT_COUNT
} rg_init_kind;

typedef struct rg_init {
    rg_init_kind kind;
    float arg; /* standard deviation for RG_INIT_NORMAL; unused otherwise */
} rg_init;

#define RG_INIT(k) ((rg_init){(k), 0.0f})

/* Parses "he", "he_uniform", "glorot", "glorot_normal", "lecun", "lecun_uniform", "torch",
 * "normal:STD", "zeros".  Unqualified he/lecun mean normal, glorot means uniform (Keras). */
rg_status rg_init_parse(const char *text, rg_init *out);
const char *rg_init_name(rg_init_kind k);

/* ---------------------------------------------------------------- graph builder */

typedef struct rg_graph rg_graph;
typedef int rg_node;   /* a node's index in its graph; RG_NONE after an error */
#define RG_NONE (-1)
#define RG_MAX_DIMS 4  /* per-sample dimensions; with the batch, tensors have up to 5 */

typedef enum rg_act {
    RG_ACT_LINEAR = 0,
    RG_ACT_RELU,
    RG_ACT_LEAKY_RELU, /* slope 0.01, as PyTorch */
    RG_ACT_ELU,        /* alpha 1 */
    RG_ACT_GELU,       /* exact, with erf, as PyTorch's default */
    RG_ACT_SIGMOID,
    RG_ACT_TANH,
    RG_ACT_SOFTPLUS,   /* beta 1, linear above 20, as PyTorch */
    RG_ACT_COUNT
} rg_act;

rg_status rg_act_parse(const char *text, rg_act *out);
const char *rg_act_name(rg_act a);

/* A compute device: "cpu", "cuda" (cuda:0) or "cuda:N".  Whether it can run here: RG_OK
 * with a description in desc (len bytes; desc may be NULL), else RG_ERR_ARG for a malformed
 * name or an index past the devices there are, RG_ERR_STATE for a build without the CUDA
 * backend, no driver or no device. */
rg_status rg_device_check(const char *device, char *desc, size_t len);
/* A GPU's memory in use now, by every program on it (its total less its free), in bytes:
 * read before and after a model's steps, what the model holds there.  The CPU: RG_ERR_ARG
 * (its memory is the process's, getrusage's). */
rg_status rg_device_memory_in_use(const char *device, size_t *bytes);

/* seed drives parameter initialisation and dropout masks. */
rg_graph *rg_graph_create(uint64_t seed);
void rg_graph_free(rg_graph *g);
/* Runs the graph on a device ("cpu", the default, "cuda" or "cuda:N"): call after building
 * it and before rg_graph_compile.  RG_ERR_STATE says why it cannot: rg_device_check's
 * reasons, or an op the device's backend lacks (named).  On a device the parameters,
 * gradients and activations live there: rg_graph_input_buffer and rg_graph_labels stay in
 * host memory (forward uploads them, and may be rewritten once it returns), rg_node_read
 * reads outputs back.  Forward and backward queue the device's work and return; a read
 * back or rg_graph_finish waits for it. */
rg_status rg_graph_set_device(rg_graph *g, const char *device);
/* Waits for the work the graph queued on its device (timing, before reading its buffers
 * by other means): RG_OK, or the device's failure since the last check.  On the CPU:
 * RG_OK at once. */
rg_status rg_graph_finish(rg_graph *g);
/* With REGRAD_GRAPHS=1 in the environment a device runs each pass that is the same every
 * step (no dropout, hook, profile or numerics check) as a CUDA graph from its third run
 * on, one launch in place of its hundreds, with the same bits.  The passes replayed so
 * far, and in *broken (when given) why a pass could not be captured, or NULL. */
long rg_graph_replays(const rg_graph *g, const char **broken);
/* The arithmetic of the products (dense layers, convolutions) on a graph's device: "fp32"
 * (the default, strict: no TF32 anywhere) or "tf32" (the products on TF32 tensor cores,
 * sums, statistics and the optimizer in fp32).  Call after rg_graph_set_device.
 * RG_ERR_STATE for TF32 on the CPU or bf16 (not yet), RG_ERR_ARG for another name. */
rg_status rg_graph_set_precision(rg_graph *g, const char *precision);

/* An input of per-sample shape dims[0..ndim) (the batch dimension is implicit). */
rg_node rg_input(rg_graph *g, const char *name, int ndim, const int *dims);
/* y = x W^T + b, W [units, in], b [units]; the bias is initialised to zeros unless
 * init is RG_INIT_TORCH (then U(±1/sqrt(fan_in)), as torch.nn.Linear). */
rg_node rg_dense(rg_graph *g, rg_node x, int units, rg_init init);
rg_node rg_activation(rg_graph *g, rg_node x, rg_act act);
rg_node rg_relu(rg_graph *g, rg_node x);
rg_node rg_leaky_relu(rg_graph *g, rg_node x);
rg_node rg_elu(rg_graph *g, rg_node x);
rg_node rg_gelu(rg_graph *g, rg_node x);
rg_node rg_sigmoid(rg_graph *g, rg_node x);
rg_node rg_tanh(rg_graph *g, rg_node x);
rg_node rg_softplus(rg_graph *g, rg_node x);
/* Softmax over the last dimension. */
rg_node rg_softmax(rg_graph *g, rg_node x);
/* Inverted dropout: in training, zero with probability rate and scale the rest by
 * 1/(1-rate); in evaluation, the identity. */
rg_node rg_dropout(rg_graph *g, rg_node x, float rate);
/* Element-wise sum of two nodes of the same shape. */
rg_node rg_add(rg_graph *g, rg_node a, rg_node b);
/* y = sum_k w_k x_k over n (<= 8) nodes of one shape (scalar losses too); weights NULL
 * means all 1.  rg_weighted_sum_set changes w_k between steps (a decaying loss weight). */
rg_node rg_weighted_sum(rg_graph *g, int n, const rg_node *xs, const float *weights);
rg_status rg_weighted_sum_set(rg_graph *g, rg_node node, int k, float w);
/* Reshapes every sample to one dimension. */
rg_node rg_flatten(rg_graph *g, rg_node x);
/* (C, H, W) to one dimension in channels-last order (h, w, c), as Keras's Flatten of an
 * NHWC tensor, so that a Keras Dense kernel after it applies unchanged. */
rg_node rg_flatten_channels_last(rg_graph *g, rg_node x);

/* ---- convolutional layers (activations NCHW, per-sample shape (C, H, W)) */

typedef enum rg_padding {
    RG_PAD_SAME = 0, /* output = ceil(input / stride); extra row/column at the end, as Keras */
    RG_PAD_VALID,    /* no padding */
    RG_PAD_EXPLICIT  /* `pad` zeros on every side, as PyTorch's padding=p */
} rg_padding;

typedef struct rg_conv_opts {
    int stride;         /* 1 */
    int dilation;       /* 1 */
    int groups;         /* 1; groups = channels = filters is a depthwise convolution */
    rg_padding padding; /* RG_PAD_SAME */
    int pad;            /* for RG_PAD_EXPLICIT */
    int bias;           /* 1 */
    rg_init init;       /* he_normal; the bias starts at zero unless init is torch */
} rg_conv_opts;

/* The defaults above; change fields, then pass a pointer (NULL means the defaults). */
rg_conv_opts rg_conv_defaults(void);
/* 2-D convolution, weights "kernel" (filters, C/groups, k, k) OIHW and "bias" (filters). */
rg_node rg_conv2d(rg_graph *g, rg_node x, int filters, int kernel, const rg_conv_opts *opts);
/* Max pooling over k x k windows; pad counts -inf cells on each side (PyTorch). */
rg_node rg_max_pool2d(rg_graph *g, rg_node x, int kernel, int stride, int pad);
/* Average pooling; padded cells count as zeros in the mean (PyTorch's count_include_pad). */
rg_node rg_avg_pool2d(rg_graph *g, rg_node x, int kernel, int stride, int pad);
/* (C, H, W) -> (C): the mean over each channel. */
rg_node rg_global_avg_pool(rg_graph *g, rg_node x);
/* Zeros around each channel: top, bottom, left, right. */
rg_node rg_zero_pad2d(rg_graph *g, rg_node x, int top, int bottom, int left, int right);
/* Joins n nodes along the channel (first per-sample) dimension; other dimensions must
 * agree. */
rg_node rg_concat(rg_graph *g, int n, const rg_node *xs);
/* Batch normalisation over the channel (first per-sample) dimension of (C) or (C, H, W):
 * training normalises with the batch mean and biased variance and updates the running
 * statistics as running = (1 - momentum) running + momentum batch (the variance with
 * Bessel's correction), as PyTorch; evaluation uses the running statistics.  PyTorch's
 * defaults are momentum 0.1, eps 1e-5; Keras's momentum 0.99 is 0.01 here.  Parameters
 * "gamma", "beta"; state "moving_mean", "moving_variance". */
rg_node rg_batch_norm(rg_graph *g, rg_node x, float momentum, float eps);

/* Losses produce one scalar, the mean over the batch.
 * Softmax cross-entropy from logits against the graph's integer labels, with label
 * smoothing s: the target is (1-s)*onehot + s/K, as torch.nn.CrossEntropyLoss. */
rg_node rg_softmax_cross_entropy(rg_graph *g, rg_node logits, float smoothing);
/* Mean squared error over all elements (PyTorch reduction "mean").  target is a node of the
 * same shape, or RG_NONE for the one-hot encoding of the graph's integer labels. */
rg_node rg_mse(rg_graph *g, rg_node pred, rg_node target);

/* Renames a node (and so its parameters: "NAME.kernel", "NAME.bias").  Default names are
 * "<op>_<k>" with k counting that op's nodes from 1 ("dense_1", "dense_2", ...). */
void rg_node_set_name(rg_graph *g, rg_node n, const char *name);

/* Asks backward to compute gradients of the inputs too (saliency, gradient checks); off by
 * default, since the first layer's input gradient is often a third of the backward cost.
 * Call before rg_graph_compile. */
void rg_graph_want_input_grads(rg_graph *g, int on);

/* Activations run in place where they can (an activation after a conv, dense or batch
 * norm overwrites that layer's output), which saves memory but means rg_node_output of
 * such a layer shows the activated values after forward.  on=1 keeps every node's own
 * output.  Call before rg_graph_compile. */
void rg_graph_keep_outputs(rg_graph *g, int on);

/* A ceiling on what rg_graph_compile allocates (parameters, gradients, batch-norm state,
 * activations, scratch; 0: none): compile computes the total first and fails with the
 * breakdown instead of allocating past it.  rg_graph_memory gives what compile took. */
void rg_graph_set_memory_limit(rg_graph *g, size_t bytes);
size_t rg_graph_memory(const rg_graph *g);
/* "1.25 GiB", "310.0 MiB" or "12 KiB" into buf (returned). */
const char *rg_bytes_text(double bytes, char buf[32]);
/* The memory this machine can give now (MemAvailable), in bytes; 0 if unknown. */
size_t rg_memory_available(void);

/* Allocates the flat parameter and gradient buffers and every activation for batches of
 * up to max_batch samples, initialises parameters from the graph's seed, and reports the
 * first builder error, if any.  Nothing is allocated per step after this. */
rg_status rg_graph_compile(rg_graph *g, int max_batch);

/* ---------------------------------------------------------------- running a graph */

/* The buffer (max_batch, per-sample shape) an input node reads from. */
float *rg_graph_input_buffer(rg_graph *g, rg_node input);
/* The integer labels (max_batch) read by the losses. */
int *rg_graph_labels(rg_graph *g);
/* Runs every node in order for the first `batch` samples; train selects dropout's mode. */
rg_status rg_graph_forward(rg_graph *g, int batch, int train);
/* Back-propagates from a loss node (seeded with 1) into the flat gradient buffer, which is
 * zeroed first.  Node gradients accumulate with += within a pass. */
rg_status rg_graph_backward(rg_graph *g, rg_node loss);
/* Back-propagates a caller-supplied gradient of node `from` (batch * per-sample size
 * floats): the general form used by gradient checks. */
rg_status rg_graph_backward_from(rg_graph *g, rg_node from, const float *seed);

/* ---------------------------------------------------------------- curvature
 * Second-order information along parameter directions: each call runs its own forward
 * pass(es) on the first `batch` samples in the input buffers and labels (train selects
 * batch norm's and dropout's mode, as in rg_graph_forward), and leaves the parameters, the
 * running statistics and the dropout stream as they were; the gradient buffer and the
 * nodes' outputs are overwritten.  v has rg_graph_param_floats floats in the parameters'
 * layout (state entries ignored).  docs/curvature.md says how each is computed and checked. */
typedef enum rg_curvature {
    RG_CURVATURE_GAUSS_NEWTON, /* G = J^T H_z J (z the loss's input): exact, positive semi-definite */
    RG_CURVATURE_HESSIAN       /* the loss's Hessian: exact (Pearlmutter's R-backward) */
} rg_curvature;
/* J v at `node` (forward mode, batch * per-sample size floats into out): how the node's
 * output moves along the parameter direction v.  On a device v is in device memory (where
 * the parameters are), out in host memory; the products need fp32 or tf32 there. */
rg_status rg_graph_tangent(rg_graph *g, int batch, int train, const float *v, rg_node node,
                           float *out);
/* out = C v (rg_graph_param_floats floats) for the scalar node `loss`: for Gauss-Newton a
 * softmax cross-entropy or mean squared error node; for the Hessian any scalar node (a sum
 * of losses too).  G v costs about 4 forward passes, H v about 7. */
rg_status rg_graph_curvature_product(rg_graph *g, rg_node loss, int batch, int train,
                                     rg_curvature kind, const float *v, float *out);
/* Along v, from one forward and one tangent pass: the loss's slope g.v and the Gauss-Newton
 * curvature v^T G v (either pointer may be NULL). */
rg_status rg_graph_curvature_along(rg_graph *g, rg_node loss, int batch, int train,
                                   const float *v, double *slope, double *curvature);
/* RG_OK when every op of g has a tangent on the device g is placed on (the CPU: all; cuda:
 * dense, convolution, the activations, average and global average pooling, zero padding,
 * add, concat, the flattens, softmax cross-entropy), which curvature along a direction,
 * and GRA, need; else RG_ERR_STATE naming the first op that has none. */
rg_status rg_graph_check_tangents(const rg_graph *g);
/* The top eigenvalue of C's block for the trainable parameters of `layer` (RG_NONE: all),
 * by power iteration from a fixed start, stopping after max_iters products or when the
 * estimate changes by less than `tolerance` (relative).  For the Hessian: the eigenvalue
 * of largest magnitude, with its sign. */
rg_status rg_graph_top_curvature(rg_graph *g, rg_node loss, int batch, int train,
                                 rg_curvature kind, rg_node layer, int max_iters, double tolerance,
                                 double *lambda);

/* Scans every node's output in forward, and the gradients each node produces in backward,
 * for NaN and Inf: the first one makes the pass return RG_ERR_NUMERIC naming the value,
 * the op and the layer.  Costs a pass over each buffer. */
void rg_graph_check_numerics(rg_graph *g, int on);
/* Turns per-node timing on (resetting the totals) or off (keeping them).  Timing costs
 * two clock reads per node per pass. */
void rg_graph_profile(rg_graph *g, int on);
/* A node's accumulated forward and backward seconds while profiling, and the FLOPs of one
 * sample's forward pass through it (2 per multiply-add; 0 where not counted: element-wise
 * ops).  Backward costs about twice the forward FLOPs for dense and conv.  Any of the three
 * may be NULL. */
rg_status rg_node_profile(const rg_graph *g, rg_node n, double *fwd_seconds,
                          double *bwd_seconds, double *flops);

/* Node output and its gradient, (batch, per-sample shape).  Gradient buffers are shared
 * between nodes whose gradients are never live at the same time, so after backward only
 * the inputs' gradients (rg_graph_want_input_grads) are certain to hold their values. */
float *rg_node_output(rg_graph *g, rg_node n);
float *rg_node_grad(rg_graph *g, rg_node n);
/* The output of n's first `rows` samples (one row when n is not per sample) copied into
 * host memory at dst, on any device; rg_node_output's buffer is the device's on a GPU. */
rg_status rg_node_read(rg_graph *g, rg_node n, int rows, float *dst);
int rg_node_ndim(const rg_graph *g, rg_node n);
const int *rg_node_shape(const rg_graph *g, rg_node n);
size_t rg_node_size(const rg_graph *g, rg_node n); /* per-sample element count */
const char *rg_node_name(const rg_graph *g, rg_node n);
const char *rg_node_op_name(const rg_graph *g, rg_node n);
int rg_graph_node_count(const rg_graph *g);
int rg_graph_max_batch(const rg_graph *g);

/* ---------------------------------------------------------------- parameters */

/* A named tensor of the graph: a trainable parameter (in the flat parameter buffer, with a
 * gradient at the same offset in the flat gradient buffer) or non-trainable state such as
 * batch-norm running statistics (in the flat state buffer, no gradient). */
typedef struct rg_param_info {
    const char *name;  /* "dense_3.kernel", "conv2_block1_preact_bn.moving_mean" */
    rg_node node;      /* the node that owns it */
    int ndim;
    int shape[RG_MAX_DIMS];
    size_t offset;     /* into its flat buffer (parameters or state) */
    size_t size;       /* element count */
    int trainable;
    int state;         /* 1: lives in the state buffer, never trained */
    float *data;       /* its values (NULL before compile) */
    float *grad;       /* its gradient (NULL for state and before compile) */
} rg_param_info;

int rg_graph_param_count(const rg_graph *g);      /* number of tensors, parameters and state */
size_t rg_graph_param_floats(const rg_graph *g);  /* floats in the flat parameter buffer */
rg_status rg_graph_param(const rg_graph *g, int i, rg_param_info *out);
float *rg_graph_params(rg_graph *g);              /* the flat parameter buffer */
float *rg_graph_grads(rg_graph *g);               /* the flat gradient buffer */
size_t rg_graph_state_floats(const rg_graph *g);  /* floats in the flat state buffer */
float *rg_graph_state(rg_graph *g);               /* the flat state buffer */
/* Freezes (trainable 0) or unfreezes the parameters of every layer whose name matches the
 * glob pattern (fnmatch: "*", "?", "[...]"); returns the number of layers matched.  Calls
 * apply in order, so freeze "*" then unfreeze "*conv5*" trains only conv5.  The optimizer
 * leaves frozen parameters bitwise unchanged, and a frozen batch norm normalises with its
 * running statistics, which stay fixed.  Before rg_graph_compile, backward also skips what
 * only frozen layers need. */
int rg_graph_set_trainable(rg_graph *g, const char *pattern, int trainable);
/* Forward passes so far: the counter dropout masks are keyed by (for exact resume). */
uint64_t rg_graph_forward_count(const rg_graph *g);
void rg_graph_set_forward_count(rg_graph *g, uint64_t count);
/* Re-initialises every parameter from seed (the graph's own seed at compile). */
void rg_graph_init_params(rg_graph *g, uint64_t seed);
/* 64-bit FNV-1a hash of the flat parameter and state buffers: equal runs, equal hashes. */
uint64_t rg_graph_params_hash(const rg_graph *g);

/* ---------------------------------------------------------------- optimizers */

typedef enum rg_optim_kind {
    RG_OPTIM_SGD = 0,  /* momentum 0 unless set */
    RG_OPTIM_MOMENTUM, /* SGD, momentum 0.9 by default */
    RG_OPTIM_NESTEROV, /* SGD with Nesterov momentum, 0.9 by default */
    RG_OPTIM_ADAGRAD,
    RG_OPTIM_RMSPROP,
    RG_OPTIM_ADAM,
    RG_OPTIM_ADAMW,
    RG_OPTIM_COUNT
} rg_optim_kind;

/* Hyperparameters; rg_optim_defaults() fills PyTorch's defaults for each kind:
 *  sgd:      lr 0.01 (PyTorch requires one; 0.01 is the common choice), momentum 0
 *  momentum: lr 0.01, momentum 0.9;  nesterov: lr 0.01, momentum 0.9, nesterov update
 *  adagrad:  lr 0.01, eps 1e-10, initial accumulator 0
 *  rmsprop:  lr 0.01, alpha 0.99, eps 1e-8, momentum 0
 *  adam:     lr 0.001, betas (0.9, 0.999), eps 1e-8, L2 weight decay 0
 *  adamw:    lr 0.001, betas (0.9, 0.999), eps 1e-8, decoupled weight decay 0.01
 * Weight decay for all but adamw is L2 added to the gradient, as in PyTorch. */
typedef struct rg_optim_config {
    rg_optim_kind kind;
    float lr;
    float momentum;     /* sgd/momentum/nesterov/rmsprop */
    float beta1, beta2; /* adam/adamw */
    float alpha;        /* rmsprop smoothing */
    float eps;
    float weight_decay;
} rg_optim_config;

typedef struct rg_optim rg_optim;

rg_optim_config rg_optim_defaults(rg_optim_kind kind);
rg_status rg_optim_parse(const char *name, rg_optim_kind *out);
const char *rg_optim_name(rg_optim_kind k);
/* Validates the configuration (finite, non-negative lr, betas in [0,1), ...). */
rg_status rg_optim_check(const rg_optim_config *c);
/* How many moment buffers (each as long as the parameters) a configuration keeps. */
int rg_optim_moment_count(const rg_optim_config *c);
/* Moments are flat buffers of n floats, zeroed. */
rg_optim *rg_optim_create(const rg_optim_config *c, size_t n);
void rg_optim_free(rg_optim *o);
/* One update of params from grads with learning rate lr (the schedule's value this step). */
void rg_optim_step(rg_optim *o, float *params, const float *grads, float lr);
long rg_optim_steps(const rg_optim *o);
/* Restricts updates to n ranges [offset, offset + length) of the flat buffer (frozen
 * parameters lie outside them and stay bitwise unchanged); n = 0 updates everything. */
rg_status rg_optim_limit(rg_optim *o, int n, const size_t *offset, const size_t *length);
/* Sets the step count (Adam's bias correction), for resuming. */
void rg_optim_set_steps(rg_optim *o, long steps);
/* The next rg_optim_step also measures n ranges of the parameters (in increasing,
 * disjoint order) in the update's own pass: for range i, sums[3i] = the squares of its
 * change, sums[3i + 1] of its gradient, sums[3i + 2] of its values before the step (all 0
 * where it updates nothing), summed in the pieces the monitor sums them in: the monitor's
 * figures without a copy of the weights or another pass over them.  The arrays must live
 * until that step, which forgets them.  RG_ERR_ARG for ranges out of order or outside the
 * parameters, RG_ERR_MEMORY when there is no room for the step's plan (nothing measured). */
rg_status rg_optim_measure_next(rg_optim *o, int n, const size_t *offset, const size_t *length,
                                double *sums);
/* The next rg_optim_step also keeps the parameters it starts from in before (all n of
 * them, in the parameters' own memory: a device's when placed there), in the update's own
 * pass on the CPU: a copy of the weights before the step without another pass over them.
 * before must live until that step, which forgets it. */
void rg_optim_keep_next(rg_optim *o, float *before);
/* The next rg_optim_step calls then(ctx, i) once for each of n ranges of the parameters
 * (in increasing, disjoint order) after it has written all of range i: on the CPU, where
 * one thread wrote all of it, on that thread at once, while the range is in its cache;
 * else after the update.  then may run on several threads at once for different i.  The
 * arrays must live until that step, which forgets them; with no memory to track the
 * ranges, those past the ones it could are not handed over. */
void rg_optim_then_next(rg_optim *o, int n, const size_t *offset, const size_t *length,
                        void (*then)(void *ctx, int i), void *ctx);
/* Moment buffers for checkpoints: k-th buffer (NULL past the last), its name ("exp_avg");
 * once placed on a device, the device's buffer. */
float *rg_optim_moment(rg_optim *o, int k, const char **name);
/* Keeps the moments where g's buffers live, so that rg_optim_step updates g's parameters
 * on its device (rg_graph_set_device): the moments so far go there; on the CPU nothing
 * changes.  Measuring (rg_optim_measure_next) is the CPU's alone. */
rg_status rg_optim_place(rg_optim *o, const rg_graph *g);

/* ---------------------------------------------------------------- learning-rate schedules */

typedef enum rg_schedule_kind {
    RG_SCHED_CONSTANT = 0,
    RG_SCHED_STEP,   /* lr * gamma^floor(epoch / step_epochs), as StepLR stepped per epoch */
    RG_SCHED_COSINE  /* min_lr + (lr - min_lr)(1 + cos(pi t/T))/2 over all steps, per step */
} rg_schedule_kind;

typedef struct rg_schedule {
    rg_schedule_kind kind;
    int step_epochs;    /* step: epochs between decays */
    float gamma;        /* step: decay factor */
    float min_lr;       /* cosine: floor */
    long warmup_steps;  /* linear warm-up from lr/warmup to lr over this many steps (0: off) */
} rg_schedule;

/* Parses "constant", "step:E:G" (e.g. step:10:0.1), "cosine" or "cosine:MIN", each optionally
 * followed by ",warmup:N" (steps). */
rg_status rg_schedule_parse(const char *text, rg_schedule *out);
/* The learning rate at global step `step` (0-based) in epoch `epoch`, of total_steps. */
float rg_schedule_lr(const rg_schedule *s, float base_lr, long step, int epoch, long total_steps);

/* ---------------------------------------------------------------- datasets */

/* How pixels in [0, 1] become model inputs. */
typedef enum rg_preprocess {
    RG_PRE_SCALE01 = 0, /* x (pixel / 255) */
    RG_PRE_TF,          /* 2x - 1, in [-1, 1], as Keras resnet_v2.preprocess_input */
    RG_PRE_TORCH,       /* (x - mean) / std with ImageNet's per-channel mean and std (one
                           channel: the means of the three) */
    RG_PRE_CAFFE,       /* RGB -> BGR, 255x - ImageNet's BGR mean, as Keras caffe mode */
    RG_PRE_COUNT
} rg_preprocess;

rg_status rg_preprocess_parse(const char *text, rg_preprocess *out);
const char *rg_preprocess_name(rg_preprocess p);

/* Images larger than this many pixels are refused unless a limit is given. */
#define RG_DEFAULT_MAX_PIXELS 100000000L

/* How a dataset's samples become model inputs, and what happens to bad files. */
typedef struct rg_data_options {
    int channels;             /* 1 or 3; 0: the data's own (folders: 3) */
    int height, width;        /* input size; 0: the data's own (folders: 224x224) */
    int classes;              /* IDX labels must be below this (0: fashion-mnist's 10; any
                                 byte for idx:, the classes then 1 + the largest label) */
    rg_preprocess preprocess;
    long max_pixels;          /* larger images are refused; 0: RG_DEFAULT_MAX_PIXELS */
    bool strict;              /* a bad image file is an error, not a warning and a skip */
    int limit;                /* keep the first `limit` training samples (0: all); IDX images
                                 past them are never decompressed, while classes and the
                                 empty-class warning still come from every label */
    /* Receives one line per skipped file; called from loader threads, so it must be
     * thread-safe.  NULL: silent. */
    void (*warn)(void *user, const char *message);
    void *user;
} rg_data_options;

/* A labelled dataset.  Samples live in memory as bytes (IDX data) or in image files decoded
 * on demand (folders), coming out as (c, h, w) floats after resizing, channel conversion
 * and preprocessing; or in memory as floats (rg_dataset_from_floats), coming out as they
 * are. */
typedef struct rg_dataset {
    int n, c, h, w;         /* samples and the shape each comes out in */
    int classes;            /* folders: class folders; IDX: 1 + the largest label */
    int *labels;
    uint8_t *pixels;        /* in memory: (n, src_c, src_h, src_w) bytes; else NULL */
    float *features;        /* in memory as floats: (n, c, h, w), taken as they are (no
                               resizing, preprocessing or augmentation); else NULL */
    int src_c, src_h, src_w;/* shape of the stored bytes (0: same as c, h, w) */
    char **paths;           /* image files, one per sample; else NULL */
    char **class_names;     /* `classes` names (sorted folder names), or NULL */
    char *root;             /* the folder it was read from, or NULL */
    rg_data_options opt;
    long skipped;           /* files found bad: while opening, plus while reading */
    uint8_t *bad;           /* files: 1 once a file failed to decode (warned once) */
} rg_dataset;

/* Reads an IDX image file (N,H,W unsigned bytes) and label file (N) (raw or gzip),
 * validating magic, dimensions and sizes before allocating, that both hold the same count,
 * and that labels are below max_classes (any byte if 0). */
rg_status rg_idx_load(const char *images_path, const char *labels_path, int max_classes,
                      rg_dataset **out);
/* Opens a dataset spec (IDX data whose labels leave some classes without samples gets one
 * warning through opt->warn naming them):
 *   "fashion-mnist[:DIR]"   train split; test_out gets the t10k split; labels below 10.
 *                           DIR defaults to /usr/share/datasets/fashion-mnist.
 *   "idx:IMAGES,LABELS[,TEST_IMAGES,TEST_LABELS]"   any IDX pair; test_out gets NULL when
 *                           no test pair is given.
 *   DIR                     an image folder (rg_folder_open); test_out gets NULL.
 * opt (NULL: defaults) sets size, channels, preprocessing and the handling of bad files.
 * test_out may be NULL when the caller does not want the test split. */
rg_status rg_dataset_open(const char *spec, const rg_data_options *opt, rg_dataset **train_out,
                          rg_dataset **test_out);
/* A dataset of n samples of per-sample shape shape[0..ndim) (ndim 1 to 3: features,
 * (C, L) or (C, H, W)), x holding n x that many floats and labels n integers (both copied).
 * classes 0: 1 + the largest label.  Fails naming the first non-finite value or the first
 * label outside 0..classes-1. */
rg_status rg_dataset_from_floats(int n, int ndim, const int *shape, const float *x,
                                 const int *labels, int classes, rg_dataset **out);
/* An image folder: one subfolder per class, classes numbered by sorted folder name, image
 * files found recursively below each.  Every file's header is checked here (format, size,
 * the pixel limit); files that fail are skipped with a warning (counted in d->skipped), or
 * fail the call when opt->strict.  An empty class folder is a warning; no classes or no
 * images at all is an error. */
rg_status rg_folder_open(const char *dir, const rg_data_options *opt, rg_dataset **out);
void rg_dataset_free(rg_dataset *d);
/* Keeps the first n samples. */
void rg_dataset_truncate(rg_dataset *d, int n);
/* RG_ERR_ARG naming the first sample whose label is outside 0..classes-1 (rg_fit and
 * rg_evaluate check this against the model's classes). */
rg_status rg_dataset_check_labels(const rg_dataset *d, int classes);
/* Renumbers d's labels to the classes of `ref` by class name (a separate test folder must
 * hold a subset of the training classes; export-images' "3_Dress" is class 3 "Dress");
 * fails naming a class ref does not have. */
rg_status rg_dataset_match_classes(rg_dataset *d, const rg_dataset *ref);
/* A seeded permutation of the samples into order, training samples first and validation
 * samples last: round(frac x count) of each class, the first ones of that class in the
 * permutation.  Returns the validation count, or -1 when out of memory. */
int rg_dataset_split(const rg_dataset *d, float frac, rg_rng *rng, int *order);
/* The name of class k: the folder name, or its number. */
const char *rg_dataset_class_name(const rg_dataset *d, int k, char *buf, size_t len);

/* Random augmentation of training samples (each parameter 0 / false: off). */
typedef struct rg_augment {
    bool flip;            /* horizontal, with probability 1/2 */
    int crop_pad;         /* crop=P: pad P pixels of zeros, crop back at a random offset */
    bool resized_crop;    /* random area in [0.08, 1] and aspect in [3/4, 4/3], resized to
                             the input (as torchvision RandomResizedCrop) */
    float rotate_deg;     /* rotate=DEG: uniform angle in [-DEG, DEG], bilinear, zero fill */
    float noise_std;      /* noise=STD: Gaussian noise on [0, 1] pixels */
    float brightness;     /* brightness=F: multiply by U[1-F, 1+F] */
    float contrast;       /* contrast=F: blend with the mean gray by U[1-F, 1+F] */
} rg_augment;

/* Parses a comma-separated list: flip, crop=P, resized-crop, rotate=DEG, noise=STD,
 * brightness=F, contrast=F ("none" or "" for none). */
rg_status rg_augment_parse(const char *text, rg_augment *out);
bool rg_augment_any(const rg_augment *a);

/* One sample i as (c, h, w) floats in x; aug (NULL: none) is drawn from `seed`.  A file that
 * fails to decode gives zeros and a warning (RG_OK), or its error when opt.strict. */
rg_status rg_dataset_sample(const rg_dataset *d, int i, const rg_augment *aug, uint64_t seed,
                            float *x);
/* Samples idx[0..n) without augmentation into x (n, c, h, w), labels into y. */
rg_status rg_dataset_batch(const rg_dataset *d, const int *idx, int n, float *x, int *y);
/* Writes samples [0, limit) (all when limit is 0) as DIR/CLASS/NNNNNN.png, 8-bit, before
 * preprocessing, creating the folders. */
rg_status rg_dataset_export(const rg_dataset *d, const char *dir, int limit);
/* Writes a PNG of `count` samples in a grid, each drawn with aug from `seed`. */
rg_status rg_augment_preview(const rg_dataset *d, const rg_augment *aug, uint64_t seed,
                             int count, const char *path);

/* Background batch preparation: `workers` threads decode, resize and augment batches ahead
 * of training, at most 2 x workers batches in flight whatever the dataset size.  Batches
 * come out in order and are bitwise identical for any number of workers: sample j of an
 * epoch is augmented from a stream keyed by (seed, j). */
typedef struct rg_loader rg_loader;
rg_loader *rg_loader_create(const rg_dataset *d, int batch, int workers);
/* The workers rg_fit uses when not told and the CPU trains: half the threads, at least one
 * (decoding usually costs far less than a training step, which keeps the other half); when
 * a device trains, rg_fit takes every thread. */
int rg_loader_default_workers(void);
/* Starts a pass over idx[0..n) (copied) at batch first_batch (0: the beginning; later ones
 * continue an interrupted pass with the same augmentation draws). */
rg_status rg_loader_start(rg_loader *l, const int *idx, int n, long first_batch,
                          const rg_augment *aug, uint64_t seed);
/* Waits for the next batch: returns its size (0 after the last), or a negated rg_status. */
int rg_loader_next(rg_loader *l, float *x, int *y);
void rg_loader_free(rg_loader *l);

/* ---------------------------------------------------------------- safetensors files */

/* A safetensors file held in memory: named float32 tensors and a string metadata map.
 * Headers are validated fully (size, JSON, dtypes, shapes, offsets inside the data and not
 * overlapping) before any tensor is used. */
typedef struct rg_tensor_file rg_tensor_file;

rg_status rg_safetensors_load(const char *path, rg_tensor_file **out);
void rg_tensor_file_free(rg_tensor_file *f);
int rg_tensor_file_count(const rg_tensor_file *f);
/* The i-th tensor in file order: name, shape, and data (owned by f). */
const char *rg_tensor_file_name(const rg_tensor_file *f, int i);
/* Finds a tensor by name: its data (owned by f), element count and shape; NULL if absent. */
const float *rg_tensor_file_find(const rg_tensor_file *f, const char *name, size_t *count,
                                 int *ndim, int shape[RG_MAX_DIMS]);
/* A metadata value, or NULL. */
const char *rg_tensor_file_meta(const rg_tensor_file *f, const char *key);
/* The i-th metadata key, or NULL past the last. */
const char *rg_tensor_file_meta_key(const rg_tensor_file *f, int i);
/* The i-th tensor's shape. */
rg_status rg_tensor_file_shape(const rg_tensor_file *f, int i, int *ndim, int shape[RG_MAX_DIMS]);
/* The same from bytes in memory (copied); `what` names them in errors. */
rg_status rg_safetensors_parse(const void *bytes, size_t n, const char *what, rg_tensor_file **out);

/* Opens a weights file of any format regrad reads, told apart by its contents: safetensors,
 * or Keras's HDF5 weights (model.save_weights, model.save('m.h5'), the applications'
 * ImageNet files such as resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5), whose
 * tensors come under regrad's names (LAYER.kernel, LAYER.bias, LAYER.gamma, ...) and
 * layouts (conv kernels (kh, kw, in, out) -> OIHW, depthwise (kh, kw, c, 1) -> (c, 1, kh, kw),
 * dense (in, out) -> (out, in)), each weight found through its layer's weight_names, never
 * by position.  rg_model_load then loads it by name as a checkpoint. */
rg_status rg_weights_load(const char *path, rg_tensor_file **out);

/* Writing: named float32 tensors (the data is not copied: it must stay valid until save)
 * and string metadata, saved atomically: a temporary file beside the target, fsync, rename
 * over it, fsync of the folder, so a crash at any moment leaves the old file or the new
 * one, never a mix. */
typedef struct rg_tensor_writer rg_tensor_writer;
rg_tensor_writer *rg_tensor_writer_create(void);
rg_status rg_tensor_writer_add(rg_tensor_writer *w, const char *name, const float *data, int ndim,
                               const int *shape);
rg_status rg_tensor_writer_meta(rg_tensor_writer *w, const char *key, const char *value);
rg_status rg_tensor_writer_save(rg_tensor_writer *w, const char *path);
void rg_tensor_writer_free(rg_tensor_writer *w);

/* ---------------------------------------------------------------- models */
/* (checkpoints of models: see "checkpoints" below) */

/* A graph with its named ends, as built by the zoo. */
#define RG_MAX_AUX 7
#define RG_MAX_HOOKS 4
typedef struct rg_model rg_model;

/* What a model does around each training step beyond its graph, registered by the model
 * builders that need it (auxiliary heads' decaying loss weight, LassoNet's proximal step);
 * rg_fit calls every registered hook, in order.  Either function may be NULL. */
typedef struct rg_model_hooks {
    /* Before the step's backward pass: the step (0-based) of total_steps. */
    void (*before_step)(rg_model *m, long step, long total_steps);
    /* After the optimizer's update, with the step's learning rate; it moves the weights. */
    rg_status (*after_update)(rg_model *m, float lr);
} rg_model_hooks;

struct rg_model {
    rg_graph *graph;
    rg_node input;
    rg_node logits;
    rg_node loss;
    char spec[256];
    /* Auxiliary heads (rg_model_add_aux_heads): their logits, the layers they read, and
     * the objective training differentiates (loss plus the weighted auxiliary losses). */
    int n_aux;
    rg_node aux_logits[RG_MAX_AUX];
    rg_node aux_layer[RG_MAX_AUX];
    rg_node objective;
    float aux_weight;   /* the heads' loss weight at the start (rg_model_set_aux_weight) */
    float lasso_m;      /* lassonet: the hierarchy multiplier M */
    float lasso_lambda; /* lassonet: the L1 strength on the skip (rg_lassonet_set_lambda) */
    const rg_model_hooks *hooks[RG_MAX_HOOKS];
    int n_hooks;
};

typedef enum rg_loss_kind {
    RG_LOSS_XENT = 0, /* softmax cross-entropy from the logits */
    RG_LOSS_MSE       /* mean squared error between softmax(logits) and one-hot labels */
} rg_loss_kind;

/* How rg_model_build builds: every field 0 means the default, so a literal names only what
 * it changes: &(rg_model_opts){.c = 3, .h = 32, .w = 32, .classes = 10}. */
typedef struct rg_model_opts {
    int c, h, w;           /* per-sample input shape (0: the model's default, 1x28x28 for the
                              small models, 3x224x224 for the ImageNet ones) */
    int classes;           /* outputs (0: the model's default, 10 or 1000) */
    rg_loss_kind loss;     /* RG_LOSS_XENT */
    float label_smoothing; /* cross-entropy's, in [0, 1) */
    uint64_t seed;         /* parameter initialisation and dropout masks */
} rg_model_opts;

/* Builds a model from a spec (opts NULL: all defaults); does not compile it.  Specs:
 *   mlp:depth=D,width=W,act=A,init=I,dropout=P,bn=0|1,residual=0|1
 *   cnn[:init=I]                      conv32-pool-conv64-pool-fc128
 *   plaincnn:depth=D,width=C,act=A,init=I
 *   resnet20v2, resnet56v2, plain20, plain56                 (CIFAR-style, 16/32/64)
 *   resnet18v2, resnet50v2, resnet101v2, densenet121          (ImageNet-style, Keras names)
 *   densenet:depth=D,growth=K                                 (DenseNet-BC, small inputs)
 * and on all of them classes=N, input=CxHxW (overrides c, h, w) and top=0|1 (top=0 builds
 * the feature extractor: logits is then the last feature map and loss is RG_NONE).
 * "keras:FILE" builds a Keras model's architecture (model.to_json() text, a .keras
 * archive, or a whole-model .h5) under Keras's layer names: InputLayer, Dense, Conv2D,
 * DepthwiseConv2D, BatchNormalization, Activation, ReLU, LeakyReLU, ELU, Softmax (on the
 * output), MaxPooling2D, AveragePooling2D, GlobalAverage/MaxPooling2D, ZeroPadding2D,
 * Flatten, Dropout, Add and Concatenate, channels_last; opts' c, h, w fill (or replace) the
 * input's height and width, and opts' classes, when set, size the output Dense.  Weights
 * are not read: load them with rg_weights_load and rg_model_load.
 * Shape errors (an input too small for the network) are reported here, before any
 * activation is allocated. */
rg_status rg_model_build(const char *spec, const rg_model_opts *opts, rg_model *out);
/* A model of a graph built by hand (compiled or not; rg_fit compiles it at its batch if
 * not): input is its input node (RG_NONE: the graph's only one), logits the classifier's
 * output, loss the scalar training minimises.  The model takes the graph: rg_model_free
 * frees it.  Such a model trains, checkpoints, resumes, predicts and is repaired by GRA
 * exactly as a zoo model; its checkpoints name no spec, so `regrad` commands that rebuild
 * a model from one (eval, predict) need the zoo's. */
rg_status rg_model_from_graph(rg_graph *g, rg_node input, rg_node logits, rg_node loss,
                              rg_model *out);
void rg_model_free(rg_model *m);
/* Intermediate-layer prediction (deep supervision), before compile: `which` is a count
 * ("3": heads spread evenly over the dense/conv layers before the classifier, first and
 * last excepted) or layer names ("dense_2,dense_4").  Each head: a channel average for
 * feature maps, then a dense layer to the classes (aux_head_K) with its own cross-entropy;
 * the objective becomes loss + (w / heads) x sum of the auxiliary losses, w from
 * rg_model_set_aux_weight (0 until set), decaying linearly to 0 at the last step of
 * training (0.3 is GoogLeNet's weight).  Head tensors are left out by rg_model_save and
 * ignored by rg_model_load, so exported and predicting models have no heads. */
rg_status rg_model_add_aux_heads(rg_model *m, const char *which);
void rg_model_set_aux_weight(rg_model *m, float w);
/* What training differentiates: the objective with auxiliary heads, else the loss. */
rg_node rg_model_objective(const rg_model *m);
/* Registers hooks (not copied: they must outlive the model); RG_ERR_ARG past RG_MAX_HOOKS. */
rg_status rg_model_add_hooks(rg_model *m, const rg_model_hooks *hooks);
/* Runs the hooks (rg_fit does, around each step); moves_weights says whether any has an
 * after_update. */
void rg_model_before_step(rg_model *m, long step, long total_steps);
rg_status rg_model_after_update(rg_model *m, float lr);
bool rg_model_moves_weights(const rg_model *m);
/* LassoNet ("lassonet:width=W,depth=D,M=10"): the L1 strength on the skip (0 until set:
 * the hierarchy alone; RG_ERR_ARG for a model that is not a lassonet); the hierarchical
 * proximal step for every input feature with threshold lambda (its hook runs it with
 * lambda x lr after each step); and the features still selected (skip weights not zero),
 * written to features (may be NULL): their count, or -1 for a model that is not a lassonet. */
rg_status rg_lassonet_set_lambda(rg_model *m, float lambda);
rg_status rg_lassonet_prox(rg_model *m, float lambda);
int rg_lassonet_selected(const rg_model *m, int *features);
/* The zoo's i-th model spec with its own options ("mlp:depth=D,width=W,...") into buf,
 * or NULL past the last (for help texts; rg_names gives the bare names). */
const char *rg_model_spec(int i, char *buf, size_t len);
/* Parses "xent" or "mse". */
rg_status rg_loss_parse(const char *text, rg_loss_kind *out);

/* Writes a Keras-like table (layer, output shape, parameters; totals) to f. */
void rg_graph_summary(const rg_graph *g, FILE *f);

/* ---------------------------------------------------------------- gradient health */

/* What the monitor concludes about a layer. */
typedef enum rg_verdict {
    RG_HEALTHY = 0,
    RG_VANISHING,  /* gradient tiny next to its weights and the network's best layer */
    RG_EXPLODING,  /* gradient huge next to its weights and the network's typical layer */
    RG_SATURATED,  /* most sigmoid/tanh outputs pinned near their bounds */
    RG_DEAD,       /* most relu units output zero for the whole batch */
    RG_NONFINITE,  /* NaN or Inf in the gradient */
    RG_VERDICT_COUNT
} rg_verdict;

const char *rg_verdict_name(rg_verdict v);

/* One layer (a dense or conv node with its weights) as the monitor last saw it.  A NaN
 * means "not measured" (e.g. the backward gain of the first layer). */
typedef struct rg_layer_health {
    const char *name;       /* the dense or conv node */
    const char *act;        /* the activation that follows it ("" if none) */
    int units;              /* output units or channels */
    double grad_norm;       /* ||dL/dW|| */
    double weight_norm;     /* ||W|| */
    double grad_ratio;      /* ||dL/dW|| / ||W|| */
    double update_ratio;    /* ||W_after - W_before|| / ||W|| over the last step */
    double backward_gain;   /* ||dL/dx|| / ||dL/dz||: how the gradient grows or shrinks
                             * crossing the layer (z its output, x its input) */
    double grad_rms;        /* RMS of dL/dz per value: the gradient arriving at the layer */
    double pre_mean;        /* the layer's output (pre-activation): mean over units of the */
    double pre_std;         /* per-unit mean, and of the per-unit standard deviation */
    double act_mean, act_std;  /* the activation's output */
    double saturated;       /* fraction of sigmoid/tanh outputs within 1% of their bounds */
    double dead;            /* fraction of relu units that are zero for the whole batch */
    long nonfinite;         /* non-finite values in dL/dW */
    rg_verdict verdict;
    char evidence[128];     /* the numbers behind the verdict, in words */
    /* Curvature (rg_monitor_measure_curvature; NaN until measured): */
    double input_cond;      /* largest / median eigenvalue of E[x x^T] of the layer's input
                             * (for a conv, of its im2col columns) */
    double mean_outlier;    /* |E[x]|^2 over the mean eigenvalue of the input's covariance:
                             * how far the mean's direction stands out (centring removes it) */
    double gn_top;          /* top eigenvalue of the layer's Gauss-Newton block */
    bool ill_conditioned;   /* mean_outlier above 100 (a sigmoid's input ~800, a relu's ~60) */
    char curvature_evidence[128];
} rg_layer_health;

/* Watches a graph's layers through its forward and backward passes.  One monitor per
 * graph; it holds a hook on the graph until freed. */
typedef struct rg_monitor rg_monitor;

rg_monitor *rg_monitor_create(rg_graph *g);
void rg_monitor_free(rg_monitor *m);
/* Collect statistics during the next forward and backward (1) or not (0, no cost). */
void rg_monitor_enable(rg_monitor *m, int on);
int rg_monitor_layer_count(const rg_monitor *m);
const rg_layer_health *rg_monitor_layer(const rg_monitor *m, int i);
/* Per-unit mean and standard deviation of layer i's output over the last observed batch
 * (arrays of rg_layer_health.units), for re-conditioning. */
const double *rg_monitor_unit_mean(const rg_monitor *m, int i);
const double *rg_monitor_unit_std(const rg_monitor *m, int i);
/* Recomputes every layer's verdict and evidence from the last observed pass.  Call it after
 * rg_monitor_note_update when the step's norms come from the optimizer (below); before the
 * step it takes them itself. */
void rg_monitor_judge(rg_monitor *m);
/* Whether the coming step's update is measured (on = 1; call before its forward pass), and
 * how: by the optimizer o in its own pass (rg_optim_measure_next), or, when o is NULL,
 * from a copy of each layer's weights that the observed backward pass keeps in the pass
 * that takes their norm.  Pass NULL when something moves the weights after the optimizer
 * (max-norm, pruning masks, a trust region), so the copy sees the whole change.  With
 * norms_too, o also sums each layer's weights and gradient for their norms, sparing the
 * monitor that pass, and on a device the watched pass's figures arrive with the update's
 * (one wait for the device, not two): only when the gradients reach o as backward left
 * them (no repair, clipping or averaging between).  Fails only for want of memory (the
 * copy: one float per parameter). */
rg_status rg_monitor_track_update(rg_monitor *m, int on, rg_optim *o, int norms_too);
/* Measures each layer's curvature figures (rg_layer_health above) on the first `batch`
 * samples in the graph's input buffers and labels: one observed forward pass for the
 * inputs' second moments (their eigenvalues by rank, O(f^3) for f inputs), and with
 * gn_iters > 0 the top eigenvalue of each layer's Gauss-Newton block for the loss node
 * `loss` by up to gn_iters power iterations (each a forward, a tangent and a backward
 * pass).  Parameters and running statistics are left as they were. */
rg_status rg_monitor_measure_curvature(rg_monitor *m, rg_node loss, int batch, int gn_iters);
/* The curvature along a step, network-wide (rg_fit_config.curvature_every):
 * rg_monitor_before_step keeps the weights before the update (one float per parameter);
 * after it, rg_monitor_measure_step takes, on the step's batch (still in the input buffers
 * and labels) at the weights the step started from, the loss's slope g.u along the update
 * u and its Gauss-Newton curvature u^T G u (one forward and one tangent pass; the weights
 * the step left, the running statistics and the dropout stream as they were; with dropout,
 * the next pass's masks); rg_monitor_step_curvature reads them (NaN until measured, and
 * again from the next rg_monitor_note_update).  -g.u / u^T G u is the fraction of u that
 * minimises the loss's quadratic model along it: below 1 the step overshoots, far above
 * it creeps. */
rg_status rg_monitor_before_step(rg_monitor *m);
rg_status rg_monitor_measure_step(rg_monitor *m, rg_node loss, int batch);
void rg_monitor_step_curvature(const rg_monitor *m, double *slope, double *curvature);
/* After the step: records ||W_after - W_before|| / ||W_before|| for every layer
 * (update_ratio; NaN for a frozen layer, or one the backward pass did not reach; nothing
 * unless tracking), and the norms the optimizer summed. */
void rg_monitor_note_update(rg_monitor *m);

/* ---------------------------------------------------------------- GRA: gradient repair */

/* One decision of GRA, as logged to the metrics file. */
typedef struct rg_repair_event {
    long step;              /* 0-based optimizer step; 0 for the probe before training */
    const char *layer;
    const char *verdict;    /* what was wrong: "vanishing", "exploding", "non-finite", ... */
    const char *action;     /* "recondition", "scale_grad", "skip_step" */
    double factor;          /* the scale applied (1 for a skipped step) */
} rg_repair_event;

typedef void (*rg_repair_log)(void *user, const rg_repair_event *e);

typedef struct rg_repair rg_repair;

/* GRA for model m, reading the layers through monitor mon (which it drives); log may be
 * NULL.  Constants are documented in src/health/repair.c; there is nothing to tune. */
rg_repair *rg_repair_create(rg_model *m, rg_monitor *mon, rg_repair_log log, void *user);
void rg_repair_free(rg_repair *r);
/* The probe: diagnoses the network on samples idx[0..n) of d and, if any layer is
 * unhealthy, re-conditions the layers from the first unhealthy one on, input to output:
 * each unit's pre-activation is centred and scaled to unit spread over the probe batches
 * (its weight row and bias rescaled).  Layers followed by batch norm are left alone.
 * A healthy network is not touched.  Fails with the status of a probe batch that fails
 * (a file that cannot be read, a non-finite value under rg_graph_check_numerics). */
rg_status rg_repair_probe(rg_repair *r, const rg_dataset *d, const int *idx, int n);
/* After backward, before the optimizer: guards and repairs this step's gradients.
 * Returns 1 when the step must be skipped (non-finite gradient), 0 otherwise, and
 * RG_ERR_NUMERIC (negated) after a run of skipped steps too long to continue. */
int rg_repair_gradients(rg_repair *r, long step);
/* While training, GRA re-checks the network every few steps (REPROBE_EVERY in repair.c),
 * and a network the probe found healthy also at steps 1, 2, 4 ... 32: wants_check says
 * whether this step is one (then run it with the monitor enabled), and check
 * re-conditions the layers from the first one the monitor now finds unhealthy (at an early
 * check, a network the probe found healthy goes back to the weights its last healthy check
 * kept instead). */
int rg_repair_wants_check(const rg_repair *r, long step);
rg_status rg_repair_check(rg_repair *r, long step);
/* Around the optimizer step: the trust region on each layer's update (only for networks
 * the probe re-conditioned): before saves the parameters (given the optimizer o that
 * makes the step, it has o keep them in its own pass: rg_optim_keep_next; NULL: copies
 * them now) and has o's next step hand it each centred layer's weights as it writes them
 * (rg_optim_then_next: r must outlive that step), after caps each layer's change of its
 * pre-activations (see repair.c). */
void rg_repair_before_update(rg_repair *r, rg_optim *o);
void rg_repair_after_update(rg_repair *r, long step);
/* Whether rg_repair_after_update may move the weights (GRA's trust region is on). */
int rg_repair_caps_updates(const rg_repair *r);
/* Actions taken so far (probe included). */
long rg_repair_actions(const rg_repair *r);

/* ---------------------------------------------------------------- gradient clipping, max-norm */

/* On the trainable parameters' gradients (call after backward, before the optimizer):
 * clamp each value to [-v, v]; scale each tensor whose norm exceeds c down to c (Keras
 * clipnorm); scale all gradients by c / (norm + 1e-6) when their global norm exceeds c
 * (torch clip_grad_norm_, which returns the norm before clipping); adaptive gradient
 * clipping (Brock et al. 2021): each unit's gradient (a dense kernel's row, a conv
 * kernel's output filter; other tensors element by element) is scaled down to
 * lambda x max(|W_unit|, 1e-3), node `skip` (the classifier) excluded. */
void rg_clip_grad_value(rg_graph *g, float v);
void rg_clip_grad_tensor_norm(rg_graph *g, float c);
double rg_clip_grad_norm(rg_graph *g, float c);
void rg_clip_grad_agc(rg_graph *g, float lambda, rg_node skip);
/* Max-norm (Keras MaxNorm, after the optimizer step): each unit's incoming weights (a
 * dense kernel's row over its inputs, a conv filter over C x K x K: Keras's axis 0 for
 * Dense, [0, 1, 2] for Conv2D) become w x min(|w|, c) / (1e-7 + |w|).  Biases are not
 * constrained. */
void rg_apply_max_norm(rg_graph *g, float c);

/* ---------------------------------------------------------------- pruning */

typedef enum rg_prune_structure {
    RG_PRUNE_WEIGHTS = 0, /* single weights, by |w| */
    RG_PRUNE_UNITS        /* whole outputs (a dense row, a conv filter, and its bias), by the
                             norm of their incoming weights */
} rg_prune_structure;

typedef struct rg_prune_opts {
    float amount;       /* target fraction pruned, counting what is pruned already */
    float threshold;    /* > 0: prune scores below it instead of an amount */
    bool global;        /* rank across layers (units: by norm per weight) vs per layer */
    rg_prune_structure structure;
    int norm;           /* units: 1 (L1) or 2 (L2) */
} rg_prune_opts;

typedef struct rg_prune_report {
    int layers;         /* prunable layers: dense and conv kernels, the classifier excepted */
    long prunable, pruned;
    double sparsity;    /* pruned / prunable */
} rg_prune_report;

/* Magnitude pruning of a compiled model's dense and conv kernels (not the classifier's):
 * pruned weights become 0 and masked, and stay 0 while rg_fit trains on (masks are saved
 * in checkpoints as "mask.<parameter>"). */
rg_status rg_prune(rg_model *m, const rg_prune_opts *o, rg_prune_report *report);
/* Multiplies the parameters by their masks (nothing when no mask exists); forgets them. */
void rg_graph_apply_masks(rg_graph *g);
void rg_graph_clear_masks(rg_graph *g);
/* Parameter i's mask (NULL when nothing is pruned), and setting it (values 0 or 1). */
const float *rg_graph_mask(const rg_graph *g, int i);
rg_status rg_graph_set_mask(rg_graph *g, int i, const float *mask);
/* The fraction of parameter i's values that are exactly 0. */
double rg_param_sparsity(const rg_graph *g, int i);

/* ---------------------------------------------------------------- data-parallel training (MPI) */

/* Whether this build has MPI. */
bool rg_dist_available(void);
/* Joins the MPI job when the process was started by an MPI launcher (mpirun); otherwise,
 * and without MPI, the job is this one process.  rg_fit then trains data-parallel: each
 * rank takes its slice of every global batch (ranks x the batch it was compiled for),
 * gradients are summed over ranks by sample count (one all-reduce of the flat gradient
 * buffer per step), so every rank applies the same update; only rank 0 writes checkpoints. */
rg_status rg_dist_init(int *argc, char ***argv);
void rg_dist_finalize(void);
/* Ends every rank's process when one fails (MPI_Abort), so none waits in a collective. */
void rg_dist_abort(int code);
int rg_dist_rank(void);
int rg_dist_size(void);
/* In-place sum over ranks; broadcast from rank 0; whether all ranks hold the same value. */
rg_status rg_dist_allreduce_sum(float *buf, size_t n);
rg_status rg_dist_sum_doubles(double *buf, int n);
rg_status rg_dist_broadcast(float *buf, size_t n);
rg_status rg_dist_agree(uint64_t value, bool *same);
/* Seconds spent and bytes moved in gradient and parameter collectives so far. */
double rg_dist_comm_seconds(void);
unsigned long long rg_dist_comm_bytes(void);

/* ---------------------------------------------------------------- checkpoints */

/* Extra checkpoint metadata: key/value strings (not copied). */
#define RG_META_MAX 32
typedef struct rg_meta {
    int n;
    const char *key[RG_META_MAX];
    const char *value[RG_META_MAX];
} rg_meta;
/* Sets or replaces key. */
void rg_meta_set(rg_meta *m, const char *key, const char *value);

/* Writes m's weights as a Keras HDF5 weights file that Keras's model.load_weights reads
 * into the matching Keras model, atomically.  A path ending in .weights.h5 gets Keras 3's
 * layout (layers/<class>[_N]/vars/0, 1, ..., numbered in the order Keras 3 lists the
 * layers of a Functional model, each group named); any other the legacy layout (Keras 2,
 * and Keras 3's legacy loader): layer_names, one group per layer with weights
 * (weight_names, then each weight at LAYER/ROLE:0), in Keras's tensor layouts. */
rg_status rg_keras_save(const rg_model *m, const char *path);
/* Writes a compiled model as ONNX (opset 13) for inference runtimes, atomically: the graph
 * from the input to the logits (batch norm in inference form, dropout an Identity, the loss
 * left out), a dynamic batch dimension, the weights as initializers LAYER.weight, .bias,
 * .running_mean, .running_var, and meta (may be NULL) as metadata_props. */
rg_status rg_onnx_save(const rg_model *m, const char *path, const rg_meta *meta);
/* Prints Keras's model.summary() table of a Keras model file (as "keras:FILE" builds it):
 * each layer's name and class, output shape (None, H, W, C), parameter count and inputs,
 * and the totals, batch norm's moving statistics counted as non-trainable as Keras does. */
rg_status rg_keras_summary(const char *path, const rg_model_opts *opts, FILE *f);

/* Writes a compiled model's parameters and state under their names, with its spec, input
 * shape and class count (and meta) as metadata, atomically. */
rg_status rg_model_save(const rg_model *m, const char *path, const rg_meta *meta);

enum {
    RG_LOAD_STRICT = 0,
    RG_LOAD_PARTIAL = 1,  /* load what fits, report the rest */
    RG_LOAD_NEW_HEAD = 2, /* the classifier may differ in shape: it keeps its initialisation */
    RG_LOAD_STRICT_AUX = 4 /* auxiliary heads must be in the file too (resuming); otherwise
                              the model's heads start fresh and the file's are ignored */
};
typedef struct rg_load_report {
    int loaded, missing, unexpected, mismatched, reinitialised;
    char first_missing[128], first_unexpected[128], first_mismatched[320];
} rg_load_report;
/* Loads tensors from f into a compiled model by name.  Every tensor is checked first:
 * model tensors the file lacks (missing), file tensors the model lacks (unexpected; the
 * optimizer.* and gra.* ones of training checkpoints aside) and tensors of another shape
 * (mismatched) fail the load before anything changes, unless flags has RG_LOAD_PARTIAL;
 * then what fits is loaded.  report (may be NULL) says which. */
rg_status rg_model_load(rg_model *m, const rg_tensor_file *f, int flags, rg_load_report *report);

/* ---------------------------------------------------------------- training */

typedef struct rg_epoch_stats {
    int epoch;           /* 1-based */
    double loss, acc;    /* training, averaged over the epoch */
    double val_loss, val_acc; /* NaN when there is no validation set */
    double seconds, images_per_sec;
    double lr;
    long repairs;        /* GRA actions during the epoch (the probe counts in epoch 1) */
    long skipped;        /* steps skipped for non-finite gradients */
    double sparsity;     /* after this epoch's pruning step (0 without a schedule) */
} rg_epoch_stats;

/* Called after each batch (for progress) and each epoch; may be NULL. */
typedef struct rg_fit_callbacks {
    void (*on_batch)(void *user, int epoch, int batch, int batches, double loss, double acc,
                     double images_per_sec, double eta_seconds, long repairs);
    void (*on_epoch)(void *user, const rg_epoch_stats *s);
    /* Every GRA action (with rg_fit_config.repair). */
    void (*on_repair)(void *user, const rg_repair_event *e);
    /* Every monitor_every steps, after the update: the monitor's per-layer view of that
     * step (update_ratio included) and the curvature along it (rg_monitor_step_curvature). */
    void (*on_health)(void *user, long step, const rg_monitor *mon);
    /* After each checkpoint is written. */
    void (*on_checkpoint)(void *user, const char *path);
    void *user;
} rg_fit_callbacks;

/* Where a run is, for training checkpoints. */
typedef struct rg_train_state {
    int epoch;      /* epochs completed */
    long batch;     /* batches completed in the epoch after those (an interrupted one) */
    long step;      /* steps completed */
    uint64_t seed;  /* the run's data-order seed */
} rg_train_state;

typedef struct rg_fit_config {
    int epochs;
    int batch;              /* samples per step (0: the compiled batch) */
    uint64_t seed;          /* shuffle order */
    float val_split;        /* fraction held out, per class, from a seeded permutation */
    rg_augment augment;     /* applied to training batches only */
    int workers;            /* loader threads for files or augmentation (0: half the threads,
                               all of them when a device trains) */
    rg_optim_config optim;
    rg_schedule schedule;
    int repair;             /* 1: GRA (probe, then per-step repair); 0: off */
    int monitor_every;      /* steps between health snapshots (on_health); 0: none */
    int curvature_every;    /* every this many snapshots, the curvature along that step too
                               (rg_monitor_measure_step: about a forward and a tangent pass);
                               0: never */
    /* Training checkpoints: DIR/epoch_N.safetensors every checkpoint_every epochs and after
     * the last, DIR/last.safetensors a link to the newest, only the newest `keep` epoch
     * files kept (0: all); meta is added to each. */
    const char *checkpoint_dir;
    int checkpoint_every;
    int keep;
    const rg_meta *meta;
    /* Continue the run this training checkpoint was saved from (same data, model, seed and
     * settings): the result is bitwise the same as never having stopped. */
    const rg_tensor_file *resume;
    /* Stop after this many epochs of this call (0: none), checkpointing there, as if the
     * run were interrupted: the schedule still spans all `epochs`. */
    int stop_after;
    /* The classic remedies (0: off), applied in this order after GRA's gradient guards:
     * clip_value, clip_tensor_norm, clip_norm, agc (classifier excluded); max_norm after
     * the optimizer step. */
    float clip_value, clip_tensor_norm, clip_norm, agc, max_norm;
    /* Gradual magnitude pruning (Zhu & Gupta's cubic schedule) at the end of epochs
     * prune_start..prune_end (1-based): the amount rises to prune.amount as
     * 1 - (1 - t)^3 with t the fraction of those epochs done.  prune_end 0: off. */
    rg_prune_opts prune;
    int prune_start, prune_end;
    /* When *stop becomes non-zero (a signal handler's flag), training ends after the
     * current step, writes DIR/interrupted.safetensors (and points last.safetensors at it)
     * when checkpointing, and rg_fit returns RG_STOPPED.  Resuming from that checkpoint
     * continues mid-epoch, bitwise as if never stopped. */
    volatile int *stop;
    /* Data-parallel (several ranks): batch norm's training statistics over the whole global
     * batch, all ranks' samples (synchronised batch norm); off: per rank. */
    bool sync_bn;
} rg_fit_config;

/* The defaults: 1 epoch, batches of the compiled size, seed 42, Adam with PyTorch's
 * defaults, a constant learning rate, GRA on, checkpoints (when a folder is given) every
 * epoch; everything else off.  Change fields, then pass a pointer. */
rg_fit_config rg_fit_defaults(void);
/* The batch rg_fit compiles an uncompiled model for when cfg->batch is 0. */
#define RG_DEFAULT_BATCH 128
/* Trains m on `train`, compiling its graph for cfg->batch first if it is not compiled.  If
 * val_split > 0 the held-out samples (stratified: the same fraction of every class) are
 * evaluated after each epoch. */
rg_status rg_fit(rg_model *m, const rg_dataset *train, const rg_fit_config *cfg,
                 const rg_fit_callbacks *cb);
/* Before compiling m: what rg_fit(m, d, cfg) will hold beside the graph (the optimizer's
 * moments, the loader's batches in flight) comes out of budget (bytes), and the rest bounds
 * what compile may allocate (rg_graph_set_memory_limit).  RG_ERR_MEMORY when those alone
 * exceed it. */
rg_status rg_fit_budget(rg_model *m, const rg_dataset *d, const rg_fit_config *cfg, double budget);
/* Mean loss and accuracy of m on d in evaluation mode (batches of the compiled size). */
rg_status rg_evaluate(rg_model *m, const rg_dataset *d, const int *idx, int n, double *loss,
                      double *acc);
/* Each auxiliary head's accuracy on d (acc has m->n_aux entries), in evaluation mode. */
rg_status rg_evaluate_aux(rg_model *m, const rg_dataset *d, double *acc);
/* The same, also counting confusion[true * K + predicted] (K = the model's classes; the
 * caller zeroes it). */
rg_status rg_evaluate_confusion(rg_model *m, const rg_dataset *d, const int *idx, int n,
                                double *loss, double *acc, long *confusion);

#ifdef __cplusplus
}
#endif
#endif /* REGRAD_H */

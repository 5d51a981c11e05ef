/*
 * internal.h — types shared inside libregrad and never shown to users: the graph and node
 * structs, the op table every op registers in, and the error helper.
 *
 * An op is one file in src/ops/ defining an rg_op_def and its builder functions.  Adding
 * an op: its file, a line in RG_OPS (below; the enum and the op table come from it), its
 * builder's prototype in regrad.h, and a gradient-check case (tests/test_gradcheck.c fails
 * for an op without one).
 */
#ifndef RG_INTERNAL_H
#define RG_INTERNAL_H

#include "regrad.h"

#include <stdarg.h>
#include <stdbool.h>

#define RG_MAX_INPUTS 8
#define RG_NAME_MAX 96

typedef struct rg_node_impl rg_node_impl;
typedef struct rg_backend rg_backend; /* where a graph runs (src/kernels/backend.h) */
/* Whether every parameter of n is frozen (and it has some). */
bool rg_node_frozen(const rg_graph *g, const rg_node_impl *n);

/* A device name's index: "cuda" 0, "cuda:N" N (up to four digits); otherwise
 * RG_ERR_ARG naming the forms (src/core/device.c). */
rg_status rg_device_index(const char *device, int *index);

/* A graph on a device (rg_graph_set_device): whether it is; n floats of one of its
 * buffers copied into new host memory (NULL, RG_ERR_MEMORY recorded, when there is none);
 * n host floats written into one of its buffers, or n of its floats read into host memory.
 * On the CPU: the buffer itself, memcpy. */
bool rg_graph_on_device(const rg_graph *g);
float *rg_graph_host_copy(const rg_graph *g, const float *x, size_t n);
void rg_graph_write(const rg_graph *g, float *dst, const float *src, size_t n);
void rg_graph_read(const rg_graph *g, float *dst, const float *src, size_t n);
/* n host floats written into one of o's moment buffers, wherever they live. */
void rg_optim_write(const rg_optim *o, float *dst, const float *src, size_t n);

/* Records a formatted message as the thread's last error and returns status. */
rg_status rg_fail(rg_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* RG_ERR_FORMAT "FILE: WHAT 'NAME' (KIND): message": a model file's layer or node at fault. */
rg_status rg_fail_in(const char *file, const char *what, const char *name, const char *kind,
                     const char *fmt, va_list ap);

/* Name tables (names.c): the index of text among names[0..n) (-1: none); the names joined
 * "a, b or c" (NULL entries skipped) into buf; RG_ERR_ARG "unknown WHAT 'text': use a, b or
 * c". */
int rg_name_index(const char *const *names, int n, const char *text);
const char *rg_name_list(const char *const *names, int n, char *buf, size_t len);
rg_status rg_fail_unknown(const char *what, const char *text, const char *const *names, int n);
#define RG_COUNT_OF(a) ((int)(sizeof(a) / sizeof *(a)))
/* Each module's table, for rg_names. */
const char *const *rg_act_names(int *n);
const char *const *rg_init_names(int *n);
const char *const *rg_optim_names(int *n);
const char *const *rg_schedule_names(int *n);
const char *const *rg_preprocess_names(int *n);
const char *const *rg_augment_names(int *n);
const char *const *rg_model_table_names(int *n);
const char *const *rg_loss_names(int *n);

/* 1234567 -> "1,234,567" (summary.c). */
void rg_thousands(size_t v, char *buf, size_t len);

/* Overflow-checked size arithmetic: returns false (and leaves *out alone) on overflow. */
bool rg_mul_size(size_t a, size_t b, size_t *out);

/* Every op: X(KIND, name) gives RG_OP_KIND and its definition rg_op_name_def (in its file
 * in src/ops/), from which the enum and the op table (op_table.c) are made. */
#define RG_OPS(X)                                                                            \
    X(INPUT, input)                                                                          \
    X(DENSE, dense)                                                                          \
    X(ACTIVATION, activation)                                                                \
    X(SOFTMAX, softmax)                                                                      \
    X(DROPOUT, dropout)                                                                      \
    X(ADD, add)                                                                              \
    X(FLATTEN, flatten)                                                                      \
    X(FLATTEN_HWC, flatten_hwc)                                                              \
    X(SOFTMAX_XENT, softmax_xent)                                                            \
    X(MSE, mse)                                                                              \
    X(CONV2D, conv2d)                                                                        \
    X(MAX_POOL, max_pool)                                                                    \
    X(AVG_POOL, avg_pool)                                                                    \
    X(GLOBAL_AVG_POOL, global_avg_pool)                                                      \
    X(ZERO_PAD, zero_pad)                                                                    \
    X(CONCAT, concat)                                                                        \
    X(BATCH_NORM, batch_norm)                                                                \
    X(WEIGHTED_SUM, weighted_sum)

#define RG_OP_ENUM(kind, name) RG_OP_##kind,
typedef enum rg_op_kind { RG_OPS(RG_OP_ENUM) RG_OP_COUNT } rg_op_kind;
#undef RG_OP_ENUM


/* One row of the op table. */
typedef struct rg_op_def {
    const char *name;     /* default node-name prefix and summary label */
    int min_inputs, max_inputs;
    /* Sets n->ndim/shape from the inputs (and n->batched for scalars), declares parameters
     * with rg_param_declare(), and sizes scratch in n->aux_per_sample / aux_fixed.  Returns
     * RG_OK or an error naming the node. */
    rg_status (*infer)(rg_graph *g, rg_node_impl *n);
    /* (Its forward and backward are each backend's: src/kernels/backend.h.) */
    /* backward writes an input's dout whole (=, not +=) when rg_grad_fresh says nothing has
     * been written to it yet, so the graph need not zero it first (a pass over memory saved;
     * without this, backward zeroes every gradient buffer before its first writer). */
    bool fills_fresh_grads;
    /* The output is a view of input 0 (same data, other shape): no copy, no backward. */
    bool aliases_input;
    /* backward reads this node's own output: another node may not write over it in place,
     * and it stays allocated until this node's backward */
    bool backward_reads_output;
    /* backward reads the inputs' outputs: they stay allocated until this node's backward */
    bool backward_reads_inputs;
    /* Optional: adjusts n to read input 0 without the zero padding (top, bottom, left,
     * right) a zero_pad node added, and returns true; the pad node is then bypassed. */
    bool (*absorb_padding)(rg_node_impl *n, const int pad[4]);
} rg_op_def;

extern const rg_op_def *const rg_op_table[RG_OP_COUNT];

struct rg_node_impl {
    rg_op_kind op;
    char name[RG_NAME_MAX];
    int inputs[RG_MAX_INPUTS];
    int n_inputs;
    int ndim;                /* per-sample dimensions */
    int shape[RG_MAX_DIMS];
    size_t size;             /* per-sample elements; 1 for a scalar */
    bool batched;            /* false for scalars such as losses */
    bool needs_grad;         /* some parameter lies upstream: backward must reach it */
    void *attr;              /* op-owned attributes, freed with the graph */
    int first_param, n_params;
    size_t aux_per_sample;   /* op scratch floats per sample (e.g. dropout mask) */
    size_t aux_fixed;        /* op scratch floats independent of the batch */
    size_t workspace;        /* transient scratch floats used only inside one forward or
                              * backward call; all nodes share the graph's workspace */
    size_t workspace_per_sample; /* and more of it, per sample of the largest batch */
    float *out;              /* (max_batch, shape) or 1 */
    float *staged;           /* an input of a graph on a device: the host buffer callers
                              * write (rg_graph_input_buffer), uploaded by forward */
    float *dout;             /* same layout as out */
    float *aux;              /* aux_per_sample * max_batch + aux_fixed */
    bool inplace;            /* out is input inplace_of's out, overwritten (memory planning) */
    int inplace_of;          /* which input: 0 but for an add (memory planning) */
    int adds_from;           /* a convolution whose add (in place on it) it does itself as it
                              * writes its output: the add's other input, or -1 (planning) */
    bool added;              /* this forward pass, it did (set by the convolution) */
    int stats_for;           /* such a convolution: the batch norm that reads the add's sum,
                              * whose batch statistics a device's makes as it writes the sum
                              * (planning; -1: none) */
    int stats_from;          /* that batch norm: the convolution (-1: none) */
    uint64_t stats_span;     /* the forward span (rg_graph's forward_spans) in which it did
                              * (set by the convolution; 0: none) */
    bool watched;            /* the health monitor reads this layer's output this pass */
    bool fused;              /* a relu in place on a batch norm, which applies it: the relu's
                              * passes do not run (set by memory planning) */
    int fused_relu;          /* a batch norm's fused relu node, or -1 */
    bool bypassed;           /* folded into its consumer: never runs, holds no memory */
    int grad_owner;          /* the node whose dout this node's dout is (itself, or an
                              * aliased input) */
    int last_use;            /* highest index of a node writing into this dout */
    size_t out_offset;       /* of the output buffer in the activation arena */
    size_t grad_offset;      /* of an owner's dout in the activation arena */
    size_t aux_offset;       /* of its op scratch, past the arena (the scratch in node order) */
    double fwd_seconds, bwd_seconds; /* accumulated while profiling */
    double flops;            /* multiply-adds x 2 of one sample's forward (0: not counted) */
    struct rg_output_stats *stats; /* set while the health monitor watches: see below */
};

/* Statistics an op takes of its own output while it is still in cache, when the health
 * monitor asks (node->stats; NULL otherwise), which the monitor then reads instead of
 * scanning the output again: a convolution (conv.c) per (sample, channel) plane, the sums
 * and the count of rg_plane_sums (kernels.h), and in backward the squares of each sample's
 * gradients; a dense layer (dense.c) per unit over the batch, those of rg_unit_block_sums. */
typedef struct rg_output_stats {
    int want;          /* an rg_count_kind: nothing, or the relu's sums (no bounds) */
    double *sums;      /* (batch, channels, 4); dense: (units, 4) */
    long *counts;      /* (batch, channels); dense: (units) */
    double *dy_squares, *dx_squares; /* convolutions, backward, per sample: sum of dY^2
                                        (rg_squares), and of the input's gradient once this
                                        op added to it; NULL for a dense layer */
} rg_output_stats;
/* Fills sample b's planes from its output y (channels x plane values). */
void rg_output_stats_sample(rg_output_stats *st, int channels, size_t plane, int b, const float *y);

typedef struct rg_param_impl {
    char suffix[32];      /* "kernel", "bias" */
    char name[RG_NAME_MAX + 32];
    int node;
    int ndim;
    int shape[RG_MAX_DIMS];
    size_t offset, size;
    rg_init init;
    int fan_in, fan_out;
    bool trainable;
    bool state;           /* non-trainable state (running statistics): lives in state_buf */
} rg_param_impl;

struct rg_graph {
    const rg_backend *backend; /* computes the ops, holds the buffers */
    rg_node_impl *nodes;
    int n_nodes, cap_nodes;
    rg_param_impl *params;
    int n_params, cap_params;
    size_t param_floats;
    float *param_buf;     /* one allocation: every parameter (all the graph's buffers come
                           * from the backend, 64-byte aligned) */
    float *grad_buf;      /* same layout */
    float *mask_buf;      /* same layout, 0 or 1, once something is pruned (else NULL) */
    size_t state_floats;
    float *state_buf;     /* one allocation: every state tensor (batch-norm statistics) */
    float *act_buf;       /* one allocation: every node's out, dout, aux */
    float *workspace;     /* shared transient scratch: the largest node's need */
    int slots;            /* threads the workspace has room for (set at build) */
    int *labels;          /* (max_batch), in host memory */
    int *device_labels;   /* on a device: its copy, uploaded by forward (the CPU: NULL):
                           * one of two halves of device_label_pair, as the inputs' outs */
    int *device_label_pair;
    struct rg_upload *uploads; /* on a device: forward's copies, an input's each and the labels' */
    int input_half;       /* on a device, which half of each input's block (and of the labels')
                           * this forward uploaded into: forward alternates them, so that a
                           * batch's upload overlaps the work still reading the last one */
    int max_batch;
    int batch;            /* of the last forward */
    bool compiled;
    bool input_grads;     /* backward fills the inputs' dout too */
    bool profile;         /* time every node's forward and backward */
    bool no_inplace;      /* keep every node's output (rg_graph_keep_outputs) */
    bool check_numerics;  /* scan every output and gradient for NaN/Inf (rg_graph_check_numerics) */
    bool guard_memory;    /* canaries after every buffer of act_buf, checked after each pass
                           * (rg_graph_guard_memory, REGRAD_GUARD_MEMORY=1; memory.c) */
    struct rg_guard *guards; /* where they are */
    int n_guards;
    size_t memory_limit;  /* bytes compile may allocate (0: no limit) */
    size_t device_free;   /* on a device: its free bytes when the graph was placed there */
    bool tf32;            /* on a device: its products in TF32 (rg_graph_set_precision) */
    bool bf16;            /* on a device: its activations and products in bf16 (the same) */
    bool sync_bn;         /* data-parallel: batch norm's batch statistics over all ranks */
    size_t memory_bytes;  /* what compile allocated */
    bool *live, *touched; /* backward (and tangent, frontier) scratch, one flag per node */
    bool fresh[RG_MAX_INPUTS]; /* the backward running now: input k's dout holds nothing yet */
    /* Called right after each node's forward (backward = false) and backward, while its
     * buffers still hold their values: how the health monitor sees every layer. */
    void (*hook)(rg_graph *g, int node, bool backward, void *user);
    void *hook_user;
    size_t arena_floats;  /* the shared output and gradient arena at the start of act_buf */
    rg_status error;      /* first builder error (sticky) */
    char error_msg[512];
    uint64_t seed;
    uint64_t dropout_calls; /* counter mixed into dropout masks: one stream per forward */
    uint64_t forward_spans; /* calls of rg_graph_forward_nodes, each a span of nodes run */
    /* During a tangent pass (curvature.c): each node's tangent (batch x size, NULL outside
     * its live range) and the parameters' direction (param_floats, NULL: zero). */
    float **tangent;
    const float *tangent_params;
    const float *const *tangent_inputs; /* per node: an input node's direction, or NULL (zero) */
    /* An exact Hessian product's held gradients, per node (NULL: none kept), read by the
     * backward tangents; while capture_adjoint, backward copies each node's gradient to
     * its slot before the node's own backward runs. */
    float **adjoint;
    bool capture_adjoint;
    /* An exact Hessian product's tangents and held gradients, kept between calls (power
     * iteration makes many; fresh memory each time costs as much as the product); freed
     * with the graph. */
    float *hessian_cache;
    size_t hessian_cache_floats;
    /* A device's passes captured and replayed (replay.c): the captures, whether passes
     * may be (REGRAD_GRAPHS, a backend that captures, no dropout; -1: not decided yet), whether the last forward was a
     * training pass and whether it was replayed, the passes replayed so far, the first
     * reason a capture broke, and a hook whose passes may be replayed (the monitor's):
     * replay_mode(hook_user) says how it watches now, 0 not at all, a positive kind of
     * pass the same every time, -1 one that may differ. */
    struct rg_replay *replays;
    int n_replays;
    int replay_on;
    bool forward_train, forward_replayed;
    long replayed;
    char replay_broken[200];
    void (*replay_hook)(rg_graph *g, int node, bool backward, void *user);
    int (*replay_mode)(const void *hook_user);
};

/* A pass replay.c may capture: which, and everything its kernels' arguments depend on
 * beyond the compiled graph. */
typedef struct rg_replay_key {
    int backward; /* 0: a whole forward pass; 1: a backward from `from` */
    int batch, train, half, from; /* train: a backward's, of the forward before it */
    uint32_t seed; /* backward: its scalar seed's bits */
    int tf32, bf16;
    /* set by rg_replay_pass: how the hook watches (replay.c's hook_mode), and the buffers
     * the pass reads and writes, which a side pass may swap (a curvature measured at other
     * weights: rg_graph_curvature_along_at) */
    int watch;
    const float *params, *grads, *state;
} rg_replay_key;
typedef struct rg_replay rg_replay;
/* pass(g, arg) run as is, or captured, or replayed (replay.c); the captures dropped (at
 * anything that changes what a pass launches: compile, precision, trainable, ...). */
rg_status rg_replay_pass(rg_graph *g, rg_replay_key key, rg_status (*pass)(rg_graph *, void *), void *arg);
void rg_replay_forget(rg_graph *g);

/* --- used by ops --- */

/* A side pass (a curvature product, the monitor's measurements) between training steps:
 * begin keeps the running statistics, the dropout counter and the graph's hook (muted when
 * asked); end puts them back (curvature.c). */
typedef struct rg_side_pass {
    float *state;
    uint64_t dropout_calls;
    void (*hook)(rg_graph *, int, bool, void *);
} rg_side_pass;
rg_status rg_side_pass_begin(rg_graph *g, rg_side_pass *p, bool mute_hook);
/* Nodes first..last of a forward pass.  From node 0 this is a new pass (rg_graph_forward,
 * stopped after `last`: a side pass that measures the nodes up to it, no backward may
 * follow it); from a later node it continues one of `batch` samples, every output before
 * `first` that a node from it on reads being current (run, or put back by
 * rg_graph_frontier), under the dropout counter the caller set. */
rg_status rg_graph_forward_nodes(rg_graph *g, int batch, int train, rg_node first, rg_node last);
/* The outputs of the nodes before `first` that nodes from it on read, at `batch` samples:
 * copied into `kept` (save) or back from it, one after another; returns their floats
 * (kept NULL: only counts).  What a pass needs to continue from `first` later. */
size_t rg_graph_frontier(rg_graph *g, rg_node first, int batch, float *kept, bool save);
/* The op of the first node up to `upto` whose backend has no tangent for it (RG_OP_COUNT:
 * none): what curvature, and GRA's Newton guard, need (curvature.c). */
rg_op_kind rg_graph_first_without_tangent(const rg_graph *g, rg_node upto);
void rg_side_pass_end(rg_graph *g, rg_side_pass *p);

/* rg_graph_tangent with directions for input nodes too (input_dirs[node], in host memory on
 * either backend; NULL: zero; input_dirs NULL: none move): how the finite-difference check
 * tests every op's tangent, and test_device the device's against the CPU's. */
rg_status rg_graph_tangent_from(rg_graph *g, int batch, int train, const float *v,
                                const float *const *input_dirs, rg_node node, float *out);

/* The tangent of backward's result from node `from` seeded with `seed` (a scalar loss
 * seeded with 1: the Hessian product H v, or with gauss_newton the losses' terms only,
 * G v), along the parameters' direction v and the input nodes' input_dirs (as
 * rg_graph_tangent_from): the parameters' part in the gradient buffer, the inputs' in their
 * gradients.  How rg_graph_curvature_product computes, and how the finite-difference check
 * tests every op's backward tangent. */
rg_status rg_graph_backward_tangent(rg_graph *g, rg_node from, const float *seed, int batch, int train,
                                    bool gauss_newton, const float *v, const float *const *input_dirs);

/* rg_graph_curvature_along at the weights in `at` (param_floats in the backend's memory)
 * instead of the graph's own: the two buffers swap for the passes, so both weight sets
 * stay exact.  How GRA's Newton guard and the monitor measure a step from its start. */
rg_status rg_graph_curvature_along_at(rg_graph *g, float *at, rg_node loss, int batch, int train,
                                      const float *v, double *slope, double *curvature);

/* Appends a node of op kind with the given inputs and op attributes (malloc'd or NULL;
 * ownership passes to the graph), runs the op's infer, and returns its index or RG_NONE. */
rg_node rg_graph_add_node(rg_graph *g, rg_op_kind op, const int *inputs, int n_inputs,
                          void *attr);
/* Declares a parameter of node n; called from infer.  Returns its index or -1. */
int rg_param_declare(rg_graph *g, rg_node_impl *n, const char *suffix, int ndim,
                     const int *shape, rg_init init, int fan_in, int fan_out);
/* Declares non-trainable state of node n (e.g. running mean), initialised by init. */
int rg_state_declare(rg_graph *g, rg_node_impl *n, const char *suffix, int ndim,
                     const int *shape, rg_init init);
/* Records a builder error unless one is recorded already; returns RG_NONE. */
rg_node rg_graph_error(rg_graph *g, rg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline rg_node_impl *rg_in(rg_graph *g, const rg_node_impl *n, int k) {
    return &g->nodes[n->inputs[k]];
}
/* A tangent pass's tangent of input k of n, of n itself, and the direction of n's
 * parameter k (NULL: zero, as for state and when no direction is given). */
static inline const float *rg_tangent_in(const rg_graph *g, const rg_node_impl *n, int k) {
    return g->tangent[n->inputs[k]];
}
/* Whether input k of n has a zero tangent: a data input no check moves (curvature is along
 * the parameters), whose products an op may skip. */
static inline bool rg_tangent_in_is_zero(const rg_graph *g, const rg_node_impl *n, int k) {
    const rg_node in = n->inputs[k];
    return g->nodes[in].op == RG_OP_INPUT && !(g->tangent_inputs && g->tangent_inputs[in]);
}
static inline float *rg_tangent_out(const rg_graph *g, const rg_node_impl *n) {
    return g->tangent[n - g->nodes];
}
static inline const float *rg_param_tangent(const rg_graph *g, const rg_node_impl *n, int k) {
    const rg_param_impl *p = &g->params[n->first_param + k];
    return p->state || !g->tangent_params ? NULL : g->tangent_params + p->offset;
}
/* A backward tangent's held gradient of node n (g->adjoint's copy). */
static inline const float *rg_adjoint(const rg_graph *g, const rg_node_impl *n) {
    return g->adjoint[n - g->nodes];
}
static inline float *rg_param_data(rg_graph *g, const rg_node_impl *n, int k) {
    const rg_param_impl *p = &g->params[n->first_param + k];
    return (p->state ? g->state_buf : g->param_buf) + p->offset;
}
static inline float *rg_param_grad(rg_graph *g, const rg_node_impl *n, int k) {
    return g->grad_buf + g->params[n->first_param + k].offset;
}

struct rg_conv_geom;
/* Validates a (C, H, W) input for a k x k window and fills the geometry (conv.c). */
rg_status rg_window_geometry(const rg_node_impl *x, int kernel, int stride, int dilation,
                             rg_padding mode, int pad, struct rg_conv_geom *g);

/* A zero_pad node's top, bottom, left, right padding. */
const int *rg_zero_pad_amounts(const rg_node_impl *n);

/* Lays out every node's output, gradient and scratch (src/graph/memory.c): in-place
 * activations, gradient buffers shared by liveness.  Returns the floats needed, or sets
 * *floats and fails on overflow. */
rg_status rg_graph_plan_memory(rg_graph *g, size_t *floats);
/* Points every node's buffers into g->act_buf according to the plan (an input's output
 * into its half g->input_half of its block on a device). */
void rg_graph_place_memory(rg_graph *g);
/* Guarded memory, before compile: no buffer shares memory with another, each is followed
 * by canaries, and every pass checks them at its end (a device's waits for its work).
 * Compile turns it on also with REGRAD_GUARD_MEMORY=1 in the environment. */
typedef struct rg_guard {
    size_t at, len;       /* canaries' floats in act_buf */
    int node;
    const char *what;     /* "output", "gradient" or "scratch" */
} rg_guard;
void rg_graph_guard_memory(rg_graph *g, int on);
void rg_graph_fill_guards(rg_graph *g);
/* RG_OK, or RG_ERR_STATE naming the first buffer a kernel wrote past */
rg_status rg_graph_check_guards(const rg_graph *g);

/* Eigenvalues of the symmetric n x n matrix m (row-major) by rank: out[k] the ranks[k]-th
 * smallest (0-based), for k < count (eigen.c).  0, or -1 for want of memory. */
int rg_symmetric_eigenvalues(const float *m, int n, const int *ranks, int count, double *out);
/* All eigenvalues (values, n, in no set order) and unit eigenvectors (vectors: n x n, row j
 * the eigenvector of values[j]) of the symmetric n x n matrix m (eigen.c).  0, or -1 out of
 * memory or unconverged. */
int rg_symmetric_eigen(const float *m, int n, double *values, double *vectors);

/* Monitor internals used by GRA: estimate E[x x^T] and E[x] of every dense layer's input
 * during observed passes, and read them back (NULL until observed). */
void rg_monitor_want_moments(rg_monitor *m, int on);
int rg_monitor_layer_node(const rg_monitor *m, int i); /* the graph node of layer i */
rg_act rg_monitor_layer_act(const rg_monitor *m, int i); /* its activation (RG_ACT_LINEAR if none) */
const float *rg_monitor_input_moment(const rg_monitor *m, int i, const float **mean, int *fan_in);
rg_status rg_monitor_set_input_moment(rg_monitor *m, int i, const float *moment,
                                      const float *mean, int fan_in);
/* Layer i's input covariance C split as Q^T S Q + R: returns Q (k orthonormal rows of
 * fan_in, near C's top eigenvectors, then the input's mean as row k; NULL: no moment),
 * with S (k x k, row stride 8, the most k), ||R||_F, which bounds R's eigenvalues, and
 * top >= C's largest eigenvalue (Gershgorin's bound on S plus ||R||_F); kept until the
 * moment is measured again.  GRA's trust region bounds tr(dW C dW^T) by them. */
const float *rg_monitor_input_covariance_split(rg_monitor *m, int i, int *k, const float **s, double *rest,
                                               double *top);
/* Layer i's input mean outlier, |E[x]|^2 over the mean eigenvalue of its covariance (NaN
 * without moments), and whether that makes it ill-conditioned (monitor.c). */
double rg_monitor_mean_outlier(const rg_monitor *m, int i);
/* Layer i's input covariance's trace, its total variance (NaN without moments). */
double rg_monitor_input_variance(const rg_monitor *m, int i);
/* The samples (n rows of fan_in) layer i's moment came from, kept in host memory for a
 * dense layer with more inputs than the batch has samples (NULL otherwise), and their
 * restore from a checkpoint, after the moment's (RG_ERR_ARG: more than the batch holds, or
 * not fewer than the inputs). */
const float *rg_monitor_input_rows(const rg_monitor *m, int i, int *n);
rg_status rg_monitor_set_input_rows(rg_monitor *m, int i, const float *rows, int n);
bool rg_monitor_ill_conditioned(double mean_outlier);

/* n floats of one of g's buffers (an output, a gradient, the parameters) as the host reads
 * them: on the CPU the buffer itself, on a device a copy valid until the next call. */
const float *rg_host(const rg_graph *g, const float *x, size_t n);
/* Whether node n stores its output and gradient as bf16 (under --precision bf16: every
 * batched node, so all but the losses; its buffers then hold two values a float), and `count` values of x, one of n's buffers, as
 * floats the host can read (rg_host's, widened from bf16 where n stores bf16). */
bool rg_node_bf16(const rg_graph *g, const rg_node_impl *n);
const float *rg_node_host(const rg_graph *g, const rg_node_impl *n, const float *x, size_t count);
/* `count` values of x, one of node n's buffers, into dst as rg_node_host reads them, copied
 * behind the work queued so far without waiting for it: dst holds them once
 * rg_graph_reads_done returns, which waits for these copies alone, so a device goes on
 * meanwhile with the work queued after them (a step's backward while the host reads the
 * loss; the next batch's loading while it reads the logits).  Every read_later is followed
 * by a reads_done before dst goes away. */
void rg_node_read_later(const rg_graph *g, const rg_node_impl *n, const float *x, size_t count, float *dst);
rg_status rg_graph_reads_done(const rg_graph *g);
/* A device's queued sums (the backend's reductions that arrive at flush_sums) arrive now,
 * all in one wait; on the CPU they are there already. */
void rg_graph_sums_arrive(const rg_graph *g);
/* The floats that hold `count` of node n's values: two to a float where n stores bf16. */
size_t rg_node_floats(const rg_graph *g, const rg_node_impl *n, size_t count);

/* Whether the model's input takes the dataset's samples and its labels are among the
 * model's classes (evaluate.c); the number of rows of logits (n, k) whose largest entry is
 * the label. */
rg_status rg_model_check_data(const rg_model *m, const rg_dataset *d);
int rg_count_correct(const float *logits, const int *labels, int n, int k);

/* Tensor files made in memory (safetensors.c), as readers of other formats build them:
 * an empty one; a tensor added under name, its data (malloc'd, n floats of the shape) taken
 * over by the file, freed on failure too; a metadata entry. */
rg_tensor_file *rg_tensor_file_new(void);
rg_status rg_tensor_file_put(rg_tensor_file *f, const char *name, int ndim, const int *shape,
                             float *data);
rg_status rg_tensor_file_set_meta(rg_tensor_file *f, const char *key, const char *value);
/* A writer's tensors as a safetensors image to fd (a pipe, say). */
rg_status rg_tensor_writer_to_fd(const rg_tensor_writer *w, int fd);
/* Keras HDF5 weights (keras.c): whether 8 bytes start an HDF5 file; the reader. */
bool rg_is_hdf5(const unsigned char *head, size_t n);
/* Whether bytes start a zip (a .keras archive). */
bool rg_is_zip(const unsigned char *head, size_t n);
rg_status rg_keras_load(const char *path, rg_tensor_file **out);
/* The seconds the reading process may take (60; tests and fuzzing lower it). */
void rg_keras_time_limit(unsigned seconds);
/* A Keras model's JSON from model.to_json() text, a .keras archive's config.json or a
 * whole-model .h5's model_config attribute, NUL-terminated, into a new buffer. */
rg_status rg_keras_model_config(const char *path, char **json);
/* A Keras model JSON built into m's graph (keras_model.c), for rg_model_build's "keras:". */
rg_status rg_keras_model_build(const char *path, const rg_model_opts *opts, rg_model *m);

/* ONNX models (onnx.c): "onnx:FILE" built into m's graph (input and logits set), and the
 * file's initializers as a tensor file under the regrad names that build gives them. */
rg_status rg_onnx_model_build(const char *path, const rg_model_opts *opts, rg_model *m);
rg_status rg_onnx_weights(const char *path, rg_tensor_file **out);

/* Training checkpoints (checkpoint.c): the model, the optimizer's moments and counters,
 * GRA's state (gra may be NULL) and the run's position, atomically; and back. */
rg_status rg_checkpoint_save(const char *path, const rg_model *m, rg_optim *o,
                             const rg_repair *gra, const rg_train_state *st, const rg_meta *meta);
rg_status rg_checkpoint_restore(const rg_tensor_file *f, rg_model *m, rg_optim *o,
                                rg_train_state *st);

/* GRA's state for checkpoints (repair.c): its counters and per-layer statistics as a
 * JSON string (malloc'd), its trust-region input statistics as tensors
 * "gra.LAYER.input_moment" and "gra.LAYER.input_mean" added to w (data owned by r). */
char *rg_repair_state_json(const rg_repair *r);
rg_status rg_repair_add_tensors(const rg_repair *r, rg_tensor_writer *w);
/* Restores what the two above saved, and takes the probe set without probing. */
rg_status rg_repair_restore(rg_repair *r, const char *json, const rg_tensor_file *f,
                            const rg_dataset *d, const int *idx, int n);

/* A conv node's window geometry (as it reads its input) and groups (conv.c); the input
 * channels of a geometry; its zeros on each side, top, left, bottom, right (the far sides
 * as many as the output size needs). */
const struct rg_conv_geom *rg_conv_geometry(const rg_node_impl *n, int *groups);
int rg_conv_channels(const struct rg_conv_geom *q);
void rg_conv_pads(const struct rg_conv_geom *q, int pads[4]);

/* In an op's backward (fills_fresh_grads): input k's gradient holds nothing yet, so the
 * op writes it whole rather than adding to it. */
static inline bool rg_grad_fresh(const rg_graph *g, int k) { return g->fresh[k]; }

/* Threads an op may use at once: the workspace holds this many per-thread slices. */
int rg_thread_slots(void);

/* Initialises a flat slice from its init description using rng. */
void rg_init_fill(float *dst, size_t n, rg_init init, int fan_in, int fan_out, rg_rng *rng);

/* Counter-based uniform in [0,1): a pure function of (key, counter), so parallel loops
 * draw the same numbers whatever the thread count. */
float rg_hash_uniform(uint64_t key, uint64_t counter);

#endif /* RG_INTERNAL_H */

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

/* One op on one backend.  forward computes n->out for `batch` samples from the inputs'
 * outputs; backward accumulates (+=) into the inputs' dout and the parameter gradients
 * from n->dout (NULL: the op does not propagate); plan, when present, sizes what the op
 * needs of the graph's shared workspace (n->workspace, n->workspace_per_sample) for its
 * geometry, at build and again when memory planning folds padding into it. */
typedef struct rg_backend_op {
    void (*forward)(rg_graph *g, rg_node_impl *n, int batch, bool train);
    void (*backward)(rg_graph *g, rg_node_impl *n, int batch);
    void (*plan)(rg_graph *g, rg_node_impl *n);
} rg_backend_op;

struct rg_backend {
    const char *name;
    rg_backend_op ops[RG_OP_COUNT];
    /* floats of zeroed memory aligned to at least RG_BUFFER_ALIGN bytes, and its release
     * (NULL is fine) */
    float *(*alloc)(size_t floats);
    void (*release)(float *p);
};

#define RG_BUFFER_ALIGN 64

extern const rg_backend rg_cpu_backend;

#endif

/*
 * input.c — the input op: a node whose output buffer the caller fills before forward.
 */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

typedef struct input_attr {
    int ndim;
    int shape[RG_MAX_DIMS];
} input_attr;

static rg_status input_infer(rg_graph *g, rg_node_impl *n) {
    (void)g;
    const input_attr *a = n->attr;
    n->ndim = a->ndim;
    memcpy(n->shape, a->shape, sizeof n->shape);
    return RG_OK;
}

const rg_op_def rg_op_input_def = {
    .name = "input", .min_inputs = 0, .max_inputs = 0,
    .infer = input_infer,
};

rg_node rg_input(rg_graph *g, const char *name, int ndim, const int *dims) {
    if (ndim < 1 || ndim > RG_MAX_DIMS || !dims)
        return rg_graph_error(g, RG_ERR_SHAPE, "input: %d dimensions; use 1 to %d", ndim,
                              RG_MAX_DIMS);
    size_t total = 1;
    for (int d = 0; d < ndim; d++) {
        if (dims[d] < 1 || !rg_mul_size(total, (size_t)dims[d], &total) || total > (1u << 30))
            return rg_graph_error(g, RG_ERR_SHAPE, "input: dimension %d is %d; every "
                                  "dimension must be at least 1 and the sample under 2^30 "
                                  "values", d + 1, dims[d]);
    }
    input_attr *a = calloc(1, sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->ndim = ndim;
    memcpy(a->shape, dims, (size_t)ndim * sizeof *dims);
    rg_node n = rg_graph_add_node(g, RG_OP_INPUT, NULL, 0, a);
    if (n != RG_NONE && name) rg_node_set_name(g, n, name);
    return n;
}

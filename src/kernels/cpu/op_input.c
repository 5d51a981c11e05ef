/*
 * op_input.c — the input op on the CPU: nothing to compute (the caller wrote its output).
 */
#include "../../ops/ops.h"
#include "cpu.h"

#include <string.h>

void rg_cpu_input_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)g, (void)n, (void)batch, (void)train; /* the caller wrote n->out */
}

void rg_cpu_input_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    /* curvature is along the parameters: the data moves only when a check asks it to */
    const float *dir = g->tangent_inputs ? g->tangent_inputs[n - g->nodes] : NULL;
    if (dir) memcpy(rg_tangent_out(g, n), dir, (size_t)batch * n->size * sizeof(float));
    else memset(rg_tangent_out(g, n), 0, (size_t)batch * n->size * sizeof(float));
}

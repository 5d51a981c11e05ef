/*
 * op_input.c — the input op on the CPU: nothing to compute (the caller wrote its output).
 */
#include "../../ops/ops.h"
#include "cpu.h"

void rg_cpu_input_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)g, (void)n, (void)batch, (void)train; /* the caller wrote n->out */
}

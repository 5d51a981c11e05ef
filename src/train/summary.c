/*
 * summary.c — a Keras-like table of a graph: each layer's name and op, output shape,
 * parameter count, and the totals.
 */
#include "../internal.h"

#include <stdio.h>
#include <string.h>

static void shape_text(const rg_node_impl *n, char *buf, size_t len) {
    int used = snprintf(buf, len, "(None");
    for (int d = 0; d < n->ndim && used < (int)len; d++)
        used += snprintf(buf + used, len - (size_t)used, ", %d", n->shape[d]);
    if (used < (int)len) snprintf(buf + used, len - (size_t)used, ")");
}

void rg_thousands(size_t v, char *buf, size_t len) {
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%zu", v), o = 0;
    for (int i = 0; i < n && o + 2 < (int)len; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
}

void rg_graph_summary(const rg_graph *g, FILE *f) {
    const char *rule = "_________________________________________________________________________";
    fprintf(f, "%s\n %-40s %-20s %10s\n%s\n", rule, "Layer (op)", "Output Shape", "Param #",
            "=========================================================================");
    size_t total = 0, trainable = 0, frozen = 0;
    int frozen_layers = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const rg_node_impl *n = &g->nodes[i];
        if (!n->batched) continue; /* losses are not layers */
        size_t count = 0;
        for (int p = 0; p < n->n_params; p++) {
            const rg_param_impl *pi = &g->params[n->first_param + p];
            count += pi->size;
            if (pi->trainable) trainable += pi->size;
            else if (!pi->state) frozen += pi->size;
        }
        total += count;
        const bool is_frozen = rg_node_frozen(g, n);
        frozen_layers += is_frozen;
        char label[RG_NAME_MAX + 48], shape[64], num[32];
        snprintf(label, sizeof label, "%s (%s)%s", n->name, rg_op_table[n->op]->name,
                 is_frozen ? " frozen" : "");
        shape_text(n, shape, sizeof shape);
        rg_thousands(count, num, sizeof num);
        fprintf(f, " %-40s %-20s %10s\n", label, shape, num);
    }
    char a[32], b[32], c[32];
    rg_thousands(total, a, sizeof a);
    rg_thousands(trainable, b, sizeof b);
    rg_thousands(total - trainable, c, sizeof c);
    fprintf(f, "=========================================================================\n"
               "Total params: %s\nTrainable params: %s\nNon-trainable params: %s\n", a, b, c);
    if (frozen) {
        rg_thousands(frozen, a, sizeof a);
        fprintf(f, "Frozen params: %s (in %d layers; counted as non-trainable)\n", a, frozen_layers);
    }
    fprintf(f, "%s\n", rule);
}

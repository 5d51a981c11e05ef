/*
 * memory.c — where every activation lives.  Two savings make large networks fit:
 *
 * In-place activations.  An element-wise activation whose input has no other consumer, and
 * whose input's op does not read its own output in backward (conv, dense, batch norm: they
 * read their input), writes over that input's buffer.  Activation derivatives are written
 * in terms of the output y (all but GELU, which needs x and so never runs in place).
 *
 * Gradient buffers shared by liveness.  Backward runs nodes from the last to the first; a
 * node's gradient is live from the backward of its last consumer (its first writer) to its
 * own backward.  Nodes whose intervals do not overlap share memory, placed first-fit,
 * largest first.  Backward zeroes a gradient just before its first writer, so there is no
 * whole-graph memset either.  Gradients of the inputs, when asked for, live to the end.
 *
 * Padding folded into convolutions.  A zero_pad node (Keras's ResNets and DenseNet put one
 * before most convolutions) whose only consumer can absorb it (op hook absorb_padding)
 * is bypassed: the consumer reads the unpadded tensor and pads inside its im2col.
 *
 * On ResNet50V2 at batch 32 these took the peak from 8.1 GiB to the figure in README.
 */
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

static size_t node_floats(const rg_graph *g, const rg_node_impl *n) {
    return n->batched ? (size_t)g->max_batch * n->size : n->size;
}

typedef struct grad_block {
    int node;
    size_t size, offset;
} grad_block;

static int by_size_desc(const void *a, const void *b) {
    const grad_block *x = a, *y = b;
    return x->size < y->size ? 1 : x->size > y->size ? -1 : x->node - y->node;
}

/* Live intervals [node, last_use] in node indices overlap. */
static bool overlaps(const rg_graph *g, int a, int b) {
    return a <= g->nodes[b].last_use && b <= g->nodes[a].last_use;
}

static void decide_inplace(rg_graph *g) {
    int *consumers = calloc((size_t)g->n_nodes, sizeof *consumers);
    int *consumer = calloc((size_t)g->n_nodes, sizeof *consumer);
    if (!consumers || !consumer) { /* no folding or in-place then: correct, only larger */
        free(consumers);
        free(consumer);
        return;
    }
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) {
            consumers[g->nodes[i].inputs[k]]++;
            consumer[g->nodes[i].inputs[k]] = i;
        }
    for (int i = 0; i < g->n_nodes && !g->no_inplace; i++) {
        rg_node_impl *pad = &g->nodes[i];
        if (pad->op != RG_OP_ZERO_PAD || pad->bypassed || consumers[i] != 1) continue;
        rg_node_impl *c = &g->nodes[consumer[i]];
        const rg_op_def *cd = rg_op_table[c->op];
        if (c->inputs[0] == i && cd->absorb_padding && cd->absorb_padding(c, rg_zero_pad_amounts(pad))) {
            c->inputs[0] = pad->inputs[0];
            pad->bypassed = true;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        n->inplace = false;
        if (g->no_inplace || n->op != RG_OP_ACTIVATION || *(rg_act *)n->attr == RG_ACT_GELU)
            continue;
        const rg_node_impl *p = rg_in(g, n, 0);
        const rg_op_def *pd = rg_op_table[p->op];
        n->inplace = p->op != RG_OP_INPUT && p->batched && !pd->aliases_input && !p->inplace &&
                     !pd->backward_reads_output && consumers[n->inputs[0]] == 1;
    }
    free(consumers);
    free(consumer);
}

rg_status rg_graph_plan_memory(rg_graph *g, size_t *floats) {
    decide_inplace(g);
    /* Gradient owners and their live intervals. */
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        n->grad_owner = rg_op_table[n->op]->aliases_input ? rg_in(g, n, 0)->grad_owner : i;
        n->last_use = i;
    }
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) {
            rg_node_impl *o = &g->nodes[g->nodes[g->nodes[i].inputs[k]].grad_owner];
            if (o->last_use < i) o->last_use = i;
        }
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == RG_OP_INPUT) g->nodes[i].last_use = g->n_nodes; /* kept */

    size_t total = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const rg_node_impl *n = &g->nodes[i];
        if (n->bypassed) continue;
        size_t aux;
        if (!rg_mul_size(n->aux_per_sample, (size_t)g->max_batch, &aux))
            return rg_fail(RG_ERR_MEMORY, "%s: scratch size overflows", n->name);
        if (!n->inplace && !rg_op_table[n->op]->aliases_input) total += node_floats(g, n);
        total += aux + n->aux_fixed;
        if (total > ((size_t)1 << 40))
            return rg_fail(RG_ERR_MEMORY, "activations need over 4 TiB at batch %d: reduce "
                                          "--batch or the model size", g->max_batch);
    }
    /* Gradient arena: first fit, largest blocks first. */
    grad_block *blocks = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *blocks);
    grad_block *placed = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *placed);
    if (!blocks || !placed) {
        free(blocks);
        free(placed);
        return rg_fail(RG_ERR_MEMORY, "out of memory planning activations");
    }
    int nb = 0, np = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const rg_node_impl *n = &g->nodes[i];
        if (n->needs_grad && n->grad_owner == i && !n->bypassed) blocks[nb++] = (grad_block){i, node_floats(g, n), 0};
    }
    qsort(blocks, (size_t)nb, sizeof *blocks, by_size_desc);
    size_t arena = 0;
    for (int b = 0; b < nb; b++) {
        /* Lowest offset clear of every placed block live at the same time. */
        size_t offset = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int q = 0; q < np; q++)
                if (overlaps(g, blocks[b].node, placed[q].node) &&
                    offset < placed[q].offset + placed[q].size &&
                    placed[q].offset < offset + blocks[b].size) {
                    offset = placed[q].offset + placed[q].size;
                    moved = true;
                }
        }
        blocks[b].offset = offset;
        placed[np++] = blocks[b];
        if (offset + blocks[b].size > arena) arena = offset + blocks[b].size;
    }
    for (int b = 0; b < np; b++) g->nodes[placed[b].node].grad_offset = placed[b].offset;
    free(blocks);
    free(placed);
    g->grad_arena = arena;
    *floats = total + arena;
    return RG_OK;
}

void rg_graph_place_memory(rg_graph *g) {
    float *p = g->act_buf, *arena = g->act_buf;
    p += g->grad_arena;
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        if (n->bypassed) {
            n->out = n->dout = n->aux = NULL;
            continue;
        }
        if (n->inplace || rg_op_table[n->op]->aliases_input) {
            n->out = rg_in(g, n, 0)->out;
        } else {
            n->out = p;
            p += node_floats(g, n);
        }
        n->aux = p;
        p += n->aux_per_sample * (size_t)g->max_batch + n->aux_fixed;
        if (n->grad_owner != i) n->dout = g->nodes[n->grad_owner].dout;
        else if (n->needs_grad) n->dout = arena + n->grad_offset;
        else n->dout = NULL;
    }
}

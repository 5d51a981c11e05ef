/*
 * memory.c — where every activation lives.
 *
 * One timeline: forward runs nodes 0..N-1 at times 0..N-1, backward runs them from N-1
 * down to 0 at times N..2N-1 (node i's backward at 2N-1-i).  Every buffer gets a live
 * interval on it, and buffers whose intervals do not meet share memory in one arena,
 * placed first fit, largest first.
 *
 * - An output is live from its forward to the end of the forward pass (so callers can read
 *   any output, the logits among them, after forward), and beyond that until the last
 *   backward that reads it: its own backward if its op reads its output (activations,
 *   softmax, max pooling), a consumer's backward if that op reads its inputs (dense, conv,
 *   batch norm, ...).  An output only added into a sum (a residual branch's last conv)
 *   dies with the forward pass and its memory serves gradients.
 * - A gradient is live from the backward of its last consumer (its first writer) to its
 *   own backward; the first writer fills it (or backward zeroes it just before).  The inputs' buffers
 *   (and their gradients, when asked for) live throughout.
 *
 * Three rewrites come first:
 * - Zero padding folded into convolutions and pools: a zero_pad node (Keras's ResNets and
 *   DenseNet put one before most convolutions, and before the stem's max pool) whose only
 *   consumer can absorb it (op hook absorb_padding) is bypassed; the consumer reads the
 *   unpadded tensor.
 * - In-place activations: an element-wise activation whose input has no other consumer,
 *   and whose input's op does not read its own output in backward, writes over that input.
 *   Derivatives are computed from the output y (all but GELU, which never runs in place).
 *   A relu in place on a batch norm is fused into it: the batch norm writes relu(y) and in
 *   backward reads the relu's gradient, masked where y <= 0 (y recomputed from its input),
 *   so the relu's gradient lives until then; the relu's own passes do not run.  Same bits.
 * - An add whose input is a convolution that nothing else reads (a residual branch's last)
 *   writes over it, and when the add's other input comes first, the convolution adds it as
 *   it writes its output, unless the monitor reads that output this pass (then the add
 *   runs, in place).  a + b is b + a: the same bits.  On a device, that pass also takes the
 *   batch statistics of the batch norm that reads the sum, in its order: the same bits.
 *   Such an add's gradient is its convolution's and its other input's too, where that
 *   order allows (shares_residual_gradient): its backward has nothing to copy.
 * rg_graph_keep_outputs turns all of this off: every node keeps its own output for good.
 * (What each step saved on ResNet50V2 is in docs/architecture.md.)
 *
 * Guarded memory (rg_graph_guard_memory, REGRAD_GUARD_MEMORY=1), for tests and bug hunts:
 * no buffer shares memory with another, and each is followed by canaries, NaNs no kernel
 * writes, checked after every pass: a kernel that writes past the end of its output,
 * gradient or scratch (or before the start of the next) is named, on the CPU, where the
 * sanitizers see only the whole arena, and on a device, where nothing else looks.
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <stdlib.h>
#include <string.h>

/* Whether node i, an add in place on a convolution, passes its gradient on without a pass
 * of its own (gradient owners are set in node order: those of nodes before i are known):
 * its gradient, the convolution's and its other input x's become one buffer, x's owner's
 * (the group's earliest node, whose backward reads it last).  The convolution's backward
 * reads it as the add's gradient before anything adds x's other consumers' parts into it
 * (no node after the convolution but the add reads a node of x's group, nor does the
 * convolution itself), and the add's backward skips both inputs.  The same bits: a copy
 * left out. */
static bool shares_residual_gradient(const rg_graph *g, int i) {
    const rg_node_impl *n = &g->nodes[i];
    if (n->op != RG_OP_ADD || !n->inplace || n->bypassed || !n->needs_grad) return false;
    const int conv = n->inputs[n->inplace_of], x = n->inputs[1 - n->inplace_of];
    const rg_node_impl *c = &g->nodes[conv], *o = &g->nodes[x];
    if (!c->needs_grad || !o->needs_grad || o->op == RG_OP_INPUT || o->bypassed ||
        rg_node_bf16(g, o) != rg_node_bf16(g, n) || rg_node_bf16(g, c) != rg_node_bf16(g, n))
        return false;
    for (int k = 0; k < c->n_inputs; k++) /* its backward would write the gradient it reads */
        if (g->nodes[c->inputs[k]].grad_owner == o->grad_owner) return false;
    for (int j = conv + 1; j < g->n_nodes; j++)
        for (int k = 0; j != i && k < g->nodes[j].n_inputs; k++) {
            const int in = g->nodes[j].inputs[k];
            if (in < i && g->nodes[in].grad_owner == o->grad_owner) return false;
        }
    return true;
}

/* Every block starts on a 64-byte line (the arena itself does): sizes round up to this. */
#define BLOCK_ALIGN 16

static size_t aligned(size_t floats) { return (floats + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN; }

/* Guarded memory's canaries after each buffer, beyond its rounding up: quiet NaNs with
 * payloads no arithmetic makes (a read of one shows in the results too), each canary's its
 * own, so that a kernel copying past the end of its input into past the end of its output
 * is caught as well. */
#define GUARD_FLOATS 16
static uint32_t canary_bits(int guard, size_t j) {
    return 0x7FC00000u | (((uint32_t)guard * 2654435761u + (uint32_t)j * 40503u + 0xBAD5u) & 0x3FFFFFu);
}

/* What a node's output or gradient buffer holds at the largest batch, in floats: two
 * values a float where it stores bf16, but for an input's upload (float: forward casts it
 * into the input's scratch). */
static size_t node_used(const rg_graph *g, const rg_node_impl *n, bool upload) {
    const size_t values = n->batched ? (size_t)g->max_batch * n->size : n->size;
    return upload ? values : rg_node_floats(g, n, values);
}

/* The buffer's floats, rounded up */
static size_t node_floats(const rg_graph *g, const rg_node_impl *n, bool upload) {
    return aligned(node_used(g, n, upload));
}

/* A node's op scratch (aux): per sample at the largest batch, and fixed; its floats
 * rounded up (and its canaries, when guarded). */
static size_t aux_used(const rg_graph *g, const rg_node_impl *n) {
    return n->aux_per_sample * (size_t)g->max_batch + n->aux_fixed;
}
static size_t aux_floats(const rg_graph *g, const rg_node_impl *n) {
    return aligned(aux_used(g, n)) + (g->guard_memory ? GUARD_FLOATS : 0);
}

/* Whether a node's output and scratch at the graph's batch fit in size_t (with room to
 * add them up): shapes are checked per sample, the batch multiplies them. */
static rg_status check_sizes(const rg_graph *g, const rg_node_impl *n, size_t *aux) {
    size_t out;
    if (!rg_mul_size(n->size, (size_t)g->max_batch, &out) || out > SIZE_MAX / 8 ||
        !rg_mul_size(n->aux_per_sample, (size_t)g->max_batch, aux) || *aux > SIZE_MAX / 8 ||
        n->aux_fixed > SIZE_MAX / 8)
        return rg_fail(RG_ERR_MEMORY, "%s: its output or scratch at batch %d overflows memory "
                                      "sizes: lower the batch or the input size", n->name,
                       g->max_batch);
    return RG_OK;
}

typedef struct block {
    int node;
    bool grad;          /* a gradient buffer (else an output) */
    int lo, hi;         /* live interval on the timeline */
    size_t size, offset;
    size_t used;        /* floats from its start that hold values: guarded, canaries follow */
} block;

static int by_size_desc(const void *a, const void *b) {
    const block *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->lo - y->lo;
}

static void fold_and_inplace(rg_graph *g) {
    int *consumers = calloc((size_t)g->n_nodes, sizeof *consumers);
    int *consumer = calloc((size_t)g->n_nodes, sizeof *consumer);
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        n->fused = false, n->fused_relu = -1, n->inplace = false, n->inplace_of = 0, n->adds_from = -1;
        n->stats_for = n->stats_from = -1, n->stats_span = 0;
    }
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
            c->inputs[0] = pad->inputs[0]; /* the pad's input keeps one consumer: c */
            pad->bypassed = true;
            if (g->backend->ops[c->op].plan) g->backend->ops[c->op].plan(g, c); /* new geometry */
        }
    }
    /* An add in place on a convolution that only it reads; the convolution adds the other
     * input itself as it writes its output, when that was computed before it. */
    for (int i = 0; i < g->n_nodes && !g->no_inplace; i++) {
        rg_node_impl *n = &g->nodes[i];
        if (n->op != RG_OP_ADD || !n->batched) continue;
        for (int k = 1; k >= 0 && !n->inplace; k--) {
            const int p = n->inputs[k], other = n->inputs[1 - k];
            rg_node_impl *c = &g->nodes[p];
            if (c->op != RG_OP_CONV2D || p == other || consumers[p] != 1 || !c->batched || c->inplace)
                continue;
            n->inplace = true, n->inplace_of = k;
            if (other < p) c->adds_from = other;
        }
        /* and the batch norm that reads the sum, whose statistics a device's convolution
         * makes as it writes it */
        const int conv = n->inplace ? n->inputs[n->inplace_of] : -1;
        for (int j = i + 1; j < g->n_nodes && conv >= 0 && g->nodes[conv].adds_from >= 0; j++)
            if (g->nodes[j].op == RG_OP_BATCH_NORM && g->nodes[j].inputs[0] == i && g->nodes[j].stats_from < 0) {
                g->nodes[conv].stats_for = j, g->nodes[j].stats_from = conv;
                break;
            }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        if (g->no_inplace || n->op != RG_OP_ACTIVATION || *(rg_act *)n->attr == RG_ACT_GELU)
            continue;
        rg_node_impl *p = &g->nodes[n->inputs[0]];
        const rg_op_def *pd = rg_op_table[p->op];
        n->inplace = p->op != RG_OP_INPUT && p->batched && !pd->aliases_input && !p->inplace &&
                     !pd->backward_reads_output && consumers[n->inputs[0]] == 1;
        if (n->inplace && p->op == RG_OP_BATCH_NORM && *(rg_act *)n->attr == RG_ACT_RELU)
            n->fused = true, p->fused_relu = i;
    }
    free(consumers);
    free(consumer);
}

/* The node whose output buffer n's output is (itself, or the input it aliases or
 * overwrites in place). */
static int out_owner(const rg_graph *g, int i) {
    while (g->nodes[i].inplace || rg_op_table[g->nodes[i].op]->aliases_input)
        i = g->nodes[i].inputs[g->nodes[i].inplace_of]; /* 0 but for an add in place */
    return i;
}

/* Guarded memory: where the canaries are, after each placed block and each node's scratch
 * (past the arena, at its aux_offset). */
static rg_status place_guards(rg_graph *g, const block *placed, int np, size_t arena) {
    free(g->guards);
    g->n_guards = 0;
    if (!(g->guards = malloc(((size_t)np + (size_t)g->n_nodes) * sizeof *g->guards)))
        return rg_fail(RG_ERR_MEMORY, "out of memory placing guarded memory's canaries");
    for (int b = 0; b < np; b++)
        g->guards[g->n_guards++] = (rg_guard){placed[b].offset + placed[b].used, placed[b].size - placed[b].used,
                                              placed[b].node, placed[b].grad ? "gradient" : "output"};
    for (int i = 0; i < g->n_nodes; i++) {
        const rg_node_impl *n = &g->nodes[i];
        if (!n->bypassed)
            g->guards[g->n_guards++] = (rg_guard){arena + n->aux_offset + aux_used(g, n),
                                                  aux_floats(g, n) - aux_used(g, n), i, "scratch"};
    }
    return RG_OK;
}

rg_status rg_graph_plan_memory(rg_graph *g, size_t *floats) {
    fold_and_inplace(g);
    const int N = g->n_nodes, end = 2 * N; /* past the last backward */
    const bool keep = g->no_inplace;
    int *out_hi = malloc((size_t)N * sizeof *out_hi);
    block *blocks = malloc((size_t)(2 * N) * sizeof *blocks);
    block *placed = malloc((size_t)(2 * N) * sizeof *placed);
    if (!out_hi || !blocks || !placed) {
        free(out_hi);
        free(blocks);
        free(placed);
        return rg_fail(RG_ERR_MEMORY, "out of memory planning activations");
    }
    /* Gradient owners and their last writers. */
    for (int i = 0; i < N; i++) {
        rg_node_impl *n = &g->nodes[i];
        n->grad_owner = rg_op_table[n->op]->aliases_input ? rg_in(g, n, 0)->grad_owner : i;
        if (shares_residual_gradient(g, i)) {
            rg_node_impl *other = rg_in(g, n, 1 - n->inplace_of);
            n->grad_owner = rg_in(g, n, n->inplace_of)->grad_owner = other->grad_owner;
        }
        n->last_use = i;
        out_hi[i] = keep ? end : N - 1;
    }
    for (int i = 0; i < N; i++) {
        const rg_node_impl *n = &g->nodes[i];
        if (n->bypassed) continue;
        const rg_op_def *d = rg_op_table[n->op];
        if (d->backward_reads_output && out_hi[out_owner(g, i)] < 2 * N - 1 - i)
            out_hi[out_owner(g, i)] = 2 * N - 1 - i;
        for (int k = 0; k < n->n_inputs; k++) {
            const int in = n->inputs[k];
            rg_node_impl *o = &g->nodes[g->nodes[in].grad_owner];
            if (o->last_use < i) o->last_use = i;
            if (d->backward_reads_inputs && out_hi[out_owner(g, in)] < 2 * N - 1 - i)
                out_hi[out_owner(g, in)] = 2 * N - 1 - i;
        }
    }
    int nb = 0;
    size_t aux_total = 0;
    rg_status s = RG_OK;
    for (int i = 0; i < N && !s; i++) {
        const rg_node_impl *n = &g->nodes[i];
        if (n->bypassed) continue;
        size_t aux;
        if ((s = check_sizes(g, n, &aux))) break;
        if (aux + n->aux_fixed + BLOCK_ALIGN > SIZE_MAX / 8 - aux_total) {
            s = rg_fail(RG_ERR_MEMORY, "the scratch at batch %d overflows memory sizes: lower "
                                       "the batch or the input size", g->max_batch);
            break;
        }
        g->nodes[i].aux_offset = aux_total;
        aux_total += aux_floats(g, n);
        const bool input = n->op == RG_OP_INPUT;
        if (out_owner(g, i) == i) { /* on a device an input has two halves (rg_graph_forward) */
            const size_t half = node_floats(g, n, input), halves = input && g->backend->device ? 2 : 1;
            blocks[nb++] = (block){i, false, input ? 0 : i, input ? end : out_hi[i], half * halves, 0,
                                   half * (halves - 1) + node_used(g, n, input)};
        }
        if (n->needs_grad && n->grad_owner == i)
            blocks[nb++] = (block){i, true, input ? 0 : 2 * N - 1 - n->last_use,
                                   input || keep ? end : 2 * N - 1 - (n->fused ? n->inputs[0] : i),
                                   node_floats(g, n, false), 0, node_used(g, n, false)};
    }
    for (int b = 0; b < nb && g->guard_memory; b++) /* each its own memory, canaries after it */
        blocks[b].lo = 0, blocks[b].hi = end, blocks[b].size += GUARD_FLOATS;
    size_t arena = 0;
    int np = 0;
    if (!s) qsort(blocks, (size_t)nb, sizeof *blocks, by_size_desc);
    for (int b = 0; b < nb && !s; b++) {
        /* Lowest offset clear of every placed block live at the same time. */
        size_t offset = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int q = 0; q < np; q++)
                if (blocks[b].lo <= placed[q].hi && placed[q].lo <= blocks[b].hi &&
                    offset < placed[q].offset + placed[q].size &&
                    placed[q].offset < offset + blocks[b].size) {
                    offset = placed[q].offset + placed[q].size;
                    moved = true;
                }
        }
        blocks[b].offset = offset;
        placed[np++] = blocks[b];
        if (offset + blocks[b].size > arena) arena = offset + blocks[b].size;
        if (arena > SIZE_MAX / 8 - aux_total)
            s = rg_fail(RG_ERR_MEMORY, "the activations at batch %d overflow memory sizes: "
                                       "lower the batch or the input size", g->max_batch);
    }
    for (int b = 0; b < np; b++) {
        rg_node_impl *n = &g->nodes[placed[b].node];
        if (placed[b].grad) n->grad_offset = placed[b].offset;
        else n->out_offset = placed[b].offset;
    }
    if (!s && g->guard_memory) s = place_guards(g, placed, np, arena);
    free(out_hi);
    free(blocks);
    free(placed);
    g->arena_floats = arena;
    *floats = arena + aux_total;
    return s;
}

void rg_graph_place_memory(rg_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        if (n->bypassed) {
            n->out = n->dout = n->aux = NULL;
            continue;
        }
        const size_t half = n->op == RG_OP_INPUT && g->input_half ? node_floats(g, n, true) : 0;
        n->out = out_owner(g, i) == i ? g->act_buf + n->out_offset + half : rg_in(g, n, n->inplace_of)->out;
        n->aux = g->act_buf + g->arena_floats + n->aux_offset;
        if (n->grad_owner != i) n->dout = g->nodes[n->grad_owner].dout;
        else if (n->needs_grad) n->dout = g->act_buf + n->grad_offset;
        else n->dout = NULL;
    }
}

void rg_graph_guard_memory(rg_graph *g, int on) {
    if (g && !g->compiled) g->guard_memory = on != 0;
}

/* The canaries in place: after compile has placed the buffers. */
void rg_graph_fill_guards(rg_graph *g) {
    float canary[BLOCK_ALIGN + GUARD_FLOATS]; /* a guard's length: its rounding, then GUARD_FLOATS */
    for (int k = 0; k < g->n_guards; k++) {
        for (size_t j = 0; j < g->guards[k].len; j++) {
            const uint32_t bits = canary_bits(k, j);
            memcpy(&canary[j], &bits, sizeof bits);
        }
        float *at = g->act_buf + g->guards[k].at;
        if (g->backend->device) g->backend->upload(at, canary, g->guards[k].len);
        else memcpy(at, canary, g->guards[k].len * sizeof *at);
    }
}

rg_status rg_graph_check_guards(const rg_graph *g) {
    if (!g->guard_memory || !g->compiled) return RG_OK;
    for (int k = 0; k < g->n_guards; k++) {
        const rg_guard *q = &g->guards[k];
        const float *v = rg_host(g, g->act_buf + q->at, q->len);
        for (size_t j = 0; j < q->len; j++) {
            uint32_t bits;
            memcpy(&bits, &v[j], sizeof bits);
            if (bits != canary_bits(k, j))
                return rg_fail(RG_ERR_STATE, "guarded memory: float %zu after the end of the %s of %s (op %s) "
                                             "was overwritten: a kernel wrote past that buffer, or before the "
                                             "next; a bug in regrad, please report it",
                               j + 1, q->what, g->nodes[q->node].name, rg_op_table[g->nodes[q->node].op]->name);
        }
    }
    return RG_OK;
}

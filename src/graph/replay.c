/*
 * replay.c — a device's passes as CUDA graphs (REGRAD_GRAPHS=1): a training step launches
 * a few hundred small kernels, and where each is short the gaps between launches cost as
 * much as the work.  A pass that is the same every time it runs (the same batch, half of
 * the inputs' block, precision, seed and buffers of weights, gradients and state; no hook,
 * profile, numerics check or dropout, whose masks change every pass) is run as is the
 * first time (first-use allocations and cuDNN's plans happen there), captured the second,
 * and replayed as one launch from then on (a side pass at other weights, a curvature's, is
 * another pass: the kernels hold the buffers' addresses).  A replay reruns the kernels with the addresses and values they were captured with;
 * the host side of the pass does not run, so what it leaves on the host (each node's
 * output buffer: an input's bf16 cast, a flatten's alias) is put back as the capture left
 * it (and, when a capture breaks, as it was before the pass, which then runs as is).  A
 * backward is replayed only after a replayed forward: its kernels read what that
 * forward's made (the weights' bf16 copies).  A capture that breaks (an op that waits for
 * the device or allocates inside the pass) leaves that pass uncaptured, with the reason
 * kept for rg_graph_replays.  The bits are those of the passes run as they are.
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPLAYS 16 /* passes kept: forward and backward, per half, batch and mode */

struct rg_replay {
    rg_replay_key key;
    void *graph;         /* NULL: not captured (yet) */
    int runs;            /* uncaptured runs so far */
    bool broken;         /* its capture broke: it runs as is */
    unsigned long moves; /* the backend's scratch moves when it was captured */
    float **outs;        /* each node's output buffer after the pass (while capturing: before) */
};

/* asked for, on a backend that captures, and for a graph without dropout (whose masks
 * change every pass): decided at the first pass */
static bool wanted(rg_graph *g) {
    if (g->replay_on < 0) {
        const char *e = getenv("REGRAD_GRAPHS");
        g->replay_on = e && !strcmp(e, "1") && g->backend->capture_begin;
        for (int i = 0; i < g->n_nodes && g->replay_on; i++)
            if (g->nodes[i].op == RG_OP_DROPOUT) g->replay_on = 0;
    }
    return g->replay_on == 1;
}

/* what may change from one pass to the next: the hook, profiling, the numerics check */
static bool same_every_time(const rg_graph *g) {
    return !g->profile && !g->check_numerics && !g->capture_adjoint && (!g->hook || g->hook == g->idle_hook);
}

/* each node's output buffer kept in r->outs, or put back from it */
static void keep_outs(const rg_graph *g, rg_replay *r) {
    for (int i = 0; i < g->n_nodes; i++) r->outs[i] = g->nodes[i].out;
}
static void put_back_outs(rg_graph *g, const rg_replay *r) {
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].out = r->outs[i];
}

void rg_replay_forget(rg_graph *g) {
    for (int i = 0; i < g->n_replays; i++) {
        if (g->replays[i].graph && g->backend->replay_free) g->backend->replay_free(g->replays[i].graph);
        free(g->replays[i].outs);
    }
    free(g->replays);
    g->replays = NULL, g->n_replays = 0;
    g->forward_replayed = false;
}

static rg_replay *entry_for(rg_graph *g, const rg_replay_key *key) {
    for (int i = 0; i < g->n_replays; i++)
        if (!memcmp(&g->replays[i].key, key, sizeof *key)) return &g->replays[i];
    if (g->n_replays == MAX_REPLAYS) return NULL;
    if (!g->replays && !(g->replays = calloc(MAX_REPLAYS, sizeof *g->replays))) return NULL;
    rg_replay *r = &g->replays[g->n_replays];
    float **outs = malloc((size_t)g->n_nodes * sizeof *outs);
    if (!outs) return NULL;
    *r = (rg_replay){.key = *key, .outs = outs};
    g->n_replays++;
    return r;
}

/* why a capture broke, kept for rg_graph_replays (the first reason only) */
static void broke(rg_graph *g, rg_replay *r, const char *why) {
    r->broken = true;
    if (!g->replay_broken[0]) snprintf(g->replay_broken, sizeof g->replay_broken, "%s", why);
}

/* The pass run as is, after a capture that recorded it without running it: what the
 * capture left on the host for this pass is put back (each node's output buffer, kept in
 * r->outs before it) or started again (the weights' bf16 copies, marked made). */
static rg_status run_again(rg_graph *g, rg_replay *r, rg_status (*pass)(rg_graph *, void *), void *arg) {
    put_back_outs(g, r);
    if (g->backend->begin_pass) g->backend->begin_pass();
    return pass(g, arg);
}

/* keys compared as bytes: no padding between their fields */
_Static_assert(sizeof(rg_replay_key) == 8 * sizeof(int) + 3 * sizeof(float *), "rg_replay_key has padding");

rg_status rg_replay_pass(rg_graph *g, rg_replay_key key, rg_status (*pass)(rg_graph *, void *), void *arg) {
    const bool backward = key.backward;
    key.params = g->param_buf, key.grads = g->grad_buf, key.state = g->state_buf;
    rg_replay *r = NULL;
    if (wanted(g) && same_every_time(g) && (!backward || g->forward_replayed)) r = entry_for(g, &key);
    if (!r || r->broken) return pass(g, arg);
    if (r->graph && r->moves != g->backend->memory_moves()) { /* a scratch buffer moved under it */
        g->backend->replay_free(r->graph);
        r->graph = NULL, r->runs = 0;
    }
    if (!r->graph && r->runs++ == 0) return pass(g, arg);
    if (!r->graph) { /* captured now: it runs when it is replayed below */
        char why[200] = "";
        if (g->backend->capture_begin(why, sizeof why)) {
            broke(g, r, why);
            return pass(g, arg);
        }
        keep_outs(g, r);
        const rg_status s = pass(g, arg);
        void *graph = g->backend->capture_end(why, sizeof why);
        if (!graph || s) {
            if (graph) g->backend->replay_free(graph);
            else broke(g, r, why);
            return run_again(g, r, pass, arg);
        }
        r->graph = graph, r->moves = g->backend->memory_moves();
        keep_outs(g, r);
    }
    const rg_status s = g->backend->replay(r->graph);
    put_back_outs(g, r);
    g->replayed++;
    if (!backward) g->forward_replayed = !s;
    return s;
}

long rg_graph_replays(const rg_graph *g, const char **broken) {
    if (broken) *broken = g && g->replay_broken[0] ? g->replay_broken : NULL;
    return g ? g->replayed : 0;
}

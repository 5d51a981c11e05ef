/*
 * replay.c — a device's passes as CUDA graphs (REGRAD_GRAPHS=1): a training step launches
 * a few hundred small kernels, and where each is short the gaps between launches cost as
 * much as the work.  A pass that is the same every time it runs (the same batch, half of
 * the inputs' block, precision, seed, watching and buffers of weights, gradients and
 * state; no profile, numerics check, dropout, whose masks change every pass, or hook but
 * the monitor's) is run as is the first time (first-use allocations and cuDNN's plans
 * happen there), captured the second, and replayed as one launch from then on.  A replay
 * runs the pass's host side again with its device work dropped, so the host keeps what
 * any pass leaves (each node's output buffer, the monitor's queued sums), and launches
 * the graph only if that host side asked for the work the capture recorded (the backend
 * notes every launch and its arguments); when it did not (a buffer moved, sums queued at
 * other places) the pass runs as is and is captured again.  A side pass at other weights
 * (a curvature's) is another pass.  A backward is replayed only after a replayed forward.
 * A capture that breaks (an op that waits for the device or allocates inside the pass)
 * leaves that pass uncaptured, with the reason kept for rg_graph_replays.  The bits are
 * those of the passes run as they are.
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPLAYS 16 /* passes kept: forward and backward, per half, batch and mode */
#define MAX_CHANGES 3  /* replays refused (other work asked) before a pass runs as is for good */

struct rg_replay {
    rg_replay_key key;
    void *graph;         /* NULL: not captured (yet) */
    int runs;            /* uncaptured runs since its last capture */
    int changes;         /* replays refused: the pass asked for other work than its capture's */
    bool broken;         /* its capture broke, or it keeps changing: it runs as is */
    unsigned long moves; /* the backend's scratch moves when it was captured */
    float **outs;        /* each node's output buffer before the pass now running */
    size_t sums[3];      /* where the device's queued sums stood before it (sums_mark) */
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

/* What the hook does on this pass: 0 nothing, a positive kind of pass when it watches the
 * same way every time (the monitor's: rg_graph.replay_mode), -1 what may differ. */
static int hook_mode(const rg_graph *g) {
    if (!g->hook) return 0;
    return g->hook == g->replay_hook && g->replay_mode ? g->replay_mode(g->hook_user) : -1;
}

/* what may change from one pass to the next: the hook, profiling, the numerics check */
static bool same_every_time(const rg_graph *g) {
    return !g->profile && !g->check_numerics && !g->capture_adjoint && hook_mode(g) >= 0;
}

static bool same_key(const rg_replay_key *a, const rg_replay_key *b) {
    return a->backward == b->backward && a->batch == b->batch && a->train == b->train && a->half == b->half &&
           a->from == b->from && a->seed == b->seed && a->tf32 == b->tf32 && a->bf16 == b->bf16 &&
           a->watch == b->watch && a->params == b->params && a->grads == b->grads && a->state == b->state;
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
        if (same_key(&g->replays[i].key, key)) return &g->replays[i];
    if (g->n_replays == MAX_REPLAYS) return NULL;
    if (!g->replays && !(g->replays = calloc(MAX_REPLAYS, sizeof *g->replays))) return NULL;
    rg_replay *r = &g->replays[g->n_replays];
    float **outs = malloc((size_t)g->n_nodes * sizeof *outs);
    if (!outs) return NULL;
    *r = (rg_replay){.key = *key, .outs = outs};
    g->n_replays++;
    return r;
}

/* why a pass runs as is for good, kept for rg_graph_replays (the first reason only) */
static void broke(rg_graph *g, rg_replay *r, const char *why) {
    r->broken = true;
    if (!g->replay_broken[0]) snprintf(g->replay_broken, sizeof g->replay_broken, "%s", why);
}

static void drop_graph(rg_graph *g, rg_replay *r) {
    g->backend->replay_free(r->graph);
    r->graph = NULL;
}

/* Where the host stands before a pass that may turn out not to have run (a capture that
 * breaks, a replay refused): each node's output buffer and the queued sums. */
static void mark(rg_graph *g, rg_replay *r) {
    for (int i = 0; i < g->n_nodes; i++) r->outs[i] = g->nodes[i].out;
    if (g->backend->sums_mark) g->backend->sums_mark(r->sums);
}

/* The pass run as is after a host side whose device work did not run: the host put back
 * where it stood (mark), and what it derived for the pass made again (the weights' bf16
 * copies). */
static rg_status run_again(rg_graph *g, rg_replay *r, rg_status (*pass)(rg_graph *, void *), void *arg) {
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].out = r->outs[i];
    if (g->backend->sums_back) g->backend->sums_back(r->sums);
    if (g->backend->begin_pass) g->backend->begin_pass();
    return pass(g, arg);
}

static rg_status replayed(rg_graph *g, rg_status s, bool backward) {
    g->replayed += !s;
    if (!backward) g->forward_replayed = !s;
    return s;
}

rg_status rg_replay_pass(rg_graph *g, rg_replay_key key, rg_status (*pass)(rg_graph *, void *), void *arg) {
    const bool backward = key.backward;
    key.watch = hook_mode(g);
    key.params = g->param_buf, key.grads = g->grad_buf, key.state = g->state_buf;
    rg_replay *r = NULL;
    if (wanted(g) && same_every_time(g) && (!backward || g->forward_replayed)) r = entry_for(g, &key);
    if (!r || r->broken) return pass(g, arg);
    if (key.watch > 0 && !backward) rg_graph_sums_arrive(g); /* its sums queued from 0 */
    if (r->graph && r->moves != g->backend->memory_moves()) { /* a scratch buffer moved under it */
        drop_graph(g, r);
        r->runs = 0;
    }
    if (!r->graph && r->runs++ == 0) return pass(g, arg);
    bool changed = false;
    if (!r->graph) { /* captured now, and launched once captured */
        char why[200] = "";
        if (g->backend->capture_begin(why, sizeof why)) {
            broke(g, r, why);
            return pass(g, arg);
        }
        mark(g, r);
        const rg_status s = pass(g, arg);
        void *graph = g->backend->capture_end(why, sizeof why);
        if (!graph || s) {
            if (graph) g->backend->replay_free(graph);
            else broke(g, r, why);
            return run_again(g, r, pass, arg);
        }
        r->graph = graph, r->moves = g->backend->memory_moves(), r->runs = 0;
        return replayed(g, g->backend->replay(r->graph, &changed), backward);
    }
    /* its host side again with the device work dropped, the graph launched if it asked for
     * the capture's work */
    mark(g, r);
    g->backend->replay_begin();
    const rg_status host = pass(g, arg);
    const rg_status s = g->backend->replay(host ? NULL : r->graph, &changed);
    if (!changed) return replayed(g, s, backward);
    if (!host) { /* other work than the capture's: captured again at its next run */
        drop_graph(g, r);
        r->runs = 1;
        if (++r->changes == MAX_CHANGES) broke(g, r, "a pass asked for other work each time it ran");
    }
    return run_again(g, r, pass, arg);
}

long rg_graph_replays(const rg_graph *g, const char **broken) {
    if (broken) *broken = g && g->replay_broken[0] ? g->replay_broken : NULL;
    return g ? g->replayed : 0;
}

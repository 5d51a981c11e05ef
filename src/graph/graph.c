/*
 * graph.c — the graph: builder bookkeeping, the parameter registry, compilation into flat
 * buffers, and topological forward and backward passes.
 *
 * Nodes are appended in the order they are built, and every node's inputs were built
 * before it, so that order is already topological: forward walks it up, backward down.
 * Compilation makes exactly two allocations of floats that matter: one for every parameter
 * (with a parallel one for gradients) and one for every activation, its gradient and op
 * scratch.  Nothing is allocated per step.
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <fnmatch.h>

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

rg_graph *rg_graph_create(uint64_t seed) {
    rg_graph *g = calloc(1, sizeof *g);
    if (!g) {
        rg_fail(RG_ERR_MEMORY, "out of memory creating a graph");
        return NULL;
    }
    g->seed = seed;
    g->backend = &rg_cpu_backend;
    g->slots = rg_thread_slots();
    g->replay_on = -1;
    return g;
}

void rg_graph_free(rg_graph *g) {
    if (!g) return;
    rg_replay_forget(g);
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        if (n->staged && g->backend->pin) g->backend->pin(n->staged, (size_t)g->max_batch * n->size * sizeof(float), false);
        free(n->attr), free(n->staged);
    }
    if (g->device_label_pair && g->labels && g->backend->pin)
        g->backend->pin(g->labels, (size_t)g->max_batch * sizeof(int), false);
    free(g->nodes);
    free(g->params);
    float *const buffers[] = {g->param_buf, g->grad_buf, g->mask_buf, g->state_buf, g->act_buf,
                              g->workspace, (float *)g->device_label_pair, g->hessian_cache};
    for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++) g->backend->release(buffers[i]);
    free(g->live);
    free(g->guards);
    free(g->touched);
    free(g->labels);
    free(g->uploads);
    free(g);
}

rg_node rg_graph_error(rg_graph *g, rg_status s, const char *fmt, ...) {
    if (g && g->error == RG_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->error_msg, sizeof g->error_msg, fmt, ap);
        va_end(ap);
        g->error = s;
    }
    return RG_NONE;
}

/* The profiler's clock; on a device, its queued work finished first, so an op's time is its
 * kernels' and not its launches' (a failure there is the step's). */
static rg_status profile_clock(rg_graph *g, double *t) {
    const rg_status s = rg_graph_finish(g);
    *t = rg_seconds();
    return s;
}

void rg_graph_profile(rg_graph *g, int on) {
    if (!g) return;
    g->profile = on != 0;
    if (on)
        for (int i = 0; i < g->n_nodes; i++) g->nodes[i].fwd_seconds = g->nodes[i].bwd_seconds = 0;
}

rg_status rg_node_profile(const rg_graph *g, rg_node n, double *fwd_seconds,
                          double *bwd_seconds, double *flops) {
    if (!g || n < 0 || n >= g->n_nodes) return rg_fail(RG_ERR_ARG, "no node %d", n);
    if (fwd_seconds) *fwd_seconds = g->nodes[n].fwd_seconds;
    if (bwd_seconds) *bwd_seconds = g->nodes[n].bwd_seconds;
    if (flops) *flops = g->nodes[n].flops;
    return RG_OK;
}

void rg_graph_keep_outputs(rg_graph *g, int on) {
    if (g) g->no_inplace = on != 0, rg_replay_forget(g);
}

void rg_graph_want_input_grads(rg_graph *g, int on) {
    if (g) g->input_grads = on != 0, rg_replay_forget(g);
}

static void default_name(rg_graph *g, rg_node_impl *n) {
    int k = 1;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == n->op) k++;
    snprintf(n->name, sizeof n->name, "%s_%d", rg_op_table[n->op]->name, k);
}

rg_node rg_graph_add_node(rg_graph *g, rg_op_kind op, const int *inputs, int n_inputs,
                          void *attr) {
    const rg_op_def *def = rg_op_table[op];
    if (!g) {
        free(attr);
        return RG_NONE;
    }
    if (g->error || g->compiled) {
        free(attr);
        if (g->compiled)
            rg_graph_error(g, RG_ERR_STATE, "cannot add a %s node to a compiled graph", def->name);
        return RG_NONE;
    }
    for (int k = 0; k < n_inputs; k++)
        if (inputs[k] < 0 || inputs[k] >= g->n_nodes) {
            free(attr);
            return rg_graph_error(g, RG_ERR_ARG, "%s: input %d is not a node of this graph",
                                  def->name, k + 1);
        }
    if (n_inputs < def->min_inputs || n_inputs > def->max_inputs) {
        free(attr);
        return rg_graph_error(g, RG_ERR_ARG, "%s takes %d to %d inputs, got %d", def->name,
                              def->min_inputs, def->max_inputs, n_inputs);
    }
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 32;
        rg_node_impl *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            free(attr);
            return rg_graph_error(g, RG_ERR_MEMORY, "out of memory adding a %s node", def->name);
        }
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    rg_node_impl *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->attr = attr;
    n->n_inputs = n_inputs;
    n->batched = true;
    n->first_param = g->n_params;
    for (int k = 0; k < n_inputs; k++) n->inputs[k] = inputs[k];
    default_name(g, n);
    rg_status s = def->infer(g, n);
    if (s == RG_OK && g->backend->ops[op].plan) g->backend->ops[op].plan(g, n);
    if (s != RG_OK) {
        free(attr);
        g->n_params = n->first_param; /* drop any parameters it declared */
        return rg_graph_error(g, s, "%s: %s", n->name, rg_last_error());
    }
    n->size = 1;
    for (int d = 0; d < n->ndim; d++) n->size *= (size_t)n->shape[d];
    n->needs_grad = n->n_params > 0;
    for (int k = 0; k < n_inputs; k++) n->needs_grad |= g->nodes[inputs[k]].needs_grad;
    return g->n_nodes++;
}

int rg_param_declare(rg_graph *g, rg_node_impl *n, const char *suffix, int ndim,
                     const int *shape, rg_init init, int fan_in, int fan_out) {
    if (g->n_params == g->cap_params) {
        int cap = g->cap_params ? 2 * g->cap_params : 32;
        rg_param_impl *p = realloc(g->params, (size_t)cap * sizeof *p);
        if (!p) {
            rg_fail(RG_ERR_MEMORY, "out of memory declaring a parameter");
            return -1;
        }
        g->params = p;
        g->cap_params = cap;
    }
    rg_param_impl *p = &g->params[g->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->suffix, sizeof p->suffix, "%s", suffix);
    p->node = (int)(n - g->nodes);
    p->ndim = ndim;
    p->size = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->size *= (size_t)shape[d];
    }
    p->init = init;
    p->fan_in = fan_in;
    p->fan_out = fan_out;
    p->trainable = true;
    n->n_params++;
    return g->n_params++;
}

int rg_state_declare(rg_graph *g, rg_node_impl *n, const char *suffix, int ndim,
                     const int *shape, rg_init init) {
    int i = rg_param_declare(g, n, suffix, ndim, shape, init, 1, 1);
    if (i >= 0) {
        g->params[i].state = true;
        g->params[i].trainable = false;
    }
    return i;
}

void rg_node_set_name(rg_graph *g, rg_node id, const char *name) {
    if (!g || g->error) return;
    if (id < 0 || id >= g->n_nodes || !name || !*name) {
        rg_graph_error(g, RG_ERR_ARG, "set_name: bad node or empty name");
        return;
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (i != id && strcmp(g->nodes[i].name, name) == 0) {
            rg_graph_error(g, RG_ERR_ARG, "two nodes named '%s': names must be unique", name);
            return;
        }
    snprintf(g->nodes[id].name, sizeof g->nodes[id].name, "%s", name);
}


void rg_graph_init_params(rg_graph *g, uint64_t seed) {
    /* One stream per parameter tensor, keyed by its index: adding a layer at the end does
     * not change how the earlier ones are initialised. */
    for (int i = 0; i < g->n_params; i++) {
        rg_param_impl *p = &g->params[i];
        rg_rng rng;
        rg_rng_seed(&rng, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)));
        rg_init_fill((p->state ? g->state_buf : g->param_buf) + p->offset, p->size, p->init,
                     p->fan_in, p->fan_out, &rng);
    }
}

/* On a device: the parameters and state initialised in host memory, then uploaded (the
 * same values as on the CPU). */
static rg_status init_on_device(rg_graph *g) {
    float *params = g->param_buf, *state = g->state_buf;
    g->param_buf = calloc(g->param_floats ? g->param_floats : 1, sizeof(float));
    g->state_buf = calloc(g->state_floats ? g->state_floats : 1, sizeof(float));
    const bool ok = g->param_buf && g->state_buf;
    if (ok) {
        rg_graph_init_params(g, g->seed);
        g->backend->upload(params, g->param_buf, g->param_floats);
        g->backend->upload(state, g->state_buf, g->state_floats);
    }
    free(g->param_buf), free(g->state_buf);
    g->param_buf = params, g->state_buf = state;
    return ok ? RG_OK : rg_fail(RG_ERR_MEMORY, "out of memory initialising %zu parameters", g->param_floats);
}

/* On a device: a host buffer for each input (pinned), which callers write and forward
 * uploads, and the labels' two halves there (rg_graph_forward), their host copy pinned. */
static rg_status stage_inputs(rg_graph *g) {
    int inputs = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        if (n->op != RG_OP_INPUT) continue;
        inputs++;
        if (!(n->staged = calloc((size_t)g->max_batch * n->size, sizeof(float))))
            return rg_fail(RG_ERR_MEMORY, "out of memory for input '%s'", n->name);
        if (g->backend->pin) g->backend->pin(n->staged, (size_t)g->max_batch * n->size * sizeof(float), true);
    }
    if (!(g->uploads = calloc((size_t)inputs + 1, sizeof *g->uploads)))
        return rg_fail(RG_ERR_MEMORY, "out of memory for %d inputs", inputs);
    if (!(g->device_label_pair = (int *)g->backend->alloc(2 * (size_t)g->max_batch))) /* ints fit floats */
        return rg_fail(RG_ERR_MEMORY, "out of device memory for %d labels", g->max_batch);
    g->device_labels = g->device_label_pair;
    if (g->backend->pin) g->backend->pin(g->labels, (size_t)g->max_batch * sizeof(int), true);
    return RG_OK;
}

/* Every node's scratch as the backend plans it for this device and precision. */
static void plan_scratch(rg_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        n->workspace = n->workspace_per_sample = 0;
        if (g->backend->ops[n->op].plan) g->backend->ops[n->op].plan(g, n);
    }
}

rg_status rg_graph_set_device(rg_graph *g, const char *device) {
    if (!g) return rg_fail(RG_ERR_ARG, "set_device: graph is NULL");
    if (g->compiled) return rg_fail(RG_ERR_STATE, "place the graph on a device before compiling it");
    char desc[160];
    rg_status s = rg_device_check(device, desc, sizeof desc);
    if (s) return s;
    const rg_backend *b = &rg_cpu_backend;
    size_t free_bytes = 0;
    if (device && strcmp(device, "cpu") != 0) {
#ifdef RG_HAVE_CUDA
        b = &rg_cuda_backend;
        for (int i = 0; i < g->n_nodes; i++) {
            const rg_node_impl *n = &g->nodes[i];
            if (!b->ops[n->op].forward)
                return rg_fail(RG_ERR_STATE, "%s: the CUDA backend has no %s yet (node '%s'): use "
                                             "--device cpu for this model", desc, rg_op_table[n->op]->name, n->name);
        }
        size_t total;
        if ((s = rg_cuda_select(device)) || (s = rg_cuda_memory(&free_bytes, &total))) return s;
#else
        return rg_fail(RG_ERR_STATE, "device '%s': this regrad was built without the CUDA backend", device);
#endif
    }
    if (b == g->backend) return RG_OK;
    g->backend = b, g->device_free = free_bytes;
    plan_scratch(g);
    return RG_OK;
}

rg_status rg_graph_compile(rg_graph *g, int max_batch) {
    if (!g) return rg_fail(RG_ERR_ARG, "compile: graph is NULL");
    if (g->error) return rg_fail(g->error, "%s", g->error_msg);
    if (g->compiled) return rg_fail(RG_ERR_STATE, "graph is already compiled");
    if (max_batch < 1) return rg_fail(RG_ERR_ARG, "batch size must be at least 1, got %d", max_batch);
    if (g->n_nodes == 0) return rg_fail(RG_ERR_STATE, "the graph has no nodes");
    g->max_batch = max_batch;

    /* Parameters: names and offsets into the flat buffer. */
    size_t total = 0, state = 0;
    for (int i = 0; i < g->n_params; i++) {
        rg_param_impl *p = &g->params[i];
        snprintf(p->name, sizeof p->name, "%s.%s", g->nodes[p->node].name, p->suffix);
        size_t *next = p->state ? &state : &total;
        p->offset = *next;
        *next += p->size;
    }
    for (int i = 0; i < g->n_params; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(g->params[i].name, g->params[j].name) == 0)
                return rg_fail(RG_ERR_ARG, "two parameters named '%s': rename a node",
                               g->params[i].name);
    g->param_floats = total;
    g->state_floats = state;

    /* Which nodes back-propagate: those with trainable parameters (frozen ones do not),
     * the inputs when asked, and everything downstream of them. */
    for (int i = 0; i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        n->needs_grad = n->op == RG_OP_INPUT && g->input_grads;
        for (int p = 0; p < n->n_params; p++) n->needs_grad |= g->params[n->first_param + p].trainable;
        for (int k = 0; k < n->n_inputs; k++) n->needs_grad |= rg_in(g, n, k)->needs_grad;
    }

    /* Activations: outputs, gradients and scratch, planned in memory.c. */
    const char *guard = getenv("REGRAD_GUARD_MEMORY");
    if (guard && strcmp(guard, "0") != 0) g->guard_memory = true;
    size_t acts, work = 0;
    rg_status s = rg_graph_plan_memory(g, &acts);
    if (s) return s;
    for (int i = 0; i < g->n_nodes; i++) {
        const rg_node_impl *n = &g->nodes[i];
        size_t per_batch;
        if (!rg_mul_size(n->workspace_per_sample, (size_t)max_batch, &per_batch) ||
            per_batch > SIZE_MAX / 8 - n->workspace)
            return rg_fail(RG_ERR_MEMORY, "%s: scratch size overflows at batch %d", n->name, max_batch);
        if (n->workspace + per_batch > work) work = n->workspace + per_batch;
    }
    /* Everything compile allocates, known before any of it is, and bf16's copies of the
     * weights for its products: checked against the limit. */
    const double weights = 2.0 * (double)total + (g->bf16 ? 0.5 * (double)total : 0.0);
    const double need = 4.0 * (weights + (double)state + (double)acts + (double)work);
    g->memory_bytes = (size_t)need;
    /* on a device, also what it has free */
    const size_t limit = g->device_free && (!g->memory_limit || g->device_free < g->memory_limit)
                             ? g->device_free : g->memory_limit;
    if (limit && need > (double)limit) {
        char a[32], b[32], c[32], d[32], e[32];
        return rg_fail(RG_ERR_MEMORY, "the model needs %s at batch %d (parameters and gradients "
                                      "%s, activations %s, scratch %s) but %s %s: "
                                      "lower --batch or the input size%s",
                       rg_bytes_text(need, a), max_batch, rg_bytes_text(4.0 * weights, b),
                       rg_bytes_text(4.0 * (double)acts, c), rg_bytes_text(4.0 * (double)work, d),
                       rg_bytes_text((double)limit, e),
                       limit == g->device_free ? "is free on the device" : "is left for it",
                       limit == g->device_free ? "" : ", or raise --max-memory");
    }
    g->param_buf = g->backend->alloc(total);
    g->grad_buf = g->backend->alloc(total);
    g->state_buf = g->backend->alloc(state);
    g->act_buf = g->backend->alloc(acts);
    g->workspace = g->backend->alloc(work);
    g->labels = calloc((size_t)max_batch, sizeof(int));
    g->live = calloc((size_t)g->n_nodes, sizeof *g->live);
    g->touched = calloc((size_t)g->n_nodes, sizeof *g->touched);
    if (!g->workspace || !g->param_buf || !g->grad_buf || !g->state_buf || !g->act_buf ||
        !g->labels || !g->live || !g->touched)
        return rg_fail(RG_ERR_MEMORY, "out of memory: %zu parameters and %zu activation floats "
                                      "(%.1f GiB) at batch %d; reduce --batch", total, acts,
                       (double)acts * 4 / (1u << 30), max_batch);
    rg_graph_place_memory(g);
    rg_graph_fill_guards(g);
    if (!g->backend->device) rg_graph_init_params(g, g->seed);
    else if ((s = init_on_device(g)) || (s = stage_inputs(g)))
        return s;
    g->compiled = true;
    return RG_OK;
}

/* ---------------------------------------------------------------- running */

static rg_status check_ready(const rg_graph *g, int batch) {
    if (!g) return rg_fail(RG_ERR_ARG, "graph is NULL");
    if (!g->compiled) return rg_fail(RG_ERR_STATE, "compile the graph before running it");
    if (batch < 1 || batch > g->max_batch)
        return rg_fail(RG_ERR_ARG, "batch %d is outside 1..%d (the compiled size)", batch,
                       g->max_batch);
    return RG_OK;
}

/* --check-numerics: the first NaN or Inf in x names the op and layer (x a node's output or
 * gradient when `of` is given: bf16 ones are scanned on the host). */
static rg_status first_nonfinite(const rg_graph *g, const float *x, size_t n, const char *what,
                                 const rg_node_impl *node, const rg_node_impl *of) {
    size_t i = 0;
    float v = 0;
    if (of && rg_node_bf16(g, of)) {
        const float *h = rg_node_host(g, of, x, n);
        while (i < n && isfinite(h[i])) i++;
        if (i < n) v = h[i];
    } else if ((i = g->backend->first_nonfinite(x, n)) < n)
        v = rg_host(g, x + i, 1)[0];
    if (i == n) return RG_OK;
    return rg_fail(RG_ERR_NUMERIC, "%s in %s %s (op %s), value %zu of %zu: the first non-finite "
                                   "value of this pass", isnan(v) ? "NaN" : "Inf", what, node->name,
                   rg_op_table[node->op]->name, i, n);
}

void rg_graph_set_memory_limit(rg_graph *g, size_t bytes) {
    if (g) g->memory_limit = bytes;
}

size_t rg_graph_memory(const rg_graph *g) { return g ? g->memory_bytes : 0; }

void rg_graph_check_numerics(rg_graph *g, int on) {
    if (g) g->check_numerics = on != 0;
}

/* On a device: this batch's inputs and labels up, into the other half of each input's
 * block and of the labels than the last batch's, so the copy runs while the device still
 * works on the last batch (its backward and update read those); every node's buffers
 * re-pointed (a flatten of an input aliases it).  The products' precision set. */
static void upload_batch(rg_graph *g, int batch) {
    g->backend->set_precision(g->tf32, g->bf16);
    g->input_half ^= 1;
    rg_graph_place_memory(g);
    g->device_labels = g->device_label_pair + (size_t)g->input_half * (size_t)g->max_batch;
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const rg_node_impl *in = &g->nodes[i];
        if (in->staged) g->uploads[n++] = (rg_upload){in->out, in->staged, (size_t)batch * in->size * sizeof(float)};
    }
    g->uploads[n++] = (rg_upload){g->device_labels, g->labels, (size_t)batch * sizeof(int)};
    g->backend->upload_batch(g->uploads, n);
}

rg_status rg_graph_forward(rg_graph *g, int batch, int train) {
    return rg_graph_forward_nodes(g, batch, train, 0, g ? g->n_nodes - 1 : 0);
}

/* nodes first..last of a forward pass (forward_nodes' loop) */
typedef struct {
    int batch, train;
    rg_node first, last;
} forward_span;

static rg_status forward_pass(rg_graph *g, void *arg) {
    const forward_span *f = arg;
    rg_status s;
    for (int i = f->first; i <= f->last && i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        if (n->bypassed) continue;
        double t0 = 0, t1;
        if (g->profile && (s = profile_clock(g, &t0))) return s;
        g->backend->ops[n->op].forward(g, n, f->batch, f->train != 0);
        if (g->profile) {
            if ((s = profile_clock(g, &t1))) return s;
            n->fwd_seconds += t1 - t0;
        }
        if (g->hook) g->hook(g, i, false, g->hook_user);
        if (g->check_numerics && (s = first_nonfinite(g, n->out, (n->batched ? (size_t)f->batch : 1) * n->size,
                                                      "the output of", n, n)))
            return s;
    }
    return RG_OK;
}

rg_status rg_graph_forward_nodes(rg_graph *g, int batch, int train, rg_node first, rg_node last) {
    rg_status s = check_ready(g, batch);
    if (s) return s;
    g->batch = batch;
    g->forward_train = train != 0, g->forward_replayed = false;
    g->forward_spans++;
    if (g->backend->begin_pass) g->backend->begin_pass();
    if (first <= 0) { /* a new pass: its dropout masks, its inputs up */
        first = 0;
        g->dropout_calls++;
        if (g->backend->device) upload_batch(g, batch);
    }
    forward_span span = {batch, train, first, last};
    if (g->backend->device && first == 0 && last >= g->n_nodes - 1) /* a whole pass: it may be replayed */
        s = rg_replay_pass(g, (rg_replay_key){.batch = batch, .train = train != 0, .half = g->input_half,
                                              .tf32 = g->tf32, .bf16 = g->bf16},
                           forward_pass, &span);
    else s = forward_pass(g, &span);
    if (s || (g->backend->device && (s = g->backend->status(false)))) return s;
    return rg_graph_check_guards(g);
}

size_t rg_graph_frontier(rg_graph *g, rg_node first, int batch, float *kept, bool save) {
    /* g->live marks the nodes before `first` that a node from it on reads (a bypassed zero
     * padding's reader was given its input at compile) */
    memset(g->live, 0, (size_t)g->n_nodes * sizeof *g->live);
    for (int i = first; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs && !g->nodes[i].bypassed; k++)
            if (g->nodes[i].inputs[k] < first) g->live[g->nodes[i].inputs[k]] = true;
    size_t floats = 0;
    for (int j = 0; j < first && j < g->n_nodes; j++) {
        const rg_node_impl *n = &g->nodes[j];
        if (n->bypassed || !g->live[j]) continue;
        const size_t len = rg_node_floats(g, n, (n->batched ? (size_t)batch : 1) * n->size);
        if (kept && save) g->backend->copy(kept + floats, n->out, len);
        else if (kept) g->backend->copy(n->out, kept + floats, len);
        floats += len;
    }
    return floats;
}

/* where a backward starts: its node and the gradient there */
typedef struct {
    rg_node from;
    const float *seed;
} backward_start;

static rg_status backward_pass(rg_graph *g, void *arg);

rg_status rg_graph_backward_from(rg_graph *g, rg_node from, const float *seed) {
    if (g && g->compiled && g->batch == 0)
        return rg_fail(RG_ERR_STATE, "backward needs a forward pass first");
    rg_status s = check_ready(g, g ? g->batch : 0);
    if (s) return s;
    if (from < 0 || from >= g->n_nodes) return rg_fail(RG_ERR_ARG, "backward: bad node %d", from);
    if (rg_node_bf16(g, &g->nodes[from]))
        return rg_fail(RG_ERR_STATE, "backward from '%s' (a bf16 output, not a loss) needs --precision fp32 or tf32",
                       g->nodes[from].name);
    backward_start b = {from, seed};
    const rg_node_impl *top = &g->nodes[from];
    if (g->backend->device && (top->batched ? (size_t)g->batch : 1) * top->size == 1) { /* a loss: replayable */
        uint32_t bits;
        memcpy(&bits, seed, sizeof bits);
        s = rg_replay_pass(g, (rg_replay_key){.backward = 1, .batch = g->batch, .train = g->forward_train,
                                              .half = g->input_half, .from = from, .seed = bits, .tf32 = g->tf32,
                                              .bf16 = g->bf16},
                           backward_pass, &b);
    } else s = backward_pass(g, &b);
    if (s || (g->backend->device && (s = g->backend->status(false)))) return s;
    return rg_graph_check_guards(g);
}

static rg_status backward_pass(rg_graph *g, void *arg) {
    const backward_start *b = arg;
    const rg_node from = b->from;
    const float *seed = b->seed;
    rg_status s = RG_OK;
    g->backend->fill(g->grad_buf, g->param_floats, 0);
    const rg_node_impl *top = &g->nodes[from];
    if (!top->needs_grad) return RG_OK; /* nothing trainable upstream */
    /* Only the ancestors of `from` take part. */
    memset(g->live, 0, (size_t)g->n_nodes * sizeof *g->live);
    memset(g->touched, 0, (size_t)g->n_nodes * sizeof *g->touched);
    g->live[from] = true;
    for (int i = from; i >= 0; i--)
        if (g->live[i])
            for (int k = 0; k < g->nodes[i].n_inputs; k++) g->live[g->nodes[i].inputs[k]] = true;
    const size_t rows = top->batched ? (size_t)g->batch : 1;
    if (!g->backend->device) memcpy(top->dout, seed, rows * top->size * sizeof(float));
    else if (rows * top->size == 1) g->backend->fill(top->dout, 1, seed[0]); /* queued: no wait */
    else g->backend->upload(top->dout, seed, rows * top->size);
    g->touched[top->grad_owner] = true;
    for (int i = from; i >= 0; i--) {
        rg_node_impl *n = &g->nodes[i];
        if (!g->live[i] || n->bypassed || !n->needs_grad || !g->backend->ops[n->op].backward) continue;
        /* A gradient buffer is shared with others outside its live range: its first writer
         * fills it, or it is zeroed just before. */
        const bool fills = rg_op_table[n->op]->fills_fresh_grads;
        for (int k = 0; k < n->n_inputs; k++) {
            rg_node_impl *o = &g->nodes[rg_in(g, n, k)->grad_owner];
            g->fresh[k] = false;
            if (o->needs_grad && !g->touched[o - g->nodes]) {
                if (fills) g->fresh[k] = true;
                else g->backend->fill(o->dout, rg_node_floats(g, o, (o->batched ? (size_t)g->batch : 1) * o->size),
                                      0);
                g->touched[o - g->nodes] = true;
            }
        }
        if (g->capture_adjoint && g->adjoint[i])
            g->backend->copy(g->adjoint[i], n->dout, (n->batched ? (size_t)g->batch : 1) * n->size);
        double t0 = 0, t1;
        if (g->profile && (s = profile_clock(g, &t0))) return s;
        g->backend->ops[n->op].backward(g, n, g->batch);
        if (g->profile) {
            if ((s = profile_clock(g, &t1))) return s;
            n->bwd_seconds += t1 - t0;
        }
        if (g->hook) g->hook(g, i, true, g->hook_user);
        if (g->check_numerics) {
            for (int k = 0; k < n->n_inputs && !s && !n->fused; k++) {
                const rg_node_impl *in = rg_in(g, n, k);
                if (in->needs_grad && in->dout)
                    s = first_nonfinite(g, in->dout, (in->batched ? (size_t)g->batch : 1) * in->size,
                                        "the input gradient computed by", n, in);
            }
            for (int p = 0; p < n->n_params && !s; p++) {
                const rg_param_impl *pi = &g->params[n->first_param + p];
                if (!pi->state) s = first_nonfinite(g, g->grad_buf + pi->offset, pi->size, "the "
                                                    "parameter gradient of", n, NULL);
            }
            if (s) return s;
        }
    }
    return RG_OK;
}

rg_status rg_graph_backward(rg_graph *g, rg_node loss) {
    if (g && loss >= 0 && loss < g->n_nodes && g->nodes[loss].batched)
        return rg_fail(RG_ERR_ARG, "backward: node '%s' is not a scalar loss",
                       g->nodes[loss].name);
    const float one = 1.0f;
    return rg_graph_backward_from(g, loss, &one);
}

/* ---------------------------------------------------------------- accessors */

const float *rg_host(const rg_graph *g, const float *x, size_t n) { return g->backend->host_view(x, n); }

bool rg_graph_on_device(const rg_graph *g) { return g->backend->device; }

/* bf16 on a device, before compile (which plans the buffers at two values a float, and an
 * input's bf16 copy of its upload in its op scratch). */
static rg_status set_bf16(rg_graph *g) {
    if (!g->backend->device || !g->backend->bf16_ready)
        return rg_fail(RG_ERR_STATE, "precision bf16 is a GPU's: run on --device cuda, or in fp32");
    if (g->compiled) return rg_fail(RG_ERR_STATE, "set precision bf16 before compiling the graph");
    rg_status s = g->backend->bf16_ready();
    if (s) return s;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == RG_OP_INPUT) g->nodes[i].aux_per_sample = (g->nodes[i].size + 1) / 2;
    g->bf16 = true, g->tf32 = false;
    plan_scratch(g); /* a convolution's columns in bf16 */
    return RG_OK;
}

static const char *const precision_names[] = {"fp32", "tf32", "bf16"};
enum { PRECISION_FP32, PRECISION_TF32, PRECISION_BF16 };

rg_status rg_graph_set_precision(rg_graph *g, const char *precision) {
    if (!g) return rg_fail(RG_ERR_ARG, "set_precision: graph is NULL");
    const int p = precision ? rg_name_index(precision_names, RG_COUNT_OF(precision_names), precision)
                            : PRECISION_FP32;
    if (p < 0) return rg_fail_unknown("precision", precision, precision_names, RG_COUNT_OF(precision_names));
    rg_replay_forget(g);
    const bool bf16 = p == PRECISION_BF16;
    if (g->bf16 && !bf16 && g->compiled)
        return rg_fail(RG_ERR_STATE, "precision bf16 is the compiled graph's: build it again for %s",
                       precision_names[p]);
    if (bf16) return g->bf16 ? RG_OK : set_bf16(g);
    if (g->bf16) {
        for (int i = 0; i < g->n_nodes; i++)
            if (g->nodes[i].op == RG_OP_INPUT) g->nodes[i].aux_per_sample = 0;
        g->bf16 = false;
        plan_scratch(g);
    }
    if (p == PRECISION_TF32 && !g->backend->device)
        return rg_fail(RG_ERR_STATE, "precision tf32 is a GPU's: run on --device cuda, or in fp32");
    g->tf32 = p == PRECISION_TF32, g->bf16 = false;
    return RG_OK;
}

bool rg_node_bf16(const rg_graph *g, const rg_node_impl *n) { return g->bf16 && n->batched; }

size_t rg_node_floats(const rg_graph *g, const rg_node_impl *n, size_t count) {
    return rg_node_bf16(g, n) ? (count + 1) / 2 : count;
}

const float *rg_node_host(const rg_graph *g, const rg_node_impl *n, const float *x, size_t count) {
    return rg_node_bf16(g, n) ? g->backend->host_view_bf16(x, count) : g->backend->host_view(x, count);
}

void rg_node_read_later(const rg_graph *g, const rg_node_impl *n, const float *x, size_t count, float *dst) {
    if (g->backend->read_later) g->backend->read_later(dst, x, count, rg_node_bf16(g, n));
    else memcpy(dst, rg_node_host(g, n, x, count), count * sizeof *dst);
}

rg_status rg_graph_reads_done(const rg_graph *g) { return g->backend->reads_done ? g->backend->reads_done() : RG_OK; }

void rg_graph_sums_arrive(const rg_graph *g) {
    if (g->backend->flush_sums) g->backend->flush_sums();
}

rg_status rg_graph_finish(rg_graph *g) {
    if (!g) return rg_fail(RG_ERR_ARG, "finish: graph is NULL");
    return g->backend->device ? g->backend->status(true) : RG_OK;
}

float *rg_graph_host_copy(const rg_graph *g, const float *x, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) {
        rg_fail(RG_ERR_MEMORY, "out of memory copying %zu floats from the device", n);
        return NULL;
    }
    rg_graph_read(g, h, x, n);
    return h;
}

void rg_graph_read(const rg_graph *g, float *dst, const float *src, size_t n) {
    if (g->backend->device) g->backend->download(dst, src, n);
    else memcpy(dst, src, n * sizeof *dst);
}

void rg_graph_write(const rg_graph *g, float *dst, const float *src, size_t n) {
    if (g->backend->device) g->backend->upload(dst, src, n);
    else memcpy(dst, src, n * sizeof *dst);
}

static rg_node_impl *node_at(const rg_graph *g, rg_node n) {
    return (g && n >= 0 && n < g->n_nodes) ? &g->nodes[n] : NULL;
}

float *rg_graph_input_buffer(rg_graph *g, rg_node input) {
    rg_node_impl *n = node_at(g, input);
    return (n && n->op == RG_OP_INPUT) ? (n->staged ? n->staged : n->out) : NULL;
}
int *rg_graph_labels(rg_graph *g) { return g ? g->labels : NULL; }
float *rg_node_output(rg_graph *g, rg_node n) { return node_at(g, n) ? g->nodes[n].out : NULL; }
float *rg_node_grad(rg_graph *g, rg_node n) { return node_at(g, n) ? g->nodes[n].dout : NULL; }

rg_status rg_node_read(rg_graph *g, rg_node n, int rows, float *dst) {
    if (!node_at(g, n) || !dst || rows < 0) return rg_fail(RG_ERR_ARG, "node_read: no node %d, or no destination", n);
    const rg_node_impl *x = &g->nodes[n];
    if (!g->compiled || rows > g->max_batch)
        return rg_fail(RG_ERR_STATE, "node_read: %d rows of a graph %s", rows,
                       g->compiled ? "compiled for fewer" : "not compiled yet");
    const size_t count = (x->batched ? (size_t)rows : 1) * x->size;
    if (rg_node_bf16(g, x)) memcpy(dst, rg_node_host(g, x, x->out, count), count * sizeof *dst);
    else rg_graph_read(g, dst, x->out, count);
    return rg_graph_finish(g);
}
int rg_node_ndim(const rg_graph *g, rg_node n) { return node_at(g, n) ? g->nodes[n].ndim : 0; }
const int *rg_node_shape(const rg_graph *g, rg_node n) {
    return node_at(g, n) ? g->nodes[n].shape : NULL;
}
size_t rg_node_size(const rg_graph *g, rg_node n) { return node_at(g, n) ? g->nodes[n].size : 0; }
const char *rg_node_name(const rg_graph *g, rg_node n) {
    return node_at(g, n) ? g->nodes[n].name : "";
}
const char *rg_node_op_name(const rg_graph *g, rg_node n) {
    return node_at(g, n) ? rg_op_table[g->nodes[n].op]->name : "";
}
int rg_graph_node_count(const rg_graph *g) { return g ? g->n_nodes : 0; }
int rg_graph_max_batch(const rg_graph *g) { return g ? g->max_batch : 0; }
int rg_graph_param_count(const rg_graph *g) { return g ? g->n_params : 0; }
size_t rg_graph_param_floats(const rg_graph *g) { return g ? g->param_floats : 0; }
float *rg_graph_params(rg_graph *g) { return g ? g->param_buf : NULL; }
float *rg_graph_grads(rg_graph *g) { return g ? g->grad_buf : NULL; }

rg_status rg_graph_param(const rg_graph *g, int i, rg_param_info *out) {
    if (!g || i < 0 || i >= g->n_params) return rg_fail(RG_ERR_ARG, "no parameter %d", i);
    const rg_param_impl *p = &g->params[i];
    out->name = p->name;
    out->node = p->node;
    out->ndim = p->ndim;
    memcpy(out->shape, p->shape, sizeof out->shape);
    out->offset = p->offset;
    out->size = p->size;
    out->trainable = p->trainable;
    out->state = p->state;
    out->data = g->compiled ? (p->state ? g->state_buf : g->param_buf) + p->offset : NULL;
    out->grad = g->compiled && !p->state ? g->grad_buf + p->offset : NULL;
    return RG_OK;
}

uint64_t rg_graph_params_hash(const rg_graph *g) {
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *b = (const unsigned char *)rg_host(g, g->param_buf, g->param_floats);
    for (size_t i = 0; i < g->param_floats * sizeof(float); i++) h = (h ^ b[i]) * 0x100000001b3ull;
    b = (const unsigned char *)rg_host(g, g->state_buf, g->state_floats);
    for (size_t i = 0; i < g->state_floats * sizeof(float); i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
size_t rg_graph_state_floats(const rg_graph *g) { return g ? g->state_floats : 0; }
float *rg_graph_state(rg_graph *g) { return g ? g->state_buf : NULL; }

int rg_graph_set_trainable(rg_graph *g, const char *pattern, int trainable) {
    int matched = 0;
    if (g) rg_replay_forget(g);
    for (int i = 0; g && i < g->n_nodes; i++) {
        rg_node_impl *n = &g->nodes[i];
        if (n->n_params == 0 || fnmatch(pattern, n->name, 0) != 0) continue;
        matched++;
        for (int p = 0; p < n->n_params; p++) {
            rg_param_impl *pi = &g->params[n->first_param + p];
            if (!pi->state) pi->trainable = trainable != 0;
        }
    }
    return matched;
}

bool rg_node_frozen(const rg_graph *g, const rg_node_impl *n) {
    for (int p = 0; p < n->n_params; p++)
        if (g->params[n->first_param + p].trainable) return false;
    return n->n_params > 0;
}

uint64_t rg_graph_forward_count(const rg_graph *g) { return g->dropout_calls; }
void rg_graph_set_forward_count(rg_graph *g, uint64_t count) { g->dropout_calls = count; }

/*
 * monitor.c — per-layer gradient and activation health, gathered through the graph's hook
 * right after each node's forward and backward pass, while its buffers still hold their
 * values (later nodes may run in place over them or reuse their memory).
 *
 * A layer is a dense or conv node.  Its output is the pre-activation; the activation is the
 * first element-wise activation below it, through at most one batch norm.
 *
 * Verdict thresholds, and why:
 *  - vanishing: the gradient arriving at the layer (RMS of dL/dz) below 1% of the
 *    strongest hidden layer's (resnet20v2 with batch norm: all within 1/20), or ||dW||/||W|| below 1e-3 of the network's largest ratio.  Each
 *    layer of a healthy network (ReLU + He, or batch norm) passes the gradient on with a
 *    gain near 1; a 10-layer tanh MLP with PyTorch's default init loses ~0.58 per layer,
 *    0.004 over the net, and trains to 0.47 with SGD (`regrad diagnose` shows both).
 *  - exploding: ratio above 100x the median layer's and above 1: one step of plain SGD at
 *    lr 1 would then move the weights by more than their own size.  Or the forward signal:
 *    the units' pre-activation spread above 10 where no batch norm follows (a healthy
 *    net's is about 0.3-1.5 on inputs in [0, 1]; relu nets initialised with N(0, 0.5^2)
 *    grow it ~4x a layer, and every layer's gradient grows alike, so no ratio stands out).
 *  - saturated: over half of a sigmoid/tanh layer's outputs within 1% of a bound, where
 *    the derivative is below ~0.04 (sigmoid) or ~0.02 (tanh).
 *  - dead: over half of a relu layer's units zero for the whole batch.
 * And from the curvature figures, when measured:
 *  - ill_conditioned: the input's mean stands out of its second moment E[x x^T]: |E[x]|^2
 *    over ILL_CONDITIONED times the mean eigenvalue of its covariance.  The layer's
 *    Gauss-Newton block is E[x x^T] times the output side (K-FAC's factorisation), so every
 *    step moves mostly along that one direction (LeCun, Kanter & Solla 1991).  A sigmoid's
 *    3x3x16 input (mean 0.5) is ~800, raw pixels ~1000, a relu's ~60, a tanh's ~1.  GRA
 *    steps such layers in centred coordinates (repair.c).
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VANISH_OF_MAX 1e-3
#define VANISH_RMS_OF_MAX 1e-2
#define EXPLODE_OF_MEDIAN 100.0
#define EXPLODE_SPREAD 10.0
#define SATURATED_FRACTION 0.5
#define DEAD_FRACTION 0.5
#define ILL_CONDITIONED 100.0
/* The conditioning figures' largest input: its f x f moment (4 MB at 1024) and the O(f^3)
 * eigenvalues (about a second) stay small; wider layers (a ResNet's 3x3x512) show NaN. */
#define CONDITIONING_MAX_FAN_IN 1024
/* GRA's trust-region bound: the input covariance split along its top SPLIT_K directions,
 * found by SPLIT_ITERS subspace iterations (rg_monitor_input_covariance_split), or by
 * SPLIT_WARM_ITERS from the directions of the layer's previous split */
#define SPLIT_K 8
#define SPLIT_ITERS 6
#define SPLIT_WARM_ITERS 2
#define REST_FLOOR 4e-4 /* of ||C||_F^2: the split's rest stays an upper bound through S's rounding */

typedef struct layer {
    rg_layer_health h;
    int node, act_node;       /* act_node: -1 if none */
    rg_act act;
    double *unit_mean, *unit_std;
    float *in_moment;         /* dense layers: E[x x^T] of the input (fan_in^2), when asked */
    float *in_mean;           /* E[x] (fan_in) */
    float *split_q;           /* the input covariance's split (rg_monitor_input_covariance_split) */
    float split_s[SPLIT_K * SPLIT_K];
    double split_rest, split_top;
    int split_k;
    double in_trace, in_mean2; /* the moment's trace and |E[x]|^2, set with it */
    float *in_rows;           /* a dense layer with more inputs than the batch has samples: */
    int n_rows;               /* the samples its moment came from (0: none), in host memory */
    bool split_known;
    bool split_warm;          /* split_q holds an earlier split's directions: start there */
    int fan_in;
    bool kept;                /* its weights are in the monitor's `before` copy */
    bool norms_pending;       /* its weights' and gradient's norms come from the optimizer */
    bool norms_due;           /* they are taken with every layer's when the pass ends */
    bool relu_reads_layer;    /* a relu reads the layer's output directly (no batch norm) */
    bool act_reads_layer;     /* the activation reads it directly (any activation) */
    bool act_summed;          /* its output's sums were taken with the layer's, this pass */
    bool normalised;          /* a batch norm takes the layer's output */
    rg_output_stats stats;    /* what the op sums of its output as it writes it */
    /* The watched pass's raw sums, made into figures by settle() once they have arrived (a
     * device's at its flush_sums): per output (the layer's, then its activation's) sum[u],
     * sq[u] and relu[2u] in sums, the count `want` asked for and the units that counted none;
     * the weights' and gradient's squares; the gradient's at the output and the input, or
     * per sample for a convolution (samples: 2 x max_batch). */
    double *sums;
    rg_count_kind want[2];
    long near[2];
    int dead[2];
    double g2, w2, dz2, dx2;
    double *samples;
    bool per_sample[2];       /* dz2, dx2 are the samples' sums, to be added */
    int batch;                /* of the watched pass */
    unsigned pending;         /* PENDING_* */
} layer;

enum { PENDING_OUTPUT = 1, PENDING_ACT = 2, PENDING_NORMS = 4, PENDING_GRADIENT = 8, PENDING_MOMENT = 16 };

struct rg_monitor {
    rg_graph *g;
    layer *layers;
    int n;
    int *layer_of_node;       /* node -> layer index, or -1; act nodes map too */
    bool on;
    bool moments;             /* also estimate dense inputs' second moments */
    int moments_max_fan_in;   /* and only for layers of at most this many inputs (0: all) */
    float *scratch;           /* 5 x the most units of a layer, for dense unit sums */
    float *before;            /* the layers' weights as backward saw them (flat offsets) */
    bool track_update;        /* keep `before` during observed backward passes */
    int *chunk_layer;         /* the layers' weights cut into RG_SQUARES_PIECE pieces, in order: */
    size_t *chunk_lo;         /* the layer and first index of each piece */
    double *chunk_sum;
    size_t *chunk_at, *chunk_len; /* each piece's place in the flat buffer (SIZE_MAX: skip) */
    size_t n_chunks;
    bool norms_at_end;        /* on a device: the layers' weight and gradient norms taken when
                               * the watched pass ends, in two reductions over their pieces,
                               * and `before` copied whole when the step begins */
    size_t *norm_at, *norm_len; /* those pieces' places (SIZE_MAX: a layer not due) */
    double *norm_sum;         /* each piece's sum of squares: the gradient's, then the weights' */
    bool norms_queued;        /* those queued when the pass ended, to arrive at the next settle */
    bool grads_stay;          /* nothing writes the gradients between the watched pass and the
                               * update's note (rg_monitor_track_update's norms_too): on a
                               * device the pass's figures wait for the note's one wait */
    size_t *w_off, *w_len;    /* each layer's weights in the flat buffer, for the optimizer */
    double *measured;         /* 3 per layer, as the optimizer sums them: its squared change,
                               * gradient and weights; NULL: the layers are not in buffer
                               * order, so it cannot */
    bool by_optimizer;        /* the watched step's update is measured by the optimizer */
    bool norms_by_optimizer;  /* and its layers' norms too */
    float *step_start, *step_dir; /* all parameters before the watched step; its update */
    double step_slope, step_curvature; /* along it (rg_monitor_measure_step; NaN: not measured) */
};

static const char *const verdict_names[RG_VERDICT_COUNT] = {
    "healthy", "vanishing", "exploding", "saturated", "dead", "non-finite"};

const char *rg_verdict_name(rg_verdict v) {
    return (v >= 0 && v < RG_VERDICT_COUNT) ? verdict_names[v] : "?";
}

/* All sums go through the backend's reductions (on the CPU kernels/cpu/stats.c's vector
 * lanes), the monitor's cost on a watched step being in them.  Large ones are cut into
 * fixed chunks that the OpenMP team shares, the chunks' sums added in order: the same
 * result whatever the number of threads.  A device's arrive at settle(), once a pass. */

typedef struct {
    long near;
    int dead;
    double relu_sum, relu_sq; /* RG_COUNT_RELU_OF: sums of relu(x) and relu(x)^2 */
} unit_counts;

void rg_output_stats_sample(rg_output_stats *st, int channels, size_t plane, int b, const float *y) {
    for (int c = 0; c < channels; c++) {
        double *t = st->sums + ((size_t)b * channels + c) * 4;
        t[0] = t[1] = t[2] = t[3] = 0;
        st->counts[(size_t)b * channels + c] =
            rg_plane_sums(y + (size_t)c * plane, plane, (rg_count_kind)st->want, 0, 0, t);
    }
}

/* Per-unit sums over the batch of a layer's or an activation's output (units are the first
 * per-sample dimension) into the layer's raw sums k (0: the layer's output, 1: the
 * activation's): sum[u], sum of squares sq[u], and what `want` counts (see rg_count_kind in
 * kernels.h).  One pass; the team splits the units and each unit is summed in a fixed
 * order, so the thread count does not change a figure.  Dense outputs (one value per unit
 * and sample) are summed over batch rows unit-wise in float, a loop GCC vectorises; conv
 * outputs plane by plane (sample, channel) in float lanes, the planes added in double. */
static void unit_sums(rg_monitor *m, layer *l, int k, const rg_node_impl *n, int batch, rg_count_kind want,
                      float lo) {
    const int units = n->shape[0];
    double *sum = l->sums + 4 * (size_t)units * k, *sq = sum + units, *relu = sq + units;
    l->want[k] = want;
    if (n->op == RG_OP_DENSE && n->stats) { /* the op's own, summed as it wrote them */
        l->near[k] = 0, l->dead[k] = 0;
        for (int u = 0; u < units; u++) {
            const double *t = n->stats->sums + (size_t)u * 4;
            sum[u] = t[0], sq[u] = t[1], relu[2 * u] = t[2], relu[2 * u + 1] = t[3];
            l->near[k] += n->stats->counts[u], l->dead[k] += n->stats->counts[u] == 0;
        }
    } else {
        m->g->backend->unit_sums(n, batch, want, lo, 0.99f, m->scratch, sum, sq, relu, &l->near[k], &l->dead[k]);
    }
}

/* What raw sums k counted, and the totals of relu(x) for RG_COUNT_RELU_OF. */
static unit_counts counts_of(const layer *l, int k) {
    const int units = l->h.units;
    const double *relu = l->sums + 4 * (size_t)units * k + 2 * (size_t)units;
    const rg_count_kind want = l->want[k];
    unit_counts c = {want == RG_COUNT_NEAR_BOUND ? l->near[k] : 0,
                     want == RG_COUNT_POSITIVE || want == RG_COUNT_RELU_OF ? l->dead[k] : 0, 0, 0};
    for (int u = 0; want == RG_COUNT_RELU_OF && u < units; u++)
        c.relu_sum += relu[2 * u], c.relu_sq += relu[2 * u + 1];
    return c;
}

/* A new input moment: its trace and |E[x]|^2 taken while it is in cache, its split to be
 * found again. */
static void moment_changed(layer *l) {
    double trace = 0, mean2 = 0;
    for (int k = 0; k < l->fan_in; k++)
        trace += l->in_moment[(size_t)k * l->fan_in + k], mean2 += (double)l->in_mean[k] * l->in_mean[k];
    l->in_trace = trace, l->in_mean2 = mean2;
    l->split_known = false;
}

/* E[x x^T] and E[x] of a dense layer's input over this batch (one GEMM), or for a
 * convolution of its im2col columns (each output position's C*K*K inputs), over the
 * batch and positions: the metric in which GRA's trust region measures a step. */
static void input_moments(rg_monitor *m, layer *l, const rg_node_impl *n, int batch) {
    const rg_node_impl *x = rg_in(m->g, n, 0);
    int f = (int)x->size, groups = 1;
    const rg_conv_geom *q = NULL;
    if (n->op == RG_OP_CONV2D) {
        q = rg_conv_geometry(n, &groups);
        if (groups != 1) return; /* grouped convs: no trust region */
        f = q->c * q->kh * q->kw;
    }
    if (m->moments_max_fan_in && f > m->moments_max_fan_in) return;
    if (!l->in_moment) {
        l->in_moment = malloc((size_t)f * f * sizeof(float));
        l->in_mean = malloc((size_t)f * sizeof(float));
        if (!l->in_moment || !l->in_mean) {
            free(l->in_moment), free(l->in_mean);
            l->in_moment = l->in_mean = NULL;
            return;
        }
        l->fan_in = f;
    }
    /* fewer samples than inputs: the samples give a step's change more cheaply than the
     * moment does (rg_monitor_input_rows) */
    const bool rows = !q && batch < f &&
                      (l->in_rows || (l->in_rows = malloc((size_t)m->g->max_batch * f * sizeof(float))));
    m->g->backend->input_moments(x->out, x->size, batch, f, q, l->in_moment, l->in_mean, rows ? l->in_rows : NULL);
    l->n_rows = rows ? batch : 0;
    l->pending |= PENDING_MOMENT; /* a device's arrive with the pass's sums */
}

/* The activation's statistics from the totals of its output. */
static void set_act(layer *l, const unit_counts *c, double s, double s2, double total) {
    l->h.act_mean = s / total;
    l->h.act_std = sqrt(fmax(s2 / total - l->h.act_mean * l->h.act_mean, 0));
    l->h.saturated = l->act == RG_ACT_SIGMOID || l->act == RG_ACT_TANH ? c->near / total : NAN;
    l->h.dead = l->act == RG_ACT_RELU ? (double)c->dead / l->h.units : NAN;
}

static void observe_forward(rg_monitor *m, layer *l, const rg_node_impl *n, int batch) {
    l->batch = batch;
    /* what the activation's output counts */
    const bool bounded = l->act == RG_ACT_SIGMOID || l->act == RG_ACT_TANH;
    const rg_count_kind act_want = bounded ? RG_COUNT_NEAR_BOUND
                                   : l->act == RG_ACT_RELU ? RG_COUNT_POSITIVE : RG_COUNT_NONE;
    const float act_lo = l->act == RG_ACT_SIGMOID ? 0.01f : -0.99f;
    if (n - m->g->nodes == l->node) {
        if (m->moments) input_moments(m, l, n, batch);
        const rg_count_kind want = l->relu_reads_layer ? RG_COUNT_RELU_OF : RG_COUNT_NONE;
        /* a device sums the activation of the layer's output in the same pass, as the
         * activation will write it (over that output, when in place) */
        if (l->act_reads_layer && !l->relu_reads_layer && m->g->backend->unit_sums_through && !n->stats) {
            const size_t units = (size_t)l->h.units;
            l->want[0] = want, l->want[1] = act_want;
            m->g->backend->unit_sums_through(n, batch, want, 0, 0.99f, l->sums, &l->near[0], &l->dead[0], l->act,
                                             act_want, act_lo, l->sums + 4 * units, &l->near[1], &l->dead[1]);
            l->act_summed = true;
            l->pending |= PENDING_OUTPUT | PENDING_ACT;
            return;
        }
        unit_sums(m, l, 0, n, batch, want, 0);
        l->pending |= PENDING_OUTPUT;
        return;
    }
    if (l->relu_reads_layer) return; /* measured on the layer's output already */
    if (l->act_summed) { /* with the layer's output */
        l->act_summed = false;
        return;
    }
    /* the activation's output */
    unit_sums(m, l, 1, n, batch, act_want, act_lo);
    l->pending |= PENDING_ACT;
}

/* The layer's output's figures (and a relu's that reads it), from raw sums 0. */
static void settle_output(rg_monitor *m, layer *l) {
    const rg_node_impl *n = &m->g->nodes[l->node];
    const int units = l->h.units;
    const double count = (double)l->batch * (n->size / (size_t)units), total = count * units;
    const double *sum = l->sums, *sq = l->sums + units;
    double sm = 0, ss = 0;
    for (int u = 0; u < units; u++) {
        l->unit_mean[u] = sum[u] / count;
        l->unit_std[u] = sqrt(fmax(sq[u] / count - l->unit_mean[u] * l->unit_mean[u], 0));
        sm += l->unit_mean[u], ss += l->unit_std[u];
    }
    l->h.pre_mean = sm / units;
    l->h.pre_std = ss / units;
    if (l->relu_reads_layer) {
        const unit_counts c = counts_of(l, 0);
        set_act(l, &c, c.relu_sum, c.relu_sq, total);
    }
}

/* The activation's figures, from raw sums 1. */
static void settle_act(rg_monitor *m, layer *l) {
    const rg_node_impl *n = &m->g->nodes[l->node];
    const int units = l->h.units;
    const double total = (double)l->batch * (n->size / (size_t)units) * units;
    const double *sum = l->sums + 4 * (size_t)units, *sq = sum + units;
    double s = 0, s2 = 0;
    for (int u = 0; u < units; u++) s += sum[u], s2 += sq[u];
    const unit_counts c = counts_of(l, 1);
    set_act(l, &c, s, s2, total);
}

/* The sum of squares of a batch of gradients into *total: for a convolution sample by
 * sample, as the op takes them itself while it watches (`given`), the samples' sums added
 * in order (by settle_gradient when they are still to come: *per_sample); for other layers
 * in one pass (many small per-sample calls cost more). */
static void sample_squares(rg_monitor *m, const rg_node_impl *n, const float *x, size_t size, int batch,
                           const double *given, double *total, double *samples, bool *per_sample) {
    *per_sample = false;
    if (n->op != RG_OP_CONV2D) { /* bf16 gradients (--precision bf16): one segment of the batch */
        if (m->g->bf16) m->g->backend->sample_squares(x, (size_t)batch * size, 1, total);
        else m->g->backend->squares2(x, NULL, NULL, (size_t)batch * size, total, NULL);
        return;
    }
    if (!given) {
        m->g->backend->sample_squares(x, size, batch, samples);
        *per_sample = true;
        return;
    }
    double s = 0;
    for (int b = 0; b < batch; b++) s += given[b];
    *total = s;
}

/* A layer's weight and gradient norms from their sums of squares. */
static void set_norms(rg_monitor *m, layer *l, double g2, double w2) {
    const rg_param_impl *k = &m->g->params[m->g->nodes[l->node].first_param];
    const float *dw = m->g->grad_buf + k->offset;
    /* count only when there is something to count */
    l->h.nonfinite = isfinite(g2) ? 0 : m->g->backend->count_nonfinite(dw, k->size);
    l->h.grad_norm = sqrt(g2);
    l->h.weight_norm = sqrt(w2);
    l->h.grad_ratio = l->h.grad_norm / fmax(l->h.weight_norm, 1e-12);
}

/* A layer's norms, taken now (the weights as the coming step will see them), set when they
 * have arrived. */
static void take_norms(rg_monitor *m, layer *l) {
    const rg_param_impl *k = &m->g->params[m->g->nodes[l->node].first_param];
    /* the copy that measures the step, when the optimizer does not, is taken in this pass
     * (norms_at_end: when the step began) */
    m->g->backend->squares2(m->g->grad_buf + k->offset, m->g->param_buf + k->offset,
                            m->track_update && !m->norms_at_end ? m->before + k->offset : NULL, k->size, &l->g2,
                            &l->w2);
    l->kept = m->track_update;
    l->pending |= PENDING_NORMS;
}

static void observe_backward(rg_monitor *m, layer *l, rg_node_impl *n, int batch) {
    rg_graph *g = m->g;
    /* the optimizer's pass reads the same weights and gradients, and sums them when asked */
    l->norms_pending = m->norms_by_optimizer && !rg_node_frozen(g, n);
    if (l->norms_pending) l->kept = false;
    else if (m->norms_at_end) l->norms_due = true, l->kept = m->track_update, l->pending |= PENDING_NORMS;
    else take_norms(m, l);
    const rg_node_impl *x = rg_in(g, n, 0);
    const rg_output_stats *st = n->stats;
    l->batch = batch;
    if (n->op != RG_OP_CONV2D && x->needs_grad) { /* the output's and the input's in one reduction */
        g->backend->squares_apart(n->dout, (size_t)batch * n->size, x->dout, (size_t)batch * x->size, &l->dz2,
                                  &l->dx2);
        l->per_sample[0] = l->per_sample[1] = false;
        l->pending |= PENDING_GRADIENT;
        return;
    }
    sample_squares(m, n, n->dout, n->size, batch, st ? st->dy_squares : NULL, &l->dz2, l->samples,
                   &l->per_sample[0]);
    l->dx2 = NAN, l->per_sample[1] = false;
    if (x->needs_grad)
        sample_squares(m, n, x->dout, x->size, batch, st ? st->dx_squares : NULL, &l->dx2,
                       l->samples + g->max_batch, &l->per_sample[1]);
    l->pending |= PENDING_GRADIENT;
}

/* The gradient's RMS at the layer's output and its gain across the layer. */
static void settle_gradient(rg_monitor *m, layer *l) {
    const rg_node_impl *n = &m->g->nodes[l->node];
    for (int k = 0; k < 2; k++)
        if (l->per_sample[k]) {
            double s = 0;
            for (int b = 0; b < l->batch; b++) s += l->samples[(size_t)k * m->g->max_batch + b];
            *(k ? &l->dx2 : &l->dz2) = s;
        }
    const double dz = sqrt(l->dz2);
    l->h.grad_rms = dz / sqrt((double)l->batch * n->size);
    l->h.backward_gain = rg_in(m->g, n, 0)->needs_grad && dz > 0 ? sqrt(l->dx2) / dz : NAN;
}

/* The norms of the layers due (norms_at_end): the sums of squares of their gradients' and
 * weights' pieces, queued as two reductions over every piece (those of layers not due are
 * skipped). */
static void queue_norms(rg_monitor *m) {
    const rg_graph *g = m->g;
    size_t due = 0;
    for (size_t c = 0; c < m->n_chunks; c++) {
        const layer *l = &m->layers[m->chunk_layer[c]];
        const rg_param_impl *k = &g->params[g->nodes[l->node].first_param];
        const size_t lo = k->offset + m->chunk_lo[c], end = k->offset + k->size;
        m->norm_at[c] = l->norms_due ? lo : SIZE_MAX;
        m->norm_len[c] = end - lo < RG_SQUARES_PIECE ? end - lo : RG_SQUARES_PIECE;
        due += l->norms_due;
    }
    if (!due) return;
    g->backend->chunk_squares(g->grad_buf, NULL, m->norm_at, m->norm_len, m->n_chunks, m->norm_sum);
    g->backend->chunk_squares(g->param_buf, NULL, m->norm_at, m->norm_len, m->n_chunks, m->norm_sum + m->n_chunks);
}

/* Once queue_norms' sums have arrived: each due layer's pieces added in order. */
static void collect_norms(rg_monitor *m) {
    for (int i = 0; i < m->n; i++)
        if (m->layers[i].norms_due) m->layers[i].g2 = m->layers[i].w2 = 0;
    for (size_t c = 0; c < m->n_chunks; c++) {
        layer *l = &m->layers[m->chunk_layer[c]];
        if (l->norms_due) l->g2 += m->norm_sum[c], l->w2 += m->norm_sum[m->n_chunks + c];
    }
    for (int i = 0; i < m->n; i++) m->layers[i].norms_due = false;
}

static bool any_pending(const rg_monitor *m) {
    for (int i = 0; i < m->n; i++)
        if (m->layers[i].pending) return true;
    return false;
}

/* The input moments measured since the last settling, arrived (the other figures queued
 * with them arrive too, and are made at the next settle). */
static void moments_arrive(rg_monitor *m) {
    bool any = false;
    for (int i = 0; i < m->n; i++) any |= (m->layers[i].pending & PENDING_MOMENT) != 0;
    if (!any) return;
    rg_graph_sums_arrive(m->g);
    for (int i = 0; i < m->n; i++) {
        layer *l = &m->layers[i];
        if (l->pending & PENDING_MOMENT) moment_changed(l), l->pending &= ~PENDING_MOMENT;
    }
}

/* The figures of the sums taken since the last call, once they have all arrived. */
static void settle(rg_monitor *m) {
    if (!any_pending(m)) return;
    if (m->norms_at_end && !m->norms_queued) queue_norms(m);
    rg_graph_sums_arrive(m->g);
    if (m->norms_at_end) collect_norms(m);
    m->norms_queued = false;
    for (int i = 0; i < m->n; i++) {
        layer *l = &m->layers[i];
        if (l->pending & PENDING_MOMENT) moment_changed(l);
        if (l->pending & PENDING_OUTPUT) settle_output(m, l);
        if (l->pending & PENDING_ACT) settle_act(m, l);
        if (l->pending & PENDING_NORMS) set_norms(m, l, l->g2, l->w2);
        if (l->pending & PENDING_GRADIENT) settle_gradient(m, l);
        l->pending = 0;
    }
}

static void monitor_hook(rg_graph *g, int node, bool backward, void *user) {
    rg_monitor *m = user;
    if (!m->on || m->layer_of_node[node] < 0) return;
    layer *l = &m->layers[m->layer_of_node[node]];
    rg_node_impl *n = &g->nodes[node];
    if (!backward) observe_forward(m, l, n, g->batch);
    else if (node == l->node) observe_backward(m, l, n, g->batch);
}

/* How a pass watches, for replay.c: not at all, or the same way every time (1), but for
 * a pass that measures the inputs' moments (-1: run as it is; such passes are few, GRA's
 * probes and re-probes and the report's conditioning). */
static int monitor_replay_mode(const void *user) {
    const rg_monitor *m = user;
    return !m->on ? 0 : m->moments ? -1 : 1;
}

/* The single consumer of node i, or -1. */
static int only_consumer(const rg_graph *g, int i) {
    int found = -1;
    for (int j = i + 1; j < g->n_nodes; j++)
        for (int k = 0; k < g->nodes[j].n_inputs; k++)
            if (g->nodes[j].inputs[k] == i) {
                if (found >= 0 && found != j) return -1;
                found = j;
            }
    return found;
}

rg_monitor *rg_monitor_create(rg_graph *g) {
    if (!g || !g->compiled) {
        rg_fail(RG_ERR_STATE, "compile the graph before attaching a monitor");
        return NULL;
    }
    if (g->hook) {
        rg_fail(RG_ERR_STATE, "the graph already has a monitor");
        return NULL;
    }
    rg_monitor *m = calloc(1, sizeof *m);
    if (!m || !(m->layers = calloc((size_t)g->n_nodes, sizeof *m->layers)) ||
        !(m->layer_of_node = malloc((size_t)g->n_nodes * sizeof *m->layer_of_node))) {
        rg_monitor_free(m);
        rg_fail(RG_ERR_MEMORY, "out of memory creating a monitor");
        return NULL;
    }
    m->g = g;
    m->step_slope = m->step_curvature = NAN;
    for (int i = 0; i < g->n_nodes; i++) m->layer_of_node[i] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const rg_node_impl *n = &g->nodes[i];
        if ((n->op != RG_OP_DENSE && n->op != RG_OP_CONV2D) || n->bypassed) continue;
        layer *l = &m->layers[m->n];
        l->node = i;
        l->act_node = -1;
        l->h.name = n->name;
        l->h.act = "";
        l->h.units = n->shape[0];
        l->h.update_ratio = l->h.backward_gain = l->h.saturated = l->h.dead = NAN;
        l->h.grad_rms = NAN;
        l->h.input_cond = l->h.mean_outlier = l->h.gn_top = NAN;
        int c = only_consumer(g, i);
        l->normalised = c >= 0 && g->nodes[c].op == RG_OP_BATCH_NORM;
        if (l->normalised) c = only_consumer(g, c);
        if (c >= 0 && g->nodes[c].op == RG_OP_ACTIVATION) {
            l->act_node = c;
            l->act = *(rg_act *)g->nodes[c].attr;
            l->act_reads_layer = g->nodes[c].inputs[0] == i;
            l->relu_reads_layer = l->act == RG_ACT_RELU && l->act_reads_layer;
            l->h.act = rg_act_name(l->act);
            m->layer_of_node[c] = m->n;
        }
        l->unit_mean = calloc((size_t)l->h.units, sizeof(double));
        l->unit_std = calloc((size_t)l->h.units, sizeof(double));
        l->sums = calloc(8 * (size_t)l->h.units, sizeof(double));
        l->samples = calloc(2 * (size_t)g->max_batch, sizeof(double));
        if (!l->unit_mean || !l->unit_std || !l->sums || !l->samples) {
            rg_monitor_free(m);
            rg_fail(RG_ERR_MEMORY, "out of memory creating a monitor");
            return NULL;
        }
        m->layer_of_node[i] = m->n++;
    }
    /* per-unit sums, and each layer's weights cut into pieces for the update's size */
    int units = 1;
    for (int i = 0; i < m->n; i++) {
        if (m->layers[i].h.units > units) units = m->layers[i].h.units;
        m->n_chunks += (g->params[g->nodes[m->layers[i].node].first_param].size + RG_SQUARES_PIECE - 1) / RG_SQUARES_PIECE;
    }
    m->scratch = malloc(5 * (size_t)units * sizeof *m->scratch);
    const size_t chunks = m->n_chunks ? m->n_chunks : 1; /* malloc(0) may give NULL */
    m->chunk_layer = malloc(chunks * sizeof *m->chunk_layer);
    m->chunk_lo = malloc(chunks * sizeof *m->chunk_lo);
    m->chunk_at = malloc(chunks * sizeof *m->chunk_at);
    m->chunk_len = malloc(chunks * sizeof *m->chunk_len);
    m->norms_at_end = g->backend->device;
    if (m->norms_at_end) {
        m->norm_at = malloc(chunks * sizeof *m->norm_at);
        m->norm_len = malloc(chunks * sizeof *m->norm_len);
        m->norm_sum = malloc(2 * chunks * sizeof *m->norm_sum);
    }
    if (!m->scratch || !m->chunk_layer || !m->chunk_lo || !m->chunk_at || !m->chunk_len ||
        (m->norms_at_end && (!m->norm_at || !m->norm_len || !m->norm_sum))) {
        rg_monitor_free(m);
        rg_fail(RG_ERR_MEMORY, "out of memory creating a monitor");
        return NULL;
    }
    for (size_t i = 0, c = 0; i < (size_t)m->n; i++)
        for (size_t lo = 0; lo < g->params[g->nodes[m->layers[i].node].first_param].size; lo += RG_SQUARES_PIECE)
            m->chunk_layer[c] = (int)i, m->chunk_lo[c++] = lo;
    m->w_off = malloc(((size_t)m->n + 1) * sizeof *m->w_off);
    m->w_len = malloc(((size_t)m->n + 1) * sizeof *m->w_len);
    m->measured = malloc(3 * ((size_t)m->n + 1) * sizeof *m->measured);
    if (!m->w_off || !m->w_len || !m->measured) {
        rg_monitor_free(m);
        rg_fail(RG_ERR_MEMORY, "out of memory creating a monitor");
        return NULL;
    }
    for (int i = 0; i < m->n; i++) {
        const rg_param_impl *k = &g->params[g->nodes[m->layers[i].node].first_param];
        m->w_off[i] = k->offset, m->w_len[i] = k->size;
        if (i > 0 && m->w_off[i] < m->w_off[i - 1] + m->w_len[i - 1]) free(m->measured), m->measured = NULL;
    }
    g->hook = monitor_hook;
    g->hook_user = m;
    g->replay_hook = monitor_hook, g->replay_mode = monitor_replay_mode;
    return m;
}

void rg_monitor_free(rg_monitor *m) {
    if (!m) return;
    if (m->g && m->layers) settle(m); /* a device's queued sums land in its buffers, not after them */
    if (m->g && m->g->hook_user == m) m->g->hook = NULL, m->g->hook_user = NULL;
    if (m->g && m->g->replay_hook == monitor_hook) m->g->replay_hook = NULL, m->g->replay_mode = NULL;
    for (int i = 0; m->layers && i < m->n; i++) {
        if (m->g) m->g->nodes[m->layers[i].node].stats = NULL, m->g->nodes[m->layers[i].node].watched = false;
        free(m->layers[i].stats.sums);
        free(m->layers[i].stats.counts);
        free(m->layers[i].stats.dy_squares);
        free(m->layers[i].unit_mean);
        free(m->layers[i].unit_std);
        free(m->layers[i].sums);
        free(m->layers[i].samples);
        free(m->layers[i].in_moment);
        free(m->layers[i].in_mean);
        free(m->layers[i].split_q);
        free(m->layers[i].in_rows);
    }
    free(m->layers);
    free(m->layer_of_node);
    free(m->scratch);
    if (m->g) {
        m->g->backend->release(m->before);
        m->g->backend->release(m->step_start);
        m->g->backend->release(m->step_dir);
    }
    free(m->chunk_layer);
    free(m->chunk_lo);
    free(m->chunk_at);
    free(m->chunk_len);
    free(m->chunk_sum);
    free(m->norm_at);
    free(m->norm_len);
    free(m->norm_sum);
    free(m->w_off);
    free(m->w_len);
    free(m->measured);
    free(m);
}

/* Watching: each layer sums its own output while it is in cache (buffers made on the first
 * watched pass; without memory, or on a device, whose ops do not sum, the hook scans the
 * output instead). */
void rg_monitor_enable(rg_monitor *m, int on) {
    /* a pass's end: its figures settled, or on a device where the gradients stay as they are
     * till the update's note, its norms queued now and all of it left to arrive there (one
     * wait for the device a watched step, not two); a new pass settles what is left first */
    if (!on && m->norms_at_end && m->grads_stay) {
        if (!m->norms_queued && any_pending(m)) queue_norms(m), m->norms_queued = true;
    } else
        settle(m);
    m->on = on != 0;
    for (int i = 0; m->on && i < m->n; i++) m->layers[i].act_summed = false; /* a new watched pass */
    const bool own_sums = !rg_graph_on_device(m->g);
    for (int i = 0; i < m->n; i++) {
        layer *l = &m->layers[i];
        rg_node_impl *n = &m->g->nodes[l->node];
        if (m->on && own_sums && !l->stats.sums) {
            /* a convolution's sums per (sample, channel) plane, a dense layer's per unit */
            const bool conv = n->op == RG_OP_CONV2D;
            const size_t planes = (conv ? (size_t)m->g->max_batch : 1) * l->h.units;
            l->stats.sums = malloc(planes * 4 * sizeof *l->stats.sums);
            l->stats.counts = malloc(planes * sizeof *l->stats.counts);
            /* only convolutions take their gradients' squares (per sample) */
            l->stats.dy_squares = conv ? malloc(2 * (size_t)m->g->max_batch * sizeof(double)) : NULL;
            l->stats.dx_squares = l->stats.dy_squares ? l->stats.dy_squares + m->g->max_batch : NULL;
            if (!l->stats.sums || !l->stats.counts || (conv && !l->stats.dy_squares)) {
                free(l->stats.sums), free(l->stats.counts), free(l->stats.dy_squares);
                l->stats.sums = NULL, l->stats.counts = NULL;
                l->stats.dy_squares = l->stats.dx_squares = NULL;
            }
            l->stats.want = l->relu_reads_layer ? RG_COUNT_RELU_OF : RG_COUNT_NONE;
        }
        n->stats = m->on && l->stats.sums ? &l->stats : NULL;
        n->watched = m->on; /* its output is read after its forward: an add must not be in it yet */
    }
}
void rg_monitor_want_moments(rg_monitor *m, int on) { m->moments = on != 0; }
int rg_monitor_layer_node(const rg_monitor *m, int i) { return m->layers[i].node; }
rg_act rg_monitor_layer_act(const rg_monitor *m, int i) { return m->layers[i].act; }

const float *rg_monitor_input_moment(const rg_monitor *m, int i, const float **mean, int *fan_in) {
    if (!m || i < 0 || i >= m->n || !m->layers[i].in_moment) return NULL;
    *mean = m->layers[i].in_mean;
    *fan_in = m->layers[i].fan_in;
    return m->layers[i].in_moment;
}
int rg_monitor_layer_count(const rg_monitor *m) { return m ? m->n : 0; }

rg_status rg_monitor_set_input_moment(rg_monitor *m, int i, const float *moment,
                                      const float *mean, int fan_in) {
    layer *l = &m->layers[i];
    if (!l->in_moment || l->fan_in != fan_in) {
        free(l->in_moment), free(l->in_mean), free(l->in_rows);
        l->in_rows = NULL;
        l->in_moment = malloc((size_t)fan_in * fan_in * sizeof(float));
        l->in_mean = malloc((size_t)fan_in * sizeof(float));
        if (!l->in_moment || !l->in_mean) {
            free(l->in_moment), free(l->in_mean);
            l->in_moment = l->in_mean = NULL;
            return rg_fail(RG_ERR_MEMORY, "out of memory restoring GRA's statistics");
        }
        l->fan_in = fan_in;
    }
    memcpy(l->in_moment, moment, (size_t)fan_in * fan_in * sizeof(float));
    memcpy(l->in_mean, mean, (size_t)fan_in * sizeof(float));
    moment_changed(l);
    l->n_rows = 0;
    return RG_OK;
}

/* The covariance's split: SPLIT_K rows Q spanning (nearly) its top eigenvectors, by
 * SPLIT_ITERS subspace iterations from a fixed start (any orthonormal Q keeps GRA's bound
 * valid; a better one only makes it tighter), S = Q C Q^T, and the rest's norm
 * ||C - Q^T S Q||_F. */

static void orthonormalise(float *q, int k, int f) { /* rows, by modified Gram-Schmidt */
    for (int i = 0; i < k; i++) {
        float *qi = q + (size_t)i * f;
        for (int j = 0; j < i; j++) {
            const float *qj = q + (size_t)j * f;
            double d = 0;
            for (int c = 0; c < f; c++) d += (double)qi[c] * qj[c];
            for (int c = 0; c < f; c++) qi[c] -= (float)(d * qj[c]);
        }
        double n = 0;
        for (int c = 0; c < f; c++) n += (double)qi[c] * qi[c];
        for (int c = 0; c < f; c++) qi[c] = n > 0 ? (float)(qi[c] / sqrt(n)) : (c == i); /* (a degenerate row: e_i) */
    }
}

/* y = q C for k rows q: q M - (q mu) mu^T. */
static void times_covariance(const layer *l, const float *q, int k, float *y) {
    const int f = l->fan_in;
    rg_sgemm(false, false, k, f, f, 1.0f, q, f, l->in_moment, f, 0.0f, y, f);
    for (int i = 0; i < k; i++) {
        double qm = 0;
        for (int c = 0; c < f; c++) qm += (double)q[(size_t)i * f + c] * l->in_mean[c];
        for (int c = 0; c < f; c++) y[(size_t)i * f + c] -= (float)(qm * l->in_mean[c]);
    }
}

static bool covariance_split(layer *l) {
    const int f = l->fan_in, k = f < SPLIT_K ? f : SPLIT_K;
    float *y = malloc((size_t)k * f * sizeof *y);
    if (!l->split_q) l->split_q = malloc((size_t)(SPLIT_K + 1) * f * sizeof *l->split_q);
    if (!y || !l->split_q) {
        free(y);
        return false;
    }
    float *q = l->split_q;
    if (!l->split_warm) {
        for (int i = 0; i < k; i++) /* a fixed start: cosines of distinct frequencies */
            for (int c = 0; c < f; c++)
                q[(size_t)i * f + c] = (float)cos((i + 1) * (c + 0.5) * 3.141592653589793 / f);
        orthonormalise(q, k, f);
    }
    for (int it = 0; it < (l->split_warm ? SPLIT_WARM_ITERS : SPLIT_ITERS); it++) {
        times_covariance(l, q, k, y);
        memcpy(q, y, (size_t)k * f * sizeof *q);
        orthonormalise(q, k, f);
    }
    times_covariance(l, q, k, y); /* y = Q C */
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double d = 0;
            for (int c = 0; c < f; c++) d += (double)y[(size_t)i * f + c] * q[(size_t)j * f + c];
            l->split_s[i * SPLIT_K + j] = (float)d;
        }
    /* ||C - Q^T S Q||_F^2 = ||C||_F^2 - ||S||_F^2 for orthonormal rows Q, and S's float
     * rounding (its products' relative error is at most f u ~ 5e-5) moves ||S||_F^2 by at
     * most ~1e-4 ||C||_F^2: REST_FLOOR ||C||_F^2 more keeps rest an upper bound. */
    double cc[4] = {0, 0, 0, 0}, ss = 0;
    for (int a = 0; a < f; a++) {
        const float *ma = l->in_moment + (size_t)a * f;
        const double mua = l->in_mean[a];
        int b = 0;
        for (; b + 4 <= f; b += 4)
            for (int h = 0; h < 4; h++) {
                const double c = (double)ma[b + h] - mua * l->in_mean[b + h];
                cc[h] += c * c;
            }
        for (; b < f; b++) {
            const double c = (double)ma[b] - mua * l->in_mean[b];
            cc[0] += c * c;
        }
    }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) ss += (double)l->split_s[i * SPLIT_K + j] * l->split_s[i * SPLIT_K + j];
    const double whole = (cc[0] + cc[1]) + (cc[2] + cc[3]);
    const double rest = fmax(whole - ss, 0) + REST_FLOOR * whole;
    memcpy(q + (size_t)k * f, l->in_mean, (size_t)f * sizeof *q); /* the mean's row after Q's */
    l->split_k = k, l->split_rest = sqrt(rest), l->split_warm = true;
    l->split_top = 0; /* Gershgorin: S's largest row sum of magnitudes, then R's bound */
    for (int i = 0; i < k; i++) {
        double sum = 0;
        for (int j = 0; j < k; j++) sum += fabs(l->split_s[i * SPLIT_K + j]);
        l->split_top = fmax(l->split_top, sum);
    }
    l->split_top += l->split_rest;
    free(y);
    return true;
}

const float *rg_monitor_input_covariance_split(rg_monitor *m, int i, int *k, const float **s, double *rest,
                                               double *top) {
    if (!m || i < 0 || i >= m->n || !m->layers[i].in_moment) return NULL;
    layer *l = &m->layers[i];
    if (!l->split_known && !(l->split_known = covariance_split(l))) return NULL;
    *k = l->split_k, *s = l->split_s, *rest = l->split_rest, *top = l->split_top;
    return l->split_q;
}
/* The readers settle the figures first: a pass's sums on a device arrive then (the
 * monitor is not changed in what it reports, only brought up to date). */
const rg_layer_health *rg_monitor_layer(const rg_monitor *m, int i) {
    if (m) settle((rg_monitor *)m);
    return (m && i >= 0 && i < m->n) ? &m->layers[i].h : NULL;
}
const double *rg_monitor_unit_mean(const rg_monitor *m, int i) {
    if (m) settle((rg_monitor *)m);
    return (m && i >= 0 && i < m->n) ? m->layers[i].unit_mean : NULL;
}
const double *rg_monitor_unit_std(const rg_monitor *m, int i) {
    if (m) settle((rg_monitor *)m);
    return (m && i >= 0 && i < m->n) ? m->layers[i].unit_std : NULL;
}

static int by_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void rg_monitor_judge(rg_monitor *m) {
    for (int i = 0; i < m->n; i++) /* judged before the optimizer step that was to sum them */
        if (m->layers[i].norms_pending) {
            take_norms(m, &m->layers[i]);
            m->layers[i].norms_pending = false;
        }
    settle(m);
    double *ratios = malloc((size_t)(m->n > 0 ? m->n : 1) * sizeof *ratios);
    int nr = 0;
    double best = 0, best_rms = 0;
    for (int i = 0; i < m->n; i++) {
        const double r = m->layers[i].h.grad_ratio, rms = m->layers[i].h.grad_rms;
        if (rg_node_frozen(m->g, &m->g->nodes[m->layers[i].node])) continue; /* no gradient */
        if (isfinite(r)) {
            if (ratios) ratios[nr++] = r;
            if (r > best) best = r;
        }
        /* the classifier's few outputs carry a larger gradient per value than any hidden
         * layer's in every network: it is no reference for the hidden ones */
        if (isfinite(rms) && rms > best_rms && (i < m->n - 1 || m->n == 1)) best_rms = rms;
    }
    double median = 0;
    if (ratios && nr) {
        qsort(ratios, (size_t)nr, sizeof *ratios, by_double);
        median = ratios[nr / 2];
    }
    free(ratios);
    for (int i = 0; i < m->n; i++) {
        rg_layer_health *h = &m->layers[i].h;
        const double r = h->grad_ratio;
        h->verdict = RG_HEALTHY;
        snprintf(h->evidence, sizeof h->evidence, "grad/weight %.2g", r);
        if (rg_node_frozen(m->g, &m->g->nodes[m->layers[i].node])) {
            snprintf(h->evidence, sizeof h->evidence, "frozen: not judged");
            continue;
        }
        if (h->nonfinite > 0 || !isfinite(r)) {
            h->verdict = RG_NONFINITE;
            snprintf(h->evidence, sizeof h->evidence, "%ld non-finite gradient values", h->nonfinite);
        } else if (r > EXPLODE_OF_MEDIAN * median && r > 1) {
            h->verdict = RG_EXPLODING;
            snprintf(h->evidence, sizeof h->evidence, "grad/weight %.2g, %.0fx the median layer's",
                     r, r / median);
        } else if (h->pre_std > EXPLODE_SPREAD && !m->layers[i].normalised) {
            h->verdict = RG_EXPLODING;
            snprintf(h->evidence, sizeof h->evidence, "pre-activation spread %.3g: the forward "
                     "signal has grown over %.0fx", h->pre_std, EXPLODE_SPREAD);
        } else if (best_rms > 0 && h->grad_rms < VANISH_RMS_OF_MAX * best_rms) {
            h->verdict = RG_VANISHING;
            snprintf(h->evidence, sizeof h->evidence, "gradient arriving %.2g RMS, %.1e of the "
                     "strongest layer's", h->grad_rms, h->grad_rms / best_rms);
        } else if (best > 0 && r < VANISH_OF_MAX * best) {
            h->verdict = RG_VANISHING;
            snprintf(h->evidence, sizeof h->evidence, "grad/weight %.2g, %.1e of the largest layer's",
                     r, r / best);
        } else if (h->saturated > SATURATED_FRACTION) {
            h->verdict = RG_SATURATED;
            snprintf(h->evidence, sizeof h->evidence, "%.0f%% of %s outputs within 1%% of a bound",
                     100 * h->saturated, h->act);
        } else if (h->dead > DEAD_FRACTION) {
            h->verdict = RG_DEAD;
            snprintf(h->evidence, sizeof h->evidence, "%.0f%% of relu units zero on the whole batch",
                     100 * h->dead);
        }
    }
}

rg_status rg_monitor_track_update(rg_monitor *m, int on, rg_optim *o, int norms_too) {
    /* the device's update rules do not measure: there the monitor keeps its own copy */
    m->by_optimizer = on && o && m->measured && !rg_graph_on_device(m->g);
    m->norms_by_optimizer = m->by_optimizer && norms_too;
    m->grads_stay = on && norms_too;
    m->track_update = on && !m->by_optimizer;
    if (o) /* measure this step, or forget a measurement a skipped step left asked for */
        rg_optim_measure_next(o, m->by_optimizer ? m->n : 0, m->w_off, m->w_len, m->measured);
    if (m->track_update && !m->before) {
        if (!(m->before = m->g->backend->alloc(m->g->param_floats)) ||
            !(m->chunk_sum = malloc((m->n_chunks ? m->n_chunks : 1) * sizeof *m->chunk_sum))) {
            m->g->backend->release(m->before);
            m->before = NULL;
            m->track_update = false;
            return rg_fail(RG_ERR_MEMORY, "out of memory for the monitor's copy of the weights");
        }
    }
    /* the weights stay as they are until the update: one copy of them all, not one a layer */
    if (m->track_update && m->norms_at_end) m->g->backend->copy(m->before, m->g->param_buf, m->g->param_floats);
    return RG_OK;
}

rg_status rg_monitor_before_step(rg_monitor *m) {
    const rg_graph *g = m->g;
    if (!m->step_start && (!(m->step_start = g->backend->alloc(g->param_floats + 1)) ||
                           !(m->step_dir = g->backend->alloc(g->param_floats + 1)))) {
        g->backend->release(m->step_start);
        m->step_start = NULL;
        return rg_fail(RG_ERR_MEMORY, "out of memory for the monitor's copy of the weights");
    }
    g->backend->copy(m->step_start, g->param_buf, g->param_floats);
    return RG_OK;
}

/* u = after - start, measured at the start's weights (swapped in, so both stay exact). */
rg_status rg_monitor_measure_step(rg_monitor *m, rg_node loss, int batch) {
    rg_graph *g = m->g;
    m->step_slope = m->step_curvature = NAN; /* until measured */
    if (!m->step_start)
        return rg_fail(RG_ERR_STATE, "rg_monitor_measure_step: call rg_monitor_before_step first");
    g->backend->subtract(m->step_dir, g->param_buf, m->step_start, g->param_floats);
    return rg_graph_curvature_along_at(g, m->step_start, loss, batch, 1, m->step_dir, &m->step_slope,
                                       &m->step_curvature);
}

void rg_monitor_step_curvature(const rg_monitor *m, double *slope, double *curvature) {
    if (slope) *slope = m ? m->step_slope : NAN;
    if (curvature) *curvature = m ? m->step_curvature : NAN;
}

/* |W - W_before|^2 of every layer in one pass of the team over all layers' pieces, each
 * layer's pieces added in order: the same figures whatever the thread count. */
void rg_monitor_note_update(rg_monitor *m) {
    m->step_slope = m->step_curvature = NAN; /* until this step's are measured */
    if (!m->track_update) settle(m); /* the weights' norms the ratios divide by */
    if (m->by_optimizer) { /* the optimizer's own sums: each layer's squared change, ... */
        for (int i = 0; i < m->n; i++) {
            layer *l = &m->layers[i];
            const double *sums = m->measured + 3 * i;
            if (l->norms_pending) set_norms(m, l, sums[1], sums[2]); /* ... gradient, weights */
            l->norms_pending = false;
            l->h.update_ratio = rg_node_frozen(m->g, &m->g->nodes[l->node])
                                    ? NAN : sqrt(sums[0]) / fmax(l->h.weight_norm, 1e-12);
        }
        m->by_optimizer = m->norms_by_optimizer = false;
        return;
    }
    if (!m->track_update) return;
    const rg_graph *g = m->g;
    for (size_t c = 0; c < m->n_chunks; c++) { /* each chunk's place in the flat buffer */
        const rg_param_impl *k = &g->params[g->nodes[m->layers[m->chunk_layer[c]].node].first_param];
        const size_t lo = k->offset + m->chunk_lo[c], end = k->offset + k->size;
        m->chunk_at[c] = m->layers[m->chunk_layer[c]].kept ? lo : SIZE_MAX;
        m->chunk_len[c] = end - lo < RG_SQUARES_PIECE ? end - lo : RG_SQUARES_PIECE;
    }
    g->backend->chunk_squares(g->param_buf, m->before, m->chunk_at, m->chunk_len, m->n_chunks,
                              m->chunk_sum);
    settle(m); /* the weights' norms the ratios divide by: the pass's sums and these in one wait */
    rg_graph_sums_arrive(g);
    for (size_t c = 0; c < m->n_chunks;) {
        const int i = m->chunk_layer[c];
        double moved = 0;
        for (; c < m->n_chunks && m->chunk_layer[c] == i; c++) moved += m->chunk_sum[c];
        layer *l = &m->layers[i];
        /* a layer backward did not reach (frozen) was not copied: not measured */
        l->h.update_ratio = l->kept ? sqrt(moved) / fmax(l->h.weight_norm, 1e-12) : NAN;
        l->kept = false;
    }
}

double rg_monitor_mean_outlier(const rg_monitor *m, int i) {
    const layer *l = &m->layers[i];
    if (!l->in_moment) return NAN;
    return l->fan_in * l->in_mean2 / fmax(l->in_trace - l->in_mean2, 1e-30);
}

const float *rg_monitor_input_rows(const rg_monitor *m, int i, int *n) {
    const layer *l = &m->layers[i];
    *n = l->n_rows;
    return l->in_moment && l->n_rows > 0 ? l->in_rows : NULL;
}

rg_status rg_monitor_set_input_rows(rg_monitor *m, int i, const float *rows, int n) {
    layer *l = &m->layers[i];
    if (!l->in_moment || n < 1 || n > m->g->max_batch || n >= l->fan_in)
        return rg_fail(RG_ERR_ARG, "GRA's %d samples for layer %d do not fit its moment or the batch", n, i);
    if (!l->in_rows && !(l->in_rows = malloc((size_t)m->g->max_batch * l->fan_in * sizeof(float))))
        return rg_fail(RG_ERR_MEMORY, "out of memory restoring GRA's statistics");
    memcpy(l->in_rows, rows, (size_t)n * l->fan_in * sizeof(float));
    l->n_rows = n;
    return RG_OK;
}

double rg_monitor_input_variance(const rg_monitor *m, int i) {
    const layer *l = &m->layers[i];
    return l->in_moment ? l->in_trace - l->in_mean2 : NAN;
}

bool rg_monitor_ill_conditioned(double mean_outlier) { return mean_outlier > ILL_CONDITIONED; }

/* Layer i's input conditioning from its moments: largest over median eigenvalue, the
 * mean's outlier ratio, the verdict. */
static void input_conditioning(rg_monitor *m, int i) {
    layer *l = &m->layers[i];
    rg_layer_health *h = &l->h;
    const int f = l->fan_in;
    double eig[2];
    if (!l->in_moment || rg_symmetric_eigenvalues(l->in_moment, f, (int[]){f - 1, f / 2}, 2, eig)) return;
    h->input_cond = eig[1] > 0 ? eig[0] / eig[1] : INFINITY;
    h->mean_outlier = rg_monitor_mean_outlier(m, i);
    h->ill_conditioned = rg_monitor_ill_conditioned(h->mean_outlier);
    snprintf(h->curvature_evidence, sizeof h->curvature_evidence,
             "input mean %.3g x the covariance's mean eigenvalue; E[xx^T] top/median %.3g",
             h->mean_outlier, h->input_cond);
}

rg_status rg_monitor_measure_curvature(rg_monitor *m, rg_node loss, int batch, int gn_iters) {
    if (!m) return rg_fail(RG_ERR_ARG, "rg_monitor_measure_curvature: monitor is NULL");
    rg_graph *g = m->g;
    rg_side_pass pass;
    rg_status s = rg_side_pass_begin(g, &pass, false);
    if (s) return s;
    const bool was_on = m->on, had_moments = m->moments;
    m->moments = true, m->moments_max_fan_in = CONDITIONING_MAX_FAN_IN;
    rg_monitor_enable(m, 1);
    s = rg_graph_forward(g, batch, 1);
    rg_monitor_enable(m, was_on);
    moments_arrive(m); /* even where the pass's other figures wait for the update */
    m->moments = had_moments, m->moments_max_fan_in = 0;
    rg_side_pass_end(g, &pass);
    for (int i = 0; i < m->n && !s; i++) {
        layer *l = &m->layers[i];
        input_conditioning(m, i);
        if (gn_iters > 0 && !rg_node_frozen(g, &g->nodes[l->node]))
            s = rg_graph_top_curvature(g, loss, batch, 1, RG_CURVATURE_GAUSS_NEWTON, l->node, gn_iters,
                                       1e-3, &l->h.gn_top);
    }
    return s;
}

/*
 * repair.c — GRA, the Gradient Repair Algorithm.  How each constant below was chosen, and
 * what each step measured, is in docs/gra.md.
 *
 * 1. Probe (before training).  Forward and backward on probe batches; the monitor judges
 *    each layer.  If any layer is unhealthy, every layer from the first unhealthy one on is
 *    re-conditioned in order, input to output.  A dense layer first gets equal singular
 *    values (its polar factor, scaled to keep its norm: the same directions, but none
 *    stretched more than another), so the product of the layers' Jacobians stays well
 *    conditioned with depth (dynamical isometry, Saxe et al. 2014); convolutions keep their
 *    kernels, but a convolution that reads a sigmoid's output through zero padding gets
 *    each tap's weights made to sum to zero across its input channels.  Its input channels
 *    then all have the mean ~1/2 (the units before are re-conditioned first, to the same
 *    centre and spread), and that mean contributes nothing to the sum: a padded tap's 0 and
 *    an inside tap's mean give the same output, so the border no longer shifts every
 *    output near it (by several times its spread), a shift each layer carries one pixel
 *    further in until it covers the image.  Then over the probe batches each unit's
 *    pre-activation z_j gets its mean mu_j and spread s_j measured, and its weight row and
 *    bias are rescaled,
 *    w_j <- t w_j / s_j, b_j <- t (b_j - mu_j) / s_j, so z_j is centred with spread t: 1, or
 *    TANH_SPREAD before a tanh, or less in a network so deep that the gain across its
 *    layers would compound past DEPTH_GAIN (bounded_spread).  Sigmoid and tanh units then
 *    sit in their responsive range and the backward gain across each layer comes back near
 *    1 (data-dependent initialisation, as LSUV and Salimans & Kingma's).  Before training,
 *    a relu has no responsive range to find, only a scale (scaling its input scales its
 *    output): a layer before a relu gets one scale for all its units, to an RMS spread
 *    of 1, and no shift, since centring each unit would move every relu's threshold to its median
 *    input; and every layer is re-conditioned, from the first, since an exploding signal
 *    starts upstream of the first layer the monitor calls unhealthy.  While training, a
 *    relu layer's ill is dead units: a repair then also centres each unit all but dead
 *    (DEAD_SPREADS), which revives it, and leaves the others' thresholds.  Layers followed by
 *    batch norm are skipped: batch norm already does this at every step.  A healthy
 *    network is not touched.
 * 2. Re-probe (every REPROBE_EVERY steps, while training).  The monitor watches that step;
 *    if a layer has become unhealthy again, the layers from it on are re-conditioned.  A
 *    network the probe found healthy is also checked at steps 1, 2, 4, ... up to
 *    REPROBE_EVERY: its optimizer's first steps do the most damage (Adam at too high a
 *    learning rate kills most relu units within 50 steps), and a check that finds nothing
 *    changes nothing, so a network that stays healthy trains bit for bit as without GRA.  A
 *    network the probe found healthy that falls ill while training (relu units dying at
 *    too high a learning rate) is from then on repaired as the probe's are: input moments,
 *    centred coordinates, trust region and Newton guard.  Until its early checks end, such
 *    a network keeps its weights as its last healthy check (or the probe) saw them; one
 *    that an early check finds ill goes back to those weights instead of being
 *    re-conditioned where its steps left it: a step too long for it has moved every
 *    layer, not only the units it killed (docs/gra.md, "Back to the last healthy weights").
 * 3. Gradient guards (every step, after backward, before the optimizer; one pass):
 *    - a non-finite gradient skips the step and names the layer; NONFINITE_RUN skipped
 *      steps in a row stop training with an error;
 *    - exploding: each layer's log gradient norm is tracked by an exponential moving mean
 *      and variance (ZCLIP_ALPHA), and a norm more than ZCLIP_Z deviations and
 *      EXPLODE_FACTOR times above its running level is scaled back to that bound (ZClip's
 *      rule with an anomaly's threshold; no action during ZCLIP_WARMUP steps);
 *    - vanishing: a layer whose gradient-to-weight ratio falls below VANISH_OF_MEDIAN of
 *      the median layer's is scaled up to that bound.  (Adam, RMSProp and Adagrad are
 *      invariant to gradient scale, so for them this changes little.)
 * 4. Trust region on the update (after the optimizer; only for networks the probe
 *    re-conditioned, so healthy networks pay nothing).  For each dense and (ungrouped)
 *    conv layer the step's change of the pre-activations is measured in function space,
 *        E||dz||^2 = tr(dW M dW^T) + 2 db.(dW mu) + |db|^2,   M = E[x x^T], mu = E[x]
 *    with M and mu of the layer's input (for a conv, of its im2col columns over batch and
 *    positions) estimated by the monitor at every probe, and its RMS over units, relative
 *    to the units' spread, is capped at TRUST_PER_DEPTH / layers by scaling the layer's
 *    update.  Function space, because with sigmoid inputs (all positive) Adam's sign-like
 *    steps add up coherently across a row, so a small ||dW|| can move z a lot; 1/layers,
 *    because each layer's change adds to the output's.  It acts on the update itself, so it
 *    works whatever the optimizer, which no gradient rescaling can do for Adam.  The cap
 *    holds from the first step, with no ramp: the Newton guard measures the first update's
 *    curvature and shrinks it where it overshoots (docs/gra.md).
 *    The product dW M costs a forward or more; coarse bounds from sums over the step (with
 *    the input covariance's trace, then its split's bound, for its top eigenvalue) and a
 *    bound from the split along its top directions (the monitor's), one pass over the
 *    step, decide first whether it can bind (docs/gra.md).
 * 5. Centred coordinates (decided at the probe, for networks it re-conditioned).  A layer
 *    whose input has a large mean (a sigmoid's outputs all sit near 0.5) has an input second
 *    moment M = C + mu mu^T with one eigenvalue, along mu, far above the rest: the loss is
 *    ill-conditioned along that direction and every optimizer's step moves mostly along it
 *    (LeCun, Kanter & Solla 1991).  Where the monitor calls it ill-conditioned (the mean's
 *    |mu|^2 over 100 times the mean eigenvalue of the covariance C), the optimizer works in
 *    the coordinates where the input is centred, w' = w, b' = b + w mu: its gradient is
 *    g_w' = g_w - g_b mu^T, and its step dw', db' is taken back as dw = dw',
 *    db = db' - dw mu.  The network's function is the stored weights' own at every step
 *    (nothing to fold at export, no border effect at a convolution's padding: mu is each
 *    im2col column's mean, padding included); only the optimizer's geometry changes.
 *    mu is re-measured at every re-probe.  A convolution that reads a sigmoid or a tanh goes
 *    further (centred for it, though a tanh's mean alone would not call for centring), to
 *    whitened coordinates, where its input's covariance C is (nearly) the identity: the
 *    input factor of the layer's Gauss-Newton block (as in K-FAC, Martens &
 *    Grosse 2015).  Its gradient is multiplied by P = sqrt(1 + d) (C + d m I)^(-1/2), m
 *    the mean eigenvalue of C and d = WHITEN_DAMPING, and the optimizer's step by P again
 *    on its way back (w - w0 <- (w - w0) P), so that a step of one size moves the layer's
 *    pre-activations alike along every direction of its input.  A convolution's columns
 *    overlap, and a bounded activation's outputs are smooth across pixels: after centring,
 *    C's top eigenvalue is still 20-90 times its mean.  P is made again (C's eigenvectors,
 *    rg_symmetric_eigen) whenever the monitor re-measures the moments.  A layer of more
 *    than WHITEN_MAX_FAN_IN inputs takes the limit d -> infinity, P = I / sqrt(m)
 *    (standardised coordinates).  Dense layers lost when whitened, convolutions after a tanh
 *    when whitened but not centred, convolutions after a relu when standardised
 *    (docs/gra.md, "Whitened coordinates for convolutions" and "Standardised coordinates
 *    for convolutions").
 * 6. Newton guard on the whole update (every step, for networks the probe repaired).  Every
 *    NEWTON_EVERY steps, and at steps 1, 2, 4 ... before the first of them where it has
 *    grown past the last one measured (momentum builds its steps over the first ones), the
 *    update u the optimizer proposed (before the trust region) is measured at the weights
 *    it started from on a batch of the probe set (its batches in turn), not on the step's
 *    batch: that batch's noise is in u, so its own slope along u says the step is short by
 *    the noise's share.  The loss's slope g.u and its Gauss-Newton curvature u^T G u, one
 *    forward and one tangent pass (src/graph/curvature.c).  The quadratic model's best
 *    step along u is a* = -g.u / u^T G u times u; where a* < 1 the step overshoots it, and
 *    every update is scaled by s, the geometric mean of the last s and min(1, a*) (no
 *    less than NEWTON_FLOOR).  It only ever shrinks: a step the model says is short is left
 *    to the optimizer (Adam's steps sit at the edge of stability by design, Cohen et al.
 *    2022).
 * Every action is reported through the log callback.
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_BATCHES 4        /* statistics over up to 4 batches: ~512 samples */
#define NONFINITE_RUN 25       /* consecutive skipped steps before giving up */
#define ZCLIP_ALPHA 0.97       /* ZClip's smoothing and warm-up */
#define ZCLIP_WARMUP 25
/* An anomaly, not routine clipping: OLMo's skip rule's z-score and a norm 10x its level. */
#define ZCLIP_Z 6.0
#define EXPLODE_FACTOR 10.0
#define VANISH_OF_MEDIAN 1e-3  /* as the monitor's vanishing verdict, against the median */
#define MIN_SPREAD 1e-6        /* units with less spread are left as they are */
/* and those whose spread is below this fraction of their mean: float moments resolve a
 * spread only to about sqrt(FLT_EPSILON) |mean| (E[x^2] - E[x]^2 cancels), so below it a
 * unit is constant but for rounding, and scaling it to unit spread would amplify noise */
#define SPREAD_RESOLUTION 1e-3
/* A relu unit whose pre-activation mean lies this many spreads below 0 (positive on ~2% of
 * inputs, were it Gaussian) is all but dead: a repair while training centres it. */
#define DEAD_SPREADS 2.0
/* The spread re-conditioning gives pre-activations before a tanh: its slope falls off
 * sooner than sigmoid's, so a smaller spread keeps units nearer their linear range. */
#define TANH_SPREAD 0.75
/* The most the bounded activations' backward gain, compounded over the network's depth, may
 * reach before re-conditioning lowers their spread (bounded_spread). */
#define DEPTH_GAIN 4.0
#define ORTHO_MAX_STEPS 100    /* Newton-Schulz steps before giving up on a layer */
#define ORTHO_TOLERANCE 1e-3   /* || X^T X - I ||_F at which the polar factor is done */
/* Layers whose Newton-Schulz step would cost more (4 k^2 n FLOPs for a k x n matrix,
 * k <= n) keep their singular values: a 4096 x 25088 classifier would take hours. */
#define ORTHO_MAX_FLOPS 1e10

#define REPROBE_EVERY 50       /* steps between GRA's own health checks while training */
#define TRUST_PER_DEPTH 0.5    /* per-layer cap on the step's change of the pre-activations,
                                * RMS over units relative to their spread: 0.5 / layers */
#define BOUND_SLACK 1e-3       /* the trust region's cheap bound, inflated past its float rounding */
#define NEWTON_EVERY 50        /* steps between the Newton guard's measurements (~3 forwards) */
#define NEWTON_FLOOR 0.1       /* the smallest scale one measurement may ask for */
/* Whitened coordinates (5. above): the damping d, in units of the covariance's mean
 * eigenvalue (a direction of C's is stretched by at most sqrt((1 + d) / d) = 5.9 against
 * standardised coordinates; chosen in docs/gra.md), and the widest input they decompose
 * (O(f^3) at each re-probe). */
#define WHITEN_DAMPING 0.03
#define WHITEN_MAX_FAN_IN 576
typedef struct layer_state {
    int node;
    double mean, var;  /* EMA of the log gradient norm */
    long seen;
    bool centred;      /* the optimizer steps in the coordinates where the input is centred */
    double spread;     /* the units' mean pre-activation spread, as GRA last watched it */
    size_t pm_at;      /* where its rows' products with its input mean lie in r->pm (and
                        * its bias's step in r->db) */
    bool stepped;      /* take_step measured its step: dw_squares and r->pm hold it */
    double dw_squares; /* its step's sum of squares (a device's: at its flush_sums) */
    double shift;      /* |pm + db|^2 of its step (measure_step) */
    bool open;         /* its coarse bounds left its cap open this step (cap_steps) */
    bool bound_queued; /* its split bound's sums for this step queued (queue_bound) */
    bool bound_ahead;  /* open last step: on a device, the sums are queued with the step's own */
    rg_bound_sums bound; /* they, once arrived */
    bool exact_queued; /* its exact figure's sum for this step queued (queue_exact) */
    bool exact_ahead;  /* its cap needed the exact figure last step: queued as bound_ahead's */
    double exact;      /* that sum, once arrived */
    int exact_rows;    /* the samples it is over (0: from the input's moment) */
    double grad_squares, weight_squares; /* the gradient guards' sums (rg_repair_gradients) */
    bool taken;        /* take_step ran as the optimizer wrote its weights, this step */
    float *whiten;     /* host: its whitening matrix P (f x f), when whiten_ok (whitening()) */
    float *whiten_dev; /* a device backend's copy of it, uploaded once per making */
    long whiten_of;    /* 1 + the moments_seen it was last made from (0: never) */
    bool whiten_ok;    /* that making succeeded */
    float *mean_dev;   /* a device backend's copy of its input mean (input_mean()) */
    float *split_dev;  /* and of its covariance split's rows, and of its input's samples */
    long split_of;     /* (kept_on_device()) */
    float *samples_dev;
    long samples_of;
    long mean_of;      /* 1 + the moments_seen it was copied from (0: never) */
} layer_state;

struct rg_repair {
    rg_model *m;
    rg_monitor *mon;
    rg_repair_log log;
    void *user;
    layer_state *layers;
    int n;
    long actions, skipped_run;
    bool trust;                   /* the probe re-conditioned: cap updates from now on */
    const rg_backend *backend;    /* where the buffers below live: the graph's */
    float *before;                /* parameters before the optimizer step (trust region) */
    float *dw, *scratch;          /* one layer's update and dW M, for the trust region */
    int dw_layer;                 /* whose update r->dw holds (-1: none) */
    float *db;                    /* each layer's bias step, at its pm_at */
    float *pm;                    /* each layer's step's rows' products with its input mean */
    size_t *then_off, *then_len;  /* the weights take_step reads as the optimizer writes them */
    int *then_layer, n_then;      /* and whose they are */
    const rg_dataset *probe_data; /* the probe set, kept for re-probes during training */
    const int *probe_idx;
    int probe_n;
    double *norms, *wnorms; /* this step's per-layer gradient and weight norms */
    rg_gra_layer *batch;    /* the layers handed to the backend's GRA arithmetic at once */
    const float **piece;    /* the guards' pieces (each layer's gradient, and weights), */
    size_t *piece_len;      /* their lengths */
    double **piece_sum;     /* and where their sums of squares arrive */
    float *update;          /* the Newton guard's: the proposed update */
    float *step_input;      /* host: the step's inputs and labels, kept while the guard */
    int *step_labels;       /* measures on a probe batch */
    double newton_scale;    /* the scale it applies to every update (1: none) */
    double measured_squares; /* the squared norm of the last update it measured */
    bool newton_off;        /* the loss has no curvature product: no guard */
    float *healthy;         /* host: the parameters and state as the last healthy early
                             * check saw them (2.); NULL when not kept */
    long healthy_step;      /* that check's step (0: the probe's) */
    bool watch_early;       /* the probe found it healthy: re-probe its first steps closer (2.) */
    double tanh_spread, sigmoid_spread; /* re-conditioning's spreads for them (bounded_spread) */
    long moments_seen;      /* the monitor's measurements GRA has taken (keep_spreads) */
};

/* The mean-field backward gain across one layer of a bounded activation whose pre-activations
 * are centred with spread s, its weights scaled to give the next layer the same spread:
 * gain^2 = s^2 E[f'(z)^2] / Var f(z), z ~ N(0, s^2), by the midpoint rule over +-8 spreads. */
static double layer_gain(rg_act act, double s) {
    enum { POINTS = 4000 };
    double w = 0, m1 = 0, m2 = 0, d2 = 0;
    for (int k = 0; k < POINTS; k++) {
        const double t = -8 + 16 * (k + 0.5) / POINTS, p = exp(-0.5 * t * t), z = s * t;
        double f, d;
        if (act == RG_ACT_TANH) f = tanh(z), d = 1 - f * f;
        else f = 1 / (1 + exp(-z)), d = f * (1 - f);
        w += p, m1 += p * f, m2 += p * f * f, d2 += p * d * d;
    }
    m1 /= w, m2 /= w, d2 /= w;
    return sqrt(s * s * d2 / fmax(m2 - m1 * m1, 1e-300));
}

/* The spread re-conditioning gives a bounded activation's units in a network of `depth`
 * such layers: its default (1, or TANH_SPREAD), or the largest spread below it whose gain,
 * compounded over the depth, stays within DEPTH_GAIN (bisection: the gain grows with the
 * spread).  A bounded activation's gain is above 1 at any spread (1.047 for tanh at 0.75,
 * 1.017 for sigmoid at 1): over 100 tanh layers the default would let the first layer's
 * gradient reach ~100 times the last's, and its steps then dominate the whole update's
 * curvature (docs/gra.md). */
static double bounded_spread(rg_act act, int depth) {
    const double dflt = act == RG_ACT_TANH ? TANH_SPREAD : 1.0;
    const double bound = log(DEPTH_GAIN);
    if (depth < 1 || depth * log(layer_gain(act, dflt)) <= bound) return dflt;
    double lo = 0, hi = dflt;
    for (int it = 0; it < 50; it++) {
        const double mid = 0.5 * (lo + hi);
        if (depth * log(layer_gain(act, mid)) <= bound) lo = mid;
        else hi = mid;
    }
    return lo;
}

rg_repair *rg_repair_create(rg_model *m, rg_monitor *mon, rg_repair_log log, void *user) {
    rg_repair *r = calloc(1, sizeof *r);
    if (!r) {
        rg_fail(RG_ERR_MEMORY, "out of memory creating GRA");
        return NULL;
    }
    r->m = m, r->mon = mon, r->log = log, r->user = user, r->backend = m->graph->backend;
    r->newton_scale = 1;
    r->n = rg_monitor_layer_count(mon);
    r->layers = calloc((size_t)(r->n ? r->n : 1), sizeof *r->layers);
    r->norms = calloc((size_t)(r->n ? r->n : 1), sizeof *r->norms);
    r->wnorms = calloc((size_t)(r->n ? r->n : 1), sizeof *r->wnorms);
    r->batch = calloc((size_t)(r->n ? r->n : 1), sizeof *r->batch);
    r->piece = calloc((size_t)(2 * r->n + 1), sizeof *r->piece);
    r->piece_len = calloc((size_t)(2 * r->n + 1), sizeof *r->piece_len);
    r->piece_sum = calloc((size_t)(2 * r->n + 1), sizeof *r->piece_sum);
    if (!r->layers || !r->norms || !r->wnorms || !r->batch || !r->piece || !r->piece_len || !r->piece_sum) {
        rg_repair_free(r);
        rg_fail(RG_ERR_MEMORY, "out of memory creating GRA");
        return NULL;
    }
    int tanhs = 0, sigmoids = 0;
    for (int k = 0; k < r->n; k++) {
        r->layers[k].node = rg_monitor_layer_node(mon, k);
        tanhs += rg_monitor_layer_act(mon, k) == RG_ACT_TANH;
        sigmoids += rg_monitor_layer_act(mon, k) == RG_ACT_SIGMOID;
    }
    r->tanh_spread = bounded_spread(RG_ACT_TANH, tanhs);
    r->sigmoid_spread = bounded_spread(RG_ACT_SIGMOID, sigmoids);
    return r;
}

void rg_repair_free(rg_repair *r) {
    if (!r) return;
    for (int i = 0; r->layers && i < r->n; i++) {
        free(r->layers[i].whiten);
        if (r->backend) {
            r->backend->release(r->layers[i].whiten_dev);
            r->backend->release(r->layers[i].mean_dev);
            r->backend->release(r->layers[i].split_dev);
            r->backend->release(r->layers[i].samples_dev);
        }
    }
    free(r->layers);
    free(r->healthy);
    free(r->step_input), free(r->step_labels);
    free(r->norms);
    free(r->wnorms);
    free(r->batch), free(r->piece), free(r->piece_len), free(r->piece_sum);
    free(r->then_off), free(r->then_len), free(r->then_layer);
    if (r->backend) {
        float *const buffers[] = {r->before, r->dw, r->db, r->pm, r->scratch, r->update};
        for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++) r->backend->release(buffers[i]);
    }
    free(r);
}

long rg_repair_actions(const rg_repair *r) { return r ? r->actions : 0; }

static void emit(rg_repair *r, long step, const char *layer, const char *verdict,
                 const char *action, double factor) {
    r->actions++;
    if (r->log) {
        rg_repair_event e = {step, layer, verdict, action, factor};
        r->log(r->user, &e);
    }
}

/* Each layer's unit spread, which the trust region measures steps against, taken from the
 * monitor only after passes GRA itself watches (its probes and checks): a user who watches
 * more steps (--monitor-every, --report) trains the same weights. */
static void keep_spreads(rg_repair *r) {
    for (int i = 0; i < r->n; i++) r->layers[i].spread = rg_monitor_layer(r->mon, i)->pre_std;
    r->moments_seen++; /* and the whitening matrices are made again from the new moments */
}

/* The probe's walk through the network, a layer at a time (on the CPU): for each probe
 * batch, the outputs that the nodes from `from` on read, as that batch's last pass left
 * them, so that the next layer's passes start there, not at the input. */
typedef struct {
    rg_node from; /* 0: the passes start at the input */
    float *kept;  /* PROBE_BATCHES x stride floats; NULL: every pass starts at the input */
    size_t stride;
} probe_walk;

/* Probe batch k of the n probe samples idx of d into the graph's input and labels: the
 * samples from (k x the batch size) on, wrapping over n, at most a batch of them; their
 * count in *b. */
static rg_status load_probe_batch(rg_repair *r, const rg_dataset *d, const int *idx, int n, long k, int *b) {
    rg_graph *g = r->m->graph;
    const int bs = g->max_batch, start = (int)(k * bs % n);
    *b = n - start < bs ? n - start : bs;
    return rg_dataset_batch(d, idx + start, *b, rg_graph_input_buffer(g, r->m->input), g->labels);
}

/* Forward (and backward) of probe batch k of the probe set, monitor on; batch norm's
 * running statistics and the dropout stream left as they were, so that a network GRA does
 * not touch trains as without it.  With `through` a node (not -1), forward only up to it:
 * what measures the layers before it, which the nodes after it do not change.  With a
 * walk, the pass starts at its node and leaves there the outputs that `through` and the
 * nodes after it read. */
static rg_status probe_pass(rg_repair *r, const rg_dataset *d, const int *idx, int n, int k,
                            bool backward, rg_node through, probe_walk *walk, bool moments) {
    rg_graph *g = r->m->graph;
    /* the trust region's input moments: only for networks GRA repairs (a dense layer
     * with 3,136 inputs needs a 39 MB matrix), and only on the pass whose moments stay */
    rg_monitor_want_moments(r->mon, r->trust && moments);
    int b;
    rg_status s = load_probe_batch(r, d, idx, n, k, &b);
    rg_side_pass side;
    const bool aside = !s && !(s = rg_side_pass_begin(g, &side, false));
    rg_monitor_enable(r->mon, 1);
    const rg_node last = through < 0 ? g->n_nodes - 1 : through;
    float *kept = walk && walk->kept ? walk->kept + (size_t)k * walk->stride : NULL;
    rg_node first = 0;
    if (kept && walk->from > 0 && !s) { /* continue this batch's pass where the walk left it */
        first = walk->from;
        rg_graph_frontier(g, first, b, kept, false);
        g->dropout_calls = side.dropout_calls + 1; /* the masks of a pass from the input */
    }
    if (kept && through >= 0 && !s && !(s = rg_graph_forward_nodes(g, b, 1, first, through - 1))) {
        rg_graph_frontier(g, through, b, kept, true); /* where the next layer's passes start */
        first = through;
    }
    if (!s) s = rg_graph_forward_nodes(g, b, 1, first, last);
    if (!s && backward) s = rg_graph_backward(g, rg_model_objective(r->m));
    rg_monitor_enable(r->mon, 0);
    if (aside) rg_side_pass_end(g, &side);
    keep_spreads(r);
    rg_monitor_want_moments(r->mon, 0);
    return s ? rg_fail(s, "GRA's probe: %s", rg_last_error()) : RG_OK;
}

/* Whether a batch norm sits between layer node i and its activation. */
static bool feeds_batch_norm(const rg_graph *g, int i) {
    for (int j = i + 1; j < g->n_nodes; j++)
        for (int k = 0; k < g->nodes[j].n_inputs; k++)
            if (g->nodes[j].inputs[k] == i && g->nodes[j].op == RG_OP_BATCH_NORM) return true;
    return false;
}

/* The activation whose output conv node n reads (RG_ACT_LINEAR: n is no convolution, or
 * reads no activation). */
static rg_act conv_reads(const rg_graph *g, const rg_node_impl *n) {
    if (n->op != RG_OP_CONV2D) return RG_ACT_LINEAR;
    const rg_node_impl *in = &g->nodes[n->inputs[0]];
    return in->op == RG_OP_ACTIVATION ? *(const rg_act *)in->attr : RG_ACT_LINEAR;
}

static bool reads_a_sigmoid(const rg_graph *g, const rg_node_impl *n) { return conv_reads(g, n) == RG_ACT_SIGMOID; }

/* Whether conv node n reads a bounded activation's output (a sigmoid's or a tanh's): the
 * convolutions that step in whitened coordinates (5. above). */
static bool reads_bounded(const rg_graph *g, const rg_node_impl *n) {
    const rg_act a = conv_reads(g, n);
    return a == RG_ACT_SIGMOID || a == RG_ACT_TANH;
}

/* Whether conv node n reads a sigmoid's output through zero padding, with more than one
 * input channel per group (with one, its taps made to sum to zero would be zero). */
static bool pads_a_sigmoid(const rg_graph *g, const rg_node_impl *n) {
    if (!reads_a_sigmoid(g, n)) return false;
    int groups, pads[4];
    const rg_conv_geom *q = rg_conv_geometry(n, &groups);
    if (!q || g->params[n->first_param].shape[1] < 2) return false;
    rg_conv_pads(q, pads);
    return pads[0] || pads[1] || pads[2] || pads[3];
}

/* Replaces the rows x cols matrix w by its polar factor (the nearest matrix with equal
 * singular values, U V^T of its SVD) times its RMS singular value, so the layer keeps its
 * directions and scale but stretches no direction more than another.  Newton-Schulz:
 * X <- 1.5 X - 0.5 (X X^T) X from X = W / ||W||_F, whose singular values all lie in
 * (0, 1]; each step takes every one towards 1.  Returns the change, ||W' - W|| / ||W||,
 * or -1 (w unchanged) when it does not converge (a rank-deficient w), when w is too large
 * (ORTHO_MAX_FLOPS) or memory is short. */
static double orthogonalise(rg_graph *g, float *w, int rows, int cols) {
    return g->backend->polar(w, rows, cols, ORTHO_MAX_STEPS, ORTHO_TOLERANCE, ORTHO_MAX_FLOPS);
}

/* Rescales layer li so its units' pre-activations are centred with unit spread (before a
 * tanh or sigmoid: the spread bounded_spread chose); *scale_out gets the mean scale applied.
 * The probe's passes run forward through layer li only, or (`through_all`) through the
 * network, so that the monitor's view of every layer is current after the last
 * re-conditioning. */
static rg_status recondition(rg_repair *r, int li, const rg_dataset *d, const int *idx, int n,
                             bool before_training, bool through_all, probe_walk *walk, double *scale_out) {
    rg_graph *g = r->m->graph;
    const rg_node_impl *node = &g->nodes[r->layers[li].node];
    const int units = node->shape[0], batches = (n + g->max_batch - 1) / g->max_batch;
    const int passes = batches < PROBE_BATCHES ? batches : PROBE_BATCHES;
    double *mean = calloc((size_t)units, sizeof *mean), *m2 = calloc((size_t)units, sizeof *m2);
    if (!mean || !m2) {
        free(mean);
        free(m2);
        return rg_fail(RG_ERR_MEMORY, "out of memory re-conditioning %s", node->name);
    }
    /* Average the per-batch unit means and second moments over the probe batches. */
    for (int k = 0; k < passes; k++) {
        /* each pass's moments replace the last's: only the last batch's are taken (a layer's
         * input is the same in its own passes and in the next layer's, which run over it) */
        rg_status s = probe_pass(r, d, idx, n, k, false, through_all ? -1 : r->layers[li].node, walk,
                                 k == passes - 1);
        if (s) {
            free(mean);
            free(m2);
            return s;
        }
        const double *mu = rg_monitor_unit_mean(r->mon, li), *sd = rg_monitor_unit_std(r->mon, li);
        for (int u = 0; u < units; u++) {
            mean[u] += mu[u] / passes;
            m2[u] += (sd[u] * sd[u] + mu[u] * mu[u]) / passes;
        }
    }
    walk->from = r->layers[li].node; /* the next layer's passes start here */
    const rg_param_impl *kp = &g->params[node->first_param];
    float *w = g->param_buf + kp->offset;
    float *b = node->n_params > 1 ? g->param_buf + g->params[node->first_param + 1].offset : NULL;
    const size_t row = kp->size / (size_t)units;
    const rg_act act = rg_monitor_layer_act(r->mon, li);
    const double target = act == RG_ACT_TANH ? r->tanh_spread : act == RG_ACT_SIGMOID ? r->sigmoid_spread : 1.0;
    double spread2 = 0; /* the units' mean squared spread */
    for (int u = 0; u < units; u++) { /* m2 becomes each unit's spread */
        m2[u] = sqrt(fmax(m2[u] - mean[u] * mean[u], 0));
        spread2 += m2[u] * m2[u] / units;
    }
    /* relu: one scale for the layer, to an RMS spread of 1, and no shift (see above); while
     * training, a unit all but dead (its mean DEAD_SPREADS spreads below 0) is centred,
     * which revives it.  Otherwise each unit its own scale.  (m2: each unit's scale, 0
     * where it is left as it is.) */
    const bool whole = act == RG_ACT_RELU && spread2 > MIN_SPREAD * MIN_SPREAD;
    const double whole_scale = target / sqrt(spread2);
    double total = 0;
    for (int u = 0; u < units; u++) {
        if (whole) {
            if (before_training || mean[u] >= -DEAD_SPREADS * m2[u]) mean[u] = 0;
            m2[u] = whole_scale;
        } else {
            m2[u] = m2[u] > MIN_SPREAD && m2[u] > SPREAD_RESOLUTION * fabs(mean[u]) ? target / m2[u] : 0;
        }
        total += m2[u] ? m2[u] : 1;
    }
    g->backend->recenter_units(w, b, units, row, m2, mean);
    free(mean);
    free(m2);
    *scale_out = total / units;
    return RG_OK;
}

/* Whether the probe re-conditions layer i: batch norm re-conditions by itself, and frozen
 * layers are the user's to keep. */
static bool reconditions(const rg_repair *r, int i) {
    const rg_graph *g = r->m->graph;
    return !feeds_batch_norm(g, r->layers[i].node) && !rg_node_frozen(g, &g->nodes[r->layers[i].node]);
}

/* The first layer the monitor's current view finds unhealthy, or -1. */
static int first_unhealthy(const rg_repair *r) {
    for (int i = 0; i < r->n; i++) {
        const rg_verdict v = rg_monitor_layer(r->mon, i)->verdict;
        if (v != RG_HEALTHY && v != RG_NONFINITE) return i;
    }
    return -1;
}

/* Re-conditions every layer from the first unhealthy one in the monitor's current view;
 * with `isometry` (the probe before training) dense layers get equal singular values
 * first. */
static rg_status recondition_from_first_unhealthy(rg_repair *r, long step, bool isometry) {
    rg_graph *g = r->m->graph;
    int first = first_unhealthy(r);
    if (first < 0) return RG_OK;
    const int sick = first;
    if (isometry) first = 0; /* before training: from the first layer (see above) */
    rg_verdict *was = malloc((size_t)r->n * sizeof *was);
    if (!was) return rg_fail(RG_ERR_MEMORY, "out of memory in GRA");
    rg_status s = RG_OK;
    for (int i = 0; i < r->n; i++) was[i] = rg_monitor_layer(r->mon, i)->verdict;
    int last = -1; /* the last layer re-conditioned: its passes run through the network */
    probe_walk walk = {0, NULL, 0};
    for (int i = first; i < r->n; i++) {
        if (!reconditions(r, i)) continue;
        last = i;
        const size_t floats = rg_graph_frontier(g, r->layers[i].node, g->max_batch, NULL, false);
        if (floats > walk.stride) walk.stride = floats;
    }
    /* the walk's outputs kept on the CPU, in at most the activations' own memory again;
     * else every pass starts at the input */
    if (!g->backend->device && walk.stride <= g->arena_floats / PROBE_BATCHES)
        walk.kept = malloc(PROBE_BATCHES * walk.stride * sizeof *walk.kept);
    for (int i = first; i < r->n && !s; i++) {
        const rg_node_impl *node = &g->nodes[r->layers[i].node];
        if (!reconditions(r, i)) continue;
        const char *verdict = rg_verdict_name(was[i] == RG_HEALTHY ? was[sick] : was[i]);
        if (isometry && node->op == RG_OP_DENSE) {
            const rg_param_impl *kp = &g->params[node->first_param];
            const double moved = orthogonalise(g, g->param_buf + kp->offset, node->shape[0],
                                               (int)(kp->size / (size_t)node->shape[0]));
            if (moved >= 0) emit(r, step, node->name, verdict, "equalise_singular_values", moved);
        }
        if (isometry && pads_a_sigmoid(g, node)) {
            const rg_param_impl *kp = &g->params[node->first_param];
            const double moved = g->backend->zero_sum_taps(g->param_buf + kp->offset, node->shape[0],
                                                           kp->shape[1], kp->shape[2] * kp->shape[3]);
            emit(r, step, node->name, verdict, "zero_sum_taps", moved);
        }
        double f = 1;
        if (!(s = recondition(r, i, r->probe_data, r->probe_idx, r->probe_n, isometry, i == last, &walk, &f)))
            emit(r, step, node->name, verdict, "recondition", f);
    }
    free(was);
    free(walk.kept);
    return s;
}

/* Which layers the optimizer steps for in centred coordinates (5. above): trainable ones
 * with a bias to take the shift whose input the monitor finds ill-conditioned, and the
 * convolutions that read a bounded activation (whitened coordinates are centred ones);
 * decided at `step`. */
static void decide_centring(rg_repair *r, long step) {
    rg_graph *g = r->m->graph;
    for (int i = 0; i < r->n; i++) {
        const rg_node_impl *n = &g->nodes[r->layers[i].node];
        if (n->n_params < 2 || !g->params[n->first_param].trainable ||
            !g->params[n->first_param + 1].trainable)
            continue;
        const double ratio = rg_monitor_mean_outlier(r->mon, i);
        const bool ill = rg_monitor_ill_conditioned(ratio);
        if (!ill && !reads_bounded(g, n)) continue;
        r->layers[i].centred = true;
        emit(r, step, n->name, ill ? "ill_conditioned" : "bounded_input", "centre_inputs", ratio);
    }
}

int rg_repair_wants_check(const rg_repair *r, long step) {
    if (!r || step <= 0) return 0;
    if (r->watch_early && step < REPROBE_EVERY) return (step & (step - 1)) == 0; /* powers of two */
    return step % REPROBE_EVERY == 0;
}

/* The parameters and state (batch norm's statistics) to or from r->healthy. */
static void keep_healthy(rg_repair *r, bool restore) {
    rg_graph *g = r->m->graph;
    float *const at[2] = {g->param_buf, g->state_buf};
    const size_t len[2] = {g->param_floats, g->state_floats};
    float *kept = r->healthy;
    for (int k = 0; k < 2; k++) {
        if (len[k] && restore) rg_graph_write(g, at[k], kept, len[k]);
        else if (len[k]) rg_graph_read(g, kept, at[k], len[k]);
        kept += len[k];
    }
}

static size_t healthy_floats(const rg_graph *g) { return g->param_floats + g->state_floats; }

/* An early check of a network the probe found healthy (2. above), which keeps its last
 * healthy weights: still healthy, they are kept again while an early check follows; ill,
 * the network goes back to them.  Returns whether it went back. */
static bool back_to_healthy(rg_repair *r, long step) {
    const int ill = first_unhealthy(r);
    if (ill < 0 && 2 * step < REPROBE_EVERY) { /* the next check, at 2 step, is early too */
        keep_healthy(r, false);
        r->healthy_step = step;
        return false;
    }
    const bool back = ill >= 0 && step < REPROBE_EVERY;
    if (back) {
        keep_healthy(r, true);
        emit(r, step, r->m->graph->nodes[r->layers[ill].node].name,
             rg_verdict_name(rg_monitor_layer(r->mon, ill)->verdict), "back_to_healthy",
             (double)r->healthy_step);
    }
    free(r->healthy), r->healthy = NULL; /* no early check needs them now */
    return back;
}

rg_status rg_repair_check(rg_repair *r, long step) {
    if (!r || !r->probe_data) return RG_OK;
    rg_monitor_judge(r->mon);
    const long before = r->actions;
    rg_status s = RG_OK;
    const bool back = r->healthy && back_to_healthy(r, step);
    if (!back && (s = recondition_from_first_unhealthy(r, step, false))) return s;
    if (r->trust || r->actions == before) return s;
    /* a network that fell ill while training: repaired from here on, as the probe's */
    r->trust = true;
    if ((s = probe_pass(r, r->probe_data, r->probe_idx, r->probe_n, 0, true, -1, NULL, true))) return s;
    rg_monitor_judge(r->mon);
    decide_centring(r, step);
    return RG_OK;
}

rg_status rg_repair_probe(rg_repair *r, const rg_dataset *d, const int *idx, int n) {
    if (!r || n < 1) return rg_fail(RG_ERR_ARG, "GRA probe needs at least one sample");
    r->probe_data = d, r->probe_idx = idx, r->probe_n = n;
    rg_status s = probe_pass(r, d, idx, n, 0, true, -1, NULL, true);
    if (s) return s;
    rg_monitor_judge(r->mon);
    const long before = r->actions;
    if ((s = recondition_from_first_unhealthy(r, 0, true))) return s;
    r->trust = r->actions > before;
    r->watch_early = !r->trust;
    /* healthy: its weights kept for its early checks (without the memory, it is
     * re-conditioned where it falls ill instead) */
    const size_t kept = healthy_floats(r->m->graph); /* a checkpoint's tensor: INT_MAX at most */
    if (r->watch_early && kept <= INT_MAX && (r->healthy = malloc(kept * sizeof *r->healthy)))
        keep_healthy(r, false), r->healthy_step = 0;
    if ((s = probe_pass(r, d, idx, n, 0, true, -1, NULL, true))) return s; /* current view; input moments if repairing */
    rg_monitor_judge(r->mon);
    if (r->trust) decide_centring(r, 0);
    return RG_OK;
}

static int by_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void scale_grad(rg_graph *g, int node, double f) {
    const rg_node_impl *n = &g->nodes[node];
    for (int p = 0; p < n->n_params; p++) {
        const rg_param_impl *pi = &g->params[n->first_param + p];
        if (pi->state) continue;
        g->backend->scale(g->grad_buf + pi->offset, pi->size, (float)f);
    }
}

int rg_repair_gradients(rg_repair *r, long step) {
    rg_graph *g = r->m->graph;
    if (rg_repair_wants_check(r, step)) keep_spreads(r); /* the monitor watched this step for GRA */
    /* Weights move slowly: their norms are refreshed at the re-probe interval only. */
    const bool refresh = step % REPROBE_EVERY == 0 || r->wnorms[0] == 0;
    /* Each layer's gradient norm (the backend's fast sum of squares: non-finite iff some
     * value is, or the sum overflows) and ratio, their sums read in one go. */
    int pieces = 0;
    for (int i = 0; i < r->n; i++) {
        layer_state *l = &r->layers[i];
        const rg_param_impl *k = &g->params[g->nodes[l->node].first_param];
        if (!k->trainable) continue;
        r->piece[pieces] = g->grad_buf + k->offset, r->piece_len[pieces] = k->size;
        r->piece_sum[pieces++] = &l->grad_squares;
        if (!refresh) continue;
        r->piece[pieces] = g->param_buf + k->offset, r->piece_len[pieces] = k->size;
        r->piece_sum[pieces++] = &l->weight_squares;
    }
    g->backend->sums_of_squares(r->piece, r->piece_len, r->piece_sum, pieces);
    rg_graph_sums_arrive(g);
    double ratios[512], median = 0;
    int nr = 0;
    for (int i = 0; i < r->n; i++) {
        const rg_param_impl *k = &g->params[g->nodes[r->layers[i].node].first_param];
        if (!k->trainable) { /* frozen: no gradient to guard */
            r->norms[i] = 0;
            continue;
        }
        const double s = r->layers[i].grad_squares;
        if (refresh) r->wnorms[i] = sqrt(r->layers[i].weight_squares);
        r->norms[i] = sqrt(s);
        if (!isfinite(s)) {
            emit(r, step, g->nodes[r->layers[i].node].name, "non-finite", "skip_step", 1);
            if (++r->skipped_run >= NONFINITE_RUN)
                return -rg_fail(RG_ERR_NUMERIC, "%d steps in a row had non-finite gradients "
                                                "(last in layer %s at step %ld): lower --lr",
                                NONFINITE_RUN, g->nodes[r->layers[i].node].name, step);
            return 1;
        }
        if (nr < 512 && r->wnorms[i] > 0) ratios[nr++] = r->norms[i] / r->wnorms[i];
    }
    r->skipped_run = 0;
    if (nr) {
        qsort(ratios, (size_t)nr, sizeof *ratios, by_double);
        median = ratios[nr / 2];
    }
    for (int i = 0; i < r->n; i++) {
        layer_state *l = &r->layers[i];
        const char *name = g->nodes[l->node].name;
        if (r->norms[i] <= 0) continue;
        double lg = log(r->norms[i]);
        /* exploding: ZClip */
        if (l->seen >= ZCLIP_WARMUP) {
            const double sd = sqrt(l->var);
            const double bound = l->mean + fmax(ZCLIP_Z * sd, log(EXPLODE_FACTOR));
            if (lg > bound) {
                const double f = exp(bound - lg);
                scale_grad(g, l->node, f);
                emit(r, step, name, "exploding", "scale_grad", f);
                lg = bound;
            }
        }
        /* vanishing: against the median layer */
        const double ratio = exp(lg) / fmax(r->wnorms[i], 1e-12);
        if (median > 0 && ratio < VANISH_OF_MEDIAN * median) {
            const double f = VANISH_OF_MEDIAN * median / ratio;
            scale_grad(g, l->node, f);
            emit(r, step, name, "vanishing", "scale_grad", f);
            lg += log(f);
        }
        if (l->seen == 0) l->mean = lg, l->var = 0;
        const double delta = lg - l->mean;
        l->mean += (1 - ZCLIP_ALPHA) * delta;
        l->var = ZCLIP_ALPHA * (l->var + (1 - ZCLIP_ALPHA) * delta * delta);
        l->seen++;
    }
    return 0;
}

/* The RMS spread of layer i's input over its units (the square root of its covariance's mean
 * eigenvalue, from the monitor's moments), 0 where there are none. */
static double input_spread(const rg_repair *r, int i) {
    const float *mu;
    int f;
    if (!rg_monitor_input_moment(r->mon, i, &mu, &f) || f < 1) return 0;
    const double v = rg_monitor_input_variance(r->mon, i) / f;
    return v > 0 && isfinite(v) ? sqrt(v) : 0;
}

/* Whether layer i steps in whitened coordinates (5. above): a centred convolution that
 * reads a sigmoid's or a tanh's output, with its input's moments and a spread. */
static bool steps_whitened(const rg_repair *r, int i) {
    const rg_graph *g = r->m->graph;
    return r->layers[i].centred && reads_bounded(g, &g->nodes[r->layers[i].node]) && input_spread(r, i) > 0;
}

/* P = sqrt(1 + d) (C + d m I)^(-1/2) for the covariance C = moment - mean mean^T
 * (f x f), into p, m the mean of C's eigenvalues (those below 0, rounding's, as 0).  False
 * when out of memory or C has no spread. */
static bool whitening_matrix(const float *moment, const float *mean, int f, float *p) {
    float *c = malloc((size_t)f * f * sizeof *c);
    double *value = malloc((size_t)f * sizeof *value), *vector = malloc((size_t)f * f * sizeof *vector);
    bool ok = c && value && vector;
    if (ok) {
        for (int a = 0; a < f; a++)
            for (int b = 0; b < f; b++)
                c[(size_t)a * f + b] = (float)((double)moment[(size_t)a * f + b] - (double)mean[a] * mean[b]);
        ok = !rg_symmetric_eigen(c, f, value, vector);
    }
    double m = 0;
    for (int k = 0; ok && k < f; k++) m += fmax(value[k], 0) / f;
    ok = ok && m > 0 && isfinite(m);
    double *sum = ok ? calloc((size_t)f * f, sizeof *sum) : NULL;
    if (sum) { /* sum over eigenvectors v of phi v v^T, rows in turn */
        for (int k = 0; k < f; k++) {
            const double phi = sqrt((1 + WHITEN_DAMPING) / (fmax(value[k], 0) + WHITEN_DAMPING * m));
            const double *v = vector + (size_t)k * f;
            for (int a = 0; a < f; a++) {
                const double pv = phi * v[a];
                double *row = sum + (size_t)a * f;
                for (int b = 0; b <= a; b++) row[b] += pv * v[b];
            }
        }
        for (int a = 0; a < f; a++)
            for (int b = 0; b <= a; b++) p[(size_t)a * f + b] = p[(size_t)b * f + a] = (float)sum[(size_t)a * f + b];
    }
    ok = sum != NULL;
    free(c), free(value), free(vector), free(sum);
    return ok;
}

/* n host floats into *dev, a device backend's buffer of GRA's own (allocated at the first
 * copy); false when the device has no memory for it. */
static bool copy_to_device(const rg_backend *be, float **dev, const float *host, size_t n) {
    if (!*dev) *dev = be->alloc(n);
    if (*dev) be->upload(*dev, host, n);
    return *dev != NULL;
}

/* Layer i's whitening matrix in the backend's memory, made again (on the host, then copied
 * to a device once) when the monitor has re-measured its input; NULL where it steps in
 * standardised coordinates instead: wider than WHITEN_MAX_FAN_IN, or no matrix could be
 * made. */
static const float *whitening(rg_repair *r, int i) {
    layer_state *l = &r->layers[i];
    const float *mu;
    int f;
    const float *moment = rg_monitor_input_moment(r->mon, i, &mu, &f);
    if (!moment || f > WHITEN_MAX_FAN_IN) return NULL;
    if (l->whiten_of != r->moments_seen + 1) { /* once per measurement, failed or not */
        l->whiten_of = r->moments_seen + 1;
        if (!l->whiten) l->whiten = malloc((size_t)f * f * sizeof *l->whiten);
        l->whiten_ok = l->whiten && whitening_matrix(moment, mu, f, l->whiten);
        if (l->whiten_ok && r->backend->device)
            l->whiten_ok = copy_to_device(r->backend, &l->whiten_dev, l->whiten, (size_t)f * f);
    }
    return !l->whiten_ok ? NULL : r->backend->device ? l->whiten_dev : l->whiten;
}

/* Layer i's weight gradient (or, with w0, its step w - w0) into whitened coordinates and
 * its step out of them: times P either way (P is symmetric), or by one over its
 * input's spread. */
static void whiten(rg_repair *r, int i, float *w, const float *w0) {
    rg_graph *g = r->m->graph;
    const rg_node_impl *n = &g->nodes[r->layers[i].node];
    const size_t size = g->params[n->first_param].size;
    const int units = n->shape[0];
    const float *p = whitening(r, i);
    if (!p) {
        const float standardise = (float)(1 / input_spread(r, i));
        if (w0) g->backend->step_along(w, w0, NULL, size, standardise);
        else g->backend->scale(w, size, standardise);
    } else if (w0) {
        g->backend->subtract(r->dw, w, w0, size);
        g->backend->times_matrix(r->scratch, r->dw, units, (int)(size / units), p);
        g->backend->step_along(w, w0, r->scratch, size, 1.0f);
    } else {
        g->backend->times_matrix(r->scratch, w, units, (int)(size / units), p);
        g->backend->copy(w, r->scratch, size);
    }
}

static void take_step(rg_repair *r, int i, int *n);

/* Each layer's input mean copied to a device backend's memory once each time the monitor
 * measures the moments (5. above), for the kernels that read it at every step (the centred
 * gradient and the step's products with it), before any of them runs. */
static void keep_means(rg_repair *r) {
    if (!r->backend->device) return;
    for (int i = 0; i < r->n; i++) {
        layer_state *l = &r->layers[i];
        const float *mu;
        int f;
        if (l->mean_of == r->moments_seen + 1 || !rg_monitor_input_moment(r->mon, i, &mu, &f)) continue;
        l->mean_of = r->moments_seen + 1;
        copy_to_device(r->backend, &l->mean_dev, mu, (size_t)f); /* else NULL: the kernels say so */
    }
}

/* Layer i's input mean (the monitor's mu) where the backend's kernels read it: mu itself on
 * the CPU, keep_means's copy on a device (NULL when it had no memory: the kernels say so). */
static const float *input_mean(const rg_repair *r, int i, const float *mu) {
    return r->backend->device ? r->layers[i].mean_dev : mu;
}

/* n floats of the monitor's (host) where the backend's arithmetic reads them: host itself
 * on the CPU; on a device a copy in *dev (room floats, allocated once), made again each
 * time the moments are measured (*of: 1 + the moments_seen it was made from), or NULL
 * when the device had no memory. */
static const float *kept_on_device(rg_repair *r, float **dev, long *of, const float *host, size_t n, size_t room) {
    if (!r->backend->device) return host;
    if (!*dev) *dev = r->backend->alloc(room);
    if (*dev && *of != r->moments_seen + 1) {
        *of = r->moments_seen + 1;
        r->backend->upload(*dev, host, n);
    }
    return *dev;
}

/* Layer i as the backend's GRA arithmetic takes it (backend.h's rg_gra_layer), with its
 * input mean (the monitor's mu, f values), or NULL where it has no moments; GRA's buffers
 * (r->before, r->pm, r->db) are there once the trust region is on. */
static const rg_gra_layer *gra_layer(rg_repair *r, int i, rg_gra_layer *out) {
    rg_graph *g = r->m->graph;
    layer_state *l = &r->layers[i];
    const rg_node_impl *n = &g->nodes[l->node];
    const rg_param_impl *kp = &g->params[n->first_param], *bp = n->n_params > 1 ? kp + 1 : NULL;
    const float *mu;
    int f;
    if (!rg_monitor_input_moment(r->mon, i, &mu, &f)) return NULL;
    *out = (rg_gra_layer){
        .w = g->param_buf + kp->offset,
        .b = bp ? g->param_buf + bp->offset : NULL,
        .gw = g->grad_buf + kp->offset,
        .gb = bp ? g->grad_buf + bp->offset : NULL,
        .w0 = r->before + kp->offset,
        .b0 = bp ? r->before + bp->offset : NULL,
        .pm = r->pm + l->pm_at,
        .db = r->db + l->pm_at,
        .mean = input_mean(r, i, mu),
        .units = n->shape[0],
        .f = f,
        .squares = &l->dw_squares,
        .shift = &l->shift,
    };
    return out;
}

/* Layer i to the batch of r->batch[0, *n) (nothing where it has no moments); whether it went. */
static bool add_to_batch(rg_repair *r, int i, int *n) {
    if (!gra_layer(r, i, &r->batch[*n])) return false;
    ++*n;
    return true;
}

static void take_written_step(void *ctx, int k) {
    rg_repair *r = ctx;
    const int i = r->then_layer[k];
    rg_gra_layer *one = &r->batch[k]; /* its own: the optimizer's threads call this at once */
    if ((r->layers[i].stepped = gra_layer(r, i, one) != NULL)) r->backend->layer_steps(one, 1);
    r->layers[i].taken = true;
}

/* The centred layers' steps (those rg_repair_after_update takes first, before any scale)
 * taken as the optimizer writes each layer's weights, while they are in cache (the CPU's;
 * a device's optimizer writes them all at once, and rg_repair_after_update takes them all
 * in one batch).  Whitened ones are not: their step changes before it is taken. */
static void take_steps_as_written(rg_repair *r, rg_optim *o) {
    rg_graph *g = r->m->graph;
    r->n_then = 0;
    if (r->backend->device) return;
    for (int i = 0; i < r->n; i++) {
        layer_state *l = &r->layers[i];
        const rg_param_impl *kp = &g->params[g->nodes[l->node].first_param];
        const float *mu;
        int f;
        l->taken = false;
        if (!kp->trainable || !l->centred || steps_whitened(r, i) ||
            !rg_monitor_input_moment(r->mon, i, &mu, &f) ||
            (r->n_then && kp->offset < r->then_off[r->n_then - 1] + r->then_len[r->n_then - 1]))
            continue; /* (the ranges go in increasing order) */
        r->then_off[r->n_then] = kp->offset, r->then_len[r->n_then] = kp->size;
        r->then_layer[r->n_then++] = i;
    }
    rg_optim_then_next(o, r->n_then, r->then_off, r->then_len, take_written_step, r);
}

void rg_repair_before_update(rg_repair *r, rg_optim *o) {
    if (!r || !r->trust) return;
    rg_graph *g = r->m->graph;
    if (!r->before) {
        size_t largest = 1, units = 1, all_units = 1;
        for (int i = 0; i < r->n; i++) {
            const rg_node_impl *n = &g->nodes[r->layers[i].node];
            if (g->params[n->first_param].size > largest) largest = g->params[n->first_param].size;
            if ((size_t)n->shape[0] > units) units = (size_t)n->shape[0];
            r->layers[i].pm_at = all_units - 1, all_units += (size_t)n->shape[0];
        }
        r->before = g->backend->alloc(g->param_floats);
        r->dw = g->backend->alloc(largest);
        r->scratch = g->backend->alloc(largest + 9 * units); /* dW M, or the bound's dW Q^T */
        r->db = g->backend->alloc(all_units);
        r->pm = g->backend->alloc(all_units);
        r->update = g->backend->alloc(g->param_floats);
        r->then_off = malloc((size_t)r->n * sizeof *r->then_off);
        r->then_len = malloc((size_t)r->n * sizeof *r->then_len);
        r->then_layer = malloc((size_t)r->n * sizeof *r->then_layer);
        if (!r->before || !r->dw || !r->scratch || !r->db || !r->pm || !r->update || !r->then_off ||
            !r->then_len || !r->then_layer) {
            r->trust = false; /* no memory for the trust region: train without it */
            return;
        }
    }
    keep_means(r);
    if (o) rg_optim_keep_next(o, r->before);
    else g->backend->copy(r->before, g->param_buf, g->param_floats);
    if (o) take_steps_as_written(r, o);
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if (r->layers[i].centred) add_to_batch(r, i, &n);
    g->backend->centre_gradients(r->batch, n);
    for (int i = 0; i < r->n; i++) /* (whitened layers are centred ones) */
        if (r->layers[i].centred && steps_whitened(r, i))
            whiten(r, i, g->grad_buf + g->params[g->nodes[r->layers[i].node].first_param].offset, NULL);
}

int rg_repair_caps_updates(const rg_repair *r) { return r && r->trust; }

/* Layer i's kernel (its first parameter) */
static const rg_param_impl *kernel_of(const rg_repair *r, int i) {
    return &r->m->graph->params[r->m->graph->nodes[r->layers[i].node].first_param];
}

static bool trainable(const rg_repair *r, int i) { return kernel_of(r, i)->trainable; }

/* Whether the Newton guard measures this step's update (6. above): every NEWTON_EVERY
 * steps, and at steps 1, 2, 4 ... before the first of them where the proposed update has
 * grown past the last one measured.  An optimizer's state builds over its first steps
 * (momentum's velocity grows its step up to 1 / (1 - beta) times), and a step the guard
 * passed says nothing of a larger one.  The sizes compared are the optimizer's own steps,
 * before GRA takes them back from centred or whitened coordinates. */
static bool newton_measures(rg_repair *r, long step) {
    if (r->newton_off) return false;
    const bool due = step % NEWTON_EVERY == 0;
    if (!due && (step > NEWTON_EVERY || (step & (step - 1)))) return false;
    rg_graph *g = r->m->graph;
    g->backend->subtract(r->update, g->param_buf, r->before, g->param_floats);
    const double squares = g->backend->sum_squares(r->update, g->param_floats);
    if (!due && !(squares > r->measured_squares)) return false;
    r->measured_squares = squares;
    return true;
}

/* The loss's slope and Gauss-Newton curvature along the proposed update u, at the weights
 * the step started from, on one of the probe set's batches in turn (6. above): the step's
 * own batch made u, so its slope along u holds that batch's noise and says the step is
 * short by its share (docs/gra.md).  The step's inputs, labels and batch size are put back
 * afterwards.  Without a probe set, or memory to keep the step's batch, on the step's. */
static rg_status measure_update(rg_repair *r, long step, double *slope, double *curvature) {
    rg_graph *g = r->m->graph;
    float *input = rg_graph_input_buffer(g, r->m->input);
    const size_t sample = g->nodes[r->m->input].size, bs = (size_t)g->max_batch;
    const int batch = g->batch;
    if (input && r->probe_data && !r->step_input) {
        r->step_input = malloc(bs * sample * sizeof *r->step_input);
        r->step_labels = malloc(bs * sizeof *r->step_labels);
    }
    if (!input || !r->probe_data || !r->step_input || !r->step_labels)
        return rg_graph_curvature_along_at(g, r->before, r->m->loss, batch, 1, r->update, slope, curvature);
    memcpy(r->step_input, input, (size_t)batch * sample * sizeof *input);
    memcpy(r->step_labels, g->labels, (size_t)batch * sizeof *g->labels);
    int b;
    rg_status s =
        load_probe_batch(r, r->probe_data, r->probe_idx, r->probe_n, step / NEWTON_EVERY % PROBE_BATCHES, &b);
    if (!s) s = rg_graph_curvature_along_at(g, r->before, r->m->loss, b, 1, r->update, slope, curvature);
    memcpy(input, r->step_input, (size_t)batch * sample * sizeof *input);
    memcpy(g->labels, r->step_labels, (size_t)batch * sizeof *g->labels);
    g->batch = batch;
    return s;
}

/* The Newton guard (6. above): measures the proposed update where newton_measures said so
 * and scales every update by newton_scale.  Returns the scale it applied (1: none). */
static float newton_guard(rg_repair *r, long step, bool measure) {
    rg_graph *g = r->m->graph;
    const size_t n = g->param_floats;
    if (measure) {
        g->backend->subtract(r->update, g->param_buf, r->before, n);
        double slope, curvature;
        const rg_status s = measure_update(r, step, &slope, &curvature);
        if (s) { /* a loss without a curvature product: train without the guard */
            r->newton_off = true;
            return 1;
        }
        const double best = slope < 0 && curvature > 0 ? -slope / curvature : NAN;
        if (isfinite(best)) {
            r->newton_scale = sqrt(r->newton_scale * fmax(fmin(best, 1), NEWTON_FLOOR));
            if (best < 1) emit(r, step, "(all layers)", "overshoot", "newton_scale", r->newton_scale);
        }
    }
    if (!(r->newton_scale < 1)) return 1;
    const float scale = (float)r->newton_scale;
    g->backend->step_along(g->param_buf, r->before, NULL, n, scale); /* along w - w0 */
    return scale;
}

/* Layer i's step w - w0 to the batch of r->batch[0, *n) for layer_steps, when it has input
 * moments (l->stepped): what the trust region's coarse bounds read of it, in one pass, are
 * its rows' products with the input mean (in r->pm) and its sum of squares (l->dw_squares,
 * a device's at its flush_sums).  The step itself is formed only where they may bind. */
static void take_step(rg_repair *r, int i, int *n) {
    r->layers[i].stepped = add_to_batch(r, i, n);
}

/* take_step's figures for a step since scaled by s, once they have arrived: its products
 * times s, its squares times s^2 (the bounds' input only: they stay above the exact figure
 * by BOUND_SLACK, and the cap itself takes the step as it is). */
static void scale_taken_step(rg_repair *r, int i, float s) {
    layer_state *l = &r->layers[i];
    if (!l->stepped || s == 1) return;
    r->backend->scale(r->pm + l->pm_at, (size_t)r->m->graph->nodes[l->node].shape[0], s);
    l->dw_squares *= (double)s * s;
}

/* The stepped ones of the trainable layers that pass `which`, to the batch of r->batch[0,
 * *n). */
static void stepped_to_batch(rg_repair *r, bool (*which)(const rg_repair *r, int i), int *n) {
    for (int i = 0; i < r->n; i++)
        if (trainable(r, i) && r->layers[i].stepped && which(r, i)) add_to_batch(r, i, n);
}
static bool centred(const rg_repair *r, int i) { return r->layers[i].centred; }
static bool any(const rg_repair *r, int i) {
    (void)r, (void)i;
    return true;
}

/* E||dz||^2 per unit of a layer's step at most, from its measured sums alone: |dW mu + db|^2
 * + tr(dW C dW^T) <= shift + top ||dW||^2 for top >= C's largest eigenvalue. */
static double coarse_bound(const layer_state *l, int units, double top) {
    return (l->shift + top * l->dw_squares) / units;
}

/* The trust region (4. above) on a layer's step (its weights' w - w0, its bias's in r->db
 * from step_shifts), once take_step's and step_shifts' sums have arrived: E||dz||^2 per unit
 * against the cap, first by coarse bounds from those sums, with the covariance's trace for
 * its top eigenvalue (enough for nearly every step) and then with its split's bound on it;
 * then a bound from the split that costs a pass over the step; then, only where all may
 * bind, the exact figure: dW M (as costly as the layer's forward, or more), or with fewer
 * samples than inputs, X dW^T over the samples M came from. */

/* The cap on each layer's RMS change of its pre-activations, relative to their spread. */
static double layer_cap(const rg_repair *r) { return TRUST_PER_DEPTH / r->n; }

/* Layer i's limit on E||dz||^2 per unit, and its input's moment (NULL: no moments for this
 * layer, a grouped conv, or no step measured: no cap). */
static const float *cap_of(rg_repair *r, int i, double cap, double *limit, const float **mu, int *f) {
    const layer_state *l = &r->layers[i];
    const double spread = fmax(l->spread, 1e-12);
    *limit = cap * cap * spread * spread;
    const float *mm = rg_monitor_input_moment(r->mon, i, mu, f);
    return l->stepped ? mm : NULL;
}

/* Whether layer i's step passes the cap by the coarse bounds alone. */
static bool coarse_pass(rg_repair *r, int i, double cap) {
    const layer_state *l = &r->layers[i];
    const int units = r->m->graph->nodes[l->node].shape[0];
    double limit, rest, top;
    const float *mu, *split_s;
    int f, k;
    if (!cap_of(r, i, cap, &limit, &mu, &f)) return true;
    const double variance = rg_monitor_input_variance(r->mon, i); /* >= the top eigenvalue */
    if (variance >= 0 && coarse_bound(l, units, variance) * (1 + BOUND_SLACK) <= limit) return true;
    return rg_monitor_input_covariance_split(r->mon, i, &k, &split_s, &rest, &top) &&
           coarse_bound(l, units, top) * (1 + BOUND_SLACK) <= limit;
}

/* Layer i's bias step (step_shifts'), NULL without a bias. */
static const float *bias_step(const rg_repair *r, int i) {
    return r->m->graph->nodes[r->layers[i].node].n_params > 1 ? r->db + r->layers[i].pm_at : NULL;
}

/* Layer i's weights' step as it stands into r->dw, unless it is there. */
static void step_to_dw(rg_repair *r, int i) {
    if (r->dw_layer == i) return;
    const rg_param_impl *kp = kernel_of(r, i);
    r->backend->subtract(r->dw, r->m->graph->param_buf + kp->offset, r->before + kp->offset, kp->size);
    r->dw_layer = i;
}

/* The sums of layer i's bound from its covariance split, for its step as it stands, queued
 * into l->bound (a device's arrive at the next flush; a device runs what is queued in
 * order, so r->dw may take the next layer's step meanwhile).  Nothing without a split. */
static void queue_bound(rg_repair *r, int i, double cap) {
    layer_state *l = &r->layers[i];
    double limit, rest, top;
    const float *mu, *split_s;
    int f, k;
    const float *qm = cap_of(r, i, cap, &limit, &mu, &f)
                          ? rg_monitor_input_covariance_split(r->mon, i, &k, &split_s, &rest, &top)
                          : NULL;
    if (!qm) return;
    const size_t split_floats = (size_t)(k + 1) * f;
    const float *rows_of_split = kept_on_device(r, &l->split_dev, &l->split_of, qm, split_floats, split_floats);
    if (!rows_of_split) return;
    step_to_dw(r, i);
    r->backend->function_change_bound(r->dw, bias_step(r, i), r->m->graph->nodes[l->node].shape[0], f,
                                      rows_of_split, k, r->scratch, &l->bound);
    l->bound_queued = true;
}

/* The sum that gives layer i's exact E||dz||^2 per unit for its step as it stands, queued
 * into l->exact (a device's arrives at the next flush): dW M with the input's moment, or
 * with fewer samples than inputs X dW^T over the samples M came from (exact_rows of them). */
static void queue_exact(rg_repair *r, int i, double cap) {
    rg_graph *g = r->m->graph;
    layer_state *l = &r->layers[i];
    const int units = g->nodes[l->node].shape[0];
    double limit;
    const float *mu;
    int f, n_rows;
    const float *mm = cap_of(r, i, cap, &limit, &mu, &f);
    if (!mm) return; /* no step measured, or no moments: no cap */
    step_to_dw(r, i);
    const float *rows = rg_monitor_input_rows(r->mon, i, &n_rows);
    const float *samples = rows ? kept_on_device(r, &l->samples_dev, &l->samples_of, rows, (size_t)n_rows * f,
                                                 (size_t)g->max_batch * f)
                                : NULL;
    l->exact_rows = samples ? n_rows : 0;
    if (samples) g->backend->function_change_rows(r->dw, bias_step(r, i), units, f, samples, n_rows, r->scratch,
                                                  &l->exact);
    else g->backend->function_change(r->dw, bias_step(r, i), units, f, mm, mu, r->scratch, &l->exact);
    l->exact_queued = true;
}

/* Layer i's cap where the coarse bounds left it open, its split bound's sums arrived (and
 * its exact figure's, when queued ahead). */
static void cap_open_step(rg_repair *r, int i, long step, double cap) {
    rg_graph *g = r->m->graph;
    layer_state *l = &r->layers[i];
    const rg_node_impl *n = &g->nodes[l->node];
    const rg_param_impl *kp = &g->params[n->first_param];
    const rg_param_impl *bp = n->n_params > 1 ? &g->params[n->first_param + 1] : NULL;
    const int units = n->shape[0];
    double limit, rest, top;
    const float *mu, *split_s;
    int f, k;
    cap_of(r, i, cap, &limit, &mu, &f);
    l->exact_ahead = false;
    if (l->bound_queued && rg_monitor_input_covariance_split(r->mon, i, &k, &split_s, &rest, &top) &&
        rg_bound_from_sums(&l->bound, split_s, k, rest, units) * (1 + BOUND_SLACK) <= limit)
        return;
    l->exact_ahead = true;
    if (!l->exact_queued) {
        queue_exact(r, i, cap);
        rg_graph_sums_arrive(g);
    }
    if (!l->exact_queued) return; /* nothing to measure it by: no cap */
    const double change = l->exact_rows ? l->exact / l->exact_rows / units : l->exact / units;
    const double rho = sqrt(fmax(change, 0)) / fmax(l->spread, 1e-12);
    if (!(rho > cap)) return;
    const float shrink = (float)(cap / rho);
    const float *db = bias_step(r, i);
    step_to_dw(r, i);
    g->backend->step_along(g->param_buf + kp->offset, r->before + kp->offset, r->dw, kp->size, shrink);
    if (bp) g->backend->step_along(g->param_buf + bp->offset, r->before + bp->offset, db, bp->size, shrink);
    emit(r, step, n->name, "large_update", "cap_update", shrink);
}

/* The trust region on every moving layer's step, whose sums have been measured and
 * flushed: the coarse bounds of all, then the split's bounds of those they leave open,
 * queued together (those queued ahead with the step's own sums: bound_ahead) and arriving
 * in one wait, then the rest.  The layers are apart, so the order changes no figure. */
static void cap_steps(rg_repair *r, long step) {
    const double cap = layer_cap(r);
    for (int i = 0; i < r->n; i++) {
        layer_state *l = &r->layers[i];
        l->open = trainable(r, i) && !coarse_pass(r, i, cap);
        if (l->open && !l->bound_queued) queue_bound(r, i, cap);
    }
    rg_graph_sums_arrive(r->m->graph);
    for (int i = 0; i < r->n; i++) {
        layer_state *l = &r->layers[i];
        if (l->open) cap_open_step(r, i, step, cap);
        else l->exact_ahead = false;
        l->bound_ahead = l->open, l->bound_queued = l->exact_queued = false;
    }
}

/* After the optimizer: centred layers' steps back to the stored coordinates, the Newton
 * guard, the trust region.  Each layer's step is taken once (w - w0) and serves both its
 * re-centring and its cap, unless the guard moves every weight between the two.  All
 * layers' steps are measured before any is capped, so that their sums arrive together:
 * the layers are apart, so the order changes no figure. */
void rg_repair_after_update(rg_repair *r, long step) {
    if (!r || !r->trust || !r->before) return;
    rg_graph *g = r->m->graph;
    const rg_backend *be = g->backend;
    const bool measure = newton_measures(r, step);
    const bool guard = measure || (!r->newton_off && r->newton_scale < 1);
    int n = 0; /* the steps to take: every moving layer's, or with the guard the centred ones' */
    for (int i = 0; i < r->n; i++) {
        /* a frozen layer did not move; with the guard, the others' steps wait for its scale */
        if (!trainable(r, i) || (!r->layers[i].centred && guard)) continue;
        const rg_param_impl *kp = &g->params[g->nodes[r->layers[i].node].first_param];
        if (steps_whitened(r, i)) whiten(r, i, g->param_buf + kp->offset, r->before + kp->offset);
        if (!r->layers[i].taken) take_step(r, i, &n);
        r->layers[i].taken = false;
    }
    be->layer_steps(r->batch, n);
    n = 0;
    stepped_to_batch(r, centred, &n);
    be->uncentre_steps(r->batch, n); /* back to the stored coordinates: b -= dw mu (5. above) */
    if (guard) {
        rg_graph_sums_arrive(g); /* the centred steps' squares, which the guard's scale scales */
        const float scale = newton_guard(r, step, measure);
        n = 0;
        for (int i = 0; i < r->n; i++) {
            if (!trainable(r, i)) continue;
            if (r->layers[i].centred) scale_taken_step(r, i, scale); /* taken above */
            else take_step(r, i, &n);
        }
        be->layer_steps(r->batch, n);
    }
    n = 0;
    stepped_to_batch(r, any, &n);
    be->step_shifts(r->batch, n);
    r->dw_layer = -1;
    if (be->flush_sums) /* a device: the bounds and exact figures the last step needed, with the step's sums */
        for (int i = 0; i < r->n; i++) {
            if (!trainable(r, i)) continue;
            if (r->layers[i].bound_ahead) queue_bound(r, i, layer_cap(r));
            if (r->layers[i].exact_ahead) queue_exact(r, i, layer_cap(r));
        }
    rg_graph_sums_arrive(g);
    cap_steps(r, step);
}

/* ---------------------------------------------------------------- checkpoints */

/* A number written with all 17 digits: cJSON's own printing rounds to 15 when the
 * difference is within an epsilon, and an exact resume needs the exact double back. */
static void add_exact(cJSON *o, const char *key, double v) {
    char text[40];
    snprintf(text, sizeof text, "%.17g", v);
    cJSON_AddItemToObject(o, key, isfinite(v) ? cJSON_CreateRaw(text) : cJSON_CreateNull());
}

char *rg_repair_state_json(const rg_repair *r) {
    cJSON *o = cJSON_CreateObject(), *layers = cJSON_AddArrayToObject(o, "layers");
    cJSON_AddNumberToObject(o, "actions", (double)r->actions);
    cJSON_AddNumberToObject(o, "skipped_run", (double)r->skipped_run);
    cJSON_AddBoolToObject(o, "trust", r->trust);
    cJSON_AddBoolToObject(o, "watch_early", r->watch_early);
    add_exact(o, "newton_scale", r->newton_scale);
    add_exact(o, "measured_squares", r->measured_squares);
    if (r->healthy) cJSON_AddNumberToObject(o, "healthy_step", (double)r->healthy_step); /* + gra.healthy */
    for (int i = 0; i < r->n; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "layer", r->m->graph->nodes[r->layers[i].node].name);
        add_exact(l, "mean", r->layers[i].mean);
        add_exact(l, "var", r->layers[i].var);
        add_exact(l, "seen", (double)r->layers[i].seen);
        add_exact(l, "weight_norm", r->wnorms[i]);
        cJSON_AddBoolToObject(l, "centred", r->layers[i].centred);
        /* the trust region's unit spread, from the last step GRA watched */
        add_exact(l, "pre_std", r->layers[i].spread);
        cJSON_AddItemToArray(layers, l);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

rg_status rg_repair_add_tensors(const rg_repair *r, rg_tensor_writer *w) {
    char name[RG_NAME_MAX + 32];
    const int kept = (int)healthy_floats(r->m->graph); /* below INT_MAX: see rg_repair_probe */
    rg_status s0;
    if (r->healthy && (s0 = rg_tensor_writer_add(w, "gra.healthy", r->healthy, 1, &kept))) return s0;
    for (int i = 0; i < r->n; i++) {
        const float *mean;
        int f;
        const float *mom = rg_monitor_input_moment(r->mon, i, &mean, &f);
        if (!mom) continue;
        const char *layer = r->m->graph->nodes[r->layers[i].node].name;
        rg_status s;
        snprintf(name, sizeof name, "gra.%s.input_moment", layer);
        if ((s = rg_tensor_writer_add(w, name, mom, 2, (int[]){f, f}))) return s;
        snprintf(name, sizeof name, "gra.%s.input_mean", layer);
        if ((s = rg_tensor_writer_add(w, name, mean, 1, &f))) return s;
        int n;
        const float *rows = rg_monitor_input_rows(r->mon, i, &n);
        snprintf(name, sizeof name, "gra.%s.input_rows", layer);
        if (rows && (s = rg_tensor_writer_add(w, name, rows, 2, (int[]){n, f}))) return s;
    }
    return RG_OK;
}

rg_status rg_repair_restore(rg_repair *r, const char *json, const rg_tensor_file *f,
                            const rg_dataset *d, const int *idx, int n) {
    r->probe_data = d, r->probe_idx = idx, r->probe_n = n;
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(o, "layers");
    rg_status s = RG_OK;
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) != r->n) {
        s = rg_fail(RG_ERR_FORMAT, "the checkpoint's GRA state does not fit this model "
                                   "(resume with the model it was saved from)");
        goto done;
    }
    const double actions = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "actions"));
    const double run = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "skipped_run"));
    if (!(actions >= 0 && actions < 1e15) || !(run >= 0 && run < 1e15)) {
        s = rg_fail(RG_ERR_FORMAT, "the checkpoint's GRA counters are corrupt");
        goto done;
    }
    r->actions = (long)actions;
    r->skipped_run = (long)run;
    r->trust = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "trust"));
    r->watch_early = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "watch_early")); /* older: false */
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(o, "newton_scale");
    r->newton_scale = cJSON_IsNumber(ns) ? ns->valuedouble : 1; /* older checkpoints: none */
    if (!(r->newton_scale > 0 && r->newton_scale <= 1)) {
        s = rg_fail(RG_ERR_FORMAT, "the checkpoint's GRA state is corrupt (newton_scale)");
        goto done;
    }
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "measured_squares");
    r->measured_squares = cJSON_IsNumber(ms) ? ms->valuedouble : 0; /* older checkpoints: none */
    if (!(r->measured_squares >= 0)) {
        s = rg_fail(RG_ERR_FORMAT, "the checkpoint's GRA state is corrupt (measured_squares)");
        goto done;
    }
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(o, "healthy_step");
    if (hs) { /* the last healthy weights an early check kept (older checkpoints: none) */
        size_t count;
        const float *kept = rg_tensor_file_find(f, "gra.healthy", &count, NULL, NULL);
        if (!cJSON_IsNumber(hs) || !(hs->valuedouble >= 0 && hs->valuedouble < REPROBE_EVERY) || !kept ||
            count != healthy_floats(r->m->graph)) {
            s = rg_fail(RG_ERR_FORMAT, "the checkpoint's GRA state is corrupt (its healthy weights)");
            goto done;
        }
        free(r->healthy);
        if (!(r->healthy = malloc(count * sizeof *r->healthy))) {
            s = rg_fail(RG_ERR_MEMORY, "out of memory restoring GRA's healthy weights");
            goto done;
        }
        memcpy(r->healthy, kept, count * sizeof *r->healthy);
        r->healthy_step = (long)hs->valuedouble;
    }
    char name[RG_NAME_MAX + 32];
    for (int i = 0; i < r->n && !s; i++) {
        cJSON *l = cJSON_GetArrayItem(layers, i);
        r->layers[i].mean = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(l, "mean"));
        r->layers[i].var = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(l, "var"));
        const double seen = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(l, "seen"));
        r->layers[i].seen = seen >= 0 && seen < 1e15 ? (long)seen : -1; /* -1: refused below */
        r->wnorms[i] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(l, "weight_norm"));
        r->layers[i].centred = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "centred"));
        r->layers[i].spread = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(l, "pre_std"));
        if (isnan(r->layers[i].mean) || isnan(r->wnorms[i]) || r->layers[i].seen < 0) {
            s = rg_fail(RG_ERR_FORMAT, "the checkpoint's GRA state is corrupt (layer %d)", i);
            break;
        }
        const char *layer = r->m->graph->nodes[r->layers[i].node].name;
        size_t cm, cu;
        int nd, shape[RG_MAX_DIMS];
        snprintf(name, sizeof name, "gra.%s.input_moment", layer);
        const float *mom = rg_tensor_file_find(f, name, &cm, &nd, shape);
        snprintf(name, sizeof name, "gra.%s.input_mean", layer);
        const float *mean = rg_tensor_file_find(f, name, &cu, NULL, NULL);
        if (!mom && !mean) continue;
        if (!mom || !mean || nd != 2 || shape[0] != shape[1] || cu != (size_t)shape[0] ||
            cm != cu * cu) {
            s = rg_fail(RG_ERR_FORMAT, "the checkpoint's GRA statistics for %s are corrupt", layer);
            break;
        }
        if ((s = rg_monitor_set_input_moment(r->mon, i, mom, mean, shape[0]))) break;
        snprintf(name, sizeof name, "gra.%s.input_rows", layer);
        size_t cr;
        int rshape[RG_MAX_DIMS];
        const float *rows = rg_tensor_file_find(f, name, &cr, &nd, rshape);
        if (!rows) continue; /* a layer whose batch had as many samples as inputs, or older */
        if (nd != 2 || rshape[0] < 1 || rshape[0] >= shape[0] || rshape[1] != shape[0] ||
            cr != (size_t)rshape[0] * rshape[1]) {
            s = rg_fail(RG_ERR_FORMAT, "the checkpoint's GRA statistics for %s are corrupt", layer);
            break;
        }
        /* more samples than this run's batch holds: its figure comes from the moment */
        if (rshape[0] <= r->m->graph->max_batch) s = rg_monitor_set_input_rows(r->mon, i, rows, rshape[0]);
    }
done:
    cJSON_Delete(o);
    return s;
}

/*
 * cmd_diagnose.c — `regrad diagnose`: one forward and backward on a batch of real data with
 * the health monitor on, a per-layer table with verdicts and evidence, the layers' curvature
 * figures, and the remedies that fit what it found.  Exits 0 whatever the verdicts: a finding is not an error.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct diagnose_args {
    const char *model, *data, *device, *precision;
    long batch, seed, threads, curvature;
    bool json;
} diagnose_args;

#define A diagnose_args
static const cli_option diagnose_options[] = {
    {.name = "model", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(A, model), .dflt = "mlp",
     .help = "model spec"},
    {.name = "data", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(A, data), .dflt = "fashion-mnist",
     .help = "dataset (see 'regrad train --help')"},
    {.name = "batch", .meta = "N", .type = CLI_INT, CLI_AT(A, batch), .lo = 2, .hi = 65536,
     .dflt = "256", .help = "probe batch size"},
    {.name = "seed", .meta = "N", .type = CLI_INT, CLI_AT(A, seed), .lo = 0, .hi = 9.2e18,
     .dflt = "42", .help = "initialisation and sample seed"},
    {.name = "curvature", .meta = "N", .type = CLI_INT, CLI_AT(A, curvature), .lo = 0, .hi = 1000,
     .dflt = "0", .help = "also each layer's top Gauss-Newton eigenvalue and the loss's sharpness "
                          "(top Hessian eigenvalue), by up to N power iterations each (20 is plenty)"},
    {.table = cli_threads_options, CLI_AT(A, threads)},
    {.table = cli_device_options, CLI_AT(A, device)},
    {.table = cli_precision_options, CLI_AT(A, precision)},
    {.name = "json", .type = CLI_FLAG, CLI_AT(A, json), .help = "one JSON object instead of the table"},
    CLI_END,
};
#undef A

static const cli_command diagnose_command = {
    .name = "diagnose", .usage = "--model SPEC [--data SPEC] [--batch N] [--seed N] [--curvature N] [--json]",
    .about = "Run one batch forward and backward and report each layer's gradient health: "
             "gradient and weight norms, backward gain, activation spread, saturation, dead "
             "units, a verdict (healthy, vanishing, exploding, saturated, dead, non-finite) with "
             "its evidence, and suggested remedies; and its curvature: the conditioning of "
             "its input's second moment (largest over median eigenvalue; ill_conditioned where "
             "the input's mean stands out of it), with --curvature the top eigenvalue of "
             "its Gauss-Newton block and the loss's sharpness.",
    .options = diagnose_options};

static void diagnose_json(const char *spec, long batch, const rg_monitor *mon, double ratio,
                          double sharpness) {
    printf("{\"model\":");
    cli_json_str(stdout, spec);
    printf(",\"batch\":%ld,", batch);
    cli_json_num(stdout, "first_to_last_grad_ratio", ratio, false);
    cli_json_num(stdout, "hessian_top", sharpness, false);
    printf("\"layers\":[");
    for (int i = 0; i < rg_monitor_layer_count(mon); i++) {
        const rg_layer_health *h = rg_monitor_layer(mon, i);
        printf("%s{\"layer\":", i ? "," : "");
        cli_json_str(stdout, h->name);
        printf(",\"act\":\"%s\",", h->act);
        cli_json_num(stdout, "grad_norm", h->grad_norm, false);
        cli_json_num(stdout, "weight_norm", h->weight_norm, false);
        cli_json_num(stdout, "grad_ratio", h->grad_ratio, false);
        cli_json_num(stdout, "grad_rms", h->grad_rms, false);
        cli_json_num(stdout, "backward_gain", h->backward_gain, false);
        cli_json_num(stdout, "pre_mean", h->pre_mean, false);
        cli_json_num(stdout, "pre_std", h->pre_std, false);
        cli_json_num(stdout, "act_mean", h->act_mean, false);
        cli_json_num(stdout, "act_std", h->act_std, false);
        cli_json_num(stdout, "saturated", h->saturated, false);
        cli_json_num(stdout, "dead", h->dead, false);
        cli_json_num(stdout, "input_cond", h->input_cond, false);
        cli_json_num(stdout, "mean_outlier", h->mean_outlier, false);
        cli_json_num(stdout, "gn_top", h->gn_top, false);
        printf("\"ill_conditioned\":%s,\"nonfinite\":%ld,\"verdict\":\"%s\",\"evidence\":",
               h->ill_conditioned ? "true" : "false", h->nonfinite, rg_verdict_name(h->verdict));
        cli_json_str(stdout, h->evidence);
        printf("}");
    }
    printf("]}\n");
}

/* The remedies that fit what the verdicts found. */
static void print_remedies(const int counts[RG_VERDICT_COUNT], bool sig_tanh) {
    printf("Remedies to try:\n");
    if (counts[RG_VANISHING] || counts[RG_SATURATED]) {
        if (sig_tanh) printf("  - relu with He init (act=relu,init=he) instead of sigmoid/tanh\n");
        printf("  - batch norm (bn=1 for mlp) or residual connections (residual=1, resnet*)\n");
        printf("  - GRA: regrad train --repair auto (the default) re-conditions these layers\n");
    }
    if (counts[RG_EXPLODING] || counts[RG_NONFINITE])
        printf("  - a lower --lr, or GRA (--repair auto), which scales exploding gradients back\n");
    if (counts[RG_DEAD]) printf("  - leaky_relu, He init, or a lower --lr to revive dead relu units\n");
}

static void diagnose_table(const char *spec, const char *data, long batch, const rg_monitor *mon,
                           double ratio, bool gn, double sharpness) {
    const int n = rg_monitor_layer_count(mon);
    int counts[RG_VERDICT_COUNT] = {0}, ill = 0;
    bool sig_tanh = false;
    printf("%s on %s, batch %ld: first-to-last layer gradient norm ratio %.3g\n\n", spec, data,
           batch, ratio);
    printf("%-26s %-8s %9s %9s %9s %8s %8s %8s %9s %9s", "layer", "act", "|dW|", "|dW|/|W|",
           "dz rms", "gain", "pre std", "sat/dead", "in cond", "mean out");
    if (gn) printf(" %9s", "GN top");
    printf("  %-10s %s\n", "verdict", "evidence");
    for (int i = 0; i < n; i++) {
        const rg_layer_health *h = rg_monitor_layer(mon, i);
        counts[h->verdict]++;
        ill += h->ill_conditioned;
        sig_tanh |= !strcmp(h->act, "sigmoid") || !strcmp(h->act, "tanh");
        const double sd = isfinite(h->saturated) ? h->saturated : h->dead;
        printf("%-26s %-8s %9.2e %9.2e %9.2e %8.3f %8.3f %8.2f %9.3g %9.3g", h->name, h->act,
               h->grad_norm, h->grad_ratio, h->grad_rms, h->backward_gain, h->pre_std, sd,
               h->input_cond, h->mean_outlier);
        if (gn) printf(" %9.3g", h->gn_top);
        const char *verdict = h->verdict != RG_HEALTHY || !h->ill_conditioned
                                  ? rg_verdict_name(h->verdict) : "ill_conditioned";
        printf("  %-10s %s\n", verdict, h->verdict != RG_HEALTHY ? h->evidence
                                          : h->ill_conditioned ? h->curvature_evidence : "");
    }
    const int bad = n - counts[RG_HEALTHY];
    printf("\n%d of %d layers unhealthy", bad, n);
    for (int v = 1; v < RG_VERDICT_COUNT; v++)
        if (counts[v]) printf(", %d %s", counts[v], rg_verdict_name((rg_verdict)v));
    printf("; %d ill-conditioned.\n", ill);
    if (gn && sharpness > 0) /* a quadratic's gradient descent diverges above 2 / its top eigenvalue */
        printf("Sharpness (top Hessian eigenvalue, this batch): %.4g; plain SGD diverges along it "
               "above lr %.3g.\n", sharpness, 2 / sharpness);
    else if (gn && isfinite(sharpness))
        printf("Sharpness: the Hessian's eigenvalue of largest size on this batch is %.4g (negative "
               "curvature dominates).\n", sharpness);
    if (bad) print_remedies(counts, sig_tanh);
    if (ill)
        printf("%s  - ill-conditioned inputs (their mean dominates E[x x^T]): zero-mean activations\n"
               "    (tanh for sigmoid) or normalisation; when GRA repairs a net it steps them centred\n",
               bad ? "" : "Remedies to try:\n");
}

/* One observed forward and backward on `batch` samples of d drawn with seed. */
static rg_status observe_batch(const rg_dataset *d, rg_model *m, rg_monitor *mon, int batch,
                               uint64_t seed) {
    int *idx = malloc((size_t)d->n * sizeof *idx);
    if (!idx) return RG_ERR_MEMORY;
    for (int i = 0; i < d->n; i++) idx[i] = i;
    rg_rng rng;
    rg_rng_seed(&rng, seed);
    rg_rng_shuffle(&rng, idx, d->n);
    rg_status s = rg_dataset_batch(d, idx, batch, rg_graph_input_buffer(m->graph, m->input),
                                   rg_graph_labels(m->graph));
    free(idx);
    rg_monitor_enable(mon, 1);
    if (!s && !(s = rg_graph_forward(m->graph, batch, 1))) s = rg_graph_backward(m->graph, m->loss);
    rg_monitor_enable(mon, 0);
    rg_monitor_judge(mon);
    return s;
}

int cmd_diagnose(int argc, char **argv) {
    const char *cmd = "diagnose";
    diagnose_args a = {0};
    cli_defaults(&diagnose_command, &a);
    const int parsed = cli_parse(&diagnose_command, argc, argv, &a, NULL);
    if (parsed >= 0) return parsed;
    rg_status s;
    rg_model m = {0};
    if ((s = rg_model_build(a.model, NULL, &m))) return cli_fail(cmd, s); /* before the data */
    const bool classifier = m.loss != RG_NONE;
    rg_model_free(&m);
    if (!classifier) {
        cli_error(cmd, "model '%s' has no classifier (top=0): diagnose needs top=1", a.model);
        return EXIT_USAGE;
    }
    rg_set_threads((int)a.threads);
    const int ready = cli_device(cmd, a.device);
    if (ready >= 0) return ready;
    rg_dataset *d = NULL;
    rg_monitor *mon = NULL;
    const long batch = a.batch < 0 ? 0 : a.batch;
    double sharpness = NAN; /* with --curvature: the Hessian's top eigenvalue */
    if (!(s = rg_dataset_open(a.data, NULL, &d, NULL))) {
        const int b = batch > d->n ? d->n : (int)batch;
        const rg_model_opts mo = {.c = d->c, .h = d->h, .w = d->w, .classes = d->classes,
                                  .seed = (uint64_t)a.seed};
        if (!(s = rg_model_build(a.model, &mo, &m)) && !(s = cli_place(m.graph, a.device, a.precision)) &&
            !(s = rg_graph_compile(m.graph, b)) &&
            !(s = (mon = rg_monitor_create(m.graph)) ? RG_OK : RG_ERR_MEMORY) &&
            !(s = observe_batch(d, &m, mon, b, (uint64_t)a.seed)) &&
            !(s = rg_monitor_measure_curvature(mon, m.loss, b, (int)a.curvature)) &&
            !(s = a.curvature ? rg_graph_top_curvature(m.graph, m.loss, b, 1, RG_CURVATURE_HESSIAN, RG_NONE,
                                                       (int)a.curvature, 1e-4, &sharpness)
                              : RG_OK)) {
            const int n = rg_monitor_layer_count(mon);
            const double ratio = n ? rg_monitor_layer(mon, 0)->grad_norm /
                                     rg_monitor_layer(mon, n - 1)->grad_norm : NAN;
            if (a.json) diagnose_json(a.model, b, mon, ratio, sharpness);
            else diagnose_table(a.model, a.data, b, mon, ratio, a.curvature > 0, sharpness);
        }
    }
    rg_monitor_free(mon);
    rg_model_free(&m);
    rg_dataset_free(d);
    return s ? cli_fail(cmd, s) : 0;
}

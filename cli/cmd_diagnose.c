/*
 * cmd_diagnose.c — `regrad diagnose`: one forward and backward on a batch of real data with
 * the health monitor on, a per-layer table with verdicts and evidence, and the remedies
 * that fit what it found.  Exits 0 whatever the verdicts: a finding is not an error.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct diagnose_args {
    const char *model, *data;
    long batch, seed, threads;
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
    {.table = cli_threads_options, CLI_AT(A, threads)},
    {.name = "json", .type = CLI_FLAG, CLI_AT(A, json), .help = "one JSON object instead of the table"},
    CLI_END,
};
#undef A

static const cli_command diagnose_command = {
    .name = "diagnose", .usage = "--model SPEC [--data SPEC] [--batch N] [--seed N] [--json]",
    .about = "Run one batch forward and backward and report each layer's gradient health: "
             "gradient and weight norms, backward gain, activation spread, saturation, dead "
             "units, a verdict (healthy, vanishing, exploding, saturated, dead, non-finite) with "
             "its evidence, and suggested remedies.",
    .options = diagnose_options};

int cmd_diagnose(int argc, char **argv) {
    const char *cmd = "diagnose";
    diagnose_args a = {0};
    cli_defaults(&diagnose_command, &a);
    const int parsed = cli_parse(&diagnose_command, argc, argv, &a, NULL);
    if (parsed >= 0) return parsed;
    const char *spec = a.model, *data = a.data;
    long batch = a.batch;
    const long seed = a.seed;
    const bool json = a.json;
    rg_status s;
    rg_model m;
    if ((s = rg_model_build(spec, NULL, &m))) return cli_fail(cmd, s);
    rg_model_free(&m);
    rg_set_threads((int)a.threads);
    rg_dataset *d = NULL;
    if ((s = rg_dataset_open(data, NULL, &d, NULL))) return cli_fail(cmd, s);
    int code = 0;
    rg_monitor *mon = NULL;
    int *idx = NULL;
    if ((s = rg_model_build(spec, &(rg_model_opts){.c = d->c, .h = d->h, .w = d->w, .classes = d->classes, .seed = (uint64_t)seed}, &m))) {
        code = cli_fail(cmd, s);
        goto done;
    }
    if (m.loss == RG_NONE) {
        cli_error(cmd, "model '%s' has no classifier (top=0): diagnose needs top=1", spec);
        code = EXIT_USAGE;
        goto done;
    }
    if (batch > d->n) batch = d->n;
    if ((s = rg_graph_compile(m.graph, (int)batch)) || !(mon = rg_monitor_create(m.graph))) {
        code = cli_fail(cmd, s ? s : RG_ERR_MEMORY);
        goto done;
    }
    idx = malloc((size_t)d->n * sizeof *idx);
    if (!idx) {
        cli_error(cmd, "out of memory");
        code = EXIT_RUNTIME;
        goto done;
    }
    for (int i = 0; i < d->n; i++) idx[i] = i;
    rg_rng rng;
    rg_rng_seed(&rng, (uint64_t)seed);
    rg_rng_shuffle(&rng, idx, d->n);
    rg_dataset_batch(d, idx, (int)batch, rg_graph_input_buffer(m.graph, m.input), rg_graph_labels(m.graph));
    rg_monitor_enable(mon, 1);
    rg_graph_forward(m.graph, (int)batch, 1);
    rg_graph_backward(m.graph, m.loss);
    rg_monitor_judge(mon);

    const int n = rg_monitor_layer_count(mon);
    int counts[RG_VERDICT_COUNT] = {0};
    bool sig_tanh = false, relu = false;
    for (int i = 0; i < n; i++) {
        const rg_layer_health *h = rg_monitor_layer(mon, i);
        counts[h->verdict]++;
        sig_tanh |= !strcmp(h->act, "sigmoid") || !strcmp(h->act, "tanh");
        relu |= !strcmp(h->act, "relu");
    }
    const double first = n ? rg_monitor_layer(mon, 0)->grad_norm : NAN;
    const double last = n ? rg_monitor_layer(mon, n - 1)->grad_norm : NAN;
    if (json) {
        printf("{\"model\":\"%s\",\"batch\":%ld,", spec, batch);
        cli_json_num(stdout, "first_to_last_grad_ratio", first / last, false);
        printf("\"layers\":[");
        for (int i = 0; i < n; i++) {
            const rg_layer_health *h = rg_monitor_layer(mon, i);
            printf("%s{\"layer\":\"%s\",\"act\":\"%s\",", i ? "," : "", h->name, h->act);
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
            printf("\"nonfinite\":%ld,\"verdict\":\"%s\",\"evidence\":\"%s\"}", h->nonfinite,
                   rg_verdict_name(h->verdict), h->evidence);
        }
        printf("]}\n");
    } else {
        printf("%s on %s, batch %ld: first-to-last layer gradient norm ratio %.3g\n\n", spec,
               data, batch, first / last);
        printf("%-26s %-8s %9s %9s %9s %8s %8s %8s  %-10s %s\n", "layer", "act", "|dW|", "|dW|/|W|",
               "dz rms", "gain", "pre std", "sat/dead", "verdict", "evidence");
        for (int i = 0; i < n; i++) {
            const rg_layer_health *h = rg_monitor_layer(mon, i);
            const double sd = isfinite(h->saturated) ? h->saturated : h->dead;
            printf("%-26s %-8s %9.2e %9.2e %9.2e %8.3f %8.3f %8.2f  %-10s %s\n", h->name, h->act,
                   h->grad_norm, h->grad_ratio, h->grad_rms, h->backward_gain, h->pre_std, sd,
                   rg_verdict_name(h->verdict), h->verdict == RG_HEALTHY ? "" : h->evidence);
        }
        const int bad = n - counts[RG_HEALTHY];
        printf("\n%d of %d layers unhealthy", bad, n);
        for (int v = 1; v < RG_VERDICT_COUNT; v++)
            if (counts[v]) printf(", %d %s", counts[v], rg_verdict_name((rg_verdict)v));
        printf(".\n");
        if (bad) {
            printf("Remedies to try:\n");
            if (counts[RG_VANISHING] || counts[RG_SATURATED]) {
                if (sig_tanh) printf("  - relu with He init (act=relu,init=he) instead of sigmoid/tanh\n");
                printf("  - batch norm (bn=1 for mlp) or residual connections (residual=1, resnet*)\n");
                printf("  - GRA: regrad train --repair auto (the default) re-conditions these layers\n");
            }
            if (counts[RG_EXPLODING] || counts[RG_NONFINITE])
                printf("  - a lower --lr, or GRA (--repair auto), which scales exploding gradients back\n");
            if (counts[RG_DEAD])
                printf("  - leaky_relu, He init, or a lower --lr to revive dead relu units%s\n",
                       relu ? "" : "");
        }
    }
done:
    free(idx);
    rg_monitor_free(mon);
    rg_model_free(&m);
    rg_dataset_free(d);
    return code;
}

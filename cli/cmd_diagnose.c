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

static const char *const diagnose_help =
    "Usage: regrad diagnose --model SPEC [--data SPEC] [--batch N] [--seed N] [--json]\n"
    "Run one batch forward and backward and report each layer's gradient health:\n"
    "gradient and weight norms, backward gain, activation spread, saturation, dead units,\n"
    "a verdict (healthy, vanishing, exploding, saturated, dead, non-finite) with its\n"
    "evidence, and suggested remedies.\n"
    "\n"
    "  --model SPEC   model spec (default mlp)\n"
    "  --data SPEC    dataset (default fashion-mnist); see 'regrad train --help'\n"
    "  --batch N      probe batch size (default 256)\n"
    "  --seed N       initialisation and sample seed (default 42)\n"
    "  --threads N    threads (default: all cores)\n"
    "  --json         one JSON object instead of the table\n"
    "  -h, --help     show this help\n";

enum { OPT_MODEL = 256, OPT_DATA, OPT_BATCH, OPT_SEED, OPT_THREADS, OPT_JSON };

static const struct option diagnose_opts[] = {
    {"model", required_argument, 0, OPT_MODEL}, {"data", required_argument, 0, OPT_DATA},
    {"batch", required_argument, 0, OPT_BATCH}, {"seed", required_argument, 0, OPT_SEED},
    {"threads", required_argument, 0, OPT_THREADS}, {"json", no_argument, 0, OPT_JSON},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
};


int cmd_diagnose(int argc, char **argv) {
    const char *cmd = "diagnose", *spec = "mlp", *data = "fashion-mnist";
    long batch = 256, seed = 42, threads = 0;
    bool json = false;
    int c;
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", diagnose_opts)) != -1) {
        bool ok = true;
        switch (c) {
        case 'h': fputs(diagnose_help, stdout); return 0;
        case OPT_MODEL: spec = optarg; break;
        case OPT_DATA: data = optarg; break;
        case OPT_BATCH: ok = cli_int(cmd, "batch", optarg, 2, 65536, &batch); break;
        case OPT_SEED: ok = cli_int(cmd, "seed", optarg, 0, 0x7fffffffffffffffL, &seed); break;
        case OPT_THREADS: ok = cli_int(cmd, "threads", optarg, 0, 1024, &threads); break;
        case OPT_JSON: json = true; break;
        default: return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) {
        cli_error(cmd, "unexpected argument '%s'; see 'regrad diagnose --help'", argv[optind]);
        return EXIT_USAGE;
    }
    rg_status s;
    rg_model m;
    if ((s = rg_model_build(spec, NULL, &m))) return cli_fail(cmd, s);
    rg_model_free(&m);
    rg_set_threads((int)threads);
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

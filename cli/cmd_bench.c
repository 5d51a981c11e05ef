/*
 * cmd_bench.c — `regrad bench`: times training steps of any model on synthetic data and
 * shows where the time goes: images/s, peak memory, time per op kind, the FLOP rate the
 * convolution and dense layers reach, and the machine's own GEMM rate for comparison.
 * With --monitor, every other timed step is watched by the health monitor (statistics,
 * verdicts, update ratio): watched and plain steps alternate in one process, so the
 * monitor's cost is measured against steps taken moments apart, and compared by their
 * median times, which a step slowed by something else on the machine does not move.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char *const bench_help =
    "Usage: regrad bench --model SPEC [options]\n"
    "Time training steps (forward, backward, optimizer) on random data and break the time\n"
    "down by op.\n"
    "\n"
    "  --model SPEC     model spec (default cnn)\n"
    "  --input CxHxW    per-sample input shape (default: the model's)\n"
    "  --classes N      classifier outputs (default: the model's)\n"
    "  --batch N        samples per step (default 128)\n"
    "  --steps N        timed steps (default 10), after --warmup N untimed ones (default 2)\n"
    "  --optimizer NAME optimizer (default adam)\n"
    "  --threads N      threads (default: all cores)\n"
    "  --layers         also list every layer's time\n"
    "  --monitor        watch every other step with the health monitor and report what a\n"
    "                   watched step costs over a plain one, by their median times\n"
    "                   (= --monitor-every 1 in train)\n"
    "  --json           one JSON object instead of the tables\n"
    "  -h, --help       show this help\n";

enum { OPT_MODEL = 256, OPT_INPUT, OPT_CLASSES, OPT_BATCH, OPT_STEPS, OPT_WARMUP, OPT_OPTIM,
       OPT_THREADS, OPT_JSON, OPT_LAYERS, OPT_MONITOR };

static const struct option bench_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},   {"input", required_argument, 0, OPT_INPUT},
    {"classes", required_argument, 0, OPT_CLASSES}, {"batch", required_argument, 0, OPT_BATCH},
    {"steps", required_argument, 0, OPT_STEPS},   {"warmup", required_argument, 0, OPT_WARMUP},
    {"optimizer", required_argument, 0, OPT_OPTIM}, {"threads", required_argument, 0, OPT_THREADS},
    {"json", no_argument, 0, OPT_JSON},           {"layers", no_argument, 0, OPT_LAYERS},
    {"monitor", no_argument, 0, OPT_MONITOR},     {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

typedef struct op_total {
    const char *op;
    int count;
    double fwd, bwd, flops;
} op_total;

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (sorted in place); NaN for none. */
static double median(double *v, long n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench", *spec = "cnn", *optim_name = "adam";
    int c_in = 0, h = 0, w = 0;
    long classes = 0, batch = 128, steps = 10, warmup = 2, threads = 0;
    bool json = false, layers = false, monitor = false;
    int c;
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", bench_opts)) != -1) {
        bool ok = true;
        switch (c) {
        case 'h': fputs(bench_help, stdout); return 0;
        case OPT_MODEL: spec = optarg; break;
        case OPT_INPUT:
            if (!cli_shape(cmd, "input", optarg, &c_in, &h, &w)) return EXIT_USAGE;
            break;
        case OPT_CLASSES: ok = cli_int(cmd, "classes", optarg, 2, 1 << 20, &classes); break;
        case OPT_BATCH: ok = cli_int(cmd, "batch", optarg, 1, 65536, &batch); break;
        case OPT_STEPS: ok = cli_int(cmd, "steps", optarg, 1, 1000000, &steps); break;
        case OPT_WARMUP: ok = cli_int(cmd, "warmup", optarg, 0, 1000000, &warmup); break;
        case OPT_OPTIM: optim_name = optarg; break;
        case OPT_THREADS: ok = cli_int(cmd, "threads", optarg, 0, 1024, &threads); break;
        case OPT_JSON: json = true; break;
        case OPT_LAYERS: layers = true; break;
        case OPT_MONITOR: monitor = true; break;
        default: return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) {
        cli_error(cmd, "unexpected argument '%s'; see 'regrad bench --help'", argv[optind]);
        return EXIT_USAGE;
    }
    rg_optim_kind kind;
    rg_status s;
    if ((s = rg_optim_parse(optim_name, &kind))) return cli_fail(cmd, s);
    rg_set_threads((int)threads);
    rg_model m;
    if ((s = rg_model_build(spec, &(rg_model_opts){.c = c_in, .h = h, .w = w, .classes = (int)classes, .seed = 1}, &m)))
        return cli_fail(cmd, s);
    if (m.loss == RG_NONE) {
        rg_model_free(&m);
        cli_error(cmd, "model '%s' has no classifier (top=0): bench needs top=1", spec);
        return EXIT_USAGE;
    }
    rg_graph *g = m.graph;
    if ((s = rg_graph_compile(g, (int)batch))) {
        rg_model_free(&m);
        return cli_fail(cmd, s);
    }
    rg_optim_config oc = rg_optim_defaults(kind);
    rg_optim *opt = rg_optim_create(&oc, rg_graph_param_floats(g));
    const size_t sample = rg_node_size(g, m.input);
    const int k = (int)rg_node_size(g, m.logits);
    rg_rng rng;
    rg_rng_seed(&rng, 7);
    float *x = rg_graph_input_buffer(g, m.input);
    for (size_t i = 0; i < sample * (size_t)batch; i++) x[i] = rg_rng_uniform(&rng);
    for (int b = 0; b < batch; b++) rg_graph_labels(g)[b] = (int)rg_rng_below(&rng, (uint32_t)k);

    rg_monitor *mon = NULL;
    if (monitor && !(mon = rg_monitor_create(g))) {
        rg_optim_free(opt);
        rg_model_free(&m);
        return cli_fail(cmd, RG_ERR_MEMORY);
    }
    double opt_seconds = 0, t0 = 0;
    double *step_times[2] = {NULL, NULL}; /* plain, watched: each step's seconds */
    long n_times[2] = {0, 0};
    if (mon && (!(step_times[0] = malloc((size_t)steps * sizeof(double))) ||
                !(step_times[1] = malloc((size_t)steps * sizeof(double)))))
        s = RG_ERR_MEMORY;
    for (long i = 0; !s && i < warmup + steps; i++) {
        if (i == warmup) {
            rg_graph_profile(g, 1);
            opt_seconds = 0;
            t0 = rg_seconds();
        }
        const bool watch = mon && i % 2 == 1;
        const double s0 = rg_seconds();
        if (mon) rg_monitor_enable(mon, watch);
        if (mon && (s = rg_monitor_track_update(mon, watch, opt, 1))) break; /* as in training */
        rg_graph_forward(g, (int)batch, 1);
        rg_graph_backward(g, m.loss);
        if (watch) rg_monitor_enable(mon, 0);
        double o0 = rg_seconds();
        rg_optim_step(opt, rg_graph_params(g), rg_graph_grads(g), oc.lr);
        opt_seconds += rg_seconds() - o0;
        if (watch) {
            rg_monitor_note_update(mon);
            rg_monitor_judge(mon);
        }
        if (i >= warmup && mon) step_times[watch][n_times[watch]++] = rg_seconds() - s0;
    }
    if (s) { /* no memory for the step times or the monitor's copy of the weights */
        free(step_times[0]);
        free(step_times[1]);
        rg_monitor_free(mon);
        rg_optim_free(opt);
        rg_model_free(&m);
        return cli_fail(cmd, s);
    }
    /* the watched steps' extra time over the plain ones' */
    const double watched_s = median(step_times[1], n_times[1]), plain_s = median(step_times[0], n_times[0]);
    const double monitor_cost = n_times[1] && n_times[0] ? watched_s / plain_s - 1 : NAN;
    free(step_times[0]);
    free(step_times[1]);
    const double total = rg_seconds() - t0;
    rg_graph_profile(g, 0); /* stop counting; totals stay readable until reset */
    const double ips = (double)batch * steps / total;

    /* Totals per op kind, in the order kinds first appear. */
    op_total ops[64];
    int n_ops = 0;
    double conv_s = 0, conv_f = 0, dense_s = 0, dense_f = 0, timed = 0;
    for (int i = 0; i < rg_graph_node_count(g); i++) {
        double f, b, flops;
        rg_node_profile(g, i, &f, &b, &flops);
        const char *op = rg_node_op_name(g, i);
        int j = 0;
        while (j < n_ops && strcmp(ops[j].op, op) != 0) j++;
        if (j == n_ops && n_ops < 64) ops[n_ops++] = (op_total){op, 0, 0, 0, 0};
        if (j < 64) ops[j].count++, ops[j].fwd += f, ops[j].bwd += b, ops[j].flops += flops;
        timed += f + b;
        /* forward + backward of dense and conv: 3x the forward FLOPs */
        if (!strcmp(op, "conv2d")) conv_s += f + b, conv_f += 3 * flops;
        if (!strcmp(op, "dense")) dense_s += f + b, dense_f += 3 * flops;
    }
    const double samples = (double)batch * steps;
    const double conv_rate = conv_s > 0 ? conv_f * samples / conv_s / 1e9 : 0;
    const double dense_rate = dense_s > 0 ? dense_f * samples / dense_s / 1e9 : 0;
    const double gemm_rate = rg_sgemm_gflops(1024, 3);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double rss_mib = ru.ru_maxrss / 1024.0;

    if (json) {
        printf("{\"model\":\"%s\",\"batch\":%ld,\"steps\":%ld,\"threads\":%d,"
               "\"images_per_sec\":%.2f,\"peak_rss_mib\":%.1f,\"conv_gflops\":%.2f,"
               "\"dense_gflops\":%.2f,\"sgemm_gflops\":%.2f,\"optimizer_seconds\":%.4f,",
               spec, batch, steps, rg_get_threads(), ips, rss_mib, conv_rate, dense_rate,
               gemm_rate, opt_seconds);
        if (isfinite(monitor_cost)) printf("\"monitor_step_cost\":%.4f,", monitor_cost);
        printf("\"ops\":[");
        for (int j = 0; j < n_ops; j++)
            printf("%s{\"op\":\"%s\",\"count\":%d,\"forward_seconds\":%.4f,\"backward_seconds\":%.4f}",
                   j ? "," : "", ops[j].op, ops[j].count, ops[j].fwd, ops[j].bwd);
        printf("]}\n");
    } else {
        printf("%s: batch %ld, %ld steps, %d threads: %.1f images/s, peak RSS %.0f MiB\n", spec,
               batch, steps, rg_get_threads(), ips, rss_mib);
        printf("\n%-22s %6s %12s %12s %8s\n", "op", "count", "forward ms", "backward ms", "share");
        for (int j = 0; j < n_ops; j++)
            printf("%-22s %6d %12.1f %12.1f %7.1f%%\n", ops[j].op, ops[j].count,
                   1e3 * ops[j].fwd / steps, 1e3 * ops[j].bwd / steps,
                   100 * (ops[j].fwd + ops[j].bwd) / total);
        printf("%-22s %6s %25.1f %7.1f%%\n", "optimizer step", "", 1e3 * opt_seconds / steps,
               100 * opt_seconds / total);
        printf("%-22s %6s %25.1f %7.1f%%\n", "other", "", 1e3 * (total - timed - opt_seconds) / steps,
               100 * (total - timed - opt_seconds) / total);
        if (layers) {
            printf("\n%-36s %12s %12s\n", "layer", "forward ms", "backward ms");
            for (int i = 0; i < rg_graph_node_count(g); i++) {
                double f, b, flops;
                rg_node_profile(g, i, &f, &b, &flops);
                printf("%-36s %12.2f %12.2f\n", rg_node_name(g, i), 1e3 * f / steps, 1e3 * b / steps);
            }
        }
        printf("\nconvolutions: %.1f GFLOP/s   dense: %.1f GFLOP/s   machine sgemm 1024^3: %.1f GFLOP/s\n"
               "(convolutions' FLOPs counted as direct products: Winograd's 3x3 layers do 2.25x "
               "fewer multiplications, so their rate may pass the machine's)\n",
               conv_rate, dense_rate, gemm_rate);
        if (isfinite(monitor_cost))
            printf("monitor: a watched step takes %.3f ms, a plain one %.3f ms (medians): %+.1f%% "
                   "watching every step, %+.1f%% every 10 (%ld watched, %ld plain steps)\n",
                   1e3 * watched_s, 1e3 * plain_s, 100 * monitor_cost, 10 * monitor_cost,
                   n_times[1], n_times[0]);
        else if (monitor)
            printf("monitor: no comparison from %ld timed step(s): give --steps 2 or more\n", steps);
    }
    rg_monitor_free(mon);
    rg_optim_free(opt);
    rg_model_free(&m);
    return 0;
}

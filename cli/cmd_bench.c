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

typedef struct bench_args {
    const char *model, *device, *precision;
    int input[3]; /* 0: the model's */
    long classes, batch, steps, warmup, threads;
    rg_optim_kind optimizer;
    bool json, layers, monitor;
} bench_args;

#define A bench_args
static const cli_option bench_options[] = {
    {.name = "model", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(A, model), .dflt = "cnn",
     .help = "model spec"},
    {.name = "input", .meta = "CxHxW", .type = CLI_PARSE, CLI_AT(A, input), .parse = cli_parse_shape,
     .help = "per-sample input shape (default: the model's)"},
    {.name = "classes", .meta = "N", .type = CLI_INT, CLI_AT(A, classes), .lo = 2, .hi = 1 << 20,
     .help = "classifier outputs (default: the model's)"},
    {.name = "batch", .meta = "N", .type = CLI_INT, CLI_AT(A, batch), .lo = 1, .hi = 65536,
     .dflt = "128", .help = "samples per step"},
    {.name = "steps", .meta = "N", .type = CLI_INT, CLI_AT(A, steps), .lo = 1, .hi = 1000000,
     .dflt = "10", .help = "timed steps"},
    {.name = "warmup", .meta = "N", .type = CLI_INT, CLI_AT(A, warmup), .lo = 0, .hi = 1000000,
     .dflt = "2", .help = "untimed steps before them"},
    {.name = "optimizer", .meta = "NAME", .type = CLI_PARSE, CLI_AT(A, optimizer),
     .parse = cli_parse_optimizer, .dflt = "adam", .choices = 1 + RG_NAMES_OPTIMIZERS, .help = "one of"},
    {.table = cli_threads_options, CLI_AT(A, threads)},
    {.table = cli_device_options, CLI_AT(A, device)},
    {.table = cli_precision_options, CLI_AT(A, precision)},
    {.name = "layers", .type = CLI_FLAG, CLI_AT(A, layers), .help = "also list every layer's time"},
    {.name = "monitor", .type = CLI_FLAG, CLI_AT(A, monitor),
     .help = "watch every other step with the health monitor and report what a watched step "
             "costs over a plain one, by their median times (= --monitor-every 1 in train)"},
    {.name = "json", .type = CLI_FLAG, CLI_AT(A, json), .help = "one JSON object instead of the tables"},
    CLI_END,
};
#undef A

static const cli_command bench_command = {
    .name = "bench", .usage = "--model SPEC [options]",
    .about = "Time training steps (forward, backward, optimizer) on random data and break the "
             "time down by op.",
    .options = bench_options};

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

/* What the timed steps measured. */
typedef struct bench_result {
    double total, opt_seconds, ips, watched_s, plain_s, monitor_cost;
    long n_watched, n_plain;
    op_total ops[64];
    int n_ops;
    double timed, conv_rate, dense_rate, gemm_rate, rss_mib;
    double device_mib; /* on a device: what the model holds there after its steps */
} bench_result;

/* The model compiled for the batch, with random inputs and labels. */
static int bench_build(const char *cmd, const bench_args *a, rg_model *m, size_t *device_before) {
    rg_status s;
    const rg_model_opts mo = {.c = a->input[0], .h = a->input[1], .w = a->input[2],
                              .classes = (int)a->classes, .seed = 1};
    if ((s = rg_model_build(a->model, &mo, m))) return cli_fail(cmd, s);
    if (m->loss == RG_NONE) {
        cli_error(cmd, "model '%s' has no classifier (top=0): bench needs top=1", a->model);
        return EXIT_USAGE;
    }
    rg_graph *g = m->graph;
    if ((s = cli_place(g, a->device, a->precision)))
        return cli_fail(cmd, s);
    if (cli_on_gpu(a->device) && (s = rg_device_memory_in_use(a->device, device_before)))
        return cli_fail(cmd, s);
    if ((s = rg_graph_compile(g, (int)a->batch))) return cli_fail(cmd, s);
    const size_t sample = rg_node_size(g, m->input);
    const int k = (int)rg_node_size(g, m->logits);
    rg_rng rng;
    rg_rng_seed(&rng, 7);
    float *x = rg_graph_input_buffer(g, m->input);
    for (size_t i = 0; i < sample * (size_t)a->batch; i++) x[i] = rg_rng_uniform(&rng);
    for (int b = 0; b < a->batch; b++) rg_graph_labels(g)[b] = (int)rg_rng_below(&rng, (uint32_t)k);
    return -1;
}

/* The warm-up and timed steps; with the monitor, watched and plain steps alternate and
 * each step's time is kept for their medians. */
static rg_status bench_steps(const bench_args *a, rg_model *m, rg_optim *opt, float lr,
                             rg_monitor *mon, bool profile, bench_result *r) {
    rg_graph *g = m->graph;
    rg_status s = RG_OK;
    double *times[2] = {NULL, NULL}; /* plain, watched: each step's seconds */
    long n[2] = {0, 0};
    double t0 = 0;
    if (mon && (!(times[0] = malloc((size_t)a->steps * sizeof(double))) ||
                !(times[1] = malloc((size_t)a->steps * sizeof(double)))))
        s = RG_ERR_MEMORY;
    for (long i = 0; !s && i < a->warmup + a->steps; i++) {
        if (i == a->warmup) {
            rg_graph_profile(g, profile);
            r->opt_seconds = 0;
            t0 = rg_seconds();
        }
        const bool watch = mon && i % 2 == 1;
        const double s0 = rg_seconds();
        if (mon) rg_monitor_enable(mon, watch);
        if (mon && (s = rg_monitor_track_update(mon, watch, opt, 1))) break; /* as in training */
        if ((s = rg_graph_forward(g, (int)a->batch, 1)) || (s = rg_graph_backward(g, m->loss))) break;
        if (watch) rg_monitor_enable(mon, 0);
        const double o0 = rg_seconds();
        rg_optim_step(opt, rg_graph_params(g), rg_graph_grads(g), lr);
        r->opt_seconds += rg_seconds() - o0;
        if (watch) {
            rg_monitor_note_update(mon);
            rg_monitor_judge(mon);
        }
        if (mon && (s = rg_graph_finish(g))) break; /* on a device: the step's kernels done */
        if (i >= a->warmup && mon) times[watch][n[watch]++] = rg_seconds() - s0;
    }
    if (!s) s = rg_graph_finish(g); /* on a device: its queued work done before the clock stops */
    if (!s) { /* the watched steps' extra time over the plain ones' */
        r->watched_s = median(times[1], n[1]), r->plain_s = median(times[0], n[0]);
        r->monitor_cost = n[1] && n[0] ? r->watched_s / r->plain_s - 1 : NAN;
        r->n_watched = n[1], r->n_plain = n[0];
        r->total = rg_seconds() - t0;
        r->ips = (double)a->batch * a->steps / r->total;
    }
    rg_graph_profile(g, 0); /* stop counting; totals stay readable until reset */
    free(times[0]);
    free(times[1]);
    return s;
}

/* Totals per op kind, in the order kinds first appear, and the FLOP rates. */
static void bench_totals(const bench_args *a, const rg_graph *g, bench_result *r) {
    double conv_s = 0, conv_f = 0, dense_s = 0, dense_f = 0;
    for (int i = 0; i < rg_graph_node_count(g); i++) {
        double f, b, flops;
        rg_node_profile(g, i, &f, &b, &flops);
        const char *op = rg_node_op_name(g, i);
        int j = 0;
        while (j < r->n_ops && strcmp(r->ops[j].op, op) != 0) j++;
        if (j == r->n_ops && r->n_ops < 64) r->ops[r->n_ops++] = (op_total){op, 0, 0, 0, 0};
        if (j < 64) r->ops[j].count++, r->ops[j].fwd += f, r->ops[j].bwd += b, r->ops[j].flops += flops;
        r->timed += f + b;
        /* forward + backward of dense and conv: 3x the forward FLOPs */
        if (!strcmp(op, "conv2d")) conv_s += f + b, conv_f += 3 * flops;
        if (!strcmp(op, "dense")) dense_s += f + b, dense_f += 3 * flops;
    }
    const double samples = (double)a->batch * a->steps;
    r->conv_rate = conv_s > 0 ? conv_f * samples / conv_s / 1e9 : 0;
    r->dense_rate = dense_s > 0 ? dense_f * samples / dense_s / 1e9 : 0;
    r->gemm_rate = rg_sgemm_gflops(1024, 3);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->rss_mib = ru.ru_maxrss / 1024.0;
}

static void bench_print_json(const bench_args *a, const bench_result *r) {
    printf("{\"model\":");
    cli_json_str(stdout, a->model);
    printf(",\"batch\":%ld,\"steps\":%ld,\"threads\":%d,\"images_per_sec\":%.2f,"
           "\"peak_rss_mib\":%.1f,\"conv_gflops\":%.2f,\"dense_gflops\":%.2f,"
           "\"sgemm_gflops\":%.2f,\"optimizer_seconds\":%.4f,", a->batch, a->steps,
           rg_get_threads(), r->ips, r->rss_mib, r->conv_rate, r->dense_rate, r->gemm_rate,
           r->opt_seconds);
    if (isfinite(r->monitor_cost)) printf("\"monitor_step_cost\":%.4f,", r->monitor_cost);
    if (cli_on_gpu(a->device)) printf("\"device_mib\":%.1f,", r->device_mib);
    printf("\"ops\":[");
    for (int j = 0; j < r->n_ops; j++)
        printf("%s{\"op\":\"%s\",\"count\":%d,\"forward_seconds\":%.4f,\"backward_seconds\":%.4f}",
               j ? "," : "", r->ops[j].op, r->ops[j].count, r->ops[j].fwd, r->ops[j].bwd);
    printf("]}\n");
}

/* On a device: the images/s and the memory the model holds there, and the passes run as
 * CUDA graphs. */
static void bench_print_device_line(const bench_args *a, const rg_graph *g, const bench_result *r) {
    printf("%s: batch %ld, %ld steps on %s, %s: %.1f images/s, device memory %.0f MiB\n", a->model, a->batch,
           a->steps, a->device, a->precision ? a->precision : "fp32", r->ips, r->device_mib);
    const char *broken;
    const long replays = rg_graph_replays(g, &broken);
    if (replays || broken)
        printf("CUDA graphs (REGRAD_GRAPHS=1): %ld passes replayed%s%s\n", replays,
               broken ? "; a pass ran uncaptured: " : "", broken ? broken : "");
}

/* What a watched step costs over a plain one, when the monitor was asked for. */
static void bench_print_monitor(const bench_args *a, const bench_result *r) {
    if (isfinite(r->monitor_cost))
        printf("monitor: a watched step takes %.3f ms, a plain one %.3f ms (medians): %+.1f%% "
               "watching every step, %+.1f%% every 10 (%ld watched, %ld plain steps)\n",
               1e3 * r->watched_s, 1e3 * r->plain_s, 100 * r->monitor_cost, 10 * r->monitor_cost,
               r->n_watched, r->n_plain);
    else if (a->monitor)
        printf("monitor: no comparison from %ld timed step(s): give --steps 2 or more\n", a->steps);
}

static void bench_print_table(const bench_args *a, const rg_graph *g, const bench_result *r) {
    const long steps = a->steps;
    const bool on_device = cli_on_gpu(a->device);
    if (on_device) {
        bench_print_device_line(a, g, r);
        printf("(op times from as many steps again, each op's kernels waited for)\n");
    } else
        printf("%s: batch %ld, %ld steps, %d threads: %.1f images/s, peak RSS %.0f MiB\n", a->model,
               a->batch, steps, rg_get_threads(), r->ips, r->rss_mib);
    printf("\n%-22s %6s %12s %12s %8s\n", "op", "count", "forward ms", "backward ms", "share");
    for (int j = 0; j < r->n_ops; j++)
        printf("%-22s %6d %12.1f %12.1f %7.1f%%\n", r->ops[j].op, r->ops[j].count,
               1e3 * r->ops[j].fwd / steps, 1e3 * r->ops[j].bwd / steps,
               100 * (r->ops[j].fwd + r->ops[j].bwd) / r->total);
    printf("%-22s %6s %25.1f %7.1f%%\n", "optimizer step", "", 1e3 * r->opt_seconds / steps,
           100 * r->opt_seconds / r->total);
    const double other = r->total - r->timed - r->opt_seconds;
    printf("%-22s %6s %25.1f %7.1f%%\n", "other", "", 1e3 * other / steps, 100 * other / r->total);
    if (a->layers) {
        printf("\n%-36s %12s %12s\n", "layer", "forward ms", "backward ms");
        for (int i = 0; i < rg_graph_node_count(g); i++) {
            double f, b;
            rg_node_profile(g, i, &f, &b, NULL);
            printf("%-36s %12.2f %12.2f\n", rg_node_name(g, i), 1e3 * f / steps, 1e3 * b / steps);
        }
    }
    if (on_device)
        printf("\nconvolutions: %.1f GFLOP/s   dense: %.1f GFLOP/s\n", r->conv_rate, r->dense_rate);
    else
        printf("\nconvolutions: %.1f GFLOP/s   dense: %.1f GFLOP/s   machine sgemm 1024^3: %.1f GFLOP/s\n"
               "(convolutions' FLOPs counted as direct products: Winograd's 3x3 layers do 2.25x "
               "fewer multiplications, so their rate may pass the machine's)\n",
               r->conv_rate, r->dense_rate, r->gemm_rate);
    bench_print_monitor(a, r);
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    bench_args a = {0};
    cli_defaults(&bench_command, &a);
    int r = cli_parse(&bench_command, argc, argv, &a, NULL);
    if (r >= 0) return r;
    rg_set_threads((int)a.threads);
    if ((r = cli_device(cmd, a.device)) >= 0) return r;
    const bool on_device = cli_on_gpu(a.device);
    rg_model m = {0};
    size_t device_before = 0, device_after = 0;
    if ((r = bench_build(cmd, &a, &m, &device_before)) >= 0) {
        rg_model_free(&m);
        return r;
    }
    const rg_optim_config oc = rg_optim_defaults(a.optimizer);
    rg_optim *opt = rg_optim_create(&oc, rg_graph_param_floats(m.graph));
    if (opt && (r = rg_optim_place(opt, m.graph))) { /* the moments beside the weights */
        rg_optim_free(opt), rg_model_free(&m);
        return cli_fail(cmd, (rg_status)r);
    }
    rg_monitor *mon = a.monitor ? rg_monitor_create(m.graph) : NULL;
    bench_result res = {0};
    /* On a device the per-op clock waits for each op's kernels, which slows the step: the
     * images/s come from unprofiled steps, and --layers times as many again with the clock. */
    rg_status s = !opt || (a.monitor && !mon) ? RG_ERR_MEMORY
                                              : bench_steps(&a, &m, opt, oc.lr, mon, !on_device, &res);
    if (!s && on_device && a.layers) {
        bench_result profiled = {0}; /* its totals for the op table, the rest from the unprofiled steps */
        if (!(s = bench_steps(&a, &m, opt, oc.lr, NULL, true, &profiled)))
            res.total = profiled.total, res.opt_seconds = profiled.opt_seconds;
    }
    /* what the model holds on the device: its buffers, the optimizer's moments, the
     * libraries' scratch, all kept from the first steps on */
    if (!s && on_device && !(s = rg_device_memory_in_use(a.device, &device_after)))
        res.device_mib = ((double)device_after - (double)device_before) / (1 << 20);
    if (!s) {
        bench_totals(&a, m.graph, &res);
        if (a.json) bench_print_json(&a, &res);
        else if (on_device && !a.layers) {
            bench_print_device_line(&a, m.graph, &res);
            bench_print_monitor(&a, &res);
        } else bench_print_table(&a, m.graph, &res);
    }
    rg_monitor_free(mon);
    rg_optim_free(opt);
    rg_model_free(&m);
    return s ? cli_fail(cmd, s) : 0; /* no memory for the step times or the weights' copy */
}

/*
 * common.c — what every regrad subcommand shares: one-line errors, exit codes, strict
 * number parsing and "did you mean" suggestions for unknown options.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "regrad %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_exit_code(rg_status s) {
    return s == RG_OK ? 0 : s == RG_ERR_ARG ? EXIT_USAGE : EXIT_RUNTIME;
}

int cli_fail(const char *cmd, rg_status s) {
    cli_error(cmd, "%s", rg_last_error());
    return cli_exit_code(s);
}

bool cli_int(const char *cmd, const char *opt, const char *text, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < lo || v > hi) {
        cli_error(cmd, "--%s '%s' is not a whole number in %ld..%ld", opt, text, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *cmd, const char *opt, const char *text, double lo, double hi,
               bool lo_open, double *out) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v) || v < lo || (lo_open && v == lo) || v > hi) {
        cli_error(cmd, "--%s '%s' is not a number in %s%g, %g]", opt, text, lo_open ? "(" : "[",
                  lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_shape(const char *cmd, const char *opt, const char *text, int *c, int *h, int *w) {
    char tail;
    if (sscanf(text, "%dx%dx%d%c", c, h, w, &tail) != 3 || *c < 1 || *h < 1 || *w < 1 ||
        *c > 65536 || *h > 65536 || *w > 65536) {
        cli_error(cmd, "--%s '%s': write CxHxW with positive sizes, e.g. 3x224x224", opt, text);
        return false;
    }
    return true;
}

int cli_data_option(const char *cmd, int c, const char *arg, rg_data_options *o) {
    long v = 0;
    char tail;
    o->warn = cli_warn;
    switch (c) {
    case CLI_OPT_INPUT_SIZE:
        if (sscanf(arg, "%dx%d%c", &o->height, &o->width, &tail) != 2 || o->height < 1 ||
            o->width < 1 || o->height > 16384 || o->width > 16384) {
            cli_error(cmd, "--input-size '%s': write HxW with sizes in 1..16384, e.g. 224x224", arg);
            return -1;
        }
        return 1;
    case CLI_OPT_CHANNELS:
        if (!cli_int(cmd, "channels", arg, 1, 3, &v) || v == 2) {
            if (v == 2) cli_error(cmd, "--channels must be 1 (gray) or 3 (RGB)");
            return -1;
        }
        o->channels = (int)v;
        return 1;
    case CLI_OPT_PREPROCESS:
        if (rg_preprocess_parse(arg, &o->preprocess)) {
            cli_error(cmd, "%s", rg_last_error());
            return -1;
        }
        return 1;
    case CLI_OPT_STRICT: o->strict = true; return 1;
    case CLI_OPT_MAX_PIXELS:
        if (!cli_int(cmd, "max-pixels", arg, 1, 1L << 40, &v)) return -1;
        o->max_pixels = v;
        return 1;
    }
    return 0;
}

/* Whether a progress line is drawn in place on stderr right now: warnings clear it first
 * so the two never share a line. */
static bool progress_shown;

void cli_progress_line(bool shown) { progress_shown = shown; }

void cli_warn(void *user, const char *message) {
    flockfile(stderr);
    if (progress_shown) fputs("\r\033[K", stderr);
    fprintf(stderr, "regrad: warning: %s\n", message);
    funlockfile(stderr);
}

void cli_json_num(FILE *f, const char *key, double v, bool last) {
    if (isfinite(v)) fprintf(f, "\"%s\":%.6g%s", key, v, last ? "" : ",");
    else fprintf(f, "\"%s\":null%s", key, last ? "" : ",");
}

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            /* a swap of neighbours is one typo (--hlep is --help) */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < d[i][j])
                d[i][j] = d[i - 2][j - 2] + 1;
        }
    return d[la][lb];
}

void cli_bad_option(const char *cmd, char **argv, int optind_now, const struct option *opts) {
    const char *arg = argv[optind_now - 1];
    char name[64];
    snprintf(name, sizeof name, "%s", arg + (strncmp(arg, "--", 2) == 0 ? 2 : 1));
    char *eq = strchr(name, '=');
    if (eq) *eq = 0;
    for (const struct option *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) {
            cli_error(cmd, "option --%s needs a value; see 'regrad %s --help'", name, cmd);
            return;
        }
    const char *best = NULL;
    int best_d = 4;
    for (const struct option *o = opts; o->name; o++) {
        int dist = edit_distance(name, o->name);
        if (dist < best_d) best_d = dist, best = o->name;
    }
    if (best)
        cli_error(cmd, "unknown option '%s': did you mean --%s? See 'regrad %s --help'", arg,
                  best, cmd);
    else
        cli_error(cmd, "unknown option '%s'; see 'regrad %s --help'", arg, cmd);
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shorts,
               const struct option *opts) {
    opterr = 0;
    int c = getopt_long(argc, argv, shorts, opts, NULL);
    if (c == '?' || c == ':') {
        cli_bad_option(cmd, argv, optind, opts);
        return -2;
    }
    return c;
}

bool cli_pattern_add(const char *cmd, cli_patterns *p, const char *pattern, bool trainable) {
    if (p->n == CLI_MAX_PATTERNS) {
        cli_error(cmd, "at most %d --freeze/--trainable patterns", CLI_MAX_PATTERNS);
        return false;
    }
    p->pattern[p->n] = pattern;
    p->trainable[p->n++] = trainable;
    return true;
}

bool cli_patterns_apply(const char *cmd, const cli_patterns *p, rg_graph *g, const char *spec) {
    for (int i = 0; i < p->n; i++)
        if (rg_graph_set_trainable(g, p->pattern[i], p->trainable[i]) == 0) {
            cli_error(cmd, "--%s '%s' matches no layer with parameters; 'regrad summary --model "
                           "%s' lists the layer names", p->trainable[i] ? "trainable" : "freeze",
                      p->pattern[i], spec);
            return false;
        }
    return true;
}

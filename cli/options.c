/*
 * options.c — command-line options from one table per subcommand.  A row names an option,
 * its value's kind and range, its default (as text, parsed like a value), where it lands in
 * the command's options struct, and its help; from the table come getopt's list, the
 * parsing and range checks with one-line errors, --help, and "did you mean" for a typo.
 * Tables include tables (options several commands share), so an option is one row.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS 96
#define HELP_COLUMN 24
#define HELP_WIDTH 92

/* A row with the offset of the struct it writes into. */
typedef struct flat_row {
    const cli_option *row;
    size_t base;
} flat_row;

static int flatten(const cli_option *table, size_t base, flat_row *out, int n) {
    for (const cli_option *r = table; r->name || r->table; r++) {
        if (r->table) n = flatten(r->table, base + r->at, out, n);
        else if (n < MAX_ROWS) out[n++] = (flat_row){r, base};
    }
    return n;
}

static void *field_of(void *opts, const flat_row *f) { return (char *)opts + f->base + f->row->at; }

static bool parse_int(const char *cmd, const cli_option *r, const char *text, void *field) {
    char *end;
    errno = 0;
    const long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < (long)r->lo || v > (long)r->hi) {
        cli_error(cmd, "--%s '%s' is not a whole number in %ld..%ld", r->name, text, (long)r->lo,
                  (long)r->hi);
        return false;
    }
    if (r->size == sizeof(int)) *(int *)field = (int)v;
    else *(long *)field = v;
    return true;
}

static bool parse_real(const char *cmd, const cli_option *r, const char *text, void *field) {
    char *end;
    const double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v) || v < r->lo || (r->open_lo && v == r->lo) || v > r->hi) {
        cli_error(cmd, "--%s '%s' is not a number in %s%g, %g]", r->name, text,
                  r->open_lo ? "(" : "[", r->lo, r->hi);
        return false;
    }
    if (r->size == sizeof(float)) *(float *)field = (float)v;
    else *(double *)field = v;
    return true;
}

/* One value into its field; false after printing why. */
static bool set_value(const char *cmd, const flat_row *f, const char *text, void *opts) {
    const cli_option *r = f->row;
    void *field = field_of(opts, f);
    switch (r->type) {
    case CLI_FLAG: *(bool *)field = true; return true;
    case CLI_INT: return parse_int(cmd, r, text, field);
    case CLI_REAL: return parse_real(cmd, r, text, field);
    case CLI_TEXT: *(const char **)field = text; return true;
    case CLI_PARSE: return r->parse(cmd, r, text, field);
    }
    return false;
}

void cli_defaults(const cli_command *c, void *opts) {
    flat_row rows[MAX_ROWS];
    const int n = flatten(c->options, 0, rows, 0);
    for (int i = 0; i < n; i++)
        if (rows[i].row->dflt && !set_value(c->name, &rows[i], rows[i].row->dflt, opts))
            abort(); /* a default its own row refuses: a bug in the table */
}

/* Writes text from column `col` on, words wrapped at HELP_WIDTH, continuation lines
 * indented to `indent`; a newline in text starts a line. */
static void wrapped(FILE *f, const char *text, int col, int indent) {
    bool start = true; /* nothing written on this line yet */
    for (const char *p = text; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        if (*p == '\n') { /* a new line keeps the spaces it starts with */
            const int lead = (int)strspn(++p, " ");
            fprintf(f, "\n%*s", indent + lead, "");
            col = indent + lead, p += lead, start = true;
            continue;
        }
        const int word = (int)strcspn(p, " \n");
        if (!start && col + 1 + word > HELP_WIDTH) fprintf(f, "\n%*s", indent, ""), col = indent, start = true;
        if (!start) fputc(' ', f), col++;
        fwrite(p, 1, (size_t)word, f);
        col += word, p += word, start = false;
    }
}

void cli_help(const cli_command *c, FILE *f) {
    fprintf(f, "Usage: regrad %s %s\n", c->name, c->usage);
    wrapped(f, c->about, 0, 0);
    fputc('\n', f);
    flat_row rows[MAX_ROWS];
    const int n = flatten(c->options, 0, rows, 0);
    if (n && !rows[0].row->section) fputc('\n', f);
    for (int i = 0; i < n; i++) {
        const cli_option *r = rows[i].row;
        if (r->section) fprintf(f, "\n%s\n", r->section);
        char head[64];
        if (r->short_name)
            snprintf(head, sizeof head, "  -%c, --%s%s%s", r->short_name, r->name, r->meta ? " " : "",
                     r->meta ? r->meta : "");
        else
            snprintf(head, sizeof head, "  --%s%s%s", r->name, r->meta ? " " : "", r->meta ? r->meta : "");
        int col = fprintf(f, "%s", head);
        if (col >= HELP_COLUMN - 1) fprintf(f, "\n"), col = 0;
        fprintf(f, "%*s", HELP_COLUMN - col, "");
        char text[1024];
        int len = snprintf(text, sizeof text, "%s", r->help);
        if (r->choices) {
            char names[512];
            len += snprintf(text + len, sizeof text - (size_t)len, ": %s",
                            rg_names(r->choices - 1, names, sizeof names));
        }
        if (r->dflt && r->type != CLI_FLAG && !r->hide_default)
            snprintf(text + len, sizeof text - (size_t)len, " (default %s)", r->dflt);
        wrapped(f, text, HELP_COLUMN, HELP_COLUMN);
        fputc('\n', f);
    }
    fprintf(f, "%s  -h, --help%*sshow this help\n", n ? "\n" : "", HELP_COLUMN - 12, "");
}

/* The option closest to `name` by edit distance (a swap of neighbours is one typo), if
 * any is within 3. */
static int edit_distance(const char *a, const char *b) {
    const int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            const int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            const int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < d[i][j])
                d[i][j] = d[i - 2][j - 2] + 1;
        }
    return d[la][lb];
}

static void bad_option(const char *cmd, const char *arg, const struct option *opts) {
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
    int best_d = strlen(name) < 4 ? 2 : 4; /* a short typo is too short to guess from */
    for (const struct option *o = opts; o->name; o++) {
        const int dist = edit_distance(name, o->name);
        if (dist < best_d) best_d = dist, best = o->name;
    }
    if (best)
        cli_error(cmd, "unknown option '%s': did you mean --%s? See 'regrad %s --help'", arg, best, cmd);
    else
        cli_error(cmd, "unknown option '%s'; see 'regrad %s --help'", arg, cmd);
}

int cli_parse(const cli_command *c, int argc, char **argv, void *opts, int *first_arg) {
    flat_row rows[MAX_ROWS];
    const int n = flatten(c->options, 0, rows, 0);
    struct option longs[MAX_ROWS + 2];
    for (int i = 0; i < n; i++)
        longs[i] = (struct option){rows[i].row->name,
                                   rows[i].row->type == CLI_FLAG ? no_argument : required_argument,
                                   NULL, 256 + i};
    longs[n] = (struct option){"help", no_argument, NULL, 'h'};
    longs[n + 1] = (struct option){0};
    char shorts[2 * MAX_ROWS + 2] = "h";
    for (int i = 0, at = 1; i < n; i++)
        if (rows[i].row->short_name) {
            shorts[at++] = rows[i].row->short_name;
            if (rows[i].row->type != CLI_FLAG) shorts[at++] = ':';
            shorts[at] = 0;
        }
    optind = 1;
    opterr = 0;
    for (int k; (k = getopt_long(argc, argv, shorts, longs, NULL)) != -1;) {
        if (k == 'h') {
            cli_help(c, stdout);
            return 0;
        }
        for (int i = 0; i < n && k < 256; i++)
            if (rows[i].row->short_name == k) k = 256 + i;
        for (int i = 0; i < n && k == '?' && optopt; i++) /* a known option without its value */
            if (optopt == 256 + i || optopt == rows[i].row->short_name) {
                cli_error(c->name, "option --%s needs a value; see 'regrad %s --help'",
                          rows[i].row->name, c->name);
                return EXIT_USAGE;
            }
        if (k < 256) {
            bad_option(c->name, argv[optind - 1], longs);
            return EXIT_USAGE;
        }
        if (!set_value(c->name, &rows[k - 256], optarg, opts)) return EXIT_USAGE;
    }
    if (first_arg) {
        *first_arg = optind;
    } else if (optind < argc) {
        cli_error(c->name, "unexpected argument '%s'; see 'regrad %s --help'", argv[optind], c->name);
        return EXIT_USAGE;
    }
    return -1;
}

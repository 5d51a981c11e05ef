/*
 * report.c — the HTML report: one self-contained file (inline CSS and SVG, no scripts, no
 * network) drawn from a training run's metrics (JSON lines) or an experiment's results
 * (a JSON array), and `regrad report` to make one after the fact.
 *
 * A training report: loss and accuracy by epoch (training and validation); the gradient
 * flow as a heat map, layers by monitored steps, log10 of each layer's gradient norm, with
 * GRA's actions marked above the steps they happened at; each layer's gradient norm at the
 * first and the last snapshot; each layer's activation saturation (or dead units) at the
 * last; the Newton ratio of each monitored step; each layer's curvature before and after
 * training (top Gauss-Newton eigenvalue, input mean outlier); for a pruning sweep, accuracy against sparsity.  An experiment report: the
 * accuracy table and, per cell, a bar per remedy.
 * Colours: Okabe and Ito's palette for lines and bars, viridis for the heat map (both
 * readable with the common colour-vision deficiencies); every chart has axis labels and a
 * legend.  The output is well-formed XML as well as HTML (tests parse it).
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const palette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                      "#CC79A7", "#56B4E9", "#F0E442", "#000000"};

/* ---------------------------------------------------------------- small helpers */

static void esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* "Nice" axis ticks over [lo, hi]: steps of 1, 2 or 5 x 10^k, about n of them. */
static int ticks(double lo, double hi, int n, double *out) {
    if (!(hi > lo)) hi = lo + 1;
    double raw = (hi - lo) / n, mag = pow(10, floor(log10(raw))), step = mag;
    if (raw / mag > 5) step = 10 * mag;
    else if (raw / mag > 2) step = 5 * mag;
    else if (raw / mag > 1) step = 2 * mag;
    int k = 0;
    for (double t = ceil(lo / step) * step; t <= hi + 1e-9 * step && k < 16; t += step) out[k++] = t;
    return k;
}

static void num(char *buf, size_t len, double v) {
    if (v != 0 && (fabs(v) < 1e-3 || fabs(v) >= 1e5)) snprintf(buf, len, "%.1e", v);
    else snprintf(buf, len, "%.3g", v);
}

typedef struct series {
    const char *name;
    int n;
    const double *x, *y;
} series;

#define W 680
#define H 300
#define ML 64 /* margins: left, right, top, bottom */
#define MR 150
#define MT 36
#define MB 48

/* A line chart of up to 8 series; NaN points are skipped. */
static void line_chart(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                       const series *s, int ns) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++)
            if (isfinite(s[k].y[i])) {
                x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]);
                y0 = fmin(y0, s[k].y[i]), y1 = fmax(y1, s[k].y[i]);
            }
    if (!isfinite(x0)) return;
    if (x1 == x0) x0 -= 0.5, x1 += 0.5;
    if (y1 == y0) y0 -= 0.5, y1 += 0.5;
    const double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
    const double pw = W - ML - MR, ph = H - MT - MB;
#define PX(v) (ML + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (MT + (1 - ((v) - y0) / (y1 - y0)) * ph)
    fprintf(f, "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\"><title>", W, H, W, H);
    esc(f, title);
    fprintf(f, "</title><text x=\"%d\" y=\"20\" class=\"t\">", ML);
    esc(f, title);
    fprintf(f, "</text><rect x=\"%d\" y=\"%d\" width=\"%g\" height=\"%g\" class=\"frame\"/>", ML, MT, pw, ph);
    double t[16];
    char b[32];
    for (int i = 0, n = ticks(y0, y1, 5, t); i < n; i++) {
        num(b, sizeof b, t[i]);
        fprintf(f, "<line x1=\"%d\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                   "<text x=\"%d\" y=\"%.1f\" class=\"yl\">%s</text>", ML, ML + pw, PY(t[i]), PY(t[i]),
                ML - 6, PY(t[i]) + 4, b);
    }
    for (int i = 0, n = ticks(x0, x1, 6, t); i < n; i++) {
        num(b, sizeof b, t[i]);
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" class=\"xl\">%s</text>", PX(t[i]), MT + ph + 16, b);
    }
    fprintf(f, "<text x=\"%g\" y=\"%d\" class=\"al\">", ML + pw / 2, H - 8);
    esc(f, xlabel);
    fprintf(f, "</text><text transform=\"translate(14 %g) rotate(-90)\" class=\"al\">", MT + ph / 2);
    esc(f, ylabel);
    fprintf(f, "</text>");
    for (int k = 0; k < ns; k++) {
        const char *col = palette[k % 8];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col,
                k % 2 ? " stroke-dasharray=\"6 3\"" : "");
        for (int i = 0; i < s[k].n; i++)
            if (isfinite(s[k].y[i])) fprintf(f, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
        fprintf(f, "\"/>");
        for (int i = 0; i < s[k].n; i++)
            if (isfinite(s[k].y[i]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", PX(s[k].x[i]),
                        PY(s[k].y[i]), col);
        fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>"
                   "<text x=\"%g\" y=\"%d\" class=\"lg\">", ML + pw + 12, ML + pw + 34, MT + 12 + 18 * k,
                MT + 12 + 18 * k, col, k % 2 ? " stroke-dasharray=\"6 3\"" : "", ML + pw + 40,
                MT + 16 + 18 * k);
        esc(f, s[k].name);
        fprintf(f, "</text>");
    }
    fprintf(f, "</svg></figure>\n");
#undef PX
#undef PY
}

/* Viridis, sampled at 9 points and interpolated. */
static void viridis(double t, char *out) {
    static const int c[9][3] = {{68, 1, 84},   {71, 44, 122}, {59, 81, 139}, {44, 113, 142},
                                {33, 144, 141}, {39, 173, 129}, {92, 200, 99}, {170, 220, 50},
                                {253, 231, 37}};
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double p = t * 8;
    int i = (int)p < 8 ? (int)p : 7;
    double u = p - i;
    snprintf(out, 8, "#%02x%02x%02x", (int)(c[i][0] + u * (c[i + 1][0] - c[i][0])),
             (int)(c[i][1] + u * (c[i + 1][1] - c[i][1])), (int)(c[i][2] + u * (c[i + 1][2] - c[i][2])));
}

/* Horizontal bars, one row per label, up to two series side by side; log10 scale when
 * `logscale` (values <= 0 drawn empty).  Returns whether it drew one: not without a value
 * to draw. */
static bool bar_chart(FILE *f, const char *title, const char *xlabel, const char *const *labels,
                      int n, const series *s, int ns, bool logscale) {
    const int row = 14 * ns + 6, h = MT + MB + n * row, pw = W - 200 - MR - 10;
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < n; i++) {
            double v = s[k].y[i];
            if (logscale) v = v > 0 ? log10(v) : NAN;
            if (isfinite(v)) lo = fmin(lo, v), hi = fmax(hi, v);
        }
    if (!isfinite(lo)) return false;
    if (!logscale) lo = fmin(lo, 0);
    if (hi == lo) hi = lo + 1;
    fprintf(f, "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\"><title>", W, h, W, h);
    esc(f, title);
    fprintf(f, "</title><text x=\"200\" y=\"20\" class=\"t\">");
    esc(f, title);
    fprintf(f, "</text>");
    double t[16];
    char b[32];
    for (int i = 0, nt = ticks(lo, hi, 5, t); i < nt; i++) {
        const double x = 200 + (t[i] - lo) / (hi - lo) * pw;
        num(b, sizeof b, logscale ? pow(10, t[i]) : t[i]);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" class=\"grid\"/>"
                   "<text x=\"%.1f\" y=\"%d\" class=\"xl\">%s</text>", x, x, MT, h - MB, x, h - MB + 16, b);
    }
    for (int i = 0; i < n; i++) {
        const int y = MT + i * row;
        fprintf(f, "<text x=\"194\" y=\"%d\" class=\"yl\">", y + row / 2 + 4);
        esc(f, labels[i]);
        fprintf(f, "</text>");
        for (int k = 0; k < ns; k++) {
            double v = s[k].y[i];
            if (logscale) v = v > 0 ? log10(v) : NAN;
            if (!isfinite(v)) continue;
            const double w = (v - lo) / (hi - lo) * pw;
            fprintf(f, "<rect x=\"200\" y=\"%d\" width=\"%.1f\" height=\"12\" fill=\"%s\"><title>", y + 3 + 14 * k,
                    w > 0.5 ? w : 0.5, palette[k % 8]);
            esc(f, labels[i]);
            fprintf(f, ": %g</title></rect>", s[k].y[i]);
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"al\">", 200 + pw / 2, h - 8);
    esc(f, xlabel);
    fprintf(f, "</text>");
    for (int k = 0; k < ns; k++) {
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"12\" fill=\"%s\"/><text x=\"%d\" "
                   "y=\"%d\" class=\"lg\">", 200 + pw + 16, MT + 18 * k, palette[k % 8], 200 + pw + 36,
                MT + 10 + 18 * k);
        esc(f, s[k].name);
        fprintf(f, "</text>");
    }
    fprintf(f, "</svg></figure>\n");
    return true;
}

static void page_start(FILE *f, const char *title) {
    fprintf(f, "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\"><head>"
               "<meta charset=\"utf-8\"/><title>");
    esc(f, title);
    fprintf(f, "</title><style>"
               "body{font:15px/1.45 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#222}"
               "h1{font-size:22px}h2{font-size:18px;margin-top:28px}figure{margin:8px 0}"
               "svg{background:#fff;max-width:100%%;height:auto}"
               "svg text{font:12px system-ui,sans-serif;fill:#222}"
               ".t{font-weight:600;font-size:14px}.yl{text-anchor:end}.xl{text-anchor:middle}"
               ".al{text-anchor:middle;fill:#444}.grid{stroke:#e4e4e4}"
               ".frame{fill:none;stroke:#bbb}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
               "th{background:#f3f3f3}td.l,th.l{text-align:left}.note{color:#555}"
               "</style></head><body><h1>");
    esc(f, title);
    fprintf(f, "</h1>\n");
}

/* ---------------------------------------------------------------- training report */

#define MAX_LAYERS 256
#define MAX_SNAPS 400

typedef struct run_data {
    int epochs;
    double ep[1000], loss[1000], acc[1000], vloss[1000], vacc[1000];
    int layers;
    char *names[MAX_LAYERS];
    int snaps, stride, seen; /* snapshots kept: every stride-th of those seen */
    double step[MAX_SNAPS];
    double gnorm[MAX_SNAPS][MAX_LAYERS], sat[MAX_SNAPS][MAX_LAYERS];
    double newton[MAX_SNAPS]; /* log10 of the step's Newton ratio, -g.u / u^T G u */
    int repairs;
    double repair_step[2000];
    double test_acc;
    /* curvature events (train --report): before [0] and after [1] training */
    int curv_layers[2];
    char *curv_names[MAX_LAYERS];
    double gn_top[2][MAX_LAYERS], mean_outlier[2][MAX_LAYERS];
    char title[256]; /* from the start event: the model and the data */
    int sweeps;      /* regrad prune --sweep: sparsity against test accuracy */
    double sw_sparsity[64], sw_acc[64];
} run_data;

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void read_event(run_data *r, const cJSON *e) {
    const char *ev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "event"));
    if (!ev) return;
    if (!strcmp(ev, "epoch") && r->epochs < 1000) {
        const int i = r->epochs++;
        r->ep[i] = jnum(e, "epoch"), r->loss[i] = jnum(e, "loss"), r->acc[i] = jnum(e, "acc");
        r->vloss[i] = jnum(e, "val_loss"), r->vacc[i] = jnum(e, "val_acc");
    } else if (!strcmp(ev, "repair") && r->repairs < 2000) {
        r->repair_step[r->repairs++] = jnum(e, "step");
    } else if (!strcmp(ev, "sweep") && r->sweeps < 64) {
        r->sw_sparsity[r->sweeps] = jnum(e, "sparsity");
        r->sw_acc[r->sweeps++] = jnum(e, "test_acc");
    } else if (!strcmp(ev, "start")) {
        const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "model"));
        const char *data = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "data"));
        snprintf(r->title, sizeof r->title, "%s on %s", model ? model : "?", data ? data : "?");
    } else if (!strcmp(ev, "curvature")) {
        const char *when = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "when"));
        const int w = when && !strcmp(when, "after");
        const cJSON *l;
        int i = 0;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(e, "layers")) {
            if (i >= MAX_LAYERS) break;
            if (!r->curv_names[i]) {
                const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "layer"));
                r->curv_names[i] = strdup(nm ? nm : "?");
            }
            r->gn_top[w][i] = jnum(l, "gn_top"), r->mean_outlier[w][i] = jnum(l, "mean_outlier");
            i++;
        }
        r->curv_layers[w] = i;
    } else if (!strcmp(ev, "end")) {
        r->test_acc = jnum(e, "test_acc");
    } else if (!strcmp(ev, "health")) {
        if (!r->stride) r->stride = 1;
        if (r->seen++ % r->stride) return;
        if (r->snaps == MAX_SNAPS) { /* full: keep every other one, and take half as many */
            for (int k = 0; k < MAX_SNAPS / 2; k++) {
                r->step[k] = r->step[2 * k], r->newton[k] = r->newton[2 * k];
                memcpy(r->gnorm[k], r->gnorm[2 * k], sizeof r->gnorm[k]);
                memcpy(r->sat[k], r->sat[2 * k], sizeof r->sat[k]);
            }
            r->snaps = MAX_SNAPS / 2;
            r->stride *= 2;
        }
        const cJSON *layers = cJSON_GetObjectItemCaseSensitive(e, "layers"), *l;
        const int k = r->snaps++;
        r->step[k] = jnum(e, "step");
        const double ratio = jnum(e, "newton_ratio");
        r->newton[k] = ratio > 0 ? log10(ratio) : NAN;
        int i = 0;
        cJSON_ArrayForEach(l, layers) {
            if (i >= MAX_LAYERS) break;
            if (i >= r->layers) {
                const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "layer"));
                r->names[i] = strdup(nm ? nm : "?");
                r->layers = i + 1;
            }
            r->gnorm[k][i] = jnum(l, "grad_norm");
            double s = jnum(l, "saturated"), d = jnum(l, "dead");
            r->sat[k][i] = isfinite(s) ? s : d;
            i++;
        }
    }
}

static void heatmap(FILE *f, const run_data *r) {
    const int cellh = r->layers > 40 ? 6 : 14, pw = W - ML - MR, h = MT + 28 + r->layers * cellh + MB;
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < r->snaps; k++)
        for (int i = 0; i < r->layers; i++)
            if (r->gnorm[k][i] > 0) lo = fmin(lo, log10(r->gnorm[k][i])), hi = fmax(hi, log10(r->gnorm[k][i]));
    if (!isfinite(lo)) return;
    if (hi == lo) hi = lo + 1;
    const int left = 130, hw = pw + ML - left, top = MT + 28;
    fprintf(f, "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\"><title>Gradient flow</title>"
               "<text x=\"%d\" y=\"20\" class=\"t\">Gradient flow: log10 of each layer's gradient "
               "norm, by step</text>", W, h, W, h, left);
    const double cw = (double)hw / r->snaps;
    char col[8];
    for (int k = 0; k < r->snaps; k++)
        for (int i = 0; i < r->layers; i++) {
            const double g = r->gnorm[k][i];
            if (g > 0) viridis((log10(g) - lo) / (hi - lo), col);
            else snprintf(col, sizeof col, "#ffffff");
            fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\"/>",
                    left + k * cw, top + i * cellh, cw + 0.3, cellh, col);
        }
    for (int i = 0; i < r->layers; i++)
        if (cellh >= 12 || i % 5 == 0) {
            fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"yl\">", left - 6, top + i * cellh + cellh - 2);
            esc(f, r->names[i]);
            fprintf(f, "</text>");
        }
    /* steps along the bottom; GRA's actions as marks above the map */
    const double s0 = r->step[0], s1 = r->snaps > 1 ? r->step[r->snaps - 1] : s0 + 1;
    double t[16];
    char b[32];
    for (int i = 0, n = ticks(s0, s1, 6, t); i < n; i++) {
        num(b, sizeof b, t[i]);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"xl\">%s</text>",
                left + (t[i] - s0) / (s1 - s0 + 1e-12) * (hw - cw) + cw / 2, top + r->layers * cellh + 16, b);
    }
    for (int i = 0; i < r->repairs; i++) {
        const double x = left + (r->repair_step[i] - s0) / (s1 - s0 + 1e-12) * (hw - cw) + cw / 2;
        if (x < left || x > left + hw) continue;
        fprintf(f, "<path d=\"M%.1f %d l-4 -8 h8 z\" fill=\"#D55E00\"/>", x, top - 2);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"al\">training step (monitored every few steps; "
               "triangles: GRA actions)</text>", left + hw / 2, h - 8);
    /* the colour scale */
    const int lx = left + hw + 16, ly = top, lh = r->layers * cellh < 120 ? 120 : r->layers * cellh;
    for (int i = 0; i < 40; i++) {
        viridis(1 - i / 39.0, col);
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"14\" height=\"%.1f\" fill=\"%s\"/>", lx,
                ly + i * lh / 40.0, lh / 40.0 + 0.3, col);
    }
    char top_label[32], bottom_label[32];
    num(top_label, sizeof top_label, pow(10, hi));
    num(bottom_label, sizeof bottom_label, pow(10, lo));
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"lg\">%s</text><text x=\"%d\" y=\"%d\" "
               "class=\"lg\">%s</text></svg></figure>\n", lx + 18, ly + 10, top_label, lx + 18,
            ly + lh, bottom_label);
}

static int train_report(FILE *f, run_data *r, const char *title) {
    page_start(f, title);
    if (isfinite(r->test_acc)) fprintf(f, "<p>Test accuracy: <b>%.4f</b>.</p>\n", r->test_acc);
    if (r->epochs) {
        fprintf(f, "<h2>Loss and accuracy</h2>\n");
        series ls[2] = {{"training", r->epochs, r->ep, r->loss}, {"validation", r->epochs, r->ep, r->vloss}};
        line_chart(f, "Loss by epoch", "epoch", "loss (cross-entropy)", ls, 2);
        series as[2] = {{"training", r->epochs, r->ep, r->acc}, {"validation", r->epochs, r->ep, r->vacc}};
        line_chart(f, "Accuracy by epoch", "epoch", "accuracy", as, 2);
    }
    if (r->sweeps) {
        fprintf(f, "<h2>Pruning</h2>\n");
        series sw = {"test accuracy", r->sweeps, r->sw_sparsity, r->sw_acc};
        line_chart(f, "Accuracy against sparsity (regrad prune --sweep)", "fraction of weights pruned",
                   "test accuracy", &sw, 1);
    }
    if (r->snaps && r->layers) {
        fprintf(f, "<h2>Gradient flow</h2>\n<p class=\"note\">Each column is one monitored step; "
                   "each row one layer, input at the top. Dark: a small gradient; a column "
                   "that darkens towards the top is a vanishing gradient. %d GRA action(s).</p>\n",
                r->repairs);
        heatmap(f, r);
        const char *labels[MAX_LAYERS];
        double first[MAX_LAYERS], last[MAX_LAYERS], sat[MAX_LAYERS];
        for (int i = 0; i < r->layers; i++) {
            labels[i] = r->names[i];
            first[i] = r->gnorm[0][i], last[i] = r->gnorm[r->snaps - 1][i];
            sat[i] = r->sat[r->snaps - 1][i];
        }
        series gs[2] = {{"first snapshot", r->layers, NULL, first}, {"last snapshot", r->layers, NULL, last}};
        bar_chart(f, "Gradient norm per layer", "gradient norm (log scale)", labels, r->layers, gs, 2, true);
        series ss = {"last snapshot", r->layers, NULL, sat};
        bar_chart(f, "Saturated or dead units per layer",
                  "fraction of units", labels, r->layers, &ss, 1, false);
    }
    int nn = 0;
    for (int k = 0; k < r->snaps; k++) nn += isfinite(r->newton[k]);
    if (nn) {
        fprintf(f, "<h2>Curvature along the steps</h2>\n<p class=\"note\">At each monitored step, "
                   "on its batch: the fraction of the update that minimises the loss's quadratic "
                   "model along it, -g.u / u'Gu (G the Gauss-Newton matrix). 0 on this scale: the "
                   "step was the Newton step; below 0 it overshot; far above 0 it crept.</p>\n");
        series ns = {"Newton ratio", r->snaps, r->step, r->newton};
        line_chart(f, "Newton ratio of each monitored step", "step", "log10 of the Newton ratio", &ns, 1);
    }
    const int nc = r->curv_layers[0] > r->curv_layers[1] ? r->curv_layers[0] : r->curv_layers[1];
    if (nc) {
        fprintf(f, "<h2>Curvature</h2>\n<p class=\"note\">Measured on the first training samples "
                   "before and after training. The top eigenvalue of each layer's Gauss-Newton "
                   "block says how sharply the loss bends along that layer's weights; the input "
                   "mean outlier, how far the mean of the layer's input stands out of its second "
                   "moment (above 100: ill-conditioned).</p>\n");
        const char *labels[MAX_LAYERS];
        for (int i = 0; i < nc; i++) labels[i] = r->curv_names[i];
        for (int w = 0; w < 2; w++) /* a missing event draws as no bars */
            for (int i = r->curv_layers[w]; i < nc; i++) r->gn_top[w][i] = r->mean_outlier[w][i] = NAN;
        series cs[2] = {{"before training", nc, NULL, r->gn_top[0]}, {"after training", nc, NULL, r->gn_top[1]}};
        if (!bar_chart(f, "Top Gauss-Newton eigenvalue per layer", "eigenvalue (log scale)", labels, nc, cs, 2, true))
            fprintf(f, "<p class=\"note\">No Gauss-Newton eigenvalues in these metrics: none is measured for "
                       "a frozen layer, nor in a bf16 run (its curvature products need fp32 or "
                       "tf32).</p>\n");
        series ms[2] = {{"before training", nc, NULL, r->mean_outlier[0]},
                        {"after training", nc, NULL, r->mean_outlier[1]}};
        bar_chart(f, "Input mean outlier per layer", "|E[x]|^2 / mean covariance eigenvalue (log scale)",
                  labels, nc, ms, 2, true);
    }
    if (!r->snaps && !r->sweeps) {
        fprintf(f, "<p class=\"note\">No gradient snapshots in these metrics: train with "
                   "--monitor-every N (--report turns it on) to see the gradient flow.</p>\n");
    }
    fprintf(f, "</body></html>\n");
    return 0;
}

/* ---------------------------------------------------------------- experiment report */

static int experiment_report(FILE *f, const cJSON *runs, const char *title) {
    page_start(f, title);
    /* cells (depth, act, optimizer) and remedies in order of appearance; mean accuracy */
    char cells[64][64], rem[16][32];
    int nc = 0, nr = 0;
    double sum[64][16] = {{0}};
    int cnt[64][16] = {{0}};
    const cJSON *e;
    cJSON_ArrayForEach(e, runs) {
        char cell[64];
        snprintf(cell, sizeof cell, "%d %s %s", (int)jnum(e, "depth"),
                 cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "act")),
                 cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "optimizer")));
        const char *remedy = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "remedy"));
        if (!remedy) continue;
        int ci = 0, ri = 0;
        while (ci < nc && strcmp(cells[ci], cell)) ci++;
        while (ri < nr && strcmp(rem[ri], remedy)) ri++;
        if (ci == nc && nc < 64) snprintf(cells[nc++], 64, "%s", cell);
        if (ri == nr && nr < 16) snprintf(rem[nr++], 32, "%s", remedy);
        if (ci >= 64 || ri >= 16) continue;
        const double a = jnum(e, "test_acc");
        if (a >= 0) sum[ci][ri] += a, cnt[ci][ri]++;
    }
    fprintf(f, "<h2>Test accuracy (mean over seeds)</h2>\n<table><tr><th class=\"l\">depth "
               "activation optimizer</th>");
    for (int r = 0; r < nr; r++) {
        fprintf(f, "<th>");
        esc(f, rem[r]);
        fprintf(f, "</th>");
    }
    fprintf(f, "</tr>\n");
    for (int c = 0; c < nc; c++) {
        fprintf(f, "<tr><td class=\"l\">");
        esc(f, cells[c]);
        fprintf(f, "</td>");
        for (int r = 0; r < nr; r++)
            if (cnt[c][r]) fprintf(f, "<td>%.3f</td>", sum[c][r] / cnt[c][r]);
            else fprintf(f, "<td>-</td>");
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n<h2>Accuracy per remedy</h2>\n");
    const char *labels[16];
    double vals[16];
    for (int c = 0; c < nc; c++) {
        int n = 0;
        for (int r = 0; r < nr; r++)
            if (cnt[c][r]) labels[n] = rem[r], vals[n++] = sum[c][r] / cnt[c][r];
        series s = {"mean accuracy", n, NULL, vals};
        bar_chart(f, cells[c], "test accuracy", labels, n, &s, 1, false);
    }
    fprintf(f, "</body></html>\n");
    return 0;
}

/* ---------------------------------------------------------------- entry points */

int cli_write_report(const char *cmd, const char *in_path, const char *out_path, const char *title) {
    FILE *in = fopen(in_path, "r");
    if (!in) {
        cli_error(cmd, "cannot read '%s': give a metrics file (train --metrics) or an experiment's "
                       "--json file", in_path);
        return EXIT_RUNTIME;
    }
    run_data *r = calloc(1, sizeof *r);
    char *text = NULL;
    size_t cap = 1 << 16, len = 0;
    for (bool more = true; more && r;) {
        char *nt = realloc(text, cap + 1);
        if (!nt) { /* all of it or nothing */
            free(text);
            text = NULL;
            break;
        }
        text = nt;
        len += fread(text + len, 1, cap - len, in);
        more = len == cap;
        if (more) cap *= 2;
    }
    fclose(in);
    if (!r || !text) {
        free(r), free(text);
        cli_error(cmd, "'%s' is empty or too large", in_path);
        return EXIT_RUNTIME;
    }
    text[len] = 0;
    r->test_acc = NAN;
    cJSON *whole = cJSON_Parse(text);
    int lines = 0;
    if (!cJSON_IsArray(whole)) { /* JSON lines */
        for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            cJSON *e = cJSON_Parse(line);
            if (e) read_event(r, e), lines++;
            cJSON_Delete(e);
        }
    }
    int code = 0;
    if (!cJSON_IsArray(whole) && !lines) {
        cli_error(cmd, "'%s' holds neither JSON lines of training metrics nor an experiment's "
                       "JSON array", in_path);
        code = EXIT_RUNTIME;
    }
    FILE *f = code ? NULL : fopen(out_path, "w");
    if (!code && !f) {
        cli_error(cmd, "cannot write '%s'", out_path);
        code = EXIT_RUNTIME;
    }
    if (f) {
        if (cJSON_IsArray(whole)) experiment_report(f, whole, title ? title : "regrad experiment");
        else train_report(f, r, title ? title : r->title[0] ? r->title : "regrad training run");
        if (fclose(f) != 0) {
            cli_error(cmd, "could not finish writing '%s' (disk full?)", out_path);
            code = EXIT_RUNTIME;
        }
    }
    cJSON_Delete(whole);
    for (int i = 0; i < r->layers; i++) free(r->names[i]);
    for (int i = 0; i < MAX_LAYERS; i++) free(r->curv_names[i]);
    free(r);
    free(text);
    return code;
}

static const char *const report_usage = "INPUT -o FILE.html [--title TEXT]";
static const char *const report_about =
    "Write a self-contained HTML report (inline SVG charts, no scripts, no network) from a "
    "training run's metrics (regrad train --metrics FILE, with --monitor-every for the gradient "
    "flow) or an experiment's results (regrad experiment --json FILE).";

typedef struct report_args {
    const char *out, *title;
} report_args;

static const cli_option report_options[] = {
    {.name = "out", .short_name = 'o', .meta = "FILE.html", .type = CLI_TEXT,
     CLI_AT(report_args, out), .help = "the page to write"},
    {.name = "title", .meta = "TEXT", .type = CLI_TEXT, CLI_AT(report_args, title),
     .help = "its title (default: the input file's name)"},
    CLI_END,
};

int cmd_report(int argc, char **argv) {
    const char *cmd = "report";
    const cli_command command = {.name = cmd, .usage = report_usage, .about = report_about,
                                 .options = report_options};
    report_args a = {0};
    int first;
    const int r = cli_parse(&command, argc, argv, &a, &first);
    if (r >= 0) return r;
    if (first != argc - 1 || !a.out) {
        cli_error(cmd, "give one input file and -o FILE.html; see 'regrad report --help'");
        return EXIT_USAGE;
    }
    int code = cli_write_report(cmd, argv[first], a.out, a.title);
    if (!code) printf("wrote %s\n", a.out);
    return code;
}

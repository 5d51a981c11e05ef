/*
 * moments.c — E[x xᵀ] and E[x] of a layer's input on the CPU: the metric in which GRA's
 * trust region measures a step. A dense layer's are one product over the batch's rows. A
 * convolution's are over its im2col columns, every output position's C·KH·KW inputs.
 *
 * At stride 1 those columns are shifted copies of the input's channels: column (c, a) at
 * output position o reads x_c(o + a), a the tap's offset. Two columns (c, a) and (c', a')
 * meet in Σ_o x_c(o + a) x_c'(o + a'), a product of channel c with channel c' shifted by
 * d = a' - a, over the input positions that tap a's window covers. So the (2KH-1)(2KW-1)
 * shifts' C x C products (half of them: the other half are their transposes) hold the
 * whole (C·KH·KW)² matrix: for a 3 x 3 window 13 products instead of 81 (about KH·KW/2
 * times fewer multiply-adds than the columns' own product for wider ones).
 * Every tap's window covers the input's inner rows and columns; what it leaves out of the
 * few border rows and columns is taken back from the shift's sums over those rows, those
 * columns and their corners. Other convolutions (stride above 1, or a window whose border
 * is more than 2 MAX_TAPS rows or columns deep) take the columns.
 */
#include "../kernels.h"
#include "cpu.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The largest window the shifted products take (taps per side); larger ones use columns. */
#define MAX_TAPS 16

/* A stride-1 convolution's layout for its shifted products: the border rows and columns
 * some tap's window leaves out, and where each sum lives in the scratch. Every sum is a
 * C x (S C) matrix: row c, column (s, c') for shift s and channel c'. */
typedef struct shift_plan {
    const rg_conv_geom *q;
    int ay[MAX_TAPS], ax[MAX_TAPS]; /* each tap's offset from the output position */
    int by[2 * MAX_TAPS], bx[2 * MAX_TAPS], nby, nbx; /* border rows and columns */
    int wp;            /* a row with zeros after it for the widest shift */
    int shifts;        /* S: the half taken, shift (dy, dx) numbered dy (2 KW - 1) + dx */
    long plane;        /* a padded channel's floats, h wp */
    float *z;          /* one sample, C rows padded */
    float *shifted;    /* its channels under every shift: (S C) x plane */
    float *column;     /* a border column of every channel (C x h), then its partners ((S C) x h) */
    float *sums;       /* whole, border rows, border columns, corners: C x (S C) each */
    double *first;     /* E[x]'s sums in the same parts: C each */
} shift_plan;

/* The rows of [0, n) that some tap's window [a, a + out) leaves out (below the largest
 * offset, or from the smallest offset + out on) into list; -1 where there are more than
 * 2 MAX_TAPS. */
static int border(int n, int out, const int *a, int taps, int *list) {
    int lo = a[0], hi = a[0], count = 0;
    for (int t = 1; t < taps; t++) lo = a[t] < lo ? a[t] : lo, hi = a[t] > hi ? a[t] : hi;
    for (int y = 0; y < n; y++)
        if (y < hi || y >= lo + out) {
            if (count == 2 * MAX_TAPS) return -1;
            list[count++] = y;
        }
    return count;
}

static size_t parts(const shift_plan *p) { return (size_t)(1 + p->nby) * (1 + p->nbx); }

/* The plan for q, its scratch (*block, to free) allocated; false where q takes the columns. */
static bool plan_shifts(const rg_conv_geom *q, shift_plan *p, void **block) {
    if (q->stride != 1 || q->kh > MAX_TAPS || q->kw > MAX_TAPS) return false;
    p->q = q;
    for (int i = 0; i < q->kh; i++) p->ay[i] = i * q->dilation - q->pad_t;
    for (int j = 0; j < q->kw; j++) p->ax[j] = j * q->dilation - q->pad_l;
    p->nby = border(q->h, q->oh, p->ay, q->kh, p->by);
    p->nbx = border(q->w, q->ow, p->ax, q->kw, p->bx);
    if (p->nby < 0 || p->nbx < 0) return false;
    p->wp = q->w + (q->kw - 1) * q->dilation;
    p->plane = (long)q->h * p->wp;
    p->shifts = ((2 * q->kh - 1) * (2 * q->kw - 1) + 1) / 2;
    const size_t c = (size_t)q->c, sc = p->shifts * c, z = c * p->plane, stack = sc * p->plane;
    const size_t column = (c + sc) * q->h, sums = parts(p) * c * sc;
    double *first = malloc(parts(p) * c * sizeof(double) + (z + stack + column + sums) * sizeof(float));
    if (!first) return false;
    *block = p->first = first;
    p->z = (float *)(first + parts(p) * c);
    p->shifted = p->z + z;
    p->column = p->shifted + stack;
    p->sums = p->column + column;
    return true;
}

/* Shift s of the half, in units of the dilation: dy > 0, or dy = 0 and dx >= 0. */
static void shift_of(const shift_plan *p, int s, int *dy, int *dx) {
    const int span = 2 * p->q->kw - 1, k = s + (p->q->kw - 1);
    *dy = k / span, *dx = k % span - (p->q->kw - 1);
}

/* One sample's part of every shift's sums (each row c times each shifted channel, at
 * `scale`, added to them), and of the mean's. */
static void add_sample(const shift_plan *p, const float *x, float scale) {
    const rg_conv_geom *q = p->q;
    const int c = q->c, h = q->h, w = q->w, wp = p->wp, sc = p->shifts * c;
    const long plane = p->plane;
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++) {
            float *row = p->z + ch * plane + (long)y * wp;
            memcpy(row, x + ((size_t)ch * h + y) * w, (size_t)w * sizeof(float));
            memset(row + w, 0, (size_t)(wp - w) * sizeof(float));
        }
    /* channel c' under shift (dy, dx): z_c'[k + dy wp + dx] (that offset is >= 0 in the
     * half); a shift past a row's end lands in its zeros, past the last row in these */
    for (int s = 0; s < p->shifts; s++) {
        int dy, dx;
        shift_of(p, s, &dy, &dx);
        const long d = ((long)dy * wp + dx) * q->dilation, len = d < plane ? plane - d : 0;
        for (int ch = 0; ch < c; ch++) {
            float *dst = p->shifted + ((long)s * c + ch) * plane;
            if (len) memcpy(dst, p->z + ch * plane + d, (size_t)len * sizeof(float)); /* d may pass the end */
            memset(dst + len, 0, (size_t)(plane - len) * sizeof(float));
        }
    }
    const size_t part = (size_t)c * sc;
    float *sums = p->sums;
    rg_sgemm(false, true, c, sc, (int)plane, scale, p->z, (int)plane, p->shifted, (int)plane, 1.0f, sums, sc);
    for (int r = 0; r < p->nby; r++) {
        const long at = (long)p->by[r] * wp;
        rg_sgemm(false, true, c, sc, wp, scale, p->z + at, (int)plane, p->shifted + at, (int)plane, 1.0f,
                 sums + (1 + r) * part, sc);
    }
    /* a border column's products, from its own copy and its partners' (with the corners) */
    for (int k = 0; k < p->nbx; k++) {
        const int xx = p->bx[k];
        float *own = p->column, *partner = own + (size_t)c * h;
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++) own[ch * h + y] = x[((size_t)ch * h + y) * w + xx];
        for (int s = 0; s < p->shifts; s++) {
            int dy, dx;
            shift_of(p, s, &dy, &dx);
            dy *= q->dilation, dx *= q->dilation;
            for (int ch = 0; ch < c; ch++) {
                float *dst = partner + ((size_t)s * c + ch) * h;
                for (int y = 0; y < h; y++)
                    dst[y] = y + dy < h && xx + dx >= 0 && xx + dx < w ? x[((size_t)ch * h + y + dy) * w + xx + dx] : 0.0f;
            }
        }
        rg_sgemm(false, true, c, sc, h, scale, own, h, partner, h, 1.0f, sums + (1 + p->nby + k) * part, sc);
        for (int r = 0; r < p->nby; r++) {
            float *corner = sums + (1 + p->nby + p->nbx + (size_t)r * p->nbx + k) * part;
            const int y = p->by[r];
            for (int i = 0; i < c; i++)
                for (int j = 0; j < sc; j++) corner[(size_t)i * sc + j] += scale * own[i * h + y] * partner[(size_t)j * h + y];
        }
    }
    /* the mean's sums: whole, border rows, border columns, corners (in that order, C each) */
    double *f = p->first;
    for (int ch = 0; ch < c; ch++) {
        const float *plane_in = x + (size_t)ch * h * w;
        double all = 0;
        for (size_t i = 0; i < (size_t)h * w; i++) all += plane_in[i];
        f[ch] += all;
        for (int r = 0; r < p->nby; r++) {
            double s = 0;
            for (int xx = 0; xx < w; xx++) s += plane_in[(size_t)p->by[r] * w + xx];
            f[(size_t)(1 + r) * c + ch] += s;
        }
        for (int k = 0; k < p->nbx; k++) {
            double s = 0;
            for (int y = 0; y < h; y++) s += plane_in[(size_t)y * w + p->bx[k]];
            f[(size_t)(1 + p->nby + k) * c + ch] += s;
            for (int r = 0; r < p->nby; r++)
                f[(size_t)(1 + p->nby + p->nbx + r * p->nbx + k) * c + ch] += plane_in[(size_t)p->by[r] * w + p->bx[k]];
        }
    }
}

/* Whole less what tap (i, j)'s window leaves out: the rows it misses, then the columns it
 * misses within the rows it covers (a column's sum less its corners in missed rows). The
 * parts are n apart (as floats fs, or doubles fd); this is their element k. */
static double covered(const shift_plan *p, int i, int j, const float *fs, const double *fd, size_t n, size_t k) {
    const rg_conv_geom *q = p->q;
    bool row_out[2 * MAX_TAPS];
#define PART(m) (fs ? (double)fs[(size_t)(m) * n + k] : fd[(size_t)(m) * n + k])
    double v = PART(0);
    for (int r = 0; r < p->nby; r++) {
        row_out[r] = p->by[r] < p->ay[i] || p->by[r] >= p->ay[i] + q->oh;
        if (row_out[r]) v -= PART(1 + r);
    }
    for (int b = 0; b < p->nbx; b++) {
        if (p->bx[b] >= p->ax[j] && p->bx[b] < p->ax[j] + q->ow) continue;
        double col = PART(1 + p->nby + b);
        for (int r = 0; r < p->nby; r++)
            if (row_out[r]) col -= PART(1 + p->nby + p->nbx + r * p->nbx + b);
        v -= col;
    }
#undef PART
    return v;
}

static void shifted_moments(const shift_plan *p, const float *x, size_t size, int batch, float *moment,
                            float *mean) {
    const rg_conv_geom *q = p->q;
    const int c = q->c, kh = q->kh, kw = q->kw, f = c * kh * kw, sc = p->shifts * c;
    const float scale = 1.0f / ((float)batch * q->oh * q->ow);
    memset(p->sums, 0, parts(p) * c * sc * sizeof(float));
    memset(p->first, 0, parts(p) * c * sizeof(double));
    for (int b = 0; b < batch; b++) add_sample(p, x + (size_t)b * size, scale);
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++)
                mean[(ch * kh + i) * kw + j] = (float)(covered(p, i, j, NULL, p->first, (size_t)c, (size_t)ch) * scale);
    /* each pair of taps whose shift is in the half: its block and its transpose */
    const size_t part = (size_t)c * sc;
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
            for (int i2 = 0; i2 < kh; i2++)
                for (int j2 = 0; j2 < kw; j2++) {
                    const int dy = i2 - i, dx = j2 - j, s = dy * (2 * kw - 1) + dx;
                    if (s < 0) continue;
                    for (int a = 0; a < c; a++)
                        for (int b = s == 0 ? a : 0; b < c; b++) {
                            const float v = (float)covered(p, i, j, p->sums, NULL, part, (size_t)a * sc + (size_t)s * c + b);
                            const size_t row = (size_t)(a * kh + i) * kw + j, col = (size_t)(b * kh + i2) * kw + j2;
                            moment[row * f + col] = moment[col * f + row] = v;
                        }
                }
}

void rg_cpu_input_moments(const float *x, size_t size, int batch, int f, const rg_conv_geom *q,
                          float *moment, float *mean, float *rows) {
    if (!q) {
        if (rows) memcpy(rows, x, (size_t)batch * f * sizeof *rows);
        rg_sgram(true, f, batch, 1.0f / batch, x, f, 0.0f, moment, f);
        double *sum = calloc((size_t)f, sizeof *sum); /* by rows of x, each sum in sample order */
        for (int b = 0; sum && b < batch; b++)
            for (int i = 0; i < f; i++) sum[i] += x[(size_t)b * f + i];
        for (int i = 0; i < f; i++) mean[i] = sum ? (float)(sum[i] / batch) : NAN;
        free(sum);
        return;
    }
    const int p = q->oh * q->ow;
    shift_plan plan = {0};
    void *block;
    if (plan_shifts(q, &plan, &block)) {
        shifted_moments(&plan, x, size, batch, moment, mean);
        free(block);
        return;
    }
    /* the columns: one sample's at a time, and ones for their sums as dot products */
    float *cols = malloc(((size_t)f + 1) * p * sizeof(float)), *ones = cols + (size_t)f * p;
    if (!cols) { /* as a device that fails: NaN, which the trust region does not trust */
        for (size_t i = 0; i < (size_t)f * f; i++) moment[i] = NAN;
        for (int i = 0; i < f; i++) mean[i] = NAN;
        return;
    }
    for (int i = 0; i < p; i++) ones[i] = 1.0f;
    const float scale = 1.0f / ((float)batch * p);
    memset(mean, 0, (size_t)f * sizeof(float));
    for (int b = 0; b < batch; b++) {
        rg_im2col(x + (size_t)b * size, q, cols);
        rg_sgram(false, f, p, scale, cols, p, b ? 1.0f : 0.0f, moment, f);
        for (int i = 0; i < f; i++) mean[i] += (float)(rg_dot(cols + (size_t)i * p, ones, (size_t)p) * scale);
    }
    free(cols);
}

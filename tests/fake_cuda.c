/*
 * fake_cuda.c — the CUDA backend's kernels (src/kernels/cuda/cuda.h) done on the host, so
 * that the device path of the library (the graph on a device, its uploads and downloads,
 * the optimizer's moments there, src/kernels/cuda/backend.c) runs and is tested where no
 * GPU is.  Its buffers are poisoned: the pointer handed out has a high bit set, so any host
 * code that touches "device" memory directly, not through the backend, faults at once; the
 * kernels here clear the bit before they compute.  Each kernel computes what the CPU's op
 * computes, in the CPU's order, so a graph on this device gives the CPU's bits.
 */
#include "internal.h"
#include "ops/ops.h"
#include "kernels/act_rules.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cuda/cuda.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POISON ((uintptr_t)1 << 62) /* a non-canonical address on x86-64 */
#define HOST(p) ((__typeof__(p))((uintptr_t)(p) ^ POISON))

rg_status rg_cuda_probe(int index, char *desc, size_t len) {
    if (index != 0) return rg_fail(RG_ERR_ARG, "cuda:%d: no such device: this machine has 1, cuda:0 to cuda:0", index);
    snprintf(desc, len, "cuda:0 host stand-in (tests/fake_cuda.c)");
    return RG_OK;
}
rg_status rg_cuda_use(int index) { return index == 0 ? RG_OK : RG_ERR_ARG; }
rg_status rg_cuda_status(bool wait) { return (void)wait, RG_OK; }
/* A small device, so that running out of it is tested; its buffers' bytes are counted (a
 * header before each holds its size) and come off the free memory. */
#define DEVICE_BYTES ((size_t)256 << 20)
#define HEADER 4 /* floats: a size_t, the buffer still 16-byte aligned */
static size_t in_use;
rg_status rg_cuda_memory(size_t *free_bytes, size_t *total) {
    *total = DEVICE_BYTES;
    *free_bytes = in_use < DEVICE_BYTES ? DEVICE_BYTES - in_use : 0;
    return RG_OK;
}
void rg_cuda_note_failure(const char *what, const char *why) { (void)what, (void)why; }

/* Forgets the uploads (below) into device memory [lo, hi), or from host memory at p. */
static void forget_copies(uintptr_t lo, uintptr_t hi, const void *p);

float *rg_cuda_alloc(size_t floats) {
    float *p = calloc(HEADER + (floats ? floats : 1), sizeof(float));
    if (!p) return NULL;
    *(size_t *)p = floats * sizeof(float);
    in_use += floats * sizeof(float);
    return HOST(p + HEADER);
}
void rg_cuda_release(float *p) {
    if (!p) return;
    float *block = HOST(p) - HEADER;
    forget_copies((uintptr_t)p, (uintptr_t)p + *(size_t *)block, NULL);
    in_use -= *(size_t *)block;
    free(block);
}
rg_status rg_cuda_upload(float *device, const float *host, size_t n) {
    memcpy(HOST(device), host, n * sizeof *host);
    return RG_OK;
}
void rg_cuda_upload_later(void *device, const void *host, size_t bytes) { memcpy(HOST(device), host, bytes); }
rg_status rg_cuda_download(float *host, const float *device, size_t n) {
    memcpy(host, HOST(device), n * sizeof *host);
    return RG_OK;
}
void rg_cuda_pin(void *p, size_t bytes, bool on) {
    (void)bytes;
    if (!on) forget_copies(0, 0, p); /* host memory about to be freed */
}
/* A batch's uploads, copied at once; and checked, per host buffer (an input's or the
 * labels' of one graph): no copy writes the device buffer the last copy from the same
 * host buffer wrote (forward alternates them, since on a GPU the last batch's work may
 * still read it), and that last buffer is spoilt (all bits set: NaN as floats, -1 as
 * labels), so anything that still reads it after the next forward gives wrong figures. */
#define TRACKED 64
static rg_upload last[TRACKED]; /* the last copy from each host buffer; host NULL: free */
void rg_cuda_upload_batch_begin(void) {}
void rg_cuda_upload_async(void *device, const void *host, size_t bytes) {
    rg_upload *t = NULL;
    for (int i = 0; i < TRACKED && !t; i++)
        if (last[i].host == host) t = &last[i];
    for (int i = 0; i < TRACKED && !t; i++)
        if (!last[i].host) t = &last[i];
    if (t && t->host) {
        if (t->device == device) {
            fprintf(stderr, "fake_cuda: a batch's upload writes the buffer the last batch's wrote\n");
            abort();
        }
        memset(HOST(t->device), 0xff, t->bytes);
    }
    memcpy(HOST(device), host, bytes);
    if (t) *t = (rg_upload){device, host, bytes};
}
void rg_cuda_upload_batch_end(void) {}
static void forget_copies(uintptr_t lo, uintptr_t hi, const void *p) {
    for (int i = 0; i < TRACKED; i++) {
        const uintptr_t d = (uintptr_t)last[i].device;
        if (last[i].host && ((d >= lo && d < hi) || last[i].host == p)) last[i] = (rg_upload){0};
    }
}

void rg_cuda_optim_update(rg_optim_kind kind, const step_consts *k, size_t n, float *w, const float *g,
                          float *m0, float *m1) {
    rg_optim_update_range(kind, k, n, HOST(w), HOST(g), m0 ? HOST(m0) : NULL, m1 ? HOST(m1) : NULL);
}

/* an activation over host memory, as the CPU computes it */
static void act_run(rg_act act, const float *x, float *y, size_t n) {
    if (act == RG_ACT_SIGMOID) rg_cpu_sigmoid_run(x, y, (long)n); /* the CPU's lanes */
    else if (act == RG_ACT_TANH) rg_cpu_tanh_run(x, y, (long)n);
    else
        for (size_t i = 0; i < n; i++) y[i] = act_f(act, x[i]);
}
void rg_cuda_activation_forward(rg_act act, const float *x, float *y, size_t n) { act_run(act, HOST(x), HOST(y), n); }
void rg_cuda_activation_backward(rg_act act, const float *x, const float *y, const float *dy, float *dx,
                                 size_t n, bool fresh) {
    x = HOST(x), y = HOST(y), dy = HOST(dy), dx = HOST(dx);
    for (size_t i = 0; i < n; i++) dx[i] = fresh ? act_dx(act, x[i], y[i], dy[i]) : dx[i] + act_dx(act, x[i], y[i], dy[i]);
}

/* tangents: the CPU's rules (op_dense.c, op_loss.c) */
rg_status rg_cuda_dense_tangent(const float *x, const float *t_in, const float *w, const float *dw, const float *db,
                                float *t, int batch, int in, int out) {
    x = HOST(x), t_in = HOST(t_in), w = HOST(w), t = HOST(t);
    if (dw) dw = HOST(dw);
    if (db) db = HOST(db);
    for (int i = 0; i < batch; i++)
        if (db) memcpy(t + (size_t)i * out, db, (size_t)out * sizeof *db);
        else memset(t + (size_t)i * out, 0, (size_t)out * sizeof *t);
    rg_sgemm(false, true, batch, out, in, 1.0f, t_in, in, w, in, 1.0f, t, out);
    if (dw) rg_sgemm(false, true, batch, out, in, 1.0f, x, in, dw, in, 1.0f, t, out);
    return RG_OK;
}
void rg_cuda_softmax_xent_tangent(const float *p, const int *labels, const float *t_in, float *t, int batch, int k,
                                  float smoothing) {
    p = HOST(p), labels = HOST(labels), t_in = HOST(t_in), t = HOST(t);
    const float uniform = smoothing / (float)k;
    double total = 0;
    for (int b = 0; b < batch; b++)
        for (int j = 0; j < k; j++)
            total += (p[(size_t)b * k + j] - uniform - (j == labels[b] ? 1.0f - smoothing : 0.0f)) *
                     (double)t_in[(size_t)b * k + j];
    t[0] = (float)(total / batch);
}

/* The monitor's reductions: the CPU's, so the figures are the CPU's bits, queued as the
 * device's are: each result is held back until rg_cuda_sums_flush, its destination NaN till
 * then, so that a figure read before the flush shows.  Copies down that do not wait are
 * held back the same way, until rg_cuda_downloads_done. */
typedef struct {
    void *dest, *value;
    size_t bytes;
} arrival;
typedef struct {
    arrival *items;
    size_t n, room;
} arrivals;
static arrivals sums_arrivals, copies_arrivals;
static void arrive_in(arrivals *q, void *dest, const void *value, size_t bytes, bool poison) {
    if (q->n == q->room) {
        q->room = q->room ? 2 * q->room : 64;
        if (!(q->items = realloc(q->items, q->room * sizeof *q->items))) abort();
    }
    void *v = malloc(bytes ? bytes : 1);
    if (!v) abort();
    memcpy(v, value, bytes);
    q->items[q->n++] = (arrival){dest, v, bytes};
    if (poison) memset(dest, 0xFF, bytes); /* NaN as floats and as doubles */
}
static void arrive_later(void *dest, const void *value, size_t bytes, bool poison) {
    arrive_in(&sums_arrivals, dest, value, bytes, poison);
}
static void arrive_now(arrivals *q) {
    for (size_t i = 0; i < q->n; i++) memcpy(q->items[i].dest, q->items[i].value, q->items[i].bytes), free(q->items[i].value);
    q->n = 0;
}
void rg_cuda_sums_flush(void) { arrive_now(&sums_arrivals); }
void rg_cuda_download_later(float *host, const float *device, size_t n) {
    arrive_in(&copies_arrivals, host, HOST(device), n * sizeof *host, true);
}
rg_status rg_cuda_downloads_done(void) { return arrive_now(&copies_arrivals), RG_OK; }
void rg_cuda_unit_sums(const float *out, size_t size, int units, int batch, rg_count_kind want, float lo,
                       float hi, double *sum, double *sq, double *relu, long *near, int *dead) {
    rg_node_impl n = {.out = HOST((float *)out), .size = size};
    n.shape[0] = units;
    const size_t u = (size_t)units;
    float *scratch = malloc(5 * u * sizeof *scratch);
    double *t = malloc(4 * u * sizeof *t);
    long c;
    int d;
    if (!scratch || !t) abort();
    rg_cpu_unit_sums(&n, batch, want, lo, hi, scratch, t, t + u, t + 2 * u, &c, &d);
    arrive_later(sum, t, u * sizeof *t, true), arrive_later(sq, t + u, u * sizeof *t, true);
    arrive_later(relu, t + 2 * u, 2 * u * sizeof *t, true);
    arrive_later(near, &c, sizeof c, false), arrive_later(dead, &d, sizeof d, false);
    free(scratch), free(t);
}
/* the output's sums, then those of its activation computed into a host copy */
void rg_cuda_unit_sums_through(const float *out, size_t size, int units, int batch, rg_count_kind want, float lo,
                               float hi, double *sums, long *near, int *dead, rg_act act, rg_count_kind act_want,
                               float act_lo, double *act_sums, long *act_near, int *act_dead) {
    const size_t u = (size_t)units, n = (size_t)batch * size;
    rg_cuda_unit_sums(out, size, units, batch, want, lo, hi, sums, sums + u, sums + 2 * u, near, dead);
    float *a = rg_cuda_alloc(n);
    if (!a) abort();
    rg_cuda_activation_forward(act, out, a, n);
    rg_cuda_unit_sums(a, size, units, batch, act_want, act_lo, hi, act_sums, act_sums + u, act_sums + 2 * u, act_near,
                      act_dead);
    rg_cuda_release(a);
}
void rg_cuda_sample_squares(const float *x, size_t size, int batch, double *out) {
    double *t = malloc((size_t)(batch > 0 ? batch : 1) * sizeof *t);
    if (!t) abort();
    rg_cpu_sample_squares(HOST(x), size, batch, t);
    arrive_later(out, t, (size_t)batch * sizeof *t, true);
    free(t);
}
void rg_cuda_squares_apart(const float *a, size_t na, const float *b, size_t nb, double *sa, double *sb) {
    double t[2];
    rg_cpu_squares_apart(HOST(a), na, HOST(b), nb, &t[0], &t[1]);
    arrive_later(sa, &t[0], sizeof *t, true), arrive_later(sb, &t[1], sizeof *t, true);
}
void rg_cuda_squares2(const float *a, const float *b, float *keep, size_t n, double *sa, double *sb) {
    double t[2];
    rg_cpu_squares2(HOST(a), b ? HOST(b) : NULL, keep ? HOST(keep) : NULL, n, &t[0], b ? &t[1] : NULL);
    arrive_later(sa, &t[0], sizeof *t, true);
    if (b) arrive_later(sb, &t[1], sizeof *t, true);
}
void rg_cuda_chunk_squares(const float *a, const float *b, const size_t *at, const size_t *len, size_t n,
                           double *out) {
    double *t = malloc((n ? n : 1) * sizeof *t);
    if (!t) abort();
    rg_cpu_chunk_squares(HOST(a), b ? HOST(b) : NULL, at, len, n, t);
    for (size_t c = 0; c < n; c++)
        if (at[c] != SIZE_MAX) arrive_later(out + c, t + c, sizeof *t, true);
    free(t);
}
/* GRA's arithmetic: the CPU's (the mean is device memory for the centred gradient and the
 * layer's step, host memory with the moment; qm and products are host memory) */
/* a layer with its buffers as the host reaches them */
static rg_gra_layer on_host(rg_gra_layer l) {
#define REACHED(p) ((p) ? HOST(p) : NULL)
    l.w = REACHED(l.w), l.b = REACHED(l.b), l.gw = REACHED(l.gw), l.pm = REACHED(l.pm), l.db = REACHED(l.db);
    l.w0 = REACHED(l.w0), l.b0 = REACHED(l.b0), l.gb = REACHED(l.gb), l.mean = REACHED(l.mean);
#undef REACHED
    return l;
}
/* the CPU's, one layer at a time; the figure it writes (its squares or its shift) held back
 * till the flush, as the device's is */
typedef enum { NO_FIGURE, SQUARES, SHIFT } figure;
static void each_layer(const rg_gra_layer *l, int n, void (*cpu)(const rg_gra_layer *, int), figure which) {
    for (int i = 0; i < n; i++) {
        rg_gra_layer h = on_host(l[i]);
        double value;
        h.squares = h.shift = &value;
        cpu(&h, 1);
        if (which != NO_FIGURE) arrive_later(which == SQUARES ? l[i].squares : l[i].shift, &value, sizeof value, true);
    }
}
void rg_cuda_centre_gradients(const rg_gra_layer *l, int n) { each_layer(l, n, rg_cpu_centre_gradients, NO_FIGURE); }
void rg_cuda_layer_steps(const rg_gra_layer *l, int n) { each_layer(l, n, rg_cpu_layer_steps, SQUARES); }
void rg_cuda_uncentre_steps(const rg_gra_layer *l, int n) { each_layer(l, n, rg_cpu_uncentre_steps, NO_FIGURE); }
void rg_cuda_step_shifts(const rg_gra_layer *l, int n) { each_layer(l, n, rg_cpu_step_shifts, SHIFT); }
void rg_cuda_times_matrix(float *out, const float *x, int units, int f, const float *p) {
    rg_cpu_times_matrix(HOST(out), HOST(x), units, f, HOST(p));
}
void rg_cuda_function_change_rows(const float *dw, const float *db, int units, int f, const float *rows, int n,
                                  double *sum) {
    float *t = malloc((size_t)n * units * sizeof *t);
    if (!t) abort();
    double change;
    rg_cpu_function_change_rows(HOST(dw), db ? HOST(db) : NULL, units, f, HOST(rows), n, t, &change);
    arrive_later(sum, &change, sizeof change, true); /* at the flush, as a device's */
    free(t);
}
void rg_cuda_function_change(const float *dw, const float *db, int units, int f, const float *moment,
                             const float *mean, double *sum) {
    float *t = malloc((size_t)units * f * sizeof *t);
    if (!t) abort();
    double change;
    rg_cpu_function_change(HOST(dw), db ? HOST(db) : NULL, units, f, moment, mean, t, &change);
    arrive_later(sum, &change, sizeof change, true);
    free(t);
}
bool rg_cuda_bound_sums(const float *dw, const float *db, int units, int f, const float *qm, int k,
                        rg_bound_sums *sums) {
    float *p = malloc((size_t)units * (k + 1) * sizeof *p);
    if (!p) abort();
    rg_bound_sums t;
    rg_cpu_function_change_bound(HOST(dw), db ? HOST(db) : NULL, units, f, HOST(qm), k, p, &t);
    arrive_later(sums, &t, sizeof t, true); /* at the flush, as a device's */
    free(p);
    return true;
}
/* the CPU's moments, held back until the flush as a device's are */
rg_status rg_cuda_input_moments(const float *x, size_t size, int batch, int f, const rg_conv_geom *q, float *moment,
                                float *mean, float *rows) {
    const size_t ff = (size_t)f * f, nr = rows && !q ? (size_t)batch * f : 0;
    float *t = malloc((ff + f + nr) * sizeof *t);
    if (!t) abort();
    rg_cpu_input_moments(HOST(x), size, batch, f, q, t, t + ff, nr ? t + ff + f : NULL);
    arrive_later(moment, t, ff * sizeof *t, true), arrive_later(mean, t + ff, f * sizeof *t, true);
    if (nr) arrive_later(rows, t + ff + f, nr * sizeof *t, true);
    free(t);
    return RG_OK;
}
double rg_cuda_sum_squares(const float *x, size_t n) { return rg_cpu_squares_in_order(HOST(x), n); }
void rg_cuda_sums_of_squares(const float *const *x, const size_t *len, double *const *out, int n) {
    for (int i = 0; i < n; i++) {
        const double t = rg_cuda_sum_squares(x[i], len[i]);
        arrive_later(out[i], &t, sizeof t, true);
    }
}
void rg_cuda_pieces_squares(const float *x, const size_t *at, const size_t *len, size_t n, double *out) {
    for (size_t c = 0; c < n; c++) {
        const double t = rg_cuda_sum_squares(x + at[c], len[c]);
        arrive_later(&out[c], &t, sizeof t, true);
    }
}
void rg_cuda_scale_pieces(float *x, const size_t *at, const size_t *len, size_t n, const float *f) {
    rg_cpu_scale_pieces(HOST(x), at, len, n, f);
}
rg_status rg_cuda_hier_prox(float *theta, float *w1, int k, int d, int h, double M, double lambda) {
    return rg_cpu_hier_prox(HOST(theta), HOST(w1), k, d, h, M, lambda);
}
size_t rg_cuda_count_zeros(const float *x, size_t n) { return rg_cpu_count_zeros(HOST(x), n); }
long rg_cuda_count_nonfinite(const float *x, size_t n) { return rg_cpu_count_nonfinite(HOST(x), n); }
size_t rg_cuda_first_nonfinite(const float *x, size_t n) { return rg_cpu_first_nonfinite(HOST(x), n); }
void rg_cuda_fill(float *x, size_t n, float v) { rg_cpu_fill(HOST(x), n, v); }
void rg_cuda_scale(float *x, size_t n, float f) { rg_cpu_scale(HOST(x), n, f); }
void rg_cuda_copy(float *dst, const float *src, size_t n) { rg_cpu_copy(HOST(dst), HOST(src), n); }
void rg_cuda_subtract(float *out, const float *a, const float *b, size_t n) {
    rg_cpu_subtract(HOST(out), HOST(a), HOST(b), n);
}
void rg_cuda_step_along(float *x, const float *x0, const float *d, size_t n, float f) {
    rg_cpu_step_along(HOST(x), HOST(x0), d ? HOST(d) : NULL, n, f);
}
void rg_cuda_multiply(float *x, const float *m, size_t n) { rg_cpu_multiply(HOST(x), HOST(m), n); }
void rg_cuda_clamp(float *x, size_t n, float v) { rg_cpu_clamp(HOST(x), n, v); }

rg_status rg_cuda_blas_ready(void) { return RG_OK; }
/* the host's products are fp32 either way; bf16 is the real kernels' (tests/cuda_emulation/) */
bool rg_cuda_activations_bf16 = false;
void rg_cuda_set_precision(bool tf32, bool bf16) { (void)tf32, (void)bf16; }
/* Its kernels run at once, so nothing can be captured to run later: a pass asked to be
 * (REGRAD_GRAPHS=1) runs as is, and the reason is kept. */
rg_status rg_cuda_capture_begin(char *why, size_t len) {
    snprintf(why, len, "the host stand-in (tests/fake_cuda.c) cannot capture");
    return RG_ERR_STATE;
}
void *rg_cuda_capture_end(char *why, size_t len) { return (void)why, (void)len, NULL; }
void rg_cuda_replay_begin(void) {}
rg_status rg_cuda_replay(void *graph, bool *changed) { return (void)graph, *changed = true, RG_ERR_STATE; }
void rg_cuda_sums_mark(size_t mark[3]) { mark[0] = mark[1] = mark[2] = 0; }
void rg_cuda_sums_back(const size_t mark[3]) { (void)mark; }
void rg_cuda_replay_free(void *graph) { (void)graph; }
unsigned long rg_cuda_memory_moves(void) { return 0; }
rg_status rg_cuda_bf16_ready(void) {
    return rg_fail(RG_ERR_STATE, "cuda: the host stand-in (tests/fake_cuda.c) has no bf16: use --precision fp32");
}
/* never called (no graph here compiles in bf16), but linked: the backend's table names them */
void rg_cuda_to_bf16(float *dst, const float *src, size_t n) { (void)dst, (void)src, (void)n; }
void rg_cuda_begin_pass(void) {}
rg_status rg_cuda_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    rg_sgemm(trans_a, trans_b, m, n, k, alpha, HOST(a), lda, HOST(b), ldb, beta, HOST(c), ldc);
    return RG_OK;
}

rg_status rg_cuda_dense_forward(const float *x, const float *w, const float *b, float *y, int batch, int in,
                                int out) {
    for (int i = 0; i < batch; i++) memcpy(HOST(y) + (size_t)i * out, HOST(b), (size_t)out * sizeof *b);
    return rg_cuda_sgemm(false, true, batch, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}
rg_status rg_cuda_dense_backward(const float *x, const float *dy, const float *w, float *dw, float *db,
                                 float *dx, bool fresh, int batch, int in, int out) {
    rg_status s = rg_cuda_sgemm(true, false, out, in, batch, 1.0f, dy, out, x, in, 1.0f, dw, in);
    for (int i = 0; db && i < batch; i++)
        for (int j = 0; j < out; j++) HOST(db)[j] += HOST(dy)[(size_t)i * out + j];
    if (!s && dx) s = rg_cuda_sgemm(false, false, batch, in, out, 1.0f, dy, out, w, in, fresh ? 0.0f : 1.0f, dx, in);
    return s;
}

void rg_cuda_softmax_xent_forward(const float *z, const int *labels, float *p, double *scratch, float *loss,
                                  int batch, int k, float smoothing) {
    z = HOST(z), labels = HOST(labels), p = HOST(p), scratch = HOST(scratch), loss = HOST(loss);
    double total = 0;
    for (int b = 0; b < batch; b++) {
        const float *zb = z + (size_t)b * k;
        float *pb = p + (size_t)b * k, m = zb[0];
        for (int j = 1; j < k; j++) m = zb[j] > m ? zb[j] : m;
        double sum = 0, sum_z = 0;
        for (int j = 0; j < k; j++) sum += (pb[j] = expf(zb[j] - m));
        const double lse = m + log(sum);
        for (int j = 0; j < k; j++) pb[j] = (float)(pb[j] / sum), sum_z += zb[j];
        scratch[b] = (1.0 - smoothing) * (lse - zb[labels[b]]) + (smoothing / k) * (k * lse - sum_z);
        total += scratch[b];
    }
    loss[0] = (float)(total / batch);
}
void rg_cuda_softmax_xent_backward(const float *p, const int *labels, const float *dloss, float *dz, int batch,
                                   int k, float smoothing) {
    p = HOST(p), labels = HOST(labels), dloss = HOST(dloss), dz = HOST(dz);
    const float scale = dloss[0] / (float)batch, uniform = smoothing / (float)k;
    for (size_t i = 0; i < (size_t)batch * k; i++)
        dz[i] += scale * (p[i] - uniform - ((int)(i % k) == labels[i / k] ? 1.0f - smoothing : 0.0f));
}

void rg_cuda_add(float *y, const float *a, const float *b, size_t n) {
    y = HOST(y), a = HOST(a), b = HOST(b);
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
void rg_cuda_pass_on(float *dx0, bool fresh0, float *dx1, bool fresh1, const float *dy, size_t n) {
    float *dx[2] = {HOST(dx0), dx1 ? HOST(dx1) : NULL};
    const bool fresh[2] = {fresh0, fresh1};
    dy = HOST(dy);
    for (int k = 0; k < 2 && dx[k]; k++)
        for (size_t i = 0; i < n; i++) dx[k][i] = fresh[k] ? dy[i] : dx[k][i] + dy[i];
}
void rg_cuda_zero_pad_forward(const float *x, float *y, size_t planes, int h, int w, int oh, int ow, int top,
                              int left) {
    x = HOST(x), y = HOST(y);
    memset(y, 0, planes * oh * ow * sizeof *y);
    for (size_t p = 0; p < planes; p++)
        for (int r = 0; r < h; r++)
            memcpy(y + (p * oh + r + top) * ow + left, x + (p * h + r) * w, (size_t)w * sizeof *x);
}
void rg_cuda_zero_pad_backward(const float *dy, float *dx, size_t planes, int h, int w, int oh, int ow, int top,
                               int left) {
    dy = HOST(dy), dx = HOST(dx);
    for (size_t p = 0; p < planes; p++)
        for (int r = 0; r < h; r++)
            for (int c = 0; c < w; c++) dx[(p * h + r) * w + c] += dy[(p * oh + r + top) * ow + c + left];
}
void rg_cuda_concat_forward(const float *x, float *y, int batch, size_t part, size_t size, size_t at) {
    for (int b = 0; b < batch; b++) memcpy(HOST(y) + b * size + at, HOST(x) + b * part, part * sizeof *x);
}
void rg_cuda_concat_backward(const float *dy, float *dx, int batch, size_t part, size_t size, size_t at) {
    for (int b = 0; b < batch; b++)
        for (size_t i = 0; i < part; i++) HOST(dx)[b * part + i] += HOST(dy)[b * size + at + i];
}
void rg_cuda_global_avg_pool_forward(const float *x, float *y, size_t planes, size_t hw) {
    for (size_t p = 0; p < planes; p++) {
        float s = 0;
        for (size_t i = 0; i < hw; i++) s += HOST(x)[p * hw + i];
        HOST(y)[p] = s / (float)hw;
    }
}
void rg_cuda_global_avg_pool_backward(const float *dy, float *dx, size_t planes, size_t hw) {
    for (size_t i = 0; i < planes * hw; i++) HOST(dx)[i] += HOST(dy)[i / hw] / (float)hw;
}
void rg_cuda_flatten_hwc_forward(const float *x, float *y, int batch, size_t c, size_t hw) {
    for (size_t i = 0; i < (size_t)batch * c * hw; i++)
        HOST(y)[i / (c * hw) * c * hw + i % hw * c + i / hw % c] = HOST(x)[i];
}
void rg_cuda_flatten_hwc_backward(const float *dy, float *dx, int batch, size_t c, size_t hw) {
    for (size_t i = 0; i < (size_t)batch * c * hw; i++)
        HOST(dx)[i] += HOST(dy)[i / (c * hw) * c * hw + i % hw * c + i / hw % c];
}

size_t rg_cuda_conv2d_workspace(const rg_conv_geom *q, int filters, int groups, bool bf16) {
    (void)bf16; /* refused here */
    return rg_cuda_conv_columns(q) + (size_t)filters * (q->c / groups) * q->kh * q->kw;
}
rg_status rg_cuda_sgemm_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                                size_t stride_a, const float *b, int ldb, size_t stride_b, float beta, float *c,
                                int ldc, size_t stride_c, int count) {
    for (int i = 0; i < count; i++)
        rg_sgemm(trans_a, trans_b, m, n, k, alpha, HOST(a) + i * stride_a, lda, HOST(b) + i * stride_b, ldb, beta,
                 HOST(c) + i * stride_c, ldc);
    return RG_OK;
}

/* conv.cu's steps on the host: the batch's columns (the CPU's im2col), strided products,
 * each sample's dW added in sample order, the CPU's col2im */
rg_status rg_cuda_conv2d_forward(const float *x, const float *w, const float *bias, const float *sum, float *y,
                                 bool add, int batch, const rg_conv_geom *q, int filters, int groups, float *col,
                                 rg_cuda_norm_statistics *stats) {
    if (stats) stats->made = false; /* the batch norm takes its statistics itself */
    const int og = filters / groups, kg = q->c / groups * q->kh * q->kw, ohw = q->oh * q->ow;
    const size_t in_size = (size_t)q->c * q->h * q->w, out_size = (size_t)filters * ohw;
    const size_t cs = rg_cuda_conv_columns(q);
    for (int b = 0; !rg_cuda_conv_direct(q) && b < batch; b++) rg_im2col(HOST(x) + b * in_size, q, HOST(col) + b * cs);
    const float *cols = rg_cuda_conv_direct(q) ? x : col;
    for (int gi = 0; gi < groups; gi++)
        rg_cuda_sgemm_batched(false, false, og, ohw, kg, 1.0f, w + (size_t)gi * og * kg, kg, 0, cols + (size_t)gi * kg * ohw,
                              ohw, rg_cuda_conv_direct(q) ? in_size : cs, add ? 1.0f : 0.0f, y + (size_t)gi * og * ohw, ohw, out_size,
                              batch);
    for (int b = 0; (bias || sum) && b < batch; b++) /* then the bias, then the add's other input */
        for (int o = 0; o < filters; o++)
            for (int p = 0; p < ohw; p++) {
                const size_t i = b * out_size + (size_t)o * ohw + p;
                const float t = bias ? HOST(y)[i] + HOST(bias)[o] : HOST(y)[i];
                HOST(y)[i] = sum ? t + HOST(sum)[i] : t;
            }
    return RG_OK;
}
rg_status rg_cuda_conv2d_backward(const float *x, const float *dy, const float *w, float *dw, float *db,
                                  float *dx, bool fresh, int batch, const rg_conv_geom *q, int filters, int groups,
                                  float *col) {
    const int og = filters / groups, kg = q->c / groups * q->kh * q->kw, ohw = q->oh * q->ow;
    const size_t in_size = (size_t)q->c * q->h * q->w, out_size = (size_t)filters * ohw, wsize = (size_t)filters * kg;
    const size_t cs = rg_cuda_conv_columns(q), stride = rg_cuda_conv_direct(q) ? in_size : cs;
    float *parts = col + (size_t)batch * cs;
    for (int o = 0; db && o < filters; o++) {
        float s = HOST(db)[o];
        for (int b = 0; b < batch; b++)
            for (int p = 0; p < ohw; p++) s += HOST(dy)[b * out_size + (size_t)o * ohw + p];
        HOST(db)[o] = s;
    }
    for (int b = 0; !rg_cuda_conv_direct(q) && b < batch; b++) rg_im2col(HOST(x) + b * in_size, q, HOST(col) + b * cs);
    const float *cols = rg_cuda_conv_direct(q) ? x : col;
    for (int gi = 0; gi < groups; gi++)
        rg_cuda_sgemm_batched(false, true, og, kg, ohw, 1.0f, dy + (size_t)gi * og * ohw, ohw, out_size,
                              cols + (size_t)gi * kg * ohw, ohw, stride, 0.0f, parts + (size_t)gi * og * kg, kg, wsize, batch);
    for (size_t i = 0; i < wsize; i++) {
        float s = HOST(dw)[i];
        for (int b = 0; b < batch; b++) s += HOST(parts)[(size_t)b * wsize + i];
        HOST(dw)[i] = s;
    }
    if (!dx) return RG_OK;
    float *dcol = rg_cuda_conv_direct(q) ? dx : col;
    for (int gi = 0; gi < groups; gi++)
        rg_cuda_sgemm_batched(true, false, kg, ohw, og, 1.0f, w + (size_t)gi * og * kg, kg, 0, dy + (size_t)gi * og * ohw,
                              ohw, out_size, rg_cuda_conv_direct(q) && !fresh ? 1.0f : 0.0f, dcol + (size_t)gi * kg * ohw, ohw, stride,
                              batch);
    for (int b = 0; !rg_cuda_conv_direct(q) && b < batch; b++) {
        if (fresh) memset(HOST(dx) + b * in_size, 0, in_size * sizeof(float));
        rg_col2im_add(HOST(col) + b * cs, q, HOST(dx) + b * in_size);
    }
    return RG_OK;
}

/* the pools through the CPU's own ops, on a node made for the call */
static void pool_call(void (*op)(rg_graph *, rg_node_impl *, int, bool), void (*back)(rg_graph *, rg_node_impl *, int),
                      const float *x, const float *y, int *arg, const float *dy, float *dx, int batch,
                      const rg_conv_geom *q, int k, int stride, int pad, bool zero_padded) {
    pool_attr a = {.kernel = k, .stride = stride, .pad = pad, .zero_padded = zero_padded, .geom = *q};
    rg_node_impl nodes[2] = {{.out = (float *)x, .dout = dx, .needs_grad = true},
                             {.attr = &a, .out = (float *)y, .dout = (float *)dy, .aux = (float *)arg, .n_inputs = 1}};
    rg_graph g = {.nodes = nodes};
    if (op) op(&g, &nodes[1], batch, true);
    else back(&g, &nodes[1], batch);
}
void rg_cuda_max_pool_forward(const float *x, float *y, int *arg, int batch, const rg_conv_geom *q, int k, int stride,
                              int pad, bool zero_padded) {
    pool_call(rg_cpu_max_pool_forward, NULL, HOST(x), HOST(y), arg ? HOST(arg) : NULL, NULL, NULL, batch, q, k, stride, pad,
              zero_padded);
}
void rg_cuda_max_pool_backward(const float *x, const float *y, const int *arg, const float *dy, float *dx, int batch,
                               const rg_conv_geom *q, int k, int stride, int pad) {
    pool_call(NULL, rg_cpu_max_pool_backward, HOST(x), HOST(y), arg ? (int *)HOST(arg) : NULL, HOST(dy), HOST(dx), batch,
              q, k, stride, pad, false);
}
void rg_cuda_max_pool_tangent(const float *x, const float *t_in, float *t, int batch, const rg_conv_geom *q, int k,
                              int stride, int pad, bool zero_padded) {
    pool_attr a = {.kernel = k, .stride = stride, .pad = pad, .zero_padded = zero_padded, .geom = *q};
    rg_node_impl nodes[2] = {{.out = HOST((float *)x)}, {.attr = &a, .n_inputs = 1}};
    float *tangent[2] = {HOST((float *)t_in), HOST(t)};
    rg_graph g = {.nodes = nodes, .tangent = tangent};
    rg_cpu_max_pool_tangent(&g, &nodes[1], batch);
}
void rg_cuda_avg_pool_forward(const float *x, float *y, int batch, const rg_conv_geom *q, int k, int stride, int pad) {
    pool_call(rg_cpu_avg_pool_forward, NULL, HOST(x), HOST(y), NULL, NULL, NULL, batch, q, k, stride, pad, false);
}
void rg_cuda_avg_pool_backward(const float *dy, float *dx, int batch, const rg_conv_geom *q, int k, int stride,
                               int pad) {
    pool_call(NULL, rg_cpu_avg_pool_backward, NULL, NULL, NULL, HOST(dy), HOST(dx), batch, q, k, stride, pad, false);
}

void rg_cuda_batch_norm_tangent(const float *x, const float *t_in, float *t, int batch, int C, size_t hw, bool train,
                                const float *gamma, const float *aux, const float *dgamma, const float *dbeta,
                                float *coef) {
    (void)coef;
    rg_cpu_batch_norm_tangent_values(HOST(x), HOST(t_in), HOST(t), batch, C, hw, train, HOST(aux), HOST(aux) + C,
                                     HOST(gamma), dgamma ? HOST(dgamma) : NULL, dbeta ? HOST(dbeta) : NULL);
}
/* batch norm as norm.cu computes it, channel by channel in index order */
void rg_cuda_batch_norm_forward(const float *x, float *y, int batch, int C, size_t hw, bool train,
                                const rg_cuda_norm_statistics *p, bool relu) {
    const float eps = p->eps, momentum = p->momentum, *gamma = HOST(p->gamma), *beta = HOST(p->beta);
    float *rmean = HOST(p->rmean), *rvar = HOST(p->rvar), *aux = HOST(p->aux);
    const bool made = p->made;
    x = HOST(x), y = HOST(y);
    const double m = (double)batch * hw;
    for (int c = 0; c < C && !(train && made); c++) {
        float mu, inv;
        if (train) {
            double s = 0, s2 = 0;
            for (int b = 0; b < batch; b++)
                for (size_t i = 0; i < hw; i++) s += x[((size_t)b * C + c) * hw + i];
            mu = (float)(s / m);
            for (int b = 0; b < batch; b++)
                for (size_t i = 0; i < hw; i++) {
                    const float d = x[((size_t)b * C + c) * hw + i] - mu;
                    s2 += (double)d * d;
                }
            const double var = s2 / m;
            inv = (float)(1.0 / sqrt(var + eps));
            rmean[c] = (1.0f - momentum) * rmean[c] + momentum * mu;
            rvar[c] = (1.0f - momentum) * rvar[c] + momentum * (float)(var * m / (m - 1));
        } else {
            mu = rmean[c], inv = 1.0f / sqrtf(rvar[c] + eps);
        }
        aux[c] = mu, aux[C + c] = inv, aux[2 * C + 2 * c] = gamma[c] * inv;
        aux[2 * C + 2 * c + 1] = beta[c] - mu * aux[2 * C + 2 * c];
    }
    for (size_t i = 0; i < (size_t)batch * C * hw; i++) {
        const int c = (int)(i / hw % C);
        const float v = x[i] * aux[2 * C + 2 * c] + aux[2 * C + 2 * c + 1];
        y[i] = relu && v < 0 ? 0.0f : v;
    }
}
void rg_cuda_batch_norm_backward(const float *x, const float *dy, float *dx, int batch, int C, size_t hw, bool train,
                                 const float *gamma, const float *aux, bool relu, float *dgamma, float *dbeta,
                                 float *coef, bool fresh) {
    x = HOST(x), dy = HOST(dy), gamma = HOST(gamma), aux = HOST(aux), dgamma = HOST(dgamma), dbeta = HOST(dbeta);
    coef = HOST(coef);
    const double m = (double)batch * hw;
#define MASKED(i, c) (relu && !(x[i] * aux[2 * C + 2 * (c)] + aux[2 * C + 2 * (c) + 1] > 0) ? 0.0f : dy[i])
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int b = 0; b < batch; b++)
            for (size_t i = 0; i < hw; i++) {
                const size_t at = ((size_t)b * C + c) * hw + i;
                sdy += MASKED(at, c), sdyx += (double)MASKED(at, c) * (x[at] - aux[c]);
            }
        sdyx *= aux[C + c];
        dgamma[c] += (float)sdyx, dbeta[c] += (float)sdy;
        coef[3 * c] = gamma[c] * aux[C + c], coef[3 * c + 1] = (float)(sdy / m), coef[3 * c + 2] = (float)(sdyx / m);
    }
    for (size_t i = 0; dx && i < (size_t)batch * C * hw; i++) {
        const int c = (int)(i / hw % C);
        const float h = MASKED(i, c), k = coef[3 * c];
        const float g = train ? k * (h - coef[3 * c + 1] - (x[i] - aux[c]) * aux[C + c] * coef[3 * c + 2]) : k * h;
        HOST(dx)[i] = fresh ? g : HOST(dx)[i] + g;
    }
#undef MASKED
}

void rg_cuda_dropout_forward(const float *x, float *y, float *mask, size_t n, float rate, uint64_t key, bool train) {
    x = HOST(x), y = HOST(y), mask = HOST(mask);
    const float keep = 1.0f / (1.0f - rate);
    for (size_t i = 0; i < n; i++)
        if (train) mask[i] = rg_hash_uniform(key, (uint64_t)i) >= rate ? keep : 0.0f, y[i] = x[i] * mask[i];
        else y[i] = x[i];
}
void rg_cuda_dropout_backward(const float *dy, const float *mask, float *dx, size_t n, bool train) {
    for (size_t i = 0; i < n; i++) HOST(dx)[i] += train ? HOST(dy)[i] * HOST(mask)[i] : HOST(dy)[i];
}
void rg_cuda_softmax_forward(const float *x, float *y, size_t rows, int k) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = HOST(x) + r * k;
        float *yr = HOST(y) + r * k, m = xr[0], sum = 0;
        for (int j = 1; j < k; j++) m = xr[j] > m ? xr[j] : m;
        for (int j = 0; j < k; j++) sum += (yr[j] = expf(xr[j] - m));
        for (int j = 0; j < k; j++) yr[j] /= sum;
    }
}
void rg_cuda_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, int k) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = HOST(y) + r * k, *dyr = HOST(dy) + r * k;
        float *dxr = HOST(dx) + r * k, dot = 0;
        for (int j = 0; j < k; j++) dot += dyr[j] * yr[j];
        for (int j = 0; j < k; j++) dxr[j] += yr[j] * (dyr[j] - dot);
    }
}
static float mse_target(const float *target, const int *labels, size_t d, size_t i) {
    return target ? target[i] : (int)(i % d) == labels[i / d] ? 1.0f : 0.0f;
}
void rg_cuda_mse_forward(const float *y, const float *target, const int *labels, size_t d, int batch, float *loss) {
    double total = 0;
    for (size_t i = 0; i < (size_t)batch * d; i++) {
        const double e = HOST(y)[i] - mse_target(target ? HOST(target) : NULL, HOST(labels), d, i);
        total += e * e;
    }
    HOST(loss)[0] = (float)(total / ((double)batch * d));
}
void rg_cuda_mse_backward(const float *y, const float *target, const int *labels, const float *dloss, float *dy,
                          float *dtarget, size_t d, int batch) {
    const float scale = 2.0f * HOST(dloss)[0] / (float)((double)batch * d);
    for (size_t i = 0; i < (size_t)batch * d; i++) {
        const float e = scale * (HOST(y)[i] - mse_target(target ? HOST(target) : NULL, HOST(labels), d, i));
        if (dy) HOST(dy)[i] += e;
        if (dtarget) HOST(dtarget)[i] -= e;
    }
}
void rg_cuda_mse_tangent(const float *y, const float *target, const int *labels, const float *t_y,
                         const float *t_target, float *t, size_t d, int batch) {
    double total = 0;
    for (size_t i = 0; i < (size_t)batch * d; i++)
        total += (HOST(y)[i] - mse_target(target ? HOST(target) : NULL, HOST(labels), d, i)) *
                 (double)(HOST(t_y)[i] - (t_target ? HOST(t_target)[i] : 0.0f));
    HOST(t)[0] = (float)(2.0 * total / ((double)batch * d));
}

void rg_cuda_weighted_sum(float *y, const rg_cuda_terms *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (int k = 0; k < t->n; k++) s += t->w[k] * HOST(t->x[k])[i];
        HOST(y)[i] = s;
    }
}
void rg_cuda_add_scaled(float *dx, const float *dy, float w, size_t n) {
    for (size_t i = 0; i < n; i++) HOST(dx)[i] += w * HOST(dy)[i];
}
/* the backward tangents, the CPU's over the host's arrays */
void rg_cuda_activation_backward_tangent(rg_act act, const float *x, const float *y, const float *t,
                                         const float *dy, float *dx, size_t n) {
    rg_cpu_activation_backward_tangent_values(act, HOST(x), HOST(y), HOST(t), HOST(dy), HOST(dx), (long)n);
}
void rg_cuda_softmax_backward_tangent(const float *y, const float *t, const float *dy, float *dx, size_t rows,
                                      int k) {
    rg_cpu_softmax_backward_tangent_values(HOST(y), HOST(t), HOST(dy), HOST(dx), (long)rows, k);
}
void rg_cuda_batch_norm_backward_tangent(const float *x, const float *t, const float *dy, float *dx, float *dgamma,
                                         int batch, int C, size_t hw, bool train, const float *aux, bool fused,
                                         const float *gamma, const float *gamma_t) {
    rg_cpu_batch_norm_backward_tangent_values(HOST(x), HOST(t), HOST(dy), dx ? HOST(dx) : NULL, HOST(dgamma), batch, C,
                                              hw, train, HOST(aux), fused, HOST(gamma),
                                              gamma_t ? HOST(gamma_t) : NULL);
}

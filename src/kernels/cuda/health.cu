/*
 * health.cu — the health monitor's reductions on the device: per-unit sums of a layer's
 * output, per-sample squares of a gradient, a layer's weight and gradient squares (and the
 * copy of its weights that measures the step), and the squared change of the weights'
 * pieces.  Each segment (a unit, a sample, a piece) is cut into a fixed number of parts;
 * each part's block adds its values in a fixed order and then its threads as a tree, in
 * double, and the host adds the parts in order: the same bits every run, no atomics.  The
 * figures are the CPU's to rounding (the CPU adds float lanes, these add doubles).  They
 * are queued, and arrive in the caller's host memory at rg_cuda_sums_flush.  A layer's
 * input moments (E[x x^T] and E[x], over samples, and for a convolution over its im2col
 * columns, padding included) are products and column sums here too, read back at once.
 * An output, its gradient and a layer's input are the activations' type (launch.h); the
 * weights float.
 */
#include "cuda.h"
#include "../act_rules.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STATS 5 /* per part: sum, squares, count, sum and squares of relu(x) */

/* A block's tree over its threads' STATS doubles; thread 0 gets the totals. */
__device__ static void block_fold(double v[STATS], double (*part)[RG_CUDA_THREADS]) {
    for (int k = 0; k < STATS; k++) part[k][threadIdx.x] = v[k];
    __syncthreads();
    for (unsigned half = RG_CUDA_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            for (int k = 0; k < STATS; k++) part[k][threadIdx.x] += part[k][threadIdx.x + half];
        __syncthreads();
    }
    for (int k = 0; k < STATS; k++) v[k] = part[k][0];
}

/* What unit_sums counts: the CPU's rule (stats.c) */
__device__ static inline bool counted(float v, int want, float lo, float hi) {
    return want == RG_COUNT_NEAR_BOUND ? (v < lo) | (v > hi) : want != RG_COUNT_NONE && v > 0.0f;
}

/* A value as a buffer of T stores it (bf16: rounded) */
__device__ static inline float as_stored(float v, const float *) { return v; }
__device__ static inline float as_stored(float v, const rg_bf16 *) { return __bfloat162float(__float2bfloat16(v)); }

/* A value's STATS terms added to v */
__device__ static inline void add_terms(double v[STATS], float y, int want, float lo, float hi) {
    const double d = y, pos = y > 0.0f ? d : 0.0;
    v[0] += d, v[1] += d * d, v[2] += counted(y, want, lo, hi), v[3] += pos, v[4] += pos * pos;
}

/* Block (u, p): part p of unit u's batch x inner values (sample-major), its STATS sums; with
 * result1, in the same pass, those of act(x) as the activation's forward stores it (counting
 * want1 within lo1 and hi). */
template <typename T>
__global__ static void unit_parts(const T *out, size_t size, size_t inner, size_t per_unit, int parts, int want,
                                  float lo, float hi, rg_act act, int want1, float lo1, double *result,
                                  double *result1) {
    __shared__ double part[STATS][RG_CUDA_THREADS];
    const int u = blockIdx.x, p = blockIdx.y;
    const size_t from = per_unit * p / parts, to = per_unit * (p + 1) / parts;
    const T *x = out + (size_t)u * inner;
    double v[STATS] = {0, 0, 0, 0, 0}, w[STATS] = {0, 0, 0, 0, 0};
    size_t k = from + threadIdx.x, b = k / inner, j = k % inner; /* then stepped without division */
    const size_t step_b = RG_CUDA_THREADS / inner, step_j = RG_CUDA_THREADS % inner;
    for (; k < to; k += RG_CUDA_THREADS) {
        const float y = rg_load(x, b * size + j);
        add_terms(v, y, want, lo, hi);
        if (result1) add_terms(w, as_stored(act_f(act, y), out), want1, lo1, hi);
        b += step_b, j += step_j;
        if (j >= inner) j -= inner, b++;
    }
    block_fold(v, part);
    if (threadIdx.x == 0)
        for (int s = 0; s < STATS; s++) result[((size_t)u * parts + p) * STATS + s] = v[s];
    if (!result1) return; /* the whole block's choice */
    __syncthreads();      /* every thread has read the first fold's totals */
    block_fold(w, part);
    if (threadIdx.x == 0)
        for (int s = 0; s < STATS; s++) result1[((size_t)u * parts + p) * STATS + s] = w[s];
}

/* Block (s, p): part p of segment s (len values from at[s]; or, when at is NULL, segments
 * of `each` values `stride` apart, or x's first `each` values then x1's first `each1` when
 * x1 is given), the sum of squares of x - y (x alone when y is NULL). */
template <typename T>
__global__ static void segment_squares(const T *x, const T *x1, const T *y, const size_t *at, const size_t *len,
                                       size_t stride, size_t each, size_t each1, int parts, double *result) {
    __shared__ double part[STATS][RG_CUDA_THREADS];
    const size_t s = blockIdx.x;
    const int p = blockIdx.y;
    const size_t start = at ? at[s] : x1 ? 0 : s * stride, n = len ? len[s] : x1 && s == 1 ? each1 : each;
    if (x1 && s == 1) x = x1;
    double v[STATS] = {0, 0, 0, 0, 0};
    if (start != SIZE_MAX)
        for (size_t i = n * p / parts + threadIdx.x; i < n * (p + 1) / parts; i += RG_CUDA_THREADS) {
            const double d = (double)rg_load(x, start + i) - (y ? rg_load(y, start + i) : 0.0f);
            v[0] += d * d;
        }
    block_fold(v, part);
    if (threadIdx.x == 0) result[s * parts + p] = v[0];
}

/* The watched pass's reductions are queued: each writes its parts into the device arena,
 * and rg_cuda_sums_flush copies the arena down once and folds each one's parts into the
 * host memory its caller gave, so a watched step waits on the device once, not once a sum.
 * Float arrays (the input moments) take the same way, copied as they are. */
typedef enum { UNIT_SUMS, SQUARES, FLOATS } kind;
typedef struct {
    kind what;
    size_t at;           /* its parts' first double in the arena */
    int parts;
    size_t segments;     /* units, or sums of squares */
    double *out, *out2;  /* SQUARES: out[s] (segment 1 to *out2 when given); UNIT_SUMS: sum */
    double *sq, *relu;   /* UNIT_SUMS */
    long *near;
    int *dead;
    const size_t *skip;  /* SQUARES: at[] (SIZE_MAX: left as it was), or NULL */
    float *floats;       /* FLOATS: where its `segments` floats go */
} pending;

static pending *queue;
static size_t queued, queue_room;
static void *arena, *indices_dev;
static size_t arena_room, arena_used, indices_room;  /* bytes, bytes, doubles used */
static double *results_host;                         /* pinned: a copy from the device waits less */
static size_t results_host_room;
static size_t *indices_host;                         /* pinned staging of chunk_squares' pieces, */
static size_t indices_host_room, indices_used;       /* the queued reductions' one after another */
static size_t demand, indices_demand;                /* asked since the last flush from outside */

/* Parts for segments of `each` values: enough blocks to fill the device, none under ~4096
 * values (fewer for small segments). */
static int part_count(size_t segments, size_t each) {
    size_t p = (2048 + segments - 1) / segments, most = (each + 4095) / 4096;
    if (p > most) p = most;
    if (p > 65535) p = 65535;
    return p < 1 ? 1 : (int)p;
}

static void flush_queue(void);

/* Room for `doubles` parts in the arena (queue empty: it may move), doubling from 1 MiB. */
static bool grow_arena(size_t doubles) {
    if (doubles * sizeof(double) <= arena_room) return true;
    size_t want = arena_room ? 2 * arena_room : (size_t)1 << 20;
    while (want < doubles * sizeof(double)) want *= 2;
    return rg_cuda_grow(&arena, &arena_room, want);
}

/* Room for `want` staged indices, in pinned host memory and on the device (queue empty). */
static bool grow_indices(size_t want) {
    if (!rg_cuda_grow(&indices_dev, &indices_room, want * sizeof(size_t))) return false;
    if (want > indices_host_room) {
        cudaFreeHost(indices_host);
        indices_host = NULL, indices_host_room = 0;
        if (cudaMallocHost((void **)&indices_host, want * sizeof(size_t)) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        indices_host_room = want;
    }
    return true;
}

/* Room for `doubles` parts in the arena, `entries` queue entries and `indices` staged indices
 * (chunk_squares' pieces, in pinned host memory and its device copy), the queued reductions
 * flushed first where any of them would not fit: the arena offset (*staged the staging's),
 * or SIZE_MAX when the device has no memory for them (the caller's figures are then NaN). */
static size_t reserve(size_t doubles, size_t entries = 1, size_t indices = 0, size_t *staged = NULL) {
    demand += doubles, indices_demand += indices;
    if ((arena_used + doubles) * sizeof(double) > arena_room || queued + entries > queue_room ||
        indices_used + indices > indices_host_room || (indices_used + indices) * sizeof(size_t) > indices_room)
        flush_queue();
    if (queued + entries > queue_room) {
        const size_t room = queue_room ? 2 * queue_room : 256;
        pending *q = (pending *)realloc(queue, room * sizeof *q);
        if (!q) return SIZE_MAX;
        queue = q, queue_room = room;
    }
    if (!grow_arena(doubles)) return SIZE_MAX;
    if ((indices > indices_host_room || indices * sizeof(size_t) > indices_room) && /* queue empty as well */
        !grow_indices(2 * indices)) /* room for another as large */
        return SIZE_MAX;
    if (staged) *staged = indices_used;
    indices_used += indices;
    const size_t at = arena_used;
    arena_used += doubles;
    return at;
}

static void set_nan(const pending *p) {
    for (size_t s = 0; p->what == FLOATS && s < p->segments; s++) p->floats[s] = NAN;
    for (size_t s = 0; p->what != FLOATS && s < p->segments; s++) {
        if (p->what == UNIT_SUMS) {
            p->out[s] = p->sq[s] = p->relu[2 * s] = p->relu[2 * s + 1] = NAN;
        } else if (!p->skip || p->skip[s] != SIZE_MAX) {
            if (s == 1 && p->out2) *p->out2 = NAN;
            else p->out[s] = NAN;
        }
    }
    if (p->what == UNIT_SUMS) *p->near = 0, *p->dead = 0;
}

/* One queued reduction's parts (r, NULL where the copy failed) folded in order. */
static void fold(const pending *p, const double *r) {
    if (!r) return set_nan(p);
    if (p->what == FLOATS) {
        memcpy(p->floats, r + p->at, p->segments * sizeof(float));
        return;
    }
    if (p->what == UNIT_SUMS) {
        *p->near = 0, *p->dead = 0;
        for (size_t u = 0; u < p->segments; u++) {
            double t[STATS] = {0, 0, 0, 0, 0};
            for (int k = 0; k < p->parts; k++)
                for (int j = 0; j < STATS; j++) t[j] += r[p->at + (u * p->parts + k) * STATS + j];
            p->out[u] = t[0], p->sq[u] = t[1], p->relu[2 * u] = t[3], p->relu[2 * u + 1] = t[4];
            *p->near += (long)t[2], *p->dead += t[2] == 0;
        }
        return;
    }
    for (size_t s = 0; s < p->segments; s++) {
        if (p->skip && p->skip[s] == SIZE_MAX) continue;
        double t = 0;
        for (int k = 0; k < p->parts; k++) t += r[p->at + s * p->parts + k];
        if (s == 1 && p->out2) *p->out2 = t;
        else p->out[s] = t;
    }
}

static void flush_queue(void) {
    if (!queued) return;
    const double *r = NULL;
    if (cudaGetLastError() == cudaSuccess) {
        if (arena_used > results_host_room) {
            cudaFreeHost(results_host);
            results_host = NULL, results_host_room = 0;
            if (cudaMallocHost((void **)&results_host, arena_used * sizeof *results_host) == cudaSuccess)
                results_host_room = arena_used;
            else cudaGetLastError();
        }
        if (results_host && cudaMemcpy(results_host, arena, arena_used * sizeof(double), cudaMemcpyDeviceToHost) ==
                                cudaSuccess)
            r = results_host;
    }
    for (size_t i = 0; i < queued; i++) fold(&queue[i], r);
    queued = 0, arena_used = 0, indices_used = 0;
}

/* The sums queued so far arrive.  The arena and the staging then grow to hold all that
 * was asked since the last such call, so that the next watched pass like this one queues
 * its sums without a flush of its own, which would wait for the device (and break the
 * pass's capture, replay.c); the arena up to ARENA_MOST doubles, past which a pass's
 * results arrive in more than one copy (a report's input moments of a large network's
 * layers, 4 MiB each). */
#define ARENA_MOST ((size_t)8 << 20)
extern "C" void rg_cuda_sums_flush(void) {
    flush_queue();
    grow_arena(demand < ARENA_MOST ? demand : ARENA_MOST); /* refused: reserve grows it as it needs */
    if (indices_demand > indices_host_room || indices_demand * sizeof(size_t) > indices_room)
        grow_indices(indices_demand);
    demand = indices_demand = 0;
}

extern "C" void rg_cuda_sums_mark(size_t mark[3]) { mark[0] = queued, mark[1] = arena_used, mark[2] = indices_used; }

/* back to the mark: the sums queued since dropped (unless a flush has folded them since) */
extern "C" void rg_cuda_sums_back(const size_t mark[3]) {
    if (queued < mark[0]) return;
    queued = mark[0], arena_used = mark[1], indices_used = mark[2];
}

/* unit_parts over the activations' type T (RG_STORED picks it) */
template <typename T>
static void unit_parts_of(const float *out, dim3 grid, size_t size, size_t inner, size_t per_unit, int parts,
                          int want, float lo, float hi, rg_act act, int want1, float lo1, double *result,
                          double *result1) {
    RG_KERNEL(unit_parts<T>, grid, RG_CUDA_THREADS)(rg_as<T>(out), size, inner, per_unit, parts, want, lo, hi, act,
                                                    want1, lo1, result, result1);
}

/* The per-unit sums of out into p's outputs, and with q those of act(out) into q's, in one
 * launch. */
static void unit_sums(const float *out, size_t size, int units, int batch, rg_count_kind want, float lo, float hi,
                      const pending &p, rg_act act, rg_count_kind act_want, float act_lo, const pending *q) {
    const size_t u = (size_t)units, each = u * p.parts * STATS; /* a set's parts */
    const size_t at = units > 0 ? reserve(q ? 2 * each : each, q ? 2 : 1) : SIZE_MAX;
    if (at == SIZE_MAX) {
        if (q) set_nan(q);
        return set_nan(&p);
    }
    const size_t inner = size / u, per_unit = (size_t)batch * inner;
    double *result = (double *)arena + at;
    RG_STORED(unit_parts_of, out, dim3((unsigned)units, (unsigned)p.parts), size, inner, per_unit, p.parts, (int)want,
              lo, hi, act, (int)act_want, act_lo, result, q ? result + each : NULL);
    queue[queued] = p, queue[queued++].at = at;
    if (q) queue[queued] = *q, queue[queued++].at = at + each;
}

/* A UNIT_SUMS entry for `units` units' sums (sum, sq and relu: units values each, relu two). */
static pending unit_pending(size_t size, int units, int batch, double *sum, double *sq, double *relu, long *near,
                            int *dead) {
    const size_t u = (size_t)units;
    const int parts = part_count(u, (size_t)batch * (size / (u ? u : 1)));
    const pending p = {UNIT_SUMS, 0, parts, u, sum, NULL, sq, relu, near, dead, NULL, NULL};
    return p;
}

extern "C" void rg_cuda_unit_sums(const float *out, size_t size, int units, int batch, rg_count_kind want,
                                  float lo, float hi, double *sum, double *sq, double *relu, long *near,
                                  int *dead) {
    const pending p = unit_pending(size, units, batch, sum, sq, relu, near, dead);
    unit_sums(out, size, units, batch, want, lo, hi, p, RG_ACT_RELU, RG_COUNT_NONE, 0, NULL);
}

extern "C" void rg_cuda_unit_sums_through(const float *out, size_t size, int units, int batch, rg_count_kind want,
                                          float lo, float hi, double *sums, long *near, int *dead, rg_act act,
                                          rg_count_kind act_want, float act_lo, double *act_sums, long *act_near,
                                          int *act_dead) {
    const size_t u = (size_t)units;
    const pending p = unit_pending(size, units, batch, sums, sums + u, sums + 2 * u, near, dead);
    const pending q = unit_pending(size, units, batch, act_sums, act_sums + u, act_sums + 2 * u, act_near, act_dead);
    unit_sums(out, size, units, batch, want, lo, hi, p, act, act_want, act_lo, &q);
}

/* Sums of squares of `segments` segments (see segment_squares) of values of type T (bf16
 * for the activations' gradients under bf16, else float) queued for out (segment 1's for
 * *out2 when given). */
template <typename T>
static void squares_of(const float *x, const float *x1, const float *y, const size_t *at, const size_t *len,
                       size_t stride, size_t each, size_t each1, size_t segments, double *out, double *out2) {
    size_t longest = x1 && each1 > each ? each1 : each;
    for (size_t s = 0; len && s < segments; s++)
        if (at[s] != SIZE_MAX && len[s] > longest) longest = len[s];
    const int parts = part_count(segments, longest);
    const pending p = {SQUARES, 0, parts, segments, out, out2, NULL, NULL, NULL, NULL, at, NULL};
    size_t staged = 0;
    const size_t slot = segments && segments <= 0x7fffffff ? reserve(segments * parts, 1, at ? 2 * segments : 0,
                                                                     &staged)
                                                           : SIZE_MAX;
    bool placed = !at;
    if (at && slot != SIZE_MAX) { /* copied up in line with the launch, from staging no later call rewrites */
        size_t *h = indices_host + staged;
        memcpy(h, at, segments * sizeof(size_t));
        memcpy(h + segments, len, segments * sizeof(size_t));
        placed = rg_cuda_copy_async((size_t *)indices_dev + staged, h, 2 * segments * sizeof(size_t),
                                    cudaMemcpyHostToDevice) == cudaSuccess;
    }
    if (slot == SIZE_MAX || !placed) {
        if (slot != SIZE_MAX) arena_used -= segments * parts, indices_used = staged;
        return set_nan(&p);
    }
    const size_t *at_dev = at ? (const size_t *)indices_dev + staged : NULL, *len_dev = at ? at_dev + segments : NULL;
    RG_KERNEL(segment_squares<T>, dim3((unsigned)segments, (unsigned)parts), RG_CUDA_THREADS)(
        rg_as<T>(x), rg_as<T>(x1), rg_as<T>(y), at_dev, len_dev, stride, each, each1, parts, (double *)arena + slot);
    queue[queued] = p, queue[queued++].at = slot;
}

extern "C" void rg_cuda_sample_squares(const float *x, size_t size, int batch, double *out) {
    RG_STORED(squares_of, x, NULL, NULL, NULL, NULL, size, size, 0, (size_t)batch, out, NULL);
}

extern "C" void rg_cuda_squares_apart(const float *a, size_t na, const float *b, size_t nb, double *sa, double *sb) {
    RG_STORED(squares_of, a, b, NULL, NULL, NULL, 0, na, nb, 2, sa, sb); /* a's and b's in one launch */
}

extern "C" void rg_cuda_chunk_squares(const float *a, const float *b, const size_t *at, const size_t *len,
                                      size_t n, double *out) {
    squares_of<float>(a, NULL, b, at, len, 0, 0, 0, n, out, NULL);
}

extern "C" void rg_cuda_pieces_squares(const float *x, const size_t *at, const size_t *len, size_t n, double *out) {
    rg_cuda_chunk_squares(x, NULL, at, len, n, out);
}

extern "C" void rg_cuda_squares2(const float *a, const float *b, float *keep, size_t n, double *sa, double *sb) {
    squares_of<float>(a, b, NULL, NULL, NULL, 0, n, n, b ? 2 : 1, sa, sb); /* a's and b's in one launch */
    if (b && keep) rg_cuda_copy(keep, b, n);
}

/* Room in the queue for n figures' parts that a caller's kernel writes, figure i's parts[i]
 * doubles after those before it, each figure's added in order into *out[i] at the flush:
 * the device address of the first, or NULL (each *out[i] NaN) without device memory for
 * them.  GRA's per-layer figures (reduce.cu, gra.cu) arrive this way. */
extern "C" double *rg_cuda_sums_slots(size_t n, const size_t *parts, double *const *out) {
    size_t total = 0;
    bool fits = n > 0;
    for (size_t i = 0; i < n; i++) total += parts[i], fits = fits && parts[i] > 0 && parts[i] <= 0x7fffffff;
    const size_t slot = fits ? reserve(total, n) : SIZE_MAX;
    for (size_t i = 0, at = slot; i < n; at += parts[i++]) {
        const pending p = {SQUARES, 0, (int)parts[i], 1, out[i], NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        if (slot == SIZE_MAX) set_nan(&p);
        else queue[queued] = p, queue[queued++].at = at;
    }
    return slot == SIZE_MAX ? nullptr : (double *)arena + slot;
}

/* Room in the queue for n float arrays that a caller's kernels write, array i count[i]
 * floats at dev[i] (each 256-byte aligned, as an allocation is), arriving in host[i] at the
 * flush: false (each host[i] NaN) without device memory for them. */
static bool floats_slots(size_t n, const size_t *count, float *const *host, float **dev) {
    enum { ALIGN = 256 / sizeof(double) };
    size_t total = ALIGN - 1;
    for (size_t i = 0; i < n; i++) total += (count[i] + 2 * ALIGN - 1) / (2 * ALIGN) * ALIGN;
    const size_t slot = reserve(total, n);
    for (size_t i = 0, at = slot == SIZE_MAX ? 0 : (slot + ALIGN - 1) / ALIGN * ALIGN; i < n; i++) {
        pending p = {FLOATS, at, 1, count[i], NULL, NULL, NULL, NULL, NULL, NULL, NULL, host[i]};
        if (slot == SIZE_MAX) {
            set_nan(&p);
            continue;
        }
        dev[i] = (float *)((double *)arena + at);
        queue[queued++] = p;
        at += (count[i] + 2 * ALIGN - 1) / (2 * ALIGN) * ALIGN;
    }
    return slot != SIZE_MAX;
}

/* ------------------------------------------------------------- input moments */

/* Value e of the columns of samples first.. laid out row by row, a row holding every
 * sample's positions in turn: row (c, i, j) at (sample, position) is x under tap (i, j) of
 * channel c, 0 in the padding.  rows x count x p values; e = (row count + sample) p + pos. */
template <typename T>
struct column_value {
    const T *x;
    rg_conv_geom q;
    size_t in_size, p, count;
    __device__ float at(size_t e) const {
        const size_t pos = e % p, b = e / p % count, row = e / p / count;
        const int c = (int)(row / (q.kh * q.kw)), i = (int)(row / q.kw % q.kh), j = (int)(row % q.kw);
        const int iy = (int)(pos / q.ow) * q.stride - q.pad_t + i * q.dilation;
        const int ix = (int)(pos % q.ow) * q.stride - q.pad_l + j * q.dilation;
        return iy >= 0 && iy < q.h && ix >= 0 && ix < q.w ? rg_load(x, b * in_size + ((size_t)c * q.h + iy) * q.w + ix)
                                                          : 0.0f;
    }
    /* for rg_cuda_channel_sums over (sample, row, position): the value, re-indexed */
    __device__ double2 operator()(size_t e) const {
        const size_t rows = (size_t)q.c * q.kh * q.kw, pos = e % p, row = e / p % rows, b = e / p / rows;
        return {at((row * count + b) * p + pos), 0.0};
    }
};
template <typename T> static inline void rg_note_members(const column_value<T> &v) {
    rg_cuda_note_all(v.x, v.q, v.in_size, v.p, v.count);
}

template <typename T>
__global__ static void columns_by_row(column_value<T> v, float *col, size_t n) {
    GRID_STRIDE(e, n) col[e] = v.at(e);
}

/* a dense layer's bf16 input as floats, for its product */
__global__ static void widen(const rg_bf16 *x, float *out, size_t n) {
    GRID_STRIDE(i, n) out[i] = rg_load(x, i);
}

/* one block a column: its mean over samples (and positions), in a fixed order */
template <typename T>
__global__ static void column_means(const T *x, column_value<T> v, bool conv, int f, size_t hw, int batch,
                                    float *mean) {
    const int c = blockIdx.x;
    const size_t n = (size_t)batch * hw;
    const double s = conv ? rg_cuda_channel_sums(f, hw, c, 0, n, v).x
                          : rg_cuda_channel_sums(f, 1, c, 0, n, rg_cuda_each<T, rg_cuda_value>{x, NULL, {}}).x;
    if (threadIdx.x == 0) mean[c] = (float)(s / (double)n);
}

static float *cols_dev;
static size_t cols_room;

/* columns of at most this many floats at a time (a product over their samples each) */
#define COLUMN_FLOATS ((size_t)16 << 20)

/* The moments over the activations' type T into moment and mean, and a dense layer's
 * input itself into rows when asked (device memory all three): a dense layer's bf16 input
 * is widened to floats first, a convolution's columns are made as floats either way. */
template <typename T>
static rg_status moments(const float *xf, size_t size, int batch, int f, const rg_conv_geom *q, float *moment,
                         float *mean, float *rows) {
    const size_t p = q ? (size_t)q->oh * q->ow : 1;
    const T *x = rg_as<T>(xf);
    column_value<T> v = {x, q ? *q : rg_conv_geom{}, size, p, (size_t)batch};
    RG_KERNEL(column_means<T>, f, RG_CUDA_THREADS)(x, v, q != NULL, f, p, batch, mean);
    rg_status s = RG_OK;
    if (!q) {
        const float *in = xf;
        if (rg_cuda_activations_bf16) { /* f values a sample */
            if (!rg_cuda_grow((void **)&cols_dev, &cols_room, (size_t)batch * f * sizeof(float))) return RG_ERR_MEMORY;
            LAUNCH(widen, (size_t)batch * f, (const rg_bf16 *)xf, cols_dev, (size_t)batch * f);
            in = cols_dev;
        }
        s = rg_cuda_sgemm(true, false, f, f, batch, 1.0f / batch, in, f, in, f, 0.0f, moment, f);
        if (rows) rg_cuda_copy(rows, in, (size_t)batch * f);
    } else {
        const size_t per_sample = (size_t)f * p;
        const int chunk = (int)(per_sample * batch <= COLUMN_FLOATS ? batch : COLUMN_FLOATS / per_sample > 0 ? COLUMN_FLOATS / per_sample : 1);
        if (!rg_cuda_grow((void **)&cols_dev, &cols_room, per_sample * chunk * sizeof(float))) return RG_ERR_MEMORY;
        const float scale = 1.0f / ((float)batch * p);
        for (int b = 0; b < batch && !s; b += chunk) {
            const int count = batch - b < chunk ? batch - b : chunk;
            const column_value<T> c = {x + (size_t)b * size, *q, size, p, (size_t)count};
            LAUNCH(columns_by_row<T>, per_sample * count, c, cols_dev, per_sample * count);
            const int k = (int)(p * count);
            s = rg_cuda_sgemm(false, true, f, f, k, scale, cols_dev, k, cols_dev, k, b ? 1.0f : 0.0f, moment, f);
        }
    }
    return s;
}

extern "C" rg_status rg_cuda_input_moments(const float *x, size_t size, int batch, int f, const rg_conv_geom *q,
                                           float *moment, float *mean, float *rows) {
    if (batch <= 0 || f <= 0) return RG_ERR_ARG;
    const size_t count[3] = {(size_t)f * f, (size_t)f, (size_t)batch * f};
    float *const host[3] = {moment, mean, rows};
    float *dev[3] = {NULL, NULL, NULL};
    if (!floats_slots(rows && !q ? 3 : 2, count, host, dev)) return RG_ERR_MEMORY;
    return RG_STORED(moments, x, size, batch, f, q, dev[0], dev[1], dev[2]);
}

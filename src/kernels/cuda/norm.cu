/*
 * norm.cu — batch normalisation on the device, as the CPU's op_norm.c defines it: in
 * training each channel's mean and biased variance over samples and positions, from one
 * pass's sums of x and x^2 in double (a channel's values cut into runs (launch.h), one block a
 * run folding a fixed stride and then a tree, four values a load where the planes allow,
 * the runs' sums added in order by the channel's last block, which finishes the channel in
 * the same launch: the same bits every run; in double, E[x^2] - E[x]^2 loses nothing a
 * float variance keeps; or taken already, in that order, by the convolution that wrote x:
 * conv.cu), the running statistics updated with Bessel's correction;
 * otherwise the running statistics; y = x scale + shift, then a fused relu when memory planning gave it one.  Backward:
 * dgamma, dbeta and dx from one pass's sums of dy and dy x per channel (dy (x - mean) is
 * their combination), dy masked by the fused relu.  The tangent (forward mode) is backward's
 * map of the input's tangent, from the same sums of it, plus gamma's and beta's directions.
 * aux holds mean[C], inv[C] and the (scale, shift) pairs.  x, y and their gradients are the
 * activations' type (launch.h); the statistics, sums and aux are float or double.
 */
#include "cuda.h"
#include "launch.h"
#include "statistics.h"

#include <cuda_runtime.h>

/* dy masked by a fused relu: 0 where x scale + shift was not positive */
__device__ static float masked(float dy, float x, const float *pair) {
    return pair && !(x * pair[0] + pair[1] > 0) ? 0.0f : dy;
}

/* A value's terms of backward's sums: h (dy masked by the fused relu, pair: its channel's),
 * and h x */
struct gradient_and_times_x {
    const float *pair;
    __device__ double2 operator()(float x, float dy) const {
        const double h = masked(dy, x, pair);
        return {h, h * x};
    }
    __device__ gradient_and_times_x of_channel(int c) const { return {pair ? pair + 2 * c : NULL}; }
};

/* Device scratch for the runs' sums (rg_cuda_run_sums: batch norm's, a bias gradient's)
 * and their tickets (zeroed when made), grown to the largest need. */
static double *parts;
static unsigned *tickets;
static size_t parts_size, tickets_size;

extern "C" rg_cuda_runs_scratch rg_cuda_run_scratch(size_t doubles, int channels, const char *what) {
    const size_t had = tickets_size, want = (size_t)channels * sizeof(unsigned);
    const bool ok = rg_cuda_grow((void **)&parts, &parts_size, doubles * sizeof(double)) &&
                    rg_cuda_grow((void **)&tickets, &tickets_size, want < 4096 ? 4096 : want) &&
                    (tickets_size == had || cudaMemset(tickets, 0, tickets_size) == cudaSuccess);
    if (ok) return {parts, tickets};
    cudaGetLastError();
    rg_cuda_note_failure(what, "no device memory for its sums");
    return {NULL, NULL};
}

__global__ static void running_statistics(int C, float eps, const float *gamma, const float *beta, const float *rmean,
                                          const float *rvar, float *aux) {
    GRID_STRIDE(c, (size_t)C) {
        const float inv = 1.0f / sqrtf(rvar[c] + eps);
        aux[c] = rmean[c], aux[C + c] = inv;
        aux[2 * C + 2 * c] = gamma[c] * inv;
        aux[2 * C + 2 * c + 1] = beta[c] - rmean[c] * aux[2 * C + 2 * c];
    }
}

/* y = x scale + shift, then the fused relu (rg_cuda_channel_map's f) */
struct affine {
    const float *pair;
    bool relu;
    __device__ float operator()(int c, float x, float) const {
        const float v = x * pair[2 * c] + pair[2 * c + 1];
        return relu && v < 0 ? 0.0f : v;
    }
};
static inline void rg_note_members(const affine &v) { rg_cuda_note_all(v.pair, v.relu); }

/* rg_cuda_run_sums' done: from channel c's sums of h and h x, dgamma and dbeta (each added
 * to when not NULL) and (k, mean h, mean h x^) for backward's map */
struct gradient_done {
    size_t m;
    int C;
    const float *gamma, *aux;
    float *dgamma, *dbeta, *coef;
    __device__ void operator()(int c, const double *part, int runs) const {
        const float inv = aux[C + c];
        const double sdy = rg_cuda_runs_total(part, c, runs, 0), /* sum h, then sum h (x - mean) inv */
            sdyx = (rg_cuda_runs_total(part, c, runs, 1) - (double)aux[c] * sdy) * inv;
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        coef[3 * c] = gamma[c] * inv;
        coef[3 * c + 1] = (float)(sdy / m);
        coef[3 * c + 2] = (float)(sdyx / m);
    }
};
static inline void rg_note_members(const gradient_done &v) {
    rg_cuda_note_all(v.m, v.C, v.gamma, v.aux, v.dgamma, v.dbeta, v.coef);
}

/* gamma inv (h - E[h] - x^ E[h x^]) in training, else gamma inv h: backward's map of h, and
 * the tangent's of the input's tangent */
__device__ static float through(float h, float x, int c, int C, const float *aux, const float *coef, bool train) {
    const float k = coef[3 * c];
    return train ? k * (h - coef[3 * c + 1] - (x - aux[c]) * aux[C + c] * coef[3 * c + 2]) : k * h;
}

/* the input's gradient from x and dy (rg_cuda_channel_map's f) */
struct input_gradient {
    int C;
    const float *aux, *coef;
    bool train, relu;
    __device__ float operator()(int c, float x, float dy) const {
        return through(masked(dy, x, relu ? aux + 2 * C + 2 * c : NULL), x, c, C, aux, coef, train);
    }
};
static inline void rg_note_members(const input_gradient &v) {
    rg_cuda_note_all(v.C, v.aux, v.coef, v.train, v.relu);
}

/* the tangent from x and the input's tangent: the latter through the normalisation, plus
 * gamma's and beta's directions (rg_cuda_channel_map's f) */
struct tangent_values {
    int C;
    const float *aux, *coef;
    bool train;
    const float *dgamma, *dbeta;
    __device__ float operator()(int c, float x, float t_in) const {
        const float xh = (x - aux[c]) * aux[C + c];
        return through(t_in, x, c, C, aux, coef, train) + (dgamma ? dgamma[c] * xh : 0.0f) + (dbeta ? dbeta[c] : 0.0f);
    }
};
static inline void rg_note_members(const tangent_values &v) {
    rg_cuda_note_all(v.C, v.aux, v.coef, v.train, v.dgamma, v.dbeta);
}

template <typename T>
static void forward(const float *xf, float *yf, int batch, int C, size_t hw, bool train,
                    const rg_cuda_norm_statistics *p, bool relu) {
    const T *x = rg_as<T>(xf);
    const size_t m = (size_t)batch * hw;
    if (train && !p->made) {
        const int runs = rg_cuda_runs(C, m);
        const rg_cuda_runs_scratch s = rg_cuda_run_scratch(2 * (size_t)runs * C, C, "batch norm");
        if (!s.part) return;
        rg_cuda_launch_run_sums4(C, hw, m, runs, x, (const T *)NULL, value_and_square{}, rg_statistics_done(m, C, p), s);
    } else if (!train)
        LAUNCH(running_statistics, (size_t)C, C, p->eps, p->gamma, p->beta, p->rmean, p->rvar, p->aux);
    rg_cuda_channel_map(x, (const T *)NULL, rg_as<T>(yf), false, m * C, C, hw, affine{p->aux + 2 * C, relu});
}

extern "C" void rg_cuda_batch_norm_forward(const float *x, float *y, int batch, int C, size_t hw, bool train,
                                           const rg_cuda_norm_statistics *p, bool relu) {
    if (batch > 0) RG_STORED(forward, x, y, batch, C, hw, train, p, relu);
}

/* Per channel, from one pass's sums of h (dy masked by the fused relu, or a tangent) and h x:
 * dgamma and dbeta added to (when not NULL) and the coefficients of backward's map into
 * coef; false when the device has no memory for the sums. */
template <typename T>
static bool map_coefficients(const T *x, const T *h, int batch, int C, size_t hw, const float *gamma,
                             const float *aux, bool relu, float *dgamma, float *dbeta, float *coef) {
    const size_t m = (size_t)batch * hw;
    const int runs = rg_cuda_runs(C, m);
    const rg_cuda_runs_scratch s = rg_cuda_run_scratch(2 * (size_t)runs * C, C, "batch norm");
    if (!s.part) return false;
    rg_cuda_launch_run_sums4(C, hw, m, runs, x, h, gradient_and_times_x{relu ? aux + 2 * C : NULL},
                             gradient_done{m, C, gamma, aux, dgamma, dbeta, coef}, s);
    return true;
}

template <typename T>
static void backward(const float *xf, const float *dyf, float *dx, int batch, int C, size_t hw, bool train,
                     const float *gamma, const float *aux, bool relu, float *dgamma, float *dbeta, float *coef,
                     bool fresh) {
    const size_t n = (size_t)batch * hw * C;
    const T *x = rg_as<T>(xf), *dy = rg_as<T>(dyf);
    if (!map_coefficients(x, dy, batch, C, hw, gamma, aux, relu, dgamma, dbeta, coef)) return;
    if (dx) rg_cuda_channel_map(x, dy, rg_as<T>(dx), !fresh, n, C, hw, input_gradient{C, aux, coef, train, relu});
}

extern "C" void rg_cuda_batch_norm_backward(const float *x, const float *dy, float *dx, int batch, int C, size_t hw,
                                            bool train, const float *gamma, const float *aux, bool relu,
                                            float *dgamma, float *dbeta, float *coef, bool fresh) {
    if (batch > 0) RG_STORED(backward, x, dy, dx, batch, C, hw, train, gamma, aux, relu, dgamma, dbeta, coef, fresh);
}

template <typename T>
static void tangent(const float *xf, const float *t_inf, float *t, int batch, int C, size_t hw, bool train,
                    const float *gamma, const float *aux, const float *dgamma, const float *dbeta, float *coef) {
    const size_t n = (size_t)batch * hw * C;
    const T *x = rg_as<T>(xf), *t_in = rg_as<T>(t_inf);
    if (!map_coefficients(x, t_in, batch, C, hw, gamma, aux, false, NULL, NULL, coef)) return;
    rg_cuda_channel_map(x, t_in, rg_as<T>(t), false, n, C, hw, tangent_values{C, aux, coef, train, dgamma, dbeta});
}

extern "C" void rg_cuda_batch_norm_tangent(const float *x, const float *t_in, float *t, int batch, int C, size_t hw,
                                           bool train, const float *gamma, const float *aux, const float *dgamma,
                                           const float *dbeta, float *coef) {
    if (batch > 0) RG_STORED(tangent, x, t_in, t, batch, C, hw, train, gamma, aux, dgamma, dbeta, coef);
}

/* The backward tangent (op_norm.c's rg_cpu_batch_norm_backward_tangent_values, its
 * arithmetic): one block a channel, its sums over samples and positions by
 * rg_cuda_channel_sums (a fixed order), then dgamma's term and dx's; fp32. */
__global__ static void backward_tangent(const float *x, const float *t, const float *dy, float *dx, float *dgamma,
                                        int batch, int C, size_t hw, bool train, const float *aux, bool fused,
                                        const float *gamma, const float *gamma_t) {
    const size_t values = (size_t)batch * hw;
    const double m = (double)values;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        const float mean = aux[c], *relu = fused ? aux + 2 * C + 2 * c : NULL;
        const double s = aux[C + c];
        double e_t = 0, ex_t = 0, eh = 0, ehx = 0; /* E[x_t], E[x^ x_t], E[h], E[h x^] */
        if (train) {
            const double2 a = rg_cuda_channel_sums(C, hw, c, 0, values, [=](size_t i) {
                const double xh = (x[i] - mean) * s;
                return double2{t[i], xh * t[i]};
            });
            const double2 b = rg_cuda_channel_sums(C, hw, c, 0, values, [=](size_t i) {
                const double xh = (x[i] - mean) * s, h = masked(dy[i], x[i], relu);
                return double2{h, h * xh};
            });
            e_t = a.x / m, ex_t = a.y / m, eh = b.x / m, ehx = b.y / m;
        }
        double ehx_t = rg_cuda_channel_sums(C, hw, c, 0, values, [=](size_t i) {
                           const double xh = (x[i] - mean) * s, h = masked(dy[i], x[i], relu);
                           return double2{h * s * (train ? t[i] - e_t - xh * ex_t : t[i]), 0.0};
                       }).x; /* E[h x^_t], times m */
        if (threadIdx.x == 0) dgamma[c] += (float)ehx_t;
        ehx_t /= m;
        if (!dx) continue;
        const double k_t = (gamma_t ? gamma_t[c] * s : 0) - (train ? gamma[c] * s * s * ex_t : 0);
        for (size_t v = threadIdx.x; v < values; v += blockDim.x) {
            const size_t i = (v / hw * C + c) * hw + v % hw;
            const double xh = (x[i] - mean) * s, h = masked(dy[i], x[i], relu);
            if (!train) {
                dx[i] += (float)(k_t * h);
                continue;
            }
            const double xh_t = s * (t[i] - e_t - xh * ex_t);
            dx[i] += (float)(k_t * (h - eh - xh * ehx) - gamma[c] * s * (xh_t * ehx + xh * ehx_t));
        }
    }
}

extern "C" void rg_cuda_batch_norm_backward_tangent(const float *x, const float *t, const float *dy, float *dx,
                                                    float *dgamma, int batch, int C, size_t hw, bool train,
                                                    const float *aux, bool fused, const float *gamma,
                                                    const float *gamma_t) {
    if (batch > 0 && C > 0)
        RG_KERNEL(backward_tangent, dim3((unsigned)(C < 65535 ? C : 65535)), RG_CUDA_THREADS)(
            x, t, dy, dx, dgamma, batch, C, hw, train, aux, fused, gamma, gamma_t);
}

/*
 * norm.cu — batch normalisation on the device, as the CPU's op_norm.c defines it: in
 * training each channel's mean and biased variance over samples and positions (sums in
 * double: a channel's values cut into `chunks` runs, one block a run folding a fixed stride
 * and then a tree, the runs' sums added in order: the same bits every run), the running
 * statistics updated with Bessel's correction; otherwise the running
 * statistics; y = x scale + shift, then a fused relu when memory planning gave it one.
 * Backward: dgamma, dbeta and dx from the sums of dy and dy (x - mean) per channel, dy masked
 * by the fused relu.  aux holds mean[C], inv[C] and the (scale, shift) pairs.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

/* dy masked by a fused relu: 0 where x scale + shift was not positive */
__device__ static float masked(float dy, float x, const float *pair) {
    return pair && !(x * pair[0] + pair[1] > 0) ? 0.0f : dy;
}

struct centred_square {
    const float *x;
    float mu;
    __device__ double operator()(size_t i) const {
        const float d = x[i] - mu;
        return (double)d * d;
    }
};
struct gradient {
    const float *x, *dy, *pair;
    __device__ double operator()(size_t i) const { return masked(dy[i], x[i], pair); }
};
struct gradient_times_centred {
    const float *x, *dy;
    float mu;
    const float *pair;
    __device__ double operator()(size_t i) const { return (double)masked(dy[i], x[i], pair) * (x[i] - mu); }
};

/* How many runs a channel's m values are cut into: enough blocks for the device when the
 * channels are few, none shorter than 2,048 values. */
static int chunks(int C, size_t m) {
    const size_t most = C < 512 ? 1024 / (size_t)C : 1, by_length = (m + 2047) / 2048;
    return (int)(by_length < most ? (by_length ? by_length : 1) : most);
}

/* the run of values block (c, run) of a C x runs grid sums */
__device__ static void run_of(size_t m, size_t *from, size_t *to) {
    const size_t len = (m + gridDim.y - 1) / gridDim.y;
    *from = blockIdx.y * len;
    *to = *from + len < m ? *from + len : m;
}

/* the sum of channel c's runs' sums, in order */
__device__ static double runs_total(const double *part, int c, int runs) {
    double s = 0;
    for (int r = 0; r < runs; r++) s += part[(size_t)c * runs + r];
    return s;
}

/* Device scratch for the runs' sums (double), grown to the largest batch norm's need. */
static double *parts;
static size_t parts_size;

static double *parts_for(size_t n) {
    if (rg_cuda_grow((void **)&parts, &parts_size, n * sizeof(double))) return parts;
    rg_cuda_note_failure("batch norm", "no device memory for its sums");
    return NULL;
}

/* C x runs blocks: each run's sum of x (mean_part), then with the mean each run's sum of
 * (x - mean)^2 (var_part) */
__global__ static void mean_parts(const float *x, int C, size_t hw, size_t m, double *mean_part) {
    size_t from, to;
    run_of(m, &from, &to);
    const double s = rg_cuda_channel_sum(C, hw, blockIdx.x, from, to, rg_cuda_values{x});
    if (!threadIdx.x) mean_part[(size_t)blockIdx.x * gridDim.y + blockIdx.y] = s;
}

__global__ static void var_parts(const float *x, int C, size_t hw, size_t m, const double *mean_part,
                                 double *var_part) {
    const int c = blockIdx.x;
    const float mu = (float)(runs_total(mean_part, c, gridDim.y) / m);
    size_t from, to;
    run_of(m, &from, &to);
    const double s = rg_cuda_channel_sum(C, hw, c, from, to, centred_square{x, mu});
    if (!threadIdx.x) var_part[(size_t)c * gridDim.y + blockIdx.y] = s;
}

/* one thread a channel: the batch's statistics, the running ones, the affine pair */
__global__ static void train_statistics(const double *mean_part, const double *var_part, int runs, int C, size_t m,
                                        float eps, float momentum, const float *gamma, const float *beta,
                                        float *rmean, float *rvar, float *aux) {
    GRID_STRIDE(c, (size_t)C) {
        const float mu = (float)(runs_total(mean_part, c, runs) / m);
        const double var = runs_total(var_part, c, runs) / m;
        const float inv = (float)(1.0 / sqrt(var + eps));
        aux[c] = mu, aux[C + c] = inv;
        rmean[c] = (1.0f - momentum) * rmean[c] + momentum * mu;
        rvar[c] = (1.0f - momentum) * rvar[c] + momentum * (float)(var * m / (m - 1));
        aux[2 * C + 2 * c] = gamma[c] * inv;
        aux[2 * C + 2 * c + 1] = beta[c] - mu * aux[2 * C + 2 * c];
    }
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

__global__ static void affine(const float *x, float *y, size_t n, int C, size_t hw, const float *pair, bool relu) {
    GRID_STRIDE(i, n) {
        const int c = rg_cuda_channel_of(i, hw, C);
        const float v = x[i] * pair[2 * c] + pair[2 * c + 1];
        y[i] = relu && v < 0 ? 0.0f : v;
    }
}

/* C x runs blocks: each run's sums of dy and dy (x - mean), masked by the fused relu */
__global__ static void gradient_parts(const float *x, const float *dy, int C, size_t hw, size_t m, const float *aux,
                                      bool relu, double *dy_part, double *dyx_part) {
    const int c = blockIdx.x;
    const float mu = aux[c], *pair = relu ? aux + 2 * C + 2 * c : NULL;
    size_t from, to;
    run_of(m, &from, &to);
    const double sdy = rg_cuda_channel_sum(C, hw, c, from, to, gradient{x, dy, pair});
    const double sdyx = rg_cuda_channel_sum(C, hw, c, from, to, gradient_times_centred{x, dy, mu, pair});
    if (!threadIdx.x) dy_part[(size_t)c * gridDim.y + blockIdx.y] = sdy, dyx_part[(size_t)c * gridDim.y + blockIdx.y] = sdyx;
}

/* one thread a channel: dgamma, dbeta, and (k, mean dy, mean dy x^) for the input's gradient */
__global__ static void gradient_sums(const double *dy_part, const double *dyx_part, int runs, int C, size_t m,
                                     const float *gamma, const float *aux, float *dgamma, float *dbeta, float *coef) {
    GRID_STRIDE(c, (size_t)C) {
        const float inv = aux[C + c];
        const double sdy = runs_total(dy_part, c, runs), sdyx = runs_total(dyx_part, c, runs) * inv;
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        coef[3 * c] = gamma[c] * inv;
        coef[3 * c + 1] = (float)(sdy / m);
        coef[3 * c + 2] = (float)(sdyx / m);
    }
}

__global__ static void input_gradient(const float *x, const float *dy, float *dx, size_t n, int C, size_t hw,
                                      const float *aux, const float *coef, bool train, bool relu, bool fresh) {
    GRID_STRIDE(i, n) {
        const int c = rg_cuda_channel_of(i, hw, C);
        const float h = masked(dy[i], x[i], relu ? aux + 2 * C + 2 * c : NULL), k = coef[3 * c];
        const float g = train ? k * (h - coef[3 * c + 1] - (x[i] - aux[c]) * aux[C + c] * coef[3 * c + 2]) : k * h;
        dx[i] = fresh ? g : dx[i] + g;
    }
}

extern "C" void rg_cuda_batch_norm_forward(const float *x, float *y, int batch, int C, size_t hw, bool train,
                                           float eps, float momentum, const float *gamma, const float *beta,
                                           float *rmean, float *rvar, float *aux, bool relu) {
    if (batch <= 0) return;
    const size_t m = (size_t)batch * hw;
    const int runs = chunks(C, m);
    double *part = train ? parts_for(2 * (size_t)runs * C) : NULL;
    if (train && !part) return;
    if (train) {
        const dim3 grid((unsigned)C, (unsigned)runs);
        mean_parts<<<grid, RG_CUDA_THREADS>>>(x, C, hw, m, part);
        var_parts<<<grid, RG_CUDA_THREADS>>>(x, C, hw, m, part, part + (size_t)runs * C);
        LAUNCH(train_statistics, (size_t)C, part, part + (size_t)runs * C, runs, C, m, eps, momentum, gamma, beta,
               rmean, rvar, aux);
    } else LAUNCH(running_statistics, (size_t)C, C, eps, gamma, beta, rmean, rvar, aux);
    LAUNCH(affine, m * C, x, y, m * C, C, hw, aux + 2 * C, relu);
}

extern "C" void rg_cuda_batch_norm_backward(const float *x, const float *dy, float *dx, int batch, int C, size_t hw,
                                            bool train, const float *gamma, const float *aux, bool relu,
                                            float *dgamma, float *dbeta, float *coef, bool fresh) {
    if (batch <= 0) return;
    const size_t m = (size_t)batch * hw;
    const int runs = chunks(C, m);
    double *part = parts_for(2 * (size_t)runs * C);
    if (!part) return;
    gradient_parts<<<dim3((unsigned)C, (unsigned)runs), RG_CUDA_THREADS>>>(x, dy, C, hw, m, aux, relu, part,
                                                                          part + (size_t)runs * C);
    LAUNCH(gradient_sums, (size_t)C, part, part + (size_t)runs * C, runs, C, m, gamma, aux, dgamma, dbeta, coef);
    if (dx) LAUNCH(input_gradient, m * C, x, dy, dx, m * C, C, hw, aux, coef, train, relu, fresh);
}

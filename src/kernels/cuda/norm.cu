/*
 * norm.cu — batch normalisation on the device, as the CPU's op_norm.c defines it: in
 * training each channel's mean and biased variance over samples and positions (sums in
 * double, one block a channel folding a fixed stride and then a tree: the same bits every
 * run), the running statistics updated with Bessel's correction; otherwise the running
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

/* one block a channel: the batch's statistics, the running ones, the affine pair */
__global__ static void train_statistics(const float *x, int batch, int C, size_t hw, float eps, float momentum,
                                        const float *gamma, const float *beta, float *rmean, float *rvar, float *aux) {
    const int c = blockIdx.x;
    const double m = (double)batch * hw;
    const float mu = (float)(rg_cuda_channel_sum(batch, C, hw, c, rg_cuda_values{x}) / m);
    const double var = rg_cuda_channel_sum(batch, C, hw, c, centred_square{x, mu}) / m;
    if (threadIdx.x) return;
    const float inv = (float)(1.0 / sqrt(var + eps));
    aux[c] = mu, aux[C + c] = inv;
    rmean[c] = (1.0f - momentum) * rmean[c] + momentum * mu;
    rvar[c] = (1.0f - momentum) * rvar[c] + momentum * (float)(var * m / (m - 1));
    aux[2 * C + 2 * c] = gamma[c] * inv;
    aux[2 * C + 2 * c + 1] = beta[c] - mu * aux[2 * C + 2 * c];
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

/* one block a channel: dgamma, dbeta, and (k, mean dy, mean dy x^) for the input's gradient */
__global__ static void gradient_sums(const float *x, const float *dy, int batch, int C, size_t hw, const float *gamma,
                                     const float *aux, bool relu, float *dgamma, float *dbeta, float *coef) {
    const int c = blockIdx.x;
    const float mu = aux[c], inv = aux[C + c], *pair = relu ? aux + 2 * C + 2 * c : NULL;
    const double sdy = rg_cuda_channel_sum(batch, C, hw, c, gradient{x, dy, pair});
    const double sdyx = rg_cuda_channel_sum(batch, C, hw, c, gradient_times_centred{x, dy, mu, pair}) * inv;
    if (threadIdx.x) return;
    const double m = (double)batch * hw;
    dgamma[c] += (float)sdyx;
    dbeta[c] += (float)sdy;
    coef[3 * c] = gamma[c] * inv;
    coef[3 * c + 1] = (float)(sdy / m);
    coef[3 * c + 2] = (float)(sdyx / m);
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
    if (train) train_statistics<<<C, RG_CUDA_THREADS>>>(x, batch, C, hw, eps, momentum, gamma, beta, rmean, rvar, aux);
    else LAUNCH(running_statistics, (size_t)C, C, eps, gamma, beta, rmean, rvar, aux);
    LAUNCH(affine, (size_t)batch * C * hw, x, y, (size_t)batch * C * hw, C, hw, aux + 2 * C, relu);
}

extern "C" void rg_cuda_batch_norm_backward(const float *x, const float *dy, float *dx, int batch, int C, size_t hw,
                                            bool train, const float *gamma, const float *aux, bool relu,
                                            float *dgamma, float *dbeta, float *coef, bool fresh) {
    if (batch <= 0) return;
    gradient_sums<<<C, RG_CUDA_THREADS>>>(x, dy, batch, C, hw, gamma, aux, relu, dgamma, dbeta, coef);
    if (dx) LAUNCH(input_gradient, (size_t)batch * C * hw, x, dy, dx, (size_t)batch * C * hw, C, hw, aux, coef, train,
                   relu, fresh);
}

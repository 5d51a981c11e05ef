/*
 * loss.cu — softmax cross-entropy (with label smoothing) on the device, as the CPU's
 * op_loss.c computes it: one block a sample for the probabilities and its loss (its sums
 * over the classes in double, a fixed tree over the block's threads where the CPU adds in
 * order), then one thread adding the samples' losses in order, so the loss does not depend
 * on the launch; backward one thread an element.  The cross-entropy's tangent is one
 * block's tree; mean squared error and its tangent one thread adding in order.  The
 * device's expf and log may differ from glibc's by an ulp: the tests compare within 1e-6.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

/* the larger of two logits (the first kept on a tie), as the CPU scans for the maximum */
struct larger {
    __device__ float operator()(float a, float b) const { return b > a ? b : a; }
};

/* One block a sample: its probabilities and its loss, each of its sums over the classes
 * (in double) and its maximum a fixed tree over the block's threads. */
__global__ static void sample_losses(const float *z, const int *labels, float *p, double *loss, int k,
                                     float smoothing) {
    __shared__ double part[RG_CUDA_THREADS];
    __shared__ float top[RG_CUDA_THREADS];
    const int b = blockIdx.x;
    const float *zb = z + (size_t)b * k;
    float *pb = p + (size_t)b * k;
    float m = zb[0];
    for (int j = threadIdx.x; j < k; j += RG_CUDA_THREADS) m = zb[j] > m ? zb[j] : m;
    m = rg_cuda_block_fold(m, top, larger{});
    double sum = 0;
    for (int j = threadIdx.x; j < k; j += RG_CUDA_THREADS) sum += (pb[j] = expf(zb[j] - m));
    sum = rg_cuda_block_fold(sum, part, rg_cuda_plus{});
    double sum_z = 0;
    for (int j = threadIdx.x; j < k; j += RG_CUDA_THREADS) { /* each thread's own pb[j] */
        pb[j] = (float)(pb[j] / sum);
        sum_z += zb[j];
    }
    sum_z = rg_cuda_block_fold(sum_z, part, rg_cuda_plus{});
    if (threadIdx.x) return;
    const double lse = m + log(sum);
    const float s = smoothing; /* s / k in float, as the CPU writes it */
    loss[b] = (1.0 - s) * (lse - zb[labels[b]]) + (s / k) * (k * lse - sum_z);
}

__global__ static void mean_loss(const double *loss, int batch, float *out) {
    double total = 0;
    for (int b = 0; b < batch; b++) total += loss[b];
    out[0] = (float)(total / batch);
}

__global__ static void xent_gradient(const float *p, const int *labels, const float *dloss, float *dz,
                                     int batch, int k, float smoothing) {
    const float scale = dloss[0] / (float)batch, uniform = smoothing / (float)k;
    GRID_STRIDE(i, (size_t)batch * k) {
        const int j = (int)(i % k), y = labels[i / k];
        dz[i] += scale * (p[i] - uniform - (j == y ? 1.0f - smoothing : 0.0f));
    }
}

extern "C" void rg_cuda_softmax_xent_forward(const float *z, const int *labels, float *p, double *scratch,
                                             float *loss, int batch, int k, float smoothing) {
    if (batch <= 0) return;
    RG_KERNEL(sample_losses, batch, RG_CUDA_THREADS)(z, labels, p, scratch, k, smoothing);
    RG_KERNEL(mean_loss, 1, 1)(scratch, batch, loss);
}

extern "C" void rg_cuda_softmax_xent_backward(const float *p, const int *labels, const float *dloss,
                                              float *dz, int batch, int k, float smoothing) {
    if (batch > 0)
        RG_KERNEL(xent_gradient, rg_cuda_grid((size_t)batch * k), RG_CUDA_THREADS)(p, labels, dloss, dz, batch, k,
                                                                                  smoothing);
}

/* The loss's tangent along the logits' tangent t_in: the mean over the batch of the
 * gradient's dot product with it, summed in double in a fixed order by one block. */
__global__ static void xent_tangent(const float *p, const int *labels, const float *t_in, float *t, int batch, int k,
                                    float smoothing) {
    __shared__ double part[RG_CUDA_THREADS];
    const float uniform = smoothing / (float)k;
    double s = 0;
    for (size_t i = threadIdx.x; i < (size_t)batch * k; i += RG_CUDA_THREADS) {
        const int j = (int)(i % k), y = labels[i / k];
        s += (p[i] - uniform - (j == y ? 1.0f - smoothing : 0.0f)) * (double)t_in[i];
    }
    s = rg_cuda_block_fold(s, part, rg_cuda_plus{});
    if (threadIdx.x == 0) t[0] = (float)(s / batch);
}

extern "C" void rg_cuda_softmax_xent_tangent(const float *p, const int *labels, const float *t_in, float *t,
                                             int batch, int k, float smoothing) {
    if (batch > 0) RG_KERNEL(xent_tangent, 1, RG_CUDA_THREADS)(p, labels, t_in, t, batch, k, smoothing);
}

/* the target of element i: the other input's value, or the one-hot label */
__device__ static float mse_target(const float *target, const int *labels, size_t d, size_t i) {
    return target ? target[i] : (int)(i % d) == labels[i / d] ? 1.0f : 0.0f;
}

/* one thread, the elements in order in double: the CPU's sum */
__global__ static void mse_sum(const float *y, const float *target, const int *labels, size_t d, int batch,
                               float *loss) {
    double total = 0;
    for (size_t i = 0; i < (size_t)batch * d; i++) {
        const double e = y[i] - mse_target(target, labels, d, i);
        total += e * e;
    }
    loss[0] = (float)(total / ((double)batch * d));
}

__global__ static void mse_gradient(const float *y, const float *target, const int *labels, const float *dloss,
                                    float *dy, float *dtarget, size_t d, int batch) {
    const float scale = 2.0f * dloss[0] / (float)((double)batch * d);
    GRID_STRIDE(i, (size_t)batch * d) {
        const float e = scale * (y[i] - mse_target(target, labels, d, i));
        if (dy) dy[i] += e;
        if (dtarget) dtarget[i] -= e;
    }
}

/* one thread, in order in double: the CPU's tangent */
__global__ static void mse_tangent_sum(const float *y, const float *target, const int *labels, const float *t_y,
                                       const float *t_target, float *t, size_t d, int batch) {
    double total = 0;
    for (size_t i = 0; i < (size_t)batch * d; i++)
        total += (y[i] - mse_target(target, labels, d, i)) * (double)(t_y[i] - (t_target ? t_target[i] : 0.0f));
    t[0] = (float)(2.0 * total / ((double)batch * d));
}

extern "C" void rg_cuda_mse_forward(const float *y, const float *target, const int *labels, size_t d, int batch,
                                    float *loss) {
    if (batch > 0) RG_KERNEL(mse_sum, 1, 1)(y, target, labels, d, batch, loss);
}

extern "C" void rg_cuda_mse_backward(const float *y, const float *target, const int *labels, const float *dloss,
                                     float *dy, float *dtarget, size_t d, int batch) {
    LAUNCH(mse_gradient, (size_t)batch * d, y, target, labels, dloss, dy, dtarget, d, batch);
}

extern "C" void rg_cuda_mse_tangent(const float *y, const float *target, const int *labels, const float *t_y,
                                    const float *t_target, float *t, size_t d, int batch) {
    if (batch > 0) RG_KERNEL(mse_tangent_sum, 1, 1)(y, target, labels, t_y, t_target, t, d, batch);
}

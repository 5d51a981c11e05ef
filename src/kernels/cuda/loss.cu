/*
 * loss.cu — softmax cross-entropy (with label smoothing) on the device, as the CPU's
 * op_loss.c computes it: one block a sample for the probabilities and its loss (its sums
 * over the classes in double, a fixed tree over the block's threads where the CPU adds in
 * order), then one thread adding the samples' losses in order, so the loss does not depend
 * on the launch; backward one thread an element.  The cross-entropy's tangent is one
 * block's tree; mean squared error and its tangent one thread adding in order.  The
 * device's expf and log may differ from glibc's by an ulp: the tests compare within 1e-6.
 * The logits, predictions and targets and their gradients are the activations' type
 * (launch.h); the probabilities kept for backward and the loss are float.
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
template <typename T>
__global__ static void sample_losses(const T *z, const int *labels, float *p, double *loss, int k,
                                     float smoothing) {
    __shared__ double part[RG_CUDA_THREADS];
    __shared__ float top[RG_CUDA_THREADS];
    const int b = blockIdx.x;
    const T *zb = z + (size_t)b * k;
    float *pb = p + (size_t)b * k;
    float m = rg_load(zb, 0);
    for (int j = threadIdx.x; j < k; j += RG_CUDA_THREADS) m = rg_load(zb, j) > m ? rg_load(zb, j) : m;
    m = rg_cuda_block_fold(m, top, larger{});
    double sum = 0;
    for (int j = threadIdx.x; j < k; j += RG_CUDA_THREADS) sum += (pb[j] = expf(rg_load(zb, j) - m));
    sum = rg_cuda_block_fold(sum, part, rg_cuda_plus{});
    double sum_z = 0;
    for (int j = threadIdx.x; j < k; j += RG_CUDA_THREADS) { /* each thread's own pb[j] */
        pb[j] = (float)(pb[j] / sum);
        sum_z += rg_load(zb, j);
    }
    sum_z = rg_cuda_block_fold(sum_z, part, rg_cuda_plus{});
    if (threadIdx.x) return;
    const double lse = m + log(sum);
    const float s = smoothing; /* s / k in float, as the CPU writes it */
    loss[b] = (1.0 - s) * (lse - rg_load(zb, labels[b])) + (s / k) * (k * lse - sum_z);
}

__global__ static void mean_loss(const double *loss, int batch, float *out) {
    double total = 0;
    for (int b = 0; b < batch; b++) total += loss[b];
    out[0] = (float)(total / batch);
}

template <typename T>
__global__ static void xent_gradient(const float *p, const int *labels, const float *dloss, T *dz,
                                     int batch, int k, float smoothing) {
    const float scale = dloss[0] / (float)batch, uniform = smoothing / (float)k;
    GRID_STRIDE(i, (size_t)batch * k) {
        const int j = (int)(i % k), y = labels[i / k];
        rg_store(dz, i, rg_load(dz, i) + scale * (p[i] - uniform - (j == y ? 1.0f - smoothing : 0.0f)));
    }
}

template <typename T>
static void xent_forward(const float *z, const int *labels, float *p, double *scratch, float *loss, int batch,
                         int k, float smoothing) {
    RG_KERNEL(sample_losses<T>, batch, RG_CUDA_THREADS)(rg_as<T>(z), labels, p, scratch, k, smoothing);
    RG_KERNEL(mean_loss, 1, 1)(scratch, batch, loss);
}

template <typename T>
static void xent_backward(const float *p, const int *labels, const float *dloss, float *dz, int batch, int k,
                          float smoothing) {
    LAUNCH(xent_gradient<T>, (size_t)batch * k, p, labels, dloss, rg_as<T>(dz), batch, k, smoothing);
}

extern "C" void rg_cuda_softmax_xent_forward(const float *z, const int *labels, float *p, double *scratch,
                                             float *loss, int batch, int k, float smoothing) {
    if (batch > 0) RG_STORED(xent_forward, z, labels, p, scratch, loss, batch, k, smoothing);
}

extern "C" void rg_cuda_softmax_xent_backward(const float *p, const int *labels, const float *dloss,
                                              float *dz, int batch, int k, float smoothing) {
    if (batch > 0) RG_STORED(xent_backward, p, labels, dloss, dz, batch, k, smoothing);
}

/* The loss's tangent along the logits' tangent t_in: the mean over the batch of the
 * gradient's dot product with it, summed in double in a fixed order by one block. */
template <typename T>
__global__ static void xent_tangent(const float *p, const int *labels, const T *t_in, float *t, int batch, int k,
                                    float smoothing) {
    __shared__ double part[RG_CUDA_THREADS];
    const float uniform = smoothing / (float)k;
    double s = 0;
    for (size_t i = threadIdx.x; i < (size_t)batch * k; i += RG_CUDA_THREADS) {
        const int j = (int)(i % k), y = labels[i / k];
        s += (p[i] - uniform - (j == y ? 1.0f - smoothing : 0.0f)) * (double)rg_load(t_in, i);
    }
    s = rg_cuda_block_fold(s, part, rg_cuda_plus{});
    if (threadIdx.x == 0) t[0] = (float)(s / batch);
}

template <typename T>
static void xent_tangent_of(const float *p, const int *labels, const float *t_in, float *t, int batch, int k,
                            float smoothing) {
    RG_KERNEL(xent_tangent<T>, 1, RG_CUDA_THREADS)(p, labels, rg_as<T>(t_in), t, batch, k, smoothing);
}

extern "C" void rg_cuda_softmax_xent_tangent(const float *p, const int *labels, const float *t_in, float *t,
                                             int batch, int k, float smoothing) {
    if (batch > 0) RG_STORED(xent_tangent_of, p, labels, t_in, t, batch, k, smoothing);
}

/* the target of element i: the other input's value, or the one-hot label */
template <typename T>
__device__ static float mse_target(const T *target, const int *labels, size_t d, size_t i) {
    return target ? rg_load(target, i) : (int)(i % d) == labels[i / d] ? 1.0f : 0.0f;
}

/* one thread, the elements in order in double: the CPU's sum */
template <typename T>
__global__ static void mse_sum(const T *y, const T *target, const int *labels, size_t d, int batch, float *loss) {
    double total = 0;
    for (size_t i = 0; i < (size_t)batch * d; i++) {
        const double e = rg_load(y, i) - mse_target(target, labels, d, i);
        total += e * e;
    }
    loss[0] = (float)(total / ((double)batch * d));
}

template <typename T>
__global__ static void mse_gradient(const T *y, const T *target, const int *labels, const float *dloss, T *dy,
                                    T *dtarget, size_t d, int batch) {
    const float scale = 2.0f * dloss[0] / (float)((double)batch * d);
    GRID_STRIDE(i, (size_t)batch * d) {
        const float e = scale * (rg_load(y, i) - mse_target(target, labels, d, i));
        if (dy) rg_store(dy, i, rg_load(dy, i) + e);
        if (dtarget) rg_store(dtarget, i, rg_load(dtarget, i) - e);
    }
}

template <typename T>
static void mse_forward(const float *y, const float *target, const int *labels, size_t d, int batch, float *loss) {
    RG_KERNEL(mse_sum<T>, 1, 1)(rg_as<T>(y), rg_as<T>(target), labels, d, batch, loss);
}

template <typename T>
static void mse_backward(const float *y, const float *target, const int *labels, const float *dloss, float *dy,
                         float *dtarget, size_t d, int batch) {
    LAUNCH(mse_gradient<T>, (size_t)batch * d, rg_as<T>(y), rg_as<T>(target), labels, dloss, rg_as<T>(dy),
           rg_as<T>(dtarget), d, batch);
}

/* one thread, in order in double: the CPU's tangent */
template <typename T>
__global__ static void mse_tangent_sum(const T *y, const T *target, const int *labels, const T *t_y,
                                       const T *t_target, float *t, size_t d, int batch) {
    double total = 0;
    for (size_t i = 0; i < (size_t)batch * d; i++)
        total += (rg_load(y, i) - mse_target(target, labels, d, i)) *
                 (double)(rg_load(t_y, i) - (t_target ? rg_load(t_target, i) : 0.0f));
    t[0] = (float)(2.0 * total / ((double)batch * d));
}

template <typename T>
static void mse_tangent(const float *y, const float *target, const int *labels, const float *t_y,
                        const float *t_target, float *t, size_t d, int batch) {
    RG_KERNEL(mse_tangent_sum<T>, 1, 1)(rg_as<T>(y), rg_as<T>(target), labels, rg_as<T>(t_y), rg_as<T>(t_target), t,
                                        d, batch);
}

extern "C" void rg_cuda_mse_forward(const float *y, const float *target, const int *labels, size_t d, int batch,
                                    float *loss) {
    if (batch > 0) RG_STORED(mse_forward, y, target, labels, d, batch, loss);
}

extern "C" void rg_cuda_mse_backward(const float *y, const float *target, const int *labels, const float *dloss,
                                     float *dy, float *dtarget, size_t d, int batch) {
    RG_STORED(mse_backward, y, target, labels, dloss, dy, dtarget, d, batch);
}

extern "C" void rg_cuda_mse_tangent(const float *y, const float *target, const int *labels, const float *t_y,
                                    const float *t_target, float *t, size_t d, int batch) {
    if (batch > 0) RG_STORED(mse_tangent, y, target, labels, t_y, t_target, t, d, batch);
}

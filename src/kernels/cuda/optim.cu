/*
 * optim.cu — the optimizers' update rules on the device, one thread a weight, written as
 * src/optim/update_rules.h writes them with every multiply, add, divide and square root
 * rounded on its own (the _rn intrinsics: nvcc may not fuse them), so a step gives the
 * CPU's bits.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

/* a step's constants noted (launch.h) */
static inline void rg_note_members(const step_consts &k) {
    rg_cuda_note_all(k.lr, k.wd, k.mu, k.eps, k.alpha, k.beta1, k.beta2, k.step_size, k.bc2_sqrt, k.l2, k.shrink,
                     k.first, k.nesterov);
}

#define MUL __fmul_rn
#define ADD __fadd_rn
#define SUB __fsub_rn
#define DIV __fdiv_rn
#define SQRT __fsqrt_rn

__device__ static float sgd(const step_consts k, float w, float g, float *m0, size_t i) {
    float d = ADD(g, MUL(k.wd, w));
    if (k.mu > 0) {
        const float buf = k.first ? d : ADD(MUL(k.mu, m0[i]), d);
        m0[i] = buf;
        d = k.nesterov ? ADD(d, MUL(k.mu, buf)) : buf;
    }
    return SUB(w, MUL(k.lr, d));
}

__device__ static float adagrad(const step_consts k, float w, float g, float *m0, size_t i) {
    const float d = ADD(g, MUL(k.wd, w)), sum = ADD(m0[i], MUL(d, d));
    m0[i] = sum;
    return SUB(w, DIV(MUL(k.lr, d), ADD(SQRT(sum), k.eps)));
}

__device__ static float rmsprop(const step_consts k, float w, float g, float *m0, float *m1, size_t i) {
    const float d = ADD(g, MUL(k.wd, w));
    const float v = ADD(MUL(k.alpha, m0[i]), MUL(MUL(SUB(1.0f, k.alpha), d), d));
    m0[i] = v;
    float step = DIV(d, ADD(SQRT(v), k.eps));
    if (k.mu > 0) m1[i] = step = ADD(MUL(k.mu, m1[i]), step);
    return SUB(w, MUL(k.lr, step));
}

__device__ static float adam(const step_consts k, float w, float g, float *m0, float *m1, size_t i) {
    const float d = ADD(g, MUL(k.l2, w));
    const float m = ADD(MUL(k.beta1, m0[i]), MUL(SUB(1.0f, k.beta1), d));
    const float v = ADD(MUL(k.beta2, m1[i]), MUL(MUL(SUB(1.0f, k.beta2), d), d));
    m0[i] = m, m1[i] = v;
    return SUB(MUL(k.shrink, w), DIV(MUL(k.step_size, m), ADD(DIV(SQRT(v), k.bc2_sqrt), k.eps)));
}

__global__ static void update(rg_optim_kind kind, const step_consts k, size_t n, float *w,
                              const float *g, float *m0, float *m1) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        switch (kind) {
        case RG_OPTIM_SGD:
        case RG_OPTIM_MOMENTUM:
        case RG_OPTIM_NESTEROV: w[i] = sgd(k, w[i], g[i], m0, i); break;
        case RG_OPTIM_ADAGRAD: w[i] = adagrad(k, w[i], g[i], m0, i); break;
        case RG_OPTIM_RMSPROP: w[i] = rmsprop(k, w[i], g[i], m0, m1, i); break;
        default: w[i] = adam(k, w[i], g[i], m0, m1, i); break;
        }
    }
}

extern "C" void rg_cuda_optim_update(rg_optim_kind kind, const step_consts *k, size_t n, float *w,
                                     const float *g, float *m0, float *m1) {
    if (n == 0) return;
    const size_t blocks = (n + 255) / 256;
    RG_KERNEL(update, (unsigned)(blocks < 65535 * 16 ? blocks : 65535 * 16), 256)(kind, *k, n, w, g, m0, m1);
}

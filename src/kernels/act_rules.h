/*
 * act_rules.h — each activation's value and derivative on one number, the one definition
 * that the CPU's loops (cpu/op_activation.c) and the CUDA kernels (cuda/activation.cu)
 * both inline.
 */
#ifndef RG_ACT_RULES_H
#define RG_ACT_RULES_H

#include <math.h>
#include <regrad.h>

#ifdef __CUDACC__
#define RG_ACT_FN static __host__ __device__ inline
#else
#define RG_ACT_FN static inline
#endif

#define LEAKY_SLOPE 0.01f

#define SOFTPLUS_THRESHOLD 20.0f

RG_ACT_FN float act_f(rg_act a, float x) {
    switch (a) {
    /* written so that NaN passes through, as in PyTorch, and the loop vectorises */
    case RG_ACT_RELU: return x < 0 ? 0.0f : x;
    case RG_ACT_LEAKY_RELU: return x < 0 ? LEAKY_SLOPE * x : x;
    case RG_ACT_ELU: return x > 0 ? x : expm1f(x);                      /* alpha = 1 */
    case RG_ACT_GELU: return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); /* x Phi(x) */
    case RG_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case RG_ACT_TANH: return tanhf(x);
    case RG_ACT_SOFTPLUS: return x > SOFTPLUS_THRESHOLD ? x : log1pf(expf(x));
    default: return x;
    }
}

/* f'(x) from y = f(x) alone, so the activation can run in place (memory.c); only GELU
 * needs x, and never runs in place.  The sign of y is the sign of x for relu, leaky relu
 * and elu; softplus' = sigmoid(x) = 1 - exp(-y). */
RG_ACT_FN float act_df(rg_act a, float x, float y) {
    switch (a) {
    case RG_ACT_RELU: return y > 0 ? 1.0f : 0.0f;
    case RG_ACT_LEAKY_RELU: return y > 0 ? 1.0f : LEAKY_SLOPE;
    case RG_ACT_ELU: return y > 0 ? 1.0f : y + 1.0f;
    case RG_ACT_GELU: /* Phi(x) + x phi(x) */
        return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) +
               x * 0.3989422804014327f * expf(-0.5f * x * x);
    case RG_ACT_SIGMOID: return y * (1.0f - y);
    case RG_ACT_TANH: return 1.0f - y * y;
    case RG_ACT_SOFTPLUS: return -expm1f(-y);
    default: return 1.0f;
    }
}

/* f''(x) from y = f(x) (GELU from x): for the Hessian's second-order term.  relu and leaky
 * relu are piecewise linear (0; PyTorch's double backward agrees); elu's is e^x = y + 1
 * below 0; softplus'' = s (1 - s) with s = sigmoid(x) = 1 - exp(-y). */
RG_ACT_FN float act_d2f(rg_act a, float x, float y) {
    switch (a) {
    case RG_ACT_ELU: return y > 0 ? 0.0f : y + 1.0f;
    case RG_ACT_GELU: return 0.3989422804014327f * expf(-0.5f * x * x) * (2.0f - x * x);
    case RG_ACT_SIGMOID: return y * (1.0f - y) * (1.0f - 2.0f * y);
    case RG_ACT_TANH: return -2.0f * y * (1.0f - y * y);
    case RG_ACT_SOFTPLUS: {
        const float e = expf(-y);
        return e * (1.0f - e);
    }
    default: return 0.0f;
    }
}

/* dy * f'(x), given x, y = f(x) and dy.  relu and leaky relu select instead of multiplying
 * by a 0/1 derivative: GCC vectorises the select, not the multiply by a branch result. */
RG_ACT_FN float act_dx(rg_act a, float x, float y, float dy) {
    switch (a) {
    case RG_ACT_RELU: return y > 0 ? dy : 0.0f;
    case RG_ACT_LEAKY_RELU: return y > 0 ? dy : LEAKY_SLOPE * dy;
    default: return dy * act_df(a, x, y);
    }
}

#endif

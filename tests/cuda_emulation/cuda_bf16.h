/*
 * cuda_bf16.h (tests/cuda_emulation/) — the bf16 type and its two conversions as the
 * kernels use them, on the host: found in place of the toolkit's header, as cuda_runtime.h
 * is.  A float becomes bf16 rounded to the nearest, ties to even (a NaN stays a NaN, a
 * value past the largest bf16 becomes infinite), as the device's cvt.rn.bf16.f32 rounds;
 * bf16 back to float is exact.
 */
#ifndef RG_CUDA_EMULATION_BF16_H
#define RG_CUDA_EMULATION_BF16_H

#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    uint16_t bits;
};

static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40u)}; /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}

static inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t u = (uint32_t)h.bits << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

#endif

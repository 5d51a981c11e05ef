/*
 * divide.h — integer division by a divisor known at launch, without the device's division.
 * An element-wise kernel finds each value's plane, row and column (or its channel) from its
 * index; the device has no integer divide instruction (a 32-bit division is a reciprocal and
 * a correction, about twenty instructions, a 64-bit one a call), and with two or three of
 * them a value such a kernel spends more time on its index than on its memory.  The host
 * finds, once a launch, a multiplier and a shift for each divisor (Granlund and Montgomery's
 * method for unsigned 32-bit values); each division is then a high product, an add and a
 * shift, exact for every dividend and divisor up to 2^31, and the plain division beyond.
 * Plain C as well, so that the host's tests check it.
 */
#ifndef RG_CUDA_DIVIDE_H
#define RG_CUDA_DIVIDE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define RG_HOST_DEVICE __host__ __device__
#else
#define RG_HOST_DEVICE
#endif

#define RG_DIVIDE_FAST ((uint64_t)1 << 31) /* dividends and divisors below it take the product */

typedef struct rg_divider {
    uint64_t d;
    uint32_t magic, shift;
} rg_divider;

/* The multiplier and shift for d >= 1: shift the smallest s with 2^s >= d, magic
 * floor(2^32 (2^s - d) / d) + 1, so that (2^32 + magic) / 2^(32 + s) is 1/d rounded up by
 * less than 1/2^(32 + s) (a divisor past the fast range keeps the plain division). */
RG_HOST_DEVICE static inline rg_divider rg_divider_of(uint64_t d) {
    rg_divider v = {d ? d : 1, 0, 0};
    if (v.d > RG_DIVIDE_FAST) return v;
    while (((uint64_t)1 << v.shift) < v.d) v.shift++;
    v.magic = (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << v.shift) - v.d)) / v.d + 1);
    return v;
}

/* m / d for m and d below 2^31 */
RG_HOST_DEVICE static inline uint32_t rg_divide_fast(rg_divider v, uint32_t m) {
#ifdef __CUDA_ARCH__
    const uint32_t high = __umulhi(m, v.magic);
#else
    const uint32_t high = (uint32_t)(((uint64_t)m * v.magic) >> 32);
#endif
    return (high + m) >> v.shift; /* high <= m < 2^31: the sum fits in 32 bits */
}

/* n / d, exactly */
RG_HOST_DEVICE static inline uint64_t rg_divide(rg_divider v, uint64_t n) {
    return n < RG_DIVIDE_FAST && v.d <= RG_DIVIDE_FAST ? rg_divide_fast(v, (uint32_t)n) : n / v.d;
}

/* Planes of rows x cols values, as dividers: value e's plane, row and column. */
typedef struct rg_planes {
    rg_divider rows, cols;
} rg_planes;

typedef struct rg_cell {
    size_t plane;
    int y, x;
} rg_cell;

RG_HOST_DEVICE static inline rg_planes rg_planes_of(uint64_t rows, uint64_t cols) {
    const rg_planes p = {rg_divider_of(rows), rg_divider_of(cols)};
    return p;
}

/* (one test of the range for both divisions: a quotient is no larger than its dividend) */
RG_HOST_DEVICE static inline rg_cell rg_cell_of(uint64_t e, rg_planes p) {
    uint64_t line, plane;
    if (e < RG_DIVIDE_FAST && p.rows.d <= RG_DIVIDE_FAST && p.cols.d <= RG_DIVIDE_FAST) {
        line = rg_divide_fast(p.cols, (uint32_t)e);
        plane = rg_divide_fast(p.rows, (uint32_t)line);
    } else {
        line = e / p.cols.d;
        plane = line / p.rows.d;
    }
    const rg_cell c = {(size_t)plane, (int)(line - plane * p.rows.d), (int)(e - line * p.cols.d)};
    return c;
}

/* The channel of value i of a batch x C x hw tensor, with p = rg_planes_of(C, hw). */
RG_HOST_DEVICE static inline int rg_channel_of(uint64_t i, rg_planes p) { return rg_cell_of(i, p).y; }

#endif

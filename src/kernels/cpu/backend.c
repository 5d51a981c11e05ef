/*
 * backend.c — the CPU backend's table: every op's forward, backward, tangent, workspace plan
 * and backward tangent (op_*.c in this folder), and buffers from the heap, 64-byte aligned.
 */
#include "cpu.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Buffers of a megabyte and more are mapped (the kernel's zero pages, so what is never
 * touched never counts against memory), smaller ones come from the heap and are zeroed; each
 * starts RG_BUFFER_ALIGN bytes after a header that says how it was made. */
#define MAPPED_FROM ((size_t)1 << 20)

typedef struct header {
    size_t bytes; /* what was mapped, or 0 for the heap */
} header;

static float *cpu_alloc(size_t floats) {
    if (floats > (SIZE_MAX - 2 * RG_BUFFER_ALIGN) / sizeof(float)) return NULL;
    const size_t bytes = (floats ? floats : 1) * sizeof(float) + RG_BUFFER_ALIGN;
    char *base;
    if (bytes >= MAPPED_FROM) {
        base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) return NULL;
        ((header *)base)->bytes = bytes;
    } else {
        const size_t rounded = (bytes + RG_BUFFER_ALIGN - 1) / RG_BUFFER_ALIGN * RG_BUFFER_ALIGN;
        if (!(base = aligned_alloc(RG_BUFFER_ALIGN, rounded))) return NULL;
        memset(base, 0, rounded);
        ((header *)base)->bytes = 0;
    }
    return (float *)(base + RG_BUFFER_ALIGN);
}

static void cpu_release(float *p) {
    if (!p) return;
    char *base = (char *)p - RG_BUFFER_ALIGN;
    const size_t mapped = ((header *)base)->bytes;
    if (mapped) munmap(base, mapped);
    else free(base);
}

static const float *cpu_host_view(const float *x, size_t n) {
    (void)n;
    return x;
}

const rg_backend rg_cpu_backend = {
    .name = "cpu",
    .ops = {
        [RG_OP_INPUT] = {rg_cpu_input_forward, NULL, rg_cpu_input_tangent, NULL},
        [RG_OP_DENSE] = {rg_cpu_dense_forward, rg_cpu_dense_backward, rg_cpu_dense_tangent, NULL,
                            rg_cpu_dense_backward_tangent},
        [RG_OP_ACTIVATION] = {rg_cpu_activation_forward, rg_cpu_activation_backward, rg_cpu_activation_tangent, NULL,
                            rg_cpu_activation_backward_tangent},
        [RG_OP_SOFTMAX] = {rg_cpu_softmax_forward, rg_cpu_softmax_backward, rg_cpu_softmax_tangent, NULL,
                            rg_cpu_softmax_backward_tangent},
        [RG_OP_DROPOUT] = {rg_cpu_dropout_forward, rg_cpu_dropout_backward, rg_cpu_dropout_tangent, NULL},
        [RG_OP_ADD] = {rg_cpu_add_forward, rg_cpu_add_backward, rg_cpu_add_tangent, NULL},
        [RG_OP_FLATTEN] = {rg_cpu_flatten_forward, NULL, rg_cpu_flatten_tangent, NULL},
        [RG_OP_FLATTEN_HWC] = {rg_cpu_flatten_hwc_forward, rg_cpu_flatten_hwc_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_SOFTMAX_XENT] = {rg_cpu_softmax_xent_forward, rg_cpu_softmax_xent_backward, rg_cpu_softmax_xent_tangent, NULL},
        [RG_OP_MSE] = {rg_cpu_mse_forward, rg_cpu_mse_backward, rg_cpu_mse_tangent, NULL},
        [RG_OP_CONV2D] = {rg_cpu_conv2d_forward, rg_cpu_conv2d_backward, rg_cpu_conv2d_tangent, rg_cpu_conv2d_plan,
                            rg_cpu_conv2d_backward_tangent},
        [RG_OP_MAX_POOL] = {rg_cpu_max_pool_forward, rg_cpu_max_pool_backward, rg_cpu_max_pool_tangent, NULL},
        [RG_OP_AVG_POOL] = {rg_cpu_avg_pool_forward, rg_cpu_avg_pool_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_GLOBAL_AVG_POOL] = {rg_cpu_global_avg_pool_forward, rg_cpu_global_avg_pool_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_ZERO_PAD] = {rg_cpu_zero_pad_forward, rg_cpu_zero_pad_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_CONCAT] = {rg_cpu_concat_forward, rg_cpu_concat_backward, rg_cpu_linear_tangent, NULL},
        [RG_OP_BATCH_NORM] = {rg_cpu_batch_norm_forward, rg_cpu_batch_norm_backward, rg_cpu_batch_norm_tangent, rg_cpu_batch_norm_plan,
                            rg_cpu_batch_norm_backward_tangent},
        [RG_OP_WEIGHTED_SUM] = {rg_cpu_weighted_sum_forward, rg_cpu_weighted_sum_backward, rg_cpu_linear_tangent, NULL},
    },
    .alloc = cpu_alloc,
    .release = cpu_release,
    .host_view = cpu_host_view,
    .first_nonfinite = rg_cpu_first_nonfinite,
    .squares2 = rg_cpu_squares2,
    .squares_apart = rg_cpu_squares_apart,
    .unit_sums = rg_cpu_unit_sums,
    .sample_squares = rg_cpu_sample_squares,
    .input_moments = rg_cpu_input_moments,
    .chunk_squares = rg_cpu_chunk_squares,
    .count_nonfinite = rg_cpu_count_nonfinite,
    .polar = rg_cpu_polar,
    .recenter_units = rg_cpu_recenter_units,
    .zero_sum_taps = rg_cpu_zero_sum_taps,
    .function_change = rg_cpu_function_change,
    .function_change_rows = rg_cpu_function_change_rows,
    .function_change_bound = rg_cpu_function_change_bound,
    .layer_steps = rg_cpu_layer_steps,
    .uncentre_steps = rg_cpu_uncentre_steps,
    .step_shifts = rg_cpu_step_shifts,
    .centre_gradients = rg_cpu_centre_gradients,
    .sums_of_squares = rg_cpu_sums_of_squares,
    .times_matrix = rg_cpu_times_matrix,
    .scale = rg_cpu_scale,
    .copy = rg_cpu_copy,
    .subtract = rg_cpu_subtract,
    .step_along = rg_cpu_step_along,
    .multiply = rg_cpu_multiply,
    .clamp = rg_cpu_clamp,
    .sum_squares = rg_sum_squares,
    .squares_in_order = rg_cpu_squares_in_order,
    .pieces_squares = rg_cpu_pieces_squares,
    .scale_pieces = rg_cpu_scale_pieces,
    .hier_prox = rg_cpu_hier_prox,
    .fill = rg_cpu_fill,
    .count_zeros = rg_cpu_count_zeros,
    .unit_scores = rg_cpu_unit_scores,
};

/*
 * op_table.c — the one table of ops, indexed by rg_op_kind.  Adding an op: its file in
 * src/ops/, an enum entry in internal.h, a row here, a case in tests/test_gradcheck.c.
 */
#include "../internal.h"

extern const rg_op_def rg_op_input_def, rg_op_dense_def, rg_op_activation_def,
    rg_op_softmax_def, rg_op_dropout_def, rg_op_add_def, rg_op_flatten_def,
    rg_op_softmax_xent_def, rg_op_mse_def, rg_op_conv2d_def, rg_op_max_pool_def,
    rg_op_avg_pool_def, rg_op_global_avg_pool_def, rg_op_zero_pad_def, rg_op_concat_def,
    rg_op_batch_norm_def, rg_op_weighted_sum_def;

const rg_op_def *const rg_op_table[RG_OP_COUNT] = {
    [RG_OP_INPUT] = &rg_op_input_def,
    [RG_OP_DENSE] = &rg_op_dense_def,
    [RG_OP_ACTIVATION] = &rg_op_activation_def,
    [RG_OP_SOFTMAX] = &rg_op_softmax_def,
    [RG_OP_DROPOUT] = &rg_op_dropout_def,
    [RG_OP_ADD] = &rg_op_add_def,
    [RG_OP_FLATTEN] = &rg_op_flatten_def,
    [RG_OP_SOFTMAX_XENT] = &rg_op_softmax_xent_def,
    [RG_OP_MSE] = &rg_op_mse_def,
    [RG_OP_CONV2D] = &rg_op_conv2d_def,
    [RG_OP_MAX_POOL] = &rg_op_max_pool_def,
    [RG_OP_AVG_POOL] = &rg_op_avg_pool_def,
    [RG_OP_GLOBAL_AVG_POOL] = &rg_op_global_avg_pool_def,
    [RG_OP_ZERO_PAD] = &rg_op_zero_pad_def,
    [RG_OP_CONCAT] = &rg_op_concat_def,
    [RG_OP_BATCH_NORM] = &rg_op_batch_norm_def,
    [RG_OP_WEIGHTED_SUM] = &rg_op_weighted_sum_def,
};

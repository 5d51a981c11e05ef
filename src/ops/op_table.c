/*
 * op_table.c — the one table of ops, indexed by rg_op_kind, made from RG_OPS (internal.h).
 */
#include "../internal.h"

#define RG_OP_EXTERN(kind, name) extern const rg_op_def rg_op_##name##_def;
RG_OPS(RG_OP_EXTERN)

#define RG_OP_ROW(kind, name) [RG_OP_##kind] = &rg_op_##name##_def,
const rg_op_def *const rg_op_table[RG_OP_COUNT] = {RG_OPS(RG_OP_ROW)};

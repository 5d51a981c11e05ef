/*
 * health.c — the CPU backend's reductions for the health monitor and GRA: sums of squares
 * in fixed pieces the team shares, per-unit sums of a layer's output, per-sample squares of
 * a gradient, and the squared change of the weights' pieces (a layer input's second
 * moment is in moments.c).  Every sum is taken in a fixed order, so the thread count
 * never changes a figure.
 */
#include "../backend.h"
#include "../kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Values of a dense output below which one thread sums it: a 128 x 256 output takes ~4 us
 * alone in AVX-512 lanes, and 2 to 18 us on two threads. */
#define DENSE_TEAM_MIN 131072

/* Sums of squares of piece i of a[0, n) and, when b is given, of b's, b's piece copied to
 * keep in the same pass when keep is given. */
static void piece_squares(const float *a, const float *b, float *keep, size_t n, size_t i,
                          double *sums) {
    const size_t lo = i * RG_SQUARES_PIECE, len = n - lo < RG_SQUARES_PIECE ? n - lo : RG_SQUARES_PIECE;
    if (b) rg_squares_pair(a + lo, b + lo, keep ? keep + lo : NULL, len, sums);
    else sums[0] = rg_squares(a + lo, NULL, len);
}

/* Sums of squares of n values of a, and of b with it when given (and b's copy to keep[]),
 * in one pass of RG_SQUARES_PIECE pieces shared by the team, the pieces' sums added in
 * order (on this thread alone when there is one piece or no memory: the same sums). */
void rg_cpu_squares2(const float *a, const float *b, float *keep, size_t n, double *sa,
                     double *sb) {
    const size_t parts = (n + RG_SQUARES_PIECE - 1) / RG_SQUARES_PIECE;
    double local[2 * 8], *partial = parts <= 8 ? local : malloc(2 * parts * sizeof *partial);
    *sa = 0;
    if (sb) *sb = 0;
    if (!partial) {
        for (size_t i = 0; i < parts; i++) {
            double p[2] = {0, 0};
            piece_squares(a, b, keep, n, i, p);
            *sa += p[0];
            if (sb) *sb += p[1];
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n > RG_PARALLEL_MIN)
    for (size_t i = 0; i < parts; i++)
        piece_squares(a, b, keep, n, i, partial + 2 * i);
    for (size_t i = 0; i < parts; i++) {
        *sa += partial[2 * i];
        if (sb) *sb += partial[2 * i + 1];
    }
    if (partial != local) free(partial);
}


void rg_cpu_unit_sums(const rg_node_impl *n, int batch, rg_count_kind want, float lo, float hi,
                      float *scratch, double *sum, double *sq, double *relu, long *near_out,
                      int *dead_out) {
    const int units = n->shape[0];
    const size_t inner = n->size / (size_t)units;
    long near = 0;
    int dead = 0;
    if (inner == 1) {
        float *s = scratch, *s2 = s + units, *rs = s2 + units, *rs2 = rs + units;
        int *counted = (int *)(rs2 + units);
        const int blocks = (units + RG_UNIT_BLOCK - 1) / RG_UNIT_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)batch * units >= DENSE_TEAM_MIN)
        for (int i = 0; i < blocks; i++) {
            const int u0 = i * RG_UNIT_BLOCK;
            rg_unit_block_sums(n->out + u0, n->size, batch,
                               units - u0 < RG_UNIT_BLOCK ? units - u0 : RG_UNIT_BLOCK, want, lo, hi,
                               s + u0, s2 + u0, counted + u0, rs + u0, rs2 + u0);
        }
        for (int u = 0; u < units; u++) {
            sum[u] = s[u], sq[u] = s2[u];
            if (want == RG_COUNT_RELU_OF) relu[2 * u] = rs[u], relu[2 * u + 1] = rs2[u];
            near += counted[u], dead += counted[u] == 0;
        }
    } else {
#pragma omp parallel for schedule(static) reduction(+ : near, dead) if ((size_t)batch * n->size > RG_PARALLEL_MIN)
        for (int u = 0; u < units; u++) {
            double t[4] = {0, 0, 0, 0};
            long counted = 0;
            const rg_output_stats *st = n->stats; /* the op's own, taken as it wrote them */
            for (int b = 0; b < batch; b++) {
                if (st) {
                    const double *p = st->sums + ((size_t)b * units + u) * 4;
                    t[0] += p[0], t[1] += p[1], t[2] += p[2], t[3] += p[3];
                    counted += st->counts[(size_t)b * units + u];
                } else {
                    counted += rg_plane_sums(n->out + (size_t)b * n->size + (size_t)u * inner, inner,
                                             want, lo, hi, t);
                }
            }
            sum[u] = t[0], sq[u] = t[1], relu[2 * u] = t[2], relu[2 * u + 1] = t[3];
            near += counted, dead += counted == 0;
        }
    }
    *near_out = near, *dead_out = dead;
}

void rg_cpu_sample_squares(const float *x, size_t size, int batch, double *out) {
#pragma omp parallel for schedule(static) if ((size_t)batch * size > RG_PARALLEL_MIN)
    for (int b = 0; b < batch; b++) out[b] = rg_squares(x + (size_t)b * size, NULL, size);
}

void rg_cpu_squares_apart(const float *a, size_t na, const float *b, size_t nb, double *sa, double *sb) {
    rg_cpu_squares2(a, NULL, NULL, na, sa, NULL);
    rg_cpu_squares2(b, NULL, NULL, nb, sb, NULL);
}

void rg_cpu_chunk_squares(const float *a, const float *b, const size_t *at, const size_t *len,
                          size_t n, double *out) {
#pragma omp parallel for schedule(static) if (n > 2)
    for (size_t c = 0; c < n; c++)
        if (at[c] != SIZE_MAX) out[c] = rg_squares(a + at[c], b ? b + at[c] : NULL, len[c]);
}

long rg_cpu_count_nonfinite(const float *x, size_t n) {
    long bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}

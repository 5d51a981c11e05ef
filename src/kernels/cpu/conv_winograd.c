/*
 * conv_winograd.c — 3x3, stride-1 convolutions (padding 0 to 2) by Winograd's minimal
 * filtering F(2x2, 3x3) (Lavin and Gray, 2016): each 2x2 block of outputs takes 16 products
 * per (filter, channel) pair instead of 36.  The direct kernels (conv_direct.c) hand it all
 * three products of training when both channel counts are at least WINO_MIN_CHANNELS: the
 * forward product, the input's gradient (itself such a convolution of dY with the flipped,
 * transposed weights) and the weights' gradient.
 *
 * With d a 4x4 input tile, g a 3x3 filter and B, G, A the transform matrices below:
 *     U = G g G^T (per filter and channel, once per step: rg_winograd_pack)
 *     V = B^T d B (per channel and tile)
 *     M = sum over channels of U . V (element by element: 16 matrix products, one per
 *         element xi of the 4x4 tile, y_xi (K, tiles) = U_xi (K, C) . V_xi (C, tiles))
 *     y = A^T M A (the 2x2 outputs of the tile)
 *     dW = G^T dU G, dU = sum over tiles of (A dY A^T) . V (element by element)
 * The products run on the direct kernels' register tiles (rg_direct_product, and
 * rg_direct_product_t for dU's sums over tiles).
 *
 * Layout.  Tile (ty, tx) covers outputs rows 2ty, 2ty+1 and columns 2tx, 2tx+1, and reads
 * the padded input at rows 2ty..2ty+3, columns 2tx..2tx+3.  Each channel is kept as two
 * planes of padded rows, the even and the odd ones, each row Wp = 2 (TW + 1) floats wide.
 * A tile's "virtual" index is t = ty (TW + 1) + tx (one dropped tile per row), and then the
 * tile's row i, column j sits at plane (i mod 2), offset 2t + (i div 2) Wp + j: for every
 * (i, j), 16 consecutive tiles are 32 consecutive floats (taken apart into even and odd
 * columns), across rows.  The outputs come back the same way, rows of Wp virtual columns,
 * and are copied out.  Several samples' tiles follow each other in one product (a 7x7 map
 * has 20 tiles).
 *
 * With AVX-512 and channel counts multiples of 16 up to 128, the "lanes" layout below
 * replaces the planes: each pixel's 16 channels of a block in one vector, transforms by
 * additions only, products that broadcast V against vectors of U, and dW's sums as outer
 * products in registers; the backward pass turns dY once for dW and dx.
 *
 * The transforms only add and subtract (the filter's halves are exact) and each product
 * adds its channels in order, so the forward product and dx have the same bits on AVX2
 * and AVX-512, in either layout, and do not depend on how samples are grouped or on
 * threads; dW's sums over tiles are taken per thread, layout and instruction set, as the
 * direct kernels' are.  F(2x2,
 * 3x3)'s rounding is that of a few more additions than the plain sum (held against im2col
 * in test_gradcheck).  F(4x4, 3x3) (36 products per 4x4 block) was tried: slower here, its
 * transforms costing more than its products save at 16 to 64 channels.
 */
#include "../kernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#define WINO_MIN_CHANNELS 8 /* below, the transforms cost more than the products save */
/* Tiles per product, at least (several samples' when small): the forward's, and dW's,
 * whose sums over them are added across in fewer, longer runs (measured best on
 * resnet20v2 and ResNet50V2: 240 and 480 of 120 to 1920). */
#define WINO_POSITIONS 240
#define WEIGHT_POSITIONS 480
/* dW's transformed tiles of x and dY, at most (floats, per thread): ResNet50V2's
 * 512-channel stage would take 4 times more at 480 tiles */
#define WEIGHT_FLOATS (1 << 22)
#define PLANE_SLACK 48      /* zeros after each plane: 16 tiles' loads read past its end */
#define XI 16               /* elements of a transformed tile */
/* Floats between one element's matrix and the next: a cache line more than its rows, so
 * the 16 stores (and loads) of a tile do not all fall in one set of the L1 cache. */
#define XI_STEP(rows, ld) ((size_t)(rows) * (ld) + 16)

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* The tiling of one sample. */
typedef struct tiling {
    int th, tw;       /* tiles down and across */
    int wp;           /* floats per padded row: 2 (tw + 1) */
    size_t tv;        /* virtual tiles per sample: th (tw + 1) */
    size_t plane;     /* floats per plane of even or odd padded rows, with slack */
    int group;        /* samples per product */
    size_t ld;        /* floats per row of the transformed tiles: group * tv and room past */
    size_t out_rows;  /* floats of the even or the odd output rows of a group, for one filter */
} tiling;

/* Outputs starting origin rows and columns into the first tile; groups of samples with at
 * least `positions` tiles. */
static tiling tiles_of(const rg_conv_geom *q, int origin_t, int origin_l, size_t positions) {
    tiling t;
    t.th = (q->oh + origin_t + 1) / 2, t.tw = (q->ow + origin_l + 1) / 2;
    t.wp = 2 * (t.tw + 1);
    t.tv = (size_t)t.th * (t.tw + 1);
    t.plane = round_up((size_t)(t.th + 1) * t.wp + PLANE_SLACK, 16);
    t.group = t.tv >= positions ? 1 : (int)(positions / t.tv);
    /* the last sample's last 16 tiles are written up to 15 past group * tv, and the product
     * rounds its columns up to its tiles (16, or 24 with AVX2) */
    t.ld = round_up(t.group * t.tv + 16, 48);
    t.out_rows = (size_t)t.group * t.th * t.wp + 32;
    return t;
}

bool rg_winograd_fits(const rg_conv_geom *q, int filters) {
    return rg_winograd_allowed() && q->kh == 3 && q->kw == 3 && q->stride == 1 && q->dilation == 1 &&
           q->pad_t >= 0 && q->pad_t <= 2 && q->pad_l >= 0 && q->pad_l <= 2 &&
           q->c >= WINO_MIN_CHANNELS && filters >= WINO_MIN_CHANNELS && rg_cpu_isa() != RG_ISA_BASE;
}

/* dW's tiles per product: WEIGHT_POSITIONS, or fewer where that would pass WEIGHT_FLOATS */
static size_t weight_positions(const rg_conv_geom *q, int filters) {
    const size_t most = WEIGHT_FLOATS / (XI * (size_t)(q->c + filters));
    return most < WEIGHT_POSITIONS ? (most > WINO_POSITIONS ? most : WINO_POSITIONS) : WEIGHT_POSITIONS;
}

size_t rg_winograd_packed_floats(const rg_conv_geom *q, int filters) {
    return (size_t)XI * round_up((size_t)filters, 4) * q->c;
}

/* Channels in the vector lanes (AVX-512, channel counts multiples of 16 both ways, up to
 * LANES_MOST): the forward product and dx with each pixel's 16 channels in one vector (see
 * "Channels in lanes" below).  `in` and `out` are the product's channels: C and the filters
 * forward, the filters and C for dx.  Past 128 channels each block of tiles would read its
 * filters' U from L2 over all the channels (ResNet50V2's 256 and 512: slower than the
 * planes, whose products keep a panel of U in L1). */
#define LANES 16
#define LANES_MOST 128
#define LANE_TILES 24 /* tiles times vectors of filters of the products' blocks */
static bool in_lanes(int in, int out) {
    return rg_cpu_isa() == RG_ISA_AVX512 && in % LANES == 0 && out % LANES == 0 && in <= LANES_MOST &&
           out <= LANES_MOST;
}
/* The products' tiles come in blocks of 6, 12 or 24 (4, 2 or 1 vectors of `out` filters). */
static int tile_block(int out) { return out % (4 * LANES) == 0 ? 6 : out % (2 * LANES) == 0 ? 12 : LANE_TILES; }

/* The tiling of a group of samples in lanes: the padded input [sample][channel block]
 * [row][column][16] of hb x wb pixels, the outputs [sample][filter block][row][column][16]
 * of 2 th x 2 tw, and the tiles of the group taken `chunk` at a time (rounded up to the
 * products' blocks), so that a chunk's transformed tiles and products stay in L2. */
typedef struct lanes_tiling {
    int th, tw, hb, wb;
    int per;            /* tiles of a sample: th tw */
    int group;          /* samples converted at a time */
    int block;          /* the products' tiles come in multiples of this */
    int most;           /* tiles transformed and multiplied at a time, at most */
    int chunk;          /* tiles transformed and multiplied at a time */
    size_t in_block;    /* floats of one channel block of a sample's padded input, slack after */
    size_t out_block;   /* floats of one filter block of a sample's outputs, slack after */
} lanes_tiling;

/* group samples at a time, and chunks to match */
static void lanes_regroup(lanes_tiling *t, int group) {
    t->group = group;
    t->chunk = t->per >= t->most ? t->most : (int)round_up((size_t)group * t->per, t->block);
}

/* the buffer's rows and columns: hb x wb pixels */
static void lanes_resize(lanes_tiling *t, int hb, int wb) {
    t->hb = hb, t->wb = wb;
    t->in_block = ((size_t)hb * wb + 2 * LANES) * LANES;
}

static lanes_tiling lanes_of(const rg_conv_geom *q, int filters, int origin_t, int origin_l) {
    lanes_tiling t;
    t.th = (q->oh + origin_t + 1) / 2, t.tw = (q->ow + origin_l + 1) / 2;
    t.per = t.th * t.tw;
    const int widest = q->c > filters ? q->c : filters;
    t.block = tile_block(filters);
    t.most = (int)round_up((size_t)(8192 / widest), t.block); /* 16 x chunk x widest: 512 KiB */
    lanes_regroup(&t, t.per >= t.most ? 1 : t.most / t.per);
    lanes_resize(&t, 2 * t.th + 2, 2 * t.tw + 2);
    t.out_block = ((size_t)4 * t.th * t.tw + 2 * LANES) * LANES;
    return t;
}

/* Tile p of a group as (sample, row, column of tiles), and the next one. */
typedef struct tile_at {
    int s, ty, tx;
} tile_at;
static tile_at tile_of(const lanes_tiling *t, size_t p) {
    const int in = (int)(p % (size_t)t->per);
    return (tile_at){(int)(p / (size_t)t->per), in / t->tw, in % t->tw};
}
static inline void next_tile(const lanes_tiling *t, tile_at *at) {
    if (++at->tx < t->tw) return;
    at->tx = 0;
    if (++at->ty < t->th) return;
    at->ty = 0, at->s++;
}

/* The first pixel of tile `at` (its block `block` of `blocks`) in a buffer in lanes of
 * tiling b, the tiles starting at row top and column left of it. */
static inline const float *tile_corner(const float *buf, const lanes_tiling *b, tile_at at, int block,
                                       int blocks, int top, int left) {
    return buf + ((size_t)at.s * blocks + block) * b->in_block +
           ((size_t)(2 * at.ty + top) * b->wb + 2 * at.tx + left) * LANES;
}

/* The tilings of the backward pass: dW's (tw: dY's tiles, x in its buffer) and dx's (tx: x's
 * tiles, dY in its buffer padded for them, also holding the blocks dW's Z reads, at row
 * top and column left), one group size for both. */
static void lanes_backward_tilings(const rg_conv_geom *q, int filters, lanes_tiling *tw, lanes_tiling *tx,
                                   int *top, int *left) {
    const rg_conv_geom t = rg_conv_transposed(q, filters);
    const int origin_t = q->folded_t % 2, origin_l = q->folded_l % 2;
    *tw = lanes_of(q, filters, 0, 0);
    *tx = lanes_of(&t, q->c, origin_t, origin_l);
    *top = t.pad_t + origin_t, *left = t.pad_l + origin_l;
    const int hb = 2 * tw->th + *top + 1, wb = 2 * tw->tw + *left + 1;
    lanes_resize(tx, tx->hb > hb ? tx->hb : hb, tx->wb > wb ? tx->wb : wb);
    const int group = tw->group < tx->group ? tw->group : tx->group;
    lanes_regroup(tw, group), lanes_regroup(tx, group);
}

static size_t lanes_work_floats(const rg_conv_geom *q, int filters) {
    const size_t cb = (size_t)q->c / LANES, kb = (size_t)filters / LANES;
    size_t most = 0;
    for (int origin = 0; origin < 4; origin++) { /* the forward's */
        const lanes_tiling t = lanes_of(q, filters, origin / 2, origin % 2);
        const size_t need = t.group * (cb * t.in_block + kb * t.out_block) +
                            (size_t)XI * t.chunk * (q->c + filters);
        if (need > most) most = need;
    }
    lanes_tiling tw, tx; /* the backward's: x and dY turned, dx's outputs, tiles, dU */
    int top, left;
    lanes_backward_tilings(q, filters, &tw, &tx, &top, &left);
    const size_t chunk = tw.chunk > tx.chunk ? tw.chunk : tx.chunk;
    const size_t wide = q->c > filters ? q->c : filters; /* V and Z, or V and M of dx */
    const size_t backward = tw.group * (cb * tw.in_block + kb * tx.in_block + cb * tx.out_block) +
                            (size_t)XI * chunk * 2 * wide + (size_t)XI * q->c * filters;
    return most > backward ? most : backward;
}

size_t rg_winograd_work_floats(const rg_conv_geom *q, int filters) {
    const tiling t = tiles_of(q, 0, 0, weight_positions(q, filters));
    const size_t rows4 = round_up((size_t)filters, 4);
    size_t forward = 0; /* the most any origin takes (a sample's tiles and a group's change) */
    for (int origin = 0; origin < 4; origin++) {
        const tiling f = tiles_of(q, origin / 2, origin % 2, WINO_POSITIONS);
        const size_t need = (size_t)q->c * 2 * f.plane + XI * XI_STEP(q->c, f.ld) +
                            XI * XI_STEP(rows4, f.ld) + 2 * f.out_rows;
        if (need > forward) forward = need;
    }
    const size_t weights = (size_t)(q->c > filters ? q->c : filters) * 2 * t.plane +
                           XI * XI_STEP(q->c, t.ld) + XI * XI_STEP(rows4, t.ld) + XI * rows4 * q->c;
    const size_t lanes = in_lanes(q->c, filters) ? lanes_work_floats(q, filters) : 0;
    const size_t most = forward > weights ? forward : weights;
    return (most > lanes ? most : lanes) + 16; /* and to align */
}

/* U = G g G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], for each (row, column) of the
 * product, packed per element xi in the direct kernels' panels of 4 rows.  The rows are
 * the filters (forward) or, for dx, the channels, with g[c][o] = W[o][c] turned 180
 * degrees; in lanes, U [xi][column][row] instead. */
void rg_winograd_pack(const float *w, int filters, const rg_conv_geom *q, bool for_dx,
                      float *packed) {
    const int rows = for_dx ? q->c : filters, cols = for_dx ? filters : q->c;
    const size_t rows4 = round_up((size_t)rows, 4);
    const bool lanes = in_lanes(cols, rows); /* U [xi][cols][rows], rows in lanes */
    memset(packed, 0, XI * rows4 * cols * sizeof *packed);
#pragma omp parallel for schedule(static) if (rows * cols >= 4096)
    for (int r = 0; r < rows; r++)
        for (int col = 0; col < cols; col++) {
            float g[3][3], h[4][3], u[4][4];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = rg_conv_weight(w, q, for_dx, r, col, i * 3 + j);
            for (int j = 0; j < 3; j++) {
                h[0][j] = g[0][j];
                h[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                h[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                h[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) {
                u[i][0] = h[i][0];
                u[i][1] = 0.5f * (h[i][0] + h[i][1] + h[i][2]);
                u[i][2] = 0.5f * (h[i][0] - h[i][1] + h[i][2]);
                u[i][3] = h[i][2];
            }
            for (int xi = 0; xi < XI; xi++)
                packed[lanes ? ((size_t)xi * cols + col) * rows + r
                             : xi * rows4 * cols + (size_t)(r / 4) * 4 * cols + (size_t)col * 4 + r % 4] =
                    u[xi / 4][xi % 4];
        }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The transforms in vectors of W tiles: 16 for AVX-512, 8 for AVX2 (whose shuffles GCC
 * can only do well within 8 lanes).  Lane by lane the same additions either way. */
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
/* The even and odd lanes of a and b (a's first), and the lanes of a and b alternated. */
#define EVENS16(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODDS16(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define INTERLEAVE_LO16(a, b) __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define INTERLEAVE_HI16(a, b) __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
#define EVENS8(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define ODDS8(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#define INTERLEAVE_LO8(a, b) __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11)
#define INTERLEAVE_HI8(a, b) __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15)

/* Unaligned loads and stores (macros: a function returning a 64-byte vector would need
 * AVX-512's calling convention to be built for AVX2). */
#define LOAD(VF, p) ({ VF v_; memcpy(&v_, (p), sizeof v_); v_; })
#define STORE(p, v) do { const __typeof__(v) v_ = (v); memcpy((p), &v_, sizeof v_); } while (0)

/* The transforms of one tile, on vectors of any width (GCC's operators, so AVX-512's
 * __m512 too), each tile's values in lanes; the planes and the lanes layouts both use them:
 *   WINO_INPUT:    out[4a + b] = (B^T d B)[a][b], d a 4x4 input tile,
 *                  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   WINO_GRADIENT: out[4a + b] = (A dy A^T)[a][b], dy a 2x2 block of dY, A = [1 0; 1 1;
 *                  1 -1; 0 -1]: the gradient of the tile's M, whose products with V sum to dU
 *   WINO_OUTPUT:   y[a][b] = (A^T M A)[a][b], M = m[4i + j], A^T = [1 1 1 0; 0 1 -1 -1] */
#define WINO_INPUT(VF, d, out)                                                                \
    do {                                                                                     \
        VF e_[4][4];                                                                         \
        for (int j_ = 0; j_ < 4; j_++) {                                                     \
            e_[0][j_] = d[0][j_] - d[2][j_], e_[1][j_] = d[1][j_] + d[2][j_];                \
            e_[2][j_] = d[2][j_] - d[1][j_], e_[3][j_] = d[1][j_] - d[3][j_];                \
        }                                                                                    \
        for (int a_ = 0; a_ < 4; a_++) {                                                     \
            out[a_ * 4 + 0] = e_[a_][0] - e_[a_][2], out[a_ * 4 + 1] = e_[a_][1] + e_[a_][2]; \
            out[a_ * 4 + 2] = e_[a_][2] - e_[a_][1], out[a_ * 4 + 3] = e_[a_][1] - e_[a_][3]; \
        }                                                                                    \
    } while (0)
#define WINO_GRADIENT(VF, dy, out)                                                            \
    do {                                                                                     \
        VF r_[4][2];                                                                         \
        for (int b_ = 0; b_ < 2; b_++) {                                                     \
            r_[0][b_] = dy[0][b_], r_[1][b_] = dy[0][b_] + dy[1][b_];                        \
            r_[2][b_] = dy[0][b_] - dy[1][b_], r_[3][b_] = -dy[1][b_];                       \
        }                                                                                    \
        for (int a_ = 0; a_ < 4; a_++) {                                                     \
            out[a_ * 4 + 0] = r_[a_][0], out[a_ * 4 + 1] = r_[a_][0] + r_[a_][1];            \
            out[a_ * 4 + 2] = r_[a_][0] - r_[a_][1], out[a_ * 4 + 3] = -r_[a_][1];           \
        }                                                                                    \
    } while (0)
#define WINO_OUTPUT(VF, m, y)                                                                 \
    do {                                                                                     \
        VF r_[2][4];                                                                         \
        for (int j_ = 0; j_ < 4; j_++)                                                       \
            r_[0][j_] = m[j_] + m[4 + j_] + m[8 + j_], r_[1][j_] = m[4 + j_] - m[8 + j_] - m[12 + j_]; \
        for (int a_ = 0; a_ < 2; a_++) {                                                     \
            y[a_][0] = r_[a_][0] + r_[a_][1] + r_[a_][2];                                    \
            y[a_][1] = r_[a_][1] - r_[a_][2] - r_[a_][3];                                    \
        }                                                                                    \
    } while (0)

/* For W tiles of one channel from t0 (its planes of even and odd padded rows), or of one
 * filter's dY; element xi of each goes to out[xi * xi_step]: input_tiles_W (V),
 * gradient_tiles_W (Z), and output_tiles_W, the two output rows of each tile as virtual
 * rows (even and odd) of Wp columns from 2 t0. */
#define TILE_TRANSFORMS(W, VF, EVENS, ODDS, INTERLEAVE_LO, INTERLEAVE_HI)                   \
    static inline __attribute__((always_inline)) void input_tiles_##W(                       \
        const float *even, const float *odd, int wp, size_t t0, float *v, size_t xi_step) {  \
        VF d[4][4], out[XI];                                                                 \
        for (int i = 0; i < 4; i++) {                                                        \
            const float *row = (i % 2 ? odd : even) + 2 * t0 + (size_t)(i / 2) * wp;         \
            const VF a = LOAD(VF, row), b = LOAD(VF, row + W);                               \
            const VF c = LOAD(VF, row + 2), f = LOAD(VF, row + W + 2);                       \
            d[i][0] = EVENS(a, b), d[i][1] = ODDS(a, b), d[i][2] = EVENS(c, f);              \
            d[i][3] = ODDS(c, f);                                                            \
        }                                                                                    \
        WINO_INPUT(VF, d, out);                                                              \
        for (int xi = 0; xi < XI; xi++) STORE(v + (size_t)xi * xi_step, out[xi]);           \
    }                                                                                        \
    static inline __attribute__((always_inline)) void gradient_tiles_##W(                    \
        const float *even, const float *odd, size_t t0, float *z, size_t xi_step) {          \
        const VF e0 = LOAD(VF, even + 2 * t0), e1 = LOAD(VF, even + 2 * t0 + W);             \
        const VF o0 = LOAD(VF, odd + 2 * t0), o1 = LOAD(VF, odd + 2 * t0 + W);               \
        const VF dy[2][2] = {{EVENS(e0, e1), ODDS(e0, e1)}, {EVENS(o0, o1), ODDS(o0, o1)}};  \
        VF out[XI];                                                                          \
        WINO_GRADIENT(VF, dy, out);                                                          \
        for (int xi = 0; xi < XI; xi++) STORE(z + (size_t)xi * xi_step, out[xi]);           \
    }                                                                                        \
    static inline __attribute__((always_inline)) void output_tiles_##W(                      \
        const float *m, size_t xi_step, float *even, float *odd) {                           \
        VF mm[XI], y[2][2];                                                                  \
        for (int xi = 0; xi < XI; xi++) mm[xi] = LOAD(VF, m + (size_t)xi * xi_step);         \
        WINO_OUTPUT(VF, mm, y);                                                              \
        for (int a = 0; a < 2; a++) {                                                        \
            float *dst = a ? odd : even;                                                     \
            STORE(dst, INTERLEAVE_LO(y[a][0], y[a][1]));                                     \
            STORE(dst + W, INTERLEAVE_HI(y[a][0], y[a][1]));                                 \
        }                                                                                    \
    }
TILE_TRANSFORMS(16, v16f, EVENS16, ODDS16, INTERLEAVE_LO16, INTERLEAVE_HI16)
TILE_TRANSFORMS(8, v8f, EVENS8, ODDS8, INTERLEAVE_LO8, INTERLEAVE_HI8)

/* Each instruction set's passes, W tiles at a time: the tiles of one sample's channels (V,
 * or with `gradient` Z of its dY's), and one filter's outputs. */
#define TRANSFORMS(SUFFIX, TARGET, W)                                                       \
    __attribute__((target(TARGET))) static void sample_tiles_##SUFFIX(                      \
        const float *planes, const tiling *t, int channels, bool gradient, size_t xi_step,  \
        float *v) {                                                                         \
        for (int c = 0; c < channels; c++) {                                                \
            const float *even = planes + (size_t)c * 2 * t->plane, *odd = even + t->plane;  \
            float *vc = v + (size_t)c * t->ld;                                              \
            if (gradient)                                                                   \
                for (size_t t0 = 0; t0 < t->tv; t0 += W)                                    \
                    gradient_tiles_##W(even, odd, t0, vc + t0, xi_step);                    \
            else                                                                            \
                for (size_t t0 = 0; t0 < t->tv; t0 += W)                                    \
                    input_tiles_##W(even, odd, t->wp, t0, vc + t0, xi_step);                \
        }                                                                                   \
    }                                                                                       \
    __attribute__((target(TARGET))) static void output_filter_##SUFFIX(                     \
        const float *m, size_t xi_step, size_t tiles, size_t len, float *rows) {            \
        for (size_t p0 = 0; p0 < tiles; p0 += W)                                            \
            output_tiles_##W(m + p0, xi_step, rows + 2 * p0, rows + len + 2 * p0);          \
    }
TRANSFORMS(avx2, "avx2,fma", 8)
TRANSFORMS(avx512, "avx512f", 16)

/* One sample's channels as planes of even and odd padded rows (zeros around): input row
 * iy is padded row iy + top, column ix padded column ix + left, as far as tiles read. */
static void fill_planes(const float *x, const rg_conv_geom *q, const tiling *t, int top, int left,
                        float *planes) {
    memset(planes, 0, (size_t)q->c * 2 * t->plane * sizeof *planes);
    const int rows = 2 * t->th + 2 - top < q->h ? 2 * t->th + 2 - top : q->h;
    const int cols = t->wp - left < q->w ? t->wp - left : q->w;
    for (int c = 0; c < q->c; c++)
        for (int iy = 0; iy < rows; iy++) {
            const int r = iy + top;
            float *dst = planes + ((size_t)c * 2 + r % 2) * t->plane + (size_t)(r / 2) * t->wp + left;
            memcpy(dst, x + ((size_t)c * q->h + iy) * q->w, (size_t)cols * sizeof *dst);
        }
}

/* The tiles of `count` samples of x (V) or, with `gradient`, of dY (Z), each sample's
 * after the last's; then zeros in each row's columns [count tv, zero_to), which the
 * products read past the tiles, and in the rows [q->c, rows) of each element's matrix. */
static void transform_samples(const float *x, size_t x_size, int count, const rg_conv_geom *q,
                              const tiling *t, int top, int left, bool gradient, float *planes,
                              size_t rows, size_t xi_step, size_t zero_to, float *v) {
    const bool wide = rg_cpu_isa() == RG_ISA_AVX512;
    for (int s = 0; s < count; s++) { /* in order: each one's last tiles spill onto the next's */
        fill_planes(x + (size_t)s * x_size, q, t, top, left, planes);
        (wide ? sample_tiles_avx512 : sample_tiles_avx2)(planes, t, q->c, gradient, xi_step,
                                                         v + (size_t)s * t->tv);
    }
    const size_t used = (size_t)count * t->tv;
    for (int xi = 0; xi < XI; xi++)
        for (size_t r = 0; r < rows; r++) {
            const size_t from = r < (size_t)q->c ? used : 0;
            memset(v + xi * xi_step + r * t->ld + from, 0, (zero_to - from) * sizeof *v);
        }
}

/* ---- Channels in lanes ----
 * With both channel counts multiples of 16 and AVX-512, the forward product (and dx) keep
 * each pixel's 16 channels of a block in one vector: a group of samples is turned into
 * [sample][channel block][row][column][16] with its padding (16x16 transposes), so that a
 * tile's 16 values are 16 loads and V = B^T d B is additions only, with no dropped tiles;
 * M[xi][tile][K] = V[xi][tile][C] . U[xi][C][K] broadcasts each value of V against 1, 2 or
 * 4 vectors of U (24, 12 or 6 tiles at a time: 24 accumulators); y = A^T M A goes to
 * [sample][filter block][row][column][16] and back to NCHW by the same transposes.  The
 * additions and products are those of the planes above, in the same order: the same bits.
 */

/* r[j] = lane j of every r[i]: a 16x16 transpose */
__attribute__((target("avx512f"), always_inline)) static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2)
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    for (int i = 0; i < 16; i += 4)
        for (int h = 0; h < 2; h++) {
            const __m512d a = _mm512_castps_pd(t[i + h]), b = _mm512_castps_pd(t[i + h + 2]);
            r[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xDD);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
    }
}

/* One sample's channel block cb as hb x wb pixels: pixel (r, j) is x's row r - top, column
 * j - left, zero outside.  Rows in order, each block of 16 columns stored whole (its lanes
 * past x's width are zeros), so what a row's last block writes past it is zeros too. */
__attribute__((target("avx512f"))) static void lanes_in(const float *x, const rg_conv_geom *q, int cb,
                                                        const lanes_tiling *t, int top, int left,
                                                        float *xb) {
    const __m512 zero = _mm512_setzero_ps();
    const size_t plane = (size_t)q->h * q->w;
    for (int r = 0; r < t->hb; r++) {
        float *row = xb + (size_t)r * t->wb * LANES;
        const int iy = r - top;
        if (iy < 0 || iy >= q->h) {
            for (int j = 0; j < t->wb; j++) _mm512_storeu_ps(row + (size_t)j * LANES, zero);
            continue;
        }
        for (int j = 0; j < left; j++) _mm512_storeu_ps(row + (size_t)j * LANES, zero);
        const float *src = x + (size_t)cb * LANES * plane + (size_t)iy * q->w;
        for (int x0 = 0; x0 < q->w; x0 += LANES) {
            const int n = q->w - x0 < LANES ? q->w - x0 : LANES;
            const __mmask16 m = (__mmask16)((1u << n) - 1);
            __m512 v[16];
            for (int c = 0; c < LANES; c++) v[c] = _mm512_maskz_loadu_ps(m, src + c * plane + x0);
            transpose16(v);
            for (int j = 0; j < LANES; j++) _mm512_storeu_ps(row + (size_t)(left + x0 + j) * LANES, v[j]);
        }
        for (int j = left + q->w; j < t->wb; j++) _mm512_storeu_ps(row + (size_t)j * LANES, zero);
    }
}

/* V of tiles [t0, t0 + n) of the group (tile p: sample p / per, row and column of tiles
 * within it), one channel block: element xi of tile p at v[(xi * ld + p - t0) * C]. */
__attribute__((target("avx512f"))) static void lanes_tiles(const float *xb, const lanes_tiling *t,
                                                           int cb, int blocks, size_t t0, int n, int C,
                                                           size_t ld, float *v) {
    tile_at at = tile_of(t, t0);
    for (int i = 0; i < n; i++, next_tile(t, &at)) {
        const float *d0 = tile_corner(xb, t, at, cb, blocks, 0, 0);
        __m512 d[4][4], out[XI];
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) d[a][b] = _mm512_loadu_ps(d0 + ((size_t)a * t->wb + b) * LANES);
        WINO_INPUT(__m512, d, out);
        float *vp = v + (size_t)i * C + (size_t)cb * LANES;
        for (int xi = 0; xi < XI; xi++) _mm512_storeu_ps(vp + (size_t)xi * ld * C, out[xi]);
    }
}

/* acc[j][k] = the sum over i < COUNT of (a broadcast of the float at BCAST(i, j)) times
 * (the vector at VEC(i, k)), in order of i: both lanes kernels' loop. */
#define OUTER_PRODUCTS(NT, NK, acc, COUNT, BCAST, VEC)                                         \
    _Pragma("GCC unroll 24") for (int j = 0; j < NT; j++)                                      \
        _Pragma("GCC unroll 4") for (int k = 0; k < NK; k++) acc[j][k] = _mm512_setzero_ps();  \
    for (int i = 0; i < (COUNT); i++) {                                                        \
        __m512 vec[NK];                                                                        \
        _Pragma("GCC unroll 4") for (int k = 0; k < NK; k++) vec[k] = _mm512_loadu_ps(VEC(i, k)); \
        _Pragma("GCC unroll 24") for (int j = 0; j < NT; j++) {                                \
            const __m512 b = _mm512_set1_ps(*(BCAST(i, j)));                                   \
            _Pragma("GCC unroll 4") for (int k = 0; k < NK; k++)                               \
                acc[j][k] = _mm512_fmadd_ps(b, vec[k], acc[j][k]);                             \
        }                                                                                      \
    }
/* m (NT tiles, NK vectors of filters) = v (NT tiles, CC) . u (CC, the same filters), the
 * channels in order: rows of v and m CC and K floats long.  CC is a constant (one function
 * per channel count, 16 to LANES_MOST), so that the NT broadcasts address v at fixed
 * offsets instead of NT registers' worth of runtime ones. */
#define PRODUCT_V(i, j) (v + (i) + (j) * channels)
#define PRODUCT_U(i, k) (u + (size_t)(i) * K + (k) * LANES)
#define LANES_PRODUCT(NT, NK, CC)                                                              \
    __attribute__((target("avx512f"))) static void lanes_product_##NT##x##NK##_##CC(           \
        const float *v, const float *u, int K, float *m) {                                    \
        enum { channels = CC };                                                                \
        __m512 acc[NT][NK];                                                                    \
        OUTER_PRODUCTS(NT, NK, acc, channels, PRODUCT_V, PRODUCT_U)                            \
        _Pragma("GCC unroll 24") for (int j = 0; j < NT; j++)                                  \
            _Pragma("GCC unroll 4") for (int k = 0; k < NK; k++)                               \
                _mm512_storeu_ps(m + (size_t)j * K + k * LANES, acc[j][k]);                    \
    }
#define LANES_PRODUCTS(CC) LANES_PRODUCT(24, 1, CC) LANES_PRODUCT(12, 2, CC) LANES_PRODUCT(6, 4, CC)
LANES_PRODUCTS(16)
LANES_PRODUCTS(32)
LANES_PRODUCTS(48)
LANES_PRODUCTS(64)
LANES_PRODUCTS(80)
LANES_PRODUCTS(96)
LANES_PRODUCTS(112)
LANES_PRODUCTS(128)
typedef void (*lanes_product_fn)(const float *v, const float *u, int K, float *m);
#define LANES_ROW(CC) {lanes_product_24x1_##CC, lanes_product_12x2_##CC, lanes_product_6x4_##CC}
/* [C / 16 - 1][1, 2 or 4 vectors of filters] */
static const lanes_product_fn lanes_products[LANES_MOST / LANES][3] = {
    LANES_ROW(16), LANES_ROW(32), LANES_ROW(48), LANES_ROW(64),
    LANES_ROW(80), LANES_ROW(96), LANES_ROW(112), LANES_ROW(128)};

/* y = A^T M A of tiles [t0, t0 + n), every filter block, into the outputs in lanes. */
__attribute__((target("avx512f"))) static void lanes_outputs(const float *m, size_t ld, int K,
                                                             const lanes_tiling *t, size_t t0, int n,
                                                             float *yb) {
    const size_t step = ld * K;
    const int blocks = K / LANES, ow2 = 2 * t->tw;
    tile_at at = tile_of(t, t0);
    for (int i = 0; i < n; i++, next_tile(t, &at)) {
        for (int kb = 0; kb < blocks; kb++) {
            const float *mp = m + (size_t)i * K + (size_t)kb * LANES;
            __m512 mm[XI], y[2][2];
            for (int xi = 0; xi < XI; xi++) mm[xi] = _mm512_loadu_ps(mp + (size_t)xi * step);
            WINO_OUTPUT(__m512, mm, y);
            float *out = yb + ((size_t)at.s * blocks + kb) * t->out_block + ((size_t)2 * at.ty * ow2 + 2 * at.tx) * LANES;
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) _mm512_storeu_ps(out + ((size_t)a * ow2 + b) * LANES, y[a][b]);
        }
    }
}

/* One sample's filter block kb of the outputs in lanes back to y (NCHW): y = (or +=) the
 * output + bias (+ sum, y's shape, when given), output (oy, ox) at the tiles' row
 * oy + origin_t, column ox + origin_l. */
__attribute__((target("avx512f"))) static void lanes_out(const float *yb, const rg_conv_geom *q,
                                                         const lanes_tiling *t, int kb,
                                                         const float *bias, const float *sum, bool add,
                                                         int origin_t, int origin_l, float *y) {
    const size_t plane = (size_t)q->oh * q->ow;
    const int ow2 = 2 * t->tw;
    __m512 b[16];
    for (int k = 0; k < LANES; k++) b[k] = _mm512_set1_ps(bias ? bias[kb * LANES + k] : 0.0f);
    for (int oy = 0; oy < q->oh; oy++) {
        const float *row = yb + ((size_t)(oy + origin_t) * ow2 + origin_l) * LANES;
        float *dst = y + (size_t)kb * LANES * plane + (size_t)oy * q->ow;
        for (int x0 = 0; x0 < q->ow; x0 += LANES) {
            const int n = q->ow - x0 < LANES ? q->ow - x0 : LANES;
            const __mmask16 m = (__mmask16)((1u << n) - 1);
            __m512 v[16];
            for (int j = 0; j < LANES; j++) v[j] = _mm512_loadu_ps(row + (size_t)(x0 + j) * LANES);
            transpose16(v);
            for (int k = 0; k < LANES; k++) {
                float *d = dst + k * plane + x0;
                __m512 o = _mm512_add_ps(v[k], b[k]);
                if (add) o = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), o);
                if (sum) o = _mm512_add_ps(o, _mm512_maskz_loadu_ps(m, sum + (d - y)));
                _mm512_mask_storeu_ps(d, m, o);
            }
        }
    }
}

/* The products of `count` samples turned into xb (tiling t, C channels, K filters): every
 * tile's outputs into yb, a chunk of tiles at a time through v and m. */
static void lanes_multiply(const float *xb, const lanes_tiling *t, int count, int C, int K,
                           const float *packed, float *v, float *m, float *yb) {
    const size_t ld = (size_t)t->chunk, tiles = (size_t)count * t->per;
    for (size_t t0 = 0; t0 < tiles; t0 += ld) {
        const int n = tiles - t0 < ld ? (int)(tiles - t0) : (int)ld;
        const int rounded = (int)round_up((size_t)n, t->block);
        for (int cb = 0; cb < C / LANES; cb++) lanes_tiles(xb, t, cb, C / LANES, t0, n, C, ld, v);
        for (int xi = 0; xi < XI; xi++) /* the rows past n: zeros, not stale values */
            memset(v + ((size_t)xi * ld + n) * C, 0, (size_t)(rounded - n) * C * sizeof *v);
        for (int xi = 0; xi < XI; xi++) {
            const float *vx = v + (size_t)xi * ld * C, *u = packed + (size_t)xi * C * K;
            float *mx = m + (size_t)xi * ld * K;
            for (int k0 = 0; k0 < K;) {
                const int nk = K - k0 >= 4 * LANES ? 4 : K - k0 >= 2 * LANES ? 2 : 1;
                const lanes_product_fn product = lanes_products[C / LANES - 1][nk == 4 ? 2 : nk - 1];
                for (int j = 0; j < rounded; j += LANE_TILES / nk)
                    product(vx + (size_t)j * C, u + k0, K, mx + (size_t)j * K + k0);
                k0 += nk * LANES;
            }
        }
        lanes_outputs(m, ld, K, t, t0, n, yb);
    }
}

static void lanes_forward(const float *x, size_t x_size, int samples, const rg_conv_geom *q,
                          int filters, const float *packed, const float *bias, const float *sum,
                          float *y, size_t y_size, bool add, int origin_t, int origin_l, float *work) {
    const lanes_tiling t = lanes_of(q, filters, origin_t, origin_l);
    const int C = q->c, K = filters, cblocks = C / LANES, kblocks = K / LANES;
    float *xb = (float *)round_up((uintptr_t)work, 64);
    float *yb = xb + (size_t)t.group * cblocks * t.in_block;
    float *v = yb + (size_t)t.group * kblocks * t.out_block, *m = v + (size_t)XI * t.chunk * C;
    for (int s0 = 0; s0 < samples; s0 += t.group) {
        const int count = samples - s0 < t.group ? samples - s0 : t.group;
        for (int s = 0; s < count; s++)
            for (int cb = 0; cb < cblocks; cb++)
                lanes_in(x + (size_t)(s0 + s) * x_size, q, cb, &t, q->pad_t + origin_t, q->pad_l + origin_l,
                         xb + ((size_t)s * cblocks + cb) * t.in_block);
        lanes_multiply(xb, &t, count, C, K, packed, v, m, yb);
        for (int s = 0; s < count; s++)
            for (int kb = 0; kb < kblocks; kb++)
                lanes_out(yb + ((size_t)s * kblocks + kb) * t.out_block, q, &t, kb, bias,
                          sum ? sum + (size_t)(s0 + s) * y_size : NULL, add, origin_t, origin_l,
                          y + (size_t)(s0 + s) * y_size);
    }
}

void rg_winograd_forward(const float *x, size_t x_size, int samples, const rg_conv_geom *q,
                         int filters, const float *packed, const float *bias, const float *sum,
                         float *y, size_t y_size, bool add, int origin_t, int origin_l, float *work) {
    if (in_lanes(q->c, filters)) {
        lanes_forward(x, x_size, samples, q, filters, packed, bias, sum, y, y_size, add, origin_t, origin_l,
                      work);
        return;
    }
    const tiling t = tiles_of(q, origin_t, origin_l, WINO_POSITIONS);
    const bool wide = rg_cpu_isa() == RG_ISA_AVX512;
    const size_t rows4 = round_up((size_t)filters, 4);
    float *planes = (float *)round_up((uintptr_t)work, 64), *v = planes + (size_t)q->c * 2 * t.plane;
    const size_t v_step = XI_STEP(q->c, t.ld), m_step = XI_STEP(rows4, t.ld);
    float *m = v + XI * v_step, *rows = m + XI * m_step;
    int off[RG_DIRECT_MAX_TAPS];
    for (int c = 0; c < q->c; c++) off[c] = (int)((size_t)c * t.ld);
    for (int s0 = 0; s0 < samples; s0 += t.group) {
        const int count = samples - s0 < t.group ? samples - s0 : t.group;
        transform_samples(x + (size_t)s0 * x_size, x_size, count, q, &t, q->pad_t + origin_t,
                          q->pad_l + origin_l, false, planes, q->c, v_step, t.ld, v);
        const size_t used = (size_t)count * t.tv;
        for (int xi = 0; xi < XI; xi++)
            rg_direct_product(packed + xi * rows4 * q->c, filters, q->c, v + xi * v_step, off, used,
                              m + xi * m_step, t.ld);
        for (int o = 0; o < filters; o++) { /* the tiles of all samples, then each one's rows */
            (wide ? output_filter_avx512 : output_filter_avx2)(m + o * t.ld, m_step, used, t.out_rows,
                                                               rows);
            const float b = bias ? bias[o] : 0.0f;
            for (int s = 0; s < count; s++)
                for (int oy = 0; oy < q->oh; oy++) {
                    const int vy = oy + origin_t; /* the row in the tiles */
                    const float *src =
                        rows + (vy % 2) * t.out_rows + (size_t)(s * t.th + vy / 2) * t.wp + origin_l;
                    const size_t at = (size_t)(s0 + s) * y_size + ((size_t)o * q->oh + oy) * q->ow;
                    float *dst = y + at;
                    if (add)
                        for (int ox = 0; ox < q->ow; ox++) dst[ox] += src[ox] + b;
                    else if (sum)
                        for (int ox = 0; ox < q->ow; ox++) dst[ox] = src[ox] + b + sum[at + ox];
                    else
                        for (int ox = 0; ox < q->ow; ox++) dst[ox] = src[ox] + b;
                }
        }
    }
}
/* dW (filters, C, 3, 3) += G^T dU G (G as in rg_winograd_pack), dU's element xi of filter
 * o and channel c at du[xi * xi_step + o * o_step + c * c_step]. */
static inline void weight_grad(const float *du, size_t xi_step, float *g) {
    float u[4][4], h[3][4];
    for (int xi = 0; xi < XI; xi++) u[xi / 4][xi % 4] = du[xi * xi_step];
    for (int j = 0; j < 4; j++) {
        h[0][j] = u[0][j] + 0.5f * (u[1][j] + u[2][j]);
        h[1][j] = 0.5f * (u[1][j] - u[2][j]);
        h[2][j] = 0.5f * (u[1][j] + u[2][j]) + u[3][j];
    }
    for (int i = 0; i < 3; i++) {
        g[i * 3 + 0] += h[i][0] + 0.5f * (h[i][1] + h[i][2]);
        g[i * 3 + 1] += 0.5f * (h[i][1] - h[i][2]);
        g[i * 3 + 2] += 0.5f * (h[i][1] + h[i][2]) + h[i][3];
    }
}
static void weight_grads(const float *du, size_t xi_step, size_t o_step, size_t c_step, int filters,
                         int channels, float *dw) {
    if (o_step == 1) /* filters adjacent in dU: them innermost */
        for (int c = 0; c < channels; c++)
            for (int o = 0; o < filters; o++)
                weight_grad(du + (size_t)c * c_step + o, xi_step, dw + ((size_t)o * channels + c) * 9);
    else
        for (int o = 0; o < filters; o++)
            for (int c = 0; c < channels; c++)
                weight_grad(du + (size_t)o * o_step + (size_t)c * c_step, xi_step,
                            dw + ((size_t)o * channels + c) * 9);
}

/* Z = A dy A^T of tiles [t0, t0 + n) of tiling t (dY's 2x2 blocks; dY in lanes in a
 * buffer of tiling b, its row 0 and column 0 at b's row top, column left), one filter
 * block: element xi of tile p at z[(xi * ld + p - t0) * K]. */
__attribute__((target("avx512f"))) static void lanes_gradient_tiles(const float *dyb, const lanes_tiling *t,
                                                                    const lanes_tiling *b, int top, int left,
                                                                    int kb, int blocks, size_t t0, int n,
                                                                    int K, size_t ld, float *z) {
    const size_t step = ld * K;
    tile_at at = tile_of(t, t0);
    for (int i = 0; i < n; i++, next_tile(t, &at)) {
        const float *d = tile_corner(dyb, b, at, kb, blocks, top, left);
        const __m512 dy[2][2] = {{_mm512_loadu_ps(d), _mm512_loadu_ps(d + LANES)},
                                 {_mm512_loadu_ps(d + (size_t)b->wb * LANES), _mm512_loadu_ps(d + ((size_t)b->wb + 1) * LANES)}};
        __m512 out[XI];
        WINO_GRADIENT(__m512, dy, out);
        float *zp = z + (size_t)i * K + (size_t)kb * LANES;
        for (int xi = 0; xi < XI; xi++) _mm512_storeu_ps(zp + (size_t)xi * step, out[xi]);
    }
}

/* du (NT channels, NK vectors of filters) += the sum over n tiles of v (tiles, C)^T . z
 * (tiles, K): the tiles in order, in registers throughout. */
#define SUMS_V(i, j) (v + (size_t)(i) * C + (j))
#define SUMS_Z(i, k) (z + (size_t)(i) * K + (k) * LANES)
#define LANES_SUMS(NT, NK)                                                                     \
    __attribute__((target("avx512f"))) static void lanes_sums_##NT##x##NK(                    \
        const float *v, int C, const float *z, int K, int n, float *du) {                     \
        __m512 acc[NT][NK];                                                                    \
        OUTER_PRODUCTS(NT, NK, acc, n, SUMS_V, SUMS_Z)                                         \
        _Pragma("GCC unroll 16") for (int j = 0; j < NT; j++)                                  \
            _Pragma("GCC unroll 3") for (int k = 0; k < NK; k++) {                             \
                float *d = du + (size_t)j * K + k * LANES;                                     \
                _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), acc[j][k]));             \
            }                                                                                  \
    }
LANES_SUMS(16, 1)
LANES_SUMS(8, 2)
LANES_SUMS(8, 3)

/* rg_winograd_backward in lanes: per group, x turned as the forward turns it and dY once,
 * padded for dx's tiles; dW's V and Z of a chunk of tiles, dU [xi][C][K] summed over them by
 * outer products; then dx from the same dY. */
static void lanes_backward(const float *x, size_t x_size, const float *dy, size_t dy_size, int samples,
                           const rg_conv_geom *q, int filters, float *dw, const float *packed_dx,
                           float *dx, bool dx_fresh, float *work) {
    lanes_tiling tw, tx;
    int top, left;
    lanes_backward_tilings(q, filters, &tw, &tx, &top, &left);
    const rg_conv_geom tq = rg_conv_transposed(q, filters);
    const int C = q->c, K = filters, cblocks = C / LANES, kblocks = K / LANES;
    float *xb = (float *)round_up((uintptr_t)work, 64);
    float *dyb = xb + (size_t)tw.group * cblocks * tw.in_block;
    float *yb = dyb + (size_t)tw.group * kblocks * tx.in_block;
    float *v = yb + (size_t)tw.group * cblocks * tx.out_block;
    const size_t chunk = tw.chunk > tx.chunk ? tw.chunk : tx.chunk, wide = C > K ? C : K;
    float *z = v + (size_t)XI * chunk * wide, *du = z + (size_t)XI * chunk * wide;
    memset(du, 0, (size_t)XI * C * K * sizeof *du);
    for (int s0 = 0; s0 < samples; s0 += tw.group) {
        const int count = samples - s0 < tw.group ? samples - s0 : tw.group;
        for (int s = 0; s < count; s++) {
            for (int cb = 0; cb < cblocks; cb++)
                lanes_in(x + (size_t)(s0 + s) * x_size, q, cb, &tw, q->pad_t, q->pad_l,
                         xb + ((size_t)s * cblocks + cb) * tw.in_block);
            for (int kb = 0; kb < kblocks; kb++)
                lanes_in(dy + (size_t)(s0 + s) * dy_size, &tq, kb, &tx, top, left,
                         dyb + ((size_t)s * kblocks + kb) * tx.in_block);
        }
        const size_t ld = (size_t)tw.chunk, tiles = (size_t)count * tw.per;
        for (size_t t0 = 0; t0 < tiles; t0 += ld) {
            const int n = tiles - t0 < ld ? (int)(tiles - t0) : (int)ld;
            for (int cb = 0; cb < cblocks; cb++) lanes_tiles(xb, &tw, cb, cblocks, t0, n, C, ld, v);
            for (int kb = 0; kb < kblocks; kb++)
                lanes_gradient_tiles(dyb, &tw, &tx, top, left, kb, kblocks, t0, n, K, ld, z);
            for (int xi = 0; xi < XI; xi++) {
                const float *vx = v + (size_t)xi * ld * C, *zx = z + (size_t)xi * ld * K;
                float *d = du + (size_t)xi * C * K;
                for (int k0 = 0; k0 < K;) {
                    const int nk = (K - k0) / LANES >= 3 ? 3 : (K - k0) / LANES;
                    for (int c0 = 0; c0 < C; c0 += nk == 1 ? 16 : 8) {
                        float *dc = d + (size_t)c0 * K + k0;
                        if (nk == 3) lanes_sums_8x3(vx + c0, C, zx + k0, K, n, dc);
                        else if (nk == 2) lanes_sums_8x2(vx + c0, C, zx + k0, K, n, dc);
                        else lanes_sums_16x1(vx + c0, C, zx + k0, K, n, dc);
                    }
                    k0 += nk * LANES;
                }
            }
        }
        if (!dx) continue;
        lanes_multiply(dyb, &tx, count, K, C, packed_dx, v, z, yb);
        for (int s = 0; s < count; s++)
            for (int cb = 0; cb < cblocks; cb++)
                lanes_out(yb + ((size_t)s * cblocks + cb) * tx.out_block, &tq, &tx, cb, NULL, NULL, !dx_fresh,
                          q->folded_t % 2, q->folded_l % 2, dx + (size_t)(s0 + s) * x_size);
    }
    weight_grads(du, (size_t)C * K, 1, K, filters, C, dw);
}

static void backward_weights(const float *x, size_t x_size, const float *dy, size_t dy_size,
                             int samples, const rg_conv_geom *q, int filters, float *dw, float *work) {
    const tiling t = tiles_of(q, 0, 0, weight_positions(q, filters));
    const size_t rows4 = round_up((size_t)filters, 4);
    const size_t v_step = XI_STEP(q->c, t.ld), z_step = XI_STEP(rows4, t.ld);
    float *planes = (float *)round_up((uintptr_t)work, 64);
    float *v = planes + (size_t)(q->c > filters ? q->c : filters) * 2 * t.plane;
    float *z = v + XI * v_step, *du = z + XI * z_step;
    /* dY as a "convolution input" of its own size, unpadded, for fill_planes */
    rg_conv_geom gq = *q;
    gq.c = filters, gq.h = q->oh, gq.w = q->ow;
    memset(du, 0, XI * rows4 * q->c * sizeof *du);
    for (int s0 = 0; s0 < samples; s0 += t.group) {
        const int count = samples - s0 < t.group ? samples - s0 : t.group;
        /* the sums run to a multiple of 16 tiles (and over 4 rows of Z at a time) */
        const size_t len = round_up((size_t)count * t.tv, 16);
        transform_samples(x + (size_t)s0 * x_size, x_size, count, q, &t, q->pad_t, q->pad_l, false, planes,
                          q->c, v_step, len, v);
        transform_samples(dy + (size_t)s0 * dy_size, dy_size, count, &gq, &t, 0, 0, true, planes, rows4,
                          z_step, len, z);
        for (int xi = 0; xi < XI; xi++)
            rg_direct_product_t(z + xi * z_step, t.ld, filters, v + xi * v_step, t.ld, q->c, len,
                                du + xi * rows4 * q->c, q->c);
    }
    weight_grads(du, (size_t)rows4 * q->c, q->c, 1, filters, q->c, dw);
}

void rg_winograd_backward(const float *x, size_t x_size, const float *dy, size_t dy_size, int samples,
                          const rg_conv_geom *q, int filters, float *dw, const float *packed_dx,
                          float *dx, bool dx_fresh, float *work) {
    if (in_lanes(q->c, filters)) {
        lanes_backward(x, x_size, dy, dy_size, samples, q, filters, dw, packed_dx, dx, dx_fresh, work);
        return;
    }
    backward_weights(x, x_size, dy, dy_size, samples, q, filters, dw, work);
    if (dx) { /* tiled as dx of the padded input would be, were a zero_pad folded in */
        const rg_conv_geom t = rg_conv_transposed(q, filters);
        rg_winograd_forward(dy, dy_size, samples, &t, q->c, packed_dx, NULL, NULL, dx, x_size, !dx_fresh,
                            q->folded_t % 2, q->folded_l % 2, work);
    }
}
#else
void rg_winograd_backward(const float *x, size_t x_size, const float *dy, size_t dy_size, int samples,
                          const rg_conv_geom *q, int filters, float *dw, const float *packed_dx,
                          float *dx, bool dx_fresh, float *work) {
    (void)x, (void)x_size, (void)dy, (void)dy_size, (void)samples, (void)q, (void)filters, (void)dw,
        (void)packed_dx, (void)dx, (void)dx_fresh, (void)work;
}
void rg_winograd_forward(const float *x, size_t x_size, int samples, const rg_conv_geom *q,
                         int filters, const float *packed, const float *bias, const float *sum,
                         float *y, size_t y_size, bool add, int origin_t, int origin_l, float *work) {
    (void)origin_t, (void)origin_l, (void)x, (void)x_size, (void)samples, (void)q, (void)filters, (void)packed, (void)bias,
        (void)sum, (void)y, (void)y_size, (void)add, (void)work;
}
#endif

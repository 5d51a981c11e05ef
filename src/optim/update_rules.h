/*
 * update_rules.h — each optimizer's update of one piece of the parameters, written once in
 * vectors of type VF (GCC's vector extensions; VSQRT its square root) and included by
 * optim.c once for every instruction set it is compiled for (plain x86-64, AVX2,
 * AVX-512: TARGET), RULE(name) naming each copy.  Every operation is exact in IEEE arithmetic and
 * optim.c is built without FMA contraction, so every copy gives the same bits.  A measured
 * piece takes its sums of squares in the same pass, in registers.  No include guard:
 * included thrice.
 */

#define LANES (sizeof(VF) / sizeof(float)) /* floats in a vector */
#define LOAD(p) ({ VF v_; memcpy(&v_, (p), sizeof v_); v_; })
#define STORE(p, v) ({ const VF s_ = (v); memcpy((p), &s_, sizeof s_); })

/* Each rule turns the vector w of weights at `at` into its new value, given their gradient
 * g, reading and writing its moments m0 and m1 at `at`. */
#define VECTOR_RULE(name)                                                                     \
    TARGET static inline __attribute__((always_inline)) VF RULE(name)(                        \
        const step_consts *k, VF w, VF g, float *m0, float *m1, size_t at)

VECTOR_RULE(sgd_vector) {
    (void)m1;
    VF d = g + k->wd * w;
    if (k->mu > 0) {
        const VF buf = k->first ? d : k->mu * LOAD(m0 + at) + d;
        STORE(m0 + at, buf);
        d = k->nesterov ? d + k->mu * buf : buf;
    }
    return w - k->lr * d;
}

VECTOR_RULE(adagrad_vector) {
    (void)m1;
    const VF d = g + k->wd * w, sum = LOAD(m0 + at) + d * d;
    STORE(m0 + at, sum);
    return w - k->lr * d / (VSQRT(sum) + k->eps);
}

VECTOR_RULE(rmsprop_vector) {
    const VF d = g + k->wd * w, v = k->alpha * LOAD(m0 + at) + (1.0f - k->alpha) * d * d;
    STORE(m0 + at, v);
    VF step = d / (VSQRT(v) + k->eps);
    if (k->mu > 0) STORE(m1 + at, step = k->mu * LOAD(m1 + at) + step);
    return w - k->lr * step;
}

VECTOR_RULE(adam_vector) {
    const VF d = g + k->l2 * w;
    const VF m = k->beta1 * LOAD(m0 + at) + (1.0f - k->beta1) * d;
    const VF v = k->beta2 * LOAD(m1 + at) + (1.0f - k->beta2) * d * d;
    STORE(m0 + at, m), STORE(m1 + at, v);
    return k->shrink * w - k->step_size * m / (VSQRT(v) / k->bc2_sqrt + k->eps);
}

/* The update of w[0, n) by VEC in blocks of 64 floats; n not a multiple of 64, the rest
 * goes through VEC too, in a block padded with zeros (what the padding computes is
 * dropped).  With old, the values before are kept in old[0, n); with lanes (measured,
 * and old given too), the
 * squares of the change, of the gradient and of the old values go into 64 float lanes
 * each, lanes[0, 64), [64, 128) and [128, 192), lane j taking the values at j mod 64 of
 * the full blocks in order, as rg_finish_update_squares takes them. */
#define UPDATE_BLOCKS(VEC)                                                                    \
    do {                                                                                      \
        const size_t full = n / 64 * 64;                                                      \
        if (lanes) {                                                                          \
            VF change[64 / LANES], grad[64 / LANES], before[64 / LANES];                      \
            for (size_t h = 0; h < 64 / LANES; h++) change[h] = grad[h] = before[h] = (VF){0}; \
            for (size_t i = 0; i < full; i += 64)                                             \
                for (size_t h = 0; h < 64 / LANES; h++) {                                     \
                    const size_t at = i + h * LANES;                                          \
                    const VF x = LOAD(w + at), gv = LOAD(g + at), y = VEC(k, x, gv, m0, m1, at); \
                    STORE(w + at, y), STORE(old + at, x);                                     \
                    change[h] += (y - x) * (y - x), grad[h] += gv * gv, before[h] += x * x;  \
                }                                                                             \
            memcpy(lanes, change, sizeof change), memcpy(lanes + 64, grad, sizeof grad);     \
            memcpy(lanes + 128, before, sizeof before);                                       \
            memcpy(old + full, w + full, (n - full) * sizeof *w);                            \
        } else if (old) {                                                                     \
            for (size_t at = 0; at < full; at += LANES) {                                     \
                const VF x = LOAD(w + at);                                                    \
                STORE(w + at, VEC(k, x, LOAD(g + at), m0, m1, at)), STORE(old + at, x);       \
            }                                                                                 \
            memcpy(old + full, w + full, (n - full) * sizeof *w);                            \
        } else {                                                                              \
            for (size_t at = 0; at < full; at += LANES)                                       \
                STORE(w + at, VEC(k, LOAD(w + at), LOAD(g + at), m0, m1, at));               \
        }                                                                                     \
        if (full == n) break;                                                                 \
        float pw[64] = {0}, pg[64] = {0}, p0[64] = {0}, p1[64] = {0};                         \
        const size_t rest = (n - full) * sizeof(float);                                       \
        memcpy(pw, w + full, rest), memcpy(pg, g + full, rest);                               \
        if (m0) memcpy(p0, m0 + full, rest);                                                  \
        if (m1) memcpy(p1, m1 + full, rest);                                                  \
        for (size_t at = 0; at < 64; at += LANES)                                             \
            STORE(pw + at, VEC(k, LOAD(pw + at), LOAD(pg + at), p0, p1, at));                 \
        memcpy(w + full, pw, rest);                                                           \
        if (m0) memcpy(m0 + full, p0, rest);                                                  \
        if (m1) memcpy(m1 + full, p1, rest);                                                  \
    } while (0)

/* The update of w[0, n), g its gradient, m0 and m1 the moments at the same place (NULL
 * where the kind keeps fewer), by the kind's rule; with old, kept, and with lanes,
 * measured, as UPDATE_BLOCKS says. */
TARGET static void RULE(update_rule)(rg_optim_kind kind, const step_consts *k, size_t n, float *w,
                              const float *g, float *m0, float *m1, float *old, float *lanes) {
    switch (kind) {
    case RG_OPTIM_SGD:
    case RG_OPTIM_MOMENTUM:
    case RG_OPTIM_NESTEROV: UPDATE_BLOCKS(RULE(sgd_vector)); break;
    case RG_OPTIM_ADAGRAD: UPDATE_BLOCKS(RULE(adagrad_vector)); break;
    case RG_OPTIM_RMSPROP: UPDATE_BLOCKS(RULE(rmsprop_vector)); break;
    case RG_OPTIM_ADAM:
    case RG_OPTIM_ADAMW: UPDATE_BLOCKS(RULE(adam_vector)); break;
    default: return;
    }
}

#undef LANES
#undef LOAD
#undef STORE
#undef VECTOR_RULE
#undef UPDATE_BLOCKS

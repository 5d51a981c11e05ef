/*
 * update_rules.h — each optimizer's update of one piece of the parameters, included by
 * optim.c once for every instruction set it is compiled for (plain x86-64, AVX2,
 * AVX-512), RULE(name) naming each copy.  The loops are the same source, auto-vectorised
 * at each width; every operation is exact in IEEE arithmetic and optim.c is built without
 * FMA contraction, so every copy gives the same bits.  No include guard: included thrice.
 */

static void RULE(sgd_piece)(rg_optim *o, const step_consts *k, size_t off, size_t n, float *w,
                            const float *g, float *old) {
    const float wd = o->c.weight_decay, mu = o->c.momentum, lr = k->lr;
    const bool nesterov = o->c.kind == RG_OPTIM_NESTEROV, first = k->first;
    float *buf = o->moment[0] ? o->moment[0] + off : NULL;
    UPDATE_LOOP({
        float d = g[i] + wd * w[i];
        if (mu > 0) {
            buf[i] = first ? d : mu * buf[i] + d;
            d = nesterov ? d + mu * buf[i] : buf[i];
        }
        w[i] -= lr * d;
    });
}

static void RULE(adagrad_piece)(rg_optim *o, const step_consts *k, size_t off, size_t n, float *w,
                                const float *g, float *old) {
    const float wd = o->c.weight_decay, eps = o->c.eps, lr = k->lr;
    float *sum = o->moment[0] + off;
    UPDATE_LOOP({
        float d = g[i] + wd * w[i];
        sum[i] += d * d;
        w[i] -= lr * d / (sqrtf(sum[i]) + eps);
    });
}

static void RULE(rmsprop_piece)(rg_optim *o, const step_consts *k, size_t off, size_t n, float *w,
                                const float *g, float *old) {
    const float wd = o->c.weight_decay, eps = o->c.eps, a = o->c.alpha, mu = o->c.momentum;
    const float lr = k->lr;
    float *v = o->moment[0] + off, *buf = o->moment[1] ? o->moment[1] + off : NULL;
    UPDATE_LOOP({
        float d = g[i] + wd * w[i];
        v[i] = a * v[i] + (1.0f - a) * d * d;
        float step = d / (sqrtf(v[i]) + eps);
        if (mu > 0) step = buf[i] = mu * buf[i] + step;
        w[i] -= lr * step;
    });
}

static void RULE(adam_piece)(rg_optim *o, const step_consts *k, size_t off, size_t n, float *w,
                             const float *g, float *old) {
    const float b1 = o->c.beta1, b2 = o->c.beta2, eps = o->c.eps;
    const float step_size = k->step_size, bc2_sqrt = k->bc2_sqrt, l2 = k->l2, shrink = k->shrink;
    float *m = o->moment[0] + off, *v = o->moment[1] + off;
    UPDATE_LOOP({
        float d = g[i] + l2 * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        w[i] = shrink * w[i] - step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    });
}

/* The update of w[0, n) = params[off, off + n) by this optimizer's rule; with old, the
 * values before it kept there. */
static void RULE(update_rule)(rg_optim *o, const step_consts *k, size_t off, size_t n, float *w,
                              const float *g, float *old) {
    switch (o->c.kind) {
    case RG_OPTIM_SGD:
    case RG_OPTIM_MOMENTUM:
    case RG_OPTIM_NESTEROV: RULE(sgd_piece)(o, k, off, n, w, g, old); break;
    case RG_OPTIM_ADAGRAD: RULE(adagrad_piece)(o, k, off, n, w, g, old); break;
    case RG_OPTIM_RMSPROP: RULE(rmsprop_piece)(o, k, off, n, w, g, old); break;
    case RG_OPTIM_ADAM:
    case RG_OPTIM_ADAMW: RULE(adam_piece)(o, k, off, n, w, g, old); break;
    default: return;
    }
}

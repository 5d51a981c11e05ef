/*
 * op_norm.c — batch normalisation on the CPU: per (sample, channel) plane, the vector passes
 * of norm.c, the team splitting the planes; synchronised over MPI ranks with --sync-bn; and
 * its tangent and backward tangent.
 */
#include "../../ops/ops.h"
#include "cpu.h"

#include <math.h>
#include <string.h>

/* The passes over one (sample, channel) plane are vector kernels (kernels/cpu/norm.c); a
 * plane of one value, as a dense layer's batch norm has, is done here directly, with the
 * bits the kernel gives it (one lane holds the value, the others 0), without a call per
 * value. */
static double plane_sum(const float *x, size_t n) {
    return n == 1 ? (double)x[0] : rg_bn_plane_sum(x, n);
}

/* sum (x - mu)^2 over one plane. */
static double plane_centred_squares(const float *x, size_t n, float mu) {
    if (n > 1) return rg_bn_plane_centred_squares(x, n, mu);
    const float d = x[0] - mu;
    return (double)(d * d);
}

/* sum dy and sum dy (x - mu) over one plane, added to *sdy and *sdyx. */
static void plane_dy_sums(const float *x, const float *dy, size_t n, float mu, const float *relu,
                          double *sdy, double *sdyx) {
    if (n > 1) {
        rg_bn_plane_dy_sums(x, dy, n, mu, relu, sdy, sdyx);
        return;
    }
    const float g = rg_bn_relu_masked(dy[0], x[0], relu);
    *sdy += g, *sdyx += (double)(g * (x[0] - mu));
}

/* y = x scale + shift over one plane, then relu(y) when relu. */
static void plane_affine(const float *x, float *y, size_t n, float scale, float shift, bool relu) {
    if (n > 1) {
        rg_bn_plane_affine(x, y, n, scale, shift, relu);
        return;
    }
    const float v = x[0] * scale + shift;
    y[0] = relu && v < 0 ? 0.0f : v;
}

/* dx += k (dy - mdy - (x - mu) inv mdyx) over one plane when train, else k dy; dx = when
 * fresh. */
static void plane_input_grad(const float *x, const float *dy, float *dx, size_t n, float k,
                             float mdy, float mu, float inv, float mdyx, bool train,
                             const float *relu, bool fresh) {
    if (n > 1) {
        rg_bn_plane_input_grad(x, dy, dx, n, k, mdy, mu, inv, mdyx, train, relu, fresh);
        return;
    }
    const float h = rg_bn_relu_masked(dy[0], x[0], relu);
    const float g = train ? k * (h - mdy - (x[0] - mu) * inv * mdyx) : k * h;
    dx[0] = fresh ? g : dx[0] + g;
}

/* Each channel's {scale, shift} pair (aux, after the means and invs), from its mean and inv. */
static float *set_affine(rg_graph *g, rg_node_impl *n, int C) {
    const float *gamma = rg_param_data(g, n, 0), *beta = rg_param_data(g, n, 1);
    const float *mean = n->aux, *inv = n->aux + C;
    float *pair = n->aux + 2 * C;
    for (int c = 0; c < C; c++) {
        pair[2 * c] = gamma[c] * inv[c];
        pair[2 * c + 1] = beta[c] - mean[c] * pair[2 * c];
    }
    return pair;
}

/* The fused relu's gradient when that relu took part in this backward (its mask then
 * channel c's pair at aux + 2C + 2c), else NULL: backward reads n's own. */
static const float *fused_grad(const rg_graph *g, const rg_node_impl *n) {
    return n->fused_relu >= 0 && g->live[n->fused_relu] ? g->nodes[n->fused_relu].dout : NULL;
}

/* Synchronised batch norm (data-parallel, --sync-bn): the batch statistics of training
 * mode are over the whole global batch, every rank's samples: per channel, the sums and
 * the count are all-reduced before the mean, the centred squares before the variance,
 * and in backward the sums of dy and dy xhat.  The running statistics then agree on every
 * rank.  Each rank's dy is its own mean loss's; the ranks' equal shares make the result the
 * one-process result up to the factor rg_fit applies to the gradients afterwards. */
static bool synced(const rg_graph *g) { return g->sync_bn && rg_dist_size() > 1; }

static void bn_forward_synced(rg_graph *g, rg_node_impl *n, int batch) {
    bn_attr *a = n->attr;
    const rg_node_impl *xn = rg_in(g, n, 0);
    const int C = n->shape[0];
    const size_t hw = n->size / (size_t)C;
    float *rmean = rg_param_data(g, n, 2), *rvar = rg_param_data(g, n, 3);
    float *mean = n->aux, *inv = n->aux + C;
    double sum[C + 1], sq[C]; /* 16 bytes a channel */
    memset(sum, 0, sizeof sum);
    memset(sq, 0, sizeof sq);
    for (int c = 0; c < C; c++)
        for (int b = 0; b < batch; b++) sum[c] += plane_sum(xn->out + ((size_t)b * C + c) * hw, hw);
    sum[C] = (double)batch * hw;
    rg_dist_sum_doubles(sum, C + 1);
    const double m = sum[C];
    for (int c = 0; c < C; c++) {
        const float mu = (float)(sum[c] / m);
        for (int b = 0; b < batch; b++)
            sq[c] += plane_centred_squares(xn->out + ((size_t)b * C + c) * hw, hw, mu);
    }
    rg_dist_sum_doubles(sq, C);
    a->last_train = true;
    for (int c = 0; c < C; c++) {
        const double mu = sum[c] / m, var = sq[c] / m;
        mean[c] = (float)mu;
        inv[c] = (float)(1.0 / sqrt(var + a->eps));
        rmean[c] = (1.0f - a->momentum) * rmean[c] + a->momentum * (float)mu;
        rvar[c] = (1.0f - a->momentum) * rvar[c] + a->momentum * (float)(var * m / (m - 1));
    }
    const float *pair = set_affine(g, n, C);
    for (int c = 0; c < C; c++)
        for (int b = 0; b < batch; b++)
            plane_affine(xn->out + ((size_t)b * C + c) * hw, n->out + ((size_t)b * C + c) * hw,
                         hw, pair[2 * c], pair[2 * c + 1], n->fused_relu >= 0);
}

static void bn_backward_synced(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *xn = rg_in(g, n, 0);
    const int C = n->shape[0];
    const size_t hw = n->size / (size_t)C;
    const float *gamma = rg_param_data(g, n, 0);
    float *dgamma = rg_param_grad(g, n, 0), *dbeta = rg_param_grad(g, n, 1);
    const float *mean = n->aux, *inv = n->aux + C;
    const float *fused = fused_grad(g, n), *dy = fused ? fused : n->dout, *pair = n->aux + 2 * C;
    double s[2 * C + 1]; /* sdy, sdyx, count */
    memset(s, 0, sizeof s);
    for (int c = 0; c < C; c++) {
        for (int b = 0; b < batch; b++)
            plane_dy_sums(xn->out + ((size_t)b * C + c) * hw, dy + ((size_t)b * C + c) * hw,
                          hw, mean[c], fused ? pair + 2 * c : NULL, &s[c], &s[C + c]);
        s[C + c] *= inv[c];
    }
    for (int c = 0; c < C; c++) dgamma[c] += (float)s[C + c], dbeta[c] += (float)s[c]; /* local */
    s[2 * C] = (double)batch * hw;
    rg_dist_sum_doubles(s, 2 * C + 1);
    const double m = s[2 * C];
    if (xn->needs_grad)
        for (int c = 0; c < C; c++) {
            const float k = gamma[c] * inv[c];
            const float mdy = (float)(s[c] / m), mdyx = (float)(s[C + c] / m);
            for (int b = 0; b < batch; b++) {
                const size_t at = ((size_t)b * C + c) * hw;
                plane_input_grad(xn->out + at, dy + at, xn->dout + at, hw, k, mdy, mean[c], inv[c],
                                 mdyx, true, fused ? pair + 2 * c : NULL, rg_grad_fresh(g, 0));
            }
        }
}

/* The sums over every (sample, channel) plane go to the graph's workspace (the team splits
 * the samples, each thread reading its run of memory in order), then each channel's are
 * added in sample order: the same bits whatever the thread count. */
static double *plane_parts(rg_graph *g) { return (double *)g->workspace; }

/* Each (sample, channel) plane's two sums, in doubles, in the shared workspace. */
void rg_cpu_batch_norm_plan(rg_graph *g, rg_node_impl *n) {
    (void)g;
    n->workspace_per_sample = 4 * (size_t)n->shape[0];
}

void rg_cpu_batch_norm_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    bn_attr *a = n->attr;
    if (train && synced(g) && !rg_node_frozen(g, n)) {
        bn_forward_synced(g, n, batch);
        return;
    }
    const rg_node_impl *xn = rg_in(g, n, 0);
    const int C = n->shape[0];
    const size_t hw = n->size / (size_t)C, m = (size_t)batch * hw;
    const bool team = m * (size_t)C > RG_PARALLEL_MIN;
    float *rmean = rg_param_data(g, n, 2), *rvar = rg_param_data(g, n, 3);
    float *mean = n->aux, *inv = n->aux + C;
    double *part = plane_parts(g);
    const float *x = xn->out;
    /* A batch of one value per channel has no variance to learn from, and a frozen layer
     * keeps its statistics (as Keras's trainable=False): both use the running ones. */
    a->last_train = train && m > 1 && !rg_node_frozen(g, n);
    if (a->last_train) {
#pragma omp parallel for schedule(static) if (team)
        for (int b = 0; b < batch; b++)
            for (int c = 0; c < C; c++)
                part[(size_t)b * C + c] = plane_sum(x + ((size_t)b * C + c) * hw, hw);
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int b = 0; b < batch; b++) s += part[(size_t)b * C + c];
            mean[c] = (float)(s / (double)m);
        }
#pragma omp parallel for schedule(static) if (team)
        for (int b = 0; b < batch; b++)
            for (int c = 0; c < C; c++)
                part[(size_t)b * C + c] = plane_centred_squares(x + ((size_t)b * C + c) * hw, hw, mean[c]);
        for (int c = 0; c < C; c++) {
            double s2 = 0;
            for (int b = 0; b < batch; b++) s2 += part[(size_t)b * C + c];
            const double var = s2 / (double)m;
            inv[c] = (float)(1.0 / sqrt(var + a->eps));
            rmean[c] = (1.0f - a->momentum) * rmean[c] + a->momentum * mean[c];
            rvar[c] = (1.0f - a->momentum) * rvar[c] +
                      a->momentum * (float)(var * (double)m / (double)(m - 1));
        }
    } else {
        for (int c = 0; c < C; c++) {
            mean[c] = rmean[c];
            inv[c] = 1.0f / sqrtf(rvar[c] + a->eps);
        }
    }
    const float *pair = set_affine(g, n, C);
    const bool relu = n->fused_relu >= 0;
#pragma omp parallel for schedule(static) if (team)
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < C; c++) {
            const size_t at = ((size_t)b * C + c) * hw;
            plane_affine(x + at, n->out + at, hw, pair[2 * c], pair[2 * c + 1], relu);
        }
}

void rg_cpu_batch_norm_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const bn_attr *a = n->attr;
    if (a->last_train && synced(g)) {
        bn_backward_synced(g, n, batch);
        return;
    }
    rg_node_impl *xn = rg_in(g, n, 0);
    const int C = n->shape[0];
    const size_t hw = n->size / (size_t)C, m = (size_t)batch * hw;
    const bool team = m * (size_t)C > RG_PARALLEL_MIN;
    const float *gamma = rg_param_data(g, n, 0);
    float *dgamma = rg_param_grad(g, n, 0), *dbeta = rg_param_grad(g, n, 1);
    const float *mean = n->aux, *inv = n->aux + C;
    const float *fused = fused_grad(g, n), *dy = fused ? fused : n->dout, *pair = n->aux + 2 * C;
    double *part = plane_parts(g); /* per plane: sum dy, sum dy (x - mean) */
#pragma omp parallel for schedule(static) if (team)
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < C; c++) {
            const size_t at = ((size_t)b * C + c) * hw;
            double *p = part + 2 * ((size_t)b * C + c);
            p[0] = p[1] = 0;
            plane_dy_sums(xn->out + at, dy + at, hw, mean[c], fused ? pair + 2 * c : NULL, &p[0], &p[1]);
        }
    float k[C], mdy[C], mdyx[C]; /* 12 bytes a channel */
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int b = 0; b < batch; b++) {
            const double *p = part + 2 * ((size_t)b * C + c);
            sdy += p[0], sdyx += p[1];
        }
        sdyx *= inv[c];
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        k[c] = gamma[c] * inv[c];
        mdy[c] = (float)(sdy / (double)m), mdyx[c] = (float)(sdyx / (double)m);
    }
    if (!xn->needs_grad) return;
    const bool fresh = rg_grad_fresh(g, 0);
#pragma omp parallel for schedule(static) if (team)
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < C; c++) {
            const size_t at = ((size_t)b * C + c) * hw;
            plane_input_grad(xn->out + at, dy + at, xn->dout + at, hw, k[c], mdy[c], mean[c], inv[c],
                             mdyx[c], a->last_train, fused ? pair + 2 * c : NULL, fresh);
        }
}

/* With x^ = (x - mean) inv, y = gamma x^ + beta: in training (batch statistics)
 * dy = gamma inv (dx - E[dx] - x^ E[x^ dx]) + dgamma x^ + dbeta, the means per channel
 * over batch and positions; with the running statistics dy = gamma inv dx + dgamma x^ +
 * dbeta (dgamma, dbeta: NULL for none).  A fused relu's mask is its own tangent's (from y). */
void rg_cpu_batch_norm_tangent_values(const float *x, const float *t_in, float *t, int batch, int C, size_t hw,
                                      bool train, const float *mean, const float *inv, const float *gamma,
                                      const float *dgamma, const float *dbeta) {
    const double m = (double)batch * hw;
    for (int c = 0; c < C; c++) {
        double s = 0, sx = 0;
        for (int b = 0; train && b < batch; b++) {
            const size_t at = ((size_t)b * C + c) * hw;
            for (size_t i = 0; i < hw; i++) {
                s += t_in[at + i];
                sx += (x[at + i] - mean[c]) * inv[c] * (double)t_in[at + i];
            }
        }
        const double e = s / m, ex = sx / m, k = (double)gamma[c] * inv[c];
        for (int b = 0; b < batch; b++) {
            const size_t at = ((size_t)b * C + c) * hw;
            for (size_t i = 0; i < hw; i++) {
                const double xh = (x[at + i] - mean[c]) * (double)inv[c];
                t[at + i] = (float)(k * (t_in[at + i] - e - xh * ex) + (dgamma ? dgamma[c] * xh : 0) +
                                    (dbeta ? dbeta[c] : 0));
            }
        }
    }
}

void rg_cpu_batch_norm_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const bn_attr *a = n->attr;
    const int C = n->shape[0];
    rg_cpu_batch_norm_tangent_values(rg_in(g, n, 0)->out, rg_tangent_in(g, n, 0), rg_tangent_out(g, n), batch, C,
                                     n->size / (size_t)C, a->last_train, n->aux, n->aux + C, rg_param_data(g, n, 0),
                                     rg_param_tangent(g, n, 0), rg_param_tangent(g, n, 1));
}

/* Backward with h its gradient before the fused relu (masked), A = h - E[h] - x^ E[h x^]:
 * dx = gamma inv A, dgamma = sum h x^.  Along the tangents, h held (the relu's mask is
 * piecewise constant), with x^_t = inv (x_t - E[x_t] - x^ E[x^ x_t]) and
 * inv_t = -inv^2 E[x^ x_t] in training:
 *   dgamma += sum h x^_t
 *   dx += (gamma_t inv + gamma inv_t) A - gamma inv (x^_t E[h x^] + x^ E[h x^_t]);
 * with the running statistics x^_t = inv x_t, dgamma += sum h x^_t and dx += gamma_t inv h. */
void rg_cpu_batch_norm_backward_tangent_values(const float *x, const float *t, const float *dy, float *dx,
                                               float *dgamma, int batch, int C, size_t hw, bool train,
                                               const float *aux, bool fused, const float *gamma,
                                               const float *gamma_t) {
    const double m = (double)batch * hw;
    const float *mean = aux, *inv = aux + C, *pair = aux + 2 * C;
    for (int c = 0; c < C; c++) {
        const float *relu = fused ? pair + 2 * c : NULL;
        const double s = inv[c];
        double e_t = 0, ex_t = 0, eh = 0, ehx = 0; /* E[x_t], E[x^ x_t], E[h], E[h x^] */
        for (int b = 0; train && b < batch; b++)
            for (size_t i = 0, at = ((size_t)b * C + c) * hw; i < hw; i++) {
                const double xh = (x[at + i] - mean[c]) * s, h = rg_bn_relu_masked(dy[at + i], x[at + i], relu);
                e_t += t[at + i], ex_t += xh * t[at + i], eh += h, ehx += h * xh;
            }
        e_t /= m, ex_t /= m, eh /= m, ehx /= m;
        double ehx_t = 0; /* E[h x^_t] */
        for (int b = 0; b < batch; b++)
            for (size_t i = 0, at = ((size_t)b * C + c) * hw; i < hw; i++) {
                const double xh = (x[at + i] - mean[c]) * s, h = rg_bn_relu_masked(dy[at + i], x[at + i], relu);
                ehx_t += h * s * (train ? t[at + i] - e_t - xh * ex_t : t[at + i]);
            }
        dgamma[c] += (float)ehx_t;
        ehx_t /= m;
        if (!dx) continue;
        const double k_t = (gamma_t ? gamma_t[c] * s : 0) - (train ? gamma[c] * s * s * ex_t : 0);
        for (int b = 0; b < batch; b++)
            for (size_t i = 0, at = ((size_t)b * C + c) * hw; i < hw; i++) {
                const double xh = (x[at + i] - mean[c]) * s, h = rg_bn_relu_masked(dy[at + i], x[at + i], relu);
                if (!train) {
                    dx[at + i] += (float)(k_t * h);
                    continue;
                }
                const double xh_t = s * (t[at + i] - e_t - xh * ex_t);
                dx[at + i] += (float)(k_t * (h - eh - xh * ehx) - gamma[c] * s * (xh_t * ehx + xh * ehx_t));
            }
    }
}

void rg_cpu_batch_norm_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const bn_attr *a = n->attr;
    rg_node_impl *xn = rg_in(g, n, 0);
    const int C = n->shape[0];
    const bool fused = n->fused_relu >= 0 && g->live[n->fused_relu];
    rg_cpu_batch_norm_backward_tangent_values(xn->out, rg_tangent_in(g, n, 0),
                                              rg_adjoint(g, fused ? &g->nodes[n->fused_relu] : n),
                                              xn->needs_grad ? xn->dout : NULL, rg_param_grad(g, n, 0), batch, C,
                                              n->size / (size_t)C, a->last_train, n->aux, fused,
                                              rg_param_data(g, n, 0), rg_param_tangent(g, n, 0));
}

/*
 * evaluate.c — a model on a dataset in evaluation mode: loss, accuracy, the confusion matrix
 * and each auxiliary head's accuracy.
 */
#include "../internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Checks that the model's input takes the dataset's samples. */
rg_status rg_model_check_data(const rg_model *m, const rg_dataset *d) {
    const rg_graph *g = m->graph;
    if (!g || !g->compiled) return rg_fail(RG_ERR_STATE, "compile the model before training it");
    const rg_node_impl *in = &g->nodes[m->input];
    size_t sample = (size_t)d->c * d->h * d->w;
    if (in->size != sample)
        return rg_fail(RG_ERR_SHAPE, "the model takes %zu values per sample but the data has "
                                     "%dx%dx%d = %zu", in->size, d->c, d->h, d->w, sample);
    return rg_dataset_check_labels(d, m->logits >= 0 ? (int)g->nodes[m->logits].size : 0);
}

/* The predicted class of one row of k logits (the first of equal maxima). */
static int argmax(const float *z, int k) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[best]) best = j;
    return best;
}

/* Correct predictions among the first n rows of logits (n, k). */
int rg_count_correct(const float *logits, const int *labels, int n, int k) {
    int correct = 0;
    for (int b = 0; b < n; b++) correct += argmax(logits + (size_t)b * k, k) == labels[b];
    return correct;
}

/* Batch by batch, the next one made (read, decoded, copied into the input) while the device
 * runs this one's forward, whose loss and logits (and with aux_correct, each auxiliary
 * head's, its correct predictions counted there) are read once it is made. */
static rg_status evaluate_batches(rg_model *m, const rg_dataset *d, const int *idx, int n, double *loss,
                                  double *acc, long *confusion, long *aux_correct) {
    rg_status s = rg_model_check_data(m, d);
    if (s) return s;
    rg_graph *g = m->graph;
    const int bs = g->max_batch, k = (int)g->nodes[m->logits].size, heads = aux_correct ? m->n_aux : 0;
    int *order = NULL, *labels = malloc((size_t)bs * sizeof *labels);
    float *z = malloc((size_t)(1 + heads) * bs * k * sizeof *z);
    if (!idx && (order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order)))
        for (int i = 0; i < n; i++) order[i] = i;
    if (!labels || !z || (!idx && !order)) {
        free(labels), free(z), free(order);
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    }
    if (!idx) idx = order;
    float *input = rg_graph_input_buffer(g, m->input);
    double total_loss = 0;
    long correct = 0;
    if (n > 0) s = rg_dataset_batch(d, idx, n < bs ? n : bs, input, g->labels);
    for (int start = 0; start < n && !s; start += bs) {
        const int b = n - start < bs ? n - start : bs, next = start + bs;
        if ((s = rg_graph_forward(g, b, 0))) break;
        float batch_loss;
        rg_node_read_later(g, &g->nodes[m->loss], g->nodes[m->loss].out, 1, &batch_loss);
        rg_node_read_later(g, &g->nodes[m->logits], g->nodes[m->logits].out, (size_t)b * k, z);
        for (int h = 0; h < heads; h++) {
            const rg_node_impl *head = &g->nodes[m->aux_logits[h]];
            rg_node_read_later(g, head, head->out, (size_t)b * k, z + (size_t)(1 + h) * bs * k);
        }
        memcpy(labels, g->labels, (size_t)b * sizeof *labels);
        if (next < n) s = rg_dataset_batch(d, idx + next, n - next < bs ? n - next : bs, input, g->labels);
        const rg_status read = rg_graph_reads_done(g);
        if (s || (s = read)) break;
        total_loss += (double)batch_loss * b;
        correct += rg_count_correct(z, labels, b, k);
        for (int i = 0; confusion && i < b; i++) confusion[(size_t)labels[i] * k + argmax(z + (size_t)i * k, k)]++;
        for (int h = 0; h < heads; h++) aux_correct[h] += rg_count_correct(z + (size_t)(1 + h) * bs * k, labels, b, k);
    }
    free(order), free(labels), free(z);
    *loss = n ? total_loss / n : NAN;
    *acc = n ? (double)correct / n : NAN;
    return s;
}

rg_status rg_evaluate_confusion(rg_model *m, const rg_dataset *d, const int *idx, int n,
                                double *loss, double *acc, long *confusion) {
    return evaluate_batches(m, d, idx, n, loss, acc, confusion, NULL);
}

rg_status rg_evaluate(rg_model *m, const rg_dataset *d, const int *idx, int n, double *loss,
                      double *acc) {
    return rg_evaluate_confusion(m, d, idx, n, loss, acc, NULL);
}

rg_status rg_evaluate_aux(rg_model *m, const rg_dataset *d, double *acc) {
    long correct[RG_MAX_AUX] = {0};
    double loss, main_acc;
    const rg_status s = evaluate_batches(m, d, NULL, d->n, &loss, &main_acc, NULL, correct);
    for (int h = 0; h < m->n_aux; h++) acc[h] = d->n ? (double)correct[h] / d->n : NAN;
    return s;
}

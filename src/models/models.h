/*
 * models.h — what the zoo's model files share: the spec option reader and the builder
 * signature.  Each builder reads its options, then builds into m->graph, setting m->input
 * and m->logits (the classifier output, or the last feature map when top=0).
 */
#ifndef RG_MODELS_H
#define RG_MODELS_H

#include "../internal.h"

#define SPEC_MAX_OPTS 16

typedef struct spec_opts {
    const char *model;
    int n;
    char key[SPEC_MAX_OPTS][32];
    char val[SPEC_MAX_OPTS][64];
    bool used[SPEC_MAX_OPTS];
    char text[256];
} spec_opts;

rg_status spec_parse(const char *spec, spec_opts *o);
/* The value of key (marking it used), or NULL. */
const char *spec_find(spec_opts *o, const char *key);
rg_status spec_int(spec_opts *o, const char *key, int dflt, int lo, int hi, int *out);
rg_status spec_float(spec_opts *o, const char *key, float dflt, float lo, float hi, float *out);
rg_status spec_act(spec_opts *o, rg_act dflt, rg_act *out);
rg_status spec_init(spec_opts *o, rg_init dflt, rg_init *out);
/* For models whose only own option is init: reads it and finishes the spec. */
rg_status spec_init_only(spec_opts *o, rg_init dflt, rg_init *out);
/* Fails on any option left unread, listing the valid ones. */
rg_status spec_done(spec_opts *o, const char *valid);

/* Input shape and classes as resolved by the zoo (spec options over caller values over the
 * model's defaults), and whether to build the classifier. */
typedef struct model_dims {
    int c, h, w, classes;
    bool top;
} model_dims;

typedef rg_status (*model_builder)(spec_opts *o, const model_dims *d, rg_model *m);

rg_status build_mlp(spec_opts *o, const model_dims *d, rg_model *m);
rg_status build_cnn(spec_opts *o, const model_dims *d, rg_model *m);
rg_status build_plaincnn(spec_opts *o, const model_dims *d, rg_model *m);
rg_status build_resnet_cifar(spec_opts *o, const model_dims *d, rg_model *m);
rg_status build_resnet_imagenet(spec_opts *o, const model_dims *d, rg_model *m);
rg_status build_densenet121(spec_opts *o, const model_dims *d, rg_model *m);
rg_status build_densenet_small(spec_opts *o, const model_dims *d, rg_model *m);
rg_status build_lassonet(spec_opts *o, const model_dims *d, rg_model *m);

/* The model's input node, of the resolved (c, h, w). */
rg_node model_input(rg_model *m, const model_dims *d);
/* A convolution with the zoo's usual knobs; name may be NULL for the default name. */
rg_node model_conv(rg_graph *g, rg_node x, int filters, int kernel, int stride, rg_padding mode,
                   int pad, bool bias, rg_init init, const char *name);

/* Names a freshly built node; a no-op on RG_NONE. */
rg_node named(rg_graph *g, rg_node n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

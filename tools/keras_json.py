"""keras_json.py — Keras model JSON written the way Keras 2 (to_json, model_config) and
Keras 3 (config.json) write it, for test fixtures (Debian has no Keras).  A model is built
with calls that mirror the Keras functional API; shapes are tracked channels_last."""
import json

DTYPE3 = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
          "registered_name": None}


def initializer(name, k3):
    d = {"class_name": name, "config": {"seed": None} if name.startswith(("Glorot", "He")) else {}}
    if k3:
        d = {"module": "keras.initializers", **d, "registered_name": None}
    return d


class Model:
    def __init__(self, name, k3):
        self.name, self.k3, self.layers, self.counts = name, k3, [], {}

    def _auto(self, snake):
        n = self.counts.get(snake, 0)
        self.counts[snake] = n + 1
        return snake if n == 0 else "%s_%d" % (snake, n)

    def layer(self, cls, snake, inputs, config, shape, name=None):
        name = name or self._auto(snake)
        cfg = {"name": name, "trainable": True, "dtype": DTYPE3 if self.k3 else "float32", **config}
        entry = {"class_name": cls, "config": cfg, "name": name}
        if self.k3:
            def tensor(t):
                return {"class_name": "__keras_tensor__", "config": {
                    "shape": [None] + list(t[1]), "dtype": "float32", "keras_history": [t[0], 0, 0]}}
            args = [[tensor(t) for t in inputs]] if len(inputs) > 1 else [tensor(t) for t in inputs]
            entry = {"module": "keras.layers", **entry, "registered_name": None,
                     "build_config": {"input_shape": [None] + list(inputs[0][1])} if inputs else None,
                     "inbound_nodes": [{"args": args, "kwargs": {}}] if inputs else []}
        else:
            entry["inbound_nodes"] = [[[t[0], 0, 0, {}] for t in inputs]] if inputs else []
        self.layers.append(entry)
        return (name, tuple(shape))

    # ---- layers (x = (name, shape)); shapes (H, W, C) or (F,)
    def input(self, shape, name=None):
        key = "batch_shape" if self.k3 else "batch_input_shape"
        name = name or ("input_layer" if self.k3 else "input_1")
        cfg = {key: [None] + list(shape), "dtype": "float32", "sparse": False, "ragged": False, "name": name}
        entry = {"class_name": "InputLayer", "config": cfg, "name": name, "inbound_nodes": []}
        if self.k3:
            entry = {"module": "keras.layers", **entry, "registered_name": None}
        self.layers.append(entry)
        self.counts["input_layer"] = 1
        return (name, tuple(shape))

    def conv(self, x, filters, k, stride=1, padding="valid", use_bias=True, activation="linear",
             name=None, groups=1, dilation=1):
        h, w, _ = x[1]
        eff = (k - 1) * dilation + 1
        out = (-(-h // stride), -(-w // stride)) if padding == "same" else \
              ((h - eff) // stride + 1, (w - eff) // stride + 1)
        cfg = {"filters": filters, "kernel_size": [k, k], "strides": [stride, stride], "padding": padding,
               "data_format": "channels_last", "dilation_rate": [dilation, dilation], "groups": groups,
               "activation": activation, "use_bias": use_bias,
               "kernel_initializer": initializer("GlorotUniform", self.k3),
               "bias_initializer": initializer("Zeros", self.k3), "kernel_regularizer": None,
               "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
               "bias_constraint": None}
        return self.layer("Conv2D", "conv2d", [x], cfg, out + (filters,), name)

    def depthwise(self, x, k, stride=1, padding="same", use_bias=True, name=None):
        h, w, c = x[1]
        out = (-(-h // stride), -(-w // stride)) if padding == "same" else ((h - k) // stride + 1, (w - k) // stride + 1)
        cfg = {"kernel_size": [k, k], "strides": [stride, stride], "padding": padding,
               "data_format": "channels_last", "dilation_rate": [1, 1], "depth_multiplier": 1,
               "activation": "linear", "use_bias": use_bias,
               "depthwise_initializer": initializer("GlorotUniform", self.k3)}
        return self.layer("DepthwiseConv2D", "depthwise_conv2d", [x], cfg, out + (c,), name)

    def bn(self, x, eps=1e-3, name=None):
        cfg = {"axis": -1 if self.k3 else [len(x[1])], "momentum": 0.99, "epsilon": eps, "center": True,
               "scale": True, "beta_initializer": initializer("Zeros", self.k3),
               "gamma_initializer": initializer("Ones", self.k3)}
        return self.layer("BatchNormalization", "batch_normalization", [x], cfg, x[1], name)

    def activation(self, x, act, name=None):
        return self.layer("Activation", "activation", [x], {"activation": act}, x[1], name)

    def relu_layer(self, x, name=None):
        return self.layer("ReLU", "re_lu", [x], {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}, x[1], name)

    def zero_pad(self, x, pad, name=None):
        (t, b), (l, r) = pad
        h, w, c = x[1]
        return self.layer("ZeroPadding2D", "zero_padding2d", [x], {"padding": [[t, b], [l, r]],
                          "data_format": "channels_last"}, (h + t + b, w + l + r, c), name)

    def pool(self, x, k, stride, max_pool=True, padding="valid", name=None):
        h, w, c = x[1]
        out = (-(-h // stride), -(-w // stride)) if padding == "same" else ((h - k) // stride + 1, (w - k) // stride + 1)
        cls, snake = ("MaxPooling2D", "max_pooling2d") if max_pool else ("AveragePooling2D", "average_pooling2d")
        return self.layer(cls, snake, [x], {"pool_size": [k, k], "padding": padding, "strides": [stride, stride],
                          "data_format": "channels_last"}, out + (c,), name)

    def global_avg(self, x, name=None):
        return self.layer("GlobalAveragePooling2D", "global_average_pooling2d", [x],
                          {"data_format": "channels_last", "keepdims": False}, (x[1][2],), name)

    def flatten(self, x, name=None):
        n = 1
        for d in x[1]:
            n *= d
        return self.layer("Flatten", "flatten", [x], {"data_format": "channels_last"}, (n,), name)

    def dropout(self, x, rate, name=None):
        return self.layer("Dropout", "dropout", [x], {"rate": rate, "noise_shape": None, "seed": None}, x[1], name)

    def dense(self, x, units, activation="linear", name=None):
        cfg = {"units": units, "activation": activation, "use_bias": True,
               "kernel_initializer": initializer("GlorotUniform", self.k3),
               "bias_initializer": initializer("Zeros", self.k3), "kernel_regularizer": None,
               "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
               "bias_constraint": None}
        return self.layer("Dense", "dense", [x], cfg, (units,), name)

    def add(self, xs, name=None):
        return self.layer("Add", "add", xs, {}, xs[0][1], name)

    def concat(self, xs, name=None):
        c = sum(x[1][-1] for x in xs)
        return self.layer("Concatenate", "concatenate", xs, {"axis": -1 if self.k3 else len(xs[0][1])},
                          xs[0][1][:-1] + (c,), name)

    def to_json(self, inp, out):
        cfg = {"name": self.name, "layers": self.layers}
        if self.k3:
            cfg = {"name": self.name, "trainable": True, "layers": self.layers,
                   "input_layers": [inp[0], 0, 0], "output_layers": [out[0], 0, 0]}
            return json.dumps({"module": "keras.src.models.functional", "class_name": "Functional",
                               "config": cfg, "registered_name": "Functional",
                               "build_config": {"input_shape": None}})
        cfg.update({"input_layers": [[inp[0], 0, 0]], "output_layers": [[out[0], 0, 0]]})
        return json.dumps({"class_name": "Functional", "config": cfg, "keras_version": "2.15.0",
                           "backend": "tensorflow"})


def resnet50v2(k3=False, top=True, size=224):
    """keras.applications.resnet_v2.ResNet50V2's graph, layer for layer."""
    m = Model("resnet50v2", k3)
    inp = x = m.input((size, size, 3))
    x = m.zero_pad(x, ((3, 3), (3, 3)), "conv1_pad")
    x = m.conv(x, 64, 7, 2, name="conv1_conv")
    x = m.zero_pad(x, ((1, 1), (1, 1)), "pool1_pad")
    x = m.pool(x, 3, 2, name="pool1_pool")

    def block2(x, filters, stride=1, conv_shortcut=False, name=""):
        pre = m.bn(x, 1.001e-5, name + "_preact_bn")
        pre = m.activation(pre, "relu", name + "_preact_relu")
        if conv_shortcut:
            shortcut = m.conv(pre, 4 * filters, 1, stride, name=name + "_0_conv")
        else:
            shortcut = m.pool(x, 1, stride) if stride > 1 else x
        h = m.conv(pre, filters, 1, use_bias=False, name=name + "_1_conv")
        h = m.activation(m.bn(h, 1.001e-5, name + "_1_bn"), "relu", name + "_1_relu")
        h = m.zero_pad(h, ((1, 1), (1, 1)), name + "_2_pad")
        h = m.conv(h, filters, 3, stride, use_bias=False, name=name + "_2_conv")
        h = m.activation(m.bn(h, 1.001e-5, name + "_2_bn"), "relu", name + "_2_relu")
        h = m.conv(h, 4 * filters, 1, name=name + "_3_conv")
        return m.add([shortcut, h], name + "_out")

    for filters, blocks, stride1, name in ((64, 3, 2, "conv2"), (128, 4, 2, "conv3"),
                                           (256, 6, 2, "conv4"), (512, 3, 1, "conv5")):
        x = block2(x, filters, conv_shortcut=True, name=name + "_block1")
        for i in range(2, blocks):
            x = block2(x, filters, name="%s_block%d" % (name, i))
        x = block2(x, filters, stride=stride1, name="%s_block%d" % (name, blocks))
    x = m.activation(m.bn(x, 1.001e-5, "post_bn"), "relu", "post_relu")
    if top:
        x = m.dense(m.global_avg(x, "avg_pool"), 1000, "softmax", "predictions")
    return m.to_json(inp, x)


def densenet121(k3=True, size=224):
    """keras.applications.densenet.DenseNet121's graph (Keras 3's names: '_' for '/')."""
    m = Model("densenet121", k3)
    sep = "_" if k3 else "/"
    inp = x = m.input((size, size, 3))
    x = m.zero_pad(x, ((3, 3), (3, 3)))
    x = m.conv(x, 64, 7, 2, use_bias=False, name="conv1" + sep + "conv")
    x = m.activation(m.bn(x, 1.001e-5, "conv1" + sep + "bn"), "relu", "conv1" + sep + "relu")
    x = m.zero_pad(x, ((1, 1), (1, 1)))
    x = m.pool(x, 3, 2, name="pool1")
    for stage, blocks in ((2, 6), (3, 12), (4, 24), (5, 16)):
        for i in range(1, blocks + 1):
            p = "conv%d_block%d" % (stage, i)
            h = m.activation(m.bn(x, 1.001e-5, p + "_0_bn"), "relu", p + "_0_relu")
            h = m.conv(h, 128, 1, use_bias=False, name=p + "_1_conv")
            h = m.activation(m.bn(h, 1.001e-5, p + "_1_bn"), "relu", p + "_1_relu")
            h = m.conv(h, 32, 3, padding="same", use_bias=False, name=p + "_2_conv")
            x = m.concat([x, h], p + "_concat")
        if stage < 5:
            p = "pool%d" % stage
            x = m.activation(m.bn(x, 1.001e-5, p + "_bn"), "relu", p + "_relu")
            x = m.conv(x, x[1][2] // 2, 1, use_bias=False, name=p + "_conv")
            x = m.pool(x, 2, 2, max_pool=False, name=p + "_pool")
    x = m.activation(m.bn(x, 1.001e-5, "bn"), "relu", "relu")
    x = m.dense(m.global_avg(x, "avg_pool"), 1000, "softmax", "predictions")
    return m.to_json(inp, x)

#!/usr/bin/python3
"""random_nets.py — a random small network of the ops regrad reads from ONNX, with random
IDX data for it, for test_device_random.sh (the network trained on the CPU and on the
device must end at the same weights).  It draws the shapes fixed test networks leave out:
odd map sizes, padding that differs on every side, dilation, strides, grouped and
depthwise convolutions, kernels of 1 to 5, pooling with padding and at a stride, a zero
padding before a convolution or a pool, residual adds and concatenations of any channel
count, batch norm over maps and over features, global pooling, dropout, dense layers and
the seven activations regrad reads from ONNX (GELU in the erf form PyTorch exports).

usage: random_nets.py SEED DIR   (writes DIR/model.onnx, DIR/{train,test}-{images,labels}
and DIR/layers.txt, the op types in order)"""
import os
import random
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ACTIVATIONS = [("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("LeakyRelu", {"alpha": 0.01}),
               ("Elu", {"alpha": 1.0}), ("Softplus", {}), ("Gelu", {})]


class Net:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def weight(self, name, array):
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def node(self, op, inputs, **attrs):
        y = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [y], name=y, **attrs))
        return y

    def conv(self, x, c, h, w, k_out=None, same=False):
        """a convolution of x (c x h x w): (its output, channels, height, width), or None where
        the draw leaves no output; same: stride 1, odd kernel, its output the size of x"""
        r = self.rng
        k = r.choice([1, 3]) if same else r.choice([1, 2, 3, 3, 5])
        dilation = 1 if same or r.random() < 0.7 else 2
        stride = 1 if same or r.random() < 0.6 else 2
        span = (k - 1) * dilation + 1
        if same:
            pads = [(span - 1) // 2] * 4
        else:
            pads = [r.randint(0, span - 1) for _ in range(4)]  # top, left, bottom, right
        oh = (h + pads[0] + pads[2] - span) // stride + 1
        ow = (w + pads[1] + pads[3] - span) // stride + 1
        if oh < 1 or ow < 1:
            return None
        k_out = k_out or r.randint(1, 9)
        groups = 1
        if same and c > 1 and r.random() < 0.2:
            groups = k_out = c  # depthwise
        elif not same and r.random() < 0.3:
            shared = [g for g in range(2, min(c, k_out) + 1) if c % g == 0 and k_out % g == 0]
            groups = r.choice(shared) if shared else 1
        layer = self.name("conv")
        fan_in = c // groups * k * k
        inputs = [x, self.weight(layer + ".weight", self.np.normal(0, (2.0 / fan_in) ** 0.5,
                                                                  (k_out, c // groups, k, k)))]
        if r.random() < 0.7:
            inputs.append(self.weight(layer + ".bias", self.np.normal(0, 0.1, k_out)))
        y = self.name("y")
        self.nodes.append(helper.make_node("Conv", inputs, [y], name=layer, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=pads,
                                           dilations=[dilation, dilation], group=groups))
        return y, k_out, oh, ow

    def constant(self, value):
        return self.weight(self.name("const"), np.array(value))

    def act(self, x):
        op, attrs = self.rng.choice(ACTIVATIONS)
        if op == "Gelu":  # opset 13 has none: its erf form, as PyTorch exports it
            e = self.node("Erf", [self.node("Div", [x, self.constant(2 ** 0.5)])])
            return self.node("Mul", [self.node("Mul", [x, self.node("Add", [e, self.constant(1.0)])]),
                                     self.constant(0.5)])
        return self.node(op, [x], **attrs)

    def batch_norm(self, x, c):
        layer = self.name("bn")
        params = [self.weight(layer + ".weight", self.np.uniform(0.5, 1.5, c)),
                  self.weight(layer + ".bias", self.np.normal(0, 0.1, c)),
                  self.weight(layer + ".running_mean", np.zeros(c)),
                  self.weight(layer + ".running_var", np.ones(c))]
        y = self.name("y")
        self.nodes.append(helper.make_node("BatchNormalization", [x] + params, [y], name=layer,
                                           epsilon=1e-5, momentum=0.9))
        return y

    def pool(self, x, h, w):
        r = self.rng
        k, stride = r.randint(1, 3), r.randint(1, 2)
        pad = r.randint(0, (k - 1) // 2)
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        if oh < 1 or ow < 1:
            return None
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        if r.random() < 0.6:
            return self.node("MaxPool", [x], **attrs), oh, ow
        return self.node("AveragePool", [x], count_include_pad=1, **attrs), oh, ow

    def zero_pad(self, x, h, w):
        t, l, b, rt = (self.rng.randint(0, 2) for _ in range(4))
        pads = self.name("pads")
        self.inits.append(numpy_helper.from_array(np.array([0, 0, t, l, 0, 0, b, rt], np.int64), pads))
        return self.node("Pad", [x, pads], mode="constant"), h + t + b, w + l + rt

    def dense(self, x, fan_in, units):
        layer = self.name("dense") if units else "fc"
        units = units or self.classes
        inputs = [x, self.weight(layer + ".weight", self.np.normal(0, (1.0 / fan_in) ** 0.5, (units, fan_in))),
                  self.weight(layer + ".bias", self.np.normal(0, 0.1, units))]
        y = "logits" if layer == "fc" else self.name("y")
        self.nodes.append(helper.make_node("Gemm", inputs, [y], name=layer, transB=1))
        return y

    def build(self):
        r = self.rng
        h0, w0 = r.randint(5, 15), r.randint(5, 15)
        self.classes = r.randint(2, 6)
        x, c, h, w = "input", 1, h0, w0
        for _ in range(r.randint(2, 6)):
            kind = r.random()
            if kind < 0.4:  # convolution, batch norm, activation
                out = self.conv(x, c, h, w)
                if out:
                    x, c, h, w = out
                    if r.random() < 0.5:
                        x = self.batch_norm(x, c)
                    x = self.act(x)
            elif kind < 0.55:
                out = self.pool(x, h, w)
                if out:
                    x, h, w = out
            elif kind < 0.75:  # pre-activation residual block: x + conv(act(bn(x)))
                out = self.conv(self.act(self.batch_norm(x, c)), c, h, w, k_out=c, same=True)
                if out:
                    x = self.node("Add", [x, out[0]])
            elif kind < 0.9:  # dense-block style: [x, conv(act(x))]
                out = self.conv(self.act(x), c, h, w, k_out=r.randint(1, 5), same=True)
                if out:
                    x, c = self.node("Concat", [x, out[0]], axis=1), c + out[1]
            else:
                x, h, w = self.zero_pad(x, h, w)
        kind = r.random()
        if kind < 0.35:
            x, h, w = self.node("GlobalAveragePool", [x]), 1, 1
        elif kind < 0.45 and h == w:
            x, h, w = self.node("GlobalMaxPool", [x]), 1, 1
        if r.random() < 0.2:
            x = self.node("Dropout", [x])
        x, features = self.node("Flatten", [x], axis=1), c * h * w
        for _ in range(r.choice([0, 0, 1, 2])):
            units = r.randint(1, 12)
            x, features = self.dense(x, features, units), units
            if r.random() < 0.4:
                x = self.batch_norm(x, features)
            x = self.act(x)
        self.dense(x, features, 0)
        graph = helper.make_graph(self.nodes, "random_net",
                                  [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, h0, w0])],
                                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", self.classes])],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        onnx.checker.check_model(model)
        return model, h0, w0


def write_idx(path, array):
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def main():
    seed, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    net = Net(seed)
    model, h, w = net.build()
    onnx.save(model, os.path.join(out, "model.onnx"))
    with open(os.path.join(out, "layers.txt"), "w") as f:
        f.write(f"{h}x{w} " + " ".join(n.op_type for n in model.graph.node) + "\n")
    for split, count in (("train", 64), ("test", 32)):
        write_idx(os.path.join(out, split + "-images"), net.np.integers(0, 256, (count, h, w)))
        write_idx(os.path.join(out, split + "-labels"), net.np.integers(0, net.classes, count))


if __name__ == "__main__":
    main()

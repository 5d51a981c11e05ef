#!/usr/bin/python3
"""random_nets.py — a random small network of the ops regrad reads from ONNX, with random
IDX data for it, for test_device_random.sh (the network trained on the CPU and on the
device must end at the same weights).  It draws the shapes fixed test networks leave out:
odd map sizes, padding that differs on every side, dilation, strides, grouped and
depthwise convolutions, kernels of 1 to 5, pooling with padding and at a stride, a zero
padding before a convolution or a pool, residual adds and concatenations of any channel
count, batch norm over maps and over features, global pooling, dropout, dense layers and
the seven activations regrad reads from ONNX (GELU in the erf form PyTorch exports).

With "vanishing", the network is instead a plain stack of convolutions (and dense layers)
under one saturating activation with PyTorch's default initialisation, whose gradients
vanish: for GRA to repair (test_device_random.sh's REGRAD_RANDOM_REPAIR=vanishing).

usage: random_nets.py SEED DIR [vanishing]   (writes DIR/model.onnx,
DIR/{train,test}-{images,labels} and DIR/layers.txt, the op types in order)"""
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

    def conv(self, x, c, h, w, k_out=None, same=False, vanishing=False, k=None):
        """a convolution of x (c x h x w): (its output, channels, height, width), or None where
        the draw leaves no output; same: stride 1, odd kernel, its output the size of x;
        vanishing: PyTorch's default initialisation (uniform, 1 / sqrt(fan-in) at most) and
        no more outputs than a unit has inputs (the covariances GRA measures downstream stay
        regular), else He's normal one; k: the kernel's size, else drawn"""
        r = self.rng
        k = k or (r.choice([1, 3]) if same else r.choice([1, 2, 3, 3, 5]))
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
        k_out = k_out or r.randint(1, min(9, c * k * k) if vanishing else 9)
        groups = 1
        if same and c > 1 and r.random() < 0.2:
            groups = k_out = c  # depthwise
        elif not same and r.random() < 0.3:
            shared = [g for g in range(2, min(c, k_out) + 1) if c % g == 0 and k_out % g == 0]
            groups = r.choice(shared) if shared else 1
        layer = self.name("conv")
        fan_in = c // groups * k * k
        shape = (k_out, c // groups, k, k)
        bound = fan_in ** -0.5
        inputs = [x, self.weight(layer + ".weight", self.np.uniform(-bound, bound, shape) if vanishing
                                 else self.np.normal(0, (2.0 / fan_in) ** 0.5, shape))]
        if r.random() < 0.7:
            inputs.append(self.weight(layer + ".bias", self.np.uniform(-bound, bound, k_out) if vanishing
                                      else self.np.normal(0, 0.1, k_out)))
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

    def dense(self, x, fan_in, units, vanishing=False):
        layer = self.name("dense") if units else "fc"
        units = units or self.classes
        bound = fan_in ** -0.5
        if vanishing:  # PyTorch's default initialisation
            params = self.np.uniform(-bound, bound, (units, fan_in)), self.np.uniform(-bound, bound, units)
        else:
            params = self.np.normal(0, bound, (units, fan_in)), self.np.normal(0, 0.1, units)
        inputs = [x, self.weight(layer + ".weight", params[0]), self.weight(layer + ".bias", params[1])]
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
        return self.model(h0, w0)

    def build_vanishing(self):
        """a plain stack of 5 to 9 convolutions and 0 to 2 dense layers, one saturating
        activation throughout (sigmoid or tanh), PyTorch's default initialisation, no batch
        norm or skip: gradients that vanish on their way back, for GRA to repair.  No layer
        has more outputs than inputs to a unit, and the first convolution is 3x3 (after a 1x1
        one every channel is a function of the same pixel, which GRA's centring makes the
        same function up to sign): else the covariances GRA measures downstream are singular
        but for rounding, and its decisions there are rounding's"""
        r = self.rng
        h0, w0 = r.randint(8, 15), r.randint(8, 15)
        self.classes = r.randint(2, 6)
        act = r.choice(["Sigmoid", "Tanh"])
        x, c, h, w = "input", 1, h0, w0
        for i in range(r.randint(5, 9)):
            out = self.conv(x, c, h, w, same=r.random() < 0.6, vanishing=True, k=3 if i == 0 else None)
            if out:
                x, c, h, w = out
                x = self.node(act, [x])
        x, features = self.node("Flatten", [x], axis=1), c * h * w
        for _ in range(r.choice([0, 1, 2])):
            units = r.randint(min(4, features), min(16, features))
            x, features = self.node(act, [self.dense(x, features, units, vanishing=True)]), units
        self.dense(x, features, 0, vanishing=True)
        return self.model(h0, w0)

    def model(self, h0, w0):
        """the ONNX model of the nodes drawn, its input 1 x h0 x w0"""
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
    vanishing = sys.argv[3:] == ["vanishing"]
    if len(sys.argv) < 3 or sys.argv[3:] and not vanishing:
        sys.exit(__doc__)
    os.makedirs(out, exist_ok=True)
    net = Net(seed)
    model, h, w = net.build_vanishing() if vanishing else net.build()
    onnx.save(model, os.path.join(out, "model.onnx"))
    with open(os.path.join(out, "layers.txt"), "w") as f:
        f.write(f"{h}x{w} " + " ".join(n.op_type for n in model.graph.node) + "\n")
    for split, count in (("train", 64), ("test", 32)):
        write_idx(os.path.join(out, split + "-images"), net.np.integers(0, 256, (count, h, w)))
        write_idx(os.path.join(out, split + "-labels"), net.np.integers(0, net.classes, count))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""onnx_reference.py — an independent evaluator, in float64, of the ONNX operators regrad
exports (each node by its ONNX definition, through Debian's python3-torch functional ops),
so an export can be checked against the standard without onnxruntime.  Its Session has
onnxruntime's get_inputs()/run() shape, which tools/onnxruntime_check.py --reference uses;
tools/bf16_error.py runs node() in float32, for training, under autocast.

  onnx_reference.py MODEL.onnx IMAGE...     prints each image's class probabilities
"""
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def attrs(n):
    return {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}


def _spatial_pad(pads):
    """ONNX pads (begin of each spatial axis, then the ends) as F.pad's (last axis first)."""
    half = len(pads) // 2
    out = []
    for d in reversed(range(half)):
        out += [pads[d], pads[d + half]]
    return out


def _pool(x, a, kind):
    pads = a.get("pads", [0] * 4)
    if a.get("ceil_mode", 0) or a.get("dilations", [1, 1]) != [1, 1]:
        raise NotImplementedError("pooling with ceil_mode or dilations")
    if kind == "MaxPool":  # padding takes no part in the maximum
        return F.max_pool2d(F.pad(x, _spatial_pad(pads), value=-float("inf")), a["kernel_shape"], a["strides"])
    if not a.get("count_include_pad", 0) and any(pads):
        raise NotImplementedError("AveragePool with count_include_pad=0 and pads")
    return F.avg_pool2d(F.pad(x, _spatial_pad(pads)), a["kernel_shape"], a["strides"])


def node(op, a, i, training=False):
    """One node's output from its attributes a and inputs i (tensors; None where absent);
    training: batch norm on the batch's statistics, as in a training step."""
    if op == "Conv":
        x = F.pad(i[0], _spatial_pad(a.get("pads", [0] * 4)))
        return F.conv2d(x, i[1], i[2] if len(i) > 2 else None, a.get("strides", [1, 1]), 0,
                        a.get("dilations", [1, 1]), a.get("group", 1))
    if op == "Gemm":
        x = i[0].t() if a.get("transA", 0) else i[0]
        w = i[1] if a.get("transB", 0) else i[1].t()  # (outputs, inputs), as F.linear takes it
        b = i[2] if len(i) > 2 else None
        if a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0:
            return F.linear(x, w, b)  # as torch.nn.Linear computes it
        return a.get("alpha", 1.0) * F.linear(x, w) + (a.get("beta", 1.0) * b if b is not None else 0)
    if op == "BatchNormalization":
        stats = (None, None) if training else (i[3], i[4])
        return F.batch_norm(i[0], *stats, i[1], i[2], training, 0.1, a.get("epsilon", 1e-5))
    if op in ("MaxPool", "AveragePool"):
        return _pool(i[0], a, op)
    if op == "GlobalAveragePool":
        return i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True)
    if op == "GlobalMaxPool":
        return i[0].amax(dim=tuple(range(2, i[0].dim())), keepdim=True)
    if op == "Pad":
        if a.get("mode", b"constant") not in (b"constant", "constant"):
            raise NotImplementedError("Pad mode %s" % a["mode"])
        value = float(i[2]) if len(i) > 2 and i[2] is not None else 0.0
        pads = [int(p) for p in i[1].tolist()]
        return F.pad(i[0], _spatial_pad(pads), value=value)
    if op == "Flatten":
        axis = a.get("axis", 1)
        return i[0].reshape(int(np.prod(i[0].shape[:axis])), -1)
    if op == "Transpose":
        return i[0].permute(*a["perm"])
    if op == "Concat":
        return torch.cat(i, dim=a["axis"])
    if op == "Softmax":
        return torch.softmax(i[0], dim=a.get("axis", -1))
    unary = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Softplus": F.softplus,
             "Erf": torch.erf, "Identity": lambda t: t,
             "LeakyRelu": lambda t: F.leaky_relu(t, a.get("alpha", 0.01)),
             "Elu": lambda t: F.elu(t, a.get("alpha", 1.0))}
    if op in unary:
        return unary[op](i[0])
    binary = {"Add": torch.add, "Mul": torch.mul, "Div": torch.div, "Sub": torch.sub}
    if op in binary:
        return binary[op](i[0], i[1])
    raise NotImplementedError("op %s" % op)


class _Input:
    def __init__(self, value_info):
        self.name = value_info.name
        dims = value_info.type.tensor_type.shape.dim
        self.shape = [d.dim_param or d.dim_value for d in dims]


class Session:
    """One model: run(None, {input: array}) returns [logits] computed in float64."""

    def __init__(self, path):
        self.model = onnx.load(path)
        init = {t.name for t in self.model.graph.initializer}
        self.inputs = [_Input(v) for v in self.model.graph.input if v.name not in init]
        self.weights = {}
        for t in self.model.graph.initializer:
            v = torch.from_numpy(numpy_helper.to_array(t).copy())
            self.weights[t.name] = v.double() if v.is_floating_point() else v

    def get_inputs(self):
        return self.inputs

    def run(self, outputs, feed):
        env = dict(self.weights)
        for name, value in feed.items():
            env[name] = torch.from_numpy(np.asarray(value)).double()
        for n in self.model.graph.node:
            env[n.output[0]] = node(n.op_type, attrs(n), [env[k] if k else None for k in n.input])
        return [env[o.name].numpy() for o in self.model.graph.output]


def main():
    from PIL import Image
    session = Session(sys.argv[1])
    for path in sys.argv[2:]:
        pixels = np.asarray(Image.open(path), dtype=np.float32) / 255.0
        x = pixels.transpose(2, 0, 1)[None] if pixels.ndim == 3 else pixels[None, None]
        if len(session.get_inputs()[0].shape) == 2:
            x = x.reshape(1, -1)
        logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
        p = np.exp(logits - logits.max())
        print(path, " ".join("%.6f" % v for v in p / p.sum()))


if __name__ == "__main__":
    main()

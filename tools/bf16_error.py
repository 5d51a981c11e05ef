#!/usr/bin/python3
"""bf16_error.py — how far bf16 moves a training step, regrad's against PyTorch's bf16
autocast, on tests/random_nets.py's random networks: for each, one full-batch SGD step
(64 images) from the same weights, in fp32 on the CPU and in bf16 on the device
(regrad_emulated_device runs the CUDA kernels on the host, or regrad on a GPU), and
PyTorch's gradients in fp32 and under torch.autocast(bfloat16) (on the CPU), read from the
same ONNX file by tools/onnx_reference.py's operators.  Each side's error is the norm of the
bf16 step's difference from the fp32 one over the fp32 step's norm, all parameters together.  regrad stores every activation
and gradient in bf16; autocast casts only its products' operands, and keeps an op in fp32
where an fp32 tensor meets it (an add or a concatenation with the network's input), so the
two differ most where the input meets such an op.  Networks with dropout are left out
(its masks are regrad's own).

usage: tools/bf16_error.py REGRAD DEVICE_REGRAD [FIRST LAST]   (seeds; 1 to 50 by default)
needs /usr/bin/python3 with torch, onnx and numpy."""
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn.functional as F

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tools"))
import onnx_reference  # noqa: E402
import safetensors_np  # noqa: E402

LR = 0.01


def idx(path):
    b = open(path, "rb").read()
    dims = struct.unpack(f">{b[3]}I", b[4:4 + 4 * b[3]])
    return np.frombuffer(b[4 + 4 * b[3]:], np.uint8).reshape(dims)


def torch_grads(d, bf16):
    """PyTorch's gradient of the mean cross-entropy over the 64 training images"""
    m = onnx.load(os.path.join(d, "model.onnx"))
    x = torch.tensor(idx(os.path.join(d, "train-images")), dtype=torch.float32)[:, None] / 255.0
    y = torch.tensor(idx(os.path.join(d, "train-labels")).astype(np.int64))
    v = {t.name: torch.tensor(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    params = {k: t.requires_grad_() for k, t in v.items()
              if t.dtype == torch.float32 and t.dim() and "running" not in k}
    v["input"] = x
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        nodes, skip = list(m.graph.node), 0
        for index, n in enumerate(nodes):
            if skip:
                skip -= 1
            elif n.op_type == "Div":  # GELU's erf form, x / sqrt 2 -> Erf -> + 1 -> * x -> * 0.5: PyTorch's GELU
                v[nodes[index + 4].output[0]], skip = F.gelu(v[n.input[0]]), 4
            else:
                inputs = [v[k] if k else None for k in n.input]
                v[n.output[0]] = onnx_reference.node(n.op_type, onnx_reference.attrs(n), inputs, training=True)
        loss = F.cross_entropy(v["logits"].float(), y)
    return [g.double() for g in torch.autograd.grad(loss, list(params.values()))]


def regrad_step(program, d, name, lr, device):
    args = [program, "train", "--model", f"onnx:{d}/model.onnx", "--data",
            f"idx:{d}/train-images,{d}/train-labels,{d}/test-images,{d}/test-labels", "--epochs", "1",
            "--batch", "64", "--optimizer", "sgd", "--lr", str(lr), "--seed", "1", "--threads", "1",
            "--repair", "off", "--quiet", "--checkpoint-dir", os.path.join(d, name)] + device
    subprocess.run(args, check=True, capture_output=True)
    w, _ = safetensors_np.read(os.path.join(d, name, "last.safetensors"))
    return {k: a.astype(np.float64) for k, a in w.items() if "moving" not in k}


def relative(a, b):
    """|a - b| / |b| over lists of arrays"""
    return (sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b)) /
            sum(float((y ** 2).sum()) for y in b)) ** 0.5


def main():
    cpu, dev = sys.argv[1], sys.argv[2]
    first, last = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1, 50)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(first, last + 1):
            d = os.path.join(tmp, str(seed))
            subprocess.run([sys.executable, os.path.join(root, "tests", "random_nets.py"), str(seed), d], check=True)
            layers = open(os.path.join(d, "layers.txt")).read().strip()
            if "Dropout" in layers:  # its masks are regrad's own
                continue
            start = regrad_step(cpu, d, "start", 1e-30, [])  # a step of 1e-30: the weights as they start
            fp32 = regrad_step(cpu, d, "fp32", LR, [])
            bf16 = regrad_step(dev, d, "bf16", LR, ["--device", "cuda", "--precision", "bf16"])
            keys = [k for k in fp32 if k in start]
            step32 = [fp32[k] - start[k] for k in keys]
            mine = relative([bf16[k] - start[k] for k in keys], step32)
            g32, g16 = torch_grads(d, False), torch_grads(d, True)
            theirs = relative([g.numpy() for g in g16], [g.numpy() for g in g32])
            # the fp32 steps' norms agree: the interpreter runs the same network
            n32 = sum(float((s ** 2).sum()) for s in step32) ** 0.5 / LR
            t32 = sum(float((g ** 2).sum()) for g in g32) ** 0.5
            if abs(n32 - t32) > 1e-3 * t32:
                sys.exit(f"seed {seed}: fp32 gradient norms differ: regrad {n32:.6g}, PyTorch {t32:.6g}")
            rows.append((mine, theirs))
            print(f"seed {seed}: regrad bf16 {mine:.3e}, PyTorch autocast {theirs:.3e}, "
                  f"ratio {mine / theirs:.2f}  [{layers}]", flush=True)
    mine, theirs = np.array(rows).T
    print(f"{len(rows)} networks: regrad bf16 {spread(mine)}; PyTorch autocast {spread(theirs)}; "
          f"ratio {spread(mine / theirs)}")


def spread(a):
    return f"median {np.median(a):.3g}, 90th percentile {np.percentile(a, 90):.3g}, largest {a.max():.3g}"


if __name__ == "__main__":
    main()

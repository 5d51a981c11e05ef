#!/usr/bin/env python3
"""mlp.py — regrad and PyTorch side by side on the GPU: the same MLP (784 -> 4 x 1024 relu ->
10), Adam, batch 256, 3 epochs over the first N images of Fashion-MNIST.  PyTorch copies
each batch from host memory to the GPU as regrad does.  The ratio compares training loops:
PyTorch's, timed around it, and regrad's epochs as its metrics record them (the whole
command's time, with start-up, data and test evaluation, is printed too).  Also regrad on
the CPU, for scale.  Prints one line per run and the ratio.
  Usage: bench/gpu/mlp.py REGRAD DATA_DIR     (DATA_DIR: Fashion-MNIST's four files, gzip or not)
"""
import gzip, json, os, subprocess, sys, tempfile, time

import numpy as np
import torch
import torch.nn as nn

REGRAD, DATA = sys.argv[1], sys.argv[2]
EPOCHS, BATCH, WIDTH, DEPTH = 3, 256, 1024, 4


def idx(name, offset):  # gzip or unpacked, as regrad's fashion-mnist:DIR takes it
    path = os.path.join(DATA, name)
    with gzip.open(path + ".gz") if os.path.exists(path + ".gz") else open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


x = idx("train-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255
y = idx("train-labels-idx1-ubyte", 8).astype(np.int64)
n = len(y)


def regrad(device):
    """the whole command's seconds and its epochs' (from --metrics)"""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        t = time.time()
        subprocess.run([REGRAD, "train", "--data", "fashion-mnist:" + DATA, "--model",
                        "mlp:depth=%d,width=%d" % (DEPTH, WIDTH), "--epochs", str(EPOCHS), "--batch", str(BATCH),
                        "--device", device, "--repair", "off", "--quiet", "--metrics", metrics],
                       check=True, capture_output=True)
        whole = time.time() - t
        with open(metrics) as f:
            epochs = sum(e["seconds"] for e in map(json.loads, f) if e.get("event") == "epoch")
    return whole, epochs


def pytorch():
    torch.manual_seed(0)
    layers, width = [], 784
    for _ in range(DEPTH):
        layers += [nn.Linear(width, WIDTH), nn.ReLU()]
        width = WIDTH
    m = nn.Sequential(*layers, nn.Linear(width, 10)).cuda()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    torch.cuda.synchronize()
    t = time.time()
    for _ in range(EPOCHS):
        for i in range(0, n, BATCH):
            xb, yb = xs[i:i + BATCH].cuda(), ys[i:i + BATCH].cuda()
            opt.zero_grad()
            nn.functional.cross_entropy(m(xb), yb).backward()
            opt.step()
    torch.cuda.synchronize()
    return time.time() - t


pytorch()  # warm-up: CUDA context, cuBLAS handles
images = EPOCHS * n
t_torch, (whole_gpu, t_gpu), (whole_cpu, t_cpu) = pytorch(), regrad("cuda"), regrad("cpu")
for name, t in (("pytorch cuda (loop)", t_torch), ("regrad cuda (epochs)", t_gpu),
                ("regrad cuda (whole command)", whole_gpu), ("regrad cpu (epochs)", t_cpu),
                ("regrad cpu (whole command)", whole_cpu)):
    print("%-30s %7.2f s  %8.0f img/s" % (name, t, images / t))
print("mlp %dx%d, %d images x %d epochs: regrad cuda / pytorch cuda time %.2f (training loops)" %
      (DEPTH, WIDTH, n, EPOCHS, t_gpu / t_torch))

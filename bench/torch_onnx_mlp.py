#!/usr/bin/python3
"""torch_onnx_mlp.py — PyTorch and regrad side by side on the same 20-layer sigmoid MLP (PyTorch
default init), one epoch of Fashion-MNIST, Adam, batch 128, 2 threads: PyTorch trains its
module; regrad trains the ONNX export of it (make it with tools/make_onnx_fixtures.py
deep-sigmoid /tmp/kt/deep.onnx), GRA off and on.  regrad's time includes its process start,
data loading and test evaluation; PyTorch's only its training loop.
  Usage: bench/torch_onnx_mlp.py [REGRAD] [DEEP.onnx]
"""
import gzip, time, numpy as np, torch, torch.nn as nn, subprocess, sys, os
REGRAD = sys.argv[1] if len(sys.argv) > 1 else "build/regrad"
MODEL = sys.argv[2] if len(sys.argv) > 2 else "/tmp/kt/deep.onnx"
torch.set_num_threads(2)
d = "/usr/share/datasets/fashion-mnist/"
def idx(name):
    f = [x for x in os.listdir(d) if x.startswith(name)][0]
    b = (gzip.open if f.endswith(".gz") else open)(d + f, "rb").read()
    return b
img = np.frombuffer(idx("train-images"), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255
lab = np.frombuffer(idx("train-labels"), np.uint8, offset=8).astype(np.int64)
torch.manual_seed(0)
layers, n = [nn.Flatten()], 784
for _ in range(20): layers += [nn.Linear(n, 128), nn.Sigmoid()]; n = 128
m = nn.Sequential(*layers, nn.Linear(n, 10)); opt = torch.optim.Adam(m.parameters(), 1e-3)
x, y = torch.from_numpy(img), torch.from_numpy(lab)
t = time.time()
for i in range(0, 60000, 128):
    opt.zero_grad(); nn.functional.cross_entropy(m(x[i:i+128]), y[i:i+128]).backward(); opt.step()
tt = time.time() - t
def rg(rep):
    t = time.time(); subprocess.run([REGRAD, "train", "--model", "onnx:" + MODEL, "--epochs", "1", "--threads", "2", "--quiet", "--repair", rep], check=True, capture_output=True); return time.time() - t
a, b = rg("off"), rg("auto")
print("20-layer sigmoid MLP, 1 epoch Fashion-MNIST, Adam, batch 128, 2 threads")
print("PyTorch %.1f s | regrad GRA off %.1f s (%.2fx PyTorch) | regrad GRA on %.1f s (%.2fx)" % (tt, a, tt / a, b, tt / b))

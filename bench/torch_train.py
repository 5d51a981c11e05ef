#!/usr/bin/python3
"""PyTorch peer for bench_train.sh: trains the same network as regrad's --model on
Fashion-MNIST and prints training images/s and test accuracy as one JSON line.

Data are decoded once into tensors before timing, as regrad holds them in memory too; the
timed loop is shuffle, batch, forward, backward, optimizer step: the training loop only.
Models: mlp (784-256-256-10 ReLU), cnn (conv32-pool-conv64-pool-fc128), resnet20v2
(pre-activation, 16/32/64, 1x1 projection shortcuts on the pre-activation, pad 1), each
built to match regrad's zoo layer for layer."""
import argparse, gzip, json, time
import numpy as np
import torch
import torch.nn as nn

def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)

class PreactBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.proj = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride > 1 or cin != cout else None
    def forward(self, x):
        pre = torch.relu(self.bn1(x))
        short = self.proj(pre) if self.proj is not None else x
        return short + self.conv2(torch.relu(self.bn2(self.conv1(pre))))

def resnet_v2(n, classes=10):
    layers, cin = [nn.Conv2d(1, 16, 3, 1, 1, bias=False)], 16
    for stage in range(3):
        cout = 16 << stage
        for b in range(n):
            layers.append(PreactBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)

def build(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "resnet20v2":
        return resnet_v2(3)
    raise SystemExit(f"unknown model {name}")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.tensor(idx(f"{a.dir}/train-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).view(-1, 1, 28, 28)
    y = torch.tensor(idx(f"{a.dir}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    xt = torch.tensor(idx(f"{a.dir}/t10k-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).view(-1, 1, 28, 28)
    yt = torch.tensor(idx(f"{a.dir}/t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    model = build(a.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    n = x.shape[0]
    model.train()
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        perm = torch.randperm(n)
        for s in range(0, n, a.batch):
            i = perm[s:s + a.batch]
            opt.zero_grad()
            loss = lossf(model(x[i]), y[i])
            loss.backward()
            opt.step()
    secs = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        acc = sum((model(xt[s:s + 1000]).argmax(1) == yt[s:s + 1000]).sum().item() for s in range(0, 10000, 1000)) / 10000
    print(json.dumps({"images_per_sec": n * a.epochs / secs, "test_acc": acc, "seconds": secs}))

if __name__ == "__main__":
    main()

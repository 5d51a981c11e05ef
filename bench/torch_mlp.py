#!/usr/bin/python3
"""PyTorch peer for bench_mlp.sh: one epoch of an MLP on Fashion-MNIST, printing the same
figures regrad prints (training images/s, test accuracy) as one JSON line.

Data are decoded once into tensors before timing, as regrad holds them in memory too; the
timed loop is shuffle, batch, forward, backward, optimizer step: the training loop only."""
import argparse, gzip, json, time
import numpy as np
import torch

def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--widths", default="256,256")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.tensor(idx(f"{a.dir}/train-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).view(-1, 784)
    y = torch.tensor(idx(f"{a.dir}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    xt = torch.tensor(idx(f"{a.dir}/t10k-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).view(-1, 784)
    yt = torch.tensor(idx(f"{a.dir}/t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    layers, prev = [], 784
    for w in map(int, a.widths.split(",")):
        layers += [torch.nn.Linear(prev, w), torch.nn.ReLU()]
        prev = w
    model = torch.nn.Sequential(*layers, torch.nn.Linear(prev, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    n = x.shape[0]
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
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    print(json.dumps({"images_per_sec": n * a.epochs / secs, "test_acc": acc, "seconds": secs}))

if __name__ == "__main__":
    main()

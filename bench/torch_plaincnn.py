#!/usr/bin/python3
"""PyTorch reference for the plain CNN of the vanishing-gradient experiments: regrad's
plaincnn:depth=D,width=C,act=A,init=torch (D convolutions 3x3 'same', stride 2 at D/3 and
2D/3, each followed by the activation; global average pooling; a dense classifier), with
--bn a batch norm between each convolution and its activation (the classic remedy GRA is
compared with).  Trains one epoch of Fashion-MNIST ([0,1] pixels, batch 128, Adam 1e-3 or
SGD with momentum 0.9 at 0.01, PyTorch's default init) and prints the test accuracy as one
JSON line."""
import argparse, json, os
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_train import idx  # the IDX reader beside this file

class PlainCNN(nn.Module):
    def __init__(self, depth, width, act, bn):
        super().__init__()
        self.strides = [2 if depth >= 3 and i in (depth // 3, 2 * depth // 3) else 1 for i in range(depth)]
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else width, width, 3, s, 1 if s == 1 else 0,
                                             bias=not bn) for i, s in enumerate(self.strides))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(depth)) if bn else None
        self.act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[act]
        self.fc = nn.Linear(width, 10)
    def forward(self, x):
        for i, conv in enumerate(self.convs):
            if self.strides[i] == 2:  # TensorFlow's 'same' at stride 2: the extra row and column after
                x = F.pad(x, (0, 1, 0, 1))
            x = conv(x)
            if self.bns is not None:
                x = self.bns[i](x)
            x = self.act(x)
        return self.fc(x.mean((2, 3)))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--act", default="tanh", choices=["relu", "tanh", "sigmoid"])
    ap.add_argument("--bn", action="store_true")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "momentum"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    load = lambda name: idx(os.path.join(a.data, name))
    xtr = torch.tensor(load("train-images-idx3-ubyte.gz"), dtype=torch.float32).unsqueeze(1) / 255
    ytr = torch.tensor(load("train-labels-idx1-ubyte.gz"), dtype=torch.long)
    xte = torch.tensor(load("t10k-images-idx3-ubyte.gz"), dtype=torch.float32).unsqueeze(1) / 255
    yte = torch.tensor(load("t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    model = PlainCNN(a.depth, a.width, a.act, a.bn)
    opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if a.optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    model.train()
    order = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 128):
        b = order[i:i + 128]
        opt.zero_grad()
        F.cross_entropy(model(xtr[b]), ytr[b]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item() for i in range(0, len(xte), 1000))
    print(json.dumps({"act": a.act, "bn": a.bn, "optimizer": a.optimizer, "seed": a.seed,
                      "test_acc": correct / len(xte)}))

if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch peer for bench_resnet50v2.sh: Keras's ResNet50V2 built layer for layer in
PyTorch (pre-activation bottlenecks, stride on the last block of conv2..conv4, biases on
conv1/_0_conv/_3_conv, BN eps 1.001e-5), trained for a few steps on random 224x224x3
data, batch 32, Adam, on the CPU or (--device cuda) a GPU in strict fp32 (no TF32), with
--precision tf32 its products on TF32 tensor cores, or with --precision bf16 under bf16
autocast (bf16 activations and products, fp32 weights and optimizer).
Prints images/s of the timed steps as one JSON line."""
import argparse, json, time
import torch
import torch.nn as nn
import torch.nn.functional as F

class Block(nn.Module):
    def __init__(self, cin, filters, stride, conv_shortcut):
        super().__init__()
        self.pre = nn.BatchNorm2d(cin, eps=1.001e-5)
        self.short = nn.Conv2d(cin, 4 * filters, 1, stride) if conv_shortcut else None
        self.stride = stride
        self.c1 = nn.Conv2d(cin, filters, 1, bias=False)
        self.b1 = nn.BatchNorm2d(filters, eps=1.001e-5)
        self.c2 = nn.Conv2d(filters, filters, 3, stride, bias=False)
        self.b2 = nn.BatchNorm2d(filters, eps=1.001e-5)
        self.c3 = nn.Conv2d(filters, 4 * filters, 1)
    def forward(self, x):
        p = F.relu(self.pre(x))
        if self.short is not None:
            s = self.short(p)
        else:
            s = F.max_pool2d(x, 1, self.stride) if self.stride > 1 else x
        h = F.relu(self.b1(self.c1(p)))
        h = F.relu(self.b2(self.c2(F.pad(h, (1, 1, 1, 1)))))
        return s + self.c3(h)

class ResNet50V2(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2)
        blocks, cin = [], 64
        for stage, (filters, n) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            for b in range(1, n + 1):
                stride = 2 if b == n and stage < 3 else 1
                blocks.append(Block(cin, filters, stride, b == 1))
                cin = 4 * filters
        self.blocks = nn.Sequential(*blocks)
        self.post = nn.BatchNorm2d(cin, eps=1.001e-5)
        self.fc = nn.Linear(cin, classes)
    def forward(self, x):
        x = self.conv1(F.pad(x, (3, 3, 3, 3)))
        x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)
        x = F.relu(self.post(self.blocks(x)))
        return self.fc(x.mean((2, 3)))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    torch.manual_seed(0)
    model = ResNet50V2().to(a.device)
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for n, b in model.named_buffers() if "running" in n)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(a.batch, 3, 224, 224, device=a.device)
    y = torch.randint(0, 1000, (a.batch,), device=a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            sync()
            t0 = time.perf_counter()
        opt.zero_grad()
        with torch.autocast(a.device.split(":")[0], dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    sync()
    secs = time.perf_counter() - t0
    out = {"images_per_sec": a.batch * a.steps / secs, "params": params}
    if a.device.startswith("cuda"):  # what the caching allocator held at most (the model, its
        out["reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20  # activations, cuDNN's scratch)
        free, total = torch.cuda.mem_get_info()  # and the device's total - free, as regrad's bench
        out["device_mib"] = (total - free) / 2**20  # reports it (the context and libraries included)
    print(json.dumps(out))

if __name__ == "__main__":
    main()

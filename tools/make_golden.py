#!/usr/bin/python3
"""make_golden.py — writes the PyTorch golden fixtures the C tests compare against.

Run:  /usr/bin/python3 tools/make_golden.py tests/fixtures
Needs Debian's python3-torch.  The fixtures are committed, so CI never needs PyTorch.

mlp_chain.safetensors: a small MLP that passes through every activation and an add, with
cross-entropy (label smoothing 0.1): inputs, labels, weights, logits, loss, every parameter
gradient, and the parameters after 3 steps of each optimizer (same batch each step).
Names follow regrad's: dense_1.kernel is [out, in] as in torch.nn.Linear.
mse_softmax.safetensors: dense -> softmax -> MSE against one-hot labels.
"""
import json, struct, sys
from pathlib import Path
import torch

torch.manual_seed(1234)
B, IN, H, K = 6, 8, 12, 5

# The optimizers and hyperparameters; tests/test_golden.c uses the same table.
OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1, weight_decay=0.01),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}

class Chain(torch.nn.Module):
    """dense->relu->dense->leaky_relu->dense->elu->dense->gelu->dense->sigmoid->dense->tanh
    ->dense->softplus, + the tanh output (add), ->dense(K)."""
    def __init__(self):
        super().__init__()
        self.d = torch.nn.ModuleList([torch.nn.Linear(IN, H)] + [torch.nn.Linear(H, H) for _ in range(6)]
                                     + [torch.nn.Linear(H, K)])
        self.acts = [torch.relu, torch.nn.functional.leaky_relu, torch.nn.functional.elu,
                     torch.nn.functional.gelu, torch.sigmoid, torch.tanh, torch.nn.functional.softplus]
    def forward(self, x):
        h = x
        for i in range(7):
            if i == 6:
                skip = h
            h = self.acts[i](self.d[i](h))
        return self.d[7](h + skip)

def named(model):
    out = {}
    for i, layer in enumerate(model.d):
        out[f"dense_{i + 1}.kernel"] = layer.weight
        out[f"dense_{i + 1}.bias"] = layer.bias
    return out

def write(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def chain_fixture(path):
    model = Chain()
    x = torch.randn(B, IN)
    y = torch.randint(0, K, (B,))
    init = {k: v.detach().clone() for k, v in named(model).items()}
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    logits = model(x)
    loss = lossf(logits, y)
    loss.backward()
    t = {"x": x, "labels": y.float(), "logits": logits, "loss": loss.reshape(1)}
    t.update(init)
    t.update({f"grad.{k}": v.grad.detach().clone() for k, v in named(model).items()})
    for name, make in OPTIMIZERS.items():
        with torch.no_grad():
            for k, v in named(model).items():
                v.copy_(init[k])
        opt = make(model.parameters())
        for _ in range(3):
            opt.zero_grad()
            lossf(model(x), y).backward()
            opt.step()
        t.update({f"{name}.{k}": v.detach().clone() for k, v in named(model).items()})
    write(path, t, {"torch": torch.__version__, "label_smoothing": "0.1"})

def mse_fixture(path):
    lin = torch.nn.Linear(IN, K)
    x = torch.randn(B, IN)
    y = torch.randint(0, K, (B,))
    p = torch.softmax(lin(x), dim=1)
    loss = torch.nn.functional.mse_loss(p, torch.nn.functional.one_hot(y, K).float())
    loss.backward()
    write(path, {"x": x, "labels": y.float(), "probs": p, "loss": loss.reshape(1),
                 "dense_1.kernel": lin.weight, "dense_1.bias": lin.bias,
                 "grad.dense_1.kernel": lin.weight.grad, "grad.dense_1.bias": lin.bias.grad},
          {"torch": torch.__version__})

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
    out.mkdir(parents=True, exist_ok=True)
    chain_fixture(out / "mlp_chain.safetensors")
    mse_fixture(out / "mse_softmax.safetensors")
    print(f"wrote fixtures to {out}")

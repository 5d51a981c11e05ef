#!/usr/bin/python3
"""make_golden.py — writes the PyTorch golden fixtures the C tests compare against.

Run:  /usr/bin/python3 tools/make_golden.py tests/fixtures
Needs Debian's python3-torch.  The fixtures are committed, so CI never needs PyTorch.

mlp_chain.safetensors: a small MLP that passes through every activation and an add, with
cross-entropy (label smoothing 0.1): inputs, labels, weights, logits, loss, every parameter
gradient, and the parameters after 3 steps of each optimizer (same batch each step).
Names follow regrad's: dense_1.kernel is [out, in] as in torch.nn.Linear.
mse_softmax.safetensors: dense -> softmax -> MSE against one-hot labels.
conv_ops.safetensors: one case per convolution-family op (conv2d in its variants, pools,
zero padding, concat, batch norm in training and evaluation) and the weighted sum, with
its gradients.
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

def ops_fixture(path):
    """One case per conv-family op: input(s), parameters, output, a random output gradient
    dy and the resulting input and parameter gradients, prefixed by the case name."""
    F = torch.nn.functional
    t = {}

    def case(name, fn, xs, params=None, state=None, after=None):
        xs = [x.clone().requires_grad_(True) for x in xs]
        params = {k: v.clone().requires_grad_(True) for k, v in (params or {}).items()}
        y = fn(*xs, **params)
        dy = torch.randn_like(y)
        y.backward(dy)
        for i, x in enumerate(xs):
            t[f"{name}.x{i}"] = x.detach()
            t[f"{name}.dx{i}"] = x.grad
        for k, v in params.items():
            t[f"{name}.{k}"] = v.detach()
            t[f"{name}.grad.{k}"] = v.grad
        for k, v in (state or {}).items():
            t[f"{name}.{k}"] = v
        for k, v in (after or {}).items():
            t[f"{name}.after.{k}"] = v
        t[f"{name}.y"] = y.detach()
        t[f"{name}.dy"] = dy

    r = torch.randn
    case("conv_same", lambda x, kernel, bias: F.conv2d(x, kernel, bias, padding=1),
         [r(2, 3, 6, 6)], {"kernel": r(4, 3, 3, 3) * 0.3, "bias": r(4)})
    case("conv_stride2_dilated", lambda x, kernel, bias: F.conv2d(x, kernel, bias, stride=2, padding=2, dilation=2),
         [r(2, 3, 7, 7)], {"kernel": r(4, 3, 3, 3) * 0.3, "bias": r(4)})
    case("conv_groups", lambda x, kernel: F.conv2d(x, kernel, None, padding=1, groups=2),
         [r(2, 4, 5, 5)], {"kernel": r(6, 2, 3, 3) * 0.3})
    case("conv_depthwise", lambda x, kernel, bias: F.conv2d(x, kernel, bias, stride=2, padding=1, groups=4),
         [r(2, 4, 7, 7)], {"kernel": r(4, 1, 3, 3) * 0.3, "bias": r(4)})
    # Keras/TF "same" at stride 2 on an even input pads 0 before and 1 after.
    case("conv_same_stride2", lambda x, kernel, bias: F.conv2d(F.pad(x, (0, 1, 0, 1)), kernel, bias, stride=2),
         [r(2, 3, 6, 6)], {"kernel": r(5, 3, 3, 3) * 0.3, "bias": r(5)})
    case("conv_1x1", lambda x, kernel, bias: F.conv2d(x, kernel, bias),
         [r(2, 6, 4, 4)], {"kernel": r(3, 6, 1, 1) * 0.3, "bias": r(3)})
    case("max_pool", lambda x: F.max_pool2d(x, 3, 2, 1), [r(2, 3, 7, 7)])
    # 2x2/2 has its own kernel (SSE2, four windows at a time, scalar tail): width 22 -> 11
    # windows a row, so both paths run; rounded values make ties, which go to the first.
    case("max_pool_2x2", lambda x: F.max_pool2d(x, 2, 2), [(r(3, 4, 6, 22) * 2).round() / 2])
    case("avg_pool", lambda x: F.avg_pool2d(x, 2, 2), [r(2, 3, 6, 6)])
    case("avg_pool_padded", lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True), [r(2, 3, 7, 7)])
    case("global_avg_pool", lambda x: x.mean((2, 3)), [r(2, 3, 4, 5)])
    case("zero_pad", lambda x: F.pad(x, (0, 1, 1, 2)), [r(2, 2, 3, 4)])  # left right top bottom
    case("concat", lambda a, b: torch.cat([a, b], 1), [r(2, 3, 4, 4), r(2, 2, 4, 4)])
    for name, shape in (("bn_conv_train", (4, 3, 5, 5)), ("bn_dense_train", (8, 5))):
        c = shape[1]
        rm, rv = r(c) * 0.1, torch.rand(c) + 0.5
        rm2, rv2 = rm.clone(), rv.clone()
        case(name, lambda x, gamma, beta: F.batch_norm(x, rm2, rv2, gamma, beta, True, 0.1, 1e-5),
             [r(*shape) * 2 + 1], {"gamma": r(c), "beta": r(c)},
             {"moving_mean": rm, "moving_variance": rv},
             {"moving_mean": rm2, "moving_variance": rv2})
    rm, rv = r(3) * 0.1, torch.rand(3) + 0.5
    case("bn_eval", lambda x, gamma, beta: F.batch_norm(x, rm, rv, gamma, beta, False, 0.1, 1e-3),
         [r(2, 3, 4, 4)], {"gamma": r(3), "beta": r(3)}, {"moving_mean": rm, "moving_variance": rv})
    case("weighted_sum", lambda a, b: 0.7 * a - 1.3 * b, [r(2, 3, 4, 4), r(2, 3, 4, 4)])
    # Keras's ResNet stem: zero padding, then a valid pool (regrad folds the padding into
    # the pool); inputs mostly negative, so many windows take a padded zero as their maximum.
    case("pad_max_pool", lambda x: F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2), [r(2, 3, 8, 8) - 1])
    case("pad_avg_pool", lambda x: F.avg_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2), [r(2, 3, 8, 8) - 1])
    # ResNet50V2's strided shortcut: a 1x1 max pool at stride 2 (an odd size: the last row
    # and column no window takes)
    case("max_pool_1x1", lambda x: F.max_pool2d(x, 1, 2), [r(2, 3, 7, 7)])
    write(path, t, {"torch": torch.__version__})

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
    out.mkdir(parents=True, exist_ok=True)
    chain_fixture(out / "mlp_chain.safetensors")
    mse_fixture(out / "mse_softmax.safetensors")
    ops_fixture(out / "conv_ops.safetensors")
    print(f"wrote fixtures to {out}")

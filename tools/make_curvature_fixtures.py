#!/usr/bin/python3
"""make_curvature_fixtures.py — PyTorch's curvature products for tests/test_curvature.c.

Run:  /usr/bin/python3 tools/make_curvature_fixtures.py tests/fixtures
Needs Debian's python3-torch; the fixture is committed, so CI never needs PyTorch.

curvature.safetensors holds two networks, prefixed "mlp." and "cnn.", each with its inputs,
labels, parameters (regrad's names), a direction v ("v." + name), and computed in float64:
the logits' tangent J v ("jvp_logits"), the Gauss-Newton product G v ("gn." + name,
J^T H_z J v by torch.func.jvp and vjp), the Hessian product H v ("hv." + name, double
backward), the slope g.v and v^T G v ("slope", "vgv"), and the top eigenvalue of G, whole
and for one layer's block ("top_gn", "top_gn_block", from the full matrix).
mlp: the golden chain (every activation, an add, cross-entropy with label smoothing 0.1).
cnn: conv -> batch norm (training) -> relu -> max pool -> conv stride 2 -> sigmoid ->
global average pool -> dense, cross-entropy.
"""
import sys
from pathlib import Path

import torch
from torch.autograd.functional import hvp, jvp, vjp
from torch.nn.utils.stateless import functional_call

sys.path.insert(0, str(Path(__file__).parent))
from make_golden import Chain, named, write  # noqa: E402

torch.manual_seed(4321)
F = torch.nn.functional


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.1)
        self.c2 = torch.nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.d = torch.nn.Linear(5, 5)

    def forward(self, x):
        h = F.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
        return self.d(torch.sigmoid(self.c2(h)).mean(dim=(2, 3)))


def cnn_names(m):
    return {"conv2d_1.kernel": m.c1.weight, "conv2d_1.bias": m.c1.bias,
            "batch_norm_1.gamma": m.bn.weight, "batch_norm_1.beta": m.bn.bias,
            "conv2d_2.kernel": m.c2.weight, "conv2d_2.bias": m.c2.bias,
            "dense_1.kernel": m.d.weight, "dense_1.bias": m.d.bias}


def case(prefix, model, names, x, y, smoothing, block):
    model = model.double().train()
    x = x.double()
    torch_name = {id(p): n for n, p in model.named_parameters()}
    ours = list(names(model).keys())
    keys = [torch_name[id(p)] for p in names(model).values()]
    params = tuple(p.detach().clone() for p in names(model).values())
    # batch norm's running statistics must not move between the calls
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    def logits_of(*p):
        state = dict(zip(keys, p))
        state.update({n: b.clone() for n, b in buffers.items()})
        return functional_call(model, state, (x,))

    def loss_of(z):
        return F.cross_entropy(z, y, label_smoothing=smoothing)

    def loss_p(*p):
        return loss_of(logits_of(*p))

    v = tuple(torch.randn_like(p) for p in params)
    z, jz = jvp(logits_of, params, v)
    hz = hvp(loss_of, z.detach(), jz)[1]
    gn = vjp(logits_of, params, hz)[1]
    hv = hvp(loss_p, params, v)[1]
    grad = torch.autograd.functional.vjp(loss_p, params)[1]
    slope = sum((g * d).sum() for g, d in zip(grad, v))
    vgv = sum((g * d).sum() for g, d in zip(gn, v))
    # the whole G and one block, to take their top eigenvalues exactly
    sizes = [p.numel() for p in params]
    starts = [sum(sizes[:j]) for j in range(len(sizes))]
    def unflat(vec):
        return tuple(vec[a:a + s].reshape(p.shape) for a, s, p in zip(starts, sizes, params))
    def gn_flat(vec):
        jv = jvp(logits_of, params, unflat(vec))[1]
        g = vjp(logits_of, params, hvp(loss_of, z.detach(), jv)[1])[1]
        return torch.cat([t.reshape(-1) for t in g])
    G = torch.stack([gn_flat(e) for e in torch.eye(sum(sizes), dtype=torch.float64)], dim=1)
    top = torch.linalg.eigvalsh(0.5 * (G + G.T))[-1]
    idx = [i for n, a, s in zip(ours, starts, sizes) if n.startswith(block + ".") for i in range(a, a + s)]
    top_block = torch.linalg.eigvalsh(0.5 * (G + G.T)[idx][:, idx])[-1]
    t = {"x": x, "labels": y.double(), "jvp_logits": jz, "slope": slope.reshape(1),
         "vgv": vgv.reshape(1), "top_gn": top.reshape(1), "top_gn_block": top_block.reshape(1)}
    for k, n in enumerate(ours):
        t[n] = params[k]
        t["v." + n] = v[k]
        t["gn." + n] = gn[k]
        t["hv." + n] = hv[k]
    return {f"{prefix}.{k}": val for k, val in t.items()}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
    out.mkdir(parents=True, exist_ok=True)
    t = case("mlp", Chain(), named, torch.randn(6, 8), torch.randint(0, 5, (6,)), 0.1, "dense_4")
    t.update(case("cnn", SmallCNN(), cnn_names, torch.randn(4, 3, 6, 6), torch.randint(0, 5, (4,)),
                  0.0, "conv2d_2"))
    write(out / "curvature.safetensors", t, {"torch": torch.__version__})
    print(f"wrote {out / 'curvature.safetensors'}")

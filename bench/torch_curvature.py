#!/usr/bin/python3
"""torch_curvature.py — PyTorch's side of bench/bench_curvature.sh: the same 20-layer sigmoid MLP
(width 128, PyTorch's default init) on one random batch, the median time of a gradient, a
Gauss-Newton product G v (forward-mode J v by torch.autograd.forward_ad, then the loss's
Hessian and one vjp) and a Hessian product H v (double backward), and the top eigenvalue of
H by power iteration.
  Usage: bench/torch_curvature.py [BATCH] [ROUNDS] [THREADS]
"""
import sys, time, statistics, torch, torch.nn as nn
import torch.autograd.forward_ad as fwAD
from torch.nn.utils.stateless import functional_call

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
torch.manual_seed(1)
layers, n = [], 784
for _ in range(20):
    layers += [nn.Linear(n, 128), nn.Sigmoid()]
    n = 128
model = nn.Sequential(*layers, nn.Linear(n, 10))
x, y = torch.rand(batch, 784), torch.arange(batch) % 10
names = [k for k, _ in model.named_parameters()]
params = [p.detach() for p in model.parameters()]
v = [torch.randn_like(p) for p in params]


def loss_of(ps):
    return nn.functional.cross_entropy(functional_call(model, dict(zip(names, ps)), (x,)), y)


def gradient():
    ps = [p.clone().requires_grad_() for p in params]
    return torch.autograd.grad(loss_of(ps), ps)


def gauss_newton(vec):
    with fwAD.dual_level():
        z = functional_call(model, {k: fwAD.make_dual(p, t) for k, p, t in zip(names, params, vec)}, (x,))
        jz = fwAD.unpack_dual(z).tangent
    p = torch.softmax(fwAD.unpack_dual(z).primal, 1)
    hz = p * (jz - (p * jz).sum(1, keepdim=True)) / batch
    ps = [q.clone().requires_grad_() for q in params]
    return torch.autograd.grad(functional_call(model, dict(zip(names, ps)), (x,)), ps, hz)


def hessian(vec):
    ps = [p.clone().requires_grad_() for p in params]
    g = torch.autograd.grad(loss_of(ps), ps, create_graph=True)
    return torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, vec)), ps)


def median_ms(f):
    f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


tg, tgn, th = median_ms(gradient), median_ms(lambda: gauss_newton(v)), median_ms(lambda: hessian(v))
u = [torch.randn_like(p) for p in params]
lam = 0.0
for _ in range(50):  # power iteration, as regrad's (relative change below 1e-4)
    norm = torch.sqrt(sum((a * a).sum() for a in u))
    u = [a / norm for a in u]
    hu = hessian(u)
    prev, lam = lam, float(sum((a * b).sum() for a, b in zip(u, hu)))
    u = hu
    if prev and abs(lam - prev) <= 1e-4 * abs(lam):
        break
print("mlp:depth=20,width=128,act=sigmoid (PyTorch), batch %d: gradient %.2f ms, G v %.2f ms, "
      "H v %.2f ms (median of %d)" % (batch, tg, tgn, th, rounds))
print("top eigenvalue of H %.6g" % lam)

#!/usr/bin/python3
"""make_interop.py — PyTorch networks built like regrad's zoo models, for checkpoint
interoperability in both directions.

    /usr/bin/python3 tools/make_interop.py tests/fixtures            # write the fixtures
    /usr/bin/python3 tools/make_interop.py --check-regrad build/regrad   # regrad -> PyTorch

Fixtures (committed; CI never runs PyTorch): interop_<model>.safetensors holds a seeded
PyTorch network's weights under regrad's names (batch-norm running statistics made
non-trivial), with regrad's metadata (model, input, classes); interop_io.safetensors holds
4 input images per model and PyTorch's eval-mode logits for them.  tests/test_golden.c
loads each network into regrad and compares logits (1e-4), then saves and reloads it.
--check-regrad trains each model for a moment with regrad, loads regrad's checkpoint into
the PyTorch network by the same names, and compares its softmax with `regrad predict`'s.

Name mapping (regrad <- torch): a dense layer NAME.kernel <- Linear.weight ([out, in],
no transpose), NAME.bias <- Linear.bias; a convolution NAME.kernel <- Conv2d.weight (OIHW,
as is), NAME.bias <- Conv2d.bias; batch norm NAME.gamma <- weight, NAME.beta <- bias,
NAME.moving_mean <- running_mean, NAME.moving_variance <- running_var.  Layer names:
mlp dense_1..3; cnn conv2d_1, conv2d_2, dense_1, dense_2; resnet20v2 conv1_conv,
stageS_blockB_{preact_bn, 0_conv, 1_conv, 1_bn, 2_conv}, post_bn, predictions.
"""
import json, subprocess, sys, tempfile
from pathlib import Path
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import safetensors_np  # noqa: E402


class MLP(nn.Module):  # regrad "mlp": 784-256-256-10, ReLU
    def __init__(self):
        super().__init__()
        self.l = nn.ModuleList([nn.Linear(784, 256), nn.Linear(256, 256), nn.Linear(256, 10)])
    def forward(self, x):
        x = x.flatten(1)
        x = F.relu(self.l[0](x)); x = F.relu(self.l[1](x))
        return self.l[2](x)
    def names(self):
        return {f"dense_{i + 1}": l for i, l in enumerate(self.l)}


class CNN(nn.Module):  # regrad "cnn": conv32-pool-conv64-pool-fc128, 3x3 pad 1, ReLU
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
        self.f1, self.f2 = nn.Linear(3136, 128), nn.Linear(128, 10)
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.f2(F.relu(self.f1(x.flatten(1))))
    def names(self):
        return {"conv2d_1": self.c1, "conv2d_2": self.c2, "dense_1": self.f1, "dense_2": self.f2}


class Block(nn.Module):  # pre-activation basic block, as regrad's resnet20v2
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.preact_bn = nn.BatchNorm2d(cin)
        self.short = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride > 1 or cin != cout else None
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    def forward(self, x):
        pre = F.relu(self.preact_bn(x))
        s = self.short(pre) if self.short is not None else x
        return s + self.conv2(F.relu(self.bn1(self.conv1(pre))))


class ResNet20V2(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        blocks, cin = [], 16
        for stage in range(3):
            for b in range(3):
                cout = 16 << stage
                blocks.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.post_bn = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, 10)
    def forward(self, x):
        x = self.conv1(x)
        for b in self.blocks:
            x = b(x)
        return self.fc(F.relu(self.post_bn(x)).mean((2, 3)))
    def names(self):
        out = {"conv1_conv": self.conv1, "post_bn": self.post_bn, "predictions": self.fc}
        for i, b in enumerate(self.blocks):
            p = f"stage{i // 3 + 1}_block{i % 3 + 1}"
            out[f"{p}_preact_bn"], out[f"{p}_1_conv"], out[f"{p}_1_bn"] = b.preact_bn, b.conv1, b.bn1
            out[f"{p}_2_conv"] = b.conv2
            if b.short is not None:
                out[f"{p}_0_conv"] = b.short
        return out


MODELS = {"mlp": MLP, "cnn": CNN, "resnet20v2": ResNet20V2}


def to_regrad(model):
    """regrad name -> tensor."""
    out = {}
    for name, mod in model.names().items():
        if isinstance(mod, nn.BatchNorm2d):
            out[f"{name}.gamma"], out[f"{name}.beta"] = mod.weight, mod.bias
            out[f"{name}.moving_mean"], out[f"{name}.moving_variance"] = mod.running_mean, mod.running_var
        else:
            out[f"{name}.kernel"] = mod.weight
            if mod.bias is not None:
                out[f"{name}.bias"] = mod.bias
    return out


def from_regrad(model, tensors):
    with torch.no_grad():
        for name, t in to_regrad(model).items():
            t.copy_(torch.from_numpy(tensors[name]).reshape(t.shape))


def make(out):
    torch.manual_seed(2026)
    io = {}
    for name, cls in MODELS.items():
        model = cls().eval()
        with torch.no_grad():  # running statistics that are not the initial 0 and 1
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5); m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
        x = torch.rand(4, 1, 28, 28)
        with torch.no_grad():
            io[f"{name}.input"], io[f"{name}.logits"] = x, model(x)
        safetensors_np.write(out / f"interop_{name}.safetensors",
                             {k: t.detach().numpy() for k, t in to_regrad(model).items()},
                             {"model": name, "input": "1x28x28", "classes": "10"})
    safetensors_np.write(out / "interop_io.safetensors", {k: t.numpy() for k, t in io.items()})
    print(f"wrote interop fixtures for {', '.join(MODELS)} under {out}")


def check_regrad(binary):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([binary, "export-images", "--split", "test", "--limit", "8", "--out",
                        f"{tmp}/img"], check=True, capture_output=True)
        images = sorted(str(p) for p in Path(tmp, "img").rglob("*.png"))
        from PIL import Image
        x = torch.from_numpy(np.stack([np.asarray(Image.open(p), np.float32)[None] / 255 for p in images]))
        worst = 0.0
        for name, cls in MODELS.items():
            subprocess.run([binary, "train", "--model", name, "--limit", "512", "--batch", "64",
                            "--checkpoint-dir", f"{tmp}/{name}", "--quiet"], check=True, capture_output=True)
            ckpt = f"{tmp}/{name}/last.safetensors"
            model = cls().eval()
            from_regrad(model, safetensors_np.read(ckpt)[0])
            with torch.no_grad():
                p_torch = torch.softmax(model(x), 1).numpy()
            res = subprocess.run([binary, "predict", "--weights", ckpt, "--json", "--top", "10"] + images,
                                 check=True, capture_output=True, text=True)
            p_regrad = np.zeros_like(p_torch)
            for i, line in enumerate(res.stdout.splitlines()):
                for e in json.loads(line)["top"]:
                    p_regrad[i, e["index"]] = e["probability"]
            diff = float(np.abs(p_regrad - p_torch).max())
            worst = max(worst, diff)
            print(f"{name}: regrad checkpoint in PyTorch, max |softmax difference| {diff:.2e}")
        if worst > 1e-4:
            sys.exit(f"FAILED: difference {worst:.2e} > 1e-4")
        print("regrad -> PyTorch: ok")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--check-regrad":
        check_regrad(sys.argv[2])
    else:
        make(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"))

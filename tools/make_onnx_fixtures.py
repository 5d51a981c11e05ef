#!/usr/bin/python3
"""make_onnx_fixtures.py — ONNX models exported by PyTorch (torch.onnx.export, opset 13,
a dynamic batch) with PyTorch's logits and one training step's gradients, for
tests/test_onnx.c.

  make_onnx_fixtures.py deep-sigmoid OUT.onnx
      a 20-layer sigmoid MLP (width 128, PyTorch's default init) for Fashion-MNIST, the
      README's example of GRA on an imported model (not committed: 1.7 MB).
  make_onnx_fixtures.py DIR
      NAME.onnx and NAME_ref.safetensors for each model below: "x" (the inputs, NCHW),
      "y" (labels), "logits" (eval mode), and "grad.LAYER.ROLE" (train mode: batch norm
      on the batch's statistics, dropout off) of the mean cross-entropy, under the names
      regrad gives the imported weights (PyTorch's module name, kernel/bias/gamma/beta).
        mlp        Linear, BatchNorm1d, tanh, Linear
        gelu       Linear, GELU (exported in its erf form), Linear
      and cnn_external.onnx + cnn_external.data: the CNN with its weights beside it.
        cnn        Conv stride 2, ZeroPad2d on two sides, grouped Conv, sigmoid, MaxPool,
                   Flatten, Linear
        resnet     a pre-activation residual block (BN, ReLU, Conv, skip Add), average
                   pooling, Linear
        depthwise  depthwise and pointwise convolutions, ELU, LeakyReLU, AvgPool
        dense      DenseNet-style Concat of feature maps, global average pooling, a
                   softmax on the output (regrad's logits are its input)
        fashion_cnn  an untrained CNN for 28x28 gray images, 10 classes (the CLI's test and
                   the README's example train it on Fashion-MNIST)
"""
import os, sys
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np


class MLP(nn.Module):
    def __init__(s):
        super().__init__()
        s.fc1, s.bn, s.fc2 = nn.Linear(12, 16), nn.BatchNorm1d(16), nn.Linear(16, 5)

    def forward(s, x):
        return s.fc2(torch.tanh(s.bn(s.fc1(x))))


class GeluMLP(nn.Module):
    def __init__(s):
        super().__init__()
        s.fc1, s.fc2 = nn.Linear(12, 16), nn.Linear(16, 4)

    def forward(s, x):
        return s.fc2(F.gelu(s.fc1(x)))  # exported as Div, Erf, Add, Mul, Mul


class CNN(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1, s.pad = nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ZeroPad2d((1, 0, 0, 1))
        s.c2, s.pool, s.fc = nn.Conv2d(4, 6, 2, groups=2), nn.MaxPool2d(2), nn.Linear(6 * 2 * 2, 3)

    def forward(s, x):
        h = torch.sigmoid(s.c2(s.pad(torch.relu(s.c1(x)))))
        return s.fc(torch.flatten(s.pool(h), 1))


class ResNet(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Conv2d(1, 4, 3, padding=1)
        s.bn1, s.conv1 = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1, bias=False)
        s.bn2, s.conv2 = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1)
        s.pool, s.fc = nn.AvgPool2d(2), nn.Linear(4 * 4 * 4, 4)

    def forward(s, x):
        x = s.stem(x)
        h = s.conv2(torch.relu(s.bn2(s.conv1(torch.relu(s.bn1(x))))))
        return s.fc(torch.flatten(s.pool(x + h), 1))


class Depthwise(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem, s.dw = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4)
        s.pw, s.pool, s.fc = nn.Conv2d(4, 6, 1), nn.AvgPool2d(3, stride=2, padding=1), nn.Linear(6 * 4 * 4, 3)

    def forward(s, x):
        h = F.leaky_relu(s.pw(F.elu(s.dw(s.stem(x)))), 0.01)
        return s.fc(torch.flatten(s.pool(h), 1))


class Dense(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem, s.b1, s.b2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1), nn.Conv2d(6, 2, 3, padding=1)
        s.fc = nn.Linear(8, 3)

    def logits(s, x):
        x = torch.relu(s.stem(x))
        x = torch.cat([x, torch.relu(s.b1(x))], 1)
        x = torch.cat([x, torch.relu(s.b2(x))], 1)
        return s.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def forward(s, x):
        return torch.softmax(s.logits(x), 1)


class FashionCNN(nn.Module):
    """A small CNN for 28x28 gray images and 10 classes, untrained: the CLI's test and the
    README's PyTorch -> ONNX -> regrad example train it on Fashion-MNIST."""
    def __init__(s):
        super().__init__()
        s.conv1, s.conv2 = nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.Conv2d(16, 32, 3, stride=2, padding=1)
        s.bn, s.fc = nn.BatchNorm2d(32), nn.Linear(32 * 7 * 7, 10)

    def forward(s, x):
        h = torch.relu(s.bn(s.conv2(torch.relu(s.conv1(x)))))
        return s.fc(torch.flatten(h, 1))


ROLE = {"weight": "kernel", "bias": "bias"}


def regrad_names(model):
    """PyTorch parameter name -> regrad's: module.kernel/bias, batch norm gamma/beta."""
    out = {}
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            bn = isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d))
            role = {"weight": "gamma", "bias": "beta"}[p_name] if bn else ROLE[p_name]
            out["%s.%s" % (mod_name, p_name)] = "%s.%s" % (mod_name, role)
    return out


def make(out_dir, name, model, shape, classes):
    torch.manual_seed(1)
    for m in model.modules():  # batch norm statistics that are not the defaults
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    x, y = torch.rand(4, *shape), torch.randint(0, classes, (4,))
    model.eval()
    torch.onnx.export(model, x, os.path.join(out_dir, name + ".onnx"), input_names=["x"],
                      output_names=["out"], dynamic_axes={"x": {0: "batch"}}, opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE)  # batch norm not folded into a conv
    head = model.logits if hasattr(model, "logits") else model
    with torch.no_grad():
        logits = head(x)
    model.train()
    loss = F.cross_entropy(head(x), y)
    loss.backward()
    names = regrad_names(model)
    tensors = {"x": x.numpy(), "y": y.numpy().astype(np.float32), "logits": logits.numpy()}
    for p_name, p in model.named_parameters():
        tensors["grad." + names[p_name]] = p.grad.numpy()
    safetensors_np.write(os.path.join(out_dir, name + "_ref.safetensors"), tensors)


def deep_sigmoid(path, depth=20, width=128):
    """A plain sigmoid MLP with PyTorch's default init (vanishing gradients), exported."""
    torch.manual_seed(0)
    layers, n_in = [nn.Flatten()], 784
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.Sigmoid()]
        n_in = width
    model = nn.Sequential(*layers, nn.Linear(n_in, 10)).eval()
    torch.onnx.export(model, torch.rand(1, 1, 28, 28), path, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=13)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "deep-sigmoid":
        deep_sigmoid(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    torch.manual_seed(0)
    for name, model, shape, classes in (("mlp", MLP(), (12,), 5), ("cnn", CNN(), (1, 8, 8), 3),
                                        ("resnet", ResNet(), (1, 8, 8), 4),
                                        ("depthwise", Depthwise(), (1, 8, 8), 3),
                                        ("dense", Dense(), (1, 8, 8), 3),
                                        ("fashion_cnn", FashionCNN(), (1, 28, 28), 10),
                                        ("gelu", GeluMLP(), (12,), 4)):
        make(sys.argv[1], name, model, shape, classes)
    import onnx  # the CNN again with its weights in a file beside it (external data)
    m = onnx.load(os.path.join(sys.argv[1], "cnn.onnx"))
    onnx.save_model(m, os.path.join(sys.argv[1], "cnn_external.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="cnn_external.data", size_threshold=0)

#!/usr/bin/python3
"""make_keras_fixtures.py — Keras weights files in Keras's exact HDF5 layouts, written with
h5py (Debian has no Keras or TensorFlow), for tests/test_keras.c.

  make_keras_fixtures.py small DIR
      A small CNN in Keras's layout: input_1 (no weights), conv1 (Conv2D 3x3, 1 -> 4, same),
      bn1 (BatchNormalization, eps 1e-3), re_lu (no weights), dw1 (DepthwiseConv2D 3x3, same),
      gap (no weights), predictions (Dense 4 -> 3); seeded weights, and a NumPy forward of 2
      8x8 inputs in inference mode.  Written four ways:
        small_h5py2.h5   fixed-length NULLPAD strings (h5py 2), names "conv1/kernel:0"
        small_h5py3.h5   variable-length strings (h5py 3), Keras 3 names "conv1/kernel",
                         layer_names split into layer_names0 and layer_names1
        small_model.h5   a whole-model file: the weights under /model_weights
        small_keras3.weights.h5  Keras 3's layout: layers/<type>[_N]/vars/0, 1, ... with
                         each layer's name in its vars group's attribute (Keras >= 3.6)
        small_keras35.weights.h5 the same without the names (Keras 3.5), which regrad refuses
        small.keras, small_deflated.keras  .keras archives (zip: metadata.json, config.json,
                         model.weights.h5), stored as Keras writes them, and deflated
        small_ref.safetensors  the inputs (x, NCHW) and the reference logits
      small also writes branchy.json, branchy.h5 and branchy_ref.safetensors: a Keras 2
      Functional model (zero padding, valid conv, Add, Concatenate, max pooling, Flatten of a
      map, Dropout, softmax Dense), its weights and a NumPy forward of 3 inputs; and the
      model JSON of the small CNN (Keras 2 in small_model.h5, Keras 3 in the archives).
  make_keras_fixtures.py applications DIR
      keras.applications' ResNet50V2 (with and without top) and DenseNet121 as Keras 2 and
      Keras 3 model JSON (tools/keras_json.py), for the parameter counts Keras prints.
  make_keras_fixtures.py from-safetensors IN.safetensors OUT.h5 [DROP_LAYER...]
      Every LAYER.ROLE tensor of a regrad checkpoint (its optimizer, GRA and mask tensors
      aside, and the layers named after OUT.h5: e.g. "predictions" makes a notop file)
      written in Keras's layout (conv kernels OIHW -> HWIO, dense [out, in] -> [in, out]) by
      NumPy, independently of regrad's writer.
"""
import sys, os
import numpy as np
import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np
import keras_json


def string_attr(obj, name, values, fixed):
    if fixed:  # h5py 2: a numpy S array, NULLPAD, no terminator when a name fills the size
        obj.attrs[name] = np.array([v.encode() for v in values])
    else:      # h5py 3: variable-length strings
        obj.attrs.create(name, [v.encode() for v in values], dtype=h5py.string_dtype("ascii"))


def write_weights(group, layers, fixed, suffix, split=False):
    """layers: [(name, [(role, array in Keras layout), ...]), ...] in model order."""
    names = [n for n, _ in layers]
    if split:
        half = len(names) // 2
        string_attr(group, "layer_names0", names[:half], fixed)
        string_attr(group, "layer_names1", names[half:], fixed)
    else:
        string_attr(group, "layer_names", names, fixed)
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = b"2.15.0"
    for name, weights in layers:
        g = group.create_group(name)
        if not weights:
            g.attrs["weight_names"] = np.asarray([])  # float64, shape (0,)
            continue
        wn = ["%s/%s%s" % (name, role, suffix) for role, _ in weights]
        string_attr(g, "weight_names", wn, fixed)
        for path, (_, a) in zip(wn, weights):
            g.create_dataset(path, data=np.asarray(a, dtype=np.float32))


def write_keras3(path, layers, with_names):
    kinds = {"input_1": "input_layer", "conv1": "conv2d", "bn1": "batch_normalization",
             "re_lu": "re_lu", "dw1": "depthwise_conv2d", "gap": "global_average_pooling2d",
             "predictions": "dense"}
    with h5py.File(path, "w") as h:
        h.create_group("vars")
        for name, weights in layers:
            v = h.create_group("layers/%s/vars" % kinds[name])
            if with_names:
                v.attrs["name"] = name
            for i, (_, a) in enumerate(weights):
                v.create_dataset(str(i), data=np.asarray(a, dtype=np.float32))


def conv_same(x, k):
    """x (B, H, W, C), k (kh, kw, C, O), stride 1, Keras same padding."""
    kh, kw = k.shape[:2]
    p = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape[:3] + (k.shape[3],), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,co->bhwo", p[:, i:i + x.shape[1], j:j + x.shape[2], :], k[i, j])
    return out


def depthwise_same(x, k):
    """x (B, H, W, C), k (kh, kw, C, 1)."""
    kh, kw = k.shape[:2]
    p = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape, np.float64)
    for i in range(kh):
        for j in range(kw):
            out += p[:, i:i + x.shape[1], j:j + x.shape[2], :] * k[i, j, :, 0]
    return out


def conv2d(x, k, pad=((0, 0), (0, 0)), stride=1):
    """x (B, H, W, C), k (kh, kw, C, O), zeros padded as given, then a valid convolution."""
    kh, kw = k.shape[:2]
    p = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    oh, ow = (p.shape[1] - kh) // stride + 1, (p.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, k.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,co->bhwo", p[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :], k[i, j])
    return out


def small_json(k3):
    """The small CNN's model JSON, Keras 2 (to_json / model_config) or Keras 3 (config.json)."""
    m = keras_json.Model("small", k3)
    x = inp = m.input((8, 8, 1), "input_1")
    x = m.conv(x, 4, 3, padding="same", name="conv1")
    x = m.relu_layer(m.bn(x, 1e-3, "bn1"), "re_lu")
    x = m.depthwise(x, 3, name="dw1")
    x = m.dense(m.global_avg(x, "gap"), 3, "softmax", "predictions")
    return m.to_json(inp, x)


def branchy(out_dir):
    """branchy.json (Keras 2 to_json text), branchy.h5 (its save_weights file) and
    branchy_ref.safetensors: zero padding on two sides, a valid convolution, Add,
    Concatenate, max pooling, Flatten of an (H, W, C) map, Dropout and a softmax Dense."""
    r = np.random.default_rng(20261203)
    f = lambda *s: r.standard_normal(s).astype(np.float32)
    ka, ba, kb, bb = f(3, 3, 2, 4) * 0.4, f(4) * 0.1, f(2, 2, 4, 4) * 0.4, f(4) * 0.1
    kd, bd = f(72, 5) * 0.3, f(5) * 0.1
    m = keras_json.Model("branchy", False)
    x = inp = m.input((6, 6, 2))
    a = m.conv(x, 4, 3, padding="same", activation="relu", name="conv_a")
    b = m.conv(m.zero_pad(a, ((1, 0), (0, 1)), "pad"), 4, 2, activation="tanh", name="conv_b")
    c = m.concat([m.add([a, b], "sum"), a], "cat")
    y = m.dense(m.dropout(m.flatten(m.pool(c, 2, 2, name="pool"), "flat"), 0.5, "drop"), 5, "softmax", "out")
    open(os.path.join(out_dir, "branchy.json"), "w").write(m.to_json(inp, y))
    layers = [("input_1", []), ("conv_a", [("kernel", ka), ("bias", ba)]), ("pad", []),
              ("conv_b", [("kernel", kb), ("bias", bb)]), ("sum", []), ("cat", []), ("pool", []),
              ("flat", []), ("drop", []), ("out", [("kernel", kd), ("bias", bd)])]
    with h5py.File(os.path.join(out_dir, "branchy.h5"), "w") as h:
        write_weights(h, layers, False, ":0")
    xin = r.random((3, 6, 6, 2)).astype(np.float32)
    h1 = np.maximum(conv2d(xin.astype(np.float64), ka.astype(np.float64), ((1, 1), (1, 1))) + ba, 0)
    h2 = np.tanh(conv2d(np.pad(h1, ((0, 0), (1, 0), (0, 1), (0, 0))), kb.astype(np.float64)) + bb)
    cat = np.concatenate([h1 + h2, h1], axis=3)
    pooled = cat.reshape(3, 3, 2, 3, 2, 8).max(axis=(2, 4))
    logits = pooled.reshape(3, -1) @ kd + bd
    safetensors_np.write(os.path.join(out_dir, "branchy_ref.safetensors"),
                         {"x": xin.transpose(0, 3, 1, 2), "logits": logits})


def applications(out_dir):
    """keras.applications' ResNet50V2 and DenseNet121 as model JSON, Keras 2 and Keras 3."""
    for name, text in (("resnet50v2_k2.json", keras_json.resnet50v2(k3=False)),
                       ("resnet50v2_k3.json", keras_json.resnet50v2(k3=True)),
                       ("resnet50v2_notop_k2.json", keras_json.resnet50v2(k3=False, top=False)),
                       ("densenet121_k2.json", keras_json.densenet121(k3=False)),
                       ("densenet121_k3.json", keras_json.densenet121(k3=True))):
        open(os.path.join(out_dir, name), "w").write(text)


def small(out_dir):
    r = np.random.default_rng(20261202)
    f = lambda *s: r.standard_normal(s).astype(np.float32)
    conv_k, conv_b = f(3, 3, 1, 4) * 0.5, f(4) * 0.1
    gamma, beta = 1 + 0.1 * f(4), 0.1 * f(4)
    mean, var = 0.1 * f(4), (0.5 + r.random(4)).astype(np.float32)
    dw_k, dw_b = f(3, 3, 4, 1) * 0.5, f(4) * 0.1
    dense_k, dense_b = f(4, 3), f(3) * 0.1
    layers = [("input_1", []), ("conv1", [("kernel", conv_k), ("bias", conv_b)]),
              ("bn1", [("gamma", gamma), ("beta", beta), ("moving_mean", mean), ("moving_variance", var)]),
              ("re_lu", []), ("dw1", [("depthwise_kernel", dw_k), ("bias", dw_b)]), ("gap", []),
              ("predictions", [("kernel", dense_k), ("bias", dense_b)])]
    with h5py.File(os.path.join(out_dir, "small_h5py2.h5"), "w") as h:
        write_weights(h, layers, True, ":0")
    with h5py.File(os.path.join(out_dir, "small_h5py3.h5"), "w") as h:
        write_weights(h, layers, False, "", split=True)
    with h5py.File(os.path.join(out_dir, "small_model.h5"), "w") as h:
        h.attrs["model_config"] = small_json(False).encode()
        write_weights(h.create_group("model_weights"), layers, False, ":0")
    write_keras3(os.path.join(out_dir, "small_keras3.weights.h5"), layers, True)
    write_keras3(os.path.join(out_dir, "small_keras35.weights.h5"), layers, False)
    import zipfile
    weights = open(os.path.join(out_dir, "small_keras3.weights.h5"), "rb").read()
    for name, method in (("small.keras", zipfile.ZIP_STORED), ("small_deflated.keras", zipfile.ZIP_DEFLATED)):
        with zipfile.ZipFile(os.path.join(out_dir, name), "w", method) as z:
            for entry, data in (("metadata.json", b'{"keras_version": "3.6.0"}'),
                                ("config.json", small_json(True).encode()),
                                ("model.weights.h5", weights)):
                info = zipfile.ZipInfo(entry, date_time=(2026, 12, 2, 0, 0, 0))
                info.compress_type = method
                z.writestr(info, data)
    x = r.random((2, 8, 8, 1)).astype(np.float32)
    h1 = conv_same(x.astype(np.float64), conv_k.astype(np.float64)) + conv_b
    h1 = gamma * (h1 - mean) / np.sqrt(var + 1e-3) + beta
    h1 = depthwise_same(np.maximum(h1, 0), dw_k.astype(np.float64)) + dw_b
    logits = h1.mean(axis=(1, 2)) @ dense_k + dense_b
    safetensors_np.write(os.path.join(out_dir, "small_ref.safetensors"),
                         {"x": x.transpose(0, 3, 1, 2), "logits": logits})


def from_safetensors(src, dst, drop=()):
    tensors, _ = safetensors_np.read(src)
    layers = {}
    for name, a in tensors.items():
        if name.split(".", 1)[0] in ("optimizer", "gra", "mask"):
            continue
        layer, role = name.rsplit(".", 1)
        if layer in drop:
            continue
        if a.ndim == 4:
            a = a.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif a.ndim == 2:
            a = a.T
        layers.setdefault(layer, []).append((role, a))
    with h5py.File(dst, "w") as h:
        write_weights(h, sorted(layers.items()), True, ":0")


if __name__ == "__main__":
    if sys.argv[1] == "small":
        small(sys.argv[2])
        branchy(sys.argv[2])
    elif sys.argv[1] == "applications":
        applications(sys.argv[2])
    elif sys.argv[1] == "from-safetensors":
        from_safetensors(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)

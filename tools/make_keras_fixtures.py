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
        h.attrs["model_config"] = b'{"class_name": "Functional", "config": {}}'
        write_weights(h.create_group("model_weights"), layers, False, ":0")
    write_keras3(os.path.join(out_dir, "small_keras3.weights.h5"), layers, True)
    write_keras3(os.path.join(out_dir, "small_keras35.weights.h5"), layers, False)
    import zipfile
    weights = open(os.path.join(out_dir, "small_keras3.weights.h5"), "rb").read()
    for name, method in (("small.keras", zipfile.ZIP_STORED), ("small_deflated.keras", zipfile.ZIP_DEFLATED)):
        with zipfile.ZipFile(os.path.join(out_dir, name), "w", method) as z:
            for entry, data in (("metadata.json", b'{"keras_version": "3.6.0"}'),
                                ("config.json", b'{"class_name": "Functional", "config": {}}'),
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
    elif sys.argv[1] == "from-safetensors":
        from_safetensors(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)

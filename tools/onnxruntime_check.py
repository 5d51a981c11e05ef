#!/usr/bin/python3
"""onnxruntime_check.py — every zoo model, trained briefly by regrad, exported with
`regrad export --format onnx`, run by onnxruntime: its class probabilities must equal
`regrad predict`'s on the same images (1e-4).  Needs onnxruntime, numpy and PIL (the GPU
machine has onnxruntime; Debian does not): without it, prints SKIP and exits 77.

  onnxruntime_check.py PATH/TO/regrad [WORK_DIR [DATA]]    (DATA: regrad's --data, default fashion-mnist)
"""
import json, os, subprocess, sys, tempfile

try:
    import numpy as np
    import onnxruntime as ort
    from PIL import Image
except ImportError as e:
    print("SKIP: %s" % e)
    sys.exit(77)

ZOO = [("mlp", 1, 28), ("mlp:act=gelu,bn=1", 1, 28), ("cnn", 1, 28), ("plaincnn:depth=5,act=sigmoid", 1, 28),
       ("resnet20v2", 1, 28), ("resnet56v2", 1, 28), ("plain20", 1, 28), ("plain56", 1, 28),
       ("densenet:depth=10,growth=4", 1, 28), ("lassonet", 1, 28), ("resnet18v2", 3, 32),
       ("resnet50v2", 3, 32), ("resnet101v2", 3, 32), ("densenet121", 3, 32)]


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def compare(regrad, spec, channels, size, d, data, rng):
    """Trains spec briefly, exports it, and returns the largest difference between
    onnxruntime's class probabilities and regrad predict's on four random images."""
    run(regrad, "train", "--data", data, "--model", spec, "--channels", str(channels), "--input-size",
        "%dx%d" % (size, size), "--limit", "128", "--batch", "32", "--epochs", "1", "--quiet", "--checkpoint-dir", d)
    onnx_path = os.path.join(d, "model.onnx")
    run(regrad, "export", "--format", "onnx", "--weights", os.path.join(d, "last.safetensors"), "-o", onnx_path)
    images = []
    for i in range(4):  # at the model's own size: no resizing on either side
        pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
        path = os.path.join(d, "img%d.png" % i)
        Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(path)
        images.append((path, pixels))
    out = run(regrad, "predict", "--weights", os.path.join(d, "last.safetensors"), "--json", "--top", "10",
              *[p for p, _ in images])
    # the CPU provider: strict fp32 (the CUDA provider may use TF32)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    diff = 0.0
    for line, (_, pixels) in zip(out.strip().splitlines(), images):
        want = np.zeros(10)
        for t in json.loads(line)["top"]:
            want[t["index"]] = t["probability"]
        x = (pixels.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        if spec.startswith(("mlp", "lassonet")):
            x = x.reshape(1, -1) if session.get_inputs()[0].shape[1:] != list(x.shape[1:]) else x
        logits = session.run(None, {name: x})[0][0].astype(np.float64)
        p = np.exp(logits - logits.max())
        diff = max(diff, float(np.abs(p / p.sum() - want).max()))
    return diff


def main():
    regrad = sys.argv[1]
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp()
    data = sys.argv[3] if len(sys.argv) > 3 else "fashion-mnist"
    rng = np.random.default_rng(1)
    worst, failed = 0.0, 0
    for spec, channels, size in ZOO:
        d = os.path.join(work, spec.replace(":", "_").replace(",", "_").replace("=", ""))
        os.makedirs(d, exist_ok=True)
        try:
            diff = compare(regrad, spec, channels, size, d, data, rng)
        except (subprocess.CalledProcessError, RuntimeError, ValueError) as e:
            detail = (getattr(e, "stderr", None) or str(e)).strip().splitlines()
            print("%-32s FAIL: %s" % (spec, detail[-1] if detail else e))
            failed += 1
            continue
        ok = diff < 1e-4
        failed += not ok
        worst = max(worst, diff)
        print("%-32s max |p_ort - p_regrad| %.2e  %s" % (spec, diff, "ok" if ok else "FAIL"))
    print("onnxruntime %s, %d models, worst %.2e, %d failed" % (ort.__version__, len(ZOO), worst, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

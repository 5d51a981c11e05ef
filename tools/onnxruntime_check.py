#!/usr/bin/python3
"""onnxruntime_check.py — every zoo model, trained briefly by regrad, exported with
`regrad export --format onnx`, run by onnxruntime with its graph optimizations off: its
class probabilities must equal `regrad predict`'s on the same images (1e-4).  The column
"default" is onnxruntime with its default optimizations, reported, not checked: its Pad
fusion folds a zero Pad into the next MaxPool's pads, which pad with -inf, and changes
resnet18v2's function (docs/usage.md).  --reference runs tools/onnx_reference.py (float64,
Debian's python3-torch) in onnxruntime's place.  Needs numpy and PIL, and onnxruntime
(the GPU machine has it; Debian does not) or python3-torch: without them, SKIP, exit 77.

  onnxruntime_check.py PATH/TO/regrad [--work DIR] [--data SPEC] [--reference]
"""
import argparse, json, os, subprocess, sys, tempfile

try:
    import numpy as np
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


def compare(regrad, spec, channels, size, d, data, rng, sessions):
    """Trains spec briefly, exports it, and returns, for each way of making a session, the
    largest difference between its class probabilities and regrad predict's on four random
    images."""
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
    diffs = []
    for make in sessions:
        session = make(onnx_path)
        name = session.get_inputs()[0].name
        diff = 0.0
        for line, (_, pixels) in zip(out.strip().splitlines(), images):
            want = np.zeros(10)
            for t in json.loads(line)["top"]:
                want[t["index"]] = t["probability"]
            x = (pixels.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
            if len(session.get_inputs()[0].shape) == 2:
                x = x.reshape(1, -1)
            logits = session.run(None, {name: x})[0][0].astype(np.float64)
            p = np.exp(logits - logits.max())
            diff = max(diff, float(np.abs(p / p.sum() - want).max()))
        diffs.append(diff)
    return diffs


def session_makers(reference):
    """The sessions to compare: checked first, then reported; and the runtime's name."""
    if reference:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import onnx_reference
        return [onnx_reference.Session], "onnx_reference (float64)"
    import onnxruntime as ort

    def strict(path):  # the CPU provider (the CUDA one may use TF32), no graph rewrites
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def default(path):
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    return [strict, default], "onnxruntime %s" % ort.__version__


def main():
    ap = argparse.ArgumentParser(description="regrad's ONNX exports against onnxruntime")
    ap.add_argument("regrad")
    ap.add_argument("--work", default=None, help="folder for the models (default: a new temporary one)")
    ap.add_argument("--data", default="fashion-mnist", help="regrad's --data for the brief training")
    ap.add_argument("--reference", action="store_true", help="tools/onnx_reference.py in onnxruntime's place")
    args = ap.parse_args()
    try:
        sessions, runtime = session_makers(args.reference)
    except ImportError as e:
        print("SKIP: %s" % e)
        return 77
    work = args.work or tempfile.mkdtemp()
    rng = np.random.default_rng(1)
    worst, failed = 0.0, 0
    for spec, channels, size in ZOO:
        d = os.path.join(work, spec.replace(":", "_").replace(",", "_").replace("=", ""))
        os.makedirs(d, exist_ok=True)
        try:
            diffs = compare(args.regrad, spec, channels, size, d, args.data, rng, sessions)
        except (subprocess.CalledProcessError, RuntimeError, ValueError, NotImplementedError) as e:
            detail = (getattr(e, "stderr", None) or str(e)).strip().splitlines()
            print("%-32s FAIL: %s" % (spec, detail[-1] if detail else e))
            failed += 1
            continue
        ok = diffs[0] < 1e-4
        failed += not ok
        worst = max(worst, diffs[0])
        extra = "  (default %.2e)" % diffs[1] if len(diffs) > 1 else ""
        print("%-32s max |p - p_regrad| %.2e  %s%s" % (spec, diffs[0], "ok" if ok else "FAIL", extra))
    print("%s, %d models, worst %.2e, %d failed" % (runtime, len(ZOO), worst, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

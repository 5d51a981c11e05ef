#!/usr/bin/python3
"""pil_loader.py — the PIL side of bench_images.sh: the strongest plain-PIL path for the
loader's work on one core.  For each JPEG: open, draft (libjpeg's DCT scaling, powers of
two only), convert to RGB, resize to SIZE with BILINEAR (PIL's anti-aliased triangle filter,
the filter regrad uses), a random horizontal flip, then a float32 CHW array in [0, 1] as
torchvision's ToTensor gives.  Prints images/s.

Usage: pil_loader.py DIR SIZE [EPOCHS]
"""
import os, random, sys, time
import numpy as np
from PIL import Image

root, size = sys.argv[1], int(sys.argv[2])
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
rng = random.Random(1)
checksum, t0 = 0.0, time.perf_counter()
for _ in range(epochs):
    for path in files:
        im = Image.open(path)
        im.draft("RGB", (size, size))
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
        checksum += float(x[0, 0, 0])
secs = time.perf_counter() - t0
print(f"pil: {len(files) * epochs} images in {secs:.3f}s: {len(files) * epochs / secs:.1f} images/s")

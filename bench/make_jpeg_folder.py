#!/usr/bin/python3
"""make_jpeg_folder.py — a folder of photo-like JPEGs for the loader benchmark, made from
Fashion-MNIST (nothing downloaded): each 28x28 item upscaled to 500x375 (bicubic), tinted
with a per-image colour gradient and given film-grain noise so it compresses like a photo
(quality 90, 4:2:0), in one folder per class.

Usage: make_jpeg_folder.py OUT_DIR COUNT [FASHION_MNIST_DIR]   (its files gzip or unpacked)
"""
import gzip, os, sys
import numpy as np
from PIL import Image

out, count = sys.argv[1], int(sys.argv[2])
fm = sys.argv[3] if len(sys.argv) > 3 else "/usr/share/datasets/fashion-mnist"


def read(name):  # an IDX file, gzip or unpacked, as regrad's fashion-mnist:DIR takes it
    path = f"{fm}/{name}"
    with gzip.open(path + ".gz") if os.path.exists(path + ".gz") else open(path, "rb") as f:
        return f.read()


images = np.frombuffer(read("train-images-idx3-ubyte"), np.uint8, offset=16).reshape(-1, 28, 28)
labels = np.frombuffer(read("train-labels-idx1-ubyte"), np.uint8, offset=8)
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:375, 0:500] / 500.0
for i in range(count):
    big = np.asarray(Image.fromarray(images[i]).resize((500, 375), Image.BICUBIC), np.float32)
    tint = rng.uniform(0.3, 1.0, 3)
    grad = rng.uniform(20, 90, 3)
    rgb = np.stack([big * tint[k] + grad[k] * (xx + yy) for k in range(3)], -1)
    rgb += rng.normal(0, 8, rgb.shape)
    d = os.path.join(out, f"class{labels[i]}")
    os.makedirs(d, exist_ok=True)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(f"{d}/{i:05d}.jpg", quality=90)

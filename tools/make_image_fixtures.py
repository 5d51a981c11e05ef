#!/usr/bin/python3
"""make_image_fixtures.py — small image files of every kind the loader reads, and what PIL
makes of them, for tests/test_images.c.

Run:  /usr/bin/python3 tools/make_image_fixtures.py tests/fixtures
Needs Debian's python3-pil and python3-numpy.  The fixtures are committed; CI never runs this.

images/*.png|jpg: gray, RGB, RGBA, palette and 16-bit PNG; RGB, gray and progressive JPEG,
each a smooth pattern plus noise (so resampling errors show).
images_ref.safetensors, float32 tensors:
  NAME.rgb, NAME.gray   PIL's decode converted to RGB / L, (H, W, C) in 0..255
                        (16-bit PNG: round(v / 257), what libpng's scale_16 gives)
  rgb.jpg.half          PIL's decode in draft mode at half size (libjpeg's DCT scaling)
  resize.down, resize.up, resize.box   rgb.png resampled per channel in float ('F' mode)
                        with PIL's BILINEAR filter: to 17x13, to 80x60, and the box
                        (5.5, 3.25, 30, 20) to 12x9; (C, H, W) in [0, 1]
"""
import sys
from pathlib import Path
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import safetensors_np  # noqa: E402

rng = np.random.default_rng(7)

def pattern(h, w, c):
    y, x = np.mgrid[0:h, 0:w]
    planes = [127 + 100 * np.sin(x / (3 + k) + y / (5 + 2 * k) + k) for k in range(c)]
    a = np.stack(planes, -1) + rng.normal(0, 12, (h, w, c))
    return np.clip(a, 0, 255).astype(np.uint8)

def main(out):
    d = out / "images"
    d.mkdir(parents=True, exist_ok=True)
    rgb = pattern(29, 41, 3)
    files = {}
    Image.fromarray(pattern(23, 37, 1)[:, :, 0], "L").save(d / "gray.png"); files["gray.png"] = None
    Image.fromarray(rgb, "RGB").save(d / "rgb.png"); files["rgb.png"] = None
    rgba = np.concatenate([pattern(19, 21, 3), rng.integers(0, 256, (19, 21, 1), dtype=np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png"); files["rgba.png"] = None
    Image.fromarray(pattern(17, 25, 3), "RGB").quantize(16).save(d / "palette.png"); files["palette.png"] = None
    g16 = (pattern(15, 18, 1)[:, :, 0].astype(np.uint16) * 257 + rng.integers(0, 257, (15, 18))).astype(np.uint16)
    Image.fromarray(g16, "I;16").save(d / "gray16.png"); files["gray16.png"] = g16
    jpg = pattern(40, 48, 3)
    Image.fromarray(jpg, "RGB").save(d / "rgb.jpg", quality=90); files["rgb.jpg"] = None
    Image.fromarray(jpg[:, :, 1], "L").save(d / "gray.jpg", quality=90); files["gray.jpg"] = None
    Image.fromarray(jpg, "RGB").save(d / "progressive.jpg", quality=85, progressive=True)
    files["progressive.jpg"] = None

    ref = {}
    for name, raw16 in files.items():
        if raw16 is not None:  # 16-bit: reduce exactly as scale_16 does
            v = np.floor((raw16.astype(np.int64) * 255 + 32895) / 65536).astype(np.float32)
            ref[name + ".gray"] = v[:, :, None]
            ref[name + ".rgb"] = np.repeat(v[:, :, None], 3, -1)
            continue
        im = Image.open(d / name)
        ref[name + ".rgb"] = np.asarray(im.convert("RGB"), np.float32)
        ref[name + ".gray"] = np.asarray(im.convert("L"), np.float32)[:, :, None]
    im = Image.open(d / "rgb.jpg")
    im.draft("RGB", (24, 20))
    ref["rgb.jpg.half"] = np.asarray(im.convert("RGB"), np.float32)

    def resize(size, box=None):
        planes = []
        for k in range(3):
            f = Image.fromarray(rgb[:, :, k].astype(np.float32), "F")
            planes.append(np.asarray(f.resize(size, Image.BILINEAR, box=box), np.float32) / 255)
        return np.stack(planes)
    ref["resize.down"] = resize((17, 13))
    ref["resize.up"] = resize((80, 60))
    ref["resize.box"] = resize((12, 9), (5.5, 3.25, 30, 20))
    safetensors_np.write(out / "images_ref.safetensors", ref)
    print(f"wrote {len(files)} images and {len(ref)} references under {out}")

if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"))

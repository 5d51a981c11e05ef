"""safetensors_np.py — the safetensors format in a few lines of NumPy, for the fixture
scripts in tools/ (Debian has no python3-safetensors): float32 tensors, string metadata,
the header padded to 8 bytes."""
import json, struct
import numpy as np


def write(path, tensors, meta=None):
    """tensors: name -> array-like (NumPy, or anything np.asarray takes)."""
    header, blobs, off = ({"__metadata__": meta} if meta else {}), [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(np.asarray(a), dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(a)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read(path):
    """name -> float32 array (a copy), and the metadata."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k != "__metadata__":
            s, e = v["data_offsets"]
            out[k] = np.frombuffer(b[8 + n + s:8 + n + e], np.float32).reshape(v["shape"]).copy()
    return out, header.get("__metadata__", {})

#!/usr/bin/python3
"""Cross-check of our safetensors files with an independent implementation
(Python + numpy), used by test-safetensors when numpy is installed.

  safetensors-compat.py check FILE   validate FILE with the official
                                     library's rules, print its tensors and
                                     metadata as JSON on stdout
  safetensors-compat.py write FILE   write FILE the way safetensors.numpy's
                                     save_file lays it out
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"U8": np.uint8, "I32": np.int32, "I64": np.int64,
          "F32": np.float32, "F64": np.float64}


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def check(path):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        fail("HeaderTooSmall")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > 100_000_000:
        fail("HeaderTooLarge")
    if n > len(buf) - 8:
        fail("InvalidHeaderLength")
    text = buf[8:8 + n].decode("utf-8")
    if not text.startswith("{"):
        fail("InvalidHeaderStart")
    header = json.loads(text)
    metadata = header.pop("__metadata__", {})
    if not all(isinstance(v, str) for v in metadata.values()):
        fail("metadata values must be strings")
    data = buf[8 + n:]
    # official rules: offsets sorted, contiguous from 0, cover the buffer
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"])
    start = 0
    out = {}
    for name, info in entries:
        b, e = info["data_offsets"]
        if b != start or e < b:
            fail(f"InvalidOffset({name})")
        start = e
        dt = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        count = int(np.prod(info["shape"], dtype=np.int64))
        if count * dt.itemsize != e - b:
            fail(f"TensorInvalidInfo({name})")
        if (8 + n + b) % dt.itemsize:
            fail(f"misaligned({name})")
        arr = np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"])
        out[name] = {"dtype": info["dtype"], "shape": info["shape"],
                     "values": arr.ravel().tolist()}
    if start != len(data):
        fail("MetadataIncompleteBuffer")
    json.dump({"tensors": out, "metadata": metadata,
               "order": [k for k, _ in entries]}, sys.stdout)


def write(path):
    tensors = {
        "encoder.0.weight": np.arange(24, dtype="<f4").reshape(2, 3, 4) / 8,
        "labels": np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        "ids": np.array([-7, 1 << 40], dtype="<i8"),
        "mean": np.array(0.25, dtype="<f8"),
    }
    # safetensors' save_file: by decreasing alignment, then name
    order = sorted(tensors, key=lambda k: (-tensors[k].dtype.alignment, k))
    names = {np.uint8: "U8", np.int64: "I64", np.float32: "F32",
             np.float64: "F64"}
    header = {"__metadata__": {"format": "np", "note": "written by numpy"}}
    offset = 0
    for k in order:
        a = tensors[k]
        header[k] = {"dtype": names[a.dtype.type], "shape": list(a.shape),
                     "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for k in order:
            f.write(np.ascontiguousarray(tensors[k]).tobytes())


if __name__ == "__main__":
    {"check": check, "write": write}[sys.argv[1]](sys.argv[2])

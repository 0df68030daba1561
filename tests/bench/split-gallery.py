#!/usr/bin/python3
"""Splits a gallery IDX pair into a sub-gallery and held-out queries, for
choosing search settings on the gallery itself (never on the evaluation
queries): items whose index % EVERY == OFFSET are held out.

  split-gallery.py IMAGES LABELS OUT_PREFIX [EVERY [OFFSET]]

writes OUT_PREFIX-g-images, -g-labels (the rest) and -q-images, -q-labels
(held out), raw IDX. The README's diffusion settings came from
  split-gallery.py data/mnist/gallery-images.idx3-ubyte \\
      data/mnist/gallery-labels.idx1-ubyte out/split/mnist 10 3
  split-gallery.py data/fashion/train-images-idx3-ubyte.gz \\
      data/fashion/train-labels-idx1-ubyte.gz out/split/fashion 30 3
then cbir-eval --gallery out/split/mnist-g-images ... --queries
out/split/mnist-q-images ... with the flags compared."""
import gzip
import os
import struct
import sys


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        sys.exit("%s: not an unsigned-byte IDX file" % path)
    nd = raw[3]
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    size = 1
    for d in dims[1:]:
        size *= d
    body = raw[4 + 4 * nd:]
    if len(body) != dims[0] * size:
        sys.exit("%s: %d bytes of data for dims %s" % (path, len(body), dims))
    return dims, size, body


def write_idx(path, dims, rows):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims))
        f.write(b"".join(rows))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    every = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    offset = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    idims, isz, img = read_idx(sys.argv[1])
    ldims, _, lab = read_idx(sys.argv[2])
    if idims[0] != ldims[0]:
        sys.exit("%d images but %d labels" % (idims[0], ldims[0]))
    d = os.path.dirname(sys.argv[3])
    if d:
        os.makedirs(d, exist_ok=True)
    held = [i for i in range(idims[0]) if i % every == offset]
    rest = [i for i in range(idims[0]) if i % every != offset]
    for tag, idx in (("g", rest), ("q", held)):
        write_idx("%s-%s-images" % (sys.argv[3], tag), (len(idx),) + idims[1:],
                  [img[i * isz:(i + 1) * isz] for i in idx])
        write_idx("%s-%s-labels" % (sys.argv[3], tag), (len(idx),),
                  [lab[i:i + 1] for i in idx])
    print("%s: %d items kept, %d held out" % (sys.argv[3], len(rest), len(held)))


main()

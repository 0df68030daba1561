#!/usr/bin/env bash
# Regenerates the fuzz seed corpora (tests/fuzz/corpus/NAME/) with the
# project's own tools from a build directory (default build-dev):
#   bash tests/fuzz/make-corpus.sh [BUILD-DIR]
# Seeds are small on purpose (the whole corpus well under 300 KB): MNIST
# subsets of tests/data, the preset architectures plus tiny-arch.json (every
# layer type, whiten-l2 code), models trained for one epoch on 12 images by
# cbir-train, codes files by cbir-encode, galleries (graph + spectrum, DBA,
# bits) by cbir-eval --save-gallery. Training is seeded and single-threaded;
# the files are meant to be regenerated when a format changes, not to be
# bit-identical across machines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build-dev}" && pwd)
tools=$build/src/tools
for t in cbir-train cbir-encode cbir-eval; do
  [ -x "$tools/$t" ] || { echo "missing $tools/$t (build $build first)" >&2; exit 1; }
done
data=$root/tests/data
out=$here/corpus
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cbir-corpus.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export CBIR_THREADS=1 OPENBLAS_NUM_THREADS=1

rm -rf "$out"
mkdir -p "$out"/{idx,safetensors,model,gallery,arch,journal}

# MNIST subsets of the 64-image fixture (raw IDX)
python3 - "$data" "$tmp" <<'PY'
import gzip, struct, sys
d, t = sys.argv[1:]
img = gzip.open(d + '/mnist-64-images.idx3-ubyte.gz').read()
lab = gzip.open(d + '/mnist-64-labels.idx1-ubyte.gz').read()
assert img[:4] == b'\0\0\x08\x03' and lab[:4] == b'\0\0\x08\x01'
def sub(name, start, n):
    with open('%s/%s-images.idx3-ubyte' % (t, name), 'wb') as f:
        f.write(struct.pack('>IIII', 0x803, n, 28, 28)
                + img[16 + start * 784:16 + (start + n) * 784])
    with open('%s/%s-labels.idx1-ubyte' % (t, name), 'wb') as f:
        f.write(struct.pack('>II', 0x801, n) + lab[8 + start:8 + start + n])
sub('gal', 0, 24)
sub('small', 24, 12)
sub('qry', 56, 8)
sub('two', 62, 2)
PY

# idx: gzip and raw, images and labels
cp "$data/mnist-64-images.idx3-ubyte.gz" "$data/mnist-64-labels.idx1-ubyte.gz" "$out/idx/"
cp "$tmp/two-images.idx3-ubyte" "$tmp/two-labels.idx1-ubyte" "$out/idx/"
gzip -9n < "$tmp/two-images.idx3-ubyte" > "$out/idx/two-images.idx3-ubyte.gz"

# arch: the presets and the tiny one
cp "$root"/models/presets/*.json "$out/arch/"
cp "$here/tiny-arch.json" "$out/arch/"

# models: one epoch on the small subset (trained: training info, fitted
# code mean and whitening)
train () {  # OUT ARGS...
  local o=$1; shift
  "$tools/cbir-train" --data "$tmp/small-images.idx3-ubyte" --epochs 1 \
    --batch-size 8 --seed 1 --threads 1 --quiet --out "$tmp/$o.safetensors" \
    --png-prefix "$tmp/$o" "$@" >/dev/null
}
train tiny --arch "$here/tiny-arch.json"
train bits --preset binary-xor
train sicara --preset sicara
for m in tiny bits sicara; do
  cp "$tmp/$m.safetensors" "$out/model/$m.safetensors"
done

# safetensors: a model, float and bit codes files, and a gallery (below)
cp "$tmp/tiny.safetensors" "$out/safetensors/model-tiny.safetensors"
"$tools/cbir-encode" --model "$tmp/tiny.safetensors" \
  --images "$tmp/qry-images.idx3-ubyte" --labels "$tmp/qry-labels.idx1-ubyte" \
  --threads 1 --out "$out/safetensors/codes-float.safetensors" >/dev/null
"$tools/cbir-encode" --model "$tmp/tiny.safetensors" --bits \
  --images "$tmp/qry-images.idx3-ubyte" --threads 1 \
  --out "$out/safetensors/codes-bits.safetensors" >/dev/null

# galleries
gallery () {  # MODEL GALLERY-SUBSET OUT ARGS...
  local m=$1 g=$2 o=$3; shift 3
  "$tools/cbir-eval" --model "$tmp/$m.safetensors" \
    --gallery "$tmp/$g-images.idx3-ubyte" --gallery-labels "$tmp/$g-labels.idx1-ubyte" \
    --queries "$tmp/qry-images.idx3-ubyte" --query-labels "$tmp/qry-labels.idx1-ubyte" \
    --threads 1 --single-seconds 0.01 --quiet --save-gallery "$out/gallery/$o.safetensors" \
    "$@" >/dev/null
}
gallery tiny gal graph-rank --graph-rank 4 --label-names zero,one,two,three,four,five,six,seven,eight,nine
gallery tiny small dba-cosine --dba 3 --metric cosine --no-graph
gallery tiny small float-bits --code bits
gallery bits small bits
cp "$out/gallery/dba-cosine.safetensors" "$out/safetensors/gallery-dba.safetensors"

# enrolment journals (include/cbir/journal.h) and operations as JSON:
# written here from the format, no tool makes them by hand
python3 - "$out/journal" <<'PY'
import struct, sys, zlib
out = sys.argv[1]
fp = b'0123456789abcdef' * 4
def header(dim, items=6, gallery_crc=0):
    h = b'CBIRJNL1' + struct.pack('<II', 1, dim) + fp \
        + struct.pack('<II', items, gallery_crc)
    return h + struct.pack('<I', zlib.crc32(h))
def rec(op, ident, label=0, code=None, opid=b''):
    p = struct.pack('<BBxxiI', op, len(opid), label, len(ident)) + ident + opid
    if code is not None:
        p += b''.join(struct.pack('<f', x) for x in code)
    return struct.pack('<II', len(p), zlib.crc32(p)) + p
j = header(4)
open(out + '/empty.journal', 'wb').write(j)
j += (rec(1, b'alice', 7, [0.5, 1, 1.5, 2]) + rec(3, b'#2', 4) + rec(2, b's1')
      + rec(1, b'bob', 2, [1, 0, 0, 1], b'op-1') + rec(2, b'alice', 0, None, b'op-2'))
open(out + '/ops.journal', 'wb').write(j)
open(out + '/torn.journal', 'wb').write(j + rec(1, b'carol', 1, [0, 0, 0, 0])[:-5])
open(out + '/dim8.journal', 'wb').write(
    header(8) + rec(1, b'x', 1, [float(i) for i in range(8)]) + rec(3, b'x', 9))
m = fp.decode()
open(out + '/op.json', 'w').write(
    '{"schema_version":1,"op":"enrol","id":"alice","label":7,"op_id":"8f1e",'
    '"model":"%s","origin":"a","code":[0.1,-2,3.5,1e-7]}' % m)
open(out + '/remove.json', 'w').write(
    '{"schema_version":1,"op":"remove","id":"s3","label":0,"op_id":"9a",'
    '"model":"%s"}' % m)
PY

du -ab "$out" | sort -k2

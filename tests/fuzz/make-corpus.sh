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
mkdir -p "$out"/{idx,safetensors,model,gallery,arch}

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

du -ab "$out" | sort -k2

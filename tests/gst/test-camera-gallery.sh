#!/bin/sh
# pipelines/camera-gallery.sh as written, on the tests/data fixture as the
# MNIST gallery split and an untrained model, with small glyph sets: by
# default (RENDER=both, SEEDS="102 103") every image is indexed three
# times, as it is and as the simulated camera shows it with each seed, all
# under one source id; SEEDS=102 makes the first two of them alone, the
# same codes; the letters and shapes carry label -2, the digits 0-9.
# RENDER=clean indexes each once; a bad RENDER or SEEDS, a failed camera
# rendering, a missing model or missing data end in a one-line error, a
# non-zero exit and no gallery.
# Env from meson.build.
set -u
fail () { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
P=$CBIR_SOURCE_ROOT/pipelines
export GST_LAUNCH="${GST_TOOLS_DIR:-/usr/bin}/gst-launch-1.0"
export VARIANTS=1 LETTERS=AB LETTER_VARIANTS=1 SHAPES=2
mkdir -p "$T/data/mnist"
gzip -dc "$CBIR_TEST_DATA/mnist-64-images.idx3-ubyte.gz" > "$T/data/mnist/gallery-images.idx3-ubyte"
gzip -dc "$CBIR_TEST_DATA/mnist-64-labels.idx1-ubyte.gz" > "$T/data/mnist/gallery-labels.idx1-ubyte"
export CBIR_DATA="$T/data"
"$CBIR_GST_FIXTURE" model keras-dae "$T/model.safetensors" > /dev/null || fail "fixture model"

# from another directory, as a user would
(cd "$T" && sh "$P/camera-gallery.sh" model.safetensors both.safetensors) \
  > "$T/out" 2>&1 || { cat "$T/out"; fail "camera-gallery.sh (default RENDER)"; }
(cd "$T" && RENDER=clean sh "$P/camera-gallery.sh" model.safetensors clean.safetensors) \
  > "$T/out" 2>&1 || { cat "$T/out"; fail "camera-gallery.sh RENDER=clean"; }
(cd "$T" && SEEDS=102 sh "$P/camera-gallery.sh" model.safetensors one.safetensors) \
  > "$T/out" 2>&1 || { cat "$T/out"; fail "camera-gallery.sh SEEDS=102"; }

/usr/bin/python3 - "$T/both.safetensors" "$T/clean.safetensors" "$T/one.safetensors" <<'PY' || fail "gallery check"
import collections, struct, sys
from tools_common import read_safetensors

def read(path):
    _, t = read_safetensors(path)
    raw = t["labels"][2]
    labels = list(struct.unpack("<%di" % (len(raw) // 4), raw))
    ids = t["ids"][2].split(b"\0")[:-1]
    dim = t["features"][1][1]
    feats = [t["features"][2][i * 4 * dim:(i + 1) * 4 * dim] for i in range(len(labels))]
    return labels, ids, feats

both, both_ids, both_f = read(sys.argv[1])
clean, clean_ids, clean_f = read(sys.argv[2])
one, one_ids, one_f = read(sys.argv[3])
n = len(clean)
# 64 handwritten digits, printed digits, 2 letters x fonts, 5 kinds x 2 shapes
assert n > 64 + 10 + 10, n
assert sorted(set(clean)) == [-2] + list(range(10)), sorted(set(clean))
assert clean[:64] == [l for l in clean[:64] if 0 <= l <= 9]
assert len(clean_ids) == n and len(set(clean_ids)) == n, "clean: ids not one per item"
# RENDER=both: the clean gallery, then the camera renderings of the same
# images in the same order, one set per seed, each under its clean twin's id
assert len(both) == 3 * n, (len(both), n)
assert both == clean * 3, "labels differ"
assert both_ids == clean_ids * 3, "the versions' ids differ"
count = collections.Counter(both_ids)
assert set(count.values()) == {3}, "an id not shared by exactly three items"
assert both_f[:n] == clean_f, "the clean images encoded differently"
# the seeds draw different renderings (a few images may come out alike)
same = sum(1 for a, b in zip(both_f[n:2 * n], both_f[2 * n:]) if a == b)
assert same < n // 10, "%d of %d renderings the same for both seeds" % (same, n)
# one seed: the clean images and the first seed's renderings, as they were
assert one == clean * 2 and one_ids == clean_ids * 2, "SEEDS=102: labels or ids"
assert one_f == both_f[:2 * n], "SEEDS=102: not the default's first two versions"
print("camera gallery: %d items (%d sources), %d examples of non-matches"
      % (len(both), n, both.count(-2)))
PY

# errors: one line naming the problem, non-zero exit, no gallery
expect_error () {  # WHAT NEEDLE CMD...
  what=$1 needle=$2; shift 2
  "$@" > "$T/out" 2> "$T/err" && fail "$what: exit status 0"
  grep -q "$needle" "$T/err" || { cat "$T/err"; fail "$what: no '$needle' in the error"; }
}
expect_error "bad RENDER" "RENDER must be" \
  env RENDER=sideways sh "$P/camera-gallery.sh" "$T/model.safetensors" "$T/bad.safetensors"
expect_error "empty SEEDS" "SEEDS is empty" \
  env SEEDS= sh "$P/camera-gallery.sh" "$T/model.safetensors" "$T/bad.safetensors"
expect_error "bad SEEDS" "SEEDS must be camera seeds (whole numbers), not '\\*'" \
  env SEEDS="102 *" sh "$P/camera-gallery.sh" "$T/model.safetensors" "$T/bad.safetensors"
expect_error "SEEDS twice" "SEEDS names 102 twice" \
  env SEEDS="102 103 102" sh "$P/camera-gallery.sh" "$T/model.safetensors" "$T/bad.safetensors"
expect_error "failed rendering" "renderings failed" \
  env CBIR_SIMCAM=false sh "$P/camera-gallery.sh" "$T/model.safetensors" "$T/bad.safetensors"
expect_error "missing model" "missing.safetensors" \
  sh "$P/camera-gallery.sh" "$T/missing.safetensors" "$T/bad.safetensors"
rm "$T/data/mnist/gallery-labels.idx1-ubyte"
expect_error "missing labels" "gallery-labels" \
  sh "$P/camera-gallery.sh" "$T/model.safetensors" "$T/bad.safetensors"
[ -e "$T/bad.safetensors" ] && fail "a gallery written after an error"
ls -A "$T" | grep -q '^\.' && fail "temporary file left: $(ls -A "$T")"
echo "ok: camera-gallery.sh"

#!/bin/sh
# pipelines/open-set.sh as written, on the tests/data fixture (its 64
# digits as the MNIST query split, FRAMES=64) with an untrained model and
# a small RENDER=clean camera gallery of the same fixture, run from another
# directory with two camera draws (SEEDS="31 32", each a run of the script
# with SEED): every set is drawn and tagged (the frame counts of the pooled
# summary), each draw's line and the pooled figures agree with the tags
# and the truth the draws wrote, blank paper is always "no match" (no ink,
# no region, whatever the model), the raw frames are removed; a missing
# model, gallery or query split ends in a one-line error naming it before
# any video is drawn, a bad SEEDS too.
# Env from meson.build.
set -u
fail () { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
P=$CBIR_SOURCE_ROOT/pipelines
export GST_LAUNCH="${GST_TOOLS_DIR:-/usr/bin}/gst-launch-1.0"
mkdir -p "$T/data/mnist"
for split in gallery query; do
  gzip -dc "$CBIR_TEST_DATA/mnist-64-images.idx3-ubyte.gz" > "$T/data/mnist/$split-images.idx3-ubyte"
  gzip -dc "$CBIR_TEST_DATA/mnist-64-labels.idx1-ubyte.gz" > "$T/data/mnist/$split-labels.idx1-ubyte"
done
export CBIR_DATA="$T/data"
"$CBIR_GST_FIXTURE" model keras-dae "$T/model.safetensors" > /dev/null || fail "fixture model"
(cd "$T" && RENDER=clean VARIANTS=1 LETTERS=AB LETTER_VARIANTS=1 SHAPES=2 \
  sh "$P/camera-gallery.sh" model.safetensors gallery.safetensors) > "$T/out" 2>&1 \
  || { cat "$T/out"; fail "camera-gallery.sh"; }

(cd "$T" && FRAMES=64 SEEDS="31 32" sh "$P/open-set.sh" model.safetensors gallery.safetensors os) \
  > "$T/summary" 2> "$T/err" || { cat "$T/err"; fail "open-set.sh"; }
cat "$T/summary"
[ -z "$(find "$T/os" -name '*.gray')" ] || fail "raw frames left: $(find "$T/os" -name '*.gray')"

/usr/bin/python3 - "$T/os" "$T/summary" <<'PY' || fail "summary check"
import json, os, re, sys
out, summary = sys.argv[1], open(sys.argv[2]).read()

def line(name):
    m = re.search(r"^%s +(\d+)  (.*)$" % re.escape(name), summary, re.M)
    assert m, "no line for %s in the summary" % name
    return int(m.group(1)), m.group(2)

def tags(draw, name):
    return [json.loads(l) for l in open(os.path.join(draw, "tags", name + ".avi.cbir.jsonl"))]

for name, frames in (("digits (held out)", 128), ("printed (held out)", 600),
                     ("letters", 1040), ("shapes", 400), ("blank", 100),
                     ("test patterns (14)", 140), ("all frames without a digit", 1680),
                     ("  less the letters I l O o", 1600)):
    n, _ = line(name)
    assert n == frames, "%s: %d frames, expected %d" % (name, n, frames)
# one line a frame in every tag file; each draw's digits and the pooled
# figure from the tags and the truth the draws wrote
total = 0
for seed in (31, 32):
    draw = os.path.join(out, "seed-%d" % seed)
    truth = [json.loads(l) for l in open(os.path.join(draw, "digits", "truth.jsonl"))]
    digits = tags(draw, "digits")
    assert len(truth) == len(digits) == 64, (len(truth), len(digits))
    right = sum(1 for t, g in zip(truth, digits) if g["label"] == t["labels"][0])
    want = "draw seed-%d" % seed
    m = re.search(r"^%s +digits ([0-9.]+) %% right \((\d+) of 64\)" % want, summary, re.M)
    assert m and int(m.group(2)) == right, "%s: %s, %d right in the tags" % (want, m and m.group(0), right)
    # blank paper: no digit found, so no match, with any model
    assert all(g["label"] == -1 for g in tags(draw, "blank")), "a blank page matched"
    total += right
_, text = line("digits (held out)")
assert text.startswith("%.1f %% right" % (100.0 * total / 128)), text
assert "digits right over the draws: %d of 128" % total in summary, "pooled count"
_, text = line("blank")
assert text == "100.0 % rejected", text
right = total
print("ok: the summary agrees with the tags (%d of 128 digits right)" % right)
PY

# errors: one line naming the missing file, non-zero exit, nothing drawn
expect_error () {  # WHAT NEEDLE CMD...
  what=$1 needle=$2; shift 2
  rm -rf "$T/bad"
  "$@" > "$T/out" 2> "$T/err" && fail "$what: exit status 0"
  grep -q "$needle" "$T/err" || { cat "$T/err"; fail "$what: no '$needle' in the error"; }
  [ -e "$T/bad" ] && fail "$what: $T/bad made before the error"
  return 0
}
expect_error "missing model" "no $T/missing.safetensors" \
  sh "$P/open-set.sh" "$T/missing.safetensors" "$T/gallery.safetensors" "$T/bad"
expect_error "missing gallery" "no $T/missing-gallery.safetensors" \
  sh "$P/open-set.sh" "$T/model.safetensors" "$T/missing-gallery.safetensors" "$T/bad"
expect_error "bad SEEDS" "SEEDS must be camera seeds" \
  env SEEDS="31 x" sh "$P/open-set.sh" "$T/model.safetensors" "$T/gallery.safetensors" "$T/bad"
expect_error "SEEDS twice" "SEEDS names 32 twice" \
  env SEEDS="32 31 32" sh "$P/open-set.sh" "$T/model.safetensors" "$T/gallery.safetensors" "$T/bad"
rm "$T/data/mnist/query-labels.idx1-ubyte"
expect_error "missing query labels" "query-labels.idx1-ubyte" \
  sh "$P/open-set.sh" "$T/model.safetensors" "$T/gallery.safetensors" "$T/bad"
echo "ok: open-set.sh"

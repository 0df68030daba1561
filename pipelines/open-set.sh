#!/bin/sh
# Open set on the simulated camera: how many frames that hold no digit get
# "no match", and how many held-out digits are still voted right, with
# cbirsearch's default properties (the gallery's examples of non-matches,
# and min-match-score by the gallery: 0.0025 for one with such examples). Every set is rendered camera-like by
# cbir-simcam (640x480, uneven light, blur, noise, rotation, any size and
# place), made an MJPEG video and tagged by cbir-tag:
#   digits       the MNIST query split (held out from every gallery)
#   printed      digits in fonts no gallery was built from (cbir-glyphs)
#   letters      the 52 letters in those fonts
#   shapes       cbir-glyphs shapes of another seed than the gallery's
#   blank        paper only
#   patterns     videotestsrc's test patterns (colour bars, noise, ...)
# A frame counts as rejected when no digit in it matched (label -1), and a
# digit frame as right when its most confident digit has the true label.
# usage: pipelines/open-set.sh MODEL GALLERY [OUT_DIR]
# Env: FRAMES (digit frames, 997), SEED (31), CBIR_BUILD, GST_LAUNCH,
#   TAG_ARGS (more cbir-tag options, e.g. "--min-match-score 0").
set -eu
. "$(dirname "$0")/common.sh"
need_args 2 $#
MODEL=$1
GALLERY=$2
OUT=${3:-out/open-set}
SEED=${SEED:-31}
# what every step needs, checked before the first video is drawn
for f in "$MODEL" "$GALLERY" "$DATA/mnist/query-images.idx3-ubyte" \
    "$DATA/mnist/query-labels.idx1-ubyte"; do
  [ -f "$f" ] || { echo "open-set.sh: no $f" >&2; exit 1; }
done
# the fonts camera-gallery.sh does not index
HELD_OUT_FONTS="FreeSans,FreeSerif,Nimbus Roman,Nimbus Sans,Liberation Mono,DejaVu Sans Mono,P052,URW Gothic,Nimbus Mono PS,DejaVu Sans Condensed"
mkdir -p "$OUT"

"$GLYPHS" --fonts "$HELD_OUT_FONTS" --variants 3 --seed $((SEED + 1)) \
  --out "$OUT/printed" > /dev/null
"$GLYPHS" --chars ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz \
  --fonts "$HELD_OUT_FONTS" --variants 1 --seed $((SEED + 2)) \
  --out "$OUT/letters" > /dev/null
"$GLYPHS" --chars "" --shapes 40 --seed $((SEED + 3)) --out "$OUT/shapes" \
  > /dev/null

# render a set camera-like, one glyph a frame, as an MJPEG video
video () {  # NAME IMAGES LABELS FRAMES [simcam options]
  name=$1 images=$2 labels=$3 frames=$4
  shift 4
  rm -rf "$OUT/$name"
  "$SIMCAM" --images "$images" --labels "$labels" --frames "$frames" \
    --seed "$SEED" --format gray8 --out-dir "$OUT/$name" "$@" > /dev/null
  $GST_LAUNCH -q filesrc location="$OUT/$name/frames.gray" ! \
    rawvideoparse format=gray8 width=640 height=480 framerate=10/1 ! \
    videoconvert ! jpegenc quality=90 ! avimux ! \
    filesink location="$OUT/$name.avi"
  rm -f "$OUT/$name/frames.gray"
}
video digits "$DATA/mnist/query-images.idx3-ubyte" \
  "$DATA/mnist/query-labels.idx1-ubyte" "${FRAMES:-997}"
video printed "$OUT/printed-images.idx3-ubyte" \
  "$OUT/printed-labels.idx1-ubyte" 300
video letters "$OUT/letters-images.idx3-ubyte" \
  "$OUT/letters-labels.idx1-ubyte" 520
video shapes "$OUT/shapes-images.idx3-ubyte" "$OUT/shapes-labels.idx1-ubyte" 200
video blank "$OUT/shapes-images.idx3-ubyte" "$OUT/shapes-labels.idx1-ubyte" 50 \
  --blank-every 1
rm -f "$OUT/patterns.avi.list"
for p in smpte snow checkers-8 circular ball pinwheel spokes gradient \
    zone-plate bar blink smpte75 colors chroma-zone-plate; do
  $GST_LAUNCH -q videotestsrc pattern=$p num-buffers=5 ! \
    video/x-raw,width=640,height=480,framerate=10/1 ! videoconvert ! \
    jpegenc quality=90 ! avimux ! filesink location="$OUT/pattern-$p.avi"
done

# shellcheck disable=SC2086
"$TAG" --quiet --model "$MODEL" --gallery "$GALLERY" --out-dir "$OUT/tags" \
  ${TAG_ARGS:-} "$OUT"/digits.avi "$OUT"/printed.avi "$OUT"/letters.avi \
  "$OUT"/shapes.avi "$OUT"/blank.avi "$OUT"/pattern-*.avi

/usr/bin/python3 - "$OUT" "$GALLERY" <<'PY'
import glob, json, os, sys
out, gallery = sys.argv[1], sys.argv[2]
def tags(name):
    return [json.loads(l) for l in open(os.path.join(out, "tags", name + ".avi.cbir.jsonl"))]
def truth(name):
    return [json.loads(l) for l in open(os.path.join(out, name, "truth.jsonl"))]
print("gallery %s" % gallery)
print("%-28s %7s  %s" % ("set", "frames", "result"))
for name in ("digits", "printed"):
    t, g = truth(name), tags(name)
    assert len(t) == len(g), (name, len(t), len(g))
    right = sum(1 for a, b in zip(t, g) if b["label"] == a["labels"][0])
    rej = sum(1 for b in g if b["label"] == -1)
    print("%-28s %7d  %.1f %% right, %.1f %% no match" %
          (name + " (held out)", len(g), 100.0 * right / len(g), 100.0 * rej / len(g)))
tot = rej_all = 0
sets = ["letters", "shapes", "blank"] + sorted(
    os.path.basename(p)[:-4] for p in glob.glob(os.path.join(out, "pattern-*.avi")))
pat_n = pat_rej = 0
for name in sets:
    g = tags(name)
    rej = sum(1 for b in g if b["label"] == -1)
    tot += len(g)
    rej_all += rej
    if name.startswith("pattern-"):
        pat_n += len(g)
        pat_rej += rej
    else:
        print("%-28s %7d  %.1f %% rejected" % (name, len(g), 100.0 * rej / len(g)))
print("%-28s %7d  %.1f %% rejected" % ("test patterns (14)", pat_n, 100.0 * pat_rej / pat_n))
print("%-28s %7d  %.1f %% rejected" % ("all frames without a digit", tot, 100.0 * rej_all / tot))
# I, l, O and o are a 1 and a 0 once scaled to the digit box (Unicode's
# confusables map I and l to 1, O to 0): no reader of shapes tells them
# apart, so the figure is also given without them
shaped = set(map(ord, "IlOo"))
lt, lg = truth("letters"), tags("letters")
assert len(lt) == len(lg)
n_shaped = sum(1 for a in lt if a["labels"][0] in shaped)
rej_shaped = sum(1 for a, b in zip(lt, lg)
                 if a["labels"][0] in shaped and b["label"] == -1)
print("%-28s %7d  %.1f %% rejected" % ("  less the letters I l O o", tot - n_shaped,
      100.0 * (rej_all - rej_shaped) / (tot - n_shaped)))
PY

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
# Env: FRAMES (digit frames, 997), SEED (the camera's seed, 31; the glyph
#   sets follow it), SEEDS (several draws, e.g. "31 32 33 34 35": each
#   as SEED would draw it, into OUT_DIR/seed-S, then one line a draw and
#   the summary of all the draws pooled; one draw is about 2 minutes),
#   CBIR_BUILD, GST_LAUNCH, TAG_ARGS (more cbir-tag options, e.g.
#   "--min-match-score 0").
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

# summary DIR...: the figures of one draw, or of several pooled (with a
# line a draw first)
summary () {
  /usr/bin/python3 - "$GALLERY" "$@" <<'PY'
import glob, json, os, sys
gallery, outs = sys.argv[1], sys.argv[2:]
def tags(out, name):
    return [json.loads(l) for l in open(os.path.join(out, "tags", name + ".avi.cbir.jsonl"))]
def truth(out, name):
    return [json.loads(l) for l in open(os.path.join(out, name, "truth.jsonl"))]
def rejected(g):
    return sum(1 for b in g if b["label"] == -1)
def count(out):
    """{set: (frames, right or None, no match)} of one draw"""
    c = {}
    for name in ("digits", "printed"):
        t, g = truth(out, name), tags(out, name)
        assert len(t) == len(g), (out, name, len(t), len(g))
        right = sum(1 for a, b in zip(t, g) if b["label"] == a["labels"][0])
        c[name] = (len(g), right, rejected(g))
    pats = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(out, "pattern-*.avi")))
    for name in ["letters", "shapes", "blank"] + pats:
        g = tags(out, name)
        c[name] = (len(g), None, rejected(g))
    # I, l, O and o are a 1 and a 0 once scaled to the digit box (Unicode's
    # confusables map I and l to 1, O to 0): no reader of shapes tells them
    # apart, so the figure is also given without them
    shaped = set(map(ord, "IlOo"))
    lt, lg = truth(out, "letters"), tags(out, "letters")
    assert len(lt) == len(lg)
    c["shaped letters"] = (sum(1 for a in lt if a["labels"][0] in shaped), None,
                           sum(1 for a, b in zip(lt, lg)
                               if a["labels"][0] in shaped and b["label"] == -1))
    return c
def pool(counts):
    p = {}
    for c in counts:
        for name, (n, right, rej) in c.items():
            n0, r0, j0 = p.get(name, (0, None, 0))
            p[name] = (n0 + n, None if right is None else (r0 or 0) + right, j0 + rej)
    return p
def nondigit(c):
    names = [k for k in c if k not in ("digits", "printed", "shaped letters")]
    return sum(c[k][0] for k in names), sum(c[k][2] for k in names)
counts = [count(o) for o in outs]
print("gallery %s" % gallery)
if len(outs) > 1:
    for o, c in zip(outs, counts):
        n, right, _ = c["digits"]
        tot, rej = nondigit(c)
        print("draw %-23s  digits %.1f %% right (%d of %d), %.1f %% of the frames without a digit rejected"
              % (os.path.basename(o), 100.0 * right / n, right, n, 100.0 * rej / tot))
    print("all %d draws pooled:" % len(outs))
c = pool(counts)
print("%-28s %7s  %s" % ("set", "frames", "result"))
for name in ("digits", "printed"):
    n, right, rej = c[name]
    print("%-28s %7d  %.1f %% right, %.1f %% no match" %
          (name + " (held out)", n, 100.0 * right / n, 100.0 * rej / n))
for name in ("letters", "shapes", "blank"):
    n, _, rej = c[name]
    print("%-28s %7d  %.1f %% rejected" % (name, n, 100.0 * rej / n))
pat_n = sum(v[0] for k, v in c.items() if k.startswith("pattern-"))
pat_rej = sum(v[2] for k, v in c.items() if k.startswith("pattern-"))
print("%-28s %7d  %.1f %% rejected" % ("test patterns (14)", pat_n, 100.0 * pat_rej / pat_n))
tot, rej_all = nondigit(c)
print("%-28s %7d  %.1f %% rejected" % ("all frames without a digit", tot, 100.0 * rej_all / tot))
n_shaped, _, rej_shaped = c["shaped letters"]
print("%-28s %7d  %.1f %% rejected" % ("  less the letters I l O o", tot - n_shaped,
      100.0 * (rej_all - rej_shaped) / (tot - n_shaped)))
if len(outs) > 1:
    n, right, _ = c["digits"]
    print("digits right over the draws: %d of %d (%.2f %%)" % (right, n, 100.0 * right / n))
PY
}

if [ -n "${SEEDS:-}" ]; then
  dirs=
  set -f  # the seeds are words, not file patterns
  # shellcheck disable=SC2086
  check_seeds $SEEDS
  for seed in $SEEDS; do
    SEED=$seed SEEDS= sh "$0" "$MODEL" "$GALLERY" "$OUT/seed-$seed" > /dev/null
    dirs="$dirs $OUT/seed-$seed"
  done
  # shellcheck disable=SC2086
  summary $dirs
  exit 0
fi

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

summary "$OUT"

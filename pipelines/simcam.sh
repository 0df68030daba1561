#!/bin/sh
# The simulated camera: no hardware needed. Renders held-out digits (query
# split only) large on unevenly lit paper, shifted, scaled, rotated, blurred
# and noisy at 640x480 (cbir-simcam), makes a video of them, and runs the
# camera pipeline (pipelines/camera.sh) on it:
#   filesrc ! decodebin ! videoconvert ! GRAY8 !
#   cbirencode preprocess=mnist regions=digits ! cbirsearch ! videoconvert !
#   cbiroverlay ! videoconvert ! PNGs + video
# (regions=digits: every digit of a frame is found, searched and drawn)
# usage: pipelines/simcam.sh MODEL GALLERY [OUT_DIR]
#   OUT_DIR  default out/simcam; gets frames/ (camera PNGs + truth.jsonl),
#            simcam.avi (the camera video), overlay/ (overlay PNGs),
#            overlay.avi, and simcam.avi.cbir.jsonl + summary (cbir-tag),
#            then the voted label is compared with the truth.
# Env: FRAMES (30), DIGITS (1, or e.g. 1-3), SEED (1), K (5), SCALE (3),
#   PREPROCESS (mnist), REGIONS (digits; none = the whole frame is one
#   query), IMAGES/LABELS (data/mnist/query-*), DISPLAY_SINK
#   (e.g. autovideosink: also show it), DOC_PNG + DOC_FRAME (write that
#   overlay frame at 480x360 there), CBIR_BUILD (build), GST_LAUNCH.
# Needs the cbir plugin on GST_PLUGIN_PATH (default: build/gst of this checkout).
set -eu
. "$(dirname "$0")/common.sh"
need_args 2 $#
MODEL=$1
GALLERY=$2
OUT=${3:-out/simcam}
IMAGES=${IMAGES:-$DATA/mnist/query-images.idx3-ubyte}
LABELS=${LABELS:-$DATA/mnist/query-labels.idx1-ubyte}
PREPROCESS=${PREPROCESS:-mnist}
REGIONS=${REGIONS:-digits}
K=${K:-5}

mkdir -p "$OUT"
rm -rf "$OUT/frames" "$OUT/overlay"
"$SIMCAM" --images "$IMAGES" --labels "$LABELS" --frames "${FRAMES:-30}" \
  --digits "${DIGITS:-1}" --seed "${SEED:-1}" --out-dir "$OUT/frames"

# the camera video: MJPEG in AVI, 10 frames/s
$GST_LAUNCH -q multifilesrc location="$OUT/frames/frame-%05d.png" \
  caps=image/png,framerate=10/1 ! pngdec ! videoconvert ! \
  jpegenc quality=90 ! avimux ! filesink location="$OUT/simcam.avi"
echo "camera video: $OUT/simcam.avi"

# the camera pipeline on it, the overlay written as PNGs and a video
mkdir -p "$OUT/overlay"
if [ -n "${DISPLAY_SINK:-}" ]; then
  show="t. ! queue ! videoconvert ! $DISPLAY_SINK"
else
  show=""
fi
# shellcheck disable=SC2086
$GST_LAUNCH -q \
  filesrc location="$OUT/simcam.avi" ! decodebin ! videoconvert ! \
  video/x-raw,format=GRAY8 ! \
  cbirencode model="$MODEL" preprocess="$PREPROCESS" regions="$REGIONS" ! \
  cbirsearch gallery="$GALLERY" k="$K" ! videoconvert ! \
  cbiroverlay gallery="$GALLERY" scale="${SCALE:-3}" ! \
  videoconvert ! tee name=t \
  t. ! queue ! pngenc ! multifilesink location="$OUT/overlay/frame-%05d.png" \
  t. ! queue ! videoconvert ! jpegenc quality=90 ! avimux ! \
    filesink location="$OUT/overlay.avi" $show
echo "overlay: $OUT/overlay/frame-NNNNN.png and $OUT/overlay.avi"
# one overlay frame, 480x360, for the README (DOC_PNG=docs/overlay.png DOC_FRAME=4)
if [ -n "${DOC_PNG:-}" ]; then
  $GST_LAUNCH -q filesrc location="$(printf "$OUT/overlay/frame-%05d.png" "${DOC_FRAME:-0}")" ! \
    pngdec ! videoconvert ! videoscale method=lanczos ! \
    video/x-raw,width=480,height=360 ! videoconvert ! video/x-raw,format=RGB ! \
    pngenc compression-level=9 ! filesink location="$DOC_PNG.tmp" && mv "$DOC_PNG.tmp" "$DOC_PNG"
  echo "README picture: $DOC_PNG"
fi

# tag the video and compare with the truth
"$TAG" --quiet --model "$MODEL" --gallery "$GALLERY" --k "$K" \
  --preprocess "$PREPROCESS" "$OUT/simcam.avi"
python3 - "$OUT/frames/truth.jsonl" "$OUT/simcam.avi.cbir.jsonl" <<'PY'
import json, sys
truth = [json.loads(l) for l in open(sys.argv[1])]
tags = [json.loads(l) for l in open(sys.argv[2])]
if len(truth) != len(tags):
    sys.exit("frames: %d in the truth, %d tagged" % (len(truth), len(tags)))
digits = right = 0
for t, g in zip(truth, tags):
    want = t["labels"]
    got = [r["label"] for r in g["regions"]]
    digits += len(want)
    if len(want) == 1 and len(got) >= 1:
        right += g["label"] == want[0]
    else:
        # several digits: regions left to right against the truth's order
        right += sum(1 for a, b in zip(sorted(want), sorted(got)) if a == b) \
            if len(got) == len(want) else 0
print("simulated camera: %d/%d digits voted right (%.1f%%)"
      % (right, digits, 100.0 * right / max(digits, 1)))
PY

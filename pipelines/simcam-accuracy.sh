#!/bin/sh
# Accuracy on the simulated camera vs the same digits fed directly:
#  - camera: cbir-simcam renders FRAMES query digits (default all 997, each
#    once, shuffled) as 640x480 camera frames -> MJPEG video -> cbir-tag
#    (cbirencode preprocess=mnist ! cbirsearch): voted label vs truth;
#  - direct: the same digits as 28x28 frames: cbiridxsrc ! cbirencode
#    (preprocess=scale) ! cbirsearch, voted label vs label.
# Prints both accuracies and their ratio (the goal: camera >= 95% of direct).
# usage: pipelines/simcam-accuracy.sh MODEL GALLERY [OUT_DIR]
# Env: FRAMES (997), SEED (1), K (5), VOTE (cbirsearch vote: local-mean,
#   the default, or weighted), CBIR_BUILD (build), GST_LAUNCH,
#   IMAGES/LABELS (data/mnist/query-*). Needs the plugin on GST_PLUGIN_PATH (default: build/gst).
set -eu
. "$(dirname "$0")/common.sh"
need_args 2 $#
MODEL=$1
GALLERY=$2
OUT=${3:-out/simcam-accuracy}
IMAGES=${IMAGES:-$DATA/mnist/query-images.idx3-ubyte}
LABELS=${LABELS:-$DATA/mnist/query-labels.idx1-ubyte}
K=${K:-5}
VOTE=${VOTE:-local-mean}

mkdir -p "$OUT"
rm -rf "$OUT/frames"
"$SIMCAM" --images "$IMAGES" --labels "$LABELS" --frames "${FRAMES:-997}" \
  --seed "${SEED:-1}" --out-dir "$OUT/frames" > /dev/null
$GST_LAUNCH -q multifilesrc location="$OUT/frames/frame-%05d.png" \
  caps=image/png,framerate=10/1 ! pngdec ! videoconvert ! \
  jpegenc quality=90 ! avimux ! filesink location="$OUT/simcam.avi"
rm -rf "$OUT/frames"/frame-*.png
"$TAG" --quiet --model "$MODEL" --gallery "$GALLERY" --k "$K" \
  --vote "$VOTE" --preprocess mnist "$OUT/simcam.avi"

$GST_LAUNCH -m cbiridxsrc images="$IMAGES" labels="$LABELS" ! \
  cbirencode model="$MODEL" ! \
  cbirsearch gallery="$GALLERY" k="$K" vote="$VOTE" ! \
  fakesink > "$OUT/direct.txt"

python3 - "$OUT/frames/truth.jsonl" "$OUT/simcam.avi.cbir.jsonl" "$OUT/direct.txt" <<'PY'
import json, re, sys
truth = [json.loads(l) for l in open(sys.argv[1])]
tags = [json.loads(l) for l in open(sys.argv[2])]
assert len(truth) == len(tags), "frame counts differ"
shown = {}
cam_right = 0
for t, g in zip(truth, tags):
    shown[t["source_indices"][0]] = t["labels"][0]
    cam_right += g["label"] == t["labels"][0]
direct = {}
for line in open(sys.argv[3]):
    if "cbir-result" not in line:
        continue
    idx = int(re.search(r"source-index=\(guint64\)(\d+)", line).group(1))
    lab = int(re.search(r"[ ,]label=\(int\)(-?\d+)", line).group(1))
    src = int(re.search(r"source-label=\(int\)(-?\d+)", line).group(1))
    direct[idx] = (lab, src)
d_right = sum(1 for i in shown if direct[i][0] == direct[i][1])
n = len(shown)
cam = cam_right / len(truth)
dir_ = d_right / n
print("digits: %d (query split)" % n)
print("direct 28x28 frames: voted top-1 accuracy %.2f%%" % (100 * dir_))
print("simulated camera 640x480: voted top-1 accuracy %.2f%%" % (100 * cam))
print("ratio camera/direct: %.1f%% (goal >= 95%%)" % (100 * cam / dir_))
PY

#!/usr/bin/env bash
# The camera path and batch tagging (issue 11): frames/s and CPU time per
# frame of
#   rawvideoparse ! cbirencode preprocess=mnist regions=digits !
#     cbirsearch ! videoconvert ! [cbiroverlay !] fakesink
# on simulated-camera frames (cbir-simcam: uneven light, blur, noise,
# rotation) at 640x480 and 1280x720 with one and three digits per frame,
# with and without the overlay, and of cbir-tag (MJPEG decode + the same
# analysis, JSON Lines out) on the 640x480 one-digit video.
#
# The frames are raw GRAY8 read from a file (what a camera's converted
# frames are), so the figures are the analysis and the drawing, not a
# decoder. "overlay +%" is the CPU per frame the overlay adds to the same
# pipeline without it (cbirsearch ! videoconvert ! fakesink: both convert
# to BGRx, as any display would), measured in the same run; each pipeline
# runs REPS times, alternating, and the medians are printed.
#
# usage: bash tests/bench/bench-camera.sh [MODEL [GALLERY]]
#   MODEL    default out/default.safetensors (bash scripts/main.sh makes it)
#   GALLERY  default out/gallery-mnist.safetensors
# Environment: FRAMES (frames per video, default 200), REPS (default 3),
# SEARCH_ARGS (more cbirsearch properties for the pipelines, not cbir-tag,
# e.g. local-scaling=false),
# CBIR_BUILD (default build/), OUT (default out/bench-camera).
set -euo pipefail
CBIR_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$CBIR_ROOT/pipelines/common.sh"

MODEL=${1:-$ROOT/out/default.safetensors}
GALLERY=${2:-$ROOT/out/gallery-mnist.safetensors}
FRAMES=${FRAMES:-200}
REPS=${REPS:-3}
SEARCH_ARGS=${SEARCH_ARGS:-}
OUT=${OUT:-$ROOT/out/bench-camera}
for f in "$MODEL" "$GALLERY"; do
  [ -f "$f" ] || { echo "bench-camera: $f not found (bash scripts/main.sh makes it)" >&2; exit 1; }
done
ninja -C "$BUILD" >/dev/null
mkdir -p "$OUT"

. "$CBIR_ROOT/tests/bench/bench-common.sh"

printf '%-9s %-6s %-8s %9s %13s %10s\n' size digits overlay frames/s "CPU ms/frame" "overlay +%"
for size in 640x480 1280x720; do
  W=${size%x*} H=${size#*x}
  for digits in 1 3; do
    # ink heights scaled with the frame, smaller when three share it
    hmin=$((150 * H / 480 / (digits == 1 ? 1 : 2)))
    hmax=$((300 * H / 480 / (digits == 1 ? 1 : 2)))
    dir=$OUT/$size-$digits
    if [ ! -f "$dir/frames.gray" ]; then
      "$SIMCAM" --images "$DATA/mnist/query-images.idx3-ubyte" \
        --labels "$DATA/mnist/query-labels.idx1-ubyte" --frames "$FRAMES" \
        --digits "$digits" --width "$W" --height "$H" --min-height "$hmin" \
        --max-height "$hmax" --format gray8 --out-dir "$dir" >/dev/null
    fi
    src="filesrc location=$dir/frames.gray ! rawvideoparse format=gray8 width=$W height=$H framerate=30/1 ! cbirencode model=$MODEL preprocess=mnist regions=digits ! cbirsearch gallery=$GALLERY $SEARCH_ARGS ! videoconvert"
    plain=() over=()
    for _ in $(seq "$REPS"); do
      # shellcheck disable=SC2086
      plain+=("$(time_once gst-launch-1.0 -q $src ! video/x-raw,format=BGRx ! fakesink)")
      # shellcheck disable=SC2086
      over+=("$(time_once gst-launch-1.0 -q $src ! cbiroverlay gallery=$GALLERY ! fakesink)")
    done
    read -r pw pc < <(printf '%s\n' "${plain[@]}" | medians)
    read -r ow oc < <(printf '%s\n' "${over[@]}" | medians)
    awk -v s="$size" -v d="$digits" -v n="$FRAMES" -v pw="$pw" -v pc="$pc" \
        -v ow="$ow" -v oc="$oc" 'BEGIN {
      printf "%-9s %-6s %-8s %9.1f %13.2f %10s\n", s, d, "no", n / pw, 1000 * pc / n, "";
      printf "%-9s %-6s %-8s %9.1f %13.2f %+9.1f%%\n", s, d, "yes", n / ow, 1000 * oc / n, 100 * (oc - pc) / pc }'
  done
done

# batch tagging: the 640x480 one-digit frames as an MJPEG video
video=$OUT/640x480-1.avi
if [ ! -f "$video" ]; then
  gst-launch-1.0 -q filesrc location="$OUT/640x480-1/frames.gray" ! \
    rawvideoparse format=gray8 width=640 height=480 framerate=10/1 ! \
    videoconvert ! jpegenc quality=90 ! avimux ! filesink location="$video"
fi
tag=()
for _ in $(seq "$REPS"); do
  tag+=("$(time_once "$TAG" --quiet --model "$MODEL" --gallery "$GALLERY" \
    --preprocess mnist --out-dir "$OUT/tag" "$video")")
done
read -r tw tc < <(printf '%s\n' "${tag[@]}" | medians)
awk -v n="$FRAMES" -v w="$tw" -v c="$tc" 'BEGIN {
  printf "cbir-tag, 640x480 MJPEG, 1 digit: %.1f frames/s, %.2f CPU ms/frame\n", n / w, 1000 * c / n }'

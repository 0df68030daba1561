#!/bin/sh
# Search the frames of a video file: any container/codec decodebin knows,
# converted to GRAY8 and scaled to the model's 28x28.
#   filesrc ! decodebin ! videoconvert ! videoscale ! cbirencode ! cbirsearch
# usage: pipelines/search-video-file.sh MODEL GALLERY VIDEO
# If VIDEO does not exist, a small test video (MJPEG in AVI, 112x112, 5 fps)
# is first made from IMAGES (default data/mnist/query-images.idx3-ubyte,
# COUNT=20 frames) with cbiridxsrc ! videoscale ! jpegenc ! avimux.
# Env: K (5), GST_LAUNCH.
set -eu
. "$(dirname "$0")/common.sh"
need_args 3 $#
MODEL=$1
GALLERY=$2
VIDEO=$3

if [ ! -e "$VIDEO" ]; then
  $GST_LAUNCH -q \
    cbiridxsrc images="${IMAGES:-$DATA/mnist/query-images.idx3-ubyte}" \
      count="${COUNT:-20}" framerate=5/1 ! \
    videoscale ! video/x-raw,width=112,height=112 ! videoconvert ! \
    jpegenc quality=95 ! avimux ! filesink location="$VIDEO"
  echo "made test video: $VIDEO"
fi

out=$(mktemp); trap 'rm -f "$out"' EXIT
rc=0
$GST_LAUNCH -m \
  filesrc location="$VIDEO" ! decodebin ! videoconvert ! videoscale ! \
  video/x-raw,format=GRAY8,width=28,height=28 ! \
  cbirencode model="$MODEL" ! \
  cbirsearch gallery="$GALLERY" k="${K:-5}" ! \
  fakesink > "$out" || rc=$?
# errors went to stderr; print the results, one line per frame
grep '^Got message .*cbir-result' "$out" | sed 's/^Got message #[0-9]* from element "cbirsearch0" (element): //'
exit $rc

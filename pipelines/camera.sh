#!/bin/sh
# Live camera digit lookup: hold a handwritten digit (dark ink on light
# paper) in front of a webcam and see its nearest gallery digits and the
# voted label drawn on the video.
#   v4l2src ! videoconvert ! queue leaky=downstream max-size-buffers=2 !
#   GRAY8 ! cbirencode preprocess=mnist regions=digits ! cbirsearch !
#   cbiroverlay ! autovideosink   (every digit in view is found and drawn)
# usage: pipelines/camera.sh MODEL GALLERY [DEVICE]
#   DEVICE  V4L2 device (default /dev/video0)
# Env: K (5), SCALE (overlay magnification, 3), POSITION (top-left...),
#   PREPROCESS (mnist), REGIONS (digits; none = one query per frame),
#   SINK (autovideosink), GST_LAUNCH (gst-launch-1.0).
# Needs the cbir plugin on GST_PLUGIN_PATH (default: build/gst of this checkout).
# No camera? pipelines/simcam.sh runs the same pipeline on a simulated one.
set -eu
. "$(dirname "$0")/common.sh"
need_args 2 $#
MODEL=$1
GALLERY=$2
DEVICE=${3:-/dev/video0}
PREPROCESS=${PREPROCESS:-mnist}
REGIONS=${REGIONS:-digits}

for f in "$MODEL" "$GALLERY"; do
  [ -r "$f" ] || { echo "camera.sh: cannot read $f" >&2; exit 1; }
done
if [ ! -c "$DEVICE" ]; then
  echo "camera.sh: no camera at $DEVICE (not a character device)." >&2
  echo "  Plug in a webcam, pass its device (e.g. /dev/video1), or run the" >&2
  echo "  simulated camera instead: pipelines/simcam.sh $MODEL $GALLERY" >&2
  exit 1
fi

# The leaky queue drops frames while the analysis is busy, so the picture
# stays live; the metas ride through videoconvert to the overlay.
exec $GST_LAUNCH \
  v4l2src device="$DEVICE" ! videoconvert ! videoscale ! \
  video/x-raw,width=640,height=480 ! \
  queue leaky=downstream max-size-buffers=2 ! \
  videoconvert ! video/x-raw,format=GRAY8 ! \
  cbirencode model="$MODEL" preprocess="$PREPROCESS" regions="$REGIONS" ! \
  cbirsearch gallery="$GALLERY" k="${K:-5}" ! \
  videoconvert ! \
  cbiroverlay gallery="$GALLERY" \
    scale="${SCALE:-3}" position="${POSITION:-top-left}" ! \
  videoconvert ! "${SINK:-autovideosink}" sync=false

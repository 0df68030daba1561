#!/bin/sh
# Build a gallery file from an IDX data set, as a pipeline:
#   cbiridxsrc ! cbirencode ! cbirindex
# usage: pipelines/build-gallery.sh MODEL OUT [IMAGES [LABELS]]
#   MODEL   model file (cbir-train)
#   OUT     gallery file to write (atomically, at EOS)
#   IMAGES  IDX images (default data/mnist/gallery-images.idx3-ubyte)
#   LABELS  IDX labels (default data/mnist/gallery-labels.idx1-ubyte)
# Env: GST_LAUNCH (default gst-launch-1.0). Needs the cbir plugin on
# GST_PLUGIN_PATH (default: build/gst of this checkout; see common.sh).
set -eu
. "$(dirname "$0")/common.sh"
need_args 2 $#
MODEL=$1
OUT=$2
IMAGES=${3:-$DATA/mnist/gallery-images.idx3-ubyte}
LABELS=${4:-$DATA/mnist/gallery-labels.idx1-ubyte}

$GST_LAUNCH -q \
  cbiridxsrc images="$IMAGES" labels="$LABELS" ! \
  cbirencode model="$MODEL" ! \
  cbirindex location="$OUT" thumbnails=true
echo "gallery written: $OUT"

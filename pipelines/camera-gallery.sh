#!/bin/sh
# The camera gallery: what a camera pointed at paper may show, as
#   cbiridxsrc ! cbirencode ! cbirindex [append=true] [label=-2]
# in three steps into one file:
#   1. the handwritten digits (MNIST gallery split, labels 0-9),
#   2. printed digits rendered by cbir-glyphs in the gallery fonts (common.sh)
#      (labels 0-9; other fonts are kept for pipelines/open-set.sh to test),
#   3. examples of what is not a digit, label -2 (cbirsearch answers "no
#      match" when they win the vote): the 52 letters in the gallery fonts
#      and cbir-glyphs' shapes (bars, blobs, grids, scribbles, noise).
# The model stays the unsupervised one; only the gallery knows labels.
# usage: pipelines/camera-gallery.sh MODEL OUT
# Env: RENDER (both, the default: each image indexed as it is and as
#   cbir-simcam shows it to the camera path, once per seed in SEEDS, all
#   under one id, so the match score's reference takes none for another's
#   neighbour; the best for camera digits on the tuning split, see the
#   README; 6 minutes on 2 cores with two seeds; camera: only as the
#   camera shows them; clean: only as they are, half a minute),
#   SEEDS (the camera's seeds, "102 103": two renderings an image, ahead of
#   one on the tuning split), LETTERS (the characters shown as non-digits,
#   all 52 letters), VARIANTS (printed digits per digit and font, 20),
#   LETTER_VARIANTS (3), SHAPES (per kind, 100), GST_LAUNCH, CBIR_BUILD.
#   Needs the fonts of scripts/setup.sh (fonts-dejavu-core,
#   fonts-liberation2, fonts-freefont-ttf, fonts-urw-base35).
set -eu
. "$(dirname "$0")/common.sh"
need_args 2 $#
MODEL=$1
OUT=$2
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
# built beside OUT and renamed at the end: a failed step leaves no file
PART=$(dirname "$OUT")/.$(basename "$OUT").part-$$
trap 'rm -rf "$TMP" "$PART"' EXIT

gallery_glyphs "$TMP"
cp "$DATA/mnist/gallery-images.idx3-ubyte" "$TMP/mnist-images.idx3-ubyte"
cp "$DATA/mnist/gallery-labels.idx1-ubyte" "$TMP/mnist-labels.idx1-ubyte"

# RENDER=camera: each image shown to the simulated camera once per seed
# and indexed as the camera path normalises it (cbir-simcam --format idx);
# RENDER=both: the clean images and their camera renderings. Each seed's
# renderings are written under the same file names in cam-SEED/ (one per
# image, in order: with --keep-missed the few the camera path misses are
# kept as they are) so all the versions of an image share its id; only
# RENDER=camera with a single seed leaves the missed ones out.
RENDER=${RENDER:-both}
SEEDS=${SEEDS-102 103}
render_seed () {  # SEED: every set as the camera shows it, into cam-SEED/
  for set in mnist digits letters shapes; do
    camera_render "$TMP" "$set" "$1" $keep
  done
}
case $RENDER in
  clean) SETS_DIRS=$TMP ;;
  camera|both)
    set -f  # the seeds are words, not file patterns
    # shellcheck disable=SC2086
    set -- $SEEDS
    set +f
    check_seeds "$@"
    keep=
    [ "$RENDER" = both ] || [ $# -gt 1 ] && keep=--keep-missed
    # the seeds are drawn side by side (cbir-simcam takes one core)
    pids='' CAM_DIRS=''
    for seed in "$@"; do
      render_seed "$seed" &
      pids="$pids $!"
      CAM_DIRS="$CAM_DIRS $TMP/cam-$seed"
    done
    failed=0
    for pid in $pids; do wait "$pid" || failed=1; done
    [ "$failed" = 0 ] || { echo "camera-gallery.sh: the camera renderings failed" >&2; exit 1; }
    if [ "$RENDER" = camera ]; then SETS_DIRS=$CAM_DIRS; else SETS_DIRS="$TMP $CAM_DIRS"; fi ;;
  *) echo "RENDER must be clean, camera or both, not '$RENDER'" >&2; exit 2 ;;
esac

for dir in $SETS_DIRS; do
  for set in mnist digits; do
    $GST_LAUNCH -q cbiridxsrc images="$dir/$set-images.idx3-ubyte" \
      labels="$dir/$set-labels.idx1-ubyte" ! cbirencode model="$MODEL" ! \
      cbirindex location="$PART" append=true thumbnails=true
  done
  for set in letters shapes; do
    # no labels file: every item gets the element's label, -2
    $GST_LAUNCH -q cbiridxsrc images="$dir/$set-images.idx3-ubyte" ! \
      cbirencode model="$MODEL" ! \
      cbirindex location="$PART" append=true thumbnails=true \
      label=-2
  done
done
mv "$PART" "$OUT"
echo "camera gallery written: $OUT"

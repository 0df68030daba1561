#!/bin/sh
# A model for the camera path: the default preset with deskewed input,
# trained to undo the simulated camera as well as the usual corruption.
# Each MNIST gallery image is shown to cbir-simcam once per seed in SEEDS
# (one digit a frame, in order, as the camera path normalises it), and the
# trainer gets the clean images as its targets and, as their inputs, the
# images themselves and each rendering (cbir-train --inputs; the training
# corruption is added on top). No labels are used.
#   cbir-simcam --sequential --keep-missed --format idx   (per seed)
#   cbir-data cat                                          (clean + renderings)
#   cbir-train --preset default --deskew --data CLEAN... --inputs RENDERED...
# usage: pipelines/camera-model.sh OUT
# Env: SEEDS (the camera's seeds, "203": one rendering per image), EPOCHS
#   (epochs over the clean images and their renderings, 32: ahead of 16 on
#   the tuning split, see the README), CBIR_BUILD, CBIR_DATA. About 30
#   minutes on 2 cores with one seed.
set -eu
. "$(dirname "$0")/common.sh"
need_args 1 $#
OUT=$1
SEEDS=${SEEDS:-203}
DATA_TOOL=${CBIR_DATA_TOOL:-$BUILD/src/tools/cbir-data}
TRAIN=${CBIR_TRAIN:-$BUILD/src/tools/cbir-train}
IMAGES=$DATA/mnist/gallery-images.idx3-ubyte
LABELS=$DATA/mnist/gallery-labels.idx1-ubyte
for f in "$IMAGES" "$LABELS" "$DATA/mnist/query-images.idx3-ubyte"; do
  [ -f "$f" ] || { echo "camera-model.sh: no $f (run scripts/get-data.sh)" >&2; exit 1; }
done
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

n=$(idx_count "$LABELS")
for seed in $SEEDS; do
  "$SIMCAM" --images "$IMAGES" --labels "$LABELS" --frames "$n" --sequential \
    --seed "$seed" --format idx --keep-missed --out-dir "$TMP/cam-$seed" > /dev/null
done
# targets: the clean images once per input set; inputs: the clean images,
# then each rendering (image i of one file pairs with image i of the other)
set -- "$IMAGES"
for seed in $SEEDS; do set -- "$@" "$IMAGES"; done
"$DATA_TOOL" cat "$TMP/targets.idx3-ubyte" "$@" > /dev/null
set -- "$IMAGES"
for seed in $SEEDS; do set -- "$@" "$TMP/cam-$seed/digits-images.idx3-ubyte"; done
"$DATA_TOOL" cat "$TMP/inputs.idx3-ubyte" "$@" > /dev/null
"$TRAIN" --preset default --deskew --epochs "${EPOCHS:-32}" \
  --data "$TMP/targets.idx3-ubyte" --inputs "$TMP/inputs.idx3-ubyte" \
  --val-data "$DATA/mnist/query-images.idx3-ubyte" --out "$OUT"

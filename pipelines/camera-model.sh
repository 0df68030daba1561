#!/bin/sh
# A model for the camera path: the default preset with deskewed input,
# trained to undo the simulated camera as well as the usual corruption.
# Each MNIST gallery image (with TRAIN_ON=gallery also each printed digit,
# letter and shape camera-gallery.sh indexes) is shown to cbir-simcam once
# per seed in SEEDS (one a frame, in order, as the camera path normalises
# it), and the trainer gets the clean images as its targets and, as their
# inputs, the images themselves and each rendering (cbir-train --inputs;
# the training corruption is added on top). No labels are used.
#   cbir-simcam --sequential --keep-missed --format idx   (per seed)
#   cbir-data cat                                          (clean + renderings)
#   cbir-train --preset default --deskew --data CLEAN... --inputs RENDERED...
# usage: pipelines/camera-model.sh OUT
# Env: SEEDS (the camera's seeds, "203": one rendering per image), EPOCHS
#   (epochs over the clean images and their renderings, 32: ahead of 16 on
#   the tuning split, see the README), CBIR_BUILD, CBIR_DATA, TRAIN_ON
#   (mnist: the MNIST gallery split; gallery: also the printed digits,
#   letters and shapes that camera-gallery.sh indexes, drawn the same way,
#   gallery_glyphs in common.sh; still no labels; not ahead on the tuning
#   split, see the README). About 30 minutes on 2 cores with one seed
#   and TRAIN_ON=mnist.
set -eu
. "$(dirname "$0")/common.sh"
need_args 1 $#
OUT=$1
SEEDS=${SEEDS:-203}
TRAIN_ON=${TRAIN_ON:-mnist}
case $TRAIN_ON in
  mnist) SETS=mnist ;;
  gallery) SETS="mnist digits letters shapes" ;;
  *) echo "TRAIN_ON must be mnist or gallery, not '$TRAIN_ON'" >&2; exit 2 ;;
esac
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

cp "$IMAGES" "$TMP/mnist-images.idx3-ubyte"
cp "$LABELS" "$TMP/mnist-labels.idx1-ubyte"
if [ "$TRAIN_ON" = gallery ]; then gallery_glyphs "$TMP"; fi
for name in $SETS; do
  for seed in $SEEDS; do camera_render "$TMP" "$name" "$seed" --keep-missed; done
done
# targets: the clean images once per input set; inputs: the clean images,
# then each rendering (image i of one file pairs with image i of the other)
set --
for name in $SETS; do
  for _ in clean $SEEDS; do set -- "$@" "$TMP/$name-images.idx3-ubyte"; done
done
"$DATA_TOOL" cat "$TMP/targets.idx3-ubyte" "$@" > /dev/null
set --
for name in $SETS; do
  set -- "$@" "$TMP/$name-images.idx3-ubyte"
  for seed in $SEEDS; do set -- "$@" "$TMP/cam-$seed/$name-images.idx3-ubyte"; done
done
"$DATA_TOOL" cat "$TMP/inputs.idx3-ubyte" "$@" > /dev/null
"$TRAIN" --preset default --deskew --epochs "${EPOCHS:-32}" \
  --data "$TMP/targets.idx3-ubyte" --inputs "$TMP/inputs.idx3-ubyte" \
  --val-data "$DATA/mnist/query-images.idx3-ubyte" --out "$OUT"

#!/usr/bin/env bash
# mAP-vs-epoch curve of one engine training recipe (research helper).
# usage: engine-curve.sh DS TAG EPOCHS [cbir-train args...]
#   DS mnist|fashion|fsqrt (Fashion with sqrt-compressed intensities, made by hand); trains epoch by epoch (--resume, bit-identical to one
#   run), scores the checkpoint after each epoch with cbir-eval --metric cosine,
#   appends "TAG epoch mAP P@10 seconds" to out/research/curves.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
DS=$1 TAG=$2 EP=$3; shift 3
B=${BUILD_DIR:-$ROOT/build}/src/tools
case $DS in
  mnist) D=$ROOT/data/mnist; G=$D/gallery-images.idx3-ubyte; GL=$D/gallery-labels.idx1-ubyte
         Q=$D/query-images.idx3-ubyte; QL=$D/query-labels.idx1-ubyte ;;
  fashion) D=$ROOT/data/fashion; G=$D/train-images-idx3-ubyte.gz; GL=$D/train-labels-idx1-ubyte.gz
         Q=$D/t10k-images-idx3-ubyte.gz; QL=$D/t10k-labels-idx1-ubyte.gz ;;
  fsqrt) D=$ROOT/out/research/data-fsqrt; G=$D/train-images-idx3-ubyte; GL=$D/train-labels-idx1-ubyte.gz
         Q=$D/t10k-images-idx3-ubyte; QL=$D/t10k-labels-idx1-ubyte.gz ;;
  fsqrtblur) D=$ROOT/out/research/data-fsqrtblur; G=$D/train-images-idx3-ubyte; GL=$D/train-labels-idx1-ubyte.gz
         Q=$D/t10k-images-idx3-ubyte; QL=$D/t10k-labels-idx1-ubyte.gz ;;
esac
O=$ROOT/out/research/$DS-$TAG; mkdir -p "$O"
ck=$O/ck.safetensors
t0=$(date +%s)
for e in $(seq 1 "$EP"); do
  if [ "$e" = 1 ]; then
    "$B/cbir-train" --data "$G" --val-data "$Q" --epochs 1 --out "$O/model.safetensors" \
      --checkpoint "$ck" --checkpoint-every 1 --quiet "$@" > /dev/null
  else
    "$B/cbir-train" --resume "$ck" --data "$G" --val-data "$Q" --epochs "$e" --out "$O/model.safetensors" \
      --checkpoint "$ck" --checkpoint-every 1 --quiet > /dev/null
  fi
  r=$("$B/cbir-eval" --model "$ck" --gallery "$G" --gallery-labels "$GL" --queries "$Q" \
      --query-labels "$QL" --metric cosine --quiet --single-seconds 0.05 | awk '$1=="default"{print $6, $9}')
  echo "$DS-$TAG $e $r $(( $(date +%s) - t0 ))" | tee -a "$ROOT/out/research/curves.txt"
done

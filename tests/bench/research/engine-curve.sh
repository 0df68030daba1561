#!/usr/bin/env bash
# mAP-vs-epoch curve of one engine training recipe (research helper).
# usage: engine-curve.sh DS TAG EPOCHS [cbir-train args...]
#   DS mnist|fashion|fsqrt (Fashion with sqrt-compressed intensities, made by hand); trains epoch by epoch (--resume, bit-identical to one
#   run), scores the checkpoint after each epoch with cbir-eval --metric cosine,
#   appends "TAG epoch mAP P@10 seconds" to out/research/curves.txt.
#   Not for --lr-schedule cosine: each resume with more epochs stretches the
#   schedule, so the checkpoints are not points of one run (engine-final.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
DS=$1 TAG=$2 EP=$3; shift 3
B=${BUILD_DIR:-$ROOT/build}/src/tools
. "$ROOT/tests/bench/research/datasets.sh" || { sed -n '2,8p' "$0"; exit 2; }
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

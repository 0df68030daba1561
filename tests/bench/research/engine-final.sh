#!/usr/bin/env bash
# mAP of one engine training recipe after a whole run (research helper; for
# schedules like --lr-schedule cosine, whose per-epoch checkpoints are not
# points of a shorter run, use this rather than engine-curve.sh).
# usage: engine-final.sh DS TAG [cbir-train args...]
#   DS mnist|fashion; trains on the gallery images (validation: the queries,
#   as tests/bench/quality.sh does), scores with cbir-eval (the model's own
#   code normalisation, L2) on all queries and appends
#   "DS-TAG args : mAP P@10 seconds" to out/research/final.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
DS=$1 TAG=$2; shift 2
B=${BUILD_DIR:-$ROOT/build}/src/tools
. "$ROOT/tests/bench/research/datasets.sh" || { sed -n '2,10p' "$0"; exit 2; }
mkdir -p "$ROOT/out/research"
O=$ROOT/out/research/final-$DS-$TAG.safetensors
t0=$(date +%s)
"$B/cbir-train" --data "$G" --val-data "$Q" --out "$O" --quiet "$@" > /dev/null
r=$("$B/cbir-eval" --model "$O" --gallery "$G" --gallery-labels "$GL" --queries "$Q" \
    --query-labels "$QL" --quiet --single-seconds 0.05 | awk 'NR==4{print $6, $9}')
echo "$DS-$TAG $* : $r $(( $(date +%s) - t0 ))s" | tee -a "$ROOT/out/research/final.txt"

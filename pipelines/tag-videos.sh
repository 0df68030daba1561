#!/bin/sh
# Video batch tagging: for each video file (anything GStreamer decodes)
# writes FILE.cbir.jsonl (one line a frame in the result schema 1 of
# schema/cbir-result-1.schema.json: times, frame number, per-region box,
# top-k ids, labels, distances, voted label, confidence, match score) and
# FILE.cbir-summary.json (label histogram, frames with no match, frames/s).
# usage: pipelines/tag-videos.sh MODEL GALLERY FILE...
# Env: K (5), PREPROCESS (mnist or scale), OUT_DIR (default: next to each
#   file), CBIR_TAG (default build/gst/cbir-tag, else cbir-tag on PATH).
# A file that cannot be decoded is reported and the others still run (exit
# status 1 at the end); Ctrl-C leaves no half-written sidecar.
set -eu
. "$(dirname "$0")/common.sh"
need_args 3 $#
MODEL=$1
GALLERY=$2
shift 2
if [ -z "${CBIR_TAG:-}" ]; then
  if [ -x "$BUILD/gst/cbir-tag" ]; then
    CBIR_TAG=$BUILD/gst/cbir-tag
  else
    CBIR_TAG=cbir-tag
  fi
fi
set -- --model "$MODEL" --gallery "$GALLERY" --k "${K:-5}" \
  --preprocess "${PREPROCESS:-mnist}" "$@"
if [ -n "${OUT_DIR:-}" ]; then
  set -- --out-dir "$OUT_DIR" "$@"
fi
exec "$CBIR_TAG" "$@"

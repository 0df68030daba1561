#!/bin/sh
# End-to-end: the pipelines/ scripts run as written with gst-launch-1.0 on
# the tests/data fixture and an untrained model; bad input ends in a clear
# error, a non-zero exit and no partial gallery. Env from meson.build.
set -u
fail () { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
P=$CBIR_SOURCE_ROOT/pipelines
IMG=$CBIR_TEST_DATA/mnist-64-images.idx3-ubyte.gz
LBL=$CBIR_TEST_DATA/mnist-64-labels.idx1-ubyte.gz
export GST_LAUNCH="${GST_TOOLS_DIR:-/usr/bin}/gst-launch-1.0"

"$CBIR_GST_FIXTURE" model keras-dae "$T/model.safetensors" > /dev/null || fail "fixture model"
"$CBIR_GST_FIXTURE" model binary-xor "$T/other.safetensors" > /dev/null || fail "fixture model"

# 1. build a gallery
sh "$P/build-gallery.sh" "$T/model.safetensors" "$T/gallery.safetensors" "$IMG" "$LBL" \
  || fail "build-gallery.sh"
[ -s "$T/gallery.safetensors" ] || fail "no gallery written"

# 2. search noisy digits: one result per frame, with the true label known
sh "$P/search-noisy-digits.sh" "$T/model.safetensors" "$T/gallery.safetensors" "$IMG" "$LBL" 12 \
  > "$T/noisy.txt" || fail "search-noisy-digits.sh"
n=$(grep -c '^cbir-result' "$T/noisy.txt")
[ "$n" -eq 12 ] || fail "search-noisy-digits: $n results, expected 12"
grep -q 'source-label=(int)' "$T/noisy.txt" || fail "no source label in results"
grep -q '^frames: 12, voted label = true label' "$T/noisy.txt" || fail "no summary"

# 2b. from another directory, with the default query set (CBIR_DATA stands
#     for the checkout's data/; the fixture under the default file names)
mkdir -p "$T/data/mnist" "$T/elsewhere"
cp "$IMG" "$T/data/mnist/query-images.idx3-ubyte"
cp "$LBL" "$T/data/mnist/query-labels.idx1-ubyte"
(cd "$T/elsewhere" && CBIR_DATA="$T/data" sh "$P/search-noisy-digits.sh" \
  ../model.safetensors ../gallery.safetensors) > "$T/noisy2.txt" \
  || fail "search-noisy-digits.sh from another directory"
grep -q '^cbir-result' "$T/noisy2.txt" || fail "no results from another directory"

# 3. a video file (made on the fly: MJPEG in AVI), decodebin/videoconvert/videoscale
IMAGES="$IMG" COUNT=8 sh "$P/search-video-file.sh" "$T/model.safetensors" \
  "$T/gallery.safetensors" "$T/test.avi" > "$T/video.txt" || fail "search-video-file.sh"
[ -s "$T/test.avi" ] || fail "no test video"
n=$(grep -c '^cbir-result' "$T/video.txt")
[ "$n" -eq 8 ] || fail "search-video-file: $n results, expected 8"

# 4. plain gst-launch: videotestsrc through every element
"$GST_LAUNCH" -q videotestsrc num-buffers=10 ! video/x-raw,format=GRAY8,width=28,height=28 ! \
  cbirnoise level=0.2 ! cbirencode model="$T/model.safetensors" ! \
  cbirsearch gallery="$T/gallery.safetensors" ! fakesink || fail "videotestsrc pipeline"

# 4b. the README's cbirpublish pipelines: a JSON Lines file (one valid line
#     a frame, schema 1) and Kafka through librdkafka's in-process mock
#     cluster (no broker needed; every frame acknowledged)
SRC="cbiridxsrc images=$IMG count=10 ! cbirencode model=$T/model.safetensors ! cbirsearch gallery=$T/gallery.safetensors"
# shellcheck disable=SC2086
"$GST_LAUNCH" -q $SRC ! cbirpublish location="$T/results.jsonl" || fail "cbirpublish file"
/usr/bin/python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 10 and all(o["schema_version"] == 1 for o in lines), lines
assert [o["frame"] for o in lines] == list(range(10))
' "$T/results.jsonl" || fail "cbirpublish file: not 10 schema-1 lines"
# the source's URI (a file source answers the URI query through the decoder)
"$GST_LAUNCH" -q videotestsrc num-buffers=3 ! video/x-raw,format=GRAY8,width=28,height=28 ! \
  pngenc ! multifilesink location="$T/frame-%d.png" || fail "png frame"
"$GST_LAUNCH" -q filesrc location="$T/frame-0.png" ! pngdec ! videoconvert ! \
  video/x-raw,format=GRAY8 ! cbirencode model="$T/model.safetensors" ! \
  cbirsearch gallery="$T/gallery.safetensors" ! cbirpublish location="$T/src.jsonl" \
  || fail "cbirpublish from a file"
grep -q "\"source\":\"file://$T/frame-0.png\"" "$T/src.jsonl" \
  || fail "no source URI: $(cat "$T/src.jsonl")"
# shellcheck disable=SC2086
"$GST_LAUNCH" -m $SRC ! cbirpublish method=kafka topic=cbir-results \
  kafka-config=test.mock.num.brokers=1 > "$T/kafka.txt" 2>&1 || fail "cbirpublish kafka: $(cat "$T/kafka.txt")"
grep -q 'cbir-publish, method=(string)kafka, published=(guint64)10, dropped=(guint64)0' \
  "$T/kafka.txt" || fail "cbirpublish kafka: not 10 published: $(grep cbir-publish "$T/kafka.txt")"

# 5. bad input: clear error naming the file, non-zero exit, no gallery
expect_error () {  # expect_error WHAT MUST_MENTION cmd...
  what=$1; mention=$2; shift 2
  if "$@" > "$T/out.txt" 2> "$T/err.txt"; then fail "$what: exit status 0"; fi
  grep -qE "ERROR|erroneous pipeline" "$T/err.txt" || { cat "$T/err.txt"; fail "$what: no error message"; }
  grep -qF "$mention" "$T/err.txt" || { cat "$T/err.txt"; fail "$what: error does not name $mention"; }
  echo "ok: $what"
}
expect_error "missing model" "$T/none.safetensors" \
  sh "$P/build-gallery.sh" "$T/none.safetensors" "$T/g2.safetensors" "$IMG" "$LBL"
[ -e "$T/g2.safetensors" ] && fail "partial gallery after missing model"
printf 'not a model at all' > "$T/corrupt.safetensors"
expect_error "corrupt model" "$T/corrupt.safetensors" \
  sh "$P/build-gallery.sh" "$T/corrupt.safetensors" "$T/g2.safetensors" "$IMG" "$LBL"
printf '\000\000\010\003\000\000\000\100short' > "$T/corrupt.idx3-ubyte"
expect_error "corrupt IDX" "$T/corrupt.idx3-ubyte" \
  sh "$P/build-gallery.sh" "$T/model.safetensors" "$T/g2.safetensors" "$T/corrupt.idx3-ubyte"
expect_error "unreadable IDX" "$T/missing.idx3-ubyte" \
  sh "$P/build-gallery.sh" "$T/model.safetensors" "$T/g2.safetensors" "$T/missing.idx3-ubyte"
[ -e "$T/g2.safetensors" ] && fail "partial gallery after bad input"
expect_error "missing gallery" "$T/nogallery.safetensors" \
  sh "$P/search-noisy-digits.sh" "$T/model.safetensors" "$T/nogallery.safetensors" "$IMG" "$LBL" 3
expect_error "corrupt gallery" "$T/corrupt.safetensors" \
  sh "$P/search-noisy-digits.sh" "$T/model.safetensors" "$T/corrupt.safetensors" "$IMG" "$LBL" 3
expect_error "model/gallery mismatch" "fingerprint" \
  sh "$P/search-noisy-digits.sh" "$T/other.safetensors" "$T/gallery.safetensors" "$IMG" "$LBL" 3
expect_error "wrong caps" "cbirencode" \
  "$GST_LAUNCH" videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=28,height=28 ! \
  cbirencode model="$T/model.safetensors" ! fakesink
ls "$T" | grep -q '\.tmp' && fail "temporary file left: $(ls "$T")"
echo "ok: all pipelines"

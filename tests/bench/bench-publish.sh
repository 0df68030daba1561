#!/usr/bin/env bash
# What publishing costs (issue 13), in two parts measured in one run:
#
# 1. The whole pipeline's CPU per frame at RATE frames/s (default 1000):
#      cbiridxsrc framerate=RATE ! cbirencode ! cbirsearch rerank=none
#        post-messages=false ! clocksync ! fakesink
#    on the MNIST query digits; rerank=none is the fastest search, the one
#    where what publishing adds shows most (the default diffusion search
#    does about 300 frames/s on 2 cores). Median of REPS runs.
# 2. tests/bench/bench-publish-cost: the CPU per result of cbirpublish
#    itself, fed the same pipeline's real results at RATE results/s (so
#    that results batch as they would), above a fakesink:
#      file        location=/dev/null (the JSON alone)
#      mqtt-qos1   a mosquitto started here (the default QoS 1, linger 5 ms)
#      mqtt-l0     the same, linger=0 (each result sent at once)
#      mqtt-qos0   QoS 0
#      mqtt-down   broker down (a closed port)
#      kafka-mock  librdkafka's mock cluster, in-process
#      kafka-down  broker down (a closed port)
#    printed as us per result, as a share of one CPU at RATE results/s
#    and as a share of the pipeline's CPU per frame (part 1).
# The CPU is the whole process's (user + system, the brokers' client
# threads included); mosquitto's own is not counted. With taskset and 2 or
# more CPUs, the benchmark runs on CPU 0 and mosquitto on CPU 1: on a
# shared 2-core machine a broker beside the pipeline otherwise moves the
# figures by more than they are.
#
# usage: bash tests/bench/bench-publish.sh [MODEL [GALLERY]]
#   MODEL    default out/default.safetensors (bash scripts/main.sh makes it)
#   GALLERY  default out/gallery-mnist.safetensors
# Environment: FRAMES (default 5000), REPS (default 5), RATE (default 1000),
# CBIR_BUILD (build/), OUT (default out/bench-publish).
set -euo pipefail
CBIR_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$CBIR_ROOT/pipelines/common.sh"

MODEL=${1:-$ROOT/out/default.safetensors}
GALLERY=${2:-$ROOT/out/gallery-mnist.safetensors}
FRAMES=${FRAMES:-5000}
REPS=${REPS:-5}
RATE=${RATE:-1000}
OUT=${OUT:-$ROOT/out/bench-publish}
IMAGES=$DATA/mnist/query-images.idx3-ubyte
for f in "$MODEL" "$GALLERY" "$IMAGES"; do
  [ -f "$f" ] || { echo "bench-publish: $f not found (bash scripts/main.sh makes it)" >&2; exit 1; }
done
PIN=() PIN_BROKER=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN=(taskset -c 0) PIN_BROKER=(taskset -c 1)
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || { echo "bench-publish: mosquitto not found (bash scripts/setup.sh)" >&2; exit 1; }
ninja -C "$BUILD" >/dev/null
COST=$BUILD/tests/bench/bench-publish-cost
[ -x "$COST" ] || { echo "bench-publish: $COST not built (meson -Dbenchmarks=true)" >&2; exit 1; }
mkdir -p "$OUT"
. "$CBIR_ROOT/tests/bench/bench-common.sh"

free_port () {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
DOWN=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" > "$OUT/mosquitto.conf"
"${PIN_BROKER[@]}" "$MOSQUITTO" -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
sleep 0.5

echo "== the pipeline at $RATE frames/s (rerank=none, $FRAMES frames, median of $REPS)"
pipe="cbiridxsrc images=$IMAGES loop=true num-buffers=$FRAMES framerate=$RATE/1 ! cbirencode model=$MODEL ! cbirsearch gallery=$GALLERY post-messages=false rerank=none ! clocksync ! fakesink sync=false"
runs=""
for _ in $(seq "$REPS"); do
  # shellcheck disable=SC2086
  runs+="$(time_once "${PIN[@]}" gst-launch-1.0 -q $pipe)"$'\n'
done
read -r w c < <(printf '%s' "$runs" | medians)
PIPELINE_US=$(awk -v c="$c" -v n="$FRAMES" 'BEGIN { printf "%.1f", 1e6 * c / n }')
awk -v w="$w" -v n="$FRAMES" -v us="$PIPELINE_US" 'BEGIN {
  printf "%.1f frames/s, CPU %s us per frame\n", n / w, us }'

echo "== what cbirpublish adds per result, at $RATE results/s (median of $REPS)"
FRAMES=$FRAMES REPS=$REPS RATE=$RATE PIPELINE_US=$PIPELINE_US \
  "${PIN[@]}" "$COST" "$MODEL" "$GALLERY" "$IMAGES" \
  "ref=fakesink sync=false" \
  "file=cbirpublish location=/dev/null" \
  "mqtt-qos1=cbirpublish method=mqtt address=127.0.0.1:$PORT" \
  "mqtt-l0=cbirpublish method=mqtt address=127.0.0.1:$PORT linger=0" \
  "mqtt-qos0=cbirpublish method=mqtt address=127.0.0.1:$PORT qos=0" \
  "mqtt-down=cbirpublish method=mqtt address=127.0.0.1:$DOWN flush-timeout=0" \
  "kafka-mock=cbirpublish method=kafka kafka-config=test.mock.num.brokers=1" \
  "kafka-down=cbirpublish method=kafka address=127.0.0.1:$DOWN flush-timeout=0"

#!/usr/bin/env bash
# What publishing costs (issue 13): frames/s and CPU time per frame of
#   cbiridxsrc ! cbirencode ! cbirsearch post-messages=false ! SINK
# on the MNIST query digits, with SINK
#   fakesink                         (the reference: nothing published)
#   cbirpublish location=/dev/null   (the JSON alone)
#   cbirpublish method=mqtt          qos 1 and 0, to a mosquitto started here
#   cbirpublish method=mqtt          broker down (a closed port)
#   cbirpublish method=kafka         librdkafka's mock cluster, in-process
#   cbirpublish method=kafka         broker down (a closed port)
# "CPU +%" is the CPU per frame the publisher adds to the reference,
# measured in the same run; each pipeline runs REPS times, alternating, and
# the medians are printed. The CPU is the whole process's (gst-launch's),
# broker threads included; mosquitto's own CPU is not counted.
#
# usage: bash tests/bench/bench-publish.sh [MODEL [GALLERY]]
#   MODEL    default out/default.safetensors (bash scripts/main.sh makes it)
#   GALLERY  default out/gallery-mnist.safetensors
# Environment: FRAMES (default 3000), REPS (default 3), RERANK (cbirsearch
# rerank, default none: the plain search, the fastest pipeline, so that
# what publishing adds shows most), CBIR_BUILD (build/),
# OUT (default out/bench-publish).
set -euo pipefail
CBIR_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$CBIR_ROOT/pipelines/common.sh"

MODEL=${1:-$ROOT/out/default.safetensors}
GALLERY=${2:-$ROOT/out/gallery-mnist.safetensors}
FRAMES=${FRAMES:-3000}
REPS=${REPS:-3}
RERANK=${RERANK:-none}
OUT=${OUT:-$ROOT/out/bench-publish}
IMAGES=$DATA/mnist/query-images.idx3-ubyte
for f in "$MODEL" "$GALLERY" "$IMAGES"; do
  [ -f "$f" ] || { echo "bench-publish: $f not found (bash scripts/main.sh makes it)" >&2; exit 1; }
done
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || { echo "bench-publish: mosquitto not found (bash scripts/setup.sh)" >&2; exit 1; }
ninja -C "$BUILD" >/dev/null
mkdir -p "$OUT"
. "$CBIR_ROOT/tests/bench/bench-common.sh"

free_port () {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
DOWN=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" > "$OUT/mosquitto.conf"
"$MOSQUITTO" -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
sleep 0.5

src="cbiridxsrc images=$IMAGES loop=true num-buffers=$FRAMES ! cbirencode model=$MODEL ! cbirsearch gallery=$GALLERY post-messages=false rerank=$RERANK"
names=(fakesink file mqtt-qos1 mqtt-qos0 mqtt-down kafka-mock kafka-down)
sinks=(
  "fakesink sync=false"
  "cbirpublish location=/dev/null"
  "cbirpublish method=mqtt address=127.0.0.1:$PORT qos=1"
  "cbirpublish method=mqtt address=127.0.0.1:$PORT qos=0"
  "cbirpublish method=mqtt address=127.0.0.1:$DOWN flush-timeout=0"
  "cbirpublish method=kafka kafka-config=test.mock.num.brokers=1"
  "cbirpublish method=kafka address=127.0.0.1:$DOWN flush-timeout=0"
)
declare -A runs
for _ in $(seq "$REPS"); do
  for i in "${!names[@]}"; do
    # shellcheck disable=SC2086
    runs[$i]+="$(time_once gst-launch-1.0 -q $src ! ${sinks[$i]})"$'\n'
  done
done

printf '%-11s %9s %13s %8s\n' sink frames/s "CPU ms/frame" "CPU +%"
read -r bw bc < <(printf '%s' "${runs[0]}" | medians)
for i in "${!names[@]}"; do
  read -r w c < <(printf '%s' "${runs[$i]}" | medians)
  awk -v s="${names[$i]}" -v n="$FRAMES" -v w="$w" -v c="$c" -v bc="$bc" -v i="$i" 'BEGIN {
    if (i == 0) printf "%-11s %9.1f %13.3f %8s\n", s, n / w, 1000 * c / n, "";
    else printf "%-11s %9.1f %13.3f %+7.1f%%\n", s, n / w, 1000 * c / n, 100 * (c - bc) / bc }'
done

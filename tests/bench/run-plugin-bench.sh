#!/usr/bin/env bash
# One command for the plugin benchmark (issue 4): builds bench-plugin and the
# plugin, gets the data if missing, then runs bench-plugin, which writes an
# untrained default-preset model and builds the 60k Fashion-MNIST gallery
# with the plugin (cbiridxsrc ! cbirencode ! cbirindex) on first run (kept in
# BUILD_DIR/tests/bench/plugin-bench-cache), and times
# cbiridxsrc ! cbirencode ! cbirsearch ! fakesink against the bare engine.
# usage: bash tests/bench/run-plugin-bench.sh [BUILD_DIR] [bench-plugin options]
#   e.g. ... build --reps 5 --model trained.safetensors   (see --help)
# BUILD_DIR defaults to $BUILD_DIR or "build"; it is set up when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then BUILD_DIR=$1; shift; fi
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac

[ -f "$BUILD_DIR/build.ninja" ] || meson setup "$BUILD_DIR" "$ROOT"
ninja -C "$BUILD_DIR" tests/bench/bench-plugin gst/libgstcbir.so >/dev/null
[ -e "$ROOT/data/fashion/t10k-images-idx3-ubyte.gz" ] \
  || bash "$ROOT/scripts/get-data.sh" "$BUILD_DIR"

PLUGINS=$(pkg-config --variable=pluginsdir gstreamer-1.0)
SCANNER=$(pkg-config --variable=pluginscannerdir gstreamer-1.0)/gst-plugin-scanner
CACHE=$BUILD_DIR/tests/bench/plugin-bench-cache
mkdir -p "$CACHE"
# own registry; the build's plugin + the system plugins, no user scan
export GST_PLUGIN_SYSTEM_PATH_1_0=
export GST_PLUGIN_PATH_1_0=$BUILD_DIR/gst:$PLUGINS
export GST_REGISTRY=$CACHE/registry.bin
export GST_PLUGIN_SCANNER_1_0=$SCANNER
exec "$BUILD_DIR/tests/bench/bench-plugin" --cache-dir "$CACHE" "$@"

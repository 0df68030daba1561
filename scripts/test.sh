#!/usr/bin/env bash
# The whole test suite, from a fresh clone on Debian 12 (run as root):
#   bash scripts/test.sh
# Installs what is missing, builds, runs every test (engine, elements,
# pipelines, fuzz-corpus replays), then the engine tests again under
# AddressSanitizer + UBSan and in a clang build, the ORC kernels on their C
# backup path, and each file-reader fuzz harness under libFuzzer for a few
# thousand runs. (ThreadSanitizer and valgrind: scripts/sanitize.sh.)
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

# clang too (users build with either): everything, warnings as errors, and
# the engine tests on what clang made (its own vector shuffles, no clones)
echo "== build with clang (build-clang/)"
[ -f build-clang/build.ninja ] || CC=clang meson setup build-clang -Dwerror=true
meson compile -C build-clang
meson test -C build-clang --suite engine --print-errorlogs --num-processes "$jobs"

# --- fuzz harnesses (tests/fuzz): a short libFuzzer run of each, from its
# committed corpus (their corpus replays already ran above, in both builds).
# Needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev, both in
# scripts/setup.sh); skipped without. Longer runs: scripts/fuzz.sh NAME|all SECONDS.
testlogs=(build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
          build-clang/meson-logs/testlog.json)
if command -v clang >/dev/null 2>&1 && printf '%s\n' \
    'int LLVMFuzzerTestOneInput (const char *d, unsigned long n) { return 0; }' \
    | clang -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1; then
  echo "== fuzz harnesses under libFuzzer (build-fuzz/, clang)"
  [ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzzing=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Dplugin=disabled -Dbenchmarks=false
  meson compile -C build-fuzz
  meson test -C build-fuzz --suite fuzz --print-errorlogs --num-processes "$jobs"
  testlogs+=(build-fuzz/meson-logs/testlog.json)
else
  echo "== fuzz harnesses under libFuzzer: skipped (no clang with libFuzzer)"
fi
# --- end fuzz harnesses

# one closing line for CI: every test of all runs
/usr/bin/python3 - "${testlogs[@]}" <<'PY'
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

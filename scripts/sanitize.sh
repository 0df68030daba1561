#!/usr/bin/env bash
# The sanitizer runs beyond the AddressSanitizer one of scripts/test.sh:
#
#   bash scripts/sanitize.sh tsan       ThreadSanitizer: engine and element
#                                       tests (the stress tests included)
#   bash scripts/sanitize.sh valgrind   valgrind memcheck on the element
#                                       tests: no error and no definite leak
#                                       from our code
#   bash scripts/sanitize.sh all        both
#
# Each builds its own directory (build-tsan/, build-valgrind/) and exits
# non-zero on any report. See the README ("Sanitizers") for what they cover
# and why the TSan run needs tests/tsan/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/setup.sh

# the element tests (GstCheck programs; the script and Python tests would
# put sh and python under the tools, not our code)
GST_C_TESTS=(gst-idxsrc gst-noise gst-encode gst-search gst-index gst-metas gst-publish
             gst-stress gst-overlay)

run_tsan () {
  echo "== ThreadSanitizer (build-tsan/)"
  [ -f build-tsan/build.ninja ] || meson setup build-tsan \
    -Db_sanitize=thread -Db_lundef=false -Dbenchmarks=false
  meson compile -C build-tsan
  # - setarch -R: TSan's shadow memory layout needs the address space
  #   without randomisation on kernels with many mmap random bits
  # - GST_REGISTRY_FORK=no: the plugin scanner is not instrumented and
  #   cannot load an instrumented plugin
  # - tests/tsan/tsan.supp: only accesses made by Debian's uninstrumented
  #   GLib/GStreamer; tests/tsan/glib-locks.c makes their locks visible
  # - G_SLICE=always-malloc: GSlice's magazines move memory between
  #   threads unseen; with malloc TSan sees each block's new life
  local opts="suppressions=$root/tests/tsan/tsan.supp"
  opts+=" ignore_noninstrumented_modules=1 halt_on_error=1"
  opts+=" second_deadlock_stack=1"
  G_SLICE=always-malloc GST_REGISTRY_FORK=no TSAN_OPTIONS="$opts" \
    meson test -C build-tsan --suite engine --wrap='setarch -R' \
    --print-errorlogs --num-processes "$(nproc)" --timeout-multiplier 4
  G_SLICE=always-malloc GST_REGISTRY_FORK=no TSAN_OPTIONS="$opts" \
    meson test -C build-tsan "${GST_C_TESTS[@]}" --wrap='setarch -R' \
    --print-errorlogs --num-processes "$(nproc)" --timeout-multiplier 4
}

run_valgrind () {
  echo "== valgrind memcheck (build-valgrind/)"
  [ -f build-valgrind/build.ninja ] || meson setup build-valgrind \
    -Dbenchmarks=false
  meson compile -C build-valgrind
  local out=build-valgrind/memcheck
  rm -rf "$out"
  mkdir -p "$out"
  # one XML file per process (check forks one per test)
  local rc=0
  G_SLICE=always-malloc GST_REGISTRY_FORK=no CK_TIMEOUT_MULTIPLIER=20 \
    meson test -C build-valgrind "${GST_C_TESTS[@]}" --print-errorlogs \
    --num-processes "$(nproc)" --timeout-multiplier 20 \
    --wrap="valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=40 --suppressions=/usr/share/glib-2.0/valgrind/glib.supp --xml=yes --xml-file=$root/$out/%p.xml" \
    || rc=1
  /usr/bin/python3 tests/valgrind/memcheck-report.py "$root" \
    "$root/build-valgrind" "$out"/*.xml || rc=1
  return $rc
}

case "${1:-all}" in
  tsan) run_tsan ;;
  valgrind) run_valgrind ;;
  all) run_tsan; run_valgrind ;;
  *) echo "usage: $0 tsan|valgrind|all" >&2; exit 2 ;;
esac

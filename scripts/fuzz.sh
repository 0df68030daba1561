#!/usr/bin/env bash
# Fuzzes the engine's file readers (tests/fuzz) with libFuzzer for as long
# as asked:
#   bash scripts/fuzz.sh [--minimise] [--merge-seeds] NAME|all SECONDS
# NAME: idx, safetensors, model, gallery, arch, journal (all: each in turn, SECONDS
# each; never two fuzzers at once).
#
# Configures build-fuzz/ (clang, -Dfuzzing=true, ASan + UBSan) when it is
# not there, builds it, then runs each harness from its working corpus
# build-fuzz/corpus-work/NAME/ (seeded from tests/fuzz/corpus/NAME/ and kept
# between runs, so that later runs go on from where earlier ones stopped).
# Crashes, leaks, timeouts and out-of-memory inputs are written to
# build-fuzz/findings/NAME/ (replay one: build-fuzz/tests/fuzz/replay-NAME
# FILE, or the fuzzer itself with the file as its argument); the full
# libFuzzer log is build-fuzz/fuzz-logs/NAME.log; tests/fuzz/NAME.dict is
# passed as the dictionary. Prints, per harness, the executions, executions
# per second and the final coverage (cov: edges, ft: features) and exits
# non-zero when anything was found.
#   --minimise     afterwards, shrink the working corpus to the inputs that
#                  keep its coverage (libFuzzer -merge=1)
#   --merge-seeds  afterwards, add to the committed seeds only the working
#                  inputs that add coverage (review the size before
#                  committing; tests/fuzz/make-corpus.sh remakes the base)
# Environment: JOBS (build parallelism, default nproc), FUZZ_ARGS (more
# libFuzzer flags, e.g. "-max_len=65536 -dict=..."), CC (default clang).
set -euo pipefail
cd "$(dirname "$0")/.."

all_names=(idx safetensors model gallery arch journal)
minimise=0
merge_seeds=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minimise|--minimize) minimise=1; shift ;;
    --merge-seeds) merge_seeds=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -ne 2 ]; then
  echo "usage: $0 [--minimise] [--merge-seeds] NAME|all SECONDS (NAME: ${all_names[*]})" >&2
  exit 2
fi
what=$1 seconds=$2
case "$seconds" in
  ''|*[!0-9]*) echo "SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac
if [ "$what" = all ]; then
  names=("${all_names[@]}")
else
  case " ${all_names[*]} " in
    *" $what "*) names=("$what") ;;
    *) echo "unknown harness '$what' (${all_names[*]} or all)" >&2; exit 2 ;;
  esac
fi

build=build-fuzz
if [ ! -f "$build/build.ninja" ]; then
  echo "== configure $build/ (clang, -Dfuzzing=true, ASan + UBSan)"
  CC=${CC:-clang} meson setup "$build" -Dfuzzing=true \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dplugin=disabled -Dbenchmarks=false
fi
echo "== build $build/"
targets=()
for n in "${names[@]}"; do
  targets+=("tests/fuzz/fuzz-$n" "tests/fuzz/replay-$n")
done
if ! ninja -C "$build" -j "${JOBS:-$(nproc)}" "${targets[@]}"; then
  echo "build failed (is $build/ configured with -Dfuzzing=true and clang? " \
    "remove it to start afresh)" >&2
  exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}
export CBIR_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$build/fuzz-logs"

summary=()
found_any=0
for n in "${names[@]}"; do
  fuzzer=$build/tests/fuzz/fuzz-$n
  work=$build/corpus-work/$n
  findings=$build/findings/$n
  log=$build/fuzz-logs/$n.log
  mkdir -p "$work" "$findings"
  if [ -z "$(ls -A "$work")" ]; then
    cp tests/fuzz/corpus/"$n"/* "$work/"
  fi
  before=$(ls "$findings" | wc -l)
  echo "== fuzz $n for ${seconds}s (corpus $work, findings $findings)"
  dict=()
  [ ! -f tests/fuzz/$n.dict ] || dict=(-dict=tests/fuzz/$n.dict)
  rc=0
  # shellcheck disable=SC2086
  "$fuzzer" "${dict[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$findings/" ${FUZZ_ARGS:-} "$work" \
    tests/fuzz/corpus/"$n" >"$log" 2>&1 || rc=$?
  after=$(ls "$findings" | wc -l)
  new=$((after - before))
  # the last status line (#N DONE/pulse/NEW ... cov: C ft: F corp: ...)
  last=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
  status=ok
  if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
    status="FOUND (exit $rc, $new new in $findings)"
    found_any=1
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|fuzz harness|.*out-of-memory|.*timeout|artifact_prefix|Test unit written)' \
      "$log" | head -n 8 | sed 's/^/   /'
  fi
  line=$(printf '%-12s %8s %10s %8s %7s %7s %12s %6s  %s' "$n" "${seconds}s" \
    "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" \
    "$status")
  echo "$line"
  summary+=("$line")

  if [ "$minimise" = 1 ]; then
    echo "   minimise $work"
    tmp=$(mktemp -d "$build/corpus-work/.min-$n.XXXXXX")
    if "$fuzzer" -merge=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -timeout=20 "$tmp" "$work" >>"$log" 2>&1; then
      rm -rf "$work" && mv "$tmp" "$work"
      echo "   $(ls "$work" | wc -l) inputs left"
    else
      rm -rf "$tmp"
      echo "   minimising failed (see $log)"
    fi
  fi
  if [ "$merge_seeds" = 1 ]; then
    b=$(du -sb tests/fuzz/corpus/"$n" | cut -f1)
    "$fuzzer" -merge=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=20 \
      tests/fuzz/corpus/"$n" "$work" >>"$log" 2>&1 || true
    a=$(du -sb tests/fuzz/corpus/"$n" | cut -f1)
    echo "   merged into tests/fuzz/corpus/$n: $b -> $a bytes"
  fi
done

echo
printf '%-12s %8s %10s %8s %7s %7s %12s %6s  %s\n' harness time execs \
  'exec/s' cov ft corpus 'rss MB' result
printf '%s\n' "${summary[@]}"
exit "$found_any"

#!/bin/sh
# One short libFuzzer run of a harness from its committed corpus (the test
# fuzz-NAME of a -Dfuzzing=true build):
#   run-fuzzer.sh FUZZER CORPUS-DIR RUNS MAX-SECONDS FINDINGS-DIR [DICT]
# New inputs go to a temporary directory (libFuzzer writes to the first
# corpus directory only), so the committed corpus is never modified; a
# crash, leak, timeout or out-of-memory input is written to FINDINGS-DIR and
# fails the test.
set -eu
fuzzer=$1 corpus=$2 runs=$3 max_time=$4 findings=$5 dict=${6:-}
[ -d "$corpus" ] || { echo "no corpus directory $corpus" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/cbir-fuzz-test.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$findings"
: "${ASAN_OPTIONS:=abort_on_error=1}"
: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS UBSAN_OPTIONS
set --
[ -z "$dict" ] || set -- -dict="$dict"
rc=0
"$fuzzer" "$@" -runs="$runs" -max_total_time="$max_time" -seed=1 \
  -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=20 \
  -print_final_stats=1 -artifact_prefix="$findings/" "$work" "$corpus" || rc=$?
exit $rc

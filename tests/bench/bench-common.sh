# Helpers of the shell benchmarks (sourced; OUT must be set).

# runs one command; prints "wall cpu" (seconds, cpu = user + system of the
# command and its children); a failure prints its error and exits
time_once () {
  local t
  t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>"$OUT/last.err"; } 2>&1 ) \
    || { echo "$(basename "$0"): failed: $*" >&2; cat "$OUT/last.err" >&2; exit 1; }
  echo "$t" | awk '{ print $1, $2 + $3 }'
}

# lines of "wall cpu" in; their medians out
medians () {
  local lines
  lines=$(cat)
  median () { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  echo "$(echo "$lines" | cut -d' ' -f1 | median) $(echo "$lines" | cut -d' ' -f2 | median)"
}

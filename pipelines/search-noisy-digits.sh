#!/bin/sh
# Search a stream of noisy digits in a gallery and print the results
# (the "cbir-result" element messages of gst-launch-1.0 -m), then the
# share of frames whose voted label is the true one.
#   cbiridxsrc ! cbirnoise ! cbirencode ! cbirsearch ! fakesink
# usage: pipelines/search-noisy-digits.sh MODEL GALLERY [IMAGES [LABELS [COUNT]]]
#   IMAGES/LABELS  query set (default data/mnist/query-*.idx?-ubyte)
#   COUNT          frames (default 20; -1 = all)
# Env: NOISE (gaussian|salt-and-pepper, default gaussian), LEVEL (0.3),
#   GAMMA (0.5: noise in the default model's input space, as it was trained;
#   1: in pixels), SEED (1), K (5), GST_LAUNCH.
set -eu
. "$(dirname "$0")/common.sh"
need_args 2 $#
MODEL=$1
GALLERY=$2
IMAGES=${3:-$DATA/mnist/query-images.idx3-ubyte}
LABELS=${4:-$DATA/mnist/query-labels.idx1-ubyte}
COUNT=${5:-20}

out=$(mktemp); trap 'rm -f "$out"' EXIT
rc=0
$GST_LAUNCH -m \
  cbiridxsrc images="$IMAGES" labels="$LABELS" count="$COUNT" ! \
  cbirnoise kind="${NOISE:-gaussian}" level="${LEVEL:-0.3}" \
    gamma="${GAMMA:-0.5}" seed="${SEED:-1}" ! \
  cbirencode model="$MODEL" ! \
  cbirsearch gallery="$GALLERY" k="${K:-5}" ! \
  fakesink > "$out" || rc=$?
# errors went to stderr; print the results, one line per frame
grep '^Got message .*cbir-result' "$out" | sed 's/^Got message #[0-9]* from element "cbirsearch0" (element): //' |
  awk '{ print }
       /^cbir-result/ { n++;
         match($0, / label=\(int\)-?[0-9]+/); l = substr($0, RSTART + 12, RLENGTH - 12);
         match($0, /source-label=\(int\)-?[0-9]+/); s = substr($0, RSTART + 18, RLENGTH - 18);
         match($0, /confidence=\(double\)[0-9.e+-]+/); c = substr($0, RSTART + 19, RLENGTH - 19) + 0;
         if (l == s) { ok++; cr += c } else if (l == -1) { nm++ } else { bad++; cw += c } }
       END { if (n) printf "frames: %d, voted label = true label: %d (%.1f%%), no match: %d (%.1f%%), wrong: %d; mean confidence %.2f when right, %.2f when wrong\n",
                           n, ok, 100 * ok / n, nm, 100 * nm / n, bad, (ok ? cr / ok : 0), (bad ? cw / bad : 0);
             else { print "no results" } }'
exit $rc

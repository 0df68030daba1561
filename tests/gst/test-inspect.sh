#!/bin/sh
# gst-inspect smoke test: the plugin loads and lists every element, each
# element inspects cleanly. Env from tests/gst/meson.build.
set -eu
inspect="${GST_TOOLS_DIR:-/usr/bin}/gst-inspect-1.0"
out=$("$inspect" "$CBIR_GST_PLUGIN")
# (--exists alone compares with the GStreamer version; our plugin is 0.x)
for e in cbiridxsrc cbirnoise cbirencode cbirsearch cbirindex cbirpublish; do
  echo "$out" | grep -q "^  $e: " || { echo "FAIL: $e not listed"; echo "$out"; exit 1; }
  "$inspect" --exists --atleast-version=0.1.0 "$e" || { echo "FAIL: --exists $e"; exit 1; }
  "$inspect" "$e" > /dev/null || { echo "FAIL: inspect $e"; exit 1; }
done
# every element the plugin lists (others may be optional, e.g. cairo's
# cbiroverlay) inspects cleanly
for e in $(echo "$out" | sed -n 's/^  \(cbir[a-z0-9]*\): .*/\1/p'); do
  "$inspect" "$e" > /dev/null || { echo "FAIL: inspect $e"; exit 1; }
done
# every property has a blurb and a documented default/range
"$inspect" cbirsearch | grep -q 'Range: 1 - 1024 Default: 5' || { echo "FAIL: k range"; exit 1; }
"$inspect" cbirnoise | grep -q '(2): salt-and-pepper' || { echo "FAIL: noise kind enum"; exit 1; }
"$inspect" cbirencode | grep -q 'changeable only in NULL or READY state' || { echo "FAIL: model flags"; exit 1; }
echo "ok: $(echo "$out" | grep -c "^  cbir[a-z0-9]*: ") elements"

#!/bin/sh
# Regenerate the committed ORC fallbacks src/<name>-dist.[ch] from
# src/<name>.orc with orcc. Run after editing a .orc file (also available as
# `ninja -C <builddir> update-orc-dist`), then commit the -dist files.
# The -dist .c includes config.h unconditionally, so a build without ORC
# (DISABLE_ORC in config.h) compiles its plain C branch.
set -eu
srcdir=$(cd "$(dirname "$0")/../src" && pwd)
ORCC=${ORCC:-orcc}
command -v "$ORCC" >/dev/null 2>&1 || { echo "update-orc-dist: orcc not found" >&2; exit 1; }
for orc in "$srcdir"/*.orc; do
  name=$(basename "$orc" .orc)
  tmp_c=$(mktemp "$srcdir/.$name-dist.c.XXXXXX")
  tmp_h=$(mktemp "$srcdir/.$name-dist.h.XXXXXX")
  trap 'rm -f "$tmp_c" "$tmp_h"' EXIT
  (cd "$srcdir" && "$ORCC" --include glib.h --implementation -o "$tmp_c" "$name.orc")
  (cd "$srcdir" && "$ORCC" --include glib.h --header -o "$tmp_h" "$name.orc")
  # Generated code guards config.h with HAVE_CONFIG_H, which this project
  # does not define: include it unconditionally so DISABLE_ORC is seen.
  sed -i -e '/^#ifdef HAVE_CONFIG_H$/{N;N;s/^#ifdef HAVE_CONFIG_H\n\(#include "config.h"\)\n#endif$/\1/}' "$tmp_c"
  mv "$tmp_c" "$srcdir/$name-dist.c"
  mv "$tmp_h" "$srcdir/$name-dist.h"
  trap - EXIT
  echo "update-orc-dist: wrote src/$name-dist.c src/$name-dist.h"
done

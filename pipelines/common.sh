# Sourced by the pipelines/ scripts, so that they work from any directory:
# ROOT is the repository, BUILD the build (CBIR_BUILD, default ROOT/build),
# DATA the data sets (CBIR_DATA, default ROOT/data, as scripts/get-data.sh
# writes them). With neither GST_PLUGIN_PATH nor GST_PLUGIN_PATH_1_0 set,
# the plugin is taken from BUILD/gst. A script outside pipelines/ sets
# CBIR_ROOT before sourcing this.
ROOT=${CBIR_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${CBIR_BUILD:-$ROOT/build}
DATA=${CBIR_DATA:-$ROOT/data}
if [ -z "${GST_PLUGIN_PATH:-}${GST_PLUGIN_PATH_1_0:-}" ] && [ -d "$BUILD/gst" ]; then
  GST_PLUGIN_PATH=$BUILD/gst
  export GST_PLUGIN_PATH
fi

# The tools the scripts run, each overridable from the environment.
GST_LAUNCH=${GST_LAUNCH:-gst-launch-1.0}
SIMCAM=${CBIR_SIMCAM:-$BUILD/src/tools/cbir-simcam}
GLYPHS=${CBIR_GLYPHS:-$BUILD/src/tools/cbir-glyphs}
TAG=${CBIR_TAG:-$BUILD/gst/cbir-tag}

# gallery_glyphs DIR: what camera-gallery.sh indexes besides MNIST, drawn
# by cbir-glyphs into DIR: printed digits in the gallery fonts (digits-*,
# labels 0-9), the letters in them (letters-*) and shapes (shapes-*), the
# last two shown to the gallery as examples of non-matches. open-set.sh
# reports on the other fonts and other shapes. Env: VARIANTS (printed
# digits per digit and font, 20), LETTERS (all 52 letters),
# LETTER_VARIANTS (3), SHAPES (per kind, 100).
GALLERY_FONTS="DejaVu Sans,DejaVu Serif,Liberation Sans,Liberation Serif,FreeMono,Nimbus Sans Narrow,URW Bookman,C059"
gallery_glyphs () {
  "$GLYPHS" --fonts "$GALLERY_FONTS" --variants "${VARIANTS:-20}" --seed 7 \
    --out "$1/digits" > /dev/null
  "$GLYPHS" --chars "${LETTERS:-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz}" \
    --fonts "$GALLERY_FONTS" --variants "${LETTER_VARIANTS:-3}" --seed 15 \
    --out "$1/letters" > /dev/null
  "$GLYPHS" --chars "" --shapes "${SHAPES:-100}" --seed 16 \
    --out "$1/shapes" > /dev/null
}

# camera_render DIR SET SEED [--keep-missed]: DIR/SET-images.idx3-ubyte
# (and its labels) shown to cbir-simcam one image a frame, in order, with
# camera seed SEED, as the camera path normalises them, into
# DIR/cam-SEED/SET-images.idx3-ubyte and -labels.idx1-ubyte (with
# --keep-missed one image per image shown: the few the camera path misses
# are kept as they are). Seeds may be drawn side by side.
camera_render () {
  _n=$(idx_count "$1/$2-labels.idx1-ubyte")
  mkdir -p "$1/cam-$3"
  "$SIMCAM" --images "$1/$2-images.idx3-ubyte" \
    --labels "$1/$2-labels.idx1-ubyte" --frames "$_n" --sequential \
    --seed "$3" --format idx ${4:-} --out-dir "$1/sim-$3-$2" > /dev/null
  mv "$1/sim-$3-$2/digits-images.idx3-ubyte" "$1/cam-$3/$2-images.idx3-ubyte"
  mv "$1/sim-$3-$2/digits-labels.idx1-ubyte" "$1/cam-$3/$2-labels.idx1-ubyte"
  rm -rf "$1/sim-$3-$2"
}

# idx_count LABELS: the number of labels in a raw (not gzip) IDX label
# file, from its length (8-byte header, one byte a label).
idx_count () {
  echo $(( $(wc -c < "$1") - 8 ))
}

# need_args MIN COUNT: with fewer than MIN arguments the script prints its
# header comment (its usage) and exits 2.
need_args () {
  if [ "$2" -lt "$1" ]; then
    awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2
  fi
}

# check_seeds SEED...: camera seeds (SEEDS, split by the caller with
# globbing off, so a '*' is reported as itself) are one or more whole
# numbers, none named twice; anything else prints why and exits 2.
check_seeds () {
  [ $# -gt 0 ] || { echo "SEEDS is empty: give one camera seed or more" >&2; exit 2; }
  _seen=
  for _seed in "$@"; do
    case $_seed in
      *[!0-9]*) echo "SEEDS must be camera seeds (whole numbers), not '$_seed'" >&2; exit 2 ;;
    esac
    case " $_seen " in
      *" $_seed "*) echo "SEEDS names $_seed twice" >&2; exit 2 ;;
    esac
    _seen="$_seen $_seed"
  done
}

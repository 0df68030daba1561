/* cbir-glyphs: renders characters in installed fonts (and, with --shapes,
 * non-character shapes: bars, blobs, grids, scribbles, noise) into an IDX
 * data set of 28x28 MNIST-style images plus labels. Each image is drawn
 * large (dark ink on light paper, about 120 px high) with cairo and then
 * normalised by the engine's cbir_preprocess_mnist, exactly as camera frames
 * are, so printed digits and non-digits can be shown to the simulated camera
 * (cbir-simcam --images PREFIX-images.idx3-ubyte --labels ...) or indexed
 * into galleries.
 *
 *   cbir-glyphs --chars 0123456789AB --fonts "DejaVu Sans,DejaVu Serif" \
 *       --variants 10 --shapes 20 --out out/glyphs
 *   cbir-simcam --images out/glyphs-images.idx3-ubyte \
 *       --labels out/glyphs-labels.idx1-ubyte --frames 50 --out-dir out/sim
 *
 * Labels: '0'..'9' get their digit value, any other character its code
 * point (< 255), shapes 255. Each (character, font) gets --variants seeded
 * variants (bold or not, italic or not, a small rotation, thicker strokes, a
 * slight horizontal scale); the same arguments give the same bytes. Both
 * files are written atomically (temp file + rename). */
#include "config.h"

#include <cbir/idx.h>
#include <cbir/preprocess.h>

#include <glib/gstdio.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HAVE_CAIRO
#error "cbir-glyphs needs cairo (src/tools/meson.build builds it only then)"
#endif
#include <cairo.h>
#include <fontconfig/fontconfig.h>

#define CBIR_TOOL_NAME "cbir-glyphs"
#include "tool-common.h"

#define GLYPH_EM 164.0          /* font size: digits are about 120 px high */
#define SHAPE_BOX 120.0         /* shapes are drawn in a box this big */
#define SHAPE_LABEL 255
#define MAX_IMAGES 1000000
#define MAX_VARIANTS 100000

static char *opt_chars, *opt_fonts, *opt_out;
static gint opt_variants = 10, opt_shapes = 0;
static gint64 opt_seed = 1;
static gdouble opt_max_rot = 8.0, opt_max_stroke = 6.0;
static gboolean opt_list_fonts;

/* --chars and --fonts are G_OPTION_ARG_FILENAME: the raw bytes, checked as
 * UTF-8 here, whatever the locale (a STRING is converted from the locale's
 * charset and fails on non-ASCII in the C locale). */
static GOptionEntry entries[] = {
  {"chars", 'c', 0, G_OPTION_ARG_FILENAME, &opt_chars,
      "Characters to render, UTF-8 (0123456789; \"\" for shapes only)",
      "CHARS"},
  {"fonts", 'f', 0, G_OPTION_ARG_FILENAME, &opt_fonts,
      "Installed font families, comma-separated (DejaVu Sans)", "LIST"},
  {"variants", 'n', 0, G_OPTION_ARG_INT, &opt_variants,
      "Images per character and font (10)", "N"},
  {"shapes", 0, 0, G_OPTION_ARG_INT, &opt_shapes,
      "Also K images of each shape kind (bars, blobs, grid, scribble, "
      "noise), label 255 (0)", "K"},
  {"seed", 's', 0, G_OPTION_ARG_INT64, &opt_seed, "Random seed (1)", "S"},
  {"max-rotation", 0, 0, G_OPTION_ARG_DOUBLE, &opt_max_rot,
      "Largest rotation in degrees, either way (8)", "DEG"},
  {"max-stroke", 0, 0, G_OPTION_ARG_DOUBLE, &opt_max_stroke,
      "Largest extra stroke width thickening the ink, in pixels (6)", "PX"},
  {"out", 'o', 0, G_OPTION_ARG_FILENAME, &opt_out,
      "Output prefix: writes PREFIX-images.idx3-ubyte and "
      "PREFIX-labels.idx1-ubyte", "PREFIX"},
  {"list-fonts", 0, 0, G_OPTION_ARG_NONE, &opt_list_fonts,
      "Print the installed font families and exit", NULL},
  {NULL}
};

/* bars, blobs, grid, scribble, noise (render_shape) */
#define N_SHAPE_KINDS 5

/* ---- fonts ---- */

/* fontconfig compares family names ignoring case and blanks */
static gboolean
family_equal (const char *a, const char *b)
{
  for (;;) {
    while (*a == ' ')
      a++;
    while (*b == ' ')
      b++;
    if (!*a || !*b)
      return !*a && !*b;
    if (g_ascii_tolower (*a) != g_ascii_tolower (*b))
      return FALSE;
    a++;
    b++;
  }
}

/* The font fontconfig (and so cairo's toy API) uses for family, or NULL
 * when the family is not installed (fontconfig would silently substitute
 * another one: its name goes to *fallback). */
static FcPattern *
font_match (const char *family, char **fallback)
{
  FcPattern *pat = FcPatternCreate ();
  FcPattern *match;
  FcResult res;
  FcChar8 *name;

  *fallback = NULL;
  FcPatternAddString (pat, FC_FAMILY, (const FcChar8 *) family);
  FcConfigSubstitute (NULL, pat, FcMatchPattern);
  FcDefaultSubstitute (pat);
  match = FcFontMatch (NULL, pat, &res);
  FcPatternDestroy (pat);
  if (!match)
    return NULL;
  for (int i = 0; FcPatternGetString (match, FC_FAMILY, i, &name) ==
      FcResultMatch; i++) {
    if (family_equal ((const char *) name, family))
      return match;
    if (i == 0)
      *fallback = g_strdup ((const char *) name);
  }
  FcPatternDestroy (match);
  return NULL;
}

static gint
cmp_strv (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static int
list_fonts (void)
{
  FcPattern *pat = FcPatternCreate ();
  FcObjectSet *os = FcObjectSetBuild (FC_FAMILY, NULL);
  FcFontSet *fs = FcFontList (NULL, pat, os);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *prev = NULL;

  FcObjectSetDestroy (os);
  FcPatternDestroy (pat);
  for (int f = 0; fs && f < fs->nfont; f++) {
    FcChar8 *name;
    for (int i = 0; FcPatternGetString (fs->fonts[f], FC_FAMILY, i, &name) ==
        FcResultMatch; i++)
      g_ptr_array_add (names, g_strdup ((const char *) name));
  }
  if (fs)
    FcFontSetDestroy (fs);
  g_ptr_array_sort (names, cmp_strv);
  for (guint i = 0; i < names->len; i++) {
    const char *n = g_ptr_array_index (names, i);
    if (!prev || strcmp (prev, n) != 0)
      printf ("%s\n", n);
    prev = n;
  }
  return fflush (stdout) == 0 ? 0 : fail ("cannot write the list");
}

/* ---- rendering ---- */

/* A fresh generator for one image: seeded by the seed and the image's
 * identity only, so an image does not depend on the other options (adding a
 * font or a character leaves the other images as they were). */
static GRand *
image_rand (guint32 what, guint32 a, guint32 b, guint32 c)
{
  guint64 s = (guint64) opt_seed;
  guint32 seed[6] = { (guint32) s, (guint32) (s >> 32), what, a, b, c };
  return g_rand_new_with_seed_array (seed, G_N_ELEMENTS (seed));
}

static guint32
str_hash32 (const char *s)
{
  guint32 h = 2166136261u;      /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (guint8) *s) * 16777619u;
  return h;
}

/* Renders the current path of scratch (built in device space) as dark ink
 * on light paper, centred in a square canvas three times the ink's size (so
 * that the preprocessing's background estimate sees paper around even a
 * solid shape), and normalises it into dst28. fill: fill the path;
 * line_width > 0: also stroke it (round joins and caps). FALSE when there
 * is no ink (blank rendering) or the canvas could not be made. The path of
 * scratch is consumed. */
static gboolean
ink_to_mnist (cairo_t *scratch, gboolean fill, double line_width,
    guint8 *dst28)
{
  double x0, y0, x1, y1, pad, size;
  cairo_path_t *path;
  cairo_surface_t *surf;
  cairo_t *cr;
  guint8 *data;
  int side, stride;
  gboolean ok;

  memset (dst28, 0, CBIR_MNIST_SIZE * CBIR_MNIST_SIZE);
  cairo_identity_matrix (scratch);
  cairo_path_extents (scratch, &x0, &y0, &x1, &y1);
  if (!(x1 > x0 || y1 > y0) || (!fill && line_width <= 0)) {
    cairo_new_path (scratch);
    return FALSE;
  }
  pad = MAX (line_width, 0) / 2 + 2;
  size = MAX (x1 - x0, y1 - y0) + 2 * pad;
  side = (int) CLAMP (ceil (3 * size), 64, 4096);
  path = cairo_copy_path (scratch);
  cairo_new_path (scratch);

  surf = cairo_image_surface_create (CAIRO_FORMAT_A8, side, side);
  cr = cairo_create (surf);
  cairo_translate (cr, side / 2.0 - (x0 + x1) / 2, side / 2.0 - (y0 + y1) / 2);
  cairo_append_path (cr, path);
  cairo_path_destroy (path);
  cairo_set_source_rgba (cr, 0, 0, 0, 1);
  if (fill)
    cairo_fill_preserve (cr);
  if (line_width > 0) {
    cairo_set_line_width (cr, line_width);
    cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);
    cairo_stroke (cr);
  }
  cairo_new_path (cr);
  ok = cairo_status (cr) == CAIRO_STATUS_SUCCESS;
  cairo_destroy (cr);
  if (!ok || cairo_surface_status (surf) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy (surf);
    return FALSE;
  }
  cairo_surface_flush (surf);
  data = cairo_image_surface_get_data (surf);
  stride = cairo_image_surface_get_stride (surf);
  /* coverage (alpha) -> grey: dark ink on white paper */
  for (int y = 0; y < side; y++) {
    guint8 *row = data + (gsize) y * stride;
    for (int x = 0; x < side; x++)
      row[x] = 255 - row[x];
  }
  ok = cbir_preprocess_mnist (data, side, side, stride, dst28, NULL);
  cairo_surface_destroy (surf);
  return ok;
}

static gboolean
render_glyph (cairo_t *scratch, const char *family, gunichar ch,
    guint32 font_id, guint variant, guint8 *dst28)
{
  g_autoptr (GRand) r = image_rand (1, ch, font_id, variant);
  char utf8[8];
  gboolean bold = g_rand_boolean (r);
  gboolean italic = g_rand_double (r) < 0.3;
  double rot = g_rand_double_range (r, -opt_max_rot, opt_max_rot);
  double stroke = g_rand_double_range (r, 0, opt_max_stroke);
  double hscale = g_rand_double_range (r, 0.85, 1.15);

  utf8[g_unichar_to_utf8 (ch, utf8)] = '\0';
  cairo_new_path (scratch);
  cairo_identity_matrix (scratch);
  cairo_select_font_face (scratch, family,
      italic ? CAIRO_FONT_SLANT_ITALIC : CAIRO_FONT_SLANT_NORMAL,
      bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (scratch, GLYPH_EM);
  cairo_rotate (scratch, rot * G_PI / 180);
  cairo_scale (scratch, hscale, 1.0);
  cairo_move_to (scratch, 0, 0);
  cairo_text_path (scratch, utf8);
  return ink_to_mnist (scratch, TRUE, stroke, dst28);
}

/* A rectangle (or ellipse) in a rotated frame centred at (cx, cy). */
static void
rotated_rect (cairo_t *cr, double cx, double cy, double angle, double x,
    double y, double w, double h)
{
  cairo_save (cr);
  cairo_translate (cr, cx, cy);
  cairo_rotate (cr, angle);
  cairo_rectangle (cr, x, y, w, h);
  cairo_restore (cr);
}

static gboolean
render_shape (cairo_t *scratch, guint kind, guint index, guint8 *dst28)
{
  g_autoptr (GRand) r = image_rand (2, kind, index, 0);
  const double B = SHAPE_BOX, c = B / 2;
  double extra = g_rand_double_range (r, 0, opt_max_stroke);
  double angle = g_rand_double_range (r, 0, G_PI);
  gboolean fill = TRUE;
  double lw = 0;

  cairo_new_path (scratch);
  cairo_identity_matrix (scratch);
  switch (kind) {
    case 0:{                   /* bars: 2-5 parallel thick bars */
      int n = g_rand_int_range (r, 2, 6);
      double t = g_rand_double_range (r, 8, 18);
      double gap = t * g_rand_double_range (r, 0.8, 2.0);
      double len = g_rand_double_range (r, 0.75, 1.1) * B;
      for (int i = 0; i < n; i++)
        rotated_rect (scratch, c, c, angle, -len / 2,
            (i - (n - 1) / 2.0) * (t + gap) - t / 2, len, t);
      break;
    }
    case 1:{                   /* blobs: 1-3 filled ellipses */
      int n = g_rand_int_range (r, 1, 4);
      for (int i = 0; i < n; i++) {
        double cx = c + g_rand_double_range (r, -0.3, 0.3) * B;
        double cy = c + g_rand_double_range (r, -0.3, 0.3) * B;
        double rx = g_rand_double_range (r, 0.12, 0.38) * B;
        double ry = g_rand_double_range (r, 0.12, 0.38) * B;
        cairo_save (scratch);
        cairo_translate (scratch, cx, cy);
        cairo_rotate (scratch, g_rand_double_range (r, 0, G_PI));
        cairo_scale (scratch, rx, ry);
        cairo_new_sub_path (scratch);
        cairo_arc (scratch, 0, 0, 1, 0, 2 * G_PI);
        cairo_close_path (scratch);
        cairo_restore (scratch);
      }
      break;
    }
    case 2:{                   /* grid: hatching or a checker board */
      int n = g_rand_int_range (r, 3, 7);
      double cell = B / n;
      if (g_rand_boolean (r)) {
        fill = FALSE;
        lw = g_rand_double_range (r, 5, 11);
        cairo_save (scratch);
        cairo_translate (scratch, c, c);
        cairo_rotate (scratch, angle);
        for (int i = 0; i <= n; i++) {
          double p = -c + i * cell;
          cairo_move_to (scratch, p, -c);
          cairo_line_to (scratch, p, c);
          cairo_move_to (scratch, -c, p);
          cairo_line_to (scratch, c, p);
        }
        cairo_restore (scratch);
      } else {
        for (int i = 0; i < n; i++)
          for (int j = 0; j < n; j++)
            if ((i + j) % 2 == 0)
              rotated_rect (scratch, c, c, angle, -c + i * cell,
                  -c + j * cell, cell, cell);
      }
      break;
    }
    case 3:{                   /* scribble: a thick polyline of 6-12 points */
      int n = g_rand_int_range (r, 6, 13);
      fill = FALSE;
      lw = g_rand_double_range (r, 8, 16);
      for (int i = 0; i < n; i++) {
        double x = g_rand_double_range (r, 0, B);
        double y = g_rand_double_range (r, 0, B);
        if (i == 0)
          cairo_move_to (scratch, x, y);
        else
          cairo_line_to (scratch, x, y);
      }
      break;
    }
    default:{                  /* noise: dense random ink specks */
      int n = g_rand_int_range (r, 150, 301);
      for (int i = 0; i < n; i++) {
        double x = g_rand_double_range (r, 0, B);
        double y = g_rand_double_range (r, 0, B);
        cairo_new_sub_path (scratch);
        cairo_arc (scratch, x, y, g_rand_double_range (r, 2.5, 6), 0,
            2 * G_PI);
        cairo_close_path (scratch);
      }
      extra /= 2;               /* keep the specks apart */
      break;
    }
  }
  return ink_to_mnist (scratch, fill, lw + extra, dst28);
}

/* ---- main ---- */

static gboolean
write_pair (const char *images_path, const char *labels_path, guint n,
    const guint8 *images, const guint8 *labels, GError **error)
{
  guint32 idims[3] = { n, CBIR_MNIST_SIZE, CBIR_MNIST_SIZE };
  guint32 ldims[1] = { n };

  if (!cbir_idx_write_u8 (images_path, 3, idims, images, error))
    return FALSE;
  if (!cbir_idx_write_u8 (labels_path, 1, ldims, labels, error)) {
    g_unlink (images_path);     /* no images without their labels */
    return FALSE;
  }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GOptionContext) ctx =
      g_option_context_new ("- render characters and shapes as an IDX data "
      "set of 28x28 MNIST-style images");
  g_autoptr (GArray) chars = g_array_new (FALSE, FALSE, sizeof (gunichar));
  g_autoptr (GPtrArray) fonts = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GByteArray) images = g_byte_array_new ();
  g_autoptr (GByteArray) labels = g_byte_array_new ();
  g_autofree char *images_path = NULL, *labels_path = NULL, *dir = NULL;
  const char *chars_arg;
  guint8 img[CBIR_MNIST_SIZE * CBIR_MNIST_SIZE];
  guint64 total;
  guint n_glyphs = 0, n_shapes = 0, skipped = 0;
  cairo_surface_t *scratch_surf;
  cairo_t *scratch;
  cairo_font_options_t *fo;

  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
      "Labels: '0'..'9' -> 0..9, any other character -> its code point "
      "(< 255), shapes -> 255.\n"
      "Renderings that normalise to nothing (a space...) are skipped and "
      "counted.\n"
      "Show the set to the simulated camera with:\n"
      "  cbir-simcam --images PREFIX-images.idx3-ubyte "
      "--labels PREFIX-labels.idx1-ubyte --out-dir DIR\n");
  if (!g_option_context_parse (ctx, &argc, &argv, &err))
    return fail ("%s (see --help)", err->message);
  if (argc > 1)
    return fail ("unexpected argument '%s' (see --help)", argv[1]);
  if (!FcInit ())
    return fail ("cannot initialise fontconfig");
  if (opt_list_fonts)
    return list_fonts ();

  if (!opt_out || !*opt_out)
    return fail ("--out PREFIX is required");
  if (opt_variants < 1 || opt_variants > MAX_VARIANTS)
    return fail ("--variants must be in 1..%d, not %d", MAX_VARIANTS,
        opt_variants);
  if (opt_shapes < 0 || opt_shapes > MAX_IMAGES / N_SHAPE_KINDS)
    return fail ("--shapes must be in 0..%d, not %d",
        MAX_IMAGES / N_SHAPE_KINDS, opt_shapes);
  if (!(opt_max_rot >= 0 && opt_max_rot <= 180))
    return fail ("--max-rotation must be in 0..180, not %g", opt_max_rot);
  if (!(opt_max_stroke >= 0 && opt_max_stroke <= 50))
    return fail ("--max-stroke must be in 0..50, not %g", opt_max_stroke);

  /* characters: UTF-8, each once, in order */
  chars_arg = opt_chars ? opt_chars : "0123456789";
  if (!g_utf8_validate (chars_arg, -1, NULL))
    return fail ("--chars is not valid UTF-8");
  for (const char *p = chars_arg; *p; p = g_utf8_next_char (p)) {
    gunichar ch = g_utf8_get_char (p);
    gboolean seen = FALSE;
    if (ch >= 255)
      return fail ("--chars: '%.*s' (U+%04X) has no label: characters "
          "must be below U+00FF", (int) (g_utf8_next_char (p) - p), p, ch);
    if (g_unichar_iscntrl (ch))
      return fail ("--chars: U+%04X is a control character", ch);
    for (guint i = 0; i < chars->len; i++)
      seen |= g_array_index (chars, gunichar, i) == ch;
    if (!seen)
      g_array_append_val (chars, ch);
  }
  if (chars->len == 0 && opt_shapes == 0)
    return fail ("nothing to render: --chars is empty and --shapes is 0");

  /* fonts (only needed for characters): installed, with every glyph */
  if (chars->len > 0) {
    g_auto (GStrv) names = NULL;
    const char *fonts_arg = opt_fonts ? opt_fonts : "DejaVu Sans";
    if (!g_utf8_validate (fonts_arg, -1, NULL))
      return fail ("--fonts is not valid UTF-8");
    names = g_strsplit (fonts_arg, ",", -1);
    for (guint i = 0; names[i]; i++) {
      g_autofree char *fallback = NULL;
      char *family = g_strstrip (names[i]);
      FcPattern *match;
      FcCharSet *cs = NULL;
      gboolean dup = FALSE;
      if (!*family)
        continue;
      for (guint j = 0; j < fonts->len; j++)
        dup |= family_equal (g_ptr_array_index (fonts, j), family);
      if (dup)
        continue;
      match = font_match (family, &fallback);
      if (!match)
        return fail ("font family '%s' is not installed (fontconfig would "
            "use '%s'; see --list-fonts)", family,
            fallback ? fallback : "nothing");
      if (FcPatternGetCharSet (match, FC_CHARSET, 0, &cs) == FcResultMatch)
        for (guint j = 0; j < chars->len; j++) {
          gunichar ch = g_array_index (chars, gunichar, j);
          if (!FcCharSetHasChar (cs, ch)) {
            char u[8];
            u[g_unichar_to_utf8 (ch, u)] = '\0';
            FcPatternDestroy (match);
            return fail ("font family '%s' has no glyph for '%s' (U+%04X)",
                family, u, ch);
          }
        }
      FcPatternDestroy (match);
      g_ptr_array_add (fonts, g_strdup (family));
    }
    if (fonts->len == 0)
      return fail ("--fonts names no font family");
  }

  total = (guint64) chars->len * fonts->len * opt_variants +
      (guint64) N_SHAPE_KINDS * opt_shapes;
  if (total > MAX_IMAGES)
    return fail ("%" G_GUINT64_FORMAT " images asked for, at most %d",
        total, MAX_IMAGES);

  images_path = g_strconcat (opt_out, "-images.idx3-ubyte", NULL);
  labels_path = g_strconcat (opt_out, "-labels.idx1-ubyte", NULL);
  dir = g_path_get_dirname (images_path);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    return fail ("%s: cannot write: directory %s does not exist",
        images_path, dir);

  /* a scratch context for building paths; outlines unhinted */
  scratch_surf = cairo_image_surface_create (CAIRO_FORMAT_A8, 1, 1);
  scratch = cairo_create (scratch_surf);
  fo = cairo_font_options_create ();
  cairo_font_options_set_hint_style (fo, CAIRO_HINT_STYLE_NONE);
  cairo_font_options_set_hint_metrics (fo, CAIRO_HINT_METRICS_OFF);
  cairo_set_font_options (scratch, fo);
  cairo_font_options_destroy (fo);

  for (guint c = 0; c < chars->len; c++) {
    gunichar ch = g_array_index (chars, gunichar, c);
    guint8 label = ch >= '0' && ch <= '9' ? (guint8) (ch - '0') : (guint8) ch;
    for (guint f = 0; f < fonts->len; f++) {
      const char *family = g_ptr_array_index (fonts, f);
      guint32 font_id = str_hash32 (family);
      for (gint v = 0; v < opt_variants; v++) {
        if (!render_glyph (scratch, family, ch, font_id, v, img)) {
          skipped++;
          continue;
        }
        g_byte_array_append (images, img, sizeof img);
        g_byte_array_append (labels, &label, 1);
        n_glyphs++;
      }
    }
  }
  for (guint k = 0; k < N_SHAPE_KINDS; k++) {
    for (gint i = 0; i < opt_shapes; i++) {
      guint8 label = SHAPE_LABEL;
      if (!render_shape (scratch, k, i, img)) {
        skipped++;
        continue;
      }
      g_byte_array_append (images, img, sizeof img);
      g_byte_array_append (labels, &label, 1);
      n_shapes++;
    }
  }
  if (cairo_status (scratch) != CAIRO_STATUS_SUCCESS) {
    const char *msg = cairo_status_to_string (cairo_status (scratch));
    cairo_destroy (scratch);
    cairo_surface_destroy (scratch_surf);
    return fail ("rendering failed: %s", msg);
  }
  cairo_destroy (scratch);
  cairo_surface_destroy (scratch_surf);

  if (labels->len == 0)
    return fail ("nothing rendered: all %u renderings were blank", skipped);
  if (!write_pair (images_path, labels_path, labels->len, images->data,
          labels->data, &err))
    return fail ("%s", err->message);

  printf ("cbir-glyphs: %u images (%u of %u chars x %u fonts x %d variants, "
      "%u shapes; %u blank skipped) in %s and %s\n", labels->len, n_glyphs,
      chars->len, fonts->len, opt_variants, n_shapes, skipped, images_path,
      labels_path);
  return 0;
}

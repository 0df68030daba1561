/* PNG output tests: write grids and charts, read them back with cairo and
 * check size and pixels; bad arguments and paths are errors that leave no
 * file behind. */
#include "config.h"

#include <cbir/png.h>

#include <check.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#ifdef HAVE_CAIRO
#include <cairo.h>

/* fontconfig keeps process-wide caches that it never frees (cairo's text
 * goes through it); not our leak. Used by LeakSanitizer only. */
const char *__lsan_default_suppressions (void);
const char *
__lsan_default_suppressions (void)
{
  return "leak:libfontconfig.so\n";
}

static char *tmpdir;

static void
setup (void)
{
  tmpdir = g_dir_make_tmp ("test-png-XXXXXX", NULL);
  ck_assert (tmpdir != NULL);
}

static void
teardown (void)
{
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  const char *n;
  while (d && (n = g_dir_read_name (d))) {
    char *p = g_build_filename (tmpdir, n, NULL);
    g_unlink (p);
    g_free (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
  /* free cairo's font caches (else LeakSanitizer reports fontconfig's) */
  cairo_debug_reset_static_data ();
}

static char *
dir_listing (void)
{
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *n;
  char *s;
  while ((n = g_dir_read_name (d)))
    g_ptr_array_add (names, g_strdup (n));
  g_dir_close (d);
  g_ptr_array_sort (names, (GCompareFunc) g_strcmp0);
  g_ptr_array_add (names, NULL);
  s = g_strjoinv (" ", (char **) names->pdata);
  g_ptr_array_unref (names);
  return s;
}

static cairo_surface_t *
load (const char *path)
{
  cairo_surface_t *s = cairo_image_surface_create_from_png (path);
  ck_assert_msg (cairo_surface_status (s) == CAIRO_STATUS_SUCCESS,
      "%s: %s", path, cairo_status_to_string (cairo_surface_status (s)));
  cairo_surface_flush (s);
  return s;
}

static guint32
pixel (cairo_surface_t * s, int x, int y)
{
  const guint8 *d = cairo_image_surface_get_data (s);
  int stride = cairo_image_surface_get_stride (s);
  ck_assert (x >= 0 && y >= 0 && x < cairo_image_surface_get_width (s)
      && y < cairo_image_surface_get_height (s));
  return ((const guint32 *) (d + (gsize) y * stride))[x] & 0xffffff;
}

#define GRAY(v) (((guint32) (v) << 16) | ((guint32) (v) << 8) | (v))

/* Layout constants of the grid (see png.c): 2-pixel separators, 22-pixel
 * title strips. */
#define SEP 2
#define TH 22

START_TEST (test_grid_white)
{
  char *path = g_build_filename (tmpdir, "grid.png", NULL);
  GError *err = NULL;
  const guint w = 4, h = 3, n = 5, cols = 3, scale = 2;
  guint8 *imgs = g_malloc (n * w * h);
  const char *titles[] = { "noisy input", "reconstruction", NULL };
  cairo_surface_t *s;
  guint32 sep;

  memset (imgs, 255, n * w * h);
  ck_assert_msg (cbir_png_write_grid (path, imgs, n, w, h, cols, scale,
          titles, &err), "%s", err ? err->message : "");
  s = load (path);
  ck_assert_int_eq (cairo_image_surface_get_width (s),
      SEP + cols * (w * scale + SEP));
  ck_assert_int_eq (cairo_image_surface_get_height (s),
      SEP + 2 * (TH + h * scale + SEP));
  sep = pixel (s, 0, 0);
  ck_assert_uint_ne (sep, GRAY (255));
  ck_assert_uint_ne (sep, GRAY (0));
  for (guint i = 0; i < cols * 2; i++) {
    guint x0 = SEP + (i % cols) * (w * scale + SEP);
    guint y0 = SEP + (i / cols) * (TH + h * scale + SEP) + TH;
    for (guint y = 0; y < h * scale; y++)
      for (guint x = 0; x < w * scale; x++) {
        if (i < n)
          ck_assert_uint_eq (pixel (s, x0 + x, y0 + y), GRAY (255));
        else                    /* the empty sixth cell */
          ck_assert_uint_eq (pixel (s, x0 + x, y0 + y), sep);
      }
    /* separators left of and below each cell */
    ck_assert_uint_eq (pixel (s, x0 - 1, y0 + 1), sep);
    ck_assert_uint_eq (pixel (s, x0 + 1, y0 + h * scale), sep);
  }
  /* the title strip of row 0 holds dark text on a light background */
  {
    guint dark = 0, light = 0;
    for (guint y = SEP; y < SEP + TH; y++)
      for (guint x = SEP; x < SEP + 3 * (w * scale + SEP) - SEP; x++) {
        guint v = pixel (s, x, y) & 0xff;
        dark += v < 100;
        light += v > 200;
      }
    ck_assert_uint_gt (dark, 5);
    ck_assert_uint_gt (light, dark);
  }
  cairo_surface_destroy (s);

  /* without titles: no strips */
  ck_assert (cbir_png_write_grid (path, imgs, n, w, h, cols, scale, NULL,
          &err));
  s = load (path);
  ck_assert_int_eq (cairo_image_surface_get_height (s),
      SEP + 2 * (h * scale + SEP));
  ck_assert_uint_eq (pixel (s, SEP, SEP), GRAY (255));
  cairo_surface_destroy (s);
  g_free (imgs);
  g_free (path);
}
END_TEST

/* Every source pixel becomes a scale x scale block at the right place. */
START_TEST (test_grid_pixels)
{
  char *path = g_build_filename (tmpdir, "px.png", NULL);
  const guint w = 5, h = 7, n = 4, cols = 2, scale = 3;
  guint8 imgs[4 * 5 * 7];
  cairo_surface_t *s;

  for (guint i = 0; i < G_N_ELEMENTS (imgs); i++)
    imgs[i] = (i * 37 + 11) & 0xff;
  ck_assert (cbir_png_write_grid (path, imgs, n, w, h, cols, scale, NULL,
          NULL));
  s = load (path);
  for (guint i = 0; i < n; i++) {
    guint x0 = SEP + (i % cols) * (w * scale + SEP);
    guint y0 = SEP + (i / cols) * (h * scale + SEP);
    for (guint y = 0; y < h * scale; y++)
      for (guint x = 0; x < w * scale; x++)
        ck_assert_uint_eq (pixel (s, x0 + x, y0 + y),
            GRAY (imgs[i * w * h + (y / scale) * w + x / scale]));
  }
  cairo_surface_destroy (s);
  g_free (path);
}
END_TEST

START_TEST (test_grid_errors)
{
  char *path = g_build_filename (tmpdir, "g.png", NULL);
  char *bad = g_build_filename (tmpdir, "missing", "g.png", NULL);
  char *listing;
  guint8 img[4] = { 0 };
  GError *err = NULL;

  ck_assert (!cbir_png_write_grid (bad, img, 1, 2, 2, 1, 1, NULL, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
  ck_assert (g_str_has_prefix (err->message, bad));
  g_clear_error (&err);
  ck_assert (!cbir_png_write_grid (path, img, 0, 2, 2, 1, 1, NULL, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  ck_assert (!cbir_png_write_grid (path, img, 1, 2, 2, 1, 0, NULL, &err));
  g_clear_error (&err);
  ck_assert (!cbir_png_write_grid (path, img, 1, 2, 2, 0, 1, NULL, &err));
  g_clear_error (&err);
  /* overflowing size */
  ck_assert (!cbir_png_write_grid (path, img, 1, 2, 2, 1, G_MAXUINT, NULL,
          &err));
  ck_assert_msg (strstr (err->message, "too large"), "%s", err->message);
  g_clear_error (&err);
  ck_assert (!cbir_png_write_grid (path, img, G_MAXUINT, 60000, 60000,
          G_MAXUINT, 1, NULL, &err));
  g_clear_error (&err);
  /* target is a directory: nothing left behind */
  ck_assert (!cbir_png_write_grid (tmpdir, img, 1, 2, 2, 1, 1, NULL, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
  g_clear_error (&err);
  listing = dir_listing ();
  ck_assert_str_eq (listing, "");
  g_free (listing);
  g_free (bad);
  g_free (path);
}
END_TEST

/* Pixels of a curve's colour: counts in the upper and lower half. */
static void
count_color (cairo_surface_t * s, guint32 rgb, guint * upper, guint * lower)
{
  int W = cairo_image_surface_get_width (s);
  int H = cairo_image_surface_get_height (s);
  *upper = *lower = 0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      guint32 p = pixel (s, x, y);
      int dr = (int) (p >> 16) - (int) (rgb >> 16);
      int dg = (int) ((p >> 8) & 0xff) - (int) ((rgb >> 8) & 0xff);
      int db = (int) (p & 0xff) - (int) (rgb & 0xff);
      if (abs (dr) < 12 && abs (dg) < 12 && abs (db) < 12) {
        if (y < H / 2)
          (*upper)++;
        else
          (*lower)++;
      }
    }
}

#define BLUE 0x1f77b4
#define ORANGE 0xff7f0e

START_TEST (test_curves)
{
  char *path = g_build_filename (tmpdir, "loss.png", NULL);
  GError *err = NULL;
  float hi[12], lo[12];
  const float *vals[] = { hi, lo };
  const char *names[] = { "train", "validation" };
  cairo_surface_t *s;
  guint up, down, white = 0;

  for (int i = 0; i < 12; i++) {
    hi[i] = 1.0f + 0.01f * (i % 2);
    lo[i] = 0.0f - 0.01f * (i % 3);
  }
  ck_assert_msg (cbir_png_write_curves (path, "loss", "epoch", "BCE", 2,
          names, vals, 12, &err), "%s", err ? err->message : "");
  s = load (path);
  ck_assert_int_eq (cairo_image_surface_get_width (s), 800);
  ck_assert_int_eq (cairo_image_surface_get_height (s), 500);
  /* the first series (high values) is drawn in the upper half, the second
   * in the lower, each across the plot (> 500 pixels of line) */
  count_color (s, BLUE, &up, &down);
  ck_assert_uint_gt (up, 500);
  ck_assert_uint_gt (up, 10 * down + 1);
  count_color (s, ORANGE, &up, &down);
  ck_assert_uint_gt (down, 500);
  ck_assert_uint_gt (down, 10 * up + 1);
  /* mostly white background, some dark text/axes */
  for (int y = 0; y < 500; y++)
    for (int x = 0; x < 800; x++)
      white += pixel (s, x, y) == 0xffffff;
  ck_assert_uint_gt (white, 800 * 500 / 2);
  ck_assert_uint_lt (white, 800 * 500 - 2000);
  cairo_surface_destroy (s);
  g_free (path);
}
END_TEST

START_TEST (test_chart_options)
{
  char *path = g_build_filename (tmpdir, "chart.png", NULL);
  GError *err = NULL;
  float v[5] = { 0.3f, NAN, 0.2f, INFINITY, 0.1f };
  float all_nan[5] = { NAN, NAN, NAN, NAN, NAN };
  const float *vals[] = { v, all_nan };
  const double ref = 0.45;
  const char *ref_name[] = { "all-zeros loss" };
  CbirPngChart c = {
    .title = "with reference", .n_series = 2, .series_values = vals,
    .n_points = 5, .x_start = 0, .x_step = 0.5, .n_hlines = 1,
    .hline_names = ref_name, .hline_values = &ref, .width = 640,
    .height = 360,
  };
  cairo_surface_t *s;
  guint up, down;

  ck_assert_msg (cbir_png_write_chart (path, &c, &err), "%s",
      err ? err->message : "");
  s = load (path);
  ck_assert_int_eq (cairo_image_surface_get_width (s), 640);
  ck_assert_int_eq (cairo_image_surface_get_height (s), 360);
  count_color (s, BLUE, &up, &down);
  ck_assert_uint_gt (up + down, 50);
  cairo_surface_destroy (s);

  /* one point; no names or labels */
  c.n_points = 1;
  c.n_hlines = 0;
  c.title = NULL;
  ck_assert (cbir_png_write_chart (path, &c, &err));

  /* bad arguments */
  c.x_step = 0;
  ck_assert (!cbir_png_write_chart (path, &c, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  c.x_step = 1;
  c.n_points = 0;
  ck_assert (!cbir_png_write_chart (path, &c, &err));
  g_clear_error (&err);
  c.n_points = 5;
  c.width = 100000;
  ck_assert (!cbir_png_write_chart (path, &c, &err));
  g_clear_error (&err);
  ck_assert (!cbir_png_write_curves (path, NULL, NULL, NULL, 0, NULL, vals,
          5, &err));
  g_clear_error (&err);
  g_free (path);
}
END_TEST

START_TEST (test_curves_bad_path)
{
  char *bad = g_build_filename (tmpdir, "nodir", "loss.png", NULL);
  char *listing;
  float v[3] = { 1, 2, 3 };
  const float *vals[] = { v };
  GError *err = NULL;

  ck_assert (!cbir_png_write_curves (bad, "t", "x", "y", 1, NULL, vals, 3,
          &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
  ck_assert_msg (g_str_has_prefix (err->message, bad), "%s", err->message);
  g_clear_error (&err);
  ck_assert (!g_file_test (bad, G_FILE_TEST_EXISTS));
  listing = dir_listing ();
  ck_assert_str_eq (listing, "");
  g_free (listing);
  g_free (bad);
}
END_TEST

static Suite *
png_suite (void)
{
  Suite *s = suite_create ("png");
  TCase *tc = tcase_create ("png");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_grid_white);
  tcase_add_test (tc, test_grid_pixels);
  tcase_add_test (tc, test_grid_errors);
  tcase_add_test (tc, test_curves);
  tcase_add_test (tc, test_chart_options);
  tcase_add_test (tc, test_curves_bad_path);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (png_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? 0 : 1;
}

#else /* !HAVE_CAIRO */

int
main (void)
{
  GError *err = NULL;
  guint8 img[1] = { 0 };
  /* without cairo the calls must fail cleanly */
  if (cbir_png_write_grid ("/nonexistent/x.png", img, 1, 1, 1, 1, 1, NULL,
          &err) || !g_error_matches (err, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED))
    return 1;
  g_clear_error (&err);
  return 77;                    /* skipped */
}

#endif

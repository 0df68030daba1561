/* Preprocessing: area scaling and MNIST-style normalisation of synthetic
 * camera frames (dark thick strokes on a light, unevenly lit, noisy
 * background, drawn here). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cbir/idx.h>
#include <cbir/noise.h>
#include <cbir/preprocess.h>

typedef struct {
  guint w, h;
  gsize stride;
  guint8 *data;
} Frame;

/* Light paper lit unevenly: 140..235 left to right, darker at the bottom;
 * padding bytes are 0 (dark: reading them would look like ink). */
static Frame
paper (guint w, guint h, gsize stride)
{
  Frame f = { w, h, stride, g_malloc0 ((gsize) h * stride) };

  for (guint y = 0; y < h; y++)
    for (guint x = 0; x < w; x++)
      f.data[(gsize) y * stride + x] =
          (guint8) (140 + 95.0 * x / w - 25.0 * y / h);
  return f;
}

/* A "0": elliptical ring centred at (cx, cy), half-axes (a, b), ring width
 * t, ink darker than the paper by a factor (ink grey 40-ish). */
static void
draw_ring (Frame *f, double cx, double cy, double a, double b, double t)
{
  for (guint y = 0; y < f->h; y++) {
    for (guint x = 0; x < f->w; x++) {
      double dx = (x + 0.5 - cx) / a, dy = (y + 0.5 - cy) / b;
      double r = sqrt (dx * dx + dy * dy);
      double ri = 1.0 - t / MIN (a, b);
      if (r <= 1.0 && r >= ri) {
        guint8 *p = &f->data[(gsize) y * f->stride + x];
        *p = (guint8) (*p * 0.25);
      }
    }
  }
}

static void
add_noise (Frame *f, guint64 stream)
{
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.03f, 77, stream, f->data,
      f->w, f->h, f->stride);
}

/* Ink statistics of a 28x28 output. */
static void
ink_stats (const guint8 *d, double *cx, double *cy, guint *bw, guint *bh)
{
  double s = 0, sx = 0, sy = 0;
  guint x0 = 28, y0 = 28, x1 = 0, y1 = 0;

  for (guint y = 0; y < 28; y++)
    for (guint x = 0; x < 28; x++) {
      guint v = d[y * 28 + x];
      s += v;
      sx += v * (x + 0.5);
      sy += v * (y + 0.5);
      if (v > 0) {
        x0 = MIN (x0, x);
        y0 = MIN (y0, y);
        x1 = MAX (x1, x);
        y1 = MAX (y1, y);
      }
    }
  *cx = s > 0 ? sx / s : -1;
  *cy = s > 0 ? sy / s : -1;
  *bw = x1 >= x0 ? x1 - x0 + 1 : 0;
  *bh = y1 >= y0 ? y1 - y0 + 1 : 0;
}

START_TEST (test_scale)
{
  guint8 src[4 * 6], dst[64];
  /* 4x3 image in rows of 6 bytes (2 padding bytes, set to 99). */
  memset (src, 99, sizeof src);
  for (guint y = 0; y < 3; y++)
    for (guint x = 0; x < 4; x++)
      src[y * 6 + x] = (guint8) (10 * (y * 4 + x));

  /* Identity copy. */
  cbir_preprocess_scale (src, 4, 3, 6, 4, 3, dst);
  for (guint y = 0; y < 3; y++)
    for (guint x = 0; x < 4; x++)
      ck_assert_uint_eq (dst[y * 4 + x], 10 * (y * 4 + x));

  /* 4 wide -> 2 wide: pairs averaged. */
  cbir_preprocess_scale (src, 4, 3, 6, 2, 3, dst);
  for (guint y = 0; y < 3; y++)
    for (guint x = 0; x < 2; x++)
      ck_assert_uint_eq (dst[y * 2 + x], 10 * (y * 4 + 2 * x) + 5);

  /* 4x3 -> 1x1: the mean (55). */
  cbir_preprocess_scale (src, 4, 3, 6, 1, 1, dst);
  ck_assert_uint_eq (dst[0], 55);

  /* 2x up: each pixel repeated. */
  cbir_preprocess_scale (src, 4, 3, 6, 8, 6, dst);
  for (guint y = 0; y < 6; y++)
    for (guint x = 0; x < 8; x++)
      ck_assert_uint_eq (dst[y * 8 + x], 10 * ((y / 2) * 4 + x / 2));

  /* A uniform 640x480 frame stays uniform at 28x28; 3x down is exact. */
  Frame f = paper (641, 479, 648);
  for (guint y = 0; y < f.h; y++)
    memset (f.data + y * f.stride, 200, f.w);
  g_autofree guint8 *o = g_malloc (28 * 28);
  cbir_preprocess_scale (f.data, f.w, f.h, f.stride, 28, 28, o);
  for (guint i = 0; i < 28 * 28; i++)
    ck_assert_uint_eq (o[i], 200);
  g_free (f.data);
}
END_TEST

START_TEST (test_dark_digit_on_paper)
{
  Frame f = paper (640, 480, 640);
  guint8 out[28 * 28];
  CbirPreprocessInfo info;
  double cx, cy;
  guint bw, bh;

  /* Ring covering x 250..370, y 140..340 (left of centre: the lighting is
   * uneven across it). */
  draw_ring (&f, 310, 240, 60, 100, 22);
  add_noise (&f, 1);
  ck_assert (cbir_preprocess_mnist (f.data, f.w, f.h, f.stride, out, &info));
  ck_assert (info.inverted);
  ck_assert_msg (abs ((int) info.bbox.x - 250) <= 3
      && abs ((int) info.bbox.y - 140) <= 3
      && abs ((int) info.bbox.width - 120) <= 6
      && abs ((int) info.bbox.height - 200) <= 6, "bbox %u,%u %ux%u",
      info.bbox.x, info.bbox.y, info.bbox.width, info.bbox.height);
  ck_assert (info.ink_fraction > 0.02 && info.ink_fraction < 0.1);
  ck_assert (info.contrast > 60);

  ink_stats (out, &cx, &cy, &bw, &bh);
  ck_assert_msg (fabs (cx - 14) < 1.0 && fabs (cy - 14) < 1.0, "com %f,%f",
      cx, cy);
  /* Tall: 20 high, 20 * 120/200 = 12 wide. */
  ck_assert_msg (bh == 20 && abs ((int) bw - 12) <= 1, "ink box %ux%u", bw, bh);
  /* Ring: hollow centre, full-strength strokes. */
  ck_assert_uint_lt (out[14 * 28 + 14], 30);
  guint maxv = 0;
  for (guint i = 0; i < 28 * 28; i++)
    maxv = MAX (maxv, out[i]);
  ck_assert_uint_ge (maxv, 250);
  g_free (f.data);
}
END_TEST

/* White ink on black, already MNIST-like: not inverted, and normalising it
 * again changes little. */
START_TEST (test_mnist_like_frame)
{
  Frame f = { 28, 28, 28, g_malloc0 (28 * 28) };
  guint8 out[28 * 28];
  CbirPreprocessInfo info;
  double diff = 0;

  /* Ring 12 wide x 20 high centred at (14, 14). */
  for (guint y = 0; y < 28; y++)
    for (guint x = 0; x < 28; x++) {
      double dx = (x + 0.5 - 14) / 6, dy = (y + 0.5 - 14) / 10;
      double r = sqrt (dx * dx + dy * dy);
      if (r <= 1.0 && r >= 0.55)
        f.data[y * 28 + x] = 255;
    }
  ck_assert (cbir_preprocess_mnist (f.data, 28, 28, 28, out, &info));
  ck_assert (!info.inverted);
  for (guint i = 0; i < 28 * 28; i++)
    diff += abs ((int) out[i] - (int) f.data[i]);
  ck_assert_msg (diff / (28 * 28) < 20, "mean abs diff %f", diff / (28 * 28));
  g_free (f.data);
}
END_TEST

/* Ink covering more than a quarter of the frame: every 28x28 digit of the
 * fixture (MNIST's own; 7 of these 64 were missed), and a thick "0" held
 * close to the camera, filling most of a 640x480 frame. */
START_TEST (test_big_ink)
{
  const char *dir = g_getenv ("CBIR_TEST_DATA");
  ck_assert_msg (dir != NULL, "CBIR_TEST_DATA not set");
  g_autofree char *path = g_build_filename (dir,
      "mnist-64-images.idx3-ubyte.gz", NULL);
  GError *err = NULL;
  CbirDataset *ds = cbir_dataset_load (path, NULL, &err);
  ck_assert_msg (ds != NULL, "%s", err ? err->message : "");
  for (guint i = 0; i < ds->n; i++) {
    CbirRect r[4];
    guint8 out[28 * 28];
    ck_assert_msg (cbir_preprocess_find_digits (ds->images + i * 784, 28, 28,
            28, r, 4) >= 1, "digit %u not found", i);
    ck_assert_msg (cbir_preprocess_mnist (ds->images + i * 784, 28, 28, 28,
            out, NULL), "digit %u not normalised", i);
  }
  cbir_dataset_free (ds);

  Frame f = paper (640, 480, 640);
  CbirRect r[4];
  guint n;
  draw_ring (&f, 320, 240, 200, 230, 110);
  add_noise (&f, 5);
  n = cbir_preprocess_find_digits (f.data, 640, 480, 640, r, 4);
  ck_assert_uint_eq (n, 1);
  ck_assert (r[0].width > 350 && r[0].height > 420);
  g_free (f.data);
}
END_TEST

START_TEST (test_no_digit)
{
  guint8 out[28 * 28];
  CbirPreprocessInfo info;
  CbirRect r[4];

  /* Unevenly lit paper with noise, no ink. */
  Frame f = paper (640, 480, 640);
  add_noise (&f, 2);
  memset (out, 7, sizeof out);
  ck_assert (!cbir_preprocess_mnist (f.data, f.w, f.h, f.stride, out, &info));
  for (guint i = 0; i < 28 * 28; i++)
    ck_assert_uint_eq (out[i], 0);
  ck_assert_uint_eq (info.bbox.width, 0);
  ck_assert_uint_eq (cbir_preprocess_find_digits (f.data, f.w, f.h, f.stride,
          r, 4), 0);

  /* A few specks are still no digit. */
  for (guint k = 0; k < 20; k++) {
    guint x = 20 + k * 29, y = 30 + (k * 53) % 400;
    f.data[y * f.stride + x] = 0;
    f.data[y * f.stride + x + 1] = 0;
  }
  ck_assert (!cbir_preprocess_mnist (f.data, f.w, f.h, f.stride, out, NULL));

  /* Uniform grey, and all black. */
  memset (f.data, 128, f.h * f.stride);
  ck_assert (!cbir_preprocess_mnist (f.data, f.w, f.h, f.stride, out, NULL));
  memset (f.data, 0, f.h * f.stride);
  ck_assert (!cbir_preprocess_mnist (f.data, f.w, f.h, f.stride, out, NULL));
  /* Degenerate sizes. */
  ck_assert (!cbir_preprocess_mnist (f.data, 0, 0, 0, out, NULL));
  ck_assert (!cbir_preprocess_mnist (f.data, 1, 1, 1, out, NULL));
  g_free (f.data);
}
END_TEST

START_TEST (test_two_digits)
{
  Frame f = paper (640, 480, 640);
  CbirRect r[4];
  guint8 out[28 * 28];
  CbirPreprocessInfo info;
  g_autoptr (CbirInkMap) map = NULL;

  /* The right one drawn first, and bigger; plus specks. */
  draw_ring (&f, 460, 250, 70, 110, 20);
  draw_ring (&f, 170, 230, 50, 90, 18);
  for (guint k = 0; k < 10; k++)
    f.data[(20 + k * 40) * f.stride + 600] = 0;
  add_noise (&f, 3);

  ck_assert_uint_eq (cbir_preprocess_find_digits (f.data, f.w, f.h, f.stride,
          r, 4), 2);
  ck_assert_msg (abs ((int) r[0].x - 120) <= 3 && abs ((int) r[0].y - 140) <= 3
      && abs ((int) r[0].width - 100) <= 6, "left box %u,%u %ux%u", r[0].x,
      r[0].y, r[0].width, r[0].height);
  ck_assert_msg (abs ((int) r[1].x - 390) <= 3 && abs ((int) r[1].y - 140) <= 3
      && abs ((int) r[1].height - 220) <= 6, "right box %u,%u %ux%u", r[1].x,
      r[1].y, r[1].width, r[1].height);
  /* max_rects 1 keeps the bigger one. */
  ck_assert_uint_eq (cbir_preprocess_find_digits (f.data, f.w, f.h, f.stride,
          r, 1), 1);
  ck_assert_uint_gt (r[0].x, 300);

  /* Normalise each region from one analysis. */
  map = cbir_ink_map_new (f.data, f.w, f.h, f.stride);
  ck_assert_uint_eq (cbir_ink_map_find_digits (map, r, 4), 2);
  for (guint i = 0; i < 2; i++) {
    double cx, cy;
    guint bw, bh;
    ck_assert (cbir_ink_map_normalise (map, &r[i], out, &info));
    ck_assert (info.inverted);
    ck_assert_uint_eq (info.bbox.x, r[i].x);
    ck_assert_uint_eq (info.bbox.width, r[i].width);
    ink_stats (out, &cx, &cy, &bw, &bh);
    ck_assert (fabs (cx - 14) < 1.0 && fabs (cy - 14) < 1.0);
    ck_assert_uint_eq (bh, 20);
  }
  /* A rectangle with no ink in it, one outside the frame. */
  CbirRect empty = { 10, 10, 60, 60 }, outside = { 700, 0, 10, 10 };
  ck_assert (!cbir_ink_map_normalise (map, &empty, out, NULL));
  ck_assert (!cbir_ink_map_normalise (map, &outside, out, NULL));
  /* The whole frame takes both digits as one box. */
  ck_assert (cbir_ink_map_normalise (map, NULL, out, &info));
  ck_assert (info.bbox.x < 125 && info.bbox.x + info.bbox.width > 525);
  g_free (f.data);
}
END_TEST

/* Odd widths with stride padding give the same result as packed rows. */
START_TEST (test_stride)
{
  const guint widths[] = { 641, 333, 97 };

  for (guint k = 0; k < G_N_ELEMENTS (widths); k++) {
    guint w = widths[k], h = w * 3 / 4 + 1;
    gsize stride = (w + 7) & ~(gsize) 3;
    Frame a = paper (w, h, stride), b = paper (w, h, w);
    guint8 oa[28 * 28], ob[28 * 28];
    CbirPreprocessInfo ia, ib;
    CbirRect ra[2], rb[2];

    draw_ring (&a, w * 0.5, h * 0.5, w * 0.1, h * 0.3, MAX (3, w / 30.0));
    draw_ring (&b, w * 0.5, h * 0.5, w * 0.1, h * 0.3, MAX (3, w / 30.0));
    add_noise (&a, 4);
    add_noise (&b, 4);
    ck_assert (cbir_preprocess_mnist (a.data, w, h, stride, oa, &ia));
    ck_assert (cbir_preprocess_mnist (b.data, w, h, w, ob, &ib));
    ck_assert (memcmp (oa, ob, sizeof oa) == 0);
    ck_assert (memcmp (&ia, &ib, sizeof ia) == 0);
    ck_assert_uint_eq (cbir_preprocess_find_digits (a.data, w, h, stride, ra,
            2), 1);
    ck_assert_uint_eq (cbir_preprocess_find_digits (b.data, w, h, w, rb, 2), 1);
    ck_assert (memcmp (ra, rb, sizeof (CbirRect)) == 0);
    g_free (a.data);
    g_free (b.data);
  }
}
END_TEST

/* Deskewing: exact values on tiny images worked by hand, the 45 degree
 * limit, the copies, and a slanted stroke made upright. */
START_TEST (test_deskew)
{
  /* one pixel a row, one column apart: cx 1.5, cy 0.5, var(y) 50,
   * cov(x, y) 50, alpha 1; row 0 moves right by half a pixel, row 1 left */
  const guint8 two[8] = { 0, 100, 0, 0, 0, 0, 100, 0 };
  const guint8 upright[8] = { 0, 50, 50, 0, 0, 50, 50, 0 };
  guint8 out[28 * 28];
  ck_assert (cbir_preprocess_deskew (two, 4, 2, out) == 1.0);
  ck_assert (memcmp (out, upright, 8) == 0);
  /* mirrored: alpha -1 */
  const guint8 back[8] = { 0, 0, 100, 0, 0, 100, 0, 0 };
  ck_assert (cbir_preprocess_deskew (back, 4, 2, out) == -1.0);
  ck_assert (memcmp (out, upright, 8) == 0);
  /* six columns apart: alpha 6, limited to CBIR_DESKEW_MAX */
  guint8 wide[16] = { 0 };
  wide[0] = 100;
  wide[8 + 6] = 100;
  ck_assert (cbir_preprocess_deskew (wide, 8, 2, out) == CBIR_DESKEW_MAX);

  /* copies: no ink; all ink on one row; an upright bar */
  guint8 img[28 * 28] = { 0 };
  ck_assert (cbir_preprocess_deskew (img, 28, 28, out) == 0.0);
  ck_assert (memcmp (out, img, sizeof img) == 0);
  for (guint x = 5; x < 20; x++)
    img[10 * 28 + x] = 255;
  ck_assert (cbir_preprocess_deskew (img, 28, 28, out) == 0.0);
  ck_assert (memcmp (out, img, sizeof img) == 0);
  memset (img, 0, sizeof img);
  for (guint y = 4; y < 24; y++)
    for (guint x = 12; x < 16; x++)
      img[y * 28 + x] = 200;
  ck_assert (fabs (cbir_preprocess_deskew (img, 28, 28, out)) < 1e-9);
  ck_assert (memcmp (out, img, sizeof img) == 0);

  /* a stroke leaning right by half a pixel a row: alpha about 0.5, and
   * the output has no slant left (its own alpha near 0), same ink */
  memset (img, 0, sizeof img);
  for (guint y = 4; y < 24; y++)
    for (guint w = 0; w < 2; w++)
      img[y * 28 + 8 + y / 2 + w] = 240;
  double a = cbir_preprocess_deskew (img, 28, 28, out);
  ck_assert_msg (fabs (a - 0.5) < 0.03, "alpha %g", a);
  guint8 again[28 * 28];
  double a2 = cbir_preprocess_deskew (out, 28, 28, again);
  ck_assert_msg (fabs (a2) < 0.03, "alpha after deskewing %g", a2);
  guint64 sum_in = 0, sum_out = 0;
  for (guint i = 0; i < 28 * 28; i++) {
    sum_in += img[i];
    sum_out += out[i];
  }
  ck_assert_msg (llabs ((long long) sum_in - (long long) sum_out) < 40,
      "ink %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT, sum_in, sum_out);
}
END_TEST

static Suite *
preprocess_suite (void)
{
  Suite *s = suite_create ("preprocess");
  TCase *tc = tcase_create ("core");

  tcase_add_test (tc, test_scale);
  tcase_add_test (tc, test_dark_digit_on_paper);
  tcase_add_test (tc, test_mnist_like_frame);
  tcase_add_test (tc, test_no_digit);
  tcase_add_test (tc, test_big_ink);
  tcase_add_test (tc, test_two_digits);
  tcase_add_test (tc, test_stride);
  tcase_add_test (tc, test_deskew);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (preprocess_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

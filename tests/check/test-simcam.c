/* The simulated camera: reproducible frames, truth that matches the
 * picture, uneven light, digits the MNIST-style preprocessing finds. */
#include "config.h"

#include <cbir/idx.h>
#include <cbir/preprocess.h>
#include <cbir/simcam.h>

#include <check.h>
#include <string.h>

static CbirDataset *
load_fixture (void)
{
  const char *dir = g_getenv ("CBIR_TEST_DATA");
  g_autofree char *img = g_build_filename (dir ? dir : "tests/data",
      "mnist-64-images.idx3-ubyte.gz", NULL);
  g_autofree char *lab = g_build_filename (dir ? dir : "tests/data",
      "mnist-64-labels.idx1-ubyte.gz", NULL);
  g_autoptr (GError) err = NULL;
  CbirDataset *ds = cbir_dataset_load (img, lab, &err);

  ck_assert_msg (ds != NULL, "fixture: %s", err ? err->message : "?");
  return ds;
}

static guint8 *
render (const CbirSimcam * cam, guint frame, CbirSimcamTruth * t)
{
  const CbirSimcamParams *p = cbir_simcam_get_params (cam);
  guint8 *buf = g_malloc (p->width * p->height);

  cbir_simcam_render (cam, frame, buf, p->width, t);
  return buf;
}

/* mean of a rectangle */
static double
rect_mean (const guint8 * img, guint stride, guint x, guint y, guint w,
    guint h)
{
  double s = 0;
  for (guint j = y; j < y + h; j++)
    for (guint i = x; i < x + w; i++)
      s += img[j * stride + i];
  return s / (w * h);
}

/* mean of the darkest 10% of a box (the ink) */
static double
dark_mean (const guint8 * img, guint stride, const CbirRect * b)
{
  guint hist[256] = { 0 }, n = b->width * b->height, want = n / 10, got = 0;
  double s = 0;

  for (guint j = b->y; j < b->y + b->height; j++)
    for (guint i = b->x; i < b->x + b->width; i++)
      hist[img[j * stride + i]]++;
  for (guint v = 0; v < 256 && got < want; v++) {
    guint take = MIN (hist[v], want - got);
    s += (double) v * take;
    got += take;
  }
  return s / MAX (got, 1);
}

/* mean of a 6-pixel ring around a box (the paper next to the ink) */
static double
ring_mean (const guint8 * img, guint stride, guint height, const CbirRect * b)
{
  int x0 = MAX (0, (int) b->x - 10), x1 = MIN ((int) stride, (int) (b->x +
          b->width) + 10);
  int y0 = MAX (0, (int) b->y - 10), y1 = MIN ((int) height, (int) (b->y +
          b->height) + 10);
  double s = 0;
  guint n = 0;

  for (int j = y0; j < y1; j++)
    for (int i = x0; i < x1; i++) {
      gboolean inner = i >= (int) b->x - 4 && i < (int) (b->x + b->width) + 4
          && j >= (int) b->y - 4 && j < (int) (b->y + b->height) + 4;
      if (!inner) {
        s += img[j * stride + i];
        n++;
      }
    }
  return s / MAX (n, 1);
}

START_TEST (test_reproducible)
{
  g_autoptr (CbirDataset) ds = load_fixture ();
  CbirSimcamParams p;
  g_autoptr (CbirSimcam) a = NULL;
  g_autoptr (CbirSimcam) b = NULL;
  g_autoptr (CbirSimcam) c = NULL;
  CbirSimcamTruth ta, tb, tc;

  cbir_simcam_params_init (&p);
  a = cbir_simcam_new (ds, &p, NULL);
  b = cbir_simcam_new (ds, &p, NULL);
  p.seed = 2;
  c = cbir_simcam_new (ds, &p, NULL);
  ck_assert (a && b && c);

  /* same seed: same bytes and truth, in any order */
  g_autofree guint8 *a3 = render (a, 3, &ta);
  g_autofree guint8 *b0 = render (b, 0, NULL);
  g_autofree guint8 *b3 = render (b, 3, &tb);
  ck_assert (memcmp (a3, b3, 640 * 480) == 0);
  ck_assert (memcmp (&ta, &tb, sizeof (ta)) == 0);
  /* frames differ from each other, and with the seed */
  ck_assert (memcmp (a3, b0, 640 * 480) != 0);
  g_autofree guint8 *c3 = render (c, 3, &tc);
  ck_assert (memcmp (a3, c3, 640 * 480) != 0);

  /* a stride wider than the frame gives the same rows */
  {
    g_autofree guint8 *wide = g_malloc0 (700 * 480);
    cbir_simcam_render (a, 3, wide, 700, NULL);
    for (guint y = 0; y < 480; y++)
      ck_assert (memcmp (wide + y * 700, a3 + y * 640, 640) == 0);
  }
}
END_TEST

START_TEST (test_truth_and_picture)
{
  g_autoptr (CbirDataset) ds = load_fixture ();
  CbirSimcamParams p;
  g_autoptr (CbirSimcam) cam = NULL;
  guint seen[64] = { 0 }, n_single = 0;

  cbir_simcam_params_init (&p);
  cam = cbir_simcam_new (ds, &p, NULL);

  for (guint f = 0; f < 64; f++) {
    CbirSimcamTruth t;
    g_autofree guint8 *img = render (cam, f, &t);
    const CbirSimcamDigit *d = &t.digits[0];
    double ink, paper, corner[4], bg_min = 255, bg_max = 0;

    ck_assert_uint_eq (t.frame, f);
    ck_assert_uint_eq (t.n_digits, 1);
    ck_assert_uint_lt (d->source_index, 64);
    ck_assert_int_eq (d->label, ds->labels[d->source_index]);
    seen[d->source_index]++;
    /* the box: large, inside the frame */
    ck_assert_uint_ge (d->box.height, 100);
    ck_assert_uint_le (d->box.x + d->box.width, 640);
    ck_assert_uint_le (d->box.y + d->box.height, 480);
    /* dark ink in the box, light paper in the corners (where no ink) */
    ink = dark_mean (img, 640, &d->box);
    paper = ring_mean (img, 640, 480, &d->box);
    corner[0] = rect_mean (img, 640, 0, 0, 8, 8);
    corner[1] = rect_mean (img, 640, 632, 0, 8, 8);
    corner[2] = rect_mean (img, 640, 0, 472, 8, 8);
    corner[3] = rect_mean (img, 640, 632, 472, 8, 8);
    for (int k = 0; k < 4; k++) {
      bg_min = MIN (bg_min, corner[k]);
      bg_max = MAX (bg_max, corner[k]);
    }
    ck_assert_msg (ink < paper - 50, "frame %u: ink %.0f, paper %.0f", f,
        ink, paper);
    /* uneven light: the corners differ */
    ck_assert_msg (bg_max - bg_min > 10, "frame %u: corners %.0f..%.0f",
        f, bg_min, bg_max);

    /* the preprocessing finds the digit (sometimes in pieces: MNIST has
     * broken strokes) where the truth says */
    {
      CbirRect r[4];
      guint n = cbir_preprocess_find_digits (img, 640, 480, 640, r, 4);
      guint ux0 = 640, uy0 = 480, ux1 = 0, uy1 = 0;

      ck_assert_uint_ge (n, 1);
      n_single += n == 1;
      for (guint k = 0; k < n; k++) {
        ux0 = MIN (ux0, r[k].x);
        uy0 = MIN (uy0, r[k].y);
        ux1 = MAX (ux1, r[k].x + r[k].width);
        uy1 = MAX (uy1, r[k].y + r[k].height);
      }
      /* faint stroke ends: the two thresholds differ a little */
      int tol = 8 + (int) MAX (d->box.width, d->box.height) / 10;
      ck_assert_msg (abs ((int) ux0 - (int) d->box.x) <= tol &&
          abs ((int) uy0 - (int) d->box.y) <= tol &&
          abs ((int) ux1 - (int) (d->box.x + d->box.width)) <= tol &&
          abs ((int) uy1 - (int) (d->box.y + d->box.height)) <= tol,
          "frame %u: found %u,%u-%u,%u, truth %u,%u %ux%u", f, ux0, uy0,
          ux1, uy1, d->box.x, d->box.y, d->box.width, d->box.height);
    }
  }
  /* one region per digit nearly always */
  ck_assert_uint_ge (n_single, 60);
  /* 64 frames of a 64-image set: each image exactly once (shuffled) */
  for (guint i = 0; i < 64; i++)
    ck_assert_uint_eq (seen[i], 1);
}
END_TEST

START_TEST (test_several_digits)
{
  g_autoptr (CbirDataset) ds = load_fixture ();
  CbirSimcamParams p;
  g_autoptr (CbirSimcam) cam = NULL;

  cbir_simcam_params_init (&p);
  p.min_digits = p.max_digits = 3;
  p.shuffle = FALSE;
  p.first = 5;
  p.blank_every = 4;
  cam = cbir_simcam_new (ds, &p, NULL);
  ck_assert (cam != NULL);

  for (guint f = 0; f < 8; f++) {
    CbirSimcamTruth t;
    g_autofree guint8 *img = render (cam, f, &t);
    CbirRect r[8];
    guint n = cbir_preprocess_find_digits (img, 640, 480, 640, r, 8);

    if (f % 4 == 3) {
      ck_assert_uint_eq (t.n_digits, 0);
      ck_assert_uint_eq (n, 0);
      continue;
    }
    ck_assert_uint_eq (t.n_digits, 3);
    for (guint j = 0; j < 3; j++) {
      ck_assert_uint_eq (t.digits[j].source_index, (5 + f * 3 + j) % 64);
      /* left to right, not overlapping */
      if (j > 0)
        ck_assert_uint_ge (t.digits[j].box.x, t.digits[j - 1].box.x +
            t.digits[j - 1].box.width);
    }
    ck_assert_msg (n == 3, "frame %u: %u digits found", f, n);
    for (guint j = 0; j < 3; j++) {
      guint cx = r[j].x + r[j].width / 2, cy = r[j].y + r[j].height / 2;
      const CbirRect *b = &t.digits[j].box;
      ck_assert (cx >= b->x && cx < b->x + b->width);
      ck_assert (cy >= b->y && cy < b->y + b->height);
    }
  }
}
END_TEST

START_TEST (test_truth_json_and_errors)
{
  g_autoptr (CbirDataset) ds = load_fixture ();
  CbirSimcamParams p;
  CbirSimcamTruth t = { 0 };
  g_autofree char *js = NULL;
  g_autoptr (GError) err = NULL;

  t.frame = 7;
  t.n_digits = 2;
  t.digits[0] = (CbirSimcamDigit) { 3, 5, {1, 2, 30, 40} };
  t.digits[1] = (CbirSimcamDigit) { 9, -1, {100, 20, 50, 60} };
  js = cbir_simcam_truth_to_json (&t);
  ck_assert_str_eq (js, "{\"frame\":7,\"labels\":[5,-1],"
      "\"source_indices\":[3,9],\"boxes\":[[1,2,30,40],[100,20,50,60]]}");

  cbir_simcam_params_init (&p);
  p.max_digits = CBIR_SIMCAM_MAX_DIGITS + 1;
  ck_assert (cbir_simcam_new (ds, &p, &err) == NULL);
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  cbir_simcam_params_init (&p);
  p.max_height = 1000;
  ck_assert (cbir_simcam_new (ds, &p, &err) == NULL);
  ck_assert (strstr (err->message, "height") != NULL);
}
END_TEST

static Suite *
simcam_suite (void)
{
  Suite *s = suite_create ("simcam");
  TCase *tc = tcase_create ("core");

  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_reproducible);
  tcase_add_test (tc, test_truth_and_picture);
  tcase_add_test (tc, test_several_digits);
  tcase_add_test (tc, test_truth_json_and_errors);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (simcam_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

/* The match score (openset.h): the reference is every gallery item's
 * distance to its nearest other item, and a query's score is the share of
 * items at least that far from their own nearest neighbour. Checked on a
 * gallery whose distances are known by hand, for l2, cosine and Hamming,
 * and against a brute-force reference on random codes; the local scales
 * of the vote (the same pass) likewise. */
#include <cbir/openset.h>
#include <cbir/search.h>
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* 1-D points 0, 1, 3, 6, 10 (a second dimension stays 0): squared l2
 * nearest-other distances 1, 1, 4, 9, 16 */
static CbirGallery *
line_gallery (void)
{
  static const float xs[] = { 0, 1, 3, 6, 10 };
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, 2, FALSE);

  for (guint i = 0; i < G_N_ELEMENTS (xs); i++) {
    float v[2] = { xs[i], 0 };
    ck_assert (cbir_gallery_builder_add (b, v, (gint32) i, NULL, NULL));
  }
  return cbir_gallery_builder_build (b);
}

START_TEST (test_score_by_hand)
{
  g_autoptr (CbirGallery) g = line_gallery ();
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirMatchScorer) m = cbir_match_scorer_new (g, CBIR_METRIC_L2,
      1, &err);
  guint n;
  const float *ref;

  ck_assert_msg (m != NULL, "%s", err ? err->message : "");
  ref = cbir_match_scorer_get_reference (m, &n);
  ck_assert_uint_eq (n, 5);
  ck_assert_float_eq (ref[0], 1);
  ck_assert_float_eq (ref[1], 1);
  ck_assert_float_eq (ref[2], 4);
  ck_assert_float_eq (ref[3], 9);
  ck_assert_float_eq (ref[4], 16);
  /* the share of items at least as far from their nearest neighbour */
  ck_assert_float_eq (cbir_match_scorer_score (m, 0), 1);
  ck_assert_float_eq (cbir_match_scorer_score (m, 1), 1);
  ck_assert_float_eq_tol (cbir_match_scorer_score (m, 2), 0.6f, 1e-6);
  ck_assert_float_eq_tol (cbir_match_scorer_score (m, 9), 0.4f, 1e-6);
  ck_assert_float_eq_tol (cbir_match_scorer_score (m, 16), 0.2f, 1e-6);
  ck_assert_float_eq (cbir_match_scorer_score (m, 16.5f), 0);
  ck_assert_float_eq (cbir_match_scorer_score (m, INFINITY), 0);
  ck_assert_float_eq (cbir_match_scorer_score (m, NAN), 0);

  /* the query side: the plain nearest distance, whatever re-ranks */
  g_autoptr (CbirSearcher) s = cbir_searcher_new (g, CBIR_METRIC_L2, 0,
      NULL);
  float q[2] = { 4.5f, 0 }, bad[2] = { NAN, 0 };
  ck_assert_float_eq_tol (cbir_searcher_nearest_distance (s, q), 2.25f,
      1e-5);
  ck_assert (cbir_searcher_set_query_expansion (s, 3, 0, NULL));
  ck_assert_float_eq_tol (cbir_searcher_nearest_distance (s, q), 2.25f,
      1e-5);
  ck_assert (isinf (cbir_searcher_nearest_distance (s, bad)));
}
END_TEST

START_TEST (test_score_refused)
{
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, 2, FALSE);
  float v[2] = { 1, 2 };
  g_autoptr (GError) err = NULL;

  cbir_gallery_builder_add (b, v, 0, NULL, NULL);
  g_autoptr (CbirGallery) one = cbir_gallery_builder_build (b);
  /* one item: no yardstick, every finite query scores 1 */
  g_autoptr (CbirMatchScorer) m1 = cbir_match_scorer_new (one,
      CBIR_METRIC_L2, 1, &err);
  ck_assert (m1 != NULL);
  ck_assert_float_eq (cbir_match_scorer_score (m1, 1e30f), 1);
  ck_assert_float_eq (cbir_match_scorer_score (m1, INFINITY), 0);
  /* Hamming on a gallery without packed codes: refused, named */
  g_autoptr (CbirGalleryBuilder) fb = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, 2, FALSE);
  cbir_gallery_builder_set_store (fb, TRUE, FALSE);
  cbir_gallery_builder_add (fb, v, 0, NULL, NULL);
  v[0] = 3;
  cbir_gallery_builder_add (fb, v, 1, NULL, NULL);
  g_autoptr (CbirGallery) nocodes = cbir_gallery_builder_build (fb);
  ck_assert_ptr_null (cbir_match_scorer_new (nocodes, CBIR_METRIC_HAMMING,
          1, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED));
  ck_assert (strstr (err->message, "no packed codes") != NULL);
}
END_TEST

static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

/* Item i's source id in the brute-force galleries: with_ids, items 0-29
 * in threes ("s0" x3, "s1" x3, ...), every 7th other one NULL, the rest
 * unique; without, none. */
static char *
test_id (guint i, gboolean with_ids)
{
  if (!with_ids || (i >= 30 && i % 7 == 0))
    return NULL;
  return i < 30 ? g_strdup_printf ("s%u", i / 3) : g_strdup_printf ("u%u", i);
}

/* random codes: the reference equals a brute-force search of each item's
 * nearest item of another source, for every metric (Hamming over the
 * packed codes, ties included); each item's local scale the mean of its
 * nearest distances */
static void
check_brute_force (gboolean with_ids)
{
  const guint n = 257, dim = 24;
  GRand *r = g_rand_new_with_seed (11);
  g_autofree float *feat = g_new (float, n * dim);
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, dim, FALSE);

  for (guint i = 0; i < n * dim; i++)
    feat[i] = (float) g_rand_double_range (r, -1, 1);
  /* a duplicate pair of two sources: its nearest-other distance is 0 */
  memcpy (feat + 50 * dim, feat + 90 * dim, sizeof (float) * dim);
  /* twins of one source: item 4 a copy of 3, item 5 near it */
  memcpy (feat + 4 * dim, feat + 3 * dim, sizeof (float) * dim);
  for (guint j = 0; j < dim; j++)
    feat[5 * dim + j] = feat[3 * dim + j] + 0.01f;
  g_rand_free (r);
  for (guint i = 0; i < n; i++) {
    g_autofree char *id = test_id (i, with_ids);
    cbir_gallery_builder_add (b, feat + (gsize) i * dim, 0, NULL, id);
  }
  g_autoptr (CbirGallery) g = cbir_gallery_builder_build (b);

  for (CbirMetric metric = CBIR_METRIC_L2; metric <= CBIR_METRIC_HAMMING;
      metric++) {
    g_autoptr (CbirMatchScorer) m = cbir_match_scorer_new (g, metric, 2,
        NULL);
    g_autoptr (CbirSearcher) s = cbir_searcher_new (g, metric, 0, NULL);
    g_autofree float *want = g_new (float, n);
    g_autofree float *d = g_new (float, n);
    const float *ref;
    guint nr;

    ck_assert (m != NULL && s != NULL);
    for (guint i = 0; i < n; i++) {
      g_autofree char *idi = test_id (i, with_ids);
      double scale = 0;
      cbir_searcher_distances (s, feat + (gsize) i * dim, d);
      want[i] = INFINITY;
      for (guint j = 0; j < n; j++) {
        g_autofree char *idj = test_id (j, with_ids);
        if (j != i && !(idi && idj && strcmp (idi, idj) == 0))
          want[i] = MIN (want[i], d[j]);
      }
      /* the local scale: the mean of the CBIR_LOCAL_SCALE_K smallest
       * distances to the other items, twins included */
      d[i] = INFINITY;
      qsort (d, n, sizeof (float), cmp_float);
      for (guint j = 0; j < CBIR_LOCAL_SCALE_K; j++)
        scale += d[j] / CBIR_LOCAL_SCALE_K;
      ck_assert_msg (fabs (cbir_match_scorer_local_scale (m, i) - scale) <=
          1e-4 * MAX (1.0, scale), "%s: item %u: local scale %g, brute "
          "force %g", cbir_metric_to_string (metric), i,
          cbir_match_scorer_local_scale (m, i), scale);
    }
    ref = cbir_match_scorer_get_reference (m, &nr);
    ck_assert_uint_eq (nr, n);
    for (guint i = 1; i < n; i++)
      ck_assert (ref[i - 1] <= ref[i]);
    /* the same multiset: sorted, value by value */
    qsort (want, n, sizeof (float), cmp_float);
    for (guint i = 0; i < n; i++)
      ck_assert_msg (fabsf (ref[i] - want[i]) <= 1e-4f * MAX (1.f, want[i]),
          "%s: item %u: %g, brute force %g", cbir_metric_to_string (metric),
          i, ref[i], want[i]);
    ck_assert_float_eq_tol (ref[0], 0, 1e-4);     /* items 50 and 90 */
    /* the twins of one source: 0 apart only without ids (with them,
     * items 50 and 90 are the only 0s) */
    ck_assert (with_ids ? ref[2] > 1e-3f : ref[3] <= 1e-3f);
  }
}

START_TEST (test_score_matches_brute_force)
{
  check_brute_force (FALSE);
}
END_TEST

/* Items under one id show one source (an image indexed clean and
 * camera-rendered): the reference takes none of them for another's
 * neighbour, so twins do not shrink it. */
START_TEST (test_score_skips_twins)
{
  check_brute_force (TRUE);

  /* by hand: the line gallery indexed twice, each point's two copies under
   * one id, scores as the line gallery */
  static const float xs[] = { 0, 1, 3, 6, 10 };
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, 2, FALSE);
  for (guint copy = 0; copy < 2; copy++)
    for (guint i = 0; i < G_N_ELEMENTS (xs); i++) {
      float v[2] = { xs[i], 0 };
      g_autofree char *id = g_strdup_printf ("line.idx:%u", i);
      ck_assert (cbir_gallery_builder_add (b, v, (gint32) i, NULL, id));
    }
  g_autoptr (CbirGallery) g = cbir_gallery_builder_build (b);
  g_autoptr (CbirMatchScorer) m = cbir_match_scorer_new (g, CBIR_METRIC_L2,
      1, NULL);
  guint n;
  const float *ref = cbir_match_scorer_get_reference (m, &n);
  static const float want[] = { 1, 1, 1, 1, 4, 4, 9, 9, 16, 16 };

  ck_assert_uint_eq (n, 10);
  for (guint i = 0; i < n; i++)
    ck_assert_float_eq (ref[i], want[i]);
  ck_assert_float_eq_tol (cbir_match_scorer_score (m, 2), 0.6f, 1e-6);
  ck_assert_float_eq_tol (cbir_match_scorer_score (m, 16), 0.2f, 1e-6);

  /* one source only: no yardstick, every finite query scores 1 */
  g_autoptr (CbirGalleryBuilder) b1 = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, 2, FALSE);
  for (guint copy = 0; copy < 3; copy++) {
    float v[2] = { (float) copy, 0 };
    ck_assert (cbir_gallery_builder_add (b1, v, 0, NULL, "one.idx:0"));
  }
  g_autoptr (CbirGallery) one = cbir_gallery_builder_build (b1);
  g_autoptr (CbirMatchScorer) m1 = cbir_match_scorer_new (one,
      CBIR_METRIC_L2, 1, NULL);
  ck_assert_float_eq (cbir_match_scorer_score (m1, 1e30f), 1);
}
END_TEST

/* The default threshold follows the gallery: 0.01 with matches only,
 * 0.0025 once any item is an example of a non-match (label -2); other
 * negative labels are not such examples. */
START_TEST (test_default_min_by_gallery)
{
  g_autoptr (CbirGallery) line = line_gallery ();
  ck_assert_float_eq (cbir_match_score_default_min (line), 0.01f);
  ck_assert_float_eq (CBIR_MATCH_SCORE_DEFAULT_MIN, 0.01f);

  static const gint32 labels[][3] = {
    {3, -1, 7}, {3, 7, CBIR_LABEL_NOT_A_MATCH}, {CBIR_LABEL_NOT_A_MATCH,
        CBIR_LABEL_NOT_A_MATCH, CBIR_LABEL_NOT_A_MATCH},
  };
  static const float want[] = { 0.01f, 0.0025f, 0.0025f };
  for (guint c = 0; c < G_N_ELEMENTS (labels); c++) {
    g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
        CBIR_CODE_FLOAT, 2, FALSE);
    for (guint i = 0; i < 3; i++) {
      float v[2] = { (float) i, 0 };
      ck_assert (cbir_gallery_builder_add (b, v, labels[c][i], NULL, NULL));
    }
    g_autoptr (CbirGallery) g = cbir_gallery_builder_build (b);
    ck_assert_float_eq (cbir_match_score_default_min (g), want[c]);
  }
}
END_TEST

/* Local scaling by hand on the line gallery (squared l2; 4 others each,
 * fewer than CBIR_LOCAL_SCALE_K): r(x) is the mean distance to the
 * others, 36.5, 27.75, 17.75, 21.5, 61.5; the median 27.75 stands for an
 * index past the gallery (an enrolled item). A query at 4.5 has the plain
 * order 2, 3 (2.25 each), 1 (12.25), 0 (20.25), 4 (30.25); less r/2 that
 * is -6.625, -8.5, -1.625, 2.0, -0.5: items 3, 2, 1, 4, 0. */
START_TEST (test_local_scale_by_hand)
{
  g_autoptr (CbirGallery) g = line_gallery ();
  g_autoptr (CbirMatchScorer) m = cbir_match_scorer_new (g, CBIR_METRIC_L2,
      1, NULL);
  static const float scale[] = { 36.5f, 27.75f, 17.75f, 21.5f, 61.5f };
  CbirHit hits[5] = {
    {2, 2, 2.25f}, {3, 3, 2.25f}, {1, 1, 12.25f}, {0, 0, 20.25f},
    {4, 4, 30.25f},
  };
  static const guint want[] = { 3, 2, 1, 4, 0 };

  ck_assert (m != NULL);
  for (guint i = 0; i < G_N_ELEMENTS (scale); i++)
    ck_assert_float_eq_tol (cbir_match_scorer_local_scale (m, i), scale[i],
        1e-4);
  ck_assert_float_eq_tol (cbir_match_scorer_local_scale (m, 7), 27.75f,
      1e-4);
  ck_assert_uint_eq (cbir_match_scorer_scale_hits (m, hits, 5, 3, NULL), 3);
  for (guint i = 0; i < 5; i++) {
    ck_assert_uint_eq (hits[i].index, want[i]);
    /* the hits keep their own distances: they weigh the vote */
    ck_assert_float_eq (hits[i].distance, want[i] == 4 ? 30.25f :
        want[i] == 0 ? 20.25f : want[i] == 1 ? 12.25f : 2.25f);
  }
  /* the keys: each reordered hit's distance less half its scale */
  float keys[5];
  ck_assert_uint_eq (cbir_match_scorer_scale_hits (m, hits, 5, 5, keys), 5);
  for (guint i = 0; i < 5; i++) {
    ck_assert_uint_eq (hits[i].index, want[i]);
    ck_assert_float_eq_tol (keys[i], hits[i].distance -
        scale[hits[i].index] / 2, 1e-4);
    if (i > 0)
      ck_assert (keys[i - 1] <= keys[i]);
  }
  ck_assert_uint_eq (cbir_match_scorer_scale_hits (m, hits, 2, 5, NULL), 2);
  ck_assert_uint_eq (cbir_match_scorer_scale_hits (m, hits, 0, 5, NULL), 0);

  /* an enrolled item (index past the gallery) at distance 20 scores
   * 20 - 27.75 / 2 = 6.125: after item 0 (2.0), before nothing else */
  CbirHit two[2] = { {0, 0, 20.25f}, {9, 5, 20.f} };
  cbir_match_scorer_scale_hits (m, two, 2, 2, NULL);
  ck_assert_uint_eq (two[0].index, 0);
  ck_assert_uint_eq (two[1].index, 9);

  /* one item: no scale, no reordering */
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, 2, FALSE);
  float v[2] = { 1, 2 };
  cbir_gallery_builder_add (b, v, 0, NULL, NULL);
  g_autoptr (CbirGallery) one = cbir_gallery_builder_build (b);
  g_autoptr (CbirMatchScorer) m1 = cbir_match_scorer_new (one,
      CBIR_METRIC_L2, 1, NULL);
  CbirHit keep[2] = { {0, 0, 5.f}, {3, 1, 1.f} };
  ck_assert_float_eq (cbir_match_scorer_local_scale (m1, 0), 0);
  float kk[2];
  ck_assert_uint_eq (cbir_match_scorer_scale_hits (m1, keep, 2, 1, kk), 1);
  ck_assert_uint_eq (keep[0].index, 0);
  ck_assert_float_eq (kk[0], 5.f);      /* no scale: the distances */
  ck_assert_float_eq (kk[1], 1.f);
}
END_TEST

static Suite *
openset_suite (void)
{
  Suite *s = suite_create ("openset");
  TCase *tc = tcase_create ("core");

  tcase_add_test (tc, test_score_by_hand);
  tcase_add_test (tc, test_score_refused);
  tcase_add_test (tc, test_score_matches_brute_force);
  tcase_add_test (tc, test_score_skips_twins);
  tcase_add_test (tc, test_default_min_by_gallery);
  tcase_add_test (tc, test_local_scale_by_hand);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (openset_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

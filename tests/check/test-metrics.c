/* Metrics: full-list AP (sklearn LRAP semantics, pessimistic ties),
 * precision@k, recall@k, the accumulator. Small cases computed by hand,
 * and random cases against a direct O(n^2) transcription of the
 * definition. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "cbir/metrics.h"

#define TOL 1e-12

START_TEST (test_ap_hand_no_ties)
{
  /* relevant at ranks 1 and 3: (1/1 + 2/3) / 2 */
  const float d[] = { 0.1f, 0.2f, 0.3f, 0.4f };
  const gint32 l[] = { 1, 0, 1, 0 };
  ck_assert_double_eq_tol (cbir_average_precision (d, l, 4, 1, NULL),
      (1.0 + 2.0 / 3.0) / 2.0, TOL);
  /* label 0: ranks 2 and 4: (1/2 + 2/4) / 2 */
  ck_assert_double_eq_tol (cbir_average_precision (d, l, 4, 0, NULL), 0.5,
      TOL);
  /* unsorted input order gives the same */
  const float d2[] = { 0.4f, 0.3f, 0.2f, 0.1f };
  const gint32 l2[] = { 0, 1, 0, 1 };
  ck_assert_double_eq_tol (cbir_average_precision (d2, l2, 4, 1, NULL),
      (1.0 + 2.0 / 3.0) / 2.0, TOL);
}
END_TEST

START_TEST (test_ap_hand_ties)
{
  /* sorted: 0.1 (other), 0.5 (rel), 0.5 (other), 0.9 (rel).
   * rel at 0.5: rank = #{d <= 0.5} = 3, L = 1 -> 1/3 (pessimistic);
   * rel at 0.9: rank 4, L 2 -> 1/2.  AP = (1/3 + 1/2) / 2 = 5/12 */
  const float d[] = { 0.5f, 0.5f, 0.1f, 0.9f };
  const gint32 l[] = { 1, 0, 0, 1 };
  ck_assert_double_eq_tol (cbir_average_precision (d, l, 4, 1, NULL),
      5.0 / 12.0, TOL);
  /* the tied pair swapped in the input: same (no order dependence) */
  const float e[] = { 0.5f, 0.5f, 0.1f, 0.9f };
  const gint32 m[] = { 0, 1, 0, 1 };
  ck_assert_double_eq_tol (cbir_average_precision (e, m, 4, 1, NULL),
      5.0 / 12.0, TOL);
  /* all tied: each relevant has rank 5, L 2 -> 0.4 */
  const float f[] = { 1, 1, 1, 1, 1 };
  const gint32 fl[] = { 1, 0, 0, 1, 0 };
  ck_assert_double_eq_tol (cbir_average_precision (f, fl, 5, 1, NULL), 0.4,
      TOL);
  /* two relevant tied at the top: rank 2, L 2 -> 1 */
  const float g[] = { 0.2f, 0.2f, 0.3f };
  const gint32 gl[] = { 1, 1, 0 };
  ck_assert_double_eq_tol (cbir_average_precision (g, gl, 3, 1, NULL), 1.0,
      TOL);
  /* -0 and +0 are equal distances */
  const float z[] = { 0.0f, -0.0f, 1.0f };
  const gint32 zl[] = { 0, 1, 0 };
  ck_assert_double_eq_tol (cbir_average_precision (z, zl, 3, 1, NULL), 0.5,
      TOL);
  /* negative distances (e.g. 1 - cos rounding) order correctly */
  const float ng[] = { -0.5f, 0.25f, -1.0f, 2.0f };
  const gint32 nl[] = { 0, 1, 1, 0 };
  /* sorted: -1 (rel), -0.5, 0.25 (rel), 2: (1/1 + 2/3) / 2 */
  ck_assert_double_eq_tol (cbir_average_precision (ng, nl, 4, 1, NULL),
      (1.0 + 2.0 / 3.0) / 2.0, TOL);
}
END_TEST

START_TEST (test_ap_degenerate)
{
  const float d[] = { 0.3f, 0.1f, 0.2f };
  const gint32 none[] = { 0, 0, 0 };
  const gint32 all[] = { 1, 1, 1 };
  /* sklearn scores a sample with no relevant (or only relevant) labels 1 */
  ck_assert_double_eq (cbir_average_precision (d, none, 3, 1, NULL), 1.0);
  ck_assert_double_eq (cbir_average_precision (d, all, 3, 1, NULL), 1.0);
  ck_assert_double_eq (cbir_average_precision (d, none, 0, 1, NULL), 1.0);
}
END_TEST

/* The definition, literally. */
static double
ap_reference (const float *d, const gint32 *l, guint n, gint32 q)
{
  guint nrel = 0;
  for (guint i = 0; i < n; i++)
    nrel += l[i] == q;
  if (nrel == 0 || nrel == n)
    return 1.0;
  double s = 0;
  for (guint j = 0; j < n; j++) {
    if (l[j] != q)
      continue;
    guint rank = 0, lj = 0;
    for (guint i = 0; i < n; i++) {
      if (d[i] <= d[j]) {
        rank++;
        lj += l[i] == q;
      }
    }
    s += (double) lj / rank;
  }
  return s / nrel;
}

START_TEST (test_ap_random_vs_definition)
{
  GRand *r = g_rand_new_with_seed (1234 + _i);
  guint n = 1 + g_rand_int_range (r, 0, 700);
  float *d = g_new (float, n);
  gint32 *l = g_new (gint32, n);
  guint32 *scratch = g_new (guint32, 2 * n);
  /* few distinct values -> many ties; mixed signs */
  gint levels = g_rand_int_range (r, 1, 40);
  for (guint i = 0; i < n; i++) {
    d[i] = (float) (g_rand_int_range (r, 0, levels) - levels / 3) * 0.37f;
    if (_i % 2)
      d[i] = (float) g_rand_double_range (r, -5, 5);
    l[i] = g_rand_int_range (r, 0, 4);
  }
  for (gint32 q = 0; q < 4; q++) {
    double ref = ap_reference (d, l, n, q);
    ck_assert_double_eq_tol (cbir_average_precision (d, l, n, q, NULL), ref,
        1e-12);
    ck_assert_double_eq_tol (cbir_average_precision (d, l, n, q, scratch),
        ref, 1e-12);
  }
  g_free (d);
  g_free (l);
  g_free (scratch);
  g_rand_free (r);
}
END_TEST

static CbirHit
hit (guint idx, gint32 label, float d)
{
  CbirHit h = { idx, label, d };
  return h;
}

START_TEST (test_precision_recall)
{
  CbirHit h[4] = { hit (0, 1, 0.1f), hit (1, 1, 0.2f), hit (2, 0, 0.3f),
    hit (3, 1, 0.4f)
  };
  ck_assert_double_eq (cbir_precision_at_k (h, 4, 1, 1), 1.0);
  ck_assert_double_eq (cbir_precision_at_k (h, 4, 3, 1), 2.0 / 3.0);
  ck_assert_double_eq (cbir_precision_at_k (h, 4, 4, 0), 0.25);
  /* fewer hits than k: the missing ones are misses */
  ck_assert_double_eq (cbir_precision_at_k (h, 4, 5, 1), 3.0 / 5.0);
  ck_assert_double_eq (cbir_precision_at_k (h, 0, 5, 1), 0.0);

  CbirHit a[3] = { hit (3, 1, 0), hit (9, 1, 0), hit (0, 1, 0) };
  /* exact top-3 = {0,1,2}; approx top-3 = {3,9,0}: 1/3 */
  ck_assert_double_eq_tol (cbir_recall_at_k (h, 4, a, 3, 3), 1.0 / 3.0,
      TOL);
  ck_assert_double_eq (cbir_recall_at_k (h, 4, h, 4, 4), 1.0);
  ck_assert_double_eq (cbir_recall_at_k (h, 4, a, 0, 2), 0.0);
}
END_TEST

START_TEST (test_accumulator)
{
  g_autoptr (CbirMetrics) m = cbir_metrics_new ();
  /* query A (label 1): hits 1,1,0,... ; query B (label 2): hits 0,2 ;
   * query C (label 1): no hits */
  CbirHit ha[10];
  for (guint i = 0; i < 10; i++)
    ha[i] = hit (i, i == 2 ? 0 : 1, 0.1f * (i + 1));
  CbirHit hb[2] = { hit (0, 0, 1.0f), hit (1, 2, 2.0f) };
  cbir_metrics_add (m, 1, 0.75, ha, 10);
  cbir_metrics_add (m, 2, 0.25, hb, 2);
  cbir_metrics_add (m, 1, 0.5, NULL, 0);
  ck_assert_uint_eq (cbir_metrics_get_n_queries (m), 3);
  ck_assert_double_eq_tol (cbir_metrics_get_map (m), 0.5, TOL);
  /* P@1: A 1, B 0, C 0 */
  ck_assert_double_eq_tol (cbir_metrics_get_precision (m, 1), 1.0 / 3, TOL);
  /* P@5: A 4/5, B 1/5, C 0 */
  ck_assert_double_eq_tol (cbir_metrics_get_precision (m, 5), 1.0 / 3, TOL);
  /* P@10: A 9/10, B 1/10 */
  ck_assert_double_eq_tol (cbir_metrics_get_precision (m, 10), 1.0 / 3, TOL);
  /* P@100: A 9/100, B 1/100 */
  ck_assert_double_eq_tol (cbir_metrics_get_precision (m, 100), 10.0 / 300,
      TOL);
  ck_assert_double_eq (cbir_metrics_get_precision (m, 7), -1.0);
  /* votes: A -> 1 (right); B: weights 1/1 (label 0) vs 1/2 -> 0 (wrong);
   * C: none (wrong) */
  ck_assert_double_eq_tol (cbir_metrics_get_vote_accuracy (m), 1.0 / 3, TOL);
  ck_assert_uint_eq (cbir_metrics_get_n_classes (m), 2);
  gint32 label;
  double ap;
  guint nq;
  cbir_metrics_get_class (m, 0, &label, &ap, &nq);
  ck_assert_int_eq (label, 1);
  ck_assert_double_eq_tol (ap, 0.625, TOL);
  ck_assert_uint_eq (nq, 2);
  cbir_metrics_get_class (m, 1, &label, &ap, &nq);
  ck_assert_int_eq (label, 2);
  ck_assert_double_eq_tol (ap, 0.25, TOL);
  ck_assert_uint_eq (nq, 1);
}
END_TEST

static Suite *
metrics_suite (void)
{
  Suite *s = suite_create ("metrics");
  TCase *tc = tcase_create ("core");
  tcase_add_test (tc, test_ap_hand_no_ties);
  tcase_add_test (tc, test_ap_hand_ties);
  tcase_add_test (tc, test_ap_degenerate);
  tcase_add_loop_test (tc, test_ap_random_vs_definition, 0, 20);
  tcase_add_test (tc, test_precision_recall);
  tcase_add_test (tc, test_accumulator);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (metrics_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

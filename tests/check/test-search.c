/* Search: every metric against a brute-force reference (double precision,
 * sorted by (distance, index)) on random data, for every kernel variant
 * this CPU has, single and split-over-threads scans, batches, ties, k > N,
 * the two-stage search, full distance lists and the vote; query expansion
 * and database-side augmentation against a reference of their formula. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cbir/search.h"
#include "cbir/model.h"
#include "cbir/metrics.h"

typedef struct
{
  double d;
  guint idx;
} Ref;

static int
ref_cmp (const void *a, const void *b)
{
  const Ref *x = a, *y = b;
  if (x->d != y->d)
    return x->d < y->d ? -1 : 1;
  return (x->idx > y->idx) - (x->idx < y->idx);
}

static double
ref_distance (CbirMetric m, const float *q, const float *g, guint dim,
    const float *thr)
{
  double s = 0, qq = 0, gg = 0;
  for (guint j = 0; j < dim; j++) {
    if (m == CBIR_METRIC_L2)
      s += ((double) q[j] - g[j]) * ((double) q[j] - g[j]);
    else if (m == CBIR_METRIC_COSINE) {
      s += (double) q[j] * g[j];
      qq += (double) q[j] * q[j];
      gg += (double) g[j] * g[j];
    } else {
      float t = thr ? thr[j] : 0.f;
      s += (q[j] > t) != (g[j] > t);
    }
  }
  if (m == CBIR_METRIC_COSINE)
    return qq > 0 && gg > 0 ? 1.0 - s / sqrt (qq * gg) : 1.0;
  return s;
}

/* Sorted reference list of all items. */
static Ref *
ref_search (CbirMetric m, const float *q, const float *feat, guint n,
    guint dim, const float *thr)
{
  Ref *r = g_new (Ref, n);
  for (guint i = 0; i < n; i++) {
    r[i].d = ref_distance (m, q, feat + (gsize) i * dim, dim, thr);
    r[i].idx = i;
  }
  qsort (r, n, sizeof (Ref), ref_cmp);
  return r;
}

static float *
random_features (GRand *r, guint n, guint dim)
{
  float *f = g_new (float, (gsize) n * dim);
  for (gsize i = 0; i < (gsize) n * dim; i++)
    f[i] = (float) g_rand_double_range (r, -1, 1);
  return f;
}

/* An in-memory float gallery (features + median-threshold bits). */
static CbirGallery *
make_gallery (const float *feat, guint n, guint dim, const gint32 *labels)
{
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("test-fp",
      CBIR_CODE_FLOAT, dim, FALSE);
  for (guint i = 0; i < n; i++)
    cbir_gallery_builder_add (b, feat + (gsize) i * dim,
        labels ? labels[i] : (gint32) (i % 7), NULL, NULL);
  return cbir_gallery_builder_build (b);
}

/* Checks hits against the reference: same length, the hit at rank i has
 * the reference's i-th distance (float tolerance: near ties may swap),
 * reported distances match, indices distinct; with exact_order, the very
 * same indices. */
static void
check_hits_full (const CbirHit *h, guint nh, const Ref *ref, guint n,
    guint n_gallery, guint k, const gint32 *labels, gboolean exact_order,
    double tol)
{
  ck_assert_uint_eq (nh, MIN (k, n));
  for (guint i = 0; i < nh; i++) {
    ck_assert_uint_lt (h[i].index, n_gallery);
    ck_assert_int_eq (h[i].label, labels[h[i].index]);
    ck_assert_msg (fabs (h[i].distance - ref[i].d) <= tol * (1 + fabs (ref[i].d)),
        "rank %u: distance %g, reference %g", i, h[i].distance, ref[i].d);
    if (exact_order)
      ck_assert_uint_eq (h[i].index, ref[i].idx);
    if (i > 0) {
      ck_assert (h[i].distance >= h[i - 1].distance);
      if (h[i].distance == h[i - 1].distance)
        ck_assert_uint_gt (h[i].index, h[i - 1].index);
    }
    for (guint j = 0; j < i; j++)
      ck_assert_uint_ne (h[i].index, h[j].index);
  }
}

static void
check_hits (const CbirHit *h, guint nh, const Ref *ref, guint n, guint k,
    const gint32 *labels, gboolean exact_order, double tol)
{
  check_hits_full (h, nh, ref, n, n, k, labels, exact_order, tol);
}

static const char *const isas[] = { "generic", "popcnt", "avx2", "avx512" };

/* Float metrics: every ISA, single (plain and split over threads) and
 * batched. */
static void
run_float_metric (CbirMetric metric, guint n, guint dim, guint k)
{
  GRand *r = g_rand_new_with_seed (n * 31 + dim);
  float *feat = random_features (r, n, dim);
  gint32 *labels = g_new (gint32, n);
  for (guint i = 0; i < n; i++)
    labels[i] = g_rand_int_range (r, 0, 5);
  guint nq = 9;
  float *q = random_features (r, nq, dim);
  g_autoptr (CbirGallery) g = make_gallery (feat, n, dim, labels);
  CbirHit *hits = g_new0 (CbirHit, (gsize) nq * k);
  CbirHit *bh = g_new0 (CbirHit, (gsize) nq * k);
  guint *nb = g_new0 (guint, nq);
  float *dist = g_new (float, (gsize) nq * n);
  guint tried = 0;

  for (guint v = 0; v < G_N_ELEMENTS (isas); v++) {
    if (!cbir_search_set_isa (isas[v]))
      continue;
    tried++;
    for (int split = 0; split < 2; split++) {
      g_setenv ("CBIR_SEARCH_PAR_BYTES", split ? "1" : "1000000000", TRUE);
      g_autoptr (GError) err = NULL;
      g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g, metric, 0, 2,
          &err);
      ck_assert_msg (s != NULL, "%s", err ? err->message : "");
      for (guint i = 0; i < nq; i++) {
        const float *qi = q + (gsize) i * dim;
        Ref *ref = ref_search (metric, qi, feat, n, dim, NULL);
        guint nh = cbir_searcher_search (s, qi, k, hits + (gsize) i * k);
        check_hits (hits + (gsize) i * k, nh, ref, n, k, labels, FALSE,
            1e-4);
        g_free (ref);
      }
      /* batch == single */
      cbir_searcher_search_batch (s, q, nq, k, bh, nb);
      for (guint i = 0; i < nq; i++) {
        ck_assert_uint_eq (nb[i], MIN (k, n));
        for (guint j = 0; j < nb[i]; j++) {
          ck_assert_uint_eq (bh[i * k + j].index, hits[i * k + j].index);
          ck_assert_float_eq_tol (bh[i * k + j].distance,
              hits[i * k + j].distance, 1e-4f * (1 + fabsf (hits[i * k +
                          j].distance)));
        }
      }
      /* full distance lists */
      cbir_searcher_distances_batch (s, q, nq, dist);
      for (guint i = 0; i < nq; i++) {
        float one[n];
        cbir_searcher_distances (s, q + (gsize) i * dim, one);
        for (guint j = 0; j < n; j++) {
          double rd = ref_distance (metric, q + (gsize) i * dim,
              feat + (gsize) j * dim, dim, NULL);
          ck_assert_double_eq_tol (dist[(gsize) i * n + j], rd,
              1e-4 * (1 + fabs (rd)));
          ck_assert_double_eq_tol (one[j], rd, 1e-4 * (1 + fabs (rd)));
        }
      }
    }
  }
  ck_assert_uint_ge (tried, 1);
  cbir_search_set_isa (NULL);
  g_unsetenv ("CBIR_SEARCH_PAR_BYTES");
  g_free (feat);
  g_free (labels);
  g_free (q);
  g_free (hits);
  g_free (bh);
  g_free (nb);
  g_free (dist);
  g_rand_free (r);
}

START_TEST (test_l2)
{
  /* dims around the vector width and its remainders; sizes around the
   * scan block */
  run_float_metric (CBIR_METRIC_L2, 700, 37, 10);
  run_float_metric (CBIR_METRIC_L2, 1200, 64, 25);
  run_float_metric (CBIR_METRIC_L2, 257, 3, 5);
}
END_TEST

START_TEST (test_cosine)
{
  run_float_metric (CBIR_METRIC_COSINE, 700, 37, 10);
  run_float_metric (CBIR_METRIC_COSINE, 1100, 128, 12);
}
END_TEST

/* Hamming: distances are small integers, so ties abound and the order
 * must be exactly (distance, index). */
static void
run_hamming (guint n, guint bits, guint k)
{
  GRand *r = g_rand_new_with_seed (n * 7 + bits);
  float *feat = random_features (r, n, bits);
  gint32 *labels = g_new (gint32, n);
  for (guint i = 0; i < n; i++)
    labels[i] = (gint32) (i % 3);
  guint nq = 7;
  float *q = random_features (r, nq, bits);
  g_autoptr (CbirGallery) g = make_gallery (feat, n, bits, labels);
  const float *thr = cbir_gallery_get_bit_thresholds (g);
  ck_assert_ptr_nonnull (thr);
  CbirHit *hits = g_new0 (CbirHit, (gsize) nq * k);
  CbirHit *bh = g_new0 (CbirHit, (gsize) nq * k);
  guint *nb = g_new0 (guint, nq);
  guint8 *packed = g_new (guint8, (bits + 7) / 8);
  guint tried = 0;

  for (guint v = 0; v < G_N_ELEMENTS (isas); v++) {
    if (!cbir_search_set_isa (isas[v]))
      continue;
    tried++;
    for (int split = 0; split < 2; split++) {
      g_setenv ("CBIR_SEARCH_PAR_BYTES", split ? "1" : "1000000000", TRUE);
      g_autoptr (GError) err = NULL;
      g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g,
          CBIR_METRIC_HAMMING, 0, 2, &err);
      ck_assert_msg (s != NULL, "%s", err ? err->message : "");
      for (guint i = 0; i < nq; i++) {
        const float *qi = q + (gsize) i * bits;
        Ref *ref = ref_search (CBIR_METRIC_HAMMING, qi, feat, n, bits, thr);
        guint nh = cbir_searcher_search (s, qi, k, hits + (gsize) i * k);
        check_hits (hits + (gsize) i * k, nh, ref, n, k, labels, TRUE, 0);
        /* pre-packed query */
        CbirHit h2[k];
        cbir_codes_pack_bits (qi, 1, bits, thr, packed);
        guint n2 = cbir_searcher_search_codes (s, packed, k, h2);
        check_hits (h2, n2, ref, n, k, labels, TRUE, 0);
        /* full list */
        float one[n];
        cbir_searcher_distances (s, qi, one);
        for (guint j = 0; j < n; j++)
          ck_assert_float_eq (one[j], (float) ref_distance
              (CBIR_METRIC_HAMMING, qi, feat + (gsize) j * bits, bits, thr));
        g_free (ref);
      }
      cbir_searcher_search_batch (s, q, nq, k, bh, nb);
      for (guint i = 0; i < nq; i++) {
        ck_assert_uint_eq (nb[i], MIN (k, n));
        ck_assert (memcmp (bh + (gsize) i * k, hits + (gsize) i * k,
                sizeof (CbirHit) * nb[i]) == 0);
      }
    }
  }
  ck_assert_uint_ge (tried, 1);
  cbir_search_set_isa (NULL);
  g_unsetenv ("CBIR_SEARCH_PAR_BYTES");
  g_free (feat);
  g_free (labels);
  g_free (q);
  g_free (hits);
  g_free (bh);
  g_free (nb);
  g_free (packed);
  g_rand_free (r);
}

START_TEST (test_hamming)
{
  /* 64 bits (one word), 128 (two), 392 (49 bytes: tail), 20 (< 8 bytes) */
  run_hamming (1500, 64, 10);
  run_hamming (900, 128, 40);
  run_hamming (1100, 392, 15);
  run_hamming (600, 20, 30);
  run_hamming (600, 72, 7);
  /* past one 64-byte vector: with and without a partial tail */
  run_hamming (400, 600, 9);
  run_hamming (300, 1024, 5);
}
END_TEST

START_TEST (test_ties_and_k_gt_n)
{
  const guint n = 30, dim = 5;
  float feat[30 * 5];
  gint32 labels[30];
  GRand *r = g_rand_new_with_seed (5);
  for (guint i = 0; i < n * dim; i++)
    feat[i] = (float) g_rand_double_range (r, 2, 3);
  g_rand_free (r);
  float q[5] = { 0.5f, -0.25f, 0, 1, 0.125f };
  /* items 21, 4, 13 are the query itself; 9 and 2 are the same point
   * farther away */
  const guint dup[] = { 21, 4, 13 };
  for (guint i = 0; i < 3; i++)
    memcpy (feat + dup[i] * dim, q, sizeof (q));
  for (guint j = 0; j < dim; j++)
    feat[9 * dim + j] = feat[2 * dim + j] = q[j] + 0.5f;
  for (guint i = 0; i < n; i++)
    labels[i] = (gint32) i;
  g_autoptr (CbirGallery) g = make_gallery (feat, n, dim, labels);
  for (CbirMetric m = CBIR_METRIC_L2; m <= CBIR_METRIC_COSINE; m++) {
    g_autoptr (CbirSearcher) s = cbir_searcher_new (g, m, 0, NULL);
    CbirHit h[40];
    guint nh = cbir_searcher_search (s, q, 5, h);
    ck_assert_uint_eq (nh, 5);
    ck_assert_uint_eq (h[0].index, 4);
    ck_assert_uint_eq (h[1].index, 13);
    ck_assert_uint_eq (h[2].index, 21);
    if (m == CBIR_METRIC_L2) {
      ck_assert_float_eq (h[0].distance, 0.f);
      ck_assert_uint_eq (h[3].index, 2);
      ck_assert_uint_eq (h[4].index, 9);
    }
    ck_assert_float_eq (h[0].distance, h[1].distance);
    /* k > N: everything, sorted */
    nh = cbir_searcher_search (s, q, 40, h);
    ck_assert_uint_eq (nh, n);
    for (guint i = 1; i < nh; i++)
      ck_assert (h[i].distance > h[i - 1].distance
          || (h[i].distance == h[i - 1].distance
              && h[i].index > h[i - 1].index));
    /* batch of one and k = 0 */
    guint nb = 99;
    cbir_searcher_search_batch (s, q, 1, 40, h, &nb);
    ck_assert_uint_eq (nb, n);
    ck_assert_uint_eq (cbir_searcher_search (s, q, 0, h), 0);
  }
}
END_TEST

/* Two-stage: equals the exact re-rank of the Hamming top-M (computed
 * here from the reference), and with M = N it is the exact search. */
START_TEST (test_two_stage)
{
  const guint n = 2000, dim = 48, k = 10, nq = 6;
  GRand *r = g_rand_new_with_seed (77);
  float *feat = random_features (r, n, dim);
  float *q = random_features (r, nq, dim);
  gint32 *labels = g_new0 (gint32, n);
  g_autoptr (CbirGallery) g = make_gallery (feat, n, dim, labels);
  const float *thr = cbir_gallery_get_bit_thresholds (g);
  const guint shortlists[] = { 50, 300, n };
  for (guint si = 0; si < G_N_ELEMENTS (shortlists); si++) {
    guint M = shortlists[si];
    g_autoptr (GError) err = NULL;
    g_autoptr (CbirSearcher) s = cbir_searcher_new (g, CBIR_METRIC_L2, M,
        &err);
    ck_assert_msg (s != NULL, "%s", err ? err->message : "");
    CbirHit h[10], hb[10 * 6];
    guint nb[6];
    cbir_searcher_search_batch (s, q, nq, k, hb, nb);
    double recall = 0;
    for (guint i = 0; i < nq; i++) {
      const float *qi = q + (gsize) i * dim;
      Ref *ham = ref_search (CBIR_METRIC_HAMMING, qi, feat, n, dim, thr);
      Ref *sl = g_new (Ref, M);
      for (guint j = 0; j < M; j++) {
        sl[j].idx = ham[j].idx;
        sl[j].d = ref_distance (CBIR_METRIC_L2, qi,
            feat + (gsize) ham[j].idx * dim, dim, NULL);
      }
      qsort (sl, M, sizeof (Ref), ref_cmp);
      guint nh = cbir_searcher_search (s, qi, k, h);
      check_hits_full (h, nh, sl, M, n, k, labels, TRUE, 1e-4);
      ck_assert_uint_eq (nb[i], nh);
      for (guint j = 0; j < nh; j++)
        ck_assert_uint_eq (hb[i * k + j].index, h[j].index);
      /* recall against the exact search */
      Ref *ex = ref_search (CBIR_METRIC_L2, qi, feat, n, dim, NULL);
      CbirHit eh[10];
      for (guint j = 0; j < k; j++)
        eh[j].index = ex[j].idx;
      recall += cbir_recall_at_k (eh, k, h, nh, k);
      /* the full list ranks the shortlist first, by exact distance */
      float *full = g_new (float, n);
      cbir_searcher_distances (s, qi, full);
      for (guint j = 0; j < M; j++)
        ck_assert_double_eq_tol (full[sl[j].idx], sl[j].d,
            1e-4 * (1 + sl[j].d));
      float maxsl = 0;
      for (guint j = 0; j < M; j++)
        maxsl = MAX (maxsl, full[sl[j].idx]);
      guint below = 0;
      for (guint j = 0; j < n; j++)
        below += full[j] <= maxsl;
      ck_assert_uint_eq (below, M);
      g_free (full);
      g_free (ex);
      g_free (ham);
      g_free (sl);
    }
    recall /= nq;
    if (M == n)
      ck_assert_double_eq (recall, 1.0);
    else
      ck_assert (recall >= 0.0 && recall <= 1.0);
  }
  /* a shortlist with the Hamming metric itself makes no sense */
  g_autoptr (GError) err = NULL;
  ck_assert_ptr_null (cbir_searcher_new (g, CBIR_METRIC_HAMMING, 10, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_free (feat);
  g_free (q);
  g_free (labels);
  g_rand_free (r);
}
END_TEST

START_TEST (test_bits_only_gallery)
{
  /* a bits gallery (binary model): no features, threshold 0 */
  const guint n = 300, bits = 50;
  GRand *r = g_rand_new_with_seed (3);
  float *feat = random_features (r, n, bits);
  float *q = random_features (r, 1, bits);
  g_rand_free (r);
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
      CBIR_CODE_BITS, bits, FALSE);
  gint32 labels[300];
  for (guint i = 0; i < n; i++) {
    labels[i] = (gint32) (i % 4);
    cbir_gallery_builder_add (b, feat + (gsize) i * bits, labels[i], NULL,
        NULL);
  }
  g_autoptr (CbirGallery) g = cbir_gallery_builder_build (b);
  ck_assert_ptr_null (cbir_gallery_get_features (g));
  ck_assert_uint_eq (cbir_gallery_get_code_bits (g), bits);
  g_autoptr (GError) err = NULL;
  ck_assert_ptr_null (cbir_searcher_new (g, CBIR_METRIC_L2, 0, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_autoptr (CbirSearcher) s = cbir_searcher_new (g, CBIR_METRIC_HAMMING, 0,
      NULL);
  CbirHit h[20];
  guint nh = cbir_searcher_search (s, q, 20, h);
  Ref *ref = ref_search (CBIR_METRIC_HAMMING, q, feat, n, bits, NULL);
  check_hits (h, nh, ref, n, 20, labels, TRUE, 0);
  g_free (ref);
  g_free (feat);
  g_free (q);
}
END_TEST

START_TEST (test_vote)
{
  gint32 label;
  float conf;
  cbir_vote (NULL, 0, &label, &conf);
  ck_assert_int_eq (label, -1);
  ck_assert_float_eq (conf, 0.f);
  CbirHit h[3] = { {0, 2, 0.5f}, {1, 3, 0.1f}, {2, 2, 0.5f} };
  cbir_vote (h, 3, &label, &conf);
  /* weights: label 2: 2 / 0.5 = 4, label 3: 1 / 0.1 = 10 */
  ck_assert_int_eq (label, 3);
  ck_assert_float_eq_tol (conf, 10.f / 14.f, 1e-4f);
  /* a tie goes to the label of the nearer hit */
  CbirHit t[2] = { {5, 7, 1.0f}, {6, 1, 1.0f} };
  cbir_vote (t, 2, &label, &conf);
  ck_assert_int_eq (label, 7);
  ck_assert_float_eq_tol (conf, 0.5f, 1e-6f);
  /* exact match: confidence near 1 */
  CbirHit e[2] = { {5, 4, 0.0f}, {6, 1, 1.0f} };
  cbir_vote (e, 2, &label, &conf);
  ck_assert_int_eq (label, 4);
  ck_assert (conf > 0.999f && conf <= 1.f);
}
END_TEST

/* cbir_vote_local_mean's rule written plainly: for every label, its keys
 * sorted, the mean of its first MIN (k, size); when no label has them, of
 * its first m (the most candidates a label has); the winner's weight share
 * among the k first hits. */
static gint32
local_mean_reference_pass (const CbirHit *h, const float *keys,
    const guint *sizes, guint n, guint k, gboolean *found)
{
  gint32 best = -1;
  double best_mean = INFINITY;
  float *own = g_new (float, MAX (n, 1));

  *found = FALSE;
  for (guint i = 0; i < n; i++) {
    guint c = 0, need = sizes ? MIN (k, MAX (sizes[i], 1)) : k;
    gboolean seen = FALSE;
    for (guint j = 0; j < i; j++)
      seen |= h[j].label == h[i].label;
    if (seen)
      continue;                 /* i: the label's first hit */
    for (guint j = i; j < n; j++)
      if (h[j].label == h[i].label) {
        float key = keys ? keys[j] : h[j].distance;
        own[c++] = isnan (key) ? INFINITY : key;
      }
    if (c < need)
      continue;
    for (guint a = 1; a < c; a++)       /* insertion sort */
      for (guint b = a; b > 0 && own[b - 1] > own[b]; b--) {
        float t = own[b];
        own[b] = own[b - 1];
        own[b - 1] = t;
      }
    double sum = 0;
    for (guint a = 0; a < need; a++)
      sum += own[a];
    /* labels in order of their first hit: a tie keeps the earlier */
    if (!*found || sum / need < best_mean) {
      best = h[i].label;
      best_mean = sum / need;
      *found = TRUE;
    }
  }
  g_free (own);
  return best;
}

static void
local_mean_reference (const CbirHit *h, const float *keys,
    const guint *sizes, guint n, guint k, gint32 *label, float *conf)
{
  gboolean found;
  gint32 best = -1;
  double w = 0, total = 0;

  if (n && k) {
    guint exact = n;
    for (guint i = 0; i < n; i++)
      if (h[i].distance <= 1e-6f && (exact == n
              || h[i].distance < h[exact].distance))
        exact = i;
    best = local_mean_reference_pass (h, keys, sizes, n, k, &found);
    if (exact < n)
      best = h[exact].label;
    else if (!found) {
      guint m = 0;
      for (guint i = 0; i < n; i++) {
        guint c = 0;
        for (guint j = 0; j < n; j++)
          c += h[j].label == h[i].label;
        m = MAX (m, c);
      }
      best = local_mean_reference_pass (h, keys, NULL, n, MIN (m, k),
          &found);
    }
  }
  for (guint i = 0; i < MIN (n, k); i++) {
    double wi = 1.0 / (1e-6f + MAX (h[i].distance, 0.f));
    total += wi;
    if (h[i].label == best)
      w += wi;
  }
  *label = best;
  *conf = total > 0 ? (float) (w / total) : 0.f;
}

START_TEST (test_vote_local_mean)
{
  gint32 label;
  float conf;

  cbir_vote_local_mean (NULL, NULL, NULL, 0, 5, &label, &conf);
  ck_assert_int_eq (label, -1);
  ck_assert_float_eq (conf, 0.f);
  /* A nearest, but B's two are nearer on average: (0.2 + 0.25) / 2 against
   * (0.1 + 0.9) / 2; confidence: B's weight among the 2 first, 5 of 15 */
  CbirHit h[4] = { {0, 1, 0.1f}, {1, 2, 0.2f}, {2, 2, 0.25f}, {3, 1, 0.9f} };
  cbir_vote_local_mean (h, NULL, NULL, 4, 2, &label, &conf);
  ck_assert_int_eq (label, 2);
  ck_assert_float_eq_tol (conf, 1.f / 3.f, 1e-4f);
  cbir_vote_local_mean (h, NULL, NULL, 4, 0, &label, &conf);
  ck_assert_int_eq (label, -1);
  /* k 1: the nearest */
  cbir_vote_local_mean (h, NULL, NULL, 4, 1, &label, &conf);
  ck_assert_int_eq (label, 1);
  ck_assert_float_eq_tol (conf, 1.f, 1e-6f);
  /* no label has k: m is the most any has (here 1), the nearest wins */
  CbirHit one[3] = { {0, 5, 0.3f}, {1, 6, 0.1f}, {2, 7, 0.2f} };
  cbir_vote_local_mean (one, NULL, NULL, 3, 5, &label, &conf);
  ck_assert_int_eq (label, 6);
  /* a label with fewer than m candidates does not compete */
  CbirHit few[4] = { {0, 1, 0.1f}, {1, 2, 0.3f}, {2, 2, 0.4f}, {3, 2, 0.5f} };
  cbir_vote_local_mean (few, NULL, NULL, 4, 3, &label, &conf);
  ck_assert_int_eq (label, 2);
  /* the keys rank, not the distances; a NaN key counts as +inf */
  CbirHit kh[3] = { {0, 3, 0.2f}, {1, 4, 0.1f}, {2, 5, 0.1f} };
  float keys[3] = { -1.f, 0.5f, NAN };
  cbir_vote_local_mean (kh, keys, NULL, 3, 1, &label, &conf);
  ck_assert_int_eq (label, 3);
  ck_assert_float_eq_tol (conf, 1.f, 1e-6f);
  keys[0] = NAN;
  cbir_vote_local_mean (kh, keys, NULL, 3, 1, &label, &conf);
  ck_assert_int_eq (label, 4);
  ck_assert_float_eq (conf, 0.f);       /* none of the k first is 4 */
  /* sizes: a label of two items is judged by its two, one of five by its
   * k = 3 first; label 2: (0.2 + 0.3) / 2 against label 1: (0.1 + 0.5 + 0.6)
   * / 3. Without the sizes label 2 (fewer than 3) does not compete. */
  CbirHit sm[5] = { {0, 1, 0.1f}, {1, 2, 0.2f}, {2, 2, 0.3f}, {3, 1, 0.5f},
  {4, 1, 0.6f}
  };
  guint sizes[5] = { 5, 2, 2, 5, 5 };
  cbir_vote_local_mean (sm, NULL, sizes, 5, 3, &label, &conf);
  ck_assert_int_eq (label, 2);
  cbir_vote_local_mean (sm, NULL, NULL, 5, 3, &label, &conf);
  ck_assert_int_eq (label, 1);
  /* the query is an item (distance 0): its label whatever the means */
  CbirHit ex[4] = { {0, 1, 0.1f}, {1, 1, 0.1f}, {2, 6, 0.f}, {3, 1, 0.1f} };
  cbir_vote_local_mean (ex, NULL, NULL, 4, 3, &label, &conf);
  ck_assert_int_eq (label, 6);
  /* label -1 (unlabelled items) is a label like any other */
  CbirHit un[3] = { {0, -1, 0.1f}, {1, -1, 0.1f}, {2, 3, 0.2f} };
  cbir_vote_local_mean (un, NULL, NULL, 3, 2, &label, &conf);
  ck_assert_int_eq (label, -1);
  ck_assert_float_eq_tol (conf, 1.f, 1e-6f);
  /* a tie: the label whose best candidate ranks first */
  CbirHit t[4] = { {0, 8, 0.2f}, {1, 9, 0.3f}, {2, 9, 0.3f}, {3, 8, 0.4f} };
  cbir_vote_local_mean (t, NULL, NULL, 4, 2, &label, &conf);
  ck_assert_int_eq (label, 8);

  /* against the rule written plainly: random candidates, repeated keys */
  GRand *r = g_rand_new_with_seed (11);
  for (guint trial = 0; trial < 2000; trial++) {
    guint n = g_rand_int_range (r, 1, 41), k = g_rand_int_range (r, 1, 9);
    CbirHit c[40];
    float ck[40];
    gint32 want;
    float want_conf;
    gboolean with_keys = g_rand_boolean (r), with_sizes = g_rand_boolean (r);
    guint sz[40], label_size[7];
    for (guint i = 0; i < 7; i++)       /* labels -2 .. 4: 0 to 9 items */
      label_size[i] = g_rand_int_range (r, 0, 10);
    for (guint i = 0; i < n; i++) {
      c[i].index = i;
      c[i].label = g_rand_int_range (r, -2, 5);
      c[i].distance = g_rand_int_range (r, 0, 8) * 0.25f;
      ck[i] = g_rand_int_range (r, -4, 8) * 0.125f;
      sz[i] = label_size[c[i].label + 2];
    }
    local_mean_reference (c, with_keys ? ck : NULL, with_sizes ? sz : NULL,
        n, k, &want, &want_conf);
    cbir_vote_local_mean (c, with_keys ? ck : NULL, with_sizes ? sz : NULL,
        n, k, &label, &conf);
    ck_assert_int_eq (label, want);
    ck_assert_float_eq_tol (conf, want_conf, 1e-5f);
  }
  g_rand_free (r);
}
END_TEST

START_TEST (test_metric_names)
{
  CbirMetric m;
  for (CbirMetric i = CBIR_METRIC_L2; i <= CBIR_METRIC_HAMMING; i++) {
    ck_assert (cbir_metric_from_string (cbir_metric_to_string (i), &m));
    ck_assert_int_eq (m, i);
  }
  ck_assert (!cbir_metric_from_string ("manhattan", &m));
  ck_assert (!cbir_search_set_isa ("nonsense"));
  ck_assert (cbir_search_set_isa ("generic"));
  ck_assert_str_eq (cbir_search_get_isa (), "generic");
  cbir_search_set_isa (NULL);
}
END_TEST

/* ---- query expansion and database-side augmentation ---- */

/* Reference expansion (double precision, straight from the formula in
 * search.h) of v with the first m items of the sorted list ref. */
static void
ref_expand (CbirMetric m, const float *v, const float *feat, guint dim,
    const Ref *ref, guint nm, double alpha, double *out)
{
  double vv = 0;
  for (guint j = 0; j < dim; j++)
    vv += (double) v[j] * v[j];
  double vn = sqrt (vv), wsum = 1;
  for (guint j = 0; j < dim; j++)
    out[j] = m == CBIR_METRIC_COSINE ? (vn > 0 ? v[j] / vn : 0) : v[j];
  for (guint i = 0; i < nm; i++) {
    const float *g = feat + (gsize) ref[i].idx * dim;
    double gg = 0, vg = 0;
    for (guint j = 0; j < dim; j++) {
      gg += (double) g[j] * g[j];
      vg += (double) v[j] * g[j];
    }
    double gn = sqrt (gg);
    double c = vn > 0 && gn > 0 ? vg / (vn * gn) : 0;
    double w = pow (c > 0 ? c : 0, alpha);
    for (guint j = 0; j < dim; j++)
      out[j] += m == CBIR_METRIC_COSINE ? w * g[j] / gn : w * g[j];
    wsum += w;
  }
  double nn = 0;
  for (guint j = 0; j < dim; j++)
    nn += out[j] * out[j];
  for (guint j = 0; j < dim; j++)
    out[j] = m == CBIR_METRIC_COSINE ? (nn > 0 ? out[j] / sqrt (nn) : 0)
        : out[j] / wsum;
}

static void
check_vec (const float *got, const double *want, guint dim, double tol,
    const char *what)
{
  for (guint j = 0; j < dim; j++)
    ck_assert_msg (fabs (got[j] - want[j]) <= tol * (1 + fabs (want[j])),
        "%s[%u]: %.9g, reference %.9g", what, j, got[j], want[j]);
}

/* QE: the expanded query against the reference expansion, search == the
 * reference search of that vector, single == batch == distance lists,
 * for both float metrics, several k (one beyond N) and alphas. */
START_TEST (test_query_expansion)
{
  const guint n = 150, dim = 13, nq = 7, k = 10;
  GRand *r = g_rand_new_with_seed (2024);
  float *feat = random_features (r, n, dim);
  float *q = random_features (r, nq, dim);
  gint32 *labels = g_new (gint32, n);
  for (guint i = 0; i < n; i++)
    labels[i] = (gint32) (i % 4);
  g_autoptr (CbirGallery) g = make_gallery (feat, n, dim, labels);
  const guint qks[] = { 1, 5, 400 };
  const float alphas[] = { 3.f, 0.f, 1.5f };
  CbirHit hits[10], bh[7 * 10];
  guint nb[7];
  float *eq = g_new (float, (gsize) nq * dim);
  float *dist = g_new (float, (gsize) nq * n);
  float one[150];
  double want[13];
  for (CbirMetric m = CBIR_METRIC_L2; m <= CBIR_METRIC_COSINE; m++) {
    for (guint a = 0; a < G_N_ELEMENTS (qks); a++) {
      g_autoptr (GError) err = NULL;
      g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g, m, 0, 2, &err);
      ck_assert_ptr_nonnull (s);
      ck_assert (cbir_searcher_set_query_expansion (s, qks[a], alphas[a],
              &err));
      float got_alpha = -1;
      ck_assert_uint_eq (cbir_searcher_get_query_expansion (s, &got_alpha),
          qks[a]);
      ck_assert_float_eq (got_alpha, alphas[a]);
      for (guint i = 0; i < nq; i++) {
        const float *qi = q + (gsize) i * dim;
        Ref *ref = ref_search (m, qi, feat, n, dim, NULL);
        ref_expand (m, qi, feat, dim, ref, MIN (qks[a], n), alphas[a],
            want);
        g_free (ref);
        float *e = eq + (gsize) i * dim;
        cbir_searcher_expand_query (s, qi, e);
        check_vec (e, want, dim, 1e-5, "expanded query");
        /* the search is the reference search of the expanded query */
        ref = ref_search (m, e, feat, n, dim, NULL);
        guint nh = cbir_searcher_search (s, qi, k, hits);
        check_hits (hits, nh, ref, n, k, labels, FALSE, 1e-4);
        g_free (ref);
        /* deterministic: the same again */
        CbirHit again[10];
        ck_assert_uint_eq (cbir_searcher_search (s, qi, k, again), nh);
        ck_assert (memcmp (again, hits, sizeof (CbirHit) * nh) == 0);
        cbir_searcher_distances (s, qi, one);
        for (guint j = 0; j < n; j++) {
          double rd = ref_distance (m, e, feat + (gsize) j * dim, dim, NULL);
          ck_assert_double_eq_tol (one[j], rd, 1e-4 * (1 + fabs (rd)));
        }
        memcpy (bh + (gsize) i * k, hits, sizeof (hits));
      }
      /* batch == single */
      CbirHit bb[7 * 10];
      cbir_searcher_search_batch (s, q, nq, k, bb, nb);
      for (guint i = 0; i < nq; i++) {
        ck_assert_uint_eq (nb[i], k);
        for (guint j = 0; j < k; j++) {
          ck_assert_uint_eq (bb[i * k + j].index, bh[i * k + j].index);
          ck_assert_float_eq_tol (bb[i * k + j].distance,
              bh[i * k + j].distance, 1e-5f);
        }
      }
      cbir_searcher_distances_batch (s, q, nq, dist);
      for (guint i = 0; i < nq; i++)
        for (guint j = 0; j < n; j++) {
          double rd = ref_distance (m, eq + (gsize) i * dim,
              feat + (gsize) j * dim, dim, NULL);
          ck_assert_double_eq_tol (dist[(gsize) i * n + j], rd,
              1e-4 * (1 + fabs (rd)));
        }
    }
  }
  g_free (eq);
  g_free (dist);
  g_free (feat);
  g_free (q);
  g_free (labels);
  g_rand_free (r);
}
END_TEST

/* QE off (never set, or set back to 0) is the plain search, bit for bit;
 * a shortlist of N with QE equals the exact search with QE; Hamming and
 * bad alphas are refused. */
START_TEST (test_query_expansion_off_and_refused)
{
  const guint n = 300, dim = 24, nq = 6, k = 8;
  GRand *r = g_rand_new_with_seed (99);
  float *feat = random_features (r, n, dim);
  float *q = random_features (r, nq, dim);
  g_autoptr (CbirGallery) g = make_gallery (feat, n, dim, NULL);
  CbirHit a[6 * 8], b[6 * 8], c[6 * 8];
  for (CbirMetric m = CBIR_METRIC_L2; m <= CBIR_METRIC_COSINE; m++) {
    g_autoptr (CbirSearcher) plain = cbir_searcher_new (g, m, 0, NULL);
    g_autoptr (CbirSearcher) s = cbir_searcher_new (g, m, 0, NULL);
    ck_assert_uint_eq (cbir_searcher_get_query_expansion (s, NULL), 0);
    ck_assert (cbir_searcher_set_query_expansion (s, 5, 3.f, NULL));
    cbir_searcher_search_batch (s, q, nq, k, c, NULL);
    ck_assert (cbir_searcher_set_query_expansion (s, 0, 3.f, NULL));
    cbir_searcher_search_batch (plain, q, nq, k, a, NULL);
    cbir_searcher_search_batch (s, q, nq, k, b, NULL);
    ck_assert (memcmp (a, b, sizeof (a)) == 0);
    /* expansion changes something on random data */
    ck_assert (memcmp (a, c, sizeof (a)) != 0);
    for (guint i = 0; i < nq; i++) {
      /* single: the same hits (distances to float rounding of the
       * non-GEMM path) */
      ck_assert_uint_eq (cbir_searcher_search (s, q + i * dim, k, b), k);
      for (guint j = 0; j < k; j++) {
        ck_assert_uint_eq (a[i * k + j].index, b[j].index);
        ck_assert_float_eq_tol (a[i * k + j].distance, b[j].distance, 1e-5f);
      }
      float e[24];
      cbir_searcher_expand_query (s, q + i * dim, e);
      ck_assert (memcmp (e, q + i * dim, sizeof (e)) == 0);
    }
    /* two-stage with the whole gallery shortlisted == exact, with QE */
    g_autoptr (CbirSearcher) ts = cbir_searcher_new (g, m, n, NULL);
    ck_assert (cbir_searcher_set_query_expansion (ts, 5, 3.f, NULL));
    cbir_searcher_search_batch (ts, q, nq, k, b, NULL);
    for (guint i = 0; i < nq * k; i++) {
      ck_assert_uint_eq (b[i].index, c[i].index);
      ck_assert_float_eq_tol (b[i].distance, c[i].distance, 1e-5f);
    }
    /* bad alpha */
    g_autoptr (GError) err = NULL;
    ck_assert (!cbir_searcher_set_query_expansion (s, 5, -1.f, &err));
    ck_assert (g_error_matches (err, CBIR_ERROR,
            CBIR_ERROR_INVALID_ARGUMENT));
    g_clear_error (&err);
    ck_assert (!cbir_searcher_set_query_expansion (s, 5, NAN, &err));
    ck_assert_uint_eq (cbir_searcher_get_query_expansion (s, NULL), 0);
  }
  g_autoptr (CbirSearcher) h = cbir_searcher_new (g, CBIR_METRIC_HAMMING, 0,
      NULL);
  g_autoptr (GError) err = NULL;
  ck_assert (!cbir_searcher_set_query_expansion (h, 3, 3.f, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED));
  ck_assert (strstr (err->message, "hamming"));
  ck_assert (cbir_searcher_set_query_expansion (h, 0, 3.f, NULL));
  g_free (feat);
  g_free (q);
  g_rand_free (r);
}
END_TEST

/* Reference DBA of item i: its k nearest others (ties by index). */
static void
ref_dba_item (CbirMetric m, const float *feat, guint n, guint dim, guint i,
    guint k, double alpha, double *out)
{
  Ref *ref = ref_search (m, feat + (gsize) i * dim, feat, n, dim, NULL);
  Ref *others = g_new (Ref, n);
  guint no = 0;
  for (guint j = 0; j < n; j++)
    if (ref[j].idx != i)
      others[no++] = ref[j];
  ref_expand (m, feat + (gsize) i * dim, feat, dim, others, MIN (k, no),
      alpha, out);
  g_free (others);
  g_free (ref);
}

/* DBA against the reference for both metrics, several k (one beyond N),
 * alphas and thread counts; deterministic; N = 1 and 0; duplicates. */
START_TEST (test_dba)
{
  const guint n = 120, dim = 13;
  GRand *r = g_rand_new_with_seed (31337);
  float *feat = random_features (r, n, dim);
  float *out = g_new (float, (gsize) n * dim);
  float *out2 = g_new (float, (gsize) n * dim);
  double want[13];
  const guint ks[] = { 1, 4, 500 };
  const float alphas[] = { 3.f, 1.f, 3.f };
  for (CbirMetric m = CBIR_METRIC_L2; m <= CBIR_METRIC_COSINE; m++) {
    for (guint a = 0; a < G_N_ELEMENTS (ks); a++) {
      g_autoptr (GError) err = NULL;
      ck_assert_msg (cbir_dba_compute (feat, n, dim, m, ks[a], alphas[a], 2,
              out, &err), "%s", err ? err->message : "");
      for (guint i = 0; i < n; i++) {
        ref_dba_item (m, feat, n, dim, i, ks[a], alphas[a], want);
        check_vec (out + (gsize) i * dim, want, dim, 1e-5, "dba");
      }
      ck_assert (cbir_dba_compute (feat, n, dim, m, ks[a], alphas[a], 1,
              out2, NULL));
      ck_assert (memcmp (out, out2, sizeof (float) * n * dim) == 0);
    }
    /* one item: itself (normalised for cosine); none: nothing to do */
    ck_assert (cbir_dba_compute (feat, 1, dim, m, 5, 3.f, 0, out, NULL));
    ref_dba_item (m, feat, 1, dim, 0, 5, 3.f, want);
    check_vec (out, want, dim, 1e-6, "dba n=1");
    ck_assert (cbir_dba_compute (NULL, 0, dim, m, 5, 3.f, 0, NULL, NULL));
  }
  /* duplicates: item 7 == 3 == 11; their augmented vectors are equal and
   * each excludes only itself */
  memcpy (feat + 3 * dim, feat + 7 * dim, sizeof (float) * dim);
  memcpy (feat + 11 * dim, feat + 7 * dim, sizeof (float) * dim);
  ck_assert (cbir_dba_compute (feat, n, dim, CBIR_METRIC_COSINE, 2, 3.f, 0,
          out, NULL));
  for (guint i = 0; i < n; i++) {
    ref_dba_item (CBIR_METRIC_COSINE, feat, n, dim, i, 2, 3.f, want);
    check_vec (out + (gsize) i * dim, want, dim, 1e-5, "dba duplicates");
  }
  ck_assert (memcmp (out + 3 * dim, out + 7 * dim, sizeof (float) * dim)
      == 0);
  /* refused: Hamming, bad alpha */
  g_autoptr (GError) err = NULL;
  ck_assert (!cbir_dba_compute (feat, n, dim, CBIR_METRIC_HAMMING, 2, 3.f,
          0, out, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED));
  g_clear_error (&err);
  ck_assert (!cbir_dba_compute (feat, n, dim, CBIR_METRIC_L2, 2, -2.f, 0,
          out, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_free (out);
  g_free (out2);
  g_free (feat);
  g_rand_free (r);
}
END_TEST

/* DBA over more items than one GEMM block of queries and gallery (256 x
 * 2048), spot-checked against the reference. */
START_TEST (test_dba_blocks)
{
  const guint n = 2300, dim = 8, k = 3;
  GRand *r = g_rand_new_with_seed (4);
  float *feat = random_features (r, n, dim);
  float *out = g_new (float, (gsize) n * dim);
  double want[8];
  ck_assert (cbir_dba_compute (feat, n, dim, CBIR_METRIC_COSINE, k, 3.f, 2,
          out, NULL));
  for (guint i = 0; i < n; i += 37) {
    ref_dba_item (CBIR_METRIC_COSINE, feat, n, dim, i, k, 3.f, want);
    check_vec (out + (gsize) i * dim, want, dim, 1e-5, "dba blocks");
  }
  g_free (out);
  g_free (feat);
  g_rand_free (r);
}
END_TEST

/* Batched L2 over several gallery blocks and query tasks, with exact
 * ties everywhere: small-integer features make every distance an exact
 * integer, so the order (distance, index) is fully determined. The batch
 * must equal a brute-force reference and the single search exactly, on
 * every ISA, with one and two threads. */
START_TEST (test_batch_blocks_ties)
{
  const guint n = 5000, dim = 8, nq = 101;
  GRand *r = g_rand_new_with_seed (77);
  float *feat = g_new (float, (gsize) n * dim);
  for (gsize i = 0; i < (gsize) n * dim; i++)
    feat[i] = (float) g_rand_int_range (r, 0, 4);
  gint32 *labels = g_new (gint32, n);
  for (guint i = 0; i < n; i++)
    labels[i] = (gint32) (i % 7);
  float *q = g_new (float, (gsize) nq * dim);
  for (guint i = 0; i < nq; i++)
    for (guint j = 0; j < dim; j++)
      q[i * dim + j] = i % 3 == 0 ? feat[(gsize) (i * 37 % n) * dim + j]
          : (float) g_rand_int_range (r, -1, 5);
  g_rand_free (r);
  g_autoptr (CbirGallery) g = make_gallery (feat, n, dim, labels);
  Ref *ref = g_new (Ref, n);
  const guint ks[] = { 1, 10, 300 };
  CbirHit *bh = g_new (CbirHit, (gsize) nq * 300);
  CbirHit one[300];
  guint *nb = g_new (guint, nq);
  guint tried = 0;
  for (guint v = 0; v < G_N_ELEMENTS (isas); v++) {
    if (!cbir_search_set_isa (isas[v]))
      continue;
    tried++;
    for (guint threads = 1; threads <= 2; threads++) {
      g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g,
          CBIR_METRIC_L2, 0, threads, NULL);
      ck_assert (s != NULL);
      for (guint kk = 0; kk < G_N_ELEMENTS (ks); kk++) {
        guint k = ks[kk];
        cbir_searcher_search_batch (s, q, nq, k, bh, nb);
        for (guint i = 0; i < nq; i++) {
          const float *qi = q + (gsize) i * dim;
          for (guint j = 0; j < n; j++) {
            double d = 0;
            for (guint c = 0; c < dim; c++) {
              double t = (double) qi[c] - feat[(gsize) j * dim + c];
              d += t * t;
            }
            ref[j].d = d;
            ref[j].idx = j;
          }
          qsort (ref, n, sizeof (Ref), ref_cmp);
          guint m = cbir_searcher_search (s, qi, k, one);
          ck_assert_uint_eq (nb[i], k);
          ck_assert_uint_eq (m, k);
          for (guint j = 0; j < k; j++) {
            const CbirHit *h = &bh[(gsize) i * k + j];
            ck_assert_uint_eq (h->index, ref[j].idx);
            ck_assert_float_eq (h->distance, (float) ref[j].d);
            ck_assert_int_eq (h->label, labels[ref[j].idx]);
            ck_assert_uint_eq (one[j].index, h->index);
            ck_assert_float_eq (one[j].distance, h->distance);
          }
        }
      }
    }
  }
  ck_assert_uint_ge (tried, 1);
  cbir_search_set_isa (NULL);
  g_free (nb);
  g_free (bh);
  g_free (ref);
  g_free (q);
  g_free (labels);
  g_free (feat);
}
END_TEST

static Suite *
search_suite (void)
{
  Suite *s = suite_create ("search");
  TCase *tc = tcase_create ("core");
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_l2);
  tcase_add_test (tc, test_cosine);
  tcase_add_test (tc, test_hamming);
  tcase_add_test (tc, test_ties_and_k_gt_n);
  tcase_add_test (tc, test_two_stage);
  tcase_add_test (tc, test_bits_only_gallery);
  tcase_add_test (tc, test_vote);
  tcase_add_test (tc, test_vote_local_mean);
  tcase_add_test (tc, test_metric_names);
  tcase_add_test (tc, test_query_expansion);
  tcase_add_test (tc, test_query_expansion_off_and_refused);
  tcase_add_test (tc, test_dba);
  tcase_add_test (tc, test_dba_blocks);
  tcase_add_test (tc, test_batch_blocks_ties);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (search_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

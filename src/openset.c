/* Open-set matching: the match score (include/cbir/openset.h). */
#include "cbir/openset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct _CbirMatchScorer
{
  float *ref;                   /* every item's nearest-other distance,
                                 * ascending */
  guint n;
};

static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

/* Hamming: each item's packed code searched against all (its own hit and
 * the nearest other among its two nearest). */
static gboolean
hamming_reference (const CbirGallery *g, guint n_threads, float *ref,
    GError **error)
{
  g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g,
      CBIR_METRIC_HAMMING, 0, n_threads, error);
  const guint8 *codes = cbir_gallery_get_codes (g);
  guint cb = cbir_gallery_get_code_bytes (g), n = cbir_gallery_size (g);

  if (s == NULL)
    return FALSE;
  for (guint i = 0; i < n; i++) {
    CbirHit hits[2];
    guint m = cbir_searcher_search_codes (s, codes + (gsize) i * cb, 2, hits);
    /* itself at 0, unless a duplicate tied with it came first */
    ref[i] = m < 2 ? INFINITY : hits[0].index == i ? hits[1].distance
        : hits[0].distance;
  }
  return TRUE;
}

CbirMatchScorer *
cbir_match_scorer_new (const CbirGallery *g, CbirMetric metric,
    guint n_threads, GError **error)
{
  g_return_val_if_fail (g != NULL, NULL);
  guint n = cbir_gallery_size (g);
  const char *path = cbir_gallery_get_path (g);

  if (n < 2) {
    /* no item has a neighbour: no yardstick (every finite query scores
     * 1), so a gallery being enrolled from nothing still answers */
    return g_new0 (CbirMatchScorer, 1);
  }
  g_autofree float *ref = g_new (float, n);
  if (metric == CBIR_METRIC_HAMMING) {
    if (cbir_gallery_get_codes (g) == NULL) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
          "%s: no packed codes for a Hamming match score", path);
      return NULL;
    }
    if (!hamming_reference (g, n_threads, ref, error))
      return NULL;
  } else {
    const float *feat = cbir_gallery_get_features (g);
    if (feat == NULL) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
          "%s: no float features for a %s match score", path,
          cbir_metric_to_string (metric));
      return NULL;
    }
    g_autofree guint *idx = g_new (guint, n);
    if (!cbir_knn_self (feat, n, cbir_gallery_get_dim (g), metric, 1,
            n_threads, idx, ref, error))
      return NULL;
  }
  for (guint i = 0; i < n; i++)
    if (!(ref[i] >= 0.f))       /* NaN (cannot happen: features are
                                 * finite) and rounding below 0 */
      ref[i] = isnan (ref[i]) ? INFINITY : 0.f;
  qsort (ref, n, sizeof (float), cmp_float);

  CbirMatchScorer *m = g_new0 (CbirMatchScorer, 1);
  m->ref = g_steal_pointer (&ref);
  m->n = n;
  return m;
}

void
cbir_match_scorer_free (CbirMatchScorer *m)
{
  if (m == NULL)
    return;
  g_free (m->ref);
  g_free (m);
}

float
cbir_match_scorer_score (const CbirMatchScorer *m, float nearest_distance)
{
  g_return_val_if_fail (m != NULL, 0.f);
  if (isnan (nearest_distance) || isinf (nearest_distance))
    return 0.f;
  if (m->n == 0)
    return 1.f;
  /* the first reference distance >= d: everything from there counts */
  guint lo = 0, hi = m->n;
  while (lo < hi) {
    guint mid = lo + (hi - lo) / 2;
    if (m->ref[mid] < nearest_distance)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (float) (m->n - lo) / (float) m->n;
}

const float *
cbir_match_scorer_get_reference (const CbirMatchScorer *m, guint *n_items)
{
  g_return_val_if_fail (m != NULL, NULL);
  if (n_items)
    *n_items = m->n;
  return m->ref;
}

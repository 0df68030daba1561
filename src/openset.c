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
  float *scale;                 /* item i's local scale, by index */
  float scale_median;           /* for items beyond n (enrolled) */
};

static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

/* Items that show one source: the same id (one image indexed twice, as it
 * is and as a camera shows it). group[i] is the first item with i's id (i
 * itself when it has none or a unique one); returns the largest group. */
static guint
source_groups (const CbirGallery *g, guint *group)
{
  guint n = cbir_gallery_size (g), largest = 1;
  g_autoptr (GHashTable) first = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree guint *count = g_new0 (guint, n);

  for (guint i = 0; i < n; i++) {
    const char *id = cbir_gallery_get_id (g, i);
    gpointer j;
    if (id != NULL && g_hash_table_lookup_extended (first, id, NULL, &j))
      group[i] = GPOINTER_TO_UINT (j);
    else {
      group[i] = i;
      if (id != NULL)
        g_hash_table_insert (first, (gpointer) id, GUINT_TO_POINTER (i));
    }
    largest = MAX (largest, ++count[group[i]]);
  }
  return largest;
}

/* Hamming: each item's packed code searched against all; the nearest hit
 * of another source (itself and its twins are among the first `k` + 1);
 * its local scale, the mean distance of its first `ks` hits but itself. */
static gboolean
hamming_reference (const CbirGallery *g, const guint *group, guint k,
    guint ks, guint n_threads, float *ref, float *scale, GError **error)
{
  g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g,
      CBIR_METRIC_HAMMING, 0, n_threads, error);
  const guint8 *codes = cbir_gallery_get_codes (g);
  guint cb = cbir_gallery_get_code_bytes (g), n = cbir_gallery_size (g);
  g_autofree CbirHit *hits = g_new (CbirHit, k + 1);

  if (s == NULL)
    return FALSE;
  for (guint i = 0; i < n; i++) {
    guint m = cbir_searcher_search_codes (s, codes + (gsize) i * cb, k + 1,
        hits);
    double sum = 0;
    guint taken = 0;
    ref[i] = INFINITY;
    for (guint j = 0; j < m; j++) {
      if (hits[j].index != i && taken < ks) {
        sum += hits[j].distance;
        taken++;
      }
      if (group[hits[j].index] != group[i] && isinf (ref[i]))
        ref[i] = hits[j].distance;
    }
    scale[i] = taken ? (float) (sum / taken) : 0.f;
  }
  return TRUE;
}

/* l2 / cosine: each item's `k` nearest others; the first of another
 * source, and the mean of the first `ks` (the local scale) */
static gboolean
float_reference (const CbirGallery *g, CbirMetric metric, const guint *group,
    guint k, guint ks, guint n_threads, float *ref, float *scale,
    GError **error)
{
  guint n = cbir_gallery_size (g);
  g_autofree guint *idx = g_new (guint, (gsize) n * k);
  g_autofree float *dist = g_new (float, (gsize) n * k);

  if (!cbir_knn_self (cbir_gallery_get_features (g), n,
          cbir_gallery_get_dim (g), metric, k, n_threads, idx, dist, error))
    return FALSE;
  for (guint i = 0; i < n; i++) {
    double sum = 0;
    ref[i] = INFINITY;
    for (guint j = 0; j < k; j++)
      if (group[idx[(gsize) i * k + j]] != group[i]) {
        ref[i] = dist[(gsize) i * k + j];
        break;
      }
    for (guint j = 0; j < ks; j++)
      sum += dist[(gsize) i * k + j];
    scale[i] = ks ? (float) (sum / ks) : 0.f;
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
  g_autofree float *scale = g_new (float, n);
  g_autofree guint *group = g_new (guint, n);
  /* among an item's `k` nearest others is one of another source; the
   * same k-NN gives the local scales */
  guint ks = MIN (CBIR_LOCAL_SCALE_K, n - 1);
  guint k = MIN (MAX (source_groups (g, group), ks), n - 1);
  if (metric == CBIR_METRIC_HAMMING) {
    if (cbir_gallery_get_codes (g) == NULL) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
          "%s: no packed codes for a Hamming match score", path);
      return NULL;
    }
    if (!hamming_reference (g, group, k, ks, n_threads, ref, scale, error))
      return NULL;
  } else {
    if (cbir_gallery_get_features (g) == NULL) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
          "%s: no float features for a %s match score", path,
          cbir_metric_to_string (metric));
      return NULL;
    }
    if (!float_reference (g, metric, group, k, ks, n_threads, ref, scale,
            error))
      return NULL;
  }
  for (guint i = 0; i < n; i++)
    if (!(ref[i] >= 0.f))       /* NaN (cannot happen: features are
                                 * finite) and rounding below 0 */
      ref[i] = isnan (ref[i]) ? INFINITY : 0.f;
  qsort (ref, n, sizeof (float), cmp_float);

  for (guint i = 0; i < n; i++)
    if (!isfinite (scale[i]))   /* overflowed: no correction for it */
      scale[i] = 0.f;

  CbirMatchScorer *m = g_new0 (CbirMatchScorer, 1);
  m->ref = g_steal_pointer (&ref);
  m->n = n;
  {
    g_autofree float *sorted = g_memdup2 (scale, n * sizeof (float));
    qsort (sorted, n, sizeof (float), cmp_float);
    m->scale_median = sorted[n / 2];
  }
  m->scale = g_steal_pointer (&scale);
  return m;
}

void
cbir_match_scorer_free (CbirMatchScorer *m)
{
  if (m == NULL)
    return;
  g_free (m->ref);
  g_free (m->scale);
  g_free (m);
}

float
cbir_match_score_default_min (const CbirGallery *g)
{
  g_return_val_if_fail (g != NULL, CBIR_MATCH_SCORE_DEFAULT_MIN);
  const gint32 *labels = cbir_gallery_get_labels (g);
  guint n = cbir_gallery_size (g);

  for (guint i = 0; i < n; i++)
    if (labels[i] == CBIR_LABEL_NOT_A_MATCH)
      return CBIR_MATCH_SCORE_DEFAULT_MIN_WITH_EXAMPLES;
  return CBIR_MATCH_SCORE_DEFAULT_MIN;
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

float
cbir_match_scorer_local_scale (const CbirMatchScorer *m, guint item)
{
  g_return_val_if_fail (m != NULL, 0.f);
  if (m->scale == NULL)
    return 0.f;
  return item < m->n ? m->scale[item] : m->scale_median;
}

typedef struct
{
  float key;
  guint pos;
  CbirHit hit;
} Scaled;

static int
cmp_scaled (const void *a, const void *b)
{
  const Scaled *x = a, *y = b;
  if (x->key != y->key)
    return x->key < y->key ? -1 : 1;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

guint
cbir_match_scorer_scale_hits (const CbirMatchScorer *m, CbirHit *hits,
    guint n, guint k, float *keys)
{
  g_return_val_if_fail (m != NULL, 0);
  g_return_val_if_fail (hits != NULL || n == 0, 0);
  g_autofree Scaled *s = g_new (Scaled, MAX (n, 1));
  for (guint i = 0; i < n; i++) {
    s[i].key = hits[i].distance -
        0.5f * cbir_match_scorer_local_scale (m, hits[i].index);
    s[i].pos = i;
    s[i].hit = hits[i];
  }
  /* without scales every key is the distance: the order stays */
  if (m->scale != NULL && n > 1)
    qsort (s, n, sizeof (Scaled), cmp_scaled);
  for (guint i = 0; i < n; i++) {
    hits[i] = s[i].hit;
    if (keys)
      keys[i] = s[i].key;
  }
  return MIN (n, k);
}

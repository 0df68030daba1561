/* Retrieval metrics. The full-list average precision follows
 * scikit-learn's label_ranking_average_precision_score (ties ranked
 * pessimistically); it sorts the relevant and the other distances
 * separately (radix sort on the float bit patterns) and walks both. */
#include "cbir/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Order-preserving map of a float to an unsigned key (-0 == +0). */
static inline guint32
float_key (float f)
{
  guint32 u;
  if (f == 0.f)
    f = 0.f;
  memcpy (&u, &f, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* LSD radix sort of n keys, 4 passes of 8 bits, skipping passes where
 * every key has the same byte. Result in keys. */
static void
radix_sort_u32 (guint32 *keys, guint32 *tmp, guint n)
{
  guint32 hist[4][256];
  memset (hist, 0, sizeof (hist));
  for (guint i = 0; i < n; i++) {
    guint32 k = keys[i];
    hist[0][k & 255]++;
    hist[1][(k >> 8) & 255]++;
    hist[2][(k >> 16) & 255]++;
    hist[3][k >> 24]++;
  }
  guint32 *src = keys, *dst = tmp;
  for (guint p = 0; p < 4; p++) {
    guint shift = 8 * p;
    if (n == 0 || hist[p][(src[0] >> shift) & 255] == n)
      continue;                 /* all equal in this byte */
    guint32 off = 0;
    for (guint b = 0; b < 256; b++) {
      guint32 c = hist[p][b];
      hist[p][b] = off;
      off += c;
    }
    for (guint i = 0; i < n; i++) {
      guint32 k = src[i];
      dst[hist[p][(k >> shift) & 255]++] = k;
    }
    guint32 *t = src;
    src = dst;
    dst = t;
  }
  if (src != keys)
    memcpy (keys, src, sizeof (guint32) * n);
}

double
cbir_average_precision (const float *distances, const gint32 *gallery_labels,
    guint n, gint32 query_label, guint32 *scratch)
{
  guint n_rel = 0;
  for (guint i = 0; i < n; i++)
    n_rel += gallery_labels[i] == query_label;
  if (n_rel == 0 || n_rel == n)
    return 1.0;

  guint32 *buf = scratch ? scratch : g_new (guint32, 2 * (gsize) n);
  guint32 *rel = buf, *other = buf + n_rel, *tmp = buf + n;
  guint a = 0, b = 0;
  for (guint i = 0; i < n; i++) {
    guint32 k = float_key (distances[i]);
    if (gallery_labels[i] == query_label)
      rel[a++] = k;
    else
      other[b++] = k;
  }
  radix_sort_u32 (rel, tmp, n_rel);
  radix_sort_u32 (other, tmp, n - n_rel);

  guint n_other = n - n_rel;
  double sum = 0;
  guint po = 0;
  for (guint i = 0; i < n_rel;) {
    guint32 k = rel[i];
    guint e = i + 1;
    while (e < n_rel && rel[e] == k)
      e++;
    while (po < n_other && other[po] <= k)
      po++;
    /* e relevant items and po others are at distance <= k */
    sum += (double) (e - i) * ((double) e / (double) (e + po));
    i = e;
  }
  if (!scratch)
    g_free (buf);
  return sum / n_rel;
}

double
cbir_precision_at_k (const CbirHit *hits, guint n_hits, guint k,
    gint32 label)
{
  if (k == 0)
    return 0.0;
  guint m = MIN (n_hits, k), c = 0;
  for (guint i = 0; i < m; i++)
    c += hits[i].label == label;
  return (double) c / k;
}

double
cbir_recall_at_k (const CbirHit *exact, guint n_exact, const CbirHit *approx,
    guint n_approx, guint k)
{
  guint ne = MIN (n_exact, k), na = MIN (n_approx, k), c = 0;
  if (ne == 0)
    return 1.0;
  for (guint i = 0; i < ne; i++)
    for (guint j = 0; j < na; j++)
      if (exact[i].index == approx[j].index) {
        c++;
        break;
      }
  return (double) c / ne;
}

/* ---- accumulator ---- */

static const guint pk_values[CBIR_METRICS_N_PK] = { 1, 5, 10, 100 };

typedef struct
{
  gint32 label;
  double ap;
  double pk[CBIR_METRICS_N_PK];
  gboolean vote_ok;
} QueryRecord;

typedef struct
{
  gint32 label;
  double ap_sum;
  guint n;
} ClassRecord;

struct _CbirMetrics
{
  GArray *queries;              /* QueryRecord */
  GArray *classes;              /* ClassRecord, sorted; rebuilt lazily */
  gboolean classes_valid;
};

CbirMetrics *
cbir_metrics_new (void)
{
  CbirMetrics *m = g_new0 (CbirMetrics, 1);
  m->queries = g_array_new (FALSE, FALSE, sizeof (QueryRecord));
  m->classes = g_array_new (FALSE, FALSE, sizeof (ClassRecord));
  return m;
}

void
cbir_metrics_free (CbirMetrics *m)
{
  if (!m)
    return;
  g_array_unref (m->queries);
  g_array_unref (m->classes);
  g_free (m);
}

void
cbir_metrics_add (CbirMetrics *m, gint32 query_label, double ap,
    const CbirHit *hits, guint n_hits)
{
  QueryRecord r = { 0 };
  r.label = query_label;
  r.ap = ap;
  for (guint i = 0; i < CBIR_METRICS_N_PK; i++)
    r.pk[i] = cbir_precision_at_k (hits, n_hits, pk_values[i], query_label);
  gint32 voted;
  cbir_vote (hits, MIN (n_hits, CBIR_METRICS_VOTE_K), &voted, NULL);
  r.vote_ok = n_hits > 0 && voted == query_label;
  g_array_append_val (m->queries, r);
  m->classes_valid = FALSE;
}

guint
cbir_metrics_get_n_queries (const CbirMetrics *m)
{
  return m->queries->len;
}

double
cbir_metrics_get_map (const CbirMetrics *m)
{
  double s = 0;
  for (guint i = 0; i < m->queries->len; i++)
    s += g_array_index (m->queries, QueryRecord, i).ap;
  return m->queries->len ? s / m->queries->len : 0.0;
}

double
cbir_metrics_get_precision (const CbirMetrics *m, guint k)
{
  for (guint p = 0; p < CBIR_METRICS_N_PK; p++) {
    if (pk_values[p] != k)
      continue;
    double s = 0;
    for (guint i = 0; i < m->queries->len; i++)
      s += g_array_index (m->queries, QueryRecord, i).pk[p];
    return m->queries->len ? s / m->queries->len : 0.0;
  }
  return -1.0;
}

double
cbir_metrics_get_vote_accuracy (const CbirMetrics *m)
{
  guint c = 0;
  for (guint i = 0; i < m->queries->len; i++)
    c += g_array_index (m->queries, QueryRecord, i).vote_ok;
  return m->queries->len ? (double) c / m->queries->len : 0.0;
}

static int
class_cmp (const void *a, const void *b)
{
  gint32 x = ((const ClassRecord *) a)->label;
  gint32 y = ((const ClassRecord *) b)->label;
  return (x > y) - (x < y);
}

static void
build_classes (CbirMetrics *m)
{
  if (m->classes_valid)
    return;
  g_array_set_size (m->classes, 0);
  g_autoptr (GHashTable) pos = g_hash_table_new (g_direct_hash,
      g_direct_equal);
  for (guint i = 0; i < m->queries->len; i++) {
    const QueryRecord *r = &g_array_index (m->queries, QueryRecord, i);
    gpointer v;
    guint idx;
    if (g_hash_table_lookup_extended (pos, GINT_TO_POINTER (r->label), NULL,
            &v)) {
      idx = GPOINTER_TO_UINT (v);
    } else {
      ClassRecord c = { r->label, 0, 0 };
      idx = m->classes->len;
      g_array_append_val (m->classes, c);
      g_hash_table_insert (pos, GINT_TO_POINTER (r->label),
          GUINT_TO_POINTER (idx));
    }
    ClassRecord *c = &g_array_index (m->classes, ClassRecord, idx);
    c->ap_sum += r->ap;
    c->n++;
  }
  qsort (m->classes->data, m->classes->len, sizeof (ClassRecord), class_cmp);
  m->classes_valid = TRUE;
}

guint
cbir_metrics_get_n_classes (const CbirMetrics *m)
{
  build_classes ((CbirMetrics *) m);
  return m->classes->len;
}

void
cbir_metrics_get_class (const CbirMetrics *m, guint i, gint32 *label,
    double *ap, guint *n_queries)
{
  build_classes ((CbirMetrics *) m);
  g_return_if_fail (i < m->classes->len);
  const ClassRecord *c = &g_array_index (m->classes, ClassRecord, i);
  if (label)
    *label = c->label;
  if (ap)
    *ap = c->n ? c->ap_sum / c->n : 0.0;
  if (n_queries)
    *n_queries = c->n;
}

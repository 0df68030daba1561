/* k-NN search over a gallery. */
#pragma once

#include <cbir/common.h>
#include <cbir/gallery.h>

G_BEGIN_DECLS

typedef enum {
  CBIR_METRIC_L2 = 0,           /* squared Euclidean on float features */
  CBIR_METRIC_COSINE,           /* 1 - cos on float features */
  CBIR_METRIC_HAMMING,          /* popcount(q XOR g) on packed bits */
} CbirMetric;

const char *cbir_metric_to_string (CbirMetric m);     /* "l2", "cosine", "hamming" */
gboolean cbir_metric_from_string (const char *s, CbirMetric *out);

typedef struct {
  guint index;                  /* gallery item */
  gint32 label;
  float distance;
} CbirHit;

typedef struct _CbirSearcher CbirSearcher;

/* shortlist > 0 (float galleries with codes): Hamming shortlist of that
 * many items, then exact re-rank with `metric`. The searcher keeps a
 * reference to nothing but `g`, which must outlive it. Thread-safe. */
CbirSearcher *cbir_searcher_new (const CbirGallery *g, CbirMetric metric,
    guint shortlist, GError **error);
void cbir_searcher_free (CbirSearcher *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirSearcher, cbir_searcher_free)

/* One query: its float code (gallery dim floats; packed with the
 * gallery's bit thresholds for Hamming). Fills up to k hits sorted by
 * distance, ties by gallery index; returns the number filled. */
guint cbir_searcher_search (CbirSearcher *s, const float *query, guint k,
    CbirHit *hits);
/* nq queries, both cores; hits: nq * k, n_hits: nq (may be NULL). */
void cbir_searcher_search_batch (CbirSearcher *s, const float *queries,
    guint nq, guint k, CbirHit *hits, guint *n_hits);

/* Distance-weighted k-NN vote: weight 1/(eps + d). confidence = winner's
 * weight share, in [0, 1]. With n == 0: label -1, confidence 0. */
void cbir_vote (const CbirHit *hits, guint n, gint32 *label,
    float *confidence);

G_END_DECLS

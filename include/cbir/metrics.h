/* Retrieval quality: full-list label-ranking average precision (mAP),
 * precision@k, k-NN vote accuracy, per-class AP, recall of an approximate
 * search against the exact one. */
#pragma once

#include <cbir/common.h>
#include <cbir/search.h>

G_BEGIN_DECLS

/* Average precision of one query over the whole gallery, exactly as
 * scikit-learn's label_ranking_average_precision_score for that sample with
 * y_score = -distance: the relevant items are the gallery items whose
 * label equals query_label; each relevant item j scores
 * |{relevant i : d_i <= d_j}| / |{i : d_i <= d_j}| (ties ranked
 * pessimistically) and AP is their mean. A query with no relevant item, or
 * whose every item is relevant, scores 1 (as sklearn does).
 * scratch: NULL or 2 * n guint32 of caller memory (avoids an allocation). */
double cbir_average_precision (const float *distances,
    const gint32 *gallery_labels, guint n, gint32 query_label,
    guint32 *scratch);

/* Fraction of the first k hits (sorted) that carry `label`; hits past
 * n_hits count as misses (denominator k). */
double cbir_precision_at_k (const CbirHit *hits, guint n_hits, guint k,
    gint32 label);

/* |exact top-k ∩ approx top-k| / min(k, n_exact), by gallery index. */
double cbir_recall_at_k (const CbirHit *exact, guint n_exact,
    const CbirHit *approx, guint n_approx, guint k);

/* Accumulates per-query results into the summary figures. */
#define CBIR_METRICS_N_PK 4     /* P@1, P@5, P@10, P@100 */
#define CBIR_METRICS_VOTE_K 10

typedef struct _CbirMetrics CbirMetrics;
CbirMetrics *cbir_metrics_new (void);
void cbir_metrics_free (CbirMetrics *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirMetrics, cbir_metrics_free)
/* One query: its label, its AP (cbir_average_precision) and its sorted
 * hits (at least 100 for P@100; the first 10 vote). */
void cbir_metrics_add (CbirMetrics *m, gint32 query_label, double ap,
    const CbirHit *hits, guint n_hits);
guint cbir_metrics_get_n_queries (const CbirMetrics *m);
double cbir_metrics_get_map (const CbirMetrics *m);
/* k: one of 1, 5, 10, 100 (others: -1). */
double cbir_metrics_get_precision (const CbirMetrics *m, guint k);
/* Share of queries whose distance-weighted vote over the first 10 hits
 * (cbir_vote) is their label. */
double cbir_metrics_get_vote_accuracy (const CbirMetrics *m);
/* Classes seen among the queries, ascending. */
guint cbir_metrics_get_n_classes (const CbirMetrics *m);
void cbir_metrics_get_class (const CbirMetrics *m, guint i, gint32 *label,
    double *ap, guint *n_queries);

G_END_DECLS

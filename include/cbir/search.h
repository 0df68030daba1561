/* k-NN search over a gallery. */
#pragma once

#include <cbir/common.h>
#include <cbir/diffusion.h>
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
 * distance, ties by gallery index; returns the number filled. A query
 * holding NaN or an infinite value matches nothing, in every entry point:
 * 0 hits (a batch row: n_hits 0, hits {G_MAXUINT, -1, +inf}), every
 * distance +inf. */
guint cbir_searcher_search (CbirSearcher *s, const float *query, guint k,
    CbirHit *hits);
/* nq queries, both cores; hits: nq * k, n_hits: nq (may be NULL). */
void cbir_searcher_search_batch (CbirSearcher *s, const float *queries,
    guint nq, guint k, CbirHit *hits, guint *n_hits);

/* Gallery labels with a meaning of their own: -1 an unlabelled item;
 * CBIR_LABEL_NOT_A_MATCH an example of what is not a match (a letter or a
 * shape in a digit gallery): a query whose vote it wins is no match
 * (cbirsearch answers label -1). */
#define CBIR_LABEL_UNLABELLED (-1)
#define CBIR_LABEL_NOT_A_MATCH (-2)

/* Distance-weighted k-NN vote: weight 1/(eps + d). confidence = winner's
 * weight share, in [0, 1]. With n == 0: label -1, confidence 0. */
void cbir_vote (const CbirHit *hits, guint n, gint32 *label,
    float *confidence);

/* Local-mean vote (the local mean-based k-NN rule of Mitani and Hamamoto,
 * Pattern Recognition 39, 2006): hits[0..n-1] are a query's candidates in
 * rank order, keys[i] hit i's ranking key (its distance after local
 * scaling, cbir_match_scorer_scale_hits; NULL: the hits' distances),
 * sizes[i] how many items of the gallery carry hit i's label
 * (cbir_gallery_count_labels, cbir_enrolments_label_sizes; NULL: k or
 * more each). Each label is judged by the mean of its m smallest keys,
 * m = k, or all its items when it has fewer (a label enrolled with two
 * examples competes with those two); a label with fewer than m
 * candidates does not compete (its others lie beyond the candidates).
 * The smallest mean wins; a tie goes to the label whose best candidate
 * ranks first; NaN keys count as +inf. A candidate at a distance of at
 * most 1e-6 (the weighted vote's eps: the query is that item, e.g. the
 * frame just enrolled) gives its label, the nearest such one's. When no
 * label competes (the candidates cut short, by max-distance), m is the
 * most candidates any label has. Unlike the k nearest, which a dense cluster of one label can
 * fill, every label is judged by as many of its own items: the vote of
 * cbirsearch vote=local-mean. k = 1 is the nearest candidate's label.
 * confidence = the winner's share of the weight 1/(eps + distance) of the
 * k first-ranked hits (as cbir_vote), 0 when none of them is the winner's.
 * With n == 0 or k == 0: label -1, confidence 0. */
void cbir_vote_local_mean (const CbirHit *hits, const float *keys,
    const guint *sizes, guint n, guint k, gint32 *label, float *confidence);
/* sizes[i]: the count of hits[i].label in counts (a table of
 * cbir_gallery_count_labels, label -> items; 0 for a label it lacks), the
 * sizes cbir_vote_local_mean takes. */
void cbir_hits_label_sizes (GHashTable *counts, const CbirHit *hits,
    guint n, guint *sizes);
/* The candidates cbirsearch's local-mean vote takes: this many plain
 * nearest items, or 10 k when that is more (every label in contention
 * needs k of its own; on the tuning split 45 to 100 voted alike, 30 a
 * little worse, see the README). */
#define CBIR_LOCAL_MEAN_CANDIDATES 50

/* ---- additions (search helper) ---- */

/* Like cbir_searcher_new with an explicit thread count for batches and
 * large single queries (0: cbir_default_threads ()). The threads are
 * started here and kept until the searcher is freed. */
CbirSearcher *cbir_searcher_new_full (const CbirGallery *g,
    CbirMetric metric, guint shortlist, guint n_threads, GError **error);
guint cbir_searcher_get_threads (const CbirSearcher *s);

/* The distance of the query's plain nearest gallery item (no re-ranking:
 * what the match score of openset.h takes), +inf for a query holding NaN
 * or an infinite value, or an empty gallery. */
float cbir_searcher_nearest_distance (CbirSearcher *s, const float *query);

/* The query's k plain nearest gallery items, nearest first, whatever
 * re-ranking the searcher does (diffusion, query expansion): the evidence
 * a k-NN vote (cbir_vote) should weigh. 0 hits for a query holding NaN or
 * an infinite value. */
guint cbir_searcher_search_plain (CbirSearcher *s, const float *query,
    guint k, CbirHit *hits);

/* Hamming searcher only: one query already packed (code_bytes bytes). */
guint cbir_searcher_search_codes (CbirSearcher *s, const guint8 *code,
    guint k, CbirHit *hits);

/* The distance of every gallery item to the query (out: gallery-size
 * floats): the full ranking the searcher implies. For a two-stage
 * searcher, shortlisted items have their exact distance and the others
 * come after all of them in Hamming order. */
void cbir_searcher_distances (CbirSearcher *s, const float *query,
    float *out);
/* nq queries: out is nq rows of gallery-size floats; both cores. */
void cbir_searcher_distances_batch (CbirSearcher *s, const float *queries,
    guint nq, float *out);

/* The kernel variant in use: "avx512", "avx2", "popcnt" or "generic".
 * Picked from the CPU; CBIR_SEARCH_ISA=<name> in the environment forces a
 * lower one. */
const char *cbir_search_get_isa (void);
/* Forces a variant (NULL: back to the CPU's best) for searchers created
 * afterwards; FALSE if unknown or not supported by this CPU. For tests
 * and benchmarks. */
gboolean cbir_search_set_isa (const char *name);

/* ---- additions (rerank helper) ---- */

/* Alpha-weighted query expansion and database-side augmentation
 * (Radenovic et al.; research/lib.py alpha_qe and dba). A vector v is
 * replaced by a weighted combination of itself and its k nearest gallery
 * items g_i, with weights w_i = max (cos (v, g_i), 0)^alpha:
 *   cosine: v' = l2normalise (v/|v| + sum_i w_i g_i/|g_i|)
 *   l2:     v' = (v + sum_i w_i g_i) / (1 + sum_i w_i)
 * (alpha 0: a plain average). Deterministic: neighbours are ordered by
 * (distance, gallery index); weights and sums are computed in double from
 * the vectors, so every search path expands a query to the same vector. */
#define CBIR_QE_DEFAULT_ALPHA 3.0f
#define CBIR_DBA_DEFAULT_ALPHA 3.0f

/* Query expansion for every later float search of s: the query is first
 * searched for its k nearest items (with s's metric and shortlist), then
 * replaced by its expansion, which is searched (search, search_batch,
 * distances, distances_batch; not search_codes). k = 0: off (the
 * default); k larger than the gallery uses all of it. FALSE
 * (CBIR_ERROR_UNSUPPORTED) for k > 0 on a Hamming searcher, or a bad
 * alpha (0..1000). Call before searching, not while another thread
 * searches with s. */
gboolean cbir_searcher_set_query_expansion (CbirSearcher *s, guint k,
    float alpha, GError **error);
/* k (0 = off); alpha if not NULL. */
guint cbir_searcher_get_query_expansion (const CbirSearcher *s,
    float *alpha);
/* The expanded query (dim floats) the searches above use; the query
 * itself when expansion is off. Float searchers only. */
void cbir_searcher_expand_query (CbirSearcher *s, const float *query,
    float *out);

/* Database-side augmentation of n items of dim floats: out[i] = the
 * expansion (above) of features[i] with its k nearest other items (itself
 * excluded; k is capped at n - 1), neighbours by metric (l2 or cosine).
 * The kNN is the blocked batched search (sgemm, both cores: n_threads, 0 =
 * default); memory beyond out is O(dim + k) per query chunk. out must not
 * overlap features. */
gboolean cbir_dba_compute (const float *features, guint n, guint dim,
    CbirMetric metric, guint k, float alpha, guint n_threads, float *out,
    GError **error);

/* The k nearest other items of each of n items (itself excluded; ties by
 * index; k capped at n - 1): idx (and dist, may be NULL) get n rows of k,
 * nearest first. The blocked batched search (sgemm, n_threads, 0 =
 * default). Metric l2 or cosine. Used by DBA and the diffusion graph. */
gboolean cbir_knn_self (const float *features, guint n, guint dim,
    CbirMetric metric, guint k, guint n_threads, guint *idx, float *dist,
    GError **error);

/* Diffusion re-ranking (diffusion.h) for every later float search of s
 * (search, search_batch, distances, distances_batch): the query diffuses
 * over `graph` (gallery-size items; borrowed, must outlive s) with
 * `params` (NULL: the defaults). Hits come in diffusion order and keep
 * their plain distance to the query (the vote's weights); the full
 * ranking is -f for items the diffusion reaches, then the plain distance.
 * graph NULL: off. FALSE for a Hamming searcher, a graph of another size,
 * bad parameters, or query expansion already on (one re-ranking at a
 * time). Call before searching, not while another thread searches. */
gboolean cbir_searcher_set_diffusion (CbirSearcher *s,
    const CbirGraph *graph, const CbirDiffusionParams *params,
    GError **error);
/* The graph in use (NULL: off) and, if not NULL, its parameters. */
const CbirGraph *cbir_searcher_get_diffusion (const CbirSearcher *s,
    CbirDiffusionParams *params);

G_END_DECLS

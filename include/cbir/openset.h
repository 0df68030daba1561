/* Open-set matching: is a query like the gallery at all?
 *
 * A k-NN vote always names a label, even for a frame that holds no digit.
 * The match score says how close the query is to the gallery, measured
 * with the gallery's own spread as the yardstick. For every gallery item
 * i, d1(i) is the distance to its nearest other item (leave-one-out, with
 * the searcher's metric) of another source: items under the same id show
 * one source (an image indexed twice, as it is and as a camera shows it,
 * pipelines/camera-gallery.sh RENDER=both) and are not taken for each
 * other's neighbour, as a query is never a copy of a gallery item's
 * source; items without an id are each their own source. A query q with
 * nearest-item distance d(q) scores
 *
 *   score(q) = #{ i : d1(i) >= d(q) } / N
 *
 * 1: nearer to the gallery than any item is to its own nearest neighbour;
 * 0.5: as near as the median item; 0: farther than every item is from its
 * nearest neighbour. For a query drawn like the gallery items the score
 * is (nearly) uniform on [0, 1] (a conformal p-value), so a threshold t
 * rejects about a share t of such queries: the threshold states its own
 * false-rejection rate on in-distribution data. Queries that differ from
 * the gallery (camera frames of digits) score lower than that, and
 * non-digits lower still; how much lower is measured, not assumed (see the
 * README's open-set figures).
 *
 * No GStreamer here; cbirsearch uses it for its "match-score". */
#pragma once

#include <cbir/common.h>
#include <cbir/gallery.h>
#include <cbir/search.h>

G_BEGIN_DECLS

/* cbirsearch's default threshold (min-match-score -1, "auto") follows
 * what the gallery holds:
 * - only matches: 0.01, 1 in 100 of the queries drawn like the gallery
 *   rejected; the threshold is then all that rejects what is not like the
 *   gallery;
 * - examples of non-matches too (items labelled CBIR_LABEL_NOT_A_MATCH,
 *   e.g. letters and shapes in a digit gallery): 0.0025, 1 in 400. The
 *   examples then reject nearly everything the threshold would, while the
 *   threshold's false rejections fall on real digits. Chosen on the tuning
 *   split (the MNIST gallery's held-out tenth drawn by the simulated
 *   camera, galleries of pipelines/camera-gallery.sh built from the other
 *   nine tenths; see the README's open-set figures): there 0.01 cost 0.7
 *   and 0.6 points of the camera digits for 0.1 and 0.3 points more of the
 *   frames without a digit rejected, and 0.001 gained at most one digit of
 *   900. Decided from the gallery file's labels when cbirsearch starts
 *   (enrolments, journalled or new, do not change it). On
 *   the MNIST gallery alone 0.0025 would have let through a third more of
 *   those frames (46 % rejected with 0.01, 29 % with 0.0025). */
#define CBIR_MATCH_SCORE_DEFAULT_MIN 0.01f
#define CBIR_MATCH_SCORE_DEFAULT_MIN_WITH_EXAMPLES 0.0025f

/* The default threshold for gallery g, by the rule above (looks at every
 * label once). */
float cbir_match_score_default_min (const CbirGallery *g);

typedef struct _CbirMatchScorer CbirMatchScorer;

/* The reference distances of gallery g under metric (l2 or cosine over
 * its float features, hamming over its packed codes): every item's
 * distance to its nearest item of another source (another id), computed
 * here (the batched exact search, n_threads, 0 = default; about as costly
 * as searching the whole gallery with itself once: 0.09 s for 9,003
 * items, 1.1 s for 37,053 of 32 floats on 2 cores; the k-NN takes
 * CBIR_LOCAL_SCALE_K neighbours, or as many as the largest group of items
 * under one id if that is more, and gives the local scales below too). A
 * gallery of
 * fewer than two items, or of one source, has no yardstick: every finite
 * query then scores 1. NULL with an error for a gallery without the
 * features/codes the metric needs.
 * Immutable afterwards: any number of threads may score with it. */
CbirMatchScorer *cbir_match_scorer_new (const CbirGallery *g,
    CbirMetric metric, guint n_threads, GError **error);
void cbir_match_scorer_free (CbirMatchScorer *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirMatchScorer, cbir_match_scorer_free)

/* The score in [0, 1] of a query whose nearest gallery item is at
 * `nearest_distance` (0 for NaN or infinity: no match). */
float cbir_match_scorer_score (const CbirMatchScorer *m,
    float nearest_distance);

/* The reference: n_items sorted distances (ascending). */
const float *cbir_match_scorer_get_reference (const CbirMatchScorer *m,
    guint *n_items);

/* Local scaling of a k-NN vote (hubness reduction, the CSLS of Conneau
 * et al. 2018, "Word translation without parallel data"). In a gallery
 * some items lie in dense parts of the code space and are among the
 * nearest items of very many queries (hubs): a cluster of near-identical
 * examples (a letter in eight fonts, three variants, each drawn twice by
 * the camera) outvotes the items of a sparser class even where the query
 * is no nearer to it. Each item x gets its local scale r(x), the mean
 * distance to its CBIR_LOCAL_SCALE_K nearest other items (itself left
 * out, its twins under one id counted), measured in the same k-NN pass as
 * the match score's reference; a vote's candidates are then ranked by
 *
 *   d(q, x) - r(x) / 2
 *
 * (CSLS's 2 d - r(x) - r(q), without the query's term, which does not
 * change a query's ranking), so that an item in a dense part must be
 * nearer to win. The vote then reads the ranked candidates: each label's
 * mean key (cbir_vote_local_mean, cbirsearch's default) or the k first
 * weighted by 1/d (cbir_vote). K = 10 is CSLS's own choice, not tuned
 * here. The candidates are the plain nearest: CBIR_LOCAL_SCALE_CANDIDATES
 * for the weighted vote (cbirsearch takes 2k when k is larger than half
 * of them), CBIR_LOCAL_MEAN_CANDIDATES for the local mean; the correction
 * reorders the near ones, none from far away. On the tuning split (see
 * the README) it gained 0.6 points of camera digits over five camera
 * draws for 0.6 points of the frames without a digit rejected (weighted
 * vote). */
#define CBIR_LOCAL_SCALE_K 10
#define CBIR_LOCAL_SCALE_CANDIDATES 30

/* Item `item`'s local scale r(item); for an index past the gallery (an
 * enrolled item, see enrolment.h) the gallery's median scale; 0 for a
 * scorer of fewer than two items (no correction), and for an item whose
 * scale is not finite (distances that overflowed). */
float cbir_match_scorer_local_scale (const CbirMatchScorer *m, guint item);

/* Reorders hits[0..n-1] (a query's plain nearest items, any order) by
 * distance - r(index) / 2, ties kept in their order, the hits' own
 * distances unchanged (they weigh the vote); keys (NULL, or n floats)
 * gets each reordered hit's distance - r(index) / 2 (what
 * cbir_vote_local_mean averages); returns MIN (n, k), the number the
 * k-nearest vote should take. */
guint cbir_match_scorer_scale_hits (const CbirMatchScorer *m, CbirHit *hits,
    guint n, guint k, float *keys);

G_END_DECLS

/* Diffusion over a k-NN graph of the gallery (Iscen et al., "Efficient
 * Diffusion on Region Manifolds", CVPR 2017).
 *
 * The graph: every gallery item's k nearest other items (cosine), kept
 * where the relation is mutual (j among i's k nearest and i among j's);
 * edge weight w_ij = cos (x_i, x_j)^power (negative cosines dropped); the
 * matrix S = D^-1/2 W D^-1/2 (D: the row sums of W) is stored in CSR form,
 * rows sorted by neighbour index, no self-loops, exactly symmetric.
 *
 * A query enters the graph through its nearest gallery items (the
 * searcher's plain search): y_j = max (cos (q, x_j), 0)^power for those,
 * 0 elsewhere. Its diffusion scores f solve (I - alpha S) f = y, by
 * conjugate gradients (I - alpha S is symmetric positive definite for
 * alpha < 1); items are ranked by f, those f does not reach (f <= 0) after
 * the reached ones in plain-distance order. Queries never interact: the
 * graph is built over the gallery alone, once.
 *
 * No GStreamer here; the gallery stores a graph (gallery.h), the searcher
 * diffuses (search.h: cbir_searcher_set_diffusion). */
#pragma once

#include <cbir/common.h>

G_BEGIN_DECLS

#define CBIR_GRAPH_DEFAULT_POWER 3.0f
#define CBIR_GRAPH_MAX_K 1024
#define CBIR_GRAPH_MAX_POWER 16.0f      /* edge weight cos^power, power in
                                         * (0, 16] */
#define CBIR_DIFFUSION_DEFAULT_ALPHA 0.99f
#define CBIR_DIFFUSION_DEFAULT_QUERY_K 10
#define CBIR_DIFFUSION_DEFAULT_ITERATIONS 20
#define CBIR_DIFFUSION_DEFAULT_KEEP_FIRST 1
/* The solver's passes run over blocks of this many rows (the unit that a
 * CbirTaskRunner spreads over threads). */
#define CBIR_DIFFUSION_BLOCK_ROWS 2048

typedef struct _CbirGraph CbirGraph;

/* The rule for k when none is given: round (sqrt (n) / 5), clamped to
 * 5..100 (and to n - 1). Chosen from the size alone; see the README's
 * "Diffusion" section for how it was checked. */
guint cbir_graph_default_k (guint n);

/* Builds the mutual k-NN graph of n items of dim floats (k: 0 = the rule
 * above; capped at n - 1 and CBIR_GRAPH_MAX_K). The k-NN is the batched
 * exact search (cbir_knn_self, n_threads, 0 = default). FALSE with an
 * error for a bad power (0 < power <= 16) or a graph too large for 32-bit
 * offsets. */
CbirGraph *cbir_graph_build (const float *features, guint n, guint dim,
    guint k, float power, guint n_threads, GError **error);

/* A graph over arrays owned elsewhere (a mapped gallery file), which must
 * outlive it, after checking them: offsets[0] = 0, non-decreasing,
 * offsets[n] = nnz; neighbours in 0..n-1, strictly increasing in each row,
 * never the row itself; weights finite in (0, 1]; the matrix symmetric
 * (S_ij == S_ji). `what` names the file in errors. */
CbirGraph *cbir_graph_new_borrowed (guint n, guint k, float power,
    const gint32 *offsets, const gint32 *neighbours, const float *weights,
    gsize nnz, const char *what, GError **error);
void cbir_graph_free (CbirGraph *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirGraph, cbir_graph_free)

guint cbir_graph_size (const CbirGraph *g);
gsize cbir_graph_nnz (const CbirGraph *g);
guint cbir_graph_get_k (const CbirGraph *g);
float cbir_graph_get_power (const CbirGraph *g);
const gint32 *cbir_graph_get_offsets (const CbirGraph *g);    /* n + 1 */
const gint32 *cbir_graph_get_neighbours (const CbirGraph *g); /* nnz */
const float *cbir_graph_get_weights (const CbirGraph *g);     /* nnz */
/* CRC-32 (zlib) of the offsets, neighbours and weights as stored (little
 * endian), in that order: the gallery file records it. */
guint32 cbir_graph_checksum (const CbirGraph *g);
/* Bytes the graph holds in memory beyond a mapped file's tensors (built
 * graphs: the CSR too): the solver's sliced copy, the renumbering, a
 * computed spectrum. */
gsize cbir_graph_memory_bytes (const CbirGraph *g);
/* Items with at least one edge. */
guint cbir_graph_connected_items (const CbirGraph *g);

/* Settings of one diffusion. */
typedef struct
{
  float alpha;                  /* 0 < alpha < 1 */
  guint query_k;                /* gallery items the query is linked to */
  guint iterations;             /* conjugate-gradient steps at most */
  float tolerance;              /* stop when |r| <= tolerance |y| (0: never) */
  guint keep_first;             /* the plain search's first hits kept first
                                 * (at most query_k) */
  gboolean low_rank;            /* the graph's low-rank form instead of the
                                 * solver (the graph needs its spectrum) */
  gboolean warm_start;          /* with low_rank: the solver's iterations,
                                 * started from the low-rank form (a
                                 * searcher refuses it without low_rank) */
} CbirDiffusionParams;

/* alpha 0.99, query_k 10, 20 iterations, tolerance 1e-6. */
void cbir_diffusion_params_init (CbirDiffusionParams *p);
/* FALSE with an error naming the bad field. */
gboolean cbir_diffusion_params_check (const CbirDiffusionParams *p,
    GError **error);

/* Solves (I - alpha S) f = y by conjugate gradients from f = 0 (with
 * p->warm_start: from what f holds), y given sparsely: m seeds (gallery
 * items) with weights. f: n floats; scratch: 4 n floats. Returns the steps
 * taken. */
guint cbir_diffusion_solve (const CbirGraph *g, const guint *seeds,
    const float *seed_weights, guint m, const CbirDiffusionParams *p,
    float *f, float *scratch);

/* Runs func (ctx, 0 .. n_tasks - 1), in any order and on any threads, and
 * returns when all are done (e.g. a thread pool). */
typedef void (*CbirTaskFunc) (gpointer ctx, guint task);
typedef void (*CbirTaskRunner) (gpointer runner_data, CbirTaskFunc func,
    gpointer ctx, guint n_tasks);
/* The same, the blocks of rows of each step spread by runner (NULL: this
 * thread). The result does not depend on the runner. */
guint cbir_diffusion_solve_full (const CbirGraph *g, const guint *seeds,
    const float *seed_weights, guint m, const CbirDiffusionParams *p,
    float *f, float *scratch, CbirTaskRunner runner, gpointer runner_data);

/* The low-rank form (Iscen et al., "Fast Spectral Ranking for Similarity
 * Search", CVPR 2018): f ~ U diag (1 / (1 - alpha lambda)) U^T y, U and
 * lambda the r largest eigenpairs of S, found once by Lanczos with full
 * reorthogonalisation (`steps` Lanczos steps, 0 = 3 r). The graph keeps
 * them (n x r floats, gallery order). */
gboolean cbir_graph_compute_spectrum (CbirGraph *g, guint rank, guint steps,
    GError **error);
/* Borrowed (a mapped file), after checking values in [-1, 1] and entries
 * of unit vectors. */
gboolean cbir_graph_set_spectrum (CbirGraph *g, guint rank,
    const float *vectors, const float *values, const char *what,
    GError **error);
guint cbir_graph_get_rank (const CbirGraph *g);            /* 0: none */
const float *cbir_graph_get_eigenvectors (const CbirGraph *g);
const float *cbir_graph_get_eigenvalues (const CbirGraph *g);
/* f (n floats) in the low-rank form, for the seeds as in solve. */
void cbir_diffusion_low_rank (const CbirGraph *g, const guint *seeds,
    const float *seed_weights, guint m, float alpha, float *f);

G_END_DECLS

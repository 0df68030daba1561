/* The gallery's mutual k-NN graph and diffusion over it (see
 * include/cbir/diffusion.h). */
#include "cbir/diffusion.h"
#include "cbir/search.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct _CbirGraph
{
  guint n;
  guint k;
  float power;
  gsize nnz;
  const gint32 *offsets;
  const gint32 *nbrs;
  const float *weights;
  /* owned storage of built graphs (NULL when borrowed) */
  gint32 *own_offsets;
  gint32 *own_nbrs;
  float *own_weights;
  /* The solver's copy of the matrix: items renumbered in breadth-first
   * order of the graph (order[new] = old, rank[old] = new), so that a
   * row's neighbours sit close together in the vectors (random gathers
   * over the whole gallery measured 2.6x slower), then within windows of
   * SIGMA rows by length, longest first; stored as slices of 8 rows, each
   * padded to its longest row (padding: index 0, weight 0), entry t of the
   * slice's 8 rows side by side (SELL-8-SIGMA): one gather fetches x for
   * 8 rows at once and each SIMD lane sums one row, with no horizontal
   * sum and no loop per row; the sort keeps the padding small. */
  gsize *slice_off;             /* n_slices + 1: first entry of each slice */
  gint32 *ell_nbrs;
  float *ell_weights;
  guint *order;
  guint *rank;
  /* low-rank form: the r largest eigenpairs of S (gallery order), or 0 */
  guint eig_r;
  const float *eig_vecs;        /* n x eig_r */
  const float *eig_vals;        /* eig_r */
  float *own_eig_vecs;
  float *own_eig_vals;
};

#define SLICE 8                 /* rows of a slice of the solver's matrix */
#define SIGMA 64                /* rows sorted by length together */

/* Slice sl of the solver's matrix: its width (entries a row); *base,
 * where its entries start in ell_nbrs / ell_weights (entry t of its row
 * j at base + SLICE t + j). */
static inline guint
ell_slice (const CbirGraph *g, guint sl, gsize *base)
{
  *base = g->slice_off[sl];
  return (guint) ((g->slice_off[sl + 1] - g->slice_off[sl]) / SLICE);
}

/* Breadth-first order over the components, each started from its
 * lowest-index unvisited item (Cuthill-McKee without the degree sort). */
static void
graph_make_order (CbirGraph *g)
{
  guint n = g->n;
  g->order = g_new (guint, MAX (n, 1));
  g->rank = g_new (guint, MAX (n, 1));
  for (guint i = 0; i < n; i++)
    g->rank[i] = G_MAXUINT;
  guint head = 0, tail = 0;
  for (guint s = 0; s < n; s++) {
    if (g->rank[s] != G_MAXUINT)
      continue;
    g->rank[s] = tail;
    g->order[tail++] = s;
    while (head < tail) {
      guint i = g->order[head++];
      for (gint32 e = g->offsets[i]; e < g->offsets[i + 1]; e++) {
        guint j = (guint) g->nbrs[e];
        if (g->rank[j] == G_MAXUINT) {
          g->rank[j] = tail;
          g->order[tail++] = j;
        }
      }
    }
  }
  /* within windows of SIGMA rows, longest rows first (insertion sort,
   * stable: the breadth-first order among equals) */
  for (guint w0 = 0; w0 < n; w0 += SIGMA) {
    guint w1 = MIN (n, w0 + SIGMA);
    for (guint r = w0 + 1; r < w1; r++) {
      guint v = g->order[r], q = r;
      gint32 dv = g->offsets[v + 1] - g->offsets[v];
      while (q > w0 && g->offsets[g->order[q - 1] + 1]
          - g->offsets[g->order[q - 1]] < dv) {
        g->order[q] = g->order[q - 1];
        q--;
      }
      g->order[q] = v;
    }
  }
  for (guint r = 0; r < n; r++)
    g->rank[g->order[r]] = r;
}

static void
graph_make_ell (CbirGraph *g)
{
  graph_make_order (g);
  guint n_slices = (g->n + SLICE - 1) / SLICE;
  g->slice_off = g_new (gsize, (gsize) n_slices + 1);
  gsize total = 0;
  for (guint sl = 0; sl < n_slices; sl++) {
    guint w = 0;
    for (guint r = sl * SLICE; r < MIN (g->n, (sl + 1) * SLICE); r++) {
      guint i = g->order[r];
      w = MAX (w, (guint) (g->offsets[i + 1] - g->offsets[i]));
    }
    g->slice_off[sl] = total;
    total += (gsize) w * SLICE;
  }
  g->slice_off[n_slices] = total;
  /* zeroed: the padding is index 0, weight 0 */
  g->ell_nbrs = g_new0 (gint32, MAX (total, 1));
  g->ell_weights = g_new0 (float, MAX (total, 1));
  for (guint r = 0; r < g->n; r++) {
    guint i = g->order[r];
    gsize base;
    ell_slice (g, r / SLICE, &base);
    base += r % SLICE;
    guint t = 0;
    for (gint32 e = g->offsets[i]; e < g->offsets[i + 1]; e++, t++) {
      g->ell_nbrs[base + (gsize) SLICE * t] = (gint32) g->rank[g->nbrs[e]];
      g->ell_weights[base + (gsize) SLICE * t] = g->weights[e];
    }
  }
}

guint
cbir_graph_default_k (guint n)
{
  if (n < 2)
    return 0;
  guint k = (guint) lround (sqrt ((double) n) / 5.0);
  k = CLAMP (k, 5, 100);
  return MIN (k, n - 1);
}

void
cbir_graph_free (CbirGraph *g)
{
  if (!g)
    return;
  g_free (g->own_offsets);
  g_free (g->own_nbrs);
  g_free (g->own_weights);
  g_free (g->ell_nbrs);
  g_free (g->ell_weights);
  g_free (g->slice_off);
  g_free (g->order);
  g_free (g->rank);
  g_free (g->own_eig_vecs);
  g_free (g->own_eig_vals);
  g_free (g);
}

guint
cbir_graph_size (const CbirGraph *g)
{
  return g->n;
}

gsize
cbir_graph_nnz (const CbirGraph *g)
{
  return g->nnz;
}

guint
cbir_graph_get_k (const CbirGraph *g)
{
  return g->k;
}

float
cbir_graph_get_power (const CbirGraph *g)
{
  return g->power;
}

const gint32 *
cbir_graph_get_offsets (const CbirGraph *g)
{
  return g->offsets;
}

const gint32 *
cbir_graph_get_neighbours (const CbirGraph *g)
{
  return g->nbrs;
}

const float *
cbir_graph_get_weights (const CbirGraph *g)
{
  return g->weights;
}

guint32
cbir_graph_checksum (const CbirGraph *g)
{
  /* the arrays are little-endian in memory on every supported target */
  guint32 crc = cbir_crc32 (0, g->offsets,
      sizeof (gint32) * ((gsize) g->n + 1));
  crc = cbir_crc32 (crc, g->nbrs, sizeof (gint32) * g->nnz);
  return cbir_crc32 (crc, g->weights, sizeof (float) * g->nnz);
}

gsize
cbir_graph_memory_bytes (const CbirGraph *g)
{
  guint n_slices = (g->n + SLICE - 1) / SLICE;
  gsize ell = g->slice_off ? g->slice_off[n_slices] : 0;
  gsize own = g->own_offsets ? 4 * ((gsize) g->n + 1) + 8 * g->nnz : 0;
  return own + 8 * ell + 2 * 4 * (gsize) g->n
      + sizeof (gsize) * ((gsize) n_slices + 1)
      + (g->own_eig_vecs ? 4 * (gsize) g->n * g->eig_r : 0);
}

guint
cbir_graph_connected_items (const CbirGraph *g)
{
  guint c = 0;
  for (guint i = 0; i < g->n; i++)
    c += g->offsets[i + 1] > g->offsets[i];
  return c;
}

/* Position of j in row i (sorted), or -1. */
static gint64
row_find (const CbirGraph *g, guint i, gint32 j)
{
  gint64 lo = g->offsets[i], hi = g->offsets[i + 1] - 1;
  while (lo <= hi) {
    gint64 mid = lo + (hi - lo) / 2;
    if (g->nbrs[mid] == j)
      return mid;
    if (g->nbrs[mid] < j)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

static gboolean
power_valid (float power)
{
  return power > 0.f && power <= CBIR_GRAPH_MAX_POWER;
}

CbirGraph *
cbir_graph_new_borrowed (guint n, guint k, float power,
    const gint32 *offsets, const gint32 *neighbours, const float *weights,
    gsize nnz, const char *what, GError **error)
{
  g_return_val_if_fail (offsets != NULL, NULL);
  if (!what)
    what = "graph";
  if (!power_valid (power)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: graph similarity power %g is not in (0, 16]", what, power);
    return NULL;
  }
  if (k > CBIR_GRAPH_MAX_K || nnz > (gsize) n * k) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: graph of %" G_GSIZE_FORMAT " edges for %u items at k %u "
        "(at most k per item, k <= %d)", what, nnz, n, k, CBIR_GRAPH_MAX_K);
    return NULL;
  }
  if (offsets[0] != 0 || (gsize) (guint32) offsets[n] != nnz
      || offsets[n] < 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: graph offsets run from %d to %d, expected 0 to %" G_GSIZE_FORMAT,
        what, offsets[0], offsets[n], nnz);
    return NULL;
  }
  for (guint i = 0; i < n; i++) {
    gint32 a = offsets[i], b = offsets[i + 1];
    if (b < a || b - a > (gint32) k) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: graph row %u has offsets %d..%d (decreasing, or more than k "
          "%u edges)", what, i, a, b, k);
      return NULL;
    }
    for (gint32 e = a; e < b; e++) {
      gint32 j = neighbours[e];
      if (j < 0 || (guint) j >= n || (guint) j == i
          || (e > a && j <= neighbours[e - 1])) {
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
            "%s: graph row %u has a bad neighbour %d (out of range, the "
            "item itself, or not in increasing order)", what, i, j);
        return NULL;
      }
      float w = weights[e];
      if (!(w > 0.f && w <= 1.f)) {
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
            "%s: graph edge %u-%d has weight %g (expected (0, 1])", what, i,
            j, w);
        return NULL;
      }
    }
  }
  CbirGraph *g = g_new0 (CbirGraph, 1);
  g->n = n;
  g->k = k;
  g->power = power;
  g->nnz = nnz;
  g->offsets = offsets;
  g->nbrs = neighbours;
  g->weights = weights;
  /* symmetry (rows are sorted and in range now) */
  for (guint i = 0; i < n; i++) {
    for (gint32 e = offsets[i]; e < offsets[i + 1]; e++) {
      gint32 j = neighbours[e];
      gint64 back = row_find (g, (guint) j, (gint32) i);
      if (back < 0 || weights[back] != weights[e]) {
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
            "%s: graph is not symmetric at edge %u-%d", what, i, j);
        cbir_graph_free (g);
        return NULL;
      }
    }
  }
  graph_make_ell (g);
  return g;
}

static double
dot_d (const float *a, const float *b, guint dim)
{
  double acc = 0;
  for (guint j = 0; j < dim; j++)
    acc += (double) a[j] * b[j];
  return acc;
}

static int
cmp_guint (const void *a, const void *b)
{
  guint x = *(const guint *) a, y = *(const guint *) b;
  return (x > y) - (x < y);
}

CbirGraph *
cbir_graph_build (const float *features, guint n, guint dim, guint k,
    float power, guint n_threads, GError **error)
{
  g_return_val_if_fail (n == 0 || features != NULL, NULL);
  g_return_val_if_fail (dim > 0, NULL);
  if (!power_valid (power)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "graph similarity power must be in (0, 16], not %g", power);
    return NULL;
  }
  if (k == 0)
    k = cbir_graph_default_k (n);
  k = MIN (k, CBIR_GRAPH_MAX_K);
  k = n > 0 ? MIN (k, n - 1) : 0;
  if ((guint64) n * k > G_MAXINT32) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "a graph of %u items at k %u has more edges than 32-bit offsets "
        "hold", n, k);
    return NULL;
  }
  CbirGraph *g = g_new0 (CbirGraph, 1);
  g->n = n;
  g->k = k;
  g->power = power;
  g->own_offsets = g_new0 (gint32, (gsize) n + 1);
  g->offsets = g->own_offsets;
  if (k == 0) {
    g->own_nbrs = g_new (gint32, 1);
    g->own_weights = g_new (float, 1);
    g->nbrs = g->own_nbrs;
    g->weights = g->own_weights;
    graph_make_ell (g);
    return g;
  }

  /* each item's k nearest by cosine, rows sorted by index */
  guint *knn = g_new (guint, (gsize) n * k);
  if (!cbir_knn_self (features, n, dim, CBIR_METRIC_COSINE, k, n_threads,
          knn, NULL, error)) {
    g_free (knn);
    cbir_graph_free (g);
    return NULL;
  }
  for (guint i = 0; i < n; i++)
    qsort (knn + (gsize) i * k, k, sizeof (guint), cmp_guint);

  /* mutual edges, cos^power weights (computed in double from the vectors,
   * so w_ij == w_ji exactly), then D^-1/2 W D^-1/2 */
  double *inv = g_new (double, n);
  for (guint i = 0; i < n; i++) {
    double nn = dot_d (features + (gsize) i * dim, features + (gsize) i * dim,
        dim);
    inv[i] = nn > 0 ? 1.0 / sqrt (nn) : 0.0;
  }
  gint32 *nbrs = g_new (gint32, (gsize) n * k);
  double *w = g_new (double, (gsize) n * k);
  double *deg = g_new0 (double, n);
  gsize e = 0;
  for (guint i = 0; i < n; i++) {
    const guint *row = knn + (gsize) i * k;
    for (guint t = 0; t < k; t++) {
      guint j = row[t];
      if (!bsearch (&i, knn + (gsize) j * k, k, sizeof (guint), cmp_guint))
        continue;
      /* inv[i] * inv[j] == inv[j] * inv[i]: products commute */
      double c = dot_d (features + (gsize) i * dim,
          features + (gsize) j * dim, dim) * (inv[i] * inv[j]);
      if (!(c > 0))
        continue;
      double wij = pow (MIN (c, 1.0), power);
      if (!(wij > 0))
        continue;
      nbrs[e] = (gint32) j;
      w[e] = wij;
      deg[i] += wij;
      e++;
    }
    g->own_offsets[i + 1] = (gint32) e;
  }
  g_free (knn);
  g->nnz = e;
  float *sw = g_new (float, MAX (e, 1));
  for (guint i = 0; i < n; i++) {
    for (gint32 t = g->own_offsets[i]; t < g->own_offsets[i + 1]; t++) {
      guint j = (guint) nbrs[t];
      /* the same expression both ways: symmetric to the last bit */
      double a = MIN (deg[i], deg[j]), b = MAX (deg[i], deg[j]);
      double v = w[t] / sqrt (a * b);
      sw[t] = (float) MIN (v, 1.0);
    }
  }
  g_free (w);
  g_free (deg);
  g_free (inv);
  g->own_nbrs = g_renew (gint32, nbrs, MAX (e, 1));
  g->own_weights = sw;
  g->nbrs = g->own_nbrs;
  g->weights = g->own_weights;
  graph_make_ell (g);
  return g;
}

void
cbir_diffusion_params_init (CbirDiffusionParams *p)
{
  p->alpha = CBIR_DIFFUSION_DEFAULT_ALPHA;
  p->query_k = CBIR_DIFFUSION_DEFAULT_QUERY_K;
  p->iterations = CBIR_DIFFUSION_DEFAULT_ITERATIONS;
  p->tolerance = 1e-6f;
  p->keep_first = CBIR_DIFFUSION_DEFAULT_KEEP_FIRST;
  p->low_rank = FALSE;
  p->warm_start = FALSE;
}

gboolean
cbir_diffusion_params_check (const CbirDiffusionParams *p, GError **error)
{
  if (!(p->alpha > 0.f && p->alpha < 1.f)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "diffusion alpha must be in (0, 1), not %g", p->alpha);
    return FALSE;
  }
  if (p->query_k < 1 || p->query_k > CBIR_GRAPH_MAX_K) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "diffusion query links must be in 1..%d, not %u", CBIR_GRAPH_MAX_K,
        p->query_k);
    return FALSE;
  }
  if (p->iterations < 1 || p->iterations > 10000) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "diffusion iterations must be in 1..10000, not %u", p->iterations);
    return FALSE;
  }
  if (p->keep_first > p->query_k) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "diffusion keep-first (%u) cannot exceed the query links (%u)",
        p->keep_first, p->query_k);
    return FALSE;
  }
  if (!(p->tolerance >= 0.f && p->tolerance < 1.f)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "diffusion tolerance must be in [0, 1), not %g", p->tolerance);
    return FALSE;
  }
  return TRUE;
}

/* out = (I - alpha S) x over rows [a, b), a a multiple of SLICE. Two
 * variants, picked at run time like the search kernels
 * (cbir_search_get_isa): AVX2 gathers (a slice's 8 rows a step) and plain
 * C; each row is summed in the same order in both (entry by entry), so
 * they agree to the rounding of the FMA. */
typedef void (*ApplyFunc) (const CbirGraph *g, float alpha,
    const float *restrict x, float *restrict out, guint a, guint b);

__attribute__ ((target ("avx2,fma"))) static void
apply_a_avx2 (const CbirGraph *g, float alpha, const float *restrict x,
    float *restrict out, guint a, guint b)
{
  const __m256 va = _mm256_set1_ps (alpha);
  for (guint r0 = a; r0 < b; r0 += SLICE) {
    gsize base;
    const guint W = ell_slice (g, r0 / SLICE, &base);
    const gint32 *nb = g->ell_nbrs + base;
    const float *w = g->ell_weights + base;
    __m256 acc = _mm256_setzero_ps ();
    for (guint t = 0; t < W; t++) {
      __m256i id = _mm256_loadu_si256 ((const __m256i *) (nb + SLICE * t));
      __m256 xv = _mm256_i32gather_ps (x, id, 4);
      acc = _mm256_fmadd_ps (_mm256_loadu_ps (w + SLICE * t), xv, acc);
    }
    if (r0 + SLICE <= b) {
      _mm256_storeu_ps (out + r0, _mm256_fnmadd_ps (va, acc,
              _mm256_loadu_ps (x + r0)));
    } else {
      float l[SLICE];
      _mm256_storeu_ps (l, acc);
      for (guint j = 0; r0 + j < b; j++)
        out[r0 + j] = x[r0 + j] - alpha * l[j];
    }
  }
}

static void
apply_a_c (const CbirGraph *g, float alpha, const float *restrict x,
    float *restrict out, guint a, guint b)
{
  for (guint r0 = a; r0 < b; r0 += SLICE) {
    gsize base;
    const guint W = ell_slice (g, r0 / SLICE, &base);
    const gint32 *nb = g->ell_nbrs + base;
    const float *w = g->ell_weights + base;
    float l[SLICE] = { 0 };
    for (guint t = 0; t < W; t++)
      for (guint j = 0; j < SLICE; j++)
        l[j] += w[SLICE * t + j] * x[nb[SLICE * t + j]];
    for (guint j = 0; j < SLICE && r0 + j < b; j++)
      out[r0 + j] = x[r0 + j] - alpha * l[j];
  }
}

/* The search's ISA level (CPU, CBIR_SEARCH_ISA, cbir_search_set_isa):
 * avx2 and avx512 both have AVX2 + FMA. */
static ApplyFunc
apply_func (void)
{
  const char *isa = cbir_search_get_isa ();
  return g_str_equal (isa, "avx2") || g_str_equal (isa, "avx512")
      ? apply_a_avx2 : apply_a_c;
}

/* Conjugate gradients in two passes a step, each over fixed blocks of
 * rows (the partial sums are added in block order, so the result does not
 * depend on how many threads ran the blocks):
 *   pass 1: f += a d, r -= a Ad, |r|^2;  beta = |r|^2 / |r_old|^2
 *   pass 2: Ar, d = r + beta d, Ad = Ar + beta Ad, d.Ad;  a = |r|^2 / d.Ad
 * (Ad by the recurrence, so one matrix product a step; pass 2 reads r
 * everywhere, written by pass 1, and writes only its own rows).
 *   pass 3 (a warm start, once): r = y - Af, |r|^2 */
#define SOLVE_BLOCK CBIR_DIFFUSION_BLOCK_ROWS

typedef struct
{
  const CbirGraph *g;
  ApplyFunc apply;
  float alpha;
  float *f, *r, *d, *ad, *ar;
  float a, beta;
  double *part;
  guint pass;
} SolveCtx;

static void
solve_block (gpointer data, guint blk)
{
  SolveCtx *c = data;
  guint n = c->g->n;
  guint i0 = blk * SOLVE_BLOCK, i1 = MIN (n, i0 + SOLVE_BLOCK);
  double acc = 0;
  if (c->pass == 1) {
    float a = c->a;
    for (guint i = i0; i < i1; i++) {
      c->f[i] += a * c->d[i];
      c->r[i] -= a * c->ad[i];
      acc += (double) c->r[i] * c->r[i];
    }
  } else if (c->pass == 3) {
    c->apply (c->g, c->alpha, c->f, c->ar, i0, i1);
    for (guint i = i0; i < i1; i++) {
      c->r[i] -= c->ar[i];
      acc += (double) c->r[i] * c->r[i];
    }
  } else {
    float beta = c->beta;
    c->apply (c->g, c->alpha, c->r, c->ar, i0, i1);
    for (guint i = i0; i < i1; i++) {
      c->d[i] = c->r[i] + beta * c->d[i];
      c->ad[i] = c->ar[i] + beta * c->ad[i];
      acc += (double) c->d[i] * c->ad[i];
    }
  }
  c->part[blk] = acc;
}

static double
solve_pass (SolveCtx *c, guint pass, guint n_blocks, CbirTaskRunner runner,
    gpointer runner_data)
{
  c->pass = pass;
  if (runner && n_blocks > 1)
    runner (runner_data, solve_block, c, n_blocks);
  else
    for (guint b = 0; b < n_blocks; b++)
      solve_block (c, b);
  double sum = 0;
  for (guint b = 0; b < n_blocks; b++)
    sum += c->part[b];
  return sum;
}

guint
cbir_diffusion_solve (const CbirGraph *g, const guint *seeds,
    const float *seed_weights, guint m, const CbirDiffusionParams *p,
    float *f, float *scratch)
{
  return cbir_diffusion_solve_full (g, seeds, seed_weights, m, p, f, scratch,
      NULL, NULL);
}

guint
cbir_diffusion_solve_full (const CbirGraph *g, const guint *seeds,
    const float *seed_weights, guint m, const CbirDiffusionParams *p,
    float *f, float *scratch, CbirTaskRunner runner, gpointer runner_data)
{
  /* in the solver's numbering; f holds the solution in it until the end,
   * when ar (free then) takes it and f gets it back in gallery order */
  guint n = g->n;
  guint n_blocks = (n + SOLVE_BLOCK - 1) / SOLVE_BLOCK;
  double part_stack[64];
  SolveCtx c = { g, apply_func (), p->alpha, f, scratch, scratch + n,
    scratch + 2 * (gsize) n, scratch + 3 * (gsize) n, 0.f, 0.f,
    n_blocks <= 64 ? part_stack : g_new (double, n_blocks), 0
  };
  memset (c.r, 0, sizeof (float) * n);
  memset (c.d, 0, sizeof (float) * n);
  memset (c.ad, 0, sizeof (float) * n);
  for (guint i = 0; i < m; i++)
    c.r[g->rank[seeds[i]]] += seed_weights[i];
  double rr = 0;
  for (guint i = 0; i < n; i++)
    rr += (double) c.r[i] * c.r[i];
  double stop = (double) p->tolerance * p->tolerance * rr;
  if (p->warm_start) {
    /* the start, into the solver's numbering (ar is free), r = y - Af */
    for (guint i = 0; i < n; i++)
      c.ar[g->rank[i]] = f[i];
    memcpy (f, c.ar, sizeof (float) * n);
    rr = solve_pass (&c, 3, n_blocks, runner, runner_data);
  } else {
    memset (f, 0, sizeof (float) * n);
  }
  guint it = 0;
  if (rr > 0) {
    c.beta = 0.f;               /* d = r, Ad = Ar */
    double dad = solve_pass (&c, 2, n_blocks, runner, runner_data);
    while (it < p->iterations && rr > stop && dad > 0) {
      c.a = (float) (rr / dad);
      double rr_new = solve_pass (&c, 1, n_blocks, runner, runner_data);
      it++;
      if (!(rr_new > stop) || it >= p->iterations)
        break;
      c.beta = (float) (rr_new / rr);
      rr = rr_new;
      dad = solve_pass (&c, 2, n_blocks, runner, runner_data);
    }
  }
  memcpy (c.ar, f, sizeof (float) * n);
  for (guint i = 0; i < n; i++)
    f[g->order[i]] = c.ar[i];
  if (c.part != part_stack)
    g_free (c.part);
  return it;
}

/* ---- the low-rank form (Iscen et al., "Fast Spectral Ranking for
 * Similarity Search", CVPR 2018): f = U diag (1 / (1 - alpha lambda)) U^T y
 * with U, lambda the r largest eigenpairs of S. ---- */

/* LAPACK (OpenBLAS ships it), gfortran ABI */
extern void dstev_ (const char *jobz, const int *n, double *d, double *e,
    double *z, const int *ldz, double *work, int *info, size_t jobz_len);

guint
cbir_graph_get_rank (const CbirGraph *g)
{
  return g->eig_r;
}

const float *
cbir_graph_get_eigenvectors (const CbirGraph *g)
{
  return g->eig_vecs;
}

const float *
cbir_graph_get_eigenvalues (const CbirGraph *g)
{
  return g->eig_vals;
}

gboolean
cbir_graph_set_spectrum (CbirGraph *g, guint rank, const float *vectors,
    const float *values, const char *what, GError **error)
{
  if (!what)
    what = "graph";
  if (rank == 0 || rank > g->n) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: graph spectrum of rank %u for %u items", what, rank, g->n);
    return FALSE;
  }
  for (guint j = 0; j < rank; j++)
    if (!(fabsf (values[j]) <= 1.0001f)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: graph eigenvalue %u is %g (outside [-1, 1])", what, j,
          values[j]);
      return FALSE;
    }
  for (gsize i = 0; i < (gsize) g->n * rank; i++)
    if (!(fabsf (vectors[i]) <= 1.0001f)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: graph eigenvector entry %" G_GSIZE_FORMAT " is %g (not a unit "
          "vector's)", what, i, vectors[i]);
      return FALSE;
    }
  g_clear_pointer (&g->own_eig_vecs, g_free);
  g_clear_pointer (&g->own_eig_vals, g_free);
  g->eig_r = rank;
  g->eig_vecs = vectors;
  g->eig_vals = values;
  return TRUE;
}

/* S x over the solver's numbering */
static void
apply_s (const CbirGraph *g, const float *x, float *out)
{
  apply_func () (g, 1.f, x, out, 0, g->n);
  for (guint i = 0; i < g->n; i++)
    out[i] = x[i] - out[i];
}

gboolean
cbir_graph_compute_spectrum (CbirGraph *g, guint rank, guint steps,
    GError **error)
{
  guint n = g->n;
  if (rank == 0 || rank >= n) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "the low-rank form needs a rank in 1..%u, not %u", n > 0 ? n - 1 : 0,
        rank);
    return FALSE;
  }
  guint m = steps ? steps : 3 * rank;
  m = CLAMP (m, rank + 1, n);
  /* Lanczos with full reorthogonalisation (classical Gram-Schmidt, twice),
   * Q in float, T in double, from a fixed pseudo-random start */
  float *q = g_new (float, (gsize) n * m);
  float *w = g_new (float, n);
  float *h = g_new (float, m);
  double *alpha = g_new0 (double, m), *beta = g_new0 (double, m);
  guint64 x = 0x9e3779b97f4a7c15ull;
  double nn = 0;
  for (guint i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    q[i] = (float) ((x >> 40) * (1.0 / (1 << 24)) - 0.5);
    nn += (double) q[i] * q[i];
  }
  for (guint i = 0; i < n; i++)
    q[i] = (float) (q[i] / sqrt (nn));
  guint k = 0;
  for (; k < m; k++) {
    float *qk = q + (gsize) k * n;
    apply_s (g, qk, w);
    double a = 0;
    for (guint i = 0; i < n; i++)
      a += (double) qk[i] * w[i];
    alpha[k] = a;
    for (guint pass = 0; pass < 2; pass++) {
      /* h = Q^T w, w -= Q h */
      cblas_sgemv (CblasRowMajor, CblasNoTrans, (int) k + 1, (int) n, 1.f, q,
          (int) n, w, 1, 0.f, h, 1);
      cblas_sgemv (CblasRowMajor, CblasTrans, (int) k + 1, (int) n, -1.f, q,
          (int) n, h, 1, 1.f, w, 1);
    }
    if (k + 1 == m)
      break;
    double b = 0;
    for (guint i = 0; i < n; i++)
      b += (double) w[i] * w[i];
    b = sqrt (b);
    if (!(b > 1e-6))            /* an invariant subspace: stop there */
      break;
    beta[k] = b;
    float *qn = q + (gsize) (k + 1) * n;
    for (guint i = 0; i < n; i++)
      qn[i] = (float) (w[i] / b);
  }
  guint mm = MIN (k + 1, m);     /* Lanczos vectors made */
  int mi = (int) mm, info = 0;
  double *z = g_new (double, (gsize) mm * mm);
  double *work = g_new (double, MAX (1, 2 * mm - 2));
  dstev_ ("V", &mi, alpha, beta, z, &mi, work, &info, 1);
  g_free (work);
  gboolean ok = info == 0;
  if (!ok)
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "graph spectrum: the tridiagonal eigen-solver failed (dstev info %d)",
        info);
  guint r = MIN (rank, mm);
  if (ok) {
    /* the r largest Ritz pairs (dstev sorts ascending); U = Q V */
    float *v = g_new (float, (gsize) mm * r);
    g->own_eig_vals = g_new (float, r);
    for (guint j = 0; j < r; j++) {
      guint col = mm - 1 - j;
      g->own_eig_vals[j] = (float) alpha[col];
      for (guint t = 0; t < mm; t++)
        v[(gsize) t * r + j] = (float) z[(gsize) col * mm + t];
    }
    float *u = g_new (float, (gsize) n * r);
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) n, (int) r,
        (int) mm, 1.f, q, (int) n, v, (int) r, 0.f, u, (int) r);
    /* back to gallery order */
    g_free (g->own_eig_vecs);
    g->own_eig_vecs = g_new (float, (gsize) n * r);
    for (guint i = 0; i < n; i++)
      memcpy (g->own_eig_vecs + (gsize) g->order[i] * r, u + (gsize) i * r,
          sizeof (float) * r);
    g->eig_r = r;
    g->eig_vecs = g->own_eig_vecs;
    g->eig_vals = g->own_eig_vals;
    g_free (u);
    g_free (v);
  }
  g_free (z);
  g_free (alpha);
  g_free (beta);
  g_free (h);
  g_free (w);
  g_free (q);
  return ok;
}

void
cbir_diffusion_low_rank (const CbirGraph *g, const guint *seeds,
    const float *seed_weights, guint m, float alpha, float *f)
{
  guint r = g->eig_r;
  float zs[256];
  float *z = r <= 256 ? zs : g_new (float, r);
  memset (z, 0, sizeof (float) * r);
  for (guint s = 0; s < m; s++) {
    const float *u = g->eig_vecs + (gsize) seeds[s] * r;
    for (guint j = 0; j < r; j++)
      z[j] += seed_weights[s] * u[j];
  }
  /* the leading eigenpairs carry the long-range part; the rest of the
   * spectrum is taken as 0 there, i.e. the identity on y: the seeds keep
   * their own weight on top of what diffuses to them */
  for (guint j = 0; j < r; j++) {
    float l = alpha * g->eig_vals[j];
    z[j] *= l / (1.f - l);
  }
  cblas_sgemv (CblasRowMajor, CblasNoTrans, (int) g->n, (int) r, 1.f,
      g->eig_vecs, (int) r, z, 1, 0.f, f, 1);
  for (guint s = 0; s < m; s++)
    f[seeds[s]] += seed_weights[s];
  if (z != zs)
    g_free (z);
}

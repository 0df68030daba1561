/* Engine tests of the gallery's k-NN graph and diffusion re-ranking
 * (src/diffusion.c, the graph tensors in src/gallery.c, the searcher's
 * diffusion in src/search.c). The scores against numpy's dense solve are
 * checked end to end in tests/tools/test-eval.py; here: the graph against
 * a brute-force construction, the solver against Gaussian elimination,
 * the file format's defences, append = build from scratch, old galleries,
 * single/batch/full-ranking agreement and the errors. */
#include <check.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cbir/diffusion.h"
#include "cbir/gallery.h"
#include "cbir/safetensors.h"
#include "cbir/search.h"

static char *tmpdir;

static void
setup (void)
{
  tmpdir = g_dir_make_tmp ("test-diffusion-XXXXXX", NULL);
  ck_assert_ptr_nonnull (tmpdir);
}

static void
teardown (void)
{
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *p = g_build_filename (tmpdir, name, NULL);
    g_unlink (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
}

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

#define N 60
#define D 8
#define K 6

/* n items in 3 clusters (label = cluster) */
static void
clusters (float *feat, gint32 *labels, guint n, guint seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  float centre[3][D];
  for (guint c = 0; c < 3; c++)
    for (guint j = 0; j < D; j++)
      centre[c][j] = (float) g_rand_double_range (r, -1, 1);
  for (guint i = 0; i < n; i++) {
    guint c = g_rand_int_range (r, 0, 3);
    labels[i] = (gint32) c;
    for (guint j = 0; j < D; j++)
      feat[i * D + j] = centre[c][j] + (float) g_rand_double_range (r,
          -0.45, 0.45);
  }
  g_rand_free (r);
}

static double
cosd (const float *a, const float *b)
{
  double ab = 0, aa = 0, bb = 0;
  for (guint j = 0; j < D; j++) {
    ab += (double) a[j] * b[j];
    aa += (double) a[j] * a[j];
    bb += (double) b[j] * b[j];
  }
  return ab / sqrt (aa * bb);
}

START_TEST (test_default_k)
{
  ck_assert_uint_eq (cbir_graph_default_k (0), 0);
  ck_assert_uint_eq (cbir_graph_default_k (1), 0);
  ck_assert_uint_eq (cbir_graph_default_k (2), 1);
  ck_assert_uint_eq (cbir_graph_default_k (10), 5);
  ck_assert_uint_eq (cbir_graph_default_k (9003), 19);
  ck_assert_uint_eq (cbir_graph_default_k (60000), 49);
  ck_assert_uint_eq (cbir_graph_default_k (1000000), 100);
}
END_TEST

/* The graph against a brute-force mutual k-NN in double. */
START_TEST (test_graph_brute_force)
{
  static float feat[N * D];
  static gint32 labels[N];
  clusters (feat, labels, N, 7);
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGraph) g = cbir_graph_build (feat, N, D, K, 3.f, 2, &err);
  ck_assert_msg (g != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_graph_size (g), N);
  ck_assert_uint_eq (cbir_graph_get_k (g), K);

  /* brute force: each item's K nearest by cosine, ties by index */
  static gboolean in_knn[N][N];
  memset (in_knn, 0, sizeof (in_knn));
  for (guint i = 0; i < N; i++) {
    gboolean taken[N] = { FALSE };
    taken[i] = TRUE;
    for (guint t = 0; t < K; t++) {
      gint best = -1;
      for (guint j = 0; j < N; j++)
        if (!taken[j] && (best < 0 || cosd (feat + i * D, feat + j * D) >
                cosd (feat + i * D, feat + best * D)))
          best = (gint) j;
      taken[best] = TRUE;
      in_knn[i][best] = TRUE;
    }
  }
  static double w[N][N], deg[N];
  memset (w, 0, sizeof (w));
  memset (deg, 0, sizeof (deg));
  for (guint i = 0; i < N; i++)
    for (guint j = 0; j < N; j++)
      if (in_knn[i][j] && in_knn[j][i]) {
        double c = cosd (feat + i * D, feat + j * D);
        if (c > 0)
          w[i][j] = pow (c, 3);
        deg[i] += w[i][j];
      }
  const gint32 *off = cbir_graph_get_offsets (g);
  const gint32 *nb = cbir_graph_get_neighbours (g);
  const float *wt = cbir_graph_get_weights (g);
  gsize edges = 0;
  for (guint i = 0; i < N; i++) {
    for (guint j = 0; j < N; j++) {
      gint32 e;
      for (e = off[i]; e < off[i + 1] && nb[e] != (gint32) j; e++);
      gboolean has = e < off[i + 1];
      ck_assert_msg (has == (w[i][j] > 0), "edge %u-%u", i, j);
      if (has) {
        double want = w[i][j] / sqrt (deg[i] * deg[j]);
        ck_assert_msg (fabs (wt[e] - want) < 1e-6, "weight %u-%u %g, want %g",
            i, j, wt[e], want);
        edges++;
      }
    }
  }
  ck_assert_uint_eq (edges, cbir_graph_nnz (g));
  ck_assert_uint_gt (edges, N);
  /* k = 0: the size rule (60 items -> 5) */
  g_autoptr (CbirGraph) g0 = cbir_graph_build (feat, N, D, 0, 3.f, 1, &err);
  ck_assert_uint_eq (cbir_graph_get_k (g0), 5);
  /* bad power */
  g_clear_error (&err);
  ck_assert_ptr_null (cbir_graph_build (feat, N, D, K, 0.f, 1, &err));
  ck_assert (strstr (err->message, "power"));
}
END_TEST

/* (I - alpha S) f = y by Gaussian elimination in double. */
static void
dense_solve (const CbirGraph *g, float alpha, const double *y, double *f)
{
  guint n = cbir_graph_size (g);
  double *a = g_new0 (double, (gsize) n * (n + 1));
  const gint32 *off = cbir_graph_get_offsets (g);
  const gint32 *nb = cbir_graph_get_neighbours (g);
  const float *wt = cbir_graph_get_weights (g);
  for (guint i = 0; i < n; i++) {
    a[i * (n + 1) + i] = 1;
    for (gint32 e = off[i]; e < off[i + 1]; e++)
      a[i * (n + 1) + nb[e]] -= alpha * wt[e];
    a[i * (n + 1) + n] = y[i];
  }
  for (guint c = 0; c < n; c++) {
    guint p = c;
    for (guint r = c + 1; r < n; r++)
      if (fabs (a[r * (n + 1) + c]) > fabs (a[p * (n + 1) + c]))
        p = r;
    for (guint j = 0; j <= n; j++) {
      double t = a[c * (n + 1) + j];
      a[c * (n + 1) + j] = a[p * (n + 1) + j];
      a[p * (n + 1) + j] = t;
    }
    for (guint r = 0; r < n; r++) {
      if (r == c)
        continue;
      double m = a[r * (n + 1) + c] / a[c * (n + 1) + c];
      for (guint j = c; j <= n; j++)
        a[r * (n + 1) + j] -= m * a[c * (n + 1) + j];
    }
  }
  for (guint i = 0; i < n; i++)
    f[i] = a[i * (n + 1) + n] / a[i * (n + 1) + i];
  g_free (a);
}

START_TEST (test_solve_dense)
{
  static float feat[N * D];
  static gint32 labels[N];
  clusters (feat, labels, N, 11);
  g_autoptr (CbirGraph) g = cbir_graph_build (feat, N, D, K, 3.f, 1, NULL);
  CbirDiffusionParams p;
  cbir_diffusion_params_init (&p);
  p.iterations = 1000;
  p.tolerance = 0.f;
  guint seeds[3] = { 4, 17, 33 };
  float sw[3] = { 0.9f, 0.5f, 0.25f };
  double y[N] = { 0 }, want[N];
  for (guint i = 0; i < 3; i++)
    y[seeds[i]] = sw[i];
  float f[N], scratch[4 * N];
  guint steps = cbir_diffusion_solve (g, seeds, sw, 3, &p, f, scratch);
  ck_assert_uint_ge (steps, 1);
  dense_solve (g, p.alpha, y, want);
  double fmax = 0;
  for (guint i = 0; i < N; i++)
    fmax = MAX (fmax, want[i]);
  for (guint i = 0; i < N; i++)
    ck_assert_msg (fabs (f[i] - want[i]) <= 1e-4 * fmax, "f[%u] %g, want %g",
        i, f[i], want[i]);
  /* the default tolerance stops early, still close */
  cbir_diffusion_params_init (&p);
  p.iterations = 1000;
  guint early = cbir_diffusion_solve (g, seeds, sw, 3, &p, f, scratch);
  ck_assert_uint_le (early, steps);
  for (guint i = 0; i < N; i++)
    ck_assert (fabs (f[i] - want[i]) <= 1e-3 * fmax);
  /* a warm start (f holds it, gallery order): from the answer itself no
   * step is needed; from a wrong start the answer is still reached */
  cbir_diffusion_params_init (&p);
  p.warm_start = TRUE;
  p.iterations = 1000;
  p.tolerance = 1e-4f;
  for (guint i = 0; i < N; i++)
    f[i] = (float) want[i];
  ck_assert_uint_eq (cbir_diffusion_solve (g, seeds, sw, 3, &p, f, scratch),
      0);
  for (guint i = 0; i < N; i++)
    ck_assert (fabs (f[i] - want[i]) <= 1e-6 * fmax);
  p.tolerance = 0.f;
  for (guint i = 0; i < N; i++)
    f[i] = (float) (want[i] + 0.3 * fmax * ((gint) (i * 7 % 5) - 2));
  ck_assert_uint_ge (cbir_diffusion_solve (g, seeds, sw, 3, &p, f, scratch),
      1);
  for (guint i = 0; i < N; i++)
    ck_assert_msg (fabs (f[i] - want[i]) <= 1e-4 * fmax, "warm f[%u] %g, "
        "want %g", i, f[i], want[i]);
}
END_TEST

static CbirGalleryBuilder *
builder_of (const float *feat, const gint32 *labels, guint n, gboolean graph)
{
  CbirGalleryBuilder *b = cbir_gallery_builder_new ("fp", CBIR_CODE_FLOAT, D,
      FALSE);
  if (graph)
    ck_assert (cbir_gallery_builder_set_graph (b, TRUE, 0, 3.f, NULL));
  for (guint i = 0; i < n; i++)
    cbir_gallery_builder_add (b, feat + i * D, labels[i], NULL, NULL);
  return b;
}

static void
assert_same_graph (const CbirGraph *a, const CbirGraph *b)
{
  ck_assert_uint_eq (cbir_graph_size (a), cbir_graph_size (b));
  ck_assert_uint_eq (cbir_graph_nnz (a), cbir_graph_nnz (b));
  ck_assert_uint_eq (cbir_graph_get_k (a), cbir_graph_get_k (b));
  ck_assert (memcmp (cbir_graph_get_offsets (a), cbir_graph_get_offsets (b),
          4 * (cbir_graph_size (a) + 1)) == 0);
  ck_assert (memcmp (cbir_graph_get_neighbours (a),
          cbir_graph_get_neighbours (b), 4 * cbir_graph_nnz (a)) == 0);
  ck_assert (memcmp (cbir_graph_get_weights (a), cbir_graph_get_weights (b),
          4 * cbir_graph_nnz (a)) == 0);
  ck_assert_uint_eq (cbir_graph_checksum (a), cbir_graph_checksum (b));
}

/* Hits of every query by search, search_batch and the full ranking. */
static void
assert_search_paths_agree (CbirSearcher *s, const float *q, guint nq,
    guint n)
{
  const guint k = 8;
  CbirHit batch[20 * 8];
  guint nb[20];
  float *dist = g_new (float, (gsize) nq * n);
  cbir_searcher_search_batch (s, q, nq, k, batch, nb);
  cbir_searcher_distances_batch (s, q, nq, dist);
  for (guint i = 0; i < nq; i++) {
    CbirHit one[8];
    guint n1 = cbir_searcher_search (s, q + i * D, k, one);
    ck_assert_uint_eq (n1, nb[i]);
    for (guint j = 0; j < n1; j++) {
      ck_assert_uint_eq (one[j].index, batch[i * k + j].index);
      ck_assert (one[j].distance == batch[i * k + j].distance);
    }
    float *row = g_new (float, n);
    cbir_searcher_distances (s, q + i * D, row);
    ck_assert (memcmp (row, dist + (gsize) i * n, 4 * n) == 0);
    /* the full ranking's first k are the hits, in order */
    for (guint j = 0; j < n1; j++) {
      guint best = 0;
      for (guint t = 1; t < n; t++)
        if (row[t] < row[best])
          best = t;
      ck_assert_uint_eq (best, one[j].index);
      row[best] = INFINITY;
    }
    g_free (row);
  }
  g_free (dist);
}

START_TEST (test_gallery_round_trip_and_search)
{
  static float feat[N * D], q[20 * D];
  static gint32 labels[N], ql[20];
  clusters (feat, labels, N, 3);
  clusters (q, ql, 20, 3);
  g_autofree char *path = tmp_path ("g.safetensors");
  g_autoptr (CbirGalleryBuilder) b = builder_of (feat, labels, N, TRUE);
  g_autoptr (GError) err = NULL;
  ck_assert (cbir_gallery_builder_write (b, path, &err));
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  ck_assert_msg (g != NULL, "%s", err ? err->message : "");
  g_autoptr (CbirGallery) m = cbir_gallery_builder_build (b);
  ck_assert_ptr_nonnull (cbir_gallery_get_graph (g));
  ck_assert (cbir_gallery_get_graph_k_auto (g));
  assert_same_graph (cbir_gallery_get_graph (g), cbir_gallery_get_graph (m));
  g_autoptr (CbirGraph) direct = cbir_graph_build (feat, N, D, 0, 3.f, 1,
      NULL);
  assert_same_graph (cbir_gallery_get_graph (g), direct);
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (path, NULL);
  ck_assert_str_eq (cbir_safetensors_get_metadata (st, "graph"),
      "k=5,power=3,rule=auto");

  g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g, CBIR_METRIC_L2, 0,
      2, NULL);
  ck_assert (cbir_searcher_set_diffusion (s, cbir_gallery_get_graph (g),
          NULL, &err));
  ck_assert_ptr_eq (cbir_searcher_get_diffusion (s, NULL),
      cbir_gallery_get_graph (g));
  assert_search_paths_agree (s, q, 20, N);
  /* the first hit is the plain nearest; the hits keep plain distances */
  g_autoptr (CbirSearcher) plain = cbir_searcher_new (g, CBIR_METRIC_L2, 0,
      NULL);
  guint right = 0, right_plain = 0;
  for (guint i = 0; i < 20; i++) {
    CbirHit h[8], hp[N], hs[8];
    guint n = cbir_searcher_search (s, q + i * D, 8, h);
    guint np = cbir_searcher_search (plain, q + i * D, N, hp);
    ck_assert_uint_eq (n, 8);
    ck_assert_uint_eq (h[0].index, hp[0].index);
    /* the diffusing searcher's plain hits are the plain searcher's */
    ck_assert_uint_eq (cbir_searcher_search_plain (s, q + i * D, 8, hs), 8);
    for (guint j = 0; j < 8; j++) {
      ck_assert_uint_eq (hs[j].index, hp[j].index);
      ck_assert_float_eq (hs[j].distance, hp[j].distance);
    }
    for (guint j = 0; j < n; j++) {
      for (guint t = 0; t < np; t++)
        if (hp[t].index == h[j].index)
          ck_assert (fabsf (hp[t].distance - h[j].distance) < 1e-5f);
      right += h[j].label == ql[i];
      right_plain += hp[j].label == ql[i];
    }
  }
  /* well-separated clusters: diffusion keeps the hits in the class */
  ck_assert_uint_ge (right, right_plain);
  /* a gallery in memory searches the same */
  g_autoptr (CbirSearcher) sm = cbir_searcher_new_full (m, CBIR_METRIC_L2, 0,
      2, NULL);
  ck_assert (cbir_searcher_set_diffusion (sm, cbir_gallery_get_graph (m),
          NULL, NULL));
  for (guint i = 0; i < 20; i++) {
    CbirHit a[8], c[8];
    cbir_searcher_search (s, q + i * D, 8, a);
    cbir_searcher_search (sm, q + i * D, 8, c);
    for (guint j = 0; j < 8; j++)
      ck_assert_uint_eq (a[j].index, c[j].index);
  }
}
END_TEST

START_TEST (test_old_gallery_without_graph)
{
  static float feat[N * D];
  static gint32 labels[N];
  clusters (feat, labels, N, 5);
  g_autofree char *path = tmp_path ("old.safetensors");
  g_autoptr (CbirGalleryBuilder) b = builder_of (feat, labels, N, FALSE);
  ck_assert (cbir_gallery_builder_write (b, path, NULL));
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, NULL);
  ck_assert_ptr_nonnull (g);
  ck_assert_ptr_null (cbir_gallery_get_graph (g));
  ck_assert (!cbir_gallery_get_graph_k_auto (g));
  g_autoptr (CbirSearcher) s = cbir_searcher_new (g, CBIR_METRIC_L2, 0, NULL);
  ck_assert (cbir_searcher_set_diffusion (s, NULL, NULL, NULL));
  CbirHit h[5];
  ck_assert_uint_eq (cbir_searcher_search (s, feat, 5, h), 5);
  ck_assert_uint_eq (h[0].index, 0);
  for (guint j = 1; j < 5; j++)
    ck_assert (h[j].distance >= h[j - 1].distance);
}
END_TEST

START_TEST (test_append_equals_scratch)
{
  static float feat[N * D];
  static gint32 labels[N];
  clusters (feat, labels, N, 9);
  g_autofree char *path = tmp_path ("grow.safetensors");
  g_autofree char *full = tmp_path ("full.safetensors");
  g_autoptr (CbirGalleryBuilder) b1 = builder_of (feat, labels, 40, TRUE);
  ck_assert (cbir_gallery_builder_write (b1, path, NULL));
  /* append 20 without asking for a graph: the file's settings */
  g_autoptr (CbirGalleryBuilder) b2 = builder_of (feat + 40 * D, labels + 40,
      20, FALSE);
  g_autoptr (GError) err = NULL;
  ck_assert (cbir_gallery_builder_load_existing (b2, path, &err));
  ck_assert (cbir_gallery_builder_write (b2, path, &err));
  g_autoptr (CbirGalleryBuilder) b3 = builder_of (feat, labels, N, TRUE);
  ck_assert (cbir_gallery_builder_write (b3, full, &err));
  g_autoptr (CbirGallery) ga = cbir_gallery_open (path, &err);
  g_autoptr (CbirGallery) gf = cbir_gallery_open (full, &err);
  ck_assert_uint_eq (cbir_gallery_size (ga), N);
  assert_same_graph (cbir_gallery_get_graph (ga), cbir_gallery_get_graph (gf));
  /* an explicit graph=false drops it */
  g_autoptr (CbirGalleryBuilder) b4 = builder_of (feat, labels, 0, FALSE);
  ck_assert (cbir_gallery_builder_set_graph (b4, FALSE, 0, 3.f, NULL));
  ck_assert (cbir_gallery_builder_load_existing (b4, path, &err));
  ck_assert (cbir_gallery_builder_write (b4, path, &err));
  g_autoptr (CbirGallery) gn = cbir_gallery_open (path, &err);
  ck_assert_ptr_null (cbir_gallery_get_graph (gn));
}
END_TEST

/* Rewrites src with one tensor's data or one metadata value replaced
 * (value NULL: removed; CRC "fix": recomputed over the new tensors). */
static void
rewrite (const char *src, const char *dst, const char *tensor,
    const void *data, const char *meta_key, const char *meta_value,
    gboolean fix_crc)
{
  static const char *const keys[] = { "format", "version",
    "model_fingerprint", "code_type", "metric", "code_bits",
    "bit_thresholds_rule", "graph", "graph_crc32"
  };
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (src, NULL);
  ck_assert_ptr_nonnull (st);
  g_autoptr (CbirSafetensorsWriter) w = cbir_safetensors_writer_new ();
  const char *const *names = cbir_safetensors_list (st);
  uLong crc = crc32 (0L, Z_NULL, 0);
  for (guint i = 0; names[i]; i++) {
    CbirTensorView v;
    ck_assert (cbir_safetensors_get (st, names[i], &v));
    const void *d = g_strcmp0 (names[i], tensor) == 0 ? data : v.data;
    cbir_safetensors_writer_add (w, names[i], v.dtype, v.ndim, v.shape, d);
  }
  const char *order[] = { "graph_offsets", "graph_neighbours",
    "graph_weights"
  };
  for (guint i = 0; i < 3; i++) {
    CbirTensorView v;
    if (cbir_safetensors_get (st, order[i], &v))
      crc = crc32 (crc, g_strcmp0 (order[i], tensor) == 0 ? data : v.data,
          (uInt) v.nbytes);
  }
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
    const char *val = cbir_safetensors_get_metadata (st, keys[i]);
    if (g_strcmp0 (keys[i], meta_key) == 0)
      val = meta_value;
    g_autofree char *crc_text = g_strdup_printf ("%08lx", crc);
    if (fix_crc && g_str_equal (keys[i], "graph_crc32"))
      val = crc_text;
    if (val)
      cbir_safetensors_writer_set_metadata (w, keys[i], val);
  }
  ck_assert (cbir_safetensors_writer_write (w, dst, NULL));
}

static void
expect_open_error (const char *path, const char *what)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  ck_assert_msg (g == NULL, "%s accepted", what);
  ck_assert_msg (strstr (err->message, path) != NULL, "%s", err->message);
  ck_assert_msg (strstr (err->message, what) != NULL, "'%s' not in: %s",
      what, err->message);
}

START_TEST (test_corrupt_graph)
{
  static float feat[N * D];
  static gint32 labels[N];
  clusters (feat, labels, N, 13);
  g_autofree char *good = tmp_path ("good.safetensors");
  g_autofree char *bad = tmp_path ("bad.safetensors");
  g_autoptr (CbirGalleryBuilder) b = builder_of (feat, labels, N, TRUE);
  ck_assert (cbir_gallery_builder_write (b, good, NULL));
  g_autoptr (CbirGallery) g = cbir_gallery_open (good, NULL);
  const CbirGraph *gr = cbir_gallery_get_graph (g);
  gsize e = cbir_graph_nnz (gr);
  gint32 *nb = g_memdup2 (cbir_graph_get_neighbours (gr), 4 * e);
  float *wt = g_memdup2 (cbir_graph_get_weights (gr), 4 * e);
  gint32 *off = g_memdup2 (cbir_graph_get_offsets (gr), 4 * (N + 1));

  /* a flipped weight bit, CRC as written */
  wt[3] = nextafterf (wt[3], 0.f);
  rewrite (good, bad, "graph_weights", wt, NULL, NULL, FALSE);
  expect_open_error (bad, "corrupt");
  /* the same with the CRC recomputed: the asymmetry is found */
  rewrite (good, bad, "graph_weights", wt, NULL, NULL, TRUE);
  expect_open_error (bad, "not symmetric");
  wt[3] = cbir_graph_get_weights (gr)[3];
  /* weights outside (0, 1] */
  wt[0] = NAN;
  rewrite (good, bad, "graph_weights", wt, NULL, NULL, TRUE);
  expect_open_error (bad, "weight");
  wt[0] = cbir_graph_get_weights (gr)[0];
  /* a neighbour out of range, the item itself, out of order */
  gint32 keep = nb[0];
  nb[0] = N + 7;
  rewrite (good, bad, "graph_neighbours", nb, NULL, NULL, TRUE);
  expect_open_error (bad, "bad neighbour");
  nb[0] = 0;                    /* row 0 pointing at itself */
  rewrite (good, bad, "graph_neighbours", nb, NULL, NULL, TRUE);
  expect_open_error (bad, "bad neighbour");
  nb[0] = keep;
  /* offsets that run backwards or past the edges */
  off[5] = off[6] + 1;
  rewrite (good, bad, "graph_offsets", off, NULL, NULL, TRUE);
  expect_open_error (bad, "graph row");
  off[5] = cbir_graph_get_offsets (gr)[5];
  off[N] = (gint32) e + 1;
  rewrite (good, bad, "graph_offsets", off, NULL, NULL, TRUE);
  expect_open_error (bad, "graph offsets");
  off[N] = (gint32) e;
  /* metadata */
  rewrite (good, bad, NULL, NULL, "graph_crc32", NULL, FALSE);
  expect_open_error (bad, "graph_crc32");
  rewrite (good, bad, NULL, NULL, "graph", "k=5,power=3", FALSE);
  expect_open_error (bad, "bad metadata \"graph\"");
  rewrite (good, bad, NULL, NULL, "graph", "k=5000,power=3,rule=auto", FALSE);
  expect_open_error (bad, "bad metadata \"graph\"");
  rewrite (good, bad, NULL, NULL, "graph", NULL, FALSE);
  expect_open_error (bad, "without metadata \"graph\"");
  /* k smaller than a row's edges */
  rewrite (good, bad, NULL, NULL, "graph", "k=1,power=3,rule=fixed", FALSE);
  expect_open_error (bad, "graph");
  /* the untouched file still opens */
  g_autoptr (CbirGallery) again = cbir_gallery_open (good, NULL);
  ck_assert_ptr_nonnull (again);
  g_free (nb);
  g_free (wt);
  g_free (off);
}
END_TEST

START_TEST (test_errors)
{
  static float feat[N * D];
  static gint32 labels[N];
  clusters (feat, labels, N, 17);
  g_autoptr (CbirGalleryBuilder) b = builder_of (feat, labels, N, TRUE);
  g_autoptr (CbirGallery) g = cbir_gallery_builder_build (b);
  const CbirGraph *gr = cbir_gallery_get_graph (g);
  g_autoptr (GError) err = NULL;

  /* parameters */
  CbirDiffusionParams p;
  cbir_diffusion_params_init (&p);
  ck_assert (cbir_diffusion_params_check (&p, NULL));
  p.alpha = 1.f;
  ck_assert (!cbir_diffusion_params_check (&p, &err));
  ck_assert (strstr (err->message, "alpha"));
  g_clear_error (&err);
  cbir_diffusion_params_init (&p);
  p.query_k = 0;
  ck_assert (!cbir_diffusion_params_check (&p, &err));
  g_clear_error (&err);
  cbir_diffusion_params_init (&p);
  p.keep_first = p.query_k + 1;
  ck_assert (!cbir_diffusion_params_check (&p, &err));
  ck_assert (strstr (err->message, "keep-first"));
  g_clear_error (&err);

  /* one re-ranking at a time, either order */
  g_autoptr (CbirSearcher) s = cbir_searcher_new (g, CBIR_METRIC_L2, 0, NULL);
  ck_assert (cbir_searcher_set_query_expansion (s, 5, 3.f, NULL));
  ck_assert (!cbir_searcher_set_diffusion (s, gr, NULL, &err));
  ck_assert (strstr (err->message, "choose one"));
  g_clear_error (&err);
  ck_assert (cbir_searcher_set_query_expansion (s, 0, 3.f, NULL));
  ck_assert (cbir_searcher_set_diffusion (s, gr, NULL, NULL));
  ck_assert (!cbir_searcher_set_query_expansion (s, 5, 3.f, &err));
  g_clear_error (&err);
  /* Hamming: no diffusion */
  g_autoptr (CbirSearcher) h = cbir_searcher_new (g, CBIR_METRIC_HAMMING, 0,
      NULL);
  ck_assert (!cbir_searcher_set_diffusion (h, gr, NULL, &err));
  ck_assert (strstr (err->message, "hamming"));
  g_clear_error (&err);
  /* a graph of another gallery */
  g_autoptr (CbirGraph) small = cbir_graph_build (feat, 30, D, 4, 3.f, 1,
      NULL);
  g_autoptr (CbirSearcher) s2 = cbir_searcher_new (g, CBIR_METRIC_L2, 0,
      NULL);
  ck_assert (!cbir_searcher_set_diffusion (s2, small, NULL, &err));
  ck_assert (strstr (err->message, "30 items"));
  g_clear_error (&err);
  /* builders */
  g_autoptr (CbirGalleryBuilder) bits = cbir_gallery_builder_new ("fp",
      CBIR_CODE_BITS, D, FALSE);
  ck_assert (!cbir_gallery_builder_set_graph (bits, TRUE, 0, 3.f, &err));
  ck_assert (strstr (err->message, "float features"));
  g_clear_error (&err);
  ck_assert (cbir_gallery_builder_set_graph (bits, FALSE, 0, 3.f, NULL));
  ck_assert (!cbir_gallery_builder_set_graph (b, TRUE, 5000, 3.f, &err));
  g_clear_error (&err);
  ck_assert (!cbir_gallery_builder_set_graph (b, TRUE, 5, -1.f, &err));
  g_clear_error (&err);
  /* tiny galleries: one item has no graph edges, search still answers */
  g_autoptr (CbirGalleryBuilder) one = builder_of (feat, labels, 1, TRUE);
  g_autoptr (CbirGallery) g1 = cbir_gallery_builder_build (one);
  ck_assert_uint_eq (cbir_graph_nnz (cbir_gallery_get_graph (g1)), 0);
  g_autoptr (CbirSearcher) s1 = cbir_searcher_new (g1, CBIR_METRIC_L2, 0,
      NULL);
  ck_assert (cbir_searcher_set_diffusion (s1, cbir_gallery_get_graph (g1),
          NULL, NULL));
  CbirHit hit[3];
  ck_assert_uint_eq (cbir_searcher_search (s1, feat + D, 3, hit), 1);
  ck_assert_uint_eq (hit[0].index, 0);
}
END_TEST

/* The spectrum: orthonormal, S u = lambda u for the leading pairs,
 * descending; the low-rank scores of a full-rank spectrum on a connected
 * graph equal the dense solve; stored, CRC-covered, refused when bad. */
START_TEST (test_low_rank)
{
  static float feat[N * D];
  static gint32 labels[N];
  /* one cluster: a connected graph */
  GRand *rnd = g_rand_new_with_seed (21);
  for (guint i = 0; i < N * D; i++)
    feat[i] = 1.f + (float) g_rand_double_range (rnd, -0.5, 0.5);
  for (guint i = 0; i < N; i++)
    labels[i] = 0;
  g_rand_free (rnd);
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGraph) g = cbir_graph_build (feat, N, D, 12, 3.f, 1, NULL);
  ck_assert (!cbir_graph_compute_spectrum (g, N, 0, &err));
  g_clear_error (&err);
  ck_assert_msg (cbir_graph_compute_spectrum (g, N - 1, N, &err), "%s",
      err ? err->message : "");
  guint r = cbir_graph_get_rank (g);
  ck_assert_uint_ge (r, 10);
  const float *u = cbir_graph_get_eigenvectors (g);
  const float *lam = cbir_graph_get_eigenvalues (g);
  const gint32 *off = cbir_graph_get_offsets (g);
  const gint32 *nb = cbir_graph_get_neighbours (g);
  const float *wt = cbir_graph_get_weights (g);
  ck_assert (fabsf (lam[0] - 1.f) < 1e-4f);   /* connected: top is 1 */
  for (guint j = 0; j < 10; j++) {
    if (j > 0)
      ck_assert (lam[j] <= lam[j - 1] + 1e-6f);
    double res = 0, nn = 0;
    for (guint i = 0; i < N; i++) {
      double su = 0;
      for (gint32 e = off[i]; e < off[i + 1]; e++)
        su += wt[e] * u[(gsize) nb[e] * r + j];
      res += pow (su - lam[j] * u[(gsize) i * r + j], 2);
      nn += pow (u[(gsize) i * r + j], 2);
    }
    ck_assert_msg (fabs (nn - 1) < 1e-3, "|u_%u|^2 = %g", j, nn);
    ck_assert_msg (sqrt (res) < 1e-3, "eigenpair %u residual %g", j,
        sqrt (res));
  }
  /* full rank: the low-rank form is the dense solution */
  guint seeds[2] = { 3, 40 };
  float sw[2] = { 1.f, 0.5f };
  double y[N] = { 0 }, want[N];
  y[3] = 1.0;
  y[40] = 0.5;
  dense_solve (g, 0.9f, y, want);
  float f[N];
  cbir_diffusion_low_rank (g, seeds, sw, 2, 0.9f, f);
  double fmax = 0;
  for (guint i = 0; i < N; i++)
    fmax = MAX (fmax, want[i]);
  if (r == N - 1) {
    /* all but the smallest eigenpair: the error is bounded by its share */
    for (guint i = 0; i < N; i++)
      ck_assert_msg (fabs (f[i] - want[i]) <= 0.05 * fmax, "f[%u] %g, "
          "want %g", i, f[i], want[i]);
  }

  /* in a gallery file: round trip, CRC, searcher */
  g_autofree char *good = tmp_path ("lr.safetensors");
  g_autofree char *bad = tmp_path ("lr-bad.safetensors");
  g_autoptr (CbirGalleryBuilder) b = builder_of (feat, labels, N, TRUE);
  cbir_gallery_builder_set_graph_rank (b, 8);
  ck_assert (cbir_gallery_builder_write (b, good, &err));
  g_autoptr (CbirGallery) gal = cbir_gallery_open (good, &err);
  ck_assert_msg (gal != NULL, "%s", err ? err->message : "");
  const CbirGraph *gg = cbir_gallery_get_graph (gal);
  ck_assert_uint_eq (cbir_graph_get_rank (gg), 8);
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (good, NULL);
  ck_assert_str_eq (cbir_safetensors_get_metadata (st, "graph"),
      "k=5,power=3,rule=auto,rank=8");
  CbirDiffusionParams p;
  cbir_diffusion_params_init (&p);
  p.low_rank = TRUE;
  g_autoptr (CbirSearcher) s = cbir_searcher_new_full (gal, CBIR_METRIC_L2,
      0, 2, NULL);
  ck_assert (cbir_searcher_set_diffusion (s, gg, &p, &err));
  assert_search_paths_agree (s, feat, 20, N);
  /* a graph without a spectrum refuses the low-rank form */
  g_autoptr (CbirGraph) plain = cbir_graph_build (feat, N, D, 5, 3.f, 1,
      NULL);
  g_autoptr (CbirSearcher) s2 = cbir_searcher_new (gal, CBIR_METRIC_L2, 0,
      NULL);
  ck_assert (!cbir_searcher_set_diffusion (s2, plain, &p, &err));
  ck_assert (strstr (err->message, "spectrum"));
  g_clear_error (&err);
  /* a warm start needs the low-rank form to start from; with it, the
   * single and batched paths agree */
  CbirDiffusionParams pw = p;
  pw.low_rank = FALSE;
  pw.warm_start = TRUE;
  ck_assert (!cbir_searcher_set_diffusion (s2, gg, &pw, &err));
  ck_assert (strstr (err->message, "low_rank"));
  g_clear_error (&err);
  pw.low_rank = TRUE;
  pw.iterations = 5;
  g_autoptr (CbirSearcher) s3 = cbir_searcher_new_full (gal, CBIR_METRIC_L2,
      0, 2, NULL);
  ck_assert (cbir_searcher_set_diffusion (s3, gg, &pw, &err));
  assert_search_paths_agree (s3, feat, 20, N);
  /* a flipped eigenvector bit: the CRC; a value outside [-1, 1] */
  float *vec = g_memdup2 (cbir_graph_get_eigenvectors (gg), 4 * N * 8);
  vec[5] = nextafterf (vec[5], 2.f);
  rewrite (good, bad, "graph_eigenvectors", vec, NULL, NULL, FALSE);
  expect_open_error (bad, "corrupt");
  float vals[8];
  memcpy (vals, cbir_graph_get_eigenvalues (gg), sizeof (vals));
  vals[2] = 3.f;
  rewrite (good, bad, "graph_eigenvalues", vals, NULL, NULL, FALSE);
  expect_open_error (bad, "corrupt");
  g_free (vec);
  rewrite (good, bad, NULL, NULL, "graph", "k=5,power=3,rule=auto,rank=9",
      FALSE);
  expect_open_error (bad, "graph_eigenvectors");
}
END_TEST

static Suite *
diffusion_suite (void)
{
  Suite *s = suite_create ("diffusion");
  TCase *tc = tcase_create ("core");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_default_k);
  tcase_add_test (tc, test_graph_brute_force);
  tcase_add_test (tc, test_solve_dense);
  tcase_add_test (tc, test_gallery_round_trip_and_search);
  tcase_add_test (tc, test_old_gallery_without_graph);
  tcase_add_test (tc, test_append_equals_scratch);
  tcase_add_test (tc, test_corrupt_graph);
  tcase_add_test (tc, test_errors);
  tcase_add_test (tc, test_low_rank);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (diffusion_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

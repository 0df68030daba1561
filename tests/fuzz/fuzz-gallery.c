/* Fuzz harness: gallery files (cbir_gallery_open) and the searches over
 * them. A gallery that opens is walked through its accessors, then
 * searched with a query of its dimension by every searcher it supports:
 * l2 and cosine (float features), Hamming (packed codes), the two-stage
 * Hamming shortlist, query expansion, and diffusion over its k-NN graph
 * (the solver, and the low-rank form when the file has a spectrum).
 *
 * The graph tensors are covered by a CRC-32 in the metadata, which random
 * mutations almost never keep right; when a file is refused for that
 * alone, it is tried again with the CRC the file's tensors really have
 * (same length, patched in the header), so the fuzzer reaches the graph
 * checks behind it.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fuzz-common.h"

#include <cbir/diffusion.h>
#include <cbir/gallery.h>
#include <cbir/search.h>

#define K 5

/* The input with its "graph_crc32" value replaced by `crc`, or NULL when
 * the header does not hold it as "graph_crc32": "<8 hex digits>". */
static uint8_t *
patch_crc (const uint8_t *data, size_t size, guint32 crc)
{
  static const char key[] = "\"graph_crc32\"";
  const size_t klen = sizeof (key) - 1;
  for (size_t i = 0; i + klen < size; i++) {
    if (memcmp (data + i, key, klen) != 0)
      continue;
    size_t j = i + klen;
    while (j < size && (data[j] == ' ' || data[j] == '\n' || data[j] == ':'))
      j++;
    if (j + 10 > size || data[j] != '"' || data[j + 9] != '"')
      return NULL;
    for (guint d = 1; d <= 8; d++)
      if (!g_ascii_isxdigit (data[j + d]))
        return NULL;
    uint8_t *out = g_memdup2 (data, size);
    char hex[9];
    g_snprintf (hex, sizeof (hex), "%08x", crc);
    memcpy (out + j + 1, hex, 8);
    return out;
  }
  return NULL;
}

static CbirGallery *
open_gallery (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  const char *path = fuzz_write_input (0, data, size);
  CbirGallery *g = cbir_gallery_open (path, &err);
  if (g)
    return g;
  g_assert (err != NULL);
  unsigned have, recorded;
  const char *m = strstr (err->message, "the graph is corrupt (CRC-32 ");
  if (m && sscanf (m, "the graph is corrupt (CRC-32 %x, the file records %x",
          &have, &recorded) == 2) {
    uint8_t *fixed = patch_crc (data, size, have);
    fuzz_drop_error (&err);
    if (fixed) {
      path = fuzz_write_input (0, fixed, size);
      g_free (fixed);
      g = cbir_gallery_open (path, &err);
      if (g)
        return g;
    }
  }
  fuzz_drop_error (&err);
  return NULL;
}

static void
check_hits (const CbirGallery *g, const CbirHit *hits, guint nh, guint k)
{
  guint n = cbir_gallery_size (g);
  const gint32 *labels = cbir_gallery_get_labels (g);
  g_assert (nh <= k && nh <= n);
  for (guint i = 0; i < nh; i++) {
    g_assert (hits[i].index < n);
    if (labels)
      g_assert (hits[i].label == labels[hits[i].index]);
  }
  gint32 label;
  float conf;
  cbir_vote (hits, nh, &label, &conf);
  /* the local-mean vote names one of the hits' labels, by the gallery's
   * label sizes */
  GHashTable *sizes = cbir_gallery_count_labels (g);
  guint *sz = g_new (guint, MAX (nh, 1));
  gboolean found = nh == 0;
  cbir_hits_label_sizes (sizes, hits, nh, sz);
  cbir_vote_local_mean (hits, NULL, sz, nh, k, &label, &conf);
  for (guint i = 0; i < nh; i++)
    found |= hits[i].label == label;
  g_assert (found && conf >= 0.f && conf <= 1.f);
  g_hash_table_unref (sizes);
  g_free (sz);
}

/* One searcher: single query (k and more than the gallery), a batch of
 * two, the full ranking. */
static void
run_searcher (const CbirGallery *g, CbirSearcher *s, const float *queries,
    const char *what)
{
  guint n = cbir_gallery_size (g);
  CbirHit hits[2 * K];
  guint nh[2];
  g_assert (cbir_searcher_get_threads (s) == 1);
  guint got = cbir_searcher_search (s, queries, K, hits);
  if (fuzz_verbose)
    fprintf (stderr, "  %s: %u hits of %u items\n", what, got, n);
  check_hits (g, hits, got, K);
  guint kbig = MIN (n + 1, 64u);
  CbirHit *big = g_new (CbirHit, kbig);
  check_hits (g, big, cbir_searcher_search (s, queries, kbig, big), kbig);
  g_free (big);
  cbir_searcher_search_batch (s, queries, 2, K, hits, nh);
  check_hits (g, hits, nh[0], K);
  check_hits (g, hits + K, nh[1], K);
  float *dist = g_new (float, MAX (n, 1));
  cbir_searcher_distances (s, queries, dist);
  g_free (dist);
}

static void
search_all (const CbirGallery *g, const float *queries)
{
  GError *err = NULL;
  CbirSearcher *s;
  const gboolean feat = cbir_gallery_get_features (g) != NULL;
  const gboolean codes = cbir_gallery_get_codes (g) != NULL;
  const CbirGraph *graph = cbir_gallery_get_graph (g);

  if (feat) {
    for (CbirMetric mt = CBIR_METRIC_L2; mt <= CBIR_METRIC_COSINE; mt++) {
      /* exact, then (when the file has codes) the two-stage search */
      for (guint shortlist = 0; shortlist <= (codes ? 3u : 0u);
          shortlist += 3) {
        s = cbir_searcher_new_full (g, mt, shortlist, 1, &err);
        if (s) {
          run_searcher (g, s, queries, shortlist ? "two-stage" : "exact");
          cbir_searcher_free (s);
        } else {
          fuzz_drop_error (&err);
        }
      }
    }
    /* query expansion */
    s = cbir_searcher_new_full (g, CBIR_METRIC_COSINE, 0, 1, &err);
    if (s && cbir_searcher_set_query_expansion (s, 2,
            CBIR_QE_DEFAULT_ALPHA, &err)) {
      float *ex = g_new (float, cbir_gallery_get_dim (g));
      cbir_searcher_expand_query (s, queries, ex);
      g_free (ex);
      run_searcher (g, s, queries, "query expansion");
    }
    fuzz_drop_error (&err);
    cbir_searcher_free (s);
    /* diffusion: the solver, and the low-rank form */
    if (graph) {
      CbirDiffusionParams p;
      cbir_diffusion_params_init (&p);
      for (guint lr = 0; lr <= (cbir_graph_get_rank (graph) ? 1u : 0u);
          lr++) {
        p.low_rank = lr;
        s = cbir_searcher_new_full (g, CBIR_METRIC_COSINE, 0, 1, &err);
        if (s && cbir_searcher_set_diffusion (s, graph, &p, &err)) {
          g_assert (cbir_searcher_get_diffusion (s, NULL) == graph);
          run_searcher (g, s, queries, lr ? "diffusion (low rank)"
              : "diffusion");
        }
        fuzz_drop_error (&err);
        cbir_searcher_free (s);
      }
    }
  }
  if (codes) {
    s = cbir_searcher_new_full (g, CBIR_METRIC_HAMMING, 0, 1, &err);
    if (s) {
      run_searcher (g, s, queries, "hamming");
      if (cbir_gallery_size (g) > 0) {
        CbirHit hits[K];
        check_hits (g, hits, cbir_searcher_search_codes (s,
                cbir_gallery_get_codes (g), K, hits), K);
      }
      cbir_searcher_free (s);
    }
    fuzz_drop_error (&err);
  }
}

static void
walk_gallery (const CbirGallery *g)
{
  guint n = cbir_gallery_size (g);
  guint dim = cbir_gallery_get_dim (g);
  guint cb = cbir_gallery_get_code_bytes (g);

  (void) cbir_gallery_get_path (g);
  (void) cbir_gallery_get_code_type (g);
  g_assert (cbir_gallery_get_model_fingerprint (g) != NULL);
  (void) cbir_gallery_get_metric_name (g);
  const float *f = cbir_gallery_get_features (g);
  if (f)
    (void) fuzz_touch (f, (gsize) n * dim * sizeof (float));
  f = cbir_gallery_get_raw_features (g);
  if (f)
    (void) fuzz_touch (f, (gsize) n * dim * sizeof (float));
  const guint8 *c = cbir_gallery_get_codes (g);
  if (c)
    (void) fuzz_touch (c, (gsize) n * cb);
  f = cbir_gallery_get_bit_thresholds (g);
  if (f)
    (void) fuzz_touch (f, (gsize) cbir_gallery_get_code_bits (g)
        * sizeof (float));
  const gint32 *labels = cbir_gallery_get_labels (g);
  if (labels)
    (void) fuzz_touch (labels, (gsize) n * sizeof (gint32));
  for (guint i = 0; i < n; i++) {
    const guint8 *t = cbir_gallery_get_thumbnail (g, i);
    if (t)
      (void) fuzz_touch (t, CBIR_GALLERY_THUMB_WIDTH
          * CBIR_GALLERY_THUMB_HEIGHT);
    const char *id = cbir_gallery_get_id (g, i);
    if (id)
      (void) strlen (id);
  }
  guint nl = cbir_gallery_get_n_label_names (g);
  for (gint32 l = -1; l <= (gint32) MIN (nl, 1000u); l++) {
    const char *name = cbir_gallery_get_label_name (g, l);
    if (name)
      (void) strlen (name);
  }
  float alpha;
  (void) cbir_gallery_get_dba (g, &alpha);
  const CbirGraph *gr = cbir_gallery_get_graph (g);
  if (gr) {
    (void) cbir_gallery_get_graph_k_auto (g);
    guint gn = cbir_graph_size (gr);
    gsize nnz = cbir_graph_nnz (gr);
    g_assert (gn == n);
    (void) cbir_graph_get_k (gr);
    (void) cbir_graph_get_power (gr);
    (void) fuzz_touch (cbir_graph_get_offsets (gr), (gn + 1) * 4);
    (void) fuzz_touch (cbir_graph_get_neighbours (gr), nnz * 4);
    (void) fuzz_touch (cbir_graph_get_weights (gr), nnz * 4);
    (void) cbir_graph_checksum (gr);
    (void) cbir_graph_memory_bytes (gr);
    g_assert (cbir_graph_connected_items (gr) <= gn);
    guint r = cbir_graph_get_rank (gr);
    if (r) {
      (void) fuzz_touch (cbir_graph_get_eigenvectors (gr),
          (gsize) gn * r * 4);
      (void) fuzz_touch (cbir_graph_get_eigenvalues (gr), (gsize) r * 4);
    }
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  CbirGallery *g = open_gallery (data, size);
  if (!g)
    return 0;
  cbir_fuzz_accepted = 1;
  walk_gallery (g);

  /* two queries of the gallery's dimension (floats per query code: D, or
   * the code bits of a bits-only gallery): item 0 moved a little (a query
   * near the gallery, as in real use), and one from the input's bytes */
  guint n = cbir_gallery_size (g);
  guint qdim = cbir_gallery_get_dim (g);
  if (qdim == 0)
    qdim = cbir_gallery_get_code_bits (g);
  if (qdim > MAX (size, 65536)) {
    /* an empty gallery may claim any dimension up to 2^24 for free: valid,
     * but the queries alone would cost more than the rest of the run */
    cbir_gallery_free (g);
    return 0;
  }
  float *q = g_new0 (float, 2 * (gsize) MAX (qdim, 1));
  const float *feat = cbir_gallery_get_features (g);
  for (guint j = 0; j < qdim; j++) {
    float base = feat && n > 0 ? feat[j] : 0.f;
    q[j] = base + 0.01f * (float) ((j % 7) - 3);
    q[qdim + j] = size ? ((float) data[j % size] - 127.5f) / 64.f : 1.f;
  }
  search_all (g, q);
  g_free (q);
  cbir_gallery_free (g);
  return 0;
}

/* bench-diffusion: the cost of diffusion re-ranking on real codes.
 *
 *   bench-diffusion --gallery G.safetensors --queries Q.safetensors
 *                   [--threads 2] [--seconds 2] [--graph-k 0]
 *
 * G: a float gallery (cbir-eval --save-gallery, or cbirindex); Q: query
 * codes of the same model (cbir-encode: tensor "codes" F32 [N, D]).
 * Prints: the graph build time (batched k-NN + mutual graph) for the
 * gallery's features, its edges and its size in the file and in memory;
 * then single-query latency (ms) and batched throughput (queries/s) of
 * the plain search, query expansion (k 20) and diffusion (default
 * settings, at 10 and 40 conjugate-gradient steps, and the low-rank form
 * of rank --rank with its Lanczos time), at 1 and N threads. Figures only; nothing here passes or fails. */
#include <cbir/diffusion.h>
#include <cbir/gallery.h>
#include <cbir/safetensors.h>
#include <cbir/search.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *opt_gallery, *opt_queries;
static gint opt_threads = 2, opt_graph_k = 0, opt_rank = 100;
static gdouble opt_seconds = 2.0;

static GOptionEntry entries[] = {
  {"gallery", 'g', 0, G_OPTION_ARG_FILENAME, &opt_gallery,
      "Float gallery file", "FILE"},
  {"queries", 'q', 0, G_OPTION_ARG_FILENAME, &opt_queries,
      "Query codes (cbir-encode output)", "FILE"},
  {"threads", 't', 0, G_OPTION_ARG_INT, &opt_threads,
      "Threads of the multi-threaded runs (2)", "N"},
  {"graph-k", 'k', 0, G_OPTION_ARG_INT, &opt_graph_k,
      "k of the graph built here (0: the rule)", "K"},
  {"rank", 'r', 0, G_OPTION_ARG_INT, &opt_rank,
      "Rank of the low-rank form measured (100)", "R"},
  {"seconds", 's', 0, G_OPTION_ARG_DOUBLE, &opt_seconds,
      "Time per single-query measurement (2)", "S"},
  {NULL}
};

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

static void
measure (const char *name, CbirSearcher *s, const float *q, guint nq,
    guint dim)
{
  const guint k = 10;
  CbirHit hits[10];
  guint done = 0;
  double t0 = now (), dt = 0;
  while (dt < opt_seconds || done < 5) {
    cbir_searcher_search (s, q + (gsize) (done % nq) * dim, k, hits);
    done++;
    dt = now () - t0;
  }
  double single_ms = dt * 1e3 / done;
  CbirHit *bh = g_new (CbirHit, (gsize) nq * k);
  t0 = now ();
  cbir_searcher_search_batch (s, q, nq, k, bh, NULL);
  double bqps = nq / (now () - t0);
  g_free (bh);
  printf ("%-28s %8u %10.3f %12.0f\n", name, cbir_searcher_get_threads (s),
      single_ms, bqps);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GOptionContext) ctx =
      g_option_context_new ("- diffusion re-ranking cost on real codes");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &err) || !opt_gallery
      || !opt_queries) {
    fprintf (stderr, "bench-diffusion: %s\n", err ? err->message
        : "--gallery and --queries are required");
    return 2;
  }
  g_autoptr (CbirGallery) g = cbir_gallery_open (opt_gallery, &err);
  if (!g) {
    fprintf (stderr, "bench-diffusion: %s\n", err->message);
    return 1;
  }
  g_autoptr (CbirSafetensors) qs = cbir_safetensors_open (opt_queries, &err);
  CbirTensorView v;
  gint64 shp[2] = { -1, cbir_gallery_get_dim (g) };
  if (!qs || !cbir_safetensors_require (qs, "codes", CBIR_DTYPE_F32, 2, shp,
          &v, &err)) {
    fprintf (stderr, "bench-diffusion: %s\n", err->message);
    return 1;
  }
  guint nq = (guint) v.shape[0], dim = cbir_gallery_get_dim (g);
  float *q = g_memdup2 (v.data, v.nbytes);
  guint n = cbir_gallery_size (g);
  const float *feat = cbir_gallery_get_features (g);

  printf ("gallery %s: %u items, %u dims; %u queries\n\n", opt_gallery, n,
      dim, nq);
  for (guint t = 1; t <= (guint) opt_threads; t += MAX (1,
          (guint) opt_threads - 1)) {
    double t0 = now ();
    g_autoptr (CbirGraph) built = cbir_graph_build (feat, n, dim,
        (guint) opt_graph_k, CBIR_GRAPH_DEFAULT_POWER, t, &err);
    if (!built) {
      fprintf (stderr, "bench-diffusion: %s\n", err->message);
      return 1;
    }
    double bt = now () - t0;
    gsize e = cbir_graph_nnz (built);
    printf ("graph build, %u thread(s): %.2f s (k %u, %" G_GSIZE_FORMAT
        " edges, %.1f a row, %u of %u items connected)\n", t, bt,
        cbir_graph_get_k (built), e, (double) e / MAX (n, 1),
        cbir_graph_connected_items (built), n);
    if (t == 1)
      printf ("graph size: %.2f MB in the file (CSR: offsets, neighbours, "
          "weights), %.2f MB in memory (CSR + the solver's sliced copy)\n",
          (4.0 * (n + 1) + 8.0 * e) / 1e6,
          cbir_graph_memory_bytes (built) / 1e6);
  }
  const CbirGraph *graph = cbir_gallery_get_graph (g);
  g_autoptr (CbirGraph) own = NULL;
  if (!graph) {
    own = cbir_graph_build (feat, n, dim, (guint) opt_graph_k,
        CBIR_GRAPH_DEFAULT_POWER, 0, &err);
    graph = own;
  }
  /* the low-rank form: a graph of its own with the spectrum */
  g_autoptr (CbirGraph) lr = cbir_graph_build (feat, n, dim,
      cbir_graph_get_k (graph), CBIR_GRAPH_DEFAULT_POWER, 0, &err);
  double t0 = now ();
  if (!lr || !cbir_graph_compute_spectrum (lr, (guint) opt_rank, 0, &err)) {
    fprintf (stderr, "bench-diffusion: %s\n", err->message);
    return 1;
  }
  printf ("spectrum (rank %d, %d Lanczos steps): %.2f s, %.2f MB more in "
      "the file\n", opt_rank, 3 * opt_rank, now () - t0,
      4.0 * n * opt_rank / 1e6);
  printf ("\n%-28s %8s %10s %12s\n", "method (k 10)", "threads",
      "single ms", "batch q/s");
  guint tl[2] = { 1, (guint) opt_threads };
  for (guint ti = 0; ti < 2; ti++) {
    g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g, CBIR_METRIC_L2,
        0, tl[ti], &err);
    measure ("plain", s, q, nq, dim);
    cbir_searcher_set_query_expansion (s, 20, CBIR_QE_DEFAULT_ALPHA, NULL);
    measure ("query expansion 20", s, q, nq, dim);
    cbir_searcher_set_query_expansion (s, 0, CBIR_QE_DEFAULT_ALPHA, NULL);
    const guint iters[] = { CBIR_DIFFUSION_DEFAULT_ITERATIONS, 10, 40 };
    for (guint i = 0; i < G_N_ELEMENTS (iters); i++) {
      CbirDiffusionParams p;
      cbir_diffusion_params_init (&p);
      p.iterations = iters[i];
      if (!cbir_searcher_set_diffusion (s, graph, &p, &err)) {
        fprintf (stderr, "bench-diffusion: %s\n", err->message);
        return 1;
      }
      g_autofree char *name = g_strdup_printf ("diffusion, %u CG steps%s",
          iters[i], i == 0 ? " (default)" : "");
      measure (name, s, q, nq, dim);
    }
    CbirDiffusionParams p;
    cbir_diffusion_params_init (&p);
    p.low_rank = TRUE;
    g_autoptr (CbirSearcher) sl = cbir_searcher_new_full (g, CBIR_METRIC_L2,
        0, tl[ti], &err);
    if (!cbir_searcher_set_diffusion (sl, lr, &p, &err)) {
      fprintf (stderr, "bench-diffusion: %s\n", err->message);
      return 1;
    }
    g_autofree char *lname = g_strdup_printf ("diffusion, low rank %d",
        opt_rank);
    measure (lname, sl, q, nq, dim);
    /* the solver started from the low-rank form */
    const guint warm[] = { 3, 5, 8 };
    for (guint i = 0; i < G_N_ELEMENTS (warm); i++) {
      p.warm_start = TRUE;
      p.iterations = warm[i];
      if (!cbir_searcher_set_diffusion (sl, lr, &p, &err)) {
        fprintf (stderr, "bench-diffusion: %s\n", err->message);
        return 1;
      }
      g_autofree char *wname = g_strdup_printf ("low rank %d + %u CG steps",
          opt_rank, warm[i]);
      measure (wname, sl, q, nq, dim);
    }
    if (tl[1] == 1)
      break;
  }
  g_free (q);
  return 0;
}

/* cbir-eval: retrieval quality and speed of a model (and baselines) on a
 * gallery/query split.
 *
 *   cbir-eval --model M --gallery G.idx3 --gallery-labels G.idx1 \
 *             --queries Q.idx3 --query-labels Q.idx1 [--baselines]
 *   cbir-eval --model M --gallery-file gallery.safetensors --queries ...
 *
 * For each method: full-list mAP (sklearn's label ranking average
 * precision over the whole gallery, ties pessimistic), P@1/5/10/100, the
 * distance-weighted 10-NN vote accuracy, per-class AP, code size, encode
 * images/s and search queries/s (single and batched). All methods go
 * through the same gallery, search and metric code. */
#include "config.h"

#include <cbir/baselines.h>
#include <cbir/gallery.h>
#include <cbir/idx.h>
#include <cbir/metrics.h>
#include <cbir/model.h>
#include <cbir/safetensors.h>
#include <cbir/search.h>

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CBIR_TOOL_NAME "cbir-eval"
#include "tool-common.h"

static char *opt_model, *opt_gallery, *opt_gallery_labels, *opt_gallery_file;
static char *opt_queries, *opt_query_labels, *opt_metric, *opt_code;
static char *opt_json, *opt_save_gallery, *opt_label_names, *opt_dump;
static gint opt_shortlist = 0, opt_k = 10, opt_threads = 0, opt_limit = 0;
static gint opt_dump_row = 0;
static gint opt_dba = 0, opt_qe = 0;
static char *opt_rerank;
static gint opt_graph_k = 0, opt_diff_query_k = CBIR_DIFFUSION_DEFAULT_QUERY_K;
static gint opt_diff_iterations = CBIR_DIFFUSION_DEFAULT_ITERATIONS;
static gint opt_diff_keep_first = CBIR_DIFFUSION_DEFAULT_KEEP_FIRST;
static gint opt_graph_rank = 0;
static gdouble opt_diff_alpha = CBIR_DIFFUSION_DEFAULT_ALPHA;
static gdouble opt_graph_power = CBIR_GRAPH_DEFAULT_POWER;
static gboolean opt_no_graph;
static gboolean opt_diff_warm;
static gdouble opt_dba_alpha = CBIR_DBA_DEFAULT_ALPHA;
static gdouble opt_qe_alpha = CBIR_QE_DEFAULT_ALPHA;
static gboolean opt_baselines, opt_no_model_row, opt_quiet;
static gdouble opt_single_seconds = 1.0;

static GOptionEntry entries[] = {
  {"model", 'm', 0, G_OPTION_ARG_FILENAME, &opt_model,
      "Model file (safetensors)", "FILE"},
  {"gallery", 'g', 0, G_OPTION_ARG_FILENAME, &opt_gallery,
      "Gallery images (IDX idx3-ubyte, raw or gzip)", "FILE"},
  {"gallery-labels", 0, 0, G_OPTION_ARG_FILENAME, &opt_gallery_labels,
      "Gallery labels (IDX idx1-ubyte)", "FILE"},
  {"gallery-file", 'G', 0, G_OPTION_ARG_FILENAME, &opt_gallery_file,
      "A gallery file instead of gallery images (made by --save-gallery)",
      "FILE"},
  {"queries", 'q', 0, G_OPTION_ARG_FILENAME, &opt_queries,
      "Query images (IDX idx3-ubyte)", "FILE"},
  {"query-labels", 0, 0, G_OPTION_ARG_FILENAME, &opt_query_labels,
      "Query labels (IDX idx1-ubyte)", "FILE"},
  {"metric", 0, 0, G_OPTION_ARG_STRING, &opt_metric,
      "l2, cosine or hamming (default: l2 for float codes, hamming for bits)",
      "METRIC"},
  {"code", 0, 0, G_OPTION_ARG_STRING, &opt_code,
      "float or bits (default: the model's code type; bits on a float model "
      "thresholds each dimension at its gallery median)", "TYPE"},
  {"shortlist", 0, 0, G_OPTION_ARG_INT, &opt_shortlist,
      "Two-stage search: Hamming shortlist of M items, exact re-rank (also "
      "reports recall@k against the exact search)", "M"},
  {"dba", 0, 0, G_OPTION_ARG_INT, &opt_dba,
      "Database-side augmentation of the model's gallery: each gallery code "
      "becomes the alpha-weighted sum of itself and its K nearest gallery "
      "codes (also in --save-gallery; 0 = off)", "K"},
  {"dba-alpha", 0, 0, G_OPTION_ARG_DOUBLE, &opt_dba_alpha,
      "DBA weight exponent: w = max(cos, 0)^A (default 3)", "A"},
  {"qe", 0, 0, G_OPTION_ARG_INT, &opt_qe,
      "Alpha query expansion for the model row: each query is replaced by "
      "the weighted sum of itself and its K first results, then searched "
      "again (l2/cosine; 0 = off)", "K"},
  {"qe-alpha", 0, 0, G_OPTION_ARG_DOUBLE, &opt_qe_alpha,
      "Query expansion weight exponent: w = max(cos, 0)^A (default 3)", "A"},
  {"rerank", 0, 0, G_OPTION_ARG_STRING, &opt_rerank,
      "Re-ranking of the model row: auto (default: query expansion with "
      "--qe, else diffusion when the gallery has a k-NN graph, as cbirsearch "
      "does), none, qe or diffusion", "MODE"},
  {"no-graph", 0, 0, G_OPTION_ARG_NONE, &opt_no_graph,
      "Build the model's gallery without its k-NN graph (cbirindex "
      "graph=false)", NULL},
  {"graph-k", 0, 0, G_OPTION_ARG_INT, &opt_graph_k,
      "Neighbours per item in the gallery's mutual k-NN graph (0 = the rule "
      "round(sqrt(N)/5) in 5..100, the default)", "K"},
  {"graph-power", 0, 0, G_OPTION_ARG_DOUBLE, &opt_graph_power,
      "Graph edge weight = cos^P (default 3)", "P"},
  {"diffusion-alpha", 0, 0, G_OPTION_ARG_DOUBLE, &opt_diff_alpha,
      "Diffusion alpha in (0, 1) (default 0.99)", "A"},
  {"diffusion-query-k", 0, 0, G_OPTION_ARG_INT, &opt_diff_query_k,
      "Gallery items a query is linked to (default 10)", "K"},
  {"diffusion-iterations", 0, 0, G_OPTION_ARG_INT, &opt_diff_iterations,
      "Conjugate-gradient steps at most (default 20)", "N"},
  {"graph-rank", 0, 0, G_OPTION_ARG_INT, &opt_graph_rank,
      "Low-rank diffusion: keep the graph's R largest eigenpairs and diffuse "
      "with them instead of the solver (0 = exact, the default)", "R"},
  {"diffusion-warm", 0, 0, G_OPTION_ARG_NONE, &opt_diff_warm,
      "With --graph-rank: --diffusion-iterations solver steps started from "
      "the low-rank form", NULL},
  {"diffusion-keep-first", 0, 0, G_OPTION_ARG_INT, &opt_diff_keep_first,
      "The plain search's first N hits stay first (default 1)", "N"},
  {"baselines", 'b', 0, G_OPTION_ARG_NONE, &opt_baselines,
      "Also evaluate raw pixels, PCA-32, PCA-64 (L2) and ITQ-64 (Hamming)",
      NULL},
  {"k", 'k', 0, G_OPTION_ARG_INT, &opt_k,
      "k for recall@k and the timed searches (default 10)", "K"},
  {"threads", 't', 0, G_OPTION_ARG_INT, &opt_threads,
      "Search threads (default: all cores, or CBIR_THREADS)", "N"},
  {"limit-queries", 'n', 0, G_OPTION_ARG_INT, &opt_limit,
      "Use only the first N queries", "N"},
  {"json", 'j', 0, G_OPTION_ARG_FILENAME, &opt_json,
      "Write all figures as JSON", "FILE"},
  {"save-gallery", 's', 0, G_OPTION_ARG_FILENAME, &opt_save_gallery,
      "Write the model's gallery (codes, labels, thumbnails when 28x28, ids) "
      "as a gallery file", "FILE"},
  {"label-names", 0, 0, G_OPTION_ARG_STRING, &opt_label_names,
      "Comma-separated label names stored with --save-gallery", "A,B,..."},
  {"single-seconds", 0, 0, G_OPTION_ARG_DOUBLE, &opt_single_seconds,
      "Time spent measuring single-query latency per method (default 1)",
      "S"},
  {"no-model-row", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE,
      &opt_no_model_row, "Only baselines", NULL},
  {"quiet", 0, 0, G_OPTION_ARG_NONE, &opt_quiet, "No progress lines", NULL},
  {"dump", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME, &opt_dump,
      "Dump the full distance matrix of one method (safetensors)", "FILE"},
  {"dump-row", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &opt_dump_row,
      "Which method --dump writes (0 = first)", "I"},
  {NULL}
};

static void
progress (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static void
progress (const char *fmt, ...)
{
  if (opt_quiet)
    return;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "cbir-eval: %s\n", msg);
}

static double
now_s (void)
{
  return g_get_monotonic_time () / 1e6;
}

/* One evaluated method. */
typedef struct
{
  char *name;
  char *code;                   /* "float 64" / "bits 64" */
  char *metric;
  guint code_bytes;
  double encode_ips;            /* images/s, <0: not measured */
  double single_qps;
  double batch_qps;
  double recall;                /* two-stage recall@k, <0: n/a */
  guint shortlist;
  guint dba_k;                  /* gallery augmentation, 0: none */
  guint qe_k;                   /* query expansion, 0: none */
  const char *rerank;           /* "none", "qe", "diffusion" */
  guint graph_k;                /* diffusion: the graph's k */
  gsize graph_edges;
  guint graph_rank;             /* low-rank form: eigenpairs, 0: exact */
  double graph_build_s;         /* <0: not built here */
  CbirMetrics *m;
  double eval_s;
} Row;

static void
row_free (Row *r)
{
  g_free (r->name);
  g_free (r->code);
  g_free (r->metric);
  cbir_metrics_free (r->m);
  g_free (r);
}

typedef struct
{
  const float *dist;
  const gint32 *glabels;
  guint n;
  const gint32 *qlabels;
  double *ap;
  guint nq;
  gint next;
} ApJob;

static gpointer
ap_worker (gpointer data)
{
  ApJob *j = data;
  guint32 *scratch = g_new (guint32, 2 * (gsize) MAX (j->n, 1));
  for (;;) {
    guint i = (guint) g_atomic_int_add (&j->next, 1);
    if (i >= j->nq)
      break;
    j->ap[i] = cbir_average_precision (j->dist + (gsize) i * j->n,
        j->glabels, j->n, j->qlabels[i], scratch);
  }
  g_free (scratch);
  return NULL;
}

static void
compute_ap (const float *dist, const gint32 *glabels, guint n,
    const gint32 *qlabels, guint nq, double *ap, guint threads)
{
  ApJob j = { dist, glabels, n, qlabels, ap, nq, 0 };
  GThread *t[64];
  guint nt = MIN (MAX (threads, 1), 64);
  for (guint i = 1; i < nt; i++)
    t[i] = g_thread_new ("cbir-eval-ap", ap_worker, &j);
  ap_worker (&j);
  for (guint i = 1; i < nt; i++)
    g_thread_join (t[i]);
}

static gboolean
dump_distances (const char *path, const float *dist, guint nq, guint n,
    const gint32 *qlabels, const gint32 *glabels, const double *ap,
    const Row *row, GError **error)
{
  g_autoptr (CbirSafetensorsWriter) w = cbir_safetensors_writer_new ();
  cbir_safetensors_writer_set_metadata (w, "format", "gst-cbir-eval-dump");
  cbir_safetensors_writer_set_metadata (w, "method", row->name);
  cbir_safetensors_writer_set_metadata (w, "metric", row->metric);
  g_autofree char *map = g_strdup_printf ("%.17g",
      cbir_metrics_get_map (row->m));
  cbir_safetensors_writer_set_metadata (w, "map", map);
  gint64 sd[2] = { nq, n }, sq[1] = { nq }, sg[1] = { n };
  cbir_safetensors_writer_add (w, "distances", CBIR_DTYPE_F32, 2, sd, dist);
  cbir_safetensors_writer_add (w, "query_labels", CBIR_DTYPE_I32, 1, sq,
      qlabels);
  cbir_safetensors_writer_add (w, "gallery_labels", CBIR_DTYPE_I32, 1, sg,
      glabels);
  cbir_safetensors_writer_add (w, "ap", CBIR_DTYPE_F64, 1, sq, ap);
  return cbir_safetensors_writer_write (w, path, error);
}

#define EVAL_HITS 100
#define AP_CHUNK 256

/* Searches and scores nq queries (codes of dq floats) against g. */
/* The diffusion settings of the options (out-of-range ones stay out of
 * range, for cbir_diffusion_params_check to name). */
static void
diffusion_params_from_options (CbirDiffusionParams *dp)
{
  cbir_diffusion_params_init (dp);
  dp->alpha = (float) opt_diff_alpha;
  dp->query_k = opt_diff_query_k > 0 ? (guint) opt_diff_query_k : 0;
  dp->iterations = opt_diff_iterations > 0 ? (guint) opt_diff_iterations : 0;
  dp->keep_first = opt_diff_keep_first >= 0 ? (guint) opt_diff_keep_first
      : G_MAXUINT;
}

static Row *
evaluate (const char *name, const CbirGallery *g, CbirMetric metric,
    guint shortlist, guint qe_k, gboolean diffusion, const float *queries,
    guint dq, const gint32 *qlabels, guint nq, double encode_ips,
    gboolean dump, GError **error)
{
  double t0 = now_s ();
  guint threads = opt_threads > 0 ? (guint) opt_threads
      : cbir_default_threads ();
  CbirDiffusionParams dp;
  diffusion_params_from_options (&dp);
  const CbirGraph *graph = diffusion ? cbir_gallery_get_graph (g) : NULL;
  dp.low_rank = graph && cbir_graph_get_rank (graph) > 0;
  dp.warm_start = dp.low_rank && opt_diff_warm;
  g_autoptr (CbirSearcher) s = cbir_searcher_new_full (g, metric, shortlist,
      threads, error);
  if (!s || !cbir_searcher_set_query_expansion (s, qe_k,
          (float) opt_qe_alpha, error)
      || !cbir_searcher_set_diffusion (s, graph, &dp, error))
    return NULL;
  guint n = cbir_gallery_size (g);
  guint k = (guint) opt_k;
  Row *row = g_new0 (Row, 1);
  row->name = g_strdup (name);
  row->metric = g_strdup (cbir_metric_to_string (metric));
  gboolean bits = metric == CBIR_METRIC_HAMMING;
  guint cbits = cbir_gallery_get_code_bits (g);
  row->code = g_strdup_printf ("%s %u", bits ? "bits" : "float",
      bits ? cbits : cbir_gallery_get_dim (g));
  row->code_bytes = bits ? cbir_gallery_get_code_bytes (g)
      : cbir_gallery_get_dim (g) * 4;
  row->encode_ips = encode_ips;
  row->recall = -1;
  row->shortlist = shortlist;
  row->dba_k = cbir_gallery_get_dba (g, NULL);
  row->qe_k = qe_k;
  row->rerank = graph ? "diffusion" : qe_k ? "qe" : "none";
  row->graph_k = graph ? cbir_graph_get_k (graph) : 0;
  row->graph_edges = graph ? cbir_graph_nnz (graph) : 0;
  row->graph_rank = dp.low_rank ? cbir_graph_get_rank (graph) : 0;
  row->graph_build_s = -1;
  row->m = cbir_metrics_new ();

  /* batched search (timed) */
  CbirHit *hits = g_new0 (CbirHit, (gsize) nq * EVAL_HITS);
  guint *nh = g_new0 (guint, nq);
  CbirHit *kh = g_new0 (CbirHit, (gsize) nq * k);
  guint *nkh = g_new0 (guint, nq);
  double t = now_s ();
  cbir_searcher_search_batch (s, queries, nq, k, kh, nkh);
  row->batch_qps = nq / MAX (now_s () - t, 1e-9);
  cbir_searcher_search_batch (s, queries, nq, EVAL_HITS, hits, nh);

  /* single queries (timed, up to opt_single_seconds) */
  guint done = 0;
  t = now_s ();
  double elapsed = 0;
  CbirHit one[k > 0 ? k : 1];
  while (done < nq && (elapsed < opt_single_seconds || done < 3)) {
    cbir_searcher_search (s, queries + (gsize) done * dq, k, one);
    done++;
    elapsed = now_s () - t;
  }
  row->single_qps = done / MAX (elapsed, 1e-9);

  /* two-stage: recall@k against the exact search */
  if (shortlist > 0) {
    g_autoptr (CbirSearcher) exact = cbir_searcher_new_full (g, metric, 0,
        threads, error);
    if (!exact || !cbir_searcher_set_query_expansion (exact, qe_k,
            (float) opt_qe_alpha, error)
        || !cbir_searcher_set_diffusion (exact, graph, &dp, error)) {
      row_free (row);
      row = NULL;
      goto out;
    }
    CbirHit *eh = g_new0 (CbirHit, (gsize) nq * k);
    guint *neh = g_new0 (guint, nq);
    cbir_searcher_search_batch (exact, queries, nq, k, eh, neh);
    double rs = 0;
    for (guint i = 0; i < nq; i++)
      rs += cbir_recall_at_k (eh + (gsize) i * k, neh[i], kh + (gsize) i * k,
          nkh[i], k);
    row->recall = nq ? rs / nq : 0;
    g_free (eh);
    g_free (neh);
  }

  /* full-list AP, in chunks of queries */
  const gint32 *glabels = cbir_gallery_get_labels (g);
  double *ap = g_new0 (double, MAX (nq, 1));
  float *dist = NULL;
  if (dump)
    dist = g_try_new (float, (gsize) nq * n);
  if (dump && !dist) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "--dump: not enough memory for %u x %u distances", nq, n);
    row_free (row);
    row = NULL;
    g_free (ap);
    goto out;
  }
  float *chunk = dump ? NULL : g_new (float, (gsize) AP_CHUNK * n);
  for (guint q0 = 0; q0 < nq; q0 += AP_CHUNK) {
    guint qn = MIN (AP_CHUNK, nq - q0);
    float *d = dump ? dist + (gsize) q0 * n : chunk;
    cbir_searcher_distances_batch (s, queries + (gsize) q0 * dq, qn, d);
    compute_ap (d, glabels, n, qlabels + q0, qn, ap + q0, threads);
  }
  for (guint i = 0; i < nq; i++)
    cbir_metrics_add (row->m, qlabels[i], ap[i], hits + (gsize) i * EVAL_HITS,
        nh[i]);
  if (dump) {
    if (!dump_distances (opt_dump, dist, nq, n, qlabels, glabels, ap, row,
            error)) {
      row_free (row);
      row = NULL;
    }
  }
  g_free (chunk);
  g_free (dist);
  g_free (ap);
  if (row)
    row->eval_s = now_s () - t0;
out:
  g_free (hits);
  g_free (nh);
  g_free (kh);
  g_free (nkh);
  return row;
}

static float *
pixels_to_float (const CbirDataset *ds)
{
  gsize d = (gsize) ds->rows * ds->cols;
  float *f = g_new (float, (gsize) ds->n * d);
  for (gsize i = 0; i < (gsize) ds->n * d; i++)
    f[i] = ds->images[i] * (1.f / 255.f);
  return f;
}

/* In-memory gallery of float features (and their median-threshold bits). */
static CbirGallery *
float_gallery (const char *tag, const float *feat, guint n, guint dim,
    const gint32 *labels)
{
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new (tag,
      CBIR_CODE_FLOAT, dim, FALSE);
  cbir_gallery_builder_set_store (b, TRUE, FALSE);
  for (guint i = 0; i < n; i++)
    cbir_gallery_builder_add (b, feat + (gsize) i * dim, labels[i], NULL,
        NULL);
  return cbir_gallery_builder_build (b);
}

static void
add_row (GPtrArray *rows, Row *r)
{
  g_ptr_array_add (rows, r);
  progress ("%-20s mAP %.4f  P@10 %.4f  vote %.4f  (%.1f s)", r->name,
      cbir_metrics_get_map (r->m), cbir_metrics_get_precision (r->m, 10),
      cbir_metrics_get_vote_accuracy (r->m), r->eval_s);
}

static gboolean
run_baselines (GPtrArray *rows, const CbirDataset *gal,
    const CbirDataset *qry, guint nq, GError **error)
{
  guint d = gal->rows * gal->cols;
  if (qry->rows * qry->cols != d) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "baselines: gallery images are %ux%u, queries %ux%u", gal->cols,
        gal->rows, qry->cols, qry->rows);
    return FALSE;
  }
  gboolean want_dump = opt_dump != NULL;
  g_autofree float *gf = pixels_to_float (gal);
  g_autofree float *qf = pixels_to_float (qry);

  /* raw pixels */
  {
    double t = now_s ();
    g_free (pixels_to_float (qry));   /* timed: the "encoder" of pixels */
    double ips = qry->n / MAX (now_s () - t, 1e-9);
    g_autoptr (CbirGallery) g = float_gallery ("raw-pixels", gf, gal->n, d,
        gal->labels);
    Row *r = evaluate ("raw pixels", g, CBIR_METRIC_L2, 0, 0, FALSE, qf, d,
        qry->labels, nq, ips, want_dump && rows->len == (guint) opt_dump_row,
        error);
    if (!r)
      return FALSE;
    add_row (rows, r);
  }
  /* PCA-32, PCA-64 */
  const guint pcs[] = { 32, 64 };
  for (guint p = 0; p < G_N_ELEMENTS (pcs); p++) {
    g_autoptr (CbirPca) pca = cbir_pca_fit (gf, gal->n, d, pcs[p], error);
    if (!pca)
      return FALSE;
    g_autofree float *gp = g_new (float, (gsize) gal->n * pcs[p]);
    g_autofree float *qp = g_new (float, (gsize) qry->n * pcs[p]);
    cbir_pca_transform (pca, gf, gal->n, gp);
    double t = now_s ();
    cbir_pca_transform (pca, qf, qry->n, qp);
    double ips = qry->n / MAX (now_s () - t, 1e-9);
    g_autofree char *name = g_strdup_printf ("PCA-%u", pcs[p]);
    g_autoptr (CbirGallery) g = float_gallery (name, gp, gal->n, pcs[p],
        gal->labels);
    Row *r = evaluate (name, g, CBIR_METRIC_L2, 0, 0, FALSE, qp, pcs[p],
        qry->labels, nq, ips, want_dump && rows->len == (guint) opt_dump_row,
        error);
    if (!r)
      return FALSE;
    add_row (rows, r);
  }
  /* ITQ-64 */
  {
    const guint bits = 64;
    g_autoptr (CbirItq) itq = cbir_itq_fit (gf, gal->n, d, bits, 50, 1,
        error);
    if (!itq)
      return FALSE;
    g_autofree float *gp = g_new (float, (gsize) gal->n * bits);
    g_autofree float *qp = g_new (float, (gsize) qry->n * bits);
    cbir_itq_project (itq, gf, gal->n, gp);
    double t = now_s ();
    cbir_itq_project (itq, qf, qry->n, qp);
    double ips = qry->n / MAX (now_s () - t, 1e-9);
    g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("itq-64",
        CBIR_CODE_BITS, bits, FALSE);
    for (guint i = 0; i < gal->n; i++)
      cbir_gallery_builder_add (b, gp + (gsize) i * bits, gal->labels[i],
          NULL, NULL);
    g_autoptr (CbirGallery) g = cbir_gallery_builder_build (b);
    Row *r = evaluate ("ITQ-64", g, CBIR_METRIC_HAMMING, 0, 0, FALSE, qp, bits,
        qry->labels, nq, ips, want_dump && rows->len == (guint) opt_dump_row,
        error);
    if (!r)
      return FALSE;
    add_row (rows, r);
  }
  return TRUE;
}

static char *
fmt_rate (double v)
{
  if (v < 0)
    return g_strdup ("-");
  if (v >= 100)
    return g_strdup_printf ("%.0f", v);
  return g_strdup_printf ("%.1f", v);
}

static void
print_table (GPtrArray *rows, guint n_gallery, guint nq)
{
  printf ("gallery %u items, %u queries; mAP = full-list label ranking AP "
      "(ties pessimistic)\n\n", n_gallery, nq);
  printf ("%-22s %-12s %-8s %6s %7s %7s %7s %7s %7s %7s %10s %10s %10s %8s\n",
      "method", "code", "metric", "bytes", "mAP", "P@1", "P@5", "P@10",
      "P@100", "vote@10", "enc img/s", "search q/s", "batch q/s", "recall");
  for (guint i = 0; i < rows->len; i++) {
    Row *r = g_ptr_array_index (rows, i);
    g_autofree char *e = fmt_rate (r->encode_ips);
    g_autofree char *s1 = fmt_rate (r->single_qps);
    g_autofree char *sb = fmt_rate (r->batch_qps);
    g_autofree char *rc = r->recall >= 0 ? g_strdup_printf ("%.4f",
        r->recall) : g_strdup ("-");
    printf ("%-22s %-12s %-8s %6u %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f "
        "%10s %10s %10s %8s\n", r->name, r->code, r->metric, r->code_bytes,
        cbir_metrics_get_map (r->m), cbir_metrics_get_precision (r->m, 1),
        cbir_metrics_get_precision (r->m, 5),
        cbir_metrics_get_precision (r->m, 10),
        cbir_metrics_get_precision (r->m, 100),
        cbir_metrics_get_vote_accuracy (r->m), e, s1, sb, rc);
  }
  if (rows->len == 0)
    return;
  /* per-class AP: one column per method */
  Row *r0 = g_ptr_array_index (rows, 0);
  guint nc = cbir_metrics_get_n_classes (r0->m);
  printf ("\nper-class AP\n%-8s %7s", "class", "queries");
  for (guint i = 0; i < rows->len; i++) {
    Row *r = g_ptr_array_index (rows, i);
    printf (" %12.12s", r->name);
  }
  printf ("\n");
  for (guint c = 0; c < nc; c++) {
    gint32 label;
    guint cnt;
    cbir_metrics_get_class (r0->m, c, &label, NULL, &cnt);
    printf ("%-8d %7u", label, cnt);
    for (guint i = 0; i < rows->len; i++) {
      Row *r = g_ptr_array_index (rows, i);
      double ap;
      cbir_metrics_get_class (r->m, c, NULL, &ap, NULL);
      printf (" %12.4f", ap);
    }
    printf ("\n");
  }
  if (r0->recall >= 0)
    printf ("\nrecall = recall@%d of the two-stage search against the "
        "exact one\n", opt_k);
}

static gboolean
write_json (const char *path, GPtrArray *rows, guint n_gallery, guint nq,
    GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "gallery_size");
  json_builder_add_int_value (b, n_gallery);
  json_builder_set_member_name (b, "queries");
  json_builder_add_int_value (b, nq);
  json_builder_set_member_name (b, "k");
  json_builder_add_int_value (b, opt_k);
  json_builder_set_member_name (b, "threads");
  json_builder_add_int_value (b, opt_threads > 0 ? opt_threads
      : (gint) cbir_default_threads ());
  json_builder_set_member_name (b, "search_isa");
  json_builder_add_string_value (b, cbir_search_get_isa ());
  json_builder_set_member_name (b, "methods");
  json_builder_begin_array (b);
  for (guint i = 0; i < rows->len; i++) {
    Row *r = g_ptr_array_index (rows, i);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "name");
    json_builder_add_string_value (b, r->name);
    json_builder_set_member_name (b, "code");
    json_builder_add_string_value (b, r->code);
    json_builder_set_member_name (b, "metric");
    json_builder_add_string_value (b, r->metric);
    json_builder_set_member_name (b, "code_bytes");
    json_builder_add_int_value (b, r->code_bytes);
    json_builder_set_member_name (b, "map");
    json_builder_add_double_value (b, cbir_metrics_get_map (r->m));
    const guint ks[] = { 1, 5, 10, 100 };
    for (guint j = 0; j < G_N_ELEMENTS (ks); j++) {
      g_autofree char *key = g_strdup_printf ("precision_at_%u", ks[j]);
      json_builder_set_member_name (b, key);
      json_builder_add_double_value (b, cbir_metrics_get_precision (r->m,
              ks[j]));
    }
    json_builder_set_member_name (b, "vote_accuracy_k10");
    json_builder_add_double_value (b, cbir_metrics_get_vote_accuracy (r->m));
    json_builder_set_member_name (b, "encode_images_per_s");
    if (r->encode_ips >= 0)
      json_builder_add_double_value (b, r->encode_ips);
    else
      json_builder_add_null_value (b);
    json_builder_set_member_name (b, "search_queries_per_s_single");
    json_builder_add_double_value (b, r->single_qps);
    json_builder_set_member_name (b, "search_queries_per_s_batch");
    json_builder_add_double_value (b, r->batch_qps);
    json_builder_set_member_name (b, "shortlist");
    json_builder_add_int_value (b, r->shortlist);
    json_builder_set_member_name (b, "dba_k");
    json_builder_add_int_value (b, r->dba_k);
    json_builder_set_member_name (b, "qe_k");
    json_builder_add_int_value (b, r->qe_k);
    json_builder_set_member_name (b, "rerank");
    json_builder_add_string_value (b, r->rerank);
    json_builder_set_member_name (b, "graph_k");
    json_builder_add_int_value (b, r->graph_k);
    json_builder_set_member_name (b, "graph_rank");
    json_builder_add_int_value (b, r->graph_rank);
    json_builder_set_member_name (b, "graph_edges");
    json_builder_add_int_value (b, (gint64) r->graph_edges);
    json_builder_set_member_name (b, "graph_build_s");
    if (r->graph_build_s >= 0)
      json_builder_add_double_value (b, r->graph_build_s);
    else
      json_builder_add_null_value (b);
    json_builder_set_member_name (b, "recall_at_k");
    if (r->recall >= 0)
      json_builder_add_double_value (b, r->recall);
    else
      json_builder_add_null_value (b);
    json_builder_set_member_name (b, "class_ap");
    json_builder_begin_object (b);
    for (guint c = 0; c < cbir_metrics_get_n_classes (r->m); c++) {
      gint32 label;
      double ap;
      cbir_metrics_get_class (r->m, c, &label, &ap, NULL);
      g_autofree char *key = g_strdup_printf ("%d", label);
      json_builder_set_member_name (b, key);
      json_builder_add_double_value (b, ap);
    }
    json_builder_end_object (b);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  g_autoptr (GError) err = NULL;
  if (!g_file_set_contents (path, text, -1, &err)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s", path,
        err->message);
    return FALSE;
  }
  return TRUE;
}

/* Encodes a data set; returns n * code_dim floats, sets images/s. */
static float *
encode_all (CbirModel *model, const CbirDataset *ds, double *ips,
    GError **error)
{
  guint w, h;
  cbir_model_get_input_size (model, &w, &h);
  if (ds->cols != w || ds->rows != h) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "images are %ux%u, the model takes %ux%u", ds->cols, ds->rows, w, h);
    return NULL;
  }
  guint dim = cbir_model_get_code_dim (model);
  float *codes = g_new (float, (gsize) ds->n * dim);
  double t = now_s ();
  if (!cbir_model_encode_u8 (model, ds->images, ds->n, codes, error)) {
    g_free (codes);
    return NULL;
  }
  *ips = ds->n / MAX (now_s () - t, 1e-9);
  gsize bad = cbir_first_non_finite (codes, (gsize) ds->n * dim);
  if (bad != (gsize) ds->n * dim) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "model %s: the code "
        "of image %" G_GSIZE_FORMAT " holds NaN or infinite values (weights "
        "too large for float arithmetic?): nothing to evaluate",
        cbir_model_get_name (model), bad / dim);
    g_free (codes);
    return NULL;
  }
  return codes;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GOptionContext) ctx =
      g_option_context_new ("- retrieval quality and speed of a model");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
      "mAP is scikit-learn's label_ranking_average_precision_score over the "
      "whole gallery\n(relevant = same label, ties ranked pessimistically).\n"
      "Example:\n  cbir-eval --model m.safetensors --gallery "
      "data/mnist/gallery-images.idx3-ubyte \\\n    --gallery-labels "
      "data/mnist/gallery-labels.idx1-ubyte --queries "
      "data/mnist/query-images.idx3-ubyte \\\n    --query-labels "
      "data/mnist/query-labels.idx1-ubyte --baselines\n");
  if (!g_option_context_parse (ctx, &argc, &argv, &err))
    return fail ("%s (see --help)", err->message);
  if (argc > 1)
    return fail ("unexpected argument '%s' (see --help)", argv[1]);
  if (!opt_queries || !opt_query_labels)
    return fail ("--queries and --query-labels are required");
  if (!opt_gallery && !opt_gallery_file)
    return fail ("give --gallery (with --gallery-labels) or --gallery-file");
  if (opt_gallery && opt_gallery_file && !opt_baselines)
    return fail ("give either --gallery or --gallery-file");
  if (opt_gallery && !opt_gallery_labels)
    return fail ("--gallery needs --gallery-labels");
  if (opt_baselines && !opt_gallery)
    return fail ("--baselines needs the gallery images (--gallery)");
  gboolean model_row = !opt_no_model_row;
  if (model_row && !opt_model)
    return fail ("--model is required (or --baselines --no-model-row)");
  if (opt_k < 1 || opt_k > 10000)
    return fail ("--k must be in 1..10000");
  if (opt_shortlist < 0)
    return fail ("--shortlist must be >= 0");
  if (opt_threads < 0 || opt_threads > 256)
    return fail ("--threads must be in 1..256");
  if (opt_limit < 0)
    return fail ("--limit-queries must be >= 0");
  CbirMetric metric = CBIR_METRIC_L2;
  if (opt_metric && !cbir_metric_from_string (opt_metric, &metric))
    return fail ("unknown metric '%s' (l2, cosine or hamming)", opt_metric);
  CbirCodeType code = CBIR_CODE_FLOAT;
  if (opt_code && !cbir_code_type_from_string (opt_code, &code))
    return fail ("unknown code type '%s' (float or bits)", opt_code);
  if (opt_save_gallery && !model_row)
    return fail ("--save-gallery needs the model");
  if (opt_dba < 0 || opt_qe < 0)
    return fail ("--dba and --qe must be >= 0");
  if (!(opt_dba_alpha >= 0 && opt_dba_alpha <= 1000)
      || !(opt_qe_alpha >= 0 && opt_qe_alpha <= 1000))
    return fail ("--dba-alpha and --qe-alpha must be in 0..1000");
  if (opt_dba > 0 && opt_gallery_file)
    return fail ("--dba augments a gallery built from images (--gallery); "
        "a --gallery-file keeps its own augmentation");
  if ((opt_dba > 0 || opt_qe > 0) && metric == CBIR_METRIC_HAMMING)
    return fail ("--dba and --qe work on float codes (--metric l2 or "
        "cosine)");
  enum { RERANK_AUTO, RERANK_NONE, RERANK_QE, RERANK_DIFFUSION } rerank =
      RERANK_AUTO;
  if (!opt_rerank || g_strcmp0 (opt_rerank, "auto") == 0)
    rerank = RERANK_AUTO;
  else if (g_strcmp0 (opt_rerank, "none") == 0)
    rerank = RERANK_NONE;
  else if (g_strcmp0 (opt_rerank, "qe") == 0)
    rerank = RERANK_QE;
  else if (g_strcmp0 (opt_rerank, "diffusion") == 0)
    rerank = RERANK_DIFFUSION;
  else
    return fail ("unknown --rerank '%s' (auto, none, qe or diffusion)",
        opt_rerank);
  if (rerank == RERANK_QE && opt_qe <= 0)
    return fail ("--rerank qe needs --qe K");
  if (opt_qe > 0 && (rerank == RERANK_NONE || rerank == RERANK_DIFFUSION))
    return fail ("--qe is query expansion: not with --rerank %s", opt_rerank);
  if (rerank == RERANK_DIFFUSION && opt_no_graph)
    return fail ("--rerank diffusion needs the gallery's graph (not "
        "--no-graph)");
  if (opt_graph_rank < 0 || opt_graph_rank > 4096)
    return fail ("--graph-rank must be in 0..4096");
  if (opt_graph_k < 0 || opt_graph_k > CBIR_GRAPH_MAX_K)
    return fail ("--graph-k must be in 0..%d", CBIR_GRAPH_MAX_K);
  if (!(opt_graph_power > 0 && opt_graph_power <= CBIR_GRAPH_MAX_POWER))
    return fail ("--graph-power must be in (0, 16]");
  {
    CbirDiffusionParams dp;
    diffusion_params_from_options (&dp);
    if (!cbir_diffusion_params_check (&dp, &err))
      return fail ("%s", err->message);
  }

  g_autoptr (CbirDataset) qry = cbir_dataset_load (opt_queries,
      opt_query_labels, &err);
  if (!qry)
    return fail ("%s", err->message);
  guint nq = opt_limit > 0 ? MIN ((guint) opt_limit, qry->n) : qry->n;
  g_autoptr (CbirDataset) gal = NULL;
  if (opt_gallery) {
    gal = cbir_dataset_load (opt_gallery, opt_gallery_labels, &err);
    if (!gal)
      return fail ("%s", err->message);
  }

  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify)
      row_free);
  guint n_gallery = gal ? gal->n : 0;

  if (model_row) {
    g_autoptr (CbirModel) model = cbir_model_load (opt_model, &err);
    if (!model)
      return fail ("%s", err->message);
    CbirCodeType mtype = cbir_model_get_code_type (model);
    if (!opt_code)
      code = mtype;
    if (mtype == CBIR_CODE_BITS && code == CBIR_CODE_FLOAT && opt_code)
      progress ("note: float codes of a bits model (its raw encoder output)");
    if (!opt_metric)
      metric = code == CBIR_CODE_BITS ? CBIR_METRIC_HAMMING : CBIR_METRIC_L2;
    if (code == CBIR_CODE_BITS && metric != CBIR_METRIC_HAMMING)
      return fail ("bit codes are compared with --metric hamming");
    if (code == CBIR_CODE_FLOAT && metric == CBIR_METRIC_HAMMING
        && opt_code)
      return fail ("--code float with --metric hamming: use --code bits");
    if (metric == CBIR_METRIC_HAMMING)
      code = CBIR_CODE_BITS;
    if (opt_shortlist > 0 && metric == CBIR_METRIC_HAMMING)
      return fail ("--shortlist re-ranks with l2 or cosine: give --metric");
    guint dim = cbir_model_get_code_dim (model);

    double enc_ips = -1, graph_build_s = -1;
    g_autoptr (CbirGallery) g = NULL;
    if (opt_gallery_file) {
      g = cbir_gallery_open (opt_gallery_file, &err);
      if (!g || !cbir_gallery_check_model (g, model, &err))
        return fail ("%s", err->message);
      n_gallery = cbir_gallery_size (g);
    } else {
      progress ("encoding %u gallery images with %s", gal->n,
          cbir_model_get_name (model));
      g_autofree float *gc = encode_all (model, gal, &enc_ips, &err);
      if (!gc)
        return fail ("%s: %s", opt_gallery, err->message);
      /* float models keep features (+ median bits); bits models only
       * bits, as their galleries do; a float model evaluated on bits
       * keeps only bits too */
      CbirCodeType gtype = mtype == CBIR_CODE_BITS ? CBIR_CODE_BITS : code;
      gboolean thumbs = gal->rows == 28 && gal->cols == 28;
      g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new
          (cbir_model_get_fingerprint (model), gtype, dim,
          thumbs && opt_save_gallery);
      if (gtype == CBIR_CODE_BITS && mtype == CBIR_CODE_FLOAT) {
        /* per-dimension gallery medians */
        g_autoptr (CbirGalleryBuilder) fb = cbir_gallery_builder_new ("tmp",
            CBIR_CODE_FLOAT, dim, FALSE);
        for (guint i = 0; i < gal->n; i++)
          cbir_gallery_builder_add (fb, gc + (gsize) i * dim, 0, NULL, NULL);
        g_autoptr (CbirGallery) fg = cbir_gallery_builder_build (fb);
        cbir_gallery_builder_set_bit_thresholds (b,
            cbir_gallery_get_bit_thresholds (fg));
      }
      cbir_gallery_builder_set_metric (b, cbir_metric_to_string (metric));
      if (opt_dba > 0) {
        if (gtype != CBIR_CODE_FLOAT)
          return fail ("--dba needs float codes (--code float)");
        if (!cbir_gallery_builder_set_dba (b, (guint) opt_dba,
                (float) opt_dba_alpha, &err))
          return fail ("%s", err->message);
        progress ("augmenting the gallery (DBA, k=%d, alpha=%g)", opt_dba,
            opt_dba_alpha);
      }
      /* the k-NN graph, as cbirindex builds it by default */
      gboolean want_graph = gtype == CBIR_CODE_FLOAT
          && metric != CBIR_METRIC_HAMMING && !opt_no_graph
          && rerank != RERANK_NONE && rerank != RERANK_QE && opt_qe == 0;
      if (want_graph) {
        if (!cbir_gallery_builder_set_graph (b, TRUE, (guint) opt_graph_k,
                (float) opt_graph_power, &err))
          return fail ("%s", err->message);
        cbir_gallery_builder_set_graph_rank (b, (guint) opt_graph_rank);
      }
      if (opt_label_names) {
        g_auto (GStrv) names = g_strsplit (opt_label_names, ",", -1);
        cbir_gallery_builder_set_label_names (b, (const char *const *) names,
            g_strv_length (names));
      }
      g_autofree char *base = g_path_get_basename (opt_gallery);
      for (guint i = 0; i < gal->n; i++) {
        g_autofree char *id = opt_save_gallery
            ? g_strdup_printf ("%s#%u", base, i) : NULL;
        cbir_gallery_builder_add (b, gc + (gsize) i * dim, gal->labels[i],
            thumbs ? gal->images + (gsize) i * 784 : NULL, id);
      }
      if (want_graph)
        progress ("building the gallery's k-NN graph (k %d, 0 = rule)",
            opt_graph_k);
      double tb = now_s ();
      if (opt_save_gallery) {
        if (!cbir_gallery_builder_write (b, opt_save_gallery, &err))
          return fail ("%s", err->message);
        progress ("wrote %s (%u items)", opt_save_gallery, gal->n);
        /* the file as written (DBA computed once) */
        g = cbir_gallery_open (opt_save_gallery, &err);
        if (!g)
          return fail ("%s", err->message);
      } else {
        g = cbir_gallery_builder_build (b);
      }
      graph_build_s = now_s () - tb;
    }
    progress ("encoding %u queries", nq);
    g_autoptr (CbirDataset) qsub = NULL;
    const CbirDataset *qds = qry;
    if (nq < qry->n) {
      g_autofree guint *idx = g_new (guint, nq);
      for (guint i = 0; i < nq; i++)
        idx[i] = i;
      qsub = cbir_dataset_subset (qry, idx, nq);
      qds = qsub;
    }
    double q_ips = 0;
    g_autofree float *qc = encode_all (model, qds, &q_ips, &err);
    if (!qc)
      return fail ("%s: %s", opt_queries, err->message);
    if (enc_ips < 0)
      enc_ips = q_ips;
    if (opt_qe > 0 && metric == CBIR_METRIC_HAMMING)
      return fail ("--qe works on float codes (--metric l2 or cosine)");
    guint gdba = cbir_gallery_get_dba (g, NULL);
    g_autofree char *dba_s = gdba ? g_strdup_printf (" +dba%u", gdba)
        : g_strdup ("");
    g_autofree char *qe_s = opt_qe > 0 ? g_strdup_printf (" +qe%d", opt_qe)
        : g_strdup ("");
    const CbirGraph *graph = cbir_gallery_get_graph (g);
    if (rerank == RERANK_DIFFUSION && !graph)
      return fail ("--rerank diffusion: %s has no k-NN graph",
          cbir_gallery_get_path (g));
    gboolean diffusion = graph && metric != CBIR_METRIC_HAMMING
        && (rerank == RERANK_DIFFUSION || (rerank == RERANK_AUTO
                && opt_qe == 0));
    g_autofree char *diff_s = diffusion ? g_strdup_printf (" +diff%u",
        cbir_graph_get_k (graph)) : g_strdup ("");
    g_autofree char *name = g_strdup_printf ("%s%s%s%s%s",
        cbir_model_get_name (model), opt_shortlist > 0 ? "+2stage" : "",
        dba_s, qe_s, diff_s);
    Row *r = evaluate (name, g, metric, (guint) opt_shortlist, (guint) opt_qe,
        diffusion, qc, dim, qry->labels, nq, enc_ips,
        opt_dump && opt_dump_row == 0, &err);
    if (!r)
      return fail ("%s", err->message);
    if (diffusion)
      r->graph_build_s = graph_build_s;
    add_row (rows, r);
  }
  if (opt_baselines) {
    if (!run_baselines (rows, gal, qry, nq, &err))
      return fail ("%s", err->message);
  }
  print_table (rows, n_gallery, nq);
  if (opt_json && !write_json (opt_json, rows, n_gallery, nq, &err))
    return fail ("%s", err->message);
  return 0;
}

/* bench-plugin: the GStreamer plugin's overhead over the bare engine.
 *
 * Times `cbiridxsrc ! cbirencode ! cbirsearch ! fakesink sync=false` run
 * in-process (gst_parse_launch) over a query IDX file (default: the 10,000
 * Fashion-MNIST test images) against a gallery (default: the 60,000
 * Fashion-MNIST train images encoded by the same model), and, alternating
 * with it in the same process, the engine doing the same work without
 * GStreamer: read the IDX file, encode each image at batch 1
 * (cbir_model_encode_u8), cbir_searcher_search with the same k and metric,
 * cbir_vote (after diffusion of the plain k nearest, as cbirsearch) and
 * the match score's default decision. Both timings include their set-up
 * (IDX read, model load, gallery mmap, searcher, match-score reference),
 * as the pipeline's state changes do it.
 *
 * Prints, per repetition and as medians: frames/s, CPU time per frame
 * (getrusage, all threads) and the overhead of the pipeline over the
 * engine in %. Checks that both paths vote the same label for every frame
 * (the pipeline's labels are read from its cbir-result bus messages, as an
 * application would).
 *
 * Model: --model FILE; when the file does not exist an untrained model of
 * --preset (default "default") is written there with the model API (fine
 * for speed, meaningless for accuracy). Gallery: --gallery FILE; when it
 * does not exist or was made by another model, it is built with the plugin
 * (cbiridxsrc ! cbirencode ! cbirindex) from --gallery-images.
 *
 * Needs the plugin on GST_PLUGIN_PATH_1_0 (meson's benchmark() sets it up;
 * tests/bench/run-plugin-bench.sh is the one-command wrapper).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <cbir/gallery.h>
#include <cbir/idx.h>
#include <cbir/model.h>
#include <cbir/openset.h>
#include <cbir/search.h>
#include <gst/gst.h>
#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define FASHION CBIR_SOURCE_DIR "/data/fashion/"

static gchar *opt_model, *opt_preset, *opt_gallery, *opt_queries;
static gchar *opt_query_labels, *opt_gallery_images, *opt_gallery_labels;
static gchar *opt_cache_dir, *opt_only;
static gint opt_k = 5, opt_reps = 5, opt_limit = 0;
static gboolean opt_no_messages;

static GOptionEntry entries[] = {
  {"model", 'm', 0, G_OPTION_ARG_FILENAME, &opt_model,
      "Model file (written from --preset when missing; default "
        "CACHE/model-PRESET-ARCHSUM-untrained.safetensors)", "FILE"},
  {"preset", 'p', 0, G_OPTION_ARG_STRING, &opt_preset,
      "Preset of the untrained model written when --model is missing "
        "(default: default, else keras-dae)", "NAME"},
  {"gallery", 'g', 0, G_OPTION_ARG_FILENAME, &opt_gallery,
      "Gallery file (built with the plugin when missing or from another "
        "model; default CACHE/gallery-<model>.safetensors)", "FILE"},
  {"gallery-images", 0, 0, G_OPTION_ARG_FILENAME, &opt_gallery_images,
      "Images the gallery is built from (default Fashion-MNIST train)",
      "IDX"},
  {"gallery-labels", 0, 0, G_OPTION_ARG_FILENAME, &opt_gallery_labels,
      "Their labels", "IDX"},
  {"queries", 'q', 0, G_OPTION_ARG_FILENAME, &opt_queries,
      "Query images (default Fashion-MNIST t10k)", "IDX"},
  {"query-labels", 0, 0, G_OPTION_ARG_FILENAME, &opt_query_labels,
      "Their labels", "IDX"},
  {"cache-dir", 'C', 0, G_OPTION_ARG_FILENAME, &opt_cache_dir,
      "Where the default model and gallery live (default: "
        "./plugin-bench-cache)", "DIR"},
  {"k", 'k', 0, G_OPTION_ARG_INT, &opt_k, "Neighbours (default 5)", "K"},
  {"reps", 'r', 0, G_OPTION_ARG_INT, &opt_reps,
      "Repetitions of each path, alternated (default 5)", "N"},
  {"limit", 'n', 0, G_OPTION_ARG_INT, &opt_limit,
      "Only the first N queries", "N"},
  {"only", 0, 0, G_OPTION_ARG_STRING, &opt_only,
      "Run one path only, for profiling (no comparison)", "plugin|engine"},
  {"no-messages", 0, 0, G_OPTION_ARG_NONE, &opt_no_messages,
      "cbirsearch post-messages=false (no bus message per frame, so no "
        "label check)", NULL},
  {NULL}
};

typedef struct
{
  gdouble wall;                 /* s */
  gdouble cpu;                  /* s, user + system, all threads */
} Timing;

typedef struct
{
  gdouble wall0, cpu0;
} Stopwatch;

static gdouble
cpu_seconds (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
      (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void
stopwatch_start (Stopwatch * sw)
{
  sw->cpu0 = cpu_seconds ();
  sw->wall0 = g_get_monotonic_time () * 1e-6;
}

static Timing
stopwatch_stop (const Stopwatch * sw)
{
  Timing t;

  t.wall = g_get_monotonic_time () * 1e-6 - sw->wall0;
  t.cpu = cpu_seconds () - sw->cpu0;
  return t;
}

static GstElement *
make_pipeline (const gchar * desc, GError ** error)
{
  return gst_parse_launch_full (desc, NULL, GST_PARSE_FLAG_FATAL_ERRORS,
      error);
}

static void
set_named (GstElement * pipeline, const gchar * name, const gchar * prop,
    const gchar * value)
{
  GstElement *e = gst_bin_get_by_name (GST_BIN (pipeline), name);

  g_assert (e != NULL);
  g_object_set (e, prop, value, NULL);
  gst_object_unref (e);
}

/* Plays the pipeline to EOS. labels (may be NULL): the "label" of each
 * cbir-result message, at its "frame". FALSE + error on an error
 * message. */
static gboolean
run_pipeline (GstElement * pipeline, gint32 * labels, guint n_labels,
    guint * n_results, GError ** error)
{
  g_autoptr (GstBus) bus = gst_element_get_bus (pipeline);
  gboolean ok = TRUE, done = FALSE;

  *n_results = 0;
  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) ==
      GST_STATE_CHANGE_FAILURE) {
    /* the error message is on the bus */
  }
  while (!done) {
    GstMessage *msg = gst_bus_timed_pop (bus, GST_CLOCK_TIME_NONE);

    switch (GST_MESSAGE_TYPE (msg)) {
      case GST_MESSAGE_EOS:
        done = TRUE;
        break;
      case GST_MESSAGE_ERROR:{
        g_autoptr (GError) err = NULL;
        g_autofree gchar *dbg = NULL;

        gst_message_parse_error (msg, &err, &dbg);
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s (%s)",
            GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)), err->message,
            dbg ? dbg : "");
        ok = FALSE;
        done = TRUE;
        break;
      }
      case GST_MESSAGE_ELEMENT:{
        const GstStructure *s = gst_message_get_structure (msg);
        guint64 frame;
        gint label;

        if (labels && gst_structure_has_name (s, "cbir-result") &&
            gst_structure_get_uint64 (s, "frame", &frame) &&
            gst_structure_get_int (s, "label", &label) && frame < n_labels) {
          labels[frame] = label;
          (*n_results)++;
        }
        break;
      }
      default:
        break;
    }
    gst_message_unref (msg);
  }
  gst_element_set_state (pipeline, GST_STATE_NULL);
  return ok;
}

/* Builds the gallery with the plugin. */
static gboolean
build_gallery (const gchar * model, const gchar * images, const gchar * labels,
    const gchar * out, GError ** error)
{
  g_autoptr (GstElement) p = NULL;
  Stopwatch sw;
  Timing t;
  guint n;

  p = make_pipeline ("cbiridxsrc name=src ! cbirencode name=enc ! "
      "cbirindex name=idx", error);
  if (p == NULL)
    return FALSE;
  set_named (p, "src", "images", images);
  if (labels)
    set_named (p, "src", "labels", labels);
  set_named (p, "enc", "model", model);
  set_named (p, "idx", "location", out);
  printf ("building the gallery %s from %s with the plugin...\n", out,
      images);
  fflush (stdout);
  stopwatch_start (&sw);
  if (!run_pipeline (p, NULL, 0, &n, error))
    return FALSE;
  t = stopwatch_stop (&sw);
  printf ("  gallery built in %.1f s (%.1f s CPU)\n", t.wall, t.cpu);
  return TRUE;
}

/* The plugin path: one run of the pipeline over the queries. */
static gboolean
run_plugin (const gchar * model, const gchar * gallery, guint n,
    gint32 * labels, Timing * t, GError ** error)
{
  g_autoptr (GstElement) p = NULL;
  g_autofree gchar *desc = NULL;
  Stopwatch sw;
  guint n_results;

  /* set up before the clock starts: parsing is the application's, not
   * the streaming's; the elements load their files in READY->PAUSED,
   * inside the timing (as the engine path does) */
  desc = g_strdup_printf ("cbiridxsrc name=src count=%u ! "
      "cbirencode name=enc ! cbirsearch name=search k=%d post-messages=%s ! "
      "fakesink sync=false", n, opt_k, opt_no_messages ? "false" : "true");
  p = make_pipeline (desc, error);
  if (p == NULL)
    return FALSE;
  set_named (p, "src", "images", opt_queries);
  if (opt_query_labels)
    set_named (p, "src", "labels", opt_query_labels);
  set_named (p, "enc", "model", model);
  set_named (p, "search", "gallery", gallery);

  stopwatch_start (&sw);
  if (!run_pipeline (p, opt_no_messages ? NULL : labels, n, &n_results,
          error))
    return FALSE;
  *t = stopwatch_stop (&sw);
  if (!opt_no_messages && n_results != n) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "the pipeline gave %u results for %u frames", n_results, n);
    return FALSE;
  }
  return TRUE;
}

/* The engine path: the same work without GStreamer. */
static gboolean
run_engine (const gchar * model_path, const gchar * gallery_path, guint n,
    gint32 * labels, Timing * t, GError ** error)
{
  g_autoptr (CbirDataset) ds = NULL;
  g_autoptr (CbirModel) model = NULL;
  g_autoptr (CbirGallery) gallery = NULL;
  g_autoptr (CbirSearcher) searcher = NULL;
  g_autoptr (CbirMatchScorer) scorer = NULL;
  g_autofree gfloat *code = NULL;
  g_autofree CbirHit *hits = NULL;
  CbirMetric metric = CBIR_METRIC_L2;
  Stopwatch sw;
  gsize frame_bytes;
  guint i, dim;
  float min_score;

  stopwatch_start (&sw);
  ds = cbir_dataset_load (opt_queries, opt_query_labels, error);
  if (ds == NULL)
    return FALSE;
  model = cbir_model_load (model_path, error);
  if (model == NULL)
    return FALSE;
  gallery = cbir_gallery_open (gallery_path, error);
  if (gallery == NULL || !cbir_gallery_check_model (gallery, model, error))
    return FALSE;
  /* the metric cbirsearch's metric=auto picks */
  if (cbir_gallery_get_code_type (gallery) == CBIR_CODE_BITS)
    metric = CBIR_METRIC_HAMMING;
  else if (!cbir_metric_from_string (cbir_gallery_get_metric_name (gallery),
          &metric))
    metric = CBIR_METRIC_L2;
  searcher = cbir_searcher_new (gallery, metric, 0, error);
  if (searcher == NULL)
    return FALSE;
  /* the match score and its default threshold, as cbirsearch computes
   * them when it starts */
  scorer = cbir_match_scorer_new (gallery, metric, 0, error);
  if (scorer == NULL)
    return FALSE;
  min_score = cbir_match_score_default_min (gallery);
  /* and the re-ranking rerank=auto picks: diffusion over the gallery's
   * graph (cbirindex writes one by default), low-rank when stored */
  if (cbir_gallery_get_graph (gallery) && metric != CBIR_METRIC_HAMMING) {
    CbirDiffusionParams dp;

    cbir_diffusion_params_init (&dp);
    dp.low_rank = cbir_graph_get_rank (cbir_gallery_get_graph (gallery)) > 0;
    if (!cbir_searcher_set_diffusion (searcher,
            cbir_gallery_get_graph (gallery), &dp, error))
      return FALSE;
  }

  dim = cbir_model_get_code_dim (model);
  code = g_new (gfloat, dim);
  hits = g_new (CbirHit, opt_k);
  frame_bytes = (gsize) ds->rows * ds->cols;
  n = MIN (n, ds->n);
  for (i = 0; i < n; i++) {
    guint nh;
    gfloat confidence;

    if (!cbir_model_encode_u8 (model, ds->images + i * frame_bytes, 1, code,
            error))
      return FALSE;
    nh = cbir_searcher_search (searcher, code, opt_k, hits);
    /* after diffusion cbirsearch votes with the plain nearest items */
    if (cbir_searcher_get_diffusion (searcher, NULL))
      nh = cbir_searcher_search_plain (searcher, code, opt_k, hits);
    cbir_vote (hits, nh, &labels[i], &confidence);
    /* its default decision: below the match score's threshold, or voted
     * to the gallery's examples of non-matches, label -1 */
    if (nh == 0 || labels[i] == CBIR_LABEL_NOT_A_MATCH ||
        cbir_match_scorer_score (scorer, hits[0].distance) < min_score)
      labels[i] = -1;
  }
  g_clear_pointer (&scorer, cbir_match_scorer_free);
  g_clear_pointer (&searcher, cbir_searcher_free);
  g_clear_pointer (&gallery, cbir_gallery_free);
  g_clear_pointer (&model, cbir_model_free);
  g_clear_pointer (&ds, cbir_dataset_free);
  *t = stopwatch_stop (&sw);
  return TRUE;
}

static int
cmp_double (const void *a, const void *b)
{
  gdouble x = *(const gdouble *) a, y = *(const gdouble *) b;

  return (x > y) - (x < y);
}

static gdouble
median (const gdouble * v, guint n)
{
  g_autofree gdouble *s = g_memdup2 (v, n * sizeof (gdouble));

  qsort (s, n, sizeof (gdouble), cmp_double);
  return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static gboolean
ensure_model (gchar ** path, GError ** error)
{
  const gchar *presets[] = { opt_preset ? opt_preset : "default",
    opt_preset ? NULL : "keras-dae", NULL
  };
  g_autoptr (GError) first = NULL;
  guint i;

  if (*path && g_file_test (*path, G_FILE_TEST_EXISTS))
    return TRUE;
  for (i = 0; presets[i]; i++) {
    g_autoptr (CbirModel) m = NULL;
    g_autoptr (GError) err = NULL;
    m = cbir_model_new_preset (presets[i], &err);
    /* the cached file is named by the preset's architecture, so a changed
     * preset gets a new model (and gallery) rather than the old one */
    g_autofree gchar *arch_sum = m ? g_compute_checksum_for_string
        (G_CHECKSUM_SHA256, cbir_model_get_arch_json (m), -1) : NULL;
    g_autofree gchar *out = *path ? g_strdup (*path) : m ?
        g_strdup_printf ("%s/model-%s-%.12s-untrained.safetensors",
        opt_cache_dir, presets[i], arch_sum) : NULL;

    if (out && g_file_test (out, G_FILE_TEST_EXISTS)) {
      g_free (*path);
      *path = g_steal_pointer (&out);
      return TRUE;
    }
    if (m && cbir_model_save (m, out, &err)) {
      printf ("wrote an untrained \"%s\" model (preset weights) to %s\n",
          presets[i], out);
      g_free (*path);
      *path = g_steal_pointer (&out);
      return TRUE;
    }
    fprintf (stderr, "bench-plugin: preset %s: %s\n", presets[i],
        err->message);
    if (first == NULL)
      first = g_steal_pointer (&err);
  }
  g_propagate_error (error, g_steal_pointer (&first));
  return FALSE;
}

/* epochs_done from the model's training info (0 when untrained) */
static gint64
epochs_done (const CbirModel * model)
{
  const gchar *info = cbir_model_get_training_info (model);
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonNode *root;

  if (info == NULL || !json_parser_load_from_data (parser, info, -1, NULL))
    return 0;
  root = json_parser_get_root (parser);
  if (!JSON_NODE_HOLDS_OBJECT (root))
    return 0;
  return json_object_get_int_member_with_default (json_node_get_object (root),
      "epochs_done", 0);
}

static gboolean
gallery_usable (const gchar * path, const CbirModel * model, guint n_expected)
{
  g_autoptr (CbirGallery) g = NULL;
  g_autoptr (GError) err = NULL;

  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return FALSE;
  g = cbir_gallery_open (path, &err);
  if (g == NULL || !cbir_gallery_check_model (g, model, &err)) {
    printf ("gallery %s unusable (%s): rebuilding it\n", path, err->message);
    return FALSE;
  }
  if (n_expected && cbir_gallery_size (g) != n_expected) {
    printf ("gallery %s has %u items, not %u: rebuilding it\n", path,
        cbir_gallery_size (g), n_expected);
    return FALSE;
  }
  return TRUE;
}

static int
fail (const gchar * what, const GError * err)
{
  fprintf (stderr, "bench-plugin: %s: %s\n", what, err->message);
  return 1;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirModel) model = NULL;
  g_autoptr (CbirDataset) q_ds = NULL;
  g_autofree gint32 *lab_plugin = NULL;
  g_autofree gint32 *lab_engine = NULL;
  g_autofree gdouble *ratio = NULL;
  g_autofree gdouble *cpu_ratio = NULL;
  g_autofree gdouble *fps_p = NULL;
  g_autofree gdouble *fps_e = NULL;
  g_autofree gdouble *cpu_p = NULL;
  g_autofree gdouble *cpu_e = NULL;
  guint n, r, agree = 0, i;

  ctx = g_option_context_new ("- plugin overhead over the engine");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  if (!g_option_context_parse (ctx, &argc, &argv, &err))
    return fail ("options", err);
  if (opt_k < 1 || opt_k > 1024 || opt_reps < 1 || opt_limit < 0) {
    fprintf (stderr, "bench-plugin: need 1 <= k <= 1024, reps >= 1, "
        "limit >= 0\n");
    return 2;
  }
  if (opt_only && strcmp (opt_only, "plugin") != 0 &&
      strcmp (opt_only, "engine") != 0) {
    fprintf (stderr, "bench-plugin: --only takes plugin or engine\n");
    return 2;
  }
  gst_init (&argc, &argv);

  if (opt_cache_dir == NULL)
    opt_cache_dir = g_strdup ("plugin-bench-cache");
  if (opt_queries == NULL) {
    opt_queries = g_strdup (FASHION "t10k-images-idx3-ubyte.gz");
    opt_query_labels = g_strdup (FASHION "t10k-labels-idx1-ubyte.gz");
  }
  if (opt_gallery_images == NULL) {
    opt_gallery_images = g_strdup (FASHION "train-images-idx3-ubyte.gz");
    opt_gallery_labels = g_strdup (FASHION "train-labels-idx1-ubyte.gz");
  }
  if (!g_file_test (opt_queries, G_FILE_TEST_EXISTS)) {
    fprintf (stderr, "bench-plugin: %s not found (run `bash "
        "scripts/get-data.sh` first): skipped\n", opt_queries);
    return 77;
  }
  if (g_mkdir_with_parents (opt_cache_dir, 0755) != 0) {
    fprintf (stderr, "bench-plugin: cannot create %s\n", opt_cache_dir);
    return 1;
  }

  /* model and gallery */
  if (!ensure_model (&opt_model, &err))
    return fail ("model", err);
  model = cbir_model_load (opt_model, &err);
  if (model == NULL)
    return fail ("model", err);
  if (opt_gallery == NULL)
    opt_gallery = g_strdup_printf ("%s/gallery-%.16s.safetensors",
        opt_cache_dir, cbir_model_get_fingerprint (model));
  if (!gallery_usable (opt_gallery, model, 0)) {
    if (!g_file_test (opt_gallery_images, G_FILE_TEST_EXISTS)) {
      fprintf (stderr, "bench-plugin: %s not found: skipped\n",
          opt_gallery_images);
      return 77;
    }
    if (!build_gallery (opt_model, opt_gallery_images, opt_gallery_labels,
            opt_gallery, &err))
      return fail ("building the gallery", err);
    if (!gallery_usable (opt_gallery, model, 0)) {
      fprintf (stderr, "bench-plugin: the built gallery is unusable\n");
      return 1;
    }
  }

  q_ds = cbir_dataset_load (opt_queries, NULL, &err);
  if (q_ds == NULL)
    return fail ("queries", err);
  n = opt_limit ? MIN ((guint) opt_limit, q_ds->n) : q_ds->n;
  {
    g_autoptr (CbirGallery) g = cbir_gallery_open (opt_gallery, &err);

    if (g == NULL)
      return fail ("gallery", err);
    printf ("model   %s: %s, %" G_GINT64_FORMAT " epochs trained%s, %u-%s "
        "code, fingerprint %.16s\n", opt_model, cbir_model_get_name (model),
        epochs_done (model), epochs_done (model) ? "" :
        " (untrained: speed only)",
        cbir_model_get_code_dim (model),
        cbir_code_type_to_string (cbir_model_get_code_type (model)),
        cbir_model_get_fingerprint (model));
    printf ("gallery %s: %u items, metric %s (searcher ISA %s, %u threads)\n",
        opt_gallery, cbir_gallery_size (g), cbir_gallery_get_metric_name (g),
        cbir_search_get_isa (), cbir_default_threads ());
  }
  printf ("queries %s: %u frames, k=%d, post-messages=%s, %d reps\n",
      opt_queries, n, opt_k, opt_no_messages ? "false" : "true", opt_reps);
  printf ("plugin: cbiridxsrc ! cbirencode ! cbirsearch ! fakesink "
      "sync=false (in-process)\n");
  printf ("engine: IDX read, cbir_model_encode_u8 (batch 1), "
      "cbir_searcher_search, cbir_vote\n");
  g_clear_pointer (&model, cbir_model_free);
  g_clear_pointer (&q_ds, cbir_dataset_free);

  lab_plugin = g_new (gint32, n);
  lab_engine = g_new (gint32, n);
  ratio = g_new (gdouble, opt_reps);
  cpu_ratio = g_new (gdouble, opt_reps);
  fps_p = g_new (gdouble, opt_reps);
  fps_e = g_new (gdouble, opt_reps);
  cpu_p = g_new (gdouble, opt_reps);
  cpu_e = g_new (gdouble, opt_reps);

  /* warm-up, untimed: plugin loading, first mmap of the files, caches */
  {
    Timing t;
    guint nw = MIN (n, 200);

    if ((!opt_only || !strcmp (opt_only, "plugin")) &&
        !run_plugin (opt_model, opt_gallery, nw, lab_plugin, &t, &err))
      return fail ("plugin pipeline", err);
    if ((!opt_only || !strcmp (opt_only, "engine")) &&
        !run_engine (opt_model, opt_gallery, nw, lab_engine, &t, &err))
      return fail ("engine", err);
  }

  printf ("\n%-4s %-7s %10s %12s %16s\n", "rep", "path", "wall s",
      "frames/s", "CPU us/frame");
  for (r = 0; r < (guint) opt_reps; r++) {
    Timing tp = { 0, 0 }, te = { 0, 0 };
    guint pass;

    /* ABBA order, so that a drift in the machine's load hits both */
    for (pass = 0; pass < 2; pass++) {
      gboolean plugin_now = (pass == 0) == (r % 2 == 0);

      if (opt_only && strcmp (opt_only, plugin_now ? "plugin" : "engine"))
        continue;

      memset (plugin_now ? lab_plugin : lab_engine, 0xff,
          n * sizeof (gint32));
      if (plugin_now) {
        if (!run_plugin (opt_model, opt_gallery, n, lab_plugin, &tp, &err))
          return fail ("plugin pipeline", err);
      } else if (!run_engine (opt_model, opt_gallery, n, lab_engine, &te,
              &err)) {
        return fail ("engine", err);
      }
      printf ("%-4u %-7s %10.2f %12.1f %16.1f\n", r + 1,
          plugin_now ? "plugin" : "engine", plugin_now ? tp.wall : te.wall,
          n / (plugin_now ? tp.wall : te.wall),
          1e6 * (plugin_now ? tp.cpu : te.cpu) / n);
      fflush (stdout);
    }
    if (opt_only)
      continue;
    fps_p[r] = n / tp.wall;
    fps_e[r] = n / te.wall;
    cpu_p[r] = 1e6 * tp.cpu / n;
    cpu_e[r] = 1e6 * te.cpu / n;
    ratio[r] = tp.wall / te.wall;
    cpu_ratio[r] = tp.cpu / te.cpu;
    printf ("     overhead  wall %+.1f %%, CPU %+.1f %%\n",
        100 * (ratio[r] - 1), 100 * (cpu_ratio[r] - 1));
  }

  if (opt_only)
    return 0;
  if (!opt_no_messages) {
    for (i = 0; i < n; i++)
      agree += lab_plugin[i] == lab_engine[i];
    printf ("\nvoted labels equal in both paths: %u/%u\n", agree, n);
  }
  printf ("\nmedian of %d: plugin %.1f frames/s (%.1f us CPU/frame), "
      "engine %.1f frames/s (%.1f us CPU/frame)\n", opt_reps,
      median (fps_p, opt_reps), median (cpu_p, opt_reps),
      median (fps_e, opt_reps), median (cpu_e, opt_reps));
  printf ("plugin overhead (median of per-rep ratios): wall %+.1f %%, "
      "CPU %+.1f %% (target < 10 %%)\n", 100 * (median (ratio, opt_reps) - 1),
      100 * (median (cpu_ratio, opt_reps) - 1));
  {
    gdouble sp = 0, se = 0, wp = 0, we = 0;

    for (r = 0; r < (guint) opt_reps; r++) {
      sp += cpu_p[r];
      se += cpu_e[r];
      wp += 1 / fps_p[r];
      we += 1 / fps_e[r];
    }
    printf ("plugin overhead (totals over all reps): wall %+.1f %%, "
        "CPU %+.1f %%\n", 100 * (wp / we - 1), 100 * (sp / se - 1));
  }
  printf ("(on a loaded machine compare CPU: the pipeline's extra threads "
      "(streaming, bus) get a larger share of the cores, which flatters "
      "its wall time)\n");
  if (!opt_no_messages && agree != n) {
    fprintf (stderr, "bench-plugin: the paths disagree on %u frames\n",
        n - agree);
    return 1;
  }
  return 0;
}

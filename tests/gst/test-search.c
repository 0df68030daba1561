/* cbirsearch: results equal the engine's own search, metas and messages,
 * max-distance, bit galleries, frames without embedding, mismatches,
 * gallery errors.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"
#include <cbir/noise.h>
#include <cbir/openset.h>

static gchar *dir;

static void
setup (void)
{
  dir = tmpdir_new ();
}

static void
teardown (void)
{
  tmpdir_free (dir);
  dir = NULL;
}

static const GValue *
field (const GstStructure * s, const gchar * name)
{
  const GValue *v = gst_structure_get_value (s, name);

  fail_unless (v != NULL, "no field %s in %" GST_PTR_FORMAT, name, s);
  return v;
}

/* What cbirsearch with default properties answers for one code whose n
 * hits the engine found, from the engine: the local-mean vote (k = n) of
 * its CBIR_LOCAL_MEAN_CANDIDATES (or 10 n) plain nearest items ranked by
 * local scaling (not the hits after diffusion; the searchers here do no
 * query expansion), the match score (the plain nearest distance against
 * the gallery's own nearest-other distances) and the decision at the
 * default min-match-score (no match: label -1, confidence 0). */
static void
engine_answer (const CbirGallery * gallery, CbirSearcher * searcher,
    const CbirMatchScorer * scorer, const gfloat * code, guint n,
    gint32 * label, gfloat * conf, gfloat * score, gboolean * match)
{
  guint nc = MAX (10 * n, CBIR_LOCAL_MEAN_CANDIDATES);
  CbirHit *plain = g_new (CbirHit, nc);
  gfloat *keys = g_new (gfloat, nc);
  guint *sizes = g_new (guint, nc);
  guint np = cbir_searcher_search_plain (searcher, code, nc, plain);
  GHashTable *label_sizes = cbir_gallery_count_labels (gallery);

  /* the match score reads the nearest candidate (with a Hamming shortlist
   * shorter than the candidates, the shortlist grows to them); the vote
   * the candidates re-ranked */
  *score = cbir_match_scorer_score (scorer, np ? plain[0].distance : INFINITY);
  cbir_match_scorer_scale_hits (scorer, plain, np, np, keys);
  *match = n > 0 && *score >= CBIR_MATCH_SCORE_DEFAULT_MIN;
  cbir_hits_label_sizes (label_sizes, plain, np, sizes);
  cbir_vote_local_mean (plain, keys, sizes, np, n, label, conf);
  g_hash_table_unref (label_sizes);
  g_free (plain);
  g_free (keys);
  g_free (sizes);
  if (!*match) {
    *label = -1;
    *conf = 0;
  }
}

/* the fields of a result structure against the engine's hits */
static void
check_result_structure (const GstStructure * s, const CbirHit * hits,
    guint n, gint32 label, gfloat conf, gfloat score, gboolean want_match)
{
  gdouble sc;

  const GValue *ids = field (s, "ids"), *labels = field (s, "labels"),
      *dists = field (s, "distances");
  gint l;
  gdouble c;
  gboolean match;
  guint i;

  fail_unless (gst_structure_has_name (s, "cbir-result"));
  fail_unless_equals_int (gst_value_array_get_size (ids), n);
  fail_unless_equals_int (gst_value_array_get_size (labels), n);
  fail_unless_equals_int (gst_value_array_get_size (dists), n);
  for (i = 0; i < n; i++) {
    fail_unless_equals_int (g_value_get_uint (gst_value_array_get_value (ids,
                i)), hits[i].index);
    fail_unless_equals_int (g_value_get_int (gst_value_array_get_value
            (labels, i)), hits[i].label);
    fail_unless_equals_float (g_value_get_float (gst_value_array_get_value
            (dists, i)), hits[i].distance);
  }
  fail_unless (gst_structure_get_int (s, "label", &l));
  fail_unless (gst_structure_get_double (s, "confidence", &c));
  fail_unless (gst_structure_get_boolean (s, "match", &match));
  fail_unless_equals_int (l, label);
  fail_unless_equals_float ((gfloat) c, conf);
  fail_unless (gst_structure_get_double (s, "match-score", &sc));
  fail_unless (sc >= 0 && sc <= 1, "match-score %g", sc);
  fail_unless_equals_float ((gfloat) sc, score);
  fail_unless_equals_int (match, want_match);
}

/* The pipeline's results for noisy fixture frames are the engine's:
 * same noise, same code, same hits, same vote. */
/* The gallery of make_gallery with cbirindex's default k-NN graph. */
static gchar *
make_graph_gallery (const gchar * model_path, guint n)
{
  gchar *plain = make_gallery (dir, model_path, n, "plain.safetensors");
  gchar *path = g_build_filename (dir, "graph.safetensors", NULL);
  CbirGallery *g = cbir_gallery_open (plain, NULL);
  CbirGalleryBuilder *b = cbir_gallery_builder_new
      (cbir_gallery_get_model_fingerprint (g), CBIR_CODE_FLOAT,
      cbir_gallery_get_dim (g), TRUE);
  GError *err = NULL;
  guint i;

  fail_unless (cbir_gallery_builder_set_graph (b, TRUE, 0,
          CBIR_GRAPH_DEFAULT_POWER, NULL));
  for (i = 0; i < n; i++)
    cbir_gallery_builder_add (b, cbir_gallery_get_features (g) +
        (gsize) i * cbir_gallery_get_dim (g), cbir_gallery_get_labels (g)[i],
        cbir_gallery_get_thumbnail (g, i), NULL);
  fail_unless (cbir_gallery_builder_write (b, path, &err), "%s",
      err ? err->message : "?");
  cbir_gallery_builder_free (b);
  cbir_gallery_free (g);
  g_free (plain);
  return path;
}

/* graph: the gallery has a k-NN graph and the engine diffuses as
 * cbirsearch does by default */
static void
check_pipeline_equals_engine_full (const gchar * preset,
    const gchar * search_props, CbirMetric metric, guint shortlist, guint k,
    gboolean graph)
{
  gchar *model_path = make_model (dir, preset);
  gchar *gallery_path = graph ? make_graph_gallery (model_path, 48)
      : make_gallery (dir, model_path, 48, "g.safetensors");
  CbirModel *m = cbir_model_load (model_path, NULL);
  CbirGallery *g = cbir_gallery_open (gallery_path, NULL);
  GError *err = NULL;
  CbirSearcher *searcher = cbir_searcher_new (g, metric, shortlist, &err);
  CbirMatchScorer *scorer = cbir_match_scorer_new (g, metric, 0, NULL);

  fail_unless (scorer != NULL);
  if (graph)
    fail_unless (cbir_searcher_set_diffusion (searcher,
            cbir_gallery_get_graph (g), NULL, NULL));
  CbirDataset *ds = load_fixture ();
  guint dim = cbir_model_get_code_dim (m);
  gfloat *code = g_new (gfloat, dim);
  CbirHit *hits = g_new (CbirHit, k);
  GList *results = NULL, *l;
  gchar *desc;
  GstMessage *msg;
  guint i;

  fail_unless (searcher != NULL, "%s", err ? err->message : "?");
  desc = g_strdup_printf ("cbiridxsrc images=%s labels=%s ! "
      "cbirnoise kind=gaussian level=0.3 seed=5 ! cbirencode model=%s ! "
      "cbirsearch gallery=%s k=%u %s ! fakesink", FIX_IMAGES, FIX_LABELS,
      model_path, gallery_path, k, search_props);
  msg = run_pipeline (desc, "cbir-result", &results);
  fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  fail_unless_equals_int (g_list_length (results), FIX_N);

  for (i = 0, l = results; l; l = l->next, i++) {
    const GstStructure *s = gst_message_get_structure (l->data);
    guint8 img[784];
    guint64 frame, src_index;
    gint32 label;
    gfloat conf, score;
    gboolean match;
    guint n;

    memcpy (img, ds->images + i * 784, 784);
    /* cbirnoise's default gamma 0.5: the default model's input space */
    cbir_noise_apply_u8_gamma (CBIR_NOISE_GAUSSIAN, 0.3f, 0.5f, 5, i, img,
        28, 28, 28);
    fail_unless (cbir_model_encode_u8 (m, img, 1, code, NULL));
    n = cbir_searcher_search (searcher, code, k, hits);
    fail_unless_equals_int (n, k);
    engine_answer (g, searcher, scorer, code, n, &label, &conf, &score,
        &match);
    fail_unless (gst_structure_get_uint64 (s, "frame", &frame));
    fail_unless_equals_uint64 (frame, i);
    fail_unless (gst_structure_get_uint64 (s, "source-index", &src_index));
    fail_unless_equals_uint64 (src_index, i);
    check_result_structure (s, hits, n, label, conf, score, match);
  }
  g_list_free_full (results, (GDestroyNotify) gst_message_unref);
  g_free (desc);
  g_free (hits);
  g_free (code);
  cbir_dataset_free (ds);
  cbir_match_scorer_free (scorer);
  cbir_searcher_free (searcher);
  cbir_gallery_free (g);
  cbir_model_free (m);
  g_free (gallery_path);
  g_free (model_path);
}

static void
check_pipeline_equals_engine (const gchar * preset, const gchar * search_props,
    CbirMetric metric, guint shortlist, guint k)
{
  check_pipeline_equals_engine_full (preset, search_props, metric, shortlist,
      k, FALSE);
}

GST_START_TEST (test_diffusion_equals_engine)
{
  check_pipeline_equals_engine_full ("keras-dae", "", CBIR_METRIC_L2, 0, 8,
      TRUE);
}

GST_END_TEST;

/* rerank=none on a gallery with a graph: the plain order */
GST_START_TEST (test_rerank_none_on_graph_gallery)
{
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *gallery_path = make_graph_gallery (model_path, 48);
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s count=6 ! "
      "cbirencode model=%s ! cbirsearch gallery=%s k=6 rerank=none ! "
      "fakesink", FIX_IMAGES, model_path, gallery_path);
  GList *results = NULL, *l;
  GstMessage *msg = run_pipeline (desc, "cbir-result", &results);

  fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  fail_unless_equals_int (g_list_length (results), 6);
  for (l = results; l; l = l->next) {
    const GstStructure *s = gst_message_get_structure (l->data);
    const GValue *d = field (s, "distances");
    guint i;

    fail_unless_equals_string (gst_structure_get_string (s, "rerank"),
        "none");
    for (i = 1; i < gst_value_array_get_size (d); i++)
      fail_unless (g_value_get_float (gst_value_array_get_value (d, i - 1))
          <= g_value_get_float (gst_value_array_get_value (d, i)));
  }
  g_list_free_full (results, (GDestroyNotify) gst_message_unref);
  g_free (desc);
  g_free (gallery_path);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_rerank_errors)
{
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *plain = make_gallery (dir, model_path, 48, "nograph.safetensors");
  gchar *graph = make_graph_gallery (model_path, 48);
  gchar *desc;
  GstMessage *msg;

  /* diffusion asked, the gallery has no graph */
  desc = g_strdup_printf ("cbiridxsrc images=%s count=2 ! cbirencode "
      "model=%s ! cbirsearch gallery=%s rerank=diffusion ! fakesink",
      FIX_IMAGES, model_path, plain);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      plain, "k-NN graph");
  gst_message_unref (msg);
  g_free (desc);
  /* two re-rankings */
  desc = g_strdup_printf ("cbiridxsrc images=%s count=2 ! cbirencode "
      "model=%s ! cbirsearch gallery=%s rerank=diffusion query-expansion=5 ! "
      "fakesink", FIX_IMAGES, model_path, graph);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "query-expansion=5", "rerank=diffusion");
  gst_message_unref (msg);
  g_free (desc);
  /* query-expansion alone on a graph gallery: expansion, no error */
  desc = g_strdup_printf ("cbiridxsrc images=%s count=2 ! cbirencode "
      "model=%s ! cbirsearch gallery=%s query-expansion=5 ! fakesink",
      FIX_IMAGES, model_path, graph);
  {
    GList *results = NULL;

    msg = run_pipeline (desc, "cbir-result", &results);
    fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
    gst_message_unref (msg);
    fail_unless_equals_string (gst_structure_get_string
        (gst_message_get_structure (results->data), "rerank"),
        "query-expansion");
    g_list_free_full (results, (GDestroyNotify) gst_message_unref);
  }
  g_free (desc);
  g_free (graph);
  g_free (plain);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_l2_equals_engine)
{
  check_pipeline_equals_engine ("keras-dae", "", CBIR_METRIC_L2, 0, 5);
}

GST_END_TEST;

GST_START_TEST (test_cosine_shortlist_equals_engine)
{
  check_pipeline_equals_engine ("keras-dae", "metric=cosine shortlist=16",
      CBIR_METRIC_COSINE, 16, 3);
}

GST_END_TEST;

GST_START_TEST (test_bits_hamming_equals_engine)
{
  /* a bit model's gallery: auto metric = hamming */
  check_pipeline_equals_engine ("binary-xor", "", CBIR_METRIC_HAMMING, 0, 7);
}

GST_END_TEST;

GST_START_TEST (test_metas_and_message)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *gallery_path = make_gallery (dir, model_path, 64, "g.safetensors");
  gchar *desc = g_strdup_printf ("cbirencode model=%s ! cbirsearch "
      "gallery=%s k=4", model_path, gallery_path);
  GstHarness *h = gst_harness_new_parse (desc);
  CbirDataset *ds = load_fixture ();
  GstBus *bus = gst_bus_new ();
  gchar *caps = gray8_caps (28, 28);
  GstBuffer *in, *out;
  GstCbirResultMeta *rm;
  const GstStructure *cs, *ms;
  GstMessage *msg;
  GstSegment seg;
  guint64 ts, st, rt, dur, frame;
  guint i;

  gst_element_set_bus (h->element, bus);
  gst_harness_set_src_caps_str (h, caps);
  /* a segment starting at 1 s: running time = pts - 1 s */
  gst_segment_init (&seg, GST_FORMAT_TIME);
  seg.start = GST_SECOND;
  seg.time = 10 * GST_SECOND;
  fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));

  in = gray8_buffer (ds->images + 5 * 784, 28, 28, 0);
  GST_BUFFER_PTS (in) = 2 * GST_SECOND;
  GST_BUFFER_OFFSET (in) = GST_BUFFER_OFFSET_NONE;
  out = gst_harness_push_and_pull (h, in);

  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm != NULL);
  fail_unless_equals_int (rm->n_hits, 4);
  /* the image itself is in the gallery: nearest at distance 0 */
  fail_unless_equals_int (rm->hits[0].index, 5);
  fail_unless_equals_float (rm->hits[0].distance, 0.0f);
  fail_unless_equals_int (rm->hits[0].label, ds->labels[5]);
  fail_unless_equals_string (rm->metric, "hamming");
  for (i = 1; i < rm->n_hits; i++)
    fail_unless (rm->hits[i].distance >= rm->hits[i - 1].distance);

  cs = gst_buffer_get_cbir_result_structure (out);
  fail_unless (cs != NULL);
  /* the image itself is in the gallery: the best match score */
  fail_unless_equals_float (rm->match_score, 1.0f);
  check_result_structure (cs, (const CbirHit *) rm->hits, rm->n_hits,
      rm->label, rm->confidence, rm->match_score, TRUE);

  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT);
  fail_unless (msg != NULL);
  ms = gst_message_get_structure (msg);
  fail_unless (gst_structure_is_equal (ms, cs));
  fail_unless (gst_structure_get_uint64 (ms, "timestamp", &ts));
  fail_unless (gst_structure_get_uint64 (ms, "stream-time", &st));
  fail_unless (gst_structure_get_uint64 (ms, "running-time", &rt));
  fail_unless (gst_structure_get_uint64 (ms, "duration", &dur));
  fail_unless (gst_structure_get_uint64 (ms, "frame", &frame));
  fail_unless_equals_uint64 (ts, 2 * GST_SECOND);
  fail_unless_equals_uint64 (st, 11 * GST_SECOND);
  fail_unless_equals_uint64 (rt, GST_SECOND);
  fail_unless_equals_uint64 (dur, GST_SECOND / 30);
  /* no offset: the stream time (11 s) at the caps' 30 frames/s */
  fail_unless_equals_uint64 (frame, 330);
  fail_unless (GST_MESSAGE_SRC (msg) == GST_OBJECT (gst_harness_find_element
          (h, "cbirsearch")));
  gst_object_unref (GST_MESSAGE_SRC (msg));
  gst_message_unref (msg);
  gst_buffer_unref (out);

  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  cbir_dataset_free (ds);
  g_free (caps);
  g_free (desc);
  g_free (gallery_path);
  g_free (model_path);
}

GST_END_TEST;

/* regions=digits: each region searched as the engine would, the result on
 * its ROI ("cbir-result" param), one message per region with its id and
 * box, no whole-frame result */
#define RW 640
#define RH 200

static void
check_regions_search (const gchar * preset, const guint * idx, guint n)
{
  gchar *model_path = make_model (dir, preset);
  gchar *gallery_path = make_gallery (dir, model_path, 64, "g.safetensors");
  gchar *desc = g_strdup_printf ("cbirencode model=%s preprocess=mnist "
      "regions=digits ! cbirsearch gallery=%s k=4", model_path, gallery_path);
  GstHarness *h = gst_harness_new_parse (desc);
  CbirModel *m = cbir_model_load (model_path, NULL);
  CbirGallery *g = cbir_gallery_open (gallery_path, NULL);
  CbirMetric metric = cbir_model_get_code_type (m) == CBIR_CODE_BITS ?
      CBIR_METRIC_HAMMING : CBIR_METRIC_L2;
  CbirSearcher *searcher = cbir_searcher_new (g, metric, 0, NULL);
  CbirMatchScorer *scorer = cbir_match_scorer_new (g, metric, 0, NULL);
  CbirDataset *ds = load_fixture ();
  GstBus *bus = gst_bus_new ();
  gchar *caps = gray8_caps (RW, RH);
  guint dim = cbir_model_get_code_dim (m), j, ne;
  CbirRect truth[4], rects[8];
  gfloat *codes = g_new (gfloat, 8 * dim);
  guint8 *pix = digits_frame (ds, idx, n, 5, RW, RH, truth);
  GstVideoRegionOfInterestMeta *rois[8];
  CbirHit hits[4];
  GstBuffer *out;
  GstMessage *msg;

  fail_unless (searcher != NULL);
  gst_element_set_bus (h->element, bus);
  gst_harness_set_src_caps_str (h, caps);
  ne = engine_region_codes (m, pix, RW, RH, TRUE, 8, rects, codes);
  fail_unless_equals_int (ne, n);
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, RW, RH, 3));

  fail_unless_equals_int (digit_rois (out, rois, 8), n);
  fail_unless (gst_buffer_get_cbir_result_meta (out) == NULL);
  fail_unless (gst_buffer_get_cbir_result_structure (out) == NULL);
  for (j = 0; j < n; j++) {
    GstStructure *ps = gst_video_region_of_interest_meta_get_param (rois[j],
        "cbir-result");
    const GstStructure *ms;
    guint nh = cbir_searcher_search (searcher, codes + j * dim, 4, hits);
    gint32 label;
    gfloat conf, score;
    gboolean match;
    gint rid;
    guint x, y, w, hh, nr;
    guint64 frame;

    engine_answer (g, searcher, scorer, codes + j * dim, nh, &label, &conf,
        &score, &match);
    fail_unless (ps != NULL, "region %u: no cbir-result param", j);
    check_result_structure (ps, hits, nh, label, conf, score, match);
    fail_unless (gst_structure_get_int (ps, "region-id", &rid));
    fail_unless_equals_int (rid, rois[j]->id);
    fail_unless (!gst_structure_has_field (ps, "x"));

    /* the message of region j, in order */
    msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT);
    fail_unless (msg != NULL, "no message for region %u", j);
    ms = gst_message_get_structure (msg);
    check_result_structure (ms, hits, nh, label, conf, score, match);
    fail_unless (gst_structure_get_int (ms, "region-id", &rid));
    fail_unless_equals_int (rid, rois[j]->id);
    fail_unless (gst_structure_get (ms, "x", G_TYPE_UINT, &x, "y",
            G_TYPE_UINT, &y, "width", G_TYPE_UINT, &w, "height", G_TYPE_UINT,
            &hh, "n-regions", G_TYPE_UINT, &nr, "frame", G_TYPE_UINT64,
            &frame, NULL));
    fail_unless (x == rects[j].x && y == rects[j].y && w == rects[j].width &&
        hh == rects[j].height, "region %u: box in the message", j);
    fail_unless_equals_int (nr, n);
    fail_unless_equals_uint64 (frame, 3);
    gst_message_unref (msg);
  }
  /* nothing more */
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT);
  fail_unless (msg == NULL, "more messages than regions");
  gst_buffer_unref (out);

  /* a blank frame: no region, no result, no message */
  memset (pix, DIGITS_PAPER, RW * RH);
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, RW, RH, 4));
  fail_unless_equals_int (digit_rois (out, rois, 8), 0);
  fail_unless (gst_buffer_get_cbir_result_meta (out) == NULL);
  fail_unless (gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT) == NULL);
  gst_buffer_unref (out);

  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  cbir_dataset_free (ds);
  cbir_match_scorer_free (scorer);
  cbir_searcher_free (searcher);
  cbir_gallery_free (g);
  cbir_model_free (m);
  g_free (pix);
  g_free (codes);
  g_free (caps);
  g_free (desc);
  g_free (gallery_path);
  g_free (model_path);
}

GST_START_TEST (test_regions_equal_engine)
{
  const guint two[] = { 8, 9 }, three[] = { 10, 11, 12 };

  check_regions_search ("keras-dae", two, 2);
  check_regions_search ("keras-dae", three, 3);
  check_regions_search ("binary-xor", three, 3);
}

GST_END_TEST;

/* cbirencode (an untrained keras-dae) ! cbirsearch (search_props) on a
 * gallery of the first n fixture digits (rig_init) or one a test built
 * from the model (rig_load, then rig_start), fed 28x28 fixture frames */
typedef struct
{
  gchar *model_path, *gallery_path;
  GstHarness *h;
  CbirDataset *ds;
} Rig;

/* the model and the fixture */
static void
rig_load (Rig * r)
{
  r->model_path = make_model (dir, "keras-dae");
  r->ds = load_fixture ();
}

/* the harness on gallery_path (the rig's now) */
static void
rig_start (Rig * r, gchar * gallery_path, const gchar * search_props)
{
  gchar *desc, *caps = gray8_caps (28, 28);

  r->gallery_path = gallery_path;
  desc = g_strdup_printf ("cbirencode model=%s ! cbirsearch gallery=%s %s",
      r->model_path, r->gallery_path, search_props);
  r->h = gst_harness_new_parse (desc);
  gst_harness_set_src_caps_str (r->h, caps);
  g_free (desc);
  g_free (caps);
}

static void
rig_init (Rig * r, guint n, const gchar * search_props)
{
  rig_load (r);
  rig_start (r, make_gallery (dir, r->model_path, n, "g.safetensors"),
      search_props);
}

/* pushes fixture image i, returns the output buffer */
static GstBuffer *
rig_push (Rig * r, guint i)
{
  return gst_harness_push_and_pull (r->h, gray8_buffer (r->ds->images +
          (gsize) i * 784, 28, 28, i));
}

static void
rig_clear (Rig * r)
{
  gst_harness_teardown (r->h);
  cbir_dataset_free (r->ds);
  g_free (r->gallery_path);
  g_free (r->model_path);
}

GST_START_TEST (test_max_distance_and_no_messages)
{
  Rig r;
  GstBus *bus = gst_bus_new ();
  GstBuffer *out;
  GstCbirResultMeta *rm;
  const GstStructure *cs;
  gboolean match = TRUE;
  gint label = 0;

  rig_init (&r, 32, "max-distance=0 post-messages=false");
  gst_element_set_bus (r.h->element, bus);
  /* image 40 is not in the gallery: nothing within distance 0 */
  out = rig_push (&r, 40);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm != NULL);
  fail_unless_equals_int (rm->n_hits, 0);
  fail_unless_equals_int (rm->label, -1);
  fail_unless_equals_float (rm->confidence, 0.0f);
  cs = gst_buffer_get_cbir_result_structure (out);
  fail_unless (gst_structure_get_boolean (cs, "match", &match));
  fail_unless (gst_structure_get_int (cs, "label", &label));
  fail_unless (!match);
  fail_unless_equals_int (label, -1);
  gst_buffer_unref (out);
  fail_unless (gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT) == NULL);

  gst_element_set_bus (r.h->element, NULL);
  gst_object_unref (bus);
  rig_clear (&r);
}

GST_END_TEST;

/* The open-set decision: below min-match-score the answer is "no match"
 * (label -1, confidence 0, match FALSE) while the hits are still given;
 * at the score itself it matches; the property changes while playing. */
GST_START_TEST (test_min_match_score)
{
  Rig r;
  GstElement *search;
  gfloat min_score, s0 = -1;
  GstBuffer *out;
  GstCbirResultMeta *rm;
  gboolean match;
  guint i;

  rig_init (&r, 32, "k=3");
  search = gst_harness_find_element (r.h, "cbirsearch");
  /* the default, -1: the gallery's automatic threshold (this one holds
   * no examples of non-matches) */
  g_object_get (search, "min-match-score", &min_score, NULL);
  fail_unless_equals_float (min_score, -1.0f);
  g_object_get (search, "current-min-match-score", &min_score, NULL);
  fail_unless_equals_float (min_score, CBIR_MATCH_SCORE_DEFAULT_MIN);
  /* and it decides: a photographic negative of a digit is farther from
   * the gallery than its items are from each other (score 0), no match */
  {
    guint8 neg[784];
    for (i = 0; i < 784; i++)
      neg[i] = 255 - r.ds->images[40 * 784 + i];
    out = gst_harness_push_and_pull (r.h, gray8_buffer (neg, 28, 28, 0));
    rm = gst_buffer_get_cbir_result_meta (out);
    fail_unless (rm != NULL && rm->n_hits == 3);
    fail_unless (rm->match_score < CBIR_MATCH_SCORE_DEFAULT_MIN,
        "score %f", rm->match_score);
    fail_unless_equals_int (rm->label, -1);
    gst_buffer_unref (out);
    g_object_set (search, "min-match-score", 0.0f, NULL);
    out = gst_harness_push_and_pull (r.h, gray8_buffer (neg, 28, 28, 1));
    fail_unless (gst_buffer_get_cbir_result_meta (out)->label >= 0);
    gst_buffer_unref (out);
  }
  /* an image not in the gallery with a score strictly inside (0, 1) */
  for (i = 40; i < 64 && !(s0 > 0.02f && s0 < 0.98f); i++) {
    g_object_set (search, "min-match-score", 0.0f, NULL);
    out = rig_push (&r, i);
    rm = gst_buffer_get_cbir_result_meta (out);
    fail_unless (rm != NULL && rm->n_hits == 3 && rm->label >= 0);
    s0 = rm->match_score;
    gst_buffer_unref (out);
  }
  fail_unless (s0 > 0.02f && s0 < 0.98f, "no image scores inside (0, 1)");
  i--;

  /* just above its score: no match, the hits kept */
  g_object_set (search, "min-match-score", s0 + 0.01f, NULL);
  out = rig_push (&r, i);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless_equals_float (rm->match_score, s0);
  fail_unless_equals_int (rm->n_hits, 3);
  fail_unless_equals_int (rm->label, -1);
  fail_unless_equals_float (rm->confidence, 0.0f);
  fail_unless (gst_structure_get_boolean (gst_buffer_get_cbir_result_structure
          (out), "match", &match));
  fail_unless (!match);
  gst_buffer_unref (out);

  g_object_get (search, "current-min-match-score", &min_score, NULL);
  fail_unless_equals_float (min_score, s0 + 0.01f);

  /* at its score: a match */
  g_object_set (search, "min-match-score", s0, NULL);
  out = rig_push (&r, i);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm->label >= 0 && rm->confidence > 0);
  fail_unless (gst_structure_get_boolean (gst_buffer_get_cbir_result_structure
          (out), "match", &match));
  fail_unless (match);
  gst_buffer_unref (out);

  gst_object_unref (search);
  rig_clear (&r);
}

GST_END_TEST;

/* A gallery of one item (enrolment from nothing) has no yardstick for the
 * match score: it still starts and answers, every query scoring 1. */
GST_START_TEST (test_one_item_gallery)
{
  Rig r;
  GstBuffer *out;
  GstCbirResultMeta *rm;

  rig_init (&r, 1, "k=3");
  out = rig_push (&r, 9);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm != NULL);
  fail_unless_equals_int (rm->n_hits, 1);
  fail_unless_equals_float (rm->match_score, 1.0f);
  fail_unless_equals_int (rm->label, r.ds->labels[0]);
  gst_buffer_unref (out);
  rig_clear (&r);
}

GST_END_TEST;

/* Gallery items labelled CBIR_LABEL_NOT_A_MATCH are examples of what is
 * not a match: a query whose vote they win is no match (label -1), its
 * hits still given with their label. */
GST_START_TEST (test_not_a_match_examples)
{
  Rig r;
  CbirModel *m;
  guint dim, i;
  gfloat *codes;
  gchar *gallery_path = g_build_filename (dir, "neg.safetensors", NULL);
  CbirGalleryBuilder *b;
  GstBuffer *out;
  GstCbirResultMeta *rm;
  GstElement *search;
  gfloat min_score;

  rig_load (&r);
  m = cbir_model_load (r.model_path, NULL);
  codes = engine_encode_all (m, r.ds, &dim);
  b = cbir_gallery_builder_new (cbir_model_get_fingerprint (m),
      CBIR_CODE_FLOAT, dim, FALSE);
  /* items 0..31 digits, 32..63 examples of non-matches */
  for (i = 0; i < 64; i++)
    fail_unless (cbir_gallery_builder_add (b, codes + (gsize) i * dim,
            i < 32 ? r.ds->labels[i] : CBIR_LABEL_NOT_A_MATCH, NULL, NULL));
  fail_unless (cbir_gallery_builder_write (b, gallery_path, NULL));
  cbir_gallery_builder_free (b);
  rig_start (&r, gallery_path, "k=1");

  /* image 40 is itself a non-match example: no match */
  out = rig_push (&r, 40);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm != NULL);
  fail_unless_equals_int (rm->n_hits, 1);
  fail_unless_equals_int (rm->hits[0].index, 40);
  fail_unless_equals_int (rm->hits[0].label, CBIR_LABEL_NOT_A_MATCH);
  fail_unless_equals_int (rm->label, -1);
  fail_unless_equals_float (rm->confidence, 0.0f);
  gst_buffer_unref (out);
  /* image 7, a digit item: its label */
  out = rig_push (&r, 7);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless_equals_int (rm->label, r.ds->labels[7]);
  gst_buffer_unref (out);
  /* with examples of non-matches the automatic threshold is the lower one */
  search = gst_harness_find_element (r.h, "cbirsearch");
  g_object_get (search, "current-min-match-score", &min_score, NULL);
  fail_unless_equals_float (min_score,
      CBIR_MATCH_SCORE_DEFAULT_MIN_WITH_EXAMPLES);
  gst_object_unref (search);

  rig_clear (&r);
  cbir_model_free (m);
  g_free (codes);
}

GST_END_TEST;

/* A gallery made by hand around the code c of fixture image 7 (the
 * query): items c + a e_i + b e_j, each with a label of the test's. */
typedef struct
{
  Rig r;
  CbirModel *m;
  gfloat *codes, *v;
  const gfloat *c;
  guint dim;
  CbirGalleryBuilder *b;
} HandGallery;

static void
hand_gallery_begin (HandGallery * hg, guint min_dim)
{
  rig_load (&hg->r);
  hg->m = cbir_model_load (hg->r.model_path, NULL);
  hg->codes = engine_encode_all (hg->m, hg->r.ds, &hg->dim);
  fail_unless (hg->dim >= min_dim);
  hg->v = g_new (gfloat, hg->dim);
  hg->c = hg->codes + 7 * hg->dim;
  hg->b = cbir_gallery_builder_new (cbir_model_get_fingerprint (hg->m),
      CBIR_CODE_FLOAT, hg->dim, FALSE);
}

static void
hand_add (HandGallery * hg, gint32 label, guint i, gfloat a, guint j,
    gfloat b)
{
  memcpy (hg->v, hg->c, hg->dim * sizeof (gfloat));
  hg->v[i] += a;
  hg->v[j] += b;
  fail_unless (cbir_gallery_builder_add (hg->b, hg->v, label, NULL, NULL));
}

/* writes the gallery as dir/NAME, starts cbirsearch on it; returns it */
static GstElement *
hand_gallery_start (HandGallery * hg, const gchar * name,
    const gchar * search_props)
{
  gchar *path = g_build_filename (dir, name, NULL);

  fail_unless (cbir_gallery_builder_write (hg->b, path, NULL));
  g_clear_pointer (&hg->b, cbir_gallery_builder_free);
  rig_start (&hg->r, path, search_props);
  return gst_harness_find_element (hg->r.h, "cbirsearch");
}

static void
hand_gallery_clear (HandGallery * hg)
{
  rig_clear (&hg->r);
  cbir_model_free (hg->m);
  g_free (hg->v);
  g_free (hg->codes);
}

/* local-scaling: a tight cluster of six items (label 1, a hub) just
 * nearer the query than three items spread apart (label 2). The plain 5
 * nearest are the cluster's: 1. Less half their local scales (the cluster
 * items' mean distance to their 8 others about 1.05, the spread ones' 2.4
 * to 3.7) the three come first: 2, by 3 / 1.1025 against 2 / 1.0001 (and
 * by the local mean, label 2 judged by its three). Switched off while
 * playing, the plain distances again. */
GST_START_TEST (test_local_scaling_vote)
{
  HandGallery hg;
  guint i;
  GstBuffer *out;
  GstCbirResultMeta *rm;
  GstElement *search;
  gboolean scaling;

  hand_gallery_begin (&hg, 7);
  for (i = 0; i < 6; i++)       /* the cluster: c + e0 + 0.01 e(i+1) */
    hand_add (&hg, 1, 0, 1.0f, i + 1, 0.01f);
  /* c - 1.05 e0, c + 1.05 e1, c - 1.05 e1 */
  hand_add (&hg, 2, 0, -1.05f, 0, 0);
  hand_add (&hg, 2, 1, 1.05f, 1, 0);
  hand_add (&hg, 2, 1, -1.05f, 1, 0);
  search = hand_gallery_start (&hg, "hub.safetensors", "rerank=none");
  g_object_get (search, "local-scaling", &scaling, NULL);
  fail_unless (scaling, "local-scaling is on by default");

  out = rig_push (&hg.r, 7);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm != NULL);
  /* the hits stay the plain nearest: the cluster */
  fail_unless_equals_int (rm->n_hits, 5);
  for (i = 0; i < 5; i++)
    fail_unless_equals_int (rm->hits[i].label, 1);
  fail_unless (rm->match_score > 0.3f, "match-score %g", rm->match_score);
  fail_unless_equals_int (rm->label, 2);
  gst_buffer_unref (out);

  g_object_set (search, "local-scaling", FALSE, NULL);
  out = rig_push (&hg.r, 7);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless_equals_int (rm->label, 1);
  fail_unless_equals_float (rm->confidence, 1.0f);
  gst_buffer_unref (out);

  gst_object_unref (search);
  hand_gallery_clear (&hg);
}

GST_END_TEST;

/* vote=local-mean (the default) against vote=weighted, by hand without
 * local scaling (the keys are then the squared distances): label 1 has one
 * item at 0.01 from the query and four at 2.89, label 2 five at 0.49. The
 * k = 5 nearest (one 1, four 2s) weigh 100 against 4 / 0.49: 1; the means
 * of each label's five are (0.01 + 4 x 2.89) / 5 = 2.32 against 0.49: 2. */
GST_START_TEST (test_local_mean_vote)
{
  HandGallery hg;
  guint i;
  GstBuffer *out;
  GstCbirResultMeta *rm;
  GstElement *search;
  gint vote;

  hand_gallery_begin (&hg, 5);
  for (i = 0; i < 5; i++)       /* label 1: c + 0.1 e0, c + 1.7 e1..e4 */
    hand_add (&hg, 1, i, i == 0 ? 0.1f : 1.7f, i, 0);
  for (i = 0; i < 5; i++)       /* label 2: c - 0.7 e0..e4 */
    hand_add (&hg, 2, i, -0.7f, i, 0);
  search = hand_gallery_start (&hg, "means.safetensors", "rerank=none "
      "local-scaling=false min-match-score=0");
  g_object_get (search, "vote", &vote, NULL);
  fail_unless_equals_int (vote, 1);     /* local-mean */

  out = rig_push (&hg.r, 7);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm != NULL && rm->n_hits == 5);
  fail_unless_equals_int (rm->hits[0].label, 1);
  fail_unless_equals_int (rm->label, 2);
  /* confidence: label 2's weight share among the 5 nearest */
  fail_unless (fabsf (rm->confidence - (4 / 0.49f) / (4 / 0.49f +
              1 / 0.01f)) < 1e-3f, "confidence %g", rm->confidence);
  gst_buffer_unref (out);

  gst_util_set_object_arg (G_OBJECT (search), "vote", "weighted");
  out = rig_push (&hg.r, 7);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless_equals_int (rm->label, 1);
  gst_buffer_unref (out);

  gst_object_unref (search);
  hand_gallery_clear (&hg);
}

GST_END_TEST;

GST_START_TEST (test_no_embedding_warns_once)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *gallery_path = make_gallery (dir, model_path, 8, "g.safetensors");
  gchar *desc = g_strdup_printf ("cbirsearch gallery=%s", gallery_path);
  GstHarness *h = gst_harness_new_parse (desc);
  GstBus *bus = gst_bus_new ();
  guint8 pix[784] = { 0 };
  GstMessage *msg;
  guint i;

  gst_element_set_bus (h->element, bus);
  gst_harness_set_src_caps_str (h, "video/x-raw,format=GRAY8,width=28,"
      "height=28,framerate=30/1");
  for (i = 0; i < 3; i++) {
    GstBuffer *out = gst_harness_push_and_pull (h, gray8_buffer (pix, 28, 28,
            i));
    fail_unless (gst_buffer_get_cbir_result_meta (out) == NULL);
    gst_buffer_unref (out);
  }
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL);
  gst_message_unref (msg);
  fail_unless (gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING) == NULL);
  fail_unless (gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT) == NULL);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  g_free (desc);
  g_free (gallery_path);
  g_free (model_path);
}

GST_END_TEST;

/* A broken model's NaN/inf code matches nothing (no confident false match
 * at distance 0): no hits, label -1, match false, one warning, counted in
 * "invalid-codes"; a finite code of the same stream still matches. */
GST_START_TEST (test_non_finite_code_matches_nothing)
{
  gchar *good = make_model (dir, "keras-dae");
  gchar *broken = make_broken_model (dir);
  CbirModel *mb = cbir_model_load (broken, NULL);
  CbirModel *mg = cbir_model_load (good, NULL);
  CbirDataset *ds = load_fixture ();
  guint dim, i;
  gfloat *codes = engine_encode_all (mg, ds, &dim);
  gchar *gallery_path = g_build_filename (dir, "g.safetensors", NULL);
  CbirGalleryBuilder *b;
  gchar *desc, *caps = gray8_caps (28, 28);
  GstHarness *h;
  GstBus *bus = gst_bus_new ();
  GstElement *search;
  GstMessage *msg;
  guint8 blank[784] = { 0 };
  guint64 invalid = 0;

  /* finite codes under the broken model's fingerprint */
  b = cbir_gallery_builder_new (cbir_model_get_fingerprint (mb),
      CBIR_CODE_FLOAT, dim, FALSE);
  for (i = 0; i < 16; i++)
    fail_unless (cbir_gallery_builder_add (b, codes + (gsize) i * dim,
            ds->labels[i], NULL, NULL));
  fail_unless (cbir_gallery_builder_write (b, gallery_path, NULL));
  cbir_gallery_builder_free (b);

  /* (min-match-score=0: the blank frame's finite code is far from the
   * gallery, and this test is about searching it at all) */
  desc = g_strdup_printf ("cbirencode model=%s ! cbirsearch gallery=%s "
      "min-match-score=0", broken, gallery_path);
  h = gst_harness_new_parse (desc);
  gst_element_set_bus (h->element, bus);
  gst_harness_set_src_caps_str (h, caps);
  search = gst_harness_find_element (h, "cbirsearch");
  for (i = 0; i < 4; i++) {
    gboolean is_blank = i == 2;
    GstBuffer *out = gst_harness_push_and_pull (h, gray8_buffer (is_blank ?
            blank : ds->images + i * 784, 28, 28, i));
    GstCbirResultMeta *rm = gst_buffer_get_cbir_result_meta (out);
    const GstStructure *cs = gst_buffer_get_cbir_result_structure (out);
    gboolean match;

    fail_unless (rm != NULL && cs != NULL);
    fail_unless (gst_structure_get_boolean (cs, "match", &match));
    if (is_blank) {
      fail_unless (match && rm->n_hits > 0 && rm->label >= 0, "frame %u", i);
    } else {
      fail_unless (!match, "frame %u matched", i);
      fail_unless_equals_int (rm->n_hits, 0);
      fail_unless_equals_int (rm->label, -1);
      fail_unless_equals_float (rm->confidence, 0.0f);
    }
    gst_buffer_unref (out);
  }
  g_object_get (search, "invalid-codes", &invalid, NULL);
  fail_unless_equals_uint64 (invalid, 3);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL);
  {
    GError *err = NULL;
    gst_message_parse_warning (msg, &err, NULL);
    fail_unless (strstr (err->message, "NaN") != NULL, "%s", err->message);
    g_error_free (err);
  }
  gst_message_unref (msg);
  fail_unless (gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING) == NULL);

  gst_object_unref (search);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  g_free (codes);
  cbir_dataset_free (ds);
  cbir_model_free (mb);
  cbir_model_free (mg);
  g_free (caps);
  g_free (desc);
  g_free (gallery_path);
  g_free (broken);
  g_free (good);
}

GST_END_TEST;

/* The warning for a frame without a code says what it looks like: a
 * stream that had codes has cbirencode, and this frame had no digit. */
GST_START_TEST (test_no_digit_warning_names_the_cause)
{
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *gallery_path = make_gallery (dir, model_path, 8, "g.safetensors");
  gchar *desc = g_strdup_printf ("cbirencode model=%s preprocess=mnist ! "
      "cbirsearch gallery=%s", model_path, gallery_path);
  GstHarness *h = gst_harness_new_parse (desc);
  GstBus *bus = gst_bus_new ();
  CbirDataset *ds = load_fixture ();
  guint8 blank[784] = { 0 };
  GstBuffer *out;
  GstMessage *msg;
  GError *err = NULL;

  gst_element_set_bus (h->element, bus);
  gst_harness_set_src_caps_str (h, "video/x-raw,format=GRAY8,width=28,"
      "height=28,framerate=30/1");
  out = gst_harness_push_and_pull (h, gray8_buffer (ds->images, 28, 28, 0));
  fail_unless (gst_buffer_get_cbir_result_meta (out) != NULL);
  gst_buffer_unref (out);
  out = gst_harness_push_and_pull (h, gray8_buffer (blank, 28, 28, 1));
  fail_unless (gst_buffer_get_cbir_result_meta (out) == NULL);
  gst_buffer_unref (out);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL);
  gst_message_parse_warning (msg, &err, NULL);
  fail_unless (strstr (err->message, "no digit") != NULL, "%s",
      err->message);
  fail_unless (strstr (err->message, "upstream") == NULL, "%s",
      err->message);
  g_error_free (err);
  gst_message_unref (msg);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  cbir_dataset_free (ds);
  g_free (desc);
  g_free (gallery_path);
  g_free (model_path);
}

GST_END_TEST;

static guint
count_metas (GstBuffer * buf, GType api)
{
  gpointer state = NULL;
  guint n = 0;

  while (gst_buffer_iterate_meta_filtered (buf, &state, api))
    n++;
  return n;
}

/* Two cbirsearch in a row: the last search's result is the one the C
 * getter, the custom meta (Python) and the ROIs carry, once each. */
GST_START_TEST (test_two_searches_last_wins)
{
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *gallery_path = make_gallery (dir, model_path, 64, "g.safetensors");
  CbirDataset *ds = load_fixture ();
  guint idx[3] = { 3, 8, 21 };
  CbirRect truth[4];
  guint i;

  for (i = 0; i < 2; i++) {
    gboolean regions = i == 1;
    gchar *desc = g_strdup_printf ("cbirencode model=%s preprocess=mnist%s "
        "! cbirsearch gallery=%s k=1 ! cbirsearch gallery=%s k=3", model_path,
        regions ? " regions=digits" : "", gallery_path, gallery_path);
    GstHarness *h = gst_harness_new_parse (desc);
    gchar *caps = regions ? gray8_caps (RW, RH) : gray8_caps (28, 28);
    guint8 *pix = regions ? digits_frame (ds, idx, 3, 5, RW, RH, truth) :
        g_memdup2 (ds->images + 5 * 784, 784);
    GstBuffer *out;

    gst_harness_set_src_caps_str (h, caps);
    out = gst_harness_push_and_pull (h, regions ? gray8_buffer (pix, RW, RH,
            0) : gray8_buffer (pix, 28, 28, 0));
    if (!regions) {
      GstCbirResultMeta *rm = gst_buffer_get_cbir_result_meta (out);
      const GstStructure *s = gst_buffer_get_cbir_result_structure (out);
      fail_unless_equals_int (count_metas (out,
              g_type_from_name (GST_CBIR_RESULT_META_API_NAME)), 1);
      fail_unless (rm != NULL && s != NULL);
      fail_unless_equals_int (rm->n_hits, 3);
      fail_unless_equals_int (gst_value_array_get_size
          (gst_structure_get_value (s, "ids")), 3);
    } else {
      GstVideoRegionOfInterestMeta *rois[8];
      guint n = digit_rois (out, rois, 8), r;
      fail_unless_equals_int (n, 3);
      for (r = 0; r < n; r++) {
        GList *l;
        guint params = 0;
        for (l = rois[r]->params; l; l = l->next)
          params += gst_structure_has_name (l->data, "cbir-result");
        fail_unless_equals_int (params, 1);
        fail_unless_equals_int (gst_value_array_get_size
            (gst_structure_get_value (gst_video_region_of_interest_meta_get_param
                    (rois[r], "cbir-result"), "ids")), 3);
      }
    }
    gst_buffer_unref (out);
    gst_harness_teardown (h);
    g_free (pix);
    g_free (caps);
    g_free (desc);
  }
  cbir_dataset_free (ds);
  g_free (gallery_path);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_model_gallery_mismatch)
{
  gchar *model_a = make_model (dir, "binary-xor");
  gchar *model_b = make_model (dir, "keras-dae");
  gchar *gallery_path = make_gallery (dir, model_a, 8, "g.safetensors");
  CbirModel *ma = cbir_model_load (model_a, NULL);
  CbirModel *mb = cbir_model_load (model_b, NULL);
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s count=4 ! "
      "cbirencode model=%s ! cbirsearch gallery=%s ! fakesink", FIX_IMAGES,
      model_b, gallery_path);
  GstMessage *msg = run_pipeline (desc, NULL, NULL);

  assert_error_mentions (msg, GST_STREAM_ERROR, GST_STREAM_ERROR_WRONG_TYPE,
      cbir_model_get_fingerprint (ma), cbir_model_get_fingerprint (mb));
  gst_message_unref (msg);
  cbir_model_free (ma);
  cbir_model_free (mb);
  g_free (desc);
  g_free (gallery_path);
  g_free (model_a);
  g_free (model_b);
}

GST_END_TEST;

/* The mismatch is found when cbirsearch starts (it asks upstream which
 * model encodes, across queue and videoconvert): the state change itself
 * fails and no frame reaches the sink. */
GST_START_TEST (test_model_gallery_mismatch_at_start)
{
  gchar *model_a = make_model (dir, "binary-xor");
  gchar *model_b = make_model (dir, "keras-dae");
  gchar *gallery_path = make_gallery (dir, model_a, 8, "g.safetensors");
  const gchar *between[] = { "", "queue ! videoconvert ! " };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (between); i++) {
    gchar *desc = g_strdup_printf ("cbiridxsrc images=%s loop=true ! "
        "cbirencode model=%s ! %scbirsearch gallery=%s ! fakesink name=sink "
        "signal-handoffs=true", FIX_IMAGES, model_b, between[i],
        gallery_path);
    GstElement *p = gst_parse_launch (desc, NULL);
    GstBus *bus = gst_element_get_bus (p);
    GstMessage *msg;
    GError *err = NULL;

    fail_unless (p != NULL);
    fail_unless_equals_int (gst_element_set_state (p, GST_STATE_PLAYING),
        GST_STATE_CHANGE_FAILURE);
    msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    fail_unless (msg != NULL, "no error posted");
    gst_message_parse_error (msg, &err, NULL);
    fail_unless (strstr (err->message, "another model") != NULL, "%s",
        err->message);
    g_error_free (err);
    gst_message_unref (msg);
    gst_element_set_state (p, GST_STATE_NULL);
    gst_object_unref (bus);
    gst_object_unref (p);
    g_free (desc);
  }
  /* the right model still plays */
  {
    gchar *desc = g_strdup_printf ("cbiridxsrc images=%s count=3 ! "
        "cbirencode model=%s ! queue ! cbirsearch gallery=%s ! fakesink",
        FIX_IMAGES, model_a, gallery_path);
    GstMessage *msg = run_pipeline (desc, NULL, NULL);
    fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
    gst_message_unref (msg);
    g_free (desc);
  }
  g_free (gallery_path);
  g_free (model_a);
  g_free (model_b);
}

GST_END_TEST;

GST_START_TEST (test_gallery_errors)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *bad = g_build_filename (dir, "corrupt-gallery.safetensors", NULL);
  gchar *desc;
  GstMessage *msg;

  desc = g_strdup_printf ("cbiridxsrc images=%s count=2 ! cbirencode "
      "model=%s ! cbirsearch gallery=/nonexistent/g.safetensors ! fakesink",
      FIX_IMAGES, model_path);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "/nonexistent/g.safetensors", NULL);
  gst_message_unref (msg);
  g_free (desc);

  write_file (bad, "\xff\xff\xff\xff\x00\x00\x00\x00 truncated", -1);
  desc = g_strdup_printf ("cbiridxsrc images=%s count=2 ! cbirencode "
      "model=%s ! cbirsearch gallery=%s ! fakesink", FIX_IMAGES, model_path,
      bad);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_OPEN_READ, bad, NULL);
  gst_message_unref (msg);
  g_free (desc);

  /* a model file is not a gallery */
  desc = g_strdup_printf ("cbiridxsrc images=%s count=2 ! cbirencode "
      "model=%s ! cbirsearch gallery=%s ! fakesink", FIX_IMAGES, model_path,
      model_path);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_OPEN_READ, model_path, NULL);
  gst_message_unref (msg);
  g_free (desc);

  msg = run_pipeline ("videotestsrc num-buffers=1 ! cbirsearch ! fakesink",
      NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "gallery", NULL);
  gst_message_unref (msg);
  g_free (bad);
  g_free (model_path);
}

GST_END_TEST;

/* the first hit of image i and the result structure's first item id */
static guint
first_hit (Rig * r, guint i, gint * label, gchar ** item_id)
{
  GstBuffer *out = rig_push (r, i);
  GstCbirResultMeta *rm = gst_buffer_get_cbir_result_meta (out);
  const GstStructure *cs = gst_buffer_get_cbir_result_structure (out);
  const GValue *ids = gst_structure_get_value (cs, "item-ids");
  guint idx;

  fail_unless (rm != NULL && rm->n_hits > 0);
  idx = rm->hits[0].index;
  *label = rm->label;
  if (item_id)
    *item_id = ids ? g_value_dup_string (gst_value_array_get_value (ids, 0))
        : NULL;
  gst_buffer_unref (out);
  return idx;
}

static gboolean
enrolment_ok (GstBus * bus, const gchar * op)
{
  GstMessage *m;
  gboolean ok = FALSE;

  while ((m = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT))) {
    const GstStructure *s = gst_message_get_structure (m);
    if (gst_structure_has_name (s, "cbir-enrolment")) {
      fail_unless_equals_string (gst_structure_get_string (s, "op"), op);
      gst_structure_get_boolean (s, "ok", &ok);
      gst_message_unref (m);
      return ok;
    }
    gst_message_unref (m);
  }
  fail ("no cbir-enrolment message for %s", op);
  return FALSE;
}

/* Enrolment: the last frame's code joins the gallery with a label, the
 * next frame finds it first (its id in "item-ids"); relabel and remove
 * change it; a gallery item is removed by "#INDEX"; it all comes back from
 * the journal when the element starts again; the custom event does the
 * same downstream and upstream; what cannot be done says why. */
GST_START_TEST (test_enrolment)
{
  Rig r;
  GstElement *search;
  GstBus *bus = gst_bus_new ();
  gchar *journal, *item = NULL;
  gboolean ok = FALSE;
  gint label;
  guint enrolled = 0;

  rig_init (&r, 32, "k=3");
  search = gst_harness_find_element (r.h, "cbirsearch");
  gst_element_set_bus (search, bus);
  journal = g_strconcat (r.gallery_path, ".journal", NULL);
  /* image 40 is not in the gallery of the first 32 */
  fail_unless (first_hit (&r, 40, &label, NULL) < 32);
  g_signal_emit_by_name (search, "enrol", "forty", 77, -1, &ok);
  fail_unless (ok);
  fail_unless (enrolment_ok (bus, "enrol"));
  fail_unless (g_file_test (journal, G_FILE_TEST_EXISTS));
  fail_unless_equals_int (first_hit (&r, 40, &label, &item), 32);
  fail_unless_equals_int (label, 77);
  fail_unless_equals_string (item, "forty");
  g_free (item);
  g_signal_emit_by_name (search, "relabel", "forty", 78, &ok);
  fail_unless (ok && enrolment_ok (bus, "relabel"));
  fail_unless_equals_int (first_hit (&r, 40, &label, NULL), 32);
  fail_unless_equals_int (label, 78);
  /* a gallery item: itself first, then gone */
  fail_unless_equals_int (first_hit (&r, 5, &label, NULL), 5);
  g_signal_emit_by_name (search, "remove", "#5", &ok);
  fail_unless (ok && enrolment_ok (bus, "remove"));
  fail_unless (first_hit (&r, 5, &label, NULL) != 5);
  /* no such region, no such item: FALSE, and the message says so */
  g_signal_emit_by_name (search, "enrol", "x", 1, 7, &ok);
  fail_unless (!ok && !enrolment_ok (bus, "enrol"));
  g_signal_emit_by_name (search, "remove", "nobody", &ok);
  fail_unless (!ok && !enrolment_ok (bus, "remove"));
  gst_element_set_bus (search, NULL);
  gst_object_unref (search);
  gst_harness_teardown (r.h);

  /* started again: replayed from the journal */
  {
    gchar *desc = g_strdup_printf ("cbirencode model=%s ! cbirsearch "
        "gallery=%s k=3", r.model_path, r.gallery_path);
    gchar *caps = gray8_caps (28, 28);

    r.h = gst_harness_new_parse (desc);
    gst_harness_set_src_caps_str (r.h, caps);
    g_free (desc);
    g_free (caps);
  }
  search = gst_harness_find_element (r.h, "cbirsearch");
  gst_element_set_bus (search, bus);
  g_object_get (search, "enrolled", &enrolled, NULL);
  fail_unless_equals_int (enrolled, 1);
  fail_unless_equals_int (first_hit (&r, 40, &label, NULL), 32);
  fail_unless_equals_int (label, 78);
  fail_unless (first_hit (&r, 5, &label, NULL) != 5);
  /* the custom event, downstream (in order with the frames) */
  fail_unless (gst_harness_push_event (r.h, gst_event_new_custom
          (GST_EVENT_CUSTOM_DOWNSTREAM, gst_structure_new ("cbir-enrol",
                  "op", G_TYPE_STRING, "remove", "id", G_TYPE_STRING,
                  "forty", NULL))));
  fail_unless (enrolment_ok (bus, "remove"));
  fail_unless (first_hit (&r, 40, &label, NULL) < 32);
  /* and upstream, as an application sends it: enrols the frame before */
  fail_unless (gst_harness_push_upstream_event (r.h, gst_event_new_custom
          (GST_EVENT_CUSTOM_UPSTREAM, gst_structure_new ("cbir-enrol",
                  "op", G_TYPE_STRING, "enrol", "id", G_TYPE_STRING,
                  "again", "label", G_TYPE_INT, 5, NULL))));
  fail_unless (enrolment_ok (bus, "enrol"));
  fail_unless_equals_int (first_hit (&r, 40, &label, NULL), 33);
  fail_unless_equals_int (label, 5);

  gst_element_set_bus (search, NULL);
  gst_object_unref (search);
  gst_object_unref (bus);
  rig_clear (&r);
  g_remove (journal);
  g_free (journal);
}

GST_END_TEST;

/* A corrupt journal is an error naming it when the element starts; a
 * gallery of bit codes cannot enrol, and says so. */
/* On a gallery with a graph (diffusion), the plain hits that vote see the
 * enrolments too: an enrolled item, a relabelled and a removed gallery
 * item change the label as they change the hits. */
GST_START_TEST (test_enrolment_votes_after_diffusion)
{
  Rig r;
  GstElement *search;
  GstBus *bus = gst_bus_new ();
  gboolean ok = FALSE;
  gint label;
  gchar *desc, *caps = gray8_caps (28, 28);
  GstBuffer *out;
  GstCbirResultMeta *rm;

  r.model_path = make_model (dir, "keras-dae");
  r.gallery_path = make_graph_gallery (r.model_path, 32);
  r.ds = load_fixture ();
  desc = g_strdup_printf ("cbirencode model=%s ! cbirsearch gallery=%s k=1 "
      "min-match-score=0", r.model_path, r.gallery_path);
  r.h = gst_harness_new_parse (desc);
  gst_harness_set_src_caps_str (r.h, caps);
  search = gst_harness_find_element (r.h, "cbirsearch");
  gst_element_set_bus (search, bus);

  /* image 40, enrolled: its own label */
  gst_buffer_unref (rig_push (&r, 40));
  g_signal_emit_by_name (search, "enrol", "forty", 77, -1, &ok);
  fail_unless (ok && enrolment_ok (bus, "enrol"));
  fail_unless_equals_int (first_hit (&r, 40, &label, NULL), 32);
  fail_unless_equals_int (label, 77);
  /* gallery item 5 relabelled, then removed */
  g_signal_emit_by_name (search, "relabel", "#5", 99, &ok);
  fail_unless (ok && enrolment_ok (bus, "relabel"));
  fail_unless_equals_int (first_hit (&r, 5, &label, NULL), 5);
  fail_unless_equals_int (label, 99);
  g_signal_emit_by_name (search, "remove", "#5", &ok);
  fail_unless (ok && enrolment_ok (bus, "remove"));
  out = rig_push (&r, 5);
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm != NULL && rm->n_hits == 1);
  fail_unless (rm->hits[0].index != 5);
  fail_unless (g_strcmp0 (gst_structure_get_string
          (gst_buffer_get_cbir_result_structure (out), "rerank"),
          "diffusion") == 0);
  /* k 1: the vote (local-mean of one) is the first of the plain nearest
   * remaining items (after a removal not always the diffused first hit)
   * once re-ranked by local scaling (the default), from the engine; the
   * 31 are the whole gallery but the removed item */
  {
    CbirModel *m = cbir_model_load (r.model_path, NULL);
    CbirGallery *g = cbir_gallery_open (r.gallery_path, NULL);
    CbirSearcher *plain = cbir_searcher_new (g, CBIR_METRIC_L2, 0, NULL);
    gfloat *code = g_new (gfloat, cbir_model_get_code_dim (m));
    CbirHit h[CBIR_LOCAL_SCALE_CANDIDATES + 1];
    guint nh, i, j;

    fail_unless (cbir_model_encode_u8 (m, r.ds->images + 5 * 784, 1, code,
            NULL));
    nh = cbir_searcher_search_plain (plain, code, G_N_ELEMENTS (h), h);
    fail_unless_equals_int (nh, G_N_ELEMENTS (h));
    fail_unless_equals_int (h[0].index, 5);
    /* item 5 removed: the 30 others are the candidates */
    for (i = 0, j = 0; i < nh; i++)
      if (h[i].index != 5)
        h[j++] = h[i];
    nh = j;
    {
      CbirMatchScorer *sc = cbir_match_scorer_new (g, CBIR_METRIC_L2, 0,
          NULL);
      gdouble score;
      gfloat nearest = h[0].distance;

      fail_unless_equals_int (cbir_match_scorer_scale_hits (sc, h, nh, 1,
              NULL), 1);
      fail_unless_equals_int (rm->label, h[0].label);
      /* and the match score is that of the nearest remaining item */

      fail_unless (gst_structure_get_double
          (gst_buffer_get_cbir_result_structure (out), "match-score",
              &score));
      fail_unless_equals_float ((gfloat) score,
          cbir_match_scorer_score (sc, nearest));
      cbir_match_scorer_free (sc);
    }
    g_free (code);
    cbir_searcher_free (plain);
    cbir_gallery_free (g);
    cbir_model_free (m);
  }
  gst_buffer_unref (out);

  gst_element_set_bus (search, NULL);
  gst_object_unref (search);
  gst_object_unref (bus);
  rig_clear (&r);
  g_free (desc);
  g_free (caps);
}

GST_END_TEST;

GST_START_TEST (test_enrolment_errors)
{
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *gallery = make_gallery (dir, model_path, 8, "e.safetensors");
  gchar *journal = g_strconcat (gallery, ".journal", NULL);
  gchar *desc;
  GstMessage *msg;

  write_file (journal, "not a journal, and long enough to have a header of "
      "eighty-four bytes, which it does not", -1);
  desc = g_strdup_printf ("cbiridxsrc images=%s count=2 ! cbirencode "
      "model=%s ! cbirsearch gallery=%s ! fakesink", FIX_IMAGES, model_path,
      gallery);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_OPEN_READ, journal, "not a gst-cbir journal");
  gst_message_unref (msg);
  g_remove (journal);
  g_free (desc);
  g_free (journal);
  g_free (gallery);
  g_free (model_path);

  {
    gchar *bits_model = make_model (dir, "binary-xor");
    gchar *bits = make_gallery (dir, bits_model, 8, "b.safetensors");
    gchar *d = g_strdup_printf ("cbirencode model=%s ! cbirsearch "
        "gallery=%s", bits_model, bits);
    GstHarness *h = gst_harness_new_parse (d);
    GstElement *search = gst_harness_find_element (h, "cbirsearch");
    GstBus *bus = gst_bus_new ();
    CbirDataset *ds = load_fixture ();
    gchar *caps = gray8_caps (28, 28);
    gboolean ok = TRUE;

    gst_element_set_bus (search, bus);
    gst_harness_set_src_caps_str (h, caps);
    gst_buffer_unref (gst_harness_push_and_pull (h, gray8_buffer (ds->images,
                28, 28, 0)));
    g_signal_emit_by_name (search, "enrol", "x", 1, -1, &ok);
    fail_unless (!ok);
    msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
    fail_unless (msg != NULL);
    {
      GError *err = NULL;
      gst_message_parse_warning (msg, &err, NULL);
      fail_unless (strstr (err->message, "float codes"), "%s", err->message);
      g_error_free (err);
    }
    gst_message_unref (msg);
    gst_element_set_bus (search, NULL);
    gst_object_unref (bus);
    gst_object_unref (search);
    gst_harness_teardown (h);
    cbir_dataset_free (ds);
    g_free (caps);
    g_free (d);
    g_free (bits);
    g_free (bits_model);
  }
}

GST_END_TEST;

/* Two cbirsearch of one process on one gallery share one copy: an item
 * enrolled through one is found by the other's next frame; another
 * journal is another copy. */
GST_START_TEST (test_shared_gallery)
{
  Rig r;
  GstHarness *h2, *h3;
  GstElement *s1, *s2, *s3;
  gchar *desc, *caps = gray8_caps (28, 28), *other;
  GstBuffer *out;
  GstCbirResultMeta *rm;
  gboolean ok = FALSE;
  guint users = 0;
  gint label;

  rig_init (&r, 32, "k=3");
  desc = g_strdup_printf ("cbirencode model=%s ! cbirsearch gallery=%s k=3",
      r.model_path, r.gallery_path);
  h2 = gst_harness_new_parse (desc);
  gst_harness_set_src_caps_str (h2, caps);
  other = g_build_filename (dir, "other.journal", NULL);
  g_free (desc);
  desc = g_strdup_printf ("cbirencode model=%s ! cbirsearch gallery=%s k=3 "
      "journal=%s", r.model_path, r.gallery_path, other);
  h3 = gst_harness_new_parse (desc);
  gst_harness_set_src_caps_str (h3, caps);
  s1 = gst_harness_find_element (r.h, "cbirsearch");
  s2 = gst_harness_find_element (h2, "cbirsearch");
  s3 = gst_harness_find_element (h3, "cbirsearch");
  g_object_get (s1, "shared-by", &users, NULL);
  fail_unless_equals_int (users, 2);
  g_object_get (s3, "shared-by", &users, NULL);
  fail_unless_equals_int (users, 1);

  /* enrolled through the first, found by the second */
  first_hit (&r, 40, &label, NULL);
  g_signal_emit_by_name (s1, "enrol", "forty", 66, -1, &ok);
  fail_unless (ok);
  out = gst_harness_push_and_pull (h2, gray8_buffer (r.ds->images + 40 * 784,
          28, 28, 0));
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless_equals_int (rm->hits[0].index, 32);
  fail_unless_equals_int (rm->label, 66);
  gst_buffer_unref (out);
  /* not by the one with its own journal */
  out = gst_harness_push_and_pull (h3, gray8_buffer (r.ds->images + 40 * 784,
          28, 28, 0));
  rm = gst_buffer_get_cbir_result_meta (out);
  fail_unless (rm->hits[0].index < 32);
  gst_buffer_unref (out);

  gst_object_unref (s1);
  gst_harness_teardown (r.h);
  r.h = NULL;
  g_object_get (s2, "shared-by", &users, NULL);
  fail_unless_equals_int (users, 1);
  gst_object_unref (s2);
  gst_object_unref (s3);
  gst_harness_teardown (h2);
  gst_harness_teardown (h3);
  r.h = gst_harness_new_parse ("identity");     /* for rig_clear */
  rig_clear (&r);
  g_free (desc);
  g_free (caps);
  g_free (other);
}

GST_END_TEST;

static Suite *
cbirsearch_suite (void)
{
  Suite *s = suite_create ("cbirsearch");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_l2_equals_engine);
  tcase_add_test (tc, test_diffusion_equals_engine);
  tcase_add_test (tc, test_rerank_none_on_graph_gallery);
  tcase_add_test (tc, test_rerank_errors);
  tcase_add_test (tc, test_cosine_shortlist_equals_engine);
  tcase_add_test (tc, test_bits_hamming_equals_engine);
  tcase_add_test (tc, test_metas_and_message);
  tcase_add_test (tc, test_regions_equal_engine);
  tcase_add_test (tc, test_max_distance_and_no_messages);
  tcase_add_test (tc, test_min_match_score);
  tcase_add_test (tc, test_not_a_match_examples);
  tcase_add_test (tc, test_local_scaling_vote);
  tcase_add_test (tc, test_local_mean_vote);
  tcase_add_test (tc, test_one_item_gallery);
  tcase_add_test (tc, test_enrolment);
  tcase_add_test (tc, test_enrolment_votes_after_diffusion);
  tcase_add_test (tc, test_enrolment_errors);
  tcase_add_test (tc, test_shared_gallery);
  tcase_add_test (tc, test_no_embedding_warns_once);
  tcase_add_test (tc, test_no_digit_warning_names_the_cause);
  tcase_add_test (tc, test_two_searches_last_wins);
  tcase_add_test (tc, test_model_gallery_mismatch);
  tcase_add_test (tc, test_model_gallery_mismatch_at_start);
  tcase_add_test (tc, test_non_finite_code_matches_nothing);
  tcase_add_test (tc, test_gallery_errors);
  return s;
}

GST_CHECK_MAIN (cbirsearch);

/* The metas survive queue, tee, videoconvert and videoscale, each on its
 * own and chained; read through the public header's getters.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"

typedef struct
{
  guint n;
  guint n_complete;
  guint64 last_index;
  gint last_label;
} Seen;

static void
on_handoff (GstElement * sink, GstBuffer * buf, GstPad * pad, Seen * seen)
{
  GstCbirSourceMeta *src = gst_buffer_get_cbir_source_meta (buf);
  GstCbirEmbeddingMeta *emb = gst_buffer_get_cbir_embedding_meta (buf);
  GstCbirResultMeta *res = gst_buffer_get_cbir_result_meta (buf);
  const GstStructure *s = gst_buffer_get_cbir_result_structure (buf);

  seen->n++;
  if (src && emb && res && s && emb->dim > 0 && emb->vector &&
      emb->model_fingerprint && res->n_hits == 3 && src->index == seen->n - 1) {
    guint64 si = G_MAXUINT64;
    gint label = -2;

    /* the structure copy says the same as the typed meta */
    if (gst_structure_get_uint64 (s, "source-index", &si) &&
        gst_structure_get_int (s, "label", &label) && si == src->index &&
        label == res->label)
      seen->n_complete++;
  }
}

static void
check_survives (const gchar * model_path, const gchar * gallery_path,
    const gchar * chain)
{
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s labels=%s count=12 ! "
      "cbirencode model=%s ! cbirsearch gallery=%s k=3 post-messages=false ! "
      "%s ! fakesink name=sink signal-handoffs=true", FIX_IMAGES, FIX_LABELS,
      model_path, gallery_path, chain);
  GstElement *p = gst_parse_launch (desc, NULL);
  GstElement *sink;
  GstBus *bus;
  GstMessage *msg;
  Seen seen = { 0, };

  fail_unless (p != NULL, "%s", desc);
  sink = gst_bin_get_by_name (GST_BIN (p), "sink");
  g_signal_connect (sink, "handoff", G_CALLBACK (on_handoff), &seen);
  bus = gst_element_get_bus (p);
  gst_element_set_state (p, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (msg != NULL && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS,
      "%s did not reach EOS", chain);
  gst_message_unref (msg);
  gst_element_set_state (p, GST_STATE_NULL);
  fail_unless_equals_int (seen.n, 12);
  fail_unless (seen.n_complete == 12, "after %s: %u of 12 frames kept all "
      "metas", chain, seen.n_complete);
  gst_object_unref (bus);
  gst_object_unref (sink);
  gst_object_unref (p);
  g_free (desc);
}

GST_START_TEST (test_metas_survive)
{
  gchar *dir = tmpdir_new ();
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *gallery_path = make_gallery (dir, model_path, 64, "g.safetensors");
  const gchar *chains[] = {
    "identity",
    "queue",
    "tee name=t t. ! queue",
    "videoconvert ! video/x-raw,format=RGB",
    "videoscale ! video/x-raw,width=56,height=40",
    "queue ! tee name=t t. ! queue ! videoconvert ! video/x-raw,format=I420 "
        "! videoscale ! video/x-raw,width=100,height=100 ! videoconvert ! "
        "video/x-raw,format=GRAY8",
  };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (chains); i++)
    check_survives (model_path, gallery_path, chains[i]);
  g_free (gallery_path);
  g_free (model_path);
  tmpdir_free (dir);
}

GST_END_TEST;

/* Per-region results (regions=digits) survive queue, tee, videoconvert and
 * videoscale: videoscale scales each ROI's box; its id, its "cbir-result"
 * param and the region's embedding stay. */
#define RW 640
#define RH 200

static void
check_regions_survive (const gchar * model_path, const gchar * gallery_path,
    const guint8 * pix, const gchar * chain, guint out_w, guint out_h)
{
  gchar *desc = g_strdup_printf ("cbirencode model=%s preprocess=mnist "
      "regions=digits ! cbirsearch gallery=%s k=3 post-messages=false ! %s",
      model_path, gallery_path, chain);
  GstHarness *h = gst_harness_new_parse (desc);
  gchar *caps = gray8_caps (RW, RH);
  GstBuffer *ref, *out;
  GstVideoRegionOfInterestMeta *a[8], *b[8];
  guint n, j;

  gst_harness_set_src_caps_str (h, caps);
  /* the reference: straight out of cbirsearch */
  {
    gchar *d2 = g_strdup_printf ("cbirencode model=%s preprocess=mnist "
        "regions=digits ! cbirsearch gallery=%s k=3 post-messages=false",
        model_path, gallery_path);
    GstHarness *h2 = gst_harness_new_parse (d2);

    gst_harness_set_src_caps_str (h2, caps);
    ref = gst_harness_push_and_pull (h2, gray8_buffer (pix, RW, RH, 0));
    gst_harness_teardown (h2);
    g_free (d2);
  }
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, RW, RH, 0));
  fail_unless (out != NULL, "%s: no output", chain);
  n = digit_rois (ref, a, 8);
  fail_unless_equals_int (n, 2);
  fail_unless_equals_int (digit_rois (out, b, 8), n);
  fail_unless_equals_int (n_embeddings (out), n);
  fail_unless (gst_buffer_get_cbir_region_results_meta (out) != NULL);
  fail_unless_equals_int (gst_buffer_get_cbir_region_results_meta
      (out)->results->len, n);
  for (j = 0; j < n; j++) {
    GstStructure *pa = gst_video_region_of_interest_meta_get_param (a[j],
        "cbir-result");
    GstStructure *pb = gst_video_region_of_interest_meta_get_param (b[j],
        "cbir-result");
    GstCbirEmbeddingMeta *ea, *eb;

    fail_unless_equals_int (b[j]->id, a[j]->id);
    /* the box follows the picture (to within the rounding) */
    fail_unless (ABS ((gint) b[j]->x - (gint) (a[j]->x * out_w / RW)) <= 1 &&
        ABS ((gint) b[j]->y - (gint) (a[j]->y * out_h / RH)) <= 1 &&
        ABS ((gint) b[j]->w - (gint) (a[j]->w * out_w / RW)) <= 1 &&
        ABS ((gint) b[j]->h - (gint) (a[j]->h * out_h / RH)) <= 1,
        "%s: region %u box %u,%u %ux%u from %u,%u %ux%u", chain, j, b[j]->x,
        b[j]->y, b[j]->w, b[j]->h, a[j]->x, a[j]->y, a[j]->w, a[j]->h);
    fail_unless (pa != NULL && pb != NULL, "%s: region %u lost its result "
        "(%p %p, %u %u params)", chain, j, pa, pb, g_list_length (a[j]->params),
        g_list_length (b[j]->params));
    {
      /* (the two harnesses differ in when, by which element and in which
       * stream they searched) */
      GstStructure *ca = gst_structure_copy (pa), *cb = gst_structure_copy (pb);

      gst_structure_remove_fields (ca, "utc", "element", "stream-id", NULL);
      gst_structure_remove_fields (cb, "utc", "element", "stream-id", NULL);
      fail_unless (gst_structure_is_equal (ca, cb), "%s: region %u result "
          "changed", chain, j);
      gst_structure_free (ca);
      gst_structure_free (cb);
    }
    ea = gst_buffer_get_cbir_embedding_meta_for_region (ref, a[j]->id);
    eb = gst_buffer_get_cbir_embedding_meta_for_region (out, b[j]->id);
    fail_unless (ea != NULL && eb != NULL, "%s: region %u lost its "
        "embedding", chain, j);
    fail_unless_equals_int (eb->dim, ea->dim);
    fail_unless (memcmp (ea->vector, eb->vector, ea->dim * sizeof (gfloat))
        == 0);
  }
  gst_buffer_unref (ref);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
  g_free (caps);
  g_free (desc);
}

GST_START_TEST (test_region_metas_survive)
{
  gchar *dir = tmpdir_new ();
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *gallery_path = make_gallery (dir, model_path, 64, "g.safetensors");
  CbirDataset *ds = load_fixture ();
  const guint idx[] = { 13, 14 };
  CbirRect truth[2];
  guint8 *pix = digits_frame (ds, idx, 2, 5, RW, RH, truth);

  check_regions_survive (model_path, gallery_path, pix, "queue", RW, RH);
  check_regions_survive (model_path, gallery_path, pix,
      "tee name=t t. ! queue", RW, RH);
  check_regions_survive (model_path, gallery_path, pix,
      "videoconvert ! capsfilter caps=video/x-raw,format=RGB", RW, RH);
  check_regions_survive (model_path, gallery_path, pix,
      "videoscale ! capsfilter caps=video/x-raw,width=320,height=100", 320, 100);
  check_regions_survive (model_path, gallery_path, pix,
      "videoconvert ! capsfilter caps=video/x-raw,format=I420 ! videoscale "
      "! capsfilter caps=video/x-raw,width=1280,height=400 ! videoconvert "
      "! capsfilter caps=video/x-raw,format=BGRx", 1280, 400);
  g_free (pix);
  cbir_dataset_free (ds);
  g_free (gallery_path);
  g_free (model_path);
  tmpdir_free (dir);
}

GST_END_TEST;

GST_START_TEST (test_meta_api_registered_without_tags)
{
  const gchar *names[] = { GST_CBIR_SOURCE_META_API_NAME,
    GST_CBIR_EMBEDDING_META_API_NAME, GST_CBIR_RESULT_META_API_NAME,
    GST_CBIR_RESULT_CUSTOM_META_NAME "-api",
    GST_CBIR_REGION_RESULTS_META_API_NAME
  };
  GstElement *e = gst_element_factory_make ("cbirsearch", NULL);
  guint i;

  /* loading the plugin registered them */
  fail_unless (e != NULL);
  for (i = 0; i < G_N_ELEMENTS (names); i++) {
    GType api = g_type_from_name (names[i]);
    const gchar *const *tags;

    fail_unless (api != 0, "%s not registered", names[i]);
    tags = gst_meta_api_type_get_tags (api);
    fail_unless (tags == NULL || tags[0] == NULL, "%s has tags", names[i]);
  }
  fail_unless (gst_meta_info_is_custom (gst_meta_get_info
          (GST_CBIR_RESULT_CUSTOM_META_NAME)));
  gst_object_unref (e);
}

GST_END_TEST;

static Suite *
cbirmetas_suite (void)
{
  Suite *s = suite_create ("cbirmetas");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_meta_api_registered_without_tags);
  tcase_add_test (tc, test_metas_survive);
  tcase_add_test (tc, test_region_metas_survive);
  return s;
}

GST_CHECK_MAIN (cbirmetas);

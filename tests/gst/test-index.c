/* cbirindex: the gallery it writes (features, labels, thumbnails, ids),
 * append, fixed label, progress messages, no partial file on flush or
 * error, location unset.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"

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

static void
check_gallery (const gchar * path, const gchar * model_path, guint n_expect,
    guint repeat)
{
  GError *err = NULL;
  CbirGallery *g = cbir_gallery_open (path, &err);
  CbirModel *m = cbir_model_load (model_path, NULL);
  CbirDataset *ds = load_fixture ();
  guint dim, i, j;
  gfloat *codes = engine_encode_all (m, ds, &dim);
  const gfloat *feat;

  fail_unless (g != NULL, "%s", err ? err->message : "?");
  fail_unless_equals_int (cbir_gallery_size (g), n_expect * repeat);
  fail_unless_equals_string (cbir_gallery_get_model_fingerprint (g),
      cbir_model_get_fingerprint (m));
  fail_unless (cbir_gallery_check_model (g, m, NULL));
  feat = cbir_gallery_get_features (g);
  for (i = 0; i < n_expect * repeat; i++) {
    guint src = i % n_expect;
    gchar *id = g_strdup_printf ("mnist-64-images.idx3-ubyte.gz:%u", src);

    fail_unless_equals_int (cbir_gallery_get_labels (g)[i], ds->labels[src]);
    fail_unless (cbir_gallery_get_thumbnail (g, i) != NULL);
    fail_unless (memcmp (cbir_gallery_get_thumbnail (g, i),
            ds->images + src * 784, 784) == 0);
    fail_unless_equals_string (cbir_gallery_get_id (g, i), id);
    if (feat)
      for (j = 0; j < dim; j++)
        fail_unless (fabsf (feat[(gsize) i * dim + j] - codes[src * dim + j])
            <= 1e-5f * (1 + fabsf (codes[src * dim + j])));
    g_free (id);
  }
  g_free (codes);
  cbir_dataset_free (ds);
  cbir_model_free (m);
  cbir_gallery_free (g);
}

GST_START_TEST (test_build_and_append)
{
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s labels=%s ! "
      "cbirencode model=%s ! cbirindex location=%s progress-interval=16",
      FIX_IMAGES, FIX_LABELS, model_path, out);
  gchar *desc2;
  GList *progress = NULL, *l;
  GstMessage *msg = run_pipeline (desc, "cbir-index-progress", &progress);
  guint expect = 16;

  fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  /* 16, 32, 48, 64 and the final one (done) */
  fail_unless_equals_int (g_list_length (progress), 5);
  for (l = progress; l; l = l->next) {
    const GstStructure *s = gst_message_get_structure (l->data);
    guint count;
    gboolean done;

    fail_unless (gst_structure_get_uint (s, "count", &count));
    fail_unless (gst_structure_get_boolean (s, "done", &done));
    fail_unless_equals_int (count, MIN (expect, FIX_N));
    fail_unless_equals_int (done, l->next == NULL);
    expect += l->next && l->next->next ? 16 : 0;
  }
  g_list_free_full (progress, (GDestroyNotify) gst_message_unref);
  check_gallery (out, model_path, FIX_N, 1);

  /* append: the same images again */
  desc2 = g_strdup_printf ("%s append=true", desc);
  msg = run_pipeline (desc2, NULL, NULL);
  fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  check_gallery (out, model_path, FIX_N, 2);

  g_free (desc2);
  g_free (desc);
  g_free (out);
  g_free (model_path);
}

GST_END_TEST;

/* The graph cbirindex writes by default is the engine's over the same
 * codes; graph-k fixes k; graph=false writes none; an append rebuilds it
 * over all items (rule: 64 -> k 5, 128 -> k 5, a fixed k stays). */
static void
check_graph (const gchar * path, guint k_expect, gboolean k_auto)
{
  CbirGallery *g = cbir_gallery_open (path, NULL);
  const CbirGraph *gr;
  CbirGraph *want;

  fail_unless (g != NULL);
  gr = cbir_gallery_get_graph (g);
  if (k_expect == 0) {
    fail_unless (gr == NULL);
    cbir_gallery_free (g);
    return;
  }
  fail_unless (gr != NULL);
  fail_unless_equals_int (cbir_graph_get_k (gr), k_expect);
  fail_unless_equals_int (cbir_gallery_get_graph_k_auto (g), k_auto);
  want = cbir_graph_build (cbir_gallery_get_features (g),
      cbir_gallery_size (g), cbir_gallery_get_dim (g), k_expect,
      CBIR_GRAPH_DEFAULT_POWER, 1, NULL);
  fail_unless_equals_int (cbir_graph_nnz (gr), cbir_graph_nnz (want));
  fail_unless (memcmp (cbir_graph_get_neighbours (gr),
          cbir_graph_get_neighbours (want), 4 * cbir_graph_nnz (gr)) == 0);
  fail_unless (memcmp (cbir_graph_get_weights (gr),
          cbir_graph_get_weights (want), 4 * cbir_graph_nnz (gr)) == 0);
  cbir_graph_free (want);
  cbir_gallery_free (g);
}

GST_START_TEST (test_graph)
{
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  const gchar *props[] = { "", "graph-k=9", "graph=false" };
  const guint k[] = { 5, 9, 0 };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (props); i++) {
    gchar *desc = g_strdup_printf ("cbiridxsrc images=%s labels=%s ! "
        "cbirencode model=%s ! cbirindex location=%s %s", FIX_IMAGES,
        FIX_LABELS, model_path, out, props[i]);
    gchar *desc2 = g_strdup_printf ("%s append=true", desc);
    GstMessage *msg = run_pipeline (desc, NULL, NULL);

    fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
    gst_message_unref (msg);
    check_graph (out, k[i], i == 0);
    msg = run_pipeline (desc2, NULL, NULL);
    fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
    gst_message_unref (msg);
    check_graph (out, k[i], i == 0);
    g_free (desc2);
    g_free (desc);
  }
  g_free (out);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_fixed_label_and_scaled_thumbnails)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  gchar *desc = g_strdup_printf ("videotestsrc num-buffers=5 pattern=ball ! "
      "video/x-raw,format=GRAY8,width=100,height=60 ! cbirencode model=%s ! "
      "cbirindex location=%s label=7", model_path, out);
  GstMessage *msg = run_pipeline (desc, NULL, NULL);
  CbirGallery *g;
  guint i;

  fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  g = cbir_gallery_open (out, NULL);
  fail_unless (g != NULL);
  fail_unless_equals_int (cbir_gallery_size (g), 5);
  fail_unless_equals_int (cbir_gallery_get_code_type (g), CBIR_CODE_BITS);
  for (i = 0; i < 5; i++) {
    fail_unless_equals_int (cbir_gallery_get_labels (g)[i], 7);
    fail_unless (cbir_gallery_get_thumbnail (g, i) != NULL);
    fail_unless (cbir_gallery_get_id (g, i) == NULL);
  }
  cbir_gallery_free (g);
  g_free (desc);
  g_free (out);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_no_thumbnails)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s count=3 ! "
      "cbirencode model=%s ! cbirindex location=%s thumbnails=false",
      FIX_IMAGES, model_path, out);
  GstMessage *msg = run_pipeline (desc, NULL, NULL);
  CbirGallery *g;

  fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  g = cbir_gallery_open (out, NULL);
  fail_unless (g != NULL);
  fail_unless_equals_int (cbir_gallery_size (g), 3);
  fail_unless (cbir_gallery_get_thumbnail (g, 0) == NULL);
  /* no labels file, no label property: unlabelled */
  fail_unless_equals_int (cbir_gallery_get_labels (g)[0], -1);
  cbir_gallery_free (g);
  g_free (desc);
  g_free (out);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_flush_and_stop_leave_no_file)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  gchar *desc = g_strdup_printf ("cbirencode model=%s ! cbirindex "
      "location=%s", model_path, out);
  GstHarness *h = gst_harness_new_parse (desc);
  CbirDataset *ds = load_fixture ();
  gchar *caps = gray8_caps (28, 28);
  GDir *d;
  guint i;

  gst_harness_set_src_caps_str (h, caps);
  for (i = 0; i < 10; i++)
    fail_unless_equals_int (gst_harness_push (h, gray8_buffer (ds->images +
                i * 784, 28, 28, i)), GST_FLOW_OK);
  /* flush: what was collected is dropped */
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
  fail_if (g_file_test (out, G_FILE_TEST_EXISTS));
  {
    GstSegment seg;
    gst_segment_init (&seg, GST_FORMAT_TIME);
    gst_harness_push_event (h, gst_event_new_segment (&seg));
  }
  for (i = 0; i < 3; i++)
    fail_unless_equals_int (gst_harness_push (h, gray8_buffer (ds->images +
                i * 784, 28, 28, i)), GST_FLOW_OK);
  /* stopped without EOS: nothing written, no temporary file left */
  gst_harness_teardown (h);
  fail_if (g_file_test (out, G_FILE_TEST_EXISTS));
  d = g_dir_open (dir, 0, NULL);
  {
    const gchar *name;
    while ((name = g_dir_read_name (d)))
      fail_unless (g_str_has_prefix (name, "model-"), "left over: %s", name);
  }
  g_dir_close (d);

  /* the same after a flush, then EOS: only the post-flush frames */
  h = gst_harness_new_parse (desc);
  gst_harness_set_src_caps_str (h, caps);
  for (i = 0; i < 4; i++)
    gst_harness_push (h, gray8_buffer (ds->images + i * 784, 28, 28, i));
  gst_harness_push_event (h, gst_event_new_flush_start ());
  gst_harness_push_event (h, gst_event_new_flush_stop (TRUE));
  {
    GstSegment seg;
    gst_segment_init (&seg, GST_FORMAT_TIME);
    gst_harness_push_event (h, gst_event_new_segment (&seg));
  }
  for (i = 0; i < 2; i++)
    gst_harness_push (h, gray8_buffer (ds->images + i * 784, 28, 28, i));
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  gst_harness_teardown (h);
  {
    CbirGallery *g = cbir_gallery_open (out, NULL);
    fail_unless (g != NULL);
    fail_unless_equals_int (cbir_gallery_size (g), 2);
    cbir_gallery_free (g);
  }
  cbir_dataset_free (ds);
  g_free (caps);
  g_free (desc);
  g_free (out);
  g_free (model_path);
}

GST_END_TEST;

/* Pops the bus: counts the warnings (no error allowed) and reads the final
 * "cbir-index-progress" message's count, invalid and skipped (each may be
 * NULL). */
static void
final_progress (GstBus * bus, guint * warnings, guint * count,
    guint * invalid, guint * skipped)
{
  GstMessage *msg;

  while ((msg = gst_bus_pop (bus))) {
    fail_if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR);
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_WARNING)
      (*warnings)++;
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ELEMENT) {
      const GstStructure *s = gst_message_get_structure (msg);
      gboolean done = FALSE;
      if (gst_structure_has_name (s, "cbir-index-progress")
          && gst_structure_get_boolean (s, "done", &done) && done) {
        fail_unless (gst_structure_get_uint (s, "count", count));
        fail_unless (!invalid || gst_structure_get_uint (s, "invalid",
                invalid));
        fail_unless (!skipped || gst_structure_get_uint (s, "skipped",
                skipped));
      }
    }
    gst_message_unref (msg);
  }
}

/* A broken model's NaN/inf codes are never indexed: skipped with one
 * warning and counted ("invalid" in the progress message); a stream of
 * nothing but such codes is an error and writes no file. */
GST_START_TEST (test_non_finite_codes_not_indexed)
{
  gchar *broken = make_broken_model (dir);
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  gchar *desc = g_strdup_printf ("cbirencode model=%s ! cbirindex "
      "location=%s thumbnails=false", broken, out);
  gchar *caps = gray8_caps (28, 28);
  CbirDataset *ds = load_fixture ();
  GstHarness *h;
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  guint8 blank[784] = { 0 };
  guint i, count = 0, invalid = 0, warnings = 0;

  /* blank, digit, blank, digit, digit: two indexed, three invalid */
  h = gst_harness_new_parse (desc);
  gst_element_set_bus (h->element, bus);
  gst_harness_set_src_caps_str (h, caps);
  for (i = 0; i < 5; i++)
    fail_unless_equals_int (gst_harness_push (h, gray8_buffer (i % 2 == 0
                && i < 4 ? blank : ds->images + i * 784, 28, 28, i)),
        GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  final_progress (bus, &warnings, &count, &invalid, NULL);
  gst_element_set_bus (h->element, NULL);
  gst_harness_teardown (h);
  fail_unless_equals_int (warnings, 1);
  fail_unless_equals_int (count, 2);
  fail_unless_equals_int (invalid, 3);
  {
    GError *err = NULL;
    CbirGallery *g = cbir_gallery_open (out, &err);
    fail_unless (g != NULL, "%s", err ? err->message : "?");
    fail_unless_equals_int (cbir_gallery_size (g), 2);
    cbir_gallery_free (g);
  }
  g_remove (out);

  /* only digits: an error, no file */
  g_free (desc);
  desc = g_strdup_printf ("cbiridxsrc images=%s count=4 ! cbirencode "
      "model=%s ! cbirindex location=%s", FIX_IMAGES, broken, out);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED,
      "all 4 frames", out);
  gst_message_unref (msg);
  fail_if (g_file_test (out, G_FILE_TEST_EXISTS));

  gst_object_unref (bus);
  cbir_dataset_free (ds);
  g_free (caps);
  g_free (desc);
  g_free (out);
  g_free (broken);
}

GST_END_TEST;

/* Camera frames without a digit (cbirencode preprocess=mnist attaches no
 * embedding) are skipped and counted, not the end of the gallery. */
GST_START_TEST (test_frames_without_embedding_skipped)
{
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  gchar *desc = g_strdup_printf ("cbirencode model=%s preprocess=mnist ! "
      "cbirindex location=%s", model_path, out);
  gchar *caps = gray8_caps (28, 28);
  CbirDataset *ds = load_fixture ();
  GstHarness *h = gst_harness_new_parse (desc);
  GstBus *bus = gst_bus_new ();
  guint8 blank[784] = { 0 };
  guint i, count = 99, skipped = 99, warnings = 0;

  gst_element_set_bus (h->element, bus);
  gst_harness_set_src_caps_str (h, caps);
  /* blank, digit 0, blank, digit 1, blank */
  for (i = 0; i < 5; i++)
    fail_unless_equals_int (gst_harness_push (h, gray8_buffer (i % 2 ?
                ds->images + (i / 2) * 784 : blank, 28, 28, i)),
        GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  final_progress (bus, &warnings, &count, NULL, &skipped);
  gst_element_set_bus (h->element, NULL);
  gst_harness_teardown (h);
  fail_unless_equals_int (warnings, 1);
  fail_unless_equals_int (count, 2);
  fail_unless_equals_int (skipped, 3);
  {
    CbirGallery *g = cbir_gallery_open (out, NULL);
    fail_unless (g != NULL);
    fail_unless_equals_int (cbir_gallery_size (g), 2);
    fail_unless_equals_int (cbir_gallery_get_labels (g)[0], -1);
    cbir_gallery_free (g);
  }
  gst_object_unref (bus);
  cbir_dataset_free (ds);
  g_free (caps);
  g_free (desc);
  g_free (out);
  g_free (model_path);
}

GST_END_TEST;

/* A location that cannot be written fails when the element starts: an
 * endless source would otherwise encode forever before the error. */
GST_START_TEST (test_unwritable_location_fails_at_start)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *bad[2];
  guint i;

  bad[0] = g_build_filename (dir, "missing", "g.safetensors", NULL);
  bad[1] = g_strdup (dir);
  for (i = 0; i < 2; i++) {
    gchar *desc = g_strdup_printf ("cbiridxsrc images=%s loop=true ! "
        "cbirencode model=%s ! cbirindex location=%s", FIX_IMAGES,
        model_path, bad[i]);
    GstMessage *msg = run_pipeline (desc, NULL, NULL);
    assert_error_mentions (msg, GST_RESOURCE_ERROR,
        GST_RESOURCE_ERROR_OPEN_WRITE, bad[i], NULL);
    gst_message_unref (msg);
    g_free (desc);
    g_free (bad[i]);
  }
  g_free (model_path);
}

GST_END_TEST;

/* cbirencode regions=digits: every digit of a frame is indexed, each with
 * its own box as thumbnail and an id naming its region (not only the first
 * digit with the whole frame squashed). */
GST_START_TEST (test_regions_each_digit_indexed)
{
  const guint fw = 640, fh = 200, idx[3] = { 3, 8, 21 };
  gchar *model_path = make_model (dir, "keras-dae");
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  gchar *desc = g_strdup_printf ("cbirencode model=%s preprocess=mnist "
      "regions=digits ! cbirindex location=%s", model_path, out);
  gchar *caps = gray8_caps (fw, fh);
  CbirDataset *ds = load_fixture ();
  CbirModel *m = cbir_model_load (model_path, NULL);
  GstHarness *h = gst_harness_new_parse (desc);
  CbirRect truth[4], rects[8];
  guint8 *pix = digits_frame (ds, idx, 3, 5, fw, fh, truth);
  gfloat *codes = g_new (gfloat, 8 * cbir_model_get_code_dim (m));
  guint n = engine_region_codes (m, pix, fw, fh, TRUE, 8, rects, codes), i, j;
  CbirGallery *g;
  guint8 crop[28 * 28];
  gboolean used[8] = { FALSE };

  fail_unless_equals_int (n, 3);
  gst_harness_set_src_caps_str (h, caps);
  fail_unless_equals_int (gst_harness_push (h, gray8_buffer (pix, fw, fh, 0)),
      GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  gst_harness_teardown (h);

  g = cbir_gallery_open (out, NULL);
  fail_unless (g != NULL);
  fail_unless_equals_int (cbir_gallery_size (g), 3);
  for (i = 0; i < 3; i++) {
    const guint8 *t = cbir_gallery_get_thumbnail (g, i);
    gboolean found = FALSE;

    fail_unless (g_str_has_prefix (cbir_gallery_get_id (g, i), "#r"), "%s",
        cbir_gallery_get_id (g, i));
    for (j = 0; j < n && !found; j++) {
      cbir_preprocess_scale (pix + (gsize) rects[j].y * fw + rects[j].x,
          rects[j].width, rects[j].height, fw, 28, 28, crop);
      if (!used[j] && memcmp (t, crop, sizeof crop) == 0)
        found = used[j] = TRUE;
    }
    fail_unless (found, "item %u: thumbnail is not a digit's box", i);
  }
  cbir_gallery_free (g);
  cbir_model_free (m);
  cbir_dataset_free (ds);
  g_free (codes);
  g_free (pix);
  g_free (caps);
  g_free (desc);
  g_free (out);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_errors_leave_no_file)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *model_b = make_model (dir, "keras-dae");
  gchar *out = g_build_filename (dir, "gallery.safetensors", NULL);
  gchar *desc;
  GstMessage *msg;

  /* frames without embedding (no cbirencode) */
  desc = g_strdup_printf ("cbiridxsrc images=%s ! cbirindex location=%s",
      FIX_IMAGES, out);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT,
      "cbirencode", NULL);
  gst_message_unref (msg);
  fail_if (g_file_test (out, G_FILE_TEST_EXISTS));
  g_free (desc);

  /* an upstream error half-way (corrupt model of a second encoder is not
   * possible; use a source error): the source fails at start */
  desc = g_strdup_printf ("cbiridxsrc images=/nonexistent.idx ! cbirencode "
      "model=%s ! cbirindex location=%s", model_path, out);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, -1, "/nonexistent.idx",
      NULL);
  gst_message_unref (msg);
  fail_if (g_file_test (out, G_FILE_TEST_EXISTS));
  g_free (desc);

  /* location unset */
  desc = g_strdup_printf ("cbiridxsrc images=%s ! cbirencode model=%s ! "
      "cbirindex", FIX_IMAGES, model_path);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "location", NULL);
  gst_message_unref (msg);
  g_free (desc);

  /* append to a gallery of another model: refused, file untouched */
  desc = g_strdup_printf ("cbiridxsrc images=%s count=4 ! cbirencode "
      "model=%s ! cbirindex location=%s", FIX_IMAGES, model_path, out);
  msg = run_pipeline (desc, NULL, NULL);
  fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  g_free (desc);
  desc = g_strdup_printf ("cbiridxsrc images=%s count=4 ! cbirencode "
      "model=%s ! cbirindex location=%s append=true", FIX_IMAGES, model_b,
      out);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, -1, out, NULL);
  gst_message_unref (msg);
  {
    CbirGallery *g = cbir_gallery_open (out, NULL);
    fail_unless (g != NULL);
    fail_unless_equals_int (cbir_gallery_size (g), 4);
    cbir_gallery_free (g);
  }
  g_free (desc);
  g_free (out);
  g_free (model_b);
  g_free (model_path);
}

GST_END_TEST;

static Suite *
cbirindex_suite (void)
{
  Suite *s = suite_create ("cbirindex");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_build_and_append);
  tcase_add_test (tc, test_graph);
  tcase_add_test (tc, test_fixed_label_and_scaled_thumbnails);
  tcase_add_test (tc, test_no_thumbnails);
  tcase_add_test (tc, test_flush_and_stop_leave_no_file);
  tcase_add_test (tc, test_errors_leave_no_file);
  tcase_add_test (tc, test_non_finite_codes_not_indexed);
  tcase_add_test (tc, test_frames_without_embedding_skipped);
  tcase_add_test (tc, test_unwritable_location_fails_at_start);
  tcase_add_test (tc, test_regions_each_digit_indexed);
  return s;
}

GST_CHECK_MAIN (cbirindex);

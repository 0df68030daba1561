/* cbiridxsrc: caps, timestamps, source meta, start/count/loop, errors.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"

static GstHarness *
src_harness (const gchar * props)
{
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s labels=%s %s",
      FIX_IMAGES, FIX_LABELS, props);
  GstHarness *h = gst_harness_new_parse (desc);

  g_free (desc);
  return h;
}

/* pulls events until EOS; fails on a buffer */
static void
expect_eos (GstHarness * h)
{
  GstEvent *ev;

  while ((ev = gst_harness_pull_event (h))) {
    gboolean eos = GST_EVENT_TYPE (ev) == GST_EVENT_EOS;
    gst_event_unref (ev);
    if (eos)
      break;
  }
  fail_unless_equals_int (gst_harness_buffers_in_queue (h), 0);
}

GST_START_TEST (test_caps_timestamps_metas)
{
  CbirDataset *ds = load_fixture ();
  GstHarness *h = src_harness ("framerate=10/1");
  GstCaps *caps;
  GstStructure *s;
  gint w, hh, fn, fd;
  guint i;

  gst_harness_play (h);
  for (i = 0; i < FIX_N; i++) {
    GstBuffer *buf = gst_harness_pull (h);
    GstCbirSourceMeta *m = gst_buffer_get_cbir_source_meta (buf);
    GstMapInfo map;

    fail_unless (buf != NULL);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), i * GST_SECOND / 10);
    fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf), GST_SECOND / 10);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), i);
    fail_unless (m != NULL);
    fail_unless_equals_uint64 (m->index, i);
    fail_unless_equals_int (m->label, ds->labels[i]);
    fail_unless (g_str_has_suffix (m->source, "mnist-64-images.idx3-ubyte.gz"));
    /* 28 is a multiple of 4: the frame is the image, byte for byte */
    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    fail_unless_equals_int (map.size, 784);
    fail_unless (memcmp (map.data, ds->images + i * 784, 784) == 0);
    gst_buffer_unmap (buf, &map);
    gst_buffer_unref (buf);
  }
  expect_eos (h);

  caps = gst_pad_get_current_caps (h->sinkpad);
  s = gst_caps_get_structure (caps, 0);
  fail_unless_equals_string (gst_structure_get_string (s, "format"), "GRAY8");
  fail_unless (gst_structure_get_int (s, "width", &w));
  fail_unless (gst_structure_get_int (s, "height", &hh));
  fail_unless (gst_structure_get_fraction (s, "framerate", &fn, &fd));
  fail_unless_equals_int (w, 28);
  fail_unless_equals_int (hh, 28);
  fail_unless_equals_int (fn, 10);
  fail_unless_equals_int (fd, 1);
  gst_caps_unref (caps);
  gst_harness_teardown (h);
  cbir_dataset_free (ds);
}

GST_END_TEST;

GST_START_TEST (test_start_count_loop)
{
  CbirDataset *ds = load_fixture ();
  GstHarness *h = src_harness ("start=60 count=3 loop=true");
  guint i;

  gst_harness_play (h);
  /* 60, 61, 62, 60, 61, ...: offsets and timestamps keep counting */
  for (i = 0; i < 8; i++) {
    GstBuffer *buf = gst_harness_pull (h);
    GstCbirSourceMeta *m = gst_buffer_get_cbir_source_meta (buf);

    fail_unless_equals_uint64 (m->index, 60 + i % 3);
    fail_unless_equals_int (m->label, ds->labels[60 + i % 3]);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), i);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf),
        gst_util_uint64_scale (i, GST_SECOND, 30));
    gst_buffer_unref (buf);
  }
  gst_harness_teardown (h);

  h = src_harness ("start=62 count=100");
  gst_harness_play (h);
  for (i = 62; i < FIX_N; i++) {
    GstBuffer *buf = gst_harness_pull (h);
    fail_unless_equals_uint64 (gst_buffer_get_cbir_source_meta (buf)->index,
        i);
    gst_buffer_unref (buf);
  }
  expect_eos (h);
  gst_harness_teardown (h);
  cbir_dataset_free (ds);
}

GST_END_TEST;

GST_START_TEST (test_no_labels)
{
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s count=2", FIX_IMAGES);
  GstHarness *h = gst_harness_new_parse (desc);
  GstBuffer *buf;

  gst_harness_play (h);
  buf = gst_harness_pull (h);
  fail_unless_equals_int (gst_buffer_get_cbir_source_meta (buf)->label, -1);
  gst_buffer_unref (buf);
  gst_harness_teardown (h);
  g_free (desc);
}

GST_END_TEST;

GST_START_TEST (test_errors)
{
  gchar *dir = tmpdir_new ();
  gchar *bad = g_build_filename (dir, "corrupt-images.idx3-ubyte", NULL);
  gchar *desc;
  GstMessage *msg;

  /* missing file: error naming it, clean shutdown */
  msg = run_pipeline ("cbiridxsrc images=/nonexistent/imgs.idx3-ubyte ! "
      "fakesink", NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "/nonexistent/imgs.idx3-ubyte", NULL);
  gst_message_unref (msg);

  /* corrupt (truncated) file */
  write_file (bad, "\x00\x00\x08\x03\x00\x00\x00\x10\x00\x00\x00\x1c"
      "\x00\x00\x00\x1c garbage", 21);
  desc = g_strdup_printf ("cbiridxsrc images=%s ! fakesink", bad);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_READ,
      bad, NULL);
  gst_message_unref (msg);
  g_free (desc);

  /* labels file not matching (the images given as labels) */
  desc = g_strdup_printf ("cbiridxsrc images=%s labels=%s ! fakesink",
      FIX_IMAGES, FIX_IMAGES);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, -1, FIX_IMAGES, NULL);
  gst_message_unref (msg);
  g_free (desc);

  /* no images property */
  msg = run_pipeline ("cbiridxsrc ! fakesink", NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "images", NULL);
  gst_message_unref (msg);

  /* start past the end */
  desc = g_strdup_printf ("cbiridxsrc images=%s start=64 ! fakesink",
      FIX_IMAGES);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "start=64", NULL);
  gst_message_unref (msg);
  g_free (desc);

  g_free (bad);
  tmpdir_free (dir);
}

GST_END_TEST;

GST_START_TEST (test_property_refused_while_playing)
{
  GstHarness *h = src_harness ("count=1000 loop=true");
  GstElement *src = gst_harness_find_element (h, "cbiridxsrc");
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  gchar *images = NULL;
  GstBuffer *buf;

  gst_element_set_bus (h->element, bus);
  gst_harness_play (h);
  buf = gst_harness_pull (h);
  gst_buffer_unref (buf);
  g_object_set (src, "images", "/other/file", NULL);
  g_object_get (src, "images", &images, NULL);
  fail_unless_equals_string (images, FIX_IMAGES);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL);
  gst_message_unref (msg);
  g_free (images);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_object_unref (src);
  gst_harness_teardown (h);
}

GST_END_TEST;

static Suite *
cbiridxsrc_suite (void)
{
  Suite *s = suite_create ("cbiridxsrc");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_caps_timestamps_metas);
  tcase_add_test (tc, test_start_count_loop);
  tcase_add_test (tc, test_no_labels);
  tcase_add_test (tc, test_errors);
  tcase_add_test (tc, test_property_refused_while_playing);
  return s;
}

GST_CHECK_MAIN (cbiridxsrc);

/* cbiridxsrc: caps, timestamps, source meta, start/count/loop, errors,
 * seeking (time and frames).
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

/* ---- seeking: cbiridxsrc ! appsink, driven like an application ---- */

#define PULL_TIMEOUT (10 * GST_SECOND)

/* PTS of frame f at fps/1 */
#define FRAME_TIME(f, fps) gst_util_uint64_scale ((f), GST_SECOND, (fps))

static void
wait_state (GstElement * p)
{
  fail_unless_equals_int (gst_element_get_state (p, NULL, NULL,
          PULL_TIMEOUT), GST_STATE_CHANGE_SUCCESS);
}

/* cbiridxsrc name=src (fixture, with props) ! appsink name=sink, PAUSED
 * and prerolled */
static GstElement *
seek_pipeline (const gchar * props, GstElement ** sink)
{
  GError *err = NULL;
  gchar *desc = g_strdup_printf ("cbiridxsrc name=src images=%s labels=%s "
      "%s ! appsink name=sink sync=false", FIX_IMAGES, FIX_LABELS, props);
  GstElement *p = gst_parse_launch (desc, &err);

  fail_unless (p != NULL, "%s: %s", desc, err ? err->message : "?");
  *sink = gst_bin_get_by_name (GST_BIN (p), "sink");
  fail_unless (*sink != NULL);
  gst_element_set_state (p, GST_STATE_PAUSED);
  wait_state (p);
  g_free (desc);
  return p;
}

/* no error on the bus; to NULL; unref */
static void
seek_pipeline_free (GstElement * p, GstElement * sink)
{
  GstBus *bus = gst_element_get_bus (p);
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);

  fail_unless (msg == NULL, "error: %" GST_PTR_FORMAT, msg);
  fail_unless_equals_int (gst_element_set_state (p, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  gst_object_unref (bus);
  gst_object_unref (sink);
  gst_object_unref (p);
}

/* Seeks the pipeline from PAUSED and waits for the preroll (a frame, or
 * EOS); returns the seek's result. */
static gboolean
seek_paused (GstElement * p, GstFormat format, GstSeekFlags flags,
    GstSeekType start_type, gint64 start, GstSeekType stop_type, gint64 stop)
{
  gboolean res;

  gst_element_set_state (p, GST_STATE_PAUSED);
  wait_state (p);
  res = gst_element_seek (p, 1.0, format, flags, start_type, start,
      stop_type, stop);
  wait_state (p);
  return res;
}

/* Checks a buffer is frame `frame` of the fixture played from image
 * `first` (n_play images, looping) at fps/1. */
static void
check_frame (const CbirDataset * ds, GstBuffer * buf, guint64 frame,
    guint fps, guint first, guint n_play)
{
  GstCbirSourceMeta *m = gst_buffer_get_cbir_source_meta (buf);
  guint idx = first + (guint) (frame % n_play);

  fail_unless (m != NULL);
  fail_unless_equals_uint64 (m->index, idx);
  fail_unless_equals_int (m->label, ds->labels[idx]);
  fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), FRAME_TIME (frame, fps));
  fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf),
      FRAME_TIME (frame + 1, fps) - FRAME_TIME (frame, fps));
  fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), frame);
  fail_unless_equals_uint64 (GST_BUFFER_OFFSET_END (buf), frame + 1);
}

/* The preroll (first buffer after a flushing seek) is frame `frame`; it
 * starts a new segment from `seg_start`. */
static void
check_preroll (const CbirDataset * ds, GstElement * sink, guint64 frame,
    guint fps, guint first, guint n_play, GstClockTime seg_start)
{
  GstSample *s = NULL;
  GstBuffer *buf;

  g_signal_emit_by_name (sink, "try-pull-preroll", PULL_TIMEOUT, &s);
  fail_unless (s != NULL, "no preroll (frame %" G_GUINT64_FORMAT ")", frame);
  buf = gst_sample_get_buffer (s);
  check_frame (ds, buf, frame, fps, first, n_play);
  fail_unless (GST_BUFFER_FLAG_IS_SET (buf, GST_BUFFER_FLAG_DISCONT));
  fail_unless_equals_uint64 (gst_sample_get_segment (s)->start, seg_start);
  gst_sample_unref (s);
}

/* Plays to the end: exactly frames from, from + 1, ... (n of them), then
 * EOS. */
static void
play_frames (const CbirDataset * ds, GstElement * p, GstElement * sink,
    guint64 from, guint n, guint fps, guint first, guint n_play)
{
  GstSample *s;
  gboolean eos = FALSE;
  guint i;

  gst_element_set_state (p, GST_STATE_PLAYING);
  for (i = 0;; i++) {
    s = NULL;
    g_signal_emit_by_name (sink, "try-pull-sample", PULL_TIMEOUT, &s);
    if (s == NULL)
      break;
    fail_unless (i < n, "more than %u frames", n);
    check_frame (ds, gst_sample_get_buffer (s), from + i, fps, first, n_play);
    gst_sample_unref (s);
  }
  g_object_get (sink, "eos", &eos, NULL);
  fail_unless (eos, "no EOS after %u frames", i);
  fail_unless_equals_int (i, n);
}

GST_START_TEST (test_seek_queries)
{
  GstElement *sink, *src, *p = seek_pipeline ("framerate=30/1", &sink);
  GstFormat formats[] = { GST_FORMAT_TIME, GST_FORMAT_DEFAULT };
  const gchar *cases[] = { "start=60 count=3 framerate=10/1",
    "start=60 count=3 loop=true"
  };
  gint64 v, seg_start, seg_end;
  gboolean seekable;
  GstQuery *q;
  guint i;

  src = gst_bin_get_by_name (GST_BIN (p), "src");
  /* 64 frames at 30/1 (through the sink and at the source) */
  fail_unless (gst_element_query_duration (p, GST_FORMAT_TIME, &v));
  fail_unless_equals_int64 (v, FRAME_TIME (64, 30));
  fail_unless (gst_element_query_duration (src, GST_FORMAT_DEFAULT, &v));
  fail_unless_equals_int64 (v, 64);
  for (i = 0; i < G_N_ELEMENTS (formats); i++) {
    GstFormat f;

    q = gst_query_new_seeking (formats[i]);
    fail_unless (gst_element_query (p, q));
    gst_query_parse_seeking (q, &f, &seekable, &seg_start, &seg_end);
    fail_unless_equals_int (f, formats[i]);
    fail_unless (seekable);
    fail_unless_equals_int64 (seg_start, 0);
    fail_unless_equals_int64 (seg_end, formats[i] == GST_FORMAT_TIME ?
        (gint64) FRAME_TIME (64, 30) : 64);
    gst_query_unref (q);
  }
  /* no byte seeking */
  q = gst_query_new_seeking (GST_FORMAT_BYTES);
  if (gst_element_query (src, q)) {
    gst_query_parse_seeking (q, NULL, &seekable, NULL, NULL);
    fail_if (seekable);
  }
  gst_query_unref (q);

  /* frames <-> time, exact both ways although 1/30 s is not a whole
   * number of ns (frame 1 starts at 33333333 ns) */
  for (i = 0; i <= 64; i++) {
    GstClockTime t = FRAME_TIME (i, 30);

    fail_unless (gst_element_query_convert (src, GST_FORMAT_DEFAULT, i,
            GST_FORMAT_TIME, &v));
    fail_unless_equals_int64 (v, t);
    fail_unless (gst_element_query_convert (src, GST_FORMAT_TIME, t,
            GST_FORMAT_DEFAULT, &v));
    fail_unless_equals_int64 (v, i);
    if (i > 0) {
      fail_unless (gst_element_query_convert (src, GST_FORMAT_TIME, t - 1,
              GST_FORMAT_DEFAULT, &v));
      fail_unless_equals_int64 (v, i - 1);
    }
  }
  gst_object_unref (src);
  seek_pipeline_free (p, sink);

  /* start/count: the played length; looping: unknown, still seekable */
  for (i = 0; i < G_N_ELEMENTS (cases); i++) {
    gboolean loop = strstr (cases[i], "loop") != NULL;

    p = seek_pipeline (cases[i], &sink);
    fail_unless (gst_element_query_duration (p, GST_FORMAT_TIME, &v));
    fail_unless_equals_int64 (v, loop ? -1 : (gint64) (300 * GST_MSECOND));
    fail_unless (gst_element_query_duration (p, GST_FORMAT_DEFAULT, &v));
    fail_unless_equals_int64 (v, loop ? -1 : 3);
    q = gst_query_new_seeking (GST_FORMAT_DEFAULT);
    fail_unless (gst_element_query (p, q));
    gst_query_parse_seeking (q, NULL, &seekable, &seg_start, &seg_end);
    fail_unless (seekable);
    fail_unless_equals_int64 (seg_end, loop ? -1 : 3);
    gst_query_unref (q);
    seek_pipeline_free (p, sink);
  }
}

GST_END_TEST;

GST_START_TEST (test_seek_time)
{
  CbirDataset *ds = load_fixture ();
  GstElement *sink, *p = seek_pipeline ("start=10 count=40", &sink);
  GstClockTime t;

  check_preroll (ds, sink, 0, 30, 10, 40, 0);

  /* at frame 7's start (33333333 ns a frame): frame 7, image 17 */
  fail_unless (seek_paused (p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, FRAME_TIME (7, 30), GST_SEEK_TYPE_NONE, -1));
  check_preroll (ds, sink, 7, 30, 10, 40, FRAME_TIME (7, 30));

  /* inside frame 5: that frame */
  t = FRAME_TIME (5, 30) + 10 * GST_MSECOND;
  fail_unless (seek_paused (p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, t, GST_SEEK_TYPE_NONE, -1));
  check_preroll (ds, sink, 5, 30, 10, 40, t);

  /* [frame 20, frame 25): exactly 5 frames, then EOS */
  fail_unless (seek_paused (p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, FRAME_TIME (20, 30), GST_SEEK_TYPE_SET,
          FRAME_TIME (25, 30)));
  check_preroll (ds, sink, 20, 30, 10, 40, FRAME_TIME (20, 30));
  play_frames (ds, p, sink, 20, 5, 30, 10, 40);

  /* again while playing (after EOS), the stop inside frame 32: 30..32 */
  fail_unless (gst_element_seek (p, 1.0, GST_FORMAT_TIME,
          GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, FRAME_TIME (30, 30),
          GST_SEEK_TYPE_SET, FRAME_TIME (32, 30) + 1));
  play_frames (ds, p, sink, 30, 3, 30, 10, 40);

  /* to the end of the file (no stop) */
  fail_unless (seek_paused (p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, FRAME_TIME (36, 30), GST_SEEK_TYPE_SET, -1));
  play_frames (ds, p, sink, 36, 4, 30, 10, 40);

  seek_pipeline_free (p, sink);
  cbir_dataset_free (ds);
}

GST_END_TEST;

GST_START_TEST (test_seek_frames)
{
  CbirDataset *ds = load_fixture ();
  GstElement *sink, *src, *p;
  gchar *desc;

  p = seek_pipeline ("start=10 count=40", &sink);
  /* frame 12: image 22 at 12/30 s */
  fail_unless (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 12, GST_SEEK_TYPE_NONE, -1));
  check_preroll (ds, sink, 12, 30, 10, 40, FRAME_TIME (12, 30));

  /* frames [12, 17): 5 frames, then EOS */
  fail_unless (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 12, GST_SEEK_TYPE_SET, 17));
  play_frames (ds, p, sink, 12, 5, 30, 10, 40);

  /* the last 3 frames, from the end (no stop) */
  fail_unless (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_END, -3, GST_SEEK_TYPE_SET, -1));
  check_preroll (ds, sink, 37, 30, 10, 40, FRAME_TIME (37, 30));
  play_frames (ds, p, sink, 37, 3, 30, 10, 40);
  seek_pipeline_free (p, sink);

  /* a seek sent to the source before it starts (READY) */
  desc = g_strdup_printf ("cbiridxsrc name=src images=%s labels=%s "
      "framerate=10/1 ! appsink name=sink sync=false", FIX_IMAGES, FIX_LABELS);
  p = gst_parse_launch (desc, NULL);
  fail_unless (p != NULL);
  sink = gst_bin_get_by_name (GST_BIN (p), "sink");
  src = gst_bin_get_by_name (GST_BIN (p), "src");
  gst_element_set_state (p, GST_STATE_READY);
  fail_unless (gst_element_send_event (src, gst_event_new_seek (1.0,
              GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 50,
              GST_SEEK_TYPE_SET, 52)));
  gst_element_set_state (p, GST_STATE_PAUSED);
  wait_state (p);
  check_preroll (ds, sink, 50, 10, 0, FIX_N, FRAME_TIME (50, 10));
  play_frames (ds, p, sink, 50, 2, 10, 0, FIX_N);
  gst_object_unref (src);
  seek_pipeline_free (p, sink);
  g_free (desc);
  cbir_dataset_free (ds);
}

GST_END_TEST;

GST_START_TEST (test_seek_segment)
{
  CbirDataset *ds = load_fixture ();
  GstElement *sink, *p = seek_pipeline ("count=20 framerate=10/1", &sink);
  GstBus *bus = gst_element_get_bus (p);
  GstMessage *msg;
  GstFormat format;
  gint64 pos;
  GstSample *s;
  gboolean eos = TRUE;
  guint i;

  /* segment seek to frames [3, 6): 3 frames, then segment-done, no EOS */
  fail_unless (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH |
          GST_SEEK_FLAG_SEGMENT, GST_SEEK_TYPE_SET, 3, GST_SEEK_TYPE_SET, 6));
  gst_element_set_state (p, GST_STATE_PLAYING);
  for (i = 0; i < 3; i++) {
    s = NULL;
    g_signal_emit_by_name (sink, "try-pull-sample", PULL_TIMEOUT, &s);
    fail_unless (s != NULL);
    check_frame (ds, gst_sample_get_buffer (s), 3 + i, 10, 0, FIX_N);
    gst_sample_unref (s);
  }
  msg = gst_bus_timed_pop_filtered (bus, PULL_TIMEOUT,
      GST_MESSAGE_SEGMENT_DONE | GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  fail_unless_equals_int (GST_MESSAGE_TYPE (msg), GST_MESSAGE_SEGMENT_DONE);
  gst_message_parse_segment_done (msg, &format, &pos);
  fail_unless_equals_int (format, GST_FORMAT_TIME);
  fail_unless_equals_int64 (pos, 600 * GST_MSECOND);
  gst_message_unref (msg);
  g_object_get (sink, "eos", &eos, NULL);
  fail_if (eos);

  /* then, as a looping player does, a non-flushing seek: frames 10, 11 */
  fail_unless (gst_element_seek (p, 1.0, GST_FORMAT_DEFAULT,
          GST_SEEK_FLAG_NONE, GST_SEEK_TYPE_SET, 10, GST_SEEK_TYPE_SET, 12));
  play_frames (ds, p, sink, 10, 2, 10, 0, FIX_N);

  gst_object_unref (bus);
  seek_pipeline_free (p, sink);
  cbir_dataset_free (ds);
}

GST_END_TEST;

GST_START_TEST (test_seek_loop)
{
  CbirDataset *ds = load_fixture ();
  GstElement *sink, *p = seek_pipeline ("start=60 count=3 loop=true", &sink);

  /* frame 100: image 60 + 100 % 3 = 61, then 62, 60, 61 */
  fail_unless (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 100, GST_SEEK_TYPE_SET, 104));
  check_preroll (ds, sink, 100, 30, 60, 3, FRAME_TIME (100, 30));
  play_frames (ds, p, sink, 100, 4, 30, 60, 3);

  /* in time, far on */
  fail_unless (seek_paused (p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, FRAME_TIME (30000, 30), GST_SEEK_TYPE_SET,
          FRAME_TIME (30002, 30)));
  play_frames (ds, p, sink, 30000, 2, 30, 60, 3);

  /* no end to seek from */
  fail_if (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_END, -1, GST_SEEK_TYPE_NONE, -1));

  seek_pipeline_free (p, sink);
  cbir_dataset_free (ds);
}

GST_END_TEST;

GST_START_TEST (test_seek_past_end)
{
  CbirDataset *ds = load_fixture ();
  GstElement *sink, *src, *p = seek_pipeline ("count=10 framerate=10/1",
      &sink);
  gint64 pos;

  /* in time past the end (1 s): EOS at once, no frame */
  fail_unless (seek_paused (p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 100 * GST_SECOND, GST_SEEK_TYPE_NONE, -1));
  play_frames (ds, p, sink, 0, 0, 10, 0, FIX_N);
  /* the position stays within the duration */
  src = gst_bin_get_by_name (GST_BIN (p), "src");
  fail_unless (gst_element_query_position (src, GST_FORMAT_TIME, &pos));
  fail_unless_equals_int64 (pos, GST_SECOND);
  fail_unless (gst_element_query_position (src, GST_FORMAT_DEFAULT, &pos));
  fail_unless_equals_int64 (pos, 10);
  gst_object_unref (src);

  /* in frames, the stop past it too */
  fail_unless (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 1000, GST_SEEK_TYPE_SET, 2000));
  play_frames (ds, p, sink, 0, 0, 10, 0, FIX_N);

  /* back into range: the stop past the end is the end */
  fail_unless (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 8, GST_SEEK_TYPE_SET, 1000));
  check_preroll (ds, sink, 8, 10, 0, FIX_N, FRAME_TIME (8, 10));
  play_frames (ds, p, sink, 8, 2, 10, 0, FIX_N);

  /* refused, and nothing broken: reverse playback, bytes */
  gst_element_set_state (p, GST_STATE_PAUSED);
  wait_state (p);
  fail_if (gst_element_seek (p, -1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_SET, GST_SECOND / 2));
  fail_if (gst_element_seek (p, 1.0, GST_FORMAT_BYTES, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 784, GST_SEEK_TYPE_NONE, -1));
  fail_unless (seek_paused (p, GST_FORMAT_DEFAULT, GST_SEEK_FLAG_FLUSH,
          GST_SEEK_TYPE_SET, 2, GST_SEEK_TYPE_SET, 3));
  check_preroll (ds, sink, 2, 10, 0, FIX_N, FRAME_TIME (2, 10));
  play_frames (ds, p, sink, 2, 1, 10, 0, FIX_N);

  seek_pipeline_free (p, sink);
  cbir_dataset_free (ds);
}

GST_END_TEST;

/* count=0 with loop=true: nothing to play, EOS (it divided by zero) */
GST_START_TEST (test_count_zero_loop)
{
  GstHarness *h = src_harness ("count=0 loop=true");

  gst_harness_play (h);
  expect_eos (h);
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
  tcase_add_test (tc, test_seek_queries);
  tcase_add_test (tc, test_seek_time);
  tcase_add_test (tc, test_seek_frames);
  tcase_add_test (tc, test_seek_segment);
  tcase_add_test (tc, test_seek_loop);
  tcase_add_test (tc, test_seek_past_end);
  tcase_add_test (tc, test_count_zero_loop);
  return s;
}

GST_CHECK_MAIN (cbiridxsrc);

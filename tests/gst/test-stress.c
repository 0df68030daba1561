/* Stress: property writes from another thread while playing, state cycles,
 * several pipelines in parallel threads on one gallery. Meant to run under
 * ThreadSanitizer too (scripts/sanitize.sh tsan); asserts that nothing
 * errors, buffers keep flowing and parallel results equal a lone run's.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"

static gchar *dir;
static gchar *model_path;
static gchar *gallery_path;

static void
setup (void)
{
  dir = tmpdir_new ();
  model_path = make_model (dir, "keras-dae");
  gallery_path = make_gallery (dir, model_path, 48, "g.safetensors");
}

static void
teardown (void)
{
  g_clear_pointer (&model_path, g_free);
  g_clear_pointer (&gallery_path, g_free);
  tmpdir_free (dir);
  dir = NULL;
}

static void
on_handoff (GstElement * sink, GstBuffer * buf, GstPad * pad, gpointer data)
{
  g_atomic_int_inc ((gint *) data);
}

static GstElement *
make_pipeline (const gchar * desc, gint * frames)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);
  GstElement *sink;

  fail_unless (p != NULL && err == NULL, "%s: %s", desc,
      err ? err->message : "?");
  sink = gst_bin_get_by_name (GST_BIN (p), "sink");
  fail_unless (sink != NULL);
  g_object_set (sink, "signal-handoffs", TRUE, NULL);
  g_signal_connect (sink, "handoff", G_CALLBACK (on_handoff), frames);
  gst_object_unref (sink);
  return p;
}

/* No error or warning posted so far. */
static void
assert_bus_clean (GstElement * p)
{
  GstBus *bus = gst_element_get_bus (p);
  GstMessage *m = gst_bus_pop_filtered (bus,
      GST_MESSAGE_ERROR | GST_MESSAGE_WARNING);

  if (m) {
    GError *err = NULL;
    gchar *dbg = NULL;
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR)
      gst_message_parse_error (m, &err, &dbg);
    else
      gst_message_parse_warning (m, &err, &dbg);
    fail ("%s from %s: %s (%s)", GST_MESSAGE_TYPE_NAME (m),
        GST_OBJECT_NAME (GST_MESSAGE_SRC (m)), err->message, dbg);
  }
  gst_object_unref (bus);
}

/* Waits until at least `n` more frames than `from` reached the sink of
 * p, failing on an error or warning. */
static void
wait_frames (GstElement * p, gint * frames, gint from, gint n)
{
  /* 60 s, times Check's CK_TIMEOUT_MULTIPLIER (valgrind runs use it) */
  const gchar *mul = g_getenv ("CK_TIMEOUT_MULTIPLIER");
  gint64 end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC *
      MAX (1, mul ? g_ascii_strtoll (mul, NULL, 10) : 1);

  while (g_atomic_int_get (frames) < from + n) {
    assert_bus_clean (p);
    fail_unless (g_get_monotonic_time () < end, "no frames (%d of %d)",
        g_atomic_int_get (frames) - from, n);
    g_usleep (1000);
  }
}

typedef struct
{
  GstElement *pipeline;
  gint *frames;
  volatile gint stop;
} Writer;

/* Sets every property that may change while playing, over and over. */
static gpointer
property_writer (gpointer data)
{
  Writer *w = data;
  GstElement *noise = gst_bin_get_by_name (GST_BIN (w->pipeline), "noise");
  GstElement *search = gst_bin_get_by_name (GST_BIN (w->pipeline), "search");
  GstElement *overlay = gst_bin_get_by_name (GST_BIN (w->pipeline), "ovl");
  guint i;

  for (i = 0; !g_atomic_int_get (&w->stop); i++) {
    g_object_set (noise, "level", (gfloat) (i % 5) / 10.0f, NULL);
    gst_util_set_object_arg (G_OBJECT (noise), "kind", i % 2 ? "gaussian" :
        "salt-and-pepper");
    g_object_set (search, "k", 1 + i % 7, "max-distance",
        i % 3 ? G_MAXFLOAT : 1.0f, "post-messages", i % 2 == 0, NULL);
    if (overlay) {
      GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS
          (overlay), "position");
      GEnumClass *ec = g_type_class_ref (ps->value_type);
      g_object_set (overlay, "show-query", i % 2 == 0, "max-hits", i % 4,
          "scale", 1 + i % 3, "draw-boxes", i % 3 == 0, NULL);
      g_object_set (overlay, "position", ec->values[i % ec->n_values].value,
          NULL);
      g_type_class_unref (ec);
    }
    {
      guint k;
      gfloat level;
      guint64 invalid;
      g_object_get (search, "k", &k, "invalid-codes", &invalid, NULL);
      g_object_get (noise, "level", &level, NULL);
    }
    g_thread_yield ();
  }
  gst_object_unref (noise);
  gst_object_unref (search);
  if (overlay)
    gst_object_unref (overlay);
  return NULL;
}

GST_START_TEST (test_property_writes_while_playing)
{
  gint frames = 0;
#ifdef HAVE_OVERLAY
  const gchar *tail = "videoconvert ! video/x-raw,format=BGRx ! "
      "cbiroverlay name=ovl gallery=%s ! queue max-size-"
      "buffers=4 ! fakesink name=sink sync=false";
#else
  const gchar *tail = "queue max-size-buffers=4 ! fakesink name=sink "
      "sync=false%.0s";
#endif
  gchar *fmt = g_strdup_printf ("cbiridxsrc images=%s loop=true "
      "framerate=1000/1 ! queue max-size-buffers=4 ! cbirnoise name=noise "
      "seed=3 ! cbirencode model=%s ! queue max-size-buffers=4 ! "
      "cbirsearch name=search gallery=%s ! %s", FIX_IMAGES, model_path,
      gallery_path, tail);
  gchar *desc = g_strdup_printf (fmt, gallery_path);
  GstElement *p = make_pipeline (desc, &frames);
  Writer w = { p, &frames, 0 };
  GThread *t;
  GstBus *bus = gst_element_get_bus (p);
  GstMessage *m;

  fail_unless (gst_element_set_state (p, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  t = g_thread_new ("writer", property_writer, &w);
  wait_frames (p, &frames, 0, 2000);
  g_atomic_int_set (&w.stop, 1);
  g_thread_join (t);
  wait_frames (p, &frames, g_atomic_int_get (&frames), 20);
  assert_bus_clean (p);
  fail_unless (gst_element_send_event (p, gst_event_new_eos ()));
  m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (m != NULL && GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS);
  gst_message_unref (m);
  fail_unless_equals_int (gst_element_set_state (p, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  gst_object_unref (bus);
  gst_object_unref (p);
  g_free (desc);
  g_free (fmt);
}

GST_END_TEST;

/* NULL -> PLAYING -> PAUSED -> PLAYING -> READY -> NULL, again and again,
 * with frames flowing in every PLAYING and nothing posted but states. */
GST_START_TEST (test_state_cycles)
{
  gint frames = 0;
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s loop=true "
      "framerate=1000/1 ! cbirencode model=%s ! queue max-size-buffers=2 ! "
      "cbirsearch gallery=%s ! fakesink name=sink sync=false", FIX_IMAGES,
      model_path, gallery_path);
  GstElement *p = make_pipeline (desc, &frames);
  static const GstState cycle[] = { GST_STATE_PLAYING, GST_STATE_PAUSED,
    GST_STATE_PLAYING, GST_STATE_READY, GST_STATE_PLAYING, GST_STATE_NULL
  };
  guint round, i;

  for (round = 0; round < 8; round++) {
    for (i = 0; i < G_N_ELEMENTS (cycle); i++) {
      GstStateChangeReturn r = gst_element_set_state (p, cycle[i]);
      fail_unless (r != GST_STATE_CHANGE_FAILURE, "round %u step %u", round,
          i);
      fail_unless (gst_element_get_state (p, NULL, NULL, 30 * GST_SECOND)
          == GST_STATE_CHANGE_SUCCESS, "round %u step %u", round, i);
      if (cycle[i] == GST_STATE_PLAYING)
        wait_frames (p, &frames, g_atomic_int_get (&frames), 5);
      assert_bus_clean (p);
    }
  }
  gst_object_unref (p);
  g_free (desc);
}

GST_END_TEST;

typedef struct
{
  const gchar *desc;
  GString *labels;              /* "label,confidence;" per result */
} Run;

static gpointer
run_collect (gpointer data)
{
  Run *r = data;
  GList *msgs = NULL, *l;
  GstMessage *end = run_pipeline (r->desc, "cbir-result", &msgs);

  r->labels = g_string_new (GST_MESSAGE_TYPE (end) == GST_MESSAGE_EOS ?
      "" : "ERROR");
  for (l = msgs; l; l = l->next) {
    const GstStructure *s = gst_message_get_structure (l->data);
    gint label = -2;
    gdouble conf = -1;
    gst_structure_get_int (s, "label", &label);
    gst_structure_get_double (s, "confidence", &conf);
    g_string_append_printf (r->labels, "%d,%.6f;", label, conf);
  }
  g_list_free_full (msgs, (GDestroyNotify) gst_message_unref);
  gst_message_unref (end);
  return NULL;
}

/* Four pipelines in four threads on one gallery file (diffusion re-ranking
 * on, the default): each one's results equal a lone run's. */
GST_START_TEST (test_parallel_pipelines_one_gallery)
{
  gchar *desc = g_strdup_printf ("cbiridxsrc images=%s count=64 ! "
      "cbirnoise seed=5 level=0.2 ! cbirencode model=%s ! cbirsearch "
      "gallery=%s ! fakesink", FIX_IMAGES, model_path, gallery_path);
  Run lone = { desc, NULL }, runs[4];
  GThread *t[4];
  guint i;

  run_collect (&lone);
  fail_unless (lone.labels->len > 0 && !g_str_has_prefix (lone.labels->str,
          "ERROR"));
  for (i = 0; i < 4; i++) {
    runs[i].desc = desc;
    runs[i].labels = NULL;
    t[i] = g_thread_new ("run", run_collect, &runs[i]);
  }
  for (i = 0; i < 4; i++) {
    g_thread_join (t[i]);
    fail_unless_equals_string (runs[i].labels->str, lone.labels->str);
    g_string_free (runs[i].labels, TRUE);
  }
  g_string_free (lone.labels, TRUE);
  g_free (desc);
}

GST_END_TEST;

static Suite *
stress_suite (void)
{
  Suite *s = suite_create ("stress");
  TCase *tc = tcase_create ("general");

  tcase_set_timeout (tc, 600);
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_property_writes_while_playing);
  tcase_add_test (tc, test_state_cycles);
  tcase_add_test (tc, test_parallel_pipelines_one_gallery);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (stress);

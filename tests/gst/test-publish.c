/* cbirpublish: the JSON of each frame (result schema 1) to a file, a real
 * MQTT broker (mosquitto, started here on 127.0.0.1 and a free port) and
 * Kafka (librdkafka's mock cluster).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CBIR_NO_MQTT
#include <mosquitto.h>
#endif
#ifndef CBIR_NO_KAFKA
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#endif

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

/* cbirencode ! cbirsearch ! cbirpublish (publish_props) on a gallery of
 * the first 32 fixture digits; the bus collects the search's messages */
typedef struct
{
  gchar *model_path, *gallery_path;
  GstHarness *h;
  GstBus *bus;
  CbirDataset *ds;
  GstElement *publish;
} Rig;

static void
rig_init (Rig * r, const gchar * publish_props)
{
  gchar *desc, *caps = gray8_caps (28, 28);

  r->model_path = make_model (dir, "keras-dae");
  r->gallery_path = make_gallery (dir, r->model_path, 32, "g.safetensors");
  desc = g_strdup_printf ("cbirencode model=%s ! cbirsearch gallery=%s ! "
      "cbirpublish name=publish %s", r->model_path, r->gallery_path,
      publish_props);
  r->h = gst_harness_new_parse (desc);
  r->bus = gst_bus_new ();
  gst_element_set_bus (r->h->element, r->bus);
  /* started again with the bus set: what start posts is seen */
  fail_unless (gst_element_set_state (r->h->element, GST_STATE_NULL) ==
      GST_STATE_CHANGE_SUCCESS);
  fail_unless (gst_element_set_state (r->h->element, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  r->publish = gst_bin_get_by_name (GST_BIN (r->h->element), "publish");
  gst_harness_set_src_caps_str (r->h, caps);
  r->ds = load_fixture ();
  g_free (desc);
  g_free (caps);
}

static void
rig_push (Rig * r, guint i)
{
  fail_unless_equals_int (gst_harness_push (r->h, gray8_buffer (r->ds->images
              + (gsize) (i % FIX_N) * 784, 28, 28, i)), GST_FLOW_OK);
}

static void
rig_eos (Rig * r)
{
  fail_unless (gst_harness_push_event (r->h, gst_event_new_eos ()));
}

static guint64
rig_count (Rig * r, const gchar * what)
{
  guint64 v = 0;

  g_object_get (r->publish, what, &v, NULL);
  return v;
}

/* the next message of that type and (element) name, or NULL */
static GstMessage *
rig_message (Rig * r, GstMessageType type, const gchar * name)
{
  GstMessage *m;

  while ((m = gst_bus_pop_filtered (r->bus, type))) {
    if (!name || gst_structure_has_name (gst_message_get_structure (m),
            name))
      return m;
    gst_message_unref (m);
  }
  return NULL;
}

static void
rig_clear (Rig * r)
{
  gst_object_unref (r->publish);
  gst_element_set_bus (r->h->element, NULL);
  gst_object_unref (r->bus);
  gst_harness_teardown (r->h);
  cbir_dataset_free (r->ds);
  g_free (r->gallery_path);
  g_free (r->model_path);
}

static JsonNode *
parse_json (const gchar * text, gssize len)
{
  JsonParser *p = json_parser_new ();
  GError *err = NULL;
  JsonNode *n;

  fail_unless (json_parser_load_from_data (p, text, len, &err),
      "not JSON: %s: %.200s", err ? err->message : "?", text);
  n = json_node_copy (json_parser_get_root (p));
  g_object_unref (p);
  return n;
}

/* the lines of a JSON Lines file, parsed */
static GPtrArray *
read_json_lines (const gchar * path)
{
  GPtrArray *a = g_ptr_array_new_with_free_func ((GDestroyNotify)
      json_node_unref);
  gchar *text = NULL, **lines, **l;

  fail_unless (g_file_get_contents (path, &text, NULL, NULL), "no %s", path);
  fail_unless (*text == '\0' || g_str_has_suffix (text, "\n"));
  lines = g_strsplit (text, "\n", -1);
  for (l = lines; *l; l++)
    if (**l)
      g_ptr_array_add (a, parse_json (*l, -1));
  g_strfreev (lines);
  g_free (text);
  return a;
}

static const gchar *const frame_keys[] = {
  "schema-version", "utc", "stream-id", "element", "model", "gallery",
  "gallery-size", "metric", "rerank", "timestamp", "stream-time",
  "running-time", "duration", "frame", "frame-width", "frame-height", NULL
};

/* Each field of the message is in the JSON under its name with '-' as
 * '_' (frame fields at the top, the others in the region), same value. */
static void
assert_json_equals_message (JsonObject * o, const GstStructure * s)
{
  JsonArray *regions = json_object_get_array_member (o, "regions");
  JsonObject *region;
  guint i;

  fail_unless_equals_int (json_array_get_length (regions), 1);
  region = json_array_get_object_element (regions, 0);
  for (i = 0; i < (guint) gst_structure_n_fields (s); i++) {
    const gchar *f = gst_structure_nth_field_name (s, i);
    const GValue *v = gst_structure_get_value (s, f);
    gchar *key = g_strdelimit (g_strdup (f), "-", '_');
    JsonObject *in = g_strv_contains (frame_keys, f) ? o : region;
    JsonNode *n = json_object_get_member (in, key);

    fail_unless (n != NULL, "field %s not in the JSON as %s", f, key);
    if (G_VALUE_HOLDS_INT (v)) {
      fail_unless_equals_int64 (json_node_get_int (n), g_value_get_int (v));
    } else if (G_VALUE_HOLDS_UINT (v)) {
      fail_unless_equals_int64 (json_node_get_int (n), g_value_get_uint (v));
    } else if (G_VALUE_HOLDS_UINT64 (v)) {
      fail_unless_equals_uint64 ((guint64) json_node_get_int (n),
          g_value_get_uint64 (v));
    } else if (G_VALUE_HOLDS_DOUBLE (v)) {
      fail_unless (fabs (json_node_get_double (n) - g_value_get_double (v))
          < 1e-6, "%s: %g vs %g", f, json_node_get_double (n),
          g_value_get_double (v));
    } else if (G_VALUE_HOLDS_BOOLEAN (v)) {
      fail_unless_equals_int (json_node_get_boolean (n),
          g_value_get_boolean (v));
    } else if (G_VALUE_HOLDS_STRING (v)) {
      fail_unless_equals_string (json_node_get_string (n),
          g_value_get_string (v));
    } else if (GST_VALUE_HOLDS_ARRAY (v)) {
      JsonArray *a = json_node_get_array (n);
      guint j;

      fail_unless_equals_int (json_array_get_length (a),
          gst_value_array_get_size (v));
      for (j = 0; j < json_array_get_length (a); j++) {
        const GValue *e = gst_value_array_get_value (v, j);
        if (G_VALUE_HOLDS_FLOAT (e)) {
          fail_unless_equals_float ((gfloat) json_array_get_double_element
              (a, j), g_value_get_float (e));
        } else if (G_VALUE_HOLDS_UINT (e)) {
          fail_unless_equals_int64 (json_array_get_int_element (a, j),
              g_value_get_uint (e));
        } else {
          fail_unless_equals_int64 (json_array_get_int_element (a, j),
              g_value_get_int (e));
        }
      }
    } else {
      fail ("field %s: unexpected type %s", f, G_VALUE_TYPE_NAME (v));
    }
    g_free (key);
  }
}

/* JSON Lines: one object a frame with a result; its keys and values are
 * the bus message's; the frame's label is its region's. */
GST_START_TEST (test_file_lines_equal_messages)
{
  gchar *path = g_build_filename (dir, "r.jsonl", NULL);
  gchar *props = g_strdup_printf ("location=%s", path);
  GPtrArray *lines;
  Rig r;
  guint i;

  rig_init (&r, props);
  for (i = 0; i < 10; i++)
    rig_push (&r, i);
  rig_eos (&r);
  lines = read_json_lines (path);
  fail_unless_equals_int (lines->len, 10);
  for (i = 0; i < 10; i++) {
    JsonObject *o = json_node_get_object (g_ptr_array_index (lines, i));
    JsonObject *region = json_array_get_object_element
        (json_object_get_array_member (o, "regions"), 0);
    GstMessage *m = rig_message (&r, GST_MESSAGE_ELEMENT, "cbir-result");

    fail_unless (m != NULL, "no message for frame %u", i);
    assert_json_equals_message (o, gst_message_get_structure (m));
    fail_unless_equals_int (json_object_get_int_member (o, "schema_version"),
        1);
    fail_unless_equals_int (json_object_get_int_member (o, "frame"), i);
    fail_unless_equals_int (json_object_get_int_member (o, "label"),
        json_object_get_int_member (region, "label"));
    fail_unless (json_node_is_null (json_object_get_member (region, "x")));
    /* "2026-12-03T12:45:46.123456Z" */
    fail_unless (g_regex_match_simple ("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:"
            "\\d\\d\\.\\d{6}Z$", json_object_get_string_member (o, "utc"), 0,
            0));
    gst_message_unref (m);
  }
  fail_unless_equals_uint64 (rig_count (&r, "published"), 10);
  g_ptr_array_unref (lines);
  rig_clear (&r);
  g_free (props);
  g_free (path);
}

GST_END_TEST;

/* format=json atomic=true: the location appears, a JSON array, only at the
 * end of the stream; stopped before it, an older file is left as it was */
GST_START_TEST (test_file_json_array_atomic)
{
  gchar *path = g_build_filename (dir, "r.json", NULL);
  gchar *props = g_strdup_printf ("location=%s format=json atomic=true",
      path);
  gchar *text = NULL;
  JsonNode *n;
  Rig r;
  guint i;

  write_file (path, "old", -1);
  rig_init (&r, props);
  for (i = 0; i < 5; i++)
    rig_push (&r, i);
  fail_unless (g_file_get_contents (path, &text, NULL, NULL));
  fail_unless_equals_string (text, "old");
  g_free (text);
  rig_clear (&r);               /* stopped without EOS */
  fail_unless (g_file_get_contents (path, &text, NULL, NULL));
  fail_unless_equals_string (text, "old");
  g_free (text);

  rig_init (&r, props);
  for (i = 0; i < 5; i++)
    rig_push (&r, i);
  rig_eos (&r);
  fail_unless (g_file_get_contents (path, &text, NULL, NULL));
  n = parse_json (text, -1);
  fail_unless (JSON_NODE_HOLDS_ARRAY (n));
  fail_unless_equals_int (json_array_get_length (json_node_get_array (n)), 5);
  json_node_unref (n);
  g_free (text);
  rig_clear (&r);
  g_free (props);
  g_free (path);
}

GST_END_TEST;

static GstMessage *
start_error (const gchar * props)
{
  gchar *desc = g_strdup_printf ("fakesrc num-buffers=1 ! cbirpublish %s",
      props);
  GstMessage *m = run_pipeline (desc, NULL, NULL);

  g_free (desc);
  return m;
}

/* a file that cannot be written is an error naming it: a missing folder
 * at start, a full disk (/dev/full) at the first frame; settings that
 * cannot work are errors at start */
GST_START_TEST (test_errors_name_the_problem)
{
  gchar *missing = g_build_filename (dir, "no", "such", "r.jsonl", NULL);
  gchar *props = g_strdup_printf ("location=%s", missing);
  GstMessage *m;
  Rig r;

  m = start_error (props);
  assert_error_mentions (m, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_OPEN_WRITE, missing, "No such file");
  gst_message_unref (m);
  m = start_error ("");
  assert_error_mentions (m, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "location", NULL);
  gst_message_unref (m);
  m = start_error ("location=x append=true format=json");
  assert_error_mentions (m, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "append", NULL);
  gst_message_unref (m);
#ifndef CBIR_NO_MQTT
  m = start_error ("method=mqtt address=localhost:notaport");
  assert_error_mentions (m, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "localhost:notaport", NULL);
  gst_message_unref (m);
  m = start_error ("method=mqtt topic=cbir/#");
  assert_error_mentions (m, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "cbir/#", NULL);
  gst_message_unref (m);
  g_free (props);
  props = g_strdup_printf ("method=mqtt tls-ca-file=%s", missing);
  m = start_error (props);
  assert_error_mentions (m, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ,
      missing, "tls-ca-file");
  gst_message_unref (m);
#endif
#ifndef CBIR_NO_KAFKA
  m = start_error ("method=kafka kafka-config=no.such.setting=1");
  assert_error_mentions (m, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "no.such.setting", NULL);
  gst_message_unref (m);
#endif

  if (g_file_test ("/dev/full", G_FILE_TEST_EXISTS)) {
    rig_init (&r, "location=/dev/full");
    fail_unless_equals_int (gst_harness_push (r.h, gray8_buffer (r.ds->images,
                28, 28, 0)), GST_FLOW_ERROR);
    m = rig_message (&r, GST_MESSAGE_ERROR, NULL);
    assert_error_mentions (m, GST_RESOURCE_ERROR,
        GST_RESOURCE_ERROR_NO_SPACE_LEFT, "/dev/full", NULL);
    gst_message_unref (m);
    rig_clear (&r);
  }
  g_free (props);
  g_free (missing);
}

GST_END_TEST;

/* frames without a result are skipped, or with empty-frames=true written
 * with their frame fields and no region; embedding=true adds the code */
GST_START_TEST (test_empty_frames_and_embedding)
{
  gchar *path = g_build_filename (dir, "e.jsonl", NULL);
  gchar *props = g_strdup_printf ("location=%s empty-frames=true", path);
  GstHarness *h;
  GPtrArray *lines;
  JsonObject *o;
  guint i;
  Rig r;

  /* (the third time without a frame rate: frames are counted from 0) */
  for (i = 0; i < 3; i++) {
    gchar *desc = g_strdup_printf ("cbirpublish location=%s%s", path,
        i ? " empty-frames=true" : "");
    guint j;

    h = gst_harness_new_parse (desc);
    gst_harness_set_src_caps_str (h, i == 2 ?
        "video/x-raw,format=GRAY8,width=4,height=4" :
        "video/x-raw,format=GRAY8,width=4,height=4,framerate=10/1");
    for (j = 0; j < 3; j++) {
      GstBuffer *b = gst_buffer_new_allocate (NULL, 16, NULL);
      GST_BUFFER_PTS (b) = j * GST_SECOND / 10;
      fail_unless_equals_int (gst_harness_push (h, b), GST_FLOW_OK);
    }
    fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
    gst_harness_teardown (h);
    lines = read_json_lines (path);
    fail_unless_equals_int (lines->len, i ? 3 : 0);
    for (j = 0; j < lines->len; j++) {
      o = json_node_get_object (g_ptr_array_index (lines, j));
      fail_unless_equals_int (json_object_get_int_member (o, "frame"), j);
      fail_unless_equals_int (json_object_get_int_member (o, "frame_width"),
          4);
      fail_unless_equals_int (json_array_get_length
          (json_object_get_array_member (o, "regions")), 0);
      fail_unless_equals_int (json_object_get_int_member (o, "label"), -1);
      fail_unless (!json_object_get_boolean_member (o, "match"));
    }
    g_ptr_array_unref (lines);
    g_free (desc);
  }

  g_free (props);
  props = g_strdup_printf ("location=%s embedding=true", path);
  rig_init (&r, props);
  rig_push (&r, 3);
  rig_eos (&r);
  lines = read_json_lines (path);
  fail_unless_equals_int (lines->len, 1);
  o = json_node_get_object (g_ptr_array_index (lines, 0));
  {
    JsonObject *region = json_array_get_object_element
        (json_object_get_array_member (o, "regions"), 0);
    JsonArray *e = json_object_get_array_member (region, "embedding");
    CbirModel *m = cbir_model_load (r.model_path, NULL);
    guint dim;
    gfloat *codes = engine_encode_all (m, r.ds, &dim);

    fail_unless (e != NULL);
    fail_unless_equals_int (json_array_get_length (e), dim);
    for (i = 0; i < dim; i++)
      fail_unless_equals_float ((gfloat) json_array_get_double_element (e, i),
          codes[3 * dim + i]);
    g_free (codes);
    cbir_model_free (m);
  }
  g_ptr_array_unref (lines);
  rig_clear (&r);
  g_free (props);
  g_free (path);
}

GST_END_TEST;


/* utc is the reference timestamp's when upstream set one (an RTP/NTP
 * sender's wall clock: x-unix, or x-ntp counted from 1900), else now. */
GST_START_TEST (test_utc_from_reference_timestamp)
{
  gchar *path = g_build_filename (dir, "u.jsonl", NULL);
  gchar *desc = g_strdup_printf ("cbirpublish location=%s empty-frames=true",
      path);
  GstHarness *h = gst_harness_new_parse (desc);
  GstCaps *unix_caps = gst_caps_new_empty_simple ("timestamp/x-unix");
  GstCaps *ntp_caps = gst_caps_new_empty_simple ("timestamp/x-ntp");
  const guint64 t = G_GUINT64_CONSTANT (1700000000123456789);
  GPtrArray *lines;
  GstBuffer *b;
  gint i;

  gst_harness_set_src_caps_str (h, "video/x-raw,format=GRAY8,width=4,"
      "height=4,framerate=10/1");
  for (i = 0; i < 3; i++) {
    b = gst_buffer_new_allocate (NULL, 16, NULL);
    GST_BUFFER_PTS (b) = i * GST_SECOND / 10;
    if (i == 0)
      gst_buffer_add_reference_timestamp_meta (b, unix_caps, t,
          GST_CLOCK_TIME_NONE);
    else if (i == 1)
      gst_buffer_add_reference_timestamp_meta (b, ntp_caps,
          t + G_GUINT64_CONSTANT (2208988800) * GST_SECOND,
          GST_CLOCK_TIME_NONE);
    fail_unless_equals_int (gst_harness_push (h, b), GST_FLOW_OK);
  }
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  gst_harness_teardown (h);
  lines = read_json_lines (path);
  fail_unless_equals_int (lines->len, 3);
  for (i = 0; i < 2; i++)
    fail_unless_equals_string (json_object_get_string_member
        (json_node_get_object (g_ptr_array_index (lines, i)), "utc"),
        "2023-11-14T22:13:20.123456Z");
  /* the third: the system clock, this year or later */
  fail_unless (strcmp (json_object_get_string_member (json_node_get_object
              (g_ptr_array_index (lines, 2)), "utc"), "2026") > 0);
  g_ptr_array_unref (lines);
  gst_caps_unref (unix_caps);
  gst_caps_unref (ntp_caps);
  g_free (desc);
  g_free (path);
}

GST_END_TEST;

#ifndef CBIR_NO_MQTT
/* ---- a real mosquitto broker ---- */

typedef struct
{
  GPid pid;
  guint port;
  gchar *conf;
} Broker;

static guint
free_port (void)
{
  struct sockaddr_in a = { 0 };
  socklen_t len = sizeof a;
  int fd = socket (AF_INET, SOCK_STREAM, 0);

  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  fail_unless (bind (fd, (struct sockaddr *) &a, sizeof a) == 0);
  fail_unless (getsockname (fd, (struct sockaddr *) &a, &len) == 0);
  close (fd);
  return ntohs (a.sin_port);
}

static gboolean
port_open (guint port)
{
  struct sockaddr_in a = { 0 };
  int fd = socket (AF_INET, SOCK_STREAM, 0);
  gboolean ok;

  a.sin_family = AF_INET;
  a.sin_port = htons (port);
  a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  ok = connect (fd, (struct sockaddr *) &a, sizeof a) == 0;
  close (fd);
  return ok;
}

/* mosquitto on 127.0.0.1:port with persistence in dir (a broker stopped
 * with SIGTERM keeps the subscriber's session and its queued messages) */
static void
broker_start (Broker * b)
{
  const gchar *exe = g_getenv ("CBIR_MOSQUITTO");
  gchar *argv[] = { (gchar *) exe, (gchar *) "-c", b->conf, NULL };
  GError *err = NULL;
  gint i;

  fail_unless (exe != NULL && g_file_test (exe, G_FILE_TEST_IS_EXECUTABLE),
      "mosquitto not found (install it: bash scripts/setup.sh)");
  if (!b->port) {
    gchar *text;

    b->port = free_port ();
    b->conf = g_build_filename (dir, "mosquitto.conf", NULL);
    argv[2] = b->conf;
    text = g_strdup_printf ("listener %u 127.0.0.1\nallow_anonymous true\n"
        "persistence true\npersistence_location %s/\nuser %s\n", b->port,
        dir, g_get_user_name ());
    write_file (b->conf, text, -1);
    g_free (text);
  }
  fail_unless (g_spawn_async (NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD |
          G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
          NULL, &b->pid, &err), "mosquitto: %s", err ? err->message : "?");
  for (i = 0; i < 200 && !port_open (b->port); i++)
    g_usleep (25000);
  fail_unless (port_open (b->port), "mosquitto did not listen on %u",
      b->port);
}

static void
broker_stop (Broker * b, gint sig)
{
  if (!b->pid)
    return;
  kill (b->pid, sig);
  waitpid (b->pid, NULL, 0);
  g_spawn_close_pid (b->pid);
  b->pid = 0;
}

/* A subscriber of topic: every payload received, in order. */
typedef struct
{
  struct mosquitto *mosq;
  GMutex lock;
  GPtrArray *payloads;
  gchar *topic;
  gint connects;
} Sub;

static void
sub_on_connect (struct mosquitto *mosq, void *obj, int rc)
{
  Sub *s = obj;

  if (rc == 0)
    mosquitto_subscribe (mosq, NULL, s->topic, 1);
  g_mutex_lock (&s->lock);
  s->connects++;
  g_mutex_unlock (&s->lock);
}

static void
sub_on_message (struct mosquitto *mosq, void *obj,
    const struct mosquitto_message *msg)
{
  Sub *s = obj;

  g_mutex_lock (&s->lock);
  g_ptr_array_add (s->payloads, g_strndup (msg->payload, msg->payloadlen));
  g_mutex_unlock (&s->lock);
}

static void
sub_start (Sub * s, guint port, const gchar * topic)
{
  gint i;

  mosquitto_lib_init ();
  g_mutex_init (&s->lock);
  s->payloads = g_ptr_array_new_with_free_func (g_free);
  s->topic = g_strdup (topic);
  /* a persistent session: what is published while it is away is kept */
  s->mosq = mosquitto_new ("cbir-test-subscriber", false, s);
  mosquitto_connect_callback_set (s->mosq, sub_on_connect);
  mosquitto_message_callback_set (s->mosq, sub_on_message);
  mosquitto_reconnect_delay_set (s->mosq, 1, 1, false);
  fail_unless_equals_int (mosquitto_connect (s->mosq, "127.0.0.1", port, 10),
      MOSQ_ERR_SUCCESS);
  fail_unless_equals_int (mosquitto_loop_start (s->mosq), MOSQ_ERR_SUCCESS);
  for (i = 0; i < 200; i++) {
    gint connects;

    g_mutex_lock (&s->lock);
    connects = s->connects;
    g_mutex_unlock (&s->lock);
    if (connects)
      break;
    g_usleep (25000);
  }
  g_usleep (200000);            /* the SUBSCRIBE on its way */
}

/* the distinct frame numbers received (QoS 1 is at least once: a result
 * in flight when the broker went away may come twice) */
static guint
sub_distinct (Sub * s)
{
  GHashTable *seen = g_hash_table_new (NULL, NULL);
  guint i, n;

  g_mutex_lock (&s->lock);
  for (i = 0; i < s->payloads->len; i++) {
    JsonNode *node = parse_json (g_ptr_array_index (s->payloads, i), -1);
    gint64 f = json_object_get_int_member (json_node_get_object (node),
        "frame");

    g_hash_table_add (seen, GINT_TO_POINTER ((gint) f + 1));
    json_node_unref (node);
  }
  g_mutex_unlock (&s->lock);
  n = g_hash_table_size (seen);
  g_hash_table_unref (seen);
  return n;
}

/* waits (10 s at most) for n distinct frames; returns how many came */
static guint
sub_wait (Sub * s, guint n)
{
  guint got = 0;
  gint i;

  for (i = 0; i < 400; i++) {
    got = sub_distinct (s);
    if (got >= n)
      break;
    g_usleep (25000);
  }
  return got;
}

static void
sub_stop (Sub * s)
{
  mosquitto_disconnect (s->mosq);
  mosquitto_loop_stop (s->mosq, false);
  mosquitto_destroy (s->mosq);
  g_ptr_array_unref (s->payloads);
  g_free (s->topic);
  g_mutex_clear (&s->lock);
}

/* the frame numbers received, each once, in order 0..n-1 */
static void
assert_frames (Sub * s, guint n)
{
  gboolean *seen = g_new0 (gboolean, n);
  guint i;

  g_mutex_lock (&s->lock);
  for (i = 0; i < s->payloads->len; i++) {
    JsonNode *node = parse_json (g_ptr_array_index (s->payloads, i), -1);
    gint64 f = json_object_get_int_member (json_node_get_object (node),
        "frame");

    fail_unless (f >= 0 && f < n, "frame %" G_GINT64_FORMAT, f);
    seen[f] = TRUE;
    json_node_unref (node);
  }
  g_mutex_unlock (&s->lock);
  for (i = 0; i < n; i++)
    fail_unless (seen[i], "frame %u never arrived", i);
  g_free (seen);
}

/* Every frame arrives, also those published while the broker was down
 * (held, then sent when it is back); the pipeline never waits for it; a
 * warning says it was lost. */
GST_START_TEST (test_mqtt_broker_restart)
{
  Broker b = { 0, };
  Sub s = { 0, };
  gchar *props;
  GstMessage *m;
  Rig r;
  guint i;

  broker_start (&b);
  sub_start (&s, b.port, "cbir/test");
  props = g_strdup_printf ("method=mqtt address=127.0.0.1:%u topic=cbir/test "
      "qos=1 reconnect-delay-max=1 flush-timeout=10000", b.port);
  rig_init (&r, props);
  for (i = 0; i < 20; i++)
    rig_push (&r, i);
  fail_unless_equals_int (sub_wait (&s, 20), 20);

  broker_stop (&b, SIGTERM);
  for (i = 20; i < 40; i++)     /* returns at once: nothing waits */
    rig_push (&r, i);
  m = NULL;
  for (i = 0; i < 200 && !m; i++) {
    m = rig_message (&r, GST_MESSAGE_WARNING, NULL);
    if (!m)
      g_usleep (25000);
  }
  fail_unless (m != NULL, "no warning that the broker was lost");
  {
    GError *err = NULL;
    gchar *where = g_strdup_printf ("127.0.0.1:%u", b.port);

    gst_message_parse_warning (m, &err, NULL);
    fail_unless (strstr (err->message, where), "%s", err->message);
    g_error_free (err);
    g_free (where);
  }
  gst_message_unref (m);

  broker_start (&b);
  for (i = 40; i < 60; i++)
    rig_push (&r, i);
  rig_eos (&r);
  fail_unless_equals_int (sub_wait (&s, 60), 60);
  assert_frames (&s, 60);
  fail_unless_equals_uint64 (rig_count (&r, "published"), 60);
  fail_unless_equals_uint64 (rig_count (&r, "dropped"), 0);
  m = rig_message (&r, GST_MESSAGE_ELEMENT, "cbir-publish");
  fail_unless (m != NULL);
  gst_message_unref (m);

  rig_clear (&r);
  sub_stop (&s);
  broker_stop (&b, SIGTERM);
  g_free (b.conf);
  g_free (props);
}

GST_END_TEST;

/* No broker at all: the stream still runs to its end at once, holding
 * max-queue results and dropping (and counting) the oldest. */
GST_START_TEST (test_mqtt_no_broker)
{
  gchar *props = g_strdup_printf ("method=mqtt address=127.0.0.1:%u "
      "max-queue=10 flush-timeout=100", free_port ());
  GstMessage *m;
  guint64 held = 0, dropped = 0;
  Rig r;
  guint i;

  rig_init (&r, props);
  for (i = 0; i < 30; i++)
    rig_push (&r, i);
  rig_eos (&r);
  /* (popping one type of message discards the others before it) */
  m = rig_message (&r, GST_MESSAGE_WARNING, NULL);
  fail_unless (m != NULL, "no warning about the broker");
  gst_message_unref (m);
  m = rig_message (&r, GST_MESSAGE_ELEMENT, "cbir-publish");
  fail_unless (m != NULL);
  fail_unless (gst_structure_get_uint64 (gst_message_get_structure (m),
          "dropped", &dropped));
  {
    guint h = 0;
    fail_unless (gst_structure_get_uint (gst_message_get_structure (m),
            "held", &h));
    held = h;
  }
  gst_message_unref (m);
  fail_unless_equals_uint64 (dropped, 20);
  fail_unless_equals_uint64 (held, 10);
  fail_unless_equals_uint64 (rig_count (&r, "published"), 0);
  rig_clear (&r);
  g_free (props);
}

GST_END_TEST;

/* linger: results wait for each other (none arrives while the first
 * lingers), but never so long that the queue drops any: half the queue
 * goes at once; the end of the stream sends the rest. */
GST_START_TEST (test_mqtt_linger)
{
  Broker b = { 0, };
  Sub s = { 0, };
  gchar *props;
  Rig r;
  guint i;

  broker_start (&b);
  sub_start (&s, b.port, "cbir/linger");
  props = g_strdup_printf ("method=mqtt address=127.0.0.1:%u "
      "topic=cbir/linger linger=10000 max-queue=20 flush-timeout=10000",
      b.port);
  rig_init (&r, props);
  for (i = 0; i < 2; i++)
    rig_push (&r, i);
  g_usleep (500000);
  fail_unless_equals_int (sub_distinct (&s), 0);
  /* 200 frames/s: the broker acknowledges each batch long before the
   * next */
  for (i = 2; i < 60; i++) {
    rig_push (&r, i);
    g_usleep (5000);
  }
  /* 50 of 60 leave in batches of 10 (half of max-queue) */
  fail_unless (sub_wait (&s, 50) >= 50, "lingering results were held back");
  rig_eos (&r);
  fail_unless_equals_int (sub_wait (&s, 60), 60);
  assert_frames (&s, 60);
  fail_unless_equals_uint64 (rig_count (&r, "published"), 60);
  fail_unless_equals_uint64 (rig_count (&r, "dropped"), 0);
  rig_clear (&r);
  sub_stop (&s);
  broker_stop (&b, SIGTERM);
  g_free (b.conf);
  g_free (props);
}

GST_END_TEST;

/* runs openssl with the arguments (space-separated) in dir */
static void
openssl (const gchar * args)
{
  gchar *cmd = g_strdup_printf ("openssl %s", args), **argv = NULL;
  gchar *err_out = NULL;
  gint status = -1;
  GError *err = NULL;

  fail_unless (g_shell_parse_argv (cmd, NULL, &argv, NULL));
  fail_unless (g_spawn_sync (dir, argv, NULL, G_SPAWN_SEARCH_PATH |
          G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &err_out, &status,
          &err), "openssl (bash scripts/setup.sh installs it): %s",
      err ? err->message : "?");
  fail_unless (g_spawn_check_wait_status (status, NULL), "%s: %s", cmd,
      err_out);
  g_strfreev (argv);
  g_free (err_out);
  g_free (cmd);
}

/* A CA (ca-NAME.pem) and, with server, certificates that it signed: one
 * for 127.0.0.1 (server.pem, server.key) and a client's (client.pem,
 * client.key); EC keys, valid two days. */
static void
make_ca (const gchar * name, gboolean server)
{
  gchar *args = g_strdup_printf ("req -x509 -newkey ec -pkeyopt "
      "ec_paramgen_curve:prime256v1 -nodes -keyout ca-%s.key -out ca-%s.pem "
      "-days 2 -subj /CN=cbir-test-%s", name, name, name);

  openssl (args);
  g_free (args);
  if (!server)
    return;
  args = g_build_filename (dir, "san.cnf", NULL);
  write_file (args, "subjectAltName=IP:127.0.0.1\n", -1);
  g_free (args);
  openssl ("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-keyout server.key -out server.csr -subj /CN=127.0.0.1");
  args = g_strdup_printf ("x509 -req -in server.csr -CA ca-%s.pem -CAkey "
      "ca-%s.key -CAcreateserial -out server.pem -days 2 -extfile san.cnf",
      name, name);
  openssl (args);
  g_free (args);
  openssl ("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-keyout client.key -out client.csr -subj /CN=cbir-test-client");
  args = g_strdup_printf ("x509 -req -in client.csr -CA ca-%s.pem -CAkey "
      "ca-%s.key -CAcreateserial -out client.pem -days 2", name, name);
  openssl (args);
  g_free (args);
}

/* publishes n frames with props; returns how many the broker took */
static guint64
publish_frames (const gchar * props, guint n, gboolean expect_warning,
    guint port)
{
  GstMessage *m;
  GError *err = NULL;
  guint64 published;
  gchar *where;
  Rig r;
  guint i;

  rig_init (&r, props);
  for (i = 0; i < n; i++)
    rig_push (&r, i);
  rig_eos (&r);
  if (expect_warning) {
    m = rig_message (&r, GST_MESSAGE_WARNING, NULL);
    fail_unless (m != NULL, "no warning about the broker (%s)", props);
    gst_message_parse_warning (m, &err, NULL);
    where = g_strdup_printf ("127.0.0.1:%u", port);
    fail_unless (strstr (err->message, where), "%s", err->message);
    g_free (where);
    g_error_free (err);
    gst_message_unref (m);
  }
  published = rig_count (&r, "published");
  rig_clear (&r);
  return published;
}

/* TLS: with the broker's CA every result arrives (through a TLS listener;
 * the test subscribes on the broker's plain one); with another CA the
 * broker is not trusted: a warning names it, nothing is published, the
 * stream still runs to its end. A listener that requires a client
 * certificate takes tls-cert-file and tls-key-file, and refuses a client
 * without them. */
GST_START_TEST (test_mqtt_tls)
{
  Broker b = { 0, };
  Sub s = { 0, };
  guint tls_port = free_port (), cert_port = free_port (), i;
  gchar *text, *props;

  make_ca ("good", TRUE);
  make_ca ("other", FALSE);
  b.port = free_port ();
  b.conf = g_build_filename (dir, "mosquitto.conf", NULL);
  text = g_strdup_printf ("per_listener_settings false\n"
      "allow_anonymous true\nuser %s\nlistener %u 127.0.0.1\n"
      "listener %u 127.0.0.1\ncafile %s/ca-good.pem\n"
      "certfile %s/server.pem\nkeyfile %s/server.key\n"
      "listener %u 127.0.0.1\ncafile %s/ca-good.pem\n"
      "certfile %s/server.pem\nkeyfile %s/server.key\n"
      "require_certificate true\n", g_get_user_name (), b.port, tls_port,
      dir, dir, dir, cert_port, dir, dir, dir);
  write_file (b.conf, text, -1);
  g_free (text);
  broker_start (&b);
  for (i = 0; i < 200 && !(port_open (tls_port) && port_open (cert_port));
      i++)
    g_usleep (25000);
  sub_start (&s, b.port, "cbir/tls");

  props = g_strdup_printf ("method=mqtt address=127.0.0.1:%u topic=cbir/tls "
      "tls-ca-file=%s/ca-good.pem flush-timeout=10000", tls_port, dir);
  fail_unless_equals_uint64 (publish_frames (props, 10, FALSE, tls_port), 10);
  fail_unless_equals_int (sub_wait (&s, 10), 10);
  assert_frames (&s, 10);
  g_free (props);

  props = g_strdup_printf ("method=mqtt address=127.0.0.1:%u topic=cbir/tls "
      "tls-ca-file=%s/ca-other.pem flush-timeout=200", tls_port, dir);
  fail_unless_equals_uint64 (publish_frames (props, 5, TRUE, tls_port), 0);
  g_free (props);

  props = g_strdup_printf ("method=mqtt address=127.0.0.1:%u topic=cbir/tls "
      "tls-ca-file=%s/ca-good.pem flush-timeout=200", cert_port, dir);
  fail_unless_equals_uint64 (publish_frames (props, 5, TRUE, cert_port), 0);
  g_free (props);
  props = g_strdup_printf ("method=mqtt address=127.0.0.1:%u topic=cbir/tls "
      "tls-ca-file=%s/ca-good.pem tls-cert-file=%s/client.pem "
      "tls-key-file=%s/client.key flush-timeout=10000", cert_port, dir, dir,
      dir);
  fail_unless_equals_uint64 (publish_frames (props, 5, FALSE, cert_port), 5);
  g_free (props);

  sub_stop (&s);
  broker_stop (&b, SIGTERM);
  g_free (b.conf);
}

GST_END_TEST;
#endif

#if !defined (CBIR_NO_KAFKA) && !defined (__SANITIZE_THREAD__)
/* ---- Kafka: librdkafka's mock cluster ---- */

static guint
kafka_consume (const gchar * servers, const gchar * topic, guint n,
    GPtrArray * out)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  rd_kafka_topic_partition_list_t *parts;
  rd_kafka_t *c;
  gchar errstr[256];
  gint i;

  rd_kafka_conf_set (conf, "bootstrap.servers", servers, errstr, sizeof errstr);
  rd_kafka_conf_set (conf, "group.id", "cbir-test", errstr, sizeof errstr);
  rd_kafka_conf_set (conf, "auto.offset.reset", "earliest", errstr,
      sizeof errstr);
  c = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  fail_unless (c != NULL, "%s", errstr);
  parts = rd_kafka_topic_partition_list_new (1);
  rd_kafka_topic_partition_list_add (parts, topic, 0)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  fail_unless (rd_kafka_assign (c, parts) == 0);
  rd_kafka_topic_partition_list_destroy (parts);
  for (i = 0; i < 200 && out->len < n; i++) {
    rd_kafka_message_t *msg = rd_kafka_consumer_poll (c, 100);

    if (!msg)
      continue;
    if (!msg->err)
      g_ptr_array_add (out, g_strndup (msg->payload, msg->len));
    rd_kafka_message_destroy (msg);
  }
  rd_kafka_consumer_close (c);
  rd_kafka_destroy (c);
  return out->len;
}

/* Every frame reaches the topic, also those produced while the broker was
 * down (librdkafka holds them and sends them when it is back). */
GST_START_TEST (test_kafka_mock_cluster)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  GPtrArray *got = g_ptr_array_new_with_free_func (g_free);
  rd_kafka_mock_cluster_t *mc;
  rd_kafka_t *rk;
  gchar errstr[256], *props;
  GstMessage *m;
  Rig r;
  guint i;

  rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  fail_unless (rk != NULL, "%s", errstr);
  mc = rd_kafka_mock_cluster_new (rk, 1);
  fail_unless (mc != NULL);
  fail_unless (rd_kafka_mock_topic_create (mc, "cbir-test", 1, 1) == 0);
  props = g_strdup_printf ("method=kafka address=%s topic=cbir-test "
      "flush-timeout=20000", rd_kafka_mock_cluster_bootstraps (mc));
  rig_init (&r, props);
  for (i = 0; i < 10; i++)
    rig_push (&r, i);
  rd_kafka_mock_broker_set_down (mc, 1);
  for (i = 10; i < 20; i++)
    rig_push (&r, i);
  g_usleep (500000);
  rd_kafka_mock_broker_set_up (mc, 1);
  for (i = 20; i < 30; i++)
    rig_push (&r, i);
  rig_eos (&r);
  m = rig_message (&r, GST_MESSAGE_ELEMENT, "cbir-publish");
  fail_unless (m != NULL);
  gst_message_unref (m);
  fail_unless_equals_uint64 (rig_count (&r, "published"), 30);
  fail_unless_equals_uint64 (rig_count (&r, "dropped"), 0);

  fail_unless_equals_int (kafka_consume (rd_kafka_mock_cluster_bootstraps
          (mc), "cbir-test", 30, got), 30);
  for (i = 0; i < 30; i++) {
    JsonNode *n = parse_json (g_ptr_array_index (got, i), -1);
    JsonObject *o = json_node_get_object (n);

    fail_unless_equals_int (json_object_get_int_member (o, "schema_version"),
        1);
    fail_unless_equals_int (json_object_get_int_member (o, "frame"), i);
    json_node_unref (n);
  }
  rig_clear (&r);
  g_ptr_array_unref (got);
  rd_kafka_mock_cluster_destroy (mc);
  rd_kafka_destroy (rk);
  g_free (props);
}

GST_END_TEST;
#endif

static Suite *
cbirpublish_suite (void)
{
  Suite *s = suite_create ("cbirpublish");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_file_lines_equal_messages);
  tcase_add_test (tc, test_file_json_array_atomic);
  tcase_add_test (tc, test_errors_name_the_problem);
  tcase_add_test (tc, test_empty_frames_and_embedding);
  tcase_add_test (tc, test_utc_from_reference_timestamp);
#ifndef CBIR_NO_MQTT
  tcase_add_test (tc, test_mqtt_broker_restart);
  tcase_add_test (tc, test_mqtt_no_broker);
  tcase_add_test (tc, test_mqtt_tls);
  tcase_add_test (tc, test_mqtt_linger);
#endif
#if !defined (CBIR_NO_KAFKA) && !defined (__SANITIZE_THREAD__)
  /* (not under ThreadSanitizer: librdkafka starts its threads with C11
   * thrd_create, which GCC 12's TSan does not intercept; they crash in its
   * allocator) */
  tcase_add_test (tc, test_kafka_mock_cluster);
#endif
  return s;
}

GST_CHECK_MAIN (cbirpublish);

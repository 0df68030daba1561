/* gst-cbir: cbirpublish, results out as JSON: a file, MQTT or Kafka.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * SECTION:element-cbirpublish
 * @title: cbirpublish
 *
 * A sink that writes each frame's search result (what cbirsearch put on
 * the buffer) as one JSON object of the result schema, version 1
 * (schema/cbir-result-1.schema.json; its keys are the bus message's field
 * names with '-' written '_'), to
 *
 * - method=file: #GstCbirPublish:location, one object a line (JSON Lines,
 *   format=json-lines, the default) or one JSON array (format=json). Each
 *   frame is written when it arrives (a reader may follow the file), or
 *   with atomic=true to a temporary renamed over the location at the end
 *   of the stream (stopped before the end or failed: the location is left
 *   as it was). A file that cannot be written (missing folder, full disk)
 *   is an error naming it.
 * - method=mqtt: an MQTT broker (#GstCbirPublish:address host[:port],
 *   default localhost:1883; #GstCbirPublish:topic, default
 *   "cbir/results"; #GstCbirPublish:qos, default 1), through libmosquitto.
 * - method=kafka: Kafka brokers (#GstCbirPublish:address, the bootstrap
 *   servers, default localhost:9092; topic default "cbir-results";
 *   #GstCbirPublish:acks), through librdkafka; further librdkafka settings
 *   in #GstCbirPublish:kafka-config.
 *
 * A broker that is down when the pipeline starts, or goes away while it
 * runs, never stops or stalls the pipeline: the element reconnects (MQTT:
 * after 1 s, doubling up to #GstCbirPublish:reconnect-delay-max; Kafka:
 * librdkafka's own backoff), posts a warning on the bus once per outage
 * and an info message when the broker is back, and holds up to
 * #GstCbirPublish:max-queue results meanwhile; beyond that the oldest are
 * dropped. #GstCbirPublish:published and #GstCbirPublish:dropped count
 * them; at the end of the stream the element waits up to
 * #GstCbirPublish:flush-timeout ms for what it holds to be delivered and
 * posts an element message "cbir-publish": "method", "published",
 * "dropped" (so far) and "held" (still undelivered then: given up, and
 * counted as dropped, when the element stops).
 *
 * To brokers, each result is its own message; results that come within
 * #GstCbirPublish:linger ms (default 5, librdkafka's own default) of the
 * first wait for each other and leave together, which costs far less CPU
 * per result at high frame rates (MQTT: one wake of the client's network
 * thread and one TCP segment for the lot). linger=0 sends each at once;
 * half of #GstCbirPublish:max-queue waiting goes out at once whatever the
 * linger.
 *
 * Frames without a result (cbirencode found no digit) are skipped unless
 * #GstCbirPublish:empty-frames is set. Put it after a tee to keep the video
 * going:
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 cbiridxsrc images=t10k-images-idx3-ubyte.gz count=20 ! \
 *     cbirencode model=model.safetensors ! \
 *     cbirsearch gallery=gallery.safetensors ! \
 *     cbirpublish location=results.jsonl
 * gst-launch-1.0 v4l2src ! videoconvert ! video/x-raw,format=GRAY8 ! \
 *     cbirencode model=model.safetensors preprocess=mnist regions=digits ! \
 *     cbirsearch gallery=gallery.safetensors ! tee name=t ! queue ! \
 *     autovideosink  t. ! queue ! \
 *     cbirpublish method=mqtt address=broker.local topic=camera/1/digits
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirpublish.h"
#include "gstcbirresult.h"
#include "gstcbirmeta.h"
#include "gstcbirutils.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "atomic-file.h"

GST_DEBUG_CATEGORY (gst_cbir_publish_debug);
#define GST_CAT_DEFAULT gst_cbir_publish_debug

typedef enum
{
  METHOD_FILE,
  METHOD_MQTT,
  METHOD_KAFKA,
} GstCbirPublishMethod;

#define GST_TYPE_CBIR_PUBLISH_METHOD (gst_cbir_publish_method_get_type ())
static GType
gst_cbir_publish_method_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {METHOD_FILE, "A file (location, format)", "file"},
    {METHOD_MQTT, "An MQTT broker (address, topic, qos)", "mqtt"},
    {METHOD_KAFKA, "Kafka brokers (address, topic, acks)", "kafka"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirPublishMethod", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

typedef enum
{
  FORMAT_JSON_LINES,
  FORMAT_JSON,
} GstCbirPublishFormat;

#define GST_TYPE_CBIR_PUBLISH_FORMAT (gst_cbir_publish_format_get_type ())
static GType
gst_cbir_publish_format_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {FORMAT_JSON_LINES, "One JSON object a line (JSON Lines)", "json-lines"},
    {FORMAT_JSON, "One JSON array of the frames' objects", "json"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirPublishFormat", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

#define DEFAULT_METHOD METHOD_FILE
#define DEFAULT_FORMAT FORMAT_JSON_LINES
#define DEFAULT_QOS 1
#define DEFAULT_ACKS -1
#define DEFAULT_MAX_QUEUE 1000
#define DEFAULT_FLUSH_TIMEOUT 5000
#define DEFAULT_LINGER 5        /* ms: librdkafka's linger.ms default */
#define DEFAULT_RECONNECT_DELAY_MAX 30
#define MQTT_DEFAULT_PORT 1883
#define MQTT_DEFAULT_TOPIC "cbir/results"
#define KAFKA_DEFAULT_ADDRESS "localhost:9092"
#define KAFKA_DEFAULT_TOPIC "cbir-results"

enum
{
  PROP_0,
  PROP_METHOD,
  PROP_LOCATION,
  PROP_FORMAT,
  PROP_ATOMIC,
  PROP_APPEND,
  PROP_ADDRESS,
  PROP_TOPIC,
  PROP_QOS,
  PROP_ACKS,
  PROP_CLIENT_ID,
  PROP_TLS_CA_FILE,
  PROP_TLS_CERT_FILE,
  PROP_TLS_KEY_FILE,
  PROP_KAFKA_CONFIG,
  PROP_MAX_QUEUE,
  PROP_RECONNECT_DELAY_MAX,
  PROP_FLUSH_TIMEOUT,
  PROP_LINGER,
  PROP_EMBEDDING,
  PROP_EMPTY_FRAMES,
  PROP_PUBLISHED,
  PROP_DROPPED,
};

struct _GstCbirPublish
{
  GstBaseSink parent;

  /* properties (object lock) */
  GstCbirPublishMethod method;
  gchar *location;
  GstCbirPublishFormat format;
  gboolean atomic;
  gboolean append;
  gchar *address;
  gchar *topic;
  gint qos;
  gint acks;
  gchar *client_id;
  gchar *tls_ca_file, *tls_cert_file, *tls_key_file;
  gchar *kafka_config;
  guint max_queue;
  guint reconnect_delay_max;
  guint flush_timeout;
  guint linger;
  gboolean embedding;
  gboolean empty_frames;

  /* counters (object lock) */
  guint64 published;
  guint64 dropped;
  gint broker_lost;             /* a warning was posted, not yet back */

  /* streaming state */
  GstCbirPublishMethod cur_method;
  GstCbirPublishFormat cur_format;
  gboolean cur_embedding, cur_empty_frames;
  gchar *cur_location;
  gint fd;                      /* method=file */
  CbirAtomicFile atomic_file;
  gboolean atomic_open;
  guint64 written;              /* frames written to the file */
  const GstCbirPublishBackend *backend;
  gpointer backend_state;
  guint cur_flush_timeout;
  guint64 frames;
  GstCbirStreamInfo stream;     /* for the frame fields */
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

#define gst_cbir_publish_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstCbirPublish, gst_cbir_publish,
    GST_TYPE_BASE_SINK, GST_DEBUG_CATEGORY_INIT (gst_cbir_publish_debug,
        "cbirpublish", 0, "cbir result publishing"));
GST_ELEMENT_REGISTER_DEFINE (cbirpublish, "cbirpublish", GST_RANK_NONE,
    GST_TYPE_CBIR_PUBLISH);

static void gst_cbir_publish_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec);
static void gst_cbir_publish_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec);
static void gst_cbir_publish_finalize (GObject * object);
static gboolean gst_cbir_publish_start (GstBaseSink * sink);
static gboolean gst_cbir_publish_stop (GstBaseSink * sink);
static gboolean gst_cbir_publish_set_caps (GstBaseSink * sink, GstCaps * caps);
static gboolean gst_cbir_publish_event (GstBaseSink * sink, GstEvent * event);
static GstFlowReturn gst_cbir_publish_render (GstBaseSink * sink,
    GstBuffer * buf);

#define STR_PROP(id, name, nick, blurb) \
  g_object_class_install_property (gobject_class, id, \
      g_param_spec_string (name, nick, blurb, NULL, G_PARAM_READWRITE | \
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY))

static void
gst_cbir_publish_class_init (GstCbirPublishClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSinkClass *sink_class = GST_BASE_SINK_CLASS (klass);

  gobject_class->set_property = gst_cbir_publish_set_property;
  gobject_class->get_property = gst_cbir_publish_get_property;
  gobject_class->finalize = gst_cbir_publish_finalize;

  g_object_class_install_property (gobject_class, PROP_METHOD,
      g_param_spec_enum ("method", "Method", "Where the results go",
          GST_TYPE_CBIR_PUBLISH_METHOD, DEFAULT_METHOD,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  STR_PROP (PROP_LOCATION, "location", "Location",
      "method=file: the file written (\"-\" = standard output)");
  g_object_class_install_property (gobject_class, PROP_FORMAT,
      g_param_spec_enum ("format", "Format", "method=file: JSON Lines or one "
          "JSON array", GST_TYPE_CBIR_PUBLISH_FORMAT, DEFAULT_FORMAT,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_ATOMIC,
      g_param_spec_boolean ("atomic", "Atomic", "method=file: write a "
          "temporary and rename it over location at the end of the stream "
          "(stopped before the end: location is left as it was)", FALSE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_APPEND,
      g_param_spec_boolean ("append", "Append", "method=file, json-lines: "
          "add to the end of an existing file instead of replacing it",
          FALSE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  STR_PROP (PROP_ADDRESS, "address", "Address",
      "The broker: MQTT host[:port] (default localhost:1883), Kafka "
      "bootstrap servers host:port[,...] (default localhost:9092)");
  STR_PROP (PROP_TOPIC, "topic", "Topic",
      "The topic (default \"cbir/results\" for MQTT, \"cbir-results\" for "
      "Kafka)");
  g_object_class_install_property (gobject_class, PROP_QOS,
      g_param_spec_int ("qos", "QoS", "MQTT quality of service: 0 at most "
          "once, 1 at least once, 2 exactly once", 0, 2, DEFAULT_QOS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_ACKS,
      g_param_spec_int ("acks", "Acks", "Kafka acknowledgements a result "
          "needs: -1 all in-sync replicas, 0 none, 1 the leader", -1, 1,
          DEFAULT_ACKS, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  STR_PROP (PROP_CLIENT_ID, "client-id", "Client id",
      "The client id (default gst-cbir-HOST-PID-ELEMENT)");
  STR_PROP (PROP_TLS_CA_FILE, "tls-ca-file", "TLS CA file",
      "PEM file of the CA that signed the broker's certificate: turns TLS on");
  STR_PROP (PROP_TLS_CERT_FILE, "tls-cert-file", "TLS certificate file",
      "PEM file of this client's certificate (with tls-key-file)");
  STR_PROP (PROP_TLS_KEY_FILE, "tls-key-file", "TLS key file",
      "PEM file of this client's private key");
  STR_PROP (PROP_KAFKA_CONFIG, "kafka-config", "Kafka configuration",
      "More librdkafka settings, \"key=value,key=value\"");
  g_object_class_install_property (gobject_class, PROP_MAX_QUEUE,
      g_param_spec_uint ("max-queue", "Max queue", "Results held while the "
          "broker is away or slow; beyond, the oldest are dropped (and "
          "counted)", 1, G_MAXINT, DEFAULT_MAX_QUEUE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_RECONNECT_DELAY_MAX,
      g_param_spec_uint ("reconnect-delay-max", "Reconnect delay max",
          "MQTT: the longest wait between two reconnection attempts, in "
          "seconds (the first is 1 s, then doubling)", 1, 3600,
          DEFAULT_RECONNECT_DELAY_MAX, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_FLUSH_TIMEOUT,
      g_param_spec_uint ("flush-timeout", "Flush timeout", "At the end of "
          "the stream, how long to wait for held results to be delivered, "
          "in ms", 0, G_MAXINT, DEFAULT_FLUSH_TIMEOUT, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_LINGER,
      g_param_spec_uint ("linger", "Linger", "MQTT and Kafka: how long, in "
          "ms, a result may wait for the next ones so that they leave "
          "together (each is still its own message): less CPU per result "
          "at high frame rates, at most this much later; 0: each at once "
          "(Kafka: linger.ms)", 0, 10000, DEFAULT_LINGER, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_EMBEDDING,
      g_param_spec_boolean ("embedding", "Embedding", "Add each region's "
          "code (\"embedding\": its floats)", FALSE, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_EMPTY_FRAMES,
      g_param_spec_boolean ("empty-frames", "Empty frames", "Also publish "
          "frames without a result (no digit found: \"regions\" empty)",
          FALSE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_PUBLISHED,
      g_param_spec_uint64 ("published", "Published", "Results delivered "
          "(written, or acknowledged by the broker; MQTT qos=0: sent)", 0,
          G_MAXUINT64, 0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_DROPPED,
      g_param_spec_uint64 ("dropped", "Dropped", "Results dropped (the "
          "queue full while the broker was away, or undelivered at the end)",
          0, G_MAXUINT64, 0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  gst_element_class_set_static_metadata (element_class,
      "CBIR result publisher", "Sink/Metadata",
      "Writes each frame's cbirsearch result as JSON (result schema 1) to a "
      "file, an MQTT broker or Kafka",
      "gst-cbir developers <gst-cbir@example.org>");
  gst_element_class_add_static_pad_template (element_class, &sink_template);

  sink_class->start = GST_DEBUG_FUNCPTR (gst_cbir_publish_start);
  sink_class->stop = GST_DEBUG_FUNCPTR (gst_cbir_publish_stop);
  sink_class->set_caps = GST_DEBUG_FUNCPTR (gst_cbir_publish_set_caps);
  sink_class->event = GST_DEBUG_FUNCPTR (gst_cbir_publish_event);
  sink_class->render = GST_DEBUG_FUNCPTR (gst_cbir_publish_render);

  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_PUBLISH_METHOD, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_PUBLISH_FORMAT, 0);
}

static void
gst_cbir_publish_init (GstCbirPublish * self)
{
  self->method = DEFAULT_METHOD;
  self->format = DEFAULT_FORMAT;
  self->qos = DEFAULT_QOS;
  self->acks = DEFAULT_ACKS;
  self->max_queue = DEFAULT_MAX_QUEUE;
  self->reconnect_delay_max = DEFAULT_RECONNECT_DELAY_MAX;
  self->flush_timeout = DEFAULT_FLUSH_TIMEOUT;
  self->linger = DEFAULT_LINGER;
  self->fd = -1;
  gst_cbir_stream_info_init (&self->stream);
  /* results are written as they come, not at the clock's pace */
  gst_base_sink_set_sync (GST_BASE_SINK (self), FALSE);
}

static void
gst_cbir_publish_finalize (GObject * object)
{
  GstCbirPublish *self = GST_CBIR_PUBLISH (object);

  g_free (self->location);
  g_free (self->address);
  g_free (self->topic);
  g_free (self->client_id);
  g_free (self->tls_ca_file);
  g_free (self->tls_cert_file);
  g_free (self->tls_key_file);
  g_free (self->kafka_config);
  g_free (self->cur_location);
  gst_cbir_stream_info_clear (&self->stream);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static gchar **
string_prop (GstCbirPublish * self, guint prop_id)
{
  switch (prop_id) {
    case PROP_LOCATION:
      return &self->location;
    case PROP_ADDRESS:
      return &self->address;
    case PROP_TOPIC:
      return &self->topic;
    case PROP_CLIENT_ID:
      return &self->client_id;
    case PROP_TLS_CA_FILE:
      return &self->tls_ca_file;
    case PROP_TLS_CERT_FILE:
      return &self->tls_cert_file;
    case PROP_TLS_KEY_FILE:
      return &self->tls_key_file;
    case PROP_KAFKA_CONFIG:
      return &self->kafka_config;
    default:
      return NULL;
  }
}

static void
gst_cbir_publish_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstCbirPublish *self = GST_CBIR_PUBLISH (object);
  gchar **str;

  GST_OBJECT_LOCK (self);
  if (gst_cbir_refuse_if_running_unlocked (GST_ELEMENT (self), pspec))
    return;
  if ((str = string_prop (self, prop_id))) {
    g_free (*str);
    *str = g_value_dup_string (value);
    GST_OBJECT_UNLOCK (self);
    return;
  }
  switch (prop_id) {
    case PROP_METHOD:
      self->method = g_value_get_enum (value);
      break;
    case PROP_FORMAT:
      self->format = g_value_get_enum (value);
      break;
    case PROP_ATOMIC:
      self->atomic = g_value_get_boolean (value);
      break;
    case PROP_APPEND:
      self->append = g_value_get_boolean (value);
      break;
    case PROP_QOS:
      self->qos = g_value_get_int (value);
      break;
    case PROP_ACKS:
      self->acks = g_value_get_int (value);
      break;
    case PROP_MAX_QUEUE:
      self->max_queue = g_value_get_uint (value);
      break;
    case PROP_RECONNECT_DELAY_MAX:
      self->reconnect_delay_max = g_value_get_uint (value);
      break;
    case PROP_FLUSH_TIMEOUT:
      self->flush_timeout = g_value_get_uint (value);
      break;
    case PROP_LINGER:
      self->linger = g_value_get_uint (value);
      break;
    case PROP_EMBEDDING:
      self->embedding = g_value_get_boolean (value);
      break;
    case PROP_EMPTY_FRAMES:
      self->empty_frames = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_cbir_publish_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec)
{
  GstCbirPublish *self = GST_CBIR_PUBLISH (object);
  gchar **str;

  GST_OBJECT_LOCK (self);
  if ((str = string_prop (self, prop_id))) {
    g_value_set_string (value, *str);
    GST_OBJECT_UNLOCK (self);
    return;
  }
  switch (prop_id) {
    case PROP_METHOD:
      g_value_set_enum (value, self->method);
      break;
    case PROP_FORMAT:
      g_value_set_enum (value, self->format);
      break;
    case PROP_ATOMIC:
      g_value_set_boolean (value, self->atomic);
      break;
    case PROP_APPEND:
      g_value_set_boolean (value, self->append);
      break;
    case PROP_QOS:
      g_value_set_int (value, self->qos);
      break;
    case PROP_ACKS:
      g_value_set_int (value, self->acks);
      break;
    case PROP_MAX_QUEUE:
      g_value_set_uint (value, self->max_queue);
      break;
    case PROP_RECONNECT_DELAY_MAX:
      g_value_set_uint (value, self->reconnect_delay_max);
      break;
    case PROP_FLUSH_TIMEOUT:
      g_value_set_uint (value, self->flush_timeout);
      break;
    case PROP_LINGER:
      g_value_set_uint (value, self->linger);
      break;
    case PROP_EMBEDDING:
      g_value_set_boolean (value, self->embedding);
      break;
    case PROP_EMPTY_FRAMES:
      g_value_set_boolean (value, self->empty_frames);
      break;
    case PROP_PUBLISHED:
      g_value_set_uint64 (value, self->published);
      break;
    case PROP_DROPPED:
      g_value_set_uint64 (value, self->dropped);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

/* ---- for the backends ---- */

/* a broker this build has no library for: an error naming it at start */
#ifdef CBIR_NO_MQTT
const GstCbirPublishBackend gst_cbir_publish_mqtt = { "mqtt", NULL, };
#endif
#ifdef CBIR_NO_KAFKA
const GstCbirPublishBackend gst_cbir_publish_kafka = { "kafka", NULL, };
#endif

void
gst_cbir_publish_count (GstCbirPublish * el, guint published, guint dropped)
{
  GST_OBJECT_LOCK (el);
  el->published += published;
  el->dropped += dropped;
  GST_OBJECT_UNLOCK (el);
}

void
gst_cbir_publish_broker_lost (GstCbirPublish * el, const gchar * reason)
{
  if (!g_atomic_int_compare_and_exchange (&el->broker_lost, 0, 1))
    return;
  GST_ELEMENT_WARNING (el, RESOURCE, WRITE,
      ("Broker unreachable: %s. Reconnecting; up to %u results are held "
          "meanwhile (the oldest dropped beyond, see \"dropped\").", reason,
          el->max_queue), (NULL));
}

void
gst_cbir_publish_broker_back (GstCbirPublish * el)
{
  if (!g_atomic_int_compare_and_exchange (&el->broker_lost, 1, 0))
    return;
  GST_ELEMENT_INFO (el, RESOURCE, WRITE, ("Broker reachable again."),
      (NULL));
}

/* ---- method=file ---- */

static gboolean
write_all (GstCbirPublish * self, const gchar * data, gsize len)
{
  while (len > 0) {
    gssize n = write (self->fd, data, len);

    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      gint e = n < 0 ? errno : EIO;

      if (e == ENOSPC || e == EDQUOT)
        GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT,
            ("No space left to write results to \"%s\".", self->cur_location),
            ("%s", g_strerror (e)));
      else
        GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
            ("Could not write results to \"%s\": %s.", self->cur_location,
                g_strerror (e)), (NULL));
      return FALSE;
    }
    data += n;
    len -= (gsize) n;
  }
  return TRUE;
}

static gboolean
file_open (GstCbirPublish * self, gboolean append)
{
  g_autoptr (GError) err = NULL;
  const gchar *path = self->cur_location;

  if (path == NULL || *path == '\0') {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No file to write results to (property \"location\")."), (NULL));
    return FALSE;
  }
  if (strcmp (path, "-") == 0) {
    self->fd = dup (STDOUT_FILENO);
  } else if (self->atomic) {
    if (!cbir_atomic_file_open (&self->atomic_file, path, 0666, &err)) {
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
          ("Could not open \"%s\" to write results: %s", path, err->message),
          (NULL));
      return FALSE;
    }
    self->atomic_open = TRUE;
    self->fd = self->atomic_file.fd;
  } else {
    self->fd = g_open (path, O_WRONLY | O_CREAT | O_CLOEXEC |
        (append ? O_APPEND : O_TRUNC), 0666);
  }
  if (self->fd < 0) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
        ("Could not open \"%s\" to write results: %s", path,
            g_strerror (errno)), (NULL));
    return FALSE;
  }
  self->written = 0;
  if (self->cur_format == FORMAT_JSON)
    return write_all (self, "[", 1);
  return TRUE;
}

/* The end of the stream: the array closed, the temporary committed. */
static gboolean
file_finish (GstCbirPublish * self)
{
  g_autoptr (GError) err = NULL;

  if (self->fd < 0)
    return TRUE;
  if (self->cur_format == FORMAT_JSON && !write_all (self, "\n]\n", 3))
    return FALSE;
  if (self->atomic_open) {
    self->atomic_open = FALSE;
    self->fd = -1;
    if (!cbir_atomic_file_commit (&self->atomic_file, &err)) {
      GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
          ("Could not write results to \"%s\": %s", self->cur_location,
              err->message), (NULL));
      return FALSE;
    }
    return TRUE;
  }
  if (close (self->fd) != 0) {
    gint e = errno;

    self->fd = -1;
    GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
        ("Could not write results to \"%s\": %s", self->cur_location,
            g_strerror (e)), (NULL));
    return FALSE;
  }
  self->fd = -1;
  return TRUE;
}

/* Stopped without an end of stream: a temporary is removed. */
static void
file_close (GstCbirPublish * self)
{
  if (self->atomic_open) {
    cbir_atomic_file_abort (&self->atomic_file);
    self->atomic_open = FALSE;
  } else if (self->fd >= 0) {
    close (self->fd);
  }
  self->fd = -1;
}

/* ---- element ---- */

static void
config_clear (GstCbirPublishConfig * c)
{
  g_free (c->host);
  g_free (c->address);
  g_free (c->topic);
  g_free (c->client_id);
  g_free (c->tls_ca_file);
  g_free (c->tls_cert_file);
  g_free (c->tls_key_file);
  g_free (c->kafka_config);
}

static gboolean
check_readable (GstCbirPublish * self, const gchar * prop, const gchar * path)
{
  if (path == NULL || g_access (path, R_OK) == 0)
    return TRUE;
  GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
      ("Cannot read \"%s\" (property \"%s\"): %s", path, prop,
          g_strerror (errno)), (NULL));
  return FALSE;
}

static gboolean
broker_open (GstCbirPublish * self)
{
  GstCbirPublishConfig c = { 0, };
  g_autoptr (GError) err = NULL;
  gboolean kafka = self->cur_method == METHOD_KAFKA;
  gboolean ok = FALSE;

  self->backend = kafka ? &gst_cbir_publish_kafka : &gst_cbir_publish_mqtt;
  GST_OBJECT_LOCK (self);
  c.address = g_strdup (self->address && *self->address ? self->address :
      kafka ? KAFKA_DEFAULT_ADDRESS : "localhost");
  c.topic = g_strdup (self->topic && *self->topic ? self->topic :
      kafka ? KAFKA_DEFAULT_TOPIC : MQTT_DEFAULT_TOPIC);
  c.client_id = self->client_id && *self->client_id ?
      g_strdup (self->client_id) : g_strdup_printf ("gst-cbir-%s-%d-%s",
      g_get_host_name (), (gint) getpid (), GST_OBJECT_NAME (self));
  c.qos = self->qos;
  c.acks = self->acks;
  c.tls_ca_file = g_strdup (self->tls_ca_file);
  c.tls_cert_file = g_strdup (self->tls_cert_file);
  c.tls_key_file = g_strdup (self->tls_key_file);
  c.kafka_config = g_strdup (self->kafka_config);
  c.max_queue = self->max_queue;
  c.reconnect_delay_max = self->reconnect_delay_max;
  c.linger = self->linger;
  GST_OBJECT_UNLOCK (self);

  if (!kafka && !gst_cbir_parse_host_port (c.address, MQTT_DEFAULT_PORT,
          &c.host, &c.port)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Bad MQTT broker address \"%s\" (expected host or host:port).",
            c.address), (NULL));
    goto out;
  }
  if (!check_readable (self, "tls-ca-file", c.tls_ca_file) ||
      !check_readable (self, "tls-cert-file", c.tls_cert_file) ||
      !check_readable (self, "tls-key-file", c.tls_key_file))
    goto out;
  if (!self->backend->open) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("method=%s: this build of the plugin has no %s support.",
            self->backend->name, self->backend->name), (NULL));
    goto out;
  }
  self->backend_state = self->backend->open (self, &c, &err);
  if (self->backend_state == NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot publish to %s at \"%s\": %s", self->backend->name,
            c.address, err ? err->message : "unknown error"), (NULL));
    goto out;
  }
  GST_INFO_OBJECT (self, "publishing to %s %s, topic %s", self->backend->name,
      c.address, c.topic);
  ok = TRUE;
out:
  config_clear (&c);
  return ok;
}

static gboolean
gst_cbir_publish_start (GstBaseSink * sink)
{
  GstCbirPublish *self = GST_CBIR_PUBLISH (sink);
  gboolean append;

  GST_OBJECT_LOCK (self);
  self->cur_method = self->method;
  self->cur_format = self->format;
  self->cur_embedding = self->embedding;
  self->cur_empty_frames = self->empty_frames;
  self->cur_flush_timeout = self->flush_timeout;
  g_free (self->cur_location);
  self->cur_location = g_strdup (self->location);
  append = self->append;
  GST_OBJECT_UNLOCK (self);

  GST_OBJECT_LOCK (self);
  self->published = self->dropped = 0;
  GST_OBJECT_UNLOCK (self);
  self->broker_lost = 0;
  self->frames = 0;
  gst_cbir_stream_info_clear (&self->stream);

  if (self->cur_method == METHOD_FILE) {
    if (append && (self->cur_format == FORMAT_JSON || self->atomic)) {
      GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
          ("append=true needs format=json-lines and atomic=false."), (NULL));
      return FALSE;
    }
    return file_open (self, append);
  }
  return broker_open (self);
}

/* The element message at the end of the stream; held: results still
 * undelivered then (given up, and counted as dropped, when it stops). */
static void
post_stats (GstCbirPublish * self, guint held)
{
  GstStructure *s;
  guint64 published, dropped;

  GST_OBJECT_LOCK (self);
  published = self->published;
  dropped = self->dropped;
  GST_OBJECT_UNLOCK (self);
  s = gst_structure_new ("cbir-publish",
      "method", G_TYPE_STRING, self->cur_method == METHOD_FILE ? "file" :
      self->backend->name, "published", G_TYPE_UINT64, published,
      "dropped", G_TYPE_UINT64, dropped, "held", G_TYPE_UINT, held, NULL);

  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self), s));
}

static gboolean
gst_cbir_publish_stop (GstBaseSink * sink)
{
  GstCbirPublish *self = GST_CBIR_PUBLISH (sink);

  file_close (self);
  if (self->backend_state) {
    self->backend->close (self->backend_state);
    self->backend_state = NULL;
  }
  gst_cbir_stream_info_clear (&self->stream);
  return TRUE;
}

static gboolean
gst_cbir_publish_set_caps (GstBaseSink * sink, GstCaps * caps)
{
  gst_cbir_stream_info_set_caps (&GST_CBIR_PUBLISH (sink)->stream, caps);
  return TRUE;
}

static gboolean
gst_cbir_publish_event (GstBaseSink * sink, GstEvent * event)
{
  GstCbirPublish *self = GST_CBIR_PUBLISH (sink);
  guint held = 0;

  gst_cbir_stream_info_event (&self->stream, event);
  if (GST_EVENT_TYPE (event) == GST_EVENT_EOS) {
    if (self->cur_method == METHOD_FILE) {
      if (!file_finish (self)) {
        gst_event_unref (event);
        return FALSE;
      }
    } else if (self->backend_state) {
      held = self->backend->flush (self->backend_state,
          self->cur_flush_timeout);
    }
    post_stats (self, held);
  }
  return GST_BASE_SINK_CLASS (parent_class)->event (sink, event);
}

/* The frame fields of a frame without a result, as cbirsearch sets them. */
static GstStructure *
frame_structure (GstCbirPublish * self, GstBuffer * buf)
{
  GstStructure *s = gst_structure_new_empty (GST_CBIR_RESULT_STRUCTURE_NAME);

  gst_cbir_stream_info_query_source (&self->stream, GST_BASE_SINK_PAD (self));
  gst_cbir_result_set_frame_fields (s, buf, &GST_BASE_SINK (self)->segment,
      self->frames, &self->stream);
  return s;
}

static GstFlowReturn
gst_cbir_publish_render (GstBaseSink * sink, GstBuffer * buf)
{
  GstCbirPublish *self = GST_CBIR_PUBLISH (sink);
  GstStructure *frame = NULL;
  gchar *json;
  gsize len;

  /* (frames counts those seen before this one, as cbirsearch's does) */
  if (!gst_cbir_buffer_has_result (buf)) {
    if (!self->cur_empty_frames) {
      self->frames++;
      return GST_FLOW_OK;
    }
    frame = frame_structure (self, buf);
  }
  self->frames++;
  json = gst_cbir_frame_to_json (buf, frame, self->cur_embedding);
  if (frame)
    gst_structure_free (frame);
  len = strlen (json);
  if (self->cur_method == METHOD_FILE && self->cur_format == FORMAT_JSON_LINES) {
    json = g_realloc (json, len + 2);
    json[len++] = '\n';
    json[len] = '\0';
  }

  if (self->cur_method != METHOD_FILE) {
    self->backend->send (self->backend_state, json, len);
    return GST_FLOW_OK;
  }
  {
    gboolean ok;

    if (self->cur_format == FORMAT_JSON)
      ok = write_all (self, self->written ? ",\n" : "\n", self->written ?
          2 : 1) && write_all (self, json, len);
    else
      ok = write_all (self, json, len);
    g_free (json);
    if (!ok)
      return GST_FLOW_ERROR;
    self->written++;
    gst_cbir_publish_count (self, 1, 0);
  }
  return GST_FLOW_OK;
}

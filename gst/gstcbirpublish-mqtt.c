/* gst-cbir: cbirpublish's MQTT backend (libmosquitto).
 *
 * libmosquitto's own thread (mosquitto_loop_start) does the network and
 * reconnects (1 s, doubling up to reconnect-delay-max). Results are
 * handed to it while connected; while not, they wait in `pending` (at
 * most max_queue together with those in flight, the oldest dropped
 * beyond) and go out, in order, as soon as the connection is back.
 * Results in flight at QoS 1 and 2 are re-sent by libmosquitto after a
 * reconnection; at QoS 0 a result the broker did not get is lost.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirpublish.h"

#include <errno.h>
#include <mosquitto.h>
#include <string.h>

GST_DEBUG_CATEGORY_EXTERN (gst_cbir_publish_debug);
#define GST_CAT_DEFAULT gst_cbir_publish_debug

typedef struct
{
  gchar *data;
  gsize len;
} Item;

typedef struct
{
  GstCbirPublish *el;
  struct mosquitto *mosq;
  gchar *topic;
  gchar *where;                 /* host:port, for messages */
  gint qos;
  guint max_queue;

  GMutex lock;
  GCond cond;                   /* signalled when something was delivered */
  GQueue pending;               /* of Item*: waiting for a connection */
  guint in_flight;              /* handed to libmosquitto, not yet done */
  gboolean connected;
  gboolean closing;
} Mqtt;

static void
item_free (Item * it)
{
  g_free (it->data);
  g_free (it);
}

/* Hands one result to libmosquitto; with the lock. FALSE: not connected
 * after all (the caller keeps it). */
static gboolean
publish_locked (Mqtt * m, Item * it)
{
  gint rc = mosquitto_publish (m->mosq, NULL, m->topic, (gint) it->len,
      it->data, m->qos, false);

  if (rc == MOSQ_ERR_SUCCESS) {
    m->in_flight++;
    item_free (it);
    return TRUE;
  }
  if (rc != MOSQ_ERR_NO_CONN)
    GST_WARNING_OBJECT (m->el, "mosquitto_publish: %s", mosquitto_strerror
        (rc));
  return FALSE;
}

/* Holds a result until the connection is back; drops the oldest held
 * beyond max_queue. With the lock. */
static void
hold_locked (Mqtt * m, Item * it)
{
  g_queue_push_tail (&m->pending, it);
  while (m->pending.length > 0 && m->pending.length + m->in_flight >
      m->max_queue) {
    item_free (g_queue_pop_head (&m->pending));
    gst_cbir_publish_count (m->el, 0, 1);
  }
}

/* Sends what is held, oldest first, while connected and within
 * max_queue in flight. With the lock. */
static void
drain_locked (Mqtt * m)
{
  Item *it;

  while (m->connected && m->in_flight < m->max_queue &&
      (it = g_queue_pop_head (&m->pending)))
    if (!publish_locked (m, it)) {
      g_queue_push_head (&m->pending, it);
      break;
    }
}

static void
on_connect (struct mosquitto *mosq, void *obj, int rc)
{
  Mqtt *m = obj;

  if (rc != 0) {
    gchar *why = g_strdup_printf ("MQTT broker %s refused the connection: "
        "%s", m->where, mosquitto_connack_string (rc));
    gst_cbir_publish_broker_lost (m->el, why);
    g_free (why);
    return;
  }
  GST_INFO_OBJECT (m->el, "connected to %s", m->where);
  g_mutex_lock (&m->lock);
  m->connected = TRUE;
  /* what waited goes first, in order */
  drain_locked (m);
  g_mutex_unlock (&m->lock);
  gst_cbir_publish_broker_back (m->el);
}

static void
on_disconnect (struct mosquitto *mosq, void *obj, int rc)
{
  Mqtt *m = obj;
  gboolean closing;

  g_mutex_lock (&m->lock);
  m->connected = FALSE;
  closing = m->closing;
  g_cond_broadcast (&m->cond);
  g_mutex_unlock (&m->lock);
  if (!closing) {
    gchar *why = g_strdup_printf ("lost the MQTT broker %s (%s)", m->where,
        mosquitto_strerror (rc));
    gst_cbir_publish_broker_lost (m->el, why);
    g_free (why);
  }
}

static void
on_publish (struct mosquitto *mosq, void *obj, int mid)
{
  Mqtt *m = obj;

  g_mutex_lock (&m->lock);
  if (m->in_flight > 0)
    m->in_flight--;
  /* counted before flush () can see it gone */
  gst_cbir_publish_count (m->el, 1, 0);
  drain_locked (m);
  g_cond_broadcast (&m->cond);
  g_mutex_unlock (&m->lock);
}

static void
on_log (struct mosquitto *mosq, void *obj, int level, const char *str)
{
  Mqtt *m = obj;

  GST_LOG_OBJECT (m->el, "libmosquitto: %s", str);
}

static void mqtt_close (gpointer backend);

static gpointer
mqtt_open (GstCbirPublish * el, const GstCbirPublishConfig * cfg,
    GError ** error)
{
  static gsize lib_init = 0;
  Mqtt *m;
  gint rc;

  if (g_once_init_enter (&lib_init)) {
    mosquitto_lib_init ();
    g_once_init_leave (&lib_init, 1);
  }
  m = g_new0 (Mqtt, 1);
  m->el = el;
  m->topic = g_strdup (cfg->topic);
  m->where = g_strdup_printf ("%s:%u", cfg->host, cfg->port);
  m->qos = cfg->qos;
  m->max_queue = cfg->max_queue;
  g_mutex_init (&m->lock);
  g_cond_init (&m->cond);
  g_queue_init (&m->pending);

  if (mosquitto_sub_topic_check (cfg->topic) != MOSQ_ERR_SUCCESS ||
      strpbrk (cfg->topic, "+#") != NULL || *cfg->topic == '\0') {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "\"%s\" is not a topic one can publish to (no wildcards)",
        cfg->topic);
    goto fail;
  }
  m->mosq = mosquitto_new (cfg->client_id, true, m);
  if (m->mosq == NULL) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "mosquitto_new failed: %s", g_strerror (errno));
    goto fail;
  }
  mosquitto_connect_callback_set (m->mosq, on_connect);
  mosquitto_disconnect_callback_set (m->mosq, on_disconnect);
  mosquitto_publish_callback_set (m->mosq, on_publish);
  mosquitto_log_callback_set (m->mosq, on_log);
  mosquitto_reconnect_delay_set (m->mosq, 1, cfg->reconnect_delay_max, true);
  if (cfg->tls_ca_file) {
    rc = mosquitto_tls_set (m->mosq, cfg->tls_ca_file, NULL,
        cfg->tls_cert_file, cfg->tls_key_file, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
      g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
          "TLS settings refused: %s", mosquitto_strerror (rc));
      goto fail;
    }
  } else if (cfg->tls_cert_file || cfg->tls_key_file) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "tls-cert-file and tls-key-file need tls-ca-file");
    goto fail;
  }

  rc = mosquitto_loop_start (m->mosq);
  if (rc != MOSQ_ERR_SUCCESS) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "cannot start the MQTT network thread: %s", mosquitto_strerror (rc));
    goto fail;
  }
  /* a broker that is down now is no error: the network thread retries */
  rc = mosquitto_connect_async (m->mosq, cfg->host, (gint) cfg->port, 30);
  if (rc != MOSQ_ERR_SUCCESS) {
    gchar *why = g_strdup_printf ("cannot connect to the MQTT broker %s "
        "(%s)", m->where, rc == MOSQ_ERR_ERRNO ? g_strerror (errno) :
        mosquitto_strerror (rc));
    gst_cbir_publish_broker_lost (el, why);
    g_free (why);
  }
  return m;

fail:
  mqtt_close (m);
  return NULL;
}

static void
mqtt_send (gpointer backend, gchar * payload, gsize len)
{
  Mqtt *m = backend;
  Item *it = g_new (Item, 1);

  it->data = payload;
  it->len = len;
  g_mutex_lock (&m->lock);
  hold_locked (m, it);
  drain_locked (m);
  g_mutex_unlock (&m->lock);
}

static guint
mqtt_flush (gpointer backend, guint timeout_ms)
{
  Mqtt *m = backend;
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  guint held;

  g_mutex_lock (&m->lock);
  while (m->pending.length + m->in_flight > 0)
    if (!g_cond_wait_until (&m->cond, &m->lock, end))
      break;
  held = m->pending.length + m->in_flight;
  g_mutex_unlock (&m->lock);
  return held;
}

static void
mqtt_close (gpointer backend)
{
  Mqtt *m = backend;
  guint lost;

  if (m->mosq) {
    g_mutex_lock (&m->lock);
    m->closing = TRUE;
    g_mutex_unlock (&m->lock);
    mosquitto_disconnect (m->mosq);
    mosquitto_loop_stop (m->mosq, false);
    mosquitto_destroy (m->mosq);
  }
  lost = m->pending.length + m->in_flight;
  if (lost)
    gst_cbir_publish_count (m->el, 0, lost);
  g_queue_clear_full (&m->pending, (GDestroyNotify) item_free);
  g_mutex_clear (&m->lock);
  g_cond_clear (&m->cond);
  g_free (m->topic);
  g_free (m->where);
  g_free (m);
}

const GstCbirPublishBackend gst_cbir_publish_mqtt = {
  "mqtt", mqtt_open, mqtt_send, mqtt_flush, mqtt_close
};

/* gst-cbir: one MQTT client (libmosquitto) for cbirpublish and the
 * enrolment sync.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirmqtt.h"

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

struct _GstCbirMqtt
{
  struct mosquitto *mosq;
  gchar *host;
  guint port;
  gchar *topic;
  gchar *subscribe;
  gchar *where;                 /* host:port, for messages */
  gint qos;
  guint max_queue;
  GstCbirMqttCallbacks cb;
  gpointer user_data;

  GMutex lock;
  GCond cond;                   /* signalled when something was delivered */
  GQueue pending;               /* of Item*: waiting for a connection */
  guint in_flight;              /* handed to libmosquitto, not yet done */
  gboolean connected;
  gboolean closing;
};

static void
item_free (Item * it)
{
  g_free (it->data);
  g_free (it);
}

/* Hands one message to libmosquitto; with the lock. FALSE: not connected
 * after all (the caller keeps it). */
static gboolean
publish_locked (GstCbirMqtt * c, Item * it)
{
  gint rc = mosquitto_publish (c->mosq, NULL, c->topic, (gint) it->len,
      it->data, c->qos, false);

  if (rc == MOSQ_ERR_SUCCESS) {
    c->in_flight++;
    item_free (it);
    return TRUE;
  }
  if (rc != MOSQ_ERR_NO_CONN)
    GST_WARNING ("mosquitto_publish to %s: %s", c->where,
        mosquitto_strerror (rc));
  return FALSE;
}

/* Holds a message until the connection is back; drops the oldest held
 * beyond max_queue. With the lock. */
static void
hold_locked (GstCbirMqtt * c, Item * it)
{
  g_queue_push_tail (&c->pending, it);
  while (c->pending.length > 0 && c->pending.length + c->in_flight >
      c->max_queue) {
    item_free (g_queue_pop_head (&c->pending));
    if (c->cb.dropped)
      c->cb.dropped (c->user_data, 1);
  }
}

/* Sends what is held, oldest first, while connected and within max_queue
 * in flight. With the lock. */
static void
drain_locked (GstCbirMqtt * c)
{
  Item *it;

  while (c->connected && c->in_flight < c->max_queue &&
      (it = g_queue_pop_head (&c->pending)))
    if (!publish_locked (c, it)) {
      g_queue_push_head (&c->pending, it);
      break;
    }
}

static void
on_connect (struct mosquitto *mosq, void *obj, int rc)
{
  GstCbirMqtt *c = obj;

  if (rc != 0) {
    if (c->cb.trouble)
      c->cb.trouble (c->user_data, GST_CBIR_MQTT_REFUSED,
          mosquitto_connack_string (rc));
    return;
  }
  GST_INFO ("connected to %s", c->where);
  if (c->subscribe)
    mosquitto_subscribe (mosq, NULL, c->subscribe, 1);
  g_mutex_lock (&c->lock);
  c->connected = TRUE;
  /* what waited goes first, in order */
  drain_locked (c);
  g_mutex_unlock (&c->lock);
  if (c->cb.connected)
    c->cb.connected (c->user_data);
}

static void
on_disconnect (struct mosquitto *mosq, void *obj, int rc)
{
  GstCbirMqtt *c = obj;
  gboolean closing;

  g_mutex_lock (&c->lock);
  c->connected = FALSE;
  closing = c->closing;
  g_cond_broadcast (&c->cond);
  g_mutex_unlock (&c->lock);
  if (!closing && c->cb.trouble)
    c->cb.trouble (c->user_data, GST_CBIR_MQTT_LOST, mosquitto_strerror (rc));
}

static void
on_publish (struct mosquitto *mosq, void *obj, int mid)
{
  GstCbirMqtt *c = obj;

  g_mutex_lock (&c->lock);
  if (c->in_flight > 0)
    c->in_flight--;
  /* counted before a flush can see it gone */
  if (c->cb.delivered)
    c->cb.delivered (c->user_data);
  drain_locked (c);
  g_cond_broadcast (&c->cond);
  g_mutex_unlock (&c->lock);
}

static void
on_message (struct mosquitto *mosq, void *obj,
    const struct mosquitto_message *msg)
{
  GstCbirMqtt *c = obj;

  if (msg->payloadlen > 0 && c->cb.message)
    c->cb.message (c->user_data, msg->payload, (gsize) msg->payloadlen);
}

static void
on_log (struct mosquitto *mosq, void *obj, int level, const char *str)
{
  GST_LOG ("libmosquitto: %s", str);
}

GstCbirMqtt *
gst_cbir_mqtt_new (const GstCbirMqttSettings * s,
    const GstCbirMqttCallbacks * callbacks, gpointer user_data,
    GError ** error)
{
  static gsize lib_init = 0;
  GstCbirMqtt *c;
  gint rc;

  if (g_once_init_enter (&lib_init)) {
    mosquitto_lib_init ();
    g_once_init_leave (&lib_init, 1);
  }
  c = g_new0 (GstCbirMqtt, 1);
  c->host = g_strdup (s->host);
  c->port = s->port;
  c->topic = g_strdup (s->topic);
  c->subscribe = g_strdup (s->subscribe);
  c->where = g_strdup_printf ("%s:%u", s->host, s->port);
  c->qos = s->qos;
  c->max_queue = s->max_queue;
  c->cb = *callbacks;
  c->user_data = user_data;
  g_mutex_init (&c->lock);
  g_cond_init (&c->cond);
  g_queue_init (&c->pending);

  if (*s->topic == '\0' || strpbrk (s->topic, "+#") != NULL ||
      mosquitto_sub_topic_check (s->topic) != MOSQ_ERR_SUCCESS) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "\"%s\" is not a topic one can publish to (no wildcards)",
        s->topic);
    goto fail;
  }
  c->mosq = mosquitto_new (s->client_id, !s->persistent, c);
  if (c->mosq == NULL) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "cannot make an MQTT client with id \"%s\": %s", s->client_id,
        g_strerror (errno));
    goto fail;
  }
  mosquitto_connect_callback_set (c->mosq, on_connect);
  mosquitto_disconnect_callback_set (c->mosq, on_disconnect);
  mosquitto_publish_callback_set (c->mosq, on_publish);
  mosquitto_message_callback_set (c->mosq, on_message);
  mosquitto_log_callback_set (c->mosq, on_log);
  mosquitto_reconnect_delay_set (c->mosq, 1, s->reconnect_delay_max, true);
  if (s->tls_ca_file) {
    rc = mosquitto_tls_set (c->mosq, s->tls_ca_file, NULL, s->tls_cert_file,
        s->tls_key_file, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
      g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
          "TLS settings refused: %s", mosquitto_strerror (rc));
      goto fail;
    }
  } else if (s->tls_cert_file || s->tls_key_file) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "tls-cert-file and tls-key-file need tls-ca-file");
    goto fail;
  }
  return c;

fail:
  gst_cbir_mqtt_free (c);
  return NULL;
}

gboolean
gst_cbir_mqtt_start (GstCbirMqtt * c, GError ** error)
{
  gint rc = mosquitto_loop_start (c->mosq);

  if (rc != MOSQ_ERR_SUCCESS) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "cannot start the MQTT network thread: %s", mosquitto_strerror (rc));
    return FALSE;
  }
  /* a broker that is down now is no error: the network thread retries */
  rc = mosquitto_connect_async (c->mosq, c->host, (gint) c->port, 30);
  if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_NOMEM ||
      rc == MOSQ_ERR_NOT_SUPPORTED) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "cannot connect to %s: %s", c->where, mosquitto_strerror (rc));
    return FALSE;
  }
  if (rc != MOSQ_ERR_SUCCESS && c->cb.trouble)
    c->cb.trouble (c->user_data, GST_CBIR_MQTT_UNREACHABLE,
        rc == MOSQ_ERR_ERRNO ? g_strerror (errno) : mosquitto_strerror (rc));
  return TRUE;
}

void
gst_cbir_mqtt_publish (GstCbirMqtt * c, gchar * payload, gsize len)
{
  Item *it = g_new (Item, 1);

  it->data = payload;
  it->len = len;
  g_mutex_lock (&c->lock);
  hold_locked (c, it);
  drain_locked (c);
  g_mutex_unlock (&c->lock);
}

guint
gst_cbir_mqtt_flush (GstCbirMqtt * c, guint timeout_ms,
    gboolean only_while_connected)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  guint held;

  g_mutex_lock (&c->lock);
  while ((c->connected || !only_while_connected) &&
      c->pending.length + c->in_flight > 0)
    if (!g_cond_wait_until (&c->cond, &c->lock, end))
      break;
  held = c->pending.length + c->in_flight;
  g_mutex_unlock (&c->lock);
  return held;
}

void
gst_cbir_mqtt_free (GstCbirMqtt * c)
{
  guint lost;

  if (c == NULL)
    return;
  if (c->mosq) {
    g_mutex_lock (&c->lock);
    c->closing = TRUE;
    g_mutex_unlock (&c->lock);
    /* (disconnected and joined, never cancelled: a cancelled thread can
     * leave libmosquitto's mutexes locked) */
    mosquitto_disconnect (c->mosq);
    mosquitto_loop_stop (c->mosq, false);
    mosquitto_destroy (c->mosq);
  }
  lost = c->pending.length + c->in_flight;
  if (lost && c->cb.dropped)
    c->cb.dropped (c->user_data, lost);
  g_queue_clear_full (&c->pending, (GDestroyNotify) item_free);
  g_mutex_clear (&c->lock);
  g_cond_clear (&c->cond);
  g_free (c->host);
  g_free (c->topic);
  g_free (c->subscribe);
  g_free (c->where);
  g_free (c);
}

const gchar *
gst_cbir_mqtt_get_where (GstCbirMqtt * c)
{
  return c->where;
}

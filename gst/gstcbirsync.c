/* gst-cbir: enrolments shared between machines over MQTT (libmosquitto).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirsync.h"
#include "gstcbirutils.h"

#include <errno.h>
#include <string.h>

#ifdef CBIR_NO_MQTT

GstCbirSync *
gst_cbir_sync_new (GstElement * element, const gchar * address,
    const gchar * topic, const gchar * client_id, GstCbirSyncReceived cb,
    gpointer user_data, GError ** error)
{
  g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "this build of the plugin has no MQTT support (libmosquitto)");
  return NULL;
}

void
gst_cbir_sync_publish (GstCbirSync * s, gchar * payload)
{
  g_free (payload);
}

void
gst_cbir_sync_free (GstCbirSync * s, guint timeout_ms)
{
}

#else

#include <mosquitto.h>

GST_DEBUG_CATEGORY_EXTERN (gst_cbir_publish_debug);
#define GST_CAT_DEFAULT gst_cbir_publish_debug

#define MAX_WAITING 100000

struct _GstCbirSync
{
  GstElement *element;
  struct mosquitto *mosq;
  gchar *topic;
  gchar *where;
  GstCbirSyncReceived cb;
  gpointer user_data;

  GMutex lock;
  GCond cond;
  GQueue waiting;               /* of gchar*: published while away */
  guint in_flight;
  gboolean connected;
  gboolean lost;                /* a warning was posted */
  gboolean closing;
};

static void
send_locked (GstCbirSync * s, gchar * payload)
{
  gint rc = MOSQ_ERR_NO_CONN;

  if (s->connected)
    rc = mosquitto_publish (s->mosq, NULL, s->topic, (gint) strlen (payload),
        payload, 1, false);
  if (rc == MOSQ_ERR_SUCCESS) {
    s->in_flight++;
    g_free (payload);
  } else {
    g_queue_push_tail (&s->waiting, payload);
    while (s->waiting.length > MAX_WAITING)
      g_free (g_queue_pop_head (&s->waiting));
  }
}

static void
on_connect (struct mosquitto *mosq, void *obj, int rc)
{
  GstCbirSync *s = obj;
  GQueue w = G_QUEUE_INIT;
  gchar *p;

  if (rc != 0) {
    GST_ELEMENT_WARNING (s->element, RESOURCE, OPEN_READ_WRITE,
        ("The enrolment broker %s refused the connection: %s", s->where,
            mosquitto_connack_string (rc)), (NULL));
    return;
  }
  mosquitto_subscribe (mosq, NULL, s->topic, 1);
  g_mutex_lock (&s->lock);
  s->connected = TRUE;
  if (s->lost)
    GST_ELEMENT_INFO (s->element, RESOURCE, OPEN_READ_WRITE,
        ("The enrolment broker %s is reachable again.", s->where), (NULL));
  s->lost = FALSE;
  /* what waited goes first, in order */
  w = s->waiting;
  g_queue_init (&s->waiting);
  while ((p = g_queue_pop_head (&w)))
    send_locked (s, p);
  g_mutex_unlock (&s->lock);
}

static void
on_disconnect (struct mosquitto *mosq, void *obj, int rc)
{
  GstCbirSync *s = obj;
  gboolean warn;

  g_mutex_lock (&s->lock);
  s->connected = FALSE;
  warn = !s->closing && !s->lost;
  s->lost = s->lost || warn;
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
  if (warn)
    GST_ELEMENT_WARNING (s->element, RESOURCE, OPEN_READ_WRITE,
        ("Lost the enrolment broker %s (%s): reconnecting; enrolments made "
            "meanwhile are kept and sent when it is back.", s->where,
            mosquitto_strerror (rc)), (NULL));
}

static void
on_publish (struct mosquitto *mosq, void *obj, int mid)
{
  GstCbirSync *s = obj;

  g_mutex_lock (&s->lock);
  if (s->in_flight)
    s->in_flight--;
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
}

static void
on_message (struct mosquitto *mosq, void *obj,
    const struct mosquitto_message *msg)
{
  GstCbirSync *s = obj;

  if (msg->payloadlen > 0)
    s->cb (msg->payload, (gsize) msg->payloadlen, s->user_data);
}

GstCbirSync *
gst_cbir_sync_new (GstElement * element, const gchar * address,
    const gchar * topic, const gchar * client_id, GstCbirSyncReceived cb,
    gpointer user_data, GError ** error)
{
  static gsize lib_init = 0;
  GstCbirSync *s;
  g_autofree gchar *host = NULL;
  guint port = 1883;
  gint rc;

  if (g_once_init_enter (&lib_init)) {
    mosquitto_lib_init ();
    g_once_init_leave (&lib_init, 1);
  }
  if (!gst_cbir_parse_host_port (address, 1883, &host, &port) ||
      topic == NULL || *topic == '\0' || strpbrk (topic, "+#") != NULL) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "bad broker address \"%s\" (host or host:port) or topic \"%s\" "
        "(no wildcards)", address, topic ? topic : "");
    return NULL;
  }
  s = g_new0 (GstCbirSync, 1);
  s->element = element;
  s->topic = g_strdup (topic);
  s->where = g_strdup_printf ("%s:%u", host, port);
  s->cb = cb;
  s->user_data = user_data;
  g_mutex_init (&s->lock);
  g_cond_init (&s->cond);
  g_queue_init (&s->waiting);
  /* a persistent session: the broker keeps what we miss while away */
  s->mosq = mosquitto_new (client_id, false, s);
  if (s->mosq == NULL) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "cannot make an MQTT client with id \"%s\": %s", client_id,
        g_strerror (errno));
    gst_cbir_sync_free (s, 0);
    return NULL;
  }
  mosquitto_connect_callback_set (s->mosq, on_connect);
  mosquitto_disconnect_callback_set (s->mosq, on_disconnect);
  mosquitto_publish_callback_set (s->mosq, on_publish);
  mosquitto_message_callback_set (s->mosq, on_message);
  mosquitto_reconnect_delay_set (s->mosq, 1, 10, true);
  rc = mosquitto_loop_start (s->mosq);
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mosquitto_connect_async (s->mosq, host, (gint) port, 30);
  if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_NOMEM ||
      rc == MOSQ_ERR_NOT_SUPPORTED) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "cannot connect to %s: %s", s->where, mosquitto_strerror (rc));
    gst_cbir_sync_free (s, 0);
    return NULL;
  }
  if (rc != MOSQ_ERR_SUCCESS) {
    s->lost = TRUE;
    GST_ELEMENT_WARNING (element, RESOURCE, OPEN_READ_WRITE,
        ("Cannot reach the enrolment broker %s (%s): retrying.", s->where,
            rc == MOSQ_ERR_ERRNO ? g_strerror (errno) :
            mosquitto_strerror (rc)), (NULL));
  }
  return s;
}

void
gst_cbir_sync_publish (GstCbirSync * s, gchar * payload)
{
  g_mutex_lock (&s->lock);
  send_locked (s, payload);
  g_mutex_unlock (&s->lock);
}

void
gst_cbir_sync_free (GstCbirSync * s, guint timeout_ms)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  if (s == NULL)
    return;
  g_mutex_lock (&s->lock);
  while (s->connected && s->in_flight + s->waiting.length > 0)
    if (!g_cond_wait_until (&s->cond, &s->lock, end))
      break;
  s->closing = TRUE;
  g_mutex_unlock (&s->lock);
  if (s->mosq) {
    mosquitto_disconnect (s->mosq);
    mosquitto_loop_stop (s->mosq, false);
    mosquitto_destroy (s->mosq);
  }
  g_queue_clear_full (&s->waiting, g_free);
  g_mutex_clear (&s->lock);
  g_cond_clear (&s->cond);
  g_free (s->topic);
  g_free (s->where);
  g_free (s);
}

#endif

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

#include "gstcbirmqtt.h"

struct _GstCbirSync
{
  GstElement *element;
  GstCbirMqtt *client;
  GstCbirSyncReceived cb;
  gpointer user_data;
  gint lost;                    /* a warning was posted */
};

static void
on_trouble (gpointer data, GstCbirMqttTrouble what, const gchar * reason)
{
  GstCbirSync *s = data;
  const gchar *where = gst_cbir_mqtt_get_where (s->client);

  if (what == GST_CBIR_MQTT_REFUSED) {
    GST_ELEMENT_WARNING (s->element, RESOURCE, OPEN_READ_WRITE,
        ("The enrolment broker %s refused the connection: %s", where,
            reason), (NULL));
  } else if (g_atomic_int_compare_and_exchange (&s->lost, 0, 1)) {
    if (what == GST_CBIR_MQTT_LOST)
      GST_ELEMENT_WARNING (s->element, RESOURCE, OPEN_READ_WRITE,
          ("Lost the enrolment broker %s (%s): reconnecting; enrolments "
              "made meanwhile are kept and sent when it is back.", where,
              reason), (NULL));
    else
      GST_ELEMENT_WARNING (s->element, RESOURCE, OPEN_READ_WRITE,
          ("Cannot reach the enrolment broker %s (%s): retrying.", where,
              reason), (NULL));
  }
}

static void
on_connected (gpointer data)
{
  GstCbirSync *s = data;

  if (g_atomic_int_compare_and_exchange (&s->lost, 1, 0))
    GST_ELEMENT_INFO (s->element, RESOURCE, OPEN_READ_WRITE,
        ("The enrolment broker %s is reachable again.",
            gst_cbir_mqtt_get_where (s->client)), (NULL));
}

static void
on_message (gpointer data, const gchar * payload, gsize len)
{
  GstCbirSync *s = data;

  s->cb (payload, len, s->user_data);
}

GstCbirSync *
gst_cbir_sync_new (GstElement * element, const gchar * address,
    const gchar * topic, const gchar * client_id, GstCbirSyncReceived cb,
    gpointer user_data, GError ** error)
{
  g_autofree gchar *host = NULL;
  guint port = 1883;
  GstCbirSync *s;
  /* a persistent session, QoS 1: the broker keeps what we miss while away;
   * operations made here wait (up to 100,000) while it is */
  /* (enrolments go out at once: linger 0) */
  GstCbirMqttSettings set = { NULL, 0, client_id, TRUE, topic, 1, topic,
    100000, 0, 10, NULL, NULL, NULL
  };
  GstCbirMqttCallbacks callbacks = { NULL, NULL, on_trouble, on_connected,
    on_message
  };

  if (!gst_cbir_parse_host_port (address, 1883, &host, &port) ||
      topic == NULL) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "bad broker address \"%s\" (host or host:port) or topic \"%s\" "
        "(no wildcards)", address, topic ? topic : "");
    return NULL;
  }
  set.host = host;
  set.port = port;
  s = g_new0 (GstCbirSync, 1);
  s->element = element;
  s->cb = cb;
  s->user_data = user_data;
  s->client = gst_cbir_mqtt_new (&set, &callbacks, s, error);
  if (s->client == NULL || !gst_cbir_mqtt_start (s->client, error)) {
    gst_cbir_sync_free (s, 0);
    return NULL;
  }
  return s;
}

void
gst_cbir_sync_publish (GstCbirSync * s, gchar * payload)
{
  gst_cbir_mqtt_publish (s->client, payload, strlen (payload));
}

void
gst_cbir_sync_free (GstCbirSync * s, guint timeout_ms)
{
  if (s == NULL)
    return;
  if (s->client) {
    gst_cbir_mqtt_flush (s->client, timeout_ms, TRUE);
    gst_cbir_mqtt_free (s->client);
  }
  g_free (s);
}

#endif

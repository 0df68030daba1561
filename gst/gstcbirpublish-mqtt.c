/* gst-cbir: cbirpublish's MQTT backend: the plugin's MQTT client
 * (gstcbirmqtt.c: held while the broker is away, at most max-queue, sent in
 * order when it is back; QoS 1 and 2 re-sent after a reconnection, at QoS
 * 0 a result the broker did not get is lost), its counts and warnings
 * reported to the element.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirpublish.h"

#include "gstcbirmqtt.h"

typedef struct
{
  GstCbirPublish *el;
  GstCbirMqtt *client;
} Mqtt;

static void
on_delivered (gpointer data)
{
  gst_cbir_publish_count (((Mqtt *) data)->el, 1, 0);
}

static void
on_dropped (gpointer data, guint n)
{
  gst_cbir_publish_count (((Mqtt *) data)->el, 0, n);
}

static void
on_trouble (gpointer data, GstCbirMqttTrouble what, const gchar * reason)
{
  Mqtt *m = data;
  const gchar *where = gst_cbir_mqtt_get_where (m->client);
  gchar *why = what == GST_CBIR_MQTT_REFUSED ?
      g_strdup_printf ("MQTT broker %s refused the connection: %s", where,
      reason) : what == GST_CBIR_MQTT_LOST ?
      g_strdup_printf ("lost the MQTT broker %s (%s)", where, reason) :
      g_strdup_printf ("cannot connect to the MQTT broker %s (%s)", where,
      reason);

  gst_cbir_publish_broker_lost (m->el, why);
  g_free (why);
}

static void
on_connected (gpointer data)
{
  Mqtt *m = data;

  gst_cbir_publish_broker_back (m->el);
}

static void mqtt_close (gpointer backend);

static gpointer
mqtt_open (GstCbirPublish * el, const GstCbirPublishConfig * cfg,
    GError ** error)
{
  GstCbirMqttSettings s = { cfg->host, cfg->port, cfg->client_id, FALSE,
    cfg->topic, cfg->qos, NULL, cfg->max_queue, cfg->linger,
    cfg->reconnect_delay_max,
    cfg->tls_ca_file, cfg->tls_cert_file, cfg->tls_key_file
  };
  Mqtt *m = g_new0 (Mqtt, 1);
  GstCbirMqttCallbacks cb = { on_delivered, on_dropped, on_trouble,
    on_connected, NULL
  };

  m->el = el;
  m->client = gst_cbir_mqtt_new (&s, &cb, m, error);
  if (m->client && gst_cbir_mqtt_start (m->client, error))
    return m;
  mqtt_close (m);
  return NULL;
}

static void
mqtt_send (gpointer backend, gchar * payload, gsize len)
{
  gst_cbir_mqtt_publish (((Mqtt *) backend)->client, payload, len);
}

static guint
mqtt_flush (gpointer backend, guint timeout_ms)
{
  return gst_cbir_mqtt_flush (((Mqtt *) backend)->client, timeout_ms, FALSE);
}

static void
mqtt_close (gpointer backend)
{
  Mqtt *m = backend;

  gst_cbir_mqtt_free (m->client);
  g_free (m);
}

const GstCbirPublishBackend gst_cbir_publish_mqtt = {
  "mqtt", mqtt_open, mqtt_send, mqtt_flush, mqtt_close
};

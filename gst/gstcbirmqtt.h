/* gst-cbir: one MQTT client (libmosquitto) for the plugin's two users:
 * cbirpublish's MQTT backend and cbirsearch's enrolment sync (internal).
 *
 * The client's own network thread runs libmosquitto (unthreaded: a
 * message is written by that thread at once, not handed on to a second
 * one) and reconnects (1 s, doubling up to reconnect_delay_max). Messages
 * wait up to linger_ms so that those close together leave in one batch;
 * while the broker is away they wait (at most max_queue together with
 * those in flight, the oldest dropped beyond) and go out, in order, as soon
 * as the connection is back. Messages in flight at QoS 1 and 2 are re-sent
 * by libmosquitto after a reconnection; at QoS 0 they are counted dropped.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct _GstCbirMqtt GstCbirMqtt;

typedef struct
{
  const gchar *host;
  guint port;
  const gchar *client_id;
  gboolean persistent;          /* keep the session (clean session off) */
  const gchar *topic;           /* where gst_cbir_mqtt_publish () goes */
  gint qos;
  const gchar *subscribe;       /* a topic to receive, or NULL */
  guint max_queue;              /* waiting + in flight */
  guint linger_ms;              /* how long a message may wait for others */
  guint reconnect_delay_max;    /* seconds */
  const gchar *tls_ca_file, *tls_cert_file, *tls_key_file;    /* or NULL */
} GstCbirMqttSettings;

typedef enum
{
  GST_CBIR_MQTT_UNREACHABLE,    /* the first connection failed */
  GST_CBIR_MQTT_REFUSED,        /* the broker refused the connection */
  GST_CBIR_MQTT_LOST,           /* the connection went away */
} GstCbirMqttTrouble;

/* Called from the client's network thread (`delivered` with the client's
 * lock held: counted before a flush can see the message gone). */
typedef struct
{
  void (*delivered) (gpointer user_data);
  void (*dropped) (gpointer user_data, guint n);
  void (*trouble) (gpointer user_data, GstCbirMqttTrouble what,
      const gchar * reason);
  void (*connected) (gpointer user_data);
  void (*message) (gpointer user_data, const gchar * payload, gsize len);
} GstCbirMqttCallbacks;

/* A client for these settings (nothing connects yet); NULL with an error
 * for settings libmosquitto refuses. */
GstCbirMqtt *gst_cbir_mqtt_new (const GstCbirMqttSettings * settings,
    const GstCbirMqttCallbacks * callbacks, gpointer user_data,
    GError ** error);
/* Starts the network thread and connects in the background. FALSE with an
 * error when the settings cannot work; a broker that is down is reported
 * through `trouble` (UNREACHABLE) and retried. */
gboolean gst_cbir_mqtt_start (GstCbirMqtt * c, GError ** error);
/* Sends or holds one message (takes payload); never blocks. */
void gst_cbir_mqtt_publish (GstCbirMqtt * c, gchar * payload, gsize len);
/* Waits up to timeout_ms for what is held and in flight to be delivered
 * (with only_while_connected, not while the broker is away); returns how
 * many are still held. */
guint gst_cbir_mqtt_flush (GstCbirMqtt * c, guint timeout_ms,
    gboolean only_while_connected);
/* Disconnects, joins the network thread and frees; what is still held is
 * reported as dropped. */
void gst_cbir_mqtt_free (GstCbirMqtt * c);
/* "host:port", for messages */
const gchar *gst_cbir_mqtt_get_where (GstCbirMqtt * c);

G_END_DECLS

/* gst-cbir: cbirpublish element, and the interface of its broker backends
 * (gstcbirpublish-mqtt.c, gstcbirpublish-kafka.c).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstbasesink.h>

G_BEGIN_DECLS

#define GST_TYPE_CBIR_PUBLISH (gst_cbir_publish_get_type ())
G_DECLARE_FINAL_TYPE (GstCbirPublish, gst_cbir_publish, GST, CBIR_PUBLISH,
    GstBaseSink)

GST_ELEMENT_REGISTER_DECLARE (cbirpublish);

/* What a broker backend is given when the element starts (copies of the
 * properties; strings NULL when unset). */
typedef struct
{
  gchar *host;                  /* MQTT: the broker's host */
  guint port;                   /* MQTT: its port */
  gchar *address;               /* as given (Kafka: bootstrap servers) */
  gchar *topic;
  gchar *client_id;
  gint qos;                     /* MQTT 0..2 */
  gint acks;                    /* Kafka -1 (all), 0, 1 */
  gchar *tls_ca_file, *tls_cert_file, *tls_key_file;
  gchar *kafka_config;          /* "key=value,..." */
  guint max_queue;              /* results held while the broker is away */
  guint reconnect_delay_max;    /* seconds */
  guint linger;                 /* ms a result may wait for others */
} GstCbirPublishConfig;

/* A broker backend. open () returns its state or NULL with an error (bad
 * settings only: a broker that is down is not an error, the backend keeps
 * trying and reports it with gst_cbir_publish_broker_lost ()). send ()
 * never blocks: it takes the payload (g_free), hands it to the broker or
 * holds it (at most max_queue results, the oldest dropped beyond) and
 * counts. flush () waits at most timeout_ms for what is held to be
 * delivered and returns how many are still held; close () frees all (what is still held counts as dropped). */
typedef struct
{
  const gchar *name;
  gpointer (*open) (GstCbirPublish * el, const GstCbirPublishConfig * cfg,
      GError ** error);
  void (*send) (gpointer backend, gchar * payload, gsize len);
  guint (*flush) (gpointer backend, guint timeout_ms);
  void (*close) (gpointer backend);
} GstCbirPublishBackend;

extern const GstCbirPublishBackend gst_cbir_publish_mqtt;
extern const GstCbirPublishBackend gst_cbir_publish_kafka;

/* For the backends (any thread). */
void gst_cbir_publish_count (GstCbirPublish * el, guint published,
    guint dropped);
/* The broker is away (warning on the bus, once until it is back). */
void gst_cbir_publish_broker_lost (GstCbirPublish * el, const gchar * reason);
/* The broker is reachable again (an info message when it had been lost). */
void gst_cbir_publish_broker_back (GstCbirPublish * el);

G_END_DECLS

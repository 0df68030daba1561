/* gst-cbir: cbirpublish's Kafka backend (librdkafka).
 *
 * librdkafka queues, batches, connects and reconnects itself; its queue is
 * bounded to max-queue results (queue.buffering.max.messages), so a result
 * that finds it full is dropped at once (counted) and the pipeline never
 * waits. A thread of ours serves librdkafka's callbacks (rd_kafka_poll):
 * a delivered result counts as published, one librdkafka gives up on
 * (message.timeout.ms, 300 s unless kafka-config says otherwise) as
 * dropped; "all brokers down" and transport errors post the element's
 * broker-lost warning, the next delivery its broker-back message.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirpublish.h"

#include <librdkafka/rdkafka.h>
#include <string.h>

GST_DEBUG_CATEGORY_EXTERN (gst_cbir_publish_debug);
#define GST_CAT_DEFAULT gst_cbir_publish_debug

typedef struct
{
  GstCbirPublish *el;
  rd_kafka_t *rk;
  rd_kafka_topic_t *rkt;
  gchar *servers;
  GThread *poller;
  gint stop;
} Kafka;

static void
on_delivery (rd_kafka_t * rk, const rd_kafka_message_t * msg, void *opaque)
{
  Kafka *k = opaque;

  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    gst_cbir_publish_count (k->el, 1, 0);
    gst_cbir_publish_broker_back (k->el);
  } else {
    GST_DEBUG_OBJECT (k->el, "not delivered: %s", rd_kafka_err2str
        (msg->err));
    gst_cbir_publish_count (k->el, 0, 1);
  }
}

static void
on_error (rd_kafka_t * rk, int err, const char *reason, void *opaque)
{
  Kafka *k = opaque;

  GST_DEBUG_OBJECT (k->el, "librdkafka: %s: %s", rd_kafka_err2name (err),
      reason);
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
      err == RD_KAFKA_RESP_ERR__TRANSPORT ||
      err == RD_KAFKA_RESP_ERR__RESOLVE) {
    gchar *why = g_strdup_printf ("Kafka brokers %s: %s", k->servers,
        reason);
    gst_cbir_publish_broker_lost (k->el, why);
    g_free (why);
  } else if (rd_kafka_fatal_error (rk, NULL, 0)) {
    GST_ELEMENT_WARNING (k->el, RESOURCE, WRITE,
        ("Kafka producer failed: %s", reason), (NULL));
  }
}

static void
on_log (const rd_kafka_t * rk, int level, const char *fac, const char *buf)
{
  Kafka *k = rd_kafka_opaque (rk);

  GST_LOG_OBJECT (k->el, "librdkafka %s: %s", fac, buf);
}

static gpointer
poll_thread (gpointer data)
{
  Kafka *k = data;

  while (!g_atomic_int_get (&k->stop))
    rd_kafka_poll (k->rk, 100);
  return NULL;
}

static gboolean
set (rd_kafka_conf_t * conf, const gchar * key, const gchar * value,
    GError ** error)
{
  gchar errstr[512];

  if (rd_kafka_conf_set (conf, key, value, errstr, sizeof errstr) ==
      RD_KAFKA_CONF_OK)
    return TRUE;
  g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "setting %s=%s: %s", key, value, errstr);
  return FALSE;
}

static void kafka_close (gpointer backend);

static gpointer
kafka_open (GstCbirPublish * el, const GstCbirPublishConfig * cfg,
    GError ** error)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  Kafka *k = g_new0 (Kafka, 1);
  gchar errstr[512], num[32];
  gchar **pairs = NULL, **p;

  k->el = el;
  k->servers = g_strdup (cfg->address);
  g_snprintf (num, sizeof num, "%u", cfg->max_queue);
  if (!set (conf, "bootstrap.servers", cfg->address, error) ||
      !set (conf, "client.id", cfg->client_id, error) ||
      !set (conf, "queue.buffering.max.messages", num, error))
    goto fail;
  g_snprintf (num, sizeof num, "%d", cfg->acks);
  if (!set (conf, "acks", num, error))
    goto fail;
  g_snprintf (num, sizeof num, "%u", cfg->linger);
  if (!set (conf, "linger.ms", num, error))
    goto fail;
  if (cfg->tls_ca_file && (!set (conf, "security.protocol", "ssl", error) ||
          !set (conf, "ssl.ca.location", cfg->tls_ca_file, error)))
    goto fail;
  if (cfg->tls_cert_file && !set (conf, "ssl.certificate.location",
          cfg->tls_cert_file, error))
    goto fail;
  if (cfg->tls_key_file && !set (conf, "ssl.key.location", cfg->tls_key_file,
          error))
    goto fail;
  if (cfg->kafka_config && *cfg->kafka_config) {
    pairs = g_strsplit (cfg->kafka_config, ",", -1);
    for (p = pairs; *p; p++) {
      gchar *eq = strchr (*p, '=');

      if (eq == NULL || eq == *p) {
        g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
            "kafka-config: \"%s\" is not key=value", *p);
        goto fail;
      }
      *eq = '\0';
      if (!set (conf, g_strstrip (*p), g_strstrip (eq + 1), error))
        goto fail;
    }
    g_clear_pointer (&pairs, g_strfreev);
  }
  rd_kafka_conf_set_opaque (conf, k);
  rd_kafka_conf_set_dr_msg_cb (conf, on_delivery);
  rd_kafka_conf_set_error_cb (conf, on_error);
  rd_kafka_conf_set_log_cb (conf, on_log);

  k->rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (k->rk == NULL) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "%s", errstr);
    goto fail;
  }
  conf = NULL;                  /* rd_kafka_new took it */
  k->rkt = rd_kafka_topic_new (k->rk, cfg->topic, NULL);
  if (k->rkt == NULL) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "topic \"%s\": %s", cfg->topic,
        rd_kafka_err2str (rd_kafka_last_error ()));
    goto fail;
  }
  k->poller = g_thread_new ("cbirpublish-kafka", poll_thread, k);
  return k;

fail:
  g_strfreev (pairs);
  if (conf)
    rd_kafka_conf_destroy (conf);
  kafka_close (k);
  return NULL;
}

static void
kafka_send (gpointer backend, gchar * payload, gsize len)
{
  Kafka *k = backend;

  if (rd_kafka_produce (k->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_FREE,
          payload, len, NULL, 0, NULL) != 0) {
    /* the queue is full (or the producer failed): dropped, never waited */
    GST_DEBUG_OBJECT (k->el, "dropped: %s",
        rd_kafka_err2str (rd_kafka_last_error ()));
    g_free (payload);
    gst_cbir_publish_count (k->el, 0, 1);
  }
}

static guint
kafka_flush (gpointer backend, guint timeout_ms)
{
  Kafka *k = backend;

  rd_kafka_flush (k->rk, (gint) MIN (timeout_ms, G_MAXINT));
  return (guint) MAX (rd_kafka_outq_len (k->rk), 0);
}

static void
kafka_close (gpointer backend)
{
  Kafka *k = backend;

  if (k->poller) {
    g_atomic_int_set (&k->stop, 1);
    g_thread_join (k->poller);
  }
  if (k->rk) {
    gint left;

    /* what is still queued is given up (counted by its delivery report) */
    rd_kafka_purge (k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll (k->rk, 0);
    left = rd_kafka_outq_len (k->rk);
    if (left > 0)
      gst_cbir_publish_count (k->el, 0, (guint) left);
  }
  if (k->rkt)
    rd_kafka_topic_destroy (k->rkt);
  if (k->rk)
    rd_kafka_destroy (k->rk);
  g_free (k->servers);
  g_free (k);
}

const GstCbirPublishBackend gst_cbir_publish_kafka = {
  "kafka", kafka_open, kafka_send, kafka_flush, kafka_close
};

/* gst-cbir: one MQTT client (libmosquitto) for cbirpublish and the
 * enrolment sync.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirmqtt.h"

#include <errno.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

GST_DEBUG_CATEGORY_EXTERN (gst_cbir_publish_debug);
#define GST_CAT_DEFAULT gst_cbir_publish_debug

/* how often the network thread looks at the connection when nothing
 * happens (keep-alive pings, reconnection) */
#define TICK_MS 1000
/* the longest wait before the broker's acknowledgements are read */
#define READ_LINGER_MS 5

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
  guint linger_ms;
  guint reconnect_delay_max;    /* seconds */
  GstCbirMqttCallbacks cb;
  gpointer user_data;
  GThread *thread;              /* the network thread (owns mosq) */
  gint wake_fd;                 /* eventfd: wakes the network thread */

  GMutex lock;
  GCond cond;                   /* signalled when something was delivered */
  GQueue pending;               /* of Item*: not yet handed to libmosquitto */
  gint64 send_at;               /* monotonic us when pending goes out; 0: none */
  guint in_flight;              /* handed to libmosquitto, not yet done */
  gboolean connected;           /* CONNACK received, not lost since */
  gboolean sleeping, woken;     /* the network thread waits in poll () */
  guint flushing;               /* threads waiting in gst_cbir_mqtt_flush () */
  guint disconnects;            /* on_disconnect () calls (network thread) */
  gboolean closing;
};

static void
item_free (Item * it)
{
  g_free (it->data);
  g_free (it);
}

/* Wakes the network thread if it waits; with the lock. */
static void
wake_locked (GstCbirMqtt * c)
{
  guint64 one = 1;

  if (c->sleeping && !c->woken) {
    c->woken = TRUE;
    if (write (c->wake_fd, &one, sizeof one) < 0)
      GST_WARNING ("cannot wake the MQTT thread: %s", g_strerror (errno));
  }
}

/* Holds a message until it goes out; drops the oldest held beyond
 * max_queue. With the lock. */
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

/* The callbacks below run on the network thread, inside libmosquitto. */

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
  /* what waited goes first, in order, now */
  if (c->pending.length > 0)
    c->send_at = g_get_monotonic_time ();
  g_mutex_unlock (&c->lock);
  if (c->cb.connected)
    c->cb.connected (c->user_data);
}

static void
on_disconnect (struct mosquitto *mosq, void *obj, int rc)
{
  GstCbirMqtt *c = obj;
  gboolean closing, was_connected;
  guint lost = 0;

  c->disconnects++;
  g_mutex_lock (&c->lock);
  was_connected = c->connected;
  c->connected = FALSE;
  closing = c->closing;
  /* at QoS 0 what libmosquitto had not written is gone (at 1 and 2 it is
   * re-sent after the reconnection) */
  if (c->qos == 0) {
    lost = c->in_flight;
    c->in_flight = 0;
  }
  g_cond_broadcast (&c->cond);
  g_mutex_unlock (&c->lock);
  if (lost && c->cb.dropped)
    c->cb.dropped (c->user_data, lost);
  if (!closing && c->cb.trouble)
    c->cb.trouble (c->user_data, was_connected ? GST_CBIR_MQTT_LOST :
        GST_CBIR_MQTT_UNREACHABLE, rc == MOSQ_ERR_ERRNO && errno ?
        g_strerror (errno) : mosquitto_strerror (rc));
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
  /* (a broadcast is a system call: only when someone waits) */
  if (c->flushing)
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
  c->linger_ms = s->linger_ms;
  c->reconnect_delay_max = s->reconnect_delay_max;
  c->wake_fd = -1;
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
  /* (libmosquitto formats a line per packet when there is a listener) */
  if (gst_debug_category_get_threshold (GST_CAT_DEFAULT) >= GST_LEVEL_LOG)
    mosquitto_log_callback_set (c->mosq, on_log);
  /* at QoS 1 and 2, max_queue in flight (libmosquitto's default is 20,
   * too few for a batch at a high frame rate) */
  mosquitto_int_option (c->mosq, MOSQ_OPT_SEND_MAXIMUM,
      (gint) MIN (s->max_queue, 65535));
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

/* Hands what is pending to libmosquitto, oldest first, within max_queue
 * in flight, as one batch: the socket is corked meanwhile, so that the
 * batch leaves in as few TCP segments as fit (TCP_CORK). Network thread. */
static void
send_pending (GstCbirMqtt * c)
{
  GQueue batch = G_QUEUE_INIT;
  Item *it;
  gint sock = mosquitto_socket (c->mosq), on = 1, off = 0;
  gboolean corked;

  g_mutex_lock (&c->lock);
  while (c->in_flight < c->max_queue &&
      (it = g_queue_pop_head (&c->pending))) {
    g_queue_push_tail (&batch, it);
    c->in_flight++;
  }
  c->send_at = c->pending.length > 0 ? g_get_monotonic_time () : 0;
  g_mutex_unlock (&c->lock);

  GST_LOG ("sending %u results to %s", batch.length, c->where);
  corked = batch.length > 1 && sock >= 0 &&
      setsockopt (sock, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0;
  while ((it = g_queue_pop_head (&batch))) {
    gint rc = mosquitto_publish (c->mosq, NULL, c->topic, (gint) it->len,
        it->data, c->qos, false);

    if (rc == MOSQ_ERR_NO_CONN) {
      /* not taken after all: it and the rest wait, in order */
      g_mutex_lock (&c->lock);
      g_queue_push_head (&batch, it);
      c->in_flight -= batch.length;
      while ((it = g_queue_pop_tail (&batch)))
        g_queue_push_head (&c->pending, it);
      g_mutex_unlock (&c->lock);
      break;
    }
    /* any other failure to write is libmosquitto's now: the connection is
     * found lost and re-made, QoS 1 and 2 re-sent, QoS 0 counted dropped */
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO &&
        rc != MOSQ_ERR_CONN_LOST) {
      GST_WARNING ("mosquitto_publish to %s: %s", c->where,
          mosquitto_strerror (rc));
      g_mutex_lock (&c->lock);
      c->in_flight--;
      g_mutex_unlock (&c->lock);
      if (c->cb.dropped)
        c->cb.dropped (c->user_data, 1);
    }
    item_free (it);
  }
  /* (the socket may be a new one by now: uncorking it does no harm) */
  if (corked && mosquitto_socket (c->mosq) >= 0)
    setsockopt (mosquitto_socket (c->mosq), IPPROTO_TCP, TCP_CORK, &off,
        sizeof off);
}

/* The network thread: the only one that touches c->mosq once started.
 * libmosquitto runs unthreaded here, so that a publish is written at once
 * in this thread (libmosquitto's own thread would be woken for every
 * message, twice at QoS 1) and results that come within linger_ms of each
 * other leave together. */
static gpointer
network_thread (gpointer data)
{
  GstCbirMqtt *c = data;
  gint64 retry_at = 0;          /* while disconnected: when to reconnect */
  gint64 read_at = 0;           /* when the socket is next read */
  gboolean broken = FALSE;      /* a socket libmosquitto gave up on */
  guint disconnects;
  guint delay = 1;              /* seconds before the next reconnection */

  for (;;) {
    struct pollfd fds[2] = { {c->wake_fd, POLLIN, 0}, {-1, 0, 0} };
    gint sock = broken ? -1 : mosquitto_socket (c->mosq), timeout = TICK_MS,
        rc;
    gint64 now = g_get_monotonic_time ();
    gboolean send, reading;

    g_mutex_lock (&c->lock);
    if (c->closing) {
      g_mutex_unlock (&c->lock);
      break;
    }
    send = c->connected && c->send_at && now >= c->send_at &&
        c->in_flight < c->max_queue;
    g_mutex_unlock (&c->lock);
    if (send)
      send_pending (c);

    if (sock < 0 && now >= retry_at) {
      broken = FALSE;
      /* (closes a broken socket first) */
      rc = mosquitto_reconnect_async (c->mosq);
      sock = mosquitto_socket (c->mosq);
      if (rc != MOSQ_ERR_SUCCESS || sock < 0) {
        GST_DEBUG ("reconnecting to %s: %s", c->where,
            rc == MOSQ_ERR_ERRNO ? g_strerror (errno) :
            mosquitto_strerror (rc));
        retry_at = now + (gint64) delay *G_USEC_PER_SEC;
        delay = MIN (delay * 2, MAX (c->reconnect_delay_max, 1));
      }
    }

    g_mutex_lock (&c->lock);
    if (sock < 0)
      timeout = (gint) CLAMP ((retry_at - now) / 1000, 0, TICK_MS);
    else if (c->connected && c->send_at && c->in_flight < c->max_queue)
      timeout = (gint) CLAMP ((c->send_at - now + 999) / 1000, 0, TICK_MS);
    /* the broker's acknowledgements are read at most every linger_ms (up
     * to READ_LINGER_MS): one wake for many of them */
    reading = sock >= 0 && now >= read_at;
    if (sock >= 0 && !reading)
      timeout = MIN (timeout, (gint) ((read_at - now + 999) / 1000));
    if (c->connected)
      delay = 1;
    if (c->closing)
      timeout = 0;
    c->sleeping = TRUE;
    g_mutex_unlock (&c->lock);
    if (sock >= 0) {
      fds[1].fd = sock;
      fds[1].events = (reading ? POLLIN : 0) |
          (mosquitto_want_write (c->mosq) ? POLLOUT : 0);
    }
    if (poll (fds, sock >= 0 ? 2 : 1, timeout) < 0 &&
        errno != EINTR)
      GST_WARNING ("poll: %s", g_strerror (errno));
    g_mutex_lock (&c->lock);
    c->sleeping = c->woken = FALSE;
    g_mutex_unlock (&c->lock);
    if (fds[0].revents & POLLIN) {
      guint64 n;

      if (read (c->wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
        GST_WARNING ("eventfd: %s", g_strerror (errno));
    }
    if (sock < 0)
      continue;
    /* read, write what is queued, keep alive; a failure closes the socket
     * and reports it through on_disconnect () */
    rc = MOSQ_ERR_SUCCESS;
    disconnects = c->disconnects;
    if (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) {
      rc = mosquitto_loop_read (c->mosq, 1);
      /* (at most READ_LINGER_MS: acknowledgements free room in the queue) */
      read_at = g_get_monotonic_time () +
          (gint64) MIN (c->linger_ms, READ_LINGER_MS) * 1000;
    }
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket (c->mosq) >= 0 &&
        mosquitto_want_write (c->mosq))
      rc = mosquitto_loop_write (c->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket (c->mosq) >= 0)
      rc = mosquitto_loop_misc (c->mosq);
    if (rc != MOSQ_ERR_SUCCESS && c->disconnects == disconnects) {
      /* a failure libmosquitto reports through no callback (the TLS
       * handshake's: the socket closed, or left open) */
      gboolean was_connected;

      g_mutex_lock (&c->lock);
      was_connected = c->connected;
      c->connected = FALSE;
      g_mutex_unlock (&c->lock);
      broken = mosquitto_socket (c->mosq) >= 0;
      if (c->cb.trouble)
        c->cb.trouble (c->user_data, was_connected ? GST_CBIR_MQTT_LOST :
            GST_CBIR_MQTT_UNREACHABLE, rc == MOSQ_ERR_TLS ? "the TLS "
            "handshake failed: is tls-ca-file the CA that signed the "
            "broker's certificate, and the address the name in it?" :
            mosquitto_strerror (rc));
    }
    if (broken || mosquitto_socket (c->mosq) < 0) {
      GST_DEBUG ("connection to %s closed: %s", c->where,
          mosquitto_strerror (rc));
      retry_at = g_get_monotonic_time () + (gint64) delay *G_USEC_PER_SEC;
      delay = MIN (delay * 2, MAX (c->reconnect_delay_max, 1));
    }
  }

  /* a clean goodbye to the broker, written at once (unthreaded) */
  if (mosquitto_socket (c->mosq) >= 0) {
    mosquitto_disconnect (c->mosq);
    mosquitto_loop_write (c->mosq, 1);
  }
  return NULL;
}

gboolean
gst_cbir_mqtt_start (GstCbirMqtt * c, GError ** error)
{
  gint rc;

  c->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (c->wake_fd < 0) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "cannot start the MQTT client: eventfd: %s", g_strerror (errno));
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
  c->thread = g_thread_try_new ("cbir-mqtt", network_thread, c, error);
  return c->thread != NULL;
}

void
gst_cbir_mqtt_publish (GstCbirMqtt * c, gchar * payload, gsize len)
{
  Item *it = g_new (Item, 1);

  it->data = payload;
  it->len = len;
  g_mutex_lock (&c->lock);
  hold_locked (c, it);
  /* the first of a batch sets when it goes out and wakes the thread; the
   * rest wait with it */
  if (c->send_at == 0) {
    c->send_at = g_get_monotonic_time () + (gint64) c->linger_ms * 1000;
    wake_locked (c);
  } else if (c->connected && c->pending.length >= MAX (c->max_queue / 2, 1)) {
    /* a batch of half the queue goes now, lingering or not: waiting
     * longer would drop results */
    c->send_at = g_get_monotonic_time ();
    wake_locked (c);
  }
  g_mutex_unlock (&c->lock);
}

guint
gst_cbir_mqtt_flush (GstCbirMqtt * c, guint timeout_ms,
    gboolean only_while_connected)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  guint held;

  g_mutex_lock (&c->lock);
  /* no lingering: what is pending goes now */
  if (c->pending.length > 0) {
    c->send_at = g_get_monotonic_time ();
    wake_locked (c);
  }
  c->flushing++;
  while ((c->connected || !only_while_connected) &&
      c->pending.length + c->in_flight > 0)
    if (!g_cond_wait_until (&c->cond, &c->lock, end))
      break;
  c->flushing--;
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
  if (c->thread) {
    guint64 one = 1;

    g_mutex_lock (&c->lock);
    c->closing = TRUE;
    g_mutex_unlock (&c->lock);
    /* (seen at the top of its loop, or ends its poll ()) */
    if (write (c->wake_fd, &one, sizeof one) < 0)
      GST_WARNING ("cannot wake the MQTT thread: %s", g_strerror (errno));
    g_thread_join (c->thread);
  }
  if (c->mosq)
    mosquitto_destroy (c->mosq);
  if (c->wake_fd >= 0)
    close (c->wake_fd);
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

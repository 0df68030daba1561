/* gst-cbir: enrolments shared between machines over an MQTT topic
 * (internal to cbirsearch).
 *
 * Each enrolment, removal and relabelling made here is published (QoS 1)
 * as one JSON operation (cbir_journal_record_to_json) to the topic; every
 * operation on the topic, ours included, comes back and is applied once
 * (operation ids), so the galleries of all the pipelines on the topic
 * converge. The client keeps a persistent session (clean session off, a
 * fixed client id): what was published while a pipeline was down is kept
 * by the broker and delivered, in order, when it comes back. A broker that
 * is down or goes away is reported once (a warning) and retried (1 s,
 * doubling to 10 s); operations made meanwhile wait and go out in order.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct _GstCbirSync GstCbirSync;

/* Called in the network thread for each operation received. */
typedef void (*GstCbirSyncReceived) (const gchar * payload, gsize len,
    gpointer user_data);

/* Connects (in the background) to the broker at address (host[:port]) and
 * subscribes to topic; NULL with an error for bad settings (not for a
 * broker that is down: that is retried). Warnings go to element's bus. */
GstCbirSync *gst_cbir_sync_new (GstElement * element, const gchar * address,
    const gchar * topic, const gchar * client_id, GstCbirSyncReceived cb,
    gpointer user_data, GError ** error);
/* Publishes one operation (takes payload); never blocks. */
void gst_cbir_sync_publish (GstCbirSync * s, gchar * payload);
/* Waits up to timeout_ms for what was published to be acknowledged, then
 * disconnects and frees. */
void gst_cbir_sync_free (GstCbirSync * s, guint timeout_ms);

G_END_DECLS

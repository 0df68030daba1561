/* gst-cbir: the result schema, version 1 (internal to the plugin).
 *
 * One place for what a result holds: cbirsearch fills its GstStructure
 * (bus message, custom meta, ROI params) with the frame fields below and
 * its search fields; cbirpublish (and through it cbir-tag) writes the JSON
 * of a frame from those same structures. A JSON key is the structure's
 * field name with '-' written '_' ("match-score" -> "match_score"); the
 * schema is schema/cbir-result-1.schema.json, the README documents it.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_CBIR_RESULT_SCHEMA_VERSION 1

/* What an element knows of its stream for the frame fields: kept from its
 * sink pad's caps and STREAM_START event, and upstream's URI (asked once
 * per stream). */
typedef struct
{
  gint fps_n, fps_d;            /* caps frame rate, 0/1 when unknown */
  guint frame_width, frame_height;      /* caps size, 0 when unknown */
  gchar *stream_id;             /* the STREAM_START event's, or NULL */
  gchar *source;                /* upstream's URI, or NULL */
  gboolean source_queried;
} GstCbirStreamInfo;

void gst_cbir_stream_info_init (GstCbirStreamInfo * si);
/* Frees what it holds and starts again (the element stops). */
void gst_cbir_stream_info_clear (GstCbirStreamInfo * si);
void gst_cbir_stream_info_set_caps (GstCbirStreamInfo * si,
    const GstCaps * caps);
/* Takes the stream id of a STREAM_START (other events: nothing). */
void gst_cbir_stream_info_event (GstCbirStreamInfo * si,
    const GstEvent * event);
/* Asks upstream of sinkpad for its URI, once per stream. */
void gst_cbir_stream_info_query_source (GstCbirStreamInfo * si,
    GstPad * sinkpad);

/* Sets the frame fields of s: "schema-version", "utc" (ISO 8601 UTC, from
 * a GstReferenceTimestampMeta "timestamp/x-unix" or "timestamp/x-ntp" when
 * upstream set one, else the system clock now), "timestamp",
 * "stream-time", "running-time", "duration" (guint64 ns, G_MAXUINT64 =
 * unknown; from `segment`, TIME, or NULL), "frame" (stream time x frame
 * rate; else the buffer offset; else `counted`, the frames seen before
 * this one), "frame-width", "frame-height", and "stream-id" and "source"
 * when known. */
void gst_cbir_result_set_frame_fields (GstStructure * s, GstBuffer * buf,
    const GstSegment * segment, guint64 counted,
    const GstCbirStreamInfo * si);

/* TRUE when buf carries a result (whole frame or a region's). */
gboolean gst_cbir_buffer_has_result (GstBuffer * buf);

/* The JSON object of one frame (no newline): its frame fields from its
 * first result, or from `frame` when it has none (may be NULL then), its
 * "regions" (one per searched ROI, with its box; or one for a whole-frame
 * result), and the frame's "label", "confidence", "match" and
 * "match_score": those of its most confident match (-1, 0, false and the
 * highest score when none matched). With `embedding`, each region also
 * gets its "embedding" (the float code). */
gchar *gst_cbir_frame_to_json (GstBuffer * buf, const GstStructure * frame,
    gboolean embedding);

G_END_DECLS

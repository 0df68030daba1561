/* gst-cbir: the result schema, version 1: frame fields and JSON.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirresult.h"
#include "gstcbirmeta.h"

#include <gst/video/video.h>
#include <string.h>
#include <time.h>

#include "json-util.h"

/* seconds from 1900 (NTP) to 1970 (Unix) */
#define NTP_UNIX_OFFSET G_GUINT64_CONSTANT (2208988800)

/* The fields that describe the frame (and the search that ran on it)
 * rather than one region: the JSON has them once, at the top. */
static const gchar *const frame_fields[] = {
  "schema-version", "utc", "stream-id", "source", "element", "model",
  "gallery", "gallery-size", "metric", "rerank", "timestamp", "stream-time",
  "running-time", "duration", "frame", "frame-width", "frame-height", NULL
};

/* Region fields the JSON takes from elsewhere (the box from the ROI, which
 * follows videoscale) or leaves out (n-regions: the array's length). */
static const gchar *const region_skipped[] = {
  "x", "y", "width", "height", "n-regions", NULL
};

/* Wall-clock time of the frame in Unix microseconds. */
static gint64
frame_utc_us (GstBuffer * buf)
{
  static GstCaps *unix_caps, *ntp_caps;
  GstReferenceTimestampMeta *m;

  if (g_once_init_enter (&unix_caps)) {
    ntp_caps = gst_caps_new_empty_simple ("timestamp/x-ntp");
    GST_MINI_OBJECT_FLAG_SET (ntp_caps, GST_MINI_OBJECT_FLAG_MAY_BE_LEAKED);
    GstCaps *c = gst_caps_new_empty_simple ("timestamp/x-unix");
    GST_MINI_OBJECT_FLAG_SET (c, GST_MINI_OBJECT_FLAG_MAY_BE_LEAKED);
    g_once_init_leave (&unix_caps, c);
  }
  m = gst_buffer_get_reference_timestamp_meta (buf, unix_caps);
  if (m && GST_CLOCK_TIME_IS_VALID (m->timestamp))
    return (gint64) (m->timestamp / 1000);
  m = gst_buffer_get_reference_timestamp_meta (buf, ntp_caps);
  if (m && GST_CLOCK_TIME_IS_VALID (m->timestamp)
      && m->timestamp >= NTP_UNIX_OFFSET * GST_SECOND)
    return (gint64) ((m->timestamp - NTP_UNIX_OFFSET * GST_SECOND) / 1000);
  return g_get_real_time ();
}

/* "2026-12-03T12:45:46.123456Z" */
static void
format_utc (gchar * out, gsize len, gint64 us)
{
  time_t secs = (time_t) (us / G_USEC_PER_SEC);
  struct tm tm;

  gmtime_r (&secs, &tm);
  g_snprintf (out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
      tm.tm_sec, (gint) (us % G_USEC_PER_SEC));
}

void
gst_cbir_stream_info_init (GstCbirStreamInfo * si)
{
  memset (si, 0, sizeof *si);
  si->fps_d = 1;
}

void
gst_cbir_stream_info_clear (GstCbirStreamInfo * si)
{
  g_free (si->stream_id);
  g_free (si->source);
  gst_cbir_stream_info_init (si);
}

void
gst_cbir_stream_info_set_caps (GstCbirStreamInfo * si, const GstCaps * caps)
{
  const GstStructure *st = gst_caps_get_structure (caps, 0);
  gint w = 0, h = 0;

  if (!gst_structure_get_fraction (st, "framerate", &si->fps_n, &si->fps_d)) {
    si->fps_n = 0;
    si->fps_d = 1;
  }
  gst_structure_get_int (st, "width", &w);
  gst_structure_get_int (st, "height", &h);
  si->frame_width = (guint) MAX (w, 0);
  si->frame_height = (guint) MAX (h, 0);
}

void
gst_cbir_stream_info_event (GstCbirStreamInfo * si, const GstEvent * event)
{
  const gchar *id = NULL;

  if (GST_EVENT_TYPE (event) != GST_EVENT_STREAM_START)
    return;
  gst_event_parse_stream_start ((GstEvent *) event, &id);
  g_free (si->stream_id);
  si->stream_id = g_strdup (id);
  si->source_queried = FALSE;
}

void
gst_cbir_stream_info_query_source (GstCbirStreamInfo * si, GstPad * sinkpad)
{
  GstQuery *q;

  if (si->source_queried)
    return;
  si->source_queried = TRUE;
  g_clear_pointer (&si->source, g_free);
  q = gst_query_new_uri ();
  if (gst_pad_peer_query (sinkpad, q))
    gst_query_parse_uri (q, &si->source);
  gst_query_unref (q);
}

void
gst_cbir_result_set_frame_fields (GstStructure * s, GstBuffer * buf,
    const GstSegment * segment, guint64 counted, const GstCbirStreamInfo * si)
{
  GstClockTime ts = GST_BUFFER_PTS (buf), st = GST_CLOCK_TIME_NONE,
      rt = GST_CLOCK_TIME_NONE;
  guint64 frame;
  gchar utc[40];

  if (segment && segment->format == GST_FORMAT_TIME &&
      GST_CLOCK_TIME_IS_VALID (ts)) {
    st = gst_segment_to_stream_time (segment, GST_FORMAT_TIME, ts);
    rt = gst_segment_to_running_time (segment, GST_FORMAT_TIME, ts);
  }
  if (GST_CLOCK_TIME_IS_VALID (st) && si->fps_n > 0 && si->fps_d > 0)
    frame = gst_util_uint64_scale_round (st, si->fps_n,
        (guint64) si->fps_d * GST_SECOND);
  else if (GST_BUFFER_OFFSET_IS_VALID (buf))
    frame = GST_BUFFER_OFFSET (buf);
  else
    frame = counted;
  format_utc (utc, sizeof utc, frame_utc_us (buf));

  gst_structure_set (s,
      "schema-version", G_TYPE_INT, GST_CBIR_RESULT_SCHEMA_VERSION,
      "utc", G_TYPE_STRING, utc,
      "timestamp", G_TYPE_UINT64, ts,
      "stream-time", G_TYPE_UINT64, st,
      "running-time", G_TYPE_UINT64, rt,
      "duration", G_TYPE_UINT64, GST_BUFFER_DURATION (buf),
      "frame", G_TYPE_UINT64, frame,
      "frame-width", G_TYPE_UINT, si->frame_width,
      "frame-height", G_TYPE_UINT, si->frame_height, NULL);
  if (si->stream_id)
    gst_structure_set (s, "stream-id", G_TYPE_STRING, si->stream_id, NULL);
  if (si->source)
    gst_structure_set (s, "source", G_TYPE_STRING, si->source, NULL);
}

/* ---- JSON ---- */

static void
append_key (GString * s, const gchar * field)
{
  gsize at;

  g_string_append_c (s, '"');
  at = s->len;
  g_string_append (s, field);
  for (; at < s->len; at++)
    if (s->str[at] == '-')
      s->str[at] = '_';
  g_string_append (s, "\":");
}

/* A double that holds a float (the search's distances, confidences and
 * scores) as that float's shortest form: 0.8, not 0.800000011920929. */
static void
append_number (GString * s, gdouble v)
{
  if ((gdouble) (gfloat) v == v)
    cbir_json_append_float (s, (gfloat) v);
  else
    cbir_json_append_double (s, v);
}

static void
append_value (GString * s, const GValue * v)
{
  GType t = G_VALUE_TYPE (v);

  if (t == G_TYPE_BOOLEAN) {
    g_string_append (s, g_value_get_boolean (v) ? "true" : "false");
  } else if (t == G_TYPE_INT) {
    cbir_json_append_int (s, g_value_get_int (v));
  } else if (t == G_TYPE_UINT) {
    cbir_json_append_uint (s, g_value_get_uint (v));
  } else if (t == G_TYPE_INT64) {
    cbir_json_append_int (s, g_value_get_int64 (v));
  } else if (t == G_TYPE_UINT64) {
    /* GST_CLOCK_TIME_NONE and other "unknown" guint64s */
    if (g_value_get_uint64 (v) == G_MAXUINT64)
      g_string_append (s, "null");
    else
      cbir_json_append_uint (s, g_value_get_uint64 (v));
  } else if (t == G_TYPE_FLOAT) {
    cbir_json_append_float (s, g_value_get_float (v));
  } else if (t == G_TYPE_DOUBLE) {
    append_number (s, g_value_get_double (v));
  } else if (t == G_TYPE_STRING) {
    const gchar *str = g_value_get_string (v);
    if (str)
      cbir_json_append_string (s, str);
    else
      g_string_append (s, "null");
  } else if (t == GST_TYPE_ARRAY || t == GST_TYPE_LIST) {
    gboolean array = t == GST_TYPE_ARRAY;
    guint i, n = array ? gst_value_array_get_size (v) :
        gst_value_list_get_size (v);

    g_string_append_c (s, '[');
    for (i = 0; i < n; i++) {
      if (i)
        g_string_append_c (s, ',');
      append_value (s, array ? gst_value_array_get_value (v, i) :
          gst_value_list_get_value (v, i));
    }
    g_string_append_c (s, ']');
  } else {
    gchar *str = gst_value_serialize (v);
    if (str)
      cbir_json_append_string (s, str);
    else
      g_string_append (s, "null");
    g_free (str);
  }
}

/* Appends ,"key":value for each field of st that is (frame_level) or is
 * not (!frame_level) a frame field; `first` says whether a comma is due. */
static void
append_fields (GString * s, const GstStructure * st, gboolean frame_level,
    gboolean * first)
{
  guint i, n = gst_structure_n_fields (st);

  for (i = 0; i < n; i++) {
    const gchar *f = gst_structure_nth_field_name (st, i);
    gboolean is_frame = g_strv_contains (frame_fields, f);

    if (is_frame != frame_level)
      continue;
    if (!frame_level && g_strv_contains (region_skipped, f))
      continue;
    if (!*first)
      g_string_append_c (s, ',');
    *first = FALSE;
    append_key (s, f);
    append_value (s, gst_structure_get_value (st, f));
  }
}

static GstCbirEmbeddingMeta *
find_embedding (GstBuffer * buf, gint region_id)
{
  gpointer state = NULL;
  GstMeta *meta;

  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              gst_cbir_embedding_meta_api_get_type ()))) {
    GstCbirEmbeddingMeta *e = (GstCbirEmbeddingMeta *) meta;

    if (e->region_id == region_id || (region_id < 0 && e->region_id < 0))
      return e;
  }
  return NULL;
}

static void
append_embedding (GString * s, GstBuffer * buf, gint region_id)
{
  GstCbirEmbeddingMeta *e = find_embedding (buf, region_id);
  guint i;

  if (!e || !e->vector)
    return;
  g_string_append (s, ",\"embedding\":[");
  for (i = 0; i < e->dim; i++) {
    if (i)
      g_string_append_c (s, ',');
    cbir_json_append_float (s, e->vector[i]);
  }
  g_string_append_c (s, ']');
}

/* The frame's summary: its most confident match */
typedef struct
{
  gint label;
  gdouble confidence;
  gdouble best_score;
  gboolean match;
} Best;

static void
consider (Best * b, const GstStructure * r)
{
  gint label = -1;
  gdouble conf = 0, score = 0;
  gboolean match = FALSE;

  gst_structure_get_int (r, "label", &label);
  gst_structure_get_double (r, "confidence", &conf);
  gst_structure_get_double (r, "match-score", &score);
  gst_structure_get_boolean (r, "match", &match);
  if (match && (!b->match || conf > b->confidence)) {
    b->match = TRUE;
    b->label = label;
    b->confidence = conf;
    b->best_score = score;
  } else if (!b->match && score > b->best_score) {
    b->best_score = score;
  }
}

static void
append_region (GString * s, GstBuffer * buf, const GstStructure * r,
    const GstVideoRegionOfInterestMeta * roi, gboolean embedding)
{
  gboolean first = FALSE;
  gint region_id = -1;

  g_string_append (s, "{\"x\":");
  if (roi) {
    cbir_json_append_uint (s, roi->x);
    g_string_append (s, ",\"y\":");
    cbir_json_append_uint (s, roi->y);
    g_string_append (s, ",\"width\":");
    cbir_json_append_uint (s, roi->w);
    g_string_append (s, ",\"height\":");
    cbir_json_append_uint (s, roi->h);
  } else
    g_string_append (s, "null,\"y\":null,\"width\":null,\"height\":null");
  append_fields (s, r, FALSE, &first);
  if (embedding) {
    if (!gst_structure_get_int (r, "region-id", &region_id))
      region_id = -1;
    append_embedding (s, buf, region_id);
  }
  g_string_append_c (s, '}');
}

gboolean
gst_cbir_buffer_has_result (GstBuffer * buf)
{
  gpointer state = NULL;
  GstMeta *meta;

  if (gst_buffer_get_cbir_result_structure (buf))
    return TRUE;
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)))
    if (gst_video_region_of_interest_meta_get_param ((GstVideoRegionOfInterestMeta *) meta, GST_CBIR_RESULT_STRUCTURE_NAME))
      return TRUE;
  return FALSE;
}

gchar *
gst_cbir_frame_to_json (GstBuffer * buf, const GstStructure * frame,
    gboolean embedding)
{
  GString *s = g_string_sized_new (512);
  GString *regions = g_string_sized_new (384);
  const GstStructure *head = NULL, *whole;
  gpointer state = NULL;
  GstMeta *meta;
  Best best = { -1, 0, 0, FALSE };
  gboolean first = TRUE;
  guint n = 0;

  /* regions: the ROIs with a result, in the buffer's order */
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) meta;
    GstStructure *r = gst_video_region_of_interest_meta_get_param (roi,
        GST_CBIR_RESULT_STRUCTURE_NAME);

    if (!r)
      continue;
    if (n++)
      g_string_append_c (regions, ',');
    append_region (regions, buf, r, roi, embedding);
    consider (&best, r);
    if (!head)
      head = r;
  }
  /* else the whole frame's */
  whole = n == 0 ? gst_buffer_get_cbir_result_structure (buf) : NULL;
  if (whole) {
    append_region (regions, buf, whole, NULL, embedding);
    consider (&best, whole);
    head = whole;
  }
  if (!head)
    head = frame;

  g_string_append_c (s, '{');
  if (head)
    append_fields (s, head, TRUE, &first);
  if (!first)
    g_string_append_c (s, ',');
  g_string_append (s, "\"regions\":[");
  g_string_append_len (s, regions->str, regions->len);
  g_string_append (s, "],\"label\":");
  cbir_json_append_int (s, best.label);
  g_string_append (s, ",\"confidence\":");
  append_number (s, best.confidence);
  g_string_append (s, best.match ? ",\"match\":true,\"match_score\":" :
      ",\"match\":false,\"match_score\":");
  append_number (s, best.best_score);
  g_string_append_c (s, '}');
  g_string_free (regions, TRUE);
  return g_string_free (s, FALSE);
}

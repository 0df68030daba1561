/* cbir-tag: batch tagging of video files with the cbir plugin.
 *
 *   cbir-tag --model M --gallery G [--preprocess mnist|scale]
 *            [--regions digits|none] [--k 5]
 *            [--out-dir DIR] FILE...
 *
 * For each file (anything uridecodebin decodes) runs
 *   uridecodebin ! videoconvert ! GRAY8 ! cbirencode ! cbirsearch ! fakesink
 * as fast as it decodes, and writes next to it (or into DIR):
 *   FILE.cbir.jsonl          one line a decoded frame, written by the
 *     plugin's cbirpublish (empty-frames=true, atomic=true): the result
 *     schema 1 (schema/cbir-result-1.schema.json; the README's "Result
 *     fields"), e.g.
 *     {"schema_version":1,"utc":"...","timestamp":0,"stream_time":0,
 *      ...,"frame":0,...,"regions":[{"x":10,"y":20,"width":40,
 *      "height":60,"label":7,"confidence":0.92,"match_score":0.41,
 *      "match":true,"ids":[..],"labels":[..],"distances":[..]}],
 *      "label":7,"confidence":0.92,"match":true,"match_score":0.41}
 *     regions: one per digit found (cbirencode regions=digits), or one for
 *     the whole frame (box null) with --regions none; none when no digit
 *     was found. "stream_time" is the stream time in ns (0 at the file's
 *     first frame even when its timestamps start later, as in an MP4 with
 *     an edit list), "frame" the frame number that time gives at the
 *     stream's frame rate (a frame the decoder dropped leaves a gap, later
 *     ones keep their numbers), "timestamp" the raw buffer timestamp.
 *   FILE.cbir-summary.json   frames, label histogram, frames with no match,
 *     the match-score threshold that decided it (cbirsearch's
 *     current-min-match-score), whether the vote used local scaling and
 *     which vote it was (cbirsearch vote),
 *     time and frames/s (also printed).
 * Both are written to a temporary file and renamed at the end: a file that
 * fails, or a run interrupted (SIGINT/SIGTERM), leaves no sidecar behind.
 * The summary is written with json-glib; the frames' JSON only by
 * cbirpublish (one writer of the result schema).
 * A file that cannot be decoded is reported and the others still run; the
 * exit status is 1 when any failed (130 when interrupted).
 *
 * Results are read from the buffers as any application would, through the
 * public header include/gst/cbir/cbirmeta.h (no link to the plugin).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gst/cbir/cbirmeta.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <glib-unix.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static gchar *opt_model, *opt_gallery, *opt_out_dir, *opt_plugin_path;
static gchar *opt_preprocess;
static gchar *opt_regions;
static gchar *opt_vote;
static gint opt_k = 5;
static gdouble opt_max_distance = -1, opt_min_match_score = -1;
static gboolean opt_quiet, opt_verbose, opt_no_local_scaling;
static gchar **opt_files;

static GOptionEntry entries[] = {
  {"model", 'm', 0, G_OPTION_ARG_FILENAME, &opt_model,
      "Model file (safetensors)", "FILE"},
  {"gallery", 'g', 0, G_OPTION_ARG_FILENAME, &opt_gallery,
      "Gallery file (safetensors, made with the same model)", "FILE"},
  {"preprocess", 'p', 0, G_OPTION_ARG_STRING, &opt_preprocess,
      "cbirencode preprocessing: mnist (digits on paper; default) or scale",
      "MODE"},
  {"regions", 'r', 0, G_OPTION_ARG_STRING, &opt_regions,
      "cbirencode regions: digits (every digit in a frame; default) or none "
      "(the whole frame is one query)", "digits|none"},
  {"k", 'k', 0, G_OPTION_ARG_INT, &opt_k, "Nearest items per frame (5)",
      "K"},
  {"max-distance", 0, 0, G_OPTION_ARG_DOUBLE, &opt_max_distance,
      "Hits farther than this are dropped (cbirsearch max-distance)", "D"},
  {"min-match-score", 0, 0, G_OPTION_ARG_DOUBLE, &opt_min_match_score,
      "Below this match score a digit is \"no match\" (cbirsearch "
      "min-match-score; 0 = off; default: the element's)", "S"},
  {"no-local-scaling", 0, 0, G_OPTION_ARG_NONE, &opt_no_local_scaling,
      "The vote's candidates ranked by plain distance (cbirsearch "
      "local-scaling=false; default: after local scaling)", NULL},
  {"vote", 0, 0, G_OPTION_ARG_STRING, &opt_vote,
      "How the candidates name the label (cbirsearch vote): local-mean "
      "(default: the label whose k nearest are nearest on average) or "
      "weighted (the k nearest, by 1/distance)", "local-mean|weighted"},
  {"out-dir", 'o', 0, G_OPTION_ARG_FILENAME, &opt_out_dir,
      "Write the sidecars here (default: next to each file)", "DIR"},
  {"plugin-path", 0, 0, G_OPTION_ARG_FILENAME, &opt_plugin_path,
      "Directory holding libgstcbir.so (default: GStreamer's path, then "
      "the build directory)", "DIR"},
  {"quiet", 'q', 0, G_OPTION_ARG_NONE, &opt_quiet,
      "No progress line", NULL},
  {"verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose,
      "Also print pipeline warnings", NULL},
  {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_files, NULL,
      "FILE..."},
  {NULL}
};

#define MAX_LABELS 4096
#define MAX_LISTED_NO_MATCH 1000

typedef struct
{
  const gchar *path;
  gchar *sidecar, *summary;

  GMainLoop *loop;
  GstElement *pipeline, *convert;
  GstElement *search;           /* (owned by the pipeline) */
  gfloat min_match_score;       /* the threshold in use, -1: not known */
  gboolean local_scaling;       /* how the label was voted */
  gchar *vote;                  /* cbirsearch vote's nick */
  gboolean have_video;
  gchar *error;                 /* the first error, or NULL */

  /* counted in the streaming thread, read for progress */
  volatile gint frames;
  guint frames_matched, frames_no_match, regions;
  guint histogram[MAX_LABELS];
  guint other_labels;
  GArray *no_match_frames;
  GHashTable *label_names;      /* label -> name (when the gallery has) */

  gint64 t_start, t_end;
  gboolean progress_shown;
} Job;

static volatile gboolean interrupted;
static Job *current_job;

/* a region's (or the whole frame's) result: its label and confidence */
static void
region_result (const GstStructure * r, gint * label, gdouble * confidence,
    const gchar ** name)
{
  *label = -1;
  *confidence = 0;
  *name = NULL;
  if (r) {
    gst_structure_get_int (r, "label", label);
    gst_structure_get_double (r, "confidence", confidence);
    *name = gst_structure_get_string (r, "label-name");
  }
}

static void
count_label (Job * job, gint label, const gchar * name)
{
  if (label >= 0 && label < MAX_LABELS)
    job->histogram[label]++;
  else if (label >= 0)
    job->other_labels++;
  if (name && label >= 0 && !g_hash_table_contains (job->label_names,
          GINT_TO_POINTER (label)))
    g_hash_table_insert (job->label_names, GINT_TO_POINTER (label),
        g_strdup (name));
}

/* ---- the per-frame probe (streaming thread) ---- */

/* The buffer's stream time (GST_CLOCK_TIME_NONE when unknown) and its
 * frame number from that time at the caps' frame rate, or `decoded` (the
 * count of frames seen) when the rate is unknown or variable. */
static void
frame_position (GstPad * pad, GstClockTime pts, guint64 decoded,
    GstClockTime * stream_time, guint64 * frame)
{
  GstEvent *ev = gst_pad_get_sticky_event (pad, GST_EVENT_SEGMENT, 0);
  GstCaps *caps = gst_pad_get_current_caps (pad);
  gint fps_n = 0, fps_d = 1;

  *stream_time = GST_CLOCK_TIME_NONE;
  if (ev && GST_CLOCK_TIME_IS_VALID (pts)) {
    const GstSegment *seg;

    gst_event_parse_segment (ev, &seg);
    if (seg->format == GST_FORMAT_TIME)
      *stream_time = gst_segment_to_stream_time (seg, GST_FORMAT_TIME, pts);
  }
  if (caps) {
    const GstStructure *st = gst_caps_get_structure (caps, 0);

    if (!gst_structure_get_fraction (st, "framerate", &fps_n, &fps_d))
      fps_n = 0;
  }
  if (GST_CLOCK_TIME_IS_VALID (*stream_time) && fps_n > 0 && fps_d > 0)
    *frame = gst_util_uint64_scale_round (*stream_time, fps_n,
        (guint64) fps_d * GST_SECOND);
  else
    *frame = decoded;
  gst_clear_event (&ev);
  gst_clear_caps (&caps);
}

/* Counts each frame for the summary (cbirpublish writes its line). */
static GstPadProbeReturn
frame_probe (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  Job *job = user_data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  GstClockTime stream_time;
  gpointer state = NULL;
  GstMeta *meta;
  guint64 frame;
  guint n_regions = 0;
  gint best_label = -1;
  gdouble best_conf = -1;

  frame_position (pad, GST_BUFFER_PTS (buf),
      (guint) g_atomic_int_get (&job->frames), &stream_time, &frame);
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) meta;
    GstStructure *r = gst_video_region_of_interest_meta_get_param (roi,
        GST_CBIR_RESULT_STRUCTURE_NAME);
    gint label;
    gdouble conf;
    const gchar *name;

    if (!r)
      continue;
    n_regions++;
    region_result (r, &label, &conf, &name);
    count_label (job, label, name);
    if (label >= 0 && conf > best_conf) {
      best_conf = conf;
      best_label = label;
    }
  }
  if (n_regions == 0) {
    const GstStructure *r = gst_buffer_get_cbir_result_structure (buf);
    if (r) {
      gint label;
      gdouble conf;
      const gchar *name;

      n_regions = 1;
      region_result (r, &label, &conf, &name);
      count_label (job, label, name);
      best_label = label;
    }
  }
  job->regions += n_regions;
  if (best_label >= 0) {
    job->frames_matched++;
  } else {
    job->frames_no_match++;
    if (job->no_match_frames->len < MAX_LISTED_NO_MATCH)
      g_array_append_val (job->no_match_frames, frame);
  }
  g_atomic_int_inc (&job->frames);
  return GST_PAD_PROBE_OK;
}

/* ---- pipeline ---- */

/* All streams are known: without a video one the video branch would wait
 * for data forever (the pipeline never prerolls, no EOS comes), so that
 * is an error now. Posted on the bus, where the main thread reads it. */
static void
no_more_pads (GstElement * dec, gpointer user_data)
{
  Job *job = user_data;

  if (!job->have_video) {
    GError *err = g_error_new_literal (GST_STREAM_ERROR,
        GST_STREAM_ERROR_WRONG_TYPE, "no video stream");
    gst_element_post_message (dec, gst_message_new_error (GST_OBJECT (dec),
            err, "only audio or other non-video streams"));
    g_error_free (err);
  }
}

static void
pad_added (GstElement * dec, GstPad * pad, gpointer user_data)
{
  Job *job = user_data;
  GstCaps *caps = gst_pad_get_current_caps (pad);
  const GstStructure *st;
  gboolean video;

  if (!caps)
    caps = gst_pad_query_caps (pad, NULL);
  st = gst_caps_get_structure (caps, 0);
  video = g_str_has_prefix (gst_structure_get_name (st), "video/");
  gst_caps_unref (caps);

  if (video && !job->have_video) {
    GstPad *sink = gst_element_get_static_pad (job->convert, "sink");
    if (gst_pad_link (pad, sink) == GST_PAD_LINK_OK)
      job->have_video = TRUE;
    gst_object_unref (sink);
  } else {
    /* audio, subtitles, a second video stream: drained */
    GstElement *fs = gst_element_factory_make ("fakesink", NULL);
    GstPad *sink;

    g_object_set (fs, "sync", FALSE, "async", FALSE, NULL);
    gst_bin_add (GST_BIN (job->pipeline), fs);
    gst_element_sync_state_with_parent (fs);
    sink = gst_element_get_static_pad (fs, "sink");
    gst_pad_link (pad, sink);
    gst_object_unref (sink);
  }
}

static void
set_error (Job * job, const gchar * msg)
{
  if (!job->error)
    job->error = g_strdup (msg);
}

static gboolean
bus_cb (GstBus * bus, GstMessage * msg, gpointer user_data)
{
  Job *job = user_data;

  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ERROR:{
      g_autoptr (GError) err = NULL;
      g_autofree gchar *dbg = NULL;

      gst_message_parse_error (msg, &err, &dbg);
      set_error (job, err->message);
      if (opt_verbose && dbg)
        g_printerr ("  (%s: %s)\n", GST_OBJECT_NAME (msg->src), dbg);
      g_main_loop_quit (job->loop);
      break;
    }
    case GST_MESSAGE_WARNING:
      if (opt_verbose) {
        g_autoptr (GError) err = NULL;
        gst_message_parse_warning (msg, &err, NULL);
        g_printerr ("%s: warning: %s\n", job->path, err->message);
      }
      break;
    case GST_MESSAGE_EOS:
      g_main_loop_quit (job->loop);
      break;
    default:
      break;
  }
  return TRUE;
}

static gboolean
progress_cb (gpointer user_data)
{
  Job *job = user_data;
  gint64 pos = -1, dur = -1;
  gint frames = g_atomic_int_get (&job->frames);
  gdouble secs = (g_get_monotonic_time () - job->t_start) / 1e6;

  gst_element_query_position (job->pipeline, GST_FORMAT_TIME, &pos);
  gst_element_query_duration (job->pipeline, GST_FORMAT_TIME, &dur);
  if (dur > 0 && pos >= 0)
    g_printerr ("\r%s: frame %d (%.0f%%), %.1f frames/s   ", job->path,
        frames, 100.0 * pos / dur, frames / MAX (secs, 1e-3));
  else
    g_printerr ("\r%s: frame %d, %.1f frames/s   ", job->path, frames,
        frames / MAX (secs, 1e-3));
  job->progress_shown = TRUE;
  return G_SOURCE_CONTINUE;
}

static gboolean
signal_cb (gpointer user_data)
{
  interrupted = TRUE;
  if (current_job)
    g_main_loop_quit (current_job->loop);
  return G_SOURCE_CONTINUE;
}

static GstElement *
make (const gchar * factory, Job * job)
{
  GstElement *e = gst_element_factory_make (factory, NULL);

  if (!e) {
    g_autofree gchar *m = g_strdup_printf ("element %s is missing", factory);
    set_error (job, m);
  }
  return e;
}

static gboolean
build_pipeline (Job * job)
{
  GstElement *dec, *caps, *enc, *search, *sink;
  GstCaps *gray;
  GstPad *pad;
  g_autofree gchar *uri = NULL;
  g_autoptr (GError) err = NULL;

  uri = gst_filename_to_uri (job->path, &err);
  if (!uri) {
    set_error (job, err->message);
    return FALSE;
  }
  job->pipeline = gst_pipeline_new (NULL);
  dec = make ("uridecodebin", job);
  job->convert = make ("videoconvert", job);
  caps = make ("capsfilter", job);
  enc = make ("cbirencode", job);
  search = make ("cbirsearch", job);
  sink = make ("cbirpublish", job);
  if (!dec || !job->convert || !caps || !enc || !search || !sink) {
    GstElement *all[] = { dec, job->convert, caps, enc, search, sink };
    for (guint i = 0; i < G_N_ELEMENTS (all); i++)
      if (all[i])
        gst_object_unref (all[i]);
    job->convert = NULL;
    return FALSE;
  }
  g_object_set (dec, "uri", uri, NULL);
  gray = gst_caps_new_simple ("video/x-raw", "format", G_TYPE_STRING,
      "GRAY8", NULL);
  g_object_set (caps, "caps", gray, NULL);
  gst_caps_unref (gray);
  gst_util_set_object_arg (G_OBJECT (enc), "preprocess",
      opt_preprocess ? opt_preprocess : "mnist");
  gst_util_set_object_arg (G_OBJECT (enc), "regions",
      opt_regions ? opt_regions : "digits");
  g_object_set (enc, "model", opt_model, NULL);
  g_object_set (search, "gallery", opt_gallery, "k", (guint) opt_k,
      "post-messages", FALSE, "local-scaling", !opt_no_local_scaling, NULL);
  if (opt_vote)
    gst_util_set_object_arg (G_OBJECT (search), "vote", opt_vote);
  job->search = search;
  if (opt_max_distance >= 0)
    g_object_set (search, "max-distance", (gfloat) opt_max_distance, NULL);
  if (opt_min_match_score >= 0)
    g_object_set (search, "min-match-score", (gfloat) opt_min_match_score,
        NULL);
  /* the sidecar: every frame, renamed into place at the end of the
   * stream only (a failed or interrupted file leaves none) */
  g_object_set (sink, "location", job->sidecar, "atomic", TRUE,
      "empty-frames", TRUE, NULL);

  gst_bin_add_many (GST_BIN (job->pipeline), dec, job->convert, caps, enc,
      search, sink, NULL);
  if (!gst_element_link_many (job->convert, caps, enc, search, sink, NULL)) {
    set_error (job, "cannot link videoconvert ! GRAY8 ! cbirencode ! "
        "cbirsearch ! cbirpublish");
    return FALSE;
  }
  g_signal_connect (dec, "pad-added", G_CALLBACK (pad_added), job);
  g_signal_connect (dec, "no-more-pads", G_CALLBACK (no_more_pads), job);

  pad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, frame_probe, job, NULL);
  gst_object_unref (pad);
  return TRUE;
}

/* ---- output files ---- */

static gchar *
out_path (const gchar * file, const gchar * suffix)
{
  g_autofree gchar *base = g_path_get_basename (file);
  g_autofree gchar *name = g_strconcat (base, suffix, NULL);

  if (opt_out_dir)
    return g_build_filename (opt_out_dir, name, NULL);
  else {
    g_autofree gchar *dir = g_path_get_dirname (file);
    return g_build_filename (dir, name, NULL);
  }
}

static gchar *
summary_json (Job * job, gdouble secs)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  guint i, best = 0, best_n = 0;
  gint frames = g_atomic_int_get (&job->frames);
  gchar key[16];

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "file");
  json_builder_add_string_value (b, job->path);
  json_builder_set_member_name (b, "sidecar");
  json_builder_add_string_value (b, job->sidecar);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, opt_model);
  json_builder_set_member_name (b, "gallery");
  json_builder_add_string_value (b, opt_gallery);
  json_builder_set_member_name (b, "preprocess");
  json_builder_add_string_value (b, opt_preprocess ? opt_preprocess :
      "mnist");
  json_builder_set_member_name (b, "k");
  json_builder_add_int_value (b, opt_k);
  json_builder_set_member_name (b, "min_match_score");
  json_builder_add_double_value (b, job->min_match_score);
  json_builder_set_member_name (b, "local_scaling");
  json_builder_add_boolean_value (b, job->local_scaling);
  json_builder_set_member_name (b, "vote");
  json_builder_add_string_value (b, job->vote);
  json_builder_set_member_name (b, "frames");
  json_builder_add_int_value (b, frames);
  json_builder_set_member_name (b, "frames_matched");
  json_builder_add_int_value (b, job->frames_matched);
  json_builder_set_member_name (b, "frames_no_match");
  json_builder_add_int_value (b, job->frames_no_match);
  json_builder_set_member_name (b, "regions");
  json_builder_add_int_value (b, job->regions);
  json_builder_set_member_name (b, "label_histogram");
  json_builder_begin_object (b);
  for (i = 0; i < MAX_LABELS; i++) {
    if (!job->histogram[i])
      continue;
    g_snprintf (key, sizeof key, "%u", i);
    json_builder_set_member_name (b, key);
    json_builder_add_int_value (b, job->histogram[i]);
    if (job->histogram[i] > best_n) {
      best_n = job->histogram[i];
      best = i;
    }
  }
  json_builder_end_object (b);
  if (g_hash_table_size (job->label_names) > 0) {
    GHashTableIter it;
    gpointer k, v;

    json_builder_set_member_name (b, "label_names");
    json_builder_begin_object (b);
    g_hash_table_iter_init (&it, job->label_names);
    while (g_hash_table_iter_next (&it, &k, &v)) {
      g_snprintf (key, sizeof key, "%d", GPOINTER_TO_INT (k));
      json_builder_set_member_name (b, key);
      json_builder_add_string_value (b, v);
    }
    json_builder_end_object (b);
  }
  json_builder_set_member_name (b, "most_frequent_label");
  json_builder_add_int_value (b, best_n ? (gint) best : -1);
  json_builder_set_member_name (b, "no_match_frames");
  json_builder_begin_array (b);
  for (i = 0; i < job->no_match_frames->len; i++)
    json_builder_add_int_value (b, (gint64) g_array_index
        (job->no_match_frames, guint64, i));
  json_builder_end_array (b);
  json_builder_set_member_name (b, "no_match_frames_truncated");
  json_builder_add_boolean_value (b,
      job->frames_no_match > job->no_match_frames->len);
  json_builder_set_member_name (b, "seconds");
  json_builder_add_double_value (b, secs);
  json_builder_set_member_name (b, "frames_per_second");
  json_builder_add_double_value (b, secs > 0 ? frames / secs : 0);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  {
    gchar *text = json_generator_to_data (gen, NULL);
    gchar *line = g_strconcat (text, "\n", NULL);
    g_free (text);
    return line;
  }
}

static void
print_summary (Job * job, gdouble secs)
{
  GString *h = g_string_new (NULL);
  gint frames = g_atomic_int_get (&job->frames);
  guint i;

  for (i = 0; i < MAX_LABELS; i++)
    if (job->histogram[i]) {
      const gchar *name = g_hash_table_lookup (job->label_names,
          GINT_TO_POINTER (i));
      if (name)
        g_string_append_printf (h, " %s:%u", name, job->histogram[i]);
      else
        g_string_append_printf (h, " %u:%u", i, job->histogram[i]);
    }
  printf ("%s: %d frames in %.2f s (%.1f frames/s); labels%s; "
      "no match in %u frames\n  -> %s\n", job->path, frames, secs,
      secs > 0 ? frames / secs : 0.0, h->len ? h->str : " none",
      job->frames_no_match, job->sidecar);
  fflush (stdout);
  g_string_free (h, TRUE);
}

/* The nick of object obj's enum property `name`, newly allocated. */
static gchar *
enum_nick (GObject * obj, const gchar * name)
{
  GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS (obj),
      name);
  GValue v = G_VALUE_INIT;
  GEnumClass *klass;
  GEnumValue *ev;
  gchar *nick;

  g_value_init (&v, ps->value_type);
  g_object_get_property (obj, name, &v);
  klass = g_type_class_ref (ps->value_type);
  ev = g_enum_get_value (klass, g_value_get_enum (&v));
  nick = g_strdup (ev ? ev->value_nick : "?");
  g_type_class_unref (klass);
  g_value_unset (&v);
  return nick;
}

/* Tags one file. TRUE on success. */
static gboolean
tag_file (const gchar * path, gint * total_frames, gdouble * total_secs)
{
  Job job = { 0 };
  gboolean ok = FALSE, show_progress;
  guint bus_watch = 0, progress = 0;
  GstBus *bus;
  gdouble secs = 0;

  job.path = path;
  job.min_match_score = -1;
  job.sidecar = out_path (path, ".cbir.jsonl");
  job.summary = out_path (path, ".cbir-summary.json");
  job.no_match_frames = g_array_new (FALSE, FALSE, sizeof (guint64));
  job.label_names = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  job.loop = g_main_loop_new (NULL, FALSE);
  show_progress = !opt_quiet && isatty (fileno (stderr));

  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    set_error (&job, g_file_test (path, G_FILE_TEST_EXISTS) ?
        "not a regular file" : "no such file");
    goto done;
  }
  if (!build_pipeline (&job))
    goto done;

  bus = gst_element_get_bus (job.pipeline);
  bus_watch = gst_bus_add_watch (bus, bus_cb, &job);
  gst_object_unref (bus);
  current_job = &job;
  job.t_start = g_get_monotonic_time ();
  if (show_progress)
    progress = g_timeout_add (500, progress_cb, &job);

  if (gst_element_set_state (job.pipeline, GST_STATE_PLAYING) ==
      GST_STATE_CHANGE_FAILURE) {
    /* the element that failed said why on the bus (a missing model, a
     * gallery of another model...): that is the error, not "would not
     * start"; no main loop, which could wait for an error never posted */
    GstBus *b = gst_element_get_bus (job.pipeline);
    GstMessage *m = gst_bus_pop_filtered (b, GST_MESSAGE_ERROR);
    if (m) {
      bus_cb (b, m, &job);
      gst_message_unref (m);
    }
    gst_object_unref (b);
    set_error (&job, "the pipeline would not start");
  } else {
    /* errors after the state change are on the bus: the loop stops at the
     * first error or at EOS */
    g_main_loop_run (job.loop);
  }
  job.t_end = g_get_monotonic_time ();
  current_job = NULL;
  /* the threshold that decided "no match" (min-match-score -1: the one
   * cbirsearch chose for this gallery when it started) */
  g_object_get (job.search, "current-min-match-score", &job.min_match_score,
      "local-scaling", &job.local_scaling, NULL);
  job.vote = enum_nick (G_OBJECT (job.search), "vote");
  if (progress)
    g_source_remove (progress);
  if (job.progress_shown)
    g_printerr ("\r%*s\r", 78, "");
  gst_element_set_state (job.pipeline, GST_STATE_NULL);
  secs = (job.t_end - job.t_start) / 1e6;

  if (interrupted) {
    set_error (&job, "interrupted");
    goto done;
  }
  if (job.error)
    goto done;
  if (!job.have_video) {
    set_error (&job, "no video stream");
    goto done;
  }
  {
    g_autofree gchar *js = summary_json (&job, secs);
    g_autoptr (GError) err = NULL;
    if (!g_file_set_contents (job.summary, js, -1, &err)) {
      set_error (&job, err->message);
      g_unlink (job.sidecar);
      goto done;
    }
  }
  print_summary (&job, secs);
  *total_frames += g_atomic_int_get (&job.frames);
  *total_secs += secs;
  ok = TRUE;

done:
  if (!ok) {
    g_printerr ("%s: FAILED: %s\n", path, job.error ? job.error : "?");
  }
  if (bus_watch)
    g_source_remove (bus_watch);
  if (job.pipeline)
    gst_object_unref (job.pipeline);
  g_main_loop_unref (job.loop);
  g_free (job.error);
  g_free (job.vote);
  g_free (job.sidecar);
  g_free (job.summary);
  g_array_unref (job.no_match_frames);
  g_hash_table_unref (job.label_names);
  return ok;
}

static gboolean
have_plugin (void)
{
  GstElementFactory *f = gst_element_factory_find ("cbirencode");

  if (f)
    gst_object_unref (f);
  return f != NULL;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GOptionContext) ctx = NULL;
  guint n_failed = 0, n_files, i;
  gint total_frames = 0;
  gdouble total_secs = 0;

  ctx = g_option_context_new ("FILE... - tag the frames of video files "
      "with their nearest gallery digits");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  g_option_context_set_description (ctx,
      "Writes FILE.cbir.jsonl (one line a frame) and FILE.cbir-summary.json "
      "for each FILE.\nExit status: 0 when every file was tagged, 1 when "
      "any failed, 2 on bad usage, 130 when interrupted.\n");
  if (!g_option_context_parse (ctx, &argc, &argv, &err)) {
    g_printerr ("cbir-tag: %s (see --help)\n", err->message);
    return 2;
  }
  if (!opt_model || !opt_gallery) {
    g_printerr ("cbir-tag: --model and --gallery are required (see --help)\n");
    return 2;
  }
  if (!opt_files || !opt_files[0]) {
    g_printerr ("cbir-tag: no video file given (see --help)\n");
    return 2;
  }
  if (opt_min_match_score > 1) {
    g_printerr ("cbir-tag: --min-match-score must be in 0..1\n");
    return 2;
  }
  if (opt_k < 1 || opt_k > 1000) {
    g_printerr ("cbir-tag: --k must be in 1..1000\n");
    return 2;
  }
  if (opt_regions && strcmp (opt_regions, "digits") != 0 &&
      strcmp (opt_regions, "none") != 0) {
    g_printerr ("cbir-tag: --regions must be digits or none, not '%s'\n",
        opt_regions);
    return 2;
  }
  if (opt_vote && strcmp (opt_vote, "local-mean") != 0 &&
      strcmp (opt_vote, "weighted") != 0) {
    g_printerr ("cbir-tag: --vote must be local-mean or weighted, not "
        "'%s'\n", opt_vote);
    return 2;
  }
  if (opt_preprocess && strcmp (opt_preprocess, "mnist") != 0 &&
      strcmp (opt_preprocess, "scale") != 0) {
    g_printerr ("cbir-tag: --preprocess must be mnist or scale, not '%s'\n",
        opt_preprocess);
    return 2;
  }
  if (opt_out_dir && opt_files) {
    /* two inputs of one name (from two folders) would write one sidecar */
    g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash,
        g_str_equal, g_free, NULL);
    for (i = 0; opt_files[i]; i++) {
      gchar *base = g_path_get_basename (opt_files[i]);
      const gchar *first = g_hash_table_lookup (seen, base);
      if (first) {
        g_autofree gchar *side = out_path (opt_files[i], ".cbir.jsonl");
        g_printerr ("cbir-tag: %s and %s would both write %s: tag them in "
            "separate runs (another --out-dir) or without --out-dir\n",
            first, opt_files[i], side);
        g_free (base);
        return 2;
      }
      g_hash_table_insert (seen, base, opt_files[i]);
    }
  }
  if (opt_out_dir && g_mkdir_with_parents (opt_out_dir, 0755) != 0) {
    g_printerr ("cbir-tag: %s: cannot create directory: %s\n", opt_out_dir,
        g_strerror (errno));
    return 2;
  }

  gst_init (NULL, NULL);
  if (opt_plugin_path)
    gst_registry_scan_path (gst_registry_get (), opt_plugin_path);
#ifdef CBIR_TAG_PLUGIN_DIR
  if (!have_plugin ())
    gst_registry_scan_path (gst_registry_get (), CBIR_TAG_PLUGIN_DIR);
#endif
  if (!have_plugin ()) {
    g_printerr ("cbir-tag: the cbir plugin (libgstcbir.so) was not found: "
        "install it, set GST_PLUGIN_PATH to its directory or use "
        "--plugin-path\n");
    return 2;
  }

  g_unix_signal_add (SIGINT, signal_cb, NULL);
  g_unix_signal_add (SIGTERM, signal_cb, NULL);

  n_files = g_strv_length (opt_files);
  for (i = 0; i < n_files && !interrupted; i++)
    if (!tag_file (opt_files[i], &total_frames, &total_secs))
      n_failed++;

  if (interrupted) {
    g_printerr ("cbir-tag: interrupted; no sidecar left half-written\n");
    return 130;
  }
  if (n_files > 1 || n_failed)
    printf ("cbir-tag: %u of %u files tagged, %d frames in %.2f s "
        "(%.1f frames/s)%s\n", n_files - n_failed, n_files, total_frames,
        total_secs, total_secs > 0 ? total_frames / total_secs : 0.0,
        n_failed ? "; failures above" : "");
  return n_failed ? 1 : 0;
}

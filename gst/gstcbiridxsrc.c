/* gst-cbir: cbiridxsrc, plays an IDX image file as GRAY8 video frames.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * SECTION:element-cbiridxsrc
 * @title: cbiridxsrc
 *
 * Plays the images of an IDX file (MNIST, Fashion-MNIST...; raw or gzip)
 * as GRAY8 video frames of the file's size (28x28 for MNIST), with
 * timestamps at #GstCbirIdxSrc:framerate. Each buffer carries a
 * GstCbirSourceMeta with the image's index in the file and its label
 * (from #GstCbirIdxSrc:labels, -1 without labels); the buffer offset is
 * the frame number.
 *
 * The stream is seekable in time and in frames (%GST_FORMAT_DEFAULT),
 * forward (rate > 0): frame f plays image `start + f` (`start + f % n` with
 * #GstCbirIdxSrc:loop, n images played) at `f / framerate`, whatever the
 * seek, and playback ends (EOS, or segment-done after a segment seek) at
 * the seek's stop position. A time that falls inside a frame seeks to that
 * frame; a seek past the last image sends EOS at once. Duration queries
 * answer the played length (-1, unknown, when looping).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 cbiridxsrc images=t10k-images-idx3-ubyte.gz count=100 ! \
 *     videoscale ! video/x-raw,width=280,height=280 ! videoconvert ! autovideosink
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbiridxsrc.h"
#include "gstcbirutils.h"
#include "gstcbirmeta.h"

#include <string.h>
#include <gst/video/video.h>
#include <cbir/idx.h>

GST_DEBUG_CATEGORY_STATIC (gst_cbir_idxsrc_debug);
#define GST_CAT_DEFAULT gst_cbir_idxsrc_debug

#define DEFAULT_IMAGES NULL
#define DEFAULT_LABELS NULL
#define DEFAULT_FPS_N 30
#define DEFAULT_FPS_D 1
#define DEFAULT_START 0
#define DEFAULT_COUNT -1
#define DEFAULT_LOOP FALSE

enum
{
  PROP_0,
  PROP_IMAGES,
  PROP_LABELS,
  PROP_FRAMERATE,
  PROP_START,
  PROP_COUNT,
  PROP_LOOP,
};

struct _GstCbirIdxSrc
{
  GstPushSrc parent;

  /* properties (object lock) */
  gchar *images;
  gchar *labels;
  gint fps_n, fps_d;
  guint start;
  gint count;
  gboolean loop;

  /* streaming state; started, first, n_play, cur_fps_*, cur_loop are set by
   * start() under the object lock (queries read them from any thread) */
  CbirDataset *ds;
  gboolean started;
  guint first, n_play;          /* images [first, first + n_play) */
  guint64 frame;                /* next frame (stream lock) */
  const gchar *cur_images;      /* interned */
  gint cur_fps_n, cur_fps_d;
  gboolean cur_loop;
  GstVideoInfo info;
};

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE ("GRAY8")));

#define gst_cbir_idxsrc_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstCbirIdxSrc, gst_cbir_idxsrc, GST_TYPE_PUSH_SRC,
    GST_DEBUG_CATEGORY_INIT (gst_cbir_idxsrc_debug, "cbiridxsrc", 0,
        "cbir IDX data set source"));
GST_ELEMENT_REGISTER_DEFINE (cbiridxsrc, "cbiridxsrc", GST_RANK_NONE,
    GST_TYPE_CBIR_IDXSRC);

static void gst_cbir_idxsrc_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec);
static void gst_cbir_idxsrc_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec);
static void gst_cbir_idxsrc_finalize (GObject * object);
static gboolean gst_cbir_idxsrc_start (GstBaseSrc * src);
static gboolean gst_cbir_idxsrc_stop (GstBaseSrc * src);
static GstCaps *gst_cbir_idxsrc_get_caps (GstBaseSrc * src, GstCaps * filter);
static gboolean gst_cbir_idxsrc_set_caps (GstBaseSrc * src, GstCaps * caps);
static gboolean gst_cbir_idxsrc_send_event (GstElement * element,
    GstEvent * event);
static gboolean gst_cbir_idxsrc_event (GstBaseSrc * src, GstEvent * event);
static gboolean gst_cbir_idxsrc_is_seekable (GstBaseSrc * src);
static gboolean gst_cbir_idxsrc_prepare_seek_segment (GstBaseSrc * src,
    GstEvent * event, GstSegment * segment);
static gboolean gst_cbir_idxsrc_do_seek (GstBaseSrc * src,
    GstSegment * segment);
static gboolean gst_cbir_idxsrc_query (GstBaseSrc * src, GstQuery * query);
static GstFlowReturn gst_cbir_idxsrc_create (GstPushSrc * src,
    GstBuffer ** buf);

static void
gst_cbir_idxsrc_class_init (GstCbirIdxSrcClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSrcClass *basesrc_class = GST_BASE_SRC_CLASS (klass);
  GstPushSrcClass *pushsrc_class = GST_PUSH_SRC_CLASS (klass);

  gobject_class->set_property = gst_cbir_idxsrc_set_property;
  gobject_class->get_property = gst_cbir_idxsrc_get_property;
  gobject_class->finalize = gst_cbir_idxsrc_finalize;

  g_object_class_install_property (gobject_class, PROP_IMAGES,
      g_param_spec_string ("images", "Images",
          "IDX image file (idx3-ubyte, raw or gzip) to play",
          DEFAULT_IMAGES, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_LABELS,
      g_param_spec_string ("labels", "Labels",
          "IDX label file (idx1-ubyte, raw or gzip) matching the images; "
          "without it every label is -1", DEFAULT_LABELS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_FRAMERATE,
      gst_param_spec_fraction ("framerate", "Frame rate",
          "Frame rate of the output (sets the timestamps and durations)",
          1, 1000, G_MAXINT, 1, DEFAULT_FPS_N, DEFAULT_FPS_D,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_START,
      g_param_spec_uint ("start", "Start",
          "Index of the first image to play", 0, G_MAXUINT, DEFAULT_START,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_COUNT,
      g_param_spec_int ("count", "Count",
          "Number of images to play from start (-1 = to the end of the file)",
          -1, G_MAXINT, DEFAULT_COUNT, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_LOOP,
      g_param_spec_boolean ("loop", "Loop",
          "Start again from the first image instead of sending EOS",
          DEFAULT_LOOP, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));

  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "CBIR IDX data set source", "Source/Video",
      "Plays the images of an IDX file (MNIST, Fashion-MNIST) as GRAY8 "
      "frames carrying their index and label",
      "gst-cbir developers");

  element_class->send_event = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_send_event);

  basesrc_class->start = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_start);
  basesrc_class->stop = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_stop);
  basesrc_class->get_caps = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_get_caps);
  basesrc_class->set_caps = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_set_caps);
  basesrc_class->event = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_event);
  basesrc_class->is_seekable = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_is_seekable);
  basesrc_class->prepare_seek_segment =
      GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_prepare_seek_segment);
  basesrc_class->do_seek = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_do_seek);
  basesrc_class->query = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_query);
  pushsrc_class->create = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_create);
}

static void
gst_cbir_idxsrc_init (GstCbirIdxSrc * self)
{
  self->images = g_strdup (DEFAULT_IMAGES);
  self->labels = g_strdup (DEFAULT_LABELS);
  self->fps_n = DEFAULT_FPS_N;
  self->fps_d = DEFAULT_FPS_D;
  self->start = DEFAULT_START;
  self->count = DEFAULT_COUNT;
  self->loop = DEFAULT_LOOP;

  gst_base_src_set_format (GST_BASE_SRC (self), GST_FORMAT_TIME);
  gst_base_src_set_live (GST_BASE_SRC (self), FALSE);
}

static void
gst_cbir_idxsrc_finalize (GObject * object)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (object);

  g_free (self->images);
  g_free (self->labels);
  g_clear_pointer (&self->ds, cbir_dataset_free);

  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_cbir_idxsrc_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (object);

  GST_OBJECT_LOCK (self);
  /* Everything here is read when the element starts. */
  if (gst_cbir_refuse_if_running_unlocked (GST_ELEMENT (self), pspec))
    return;
  switch (prop_id) {
    case PROP_IMAGES:
      g_free (self->images);
      self->images = g_value_dup_string (value);
      break;
    case PROP_LABELS:
      g_free (self->labels);
      self->labels = g_value_dup_string (value);
      break;
    case PROP_FRAMERATE:
      self->fps_n = gst_value_get_fraction_numerator (value);
      self->fps_d = gst_value_get_fraction_denominator (value);
      break;
    case PROP_START:
      self->start = g_value_get_uint (value);
      break;
    case PROP_COUNT:
      self->count = g_value_get_int (value);
      break;
    case PROP_LOOP:
      self->loop = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_cbir_idxsrc_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_IMAGES:
      g_value_set_string (value, self->images);
      break;
    case PROP_LABELS:
      g_value_set_string (value, self->labels);
      break;
    case PROP_FRAMERATE:
      gst_value_set_fraction (value, self->fps_n, self->fps_d);
      break;
    case PROP_START:
      g_value_set_uint (value, self->start);
      break;
    case PROP_COUNT:
      g_value_set_int (value, self->count);
      break;
    case PROP_LOOP:
      g_value_set_boolean (value, self->loop);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_cbir_idxsrc_start (GstBaseSrc * src)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);
  g_autofree gchar *images = NULL;
  g_autofree gchar *labels = NULL;
  g_autoptr (GError) err = NULL;
  guint start, n_play;
  gint count;

  GST_OBJECT_LOCK (self);
  images = g_strdup (self->images);
  labels = g_strdup (self->labels && *self->labels ? self->labels : NULL);
  start = self->start;
  count = self->count;
  self->cur_fps_n = self->fps_n;
  self->cur_fps_d = self->fps_d;
  self->cur_loop = self->loop;
  GST_OBJECT_UNLOCK (self);

  if (images == NULL || *images == '\0')
    goto no_images;

  g_clear_pointer (&self->ds, cbir_dataset_free);
  self->ds = cbir_dataset_load (images, labels, &err);
  if (self->ds == NULL)
    goto load_failed;
  if (self->ds->n == 0 || start >= self->ds->n)
    goto bad_start;

  n_play = self->ds->n - start;
  if (count >= 0 && (guint) count < n_play)
    n_play = count;
  self->frame = 0;
  self->cur_images = g_intern_string (images);
  gst_video_info_init (&self->info);
  GST_OBJECT_LOCK (self);
  self->first = start;
  self->n_play = n_play;
  self->started = TRUE;
  GST_OBJECT_UNLOCK (self);
  GST_INFO_OBJECT (self, "%s: %u images of %ux%u, playing %u from %u",
      images, self->ds->n, self->ds->cols, self->ds->rows, n_play, start);
  return TRUE;

  /* ERRORS */
no_images:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No IDX image file specified (property \"images\")."), (NULL));
    return FALSE;
  }
load_failed:
  {
    if (g_file_test (images, G_FILE_TEST_EXISTS) &&
        (labels == NULL || g_file_test (labels, G_FILE_TEST_EXISTS)))
      GST_ELEMENT_ERROR (self, RESOURCE, READ,
          ("Could not read IDX data set \"%s\": %s", images, err->message),
          ("%s", err->message));
    else
      GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
          ("Could not open IDX data set \"%s\": %s", images, err->message),
          ("%s", err->message));
    return FALSE;
  }
bad_start:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("start=%u is past the end of \"%s\" (%u images).", start, images,
            self->ds->n), (NULL));
    g_clear_pointer (&self->ds, cbir_dataset_free);
    return FALSE;
  }
}

static gboolean
gst_cbir_idxsrc_stop (GstBaseSrc * src)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);

  GST_OBJECT_LOCK (self);
  self->started = FALSE;
  GST_OBJECT_UNLOCK (self);
  g_clear_pointer (&self->ds, cbir_dataset_free);
  return TRUE;
}

static GstCaps *
gst_cbir_idxsrc_get_caps (GstBaseSrc * src, GstCaps * filter)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);
  GstCaps *caps;

  if (self->ds) {
    caps = gst_caps_new_simple ("video/x-raw",
        "format", G_TYPE_STRING, "GRAY8",
        "width", G_TYPE_INT, (gint) self->ds->cols,
        "height", G_TYPE_INT, (gint) self->ds->rows,
        "framerate", GST_TYPE_FRACTION, self->cur_fps_n, self->cur_fps_d,
        "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, NULL);
  } else {
    caps = gst_pad_get_pad_template_caps (GST_BASE_SRC_PAD (src));
  }
  if (filter) {
    GstCaps *tmp = gst_caps_intersect_full (filter, caps,
        GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (caps);
    caps = tmp;
  }
  return caps;
}

static gboolean
gst_cbir_idxsrc_set_caps (GstBaseSrc * src, GstCaps * caps)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);

  if (!gst_video_info_from_caps (&self->info, caps))
    return FALSE;
  return TRUE;
}

/* Frame f starts at f / framerate (the PTS create() stamps). */
static GstClockTime
frame_to_time (guint64 frame, gint fps_n, gint fps_d)
{
  return gst_util_uint64_scale (frame, GST_SECOND * (guint64) fps_d, fps_n);
}

/* The frame whose [PTS, next PTS) holds t: the exact inverse of
 * frame_to_time (which rounds down: a plain t * rate can land one frame
 * short, e.g. frame 1 at 30/1 starts at 33333333 ns). */
static guint64
time_to_frame (GstClockTime t, gint fps_n, gint fps_d)
{
  guint64 frame = gst_util_uint64_scale (t, fps_n, GST_SECOND *
      (guint64) fps_d);

  if (frame < G_MAXUINT64 && frame_to_time (frame + 1, fps_n, fps_d) <= t)
    frame++;
  return frame;
}

/* The frame rate and the number of frames (-1: unknown, when looping) of
 * the stream; before start() from the properties, without a length.
 * Object lock held. */
static void
gst_cbir_idxsrc_get_timing_unlocked (GstCbirIdxSrc * self, gint * fps_n,
    gint * fps_d, gint64 * n_frames)
{
  if (self->started) {
    *fps_n = self->cur_fps_n;
    *fps_d = self->cur_fps_d;
    *n_frames = self->cur_loop && self->n_play > 0 ? -1 :
        (gint64) self->n_play;
  } else {
    *fps_n = self->fps_n;
    *fps_d = self->fps_d;
    *n_frames = -1;
  }
}

/* The same, taking the object lock. */
static void
gst_cbir_idxsrc_get_timing (GstCbirIdxSrc * self, gint * fps_n, gint * fps_d,
    gint64 * n_frames)
{
  GST_OBJECT_LOCK (self);
  gst_cbir_idxsrc_get_timing_unlocked (self, fps_n, fps_d, n_frames);
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_cbir_idxsrc_convert (GstCbirIdxSrc * self, GstFormat src_format,
    gint64 src_value, GstFormat dest_format, gint64 * dest_value)
{
  gint fps_n, fps_d;
  gint64 n_frames;

  if (src_format == dest_format) {
    *dest_value = src_value;
    return TRUE;
  }
  if ((src_format != GST_FORMAT_TIME && src_format != GST_FORMAT_DEFAULT) ||
      (dest_format != GST_FORMAT_TIME && dest_format != GST_FORMAT_DEFAULT))
    return FALSE;

  gst_cbir_idxsrc_get_timing (self, &fps_n, &fps_d, &n_frames);

  if (fps_n <= 0 || fps_d <= 0)
    return FALSE;               /* no time mapping */
  if (src_value == -1) {
    *dest_value = -1;
    return TRUE;
  }
  if (src_value < 0)
    return FALSE;
  if (src_format == GST_FORMAT_DEFAULT) {
    GstClockTime t = frame_to_time (src_value, fps_n, fps_d);

    *dest_value = MIN (t, G_MAXINT64);
  } else {
    *dest_value = time_to_frame (src_value, fps_n, fps_d);
  }
  return TRUE;
}

/* Turns down, before basesrc flushes anything, the seeks that cannot be
 * done: reverse playback, formats other than time and frames, no frame
 * rate, frames from the end of an endless (looping) stream. */
static gboolean
gst_cbir_idxsrc_check_seek (GstCbirIdxSrc * self, GstEvent * event)
{
  GstSeekType start_type, stop_type;
  GstFormat format;
  gdouble rate;
  gint fps_n, fps_d;
  gint64 n_frames;
  gboolean started;

  gst_event_parse_seek (event, &rate, &format, NULL, &start_type, NULL,
      &stop_type, NULL);
  GST_OBJECT_LOCK (self);
  gst_cbir_idxsrc_get_timing_unlocked (self, &fps_n, &fps_d, &n_frames);
  started = self->started;
  GST_OBJECT_UNLOCK (self);

  if (rate <= 0.0) {
    GST_WARNING_OBJECT (self, "refusing seek: reverse playback (rate %g) is "
        "not supported", rate);
    return FALSE;
  }
  if (format != GST_FORMAT_TIME && format != GST_FORMAT_DEFAULT) {
    GST_WARNING_OBJECT (self, "refusing seek in %s format (only time and "
        "frames)", gst_format_get_name (format));
    return FALSE;
  }
  if (fps_n <= 0 || fps_d <= 0) {
    GST_WARNING_OBJECT (self, "refusing seek: framerate %d/%d has no time "
        "mapping", fps_n, fps_d);
    return FALSE;
  }
  if (format == GST_FORMAT_DEFAULT && n_frames < 0 && started &&
      (start_type == GST_SEEK_TYPE_END || stop_type == GST_SEEK_TYPE_END)) {
    GST_WARNING_OBJECT (self, "refusing seek from the end of a looping "
        "stream");
    return FALSE;
  }
  return TRUE;
}

/* seeks sent to the element (pending ones too) */
static gboolean
gst_cbir_idxsrc_send_event (GstElement * element, GstEvent * event)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (element);

  if (GST_EVENT_TYPE (event) == GST_EVENT_SEEK &&
      !gst_cbir_idxsrc_check_seek (self, event)) {
    gst_event_unref (event);
    return FALSE;
  }
  return GST_ELEMENT_CLASS (parent_class)->send_event (element, event);
}

/* seeks from downstream */
static gboolean
gst_cbir_idxsrc_event (GstBaseSrc * src, GstEvent * event)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);

  if (GST_EVENT_TYPE (event) == GST_EVENT_SEEK &&
      !gst_cbir_idxsrc_check_seek (self, event))
    return FALSE;
  return GST_BASE_SRC_CLASS (parent_class)->event (src, event);
}

static gboolean
gst_cbir_idxsrc_is_seekable (GstBaseSrc * src)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);
  gint fps_n, fps_d;
  gint64 n_frames;

  gst_cbir_idxsrc_get_timing (self, &fps_n, &fps_d, &n_frames);
  return fps_n > 0 && fps_d > 0;
}

/* A seek position in frames (SET or END, -1 = none with SET) as a SET
 * position in time. */
static gboolean
seek_frames_to_time (GstSeekType * type, gint64 * value, gint64 n_frames,
    gint fps_n, gint fps_d)
{
  gint64 frame = *value;
  GstClockTime t;

  switch (*type) {
    case GST_SEEK_TYPE_NONE:
      return TRUE;
    case GST_SEEK_TYPE_SET:
      if (frame == -1)
        return TRUE;
      break;
    case GST_SEEK_TYPE_END:
      if (n_frames < 0)
        return FALSE;
      frame = CLAMP (n_frames + frame, 0, n_frames);
      *type = GST_SEEK_TYPE_SET;
      break;
    default:
      return FALSE;
  }
  if (frame < 0)
    return FALSE;
  t = frame_to_time (frame, fps_n, fps_d);
  *value = MIN (t, G_MAXINT64);
  return TRUE;
}

/* Seeks in frames: the frame positions (from the end too) mapped on the
 * frames' exact times, so that the first buffer is the frame asked for
 * and the stop falls on a frame boundary. Other formats: basesrc's
 * conversion (which fails). */
static gboolean
gst_cbir_idxsrc_prepare_seek_segment (GstBaseSrc * src, GstEvent * event,
    GstSegment * segment)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);
  GstSeekType start_type, stop_type;
  GstSeekFlags flags;
  GstFormat format;
  gdouble rate;
  gint64 start, stop, n_frames, new_start, new_stop;
  gint fps_n, fps_d;

  gst_event_parse_seek (event, &rate, &format, &flags, &start_type, &start,
      &stop_type, &stop);
  if (format != GST_FORMAT_DEFAULT || segment->format != GST_FORMAT_TIME)
    return GST_BASE_SRC_CLASS (parent_class)->prepare_seek_segment (src,
        event, segment);

  gst_cbir_idxsrc_get_timing (self, &fps_n, &fps_d, &n_frames);
  if (rate <= 0.0 || fps_n <= 0 || fps_d <= 0 ||
      !seek_frames_to_time (&start_type, &start, n_frames, fps_n, fps_d) ||
      !seek_frames_to_time (&stop_type, &stop, n_frames, fps_n, fps_d)) {
    GST_WARNING_OBJECT (self, "cannot seek to frames %" G_GINT64_FORMAT
        " - %" G_GINT64_FORMAT, start, stop);
    return FALSE;
  }
  if (n_frames >= 0)
    segment->duration = frame_to_time (n_frames, fps_n, fps_d);
  /* (gst_segment_do_seek() asserts this) */
  new_start = start_type == GST_SEEK_TYPE_NONE ? (gint64) segment->start :
      start;
  new_stop = stop_type == GST_SEEK_TYPE_NONE ? (gint64) segment->stop : stop;
  if (new_stop != -1 && new_start > new_stop) {
    GST_WARNING_OBJECT (self, "refusing seek: start after stop");
    return FALSE;
  }
  return gst_segment_do_seek (segment, rate, GST_FORMAT_TIME, flags,
      start_type, start, stop_type, stop, NULL);
}

/* With the stream lock: create() is not running. Also the first
 * "seek" to the start of the stream, after start(). */
static gboolean
gst_cbir_idxsrc_do_seek (GstBaseSrc * src, GstSegment * segment)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);
  gint fps_n, fps_d;
  gint64 n_frames;

  gst_cbir_idxsrc_get_timing (self, &fps_n, &fps_d, &n_frames);

  if (segment->format != GST_FORMAT_TIME || segment->rate <= 0.0)
    return FALSE;
  if (fps_n <= 0 || fps_d <= 0) {
    /* no time mapping: only the start */
    if (segment->position != 0)
      return FALSE;
    self->frame = 0;
    segment->time = segment->start;
    return TRUE;
  }

  if (n_frames >= 0) {
    /* keep the duration (a segment made for a frame seek has none) and
     * the positions within it */
    GstClockTime dur = frame_to_time (n_frames, fps_n, fps_d);

    segment->duration = dur;
    segment->start = MIN (segment->start, dur);
    segment->position = MIN (segment->position, dur);
    if (GST_CLOCK_TIME_IS_VALID (segment->stop))
      segment->stop = MIN (segment->stop, dur);
  }
  segment->time = segment->start;
  self->frame = time_to_frame (segment->position, fps_n, fps_d);
  GST_DEBUG_OBJECT (self, "seek to %" GST_TIME_FORMAT ": frame %"
      G_GUINT64_FORMAT " of %" G_GINT64_FORMAT, GST_TIME_ARGS
      (segment->position), self->frame, n_frames);
  return TRUE;
}

static gboolean
gst_cbir_idxsrc_query (GstBaseSrc * src, GstQuery * query)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);
  GstFormat format;
  gint fps_n, fps_d;
  gint64 n_frames, dur;
  gboolean started;

  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_CONVERT:{
      GstFormat src_format, dest_format;
      gint64 src_value, dest_value;

      gst_query_parse_convert (query, &src_format, &src_value, &dest_format,
          NULL);
      if (!gst_cbir_idxsrc_convert (self, src_format, src_value, dest_format,
              &dest_value))
        return FALSE;
      gst_query_set_convert (query, src_format, src_value, dest_format,
          dest_value);
      return TRUE;
    }
    case GST_QUERY_DURATION:
    case GST_QUERY_SEEKING:
      if (GST_QUERY_TYPE (query) == GST_QUERY_DURATION)
        gst_query_parse_duration (query, &format, NULL);
      else
        gst_query_parse_seeking (query, &format, NULL, NULL, NULL);
      GST_OBJECT_LOCK (self);
      gst_cbir_idxsrc_get_timing_unlocked (self, &fps_n, &fps_d, &n_frames);
      started = self->started;
      GST_OBJECT_UNLOCK (self);

      if (format != GST_FORMAT_TIME && format != GST_FORMAT_DEFAULT) {
        if (GST_QUERY_TYPE (query) == GST_QUERY_DURATION)
          break;
        gst_query_set_seeking (query, format, FALSE, -1, -1);
        return TRUE;
      }
      if (fps_n <= 0 || fps_d <= 0) {
        /* frames only, and no seeking */
        if (GST_QUERY_TYPE (query) == GST_QUERY_SEEKING) {
          gst_query_set_seeking (query, format, FALSE, -1, -1);
          return TRUE;
        }
        if (format == GST_FORMAT_TIME)
          return FALSE;
      }
      if (n_frames < 0)
        dur = -1;
      else if (format == GST_FORMAT_DEFAULT)
        dur = n_frames;
      else
        dur = frame_to_time (n_frames, fps_n, fps_d);

      if (GST_QUERY_TYPE (query) == GST_QUERY_SEEKING) {
        gst_query_set_seeking (query, format, TRUE, 0, dur);
        return TRUE;
      }
      if (!started)
        break;                  /* length unknown before start() */
      gst_query_set_duration (query, format, dur);
      return TRUE;
    default:
      break;
  }
  return GST_BASE_SRC_CLASS (parent_class)->query (src, query);
}

static GstFlowReturn
gst_cbir_idxsrc_create (GstPushSrc * src, GstBuffer ** out)
{
  GstCbirIdxSrc *self = GST_CBIR_IDXSRC (src);
  GstVideoFrame frame;
  GstBuffer *buf;
  guint idx, y, w, h;
  const guint8 *pix;
  guint8 *dst;
  gint stride;

  if (self->ds == NULL || GST_VIDEO_INFO_FORMAT (&self->info) !=
      GST_VIDEO_FORMAT_GRAY8)
    return GST_FLOW_NOT_NEGOTIATED;

  /* (nothing to loop over with count=0) */
  if (self->frame >= self->n_play && (!self->cur_loop || self->n_play == 0)) {
    GST_DEBUG_OBJECT (self, "frame %" G_GUINT64_FORMAT " of %u: EOS",
        self->frame, self->n_play);
    return GST_FLOW_EOS;
  }
  idx = self->first + (guint) (self->frame % self->n_play);

  buf = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&self->info),
      NULL);
  if (!gst_video_frame_map (&frame, &self->info, buf, GST_MAP_WRITE)) {
    gst_buffer_unref (buf);
    GST_ELEMENT_ERROR (self, RESOURCE, WRITE, ("Could not map a buffer."),
        (NULL));
    return GST_FLOW_ERROR;
  }
  w = self->ds->cols;
  h = self->ds->rows;
  stride = GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0);
  dst = GST_VIDEO_FRAME_PLANE_DATA (&frame, 0);
  pix = self->ds->images + (gsize) idx * w * h;
  for (y = 0; y < h; y++) {
    memcpy (dst + (gsize) y * stride, pix + (gsize) y * w, w);
    if ((guint) stride > w)
      memset (dst + (gsize) y * stride + w, 0, stride - w);
  }
  gst_video_frame_unmap (&frame);

  GST_BUFFER_PTS (buf) = frame_to_time (self->frame, self->cur_fps_n,
      self->cur_fps_d);
  GST_BUFFER_DURATION (buf) = frame_to_time (self->frame + 1,
      self->cur_fps_n, self->cur_fps_d) - GST_BUFFER_PTS (buf);
  GST_BUFFER_OFFSET (buf) = self->frame;
  GST_BUFFER_OFFSET_END (buf) = self->frame + 1;
  if (self->frame == 0)
    GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);

  gst_buffer_add_cbir_source_meta (buf, idx,
      self->ds->labels ? self->ds->labels[idx] : -1, self->cur_images);

  self->frame++;
  *out = buf;
  return GST_FLOW_OK;
}

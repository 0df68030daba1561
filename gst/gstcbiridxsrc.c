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

  /* streaming state */
  CbirDataset *ds;
  guint first, n_play;          /* images [first, first + n_play) */
  guint64 frame;                /* frames produced */
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

  basesrc_class->start = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_start);
  basesrc_class->stop = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_stop);
  basesrc_class->get_caps = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_get_caps);
  basesrc_class->set_caps = GST_DEBUG_FUNCPTR (gst_cbir_idxsrc_set_caps);
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
  guint start;
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

  self->first = start;
  self->n_play = self->ds->n - start;
  if (count >= 0 && (guint) count < self->n_play)
    self->n_play = count;
  self->frame = 0;
  self->cur_images = g_intern_string (images);
  gst_video_info_init (&self->info);
  GST_INFO_OBJECT (self, "%s: %u images of %ux%u, playing %u from %u",
      images, self->ds->n, self->ds->cols, self->ds->rows, self->n_play,
      self->first);
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

  if (self->frame >= self->n_play && !self->cur_loop) {
    GST_DEBUG_OBJECT (self, "played %u images: EOS", self->n_play);
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

  GST_BUFFER_PTS (buf) = gst_util_uint64_scale (self->frame,
      GST_SECOND * self->cur_fps_d, self->cur_fps_n);
  GST_BUFFER_DURATION (buf) = gst_util_uint64_scale (self->frame + 1,
      GST_SECOND * self->cur_fps_d, self->cur_fps_n) - GST_BUFFER_PTS (buf);
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

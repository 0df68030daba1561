/* gst-cbir: cbirencode, encodes each GRAY8 frame with the autoencoder.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * SECTION:element-cbirencode
 * @title: cbirencode
 *
 * An analysis filter: maps each GRAY8 frame (any size) read-only, brings
 * it to the model's input size (#GstCbirEncode:preprocess), runs the
 * encoder and attaches a GstCbirEmbeddingMeta (include/gst/cbir/cbirmeta.h):
 * the float code, the packed bits for a bit-code model, and the model's
 * fingerprint, which cbirsearch checks against its gallery. The pixels are
 * not touched. The model file is loaded when the element goes from READY
 * to PAUSED; a missing or corrupt file is an error naming it.
 *
 * With preprocess=mnist a frame in which no digit is found gets no
 * embedding.
 *
 * Several digits in a frame: with #GstCbirEncode:regions=digits the frame
 * is analysed once (polarity, background, threshold, connected components
 * of the ink: the engine's CbirInkMap) and every digit found (at most
 * #GstCbirEncode:max-regions, the largest, left to right) gets
 * - a GstVideoRegionOfInterestMeta of type "digit": the digit's box in
 *   frame pixels, with ids 0, 1, ... in left-to-right order (counted on
 *   from the largest id of any region already on the buffer);
 * - a GstCbirEmbeddingMeta whose region_id is that ROI's id, the code of
 *   the region alone (MNIST-style normalisation of the ink inside the box
 *   with preprocess=mnist, an area-average resize of the box with
 *   preprocess=scale).
 * cbirsearch searches each of them and puts the result on the ROI. A frame
 * without a digit gets neither. With regions=none (default) the whole
 * frame is one query, as above.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 cbiridxsrc images=t10k-images-idx3-ubyte.gz ! \
 *     cbirencode model=model.safetensors ! cbirindex location=gallery.safetensors
 * ]|
 * |[
 * gst-launch-1.0 -m filesrc location=digits.avi ! decodebin ! videoconvert ! \
 *     video/x-raw,format=GRAY8 ! \
 *     cbirencode model=model.safetensors preprocess=mnist regions=digits ! \
 *     cbirsearch gallery=gallery.safetensors ! fakesink
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirencode.h"
#include "gstcbirutils.h"
#include "gstcbirmeta.h"

#include <string.h>
#include <gst/video/video.h>
#include <cbir/model.h>
#include <cbir/preprocess.h>

GST_DEBUG_CATEGORY_STATIC (gst_cbir_encode_debug);
#define GST_CAT_DEFAULT gst_cbir_encode_debug

typedef enum
{
  GST_CBIR_PREPROCESS_SCALE = 0,
  GST_CBIR_PREPROCESS_MNIST = 1,
} GstCbirPreprocess;

#define GST_TYPE_CBIR_PREPROCESS (gst_cbir_preprocess_get_type ())
static GType
gst_cbir_preprocess_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CBIR_PREPROCESS_SCALE,
        "Area-average resize of the whole frame to the model input", "scale"},
    {GST_CBIR_PREPROCESS_MNIST,
          "MNIST-style normalisation (camera frames): auto-invert, crop to the "
          "ink, fit into 20x20, centre by mass in 28x28", "mnist"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirPreprocess", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

typedef enum
{
  GST_CBIR_REGIONS_NONE = 0,
  GST_CBIR_REGIONS_DIGITS = 1,
} GstCbirRegions;

#define GST_TYPE_CBIR_REGIONS (gst_cbir_regions_get_type ())
static GType
gst_cbir_regions_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CBIR_REGIONS_NONE,
        "The whole frame is one query (one embedding, no region metas)",
        "none"},
    {GST_CBIR_REGIONS_DIGITS,
          "Every digit found (connected components of the ink) is a query: "
          "a GstVideoRegionOfInterestMeta \"digit\" and an embedding each",
        "digits"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirRegions", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

#define DEFAULT_MODEL NULL
#define DEFAULT_PREPROCESS GST_CBIR_PREPROCESS_SCALE
#define DEFAULT_REGIONS GST_CBIR_REGIONS_NONE
#define DEFAULT_MAX_REGIONS 8
#define MAX_MAX_REGIONS 64

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_PREPROCESS,
  PROP_REGIONS,
  PROP_MAX_REGIONS,
};

struct _GstCbirEncode
{
  GstBaseTransform parent;

  /* properties (object lock) */
  gchar *model_path;
  GstCbirPreprocess preprocess;
  GstCbirRegions regions;
  guint max_regions;

  /* streaming state */
  CbirModel *model;
  GstCbirPreprocess cur_preprocess;
  GstCbirRegions cur_regions;
  guint cur_max_regions;
  guint in_w, in_h;             /* model input */
  guint dim;
  CbirCodeType code_type;
  const gchar *fingerprint;     /* interned */
  guint8 *input;                /* in_w * in_h */
  guint8 mnist[CBIR_MNIST_SIZE * CBIR_MNIST_SIZE];
  GstVideoInfo info;
};

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE ("GRAY8")

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (VIDEO_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (VIDEO_CAPS));

#define gst_cbir_encode_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstCbirEncode, gst_cbir_encode,
    GST_TYPE_BASE_TRANSFORM, GST_DEBUG_CATEGORY_INIT (gst_cbir_encode_debug,
        "cbirencode", 0, "cbir encoder"));
GST_ELEMENT_REGISTER_DEFINE (cbirencode, "cbirencode", GST_RANK_NONE,
    GST_TYPE_CBIR_ENCODE);

static void gst_cbir_encode_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec);
static void gst_cbir_encode_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec);
static void gst_cbir_encode_finalize (GObject * object);
static gboolean gst_cbir_encode_start (GstBaseTransform * trans);
static gboolean gst_cbir_encode_query (GstBaseTransform * trans,
    GstPadDirection direction, GstQuery * query);
static gboolean gst_cbir_encode_stop (GstBaseTransform * trans);
static gboolean gst_cbir_encode_set_caps (GstBaseTransform * trans,
    GstCaps * incaps, GstCaps * outcaps);
static GstFlowReturn gst_cbir_encode_transform_ip (GstBaseTransform * trans,
    GstBuffer * buf);

static void
gst_cbir_encode_class_init (GstCbirEncodeClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);

  gobject_class->set_property = gst_cbir_encode_set_property;
  gobject_class->get_property = gst_cbir_encode_get_property;
  gobject_class->finalize = gst_cbir_encode_finalize;

  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Model file (safetensors, from cbir-train); loaded when the "
          "element starts", DEFAULT_MODEL, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_PREPROCESS,
      g_param_spec_enum ("preprocess", "Preprocess",
          "How a frame is brought to the model's input",
          GST_TYPE_CBIR_PREPROCESS, DEFAULT_PREPROCESS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_REGIONS,
      g_param_spec_enum ("regions", "Regions",
          "What is encoded: the whole frame, or every digit found in it "
          "(one GstVideoRegionOfInterestMeta of type \"digit\" and one "
          "embedding per digit; cbirsearch searches each)",
          GST_TYPE_CBIR_REGIONS, DEFAULT_REGIONS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_MAX_REGIONS,
      g_param_spec_uint ("max-regions", "Maximum regions",
          "With regions=digits: at most this many digits a frame (the "
          "largest)", 1, MAX_MAX_REGIONS, DEFAULT_MAX_REGIONS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "CBIR encoder",
      "Filter/Analyzer/Video",
      "Encodes GRAY8 frames with a convolutional autoencoder and attaches "
      "the code as metadata", "gst-cbir developers");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_cbir_encode_start);
  trans_class->query = GST_DEBUG_FUNCPTR (gst_cbir_encode_query);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_cbir_encode_stop);
  trans_class->set_caps = GST_DEBUG_FUNCPTR (gst_cbir_encode_set_caps);
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_cbir_encode_transform_ip);
  trans_class->passthrough_on_same_caps = FALSE;

  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_PREPROCESS, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_REGIONS, 0);
}

static void
gst_cbir_encode_init (GstCbirEncode * self)
{
  self->model_path = g_strdup (DEFAULT_MODEL);
  self->preprocess = DEFAULT_PREPROCESS;
  self->regions = DEFAULT_REGIONS;
  self->max_regions = DEFAULT_MAX_REGIONS;

  /* attaching metas needs a writable buffer: never passthrough (the
   * buffer is made writable, its memory is shared, as in gstlevel.c) */
  gst_base_transform_set_in_place (GST_BASE_TRANSFORM (self), TRUE);
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), FALSE);
}

static void
gst_cbir_encode_finalize (GObject * object)
{
  GstCbirEncode *self = GST_CBIR_ENCODE (object);

  g_free (self->model_path);
  g_clear_pointer (&self->model, cbir_model_free);
  g_free (self->input);

  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_cbir_encode_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstCbirEncode *self = GST_CBIR_ENCODE (object);

  GST_OBJECT_LOCK (self);
  if (gst_cbir_refuse_if_running_unlocked (GST_ELEMENT (self), pspec))
    return;
  switch (prop_id) {
    case PROP_MODEL:
      g_free (self->model_path);
      self->model_path = g_value_dup_string (value);
      break;
    case PROP_PREPROCESS:
      self->preprocess = g_value_get_enum (value);
      break;
    case PROP_REGIONS:
      self->regions = g_value_get_enum (value);
      break;
    case PROP_MAX_REGIONS:
      self->max_regions = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_cbir_encode_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstCbirEncode *self = GST_CBIR_ENCODE (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string (value, self->model_path);
      break;
    case PROP_PREPROCESS:
      g_value_set_enum (value, self->preprocess);
      break;
    case PROP_REGIONS:
      g_value_set_enum (value, self->regions);
      break;
    case PROP_MAX_REGIONS:
      g_value_set_uint (value, self->max_regions);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_cbir_encode_start (GstBaseTransform * trans)
{
  GstCbirEncode *self = GST_CBIR_ENCODE (trans);
  g_autofree gchar *path = NULL;
  g_autoptr (GError) err = NULL;

  GST_OBJECT_LOCK (self);
  path = g_strdup (self->model_path);
  self->cur_preprocess = self->preprocess;
  self->cur_regions = self->regions;
  self->cur_max_regions = self->max_regions;
  GST_OBJECT_UNLOCK (self);

  if (path == NULL || *path == '\0')
    goto no_model;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    goto not_found;

  self->model = cbir_model_load (path, &err);
  if (self->model == NULL)
    goto load_failed;

  cbir_model_get_input_size (self->model, &self->in_w, &self->in_h);
  self->dim = cbir_model_get_code_dim (self->model);
  self->code_type = cbir_model_get_code_type (self->model);
  self->fingerprint =
      g_intern_string (cbir_model_get_fingerprint (self->model));
  g_free (self->input);
  /* one model input per region (one for the whole frame) */
  self->input = g_malloc0 ((gsize) self->in_w * self->in_h *
      (self->cur_regions == GST_CBIR_REGIONS_DIGITS ?
          self->cur_max_regions : 1));
  GST_INFO_OBJECT (self, "model %s (%s): input %ux%u, %u-%s code, "
      "fingerprint %s", path, cbir_model_get_name (self->model), self->in_w,
      self->in_h, self->dim, cbir_code_type_to_string (self->code_type),
      self->fingerprint);
  return TRUE;

  /* ERRORS */
no_model:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No model file specified (property \"model\")."), (NULL));
    return FALSE;
  }
not_found:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("Model file \"%s\" not found.", path), (NULL));
    return FALSE;
  }
load_failed:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
        ("Could not load model \"%s\": %s", path, err->message),
        ("%s", err->message));
    return FALSE;
  }
}

/* Downstream's "which model?" (GST_CBIR_MODEL_QUERY_NAME), answered from
 * the loaded model, or, before start (cbirsearch starts first), from the
 * file the "model" property names. A model that does not load is not
 * answered: start reports why. */
static gboolean
gst_cbir_encode_query (GstBaseTransform * trans, GstPadDirection direction,
    GstQuery * query)
{
  GstCbirEncode *self = GST_CBIR_ENCODE (trans);
  const GstStructure *s = gst_query_get_structure (query);

  if (direction == GST_PAD_SRC && GST_QUERY_TYPE (query) == GST_QUERY_CUSTOM
      && s && gst_structure_has_name (s, GST_CBIR_MODEL_QUERY_NAME)) {
    g_autoptr (CbirModel) peek = NULL;
    const gchar *fp;
    guint dim;

    if (self->model) {
      fp = self->fingerprint;
      dim = self->dim;
    } else {
      g_autofree gchar *path = NULL;

      GST_OBJECT_LOCK (self);
      path = g_strdup (self->model_path);
      GST_OBJECT_UNLOCK (self);
      peek = path ? cbir_model_load (path, NULL) : NULL;
      if (peek == NULL)
        return FALSE;
      fp = cbir_model_get_fingerprint (peek);
      dim = cbir_model_get_code_dim (peek);
    }
    gst_structure_set (gst_query_writable_structure (query), "fingerprint",
        G_TYPE_STRING, fp, "dim", G_TYPE_UINT, dim, NULL);
    return TRUE;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->query (trans, direction,
      query);
}

static gboolean
gst_cbir_encode_stop (GstBaseTransform * trans)
{
  GstCbirEncode *self = GST_CBIR_ENCODE (trans);

  g_clear_pointer (&self->model, cbir_model_free);
  g_clear_pointer (&self->input, g_free);
  return TRUE;
}

static gboolean
gst_cbir_encode_set_caps (GstBaseTransform * trans, GstCaps * incaps,
    GstCaps * outcaps)
{
  GstCbirEncode *self = GST_CBIR_ENCODE (trans);

  if (!gst_video_info_from_caps (&self->info, incaps)) {
    GST_ERROR_OBJECT (self, "invalid caps %" GST_PTR_FORMAT, incaps);
    return FALSE;
  }
  return TRUE;
}

/* Attaches the embedding of code (dim floats, taken) for region_id, with
 * the picture the model encoded (input, in_w x in_h) and, when not NULL,
 * the ink box that was normalised. */
static void
add_embedding (GstCbirEncode * self, GstBuffer * buf, gfloat * code,
    gint region_id, const guint8 * input, const CbirRect * ink)
{
  GstCbirEmbeddingMeta *e;
  guint8 *bits = NULL;

  if (self->code_type == CBIR_CODE_BITS) {
    bits = g_malloc0 ((self->dim + 7) / 8);
    cbir_codes_pack_bits (code, 1, self->dim, NULL, bits);
  }
  e = gst_buffer_add_cbir_embedding_meta (buf, code, self->dim,
      self->code_type, bits, bits ? self->dim : 0, self->fingerprint);
  if (e == NULL)
    return;
  e->region_id = region_id;
  gst_cbir_embedding_meta_set_input (e, input, self->in_w, self->in_h);
  e->frame_width = GST_VIDEO_INFO_WIDTH (&self->info);
  e->frame_height = GST_VIDEO_INFO_HEIGHT (&self->info);
  if (ink && ink->width > 0 && ink->height > 0) {
    e->ink_x = (gint) ink->x;
    e->ink_y = (gint) ink->y;
    e->ink_width = (gint) ink->width;
    e->ink_height = (gint) ink->height;
  }
}

/* regions=digits: finds the digits of the mapped frame, fills one model
 * input per digit into self->input and the boxes into rects; returns how
 * many. */
static guint
find_regions (GstCbirEncode * self, const guint8 * pix, guint w, guint h,
    gsize stride, CbirRect * rects)
{
  g_autoptr (CbirInkMap) map = cbir_ink_map_new (pix, w, h, stride);
  gsize in_size = (gsize) self->in_w * self->in_h;
  guint n, i, kept = 0;

  if (map == NULL)
    return 0;
  n = cbir_ink_map_find_digits (map, rects, self->cur_max_regions);
  for (i = 0; i < n; i++) {
    const CbirRect *r = &rects[i];
    guint8 *dst = self->input + kept * in_size;

    if (self->cur_preprocess == GST_CBIR_PREPROCESS_MNIST) {
      if (!cbir_ink_map_normalise (map, r, self->mnist, NULL))
        continue;
      cbir_preprocess_scale (self->mnist, CBIR_MNIST_SIZE, CBIR_MNIST_SIZE,
          CBIR_MNIST_SIZE, self->in_w, self->in_h, dst);
    } else {
      if (r->width == 0 || r->height == 0)
        continue;
      cbir_preprocess_scale (pix + (gsize) r->y * stride + r->x, r->width,
          r->height, stride, self->in_w, self->in_h, dst);
    }
    rects[kept++] = *r;
  }
  return kept;
}

static GstFlowReturn
gst_cbir_encode_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstCbirEncode *self = GST_CBIR_ENCODE (trans);
  g_autoptr (GError) err = NULL;
  GstVideoFrame frame;
  const guint8 *pix;
  guint w, h;
  gsize stride;
  gfloat *code;
  gboolean have_digit = TRUE;
  CbirRect rects[MAX_MAX_REGIONS];
  guint n_regions = 0, i;
  CbirPreprocessInfo info = { {0} };

  if (GST_VIDEO_INFO_FORMAT (&self->info) != GST_VIDEO_FORMAT_GRAY8)
    goto not_negotiated;

  /* analysis only: read map, the pixels are never written */
  if (!gst_video_frame_map (&frame, &self->info, buf, GST_MAP_READ))
    goto map_failed;
  pix = GST_VIDEO_FRAME_PLANE_DATA (&frame, 0);
  w = GST_VIDEO_FRAME_WIDTH (&frame);
  h = GST_VIDEO_FRAME_HEIGHT (&frame);
  stride = GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0);
  if (self->cur_regions == GST_CBIR_REGIONS_DIGITS) {
    n_regions = find_regions (self, pix, w, h, stride, rects);
    have_digit = n_regions > 0;
  } else if (self->cur_preprocess == GST_CBIR_PREPROCESS_MNIST) {
    have_digit = cbir_preprocess_mnist (pix, w, h, stride, self->mnist,
        &info);
    cbir_preprocess_scale (self->mnist, CBIR_MNIST_SIZE, CBIR_MNIST_SIZE,
        CBIR_MNIST_SIZE, self->in_w, self->in_h, self->input);
  } else {
    cbir_preprocess_scale (pix, w, h, stride, self->in_w, self->in_h,
        self->input);
  }
  gst_video_frame_unmap (&frame);

  if (!have_digit) {
    GST_LOG_OBJECT (self, "no digit in frame %" GST_TIME_FORMAT,
        GST_TIME_ARGS (GST_BUFFER_PTS (buf)));
    return GST_FLOW_OK;
  }

  if (self->cur_regions == GST_CBIR_REGIONS_DIGITS) {
    /* all the frame's digits in one batch */
    g_autofree gfloat *codes = g_new (gfloat, (gsize) n_regions * self->dim);

    if (!cbir_model_encode_u8 (self->model, self->input, n_regions, codes,
            &err))
      goto encode_failed;
    gint first_id = 0;
    gpointer state = NULL;
    GstMeta *meta;

    /* ids after any region upstream put on the buffer */
    while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
                GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)))
      first_id = MAX (first_id,
          ((GstVideoRegionOfInterestMeta *) meta)->id + 1);
    for (i = 0; i < n_regions; i++) {
      GstVideoRegionOfInterestMeta *roi =
          gst_buffer_add_video_region_of_interest_meta (buf, "digit",
          rects[i].x, rects[i].y, rects[i].width, rects[i].height);

      roi->id = first_id + (gint) i;
      add_embedding (self, buf, g_memdup2 (codes + (gsize) i * self->dim,
              sizeof (gfloat) * self->dim), roi->id,
          self->input + (gsize) i * self->in_w * self->in_h, NULL);
    }
    GST_LOG_OBJECT (self, "%u digit(s) in frame %" GST_TIME_FORMAT,
        n_regions, GST_TIME_ARGS (GST_BUFFER_PTS (buf)));
    return GST_FLOW_OK;
  }

  code = g_new (gfloat, self->dim);
  if (!cbir_model_encode_u8 (self->model, self->input, 1, code, &err)) {
    g_free (code);
    goto encode_failed;
  }
  add_embedding (self, buf, code, -1, self->input,
      self->cur_preprocess == GST_CBIR_PREPROCESS_MNIST ? &info.bbox : NULL);
  return GST_FLOW_OK;

  /* ERRORS */
not_negotiated:
  {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
        ("caps not negotiated"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
map_failed:
  {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map a frame."),
        (NULL));
    return GST_FLOW_ERROR;
  }
encode_failed:
  {
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("Encoding failed: %s", err->message), (NULL));
    return GST_FLOW_ERROR;
  }
}

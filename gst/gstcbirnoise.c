/* gst-cbir: cbirnoise, seeded image corruption on GRAY8 frames.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * SECTION:element-cbirnoise
 * @title: cbirnoise
 *
 * Adds Gaussian or salt-and-pepper noise to GRAY8 frames of any size, in
 * place, with the engine's noise (the same code the trainer uses). The
 * noise of a frame depends only on #GstCbirNoise:seed, the frame number
 * (frames counted from the start of the stream) and the frame size, so a
 * run is reproducible. With #GstCbirNoise:level 0 the element is in
 * passthrough.
 *
 * Gaussian noise is added in the space of a model's input mapping,
 * x = (pixel / 255)^#GstCbirNoise:gamma, and mapped back to pixels, so
 * that a level means what it means to cbir-train: its --noise-level is
 * added to x, with the model's own gamma. The defaults, level 0.3 and
 * gamma 0.5, are exactly the default model's training corruption (up to
 * the 8-bit rounding of the result); gamma 1 adds the noise to the pixels
 * themselves (a level-0.3 frame is then far noisier on the paper than
 * anything the default model was trained on: about 0.3 x 255 against
 * 0.3^2 x 255 on black).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 cbiridxsrc images=t10k-images-idx3-ubyte.gz ! \
 *     cbirnoise kind=salt-and-pepper level=0.2 seed=7 ! videoconvert ! autovideosink
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirnoise.h"

#include <gst/video/video.h>
#include <cbir/noise.h>

GST_DEBUG_CATEGORY_STATIC (gst_cbir_noise_debug);
#define GST_CAT_DEFAULT gst_cbir_noise_debug

#define GST_TYPE_CBIR_NOISE_KIND (gst_cbir_noise_kind_get_type ())
static GType
gst_cbir_noise_kind_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {CBIR_NOISE_GAUSSIAN, "Gaussian: x + level * N(0,1), clipped",
        "gaussian"},
    {CBIR_NOISE_SALT_PEPPER,
        "Salt and pepper: each pixel with probability level becomes 0 or 255",
        "salt-and-pepper"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirNoiseKind", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

#define DEFAULT_KIND CBIR_NOISE_GAUSSIAN
#define DEFAULT_LEVEL 0.3
#define DEFAULT_GAMMA 0.5
#define DEFAULT_SEED 0

enum
{
  PROP_0,
  PROP_KIND,
  PROP_LEVEL,
  PROP_SEED,
  PROP_GAMMA,
};

struct _GstCbirNoise
{
  GstVideoFilter parent;

  /* properties (object lock) */
  CbirNoiseKind kind;
  gfloat level;
  guint64 seed;
  gfloat gamma;

  guint64 frame;                /* frames seen since start */
};

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE ("GRAY8")

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (VIDEO_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (VIDEO_CAPS));

#define gst_cbir_noise_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstCbirNoise, gst_cbir_noise, GST_TYPE_VIDEO_FILTER,
    GST_DEBUG_CATEGORY_INIT (gst_cbir_noise_debug, "cbirnoise", 0,
        "cbir noise filter"));
GST_ELEMENT_REGISTER_DEFINE (cbirnoise, "cbirnoise", GST_RANK_NONE,
    GST_TYPE_CBIR_NOISE);

static void gst_cbir_noise_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec);
static void gst_cbir_noise_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec);
static gboolean gst_cbir_noise_start (GstBaseTransform * trans);
static void gst_cbir_noise_before_transform (GstBaseTransform * trans,
    GstBuffer * buf);
static GstFlowReturn gst_cbir_noise_transform_frame_ip (GstVideoFilter *
    filter, GstVideoFrame * frame);

static void
gst_cbir_noise_class_init (GstCbirNoiseClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);

  gobject_class->set_property = gst_cbir_noise_set_property;
  gobject_class->get_property = gst_cbir_noise_get_property;

  g_object_class_install_property (gobject_class, PROP_KIND,
      g_param_spec_enum ("kind", "Kind", "Kind of noise",
          GST_TYPE_CBIR_NOISE_KIND, DEFAULT_KIND,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_LEVEL,
      g_param_spec_float ("level", "Level",
          "Noise level: standard deviation in units of full scale (gaussian) "
          "or fraction of pixels hit (salt-and-pepper); 0 = passthrough",
          0.0, 1.0, DEFAULT_LEVEL, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS
          | GST_PARAM_CONTROLLABLE | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_SEED,
      g_param_spec_uint64 ("seed", "Seed",
          "Random seed: the noise of a frame depends only on the seed, the "
          "frame number and the frame size", 0, G_MAXUINT64, DEFAULT_SEED,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_GAMMA,
      g_param_spec_float ("gamma", "Gamma",
          "Gaussian noise is added to (pixel/255)^gamma, a model's input "
          "mapping: 0.5 = the default model's, so that level is its "
          "training noise level (cbir-train --noise-level); 1 = to the "
          "pixels", 0.05, 20.0, DEFAULT_GAMMA, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "CBIR noise",
      "Filter/Effect/Video",
      "Adds seeded Gaussian or salt-and-pepper noise to GRAY8 frames",
      "gst-cbir developers");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_cbir_noise_start);
  trans_class->before_transform =
      GST_DEBUG_FUNCPTR (gst_cbir_noise_before_transform);
  filter_class->transform_frame_ip =
      GST_DEBUG_FUNCPTR (gst_cbir_noise_transform_frame_ip);

  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_NOISE_KIND, 0);
}

static void
gst_cbir_noise_init (GstCbirNoise * self)
{
  self->kind = DEFAULT_KIND;
  self->level = DEFAULT_LEVEL;
  self->seed = DEFAULT_SEED;
  self->gamma = DEFAULT_GAMMA;
}

static void
gst_cbir_noise_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstCbirNoise *self = GST_CBIR_NOISE (object);
  gboolean passthrough;

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_KIND:
      self->kind = g_value_get_enum (value);
      break;
    case PROP_LEVEL:
      self->level = g_value_get_float (value);
      break;
    case PROP_SEED:
      self->seed = g_value_get_uint64 (value);
      break;
    case PROP_GAMMA:
      self->gamma = g_value_get_float (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  passthrough = (self->level <= 0.0f);
  GST_OBJECT_UNLOCK (self);

  /* takes the object lock itself */
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), passthrough);
}

static void
gst_cbir_noise_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstCbirNoise *self = GST_CBIR_NOISE (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_KIND:
      g_value_set_enum (value, self->kind);
      break;
    case PROP_LEVEL:
      g_value_set_float (value, self->level);
      break;
    case PROP_SEED:
      g_value_set_uint64 (value, self->seed);
      break;
    case PROP_GAMMA:
      g_value_set_float (value, self->gamma);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_cbir_noise_start (GstBaseTransform * trans)
{
  GstCbirNoise *self = GST_CBIR_NOISE (trans);

  self->frame = 0;
  return TRUE;
}

static void
gst_cbir_noise_before_transform (GstBaseTransform * trans, GstBuffer * buf)
{
  GstClockTime ts = GST_BUFFER_PTS (buf);

  if (GST_CLOCK_TIME_IS_VALID (ts)) {
    ts = gst_segment_to_stream_time (&trans->segment, GST_FORMAT_TIME, ts);
    if (GST_CLOCK_TIME_IS_VALID (ts))
      gst_object_sync_values (GST_OBJECT (trans), ts);
  }
}

static GstFlowReturn
gst_cbir_noise_transform_frame_ip (GstVideoFilter * filter,
    GstVideoFrame * frame)
{
  GstCbirNoise *self = GST_CBIR_NOISE (filter);
  CbirNoiseKind kind;
  gfloat level, gamma;
  guint64 seed, stream;

  GST_OBJECT_LOCK (self);
  kind = self->kind;
  level = self->level;
  seed = self->seed;
  gamma = self->gamma;
  GST_OBJECT_UNLOCK (self);

  /* The frame counter advances in passthrough too, so that frame n gets
   * the same noise whatever the level was before it. */
  stream = self->frame++;
  /* In passthrough GstVideoFilter maps the frame read-only; the level may
   * have changed since, so look at the map, not the level alone. */
  if (level <= 0.0f || !(frame->map[0].flags & GST_MAP_WRITE))
    return GST_FLOW_OK;

  cbir_noise_apply_u8_gamma (kind, level, gamma, seed, stream,
      GST_VIDEO_FRAME_PLANE_DATA (frame, 0), GST_VIDEO_FRAME_WIDTH (frame),
      GST_VIDEO_FRAME_HEIGHT (frame), GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0));
  return GST_FLOW_OK;
}

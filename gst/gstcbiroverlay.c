/* gst-cbir: cbiroverlay, draws the retrieval result on the video.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * SECTION:element-cbiroverlay
 * @title: cbiroverlay
 *
 * Draws, with cairo, what cbirsearch found for each frame: the normalised
 * query (the 28x28 the model saw, scaled up), its nearest gallery items as
 * thumbnails with their labels and distances, and the voted label with its
 * confidence. Works in place on the RGB formats cairo draws natively (use
 * videoconvert around it for any other format).
 *
 * The result is read from the buffer:
 * - per region: each GstVideoRegionOfInterestMeta carrying a param
 *   structure named "cbir-result" (the fields of the cbirsearch bus
 *   message: "ids", "labels", "distances", "label", "confidence", optional
 *   "label-name") gets its box drawn on the picture, its label next to it,
 *   and one row in the panel (ROIs of type "digit" without a result are
 *   drawn as boxes with "no match"; a result that is no match shows its
 *   match score under it, and hits of the gallery's examples of
 *   non-matches, label -2, are labelled "not");
 * - otherwise the whole frame's GstCbirResultMeta; a frame without one is
 *   shown as "no digit", or "not searched" when it carries cbirencode's
 *   embedding (no cbirsearch upstream); digit regions of a frame on which
 *   no search ran show "not searched" too, not "no match".
 *
 * The query picture is the one cbirencode encoded, which its embedding
 * meta carries (nothing is recomputed), and with cbirencode
 * preprocess=mnist a whole-frame result also gets a box around the ink
 * that was normalised. Only for a row whose embedding lacks the picture
 * (an encoder that did not attach it) is the picture recomputed from the
 * frame, as #GstCbirOverlay:preprocess says (encoder: never). Thumbnails come from the gallery file (#GstCbirOverlay:gallery);
 * without one, or for a gallery without thumbnails, each hit is drawn as
 * its label in a grey cell.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! \
 *     queue leaky=downstream max-size-buffers=2 ! tee name=t \
 *     t. ! videoconvert ! video/x-raw,format=GRAY8 ! \
 *     cbirencode model=model.safetensors preprocess=mnist ! \
 *     cbirsearch gallery=gallery.safetensors ! videoconvert ! \
 *     cbiroverlay gallery=gallery.safetensors ! \
 *     videoconvert ! autovideosink
 * ]|
 * (In practice the GRAY8 branch is the only branch: the metas survive
 * videoconvert, so convert to GRAY8, analyse, convert back, draw.)
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbiroverlay.h"
#include "gstcbirmeta.h"

#include <math.h>
#include <string.h>
#include <cairo.h>
#include <cbir/gallery.h>
#include <cbir/preprocess.h>
#include <cbir/search.h>

GST_DEBUG_CATEGORY_STATIC (gst_cbir_overlay_debug);
#define GST_CAT_DEFAULT gst_cbir_overlay_debug

#define MAX_HITS 16
#define MAX_ROWS 8

typedef enum
{
  GST_CBIR_OVERLAY_POSITION_TOP_LEFT,
  GST_CBIR_OVERLAY_POSITION_TOP_RIGHT,
  GST_CBIR_OVERLAY_POSITION_BOTTOM_LEFT,
  GST_CBIR_OVERLAY_POSITION_BOTTOM_RIGHT,
  GST_CBIR_OVERLAY_POSITION_AUTO,
} GstCbirOverlayPosition;

#define GST_TYPE_CBIR_OVERLAY_POSITION (gst_cbir_overlay_position_get_type ())
static GType
gst_cbir_overlay_position_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CBIR_OVERLAY_POSITION_TOP_LEFT, "Top left corner", "top-left"},
    {GST_CBIR_OVERLAY_POSITION_TOP_RIGHT, "Top right corner", "top-right"},
    {GST_CBIR_OVERLAY_POSITION_BOTTOM_LEFT, "Bottom left corner",
        "bottom-left"},
    {GST_CBIR_OVERLAY_POSITION_BOTTOM_RIGHT, "Bottom right corner",
        "bottom-right"},
    {GST_CBIR_OVERLAY_POSITION_AUTO,
        "The corner that hides the least of the digits found", "auto"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirOverlayPosition", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

typedef enum
{
  GST_CBIR_OVERLAY_PREPROCESS_SCALE = 0,
  GST_CBIR_OVERLAY_PREPROCESS_MNIST = 1,
  GST_CBIR_OVERLAY_PREPROCESS_ENCODER = 2,
} GstCbirOverlayPreprocess;

#define GST_TYPE_CBIR_OVERLAY_PREPROCESS \
  (gst_cbir_overlay_preprocess_get_type ())
static GType
gst_cbir_overlay_preprocess_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CBIR_OVERLAY_PREPROCESS_SCALE,
        "The whole frame scaled to 28x28 (as cbirencode preprocess=scale)",
        "scale"},
    {GST_CBIR_OVERLAY_PREPROCESS_MNIST,
          "MNIST-style normalisation of the ink (as cbirencode "
          "preprocess=mnist)", "mnist"},
    {GST_CBIR_OVERLAY_PREPROCESS_ENCODER,
          "Only the picture cbirencode encoded (nothing recomputed; none "
          "drawn without it)", "encoder"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirOverlayPreprocess", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

enum
{
  PROP_0,
  PROP_GALLERY,
  PROP_SHOW_QUERY,
  PROP_MAX_HITS,
  PROP_POSITION,
  PROP_SCALE,
  PROP_PREPROCESS,
  PROP_DRAW_BOXES,
};

#define DEFAULT_GALLERY NULL
#define DEFAULT_SHOW_QUERY TRUE
#define DEFAULT_MAX_HITS 5
#define DEFAULT_POSITION GST_CBIR_OVERLAY_POSITION_AUTO
#define DEFAULT_SCALE 2
#define DEFAULT_PREPROCESS GST_CBIR_OVERLAY_PREPROCESS_ENCODER
#define DEFAULT_DRAW_BOXES TRUE

struct _GstCbirOverlay
{
  GstVideoFilter parent;

  /* properties (object lock) */
  gchar *gallery_path;
  gboolean show_query;
  guint max_hits;
  GstCbirOverlayPosition position;
  guint scale;
  GstCbirOverlayPreprocess preprocess;
  gboolean draw_boxes;

  /* streaming */
  gboolean started;             /* between start and stop (object lock) */
  guint last_corner;            /* position=auto: corner of the last frame
                                 * (4: none yet) */
  CbirGallery *gallery;
  guint8 *luma;
  gsize luma_size;
};

/* cairo's native 32-bit formats, in GStreamer's names */
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
#define OVERLAY_FORMATS "{ BGRx, BGRA }"
#define FORMAT_RGB24 GST_VIDEO_FORMAT_BGRx
#else
#define OVERLAY_FORMATS "{ xRGB, ARGB }"
#define FORMAT_RGB24 GST_VIDEO_FORMAT_xRGB
#endif

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (OVERLAY_FORMATS)));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (OVERLAY_FORMATS)));

#define gst_cbir_overlay_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstCbirOverlay, gst_cbir_overlay,
    GST_TYPE_VIDEO_FILTER,
    GST_DEBUG_CATEGORY_INIT (gst_cbir_overlay_debug, "cbiroverlay", 0,
        "cbir result overlay"));
GST_ELEMENT_REGISTER_DEFINE (cbiroverlay, "cbiroverlay", GST_RANK_NONE,
    GST_TYPE_CBIR_OVERLAY);

static void gst_cbir_overlay_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec);
static void gst_cbir_overlay_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec);
static void gst_cbir_overlay_finalize (GObject * object);
static gboolean gst_cbir_overlay_start (GstBaseTransform * trans);
static gboolean gst_cbir_overlay_stop (GstBaseTransform * trans);
static GstFlowReturn gst_cbir_overlay_transform_frame_ip (GstVideoFilter *
    filter, GstVideoFrame * frame);

static void
gst_cbir_overlay_class_init (GstCbirOverlayClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);

  gobject_class->set_property = gst_cbir_overlay_set_property;
  gobject_class->get_property = gst_cbir_overlay_get_property;
  gobject_class->finalize = gst_cbir_overlay_finalize;

  g_object_class_install_property (gobject_class, PROP_GALLERY,
      g_param_spec_string ("gallery", "Gallery",
          "Gallery file (safetensors) the results refer to: thumbnails and "
          "label names (without it hits are drawn as their labels)",
          DEFAULT_GALLERY, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_SHOW_QUERY,
      g_param_spec_boolean ("show-query", "Show query",
          "Draw the normalised query (28x28, as the model saw it)",
          DEFAULT_SHOW_QUERY, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_MAX_HITS,
      g_param_spec_uint ("max-hits", "Maximum hits",
          "Draw at most this many of the nearest gallery items (0: only the "
          "voted label)", 0, MAX_HITS, DEFAULT_MAX_HITS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_POSITION,
      g_param_spec_enum ("position", "Position",
          "Corner of the frame the result panel is drawn in (auto: the one "
          "hiding the least of the digits found)",
          GST_TYPE_CBIR_OVERLAY_POSITION, DEFAULT_POSITION,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_SCALE,
      g_param_spec_uint ("scale", "Scale",
          "Magnification of the 28x28 query and thumbnails (the panel "
          "shrinks to fit a small frame)", 1, 16, DEFAULT_SCALE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_PREPROCESS,
      g_param_spec_enum ("preprocess", "Preprocess",
          "The query picture is the one cbirencode encoded; for a result "
          "whose embedding lacks it, recompute it from the frame this way "
          "(encoder: draw none)", GST_TYPE_CBIR_OVERLAY_PREPROCESS, DEFAULT_PREPROCESS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_DRAW_BOXES,
      g_param_spec_boolean ("draw-boxes", "Draw boxes",
          "Draw the box and label of each region (per-region results)",
          DEFAULT_DRAW_BOXES, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "CBIR result overlay", "Filter/Effect/Video",
      "Draws the normalised query, its nearest gallery thumbnails with "
      "distances and the voted label on the video",
      "gst-cbir <https://example.invalid/gst-cbir>");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_cbir_overlay_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_cbir_overlay_stop);
  filter_class->transform_frame_ip =
      GST_DEBUG_FUNCPTR (gst_cbir_overlay_transform_frame_ip);

  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_OVERLAY_POSITION, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_OVERLAY_PREPROCESS, 0);
}

static void
gst_cbir_overlay_init (GstCbirOverlay * self)
{
  self->gallery_path = g_strdup (DEFAULT_GALLERY);
  self->show_query = DEFAULT_SHOW_QUERY;
  self->max_hits = DEFAULT_MAX_HITS;
  self->position = DEFAULT_POSITION;
  self->scale = DEFAULT_SCALE;
  self->preprocess = DEFAULT_PREPROCESS;
  self->draw_boxes = DEFAULT_DRAW_BOXES;
  self->last_corner = 4;
}

static void
gst_cbir_overlay_finalize (GObject * object)
{
  GstCbirOverlay *self = GST_CBIR_OVERLAY (object);

  g_free (self->gallery_path);
  g_clear_pointer (&self->gallery, cbir_gallery_free);
  g_free (self->luma);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_cbir_overlay_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstCbirOverlay *self = GST_CBIR_OVERLAY (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_GALLERY:
      if (self->started) {
        GST_OBJECT_UNLOCK (self);
        GST_WARNING_OBJECT (self, "the gallery cannot be changed while the "
            "element is running (set it in the NULL or READY state)");
        return;
      }
      g_free (self->gallery_path);
      self->gallery_path = g_value_dup_string (value);
      break;
    case PROP_SHOW_QUERY:
      self->show_query = g_value_get_boolean (value);
      break;
    case PROP_MAX_HITS:
      self->max_hits = g_value_get_uint (value);
      break;
    case PROP_POSITION:
      self->position = g_value_get_enum (value);
      break;
    case PROP_SCALE:
      self->scale = g_value_get_uint (value);
      break;
    case PROP_PREPROCESS:
      self->preprocess = g_value_get_enum (value);
      break;
    case PROP_DRAW_BOXES:
      self->draw_boxes = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_cbir_overlay_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec)
{
  GstCbirOverlay *self = GST_CBIR_OVERLAY (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_GALLERY:
      g_value_set_string (value, self->gallery_path);
      break;
    case PROP_SHOW_QUERY:
      g_value_set_boolean (value, self->show_query);
      break;
    case PROP_MAX_HITS:
      g_value_set_uint (value, self->max_hits);
      break;
    case PROP_POSITION:
      g_value_set_enum (value, self->position);
      break;
    case PROP_SCALE:
      g_value_set_uint (value, self->scale);
      break;
    case PROP_PREPROCESS:
      g_value_set_enum (value, self->preprocess);
      break;
    case PROP_DRAW_BOXES:
      g_value_set_boolean (value, self->draw_boxes);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_cbir_overlay_start (GstBaseTransform * trans)
{
  GstCbirOverlay *self = GST_CBIR_OVERLAY (trans);
  g_autofree gchar *path = NULL;
  g_autoptr (GError) err = NULL;
  CbirGallery *g;

  GST_OBJECT_LOCK (self);
  path = g_strdup (self->gallery_path);
  self->started = TRUE;
  self->last_corner = 4;
  GST_OBJECT_UNLOCK (self);

  if (path == NULL || *path == '\0')
    return TRUE;

  g = cbir_gallery_open (path, &err);
  if (g == NULL) {
    GST_OBJECT_LOCK (self);
    self->started = FALSE;
    GST_OBJECT_UNLOCK (self);
    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
          ("Gallery file \"%s\" not found.", path), ("%s", err->message));
    else
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("Could not open gallery \"%s\": %s", path, err->message),
          ("%s", err->message));
    return FALSE;
  }
  GST_OBJECT_LOCK (self);
  self->gallery = g;
  GST_OBJECT_UNLOCK (self);
  GST_INFO_OBJECT (self, "gallery %s: %u items, %s thumbnails", path,
      cbir_gallery_size (g), cbir_gallery_get_thumbnail (g, 0) ? "with" :
      "without");
  return TRUE;
}

static gboolean
gst_cbir_overlay_stop (GstBaseTransform * trans)
{
  GstCbirOverlay *self = GST_CBIR_OVERLAY (trans);
  CbirGallery *g;

  GST_OBJECT_LOCK (self);
  g = self->gallery;
  self->gallery = NULL;
  self->started = FALSE;
  GST_OBJECT_UNLOCK (self);
  if (g)
    cbir_gallery_free (g);
  g_clear_pointer (&self->luma, g_free);
  self->luma_size = 0;
  return TRUE;
}

/* ---- what to draw ---- */

typedef struct
{
  gboolean has_result;          /* FALSE: no digit / not searched */
  gboolean not_searched;        /* a code (or digit) but no search ran */
  gboolean has_box;
  CbirRect box;
  gint region_id;               /* the ROI's id, -1 for the whole frame */
  guint n_hits;
  guint ids[MAX_HITS];
  gint labels[MAX_HITS];
  gfloat distances[MAX_HITS];
  gint label;
  gdouble confidence;
  gdouble match_score;          /* cbirsearch's, -1 when not given */
  gchar label_name[64];
  gboolean has_query;
  guint8 query[28 * 28];
  gboolean has_ink_box;         /* whole frame, mnist: the ink found */
  CbirRect ink_box;
} Row;

static void
row_from_structure (Row * row, const GstStructure * s)
{
  const GValue *ids = gst_structure_get_value (s, "ids");
  const GValue *labels = gst_structure_get_value (s, "labels");
  const GValue *dists = gst_structure_get_value (s, "distances");
  const gchar *name = gst_structure_get_string (s, "label-name");
  guint n = 0, i;

  row->has_result = TRUE;
  if (ids && GST_VALUE_HOLDS_ARRAY (ids))
    n = gst_value_array_get_size (ids);
  n = MIN (n, MAX_HITS);
  for (i = 0; i < n; i++) {
    const GValue *v = gst_value_array_get_value (ids, i);
    row->ids[i] = G_VALUE_HOLDS_UINT (v) ? g_value_get_uint (v) : 0;
    row->labels[i] = -1;
    row->distances[i] = NAN;
    if (labels && GST_VALUE_HOLDS_ARRAY (labels) &&
        i < gst_value_array_get_size (labels)) {
      v = gst_value_array_get_value (labels, i);
      if (G_VALUE_HOLDS_INT (v))
        row->labels[i] = g_value_get_int (v);
    }
    if (dists && GST_VALUE_HOLDS_ARRAY (dists) &&
        i < gst_value_array_get_size (dists)) {
      v = gst_value_array_get_value (dists, i);
      if (G_VALUE_HOLDS_FLOAT (v))
        row->distances[i] = g_value_get_float (v);
      else if (G_VALUE_HOLDS_DOUBLE (v))
        row->distances[i] = g_value_get_double (v);
    }
  }
  row->n_hits = n;
  if (!gst_structure_get_int (s, "label", &row->label))
    row->label = -1;
  if (!gst_structure_get_double (s, "confidence", &row->confidence))
    row->confidence = 0;
  if (!gst_structure_get_double (s, "match-score", &row->match_score))
    row->match_score = -1;
  if (name)
    g_strlcpy (row->label_name, name, sizeof (row->label_name));
}

static void
row_from_meta (Row * row, const GstCbirResultMeta * m)
{
  guint i, n = MIN (m->n_hits, MAX_HITS);

  row->has_result = TRUE;
  for (i = 0; i < n; i++) {
    row->ids[i] = m->hits[i].index;
    row->labels[i] = m->hits[i].label;
    row->distances[i] = m->hits[i].distance;
  }
  row->n_hits = n;
  row->label = m->label;
  row->confidence = m->confidence;
  row->match_score = m->match_score;
}

/* label text of a row or hit: the gallery's name when it has one */
static void
label_text (const CbirGallery * g, gint label, const gchar * given,
    gchar * out, gsize size)
{
  const gchar *name = NULL;

  if (given && *given)
    name = given;
  else if (g && label >= 0)
    name = cbir_gallery_get_label_name (g, label);
  if (name)
    g_strlcpy (out, name, size);
  else if (label == CBIR_LABEL_NOT_A_MATCH)
    g_strlcpy (out, "not", size);       /* a gallery example of a non-match */
  else if (label == CBIR_LABEL_UNLABELLED)
    g_strlcpy (out, "?", size);
  else
    g_snprintf (out, size, "%d", label);
}

/* ---- drawing ---- */

static void
draw_gray (cairo_t * cr, const guint8 * gray, double x, double y,
    double scale)
{
  cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_RGB24, 28,
      28);
  guint8 *data;
  int stride, i, j;
  cairo_pattern_t *pat;
  cairo_matrix_t m;

  cairo_surface_flush (s);
  data = cairo_image_surface_get_data (s);
  stride = cairo_image_surface_get_stride (s);
  for (j = 0; j < 28; j++) {
    guint32 *r = (guint32 *) (data + j * stride);
    for (i = 0; i < 28; i++) {
      guint32 v = gray[j * 28 + i];
      r[i] = 0xff000000u | (v << 16) | (v << 8) | v;
    }
  }
  cairo_surface_mark_dirty (s);

  pat = cairo_pattern_create_for_surface (s);
  cairo_pattern_set_filter (pat, CAIRO_FILTER_NEAREST);
  cairo_matrix_init_scale (&m, 1.0 / scale, 1.0 / scale);
  cairo_matrix_translate (&m, -x, -y);
  cairo_pattern_set_matrix (pat, &m);
  cairo_save (cr);
  cairo_set_source (cr, pat);
  cairo_rectangle (cr, x, y, 28 * scale, 28 * scale);
  cairo_fill (cr);
  cairo_restore (cr);
  cairo_pattern_destroy (pat);
  cairo_surface_destroy (s);
}

static void
text_at (cairo_t * cr, double x, double y, double size, gboolean bold,
    const gchar * text, double max_w)
{
  cairo_text_extents_t ext;
  double sz = size;

  cairo_select_font_face (cr, "Sans", CAIRO_FONT_SLANT_NORMAL,
      bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (cr, sz);
  cairo_text_extents (cr, text, &ext);
  if (max_w > 0 && ext.x_advance > max_w) {
    sz = size * max_w / ext.x_advance;
    cairo_set_font_size (cr, sz);
  }
  cairo_move_to (cr, x, y);
  cairo_show_text (cr, text);
}

/* colour of a result: green when sure, amber when not, red for no match */
static void
set_result_colour (cairo_t * cr, const Row * row, double alpha)
{
  if (!row->has_result || row->label < 0)
    cairo_set_source_rgba (cr, 0.95, 0.3, 0.25, alpha);
  else if (row->confidence >= 0.6)
    cairo_set_source_rgba (cr, 0.3, 0.9, 0.4, alpha);
  else
    cairo_set_source_rgba (cr, 1.0, 0.75, 0.2, alpha);
}

static void
draw_rounded (cairo_t * cr, double x, double y, double w, double h, double r)
{
  cairo_new_sub_path (cr);
  cairo_arc (cr, x + w - r, y + r, r, -G_PI / 2, 0);
  cairo_arc (cr, x + w - r, y + h - r, r, 0, G_PI / 2);
  cairo_arc (cr, x + r, y + h - r, r, G_PI / 2, G_PI);
  cairo_arc (cr, x + r, y + r, r, G_PI, 3 * G_PI / 2);
  cairo_close_path (cr);
}

typedef struct
{
  gboolean show_query;
  guint max_hits;
  GstCbirOverlayPosition position;
  guint scale;
  GstCbirOverlayPreprocess preprocess;
  gboolean draw_boxes;
} Settings;

/* The panel: one row per result:
 *   [query] | [hit 1] [hit 2] ... [hit k] | big label + confidence
 * with each hit's label and distance under it. */
static void
draw_panel (GstCbirOverlay * self, cairo_t * cr, const Settings * st,
    const Row * rows, guint n_rows, double fw, double fh)
{
  const double pad = 6, gap = 4;
  double c = 28.0 * st->scale, text_h = MAX (11.0, c / 7);
  double row_h = c + text_h + gap, label_w = MAX (c, 56);
  guint k = 0, i, r;
  double panel_w, panel_h, f, x0, y0, cols_w;
  GstCbirOverlayPosition pos;
  const CbirGallery *g = self->gallery;

  for (r = 0; r < n_rows; r++)
    k = MAX (k, MIN (rows[r].n_hits, st->max_hits));
  cols_w = (st->show_query ? c + 2 * gap : 0) + k * (c + gap);
  panel_w = pad + cols_w + gap + label_w + pad;
  panel_h = pad + n_rows * row_h + (n_rows - 1) * gap + pad;

  /* shrink to fit small frames */
  f = MIN (1.0, MIN ((fw - 8) / panel_w, (fh - 8) / panel_h));
  if (f <= 0)
    return;
  pos = st->position;
  if (pos == GST_CBIR_OVERLAY_POSITION_AUTO) {
    /* the corner whose panel covers the least of the boxes */
    double best = -1, covers[4];
    guint c, corner = 0;

    for (c = 0; c < 4; c++) {
      double px0 = (c & 1) ? fw - 4 - panel_w * f : 4;
      double py0 = (c & 2) ? fh - 4 - panel_h * f : 4;
      double px1 = px0 + panel_w * f, py1 = py0 + panel_h * f, cover = 0;

      for (r = 0; r < n_rows; r++) {
        const CbirRect *b = rows[r].has_box ? &rows[r].box :
            rows[r].has_ink_box ? &rows[r].ink_box : NULL;
        double ox, oy;
        if (!b)
          continue;
        /* the box and the label tag above it */
        ox = MIN (px1, b->x + b->width + 4.0) - MAX (px0, b->x - 4.0);
        oy = MIN (py1, b->y + b->height + 4.0) - MAX (py0, b->y - 30.0);
        if (ox > 0 && oy > 0)
          cover += ox * oy;
      }
      covers[c] = cover;
      if (best < 0 || cover < best) {
        best = cover;
        corner = c;
      }
    }
    /* hysteresis: stay in the last corner unless moving helps clearly,
     * so that the panel does not flicker on a live picture */
    if (self->last_corner < 4 && covers[self->last_corner] <= best + 0.05 *
        panel_w * panel_h * f * f)
      corner = self->last_corner;
    self->last_corner = corner;
    pos = corner == 0 ? GST_CBIR_OVERLAY_POSITION_TOP_LEFT :
        corner == 1 ? GST_CBIR_OVERLAY_POSITION_TOP_RIGHT :
        corner == 2 ? GST_CBIR_OVERLAY_POSITION_BOTTOM_LEFT :
        GST_CBIR_OVERLAY_POSITION_BOTTOM_RIGHT;
  }
  switch (pos) {
    case GST_CBIR_OVERLAY_POSITION_TOP_RIGHT:
      x0 = fw - 4 - panel_w * f;
      y0 = 4;
      break;
    case GST_CBIR_OVERLAY_POSITION_BOTTOM_LEFT:
      x0 = 4;
      y0 = fh - 4 - panel_h * f;
      break;
    case GST_CBIR_OVERLAY_POSITION_BOTTOM_RIGHT:
      x0 = fw - 4 - panel_w * f;
      y0 = fh - 4 - panel_h * f;
      break;
    default:
      x0 = 4;
      y0 = 4;
      break;
  }
  x0 = floor (x0);
  y0 = floor (y0);

  cairo_save (cr);
  cairo_translate (cr, x0, y0);
  cairo_scale (cr, f, f);

  draw_rounded (cr, 0, 0, panel_w, panel_h, 6);
  cairo_set_source_rgba (cr, 0.08, 0.08, 0.1, 0.78);
  cairo_fill (cr);

  for (r = 0; r < n_rows; r++) {
    const Row *row = &rows[r];
    double y = pad + r * (row_h + gap), x = pad;
    gchar buf[96], lab[64];

    if (st->show_query) {
      if (row->has_query) {
        draw_gray (cr, row->query, x, y, st->scale);
      } else {
        cairo_set_source_rgb (cr, 0, 0, 0);
        cairo_rectangle (cr, x, y, c, c);
        cairo_fill (cr);
      }
      cairo_set_source_rgba (cr, 1, 1, 1, 0.9);
      cairo_set_line_width (cr, 1);
      cairo_rectangle (cr, x - 0.5, y - 0.5, c + 1, c + 1);
      cairo_stroke (cr);
      cairo_set_source_rgb (cr, 0.85, 0.85, 0.85);
      if (n_rows > 1)
        g_snprintf (buf, sizeof (buf), "query %u", r + 1);
      else
        g_strlcpy (buf, "query", sizeof (buf));
      text_at (cr, x, y + c + text_h, text_h * 0.85, FALSE, buf, c);
      x += c + 2 * gap;
      /* separator */
      cairo_set_source_rgba (cr, 1, 1, 1, 0.35);
      cairo_move_to (cr, x - gap - 0.5, y);
      cairo_line_to (cr, x - gap - 0.5, y + c);
      cairo_stroke (cr);
    }

    for (i = 0; i < MIN (row->n_hits, st->max_hits); i++) {
      const guint8 *thumb = NULL;

      if (g && row->ids[i] < cbir_gallery_size (g))
        thumb = cbir_gallery_get_thumbnail (g, row->ids[i]);
      label_text (g, row->labels[i], NULL, lab, sizeof (lab));
      if (thumb) {
        draw_gray (cr, thumb, x, y, st->scale);
      } else {
        cairo_set_source_rgb (cr, 0.3, 0.3, 0.32);
        cairo_rectangle (cr, x, y, c, c);
        cairo_fill (cr);
        cairo_set_source_rgb (cr, 1, 1, 1);
        text_at (cr, x + c * 0.25, y + c * 0.72, c * 0.6, TRUE, lab, c * 0.7);
      }
      /* under it: the hit's label, coloured by agreement with the vote,
       * and its distance */
      {
        cairo_text_extents_t ext;

        if (row->labels[i] == row->label)
          cairo_set_source_rgb (cr, 0.3, 0.9, 0.4);
        else
          cairo_set_source_rgb (cr, 0.95, 0.45, 0.35);
        text_at (cr, x, y + c + text_h, text_h * 0.9, TRUE, lab, c / 2);
        cairo_text_extents (cr, lab, &ext);
        cairo_set_source_rgb (cr, 0.85, 0.85, 0.85);
        if (isfinite (row->distances[i]))
          g_snprintf (buf, sizeof (buf), "%.3g", row->distances[i]);
        else
          g_strlcpy (buf, "?", sizeof (buf));
        text_at (cr, x + MIN (ext.x_advance, c / 2) + text_h * 0.4,
            y + c + text_h, text_h * 0.85, FALSE, buf,
            c - MIN (ext.x_advance, c / 2) - text_h * 0.4);
      }
      x += c + gap;
    }
    x = pad + cols_w + gap;

    /* the voted label and its confidence */
    set_result_colour (cr, row, 1.0);
    if (!row->has_result) {
      text_at (cr, x, y + c * 0.55, c * 0.28, TRUE,
          row->not_searched ? "not searched" : row->has_box ? "no match" :
          "no digit", label_w);
    } else if (row->label < 0) {
      text_at (cr, x, y + c * 0.55, c * 0.28, TRUE, "no match", label_w);
      /* why: how like the gallery it was (below min-match-score, or the
       * gallery's examples of non-matches won the vote) */
      if (row->match_score >= 0) {
        cairo_set_source_rgb (cr, 0.85, 0.85, 0.85);
        g_snprintf (buf, sizeof (buf), "score %.2f", row->match_score);
        text_at (cr, x, y + c + text_h, text_h * 0.9, FALSE, buf, label_w);
      }
    } else {
      label_text (g, row->label, row->label_name, lab, sizeof (lab));
      text_at (cr, x, y + c * 0.8, c * 0.85, TRUE, lab, label_w);
      g_snprintf (buf, sizeof (buf), "%.0f%%", row->confidence * 100);
      text_at (cr, x, y + c + text_h, text_h * 1.1, TRUE, buf, label_w);
    }
  }
  cairo_restore (cr);
}

static void
draw_box (cairo_t * cr, const Row * row, guint index, gboolean numbered)
{
  const CbirRect *b = row->has_box ? &row->box : &row->ink_box;
  double lw = 3;
  gchar buf[96], lab[64];
  cairo_text_extents_t ext;

  set_result_colour (cr, row, 0.95);
  cairo_set_line_width (cr, lw);
  cairo_rectangle (cr, b->x - lw / 2, b->y - lw / 2, b->width + lw,
      b->height + lw);
  cairo_stroke (cr);

  if (row->has_result && row->label >= 0) {
    label_text (NULL, row->label, row->label_name, lab, sizeof (lab));
    if (numbered)
      g_snprintf (buf, sizeof (buf), "%u: %s %.0f%%", index + 1, lab,
          row->confidence * 100);
    else
      g_snprintf (buf, sizeof (buf), "%s %.0f%%", lab,
          row->confidence * 100);
  } else if (numbered) {
    g_snprintf (buf, sizeof (buf), "%u: no match", index + 1);
  } else {
    g_strlcpy (buf, "no match", sizeof (buf));
  }
  cairo_select_font_face (cr, "Sans", CAIRO_FONT_SLANT_NORMAL,
      CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size (cr, 18);
  cairo_text_extents (cr, buf, &ext);
  {
    double tx = b->x, ty = b->y >= 26 ? b->y - 6.0 : b->y + b->height + 22.0;
    cairo_rectangle (cr, tx - 2, ty - 18, ext.x_advance + 6, 23);
    cairo_fill (cr);
    cairo_set_source_rgb (cr, 0, 0, 0);
    cairo_move_to (cr, tx + 1, ty);
    cairo_show_text (cr, buf);
  }
}

/* luma of the native 32-bit frame (0x..RRGGBB words) into self->luma */
static const guint8 *
frame_luma (GstCbirOverlay * self, GstVideoFrame * frame)
{
  guint w = GST_VIDEO_FRAME_WIDTH (frame), h = GST_VIDEO_FRAME_HEIGHT (frame);
  const guint8 *data = GST_VIDEO_FRAME_PLANE_DATA (frame, 0);
  gint stride = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0);
  guint x, y;

  if (self->luma_size < (gsize) w * h) {
    g_free (self->luma);
    self->luma = g_malloc ((gsize) w * h);
    self->luma_size = (gsize) w * h;
  }
  for (y = 0; y < h; y++) {
    const guint32 *row = (const guint32 *) (data + (gsize) y * stride);
    guint8 *out = self->luma + (gsize) y * w;
    for (x = 0; x < w; x++) {
      guint32 v = row[x];
      out[x] = (guint8) ((((v >> 16) & 0xff) * 77 + ((v >> 8) & 0xff) * 150 +
              (v & 0xff) * 29) >> 8);
    }
  }
  return self->luma;
}

/* The row's query picture and ink box from the embedding cbirencode
 * attached for its region (or the whole frame), when it carries them. */
static void
row_take_input (Row * row, GstBuffer * buf, guint w, guint h)
{
  const GstCbirEmbeddingMeta *e =
      gst_buffer_get_cbir_embedding_meta_for_region (buf, row->region_id);

  if (e == NULL)
    return;
  if (e->input && e->input_width > 0 && e->input_height > 0) {
    cbir_preprocess_scale (e->input, e->input_width, e->input_height,
        e->input_width, 28, 28, row->query);
    row->has_query = TRUE;
  }
  /* the ink box, from the encoded frame's pixels to this frame's */
  if (!row->has_box && e->ink_width > 0 && e->ink_height > 0 &&
      e->ink_x >= 0 && e->ink_y >= 0 && e->frame_width > 0 &&
      e->frame_height > 0) {
    guint64 x = (guint64) e->ink_x * w / e->frame_width;
    guint64 y = (guint64) e->ink_y * h / e->frame_height;
    guint64 bw = MAX (1, (guint64) e->ink_width * w / e->frame_width);
    guint64 bh = MAX (1, (guint64) e->ink_height * h / e->frame_height);

    if (x < w && y < h) {
      row->ink_box.x = (guint) x;
      row->ink_box.y = (guint) y;
      row->ink_box.width = (guint) MIN (bw, w - x);
      row->ink_box.height = (guint) MIN (bh, h - y);
      row->has_ink_box = TRUE;
    }
  }
}

static GstFlowReturn
gst_cbir_overlay_transform_frame_ip (GstVideoFilter * filter,
    GstVideoFrame * frame)
{
  GstCbirOverlay *self = GST_CBIR_OVERLAY (filter);
  GstBuffer *buf = frame->buffer;
  guint w = GST_VIDEO_FRAME_WIDTH (frame), h = GST_VIDEO_FRAME_HEIGHT (frame);
  Settings st;
  Row *rows;
  guint n_rows = 0, r;
  gpointer state = NULL;
  GstMeta *meta;
  cairo_surface_t *surface;
  cairo_t *cr;
  const guint8 *luma = NULL;

  GST_OBJECT_LOCK (self);
  st.show_query = self->show_query;
  st.max_hits = self->max_hits;
  st.position = self->position;
  st.scale = self->scale;
  st.preprocess = self->preprocess;
  st.draw_boxes = self->draw_boxes;
  GST_OBJECT_UNLOCK (self);

  rows = g_new0 (Row, MAX_ROWS);

  /* per-region results */
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) != NULL &&
      n_rows < MAX_ROWS) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) meta;
    GstStructure *s = gst_video_region_of_interest_meta_get_param (roi,
        GST_CBIR_RESULT_STRUCTURE_NAME);
    Row *row = &rows[n_rows];

    if (s == NULL && roi->roi_type != g_quark_from_static_string ("digit"))
      continue;
    if (s)
      row_from_structure (row, s);
    row->has_box = TRUE;
    row->region_id = roi->id;
    row->box.x = MIN (roi->x, w);
    row->box.y = MIN (roi->y, h);
    row->box.width = MIN (roi->w, w - row->box.x);
    row->box.height = MIN (roi->h, h - row->box.y);
    n_rows++;
  }
  /* or one for the whole frame */
  if (n_rows == 0) {
    GstCbirResultMeta *m = (GstCbirResultMeta *) gst_buffer_get_meta (buf,
        gst_cbir_result_meta_api_get_type ());
    const GstStructure *s = gst_buffer_get_cbir_result_structure (buf);

    if (m)
      row_from_meta (&rows[0], m);
    if (s) {
      const gchar *name = gst_structure_get_string (s, "label-name");
      if (name)
        g_strlcpy (rows[0].label_name, name, sizeof (rows[0].label_name));
    }
    /* encoded but unsearched (no cbirsearch upstream): not "no digit" */
    rows[0].not_searched = !m && gst_buffer_get_meta (buf,
        gst_cbir_embedding_meta_api_get_type ()) != NULL;
    rows[0].region_id = -1;
    n_rows = 1;
  } else {
    /* digit regions and no result on any: no search ran on this frame */
    gboolean any = FALSE;
    for (r = 0; r < n_rows; r++)
      any |= rows[r].has_result;
    for (r = 0; r < n_rows && !any; r++)
      rows[r].not_searched = TRUE;
  }

  /* the query pictures: what cbirencode encoded, carried by the
   * embedding; recomputed from the frame only for a row without it */
  for (r = 0; r < n_rows; r++)
    row_take_input (&rows[r], buf, w, h);
  if (st.show_query && st.preprocess != GST_CBIR_OVERLAY_PREPROCESS_ENCODER) {
    g_autoptr (CbirInkMap) map = NULL;

    for (r = 0; r < n_rows; r++) {
      const CbirRect *b = &rows[r].box;

      if (rows[r].has_query)
        continue;
      if (luma == NULL)
        luma = frame_luma (self, frame);
      if (st.preprocess == GST_CBIR_OVERLAY_PREPROCESS_MNIST) {
        CbirPreprocessInfo info;

        if (map == NULL && (map = cbir_ink_map_new (luma, w, h, w)) == NULL)
          break;
        rows[r].has_query = cbir_ink_map_normalise (map,
            rows[r].has_box ? b : NULL, rows[r].query, &info);
        /* whole frame: show where the ink was found */
        if (rows[r].has_query && !rows[r].has_box) {
          rows[r].ink_box = info.bbox;
          rows[r].has_ink_box = TRUE;
        }
      } else {
        if (rows[r].has_box && b->width > 0 && b->height > 0)
          cbir_preprocess_scale (luma + (gsize) b->y * w + b->x, b->width,
              b->height, w, 28, 28, rows[r].query);
        else
          cbir_preprocess_scale (luma, w, h, w, 28, 28, rows[r].query);
        rows[r].has_query = TRUE;
      }
    }
  }

  surface = cairo_image_surface_create_for_data (GST_VIDEO_FRAME_PLANE_DATA
      (frame, 0), GST_VIDEO_FRAME_FORMAT (frame) == FORMAT_RGB24 ?
      CAIRO_FORMAT_RGB24 : CAIRO_FORMAT_ARGB32, w, h,
      GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0));
  cr = cairo_create (surface);

  if (st.draw_boxes)
    for (r = 0; r < n_rows; r++)
      if (rows[r].has_box || rows[r].has_ink_box)
        draw_box (cr, &rows[r], r, n_rows > 1);
  draw_panel (self, cr, &st, rows, n_rows, w, h);

  if (cairo_status (cr) != CAIRO_STATUS_SUCCESS)
    GST_WARNING_OBJECT (self, "cairo: %s",
        cairo_status_to_string (cairo_status (cr)));
  cairo_destroy (cr);
  cairo_surface_flush (surface);
  cairo_surface_destroy (surface);
  g_free (rows);
  return GST_FLOW_OK;
}

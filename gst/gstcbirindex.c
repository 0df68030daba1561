/* gst-cbir: cbirindex, the offline indexer: frames -> gallery file.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * SECTION:element-cbirindex
 * @title: cbirindex
 *
 * A sink that collects the embeddings cbirencode attached to GRAY8 frames,
 * with their labels (from cbiridxsrc's GstCbirSourceMeta, else the fixed
 * #GstCbirIndex:label) and, with #GstCbirIndex:thumbnails, a 28x28
 * thumbnail of each frame, and writes them as a gallery file at EOS. The
 * file is written atomically (temporary file + rename): a flush, an error
 * or a stop before EOS leaves no file (and an existing one untouched).
 * With #GstCbirIndex:append the items of an existing gallery (same model)
 * are kept and the new ones added. With #GstCbirIndex:dba = K the gallery
 * is written with database-side augmentation: each float code replaced
 * by the weighted sum (max (cos, 0)^3) of itself and its K nearest gallery
 * codes (the raw codes are kept in the file too, so appending re-runs the
 * augmentation over all items; appending with dba=0 keeps the file's own
 * setting). The neighbours follow the gallery's metric (l2 unless the
 * appended file says otherwise). With #GstCbirIndex:graph (the default)
 * a float gallery is written with its mutual k-NN graph
 * (#GstCbirIndex:graph-k neighbours, 0 = round (sqrt (N) / 5) in 5..100),
 * over which cbirsearch diffuses queries by default; bit-code galleries
 * get none. Appending rebuilds the graph over all items (a full build:
 * about 0.3 s for 9,000 items, see the README for 60,000); graph=false
 * writes the file without one. Every #GstCbirIndex:progress-interval
 * frames, and once more at EOS with "done" = TRUE, it posts an element
 * message "cbir-index-progress" ("count": items added so far, "total":
 * items in the gallery, "invalid": frames not indexed because their code
 * held NaN or infinite values, "location", "done"). Such codes (a broken
 * model) are never indexed: the first one posts a warning, and a stream
 * whose codes were all invalid is an error with nothing written. Frames
 * without an embedding (a camera frame in which cbirencode
 * preprocess=mnist found no digit) are skipped the same way and counted in
 * "skipped"; a frame with digit regions (cbirencode regions=digits) adds
 * one item per digit, with the digit's box as thumbnail and "#r<region id>"
 * appended to its id. A stream without any embedding is an error (no cbirencode
 * upstream). A #GstCbirIndex:location that cannot be written is an error
 * when the element starts, before any frame is encoded.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 cbiridxsrc images=train-images-idx3-ubyte.gz \
 *     labels=train-labels-idx1-ubyte.gz ! cbirencode model=model.safetensors ! \
 *     cbirindex location=gallery.safetensors
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirindex.h"
#include "gstcbirutils.h"
#include "gstcbirmeta.h"

#include <string.h>
#include <gst/video/video.h>
#include <cbir/gallery.h>
#include <cbir/search.h>
#include <cbir/preprocess.h>

GST_DEBUG_CATEGORY_STATIC (gst_cbir_index_debug);
#define GST_CAT_DEFAULT gst_cbir_index_debug

#define THUMB_W 28
#define THUMB_H 28

#define DEFAULT_LOCATION NULL
#define DEFAULT_APPEND FALSE
#define DEFAULT_LABEL -1
#define DEFAULT_THUMBNAILS TRUE
#define DEFAULT_PROGRESS_INTERVAL 1000
#define DEFAULT_DBA 0
#define DEFAULT_GRAPH TRUE
#define DEFAULT_GRAPH_K 0
#define DEFAULT_GRAPH_RANK 0

enum
{
  PROP_0,
  PROP_LOCATION,
  PROP_APPEND,
  PROP_LABEL,
  PROP_THUMBNAILS,
  PROP_PROGRESS_INTERVAL,
  PROP_DBA,
  PROP_GRAPH,
  PROP_GRAPH_K,
  PROP_GRAPH_RANK,
  PROP_LABEL_NAMES,
};

struct _GstCbirIndex
{
  GstBaseSink parent;

  /* properties (object lock) */
  gchar *location;
  gboolean append;
  gint label;
  gboolean thumbnails;
  guint progress_interval;
  guint dba;
  gboolean graph;
  guint graph_k;
  guint graph_rank;
  gchar *label_names;

  /* streaming state */
  gchar *cur_location;
  gboolean cur_append;
  gboolean cur_thumbnails;
  guint cur_dba;
  gboolean cur_graph;
  guint cur_graph_k;
  guint cur_graph_rank;
  gchar *cur_label_names;
  CbirGalleryBuilder *builder;
  const gchar *fingerprint;     /* interned */
  guint dim;
  guint n_added;
  guint n_invalid;              /* codes with NaN or infinity: not indexed */
  guint n_skipped;              /* frames without an embedding */
  GstVideoInfo info;
  guint8 thumb[THUMB_W * THUMB_H];
};

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE ("GRAY8")

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (VIDEO_CAPS));

#define gst_cbir_index_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstCbirIndex, gst_cbir_index, GST_TYPE_BASE_SINK,
    GST_DEBUG_CATEGORY_INIT (gst_cbir_index_debug, "cbirindex", 0,
        "cbir gallery indexer"));
GST_ELEMENT_REGISTER_DEFINE (cbirindex, "cbirindex", GST_RANK_NONE,
    GST_TYPE_CBIR_INDEX);

static void gst_cbir_index_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec);
static void gst_cbir_index_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec);
static void gst_cbir_index_finalize (GObject * object);
static gboolean gst_cbir_index_start (GstBaseSink * sink);
static gboolean gst_cbir_index_stop (GstBaseSink * sink);
static gboolean gst_cbir_index_set_caps (GstBaseSink * sink, GstCaps * caps);
static gboolean gst_cbir_index_event (GstBaseSink * sink, GstEvent * event);
static GstFlowReturn gst_cbir_index_render (GstBaseSink * sink,
    GstBuffer * buf);

static void
gst_cbir_index_class_init (GstCbirIndexClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSinkClass *sink_class = GST_BASE_SINK_CLASS (klass);

  gobject_class->set_property = gst_cbir_index_set_property;
  gobject_class->get_property = gst_cbir_index_get_property;
  gobject_class->finalize = gst_cbir_index_finalize;

  g_object_class_install_property (gobject_class, PROP_LOCATION,
      g_param_spec_string ("location", "Location",
          "Gallery file to write at EOS (safetensors)", DEFAULT_LOCATION,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_APPEND,
      g_param_spec_boolean ("append", "Append",
          "Keep the items of an existing gallery file at location (made by "
          "the same model) and add the new ones", DEFAULT_APPEND,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_LABEL,
      g_param_spec_int ("label", "Label",
          "Label for frames that carry none (no cbiridxsrc labels); "
          "-1 = unlabelled, -2 = an example of what is not a match "
          "(cbirsearch answers no match when such items win the vote)",
          CBIR_LABEL_NOT_A_MATCH, G_MAXINT, DEFAULT_LABEL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_LABEL_NAMES,
      g_param_spec_string ("label-names", "Label names",
          "Names of the labels 0, 1, ..., comma-separated (e.g. the "
          "Fashion-MNIST classes): cbirsearch reports each hit's and the "
          "vote's name; with append, replaces the gallery's names", NULL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_THUMBNAILS,
      g_param_spec_boolean ("thumbnails", "Thumbnails",
          "Store a 28x28 thumbnail of every frame in the gallery",
          DEFAULT_THUMBNAILS, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_PROGRESS_INTERVAL,
      g_param_spec_uint ("progress-interval", "Progress interval",
          "Post a \"cbir-index-progress\" message every this many frames "
          "(0 = only at EOS)", 0, G_MAXUINT, DEFAULT_PROGRESS_INTERVAL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_GRAPH,
      g_param_spec_boolean ("graph", "k-NN graph",
          "Write the gallery's mutual k-NN graph (float codes), which "
          "cbirsearch uses to re-rank by diffusion", DEFAULT_GRAPH,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_GRAPH_K,
      g_param_spec_uint ("graph-k", "Graph k",
          "Neighbours per item in the k-NN graph; 0 = round(sqrt(N)/5) "
          "clamped to 5..100, N the gallery's size", 0, CBIR_GRAPH_MAX_K,
          DEFAULT_GRAPH_K, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_GRAPH_RANK,
      g_param_spec_uint ("graph-rank", "Graph rank",
          "Also store the graph's R largest eigenpairs: cbirsearch then "
          "diffuses in this low-rank form (about 10x faster, slightly lower "
          "mAP; see the README); 0 = the exact solver", 0, 4096,
          DEFAULT_GRAPH_RANK, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_DBA,
      g_param_spec_uint ("dba", "DBA",
          "Database-side augmentation at EOS: replace each float code by the "
          "weighted sum (max(cos,0)^3) of itself and its N nearest gallery "
          "codes (raw codes kept in the file); 0 = off (an appended file "
          "keeps its own)", 0, 1024, DEFAULT_DBA, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_set_static_metadata (element_class, "CBIR gallery indexer",
      "Sink/Analyzer/Video",
      "Collects the embeddings of frames and writes a gallery file at EOS",
      "gst-cbir developers");

  sink_class->start = GST_DEBUG_FUNCPTR (gst_cbir_index_start);
  sink_class->stop = GST_DEBUG_FUNCPTR (gst_cbir_index_stop);
  sink_class->set_caps = GST_DEBUG_FUNCPTR (gst_cbir_index_set_caps);
  sink_class->event = GST_DEBUG_FUNCPTR (gst_cbir_index_event);
  sink_class->render = GST_DEBUG_FUNCPTR (gst_cbir_index_render);
}

static void
gst_cbir_index_init (GstCbirIndex * self)
{
  self->location = g_strdup (DEFAULT_LOCATION);
  self->append = DEFAULT_APPEND;
  self->label = DEFAULT_LABEL;
  self->thumbnails = DEFAULT_THUMBNAILS;
  self->progress_interval = DEFAULT_PROGRESS_INTERVAL;
  self->dba = DEFAULT_DBA;
  self->graph = DEFAULT_GRAPH;
  self->graph_k = DEFAULT_GRAPH_K;
  self->graph_rank = DEFAULT_GRAPH_RANK;

  /* offline indexing: as fast as the frames come */
  gst_base_sink_set_sync (GST_BASE_SINK (self), FALSE);
}

static void
gst_cbir_index_finalize (GObject * object)
{
  GstCbirIndex *self = GST_CBIR_INDEX (object);

  g_free (self->location);
  g_free (self->cur_location);
  g_free (self->label_names);
  g_free (self->cur_label_names);
  g_clear_pointer (&self->builder, cbir_gallery_builder_free);

  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_cbir_index_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstCbirIndex *self = GST_CBIR_INDEX (object);

  GST_OBJECT_LOCK (self);
  if (gst_cbir_refuse_if_running_unlocked (GST_ELEMENT (self), pspec))
    return;
  switch (prop_id) {
    case PROP_LOCATION:
      g_free (self->location);
      self->location = g_value_dup_string (value);
      break;
    case PROP_APPEND:
      self->append = g_value_get_boolean (value);
      break;
    case PROP_LABEL:
      self->label = g_value_get_int (value);
      break;
    case PROP_LABEL_NAMES:
      g_free (self->label_names);
      self->label_names = g_value_dup_string (value);
      break;
    case PROP_THUMBNAILS:
      self->thumbnails = g_value_get_boolean (value);
      break;
    case PROP_PROGRESS_INTERVAL:
      self->progress_interval = g_value_get_uint (value);
      break;
    case PROP_DBA:
      self->dba = g_value_get_uint (value);
      break;
    case PROP_GRAPH:
      self->graph = g_value_get_boolean (value);
      break;
    case PROP_GRAPH_K:
      self->graph_k = g_value_get_uint (value);
      break;
    case PROP_GRAPH_RANK:
      self->graph_rank = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_cbir_index_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstCbirIndex *self = GST_CBIR_INDEX (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_LOCATION:
      g_value_set_string (value, self->location);
      break;
    case PROP_APPEND:
      g_value_set_boolean (value, self->append);
      break;
    case PROP_LABEL:
      g_value_set_int (value, self->label);
      break;
    case PROP_LABEL_NAMES:
      g_value_set_string (value, self->label_names);
      break;
    case PROP_THUMBNAILS:
      g_value_set_boolean (value, self->thumbnails);
      break;
    case PROP_PROGRESS_INTERVAL:
      g_value_set_uint (value, self->progress_interval);
      break;
    case PROP_DBA:
      g_value_set_uint (value, self->dba);
      break;
    case PROP_GRAPH:
      g_value_set_boolean (value, self->graph);
      break;
    case PROP_GRAPH_K:
      g_value_set_uint (value, self->graph_k);
      break;
    case PROP_GRAPH_RANK:
      g_value_set_uint (value, self->graph_rank);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_cbir_index_start (GstBaseSink * sink)
{
  GstCbirIndex *self = GST_CBIR_INDEX (sink);
  g_autoptr (GError) err = NULL;

  GST_OBJECT_LOCK (self);
  g_free (self->cur_location);
  self->cur_location = g_strdup (self->location);
  self->cur_append = self->append;
  self->cur_thumbnails = self->thumbnails;
  g_free (self->cur_label_names);
  self->cur_label_names = g_strdup (self->label_names);
  self->cur_dba = self->dba;
  self->cur_graph = self->graph;
  self->cur_graph_k = self->graph_k;
  self->cur_graph_rank = self->graph_rank;
  GST_OBJECT_UNLOCK (self);

  if (self->cur_location == NULL || *self->cur_location == '\0')
    goto no_location;
  /* an unwritable location fails now, not after all the encoding */
  if (!cbir_gallery_check_writable (self->cur_location, &err))
    goto not_writable;

  g_clear_pointer (&self->builder, cbir_gallery_builder_free);
  self->fingerprint = NULL;
  self->n_added = 0;
  self->n_invalid = 0;
  self->n_skipped = 0;
  gst_video_info_init (&self->info);
  return TRUE;

  /* ERRORS */
not_writable:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
        ("Cannot write gallery \"%s\": %s", self->cur_location, err->message),
        (NULL));
    return FALSE;
  }
no_location:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No gallery file name specified for writing (property "
            "\"location\")."), (NULL));
    return FALSE;
  }
}

static gboolean
gst_cbir_index_stop (GstBaseSink * sink)
{
  GstCbirIndex *self = GST_CBIR_INDEX (sink);

  /* without EOS nothing is written */
  if (self->builder && self->n_added > 0)
    GST_INFO_OBJECT (self, "stopped before EOS: %u items dropped, %s not "
        "written", self->n_added, self->cur_location);
  g_clear_pointer (&self->builder, cbir_gallery_builder_free);
  self->n_added = 0;
  self->n_invalid = 0;
  self->n_skipped = 0;
  return TRUE;
}

static gboolean
gst_cbir_index_set_caps (GstBaseSink * sink, GstCaps * caps)
{
  GstCbirIndex *self = GST_CBIR_INDEX (sink);

  return gst_video_info_from_caps (&self->info, caps);
}

static void
post_progress (GstCbirIndex * self, gboolean done)
{
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self),
          gst_structure_new ("cbir-index-progress",
              "count", G_TYPE_UINT, self->n_added,
              "invalid", G_TYPE_UINT, self->n_invalid,
              "skipped", G_TYPE_UINT, self->n_skipped,
              "total", G_TYPE_UINT, self->builder ?
              cbir_gallery_builder_size (self->builder) : 0,
              "location", G_TYPE_STRING, self->cur_location,
              "done", G_TYPE_BOOLEAN, done, NULL)));
}

static gboolean
write_gallery (GstCbirIndex * self)
{
  g_autoptr (GError) err = NULL;

  if (self->n_added == 0 && self->n_invalid == 0 && self->n_skipped > 0) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT,
        ("No frame indexed: none of the %u frames had an embedding (is "
            "cbirencode upstream, and did it find digits?); gallery \"%s\" "
            "not written.", self->n_skipped, self->cur_location), (NULL));
    return FALSE;
  }
  if (self->builder == NULL) {
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("No frames were indexed: gallery \"%s\" not written.",
            self->cur_location), (NULL));
    return TRUE;
  }
  if (self->n_added == 0 && self->n_invalid > 0) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("No frame indexed: the codes of all %u frames held NaN or infinite "
            "values (is the model broken?); gallery \"%s\" not written.",
            self->n_invalid, self->cur_location), (NULL));
    return FALSE;
  }
  if (!cbir_gallery_builder_write (self->builder, self->cur_location, &err)) {
    GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
        ("Could not write gallery \"%s\": %s", self->cur_location,
            err->message), ("%s", err->message));
    return FALSE;
  }
  GST_INFO_OBJECT (self, "wrote %s: %u items (%u new)", self->cur_location,
      cbir_gallery_builder_size (self->builder), self->n_added);
  post_progress (self, TRUE);
  g_clear_pointer (&self->builder, cbir_gallery_builder_free);
  return TRUE;
}

static gboolean
gst_cbir_index_event (GstBaseSink * sink, GstEvent * event)
{
  GstCbirIndex *self = GST_CBIR_INDEX (sink);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_EOS:
      if (!write_gallery (self)) {
        gst_event_unref (event);
        return FALSE;
      }
      break;
    case GST_EVENT_FLUSH_STOP:
      /* a flush drops what was collected: the gallery is of one stream */
      GST_DEBUG_OBJECT (self, "flush: dropping %u items", self->n_added);
      g_clear_pointer (&self->builder, cbir_gallery_builder_free);
      self->fingerprint = NULL;
      self->n_added = 0;
      self->n_invalid = 0;
      self->n_skipped = 0;
  self->n_skipped = 0;
      break;
    default:
      break;
  }
  return GST_BASE_SINK_CLASS (parent_class)->event (sink, event);
}

static gboolean
make_builder (GstCbirIndex * self, GstCbirEmbeddingMeta * emb)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGalleryBuilder) b = NULL;

  b = cbir_gallery_builder_new (emb->model_fingerprint, emb->code_type,
      emb->dim, self->cur_thumbnails);
  if (self->cur_dba > 0 && !cbir_gallery_builder_set_dba (b, self->cur_dba,
          CBIR_DBA_DEFAULT_ALPHA, &err)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot augment the gallery (dba=%u) of %s codes: %s",
            self->cur_dba, cbir_code_type_to_string (emb->code_type),
            err->message), ("%s", err->message));
    return FALSE;
  }
  if (emb->code_type == CBIR_CODE_FLOAT &&
      !cbir_gallery_builder_set_graph (b, self->cur_graph, self->cur_graph_k,
          CBIR_GRAPH_DEFAULT_POWER, &err)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot build the k-NN graph (graph-k=%u): %s", self->cur_graph_k,
            err->message), ("%s", err->message));
    return FALSE;
  }
  if (emb->code_type == CBIR_CODE_FLOAT && self->cur_graph)
    cbir_gallery_builder_set_graph_rank (b, self->cur_graph_rank);
  if (emb->code_type != CBIR_CODE_FLOAT && self->cur_graph)
    GST_INFO_OBJECT (self, "bit codes: the gallery gets no k-NN graph");
  if (self->cur_append &&
      g_file_test (self->cur_location, G_FILE_TEST_EXISTS) &&
      !cbir_gallery_builder_load_existing (b, self->cur_location, &err)) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
        ("Cannot append to gallery \"%s\": %s", self->cur_location,
            err->message), ("%s", err->message));
    return FALSE;
  }
  if (self->cur_label_names && *self->cur_label_names) {
    g_auto (GStrv) names = g_strsplit (self->cur_label_names, ",", -1);

    cbir_gallery_builder_set_label_names (b, (const gchar * const *) names,
        g_strv_length (names));
  }
  self->builder = g_steal_pointer (&b);
  self->fingerprint = emb->model_fingerprint;
  self->dim = emb->dim;
  return TRUE;
}

/* self->thumb: the 28x28 picture of an item, the whole frame or the box
 * of the digit region `region_id` (-1: whole frame) */
static void
thumbnail (GstCbirIndex * self, GstVideoFrame * frame, GstBuffer * buf,
    gint region_id)
{
  const guint8 *data = GST_VIDEO_FRAME_PLANE_DATA (frame, 0);
  gint stride = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0);
  guint fw = GST_VIDEO_FRAME_WIDTH (frame), fh = GST_VIDEO_FRAME_HEIGHT (frame);
  guint x = 0, y = 0, w = fw, h = fh;
  GstVideoRegionOfInterestMeta *roi = region_id >= 0 ?
      gst_buffer_get_video_region_of_interest_meta_id (buf, region_id) : NULL;

  if (roi && roi->x < fw && roi->y < fh && roi->w > 0 && roi->h > 0) {
    x = roi->x;
    y = roi->y;
    w = MIN (roi->w, fw - x);
    h = MIN (roi->h, fh - y);
  }
  cbir_preprocess_scale (data + (gsize) y * stride + x, w, h, stride,
      THUMB_W, THUMB_H, self->thumb);
}

/* A code with NaN or infinity: never indexed (it would be every query's
 * nearest item, or none's); counted in the progress messages' "invalid" */
static void
invalid_code (GstCbirIndex * self, GstBuffer * buf)
{
  if (self->n_invalid++ == 0)
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("A frame's code holds NaN or infinite values (is the model "
            "broken?): not indexed; further ones are counted in the "
            "progress messages' \"invalid\" field."),
        ("buffer %" GST_TIME_FORMAT, GST_TIME_ARGS (GST_BUFFER_PTS (buf))));
}

static GstFlowReturn
gst_cbir_index_render (GstBaseSink * sink, GstBuffer * buf)
{
  GstCbirIndex *self = GST_CBIR_INDEX (sink);
  GstCbirEmbeddingMeta *emb;
  GstCbirSourceMeta *src;
  g_autofree gchar *id = NULL;
  gpointer state = NULL;
  GstVideoFrame frame;
  gboolean mapped = FALSE;
  guint n_emb = 0;
  gint32 label;
  guint interval;

  src = (GstCbirSourceMeta *) gst_buffer_get_meta (buf,
      gst_cbir_source_meta_api_get_type ());
  GST_OBJECT_LOCK (self);
  label = self->label;
  interval = self->progress_interval;
  GST_OBJECT_UNLOCK (self);
  if (src && src->label >= 0)
    label = src->label;
  if (src && src->source) {
    g_autofree gchar *base = g_path_get_basename (src->source);
    id = g_strdup_printf ("%s:%" G_GUINT64_FORMAT, base, src->index);
  }

  /* every embedding: the whole frame's, or one per digit region
   * (cbirencode regions=digits), each with its own thumbnail */
  while ((emb = (GstCbirEmbeddingMeta *) gst_buffer_iterate_meta_filtered
          (buf, &state, gst_cbir_embedding_meta_api_get_type ()))) {
    g_autofree gchar *item_id = NULL;
    const guint8 *thumb = NULL;

    n_emb++;
    if (self->builder == NULL) {
      if (!make_builder (self, emb))
        goto error;
    } else if (emb->model_fingerprint != self->fingerprint ||
        emb->dim != self->dim) {
      goto model_changed;
    }
    if (self->cur_thumbnails) {
      if (!mapped && (GST_VIDEO_INFO_FORMAT (&self->info) !=
              GST_VIDEO_FORMAT_GRAY8 || !gst_video_frame_map (&frame,
                  &self->info, buf, GST_MAP_READ)))
        goto map_failed;
      mapped = TRUE;
      thumbnail (self, &frame, buf, emb->region_id);
      thumb = self->thumb;
    }
    if (emb->region_id >= 0)
      item_id = g_strdup_printf ("%s#r%d", id ? id : "", emb->region_id);
    if (!cbir_gallery_builder_add (self->builder, emb->vector, label, thumb,
            emb->region_id >= 0 ? item_id : id)) {
      invalid_code (self, buf);
      continue;
    }
    self->n_added++;
    if (interval > 0 && self->n_added % interval == 0)
      post_progress (self, FALSE);
  }
  if (mapped)
    gst_video_frame_unmap (&frame);
  if (n_emb == 0)
    goto no_embedding;
  return GST_FLOW_OK;

error:
  if (mapped)
    gst_video_frame_unmap (&frame);
  return GST_FLOW_ERROR;

no_embedding:
  {
    /* a camera frame with no digit (cbirencode preprocess=mnist) */
    if (self->n_skipped++ == 0)
      GST_ELEMENT_WARNING (self, STREAM, FORMAT,
          ("A frame without an embedding was not indexed (is cbirencode "
              "upstream? with preprocess=mnist, frames without a digit "
              "have none); further ones are counted in the progress "
              "messages' \"skipped\" field."),
          ("buffer %" GST_TIME_FORMAT, GST_TIME_ARGS (GST_BUFFER_PTS (buf))));
    return GST_FLOW_OK;
  }

  /* ERRORS */
model_changed:
  {
    if (mapped)
      gst_video_frame_unmap (&frame);
    GST_ELEMENT_ERROR (self, STREAM, FORMAT,
        ("Frames encoded by two models (%s, then %s): one gallery holds "
            "codes of one model.", self->fingerprint,
            emb->model_fingerprint), (NULL));
    return GST_FLOW_ERROR;
  }
map_failed:
  {
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("Could not map a frame for its thumbnail."), (NULL));
    return GST_FLOW_ERROR;
  }
}

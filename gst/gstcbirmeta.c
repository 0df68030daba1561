/* gst-cbir: the plugin's metadata (source, embedding, result).
 *
 * Modelled on GstAudioLevelMeta (gst-plugins-base gstaudiometa.c): an API
 * type registered with NO tags, so that GstBaseTransform-based elements
 * (queue, tee, videoconvert, videoscale...) copy the meta, and a transform
 * that handles GST_META_TRANSFORM_IS_COPY (and also the video scale
 * transform, where nothing in our metas depends on the frame size).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirmeta.h"

#include <string.h>
#include <gst/video/video.h>

static const gchar *no_tags[] = { NULL };

static GType
register_api (const gchar * name)
{
  return gst_meta_api_type_register (name, no_tags);
}

/* ---- source meta ---- */

GType
gst_cbir_source_meta_api_get_type (void)
{
  static GType type = 0;

  if (g_once_init_enter (&type)) {
    GType t = register_api (GST_CBIR_SOURCE_META_API_NAME);
    g_once_init_leave (&type, t);
  }
  return type;
}

static gboolean
source_meta_init (GstMeta * meta, gpointer params, GstBuffer * buffer)
{
  GstCbirSourceMeta *m = (GstCbirSourceMeta *) meta;

  m->index = 0;
  m->label = -1;
  m->source = NULL;
  return TRUE;
}

static gboolean
source_meta_transform (GstBuffer * dest, GstMeta * meta, GstBuffer * buffer,
    GQuark type, gpointer data)
{
  GstCbirSourceMeta *m = (GstCbirSourceMeta *) meta;

  /* Copies and scales: the meta describes the picture, not its pixels. */
  if (!GST_META_TRANSFORM_IS_COPY (type) &&
      type != g_quark_from_static_string ("gst-video-scale"))
    return FALSE;
  if (gst_buffer_get_meta (dest, gst_cbir_source_meta_api_get_type ()))
    return TRUE;
  return gst_buffer_add_cbir_source_meta (dest, m->index, m->label,
      m->source) != NULL;
}

const GstMetaInfo *
gst_cbir_source_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter (&info)) {
    const GstMetaInfo *i =
        gst_meta_register (gst_cbir_source_meta_api_get_type (),
        "GstCbirSourceMeta", sizeof (GstCbirSourceMeta), source_meta_init,
        NULL, source_meta_transform);
    g_once_init_leave (&info, i);
  }
  return info;
}

GstCbirSourceMeta *
gst_buffer_add_cbir_source_meta (GstBuffer * buffer, guint64 index,
    gint32 label, const gchar * source)
{
  GstCbirSourceMeta *m;

  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  m = (GstCbirSourceMeta *) gst_buffer_add_meta (buffer,
      gst_cbir_source_meta_get_info (), NULL);
  if (!m)
    return NULL;
  m->index = index;
  m->label = label;
  m->source = source ? g_intern_string (source) : NULL;
  return m;
}

/* ---- embedding meta ---- */

GType
gst_cbir_embedding_meta_api_get_type (void)
{
  static GType type = 0;

  if (g_once_init_enter (&type)) {
    GType t = register_api (GST_CBIR_EMBEDDING_META_API_NAME);
    g_once_init_leave (&type, t);
  }
  return type;
}

static gboolean
embedding_meta_init (GstMeta * meta, gpointer params, GstBuffer * buffer)
{
  GstCbirEmbeddingMeta *m = (GstCbirEmbeddingMeta *) meta;

  m->dim = 0;
  m->vector = NULL;
  m->code_type = 0;
  m->n_bits = 0;
  m->bits = NULL;
  m->model_fingerprint = NULL;
  m->region_id = -1;
  m->input = NULL;
  m->input_width = m->input_height = 0;
  m->frame_width = m->frame_height = 0;
  m->ink_x = m->ink_y = m->ink_width = m->ink_height = 0;
  return TRUE;
}

static void
embedding_meta_free (GstMeta * meta, GstBuffer * buffer)
{
  GstCbirEmbeddingMeta *m = (GstCbirEmbeddingMeta *) meta;

  g_clear_pointer (&m->vector, g_free);
  g_clear_pointer (&m->bits, g_free);
  g_clear_pointer (&m->input, g_free);
}

static gboolean
embedding_meta_transform (GstBuffer * dest, GstMeta * meta,
    GstBuffer * buffer, GQuark type, gpointer data)
{
  GstCbirEmbeddingMeta *m = (GstCbirEmbeddingMeta *) meta, *d;
  /* (videoscale copies it: readers scale the ink box, which is in the
   * encoded frame's pixels, themselves) */
  if (!GST_META_TRANSFORM_IS_COPY (type) &&
      !GST_VIDEO_META_TRANSFORM_IS_SCALE (type))
    return FALSE;
  /* one embedding per region: a buffer may carry several */
  if (gst_buffer_get_cbir_embedding_meta_for_region (dest, m->region_id))
    return TRUE;
  d = gst_buffer_add_cbir_embedding_meta (dest,
      g_memdup2 (m->vector, sizeof (gfloat) * m->dim), m->dim, m->code_type,
      m->bits ? g_memdup2 (m->bits, (m->n_bits + 7) / 8) : NULL, m->n_bits,
      m->model_fingerprint);
  if (d == NULL)
    return FALSE;
  d->region_id = m->region_id;
  if (m->input)
    gst_cbir_embedding_meta_set_input (d, m->input, m->input_width,
        m->input_height);
  d->frame_width = m->frame_width;
  d->frame_height = m->frame_height;
  d->ink_x = m->ink_x;
  d->ink_y = m->ink_y;
  d->ink_width = m->ink_width;
  d->ink_height = m->ink_height;
  return TRUE;
}

const GstMetaInfo *
gst_cbir_embedding_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter (&info)) {
    const GstMetaInfo *i =
        gst_meta_register (gst_cbir_embedding_meta_api_get_type (),
        "GstCbirEmbeddingMeta", sizeof (GstCbirEmbeddingMeta),
        embedding_meta_init, embedding_meta_free, embedding_meta_transform);
    g_once_init_leave (&info, i);
  }
  return info;
}

GstCbirEmbeddingMeta *
gst_buffer_add_cbir_embedding_meta (GstBuffer * buffer, gfloat * vector,
    guint dim, gint code_type, guint8 * bits, guint n_bits,
    const gchar * model_fingerprint)
{
  GstCbirEmbeddingMeta *m;

  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  m = (GstCbirEmbeddingMeta *) gst_buffer_add_meta (buffer,
      gst_cbir_embedding_meta_get_info (), NULL);
  if (!m) {
    g_free (vector);
    g_free (bits);
    return NULL;
  }
  m->dim = dim;
  m->vector = vector;
  m->code_type = code_type;
  m->n_bits = bits ? n_bits : 0;
  m->bits = bits;
  m->model_fingerprint =
      model_fingerprint ? g_intern_string (model_fingerprint) : NULL;
  return m;
}

void
gst_cbir_embedding_meta_set_input (GstCbirEmbeddingMeta * meta,
    const guint8 * input, guint width, guint height)
{
  g_return_if_fail (meta != NULL && input != NULL);

  g_free (meta->input);
  meta->input = g_memdup2 (input, (gsize) width * height);
  meta->input_width = width;
  meta->input_height = height;
}

/* ---- result meta ---- */

GType
gst_cbir_result_meta_api_get_type (void)
{
  static GType type = 0;

  if (g_once_init_enter (&type)) {
    GType t = register_api (GST_CBIR_RESULT_META_API_NAME);
    g_once_init_leave (&type, t);
  }
  return type;
}

static gboolean
result_meta_init (GstMeta * meta, gpointer params, GstBuffer * buffer)
{
  GstCbirResultMeta *m = (GstCbirResultMeta *) meta;

  m->n_hits = 0;
  m->hits = NULL;
  m->label = -1;
  m->confidence = 0.0f;
  m->metric = NULL;
  m->match_score = 1.0f;
  return TRUE;
}

static void
result_meta_free (GstMeta * meta, GstBuffer * buffer)
{
  GstCbirResultMeta *m = (GstCbirResultMeta *) meta;

  g_clear_pointer (&m->hits, g_free);
}

static gboolean
result_meta_transform (GstBuffer * dest, GstMeta * meta, GstBuffer * buffer,
    GQuark type, gpointer data)
{
  GstCbirResultMeta *m = (GstCbirResultMeta *) meta;

  if (!GST_META_TRANSFORM_IS_COPY (type) &&
      type != g_quark_from_static_string ("gst-video-scale"))
    return FALSE;
  if (gst_buffer_get_meta (dest, gst_cbir_result_meta_api_get_type ()))
    return TRUE;
  GstCbirResultMeta *d = gst_buffer_add_cbir_result_meta (dest, m->hits,
      m->n_hits, m->label, m->confidence, m->metric);

  if (d)
    d->match_score = m->match_score;
  return d != NULL;
}

const GstMetaInfo *
gst_cbir_result_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter (&info)) {
    const GstMetaInfo *i =
        gst_meta_register (gst_cbir_result_meta_api_get_type (),
        "GstCbirResultMeta", sizeof (GstCbirResultMeta), result_meta_init,
        result_meta_free, result_meta_transform);
    g_once_init_leave (&info, i);
  }
  return info;
}

GstCbirResultMeta *
gst_buffer_add_cbir_result_meta (GstBuffer * buffer, const GstCbirHit * hits,
    guint n_hits, gint32 label, gfloat confidence, const gchar * metric)
{
  GstCbirResultMeta *m;

  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  while ((m = (GstCbirResultMeta *) gst_buffer_get_meta (buffer,
              gst_cbir_result_meta_api_get_type ())))
    gst_buffer_remove_meta (buffer, (GstMeta *) m);
  m = (GstCbirResultMeta *) gst_buffer_add_meta (buffer,
      gst_cbir_result_meta_get_info (), NULL);
  if (!m)
    return NULL;
  m->n_hits = n_hits;
  m->hits = n_hits ? g_memdup2 (hits, sizeof (GstCbirHit) * n_hits) : NULL;
  m->label = label;
  m->confidence = confidence;
  m->metric = metric ? g_intern_string (metric) : NULL;
  return m;
}

/* ---- the result as a GstCustomMeta (readable from bindings) ---- */

const GstMetaInfo *
gst_cbir_result_custom_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter (&info)) {
    /* No transform function: GStreamer's default copies the structure on
     * GST_META_TRANSFORM_IS_COPY, which is what queue, tee, videoconvert
     * and videoscale ask for. */
    const GstMetaInfo *i =
        gst_meta_register_custom (GST_CBIR_RESULT_CUSTOM_META_NAME, no_tags,
        NULL, NULL, NULL);
    g_once_init_leave (&info, i);
  }
  return info;
}

void
gst_buffer_add_cbir_result_structure (GstBuffer * buffer,
    const GstStructure * s)
{
  GstCustomMeta *m;
  GstStructure *dst;
  guint i, n;

  g_return_if_fail (GST_IS_BUFFER (buffer));
  gst_cbir_result_custom_meta_get_info ();
  m = gst_buffer_get_custom_meta (buffer, GST_CBIR_RESULT_CUSTOM_META_NAME);
  if (m == NULL)
    m = gst_buffer_add_custom_meta (buffer, GST_CBIR_RESULT_CUSTOM_META_NAME);
  if (!m)
    return;
  /* In 1.22 the meta's structure cannot be replaced: fill it in place. */
  dst = gst_custom_meta_get_structure (m);
  gst_structure_remove_all_fields (dst);
  gst_structure_set_name (dst, gst_structure_get_name (s));
  n = gst_structure_n_fields (s);
  for (i = 0; i < n; i++) {
    const gchar *field = gst_structure_nth_field_name (s, i);
    GValue v = G_VALUE_INIT;

    g_value_init (&v, gst_structure_get_field_type (s, field));
    g_value_copy (gst_structure_get_value (s, field), &v);
    gst_structure_take_value (dst, field, &v);
  }
}

/* ---- per-region results: keeps the ROIs' "cbir-result" params alive ----
 *
 * GStreamer 1.22's GstVideoRegionOfInterestMeta transform (copy and
 * scale, i.e. videoconvert and videoscale) keeps the box and the id but
 * drops the params. cbirsearch therefore also adds this meta, holding a
 * copy of each region's result structure; it is added after the ROIs, so
 * when a buffer is copied or scaled its transform runs after theirs and
 * puts the params back on the destination's ROIs (found by id). */

GType
gst_cbir_region_results_meta_api_get_type (void)
{
  static GType type = 0;

  if (g_once_init_enter (&type)) {
    GType t = register_api (GST_CBIR_REGION_RESULTS_META_API_NAME);
    g_once_init_leave (&type, t);
  }
  return type;
}

static gboolean
region_results_meta_init (GstMeta * meta, gpointer params, GstBuffer * buffer)
{
  ((GstCbirRegionResultsMeta *) meta)->results =
      g_ptr_array_new_with_free_func ((GDestroyNotify) gst_structure_free);
  return TRUE;
}

static void
region_results_meta_free (GstMeta * meta, GstBuffer * buffer)
{
  g_clear_pointer (&((GstCbirRegionResultsMeta *) meta)->results,
      g_ptr_array_unref);
}

/* Adds a copy of s (with a "region-id") to dest's ROI of that id unless it
 * already has a param of that name. */
static void
restore_roi_param (GstBuffer * dest, const GstStructure * s)
{
  GstVideoRegionOfInterestMeta *roi;
  gint id;

  if (!gst_structure_get_int (s, "region-id", &id))
    return;
  roi = gst_buffer_get_video_region_of_interest_meta_id (dest, id);
  if (roi && !gst_video_region_of_interest_meta_get_param (roi,
          gst_structure_get_name (s)))
    gst_video_region_of_interest_meta_add_param (roi, gst_structure_copy (s));
}

static gboolean
region_results_meta_transform (GstBuffer * dest, GstMeta * meta,
    GstBuffer * buffer, GQuark type, gpointer data)
{
  GstCbirRegionResultsMeta *m = (GstCbirRegionResultsMeta *) meta;
  guint i;

  if (!GST_META_TRANSFORM_IS_COPY (type) &&
      type != g_quark_from_static_string ("gst-video-scale"))
    return FALSE;
  if (gst_buffer_get_meta (dest, gst_cbir_region_results_meta_api_get_type ()))
    return TRUE;
  for (i = 0; i < m->results->len; i++) {
    const GstStructure *s = g_ptr_array_index (m->results, i);

    restore_roi_param (dest, s);
    gst_buffer_add_cbir_region_result (dest, s);
  }
  return TRUE;
}

const GstMetaInfo *
gst_cbir_region_results_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter (&info)) {
    const GstMetaInfo *i =
        gst_meta_register (gst_cbir_region_results_meta_api_get_type (),
        "GstCbirRegionResultsMeta", sizeof (GstCbirRegionResultsMeta),
        region_results_meta_init, region_results_meta_free,
        region_results_meta_transform);
    g_once_init_leave (&info, i);
  }
  return info;
}

void
gst_buffer_add_cbir_region_result (GstBuffer * buffer, const GstStructure * s)
{
  GstCbirRegionResultsMeta *m;
  gint id;
  guint i;

  g_return_if_fail (GST_IS_BUFFER (buffer));
  m = (GstCbirRegionResultsMeta *) gst_buffer_get_meta (buffer,
      gst_cbir_region_results_meta_api_get_type ());
  if (m == NULL)
    m = (GstCbirRegionResultsMeta *) gst_buffer_add_meta (buffer,
        gst_cbir_region_results_meta_get_info (), NULL);
  if (m == NULL)
    return;
  if (gst_structure_get_int (s, "region-id", &id))
    for (i = 0; i < m->results->len; i++) {
      gint other;
      if (gst_structure_get_int (g_ptr_array_index (m->results, i),
              "region-id", &other) && other == id) {
        gst_structure_free (g_ptr_array_index (m->results, i));
        g_ptr_array_index (m->results, i) = gst_structure_copy (s);
        return;
      }
    }
  g_ptr_array_add (m->results, gst_structure_copy (s));
}

void
gst_cbir_roi_set_param (GstVideoRegionOfInterestMeta * roi,
    const GstStructure * s)
{
  GList *l;

  for (l = roi->params; l; l = l->next)
    if (gst_structure_has_name (l->data, gst_structure_get_name (s))) {
      gst_structure_free (l->data);
      roi->params = g_list_delete_link (roi->params, l);
      break;
    }
  gst_video_region_of_interest_meta_add_param (roi, gst_structure_copy (s));
}

void
gst_cbir_meta_register_all (void)
{
  gst_cbir_source_meta_get_info ();
  gst_cbir_embedding_meta_get_info ();
  gst_cbir_result_meta_get_info ();
  gst_cbir_result_custom_meta_get_info ();
  gst_cbir_region_results_meta_get_info ();
}

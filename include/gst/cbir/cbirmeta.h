/* gst-cbir: public metadata of the "cbir" GStreamer plugin.
 *
 * This header is all a C application needs to read the plugin's metadata:
 * the plugin registers the meta types when it loads, and the inline
 * getters below find them by name, so the application links only
 * GStreamer, never libgstcbir.so or libcbir.
 *
 * Three metas ride on the buffers:
 *  - GstCbirSourceMeta:    added by cbiridxsrc: index of the image in its
 *                          IDX file and its label (-1 when unknown).
 *  - GstCbirEmbeddingMeta: added by cbirencode: the float code, the packed
 *                          bits (bit models) and the model fingerprint;
 *                          one for the whole frame, or with regions=digits
 *                          one per digit (see "Several digits" below).
 *  - GstCbirResultMeta:    added by cbirsearch: k hits (gallery index,
 *                          label, distance), the voted label, confidence.
 * cbirsearch also adds the result as a GstCustomMeta named
 * GST_CBIR_RESULT_CUSTOM_META_NAME whose GstStructure ("cbir-result") has
 * the same fields as the "cbir-result" bus message; bindings (Python...)
 * read it with gst_buffer_get_custom_meta () and
 * gst_custom_meta_get_structure ().
 *
 * Several digits in a frame (cbirencode regions=digits): cbirencode adds
 * one GstVideoRegionOfInterestMeta of type "digit" per digit (its box in
 * frame pixels, ids 0, 1, ... left to right) and one GstCbirEmbeddingMeta
 * per region whose @region_id is that ROI's id (-1 = whole frame).
 * cbirsearch then adds to each ROI a param structure "cbir-result" (the
 * fields of the bus message; read it with
 * gst_video_region_of_interest_meta_get_param (roi, "cbir-result")) and
 * posts one message per region (with "region-id" and the box added).
 * The whole-frame GstCbirResultMeta and custom meta are only added for a
 * whole-frame embedding.
 * GStreamer 1.22's ROI meta loses its params when videoconvert or
 * videoscale copy it; cbirsearch therefore also adds a
 * GstCbirRegionResultsMeta (all the regions' result structures, each with
 * its "region-id") whose transform puts the "cbir-result" params back on
 * the copied ROIs, so readers of the ROI params need do nothing.
 *
 * All metas are registered with no tags and a copy transform, so they
 * survive queue, tee, videoconvert and videoscale (videoscale scales the
 * ROI boxes; their ids and params are kept).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_CBIR_SOURCE_META_API_NAME     "GstCbirSourceMetaAPI"
#define GST_CBIR_EMBEDDING_META_API_NAME  "GstCbirEmbeddingMetaAPI"
#define GST_CBIR_RESULT_META_API_NAME     "GstCbirResultMetaAPI"
#define GST_CBIR_REGION_RESULTS_META_API_NAME "GstCbirRegionResultsMetaAPI"
/* Name of the GstCustomMeta holding the result as a GstStructure. */
#define GST_CBIR_RESULT_CUSTOM_META_NAME  "GstCbirResultStructureMeta"
/* Name of the structure of the result (bus message and custom meta). */
#define GST_CBIR_RESULT_STRUCTURE_NAME    "cbir-result"

/**
 * GstCbirSourceMeta:
 * @meta: parent
 * @index: index of the image in the data set file
 * @label: its label, -1 when the source has no labels
 * @source: the data set file (interned string), or NULL
 */
typedef struct {
  GstMeta meta;
  guint64 index;
  gint32 label;
  const gchar *source;
} GstCbirSourceMeta;

/**
 * GstCbirEmbeddingMeta:
 * @meta: parent
 * @dim: number of floats in @vector
 * @vector: the encoder output (also for bit models)
 * @code_type: 0 = float code, 1 = bit code (CbirCodeType)
 * @n_bits: number of bits in @bits (0 for float models)
 * @bits: packed bits, LSB first in each byte, or NULL
 * @model_fingerprint: hex SHA-256 of the model (interned string)
 * @region_id: -1 for the whole frame, else the id of the
 *   GstVideoRegionOfInterestMeta (type "digit") whose box was encoded
 * @input: the picture the model encoded, as cbirencode prepared it (GRAY8,
 *   @input_width x @input_height, rows packed; with preprocess=mnist the
 *   normalised digit, white ink on black), or NULL
 * @input_width: its width (the model's input width), 0 without @input
 * @input_height: its height
 * @frame_width: width of the frame cbirencode encoded (the ink box below
 *   is in its pixels: scale it to a frame that was resized since)
 * @frame_height: its height
 * @ink_x: with preprocess=mnist on the whole frame, the box of the ink
 *   that was normalised, in the encoded frame's pixels; @ink_width is 0
 *   otherwise
 * @ink_y: top of that box
 * @ink_width: its width, 0 when there is none
 * @ink_height: its height
 */
typedef struct {
  GstMeta meta;
  guint dim;
  gfloat *vector;
  gint code_type;
  guint n_bits;
  guint8 *bits;
  const gchar *model_fingerprint;
  gint region_id;
  guint8 *input;
  guint input_width;
  guint input_height;
  guint frame_width;
  guint frame_height;
  gint ink_x;
  gint ink_y;
  gint ink_width;
  gint ink_height;
} GstCbirEmbeddingMeta;

/**
 * GstCbirHit:
 * @index: gallery item
 * @label: its label
 * @distance: distance to the query (metric of the search)
 */
typedef struct {
  guint index;
  gint32 label;
  gfloat distance;
} GstCbirHit;

/**
 * GstCbirResultMeta:
 * @meta: parent
 * @n_hits: number of hits in @hits (0 when nothing is within max-distance)
 * @hits: the hits, nearest first
 * @label: the voted label, -1 for "no match"
 * @confidence: the label's share of the 1/distance weight of the k
 *   nearest candidates, in [0, 1]
 * @metric: the metric name ("l2", "cosine", "hamming"; interned)
 * @match_score: how like the gallery the query is, in [0, 1]: the share
 *   of gallery items whose own nearest other item is at least as far as
 *   the query's nearest item (see cbirsearch's "match-score"); below the
 *   element's min-match-score the result is "no match" (label -1)
 */
typedef struct {
  GstMeta meta;
  guint n_hits;
  GstCbirHit *hits;
  gint32 label;
  gfloat confidence;
  const gchar *metric;
  gfloat match_score;
} GstCbirResultMeta;

static inline GstMeta *
gst_cbir_buffer_get_meta_by_api_name (GstBuffer * buffer, const gchar * name)
{
  GType api = g_type_from_name (name);
  return api ? gst_buffer_get_meta (buffer, api) : NULL;
}

/* The metas of a buffer, or NULL (also when the plugin is not loaded). */
/**
 * GstCbirRegionResultsMeta:
 * @meta: parent
 * @results: (element-type GstStructure): the "cbir-result" structure of
 *   each region searched, in region order, each with "region-id" (gint)
 */
typedef struct {
  GstMeta meta;
  GPtrArray *results;
} GstCbirRegionResultsMeta;

static inline GstCbirSourceMeta *
gst_buffer_get_cbir_source_meta (GstBuffer * buffer)
{
  return (GstCbirSourceMeta *)
      gst_cbir_buffer_get_meta_by_api_name (buffer,
      GST_CBIR_SOURCE_META_API_NAME);
}

static inline GstCbirEmbeddingMeta *
gst_buffer_get_cbir_embedding_meta (GstBuffer * buffer)
{
  return (GstCbirEmbeddingMeta *)
      gst_cbir_buffer_get_meta_by_api_name (buffer,
      GST_CBIR_EMBEDDING_META_API_NAME);
}

/* The embedding of region region_id (-1: of the whole frame), or NULL. */
static inline GstCbirEmbeddingMeta *
gst_buffer_get_cbir_embedding_meta_for_region (GstBuffer * buffer,
    gint region_id)
{
  GType api = g_type_from_name (GST_CBIR_EMBEDDING_META_API_NAME);
  gpointer state = NULL;
  GstMeta *m;

  if (!api)
    return NULL;
  while ((m = gst_buffer_iterate_meta_filtered (buffer, &state, api)))
    if (((GstCbirEmbeddingMeta *) m)->region_id == region_id)
      return (GstCbirEmbeddingMeta *) m;
  return NULL;
}

static inline GstCbirResultMeta *
gst_buffer_get_cbir_result_meta (GstBuffer * buffer)
{
  return (GstCbirResultMeta *)
      gst_cbir_buffer_get_meta_by_api_name (buffer,
      GST_CBIR_RESULT_META_API_NAME);
}

static inline GstCbirRegionResultsMeta *
gst_buffer_get_cbir_region_results_meta (GstBuffer * buffer)
{
  return (GstCbirRegionResultsMeta *)
      gst_cbir_buffer_get_meta_by_api_name (buffer,
      GST_CBIR_REGION_RESULTS_META_API_NAME);
}

/* The result as a GstStructure (owned by the buffer), or NULL. */
static inline const GstStructure *
gst_buffer_get_cbir_result_structure (GstBuffer * buffer)
{
  GstCustomMeta *m;

  if (!gst_meta_get_info (GST_CBIR_RESULT_CUSTOM_META_NAME))
    return NULL;
  m = gst_buffer_get_custom_meta (buffer, GST_CBIR_RESULT_CUSTOM_META_NAME);
  return m ? gst_custom_meta_get_structure (m) : NULL;
}

G_END_DECLS

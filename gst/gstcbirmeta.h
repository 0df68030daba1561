/* gst-cbir: registration and constructors of the plugin's metadata.
 * The structures and the read-only getters are public, in
 * include/gst/cbir/cbirmeta.h.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gst/cbir/cbirmeta.h>

G_BEGIN_DECLS

GType gst_cbir_source_meta_api_get_type (void);
const GstMetaInfo *gst_cbir_source_meta_get_info (void);
GType gst_cbir_embedding_meta_api_get_type (void);
const GstMetaInfo *gst_cbir_embedding_meta_get_info (void);
GType gst_cbir_result_meta_api_get_type (void);
const GstMetaInfo *gst_cbir_result_meta_get_info (void);
const GstMetaInfo *gst_cbir_result_custom_meta_get_info (void);

GType gst_cbir_region_results_meta_api_get_type (void);
const GstMetaInfo *gst_cbir_region_results_meta_get_info (void);

/* Registers all of them (plugin_init). */
void gst_cbir_meta_register_all (void);

GstCbirSourceMeta *gst_buffer_add_cbir_source_meta (GstBuffer * buffer,
    guint64 index, gint32 label, const gchar * source);

/* Takes ownership of vector (dim floats) and bits (may be NULL),
 * both g_malloc'ed. The meta's region_id is -1 (whole frame): set it for
 * the embedding of a region. */
GstCbirEmbeddingMeta *gst_buffer_add_cbir_embedding_meta (GstBuffer * buffer,
    gfloat * vector, guint dim, gint code_type, guint8 * bits, guint n_bits,
    const gchar * model_fingerprint);

/* Keeps a copy of the picture the model encoded (GRAY8, width x height,
 * rows packed) in the embedding, replacing any earlier one. */
void gst_cbir_embedding_meta_set_input (GstCbirEmbeddingMeta * meta,
    const guint8 * input, guint width, guint height);

/* A custom upstream query (GST_QUERY_CUSTOM) with a structure of this name:
 * cbirsearch asks, when it starts, which model encodes its frames;
 * cbirencode answers with "fingerprint" (string) and "dim" (guint) of the
 * model its "model" property names, so that a gallery of another model is
 * an error before any frame flows. */
#define GST_CBIR_MODEL_QUERY_NAME "cbir-model"

/* The result setters replace what an earlier cbirsearch of the same
 * buffer left (two searches in a row: the last one's result is the one
 * every reader sees). */

/* Copies the hits; removes the buffer's earlier result metas. */
GstCbirResultMeta *gst_buffer_add_cbir_result_meta (GstBuffer * buffer,
    const GstCbirHit * hits, guint n_hits, gint32 label, gfloat confidence,
    const gchar * metric);

/* Adds the custom meta holding a copy of s, or refills the existing one. */
void gst_buffer_add_cbir_result_structure (GstBuffer * buffer,
    const GstStructure * s);

/* Puts a copy of s (a region's "cbir-result" with its "region-id") in the
 * buffer's GstCbirRegionResultsMeta, adding the meta if needed and
 * replacing an earlier result of the same region. */
void gst_buffer_add_cbir_region_result (GstBuffer * buffer,
    const GstStructure * s);

/* Sets the ROI's param named like s to a copy of s, replacing one that is
 * there. */
void gst_cbir_roi_set_param (GstVideoRegionOfInterestMeta * roi,
    const GstStructure * s);

G_END_DECLS

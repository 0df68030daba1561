/* The gallery: encoded images + labels (+ thumbnails, ids), a safetensors
 * file opened with mmap. Tensors:
 *   "features"       F32 [N, D]            (float codes; optional if bits)
 *   "codes"          U8  [N, B]            (packed bits; optional)
 *   "bit_thresholds" F32 [D]               (how features become bits)
 *   "labels"         I32 [N]
 *   "thumbnails"     U8  [N, 28, 28]       (optional)
 *   "ids"            U8  [bytes]           (optional: N NUL-terminated
 *                                           source ids/URIs, concatenated)
 *   "features_raw"   F32 [N, D]            (optional: before DBA)
 *   "graph_offsets", "graph_neighbours", "graph_weights"
 *                    I32 [N+1], I32 [E], F32 [E]  (optional: the k-NN
 *                                           graph, see cbir_gallery_get_graph)
 * __metadata__: "format" = "gst-cbir-gallery", "version" = "1",
 *   "model_fingerprint", "code_type" ("float"/"bits"), "metric",
 *   "label_names" (optional JSON array), "dba" (optional), "graph" and
 *   "graph_crc32" (with the graph tensors). */
#pragma once

#include <cbir/common.h>
#include <cbir/diffusion.h>
#include <cbir/model.h>

G_BEGIN_DECLS

typedef struct _CbirGallery CbirGallery;

/* Opens and validates (mmap; no copy of the features). A gallery is
 * immutable and may be shared by any number of threads. */
CbirGallery *cbir_gallery_open (const char *path, GError **error);
void cbir_gallery_free (CbirGallery *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirGallery, cbir_gallery_free)

const char *cbir_gallery_get_path (const CbirGallery *g);
guint cbir_gallery_size (const CbirGallery *g);
CbirCodeType cbir_gallery_get_code_type (const CbirGallery *g);
guint cbir_gallery_get_dim (const CbirGallery *g);        /* D (0 if no features) */
guint cbir_gallery_get_code_bytes (const CbirGallery *g); /* B (0 if no codes) */
const char *cbir_gallery_get_model_fingerprint (const CbirGallery *g);
const float *cbir_gallery_get_features (const CbirGallery *g);   /* or NULL */
const guint8 *cbir_gallery_get_codes (const CbirGallery *g);     /* or NULL */
const float *cbir_gallery_get_bit_thresholds (const CbirGallery *g); /* or NULL */
const gint32 *cbir_gallery_get_labels (const CbirGallery *g);
/* How many items carry each label: a new table of GINT_TO_POINTER (label)
 * -> GUINT_TO_POINTER (count) (what cbir_vote_local_mean's sizes come
 * from). */
GHashTable *cbir_gallery_count_labels (const CbirGallery *g);
/* 28x28 GRAY8 thumbnail of item i, or NULL when the gallery has none. */
const guint8 *cbir_gallery_get_thumbnail (const CbirGallery *g, guint i);
/* Source id of item i, or NULL. */
const char *cbir_gallery_get_id (const CbirGallery *g, guint i);
/* Name of a label, or NULL when the gallery has no label names. */
const char *cbir_gallery_get_label_name (const CbirGallery *g, gint32 label);

/* FALSE with CBIR_ERROR_MISMATCH naming both fingerprints (and the file)
 * when the gallery was made by another model, or the code dimension
 * differs. */
gboolean cbir_gallery_check_model (const CbirGallery *g,
    const CbirModel *model, GError **error);

/* Building (the indexer element and the tools). */
typedef struct _CbirGalleryBuilder CbirGalleryBuilder;
/* dim: floats per feature; with_bits: also store packed bits (code bytes
 * (dim+7)/8; thresholds NULL -> 0, or the model's own rule). */
CbirGalleryBuilder *cbir_gallery_builder_new (const char *model_fingerprint,
    CbirCodeType code_type, guint dim, gboolean with_thumbnails);
/* Starts from the items of an existing gallery file (append mode); the
 * file's fingerprint, code type and dim must match. */
gboolean cbir_gallery_builder_load_existing (CbirGalleryBuilder *b,
    const char *path, GError **error);
void cbir_gallery_builder_set_bit_thresholds (CbirGalleryBuilder *b,
    const float *thresholds);
void cbir_gallery_builder_set_label_names (CbirGalleryBuilder *b,
    const char *const *names, guint n);
/* feature: dim floats; thumbnail: 28x28 GRAY8 or NULL; id may be NULL.
 * A feature holding NaN or an infinite value is not added: FALSE (such a
 * code would be nearest to, or farthest from, every query; a gallery file
 * holding one is refused by cbir_gallery_open ()). */
gboolean cbir_gallery_builder_add (CbirGalleryBuilder *b,
    const float *feature, gint32 label, const guint8 *thumbnail,
    const char *id);
guint cbir_gallery_builder_size (const CbirGalleryBuilder *b);
/* Whether a gallery could be written at `path` now (its directory exists
 * and takes a new file): for a writer to fail before collecting anything.
 * Leaves nothing behind. */
gboolean cbir_gallery_check_writable (const char *path, GError **error);
/* Atomic write (temp + rename). */
gboolean cbir_gallery_builder_write (CbirGalleryBuilder *b, const char *path,
    GError **error);
void cbir_gallery_builder_free (CbirGalleryBuilder *b);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirGalleryBuilder, cbir_gallery_builder_free)

/* ---- additions (search helper) ---- */

#define CBIR_GALLERY_THUMB_WIDTH 28
#define CBIR_GALLERY_THUMB_HEIGHT 28

/* Bits per packed code (0 if no codes). For a bits-only gallery this is
 * the number of floats a query code has (get_dim is 0 there). */
guint cbir_gallery_get_code_bits (const CbirGallery *g);
/* The metric recorded in the file ("l2", "cosine", "hamming"). */
const char *cbir_gallery_get_metric_name (const CbirGallery *g);
guint cbir_gallery_get_n_label_names (const CbirGallery *g);

/* What the builder stores (call before adding). Defaults: float galleries
 * store features and packed bits (for Hamming and two-stage search), bits
 * galleries only packed bits. Bit thresholds default to the per-dimension
 * gallery median for float galleries (computed when writing) and 0 for bits
 * galleries (the model's rule: bit = value > 0); set them explicitly with
 * cbir_gallery_builder_set_bit_thresholds (before adding to a bits-only
 * builder, whose codes are packed as they come). An appended-to file keeps
 * its thresholds. */
void cbir_gallery_builder_set_store (CbirGalleryBuilder *b,
    gboolean features, gboolean bits);
/* Metric recorded in the file (default "l2" for float, "hamming" for bits). */
void cbir_gallery_builder_set_metric (CbirGalleryBuilder *b,
    const char *metric);
/* An in-memory gallery of the builder's items (path "(memory)"), as the
 * file would hold them; the builder stays usable. */
CbirGallery *cbir_gallery_builder_build (CbirGalleryBuilder *b);

/* ---- additions (rerank helper) ---- */

/* Database-side augmentation (DBA, see cbir_dba_compute in search.h): at
 * write/build time every stored feature is replaced by the weighted
 * combination of itself and its k nearest other gallery items (neighbours
 * and formula: l2 when the gallery metric is "l2", cosine otherwise), and
 * the packed bits are computed from the augmented features with the same
 * threshold rule (median of the augmented features by default). The file
 * then holds "features" (augmented: what searches use), "features_raw"
 * (F32 [N, D], the features as added) and __metadata__ "dba" =
 * "k=K,alpha=A". Appending to such a file (load_existing) keeps the raw
 * features and re-runs DBA over all items with the file's k and alpha
 * (unless set_dba was called), so appending equals augmenting the
 * concatenation; median-rule thresholds ("bit_thresholds_rule": "median",
 * written for every gallery) are then recomputed. k = 0: off (default).
 * FALSE with an error for k > 0 on a builder that stores no float
 * features, or alpha outside 0..1000. The kNN over the gallery is the
 * blocked batched search (sgemm, both cores). */
gboolean cbir_gallery_builder_set_dba (CbirGalleryBuilder *b, guint k,
    float alpha, GError **error);
guint cbir_gallery_builder_get_dba (const CbirGalleryBuilder *b,
    float *alpha);
/* DBA of the gallery: k (0 = none) and alpha (may be NULL). */
guint cbir_gallery_get_dba (const CbirGallery *g, float *alpha);
/* The un-augmented features ("features_raw") of an augmented gallery; the
 * features themselves otherwise (NULL if none). */
const float *cbir_gallery_get_raw_features (const CbirGallery *g);

/* The gallery's k-NN graph for diffusion (diffusion.h): tensors
 * "graph_offsets" I32 [N+1], "graph_neighbours" I32 [E], "graph_weights"
 * F32 [E] (CSR rows of S = D^-1/2 W D^-1/2), __metadata__ "graph" =
 * "k=K,power=P,rule=auto|fixed" and "graph_crc32" (CRC-32 of the three
 * tensors, 8 hex digits). On open the structure (ranges, order, no self
 * edge, symmetry, weights in (0, 1]) and the CRC are checked: a corrupt
 * graph is an error naming the file; a file without one opens as before.
 * The graph is built over the stored "features" (after DBA). Builders make
 * none unless asked (cbirindex and cbir-eval ask by default): k = 0 uses
 * cbir_graph_default_k on the final size. Appending to a file with a graph
 * (load_existing) rebuilds it over all items at write time, with the
 * file's settings (rule=auto: the rule on the new size) unless set_graph
 * was called; the rebuild costs what a fresh build does. FALSE with an
 * error for a builder without float features, k > CBIR_GRAPH_MAX_K, or a
 * power outside (0, 16]. */
gboolean cbir_gallery_builder_set_graph (CbirGalleryBuilder *b,
    gboolean enabled, guint k, float power, GError **error);
/* The graph's low-rank form too: its `rank` largest eigenpairs
 * (cbir_graph_compute_spectrum), tensors "graph_eigenvectors" F32 [N, R]
 * and "graph_eigenvalues" F32 [R], ",rank=R" in metadata "graph", covered
 * by "graph_crc32". 0: none (the default). */
void cbir_gallery_builder_set_graph_rank (CbirGalleryBuilder *b,
    guint rank);
/* Whether a graph is built; k (0 = rule) and power if not NULL. */
gboolean cbir_gallery_builder_get_graph (const CbirGalleryBuilder *b,
    guint *k, float *power);
/* The graph (NULL if none); whether its k came from the size rule. */
const CbirGraph *cbir_gallery_get_graph (const CbirGallery *g);
gboolean cbir_gallery_get_graph_k_auto (const CbirGallery *g);

G_END_DECLS

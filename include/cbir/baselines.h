/* Baselines for retrieval quality: PCA (fitted on the gallery) and ITQ
 * (iterative quantisation: PCA then a learned rotation, Gong & Lazebnik
 * 2011). Raw pixels need no code: features = pixels * 1/255.
 * All use LAPACK from OpenBLAS. */
#pragma once

#include <cbir/common.h>

G_BEGIN_DECLS

typedef struct _CbirPca CbirPca;

/* Fits the top-k principal components of n rows of d floats (covariance
 * in double precision, eigen-decomposition by LAPACK dsyevd). Component
 * signs are fixed (largest-magnitude coefficient positive) so the result
 * is deterministic. */
CbirPca *cbir_pca_fit (const float *x, guint n, guint d, guint k,
    GError **error);
void cbir_pca_free (CbirPca *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirPca, cbir_pca_free)
guint cbir_pca_get_input_dim (const CbirPca *p);
guint cbir_pca_get_n_components (const CbirPca *p);
/* Variance along each component (k values, descending). */
const double *cbir_pca_get_variances (const CbirPca *p);
/* Components: d x k floats, row-major (column c = component c, unit
 * length). */
const float *cbir_pca_get_components (const CbirPca *p);
/* out: n rows of k floats = (x - mean) . components. */
void cbir_pca_transform (const CbirPca *p, const float *x, guint n,
    float *out);

typedef struct _CbirItq CbirItq;

/* PCA to `bits` dimensions, then `iterations` rounds of the orthogonal
 * Procrustes rotation (SVD by LAPACK dgesvd) from a random rotation drawn
 * with `seed`. */
CbirItq *cbir_itq_fit (const float *x, guint n, guint d, guint bits,
    guint iterations, guint64 seed, GError **error);
void cbir_itq_free (CbirItq *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirItq, cbir_itq_free)
guint cbir_itq_get_bits (const CbirItq *q);
/* out: n rows of `bits` floats (rotated PCA projections); bit j of a code
 * is out[j] > 0 (cbir_codes_pack_bits with NULL thresholds). */
void cbir_itq_project (const CbirItq *q, const float *x, guint n,
    float *out);

G_END_DECLS

/* IDX data sets (MNIST, Fashion-MNIST, EMNIST...), raw or gzip. */
#pragma once

#include <cbir/common.h>

G_BEGIN_DECLS

/* An image data set in memory: n images of rows x cols GRAY8, row-major,
 * contiguous (no padding), plus optional labels. */
typedef struct {
  guint n;
  guint rows;
  guint cols;
  guint8 *images;               /* n * rows * cols bytes, owned */
  gint32 *labels;               /* n labels, owned; NULL when no labels file */
} CbirDataset;

/* Loads an idx3-ubyte image file and, if labels_path is non-NULL, an
 * idx1-ubyte label file; either may be gzip-compressed (detected by the
 * gzip magic, not the name). Validates magic, type (unsigned byte), rank,
 * dimensions, the product of dimensions against overflow, the data size
 * against the file length and that image and label counts agree.
 * Errors name the file. */
CbirDataset *cbir_dataset_load (const char *images_path,
    const char *labels_path, GError **error);
void cbir_dataset_free (CbirDataset *ds);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirDataset, cbir_dataset_free)

/* New data set with the images at the given indices (labels copied too). */
CbirDataset *cbir_dataset_subset (const CbirDataset *ds, const guint *indices,
    guint n);

/* Writes an unsigned-byte IDX file of rank n_dims (1 for labels, 3 for
 * images) atomically (temp file + rename); gzip-compressed when path ends
 * in ".gz". */
gboolean cbir_idx_write_u8 (const char *path, guint n_dims,
    const guint32 *dims, const guint8 *data, GError **error);

/* Convenience: writes ds->images (and ds->labels, when labels_path is
 * non-NULL; labels must be 0..255) as IDX files. */
gboolean cbir_dataset_save (const CbirDataset *ds, const char *images_path,
    const char *labels_path, GError **error);

G_END_DECLS

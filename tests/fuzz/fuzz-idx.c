/* Fuzz harness: IDX data sets (cbir_dataset_load), raw or gzip.
 * The input is read as an images file (idx3) and, paired with an images
 * file of as many images as its header promises (when small), as a labels
 * file (idx1); a loaded set is walked and subset.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fuzz-common.h"

#include <cbir/idx.h>

#include <zlib.h>

/* The count in the first 8 (decompressed) bytes of an idx1 header, 0 if
 * there is none. zlib reads raw files transparently. */
static guint32
peek_count (const char *path)
{
  guint8 head[8];
  gzFile gz = gzopen (path, "rb");
  guint32 n = 0;
  if (!gz)
    return 0;
  if (gzread (gz, head, 8) == 8 && head[0] == 0 && head[1] == 0
      && head[3] == 1)
    n = ((guint32) head[4] << 24) | ((guint32) head[5] << 16)
        | ((guint32) head[6] << 8) | head[7];
  gzclose (gz);
  return n;
}

static void
check_dataset (CbirDataset *ds)
{
  g_assert (ds->n > 0 && ds->rows > 0 && ds->cols > 0);
  gsize bytes = (gsize) ds->n * ds->rows * ds->cols;
  (void) fuzz_touch (ds->images, bytes);
  if (ds->labels)
    (void) fuzz_touch (ds->labels, ds->n * sizeof (gint32));
  guint idx[2] = { 0, ds->n - 1 };
  CbirDataset *sub = cbir_dataset_subset (ds, idx, 2);
  g_assert (sub && sub->n == 2);
  g_assert (memcmp (sub->images, ds->images,
          (gsize) ds->rows * ds->cols) == 0);
  cbir_dataset_free (sub);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  const char *path = fuzz_write_input (0, data, size);

  /* as images */
  CbirDataset *ds = cbir_dataset_load (path, NULL, &err);
  if (ds) {
    cbir_fuzz_accepted = 1;
    check_dataset (ds);
    cbir_dataset_free (ds);
  } else {
    g_assert (err != NULL);
    fuzz_drop_error (&err);
  }

  /* as labels, next to n 1x1 images (n from the input's header, so that a
   * good labels file loads; 1 otherwise) */
  guint32 n = peek_count (path);
  if (n == 0 || n > 1u << 16)
    n = 1;
  gsize isize = 16 + (gsize) n;
  guint8 *img = g_malloc0 (isize);
  img[2] = 0x08;
  img[3] = 3;
  img[4] = n >> 24;
  img[5] = n >> 16;
  img[6] = n >> 8;
  img[7] = n;
  img[11] = 1;
  img[15] = 1;
  for (guint32 i = 0; i < n; i++)
    img[16 + i] = (guint8) i;
  const char *ipath = fuzz_write_input (1, img, isize);
  g_free (img);
  ds = cbir_dataset_load (ipath, path, &err);
  if (ds) {
    cbir_fuzz_accepted = 1;
    g_assert (ds->labels != NULL && ds->n == n);
    for (guint i = 0; i < ds->n; i++)
      g_assert (ds->labels[i] >= 0 && ds->labels[i] <= 255);
    check_dataset (ds);
    cbir_dataset_free (ds);
  } else {
    g_assert (err != NULL);
    fuzz_drop_error (&err);
  }
  return 0;
}

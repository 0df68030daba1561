/* Fuzz harness: safetensors files (cbir_safetensors_open). An opened file
 * is walked: every tensor's view checked against its dtype and shape and
 * read in full, looked up again with _require, and the metadata keys the
 * engine uses read.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fuzz-common.h"

#include <cbir/safetensors.h>

static const char *const meta_keys[] = {
  "format", "version", "architecture", "model_fingerprint", "code_type",
  "metric", "label_names", "graph", "graph_crc32", "dba", "training",
  "", "__metadata__", NULL
};

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  const char *path = fuzz_write_input (0, data, size);

  CbirSafetensors *st = cbir_safetensors_open (path, &err);
  if (!st) {
    g_assert (err != NULL);
    fuzz_drop_error (&err);
    return 0;
  }
  cbir_fuzz_accepted = 1;
  g_assert (g_strcmp0 (cbir_safetensors_get_path (st), path) == 0);
  for (guint i = 0; meta_keys[i]; i++) {
    const char *v = cbir_safetensors_get_metadata (st, meta_keys[i]);
    if (v)
      (void) strlen (v);
  }

  const char *const *names = cbir_safetensors_list (st);
  g_assert (names != NULL);
  for (guint i = 0; names[i]; i++) {
    CbirTensorView v, v2;
    g_assert (cbir_safetensors_get (st, names[i], &v));
    g_assert (g_strcmp0 (v.name, names[i]) == 0);
    g_assert (v.ndim <= CBIR_TENSOR_MAX_DIMS);
    guint64 n = cbir_dtype_size (v.dtype);
    for (guint d = 0; d < v.ndim; d++) {
      g_assert (v.shape[d] >= 0);
      g_assert (g_uint64_checked_mul (&n, n, (guint64) v.shape[d]));
    }
    g_assert (n == v.nbytes);
    g_assert (v.nbytes <= size);
    (void) fuzz_touch (v.data, v.nbytes);
    (void) cbir_dtype_to_string (v.dtype);

    /* the same through _require: exact shape, then wildcards */
    g_assert (cbir_safetensors_require (st, names[i], v.dtype, v.ndim,
            v.shape, &v2, &err));
    g_assert (v2.data == v.data && v2.nbytes == v.nbytes);
    gint64 any[CBIR_TENSOR_MAX_DIMS];
    for (guint d = 0; d < CBIR_TENSOR_MAX_DIMS; d++)
      any[d] = -1;
    g_assert (cbir_safetensors_require (st, names[i], v.dtype, v.ndim, any,
            &v2, &err));
    /* a mismatch is an error, not a crash */
    CbirDType other = v.dtype == CBIR_DTYPE_F32 ? CBIR_DTYPE_U8
        : CBIR_DTYPE_F32;
    g_assert (!cbir_safetensors_require (st, names[i], other, v.ndim, any,
            &v2, &err));
    fuzz_drop_error (&err);
    if (v.ndim > 0) {
      g_assert (!cbir_safetensors_require (st, names[i], v.dtype,
              v.ndim - 1, any, &v2, &err));
      fuzz_drop_error (&err);
    }
  }
  CbirTensorView none;
  g_assert (!cbir_safetensors_get (st, "no such tensor \x01", &none));
  cbir_safetensors_free (st);
  return 0;
}

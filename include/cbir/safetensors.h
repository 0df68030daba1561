/* safetensors files: 8-byte little-endian header length N, N bytes of JSON
 * header { "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
 * ..., "__metadata__": {"key": "string value", ...} }, then the raw
 * little-endian tensor bytes. Used for models, codes and galleries. */
#pragma once

#include <cbir/common.h>

G_BEGIN_DECLS

typedef enum {
  CBIR_DTYPE_U8,                /* "U8" */
  CBIR_DTYPE_I32,               /* "I32" */
  CBIR_DTYPE_I64,               /* "I64" */
  CBIR_DTYPE_F32,               /* "F32" */
  CBIR_DTYPE_F64,               /* "F64" */
} CbirDType;

#define CBIR_TENSOR_MAX_DIMS 8

typedef struct {
  const char *name;
  CbirDType dtype;
  guint ndim;
  gint64 shape[CBIR_TENSOR_MAX_DIMS];
  const void *data;             /* points into the mapped file; may be
                                 * unaligned only if the file's offsets are */
  gsize nbytes;
} CbirTensorView;

typedef struct _CbirSafetensors CbirSafetensors;

/* Opens (mmap, read-only) and fully validates a file: header length within
 * the file, valid JSON object, known dtypes, shapes whose byte size matches
 * data_offsets (no overflow), offsets within the data area, no overlapping
 * tensors, metadata values all strings. Errors name the file. */
CbirSafetensors *cbir_safetensors_open (const char *path, GError **error);
void cbir_safetensors_free (CbirSafetensors *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirSafetensors, cbir_safetensors_free)

const char *cbir_safetensors_get_path (const CbirSafetensors *st);
/* NULL when the key is absent. */
const char *cbir_safetensors_get_metadata (const CbirSafetensors *st,
    const char *key);
/* NULL-terminated list of tensor names in file order (owned by st). */
const char *const *cbir_safetensors_list (const CbirSafetensors *st);
/* FALSE (no error) when absent. */
gboolean cbir_safetensors_get (const CbirSafetensors *st, const char *name,
    CbirTensorView *out);
/* Like get, but a missing tensor, another dtype or another shape is an
 * error naming file, tensor, expected and found. In `shape`, -1 matches
 * any size. */
gboolean cbir_safetensors_require (const CbirSafetensors *st,
    const char *name, CbirDType dtype, guint ndim, const gint64 *shape,
    CbirTensorView *out, GError **error);

gsize cbir_dtype_size (CbirDType dtype);
const char *cbir_dtype_to_string (CbirDType dtype);

/* Writer: collect tensors (data borrowed until write) and string metadata,
 * then write atomically (temp file in the same directory + rename). Tensor
 * data are 8-byte aligned in the file (header padded with spaces). */
typedef struct _CbirSafetensorsWriter CbirSafetensorsWriter;
CbirSafetensorsWriter *cbir_safetensors_writer_new (void);
void cbir_safetensors_writer_free (CbirSafetensorsWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirSafetensorsWriter,
    cbir_safetensors_writer_free)
void cbir_safetensors_writer_set_metadata (CbirSafetensorsWriter *w,
    const char *key, const char *value);
void cbir_safetensors_writer_add (CbirSafetensorsWriter *w, const char *name,
    CbirDType dtype, guint ndim, const gint64 *shape, const void *data);
gboolean cbir_safetensors_writer_write (CbirSafetensorsWriter *w,
    const char *path, GError **error);

G_END_DECLS

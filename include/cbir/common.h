/* gst-cbir engine: common definitions (error domain, code types).
 * The engine (libcbir) knows nothing of GStreamer. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define CBIR_ERROR (cbir_error_quark ())
GQuark cbir_error_quark (void);

/* Every fallible engine call returns FALSE/NULL and sets a GError in
 * CBIR_ERROR whose message names the file (where there is one) and the
 * problem, e.g. "model.safetensors: header length 999 past end of file". */
typedef enum {
  CBIR_ERROR_IO,                /* cannot open/read/write/rename a file */
  CBIR_ERROR_FORMAT,            /* corrupt, truncated or inconsistent file */
  CBIR_ERROR_INVALID_ARGUMENT,  /* bad option, shape or value */
  CBIR_ERROR_MISMATCH,          /* model/gallery fingerprint or dimension mismatch */
  CBIR_ERROR_UNSUPPORTED,       /* valid but not supported (dtype, layer...) */
} CbirError;

/* How codes are compared. */
typedef enum {
  CBIR_CODE_FLOAT = 0,          /* float32 vector, L2 or cosine */
  CBIR_CODE_BITS = 1,           /* packed bits (LSB first in each byte), Hamming */
} CbirCodeType;

const char *cbir_code_type_to_string (CbirCodeType t);
gboolean cbir_code_type_from_string (const char *s, CbirCodeType *out);

/* Number of worker threads the engine uses by default: all cores
 * (g_get_num_processors ()), overridable with CBIR_THREADS. */
guint cbir_default_threads (void);

/* zlib's CRC-32 of len bytes continued from crc (0 to start), for any
 * length (zlib takes at most 4 GiB a call). */
guint32 cbir_crc32 (guint32 crc, const void *data, gsize len);

/* The index of the first NaN or infinite value of v[0..n), or n when all
 * are finite. */
gsize cbir_first_non_finite (const float *v, gsize n);

G_END_DECLS

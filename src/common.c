#include "cbir/common.h"

#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <zlib.h>

G_DEFINE_QUARK (cbir-error-quark, cbir_error)

const char *
cbir_code_type_to_string (CbirCodeType t)
{
  switch (t) {
    case CBIR_CODE_FLOAT:
      return "float";
    case CBIR_CODE_BITS:
      return "bits";
  }
  return "unknown";
}

gboolean
cbir_code_type_from_string (const char *s, CbirCodeType *out)
{
  if (g_strcmp0 (s, "float") == 0)
    *out = CBIR_CODE_FLOAT;
  else if (g_strcmp0 (s, "bits") == 0)
    *out = CBIR_CODE_BITS;
  else
    return FALSE;
  return TRUE;
}

guint
cbir_default_threads (void)
{
  const char *env = g_getenv ("CBIR_THREADS");
  if (env && *env) {
    guint64 v = g_ascii_strtoull (env, NULL, 10);
    if (v >= 1 && v <= 256)
      return (guint) v;
  }
  return MAX (1, g_get_num_processors ());
}

gsize
cbir_first_non_finite (const float *v, gsize n)
{
  gsize i = 0;
  /* 16 at a time: a NaN or infinity makes the sum of x - x NaN */
  for (; i + 16 <= n; i += 16) {
    float a = 0.0f;
    for (int l = 0; l < 16; l++)
      a += v[i + l] - v[i + l];
    if (a != 0.0f || a != a)
      break;
  }
  for (; i < n; i++)
    if (!isfinite (v[i]))
      return i;
  return n;
}

guint32
cbir_crc32 (guint32 crc, const void *data, gsize len)
{
  const Bytef *p = data;
  uLong c = crc;
  while (len > 0) {
    uInt part = (uInt) MIN (len, (gsize) 1 << 30);
    c = crc32 (c, p, part);
    p += part;
    len -= part;
  }
  return (guint32) c;
}

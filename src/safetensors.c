/* safetensors reader (mmap + json-glib, full validation) and atomic writer.
 *
 * Format (https://github.com/huggingface/safetensors): 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON object, then the data area. Each
 * tensor entry is {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
 * with offsets relative to the start of the data area; "__metadata__" maps
 * strings to strings.
 *
 * The reader accepts any layout whose tensors lie inside the data area and do
 * not overlap (holes are tolerated). The writer follows the official
 * library's stricter rules so that its files load there too: the data area is
 * contiguous (no holes, nothing after the last tensor), the header is padded
 * with spaces so the data area starts at a multiple of 8, and tensors are
 * laid out by decreasing element size (8-byte types first, then 4-byte, then
 * bytes), insertion order within a size, so every tensor is naturally
 * aligned. The header lists the tensors in data order, metadata keys sorted.
 */
#include "config.h"

#include "cbir/safetensors.h"

#include "atomic-file.h"
#include "json-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

/* Tensor bytes are used in place from the mapping, so the host must be
 * little-endian like the file. (A big-endian port would have to copy and
 * byte-swap in cbir_safetensors_get and the writer.) */
#if G_BYTE_ORDER != G_LITTLE_ENDIAN
#error "safetensors.c assumes a little-endian host"
#endif

/* Same limit as the official implementation. */
#define MAX_HEADER_SIZE ((guint64) 100 * 1000 * 1000)

typedef struct {
  char *name;
  CbirDType dtype;
  guint ndim;
  gint64 shape[CBIR_TENSOR_MAX_DIMS];
  guint64 begin, end;           /* within the data area */
  guint header_index;
} Tensor;

struct _CbirSafetensors {
  char *path;
  GMappedFile *map;
  const guint8 *data;           /* start of the data area */
  guint64 data_len;
  Tensor *tensors;              /* in data order */
  guint n_tensors;
  const char **names;           /* NULL-terminated, borrowed from tensors */
  GHashTable *by_name;          /* name -> Tensor* */
  GHashTable *metadata;         /* char* -> char* */
};

static const struct {
  CbirDType dtype;
  const char *name;
  gsize size;
} dtype_table[] = {
  {CBIR_DTYPE_U8, "U8", 1},
  {CBIR_DTYPE_I32, "I32", 4},
  {CBIR_DTYPE_I64, "I64", 8},
  {CBIR_DTYPE_F32, "F32", 4},
  {CBIR_DTYPE_F64, "F64", 8},
};

gsize
cbir_dtype_size (CbirDType dtype)
{
  for (guint i = 0; i < G_N_ELEMENTS (dtype_table); i++)
    if (dtype_table[i].dtype == dtype)
      return dtype_table[i].size;
  return 0;
}

const char *
cbir_dtype_to_string (CbirDType dtype)
{
  for (guint i = 0; i < G_N_ELEMENTS (dtype_table); i++)
    if (dtype_table[i].dtype == dtype)
      return dtype_table[i].name;
  return "unknown";
}

static gboolean
dtype_from_string (const char *s, CbirDType * out)
{
  for (guint i = 0; i < G_N_ELEMENTS (dtype_table); i++)
    if (g_strcmp0 (dtype_table[i].name, s) == 0) {
      *out = dtype_table[i].dtype;
      return TRUE;
    }
  return FALSE;
}

static char *
shape_to_string (guint ndim, const gint64 * shape)
{
  GString *s = g_string_new ("[");
  for (guint i = 0; i < ndim; i++) {
    if (i)
      g_string_append_c (s, ',');
    if (shape[i] < 0)
      g_string_append_c (s, '*');
    else
      g_string_append_printf (s, "%" G_GINT64_FORMAT, shape[i]);
  }
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* ---------------------------------------------------------------- reader */

void
cbir_safetensors_free (CbirSafetensors * st)
{
  if (!st)
    return;
  for (guint i = 0; i < st->n_tensors; i++)
    g_free (st->tensors[i].name);
  g_free (st->tensors);
  g_free (st->names);
  if (st->by_name)
    g_hash_table_unref (st->by_name);
  if (st->metadata)
    g_hash_table_unref (st->metadata);
  if (st->map)
    g_mapped_file_unref (st->map);
  g_free (st->path);
  g_free (st);
}

/* Counts members per object as the parser reads them, so that duplicate
 * keys (which json-glib silently merges) can be detected afterwards. */
static void
on_object_member (JsonParser * parser, JsonObject * object,
    const char *member_name, gpointer user_data)
{
  GHashTable *counts = user_data;
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (counts, object));
  g_hash_table_insert (counts, object, GUINT_TO_POINTER (n + 1));
}

static gboolean
check_no_duplicates (GHashTable * counts, JsonObject * obj)
{
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (counts, obj));
  return n == json_object_get_size (obj);
}

/* A non-negative JSON integer. */
static gboolean
node_get_uint (JsonNode * node, gint64 * out)
{
  if (!node || !JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (node);
  return *out >= 0;
}

static int
compare_tensors (const void *a, const void *b)
{
  const Tensor *ta = a, *tb = b;
  if (ta->begin != tb->begin)
    return ta->begin < tb->begin ? -1 : 1;
  if (ta->end != tb->end)
    return ta->end < tb->end ? -1 : 1;
  return ta->header_index < tb->header_index ? -1 :
      ta->header_index > tb->header_index;
}

#define FAIL(...) G_STMT_START { \
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, __VA_ARGS__); \
    return FALSE; } G_STMT_END

static gboolean
parse_tensor (const char *path, const char *name, JsonNode * node,
    GHashTable * counts, guint64 data_len, Tensor * t, GError ** error)
{
  JsonObject *obj;
  JsonNode *n;
  JsonArray *arr;
  gint64 b, e;
  guint64 count = 1, nbytes;

  if (!g_utf8_validate (name, -1, NULL))
    FAIL ("%s: tensor name is not valid UTF-8", path);
  if (!JSON_NODE_HOLDS_OBJECT (node))
    FAIL ("%s: tensor '%s': entry is not a JSON object", path, name);
  obj = json_node_get_object (node);
  if (!check_no_duplicates (counts, obj))
    FAIL ("%s: tensor '%s': duplicate key in its entry", path, name);

  n = json_object_get_member (obj, "dtype");
  if (!n || !JSON_NODE_HOLDS_VALUE (n)
      || json_node_get_value_type (n) != G_TYPE_STRING)
    FAIL ("%s: tensor '%s': missing or non-string \"dtype\"", path, name);
  if (!dtype_from_string (json_node_get_string (n), &t->dtype)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "%s: tensor '%s': unsupported dtype \"%s\" (supported: U8, I32, "
        "I64, F32, F64)", path, name, json_node_get_string (n));
    return FALSE;
  }

  n = json_object_get_member (obj, "shape");
  if (!n || !JSON_NODE_HOLDS_ARRAY (n))
    FAIL ("%s: tensor '%s': missing or non-array \"shape\"", path, name);
  arr = json_node_get_array (n);
  if (json_array_get_length (arr) > CBIR_TENSOR_MAX_DIMS)
    FAIL ("%s: tensor '%s': %u dimensions, at most %d supported", path,
        name, json_array_get_length (arr), CBIR_TENSOR_MAX_DIMS);
  t->ndim = json_array_get_length (arr);
  for (guint i = 0; i < t->ndim; i++) {
    if (!node_get_uint (json_array_get_element (arr, i), &t->shape[i]))
      FAIL ("%s: tensor '%s': shape entry %u is not a non-negative integer",
          path, name, i);
    if (!g_uint64_checked_mul (&count, count, (guint64) t->shape[i]))
      FAIL ("%s: tensor '%s': shape's element count overflows", path, name);
  }
  if (!g_uint64_checked_mul (&nbytes, count, cbir_dtype_size (t->dtype)))
    FAIL ("%s: tensor '%s': shape's byte size overflows", path, name);

  n = json_object_get_member (obj, "data_offsets");
  if (!n || !JSON_NODE_HOLDS_ARRAY (n)
      || json_array_get_length (json_node_get_array (n)) != 2)
    FAIL ("%s: tensor '%s': \"data_offsets\" is not [begin, end]", path,
        name);
  arr = json_node_get_array (n);
  if (!node_get_uint (json_array_get_element (arr, 0), &b)
      || !node_get_uint (json_array_get_element (arr, 1), &e))
    FAIL ("%s: tensor '%s': \"data_offsets\" are not non-negative integers",
        path, name);
  if (b > e)
    FAIL ("%s: tensor '%s': data_offsets [%" G_GINT64_FORMAT ", %"
        G_GINT64_FORMAT "] end before begin", path, name, b, e);
  if ((guint64) e > data_len)
    FAIL ("%s: tensor '%s': data_offsets [%" G_GINT64_FORMAT ", %"
        G_GINT64_FORMAT "] past the end of the data (%" G_GUINT64_FORMAT
        " bytes; truncated file?)", path, name, b, e, data_len);
  if ((guint64) (e - b) != nbytes) {
    g_autofree char *s = shape_to_string (t->ndim, t->shape);
    FAIL ("%s: tensor '%s': data_offsets span %" G_GINT64_FORMAT
        " bytes but %s %s needs %" G_GUINT64_FORMAT, path, name, e - b,
        cbir_dtype_to_string (t->dtype), s, nbytes);
  }
  t->begin = b;
  t->end = e;
  return TRUE;
}

static gboolean
parse_header (CbirSafetensors * st, const char *json, gsize len,
    GError ** error)
{
  const char *path = st->path;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GHashTable) counts = g_hash_table_new (NULL, NULL);
  g_autoptr (GError) jerr = NULL;
  g_autoptr (GList) members = NULL;
  JsonNode *root;
  JsonObject *obj;
  guint n = 0, idx = 0;

  if (!g_utf8_validate_len (json, len, NULL))
    FAIL ("%s: header is not valid UTF-8", path);
  g_signal_connect (parser, "object-member", G_CALLBACK (on_object_member),
      counts);
  if (!cbir_json_parse_strict (parser, json, len, &jerr))
    FAIL ("%s: header is not valid JSON: %s", path, jerr->message);
  root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    FAIL ("%s: header is not a JSON object", path);
  obj = json_node_get_object (root);
  if (!check_no_duplicates (counts, obj))
    FAIL ("%s: header has duplicate names", path);

  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
      g_free);
  members = json_object_get_members (obj);
  n = g_list_length (members);
  st->tensors = g_new0 (Tensor, n + 1);
  for (GList * l = members; l; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (obj, name);

    if (strcmp (name, "__metadata__") == 0) {
      JsonObject *md;
      g_autoptr (GList) keys = NULL;
      if (!JSON_NODE_HOLDS_OBJECT (node))
        FAIL ("%s: \"__metadata__\" is not a JSON object", path);
      md = json_node_get_object (node);
      if (!check_no_duplicates (counts, md))
        FAIL ("%s: \"__metadata__\" has duplicate keys", path);
      keys = json_object_get_members (md);
      for (GList * k = keys; k; k = k->next) {
        JsonNode *v = json_object_get_member (md, k->data);
        if (!JSON_NODE_HOLDS_VALUE (v)
            || json_node_get_value_type (v) != G_TYPE_STRING)
          FAIL ("%s: metadata '%s' is not a string", path,
              (const char *) k->data);
        g_hash_table_insert (st->metadata, g_strdup (k->data),
            g_strdup (json_node_get_string (v)));
      }
      continue;
    }

    Tensor *t = &st->tensors[st->n_tensors];
    if (!parse_tensor (path, name, node, counts, st->data_len, t, error))
      return FALSE;
    t->name = g_strdup (name);
    t->header_index = idx++;
    st->n_tensors++;
  }

  qsort (st->tensors, st->n_tensors, sizeof (Tensor), compare_tensors);
  for (guint i = 1; i < st->n_tensors; i++) {
    const Tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
    /* empty tensors overlap nothing */
    if (a->end > b->begin && a->end > a->begin && b->end > b->begin)
      FAIL ("%s: tensors '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
          ") and '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
          ") overlap", path, a->name, a->begin, a->end, b->name, b->begin,
          b->end);
  }

  st->names = g_new0 (const char *, st->n_tensors + 1);
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < st->n_tensors; i++) {
    st->names[i] = st->tensors[i].name;
    g_hash_table_insert (st->by_name, st->tensors[i].name, &st->tensors[i]);
  }
  return TRUE;
}

#undef FAIL

CbirSafetensors *
cbir_safetensors_open (const char *path, GError ** error)
{
  g_autoptr (CbirSafetensors) st = g_new0 (CbirSafetensors, 1);
  g_autoptr (GError) merr = NULL;
  const guint8 *bytes;
  gsize size;
  guint64 hlen;

  g_return_val_if_fail (path != NULL, NULL);
  st->path = g_strdup (path);
  st->map = g_mapped_file_new (path, FALSE, &merr);
  if (!st->map) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot open: %s",
        path, merr->message);
    return NULL;
  }
  bytes = (const guint8 *) g_mapped_file_get_contents (st->map);
  size = g_mapped_file_get_length (st->map);
  if (size < 8) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: file is %" G_GSIZE_FORMAT " bytes, too short for a safetensors "
        "header", path, size);
    return NULL;
  }
  memcpy (&hlen, bytes, 8);
  hlen = GUINT64_FROM_LE (hlen);
  if (hlen > size - 8) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: header length %" G_GUINT64_FORMAT " past end of file (%"
        G_GSIZE_FORMAT " bytes)", path, hlen, size);
    return NULL;
  }
  if (hlen > MAX_HEADER_SIZE) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: header length %" G_GUINT64_FORMAT " too large (limit %"
        G_GUINT64_FORMAT ")", path, hlen, MAX_HEADER_SIZE);
    return NULL;
  }
  if (hlen < 2) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: header length %" G_GUINT64_FORMAT " too small for a JSON "
        "object", path, hlen);
    return NULL;
  }
  st->data = bytes + 8 + hlen;
  st->data_len = size - 8 - hlen;
  if (!parse_header (st, (const char *) bytes + 8, hlen, error))
    return NULL;
  return g_steal_pointer (&st);
}

const char *
cbir_safetensors_get_path (const CbirSafetensors * st)
{
  return st->path;
}

const char *
cbir_safetensors_get_metadata (const CbirSafetensors * st, const char *key)
{
  return g_hash_table_lookup (st->metadata, key);
}

const char *const *
cbir_safetensors_list (const CbirSafetensors * st)
{
  return st->names;
}

static void
fill_view (const CbirSafetensors * st, const Tensor * t, CbirTensorView * out)
{
  out->name = t->name;
  out->dtype = t->dtype;
  out->ndim = t->ndim;
  memset (out->shape, 0, sizeof (out->shape));
  memcpy (out->shape, t->shape, t->ndim * sizeof (gint64));
  out->data = st->data + t->begin;
  out->nbytes = t->end - t->begin;
}

gboolean
cbir_safetensors_get (const CbirSafetensors * st, const char *name,
    CbirTensorView * out)
{
  const Tensor *t;

  g_return_val_if_fail (st != NULL && name != NULL, FALSE);
  t = g_hash_table_lookup (st->by_name, name);
  if (!t)
    return FALSE;
  if (out)
    fill_view (st, t, out);
  return TRUE;
}

gboolean
cbir_safetensors_require (const CbirSafetensors * st, const char *name,
    CbirDType dtype, guint ndim, const gint64 * shape, CbirTensorView * out,
    GError ** error)
{
  const Tensor *t;
  gboolean ok;

  g_return_val_if_fail (st != NULL && name != NULL, FALSE);
  g_return_val_if_fail (ndim == 0 || shape != NULL, FALSE);
  t = g_hash_table_lookup (st->by_name, name);
  if (!t) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: tensor '%s' missing", st->path, name);
    return FALSE;
  }
  if (t->dtype != dtype) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: tensor '%s' has dtype %s, expected %s", st->path, name,
        cbir_dtype_to_string (t->dtype), cbir_dtype_to_string (dtype));
    return FALSE;
  }
  ok = t->ndim == ndim;
  for (guint i = 0; ok && i < ndim; i++)
    if (shape[i] >= 0 && shape[i] != t->shape[i])
      ok = FALSE;
  if (!ok) {
    g_autofree char *found = shape_to_string (t->ndim, t->shape);
    g_autofree char *want = shape_to_string (ndim, shape);
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: tensor '%s' has shape %s, expected %s", st->path, name, found,
        want);
    return FALSE;
  }
  if (out)
    fill_view (st, t, out);
  return TRUE;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
  char *name;
  CbirDType dtype;
  guint ndim;
  gint64 shape[CBIR_TENSOR_MAX_DIMS];
  const void *data;
  guint64 nbytes;
  guint64 begin;
} WTensor;

struct _CbirSafetensorsWriter {
  GArray *tensors;              /* WTensor */
  GHashTable *metadata;         /* char* -> char* */
  char *error;                  /* first misuse, reported by write */
};

static void
wtensor_clear (gpointer p)
{
  WTensor *t = p;
  g_free (t->name);
}

CbirSafetensorsWriter *
cbir_safetensors_writer_new (void)
{
  CbirSafetensorsWriter *w = g_new0 (CbirSafetensorsWriter, 1);
  w->tensors = g_array_new (FALSE, TRUE, sizeof (WTensor));
  g_array_set_clear_func (w->tensors, wtensor_clear);
  w->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
      g_free);
  return w;
}

void
cbir_safetensors_writer_free (CbirSafetensorsWriter * w)
{
  if (!w)
    return;
  g_array_unref (w->tensors);
  g_hash_table_unref (w->metadata);
  g_free (w->error);
  g_free (w);
}

static void
writer_misuse (CbirSafetensorsWriter * w, char *msg)
{
  if (!w->error)
    w->error = msg;
  else
    g_free (msg);
}

void
cbir_safetensors_writer_set_metadata (CbirSafetensorsWriter * w,
    const char *key, const char *value)
{
  g_return_if_fail (w != NULL && key != NULL && value != NULL);
  if (!g_utf8_validate (key, -1, NULL) || !g_utf8_validate (value, -1, NULL)) {
    writer_misuse (w, g_strdup ("metadata key or value is not valid UTF-8"));
    return;
  }
  g_hash_table_insert (w->metadata, g_strdup (key), g_strdup (value));
}

void
cbir_safetensors_writer_add (CbirSafetensorsWriter * w, const char *name,
    CbirDType dtype, guint ndim, const gint64 * shape, const void *data)
{
  WTensor t = { 0 };
  guint64 count = 1;

  g_return_if_fail (w != NULL && name != NULL);
  if (!g_utf8_validate (name, -1, NULL) || !*name
      || strcmp (name, "__metadata__") == 0) {
    writer_misuse (w, g_strdup_printf ("invalid tensor name '%s'", name));
    return;
  }
  for (guint i = 0; i < w->tensors->len; i++)
    if (strcmp (g_array_index (w->tensors, WTensor, i).name, name) == 0) {
      writer_misuse (w, g_strdup_printf ("tensor '%s' added twice", name));
      return;
    }
  if (cbir_dtype_size (dtype) == 0) {
    writer_misuse (w, g_strdup_printf ("tensor '%s': invalid dtype %d",
            name, (int) dtype));
    return;
  }
  if (ndim > CBIR_TENSOR_MAX_DIMS || (ndim > 0 && !shape)) {
    writer_misuse (w, g_strdup_printf ("tensor '%s': invalid shape (%u "
            "dimensions)", name, ndim));
    return;
  }
  for (guint i = 0; i < ndim; i++) {
    if (shape[i] < 0 || !g_uint64_checked_mul (&count, count, shape[i])) {
      writer_misuse (w, g_strdup_printf ("tensor '%s': invalid shape", name));
      return;
    }
    t.shape[i] = shape[i];
  }
  if (!g_uint64_checked_mul (&t.nbytes, count, cbir_dtype_size (dtype))
      || t.nbytes > G_MAXSSIZE) {
    writer_misuse (w, g_strdup_printf ("tensor '%s': too large", name));
    return;
  }
  if (t.nbytes > 0 && !data) {
    writer_misuse (w, g_strdup_printf ("tensor '%s': no data", name));
    return;
  }
  t.name = g_strdup (name);
  t.dtype = dtype;
  t.ndim = ndim;
  t.data = data;
  g_array_append_val (w->tensors, t);
}

static void
json_append_string (GString * s, const char *str)
{
  g_string_append_c (s, '"');
  for (const unsigned char *p = (const unsigned char *) str; *p; p++) {
    switch (*p) {
      case '"':
        g_string_append (s, "\\\"");
        break;
      case '\\':
        g_string_append (s, "\\\\");
        break;
      case '\n':
        g_string_append (s, "\\n");
        break;
      case '\t':
        g_string_append (s, "\\t");
        break;
      case '\r':
        g_string_append (s, "\\r");
        break;
      default:
        if (*p < 0x20)
          g_string_append_printf (s, "\\u%04x", *p);
        else
          g_string_append_c (s, *p);
    }
  }
  g_string_append_c (s, '"');
}

static gboolean
write_all (int fd, const void *buf, guint64 len, const char *path,
    GError ** error)
{
  const guint8 *p = buf;
  while (len > 0) {
    gsize chunk = MIN (len, (guint64) 1 << 30);
    ssize_t r = write (fd, p, chunk);
    if (r < 0) {
      int e = errno;
      if (e == EINTR)
        continue;
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: write failed: %s",
          path, g_strerror (e));
      return FALSE;
    }
    p += r;
    len -= r;
  }
  return TRUE;
}

/* Order in the data area: decreasing element size, then insertion order. */
static int
compare_wtensors (const void *a, const void *b)
{
  const WTensor *ta = *(const WTensor * const *) a;
  const WTensor *tb = *(const WTensor * const *) b;
  gsize sa = cbir_dtype_size (ta->dtype), sb = cbir_dtype_size (tb->dtype);
  if (sa != sb)
    return sa > sb ? -1 : 1;
  return ta < tb ? -1 : ta > tb;
}

gboolean
cbir_safetensors_writer_write (CbirSafetensorsWriter * w, const char *path,
    GError ** error)
{
  g_autoptr (GString) h = g_string_new ("{");
  g_autofree WTensor **order = NULL;
  CbirAtomicFile af;
  g_autoptr (GList) keys = NULL;
  guint64 offset = 0, hlen_le;
  gboolean first = TRUE;
  guint n = w->tensors->len;
  int fd;

  g_return_val_if_fail (w != NULL && path != NULL, FALSE);
  if (w->error) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: not written: %s", path, w->error);
    return FALSE;
  }

  /* header */
  keys = g_hash_table_get_keys (w->metadata);
  keys = g_list_sort (keys, (GCompareFunc) strcmp);
  if (keys) {
    g_string_append (h, "\"__metadata__\":{");
    for (GList * l = keys; l; l = l->next) {
      if (l != keys)
        g_string_append_c (h, ',');
      json_append_string (h, l->data);
      g_string_append_c (h, ':');
      json_append_string (h, g_hash_table_lookup (w->metadata, l->data));
    }
    g_string_append_c (h, '}');
    first = FALSE;
  }
  order = g_new (WTensor *, n + 1);
  for (guint i = 0; i < n; i++)
    order[i] = &g_array_index (w->tensors, WTensor, i);
  qsort (order, n, sizeof (WTensor *), compare_wtensors);
  for (guint i = 0; i < n; i++) {
    WTensor *t = order[i];
    if (!first)
      g_string_append_c (h, ',');
    first = FALSE;
    t->begin = offset;
    json_append_string (h, t->name);
    g_string_append_printf (h, ":{\"dtype\":\"%s\",\"shape\":[",
        cbir_dtype_to_string (t->dtype));
    for (guint d = 0; d < t->ndim; d++)
      g_string_append_printf (h, "%s%" G_GINT64_FORMAT, d ? "," : "",
          t->shape[d]);
    g_string_append_printf (h, "],\"data_offsets\":[%" G_GUINT64_FORMAT
        ",%" G_GUINT64_FORMAT "]}", offset, offset + t->nbytes);
    offset += t->nbytes;
  }
  g_string_append_c (h, '}');
  while ((8 + h->len) % 8 != 0)
    g_string_append_c (h, ' ');

  /* temp file in the target's directory, then rename */
  if (!cbir_atomic_file_open (&af, path, 0666, error))
    return FALSE;
  fd = af.fd;

  hlen_le = GUINT64_TO_LE ((guint64) h->len);
  if (!write_all (fd, &hlen_le, 8, path, error)
      || !write_all (fd, h->str, h->len, path, error))
    goto fail;
  for (guint i = 0; i < n; i++)
    if (order[i]->nbytes
        && !write_all (fd, order[i]->data, order[i]->nbytes, path, error))
      goto fail;
  return cbir_atomic_file_commit (&af, error);

fail:
  cbir_atomic_file_abort (&af);
  return FALSE;
}

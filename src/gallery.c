/* Gallery files: a safetensors file (see include/cbir/gallery.h for the
 * layout) opened with mmap, validated once, immutable afterwards, and a
 * builder that collects items and writes a gallery atomically. */
#include "cbir/gallery.h"
#include "cbir/diffusion.h"
#include "cbir/safetensors.h"
#include "cbir/search.h"
#include "atomic-file.h"
#include "json-util.h"

#include <json-glib/json-glib.h>
#include <stdlib.h>
#include <string.h>

#define GALLERY_FORMAT "gst-cbir-gallery"
#define GALLERY_VERSION "1"
#define THUMB_SIZE (CBIR_GALLERY_THUMB_WIDTH * CBIR_GALLERY_THUMB_HEIGHT)

struct _CbirGallery
{
  char *path;                   /* "(memory)" for in-memory galleries */
  CbirSafetensors *st;          /* NULL for in-memory galleries */
  guint n;
  guint dim;                    /* 0 if no features */
  guint code_bytes;             /* 0 if no codes */
  guint code_bits;              /* 0 if no codes */
  CbirCodeType code_type;
  char *fingerprint;
  char *metric;
  const float *features;
  const guint8 *codes;
  const float *thresholds;
  const gint32 *labels;
  const guint8 *thumbnails;
  const char **ids;             /* n pointers (NULL for empty ids), or NULL */
  char **label_names;           /* NULL-terminated, or NULL */
  guint n_label_names;
  const float *features_raw;    /* un-augmented features (DBA), or NULL */
  gboolean thresholds_median;   /* "bit_thresholds_rule" is "median" */
  guint dba_k;                  /* 0: no DBA */
  float dba_alpha;
  CbirGraph *graph;             /* the k-NN graph, or NULL */
  gboolean graph_k_auto;        /* its k came from the size rule */
  /* Owned copies: unaligned tensors of a foreign file, or in-memory data. */
  gpointer owned[12];
};

static void
gallery_own (CbirGallery *g, gpointer p)
{
  for (guint i = 0; i < G_N_ELEMENTS (g->owned); i++) {
    if (!g->owned[i]) {
      g->owned[i] = p;
      return;
    }
  }
  g_assert_not_reached ();
}

void
cbir_gallery_free (CbirGallery *g)
{
  if (!g)
    return;
  g_free (g->path);
  if (g->st)
    cbir_safetensors_free (g->st);
  g_free (g->fingerprint);
  g_free (g->metric);
  g_free (g->ids);
  g_strfreev (g->label_names);
  cbir_graph_free (g->graph);
  for (guint i = 0; i < G_N_ELEMENTS (g->owned); i++)
    g_free (g->owned[i]);
  g_free (g);
}

/* Returns data aligned to `align` bytes, copying when the file's offset is
 * not aligned (files written by other tools). */
static const void *
aligned_data (CbirGallery *g, const CbirTensorView *v, gsize align)
{
  if (((guintptr) v->data) % align == 0)
    return v->data;
  gpointer copy = g_malloc (MAX (v->nbytes, 1));
  memcpy (copy, v->data, v->nbytes);
  gallery_own (g, copy);
  return copy;
}

static gboolean
parse_label_names (CbirGallery *g, const char *json, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) jerr = NULL;
  if (!cbir_json_parse_strict (parser, json, -1, &jerr)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: label_names is not valid JSON: %s", g->path, jerr->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_ARRAY (root)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: label_names is not a JSON array", g->path);
    return FALSE;
  }
  JsonArray *arr = json_node_get_array (root);
  guint n = json_array_get_length (arr);
  g_auto (GStrv) names = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element (arr, i);
    if (!JSON_NODE_HOLDS_VALUE (e)
        || json_node_get_value_type (e) != G_TYPE_STRING) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: label_names[%u] is not a string", g->path, i);
      return FALSE;
    }
    names[i] = g_strdup (json_node_get_string (e));
  }
  g->label_names = g_steal_pointer (&names);
  g->n_label_names = n;
  return TRUE;
}

static char *
label_names_to_json (char **names, guint n)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_array (b);
  for (guint i = 0; i < n; i++)
    json_builder_add_string_value (b, names[i] ? names[i] : "");
  json_builder_end_array (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static gboolean
metric_name_valid (const char *m)
{
  return g_strcmp0 (m, "l2") == 0 || g_strcmp0 (m, "cosine") == 0
      || g_strcmp0 (m, "hamming") == 0;
}

/* Splits the "ids" blob into n NUL-terminated strings. */
static gboolean
parse_ids (CbirGallery *g, const CbirTensorView *v, GError **error)
{
  const char *p = v->data;
  gsize len = v->nbytes;
  if (len == 0 || p[len - 1] != '\0') {
    if (g->n == 0 && len == 0)
      return TRUE;
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: tensor \"ids\" does not end with a NUL byte", g->path);
    return FALSE;
  }
  gsize count = 0;
  for (gsize i = 0; i < len; i++)
    count += p[i] == '\0';
  if (count != g->n) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: tensor \"ids\" holds %" G_GSIZE_FORMAT " ids for %u items",
        g->path, count, g->n);
    return FALSE;
  }
  g->ids = g_new (const char *, MAX (g->n, 1));
  gsize off = 0;
  for (guint i = 0; i < g->n; i++) {
    g->ids[i] = p[off] ? p + off : NULL;
    off += strlen (p + off) + 1;
  }
  return TRUE;
}

/* Metadata settings "key=value,key=value": each part stripped and split
 * at its first '='. NULL for a part without '=', a repeated key or a key
 * not in `known` (NULL-terminated). */
static GHashTable *
parse_settings (const char *text, const char *const *known)
{
  g_auto (GStrv) parts = g_strsplit (text, ",", -1);
  g_autoptr (GHashTable) t = g_hash_table_new_full (g_str_hash, g_str_equal,
      g_free, g_free);
  for (guint i = 0; parts[i]; i++) {
    char *p = g_strstrip (parts[i]);
    char *eq = strchr (p, '=');
    if (!eq)
      return NULL;
    *eq = '\0';
    if (!g_strv_contains (known, p) || g_hash_table_contains (t, p))
      return NULL;
    g_hash_table_insert (t, g_strdup (p), g_strdup (eq + 1));
  }
  return g_steal_pointer (&t);
}

/* An unsigned setting in min..max; FALSE when missing or bad. */
static gboolean
setting_uint (GHashTable *t, const char *key, guint64 min, guint64 max,
    guint *out)
{
  const char *v = g_hash_table_lookup (t, key);
  guint64 x;
  if (!v || !g_ascii_string_to_unsigned (v, 10, min, max, &x, NULL))
    return FALSE;
  *out = (guint) x;
  return TRUE;
}

/* A number setting (the whole value); FALSE when missing or bad. */
static gboolean
setting_double (GHashTable *t, const char *key, double *out)
{
  const char *v = g_hash_table_lookup (t, key);
  char *end = NULL;
  if (!v)
    return FALSE;
  *out = g_ascii_strtod (v, &end);
  return end != v && *end == '\0';
}

/* "k=K,alpha=A" (K >= 0, 0 <= A <= 1000). */
static gboolean
parse_dba (const char *text, guint *k, float *alpha)
{
  static const char *const keys[] = { "k", "alpha", NULL };
  g_autoptr (GHashTable) t = parse_settings (text, keys);
  double a;
  if (!t || !setting_uint (t, "k", 0, G_MAXINT32, k)
      || !setting_double (t, "alpha", &a) || !(a >= 0 && a <= 1000))
    return FALSE;
  *alpha = (float) a;
  return TRUE;
}

static char *
format_dba (guint k, float alpha)
{
  char num[G_ASCII_DTOSTR_BUF_SIZE];
  g_ascii_formatd (num, sizeof (num), "%.9g", alpha);
  return g_strdup_printf ("k=%u,alpha=%s", k, num);
}

/* "k=K,power=P,rule=auto|fixed[,rank=R]" */
static gboolean
parse_graph_meta (const char *text, guint *k, float *power, gboolean *k_auto,
    guint *rank)
{
  static const char *const keys[] = { "k", "power", "rule", "rank", NULL };
  g_autoptr (GHashTable) t = parse_settings (text, keys);
  double p;
  if (!t || !setting_uint (t, "k", 0, CBIR_GRAPH_MAX_K, k)
      || !setting_double (t, "power", &p)
      || !(p > 0 && p <= CBIR_GRAPH_MAX_POWER))
    return FALSE;
  *power = (float) p;
  const char *rule = g_hash_table_lookup (t, "rule");
  if (g_strcmp0 (rule, "auto") != 0 && g_strcmp0 (rule, "fixed") != 0)
    return FALSE;
  *k_auto = g_str_equal (rule, "auto");
  *rank = 0;
  return !g_hash_table_contains (t, "rank")
      || setting_uint (t, "rank", 1, 4096, rank);
}

static char *
format_graph_meta (guint k, float power, gboolean k_auto, guint rank)
{
  char num[G_ASCII_DTOSTR_BUF_SIZE];
  g_ascii_formatd (num, sizeof (num), "%.9g", power);
  g_autofree char *r = rank ? g_strdup_printf (",rank=%u", rank)
      : g_strdup ("");
  return g_strdup_printf ("k=%u,power=%s,rule=%s%s", k, num,
      k_auto ? "auto" : "fixed", r);
}

/* The CRC the file records: the graph's three tensors, then the
 * spectrum's two when present. */
static guint32
graph_crc (const CbirGraph *g)
{
  guint32 crc = cbir_graph_checksum (g);
  guint r = cbir_graph_get_rank (g);
  if (r) {
    crc = cbir_crc32 (crc, cbir_graph_get_eigenvectors (g),
        sizeof (float) * (gsize) cbir_graph_size (g) * r);
    crc = cbir_crc32 (crc, cbir_graph_get_eigenvalues (g),
        sizeof (float) * r);
  }
  return crc;
}

/* The graph tensors of an open file: all three with metadata "graph" and
 * "graph_crc32", or none. */
static gboolean
open_graph (CbirGallery *g, CbirSafetensors *st, GError **error)
{
  static const char *const names[] = { "graph_offsets", "graph_neighbours",
    "graph_weights"
  };
  const char *meta = cbir_safetensors_get_metadata (st, "graph");
  if (!meta) {
    CbirTensorView v;
    for (guint i = 0; i < G_N_ELEMENTS (names); i++)
      if (cbir_safetensors_get (st, names[i], &v)) {
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
            "%s: tensor \"%s\" without metadata \"graph\"", g->path,
            names[i]);
        return FALSE;
      }
    return TRUE;
  }
  guint k = 0, rank = 0;
  float power = 0;
  if (!parse_graph_meta (meta, &k, &power, &g->graph_k_auto, &rank)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: bad metadata \"graph\" \"%s\" (expected "
        "\"k=K,power=P,rule=auto|fixed[,rank=R]\")", g->path, meta);
    return FALSE;
  }
  if (!g->features) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: a graph but no \"features\" tensor", g->path);
    return FALSE;
  }
  CbirTensorView vo, vn, vw;
  gint64 s_off[1] = { (gint64) g->n + 1 }, s_any[1] = { -1 };
  if (!cbir_safetensors_require (st, "graph_offsets", CBIR_DTYPE_I32, 1,
          s_off, &vo, error)
      || !cbir_safetensors_require (st, "graph_neighbours", CBIR_DTYPE_I32,
          1, s_any, &vn, error))
    return FALSE;
  gint64 s_w[1] = { vn.shape[0] };
  if (!cbir_safetensors_require (st, "graph_weights", CBIR_DTYPE_F32, 1,
          s_w, &vw, error))
    return FALSE;
  const char *crc_text = cbir_safetensors_get_metadata (st, "graph_crc32");
  guint64 crc_file = 0;
  if (!crc_text || !g_ascii_string_to_unsigned (crc_text, 16, 0,
          G_MAXUINT32, &crc_file, NULL)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: metadata \"graph_crc32\" is %s (expected 8 hex digits)",
        g->path, crc_text ? crc_text : "missing");
    return FALSE;
  }
  CbirTensorView vu = { 0 }, vl = { 0 };
  if (rank > 0) {
    gint64 s_u[2] = { g->n, rank }, s_l[1] = { rank };
    if (!cbir_safetensors_require (st, "graph_eigenvectors", CBIR_DTYPE_F32,
            2, s_u, &vu, error)
        || !cbir_safetensors_require (st, "graph_eigenvalues",
            CBIR_DTYPE_F32, 1, s_l, &vl, error))
      return FALSE;
  } else if (cbir_safetensors_get (st, "graph_eigenvectors", &vu)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: tensor \"graph_eigenvectors\" without a rank in metadata "
        "\"graph\"", g->path);
    return FALSE;
  }
  /* the CRC first: a flipped bit is reported as what it is */
  guint32 crc = 0;
  const CbirTensorView *views[5] = { &vo, &vn, &vw, &vu, &vl };
  for (guint i = 0; i < (rank > 0 ? 5u : 3u); i++)
    crc = cbir_crc32 (crc, views[i]->data, views[i]->nbytes);
  if (crc != (guint32) crc_file) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: the graph is corrupt (CRC-32 %08x, the file records %08x)",
        g->path, crc, (guint32) crc_file);
    return FALSE;
  }
  const gint32 *off = aligned_data (g, &vo, 4);
  const gint32 *nb = aligned_data (g, &vn, 4);
  const float *w = aligned_data (g, &vw, 4);
  g_autoptr (CbirGraph) graph = cbir_graph_new_borrowed (g->n, k, power,
      off, nb, w, (gsize) vn.shape[0], g->path, error);
  if (!graph)
    return FALSE;
  if (rank > 0 && !cbir_graph_set_spectrum (graph, rank,
          aligned_data (g, &vu, 4), aligned_data (g, &vl, 4), g->path,
          error))
    return FALSE;
  g->graph = g_steal_pointer (&graph);
  return TRUE;
}

/* Checks everything but the tensors' presence; shared by open and the
 * in-memory constructor. */
static gboolean
gallery_check_shapes (CbirGallery *g, GError **error)
{
  if (g->code_type == CBIR_CODE_FLOAT && !g->features) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: code type \"float\" but no \"features\" tensor", g->path);
    return FALSE;
  }
  if (g->code_type == CBIR_CODE_BITS && !g->codes) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: code type \"bits\" but no \"codes\" tensor", g->path);
    return FALSE;
  }
  if (g->codes) {
    if (g->code_bits == 0 || (g->code_bits + 7) / 8 != g->code_bytes) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: %u code bits do not fit %u code bytes", g->path,
          g->code_bits, g->code_bytes);
      return FALSE;
    }
    if (g->features && g->code_bits != g->dim) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: %u code bits for %u feature dimensions", g->path,
          g->code_bits, g->dim);
      return FALSE;
    }
  }
  return TRUE;
}

/* A NaN or infinite value in a float tensor would make any query match
 * (or never match) it: refused, naming the tensor and the item (row). */
static gboolean
check_finite (const CbirGallery *g, const char *name, const float *v,
    gsize n, guint row_len, GError **error)
{
  gsize at = cbir_first_non_finite (v, n);
  if (at == n)
    return TRUE;
  if (row_len)
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "%s: tensor \"%s\" "
        "holds NaN or infinite values (item %" G_GSIZE_FORMAT ")", g->path,
        name, at / row_len);
  else
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "%s: tensor \"%s\" "
        "holds NaN or infinite values", g->path, name);
  return FALSE;
}

CbirGallery *
cbir_gallery_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (path, error);
  if (!st)
    return NULL;

  g_autoptr (CbirGallery) g = g_new0 (CbirGallery, 1);
  g->path = g_strdup (path);

  const char *format = cbir_safetensors_get_metadata (st, "format");
  if (g_strcmp0 (format, GALLERY_FORMAT) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: not a gallery file (metadata \"format\" is %s%s%s, expected "
        "\"" GALLERY_FORMAT "\")", path, format ? "\"" : "",
        format ? format : "missing", format ? "\"" : "");
    return NULL;
  }
  const char *version = cbir_safetensors_get_metadata (st, "version");
  if (!version) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: metadata \"version\" missing", path);
    return NULL;
  }
  if (g_strcmp0 (version, GALLERY_VERSION) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "%s: gallery format version %s is not supported (this build reads "
        "version " GALLERY_VERSION ")", path, version);
    return NULL;
  }
  const char *fp = cbir_safetensors_get_metadata (st, "model_fingerprint");
  if (!fp || !*fp) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: metadata \"model_fingerprint\" missing", path);
    return NULL;
  }
  g->fingerprint = g_strdup (fp);
  const char *ct = cbir_safetensors_get_metadata (st, "code_type");
  if (!ct || !cbir_code_type_from_string (ct, &g->code_type)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: metadata \"code_type\" is %s (expected \"float\" or \"bits\")",
        path, ct ? ct : "missing");
    return NULL;
  }
  const char *metric = cbir_safetensors_get_metadata (st, "metric");
  if (metric && !metric_name_valid (metric)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: unknown metric \"%s\"", path, metric);
    return NULL;
  }
  g->metric = g_strdup (metric ? metric
      : g->code_type == CBIR_CODE_BITS ? "hamming" : "l2");

  /* labels define N */
  CbirTensorView v;
  gint64 shp[3] = { -1, -1, -1 };
  if (!cbir_safetensors_require (st, "labels", CBIR_DTYPE_I32, 1, shp, &v,
          error))
    return NULL;
  if (v.shape[0] > G_MAXINT32) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: too many items (%" G_GINT64_FORMAT ")", path, v.shape[0]);
    return NULL;
  }
  g->n = (guint) v.shape[0];
  g->labels = aligned_data (g, &v, 4);

  if (cbir_safetensors_get (st, "features", &v)) {
    gint64 s[2] = { g->n, -1 };
    if (!cbir_safetensors_require (st, "features", CBIR_DTYPE_F32, 2, s, &v,
            error))
      return NULL;
    if (v.shape[1] <= 0 || v.shape[1] > (1 << 24)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: tensor \"features\" has a bad dimension %" G_GINT64_FORMAT,
          path, v.shape[1]);
      return NULL;
    }
    g->dim = (guint) v.shape[1];
    g->features = aligned_data (g, &v, 4);
    if (!check_finite (g, "features", g->features, (gsize) g->n * g->dim,
            g->dim, error))
      return NULL;
  }
  if (cbir_safetensors_get (st, "codes", &v)) {
    gint64 s[2] = { g->n, -1 };
    if (!cbir_safetensors_require (st, "codes", CBIR_DTYPE_U8, 2, s, &v,
            error))
      return NULL;
    if (v.shape[1] <= 0 || v.shape[1] > (1 << 20)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: tensor \"codes\" has a bad width %" G_GINT64_FORMAT, path,
          v.shape[1]);
      return NULL;
    }
    g->code_bytes = (guint) v.shape[1];
    g->codes = v.data;
  }
  if (!g->features && !g->codes) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: neither \"features\" nor \"codes\" tensor present", path);
    return NULL;
  }
  if (cbir_safetensors_get (st, "bit_thresholds", &v)) {
    if (!cbir_safetensors_require (st, "bit_thresholds", CBIR_DTYPE_F32, 1,
            shp, &v, error))
      return NULL;
    if (v.shape[0] <= 0 || (g->features && v.shape[0] != g->dim)
        || (g->codes && (v.shape[0] + 7) / 8 != g->code_bytes)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: tensor \"bit_thresholds\" has %" G_GINT64_FORMAT
          " values for %u dimensions and %u code bytes", path, v.shape[0],
          g->dim, g->code_bytes);
      return NULL;
    }
    g->thresholds = aligned_data (g, &v, 4);
    if (!check_finite (g, "bit_thresholds", g->thresholds, v.shape[0], 0,
            error))
      return NULL;
    g->code_bits = (guint) v.shape[0];
  }
  if (g->codes && g->code_bits == 0) {
    const char *cb = cbir_safetensors_get_metadata (st, "code_bits");
    if (cb) {
      guint64 bits = 0;
      if (!g_ascii_string_to_unsigned (cb, 10, 1, (guint64) g->code_bytes * 8,
              &bits, NULL)) {
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
            "%s: bad metadata \"code_bits\" \"%s\"", path, cb);
        return NULL;
      }
      g->code_bits = (guint) bits;
    } else {
      g->code_bits = g->features ? g->dim : g->code_bytes * 8;
    }
  }
  if (cbir_safetensors_get (st, "thumbnails", &v)) {
    gint64 s[3] = { g->n, CBIR_GALLERY_THUMB_HEIGHT, CBIR_GALLERY_THUMB_WIDTH };
    if (!cbir_safetensors_require (st, "thumbnails", CBIR_DTYPE_U8, 3, s, &v,
            error))
      return NULL;
    g->thumbnails = v.data;
  }
  if (cbir_safetensors_get (st, "ids", &v)) {
    if (!cbir_safetensors_require (st, "ids", CBIR_DTYPE_U8, 1, shp, &v,
            error))
      return NULL;
    if (!parse_ids (g, &v, error))
      return NULL;
  }
  if (cbir_safetensors_get (st, "features_raw", &v)) {
    gint64 s[2] = { g->n, g->dim };
    if (!g->features) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: tensor \"features_raw\" without \"features\"", path);
      return NULL;
    }
    if (!cbir_safetensors_require (st, "features_raw", CBIR_DTYPE_F32, 2, s,
            &v, error))
      return NULL;
    g->features_raw = aligned_data (g, &v, 4);
    if (!check_finite (g, "features_raw", g->features_raw,
            (gsize) g->n * g->dim, g->dim, error))
      return NULL;
  }
  const char *dba = cbir_safetensors_get_metadata (st, "dba");
  if (dba && !parse_dba (dba, &g->dba_k, &g->dba_alpha)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: bad metadata \"dba\" \"%s\" (expected \"k=K,alpha=A\")", path,
        dba);
    return NULL;
  }
  if (g->dba_k > 0 && !g->features) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: metadata \"dba\" but no \"features\" tensor", path);
    return NULL;
  }
  g->thresholds_median = g_strcmp0 (cbir_safetensors_get_metadata (st,
          "bit_thresholds_rule"), "median") == 0;
  if (!open_graph (g, st, error))
    return NULL;
  const char *ln = cbir_safetensors_get_metadata (st, "label_names");
  if (ln && !parse_label_names (g, ln, error))
    return NULL;
  if (!gallery_check_shapes (g, error))
    return NULL;

  g->st = g_steal_pointer (&st);
  return g_steal_pointer (&g);
}

const char *
cbir_gallery_get_path (const CbirGallery *g)
{
  return g->path;
}

guint
cbir_gallery_size (const CbirGallery *g)
{
  return g->n;
}

CbirCodeType
cbir_gallery_get_code_type (const CbirGallery *g)
{
  return g->code_type;
}

guint
cbir_gallery_get_dim (const CbirGallery *g)
{
  return g->dim;
}

guint
cbir_gallery_get_code_bytes (const CbirGallery *g)
{
  return g->code_bytes;
}

guint
cbir_gallery_get_code_bits (const CbirGallery *g)
{
  return g->code_bits;
}

const char *
cbir_gallery_get_metric_name (const CbirGallery *g)
{
  return g->metric;
}

const char *
cbir_gallery_get_model_fingerprint (const CbirGallery *g)
{
  return g->fingerprint;
}

const float *
cbir_gallery_get_features (const CbirGallery *g)
{
  return g->features;
}

const guint8 *
cbir_gallery_get_codes (const CbirGallery *g)
{
  return g->codes;
}

const float *
cbir_gallery_get_bit_thresholds (const CbirGallery *g)
{
  return g->thresholds;
}

const gint32 *
cbir_gallery_get_labels (const CbirGallery *g)
{
  return g->labels;
}

GHashTable *
cbir_gallery_count_labels (const CbirGallery *g)
{
  GHashTable *t = g_hash_table_new (NULL, NULL);
  for (guint i = 0; i < g->n; i++) {
    gpointer key = GINT_TO_POINTER (g->labels[i]);
    guint c = GPOINTER_TO_UINT (g_hash_table_lookup (t, key));
    g_hash_table_insert (t, key, GUINT_TO_POINTER (c + 1));
  }
  return t;
}

const guint8 *
cbir_gallery_get_thumbnail (const CbirGallery *g, guint i)
{
  if (!g->thumbnails || i >= g->n)
    return NULL;
  return g->thumbnails + (gsize) i * THUMB_SIZE;
}

const char *
cbir_gallery_get_id (const CbirGallery *g, guint i)
{
  if (!g->ids || i >= g->n)
    return NULL;
  return g->ids[i];
}

const char *
cbir_gallery_get_label_name (const CbirGallery *g, gint32 label)
{
  if (!g->label_names || label < 0 || (guint) label >= g->n_label_names)
    return NULL;
  return g->label_names[label];
}

guint
cbir_gallery_get_n_label_names (const CbirGallery *g)
{
  return g->n_label_names;
}

const float *
cbir_gallery_get_raw_features (const CbirGallery *g)
{
  return g->features_raw ? g->features_raw : g->features;
}

guint
cbir_gallery_get_dba (const CbirGallery *g, float *alpha)
{
  if (alpha)
    *alpha = g->dba_alpha;
  return g->dba_k;
}

const CbirGraph *
cbir_gallery_get_graph (const CbirGallery *g)
{
  return g->graph;
}

gboolean
cbir_gallery_get_graph_k_auto (const CbirGallery *g)
{
  return g->graph != NULL && g->graph_k_auto;
}

gboolean
cbir_gallery_check_model (const CbirGallery *g, const CbirModel *model,
    GError **error)
{
  const char *mfp = cbir_model_get_fingerprint (model);
  if (g_strcmp0 (mfp, g->fingerprint) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: gallery was made by model %s, but the model in use is %s",
        g->path, g->fingerprint, mfp ? mfp : "(none)");
    return FALSE;
  }
  guint mdim = cbir_model_get_code_dim (model);
  guint gdim = g->features ? g->dim : g->code_bits;
  if (mdim != gdim) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: gallery codes have %u dimensions, model %s makes %u", g->path,
        gdim, mfp, mdim);
    return FALSE;
  }
  return TRUE;
}

/* ---- builder ---- */

struct _CbirGalleryBuilder
{
  char *fingerprint;
  CbirCodeType code_type;
  guint dim;
  gboolean with_thumbnails;
  gboolean store_features;
  gboolean store_bits;
  char *metric;
  GArray *features;             /* float, n * dim (store_features) */
  GByteArray *codes;            /* packed at add time (!store_features) */
  float *thresholds;            /* dim, or NULL: default rule */
  GArray *labels;               /* gint32 */
  GByteArray *thumbnails;
  GPtrArray *ids;               /* char * ("" for none) */
  gboolean any_id;
  char **label_names;
  guint n_label_names;
  guint dba_k;                  /* 0: off */
  float dba_alpha;
  gboolean dba_set;             /* set_dba called (else an appended file's) */
  gboolean thresholds_median;   /* loaded thresholds are the median rule's */
  gboolean graph;               /* build the k-NN graph */
  guint graph_k;                /* 0: the size rule */
  float graph_power;
  gboolean graph_set;           /* set_graph called (else an appended file's) */
  guint graph_rank;             /* low-rank form: eigenpairs kept, 0 = none */
};

CbirGalleryBuilder *
cbir_gallery_builder_new (const char *model_fingerprint,
    CbirCodeType code_type, guint dim, gboolean with_thumbnails)
{
  g_return_val_if_fail (model_fingerprint != NULL, NULL);
  g_return_val_if_fail (dim > 0, NULL);
  CbirGalleryBuilder *b = g_new0 (CbirGalleryBuilder, 1);
  b->fingerprint = g_strdup (model_fingerprint);
  b->code_type = code_type;
  b->dim = dim;
  b->with_thumbnails = with_thumbnails;
  b->store_features = code_type == CBIR_CODE_FLOAT;
  b->store_bits = TRUE;
  b->features = g_array_new (FALSE, FALSE, sizeof (float));
  b->codes = g_byte_array_new ();
  b->labels = g_array_new (FALSE, FALSE, sizeof (gint32));
  b->thumbnails = g_byte_array_new ();
  b->ids = g_ptr_array_new_with_free_func (g_free);
  b->graph_power = CBIR_GRAPH_DEFAULT_POWER;
  return b;
}

void
cbir_gallery_builder_free (CbirGalleryBuilder *b)
{
  if (!b)
    return;
  g_free (b->fingerprint);
  g_free (b->metric);
  g_array_unref (b->features);
  g_byte_array_unref (b->codes);
  g_free (b->thresholds);
  g_array_unref (b->labels);
  g_byte_array_unref (b->thumbnails);
  g_ptr_array_unref (b->ids);
  g_strfreev (b->label_names);
  g_free (b);
}

void
cbir_gallery_builder_set_store (CbirGalleryBuilder *b, gboolean features,
    gboolean bits)
{
  g_return_if_fail (cbir_gallery_builder_size (b) == 0);
  g_return_if_fail (features || bits);
  g_return_if_fail (features || b->code_type == CBIR_CODE_BITS);
  g_return_if_fail (bits || b->code_type == CBIR_CODE_FLOAT);
  g_return_if_fail (features || b->dba_k == 0);
  b->store_features = features;
  b->store_bits = bits;
}

gboolean
cbir_gallery_builder_set_dba (CbirGalleryBuilder *b, guint k, float alpha,
    GError **error)
{
  g_return_val_if_fail (b != NULL, FALSE);
  if (k > 0 && !b->store_features) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "database-side augmentation needs float features (a float gallery "
        "that stores them)");
    return FALSE;
  }
  if (!(alpha >= 0.f && alpha <= 1000.f)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "augmentation alpha must be in 0..1000, not %g", alpha);
    return FALSE;
  }
  b->dba_k = k;
  b->dba_alpha = alpha;
  b->dba_set = TRUE;
  return TRUE;
}

gboolean
cbir_gallery_builder_set_graph (CbirGalleryBuilder *b, gboolean enabled,
    guint k, float power, GError **error)
{
  g_return_val_if_fail (b != NULL, FALSE);
  if (enabled && !b->store_features) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "a k-NN graph needs float features (a float gallery that stores "
        "them)");
    return FALSE;
  }
  if (k > CBIR_GRAPH_MAX_K) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "graph k must be at most %d, not %u", CBIR_GRAPH_MAX_K, k);
    return FALSE;
  }
  if (!(power > 0.f && power <= CBIR_GRAPH_MAX_POWER)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "graph similarity power must be in (0, 16], not %g", power);
    return FALSE;
  }
  b->graph = enabled;
  b->graph_k = k;
  b->graph_power = power;
  b->graph_set = TRUE;
  return TRUE;
}

void
cbir_gallery_builder_set_graph_rank (CbirGalleryBuilder *b, guint rank)
{
  b->graph_rank = rank;
}

gboolean
cbir_gallery_builder_get_graph (const CbirGalleryBuilder *b, guint *k,
    float *power)
{
  if (k)
    *k = b->graph_k;
  if (power)
    *power = b->graph_power;
  return b->graph;
}

guint
cbir_gallery_builder_get_dba (const CbirGalleryBuilder *b, float *alpha)
{
  if (alpha)
    *alpha = b->dba_alpha;
  return b->dba_k;
}

void
cbir_gallery_builder_set_metric (CbirGalleryBuilder *b, const char *metric)
{
  g_return_if_fail (metric == NULL || metric_name_valid (metric));
  g_free (b->metric);
  b->metric = g_strdup (metric);
}

void
cbir_gallery_builder_set_bit_thresholds (CbirGalleryBuilder *b,
    const float *thresholds)
{
  g_clear_pointer (&b->thresholds, g_free);
  b->thresholds_median = FALSE;
  if (thresholds)
    b->thresholds = g_memdup2 (thresholds, sizeof (float) * b->dim);
}

void
cbir_gallery_builder_set_label_names (CbirGalleryBuilder *b,
    const char *const *names, guint n)
{
  g_clear_pointer (&b->label_names, g_strfreev);
  b->n_label_names = 0;
  if (!names || n == 0)
    return;
  b->label_names = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++)
    b->label_names[i] = g_strdup (names[i] ? names[i] : "");
  b->n_label_names = n;
}

guint
cbir_gallery_builder_size (const CbirGalleryBuilder *b)
{
  return b->labels->len;
}

static guint
code_bytes_for (guint dim)
{
  return (dim + 7) / 8;
}

static void
builder_add_common (CbirGalleryBuilder *b, gint32 label,
    const guint8 *thumbnail, const char *id)
{
  g_array_append_val (b->labels, label);
  if (b->with_thumbnails) {
    if (thumbnail)
      g_byte_array_append (b->thumbnails, thumbnail, THUMB_SIZE);
    else {
      guint old = b->thumbnails->len;
      g_byte_array_set_size (b->thumbnails, old + THUMB_SIZE);
      memset (b->thumbnails->data + old, 0, THUMB_SIZE);
    }
  }
  g_ptr_array_add (b->ids, g_strdup (id ? id : ""));
  if (id && *id)
    b->any_id = TRUE;
}

gboolean
cbir_gallery_builder_add (CbirGalleryBuilder *b, const float *feature,
    gint32 label, const guint8 *thumbnail, const char *id)
{
  g_return_val_if_fail (feature != NULL, FALSE);
  if (cbir_first_non_finite (feature, b->dim) != b->dim)
    return FALSE;
  if (b->store_features) {
    g_array_append_vals (b->features, feature, b->dim);
  } else {
    guint cb = code_bytes_for (b->dim);
    guint old = b->codes->len;
    g_byte_array_set_size (b->codes, old + cb);
    cbir_codes_pack_bits (feature, 1, b->dim, b->thresholds,
        b->codes->data + old);
  }
  builder_add_common (b, label, thumbnail, id);
  return TRUE;
}

gboolean
cbir_gallery_builder_load_existing (CbirGalleryBuilder *b, const char *path,
    GError **error)
{
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, error);
  if (!g)
    return FALSE;
  if (g_strcmp0 (g->fingerprint, b->fingerprint) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: gallery was made by model %s, cannot append codes of model %s",
        path, g->fingerprint, b->fingerprint);
    return FALSE;
  }
  if (g->code_type != b->code_type) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: gallery holds %s codes, cannot append %s codes", path,
        cbir_code_type_to_string (g->code_type),
        cbir_code_type_to_string (b->code_type));
    return FALSE;
  }
  guint gdim = g->features ? g->dim : g->code_bits;
  if (gdim != b->dim) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: gallery codes have %u dimensions, cannot append %u", path,
        gdim, b->dim);
    return FALSE;
  }
  if (b->store_features && !g->features) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: gallery has no float features to keep", path);
    return FALSE;
  }
  if (g->dba_k > 0 && !g->features_raw) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: augmented gallery (dba) without \"features_raw\": cannot "
        "recompute the augmentation over appended items", path);
    return FALSE;
  }
  /* the un-augmented features are kept; DBA is re-run over all items at
   * write time (with the file's settings unless set_dba was called) */
  const float *gfeat = cbir_gallery_get_raw_features (g);
  if (!b->dba_set && g->dba_k > 0) {
    b->dba_k = g->dba_k;
    b->dba_alpha = g->dba_alpha;
  }
  if (!b->graph_set && g->graph && b->store_features) {
    /* the graph is rebuilt over all items at write time */
    b->graph = TRUE;
    b->graph_k = g->graph_k_auto ? 0 : cbir_graph_get_k (g->graph);
    b->graph_power = cbir_graph_get_power (g->graph);
    b->graph_rank = cbir_graph_get_rank (g->graph);
  }
  if (g->thresholds) {
    cbir_gallery_builder_set_bit_thresholds (b, g->thresholds);
    b->thresholds_median = g->thresholds_median;
  }
  if (!b->metric)
    b->metric = g_strdup (g->metric);
  if (!b->label_names && g->label_names)
    cbir_gallery_builder_set_label_names (b,
        (const char *const *) g->label_names, g->n_label_names);

  /* Existing items go first, in their order. */
  GArray *old_features = b->features;
  GByteArray *old_codes = b->codes;
  GArray *old_labels = b->labels;
  GByteArray *old_thumbs = b->thumbnails;
  GPtrArray *old_ids = b->ids;
  gboolean old_any = b->any_id;
  guint n_old = old_labels->len;
  b->features = g_array_new (FALSE, FALSE, sizeof (float));
  b->codes = g_byte_array_new ();
  b->labels = g_array_new (FALSE, FALSE, sizeof (gint32));
  b->thumbnails = g_byte_array_new ();
  b->ids = g_ptr_array_new_with_free_func (g_free);
  b->any_id = FALSE;
  for (guint i = 0; i < g->n; i++) {
    if (b->store_features)
      g_array_append_vals (b->features, gfeat + (gsize) i * g->dim, g->dim);
    else if (g->codes)
      g_byte_array_append (b->codes, g->codes + (gsize) i * g->code_bytes,
          g->code_bytes);
    else {
      guint cb = code_bytes_for (b->dim);
      guint old = b->codes->len;
      g_byte_array_set_size (b->codes, old + cb);
      cbir_codes_pack_bits (gfeat + (gsize) i * g->dim, 1, b->dim,
          b->thresholds, b->codes->data + old);
    }
    builder_add_common (b, g->labels[i], cbir_gallery_get_thumbnail (g, i),
        cbir_gallery_get_id (g, i));
  }
  /* then whatever was added before the load */
  if (b->store_features)
    g_array_append_vals (b->features, old_features->data, old_features->len);
  else
    g_byte_array_append (b->codes, old_codes->data, old_codes->len);
  g_array_append_vals (b->labels, old_labels->data, n_old);
  if (b->with_thumbnails)
    g_byte_array_append (b->thumbnails, old_thumbs->data, old_thumbs->len);
  for (guint i = 0; i < n_old; i++)
    g_ptr_array_add (b->ids, g_strdup (g_ptr_array_index (old_ids, i)));
  b->any_id |= old_any;
  g_array_unref (old_features);
  g_byte_array_unref (old_codes);
  g_array_unref (old_labels);
  g_byte_array_unref (old_thumbs);
  g_ptr_array_unref (old_ids);
  return TRUE;
}

static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

/* Per-dimension median of n rows of dim floats (lower median). */
static float *
column_medians (const float *x, guint n, guint dim)
{
  float *med = g_new0 (float, dim);
  if (n == 0)
    return med;
  float *col = g_new (float, n);
  for (guint j = 0; j < dim; j++) {
    for (guint i = 0; i < n; i++)
      col[i] = x[(gsize) i * dim + j];
    qsort (col, n, sizeof (float), cmp_float);
    med[j] = col[(n - 1) / 2];
  }
  g_free (col);
  return med;
}

/* The thresholds the written file will carry (owned by the caller), for
 * the features `feat` (augmented ones with DBA). Thresholds loaded from an
 * appended file that were the median rule's are recomputed when DBA
 * changes every feature. */
static float *
builder_resolve_thresholds (CbirGalleryBuilder *b, const float *feat,
    gboolean *median)
{
  *median = FALSE;
  if (b->thresholds && !(b->thresholds_median && b->dba_k > 0)) {
    *median = b->thresholds_median;
    return g_memdup2 (b->thresholds, sizeof (float) * b->dim);
  }
  if (b->code_type == CBIR_CODE_FLOAT && b->store_features) {
    *median = TRUE;
    return column_medians (feat, b->labels->len, b->dim);
  }
  return g_new0 (float, b->dim);
}

typedef struct
{
  float *thresholds;
  gboolean thresholds_median;
  float *dba;                   /* augmented features, or NULL */
  char *dba_meta;
  guint8 *codes;
  guint8 *ids;
  gsize ids_len;
  char *label_names_json;
  char *code_bits;
  CbirGraph *graph;
  char *graph_meta;
  char *graph_crc;
} BuilderOutput;

static void
builder_output_clear (BuilderOutput *o)
{
  g_free (o->thresholds);
  g_free (o->dba);
  g_free (o->dba_meta);
  g_free (o->codes);
  g_free (o->ids);
  g_free (o->label_names_json);
  g_free (o->code_bits);
  cbir_graph_free (o->graph);
  g_free (o->graph_meta);
  g_free (o->graph_crc);
}

static const char *builder_metric (CbirGalleryBuilder *b);

static gboolean
builder_prepare (CbirGalleryBuilder *b, BuilderOutput *o, GError **error)
{
  guint n = b->labels->len;
  memset (o, 0, sizeof (*o));
  const float *feat = (const float *) b->features->data;
  if (b->dba_k > 0 && b->store_features) {
    o->dba_meta = format_dba (b->dba_k, b->dba_alpha);
    o->dba = g_new (float, MAX ((gsize) n * b->dim, 1));
    CbirMetric m = g_strcmp0 (builder_metric (b), "l2") == 0
        ? CBIR_METRIC_L2 : CBIR_METRIC_COSINE;
    gboolean ok = cbir_dba_compute (feat, n, b->dim, m, b->dba_k,
        b->dba_alpha, 0, o->dba, NULL);
    g_assert (ok);              /* arguments checked by set_dba */
    feat = o->dba;
  }
  if (b->graph && b->store_features) {
    /* over the features searches use (augmented with DBA) */
    o->graph = cbir_graph_build (feat, n, b->dim, b->graph_k,
        b->graph_power, 0, error);
    if (!o->graph)
      return FALSE;
    if (b->graph_rank > 0 && n > b->graph_rank + 1
        && !cbir_graph_compute_spectrum (o->graph, b->graph_rank, 0, error))
      return FALSE;
    o->graph_meta = format_graph_meta (cbir_graph_get_k (o->graph),
        b->graph_power, b->graph_k == 0, cbir_graph_get_rank (o->graph));
    o->graph_crc = g_strdup_printf ("%08x", graph_crc (o->graph));
  }
  if (b->store_bits) {
    o->thresholds = builder_resolve_thresholds (b, feat,
        &o->thresholds_median);
    guint cb = code_bytes_for (b->dim);
    o->codes = g_malloc0 (MAX ((gsize) n * cb, 1));
    if (b->store_features)
      cbir_codes_pack_bits (feat, n, b->dim, o->thresholds, o->codes);
    else
      memcpy (o->codes, b->codes->data, (gsize) n * cb);
    o->code_bits = g_strdup_printf ("%u", b->dim);
  }
  if (b->any_id) {
    GByteArray *ids = g_byte_array_new ();
    for (guint i = 0; i < n; i++) {
      const char *s = g_ptr_array_index (b->ids, i);
      g_byte_array_append (ids, (const guint8 *) s, strlen (s) + 1);
    }
    o->ids_len = ids->len;
    o->ids = g_byte_array_free (ids, FALSE);
  }
  if (b->label_names)
    o->label_names_json = label_names_to_json (b->label_names,
        b->n_label_names);
  return TRUE;
}

static const char *
builder_metric (CbirGalleryBuilder *b)
{
  if (b->metric)
    return b->metric;
  return b->code_type == CBIR_CODE_BITS ? "hamming" : "l2";
}

gboolean
cbir_gallery_check_writable (const char *path, GError **error)
{
  CbirAtomicFile f;

  g_return_val_if_fail (path != NULL, FALSE);
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: is a directory",
        path);
    return FALSE;
  }
  if (!cbir_atomic_file_open (&f, path, 0644, error))
    return FALSE;
  cbir_atomic_file_abort (&f);
  return TRUE;
}

gboolean
cbir_gallery_builder_write (CbirGalleryBuilder *b, const char *path,
    GError **error)
{
  g_return_val_if_fail (path != NULL, FALSE);
  guint n = b->labels->len;
  BuilderOutput o;
  if (!builder_prepare (b, &o, error)) {
    g_prefix_error (error, "%s: ", path);
    builder_output_clear (&o);
    return FALSE;
  }

  g_autoptr (CbirSafetensorsWriter) w = cbir_safetensors_writer_new ();
  cbir_safetensors_writer_set_metadata (w, "format", GALLERY_FORMAT);
  cbir_safetensors_writer_set_metadata (w, "version", GALLERY_VERSION);
  cbir_safetensors_writer_set_metadata (w, "model_fingerprint",
      b->fingerprint);
  cbir_safetensors_writer_set_metadata (w, "code_type",
      cbir_code_type_to_string (b->code_type));
  cbir_safetensors_writer_set_metadata (w, "metric", builder_metric (b));
  if (o.code_bits)
    cbir_safetensors_writer_set_metadata (w, "code_bits", o.code_bits);
  if (o.label_names_json)
    cbir_safetensors_writer_set_metadata (w, "label_names",
        o.label_names_json);
  if (o.thresholds)
    cbir_safetensors_writer_set_metadata (w, "bit_thresholds_rule",
        o.thresholds_median ? "median" : "given");
  if (o.dba_meta)
    cbir_safetensors_writer_set_metadata (w, "dba", o.dba_meta);

  gint64 s_feat[2] = { n, b->dim };
  if (b->store_features)
    cbir_safetensors_writer_add (w, "features", CBIR_DTYPE_F32, 2, s_feat,
        o.dba ? o.dba : (float *) b->features->data);
  if (o.dba)
    cbir_safetensors_writer_add (w, "features_raw", CBIR_DTYPE_F32, 2,
        s_feat, b->features->data);
  gint64 s_codes[2] = { n, code_bytes_for (b->dim) };
  gint64 s_thr[1] = { b->dim };
  if (b->store_bits) {
    cbir_safetensors_writer_add (w, "codes", CBIR_DTYPE_U8, 2, s_codes,
        o.codes);
    cbir_safetensors_writer_add (w, "bit_thresholds", CBIR_DTYPE_F32, 1,
        s_thr, o.thresholds);
  }
  gint64 s_lab[1] = { n };
  cbir_safetensors_writer_add (w, "labels", CBIR_DTYPE_I32, 1, s_lab,
      b->labels->data);
  gint64 s_th[3] = { n, CBIR_GALLERY_THUMB_HEIGHT, CBIR_GALLERY_THUMB_WIDTH };
  if (b->with_thumbnails)
    cbir_safetensors_writer_add (w, "thumbnails", CBIR_DTYPE_U8, 3, s_th,
        b->thumbnails->data);
  gint64 s_ids[1] = { (gint64) o.ids_len };
  if (o.ids)
    cbir_safetensors_writer_add (w, "ids", CBIR_DTYPE_U8, 1, s_ids, o.ids);
  gint64 s_goff[1] = { (gint64) n + 1 };
  gint64 s_gnnz[1] = { o.graph ? (gint64) cbir_graph_nnz (o.graph) : 0 };
  if (o.graph) {
    cbir_safetensors_writer_set_metadata (w, "graph", o.graph_meta);
    cbir_safetensors_writer_set_metadata (w, "graph_crc32", o.graph_crc);
    cbir_safetensors_writer_add (w, "graph_offsets", CBIR_DTYPE_I32, 1,
        s_goff, cbir_graph_get_offsets (o.graph));
    cbir_safetensors_writer_add (w, "graph_neighbours", CBIR_DTYPE_I32, 1,
        s_gnnz, cbir_graph_get_neighbours (o.graph));
    cbir_safetensors_writer_add (w, "graph_weights", CBIR_DTYPE_F32, 1,
        s_gnnz, cbir_graph_get_weights (o.graph));
  }
  guint grank = o.graph ? cbir_graph_get_rank (o.graph) : 0;
  gint64 s_ev[2] = { n, grank }, s_el[1] = { grank };
  if (grank > 0) {
    cbir_safetensors_writer_add (w, "graph_eigenvectors", CBIR_DTYPE_F32, 2,
        s_ev, cbir_graph_get_eigenvectors (o.graph));
    cbir_safetensors_writer_add (w, "graph_eigenvalues", CBIR_DTYPE_F32, 1,
        s_el, cbir_graph_get_eigenvalues (o.graph));
  }

  gboolean ok = cbir_safetensors_writer_write (w, path, error);
  builder_output_clear (&o);
  return ok;
}

CbirGallery *
cbir_gallery_builder_build (CbirGalleryBuilder *b)
{
  guint n = b->labels->len;
  BuilderOutput o;
  g_autoptr (GError) gerr = NULL;
  if (!builder_prepare (b, &o, &gerr))
    g_warning ("in-memory gallery without its graph: %s", gerr->message);

  CbirGallery *g = g_new0 (CbirGallery, 1);
  g->path = g_strdup ("(memory)");
  g->n = n;
  g->code_type = b->code_type;
  g->fingerprint = g_strdup (b->fingerprint);
  g->metric = g_strdup (builder_metric (b));
  gint32 *labels = g_memdup2 (b->labels->data, sizeof (gint32) * MAX (n, 1));
  g->labels = labels;
  gallery_own (g, labels);
  if (b->store_features) {
    float *f = g_memdup2 (b->features->data,
        sizeof (float) * MAX ((gsize) n * b->dim, 1));
    g->dim = b->dim;
    if (o.dba) {
      g->features_raw = f;
      gallery_own (g, f);
      g->features = o.dba;
      gallery_own (g, g_steal_pointer (&o.dba));
      g->dba_k = b->dba_k;
      g->dba_alpha = b->dba_alpha;
    } else {
      g->features = f;
      gallery_own (g, f);
    }
  }
  g->thresholds_median = o.thresholds_median;
  if (b->store_bits) {
    g->codes = o.codes;
    gallery_own (g, g_steal_pointer (&o.codes));
    g->thresholds = o.thresholds;
    gallery_own (g, g_steal_pointer (&o.thresholds));
    g->code_bytes = code_bytes_for (b->dim);
    g->code_bits = b->dim;
  }
  if (b->with_thumbnails) {
    guint8 *t = g_memdup2 (b->thumbnails->data, MAX (b->thumbnails->len, 1));
    g->thumbnails = t;
    gallery_own (g, t);
  }
  if (o.ids) {
    CbirTensorView v = { 0 };
    v.data = o.ids;
    v.nbytes = o.ids_len;
    gboolean ok = parse_ids (g, &v, NULL);
    g_assert (ok);
    gallery_own (g, g_steal_pointer (&o.ids));
  }
  if (b->label_names) {
    g->label_names = g_strdupv (b->label_names);
    g->n_label_names = b->n_label_names;
  }
  g->graph = g_steal_pointer (&o.graph);
  g->graph_k_auto = b->graph_k == 0;
  builder_output_clear (&o);
  return g;
}

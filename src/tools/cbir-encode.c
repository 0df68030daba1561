/* cbir-encode: encodes an IDX image file with a model and writes the codes
 * (float or packed bits) and the labels as safetensors:
 *   "codes"      F32 [N, D]  (or U8 [N, (D+7)/8] with --bits, LSB first)
 *   "labels"     I32 [N]     (when a label file is given)
 *   "thresholds" F32 [D]     (--bits on a float model: per-dimension medians)
 * __metadata__: format "gst-cbir-codes", version, model_fingerprint,
 * model_name, code_type, code_dim, bit_rule. numpy: safetensors.numpy. */
#include "config.h"

#include <cbir/idx.h>
#include <cbir/model.h>
#include <cbir/safetensors.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CBIR_TOOL_NAME "cbir-encode"
#include "tool-common.h"

static char *opt_model, *opt_images, *opt_labels, *opt_out;
static gboolean opt_bits;
static gint opt_threads = 0, opt_limit = 0;

static GOptionEntry entries[] = {
  {"model", 'm', 0, G_OPTION_ARG_FILENAME, &opt_model,
      "Model file (safetensors)", "FILE"},
  {"images", 'i', 0, G_OPTION_ARG_FILENAME, &opt_images,
      "Images (IDX idx3-ubyte, raw or gzip)", "FILE"},
  {"labels", 'l', 0, G_OPTION_ARG_FILENAME, &opt_labels,
      "Labels (IDX idx1-ubyte)", "FILE"},
  {"out", 'o', 0, G_OPTION_ARG_FILENAME, &opt_out,
      "Codes file to write (safetensors)", "FILE"},
  {"bits", 0, 0, G_OPTION_ARG_NONE, &opt_bits,
      "Write packed bit codes (bit models: value > 0; float models: value > "
      "the per-dimension median of these codes)", NULL},
  {"threads", 't', 0, G_OPTION_ARG_INT, &opt_threads,
      "Worker threads (default: all cores)", "N"},
  {"limit", 'n', 0, G_OPTION_ARG_INT, &opt_limit,
      "Encode only the first N images", "N"},
  {NULL}
};

static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return x < y ? -1 : x > y;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GOptionContext) ctx =
      g_option_context_new ("- encode images with a gst-cbir model");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &err))
    return fail ("%s (see --help)", err->message);
  if (argc > 1)
    return fail ("unexpected argument '%s' (see --help)", argv[1]);
  if (!opt_model || !opt_images || !opt_out)
    return fail ("--model, --images and --out are required");
  if (opt_threads < 0 || opt_threads > 256)
    return fail ("--threads must be in 1..256");
  if (opt_limit < 0)
    return fail ("--limit must be positive");

  g_autoptr (CbirModel) model = cbir_model_load (opt_model, &err);
  if (!model)
    return fail ("%s", err->message);
  g_autoptr (CbirDataset) ds = cbir_dataset_load (opt_images, opt_labels,
      &err);
  if (!ds)
    return fail ("%s", err->message);
  guint w, h;
  cbir_model_get_input_size (model, &w, &h);
  if (ds->rows != h || ds->cols != w)
    return fail ("%s: images are %ux%u, the model %s takes %ux%u",
        opt_images, ds->cols, ds->rows, opt_model, w, h);
  guint n = ds->n;
  if (opt_limit > 0 && (guint) opt_limit < n)
    n = (guint) opt_limit;
  if (opt_threads > 0)
    cbir_net_set_threads (cbir_model_get_net (model), (guint) opt_threads);

  guint dim = cbir_model_get_code_dim (model);
  g_autofree float *codes = g_try_new (float, (gsize) n * dim);
  if (!codes && n)
    return fail ("out of memory for %u codes of %u floats", n, dim);
  if (!cbir_model_encode_u8 (model, ds->images, n, codes, &err))
    return fail ("%s", err->message);

  g_autoptr (CbirSafetensorsWriter) wr = cbir_safetensors_writer_new ();
  g_autofree guint8 *bits = NULL;
  g_autofree float *thresholds = NULL;
  const char *rule = "none";
  CbirCodeType type = CBIR_CODE_FLOAT;
  if (opt_bits) {
    guint nb = cbir_model_get_code_bytes (model);
    type = CBIR_CODE_BITS;
    if (cbir_model_get_code_type (model) == CBIR_CODE_FLOAT && n > 0) {
      thresholds = g_new (float, dim);
      g_autofree float *col = g_new (float, n);
      for (guint j = 0; j < dim; j++) {
        for (guint i = 0; i < n; i++)
          col[i] = codes[(gsize) i * dim + j];
        qsort (col, n, sizeof (float), cmp_float);
        thresholds[j] = col[n / 2];
      }
      rule = "value > median";
      gint64 tshape[1] = { dim };
      cbir_safetensors_writer_add (wr, "thresholds", CBIR_DTYPE_F32, 1,
          tshape, thresholds);
    } else {
      rule = "value > 0";
    }
    bits = g_new (guint8, (gsize) n * nb + 1);
    cbir_codes_pack_bits (codes, n, dim, thresholds, bits);
    gint64 shape[2] = { n, nb };
    cbir_safetensors_writer_add (wr, "codes", CBIR_DTYPE_U8, 2, shape, bits);
  } else {
    gint64 shape[2] = { n, dim };
    cbir_safetensors_writer_add (wr, "codes", CBIR_DTYPE_F32, 2, shape,
        codes);
  }
  if (ds->labels) {
    gint64 lshape[1] = { n };
    cbir_safetensors_writer_add (wr, "labels", CBIR_DTYPE_I32, 1, lshape,
        ds->labels);
  }
  g_autofree char *dim_s = g_strdup_printf ("%u", dim);
  cbir_safetensors_writer_set_metadata (wr, "format", "gst-cbir-codes");
  cbir_safetensors_writer_set_metadata (wr, "version", "1");
  cbir_safetensors_writer_set_metadata (wr, "model_fingerprint",
      cbir_model_get_fingerprint (model));
  cbir_safetensors_writer_set_metadata (wr, "model_name",
      cbir_model_get_name (model));
  cbir_safetensors_writer_set_metadata (wr, "code_type",
      cbir_code_type_to_string (type));
  cbir_safetensors_writer_set_metadata (wr, "code_dim", dim_s);
  cbir_safetensors_writer_set_metadata (wr, "bit_rule", rule);
  if (!cbir_safetensors_writer_write (wr, opt_out, &err))
    return fail ("%s", err->message);
  printf ("wrote %s: %u %s codes of %u %s%s\n", opt_out, n,
      cbir_code_type_to_string (type), dim, opt_bits ? "bits" : "floats",
      ds->labels ? " with labels" : "");
  return 0;
}

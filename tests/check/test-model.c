/* Model tests: presets, architecture JSON validation, save/load round
 * trips, fingerprints, corrupt model files, a file laid out by another
 * writer, bit packing and concurrent encoding. */
#include "config.h"

#include <cbir/model.h>
#include <cbir/preprocess.h>
#include <cbir/safetensors.h>

#include <check.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char *tmpdir;

static void
setup (void)
{
  GError *err = NULL;
  tmpdir = g_dir_make_tmp ("test-model-XXXXXX", &err);
  ck_assert_msg (tmpdir != NULL, "%s", err ? err->message : "");
}

static void
teardown (void)
{
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  if (d) {
    const char *n;
    while ((n = g_dir_read_name (d))) {
      char *p = g_build_filename (tmpdir, n, NULL);
      g_unlink (p);
      g_free (p);
    }
    g_dir_close (d);
  }
  g_rmdir (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
}

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

/* Deterministic digit-like test images: a bright blob on black. */
static guint8 *
make_images (guint n)
{
  guint8 *px = g_new0 (guint8, (gsize) n * 784);
  for (guint i = 0; i < n; i++)
    for (int y = 0; y < 28; y++)
      for (int x = 0; x < 28; x++) {
        int cx = 8 + (int) (i * 5 % 12), cy = 8 + (int) (i * 7 % 12);
        int d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
        px[(gsize) i * 784 + y * 28 + x] = d2 < 30 ? (guint8) (255 - d2 * 4)
            : 0;
      }
  return px;
}

static CbirModel *
make_model (const char *preset, guint64 seed)
{
  GError *err = NULL;
  CbirModel *m = cbir_model_new_preset (preset, &err);
  ck_assert_msg (m != NULL, "%s: %s", preset, err ? err->message : "");
  cbir_net_init_params (cbir_model_get_net (m), seed);
  cbir_model_update_fingerprint (m);
  return m;
}

static float *
encode (CbirModel *m, const guint8 *px, guint n)
{
  GError *err = NULL;
  float *codes = g_new (float, (gsize) n * cbir_model_get_code_dim (m));
  ck_assert_msg (cbir_model_encode_u8 (m, px, n, codes, &err), "%s",
      err ? err->message : "");
  return codes;
}

static void
assert_error_has (GError *err, const char *a, const char *b)
{
  ck_assert_msg (err != NULL, "expected an error");
  ck_assert (err->domain == CBIR_ERROR);
  ck_assert_msg (strstr (err->message, a) != NULL, "'%s' not in '%s'", a,
      err->message);
  if (b)
    ck_assert_msg (strstr (err->message, b) != NULL, "'%s' not in '%s'", b,
        err->message);
}

START_TEST (test_presets)
{
  static const struct {
    const char *name;
    guint dim;
    CbirCodeType type;
    CbirLoss loss;
    CbirOptimizerKind opt;
    guint batch;
  } want[] = {
    {"sicara", 128, CBIR_CODE_FLOAT, CBIR_LOSS_BCE, CBIR_OPTIMIZER_ADADELTA, 128},
    {"keras-dae", 1568, CBIR_CODE_FLOAT, CBIR_LOSS_BCE, CBIR_OPTIMIZER_ADAM, 128},
    {"pyimagesearch", 16, CBIR_CODE_FLOAT, CBIR_LOSS_MSE, CBIR_OPTIMIZER_ADAM, 32},
    {"binary-xor", 392, CBIR_CODE_BITS, CBIR_LOSS_MSE, CBIR_OPTIMIZER_ADAM, 128},
    {"default", 32, CBIR_CODE_FLOAT, CBIR_LOSS_BCE, CBIR_OPTIMIZER_ADAM, 128},
  };
  guint n_listed = g_strv_length ((char **) cbir_model_list_presets ());
  ck_assert_uint_eq (n_listed, G_N_ELEMENTS (want));
  g_autofree guint8 *px = make_images (3);
  for (guint i = 0; i < G_N_ELEMENTS (want); i++) {
    g_autoptr (CbirModel) m = make_model (want[i].name, 1);
    ck_assert_str_eq (cbir_model_get_name (m), want[i].name);
    ck_assert_uint_eq (cbir_model_get_code_dim (m), want[i].dim);
    ck_assert_uint_eq (cbir_model_get_code_bytes (m), (want[i].dim + 7) / 8);
    ck_assert_int_eq (cbir_model_get_code_type (m), want[i].type);
    const CbirTrainSettings *s = cbir_model_get_train_settings (m);
    ck_assert_int_eq (s->loss, want[i].loss);
    ck_assert_int_eq (s->optimizer, want[i].opt);
    ck_assert_uint_eq (s->batch_size, want[i].batch);
    guint w, h;
    cbir_model_get_input_size (m, &w, &h);
    ck_assert_uint_eq (w, 28);
    ck_assert_uint_eq (h, 28);
    float sc, off;
    cbir_model_get_normalisation (m, &sc, &off);
    ck_assert_float_eq_tol (sc, 1.0f / 255.0f, 1e-9f);
    ck_assert_float_eq (off, 0.0f);
    CbirShape cs = cbir_net_output_shape (cbir_model_get_net (m),
        cbir_model_get_code_layer (m));
    ck_assert_uint_eq ((guint) (cs.c * cs.h * cs.w), want[i].dim);
    g_autofree float *codes = encode (m, px, 3);
    gboolean differ = FALSE;
    for (guint k = 0; k < 3 * want[i].dim; k++) {
      ck_assert (isfinite (codes[k]));
      if (k >= want[i].dim && codes[k] != codes[k - want[i].dim])
        differ = TRUE;
    }
    ck_assert_msg (differ, "%s: all images give the same code", want[i].name);
    /* canonical JSON is a fixed point */
    GError *err = NULL;
    g_autoptr (CbirModel) m2 = cbir_model_new_from_json (
        cbir_model_get_arch_json (m), "copy", &err);
    ck_assert_msg (m2 != NULL, "%s", err ? err->message : "");
    ck_assert_str_eq (cbir_model_get_arch_json (m2),
        cbir_model_get_arch_json (m));
  }
  /* Sicara's code is 4x4x8: Keras "same" pooling rounds 7 up to 4 */
  g_autoptr (CbirModel) s = make_model ("sicara", 1);
  CbirShape cs = cbir_net_output_shape (cbir_model_get_net (s),
      cbir_model_get_code_layer (s));
  ck_assert_int_eq (cs.c, 8);
  ck_assert_int_eq (cs.h, 4);
  ck_assert_int_eq (cs.w, 4);

  GError *err = NULL;
  ck_assert (cbir_model_new_preset ("nope", &err) == NULL);
  assert_error_has (err, "nope", "keras-dae");
  g_error_free (err);
}
END_TEST

static const char tiny_arch[] =
    "{\"name\": \"tiny\", \"input\": [1, 28, 28], \"code_layer\": 2,\n"
    " \"layers\": [\n"
    "  {\"type\": \"conv2d\", \"filters\": 4, \"kernel\": 3},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 1, \"kernel\": 3},\n"
    "  {\"type\": \"sigmoid\"}]}";

START_TEST (test_bad_json)
{
  static const struct {
    const char *json;
    const char *want1, *want2;
  } cases[] = {
    {"{not json", "invalid JSON", NULL},
    {"[1, 2]", "not a JSON object", NULL},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": []}",
        "layers", NULL},
    {"{\"input\": [1, 28], \"code_layer\": 0, \"layers\": [{\"type\": \"relu\"}]}",
        "input", NULL},
    {"{\"input\": [1, 28, 28], \"code_layer\": 5, \"layers\": [{\"type\": \"relu\"}]}",
        "code_layer", NULL},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": [{\"type\": \"relu\"},"
          " {\"type\": \"conv3d\"}]}", "layer 1", "conv3d"},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": ["
          "{\"type\": \"conv2d\", \"filter\": 3}]}", "layer 0 (conv2d)", "filter"},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": ["
          "{\"type\": \"conv2d\", \"filters\": 1, \"padding\": \"full\"}]}",
        "layer 0 (conv2d)", "padding"},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": ["
          "{\"type\": \"conv2d\", \"filters\": 1, \"kernel\": 7}]}",
        "layer 0 (conv2d)", "kernel"},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": ["
          "{\"type\": \"conv2d\", \"filters\": 2.5}]}", "layer 0", "filters"},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": ["
          "{\"type\": \"conv2d\", \"filters\": 4}]}", "not the input shape",
        NULL},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": ["
          "{\"type\": \"conv2d\", \"filters\": 1}], \"training\": {\"lr\": -1}}",
        "training", "lr"},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": ["
          "{\"type\": \"conv2d\", \"filters\": 1}], \"training\": "
          "{\"optimizer\": \"rmsprop\"}}", "training", "rmsprop"},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"code_type\": \"int\", "
          "\"layers\": [{\"type\": \"conv2d\", \"filters\": 1}]}", "code_type",
        NULL},
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"colour\": 1, \"layers\": ["
          "{\"type\": \"conv2d\", \"filters\": 1}]}", "colour", NULL},
    /* strings JSON does not allow, found while parsing, not after a whole
     * training (json-glib reads GScanner's octal escape "\214" as the
     * byte 0x8c, which is not UTF-8) */
    {"{\"name\": \"a\\214b\", \"input\": [1, 28, 28]}", "1:12",
        "escape"},
    {"{\"name\": \"a\\x41\", \"input\": [1, 28, 28]}", "escape", NULL},
    {"{\"name\": \"\\ud800\", \"input\": [1, 28, 28]}", "surrogate",
        NULL},
    {"{\"name\": \"\\udc00x\", \"input\": [1, 28, 28]}", "surrogate",
        NULL},
    {"{\"name\": \"\\u12\"}", "four hex digits", NULL},
    {"{\"name\":\n \"caf\xe9\", \"input\": [1, 28, 28]}", "2:6",
        "not UTF-8"},
    /* a layer that does not fit its input: named by nn */
    {"{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": ["
          "{\"type\": \"dense\", \"units\": 4}, {\"type\": \"reshape\", "
          "\"shape\": [1, 28, 28]}]}", "layer 1", NULL},
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    GError *err = NULL;
    CbirModel *m = cbir_model_new_from_json (cases[i].json, "arch.json",
        &err);
    ck_assert_msg (m == NULL, "case %u accepted", i);
    assert_error_has (err, "arch.json", cases[i].want1);
    if (cases[i].want2)
      assert_error_has (err, cases[i].want2, NULL);
    g_error_free (err);
  }
  /* a good custom one parses, and an architecture file names its path */
  GError *err = NULL;
  g_autoptr (CbirModel) m = cbir_model_new_from_json (tiny_arch, "t", &err);
  ck_assert_msg (m != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_model_get_code_dim (m), 4 * 14 * 14);
  /* every JSON escape, a surrogate pair and UTF-8 text are fine */
  {
    const char *tail = strstr (tiny_arch, "\"input\"");
    ck_assert (tail != NULL);
    g_autofree char *named = g_strdup_printf ("{\"name\": \"\\\"\\\\\\/"
        "\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00 caf\xc3\xa9\", %s", tail);
    g_autoptr (CbirModel) mn = cbir_model_new_from_json (named, "n", &err);
    ck_assert_msg (mn != NULL, "%s: %s", named, err ? err->message : "");
    ck_assert_str_eq (cbir_model_get_name (mn),
        "\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80 caf\xc3\xa9");
  }
  g_autofree char *p = tmp_path ("bad-arch.json");
  ck_assert (g_file_set_contents (p, "{\"input\": 3}", -1, NULL));
  ck_assert (cbir_model_new_from_arch_file (p, &err) == NULL);
  assert_error_has (err, p, "input");
  g_clear_error (&err);
  g_autofree char *missing = tmp_path ("missing.json");
  ck_assert (cbir_model_new_from_arch_file (missing, &err) == NULL);
  assert_error_has (err, missing, NULL);
  ck_assert_int_eq (err->code, CBIR_ERROR_IO);
  g_clear_error (&err);
}
END_TEST

START_TEST (test_roundtrip)
{
  const char *names[] = { "keras-dae", "pyimagesearch", "binary-xor",
    "sicara", "default"
  };
  g_autofree guint8 *px = make_images (5);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autoptr (CbirModel) m = make_model (names[i], 100 + i);
    /* make BN running stats non-trivial so they must round-trip */
    CbirNet *net = cbir_model_get_net (m);
    for (guint t = 0; t < cbir_net_n_tensors (net); t++) {
      const CbirNetTensor *tn = cbir_net_tensor (net, t);
      if (!tn->trainable)
        for (gsize k = 0; k < tn->size; k++)
          cbir_net_params (net)[tn->offset + k] = 0.5f + 0.01f * k;
    }
    cbir_model_set_training_info (m, "{\"epochs_done\":3}");
    cbir_model_update_fingerprint (m);
    g_autofree float *c1 = encode (m, px, 5);
    g_autofree char *p = tmp_path ("m.safetensors");
    GError *err = NULL;
    ck_assert_msg (cbir_model_save (m, p, &err), "%s", err ? err->message : "");
    g_autoptr (CbirModel) l = cbir_model_load (p, &err);
    ck_assert_msg (l != NULL, "%s", err ? err->message : "");
    ck_assert_str_eq (cbir_model_get_fingerprint (l),
        cbir_model_get_fingerprint (m));
    ck_assert_str_eq (cbir_model_get_arch_json (l),
        cbir_model_get_arch_json (m));
    ck_assert_str_eq (cbir_model_get_training_info (l), "{\"epochs_done\":3}");
    ck_assert_uint_eq (cbir_net_n_params (cbir_model_get_net (l)),
        cbir_net_n_params (net));
    ck_assert (memcmp (cbir_net_params (cbir_model_get_net (l)),
            cbir_net_params (net), cbir_net_n_params (net) * 4) == 0);
    g_autofree float *c2 = encode (l, px, 5);
    ck_assert (memcmp (c1, c2, 5 * cbir_model_get_code_dim (m) * 4) == 0);
    /* the metadata a numpy user reads */
    g_autoptr (CbirSafetensors) st = cbir_safetensors_open (p, &err);
    ck_assert (st != NULL);
    ck_assert_str_eq (cbir_safetensors_get_metadata (st, "format"),
        "gst-cbir-model");
    ck_assert_str_eq (cbir_safetensors_get_metadata (st, "version"), "1");
    ck_assert_str_eq (cbir_safetensors_get_metadata (st, "fingerprint"),
        cbir_model_get_fingerprint (m));
    ck_assert_str_eq (cbir_safetensors_get_metadata (st, "code_type"),
        cbir_code_type_to_string (cbir_model_get_code_type (m)));
    g_autofree char *dim = g_strdup_printf ("%u",
        cbir_model_get_code_dim (m));
    ck_assert_str_eq (cbir_safetensors_get_metadata (st, "code_dim"), dim);
    ck_assert (cbir_safetensors_get_metadata (st, "normalisation") != NULL);
    ck_assert (cbir_safetensors_get_metadata (st, "noise") != NULL);
  }
}
END_TEST

START_TEST (test_fingerprint)
{
  g_autoptr (CbirModel) a = make_model ("keras-dae", 1);
  g_autoptr (CbirModel) b = make_model ("keras-dae", 1);
  g_autoptr (CbirModel) c = make_model ("keras-dae", 2);
  const char *fa = cbir_model_get_fingerprint (a);
  ck_assert_uint_eq (strlen (fa), 64);
  for (const char *p = fa; *p; p++)
    ck_assert (g_ascii_isxdigit (*p) && !g_ascii_isupper (*p));
  ck_assert_str_eq (fa, cbir_model_get_fingerprint (b));
  ck_assert_str_ne (fa, cbir_model_get_fingerprint (c));
  g_autofree char *saved = g_strdup (fa);
  float *p = cbir_net_params (cbir_model_get_net (a));
  gsize last = cbir_net_n_params (cbir_model_get_net (a)) - 1;
  float old = p[last];
  p[last] = nextafterf (old, 1.0f);
  cbir_model_update_fingerprint (a);
  ck_assert_str_ne (cbir_model_get_fingerprint (a), saved);
  p[last] = old;
  cbir_model_update_fingerprint (a);
  ck_assert_str_eq (cbir_model_get_fingerprint (a), saved);
  /* the training block is part of the architecture */
  CbirTrainSettings s = *cbir_model_get_train_settings (a);
  s.epochs = 3;
  GError *err = NULL;
  ck_assert (cbir_model_set_train_settings (a, &s, &err));
  ck_assert_str_ne (cbir_model_get_fingerprint (a), saved);
  ck_assert (strstr (cbir_model_get_arch_json (a), "\"epochs\":3") != NULL);
  s.lr = 0;
  ck_assert (!cbir_model_set_train_settings (a, &s, &err));
  assert_error_has (err, "lr", NULL);
  g_error_free (err);
}
END_TEST

/* Rewrites a model file with one change. */
typedef enum {
  EDIT_DROP, EDIT_SHAPE, EDIT_DTYPE, EDIT_TAMPER, EDIT_ARCH, EDIT_FORMAT,
  EDIT_VERSION, EDIT_NAN
} Edit;

static char *
rewrite (const char *src, const char *name, Edit edit, const char *target,
    const char *value)
{
  GError *err = NULL;
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (src, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  g_autoptr (CbirSafetensorsWriter) w = cbir_safetensors_writer_new ();
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  for (const char *const *n = cbir_safetensors_list (st); *n; n++) {
    CbirTensorView v;
    ck_assert (cbir_safetensors_get (st, *n, &v));
    gboolean hit = strcmp (*n, target) == 0;
    if (hit && edit == EDIT_DROP)
      continue;
    gint64 shape[CBIR_TENSOR_MAX_DIMS];
    memcpy (shape, v.shape, sizeof shape);
    guint ndim = v.ndim;
    CbirDType dt = v.dtype;
    void *data = g_memdup2 (v.data, v.nbytes + 1);
    g_ptr_array_add (keep, data);
    if (hit && edit == EDIT_SHAPE) {
      /* same byte count, other shape: flatten */
      shape[0] = (gint64) (v.nbytes / 4);
      ndim = 1;
    } else if (hit && edit == EDIT_DTYPE) {
      dt = CBIR_DTYPE_I32;
    } else if (hit && edit == EDIT_TAMPER) {
      ((float *) data)[0] += 0.125f;
    } else if (hit && edit == EDIT_NAN) {
      ((float *) data)[0] = NAN;
    }
    cbir_safetensors_writer_add (w, *n, dt, ndim, shape, data);
  }
  const char *keys[] = { "format", "version", "name", "architecture",
    "normalisation", "noise", "training", "code_type", "code_dim",
    "fingerprint"
  };
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
    const char *v = cbir_safetensors_get_metadata (st, keys[i]);
    if ((edit == EDIT_ARCH && !strcmp (keys[i], "architecture"))
        || (edit == EDIT_FORMAT && !strcmp (keys[i], "format"))
        || (edit == EDIT_VERSION && !strcmp (keys[i], "version")))
      v = value;
    if (v)
      cbir_safetensors_writer_set_metadata (w, keys[i], v);
  }
  char *p = tmp_path (name);
  ck_assert_msg (cbir_safetensors_writer_write (w, p, &err), "%s",
      err ? err->message : "");
  return p;
}

START_TEST (test_corrupt)
{
  g_autoptr (CbirModel) m = make_model ("pyimagesearch", 5);
  g_autofree char *good = tmp_path ("good.safetensors");
  GError *err = NULL;
  ck_assert (cbir_model_save (m, good, &err));
  static const struct {
    Edit edit;
    const char *target;
    const char *value;
    const char *want;
    CbirError code;
  } cases[] = {
    {EDIT_DROP, "layers.3.weight", NULL, "layers.3.weight", CBIR_ERROR_FORMAT},
    {EDIT_DROP, "layers.2.running_var", NULL, "layers.2.running_var",
        CBIR_ERROR_FORMAT},
    {EDIT_SHAPE, "layers.0.weight", NULL, "layers.0.weight", CBIR_ERROR_FORMAT},
    {EDIT_DTYPE, "layers.7.bias", NULL, "layers.7.bias", CBIR_ERROR_FORMAT},
    {EDIT_TAMPER, "layers.8.weight", NULL, "fingerprint", CBIR_ERROR_FORMAT},
    {EDIT_NAN, "layers.8.weight", NULL, "NaN", CBIR_ERROR_FORMAT},
    {EDIT_ARCH, "", "{\"input\": [1, 28, 28", "invalid JSON", CBIR_ERROR_FORMAT},
    {EDIT_ARCH, "", NULL, "architecture", CBIR_ERROR_FORMAT},
    {EDIT_ARCH, "", "{\"input\": [1, 28, 28], \"code_layer\": 0, \"layers\": "
          "[{\"type\": \"conv2d\", \"filters\": 1}, {\"type\": \"swish\"}]}",
        "layer 1", CBIR_ERROR_FORMAT},
    {EDIT_FORMAT, "", "gst-cbir-gallery", "not a model file",
        CBIR_ERROR_FORMAT},
    {EDIT_VERSION, "", "7", "version", CBIR_ERROR_UNSUPPORTED},
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *name = g_strdup_printf ("bad-%u.safetensors", i);
    g_autofree char *p = rewrite (good, name, cases[i].edit, cases[i].target,
        cases[i].value);
    CbirModel *l = cbir_model_load (p, &err);
    ck_assert_msg (l == NULL, "case %u loaded", i);
    assert_error_has (err, p, cases[i].want);
    ck_assert_msg (err->code == (gint) cases[i].code, "case %u: code %d: %s",
        i, err->code, err->message);
    g_clear_error (&err);
  }
  /* a different architecture with the stored fingerprint is refused too */
  {
    g_autofree char *p = rewrite (good, "arch-changed.safetensors", EDIT_ARCH,
        "", cbir_model_get_preset_json ("pyimagesearch"));
    /* the preset's training block equals the model's, so only a real
     * change matters: tamper with the lr */
    g_autofree char *arch = g_strdup (cbir_model_get_arch_json (m));
    char *lr = strstr (arch, "\"lr\":0.001");
    ck_assert (lr != NULL);
    lr[9] = '2';
    g_autofree char *p2 = rewrite (good, "arch-changed2.safetensors",
        EDIT_ARCH, "", arch);
    ck_assert (cbir_model_load (p2, &err) == NULL);
    assert_error_has (err, p2, "fingerprint");
    g_clear_error (&err);
    /* ...whereas the same architecture written non-canonically loads */
    CbirModel *l = cbir_model_load (p, &err);
    ck_assert_msg (l != NULL, "%s", err ? err->message : "");
    ck_assert_str_eq (cbir_model_get_fingerprint (l),
        cbir_model_get_fingerprint (m));
    cbir_model_free (l);
  }
  /* truncated file and garbage */
  {
    g_autofree char *bytes = NULL;
    gsize len;
    ck_assert (g_file_get_contents (good, &bytes, &len, NULL));
    g_autofree char *p = tmp_path ("trunc.safetensors");
    ck_assert (g_file_set_contents (p, bytes, len - 100, NULL));
    ck_assert (cbir_model_load (p, &err) == NULL);
    assert_error_has (err, p, NULL);
    g_clear_error (&err);
    ck_assert (g_file_set_contents (p, "garbage", -1, NULL));
    ck_assert (cbir_model_load (p, &err) == NULL);
    assert_error_has (err, p, NULL);
    g_clear_error (&err);
    g_autofree char *none = tmp_path ("none.safetensors");
    ck_assert (cbir_model_load (none, &err) == NULL);
    assert_error_has (err, none, NULL);
    g_clear_error (&err);
  }
}
END_TEST

/* An autoencoder of `n_dense` dense layers of `units` units on an input of
 * 1 x h x w = units values. */
static char *
dense_arch (guint n_dense, int units, int h, int w)
{
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "{\"input\": [1, %d, %d], \"code_layer\": 1, "
      "\"layers\": [{\"type\": \"flatten\"}", h, w);
  for (guint i = 0; i < n_dense; i++)
    g_string_append_printf (s, ", {\"type\": \"dense\", \"units\": %d}",
        units);
  g_string_append_printf (s, ", {\"type\": \"reshape\", \"shape\": [1, %d, "
      "%d]}]}", h, w);
  return g_string_free (s, FALSE);
}

/* The memory budget is checked before anything big is allocated: an
 * architecture of forty 16384x16384 dense layers (43 GB) in an 80 KB file
 * or a 1.7 KB JSON is an error, not an abort; a layout within the budget
 * whose tensors are not in the file fails before its parameter block is
 * allocated (checked in a child whose address space has no room for it). */
START_TEST (test_memory_budget)
{
  GError *err = NULL;
  g_autofree char *huge = dense_arch (40, 16384, 128, 128);
  ck_assert (cbir_model_new_from_json (huge, "huge", &err) == NULL);
  assert_error_has (err, "huge", "limit");
  g_clear_error (&err);

  g_autofree char *arch_path = tmp_path ("huge.json");
  ck_assert (g_file_set_contents (arch_path, huge, -1, NULL));
  ck_assert (cbir_model_new_from_arch_file (arch_path, &err) == NULL);
  assert_error_has (err, arch_path, "MiB");
  g_clear_error (&err);

  g_autoptr (CbirModel) m = make_model ("pyimagesearch", 5);
  g_autofree char *good = tmp_path ("good.safetensors");
  ck_assert (cbir_model_save (m, good, &err));
  g_autofree char *p = rewrite (good, "huge.safetensors", EDIT_ARCH, "",
      huge);
  ck_assert (cbir_model_load (p, &err) == NULL);
  assert_error_has (err, p, "limit");
  g_clear_error (&err);

  /* 8192 x 8192: 256 MiB of parameters, within the budget, not in the file */
  g_autofree char *big = dense_arch (1, 8192, 64, 128);
  g_autofree char *pb = rewrite (good, "big.safetensors", EDIT_ARCH, "", big);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  gboolean sanitizer = TRUE;    /* they reserve terabytes of address space */
#else
  gboolean sanitizer = FALSE;
#endif
  if (!sanitizer) {
    pid_t pid = fork ();
    ck_assert (pid >= 0);
    if (pid == 0) {
      /* the address space in use now plus 128 MiB */
      g_autofree char *status = NULL;
      unsigned long kb = 0;
      if (g_file_get_contents ("/proc/self/status", &status, NULL, NULL)) {
        const char *v = strstr (status, "VmSize:");
        if (v)
          kb = strtoul (v + 7, NULL, 10);
      }
      struct rlimit lim = { (kb + 128 * 1024) * 1024, RLIM_INFINITY };
      if (kb == 0 || setrlimit (RLIMIT_AS, &lim) != 0)
        _exit (3);
      GError *e = NULL;
      CbirModel *l = cbir_model_load (pb, &e);
      _exit (l == NULL && e && strstr (e->message, "layers.1.weight") ? 0 : 1);
    }
    int st = 0;
    ck_assert (waitpid (pid, &st, 0) == pid);
    ck_assert_msg (WIFEXITED (st) && WEXITSTATUS (st) == 0,
        "loading a file without the tensors of a 256 MiB layout: %s %d",
        WIFEXITED (st) ? "exit" : "signal", WIFEXITED (st) ? WEXITSTATUS (st)
        : WTERMSIG (st));
  }
  ck_assert (cbir_model_load (pb, &err) == NULL);
  assert_error_has (err, pb, "layers.1.weight");
  g_clear_error (&err);
}
END_TEST

/* A model holding a value no reader would load is not written: NaN or
 * infinity in a weight, in a BN running variance (what a diverged SGD run
 * left), in the code mean. */
START_TEST (test_save_non_finite)
{
  static const struct {
    const char *tensor;
    float value;
  } cases[] = {
    {"layers.0.weight", NAN},
    {"layers.2.running_var", INFINITY},
    {"layers.8.bias", -INFINITY},
  };
  GError *err = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (CbirModel) m = make_model ("pyimagesearch", 5);
    CbirNet *net = cbir_model_get_net (m);
    const CbirNetTensor *t = cbir_net_find_tensor (net, cases[i].tensor);
    ck_assert_msg (t != NULL, "%s", cases[i].tensor);
    ck_assert (cbir_net_find_non_finite (net) == NULL);
    cbir_net_params (net)[t->offset + t->size - 1] = cases[i].value;
    ck_assert (cbir_net_find_non_finite (net) == t);
    g_autofree char *p = tmp_path ("nan.safetensors");
    ck_assert (!cbir_model_save (m, p, &err));
    assert_error_has (err, p, cases[i].tensor);
    g_clear_error (&err);
    ck_assert (!g_file_test (p, G_FILE_TEST_EXISTS));
  }
  {
    g_autoptr (CbirModel) m = make_model ("default", 5);
    guint dim = cbir_model_get_code_dim (m);
    g_autofree float *mean = g_new0 (float, dim);
    mean[dim / 2] = NAN;
    cbir_model_set_code_mean (m, mean);
    g_autofree char *p = tmp_path ("nanmean.safetensors");
    ck_assert (!cbir_model_save (m, p, &err));
    assert_error_has (err, p, "code");
    g_clear_error (&err);
    ck_assert (!g_file_test (p, G_FILE_TEST_EXISTS));
  }
}
END_TEST

static gint
cmp_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
put_le64 (GByteArray *b, guint64 v)
{
  for (int i = 0; i < 8; i++) {
    guint8 c = (guint8) (v >> (8 * i));
    g_byte_array_append (b, &c, 1);
  }
}

/* A file laid out as another writer would (PyTorch/numpy's safetensors:
 * tensors sorted by name, packed without alignment, header not padded,
 * only an "architecture" in the metadata, no fingerprint), built byte by
 * byte without our writer. */
START_TEST (test_foreign_file)
{
  g_autoptr (CbirModel) m = make_model ("pyimagesearch", 9);
  CbirNet *net = cbir_model_get_net (m);
  guint nt = cbir_net_n_tensors (net);
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  for (guint i = 0; i < nt; i++)
    g_ptr_array_add (names, cbir_net_tensor (net, i)->name);
  g_ptr_array_sort (names, cmp_names);
  /* architecture without normalisation; it goes in its own key */
  g_autoptr (GString) arch = g_string_new (cbir_model_get_preset_json
      ("pyimagesearch"));
  g_autoptr (GString) hdr = g_string_new ("{\"__metadata__\": "
      "{\"architecture\": ");
  {
    /* JSON-escape the architecture */
    g_string_append_c (hdr, '"');
    for (const char *p = arch->str; *p; p++) {
      if (*p == '"' || *p == '\\')
        g_string_append_c (hdr, '\\');
      if (*p == '\n') {
        g_string_append (hdr, "\\n");
        continue;
      }
      g_string_append_c (hdr, *p);
    }
    g_string_append (hdr, "\", \"normalisation\": \"{\\\"scale\\\": "
        "0.00392156862745098, \\\"offset\\\": 0}\"}");
  }
  gsize off = 0;
  for (guint i = 0; i < names->len; i++) {
    const CbirNetTensor *t = cbir_net_find_tensor (net, names->pdata[i]);
    g_string_append_printf (hdr, ", \"%s\": {\"dtype\": \"F32\", \"shape\": [",
        t->name);
    for (guint d = 0; d < t->ndim; d++)
      g_string_append_printf (hdr, "%s%" G_GINT64_FORMAT, d ? ", " : "",
          t->shape[d]);
    g_string_append_printf (hdr, "], \"data_offsets\": [%" G_GSIZE_FORMAT
        ", %" G_GSIZE_FORMAT "]}", off, off + t->size * 4);
    off += t->size * 4;
  }
  g_string_append (hdr, "}");
  if (hdr->len % 8 == 0)
    g_string_append_c (hdr, ' ');       /* deliberately unaligned data */
  g_autoptr (GByteArray) b = g_byte_array_new ();
  put_le64 (b, hdr->len);
  g_byte_array_append (b, (const guint8 *) hdr->str, hdr->len);
  for (guint i = 0; i < names->len; i++) {
    const CbirNetTensor *t = cbir_net_find_tensor (net, names->pdata[i]);
    const float *src = cbir_net_params (net) + t->offset;
    for (gsize k = 0; k < t->size; k++) {
      guint32 u;
      memcpy (&u, &src[k], 4);
      u = GUINT32_TO_LE (u);
      g_byte_array_append (b, (const guint8 *) &u, 4);
    }
  }
  g_autofree char *p = tmp_path ("torch.safetensors");
  ck_assert (g_file_set_contents (p, (const char *) b->data, b->len, NULL));
  GError *err = NULL;
  g_autoptr (CbirModel) l = cbir_model_load (p, &err);
  ck_assert_msg (l != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (cbir_model_get_fingerprint (l),
      cbir_model_get_fingerprint (m));
  g_autofree guint8 *px = make_images (4);
  g_autofree float *c1 = encode (m, px, 4);
  g_autofree float *c2 = encode (l, px, 4);
  ck_assert (memcmp (c1, c2, 4 * 16 * 4) == 0);
  /* extra tensors (optimiser state, num_batches_tracked) are ignored */
}
END_TEST

START_TEST (test_pack_bits)
{
  const float codes[2 * 10] = {
    1, 0, -1, 2, 0.5f, 0, 0, 0, 3, 0.1f,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
  };
  guint8 out[4];
  memset (out, 0xee, sizeof out);
  cbir_codes_pack_bits (codes, 2, 10, NULL, out);
  ck_assert_uint_eq (out[0], 0x1 | 0x8 | 0x10);
  ck_assert_uint_eq (out[1], 0x1 | 0x2);
  ck_assert_uint_eq (out[2], 0x0);
  ck_assert_uint_eq (out[3], 0x2);
  float th[10] = { 2, 0, 0, 2, 0, 0, 0, 0, 0, 0.5f };
  cbir_codes_pack_bits (codes, 2, 10, th, out);
  ck_assert_uint_eq (out[0], 0x10);
  ck_assert_uint_eq (out[1], 0x1);
  ck_assert_uint_eq (out[3], 0x2);
}
END_TEST

typedef struct {
  CbirModel *m;
  const guint8 *px;
  guint n;
  const float *want;
  gboolean ok;
} EncJob;

static gpointer
enc_thread (gpointer data)
{
  EncJob *j = data;
  guint dim = cbir_model_get_code_dim (j->m);
  g_autofree float *c = g_new (float, dim);
  j->ok = TRUE;
  for (guint rep = 0; rep < 3; rep++)
    for (guint i = 0; i < j->n; i++) {
      if (!cbir_model_encode_u8 (j->m, j->px + (gsize) i * 784, 1, c, NULL)
          || memcmp (c, j->want + (gsize) i * dim, dim * 4) != 0)
        j->ok = FALSE;
    }
  return NULL;
}

START_TEST (test_concurrent_encode)
{
  g_autoptr (CbirModel) m = make_model ("default", 3);
  const guint n = 20;
  g_autofree guint8 *px = make_images (n);
  g_autofree float *want = encode (m, px, n);      /* batched */
  EncJob jobs[4];
  GThread *th[4];
  for (guint i = 0; i < 4; i++) {
    jobs[i] = (EncJob) { m, px, n, want, FALSE };
    th[i] = g_thread_new ("enc", enc_thread, &jobs[i]);
  }
  for (guint i = 0; i < 4; i++) {
    g_thread_join (th[i]);
    ck_assert_msg (jobs[i].ok, "thread %u: batch-1 codes differ", i);
  }
  /* f32 input path agrees with u8 (through the model's input table) */
  const float *lut = cbir_model_get_input_lut (m);
  g_autofree float *x = g_new (float, n * 784);
  for (guint k = 0; k < n * 784; k++)
    x[k] = lut[px[k]];
  const guint dim = cbir_model_get_code_dim (m);
  g_autofree float *c = g_new (float, n * dim);
  ck_assert (cbir_model_encode_f32 (m, x, n, c, NULL));
  for (guint k = 0; k < n * dim; k++)
    ck_assert_float_eq_tol (c[k], want[k], 1e-5f);
  /* reconstruction has the input's size and lies in [0,1] */
  g_autofree float *r = g_new (float, n * 784);
  CbirNet *net = cbir_model_get_net (m);
  ck_assert (cbir_model_forward_f32 (m, x, n, cbir_net_n_layers (net) - 1, r,
          NULL));
  for (guint k = 0; k < n * 784; k++)
    ck_assert (r[k] >= 0 && r[k] <= 1);
  GError *err = NULL;
  ck_assert (!cbir_model_forward_f32 (m, x, n, 99, r, &err));
  g_clear_error (&err);
}
END_TEST

/* A small float model: conv-pool encoder with a dense 8-d code. */
static char *
norm_arch (const char *code_type, const char *norm)
{
  GString *s = g_string_new ("{\"name\": \"n\", \"input\": [1, 28, 28], "
      "\"code_layer\": 4, ");
  if (code_type)
    g_string_append_printf (s, "\"code_type\": \"%s\", ", code_type);
  if (norm)
    g_string_append_printf (s, "\"code_normalise\": \"%s\", ", norm);
  g_string_append (s, "\"layers\": ["
      "{\"type\": \"conv2d\", \"filters\": 4, \"kernel\": 3},"
      "{\"type\": \"relu\"}, {\"type\": \"maxpool2\"},"
      "{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 8},"
      "{\"type\": \"dense\", \"units\": 784}, {\"type\": \"sigmoid\"},"
      "{\"type\": \"reshape\", \"shape\": [1, 28, 28]}]}");
  return g_string_free (s, FALSE);
}

static CbirModel *
norm_model (const char *code_type, const char *norm, guint64 seed,
    GError **error)
{
  g_autofree char *json = norm_arch (code_type, norm);
  CbirModel *m = cbir_model_new_from_json (json, "norm-test", error);
  if (m) {
    cbir_net_init_params (cbir_model_get_net (m), seed);
    cbir_model_update_fingerprint (m);
  }
  return m;
}

START_TEST (test_code_normalise)
{
  GError *err = NULL;
  g_autoptr (CbirModel) raw = norm_model (NULL, NULL, 4, &err);
  ck_assert_msg (raw != NULL, "%s", err ? err->message : "");
  g_autoptr (CbirModel) none = norm_model ("float", "none", 4, &err);
  g_autoptr (CbirModel) l2 = norm_model ("float", "l2", 4, &err);
  ck_assert_msg (none && l2, "%s", err ? err->message : "");
  ck_assert_int_eq (cbir_model_get_code_normalise (raw),
      CBIR_CODE_NORMALISE_NONE);
  ck_assert_int_eq (cbir_model_get_code_normalise (l2),
      CBIR_CODE_NORMALISE_L2);
  /* "none" is the default: same canonical JSON and fingerprint */
  ck_assert_str_eq (cbir_model_get_arch_json (raw),
      cbir_model_get_arch_json (none));
  ck_assert_str_eq (cbir_model_get_fingerprint (raw),
      cbir_model_get_fingerprint (none));
  ck_assert (strstr (cbir_model_get_arch_json (raw), "code_normalise") ==
      NULL);
  /* "l2" is part of the canonical JSON and so of the fingerprint */
  ck_assert (strstr (cbir_model_get_arch_json (l2),
          "\"code_normalise\":\"l2\"") != NULL);
  ck_assert_str_ne (cbir_model_get_fingerprint (raw),
      cbir_model_get_fingerprint (l2));

  /* codes: unit length, the raw code's direction */
  const guint n = 6, dim = 8;
  ck_assert_uint_eq (cbir_model_get_code_dim (l2), dim);
  g_autofree guint8 *px = make_images (n);
  g_autofree float *c0 = encode (raw, px, n);
  g_autofree float *c1 = encode (l2, px, n);
  for (guint i = 0; i < n; i++) {
    double len0 = 0, len1 = 0;
    for (guint j = 0; j < dim; j++) {
      len0 += (double) c0[i * dim + j] * c0[i * dim + j];
      len1 += (double) c1[i * dim + j] * c1[i * dim + j];
    }
    ck_assert (len0 > 1e-6);
    ck_assert_msg (fabs (sqrt (len1) - 1) < 1e-5, "code %u length %g", i,
        sqrt (len1));
    for (guint j = 0; j < dim; j++)
      ck_assert_float_eq_tol (c1[i * dim + j],
          (float) (c0[i * dim + j] / sqrt (len0)), 1e-5f);
  }
  /* batch-1 (inline path) and the float input path normalise too */
  float one[8];
  ck_assert (cbir_model_encode_u8 (l2, px + 784, 1, one, NULL));
  for (guint j = 0; j < dim; j++)
    ck_assert_float_eq_tol (one[j], c1[dim + j], 1e-6f);
  g_autofree float *x = g_new (float, n * 784);
  for (guint k = 0; k < n * 784; k++)
    x[k] = px[k] * (1.0f / 255.0f);
  g_autofree float *cf = g_new (float, n * dim);
  ck_assert (cbir_model_encode_f32 (l2, x, n, cf, NULL));
  for (guint k = 0; k < n * dim; k++)
    ck_assert_float_eq_tol (cf[k], c1[k], 1e-5f);
  /* cbir_model_forward_f32 gives the raw layer output */
  ck_assert (cbir_model_forward_f32 (l2, x, n, cbir_model_get_code_layer (l2),
          cf, NULL));
  for (guint k = 0; k < n * dim; k++)
    ck_assert_float_eq_tol (cf[k], c0[k], 1e-5f);

  /* a zero code stays zero (no NaN): all-zero weights and biases */
  g_autoptr (CbirModel) z = norm_model ("float", "l2", 4, &err);
  CbirNet *zn = cbir_model_get_net (z);
  memset (cbir_net_params (zn), 0, cbir_net_n_params (zn) * sizeof (float));
  cbir_net_params_changed (zn);
  cbir_model_update_fingerprint (z);
  g_autofree float *cz = encode (z, px, 2);
  for (guint k = 0; k < 2 * dim; k++)
    ck_assert (cz[k] == 0.0f);

  /* save/load keeps it */
  g_autofree char *path = tmp_path ("l2.safetensors");
  ck_assert (cbir_model_save (l2, path, &err));
  g_autoptr (CbirModel) back = cbir_model_load (path, &err);
  ck_assert_msg (back != NULL, "%s", err ? err->message : "");
  ck_assert_int_eq (cbir_model_get_code_normalise (back),
      CBIR_CODE_NORMALISE_L2);
  ck_assert_str_eq (cbir_model_get_fingerprint (back),
      cbir_model_get_fingerprint (l2));
  g_autofree float *cb = encode (back, px, n);
  ck_assert (memcmp (cb, c1, n * dim * sizeof (float)) == 0);

  /* bit models refuse "l2"; unknown values are refused */
  ck_assert (norm_model ("bits", "l2", 4, &err) == NULL);
  assert_error_has (err, "code_normalise", "bits");
  g_clear_error (&err);
  g_autoptr (CbirModel) bits = norm_model ("bits", "none", 4, &err);
  ck_assert_msg (bits != NULL, "%s", err ? err->message : "");
  ck_assert (norm_model ("float", "cosine", 4, &err) == NULL);
  assert_error_has (err, "code_normalise", "cosine");
  g_clear_error (&err);

  /* enum strings round-trip */
  CbirCodeNormalise cn;
  ck_assert (cbir_code_normalise_from_string ("l2", &cn));
  ck_assert_str_eq (cbir_code_normalise_to_string (cn), "l2");
  ck_assert (!cbir_code_normalise_from_string ("L2", &cn));
}
END_TEST

/* norm_arch's model with a "normalisation" object (NULL: none). */
static CbirModel *
gamma_model (const char *normalisation, GError **error)
{
  g_autofree char *arch = norm_arch ("float", NULL);
  g_autofree char *json = normalisation
      ? g_strdup_printf ("{\"normalisation\": %s, %s", normalisation,
      arch + 1) : g_strdup (arch);
  CbirModel *m = cbir_model_new_from_json (json, "gamma-test", error);
  if (m) {
    cbir_net_init_params (cbir_model_get_net (m), 7);
    cbir_model_update_fingerprint (m);
  }
  return m;
}

/* Input gamma: pixel -> 255 * (pixel / 255)^gamma * scale + offset, in the
 * encoders and in the trainer's [0,1] space; canonical JSON (fingerprint)
 * only carries it when it is not 1; out-of-range values are refused. */
START_TEST (test_input_gamma)
{
  GError *err = NULL;
  g_autoptr (CbirModel) plain = gamma_model (NULL, &err);
  ck_assert_msg (plain != NULL, "%s", err ? err->message : "");
  g_autoptr (CbirModel) one = gamma_model ("{\"gamma\": 1}", &err);
  ck_assert_msg (one != NULL, "%s", err ? err->message : "");
  g_autoptr (CbirModel) sq = gamma_model ("{\"scale\": 0.00392156862745098, "
      "\"gamma\": 0.5}", &err);
  ck_assert_msg (sq != NULL, "%s", err ? err->message : "");
  /* gamma 1 is the default: same canonical JSON, same fingerprint */
  ck_assert_str_eq (cbir_model_get_arch_json (plain),
      cbir_model_get_arch_json (one));
  ck_assert_str_eq (cbir_model_get_fingerprint (plain),
      cbir_model_get_fingerprint (one));
  ck_assert (strstr (cbir_model_get_arch_json (plain), "gamma") == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (sq), "\"gamma\":0.5") != NULL);
  ck_assert (cbir_model_get_input_gamma (sq) == 0.5);

  /* tables: gamma 1 is exactly pixel * scale; 0.5 is the square root */
  const float *lp = cbir_model_get_input_lut (plain);
  const float *ls = cbir_model_get_input_lut (sq);
  for (guint v = 0; v < 256; v++) {
    ck_assert (lp[v] == (float) v * (float) (1.0 / 255.0));
    ck_assert_float_eq_tol (ls[v], sqrtf (v / 255.0f), 1e-6f);
    ck_assert_float_eq_tol (cbir_model_pixel_to_01 (sq, (guint8) v),
        sqrtf (v / 255.0f), 1e-6f);
    ck_assert (cbir_model_pixel_to_01 (plain, (guint8) v) == v / 255.0f);
  }
  ck_assert (ls[0] == 0.0f && ls[255] == 1.0f && ls[64] > 0.5f);

  /* encode from pixels == encode of the gamma-mapped floats */
  const guint n = 5, dim = 8;
  g_autofree guint8 *px = make_images (n);
  g_autofree float *x = g_new (float, n * 784);
  for (guint k = 0; k < n * 784; k++)
    x[k] = sqrtf (px[k] / 255.0f);
  g_autofree float *cu = encode (sq, px, n);
  g_autofree float *cf = g_new (float, n * dim);
  ck_assert (cbir_model_encode_f32 (sq, x, n, cf, NULL));
  for (guint k = 0; k < n * dim; k++)
    ck_assert_float_eq_tol (cu[k], cf[k], 1e-5f);
  float one_code[8];            /* batch-1 path */
  ck_assert (cbir_model_encode_u8 (sq, px + 2 * 784, 1, one_code, NULL));
  for (guint j = 0; j < dim; j++)
    ck_assert_float_eq_tol (one_code[j], cu[2 * dim + j], 1e-6f);
  /* and differs from the plain mapping (same weights) */
  g_autofree float *cp = encode (plain, px, n);
  gboolean differ = FALSE;
  for (guint k = 0; k < n * dim; k++)
    differ |= fabsf (cp[k] - cu[k]) > 1e-4f;
  ck_assert (differ);

  /* save/load keeps it */
  g_autofree char *path = tmp_path ("gamma.safetensors");
  ck_assert (cbir_model_save (sq, path, &err));
  g_autoptr (CbirModel) back = cbir_model_load (path, &err);
  ck_assert_msg (back != NULL, "%s", err ? err->message : "");
  ck_assert (cbir_model_get_input_gamma (back) == 0.5);
  ck_assert_str_eq (cbir_model_get_fingerprint (back),
      cbir_model_get_fingerprint (sq));
  g_autofree float *cb = encode (back, px, n);
  ck_assert (memcmp (cb, cu, n * dim * sizeof (float)) == 0);

  /* refused: out of range, not a number, unknown keys */
  const char *bad[] = { "{\"gamma\": 0}", "{\"gamma\": -1}",
    "{\"gamma\": 21}", "{\"gamma\": \"sqrt\"}", "{\"gama\": 0.5}" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    ck_assert_msg (gamma_model (bad[i], &err) == NULL, "%s accepted", bad[i]);
    ck_assert_msg (err && strstr (err->message, "gam") != NULL, "%s: %s",
        bad[i], err ? err->message : "");
    g_clear_error (&err);
  }
}
END_TEST

/* Deskewing: "deskew": true in the normalisation shears every GRAY8 input
 * upright before the encoder (encode_u8 == encode of the deskewed pixels by
 * the same weights without it); the canonical JSON (fingerprint) carries it
 * only when true; save/load keeps it; not a boolean or a colour input is
 * refused. */
START_TEST (test_input_deskew)
{
  GError *err = NULL;
  g_autoptr (CbirModel) plain = gamma_model (NULL, &err);
  ck_assert_msg (plain != NULL, "%s", err ? err->message : "");
  g_autoptr (CbirModel) off = gamma_model ("{\"deskew\": false}", &err);
  ck_assert_msg (off != NULL, "%s", err ? err->message : "");
  g_autoptr (CbirModel) dsk = gamma_model ("{\"deskew\": true}", &err);
  ck_assert_msg (dsk != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (cbir_model_get_fingerprint (plain),
      cbir_model_get_fingerprint (off));
  ck_assert (strstr (cbir_model_get_arch_json (plain), "deskew") == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (dsk), "\"deskew\":true"));
  ck_assert_str_ne (cbir_model_get_fingerprint (plain),
      cbir_model_get_fingerprint (dsk));
  ck_assert (!cbir_model_get_deskew (plain) && cbir_model_get_deskew (dsk));

  /* slanted strokes, so that the shear is not the identity */
  const guint n = 5, dim = 8;
  g_autofree guint8 *px = g_new0 (guint8, n * 784);
  for (guint i = 0; i < n; i++)
    for (guint y = 4; y < 24; y++)
      for (guint w = 0; w < 3; w++)
        px[i * 784 + y * 28 + 6 + i + (y * (i + 1)) / 6 + w] = 200 + 10 * w;
  g_autofree guint8 *up = g_new (guint8, n * 784);
  for (guint i = 0; i < n; i++)
    ck_assert (fabs (cbir_preprocess_deskew (px + i * 784, 28, 28,
                up + i * 784)) > 0.1);
  g_autofree float *cd = encode (dsk, px, n);
  g_autofree float *cu = encode (plain, up, n);
  ck_assert (memcmp (cd, cu, n * dim * sizeof (float)) == 0);
  float one_code[8];            /* batch-1 path */
  ck_assert (cbir_model_encode_u8 (dsk, px + 3 * 784, 1, one_code, NULL));
  for (guint j = 0; j < dim; j++)
    ck_assert_float_eq_tol (one_code[j], cd[3 * dim + j], 1e-6f);
  g_autofree float *cp = encode (plain, px, n);
  ck_assert (memcmp (cp, cd, n * dim * sizeof (float)) != 0);

  /* turned on by the setter (after an encoding made a pool entry without
   * a deskew buffer): the same model as from the JSON, same codes */
  g_autoptr (CbirModel) later = gamma_model (NULL, &err);
  g_autofree float *before = encode (later, px, n);
  ck_assert (memcmp (before, cp, n * dim * sizeof (float)) == 0);
  ck_assert (cbir_model_set_deskew (later, TRUE, &err));
  ck_assert_str_eq (cbir_model_get_fingerprint (later),
      cbir_model_get_fingerprint (dsk));
  g_autofree float *after = encode (later, px, n);
  ck_assert (memcmp (after, cd, n * dim * sizeof (float)) == 0);
  ck_assert (cbir_model_set_deskew (later, FALSE, &err));
  ck_assert_str_eq (cbir_model_get_fingerprint (later),
      cbir_model_get_fingerprint (plain));

  /* save/load keeps it */
  g_autofree char *path = tmp_path ("deskew.safetensors");
  ck_assert (cbir_model_save (dsk, path, &err));
  g_autoptr (CbirModel) back = cbir_model_load (path, &err);
  ck_assert_msg (back != NULL, "%s", err ? err->message : "");
  ck_assert (cbir_model_get_deskew (back));
  ck_assert_str_eq (cbir_model_get_fingerprint (back),
      cbir_model_get_fingerprint (dsk));

  /* refused: not a boolean */
  ck_assert (gamma_model ("{\"deskew\": 1}", &err) == NULL);
  ck_assert_msg (strstr (err->message, "deskew"), "%s", err->message);
  g_clear_error (&err);
  /* refused: three channels */
  const char *rgb = "{\"name\": \"rgb\", \"input\": [3, 8, 8], "
      "\"normalisation\": {\"deskew\": true}, \"code_layer\": 1, "
      "\"layers\": [{\"type\": \"flatten\"}, {\"type\": \"dense\", "
      "\"out\": 4}]}";
  ck_assert (cbir_model_new_from_json (rgb, "rgb", &err) == NULL);
  ck_assert_msg (err && strstr (err->message, "deskew")
      && strstr (err->message, "3 channels"), "%s", err ? err->message : "");
  g_clear_error (&err);
}
END_TEST

/* A copy of the model file `path` with the tensor `tensor` renamed (its
 * 6th character changed) must be refused with an error naming it. */
static void
assert_refused_without (const char *path, const char *tensor)
{
  GError *err = NULL;
  gchar *data;
  gsize len;
  ck_assert (g_file_get_contents (path, &data, &len, NULL));
  guint64 hlen;
  memcpy (&hlen, data, 8);
  hlen = GUINT64_FROM_LE (hlen);
  ck_assert (hlen + 8 <= len);
  char *hit = g_strstr_len (data + 8, (gssize) hlen, tensor);
  ck_assert (hit != NULL);
  hit[5] = 'x';
  g_autofree char *bad = tmp_path ("without-tensor.safetensors");
  ck_assert (g_file_set_contents (bad, data, len, NULL));
  g_free (data);
  ck_assert (cbir_model_load (bad, &err) == NULL);
  ck_assert_msg (strstr (err->message, tensor) != NULL, "%s", err->message);
  g_clear_error (&err);
}

/* "centre-l2": codes are l2n(raw - mean), the mean fitted on images, saved
 * as tensor "code.mean" and covered by the fingerprint. */
START_TEST (test_code_centre)
{
  GError *err = NULL;
  g_autoptr (CbirModel) l2 = norm_model ("float", "l2", 4, &err);
  g_autoptr (CbirModel) c = norm_model ("float", "centre-l2", 4, &err);
  ck_assert_msg (l2 && c, "%s", err ? err->message : "");
  ck_assert_int_eq (cbir_model_get_code_normalise (c),
      CBIR_CODE_NORMALISE_CENTRE_L2);
  ck_assert (cbir_model_get_code_mean (l2) == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (c),
          "\"code_normalise\":\"centre-l2\"") != NULL);
  const guint n = 6, dim = 8;
  g_autofree guint8 *px = make_images (n);
  /* mean zero until fitted: exactly the l2 codes */
  const float *mean = cbir_model_get_code_mean (c);
  for (guint j = 0; j < dim; j++)
    ck_assert (mean[j] == 0.0f);
  g_autofree float *a = encode (l2, px, n);
  g_autofree float *b = encode (c, px, n);
  ck_assert (memcmp (a, b, n * dim * sizeof (float)) == 0);

  char before[65];
  g_strlcpy (before, cbir_model_get_fingerprint (c), sizeof before);
  ck_assert (cbir_model_fit_code_transform (c, px, n, &err));
  ck_assert_str_ne (before, cbir_model_get_fingerprint (c));
  /* the mean is the mean raw code */
  g_autofree float *x = g_new (float, n * 784);
  for (guint k = 0; k < n * 784; k++)
    x[k] = px[k] * (1.0f / 255.0f);
  g_autofree float *raw = g_new (float, n * dim);
  ck_assert (cbir_model_forward_f32 (c, x, n, cbir_model_get_code_layer (c),
          raw, NULL));
  for (guint j = 0; j < dim; j++) {
    double s = 0;
    for (guint i = 0; i < n; i++)
      s += raw[i * dim + j];
    ck_assert_float_eq_tol (mean[j], (float) (s / n), 1e-5f);
  }
  /* codes: unit length, the direction of raw - mean */
  g_autofree float *cc = encode (c, px, n);
  gboolean differ = FALSE;
  for (guint i = 0; i < n; i++) {
    double len = 0, l1 = 0;
    for (guint j = 0; j < dim; j++) {
      double d = raw[i * dim + j] - mean[j];
      len += d * d;
      l1 += (double) cc[i * dim + j] * cc[i * dim + j];
    }
    ck_assert (len > 1e-8);
    ck_assert_msg (fabs (sqrt (l1) - 1) < 1e-5, "length %g", sqrt (l1));
    for (guint j = 0; j < dim; j++) {
      ck_assert_float_eq_tol (cc[i * dim + j],
          (float) ((raw[i * dim + j] - mean[j]) / sqrt (len)), 1e-4f);
      differ |= fabsf (cc[i * dim + j] - a[i * dim + j]) > 1e-4f;
    }
  }
  ck_assert (differ);
  /* set_code_mean: same as fitted, same fingerprint */
  g_autoptr (CbirModel) c2 = norm_model ("float", "centre-l2", 4, &err);
  cbir_model_set_code_mean (c2, mean);
  ck_assert_str_eq (cbir_model_get_fingerprint (c2),
      cbir_model_get_fingerprint (c));

  /* save/load keeps the mean and the codes */
  g_autofree char *path = tmp_path ("centre.safetensors");
  ck_assert (cbir_model_save (c, path, &err));
  g_autoptr (CbirModel) back = cbir_model_load (path, &err);
  ck_assert_msg (back != NULL, "%s", err ? err->message : "");
  ck_assert (memcmp (cbir_model_get_code_mean (back), mean,
          dim * sizeof (float)) == 0);
  ck_assert_str_eq (cbir_model_get_fingerprint (back),
      cbir_model_get_fingerprint (c));
  g_autofree float *cb = encode (back, px, n);
  ck_assert (memcmp (cb, cc, n * dim * sizeof (float)) == 0);

  /* a file without the mean is refused, naming the tensor */
  assert_refused_without (path, "code.mean");

  /* bit models refuse it */
  ck_assert (norm_model ("bits", "centre-l2", 4, &err) == NULL);
  assert_error_has (err, "code_normalise", "bits");
  g_clear_error (&err);
}
END_TEST

/* A whiten-l2 model (code_whiten_power `power`, NULL: the default). */
static CbirModel *
whiten_model (const char *power, guint64 seed, GError **error)
{
  g_autofree char *base = norm_arch ("float", "whiten-l2");
  g_autofree char *json = power ? g_strdup_printf ("{\"code_whiten_power\": "
      "%s, %s", power, base + 1) : g_strdup (base);
  CbirModel *m = cbir_model_new_from_json (json, "whiten-test", error);
  if (m) {
    cbir_net_init_params (cbir_model_get_net (m), seed);
    cbir_model_update_fingerprint (m);
  }
  return m;
}

/* Covariance (n - 1) of z_i = W (raw_i - mean), dim x dim. */
static void
whitened_cov (CbirModel *m, const guint8 *px, guint n, double *cov)
{
  const guint dim = cbir_model_get_code_dim (m);
  g_autofree float *x = g_new (float, (gsize) n * 784);
  for (gsize k = 0; k < (gsize) n * 784; k++)
    x[k] = px[k] * (1.0f / 255.0f);
  g_autofree float *raw = g_new (float, (gsize) n * dim);
  ck_assert (cbir_model_forward_f32 (m, x, n, cbir_model_get_code_layer (m),
          raw, NULL));
  const float *mean = cbir_model_get_code_mean (m);
  const float *w = cbir_model_get_code_whiten (m);
  g_autofree double *z = g_new0 (double, (gsize) n * dim);
  for (guint i = 0; i < n; i++)
    for (guint r = 0; r < dim; r++)
      for (guint j = 0; j < dim; j++)
        z[i * dim + r] += (double) w[r * dim + j] * (raw[i * dim + j] -
            mean[j]);
  for (guint a = 0; a < dim; a++)
    for (guint b = 0; b < dim; b++) {
      double acc = 0;
      for (guint i = 0; i < n; i++)
        acc += z[i * dim + a] * z[i * dim + b];
      cov[a * dim + b] = acc / (n - 1);
    }
}

/* "whiten-l2": codes are l2n(W (raw - mean)), W = diag(var^-p) V^T fitted
 * on images (identity before: then the centre-l2 codes), saved as tensor
 * "code.whiten", covered by the fingerprint; p from "code_whiten_power". */
START_TEST (test_code_whiten)
{
  GError *err = NULL;
  const guint n = 64, dim = 8;
  /* random dots: codes that span all 8 dimensions */
  g_autofree guint8 *px = g_new0 (guint8, (gsize) n * 784);
  GRand *r = g_rand_new_with_seed (3);
  for (gsize k = 0; k < (gsize) n * 784; k++)
    px[k] = g_rand_int_range (r, 0, 4) == 0 ? (guint8) g_rand_int_range (r,
        0, 256) : 0;
  g_rand_free (r);
  g_autoptr (CbirModel) c = norm_model ("float", "centre-l2", 4, &err);
  g_autoptr (CbirModel) w = whiten_model (NULL, 4, &err);
  g_autoptr (CbirModel) full = whiten_model ("0.5", 4, &err);
  ck_assert_msg (c && w && full, "%s", err ? err->message : "");
  ck_assert_int_eq (cbir_model_get_code_normalise (w),
      CBIR_CODE_NORMALISE_WHITEN_L2);
  ck_assert (cbir_model_get_code_whiten_power (w) == 0.15);
  ck_assert (cbir_model_get_code_whiten_power (full) == 0.5);
  ck_assert (cbir_model_get_code_whiten (c) == NULL);
  ck_assert (cbir_model_get_code_whiten_power (c) == 0);
  ck_assert (strstr (cbir_model_get_arch_json (w),
          "\"code_normalise\":\"whiten-l2\",\"code_whiten_power\":0.15"));
  ck_assert_str_ne (cbir_model_get_fingerprint (w),
      cbir_model_get_fingerprint (full));
  /* before fitting: the identity, so exactly the centre-l2 codes */
  const float *wm = cbir_model_get_code_whiten (w);
  for (guint a = 0; a < dim; a++)
    for (guint b = 0; b < dim; b++)
      ck_assert (wm[a * dim + b] == (a == b ? 1.0f : 0.0f));
  g_autofree float *cw0 = encode (w, px, n);
  g_autofree float *cc0 = encode (c, px, n);
  ck_assert (memcmp (cw0, cc0, sizeof (float) * n * dim) == 0);
  ck_assert (cbir_model_fit_code_transform (c, px, n, &err));
  char before[65];
  g_strlcpy (before, cbir_model_get_fingerprint (w), sizeof before);

  ck_assert_msg (cbir_model_fit_code_transform (w, px, n, &err), "%s",
      err ? err->message : "");
  ck_assert_msg (cbir_model_fit_code_transform (full, px, n, &err), "%s",
      err ? err->message : "");
  ck_assert_str_ne (before, cbir_model_get_fingerprint (w));
  /* the same mean as centre-l2 */
  ck_assert (memcmp (cbir_model_get_code_mean (w), cbir_model_get_code_mean
          (c), dim * sizeof (float)) == 0);
  /* p = 0.5: the whitened codes have unit covariance. p = 0.15: W is
   * symmetric (V diag V^T) and the whitened covariance V diag(var^0.7) V^T
   * shares its axes with the raw covariance C (the two commute) */
  double cov[64], craw[64];
  whitened_cov (full, px, n, cov);
  for (guint a = 0; a < dim; a++)
    for (guint b = 0; b < dim; b++)
      ck_assert_msg (fabs (cov[a * dim + b] - (a == b)) < 2e-3,
          "full whitening: cov[%u][%u] = %g", a, b, cov[a * dim + b]);
  wm = cbir_model_get_code_whiten (w);
  for (guint a = 0; a < dim; a++)
    for (guint b = 0; b < a; b++)
      ck_assert (fabsf (wm[a * dim + b] - wm[b * dim + a]) <= 1e-6f *
          (fabsf (wm[a * dim + b]) + 1e-3f));
  whitened_cov (w, px, n, cov);
  /* C itself: the covariance of the raw codes (W = identity) */
  g_autoptr (CbirModel) ident = whiten_model (NULL, 4, &err);
  cbir_model_set_code_mean (ident, cbir_model_get_code_mean (w));
  whitened_cov (ident, px, n, craw);
  double norm = 0, diff = 0;
  for (guint a = 0; a < dim; a++)
    for (guint b = 0; b < dim; b++) {
      double ab = 0, ba = 0;
      for (guint k = 0; k < dim; k++) {
        ab += cov[a * dim + k] * craw[k * dim + b];
        ba += craw[a * dim + k] * cov[k * dim + b];
      }
      diff += (ab - ba) * (ab - ba);
      norm += ab * ab;
    }
  ck_assert_msg (sqrt (diff) < 1e-4 * sqrt (norm), "C and W C W do not "
      "commute: %g of %g", sqrt (diff), sqrt (norm));
  /* and the variance is spread more evenly over the axes: tr(X^2)/tr(X)^2
   * (1/dim when even, 1 when one axis has it all) falls */
  double t1 = 0, t2 = 0, r1 = 0, r2 = 0;
  for (guint a = 0; a < dim; a++) {
    t1 += cov[a * dim + a];
    r1 += craw[a * dim + a];
    for (guint b = 0; b < dim; b++) {
      t2 += cov[a * dim + b] * cov[b * dim + a];
      r2 += craw[a * dim + b] * craw[b * dim + a];
    }
  }
  ck_assert_msg (t2 / (t1 * t1) < 0.99 * r2 / (r1 * r1), "spread %g, raw %g",
      t2 / (t1 * t1), r2 / (r1 * r1));
  /* codes: unit length, the direction of W (raw - mean), not centre-l2's */
  g_autofree float *cw = encode (w, px, n);
  g_autofree float *cc = encode (c, px, n);
  gboolean differ = FALSE;
  for (guint i = 0; i < n; i++) {
    double l = 0;
    for (guint j = 0; j < dim; j++) {
      l += (double) cw[i * dim + j] * cw[i * dim + j];
      differ |= fabsf (cw[i * dim + j] - cc[i * dim + j]) > 1e-3f;
    }
    ck_assert (fabs (sqrt (l) - 1) < 1e-5);
  }
  ck_assert (differ);
  /* set_code_whiten: same as fitted, same fingerprint */
  g_autoptr (CbirModel) w2 = whiten_model (NULL, 4, &err);
  cbir_model_set_code_mean (w2, cbir_model_get_code_mean (w));
  cbir_model_set_code_whiten (w2, cbir_model_get_code_whiten (w));
  ck_assert_str_eq (cbir_model_get_fingerprint (w2),
      cbir_model_get_fingerprint (w));

  /* save/load keeps W and the codes */
  g_autofree char *path = tmp_path ("whiten.safetensors");
  ck_assert (cbir_model_save (w, path, &err));
  g_autoptr (CbirModel) back = cbir_model_load (path, &err);
  ck_assert_msg (back != NULL, "%s", err ? err->message : "");
  ck_assert (memcmp (cbir_model_get_code_whiten (back),
          cbir_model_get_code_whiten (w), dim * dim * sizeof (float)) == 0);
  ck_assert_str_eq (cbir_model_get_fingerprint (back),
      cbir_model_get_fingerprint (w));
  g_autofree float *cb = encode (back, px, n);
  ck_assert (memcmp (cb, cw, n * dim * sizeof (float)) == 0);
  /* a file without W, or with a NaN in it, is refused naming the tensor */
  assert_refused_without (path, "code.whiten");
  float nanw[64];
  memcpy (nanw, cbir_model_get_code_whiten (w), sizeof nanw);
  nanw[9] = NAN;
  cbir_model_set_code_whiten (w2, nanw);
  g_autofree char *nanpath = tmp_path ("whiten-nan.safetensors");
  ck_assert (!cbir_model_save (w2, nanpath, &err));     /* not written... */
  assert_error_has (err, nanpath, "code.whiten");
  g_clear_error (&err);
  {                             /* ...and not loaded when written anyway */
    g_autoptr (CbirSafetensorsWriter) sw = cbir_safetensors_writer_new ();
    cbir_model_add_to_writer (w2, sw);
    ck_assert (cbir_safetensors_writer_write (sw, nanpath, &err));
  }
  ck_assert (cbir_model_load (nanpath, &err) == NULL);
  ck_assert_msg (strstr (err->message, "code.whiten") && strstr (err->message,
          "NaN"), "%s", err->message);
  g_clear_error (&err);

  /* too few images; the power's range; the power without whiten-l2 */
  ck_assert (!cbir_model_fit_code_transform (w2, px, 1, &err));
  assert_error_has (err, "too few", NULL);
  g_clear_error (&err);
  const char *bad_power[] = { "0", "-0.1", "1.5", "\"0.2\"" };
  for (guint i = 0; i < G_N_ELEMENTS (bad_power); i++) {
    ck_assert (whiten_model (bad_power[i], 4, &err) == NULL);
    assert_error_has (err, "code_whiten_power", NULL);
    g_clear_error (&err);
  }
  g_autofree char *cj = norm_arch ("float", "centre-l2");
  g_autofree char *cjp = g_strdup_printf ("{\"code_whiten_power\": 0.2, %s",
      cj + 1);
  ck_assert (cbir_model_new_from_json (cjp, "p", &err) == NULL);
  assert_error_has (err, "code_whiten_power", "whiten-l2");
  g_clear_error (&err);
  ck_assert (norm_model ("bits", "whiten-l2", 4, &err) == NULL);
  assert_error_has (err, "code_normalise", "bits");
  g_clear_error (&err);
}
END_TEST

/* The training block's "shift": parsed, range-checked, in the canonical
 * JSON only when set (old models keep their fingerprint). */
START_TEST (test_train_shift_setting)
{
  GError *err = NULL;
  g_autofree char *base = norm_arch (NULL, NULL);
  ck_assert (g_str_has_suffix (base, "]}"));
  /* (without a training block the noise defaults differ: compare blocks) */
  g_autofree char *stem = g_strndup (base, strlen (base) - 1);
  g_autofree char *jn = g_strdup_printf ("%s, \"training\": {\"noise\": "
      "\"gaussian\"}}", stem);
  g_autofree char *j0 = g_strdup_printf ("%s, \"training\": {\"noise\": "
      "\"gaussian\", \"shift\": 0}}", stem);
  g_autofree char *j3 = g_strdup_printf ("%s, \"training\": {\"shift\": 3}}",
      stem);
  g_autofree char *jbad = g_strdup_printf ("%s, \"training\": {\"shift\": "
      "-1}}", stem);
  g_autofree char *jbig = g_strdup_printf ("%s, \"training\": {\"shift\": "
      "65}}", stem);
  g_autofree char *jfrac = g_strdup_printf ("%s, \"training\": {\"shift\": "
      "1.5}}", stem);
  g_autoptr (CbirModel) a = cbir_model_new_from_json (jn, "a", &err);
  g_autoptr (CbirModel) b = cbir_model_new_from_json (j0, "b", &err);
  g_autoptr (CbirModel) c = cbir_model_new_from_json (j3, "c", &err);
  ck_assert_msg (a && b && c, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_model_get_train_settings (a)->shift, 0);
  ck_assert_uint_eq (cbir_model_get_train_settings (c)->shift, 3);
  ck_assert_str_eq (cbir_model_get_arch_json (a), cbir_model_get_arch_json (b));
  ck_assert_str_eq (cbir_model_get_fingerprint (a),
      cbir_model_get_fingerprint (b));
  ck_assert (strstr (cbir_model_get_arch_json (a), "shift") == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (c), "\"shift\":3") != NULL);
  ck_assert_str_ne (cbir_model_get_fingerprint (a),
      cbir_model_get_fingerprint (c));
  ck_assert (cbir_model_new_from_json (jbad, "bad", &err) == NULL);
  assert_error_has (err, "training", "shift");
  g_clear_error (&err);
  ck_assert (cbir_model_new_from_json (jbig, "big", &err) == NULL);
  assert_error_has (err, "training", "shift");
  g_clear_error (&err);
  ck_assert (cbir_model_new_from_json (jfrac, "frac", &err) == NULL);
  assert_error_has (err, "shift", NULL);
  g_clear_error (&err);
  /* set_train_settings checks it too, and the file metadata records it */
  CbirTrainSettings s = *cbir_model_get_train_settings (a);
  s.shift = 2;
  ck_assert (cbir_model_set_train_settings (a, &s, &err));
  ck_assert (strstr (cbir_model_get_arch_json (a), "\"shift\":2") != NULL);
  g_autofree char *path = tmp_path ("shift.safetensors");
  ck_assert (cbir_model_save (a, path, &err));
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  const char *noise = cbir_safetensors_get_metadata (st, "noise");
  ck_assert (noise && strstr (noise, "\"shift\":2"));
  g_autoptr (CbirModel) back = cbir_model_load (path, &err);
  ck_assert_msg (back != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_model_get_train_settings (back)->shift, 2);
  s.shift = 1000;
  ck_assert (!cbir_model_set_train_settings (a, &s, &err));
  assert_error_has (err, "shift", NULL);
  g_clear_error (&err);
  /* the default preset trains with shift 3, rotation 10, thickness 0.5
   * and a cosine schedule on square-root inputs and has centred, partly
   * whitened, L2-normalised codes */
  g_autoptr (CbirModel) d = make_model ("default", 1);
  const CbirTrainSettings *ds = cbir_model_get_train_settings (d);
  ck_assert_uint_eq (ds->shift, 3);
  ck_assert (ds->rotate == 10 && ds->lr_schedule == CBIR_LR_COSINE);
  ck_assert (ds->thickness == 0.5);
  ck_assert_int_eq (cbir_model_get_code_normalise (d),
      CBIR_CODE_NORMALISE_WHITEN_L2);
  ck_assert (cbir_model_get_code_whiten_power (d) == 0.15);
  ck_assert (cbir_model_get_input_gamma (d) == 0.5);
}
END_TEST

/* The training block's "rotate", "lr_schedule", "consistency" and
 * "thickness": parsed,
 * range-checked,
 * in the canonical JSON only when not the default (older models keep
 * their fingerprint), in the file's metadata, back on load. */
START_TEST (test_train_rotate_schedule_setting)
{
  GError *err = NULL;
  g_autofree char *base = norm_arch (NULL, NULL);
  g_autofree char *stem = g_strndup (base, strlen (base) - 1);
  g_autofree char *jn = g_strdup_printf ("%s, \"training\": {}}", stem);
  g_autofree char *j0 = g_strdup_printf ("%s, \"training\": {\"rotate\": 0, "
      "\"lr_schedule\": \"constant\", \"consistency\": 0}}", stem);
  g_autofree char *jr = g_strdup_printf ("%s, \"training\": {\"rotate\": "
      "12.5, \"lr_schedule\": \"cosine\", \"consistency\": 0.25, "
      "\"thickness\": 0.5}}", stem);
  g_autoptr (CbirModel) a = cbir_model_new_from_json (jn, "a", &err);
  g_autoptr (CbirModel) b = cbir_model_new_from_json (j0, "b", &err);
  g_autoptr (CbirModel) c = cbir_model_new_from_json (jr, "c", &err);
  ck_assert_msg (a && b && c, "%s", err ? err->message : "");
  const CbirTrainSettings *sa = cbir_model_get_train_settings (a);
  const CbirTrainSettings *sc = cbir_model_get_train_settings (c);
  ck_assert (sa->rotate == 0 && sa->lr_schedule == CBIR_LR_CONSTANT);
  ck_assert (sc->rotate == 12.5 && sc->lr_schedule == CBIR_LR_COSINE);
  ck_assert (sa->consistency == 0 && sc->consistency == 0.25);
  ck_assert (sa->thickness == 0 && sc->thickness == 0.5);
  ck_assert (strstr (cbir_model_get_arch_json (a), "thickness") == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (c), "\"thickness\":0.5"));
  ck_assert (strstr (cbir_model_get_arch_json (a), "consistency") == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (c), "\"consistency\":0.25"));
  ck_assert_str_eq (cbir_model_get_fingerprint (a),
      cbir_model_get_fingerprint (b));
  ck_assert (strstr (cbir_model_get_arch_json (a), "rotate") == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (a), "lr_schedule") == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (c), "\"rotate\":12.5"));
  ck_assert (strstr (cbir_model_get_arch_json (c),
          "\"lr_schedule\":\"cosine\""));
  ck_assert_str_ne (cbir_model_get_fingerprint (a),
      cbir_model_get_fingerprint (c));
  const char *bad[][2] = {
    {"\"rotate\": -1", "rotate"}, {"\"rotate\": 181", "rotate"},
    {"\"rotate\": \"10\"", "rotate"},
    {"\"lr_schedule\": \"step\"", "lr_schedule"},
    {"\"lr_schedule\": 1", "lr_schedule"},
    {"\"consistency\": -0.5", "consistency"},
    {"\"consistency\": 1000", "consistency"},
    {"\"thickness\": -0.1", "thickness"}, {"\"thickness\": 1.5", "thickness"},
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autofree char *j = g_strdup_printf ("%s, \"training\": {%s}}", stem,
        bad[i][0]);
    ck_assert_msg (cbir_model_new_from_json (j, "bad", &err) == NULL, "%s",
        bad[i][0]);
    assert_error_has (err, "training", bad[i][1]);
    g_clear_error (&err);
  }
  /* the file: metadata and load */
  g_autofree char *path = tmp_path ("rotate.safetensors");
  ck_assert (cbir_model_save (c, path, &err));
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  const char *noise = cbir_safetensors_get_metadata (st, "noise");
  ck_assert (noise && strstr (noise, "\"rotate\":12.5"));
  g_autoptr (CbirModel) back = cbir_model_load (path, &err);
  ck_assert_msg (back != NULL, "%s", err ? err->message : "");
  ck_assert (cbir_model_get_train_settings (back)->rotate == 12.5);
  ck_assert (cbir_model_get_train_settings (back)->lr_schedule ==
      CBIR_LR_COSINE);
  ck_assert_str_eq (cbir_model_get_fingerprint (back),
      cbir_model_get_fingerprint (c));
  /* set_train_settings checks both */
  CbirTrainSettings s = *sa;
  s.rotate = 200;
  ck_assert (!cbir_model_set_train_settings (a, &s, &err));
  assert_error_has (err, "rotate", NULL);
  g_clear_error (&err);
  s.rotate = NAN;
  ck_assert (!cbir_model_set_train_settings (a, &s, &err));
  assert_error_has (err, "rotate", NULL);
  g_clear_error (&err);
  s.rotate = 0;
  s.lr_schedule = (CbirLrSchedule) 7;
  ck_assert (!cbir_model_set_train_settings (a, &s, &err));
  assert_error_has (err, "lr_schedule", NULL);
  g_clear_error (&err);
  /* names */
  CbirLrSchedule l;
  ck_assert (cbir_lr_schedule_from_string ("cosine", &l) && l ==
      CBIR_LR_COSINE);
  ck_assert (cbir_lr_schedule_from_string ("constant", &l) && l ==
      CBIR_LR_CONSTANT);
  ck_assert (!cbir_lr_schedule_from_string ("Cosine", &l));
  ck_assert_str_eq (cbir_lr_schedule_to_string (CBIR_LR_COSINE), "cosine");
}
END_TEST

/* The exported preset files (models/presets, for users to copy) equal
 * the built-in presets. */
START_TEST (test_preset_files)
{
  const char *root = g_getenv ("CBIR_SOURCE_ROOT");
  if (!root)
    root = CBIR_SOURCE_DIR;
  for (const char *const *p = cbir_model_list_presets (); *p; p++) {
    g_autofree char *name = g_strdup_printf ("%s.json", *p);
    g_autofree char *path = g_build_filename (root, "models", "presets",
        name, NULL);
    GError *err = NULL;
    g_autoptr (CbirModel) f = cbir_model_new_from_arch_file (path, &err);
    ck_assert_msg (f != NULL, "%s", err ? err->message : "");
    g_autoptr (CbirModel) b = cbir_model_new_preset (*p, &err);
    ck_assert (b != NULL);
    ck_assert_str_eq (cbir_model_get_arch_json (f),
        cbir_model_get_arch_json (b));
  }
}
END_TEST

static Suite *
model_suite (void)
{
  Suite *s = suite_create ("model");
  TCase *tc = tcase_create ("model");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_presets);
  tcase_add_test (tc, test_bad_json);
  tcase_add_test (tc, test_roundtrip);
  tcase_add_test (tc, test_fingerprint);
  tcase_add_test (tc, test_corrupt);
  tcase_add_test (tc, test_memory_budget);
  tcase_add_test (tc, test_save_non_finite);
  tcase_add_test (tc, test_foreign_file);
  tcase_add_test (tc, test_pack_bits);
  tcase_add_test (tc, test_concurrent_encode);
  tcase_add_test (tc, test_preset_files);
  tcase_add_test (tc, test_code_normalise);
  tcase_add_test (tc, test_train_shift_setting);
  tcase_add_test (tc, test_train_rotate_schedule_setting);
  tcase_add_test (tc, test_input_gamma);
  tcase_add_test (tc, test_input_deskew);
  tcase_add_test (tc, test_code_centre);
  tcase_add_test (tc, test_code_whiten);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (model_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

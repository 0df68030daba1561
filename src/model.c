/* The autoencoder model: architecture JSON (parse, validate, canonical
 * form), built-in presets, safetensors model files, fingerprint and
 * thread-safe encoding. */
#include "cbir/model.h"
#include "cbir/baselines.h"
#include "cbir/preprocess.h"
#include "cbir/safetensors.h"

#include "json-util.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define MODEL_FORMAT "gst-cbir-model"
#define MODEL_VERSION "1"
/* Images per forward pass when encoding; also the pooled states' size. */
#define ENCODE_CHUNK 64
/* centre-l2 and whiten-l2 models: the mean raw code subtracted before
 * normalising; whiten-l2: the whitening applied after */
#define CODE_MEAN_TENSOR "code.mean"
#define CODE_WHITEN_TENSOR "code.whiten"
#define DEFAULT_WHITEN_POWER 0.15
/* Largest translation jitter (pixels) a training block may ask for. */
#define CBIR_MAX_SHIFT 64

/* ------------------------------------------------------------------ */
/* Presets. Kept as data: each is exactly what a user could write in an
 * architecture file. Layer indices of the code layer are noted. */

static const char preset_sicara[] =
    "{\"name\": \"sicara\",\n"
    " \"description\": \"Sicara/Baaj 2017 (Keras): 4x4x8 = 128-d code\",\n"
    " \"input\": [1, 28, 28], \"code_layer\": 8, \"code_type\": \"float\",\n"
    " \"layers\": [\n"
    "  {\"type\": \"conv2d\", \"filters\": 16, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\", \"padding\": \"same\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\", \"padding\": \"same\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 16, \"kernel\": 3, \"padding\": \"valid\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 1, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"sigmoid\"}],\n"
    " \"training\": {\"loss\": \"bce\", \"optimizer\": \"adadelta\", \"lr\": 1.0,\n"
    "   \"rho\": 0.95, \"eps\": 1e-7, \"noise\": \"gaussian\", \"noise_level\": 0.5,\n"
    "   \"batch_size\": 128, \"epochs\": 20}}\n";

static const char preset_keras_dae[] =
    "{\"name\": \"keras-dae\",\n"
    " \"description\": \"Keras blog denoising autoencoder (Hubens 2018): 7x7x32 = 1568-d code\",\n"
    " \"input\": [1, 28, 28], \"code_layer\": 5, \"code_type\": \"float\",\n"
    " \"layers\": [\n"
    "  {\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 1, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"sigmoid\"}],\n"
    " \"training\": {\"loss\": \"bce\", \"optimizer\": \"adam\", \"lr\": 0.001,\n"
    "   \"noise\": \"gaussian\", \"noise_level\": 0.5, \"batch_size\": 128,\n"
    "   \"epochs\": 20}}\n";

static const char preset_pyimagesearch[] =
    "{\"name\": \"pyimagesearch\",\n"
    " \"description\": \"pyimagesearch AutoEncoder-CBIR 2020: dense 16-d code\",\n"
    " \"input\": [1, 28, 28], \"code_layer\": 7, \"code_type\": \"float\",\n"
    " \"layers\": [\n"
    "  {\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 3, \"stride\": 2, \"padding\": \"same\"},\n"
    "  {\"type\": \"leaky_relu\", \"alpha\": 0.2},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 0.001, \"momentum\": 0.01},\n"
    "  {\"type\": \"conv2d\", \"filters\": 64, \"kernel\": 3, \"stride\": 2, \"padding\": \"same\"},\n"
    "  {\"type\": \"leaky_relu\", \"alpha\": 0.2},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 0.001, \"momentum\": 0.01},\n"
    "  {\"type\": \"flatten\"},\n"
    "  {\"type\": \"dense\", \"units\": 16},\n"
    "  {\"type\": \"dense\", \"units\": 3136},\n"
    "  {\"type\": \"reshape\", \"shape\": [64, 7, 7]},\n"
    "  {\"type\": \"conv_transpose2d\", \"filters\": 64, \"kernel\": 3, \"stride\": 2, \"padding\": \"same\"},\n"
    "  {\"type\": \"leaky_relu\", \"alpha\": 0.2},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 0.001, \"momentum\": 0.01},\n"
    "  {\"type\": \"conv_transpose2d\", \"filters\": 32, \"kernel\": 3, \"stride\": 2, \"padding\": \"same\"},\n"
    "  {\"type\": \"leaky_relu\", \"alpha\": 0.2},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 0.001, \"momentum\": 0.01},\n"
    "  {\"type\": \"conv2d\", \"filters\": 1, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"sigmoid\"}],\n"
    " \"training\": {\"loss\": \"mse\", \"optimizer\": \"adam\", \"lr\": 0.001,\n"
    "   \"noise\": \"none\", \"noise_level\": 0, \"batch_size\": 32,\n"
    "   \"epochs\": 20}}\n";

static const char preset_binary_xor[] =
    "{\"name\": \"binary-xor\",\n"
    " \"description\": \"anandkr123 2023: 7x7x8 = 392 bits (value > 0), Hamming\",\n"
    " \"input\": [1, 28, 28], \"code_layer\": 3, \"code_type\": \"bits\",\n"
    " \"layers\": [\n"
    "  {\"type\": \"conv2d\", \"filters\": 16, \"kernel\": 3, \"stride\": 2, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3, \"stride\": 2, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"conv_transpose2d\", \"filters\": 8, \"kernel\": 3, \"stride\": 2, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"conv_transpose2d\", \"filters\": 16, \"kernel\": 3, \"stride\": 2, \"padding\": \"same\"},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 1, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"sigmoid\"}],\n"
    " \"training\": {\"loss\": \"mse\", \"optimizer\": \"adam\", \"lr\": 0.001,\n"
    "   \"noise\": \"gaussian\", \"noise_level\": 0.2, \"batch_size\": 128,\n"
    "   \"epochs\": 10}}\n";

/* Project default, found by measurement (README "How the default was
 * found", tests/bench/research/): inputs square-root compressed (gamma 0.5:
 * dark and bright garments of one shape move closer), two 3x3 convs per
 * stage (32, 64 filters, BatchNorm before ReLU, PyTorch eps/momentum), a
 * 32-float dense code, centred on the training images' mean code, partly
 * PCA-whitened (variance^-0.15) and L2-normalised (L2 search ranks like
 * cosine around the data's centre); trained as a denoising autoencoder with
 * Gaussian noise 0.3, random shifts of up to 3 px, rotations of up to 10
 * degrees and strokes up to half-way to one pixel thicker or thinner
 * (target: the clean, centred, upright image), Adam eps 1e-8 with a cosine
 * learning-rate schedule.
 * The decoder mirrors research/dae.py's. Keep this and
 * models/presets/default.json the one place the default is defined
 * (test-model checks they agree). */
static const char preset_default[] =
    "{\"name\": \"default\",\n"
    " \"description\": \"sqrt input; Conv32-Conv32-MP-Conv64-Conv64-MP (BN, ReLU)-Dense32 (centred, partly whitened, L2-normalised 32-d code); denoising + shift 3 + rotate 10 + thickness 0.5, cosine lr\",\n"
    " \"input\": [1, 28, 28], \"code_layer\": 15, \"code_type\": \"float\",\n"
    " \"normalisation\": {\"scale\": 0.00392156862745098, \"offset\": 0, \"gamma\": 0.5},\n"
    " \"code_normalise\": \"whiten-l2\", \"code_whiten_power\": 0.15,\n"
    " \"layers\": [\n"
    "  {\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 1e-5, \"momentum\": 0.1},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 1e-5, \"momentum\": 0.1},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 64, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 1e-5, \"momentum\": 0.1},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 64, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 1e-5, \"momentum\": 0.1},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\"},\n"
    "  {\"type\": \"flatten\"},\n"
    "  {\"type\": \"dense\", \"units\": 32},\n"
    "  {\"type\": \"dense\", \"units\": 1568},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"reshape\", \"shape\": [32, 7, 7]},\n"
    "  {\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 1e-5, \"momentum\": 0.1},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 16, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"batchnorm\", \"eps\": 1e-5, \"momentum\": 0.1},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 1, \"kernel\": 3, \"padding\": \"same\"},\n"
    "  {\"type\": \"sigmoid\"}],\n"
    " \"training\": {\"loss\": \"bce\", \"optimizer\": \"adam\", \"lr\": 0.001,\n"
    "   \"eps\": 1e-8, \"noise\": \"gaussian\", \"noise_level\": 0.3, \"shift\": 3,\n"
    "   \"rotate\": 10, \"thickness\": 0.5, \"lr_schedule\": \"cosine\", \"batch_size\": 128,\n"
    "   \"epochs\": 16}}\n";

static const struct {
  const char *name;
  const char *json;
} presets[] = {
  {"default", preset_default},
  {"sicara", preset_sicara},
  {"keras-dae", preset_keras_dae},
  {"pyimagesearch", preset_pyimagesearch},
  {"binary-xor", preset_binary_xor},
};

static const char *const preset_names[] = {
  "default", "sicara", "keras-dae", "pyimagesearch", "binary-xor", NULL
};

const char *const *
cbir_model_list_presets (void)
{
  return preset_names;
}

const char *
cbir_model_get_preset_json (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    if (g_strcmp0 (presets[i].name, name) == 0)
      return presets[i].json;
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Enums */

const char *
cbir_loss_to_string (CbirLoss l)
{
  switch (l) {
    case CBIR_LOSS_BCE:
      return "bce";
    case CBIR_LOSS_MSE:
      return "mse";
  }
  return "unknown";
}

gboolean
cbir_loss_from_string (const char *s, CbirLoss *out)
{
  if (g_strcmp0 (s, "bce") == 0)
    *out = CBIR_LOSS_BCE;
  else if (g_strcmp0 (s, "mse") == 0)
    *out = CBIR_LOSS_MSE;
  else
    return FALSE;
  return TRUE;
}

const char *
cbir_optimizer_to_string (CbirOptimizerKind o)
{
  switch (o) {
    case CBIR_OPTIMIZER_ADAM:
      return "adam";
    case CBIR_OPTIMIZER_ADADELTA:
      return "adadelta";
    case CBIR_OPTIMIZER_SGD:
      return "sgd";
  }
  return "unknown";
}

gboolean
cbir_optimizer_from_string (const char *s, CbirOptimizerKind *out)
{
  if (g_strcmp0 (s, "adam") == 0)
    *out = CBIR_OPTIMIZER_ADAM;
  else if (g_strcmp0 (s, "adadelta") == 0)
    *out = CBIR_OPTIMIZER_ADADELTA;
  else if (g_strcmp0 (s, "sgd") == 0)
    *out = CBIR_OPTIMIZER_SGD;
  else
    return FALSE;
  return TRUE;
}

const char *
cbir_lr_schedule_to_string (CbirLrSchedule l)
{
  switch (l) {
    case CBIR_LR_CONSTANT:
      return "constant";
    case CBIR_LR_COSINE:
      return "cosine";
  }
  return "unknown";
}

gboolean
cbir_lr_schedule_from_string (const char *s, CbirLrSchedule *out)
{
  if (g_strcmp0 (s, "constant") == 0)
    *out = CBIR_LR_CONSTANT;
  else if (g_strcmp0 (s, "cosine") == 0)
    *out = CBIR_LR_COSINE;
  else
    return FALSE;
  return TRUE;
}

void
cbir_train_settings_set_optimizer_defaults (CbirTrainSettings *s,
    CbirOptimizerKind o)
{
  s->optimizer = o;
  s->beta1 = 0.9;
  s->beta2 = 0.999;
  s->eps = 1e-7;
  s->rho = 0.95;
  s->momentum = 0.9;
  switch (o) {
    case CBIR_OPTIMIZER_ADAM:
      s->lr = 0.001;
      break;
    case CBIR_OPTIMIZER_ADADELTA:
      s->lr = 1.0;
      break;
    case CBIR_OPTIMIZER_SGD:
      s->lr = 0.01;
      break;
  }
}

static void
settings_init_default (CbirTrainSettings *s)
{
  memset (s, 0, sizeof (*s));
  s->loss = CBIR_LOSS_BCE;
  cbir_train_settings_set_optimizer_defaults (s, CBIR_OPTIMIZER_ADAM);
  s->noise = CBIR_NOISE_GAUSSIAN;
  s->noise_level = 0.5;
  s->batch_size = 128;
  s->epochs = 20;
}

static const char *
settings_check (const CbirTrainSettings *s)
{
  const char *what = NULL;
  if (!(s->lr > 0 && isfinite (s->lr)))
    what = "lr must be > 0";
  else if (!(s->rho > 0 && s->rho < 1))
    what = "rho must be in (0, 1)";
  else if (!(s->momentum >= 0 && s->momentum < 1))
    what = "momentum must be in [0, 1)";
  else if (!(s->beta1 >= 0 && s->beta1 < 1) || !(s->beta2 >= 0 && s->beta2 < 1))
    what = "beta1 and beta2 must be in [0, 1)";
  else if (!(s->eps > 0 && s->eps < 1))
    what = "eps must be in (0, 1)";
  else if (!(s->noise_level >= 0 && s->noise_level <= 1))
    what = "noise_level must be in [0, 1]";
  else if (s->batch_size < 1 || s->batch_size > 65536)
    what = "batch_size must be in 1..65536";
  else if (s->epochs > 1000000)
    what = "epochs must be at most 1000000";
  else if (s->shift > CBIR_MAX_SHIFT)
    what = "shift must be in 0.." G_STRINGIFY (CBIR_MAX_SHIFT);
  else if (!(s->rotate >= 0 && s->rotate <= 180))
    what = "rotate must be in [0, 180] degrees";
  else if (!(s->consistency >= 0 && s->consistency <= 100))
    what = "consistency must be in [0, 100]";
  else if (!(s->thickness >= 0 && s->thickness <= 1))
    what = "thickness must be in [0, 1]";
  else if (s->lr_schedule != CBIR_LR_CONSTANT
      && s->lr_schedule != CBIR_LR_COSINE)
    what = "lr_schedule must be constant or cosine";
  return what;
}

static gboolean
settings_validate (const CbirTrainSettings *s, const char *origin,
    GError **error)
{
  const char *what = settings_check (s);
  if (what) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: training settings: %s", origin, what);
    return FALSE;
  }
  return TRUE;
}

const char *
cbir_code_normalise_to_string (CbirCodeNormalise n)
{
  switch (n) {
    case CBIR_CODE_NORMALISE_NONE:
      return "none";
    case CBIR_CODE_NORMALISE_L2:
      return "l2";
    case CBIR_CODE_NORMALISE_CENTRE_L2:
      return "centre-l2";
    case CBIR_CODE_NORMALISE_WHITEN_L2:
      return "whiten-l2";
  }
  return "unknown";
}

gboolean
cbir_code_normalise_from_string (const char *s, CbirCodeNormalise *out)
{
  if (g_strcmp0 (s, "none") == 0)
    *out = CBIR_CODE_NORMALISE_NONE;
  else if (g_strcmp0 (s, "l2") == 0)
    *out = CBIR_CODE_NORMALISE_L2;
  else if (g_strcmp0 (s, "centre-l2") == 0)
    *out = CBIR_CODE_NORMALISE_CENTRE_L2;
  else if (g_strcmp0 (s, "whiten-l2") == 0)
    *out = CBIR_CODE_NORMALISE_WHITEN_L2;
  else
    return FALSE;
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Model */

/* Feeds n floats to a checksum as little-endian bytes (the file order). */
static void
checksum_f32_le (GChecksum *ck, const float *v, gsize n)
{
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  g_checksum_update (ck, (const guchar *) v, n * sizeof (float));
#else
  for (gsize i = 0; i < n; i++) {
    guint32 u;
    memcpy (&u, &v[i], 4);
    u = GUINT32_TO_LE (u);
    g_checksum_update (ck, (const guchar *) &u, 4);
  }
#endif
}

/* Copies n little-endian floats (as stored in a file) to dst. */
static void
copy_f32_le (float *dst, const void *src, gsize n)
{
  memcpy (dst, src, n * sizeof (float));
#if G_BYTE_ORDER == G_BIG_ENDIAN
  for (gsize k = 0; k < n; k++) {
    guint32 u;
    memcpy (&u, dst + k, 4);
    u = GUINT32_FROM_LE (u);
    memcpy (dst + k, &u, 4);
  }
#endif
}

typedef struct {
  CbirNetState *st;
  float *in;                    /* ENCODE_CHUNK * input size floats */
  float *row;                   /* whiten-l2: code_dim floats, else NULL */
  guint8 *px;                   /* deskew: one deskewed image, else NULL */
} PoolEntry;

struct _CbirModel {
  char *name;
  char *description;
  char *arch_json;              /* canonical */
  CbirNet *net;
  CbirShape input;
  guint n_layers;
  CbirLayerSpec *specs;
  double *spec_alpha, *spec_eps, *spec_momentum;  /* as written (doubles) */
  gboolean *spec_pool_same;
  guint code_layer;
  CbirCodeType code_type;
  CbirCodeNormalise code_norm;
  guint code_dim;
  float *code_mean;             /* centre-l2, whiten-l2: code_dim floats,
                                 * else NULL */
  float *code_whiten;           /* whiten-l2: code_dim^2 floats, else NULL */
  double whiten_power;          /* whiten-l2: p of variance^-p */
  double scale, offset, gamma;
  gboolean deskew;              /* shear each input upright first */
  float in_lut[256];            /* pixel value -> network input */
  CbirTrainSettings settings;
  char *training_info;
  char fingerprint[65];

  GMutex pool_lock;
  GPtrArray *pool;              /* free PoolEntry* */
  /* Serialises batched forwards: they use the net's worker pool, which
   * runs one job at a time. Batch-1 forwards run inline, lock-free. */
  GMutex batch_lock;
};

static void
pool_entry_free (gpointer p)
{
  PoolEntry *e = p;
  cbir_net_state_free (e->st);
  g_free (e->in);
  g_free (e->row);
  g_free (e->px);
  g_free (e);
}

void
cbir_model_free (CbirModel *m)
{
  if (!m)
    return;
  g_ptr_array_unref (m->pool);
  g_mutex_clear (&m->pool_lock);
  g_mutex_clear (&m->batch_lock);
  cbir_net_free (m->net);
  g_free (m->name);
  g_free (m->description);
  g_free (m->arch_json);
  g_free (m->specs);
  g_free (m->spec_alpha);
  g_free (m->spec_eps);
  g_free (m->spec_momentum);
  g_free (m->spec_pool_same);
  g_free (m->training_info);
  g_free (m->code_mean);
  g_free (m->code_whiten);
  g_free (m);
}

/* ,"key":v for an optional setting, written only when it is set (> 0),
 * so that models from before it existed keep their canonical JSON and
 * fingerprint. */
static void
append_if_positive (GString *s, const char *key, double v)
{
  if (!(v > 0))
    return;
  g_string_append (s, ",\"");
  g_string_append (s, key);
  g_string_append (s, "\":");
  cbir_json_append_double (s, v);
}

char *
cbir_train_settings_to_json (const CbirTrainSettings *t)
{
  GString *s = g_string_new ("{\"loss\":");
  cbir_json_append_string (s, cbir_loss_to_string (t->loss));
  g_string_append (s, ",\"optimizer\":");
  cbir_json_append_string (s, cbir_optimizer_to_string (t->optimizer));
  g_string_append (s, ",\"lr\":");
  cbir_json_append_double (s, t->lr);
  /* written only when not constant: older models keep their fingerprint */
  if (t->lr_schedule != CBIR_LR_CONSTANT) {
    g_string_append (s, ",\"lr_schedule\":");
    cbir_json_append_string (s, cbir_lr_schedule_to_string (t->lr_schedule));
  }
  switch (t->optimizer) {
    case CBIR_OPTIMIZER_ADAM:
      g_string_append (s, ",\"beta1\":");
      cbir_json_append_double (s, t->beta1);
      g_string_append (s, ",\"beta2\":");
      cbir_json_append_double (s, t->beta2);
      g_string_append (s, ",\"eps\":");
      cbir_json_append_double (s, t->eps);
      break;
    case CBIR_OPTIMIZER_ADADELTA:
      g_string_append (s, ",\"rho\":");
      cbir_json_append_double (s, t->rho);
      g_string_append (s, ",\"eps\":");
      cbir_json_append_double (s, t->eps);
      break;
    case CBIR_OPTIMIZER_SGD:
      g_string_append (s, ",\"momentum\":");
      cbir_json_append_double (s, t->momentum);
      break;
  }
  g_string_append (s, ",\"noise\":");
  cbir_json_append_string (s, cbir_noise_kind_to_string (t->noise));
  g_string_append (s, ",\"noise_level\":");
  cbir_json_append_double (s, t->noise_level);
  /* written only when set, so that models from before "shift" existed keep
   * their canonical JSON and fingerprint */
  if (t->shift)
    g_string_append_printf (s, ",\"shift\":%u", t->shift);
  append_if_positive (s, "rotate", t->rotate);
  append_if_positive (s, "consistency", t->consistency);
  append_if_positive (s, "thickness", t->thickness);
  g_string_append_printf (s, ",\"batch_size\":%u,\"epochs\":%u}",
      t->batch_size, t->epochs);
  return g_string_free (s, FALSE);
}

/* The "normalisation" object, in the canonical JSON and the file's
 * metadata alike. gamma and deskew only when set: older models keep their
 * canonical JSON (fingerprint). */
static void
append_normalisation (GString *s, const CbirModel *m)
{
  g_string_append (s, "{\"scale\":");
  cbir_json_append_double (s, m->scale);
  g_string_append (s, ",\"offset\":");
  cbir_json_append_double (s, m->offset);
  if (m->gamma != 1.0) {
    g_string_append (s, ",\"gamma\":");
    cbir_json_append_double (s, m->gamma);
  }
  if (m->deskew)
    g_string_append (s, ",\"deskew\":true");
  g_string_append_c (s, '}');
}

static void
model_make_canonical (CbirModel *m)
{
  GString *s = g_string_new ("{\"name\":");
  cbir_json_append_string (s, m->name);
  if (m->description) {
    g_string_append (s, ",\"description\":");
    cbir_json_append_string (s, m->description);
  }
  g_string_append_printf (s, ",\"input\":[%d,%d,%d]", m->input.c, m->input.h,
      m->input.w);
  g_string_append (s, ",\"normalisation\":");
  append_normalisation (s, m);
  g_string_append_printf (s, ",\"code_layer\":%u,\"code_type\":",
      m->code_layer);
  cbir_json_append_string (s, cbir_code_type_to_string (m->code_type));
  /* only when set: older models keep their canonical JSON (fingerprint) */
  if (m->code_norm != CBIR_CODE_NORMALISE_NONE) {
    g_string_append (s, ",\"code_normalise\":");
    cbir_json_append_string (s, cbir_code_normalise_to_string (m->code_norm));
  }
  if (m->code_norm == CBIR_CODE_NORMALISE_WHITEN_L2) {
    g_string_append (s, ",\"code_whiten_power\":");
    cbir_json_append_double (s, m->whiten_power);
  }
  g_string_append (s, ",\"layers\":[");
  for (guint i = 0; i < m->n_layers; i++) {
    const CbirLayerSpec *l = &m->specs[i];
    if (i)
      g_string_append_c (s, ',');
    g_string_append (s, "{\"type\":");
    cbir_json_append_string (s, cbir_layer_kind_to_string (l->kind));
    switch (l->kind) {
      case CBIR_LAYER_CONV2D:
      case CBIR_LAYER_CONV_TRANSPOSE2D:
        g_string_append_printf (s, ",\"filters\":%d,\"kernel\":%d,"
            "\"stride\":%d,\"padding\":\"%s\",\"bias\":%s", l->filters,
            l->kernel, l->stride, l->same ? "same" : "valid",
            l->bias ? "true" : "false");
        break;
      case CBIR_LAYER_DENSE:
        g_string_append_printf (s, ",\"units\":%d,\"bias\":%s", l->filters,
            l->bias ? "true" : "false");
        break;
      case CBIR_LAYER_LEAKY_RELU:
        g_string_append (s, ",\"alpha\":");
        cbir_json_append_double (s, m->spec_alpha[i]);
        break;
      case CBIR_LAYER_BATCHNORM:
        g_string_append (s, ",\"eps\":");
        cbir_json_append_double (s, m->spec_eps[i]);
        g_string_append (s, ",\"momentum\":");
        cbir_json_append_double (s, m->spec_momentum[i]);
        break;
      case CBIR_LAYER_MAXPOOL2:
        if (m->spec_pool_same[i])
          g_string_append (s, ",\"padding\":\"same\"");
        break;
      case CBIR_LAYER_RESHAPE:
        g_string_append_printf (s, ",\"shape\":[%d,%d,%d]", l->shape[0],
            l->shape[1], l->shape[2]);
        break;
      default:
        break;
    }
    g_string_append_c (s, '}');
  }
  g_autofree char *tr = cbir_train_settings_to_json (&m->settings);
  g_string_append_printf (s, "],\"training\":%s}", tr);
  g_free (m->arch_json);
  m->arch_json = g_string_free (s, FALSE);
}

static void
compute_fingerprint (CbirModel *m, char out[65])
{
  g_autoptr (GChecksum) ck = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (ck, (const guchar *) m->arch_json,
      strlen (m->arch_json));
  checksum_f32_le (ck, cbir_net_params (m->net), cbir_net_n_params (m->net));
  if (m->code_mean)
    checksum_f32_le (ck, m->code_mean, m->code_dim);
  if (m->code_whiten)
    checksum_f32_le (ck, m->code_whiten, (gsize) m->code_dim * m->code_dim);
  g_strlcpy (out, g_checksum_get_string (ck), 65);
}

void
cbir_model_update_fingerprint (CbirModel *m)
{
  compute_fingerprint (m, m->fingerprint);
}

/* ---- JSON parsing helpers ---- */

typedef struct {
  const char *origin;
  char *where;                  /* "layer 3 (conv2d)" or "training" ... */
} Ctx;

static gboolean G_GNUC_PRINTF (3, 4)
ctx_error (Ctx *c, GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (c->where)
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "%s: %s: %s",
        c->origin, c->where, msg);
  else
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "%s: %s", c->origin,
        msg);
  return FALSE;
}

static gboolean
get_int (Ctx *c, JsonObject *o, const char *key, gboolean required,
    gint64 def, gint64 lo, gint64 hi, gint64 *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n) {
    if (required)
      return ctx_error (c, error, "missing \"%s\"", key);
    *out = def;
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return ctx_error (c, error, "\"%s\" must be an integer", key);
  gint64 v = json_node_get_int (n);
  if (v < lo || v > hi)
    return ctx_error (c, error, "\"%s\" = %" G_GINT64_FORMAT
        " out of range [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", key, v,
        lo, hi);
  *out = v;
  return TRUE;
}

static gboolean
get_double (Ctx *c, JsonObject *o, const char *key, double def, double *out,
    GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n) {
    *out = def;
    return TRUE;
  }
  GType t = JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : 0;
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else
    return ctx_error (c, error, "\"%s\" must be a number", key);
  if (!isfinite (*out))
    return ctx_error (c, error, "\"%s\" must be finite", key);
  return TRUE;
}

static gboolean
get_string (Ctx *c, JsonObject *o, const char *key, const char *def,
    const char **out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n) {
    *out = def;
    if (!def)
      return ctx_error (c, error, "missing \"%s\"", key);
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return ctx_error (c, error, "\"%s\" must be a string", key);
  *out = json_node_get_string (n);
  return TRUE;
}

static gboolean
get_bool (Ctx *c, JsonObject *o, const char *key, gboolean def,
    gboolean *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n) {
    *out = def;
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return ctx_error (c, error, "\"%s\" must be true or false", key);
  *out = json_node_get_boolean (n);
  return TRUE;
}

static gboolean
get_int3 (Ctx *c, JsonObject *o, const char *key, int out[3], GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n)
    return ctx_error (c, error, "missing \"%s\"", key);
  if (!JSON_NODE_HOLDS_ARRAY (n)
      || json_array_get_length (json_node_get_array (n)) != 3)
    return ctx_error (c, error, "\"%s\" must be an array [C, H, W]", key);
  JsonArray *a = json_node_get_array (n);
  for (guint i = 0; i < 3; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64
        || json_node_get_int (e) < 1 || json_node_get_int (e) > 65536)
      return ctx_error (c, error, "\"%s\" must hold 3 integers in 1..65536",
          key);
    out[i] = (int) json_node_get_int (e);
  }
  return TRUE;
}

/* Rejects members not in `allowed` (catches typos such as "filter"). */
static gboolean
check_keys (Ctx *c, JsonObject *o, const char *const *allowed, GError **error)
{
  g_autoptr (GList) members = json_object_get_members (o);
  for (GList *l = members; l; l = l->next) {
    const char *k = l->data;
    gboolean ok = FALSE;
    for (guint i = 0; allowed[i]; i++)
      if (strcmp (allowed[i], k) == 0)
        ok = TRUE;
    if (!ok)
      return ctx_error (c, error, "unknown member \"%s\"", k);
  }
  return TRUE;
}

static gboolean
parse_padding (Ctx *c, JsonObject *o, gboolean *same, GError **error)
{
  const char *pad;
  if (!get_string (c, o, "padding", "same", &pad, error))
    return FALSE;
  if (strcmp (pad, "same") == 0)
    *same = TRUE;
  else if (strcmp (pad, "valid") == 0)
    *same = FALSE;
  else
    return ctx_error (c, error, "\"padding\" must be \"same\" or \"valid\", "
        "not \"%s\"", pad);
  return TRUE;
}

static gboolean
parse_layer (Ctx *c, CbirModel *m, guint i, JsonNode *node, GError **error)
{
  CbirLayerSpec *l = &m->specs[i];
  memset (l, 0, sizeof (*l));
  l->bias = TRUE;
  l->stride = 1;
  l->kernel = 3;
  l->same = TRUE;
  g_free (c->where);
  c->where = g_strdup_printf ("layer %u", i);
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return ctx_error (c, error, "not a JSON object");
  JsonObject *o = json_node_get_object (node);
  const char *type;
  if (!get_string (c, o, "type", NULL, &type, error))
    return FALSE;
  g_free (c->where);
  c->where = g_strdup_printf ("layer %u (%s)", i, type);
  gint64 v;

  if (strcmp (type, "conv2d") == 0 || strcmp (type, "conv_transpose2d") == 0) {
    static const char *const keys[] = { "type", "filters", "kernel", "stride",
      "padding", "bias", NULL
    };
    l->kind = type[4] == '2' ? CBIR_LAYER_CONV2D : CBIR_LAYER_CONV_TRANSPOSE2D;
    if (!check_keys (c, o, keys, error)
        || !get_int (c, o, "filters", TRUE, 0, 1, 65536, &v, error))
      return FALSE;
    l->filters = (int) v;
    if (!get_int (c, o, "kernel", FALSE, 3, 2, 3, &v, error))
      return FALSE;
    l->kernel = (int) v;
    if (!get_int (c, o, "stride", FALSE, 1, 1, 2, &v, error))
      return FALSE;
    l->stride = (int) v;
    if (!parse_padding (c, o, &l->same, error)
        || !get_bool (c, o, "bias", TRUE, &l->bias, error))
      return FALSE;
  } else if (strcmp (type, "dense") == 0) {
    static const char *const keys[] = { "type", "units", "bias", NULL };
    l->kind = CBIR_LAYER_DENSE;
    if (!check_keys (c, o, keys, error)
        || !get_int (c, o, "units", TRUE, 0, 1, 1 << 24, &v, error))
      return FALSE;
    l->filters = (int) v;
    if (!get_bool (c, o, "bias", TRUE, &l->bias, error))
      return FALSE;
  } else if (strcmp (type, "leaky_relu") == 0) {
    static const char *const keys[] = { "type", "alpha", NULL };
    l->kind = CBIR_LAYER_LEAKY_RELU;
    if (!check_keys (c, o, keys, error)
        || !get_double (c, o, "alpha", 0.3, &m->spec_alpha[i], error))
      return FALSE;
    if (m->spec_alpha[i] < 0 || m->spec_alpha[i] > 1)
      return ctx_error (c, error, "\"alpha\" must be in [0, 1]");
    l->alpha = (float) m->spec_alpha[i];
  } else if (strcmp (type, "batchnorm") == 0) {
    static const char *const keys[] = { "type", "eps", "momentum", NULL };
    l->kind = CBIR_LAYER_BATCHNORM;
    if (!check_keys (c, o, keys, error)
        || !get_double (c, o, "eps", 1e-3, &m->spec_eps[i], error)
        || !get_double (c, o, "momentum", 0.01, &m->spec_momentum[i], error))
      return FALSE;
    if (!(m->spec_eps[i] > 0 && m->spec_eps[i] < 1))
      return ctx_error (c, error, "\"eps\" must be in (0, 1)");
    if (!(m->spec_momentum[i] >= 0 && m->spec_momentum[i] <= 1))
      return ctx_error (c, error, "\"momentum\" must be in [0, 1]");
    l->eps = (float) m->spec_eps[i];
    l->momentum = (float) m->spec_momentum[i];
  } else if (strcmp (type, "maxpool2") == 0) {
    static const char *const keys[] = { "type", "padding", NULL };
    l->kind = CBIR_LAYER_MAXPOOL2;
    gboolean same;
    if (!check_keys (c, o, keys, error))
      return FALSE;
    if (json_object_has_member (o, "padding")) {
      if (!parse_padding (c, o, &same, error))
        return FALSE;
    } else {
      same = FALSE;
    }
    /* "same" (Keras): odd sizes round up (ceil); default floors. */
    m->spec_pool_same[i] = same;
    l->same = same;
  } else if (strcmp (type, "reshape") == 0) {
    static const char *const keys[] = { "type", "shape", NULL };
    l->kind = CBIR_LAYER_RESHAPE;
    if (!check_keys (c, o, keys, error)
        || !get_int3 (c, o, "shape", l->shape, error))
      return FALSE;
  } else {
    static const char *const keys[] = { "type", NULL };
    if (strcmp (type, "relu") == 0)
      l->kind = CBIR_LAYER_RELU;
    else if (strcmp (type, "sigmoid") == 0)
      l->kind = CBIR_LAYER_SIGMOID;
    else if (strcmp (type, "upsample2") == 0)
      l->kind = CBIR_LAYER_UPSAMPLE2;
    else if (strcmp (type, "flatten") == 0)
      l->kind = CBIR_LAYER_FLATTEN;
    else
      return ctx_error (c, error, "unknown layer type \"%s\" (known: conv2d, "
          "conv_transpose2d, dense, relu, leaky_relu, sigmoid, batchnorm, "
          "maxpool2, upsample2, flatten, reshape)", type);
    if (!check_keys (c, o, keys, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
parse_training (Ctx *c, JsonObject *root, CbirTrainSettings *s,
    GError **error)
{
  settings_init_default (s);
  JsonNode *n = json_object_get_member (root, "training");
  if (!n)
    return TRUE;
  g_free (c->where);
  c->where = g_strdup ("\"training\"");
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return ctx_error (c, error, "not a JSON object");
  JsonObject *o = json_node_get_object (n);
  static const char *const keys[] = { "loss", "optimizer", "lr",
    "lr_schedule", "rho",
    "momentum", "beta1", "beta2", "eps", "noise", "noise_level",
    "shift", "rotate", "consistency", "thickness", "batch_size", "epochs",
    NULL
  };
  if (!check_keys (c, o, keys, error))
    return FALSE;
  const char *str;
  if (!get_string (c, o, "loss", "bce", &str, error))
    return FALSE;
  if (!cbir_loss_from_string (str, &s->loss))
    return ctx_error (c, error, "unknown loss \"%s\" (bce, mse)", str);
  if (!get_string (c, o, "optimizer", "adam", &str, error))
    return FALSE;
  CbirOptimizerKind ok;
  if (!cbir_optimizer_from_string (str, &ok))
    return ctx_error (c, error, "unknown optimizer \"%s\" (adam, adadelta, "
        "sgd)", str);
  cbir_train_settings_set_optimizer_defaults (s, ok);
  if (!get_double (c, o, "lr", s->lr, &s->lr, error)
      || !get_double (c, o, "rho", s->rho, &s->rho, error)
      || !get_double (c, o, "momentum", s->momentum, &s->momentum, error)
      || !get_double (c, o, "beta1", s->beta1, &s->beta1, error)
      || !get_double (c, o, "beta2", s->beta2, &s->beta2, error)
      || !get_double (c, o, "eps", s->eps, &s->eps, error))
    return FALSE;
  if (!get_string (c, o, "lr_schedule", "constant", &str, error))
    return FALSE;
  if (!cbir_lr_schedule_from_string (str, &s->lr_schedule))
    return ctx_error (c, error, "unknown lr_schedule \"%s\" (constant, "
        "cosine)", str);
  if (!get_string (c, o, "noise", "none", &str, error))
    return FALSE;
  if (!cbir_noise_kind_from_string (str, &s->noise))
    return ctx_error (c, error, "unknown noise \"%s\" (none, gaussian, "
        "salt-and-pepper)", str);
  if (!get_double (c, o, "noise_level", 0.0, &s->noise_level, error))
    return FALSE;
  gint64 v;
  if (!get_int (c, o, "batch_size", FALSE, 128, 1, 65536, &v, error))
    return FALSE;
  s->batch_size = (guint) v;
  if (!get_int (c, o, "epochs", FALSE, 20, 0, 1000000, &v, error))
    return FALSE;
  s->epochs = (guint) v;
  if (!get_int (c, o, "shift", FALSE, 0, 0, CBIR_MAX_SHIFT, &v, error))
    return FALSE;
  s->shift = (guint) v;
  if (!get_double (c, o, "rotate", 0.0, &s->rotate, error)
      || !get_double (c, o, "consistency", 0.0, &s->consistency, error)
      || !get_double (c, o, "thickness", 0.0, &s->thickness, error))
    return FALSE;
  if (s->noise == CBIR_NOISE_NONE)
    s->noise_level = 0;
  const char *what = settings_check (s);
  if (what)
    return ctx_error (c, error, "%s", what);
  return TRUE;
}

static CbirModel *
model_parse (const char *json, const char *origin, gssize len,
    const char *meta_normalisation, GError **error)
{
  Ctx c = { origin, NULL };
  g_autoptr (CbirModel) m = g_new0 (CbirModel, 1);
  g_mutex_init (&m->pool_lock);
  g_mutex_init (&m->batch_lock);
  m->pool = g_ptr_array_new_with_free_func (pool_entry_free);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) jerr = NULL;
  gboolean ok = FALSE;

  if (!cbir_json_parse_strict (parser, json, len, &jerr)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: architecture: invalid JSON: %s", origin, jerr->message);
    return NULL;
  }
  JsonNode *root_node = json_parser_get_root (parser);
  if (!root_node || !JSON_NODE_HOLDS_OBJECT (root_node)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: architecture: not a JSON object", origin);
    return NULL;
  }
  JsonObject *root = json_node_get_object (root_node);
  c.where = g_strdup ("architecture");
  static const char *const keys[] = { "name", "description", "input",
    "normalisation", "code_layer", "code_type", "code_normalise",
    "code_whiten_power", "layers", "training", NULL
  };
  const char *str;
  int in[3];
  gint64 v;
  if (!check_keys (&c, root, keys, error))
    goto out;
  if (!get_string (&c, root, "name", "custom", &str, error))
    goto out;
  m->name = g_strdup (str);
  if (json_object_has_member (root, "description")) {
    if (!get_string (&c, root, "description", NULL, &str, error))
      goto out;
    m->description = g_strdup (str);
  }
  if (!get_int3 (&c, root, "input", in, error))
    goto out;
  m->input.c = in[0];
  m->input.h = in[1];
  m->input.w = in[2];

  /* normalisation: architecture, else the file's metadata, else 1/255 */
  m->scale = 1.0 / 255.0;
  m->offset = 0.0;
  m->gamma = 1.0;
  {
    JsonNode *nn = json_object_get_member (root, "normalisation");
    g_autoptr (JsonParser) mp = NULL;
    if (!nn && meta_normalisation) {
      mp = json_parser_new ();
      if (!cbir_json_parse_strict (mp, meta_normalisation, -1, NULL)) {
        ctx_error (&c, error, "metadata \"normalisation\" is not valid JSON");
        goto out;
      }
      nn = json_parser_get_root (mp);
    }
    if (nn) {
      static const char *const nkeys[] = { "scale", "offset", "gamma",
        "deskew", NULL
      };
      if (!JSON_NODE_HOLDS_OBJECT (nn)) {
        ctx_error (&c, error, "\"normalisation\" must be an object "
            "{\"scale\": s, \"offset\": o, \"gamma\": g, \"deskew\": b}");
        goto out;
      }
      JsonObject *no = json_node_get_object (nn);
      if (!check_keys (&c, no, nkeys, error)
          || !get_double (&c, no, "scale", m->scale, &m->scale, error)
          || !get_double (&c, no, "offset", m->offset, &m->offset, error)
          || !get_double (&c, no, "gamma", m->gamma, &m->gamma, error)
          || !get_bool (&c, no, "deskew", FALSE, &m->deskew, error))
        goto out;
      if (m->scale == 0) {
        ctx_error (&c, error, "normalisation scale must not be 0");
        goto out;
      }
      if (!(m->gamma >= 0.05 && m->gamma <= 20)) {
        ctx_error (&c, error, "normalisation gamma must be in [0.05, 20]");
        goto out;
      }
      if (m->deskew && m->input.c != 1) {
        ctx_error (&c, error, "normalisation deskew needs a one-channel "
            "input, not %d channels", m->input.c);
        goto out;
      }
    }
  }

  if (!get_string (&c, root, "code_type", "float", &str, error))
    goto out;
  if (!cbir_code_type_from_string (str, &m->code_type)) {
    ctx_error (&c, error, "\"code_type\" must be \"float\" or \"bits\", not "
        "\"%s\"", str);
    goto out;
  }
  if (!get_string (&c, root, "code_normalise", "none", &str, error))
    goto out;
  if (!cbir_code_normalise_from_string (str, &m->code_norm)) {
    ctx_error (&c, error, "\"code_normalise\" must be \"none\", \"l2\", "
        "\"centre-l2\" or \"whiten-l2\", not \"%s\"", str);
    goto out;
  }
  if (m->code_norm == CBIR_CODE_NORMALISE_WHITEN_L2) {
    if (!get_double (&c, root, "code_whiten_power", DEFAULT_WHITEN_POWER,
            &m->whiten_power, error))
      goto out;
    if (!(m->whiten_power > 0 && m->whiten_power <= 1)) {
      ctx_error (&c, error, "\"code_whiten_power\" must be in (0, 1], not "
          "%g", m->whiten_power);
      goto out;
    }
  } else if (json_object_has_member (root, "code_whiten_power")) {
    ctx_error (&c, error, "\"code_whiten_power\" needs \"code_normalise\": "
        "\"whiten-l2\"");
    goto out;
  }
  if (m->code_norm != CBIR_CODE_NORMALISE_NONE
      && m->code_type == CBIR_CODE_BITS) {
    ctx_error (&c, error, "\"code_normalise\": \"%s\" needs float codes "
        "(\"code_type\" is \"bits\": a bit's sign does not change with the "
        "code's length)", str);
    goto out;
  }
  JsonNode *ln = json_object_get_member (root, "layers");
  if (!ln || !JSON_NODE_HOLDS_ARRAY (ln)
      || json_array_get_length (json_node_get_array (ln)) == 0) {
    ctx_error (&c, error, "\"layers\" must be a non-empty array");
    goto out;
  }
  JsonArray *la = json_node_get_array (ln);
  m->n_layers = json_array_get_length (la);
  if (m->n_layers > 1024) {
    ctx_error (&c, error, "too many layers (%u)", m->n_layers);
    goto out;
  }
  if (!get_int (&c, root, "code_layer", TRUE, 0, 0, m->n_layers - 1, &v,
          error))
    goto out;
  m->code_layer = (guint) v;
  m->specs = g_new0 (CbirLayerSpec, m->n_layers);
  m->spec_alpha = g_new0 (double, m->n_layers);
  m->spec_eps = g_new0 (double, m->n_layers);
  m->spec_momentum = g_new0 (double, m->n_layers);
  m->spec_pool_same = g_new0 (gboolean, m->n_layers);
  for (guint i = 0; i < m->n_layers; i++)
    if (!parse_layer (&c, m, i, json_array_get_element (la, i), error))
      goto out;
  if (!parse_training (&c, root, &m->settings, error))
    goto out;
  g_clear_pointer (&c.where, g_free);

  {
    g_autoptr (GError) nerr = NULL;
    /* parameters are allocated by the caller, once the file's tensors
     * (if any) are known to match the layout */
    m->net = cbir_net_new_layout (m->input, m->specs, m->n_layers, &nerr);
    if (!m->net) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "%s: architecture: %s",
          origin, nerr ? nerr->message : "invalid network");
      goto out;
    }
  }
  CbirShape out_shape = cbir_net_output_shape (m->net, m->n_layers - 1);
  if (out_shape.c != m->input.c || out_shape.h != m->input.h
      || out_shape.w != m->input.w) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: architecture: output of the last layer (%u) is %dx%dx%d, not the "
        "input shape %dx%dx%d (an autoencoder reconstructs its input)",
        origin, m->n_layers - 1, out_shape.c, out_shape.h, out_shape.w,
        m->input.c, m->input.h, m->input.w);
    goto out;
  }
  CbirShape cs = cbir_net_output_shape (m->net, m->code_layer);
  m->code_dim = (guint) cs.c * (guint) cs.h * (guint) cs.w;
  if (m->code_norm == CBIR_CODE_NORMALISE_CENTRE_L2
      || m->code_norm == CBIR_CODE_NORMALISE_WHITEN_L2)
    m->code_mean = g_new0 (float, m->code_dim);
  if (m->code_norm == CBIR_CODE_NORMALISE_WHITEN_L2) {
    if (m->code_dim > 4096) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "%s: architecture: "
          "\"whiten-l2\" needs a code of at most 4096 values, not %u",
          origin, m->code_dim);
      goto out;
    }
    m->code_whiten = g_new0 (float, (gsize) m->code_dim * m->code_dim);
    for (guint k = 0; k < m->code_dim; k++)
      m->code_whiten[(gsize) k * m->code_dim + k] = 1.0f;
  }
  /* pixel -> input: gamma 1 keeps the plain affine map bit for bit */
  for (guint v = 0; v < 256; v++)
    m->in_lut[v] = m->gamma == 1.0
        ? (float) v * (float) m->scale + (float) m->offset
        : (float) pow (v / 255.0, m->gamma) * (float) (255.0 * m->scale)
        + (float) m->offset;
  model_make_canonical (m);
  ok = TRUE;

out:
  g_free (c.where);
  if (!ok)
    return NULL;
  return g_steal_pointer (&m);
}

/* A model from architecture JSON with freshly initialised parameters. */
static CbirModel *
model_new_initialised (const char *json, const char *origin, gssize len,
    GError **error)
{
  g_autoptr (CbirModel) m = model_parse (json, origin, len, NULL, error);
  g_autoptr (GError) aerr = NULL;
  if (!m)
    return NULL;
  if (!cbir_net_alloc_params (m->net, &aerr)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT, "%s: "
        "architecture: %s", origin, aerr->message);
    return NULL;
  }
  cbir_net_init_params (m->net, 0);
  cbir_model_update_fingerprint (m);
  return g_steal_pointer (&m);
}

CbirModel *
cbir_model_new_from_json (const char *json, const char *origin,
    GError **error)
{
  g_return_val_if_fail (json != NULL, NULL);
  return model_new_initialised (json, origin ? origin : "architecture", -1,
      error);
}

CbirModel *
cbir_model_new_from_arch_file (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  gsize len;
  g_autoptr (GError) e = NULL;
  if (!g_file_get_contents (path, &text, &len, &e)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s", path,
        e->message);
    return NULL;
  }
  return model_new_initialised (text, path, (gssize) len, error);
}

CbirModel *
cbir_model_new_preset (const char *name, GError **error)
{
  const char *json = cbir_model_get_preset_json (name);
  if (!json) {
    g_autofree char *list = g_strjoinv (", ", (char **) preset_names);
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "unknown preset \"%s\" (known: %s)", name ? name : "(null)", list);
    return NULL;
  }
  g_autofree char *origin = g_strdup_printf ("preset %s", name);
  return cbir_model_new_from_json (json, origin, error);
}

/* ---- files ---- */

static char *
noise_json (const CbirTrainSettings *s)
{
  GString *str = g_string_new ("{\"kind\":");
  cbir_json_append_string (str, cbir_noise_kind_to_string (s->noise));
  g_string_append (str, ",\"level\":");
  cbir_json_append_double (str, s->noise_level);
  if (s->shift)
    g_string_append_printf (str, ",\"shift\":%u", s->shift);
  append_if_positive (str, "rotate", s->rotate);
  append_if_positive (str, "thickness", s->thickness);
  g_string_append_c (str, '}');
  return g_string_free (str, FALSE);
}

/* Strings handed to the writer must live until the write: keep them on
 * the model (cache) so that a writer can be used after this returns. */
void
cbir_model_add_to_writer (CbirModel *m, CbirSafetensorsWriter *w)
{
  float *params = cbir_net_params (m->net);
  for (guint i = 0; i < cbir_net_n_tensors (m->net); i++) {
    const CbirNetTensor *t = cbir_net_tensor (m->net, i);
    cbir_safetensors_writer_add (w, t->name, CBIR_DTYPE_F32, t->ndim,
        t->shape, params + t->offset);
  }
  if (m->code_mean) {
    gint64 shape[1] = { m->code_dim };
    cbir_safetensors_writer_add (w, CODE_MEAN_TENSOR, CBIR_DTYPE_F32, 1, shape,
        m->code_mean);
  }
  if (m->code_whiten) {
    gint64 shape[2] = { m->code_dim, m->code_dim };
    cbir_safetensors_writer_add (w, CODE_WHITEN_TENSOR, CBIR_DTYPE_F32, 2,
        shape, m->code_whiten);
  }
  g_autofree char *norm = NULL;
  {
    GString *s = g_string_new (NULL);
    append_normalisation (s, m);
    norm = g_string_free (s, FALSE);
  }
  g_autofree char *noise = noise_json (&m->settings);
  g_autofree char *training = NULL;
  if (m->training_info) {
    training = g_strdup (m->training_info);
  } else {
    g_autofree char *st = cbir_train_settings_to_json (&m->settings);
    training = g_strdup_printf ("{\"settings\":%s,\"epochs_done\":0}", st);
  }
  g_autofree char *dim = g_strdup_printf ("%u", m->code_dim);
  cbir_safetensors_writer_set_metadata (w, "format", MODEL_FORMAT);
  cbir_safetensors_writer_set_metadata (w, "version", MODEL_VERSION);
  cbir_safetensors_writer_set_metadata (w, "name", m->name);
  cbir_safetensors_writer_set_metadata (w, "architecture", m->arch_json);
  cbir_safetensors_writer_set_metadata (w, "normalisation", norm);
  cbir_safetensors_writer_set_metadata (w, "noise", noise);
  cbir_safetensors_writer_set_metadata (w, "training", training);
  cbir_safetensors_writer_set_metadata (w, "code_type",
      cbir_code_type_to_string (m->code_type));
  cbir_safetensors_writer_set_metadata (w, "code_dim", dim);
  cbir_safetensors_writer_set_metadata (w, "fingerprint", m->fingerprint);
}

/* FALSE, naming the tensor, when the model holds a value that loading
 * would refuse. */
static gboolean
model_check_finite (CbirModel *m, const char *path, GError **error)
{
  const CbirNetTensor *bad = cbir_net_find_non_finite (m->net);
  const char *name = bad ? bad->name : NULL;
  gsize nw = m->code_whiten ? (gsize) m->code_dim * m->code_dim : 0;

  for (guint k = 0; !name && m->code_mean && k < m->code_dim; k++)
    if (!isfinite (m->code_mean[k]))
      name = CODE_MEAN_TENSOR;
  for (gsize k = 0; !name && k < nw; k++)
    if (!isfinite (m->code_whiten[k]))
      name = CODE_WHITEN_TENSOR;
  if (name) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: not written: \"%s\" holds NaN or infinite values (no reader "
        "would load the model; did training diverge?)", path, name);
    return FALSE;
  }
  return TRUE;
}

gboolean
cbir_model_save (CbirModel *m, const char *path, GError **error)
{
  if (!model_check_finite (m, path, error))
    return FALSE;
  g_autoptr (CbirSafetensorsWriter) w = cbir_safetensors_writer_new ();
  cbir_model_add_to_writer (m, w);
  return cbir_safetensors_writer_write (w, path, error);
}

/* Reads a required little-endian F32 tensor of the given shape into out
 * and checks that every value is finite. */
static gboolean
load_f32_tensor (CbirSafetensors *st, const char *path, const char *name,
    guint ndim, const gint64 *shape, float *out, GError **error)
{
  CbirTensorView v;
  if (!cbir_safetensors_require (st, name, CBIR_DTYPE_F32, ndim, shape, &v,
          error))
    return FALSE;
  gsize n = 1;
  for (guint d = 0; d < ndim; d++)
    n *= (gsize) shape[d];
  copy_f32_le (out, v.data, n);
  for (gsize k = 0; k < n; k++) {
    if (!isfinite (out[k])) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: \"%s\" holds NaN or infinite values", path, name);
      return FALSE;
    }
  }
  return TRUE;
}

CbirModel *
cbir_model_new_from_safetensors (CbirSafetensors *st, GError **error)
{
  const char *path = cbir_safetensors_get_path (st);
  const char *format = cbir_safetensors_get_metadata (st, "format");
  const char *version = cbir_safetensors_get_metadata (st, "version");
  const char *arch = cbir_safetensors_get_metadata (st, "architecture");
  if (format && strcmp (format, MODEL_FORMAT) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: not a model file (format \"%s\", expected \"%s\")", path, format,
        MODEL_FORMAT);
    return NULL;
  }
  if (format && version && strcmp (version, MODEL_VERSION) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "%s: model format version \"%s\" is not supported (this build reads "
        "version %s)", path, version, MODEL_VERSION);
    return NULL;
  }
  if (!arch) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: no \"architecture\" in __metadata__: not a gst-cbir model file",
        path);
    return NULL;
  }
  g_autoptr (CbirModel) m = model_parse (arch, path, -1,
      cbir_safetensors_get_metadata (st, "normalisation"), error);
  if (!m)
    return NULL;
  /* every tensor of the layout is in the file, with its shape, before the
   * parameter block is allocated: a small file cannot ask for gigabytes */
  guint nt = cbir_net_n_tensors (m->net);
  g_autofree CbirTensorView *views = g_new (CbirTensorView, MAX (nt, 1));
  for (guint i = 0; i < nt; i++) {
    const CbirNetTensor *t = cbir_net_tensor (m->net, i);
    CbirTensorView v;
    if (!cbir_safetensors_require (st, t->name, CBIR_DTYPE_F32, t->ndim,
            t->shape, &v, error))
      return NULL;
    views[i] = v;
    if (v.nbytes != t->size * sizeof (float)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: tensor \"%s\" holds %" G_GSIZE_FORMAT " bytes, expected %"
          G_GSIZE_FORMAT, path, t->name, v.nbytes, t->size * sizeof (float));
      return NULL;
    }
  }
  g_autoptr (GError) aerr = NULL;
  if (!cbir_net_alloc_params (m->net, &aerr)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "%s: %s", path,
        aerr->message);
    return NULL;
  }
  float *params = cbir_net_params (m->net);
  for (guint i = 0; i < nt; i++) {
    const CbirNetTensor *t = cbir_net_tensor (m->net, i);
    copy_f32_le (params + t->offset, views[i].data, t->size);
  }
  for (gsize k = 0; k < cbir_net_n_params (m->net); k++)
    if (!isfinite (params[k])) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: parameters hold NaN or infinite values", path);
      return NULL;
    }
  if (m->code_mean) {
    gint64 shape[1] = { m->code_dim };
    if (!load_f32_tensor (st, path, CODE_MEAN_TENSOR, 1, shape, m->code_mean,
            error))
      return NULL;
  }
  if (m->code_whiten) {
    gint64 shape[2] = { m->code_dim, m->code_dim };
    if (!load_f32_tensor (st, path, CODE_WHITEN_TENSOR, 2, shape,
            m->code_whiten, error))
      return NULL;
  }
  cbir_model_update_fingerprint (m);
  const char *stored = cbir_safetensors_get_metadata (st, "fingerprint");
  if (stored && strcmp (stored, m->fingerprint) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: fingerprint mismatch (stored %.12s..., computed %.12s...): the "
        "weights or the architecture were modified or the file is corrupt",
        path, stored, m->fingerprint);
    return NULL;
  }
  const char *training = cbir_safetensors_get_metadata (st, "training");
  if (training)
    m->training_info = g_strdup (training);
  return g_steal_pointer (&m);
}

CbirModel *
cbir_model_load (const char *path, GError **error)
{
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (path, error);
  if (!st)
    return NULL;
  return cbir_model_new_from_safetensors (st, error);
}

/* ---- accessors ---- */

CbirNet *
cbir_model_get_net (CbirModel *m)
{
  return m->net;
}

const char *
cbir_model_get_name (const CbirModel *m)
{
  return m->name;
}

const char *
cbir_model_get_fingerprint (const CbirModel *m)
{
  return m->fingerprint;
}

const char *
cbir_model_get_arch_json (const CbirModel *m)
{
  return m->arch_json;
}

CbirCodeType
cbir_model_get_code_type (const CbirModel *m)
{
  return m->code_type;
}

CbirCodeNormalise
cbir_model_get_code_normalise (const CbirModel *m)
{
  return m->code_norm;
}

guint
cbir_model_get_code_dim (const CbirModel *m)
{
  return m->code_dim;
}

guint
cbir_model_get_code_bytes (const CbirModel *m)
{
  return (m->code_dim + 7) / 8;
}

guint
cbir_model_get_code_layer (const CbirModel *m)
{
  return m->code_layer;
}

void
cbir_model_get_input_size (const CbirModel *m, guint *width, guint *height)
{
  if (width)
    *width = (guint) m->input.w;
  if (height)
    *height = (guint) m->input.h;
}

void
cbir_model_get_normalisation (const CbirModel *m, float *scale, float *offset)
{
  if (scale)
    *scale = (float) m->scale;
  if (offset)
    *offset = (float) m->offset;
}

gboolean
cbir_model_get_deskew (const CbirModel *m)
{
  return m->deskew;
}

gboolean
cbir_model_set_deskew (CbirModel *m, gboolean deskew, GError **error)
{
  if (deskew && m->input.c != 1) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: deskewing needs a one-channel input, not %d channels", m->name,
        m->input.c);
    return FALSE;
  }
  m->deskew = deskew != FALSE;
  model_make_canonical (m);
  cbir_model_update_fingerprint (m);
  return TRUE;
}

double
cbir_model_get_input_gamma (const CbirModel *m)
{
  return m->gamma;
}

float
cbir_model_pixel_to_01 (const CbirModel *m, guint8 v)
{
  return m->gamma == 1.0 ? (float) v / 255.0f
      : (float) pow (v / 255.0, m->gamma);
}

const float *
cbir_model_get_input_lut (const CbirModel *m)
{
  return m->in_lut;
}

const CbirTrainSettings *
cbir_model_get_train_settings (const CbirModel *m)
{
  return &m->settings;
}

gboolean
cbir_model_set_train_settings (CbirModel *m, const CbirTrainSettings *s,
    GError **error)
{
  if (!settings_validate (s, m->name, error))
    return FALSE;
  m->settings = *s;
  if (m->settings.noise == CBIR_NOISE_NONE)
    m->settings.noise_level = 0;
  model_make_canonical (m);
  cbir_model_update_fingerprint (m);
  return TRUE;
}

const char *
cbir_model_get_training_info (const CbirModel *m)
{
  return m->training_info;
}

void
cbir_model_set_training_info (CbirModel *m, const char *json)
{
  g_free (m->training_info);
  m->training_info = g_strdup (json);
}

/* ---- encoding ---- */

static gsize
input_size (const CbirModel *m)
{
  return (gsize) m->input.c * m->input.h * m->input.w;
}

static PoolEntry *
pool_get (CbirModel *m)
{
  PoolEntry *e = NULL;
  g_mutex_lock (&m->pool_lock);
  if (m->pool->len > 0)
    e = g_ptr_array_steal_index_fast (m->pool, m->pool->len - 1);
  g_mutex_unlock (&m->pool_lock);
  if (!e) {
    e = g_new0 (PoolEntry, 1);
    e->st = cbir_net_state_new (m->net, ENCODE_CHUNK);
    e->in = g_new (float, ENCODE_CHUNK * input_size (m));
    if (m->code_whiten)
      e->row = g_new (float, m->code_dim);
  }
  return e;
}

static void
pool_put (CbirModel *m, PoolEntry *e)
{
  g_mutex_lock (&m->pool_lock);
  g_ptr_array_add (m->pool, e);
  g_mutex_unlock (&m->pool_lock);
}

/* Scales each of n codes of dim values to unit L2 length (zero stays
 * zero). */
static void
l2_normalise (float *codes, guint n, gsize dim)
{
  for (guint i = 0; i < n; i++) {
    float *c = codes + (gsize) i * dim;
    double ss = 0;
    for (gsize j = 0; j < dim; j++)
      ss += (double) c[j] * c[j];
    if (ss > 0) {
      const float inv = (float) (1.0 / sqrt (ss));
      for (gsize j = 0; j < dim; j++)
        c[j] *= inv;
    }
  }
}

/* `code`: the output is a code (apply the code normalisation). */
static gboolean
forward_chunks (CbirModel *m, const guint8 *pixels, const float *input,
    guint n, guint last, gboolean code, float *out, GError **error)
{
  if (last >= m->n_layers) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: layer %u out of range (%u layers)", m->name, last, m->n_layers);
    return FALSE;
  }
  if (n == 0)
    return TRUE;
  CbirShape os = cbir_net_output_shape (m->net, last);
  gsize out_size = (gsize) os.c * os.h * os.w;
  gsize in_size = input_size (m);
  PoolEntry *e = pool_get (m);
  const float *lut = m->in_lut;
  for (guint done = 0; done < n; done += ENCODE_CHUNK) {
    guint b = MIN (ENCODE_CHUNK, n - done);
    const float *x;
    if (pixels) {
      const guint8 *p = pixels + (gsize) done * in_size;
      if (m->deskew) {
        if (!e->px)             /* made on first use, also after a late
                                 * cbir_model_set_deskew */
          e->px = g_new (guint8, in_size);
        for (guint i = 0; i < b; i++) {
          cbir_preprocess_deskew (p + (gsize) i * in_size, m->input.w,
              m->input.h, e->px);
          for (gsize k = 0; k < in_size; k++)
            e->in[(gsize) i * in_size + k] = lut[e->px[k]];
        }
      } else {
        for (gsize k = 0; k < (gsize) b * in_size; k++)
          e->in[k] = lut[p[k]];
      }
      x = e->in;
    } else {
      x = input + (gsize) done * in_size;
    }
    const float *y;
    if (b > 1) {
      g_mutex_lock (&m->batch_lock);
      y = cbir_net_forward (m->net, e->st, x, b, last, FALSE);
      g_mutex_unlock (&m->batch_lock);
    } else {
      y = cbir_net_forward (m->net, e->st, x, b, last, FALSE);
    }
    memcpy (out + (gsize) done * out_size, y, (gsize) b * out_size *
        sizeof (float));
    if (code && m->code_mean) {
      float *o = out + (gsize) done * out_size;
      for (guint i = 0; i < b; i++)
        for (gsize j = 0; j < out_size; j++)
          o[i * out_size + j] -= m->code_mean[j];
    }
    if (code && m->code_whiten) {
      /* o_i = W o_i, row by row (W is code_dim^2, small) */
      float *o = out + (gsize) done * out_size, *row = e->row;
      for (guint i = 0; i < b; i++) {
        float *oi = o + (gsize) i * out_size;
        for (gsize r = 0; r < out_size; r++) {
          const float *wr = m->code_whiten + r * out_size;
          float acc = 0;
          for (gsize j = 0; j < out_size; j++)
            acc += wr[j] * oi[j];
          row[r] = acc;
        }
        memcpy (oi, row, out_size * sizeof (float));
      }
    }
    if (code && m->code_norm != CBIR_CODE_NORMALISE_NONE)
      l2_normalise (out + (gsize) done * out_size, b, out_size);
  }
  pool_put (m, e);
  return TRUE;
}

gboolean
cbir_model_encode_u8 (CbirModel *m, const guint8 *pixels, guint n,
    float *codes, GError **error)
{
  return forward_chunks (m, pixels, NULL, n, m->code_layer, TRUE, codes,
      error);
}

gboolean
cbir_model_encode_f32 (CbirModel *m, const float *input, guint n,
    float *codes, GError **error)
{
  return forward_chunks (m, NULL, input, n, m->code_layer, TRUE, codes,
      error);
}

gboolean
cbir_model_forward_f32 (CbirModel *m, const float *input, guint n,
    guint last, float *out, GError **error)
{
  return forward_chunks (m, NULL, input, n, last, FALSE, out, error);
}

void
cbir_codes_pack_bits (const float *codes, guint n, guint dim,
    const float *thresholds, guint8 *out)
{
  gsize nb = (dim + 7) / 8;
  for (guint i = 0; i < n; i++) {
    const float *c = codes + (gsize) i * dim;
    guint8 *o = out + (gsize) i * nb;
    memset (o, 0, nb);
    for (guint j = 0; j < dim; j++) {
      float t = thresholds ? thresholds[j] : 0.0f;
      if (c[j] > t)
        o[j >> 3] |= (guint8) (1u << (j & 7));
    }
  }
}

const float *
cbir_model_get_code_mean (const CbirModel *m)
{
  return m->code_mean;
}

void
cbir_model_set_code_mean (CbirModel *m, const float *mean)
{
  g_return_if_fail (m->code_mean != NULL);
  memcpy (m->code_mean, mean, m->code_dim * sizeof (float));
  cbir_model_update_fingerprint (m);
}

const float *
cbir_model_get_code_whiten (const CbirModel *m)
{
  return m->code_whiten;
}

double
cbir_model_get_code_whiten_power (const CbirModel *m)
{
  return m->code_whiten ? m->whiten_power : 0.0;
}

void
cbir_model_set_code_whiten (CbirModel *m, const float *w)
{
  g_return_if_fail (m->code_whiten != NULL);
  memcpy (m->code_whiten, w, (gsize) m->code_dim * m->code_dim *
      sizeof (float));
  cbir_model_update_fingerprint (m);
}

gboolean
cbir_model_fit_code_transform (CbirModel *m, const guint8 *images, guint n,
    GError **error)
{
  if (!m->code_mean)
    return TRUE;
  if (n < (m->code_whiten ? 2u : 1u)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: %u images are too few to fit the code %s", m->name, n,
        m->code_whiten ? "whitening" : "mean");
    return FALSE;
  }
  const guint chunk = 4096, dim = m->code_dim;
  const gsize in_size = input_size (m);
  /* whitening needs every raw code at once (PCA); the mean alone does not */
  g_autofree float *raw = g_new (float, (gsize) (m->code_whiten ? n :
          MIN (n, chunk)) * dim);
  g_autofree double *sum = g_new0 (double, dim);
  for (guint done = 0; done < n; done += chunk) {
    guint b = MIN (chunk, n - done);
    float *r = m->code_whiten ? raw + (gsize) done * dim : raw;
    if (!forward_chunks (m, images + (gsize) done * in_size, NULL, b,
            m->code_layer, FALSE, r, error))
      return FALSE;
    for (guint i = 0; i < b; i++)
      for (guint j = 0; j < dim; j++)
        sum[j] += r[(gsize) i * dim + j];
  }
  for (guint j = 0; j < dim; j++)
    m->code_mean[j] = (float) (sum[j] / n);
  if (m->code_whiten) {
    /* W = V diag (var^-p) V^T: scaled along the principal axes, then
     * turned back, so the code keeps the network's axes (per-dimension bit
     * thresholds stay meaningful; distances equal those of diag (var^-p)
     * V^T). Variances floored at 1e-6 of the largest so that a dead code
     * dimension does not blow up. */
    g_autoptr (CbirPca) pca = cbir_pca_fit (raw, n, dim, dim, error);
    if (!pca) {
      g_prefix_error (error, "%s: fitting the code whitening: ", m->name);
      return FALSE;
    }
    const double *var = cbir_pca_get_variances (pca);
    const float *comp = cbir_pca_get_components (pca);  /* dim x dim, col c */
    double floor_v = MAX (var[0] * 1e-6, 1e-30);
    g_autofree double *sc = g_new (double, dim);
    for (guint c = 0; c < dim; c++)
      sc[c] = pow (MAX (var[c], floor_v), -m->whiten_power);
    for (guint r = 0; r < dim; r++)
      for (guint j = 0; j < dim; j++) {
        double acc = 0;
        for (guint c = 0; c < dim; c++)
          acc += (double) comp[(gsize) r * dim + c] * sc[c]
              * comp[(gsize) j * dim + c];
        m->code_whiten[(gsize) r * dim + j] = (float) acc;
      }
  }
  cbir_model_update_fingerprint (m);
  return TRUE;
}

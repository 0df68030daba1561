/* Training loop: denoising autoencoder, BCE/MSE, Adam/Adadelta/SGD,
 * counter-based randomness (bit-identical reruns and resumes),
 * validation, checkpoints. */
#include "cbir/train.h"
#include "cbir/noise.h"
#include "cbir/preprocess.h"
#include "cbir/safetensors.h"

#include "json-util.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BCE_EPS 1e-7
#define CHECKPOINT_FORMAT "gst-cbir-checkpoint"
/* Streams of the counter-based RNG that are not epochs. */
#define STREAM_SPLIT G_GUINT64_CONSTANT (0xffffffffffff0001)
#define VAL_NOISE_KEY G_GUINT64_CONSTANT (0x5eedf00dcafe1234)
/* Keys the translation jitter's stream apart from the noise's. */
#define SHIFT_KEY G_GUINT64_CONSTANT (0x7a3f19e5b2c8d461)
#define ROTATE_KEY G_GUINT64_CONSTANT (0x3c6ef372fe94f82b)
#define THICKNESS_KEY G_GUINT64_CONSTANT (0xa54ff53a5f1d36f1)
/* Keys the second view's corruption (consistency term) apart from the
 * first's: its noise, shift, rotation and thickness are another draw. */
#define VIEW2_KEY G_GUINT64_CONSTANT (0x9b05688c2b3e6c1f)

struct _CbirTrainer {
  CbirModel *model;
  gboolean own_model;
  CbirNet *net;
  const CbirDataset *data;
  const CbirDataset *px;        /* the training images the net sees: data,
                                 * or its deskewed copy dsk[0] */
  const CbirDataset *val_set;   /* px, opts.val_data or its deskewed copy */
  const CbirDataset *inp;       /* paired inputs (opts.inputs or its
                                 * deskewed copy dsk[2]); NULL: the
                                 * corruption starts from the target */
  CbirDataset *dsk[3];          /* deskewing models: owned copies of the
                                 * training, validation and paired input
                                 * images */
  CbirTrainOptions opts;
  char *checkpoint_path;
  CbirTrainSettings set;
  gsize in_size;
  guint n_layers;
  guint last;                   /* layer whose output the loss sees */
  gboolean fused;               /* BCE on the logits of a final sigmoid */
  guint *train_idx;
  guint n_train;
  guint *val_idx;
  guint n_val;
  guint *order;                 /* this epoch's order */
  CbirNetState *st;
  float *grads, *s0, *s1;
  float *x, *target, *dout;
  guint views;                  /* 2 with a consistency term, else 1 */
  guint code_layer;
  gsize code_size;              /* floats per code */
  float *dcode;                 /* d(consistency term)/d(codes) */
  float lut[256];               /* pixel -> [0,1] */
  float *src01;                 /* one paired input in [0,1] */
  guint epoch;                  /* epochs done */
  guint64 step;                 /* optimiser steps done */
  guint64 n_steps;              /* steps of the whole run (set.epochs
                                 * epochs), the lr schedule's horizon */
  GArray *train_losses, *val_losses;
  double zeros[2], meanp[2];
  gboolean collapsed;
  char data_sha[65], val_sha[65], inputs_sha[65];
};

/* ---- randomness: splitmix64, counter-based ---- */

static inline guint64
splitmix64 (guint64 *s)
{
  guint64 z = (*s += G_GUINT64_CONSTANT (0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static void
shuffle (guint *v, guint n, guint64 seed, guint64 stream)
{
  guint64 s = seed ^ (stream * G_GUINT64_CONSTANT (0xD1B54A32D192ED03));
  splitmix64 (&s);
  for (guint i = n; i > 1; i--) {
    guint j = (guint) (splitmix64 (&s) % i);
    guint tmp = v[i - 1];
    v[i - 1] = v[j];
    v[j] = tmp;
  }
}

/* ---- losses ---- */

double
cbir_loss_eval (CbirLoss loss, gboolean from_logits, const float *y,
    const float *target, gsize n, float *grad, float grad_scale)
{
  double sum = 0;
  if (loss == CBIR_LOSS_MSE) {
    for (gsize i = 0; i < n; i++) {
      float p = y[i];
      if (from_logits)
        p = 1.0f / (1.0f + expf (-p));
      float d = p - target[i];
      sum += (double) d * d;
      if (grad) {
        float g = 2.0f * d;
        if (from_logits)
          g *= p * (1.0f - p);
        grad[i] = g * grad_scale;
      }
    }
  } else if (from_logits) {
    /* clip like Keras: p in [eps, 1 - eps] <=> |z| <= log((1-eps)/eps) */
    const float zmax = (float) log ((1.0 - BCE_EPS) / BCE_EPS);
    for (gsize i = 0; i < n; i++) {
      float z = y[i], t = target[i];
      float zc = CLAMP (z, -zmax, zmax);
      /* softplus(z) - t z, stable */
      double l = (double) MAX (zc, 0.0f) - (double) t * zc
          + log1p (exp (-fabs ((double) zc)));
      sum += l;
      if (grad) {
        float p = z >= 0 ? 1.0f / (1.0f + expf (-z))
            : expf (z) / (1.0f + expf (z));
        grad[i] = (p - t) * grad_scale;
      }
    }
  } else {
    const float eps = (float) BCE_EPS;
    for (gsize i = 0; i < n; i++) {
      float t = target[i];
      float p = CLAMP (y[i], eps, 1.0f - eps);
      sum += -((double) t * log (p) + (1.0 - t) * log (1.0 - p));
      if (grad) {
        gboolean clipped = y[i] < eps || y[i] > 1.0f - eps;
        grad[i] = clipped ? 0.0f : (p - t) / (p * (1.0f - p)) * grad_scale;
      }
    }
  }
  return n ? sum / (double) n : 0.0;
}

double
cbir_view_spread_eval (const float *z, guint n, gsize dim, float *grad,
    float grad_scale)
{
  const gsize rows = (gsize) 2 * n;
  double *mean = g_new0 (double, MAX (dim, 1));
  for (gsize r = 0; r < rows; r++)
    for (gsize k = 0; k < dim; k++)
      mean[k] += z[r * dim + k];
  for (gsize k = 0; k < dim; k++)
    mean[k] /= (double) MAX (rows, 1);
  double w = 0, tot = 0;
  for (gsize r = 0; r < rows; r++)
    for (gsize k = 0; k < dim; k++) {
      double c = z[r * dim + k] - mean[k];
      tot += c * c;
    }
  for (gsize i = 0; i < n; i++)
    for (gsize k = 0; k < dim; k++) {
      double d = (double) z[i * dim + k] - z[(n + i) * dim + k];
      w += 0.5 * d * d;
    }
  double ratio = tot > 0 ? w / tot : 0;
  if (grad) {
    /* d(W/T)/dz = (dW/dz - (W/T) dT/dz) / T; dT/dz_r = 2 (z_r - mean)
     * (the mean's own dependence sums to zero) */
    for (gsize i = 0; i < n; i++)
      for (gsize k = 0; k < dim; k++) {
        const gsize a = i * dim + k, b = (n + i) * dim + k;
        if (!(tot > 0)) {
          grad[a] = grad[b] = 0;
          continue;
        }
        double d = (double) z[a] - z[b];
        double ga = (d - ratio * 2.0 * (z[a] - mean[k])) / tot;
        double gb = (-d - ratio * 2.0 * (z[b] - mean[k])) / tot;
        grad[a] = (float) (ga * grad_scale);
        grad[b] = (float) (gb * grad_scale);
      }
  }
  g_free (mean);
  return ratio;
}

/* ---- helpers ---- */

static int
cmp_uint (const void *a, const void *b)
{
  guint x = *(const guint *) a, y = *(const guint *) b;
  return x < y ? -1 : x > y;
}

void
cbir_train_options_init (CbirTrainOptions *o)
{
  memset (o, 0, sizeof (*o));
  o->seed = 42;
}

static void
sha256_images (const CbirDataset *ds, char out[65])
{
  g_autoptr (GChecksum) ck = g_checksum_new (G_CHECKSUM_SHA256);
  guint32 dims[3] = { GUINT32_TO_LE (ds->n), GUINT32_TO_LE (ds->rows),
    GUINT32_TO_LE (ds->cols)
  };
  g_checksum_update (ck, (const guchar *) dims, sizeof dims);
  g_checksum_update (ck, ds->images, (gsize) ds->n * ds->rows * ds->cols);
  g_strlcpy (out, g_checksum_get_string (ck), 65);
}

static void
append_losses (GString *s, const GArray *a)
{
  g_string_append_c (s, '[');
  for (guint i = 0; i < a->len; i++) {
    if (i)
      g_string_append_c (s, ',');
    cbir_json_append_double (s, g_array_index (a, double, i));
  }
  g_string_append_c (s, ']');
}

/* img (channels planes) moved a share |t| of the way to its 3x3 grey
 * dilation (t > 0) or erosion (t < 0), in place; the window is clipped at
 * the border. */
static void
thicken (float *img, guint channels, guint width, guint height, float t)
{
  if (t == 0)
    return;
  const gsize plane = (gsize) width * height;
  const gboolean dilate = t > 0;
  const float a = fabsf (t);
  float *tmp = g_new (float, plane);
  for (guint c = 0; c < channels; c++) {
    float *p = img + c * plane;
    for (guint y = 0; y < height; y++)
      for (guint x = 0; x < width; x++) {
        float m = p[(gsize) y * width + x];
        for (guint yy = y ? y - 1 : 0; yy <= MIN (y + 1, height - 1); yy++)
          for (guint xx = x ? x - 1 : 0; xx <= MIN (x + 1, width - 1); xx++) {
            float v = p[(gsize) yy * width + xx];
            m = dilate ? MAX (m, v) : MIN (m, v);
          }
        tmp[(gsize) y * width + x] = m;
      }
    for (gsize i = 0; i < plane; i++)
      p[i] += a * (tmp[i] - p[i]);
  }
  g_free (tmp);
}

void
cbir_train_corrupt (const CbirTrainSettings *s, guint64 seed, guint64 stream,
    const float *clean, guint channels, guint width, guint height, float *out,
    int *dx, int *dy)
{
  const gsize plane = (gsize) width * height, n = plane * channels;
  int ox = 0, oy = 0;
  if (s->shift > 0) {
    guint64 st = (seed ^ SHIFT_KEY)
        + stream * G_GUINT64_CONSTANT (0xD1B54A32D192ED03);
    const guint64 span = 2 * (guint64) s->shift + 1;
    ox = (int) (splitmix64 (&st) % span) - (int) s->shift;
    oy = (int) (splitmix64 (&st) % span) - (int) s->shift;
  }
  double angle = 0;
  if (s->rotate > 0) {
    guint64 st = (seed ^ ROTATE_KEY)
        + stream * G_GUINT64_CONSTANT (0xD1B54A32D192ED03);
    double u = (double) (splitmix64 (&st) >> 11) * 0x1.0p-53;  /* [0, 1) */
    angle = (2.0 * u - 1.0) * s->rotate * G_PI / 180.0;
  }
  if (angle != 0) {
    /* out (x, y) = clean at the point that rotation by angle about the
     * centre, then the shift, takes to (x, y); bilinear, 0 outside */
    const double cx = (width - 1) / 2.0, cy = (height - 1) / 2.0;
    const double ca = cos (angle), sa = sin (angle);
    for (guint c = 0; c < channels; c++) {
      const float *src = clean + c * plane;
      float *dst = out + c * plane;
      for (guint y = 0; y < height; y++)
        for (guint x = 0; x < width; x++) {
          const double px = x - ox - cx, py = y - oy - cy;
          const double sx = ca * px + sa * py + cx, sy = -sa * px + ca * py + cy;
          const double fx = floor (sx), fy = floor (sy);
          const int ix = (int) fx, iy = (int) fy;
          const double ax = sx - fx, ay = sy - fy;
          double v = 0;
          for (int j = 0; j < 2; j++)
            for (int i = 0; i < 2; i++) {
              const int xx = ix + i, yy = iy + j;
              if (xx < 0 || yy < 0 || xx >= (int) width || yy >= (int) height)
                continue;
              v += (i ? ax : 1 - ax) * (j ? ay : 1 - ay)
                  * src[(gsize) yy * width + xx];
            }
          dst[(gsize) y * width + x] = (float) v;
        }
    }
  } else if (ox == 0 && oy == 0) {
    memcpy (out, clean, n * sizeof (float));
  } else {
    /* out (x, y) = clean (x - ox, y - oy), 0 outside */
    const int w = (int) width, h = (int) height;
    const int x0 = MAX (ox, 0), x1 = MIN (w, w + ox);
    memset (out, 0, n * sizeof (float));
    for (guint c = 0; c < channels; c++)
      for (int y = MAX (oy, 0); y < MIN (h, h + oy) && x0 < x1; y++)
        memcpy (out + c * plane + (gsize) y * w + x0,
            clean + c * plane + (gsize) (y - oy) * w + (x0 - ox),
            (gsize) (x1 - x0) * sizeof (float));
  }
  if (s->thickness > 0) {
    guint64 st = (seed ^ THICKNESS_KEY)
        + stream * G_GUINT64_CONSTANT (0xD1B54A32D192ED03);
    double u = (double) (splitmix64 (&st) >> 11) * 0x1.0p-53;  /* [0, 1) */
    thicken (out, channels, width, height,
        (float) ((2.0 * u - 1.0) * s->thickness));
  }
  if (s->noise != CBIR_NOISE_NONE && s->noise_level > 0)
    cbir_noise_apply_f32 (s->noise, (float) s->noise_level, seed, stream,
        out, n);
  if (dx)
    *dx = ox;
  if (dy)
    *dy = oy;
}

/* Fills x (noisy, normalised input) and target (clean, [0,1]) for `count`
 * images of ds at indices idx; `shift` FALSE: noise only (validation).
 * With `src` (paired inputs, aligned with ds) the corruption starts from
 * src's image of the same index instead of the target. */
static void
prep_batch (CbirTrainer *t, const CbirDataset *ds, const CbirDataset *src,
    const guint *idx, guint count, guint64 seed, guint64 stream_base,
    gboolean shift, float *x, float *target, float *noisy01)
{
  CbirTrainSettings cs = t->set;
  if (!shift) {
    cs.shift = 0;
    cs.rotate = 0;
    cs.thickness = 0;
  }
  CbirShape in = cbir_net_input_shape (t->net);
  float scale, offset;
  cbir_model_get_normalisation (t->model, &scale, &offset);
  const float k = (float) (255.0 * (double) scale);
  const gsize sz = t->in_size;
  for (guint b = 0; b < count; b++) {
    const guint8 *img = ds->images + (gsize) idx[b] * sz;
    float *tg = target + b * sz, *xi = x + b * sz;
    for (gsize p = 0; p < sz; p++)
      tg[p] = t->lut[img[p]];
    const float *from = tg;
    if (src) {
      const guint8 *si = src->images + (gsize) idx[b] * sz;
      for (gsize p = 0; p < sz; p++)
        t->src01[p] = t->lut[si[p]];
      from = t->src01;
    }
    cbir_train_corrupt (&cs, seed, stream_base + idx[b], from, (guint) in.c,
        (guint) in.w, (guint) in.h, xi, NULL, NULL);
    if (noisy01)
      memcpy (noisy01 + b * sz, xi, sz * sizeof (float));
    if (k != 1.0f || offset != 0.0f)
      for (gsize p = 0; p < sz; p++)
        xi[p] = xi[p] * k + offset;
  }
}

/* Loss of a constant prediction c over the images idx of ds (by pixel
 * histogram). */
static double
constant_loss (CbirTrainer *t, const CbirDataset *ds, const guint *idx,
    guint n, float c)
{
  guint64 hist[256] = { 0 };
  const gsize sz = t->in_size;
  for (guint i = 0; i < n; i++) {
    const guint8 *img = ds->images + (gsize) idx[i] * sz;
    for (gsize p = 0; p < sz; p++)
      hist[img[p]]++;
  }
  double sum = 0, total = 0;
  for (guint v = 0; v < 256; v++) {
    if (!hist[v])
      continue;
    sum += (double) hist[v] * cbir_loss_eval (t->set.loss, FALSE, &c,
        &t->lut[v], 1, NULL, 0);
    total += (double) hist[v];
  }
  return total > 0 ? sum / total : NAN;
}

static double
mean_pixel (CbirTrainer *t, const CbirDataset *ds, const guint *idx, guint n)
{
  guint64 hist[256] = { 0 };
  const gsize sz = t->in_size;
  for (guint i = 0; i < n; i++) {
    const guint8 *img = ds->images + (gsize) idx[i] * sz;
    for (gsize p = 0; p < sz; p++)
      hist[img[p]]++;
  }
  double sum = 0;               /* in the target's [0,1] space (gamma) */
  for (guint v = 0; v < 256; v++)
    sum += (double) hist[v] * t->lut[v];
  return n ? sum / ((double) n * sz) : 0;
}

/* The images of ds, each deskewed (cbir_preprocess_deskew); no labels. */
static CbirDataset *
deskewed_copy (const CbirDataset *ds)
{
  CbirDataset *d = g_new0 (CbirDataset, 1);
  const gsize sz = (gsize) ds->rows * ds->cols;
  d->n = ds->n;
  d->rows = ds->rows;
  d->cols = ds->cols;
  d->images = g_new (guint8, MAX ((gsize) ds->n * sz, 1));
  for (guint i = 0; i < ds->n; i++)
    cbir_preprocess_deskew (ds->images + i * sz, ds->cols, ds->rows,
        d->images + i * sz);
  return d;
}

static gboolean
check_dataset (CbirTrainer *t, const CbirDataset *ds, const char *what,
    GError **error)
{
  guint w, h;
  cbir_model_get_input_size (t->model, &w, &h);
  CbirShape in = cbir_net_input_shape (t->net);
  if (in.c != 1) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "%s: the model takes %d channels; training reads GRAY8 data sets "
        "(1 channel)", cbir_model_get_name (t->model), in.c);
    return FALSE;
  }
  if (ds->rows != h || ds->cols != w) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s images are %ux%u, the model \"%s\" takes %ux%u", what, ds->cols,
        ds->rows, cbir_model_get_name (t->model), w, h);
    return FALSE;
  }
  if (ds->n == 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s set is empty", what);
    return FALSE;
  }
  return TRUE;
}

void
cbir_trainer_free (CbirTrainer *t)
{
  if (!t)
    return;
  cbir_net_state_free (t->st);
  if (t->own_model)
    cbir_model_free (t->model);
  g_free (t->checkpoint_path);
  g_free (t->train_idx);
  g_free (t->val_idx);
  g_free (t->order);
  g_free (t->grads);
  g_free (t->s0);
  g_free (t->s1);
  g_free (t->x);
  g_free (t->target);
  g_free (t->dout);
  g_free (t->dcode);
  cbir_dataset_free (t->dsk[0]);
  cbir_dataset_free (t->dsk[1]);
  cbir_dataset_free (t->dsk[2]);
  g_free (t->src01);
  if (t->train_losses)
    g_array_unref (t->train_losses);
  if (t->val_losses)
    g_array_unref (t->val_losses);
  g_free (t);
}

CbirTrainer *
cbir_trainer_new (CbirModel *model, const CbirDataset *data,
    const CbirTrainOptions *opts, GError **error)
{
  g_return_val_if_fail (model != NULL && data != NULL && opts != NULL, NULL);
  g_autoptr (CbirTrainer) t = g_new0 (CbirTrainer, 1);
  t->model = model;
  t->net = cbir_model_get_net (model);
  t->data = data;
  t->opts = *opts;
  t->checkpoint_path = g_strdup (opts->checkpoint_path);
  t->opts.checkpoint_path = t->checkpoint_path;
  t->set = *cbir_model_get_train_settings (model);
  t->n_layers = cbir_net_n_layers (t->net);
  CbirShape in = cbir_net_input_shape (t->net);
  t->in_size = (gsize) in.c * in.h * in.w;
  for (guint v = 0; v < 256; v++)
    t->lut[v] = cbir_model_pixel_to_01 (model, (guint8) v);
  t->train_losses = g_array_new (FALSE, FALSE, sizeof (double));
  t->val_losses = g_array_new (FALSE, FALSE, sizeof (double));

  if (!check_dataset (t, data, "training", error))
    return NULL;
  if (opts->val_data && !check_dataset (t, opts->val_data, "validation",
          error))
    return NULL;
  if (opts->inputs) {
    if (!check_dataset (t, opts->inputs, "paired input", error))
      return NULL;
    if (opts->inputs->n != data->n) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
          "the paired inputs hold %u images, the training data %u: image i "
          "of one must be the input for image i of the other",
          opts->inputs->n, data->n);
      return NULL;
    }
  }
  if (!(opts->val_split >= 0 && opts->val_split <= 0.9)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "validation split %g out of range [0, 0.9]", opts->val_split);
    return NULL;
  }
  if (opts->val_data && opts->val_split > 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "give either a validation split or a validation data set, not both");
    return NULL;
  }
  /* a deskewing model sees every image upright, the clean target too:
   * deskew once here, as cbir_model_encode_u8 does for each image */
  t->px = data;
  if (cbir_model_get_deskew (model)) {
    t->px = t->dsk[0] = deskewed_copy (data);
    if (opts->val_data)
      t->dsk[1] = deskewed_copy (opts->val_data);
  }
  if (opts->inputs) {
    t->inp = opts->inputs;
    if (cbir_model_get_deskew (model))
      t->inp = t->dsk[2] = deskewed_copy (opts->inputs);
    t->src01 = g_new (float, t->in_size);
  }
  if (opts->checkpoint_every > 0 && !opts->checkpoint_path) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "checkpoints every %u epochs need a checkpoint path",
        opts->checkpoint_every);
    return NULL;
  }

  /* split */
  guint n = data->n;
  guint *perm = g_new (guint, n);
  for (guint i = 0; i < n; i++)
    perm[i] = i;
  if (opts->val_split > 0) {
    shuffle (perm, n, opts->seed, STREAM_SPLIT);
    t->n_val = (guint) floor (opts->val_split * n);
    if (t->n_val >= n)
      t->n_val = n - 1;
  }
  t->n_train = n - t->n_val;
  t->train_idx = perm;
  if (opts->val_data) {
    t->val_set = t->dsk[1] ? t->dsk[1] : opts->val_data;
    t->n_val = opts->val_data->n;
    t->val_idx = g_new (guint, t->n_val);
    for (guint i = 0; i < t->n_val; i++)
      t->val_idx[i] = i;
  } else {
    t->val_set = t->px;
    t->val_idx = g_memdup2 (perm + t->n_train, sizeof (guint) * t->n_val);
    /* keep the held-out images in file order (for pictures) */
    if (t->n_val > 1)
      qsort (t->val_idx, t->n_val, sizeof (guint), cmp_uint);
  }
  t->order = g_new (guint, MAX (t->n_train, 1));

  /* loss head */
  const CbirLayerSpec *lastspec = cbir_net_layer (t->net, t->n_layers - 1);
  t->fused = t->set.loss == CBIR_LOSS_BCE && t->n_layers >= 2
      && lastspec->kind == CBIR_LAYER_SIGMOID;
  t->last = t->fused ? t->n_layers - 2 : t->n_layers - 1;

  cbir_net_set_threads (t->net, opts->threads ? opts->threads :
      cbir_default_threads ());
  guint bs = t->set.batch_size;
  t->views = t->set.consistency > 0 ? 2 : 1;
  {
    /* the whole training state, checked before any of it is allocated */
    guint threads = opts->threads ? opts->threads : cbir_default_threads ();
    guint64 need = cbir_net_memory_bytes (t->net, bs * t->views, threads,
        TRUE);
    guint64 have = (guint64) sysconf (_SC_PHYS_PAGES)
        * (guint64) sysconf (_SC_PAGESIZE);
    if (need > have) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "training %s needs about %.0f MiB (batch %u, %u threads), more "
          "than this machine's memory (%.0f MiB): use a smaller network or "
          "batch", cbir_model_get_name (model), need / 1048576.0, bs,
          threads, have / 1048576.0);
      return NULL;
    }
  }
  if (t->views == 2) {
    t->code_layer = cbir_model_get_code_layer (model);
    if (!cbir_net_keeps_output (t->net, t->code_layer, t->last)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "%s: the consistency term needs the code layer (%u, %s) to be a "
          "layer of its own below the decoder's output, not a view, a "
          "convolution with its ReLU, or the last layer",
          cbir_model_get_name (model), t->code_layer,
          cbir_layer_kind_to_string (cbir_net_layer (t->net,
                  t->code_layer)->kind));
      return NULL;
    }
    CbirShape cs = cbir_net_output_shape (t->net, t->code_layer);
    t->code_size = (gsize) cs.c * cs.h * cs.w;
    t->dcode = g_new (float, (gsize) 2 * bs * t->code_size);
  }
  t->st = cbir_net_state_new (t->net, bs * t->views);
  gsize np = cbir_net_n_params (t->net);
  t->grads = g_new0 (float, np);
  t->s0 = g_new0 (float, np);
  t->s1 = g_new0 (float, np);
  t->x = g_new (float, bs * t->views * t->in_size);
  t->target = g_new (float, bs * t->views * t->in_size);
  t->dout = g_new (float, bs * t->views * t->in_size);

  /* reference losses */
  float mu = (float) mean_pixel (t, t->px, t->train_idx, t->n_train);
  t->zeros[0] = constant_loss (t, t->px, t->train_idx, t->n_train, 0.0f);
  t->meanp[0] = constant_loss (t, t->px, t->train_idx, t->n_train, mu);
  if (t->n_val) {
    t->zeros[1] = constant_loss (t, t->val_set, t->val_idx, t->n_val, 0.0f);
    t->meanp[1] = constant_loss (t, t->val_set, t->val_idx, t->n_val, mu);
  } else {
    t->zeros[1] = t->meanp[1] = NAN;
  }
  sha256_images (data, t->data_sha);
  if (opts->val_data)
    sha256_images (opts->val_data, t->val_sha);
  else
    g_strlcpy (t->val_sha, "split", sizeof t->val_sha);
  if (opts->inputs)
    sha256_images (opts->inputs, t->inputs_sha);
  else
    g_strlcpy (t->inputs_sha, "none", sizeof t->inputs_sha);
  return g_steal_pointer (&t);
}

CbirModel *
cbir_trainer_get_model (CbirTrainer *t)
{
  return t->model;
}

/* ---- optimisers ---- */

static void
optimizer_step (CbirTrainer *t)
{
  const CbirTrainSettings *s = &t->set;
  float *p = cbir_net_params (t->net);
  /* the schedule at this step (0-based), then Adam's bias correction */
  double lr_t = s->lr;
  if (s->lr_schedule == CBIR_LR_COSINE && t->n_steps > 0)
    lr_t *= 0.5 * (1.0 + cos (G_PI * (double) MIN (t->step, t->n_steps)
            / (double) t->n_steps));
  t->step++;
  if (s->optimizer == CBIR_OPTIMIZER_ADAM)
    lr_t = lr_t * sqrt (1.0 - pow (s->beta2, (double) t->step))
        / (1.0 - pow (s->beta1, (double) t->step));
  const float lr = (float) lr_t;
  const float b1 = (float) s->beta1, b2 = (float) s->beta2;
  const float eps = (float) s->eps, rho = (float) s->rho;
  const float mom = (float) s->momentum;
  for (guint ti = 0; ti < cbir_net_n_tensors (t->net); ti++) {
    const CbirNetTensor *tn = cbir_net_tensor (t->net, ti);
    if (!tn->trainable)
      continue;
    float *w = p + tn->offset, *g = t->grads + tn->offset;
    float *a = t->s0 + tn->offset, *b = t->s1 + tn->offset;
    switch (s->optimizer) {
      case CBIR_OPTIMIZER_ADAM:
        for (gsize i = 0; i < tn->size; i++) {
          a[i] = b1 * a[i] + (1.0f - b1) * g[i];
          b[i] = b2 * b[i] + (1.0f - b2) * g[i] * g[i];
          w[i] -= lr * a[i] / (sqrtf (b[i]) + eps);
        }
        break;
      case CBIR_OPTIMIZER_ADADELTA:
        for (gsize i = 0; i < tn->size; i++) {
          a[i] = rho * a[i] + (1.0f - rho) * g[i] * g[i];
          float u = g[i] * sqrtf (b[i] + eps) / sqrtf (a[i] + eps);
          b[i] = rho * b[i] + (1.0f - rho) * u * u;
          w[i] -= lr * u;
        }
        break;
      case CBIR_OPTIMIZER_SGD:
        for (gsize i = 0; i < tn->size; i++) {
          a[i] = mom * a[i] - lr * g[i];
          w[i] += a[i];
        }
        break;
    }
  }
}

/* ---- evaluation ---- */

static double
eval_set (CbirTrainer *t, const CbirDataset *ds, const guint *idx, guint n)
{
  guint bs = t->set.batch_size;
  double sum = 0;
  guint64 seed = t->opts.seed ^ VAL_NOISE_KEY;
  for (guint done = 0; done < n; done += bs) {
    guint b = MIN (bs, n - done);
    prep_batch (t, ds, ds == t->px ? t->inp : NULL, idx + done, b, seed, 0,
        FALSE, t->x, t->target, NULL);
    const float *y = cbir_net_forward (t->net, t->st, t->x, b, t->last,
        FALSE);
    sum += cbir_loss_eval (t->set.loss, t->fused, y, t->target,
        b * t->in_size, NULL, 0) * b;
  }
  return n ? sum / n : NAN;
}

double
cbir_trainer_evaluate (CbirTrainer *t, gboolean val)
{
  if (val)
    return t->n_val ? eval_set (t, t->val_set, t->val_idx, t->n_val) : NAN;
  return eval_set (t, t->px, t->train_idx, t->n_train);
}

gboolean
cbir_trainer_sample (CbirTrainer *t, guint n, float *noisy, float *recon,
    float *clean, GError **error)
{
  const CbirDataset *ds = t->n_val ? t->val_set : t->px;
  const guint *idx = t->n_val ? t->val_idx : t->train_idx;
  guint avail = t->n_val ? t->n_val : t->n_train;
  if (n > avail) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "asked for %u sample images, only %u available", n, avail);
    return FALSE;
  }
  /* evenly spaced over the set (data sets are often sorted by label) */
  g_autofree guint *pick = g_new (guint, MAX (n, 1));
  for (guint i = 0; i < n; i++)
    pick[i] = idx[(guint) ((guint64) i * avail / n)];
  guint bs = t->set.batch_size;
  guint64 seed = t->opts.seed ^ VAL_NOISE_KEY;
  for (guint done = 0; done < n; done += bs) {
    guint b = MIN (bs, n - done);
    gsize off = (gsize) done * t->in_size;
    prep_batch (t, ds, ds == t->px ? t->inp : NULL, pick + done, b, seed, 0,
        FALSE, t->x, clean + off, noisy + off);
    const float *y = cbir_net_forward (t->net, t->st, t->x, b,
        t->n_layers - 1, FALSE);
    memcpy (recon + off, y, (gsize) b * t->in_size * sizeof (float));
  }
  return TRUE;
}

/* ---- info / checkpoint ---- */

static char *
info_json (CbirTrainer *t)
{
  g_autoptr (GString) s = g_string_new ("{\"settings\":");
  /* the settings as in the architecture's "training" block (not through
   * json-glib's generator: 1.6 writes 1e-08 as the invalid "1e-08.0") */
  {
    g_autofree char *tr =
        cbir_train_settings_to_json (cbir_model_get_train_settings (t->model));
    g_string_append (s, tr);
  }
  guint e = t->epoch;
  g_string_append_printf (s, ",\"epochs_done\":%u,\"seed\":\"%" G_GUINT64_FORMAT
      "\",\"threads\":%u,\"train_images\":%u,\"val_images\":%u,\"val_source\":\"%s\"",
      e, t->opts.seed, t->opts.threads ? t->opts.threads :
      cbir_default_threads (), t->n_train, t->n_val,
      t->opts.val_data ? "file" : (t->n_val ? "split" : "none"));
  g_string_append (s, ",\"val_split\":");
  cbir_json_append_double (s, t->opts.val_split);
  /* "none", or the SHA-256 of the paired inputs the corruption started
   * from (CbirTrainOptions.inputs) */
  g_string_append_printf (s, ",\"inputs_sha256\":\"%s\"", t->inputs_sha);
  g_string_append (s, ",\"final_train_loss\":");
  cbir_json_append_double (s,
      e ? g_array_index (t->train_losses, double, e - 1) : NAN);
  g_string_append (s, ",\"final_val_loss\":");
  cbir_json_append_double (s,
      e ? g_array_index (t->val_losses, double, e - 1) : NAN);
  g_string_append (s, ",\"zeros_loss_train\":");
  cbir_json_append_double (s, t->zeros[0]);
  g_string_append (s, ",\"zeros_loss_val\":");
  cbir_json_append_double (s, t->zeros[1]);
  g_string_append (s, ",\"mean_loss_train\":");
  cbir_json_append_double (s, t->meanp[0]);
  g_string_append (s, ",\"mean_loss_val\":");
  cbir_json_append_double (s, t->meanp[1]);
  g_string_append_printf (s, ",\"collapsed\":%s,\"train_losses\":",
      t->collapsed ? "true" : "false");
  append_losses (s, t->train_losses);
  g_string_append (s, ",\"val_losses\":");
  append_losses (s, t->val_losses);
  g_string_append_c (s, '}');
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static void
update_model_info (CbirTrainer *t)
{
  g_autofree char *info = info_json (t);
  cbir_model_set_training_info (t->model, info);
  /* centre-l2 / whiten-l2: the code mean (and whitening) of the training
   * images for these weights (deterministic: a function of the weights
   * and the data); fitting updates the fingerprint */
  if (!(cbir_model_get_code_mean (t->model) && t->data->n > 0
          && cbir_model_fit_code_transform (t->model, t->data->images,
              t->data->n, NULL)))
    cbir_model_update_fingerprint (t->model);
}

gboolean
cbir_trainer_save_checkpoint (CbirTrainer *t, const char *path,
    GError **error)
{
  update_model_info (t);
  g_autoptr (CbirSafetensorsWriter) w = cbir_safetensors_writer_new ();
  cbir_model_add_to_writer (t->model, w);
  gint64 shape[1] = { (gint64) cbir_net_n_params (t->net) };
  cbir_safetensors_writer_add (w, "optimizer.state0", CBIR_DTYPE_F32, 1,
      shape, t->s0);
  cbir_safetensors_writer_add (w, "optimizer.state1", CBIR_DTYPE_F32, 1,
      shape, t->s1);
  g_autoptr (GString) s = g_string_new ("{");
  g_string_append_printf (s, "\"format\":\"%s\",\"epoch\":%u,\"step\":\"%"
      G_GUINT64_FORMAT "\",\"seed\":\"%" G_GUINT64_FORMAT "\",\"val_split\":",
      CHECKPOINT_FORMAT, t->epoch, t->step, t->opts.seed);
  cbir_json_append_double (s, t->opts.val_split);
  g_string_append_printf (s, ",\"data_n\":%u,\"data_sha256\":\"%s\","
      "\"val_sha256\":\"%s\",\"inputs_sha256\":\"%s\",\"train_losses\":",
      t->data->n, t->data_sha, t->val_sha, t->inputs_sha);
  append_losses (s, t->train_losses);
  g_string_append (s, ",\"val_losses\":");
  append_losses (s, t->val_losses);
  g_string_append_printf (s, ",\"collapsed\":%s}",
      t->collapsed ? "true" : "false");
  cbir_safetensors_writer_set_metadata (w, "checkpoint", s->str);
  return cbir_safetensors_writer_write (w, path, error);
}

static gboolean
parse_losses (JsonObject *o, const char *key, guint n, GArray *out)
{
  JsonNode *node = json_object_get_member (o, key);
  if (!node || !JSON_NODE_HOLDS_ARRAY (node))
    return FALSE;
  JsonArray *a = json_node_get_array (node);
  if (json_array_get_length (a) != n)
    return FALSE;
  for (guint i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element (a, i);
    double v;
    if (JSON_NODE_HOLDS_NULL (e))
      v = NAN;
    else if (JSON_NODE_HOLDS_VALUE (e))
      v = json_node_get_double (e);
    else
      return FALSE;
    g_array_append_val (out, v);
  }
  return TRUE;
}

CbirTrainer *
cbir_trainer_resume (const char *path, const CbirDataset *data,
    const CbirTrainOptions *opts, GError **error)
{
  g_autoptr (CbirSafetensors) st = cbir_safetensors_open (path, error);
  if (!st)
    return NULL;
  const char *ck = cbir_safetensors_get_metadata (st, "checkpoint");
  g_autoptr (JsonParser) p = json_parser_new ();
  if (!ck || !cbir_json_parse_strict (p, ck, -1, NULL)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p))) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: not a training checkpoint (no valid \"checkpoint\" metadata)",
        path);
    return NULL;
  }
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  const char *fmt = json_object_get_string_member_with_default (o, "format",
      "");
  const char *seed_s = json_object_get_string_member_with_default (o, "seed",
      NULL);
  const char *step_s = json_object_get_string_member_with_default (o, "step",
      NULL);
  gint64 epoch = json_object_get_int_member_with_default (o, "epoch", -1);
  const char *dsha = json_object_get_string_member_with_default (o,
      "data_sha256", "");
  const char *vsha = json_object_get_string_member_with_default (o,
      "val_sha256", "");
  /* checkpoints from before paired inputs had none */
  const char *isha = json_object_get_string_member_with_default (o,
      "inputs_sha256", "none");
  if (strcmp (fmt, CHECKPOINT_FORMAT) != 0 || !seed_s || !step_s
      || epoch < 0 || !json_object_has_member (o, "val_split")) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: checkpoint metadata incomplete or of another format", path);
    return NULL;
  }
  g_autoptr (CbirModel) model = cbir_model_new_from_safetensors (st, error);
  if (!model)
    return NULL;
  CbirTrainOptions o2 = *opts;
  o2.seed = g_ascii_strtoull (seed_s, NULL, 10);
  o2.val_split = json_object_get_double_member (o, "val_split");
  if (strcmp (vsha, "split") != 0)
    o2.val_split = 0;
  if (strcmp (vsha, "split") != 0 && !opts->val_data) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: the checkpoint was trained with a separate validation set; "
        "give the same validation data to resume", path);
    return NULL;
  }
  g_autoptr (CbirTrainer) t = cbir_trainer_new (model, data, &o2, error);
  if (!t)
    return NULL;
  t->model = g_steal_pointer (&model);
  t->own_model = TRUE;
  if (strcmp (dsha, t->data_sha) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: the training data differ from the data the checkpoint was made "
        "with (SHA-256 %.12s... vs %.12s...)", path, t->data_sha, dsha);
    return NULL;
  }
  if (strcmp (vsha, t->val_sha) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: the validation data differ from the checkpoint's", path);
    return NULL;
  }
  if (strcmp (isha, t->inputs_sha) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: the paired inputs differ from the checkpoint's (%s)", path,
        strcmp (isha, "none") == 0 ? "it was trained without" :
        !opts->inputs ? "it was trained with paired inputs; give the same" :
        "another set");
    return NULL;
  }
  gint64 shape[1] = { (gint64) cbir_net_n_params (t->net) };
  CbirTensorView v0, v1;
  if (!cbir_safetensors_require (st, "optimizer.state0", CBIR_DTYPE_F32, 1,
          shape, &v0, error)
      || !cbir_safetensors_require (st, "optimizer.state1", CBIR_DTYPE_F32, 1,
          shape, &v1, error))
    return NULL;
  memcpy (t->s0, v0.data, v0.nbytes);
  memcpy (t->s1, v1.data, v1.nbytes);
  t->epoch = (guint) epoch;
  t->step = g_ascii_strtoull (step_s, NULL, 10);
  if (!parse_losses (o, "train_losses", t->epoch, t->train_losses)
      || !parse_losses (o, "val_losses", t->epoch, t->val_losses)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: checkpoint loss history does not match its epoch count", path);
    return NULL;
  }
  t->collapsed = json_object_get_boolean_member_with_default (o, "collapsed",
      FALSE);
  return g_steal_pointer (&t);
}

/* ---- the loop ---- */

gboolean
cbir_trainer_run (CbirTrainer *t, guint epochs, GError **error)
{
  if (epochs == 0)
    epochs = t->set.epochs;
  if (epochs != t->set.epochs) {
    /* the training block records the settings the model was trained with */
    t->set.epochs = epochs;
    if (!cbir_model_set_train_settings (t->model, &t->set, error))
      return FALSE;
  }
  const guint bs = t->set.batch_size;
  const guint n_batches = (t->n_train + bs - 1) / bs;
  t->n_steps = (guint64) epochs * n_batches;
  const gsize np = cbir_net_n_params (t->net);
  const gint64 t0 = g_get_monotonic_time ();
  guint64 images_run = 0;
  CbirTrainProgress pr = { 0 };
  pr.n_epochs = epochs;
  pr.n_batches = n_batches;
  pr.n_images = t->n_train;

  while (t->epoch < epochs) {
    const guint e = t->epoch;   /* 0-based */
    memcpy (t->order, t->train_idx, sizeof (guint) * t->n_train);
    shuffle (t->order, t->n_train, t->opts.seed, e);
    double sum = 0, spread_sum = 0;
    pr.epoch = e + 1;
    pr.view_spread = NAN;
    pr.val_loss = NAN;
    pr.epoch_end = FALSE;
    pr.collapsed = FALSE;
    for (guint bi = 0; bi < n_batches; bi++) {
      guint done = bi * bs;
      guint b = MIN (bs, t->n_train - done);
      const guint rows = b * t->views;
      gsize nval = (gsize) rows * t->in_size;
      prep_batch (t, t->px, t->inp, t->order + done, b, t->opts.seed,
          (guint64) e * t->data->n, TRUE, t->x, t->target, NULL);
      if (t->views == 2)
        prep_batch (t, t->px, t->inp, t->order + done, b,
            t->opts.seed ^ VIEW2_KEY,
            (guint64) e * t->data->n, TRUE, t->x + (gsize) b * t->in_size,
            t->target + (gsize) b * t->in_size, NULL);
      const float *y = cbir_net_forward (t->net, t->st, t->x, rows, t->last,
          TRUE);
      /* the reconstruction of every view; the reported loss */
      double l = cbir_loss_eval (t->set.loss, t->fused, y, t->target, nval,
          t->dout, 1.0f / (float) nval);
      if (!isfinite (l)) {
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
            "%s: training diverged (loss %g) in epoch %u, batch %u: lower "
            "the learning rate (%g)", cbir_model_get_name (t->model), l,
            e + 1, bi + 1, t->set.lr);
        return FALSE;
      }
      sum += l * b;
      memset (t->grads, 0, np * sizeof (float));
      if (t->views == 2) {
        const float *z = cbir_net_state_output (t->st, t->code_layer);
        double r = cbir_view_spread_eval (z, b, t->code_size, t->dcode,
            (float) t->set.consistency);
        spread_sum += r * b;
        pr.view_spread = spread_sum / (done + b);
        cbir_net_backward_extra (t->net, t->st, t->dout, t->code_layer,
            t->dcode, t->grads);
      } else {
        cbir_net_backward (t->net, t->st, t->dout, t->grads);
      }
      optimizer_step (t);
      images_run += b;
      if (t->opts.progress) {
        double el = (g_get_monotonic_time () - t0) / 1e6;
        guint64 left = (guint64) (epochs - e) * t->n_train - (done + b);
        pr.batch = bi + 1;
        pr.images_done = done + b;
        pr.loss = sum / (done + b);
        pr.elapsed_s = el;
        pr.images_per_s = el > 0 ? images_run / el : 0;
        pr.eta_s = pr.images_per_s > 0 ? left / pr.images_per_s : 0;
        if (!t->opts.progress (&pr, t->opts.user_data)) {
          g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "training cancelled");
          return FALSE;
        }
      }
    }
    /* a finite loss can hide non-finite weights (an infinite BN running
     * variance is only read in evaluation mode) */
    const CbirNetTensor *bad = cbir_net_find_non_finite (t->net);
    if (bad) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "%s: training diverged in epoch %u: \"%s\" holds NaN or infinite "
          "values: lower the learning rate (%g)",
          cbir_model_get_name (t->model), e + 1, bad->name, t->set.lr);
      return FALSE;
    }
    double tl = sum / t->n_train;
    double vl = t->n_val ? eval_set (t, t->val_set, t->val_idx, t->n_val)
        : NAN;
    if (t->n_val && !isfinite (vl)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "%s: training diverged in epoch %u: the validation loss (BN running "
          "statistics, as encoding uses them) is %g: lower the learning rate "
          "(%g)", cbir_model_get_name (t->model), e + 1, vl, t->set.lr);
      return FALSE;
    }
    g_array_append_val (t->train_losses, tl);
    g_array_append_val (t->val_losses, vl);
    t->epoch++;
    t->collapsed = fabs (tl - t->zeros[0]) <= 0.01 * fabs (t->zeros[0])
        || fabs (tl - t->meanp[0]) <= 0.01 * fabs (t->meanp[0]);
    if (t->opts.progress) {
      double el = (g_get_monotonic_time () - t0) / 1e6;
      pr.batch = n_batches;
      pr.images_done = t->n_train;
      pr.loss = tl;
      pr.val_loss = vl;
      pr.elapsed_s = el;
      pr.images_per_s = el > 0 ? images_run / el : 0;
      pr.eta_s = pr.images_per_s > 0 ? (double) (epochs - t->epoch) *
          t->n_train / pr.images_per_s : 0;
      pr.epoch_end = TRUE;
      pr.collapsed = t->collapsed;
      if (!t->opts.progress (&pr, t->opts.user_data)) {
        update_model_info (t);
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "training cancelled");
        return FALSE;
      }
    }
    if (t->opts.checkpoint_every
        && t->epoch % t->opts.checkpoint_every == 0
        && !cbir_trainer_save_checkpoint (t, t->checkpoint_path, error))
      return FALSE;
  }
  update_model_info (t);
  return TRUE;
}

/* ---- accessors ---- */

guint
cbir_trainer_get_epoch (const CbirTrainer *t)
{
  return t->epoch;
}

guint
cbir_trainer_get_n_train (const CbirTrainer *t)
{
  return t->n_train;
}

guint
cbir_trainer_get_n_val (const CbirTrainer *t)
{
  return t->n_val;
}

const double *
cbir_trainer_get_train_losses (const CbirTrainer *t)
{
  return (const double *) t->train_losses->data;
}

const double *
cbir_trainer_get_val_losses (const CbirTrainer *t)
{
  return (const double *) t->val_losses->data;
}

double
cbir_trainer_get_zeros_loss (const CbirTrainer *t, gboolean val)
{
  return t->zeros[val ? 1 : 0];
}

double
cbir_trainer_get_mean_loss (const CbirTrainer *t, gboolean val)
{
  return t->meanp[val ? 1 : 0];
}

gboolean
cbir_trainer_get_collapsed (const CbirTrainer *t)
{
  return t->collapsed;
}

/* Training tests on the 64-image MNIST fixture: losses (values and
 * gradients), the loss decreases and beats trivial predictors, bit-identical
 * reruns, checkpoint + resume == uninterrupted run, validation options,
 * collapse detection, bad inputs. */
#include "config.h"

#include <cbir/idx.h>
#include <cbir/model.h>
#include <cbir/noise.h>
#include <cbir/safetensors.h>
#include <cbir/train.h>

#include <check.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static char *tmpdir;
static CbirDataset *mnist;

static void
setup (void)
{
  GError *err = NULL;
  tmpdir = g_dir_make_tmp ("test-train-XXXXXX", &err);
  ck_assert_msg (tmpdir != NULL, "%s", err ? err->message : "");
  const char *dir = g_getenv ("CBIR_TEST_DATA");
  g_autofree char *p = g_build_filename (dir ? dir : "tests/data",
      "mnist-64-images.idx3-ubyte.gz", NULL);
  mnist = cbir_dataset_load (p, NULL, &err);
  ck_assert_msg (mnist != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (mnist->n, 64);
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
  g_clear_pointer (&mnist, cbir_dataset_free);
}

/* Small but real: conv-pool-conv-pool encoder, mirrored decoder. */
static const char small_arch[] =
    "{\"name\": \"small\", \"input\": [1, 28, 28], \"code_layer\": 5,\n"
    " \"layers\": [\n"
    "  {\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"maxpool2\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3},\n"
    "  {\"type\": \"relu\"},\n"
    "  {\"type\": \"upsample2\"},\n"
    "  {\"type\": \"conv2d\", \"filters\": 1, \"kernel\": 3},\n"
    "  {\"type\": \"sigmoid\"}],\n"
    " \"training\": {\"loss\": \"bce\", \"optimizer\": \"adam\", \"lr\": 0.01,\n"
    "   \"noise\": \"gaussian\", \"noise_level\": 0.3, \"batch_size\": 16,\n"
    "   \"epochs\": 6}}";

static CbirModel *
small_model (guint64 seed, const char *loss, const char *opt)
{
  GError *err = NULL;
  CbirModel *m = cbir_model_new_from_json (small_arch, "small", &err);
  ck_assert_msg (m != NULL, "%s", err ? err->message : "");
  CbirTrainSettings s = *cbir_model_get_train_settings (m);
  if (loss)
    ck_assert (cbir_loss_from_string (loss, &s.loss));
  if (opt) {
    CbirOptimizerKind k;
    ck_assert (cbir_optimizer_from_string (opt, &k));
    double lr = s.lr;
    cbir_train_settings_set_optimizer_defaults (&s, k);
    if (k == CBIR_OPTIMIZER_SGD)
      s.lr = 0.5;
    else if (k == CBIR_OPTIMIZER_ADAM)
      s.lr = lr;
  }
  ck_assert (cbir_model_set_train_settings (m, &s, &err));
  cbir_net_init_params (cbir_model_get_net (m), seed);
  cbir_model_update_fingerprint (m);
  return m;
}

static void
train_options (CbirTrainOptions *o, guint64 seed, guint threads, double split)
{
  cbir_train_options_init (o);
  o->seed = seed;
  o->threads = threads;
  o->val_split = split;
}

static CbirTrainer *
trainer_with (CbirModel *m, const CbirDataset *ds, const CbirTrainOptions *o)
{
  GError *err = NULL;
  CbirTrainer *t = cbir_trainer_new (m, ds, o, &err);
  ck_assert_msg (t != NULL, "%s", err ? err->message : "");
  return t;
}

static CbirTrainer *
trainer (CbirModel *m, const CbirDataset *ds, guint64 seed, guint threads,
    double split)
{
  CbirTrainOptions o;
  train_options (&o, seed, threads, split);
  return trainer_with (m, ds, &o);
}

static void
run (CbirTrainer *t, guint epochs)
{
  GError *err = NULL;
  ck_assert_msg (cbir_trainer_run (t, epochs, &err), "%s",
      err ? err->message : "");
}

static gboolean
params_equal (CbirModel *a, CbirModel *b)
{
  CbirNet *na = cbir_model_get_net (a), *nb = cbir_model_get_net (b);
  return cbir_net_n_params (na) == cbir_net_n_params (nb)
      && memcmp (cbir_net_params (na), cbir_net_params (nb),
      cbir_net_n_params (na) * sizeof (float)) == 0;
}

START_TEST (test_losses)
{
  /* values: MSE and BCE by hand */
  const float y[4] = { 0.25f, 0.5f, 0.9f, 0.0f };
  const float t[4] = { 0.0f, 1.0f, 1.0f, 0.5f };
  double mse = (0.0625 + 0.25 + 0.01 + 0.25) / 4;
  ck_assert_double_eq_tol (cbir_loss_eval (CBIR_LOSS_MSE, FALSE, y, t, 4,
          NULL, 0), mse, 1e-7);
  /* y = 0 is clipped to 1e-7, like Keras */
  double bce = (-log (0.75) - log (0.5) - log (0.9)
      - (0.5 * log (1e-7) + 0.5 * log (1 - 1e-7))) / 4;
  ck_assert_double_eq_tol (cbir_loss_eval (CBIR_LOSS_BCE, FALSE, y, t, 4,
          NULL, 0), bce, 1e-5);
  /* fused logits agree with sigmoid + BCE, and stay finite far out */
  float z[6] = { -3.0f, -0.5f, 0.0f, 2.0f, 40.0f, -40.0f };
  float tz[6] = { 0.1f, 1.0f, 0.5f, 0.0f, 0.0f, 1.0f };
  float p[6];
  for (int i = 0; i < 6; i++)
    p[i] = 1.0f / (1.0f + expf (-z[i]));
  ck_assert_double_eq_tol (cbir_loss_eval (CBIR_LOSS_BCE, TRUE, z, tz, 4,
          NULL, 0), cbir_loss_eval (CBIR_LOSS_BCE, FALSE, p, tz, 4, NULL, 0),
      1e-5);
  double far = cbir_loss_eval (CBIR_LOSS_BCE, TRUE, z + 4, tz + 4, 2, NULL, 0);
  ck_assert (isfinite (far));
  ck_assert_double_eq_tol (far, -log (1e-7), 1e-3);     /* clipped */
  /* gradients against central differences */
  for (int loss = 0; loss < 2; loss++)
    for (int logits = 0; logits < 2; logits++) {
      float g[4];
      float v[4] = { 0.3f, 0.6f, 0.2f, 0.8f };
      if (logits)
        for (int i = 0; i < 4; i++)
          v[i] = (v[i] - 0.5f) * 4;
      cbir_loss_eval (loss, logits, v, t, 4, g, 1.0f);
      for (int i = 0; i < 4; i++) {
        float h = 1e-3f, a = v[i];
        v[i] = a + h;
        double lp = cbir_loss_eval (loss, logits, v, t, 4, NULL, 0) * 4;
        v[i] = a - h;
        double lm = cbir_loss_eval (loss, logits, v, t, 4, NULL, 0) * 4;
        v[i] = a;
        ck_assert_msg (fabs ((lp - lm) / (2 * h) - g[i]) < 2e-2,
            "loss %d logits %d i %d: fd %g grad %g", loss, logits, i,
            (lp - lm) / (2 * h), g[i]);
      }
    }
}
END_TEST

START_TEST (test_learns)
{
  g_autoptr (CbirModel) m = small_model (1, NULL, NULL);
  g_autoptr (CbirTrainer) t = trainer (m, mnist, 7, 2, 0.25);
  ck_assert_uint_eq (cbir_trainer_get_n_val (t), 16);
  ck_assert_uint_eq (cbir_trainer_get_n_train (t), 48);
  double before = cbir_trainer_evaluate (t, TRUE);
  const guint E = 25;
  run (t, E);
  ck_assert_uint_eq (cbir_trainer_get_epoch (t), E);
  const double *tl = cbir_trainer_get_train_losses (t);
  const double *vl = cbir_trainer_get_val_losses (t);
  ck_assert_msg (tl[E - 1] < 0.8 * tl[0], "train loss %g -> %g", tl[0],
      tl[E - 1]);
  ck_assert_msg (vl[E - 1] < before, "val loss %g -> %g", before, vl[E - 1]);
  double zeros = cbir_trainer_get_zeros_loss (t, TRUE);
  double meanp = cbir_trainer_get_mean_loss (t, TRUE);
  /* reconstruction beats predicting zeros by far, and the mean pixel */
  ck_assert_msg (vl[E - 1] < 0.25 * zeros, "val %g zeros %g", vl[E - 1],
      zeros);
  ck_assert_msg (vl[E - 1] < meanp, "val %g mean-pixel %g", vl[E - 1], meanp);
  ck_assert (!cbir_trainer_get_collapsed (t));
  /* the model carries the training record and a new fingerprint */
  const char *info = cbir_model_get_training_info (m);
  ck_assert (info != NULL);
  ck_assert (strstr (info, "\"epochs_done\":25") != NULL);
  ck_assert (strstr (info, "zeros_loss_val") != NULL);
  /* sample: noisy differs from clean, values in [0,1] */
  float noisy[2 * 784], rec[2 * 784], clean[2 * 784];
  GError *err = NULL;
  ck_assert (cbir_trainer_sample (t, 2, noisy, rec, clean, &err));
  double dn = 0, dr = 0, d0 = 0;
  for (int i = 0; i < 2 * 784; i++) {
    ck_assert (noisy[i] >= 0 && noisy[i] <= 1 && rec[i] >= 0 && rec[i] <= 1);
    dn += fabs (noisy[i] - clean[i]);
    dr += (rec[i] - clean[i]) * (rec[i] - clean[i]);
    d0 += clean[i] * clean[i];
  }
  ck_assert (dn > 10);
  ck_assert_msg (dr < 0.5 * d0, "reconstruction error %g, zeros %g", dr, d0);
  ck_assert (!cbir_trainer_sample (t, 17, noisy, rec, clean, &err));
  g_clear_error (&err);
}
END_TEST

START_TEST (test_optimizers)
{
  const char *opts[] = { "adam", "adadelta", "sgd" };
  const char *losses[] = { "bce", "mse" };
  for (guint o = 0; o < 3; o++)
    for (guint l = 0; l < 2; l++) {
      g_autoptr (CbirModel) m = small_model (3, losses[l], opts[o]);
      g_autoptr (CbirTrainer) t = trainer (m, mnist, 1, 2, 0);
      double before = cbir_trainer_evaluate (t, FALSE);
      run (t, 3);
      double after = cbir_trainer_evaluate (t, FALSE);
      ck_assert_msg (after < before, "%s/%s: %g -> %g", opts[o], losses[l],
          before, after);
      ck_assert (isnan (cbir_trainer_get_val_losses (t)[0]));
    }
}
END_TEST

/* Two trainers made the same run: same weights, fingerprint, training
 * losses over `epochs`. */
static void
assert_same_run (CbirTrainer *ta, CbirTrainer *tb, guint epochs)
{
  CbirModel *a = cbir_trainer_get_model (ta), *b = cbir_trainer_get_model (tb);
  ck_assert (params_equal (a, b));
  ck_assert_str_eq (cbir_model_get_fingerprint (a),
      cbir_model_get_fingerprint (b));
  ck_assert (memcmp (cbir_trainer_get_train_losses (ta),
          cbir_trainer_get_train_losses (tb), epochs * sizeof (double)) == 0);
}

START_TEST (test_reproducible)
{
  g_autoptr (CbirModel) a = small_model (5, NULL, NULL);
  g_autoptr (CbirModel) b = small_model (5, NULL, NULL);
  g_autoptr (CbirModel) c = small_model (5, NULL, NULL);
  ck_assert (params_equal (a, b));
  g_autoptr (CbirTrainer) ta = trainer (a, mnist, 11, 2, 0.25);
  g_autoptr (CbirTrainer) tb = trainer (b, mnist, 11, 2, 0.25);
  g_autoptr (CbirTrainer) tc = trainer (c, mnist, 12, 2, 0.25);
  run (ta, 2);
  run (tb, 2);
  run (tc, 2);
  assert_same_run (ta, tb, 2);
  ck_assert (!params_equal (a, c));
  ck_assert_str_ne (cbir_model_get_fingerprint (a),
      cbir_model_get_fingerprint (c));
}
END_TEST

/* A trainer for m (2 threads, a quarter held out) that writes a checkpoint
 * every `every` epochs at ck and reports to `progress` (may be NULL). */
static CbirTrainer *
checkpointing_trainer (CbirModel *m, guint64 seed, guint every,
    const char *ck, CbirTrainProgressFunc progress)
{
  CbirTrainOptions o;
  train_options (&o, seed, 2, 0.25);
  o.checkpoint_every = every;
  o.checkpoint_path = ck;
  o.progress = progress;
  return trainer_with (m, mnist, &o);
}

/* Trains m for `epochs` with a checkpoint every `every` epochs at ck (the
 * trainer is freed afterwards, as an interrupted run would be). */
static void
run_checkpointed (CbirModel *m, guint64 seed, guint epochs, guint every,
    const char *ck)
{
  g_autoptr (CbirTrainer) t = checkpointing_trainer (m, seed, every, ck,
      NULL);
  run (t, epochs);
}

/* Resumes the checkpoint ck with 2 threads; `seed` is passed to show that
 * the checkpoint's own seed is used. */
static CbirTrainer *
resume_from (const char *ck, guint64 seed)
{
  GError *err = NULL;
  CbirTrainOptions r;
  cbir_train_options_init (&r);
  r.seed = seed;
  r.threads = 2;
  CbirTrainer *t = cbir_trainer_resume (ck, mnist, &r, &err);
  ck_assert_msg (t != NULL, "%s", err ? err->message : "");
  return t;
}

START_TEST (test_resume)
{
  GError *err = NULL;
  /* uninterrupted: 4 epochs */
  g_autoptr (CbirModel) a = small_model (8, NULL, NULL);
  g_autoptr (CbirTrainer) ta = trainer (a, mnist, 3, 2, 0.25);
  run (ta, 4);

  /* interrupted: 2 epochs with a checkpoint every 2, then resumed */
  g_autofree char *ck = g_build_filename (tmpdir, "ck.safetensors", NULL);
  g_autoptr (CbirModel) b = small_model (8, NULL, NULL);
  run_checkpointed (b, 3, 2, 2, ck);
  ck_assert (g_file_test (ck, G_FILE_TEST_EXISTS));
  /* the checkpoint loads as a model */
  g_autoptr (CbirModel) asmodel = cbir_model_load (ck, &err);
  ck_assert_msg (asmodel != NULL, "%s", err ? err->message : "");
  ck_assert (params_equal (asmodel, b));

  /* 999 is ignored: the checkpoint's seed is used */
  g_autoptr (CbirTrainer) tr = resume_from (ck, 999);
  ck_assert_uint_eq (cbir_trainer_get_epoch (tr), 2);
  ck_assert_uint_eq (cbir_trainer_get_n_val (tr), 16);
  run (tr, 4);
  CbirModel *rm = cbir_trainer_get_model (tr);
  ck_assert_msg (params_equal (rm, a), "resumed run differs");
  ck_assert_str_eq (cbir_model_get_fingerprint (rm),
      cbir_model_get_fingerprint (a));
  ck_assert (memcmp (cbir_trainer_get_train_losses (tr),
          cbir_trainer_get_train_losses (ta), 4 * sizeof (double)) == 0);
  ck_assert (memcmp (cbir_trainer_get_val_losses (tr),
          cbir_trainer_get_val_losses (ta), 4 * sizeof (double)) == 0);
  ck_assert_str_eq (cbir_model_get_training_info (rm),
      cbir_model_get_training_info (a));

  /* resuming on other data is refused */
  CbirTrainOptions r;
  cbir_train_options_init (&r);
  r.threads = 2;
  g_autoptr (CbirDataset) other = cbir_dataset_subset (mnist,
      (const guint[]) { 1, 0, 2, 3, 4, 5, 6, 7, 8, 9 }, 10);
  ck_assert (cbir_trainer_resume (ck, other, &r, &err) == NULL);
  ck_assert_msg (strstr (err->message, ck) && strstr (err->message, "data"),
      "%s", err->message);
  g_clear_error (&err);
  /* a model file is not a checkpoint */
  g_autofree char *mp = g_build_filename (tmpdir, "m.safetensors", NULL);
  ck_assert (cbir_model_save (a, mp, &err));
  ck_assert (cbir_trainer_resume (mp, mnist, &r, &err) == NULL);
  ck_assert (strstr (err->message, "checkpoint") != NULL);
  g_clear_error (&err);
}
END_TEST

START_TEST (test_val_file)
{
  guint idx[16];
  for (guint i = 0; i < 16; i++)
    idx[i] = 48 + i;
  g_autoptr (CbirDataset) val = cbir_dataset_subset (mnist, idx, 16);
  guint tidx[48];
  for (guint i = 0; i < 48; i++)
    tidx[i] = i;
  g_autoptr (CbirDataset) tr = cbir_dataset_subset (mnist, tidx, 48);
  g_autoptr (CbirModel) m = small_model (2, NULL, NULL);
  GError *err = NULL;
  CbirTrainOptions o;
  cbir_train_options_init (&o);
  o.threads = 1;
  o.val_data = val;
  g_autoptr (CbirTrainer) t = cbir_trainer_new (m, tr, &o, &err);
  ck_assert (t != NULL);
  ck_assert_uint_eq (cbir_trainer_get_n_train (t), 48);
  ck_assert_uint_eq (cbir_trainer_get_n_val (t), 16);
  run (t, 1);
  ck_assert (isfinite (cbir_trainer_get_val_losses (t)[0]));
  /* both a split and a file: refused */
  o.val_split = 0.1;
  ck_assert (cbir_trainer_new (m, tr, &o, &err) == NULL);
  g_clear_error (&err);
}
END_TEST

/* Paired inputs: the corruption of image i starts from image i of
 * opts.inputs and the target stays image i of the data. Inputs equal to
 * the data train exactly as without; the noisy samples of the (paired)
 * held-out split are the inputs, the targets the data; a count mismatch
 * and a resume without the same inputs are refused. */
START_TEST (test_paired_inputs)
{
  GError *err = NULL;
  /* the same images as inputs: bit-identical to no inputs */
  g_autoptr (CbirModel) a = small_model (4, NULL, NULL);
  g_autoptr (CbirModel) b = small_model (4, NULL, NULL);
  g_autoptr (CbirTrainer) ta = trainer (a, mnist, 9, 2, 0.25);
  CbirTrainOptions o;
  train_options (&o, 9, 2, 0.25);
  o.inputs = mnist;
  g_autoptr (CbirTrainer) tb = trainer_with (b, mnist, &o);
  run (ta, 1);
  run (tb, 1);
  ck_assert_msg (params_equal (a, b), "inputs equal to the data changed "
      "the training");
  ck_assert (strstr (cbir_model_get_training_info (a),
          "\"inputs_sha256\":\"none\"") != NULL);
  ck_assert (strstr (cbir_model_get_training_info (b),
          "\"inputs_sha256\":\"none\"") == NULL);

  /* other inputs (each image turned upside down), no noise: the net is
   * fed the input, the loss compares with the data */
  guint idx[64];
  for (guint i = 0; i < 64; i++)
    idx[i] = i;
  g_autoptr (CbirDataset) flipped = cbir_dataset_subset (mnist, idx, 64);
  const gsize sz = (gsize) mnist->rows * mnist->cols;
  for (guint i = 0; i < 64; i++)
    for (gsize p = 0; p < sz; p++)
      flipped->images[i * sz + p] = mnist->images[i * sz + sz - 1 - p];
  g_autoptr (CbirModel) c = small_model (4, NULL, NULL);
  CbirTrainSettings s = *cbir_model_get_train_settings (c);
  s.noise = CBIR_NOISE_NONE;
  ck_assert (cbir_model_set_train_settings (c, &s, &err));
  o.inputs = flipped;
  g_autoptr (CbirTrainer) tc = trainer_with (c, mnist, &o);
  guint n = cbir_trainer_get_n_val (tc);
  ck_assert_uint_eq (n, 16);
  g_autofree float *noisy = g_new (float, n * sz);
  g_autofree float *recon = g_new (float, n * sz);
  g_autofree float *clean = g_new (float, n * sz);
  ck_assert (cbir_trainer_sample (tc, n, noisy, recon, clean, &err));
  guint matched = 0;
  for (guint k = 0; k < n; k++) {
    /* which image is sample k? the one whose clean pixels it holds */
    for (guint i = 0; i < 64; i++) {
      gboolean same = TRUE;
      for (gsize p = 0; p < sz && same; p++)
        same = clean[k * sz + p] ==
            cbir_model_pixel_to_01 (c, mnist->images[i * sz + p]);
      if (!same)
        continue;
      for (gsize p = 0; p < sz; p++)
        ck_assert_float_eq (noisy[k * sz + p],
            cbir_model_pixel_to_01 (c, flipped->images[i * sz + p]));
      matched++;
      break;
    }
  }
  ck_assert_uint_eq (matched, n);
  /* training on them differs from training on the data alone */
  g_autoptr (CbirModel) d = small_model (4, NULL, NULL);
  ck_assert (cbir_model_set_train_settings (d, &s, &err));
  g_autoptr (CbirTrainer) td = trainer (d, mnist, 9, 2, 0.25);
  run (tc, 1);
  run (td, 1);
  ck_assert (!params_equal (c, d));

  /* a count mismatch is refused */
  g_autoptr (CbirDataset) few = cbir_dataset_subset (mnist, idx, 10);
  o.inputs = few;
  g_autoptr (CbirModel) e = small_model (4, NULL, NULL);
  ck_assert (cbir_trainer_new (e, mnist, &o, &err) == NULL);
  ck_assert_msg (strstr (err->message, "paired inputs") != NULL, "%s",
      err->message);
  g_clear_error (&err);

  /* a checkpoint made with inputs resumes only with the same inputs */
  g_autofree char *ck = g_build_filename (tmpdir, "paired.safetensors",
      NULL);
  ck_assert (cbir_trainer_save_checkpoint (tc, ck, &err));
  CbirTrainOptions r;
  cbir_train_options_init (&r);
  r.threads = 2;
  ck_assert (cbir_trainer_resume (ck, mnist, &r, &err) == NULL);
  ck_assert_msg (strstr (err->message, ck)
      && strstr (err->message, "paired inputs"), "%s", err->message);
  g_clear_error (&err);
  r.inputs = flipped;
  g_autoptr (CbirTrainer) tr = cbir_trainer_resume (ck, mnist, &r, &err);
  ck_assert_msg (tr != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_trainer_get_epoch (tr), 1);
}
END_TEST

START_TEST (test_collapse)
{
  /* All weights zero and the output bias at the mean pixel's logit: the
   * net predicts a constant image; with a tiny learning rate it stays
   * there and the trainer must say so. */
  g_autoptr (CbirModel) m = small_model (1, NULL, "sgd");
  CbirTrainSettings s = *cbir_model_get_train_settings (m);
  s.lr = 1e-9;
  s.momentum = 0;
  s.noise = CBIR_NOISE_NONE;
  ck_assert (cbir_model_set_train_settings (m, &s, NULL));
  CbirNet *net = cbir_model_get_net (m);
  memset (cbir_net_params (net), 0, cbir_net_n_params (net) * sizeof (float));
  double sum = 0;
  for (gsize i = 0; i < (gsize) mnist->n * 784; i++)
    sum += mnist->images[i] / 255.0;
  double mu = sum / (mnist->n * 784.0);
  const CbirNetTensor *b = cbir_net_find_tensor (net, "layers.10.bias");
  ck_assert (b != NULL);
  cbir_net_params (net)[b->offset] = (float) log (mu / (1 - mu));
  g_autoptr (CbirTrainer) t = trainer (m, mnist, 1, 2, 0);
  run (t, 1);
  ck_assert (cbir_trainer_get_collapsed (t));
  ck_assert (strstr (cbir_model_get_training_info (m),
          "\"collapsed\":true") != NULL);
}
END_TEST

START_TEST (test_bad_input)
{
  GError *err = NULL;
  g_autoptr (CbirModel) m = small_model (1, NULL, NULL);
  CbirDataset small = { 4, 14, 14, g_new0 (guint8, 4 * 196), NULL };
  CbirTrainOptions o;
  cbir_train_options_init (&o);
  ck_assert (cbir_trainer_new (m, &small, &o, &err) == NULL);
  ck_assert_msg (strstr (err->message, "14x14") && strstr (err->message,
          "28x28"), "%s", err->message);
  g_clear_error (&err);
  g_free (small.images);
  o.val_split = 0.95;
  ck_assert (cbir_trainer_new (m, mnist, &o, &err) == NULL);
  g_clear_error (&err);
  o.val_split = 0;
  o.checkpoint_every = 1;
  ck_assert (cbir_trainer_new (m, mnist, &o, &err) == NULL);
  g_clear_error (&err);
  /* divergence is an error, not NaN weights */
  CbirTrainSettings s = *cbir_model_get_train_settings (m);
  cbir_train_settings_set_optimizer_defaults (&s, CBIR_OPTIMIZER_SGD);
  s.lr = 1e30;
  s.loss = CBIR_LOSS_MSE;
  ck_assert (cbir_model_set_train_settings (m, &s, NULL));
  o.checkpoint_every = 0;
  g_autoptr (CbirTrainer) t = cbir_trainer_new (m, mnist, &o, &err);
  ck_assert (t != NULL);
  ck_assert (!cbir_trainer_run (t, 5, &err));
  ck_assert_msg (strstr (err->message, "diverged") != NULL, "%s",
      err->message);
  g_clear_error (&err);
}
END_TEST

/* The corruption function: shifted clean image plus noise, with the
 * shift an independent, seeded draw; shift 0 is the noise alone. */
static void
expected_shift (const float *clean, guint c, guint w, guint h, int dx, int dy,
    float *out)
{
  for (guint k = 0; k < c; k++)
    for (int y = 0; y < (int) h; y++)
      for (int x = 0; x < (int) w; x++) {
        int sx = x - dx, sy = y - dy;
        out[(k * h + y) * w + x] = sx >= 0 && sx < (int) w && sy >= 0
            && sy < (int) h ? clean[(k * h + sy) * w + sx] : 0.0f;
      }
}

START_TEST (test_corrupt)
{
  /* a real digit plus a 2-channel 7x5 pattern */
  float clean[784], out[784], want[784];
  for (guint p = 0; p < 784; p++)
    clean[p] = mnist->images[3 * 784 + p] / 255.0f;
  CbirTrainSettings s;
  memset (&s, 0, sizeof s);
  s.noise = CBIR_NOISE_NONE;
  s.shift = 3;
  gboolean seen[7][7] = { { FALSE } };
  for (guint64 stream = 0; stream < 400; stream++) {
    int dx = 99, dy = 99;
    cbir_train_corrupt (&s, 42, stream, clean, 1, 28, 28, out, &dx, &dy);
    ck_assert (dx >= -3 && dx <= 3 && dy >= -3 && dy <= 3);
    seen[dx + 3][dy + 3] = TRUE;
    expected_shift (clean, 1, 28, 28, dx, dy, want);
    ck_assert_msg (memcmp (out, want, sizeof want) == 0,
        "stream %" G_GUINT64_FORMAT ": not the image shifted by (%d, %d)",
        stream, dx, dy);
    /* the same (seed, stream) gives the same offset, whatever came before */
    int dx2, dy2;
    cbir_train_corrupt (&s, 42, stream, clean, 1, 28, 28, want, &dx2, &dy2);
    ck_assert (dx2 == dx && dy2 == dy);
  }
  for (int i = 0; i < 7; i++)
    for (int j = 0; j < 7; j++)
      ck_assert_msg (seen[i][j], "offset (%d, %d) never drawn", i - 3, j - 3);
  /* another seed gives other offsets */
  guint differ = 0;
  for (guint64 stream = 0; stream < 50; stream++) {
    int a, b, c, d;
    cbir_train_corrupt (&s, 42, stream, clean, 1, 28, 28, out, &a, &b);
    cbir_train_corrupt (&s, 43, stream, clean, 1, 28, 28, out, &c, &d);
    differ += a != c || b != d;
  }
  ck_assert_uint_gt (differ, 30);

  /* with noise: exactly the shifted image with the (seed, stream) noise */
  s.noise = CBIR_NOISE_GAUSSIAN;
  s.noise_level = 0.3;
  for (guint64 stream = 100; stream < 120; stream++) {
    int dx, dy;
    cbir_train_corrupt (&s, 7, stream, clean, 1, 28, 28, out, &dx, &dy);
    expected_shift (clean, 1, 28, 28, dx, dy, want);
    cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.3f, 7, stream, want, 784);
    ck_assert (memcmp (out, want, sizeof want) == 0);
    gboolean noisy = FALSE;
    expected_shift (clean, 1, 28, 28, dx, dy, want);
    for (guint p = 0; p < 784; p++)
      noisy |= out[p] != want[p];
    ck_assert (noisy);
  }
  /* shift 0: the noise alone, offset (0, 0) */
  s.shift = 0;
  {
    int dx = 5, dy = 5;
    cbir_train_corrupt (&s, 7, 3, clean, 1, 28, 28, out, &dx, &dy);
    ck_assert (dx == 0 && dy == 0);
    memcpy (want, clean, sizeof want);
    cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.3f, 7, 3, want, 784);
    ck_assert (memcmp (out, want, sizeof want) == 0);
  }
  /* several planes move together; shifts as large as the image empty it */
  float pc[2 * 35], po[2 * 35], pw[2 * 35];
  for (guint p = 0; p < 70; p++)
    pc[p] = (float) (p + 1) / 70.0f;
  s.noise = CBIR_NOISE_NONE;
  s.shift = 2;
  for (guint64 stream = 0; stream < 40; stream++) {
    int dx, dy;
    cbir_train_corrupt (&s, 1, stream, pc, 2, 7, 5, po, &dx, &dy);
    expected_shift (pc, 2, 7, 5, dx, dy, pw);
    ck_assert (memcmp (po, pw, sizeof pw) == 0);
  }
  s.shift = 9;
  for (guint64 stream = 0; stream < 40; stream++) {
    int dx, dy;
    cbir_train_corrupt (&s, 1, stream, pc, 2, 7, 5, po, &dx, &dy);
    expected_shift (pc, 2, 7, 5, dx, dy, pw);
    ck_assert (memcmp (po, pw, sizeof pw) == 0);
  }
}
END_TEST

/* small_model with training settings changed: translation and rotation
 * jitter, learning-rate schedule. */
static CbirModel *
jitter_model (guint64 seed, guint shift, double rotate, CbirLrSchedule sched)
{
  CbirModel *m = small_model (seed, NULL, NULL);
  CbirTrainSettings s = *cbir_model_get_train_settings (m);
  s.shift = shift;
  s.rotate = rotate;
  s.lr_schedule = sched;
  GError *err = NULL;
  ck_assert_msg (cbir_model_set_train_settings (m, &s, &err), "%s",
      err ? err->message : "");
  return m;
}

static CbirModel *
shift_model (guint64 seed, guint shift)
{
  return jitter_model (seed, shift, 0, CBIR_LR_CONSTANT);
}

/* Training with a shift: reproducible, different from no shift, recorded;
 * validation loss without the shift. */
START_TEST (test_shift_training)
{
  g_autoptr (CbirModel) a = shift_model (5, 2);
  g_autoptr (CbirModel) b = shift_model (5, 2);
  g_autoptr (CbirModel) c = shift_model (5, 0);
  ck_assert (params_equal (a, c));
  g_autoptr (CbirTrainer) ta = trainer (a, mnist, 11, 2, 0.25);
  g_autoptr (CbirTrainer) tb = trainer (b, mnist, 11, 2, 0.25);
  g_autoptr (CbirTrainer) tc = trainer (c, mnist, 11, 2, 0.25);
  /* same weights, shift or not: the same validation loss (no shift there) */
  ck_assert (cbir_trainer_evaluate (ta, TRUE) ==
      cbir_trainer_evaluate (tc, TRUE));
  float n1[2 * 784], r1[2 * 784], k1[2 * 784];
  float n2[2 * 784], r2[2 * 784], k2[2 * 784];
  ck_assert (cbir_trainer_sample (ta, 2, n1, r1, k1, NULL));
  ck_assert (cbir_trainer_sample (tc, 2, n2, r2, k2, NULL));
  ck_assert (memcmp (n1, n2, sizeof n1) == 0);
  run (ta, 2);
  run (tb, 2);
  run (tc, 2);
  assert_same_run (ta, tb, 2);
  ck_assert (memcmp (cbir_trainer_get_val_losses (ta),
          cbir_trainer_get_val_losses (tb), 2 * sizeof (double)) == 0);
  ck_assert (!params_equal (a, c));
  ck_assert (strstr (cbir_model_get_arch_json (a), "\"shift\":2") != NULL);
  ck_assert (strstr (cbir_model_get_training_info (a), "\"shift\":2") !=
      NULL);
  ck_assert (strstr (cbir_model_get_arch_json (c), "shift") == NULL);
  /* a shifted run resumes bit-identically too */
  g_autofree char *ck = g_build_filename (tmpdir, "sk.safetensors", NULL);
  g_autoptr (CbirModel) d = shift_model (5, 2);
  run_checkpointed (d, 11, 1, 1, ck);
  g_autoptr (CbirTrainer) tr = resume_from (ck, 0);
  ck_assert_uint_eq (cbir_model_get_train_settings (cbir_trainer_get_model
          (tr))->shift, 2);
  run (tr, 2);
  ck_assert (params_equal (cbir_trainer_get_model (tr), a));
}
END_TEST

static gboolean
stop_in_epoch_2 (const CbirTrainProgress *p, gpointer user_data)
{
  return p->epoch < 2;
}

/* Starts an `epochs`-epoch run of m with a checkpoint after every epoch
 * at ck and stops it (as a kill would) in the first batch of epoch 2. */
static void
run_interrupted (CbirModel *m, guint64 seed, guint epochs, const char *ck)
{
  GError *err = NULL;
  g_autoptr (CbirTrainer) t = checkpointing_trainer (m, seed, 1, ck,
      stop_in_epoch_2);
  ck_assert (!cbir_trainer_run (t, epochs, &err));
  ck_assert (strstr (err->message, "cancelled") != NULL);
  g_clear_error (&err);
}

/* Orientation (radians, of the principal axis) and mass of an image. */
static double
orientation (const float *img, guint w, guint h, double *mass)
{
  double m = 0, mx = 0, my = 0;
  for (guint y = 0; y < h; y++)
    for (guint x = 0; x < w; x++) {
      double v = img[y * w + x];
      m += v;
      mx += v * x;
      my += v * y;
    }
  mx /= m;
  my /= m;
  double m20 = 0, m02 = 0, m11 = 0;
  for (guint y = 0; y < h; y++)
    for (guint x = 0; x < w; x++) {
      double v = img[y * w + x], dx = x - mx, dy = y - my;
      m20 += v * dx * dx;
      m02 += v * dy * dy;
      m11 += v * dx * dy;
    }
  *mass = m;
  return 0.5 * atan2 (2 * m11, m20 - m02);
}

/* Rotation jitter: a horizontal bar comes out turned by angles that
 * fill [-rotate, rotate] (both ways, never beyond), keeps its mass to 1%
 * (it stays inside the frame; bilinear resampling), is reproducible per
 * (seed, stream), and the
 * shift drawn is the one without rotation. */
START_TEST (test_corrupt_rotate)
{
  float bar[784] = { 0 }, out[784], again[784];
  for (guint y = 12; y < 16; y++)
    for (guint x = 6; x < 22; x++)
      bar[y * 28 + x] = 1.0f;
  double m0;
  ck_assert (fabs (orientation (bar, 28, 28, &m0)) < 1e-9);
  CbirTrainSettings s;
  memset (&s, 0, sizeof s);
  s.noise = CBIR_NOISE_NONE;
  s.rotate = 20;
  double lo = 0, hi = 0;
  guint turned = 0;
  for (guint64 stream = 0; stream < 300; stream++) {
    int dx = 9, dy = 9;
    cbir_train_corrupt (&s, 42, stream, bar, 1, 28, 28, out, &dx, &dy);
    ck_assert (dx == 0 && dy == 0);
    double m, a = orientation (out, 28, 28, &m) * 180.0 / G_PI;
    ck_assert_msg (fabs (a) <= 20.5, "stream %" G_GUINT64_FORMAT
        ": turned by %g degrees", stream, a);
    ck_assert_msg (fabs (m - m0) < 1e-2 * m0, "mass %g, was %g", m, m0);
    lo = MIN (lo, a);
    hi = MAX (hi, a);
    turned += fabs (a) > 1.0;
    cbir_train_corrupt (&s, 42, stream, bar, 1, 28, 28, again, NULL, NULL);
    ck_assert (memcmp (out, again, sizeof out) == 0);
  }
  ck_assert_msg (lo < -17 && hi > 17, "angles seen: [%g, %g]", lo, hi);
  ck_assert_uint_gt (turned, 250);
  /* another seed, other angles */
  cbir_train_corrupt (&s, 43, 0, bar, 1, 28, 28, again, NULL, NULL);
  cbir_train_corrupt (&s, 42, 0, bar, 1, 28, 28, out, NULL, NULL);
  ck_assert (memcmp (out, again, sizeof out) != 0);
  /* with a shift: the same offsets as without rotation, and the turned
   * bar's centre of mass moves by them */
  CbirTrainSettings s0 = s;
  s.shift = 3;
  s0.shift = 3;
  s0.rotate = 0;
  for (guint64 stream = 0; stream < 50; stream++) {
    int dx, dy, dx0, dy0;
    cbir_train_corrupt (&s, 7, stream, bar, 1, 28, 28, out, &dx, &dy);
    cbir_train_corrupt (&s0, 7, stream, bar, 1, 28, 28, again, &dx0, &dy0);
    ck_assert (dx == dx0 && dy == dy0);
    double cx = 0, cy = 0, m = 0;
    for (guint y = 0; y < 28; y++)
      for (guint x = 0; x < 28; x++) {
        m += out[y * 28 + x];
        cx += out[y * 28 + x] * x;
        cy += out[y * 28 + x] * y;
      }
    ck_assert (fabs (cx / m - (13.5 + dx)) < 0.05);
    ck_assert (fabs (cy / m - (13.5 + dy)) < 0.05);
  }
}
END_TEST

/* Thickness jitter: a share t, uniform in [-thickness, thickness], of the
 * way to the 3x3 dilation or erosion; reproducible; 0 changes nothing;
 * validation never sees it. */
START_TEST (test_corrupt_thickness)
{
  float dot[784] = { 0 }, out[784], again[784];
  dot[14 * 28 + 14] = 1.0f;
  dot[0] = 0.5f;                /* the window is clipped at the corner */
  CbirTrainSettings s;
  memset (&s, 0, sizeof s);
  s.noise = CBIR_NOISE_NONE;
  cbir_train_corrupt (&s, 42, 3, dot, 1, 28, 28, out, NULL, NULL);
  ck_assert (memcmp (out, dot, sizeof out) == 0);
  s.thickness = 0.8;
  guint thicker = 0, thinner = 0;
  for (guint64 stream = 0; stream < 200; stream++) {
    cbir_train_corrupt (&s, 42, stream, dot, 1, 28, 28, out, NULL, NULL);
    cbir_train_corrupt (&s, 42, stream, dot, 1, 28, 28, again, NULL, NULL);
    ck_assert (memcmp (out, again, sizeof out) == 0);
    float c = out[14 * 28 + 14], n = out[13 * 28 + 15];
    if (n > 0) {
      /* dilated by t = n: the dot stays, its 8 neighbours get t */
      thicker++;
      ck_assert (c == 1.0f && n <= 0.8f + 1e-6f);
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++)
          ck_assert (fabsf (out[(14 + dy) * 28 + 14 + dx]
                  - (dx || dy ? n : 1.0f)) < 1e-6f);
      ck_assert (fabsf (out[1] - 0.5f * n) < 1e-6f
          && fabsf (out[29] - 0.5f * n) < 1e-6f && out[0] == 0.5f);
    } else {
      /* eroded by |t| = 1 - c: the isolated dot fades, nothing spreads */
      thinner++;
      ck_assert (c >= 0.2f - 1e-6f && c <= 1.0f);
      ck_assert (fabsf (out[0] - 0.5f * c) < 1e-6f);
    }
  }
  ck_assert_uint_gt (thicker, 70);
  ck_assert_uint_gt (thinner, 70);
  /* its own stream: the shift and the noise drawn are unchanged */
  s.shift = 2;
  s.noise = CBIR_NOISE_GAUSSIAN;
  s.noise_level = 0.2;
  CbirTrainSettings s0 = s;
  s0.thickness = 0;
  int dx, dy, dx0, dy0;
  cbir_train_corrupt (&s, 9, 5, dot, 1, 28, 28, out, &dx, &dy);
  cbir_train_corrupt (&s0, 9, 5, dot, 1, 28, 28, again, &dx0, &dy0);
  ck_assert (dx == dx0 && dy == dy0);
  ck_assert (memcmp (out, again, sizeof out) != 0);
}
END_TEST

/* Training with rotation jitter or a cosine learning-rate schedule:
 * reproducible, different from without, recorded, resumed bit-identically;
 * validation (no jitter) unaffected. */
START_TEST (test_rotate_schedule_training)
{
  g_autoptr (CbirModel) plain = jitter_model (5, 1, 0, CBIR_LR_CONSTANT);
  g_autoptr (CbirModel) rot = jitter_model (5, 1, 15, CBIR_LR_CONSTANT);
  g_autoptr (CbirModel) rot2 = jitter_model (5, 1, 15, CBIR_LR_CONSTANT);
  g_autoptr (CbirModel) cos = jitter_model (5, 1, 0, CBIR_LR_COSINE);
  g_autoptr (CbirTrainer) tp = trainer (plain, mnist, 11, 2, 0.25);
  g_autoptr (CbirTrainer) tr = trainer (rot, mnist, 11, 2, 0.25);
  g_autoptr (CbirTrainer) tr2 = trainer (rot2, mnist, 11, 2, 0.25);
  g_autoptr (CbirTrainer) tc = trainer (cos, mnist, 11, 2, 0.25);
  ck_assert (cbir_trainer_evaluate (tp, TRUE) ==
      cbir_trainer_evaluate (tr, TRUE));
  run (tp, 2);
  run (tr, 2);
  run (tr2, 2);
  run (tc, 2);
  assert_same_run (tr, tr2, 2);
  ck_assert (!params_equal (plain, rot));
  ck_assert (!params_equal (plain, cos));
  /* the first epoch of a cosine run over 2 epochs already differs (the
   * rate falls from the first step on) but it learns like the plain run */
  const double *lp = cbir_trainer_get_train_losses (tp);
  const double *lc = cbir_trainer_get_train_losses (tc);
  ck_assert (lp[0] != lc[0]);
  ck_assert (lc[1] < lc[0]);
  ck_assert (strstr (cbir_model_get_arch_json (rot), "\"rotate\":15") != NULL);
  ck_assert (strstr (cbir_model_get_training_info (rot), "\"rotate\":15")
      != NULL);
  ck_assert (strstr (cbir_model_get_arch_json (plain), "rotate") == NULL);
  ck_assert (strstr (cbir_model_get_arch_json (cos),
          "\"lr_schedule\":\"cosine\"") != NULL);
  ck_assert (strstr (cbir_model_get_arch_json (plain), "lr_schedule") ==
      NULL);
  /* both resume bit-identically after an interruption (the schedule is a
   * function of the step and of the run's epochs) */
  CbirModel *want[] = { rot, cos };
  for (guint i = 0; i < G_N_ELEMENTS (want); i++) {
    g_autofree char *ck = g_build_filename (tmpdir, "rk.safetensors", NULL);
    const CbirTrainSettings *ws = cbir_model_get_train_settings (want[i]);
    g_autoptr (CbirModel) d = jitter_model (5, 1, ws->rotate,
        ws->lr_schedule);
    run_interrupted (d, 11, 2, ck);
    g_autoptr (CbirTrainer) t = resume_from (ck, 0);
    ck_assert_uint_eq (cbir_trainer_get_epoch (t), 1);
    ck_assert (cbir_model_get_train_settings (cbir_trainer_get_model
            (t))->lr_schedule == ws->lr_schedule);
    run (t, 2);
    ck_assert_msg (params_equal (cbir_trainer_get_model (t), want[i]),
        "resumed %s run differs", i ? "cosine" : "rotated");
  }
}
END_TEST

/* The consistency term's W / T against its definition and its gradient
 * against central differences (double sums over float codes). */
START_TEST (test_view_spread)
{
  enum { N = 5, DIM = 4 };
  float z[2 * N * DIM], g[2 * N * DIM], g0[2 * N * DIM];
  guint64 s = 77;
  for (guint i = 0; i < 2 * N * DIM; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    z[i] = (float) ((s >> 40) / 16777216.0 * 2.0 - 1.0);
  }
  /* by hand: W = 1/2 sum |a_i - b_i|^2, T = sum |z - mean|^2 */
  double mean[DIM] = { 0 }, w = 0, tot = 0;
  for (guint r = 0; r < 2 * N; r++)
    for (guint k = 0; k < DIM; k++)
      mean[k] += z[r * DIM + k] / (2.0 * N);
  for (guint r = 0; r < 2 * N; r++)
    for (guint k = 0; k < DIM; k++)
      tot += (z[r * DIM + k] - mean[k]) * (z[r * DIM + k] - mean[k]);
  for (guint i = 0; i < N; i++)
    for (guint k = 0; k < DIM; k++) {
      double d = z[i * DIM + k] - z[(N + i) * DIM + k];
      w += d * d / 2;
    }
  double r0 = cbir_view_spread_eval (z, N, DIM, g, 3.0f);
  ck_assert_msg (fabs (r0 - w / tot) < 1e-12, "%g vs %g", r0, w / tot);
  ck_assert (r0 > 0 && r0 <= 1);
  for (guint i = 0; i < 2 * N * DIM; i++) {
    const float eps = 1e-3f, save = z[i];
    z[i] = save + eps;
    double lp = cbir_view_spread_eval (z, N, DIM, NULL, 0);
    z[i] = save - eps;
    double lm = cbir_view_spread_eval (z, N, DIM, NULL, 0);
    z[i] = save;
    double num = 3.0 * (lp - lm) / ((double) (save + eps) - (save - eps));
    ck_assert_msg (fabs (g[i] - num) <= 1e-4 + 1e-3 * fabs (num),
        "grad[%u] %g vs numeric %g", i, g[i], num);
  }
  /* scale-free: shrinking or moving the codes changes nothing */
  float z2[2 * N * DIM];
  for (guint i = 0; i < 2 * N * DIM; i++)
    z2[i] = 0.25f * z[i] + 1.0f;
  ck_assert (fabs (cbir_view_spread_eval (z2, N, DIM, NULL, 0) - r0) < 1e-5);
  /* identical views: 0, and nothing to pull; all codes equal: 0, no NaN */
  memcpy (z + N * DIM, z, N * DIM * sizeof (float));
  ck_assert (cbir_view_spread_eval (z, N, DIM, g0, 1.0f) == 0);
  for (guint i = 0; i < 2 * N * DIM; i++)
    ck_assert (g0[i] == 0);
  for (guint i = 0; i < 2 * N * DIM; i++)
    z[i] = 0.5f;
  ck_assert (cbir_view_spread_eval (z, N, DIM, g0, 1.0f) == 0);
  for (guint i = 0; i < 2 * N * DIM; i++)
    ck_assert (g0[i] == 0);
}
END_TEST

static gboolean
keep_view_spread (const CbirTrainProgress *p, gpointer user_data)
{
  if (p->epoch_end)
    *(double *) user_data = p->view_spread;
  return TRUE;
}

/* Trains m for `epochs` (seed 11, 2 threads, a quarter held out); returns
 * the last epoch's view spread (NAN without a consistency term). */
static double
run_keeping_spread (CbirModel *m, guint epochs)
{
  double spread = 0;
  CbirTrainOptions o;
  train_options (&o, 11, 2, 0.25);
  o.progress = keep_view_spread;
  o.user_data = &spread;
  g_autoptr (CbirTrainer) t = trainer_with (m, mnist, &o);
  run (t, epochs);
  return spread;
}

/* small_model trained 3 epochs with the consistency term of weight c;
 * returns the last epoch's view spread (W / T). */
static double
consistency_run (double c, CbirModel **out)
{
  CbirModel *m = small_model (5, NULL, NULL);
  CbirTrainSettings s = *cbir_model_get_train_settings (m);
  s.consistency = c;
  s.shift = 2;
  s.rotate = 15;
  GError *err = NULL;
  ck_assert_msg (cbir_model_set_train_settings (m, &s, &err), "%s",
      err ? err->message : "");
  *out = m;
  return run_keeping_spread (m, 3);
}

/* The consistency term pulls the codes of two views of one image together
 * (a wrong sign or a lost gradient would not), reproducibly; it is
 * recorded in the training block; a code layer the term cannot reach is
 * refused by name. */
START_TEST (test_consistency_training)
{
  g_autoptr (CbirModel) weak = NULL, strong = NULL, strong2 = NULL;
  double sw = consistency_run (1e-6, &weak);
  double ss = consistency_run (5, &strong);
  double ss2 = consistency_run (5, &strong2);
  ck_assert_msg (isfinite (sw) && isfinite (ss), "%g %g", sw, ss);
  ck_assert_msg (ss < 0.8 * sw, "view spread with weight 5: %g, with 1e-6: "
      "%g", ss, sw);
  ck_assert (ss == ss2 && params_equal (strong, strong2));
  ck_assert (strstr (cbir_model_get_arch_json (strong),
          "\"consistency\":5") != NULL);
  g_autoptr (CbirModel) plain = small_model (5, NULL, NULL);
  ck_assert (strstr (cbir_model_get_arch_json (plain), "consistency") ==
      NULL);
  /* without the term the spread is not computed */
  ck_assert (isnan (run_keeping_spread (plain, 1)));
  /* the code is the fused ReLU (a view): refused */
  g_autofree char *json = g_strdup (small_arch);
  char *cl = strstr (json, "\"code_layer\": 5");
  ck_assert (cl != NULL);
  cl[strlen ("\"code_layer\": ")] = '4';
  GError *err = NULL;
  g_autoptr (CbirModel) v = cbir_model_new_from_json (json, "v", &err);
  ck_assert_msg (v != NULL, "%s", err ? err->message : "");
  CbirTrainSettings s = *cbir_model_get_train_settings (v);
  s.consistency = 1;
  ck_assert (cbir_model_set_train_settings (v, &s, &err));
  CbirTrainOptions o;
  train_options (&o, 11, 2, 0.25);
  ck_assert (cbir_trainer_new (v, mnist, &o, &err) == NULL);
  ck_assert_msg (strstr (err->message, "consistency") != NULL
      && strstr (err->message, "code layer (4, relu)") != NULL, "%s",
      err->message);
  g_clear_error (&err);
  s.consistency = 101;
  ck_assert (!cbir_model_set_train_settings (v, &s, &err));
  ck_assert (strstr (err->message, "consistency must be in [0, 100]"));
  g_clear_error (&err);
}
END_TEST

/* small_arch with one more top-level member (e.g. "\"code_normalise\":
 * \"l2\""), weights from seed. */
static CbirModel *
small_model_with (const char *member, guint64 seed)
{
  GError *err = NULL;
  g_autofree char *json = g_strdup_printf ("{%s, %s", member, small_arch + 1);
  CbirModel *m = cbir_model_new_from_json (json, "small+", &err);
  ck_assert_msg (m != NULL, "%s", err ? err->message : "");
  cbir_net_init_params (cbir_model_get_net (m), seed);
  return m;
}

/* An input gamma: the clean target (and the noisy input before noise) live
 * in the gamma-mapped [0,1] space, the collapse references follow it, and
 * training learns. */
START_TEST (test_gamma_training)
{
  g_autoptr (CbirModel) m = small_model_with ("\"normalisation\": "
      "{\"gamma\": 0.5}", 3);
  g_autoptr (CbirModel) p = small_model (3, NULL, NULL);
  g_autoptr (CbirTrainer) t = trainer (m, mnist, 5, 2, 0.25);
  g_autoptr (CbirTrainer) tp = trainer (p, mnist, 5, 2, 0.25);
  float n1[2 * 784], r1[2 * 784], k1[2 * 784];
  float n2[2 * 784], r2[2 * 784], k2[2 * 784];
  ck_assert (cbir_trainer_sample (t, 2, n1, r1, k1, NULL));
  ck_assert (cbir_trainer_sample (tp, 2, n2, r2, k2, NULL));
  guint brighter = 0;
  for (guint i = 0; i < 2 * 784; i++) {
    ck_assert_float_eq_tol (k1[i], sqrtf (k2[i]), 1e-6f);
    brighter += k2[i] > 0.01f && k2[i] < 0.99f;
  }
  ck_assert (brighter > 10);    /* the data have grey pixels */
  /* the mean-pixel reference is the mean of sqrt(pixel), above the plain one */
  ck_assert (cbir_trainer_get_mean_loss (t, FALSE) !=
      cbir_trainer_get_mean_loss (tp, FALSE));
  double before = cbir_trainer_evaluate (t, TRUE);
  run (t, 10);
  const double *vl = cbir_trainer_get_val_losses (t);
  ck_assert_msg (vl[9] < before, "val loss %g -> %g", before, vl[9]);
  ck_assert (!cbir_trainer_get_collapsed (t));
}
END_TEST

/* A centre-l2 model leaves training with the code mean of its training
 * images fitted for its final weights. */
START_TEST (test_centre_training)
{
  GError *err = NULL;
  const char *norms[] = { "centre-l2", "whiten-l2" };
  for (guint k = 0; k < G_N_ELEMENTS (norms); k++) {
    g_autofree char *member = g_strdup_printf ("\"code_normalise\": \"%s\"",
        norms[k]);
    g_autoptr (CbirModel) m = small_model_with (member, 3);
    g_autoptr (CbirTrainer) t = trainer (m, mnist, 5, 2, 0.25);
    run (t, 2);
    const guint dim = cbir_model_get_code_dim (m);
    g_autofree float *got = g_memdup2 (cbir_model_get_code_mean (m),
        dim * sizeof (float));
    gboolean nonzero = FALSE;
    for (guint j = 0; j < dim; j++)
      nonzero |= got[j] != 0.0f;
    ck_assert (nonzero);
    /* whiten-l2: W fitted too (no longer the identity) */
    const float *w = cbir_model_get_code_whiten (m);
    g_autofree float *gotw = w ? g_memdup2 (w, dim * dim * sizeof (float))
        : NULL;
    ck_assert ((w != NULL) == (k == 1));
    gboolean identity = TRUE;
    for (guint j = 0; w && j < dim * dim; j++)
      identity &= w[j] == (j % (dim + 1) == 0 ? 1.0f : 0.0f);
    ck_assert (!w || !identity);
    /* what the trainer fitted is the fit on the training data */
    g_autofree char *fp = g_strdup (cbir_model_get_fingerprint (m));
    ck_assert (cbir_model_fit_code_transform (m, mnist->images, mnist->n,
            &err));
    ck_assert (memcmp (got, cbir_model_get_code_mean (m),
            dim * sizeof (float)) == 0);
    ck_assert (!w || memcmp (gotw, cbir_model_get_code_whiten (m),
            dim * dim * sizeof (float)) == 0);
    ck_assert_str_eq (fp, cbir_model_get_fingerprint (m));
  }
}
END_TEST

static Suite *
train_suite (void)
{
  Suite *s = suite_create ("train");
  TCase *tc = tcase_create ("train");
  tcase_set_timeout (tc, 120);
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_losses);
  tcase_add_test (tc, test_learns);
  tcase_add_test (tc, test_optimizers);
  tcase_add_test (tc, test_reproducible);
  tcase_add_test (tc, test_resume);
  tcase_add_test (tc, test_val_file);
  tcase_add_test (tc, test_paired_inputs);
  tcase_add_test (tc, test_collapse);
  tcase_add_test (tc, test_bad_input);
  tcase_add_test (tc, test_corrupt);
  tcase_add_test (tc, test_shift_training);
  tcase_add_test (tc, test_corrupt_rotate);
  tcase_add_test (tc, test_rotate_schedule_training);
  tcase_add_test (tc, test_corrupt_thickness);
  tcase_add_test (tc, test_view_spread);
  tcase_add_test (tc, test_consistency_training);
  tcase_add_test (tc, test_gamma_training);
  tcase_add_test (tc, test_centre_training);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (train_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

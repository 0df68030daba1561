/* cbir-train: trains a denoising autoencoder on an IDX image file and
 * writes the model (safetensors), a loss-curve PNG and a reconstruction
 * PNG. */
#include "config.h"

#include <cbir/idx.h>
#include <cbir/model.h>
#include <cbir/png.h>
#include <cbir/train.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CBIR_TOOL_NAME "cbir-train"
#include "tool-common.h"

static char *opt_data, *opt_labels, *opt_preset, *opt_arch, *opt_out;
static char *opt_optimizer, *opt_loss, *opt_noise, *opt_val_data;
static char *opt_inputs;
static char *opt_checkpoint, *opt_resume, *opt_png_prefix;
/* "not given" (not -1: a typed -1 must be refused, not mean the default) */
#define UNSET_INT G_MININT
#define UNSET_DOUBLE (-G_MAXDOUBLE)
static gint opt_epochs = UNSET_INT, opt_batch = UNSET_INT, opt_threads = 0;
static gint opt_checkpoint_every = 0, opt_limit = 0, opt_bench_batches = 20;
static gint opt_shift = UNSET_INT;
static gdouble opt_lr = UNSET_DOUBLE, opt_momentum = UNSET_DOUBLE;
static gdouble opt_rotate = UNSET_DOUBLE;
static gdouble opt_consistency = UNSET_DOUBLE;
static gdouble opt_thickness = UNSET_DOUBLE;
static gboolean opt_deskew;
static gdouble opt_noise_level = UNSET_DOUBLE, opt_val_split = UNSET_DOUBLE;
static gint64 opt_seed = G_MININT64;
static gboolean opt_list, opt_quiet, opt_bench;
static char *opt_show_preset, *opt_lr_schedule;

static GOptionEntry entries[] = {
  {"data", 'd', 0, G_OPTION_ARG_FILENAME, &opt_data,
      "Training images (IDX idx3-ubyte, raw or gzip)", "FILE"},
  {"labels", 0, 0, G_OPTION_ARG_FILENAME, &opt_labels,
      "Labels (IDX idx1-ubyte; checked for consistency, not used)", "FILE"},
  {"preset", 'p', 0, G_OPTION_ARG_STRING, &opt_preset,
      "Built-in architecture (see --list-presets; default: default)", "NAME"},
  {"arch", 'a', 0, G_OPTION_ARG_FILENAME, &opt_arch,
      "Architecture JSON file instead of a preset", "FILE"},
  {"out", 'o', 0, G_OPTION_ARG_FILENAME, &opt_out,
      "Model file to write (safetensors)", "FILE"},
  {"epochs", 'e', 0, G_OPTION_ARG_INT, &opt_epochs,
      "Epochs (total, also when resuming)", "N"},
  {"batch-size", 'b', 0, G_OPTION_ARG_INT, &opt_batch, "Mini-batch size",
      "N"},
  {"optimizer", 0, 0, G_OPTION_ARG_STRING, &opt_optimizer,
      "adam, adadelta or sgd", "NAME"},
  {"lr", 0, 0, G_OPTION_ARG_DOUBLE, &opt_lr, "Learning rate", "X"},
  {"lr-schedule", 0, 0, G_OPTION_ARG_STRING, &opt_lr_schedule,
      "constant, or cosine (decays the learning rate to ~0 over --epochs)",
      "NAME"},
  {"momentum", 0, 0, G_OPTION_ARG_DOUBLE, &opt_momentum,
      "SGD momentum (default 0.9)", "X"},
  {"loss", 0, 0, G_OPTION_ARG_STRING, &opt_loss, "bce or mse", "NAME"},
  {"noise", 0, 0, G_OPTION_ARG_STRING, &opt_noise,
      "gaussian, salt-and-pepper or none", "KIND"},
  {"noise-level", 0, 0, G_OPTION_ARG_DOUBLE, &opt_noise_level,
      "Gaussian sigma or salt-and-pepper density, 0..1", "X"},
  {"shift", 0, 0, G_OPTION_ARG_INT, &opt_shift,
      "Translation jitter of the noisy input: random integer shift of up to "
      "N pixels in x and y (target stays unshifted; 0: none)", "N"},
  {"rotate", 0, 0, G_OPTION_ARG_DOUBLE, &opt_rotate,
      "Rotation jitter of the noisy input: random angle of up to X degrees "
      "either way (target stays upright; 0: none)", "X"},
  {"thickness", 0, 0, G_OPTION_ARG_DOUBLE, &opt_thickness,
      "Stroke-thickness jitter of the noisy input: each image moves a "
      "random share of up to X (0..1) of the way to its 3x3 dilation "
      "(thicker) or erosion (thinner); target unchanged; 0: none", "X"},
  {"deskew", 0, 0, G_OPTION_ARG_NONE, &opt_deskew,
      "Shear every input upright (second moments) before the encoder, in "
      "training and in every later encoding: the model's normalisation "
      "records it", NULL},
  {"consistency", 0, 0, G_OPTION_ARG_DOUBLE, &opt_consistency,
      "Weight of the view-consistency term: each image is corrupted twice "
      "and the share of the codes' spread between its two views is added "
      "to the loss, times X (0: none; a step then costs about twice as "
      "much)", "X"},
  {"inputs", 0, 0, G_OPTION_ARG_FILENAME, &opt_inputs,
      "Paired inputs (IDX, as many images as --data, in the same order): "
      "the corruption of training image i starts from image i of this file "
      "instead of from the image itself, the target staying the clean "
      "image; e.g. each image as the simulated camera shows it "
      "(cbir-simcam --sequential --keep-missed --format idx), so the model "
      "learns to undo the camera. The held-out split is paired too",
      "FILE"},
  {"val-split", 0, 0, G_OPTION_ARG_DOUBLE, &opt_val_split,
      "Fraction of the data held out for validation (default 0.1)", "F"},
  {"val-data", 0, 0, G_OPTION_ARG_FILENAME, &opt_val_data,
      "Separate validation images (IDX) instead of a split", "FILE"},
  {"seed", 's', 0, G_OPTION_ARG_INT64, &opt_seed,
      "Random seed (default 42)", "N"},
  {"threads", 't', 0, G_OPTION_ARG_INT, &opt_threads,
      "Worker threads (default: all cores)", "N"},
  {"checkpoint-every", 0, 0, G_OPTION_ARG_INT, &opt_checkpoint_every,
      "Write a checkpoint every N epochs", "N"},
  {"checkpoint", 0, 0, G_OPTION_ARG_FILENAME, &opt_checkpoint,
      "Checkpoint file (default: <out>-checkpoint.safetensors)", "FILE"},
  {"resume", 'r', 0, G_OPTION_ARG_FILENAME, &opt_resume,
      "Resume from a checkpoint", "FILE"},
  {"limit", 'n', 0, G_OPTION_ARG_INT, &opt_limit,
      "Use only the first N images", "N"},
  {"png-prefix", 0, 0, G_OPTION_ARG_FILENAME, &opt_png_prefix,
      "Write <prefix>-loss.png and <prefix>-recon.png (default: from --out)",
      "PREFIX"},
  {"list-presets", 0, 0, G_OPTION_ARG_NONE, &opt_list,
      "List the built-in architectures and exit", NULL},
  {"show-preset", 0, 0, G_OPTION_ARG_STRING, &opt_show_preset,
      "Print a preset's architecture JSON (a starting point for --arch) "
      "and exit", "NAME"},
  {"quiet", 'q', 0, G_OPTION_ARG_NONE, &opt_quiet, "No progress output",
      NULL},
  {"benchmark", 0, 0, G_OPTION_ARG_NONE, &opt_bench,
      "Print timing figures as JSON (training images/s, encode latency) "
      "instead of training", NULL},
  {"bench-batches", 0, 0, G_OPTION_ARG_INT, &opt_bench_batches,
      "Timed training batches for --benchmark (default 20)", "N"},
  {NULL}
};

static char *
strip_suffix (const char *path)
{
  if (g_str_has_suffix (path, ".safetensors"))
    return g_strndup (path, strlen (path) - strlen (".safetensors"));
  return g_strdup (path);
}

static gboolean
check_writable_dir (const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR) || access (dir, W_OK) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO,
        "%s: cannot write there (directory %s missing or not writable)",
        path, dir);
    return FALSE;
  }
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: is a directory",
        path);
    return FALSE;
  }
  return TRUE;
}

static char *
format_duration (double s)
{
  if (!isfinite (s) || s < 0)
    return g_strdup ("?");
  guint64 t = (guint64) (s + 0.5);
  if (t >= 3600)
    return g_strdup_printf ("%" G_GUINT64_FORMAT "h%02um", t / 3600,
        (guint) (t % 3600 / 60));
  if (t >= 60)
    return g_strdup_printf ("%um%02us", (guint) (t / 60), (guint) (t % 60));
  return g_strdup_printf ("%us", (guint) t);
}

typedef struct {
  gboolean tty;
  gint64 last_print;
  gboolean line_open;
  gboolean warned_collapse;
  const char *loss_name;
  double zeros;
} ProgressCtx;

static gboolean
on_progress (const CbirTrainProgress *p, gpointer user_data)
{
  ProgressCtx *c = user_data;
  if (opt_quiet)
    return TRUE;
  /* with a consistency term: the share of the codes' spread between two
   * views of one image */
  char spread[48] = "";
  if (p->epoch_end && isfinite (p->view_spread))
    g_snprintf (spread, sizeof spread, " views %.4f", p->view_spread);
  if (c->tty) {
    gint64 now = g_get_monotonic_time ();
    if (!p->epoch_end && now - c->last_print < 200000)
      return TRUE;
    c->last_print = now;
    g_autofree char *eta = format_duration (p->eta_s);
    if (!p->epoch_end) {
      fprintf (stderr, "\r\033[Kepoch %u/%u  batch %u/%u  %.0f img/s  "
          "%s %.4f  ETA %s", p->epoch, p->n_epochs, p->batch, p->n_batches,
          p->images_per_s, c->loss_name, p->loss, eta);
      c->line_open = TRUE;
    } else {
      fprintf (stderr, "\r\033[Kepoch %u/%u  %s %.4f  val %.4f  (all zeros "
          "%.4f)%s  %.0f img/s  ETA %s\n", p->epoch, p->n_epochs, c->loss_name,
          p->loss, p->val_loss, c->zeros, spread, p->images_per_s, eta);
      c->line_open = FALSE;
    }
    fflush (stderr);
  } else if (p->epoch_end) {
    printf ("epoch %u/%u: %s %.6f val %.6f (all zeros %.6f)%s %.0f img/s "
        "%.1f s\n", p->epoch, p->n_epochs, c->loss_name, p->loss, p->val_loss,
        c->zeros, spread, p->images_per_s, p->elapsed_s);
    fflush (stdout);
  }
  if (p->epoch_end && p->collapsed && !c->warned_collapse) {
    fprintf (stderr, "cbir-train: warning: epoch %u: the loss %.4f is within "
        "1%% of predicting a constant image: the model has collapsed (try "
        "another loss, a lower learning rate or another seed)\n", p->epoch,
        p->loss);
    c->warned_collapse = TRUE;
  }
  return TRUE;
}

static gboolean
write_pngs (CbirTrainer *t, const char *prefix, GError **error)
{
  CbirModel *model = cbir_trainer_get_model (t);
  guint e = cbir_trainer_get_epoch (t);
  g_autofree float *tr = g_new (float, MAX (e, 1));
  g_autofree float *va = g_new (float, MAX (e, 1));
  const double *trd = cbir_trainer_get_train_losses (t);
  const double *vad = cbir_trainer_get_val_losses (t);
  gboolean has_val = cbir_trainer_get_n_val (t) > 0;
  double maxv = 0;
  for (guint i = 0; i < e; i++) {
    tr[i] = (float) trd[i];
    va[i] = (float) vad[i];
    maxv = MAX (maxv, trd[i]);
    if (has_val)
      maxv = MAX (maxv, vad[i]);
  }
  const char *loss = cbir_loss_to_string (cbir_model_get_train_settings
      (model)->loss);
  double zeros = cbir_trainer_get_zeros_loss (t, has_val);
  double meanl = cbir_trainer_get_mean_loss (t, has_val);
  g_autofree char *zname = NULL, *mname = NULL;
  const char *hnames[2];
  double hvals[2];
  guint nh = 0;
  /* The all-zeros BCE is about 16x the mean pixel: draw it only where it
   * does not squash the curves, and name its value in the legend. */
  if (zeros <= 3 * maxv) {
    zname = g_strdup_printf ("all zeros (%.4f)", zeros);
    hnames[nh] = zname;
    hvals[nh++] = zeros;
  } else {
    mname = g_strdup_printf ("mean pixel (%.4f; all zeros %.3f off the "
        "chart)", meanl, zeros);
    hnames[nh] = mname;
    hvals[nh++] = meanl;
  }
  g_autofree char *title = g_strdup_printf ("%s: %s loss per epoch",
      cbir_model_get_name (model), loss);
  g_autofree char *ylabel = g_strdup_printf ("%s loss", loss);
  const char *names[2] = { "train", "validation" };
  const float *series[2] = { tr, va };
  CbirPngChart chart = { 0 };
  chart.title = title;
  chart.x_label = "epoch";
  chart.y_label = ylabel;
  chart.n_series = has_val ? 2 : 1;
  chart.series_names = names;
  chart.series_values = series;
  chart.n_points = e;
  chart.x_start = 1;
  chart.x_step = 1;
  chart.n_hlines = nh;
  chart.hline_names = hnames;
  chart.hline_values = hvals;
  g_autofree char *loss_png = g_strdup_printf ("%s-loss.png", prefix);
  g_autofree char *recon_png = g_strdup_printf ("%s-recon.png", prefix);
  if (e > 0 && !cbir_png_write_chart (loss_png, &chart, error))
    return FALSE;

  guint w, h;
  cbir_model_get_input_size (model, &w, &h);
  gsize sz = (gsize) w * h;
  guint avail = has_val ? cbir_trainer_get_n_val (t) :
      cbir_trainer_get_n_train (t);
  guint n = MIN (10, avail);
  g_autofree float *noisy = g_new (float, n * sz);
  g_autofree float *recon = g_new (float, n * sz);
  g_autofree float *clean = g_new (float, n * sz);
  if (!cbir_trainer_sample (t, n, noisy, recon, clean, error))
    return FALSE;
  g_autofree guint8 *grid = g_new (guint8, 3 * n * sz);
  const float *rows[3] = { noisy, recon, clean };
  /* the trainer works on (pixel/255)^gamma: show pixels again */
  const double g = cbir_model_get_input_gamma (cbir_trainer_get_model (t));
  for (guint r = 0; r < 3; r++)
    for (gsize k = 0; k < n * sz; k++) {
      float v = rows[r][k];
      v = CLAMP (v, 0.0f, 1.0f);
      if (g != 1.0)
        v = powf (v, (float) (1.0 / g));
      grid[r * n * sz + k] = (guint8) lrintf (v * 255.0f);
    }
  const char *titles[] = { "noisy input", "reconstruction", "clean target",
    NULL
  };
  return cbir_png_write_grid (recon_png, grid, 3 * n, w, h, n, 4, titles,
      error);
}

/* The training settings in one line, as --list-presets and the training
 * header show them: loss, optimiser, corruption, batch. */
static char *
settings_note (const CbirTrainSettings *s)
{
  GString *str = g_string_new (NULL);
  g_string_append_printf (str, "%s, %s lr %g%s, noise %s %g, shift %u, "
      "rotate %g", cbir_loss_to_string (s->loss),
      cbir_optimizer_to_string (s->optimizer), s->lr,
      s->lr_schedule == CBIR_LR_COSINE ? " (cosine)" : "",
      cbir_noise_kind_to_string (s->noise), s->noise_level, s->shift,
      s->rotate);
  if (s->thickness > 0)
    g_string_append_printf (str, ", thickness %g", s->thickness);
  if (s->consistency > 0)
    g_string_append_printf (str, ", consistency %g", s->consistency);
  g_string_append_printf (str, ", batch %u", s->batch_size);
  return g_string_free (str, FALSE);
}

/* How --list-presets describes a code normalisation. */
static const char *
code_normalise_note (CbirCodeNormalise n)
{
  switch (n) {
    case CBIR_CODE_NORMALISE_NONE:
      return "";
    case CBIR_CODE_NORMALISE_L2:
      return " (L2-normalised)";
    case CBIR_CODE_NORMALISE_CENTRE_L2:
      return " (centred, L2-normalised)";
    case CBIR_CODE_NORMALISE_WHITEN_L2:
      return " (centred, partly whitened, L2-normalised)";
  }
  return "";
}

static int
list_presets (void)
{
  for (const char *const *p = cbir_model_list_presets (); *p; p++) {
    g_autoptr (GError) err = NULL;
    g_autoptr (CbirModel) m = cbir_model_new_preset (*p, &err);
    if (!m) {
      printf ("%-14s (cannot be built: %s)\n", *p, err->message);
      continue;
    }
    const CbirTrainSettings *s = cbir_model_get_train_settings (m);
    g_autofree char *how = settings_note (s);
    printf ("%-14s %u-%s code%s; %s, %u epochs\n", *p,
        cbir_model_get_code_dim (m),
        cbir_model_get_code_type (m) == CBIR_CODE_BITS ? "bit" : "float",
        code_normalise_note (cbir_model_get_code_normalise (m)), how,
        s->epochs);
  }
  return 0;
}

/* ---- --benchmark ---- */

typedef struct {
  guint warm;
  gint64 t_warm, t_end;
  guint images_after_warm;
} BenchCtx;

static gboolean
bench_progress (const CbirTrainProgress *p, gpointer user_data)
{
  BenchCtx *b = user_data;
  if (p->epoch_end)
    return TRUE;
  gint64 now = g_get_monotonic_time ();
  if (p->batch == b->warm) {
    b->t_warm = now;
    b->images_after_warm = p->images_done;
  }
  b->t_end = now;
  return TRUE;
}

static int
run_benchmark (CbirModel *model, CbirDataset *data, guint threads)
{
  g_autoptr (GError) err = NULL;
  const CbirTrainSettings *s = cbir_model_get_train_settings (model);
  guint bs = s->batch_size, warm = 3;
  guint n = bs * (warm + (guint) MAX (opt_bench_batches, 1));
  guint w, h;
  cbir_model_get_input_size (model, &w, &h);
  gsize sz = (gsize) w * h;
  g_autoptr (CbirDataset) ds = g_new0 (CbirDataset, 1);
  ds->n = n;
  ds->rows = h;
  ds->cols = w;
  ds->images = g_new (guint8, n * sz);
  for (guint i = 0; i < n; i++) {
    if (data && data->rows == h && data->cols == w)
      memcpy (ds->images + i * sz, data->images + (gsize) (i % data->n) * sz,
          sz);
    else
      for (gsize k = 0; k < sz; k++)
        ds->images[i * sz + k] = (guint8) ((i * 131 + k * 7919) % 256);
  }
  CbirTrainOptions o;
  cbir_train_options_init (&o);
  o.threads = threads;
  BenchCtx b = { warm, 0, 0, 0 };
  o.progress = bench_progress;
  o.user_data = &b;
  g_autoptr (CbirTrainer) t = cbir_trainer_new (model, ds, &o, &err);
  if (!t || !cbir_trainer_run (t, 1, &err))
    return fail ("%s", err->message);
  double train_ips = (n - b.images_after_warm) / ((b.t_end - b.t_warm) / 1e6);

  cbir_net_set_threads (cbir_model_get_net (model), threads);
  guint dim = cbir_model_get_code_dim (model);
  g_autofree float *codes = g_new (float, 256 * dim);
  /* batch 1 latency */
  guint reps = 2000;
  for (guint i = 0; i < 200; i++)
    cbir_model_encode_u8 (model, ds->images + (i % n) * sz, 1, codes, NULL);
  gint64 t0 = g_get_monotonic_time ();
  for (guint i = 0; i < reps; i++)
    cbir_model_encode_u8 (model, ds->images + (i % n) * sz, 1, codes, NULL);
  double b1_us = (g_get_monotonic_time () - t0) / (double) reps;
  /* batch 256 throughput */
  g_autofree guint8 *b256 = g_new (guint8, 256 * sz);
  for (guint i = 0; i < 256; i++)
    memcpy (b256 + i * sz, ds->images + (i % n) * sz, sz);
  cbir_model_encode_u8 (model, b256, 256, codes, NULL);
  guint reps256 = 20;
  t0 = g_get_monotonic_time ();
  for (guint i = 0; i < reps256; i++)
    cbir_model_encode_u8 (model, b256, 256, codes, NULL);
  double b256_ips = 256.0 * reps256 / ((g_get_monotonic_time () - t0) / 1e6);
  printf ("{\"model\": \"%s\", \"threads\": %u, \"batch_size\": %u, "
      "\"train_images_per_s\": %.1f, \"encode_b1_us\": %.1f, "
      "\"encode_b256_images_per_s\": %.1f}\n", cbir_model_get_name (model),
      threads, bs, train_ips, b1_us, b256_ips);
  return 0;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GOptionContext) ctx =
      g_option_context_new ("- train a denoising autoencoder for gst-cbir");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
      "Example: cbir-train --data data/mnist/gallery-images.idx3-ubyte "
      "--preset keras-dae --out keras-dae.safetensors\n");
  if (!g_option_context_parse (ctx, &argc, &argv, &err))
    return fail ("%s (see --help)", err->message);
  if (argc > 1)
    return fail ("unexpected argument '%s' (see --help)", argv[1]);
  if (opt_list)
    return list_presets ();
  if (opt_show_preset) {
    const char *json = cbir_model_get_preset_json (opt_show_preset);
    if (!json)
      return fail ("unknown preset '%s' (see --list-presets)",
          opt_show_preset);
    fputs (json, stdout);
    return 0;
  }

  /* argument checks, before any work */
  if (!opt_data)
    return fail ("--data is required (IDX images)");
  if (!opt_out && !opt_bench)
    return fail ("--out is required (model file to write)");
  if (opt_preset && opt_arch)
    return fail ("give --preset or --arch, not both");
  if (opt_resume && (opt_preset || opt_arch))
    return fail ("--resume takes the architecture from the checkpoint; drop "
        "--preset/--arch");
  if (opt_resume && (opt_batch != UNSET_INT || opt_optimizer
          || opt_lr != UNSET_DOUBLE || opt_lr_schedule || opt_momentum != UNSET_DOUBLE
          || opt_loss || opt_noise || opt_noise_level != UNSET_DOUBLE
          || opt_shift != UNSET_INT || opt_rotate != UNSET_DOUBLE || opt_consistency != UNSET_DOUBLE || opt_thickness != UNSET_DOUBLE
          || opt_deskew || opt_seed != G_MININT64 || opt_val_split != UNSET_DOUBLE))
    return fail ("--resume continues with the checkpoint's settings; only "
        "--epochs, --threads, --checkpoint-every and outputs may be given");
  if (opt_epochs != UNSET_INT && opt_epochs < 1)
    return fail ("--epochs must be at least 1");
  if (opt_batch != UNSET_INT && opt_batch < 1)
    return fail ("--batch-size must be at least 1");
  if (opt_threads < 0 || opt_threads > 256)
    return fail ("--threads must be in 1..256");
  if (opt_limit < 0)
    return fail ("--limit must be positive");
  if (opt_checkpoint_every < 0)
    return fail ("--checkpoint-every must be positive");
  if (opt_val_split != UNSET_DOUBLE && opt_val_data)
    return fail ("give --val-split or --val-data, not both");
  if (opt_val_split != UNSET_DOUBLE
      && !(opt_val_split >= 0 && opt_val_split <= 0.9))
    return fail ("--val-split must be in [0, 0.9]");
  if (opt_seed != G_MININT64 && opt_seed < 0)
    return fail ("--seed must be >= 0");
  if (opt_lr != UNSET_DOUBLE && !(opt_lr > 0))
    return fail ("--lr must be > 0");
  if (opt_noise_level != UNSET_DOUBLE
      && !(opt_noise_level >= 0 && opt_noise_level <= 1))
    return fail ("--noise-level must be in [0, 1]");
  if (opt_momentum != UNSET_DOUBLE
      && !(opt_momentum >= 0 && opt_momentum < 1))
    return fail ("--momentum must be in [0, 1)");

  g_autofree char *prefix = NULL, *ckpt = NULL;
  if (opt_out) {
    if (!check_writable_dir (opt_out, &err))
      return fail ("%s", err->message);
    g_autofree char *base = strip_suffix (opt_out);
    prefix = g_strdup (opt_png_prefix ? opt_png_prefix : base);
    g_autofree char *lp = g_strdup_printf ("%s-loss.png", prefix);
    if (!check_writable_dir (lp, &err))
      return fail ("%s", err->message);
    ckpt = opt_checkpoint ? g_strdup (opt_checkpoint) :
        g_strdup_printf ("%s-checkpoint.safetensors", base);
    if (opt_checkpoint_every > 0 && !check_writable_dir (ckpt, &err))
      return fail ("%s", err->message);
  }

  /* data */
  g_autoptr (CbirDataset) data = cbir_dataset_load (opt_data, opt_labels,
      &err);
  if (!data)
    return fail ("%s", err->message);
  g_autoptr (CbirDataset) inputs = NULL;
  if (opt_inputs) {
    inputs = cbir_dataset_load (opt_inputs, NULL, &err);
    if (!inputs)
      return fail ("%s", err->message);
    /* checked here as well as in cbir_trainer_new: --limit below cuts
     * both to the same count and would hide a mismatch */
    if (inputs->n != data->n)
      return fail ("%s holds %u images and %s %u: --inputs pairs image i "
          "of each", opt_inputs, inputs->n, opt_data, data->n);
  }
  if (opt_limit > 0 && (guint) opt_limit < data->n) {
    g_autofree guint *idx = g_new (guint, opt_limit);
    for (guint i = 0; i < (guint) opt_limit; i++)
      idx[i] = i;
    CbirDataset *sub = cbir_dataset_subset (data, idx, opt_limit);
    cbir_dataset_free (data);
    data = sub;
    if (inputs) {
      sub = cbir_dataset_subset (inputs, idx, opt_limit);
      cbir_dataset_free (inputs);
      inputs = sub;
    }
  }
  g_autoptr (CbirDataset) val = NULL;
  if (opt_val_data) {
    val = cbir_dataset_load (opt_val_data, NULL, &err);
    if (!val)
      return fail ("%s", err->message);
  }
  guint threads = opt_threads > 0 ? (guint) opt_threads :
      cbir_default_threads ();

  CbirTrainOptions o;
  cbir_train_options_init (&o);
  o.threads = threads;
  if (opt_seed >= 0)
    o.seed = (guint64) opt_seed;
  o.val_data = val;
  o.inputs = inputs;
  o.val_split = opt_val_data ? 0 : (opt_val_split >= 0 ? opt_val_split : 0.1);
  o.checkpoint_every = (guint) opt_checkpoint_every;
  o.checkpoint_path = ckpt;
  ProgressCtx pc = { 0 };
  pc.tty = isatty (fileno (stderr));
  o.progress = on_progress;
  o.user_data = &pc;

  g_autoptr (CbirModel) model = NULL;
  g_autoptr (CbirTrainer) t = NULL;
  if (opt_resume) {
    t = cbir_trainer_resume (opt_resume, data, &o, &err);
    if (!t)
      return fail ("%s", err->message);
  } else {
    if (opt_arch)
      model = cbir_model_new_from_arch_file (opt_arch, &err);
    else
      model = cbir_model_new_preset (opt_preset ? opt_preset : "default",
          &err);
    if (!model)
      return fail ("%s", err->message);
    CbirTrainSettings s = *cbir_model_get_train_settings (model);
    if (opt_optimizer) {
      CbirOptimizerKind k;
      if (!cbir_optimizer_from_string (opt_optimizer, &k))
        return fail ("unknown --optimizer '%s' (adam, adadelta, sgd)",
            opt_optimizer);
      if (k != s.optimizer)
        cbir_train_settings_set_optimizer_defaults (&s, k);
    }
    if (opt_loss && !cbir_loss_from_string (opt_loss, &s.loss))
      return fail ("unknown --loss '%s' (bce, mse)", opt_loss);
    if (opt_noise && !cbir_noise_kind_from_string (opt_noise, &s.noise))
      return fail ("unknown --noise '%s' (gaussian, salt-and-pepper, none)",
          opt_noise);
    if (opt_lr > 0)
      s.lr = opt_lr;
    if (opt_lr_schedule
        && !cbir_lr_schedule_from_string (opt_lr_schedule, &s.lr_schedule))
      return fail ("unknown --lr-schedule '%s' (constant, cosine)",
          opt_lr_schedule);
    if (opt_momentum >= 0)
      s.momentum = opt_momentum;
    if (opt_noise_level >= 0)
      s.noise_level = opt_noise_level;
    if (opt_batch > 0)
      s.batch_size = (guint) opt_batch;
    if (opt_epochs > 0)
      s.epochs = (guint) opt_epochs;
    if (opt_shift != UNSET_INT) {
      if (opt_shift < 0)
        return fail ("--shift must be >= 0, not %d", opt_shift);
      s.shift = (guint) opt_shift;
    }
    if (opt_rotate != UNSET_DOUBLE)
      s.rotate = opt_rotate;
    if (opt_consistency != UNSET_DOUBLE)
      s.consistency = opt_consistency;
    if (opt_thickness != UNSET_DOUBLE)
      s.thickness = opt_thickness;
    if (!cbir_model_set_train_settings (model, &s, &err))
      return fail ("%s", err->message);
    if (opt_deskew && !cbir_model_set_deskew (model, TRUE, &err))
      return fail ("%s", err->message);
    cbir_net_init_params (cbir_model_get_net (model), o.seed);
    cbir_model_update_fingerprint (model);
    if (opt_bench)
      return run_benchmark (model, data, threads);
    t = cbir_trainer_new (model, data, &o, &err);
    if (!t)
      return fail ("%s", err->message);
  }
  if (opt_bench)
    return fail ("--benchmark does not combine with --resume");

  CbirModel *m = cbir_trainer_get_model (t);
  const CbirTrainSettings *s = cbir_model_get_train_settings (m);
  guint epochs = opt_epochs > 0 ? (guint) opt_epochs : s->epochs;
  gboolean has_val = cbir_trainer_get_n_val (t) > 0;
  pc.loss_name = cbir_loss_to_string (s->loss);
  pc.zeros = cbir_trainer_get_zeros_loss (t, FALSE);
  if (!opt_quiet) {
    g_autofree char *how = settings_note (s);
    fprintf (pc.tty ? stderr : stdout, "training %s (%u-%s code%s) on %u "
        "images%s%s, validating on %u; %s, epochs %u%s, seed %"
        G_GUINT64_FORMAT ", %u threads\n", cbir_model_get_name (m),
        cbir_model_get_code_dim (m),
        cbir_code_type_to_string (cbir_model_get_code_type (m)),
        cbir_model_get_deskew (m) ? ", deskewed input" : "",
        cbir_trainer_get_n_train (t), opt_inputs ? " paired with " : "",
        opt_inputs ? opt_inputs : "", cbir_trainer_get_n_val (t), how,
        epochs, opt_resume ? " (resumed)" : "", o.seed, threads);
    fflush (stdout);
  }
  if (cbir_trainer_get_epoch (t) < epochs
      && !cbir_trainer_run (t, epochs, &err)) {
    if (pc.line_open)
      fputc ('\n', stderr);
    return fail ("%s", err->message);
  }
  if (!cbir_model_save (m, opt_out, &err))
    return fail ("%s", err->message);
  if (!write_pngs (t, prefix, &err))
    return fail ("%s", err->message);

  guint e = cbir_trainer_get_epoch (t);
  double tl = e ? cbir_trainer_get_train_losses (t)[e - 1] : NAN;
  double vl = e ? cbir_trainer_get_val_losses (t)[e - 1] : NAN;
  if (!opt_quiet) {
    printf ("final %s loss: train %.6f (all zeros %.6f)", pc.loss_name, tl,
        cbir_trainer_get_zeros_loss (t, FALSE));
    if (has_val)
      printf (", validation %.6f (all zeros %.6f)", vl,
          cbir_trainer_get_zeros_loss (t, TRUE));
    printf ("\nwrote %s (fingerprint %.16s), %s-loss.png, %s-recon.png\n",
        opt_out, cbir_model_get_fingerprint (m), prefix, prefix);
  }
  if (cbir_trainer_get_collapsed (t))
    fprintf (stderr, "cbir-train: warning: the model collapsed (final loss "
        "%.4f, all zeros %.4f, mean pixel %.4f)\n", tl,
        cbir_trainer_get_zeros_loss (t, FALSE),
        cbir_trainer_get_mean_loss (t, FALSE));
  return 0;
}

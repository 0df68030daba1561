/* Training a denoising autoencoder: noisy input (the model's noise
 * settings), clean target; BCE or MSE; Adam, Adadelta or SGD+momentum;
 * shuffled mini-batches; validation; checkpoint/resume.
 *
 * Reproducibility: every random choice is counter-based on the seed (the
 * validation split, the order of each epoch, the noise and the shift of
 * image i in epoch e use stream e * N + i, see cbir_train_corrupt), so the same
 * data, seed and thread count give a bit-identical model, and a run
 * resumed from a checkpoint equals the uninterrupted run. */
#pragma once

#include <cbir/common.h>
#include <cbir/idx.h>
#include <cbir/model.h>

G_BEGIN_DECLS

typedef struct {
  guint epoch;                  /* current epoch, 1-based */
  guint n_epochs;               /* total epochs of this run */
  guint batch;                  /* batches done in this epoch */
  guint n_batches;              /* batches per epoch */
  guint images_done;            /* training images done in this epoch */
  guint n_images;               /* training images per epoch */
  double loss;                  /* mean training loss so far this epoch */
  double val_loss;              /* validation loss (NAN until epoch end or
                                 * without validation data) */
  double images_per_s;          /* training throughput of this run */
  double elapsed_s;             /* since cbir_trainer_run () started */
  double eta_s;                 /* estimated seconds left in this run */
  gboolean epoch_end;           /* TRUE once per epoch, after validation */
  double view_spread;           /* with a consistency term: mean W / T of
                                 * this epoch so far (see
                                 * CbirTrainSettings.consistency: the share
                                 * of the codes' spread between two views of
                                 * one image); NAN without one */
  gboolean collapsed;           /* at epoch end: the training loss is within
                                 * 1% of predicting all zeros (or the mean
                                 * pixel): the model learnt nothing */
} CbirTrainProgress;

/* Return FALSE to stop training (cbir_trainer_run then fails with
 * "cancelled"). */
typedef gboolean (*CbirTrainProgressFunc) (const CbirTrainProgress *p,
    gpointer user_data);

typedef struct {
  guint64 seed;
  guint threads;                /* 0: cbir_default_threads () */
  double val_split;             /* fraction held out for validation, [0, 0.9] */
  const CbirDataset *val_data;  /* separate validation set (then val_split
                                 * must be 0); borrowed */
  const CbirDataset *inputs;    /* paired inputs, or NULL; borrowed: image i
                                 * is where the corruption of training image
                                 * i starts (e.g. its camera rendering),
                                 * the target staying image i of the data;
                                 * same count and size as the data. The
                                 * held-out split is paired too; a separate
                                 * val_data is not. A deskewing model
                                 * deskews each input on its own moments,
                                 * as it will when encoding. */
  guint checkpoint_every;       /* epochs; 0: never */
  const char *checkpoint_path;  /* required when checkpoint_every > 0 */
  CbirTrainProgressFunc progress;
  gpointer user_data;
} CbirTrainOptions;

void cbir_train_options_init (CbirTrainOptions *opts);

typedef struct _CbirTrainer CbirTrainer;

/* A trainer for `model` (borrowed; its parameters are trained in place,
 * starting from their current values: call cbir_net_init_params () first
 * for a fresh model) on `data` (borrowed, GRAY8 of the model's input
 * size), with the model's training settings. */
CbirTrainer *cbir_trainer_new (CbirModel *model, const CbirDataset *data,
    const CbirTrainOptions *opts, GError **error);

/* Resumes from a checkpoint written by this trainer: loads the model
 * (owned by the trainer, see cbir_trainer_get_model ()), the optimiser
 * state, the epoch and the loss history. The seed and the validation
 * split come from the checkpoint (opts->seed and opts->val_split are
 * ignored); `data` (and opts->val_data) must be the data the checkpoint
 * was made with (checked by SHA-256). */
CbirTrainer *cbir_trainer_resume (const char *checkpoint,
    const CbirDataset *data, const CbirTrainOptions *opts, GError **error);
void cbir_trainer_free (CbirTrainer *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirTrainer, cbir_trainer_free)

CbirModel *cbir_trainer_get_model (CbirTrainer *t);

/* Trains until `epochs` epochs are done in total (0: the model's
 * settings). Afterwards the model's fingerprint and training info
 * (cbir_model_get_training_info) are up to date. */
gboolean cbir_trainer_run (CbirTrainer *t, guint epochs, GError **error);

/* Writes model + optimiser state + epoch + seed + loss history in one
 * safetensors file, atomically. It loads as a model too. */
gboolean cbir_trainer_save_checkpoint (CbirTrainer *t, const char *path,
    GError **error);

guint cbir_trainer_get_epoch (const CbirTrainer *t);  /* epochs done */
guint cbir_trainer_get_n_train (const CbirTrainer *t);
guint cbir_trainer_get_n_val (const CbirTrainer *t);
/* Per-epoch mean losses (n = epochs done); val entries are NAN without
 * validation data. */
const double *cbir_trainer_get_train_losses (const CbirTrainer *t);
const double *cbir_trainer_get_val_losses (const CbirTrainer *t);
/* Loss of predicting all zeros, and of predicting the mean training pixel
 * everywhere, on the clean training (val = FALSE) or validation images. */
double cbir_trainer_get_zeros_loss (const CbirTrainer *t, gboolean val);
double cbir_trainer_get_mean_loss (const CbirTrainer *t, gboolean val);
gboolean cbir_trainer_get_collapsed (const CbirTrainer *t);

/* Loss on the validation images (or the training images without
 * validation data) with the current weights, eval mode, fixed noise. */
double cbir_trainer_evaluate (CbirTrainer *t, gboolean val);

/* n validation images (training images without validation data), evenly
 * spaced over the set (the first when n equals the set's size):
 * noisy input as fed to the net, reconstruction and clean target, each
 * n * input-size floats in [0, 1]. */
gboolean cbir_trainer_sample (CbirTrainer *t, guint n, float *noisy,
    float *recon, float *clean, GError **error);

/* Mean loss of predictions y against targets t (n values). from_logits:
 * y holds logits of a final sigmoid (BCE only; numerically stable). When
 * grad is non-NULL it receives d(loss)/dy * grad_scale per value
 * (grad_scale is usually 1 / n). BCE clips probabilities to
 * [1e-7, 1 - 1e-7] like Keras. */
double cbir_loss_eval (CbirLoss loss, gboolean from_logits, const float *y,
    const float *target, gsize n, float *grad, float grad_scale);

/* The consistency term's W / T (CbirTrainSettings.consistency) of 2n
 * codes of `dim` floats: rows 0..n-1 the first views of n images, rows
 * n..2n-1 their second views, in the same order. W = 1/2 sum_i |z_i -
 * z_(n+i)|^2, T = sum over all 2n rows of |z - mean|^2; 0 when T is 0.
 * When grad is non-NULL it receives d(W/T)/dz * grad_scale (2n rows). */
double cbir_view_spread_eval (const float *codes, guint n, gsize dim,
    float *grad, float grad_scale);

/* ---- Additions (train-features helper): translation jitter. ---- */

/* The training corruption of one image, as the trainer applies it:
 * `clean` (channels planes of width x height floats in [0, 1]) moved by an
 * integer offset (dx, dy), each uniform in [-s->shift, s->shift] (content
 * at (x, y) goes to (x + dx, y + dy); pixels moved in from outside are 0),
 * then s->noise at s->noise_level (cbir_noise_apply_f32 with `seed` and
 * `stream`). The offset depends only on (seed, stream), from a stream of
 * its own, so shift 0 gives exactly the noise-only corruption. With
 * s->rotate > 0 the image is also turned about its centre by an angle
 * uniform in [-rotate, rotate] degrees (another stream of its own; the
 * offset drawn is unchanged) before the offset, resampled bilinearly with
 * zero fill; rotate 0 keeps the exact integer shift. With s->thickness >
 * 0 the moved image then goes a share t, uniform in [-thickness,
 * thickness] (a stream of its own), of the way to its 3x3 grey dilation
 * (t > 0) or erosion (t < 0), before the noise. The trainer
 * uses stream epoch * N + image index; validation and samples use no
 * shift. dx/dy (may be NULL) receive the offset. out must not alias
 * clean. */
void cbir_train_corrupt (const CbirTrainSettings *s, guint64 seed,
    guint64 stream, const float *clean, guint channels, guint width,
    guint height, float *out, int *dx, int *dy);

G_END_DECLS

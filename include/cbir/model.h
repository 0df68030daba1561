/* A trained (or fresh) autoencoder: architecture + weights + settings,
 * stored as safetensors. The encoder is layers [0, code_layer]; its output,
 * flattened, is the code. */
#pragma once

#include <cbir/common.h>
#include <cbir/nn.h>
#include <cbir/noise.h>

G_BEGIN_DECLS

typedef struct _CbirModel CbirModel;

/* Architecture as data. The JSON (also stored in the model file's
 * __metadata__ "architecture") looks like:
 * { "name": "sicara", "input": [1, 28, 28], "code_layer": 5,
 *   "code_type": "float",            // or "bits": bit = (code value > 0)
 *   "layers": [ {"type": "conv2d", "filters": 16, "kernel": 3,
 *                "stride": 1, "padding": "same"}, {"type": "relu"}, ... ],
 *   "training": { "loss": "bce", "optimizer": "adadelta", "lr": 1.0,
 *                 "rho": 0.95, "noise": "gaussian", "noise_level": 0.5,
 *                 "batch_size": 128, "epochs": 20 } }
 * Layer types: conv2d, conv_transpose2d, dense, relu, leaky_relu (alpha),
 * sigmoid, batchnorm (eps, momentum), maxpool2, upsample2, flatten,
 * reshape (shape [C,H,W]). */
CbirModel *cbir_model_new_from_json (const char *json, const char *origin,
    GError **error);
CbirModel *cbir_model_new_from_arch_file (const char *path, GError **error);
/* Presets: "sicara", "keras-dae", "pyimagesearch", "binary-xor" and the
 * project default ("default"). */
CbirModel *cbir_model_new_preset (const char *name, GError **error);
const char *const *cbir_model_list_presets (void);

/* Loads a model file; the tensors are checked against the architecture
 * (names, dtype F32, shapes). Errors name the file. */
CbirModel *cbir_model_load (const char *path, GError **error);
/* Atomic write; metadata: format, architecture, input normalisation, noise
 * and training settings, code type, fingerprint. */
gboolean cbir_model_save (CbirModel *model, const char *path, GError **error);
void cbir_model_free (CbirModel *model);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirModel, cbir_model_free)

CbirNet *cbir_model_get_net (CbirModel *model);
const char *cbir_model_get_name (const CbirModel *model);
/* Hex SHA-256 of the architecture JSON and the parameter block; changes
 * whenever the weights change (recomputed by cbir_model_update_fingerprint
 * after training). */
const char *cbir_model_get_fingerprint (const CbirModel *model);
void cbir_model_update_fingerprint (CbirModel *model);
/* The architecture JSON (canonical form). */
const char *cbir_model_get_arch_json (const CbirModel *model);

CbirCodeType cbir_model_get_code_type (const CbirModel *model);
/* Floats per code (float codes) or bits per code (bit codes). */
guint cbir_model_get_code_dim (const CbirModel *model);
/* Bytes per packed bit code: (code_dim + 7) / 8. */
guint cbir_model_get_code_bytes (const CbirModel *model);
guint cbir_model_get_code_layer (const CbirModel *model);
void cbir_model_get_input_size (const CbirModel *model, guint *width,
    guint *height);
/* Input normalisation: x = 255 * (pixel / 255)^gamma * scale + offset
 * (default scale 1/255, offset 0, gamma 1: x = pixel / 255). A gamma below 1
 * compresses intensities (0.5: square root), so dark and bright versions of
 * a shape lie closer together. */
void cbir_model_get_normalisation (const CbirModel *model, float *scale,
    float *offset);
double cbir_model_get_input_gamma (const CbirModel *model);
/* TRUE when the model's normalisation has "deskew": true: every GRAY8
 * image given to cbir_model_encode_u8 (and every training image) is first
 * sheared upright by cbir_preprocess_deskew. cbir_model_encode_f32 takes
 * its input as it is. */
gboolean cbir_model_get_deskew (const CbirModel *model);
/* Turns deskewing on or off (canonical JSON and fingerprint follow): for a
 * model about to be trained, not one whose gallery exists. FALSE with
 * error for a model whose input is not one channel. */
gboolean cbir_model_set_deskew (CbirModel *model, gboolean deskew,
    GError **error);
/* (v / 255)^gamma: a pixel in the [0, 1] space the trainer's noise and
 * reconstruction target live in (before scale and offset). */
float cbir_model_pixel_to_01 (const CbirModel *model, guint8 v);
/* The 256-entry table pixel value -> network input used by the encoders. */
const float *cbir_model_get_input_lut (const CbirModel *model);

/* Encodes n GRAY8 images of the model's input size (contiguous, no row
 * padding; deskewed first when the model says so) to n float codes
 * (code_dim floats each: the raw encoder output, also for bit models).
 * Thread-safe: any number of threads may encode with one model at once;
 * batch 1 has low latency. */
gboolean cbir_model_encode_u8 (CbirModel *model, const guint8 *pixels,
    guint n, float *codes, GError **error);
/* Same from already-normalised float input (n * C*H*W floats). */
gboolean cbir_model_encode_f32 (CbirModel *model, const float *input,
    guint n, float *codes, GError **error);

/* Packs n float codes of `dim` values into bits: bit j of code i is set
 * when codes[i*dim+j] > thresholds[j] (or > 0 when thresholds is NULL).
 * Bit j goes to byte j/8, bit position j%8 (LSB first). */
void cbir_codes_pack_bits (const float *codes, guint n, guint dim,
    const float *thresholds, guint8 *out);

/* ---- Additions (model/train helper): training settings, metadata,
 * checkpoint support. ---- */

typedef enum {
  CBIR_LOSS_BCE = 0,            /* binary cross-entropy, Keras-clipped */
  CBIR_LOSS_MSE,
} CbirLoss;

typedef enum {
  CBIR_OPTIMIZER_ADAM = 0,      /* beta1 0.9, beta2 0.999, eps 1e-7 (Keras) */
  CBIR_OPTIMIZER_ADADELTA,      /* lr 1.0, rho 0.95, eps 1e-7 (Keras) */
  CBIR_OPTIMIZER_SGD,           /* SGD with (Keras-style) momentum */
} CbirOptimizerKind;

/* Learning-rate schedule over the run's optimiser steps. */
typedef enum {
  CBIR_LR_CONSTANT = 0,         /* lr at every step */
  CBIR_LR_COSINE,               /* lr * (1 + cos (pi * s / S)) / 2 at step s
                                 * (0-based) of S = epochs * batches per
                                 * epoch: from lr down to ~0 at the end */
} CbirLrSchedule;

const char *cbir_loss_to_string (CbirLoss l);               /* "bce", "mse" */
gboolean cbir_loss_from_string (const char *s, CbirLoss *out);
const char *cbir_optimizer_to_string (CbirOptimizerKind o); /* "adam", "adadelta", "sgd" */
gboolean cbir_optimizer_from_string (const char *s, CbirOptimizerKind *out);
const char *cbir_lr_schedule_to_string (CbirLrSchedule l);  /* "constant", "cosine" */
gboolean cbir_lr_schedule_from_string (const char *s, CbirLrSchedule *out);

/* The architecture's "training" block: how the model is (to be) trained. */
typedef struct {
  CbirLoss loss;
  CbirOptimizerKind optimizer;
  double lr;
  double rho;                   /* adadelta */
  double momentum;              /* sgd */
  double beta1, beta2;          /* adam */
  double eps;                   /* adam / adadelta epsilon */
  CbirNoiseKind noise;
  double noise_level;
  guint batch_size;
  guint epochs;
  /* Appended (train-features helper): translation jitter of the noisy
   * input, integer pixels in [-shift, shift] in x and y (uniform, zero
   * fill); the target stays the clean, unshifted image. JSON "shift",
   * default 0 (not written to the canonical JSON when 0). */
  guint shift;
  /* Appended: learning-rate schedule, JSON "lr_schedule" ("constant" or
   * "cosine"; default constant, not written to the canonical JSON then).
   * The cosine horizon is "epochs", so the schedule, like every other
   * setting, is fixed by the training block (resuming with more epochs
   * changes the block and so the schedule). */
  CbirLrSchedule lr_schedule;
  /* Appended: rotation jitter of the noisy input, degrees: each training
   * image is turned by an angle uniform in [-rotate, rotate] about its
   * centre (bilinear, zero fill), together with the shift; the target
   * stays the clean image. JSON "rotate", [0, 180], default 0 (not written
   * to the canonical JSON then). */
  double rotate;
  /* Appended: weight of the view-consistency term. With consistency > 0
   * every training image is corrupted twice (two independent draws of
   * the whole corruption); both views are reconstructed, and the
   * loss adds consistency * W / T on the codes (the output of the
   * code layer): W = 1/2 sum over the images of |code(view 1) -
   * code(view 2)|^2, T = the sum over all codes of the batch of |code -
   * their mean|^2, so W / T in [0, 1] is the share of the codes' spread
   * that lies between two views of one image (scale-free: shrinking the
   * codes does not lower it). A training step then costs about twice as
   * much. JSON "consistency", [0, 100], default 0 (not written to the
   * canonical JSON then). */
  double consistency;
  /* Appended: stroke-thickness jitter of the noisy input: after the shift
   * and rotation, each image moves a share t of the way to its 3x3 grey
   * dilation (t > 0, thicker strokes) or erosion (t < 0, thinner), t
   * uniform in [-thickness, thickness] (a stream of its own); the target
   * stays the clean image. JSON "thickness", [0, 1], default 0 (not
   * written to the canonical JSON then). */
  double thickness;
} CbirTrainSettings;

/* Fills the defaults for an optimiser (lr, rho, momentum, betas, eps). */
void cbir_train_settings_set_optimizer_defaults (CbirTrainSettings *s,
    CbirOptimizerKind o);
const CbirTrainSettings *cbir_model_get_train_settings (const CbirModel *m);
/* The settings as the JSON object of the architecture's "training" block
 * (numbers in their shortest round-trip form; always valid JSON). */
char *cbir_train_settings_to_json (const CbirTrainSettings *t);
/* Replaces the training block (regenerates the canonical architecture
 * JSON and the fingerprint). FALSE + error on out-of-range values. */
gboolean cbir_model_set_train_settings (CbirModel *model,
    const CbirTrainSettings *s, GError **error);

/* The built-in preset's architecture JSON, NULL for an unknown name. */
const char *cbir_model_get_preset_json (const char *name);

/* Free-form JSON string stored as __metadata__ "training" (results of
 * training: losses, epochs done...); NULL when the model was never
 * trained. */
const char *cbir_model_get_training_info (const CbirModel *model);
void cbir_model_set_training_info (CbirModel *model, const char *json);

/* Adds the model's tensors (borrowed: keep the model alive until the
 * write) and metadata to a safetensors writer, for files that hold a model
 * and more (training checkpoints). */
struct _CbirSafetensorsWriter;
struct _CbirSafetensors;
void cbir_model_add_to_writer (CbirModel *model,
    struct _CbirSafetensorsWriter *w);
/* Builds a model from an open safetensors file (as cbir_model_load does;
 * tensors other than the model's are ignored). */
CbirModel *cbir_model_new_from_safetensors (struct _CbirSafetensors *st,
    GError **error);

/* Encodes with a float input and returns the output of layer `last`
 * (eval mode), e.g. the reconstruction when last = n_layers - 1. `out`
 * holds n * size of that layer's output. Thread-safe like encode. */
gboolean cbir_model_forward_f32 (CbirModel *model, const float *input,
    guint n, guint last, float *out, GError **error);

/* ---- Additions (train-features helper): code normalisation. ---- */

/* Architecture JSON "code_normalise": "none" (default), "l2" or
 * "centre-l2" (or "whiten-l2", below). With "l2", cbir_model_encode_u8/_f32 return unit-length
 * codes (a zero code stays zero), so L2 distances between codes rank like
 * cosine distances. "centre-l2" first subtracts the model's code mean (the
 * mean raw code of its training images, tensor "code.mean", set by the
 * trainer; zeros until fitted): cosine around the data's centre rather than
 * the origin. Float codes only: bit models refuse both. cbir_model_forward_f32
 * always returns the raw layer output. Part of the canonical JSON (only when
 * not "none") and so of the fingerprint; so is the code mean. */
typedef enum {
  CBIR_CODE_NORMALISE_NONE = 0,
  CBIR_CODE_NORMALISE_L2,
  CBIR_CODE_NORMALISE_CENTRE_L2,
  /* "whiten-l2": code = L2-normalise (W (raw - mean)) with W =
   * V diag (variance^-p) V^T, V the principal axes of the training images'
   * raw codes and p the architecture's "code_whiten_power" (0 < p <= 1,
   * default 0.15: partial whitening, so that a few high-variance
   * directions do not dominate the distance; 0.5 would be full ZCA
   * whitening). Turning back by V keeps the code's axes, so bits thresholded
   * per dimension work as on centre-l2 codes.
   * W is tensor "code.whiten" (code_dim x code_dim, row-major), fitted with
   * the mean; the identity until fitted (then it equals centre-l2). */
  CBIR_CODE_NORMALISE_WHITEN_L2,
} CbirCodeNormalise;

const char *cbir_code_normalise_to_string (CbirCodeNormalise n);  /* "none", "l2", "centre-l2", "whiten-l2" */
gboolean cbir_code_normalise_from_string (const char *s,
    CbirCodeNormalise *out);
CbirCodeNormalise cbir_model_get_code_normalise (const CbirModel *model);
/* centre-l2 and whiten-l2 models: the code mean (code_dim floats); NULL
 * otherwise. */
const float *cbir_model_get_code_mean (const CbirModel *model);
/* centre-l2 and whiten-l2 models only: sets the mean. Updates the
 * fingerprint. */
void cbir_model_set_code_mean (CbirModel *model, const float *mean);
/* whiten-l2 models: the whitening matrix W (code_dim x code_dim,
 * row-major) and its power p; NULL / 0 otherwise. */
const float *cbir_model_get_code_whiten (const CbirModel *model);
double cbir_model_get_code_whiten_power (const CbirModel *model);
/* whiten-l2 models only: sets W (finite values). Updates the fingerprint. */
void cbir_model_set_code_whiten (CbirModel *model, const float *w);
/* Fits what the model's code normalisation needs on n GRAY8 images (input
 * size, contiguous): the mean raw code (centre-l2, whiten-l2) and the
 * whitening W (whiten-l2; needs n >= 2). Updates the fingerprint; a model
 * without either is left as it is. */
gboolean cbir_model_fit_code_transform (CbirModel *model,
    const guint8 *images, guint n, GError **error);

G_END_DECLS

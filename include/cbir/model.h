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
/* Input normalisation: x = pixel * scale + offset (default 1/255, 0). */
void cbir_model_get_normalisation (const CbirModel *model, float *scale,
    float *offset);

/* Encodes n GRAY8 images of the model's input size (contiguous, no row
 * padding) to n float codes (code_dim floats each: the raw encoder
 * output, also for bit models). Thread-safe: any number of threads may
 * encode with one model at once; batch 1 has low latency. */
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

G_END_DECLS

/* Image corruption: one implementation for the trainer and the cbirnoise
 * element. Seeded and reproducible: the noise of an image depends only on
 * (seed, stream) and the image size, never on threads or call order. */
#pragma once

#include <cbir/common.h>

G_BEGIN_DECLS

typedef enum {
  CBIR_NOISE_NONE = 0,
  CBIR_NOISE_GAUSSIAN,          /* level = sigma in units of full scale:
                                 * x + level * N(0,1), clipped to [0,1] */
  CBIR_NOISE_SALT_PEPPER,       /* level = density: each pixel with
                                 * probability level becomes 0 or max (50/50) */
} CbirNoiseKind;

const char *cbir_noise_kind_to_string (CbirNoiseKind k);  /* "none", "gaussian", "salt-and-pepper" */
gboolean cbir_noise_kind_from_string (const char *s, CbirNoiseKind *out);

/* GRAY8 frame, any size, rows walked by stride. */
void cbir_noise_apply_u8 (CbirNoiseKind kind, float level, guint64 seed,
    guint64 stream, guint8 *data, guint width, guint height, gsize stride);

/* As cbir_noise_apply_u8, with Gaussian noise added in the space of a
 * model's input mapping x = (pixel / 255)^gamma rather than to the pixels:
 * pixel' = 255 * clip (x + level * N(0,1), 0, 1)^(1 / gamma), rounded. The
 * trainer adds its noise to x (cbir_noise_apply_f32 on the gamma-mapped
 * image, same normals for the same seed, stream and size), so with the
 * model's gamma (0.5 for the default model) the same level is the same
 * corruption, up to the 8-bit rounding of the result. gamma 1 is
 * cbir_noise_apply_u8; salt-and-pepper does not depend on gamma. */
void cbir_noise_apply_u8_gamma (CbirNoiseKind kind, float level, float gamma,
    guint64 seed, guint64 stream, guint8 *data, guint width, guint height,
    gsize stride);

/* Float image(s) with values in [0,1]: n contiguous values. */
void cbir_noise_apply_f32 (CbirNoiseKind kind, float level, guint64 seed,
    guint64 stream, float *data, gsize n);

G_END_DECLS

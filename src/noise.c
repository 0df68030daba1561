/* Image corruption (Gaussian, salt-and-pepper), seeded and reproducible.
 *
 * Random numbers come from a counter-based generator: the draw for pixel i
 * (its index in row-major order, independent of the stride) is a SplitMix64
 * finaliser applied to key + c * golden, where key hashes (seed, stream) and
 * c is the pixel's counter. The noise of an image therefore depends only on
 * (seed, stream) and its size, never on threads, chunking or call order.
 *
 * Gaussian normals: Box-Muller on pixel pairs (2k, 2k+1): one 64-bit draw
 * for pair k gives a 24-bit radius uniform and a 32-bit angle uniform; pixel
 * 2k takes r cos, pixel 2k+1 takes r sin. Both the u8 and the f32 path use the
 * same normals and the same hit pixels, so they agree where defined.
 *
 * The per-pixel arithmetic (saturating add, masked blend, add + clip) is in
 * ORC (cbir-orc.orc); the random values are made in C into small row
 * buffers. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "cbir/noise.h"
#include "cbir-orc.h"

#define GOLDEN G_GUINT64_CONSTANT (0x9E3779B97F4A7C15)
#define CHUNK 1024              /* pixels per row buffer */

static inline guint64
mix64 (guint64 z)
{
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* One key per (seed, stream, kind): different kinds draw unrelated numbers. */
static guint64
noise_key (guint64 seed, guint64 stream, CbirNoiseKind kind)
{
  guint64 k = mix64 (seed + GOLDEN);
  k = mix64 (k ^ (stream * G_GUINT64_CONSTANT (0xD1B54A32D192ED03)));
  return mix64 (k + (guint64) kind * GOLDEN);
}

static inline guint64
draw (guint64 key, guint64 counter)
{
  return mix64 (key + (counter + 1) * GOLDEN);
}

/* Normals for pixels [first, first + n) into out. */
static void
gaussian_normals (guint64 key, guint64 first, gsize n, float *out)
{
  gsize j = 0;
  guint64 i = first;

  while (j < n) {
    guint64 h = draw (key, i >> 1);
    /* u1 in (0, 1]: 24 bits, never 0, so the log is finite. */
    float u1 = ((float) (h >> 40) + 1.0f) * (1.0f / 16777216.0f);
    float a = (float) (h & 0xffffffffu) * (float) (2.0 * G_PI / 4294967296.0);
    float r = sqrtf (-2.0f * logf (u1));
    float s, c;

    sincosf (a, &s, &c);
    if ((i & 1) == 0) {
      out[j++] = r * c;
      i++;
      if (j < n) {
        out[j++] = r * s;
        i++;
      }
    } else {
      out[j++] = r * s;
      i++;
    }
  }
}

/* Salt-and-pepper: pixel i is hit when its 32-bit uniform is below the
 * threshold; bit 32 picks salt (max) or pepper (0). */
static inline guint64
sp_threshold (float density)
{
  if (density >= 1.0f)
    return G_GUINT64_CONSTANT (1) << 32;
  return (guint64) ((double) density * 4294967296.0);
}

static gboolean
level_is_active (CbirNoiseKind kind, float level)
{
  if (kind != CBIR_NOISE_GAUSSIAN && kind != CBIR_NOISE_SALT_PEPPER)
    return FALSE;
  /* Also refuses NaN. */
  return level > 0.0f;
}

const char *
cbir_noise_kind_to_string (CbirNoiseKind k)
{
  switch (k) {
    case CBIR_NOISE_NONE:
      return "none";
    case CBIR_NOISE_GAUSSIAN:
      return "gaussian";
    case CBIR_NOISE_SALT_PEPPER:
      return "salt-and-pepper";
  }
  return "unknown";
}

gboolean
cbir_noise_kind_from_string (const char *s, CbirNoiseKind *out)
{
  static const struct
  {
    const char *name;
    CbirNoiseKind kind;
  } names[] = {
    {"none", CBIR_NOISE_NONE},
    {"gaussian", CBIR_NOISE_GAUSSIAN},
    {"salt-and-pepper", CBIR_NOISE_SALT_PEPPER},
    {"salt-pepper", CBIR_NOISE_SALT_PEPPER},
    {"sp", CBIR_NOISE_SALT_PEPPER},
  };

  if (s == NULL)
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    if (g_ascii_strcasecmp (s, names[i].name) == 0) {
      if (out)
        *out = names[i].kind;
      return TRUE;
    }
  }
  return FALSE;
}

void
cbir_noise_apply_u8 (CbirNoiseKind kind, float level, guint64 seed,
    guint64 stream, guint8 *data, guint width, guint height, gsize stride)
{
  guint64 key;

  if (!level_is_active (kind, level) || data == NULL || width == 0)
    return;
  key = noise_key (seed, stream, kind);

  if (kind == CBIR_NOISE_GAUSSIAN) {
    float normals[CHUNK];
    gint16 noise[CHUNK];
    float scale = level * 255.0f;

    for (guint y = 0; y < height; y++) {
      guint8 *row = data + (gsize) y * stride;
      for (guint x0 = 0; x0 < width; x0 += CHUNK) {
        guint n = MIN (CHUNK, width - x0);
        gaussian_normals (key, (guint64) y * width + x0, n, normals);
        for (guint j = 0; j < n; j++) {
          /* Round half away from zero; beyond +-512 saturates anyway. */
          float v = roundf (scale * normals[j]);
          noise[j] = (gint16) CLAMP (v, -512.0f, 512.0f);
        }
        cbir_orc_add_s16_sat_u8 (row + x0, noise, (int) n);
      }
    }
  } else {
    guint8 mask[CHUNK], val[CHUNK];
    guint64 thr = sp_threshold (level);

    for (guint y = 0; y < height; y++) {
      guint8 *row = data + (gsize) y * stride;
      for (guint x0 = 0; x0 < width; x0 += CHUNK) {
        guint n = MIN (CHUNK, width - x0);
        guint64 i0 = (guint64) y * width + x0;
        for (guint j = 0; j < n; j++) {
          guint64 h = draw (key, i0 + j);
          gboolean hit = (h & 0xffffffffu) < thr;
          mask[j] = hit ? 0xff : 0;
          val[j] = (hit && ((h >> 32) & 1)) ? 0xff : 0;
        }
        cbir_orc_blend_u8 (row + x0, mask, val, (int) n);
      }
    }
  }
}

void
cbir_noise_apply_u8_gamma (CbirNoiseKind kind, float level, float gamma,
    guint64 seed, guint64 stream, guint8 *data, guint width, guint height,
    gsize stride)
{
  float fwd[256], normals[CHUNK];
  guint64 key;

  if (gamma == 1.0f || kind != CBIR_NOISE_GAUSSIAN) {
    cbir_noise_apply_u8 (kind, level, seed, stream, data, width, height,
        stride);
    return;
  }
  if (!level_is_active (kind, level) || data == NULL || width == 0
      || !(gamma > 0.0f))
    return;
  key = noise_key (seed, stream, kind);
  /* x = (v / 255)^gamma as the model's input LUT computes it */
  for (guint v = 0; v < 256; v++)
    fwd[v] = (float) pow (v / 255.0, gamma);
  for (guint y = 0; y < height; y++) {
    guint8 *row = data + (gsize) y * stride;
    for (guint x0 = 0; x0 < width; x0 += CHUNK) {
      guint n = MIN (CHUNK, width - x0);
      gaussian_normals (key, (guint64) y * width + x0, n, normals);
      for (guint j = 0; j < n; j++) {
        float x = fwd[row[x0 + j]] + level * normals[j];
        x = CLAMP (x, 0.0f, 1.0f);
        row[x0 + j] = (guint8) lrint (255.0 * pow (x, 1.0 / gamma));
      }
    }
  }
}

void
cbir_noise_apply_f32 (CbirNoiseKind kind, float level, guint64 seed,
    guint64 stream, float *data, gsize n)
{
  guint64 key;

  if (!level_is_active (kind, level) || data == NULL)
    return;
  key = noise_key (seed, stream, kind);

  if (kind == CBIR_NOISE_GAUSSIAN) {
    float noise[CHUNK];

    for (gsize i0 = 0; i0 < n; i0 += CHUNK) {
      guint m = (guint) MIN (CHUNK, n - i0);
      gaussian_normals (key, i0, m, noise);
      for (guint j = 0; j < m; j++)
        noise[j] *= level;
      cbir_orc_add_clip_f32 (data + i0, noise, 0.0f, 1.0f, (int) m);
    }
  } else {
    guint64 thr = sp_threshold (level);

    for (gsize i = 0; i < n; i++) {
      guint64 h = draw (key, i);
      if ((h & 0xffffffffu) < thr)
        data[i] = ((h >> 32) & 1) ? 1.0f : 0.0f;
    }
  }
}

/* Shared by fuzz-model.c and fuzz-arch.c: exercises a model that loaded
 * (accessors, training block round trip, encoding two images through the
 * public API when the network is small enough to run in a fuzzing loop).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "fuzz-common.h"

#include <cbir/model.h>
#include <cbir/nn.h>

/* Per image: multiply-adds and activation floats up to the code layer.
 * Above these the model is valid but too slow or big for a fuzzing loop
 * (the file format allows up to 65536x65536 inputs); it is then loaded but
 * not run. */
#define FUZZ_MAX_MACS 2.0e7
#define FUZZ_MAX_ACTIVATIONS 2.0e6

static gboolean
fuzz_model_affordable (CbirModel *m)
{
  CbirNet *net = cbir_model_get_net (m);
  guint last = cbir_model_get_code_layer (m);
  guint n_layers = cbir_net_n_layers (net);
  CbirShape in = cbir_net_input_shape (net);
  double ie = (double) in.c * in.h * in.w;
  double cost = ie, act = ie;

  if (last >= n_layers)
    return FALSE;
  for (guint i = 0; i <= last; i++) {
    const CbirLayerSpec *l = cbir_net_layer (net, i);
    CbirShape out = cbir_net_output_shape (net, i);
    double oe = (double) out.c * out.h * out.w;
    switch (l->kind) {
      case CBIR_LAYER_CONV2D:
        cost += oe * l->kernel * l->kernel * in.c;
        break;
      case CBIR_LAYER_CONV_TRANSPOSE2D:
        cost += ie * l->kernel * l->kernel * out.c;
        break;
      case CBIR_LAYER_DENSE:
        cost += ie * oe;
        break;
      default:
        cost += MAX (ie, oe);
        break;
    }
    act += oe;
    in = out;
    ie = oe;
  }
  return cost <= FUZZ_MAX_MACS && act <= FUZZ_MAX_ACTIVATIONS;
}

static void
fuzz_model_exercise (CbirModel *m, const uint8_t *data, size_t size)
{
  GError *err = NULL;

  /* accessors: everything a caller may read from a loaded model */
  g_assert (cbir_model_get_name (m) != NULL);
  g_assert (strlen (cbir_model_get_fingerprint (m)) > 0);
  const char *arch = cbir_model_get_arch_json (m);
  g_assert (arch != NULL);
  (void) strlen (arch);
  CbirCodeType ct = cbir_model_get_code_type (m);
  g_assert (ct == CBIR_CODE_FLOAT || ct == CBIR_CODE_BITS);
  guint dim = cbir_model_get_code_dim (m);
  g_assert (dim > 0);
  g_assert (cbir_model_get_code_bytes (m) == (dim + 7) / 8);
  guint w = 0, h = 0;
  cbir_model_get_input_size (m, &w, &h);
  g_assert (w > 0 && h > 0);
  float scale, offset;
  cbir_model_get_normalisation (m, &scale, &offset);
  (void) cbir_model_get_input_gamma (m);
  (void) fuzz_touch (cbir_model_get_input_lut (m), 256 * sizeof (float));
  (void) cbir_model_pixel_to_01 (m, 0);
  (void) cbir_model_pixel_to_01 (m, 255);
  const char *info = cbir_model_get_training_info (m);
  if (info)
    (void) strlen (info);
  CbirCodeNormalise cn = cbir_model_get_code_normalise (m);
  (void) cbir_code_normalise_to_string (cn);
  const float *mean = cbir_model_get_code_mean (m);
  if (mean)
    (void) fuzz_touch (mean, dim * sizeof (float));
  const float *wh = cbir_model_get_code_whiten (m);
  if (wh)
    (void) fuzz_touch (wh, (gsize) dim * dim * sizeof (float));
  (void) cbir_model_get_code_whiten_power (m);

  /* the training block: to JSON, and set back unchanged */
  CbirTrainSettings s = *cbir_model_get_train_settings (m);
  char *tj = cbir_train_settings_to_json (&s);
  g_assert (tj != NULL);
  g_free (tj);
  if (!cbir_model_set_train_settings (m, &s, &err)) {
    fprintf (stderr, "fuzz harness: the model's own training block is "
        "refused: %s\n", err->message);
    abort ();
  }

  if (!fuzz_model_affordable (m))
    return;

  /* encode two images of the input size: one from the input's bytes, one
   * its negative; u8 and the same through the LUT as f32 must agree */
  CbirNet *net = cbir_model_get_net (m);
  cbir_net_set_threads (net, 1);
  CbirShape is = cbir_net_input_shape (net);
  gsize in_size = (gsize) is.c * is.h * is.w;
  guint8 *px = g_malloc (2 * in_size);
  for (gsize i = 0; i < in_size; i++) {
    px[i] = size ? data[i % size] : 0;
    px[in_size + i] = 255 - px[i];
  }
  float *codes = g_new (float, 2 * (gsize) dim);
  if (cbir_model_encode_u8 (m, px, 2, codes, &err)) {
    const float *lut = cbir_model_get_input_lut (m);
    float *x = g_new (float, 2 * in_size);
    float *codes2 = g_new (float, 2 * (gsize) dim);
    for (gsize i = 0; i < 2 * in_size; i++)
      x[i] = lut[px[i]];
    g_assert (cbir_model_encode_f32 (m, x, 2, codes2, &err));
    g_assert (memcmp (codes, codes2, 2 * (gsize) dim * sizeof (float)) == 0);
    /* one image alone (batch 1 may take another kernel path) */
    g_assert (cbir_model_encode_f32 (m, x, 1, codes2, &err));
    g_free (codes2);
    g_free (x);
    guint8 *bits = g_malloc (2 * (gsize) cbir_model_get_code_bytes (m));
    cbir_codes_pack_bits (codes, 2, dim, NULL, bits);
    g_free (bits);
  } else {
    fuzz_drop_error (&err);
  }
  g_free (codes);
  g_free (px);
}

/* Fuzz harness: model files (cbir_model_load: safetensors + architecture
 * JSON in its metadata + weights checked against it). A model that loads
 * is exercised by fuzz_model_exercise: accessors, and two images of its
 * input size encoded through the public API (u8 and f32 must agree).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fuzz-model-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  const char *path = fuzz_write_input (0, data, size);

  CbirModel *m = cbir_model_load (path, &err);
  if (!m) {
    g_assert (err != NULL);
    fuzz_drop_error (&err);
    return 0;
  }
  cbir_fuzz_accepted = 1;
  fuzz_model_exercise (m, data, size);
  cbir_model_free (m);
  return 0;
}

/* Test fixture writer for the plugin tests: an untrained model of a preset
 * architecture (weights from the preset's seeded initialisation), enough
 * for plumbing tests, written as a model file.
 *   cbir-gst-fixture model PRESET OUT.safetensors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include <cbir/model.h>
#include <stdio.h>
#include <string.h>

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirModel) model = NULL;

  if (argc != 4 || strcmp (argv[1], "model") != 0) {
    fprintf (stderr, "usage: %s model PRESET OUT.safetensors\n", argv[0]);
    return 2;
  }
  model = cbir_model_new_preset (argv[2], &err);
  if (model == NULL || !cbir_model_save (model, argv[3], &err)) {
    fprintf (stderr, "%s: %s\n", argv[0], err->message);
    return 1;
  }
  printf ("%s\n", cbir_model_get_fingerprint (model));
  return 0;
}

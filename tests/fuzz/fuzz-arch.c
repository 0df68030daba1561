/* Fuzz harness: architecture JSON, parsed as cbir-train --arch does
 * (cbir_model_new_from_arch_file: parse, build the network, seeded
 * initialisation; no training). A model that parses is exercised by
 * fuzz_model_exercise (accessors, encoding when small), and its canonical
 * JSON must parse again to the same canonical JSON and fingerprint.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fuzz-model-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  const char *path = fuzz_write_input (0, data, size);

  CbirModel *m = cbir_model_new_from_arch_file (path, &err);
  if (!m) {
    g_assert (err != NULL);
    fuzz_drop_error (&err);
    return 0;
  }
  cbir_fuzz_accepted = 1;

  /* canonical form: a fixed point, same weights from the same seed */
  char *canon = g_strdup (cbir_model_get_arch_json (m));
  char *fp = g_strdup (cbir_model_get_fingerprint (m));
  CbirModel *m2 = cbir_model_new_from_json (canon, "canonical", &err);
  if (!m2) {
    fprintf (stderr, "fuzz harness: the canonical JSON does not parse: "
        "%s\n%s\n", err->message, canon);
    abort ();
  }
  if (strcmp (cbir_model_get_arch_json (m2), canon) != 0
      || strcmp (cbir_model_get_fingerprint (m2), fp) != 0) {
    fprintf (stderr, "fuzz harness: the canonical JSON is not a fixed "
        "point:\n%s\n%s\n", canon, cbir_model_get_arch_json (m2));
    abort ();
  }
  cbir_model_free (m2);
  g_free (canon);
  g_free (fp);

  fuzz_model_exercise (m, data, size);
  cbir_model_free (m);
  return 0;
}

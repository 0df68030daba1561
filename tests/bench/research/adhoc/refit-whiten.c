/* Research helper: a trained model's weights (and training record) under
 * another architecture JSON with the same layers, e.g. the same network
 * with "code_normalise": "whiten-l2", with the code transform fitted on
 * DATA as the trainer's last step fits it. Code normalisation does not
 * enter training, so the result equals a run trained with ARCH from the
 * start (same seed, data and threads).
 *
 * usage: refit-whiten MODEL ARCH.json DATA OUT
 * build (repo root, after meson compile -C build):
 *   gcc tests/bench/research/adhoc/refit-whiten.c -Iinclude \
 *     $(pkg-config --cflags glib-2.0) build/src/libcbir.a \
 *     $(pkg-config --libs glib-2.0 json-glib-1.0 orc-0.4 openblas) -lz -lm \
 *     -o build/refit-whiten */
#include <cbir/idx.h>
#include <cbir/model.h>
#include <stdio.h>
#include <string.h>

static int
fail (GError *err)
{
  fprintf (stderr, "refit-whiten: %s\n", err->message);
  return 1;
}

int
main (int argc, char **argv)
{
  GError *err = NULL;
  char *json = NULL;
  if (argc != 5) {
    fprintf (stderr, "usage: refit-whiten MODEL ARCH.json DATA OUT\n");
    return 2;
  }
  g_autoptr (CbirModel) a = cbir_model_load (argv[1], &err);
  if (!a || !g_file_get_contents (argv[2], &json, NULL, &err))
    return fail (err);
  g_autoptr (CbirModel) b = cbir_model_new_from_json (json, argv[2], &err);
  g_free (json);
  if (!b)
    return fail (err);
  CbirNet *na = cbir_model_get_net (a), *nb = cbir_model_get_net (b);
  if (cbir_net_n_params (na) != cbir_net_n_params (nb)) {
    fprintf (stderr, "refit-whiten: %s and %s have different networks\n",
        argv[1], argv[2]);
    return 1;
  }
  memcpy (cbir_net_params (nb), cbir_net_params (na),
      cbir_net_n_params (na) * sizeof (float));
  if (cbir_model_get_training_info (a))
    cbir_model_set_training_info (b, cbir_model_get_training_info (a));
  g_autoptr (CbirDataset) d = cbir_dataset_load (argv[3], NULL, &err);
  if (!d || !cbir_model_fit_code_transform (b, d->images, d->n, &err)
      || !cbir_model_save (b, argv[4], &err))
    return fail (err);
  return 0;
}

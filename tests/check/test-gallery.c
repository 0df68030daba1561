/* Gallery files: round trip (features, bits, thresholds, thumbnails, ids,
 * label names), bits-only galleries, append, model/dimension mismatches,
 * corrupt and truncated files, files with unaligned tensors, atomic
 * writes; database-side augmentation (round trip, append, bad files).
 * Fixtures are generated here in a temporary directory. */
#include <check.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cbir/gallery.h"
#include "cbir/safetensors.h"
#include "cbir/search.h"

static char *tmpdir;

static void
setup (void)
{
  tmpdir = g_dir_make_tmp ("test-gallery-XXXXXX", NULL);
  ck_assert_ptr_nonnull (tmpdir);
}

static void
teardown (void)
{
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *p = g_build_filename (tmpdir, name, NULL);
    g_unlink (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
}

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

#define N 23
#define D 19

static void
fill (float *feat, gint32 *labels, guint8 *thumbs, guint n, guint seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (guint i = 0; i < n * D; i++)
    feat[i] = (float) g_rand_double_range (r, -2, 3);
  for (guint i = 0; i < n; i++)
    labels[i] = g_rand_int_range (r, 0, 10);
  if (thumbs)
    for (guint i = 0; i < n * 28 * 28; i++)
      thumbs[i] = (guint8) g_rand_int_range (r, 0, 256);
  g_rand_free (r);
}

static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

START_TEST (test_round_trip)
{
  static float feat[N * D];
  static gint32 labels[N];
  static guint8 thumbs[N * 28 * 28];
  fill (feat, labels, thumbs, N, 1);
  const char *names[] = { "zero", "one", "two", "three", "four", "five",
    "six", "seven", "eight", "nine"
  };
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("abc123",
      CBIR_CODE_FLOAT, D, TRUE);
  cbir_gallery_builder_set_label_names (b, names, 10);
  for (guint i = 0; i < N; i++) {
    g_autofree char *id = i == 5 ? NULL : g_strdup_printf ("img/%u.png", i);
    cbir_gallery_builder_add (b, feat + i * D, labels[i],
        i == 7 ? NULL : thumbs + i * 784, id);
  }
  ck_assert_uint_eq (cbir_gallery_builder_size (b), N);
  g_autofree char *path = tmp_path ("g.safetensors");
  g_autoptr (GError) err = NULL;
  ck_assert_msg (cbir_gallery_builder_write (b, path, &err), "%s",
      err ? err->message : "");

  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  ck_assert_msg (g != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (cbir_gallery_get_path (g), path);
  ck_assert_uint_eq (cbir_gallery_size (g), N);
  ck_assert_int_eq (cbir_gallery_get_code_type (g), CBIR_CODE_FLOAT);
  ck_assert_uint_eq (cbir_gallery_get_dim (g), D);
  ck_assert_uint_eq (cbir_gallery_get_code_bytes (g), (D + 7) / 8);
  ck_assert_uint_eq (cbir_gallery_get_code_bits (g), D);
  ck_assert_str_eq (cbir_gallery_get_model_fingerprint (g), "abc123");
  ck_assert_str_eq (cbir_gallery_get_metric_name (g), "l2");
  ck_assert (memcmp (cbir_gallery_get_features (g), feat, sizeof (feat)) == 0);
  ck_assert (memcmp (cbir_gallery_get_labels (g), labels, sizeof (labels))
      == 0);
  /* thresholds: the per-dimension (lower) median of the features */
  const float *thr = cbir_gallery_get_bit_thresholds (g);
  ck_assert_ptr_nonnull (thr);
  for (guint j = 0; j < D; j++) {
    float col[N];
    for (guint i = 0; i < N; i++)
      col[i] = feat[i * D + j];
    qsort (col, N, sizeof (float), cmp_float);
    ck_assert_float_eq (thr[j], col[(N - 1) / 2]);
  }
  /* codes: bit j of item i = feature > threshold, LSB first */
  const guint8 *codes = cbir_gallery_get_codes (g);
  guint cb = (D + 7) / 8;
  for (guint i = 0; i < N; i++)
    for (guint j = 0; j < cb * 8; j++) {
      gboolean bit = (codes[i * cb + j / 8] >> (j % 8)) & 1;
      gboolean want = j < D && feat[i * D + j] > thr[j];
      ck_assert_int_eq (bit, want);
    }
  for (guint i = 0; i < N; i++) {
    const guint8 *t = cbir_gallery_get_thumbnail (g, i);
    ck_assert_ptr_nonnull (t);
    if (i == 7) {
      for (guint p = 0; p < 784; p++)
        ck_assert_uint_eq (t[p], 0);
    } else {
      ck_assert (memcmp (t, thumbs + i * 784, 784) == 0);
    }
    if (i == 5) {
      ck_assert_ptr_null (cbir_gallery_get_id (g, i));
    } else {
      g_autofree char *id = g_strdup_printf ("img/%u.png", i);
      ck_assert_str_eq (cbir_gallery_get_id (g, i), id);
    }
  }
  ck_assert_ptr_null (cbir_gallery_get_thumbnail (g, N));
  ck_assert_ptr_null (cbir_gallery_get_id (g, N));
  ck_assert_str_eq (cbir_gallery_get_label_name (g, 3), "three");
  ck_assert_ptr_null (cbir_gallery_get_label_name (g, 10));
  ck_assert_ptr_null (cbir_gallery_get_label_name (g, -1));
  ck_assert_uint_eq (cbir_gallery_get_n_label_names (g), 10);

  /* the in-memory build holds the same */
  g_autoptr (CbirGallery) m = cbir_gallery_builder_build (b);
  ck_assert_uint_eq (cbir_gallery_size (m), N);
  ck_assert (memcmp (cbir_gallery_get_codes (m), codes, N * cb) == 0);
  ck_assert (memcmp (cbir_gallery_get_bit_thresholds (m), thr,
          D * sizeof (float)) == 0);
  ck_assert_str_eq (cbir_gallery_get_id (m, 3), "img/3.png");
  ck_assert_str_eq (cbir_gallery_get_label_name (m, 9), "nine");

  /* a minimal gallery: no thumbnails, ids or names */
  g_autoptr (CbirGalleryBuilder) b2 = cbir_gallery_builder_new ("abc123",
      CBIR_CODE_FLOAT, D, FALSE);
  cbir_gallery_builder_set_store (b2, TRUE, FALSE);
  cbir_gallery_builder_set_metric (b2, "cosine");
  cbir_gallery_builder_add (b2, feat, 4, NULL, NULL);
  g_autofree char *p2 = tmp_path ("min.safetensors");
  ck_assert (cbir_gallery_builder_write (b2, p2, NULL));
  g_autoptr (CbirGallery) g2 = cbir_gallery_open (p2, &err);
  ck_assert_msg (g2 != NULL, "%s", err ? err->message : "");
  ck_assert_ptr_null (cbir_gallery_get_codes (g2));
  ck_assert_ptr_null (cbir_gallery_get_thumbnail (g2, 0));
  ck_assert_ptr_null (cbir_gallery_get_id (g2, 0));
  ck_assert_ptr_null (cbir_gallery_get_label_name (g2, 0));
  ck_assert_str_eq (cbir_gallery_get_metric_name (g2), "cosine");
}
END_TEST

START_TEST (test_bits_only)
{
  static float feat[N * D];
  static gint32 labels[N];
  fill (feat, labels, NULL, N, 2);
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("bitsmodel",
      CBIR_CODE_BITS, D, FALSE);
  for (guint i = 0; i < N; i++)
    cbir_gallery_builder_add (b, feat + i * D, labels[i], NULL, NULL);
  g_autofree char *path = tmp_path ("bits.safetensors");
  ck_assert (cbir_gallery_builder_write (b, path, NULL));
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  ck_assert_msg (g != NULL, "%s", err ? err->message : "");
  ck_assert_int_eq (cbir_gallery_get_code_type (g), CBIR_CODE_BITS);
  ck_assert_ptr_null (cbir_gallery_get_features (g));
  ck_assert_uint_eq (cbir_gallery_get_dim (g), 0);
  ck_assert_uint_eq (cbir_gallery_get_code_bits (g), D);
  ck_assert_str_eq (cbir_gallery_get_metric_name (g), "hamming");
  const float *thr = cbir_gallery_get_bit_thresholds (g);
  const guint8 *codes = cbir_gallery_get_codes (g);
  guint cb = (D + 7) / 8;
  for (guint j = 0; j < D; j++)
    ck_assert_float_eq (thr[j], 0.f);
  for (guint i = 0; i < N; i++)
    for (guint j = 0; j < D; j++)
      ck_assert_int_eq ((codes[i * cb + j / 8] >> (j % 8)) & 1,
          feat[i * D + j] > 0);
}
END_TEST

START_TEST (test_append)
{
  static float feat[N * D];
  static gint32 labels[N];
  static guint8 thumbs[N * 784];
  fill (feat, labels, thumbs, N, 3);
  g_autofree char *path = tmp_path ("app.safetensors");
  const guint first = 15;
  {
    g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fpA",
        CBIR_CODE_FLOAT, D, TRUE);
    for (guint i = 0; i < first; i++) {
      g_autofree char *id = g_strdup_printf ("a%u", i);
      cbir_gallery_builder_add (b, feat + i * D, labels[i], thumbs + i * 784,
          id);
    }
    ck_assert (cbir_gallery_builder_write (b, path, NULL));
  }
  g_autoptr (CbirGallery) g0 = cbir_gallery_open (path, NULL);
  ck_assert_ptr_nonnull (g0);
  float thr0[D];
  memcpy (thr0, cbir_gallery_get_bit_thresholds (g0), sizeof (thr0));

  /* items added before loading go after the file's */
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fpA",
      CBIR_CODE_FLOAT, D, TRUE);
  cbir_gallery_builder_add (b, feat + first * D, labels[first],
      thumbs + first * 784, "a15");
  g_autoptr (GError) err = NULL;
  ck_assert_msg (cbir_gallery_builder_load_existing (b, path, &err), "%s",
      err ? err->message : "");
  for (guint i = first + 1; i < N; i++) {
    g_autofree char *id = g_strdup_printf ("a%u", i);
    cbir_gallery_builder_add (b, feat + i * D, labels[i], thumbs + i * 784,
        id);
  }
  ck_assert_uint_eq (cbir_gallery_builder_size (b), N);
  /* rewrite the same file, replacing it atomically */
  ck_assert (cbir_gallery_builder_write (b, path, NULL));
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  ck_assert_msg (g != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_gallery_size (g), N);
  ck_assert (memcmp (cbir_gallery_get_features (g), feat, sizeof (feat)) == 0);
  ck_assert (memcmp (cbir_gallery_get_labels (g), labels, sizeof (labels))
      == 0);
  for (guint i = 0; i < N; i++) {
    g_autofree char *id = g_strdup_printf ("a%u", i);
    ck_assert_str_eq (cbir_gallery_get_id (g, i), id);
    ck_assert (memcmp (cbir_gallery_get_thumbnail (g, i), thumbs + i * 784,
            784) == 0);
  }
  /* the first file's thresholds are kept, so old codes stay valid */
  ck_assert (memcmp (cbir_gallery_get_bit_thresholds (g), thr0,
          sizeof (thr0)) == 0);
  ck_assert (memcmp (cbir_gallery_get_codes (g), cbir_gallery_get_codes (g0),
          first * ((D + 7) / 8)) == 0);
  /* the still-open old mapping is intact (rename, not overwrite) */
  ck_assert (memcmp (cbir_gallery_get_features (g0), feat,
          first * D * sizeof (float)) == 0);
  /* no temporary file left behind */
  GDir *dir = g_dir_open (tmpdir, 0, NULL);
  const char *name;
  guint files = 0;
  while ((name = g_dir_read_name (dir)))
    files++;
  g_dir_close (dir);
  ck_assert_uint_eq (files, 1);

  /* append refused: other model, other dim, other code type */
  g_autoptr (CbirGalleryBuilder) bm = cbir_gallery_builder_new ("fpB",
      CBIR_CODE_FLOAT, D, TRUE);
  g_clear_error (&err);
  ck_assert (!cbir_gallery_builder_load_existing (bm, path, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  ck_assert (strstr (err->message, "fpA") && strstr (err->message, "fpB"));
  ck_assert (strstr (err->message, path));
  g_autoptr (CbirGalleryBuilder) bd = cbir_gallery_builder_new ("fpA",
      CBIR_CODE_FLOAT, D + 1, TRUE);
  g_clear_error (&err);
  ck_assert (!cbir_gallery_builder_load_existing (bd, path, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  g_autoptr (CbirGalleryBuilder) bt = cbir_gallery_builder_new ("fpA",
      CBIR_CODE_BITS, D, TRUE);
  g_clear_error (&err);
  ck_assert (!cbir_gallery_builder_load_existing (bt, path, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  /* a missing file is an IO error */
  g_autofree char *missing = tmp_path ("missing.safetensors");
  g_clear_error (&err);
  ck_assert (!cbir_gallery_builder_load_existing (bm, missing, &err));
  ck_assert (err != NULL);
}
END_TEST

START_TEST (test_check_model)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirModel) model = cbir_model_new_preset ("binary-xor", &err);
  ck_assert_msg (model != NULL, "%s", err ? err->message : "");
  const char *fp = cbir_model_get_fingerprint (model);
  guint dim = cbir_model_get_code_dim (model);
  float *f = g_new0 (float, dim);
  g_autofree char *ok_path = tmp_path ("ok.safetensors");
  g_autofree char *other_path = tmp_path ("other.safetensors");
  g_autofree char *dim_path = tmp_path ("dim.safetensors");
  {
    g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new (fp,
        cbir_model_get_code_type (model), dim, FALSE);
    cbir_gallery_builder_add (b, f, 1, NULL, NULL);
    ck_assert (cbir_gallery_builder_write (b, ok_path, NULL));
    g_autoptr (CbirGalleryBuilder) o = cbir_gallery_builder_new
        ("0123456789abcdef", cbir_model_get_code_type (model), dim, FALSE);
    cbir_gallery_builder_add (o, f, 1, NULL, NULL);
    ck_assert (cbir_gallery_builder_write (o, other_path, NULL));
    g_autoptr (CbirGalleryBuilder) d = cbir_gallery_builder_new (fp,
        cbir_model_get_code_type (model), dim - 1, FALSE);
    cbir_gallery_builder_add (d, f, 1, NULL, NULL);
    ck_assert (cbir_gallery_builder_write (d, dim_path, NULL));
  }
  g_free (f);
  g_autoptr (CbirGallery) g = cbir_gallery_open (ok_path, NULL);
  ck_assert (cbir_gallery_check_model (g, model, &err));
  g_autoptr (CbirGallery) o = cbir_gallery_open (other_path, NULL);
  ck_assert (!cbir_gallery_check_model (o, model, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  ck_assert_msg (strstr (err->message, fp) != NULL, "%s", err->message);
  ck_assert (strstr (err->message, "0123456789abcdef") != NULL);
  ck_assert (strstr (err->message, other_path) != NULL);
  g_autoptr (CbirGallery) d = cbir_gallery_open (dim_path, NULL);
  g_clear_error (&err);
  ck_assert (!cbir_gallery_check_model (d, model, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  ck_assert (strstr (err->message, dim_path) != NULL);
}
END_TEST

/* A code holding NaN or infinity (a broken model) is never indexed and
 * never matched: the builder refuses it, and every search entry point
 * gives such a query no hits and +inf distances (plain L2, cosine,
 * Hamming, diffusion), leaving the other queries of a batch as alone. */
START_TEST (test_non_finite_codes)
{
  static float feat[N * D];
  static gint32 labels[N];
  fill (feat, labels, NULL, N, 11);
  g_autofree char *path = tmp_path ("finite.safetensors");
  {
    g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
        CBIR_CODE_FLOAT, D, FALSE);
    float bad[D];
    memcpy (bad, feat, sizeof bad);
    bad[D - 1] = NAN;
    ck_assert (!cbir_gallery_builder_add (b, bad, 1, NULL, NULL));
    bad[D - 1] = -INFINITY;
    ck_assert (!cbir_gallery_builder_add (b, bad, 1, NULL, NULL));
    ck_assert_uint_eq (cbir_gallery_builder_size (b), 0);
    for (guint i = 0; i < N; i++)
      ck_assert (cbir_gallery_builder_add (b, feat + i * D, labels[i], NULL,
              NULL));
    ck_assert (cbir_gallery_builder_set_graph (b, TRUE, 5, 3.0f, NULL));
    ck_assert (cbir_gallery_builder_write (b, path, NULL));
  }
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  ck_assert_msg (g != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_gallery_size (g), N);

  float q[3 * D];
  memcpy (q, feat + 4 * D, D * sizeof (float));
  memcpy (q + D, feat + 5 * D, D * sizeof (float));
  memcpy (q + 2 * D, feat + 6 * D, D * sizeof (float));
  q[D + 3] = NAN;
  const CbirMetric metrics[] = { CBIR_METRIC_L2, CBIR_METRIC_COSINE,
    CBIR_METRIC_HAMMING, CBIR_METRIC_COSINE
  };
  for (guint m = 0; m < G_N_ELEMENTS (metrics); m++) {
    g_autoptr (CbirSearcher) s = cbir_searcher_new (g, metrics[m], 0, &err);
    ck_assert_msg (s != NULL, "%s", err ? err->message : "");
    if (m == 3)
      ck_assert (cbir_searcher_set_diffusion (s, cbir_gallery_get_graph (g),
              NULL, NULL));
    for (guint inf = 0; inf < 2; inf++) {
      const guint k = 5;
      CbirHit one[5], batch[3 * 5];
      guint n_hits[3] = { 99, 99, 99 };
      float d1[N], db[3 * N];
      q[D + 3] = inf ? INFINITY : NAN;
      ck_assert_uint_eq (cbir_searcher_search (s, q + D, k, one), 0);
      cbir_searcher_search_batch (s, q, 3, k, batch, n_hits);
      ck_assert_uint_eq (n_hits[1], 0);
      for (guint j = 0; j < k; j++) {
        ck_assert_uint_eq (batch[k + j].index, G_MAXUINT);
        ck_assert_int_eq (batch[k + j].label, -1);
        ck_assert (isinf (batch[k + j].distance));
      }
      cbir_searcher_distances (s, q + D, d1);
      cbir_searcher_distances_batch (s, q, 3, db);
      for (guint i = 0; i < N; i++)
        ck_assert (isinf (d1[i]) && d1[i] > 0 && isinf (db[N + i])
            && db[N + i] > 0);
      /* the finite queries of the batch are unaffected */
      for (guint r = 0; r < 3; r += 2) {
        guint n = cbir_searcher_search (s, q + r * D, k, one);
        ck_assert_uint_eq (n_hits[r], n);
        ck_assert_uint_eq (n, k);
        for (guint j = 0; j < n; j++)
          ck_assert_uint_eq (batch[r * k + j].index, one[j].index);
        cbir_searcher_distances (s, q + r * D, d1);
        for (guint i = 0; i < N; i++)
          ck_assert (isfinite (db[r * N + i]));
      }
    }
  }
}
END_TEST

/* ---- corrupt files, made with the safetensors writer ---- */

typedef struct
{
  const char *format, *version, *fingerprint, *code_type, *metric;
  const char *label_names, *code_bits;
  gint64 n_labels, n_feat, dim, n_codes, code_bytes, n_thr, n_thumbs;
  gboolean feat_f64, no_labels, no_features;
  const char *ids;              /* NULL: none */
  gsize ids_len;
  guint nan_item;               /* > 0: NaN in item nan_item - 1's features */
  gboolean inf_thr;             /* +inf in a bit threshold */
} Spec;

static Spec
good_spec (void)
{
  Spec s = { "gst-cbir-gallery", "1", "fp", "float", "l2", NULL, NULL,
    4, 4, 10, 4, 2, 10, -1, FALSE, FALSE, FALSE, NULL, 0
  };
  return s;
}

static char *
write_spec (const Spec *s, const char *name)
{
  static guint8 zeros[1 << 16];
  static float feat[1 << 14], thr[1 << 14];
  g_autoptr (CbirSafetensorsWriter) w = cbir_safetensors_writer_new ();
  memset (feat, 0, sizeof feat);
  memset (thr, 0, sizeof thr);
  if (s->nan_item)
    feat[(s->nan_item - 1) * s->dim + s->dim / 2] = NAN;
  if (s->inf_thr)
    thr[s->n_thr - 1] = INFINITY;
  if (s->format)
    cbir_safetensors_writer_set_metadata (w, "format", s->format);
  if (s->version)
    cbir_safetensors_writer_set_metadata (w, "version", s->version);
  if (s->fingerprint)
    cbir_safetensors_writer_set_metadata (w, "model_fingerprint",
        s->fingerprint);
  if (s->code_type)
    cbir_safetensors_writer_set_metadata (w, "code_type", s->code_type);
  if (s->metric)
    cbir_safetensors_writer_set_metadata (w, "metric", s->metric);
  if (s->label_names)
    cbir_safetensors_writer_set_metadata (w, "label_names", s->label_names);
  if (s->code_bits)
    cbir_safetensors_writer_set_metadata (w, "code_bits", s->code_bits);
  gint64 sl[1] = { s->n_labels };
  if (!s->no_labels)
    cbir_safetensors_writer_add (w, "labels", CBIR_DTYPE_I32, 1, sl, zeros);
  gint64 sf[2] = { s->n_feat, s->dim };
  if (!s->no_features)
    cbir_safetensors_writer_add (w, "features",
        s->feat_f64 ? CBIR_DTYPE_F64 : CBIR_DTYPE_F32, 2, sf,
        s->feat_f64 ? (const void *) zeros : (const void *) feat);
  gint64 sc[2] = { s->n_codes, s->code_bytes };
  if (s->n_codes >= 0)
    cbir_safetensors_writer_add (w, "codes", CBIR_DTYPE_U8, 2, sc, zeros);
  gint64 st[1] = { s->n_thr };
  if (s->n_thr >= 0)
    cbir_safetensors_writer_add (w, "bit_thresholds", CBIR_DTYPE_F32, 1, st,
        thr);
  gint64 sth[3] = { s->n_thumbs, 28, 28 };
  if (s->n_thumbs >= 0)
    cbir_safetensors_writer_add (w, "thumbnails", CBIR_DTYPE_U8, 3, sth,
        zeros);
  gint64 si[1] = { (gint64) s->ids_len };
  if (s->ids)
    cbir_safetensors_writer_add (w, "ids", CBIR_DTYPE_U8, 1, si, s->ids);
  char *path = tmp_path (name);
  g_autoptr (GError) err = NULL;
  ck_assert_msg (cbir_safetensors_writer_write (w, path, &err), "%s",
      err ? err->message : "");
  return path;
}

static void
expect_refused (const Spec *s, CbirError code, const char *needle)
{
  g_autofree char *path = write_spec (s, "bad.safetensors");
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  ck_assert_msg (g == NULL, "accepted a bad gallery (%s)", needle);
  ck_assert_msg (g_error_matches (err, CBIR_ERROR, code),
      "wrong error for %s: %s", needle, err->message);
  ck_assert_msg (strstr (err->message, path) != NULL, "%s", err->message);
  ck_assert_msg (strstr (err->message, needle) != NULL,
      "'%s' not in: %s", needle, err->message);
}

START_TEST (test_invalid_metadata_and_shapes)
{
  Spec s = good_spec ();
  {
    g_autofree char *path = write_spec (&s, "good.safetensors");
    g_autoptr (GError) err = NULL;
    g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
    ck_assert_msg (g != NULL, "%s", err ? err->message : "");
  }
  s = good_spec (); s.format = "gst-cbir-model";
  expect_refused (&s, CBIR_ERROR_FORMAT, "not a gallery");
  s = good_spec (); s.format = NULL;
  expect_refused (&s, CBIR_ERROR_FORMAT, "format");
  s = good_spec (); s.version = "2";
  expect_refused (&s, CBIR_ERROR_UNSUPPORTED, "version 2");
  s = good_spec (); s.version = NULL;
  expect_refused (&s, CBIR_ERROR_FORMAT, "version");
  s = good_spec (); s.fingerprint = NULL;
  expect_refused (&s, CBIR_ERROR_FORMAT, "model_fingerprint");
  s = good_spec (); s.code_type = "ternary";
  expect_refused (&s, CBIR_ERROR_FORMAT, "code_type");
  s = good_spec (); s.metric = "manhattan";
  expect_refused (&s, CBIR_ERROR_FORMAT, "manhattan");
  s = good_spec (); s.no_labels = TRUE;
  expect_refused (&s, CBIR_ERROR_FORMAT, "labels");
  s = good_spec (); s.n_feat = 3;       /* features for 3 of 4 items */
  expect_refused (&s, CBIR_ERROR_FORMAT, "features");
  s = good_spec (); s.feat_f64 = TRUE;
  expect_refused (&s, CBIR_ERROR_FORMAT, "features");
  s = good_spec (); s.n_codes = 5;
  expect_refused (&s, CBIR_ERROR_FORMAT, "codes");
  s = good_spec (); s.code_bytes = 3;   /* 10 dims need 2 bytes */
  expect_refused (&s, CBIR_ERROR_FORMAT, "bit_thresholds");
  s = good_spec (); s.n_thr = 9;
  expect_refused (&s, CBIR_ERROR_FORMAT, "bit_thresholds");
  s = good_spec (); s.n_thumbs = 3;
  expect_refused (&s, CBIR_ERROR_FORMAT, "thumbnails");
  s = good_spec (); s.no_features = TRUE; s.n_codes = -1; s.n_thr = -1;
  expect_refused (&s, CBIR_ERROR_FORMAT, "neither");
  s = good_spec (); s.no_features = TRUE;     /* float type, bits only */
  expect_refused (&s, CBIR_ERROR_FORMAT, "features");
  s = good_spec (); s.code_type = "bits"; s.n_codes = -1; s.n_thr = -1;
  expect_refused (&s, CBIR_ERROR_FORMAT, "codes");
  s = good_spec (); s.no_features = TRUE; s.n_thr = -1; s.code_bits = "17";
  s.code_type = "bits";                 /* 17 bits in 2 bytes */
  expect_refused (&s, CBIR_ERROR_FORMAT, "code_bits");
  s = good_spec (); s.label_names = "[\"a\", 3]";
  expect_refused (&s, CBIR_ERROR_FORMAT, "label_names");
  s = good_spec (); s.label_names = "{not json";
  expect_refused (&s, CBIR_ERROR_FORMAT, "label_names");
  s = good_spec (); s.ids = "a\0b\0c\0"; s.ids_len = 6;
  expect_refused (&s, CBIR_ERROR_FORMAT, "3 ids for 4 items");
  s = good_spec (); s.ids = "a\0b\0c\0d"; s.ids_len = 7;
  expect_refused (&s, CBIR_ERROR_FORMAT, "NUL");
  /* a NaN code would match every query at distance 0 (or none) */
  s = good_spec (); s.nan_item = 3;
  expect_refused (&s, CBIR_ERROR_FORMAT, "\"features\" holds NaN or "
      "infinite values (item 2)");
  s = good_spec (); s.inf_thr = TRUE;
  expect_refused (&s, CBIR_ERROR_FORMAT, "\"bit_thresholds\" holds NaN");
  /* bits-only, code_bits from the metadata, no thresholds: accepted */
  s = good_spec (); s.no_features = TRUE; s.n_thr = -1; s.code_bits = "12";
  s.code_type = "bits";
  {
    g_autofree char *path = write_spec (&s, "bits12.safetensors");
    g_autoptr (GError) err = NULL;
    g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
    ck_assert_msg (g != NULL, "%s", err ? err->message : "");
    ck_assert_uint_eq (cbir_gallery_get_code_bits (g), 12);
    ck_assert_ptr_null (cbir_gallery_get_bit_thresholds (g));
    ck_assert_str_eq (cbir_gallery_get_metric_name (g), "l2");
  }
}
END_TEST

START_TEST (test_truncated_and_garbage)
{
  static float feat[N * D];
  static gint32 labels[N];
  static guint8 thumbs[N * 784];
  fill (feat, labels, thumbs, N, 9);
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, D, TRUE);
  for (guint i = 0; i < N; i++)
    cbir_gallery_builder_add (b, feat + i * D, labels[i], thumbs + i * 784,
        "x");
  g_autofree char *path = tmp_path ("full.safetensors");
  ck_assert (cbir_gallery_builder_write (b, path, NULL));
  g_autofree char *data = NULL;
  gsize len = 0;
  ck_assert (g_file_get_contents (path, &data, &len, NULL));
  g_autofree char *cut = tmp_path ("cut.safetensors");
  /* every prefix length near the edges, and a spread through the middle */
  for (gsize l = 0; l < len; l += (l < 64 || l > len - 64) ? 1 : 97) {
    ck_assert (g_file_set_contents (cut, data, (gssize) l, NULL));
    g_autoptr (GError) err = NULL;
    g_autoptr (CbirGallery) g = cbir_gallery_open (cut, &err);
    ck_assert_msg (g == NULL, "accepted a file truncated to %zu of %zu", l,
        len);
    ck_assert (err && err->domain == CBIR_ERROR);
    ck_assert_msg (strstr (err->message, cut) != NULL, "%s", err->message);
  }
  /* broken header structure, or a header length past the end / zero */
  g_autofree char *bad = g_memdup2 (data, len);
  const char *colon = memchr (data + 8, ':', len - 8);
  ck_assert_ptr_nonnull (colon);
  const gsize spots[] = { 8, (gsize) (colon - data), 0, 1 };
  for (guint v = 0; v < G_N_ELEMENTS (spots); v++) {
    memcpy (bad, data, len);
    if (v < 2)
      bad[spots[v]] = '}';
    else {
      guint64 hl = v == 2 ? len : 0;
      for (int i = 0; i < 8; i++)
        bad[i] = (char) (hl >> (8 * i));
    }
    ck_assert (g_file_set_contents (cut, bad, (gssize) len, NULL));
    g_autoptr (GError) err = NULL;
    g_autoptr (CbirGallery) g = cbir_gallery_open (cut, &err);
    ck_assert_msg (g == NULL && err != NULL, "variant %u accepted", v);
  }
  /* a directory is not a gallery */
  g_autoptr (GError) err = NULL;
  ck_assert_ptr_null (cbir_gallery_open (tmpdir, &err));
  ck_assert (err != NULL);
}
END_TEST

/* A file written by another tool with tensors at unaligned offsets. */
START_TEST (test_unaligned_foreign_file)
{
  const float feat[6] = { 1.5f, -2, 3, 0.25f, 5, -6 };
  const gint32 labels[2] = { 7, 8 };
  g_autofree char *header = g_strdup_printf ("{\"__metadata__\": "
      "{\"format\": \"gst-cbir-gallery\", \"version\": \"1\", "
      "\"model_fingerprint\": \"f\", \"code_type\": \"float\"}, "
      "\"pad\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
      " \"features\": {\"dtype\": \"F32\", \"shape\": [2, 3], "
      "\"data_offsets\": [1, 25]}, "
      "\"labels\": {\"dtype\": \"I32\", \"shape\": [2], "
      "\"data_offsets\": [25, 33]}}");
  guint64 hl = strlen (header);
  GByteArray *a = g_byte_array_new ();
  guint8 le[8];
  for (int i = 0; i < 8; i++)
    le[i] = (guint8) (hl >> (8 * i));
  g_byte_array_append (a, le, 8);
  g_byte_array_append (a, (const guint8 *) header, (guint) hl);
  guint8 pad = 0;
  g_byte_array_append (a, &pad, 1);
  g_byte_array_append (a, (const guint8 *) feat, sizeof (feat));
  g_byte_array_append (a, (const guint8 *) labels, sizeof (labels));
  g_autofree char *path = tmp_path ("foreign.safetensors");
  ck_assert (g_file_set_contents (path, (const char *) a->data, a->len,
          NULL));
  g_byte_array_unref (a);
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  ck_assert_msg (g != NULL, "%s", err ? err->message : "");
  const float *f = cbir_gallery_get_features (g);
  ck_assert_uint_eq ((guintptr) f % 4, 0);
  ck_assert (memcmp (f, feat, sizeof (feat)) == 0);
  ck_assert_int_eq (cbir_gallery_get_labels (g)[1], 8);
  ck_assert_uint_eq (cbir_gallery_get_dim (g), 3);
  ck_assert_ptr_null (cbir_gallery_get_codes (g));
}
END_TEST

START_TEST (test_write_failure_is_clean)
{
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fp",
      CBIR_CODE_FLOAT, 4, FALSE);
  float f[4] = { 1, 2, 3, 4 };
  cbir_gallery_builder_add (b, f, 0, NULL, NULL);
  g_autofree char *path = g_build_filename (tmpdir, "no-such-dir",
      "g.safetensors", NULL);
  g_autoptr (GError) err = NULL;
  ck_assert (!cbir_gallery_builder_write (b, path, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
  ck_assert (!g_file_test (path, G_FILE_TEST_EXISTS));
}
END_TEST

/* DBA in the builder: the file holds the augmented features (what
 * cbir_dba_compute gives for the gallery's metric), the raw ones, bits of
 * the augmented features at their medians, and the "dba" metadata; build
 * () gives the same gallery. */
START_TEST (test_dba_round_trip)
{
  static float feat[N * D];
  static gint32 labels[N];
  fill (feat, labels, NULL, N, 21);
  const char *metrics[] = { "cosine", "l2" };
  for (guint mi = 0; mi < G_N_ELEMENTS (metrics); mi++) {
    g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fpD",
        CBIR_CODE_FLOAT, D, FALSE);
    cbir_gallery_builder_set_metric (b, metrics[mi]);
    g_autoptr (GError) err = NULL;
    ck_assert (cbir_gallery_builder_set_dba (b, 4, 2.5f, &err));
    float alpha = 0;
    ck_assert_uint_eq (cbir_gallery_builder_get_dba (b, &alpha), 4);
    ck_assert_float_eq (alpha, 2.5f);
    for (guint i = 0; i < N; i++)
      cbir_gallery_builder_add (b, feat + i * D, labels[i], NULL, NULL);
    g_autofree char *path = tmp_path ("dba.safetensors");
    ck_assert (cbir_gallery_builder_write (b, path, &err));

    static float want[N * D];
    CbirMetric m = mi == 0 ? CBIR_METRIC_COSINE : CBIR_METRIC_L2;
    ck_assert (cbir_dba_compute (feat, N, D, m, 4, 2.5f, 1, want, NULL));
    g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
    ck_assert_msg (g != NULL, "%s", err ? err->message : "");
    g_autoptr (CbirGallery) gm = cbir_gallery_builder_build (b);
    CbirGallery *both[2] = { g, gm };
    for (guint t = 0; t < 2; t++) {
      CbirGallery *x = both[t];
      alpha = 0;
      ck_assert_uint_eq (cbir_gallery_get_dba (x, &alpha), 4);
      ck_assert_float_eq (alpha, 2.5f);
      ck_assert (memcmp (cbir_gallery_get_features (x), want,
              sizeof (want)) == 0);
      ck_assert (memcmp (cbir_gallery_get_raw_features (x), feat,
              sizeof (feat)) == 0);
      ck_assert (memcmp (cbir_gallery_get_features (x), feat,
              sizeof (feat)) != 0);
      /* bits: the augmented features at their per-dimension medians */
      const float *thr = cbir_gallery_get_bit_thresholds (x);
      for (guint j = 0; j < D; j++) {
        float col[N];
        for (guint i = 0; i < N; i++)
          col[i] = want[i * D + j];
        qsort (col, N, sizeof (float), cmp_float);
        ck_assert_float_eq (thr[j], col[(N - 1) / 2]);
      }
      guint8 codes[N * ((D + 7) / 8)];
      cbir_codes_pack_bits (want, N, D, thr, codes);
      ck_assert (memcmp (cbir_gallery_get_codes (x), codes,
              sizeof (codes)) == 0);
    }
    g_autoptr (CbirSafetensors) st = cbir_safetensors_open (path, NULL);
    ck_assert_str_eq (cbir_safetensors_get_metadata (st, "dba"),
        "k=4,alpha=2.5");
    ck_assert_str_eq (cbir_safetensors_get_metadata (st,
            "bit_thresholds_rule"), "median");
  }
  /* without DBA: no raw copy, get_raw_features is the features */
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fpD",
      CBIR_CODE_FLOAT, D, FALSE);
  for (guint i = 0; i < N; i++)
    cbir_gallery_builder_add (b, feat + i * D, labels[i], NULL, NULL);
  g_autoptr (CbirGallery) g = cbir_gallery_builder_build (b);
  ck_assert_uint_eq (cbir_gallery_get_dba (g, NULL), 0);
  ck_assert_ptr_eq (cbir_gallery_get_raw_features (g),
      cbir_gallery_get_features (g));
  /* refused: a builder without float features, a bad alpha */
  g_autoptr (CbirGalleryBuilder) bb = cbir_gallery_builder_new ("fpD",
      CBIR_CODE_BITS, D, FALSE);
  g_autoptr (GError) err = NULL;
  ck_assert (!cbir_gallery_builder_set_dba (bb, 3, 3.f, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  ck_assert (!cbir_gallery_builder_set_dba (b, 3, -1.f, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  ck_assert (cbir_gallery_builder_set_dba (bb, 0, 3.f, NULL));
}
END_TEST

/* A cosine gallery with DBA (k 3, alpha 3) of the first n items. */
static void
write_dba_gallery (const char *path, const float *feat, const gint32 *labels,
    guint n, guint dim)
{
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fpE",
      CBIR_CODE_FLOAT, dim, FALSE);
  cbir_gallery_builder_set_metric (b, "cosine");
  ck_assert (cbir_gallery_builder_set_dba (b, 3, 3.f, NULL));
  for (guint i = 0; i < n; i++)
    cbir_gallery_builder_add (b, feat + i * dim, labels[i], NULL, NULL);
  ck_assert (cbir_gallery_builder_write (b, path, NULL));
}

/* Appending to an augmented file re-runs DBA over all items: the result
 * equals augmenting the concatenation in one go (features, raw features,
 * thresholds, codes); set_dba (0) turns it off. */
START_TEST (test_dba_append)
{
  static float feat[N * D];
  static gint32 labels[N];
  fill (feat, labels, NULL, N, 22);
  const guint first = 14;
  g_autofree char *path = tmp_path ("dba-app.safetensors");
  g_autofree char *whole_path = tmp_path ("dba-whole.safetensors");
  write_dba_gallery (path, feat, labels, first, D);
  write_dba_gallery (whole_path, feat, labels, N, D);
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fpE",
      CBIR_CODE_FLOAT, D, FALSE);
  g_autoptr (GError) err = NULL;
  ck_assert_msg (cbir_gallery_builder_load_existing (b, path, &err), "%s",
      err ? err->message : "");
  ck_assert_uint_eq (cbir_gallery_builder_get_dba (b, NULL), 3);
  for (guint i = first; i < N; i++)
    cbir_gallery_builder_add (b, feat + i * D, labels[i], NULL, NULL);
  ck_assert (cbir_gallery_builder_write (b, path, &err));
  g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
  g_autoptr (CbirGallery) w = cbir_gallery_open (whole_path, &err);
  ck_assert_ptr_nonnull (g);
  ck_assert_ptr_nonnull (w);
  ck_assert_uint_eq (cbir_gallery_size (g), N);
  ck_assert_uint_eq (cbir_gallery_get_dba (g, NULL), 3);
  ck_assert (memcmp (cbir_gallery_get_features (g),
          cbir_gallery_get_features (w), sizeof (feat)) == 0);
  ck_assert (memcmp (cbir_gallery_get_raw_features (g), feat,
          sizeof (feat)) == 0);
  ck_assert (memcmp (cbir_gallery_get_bit_thresholds (g),
          cbir_gallery_get_bit_thresholds (w), sizeof (float) * D) == 0);
  ck_assert (memcmp (cbir_gallery_get_codes (g), cbir_gallery_get_codes (w),
          N * ((D + 7) / 8)) == 0);
  ck_assert (memcmp (cbir_gallery_get_labels (g), labels,
          sizeof (labels)) == 0);

  /* appending with DBA turned off: the raw features, no "dba" */
  g_autoptr (CbirGalleryBuilder) b0 = cbir_gallery_builder_new ("fpE",
      CBIR_CODE_FLOAT, D, FALSE);
  ck_assert (cbir_gallery_builder_set_dba (b0, 0, 3.f, NULL));
  ck_assert (cbir_gallery_builder_load_existing (b0, path, NULL));
  g_autoptr (CbirGallery) g0 = cbir_gallery_builder_build (b0);
  ck_assert_uint_eq (cbir_gallery_get_dba (g0, NULL), 0);
  ck_assert (memcmp (cbir_gallery_get_features (g0), feat,
          sizeof (feat)) == 0);
}
END_TEST

/* Bad DBA data in a file: bad "dba" metadata, a "features_raw" of the
 * wrong shape are refused; "dba" without "features_raw" opens (searching
 * works) but cannot be appended to. */
START_TEST (test_dba_invalid)
{
  static float feat[4 * 10];
  gint32 labels[4] = { 0, 1, 2, 3 };
  const char *bad_meta[] = { "k=3", "alpha=3", "k=x,alpha=3",
    "k=3,alpha=-1", "k=3,alpha=3,beta=1", "" };
  for (guint t = 0; t < G_N_ELEMENTS (bad_meta) + 2; t++) {
    g_autoptr (CbirSafetensorsWriter) w = cbir_safetensors_writer_new ();
    cbir_safetensors_writer_set_metadata (w, "format", "gst-cbir-gallery");
    cbir_safetensors_writer_set_metadata (w, "version", "1");
    cbir_safetensors_writer_set_metadata (w, "model_fingerprint", "fpF");
    cbir_safetensors_writer_set_metadata (w, "code_type", "float");
    cbir_safetensors_writer_set_metadata (w, "dba",
        t < G_N_ELEMENTS (bad_meta) ? bad_meta[t] : "k=3,alpha=3");
    gint64 sl[1] = { 4 }, sf[2] = { 4, 10 }, sr[2] = { 3, 10 };
    cbir_safetensors_writer_add (w, "labels", CBIR_DTYPE_I32, 1, sl, labels);
    cbir_safetensors_writer_add (w, "features", CBIR_DTYPE_F32, 2, sf, feat);
    if (t == G_N_ELEMENTS (bad_meta))
      cbir_safetensors_writer_add (w, "features_raw", CBIR_DTYPE_F32, 2, sr,
          feat);
    g_autofree char *path = tmp_path ("bad-dba.safetensors");
    ck_assert (cbir_safetensors_writer_write (w, path, NULL));
    g_autoptr (GError) err = NULL;
    g_autoptr (CbirGallery) g = cbir_gallery_open (path, &err);
    if (t < G_N_ELEMENTS (bad_meta) + 1) {
      ck_assert_msg (g == NULL, "accepted case %u", t);
      ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_FORMAT));
      ck_assert (strstr (err->message, path));
      ck_assert (strstr (err->message, t < G_N_ELEMENTS (bad_meta)
              ? "dba" : "features_raw"));
    } else {
      ck_assert_msg (g != NULL, "%s", err ? err->message : "");
      ck_assert_uint_eq (cbir_gallery_get_dba (g, NULL), 3);
      g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new ("fpF",
          CBIR_CODE_FLOAT, 10, FALSE);
      ck_assert (!cbir_gallery_builder_load_existing (b, path, &err));
      ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_FORMAT));
      ck_assert (strstr (err->message, "features_raw"));
    }
  }
}
END_TEST

static Suite *
gallery_suite (void)
{
  Suite *s = suite_create ("gallery");
  TCase *tc = tcase_create ("core");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_round_trip);
  tcase_add_test (tc, test_bits_only);
  tcase_add_test (tc, test_append);
  tcase_add_test (tc, test_check_model);
  tcase_add_test (tc, test_invalid_metadata_and_shapes);
  tcase_add_test (tc, test_truncated_and_garbage);
  tcase_add_test (tc, test_unaligned_foreign_file);
  tcase_add_test (tc, test_write_failure_is_clean);
  tcase_add_test (tc, test_dba_round_trip);
  tcase_add_test (tc, test_dba_append);
  tcase_add_test (tc, test_dba_invalid);
  tcase_add_test (tc, test_non_finite_codes);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (gallery_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

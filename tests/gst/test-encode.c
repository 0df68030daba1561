/* cbirencode: embedding meta equals the engine's code, read-only analysis,
 * any frame size, bit models, model errors, caps, property states.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"

static gchar *dir;

static void
setup (void)
{
  dir = tmpdir_new ();
}

static void
teardown (void)
{
  tmpdir_free (dir);
  dir = NULL;
}

static GstHarness *
encode_harness (const gchar * model, const gchar * extra, guint w, guint h)
{
  gchar *desc = g_strdup_printf ("cbirencode model=%s %s", model,
      extra ? extra : "");
  GstHarness *hh = gst_harness_new_parse (desc);
  gchar *caps = gray8_caps (w, h);

  gst_harness_set_src_caps_str (hh, caps);
  g_free (caps);
  g_free (desc);
  return hh;
}

static void
check_float_model (const gchar * preset)
{
  gchar *model_path = make_model (dir, preset);
  CbirModel *m = cbir_model_load (model_path, NULL);
  CbirDataset *ds = load_fixture ();
  GstHarness *h = encode_harness (model_path, NULL, 28, 28);
  guint dim, i, j;
  gfloat *codes = engine_encode_all (m, ds, &dim);

  for (i = 0; i < 8; i++) {
    GstBuffer *in = gray8_buffer (ds->images + i * 784, 28, 28, i);
    GstMemory *mem_in = gst_buffer_peek_memory (in, 0);
    GstBuffer *out;
    GstCbirEmbeddingMeta *e;

    gst_memory_ref (mem_in);
    out = gst_harness_push_and_pull (h, in);
    e = gst_buffer_get_cbir_embedding_meta (out);
    fail_unless (e != NULL);
    fail_unless_equals_int (e->dim, dim);
    fail_unless_equals_int (e->code_type, cbir_model_get_code_type (m));
    fail_unless_equals_string (e->model_fingerprint,
        cbir_model_get_fingerprint (m));
    for (j = 0; j < dim; j++)
      fail_unless (fabsf (e->vector[j] - codes[i * dim + j]) <= 1e-5f *
          (1.0f + fabsf (codes[i * dim + j])), "image %u value %u: %g vs %g",
          i, j, e->vector[j], codes[i * dim + j]);
    if (cbir_model_get_code_type (m) == CBIR_CODE_BITS) {
      guint8 *bits = g_malloc0 ((dim + 7) / 8);

      cbir_codes_pack_bits (codes + i * dim, 1, dim, NULL, bits);
      fail_unless_equals_int (e->n_bits, dim);
      fail_unless (memcmp (e->bits, bits, (dim + 7) / 8) == 0);
      g_free (bits);
    } else {
      fail_unless (e->bits == NULL);
    }
    /* analysis only: the pixels are the same memory, untouched */
    fail_unless (gst_buffer_peek_memory (out, 0) == mem_in);
    fail_unless (gst_buffer_memcmp (out, 0, ds->images + i * 784, 784) == 0);
    gst_memory_unref (mem_in);
    gst_buffer_unref (out);
  }
  gst_harness_teardown (h);
  g_free (codes);
  cbir_dataset_free (ds);
  cbir_model_free (m);
  g_free (model_path);
}

GST_START_TEST (test_float_code_matches_engine)
{
  check_float_model ("keras-dae");
}

GST_END_TEST;

GST_START_TEST (test_bit_code_matches_engine)
{
  check_float_model ("binary-xor");
}

GST_END_TEST;

GST_START_TEST (test_any_size_is_scaled)
{
  gchar *model_path = make_model (dir, "binary-xor");
  CbirModel *m = cbir_model_load (model_path, NULL);
  const guint w = 61, hgt = 45;   /* odd width: padded rows */
  guint8 *pix = g_malloc (w * hgt), scaled[784];
  GstHarness *h = encode_harness (model_path, NULL, w, hgt);
  guint dim = cbir_model_get_code_dim (m), i;
  gfloat *code = g_new (gfloat, dim);
  GstBuffer *out;
  GstCbirEmbeddingMeta *e;

  for (i = 0; i < w * hgt; i++)
    pix[i] = (i * 13 + i / w) & 0xff;
  cbir_preprocess_scale (pix, w, hgt, w, 28, 28, scaled);
  fail_unless (cbir_model_encode_u8 (m, scaled, 1, code, NULL));
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, w, hgt, 0));
  e = gst_buffer_get_cbir_embedding_meta (out);
  fail_unless (e != NULL);
  for (i = 0; i < dim; i++)
    fail_unless (fabsf (e->vector[i] - code[i]) <= 1e-5f * (1 + fabsf (code[i])));
  gst_buffer_unref (out);
  gst_harness_teardown (h);
  g_free (code);
  g_free (pix);
  cbir_model_free (m);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_mnist_preprocess)
{
  gchar *model_path = make_model (dir, "binary-xor");
  GstHarness *h = encode_harness (model_path, "preprocess=mnist", 64, 48);
  guint8 *pix = g_malloc (64 * 48);
  GstBuffer *out;
  guint x, y;

  /* blank paper: no digit, no embedding */
  memset (pix, 230, 64 * 48);
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, 64, 48, 0));
  fail_unless (gst_buffer_get_cbir_embedding_meta (out) == NULL);
  gst_buffer_unref (out);
  /* a dark bar on light paper: a digit "1" */
  for (y = 10; y < 40; y++)
    for (x = 30; x < 35; x++)
      pix[y * 64 + x] = 20;
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, 64, 48, 1));
  fail_unless (gst_buffer_get_cbir_embedding_meta (out) != NULL);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
  g_free (pix);
  g_free (model_path);
}

GST_END_TEST;

/* regions=digits: one ROI "digit" per digit (box = the ink's box), one
 * embedding per ROI equal to the engine's (ink map + normalise + encode) */
#define RW 640
#define RH 200
#define RSCALE 5

static void
check_regions (const gchar * preset, const gchar * preprocess,
    const guint * idx, guint n)
{
  gchar *model_path = make_model (dir, preset);
  CbirModel *m = cbir_model_load (model_path, NULL);
  CbirDataset *ds = load_fixture ();
  gchar *extra = g_strdup_printf ("preprocess=%s regions=digits", preprocess);
  GstHarness *h = encode_harness (model_path, extra, RW, RH);
  gboolean mnist = g_str_equal (preprocess, "mnist");
  guint dim = cbir_model_get_code_dim (m), j, i, ne;
  CbirRect truth[4], rects[8];
  gfloat *codes = g_new (gfloat, 8 * dim);
  guint8 *pix = digits_frame (ds, idx, n, RSCALE, RW, RH, truth);
  GstVideoRegionOfInterestMeta *rois[8];
  GstBuffer *out;

  ne = engine_region_codes (m, pix, RW, RH, mnist, 8, rects, codes);
  fail_unless_equals_int (ne, n);
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, RW, RH, 0));
  fail_unless_equals_int (digit_rois (out, rois, 8), n);
  fail_unless_equals_int (n_embeddings (out), n);
  fail_unless (gst_buffer_get_cbir_embedding_meta_for_region (out, -1) ==
      NULL, "a whole-frame embedding in regions mode");
  for (j = 0; j < n; j++) {
    GstCbirEmbeddingMeta *e;

    /* left to right, ids 0.., the engine's box, close to the drawn ink */
    fail_unless_equals_int (rois[j]->id, j);
    fail_unless_equals_int (rois[j]->x, rects[j].x);
    fail_unless_equals_int (rois[j]->y, rects[j].y);
    fail_unless_equals_int (rois[j]->w, rects[j].width);
    fail_unless_equals_int (rois[j]->h, rects[j].height);
    fail_unless (ABS ((gint) rois[j]->x - (gint) truth[j].x) <= RSCALE &&
        ABS ((gint) rois[j]->y - (gint) truth[j].y) <= RSCALE &&
        ABS ((gint) (rois[j]->x + rois[j]->w) - (gint) (truth[j].x +
                truth[j].width)) <= RSCALE &&
        ABS ((gint) (rois[j]->y + rois[j]->h) - (gint) (truth[j].y +
                truth[j].height)) <= RSCALE,
        "digit %u: box %u,%u %ux%u, ink %u,%u %ux%u", j, rois[j]->x,
        rois[j]->y, rois[j]->w, rois[j]->h, truth[j].x, truth[j].y,
        truth[j].width, truth[j].height);
    e = gst_buffer_get_cbir_embedding_meta_for_region (out, rois[j]->id);
    fail_unless (e != NULL, "no embedding for region %u", j);
    fail_unless_equals_int (e->dim, dim);
    fail_unless_equals_string (e->model_fingerprint,
        cbir_model_get_fingerprint (m));
    for (i = 0; i < dim; i++)
      fail_unless (fabsf (e->vector[i] - codes[j * dim + i]) <= 1e-5f *
          (1.0f + fabsf (codes[j * dim + i])), "digit %u value %u: %g vs %g",
          j, i, e->vector[i], codes[j * dim + i]);
    if (cbir_model_get_code_type (m) == CBIR_CODE_BITS) {
      guint8 bits[64] = { 0, };

      fail_unless ((dim + 7) / 8 <= sizeof (bits));
      cbir_codes_pack_bits (codes + j * dim, 1, dim, NULL, bits);
      fail_unless (e->bits != NULL && memcmp (e->bits, bits,
              (dim + 7) / 8) == 0);
    }
  }
  /* the pixels are untouched */
  fail_unless (gst_buffer_memcmp (out, 0, pix, RW) == 0);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
  g_free (pix);
  g_free (codes);
  g_free (extra);
  cbir_dataset_free (ds);
  cbir_model_free (m);
  g_free (model_path);
}

GST_START_TEST (test_regions_two_and_three_digits)
{
  const guint two[] = { 0, 1 }, three[] = { 2, 3, 4 };

  check_regions ("keras-dae", "mnist", two, 2);
  check_regions ("keras-dae", "mnist", three, 3);
  check_regions ("binary-xor", "mnist", three, 3);
  check_regions ("keras-dae", "scale", two, 2);
}

GST_END_TEST;

GST_START_TEST (test_regions_blank_max_and_ids)
{
  gchar *model_path = make_model (dir, "binary-xor");
  CbirDataset *ds = load_fixture ();
  GstHarness *h = encode_harness (model_path,
      "preprocess=mnist regions=digits max-regions=2", RW, RH);
  const guint three[] = { 5, 6, 7 };
  CbirRect truth[3];
  guint8 *pix = digits_frame (ds, three, 3, RSCALE, RW, RH, truth);
  GstVideoRegionOfInterestMeta *rois[8];
  GstBuffer *in, *out;
  GstElement *e;
  guint max, j;

  /* gst-inspect: default whole frame, 8 regions at most */
  e = gst_element_factory_make ("cbirencode", NULL);
  g_object_get (e, "max-regions", &max, NULL);
  fail_unless_equals_int (max, 8);
  {
    gint regions;
    g_object_get (e, "regions", &regions, NULL);
    fail_unless_equals_int (regions, 0);
  }
  gst_object_unref (e);

  /* max-regions=2 of 3 digits: two regions, two embeddings */
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, RW, RH, 0));
  fail_unless_equals_int (digit_rois (out, rois, 8), 2);
  fail_unless_equals_int (n_embeddings (out), 2);
  gst_buffer_unref (out);

  /* an upstream region with id 4: the digits are numbered after it */
  in = gray8_buffer (pix, RW, RH, 1);
  gst_buffer_add_video_region_of_interest_meta (in, "face", 0, 0, 10,
      10)->id = 4;
  out = gst_harness_push_and_pull (h, in);
  fail_unless_equals_int (digit_rois (out, rois, 8), 2);
  for (j = 0; j < 2; j++) {
    fail_unless_equals_int (rois[j]->id, 5 + j);
    fail_unless (gst_buffer_get_cbir_embedding_meta_for_region (out,
            5 + j) != NULL);
  }
  gst_buffer_unref (out);

  /* blank paper: no region, no embedding */
  memset (pix, DIGITS_PAPER, RW * RH);
  out = gst_harness_push_and_pull (h, gray8_buffer (pix, RW, RH, 2));
  fail_unless_equals_int (digit_rois (out, rois, 8), 0);
  fail_unless_equals_int (n_embeddings (out), 0);
  gst_buffer_unref (out);

  gst_harness_teardown (h);
  g_free (pix);
  cbir_dataset_free (ds);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_model_errors)
{
  gchar *bad = g_build_filename (dir, "corrupt-model.safetensors", NULL);
  gchar *desc;
  GstMessage *msg;

  msg = run_pipeline ("videotestsrc num-buffers=2 ! "
      "video/x-raw,format=GRAY8,width=28,height=28 ! "
      "cbirencode model=/nonexistent/model.safetensors ! fakesink", NULL,
      NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "/nonexistent/model.safetensors", NULL);
  gst_message_unref (msg);

  write_file (bad, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": not json}", -1);
  desc = g_strdup_printf ("videotestsrc num-buffers=2 ! "
      "video/x-raw,format=GRAY8,width=28,height=28 ! cbirencode model=%s ! "
      "fakesink", bad);
  msg = run_pipeline (desc, NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_OPEN_READ, bad, NULL);
  gst_message_unref (msg);
  g_free (desc);

  msg = run_pipeline ("videotestsrc num-buffers=2 ! "
      "video/x-raw,format=GRAY8,width=28,height=28 ! cbirencode ! fakesink",
      NULL, NULL);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "model", NULL);
  gst_message_unref (msg);
  g_free (bad);
}

GST_END_TEST;

GST_START_TEST (test_wrong_caps)
{
  gchar *model_path = make_model (dir, "binary-xor");
  gchar *desc = g_strdup_printf ("videotestsrc num-buffers=2 ! "
      "video/x-raw,format=RGB,width=28,height=28 ! cbirencode model=%s ! "
      "fakesink", model_path);
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);
  GstMessage *msg;

  /* RGB cannot link to cbirencode's GRAY8 pad: parse fails or the
   * pipeline errors out with not-negotiated */
  if (p) {
    gst_object_unref (p);
    msg = run_pipeline (desc, NULL, NULL);
    assert_error_mentions (msg, GST_STREAM_ERROR, -1, NULL, NULL);
    gst_message_unref (msg);
  } else {
    fail_unless (g_error_matches (err, GST_PARSE_ERROR,
            GST_PARSE_ERROR_LINK), "%s", err ? err->message : "?");
  }
  g_clear_error (&err);
  g_free (desc);
  g_free (model_path);
}

GST_END_TEST;

GST_START_TEST (test_model_refused_while_playing)
{
  gchar *model_path = make_model (dir, "binary-xor");
  GstHarness *h = encode_harness (model_path, NULL, 28, 28);
  GstElement *e = gst_harness_find_element (h, "cbirencode");
  GstBus *bus = gst_bus_new ();
  gchar *now = NULL;
  GstMessage *msg;
  gint pre;

  gst_element_set_bus (h->element, bus);
  g_object_set (e, "model", "/other.safetensors", NULL);
  gst_util_set_object_arg (G_OBJECT (e), "preprocess", "mnist");
  g_object_get (e, "model", &now, "preprocess", &pre, NULL);
  fail_unless_equals_string (now, model_path);
  fail_unless_equals_int (pre, 0);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL);
  gst_message_unref (msg);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_object_unref (e);
  g_free (now);
  gst_harness_teardown (h);
  g_free (model_path);
}

GST_END_TEST;

static Suite *
cbirencode_suite (void)
{
  Suite *s = suite_create ("cbirencode");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_float_code_matches_engine);
  tcase_add_test (tc, test_bit_code_matches_engine);
  tcase_add_test (tc, test_any_size_is_scaled);
  tcase_add_test (tc, test_mnist_preprocess);
  tcase_add_test (tc, test_regions_two_and_three_digits);
  tcase_add_test (tc, test_regions_blank_max_and_ids);
  tcase_add_test (tc, test_model_errors);
  tcase_add_test (tc, test_wrong_caps);
  tcase_add_test (tc, test_model_refused_while_playing);
  return s;
}

GST_CHECK_MAIN (cbirencode);

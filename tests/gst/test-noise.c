/* cbirnoise: engine noise per frame, any size/stride, passthrough, caps.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"
#include <cbir/noise.h>

/* w x h test picture */
static guint8 *
picture (guint w, guint h)
{
  guint8 *p = g_malloc ((gsize) w * h);
  guint i;

  for (i = 0; i < w * h; i++)
    p[i] = (i * 7) & 0xff;
  return p;
}

/* what the engine gives for frame `stream` (tightly packed) */
static guint8 *
engine_noise (const guint8 * pix, guint w, guint h, CbirNoiseKind kind,
    gfloat level, gfloat gamma, guint64 seed, guint64 stream)
{
  guint8 *out = g_memdup2 (pix, (gsize) w * h);

  cbir_noise_apply_u8_gamma (kind, level, gamma, seed, stream, out, w, h, w);
  return out;
}

static void
check_frames (const gchar * props, CbirNoiseKind kind, gfloat level,
    gfloat gamma, guint64 seed, guint w, guint h)
{
  gchar *desc = g_strdup_printf ("cbirnoise %s", props);
  GstHarness *h_ = gst_harness_new_parse (desc);
  gchar *caps = gray8_caps (w, h);
  guint8 *pix = picture (w, h);
  GstVideoInfo info;
  guint f, y;

  gst_harness_set_src_caps_str (h_, caps);
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_GRAY8, w, h);
  for (f = 0; f < 3; f++) {
    GstBuffer *out = gst_harness_push_and_pull (h_, gray8_buffer (pix, w, h,
            100 + f));
    guint8 *want = engine_noise (pix, w, h, kind, level, gamma, seed, f);
    GstVideoFrame vf;
    gboolean changed = FALSE;

    fail_unless (gst_video_frame_map (&vf, &info, out, GST_MAP_READ));
    for (y = 0; y < h; y++) {
      const guint8 *row = (const guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&vf, 0)
          + y * GST_VIDEO_FRAME_PLANE_STRIDE (&vf, 0);
      guint x;

      fail_unless (memcmp (row, want + y * w, w) == 0, "frame %u row %u", f,
          y);
      if (memcmp (row, pix + y * w, w) != 0)
        changed = TRUE;
      /* row padding untouched */
      for (x = w; x < (guint) GST_VIDEO_FRAME_PLANE_STRIDE (&vf, 0); x++)
        fail_unless_equals_int (row[x], 0xAB);
    }
    fail_unless (changed, "noise changed nothing");
    gst_video_frame_unmap (&vf);
    gst_buffer_unref (out);
    g_free (want);
  }
  g_free (pix);
  g_free (caps);
  g_free (desc);
  gst_harness_teardown (h_);
}

GST_START_TEST (test_gaussian_matches_engine)
{
  /* the default gamma, the default model's input space (0.5), and pixels */
  check_frames ("kind=gaussian level=0.3 seed=42", CBIR_NOISE_GAUSSIAN, 0.3f,
      0.5f, 42, 28, 28);
  check_frames ("kind=gaussian level=0.3 seed=42 gamma=1", CBIR_NOISE_GAUSSIAN,
      0.3f, 1.0f, 42, 28, 28);
}

GST_END_TEST;

GST_START_TEST (test_salt_pepper_odd_size)
{
  /* 30 wide: rows padded to 32 bytes */
  check_frames ("kind=salt-and-pepper level=0.25 seed=7",
      CBIR_NOISE_SALT_PEPPER, 0.25f, 0.5f, 7, 30, 17);
}

GST_END_TEST;

GST_START_TEST (test_passthrough_level_zero)
{
  GstHarness *h = gst_harness_new_parse ("cbirnoise level=0");
  gchar *caps = gray8_caps (28, 28);
  guint8 *pix = picture (28, 28);
  GstBuffer *in, *out;

  gst_harness_set_src_caps_str (h, caps);
  in = gray8_buffer (pix, 28, 28, 0);
  gst_buffer_ref (in);
  out = gst_harness_push_and_pull (h, in);
  /* passthrough: the very same buffer */
  fail_unless (out == in);
  gst_buffer_unref (out);
  gst_buffer_unref (in);
  g_free (pix);
  g_free (caps);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_seed_changes_noise)
{
  GstHarness *h = gst_harness_new_parse ("cbirnoise level=0.5 seed=1");
  GstElement *e = gst_harness_find_element (h, "cbirnoise");
  gchar *caps = gray8_caps (28, 28);
  guint8 *pix = picture (28, 28);
  GstBuffer *a, *b;

  gst_harness_set_src_caps_str (h, caps);
  a = gst_harness_push_and_pull (h, gray8_buffer (pix, 28, 28, 0));
  /* seed is mutable while playing; frame 1 with seed 2 */
  g_object_set (e, "seed", (guint64) 2, NULL);
  b = gst_harness_push_and_pull (h, gray8_buffer (pix, 28, 28, 1));
  {
    guint8 *wa = engine_noise (pix, 28, 28, CBIR_NOISE_GAUSSIAN, 0.5f, 0.5f,
        1, 0);
    guint8 *wb = engine_noise (pix, 28, 28, CBIR_NOISE_GAUSSIAN, 0.5f, 0.5f,
        2, 1);
    guint8 *old = engine_noise (pix, 28, 28, CBIR_NOISE_GAUSSIAN, 0.5f, 0.5f,
        1, 1);

    fail_unless (gst_buffer_memcmp (a, 0, wa, 784) == 0);
    fail_unless (gst_buffer_memcmp (b, 0, wb, 784) == 0);
    fail_if (memcmp (wb, old, 784) == 0, "seed made no difference");
    g_free (wa);
    g_free (wb);
    g_free (old);
  }
  gst_buffer_unref (a);
  gst_buffer_unref (b);
  gst_object_unref (e);
  g_free (pix);
  g_free (caps);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_wrong_caps)
{
  GstHarness *h = gst_harness_new ("cbirnoise");
  GstCaps *rgb = gst_caps_from_string ("video/x-raw,format=RGB,width=28,"
      "height=28,framerate=30/1");
  GstElement *e = gst_harness_find_element (h, "cbirnoise");
  GstPad *sink = gst_element_get_static_pad (e, "sink");
  GstCaps *accepted = gst_pad_query_caps (sink, NULL);

  fail_if (gst_caps_can_intersect (rgb, accepted));
  gst_caps_unref (accepted);
  gst_object_unref (sink);
  gst_object_unref (e);
  /* pushing RGB is refused at negotiation */
  gst_harness_set_src_caps (h, rgb);
  fail_unless_equals_int (gst_harness_push (h, gst_buffer_new_allocate (NULL,
              28 * 28 * 3, NULL)), GST_FLOW_NOT_NEGOTIATED);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_properties)
{
  GstElement *e = gst_element_factory_make ("cbirnoise", NULL);
  gint kind;
  gfloat level, gamma;
  guint64 seed;

  fail_unless (e != NULL);
  g_object_get (e, "kind", &kind, "level", &level, "seed", &seed, "gamma",
      &gamma, NULL);
  fail_unless_equals_int (kind, CBIR_NOISE_GAUSSIAN);
  /* the default model's training corruption */
  fail_unless_equals_float (level, 0.3f);
  fail_unless_equals_float (gamma, 0.5f);
  fail_unless_equals_uint64 (seed, 0);
  gst_util_set_object_arg (G_OBJECT (e), "kind", "salt-and-pepper");
  g_object_get (e, "kind", &kind, NULL);
  fail_unless_equals_int (kind, CBIR_NOISE_SALT_PEPPER);
  gst_object_unref (e);
}

GST_END_TEST;

static Suite *
cbirnoise_suite (void)
{
  Suite *s = suite_create ("cbirnoise");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_gaussian_matches_engine);
  tcase_add_test (tc, test_salt_pepper_odd_size);
  tcase_add_test (tc, test_passthrough_level_zero);
  tcase_add_test (tc, test_seed_changes_noise);
  tcase_add_test (tc, test_wrong_caps);
  tcase_add_test (tc, test_properties);
  return s;
}

GST_CHECK_MAIN (cbirnoise);

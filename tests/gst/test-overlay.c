/* cbiroverlay: draws the real pipeline's result (cbirencode preprocess=mnist
 * ! cbirsearch on a simulated camera frame) and per-region results; the
 * drawn frame is checked against the expected pixels: the normalised query
 * and each hit's gallery thumbnail appear exactly (nearest-neighbour
 * scaled), the voted label is drawn in colour, nothing outside the panel
 * and the boxes changes. Writes overlay-test.png (one overlay frame) into
 * the working directory (the build dir under meson).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cbir-gst-test.h"

#include <cbir/simcam.h>
#include <cairo.h>

#define W 640
#define H 480
#define SCALE 2

static gchar *tmpdir, *model_path, *gallery_path;
static CbirDataset *fixture;

static void
setup (void)
{
  tmpdir = tmpdir_new ();
  model_path = make_model (tmpdir, "default");
  gallery_path = make_gallery (tmpdir, model_path, FIX_N, "g.safetensors");
  fixture = load_fixture ();
}

static void
teardown (void)
{
  cbir_dataset_free (fixture);
  g_free (model_path);
  g_free (gallery_path);
  tmpdir_free (tmpdir);
}

/* a simulated camera frame (GRAY8, stride W) and its truth */
static guint8 *
camera_frame (guint n_digits, guint frame, CbirSimcamTruth * truth)
{
  CbirSimcamParams p;
  CbirSimcam *cam;
  guint8 *pix = g_malloc (W * H);

  cbir_simcam_params_init (&p);
  p.min_digits = p.max_digits = n_digits;
  p.seed = 7;
  cam = cbir_simcam_new (fixture, &p, NULL);
  fail_unless (cam != NULL);
  cbir_simcam_render (cam, frame, pix, W, truth);
  cbir_simcam_free (cam);
  return pix;
}

static GstBuffer *
gray_buffer (const guint8 * pix)
{
  GstBuffer *buf = gst_buffer_new_memdup (pix, W * H);

  GST_BUFFER_PTS (buf) = 0;
  GST_BUFFER_DURATION (buf) = GST_SECOND / 10;
  return buf;
}

#define GRAY_CAPS "video/x-raw,format=GRAY8,width=640,height=480,framerate=10/1"
#define BGRX_CAPS "video/x-raw,format=BGRx,width=640,height=480,framerate=10/1"

static guint32
px (const guint8 * data, gint stride, guint x, guint y)
{
  return ((const guint32 *) (data + (gsize) y * stride))[x] & 0xffffff;
}

/* Finds a 28x28 GRAY8 picture drawn at SCALE (nearest neighbour) in a
 * BGRx frame of fw x fh, within the rectangle [0,max_x) x [0,max_y) of
 * top-left corners. Returns TRUE and its position when found. */
static gboolean
find_picture_in (const guint8 * data, guint fw, guint fh, gint stride,
    const guint8 * pic, guint max_x, guint max_y, guint * fx, guint * fy)
{
  guint x, y, i, j;

  for (y = 0; y + 28 * SCALE <= fh && y < max_y; y++)
    for (x = 0; x + 28 * SCALE <= fw && x < max_x; x++) {
      gboolean ok = TRUE;
      for (j = 0; j < 28 && ok; j++)
        for (i = 0; i < 28 && ok; i++) {
          guint32 v = pic[j * 28 + i];
          guint32 want = (v << 16) | (v << 8) | v;
          ok = px (data, stride, x + i * SCALE + SCALE / 2,
              y + j * SCALE + SCALE / 2) == want;
        }
      if (ok) {
        *fx = x;
        *fy = y;
        return TRUE;
      }
    }
  return FALSE;
}

/* the same in a W x H frame */
static gboolean
find_picture (const guint8 * data, gint stride, const guint8 * pic,
    guint max_x, guint max_y, guint * fx, guint * fy)
{
  return find_picture_in (data, W, H, stride, pic, max_x, max_y, fx, fy);
}

/* pixels of a clearly saturated colour (text of the voted label, boxes) */
static guint
count_coloured (const guint8 * data, gint stride, guint x0, guint y0,
    guint x1, guint y1, gboolean want_green)
{
  guint n = 0, x, y;

  for (y = y0; y < y1; y++)
    for (x = x0; x < x1; x++) {
      guint32 v = px (data, stride, x, y);
      gint r = (v >> 16) & 0xff, g = (v >> 8) & 0xff, b = v & 0xff;
      if (want_green ? (g > 150 && g - b > 60 && g - r > 40) :
          (r > 150 && r - b > 60 && r - g > 40))
        n++;
    }
  return n;
}

static void
write_png (const guint8 * data, gint stride, const gchar * path)
{
  cairo_surface_t *s = cairo_image_surface_create_for_data ((guint8 *) data,
      CAIRO_FORMAT_RGB24, W, H, stride);

  fail_unless_equals_int (cairo_surface_write_to_png (s, path),
      CAIRO_STATUS_SUCCESS);
  cairo_surface_destroy (s);
}

static GstHarness *
pipeline_harness (const gchar * overlay_props)
{
  gchar *desc = g_strdup_printf ("cbirencode model=%s preprocess=mnist ! "
      "cbirsearch gallery=%s k=3 ! videoconvert ! " BGRX_CAPS " ! "
      "cbiroverlay gallery=%s scale=%d max-hits=3 %s",
      model_path, gallery_path, gallery_path, SCALE, overlay_props);
  GstHarness *h = gst_harness_new_parse (desc);

  g_free (desc);
  gst_harness_set_src_caps_str (h, GRAY_CAPS);
  return h;
}

static GstBuffer *
reference_frame (const guint8 * pix)
{
  GstHarness *h = gst_harness_new ("videoconvert");
  GstBuffer *out;

  gst_harness_set_caps_str (h, GRAY_CAPS, BGRX_CAPS);
  out = gst_harness_push_and_pull (h, gray_buffer (pix));
  gst_harness_teardown (h);
  return out;
}

START_TEST (test_overlay_whole_frame)
{
  CbirSimcamTruth truth;
  g_autofree guint8 *pix = camera_frame (1, 4, &truth);
  /* (frame 4 of seed 7: a digit near the top, under a top-left panel) */
  GstHarness *h = pipeline_harness ("position=top-left");
  GstBuffer *out, *ref;
  GstMapInfo mo, mr;
  GstCbirResultMeta *res;
  guint8 query[28 * 28];
  guint qx = 0, qy = 0, x, y, i, last_x = 0;
  guint changed_outside = 0, changed_panel = 0;
  const CbirRect *b = &truth.digits[0].box;
  g_autoptr (CbirGallery) g = cbir_gallery_open (gallery_path, NULL);

  fail_unless (g != NULL);
  out = gst_harness_push_and_pull (h, gray_buffer (pix));
  ref = reference_frame (pix);
  fail_unless (out != NULL && ref != NULL);

  /* the result rode through videoconvert and the overlay */
  res = gst_buffer_get_cbir_result_meta (out);
  fail_unless (res != NULL, "no result meta on the overlay's output");
  fail_unless_equals_int (res->n_hits, 3);

  fail_unless (gst_buffer_map (out, &mo, GST_MAP_READ));
  fail_unless (gst_buffer_map (ref, &mr, GST_MAP_READ));

  /* the normalised query, at the panel's start */
  fail_unless (cbir_preprocess_mnist (pix, W, H, W, query, NULL));
  fail_unless (find_picture (mo.data, W * 4, query, 64, 64, &qx, &qy),
      "normalised query not drawn");
  /* each hit's thumbnail, left to right on the query's row */
  for (i = 0; i < res->n_hits; i++) {
    const guint8 *thumb = cbir_gallery_get_thumbnail (g, res->hits[i].index);
    guint tx, ty;

    fail_unless (thumb != NULL);
    fail_unless (find_picture (mo.data, W * 4, thumb, 400, 64, &tx, &ty),
        "thumbnail of hit %u (gallery item %u) not drawn", i,
        res->hits[i].index);
    fail_unless_equals_int (ty, qy);
    fail_unless (tx > MAX (qx, last_x), "hit %u out of order", i);
    last_x = tx;
  }
  /* the voted label, in colour, right of the thumbnails */
  fail_unless (res->label >= 0);
  fail_unless (count_coloured (mo.data, W * 4, last_x + 28 * SCALE,
          qy, MIN (W, last_x + 28 * SCALE + 80), qy + 28 * SCALE + 20,
          res->confidence >= 0.6) > 50 || count_coloured (mo.data, W * 4,
          last_x + 28 * SCALE, qy, MIN (W, last_x + 28 * SCALE + 80),
          qy + 28 * SCALE + 20, FALSE) > 0, "voted label not drawn");

  /* changes stay in the panel (top-left, under the hit row's bottom +
   * text) and on the box around the ink */
  for (y = 0; y < H; y++)
    for (x = 0; x < W; x++) {
      gboolean diff = px (mo.data, W * 4, x, y) != px (mr.data, W * 4, x, y);
      gboolean in_panel = x < last_x + 28 * SCALE + 90 &&
          y < qy + 28 * SCALE + 40;
      gboolean near_box = x + 40 >= b->x && x <= b->x + b->width + 40 &&
          y + 40 >= b->y && y <= b->y + b->height + 40;
      if (diff && in_panel)
        changed_panel++;
      else if (diff && !near_box)
        changed_outside++;
    }
  fail_unless (changed_panel > 10000, "panel: %u pixels changed",
      changed_panel);
  fail_unless_equals_int (changed_outside, 0);

  write_png (mo.data, W * 4, "overlay-test.png");
  gst_buffer_unmap (out, &mo);
  gst_buffer_unref (out);
  gst_harness_teardown (h);

  /* position=auto (the default) keeps the panel off the digit: the inside
   * of the ink box is untouched (with top-left it was not) */
  fail_unless (b->y < qy + 28 * SCALE + 20, "the test frame's digit is not "
      "under a top-left panel");
  h = pipeline_harness ("");
  out = gst_harness_push_and_pull (h, gray_buffer (pix));
  fail_unless (gst_buffer_map (out, &mo, GST_MAP_READ));
  changed_outside = 0;
  for (y = b->y + 4; y + 4 < b->y + b->height; y++)
    for (x = b->x + 4; x + 4 < b->x + b->width; x++)
      changed_outside += px (mo.data, W * 4, x, y) !=
          px (mr.data, W * 4, x, y);
  fail_unless_equals_int (changed_outside, 0);
  gst_buffer_unmap (out, &mo);
  gst_buffer_unmap (ref, &mr);
  gst_buffer_unref (out);
  gst_buffer_unref (ref);
  gst_harness_teardown (h);
}
END_TEST

/* The query picture is the one cbirencode encoded, carried by its
 * embedding meta, not recomputed from the frame (which cost the camera
 * pipeline more than the search): after videoscale halves the frame the
 * overlay still draws the encoder's picture exactly, and its box around
 * the ink is drawn where the ink is on the halved frame. */
START_TEST (test_overlay_draws_encoder_picture)
{
  CbirSimcamTruth truth;
  g_autofree guint8 *pix = camera_frame (1, 4, &truth);
  gchar *desc = g_strdup_printf ("cbirencode model=%s preprocess=mnist ! "
      "cbirsearch gallery=%s k=3 ! videoscale ! "
      "video/x-raw,width=320,height=240 ! videoconvert ! "
      "video/x-raw,format=BGRx ! cbiroverlay gallery=%s scale=%d "
      "max-hits=0 position=top-left", model_path, gallery_path,
      gallery_path, SCALE);
  GstHarness *h = gst_harness_new_parse (desc);
  GstCbirEmbeddingMeta *e;
  CbirPreprocessInfo info;
  guint8 query[28 * 28];
  GstBuffer *out;
  GstMapInfo mo;
  guint qx, qy;

  g_free (desc);
  gst_harness_set_src_caps_str (h, GRAY_CAPS);
  fail_unless (cbir_preprocess_mnist (pix, W, H, W, query, &info));
  out = gst_harness_push_and_pull (h, gray_buffer (pix));
  fail_unless (out != NULL);

  /* the embedding carries the model's input, and the ink box in the
   * encoded frame's pixels with that frame's size */
  e = gst_buffer_get_cbir_embedding_meta (out);
  fail_unless (e != NULL && e->input != NULL, "no picture in the embedding");
  fail_unless_equals_int (e->input_width, 28);
  fail_unless_equals_int (e->input_height, 28);
  fail_unless (memcmp (e->input, query, sizeof (query)) == 0);
  fail_unless_equals_int (e->frame_width, W);
  fail_unless_equals_int (e->frame_height, H);
  fail_unless_equals_int (e->ink_x, info.bbox.x);
  fail_unless_equals_int (e->ink_y, info.bbox.y);
  fail_unless_equals_int (e->ink_width, info.bbox.width);
  fail_unless_equals_int (e->ink_height, info.bbox.height);

  /* and the overlay drew exactly that picture on the small frame */
  fail_unless (gst_buffer_map (out, &mo, GST_MAP_READ));
  fail_unless (find_picture_in (mo.data, 320, 240, 320 * 4, query, 64, 64,
          &qx, &qy), "the encoder's picture is not drawn");
  {
    /* the box: coloured pixels just right of the halved ink box */
    guint xe = (info.bbox.x + info.bbox.width) / 2 + 1, y, coloured = 0;
    guint y0 = info.bbox.y / 2, y1 = (info.bbox.y + info.bbox.height) / 2;

    for (y = y0 + (y1 - y0) / 4; y < y1 - (y1 - y0) / 4; y++) {
      guint32 v = ((const guint32 *) (mo.data + (gsize) y * 320 * 4))[xe];
      gint r = (v >> 16) & 0xff, g = (v >> 8) & 0xff, b = v & 0xff;

      coloured += MAX (r, MAX (g, b)) - MIN (r, MIN (g, b)) > 60;
    }
    fail_unless (coloured >= (y1 - y0) / 2 - 1, "no box around the ink "
        "on the scaled frame (%u of %u pixels)", coloured, (y1 - y0) / 2);
  }
  gst_buffer_unmap (out, &mo);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
}
END_TEST

START_TEST (test_overlay_no_digit)
{
  guint8 *pix = g_malloc (W * H);
  GstHarness *h = pipeline_harness ("position=bottom-right");
  GstBuffer *out;
  GstMapInfo mo;
  guint x, y, changed = 0, changed_top = 0;

  memset (pix, 200, W * H);     /* blank paper */
  out = gst_harness_push_and_pull (h, gray_buffer (pix));
  fail_unless (out != NULL);
  fail_unless (gst_buffer_get_cbir_result_meta (out) == NULL);
  fail_unless (gst_buffer_map (out, &mo, GST_MAP_READ));
  for (y = 0; y < H; y++)
    for (x = 0; x < W; x++) {
      guint32 v = px (mo.data, W * 4, x, y);
      if (v != 0xc8c8c8) {
        changed++;
        if (y < H / 2 || x < W / 2)
          changed_top++;
      }
    }
  /* a small panel in the bottom-right corner saying "no digit" in red */
  fail_unless (changed > 500);
  fail_unless_equals_int (changed_top, 0);
  fail_unless (count_coloured (mo.data, W * 4, W / 2, H / 2, W, H,
          FALSE) > 20, "no red 'no digit' text");
  gst_buffer_unmap (out, &mo);
  gst_buffer_unref (out);
  g_free (pix);
  gst_harness_teardown (h);
}
END_TEST

/* An encoded frame that no search ran on says "not searched", not "no
 * digit" as a frame without a code does: the two drawings differ. */
START_TEST (test_overlay_not_searched)
{
  CbirSimcamTruth truth;
  guint8 *pix = camera_frame (1, 0, &truth);
  gchar *enc = g_strdup_printf ("cbirencode model=%s preprocess=mnist ! "
      "videoconvert ! " BGRX_CAPS " ! cbiroverlay gallery=%s "
      "preprocess=mnist show-query=false", model_path, gallery_path);
  gchar *bare = g_strdup_printf ("videoconvert ! " BGRX_CAPS " ! "
      "cbiroverlay gallery=%s preprocess=mnist show-query=false",
      gallery_path);
  GstHarness *he = gst_harness_new_parse (enc);
  GstHarness *hb = gst_harness_new_parse (bare);
  GstBuffer *oe, *ob;
  GstMapInfo me, mb;

  gst_harness_set_src_caps_str (he, GRAY_CAPS);
  gst_harness_set_src_caps_str (hb, GRAY_CAPS);
  oe = gst_harness_push_and_pull (he, gray_buffer (pix));
  ob = gst_harness_push_and_pull (hb, gray_buffer (pix));
  fail_unless (oe != NULL && ob != NULL);
  fail_unless (gst_buffer_get_cbir_result_meta (oe) == NULL);
  fail_unless (gst_buffer_map (oe, &me, GST_MAP_READ));
  fail_unless (gst_buffer_map (ob, &mb, GST_MAP_READ));
  fail_unless_equals_int (me.size, mb.size);
  fail_unless (memcmp (me.data, mb.data, me.size) != 0,
      "\"not searched\" drawn as \"no digit\"");
  gst_buffer_unmap (oe, &me);
  gst_buffer_unmap (ob, &mb);
  gst_buffer_unref (oe);
  gst_buffer_unref (ob);
  gst_harness_teardown (he);
  gst_harness_teardown (hb);
  g_free (enc);
  g_free (bare);
  g_free (pix);
}
END_TEST

/* The per-region contract: a GstVideoRegionOfInterestMeta per digit with a
 * "cbir-result" param (the bus message's fields). */
static void
add_region (GstBuffer * buf, const CbirRect * r, guint id, gint label,
    gdouble confidence)
{
  GstVideoRegionOfInterestMeta *roi =
      gst_buffer_add_video_region_of_interest_meta (buf, "digit", r->x,
      r->y, r->width, r->height);
  GstStructure *s = gst_structure_new (GST_CBIR_RESULT_STRUCTURE_NAME,
      "label", G_TYPE_INT, label, "confidence", G_TYPE_DOUBLE, confidence,
      NULL);
  GValue arr = G_VALUE_INIT, v = G_VALUE_INIT;

  g_value_init (&arr, GST_TYPE_ARRAY);
  g_value_init (&v, G_TYPE_UINT);
  g_value_set_uint (&v, id);
  gst_value_array_append_value (&arr, &v);
  g_value_unset (&v);
  gst_structure_take_value (s, "ids", &arr);
  g_value_init (&arr, GST_TYPE_ARRAY);
  g_value_init (&v, G_TYPE_INT);
  g_value_set_int (&v, label);
  gst_value_array_append_value (&arr, &v);
  g_value_unset (&v);
  gst_structure_take_value (s, "labels", &arr);
  g_value_init (&arr, GST_TYPE_ARRAY);
  g_value_init (&v, G_TYPE_FLOAT);
  g_value_set_float (&v, 1.5f);
  gst_value_array_append_value (&arr, &v);
  g_value_unset (&v);
  gst_structure_take_value (s, "distances", &arr);
  gst_video_region_of_interest_meta_add_param (roi, s);
}

START_TEST (test_overlay_regions)
{
  CbirSimcamTruth truth;
  g_autofree guint8 *pix = camera_frame (2, 0, &truth);
  gchar *desc = g_strdup_printf ("cbiroverlay gallery=%s preprocess=mnist "
      "scale=%d position=top-left", gallery_path, SCALE);
  GstHarness *h = gst_harness_new_parse (desc);
  GstBuffer *buf = gst_buffer_new_allocate (NULL, W * H * 4, NULL), *out;
  GstMapInfo m;
  guint x, y, j, tx[2], ty[2];
  g_autoptr (CbirGallery) g = cbir_gallery_open (gallery_path, NULL);

  g_free (desc);
  gst_harness_set_src_caps_str (h, BGRX_CAPS);
  fail_unless_equals_int (truth.n_digits, 2);
  gst_buffer_map (buf, &m, GST_MAP_WRITE);
  for (y = 0; y < H; y++)
    for (x = 0; x < W; x++) {
      guint32 v = pix[y * W + x];
      ((guint32 *) m.data)[y * W + x] = (v << 16) | (v << 8) | v;
    }
  gst_buffer_unmap (buf, &m);
  /* region j "found" gallery item = its own source image, high confidence */
  for (j = 0; j < 2; j++)
    add_region (buf, &truth.digits[j].box, truth.digits[j].source_index,
        truth.digits[j].label, 0.9);

  out = gst_harness_push_and_pull (h, buf);
  fail_unless (out != NULL);
  fail_unless (gst_buffer_map (out, &m, GST_MAP_READ));
  for (j = 0; j < 2; j++) {
    const CbirRect *b = &truth.digits[j].box;
    const guint8 *thumb = cbir_gallery_get_thumbnail (g,
        truth.digits[j].source_index);
    guint green = 0;

    /* the box: a green frame just outside the region (left edge) */
    for (y = b->y + b->height / 4; y < b->y + b->height * 3 / 4; y++) {
      guint xe = b->x >= 2 ? b->x - 2 : 0;
      guint32 v = px (m.data, W * 4, xe, y);
      green += ((v >> 8) & 0xff) > 150 && ((v >> 8) & 0xff) - (v & 0xff) > 60;
    }
    /* (the panel may cover a part of the first box) */
    fail_unless (green > b->height / 4, "region %u: box not drawn (%u)", j,
        green);
    /* one panel row per region, each with its hit's thumbnail */
    fail_unless (find_picture (m.data, W * 4, thumb, 300, 300, &tx[j],
            &ty[j]), "region %u: thumbnail not drawn", j);
  }
  fail_unless (ty[1] > ty[0], "rows not one per region");
  gst_buffer_unmap (out, &m);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
}
END_TEST

START_TEST (test_overlay_properties_and_errors)
{
  GstElement *e = gst_element_factory_make ("cbiroverlay", NULL);
  GstHarness *h;
  GstBus *bus;
  GstMessage *msg;
  gchar *missing, *got;
  guint scale;

  fail_unless (e != NULL);
  g_object_get (e, "scale", &scale, NULL);
  fail_unless_equals_int (scale, 2);
  gst_util_set_object_arg (G_OBJECT (e), "position", "bottom-left");
  gst_util_set_object_arg (G_OBJECT (e), "preprocess", "mnist");
  gst_object_unref (e);

  /* a missing gallery file is an error naming it, at start */
  missing = g_build_filename (tmpdir, "missing.safetensors", NULL);
  e = gst_element_factory_make ("cbiroverlay", NULL);
  g_object_set (e, "gallery", missing, NULL);
  bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_PAUSED),
      GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  assert_error_mentions (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      missing, NULL);
  gst_message_unref (msg);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  gst_object_unref (e);

  /* the gallery cannot change while running */
  e = gst_element_factory_make ("cbiroverlay", NULL);
  g_object_set (e, "gallery", gallery_path, NULL);
  h = gst_harness_new_with_element (e, "sink", "src");
  gst_object_unref (e);
  gst_harness_set_src_caps_str (h, BGRX_CAPS);
  gst_harness_play (h);
  g_object_set (h->element, "gallery", missing, NULL);
  g_object_get (h->element, "gallery", &got, NULL);
  fail_unless_equals_string (got, gallery_path);
  g_free (got);
  gst_harness_teardown (h);
  g_free (missing);
}
END_TEST

static Suite *
overlay_suite (void)
{
  Suite *s = suite_create ("cbiroverlay");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_overlay_whole_frame);
  tcase_add_test (tc, test_overlay_draws_encoder_picture);
  tcase_add_test (tc, test_overlay_no_digit);
  tcase_add_test (tc, test_overlay_not_searched);
  tcase_add_test (tc, test_overlay_regions);
  tcase_add_test (tc, test_overlay_properties_and_errors);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (overlay);

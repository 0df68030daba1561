/* cbir-simcam: renders simulated-camera frames (held-out digits drawn large
 * on unevenly lit paper, shifted, scaled, rotated, blurred, noisy; see
 * include/cbir/simcam.h) as numbered PNGs or one raw GRAY8 file, plus the
 * truth as JSON Lines (one line a frame: frame, labels, source_indices,
 * boxes [x, y, w, h]).
 *
 *   cbir-simcam --images data/mnist/query-images.idx3-ubyte \
 *       --labels data/mnist/query-labels.idx1-ubyte --frames 100 --out-dir out/simcam
 *   gst-launch-1.0 multifilesrc location=out/simcam/frame-%05d.png \
 *       caps=image/png,framerate=10/1 ! pngdec ! videoconvert ! jpegenc ! \
 *       avimux ! filesink location=out/simcam.avi
 *
 * Every file is written atomically (temp file + rename). */
#include "config.h"

#include <cbir/idx.h>
#include <cbir/simcam.h>

#include <glib/gstdio.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_CAIRO
#include <cairo.h>
#endif

#define CBIR_TOOL_NAME "cbir-simcam"
#include "tool-common.h"

static char *opt_images, *opt_labels, *opt_out_dir, *opt_digits, *opt_format;
static gint opt_frames = 100, opt_first = 0, opt_width = 640, opt_height = 480;
static gint opt_blank_every = 0;
static gboolean opt_sequential, opt_keep_missed;
static gint64 opt_seed = 1;
/* "not given" (not -1: a typed negative value must be refused) */
#define UNSET_DOUBLE (-G_MAXDOUBLE)
static gdouble opt_min_h = UNSET_DOUBLE, opt_max_h = UNSET_DOUBLE,
    opt_rot = UNSET_DOUBLE, opt_blur = UNSET_DOUBLE, opt_noise = UNSET_DOUBLE;

static GOptionEntry entries[] = {
  {"images", 'i', 0, G_OPTION_ARG_FILENAME, &opt_images,
      "Digits to show (IDX idx3-ubyte; use the query split)", "FILE"},
  {"labels", 'l', 0, G_OPTION_ARG_FILENAME, &opt_labels,
      "Their labels (IDX idx1-ubyte), for the truth file", "FILE"},
  {"out-dir", 'o', 0, G_OPTION_ARG_FILENAME, &opt_out_dir,
      "Directory to write into (created)", "DIR"},
  {"frames", 'n', 0, G_OPTION_ARG_INT, &opt_frames,
      "Number of frames (100)", "N"},
  {"first", 0, 0, G_OPTION_ARG_INT, &opt_first,
      "First image of the data set shown (0)", "I"},
  {"seed", 's', 0, G_OPTION_ARG_INT64, &opt_seed, "Random seed (1)", "S"},
  {"digits", 'd', 0, G_OPTION_ARG_STRING, &opt_digits,
      "Digits per frame: N or MIN-MAX (1)", "N"},
  {"width", 0, 0, G_OPTION_ARG_INT, &opt_width, "Frame width (640)", "W"},
  {"height", 0, 0, G_OPTION_ARG_INT, &opt_height, "Frame height (480)", "H"},
  {"min-height", 0, 0, G_OPTION_ARG_DOUBLE, &opt_min_h,
      "Smallest ink height in pixels (150)", "PX"},
  {"max-height", 0, 0, G_OPTION_ARG_DOUBLE, &opt_max_h,
      "Largest ink height in pixels (300)", "PX"},
  {"rotation", 0, 0, G_OPTION_ARG_DOUBLE, &opt_rot,
      "Largest rotation in degrees (10)", "DEG"},
  {"blur", 0, 0, G_OPTION_ARG_DOUBLE, &opt_blur,
      "Gaussian blur sigma in pixels (1.5)", "SIGMA"},
  {"noise", 0, 0, G_OPTION_ARG_DOUBLE, &opt_noise,
      "Sensor noise sigma in grey levels (6)", "SIGMA"},
  {"sequential", 0, 0, G_OPTION_ARG_NONE, &opt_sequential,
      "Show the images in file order (default: a seeded random order)",
      NULL},
  {"keep-missed", 0, 0, G_OPTION_ARG_NONE, &opt_keep_missed,
      "With --format idx: write a shown digit the camera path does not find "
      "as its source image, so the IDX file holds one image per shown "
      "digit, in order (needs 28x28 images)", NULL},
  {"blank-every", 0, 0, G_OPTION_ARG_INT, &opt_blank_every,
      "Every N-th frame shows only paper (0: never)", "N"},
  {"format", 'f', 0, G_OPTION_ARG_STRING, &opt_format,
      "png (frame-00000.png ...), gray8 (one raw file frames.gray) or idx "
      "(each shown digit as the camera path normalises it: "
      "digits-images.idx3-ubyte + digits-labels.idx1-ubyte) (png)",
      "FMT"},
  {NULL}
};

#ifdef HAVE_CAIRO
/* GRAY8 frame -> PNG (RGB24), atomically */
static gboolean
write_png (const char *path, const guint8 * gray, guint w, guint h,
    GError ** error)
{
  cairo_surface_t *surf = cairo_image_surface_create (CAIRO_FORMAT_RGB24, w,
      h);
  g_autofree char *tmp = g_strdup_printf ("%s.tmp-%d", path, (int) getpid ());
  cairo_status_t st;
  guint8 *data;
  int stride;
  guint x, y;

  if (cairo_surface_status (surf) != CAIRO_STATUS_SUCCESS) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s", path,
        cairo_status_to_string (cairo_surface_status (surf)));
    cairo_surface_destroy (surf);
    return FALSE;
  }
  cairo_surface_flush (surf);
  data = cairo_image_surface_get_data (surf);
  stride = cairo_image_surface_get_stride (surf);
  for (y = 0; y < h; y++) {
    guint32 *row = (guint32 *) (data + (gsize) y * stride);
    for (x = 0; x < w; x++) {
      guint32 v = gray[(gsize) y * w + x];
      row[x] = 0xff000000u | (v << 16) | (v << 8) | v;
    }
  }
  cairo_surface_mark_dirty (surf);
  st = cairo_surface_write_to_png (surf, tmp);
  cairo_surface_destroy (surf);
  if (st != CAIRO_STATUS_SUCCESS) {
    g_unlink (tmp);
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot write: %s",
        path, cairo_status_to_string (st));
    return FALSE;
  }
  if (g_rename (tmp, path) != 0) {
    int e = errno;
    g_unlink (tmp);
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot rename: %s",
        path, g_strerror (e));
    return FALSE;
  }
  return TRUE;
}
#endif

/* --format idx: each shown digit of a frame as cbirencode preprocess=mnist
 * regions=digits normalises it (the found region overlapping its true box
 * most), appended to crops with its label. A digit not found is skipped,
 * or with keep_from (the data set shown, --keep-missed) written as its
 * source image. Returns how many shown digits were not found. */
static guint
crop_digits (const guint8 * frame, guint w, guint h,
    const CbirSimcamTruth * t, const CbirDataset * keep_from,
    GByteArray * crops, GByteArray * labels)
{
  g_autoptr (CbirInkMap) map = cbir_ink_map_new (frame, w, h, w);
  CbirRect found[CBIR_SIMCAM_MAX_DIGITS * 2];
  guint n = map ? cbir_ink_map_find_digits (map, found, G_N_ELEMENTS (found))
      : 0, missed = 0;

  for (guint d = 0; d < t->n_digits; d++) {
    const CbirRect *b = &t->digits[d].box;
    guint64 best = 0;
    gint bi = -1;
    guint8 img[28 * 28];

    for (guint j = 0; j < n; j++) {
      guint x0 = MAX (b->x, found[j].x), y0 = MAX (b->y, found[j].y);
      guint x1 = MIN (b->x + b->width, found[j].x + found[j].width);
      guint y1 = MIN (b->y + b->height, found[j].y + found[j].height);
      guint64 a = x1 > x0 && y1 > y0 ? (guint64) (x1 - x0) * (y1 - y0) : 0;
      if (a > best) {
        best = a;
        bi = (gint) j;
      }
    }
    if (bi < 0 || !cbir_ink_map_normalise (map, &found[bi], img, NULL)) {
      missed++;
      if (!keep_from)
        continue;
      memcpy (img, keep_from->images + (gsize) t->digits[d].source_index *
          sizeof (img), sizeof (img));
    }
    guint8 label = (guint8) CLAMP (t->digits[d].label, 0, 255);
    g_byte_array_append (crops, img, sizeof (img));
    g_byte_array_append (labels, &label, 1);
  }
  return missed;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GOptionContext) ctx =
      g_option_context_new ("- render simulated-camera frames of digits");
  g_autoptr (CbirDataset) ds = NULL;
  g_autoptr (CbirSimcam) cam = NULL;
  g_autoptr (GString) truth = g_string_new (NULL);
  g_autofree guint8 *frame = NULL;
  g_autofree char *truth_path = NULL;
  g_autofree char *raw_path = NULL;
  g_autofree char *raw_tmp = NULL;
  FILE *raw = NULL;
  CbirSimcamParams p;
  gboolean png = TRUE, idx = FALSE;
  GByteArray *crops = NULL, *crop_labels = NULL;
  guint missed = 0;
  gint i;

  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
      "Writes DIR/frame-NNNNN.png (or DIR/frames.gray) and DIR/truth.jsonl.\n"
      "Make a video of the PNGs with:\n"
      "  gst-launch-1.0 multifilesrc location=DIR/frame-%05d.png "
      "caps=image/png,framerate=10/1 ! pngdec ! videoconvert ! jpegenc ! "
      "avimux ! filesink location=sim.avi\n");
  if (!g_option_context_parse (ctx, &argc, &argv, &err))
    return fail ("%s (see --help)", err->message);
  if (argc > 1)
    return fail ("unexpected argument '%s' (see --help)", argv[1]);
  if (!opt_images || !opt_out_dir)
    return fail ("--images and --out-dir are required");
  if (opt_frames < 1 || opt_frames > 1000000)
    return fail ("--frames must be in 1..1000000");
  if (opt_first < 0 || opt_width < 1 || opt_height < 1 || opt_blank_every < 0)
    return fail ("--first, --width, --height and --blank-every must be "
        "positive");
  {
    const struct { const char *name; double v; } d[] = {
      {"--min-height", opt_min_h}, {"--max-height", opt_max_h},
      {"--rotation", opt_rot}, {"--blur", opt_blur}, {"--noise", opt_noise}
    };
    for (guint i = 0; i < G_N_ELEMENTS (d); i++)
      if (d[i].v != UNSET_DOUBLE && !(d[i].v >= 0 && d[i].v < 1e6))
        return fail ("%s must be in 0..1000000, not %g", d[i].name,
            d[i].v);
  }
  if (opt_format && strcmp (opt_format, "png") != 0) {
    if (strcmp (opt_format, "idx") == 0)
      idx = TRUE;
    else if (strcmp (opt_format, "gray8") != 0)
      return fail ("--format must be png, gray8 or idx, not '%s'",
          opt_format);
    png = FALSE;
  }
  if (idx && !opt_labels)
    return fail ("--format idx needs --labels (the crops' labels)");
  if (opt_keep_missed && !idx)
    return fail ("--keep-missed needs --format idx");
#ifndef HAVE_CAIRO
  if (png)
    return fail ("built without cairo: PNG output unavailable "
        "(use --format gray8)");
#endif

  cbir_simcam_params_init (&p);
  p.width = opt_width;
  p.height = opt_height;
  p.seed = (guint64) opt_seed;
  p.first = opt_first;
  p.blank_every = opt_blank_every;
  p.shuffle = !opt_sequential;
  if (opt_digits) {
    guint a, b;
    char dash;
    if (sscanf (opt_digits, "%u%c%u", &a, &dash, &b) == 3 && dash == '-') {
      p.min_digits = a;
      p.max_digits = b;
    } else if (sscanf (opt_digits, "%u", &a) == 1) {
      p.min_digits = p.max_digits = a;
    } else {
      return fail ("--digits must be N or MIN-MAX, not '%s'", opt_digits);
    }
  }
  /* a smaller frame gets proportionally smaller digits by default */
  if (opt_height != 480) {
    p.min_height = p.min_height * opt_height / 480;
    p.max_height = p.max_height * opt_height / 480;
  }
  if (opt_min_h >= 0)
    p.min_height = opt_min_h;
  if (opt_max_h >= 0)
    p.max_height = opt_max_h;
  if (p.max_height < p.min_height)
    p.max_height = p.min_height;
  if (opt_rot >= 0)
    p.max_rotation = opt_rot;
  if (opt_blur >= 0)
    p.blur_sigma = opt_blur;
  if (opt_noise >= 0)
    p.noise_sigma = opt_noise;

  ds = cbir_dataset_load (opt_images, opt_labels, &err);
  if (!ds)
    return fail ("%s", err->message);
  if (opt_keep_missed && (ds->rows != 28 || ds->cols != 28))
    return fail ("%s: --keep-missed needs 28x28 images, not %ux%u",
        opt_images, ds->cols, ds->rows);
  cam = cbir_simcam_new (ds, &p, &err);
  if (!cam)
    return fail ("%s", err->message);
  if (g_mkdir_with_parents (opt_out_dir, 0755) != 0)
    return fail ("%s: cannot create directory: %s", opt_out_dir,
        g_strerror (errno));

  frame = g_malloc ((gsize) p.width * p.height);
  if (idx) {
    crops = g_byte_array_new ();
    crop_labels = g_byte_array_new ();
  } else if (!png) {
    raw_path = g_build_filename (opt_out_dir, "frames.gray", NULL);
    raw_tmp = g_strdup_printf ("%s.tmp-%d", raw_path, (int) getpid ());
    raw = fopen (raw_tmp, "wb");
    if (!raw)
      return fail ("%s: cannot create: %s", raw_tmp, g_strerror (errno));
  }

  for (i = 0; i < opt_frames; i++) {
    CbirSimcamTruth t;
    g_autofree char *line = NULL;

    cbir_simcam_render (cam, i, frame, p.width, &t);
    line = cbir_simcam_truth_to_json (&t);
    g_string_append (truth, line);
    g_string_append_c (truth, '\n');
    if (idx) {
      missed += crop_digits (frame, p.width, p.height, &t,
          opt_keep_missed ? ds : NULL, crops, crop_labels);
    } else if (png) {
#ifdef HAVE_CAIRO
      g_autofree char *name = g_strdup_printf ("frame-%05d.png", i);
      g_autofree char *path = g_build_filename (opt_out_dir, name, NULL);
      if (!write_png (path, frame, p.width, p.height, &err))
        return fail ("%s", err->message);
#endif
    } else if (fwrite (frame, 1, (gsize) p.width * p.height, raw) !=
        (gsize) p.width * p.height) {
      int e = errno;
      fclose (raw);
      g_unlink (raw_tmp);
      return fail ("%s: write failed: %s", raw_tmp, g_strerror (e));
    }
  }
  if (raw) {
    if (fclose (raw) != 0 || g_rename (raw_tmp, raw_path) != 0) {
      int e = errno;
      g_unlink (raw_tmp);
      return fail ("%s: cannot write: %s", raw_path, g_strerror (e));
    }
  }
  if (idx) {
    g_autofree char *ip = g_build_filename (opt_out_dir,
        "digits-images.idx3-ubyte", NULL);
    g_autofree char *lp = g_build_filename (opt_out_dir,
        "digits-labels.idx1-ubyte", NULL);
    guint32 n = crop_labels->len, dims[3] = { n, 28, 28 };

    if (!cbir_idx_write_u8 (ip, 3, dims, crops->data, &err) ||
        !cbir_idx_write_u8 (lp, 1, dims, crop_labels->data, &err))
      return fail ("%s", err->message);
    printf ("cbir-simcam: %u digits of %d frames %ux%u as the camera path "
        "normalises them in %s (%u shown digits not found%s)\n", n,
        opt_frames, p.width, p.height, ip, missed,
        opt_keep_missed ? ", written as their source images" : "");
    g_byte_array_unref (crops);
    g_byte_array_unref (crop_labels);
  }
  truth_path = g_build_filename (opt_out_dir, "truth.jsonl", NULL);
  if (!g_file_set_contents (truth_path, truth->str, truth->len, &err))
    return fail ("%s", err->message);

  if (idx)
    ;
  else if (png)
    printf ("cbir-simcam: %d frames %ux%u in %s/frame-NNNNN.png, truth in "
        "%s\n", opt_frames, p.width, p.height, opt_out_dir, truth_path);
  else
    printf ("cbir-simcam: %d frames %ux%u GRAY8 in %s, truth in %s\n",
        opt_frames, p.width, p.height, raw_path, truth_path);
  return 0;
}

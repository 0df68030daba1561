/* PNG output with cairo: image grids (noisy input / reconstruction / clean
 * target) and line charts (loss per epoch). Both write atomically (temp file
 * in the target's directory + rename): a failure leaves no partial file and
 * an existing target untouched. Without cairo (-Dpng=disabled) every call
 * fails with CBIR_ERROR_UNSUPPORTED. */
#pragma once

#include <cbir/common.h>

G_BEGIN_DECLS

/* `images` holds n GRAY8 images of width x height bytes each, back to back
 * (row stride = width). They are laid out left to right, `columns` per row,
 * each scaled up `scale` times (nearest neighbour), with thin dark
 * separators between cells. `row_titles`, when not NULL, is a
 * NULL-terminated array whose i-th string is drawn above grid row i (rows
 * past its end get no title; an empty string gives an empty title strip).
 * The picture must stay within 16384 x 16384 pixels. */
gboolean cbir_png_write_grid (const char *path, const guint8 *images,
    guint n, guint width, guint height, guint columns, guint scale,
    const char *const *row_titles, GError **error);

/* A line chart of n_series curves of n_points values each; point i is drawn
 * at x = i + 1 (epochs). Axes with numbered ticks and grid lines, a legend
 * placed in the emptiest corner, markers when there are few points.
 * Non-finite values are left out (the line breaks there). series_names may
 * be NULL ("series 1", ...); title and labels may be NULL. */
gboolean cbir_png_write_curves (const char *path, const char *title,
    const char *x_label, const char *y_label, guint n_series,
    const char *const *series_names, const float *const *series_values,
    guint n_points, GError **error);

/* The full form of cbir_png_write_curves. */
typedef struct {
  const char *title;            /* nullable */
  const char *x_label;          /* nullable */
  const char *y_label;          /* nullable */
  guint n_series;
  const char *const *series_names;      /* nullable */
  const float *const *series_values;    /* n_series arrays of n_points */
  guint n_points;
  double x_start;               /* x of point 0 (cbir_png_write_curves: 1) */
  double x_step;                /* x distance between points (> 0; 1) */
  /* optional dashed horizontal reference lines, e.g. the loss of
   * predicting all zeros */
  guint n_hlines;
  const char *const *hline_names;       /* nullable */
  const double *hline_values;
  guint width, height;          /* pixels; 0 = 800 x 500 */
} CbirPngChart;

gboolean cbir_png_write_chart (const char *path, const CbirPngChart *chart,
    GError **error);

G_END_DECLS

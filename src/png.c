/* PNG output with cairo: image grids and line charts, written atomically. */
#include "config.h"

#include "cbir/png.h"

#include "atomic-file.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#ifdef HAVE_CAIRO
#include <cairo.h>

#define MAX_SIDE 16384

/* ------------------------------------------------------- atomic writing */

typedef struct {
  int fd;
  int err;
} WriteCtx;

static cairo_status_t
write_fd (void *closure, const unsigned char *data, unsigned int length)
{
  WriteCtx *c = closure;
  while (length > 0) {
    ssize_t r = write (c->fd, data, length);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      c->err = errno;
      return CAIRO_STATUS_WRITE_ERROR;
    }
    data += r;
    length -= r;
  }
  return CAIRO_STATUS_SUCCESS;
}

/* Writes the surface to a temp file next to `path`, then renames it. */
static gboolean
write_png_atomic (cairo_surface_t * surface, const char *path,
    GError ** error)
{
  CbirAtomicFile af;
  WriteCtx ctx = { -1, 0 };
  cairo_status_t status;

  if (cairo_surface_status (surface) != CAIRO_STATUS_SUCCESS) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot draw: %s",
        path, cairo_status_to_string (cairo_surface_status (surface)));
    return FALSE;
  }
  if (!cbir_atomic_file_open (&af, path, 0666, error))
    return FALSE;
  ctx.fd = af.fd;
  status = cairo_surface_write_to_png_stream (surface, write_fd, &ctx);
  if (status != CAIRO_STATUS_SUCCESS) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot write PNG: %s",
        path, ctx.err ? g_strerror (ctx.err) : cairo_status_to_string (status));
    cbir_atomic_file_abort (&af);
    return FALSE;
  }
  return cbir_atomic_file_commit (&af, error);
}

static void
set_font (cairo_t * cr, double size, gboolean bold)
{
  cairo_select_font_face (cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
      bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (cr, size);
}

static double
text_width (cairo_t * cr, const char *s)
{
  cairo_text_extents_t e;
  cairo_text_extents (cr, s, &e);
  return e.x_advance;
}

/* Draws s with its anchor at (x, y): ax/ay in 0..1 pick the point of the
 * text box (0,0 = top-left, 0.5,0.5 = centre) from the font's ascent and
 * descent, so labels line up whatever their letters. */
static void
draw_text (cairo_t * cr, const char *s, double x, double y, double ax,
    double ay)
{
  cairo_font_extents_t fe;
  cairo_font_extents (cr, &fe);
  double w = text_width (cr, s);
  double h = fe.ascent + fe.descent;
  cairo_move_to (cr, x - ax * w, y - ay * h + fe.ascent);
  cairo_show_text (cr, s);
  cairo_new_path (cr);
}

/* ------------------------------------------------------------------ grid */

#define GRID_SEP 2
#define GRID_TITLE_H 22
/* mid-gray: visible against both black and white digits */
#define GRID_SEP_GRAY 0.5

gboolean
cbir_png_write_grid (const char *path, const guint8 * images, guint n,
    guint width, guint height, guint columns, guint scale,
    const char *const *row_titles, GError ** error)
{
  guint ncols, rows, th, cw, ch, W, H;
  guint64 w64, h64;
  cairo_surface_t *surface;
  cairo_t *cr;
  guint8 *pix;
  int stride;
  gboolean ok;

  g_return_val_if_fail (path != NULL, FALSE);
  if (!images || n == 0 || width == 0 || height == 0 || columns == 0
      || scale == 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: empty image grid (n=%u, %ux%u, columns=%u, scale=%u)", path, n,
        width, height, columns, scale);
    return FALSE;
  }
  ncols = MIN (columns, n);
  rows = (n + ncols - 1) / ncols;
  th = row_titles ? GRID_TITLE_H : 0;
  w64 = GRID_SEP + (guint64) ncols * ((guint64) width * scale + GRID_SEP);
  h64 = GRID_SEP + (guint64) rows * (th + (guint64) height * scale +
      GRID_SEP);
  if (width > MAX_SIDE || height > MAX_SIDE || scale > MAX_SIDE
      || w64 > MAX_SIDE || h64 > MAX_SIDE) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: image grid too large (%" G_GUINT64_FORMAT " x %"
        G_GUINT64_FORMAT " pixels, limit %d)", path, w64, h64, MAX_SIDE);
    return FALSE;
  }
  W = w64;
  H = h64;
  cw = width * scale;
  ch = height * scale;

  surface = cairo_image_surface_create (CAIRO_FORMAT_RGB24, W, H);
  cr = cairo_create (surface);
  cairo_set_source_rgb (cr, GRID_SEP_GRAY, GRID_SEP_GRAY, GRID_SEP_GRAY);
  cairo_paint (cr);
  cairo_surface_flush (surface);

  /* the images, scaled by pixel replication */
  pix = cairo_image_surface_get_data (surface);
  stride = cairo_image_surface_get_stride (surface);
  if (pix) {
    for (guint i = 0; i < n; i++) {
      const guint8 *img = images + (gsize) i * width * height;
      guint x0 = GRID_SEP + (i % ncols) * (cw + GRID_SEP);
      guint y0 = GRID_SEP + (i / ncols) * (th + ch + GRID_SEP) + th;
      for (guint y = 0; y < ch; y++) {
        const guint8 *src = img + (gsize) (y / scale) * width;
        guint32 *dst = (guint32 *) (pix + (gsize) (y0 + y) * stride) + x0;
        for (guint x = 0; x < cw; x++) {
          guint32 v = src[x / scale];
          dst[x] = 0xff000000u | (v << 16) | (v << 8) | v;
        }
      }
    }
    cairo_surface_mark_dirty (surface);
  }

  /* title strips above each row */
  if (row_titles) {
    gboolean more = TRUE;
    set_font (cr, 13, FALSE);
    for (guint r = 0; r < rows; r++) {
      double y0 = GRID_SEP + r * (th + ch + GRID_SEP);
      const char *t = more ? row_titles[r] : NULL;
      if (!t)
        more = FALSE;
      cairo_set_source_rgb (cr, 0.96, 0.96, 0.96);
      cairo_rectangle (cr, GRID_SEP, y0, W - 2 * GRID_SEP, th);
      cairo_fill (cr);
      if (t && *t) {
        cairo_save (cr);
        cairo_rectangle (cr, GRID_SEP, y0, W - 2 * GRID_SEP, th);
        cairo_clip (cr);
        cairo_set_source_rgb (cr, 0.1, 0.1, 0.1);
        draw_text (cr, t, GRID_SEP + 6, y0 + th / 2.0, 0, 0.5);
        cairo_restore (cr);
      }
    }
  }
  cairo_destroy (cr);
  ok = write_png_atomic (surface, path, error);
  cairo_surface_destroy (surface);
  return ok;
}

/* ----------------------------------------------------------------- chart */

static const double palette[][3] = {
  {0.122, 0.467, 0.706},        /* blue */
  {1.000, 0.498, 0.055},        /* orange */
  {0.173, 0.627, 0.173},        /* green */
  {0.839, 0.153, 0.157},        /* red */
  {0.580, 0.404, 0.741},        /* purple */
  {0.549, 0.337, 0.294},        /* brown */
  {0.890, 0.467, 0.761},        /* pink */
  {0.737, 0.741, 0.133},        /* olive */
  {0.090, 0.745, 0.812},        /* cyan */
};

static double
nice_step (double raw)
{
  double e = floor (log10 (raw));
  double p = pow (10, e);
  double f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

typedef struct {
  double lo, hi;                /* axis range */
  double step, first;           /* ticks: first, first + step, ... <= hi */
  int decimals;
} Axis;

static void
axis_init (Axis * a, double lo, double hi, guint target, gboolean integer)
{
  if (!(hi > lo)) {
    double d = fabs (lo) > 1e-12 ? fabs (lo) * 0.1 : 0.5;
    lo -= d;
    hi += d;
  }
  a->step = nice_step ((hi - lo) / target);
  if (integer && a->step < 1)
    a->step = 1;
  a->lo = lo;
  a->hi = hi;
  a->first = ceil (lo / a->step - 1e-9) * a->step;
  a->decimals = MAX (0, (int) -floor (log10 (a->step) + 1e-9));
  if (a->decimals > 8)
    a->decimals = 8;
}

static char *
tick_label (const Axis * a, double v)
{
  if (fabs (v) < a->step * 1e-6)
    v = 0;
  if (fabs (v) >= 1e6 || (v != 0 && fabs (v) < 1e-4))
    return g_strdup_printf ("%.3g", v);
  return g_strdup_printf ("%.*f", a->decimals, v);
}

typedef struct {
  double x0, y0, x1, y1;        /* plot area in pixels */
  const Axis *ax, *ay;
} Frame;

static inline double
px (const Frame * f, double x)
{
  return f->x0 + (x - f->ax->lo) / (f->ax->hi - f->ax->lo) * (f->x1 - f->x0);
}

static inline double
py (const Frame * f, double y)
{
  return f->y1 - (y - f->ay->lo) / (f->ay->hi - f->ay->lo) * (f->y1 - f->y0);
}

static char *
series_name (const CbirPngChart * c, guint s)
{
  if (c->series_names && c->series_names[s])
    return g_strdup (c->series_names[s]);
  return g_strdup_printf ("series %u", s + 1);
}

static char *
hline_name (const CbirPngChart * c, guint h)
{
  if (c->hline_names && c->hline_names[h])
    return g_strdup (c->hline_names[h]);
  return g_strdup_printf ("%g", c->hline_values[h]);
}

/* How many sampled points of the curves fall into the rectangle. */
static guint
crowding (const CbirPngChart * c, const Frame * f, double rx, double ry,
    double rw, double rh)
{
  guint count = 0;
#define IN(X, Y) ((X) >= rx && (X) <= rx + rw && (Y) >= ry && (Y) <= ry + rh)
  for (guint s = 0; s < c->n_series; s++) {
    const float *v = c->series_values[s];
    for (guint i = 0; i < c->n_points; i++) {
      double x = px (f, c->x_start + i * c->x_step);
      if (!isfinite (v[i]))
        continue;
      count += IN (x, py (f, v[i])) ? 4 : 0;
      if (i + 1 < c->n_points && isfinite (v[i + 1])) {
        double x2 = px (f, c->x_start + (i + 1) * c->x_step);
        for (int k = 1; k < 8; k++) {
          double t = k / 8.0;
          count += IN (x + t * (x2 - x), py (f, v[i] + t * (v[i + 1] - v[i])));
        }
      }
    }
  }
  for (guint h = 0; h < c->n_hlines; h++)
    for (int k = 0; k <= 32; k++)
      count += IN (f->x0 + k * (f->x1 - f->x0) / 32,
          py (f, c->hline_values[h]));
#undef IN
  return count;
}

gboolean
cbir_png_write_chart (const char *path, const CbirPngChart * c,
    GError ** error)
{
  guint W, H;
  double ymin = INFINITY, ymax = -INFINITY, xmin, xmax;
  double left, right, top, bottom, tick_w = 0;
  Axis ax, ay;
  Frame f;
  cairo_surface_t *surface;
  cairo_t *cr;
  gboolean ok;
  guint n_entries;

  g_return_val_if_fail (path != NULL && c != NULL, FALSE);
  W = c->width ? c->width : 800;
  H = c->height ? c->height : 500;
  if (c->n_series == 0 || c->n_points == 0 || !c->series_values) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: chart without data (%u series of %u points)", path,
        c->n_series, c->n_points);
    return FALSE;
  }
  for (guint s = 0; s < c->n_series; s++)
    if (!c->series_values[s]) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "%s: chart series %u has no values", path, s + 1);
      return FALSE;
    }
  if (W < 200 || H < 150 || W > 8192 || H > 8192 || !(c->x_step > 0)
      || !isfinite (c->x_start) || !isfinite (c->x_step)
      || (c->n_hlines && !c->hline_values)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: invalid chart settings (%ux%u pixels, x step %g)", path, W, H,
        c->x_step);
    return FALSE;
  }

  /* ranges */
  for (guint s = 0; s < c->n_series; s++)
    for (guint i = 0; i < c->n_points; i++) {
      float v = c->series_values[s][i];
      if (isfinite (v)) {
        ymin = MIN (ymin, v);
        ymax = MAX (ymax, v);
      }
    }
  for (guint h = 0; h < c->n_hlines; h++)
    if (isfinite (c->hline_values[h])) {
      ymin = MIN (ymin, c->hline_values[h]);
      ymax = MAX (ymax, c->hline_values[h]);
    }
  if (!isfinite (ymin)) {
    ymin = 0;
    ymax = 1;
  }
  {
    double pad = (ymax - ymin) * 0.06;
    axis_init (&ay, ymin - pad, ymax + pad, 6, FALSE);
  }
  xmin = c->x_start;
  xmax = c->x_start + (c->n_points - 1) * c->x_step;
  {
    double pad = c->n_points > 1 ? (xmax - xmin) * 0.03 : 1;
    gboolean integer = c->x_step == floor (c->x_step)
        && c->x_start == floor (c->x_start);
    axis_init (&ax, xmin - pad, xmax + pad, 8, integer);
  }

  surface = cairo_image_surface_create (CAIRO_FORMAT_RGB24, W, H);
  cr = cairo_create (surface);
  cairo_set_source_rgb (cr, 1, 1, 1);
  cairo_paint (cr);

  /* margins from the text that goes there */
  set_font (cr, 12, FALSE);
  for (double v = ay.first; v <= ay.hi + ay.step * 1e-9; v += ay.step) {
    g_autofree char *s = tick_label (&ay, v);
    tick_w = MAX (tick_w, text_width (cr, s));
  }
  left = 12 + (c->y_label ? 22 : 0) + tick_w + 8;
  right = 24;
  top = c->title ? 44 : 16;
  bottom = 30 + (c->x_label ? 24 : 0);
  f.x0 = left;
  f.x1 = W - right;
  f.y0 = top;
  f.y1 = H - bottom;
  f.ax = &ax;
  f.ay = &ay;

  /* grid and ticks */
  cairo_set_line_width (cr, 1);
  for (double v = ay.first; v <= ay.hi + ay.step * 1e-9; v += ay.step) {
    double y = round (py (&f, v)) + 0.5;
    g_autofree char *s = tick_label (&ay, v);
    cairo_set_source_rgb (cr, 0.9, 0.9, 0.9);
    cairo_move_to (cr, f.x0, y);
    cairo_line_to (cr, f.x1, y);
    cairo_stroke (cr);
    cairo_set_source_rgb (cr, 0.3, 0.3, 0.3);
    cairo_move_to (cr, f.x0 - 5, y);
    cairo_line_to (cr, f.x0, y);
    cairo_stroke (cr);
    cairo_set_source_rgb (cr, 0.15, 0.15, 0.15);
    draw_text (cr, s, f.x0 - 8, y, 1, 0.5);
  }
  for (double v = ax.first; v <= ax.hi + ax.step * 1e-9; v += ax.step) {
    double x = round (px (&f, v)) + 0.5;
    g_autofree char *s = tick_label (&ax, v);
    cairo_set_source_rgb (cr, 0.9, 0.9, 0.9);
    cairo_move_to (cr, x, f.y0);
    cairo_line_to (cr, x, f.y1);
    cairo_stroke (cr);
    cairo_set_source_rgb (cr, 0.3, 0.3, 0.3);
    cairo_move_to (cr, x, f.y1);
    cairo_line_to (cr, x, f.y1 + 5);
    cairo_stroke (cr);
    cairo_set_source_rgb (cr, 0.15, 0.15, 0.15);
    draw_text (cr, s, x, f.y1 + 8, 0.5, 0);
  }

  /* labels and title */
  cairo_set_source_rgb (cr, 0.1, 0.1, 0.1);
  set_font (cr, 14, FALSE);
  if (c->x_label)
    draw_text (cr, c->x_label, (f.x0 + f.x1) / 2, H - 8, 0.5, 1);
  if (c->y_label) {
    cairo_save (cr);
    cairo_translate (cr, 10, (f.y0 + f.y1) / 2);
    cairo_rotate (cr, -G_PI / 2);
    draw_text (cr, c->y_label, 0, 0, 0.5, 0);
    cairo_restore (cr);
  }
  if (c->title) {
    set_font (cr, 17, TRUE);
    draw_text (cr, c->title, W / 2.0, 12, 0.5, 0);
  }

  /* reference lines and curves, clipped to the plot area */
  cairo_save (cr);
  cairo_rectangle (cr, f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
  cairo_clip (cr);
  for (guint h = 0; h < c->n_hlines; h++) {
    const double dash[] = { 7, 4 };
    double y = py (&f, c->hline_values[h]);
    if (!isfinite (c->hline_values[h]))
      continue;
    cairo_set_source_rgb (cr, 0.35, 0.35, 0.35);
    cairo_set_line_width (cr, 1.5);
    cairo_set_dash (cr, dash, 2, 0);
    cairo_move_to (cr, f.x0, y);
    cairo_line_to (cr, f.x1, y);
    cairo_stroke (cr);
    cairo_set_dash (cr, NULL, 0, 0);
  }
  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);
  for (guint s = 0; s < c->n_series; s++) {
    const float *v = c->series_values[s];
    const double *col = palette[s % G_N_ELEMENTS (palette)];
    gboolean pen = FALSE;
    cairo_set_source_rgb (cr, col[0], col[1], col[2]);
    cairo_set_line_width (cr, 2.2);
    for (guint i = 0; i < c->n_points; i++) {
      double x = px (&f, c->x_start + i * c->x_step);
      if (!isfinite (v[i])) {
        pen = FALSE;
        continue;
      }
      if (pen)
        cairo_line_to (cr, x, py (&f, v[i]));
      else
        cairo_move_to (cr, x, py (&f, v[i]));
      pen = TRUE;
    }
    cairo_stroke (cr);
    if (c->n_points <= 40) {
      for (guint i = 0; i < c->n_points; i++) {
        if (!isfinite (v[i]))
          continue;
        cairo_arc (cr, px (&f, c->x_start + i * c->x_step), py (&f, v[i]),
            3.2, 0, 2 * G_PI);
        cairo_fill (cr);
      }
    }
  }
  cairo_restore (cr);

  /* frame */
  cairo_set_source_rgb (cr, 0.3, 0.3, 0.3);
  cairo_set_line_width (cr, 1);
  cairo_rectangle (cr, round (f.x0) + 0.5, round (f.y0) + 0.5,
      round (f.x1) - round (f.x0), round (f.y1) - round (f.y0));
  cairo_stroke (cr);

  /* legend in the emptiest corner */
  n_entries = c->n_series + c->n_hlines;
  {
    const double row_h = 20, pad = 8, swatch = 26;
    double lw = 0, bw, bh, bx = 0, by = 0;
    guint best = G_MAXUINT;
    set_font (cr, 12.5, FALSE);
    for (guint e = 0; e < n_entries; e++) {
      g_autofree char *s = e < c->n_series ? series_name (c, e) :
          hline_name (c, e - c->n_series);
      lw = MAX (lw, text_width (cr, s));
    }
    bw = pad + swatch + 6 + lw + pad;
    bh = pad + n_entries * row_h + pad - 4;
    for (int corner = 0; corner < 4; corner++) {
      double cx = (corner == 0 || corner == 2) ? f.x1 - 10 - bw : f.x0 + 10;
      double cy = corner < 2 ? f.y0 + 10 : f.y1 - 10 - bh;
      guint score = crowding (c, &f, cx, cy, bw, bh);
      if (score < best) {
        best = score;
        bx = cx;
        by = cy;
      }
    }
    cairo_set_source_rgba (cr, 1, 1, 1, 0.88);
    cairo_rectangle (cr, round (bx) + 0.5, round (by) + 0.5, round (bw),
        round (bh));
    cairo_fill_preserve (cr);
    cairo_set_source_rgb (cr, 0.75, 0.75, 0.75);
    cairo_set_line_width (cr, 1);
    cairo_stroke (cr);
    for (guint e = 0; e < n_entries; e++) {
      double y = by + pad + e * row_h + row_h / 2 - 2;
      g_autofree char *s = e < c->n_series ? series_name (c, e) :
          hline_name (c, e - c->n_series);
      if (e < c->n_series) {
        const double *col = palette[e % G_N_ELEMENTS (palette)];
        cairo_set_source_rgb (cr, col[0], col[1], col[2]);
        cairo_set_line_width (cr, 2.2);
        cairo_move_to (cr, bx + pad, y);
        cairo_line_to (cr, bx + pad + swatch, y);
        cairo_stroke (cr);
        if (c->n_points <= 40) {
          cairo_arc (cr, bx + pad + swatch / 2, y, 3.2, 0, 2 * G_PI);
          cairo_fill (cr);
        }
      } else {
        const double dash[] = { 7, 4 };
        cairo_set_source_rgb (cr, 0.35, 0.35, 0.35);
        cairo_set_line_width (cr, 1.5);
        cairo_set_dash (cr, dash, 2, 0);
        cairo_move_to (cr, bx + pad, y);
        cairo_line_to (cr, bx + pad + swatch, y);
        cairo_stroke (cr);
        cairo_set_dash (cr, NULL, 0, 0);
      }
      cairo_set_source_rgb (cr, 0.1, 0.1, 0.1);
      draw_text (cr, s, bx + pad + swatch + 6, y, 0, 0.5);
    }
  }

  cairo_destroy (cr);
  ok = write_png_atomic (surface, path, error);
  cairo_surface_destroy (surface);
  return ok;
}

#else /* !HAVE_CAIRO */

static gboolean
no_cairo (const char *path, GError ** error)
{
  g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
      "%s: PNG output not built (configure with -Dpng=enabled and cairo)",
      path);
  return FALSE;
}

gboolean
cbir_png_write_grid (const char *path, const guint8 * images, guint n,
    guint width, guint height, guint columns, guint scale,
    const char *const *row_titles, GError ** error)
{
  return no_cairo (path, error);
}

gboolean
cbir_png_write_chart (const char *path, const CbirPngChart * c,
    GError ** error)
{
  return no_cairo (path, error);
}

#endif /* HAVE_CAIRO */

gboolean
cbir_png_write_curves (const char *path, const char *title,
    const char *x_label, const char *y_label, guint n_series,
    const char *const *series_names, const float *const *series_values,
    guint n_points, GError ** error)
{
  CbirPngChart c = {
    .title = title,
    .x_label = x_label,
    .y_label = y_label,
    .n_series = n_series,
    .series_names = series_names,
    .series_values = series_values,
    .n_points = n_points,
    .x_start = 1,
    .x_step = 1,
  };
  return cbir_png_write_chart (path, &c, error);
}

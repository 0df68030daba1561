/* Frame preprocessing: area-average scaling and MNIST-style normalisation
 * of camera frames (see include/cbir/preprocess.h for the steps). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cbir/preprocess.h"

/* ---- area-average resize (separable box filter with exact overlaps) ---- */

typedef struct {
  guint first, count;           /* source pixels [first, first + count) */
  guint wofs;                   /* offset into the weights array */
} Span;

/* Weights of n_out output pixels over n_in input pixels. */
static float *
area_weights (guint n_in, guint n_out, Span *spans)
{
  float *w = g_new (float, (gsize) n_out * (n_in / n_out + 3));
  guint k = 0;
  double scale = (double) n_in / n_out;

  for (guint o = 0; o < n_out; o++) {
    double a = o * scale, b = (o + 1) * scale;
    guint i0 = (guint) floor (a);
    guint i1 = MIN (n_in, (guint) ceil (b));
    spans[o].first = i0;
    spans[o].count = i1 - i0;
    spans[o].wofs = k;
    for (guint i = i0; i < i1; i++) {
      double lo = MAX (a, (double) i), hi = MIN (b, (double) i + 1);
      w[k++] = (float) ((hi - lo) / scale);
    }
  }
  return w;
}

/* src: sw x sh floats, sstride floats a row; dst: dw x dh, tightly packed. */
static void
resize_area_f32 (const float *src, guint sw, guint sh, gsize sstride,
    float *dst, guint dw, guint dh)
{
  g_autofree Span *hs = g_new (Span, dw);
  g_autofree Span *vs = g_new (Span, dh);
  g_autofree float *hw = area_weights (sw, dw, hs);
  g_autofree float *vw = area_weights (sh, dh, vs);
  g_autofree float *tmp = g_new (float, (gsize) sh * dw);

  for (guint y = 0; y < sh; y++) {
    const float *row = src + (gsize) y * sstride;
    for (guint x = 0; x < dw; x++) {
      float s = 0;
      for (guint i = 0; i < hs[x].count; i++)
        s += hw[hs[x].wofs + i] * row[hs[x].first + i];
      tmp[(gsize) y * dw + x] = s;
    }
  }
  for (guint y = 0; y < dh; y++) {
    float *out = dst + (gsize) y * dw;
    memset (out, 0, dw * sizeof (float));
    for (guint i = 0; i < vs[y].count; i++) {
      float wt = vw[vs[y].wofs + i];
      const float *t = tmp + (gsize) (vs[y].first + i) * dw;
      for (guint x = 0; x < dw; x++)
        out[x] += wt * t[x];
    }
  }
}

void
cbir_preprocess_scale (const guint8 *src, guint width, guint height,
    gsize stride, guint out_w, guint out_h, guint8 *dst)
{
  if (src == NULL || dst == NULL || width == 0 || height == 0 || out_w == 0
      || out_h == 0)
    return;
  if (out_w == width && out_h == height) {
    for (guint y = 0; y < height; y++)
      memcpy (dst + (gsize) y * width, src + (gsize) y * stride, width);
    return;
  }

  g_autofree float *f = g_new (float, (gsize) width * height);
  g_autofree float *o = g_new (float, (gsize) out_w * out_h);
  for (guint y = 0; y < height; y++)
    for (guint x = 0; x < width; x++)
      f[(gsize) y * width + x] = src[(gsize) y * stride + x];
  resize_area_f32 (f, width, height, width, o, out_w, out_h);
  for (gsize i = 0; i < (gsize) out_w * out_h; i++)
    dst[i] = (guint8) CLAMP (lrintf (o[i]), 0, 255);
}

double
cbir_preprocess_deskew (const guint8 *src, guint w, guint h, guint8 *dst)
{
  g_return_val_if_fail (src != NULL && dst != NULL && src != dst, 0.0);
  const gsize n = (gsize) w * h;
  double s = 0, sx = 0, sy = 0;
  for (guint y = 0; y < h; y++)
    for (guint x = 0; x < w; x++) {
      double v = src[(gsize) y * w + x];
      s += v;
      sx += v * x;
      sy += v * y;
    }
  if (s <= 0) {
    memcpy (dst, src, n);
    return 0.0;
  }
  const double cx = sx / s, cy = sy / s;
  double vy = 0, cxy = 0;
  for (guint y = 0; y < h; y++)
    for (guint x = 0; x < w; x++) {
      double v = src[(gsize) y * w + x];
      vy += v * (y - cy) * (y - cy);
      cxy += v * (x - cx) * (y - cy);
    }
  if (!(vy > 0)) {
    memcpy (dst, src, n);
    return 0.0;
  }
  const double alpha = CLAMP (cxy / vy, -CBIR_DESKEW_MAX, CBIR_DESKEW_MAX);
  for (guint y = 0; y < h; y++) {
    const guint8 *row = src + (gsize) y * w;
    const double d = alpha * (y - cy);
    const double fl = floor (d);
    const gint k = (gint) fl;
    const double t = d - fl;
    for (guint x = 0; x < w; x++) {
      /* output x samples the row at x + d:
       * (1 - t) row[x + k] + t row[x + k + 1] */
      gint64 x0 = (gint64) x + k;
      double v = 0;
      if (x0 >= 0 && x0 < w)
        v += (1 - t) * row[x0];
      if (x0 + 1 >= 0 && x0 + 1 < w)
        v += t * row[x0 + 1];
      dst[(gsize) y * w + x] = (guint8) CLAMP (lrint (v), 0, 255);
    }
  }
  return alpha;
}

/* ---- ink analysis ---- */

typedef struct {
  guint area;
  guint x0, y0, x1, y1;         /* inclusive */
  gboolean keep;
} Component;

struct _CbirInkMap {
  guint w, h;
  gboolean inverted;
  guint8 *strength;             /* ink strength above the background */
  guint32 *label;               /* component + 1, 0 = not ink */
  Component *comp;
  guint n_comp;
  guint threshold;
  guint min_area;               /* specks are smaller */
  guint min_digit_area;         /* a digit has at least this much ink */
};

/* Value at quantile q (0..1) of a 256-bin histogram with n entries. */
static guint
hist_quantile (const guint32 *hist, guint64 n, double q)
{
  guint64 target = (guint64) (q * (double) n), acc = 0;

  for (guint v = 0; v < 256; v++) {
    acc += hist[v];
    if (acc > target)
      return v;
  }
  return 255;
}

static guint
otsu (const guint32 *hist)
{
  double total = 0, sum = 0, sum0 = 0, w0 = 0, best = -1;
  guint t = 0;

  for (guint v = 0; v < 256; v++) {
    total += hist[v];
    sum += (double) v * hist[v];
  }
  for (guint v = 0; v < 255; v++) {
    w0 += hist[v];
    sum0 += (double) v * hist[v];
    double w1 = total - w0;
    if (w0 == 0 || w1 == 0)
      continue;
    double m0 = sum0 / w0, m1 = (sum - sum0) / w1;
    double between = w0 * w1 * (m0 - m1) * (m0 - m1);
    if (between > best) {
      best = between;
      t = v;
    }
  }
  return t;                     /* ink is > t */
}

/* median + 4 sigma of the paper, sigma from the quartile spread (robust
 * while the ink stays under a quarter of the pixels counted) */
static guint
noise_floor (const guint32 *hist, guint64 n)
{
  guint med = hist_quantile (hist, n, 0.5);
  guint q75 = hist_quantile (hist, n, 0.75);
  guint noise = (guint) ceil ((q75 > med ? q75 - med : 1) * 1.4826 / 0.6745);
  return med + 4 * noise;
}

static guint32
uf_find (guint32 *parent, guint32 i)
{
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

static void
uf_union (guint32 *parent, guint32 a, guint32 b)
{
  a = uf_find (parent, a);
  b = uf_find (parent, b);
  if (a < b)
    parent[b] = a;
  else if (b < a)
    parent[a] = b;
}

/* Estimate of the paper (the low side of the ink-positive image): the 25th
 * percentile of each block, a 3x3 minimum over blocks (blocks that are
 * mostly ink), bilinearly interpolated between block centres. */
static void
background (const guint8 *img, guint w, guint h, guint8 *bg)
{
  guint bs = MAX (4, MIN (w, h) / 8);
  guint gw = (w + bs - 1) / bs, gh = (h + bs - 1) / bs;
  g_autofree float *grid = g_new (float, (gsize) gw * gh);
  g_autofree float *mins = g_new (float, (gsize) gw * gh);
  guint32 hist[256];

  for (guint by = 0; by < gh; by++) {
    for (guint bx = 0; bx < gw; bx++) {
      guint x0 = bx * bs, y0 = by * bs;
      guint x1 = MIN (w, x0 + bs), y1 = MIN (h, y0 + bs);
      memset (hist, 0, sizeof hist);
      for (guint y = y0; y < y1; y++)
        for (guint x = x0; x < x1; x++)
          hist[img[(gsize) y * w + x]]++;
      grid[by * gw + bx] = hist_quantile (hist,
          (guint64) (x1 - x0) * (y1 - y0), 0.25);
    }
  }
  for (guint by = 0; by < gh; by++) {
    for (guint bx = 0; bx < gw; bx++) {
      float m = grid[by * gw + bx];
      for (gint dy = -1; dy <= 1; dy++)
        for (gint dx = -1; dx <= 1; dx++) {
          gint yy = (gint) by + dy, xx = (gint) bx + dx;
          if (yy >= 0 && yy < (gint) gh && xx >= 0 && xx < (gint) gw)
            m = MIN (m, grid[yy * gw + xx]);
        }
      mins[by * gw + bx] = m;
    }
  }
  for (guint y = 0; y < h; y++) {
    float gy = CLAMP (((float) y + 0.5f) / bs - 0.5f, 0.0f, (float) gh - 1);
    guint y0 = (guint) gy, y1 = MIN (gh - 1, y0 + 1);
    float fy = gy - y0;
    for (guint x = 0; x < w; x++) {
      float gx = CLAMP (((float) x + 0.5f) / bs - 0.5f, 0.0f, (float) gw - 1);
      guint x0 = (guint) gx, x1 = MIN (gw - 1, x0 + 1);
      float fx = gx - x0;
      float v = (1 - fy) * ((1 - fx) * mins[y0 * gw + x0] + fx * mins[y0 * gw + x1])
          + fy * ((1 - fx) * mins[y1 * gw + x0] + fx * mins[y1 * gw + x1]);
      bg[(gsize) y * w + x] = (guint8) lrintf (v);
    }
  }
}

CbirInkMap *
cbir_ink_map_new (const guint8 *src, guint width, guint height, gsize stride)
{
  guint w = width, h = height;
  gsize n = (gsize) w * h;
  guint32 hist[256], border[256];
  guint64 n_border = 0;
  CbirInkMap *m;

  if (src == NULL || w == 0 || h == 0 || stride < w)
    return NULL;

  m = g_new0 (CbirInkMap, 1);
  m->w = w;
  m->h = h;
  m->strength = g_malloc (n);
  m->label = g_new0 (guint32, n);

  /* Polarity: the ink lies on the side of the frame's extremes far from
   * the border's median (the border is mostly paper). */
  g_autofree guint8 *img = g_malloc (n);
  guint band = MAX (1, MIN (w, h) / 16);
  memset (hist, 0, sizeof hist);
  memset (border, 0, sizeof border);
  for (guint y = 0; y < h; y++) {
    for (guint x = 0; x < w; x++) {
      guint8 v = src[(gsize) y * stride + x];
      img[(gsize) y * w + x] = v;
      hist[v]++;
      if (x < band || y < band || x >= w - band || y >= h - band) {
        border[v]++;
        n_border++;
      }
    }
  }
  guint bmed = hist_quantile (border, n_border, 0.5);
  guint lo = hist_quantile (hist, n, 0.005), hi = hist_quantile (hist, n, 0.995);
  m->inverted = (gint) bmed - (gint) lo > (gint) hi - (gint) bmed;
  if (m->inverted)
    for (gsize i = 0; i < n; i++)
      img[i] = 255 - img[i];

  /* Ink strength above a smooth background. */
  g_autofree guint8 *bg = g_malloc (n);
  background (img, w, h, bg);
  memset (hist, 0, sizeof hist);
  for (gsize i = 0; i < n; i++) {
    m->strength[i] = img[i] > bg[i] ? img[i] - bg[i] : 0;
    hist[m->strength[i]]++;
  }

  /* Threshold: Otsu, but never inside the paper's noise, estimated from
   * the spread of the whole frame, or of its border (mostly paper) when
   * the whole frame's is more than twice the border's: a digit covering
   * more than a quarter of the frame (held close to the camera, or a 28x28
   * MNIST digit) puts its ink at the 75th percentile and the whole-frame
   * floor above 255 (no digit found). Ordinary frames keep the whole-frame
   * floor (with the border's alone the simulated camera lost 0.6 points:
   * it reads less noise there and lets shadows in). */
  memset (border, 0, sizeof border);
  for (guint y = 0; y < h; y++)
    for (guint x = 0; x < w; x++)
      if (x < band || y < band || x >= w - band || y >= h - band)
        border[m->strength[(gsize) y * w + x]]++;
  guint floor_all = noise_floor (hist, n);
  guint floor_border = noise_floor (border, n_border);
  m->threshold = MAX (otsu (hist), MAX (floor_all > 2 * MAX (floor_border,
              24u) ? floor_border : floor_all, 24u));

  /* Connected components (8-connected) of strength > threshold. */
  g_autofree guint32 *parent = g_new (guint32, n + 1);
  guint32 next = 1;
  parent[0] = 0;
  for (guint y = 0; y < h; y++) {
    for (guint x = 0; x < w; x++) {
      gsize i = (gsize) y * w + x;
      guint32 nb[4], nn = 0, l = 0;
      if (m->strength[i] <= m->threshold)
        continue;
      if (x > 0 && m->label[i - 1])
        nb[nn++] = m->label[i - 1];
      if (y > 0) {
        if (x > 0 && m->label[i - w - 1])
          nb[nn++] = m->label[i - w - 1];
        if (m->label[i - w])
          nb[nn++] = m->label[i - w];
        if (x + 1 < w && m->label[i - w + 1])
          nb[nn++] = m->label[i - w + 1];
      }
      if (nn == 0) {
        l = next;
        parent[next] = next;
        next++;
      } else {
        l = nb[0];
        for (guint k = 1; k < nn; k++)
          uf_union (parent, l, nb[k]);
      }
      m->label[i] = l;
    }
  }
  /* Compact the roots to 1..n_comp. */
  g_autofree guint32 *root_id = g_new0 (guint32, next);
  for (guint32 l = 1; l < next; l++) {
    guint32 r = uf_find (parent, l);
    if (root_id[r] == 0)
      root_id[r] = ++m->n_comp;
  }
  m->comp = g_new0 (Component, m->n_comp + 1);
  for (guint c = 1; c <= m->n_comp; c++) {
    m->comp[c].x0 = w;
    m->comp[c].y0 = h;
  }
  for (guint y = 0; y < h; y++) {
    for (guint x = 0; x < w; x++) {
      gsize i = (gsize) y * w + x;
      if (!m->label[i])
        continue;
      guint32 c = root_id[uf_find (parent, m->label[i])];
      Component *cp = &m->comp[c];
      m->label[i] = c;
      cp->area++;
      cp->x0 = MIN (cp->x0, x);
      cp->y0 = MIN (cp->y0, y);
      cp->x1 = MAX (cp->x1, x);
      cp->y1 = MAX (cp->y1, y);
    }
  }

  /* Specks: absolutely tiny, or tiny next to the largest component. */
  guint largest = 0;
  m->min_area = MAX (3, (guint) (n / 5000));
  m->min_digit_area = MAX (2 * m->min_area, (guint) (n / 2000));
  for (guint c = 1; c <= m->n_comp; c++)
    largest = MAX (largest, m->comp[c].area);
  for (guint c = 1; c <= m->n_comp; c++)
    m->comp[c].keep = m->comp[c].area >= m->min_area
        && m->comp[c].area * 50 >= largest;
  return m;
}

void
cbir_ink_map_free (CbirInkMap *map)
{
  if (map == NULL)
    return;
  g_free (map->strength);
  g_free (map->label);
  g_free (map->comp);
  g_free (map);
}

static gboolean
clip_rect (const CbirInkMap *m, const CbirRect *rect, CbirRect *out)
{
  if (rect == NULL) {
    *out = (CbirRect) { 0, 0, m->w, m->h };
    return TRUE;
  }
  if (rect->x >= m->w || rect->y >= m->h || rect->width == 0
      || rect->height == 0)
    return FALSE;
  out->x = rect->x;
  out->y = rect->y;
  out->width = MIN (rect->width, m->w - rect->x);
  out->height = MIN (rect->height, m->h - rect->y);
  return TRUE;
}

gboolean
cbir_ink_map_normalise (const CbirInkMap *m, const CbirRect *rect,
    guint8 *dst28, CbirPreprocessInfo *info)
{
  CbirRect r;
  guint x0 = G_MAXUINT, y0 = G_MAXUINT, x1 = 0, y1 = 0;
  guint64 count = 0;
  guint32 hist[256];

  if (dst28)
    memset (dst28, 0, CBIR_MNIST_SIZE * CBIR_MNIST_SIZE);
  if (info) {
    memset (info, 0, sizeof *info);
    info->inverted = m ? m->inverted : FALSE;
  }
  if (m == NULL || dst28 == NULL || !clip_rect (m, rect, &r))
    return FALSE;

  /* Kept ink inside the rectangle: box, count, typical strength. */
  memset (hist, 0, sizeof hist);
  for (guint y = r.y; y < r.y + r.height; y++) {
    for (guint x = r.x; x < r.x + r.width; x++) {
      gsize i = (gsize) y * m->w + x;
      guint32 c = m->label[i];
      if (c == 0 || !m->comp[c].keep)
        continue;
      count++;
      hist[m->strength[i]]++;
      x0 = MIN (x0, x);
      y0 = MIN (y0, y);
      x1 = MAX (x1, x);
      y1 = MAX (y1, y);
    }
  }
  if (count < m->min_digit_area)
    return FALSE;

  /* Ink at or above the 20th percentile of its strength is full ink, as in
   * MNIST's saturated stroke cores. */
  float level = MAX ((float) hist_quantile (hist, count, 0.2), 1.0f);
  guint soft = m->threshold / 2;

  /* Take in the soft (anti-aliased) edge: one more row/column on a side
   * where it holds faint ink. */
#define SOFT_AT(xx, yy) (m->label[(gsize) (yy) * m->w + (xx)] == 0 \
    && m->strength[(gsize) (yy) * m->w + (xx)] >= soft)
  gboolean grow;
  grow = FALSE;
  if (x0 > r.x)
    for (guint y = y0; y <= y1 && !grow; y++)
      grow = SOFT_AT (x0 - 1, y);
  x0 -= grow;
  grow = FALSE;
  if (x1 + 1 < r.x + r.width)
    for (guint y = y0; y <= y1 && !grow; y++)
      grow = SOFT_AT (x1 + 1, y);
  x1 += grow;
  grow = FALSE;
  if (y0 > r.y)
    for (guint x = x0; x <= x1 && !grow; x++)
      grow = SOFT_AT (x, y0 - 1);
  y0 -= grow;
  grow = FALSE;
  if (y1 + 1 < r.y + r.height)
    for (guint x = x0; x <= x1 && !grow; x++)
      grow = SOFT_AT (x, y1 + 1);
  y1 += grow;
#undef SOFT_AT

  guint bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  g_autofree float *patch = g_new (float, (gsize) bw * bh);
  for (guint y = 0; y < bh; y++) {
    for (guint x = 0; x < bw; x++) {
      gsize i = (gsize) (y0 + y) * m->w + x0 + x;
      guint32 c = m->label[i];
      float v = 0;
      if ((c != 0 && m->comp[c].keep) || (c == 0 && m->strength[i] >= soft))
        v = MIN (1.0f, m->strength[i] / level);
      patch[(gsize) y * bw + x] = v;
    }
  }

  /* Fit into 20x20 keeping the aspect ratio. */
  double s = (double) CBIR_MNIST_FIT / MAX (bw, bh);
  guint ow = CLAMP ((guint) lround (bw * s), 1, CBIR_MNIST_FIT);
  guint oh = CLAMP ((guint) lround (bh * s), 1, CBIR_MNIST_FIT);
  float fit[CBIR_MNIST_FIT * CBIR_MNIST_FIT];
  resize_area_f32 (patch, bw, bh, bw, fit, ow, oh);

  /* Centre of mass to the centre of the 28x28 field. */
  double sum = 0, sx = 0, sy = 0;
  for (guint y = 0; y < oh; y++)
    for (guint x = 0; x < ow; x++) {
      float v = fit[y * ow + x];
      sum += v;
      sx += v * (x + 0.5);
      sy += v * (y + 0.5);
    }
  gint ox = (CBIR_MNIST_SIZE - (gint) ow) / 2, oy = (CBIR_MNIST_SIZE - (gint) oh) / 2;
  if (sum > 0) {
    ox = (gint) lround (CBIR_MNIST_SIZE / 2.0 - sx / sum);
    oy = (gint) lround (CBIR_MNIST_SIZE / 2.0 - sy / sum);
  }
  ox = CLAMP (ox, 0, CBIR_MNIST_SIZE - (gint) ow);
  oy = CLAMP (oy, 0, CBIR_MNIST_SIZE - (gint) oh);
  for (guint y = 0; y < oh; y++)
    for (guint x = 0; x < ow; x++)
      dst28[(oy + y) * CBIR_MNIST_SIZE + ox + x] =
          (guint8) CLAMP (lrintf (fit[y * ow + x] * 255.0f), 0, 255);

  if (info) {
    info->bbox = (CbirRect) { x0, y0, bw, bh };
    info->ink_fraction = (float) count / ((float) r.width * r.height);
    info->contrast = level;
  }
  return TRUE;
}

typedef struct {
  CbirRect r;
  guint ink;
} Box;

static gboolean
boxes_belong (const Box *a, const Box *b, guint margin)
{
  gint ax0 = (gint) a->r.x - (gint) margin, ay0 = (gint) a->r.y - (gint) margin;
  gint ax1 = (gint) (a->r.x + a->r.width + margin);
  gint ay1 = (gint) (a->r.y + a->r.height + margin);
  gint bx0 = (gint) b->r.x, by0 = (gint) b->r.y;
  gint bx1 = (gint) (b->r.x + b->r.width), by1 = (gint) (b->r.y + b->r.height);

  /* Touching or nearly touching. */
  if (ax0 < bx1 && bx0 < ax1 && ay0 < by1 && by0 < ay1)
    return TRUE;
  /* Stacked parts of one digit (a 5's bar): mostly the same columns and a
   * small vertical gap. */
  gint ox = MIN (a->r.x + a->r.width, b->r.x + b->r.width)
      - (gint) MAX (a->r.x, b->r.x);
  gint gap = MAX ((gint) b->r.y - (gint) (a->r.y + a->r.height),
      (gint) a->r.y - (gint) (b->r.y + b->r.height));
  guint maxh = MAX (a->r.height, b->r.height);
  return ox * 2 >= (gint) MIN (a->r.width, b->r.width) && gap * 3 < (gint) maxh;
}

static gint
by_ink_desc (gconstpointer a, gconstpointer b)
{
  const Box *x = a, *y = b;
  return (x->ink < y->ink) - (x->ink > y->ink);
}

static gint
left_to_right (gconstpointer a, gconstpointer b)
{
  const CbirRect *x = a, *y = b;
  if (x->x != y->x)
    return x->x < y->x ? -1 : 1;
  return (x->y > y->y) - (x->y < y->y);
}

guint
cbir_ink_map_find_digits (const CbirInkMap *m, CbirRect *rects,
    guint max_rects)
{
  g_autoptr (GArray) boxes = NULL;
  guint margin, n_out;

  if (m == NULL || (rects == NULL && max_rects > 0))
    return 0;
  boxes = g_array_new (FALSE, FALSE, sizeof (Box));
  for (guint c = 1; c <= m->n_comp; c++) {
    const Component *cp = &m->comp[c];
    Box b;
    if (!cp->keep)
      continue;
    b.r = (CbirRect) { cp->x0, cp->y0, cp->x1 - cp->x0 + 1, cp->y1 - cp->y0 + 1 };
    b.ink = cp->area;
    g_array_append_val (boxes, b);
  }

  /* Merge until stable. */
  margin = MAX (1, MIN (m->w, m->h) / 100);
  gboolean merged = TRUE;
  while (merged) {
    merged = FALSE;
    for (guint i = 0; i < boxes->len && !merged; i++) {
      for (guint j = i + 1; j < boxes->len && !merged; j++) {
        Box *a = &g_array_index (boxes, Box, i), *b = &g_array_index (boxes, Box, j);
        if (boxes_belong (a, b, margin) || boxes_belong (b, a, margin)) {
          guint x0 = MIN (a->r.x, b->r.x), y0 = MIN (a->r.y, b->r.y);
          guint x1 = MAX (a->r.x + a->r.width, b->r.x + b->r.width);
          guint y1 = MAX (a->r.y + a->r.height, b->r.y + b->r.height);
          a->r = (CbirRect) { x0, y0, x1 - x0, y1 - y0 };
          a->ink += b->ink;
          g_array_remove_index_fast (boxes, j);
          merged = TRUE;
        }
      }
    }
  }

  g_array_sort (boxes, by_ink_desc);
  n_out = 0;
  for (guint i = 0; i < boxes->len && n_out < max_rects; i++) {
    const Box *b = &g_array_index (boxes, Box, i);
    if (b->ink < m->min_digit_area)
      break;
    rects[n_out++] = b->r;
  }
  if (n_out > 1)
    qsort (rects, n_out, sizeof (CbirRect), left_to_right);
  return n_out;
}

gboolean
cbir_preprocess_mnist (const guint8 *src, guint width, guint height,
    gsize stride, guint8 *dst28, CbirPreprocessInfo *info)
{
  return cbir_preprocess_mnist_rect (src, width, height, stride, NULL, dst28,
      info);
}

gboolean
cbir_preprocess_mnist_rect (const guint8 *src, guint width, guint height,
    gsize stride, const CbirRect *rect, guint8 *dst28,
    CbirPreprocessInfo *info)
{
  g_autoptr (CbirInkMap) m = cbir_ink_map_new (src, width, height, stride);

  return cbir_ink_map_normalise (m, rect, dst28, info);
}

guint
cbir_preprocess_find_digits (const guint8 *src, guint width, guint height,
    gsize stride, CbirRect *rects, guint max_rects)
{
  g_autoptr (CbirInkMap) m = cbir_ink_map_new (src, width, height, stride);

  return cbir_ink_map_find_digits (m, rects, max_rects);
}

/* The simulated camera (see include/cbir/simcam.h). */
#include "config.h"

#include <cbir/simcam.h>

#include <math.h>
#include <string.h>

struct _CbirSimcam {
  CbirSimcamParams p;
  const CbirDataset *ds;
  guint *order;                 /* shown position -> data set index */
};

void
cbir_simcam_params_init (CbirSimcamParams * p)
{
  memset (p, 0, sizeof (*p));
  p->width = 640;
  p->height = 480;
  p->seed = 1;
  p->first = 0;
  p->min_digits = 1;
  p->max_digits = 1;
  p->min_height = 150;
  p->max_height = 300;
  p->max_rotation = 10;
  p->blur_sigma = 1.5f;
  p->noise_sigma = 6;
  p->paper_min = 170;
  p->paper_max = 240;
  p->gradient = 0.35f;
  p->vignette = 0.25f;
  p->ink_min = 0.65f;
  p->ink_max = 0.9f;
  p->shuffle = TRUE;
  p->blank_every = 0;
}

/* ---- counter-based RNG (splitmix64) ---- */

typedef struct {
  guint64 s;
} Rng;

static guint64
rng_next (Rng * r)
{
  guint64 z = (r->s += G_GUINT64_CONSTANT (0x9E3779B97F4A7C15));

  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static void
rng_init (Rng * r, guint64 seed, guint64 stream, guint64 frame)
{
  r->s = seed ^ (stream * G_GUINT64_CONSTANT (0xD1B54A32D192ED03));
  rng_next (r);
  r->s ^= frame * G_GUINT64_CONSTANT (0xA24BAED4963EE407);
  rng_next (r);
}

/* uniform in [0, 1) */
static double
rng_uniform (Rng * r)
{
  return (rng_next (r) >> 11) * (1.0 / 9007199254740992.0);
}

static double
rng_range (Rng * r, double lo, double hi)
{
  return lo + (hi - lo) * rng_uniform (r);
}

/* two standard normal deviates (Box-Muller) */
static void
rng_gauss2 (Rng * r, float *a, float *b)
{
  double u1 = 1.0 - rng_uniform (r);    /* (0, 1] */
  double u2 = rng_uniform (r);
  double m = sqrt (-2.0 * log (u1));

  *a = (float) (m * cos (2 * G_PI * u2));
  *b = (float) (m * sin (2 * G_PI * u2));
}

/* ---- set-up ---- */

CbirSimcam *
cbir_simcam_new (const CbirDataset * ds, const CbirSimcamParams * p,
    GError ** error)
{
  CbirSimcam *cam;

  g_return_val_if_fail (ds != NULL && p != NULL, NULL);

  if (ds->n == 0 || ds->rows < 8 || ds->cols < 8) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "simcam: the data set must hold images of at least 8x8 "
        "(has %u images of %ux%u)", ds->n, ds->cols, ds->rows);
    return NULL;
  }
  if (p->width < 32 || p->height < 32 || p->width > 8192 || p->height > 8192) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "simcam: frame size %ux%u out of range (32..8192)", p->width,
        p->height);
    return NULL;
  }
  if (p->min_digits < 1 || p->max_digits < p->min_digits ||
      p->max_digits > CBIR_SIMCAM_MAX_DIGITS) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "simcam: digits per frame %u..%u out of range (1..%d)",
        p->min_digits, p->max_digits, CBIR_SIMCAM_MAX_DIGITS);
    return NULL;
  }
  if (!(p->min_height >= 8 && p->max_height >= p->min_height &&
          p->max_height <= p->height)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "simcam: digit height %g..%g out of range (8..frame height %u)",
        p->min_height, p->max_height, p->height);
    return NULL;
  }
  if (!(p->max_rotation >= 0 && p->max_rotation <= 90) ||
      !(p->blur_sigma >= 0 && p->blur_sigma <= 20) ||
      !(p->noise_sigma >= 0 && p->noise_sigma <= 128) ||
      !(p->paper_min >= 0 && p->paper_max >= p->paper_min &&
          p->paper_max <= 255) ||
      !(p->gradient >= 0 && p->gradient < 1) ||
      !(p->vignette >= 0 && p->vignette < 1) ||
      !(p->ink_min >= 0 && p->ink_max >= p->ink_min && p->ink_max <= 1)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "simcam: a rotation, blur, noise, paper, light or ink setting is "
        "out of range");
    return NULL;
  }
  /* the smallest digit must fit in its slot */
  if (p->width / p->max_digits < 16) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "simcam: %u digits do not fit side by side in a frame %u wide",
        p->max_digits, p->width);
    return NULL;
  }

  cam = g_new0 (CbirSimcam, 1);
  cam->p = *p;
  cam->ds = ds;
  cam->order = g_new (guint, ds->n);
  for (guint i = 0; i < ds->n; i++)
    cam->order[i] = i;
  if (p->shuffle) {
    Rng r;

    rng_init (&r, p->seed, 3, 0);
    for (guint i = ds->n - 1; i > 0; i--) {
      guint j = (guint) (rng_next (&r) % (i + 1)), t = cam->order[i];
      cam->order[i] = cam->order[j];
      cam->order[j] = t;
    }
  }
  return cam;
}

void
cbir_simcam_free (CbirSimcam * cam)
{
  if (cam == NULL)
    return;
  g_free (cam->order);
  g_free (cam);
}

const CbirSimcamParams *
cbir_simcam_get_params (const CbirSimcam * cam)
{
  return &cam->p;
}

/* ---- rendering ---- */

/* bilinear sample of a GRAY8 image (zero outside), coordinates in pixel
 * units with pixel centres at +0.5 */
static float
sample_bilinear (const guint8 * img, guint w, guint h, float x, float y)
{
  float fx = x - 0.5f, fy = y - 0.5f;
  int x0 = (int) floorf (fx), y0 = (int) floorf (fy);
  float ax = fx - x0, ay = fy - y0;
  float v00 = 0, v01 = 0, v10 = 0, v11 = 0;

  if (x0 < -1 || y0 < -1 || x0 >= (int) w || y0 >= (int) h)
    return 0;
#define PIX(xx, yy) (((xx) >= 0 && (yy) >= 0 && (xx) < (int) w && (yy) < (int) h) \
      ? (float) img[(gsize) (yy) * w + (xx)] : 0.0f)
  v00 = PIX (x0, y0);
  v01 = PIX (x0 + 1, y0);
  v10 = PIX (x0, y0 + 1);
  v11 = PIX (x0 + 1, y0 + 1);
#undef PIX
  return (v00 * (1 - ax) + v01 * ax) * (1 - ay) + (v10 * (1 - ax) +
      v11 * ax) * ay;
}

/* Ink bounding box of a data set image: pixels >= 32, 8-connected
 * components holding less than 5% of the ink left out (MNIST has stray
 * specks that the preprocessing rightly ignores; they must not stretch
 * the truth box). */
static gboolean
image_ink_box (const guint8 * img, guint w, guint h, guint * x0, guint * y0,
    guint * x1, guint * y1)
{
  g_autofree guint *comp = g_new0 (guint, w * h);
  g_autofree guint *stack = g_new (guint, w * h);
  g_autofree double *mass = g_new0 (double, w * h + 1);
  guint x, y, n_comp = 0;
  double total = 0;
  gboolean any = FALSE;

  for (guint i = 0; i < w * h; i++) {
    guint sp = 0;

    if (img[i] < 32 || comp[i])
      continue;
    comp[i] = ++n_comp;
    stack[sp++] = i;
    while (sp) {
      guint c = stack[--sp], cx = c % w, cy = c / w;
      mass[n_comp] += img[c];
      total += img[c];
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          int nx = (int) cx + dx, ny = (int) cy + dy;
          guint ni;
          if (nx < 0 || ny < 0 || nx >= (int) w || ny >= (int) h)
            continue;
          ni = (guint) ny * w + (guint) nx;
          if (img[ni] >= 32 && !comp[ni]) {
            comp[ni] = n_comp;
            stack[sp++] = ni;
          }
        }
    }
  }

  *x0 = w;
  *y0 = h;
  *x1 = 0;
  *y1 = 0;
  for (y = 0; y < h; y++)
    for (x = 0; x < w; x++) {
      guint c = comp[y * w + x];
      if (c && mass[c] >= 0.05 * total) {
        any = TRUE;
        *x0 = MIN (*x0, x);
        *y0 = MIN (*y0, y);
        *x1 = MAX (*x1, x + 1);
        *y1 = MAX (*y1, y + 1);
      }
    }
  return any;
}

/* Draws one digit into the absorption map `ink` (width x height floats,
 * max-combined), centred in the slot [slot_x0, slot_x1). */
static void
draw_digit (const CbirSimcam * cam, Rng * r, guint index, float *ink,
    guint slot_x0, guint slot_x1, CbirSimcamDigit * out)
{
  const CbirSimcamParams *p = &cam->p;
  const guint iw = cam->ds->cols, ih = cam->ds->rows;
  const guint8 *img = cam->ds->images + (gsize) index * iw * ih;
  guint bx0, by0, bx1, by1;
  double ink_w, ink_h, cx_src, cy_src, H, s, angle, ca, sa, rw, rh;
  double slot_w = slot_x1 - slot_x0, margin = 8, cx, cy, darkness;
  int px0, py0, px1, py1, x, y;
  guint tx0 = G_MAXUINT, ty0 = G_MAXUINT, tx1 = 0, ty1 = 0;

  out->source_index = index;
  out->label = cam->ds->labels ? cam->ds->labels[index] : -1;
  memset (&out->box, 0, sizeof (out->box));

  if (!image_ink_box (img, iw, ih, &bx0, &by0, &bx1, &by1)) {
    /* an empty image: consume the same random numbers, draw nothing */
    rng_uniform (r);
    rng_uniform (r);
    rng_uniform (r);
    rng_uniform (r);
    rng_uniform (r);
    return;
  }
  ink_w = bx1 - bx0;
  ink_h = by1 - by0;
  cx_src = (bx0 + bx1) / 2.0;
  cy_src = (by0 + by1) / 2.0;

  H = rng_range (r, p->min_height, p->max_height);
  angle = rng_range (r, -p->max_rotation, p->max_rotation) * G_PI / 180.0;
  ca = cos (angle);
  sa = sin (angle);
  s = H / ink_h;
  /* rotated extent of the ink box, shrunk to fit the slot and frame */
  rw = (fabs (ca) * ink_w + fabs (sa) * ink_h) * s;
  rh = (fabs (sa) * ink_w + fabs (ca) * ink_h) * s;
  if (rw > slot_w - 2 * margin) {
    s *= (slot_w - 2 * margin) / rw;
    rw *= (slot_w - 2 * margin) / rw;
    rh = (fabs (sa) * ink_w + fabs (ca) * ink_h) * s;
  }
  if (rh > p->height - 2 * margin) {
    s *= (p->height - 2 * margin) / rh;
    rw = (fabs (ca) * ink_w + fabs (sa) * ink_h) * s;
    rh = (fabs (sa) * ink_w + fabs (ca) * ink_h) * s;
  }
  cx = slot_x0 + margin + rw / 2 + rng_uniform (r) * MAX (0.0,
      slot_w - 2 * margin - rw);
  cy = margin + rh / 2 + rng_uniform (r) * MAX (0.0,
      p->height - 2 * margin - rh);
  darkness = rng_range (r, p->ink_min, p->ink_max);
  rng_uniform (r);              /* reserved */

  px0 = MAX (0, (int) floor (cx - rw / 2) - 3);
  px1 = MIN ((int) p->width, (int) ceil (cx + rw / 2) + 3);
  py0 = MAX (0, (int) floor (cy - rh / 2) - 3);
  py1 = MIN ((int) p->height, (int) ceil (cy + rh / 2) + 3);

  for (y = py0; y < py1; y++) {
    float *row = ink + (gsize) y * p->width;
    for (x = px0; x < px1; x++) {
      /* frame -> source: rotate back by -angle, unscale */
      double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      double u = (ca * dx + sa * dy) / s + cx_src;
      double v = (-sa * dx + ca * dy) / s + cy_src;
      float a = sample_bilinear (img, iw, ih, (float) u, (float) v) / 255.0f;
      if (a <= 0)
        continue;
      a = MIN (a * 1.15f, 1.0f) * (float) darkness;
      if (a > row[x])
        row[x] = a;
      if (a >= 0.3f * darkness && u >= bx0 && u < bx1 && v >= by0 && v < by1) {
        tx0 = MIN (tx0, (guint) x);
        ty0 = MIN (ty0, (guint) y);
        tx1 = MAX (tx1, (guint) x + 1);
        ty1 = MAX (ty1, (guint) y + 1);
      }
    }
  }
  if (tx1 > tx0 && ty1 > ty0) {
    out->box.x = tx0;
    out->box.y = ty0;
    out->box.width = tx1 - tx0;
    out->box.height = ty1 - ty0;
  }
}

/* separable Gaussian blur of a float image, in place (tmp: w*h floats) */
static void
blur (float *img, float *tmp, guint w, guint h, float sigma)
{
  int radius = (int) ceilf (3 * sigma), k, x, y;
  float *kern = g_newa (float, 2 * radius + 1), sum = 0;

  for (k = -radius; k <= radius; k++)
    sum += kern[k + radius] = expf (-(float) (k * k) / (2 * sigma * sigma));
  for (k = 0; k < 2 * radius + 1; k++)
    kern[k] /= sum;

  for (y = 0; y < (int) h; y++) {
    const float *src = img + (gsize) y * w;
    float *dst = tmp + (gsize) y * w;
    for (x = 0; x < (int) w; x++) {
      float acc = 0;
      for (k = -radius; k <= radius; k++) {
        int xx = CLAMP (x + k, 0, (int) w - 1);
        acc += kern[k + radius] * src[xx];
      }
      dst[x] = acc;
    }
  }
  for (y = 0; y < (int) h; y++) {
    float *dst = img + (gsize) y * w;
    for (x = 0; x < (int) w; x++) {
      float acc = 0;
      for (k = -radius; k <= radius; k++) {
        int yy = CLAMP (y + k, 0, (int) h - 1);
        acc += kern[k + radius] * tmp[(gsize) yy * w + x];
      }
      dst[x] = acc;
    }
  }
}

void
cbir_simcam_render (const CbirSimcam * cam, guint frame, guint8 * dst,
    gsize stride, CbirSimcamTruth * truth)
{
  const CbirSimcamParams *p = &cam->p;
  const guint w = p->width, h = p->height;
  CbirSimcamTruth local;
  Rng r, rn;
  float *light, *ink, *tmp;
  guint n_digits, j, x, y;
  double paper, gdir, gdx, gdy, gmin, gmax, vcx, vcy, vr2;

  g_return_if_fail (cam != NULL && dst != NULL && stride >= w);

  if (truth == NULL)
    truth = &local;
  memset (truth, 0, sizeof (*truth));
  truth->frame = frame;

  rng_init (&r, p->seed, 1, frame);
  n_digits = p->min_digits + (guint) (rng_uniform (&r) *
      (p->max_digits - p->min_digits + 1));
  n_digits = MIN (n_digits, p->max_digits);
  if (p->blank_every > 0 && frame % p->blank_every == p->blank_every - 1)
    n_digits = 0;

  /* the light: paper brightness, a linear gradient, a vignette */
  paper = rng_range (&r, p->paper_min, p->paper_max);
  gdir = rng_uniform (&r) * 2 * G_PI;
  gdx = cos (gdir);
  gdy = sin (gdir);
  gmin = MIN (0.0, gdx * w) + MIN (0.0, gdy * h);
  gmax = MAX (0.0, gdx * w) + MAX (0.0, gdy * h);
  vcx = w * rng_range (&r, 0.35, 0.65);
  vcy = h * rng_range (&r, 0.35, 0.65);
  vr2 = (double) w * w / 4 + (double) h * h / 4;

  light = g_new (float, (gsize) w * h);
  ink = g_new0 (float, (gsize) w * h);
  tmp = g_new (float, (gsize) w * h);
  for (y = 0; y < h; y++) {
    for (x = 0; x < w; x++) {
      double t = ((x + 0.5) * gdx + (y + 0.5) * gdy - gmin) / (gmax - gmin);
      double d2 = ((x - vcx) * (x - vcx) + (y - vcy) * (y - vcy)) / vr2;
      light[(gsize) y * w + x] = (float) (paper * (1 - p->gradient * t) *
          (1 - p->vignette * MIN (d2, 1.5)));
    }
  }

  /* the digits, each in its slot, each with its own random stream so
   * the count does not change the others' placement */
  truth->n_digits = n_digits;
  for (j = 0; j < n_digits; j++) {
    Rng rd;
    guint index = cam->order[((guint64) p->first + (guint64) frame *
            p->max_digits + j) % cam->ds->n];

    rng_init (&rd, p->seed, 2 + j, frame);
    draw_digit (cam, &rd, index, ink, j * w / n_digits, (j + 1) * w /
        n_digits, &truth->digits[j]);
  }

  /* the picture: light reflected by paper and ink (plus a little ambient) */
  for (gsize i = 0; i < (gsize) w * h; i++)
    light[i] = light[i] * (1 - ink[i]) + 6;

  if (p->blur_sigma > 0)
    blur (light, tmp, w, h, p->blur_sigma);

  rng_init (&rn, p->seed, 100, frame);
  for (y = 0; y < h; y++) {
    const float *src = light + (gsize) y * w;
    guint8 *out = dst + (gsize) y * stride;
    for (x = 0; x < w; x += 2) {
      float n0 = 0, n1 = 0, v;

      if (p->noise_sigma > 0) {
        rng_gauss2 (&rn, &n0, &n1);
        n0 *= p->noise_sigma;
        n1 *= p->noise_sigma;
      }
      v = src[x] + n0;
      out[x] = (guint8) CLAMP (lrintf (v), 0, 255);
      if (x + 1 < w) {
        v = src[x + 1] + n1;
        out[x + 1] = (guint8) CLAMP (lrintf (v), 0, 255);
      }
    }
  }

  g_free (light);
  g_free (ink);
  g_free (tmp);
}

gchar *
cbir_simcam_truth_to_json (const CbirSimcamTruth * t)
{
  GString *s = g_string_new (NULL);
  guint j;

  g_string_append_printf (s, "{\"frame\":%u,\"labels\":[", t->frame);
  for (j = 0; j < t->n_digits; j++)
    g_string_append_printf (s, "%s%d", j ? "," : "", t->digits[j].label);
  g_string_append (s, "],\"source_indices\":[");
  for (j = 0; j < t->n_digits; j++)
    g_string_append_printf (s, "%s%u", j ? "," : "",
        t->digits[j].source_index);
  g_string_append (s, "],\"boxes\":[");
  for (j = 0; j < t->n_digits; j++) {
    const CbirRect *b = &t->digits[j].box;
    g_string_append_printf (s, "%s[%u,%u,%u,%u]", j ? "," : "", b->x, b->y,
        b->width, b->height);
  }
  g_string_append (s, "]}");
  return g_string_free (s, FALSE);
}

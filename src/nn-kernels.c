/* Inner kernels of the neural-network core.
 *
 * Stride-1 convs (every conv of keras-dae and sicara): forward and input
 * gradient by our own register-blocked direct kernel (nn_wconv, AVX-512 /
 * AVX2 / C picked at run time), weight gradient by our own kernel (nn_dw,
 * vectorised over input or output channels, all taps in registers; it
 * replaced k*k OpenBLAS GEMMs on zero-padded planes, whose small-matrix
 * path cost a quarter of a training step); stride-2 convs and transposed
 * convs use im2col/col2im
 * + OpenBLAS sgemm (single-threaded inside: our workers split the batch).
 * Measured (CPU us/image, keras-dae, loaded 2-core machine): shifted GEMMs
 * for every s1 pass 650 train / 93 encode b1; direct kernel 590 / 69.
 * Measured on this machine (CPU time per image, keras-dae forward +
 * backward at batch 128, 1 thread): im2col + GEMM for all convs 951 us,
 * shifted GEMMs for the stride-1 convs 646 us: im2col/col2im copies
 * (k*k times the input; 900 KB per image for the 32->1 output conv) cost
 * more than the GEMMs themselves at these channel counts. The elementwise
 * loops (ReLU, pooling) are branch-free: random-sign data made the
 * branchy versions mispredict about half the time. */
#include "config.h"

#include <math.h>
#include <string.h>
#include <cblas.h>

#include "nn-kernels.h"

/* Hot loops: vectorised at -O3 whatever the build type, with clones for
 * AVX2 and AVX-512 picked at run time (no -march=native). */
#if !defined(__clang__)
#pragma GCC optimize ("O3")
#endif
/* gcc only: clang 14 emits the ifunc of a cloned function only in a unit
 * that calls it, so the exported kernels would not link. Not under
 * ThreadSanitizer: the instrumented ifunc resolvers run before its runtime
 * is up and crash the program at load. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) \
    && !defined(__SANITIZE_THREAD__)
#define NN_HOT __attribute__((target_clones ("avx512f", "avx2", "default")))
#else
#define NN_HOT
#endif

/* Output columns ox whose input column ox*s + kx - pl lies in [0, w). */
static inline void
valid_range (int kx, int s, int pl, int w, int wo, int *lo, int *hi)
{
  int a = pl - kx, b = w - 1 + pl - kx;        /* need a <= ox*s <= b */
  int l = a <= 0 ? 0 : (a + s - 1) / s;
  int h = b < 0 ? -1 : b / s;
  *lo = MIN (l, wo);
  *hi = CLAMP (h + 1, *lo, wo);
}

NN_HOT void
nn_im2col (const float *x, int c, int h, int w, int k, int s, int pt,
    int pl, int ho, int wo, float *col)
{
  gsize p = (gsize) ho * wo;

  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        float *row = col + (((gsize) ci * k + ky) * k + kx) * p;
        const float *xc = x + (gsize) ci * h * w;
        int lo, hi;
        valid_range (kx, s, pl, w, wo, &lo, &hi);
        for (int oy = 0; oy < ho; oy++) {
          int iy = oy * s + ky - pt;
          float *r = row + (gsize) oy * wo;
          const float *xr;
          if (iy < 0 || iy >= h) {
            memset (r, 0, wo * sizeof (float));
            continue;
          }
          xr = xc + (gsize) iy * w + kx - pl;
          for (int ox = 0; ox < lo; ox++)
            r[ox] = 0.0f;
          if (s == 1)
            memcpy (r + lo, xr + lo, (hi - lo) * sizeof (float));
          else
            for (int ox = lo; ox < hi; ox++)
              r[ox] = xr[ox * 2];
          for (int ox = hi; ox < wo; ox++)
            r[ox] = 0.0f;
        }
      }
}

NN_HOT void
nn_col2im_add (const float *col, int c, int h, int w, int k, int s, int pt,
    int pl, int ho, int wo, float *x)
{
  gsize p = (gsize) ho * wo;

  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        const float *row = col + (((gsize) ci * k + ky) * k + kx) * p;
        float *xc = x + (gsize) ci * h * w;
        int lo, hi;
        valid_range (kx, s, pl, w, wo, &lo, &hi);
        for (int oy = 0; oy < ho; oy++) {
          int iy = oy * s + ky - pt;
          const float *r = row + (gsize) oy * wo;
          float *xr;
          if (iy < 0 || iy >= h)
            continue;
          xr = xc + (gsize) iy * w + kx - pl;
          if (s == 1)
            for (int ox = lo; ox < hi; ox++)
              xr[ox] += r[ox];
          else
            for (int ox = lo; ox < hi; ox++)
              xr[ox * 2] += r[ox];
        }
      }
}

void
nn_conv_forward (const float *x, const float *w, const float *b, float *y,
    int cin, int h, int wd, int cout, int ho, int wo, int k, int s, int pt,
    int pl, float *col)
{
  int p = ho * wo, kk = cin * k * k;

  nn_im2col (x, cin, h, wd, k, s, pt, pl, ho, wo, col);
  for (int co = 0; co < cout; co++) {
    float v = b ? b[co] : 0.0f;
    for (int i = 0; i < p; i++)
      y[(gsize) co * p + i] = v;
  }
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, p, kk, 1.0f,
      w, kk, col, p, 1.0f, y, p);
}

void
nn_conv_backward (const float *x, const float *w, const float *dy,
    float *dx, float *dw, float *db, int cin, int h, int wd, int cout,
    int ho, int wo, int k, int s, int pt, int pl, float *col, float *dcol)
{
  int p = ho * wo, kk = cin * k * k;

  nn_im2col (x, cin, h, wd, k, s, pt, pl, ho, wo, col);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, cout, kk, p, 1.0f,
      dy, p, col, p, 1.0f, dw, kk);
  if (db)
    for (int co = 0; co < cout; co++) {
      float acc = 0.0f;
      for (int i = 0; i < p; i++)
        acc += dy[(gsize) co * p + i];
      db[co] += acc;
    }
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, kk, p, cout, 1.0f,
      w, kk, dy, p, 0.0f, dcol, p);
  memset (dx, 0, (gsize) cin * h * wd * sizeof (float));
  nn_col2im_add (dcol, cin, h, wd, k, s, pt, pl, ho, wo, dx);
}

void
nn_convt_forward (const float *x, const float *w, const float *b, float *y,
    int cin, int cout, int h, int wd, int gh, int gw, int k, int s, int pt,
    int pl, float *col)
{
  int p = gh * gw, kc = cout * k * k;
  gsize hw = (gsize) h * wd;

  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, kc, p, cin, 1.0f,
      w, kc, x, p, 0.0f, col, p);
  memset (y, 0, (gsize) cout * hw * sizeof (float));
  nn_col2im_add (col, cout, h, wd, k, s, pt, pl, gh, gw, y);
  if (b)
    for (int co = 0; co < cout; co++)
      for (gsize i = 0; i < hw; i++)
        y[co * hw + i] += b[co];
}

void
nn_convt_backward (const float *x, const float *w, const float *dy,
    float *dx, float *dw, float *db, int cin, int cout, int h, int wd,
    int gh, int gw, int k, int s, int pt, int pl, float *col)
{
  int p = gh * gw, kc = cout * k * k;
  gsize hw = (gsize) h * wd;

  nn_im2col (dy, cout, h, wd, k, s, pt, pl, gh, gw, col);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, cin, p, kc, 1.0f,
      w, kc, col, p, 0.0f, dx, p);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, cin, kc, p, 1.0f,
      x, p, col, p, 1.0f, dw, kc);
  if (db)
    for (int co = 0; co < cout; co++) {
      float acc = 0.0f;
      for (gsize i = 0; i < hw; i++)
        acc += dy[co * hw + i];
      db[co] += acc;
    }
}

void
nn_dense_forward (const float *x, const float *w, const float *b, float *y,
    int in, int out)
{
  for (int o = 0; o < out; o++)
    y[o] = b ? b[o] : 0.0f;
  cblas_sgemv (CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1,
      1.0f, y, 1);
}

void
nn_dense_backward (const float *x, const float *w, const float *dy,
    float *dx, float *dw, float *db, int in, int out)
{
  cblas_sger (CblasRowMajor, out, in, 1.0f, dy, 1, x, 1, dw, in);
  if (db)
    for (int o = 0; o < out; o++)
      db[o] += dy[o];
  cblas_sgemv (CblasRowMajor, CblasTrans, out, in, 1.0f, w, in, dy, 1,
      0.0f, dx, 1);
}

NN_HOT void
nn_maxpool2_forward (const float *x, float *y, gint32 *idx, int c, int h,
    int w, int oh, int ow)
{
  int fh = h / 2, fw = w / 2;   /* full windows */

  for (int ci = 0; ci < c; ci++) {
    const float *xc = x + (gsize) ci * h * w;
    float *yc = y + (gsize) ci * oh * ow;
    gint32 *ic = idx ? idx + (gsize) ci * oh * ow : NULL;
    for (int oy = 0; oy < oh; oy++) {
      const float *r0 = xc + (gsize) (2 * oy) * w;
      const float *r1 = r0 + w;
      float *yr = yc + oy * ow;
      gint32 *ir = ic ? ic + oy * ow : NULL;
      int base = 2 * oy * w;
      if (oy < fh && !idx) {
        /* values only (inference) */
        for (int ox = 0; ox < fw; ox++) {
          float m = r0[2 * ox], b = r0[2 * ox + 1];
          float cc = r1[2 * ox], d = r1[2 * ox + 1];
          m = b > m ? b : m;
          m = cc > m ? cc : m;
          m = d > m ? d : m;
          yr[ox] = m;
        }
      } else if (oy < fh) {
        /* branch-free: row-major scan, first maximum wins (strict >) */
        for (int ox = 0; ox < fw; ox++) {
          float a = r0[2 * ox], b = r0[2 * ox + 1];
          float cc = r1[2 * ox], d = r1[2 * ox + 1];
          float m = a;
          int bi = base + 2 * ox;
          bi = b > m ? base + 2 * ox + 1 : bi;
          m = b > m ? b : m;
          bi = cc > m ? base + w + 2 * ox : bi;
          m = cc > m ? cc : m;
          bi = d > m ? base + w + 2 * ox + 1 : bi;
          m = d > m ? d : m;
          yr[ox] = m;
          ir[ox] = bi;
        }
      }
      /* windows clipped by the bottom/right edge ("same" pooling) */
      for (int ox = oy < fh ? fw : 0; ox < ow; ox++) {
        gboolean x2 = 2 * ox + 1 < w, y2 = 2 * oy + 1 < h;
        int i0 = base + 2 * ox, best = i0;
        float m = xc[i0];
        if (x2 && xc[i0 + 1] > m) {
          m = xc[i0 + 1];
          best = i0 + 1;
        }
        if (y2 && xc[i0 + w] > m) {
          m = xc[i0 + w];
          best = i0 + w;
        }
        if (x2 && y2 && xc[i0 + w + 1] > m) {
          m = xc[i0 + w + 1];
          best = i0 + w + 1;
        }
        yr[ox] = m;
        if (idx)
          ir[ox] = best;
      }
    }
  }
}

NN_HOT void
nn_relu_forward (const float *x, float *y, gsize n, float alpha)
{
  for (gsize i = 0; i < n; i++)
    y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
}

NN_HOT void
nn_relu_backward (const float *x, const float *dy, float *dx, gsize n,
    float alpha)
{
  for (gsize i = 0; i < n; i++)
    dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i];
}

NN_HOT void
nn_sigmoid_forward (const float *x, float *y, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    float v = x[i];
    float e = expf (-fabsf (v));        /* in (0, 1]: no overflow */
    float p = 1.0f / (1.0f + e);
    y[i] = v >= 0.0f ? p : e * p;
  }
}

NN_HOT void
nn_sigmoid_backward (const float *y, const float *dy, float *dx, gsize n)
{
  for (gsize i = 0; i < n; i++)
    dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void
nn_maxpool2_backward (const float *dy, float *dx, const gint32 *idx, int c,
    int h, int w, int oh, int ow)
{
  memset (dx, 0, (gsize) c * h * w * sizeof (float));
  for (int ci = 0; ci < c; ci++) {
    float *dxc = dx + (gsize) ci * h * w;
    for (int i = 0; i < oh * ow; i++)
      dxc[idx[(gsize) ci * oh * ow + i]] += dy[(gsize) ci * oh * ow + i];
  }
}

void
nn_upsample2_forward (const float *x, float *y, int c, int h, int w)
{
  int ow = 2 * w;

  for (int ci = 0; ci < c; ci++)
    for (int iy = 0; iy < h; iy++) {
      const float *xr = x + ((gsize) ci * h + iy) * w;
      float *y0 = y + ((gsize) ci * 2 * h + 2 * iy) * ow;
      for (int ix = 0; ix < w; ix++)
        y0[2 * ix] = y0[2 * ix + 1] = xr[ix];
      memcpy (y0 + ow, y0, ow * sizeof (float));
    }
}

void
nn_upsample2_backward (const float *dy, float *dx, int c, int h, int w)
{
  int ow = 2 * w;

  for (int ci = 0; ci < c; ci++)
    for (int iy = 0; iy < h; iy++) {
      float *dr = dx + ((gsize) ci * h + iy) * w;
      const float *d0 = dy + ((gsize) ci * 2 * h + 2 * iy) * ow;
      const float *d1 = d0 + ow;
      for (int ix = 0; ix < w; ix++)
        dr[ix] = (d0[2 * ix] + d0[2 * ix + 1]) + (d1[2 * ix] + d1[2 * ix + 1]);
    }
}

/* ---- stride-1 convolution on the wide grid ----
 *
 * With the input zero-padded to hp x wp (hp = ho + k - 1, wp = wo + k - 1)
 * and the output computed on a grid of ho rows of wp columns (the last
 * k - 1 of each row are junk and dropped), the input seen by kernel tap
 * (ky, kx) is the padded planes shifted by ky * wp + kx: the forward pass
 * is one nn_wconv over n = (ho - 1) * wp + wo positions.  The input
 * gradient is the same kind of convolution of the output gradient (on the
 * wide grid, with a zero margin of (k-1) * wp + k - 1 in front) with the
 * taps shifted the other way; the weight gradient is nn_dw over the
 * valid output positions. */

static void
pad_planes (const float *x, int c, int h, int w, int pt, int pl, int hp,
    int wp, float *xp)
{
  memset (xp, 0, ((gsize) c * hp * wp + NN_WCONV_SLACK) * sizeof (float));
  for (int ci = 0; ci < c; ci++)
    for (int iy = 0; iy < h; iy++) {
      float *d = xp + ((gsize) ci * hp + iy + pt) * wp + pl;
      const float *s = x + ((gsize) ci * h + iy) * w;
      for (int ix = 0; ix < w; ix++)
        d[ix] = s[ix];
    }
}

void
nn_conv_s1_geometry (int k, int ho, int wo, NnS1Geom *g)
{
  g->hp = ho + k - 1;
  g->wp = wo + k - 1;
  g->plane = (gsize) g->hp * g->wp;
  g->n = (ho - 1) * g->wp + wo;
  g->ldc = nn_wconv_ld (g->n);
  g->margin = (k - 1) * g->wp + k - 1;
  g->dstride = g->margin + g->plane + NN_WCONV_SLACK;
  for (int ky = 0; ky < k; ky++)
    for (int kx = 0; kx < k; kx++)
      g->off[ky * k + kx] = ky * g->wp + kx;
}

NN_HOT void
nn_conv_s1_forward (const float *x, const float *wpk, const float *b,
    float *y, int cin, int h, int wd, int cout, int ho, int wo, int k,
    int pt, int pl, float *xp, float *cbuf, gboolean relu)
{
  NnS1Geom g;

  nn_conv_s1_geometry (k, ho, wo, &g);
  pad_planes (x, cin, h, wd, pt, pl, g.hp, g.wp, xp);
  nn_wconv (xp, g.plane, g.off, k * k, wpk, b, cbuf, g.ldc, cin, cout, g.n,
      relu);
  for (int co = 0; co < cout; co++)
    for (int oy = 0; oy < ho; oy++) {
      float *d = y + ((gsize) co * ho + oy) * wo;
      const float *s = cbuf + co * g.ldc + oy * g.wp;
      for (int ox = 0; ox < wo; ox++)
        d[ox] = s[ox];
    }
}

/* Inference: max-pool (values only, first maximum wins as in
 * nn_maxpool2_forward) of planes with row stride ld and plane stride lp. */
static void pool_values (const float *x, gsize ld, gsize lp, float *y,
    int yrow, gsize yplane, int c, int h, int w, int oh, int ow);

/* skip_full: only the windows clipped by the bottom/right edge */
NN_HOT static void
pool_values_c (const float *x, gsize ld, gsize lp, float *y, int yrow,
    gsize yplane, int c, int h, int w, int oh, int ow, gboolean skip_full)
{
  int fh = h / 2, fw = w / 2;

  for (int ci = 0; ci < c; ci++)
    for (int oy = 0; oy < oh; oy++) {
      const float *r0 = x + ci * lp + (gsize) (2 * oy) * ld;
      const float *r1 = 2 * oy + 1 < h ? r0 + ld : r0;
      float *yr = y + ci * yplane + (gsize) oy * yrow;
      int ox = oy < fh && skip_full ? fw : 0;
      if (oy < fh)
        for (; ox < fw; ox++) {
          float m = r0[2 * ox], b = r0[2 * ox + 1];
          float cc = r1[2 * ox], d = r1[2 * ox + 1];
          m = b > m ? b : m;
          m = cc > m ? cc : m;
          m = d > m ? d : m;
          yr[ox] = m;
        }
      for (; ox < ow; ox++) {
        int x2 = 2 * ox + 1 < w;
        float m = r0[2 * ox];
        if (x2 && r0[2 * ox + 1] > m)
          m = r0[2 * ox + 1];
        if (r1 != r0 && r1[2 * ox] > m)
          m = r1[2 * ox];
        if (r1 != r0 && x2 && r1[2 * ox + 1] > m)
          m = r1[2 * ox + 1];
        yr[ox] = m;
      }
    }
}

/* Training: the same with the indices of the maxima (first maximum in
 * row-major order, as nn_maxpool2_forward) into the dense h x w planes. */
static void pool_idx (const float *x, gsize ld, gsize lp, float *y,
    gint32 *idx, int c, int h, int w, int oh, int ow);

NN_HOT static void
pool_idx_c (const float *x, gsize ld, gsize lp, float *y, gint32 *idx,
    int c, int h, int w, int oh, int ow, gboolean skip_full)
{
  int fh = h / 2, fw = w / 2;

  for (int ci = 0; ci < c; ci++)
    for (int oy = 0; oy < oh; oy++) {
      const float *r0 = x + ci * lp + (gsize) (2 * oy) * ld;
      const float *r1 = r0 + ld;
      float *yr = y + ((gsize) ci * oh + oy) * ow;
      gint32 *ir = idx + ((gsize) ci * oh + oy) * ow;
      gint32 base = 2 * oy * w;
      int ox = oy < fh && skip_full ? fw : 0;
      if (oy < fh)
        for (; ox < fw; ox++) {
          float a = r0[2 * ox], b = r0[2 * ox + 1];
          float cc = r1[2 * ox], d = r1[2 * ox + 1];
          float m = a;
          gint32 bi = base + 2 * ox;
          bi = b > m ? base + 2 * ox + 1 : bi;
          m = b > m ? b : m;
          bi = cc > m ? base + w + 2 * ox : bi;
          m = cc > m ? cc : m;
          bi = d > m ? base + w + 2 * ox + 1 : bi;
          m = d > m ? d : m;
          yr[ox] = m;
          ir[ox] = bi;
        }
      for (; ox < ow; ox++) {
        gboolean x2 = 2 * ox + 1 < w, y2 = 2 * oy + 1 < h;
        gint32 best = base + 2 * ox;
        float m = r0[2 * ox];
        if (x2 && r0[2 * ox + 1] > m) {
          m = r0[2 * ox + 1];
          best = base + 2 * ox + 1;
        }
        if (y2 && r1[2 * ox] > m) {
          m = r1[2 * ox];
          best = base + w + 2 * ox;
        }
        if (x2 && y2 && r1[2 * ox + 1] > m) {
          m = r1[2 * ox + 1];
          best = base + w + 2 * ox + 1;
        }
        yr[ox] = m;
        ir[ox] = best;
      }
    }
}

NN_HOT void
nn_conv_s1_forward_pool (const float *x, const float *wpk, const float *b,
    float *y, int cin, int h, int wd, int cout, int ho, int wo, int k,
    int pt, int pl, float *xp, float *cbuf, gboolean relu, int oh, int ow,
    gint32 *idx, gboolean x_padded, const NnS1Geom *yg)
{
  NnS1Geom g;

  nn_conv_s1_geometry (k, ho, wo, &g);
  if (x_padded)
    xp = (float *) x;
  else
    pad_planes (x, cin, h, wd, pt, pl, g.hp, g.wp, xp);
  nn_wconv (xp, g.plane, g.off, k * k, wpk, b, cbuf, g.ldc, cin, cout, g.n,
      relu);
  if (idx)
    pool_idx (cbuf, g.wp, g.ldc, y, idx, cout, ho, wo, oh, ow);
  else if (yg) {
    /* straight into the next conv's padded planes */
    int ypt = (yg->hp - oh) / 2, ypl = (yg->wp - ow) / 2;
    nn_pad_border (y, cout, oh, ow, ypt, ypl, yg);
    pool_values (cbuf, g.wp, g.ldc, y + (gsize) ypt * yg->wp + ypl, yg->wp,
        yg->plane, cout, ho, wo, oh, ow);
  } else
    pool_values (cbuf, g.wp, g.ldc, y, ow, (gsize) oh * ow, cout, ho, wo, oh,
        ow);
}

/* zero everything of c padded planes (geometry g, image h x w at pt, pl)
 * but the image, and the slack after the planes: one memset of it all
 * (cheaper than a call per row gap) */
void
nn_pad_border (float *xp, int c, int h, int w, int pt, int pl,
    const NnS1Geom *g)
{
  (void) h;
  (void) w;
  (void) pt;
  (void) pl;
  memset (xp, 0, ((gsize) c * g->plane + NN_WCONV_SLACK) * sizeof (float));
}

/* Backward of conv + ReLU + max-pool 2 fused in training: dx (the conv's
 * output gradient, c planes of h x w) = dy at the maxima whose (ReLU'd)
 * value y is positive, else 0. */
static void
relu_pool_backward_c (const float *y, const float *dy, const gint32 *idx,
    float *dx, int c, int h, int w, int oh, int ow)
{
  gsize no = (gsize) oh * ow, ni = (gsize) h * w;

  memset (dx, 0, (gsize) c * ni * sizeof (float));
  for (int ci = 0; ci < c; ci++) {
    float *d = dx + ci * ni;
    const float *yc = y + ci * no, *gc = dy + ci * no;
    const gint32 *ic = idx + ci * no;
    for (gsize i = 0; i < no; i++)
      d[ic[i]] = yc[i] > 0.0f ? gc[i] : 0.0f;
  }
}

/* The weight gradient of a stride-1 conv is vectorised over the input
 * channels (dy broadcast, the input transposed to pixel-major padded
 * planes) or, when that wastes fewer lanes (few input channels, e.g. the
 * first conv's single one), over the output channels (the padded input
 * broadcast, dy transposed): see nn_conv_s1_dw_by_cin. */
gboolean
nn_conv_s1_dw_by_cin (int cin, int cout)
{
  gsize li = (gsize) (cin + NN_DW_LANES - 1) / NN_DW_LANES * NN_DW_LANES;
  gsize lo = (gsize) (cout + NN_DW_LANES - 1) / NN_DW_LANES * NN_DW_LANES;
  return li * cout <= lo * cin;
}

gsize
nn_conv_s1_dw_scratch (int cin, int cout, int k, int ho, int wo)
{
  NnS1Geom g;

  nn_conv_s1_geometry (k, ho, wo, &g);
  if (nn_conv_s1_dw_by_cin (cin, cout))
    return g.plane * nn_dw_lanes (cin);
  return (gsize) ho * wo * nn_dw_lanes (cout);
}

void
nn_conv_s1_dw_finish (const float *dwt, float *dw, int cout, int cin, int kk)
{
  gboolean by_cin = nn_conv_s1_dw_by_cin (cin, cout);

  for (int co = 0; co < cout; co++)
    for (int ci = 0; ci < cin; ci++) {
      float *d = dw + ((gsize) co * cin + ci) * kk;
      for (int t = 0; t < kk; t++)
        d[t] += by_cin ? dwt[((gsize) t * cout + co) * cin + ci]
            : dwt[((gsize) t * cin + ci) * cout + co];
    }
}

/* sum of n floats in 16 interleaved partial sums (fixed order) */
static inline float
sum16 (const float *d, gsize n)
{
  float a[16] = { 0 }, r = 0.0f;
  gsize i = 0;

  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++)
      a[l] += d[i + l];
  for (int l = 0; i + l < n; l++)
    a[l] += d[i + l];
  for (int l = 0; l < 16; l++)
    r += a[l];
  return r;
}

/* dst[(iy * dwp + ix) * lv + c] = src[c * cs + iy * w + ix] for c < nc
 * (lanes nc..lv-1 zero): 8 channels x 8 pixels at a time, transposed in
 * registers. */
typedef float nn_v8 __attribute__((vector_size (32)));
typedef float nn_v8u __attribute__((vector_size (32), aligned (4),
        may_alias));
typedef int nn_v8i __attribute__((vector_size (32)));

/* A two-vector shuffle with constant lane indices: gcc's __builtin_shuffle
 * takes a mask vector, clang's __builtin_shufflevector the indices. */
#if defined(__clang__)
#define NN_SHUF8(a, b, ...) __builtin_shufflevector (a, b, __VA_ARGS__)
#else
#define NN_SHUF8(a, b, ...) __builtin_shuffle (a, b, (nn_v8i) { __VA_ARGS__ })
#endif

static inline void
transpose8 (nn_v8 r[8])
{
  nn_v8 t[8], u[8];

  for (int i = 0; i < 4; i++) {
    t[2 * i] = NN_SHUF8 (r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * i + 1] = NN_SHUF8 (r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 2; i++) {
    u[4 * i] = NN_SHUF8 (t[4 * i], t[4 * i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[4 * i + 1] = NN_SHUF8 (t[4 * i], t[4 * i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[4 * i + 2] = NN_SHUF8 (t[4 * i + 1], t[4 * i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[4 * i + 3] = NN_SHUF8 (t[4 * i + 1], t[4 * i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = NN_SHUF8 (u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[i + 4] = NN_SHUF8 (u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

NN_HOT static void
to_pixel_major (const float *src, gsize cs, int nc, int h, int w,
    float *dst, gsize lv, int dwp)
{
  int np = h * w, c8 = nc / 8 * 8;

  for (int q0 = 0; q0 < np; q0 += 8) {
    float *d[8];
    int nq = MIN (8, np - q0);
    for (int j = 0; j < nq; j++) {
      int q = q0 + j;
      d[j] = dst + ((gsize) (q / w) * dwp + q % w) * lv;
      for (gsize c = nc; c < lv; c++)
        d[j][c] = 0.0f;
    }
    if (nq == 8)
      for (int c0 = 0; c0 < c8; c0 += 8) {
        nn_v8 r[8];
        for (int i = 0; i < 8; i++)
          r[i] = *(const nn_v8u *) (src + (gsize) (c0 + i) * cs + q0);
        transpose8 (r);
        for (int j = 0; j < 8; j++)
          *(nn_v8u *) (d[j] + c0) = r[j];
      }
    for (int c = nq == 8 ? c8 : 0; c < nc; c++)
      for (int j = 0; j < nq; j++)
        d[j][c] = src[(gsize) c * cs + q0 + j];
  }
}

NN_HOT void
nn_conv_s1_backward (const float *x, const float *wpb, const float *dy,
    float *dx, float *dw, float *db, int cin, int h, int wd, int cout,
    int ho, int wo, int k, int pt, int pl, float *xp, float *dyz,
    float *dxb, float *dwt, float *tbuf)
{
  int kk = k * k;
  NnS1Geom g;

  (void) dw;
  nn_conv_s1_geometry (k, ho, wo, &g);
  if (!dwt)
    goto input_grad;
  if (db)
    for (int co = 0; co < cout; co++)
      db[co] += sum16 (dy + (gsize) co * ho * wo, (gsize) ho * wo);
  /* weight gradient, accumulated in the layout nn_conv_s1_dw_finish
   * reads */
  if (nn_conv_s1_dw_by_cin (cin, cout)) {
    gsize lv = nn_dw_lanes (cin);
    /* padded input, pixel-major: tbuf[p * lv + ci]; zero border */
    for (int py = 0; py < g.hp; py++) {
      gboolean inside = py >= pt && py < pt + h;
      for (int px = 0; px < g.wp; px++)
        if (!inside || px < pl || px >= pl + wd)
          memset (tbuf + ((gsize) py * g.wp + px) * lv, 0,
              lv * sizeof (float));
    }
    to_pixel_major (x, (gsize) h * wd, cin, h, wd, tbuf
        + ((gsize) pt * g.wp + pl) * lv, lv, g.wp);
    nn_dw (dy, (gsize) ho * wo, wo, NULL, tbuf, lv, g.wp, g.off, kk, cout,
        cin, ho, wo, dwt);
  } else {
    gsize lv = nn_dw_lanes (cout);
    /* dy pixel-major: tbuf[p * lv + co] */
    to_pixel_major (dy, (gsize) ho * wo, cout, ho, wo, tbuf, lv, wo);
    pad_planes (x, cin, h, wd, pt, pl, g.hp, g.wp, xp);
    nn_dw (xp, g.plane, g.wp, g.off, tbuf, lv, wo, NULL, kk, cin, cout, ho,
        wo, dwt);
  }
  /* input gradient: dy on the wide grid (junk columns zero) after a zero
   * margin, convolved with the flipped taps; positions [a, a + nx) of the
   * padded grid */
input_grad:
  if (dx) {
    int a = pt * g.wp + pl, nx = (h - 1) * g.wp + wd;
    gsize ldx = nn_wconv_ld (nx);
    int boff[9];
    memset (dyz, 0, (gsize) cout * g.dstride * sizeof (float));
    for (int co = 0; co < cout; co++)
      for (int oy = 0; oy < ho; oy++) {
        float *r = dyz + co * g.dstride + g.margin + oy * g.wp;
        const float *s = dy + ((gsize) co * ho + oy) * wo;
        for (int ox = 0; ox < wo; ox++)
          r[ox] = s[ox];
      }
    for (int t = 0; t < kk; t++)
      boff[t] = g.margin - g.off[t] + a;
    nn_wconv (dyz, g.dstride, boff, kk, wpb, NULL, dxb, ldx, cout, cin, nx,
        FALSE);
    for (int ci = 0; ci < cin; ci++)
      for (int iy = 0; iy < h; iy++) {
        float *d = dx + ((gsize) ci * h + iy) * wd;
        const float *s = dxb + ci * ldx + iy * g.wp;
        for (int ix = 0; ix < wd; ix++)
          d[ix] = s[ix];
      }
  }
}

/* ---- stride-1 weight gradient ----
 *
 *   out[(t * m + i) * nl + l] += sum_{oy < ho, ox < wo}
 *       B[i * ldb + oy * brow + ox + boff[t]]
 *     * V[(oy * vrow + ox + voff[t]) * lv + l]
 *
 * for i < m, l < nl, t < nt, with exactly one of boff / voff given (the
 * other is zero).  V rows are lv floats (lv = nn_dw_lanes (nl), the lanes
 * past nl zero); vectorised over l, MB rows of B x nt taps accumulated in
 * registers over the whole image, so each (i, t, l) is one running sum in
 * pixel order (fused multiply-adds on the vector paths). */

static void
dw_c (const float *B, gsize ldb, int brow, const int *boff, const float *V,
    gsize lv, int vrow, const int *voff, int nt, int m, int nl, int ho,
    int wo, float *out)
{
  for (int t = 0; t < nt; t++)
    for (int i = 0; i < m; i++)
      for (int l = 0; l < nl; l++) {
        float acc = 0.0f;
        for (int oy = 0; oy < ho; oy++)
          for (int ox = 0; ox < wo; ox++)
            acc += B[i * ldb + (gsize) oy * brow + ox + (boff ? boff[t] : 0)]
                * V[((gsize) oy * vrow + ox + (voff ? voff[t] : 0)) * lv + l];
        out[((gsize) t * m + i) * nl + l] += acc;
      }
}

/* ---- "wide" direct convolution (stride 1) ----
 *
 *   out[o * ostride + j] = bias[o]
 *       + sum_{i < cin} sum_{t < nt} W(o, i, t) * in[i * istride + off[t] + j]
 *
 * for j in [0, n), optionally followed by a ReLU.  With zero-padded input
 * planes and the output on a grid as wide as the padded input (junk in
 * the last k - 1 columns of each row), this is a stride-1 convolution:
 * all k*k taps and all input channels accumulate in registers, one pass,
 * no im2col and no GEMM calls.  Vectorised over j (16 or 8 floats), 4
 * output channels at a time, each input vector used for 4 FMAs.  Whole
 * vectors are written: output rows need nn_wconv_ld (n) floats, and the
 * input is read up to off[t] + nn_wconv_ld (n) - 1 (NN_WCONV_SLACK floats
 * past n + max off; keep them zero).  Weights are packed by nn_wconv_pack.
 * The summation order of one output does not depend on j or on which
 * (AVX-512, AVX2, plain C) kernel runs... except for rounding: the vector
 * kernels use fused multiply-adds, so results are bit-identical on one
 * machine, not across instruction sets. */

#define WB 4                    /* output channels per weight block */

gsize
nn_wconv_packed_size (int cout, int cin, int kk)
{
  return (gsize) (cout + WB - 1) / WB * WB * cin * kk;
}

void
nn_wconv_pack (const float *w, float *wp, int cout, int cin, int kk,
    gsize so, gsize si)
{
  for (int o0 = 0; o0 < cout; o0 += WB)
    for (int i = 0; i < cin; i++)
      for (int t = 0; t < kk; t++)
        for (int m = 0; m < WB; m++, wp++)
          *wp = o0 + m < cout ? w[(o0 + m) * so + i * si + t] : 0.0f;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
typedef float v16sf __attribute__((vector_size (64)));
typedef float v16sf_u __attribute__((vector_size (64), aligned (4),
        may_alias));
typedef int v16si __attribute__((vector_size (64)));
typedef float v8sf __attribute__((vector_size (32)));
typedef float v8sf_u __attribute__((vector_size (32), aligned (4),
        may_alias));
typedef int v8si __attribute__((vector_size (32)));

/* One block: NB vectors of j times MB output channels. */
#define WCONV_BLOCK(VT, VTU, VI, VW, FMA, NB, MB) \
  do { \
    VT acc[NB][MB]; \
    const float *wb = wp; \
    _Pragma ("GCC unroll 8") \
    for (int v = 0; v < NB; v++) \
      _Pragma ("GCC unroll 4") \
      for (int m = 0; m < MB; m++) \
        acc[v][m] = (VT) { 0 }; \
    for (int i = 0; i < cin; i++) { \
      const float *xi = in + (gsize) i * istride + j0; \
      for (int t = 0; t < nt; t++, wb += WB) { \
        const float *xt = xi + off[t]; \
        VT xv[NB]; \
        _Pragma ("GCC unroll 8") \
        for (int v = 0; v < NB; v++) \
          xv[v] = *(const VTU *) (xt + v * VW); \
        _Pragma ("GCC unroll 4") \
        for (int m = 0; m < MB; m++) { \
          VT wv = wb[m] - (VT) { 0 };   /* x - 0: a plain broadcast */ \
          _Pragma ("GCC unroll 8") \
          for (int v = 0; v < NB; v++) \
            acc[v][m] = FMA (xv[v], wv, acc[v][m]); \
        } \
      } \
    } \
    _Pragma ("GCC unroll 4") \
    for (int m = 0; m < MB; m++) { \
      float bm = bias ? bias[o0 + m] : 0.0f; \
      _Pragma ("GCC unroll 8") \
      for (int v = 0; v < NB; v++) { \
        VT r = acc[v][m] + bm; \
        if (relu) \
          r = (VT) ((VI) r & (VI) (r > 0)); \
        *(VTU *) (out + (gsize) (o0 + m) * ostride + j0 + v * VW) = r; \
      } \
    } \
  } while (0)

#define WCONV_CASE(VT, VTU, VI, VW, FMA, NB, MB) \
  case (MB) * 16 + (NB): \
    WCONV_BLOCK (VT, VTU, VI, VW, FMA, NB, MB); \
    break

/* Loop over blocks of output channels and of j with a switch on the block
 * shape (mb, nb), each case fully unrolled into registers. */
#define WCONV_DRIVER(VW, NBMAX, CASES) \
  do { \
    int nvec = (n + VW - 1) / VW; \
    for (int o0 = 0; o0 < cout; o0 += WB, wp0 += (gsize) WB * cin * nt) { \
      int mb = MIN (WB, cout - o0); \
      for (int v0 = 0; v0 < nvec; v0 += NBMAX) { \
        int nb = MIN (NBMAX, nvec - v0), j0 = v0 * VW; \
        const float *wp = wp0; \
        switch (mb * 16 + nb) { \
          CASES \
          default: \
            g_assert_not_reached (); \
        } \
      } \
    } \
  } while (0)

#include <immintrin.h>

#define C512(NB, MB) WCONV_CASE (v16sf, v16sf_u, v16si, 16, _mm512_fmadd_ps, NB, MB)
#define C512M(MB) C512 (1, MB); C512 (2, MB); C512 (3, MB); C512 (4, MB); \
  C512 (5, MB); C512 (6, MB);

__attribute__((target ("avx512f")))
static void
wconv_avx512 (const float *in, gsize istride, const int *off, int nt,
    const float *wp0, const float *bias, float *out, gsize ostride, int cin,
    int cout, int n, gboolean relu)
{
  WCONV_DRIVER (16, 6, C512M (1) C512M (2) C512M (3) C512M (4));
}

#define C256(NB, MB) WCONV_CASE (v8sf, v8sf_u, v8si, 8, _mm256_fmadd_ps, NB, MB)
#define C256M(MB) C256 (1, MB); C256 (2, MB);

__attribute__((target ("avx2,fma")))
static void
wconv_avx2 (const float *in, gsize istride, const int *off, int nt,
    const float *wp0, const float *bias, float *out, gsize ostride, int cin,
    int cout, int n, gboolean relu)
{
  WCONV_DRIVER (8, 2, C256M (1) C256M (2) C256M (3) C256M (4));
}

/* weight gradient: MB rows of B x NT taps for one vector of lanes */
#define DW_BLOCK(VT, VTU, VW, FMA, MB, NT, SHIFTV) \
  do { \
    VT acc[MB][NT]; \
    _Pragma ("GCC unroll 4") \
    for (int i = 0; i < MB; i++) \
      _Pragma ("GCC unroll 9") \
      for (int t = 0; t < NT; t++) \
        acc[i][t] = (VT) { 0 }; \
    for (int oy = 0; oy < ho; oy++) { \
      const float *br = B + (gsize) i0 * ldb + (gsize) oy * brow; \
      const float *vr = V + (gsize) oy * vrow * lv + l0; \
      for (int ox = 0; ox < wo; ox++) { \
        if (SHIFTV) { \
          VT bc[MB]; \
          _Pragma ("GCC unroll 4") \
          for (int i = 0; i < MB; i++) \
            bc[i] = br[i * ldb + ox] - (VT) { 0 }; \
          _Pragma ("GCC unroll 9") \
          for (int t = 0; t < NT; t++) { \
            VT xv = *(const VTU *) (vr + ox * lv + vo[t]); \
            _Pragma ("GCC unroll 4") \
            for (int i = 0; i < MB; i++) \
              acc[i][t] = FMA (bc[i], xv, acc[i][t]); \
          } \
        } else { \
          VT vv = *(const VTU *) (vr + ox * lv); \
          _Pragma ("GCC unroll 9") \
          for (int t = 0; t < NT; t++) \
            _Pragma ("GCC unroll 4") \
            for (int i = 0; i < MB; i++) \
              acc[i][t] = FMA (br[i * ldb + ox + bo[t]] - (VT) { 0 }, vv, \
                  acc[i][t]); \
        } \
      } \
    } \
    _Pragma ("GCC unroll 4") \
    for (int i = 0; i < MB; i++) \
      _Pragma ("GCC unroll 9") \
      for (int t = 0; t < NT; t++) { \
        float *o = out + ((gsize) t * m + i0 + i) * nl + l0; \
        if (l0 + VW <= nl) \
          *(VTU *) o += acc[i][t]; \
        else \
          for (int l = 0; l < nl - l0; l++) \
            o[l] += acc[i][t][l]; \
      } \
  } while (0)

#define DW_CASE(VT, VTU, VW, FMA, MB, NT) \
  case (MB) * 32 + (NT) * 2: \
    DW_BLOCK (VT, VTU, VW, FMA, MB, NT, 0); \
    break; \
  case (MB) * 32 + (NT) * 2 + 1: \
    DW_BLOCK (VT, VTU, VW, FMA, MB, NT, 1); \
    break

#define DW_DRIVER(VW, MBMAX, CASES) \
  do { \
    gsize vo[9]; \
    int bo[9]; \
    int shiftv = voff != NULL; \
    for (int t = 0; t < nt; t++) { \
      vo[t] = voff ? (gsize) voff[t] * lv : 0; \
      bo[t] = boff ? boff[t] : 0; \
    } \
    for (int i0 = 0; i0 < m; i0 += MBMAX) { \
      int mb = MIN (MBMAX, m - i0); \
      for (int l0 = 0; l0 < nl; l0 += VW) \
        switch (mb * 32 + nt * 2 + shiftv) { \
          CASES \
          default: \
            g_assert_not_reached (); \
        } \
    } \
  } while (0)

#define D512(MB, NT) DW_CASE (v16sf, v16sf_u, 16, _mm512_fmadd_ps, MB, NT)

__attribute__((target ("avx512f")))
static void
dw_avx512 (const float *B, gsize ldb, int brow, const int *boff,
    const float *V, gsize lv, int vrow, const int *voff, int nt, int m,
    int nl, int ho, int wo, float *out)
{
  DW_DRIVER (16, 3, D512 (1, 4); D512 (2, 4); D512 (3, 4); D512 (1, 9);
      D512 (2, 9); D512 (3, 9););
}

#define D256(MB, NT) DW_CASE (v8sf, v8sf_u, 8, _mm256_fmadd_ps, MB, NT)

__attribute__((target ("avx2,fma")))
static void
dw_avx2 (const float *B, gsize ldb, int brow, const int *boff,
    const float *V, gsize lv, int vrow, const int *voff, int nt, int m,
    int nl, int ho, int wo, float *out)
{
  DW_DRIVER (8, 1, D256 (1, 4); D256 (1, 9););
}

/* max-pool 2 values of the full windows, 16 outputs per step: even and
 * odd columns of two rows separated by permutes, max taken in the order
 * of pool_values_c (maxps (b, m) = b > m ? b : m) */
__attribute__((target ("avx512f")))
static void
pool_avx512 (const float *x, gsize ld, gsize lp, float *y, int yrow,
    gsize yplane, int c, int h, int w, int oh, int ow)
{
  int fh = h / 2, fw = w / 2;
  const __m512i ev = _mm512_setr_epi32 (0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
      20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32 (1, 3, 5, 7, 9, 11, 13, 15, 17, 19,
      21, 23, 25, 27, 29, 31);

  for (int ci = 0; ci < c; ci++)
    for (int oy = 0; oy < fh; oy++) {
      const float *r0 = x + ci * lp + (gsize) (2 * oy) * ld;
      const float *r1 = r0 + ld;
      float *yr = y + ci * yplane + (gsize) oy * yrow;
      for (int ox = 0; ox < fw; ox += 16) {
        int n = MIN (16, fw - ox);
        __mmask16 ml = n >= 8 ? 0xffff : (__mmask16) ((1u << (2 * n)) - 1);
        __mmask16 mh = n > 8 ? (__mmask16) ((1u << (2 * n - 16)) - 1) : 0;
        __m512 a0 = _mm512_maskz_loadu_ps (ml, r0 + 2 * ox);
        __m512 a1 = _mm512_maskz_loadu_ps (mh, r0 + 2 * ox + 16);
        __m512 b0 = _mm512_maskz_loadu_ps (ml, r1 + 2 * ox);
        __m512 b1 = _mm512_maskz_loadu_ps (mh, r1 + 2 * ox + 16);
        __m512 m = _mm512_permutex2var_ps (a0, ev, a1);
        m = _mm512_max_ps (_mm512_permutex2var_ps (a0, od, a1), m);
        m = _mm512_max_ps (_mm512_permutex2var_ps (b0, ev, b1), m);
        m = _mm512_max_ps (_mm512_permutex2var_ps (b0, od, b1), m);
        _mm512_mask_storeu_ps (yr + ox, (__mmask16) ((1u << n) - 1), m);
      }
    }
  if (oh > fh || ow > fw)
    pool_values_c (x, ld, lp, y, yrow, yplane, c, h, w, oh, ow, TRUE);
}

/* the same with the indices of the maxima (as pool_idx_c: strict >, in
 * row-major order) */
__attribute__((target ("avx512f")))
static void
pool_idx_avx512 (const float *x, gsize ld, gsize lp, float *y, gint32 *idx,
    int c, int h, int w, int oh, int ow)
{
  int fh = h / 2, fw = w / 2;
  const __m512i ev = _mm512_setr_epi32 (0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
      20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32 (1, 3, 5, 7, 9, 11, 13, 15, 17, 19,
      21, 23, 25, 27, 29, 31);
  const __m512i one = _mm512_set1_epi32 (1), wv = _mm512_set1_epi32 (w);

  for (int ci = 0; ci < c; ci++)
    for (int oy = 0; oy < fh; oy++) {
      const float *r0 = x + ci * lp + (gsize) (2 * oy) * ld;
      const float *r1 = r0 + ld;
      float *yr = y + ((gsize) ci * oh + oy) * ow;
      gint32 *ir = idx + ((gsize) ci * oh + oy) * ow;
      for (int ox = 0; ox < fw; ox += 16) {
        int n = MIN (16, fw - ox);
        __mmask16 ml = n >= 8 ? 0xffff : (__mmask16) ((1u << (2 * n)) - 1);
        __mmask16 mh = n > 8 ? (__mmask16) ((1u << (2 * n - 16)) - 1) : 0;
        __mmask16 mo = (__mmask16) ((1u << n) - 1), gt;
        __m512 a0 = _mm512_maskz_loadu_ps (ml, r0 + 2 * ox);
        __m512 a1 = _mm512_maskz_loadu_ps (mh, r0 + 2 * ox + 16);
        __m512 b0 = _mm512_maskz_loadu_ps (ml, r1 + 2 * ox);
        __m512 b1 = _mm512_maskz_loadu_ps (mh, r1 + 2 * ox + 16);
        __m512 m = _mm512_permutex2var_ps (a0, ev, a1), v;
        __m512i i0 = _mm512_add_epi32 (_mm512_set1_epi32 (2 * oy * w
                + 2 * ox), ev);
        __m512i bi = i0;
        v = _mm512_permutex2var_ps (a0, od, a1);
        gt = _mm512_cmp_ps_mask (v, m, _CMP_GT_OQ);
        bi = _mm512_mask_mov_epi32 (bi, gt, _mm512_add_epi32 (i0, one));
        m = _mm512_mask_mov_ps (m, gt, v);
        v = _mm512_permutex2var_ps (b0, ev, b1);
        gt = _mm512_cmp_ps_mask (v, m, _CMP_GT_OQ);
        bi = _mm512_mask_mov_epi32 (bi, gt, _mm512_add_epi32 (i0, wv));
        m = _mm512_mask_mov_ps (m, gt, v);
        v = _mm512_permutex2var_ps (b0, od, b1);
        gt = _mm512_cmp_ps_mask (v, m, _CMP_GT_OQ);
        bi = _mm512_mask_mov_epi32 (bi, gt,
            _mm512_add_epi32 (_mm512_add_epi32 (i0, wv), one));
        m = _mm512_mask_mov_ps (m, gt, v);
        _mm512_mask_storeu_ps (yr + ox, mo, m);
        _mm512_mask_storeu_epi32 (ir + ox, mo, bi);
      }
    }
  if (oh > fh || ow > fw)
    pool_idx_c (x, ld, lp, y, idx, c, h, w, oh, ow, TRUE);
}

/* relu_pool_backward_c for even sizes: every window written whole (the
 * gradient at its maximum if positive, zeros elsewhere), two rows of 16
 * windows per step, no memset and no scatter */
__attribute__((target ("avx512f")))
static void
relu_pool_backward_avx512 (const float *y, const float *dy,
    const gint32 *idx, float *dx, int c, int h, int w, int oh, int ow)
{
  const __m512i lo = _mm512_setr_epi32 (0, 16, 1, 17, 2, 18, 3, 19, 4, 20,
      5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32 (8, 24, 9, 25, 10, 26, 11, 27, 12,
      28, 13, 29, 14, 30, 15, 31);
  const __m512i ev = _mm512_setr_epi32 (0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
      20, 22, 24, 26, 28, 30);
  const __m512i one = _mm512_set1_epi32 (1), wv = _mm512_set1_epi32 (w);

  if ((h | w) & 1 || oh != h / 2 || ow != w / 2) {
    relu_pool_backward_c (y, dy, idx, dx, c, h, w, oh, ow);
    return;
  }
  for (int ci = 0; ci < c; ci++)
    for (int oy = 0; oy < oh; oy++) {
      gsize o = ((gsize) ci * oh + oy) * ow;
      float *d0 = dx + ((gsize) ci * h + 2 * oy) * w, *d1 = d0 + w;
      for (int ox = 0; ox < ow; ox += 16) {
        int n = MIN (16, ow - ox);
        __mmask16 mo = (__mmask16) ((1u << n) - 1);
        __mmask16 ml = n >= 8 ? 0xffff : (__mmask16) ((1u << (2 * n)) - 1);
        __mmask16 mh = n > 8 ? (__mmask16) ((1u << (2 * n - 16)) - 1) : 0;
        __m512 g = _mm512_maskz_loadu_ps (mo, dy + o + ox);
        __m512 yv = _mm512_maskz_loadu_ps (mo, y + o + ox);
        __m512i bi = _mm512_maskz_loadu_epi32 (mo, idx + o + ox);
        __m512i i0 = _mm512_add_epi32 (_mm512_set1_epi32 (2 * oy * w
                + 2 * ox), ev);
        __mmask16 pos = _mm512_cmp_ps_mask (yv, _mm512_setzero_ps (),
            _CMP_GT_OQ);
        __m512 a = _mm512_maskz_mov_ps (pos
            & _mm512_cmpeq_epi32_mask (bi, i0), g);
        __m512 b = _mm512_maskz_mov_ps (pos
            & _mm512_cmpeq_epi32_mask (bi, _mm512_add_epi32 (i0, one)), g);
        __m512i i1 = _mm512_add_epi32 (i0, wv);
        __m512 cc = _mm512_maskz_mov_ps (pos
            & _mm512_cmpeq_epi32_mask (bi, i1), g);
        __m512 dd = _mm512_maskz_mov_ps (pos
            & _mm512_cmpeq_epi32_mask (bi, _mm512_add_epi32 (i1, one)), g);
        _mm512_mask_storeu_ps (d0 + 2 * ox, ml,
            _mm512_permutex2var_ps (a, lo, b));
        _mm512_mask_storeu_ps (d0 + 2 * ox + 16, mh,
            _mm512_permutex2var_ps (a, hi, b));
        _mm512_mask_storeu_ps (d1 + 2 * ox, ml,
            _mm512_permutex2var_ps (cc, lo, dd));
        _mm512_mask_storeu_ps (d1 + 2 * ox + 16, mh,
            _mm512_permutex2var_ps (cc, hi, dd));
      }
    }
}
#endif

/* Plain C version (any machine): same packing and summation order. */
static void
wconv_c (const float *in, gsize istride, const int *off, int nt,
    const float *wp0, const float *bias, float *out, gsize ostride, int cin,
    int cout, int n, gboolean relu)
{
  for (int o0 = 0; o0 < cout; o0 += WB, wp0 += (gsize) WB * cin * nt) {
    int mb = MIN (WB, cout - o0);
    for (int m = 0; m < mb; m++) {
      float *o = out + (gsize) (o0 + m) * ostride;
      for (int j = 0; j < n; j++)
        o[j] = 0.0f;
      const float *wb = wp0 + m;
      for (int i = 0; i < cin; i++) {
        const float *xi = in + (gsize) i * istride;
        for (int t = 0; t < nt; t++, wb += WB) {
          const float *xt = xi + off[t];
          float wv = *wb;
          for (int j = 0; j < n; j++)
            o[j] += xt[j] * wv;
        }
      }
      for (int j = 0; j < n; j++) {
        float r = o[j] + (bias ? bias[o0 + m] : 0.0f);
        o[j] = relu && !(r > 0) ? 0.0f : r;
      }
    }
  }
}

typedef void (*WconvFunc) (const float *, gsize, const int *, int,
    const float *, const float *, float *, gsize, int, int, int, gboolean);
typedef void (*DwFunc) (const float *, gsize, int, const int *,
    const float *, gsize, int, const int *, int, int, int, int, int,
    float *);

typedef void (*PoolFunc) (const float *, gsize, gsize, float *, int, gsize,
    int, int, int, int, int);

static void
pool_values_generic (const float *x, gsize ld, gsize lp, float *y, int yrow,
    gsize yplane, int c, int h, int w, int oh, int ow)
{
  pool_values_c (x, ld, lp, y, yrow, yplane, c, h, w, oh, ow, FALSE);
}

typedef void (*PoolIdxFunc) (const float *, gsize, gsize, float *,
    gint32 *, int, int, int, int, int);

static void
pool_idx_generic (const float *x, gsize ld, gsize lp, float *y, gint32 *idx,
    int c, int h, int w, int oh, int ow)
{
  pool_idx_c (x, ld, lp, y, idx, c, h, w, oh, ow, FALSE);
}

typedef void (*PoolBackFunc) (const float *, const float *, const gint32 *,
    float *, int, int, int, int, int);

typedef struct {
  WconvFunc wconv;
  DwFunc dw;
  PoolFunc pool;
  PoolIdxFunc pool_idx;
  PoolBackFunc relu_pool_backward;
} Kernels;

static const Kernels *
kernels_pick (void)
{
  const char *env = g_getenv ("CBIR_NN_ISA");   /* tests: force a path */
  static const Kernels kc = { wconv_c, dw_c, pool_values_generic,
    pool_idx_generic, relu_pool_backward_c
  };
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static const Kernels k512 = { wconv_avx512, dw_avx512, pool_avx512,
    pool_idx_avx512, relu_pool_backward_avx512
  };
  static const Kernels k256 = { wconv_avx2, dw_avx2,
    pool_values_generic, pool_idx_generic, relu_pool_backward_c
  };
  __builtin_cpu_init ();
  if ((!env || g_strcmp0 (env, "avx512") == 0)
      && __builtin_cpu_supports ("avx512f"))
    return &k512;
  if ((!env || g_strcmp0 (env, "avx512") == 0 || g_strcmp0 (env, "avx2") == 0)
      && __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma"))
    return &k256;
#endif
  (void) env;
  return &kc;
}

static const Kernels *
kernels (void)
{
  static const Kernels *ks;
  const Kernels *k = g_atomic_pointer_get (&ks);

  if (G_UNLIKELY (!k)) {
    k = kernels_pick ();
    g_atomic_pointer_set (&ks, k);
  }
  return k;
}

void
nn_wconv (const float *in, gsize istride, const int *off, int nt,
    const float *wp, const float *bias, float *out, gsize ostride, int cin,
    int cout, int n, gboolean relu)
{
  if (n > 0 && cout > 0)
    kernels ()->wconv (in, istride, off, nt, wp, bias, out, ostride, cin,
        cout, n, relu);
}

void
nn_dw (const float *B, gsize ldb, int brow, const int *boff, const float *V,
    gsize lv, int vrow, const int *voff, int nt, int m, int nl, int ho,
    int wo, float *out)
{
  if (m > 0 && nl > 0 && ho > 0 && wo > 0)
    kernels ()->dw (B, ldb, brow, boff, V, lv, vrow, voff, nt, m, nl, ho, wo,
        out);
}

static void
pool_values (const float *x, gsize ld, gsize lp, float *y, int yrow,
    gsize yplane, int c, int h, int w, int oh, int ow)
{
  kernels ()->pool (x, ld, lp, y, yrow, yplane, c, h, w, oh, ow);
}

static void
pool_idx (const float *x, gsize ld, gsize lp, float *y, gint32 *idx, int c,
    int h, int w, int oh, int ow)
{
  kernels ()->pool_idx (x, ld, lp, y, idx, c, h, w, oh, ow);
}

void
nn_relu_pool_backward (const float *y, const float *dy, const gint32 *idx,
    float *dx, int c, int h, int w, int oh, int ow)
{
  kernels ()->relu_pool_backward (y, dy, idx, dx, c, h, w, oh, ow);
}

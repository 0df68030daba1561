/* Inner kernels of the neural-network core: im2col + OpenBLAS sgemm for
 * the convolutions, plain loops for the rest. */
#include "config.h"

#include <string.h>
#include <cblas.h>

#include "nn-kernels.h"

void
nn_im2col (const float *x, int c, int h, int w, int k, int s, int pt,
    int pl, int ho, int wo, float *col)
{
  gsize p = (gsize) ho * wo;

  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        float *row = col + (((gsize) ci * k + ky) * k + kx) * p;
        const float *xc = x + (gsize) ci * h * w;
        for (int oy = 0; oy < ho; oy++) {
          int iy = oy * s + ky - pt;
          float *r = row + (gsize) oy * wo;
          if (iy < 0 || iy >= h) {
            memset (r, 0, wo * sizeof (float));
            continue;
          }
          for (int ox = 0; ox < wo; ox++) {
            int ix = ox * s + kx - pl;
            r[ox] = (ix >= 0 && ix < w) ? xc[(gsize) iy * w + ix] : 0.0f;
          }
        }
      }
}

void
nn_col2im_add (const float *col, int c, int h, int w, int k, int s, int pt,
    int pl, int ho, int wo, float *x)
{
  gsize p = (gsize) ho * wo;

  for (int ci = 0; ci < c; ci++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        const float *row = col + (((gsize) ci * k + ky) * k + kx) * p;
        float *xc = x + (gsize) ci * h * w;
        for (int oy = 0; oy < ho; oy++) {
          int iy = oy * s + ky - pt;
          const float *r = row + (gsize) oy * wo;
          if (iy < 0 || iy >= h)
            continue;
          for (int ox = 0; ox < wo; ox++) {
            int ix = ox * s + kx - pl;
            if (ix >= 0 && ix < w)
              xc[(gsize) iy * w + ix] += r[ox];
          }
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

void
nn_maxpool2_forward (const float *x, float *y, gint32 *idx, int c, int h,
    int w, int oh, int ow)
{
  for (int ci = 0; ci < c; ci++) {
    const float *xc = x + (gsize) ci * h * w;
    float *yc = y + (gsize) ci * oh * ow;
    gint32 *ic = idx + (gsize) ci * oh * ow;
    for (int oy = 0; oy < oh; oy++) {
      gboolean y2 = 2 * oy + 1 < h;
      for (int ox = 0; ox < ow; ox++) {
        /* row-major scan, first maximum wins (strict >); windows past the
         * bottom/right edge ("same" pooling of odd sizes) are clipped */
        gboolean x2 = 2 * ox + 1 < w;
        int i0 = (2 * oy) * w + 2 * ox, best = i0;
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
        yc[oy * ow + ox] = m;
        ic[oy * ow + ox] = best;
      }
    }
  }
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

/* Inner kernels of the neural-network core.
 *
 * Convolutions go through OpenBLAS sgemm (single-threaded inside: our own
 * workers split the batch). Stride-1 convs (every conv of keras-dae and
 * sicara) use k*k shifted GEMMs on zero-padded planes (no im2col);
 * stride-2 convs and transposed convs use im2col/col2im + GEMM.
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
#pragma GCC optimize ("O3")
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
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
    gint32 *ic = idx + (gsize) ci * oh * ow;
    for (int oy = 0; oy < oh; oy++) {
      const float *r0 = xc + (gsize) (2 * oy) * w;
      const float *r1 = r0 + w;
      float *yr = yc + oy * ow;
      gint32 *ir = ic + oy * ow;
      int base = 2 * oy * w;
      if (oy < fh) {
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

/* ---- stride-1 convolution as k*k shifted GEMMs (no im2col) ----
 *
 * With the input zero-padded to hp x wp (hp = ho + k - 1, wp = wo + k - 1)
 * and the output computed on a grid of ho rows of wp columns (the last
 * k - 1 of each row are junk and dropped), the input seen by kernel tap
 * (ky, kx) is the padded planes shifted by ky * wp + kx: a plain strided
 * matrix, so the convolution is k*k GEMMs of [cout x cin] . [cin x n]
 * accumulating into one output block, n = (ho - 1) * wp + wo. Weights are
 * packed per tap as wk[kk][co][ci] (nn_pack_taps). */

void
nn_pack_taps (const float *w, float *wk, int cout, int cin, int k)
{
  int kk = k * k;
  for (int co = 0; co < cout; co++)
    for (int ci = 0; ci < cin; ci++)
      for (int t = 0; t < kk; t++)
        wk[((gsize) t * cout + co) * cin + ci] =
            w[((gsize) co * cin + ci) * kk + t];
}

static void
pad_planes (const float *x, int c, int h, int w, int pt, int pl, int hp,
    int wp, float *xp)
{
  memset (xp, 0, (gsize) c * hp * wp * sizeof (float));
  for (int ci = 0; ci < c; ci++)
    for (int iy = 0; iy < h; iy++)
      memcpy (xp + ((gsize) ci * hp + iy + pt) * wp + pl,
          x + ((gsize) ci * h + iy) * w, w * sizeof (float));
}

void
nn_conv_s1_forward (const float *x, const float *wk, const float *b,
    float *y, int cin, int h, int wd, int cout, int ho, int wo, int k,
    int pt, int pl, float *xp, float *cbuf)
{
  int hp = ho + k - 1, wp = wo + k - 1;
  gsize plane = (gsize) hp * wp, ldc = (gsize) ho * wp;
  int n = (ho - 1) * wp + wo;

  pad_planes (x, cin, h, wd, pt, pl, hp, wp, xp);
  for (int co = 0; co < cout; co++) {
    float v = b ? b[co] : 0.0f;
    for (int i = 0; i < n; i++)
      cbuf[co * ldc + i] = v;
  }
  for (int ky = 0; ky < k; ky++)
    for (int kx = 0; kx < k; kx++)
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, n, cin,
          1.0f, wk + (gsize) (ky * k + kx) * cout * cin, cin,
          xp + ky * wp + kx, plane, 1.0f, cbuf, ldc);
  for (int co = 0; co < cout; co++)
    for (int oy = 0; oy < ho; oy++)
      memcpy (y + ((gsize) co * ho + oy) * wo, cbuf + co * ldc + oy * wp,
          wo * sizeof (float));
}

void
nn_conv_s1_backward (const float *x, const float *wk, const float *dy,
    float *dx, float *dw, float *db, int cin, int h, int wd, int cout,
    int ho, int wo, int k, int pt, int pl, float *xp, float *dyp,
    float *tmp)
{
  int hp = ho + k - 1, wp = wo + k - 1, kk = k * k;
  gsize plane = (gsize) hp * wp, ldd = (gsize) ho * wp;
  int n = (ho - 1) * wp + wo;

  /* dy on the wide grid, junk columns zero */
  for (int co = 0; co < cout; co++)
    for (int oy = 0; oy < ho; oy++) {
      float *r = dyp + co * ldd + oy * wp;
      memcpy (r, dy + ((gsize) co * ho + oy) * wo, wo * sizeof (float));
      memset (r + wo, 0, (wp - wo) * sizeof (float));
    }
  if (db)
    for (int co = 0; co < cout; co++) {
      float acc = 0.0f;
      const float *d = dy + (gsize) co * ho * wo;
      for (int i = 0; i < ho * wo; i++)
        acc += d[i];
      db[co] += acc;
    }
  /* weight gradient per tap: [cout x n] . [n x cin] */
  pad_planes (x, cin, h, wd, pt, pl, hp, wp, xp);
  for (int ky = 0; ky < k; ky++)
    for (int kx = 0; kx < k; kx++)
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, cout, cin, n,
          1.0f, dyp, ldd, xp + ky * wp + kx, plane, 0.0f,
          tmp + (gsize) (ky * k + kx) * cout * cin, cin);
  for (int co = 0; co < cout; co++)
    for (int ci = 0; ci < cin; ci++) {
      float *d = dw + ((gsize) co * cin + ci) * kk;
      for (int t = 0; t < kk; t++)
        d[t] += tmp[((gsize) t * cout + co) * cin + ci];
    }
  /* input gradient: scatter each tap back onto the padded planes */
  memset (xp, 0, (gsize) cin * plane * sizeof (float));
  for (int ky = 0; ky < k; ky++)
    for (int kx = 0; kx < k; kx++)
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, cin, n, cout,
          1.0f, wk + (gsize) (ky * k + kx) * cout * cin, cin, dyp, ldd,
          1.0f, xp + ky * wp + kx, plane);
  for (int ci = 0; ci < cin; ci++)
    for (int iy = 0; iy < h; iy++)
      memcpy (dx + ((gsize) ci * h + iy) * wd,
          xp + ((gsize) ci * hp + iy + pt) * wp + pl, wd * sizeof (float));
}

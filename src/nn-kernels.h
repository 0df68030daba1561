/* Inner kernels of the neural-network core (private to libcbir).
 * One image at a time, NCHW, float32.  Convolutions are described in the
 * "conv view": an image of C x H x W convolved with a k x k kernel, stride
 * s, top/left padding pt/pl, onto a grid of Ho x Wo (for a transposed
 * convolution the image is its output and the grid its input). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

void nn_conv_forward (const float *x, const float *w, const float *b,
    float *y, int cin, int h, int wd, int cout, int ho, int wo, int k, int s,
    int pt, int pl, float *col);
void nn_conv_backward (const float *x, const float *w, const float *dy,
    float *dx, float *dw, float *db, int cin, int h, int wd, int cout,
    int ho, int wo, int k, int s, int pt, int pl, float *col, float *dcol);

void nn_convt_forward (const float *x, const float *w, const float *b,
    float *y, int cin, int cout, int h, int wd, int gh, int gw, int k, int s,
    int pt, int pl, float *col);
void nn_convt_backward (const float *x, const float *w, const float *dy,
    float *dx, float *dw, float *db, int cin, int cout, int h, int wd,
    int gh, int gw, int k, int s, int pt, int pl, float *col);

void nn_dense_forward (const float *x, const float *w, const float *b,
    float *y, int in, int out);
void nn_dense_backward (const float *x, const float *w, const float *dy,
    float *dx, float *dw, float *db, int in, int out);

/* idx may be NULL (inference) */
void nn_maxpool2_forward (const float *x, float *y, gint32 *idx, int c,
    int h, int w, int oh, int ow);
void nn_maxpool2_backward (const float *dy, float *dx, const gint32 *idx,
    int c, int h, int w, int oh, int ow);
/* relu (alpha = 0) and leaky relu */
void nn_relu_forward (const float *x, float *y, gsize n, float alpha);
void nn_relu_backward (const float *x, const float *dy, float *dx, gsize n,
    float alpha);
void nn_sigmoid_forward (const float *x, float *y, gsize n);
void nn_sigmoid_backward (const float *y, const float *dy, float *dx,
    gsize n);
void nn_upsample2_forward (const float *x, float *y, int c, int h, int w);
void nn_upsample2_backward (const float *dy, float *dx, int c, int h, int w);

/* Direct stride-1 convolution on a wide grid (see nn-kernels.c). */
#define NN_WCONV_SLACK 16
static inline gsize
nn_wconv_ld (int n)
{
  return ((gsize) n + NN_WCONV_SLACK - 1) / NN_WCONV_SLACK * NN_WCONV_SLACK;
}
gsize nn_wconv_packed_size (int cout, int cin, int kk);
/* W(o, i, t) = w[o * so + i * si + t] */
void nn_wconv_pack (const float *w, float *wp, int cout, int cin, int kk,
    gsize so, gsize si);
void nn_wconv (const float *in, gsize istride, const int *off, int nt,
    const float *wp, const float *bias, float *out, gsize ostride, int cin,
    int cout, int n, gboolean relu);

typedef struct {
  int hp, wp, n, margin;
  gsize plane, ldc, dstride;
  int off[9];
} NnS1Geom;
void nn_conv_s1_geometry (int k, int ho, int wo, NnS1Geom *g);

/* Scratch (floats): xp cin*plane + NN_WCONV_SLACK; cbuf cout*ldc;
 * dyz cout*dstride; dxb cin*nn_wconv_ld ((h-1)*wp + w).
 * wpk: forward weights, nn_wconv_pack (w, wpk, cout, cin, k*k, cin*k*k,
 * k*k); wpb: input-gradient weights, nn_wconv_pack (w, wpb, cin, cout,
 * k*k, k*k, cin*k*k).  dx may be NULL (not needed). */
void nn_conv_s1_forward (const float *x, const float *wpk, const float *b,
    float *y, int cin, int h, int wd, int cout, int ho, int wo, int k,
    int pt, int pl, float *xp, float *cbuf, gboolean relu);
/* the conv (+ ReLU) then a 2x2 max-pool to oh x ow; idx: the maxima's
 * indices as nn_maxpool2_forward (training) or NULL (inference) */
void nn_conv_s1_forward_pool (const float *x, const float *wpk,
    const float *b, float *y, int cin, int h, int wd, int cout, int ho,
    int wo, int k, int pt, int pl, float *xp, float *cbuf, gboolean relu,
    int oh, int ow, gint32 *idx, gboolean x_padded, const NnS1Geom *yg);
/* x_padded: x is already the padded planes (geometry of this conv, as
 * pad_planes makes them: nn_pad_border around the image), xp unused.
 * yg (inference only): y is the next stride-1 conv's padded input of that
 * geometry ("same" 3x3 or 2x2 placement: top/left pad (hp - oh) / 2),
 * border zeroed here. */
void nn_pad_border (float *xp, int c, int h, int w, int pt, int pl,
    const NnS1Geom *g);
void nn_relu_pool_backward (const float *y, const float *dy,
    const gint32 *idx, float *dx, int c, int h, int w, int oh, int ow);
void nn_conv_s1_backward (const float *x, const float *wpb, const float *dy,
    float *dx, float *dw, float *db, int cin, int h, int wd, int cout,
    int ho, int wo, int k, int pt, int pl, float *xp, float *dyz,
    float *dxb, float *dwt, float *tbuf);
/* dwt: weight gradient accumulated tap-major over the images of a pass
 * (start zero), [k*k][cout][cin] if nn_conv_s1_dw_by_cin (), else
 * [k*k][cin][cout]; nn_conv_s1_dw_finish adds it to dw.  tbuf:
 * nn_conv_s1_dw_scratch () floats.  dwt NULL: the input gradient only
 * (db, dw, tbuf unused). */
void nn_conv_s1_dw_finish (const float *dwt, float *dw, int cout, int cin,
    int kk);
gboolean nn_conv_s1_dw_by_cin (int cin, int cout);
gsize nn_conv_s1_dw_scratch (int cin, int cout, int k, int ho, int wo);

/* weight-gradient kernel (see nn-kernels.c); lanes padded to NN_DW_LANES */
#define NN_DW_LANES 16
static inline gsize
nn_dw_lanes (int n)
{
  return ((gsize) n + NN_DW_LANES - 1) / NN_DW_LANES * NN_DW_LANES;
}
void nn_dw (const float *B, gsize ldb, int brow, const int *boff,
    const float *V, gsize lv, int vrow, const int *voff, int nt, int m,
    int nl, int ho, int wo, float *out);

void nn_im2col (const float *x, int c, int h, int w, int k, int s, int pt,
    int pl, int ho, int wo, float *col);
void nn_col2im_add (const float *col, int c, int h, int w, int k, int s,
    int pt, int pl, int ho, int wo, float *x);

G_END_DECLS

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

/* stride-1 convolution as shifted GEMMs; scratch: xp cin*hp*wp,
 * cbuf/dyp cout*ho*wp, tmp k*k*cout*cin floats (hp = ho+k-1, wp = wo+k-1) */
void nn_pack_taps (const float *w, float *wk, int cout, int cin, int k);
void nn_conv_s1_forward (const float *x, const float *wk, const float *b,
    float *y, int cin, int h, int wd, int cout, int ho, int wo, int k,
    int pt, int pl, float *xp, float *cbuf);
void nn_conv_s1_backward (const float *x, const float *wk, const float *dy,
    float *dx, float *dw, float *db, int cin, int h, int wd, int cout,
    int ho, int wo, int k, int pt, int pl, float *xp, float *dyp,
    float *tmp);

void nn_im2col (const float *x, int c, int h, int w, int k, int s, int pt,
    int pl, int ho, int wo, float *col);
void nn_col2im_add (const float *col, int c, int h, int w, int k, int s,
    int pt, int pl, int ho, int wo, float *x);

G_END_DECLS

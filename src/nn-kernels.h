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
void nn_upsample2_forward (const float *x, float *y, int c, int h, int w);
void nn_upsample2_backward (const float *dy, float *dx, int c, int h, int w);

void nn_im2col (const float *x, int c, int h, int w, int k, int s, int pt,
    int pl, int ho, int wo, float *col);
void nn_col2im_add (const float *col, int c, int h, int w, int k, int s,
    int pt, int pl, int ho, int wo, float *x);

G_END_DECLS

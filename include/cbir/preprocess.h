/* Frame preprocessing: any GRAY8 frame to the model's input.
 *
 * - cbir_preprocess_scale: plain area-average resize.
 * - MNIST-style normalisation of camera frames (cbir_preprocess_mnist and
 *   friends): decide the polarity (dark ink on light paper is inverted to
 *   white ink on black), subtract a smooth background estimate (block
 *   percentiles of the paper, interpolated) so uneven light does not matter,
 *   threshold (Otsu with a noise floor), drop specks (tiny connected
 *   components), crop to the ink's bounding box, fit into 20x20 keeping the
 *   aspect ratio (area-average, so edges are anti-aliased) and place it in
 *   28x28 with its centre of mass at the centre, as MNIST was made.
 *
 * Frames are GRAY8, rows `stride` bytes apart (stride >= width, any width).
 * Nothing here allocates per pixel more than a few frame-sized buffers;
 * the functions are thread-safe (no global state). */
#pragma once

#include <cbir/common.h>

G_BEGIN_DECLS

#define CBIR_MNIST_SIZE 28      /* output side */
#define CBIR_MNIST_FIT 20       /* the ink's box is fitted into FIT x FIT */

/* A rectangle in frame pixels. */
typedef struct {
  guint x, y, width, height;
} CbirRect;

typedef struct {
  CbirRect bbox;                /* ink bounding box in frame coordinates
                                 * (all zero when there is no digit) */
  gboolean inverted;            /* TRUE when the frame was dark ink on light
                                 * paper (and was inverted) */
  float ink_fraction;           /* ink pixels kept / pixels of the frame or
                                 * of the rectangle looked at */
  float contrast;               /* typical ink strength above the background,
                                 * 0..255 */
} CbirPreprocessInfo;

/* Area-average (box filter) resize of a GRAY8 frame to out_w x out_h
 * (tightly packed, out_w bytes a row). Works for up- and down-scaling;
 * an exact copy when the sizes are equal. Zero sizes do nothing. */
void cbir_preprocess_scale (const guint8 *src, guint width, guint height,
    gsize stride, guint out_w, guint out_h, guint8 *dst);

/* Deskewing (as for k-NN on MNIST, LeCun et al. 1998): shears a GRAY8
 * image (w x h, tightly packed) horizontally so that its ink's second
 * moments have no x-y covariance: row y moves by alpha (y - cy), alpha =
 * cov(x, y) / var(y) of the pixel values, cy the centre of mass's row, and
 * each output pixel is the linear interpolation of its row (pixels from
 * outside the image are 0). |alpha| is limited to CBIR_DESKEW_MAX (a shear
 * of 45 degrees). An image with no ink, or all of it on one row, is copied.
 * src and dst must not overlap. Returns alpha. */
#define CBIR_DESKEW_MAX 1.0
double cbir_preprocess_deskew (const guint8 *src, guint w, guint h,
    guint8 *dst);

/* MNIST-style normalisation of a whole frame into dst28 (28x28, tightly
 * packed, white ink on black). Returns FALSE when the frame holds no digit
 * (no ink: blank, uniformly lit or only specks); dst28 is then all zero.
 * All the ink of the frame is taken as one digit: use
 * cbir_preprocess_find_digits + cbir_preprocess_mnist_rect for several.
 * info may be NULL. */
gboolean cbir_preprocess_mnist (const guint8 *src, guint width, guint height,
    gsize stride, guint8 *dst28, CbirPreprocessInfo *info);

/* Same, using only the ink inside rect (clipped to the frame); polarity,
 * background and threshold are still decided from the whole frame. */
gboolean cbir_preprocess_mnist_rect (const guint8 *src, guint width,
    guint height, gsize stride, const CbirRect *rect, guint8 *dst28,
    CbirPreprocessInfo *info);

/* Finds the digits of a frame: connected components of the ink (8-connected)
 * with specks dropped, components that touch or nearly touch merged (a digit
 * drawn in several strokes stays one), boxes too small to be a digit
 * dropped. Writes at most max_rects boxes to rects (may be NULL when
 * max_rects is 0), the largest ones if there are more, sorted left to right
 * (then top to bottom), and returns how many it wrote. */
guint cbir_preprocess_find_digits (const guint8 *src, guint width,
    guint height, gsize stride, CbirRect *rects, guint max_rects);

/* The analysis behind the three functions above, computed once per frame so
 * that several digits of one frame share it. */
typedef struct _CbirInkMap CbirInkMap;

/* Analyses a frame (polarity, background, threshold, components). Never
 * NULL for width, height >= 1; NULL for an empty frame. */
CbirInkMap *cbir_ink_map_new (const guint8 *src, guint width, guint height,
    gsize stride);
void cbir_ink_map_free (CbirInkMap *map);
/* As cbir_preprocess_find_digits. */
guint cbir_ink_map_find_digits (const CbirInkMap *map, CbirRect *rects,
    guint max_rects);
/* As cbir_preprocess_mnist_rect; rect NULL = the whole frame. */
gboolean cbir_ink_map_normalise (const CbirInkMap *map, const CbirRect *rect,
    guint8 *dst28, CbirPreprocessInfo *info);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirInkMap, cbir_ink_map_free)

G_END_DECLS

/* The simulated camera: frames that look like a webcam pointed at
 * handwritten digits on paper, made from a data set of 28x28 digits (the
 * query split of MNIST: held-out digits only).
 *
 * Each frame shows one digit (or several side by side) drawn large as dark
 * ink on light paper, unevenly lit (a linear illumination gradient in a
 * random direction and a vignette), randomly shifted, scaled and slightly
 * rotated, then blurred (Gaussian) and noisy (Gaussian sensor noise).
 * Frame i is a pure function of (parameters, seed, i): rendering it again,
 * in any order or thread, gives the same bytes (a counter-based RNG keyed
 * by seed and frame; no global state).
 *
 * The digits shown come from the data set in order (or in a seeded
 * permutation of it, `shuffle`): frame i shows images (first + i *
 * max_digits + j) mod n, j = 0 .. n_digits-1, where n_digits
 * is max_digits, or drawn at random in [min_digits, max_digits]. With one
 * digit a frame, frame i shows image first + i. The truth (labels, source
 * indices, ink bounding boxes) comes with every frame. */
#pragma once

#include <cbir/common.h>
#include <cbir/idx.h>
#include <cbir/preprocess.h>

G_BEGIN_DECLS

#define CBIR_SIMCAM_MAX_DIGITS 8

typedef struct {
  guint width, height;          /* frame size (640 x 480) */
  guint64 seed;                 /* 1 */
  guint first;                  /* first data set image shown (0) */
  guint min_digits, max_digits; /* digits per frame (1, 1), <= MAX_DIGITS */
  float min_height, max_height; /* ink height in pixels (150, 300; less
                                 * when several digits must fit) */
  float max_rotation;           /* degrees, uniform in +-max (10) */
  float blur_sigma;             /* Gaussian blur, pixels (1.5; 0 = none) */
  float noise_sigma;            /* sensor noise, grey levels (6; 0 = none) */
  float paper_min, paper_max;   /* paper brightness range (170, 240) */
  float gradient;               /* illumination gradient: relative drop of
                                 * the light across the frame (0.35) */
  float vignette;               /* relative darkening in the corners (0.25) */
  float ink_min, ink_max;       /* ink darkness: fraction of the light the
                                 * darkest ink absorbs (0.65, 0.9) */
  gboolean shuffle;             /* show the data set in a seeded random
                                 * order rather than file order (TRUE:
                                 * MNIST splits are often sorted by label) */
  guint blank_every;            /* every n-th frame (n > 0) shows only the
                                 * paper (no digit); 0 = never (0) */
} CbirSimcamParams;

/* Fills p with the defaults above. */
void cbir_simcam_params_init (CbirSimcamParams * p);

typedef struct {
  guint source_index;           /* index of the image in the data set */
  gint32 label;                 /* its label (-1 when the set has none) */
  CbirRect box;                 /* the ink's bounding box in the frame */
} CbirSimcamDigit;

typedef struct {
  guint frame;
  guint n_digits;               /* 0 for a blank frame */
  CbirSimcamDigit digits[CBIR_SIMCAM_MAX_DIGITS];       /* left to right */
} CbirSimcamTruth;

typedef struct _CbirSimcam CbirSimcam;

/* The camera keeps a reference to ds (not copied): ds must outlive it.
 * ds must hold 28x28 images (any size >= 8x8 works). Fails with
 * CBIR_ERROR_INVALID_ARGUMENT on bad parameters (sizes, ranges, an empty
 * data set, digits that cannot fit). */
CbirSimcam *cbir_simcam_new (const CbirDataset * ds,
    const CbirSimcamParams * p, GError ** error);
void cbir_simcam_free (CbirSimcam * cam);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirSimcam, cbir_simcam_free)

const CbirSimcamParams *cbir_simcam_get_params (const CbirSimcam * cam);

/* Renders frame `frame` as GRAY8 into dst (height rows `stride` bytes
 * apart, stride >= width) and, if truth is not NULL, its truth.
 * Thread-safe: several threads may render different frames at once. */
void cbir_simcam_render (const CbirSimcam * cam, guint frame, guint8 * dst,
    gsize stride, CbirSimcamTruth * truth);

/* One line of JSON (no newline) describing the truth of a frame:
 * {"frame":3,"labels":[7],"source_indices":[3],"boxes":[[x,y,w,h]]} */
gchar *cbir_simcam_truth_to_json (const CbirSimcamTruth * truth);

G_END_DECLS

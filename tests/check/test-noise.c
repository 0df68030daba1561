/* Noise: reproducibility, statistics, stride handling, u8/f32 agreement.
 * Registered twice in meson: once as is (ORC) and once with ORC_CODE=backup
 * (ORC's C backup path); both must pass. test_orc_matches_backup re-runs
 * this program with ORC_CODE=backup and checks that a digest of the outputs
 * of every kernel is the same, and test_kernel_reference checks the
 * kernels' arithmetic against plain C. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cbir/noise.h>

#define W 256
#define H 256

static guint8 *
grey_image (guint w, guint h, gsize stride, guint8 value, guint8 pad)
{
  guint8 *img = g_malloc ((gsize) h * stride);
  memset (img, pad, (gsize) h * stride);
  for (guint y = 0; y < h; y++)
    memset (img + (gsize) y * stride, value, w);
  return img;
}

/* Noise in a model's input space (cbirnoise gamma): the same normals as the
 * trainer's (cbir_noise_apply_f32 on x = (p/255)^gamma), so the corrupted
 * frame is the trainer's corrupted input mapped back to pixels, exactly;
 * gamma 1 is the plain pixel path. */
START_TEST (test_gamma_matches_trainer)
{
  const guint w = 28, h = 28, n = w * h;
  const float gammas[] = { 0.5f, 2.0f };
  guint8 img[28 * 28], u8[28 * 28], plain[28 * 28];
  float x[28 * 28];

  for (guint i = 0; i < n; i++)
    img[i] = (guint8) ((i * 37 + i / 28 * 11) % 256);
  for (guint g = 0; g < G_N_ELEMENTS (gammas); g++) {
    memcpy (u8, img, n);
    cbir_noise_apply_u8_gamma (CBIR_NOISE_GAUSSIAN, 0.3f, gammas[g], 9, 4,
        u8, w, h, w);
    for (guint i = 0; i < n; i++)
      x[i] = (float) pow (img[i] / 255.0, gammas[g]);
    cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.3f, 9, 4, x, n);
    guint changed = 0;
    for (guint i = 0; i < n; i++) {
      guint8 back = (guint8) lrint (255.0 * pow (x[i], 1.0 / gammas[g]));
      ck_assert_msg (u8[i] == back, "gamma %g pixel %u: %u != %u",
          gammas[g], i, u8[i], back);
      changed += u8[i] != img[i];
    }
    ck_assert (changed > n / 2);
  }
  memcpy (u8, img, n);
  memcpy (plain, img, n);
  cbir_noise_apply_u8_gamma (CBIR_NOISE_GAUSSIAN, 0.3f, 1.0f, 9, 4, u8, w,
      h, w);
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.3f, 9, 4, plain, w, h, w);
  ck_assert (memcmp (u8, plain, n) == 0);
}
END_TEST

START_TEST (test_kind_strings)
{
  CbirNoiseKind k;

  ck_assert_str_eq (cbir_noise_kind_to_string (CBIR_NOISE_NONE), "none");
  ck_assert_str_eq (cbir_noise_kind_to_string (CBIR_NOISE_GAUSSIAN), "gaussian");
  ck_assert_str_eq (cbir_noise_kind_to_string (CBIR_NOISE_SALT_PEPPER),
      "salt-and-pepper");
  for (int i = CBIR_NOISE_NONE; i <= CBIR_NOISE_SALT_PEPPER; i++) {
    ck_assert (cbir_noise_kind_from_string (cbir_noise_kind_to_string (i), &k));
    ck_assert_int_eq (k, i);
  }
  ck_assert (!cbir_noise_kind_from_string ("poisson", &k));
  ck_assert (!cbir_noise_kind_from_string ("", &k));
  ck_assert (!cbir_noise_kind_from_string (NULL, &k));
}
END_TEST

START_TEST (test_reproducible)
{
  for (int kind = CBIR_NOISE_GAUSSIAN; kind <= CBIR_NOISE_SALT_PEPPER; kind++) {
    g_autofree guint8 *a = grey_image (W, H, W, 128, 0);
    g_autofree guint8 *b = grey_image (W, H, W, 128, 0);
    g_autofree guint8 *c = grey_image (W, H, W, 128, 0);
    g_autofree guint8 *d = grey_image (W, H, W, 128, 0);
    float level = kind == CBIR_NOISE_GAUSSIAN ? 0.2f : 0.1f;

    cbir_noise_apply_u8 (kind, level, 42, 7, a, W, H, W);
    cbir_noise_apply_u8 (kind, level, 42, 7, b, W, H, W);
    cbir_noise_apply_u8 (kind, level, 42, 8, c, W, H, W);
    cbir_noise_apply_u8 (kind, level, 43, 7, d, W, H, W);
    ck_assert (memcmp (a, b, W * H) == 0);
    ck_assert (memcmp (a, c, W * H) != 0);
    ck_assert (memcmp (a, d, W * H) != 0);
  }
}
END_TEST

/* The f32 noise of image n of a batch does not depend on how the batch is
 * split: applying to a prefix gives the prefix of the whole. */
START_TEST (test_prefix_independent)
{
  gsize n = 3001;
  g_autofree float *a = g_new (float, n);
  g_autofree float *b = g_new (float, n);

  for (gsize i = 0; i < n; i++)
    a[i] = b[i] = 0.5f;
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.3f, 1, 2, a, n);
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.3f, 1, 2, b, 1000);
  ck_assert (memcmp (a, b, 1000 * sizeof (float)) == 0);
}
END_TEST

START_TEST (test_gaussian_stats)
{
  const float sigmas[] = { 0.02f, 0.1f };

  for (guint s = 0; s < G_N_ELEMENTS (sigmas); s++) {
    g_autofree guint8 *img = grey_image (W, H, W, 128, 0);
    double sum = 0, sum2 = 0, sum3 = 0, sum4 = 0;
    double sigma = sigmas[s] * 255.0;
    guint n = W * H;

    cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, sigmas[s], 5, 0, img, W, H, W);
    for (guint i = 0; i < n; i++)
      sum += img[i];
    double mean = sum / n;
    for (guint i = 0; i < n; i++) {
      double d = img[i] - mean;
      sum2 += d * d;
      sum3 += d * d * d;
      sum4 += d * d * d * d;
    }
    double var = sum2 / n;
    double std = sqrt (var);
    double skew = sum3 / n / (var * std);
    double kurt = sum4 / n / (var * var);
    /* Rounding to integers adds 1/12 to the variance. */
    double expect_std = sqrt (sigma * sigma + 1.0 / 12.0);

    /* Standard error of the mean is sigma/256; of the std sigma/362. */
    ck_assert_msg (fabs (mean - 128.0) < 5 * sigma / 256 + 0.01,
        "mean %f (sigma %f)", mean, sigma);
    ck_assert_msg (fabs (std - expect_std) < 0.02 * expect_std,
        "std %f, expected %f", std, expect_std);
    ck_assert_msg (fabs (skew) < 0.05, "skew %f", skew);
    if (sigma > 10)
      ck_assert_msg (fabs (kurt - 3.0) < 0.1, "kurtosis %f", kurt);
  }
}
END_TEST

/* f32: the normals themselves (no clipping at mid-grey with small sigma). */
START_TEST (test_gaussian_f32_stats)
{
  gsize n = 200000;
  g_autofree float *x = g_new (float, n);
  double sum = 0, sum2 = 0;
  gsize beyond2 = 0;

  for (gsize i = 0; i < n; i++)
    x[i] = 0.5f;
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.05f, 9, 3, x, n);
  for (gsize i = 0; i < n; i++) {
    double z = (x[i] - 0.5) / 0.05;
    sum += z;
    sum2 += z * z;
    if (fabs (z) > 2.0)
      beyond2++;
  }
  double mean = sum / n, std = sqrt (sum2 / n - mean * mean);
  ck_assert_msg (fabs (mean) < 0.015, "mean %f", mean);
  ck_assert_msg (fabs (std - 1.0) < 0.01, "std %f", std);
  /* P(|z| > 2) = 0.0455 */
  ck_assert_msg (fabs ((double) beyond2 / n - 0.0455) < 0.003, "tail %f",
      (double) beyond2 / n);

  /* Clipping: large sigma keeps everything in [0,1]. */
  for (gsize i = 0; i < n; i++)
    x[i] = 0.9f;
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 1.0f, 9, 4, x, n);
  gsize at1 = 0;
  for (gsize i = 0; i < n; i++) {
    ck_assert (x[i] >= 0.0f && x[i] <= 1.0f);
    at1 += x[i] == 1.0f;
  }
  /* P(0.9 + z >= 1) = P(z >= 0.1) = 0.4602 */
  ck_assert_msg (fabs ((double) at1 / n - 0.4602) < 0.01, "at one %f",
      (double) at1 / n);
}
END_TEST

START_TEST (test_salt_pepper_stats)
{
  const float densities[] = { 0.05f, 0.5f, 1.0f };

  for (guint s = 0; s < G_N_ELEMENTS (densities); s++) {
    g_autofree guint8 *img = grey_image (W, H, W, 100, 0);
    guint n = W * H, zeros = 0, maxes = 0, same = 0;
    double p = densities[s];

    cbir_noise_apply_u8 (CBIR_NOISE_SALT_PEPPER, densities[s], 11, 1, img,
        W, H, W);
    for (guint i = 0; i < n; i++) {
      zeros += img[i] == 0;
      maxes += img[i] == 255;
      same += img[i] == 100;
    }
    ck_assert_uint_eq (zeros + maxes + same, n);
    double frac = (double) (zeros + maxes) / n;
    double se = sqrt (p * (1 - p) / n);
    ck_assert_msg (fabs (frac - p) < 5 * se + 1e-9, "hit fraction %f for %f",
        frac, p);
    double half = (double) zeros / (zeros + maxes);
    ck_assert_msg (fabs (half - 0.5) < 5 * sqrt (0.25 / (zeros + maxes)),
        "pepper share %f", half);
  }
}
END_TEST

START_TEST (test_level_zero_and_none)
{
  g_autofree guint8 *img = grey_image (37, 11, 40, 77, 0xa5);
  g_autofree guint8 *ref = g_memdup2 (img, 11 * 40);
  float f[100];

  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.0f, 1, 1, img, 37, 11, 40);
  cbir_noise_apply_u8 (CBIR_NOISE_SALT_PEPPER, 0.0f, 1, 1, img, 37, 11, 40);
  cbir_noise_apply_u8 (CBIR_NOISE_NONE, 0.5f, 1, 1, img, 37, 11, 40);
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, -1.0f, 1, 1, img, 37, 11, 40);
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, NAN, 1, 1, img, 37, 11, 40);
  ck_assert (memcmp (img, ref, 11 * 40) == 0);

  for (int i = 0; i < 100; i++)
    f[i] = i / 99.0f;
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.0f, 1, 1, f, 100);
  cbir_noise_apply_f32 (CBIR_NOISE_SALT_PEPPER, 0.0f, 1, 1, f, 100);
  cbir_noise_apply_f32 (CBIR_NOISE_NONE, 1.0f, 1, 1, f, 100);
  for (int i = 0; i < 100; i++)
    ck_assert (f[i] == i / 99.0f);

  /* Empty images are fine. */
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.5f, 1, 1, img, 0, 0, 40);
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.5f, 1, 1, f, 0);
}
END_TEST

/* Odd widths with padding: padding untouched, and the pixels equal those of
 * the same image stored without padding. Widths past the row buffer too. */
START_TEST (test_stride)
{
  const guint widths[] = { 1, 3, 27, 29, 1023, 1025, 2051 };

  for (int kind = CBIR_NOISE_GAUSSIAN; kind <= CBIR_NOISE_SALT_PEPPER; kind++) {
    for (guint wi = 0; wi < G_N_ELEMENTS (widths); wi++) {
      guint w = widths[wi], h = 7;
      gsize stride = (w + 3 + 8) & ~(gsize) 3;
      g_autofree guint8 *padded = grey_image (w, h, stride, 120, 0xa5);
      g_autofree guint8 *tight = grey_image (w, h, w, 120, 0);

      cbir_noise_apply_u8 (kind, 0.3f, 3, 4, padded, w, h, stride);
      cbir_noise_apply_u8 (kind, 0.3f, 3, 4, tight, w, h, w);
      for (guint y = 0; y < h; y++) {
        ck_assert (memcmp (padded + y * stride, tight + y * w, w) == 0);
        for (gsize x = w; x < stride; x++)
          ck_assert_uint_eq (padded[y * stride + x], 0xa5);
      }
    }
  }
}
END_TEST

/* u8 and f32 use the same random numbers: salt-and-pepper hits the same
 * pixels with the same values; Gaussian u8 is the f32 result in 1/255 steps,
 * up to rounding. */
START_TEST (test_u8_f32_consistency)
{
  guint n = W * 64;
  g_autofree guint8 *u = g_malloc (n);
  g_autofree float *f = g_new (float, n);

  for (guint i = 0; i < n; i++) {
    u[i] = (guint8) (i * 7 % 256);
    f[i] = u[i] / 255.0f;
  }
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.1f, 21, 5, u, W, 64, W);
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.1f, 21, 5, f, n);
  for (guint i = 0; i < n; i++)
    ck_assert_msg (fabs (u[i] - f[i] * 255.0) <= 0.5 + 1e-3,
        "pixel %u: u8 %u f32*255 %f", i, u[i], f[i] * 255.0);

  for (guint i = 0; i < n; i++) {
    u[i] = (guint8) (i * 7 % 256);
    f[i] = u[i] / 255.0f;
  }
  cbir_noise_apply_u8 (CBIR_NOISE_SALT_PEPPER, 0.2f, 21, 5, u, W, 64, W);
  cbir_noise_apply_f32 (CBIR_NOISE_SALT_PEPPER, 0.2f, 21, 5, f, n);
  for (guint i = 0; i < n; i++)
    ck_assert_uint_eq (u[i], (guint) lrintf (f[i] * 255.0f));
}
END_TEST

/* Saturation at both ends for u8 Gaussian noise. */
START_TEST (test_u8_saturation)
{
  g_autofree guint8 *black = grey_image (W, 64, W, 0, 0);
  g_autofree guint8 *white = grey_image (W, 64, W, 255, 0);
  guint n0 = 0, n255 = 0;

  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.5f, 1, 0, black, W, 64, W);
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.5f, 1, 0, white, W, 64, W);
  for (guint i = 0; i < W * 64; i++) {
    n0 += black[i] == 0;
    n255 += white[i] == 255;
    /* Same normals: black gets max(0, v), white gets min(255, 255 + v). */
    ck_assert ((black[i] == 0) == (white[i] != 255) || black[i] == 0);
  }
  ck_assert (n0 > W * 64 * 0.45 && n0 < W * 64 * 0.55);
  ck_assert (n255 > W * 64 * 0.45 && n255 < W * 64 * 0.55);
}
END_TEST

/* The ORC kernels against plain C arithmetic: read the noise off a mid-grey
 * image, then apply the same noise to a ramp and check each pixel. */
START_TEST (test_kernel_reference)
{
  guint w = 1000, h = 3;
  g_autofree guint8 *grey = grey_image (w, h, w, 128, 0);
  g_autofree guint8 *ramp = g_malloc (w * h);
  g_autofree float *fg = g_new (float, w * h);
  g_autofree float *fr = g_new (float, w * h);

  for (guint i = 0; i < w * h; i++)
    ramp[i] = (guint8) (i % 256);
  /* sigma 0.08: |noise| < 128 (|z| <= 5.8 with 24-bit uniforms). */
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.08f, 8, 8, grey, w, h, w);
  cbir_noise_apply_u8 (CBIR_NOISE_GAUSSIAN, 0.08f, 8, 8, ramp, w, h, w);
  for (guint i = 0; i < w * h; i++) {
    int n = (int) grey[i] - 128;
    ck_assert (grey[i] != 0 && grey[i] != 255);
    ck_assert_int_eq (ramp[i], CLAMP ((int) (i % 256) + n, 0, 255));
  }

  memset (grey, 128, w * h);
  for (guint i = 0; i < w * h; i++)
    ramp[i] = (guint8) (i % 256);
  cbir_noise_apply_u8 (CBIR_NOISE_SALT_PEPPER, 0.3f, 8, 8, grey, w, h, w);
  cbir_noise_apply_u8 (CBIR_NOISE_SALT_PEPPER, 0.3f, 8, 8, ramp, w, h, w);
  for (guint i = 0; i < w * h; i++)
    ck_assert_uint_eq (ramp[i], grey[i] == 128 ? i % 256 : grey[i]);

  for (guint i = 0; i < w * h; i++) {
    fg[i] = 0.5f;
    fr[i] = (i % 101) / 100.0f;
  }
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.1f, 8, 8, fg, w * h);
  cbir_noise_apply_f32 (CBIR_NOISE_GAUSSIAN, 0.1f, 8, 8, fr, w * h);
  for (guint i = 0; i < w * h; i++) {
    float n = fg[i] - 0.5f;
    ck_assert (fg[i] > 0.0f && fg[i] < 1.0f);
    ck_assert_msg (fabsf (fr[i] - CLAMP ((i % 101) / 100.0f + n, 0.0f, 1.0f))
        < 1e-6f, "pixel %u", i);
  }
}
END_TEST

/* A digest of fixed outputs of every kernel, u8 and f32. */
static char *
noise_digest (void)
{
  g_autoptr (GChecksum) cs = g_checksum_new (G_CHECKSUM_SHA256);
  guint w = 333, h = 77;
  gsize stride = 336;
  g_autofree guint8 *img = g_malloc (h * stride);
  g_autofree float *f = g_new (float, w * h);

  for (int kind = CBIR_NOISE_GAUSSIAN; kind <= CBIR_NOISE_SALT_PEPPER; kind++) {
    for (float level = 0.05f; level < 1.0f; level += 0.3f) {
      memset (img, 0x5a, h * stride);
      for (guint y = 0; y < h; y++)
        for (guint x = 0; x < w; x++)
          img[y * stride + x] = (guint8) ((x * 3 + y * 5) & 0xff);
      cbir_noise_apply_u8 (kind, level, 1234, 99, img, w, h, stride);
      g_checksum_update (cs, img, h * stride);
      for (guint i = 0; i < w * h; i++)
        f[i] = (i % 256) / 255.0f;
      cbir_noise_apply_f32 (kind, level, 1234, 99, f, w * h);
      g_checksum_update (cs, (const guchar *) f, w * h * sizeof (float));
    }
  }
  return g_strdup (g_checksum_get_string (cs));
}

static const char *self_path;

/* ORC and its C backup give the same bytes: run this program again with
 * ORC_CODE=backup (it prints its digest) and compare. In the backup run of
 * the test this compares backup with backup, which still checks the
 * re-run is deterministic. */
START_TEST (test_orc_matches_backup)
{
  g_autofree char *mine = noise_digest ();
  g_autofree char *out = NULL;
  g_autoptr (GError) err = NULL;
  char *argv[] = { (char *) self_path, (char *) "--digest", NULL };
  g_auto (GStrv) envp = g_environ_setenv (g_get_environ (), "ORC_CODE",
      "backup", TRUE);
  int status = 0;

  g_print ("noise digest %s (ORC_CODE=%s)\n", mine,
      g_getenv ("ORC_CODE") ? g_getenv ("ORC_CODE") : "");
  ck_assert_msg (g_spawn_sync (NULL, argv, envp, G_SPAWN_DEFAULT, NULL, NULL,
          &out, NULL, &status, &err), "spawn %s: %s", self_path,
      err ? err->message : "");
  ck_assert (g_spawn_check_wait_status (status, NULL));
  g_strstrip (out);
  ck_assert_str_eq (out, mine);
}
END_TEST

static Suite *
noise_suite (void)
{
  Suite *s = suite_create ("noise");
  TCase *tc = tcase_create ("core");

  tcase_add_test (tc, test_gamma_matches_trainer);
  tcase_add_test (tc, test_kind_strings);
  tcase_add_test (tc, test_reproducible);
  tcase_add_test (tc, test_prefix_independent);
  tcase_add_test (tc, test_gaussian_stats);
  tcase_add_test (tc, test_gaussian_f32_stats);
  tcase_add_test (tc, test_salt_pepper_stats);
  tcase_add_test (tc, test_level_zero_and_none);
  tcase_add_test (tc, test_stride);
  tcase_add_test (tc, test_u8_f32_consistency);
  tcase_add_test (tc, test_u8_saturation);
  tcase_add_test (tc, test_kernel_reference);
  tcase_add_test (tc, test_orc_matches_backup);
  suite_add_tcase (s, tc);
  return s;
}

int
main (int argc, char **argv)
{
  SRunner *sr;
  int failed;

  if (argc > 1 && strcmp (argv[1], "--digest") == 0) {
    g_autofree char *d = noise_digest ();
    g_print ("%s\n", d);
    return 0;
  }
  self_path = argv[0];
  sr = srunner_create (noise_suite ());

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

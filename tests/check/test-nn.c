/* Tests of the neural-network core (src/nn*.c): gradients against central
 * finite differences for every layer and configuration, shape inference
 * and errors, determinism across runs and thread counts, and hand-computed
 * values that pin the conventions finite differences cannot see (Keras
 * "same" padding, max-pool ties, up-sampling layout, transposed-conv
 * placement, flatten order, BN statistics, PyTorch weight layouts). */
#include <check.h>
#include <math.h>
#include <string.h>

#include <cbir/nn.h>

/* ------------------------------------------------------------ helpers */

static guint64
rnd_next (guint64 *s)
{
  guint64 z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* uniform in [lo, hi) */
static float
rnd_uniform (guint64 *s, float lo, float hi)
{
  double u = (double) (rnd_next (s) >> 11) / 9007199254740992.0;
  return (float) (lo + (hi - lo) * u);
}

/* uniform in [-1, 1] but away from 0 (ReLU kinks) */
static float
rnd_away (guint64 *s)
{
  float v = rnd_uniform (s, 0.1f, 1.0f);
  return (rnd_next (s) & 1) ? v : -v;
}

static CbirLayerSpec
conv (int filters, int k, int s, gboolean same)
{
  CbirLayerSpec l = { 0 };
  l.kind = CBIR_LAYER_CONV2D;
  l.filters = filters;
  l.kernel = k;
  l.stride = s;
  l.same = same;
  l.bias = TRUE;
  return l;
}

static CbirLayerSpec
convt (int filters, int k, int s, gboolean same)
{
  CbirLayerSpec l = conv (filters, k, s, same);
  l.kind = CBIR_LAYER_CONV_TRANSPOSE2D;
  return l;
}

static CbirLayerSpec
dense (int units)
{
  CbirLayerSpec l = { 0 };
  l.kind = CBIR_LAYER_DENSE;
  l.filters = units;
  l.bias = TRUE;
  return l;
}

static CbirLayerSpec
simple (CbirLayerKind kind)
{
  CbirLayerSpec l = { 0 };
  l.kind = kind;
  return l;
}

static CbirLayerSpec
pool_same (void)
{
  CbirLayerSpec l = simple (CBIR_LAYER_MAXPOOL2);
  l.same = TRUE;
  return l;
}

static CbirLayerSpec
leaky (float alpha)
{
  CbirLayerSpec l = simple (CBIR_LAYER_LEAKY_RELU);
  l.alpha = alpha;
  return l;
}

static CbirLayerSpec
bn (float eps, float momentum)
{
  CbirLayerSpec l = simple (CBIR_LAYER_BATCHNORM);
  l.eps = eps;
  l.momentum = momentum;
  return l;
}

static CbirLayerSpec
reshape (int c, int h, int w)
{
  CbirLayerSpec l = simple (CBIR_LAYER_RESHAPE);
  l.shape[0] = c;
  l.shape[1] = h;
  l.shape[2] = w;
  return l;
}

static gsize
shape_size (CbirShape s)
{
  return (gsize) s.c * s.h * s.w;
}

static gboolean
ends_with (const char *s, const char *suffix)
{
  return g_str_has_suffix (s, suffix);
}

/* Gives every parameter a non-trivial value (biases, BN gamma/beta and
 * running statistics included). */
static void
randomise_params (CbirNet *net, guint64 seed)
{
  guint64 s = seed ^ 0x1234;
  float *p = cbir_net_params (net);

  cbir_net_init_params (net, seed);
  for (guint i = 0; i < cbir_net_n_tensors (net); i++) {
    const CbirNetTensor *t = cbir_net_tensor (net, i);
    guint layer = (guint) g_ascii_strtoull (t->name + strlen ("layers."),
        NULL, 10);
    gboolean is_bn = cbir_net_layer (net, layer)->kind == CBIR_LAYER_BATCHNORM;
    for (gsize j = 0; j < t->size; j++) {
      float *v = p + t->offset + j;
      if (ends_with (t->name, ".bias"))
        *v = rnd_uniform (&s, -0.5f, 0.5f);
      else if (ends_with (t->name, ".running_mean"))
        *v = rnd_uniform (&s, -0.3f, 0.3f);
      else if (ends_with (t->name, ".running_var"))
        *v = rnd_uniform (&s, 0.5f, 1.5f);
      else if (is_bn)
        *v = rnd_uniform (&s, 0.5f, 1.5f);
    }
  }
}

/* A loss on the network's output and, optionally, on an inner layer's:
 * sum (out * r) + sum (output of layer inner * r2). */
typedef struct {
  const float *r;
  int inner;                    /* -1: none */
  const float *r2;
} TestLoss;

static double
loss_of (CbirNet *net, CbirNetState *st, const float *x, guint batch,
    gboolean training, const TestLoss *tl)
{
  guint last = cbir_net_n_layers (net) - 1;
  const float *y = cbir_net_forward (net, st, x, batch, last, training);
  gsize n = shape_size (cbir_net_output_shape (net, last)) * batch;
  double l = 0;
  for (gsize i = 0; i < n; i++)
    l += (double) y[i] * tl->r[i];
  if (tl->inner >= 0) {
    const float *z = cbir_net_state_output (st, (guint) tl->inner);
    gsize nz = shape_size (cbir_net_output_shape (net, tl->inner)) * batch;
    for (gsize i = 0; i < nz; i++)
      l += (double) z[i] * tl->r2[i];
  }
  return l;
}

static gboolean
close_enough (double a, double b)
{
  return fabs (a - b) <= 2e-3 + 1e-2 * MAX (fabs (a), fabs (b));
}

/* Central difference of the loss w.r.t. *v. A ReLU kink or a max-pool
 * switch inside [v - eps, v + eps] shows as one-sided differences that
 * disagree; the step then shrinks, and a point that stays non-smooth is
 * reported as such (returns FALSE) rather than compared. */
static gboolean
numeric_grad (CbirNet *net, CbirNetState *st, const float *x, guint batch,
    gboolean training, const TestLoss *r, float *v, double *out)
{
  float save = *v;
  double l0 = loss_of (net, st, x, batch, training, r);
  float eps = 2e-3f;

  for (int attempt = 0; attempt < 3; attempt++, eps /= 4) {
    double lp, lm, fwd, bwd;
    /* v may be a parameter written through a kept pointer: say so */
    *v = save + eps;
    cbir_net_params_changed (net);
    lp = loss_of (net, st, x, batch, training, r);
    *v = save - eps;
    cbir_net_params_changed (net);
    lm = loss_of (net, st, x, batch, training, r);
    *v = save;
    cbir_net_params_changed (net);
    fwd = (lp - l0) / eps;
    bwd = (l0 - lm) / eps;
    *out = (lp - lm) / (2.0 * eps);
    if (close_enough (fwd, bwd))
      return TRUE;
  }
  return FALSE;
}

/* Checks d(sum(out * r) [+ sum(output of layer inner * r2)])/d(params,
 * input) against central differences; inner -1: the output only, else
 * the inner term goes through cbir_net_backward_extra (). */
static void
gradcheck_inner (const char *name, CbirShape in, const CbirLayerSpec *layers,
    guint n, guint batch, gboolean training, guint threads, guint64 seed,
    int inner)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirNet) net = cbir_net_new (in, layers, n, &err);
  g_autoptr (CbirNetState) st = NULL;
  g_autofree float *x = NULL, *r = NULL, *r2 = NULL, *grads = NULL;
  g_autofree float *dx = NULL;
  TestLoss tl = { NULL, inner, NULL };
  guint64 s = seed;
  gsize nin = shape_size (in) * batch, nout, np;
  float *p;
  guint checked = 0, kinks = 0;

  ck_assert_msg (net != NULL, "%s: %s", name, err ? err->message : "?");
  cbir_net_set_threads (net, threads);
  randomise_params (net, seed);
  np = cbir_net_n_params (net);
  p = cbir_net_params (net);
  nout = shape_size (cbir_net_output_shape (net, n - 1)) * batch;
  x = g_new (float, nin);
  r = g_new (float, nout);
  for (gsize i = 0; i < nin; i++)
    x[i] = rnd_away (&s);
  for (gsize i = 0; i < nout; i++)
    r[i] = rnd_uniform (&s, -1.0f, 1.0f);
  tl.r = r;
  if (inner >= 0) {
    gsize nz = shape_size (cbir_net_output_shape (net, inner)) * batch;
    r2 = g_new (float, nz);
    for (gsize i = 0; i < nz; i++)
      r2[i] = rnd_uniform (&s, -1.0f, 1.0f);
    tl.r2 = r2;
  }
  st = cbir_net_state_new (net, batch);

  grads = g_new0 (float, np);
  cbir_net_forward (net, st, x, batch, n - 1, training);
  if (inner >= 0)
    cbir_net_backward_extra (net, st, r, (guint) inner, r2, grads);
  else
    cbir_net_backward (net, st, r, grads);
  dx = g_memdup2 (cbir_net_input_grad (st), nin * sizeof (float));

  for (guint ti = 0; ti < cbir_net_n_tensors (net); ti++) {
    const CbirNetTensor *t = cbir_net_tensor (net, ti);
    g_autofree char *what = g_strdup_printf ("%s %s", name, t->name);
    if (!t->trainable) {
      /* backward never writes non-trainable slots */
      for (gsize j = 0; j < t->size; j++)
        ck_assert_msg (grads[t->offset + j] == 0.0f, "%s written", what);
      continue;
    }
    for (gsize j = 0; j < t->size; j++) {
      double num;
      checked++;
      if (!numeric_grad (net, st, x, batch, training, &tl, p + t->offset + j,
              &num)) {
        kinks++;
        continue;
      }
      ck_assert_msg (close_enough (grads[t->offset + j], num),
          "%s[%" G_GSIZE_FORMAT "]: analytic %.6g vs numeric %.6g", what, j,
          grads[t->offset + j], num);
    }
  }
  for (gsize i = 0; i < nin; i++) {
    double num;
    checked++;
    if (!numeric_grad (net, st, x, batch, training, &tl, x + i, &num)) {
      kinks++;
      continue;
    }
    ck_assert_msg (close_enough (dx[i], num),
        "%s input[%" G_GSIZE_FORMAT "]: analytic %.6g vs numeric %.6g", name,
        i, dx[i], num);
  }
  /* non-smooth points are rare; most coordinates must be compared */
  ck_assert_msg (kinks * 50 <= checked, "%s: %u of %u points non-smooth",
      name, kinks, checked);
}

static void
gradcheck (const char *name, CbirShape in, const CbirLayerSpec *layers,
    guint n, guint batch, gboolean training, guint threads, guint64 seed)
{
  gradcheck_inner (name, in, layers, n, batch, training, threads, seed, -1);
}

/* ------------------------------------------------------------ gradients */

START_TEST (test_grad_conv)
{
  /* all configurations, on a non-square odd-sized input */
  CbirShape in = { 2, 5, 6 };
  for (int k = 2; k <= 3; k++)
    for (int s = 1; s <= 2; s++)
      for (int same = 0; same <= 1; same++)
        for (int bias = 0; bias <= 1; bias++) {
          CbirLayerSpec l = conv (3, k, s, same);
          g_autofree char *name = g_strdup_printf ("conv k%d s%d %s%s", k,
              s, same ? "same" : "valid", bias ? "" : " nobias");
          l.bias = bias;
          gradcheck (name, in, &l, 1, 2, TRUE, 1, 100 + k * 8 + s * 4
              + same * 2 + bias);
        }
}
END_TEST

START_TEST (test_grad_convt)
{
  CbirShape in = { 2, 3, 4 };
  for (int k = 2; k <= 3; k++)
    for (int s = 1; s <= 2; s++)
      for (int same = 0; same <= 1; same++)
        for (int bias = 0; bias <= 1; bias++) {
          CbirLayerSpec l = convt (3, k, s, same);
          g_autofree char *name = g_strdup_printf ("convT k%d s%d %s%s", k,
              s, same ? "same" : "valid", bias ? "" : " nobias");
          l.bias = bias;
          gradcheck (name, in, &l, 1, 2, TRUE, 1, 200 + k * 8 + s * 4
              + same * 2 + bias);
        }
}
END_TEST

START_TEST (test_grad_dense)
{
  CbirShape in = { 2, 2, 3 };
  CbirLayerSpec l[2] = { simple (CBIR_LAYER_FLATTEN), dense (4) };
  CbirLayerSpec nb = dense (3);
  gradcheck ("flatten+dense", in, l, 2, 3, TRUE, 1, 300);
  /* a dense layer reads a non-flat input flattened */
  nb.bias = FALSE;
  gradcheck ("dense nobias", in, &nb, 1, 2, TRUE, 1, 301);
}
END_TEST

START_TEST (test_grad_activations)
{
  CbirShape in = { 2, 3, 3 };
  CbirLayerSpec a[] = { simple (CBIR_LAYER_RELU), leaky (0.2f), leaky (0.01f),
    simple (CBIR_LAYER_SIGMOID)
  };
  for (guint i = 0; i < G_N_ELEMENTS (a); i++) {
    /* alone, and after a conv so parameters see the activation too */
    CbirLayerSpec two[2] = { conv (2, 3, 1, TRUE), a[i] };
    g_autofree char *name = g_strdup_printf ("activation %u", i);
    gradcheck (name, in, &a[i], 1, 2, TRUE, 1, 400 + i);
    gradcheck (name, in, two, 2, 2, TRUE, 1, 410 + i);
  }
}
END_TEST

START_TEST (test_grad_batchnorm)
{
  CbirShape in = { 3, 3, 4 };
  CbirShape flat = { 5, 1, 1 };
  CbirLayerSpec l[2] = { conv (3, 3, 1, TRUE), bn (1e-3f, 0.01f) };
  CbirLayerSpec d[2] = { dense (4), bn (1e-5f, 0.1f) };
  CbirLayerSpec mid[4] = { conv (3, 3, 1, TRUE), bn (1e-3f, 0.01f),
    leaky (0.2f), conv (2, 2, 2, TRUE)
  };
  /* training mode: batch statistics */
  gradcheck ("bn train", in, l, 2, 3, TRUE, 1, 500);
  gradcheck ("bn train dense", flat, d, 2, 4, TRUE, 1, 501);
  gradcheck ("bn train mid", in, mid, 4, 3, TRUE, 1, 502);
  /* the same on 2 threads (barriers, reductions) */
  gradcheck ("bn train 2 threads", in, mid, 4, 3, TRUE, 2, 503);
  /* inference mode: running statistics */
  gradcheck ("bn eval", in, l, 2, 3, FALSE, 1, 504);
  gradcheck ("bn eval mid", in, mid, 4, 2, FALSE, 2, 505);
}
END_TEST

START_TEST (test_grad_pool_upsample)
{
  CbirShape odd = { 2, 5, 5 };
  CbirShape even = { 2, 4, 6 };
  CbirLayerSpec mp = simple (CBIR_LAYER_MAXPOOL2);
  CbirLayerSpec up = simple (CBIR_LAYER_UPSAMPLE2);
  CbirLayerSpec net[3] = { conv (2, 3, 1, TRUE), mp, up };
  gradcheck ("maxpool odd", odd, &mp, 1, 2, TRUE, 1, 600);
  gradcheck ("maxpool even", even, &mp, 1, 2, TRUE, 1, 601);
  {
    CbirLayerSpec ms = pool_same ();
    gradcheck ("maxpool same odd", odd, &ms, 1, 2, TRUE, 1, 604);
  }
  gradcheck ("upsample", odd, &up, 1, 2, TRUE, 1, 602);
  gradcheck ("conv-mp-up", even, net, 3, 2, TRUE, 2, 603);
}
END_TEST

START_TEST (test_grad_views)
{
  CbirShape in = { 2, 2, 3 };
  CbirLayerSpec l[4] = { simple (CBIR_LAYER_FLATTEN), dense (12),
    reshape (3, 2, 2), conv (2, 2, 1, TRUE)
  };
  CbirLayerSpec r1[2] = { reshape (3, 4, 1), simple (CBIR_LAYER_SIGMOID) };
  gradcheck ("flatten-dense-reshape-conv", in, l, 4, 2, TRUE, 1, 700);
  gradcheck ("reshape first", in, r1, 2, 2, TRUE, 1, 701);
}
END_TEST

/* Small versions of the presets: the layers in the combinations used. */
START_TEST (test_grad_small_nets)
{
  CbirShape in = { 1, 8, 8 };
  CbirLayerSpec dae[] = {
    conv (3, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_MAXPOOL2),
    conv (2, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_MAXPOOL2),
    conv (2, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_UPSAMPLE2),
    conv (3, 3, 1, FALSE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_UPSAMPLE2),
    conv (1, 3, 1, TRUE), simple (CBIR_LAYER_SIGMOID),
  };
  CbirLayerSpec pis[] = {
    conv (3, 3, 2, TRUE), leaky (0.2f), bn (1e-3f, 0.01f),
    simple (CBIR_LAYER_FLATTEN), dense (4), dense (3 * 4 * 4),
    reshape (3, 4, 4),
    convt (2, 3, 2, TRUE), leaky (0.2f), bn (1e-3f, 0.01f),
    convt (1, 3, 1, TRUE), simple (CBIR_LAYER_SIGMOID),
  };
  CbirLayerSpec xor[] = {
    conv (2, 3, 2, TRUE), simple (CBIR_LAYER_RELU),
    conv (2, 3, 2, TRUE), simple (CBIR_LAYER_RELU),
    convt (2, 3, 2, TRUE), simple (CBIR_LAYER_RELU),
    convt (2, 2, 2, TRUE), simple (CBIR_LAYER_RELU),
    conv (1, 3, 1, TRUE), simple (CBIR_LAYER_SIGMOID),
  };
  /* conv + ReLU + pool fused in training, with clipped (same) windows */
  CbirShape in7 = { 2, 7, 5 };
  CbirLayerSpec fused[] = {
    conv (3, 3, 1, TRUE), simple (CBIR_LAYER_RELU), pool_same (),
    conv (2, 2, 1, TRUE), simple (CBIR_LAYER_RELU), pool_same (),
    conv (2, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
  };
  gradcheck ("dae", in, dae, G_N_ELEMENTS (dae), 2, TRUE, 2, 800);
  gradcheck ("fused-pool", in7, fused, G_N_ELEMENTS (fused), 3, TRUE, 2,
      803);
  /* rows of more than 16 pooling windows */
  CbirShape wide = { 1, 4, 36 };
  gradcheck ("fused-pool-wide", wide, fused, 3, 2, TRUE, 1, 804);
  gradcheck ("pyimagesearch", in, pis, G_N_ELEMENTS (pis), 3, TRUE, 2, 801);
  gradcheck ("binary-xor", in, xor, G_N_ELEMENTS (xor), 2, TRUE, 1, 802);
}
END_TEST

/* A second loss on an inner layer (the code of an autoencoder, as the
 * trainer's consistency term uses it), with BN above and below it (its
 * gradient crosses a sync layer) and on 1 and 2 threads; the layers whose
 * outputs a training forward does not keep are refused. */
START_TEST (test_grad_inner_loss)
{
  CbirShape in = { 1, 8, 8 };
  CbirLayerSpec ae[] = {
    conv (3, 3, 1, TRUE), bn (1e-3f, 0.1f), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_MAXPOOL2),
    simple (CBIR_LAYER_FLATTEN), dense (5), dense (2 * 4 * 4),
    simple (CBIR_LAYER_RELU), reshape (2, 4, 4),
    conv (2, 3, 1, TRUE), bn (1e-3f, 0.1f), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_UPSAMPLE2),
    conv (1, 3, 1, TRUE), simple (CBIR_LAYER_SIGMOID),
  };
  /* the code (layer 5), the dense before a ReLU (6), a BN output (1) */
  gradcheck_inner ("inner code", in, ae, G_N_ELEMENTS (ae), 3, TRUE, 1, 810,
      5);
  gradcheck_inner ("inner code 2 threads", in, ae, G_N_ELEMENTS (ae), 4,
      TRUE, 2, 813, 5);
  gradcheck_inner ("inner bn", in, ae, G_N_ELEMENTS (ae), 3, TRUE, 2, 812, 1);

  CbirLayerSpec fused[] = {
    conv (2, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_MAXPOOL2), simple (CBIR_LAYER_FLATTEN), dense (3),
    dense (4),
  };
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirNet) net = cbir_net_new (in, fused, G_N_ELEMENTS (fused),
      &err);
  ck_assert (net != NULL);
  randomise_params (net, 9);
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 1);
  float x[64] = { 0 }, dout[4] = { 1, 1, 1, 1 }, extra[256] = { 0 };
  g_autofree float *grads = g_new0 (float, cbir_net_n_params (net));
  cbir_net_forward (net, st, x, 1, 5, TRUE);
  ck_assert (cbir_net_state_output (st, 4) != NULL);
  /* conv fused with its ReLU and pool, the ReLU, the flatten, the last */
  const guint refused[] = { 0, 1, 3, 5 };
  for (guint i = 0; i < G_N_ELEMENTS (refused); i++) {
    g_test_expect_message ("cbir", G_LOG_LEVEL_CRITICAL, "*cbir_net_keeps_output*");
    ck_assert (cbir_net_state_output (st, refused[i]) == NULL);
    g_test_assert_expected_messages ();
  }
  g_test_expect_message ("cbir", G_LOG_LEVEL_CRITICAL, "*cbir_net_keeps_output*");
  cbir_net_backward_extra (net, st, dout, 0, extra, grads);
  g_test_assert_expected_messages ();
}
END_TEST

/* ------------------------------------------------------------ shapes */

START_TEST (test_shapes_presets)
{
  g_autoptr (GError) err = NULL;
  CbirShape in = { 1, 28, 28 };
  CbirLayerSpec sicara[] = {
    conv (16, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_MAXPOOL2),
    conv (8, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_MAXPOOL2),
    conv (8, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    pool_same (),               /* 7 -> 4, as Keras padding="same" */
    conv (8, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_UPSAMPLE2),
    conv (8, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_UPSAMPLE2),
    conv (16, 3, 1, FALSE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_UPSAMPLE2),
    conv (1, 3, 1, TRUE), simple (CBIR_LAYER_SIGMOID),
  };
  g_autoptr (CbirNet) net = cbir_net_new (in, sicara, G_N_ELEMENTS (sicara),
      &err);
  CbirShape s;

  ck_assert_msg (net != NULL, "%s", err ? err->message : "");
  s = cbir_net_output_shape (net, 8);
  ck_assert_int_eq (s.c, 8);
  ck_assert_int_eq (s.h, 4);
  ck_assert_int_eq (s.w, 4);
  s = cbir_net_output_shape (net, 15);   /* valid conv 16 -> 14 */
  ck_assert_int_eq (s.c, 16);
  ck_assert_int_eq (s.h, 14);
  s = cbir_net_output_shape (net, 19);
  ck_assert_int_eq (s.c, 1);
  ck_assert_int_eq (s.h, 28);
  ck_assert_int_eq (s.w, 28);
  ck_assert_uint_eq (cbir_net_n_layers (net), G_N_ELEMENTS (sicara));
  ck_assert_int_eq (cbir_net_layer (net, 15)->same, FALSE);
  ck_assert_int_eq (cbir_net_input_shape (net).h, 28);
  /* parameters: 16*9+16, 8*16*9+8, 8*8*9+8, 8*8*9+8, 8*8*9+8,
   * 16*8*9+16, 1*16*9+1 */
  ck_assert_uint_eq (cbir_net_n_params (net),
      160 + 1160 + 584 + 584 + 584 + 1168 + 145);
  ck_assert_uint_eq (cbir_net_n_tensors (net), 14);
}
END_TEST

START_TEST (test_shapes_kinds)
{
  g_autoptr (GError) err = NULL;
  CbirShape in = { 3, 7, 5 };
  CbirLayerSpec l[] = {
    conv (4, 3, 2, TRUE),       /* 4x4x3 (ceil) */
    conv (4, 2, 2, FALSE),      /* 4x2x1 */
    convt (6, 3, 2, FALSE),     /* (2-1)*2+3 = 5, (1-1)*2+3 = 3 */
    convt (2, 3, 2, TRUE),      /* 10x6 */
    convt (2, 2, 2, FALSE),     /* 20x12 */
    simple (CBIR_LAYER_MAXPOOL2), /* 10x6 */
    bn (1e-3f, 0.01f),
    simple (CBIR_LAYER_FLATTEN),  /* 120 */
    dense (7),
    reshape (7, 1, 1),
  };
  int expect[][3] = { {4, 4, 3}, {4, 2, 1}, {6, 5, 3}, {2, 10, 6},
  {2, 20, 12}, {2, 10, 6}, {2, 10, 6}, {120, 1, 1}, {7, 1, 1}, {7, 1, 1}
  };
  g_autoptr (CbirNet) net = cbir_net_new (in, l, G_N_ELEMENTS (l), &err);
  const CbirNetTensor *t;

  ck_assert_msg (net != NULL, "%s", err ? err->message : "");
  for (guint i = 0; i < G_N_ELEMENTS (l); i++) {
    CbirShape s = cbir_net_output_shape (net, i);
    ck_assert_msg (s.c == expect[i][0] && s.h == expect[i][1]
        && s.w == expect[i][2], "layer %u: %dx%dx%d", i, s.c, s.h, s.w);
  }
  /* PyTorch layouts and names */
  t = cbir_net_find_tensor (net, "layers.0.weight");
  ck_assert_ptr_nonnull (t);
  ck_assert_uint_eq (t->ndim, 4);
  ck_assert_int_eq (t->shape[0], 4);  /* conv: [out, in, k, k] */
  ck_assert_int_eq (t->shape[1], 3);
  ck_assert_int_eq (t->shape[2], 3);
  t = cbir_net_find_tensor (net, "layers.2.weight");
  ck_assert_int_eq (t->shape[0], 4);  /* convT: [in, out, k, k] */
  ck_assert_int_eq (t->shape[1], 6);
  t = cbir_net_find_tensor (net, "layers.8.weight");
  ck_assert_uint_eq (t->ndim, 2);
  ck_assert_int_eq (t->shape[0], 7);  /* dense: [out, in] */
  ck_assert_int_eq (t->shape[1], 120);
  t = cbir_net_find_tensor (net, "layers.6.running_var");
  ck_assert_ptr_nonnull (t);
  ck_assert (!t->trainable);
  ck_assert (cbir_net_find_tensor (net, "layers.6.weight")->trainable);
  ck_assert_ptr_null (cbir_net_find_tensor (net, "layers.7.weight"));
  /* the tensors tile the parameter block in order */
  {
    gsize off = 0;
    for (guint i = 0; i < cbir_net_n_tensors (net); i++) {
      t = cbir_net_tensor (net, i);
      ck_assert_uint_eq (t->offset, off);
      off += t->size;
    }
    ck_assert_uint_eq (off, cbir_net_n_params (net));
  }
}
END_TEST

static void
expect_error (CbirShape in, const CbirLayerSpec *l, guint n,
    const char *needle)
{
  g_autoptr (GError) err = NULL;
  CbirNet *net = cbir_net_new (in, l, n, &err);
  ck_assert_ptr_null (net);
  ck_assert_ptr_nonnull (err);
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  ck_assert_msg (strstr (err->message, needle) != NULL,
      "'%s' does not name '%s'", err->message, needle);
}

START_TEST (test_shape_errors)
{
  CbirShape in = { 1, 4, 4 };
  CbirShape bad = { 0, 4, 4 };
  CbirLayerSpec pools[] = { simple (CBIR_LAYER_MAXPOOL2),
    simple (CBIR_LAYER_MAXPOOL2), simple (CBIR_LAYER_MAXPOOL2)
  };
  CbirLayerSpec valid3[] = { conv (2, 3, 1, FALSE), conv (2, 3, 1, FALSE) };
  CbirLayerSpec k5[] = { simple (CBIR_LAYER_RELU), conv (2, 5, 1, TRUE) };
  CbirLayerSpec s3[] = { conv (2, 3, 3, TRUE) };
  CbirLayerSpec f0[] = { conv (0, 3, 1, TRUE) };
  CbirLayerSpec rs[] = { simple (CBIR_LAYER_FLATTEN), reshape (3, 2, 2) };
  CbirLayerSpec bnm[] = { bn (1e-3f, 1.5f) };
  CbirLayerSpec kind[] = { simple ((CbirLayerKind) 99) };

  expect_error (in, pools, 3, "layer 2 (maxpool2)");
  expect_error (in, valid3, 2, "layer 1 (conv2d)");
  expect_error (in, k5, 2, "layer 1 (conv2d)");
  expect_error (in, s3, 1, "layer 0");
  expect_error (in, f0, 1, "layer 0");
  expect_error (in, rs, 2, "layer 1 (reshape)");
  expect_error (in, bnm, 1, "layer 0 (batchnorm)");
  expect_error (in, kind, 1, "layer 0");
  expect_error (bad, k5, 2, "input shape");
  expect_error (in, k5, 0, "no layers");
}
END_TEST

/* ------------------------------------------------------------ known values */

static const float *
run1 (CbirNet *net, CbirNetState *st, const float *x, guint batch,
    gboolean training)
{
  return cbir_net_forward (net, st, x, batch, cbir_net_n_layers (net) - 1,
      training);
}

START_TEST (test_known_same_padding)
{
  /* Keras "same", k3 s2 on 4x4: total padding 1, all of it at the
   * bottom/right (PyTorch padding=1 would put one row on top). With a
   * one-hot kernel at (ky, kx): out[oy][ox] = x[2oy + ky][2ox + kx]. */
  CbirShape in = { 1, 4, 4 };
  CbirLayerSpec l = conv (1, 3, 2, TRUE);
  g_autoptr (CbirNet) net = cbir_net_new (in, &l, 1, NULL);
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 1);
  float x[16];
  float *w = cbir_net_params (net);
  const float *y;

  for (int i = 0; i < 16; i++)
    x[i] = (float) (i + 1);
  w[0] = 1.0f;                  /* (0, 0) */
  y = run1 (net, st, x, 1, FALSE);
  ck_assert_float_eq (y[0], 1.0f);
  ck_assert_float_eq (y[1], 3.0f);
  ck_assert_float_eq (y[2], 9.0f);
  ck_assert_float_eq (y[3], 11.0f);
  w[0] = 0.0f;
  w[8] = 1.0f;                  /* (2, 2): reads the bottom/right padding */
  w[9] = 0.5f;                  /* bias */
  y = run1 (net, st, x, 1, FALSE);
  ck_assert_float_eq (y[0], 11.5f);
  ck_assert_float_eq (y[1], 0.5f);
  ck_assert_float_eq (y[2], 0.5f);
  ck_assert_float_eq (y[3], 0.5f);

  /* k2 s1 same: pads only the bottom/right; k3 s1 same: one each side */
  {
    CbirLayerSpec l2 = conv (1, 2, 1, TRUE);
    g_autoptr (CbirNet) n2 = cbir_net_new (in, &l2, 1, NULL);
    g_autoptr (CbirNetState) s2 = cbir_net_state_new (n2, 1);
    float *w2 = cbir_net_params (n2);
    w2[3] = 1.0f;               /* (1, 1) */
    y = run1 (n2, s2, x, 1, FALSE);
    ck_assert_float_eq (y[0], 6.0f);  /* x[1][1] */
    ck_assert_float_eq (y[3], 0.0f);  /* x[0][4]: pad */
    ck_assert_float_eq (y[10], 16.0f);
  }
  {
    CbirLayerSpec l3 = conv (1, 3, 1, TRUE);
    g_autoptr (CbirNet) n3 = cbir_net_new (in, &l3, 1, NULL);
    g_autoptr (CbirNetState) s3 = cbir_net_state_new (n3, 1);
    float *w3 = cbir_net_params (n3);
    w3[0] = 1.0f;               /* (0, 0): out[y][x] = x[y-1][x-1] */
    y = run1 (n3, s3, x, 1, FALSE);
    ck_assert_float_eq (y[0], 0.0f);
    ck_assert_float_eq (y[5], 1.0f);
    ck_assert_float_eq (y[15], 11.0f);
  }
}
END_TEST

START_TEST (test_known_conv_layout)
{
  /* weight [out, in, k, k]: out channel 1 copies input channel 1 shifted
   * by the kernel centre; out channel 0 sums both input channels x2 */
  CbirShape in = { 2, 3, 3 };
  CbirLayerSpec l = conv (2, 3, 1, TRUE);
  g_autoptr (CbirNet) net = cbir_net_new (in, &l, 1, NULL);
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 2);
  float *w = cbir_net_params (net);
  float x[36];
  const float *y;

  for (int i = 0; i < 36; i++)
    x[i] = (float) i;
  w[(0 * 2 + 0) * 9 + 4] = 2.0f;
  w[(0 * 2 + 1) * 9 + 4] = 2.0f;
  w[(1 * 2 + 1) * 9 + 4] = 1.0f;
  w[36 + 1] = 100.0f;           /* bias of out channel 1 */
  y = run1 (net, st, x, 2, FALSE);
  for (int b = 0; b < 2; b++)
    for (int i = 0; i < 9; i++) {
      ck_assert_float_eq (y[b * 18 + i],
          2.0f * (x[b * 18 + i] + x[b * 18 + 9 + i]));
      ck_assert_float_eq (y[b * 18 + 9 + i], x[b * 18 + 9 + i] + 100.0f);
    }
}
END_TEST

START_TEST (test_known_maxpool)
{
  /* ties: the first maximum in row-major order gets the gradient; odd
   * sizes floor (the last row/column is dropped) */
  CbirShape in = { 1, 3, 5 };
  CbirLayerSpec l = simple (CBIR_LAYER_MAXPOOL2);
  g_autoptr (CbirNet) net = cbir_net_new (in, &l, 1, NULL);
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 1);
  float x[15] = {
    2, 2, 1, 3, 9,
    2, 2, 3, 0, 9,
    9, 9, 9, 9, 9
  };
  float dy[2] = { 10, 20 }, grads[1] = { 0 };
  const float *y, *dx;

  ck_assert_int_eq (cbir_net_output_shape (net, 0).h, 1);
  ck_assert_int_eq (cbir_net_output_shape (net, 0).w, 2);
  y = run1 (net, st, x, 1, TRUE);
  ck_assert_float_eq (y[0], 2.0f);
  ck_assert_float_eq (y[1], 3.0f);
  cbir_net_backward (net, st, dy, grads);
  dx = cbir_net_input_grad (st);
  for (int i = 0; i < 15; i++) {
    float e = i == 0 ? 10.0f : i == 3 ? 20.0f : 0.0f;
    ck_assert_msg (dx[i] == e, "dx[%d] = %g, expected %g", i, dx[i], e);
  }
  /* "same" pooling: 3x5 -> 2x3, edge windows clipped */
  {
    CbirLayerSpec ls = pool_same ();
    g_autoptr (CbirNet) n2 = cbir_net_new (in, &ls, 1, NULL);
    g_autoptr (CbirNetState) s2 = cbir_net_state_new (n2, 1);
    float e[6] = { 2, 3, 9, 9, 9, 9 };
    float d6[6] = { 1, 2, 3, 4, 5, 6 };
    ck_assert_int_eq (cbir_net_output_shape (n2, 0).h, 2);
    ck_assert_int_eq (cbir_net_output_shape (n2, 0).w, 3);
    y = run1 (n2, s2, x, 1, TRUE);
    for (int i = 0; i < 6; i++)
      ck_assert_float_eq (y[i], e[i]);
    cbir_net_backward (n2, s2, d6, grads);
    dx = cbir_net_input_grad (s2);
    /* 9s: (0,4) first in its window; bottom row windows start at 10, 12,
     * 14 */
    ck_assert_float_eq (dx[4], 3.0f);
    ck_assert_float_eq (dx[9], 0.0f);
    ck_assert_float_eq (dx[10], 4.0f);
    ck_assert_float_eq (dx[11], 0.0f);
    ck_assert_float_eq (dx[12], 5.0f);
    ck_assert_float_eq (dx[14], 6.0f);
  }
}
END_TEST

START_TEST (test_known_upsample)
{
  CbirShape in = { 2, 2, 2 };
  CbirLayerSpec l = simple (CBIR_LAYER_UPSAMPLE2);
  g_autoptr (CbirNet) net = cbir_net_new (in, &l, 1, NULL);
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 1);
  float x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
  float e[32] = {
    1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4,
    5, 5, 6, 6, 5, 5, 6, 6, 7, 7, 8, 8, 7, 7, 8, 8
  };
  float dy[32], grads[1] = { 0 };
  const float *y, *dx;

  y = run1 (net, st, x, 1, TRUE);
  for (int i = 0; i < 32; i++)
    ck_assert_float_eq (y[i], e[i]);
  for (int i = 0; i < 32; i++)
    dy[i] = (float) i;
  cbir_net_backward (net, st, dy, grads);
  dx = cbir_net_input_grad (st);
  ck_assert_float_eq (dx[0], 0 + 1 + 4 + 5);
  ck_assert_float_eq (dx[3], 10 + 11 + 14 + 15);
  ck_assert_float_eq (dx[4], 16 + 17 + 20 + 21);
}
END_TEST

START_TEST (test_known_convt)
{
  /* convT k3 s2 same on 2x2 -> 4x4: out[2i + ky][2j + kx] += x[i][j] *
   * w[ky][kx] (Keras: no top/left shift; the 5th row/column of the full
   * transposed conv is cropped). Valid: 5x5, nothing cropped. */
  CbirShape in = { 1, 2, 2 };
  float x[4] = { 1, 0, 0, 0 }, x2[4] = { 0, 0, 0, 1 };
  for (int same = 1; same >= 0; same--) {
    CbirLayerSpec l = convt (1, 3, 2, same);
    g_autoptr (CbirNet) net = cbir_net_new (in, &l, 1, NULL);
    g_autoptr (CbirNetState) st = cbir_net_state_new (net, 1);
    float *w = cbir_net_params (net);
    int o = same ? 4 : 5;
    const float *y;

    ck_assert_int_eq (cbir_net_output_shape (net, 0).h, o);
    for (int i = 0; i < 9; i++)
      w[i] = (float) (i + 1);
    y = run1 (net, st, x, 1, FALSE);
    for (int r = 0; r < o; r++)
      for (int c = 0; c < o; c++) {
        float e = (r < 3 && c < 3) ? (float) (r * 3 + c + 1) : 0.0f;
        ck_assert_float_eq (y[r * o + c], e);
      }
    y = run1 (net, st, x2, 1, FALSE);
    for (int r = 0; r < o; r++)
      for (int c = 0; c < o; c++) {
        float e = (r >= 2 && c >= 2) ? (float) ((r - 2) * 3 + (c - 2) + 1)
            : 0.0f;
        ck_assert_float_eq (y[r * o + c], e);
      }
  }
  /* k2 s2: each input pixel paints its own 2x2 block; weight [in, out] */
  {
    CbirShape in2 = { 2, 1, 2 };
    CbirLayerSpec l = convt (1, 2, 2, TRUE);
    g_autoptr (CbirNet) net = cbir_net_new (in2, &l, 1, NULL);
    g_autoptr (CbirNetState) st = cbir_net_state_new (net, 1);
    float *w = cbir_net_params (net);
    /* input channel 0 = [1 2], channel 1 = [10 20] (1x2 each) */
    float xx[4] = { 1, 2, 10, 20 };
    /* w[in 0] = [1 2; 3 4], w[in 1] = [-1 0; 0 1]: output 2x4 */
    float e[8] = {
      1 - 10, 2 + 0, 2 - 20, 4 + 0,
      3 + 0, 4 + 10, 6 + 0, 8 + 20
    };
    const float *y;
    float wv[8] = { 1, 2, 3, 4, -1, 0, 0, 1 };
    memcpy (w, wv, sizeof (wv));
    y = run1 (net, st, xx, 1, FALSE);
    ck_assert_int_eq (cbir_net_output_shape (net, 0).h, 2);
    ck_assert_int_eq (cbir_net_output_shape (net, 0).w, 4);
    for (int i = 0; i < 8; i++)
      ck_assert_msg (y[i] == e[i], "y[%d] = %g, expected %g", i, y[i], e[i]);
  }
}
END_TEST

START_TEST (test_known_flatten_dense)
{
  /* flatten is NCHW order; dense weight is [out, in]: unit u reads
   * w[u * in + (c * H + y) * W + x] */
  CbirShape in = { 2, 2, 3 };
  CbirLayerSpec l[2] = { simple (CBIR_LAYER_FLATTEN), dense (2) };
  g_autoptr (CbirNet) net = cbir_net_new (in, l, 2, NULL);
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 1);
  float *w = cbir_net_params (net);
  float x[12];
  const float *y;

  for (int i = 0; i < 12; i++)
    x[i] = (float) (i * i);
  w[0 * 12 + (1 * 2 + 0) * 3 + 2] = 1.0f;   /* c1 y0 x2 = index 8 */
  w[1 * 12 + (0 * 2 + 1) * 3 + 1] = 2.0f;   /* c0 y1 x1 = index 4 */
  w[24] = 0.25f;
  y = cbir_net_forward (net, st, x, 1, 0, FALSE);
  for (int i = 0; i < 12; i++)
    ck_assert_float_eq (y[i], x[i]);
  y = run1 (net, st, x, 1, FALSE);
  ck_assert_float_eq (y[0], 64.0f + 0.25f);
  ck_assert_float_eq (y[1], 32.0f);
}
END_TEST

START_TEST (test_known_batchnorm)
{
  /* batch of 2, one channel of 1x2: values 1 2 | 3 4: mean 2.5, biased
   * var 1.25 (normalising), unbiased var 5/3 (running update) */
  CbirShape in = { 1, 1, 2 };
  CbirLayerSpec l = bn (0.0f, 0.1f);
  g_autoptr (CbirNet) net = cbir_net_new (in, &l, 1, NULL);
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 2);
  float x[4] = { 1, 2, 3, 4 };
  float *p;
  const float *y;

  cbir_net_init_params (net, 1);
  p = cbir_net_params (net);
  ck_assert_float_eq (p[0], 1.0f);      /* gamma */
  ck_assert_float_eq (p[1], 0.0f);      /* beta */
  ck_assert_float_eq (p[2], 0.0f);      /* running mean */
  ck_assert_float_eq (p[3], 1.0f);      /* running var */
  p[0] = 2.0f;
  p[1] = 1.0f;
  y = run1 (net, st, x, 2, TRUE);
  for (int i = 0; i < 4; i++)
    ck_assert_float_eq_tol (y[i], 2.0f * (x[i] - 2.5f) / sqrtf (1.25f) + 1.0f,
        1e-5f);
  ck_assert_float_eq_tol (p[2], 0.25f, 1e-6f);
  ck_assert_float_eq_tol (p[3], 0.9f + 0.1f * 5.0f / 3.0f, 1e-6f);
  /* eval mode uses the running statistics and does not change them */
  y = run1 (net, st, x, 2, FALSE);
  for (int i = 0; i < 4; i++)
    ck_assert_float_eq_tol (y[i],
        2.0f * (x[i] - p[2]) / sqrtf (p[3]) + 1.0f, 1e-5f);
  ck_assert_float_eq_tol (p[2], 0.25f, 1e-6f);
}
END_TEST

START_TEST (test_init_params)
{
  CbirShape in = { 1, 28, 28 };
  CbirLayerSpec l[3] = { conv (32, 3, 1, TRUE), bn (1e-3f, 0.01f), dense (5) };
  g_autoptr (CbirNet) a = cbir_net_new (in, l, 3, NULL);
  g_autoptr (CbirNet) b = cbir_net_new (in, l, 3, NULL);
  gsize n = cbir_net_n_params (a);
  const CbirNetTensor *w = cbir_net_find_tensor (a, "layers.0.weight");
  double limit = sqrt (6.0 / (9 + 9 * 32)), sum = 0;
  float mx = 0;

  cbir_net_init_params (a, 42);
  cbir_net_init_params (b, 42);
  ck_assert (memcmp (cbir_net_params (a), cbir_net_params (b),
          n * sizeof (float)) == 0);
  cbir_net_init_params (b, 43);
  ck_assert (memcmp (cbir_net_params (a), cbir_net_params (b),
          n * sizeof (float)) != 0);
  for (gsize i = 0; i < w->size; i++) {
    float v = cbir_net_params (a)[w->offset + i];
    ck_assert (fabs (v) <= limit);
    mx = MAX (mx, fabsf (v));
    sum += v;
  }
  ck_assert (mx > 0.9 * limit);         /* spans the Glorot range */
  ck_assert (fabs (sum / w->size) < 0.1 * limit);
  ck_assert_float_eq (cbir_net_params (a)[cbir_net_find_tensor (a,
              "layers.0.bias")->offset], 0.0f);
  ck_assert_float_eq (cbir_net_params (a)[cbir_net_find_tensor (a,
              "layers.1.running_var")->offset + 3], 1.0f);
}
END_TEST

/* ------------------------------------------------------------ determinism */

static CbirNet *
pyimagesearch_like (void)
{
  CbirShape in = { 1, 12, 12 };
  CbirLayerSpec l[] = {
    conv (8, 3, 2, TRUE), leaky (0.2f), bn (1e-3f, 0.01f),
    conv (8, 3, 2, TRUE), leaky (0.2f), bn (1e-3f, 0.01f),
    simple (CBIR_LAYER_FLATTEN), dense (6), dense (8 * 3 * 3),
    reshape (8, 3, 3),
    convt (8, 3, 2, TRUE), leaky (0.2f), bn (1e-3f, 0.01f),
    convt (4, 3, 2, TRUE), simple (CBIR_LAYER_RELU),
    simple (CBIR_LAYER_MAXPOOL2), simple (CBIR_LAYER_UPSAMPLE2),
    conv (1, 3, 1, TRUE), simple (CBIR_LAYER_SIGMOID),
  };
  CbirNet *net = cbir_net_new (in, l, G_N_ELEMENTS (l), NULL);
  randomise_params (net, 9);
  return net;
}

/* one training step's output, gradients and input gradient */
static void
run_step (guint threads, guint batch, float **out, float **grads,
    float **dx, float **params)
{
  g_autoptr (CbirNet) net = pyimagesearch_like ();
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, batch);
  gsize nin = 144 * batch, np = cbir_net_n_params (net);
  g_autofree float *x = g_new (float, nin);
  g_autofree float *r = g_new (float, nin);
  guint64 s = 5;
  const float *y;

  cbir_net_set_threads (net, threads);
  for (gsize i = 0; i < nin; i++) {
    x[i] = rnd_uniform (&s, 0.0f, 1.0f);
    r[i] = rnd_uniform (&s, -1.0f, 1.0f);
  }
  *grads = g_new0 (float, np);
  /* two steps: the second sees updated running statistics */
  for (int it = 0; it < 2; it++) {
    y = cbir_net_forward (net, st, x, batch, cbir_net_n_layers (net) - 1,
        TRUE);
    cbir_net_backward (net, st, r, *grads);
  }
  *out = g_memdup2 (y, nin * sizeof (float));
  *dx = g_memdup2 (cbir_net_input_grad (st), nin * sizeof (float));
  *params = g_memdup2 (cbir_net_params (net), np * sizeof (float));
}

START_TEST (test_determinism)
{
  guint batch = 13;
  gsize nin = 144 * batch, np;
  g_autoptr (CbirNet) probe = pyimagesearch_like ();
  float *o[4], *g[4], *d[4], *p[4];
  guint threads[4] = { 1, 1, 2, 2 };

  np = cbir_net_n_params (probe);
  for (int i = 0; i < 4; i++)
    run_step (threads[i], batch, &o[i], &g[i], &d[i], &p[i]);
  /* bit-identical for the same thread count */
  for (int i = 0; i < 4; i += 2) {
    ck_assert (memcmp (o[i], o[i + 1], nin * sizeof (float)) == 0);
    ck_assert (memcmp (g[i], g[i + 1], np * sizeof (float)) == 0);
    ck_assert (memcmp (d[i], d[i + 1], nin * sizeof (float)) == 0);
    ck_assert (memcmp (p[i], p[i + 1], np * sizeof (float)) == 0);
  }
  /* BN statistics are reduced per image in image order: forward output,
   * running stats and input gradients do not depend on the thread count;
   * parameter gradients (per-thread sums) agree to rounding */
  ck_assert (memcmp (o[0], o[2], nin * sizeof (float)) == 0);
  ck_assert (memcmp (p[0], p[2], np * sizeof (float)) == 0);
  for (gsize i = 0; i < np; i++)
    ck_assert_msg (fabsf (g[0][i] - g[2][i]) <= 1e-4f * (1 + fabsf (g[0][i])),
        "grad %" G_GSIZE_FORMAT ": %g vs %g", i, g[0][i], g[2][i]);
  for (int i = 0; i < 4; i++) {
    g_free (o[i]);
    g_free (g[i]);
    g_free (d[i]);
    g_free (p[i]);
  }
}
END_TEST

START_TEST (test_batch_consistency)
{
  /* an image's eval output does not depend on the batch it is in, the
   * thread count, or a partial forward (encoder only) */
  g_autoptr (CbirNet) net = pyimagesearch_like ();
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 7);
  g_autoptr (CbirNetState) st1 = cbir_net_state_new (net, 1);
  guint last = cbir_net_n_layers (net) - 1;
  float x[144 * 7];
  g_autofree float *all = NULL;
  guint64 s = 77;

  for (int i = 0; i < 144 * 7; i++)
    x[i] = rnd_uniform (&s, 0.0f, 1.0f);
  cbir_net_set_threads (net, 2);
  all = g_memdup2 (cbir_net_forward (net, st, x, 7, last, FALSE),
      144 * 7 * sizeof (float));
  cbir_net_set_threads (net, 1);
  for (int b = 0; b < 7; b++) {
    const float *y = cbir_net_forward (net, st1, x + 144 * b, 1, last, FALSE);
    ck_assert (memcmp (y, all + 144 * b, 144 * sizeof (float)) == 0);
  }
  {
    const float *code = cbir_net_forward (net, st, x, 7, 7, FALSE);
    g_autofree float *c = g_memdup2 (code, 6 * 7 * sizeof (float));
    cbir_net_forward (net, st, x, 7, last, FALSE);
    code = cbir_net_forward (net, st1, x + 144 * 3, 1, 7, FALSE);
    ck_assert (memcmp (code, c + 6 * 3, 6 * sizeof (float)) == 0);
  }
}
END_TEST

START_TEST (test_grads_accumulate)
{
  /* backward adds into the caller's block */
  CbirShape in = { 1, 4, 4 };
  CbirLayerSpec l = conv (2, 3, 1, TRUE);
  g_autoptr (CbirNet) net = cbir_net_new (in, &l, 1, NULL);
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, 1);
  gsize np = cbir_net_n_params (net);
  float x[16], r[32];
  g_autofree float *g1 = g_new0 (float, np);
  g_autofree float *g2 = g_new0 (float, np);

  for (int i = 0; i < 16; i++)
    x[i] = (float) i / 16.0f;
  for (int i = 0; i < 32; i++)
    r[i] = 1.0f;
  cbir_net_init_params (net, 3);
  run1 (net, st, x, 1, TRUE);
  cbir_net_backward (net, st, r, g1);
  cbir_net_backward (net, st, r, g2);
  cbir_net_backward (net, st, r, g2);
  for (gsize i = 0; i < np; i++)
    ck_assert_float_eq_tol (g2[i], 2.0f * g1[i], 1e-5f * (1 + fabsf (g1[i])));
  /* bias gradient = number of output pixels per channel */
  ck_assert_float_eq (g1[18], 16.0f);
}
END_TEST

/* Naive reference for a stride-1 conv (optionally + ReLU): forward, and
 * backward of sum(out * r), in double; Keras "same" padding. */
static void
ref_conv_s1 (const float *x, const float *w, const float *bias, int batch,
    int cin, int h, int wd, int cout, int k, gboolean same, gboolean relu,
    const float *r, double *y, double *dw, double *db, double *dx)
{
  int ho = same ? h : h - k + 1, wo = same ? wd : wd - k + 1;
  int pt = same ? (k - 1) / 2 : 0, pl = same ? (k - 1) / 2 : 0;
  gsize ny = (gsize) cout * ho * wo, nx = (gsize) cin * h * wd;

  memset (dw, 0, (gsize) cout * cin * k * k * sizeof (double));
  memset (db, 0, cout * sizeof (double));
  memset (dx, 0, nx * batch * sizeof (double));
  for (int b = 0; b < batch; b++)
    for (int co = 0; co < cout; co++)
      for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++) {
          double acc = bias[co], g;
          gsize yi = b * ny + ((gsize) co * ho + oy) * wo + ox;
          for (int ci = 0; ci < cin; ci++)
            for (int ky = 0; ky < k; ky++)
              for (int kx = 0; kx < k; kx++) {
                int iy = oy + ky - pt, ix = ox + kx - pl;
                if (iy >= 0 && iy < h && ix >= 0 && ix < wd)
                  acc += (double) w[((co * cin + ci) * k + ky) * k + kx]
                      * x[b * nx + ((gsize) ci * h + iy) * wd + ix];
              }
          if (relu && acc < 0)
            acc = 0;
          y[yi] = acc;
          g = relu && acc <= 0 ? 0.0 : r[yi];
          db[co] += g;
          for (int ci = 0; ci < cin; ci++)
            for (int ky = 0; ky < k; ky++)
              for (int kx = 0; kx < k; kx++) {
                int iy = oy + ky - pt, ix = ox + kx - pl;
                gsize xi = b * nx + ((gsize) ci * h + iy) * wd + ix;
                gsize wi = ((co * cin + ci) * k + ky) * k + kx;
                if (iy >= 0 && iy < h && ix >= 0 && ix < wd) {
                  dw[wi] += g * x[xi];
                  dx[xi] += g * w[wi];
                }
              }
        }
}

static gboolean
near (double a, double b)
{
  return fabs (a - b) <= 1e-4 * (1 + fabs (b));
}

START_TEST (test_known_conv_s1)
{
  /* the direct stride-1 kernels against a naive convolution, on shapes
   * with channel counts that are not multiples of the 4-channel blocks and
   * rows longer than one register block; with and without a ReLU after */
  static const int cfg[][7] = {
    /* cin, cout, h, w, k, same, relu */
    {3, 5, 13, 11, 3, 1, 0},
    {6, 9, 20, 19, 3, 1, 1},
    {5, 1, 9, 30, 2, 1, 0},
    {1, 7, 28, 28, 3, 0, 1},
    {2, 3, 7, 7, 3, 1, 1},
    /* weight gradient vectorised over input channels (full and partial
     * vectors, several row blocks) or over output channels */
    {32, 32, 14, 14, 3, 1, 1},
    {20, 3, 9, 10, 3, 1, 0},
    {17, 7, 6, 7, 2, 1, 1},
    {32, 1, 12, 12, 3, 1, 0},
    {2, 18, 8, 9, 2, 1, 1},
    {1, 32, 10, 11, 3, 1, 1},
  };
  for (guint c = 0; c < G_N_ELEMENTS (cfg); c++) {
    int cin = cfg[c][0], cout = cfg[c][1], h = cfg[c][2], wd = cfg[c][3];
    int k = cfg[c][4], batch = 3;
    gboolean same = cfg[c][5], relu = cfg[c][6];
    CbirShape in = { cin, h, wd };
    CbirLayerSpec l[2] = { conv (cout, k, 1, same), simple (CBIR_LAYER_RELU) };
    g_autoptr (CbirNet) net = cbir_net_new (in, l, relu ? 2 : 1, NULL);
    g_autoptr (CbirNetState) st = cbir_net_state_new (net, batch);
    guint last = relu ? 1 : 0;
    CbirShape os = cbir_net_output_shape (net, last);
    gsize nx = (gsize) cin * h * wd * batch, ny = shape_size (os) * batch;
    gsize np = cbir_net_n_params (net), nw = (gsize) cout * cin * k * k;
    g_autofree float *x = g_new (float, nx), *r = g_new (float, ny);
    g_autofree float *grads = g_new0 (float, np);
    g_autofree double *y = g_new (double, ny), *dw = g_new (double, nw);
    g_autofree double *db = g_new (double, cout), *dx = g_new (double, nx);
    guint64 s = 900 + c;
    const float *out;
    float *p;

    cbir_net_set_threads (net, 1 + c % 2);
    randomise_params (net, 31 + c);
    for (gsize i = 0; i < nx; i++)
      x[i] = rnd_uniform (&s, -1.0f, 1.0f);
    for (gsize i = 0; i < ny; i++)
      r[i] = rnd_uniform (&s, -1.0f, 1.0f);
    for (int pass = 0; pass < 2; pass++) {
      p = cbir_net_params (net);
      ref_conv_s1 (x, p, p + nw, batch, cin, h, wd, cout, k, same, relu, r,
          y, dw, db, dx);
      /* eval (packed weights cached), then training + backward */
      out = cbir_net_forward (net, st, x, batch, last, FALSE);
      for (gsize i = 0; i < ny; i++)
        ck_assert_msg (near (out[i], y[i]), "cfg %u eval y[%" G_GSIZE_FORMAT
            "] %g vs %g", c, i, out[i], y[i]);
      out = cbir_net_forward (net, st, x, batch, last, TRUE);
      for (gsize i = 0; i < ny; i++)
        ck_assert_msg (near (out[i], y[i]), "cfg %u y[%" G_GSIZE_FORMAT
            "] %g vs %g", c, i, out[i], y[i]);
      memset (grads, 0, np * sizeof (float));
      cbir_net_backward (net, st, r, grads);
      for (gsize i = 0; i < nw; i++)
        ck_assert_msg (near (grads[i], dw[i]), "cfg %u dw[%" G_GSIZE_FORMAT
            "] %g vs %g", c, i, grads[i], dw[i]);
      for (int i = 0; i < cout; i++)
        ck_assert_msg (near (grads[nw + i], db[i]), "cfg %u db", c);
      for (gsize i = 0; i < nx; i++)
        ck_assert_msg (near (cbir_net_input_grad (st)[i], dx[i]),
            "cfg %u dx[%" G_GSIZE_FORMAT "] %g vs %g", c, i,
            cbir_net_input_grad (st)[i], dx[i]);
      /* new weights must be seen by the next eval forward */
      p = cbir_net_params (net);
      for (gsize i = 0; i < nw; i++)
        p[i] = -0.5f * p[i] + 0.01f;
      out = cbir_net_forward (net, st, x, batch, last, FALSE);
      (void) out;
    }
  }
  {
    /* inference fuses conv + ReLU + pool (valid and same pooling): the
     * same values as the training-mode path, which stores every layer */
    CbirShape in = { 2, 9, 37 };    /* rows of more than 16 windows */
    CbirLayerSpec l[7] = { conv (5, 3, 1, TRUE), simple (CBIR_LAYER_RELU),
      pool_same (), conv (6, 2, 1, TRUE), simple (CBIR_LAYER_RELU),
      simple (CBIR_LAYER_MAXPOOL2), simple (CBIR_LAYER_FLATTEN)
    };
    g_autoptr (CbirNet) net = cbir_net_new (in, l, 7, NULL);
    g_autoptr (CbirNetState) st = cbir_net_state_new (net, 3);
    float x[2 * 9 * 37 * 3];
    guint64 s = 4242;
    for (guint i = 0; i < G_N_ELEMENTS (x); i++)
      x[i] = rnd_uniform (&s, -1.0f, 1.0f);
    randomise_params (net, 5);
    for (guint last = 0; last < 7; last++) {
      gsize n = shape_size (cbir_net_output_shape (net, last)) * 3;
      g_autofree float *ev = g_memdup2 (cbir_net_forward (net, st, x, 3,
              last, FALSE), n * sizeof (float));
      const float *tr = cbir_net_forward (net, st, x, 3, last, TRUE);
      ck_assert_msg (memcmp (ev, tr, n * sizeof (float)) == 0, "last %u",
          last);
    }
  }
}
END_TEST

static Suite *
nn_suite (void)
{
  Suite *s = suite_create ("nn");
  TCase *tc = tcase_create ("grad");
  tcase_add_test (tc, test_grad_conv);
  tcase_add_test (tc, test_grad_convt);
  tcase_add_test (tc, test_grad_dense);
  tcase_add_test (tc, test_grad_activations);
  tcase_add_test (tc, test_grad_batchnorm);
  tcase_add_test (tc, test_grad_pool_upsample);
  tcase_add_test (tc, test_grad_views);
  tcase_add_test (tc, test_grad_small_nets);
  tcase_add_test (tc, test_grad_inner_loss);
  suite_add_tcase (s, tc);

  tc = tcase_create ("shapes");
  tcase_add_test (tc, test_shapes_presets);
  tcase_add_test (tc, test_shapes_kinds);
  tcase_add_test (tc, test_shape_errors);
  tcase_add_test (tc, test_init_params);
  suite_add_tcase (s, tc);

  tc = tcase_create ("known");
  tcase_add_test (tc, test_known_same_padding);
  tcase_add_test (tc, test_known_conv_layout);
  tcase_add_test (tc, test_known_maxpool);
  tcase_add_test (tc, test_known_upsample);
  tcase_add_test (tc, test_known_convt);
  tcase_add_test (tc, test_known_flatten_dense);
  tcase_add_test (tc, test_known_batchnorm);
  tcase_add_test (tc, test_known_conv_s1);
  suite_add_tcase (s, tc);

  tc = tcase_create ("determinism");
  tcase_add_test (tc, test_determinism);
  tcase_add_test (tc, test_batch_consistency);
  tcase_add_test (tc, test_grads_accumulate);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (nn_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

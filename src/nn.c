/* The neural-network core: layers, forward/backward, worker pool.
 *
 * Execution model.  A batch is split into contiguous chunks of images, one
 * chunk per worker thread.  Each worker runs its images through a whole
 * run of layers image by image (so one image's activations stay in cache
 * from layer to layer); the only points where the workers meet are
 * batch-norm layers in training mode (batch statistics), where per-image
 * partial sums (double) are reduced in image order by one thread, so BN
 * statistics do not depend on the thread count.  Parameter gradients are
 * accumulated per thread and added to the caller's block in thread order
 * at the end of backward: bit-identical for a given thread count.
 *
 * The workers are a persistent pthread pool owned by the net (the caller's
 * thread is worker 0); a batch with a single image runs inline on the
 * caller's thread with no dispatch at all. */
#include "config.h"

#include <cbir/nn.h>

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <cblas.h>

#include "nn-kernels.h"

/* ---------------------------------------------------------------- pool */

typedef void (*PoolFunc) (void *ctx, guint tid, guint n);

typedef struct {
  guint n;                      /* threads including the caller */
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t cv_start, cv_done;
  guint64 gen;
  guint pending;
  gboolean quit;
  PoolFunc fn;
  void *ctx;
  guint n_active;
  /* barrier among the n_active threads of the current job */
  pthread_mutex_t bmu;
  pthread_cond_t bcv;
  guint bcount;
  guint64 bgen;
} Pool;

typedef struct {
  Pool *pool;
  guint id;
} PoolArg;

static void *
pool_worker (void *data)
{
  PoolArg *arg = data;
  Pool *p = arg->pool;
  guint id = arg->id;
  guint64 seen = 0;

  g_free (arg);
  for (;;) {
    PoolFunc fn;
    void *ctx;
    guint n_active;

    pthread_mutex_lock (&p->mu);
    while (!p->quit && p->gen == seen)
      pthread_cond_wait (&p->cv_start, &p->mu);
    if (p->quit) {
      pthread_mutex_unlock (&p->mu);
      return NULL;
    }
    seen = p->gen;
    fn = p->fn;
    ctx = p->ctx;
    n_active = p->n_active;
    pthread_mutex_unlock (&p->mu);

    if (id < n_active) {
      fn (ctx, id, n_active);
      pthread_mutex_lock (&p->mu);
      if (--p->pending == 0)
        pthread_cond_signal (&p->cv_done);
      pthread_mutex_unlock (&p->mu);
    }
  }
}

static Pool *
pool_new (guint n)
{
  Pool *p = g_new0 (Pool, 1);

  p->n = MAX (n, 1);
  pthread_mutex_init (&p->mu, NULL);
  pthread_cond_init (&p->cv_start, NULL);
  pthread_cond_init (&p->cv_done, NULL);
  pthread_mutex_init (&p->bmu, NULL);
  pthread_cond_init (&p->bcv, NULL);
  p->threads = g_new0 (pthread_t, p->n);
  for (guint i = 1; i < p->n; i++) {
    PoolArg *arg = g_new (PoolArg, 1);
    arg->pool = p;
    arg->id = i;
    if (pthread_create (&p->threads[i], NULL, pool_worker, arg) != 0)
      g_error ("cannot create worker thread");
  }
  return p;
}

static void
pool_free (Pool *p)
{
  if (!p)
    return;
  pthread_mutex_lock (&p->mu);
  p->quit = TRUE;
  pthread_cond_broadcast (&p->cv_start);
  pthread_mutex_unlock (&p->mu);
  for (guint i = 1; i < p->n; i++)
    pthread_join (p->threads[i], NULL);
  pthread_mutex_destroy (&p->mu);
  pthread_cond_destroy (&p->cv_start);
  pthread_cond_destroy (&p->cv_done);
  pthread_mutex_destroy (&p->bmu);
  pthread_cond_destroy (&p->bcv);
  g_free (p->threads);
  g_free (p);
}

/* Runs fn on n_active threads (the caller is thread 0) and waits. */
static void
pool_run (Pool *p, guint n_active, PoolFunc fn, void *ctx)
{
  n_active = CLAMP (n_active, 1, p->n);
  if (n_active == 1) {
    fn (ctx, 0, 1);
    return;
  }
  pthread_mutex_lock (&p->mu);
  p->fn = fn;
  p->ctx = ctx;
  p->n_active = n_active;
  p->pending = n_active - 1;
  p->bcount = 0;
  p->gen++;
  pthread_cond_broadcast (&p->cv_start);
  pthread_mutex_unlock (&p->mu);

  fn (ctx, 0, n_active);

  pthread_mutex_lock (&p->mu);
  while (p->pending > 0)
    pthread_cond_wait (&p->cv_done, &p->mu);
  pthread_mutex_unlock (&p->mu);
}

static void
pool_barrier (Pool *p, guint n)
{
  guint64 gen;

  if (n <= 1)
    return;
  pthread_mutex_lock (&p->bmu);
  gen = p->bgen;
  if (++p->bcount == n) {
    p->bcount = 0;
    p->bgen++;
    pthread_cond_broadcast (&p->bcv);
  } else {
    while (p->bgen == gen)
      pthread_cond_wait (&p->bcv, &p->bmu);
  }
  pthread_mutex_unlock (&p->bmu);
}

/* ---------------------------------------------------------------- net */

typedef struct {
  CbirLayerSpec spec;
  CbirShape in, out;
  gsize in_size, out_size;      /* floats per image */
  /* conv / convT geometry in the "conv view": an image of cc x ch x cw
   * convolved (kernel k, stride s, top/left padding pt/pl) onto a grid of
   * gh x gw.  conv: image = input, grid = output; convT: image = output,
   * grid = input. */
  int k, s, pt, pl;
  int cc, ch, cw, gh, gw;
  gssize w_off, b_off, rm_off, rv_off;  /* -1: none */
  gboolean s1;                  /* conv2d stride 1: direct wide-grid path */
  gboolean fuse_relu;           /* s1 conv followed by a ReLU: applied in
                                 * the conv's epilogue */
  gboolean fused;               /* ReLU applied by the conv before it: its
                                 * output aliases the conv's (the backward
                                 * mask y > 0 equals x > 0) */
} Layer;

struct _CbirNet {
  CbirShape input;
  gsize input_size;
  guint n_layers;
  Layer *layers;
  float *params;
  gsize n_params;
  CbirNetTensor *tensors;
  guint n_tensors;
  guint n_threads;
  Pool *pool;
  gsize max_col;                /* floats of im2col scratch per image */
  gsize max_dwt;                /* floats of s1 weight-gradient scratch */
  gsize max_act;                /* largest activation per image, input included */
  int max_bn_c;
  gsize max_s1[3];              /* stride-1 conv scratch: xp, cbuf/dyz, dxb */
  gint params_version;          /* bumped whenever the parameters may change */
};

const char *
cbir_layer_kind_to_string (CbirLayerKind kind)
{
  switch (kind) {
    case CBIR_LAYER_CONV2D:
      return "conv2d";
    case CBIR_LAYER_CONV_TRANSPOSE2D:
      return "conv_transpose2d";
    case CBIR_LAYER_DENSE:
      return "dense";
    case CBIR_LAYER_RELU:
      return "relu";
    case CBIR_LAYER_LEAKY_RELU:
      return "leaky_relu";
    case CBIR_LAYER_SIGMOID:
      return "sigmoid";
    case CBIR_LAYER_BATCHNORM:
      return "batchnorm";
    case CBIR_LAYER_MAXPOOL2:
      return "maxpool2";
    case CBIR_LAYER_UPSAMPLE2:
      return "upsample2";
    case CBIR_LAYER_FLATTEN:
      return "flatten";
    case CBIR_LAYER_RESHAPE:
      return "reshape";
  }
  return "unknown";
}

static gsize
shape_size (CbirShape s)
{
  return (gsize) s.c * s.h * s.w;
}

static void
add_tensor (GArray *tensors, guint layer, const char *what, gsize offset,
    guint ndim, const gint64 *shape, gboolean trainable)
{
  CbirNetTensor t = { 0 };
  gsize size = 1;

  t.name = g_strdup_printf ("layers.%u.%s", layer, what);
  t.offset = offset;
  t.ndim = ndim;
  for (guint i = 0; i < ndim; i++) {
    t.shape[i] = shape[i];
    size *= (gsize) shape[i];
  }
  t.size = size;
  t.trainable = trainable;
  g_array_append_val (tensors, t);
}

#define MAX_DIM 65536

CbirNet *
cbir_net_new (CbirShape input, const CbirLayerSpec *layers, guint n_layers,
    GError **error)
{
  CbirNet *net = cbir_net_new_layout (input, layers, n_layers, error);

  if (net && !cbir_net_alloc_params (net, error)) {
    cbir_net_free (net);
    return NULL;
  }
  return net;
}

gboolean
cbir_net_alloc_params (CbirNet *net, GError **error)
{
  if (net->params)
    return TRUE;
  net->params = g_try_new0 (float, MAX (net->n_params, 1));
  if (!net->params) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "cannot allocate the %" G_GSIZE_FORMAT " parameters (%.1f MiB) of "
        "the network", net->n_params, net->n_params * 4.0 / (1 << 20));
    return FALSE;
  }
  return TRUE;
}

/* Saturating guint64 arithmetic for the memory budget. */
static guint64
sat_add (guint64 a, guint64 b)
{
  return a > G_MAXUINT64 - b ? G_MAXUINT64 : a + b;
}

static guint64
sat_mul (guint64 a, guint64 b)
{
  return b != 0 && a > G_MAXUINT64 / b ? G_MAXUINT64 : a * b;
}

guint64
cbir_net_memory_bytes (const CbirNet *net, guint batch, guint threads,
    gboolean training)
{
  guint64 f = 4, per_image = 0, per_thread, params = net->n_params;
  guint64 total = sat_mul (params, f);

  batch = MAX (batch, 1);
  threads = MAX (threads, 1);
  for (guint i = 0; i < net->n_layers; i++) {
    const Layer *L = &net->layers[i];
    per_image = sat_add (per_image, L->out_size);       /* act (or argmax) */
    if (L->spec.kind == CBIR_LAYER_MAXPOOL2)
      per_image = sat_add (per_image, L->out_size);
    if (L->s1)                  /* wpack + wpackb: about two weight copies */
      total = sat_add (total, sat_mul (2 * ((guint64) L->out.c * L->in.c
                  * L->k * L->k + 64), f));
  }
  per_image = sat_add (per_image, sat_add (2 * (guint64) net->max_act,
          2 * (guint64) net->max_bn_c));
  total = sat_add (total, sat_mul (sat_mul (per_image, batch), f));
  /* state_ensure_scratch (): col, dcol, ebuf, pp[2], tbuf, xq, grads, dwt */
  per_thread = sat_add (MAX (net->max_col, net->max_s1[0]),
      MAX (net->max_col, net->max_s1[1]));
  per_thread = sat_add (per_thread, net->max_s1[2]);
  per_thread = sat_add (per_thread, 2 * (guint64) net->max_act);
  per_thread = sat_add (per_thread, net->max_dwt);
  per_thread = sat_add (per_thread, net->max_s1[0]);
  per_thread = sat_add (per_thread, sat_mul (params, 2));
  per_thread = sat_add (per_thread, 7 * 16);
  total = sat_add (total, sat_mul (sat_mul (per_thread, threads), f));
  if (training)                 /* gradients, optimiser moments, best copy */
    total = sat_add (total, sat_mul (sat_mul (params, 4), f));
  return total;
}

CbirNet *
cbir_net_new_layout (CbirShape input, const CbirLayerSpec *layers,
    guint n_layers, GError **error)
{
  g_autoptr (GArray) tensors = NULL;
  CbirNet *net;
  CbirShape cur = input;
  gsize off = 0;

  if (input.c < 1 || input.h < 1 || input.w < 1 || input.c > MAX_DIM
      || input.h > MAX_DIM || input.w > MAX_DIM
      || shape_size (input) > (1u << 26)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "network input shape %dx%dx%d is invalid", input.c, input.h, input.w);
    return NULL;
  }
  if (n_layers == 0 || layers == NULL) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "network has no layers");
    return NULL;
  }

  net = g_new0 (CbirNet, 1);
  net->input = input;
  net->input_size = shape_size (input);
  net->n_layers = n_layers;
  net->layers = g_new0 (Layer, n_layers);
  net->max_act = net->input_size;
  tensors = g_array_new (FALSE, TRUE, sizeof (CbirNetTensor));

  for (guint i = 0; i < n_layers; i++) {
    Layer *L = &net->layers[i];
    const CbirLayerSpec *sp = &layers[i];
    CbirShape out = cur;
    const char *kn = cbir_layer_kind_to_string (sp->kind);

    L->spec = *sp;
    L->in = cur;
    L->w_off = L->b_off = L->rm_off = L->rv_off = -1;

#define FAIL(...) do { \
      g_autofree char *msg_ = g_strdup_printf (__VA_ARGS__); \
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT, \
          "layer %u (%s) on input %dx%dx%d: %s", i, kn, cur.c, cur.h, cur.w, msg_); \
      goto fail; \
    } while (0)

    switch (sp->kind) {
      case CBIR_LAYER_CONV2D:
      case CBIR_LAYER_CONV_TRANSPOSE2D:{
        gboolean tr = sp->kind == CBIR_LAYER_CONV_TRANSPOSE2D;
        int k = sp->kernel, s = sp->stride;
        int oh, ow, th, tw;
        gint64 wshape[4];

        if (k != 2 && k != 3)
          FAIL ("kernel %d not supported (2 or 3)", k);
        if (s != 1 && s != 2)
          FAIL ("stride %d not supported (1 or 2)", s);
        if (sp->filters < 1 || sp->filters > 4096)
          FAIL ("filters %d out of range", sp->filters);
        if (!tr) {
          if (sp->same) {
            oh = (cur.h + s - 1) / s;
            ow = (cur.w + s - 1) / s;
          } else {
            if (cur.h < k || cur.w < k)
              FAIL ("kernel %d larger than the input (valid padding)", k);
            oh = (cur.h - k) / s + 1;
            ow = (cur.w - k) / s + 1;
          }
          out.c = sp->filters;
          out.h = oh;
          out.w = ow;
          L->cc = cur.c;
          L->ch = cur.h;
          L->cw = cur.w;
          L->gh = oh;
          L->gw = ow;
        } else {
          if (sp->same) {
            oh = cur.h * s;
            ow = cur.w * s;
          } else {
            oh = (cur.h - 1) * s + k;
            ow = (cur.w - 1) * s + k;
          }
          if (oh > MAX_DIM || ow > MAX_DIM)
            FAIL ("output too large");
          out.c = sp->filters;
          out.h = oh;
          out.w = ow;
          L->cc = out.c;
          L->ch = oh;
          L->cw = ow;
          L->gh = cur.h;
          L->gw = cur.w;
        }
        L->k = k;
        L->s = s;
        /* Keras "same": total padding split with the extra one at the
         * bottom/right; computed in the conv view for both kinds. */
        th = MAX ((L->gh - 1) * s + k - L->ch, 0);
        tw = MAX ((L->gw - 1) * s + k - L->cw, 0);
        L->pt = sp->same ? th / 2 : 0;
        L->pl = sp->same ? tw / 2 : 0;
        {
          gsize col = (gsize) L->cc * k * k * L->gh * L->gw;
          net->max_col = MAX (net->max_col, col);
        }
        L->s1 = !tr && s == 1;
        if (L->s1) {
          NnS1Geom g;
          nn_conv_s1_geometry (k, oh, ow, &g);
          net->max_s1[0] = MAX (net->max_s1[0],
              (gsize) cur.c * g.plane + NN_WCONV_SLACK);
          net->max_s1[1] = MAX (net->max_s1[1], (gsize) sp->filters * g.ldc);
          net->max_s1[1] = MAX (net->max_s1[1],
              (gsize) sp->filters * g.dstride);
          net->max_s1[2] = MAX (net->max_s1[2], (gsize) cur.c
              * nn_wconv_ld ((cur.h - 1) * g.wp + cur.w));
          net->max_dwt = MAX (net->max_dwt, nn_conv_s1_dw_scratch (cur.c,
                  sp->filters, k, oh, ow));
        }
        wshape[0] = tr ? cur.c : sp->filters;
        wshape[1] = tr ? sp->filters : cur.c;
        wshape[2] = k;
        wshape[3] = k;
        L->w_off = off;
        add_tensor (tensors, i, "weight", off, 4, wshape, TRUE);
        off += (gsize) cur.c * sp->filters * k * k;
        if (sp->bias) {
          gint64 bs = sp->filters;
          L->b_off = off;
          add_tensor (tensors, i, "bias", off, 1, &bs, TRUE);
          off += sp->filters;
        }
        break;
      }
      case CBIR_LAYER_DENSE:{
        gint64 in = (gint64) shape_size (cur);
        gint64 wshape[2];
        if (sp->filters < 1 || sp->filters > (1 << 20))
          FAIL ("units %d out of range", sp->filters);
        if (in * sp->filters > (1 << 28))
          FAIL ("weight matrix too large");
        /* A dense layer reads its input flattened (NCHW order). */
        out.c = sp->filters;
        out.h = out.w = 1;
        wshape[0] = sp->filters;
        wshape[1] = in;
        L->w_off = off;
        add_tensor (tensors, i, "weight", off, 2, wshape, TRUE);
        off += (gsize) in * sp->filters;
        if (sp->bias) {
          gint64 bs = sp->filters;
          L->b_off = off;
          add_tensor (tensors, i, "bias", off, 1, &bs, TRUE);
          off += sp->filters;
        }
        break;
      }
      case CBIR_LAYER_RELU:
      case CBIR_LAYER_SIGMOID:
        break;
      case CBIR_LAYER_LEAKY_RELU:
        if (!isfinite (sp->alpha))
          FAIL ("alpha is not finite");
        break;
      case CBIR_LAYER_BATCHNORM:{
        gint64 cs = cur.c;
        if (!(sp->eps >= 0.0f) || !isfinite (sp->eps))
          FAIL ("eps %g invalid", sp->eps);
        if (!(sp->momentum >= 0.0f && sp->momentum <= 1.0f))
          FAIL ("momentum %g not in [0, 1]", sp->momentum);
        L->w_off = off;
        add_tensor (tensors, i, "weight", off, 1, &cs, TRUE);
        off += cur.c;
        L->b_off = off;
        add_tensor (tensors, i, "bias", off, 1, &cs, TRUE);
        off += cur.c;
        L->rm_off = off;
        add_tensor (tensors, i, "running_mean", off, 1, &cs, FALSE);
        off += cur.c;
        L->rv_off = off;
        add_tensor (tensors, i, "running_var", off, 1, &cs, FALSE);
        off += cur.c;
        net->max_bn_c = MAX (net->max_bn_c, cur.c);
        break;
      }
      case CBIR_LAYER_MAXPOOL2:
        /* valid (default): floor; same: ceil, as Keras padding="same" */
        if (sp->same) {
          out.h = (cur.h + 1) / 2;
          out.w = (cur.w + 1) / 2;
        } else {
          if (cur.h < 2 || cur.w < 2)
            FAIL ("input smaller than the 2x2 pool");
          out.h = cur.h / 2;
          out.w = cur.w / 2;
        }
        break;
      case CBIR_LAYER_UPSAMPLE2:
        if (cur.h > MAX_DIM / 2 || cur.w > MAX_DIM / 2)
          FAIL ("output too large");
        out.h = cur.h * 2;
        out.w = cur.w * 2;
        break;
      case CBIR_LAYER_FLATTEN:
        out.c = (int) shape_size (cur);
        out.h = out.w = 1;
        break;
      case CBIR_LAYER_RESHAPE:{
        gint64 n = (gint64) sp->shape[0] * sp->shape[1] * sp->shape[2];
        if (sp->shape[0] < 1 || sp->shape[1] < 1 || sp->shape[2] < 1
            || n != (gint64) shape_size (cur))
          FAIL ("cannot reshape %" G_GSIZE_FORMAT " values to %dx%dx%d",
              shape_size (cur), sp->shape[0], sp->shape[1], sp->shape[2]);
        out.c = sp->shape[0];
        out.h = sp->shape[1];
        out.w = sp->shape[2];
        break;
      }
      default:
        FAIL ("unknown layer kind %d", (int) sp->kind);
    }
#undef FAIL
    if (shape_size (out) > (1u << 26)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "layer %u (%s): output %dx%dx%d too large", i, kn, out.c, out.h,
          out.w);
      goto fail;
    }
    L->out = out;
    L->in_size = shape_size (cur);
    L->out_size = shape_size (out);
    net->max_act = MAX (net->max_act, L->out_size);
    cur = out;
  }

  for (guint i = 0; i + 1 < n_layers; i++)
    if (net->layers[i].s1
        && net->layers[i + 1].spec.kind == CBIR_LAYER_RELU) {
      net->layers[i].fuse_relu = TRUE;
      net->layers[i + 1].fused = TRUE;
    }
  net->n_params = off;
  net->n_tensors = tensors->len;
  net->tensors = (CbirNetTensor *) g_array_free (g_steal_pointer (&tensors),
      FALSE);
  {
    guint64 need = cbir_net_memory_bytes (net, 1, 1, FALSE);
    if (need > CBIR_NET_MAX_BYTES) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "the network needs %.0f MiB to run one image (%" G_GSIZE_FORMAT
          " parameters), more than the limit of %.0f MiB", need
          / 1048576.0, net->n_params, CBIR_NET_MAX_BYTES / 1048576.0);
      for (guint j = 0; j < net->n_tensors; j++)
        g_free (net->tensors[j].name);
      g_free (net->tensors);
      g_free (net->layers);
      g_free (net);
      return NULL;
    }
  }
  net->n_threads = 0;
  cbir_net_set_threads (net, cbir_default_threads ());
  return net;

fail:
  for (guint j = 0; j < tensors->len; j++)
    g_free (g_array_index (tensors, CbirNetTensor, j).name);
  g_free (net->layers);
  g_free (net);
  return NULL;
}

void
cbir_net_free (CbirNet *net)
{
  if (!net)
    return;
  pool_free (net->pool);
  for (guint i = 0; i < net->n_tensors; i++)
    g_free (net->tensors[i].name);
  g_free (net->tensors);
  g_free (net->params);
  g_free (net->layers);
  g_free (net);
}

guint
cbir_net_n_layers (const CbirNet *net)
{
  return net->n_layers;
}

const CbirLayerSpec *
cbir_net_layer (const CbirNet *net, guint i)
{
  g_return_val_if_fail (i < net->n_layers, NULL);
  return &net->layers[i].spec;
}

CbirShape
cbir_net_input_shape (const CbirNet *net)
{
  return net->input;
}

CbirShape
cbir_net_output_shape (const CbirNet *net, guint i)
{
  CbirShape z = { 0, 0, 0 };
  g_return_val_if_fail (i < net->n_layers, z);
  return net->layers[i].out;
}

gsize
cbir_net_n_params (const CbirNet *net)
{
  return net->n_params;
}

/* The caller may write through the pointer: packed copies of the weights
 * are rebuilt at the next forward. */
float *
cbir_net_params (CbirNet *net)
{
  cbir_net_params_changed (net);
  return net->params;
}

void
cbir_net_params_changed (CbirNet *net)
{
  g_atomic_int_inc (&net->params_version);
}

guint
cbir_net_n_tensors (const CbirNet *net)
{
  return net->n_tensors;
}

const CbirNetTensor *
cbir_net_tensor (const CbirNet *net, guint i)
{
  g_return_val_if_fail (i < net->n_tensors, NULL);
  return &net->tensors[i];
}

const CbirNetTensor *
cbir_net_find_tensor (const CbirNet *net, const char *name)
{
  for (guint i = 0; i < net->n_tensors; i++)
    if (g_strcmp0 (net->tensors[i].name, name) == 0)
      return &net->tensors[i];
  return NULL;
}

const CbirNetTensor *
cbir_net_find_non_finite (const CbirNet *net)
{
  if (!net->params)
    return NULL;
  for (guint i = 0; i < net->n_tensors; i++) {
    const CbirNetTensor *t = &net->tensors[i];
    for (gsize k = 0; k < t->size; k++)
      if (!isfinite (net->params[t->offset + k]))
        return t;
  }
  return NULL;
}

void
cbir_net_set_threads (CbirNet *net, guint n_threads)
{
  n_threads = CLAMP (n_threads, 1, 256);
  if (n_threads == net->n_threads)
    return;
  pool_free (net->pool);
  net->pool = pool_new (n_threads);
  net->n_threads = n_threads;
  /* our workers split the batch; OpenBLAS must not add its own threads
   * on top (process-wide setting) */
  openblas_set_num_threads (1);
}

/* splitmix64 */
static guint64
rng_next (guint64 *s)
{
  guint64 z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void
cbir_net_init_params (CbirNet *net, guint64 seed)
{
  guint64 rs = seed;

  cbir_net_params_changed (net);
  memset (net->params, 0, net->n_params * sizeof (float));
  for (guint i = 0; i < net->n_layers; i++) {
    Layer *L = &net->layers[i];
    double fan_in, fan_out;
    gsize nw;

    switch (L->spec.kind) {
      case CBIR_LAYER_CONV2D:
      case CBIR_LAYER_CONV_TRANSPOSE2D:
        fan_in = (double) L->k * L->k * L->in.c;
        fan_out = (double) L->k * L->k * L->out.c;
        nw = (gsize) L->in.c * L->out.c * L->k * L->k;
        break;
      case CBIR_LAYER_DENSE:
        fan_in = (double) L->in_size;
        fan_out = (double) L->out_size;
        nw = L->in_size * L->out_size;
        break;
      case CBIR_LAYER_BATCHNORM:
        for (int c = 0; c < L->in.c; c++) {
          net->params[L->w_off + c] = 1.0f;
          net->params[L->rv_off + c] = 1.0f;
        }
        continue;
      default:
        continue;
    }
    {
      double limit = sqrt (6.0 / (fan_in + fan_out));
      float *w = net->params + L->w_off;
      for (gsize j = 0; j < nw; j++) {
        double u = (double) (rng_next (&rs) >> 11) * (1.0 / 9007199254740992.0);
        w[j] = (float) ((2.0 * u - 1.0) * limit);
      }
    }
  }
}

/* ---------------------------------------------------------------- state */

typedef struct {
  float *col;
  float *dcol;
  float *ebuf;
  float *pp[2];                 /* inference ping-pong activations */
  float *tbuf;                  /* s1 weight gradient: transposed planes */
  float *xq;                    /* inference: padded planes, the other of col */
  float *grads;                 /* per-thread parameter gradients */
  float *dwt;                   /* same layout; s1 convs' weight gradient
                                 * kept tap-major during a pass */
} Scratch;

struct _CbirNetState {
  CbirNet *net;
  guint max_batch;
  float *input;                 /* copy of the forwarded input */
  float **act;                  /* per layer output (views alias) */
  float **act_mem;
  gint32 **argmax;              /* per maxpool layer */
  float **bn_mean, **bn_invstd; /* per BN layer (training forward) */
  double *bn_s1, *bn_s2;        /* per image partial sums */
  float *g[2];                  /* gradient ping-pong buffers */
  Scratch *scratch;
  guint n_scratch;
  /* last forward */
  guint batch, last;
  gboolean training;
  gboolean forwarded;
  gboolean have_input_grad;
  gboolean input_grad_lazy;     /* layer 0 (s1 conv): its input gradient is
                                 * computed by cbir_net_input_grad () from
                                 * its output gradient, kept by backward */
  float *dinput;                /* input gradient, batch * input size */
  float **wpack;                /* per s1 conv: forward weights, packed */
  float **wpackb;               /* per s1 conv: input-gradient weights */
  gboolean lean;                /* last forward kept only its output */
  gint packed_version;          /* net->params_version they were packed at */
  gboolean packed;
};

/* output aliases the input: nothing to compute in a forward pass */
static gboolean
layer_is_view (const Layer *L)
{
  return L->spec.kind == CBIR_LAYER_FLATTEN
      || L->spec.kind == CBIR_LAYER_RESHAPE || L->fused;
}

CbirNetState *
cbir_net_state_new (CbirNet *net, guint max_batch)
{
  CbirNetState *st;
  guint n = net->n_layers;

  g_return_val_if_fail (max_batch >= 1, NULL);
  st = g_new0 (CbirNetState, 1);
  st->net = net;
  st->max_batch = max_batch;
  st->input = g_new (float, net->input_size * max_batch);
  st->dinput = g_new0 (float, net->input_size * max_batch);
  st->act = g_new0 (float *, n);
  st->act_mem = g_new0 (float *, n);
  st->wpack = g_new0 (float *, n);
  st->wpackb = g_new0 (float *, n);
  st->argmax = g_new0 (gint32 *, n);
  st->bn_mean = g_new0 (float *, n);
  st->bn_invstd = g_new0 (float *, n);
  for (guint i = 0; i < n; i++) {
    Layer *L = &net->layers[i];
    if (layer_is_view (L)) {
      st->act[i] = i == 0 ? st->input : st->act[i - 1];
    } else {
      st->act_mem[i] = g_new (float, L->out_size * max_batch);
      st->act[i] = st->act_mem[i];
    }
    if (L->spec.kind == CBIR_LAYER_MAXPOOL2)
      st->argmax[i] = g_new (gint32, L->out_size * max_batch);
    if (L->s1) {
      st->wpack[i] = g_new (float, nn_wconv_packed_size (L->out.c, L->in.c,
              L->k * L->k));
      st->wpackb[i] = g_new (float, nn_wconv_packed_size (L->in.c, L->out.c,
              L->k * L->k));
    }
    if (L->spec.kind == CBIR_LAYER_BATCHNORM) {
      st->bn_mean[i] = g_new0 (float, L->in.c);
      st->bn_invstd[i] = g_new0 (float, L->in.c);
    }
  }
  if (net->max_bn_c > 0) {
    st->bn_s1 = g_new (double, (gsize) net->max_bn_c * max_batch);
    st->bn_s2 = g_new (double, (gsize) net->max_bn_c * max_batch);
  }
  st->g[0] = g_new (float, net->max_act * max_batch);
  st->g[1] = g_new (float, net->max_act * max_batch);
  return st;
}

static void
state_free_scratch (CbirNetState *st)
{
  for (guint t = 0; t < st->n_scratch; t++) {
    g_aligned_free (st->scratch[t].col);
    g_aligned_free (st->scratch[t].dcol);
    g_aligned_free (st->scratch[t].ebuf);
    g_aligned_free (st->scratch[t].pp[0]);
    g_aligned_free (st->scratch[t].pp[1]);
    g_aligned_free (st->scratch[t].tbuf);
    g_aligned_free (st->scratch[t].xq);
    g_aligned_free (st->scratch[t].grads);
    g_aligned_free (st->scratch[t].dwt);
  }
  g_free (st->scratch);
  st->scratch = NULL;
  st->n_scratch = 0;
}

/* per-thread scratch: 64-byte aligned (whole-vector rows stay aligned,
 * and no two threads' buffers share a cache line) */
static float *
scratch_new (gsize n)
{
  return g_aligned_alloc (MAX (n, 1) + 16, sizeof (float), 64);
}

static void
state_ensure_scratch (CbirNetState *st, guint n)
{
  CbirNet *net = st->net;
  if (st->n_scratch >= n)
    return;
  state_free_scratch (st);
  st->scratch = g_new0 (Scratch, n);
  for (guint t = 0; t < n; t++) {
    st->scratch[t].col = scratch_new (MAX (net->max_col, net->max_s1[0]));
    st->scratch[t].dcol = scratch_new (MAX (net->max_col, net->max_s1[1]));
    st->scratch[t].ebuf = scratch_new (net->max_s1[2]);
    st->scratch[t].pp[0] = scratch_new (net->max_act);
    st->scratch[t].pp[1] = scratch_new (net->max_act);
    st->scratch[t].tbuf = scratch_new (net->max_dwt);
    st->scratch[t].xq = scratch_new (net->max_s1[0]);
    st->scratch[t].grads = scratch_new (net->n_params);
    st->scratch[t].dwt = scratch_new (net->n_params);
  }
  st->n_scratch = n;
}

void
cbir_net_state_free (CbirNetState *st)
{
  if (!st)
    return;
  for (guint i = 0; i < st->net->n_layers; i++) {
    g_free (st->act_mem[i]);
    g_free (st->argmax[i]);
    g_free (st->wpack[i]);
    g_free (st->wpackb[i]);
    g_free (st->bn_mean[i]);
    g_free (st->bn_invstd[i]);
  }
  g_free (st->act);
  g_free (st->act_mem);
  g_free (st->argmax);
  g_free (st->wpack);
  g_free (st->wpackb);
  g_free (st->bn_mean);
  g_free (st->bn_invstd);
  g_free (st->bn_s1);
  g_free (st->bn_s2);
  g_free (st->g[0]);
  g_free (st->g[1]);
  g_free (st->input);
  g_free (st->dinput);
  state_free_scratch (st);
  g_free (st);
}

/* ---------------------------------------------------------------- layers */

static inline const float *
layer_input (CbirNetState *st, guint l)
{
  return l == 0 ? st->input : st->act[l - 1];
}

/* Forward of one image through layer l (BN only in eval mode or the
 * normalisation step after statistics are known). */
static void
layer_forward_xy (CbirNet *net, CbirNetState *st, guint l, guint img,
    guint tid, const float *x, float *y, gboolean keep_idx)
{
  Layer *L = &net->layers[l];
  const float *P = net->params;
  gsize n = L->out_size;

  switch (L->spec.kind) {
    case CBIR_LAYER_CONV2D:
      if (L->s1) {
        nn_conv_s1_forward (x, st->wpack[l],
            L->b_off >= 0 ? P + L->b_off : NULL, y, L->cc, L->ch, L->cw,
            L->out.c, L->gh, L->gw, L->k, L->pt, L->pl,
            st->scratch[tid].col, st->scratch[tid].dcol,
            L->fuse_relu && l < st->last);
        break;
      }
      nn_conv_forward (x, P + L->w_off, L->b_off >= 0 ? P + L->b_off : NULL,
          y, L->cc, L->ch, L->cw, L->out.c, L->gh, L->gw, L->k, L->s, L->pt,
          L->pl, st->scratch[tid].col);
      break;
    case CBIR_LAYER_CONV_TRANSPOSE2D:
      nn_convt_forward (x, P + L->w_off, L->b_off >= 0 ? P + L->b_off : NULL,
          y, L->in.c, L->cc, L->ch, L->cw, L->gh, L->gw, L->k, L->s, L->pt,
          L->pl, st->scratch[tid].col);
      break;
    case CBIR_LAYER_DENSE:
      nn_dense_forward (x, P + L->w_off, L->b_off >= 0 ? P + L->b_off : NULL,
          y, (int) L->in_size, (int) L->out_size);
      break;
    case CBIR_LAYER_RELU:
      if (!L->fused)
        nn_relu_forward (x, y, n, 0.0f);
      break;
    case CBIR_LAYER_LEAKY_RELU:
      nn_relu_forward (x, y, n, L->spec.alpha);
      break;
    case CBIR_LAYER_SIGMOID:
      nn_sigmoid_forward (x, y, n);
      break;
    case CBIR_LAYER_BATCHNORM:{
      int C = L->in.c;
      gsize hw = (gsize) L->in.h * L->in.w;
      const float *g = P + L->w_off, *b = P + L->b_off;
      for (int c = 0; c < C; c++) {
        float mean, invstd;
        if (st->training) {
          mean = st->bn_mean[l][c];
          invstd = st->bn_invstd[l][c];
        } else {
          mean = P[L->rm_off + c];
          invstd = (float) (1.0 / sqrt ((double) P[L->rv_off + c] + L->spec.eps));
        }
        float sc = g[c] * invstd, sh = b[c] - mean * sc;
        const float *xc = x + c * hw;
        float *yc = y + c * hw;
        for (gsize i = 0; i < hw; i++)
          yc[i] = xc[i] * sc + sh;
      }
      break;
    }
    case CBIR_LAYER_MAXPOOL2:
      nn_maxpool2_forward (x, y, keep_idx ? st->argmax[l]
          + img * L->out_size : NULL, L->in.c, L->in.h, L->in.w, L->out.h,
          L->out.w);
      break;
    case CBIR_LAYER_UPSAMPLE2:
      nn_upsample2_forward (x, y, L->in.c, L->in.h, L->in.w);
      break;
    case CBIR_LAYER_FLATTEN:
    case CBIR_LAYER_RESHAPE:
      break;                    /* views: act[l] aliases the input */
  }
}

/* the same on the state's activations */
static void
layer_forward_image (CbirNet *net, CbirNetState *st, guint l, guint img,
    guint tid)
{
  Layer *L = &net->layers[l];
  layer_forward_xy (net, st, l, img, tid,
      layer_input (st, l) + img * L->in_size,
      st->act[l] + img * L->out_size, TRUE);
}

/* Backward of one image: dy (gradient of layer l's output) -> dx, and
 * parameter gradients into grads (a per-thread block). BN in training mode
 * is done collectively elsewhere. */
static void
layer_backward_image (CbirNet *net, CbirNetState *st, guint l, guint img,
    guint tid, const float *dy, float *dx, float *grads)
{
  Layer *L = &net->layers[l];
  const float *x = layer_input (st, l) + img * L->in_size;
  const float *y = st->act[l] + img * L->out_size;
  const float *P = net->params;
  gsize n = L->out_size;

  switch (L->spec.kind) {
    case CBIR_LAYER_CONV2D:
      if (L->s1) {
        nn_conv_s1_backward (x, st->wpackb[l], dy, dx, grads + L->w_off,
            L->b_off >= 0 ? grads + L->b_off : NULL, L->cc, L->ch, L->cw,
            L->out.c, L->gh, L->gw, L->k, L->pt, L->pl,
            st->scratch[tid].col, st->scratch[tid].dcol,
            st->scratch[tid].ebuf, st->scratch[tid].dwt + L->w_off,
            st->scratch[tid].tbuf);
        break;
      }
      nn_conv_backward (x, P + L->w_off, dy, dx, grads + L->w_off,
          L->b_off >= 0 ? grads + L->b_off : NULL, L->cc, L->ch, L->cw,
          L->out.c, L->gh, L->gw, L->k, L->s, L->pt, L->pl,
          st->scratch[tid].col, st->scratch[tid].dcol);
      break;
    case CBIR_LAYER_CONV_TRANSPOSE2D:
      nn_convt_backward (x, P + L->w_off, dy, dx, grads + L->w_off,
          L->b_off >= 0 ? grads + L->b_off : NULL, L->in.c, L->cc, L->ch,
          L->cw, L->gh, L->gw, L->k, L->s, L->pt, L->pl, st->scratch[tid].col);
      break;
    case CBIR_LAYER_DENSE:
      nn_dense_backward (x, P + L->w_off, dy, dx, grads + L->w_off,
          L->b_off >= 0 ? grads + L->b_off : NULL, (int) L->in_size,
          (int) L->out_size);
      break;
    case CBIR_LAYER_RELU:
      nn_relu_backward (x, dy, dx, n, 0.0f);
      break;
    case CBIR_LAYER_LEAKY_RELU:
      nn_relu_backward (x, dy, dx, n, L->spec.alpha);
      break;
    case CBIR_LAYER_SIGMOID:
      nn_sigmoid_backward (y, dy, dx, n);
      break;
    case CBIR_LAYER_BATCHNORM:{
      /* eval mode: an affine map with the running statistics */
      int C = L->in.c;
      gsize hw = (gsize) L->in.h * L->in.w;
      for (int c = 0; c < C; c++) {
        float mean = P[L->rm_off + c];
        float invstd = (float) (1.0 / sqrt ((double) P[L->rv_off + c]
                + L->spec.eps));
        float sc = P[L->w_off + c] * invstd;
        const float *xc = x + c * hw, *dyc = dy + c * hw;
        float *dxc = dx + c * hw;
        double sg = 0, sb = 0;
        for (gsize i = 0; i < hw; i++) {
          dxc[i] = dyc[i] * sc;
          sb += dyc[i];
          sg += dyc[i] * ((xc[i] - mean) * invstd);
        }
        grads[L->w_off + c] += (float) sg;
        grads[L->b_off + c] += (float) sb;
      }
      break;
    }
    case CBIR_LAYER_MAXPOOL2:
      nn_maxpool2_backward (dy, dx, st->argmax[l] + img * L->out_size,
          L->in.c, L->in.h, L->in.w, L->out.h, L->out.w);
      break;
    case CBIR_LAYER_UPSAMPLE2:
      nn_upsample2_backward (dy, dx, L->in.c, L->in.h, L->in.w);
      break;
    case CBIR_LAYER_FLATTEN:
    case CBIR_LAYER_RESHAPE:
      memcpy (dx, dy, n * sizeof (float));
      break;
  }
}

/* ---------------------------------------------------------------- BN train */

static inline void
chunk_of (guint batch, guint tid, guint n, guint *b0, guint *b1)
{
  *b0 = (guint) ((guint64) batch * tid / n);
  *b1 = (guint) ((guint64) batch * (tid + 1) / n);
}

static void
bn_train_forward (CbirNet *net, CbirNetState *st, guint l, guint tid,
    guint nt, guint b0, guint b1)
{
  Layer *L = &net->layers[l];
  int C = L->in.c;
  gsize hw = (gsize) L->in.h * L->in.w;
  const float *X = layer_input (st, l);
  guint batch = st->batch;

  for (guint b = b0; b < b1; b++) {
    const float *x = X + b * L->in_size;
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (gsize i = 0; i < hw; i++)
        s += x[c * hw + i];
      st->bn_s1[b * C + c] = s;
    }
  }
  pool_barrier (net->pool, nt);
  if (tid == 0) {
    double cnt = (double) batch * hw;
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (guint b = 0; b < batch; b++)
        s += st->bn_s1[b * C + c];
      st->bn_mean[l][c] = (float) (s / cnt);
    }
  }
  pool_barrier (net->pool, nt);
  for (guint b = b0; b < b1; b++) {
    const float *x = X + b * L->in_size;
    for (int c = 0; c < C; c++) {
      double m = st->bn_mean[l][c], s = 0;
      for (gsize i = 0; i < hw; i++) {
        double d = x[c * hw + i] - m;
        s += d * d;
      }
      st->bn_s2[b * C + c] = s;
    }
  }
  pool_barrier (net->pool, nt);
  if (tid == 0) {
    double cnt = (double) batch * hw;
    float *P = net->params;
    float mom = L->spec.momentum;
    for (int c = 0; c < C; c++) {
      double s = 0, var, uvar;
      for (guint b = 0; b < batch; b++)
        s += st->bn_s2[b * C + c];
      var = s / cnt;
      uvar = cnt > 1 ? s / (cnt - 1) : var;
      st->bn_invstd[l][c] = (float) (1.0 / sqrt (var + L->spec.eps));
      P[L->rm_off + c] = (1.0f - mom) * P[L->rm_off + c]
          + mom * st->bn_mean[l][c];
      P[L->rv_off + c] = (1.0f - mom) * P[L->rv_off + c] + mom * (float) uvar;
    }
  }
  pool_barrier (net->pool, nt);
  for (guint b = b0; b < b1; b++)
    layer_forward_image (net, st, l, b, tid);
}

static const float *grad_out (CbirNetState *st, const float *dout, int j,
    guint b);
static float *grad_in (CbirNetState *st, int j, guint b);

static void
bn_train_backward (CbirNet *net, CbirNetState *st, guint l, guint tid,
    guint nt, guint b0, guint b1, const float *dout)
{
  Layer *L = &net->layers[l];
  int C = L->in.c;
  gsize hw = (gsize) L->in.h * L->in.w;
  const float *X = layer_input (st, l);
  guint batch = st->batch;
  const float *mean = st->bn_mean[l], *invstd = st->bn_invstd[l];

  for (guint b = b0; b < b1; b++) {
    const float *x = X + b * L->in_size;
    const float *dy = grad_out (st, dout, (int) l, b);
    for (int c = 0; c < C; c++) {
      double s1 = 0, s2 = 0;
      for (gsize i = 0; i < hw; i++) {
        float g = dy[c * hw + i];
        s1 += g;
        s2 += g * ((x[c * hw + i] - mean[c]) * invstd[c]);
      }
      st->bn_s1[b * C + c] = s1;
      st->bn_s2[b * C + c] = s2;
    }
  }
  pool_barrier (net->pool, nt);
  if (tid == 0) {
    float *G = st->scratch[0].grads;
    for (int c = 0; c < C; c++) {
      double s1 = 0, s2 = 0;
      for (guint b = 0; b < batch; b++) {
        s1 += st->bn_s1[b * C + c];
        s2 += st->bn_s2[b * C + c];
      }
      /* keep the reduced sums in slot 0 for everyone */
      st->bn_s1[c] = s1;
      st->bn_s2[c] = s2;
      G[L->w_off + c] += (float) s2;
      G[L->b_off + c] += (float) s1;
    }
  }
  pool_barrier (net->pool, nt);
  {
    double cnt = (double) batch * hw;
    const float *P = net->params;
    for (guint b = b0; b < b1; b++) {
      const float *x = X + b * L->in_size;
      const float *dy = grad_out (st, dout, (int) l, b);
      float *dx = grad_in (st, (int) l, b);
      for (int c = 0; c < C; c++) {
        float k0 = P[L->w_off + c] * invstd[c];
        float m1 = (float) (st->bn_s1[c] / cnt);
        float m2 = (float) (st->bn_s2[c] / cnt);
        for (gsize i = 0; i < hw; i++) {
          float xh = (x[c * hw + i] - mean[c]) * invstd[c];
          dx[c * hw + i] = k0 * (dy[c * hw + i] - m1 - xh * m2);
        }
      }
    }
  }
  /* nobody may overwrite bn_s1/bn_s2 slot 0 before all have read it */
  pool_barrier (net->pool, nt);
}

/* ---------------------------------------------------------------- passes */

typedef struct {
  CbirNet *net;
  CbirNetState *st;
  const float *dout;
  int extra_layer;              /* backward: layer whose output gradient
                                 * gets `extra` added, -1: none */
  const float *extra;
} Job;

static gboolean
is_sync_layer (CbirNetState *st, guint l)
{
  return st->training
      && st->net->layers[l].spec.kind == CBIR_LAYER_BATCHNORM;
}

/* A stride-1 conv, its fused ReLU and a max-pool, all forwarded: in a
 * full (training) forward the conv's output is pooled straight from its
 * wide grid and never stored (the pool's indices and positive outputs
 * are all the backward needs). */
static gboolean
train_pool_fused (CbirNet *net, CbirNetState *st, guint j)
{
  return j + 2 <= st->last && net->layers[j].fuse_relu
      && net->layers[j + 2].spec.kind == CBIR_LAYER_MAXPOOL2;
}

/* inference: layers j (s1 conv), j + 1 (its fused ReLU) and j + 2 (max-pool)
 * run as one, all up to `final` */
static gboolean
lean_fused (CbirNet *net, guint j, guint final)
{
  return j + 2 <= final && net->layers[j].fuse_relu
      && net->layers[j + 2].spec.kind == CBIR_LAYER_MAXPOOL2;
}

static void
forward_job (void *data, guint tid, guint nt)
{
  Job *job = data;
  CbirNet *net = job->net;
  CbirNetState *st = job->st;
  guint b0, b1, l = 0;

  chunk_of (st->batch, tid, nt, &b0, &b1);
  if (st->lean) {
    /* inference: one image at a time through two small per-thread
     * buffers; only the last computed layer writes the state's (batch
     * sized) activations, which the output aliases */
    guint final = st->last;
    while (final > 0 && layer_is_view (&net->layers[final]))
      final--;
    if (layer_is_view (&net->layers[final]))
      return;                   /* views of the input only */
    for (guint b = b0; b < b1; b++) {
      const float *cur = st->input + (gsize) b * net->input_size;
      guint pp = 0;
      gboolean cur_padded = FALSE;      /* cur: padded planes for layer j */
      for (guint j = 0; j <= final; j++) {
        Layer *L = &net->layers[j];
        float *dst;
        if (layer_is_view (L))
          continue;
        if (lean_fused (net, j, final)) {
          /* conv + ReLU + pool in one go: the pool's output only, written
           * as the padded input of the next conv if that is fused too */
          Layer *P = &net->layers[j + 2];
          gboolean pad_next = lean_fused (net, j + 3, final);
          float *xp = st->scratch[tid].col;
          NnS1Geom gn;
          if (pad_next) {
            Layer *N = &net->layers[j + 3];
            nn_conv_s1_geometry (N->k, N->gh, N->gw, &gn);
            dst = cur == st->scratch[tid].xq ? st->scratch[tid].col
                : st->scratch[tid].xq;
          } else {
            dst = j + 2 == final ? st->act[j + 2] + (gsize) b * P->out_size
                : st->scratch[tid].pp[pp];
            pp ^= 1;
          }
          nn_conv_s1_forward_pool (cur, st->wpack[j], L->b_off >= 0
              ? net->params + L->b_off : NULL, dst, L->cc, L->ch, L->cw,
              L->out.c, L->gh, L->gw, L->k, L->pt, L->pl, xp,
              st->scratch[tid].dcol, TRUE, P->out.h, P->out.w, NULL,
              cur_padded, pad_next ? &gn : NULL);
          cur_padded = pad_next;
          cur = dst;
          j += 2;
          continue;
        }
        g_assert (!cur_padded);
        dst = j == final ? st->act[j] + (gsize) b * L->out_size
            : st->scratch[tid].pp[pp];
        pp ^= 1;
        layer_forward_xy (net, st, j, b, tid, cur, dst, FALSE);
        cur = dst;
      }
    }
    return;
  }
  while (l <= st->last) {
    guint e = l;
    while (e <= st->last && !is_sync_layer (st, e))
      e++;
    for (guint b = b0; b < b1; b++)
      for (guint j = l; j < e; j++) {
        if (j + 2 < e && train_pool_fused (net, st, j)) {
          /* conv + ReLU + pool: the pool's output and indices only */
          Layer *L = &net->layers[j], *P = &net->layers[j + 2];
          nn_conv_s1_forward_pool (layer_input (st, j) + b * L->in_size,
              st->wpack[j], L->b_off >= 0 ? net->params + L->b_off : NULL,
              st->act[j + 2] + b * P->out_size, L->cc, L->ch, L->cw,
              L->out.c, L->gh, L->gw, L->k, L->pt, L->pl,
              st->scratch[tid].col, st->scratch[tid].dcol, TRUE, P->out.h,
              P->out.w, st->argmax[j + 2] + b * P->out_size, FALSE, NULL);
          j += 2;
          continue;
        }
        layer_forward_image (net, st, j, b, tid);
      }
    if (e <= st->last)
      bn_train_forward (net, st, e, tid, nt, b0, b1);
    l = e + 1;
  }
}

static guint
threads_for_batch (CbirNet *net, guint batch)
{
  return MIN (net->n_threads, batch);
}

const float *
cbir_net_forward (CbirNet *net, CbirNetState *st, const float *input,
    guint batch, guint last, gboolean training)
{
  Job job = { net, st, NULL };
  guint nt;

  g_return_val_if_fail (st->net == net, NULL);
  g_return_val_if_fail (batch >= 1 && batch <= st->max_batch, NULL);
  g_return_val_if_fail (last < net->n_layers, NULL);

  nt = threads_for_batch (net, batch);
  state_ensure_scratch (st, nt);
  memcpy (st->input, input, net->input_size * batch * sizeof (float));
  st->batch = batch;
  st->last = last;
  st->training = training;
  st->forwarded = TRUE;
  st->have_input_grad = FALSE;
  st->input_grad_lazy = FALSE;
  st->lean = !training;
  /* weights packed for the stride-1 convs, kept while the parameters do
   * not change (backward reuses them: the parameters do not change between
   * a forward and its backward) */
  {
    gint ver = g_atomic_int_get (&net->params_version);
    if (training || !st->packed || st->packed_version != ver) {
      for (guint l = 0; l < net->n_layers; l++) {
        Layer *L = &net->layers[l];
        int kk = L->k * L->k;
        if (!L->s1)
          continue;
        nn_wconv_pack (net->params + L->w_off, st->wpack[l], L->out.c,
            L->in.c, kk, (gsize) L->in.c * kk, kk);
        nn_wconv_pack (net->params + L->w_off, st->wpackb[l], L->in.c,
            L->out.c, kk, kk, (gsize) L->in.c * kk);
      }
      st->packed = TRUE;
      st->packed_version = ver;
    }
  }
  pool_run (net->pool, nt, forward_job, &job);
  return st->act[last];
}

/* d(loss)/d(output of layer j) for image b: the caller's block for the
 * last layer, else one of two ping-pong buffers with a fixed per-image
 * stride (max_act: the workers are at different layers at the same time,
 * so per-image slices must not depend on the layer). */
static float *
grad_buf (CbirNetState *st, int j, guint b)
{
  return st->g[(j + 2) & 1] + (gsize) b * st->net->max_act;
}

static const float *
grad_out (CbirNetState *st, const float *dout, int j, guint b)
{
  if (j == (int) st->last)
    return dout + (gsize) b * st->net->layers[j].out_size;
  return grad_buf (st, j, b);
}

/* d(loss)/d(input of layer j) for image b */
static float *
grad_in (CbirNetState *st, int j, guint b)
{
  return grad_buf (st, j - 1, b);
}

/* layer 0 is a stride-1 conv whose output gradient stays in the state
 * after backward: its input gradient (needed only by
 * cbir_net_input_grad) is left to that call */
static gboolean
input_grad_deferred (CbirNet *net, CbirNetState *st)
{
  return net->layers[0].s1 && st->last >= 1;
}

/* where backward leaves layer 0's output gradient for image b when
 * input_grad_deferred (): the slice of the ping-pong buffer the input
 * gradient would take, if the conv is fused with a pool (the other one
 * holds the pool's output gradient); else its usual place */
static float *
input_dy (CbirNetState *st, guint b)
{
  if (train_pool_fused (st->net, st, 0))
    return grad_in (st, 0, b);
  return grad_buf (st, 0, b);
}

/* Adds the gradient of a second loss on layer job->extra_layer's output
 * (cbir_net_backward_extra) to what came back from above, for image b:
 * called once all layers above it are done for that image. */
static void
add_extra_grad (CbirNet *net, CbirNetState *st, const Job *job, guint b)
{
  const gsize n = net->layers[job->extra_layer].out_size;
  float *g = grad_buf (st, job->extra_layer, b);
  const float *x = job->extra + (gsize) b * n;
  for (gsize i = 0; i < n; i++)
    g[i] += x[i];
}

static void
backward_job (void *data, guint tid, guint nt)
{
  Job *job = data;
  CbirNet *net = job->net;
  CbirNetState *st = job->st;
  float *grads = st->scratch[tid].grads;
  guint b0, b1;
  int l = (int) st->last;

  memset (grads, 0, net->n_params * sizeof (float));
  memset (st->scratch[tid].dwt, 0, net->n_params * sizeof (float));
  chunk_of (st->batch, tid, nt, &b0, &b1);
  while (l >= 0) {
    int e = l;
    while (e >= 0 && !is_sync_layer (st, (guint) e))
      e--;
    /* layers l down to e+1 image by image */
    for (guint b = b0; b < b1; b++)
      for (int j = l; j > e; j--) {
        if (j == job->extra_layer)
          add_extra_grad (net, st, job, b);
        if (j - 2 > e && train_pool_fused (net, st, (guint) j - 2)) {
          /* pool + ReLU backward in one scatter into the conv's output
           * gradient (per-thread: the ping-pong buffer of the conv's
           * output gradient is the one the pool's is read from), then
           * the conv */
          Layer *P = &net->layers[j];
          float *dyc = j == 2 && st->input_grad_lazy ? input_dy (st, b)
              : st->scratch[tid].pp[0];
          nn_relu_pool_backward (st->act[j] + b * P->out_size,
              grad_out (st, job->dout, j, b),
              st->argmax[j] + b * P->out_size, dyc, P->in.c, P->in.h,
              P->in.w, P->out.h, P->out.w);
          layer_backward_image (net, st, (guint) j - 2, b, tid, dyc,
              j == 2 && st->input_grad_lazy ? NULL : grad_in (st, j - 2, b),
              grads);
          j -= 2;
          continue;
        }
        layer_backward_image (net, st, (guint) j, b, tid,
            grad_out (st, job->dout, j, b), j == 0 && st->input_grad_lazy
            ? NULL : grad_in (st, j, b), grads);
      }
    if (e >= 0) {
      if (e == job->extra_layer)
        for (guint b = b0; b < b1; b++)
          add_extra_grad (net, st, job, b);
      bn_train_backward (net, st, (guint) e, tid, nt, b0, b1, job->dout);
    }
    l = e - 1;
  }
  for (guint j = 0; j <= st->last; j++) {
    Layer *L = &net->layers[j];
    if (L->s1)
      nn_conv_s1_dw_finish (st->scratch[tid].dwt + L->w_off,
          grads + L->w_off, L->out.c, L->in.c, L->k * L->k);
  }
}

void
cbir_net_backward (CbirNet *net, CbirNetState *st, const float *dout,
    float *grads)
{
  cbir_net_backward_extra (net, st, dout, 0, NULL, grads);
}

/* Layer l's output gradient lives in the ping-pong buffers (so `extra`
 * can be added there): l is below the last forwarded layer and its output
 * is stored by a training forward as it is (not a view, not a layer with
 * a fused ReLU, not one fused into a max-pool). */
gboolean
cbir_net_keeps_output (const CbirNet *net, guint l, guint last)
{
  g_return_val_if_fail (net != NULL, FALSE);
  if (l >= last || last >= net->n_layers || layer_is_view (&net->layers[l])
      || net->layers[l].fuse_relu)
    return FALSE;
  /* a conv (fuse_relu, above) or its ReLU (a view) fused into a pool */
  return TRUE;
}

const float *
cbir_net_state_output (CbirNetState *st, guint layer)
{
  g_return_val_if_fail (st != NULL && st->forwarded && st->training, NULL);
  g_return_val_if_fail (cbir_net_keeps_output (st->net, layer, st->last),
      NULL);
  return st->act[layer];
}

void
cbir_net_backward_extra (CbirNet *net, CbirNetState *st, const float *dout,
    guint extra_layer, const float *extra, float *grads)
{
  Job job = { net, st, dout, -1, NULL };
  guint nt;

  g_return_if_fail (st->net == net);
  g_return_if_fail (st->forwarded);
  if (extra) {
    g_return_if_fail (st->training
        && cbir_net_keeps_output (net, extra_layer, st->last));
    job.extra_layer = (int) extra_layer;
    job.extra = extra;
  }

  nt = threads_for_batch (net, st->batch);
  state_ensure_scratch (st, nt);
  if (st->lean) {
    /* backward through an inference forward (BN with running stats):
     * run it again keeping every layer's activations */
    st->lean = FALSE;
    pool_run (net->pool, nt, forward_job, &job);
  }
  st->input_grad_lazy = input_grad_deferred (net, st);
  pool_run (net->pool, nt, backward_job, &job);
  /* the caller is about to update the parameters */
  cbir_net_params_changed (net);
  /* add the per-thread blocks in thread order, trainable tensors only */
  for (guint i = 0; i < net->n_tensors; i++) {
    const CbirNetTensor *T = &net->tensors[i];
    if (!T->trainable)
      continue;
    for (guint t = 0; t < nt; t++) {
      const float *g = st->scratch[t].grads + T->offset;
      float *o = grads + T->offset;
      for (gsize j = 0; j < T->size; j++)
        o[j] += g[j];
    }
  }
  if (!st->input_grad_lazy)
    for (guint b = 0; b < st->batch; b++)
      memcpy (st->dinput + b * net->input_size, grad_in (st, 0, b),
          net->input_size * sizeof (float));
  st->have_input_grad = TRUE;
}

const float *
cbir_net_input_grad (CbirNetState *st)
{
  g_return_val_if_fail (st->have_input_grad, NULL);
  if (st->input_grad_lazy) {
    CbirNet *net = st->net;
    Layer *L = &net->layers[0];
    for (guint b = 0; b < st->batch; b++)
      nn_conv_s1_backward (st->input + b * net->input_size, st->wpackb[0],
          input_dy (st, b), st->dinput + b * net->input_size, NULL, NULL,
          L->cc, L->ch, L->cw, L->out.c, L->gh, L->gw, L->k, L->pt, L->pl,
          st->scratch[0].col, st->scratch[0].dcol, st->scratch[0].ebuf, NULL,
          NULL);
    st->input_grad_lazy = FALSE;
  }
  return st->dinput;
}

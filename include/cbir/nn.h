/* The neural-network core: a sequential stack of layers with batched
 * forward and backward passes on float32 NCHW tensors, one contiguous
 * parameter block (and gradient block), both cores used.
 *
 * Parameter layouts follow PyTorch, so a PyTorch state_dict saved with the
 * same names loads as is:
 *   conv2d            weight [out, in, k, k], bias [out]
 *   conv_transpose2d  weight [in, out, k, k], bias [out]
 *   dense             weight [out, in],       bias [out]
 *   batchnorm         weight (gamma) [C], bias (beta) [C],
 *                     running_mean [C], running_var [C] (not trainable)
 * Tensor names: "layers.<i>.weight", "layers.<i>.bias",
 * "layers.<i>.running_mean", "layers.<i>.running_var" (i = layer index).
 *
 * Padding: "same" follows Keras/TensorFlow (total pad split with the extra
 * row/column at the bottom/right); "valid" is no padding. A transposed conv
 * with stride s and "same" padding outputs in*s. Max-pool 2 floors odd
 * sizes (same = FALSE, the default, as PyTorch MaxPool2d(2) and Keras
 * padding="valid"); with same = TRUE it rounds up as Keras padding="same"
 * does (the last window of an odd size covers one row/column; Sicara's
 * 28-14-7-4 encoder needs this; PyTorch: MaxPool2d(2, ceil_mode=True));
 * ties pick the first maximum in row-major order. Up-sample 2 is
 * nearest neighbour.
 *
 * In PyTorch terms ("same" total padding t = max((out-1)*s + k - in, 0),
 * top/left t/2, bottom/right the rest):
 *   conv k3 s1 same = Conv2d(padding=1); k2 s1 same = F.pad(x, (0,1,0,1))
 *   then padding=0; k3 s2 same on an even size = F.pad(x, (0,1,0,1)) then
 *   padding=0 (NOT padding=1, which shifts the grid by one); on an odd
 *   size t = 2, i.e. padding=1.
 *   convT (Keras Conv2DTranspose): output pixel o = i*s + kk - p with
 *   p = max(k - s, 0) / 2 (same) or 0 (valid); out = in*s (same) or
 *   (in-1)*s + k (valid). valid = ConvTranspose2d(padding=0); same k2 s2 =
 *   padding=0; same k3 s2 = padding=0, output_padding=0 and then crop the
 *   last row and column (y[..., :2*in, :2*in]); (padding=1,
 *   output_padding=1 has the same size but is shifted by one pixel);
 *   same k3 s1 = padding=1; same k2 s1 = padding=0 then crop the last row
 *   and column.
 * A dense layer reads any input flattened in NCHW order (an explicit
 * flatten before it is optional).
 *
 * Batch-norm over (N, H, W) per channel; training mode
 * uses batch statistics (biased variance for normalising, and updates the
 * running stats with momentum: r = (1-m) r + m * batch, unbiased var), eval
 * mode uses the running stats. Flatten/reshape are views of the same NCHW
 * memory order (C-major), as in PyTorch. */
#pragma once

#include <cbir/common.h>

G_BEGIN_DECLS

typedef enum {
  CBIR_LAYER_CONV2D,
  CBIR_LAYER_CONV_TRANSPOSE2D,
  CBIR_LAYER_DENSE,
  CBIR_LAYER_RELU,
  CBIR_LAYER_LEAKY_RELU,
  CBIR_LAYER_SIGMOID,
  CBIR_LAYER_BATCHNORM,
  CBIR_LAYER_MAXPOOL2,
  CBIR_LAYER_UPSAMPLE2,
  CBIR_LAYER_FLATTEN,
  CBIR_LAYER_RESHAPE,
} CbirLayerKind;

/* One layer, as described by the architecture JSON. */
typedef struct {
  CbirLayerKind kind;
  int filters;                  /* conv/convT: output channels; dense: units */
  int kernel;                   /* conv: 2 or 3; convT: 2 or 3 */
  int stride;                   /* 1 or 2 */
  gboolean same;                /* TRUE: "same" padding, FALSE: "valid" */
  gboolean bias;                /* conv/convT/dense: has a bias (default TRUE) */
  float alpha;                  /* leaky relu negative slope (e.g. 0.2) */
  float eps;                    /* batchnorm epsilon (e.g. 1e-3) */
  float momentum;               /* batchnorm running-stat momentum (e.g. 0.01) */
  int shape[3];                 /* reshape target C, H, W */
} CbirLayerSpec;

typedef struct {
  int c, h, w;                  /* a dense output is c = units, h = w = 1 */
} CbirShape;

/* One named parameter tensor inside the parameter block. */
typedef struct {
  char *name;                   /* "layers.3.weight" */
  gsize offset;                 /* in floats, into cbir_net_params () */
  gsize size;                   /* number of floats */
  guint ndim;
  gint64 shape[4];
  gboolean trainable;           /* FALSE for running_mean / running_var */
} CbirNetTensor;

typedef struct _CbirNet CbirNet;

/* The most memory a network may need to run one image on one thread
 * (parameters, their packed copies, activations and scratch, as
 * cbir_net_memory_bytes () counts them): 2 GiB. A larger architecture is
 * refused when the network is built, before anything big is allocated. */
#define CBIR_NET_MAX_BYTES (G_GUINT64_CONSTANT (2) << 30)

/* Builds a network and checks that every layer fits its input shape
 * (error names the layer index and the shapes) and that one image fits
 * CBIR_NET_MAX_BYTES. Parameters are zero until cbir_net_init_params ().
 * Never aborts on a large architecture: a parameter block the system
 * cannot give is an error. */
CbirNet *cbir_net_new (CbirShape input, const CbirLayerSpec *layers,
    guint n_layers, GError **error);
/* As cbir_net_new (), but the parameter block is not allocated
 * (cbir_net_params () is NULL) until cbir_net_alloc_params (): lets a
 * loader check the tensors of a file against the layout first. */
CbirNet *cbir_net_new_layout (CbirShape input, const CbirLayerSpec *layers,
    guint n_layers, GError **error);
/* Allocates the zeroed parameter block of a cbir_net_new_layout () net
 * (no-op when it has one); FALSE with an error if memory is refused. */
gboolean cbir_net_alloc_params (CbirNet *net, GError **error);
/* Upper bound in bytes of what the network needs to run batches of
 * `batch` images on `threads` threads (training state included when
 * `training`): parameters, packed weights, per-layer activations,
 * per-thread scratch and, for training, gradients and optimiser moments.
 * Saturates at G_MAXUINT64. */
guint64 cbir_net_memory_bytes (const CbirNet *net, guint batch,
    guint threads, gboolean training);
void cbir_net_free (CbirNet *net);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirNet, cbir_net_free)

guint cbir_net_n_layers (const CbirNet *net);
const CbirLayerSpec *cbir_net_layer (const CbirNet *net, guint i);
CbirShape cbir_net_input_shape (const CbirNet *net);
/* Output shape of layer i. */
CbirShape cbir_net_output_shape (const CbirNet *net, guint i);

/* Deterministic initialisation from a seed, as Keras does: Glorot-uniform
 * weights, zero biases, BN gamma 1 beta 0, running mean 0 var 1. */
void cbir_net_init_params (CbirNet *net, guint64 seed);

gsize cbir_net_n_params (const CbirNet *net);
/* The parameter block. The caller may write it through this pointer
 * (calling cbir_net_params () counts as a change). */
float *cbir_net_params (CbirNet *net);
/* Tells the net its parameters changed (a writer that kept the pointer of
 * cbir_net_params () from before a forward must call this before the next
 * forward: eval-mode forwards reuse weights packed from the parameters).
 * cbir_net_params (), cbir_net_init_params () and cbir_net_backward () do
 * it themselves. */
void cbir_net_params_changed (CbirNet *net);
guint cbir_net_n_tensors (const CbirNet *net);
const CbirNetTensor *cbir_net_tensor (const CbirNet *net, guint i);
const CbirNetTensor *cbir_net_find_tensor (const CbirNet *net,
    const char *name);
/* The first tensor holding a NaN or an infinite value, NULL when all are
 * finite (or the parameter block is not allocated). */
const CbirNetTensor *cbir_net_find_non_finite (const CbirNet *net);

/* Worker threads used inside forward/backward (a persistent pool, no
 * thread start-up per call). Default cbir_default_threads (). Results are
 * bit-identical for a given thread count. */
void cbir_net_set_threads (CbirNet *net, guint n_threads);

/* Activations, gradients and scratch for batches of up to max_batch
 * images. One state per concurrent user; the net itself is only read by
 * forward/backward (except BN running stats in training mode). */
typedef struct _CbirNetState CbirNetState;
CbirNetState *cbir_net_state_new (CbirNet *net, guint max_batch);
void cbir_net_state_free (CbirNetState *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirNetState, cbir_net_state_free)

/* Runs layers [0, last] on `batch` inputs (NCHW, input shape). training:
 * BN uses batch statistics and updates the running stats, and the state
 * keeps what backward needs. Returns the output of layer `last` (owned by
 * the state, valid until the next call). */
const float *cbir_net_forward (CbirNet *net, CbirNetState *st,
    const float *input, guint batch, guint last, gboolean training);

/* Back-propagates d(loss)/d(output of the last forwarded layer) through
 * all forwarded layers (after a training forward of the same batch) and
 * ADDS the parameter gradients into `grads` (cbir_net_n_params floats,
 * same layout as the parameter block). Non-trainable slots untouched. */
void cbir_net_backward (CbirNet *net, CbirNetState *st, const float *dout,
    float *grads);

/* As cbir_net_backward (), for a loss that also depends on the output of
 * layer `extra_layer` (below the last forwarded layer): `extra` (batch *
 * that layer's output size floats) is d(that loss)/d(its output), added
 * to what flows back from above (NULL: none). The layer's output must be
 * kept by a training forward: cbir_net_state_output () returns it. */
void cbir_net_backward_extra (CbirNet *net, CbirNetState *st,
    const float *dout, guint extra_layer, const float *extra, float *grads);

/* The output of layer `layer` in the last training forward (batch * its
 * output size floats, owned by the state), for a loss on an inner layer
 * such as the code; NULL (and a critical) for the last forwarded layer
 * (use the forward's return value), a view (flatten, reshape, a fused
 * activation) or a conv or ReLU fused into a following max-pool, whose
 * outputs a training forward does not store. */
const float *cbir_net_state_output (CbirNetState *st, guint layer);
/* Whether a training forward up to layer `last` keeps layer `layer`'s
 * output (so cbir_net_state_output () and cbir_net_backward_extra () take
 * it). */
gboolean cbir_net_keeps_output (const CbirNet *net, guint layer,
    guint last);

/* Gradient w.r.t. the network input after the last backward (for tests),
 * batch * input size floats. */
const float *cbir_net_input_grad (CbirNetState *st);

/* The architecture-JSON name of a layer kind ("conv2d", "dense",
 * "leaky_relu", ...); "unknown" for a value outside the enum. */
const char *cbir_layer_kind_to_string (CbirLayerKind k);

G_END_DECLS

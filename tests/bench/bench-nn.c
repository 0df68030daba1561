/* Benchmark of the neural-network core: training (forward + backward)
 * images/s of the keras-dae and sicara networks at batch 128 with 1 and 2
 * threads, and encoder latency at batch 1 (us/image) and throughput at
 * batch 256 (images/s). Prints figures; never a pass/fail test.
 *
 *   build/tests/bench/bench-nn [seconds-per-figure [network [what]]]
 *
 * seconds default 2; network: keras-dae, sicara or all (default); what:
 * train, encode or all (default). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include <cbir/nn.h>

static CbirLayerSpec
conv (int filters, gboolean same)
{
  CbirLayerSpec l = { 0 };
  l.kind = CBIR_LAYER_CONV2D;
  l.filters = filters;
  l.kernel = 3;
  l.stride = 1;
  l.same = same;
  l.bias = TRUE;
  return l;
}

static CbirLayerSpec
simple (CbirLayerKind kind, gboolean same)
{
  CbirLayerSpec l = { 0 };
  l.kind = kind;
  l.same = same;
  return l;
}

#define RELU simple (CBIR_LAYER_RELU, FALSE)
#define POOL simple (CBIR_LAYER_MAXPOOL2, FALSE)
#define POOL_SAME simple (CBIR_LAYER_MAXPOOL2, TRUE)
#define UP simple (CBIR_LAYER_UPSAMPLE2, FALSE)
#define SIGMOID simple (CBIR_LAYER_SIGMOID, FALSE)

typedef struct {
  const char *name;
  CbirLayerSpec layers[32];
  guint n;
  guint code_layer;             /* last encoder layer */
} Arch;

static double seconds = 2.0;
static const char *only_net, *only_what;

static gboolean
want (const char *what)
{
  return !only_what || strcmp (only_what, what) == 0;
}

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

/* CPU time of the whole process (all threads): on a loaded machine,
 * images per CPU-second shows the work done independently of the wait */
static double
cpu_now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double last_cpu_s;

/* training: forward (training mode) + BCE-like output gradient + backward */
static double
bench_train (CbirNet *net, guint batch, guint threads)
{
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, batch);
  gsize n = 784 * (gsize) batch;
  g_autofree float *x = g_new (float, n);
  g_autofree float *dy = g_new (float, n);
  g_autofree float *grads = g_new0 (float, cbir_net_n_params (net));
  guint last = cbir_net_n_layers (net) - 1;
  guint iters = 0;
  double t0, t;

  cbir_net_set_threads (net, threads);
  for (gsize i = 0; i < n; i++)
    x[i] = (float) ((i * 2654435761u) % 1000) / 1000.0f;
  /* warm-up */
  for (int i = 0; i < 2; i++) {
    const float *y = cbir_net_forward (net, st, x, batch, last, TRUE);
    for (gsize j = 0; j < n; j++)
      dy[j] = (y[j] - x[j]) / (float) n;
    cbir_net_backward (net, st, dy, grads);
  }
  t0 = now ();
  last_cpu_s = cpu_now ();
  do {
    const float *y = cbir_net_forward (net, st, x, batch, last, TRUE);
    for (gsize j = 0; j < n; j++)
      dy[j] = (y[j] - x[j]) / (float) n;
    cbir_net_backward (net, st, dy, grads);
    iters++;
    t = now () - t0;
  } while (t < seconds);
  last_cpu_s = cpu_now () - last_cpu_s;
  last_cpu_s /= iters * (double) batch;
  return iters * (double) batch / t;
}

/* encode: eval-mode forward up to the code layer; returns s per image */
static double
bench_encode (CbirNet *net, guint code_layer, guint batch, guint threads)
{
  g_autoptr (CbirNetState) st = cbir_net_state_new (net, batch);
  gsize n = 784 * (gsize) batch;
  g_autofree float *x = g_new (float, n);
  guint iters = 0;
  double t0, t;

  cbir_net_set_threads (net, threads);
  for (gsize i = 0; i < n; i++)
    x[i] = (float) ((i * 2654435761u) % 1000) / 1000.0f;
  for (int i = 0; i < 10; i++)
    cbir_net_forward (net, st, x, batch, code_layer, FALSE);
  t0 = now ();
  last_cpu_s = cpu_now ();
  do {
    for (int i = 0; i < 10; i++)
      cbir_net_forward (net, st, x, batch, code_layer, FALSE);
    iters += 10;
    t = now () - t0;
  } while (t < seconds);
  last_cpu_s = (cpu_now () - last_cpu_s) / ((double) iters * batch);
  return t / ((double) iters * batch);
}

int
main (int argc, char **argv)
{
  CbirShape in = { 1, 28, 28 };
  Arch archs[2] = {
    {"keras-dae", {
      conv (32, TRUE), RELU, POOL, conv (32, TRUE), RELU, POOL,
      conv (32, TRUE), RELU, UP, conv (32, TRUE), RELU, UP,
      conv (1, TRUE), SIGMOID}, 14, 5},
    {"sicara", {
      conv (16, TRUE), RELU, POOL, conv (8, TRUE), RELU, POOL,
      conv (8, TRUE), RELU, POOL_SAME,
      conv (8, TRUE), RELU, UP, conv (8, TRUE), RELU, UP,
      conv (16, FALSE), RELU, UP, conv (1, TRUE), SIGMOID}, 20, 8},
  };
  guint ncpu = g_get_num_processors ();

  if (argc > 1)
    seconds = atof (argv[1]);
  if (!(seconds > 0))
    seconds = 2.0;
  if (argc > 2 && strcmp (argv[2], "all") != 0)
    only_net = argv[2];
  if (argc > 3 && strcmp (argv[3], "all") != 0)
    only_what = argv[3];
  printf ("# gst-cbir nn benchmark (%u cores, %.1f s per figure)\n", ncpu,
      seconds);
  printf ("%-10s %-28s %12s\n", "network", "measure", "figure");
  for (guint a = 0; a < G_N_ELEMENTS (archs); a++) {
    g_autoptr (GError) err = NULL;
    g_autoptr (CbirNet) net = NULL;

    if (only_net && strcmp (only_net, archs[a].name) != 0)
      continue;
    net = cbir_net_new (in, archs[a].layers, archs[a].n, &err);
    if (!net) {
      fprintf (stderr, "%s: %s\n", archs[a].name, err->message);
      return 1;
    }
    cbir_net_init_params (net, 1);
    for (guint t = 1; t <= 2 && want ("train"); t++) {
      double ips = bench_train (net, 128, t);
      printf ("%-10s train b128 %u thread%s %9s %9.0f img/s"
          "  (%.0f us CPU/img)\n", archs[a].name, t, t > 1 ? "s" : " ", "",
          ips, last_cpu_s * 1e6);
      fflush (stdout);
    }
    if (want ("encode")) {
      double s1, s256, c1, c256;
      s1 = bench_encode (net, archs[a].code_layer, 1, 2);
      c1 = last_cpu_s;
      s256 = bench_encode (net, archs[a].code_layer, 256, 2);
      c256 = last_cpu_s;
      printf ("%-10s encode b1 (us/image) %18.1f us     (%.1f us CPU/img)\n",
          archs[a].name, s1 * 1e6, c1 * 1e6);
      printf ("%-10s encode b256 2 threads %17.0f img/s  (%.1f us CPU/img)\n",
          archs[a].name, 1.0 / s256, c256 * 1e6);
      fflush (stdout);
    }
  }
  return 0;
}

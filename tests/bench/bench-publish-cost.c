/* bench-publish-cost: the CPU that publishing itself costs per result,
 * apart from the search that makes the results.
 *
 * The real results of FRAMES MNIST query digits (cbiridxsrc ! cbirencode !
 * cbirsearch, metas and all) are made once and kept; then, for each SINK
 * (a gst-launch description), `appsrc ! SINK` is fed those buffers at RATE
 * frames/s (paced, as a live source would be: how results are batched
 * depends on the rate) and the process's CPU time (user + system, all its
 * threads, libmosquitto's and librdkafka's included) is measured. The
 * first SINK is the reference (fakesink); the others print their CPU per
 * result above it, the median of REPS runs taken in turn.
 *
 * Columns: CPU us per result; above the reference; that as a share of one
 * CPU at RATE results/s; and, with PIPELINE_US (the whole pipeline's CPU
 * per frame, measured by the caller), as a share of that.
 *
 * usage: bench-publish-cost MODEL GALLERY IMAGES NAME=SINK...
 * Environment: FRAMES (5000), RATE (1000; 0: as fast as it goes), REPS (5),
 * PIPELINE_US.
 * tests/bench/bench-publish.sh runs it with a mosquitto and the Kafka mock
 * and relates the figures to the whole pipeline's CPU per frame.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include <gst/gst.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static guint
env_uint (const gchar * name, guint def)
{
  const gchar *v = g_getenv (name);

  return v && *v ? (guint) g_ascii_strtoull (v, NULL, 10) : def;
}

static gdouble
cpu_seconds (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
      (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static GstElement *
launch (const gchar * desc)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);

  if (!p) {
    g_printerr ("bench-publish-cost: %s: %s\n", desc, err->message);
    exit (1);
  }
  return p;
}

/* waits for EOS; an error ends the benchmark */
static void
wait_eos (GstElement * p, const gchar * what)
{
  GstBus *bus = gst_element_get_bus (p);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);

  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
    GError *err = NULL;

    gst_message_parse_error (m, &err, NULL);
    g_printerr ("bench-publish-cost: %s: %s\n", what, err->message);
    exit (1);
  }
  gst_message_unref (m);
  gst_object_unref (bus);
}

/* the results, made once */
static GPtrArray *
make_results (const gchar * model, const gchar * gallery,
    const gchar * images, guint n, GstCaps ** caps)
{
  gchar *desc = g_strdup_printf ("cbiridxsrc images=\"%s\" loop=true "
      "num-buffers=%u ! cbirencode model=\"%s\" ! cbirsearch gallery=\"%s\" "
      "post-messages=false rerank=none ! appsink name=out sync=false",
      images, n, model, gallery);
  GstElement *p = launch (desc);
  GstAppSink *out = GST_APP_SINK (gst_bin_get_by_name (GST_BIN (p), "out"));
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_buffer_unref);
  GstSample *s;

  gst_element_set_state (p, GST_STATE_PLAYING);
  while ((s = gst_app_sink_pull_sample (out))) {
    if (!*caps)
      *caps = gst_caps_ref (gst_sample_get_caps (s));
    g_ptr_array_add (bufs, gst_buffer_ref (gst_sample_get_buffer (s)));
    gst_sample_unref (s);
  }
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (out);
  gst_object_unref (p);
  g_free (desc);
  if (bufs->len != n) {
    g_printerr ("bench-publish-cost: %u results made, %u wanted\n",
        bufs->len, n);
    exit (1);
  }
  return bufs;
}

/* CPU seconds of one run of appsrc ! SINK over the results */
static gdouble
run_once (const gchar * sink, GPtrArray * bufs, GstCaps * caps, guint rate)
{
  gchar *desc = g_strdup_printf ("appsrc name=in format=time ! %s", sink);
  GstElement *p = launch (desc);
  GstAppSrc *in = GST_APP_SRC (gst_bin_get_by_name (GST_BIN (p), "in"));
  struct timespec start, at;
  gdouble cpu;
  guint i;

  gst_app_src_set_caps (in, caps);
  g_object_set (in, "max-buffers", (guint64) 64, "block", TRUE, NULL);
  gst_element_set_state (p, GST_STATE_PLAYING);
  cpu = cpu_seconds ();
  clock_gettime (CLOCK_MONOTONIC, &start);
  for (i = 0; i < bufs->len; i++) {
    GstBuffer *b = gst_buffer_copy (g_ptr_array_index (bufs, i));

    GST_BUFFER_PTS (b) = rate ? gst_util_uint64_scale (i, GST_SECOND, rate)
        : i * (GST_SECOND / 1000);
    if (rate) {
      guint64 ns = (guint64) start.tv_nsec +
          gst_util_uint64_scale (i, GST_SECOND, rate);

      at.tv_sec = start.tv_sec + (time_t) (ns / GST_SECOND);
      at.tv_nsec = (long) (ns % GST_SECOND);
      clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
    }
    gst_app_src_push_buffer (in, b);
  }
  gst_app_src_end_of_stream (in);
  wait_eos (p, sink);
  cpu = cpu_seconds () - cpu;
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (in);
  gst_object_unref (p);
  g_free (desc);
  return cpu;
}

static gint
cmp_double (gconstpointer a, gconstpointer b)
{
  gdouble x = *(const gdouble *) a, y = *(const gdouble *) b;

  return x < y ? -1 : x > y;
}

int
main (int argc, char **argv)
{
  guint frames = env_uint ("FRAMES", 5000), rate = env_uint ("RATE", 1000);
  guint reps = MAX (env_uint ("REPS", 5), 1), nsinks, i, r;
  GstCaps *caps = NULL;
  GPtrArray *bufs;
  gdouble *cpu, ref = 0;

  gst_init (&argc, &argv);
  if (argc < 5) {
    g_printerr ("usage: %s MODEL GALLERY IMAGES NAME=SINK...\n"
        "(the first SINK is the reference, e.g. ref=fakesink)\n", argv[0]);
    return 2;
  }
  bufs = make_results (argv[1], argv[2], argv[3], frames, &caps);
  nsinks = (guint) argc - 4;
  cpu = g_new0 (gdouble, nsinks * reps);
  for (r = 0; r < reps; r++)
    for (i = 0; i < nsinks; i++) {
      const gchar *eq = strchr (argv[4 + i], '=');

      cpu[i * reps + r] = run_once (eq ? eq + 1 : argv[4 + i], bufs, caps,
          rate);
    }
  gdouble pipeline_us = g_ascii_strtod (g_getenv ("PIPELINE_US") ?
      g_getenv ("PIPELINE_US") : "0", NULL);

  printf ("%-11s %13s %9s %12s %13s\n", "sink", "CPU us/result",
      "above ref", "CPU at rate", "of pipeline");
  for (i = 0; i < nsinks; i++) {
    const gchar *eq = strchr (argv[4 + i], '=');
    gchar *name = eq ? g_strndup (argv[4 + i], eq - argv[4 + i]) :
        g_strdup (argv[4 + i]);
    gdouble med;

    qsort (cpu + i * reps, reps, sizeof (gdouble), cmp_double);
    med = cpu[i * reps + reps / 2] * 1e6 / frames;
    if (i == 0) {
      ref = med;
      printf ("%-11s %13.1f\n", name, med);
    } else {
      printf ("%-11s %13.1f %+9.1f", name, med, med - ref);
      if (rate)
        printf (" %11.2f%%", (med - ref) * rate / 1e4);
      else
        printf (" %12s", "");
      if (pipeline_us > 0)
        printf (" %+12.1f%%", 100 * (med - ref) / pipeline_us);
      printf ("\n");
    }
    g_free (name);
  }
  g_free (cpu);
  g_ptr_array_unref (bufs);
  gst_caps_unref (caps);
  return 0;
}

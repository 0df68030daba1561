/* bench-enrol: what enrolment costs (issue 13), on a 60,000-item gallery of
 * random 32-float codes (the default model's code size; the plain search
 * of the gallery does not depend on what the codes are).
 *
 *   bench-enrol [--items 60000] [--dim 32] [--enrolments 1000]
 *               [--dir DIR]
 *
 * Prints: the latency of one enrolment from the call to visible (the
 * journal record written and fdatasync()ed, then in memory; the next search
 * finds it), median and 90th percentile; the time to open the gallery's
 * enrolments with N records in the journal (the replay at start); and one
 * query's search time (plain k-NN of the gallery, k 5) alone and with the
 * enrolled items merged beside it, for 0, 100, 1,000 and 10,000 enrolled
 * items. The journal goes to DIR (default: the current directory; the
 * fdatasync cost is that file system's). Figures only. */
#include <cbir/enrolment.h>
#include <cbir/gallery.h>
#include <cbir/search.h>

#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gint opt_items = 60000, opt_dim = 32, opt_enrolments = 1000;
static gchar *opt_dir;

static GOptionEntry entries[] = {
  {"items", 'n', 0, G_OPTION_ARG_INT, &opt_items, "Gallery items (60000)",
      "N"},
  {"dim", 'd', 0, G_OPTION_ARG_INT, &opt_dim, "Code floats (32)", "D"},
  {"enrolments", 'e', 0, G_OPTION_ARG_INT, &opt_enrolments,
      "Enrolments timed (1000)", "N"},
  {"dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_dir,
      "Directory of the journal (.)", "DIR"},
  {NULL}
};

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

static void
random_code (GRand *r, float *v, guint dim)
{
  for (guint i = 0; i < dim; i++)
    v[i] = (float) g_rand_double_range (r, -1, 1);
}

/* one query's search (+ merge), median over 200 queries, in ms */
static double
query_ms (CbirSearcher *s, CbirEnrolments *e, GRand *r, guint dim)
{
  double t[200];
  float q[256];
  CbirHit base[64], out[8];

  for (guint i = 0; i < 200; i++) {
    double t0;
    guint n;

    random_code (r, q, dim);
    t0 = now ();
    n = cbir_searcher_search (s, q, 5 + (e ? cbir_enrolments_n_removed (e) :
            0), base);
    if (e)
      cbir_enrolments_merge (e, CBIR_METRIC_L2, q, base, n, 5, out);
    t[i] = (now () - t0) * 1000;
  }
  qsort (t, 200, sizeof (double), cmp_double);
  return t[100];
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- enrolment cost");
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirGalleryBuilder) b = NULL;
  g_autoptr (CbirGallery) g = NULL;
  g_autoptr (CbirSearcher) s = NULL;
  g_autofree char *journal = NULL, *fp = NULL;
  g_autofree double *lat = NULL;
  GRand *r = g_rand_new_with_seed (1);
  CbirEnrolments *e;
  float *v;
  guint dim, total = 0;
  const guint sizes[] = { 0, 100, 1000, 10000 };

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &err)) {
    fprintf (stderr, "bench-enrol: %s\n", err->message);
    return 2;
  }
  dim = (guint) opt_dim;
  if (dim == 0 || dim > 256 || opt_items < 2 || opt_enrolments < 1) {
    fprintf (stderr, "bench-enrol: --dim 1..256, --items >= 2, "
        "--enrolments >= 1\n");
    return 2;
  }
  v = g_new (float, dim);
  fp = g_strnfill (64, 'a');
  b = cbir_gallery_builder_new (fp, CBIR_CODE_FLOAT, dim, FALSE);
  for (gint i = 0; i < opt_items; i++) {
    random_code (r, v, dim);
    cbir_gallery_builder_add (b, v, i % 10, NULL, NULL);
  }
  g = cbir_gallery_builder_build (b);
  s = cbir_searcher_new_full (g, CBIR_METRIC_L2, 0, 1, &err);
  journal = g_build_filename (opt_dir ? opt_dir : ".",
      "bench-enrol.journal", NULL);
  g_remove (journal);
  e = cbir_enrolments_new (g, journal, &err);
  if (!e) {
    fprintf (stderr, "bench-enrol: %s\n", err->message);
    return 1;
  }
  printf ("gallery: %d items of %u floats; journal %s\n", opt_items, dim,
      journal);

  printf ("%-10s %14s %14s %12s\n", "enrolled", "search ms", "+ merge ms",
      "replay ms");
  for (guint si = 0; si < G_N_ELEMENTS (sizes); si++) {
    double plain, merged, t0;
    CbirEnrolments *e2;

    /* bring the journal to sizes[si] records */
    while (total < sizes[si]) {
      char id[32];
      g_snprintf (id, sizeof id, "e%u", total++);
      random_code (r, v, dim);
      cbir_enrolments_enrol (e, id, 1, v, NULL);
    }
    t0 = now ();
    e2 = cbir_enrolments_new (g, journal, &err);
    t0 = (now () - t0) * 1000;
    plain = query_ms (s, NULL, r, dim);
    merged = query_ms (s, sizes[si] ? e2 : NULL, r, dim);
    printf ("%-10u %14.3f %14.3f %12.1f\n", sizes[si], plain, merged,
        sizes[si] ? t0 : 0.0);
    cbir_enrolments_free (e2);
  }
  /* call to visible */
  lat = g_new (double, opt_enrolments);
  for (gint i = 0; i < opt_enrolments; i++) {
    char id[32];
    double t0;

    g_snprintf (id, sizeof id, "t%d", i);
    random_code (r, v, dim);
    t0 = now ();
    if (!cbir_enrolments_enrol (e, id, i % 10, v, &err)) {
      fprintf (stderr, "bench-enrol: %s\n", err->message);
      return 1;
    }
    lat[i] = (now () - t0) * 1000;
  }
  qsort (lat, opt_enrolments, sizeof (double), cmp_double);
  printf ("enrolment, call to visible (journal fdatasync + memory): median "
      "%.3f ms, 90th percentile %.3f ms (%d enrolments)\n",
      lat[opt_enrolments / 2], lat[opt_enrolments * 9 / 10], opt_enrolments);

  cbir_enrolments_free (e);
  g_remove (journal);
  g_free (v);
  g_rand_free (r);
  return 0;
}

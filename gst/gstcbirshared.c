/* gst-cbir: galleries shared by the elements of one process.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirshared.h"

#include <stdlib.h>

struct _GstCbirSharedGallery
{
  gchar *key;
  guint refs;                   /* registry lock */
  CbirGallery *gallery;
  CbirEnrolments *enrolments;
  GMutex scorer_lock;
  CbirMatchScorer *scorers[3];  /* by CbirMetric */
};

static GMutex registry_lock;
static GHashTable *registry;    /* key -> GstCbirSharedGallery */

/* the file itself (its real path) and the journal */
static gchar *
make_key (const gchar * path, const gchar * journal)
{
  gchar *real = realpath (path, NULL);
  gchar *real_journal = NULL;
  gchar *key;

  if (journal && *journal) {
    real_journal = realpath (journal, NULL);
    if (real_journal == NULL)
      real_journal = g_canonicalize_filename (journal, NULL);
  }
  key = g_strdup_printf ("%s\n%s", real ? real : path,
      real_journal ? real_journal : "");
  free (real);
  g_free (real_journal);
  return key;
}

static void
shared_free (GstCbirSharedGallery * sg)
{
  guint i;

  cbir_enrolments_free (sg->enrolments);
  for (i = 0; i < G_N_ELEMENTS (sg->scorers); i++)
    cbir_match_scorer_free (sg->scorers[i]);
  cbir_gallery_free (sg->gallery);
  g_mutex_clear (&sg->scorer_lock);
  g_free (sg->key);
  g_free (sg);
}

GstCbirSharedGallery *
gst_cbir_shared_gallery_get (const gchar * path, const gchar * journal,
    GError ** error)
{
  gchar *key = make_key (path, journal);
  GstCbirSharedGallery *sg;

  g_mutex_lock (&registry_lock);
  if (registry == NULL)
    registry = g_hash_table_new (g_str_hash, g_str_equal);
  sg = g_hash_table_lookup (registry, key);
  if (sg) {
    sg->refs++;
    g_free (key);
    g_mutex_unlock (&registry_lock);
    return sg;
  }
  sg = g_new0 (GstCbirSharedGallery, 1);
  sg->key = key;
  sg->refs = 1;
  g_mutex_init (&sg->scorer_lock);
  sg->gallery = cbir_gallery_open (path, error);
  if (sg->gallery && cbir_gallery_get_features (sg->gallery)) {
    sg->enrolments = cbir_enrolments_new (sg->gallery, journal && *journal ?
        journal : NULL, error);
    if (sg->enrolments == NULL)
      g_clear_pointer (&sg->gallery, cbir_gallery_free);
  }
  if (sg->gallery == NULL) {
    g_mutex_unlock (&registry_lock);
    shared_free (sg);
    return NULL;
  }
  g_hash_table_insert (registry, sg->key, sg);
  g_mutex_unlock (&registry_lock);
  return sg;
}

void
gst_cbir_shared_gallery_unref (GstCbirSharedGallery * sg)
{
  gboolean last;

  if (sg == NULL)
    return;
  g_mutex_lock (&registry_lock);
  last = --sg->refs == 0;
  if (last)
    g_hash_table_remove (registry, sg->key);
  g_mutex_unlock (&registry_lock);
  if (last)
    shared_free (sg);
}

CbirGallery *
gst_cbir_shared_gallery_gallery (GstCbirSharedGallery * sg)
{
  return sg->gallery;
}

CbirEnrolments *
gst_cbir_shared_gallery_enrolments (GstCbirSharedGallery * sg)
{
  return sg->enrolments;
}

CbirMatchScorer *
gst_cbir_shared_gallery_scorer (GstCbirSharedGallery * sg, CbirMetric metric,
    GError ** error)
{
  CbirMatchScorer *m;

  g_return_val_if_fail ((guint) metric < G_N_ELEMENTS (sg->scorers), NULL);
  g_mutex_lock (&sg->scorer_lock);
  if (sg->scorers[metric] == NULL)
    sg->scorers[metric] = cbir_match_scorer_new (sg->gallery, metric, 0,
        error);
  m = sg->scorers[metric];
  g_mutex_unlock (&sg->scorer_lock);
  return m;
}

guint
gst_cbir_shared_gallery_users (GstCbirSharedGallery * sg)
{
  guint n;

  g_mutex_lock (&registry_lock);
  n = sg->refs;
  g_mutex_unlock (&registry_lock);
  return n;
}

/* Enrolment: a gallery that grows while it is searched (see
 * include/cbir/enrolment.h). */
#include "config.h"

#include "cbir/enrolment.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct
{
  char *id;
  gint32 label;
  gboolean removed;
} Item;

struct _CbirEnrolments
{
  const CbirGallery *g;
  guint n_base;
  guint dim;
  char *journal_path;
  CbirJournalGallery owner;     /* the gallery, as its journal names it */
  CbirJournal *journal;         /* NULL until there is one */

  GRWLock lock;                 /* everything below */
  GArray *items;                /* of Item, by slot */
  GArray *codes;                /* of float, dim per slot */
  GHashTable *enrolled;         /* live id -> slot + 1 */
  GHashTable *removed;          /* gallery index + 1 -> 1 */
  GHashTable *relabelled;       /* gallery index + 1 -> label */
  GHashTable *source_ids;       /* source id -> gallery index + 1 (lazy) */
  GHashTable *ops;              /* operation ids applied (owned) */
  GHashTable *sizes;            /* label -> items carrying it now */
};

typedef enum { NONE, BASE, ENROLLED } Kind;

/* What id names: a gallery item ("#INDEX" or its source id) or an
 * enrolled one. With the lock held. */
static Kind
resolve (CbirEnrolments *e, const char *id, guint *where)
{
  gpointer v = g_hash_table_lookup (e->enrolled, id);
  guint64 idx;

  if (v) {
    *where = GPOINTER_TO_UINT (v) - 1;
    return ENROLLED;
  }
  if (id[0] == '#' && g_ascii_string_to_unsigned (id + 1, 10, 0,
          G_MAXUINT, &idx, NULL) && idx < e->n_base) {
    *where = (guint) idx;
    return BASE;
  }
  if (e->source_ids == NULL) {
    e->source_ids = g_hash_table_new (g_str_hash, g_str_equal);
    for (guint i = 0; i < e->n_base; i++) {
      const char *s = cbir_gallery_get_id (e->g, i);
      if (s && *s && !g_hash_table_contains (e->source_ids, s))
        g_hash_table_insert (e->source_ids, (gpointer) s,
            GUINT_TO_POINTER (i + 1));
    }
  }
  v = g_hash_table_lookup (e->source_ids, id);
  if (v) {
    *where = GPOINTER_TO_UINT (v) - 1;
    return BASE;
  }
  return NONE;
}

/* Items carrying label: delta more; with the write lock. */
static void
count_label (CbirEnrolments *e, gint32 label, gint delta)
{
  gpointer key = GINT_TO_POINTER (label);
  gint c = GPOINTER_TO_INT (g_hash_table_lookup (e->sizes, key)) + delta;
  g_hash_table_insert (e->sizes, key, GINT_TO_POINTER (MAX (c, 0)));
}

/* Base item `where`: its label now, and whether it was removed. */
static gint32
base_label (CbirEnrolments *e, guint where, gboolean *removed)
{
  gpointer lab;

  *removed = g_hash_table_contains (e->removed, GUINT_TO_POINTER (where + 1));
  if (g_hash_table_lookup_extended (e->relabelled,
          GUINT_TO_POINTER (where + 1), NULL, &lab))
    return GPOINTER_TO_INT (lab);
  return cbir_gallery_get_labels (e->g)[where];
}

/* Applies one record (validated) to the state; with the write lock. FALSE
 * when it names nothing (a remove or relabel of an unknown id). */
static gboolean
apply (CbirEnrolments *e, const CbirJournalRecord *r)
{
  guint where;
  Kind k = resolve (e, r->id, &where);
  gboolean gone = FALSE;
  gint32 old = k == BASE ? base_label (e, where, &gone) :
      k == ENROLLED ? g_array_index (e->items, Item, where).label : 0;

  if (r->op_id)
    g_hash_table_add (e->ops, g_strdup (r->op_id));
  switch (r->op) {
    case CBIR_JOURNAL_ENROL:{
      Item it = { NULL, r->label, FALSE };

      if (k == ENROLLED)
        return TRUE;            /* replayed: already there */
      it.id = g_strdup (r->id);
      g_array_append_val (e->items, it);
      g_array_append_vals (e->codes, r->code, e->dim);
      g_hash_table_insert (e->enrolled, it.id,
          GUINT_TO_POINTER (e->items->len));
      count_label (e, r->label, 1);
      return TRUE;
    }
    case CBIR_JOURNAL_REMOVE:
      if (k != NONE && !gone)
        count_label (e, old, -1);
      if (k == BASE)
        g_hash_table_add (e->removed, GUINT_TO_POINTER (where + 1));
      else if (k == ENROLLED) {
        g_array_index (e->items, Item, where).removed = TRUE;
        g_hash_table_remove (e->enrolled, r->id);
      }
      return k != NONE;
    case CBIR_JOURNAL_RELABEL:
      if (k != NONE && !gone) {
        count_label (e, old, -1);
        count_label (e, r->label, 1);
      }
      if (k == BASE)
        g_hash_table_insert (e->relabelled, GUINT_TO_POINTER (where + 1),
            GINT_TO_POINTER (r->label));
      else if (k == ENROLLED)
        g_array_index (e->items, Item, where).label = r->label;
      return k != NONE;
  }
  return FALSE;
}

static void
item_clear (Item *it)
{
  g_free (it->id);
}

CbirEnrolments *
cbir_enrolments_new (const CbirGallery *g, const char *journal_path,
    GError **error)
{
  g_autoptr (CbirEnrolments) e = NULL;
  GError *err = NULL;

  if (cbir_gallery_get_features (g) == NULL) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "%s: enrolment needs a gallery of float codes",
        cbir_gallery_get_path (g));
    return NULL;
  }
  e = g_new0 (CbirEnrolments, 1);
  e->g = g;
  e->n_base = cbir_gallery_size (g);
  e->dim = cbir_gallery_get_dim (g);
  e->journal_path = journal_path ? g_strdup (journal_path) :
      g_strconcat (cbir_gallery_get_path (g), ".journal", NULL);
  g_rw_lock_init (&e->lock);
  e->items = g_array_new (FALSE, FALSE, sizeof (Item));
  g_array_set_clear_func (e->items, (GDestroyNotify) item_clear);
  e->codes = g_array_new (FALSE, FALSE, sizeof (float));
  e->enrolled = g_hash_table_new (g_str_hash, g_str_equal);
  e->removed = g_hash_table_new (NULL, NULL);
  e->relabelled = g_hash_table_new (NULL, NULL);
  e->ops = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  e->sizes = cbir_gallery_count_labels (g);

  cbir_journal_gallery_init (&e->owner, g);
  e->journal = cbir_journal_open (e->journal_path, &e->owner, FALSE, &err);
  if (e->journal == NULL) {
    if (!g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO) ||
        g_file_test (e->journal_path, G_FILE_TEST_EXISTS)) {
      g_propagate_error (error, err);
      return NULL;
    }
    g_clear_error (&err);       /* none yet */
  } else {
    for (guint i = 0; i < cbir_journal_n_records (e->journal); i++)
      apply (e, cbir_journal_get (e->journal, i));
  }
  return g_steal_pointer (&e);
}

void
cbir_enrolments_free (CbirEnrolments *e)
{
  if (!e)
    return;
  cbir_journal_free (e->journal);
  g_hash_table_unref (e->enrolled);
  g_hash_table_unref (e->removed);
  g_hash_table_unref (e->relabelled);
  g_clear_pointer (&e->sizes, g_hash_table_unref);
  g_hash_table_unref (e->ops);
  if (e->source_ids)
    g_hash_table_unref (e->source_ids);
  g_array_unref (e->items);
  g_array_unref (e->codes);
  g_rw_lock_clear (&e->lock);
  g_free (e->journal_path);
  g_free (e);
}

const char *
cbir_enrolments_get_journal_path (const CbirEnrolments *e)
{
  return e->journal_path;
}

guint
cbir_enrolments_n_enrolled (const CbirEnrolments *e)
{
  CbirEnrolments *m = (CbirEnrolments *) e;
  guint n;

  g_rw_lock_reader_lock (&m->lock);
  n = g_hash_table_size (m->enrolled);
  g_rw_lock_reader_unlock (&m->lock);
  return n;
}

guint
cbir_enrolments_n_removed (const CbirEnrolments *e)
{
  CbirEnrolments *m = (CbirEnrolments *) e;
  guint n;

  g_rw_lock_reader_lock (&m->lock);
  n = g_hash_table_size (m->removed);
  g_rw_lock_reader_unlock (&m->lock);
  return n;
}

/* Writes r to the journal (opened or created on first use) and applies
 * it; with the write lock. */
static gboolean
record (CbirEnrolments *e, const CbirJournalRecord *r, GError **error)
{
  if (e->journal == NULL) {
    e->journal = cbir_journal_open (e->journal_path, &e->owner, TRUE, error);
    if (e->journal == NULL)
      return FALSE;
  }
  if (!cbir_journal_append (e->journal, r, error))
    return FALSE;
  apply (e, r);
  return TRUE;
}

gboolean
cbir_enrolments_apply (CbirEnrolments *e, const CbirJournalRecord *r,
    gboolean *applied, GError **error)
{
  gboolean ok = TRUE, done = FALSE;
  guint where;
  Kind k;

  g_rw_lock_writer_lock (&e->lock);
  if (r->op_id && g_hash_table_contains (e->ops, r->op_id))
    goto out;                   /* seen: a duplicate delivery */
  k = r->id ? resolve (e, r->id, &where) : NONE;
  if (r->op == CBIR_JOURNAL_ENROL) {
    if (k == ENROLLED)
      goto out;                 /* the id is there already */
  } else if (k == NONE || (k == BASE && g_hash_table_contains (e->removed,
              GUINT_TO_POINTER (where + 1)))) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: no item \"%s\" (an enrolled id, #INDEX or a source id)",
        cbir_gallery_get_path (e->g), r->id ? r->id : "(null)");
    ok = FALSE;
    goto out;
  }
  ok = done = record (e, r, error);
out:
  g_rw_lock_writer_unlock (&e->lock);
  if (applied)
    *applied = done;
  return ok;
}

/* The operations made here: records without an operation id. */
static gboolean
apply_here (CbirEnrolments *e, CbirJournalOp op, const char *id,
    gint32 label, const float *code, GError **error)
{
  CbirJournalRecord r = { op, label, (char *) id, (float *) code, NULL };

  return cbir_enrolments_apply (e, &r, NULL, error);
}

gboolean
cbir_enrolments_enrol (CbirEnrolments *e, const char *id, gint32 label,
    const float *code, GError **error)
{
  return apply_here (e, CBIR_JOURNAL_ENROL, id, label, code, error);
}

gboolean
cbir_enrolments_remove (CbirEnrolments *e, const char *id, GError **error)
{
  return apply_here (e, CBIR_JOURNAL_REMOVE, id, 0, NULL, error);
}

gboolean
cbir_enrolments_relabel (CbirEnrolments *e, const char *id, gint32 label,
    GError **error)
{
  return apply_here (e, CBIR_JOURNAL_RELABEL, id, label, NULL, error);
}

static float
distance (const CbirEnrolments *e, CbirMetric metric, const float *q,
    const float *c)
{
  double s = 0, qq = 0, cc = 0;

  if (metric == CBIR_METRIC_L2) {
    for (guint i = 0; i < e->dim; i++) {
      double d = (double) q[i] - c[i];
      s += d * d;
    }
    return (float) s;
  }
  for (guint i = 0; i < e->dim; i++) {
    s += (double) q[i] * c[i];
    qq += (double) q[i] * q[i];
    cc += (double) c[i] * c[i];
  }
  if (qq == 0 || cc == 0)
    return 1.0f;
  return (float) (1.0 - s / (sqrt (qq) * sqrt (cc)));
}

static int
by_distance (const void *a, const void *b)
{
  const CbirHit *x = a, *y = b;

  if (x->distance != y->distance)
    return x->distance < y->distance ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

guint
cbir_enrolments_merge (CbirEnrolments *e, CbirMetric metric,
    const float *query, const CbirHit *base, guint n, guint k, CbirHit *out)
{
  g_autofree CbirHit *enr = NULL;
  guint n_enr = 0, i, o = 0, next = 0;
  float first = 0;
  gboolean have_first = FALSE;

  g_rw_lock_reader_lock (&e->lock);
  /* the enrolled items, nearest first */
  if (g_hash_table_size (e->enrolled) > 0 && metric != CBIR_METRIC_HAMMING) {
    enr = g_new (CbirHit, e->items->len);
    for (i = 0; i < e->items->len; i++) {
      const Item *it = &g_array_index (e->items, Item, i);
      float d;

      if (it->removed)
        continue;
      d = distance (e, metric, query, &g_array_index (e->codes, float,
              (gsize) i * e->dim));
      if (!isfinite (d))
        continue;
      enr[n_enr].index = e->n_base + i;
      enr[n_enr].label = it->label;
      enr[n_enr].distance = d;
      n_enr++;
    }
    qsort (enr, n_enr, sizeof (CbirHit), by_distance);
  }
  /* the gallery's first (kept) hit: the plain nearest */
  for (i = 0; i < n; i++)
    if (!g_hash_table_contains (e->removed,
            GUINT_TO_POINTER (base[i].index + 1))) {
      first = base[i].distance;
      have_first = TRUE;
      break;
    }
  /* enrolled items nearer than it, then the gallery's, then the rest */
  while (o < k && next < n_enr && (!have_first || enr[next].distance < first))
    out[o++] = enr[next++];
  for (i = 0; i < n && o < k; i++) {
    gpointer lab;

    if (g_hash_table_contains (e->removed,
            GUINT_TO_POINTER (base[i].index + 1)))
      continue;
    out[o] = base[i];
    if (g_hash_table_lookup_extended (e->relabelled,
            GUINT_TO_POINTER (base[i].index + 1), NULL, &lab))
      out[o].label = GPOINTER_TO_INT (lab);
    o++;
  }
  while (o < k && next < n_enr)
    out[o++] = enr[next++];
  g_rw_lock_reader_unlock (&e->lock);
  return o;
}

void
cbir_enrolments_label_sizes (CbirEnrolments *e, const CbirHit *hits,
    guint n, guint *sizes)
{
  g_rw_lock_reader_lock (&e->lock);
  cbir_hits_label_sizes (e->sizes, hits, n, sizes);
  g_rw_lock_reader_unlock (&e->lock);
}

char *
cbir_enrolments_get_id (CbirEnrolments *e, guint i)
{
  char *id = NULL;

  if (i < e->n_base) {
    const char *s = cbir_gallery_get_id (e->g, i);
    return s && *s ? g_strdup (s) : g_strdup_printf ("#%u", i);
  }
  g_rw_lock_reader_lock (&e->lock);
  if (i - e->n_base < e->items->len)
    id = g_strdup (g_array_index (e->items, Item, i - e->n_base).id);
  g_rw_lock_reader_unlock (&e->lock);
  return id;
}

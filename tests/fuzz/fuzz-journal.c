/* Fuzz harness: enrolment journals (cbir_journal_open) and the enrolment
 * operations that travel between machines as JSON
 * (cbir_journal_record_from_json).
 *
 * A journal is opened as belonging to the gallery its own header names
 * (so that mutations reach the records rather than stop at "another
 * gallery"); one that opens gets one more record appended and is opened
 * again (it must read back with one record more); then its header is made
 * that of a small in-memory gallery of that model (dimension 1 to 64), and
 * it is replayed into that gallery's enrolments, which are searched. An input starting with '{' is
 * also parsed as a JSON operation for a 4-float gallery, and one that
 * parses is applied to such a gallery's enrolments.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fuzz-common.h"

#include <cbir/enrolment.h>
#include <cbir/journal.h>
#include <cbir/search.h>

#define HEADER_LEN 92
#define GALLERY_AT 80
#define MAX_DIM 64
#define N_ITEMS 6

static const char json_fp[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void
put_le32 (guint8 *p, guint32 v)
{
  p[0] = (guint8) v;
  p[1] = (guint8) (v >> 8);
  p[2] = (guint8) (v >> 16);
  p[3] = (guint8) (v >> 24);
}

static guint32
le32 (const uint8_t *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 |
      (guint32) p[3] << 24;
}

/* N_ITEMS items of dim floats, ids "s0".."s5", labels 0..5 */
static CbirGallery *
small_gallery (const char *fp, guint dim)
{
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new (fp,
      CBIR_CODE_FLOAT, dim, FALSE);
  float v[MAX_DIM];

  for (guint i = 0; i < N_ITEMS; i++) {
    char id[8];
    for (guint d = 0; d < dim; d++)
      v[d] = (float) ((i * 7 + d * 3) % 11) - 5.0f;
    g_snprintf (id, sizeof id, "s%u", i);
    g_assert (cbir_gallery_builder_add (b, v, (gint32) i, NULL, id));
  }
  return cbir_gallery_builder_build (b);
}

static void
search_all (CbirEnrolments *e, CbirGallery *g, guint dim)
{
  g_autoptr (CbirSearcher) s = cbir_searcher_new (g, CBIR_METRIC_L2, 0,
      NULL);
  CbirHit base[N_ITEMS + 8], out[8];
  float q[MAX_DIM];
  guint n, m;

  for (guint d = 0; d < dim; d++)
    q[d] = (float) d * 0.5f;
  n = cbir_searcher_search (s, q, 5 + cbir_enrolments_n_removed (e), base);
  m = cbir_enrolments_merge (e, CBIR_METRIC_L2, q, base, n, 5, out);
  g_assert (m <= 5);
  for (guint i = 0; i < m; i++) {
    char *id = cbir_enrolments_get_id (e, out[i].index);
    g_assert (id != NULL);
    g_free (id);
  }
  m = cbir_enrolments_merge (e, CBIR_METRIC_COSINE, q, base, n, 5, out);
  g_assert (m <= 5);
}

static void
fuzz_json (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  CbirJournalRecord *r = cbir_journal_record_from_json ((const char *) data,
      size, 4, json_fp, &err);

  if (r == NULL) {
    fuzz_drop_error (&err);
    return;
  }
  cbir_fuzz_accepted = 1;
  {
    /* applied to a 4-float gallery's enrolments, its journal in slot 1
     * (emptied: a journal starts with its header) */
    g_autoptr (CbirGallery) g = small_gallery (json_fp, 4);
    const char *jpath = fuzz_write_input (1, (const uint8_t *) "", 0);
    CbirEnrolments *e;
    gboolean applied;

    /* (an empty journal file gets its header) */
    e = cbir_enrolments_new (g, jpath, &err);
    g_assert (e != NULL);
    if (!cbir_enrolments_apply (e, r, &applied, &err))
      fuzz_drop_error (&err);
    search_all (e, g, 4);
    cbir_enrolments_free (e);
  }
  cbir_journal_record_free (r);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  const char *path;
  CbirJournal *j;
  CbirJournalGallery owner;
  char fp[65];
  guint dim, n;

  if (size > 0 && data[0] == '{') {
    fuzz_write_input (0, data, size);   /* (resets the accepted flag) */
    fuzz_json (data, size);
    return 0;
  }
  path = fuzz_write_input (0, data, size);
  if (size < HEADER_LEN)
    return 0;
  dim = le32 (data + 12);
  memcpy (fp, data + 16, 64);
  fp[64] = '\0';
  if (dim == 0 || dim > MAX_DIM || strlen (fp) != 64)
    return 0;
  owner.fingerprint = fp;
  owner.dim = dim;
  owner.items = le32 (data + GALLERY_AT);
  owner.crc = le32 (data + GALLERY_AT + 4);
  j = cbir_journal_open (path, &owner, FALSE, &err);
  if (j == NULL) {
    fuzz_drop_error (&err);
    return 0;
  }
  cbir_fuzz_accepted = 1;
  n = cbir_journal_n_records (j);
  for (guint i = 0; i < n; i++) {
    const CbirJournalRecord *r = cbir_journal_get (j, i);
    g_assert (r->id != NULL);
    g_assert ((r->code != NULL) == (r->op == CBIR_JOURNAL_ENROL));
  }
  {
    /* one more record, and the file reads back with it */
    float code[MAX_DIM] = { 0 };
    CbirJournalRecord add = { CBIR_JOURNAL_ENROL, 3, (char *) "fuzz-added",
      code, (char *) "fuzz-op"
    };
    if (cbir_journal_append (j, &add, &err)) {
      CbirJournal *again;
      cbir_journal_free (j);
      again = cbir_journal_open (path, &owner, FALSE, &err);
      g_assert (again != NULL);
      g_assert (cbir_journal_n_records (again) == n + 1);
      j = again;
    } else {
      fuzz_drop_error (&err);
    }
  }
  cbir_journal_free (j);

  /* the records replayed into a gallery's enrolments, then searched: the
   * header made that gallery's (its identity, the header's CRC) */
  {
    g_autoptr (CbirGallery) g = small_gallery (fp, dim);
    CbirJournalGallery o;
    CbirEnrolments *e;
    guint8 h[8 + 4];

    cbir_journal_gallery_init (&o, g);
    put_le32 (h, o.items);
    put_le32 (h + 4, o.crc);
    if (pwrite (fuzz_slots[0].fd, h, 8, GALLERY_AT) != 8)
      fuzz_die ("pwrite");
    {
      guint8 head[GALLERY_AT + 8];
      if (pread (fuzz_slots[0].fd, head, sizeof head, 0) != sizeof head)
        fuzz_die ("pread");
      put_le32 (h + 8, cbir_crc32 (0, head, sizeof head));
      if (pwrite (fuzz_slots[0].fd, h + 8, 4, GALLERY_AT + 8) != 4)
        fuzz_die ("pwrite");
    }
    e = cbir_enrolments_new (g, path, &err);

    g_assert (e != NULL);
    search_all (e, g, dim);
    cbir_enrolments_free (e);
  }
  return 0;
}

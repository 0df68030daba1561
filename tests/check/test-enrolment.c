/* Enrolment (enrolment.h) and its journal (journal.h): records survive a
 * reopen; a torn last record is dropped, a corrupt one in the middle is an
 * error naming the byte; a journal of another model is refused; bad
 * records never reach the file. Enrolled items are found by the very next
 * search and merged with the gallery's hits as documented, checked against
 * a brute-force search of the live items; removals and relabellings apply
 * to gallery items; everything replays from the journal. */
#include <cbir/enrolment.h>
#include <cbir/journal.h>
#include <cbir/search.h>
#include <check.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FP "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FP2 "f123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIM 4

static const CbirJournalGallery OWNER = { FP, DIM, 40, 0x12345678 };
static const CbirJournalGallery OWNER_FP2 = { FP2, DIM, 40, 0x12345678 };
static const CbirJournalGallery OWNER_DIM = { FP, DIM + 1, 40, 0x12345678 };
static const CbirJournalGallery OWNER_REBUILT = { FP, DIM, 41, 0x9abcdef0 };

static char *dir, *path;

static void
setup (void)
{
  dir = g_dir_make_tmp ("cbir-enrol-XXXXXX", NULL);
  path = g_build_filename (dir, "g.journal", NULL);
}

static void
teardown (void)
{
  g_remove (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}

static gsize
file_size (void)
{
  GStatBuf st;
  ck_assert_int_eq (g_stat (path, &st), 0);
  return (gsize) st.st_size;
}

static void
append (CbirJournal *j, CbirJournalOp op, const char *id, gint32 label,
    float x)
{
  float code[DIM] = { x, x + 1, x + 2, x + 3 };
  CbirJournalRecord r = { op, label, (char *) id,
    op == CBIR_JOURNAL_ENROL ? code : NULL
  };
  g_autoptr (GError) err = NULL;

  ck_assert_msg (cbir_journal_append (j, &r, &err), "%s",
      err ? err->message : "");
}

static CbirJournal *
reopen (GError **err)
{
  return cbir_journal_open (path, &OWNER, FALSE, err);
}

START_TEST (test_journal_roundtrip)
{
  g_autoptr (GError) err = NULL;
  CbirJournal *j = cbir_journal_open (path, &OWNER, TRUE, &err);

  ck_assert_msg (j != NULL, "%s", err ? err->message : "");
  append (j, CBIR_JOURNAL_ENROL, "alice", 7, 1.5f);
  append (j, CBIR_JOURNAL_RELABEL, "#3", 2, 0);
  append (j, CBIR_JOURNAL_REMOVE, "alice", 0, 0);
  {
    CbirJournalRecord r = { CBIR_JOURNAL_REMOVE, 0, (char *) "#1", NULL,
      (char *) "8c4e-op"
    };
    ck_assert (cbir_journal_append (j, &r, &err));
  }
  ck_assert_uint_eq (cbir_journal_n_records (j), 4);
  cbir_journal_free (j);

  j = reopen (&err);
  ck_assert_msg (j != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_journal_n_records (j), 4);
  ck_assert_str_eq (cbir_journal_get (j, 3)->op_id, "8c4e-op");
  ck_assert_ptr_null (cbir_journal_get (j, 0)->op_id);
  ck_assert_int_eq (cbir_journal_get (j, 0)->op, CBIR_JOURNAL_ENROL);
  ck_assert_str_eq (cbir_journal_get (j, 0)->id, "alice");
  ck_assert_int_eq (cbir_journal_get (j, 0)->label, 7);
  ck_assert_float_eq (cbir_journal_get (j, 0)->code[3], 4.5f);
  ck_assert_int_eq (cbir_journal_get (j, 1)->op, CBIR_JOURNAL_RELABEL);
  ck_assert_int_eq (cbir_journal_get (j, 1)->label, 2);
  ck_assert_ptr_null (cbir_journal_get (j, 1)->code);
  ck_assert_int_eq (cbir_journal_get (j, 2)->op, CBIR_JOURNAL_REMOVE);
  ck_assert_uint_eq (cbir_journal_dropped_bytes (j), 0);
  cbir_journal_free (j);
}
END_TEST

/* A crash during an append leaves a partial last record: it was never
 * acknowledged, opening drops it (and the file is cut back), and appends
 * go on after the last whole record. Any cut inside the last record. */
START_TEST (test_journal_torn_tail)
{
  g_autoptr (GError) err = NULL;
  CbirJournal *j = cbir_journal_open (path, &OWNER, TRUE, &err);
  gsize two, three;

  append (j, CBIR_JOURNAL_ENROL, "a", 1, 0);
  append (j, CBIR_JOURNAL_ENROL, "b", 2, 1);
  two = file_size ();
  append (j, CBIR_JOURNAL_ENROL, "c", 3, 2);
  three = file_size ();
  cbir_journal_free (j);

  for (gsize cut = two + 1; cut < three; cut++) {
    ck_assert_int_eq (truncate (path, (off_t) cut), 0);
    j = reopen (&err);
    ck_assert_msg (j != NULL, "cut %zu: %s", cut, err ? err->message : "");
    ck_assert_uint_eq (cbir_journal_n_records (j), 2);
    ck_assert_uint_eq (cbir_journal_dropped_bytes (j), cut - two);
    ck_assert_uint_eq (file_size (), two);
    if (cut == three - 1) {
      append (j, CBIR_JOURNAL_ENROL, "d", 4, 3);
      cbir_journal_free (j);
      j = reopen (&err);
      ck_assert_uint_eq (cbir_journal_n_records (j), 3);
      ck_assert_str_eq (cbir_journal_get (j, 2)->id, "d");
    } else {
      /* put the third record back for the next cut */
      append (j, CBIR_JOURNAL_ENROL, "c", 3, 2);
    }
    cbir_journal_free (j);
  }
}
END_TEST

/* A damaged record with others after it is corruption, not a crash: an
 * error naming the file and the byte, and the file is not touched. */
START_TEST (test_journal_corrupt_middle)
{
  g_autoptr (GError) err = NULL;
  CbirJournal *j = cbir_journal_open (path, &OWNER, TRUE, &err);
  g_autofree char *data = NULL, *at = NULL;
  gsize len, one;

  append (j, CBIR_JOURNAL_ENROL, "a", 1, 0);
  one = file_size ();
  append (j, CBIR_JOURNAL_ENROL, "b", 2, 1);
  append (j, CBIR_JOURNAL_ENROL, "c", 3, 2);
  cbir_journal_free (j);
  ck_assert (g_file_get_contents (path, &data, &len, NULL));
  data[one + 20] ^= 0x40;       /* inside the second record's payload */
  ck_assert (g_file_set_contents (path, data, (gssize) len, NULL));

  j = reopen (&err);
  ck_assert_ptr_null (j);
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_FORMAT));
  at = g_strdup_printf ("byte %zu", one);
  ck_assert_msg (strstr (err->message, path) && strstr (err->message, at),
      "%s", err->message);
  ck_assert_uint_eq (file_size (), len);
}
END_TEST

START_TEST (test_journal_refused)
{
  g_autoptr (GError) err = NULL;
  CbirJournal *j = cbir_journal_open (path, &OWNER, TRUE, &err);
  float nan_code[DIM] = { 0, NAN, 0, 0 }, ok_code[DIM] = { 0 };
  char long_id[CBIR_JOURNAL_MAX_ID + 2];
  CbirJournalRecord bad[] = {
    {CBIR_JOURNAL_ENROL, 1, (char *) "x", nan_code},
    {CBIR_JOURNAL_ENROL, 1, (char *) "", ok_code},
    {CBIR_JOURNAL_ENROL, 1, long_id, ok_code},
    {CBIR_JOURNAL_ENROL, 1, (char *) "x", NULL},
    {CBIR_JOURNAL_ENROL, 1, (char *) "\xff\xfe", ok_code},
    {(CbirJournalOp) 9, 1, (char *) "x", NULL},
  };
  gsize before = file_size ();

  memset (long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_clear_error (&err);
    ck_assert_msg (!cbir_journal_append (j, &bad[i], &err), "record %u", i);
    ck_assert (g_error_matches (err, CBIR_ERROR,
            CBIR_ERROR_INVALID_ARGUMENT));
  }
  ck_assert_uint_eq (file_size (), before);
  cbir_journal_free (j);

  /* another model, another dimension, not a journal */
  g_clear_error (&err);
  ck_assert_ptr_null (cbir_journal_open (path, &OWNER_FP2, FALSE, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  g_clear_error (&err);
  ck_assert_ptr_null (cbir_journal_open (path, &OWNER_DIM, FALSE, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  /* another gallery of the same model: one rebuilt since */
  g_clear_error (&err);
  ck_assert_ptr_null (cbir_journal_open (path, &OWNER_REBUILT, FALSE, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  ck_assert_msg (strstr (err->message, "another gallery") != NULL, "%s",
      err->message);
  ck_assert (g_file_set_contents (path, "not a journal at all, no, not one "
          "bit of it, really not, nothing like one here", -1, NULL));
  g_clear_error (&err);
  ck_assert_ptr_null (cbir_journal_open (path, &OWNER, FALSE, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_FORMAT));
  ck_assert_msg (strstr (err->message, path) != NULL, "%s", err->message);
}
END_TEST

/* ---- enrolments ---- */

#define N 40

/* N random items of DIM floats, labels i % 5, ids "src-i" */
static CbirGallery *
random_gallery (float *feat)
{
  g_autoptr (CbirGalleryBuilder) b = cbir_gallery_builder_new (FP,
      CBIR_CODE_FLOAT, DIM, FALSE);
  GRand *r = g_rand_new_with_seed (7);

  for (guint i = 0; i < N; i++) {
    g_autofree char *id = g_strdup_printf ("src-%u", i);
    for (guint d = 0; d < DIM; d++)
      feat[i * DIM + d] = (float) g_rand_double_range (r, -1, 1);
    ck_assert (cbir_gallery_builder_add (b, feat + i * DIM, (gint32) (i % 5),
            NULL, id));
  }
  g_rand_free (r);
  return cbir_gallery_builder_build (b);
}

static CbirMetric metric = CBIR_METRIC_L2;

static guint
search (CbirSearcher *s, CbirEnrolments *e, const float *q, guint k,
    CbirHit *out)
{
  CbirHit base[64];
  guint n = cbir_searcher_search (s, q, k + cbir_enrolments_n_removed (e),
      base);
  return cbir_enrolments_merge (e, metric, q, base, n, k, out);
}

/* cbir_enrolments_label_sizes for labels 0..9 against want[] */
static void
assert_label_sizes (CbirEnrolments *e, const guint want[10])
{
  CbirHit h[10];
  guint sizes[10];

  for (guint i = 0; i < 10; i++)
    h[i].label = (gint32) i;
  cbir_enrolments_label_sizes (e, h, 10, sizes);
  for (guint i = 0; i < 10; i++)
    ck_assert_msg (sizes[i] == want[i], "label %u: %u items, want %u", i,
        sizes[i], want[i]);
}

START_TEST (test_enrol_remove_relabel_replay)
{
  /* the items carrying each label: 8 each of 0-4 (i % 5), then alice (9),
   * #12 (2) removed, src-20 (0) relabelled 4, alice removed and enrolled
   * again as 3 */
  static const guint start[10] = { 8, 8, 8, 8, 8 };
  static const guint after[10] = { 7, 8, 7, 8, 9, 0, 0, 0, 0, 1 };
  static const guint last[10] = { 7, 8, 7, 9, 9 };
  float feat[N * DIM];
  g_autoptr (CbirGallery) g = random_gallery (feat);
  g_autoptr (CbirSearcher) s = cbir_searcher_new (g, CBIR_METRIC_L2, 0,
      NULL);
  g_autoptr (GError) err = NULL;
  CbirEnrolments *e = cbir_enrolments_new (g, path, &err);
  float alice[DIM] = { 5, 5, 5, 5 }, near_alice[DIM] = { 5, 5, 5, 5.1f };
  CbirHit hits[8];
  guint n;
  g_autofree char *id = NULL;

  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  ck_assert (!g_file_test (path, G_FILE_TEST_EXISTS));  /* created on use */
  assert_label_sizes (e, start);
  ck_assert (cbir_enrolments_enrol (e, "alice", 9, alice, &err));
  ck_assert (g_file_test (path, G_FILE_TEST_EXISTS));
  /* the very next search finds it first */
  n = search (s, e, near_alice, 3, hits);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (hits[0].index, N);
  ck_assert_int_eq (hits[0].label, 9);
  ck_assert_float_eq_tol (hits[0].distance, 0.01f, 1e-5);
  id = cbir_enrolments_get_id (e, hits[0].index);
  ck_assert_str_eq (id, "alice");
  /* enrolling the same id again (a replay) changes nothing */
  ck_assert (cbir_enrolments_enrol (e, "alice", 9, alice, &err));
  ck_assert_uint_eq (cbir_enrolments_n_enrolled (e), 1);

  /* a gallery item's own code finds it; removed, it is gone; relabelled
   * (by its source id), it has the new label */
  n = search (s, e, feat + 12 * DIM, 2, hits);
  ck_assert_uint_eq (hits[0].index, 12);
  ck_assert (cbir_enrolments_remove (e, "#12", &err));
  n = search (s, e, feat + 12 * DIM, 2, hits);
  ck_assert_uint_eq (n, 2);
  ck_assert (hits[0].index != 12 && hits[1].index != 12);
  ck_assert (cbir_enrolments_relabel (e, "src-20", 4, &err));
  n = search (s, e, feat + 20 * DIM, 1, hits);
  ck_assert_uint_eq (hits[0].index, 20);
  ck_assert_int_eq (hits[0].label, 4);
  ck_assert (!cbir_enrolments_remove (e, "#12", &err));   /* gone already */
  g_clear_error (&err);
  ck_assert (!cbir_enrolments_relabel (e, "nobody", 1, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  assert_label_sizes (e, after);
  cbir_enrolments_free (e);

  /* all of it again from the journal */
  e = cbir_enrolments_new (g, path, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (cbir_enrolments_n_enrolled (e), 1);
  ck_assert_uint_eq (cbir_enrolments_n_removed (e), 1);
  assert_label_sizes (e, after);
  n = search (s, e, near_alice, 1, hits);
  ck_assert_uint_eq (hits[0].index, N);
  n = search (s, e, feat + 20 * DIM, 1, hits);
  ck_assert_int_eq (hits[0].label, 4);
  /* an enrolled item removed: gone, and its id free again */
  ck_assert (cbir_enrolments_remove (e, "alice", &err));
  n = search (s, e, near_alice, 1, hits);
  ck_assert (hits[0].index < N);
  ck_assert (cbir_enrolments_enrol (e, "alice", 3, near_alice, &err));
  n = search (s, e, near_alice, 1, hits);
  ck_assert_uint_eq (hits[0].index, N + 1);
  ck_assert_int_eq (hits[0].label, 3);
  assert_label_sizes (e, last);
  cbir_enrolments_free (e);
}
END_TEST

/* With the plain search, the merged hits are the k nearest live items
 * (gallery items not removed, and enrolled ones) by brute force, for l2 and
 * cosine, over random queries. */
START_TEST (test_merge_equals_brute_force)
{
  float feat[N * DIM], enrolled[10 * DIM];
  g_autoptr (CbirGallery) g = random_gallery (feat);
  GRand *r = g_rand_new_with_seed (11);
  CbirMetric metrics[] = { CBIR_METRIC_L2, CBIR_METRIC_COSINE };

  for (guint i = 0; i < 10 * DIM; i++)
    enrolled[i] = (float) g_rand_double_range (r, -1, 1);
  for (guint mi = 0; mi < G_N_ELEMENTS (metrics); mi++) {
    g_autoptr (CbirSearcher) s = cbir_searcher_new (g, metrics[mi], 0, NULL);
    g_autoptr (GError) err = NULL;
    CbirEnrolments *e;
    float all[(N + 10) * DIM];

    metric = metrics[mi];
    g_remove (path);
    e = cbir_enrolments_new (g, path, &err);
    for (guint i = 0; i < 10; i++) {
      g_autofree char *id = g_strdup_printf ("e%u", i);
      ck_assert (cbir_enrolments_enrol (e, id, 100 + (gint) i,
              enrolled + i * DIM, &err));
    }
    ck_assert (cbir_enrolments_remove (e, "#3", &err));
    ck_assert (cbir_enrolments_remove (e, "e4", &err));
    memcpy (all, feat, sizeof feat);
    memcpy (all + N * DIM, enrolled, sizeof enrolled);

    for (guint t = 0; t < 50; t++) {
      float q[DIM], d[N + 10];
      CbirHit hits[5];
      guint n, want = 0;

      for (guint k = 0; k < DIM; k++)
        q[k] = (float) g_rand_double_range (r, -1.2, 1.2);
      for (guint i = 0; i < N + 10; i++) {
        double s2 = 0, qq = 0, cc = 0;
        for (guint k = 0; k < DIM; k++) {
          double a = q[k], b = all[i * DIM + k];
          s2 += metrics[mi] == CBIR_METRIC_L2 ? (a - b) * (a - b) : a * b;
          qq += a * a;
          cc += b * b;
        }
        d[i] = metrics[mi] == CBIR_METRIC_L2 ? (float) s2 :
            (float) (1 - s2 / (sqrt (qq) * sqrt (cc)));
      }
      d[3] = d[N + 4] = INFINITY;       /* removed */
      for (guint i = 1; i < N + 10; i++)
        if (d[i] < d[want])
          want = i;
      n = search (s, e, q, 5, hits);
      ck_assert_uint_eq (n, 5);
      ck_assert_msg (hits[0].index == want, "query %u (%s): first hit %u, "
          "nearest %u", t, cbir_metric_to_string (metrics[mi]),
          hits[0].index, want);
      ck_assert_float_eq_tol (hits[0].distance, d[want], 1e-4);
      for (guint i = 0; i < n; i++)
        ck_assert (hits[i].index != 3 && hits[i].index != N + 4);
      if (want >= N)
        ck_assert_int_eq (hits[0].label, 100 + (gint) (want - N));
    }
    cbir_enrolments_free (e);
  }
  metric = CBIR_METRIC_L2;
  g_rand_free (r);
}
END_TEST


/* Operations from other machines carry an id: one delivered twice is
 * applied once, also after a removal of the same item and after a
 * restart (the journal keeps the operation ids). */
START_TEST (test_apply_deduplicates_operations)
{
  float feat[N * DIM];
  g_autoptr (CbirGallery) g = random_gallery (feat);
  g_autoptr (GError) err = NULL;
  float code[DIM] = { 1, 2, 3, 4 };
  CbirJournalRecord enrol = { CBIR_JOURNAL_ENROL, 5, (char *) "bob", code,
    (char *) "op-1"
  };
  CbirJournalRecord rm = { CBIR_JOURNAL_REMOVE, 0, (char *) "bob", NULL,
    (char *) "op-2"
  };
  CbirJournalRecord rm_unknown = { CBIR_JOURNAL_REMOVE, 0, (char *) "nobody",
    NULL, (char *) "op-3"
  };
  gboolean applied = FALSE;
  CbirEnrolments *e = cbir_enrolments_new (g, path, &err);

  ck_assert (cbir_enrolments_apply (e, &enrol, &applied, &err) && applied);
  ck_assert (cbir_enrolments_apply (e, &enrol, &applied, &err) && !applied);
  ck_assert_uint_eq (cbir_enrolments_n_enrolled (e), 1);
  ck_assert (cbir_enrolments_apply (e, &rm, &applied, &err) && applied);
  /* the enrolment again (a late duplicate): still removed */
  ck_assert (cbir_enrolments_apply (e, &enrol, &applied, &err) && !applied);
  ck_assert_uint_eq (cbir_enrolments_n_enrolled (e), 0);
  ck_assert (!cbir_enrolments_apply (e, &rm_unknown, &applied, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT));
  g_clear_error (&err);
  cbir_enrolments_free (e);

  e = cbir_enrolments_new (g, path, &err);
  ck_assert_msg (e != NULL, "%s", err ? err->message : "");
  ck_assert (cbir_enrolments_apply (e, &enrol, &applied, &err) && !applied);
  ck_assert_uint_eq (cbir_enrolments_n_enrolled (e), 0);
  cbir_enrolments_free (e);

  /* a journal that enrols one id twice (two machines' operations, say)
   * replays to one item (and leaks nothing: found by fuzz-journal) */
  {
    CbirJournalGallery owner;
    CbirJournal *j;
    CbirJournalRecord twice = { CBIR_JOURNAL_ENROL, 1, (char *) "carol",
      code, NULL
    };

    cbir_journal_gallery_init (&owner, g);
    j = cbir_journal_open (path, &owner, FALSE, &err);
    ck_assert_msg (j != NULL, "%s", err ? err->message : "");
    ck_assert (cbir_journal_append (j, &twice, &err));
    ck_assert (cbir_journal_append (j, &twice, &err));
    cbir_journal_free (j);
    e = cbir_enrolments_new (g, path, &err);
    ck_assert_uint_eq (cbir_enrolments_n_enrolled (e), 1);
    cbir_enrolments_free (e);
  }
}
END_TEST


/* An operation as JSON reads back exactly (the code's floats bit for bit);
 * another model's, or anything else, is refused. */
START_TEST (test_record_json)
{
  float code[DIM] = { 0.1f, -3.0e-7f, 12345.678f, 1.0f / 3.0f };
  CbirJournalRecord r = { CBIR_JOURNAL_ENROL, -2, (char *) "caf\xc3\xa9 \"q\"",
    code, (char *) "op-9"
  };
  g_autoptr (GError) err = NULL;
  g_autofree char *js = cbir_journal_record_to_json (&r, DIM, FP, "machine-a");
  g_autoptr (CbirJournalRecord) back = cbir_journal_record_from_json (js,
      strlen (js), DIM, FP, &err);
  const char *bad[] = { "", "[]", "{\"schema_version\":2}",
    "{\"schema_version\":1,\"op\":\"enrol\",\"id\":\"x\",\"model\":\"" FP
        "\",\"code\":[1,2]}",
    "{\"schema_version\":1,\"op\":\"drop\",\"id\":\"x\",\"model\":\"" FP "\"}",
    /* members of the wrong type (json-glib's getters were critical on
     * them: found by fuzz-journal) */
    "{\"schema_version\":1,\"op\":\"remove\",\"id\":\"x\",\"label\":[1],"
        "\"model\":\"" FP "\"}",
    "{\"schema_version\":\"1\",\"op\":\"remove\",\"id\":\"x\"}",
    "{\"schema_version\":1,\"op\":{},\"id\":\"x\",\"model\":\"" FP "\"}",
    "{\"schema_version\":1,\"op\":\"remove\",\"id\":7,\"model\":\"" FP "\"}",
    "{\"schema_version\":1,\"op\":\"remove\",\"id\":\"x\",\"model\":null}",
    "{\"schema_version\":1,\"op\":\"remove\",\"id\":\"x\",\"label\":1e99,"
        "\"model\":\"" FP "\"}",
  };

  /* a critical from a getter is a failure here */
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);

  ck_assert_msg (back != NULL, "%s: %s", js, err ? err->message : "");
  ck_assert_int_eq (back->op, CBIR_JOURNAL_ENROL);
  ck_assert_int_eq (back->label, -2);
  ck_assert_str_eq (back->id, r.id);
  ck_assert_str_eq (back->op_id, "op-9");
  ck_assert_int_eq (memcmp (back->code, code, sizeof code), 0);

  ck_assert_ptr_null (cbir_journal_record_from_json (js, strlen (js), DIM,
          FP2, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_MISMATCH));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_clear_error (&err);
    ck_assert_msg (cbir_journal_record_from_json (bad[i], strlen (bad[i]),
            DIM, FP, &err) == NULL, "accepted %s", bad[i]);
    ck_assert (err != NULL);
  }
}
END_TEST

static Suite *
enrolment_suite (void)
{
  Suite *s = suite_create ("enrolment");
  TCase *tc = tcase_create ("core");

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_journal_roundtrip);
  tcase_add_test (tc, test_journal_torn_tail);
  tcase_add_test (tc, test_journal_corrupt_middle);
  tcase_add_test (tc, test_journal_refused);
  tcase_add_test (tc, test_enrol_remove_relabel_replay);
  tcase_add_test (tc, test_merge_equals_brute_force);
  tcase_add_test (tc, test_apply_deduplicates_operations);
  tcase_add_test (tc, test_record_json);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (enrolment_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

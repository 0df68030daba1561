/* safetensors reader/writer tests: round trips, a file laid out by hand as
 * another writer (PyTorch's) would, every kind of corruption, require (),
 * and atomic writes. */
#include "config.h"

#include <cbir/safetensors.h>

#include <check.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static char *tmpdir;

static void
setup (void)
{
  GError *err = NULL;
  tmpdir = g_dir_make_tmp ("test-safetensors-XXXXXX", &err);
  ck_assert_msg (tmpdir != NULL, "%s", err ? err->message : "");
}

static void
rm_rf (const char *path)
{
  GDir *d = g_dir_open (path, 0, NULL);
  if (d) {
    const char *n;
    while ((n = g_dir_read_name (d))) {
      char *p = g_build_filename (path, n, NULL);
      g_chmod (p, 0755);
      if (g_file_test (p, G_FILE_TEST_IS_DIR) && !g_file_test (p,
              G_FILE_TEST_IS_SYMLINK))
        rm_rf (p);
      else
        g_unlink (p);
      g_free (p);
    }
    g_dir_close (d);
  }
  g_rmdir (path);
}

static void
teardown (void)
{
  g_chmod (tmpdir, 0755);
  rm_rf (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
}

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

/* Names of the entries of a directory, sorted, joined by ' '. */
static char *
dir_listing (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *n;
  char *s;
  ck_assert (d != NULL);
  while ((n = g_dir_read_name (d)))
    g_ptr_array_add (names, g_strdup (n));
  g_dir_close (d);
  g_ptr_array_sort (names, (GCompareFunc) g_strcmp0);
  g_ptr_array_add (names, NULL);
  s = g_strjoinv (" ", (char **) names->pdata);
  g_ptr_array_unref (names);
  return s;
}

static void
write_bytes (const char *path, const void *data, gsize len)
{
  GError *err = NULL;
  ck_assert_msg (g_file_set_contents (path, data, len, &err), "%s",
      err ? err->message : "");
}

/* A raw file: 8-byte LE length, header text as given, data bytes. */
static void
write_raw (const char *path, const char *header, const void *data,
    gsize data_len)
{
  guint64 n = strlen (header);
  GByteArray *b = g_byte_array_new ();
  guint8 len_le[8];
  for (int i = 0; i < 8; i++)
    len_le[i] = (n >> (8 * i)) & 0xff;
  g_byte_array_append (b, len_le, 8);
  g_byte_array_append (b, (const guint8 *) header, n);
  if (data_len)
    g_byte_array_append (b, data, data_len);
  write_bytes (path, b->data, b->len);
  g_byte_array_unref (b);
}

/* ------------------------------------------------------------ round trip */

START_TEST (test_round_trip)
{
  char *path = tmp_path ("rt.safetensors");
  GError *err = NULL;
  float f32[2 * 3] = { 0.5f, -1.25f, 3e-8f, 1e30f, -0.0f, 42.0f };
  double f64[3] = { 1.0 / 3.0, -2.5e300, 7.0 };
  gint32 i32[4] = { -1, 0, G_MAXINT32, G_MININT32 };
  gint64 i64[2] = { G_MAXINT64, -5 };
  guint8 u8[5] = { 0, 1, 127, 128, 255 };
  float scalar = 9.75f;
  const gint64 s_f32[] = { 2, 3 }, s_f64[] = { 3 }, s_i32[] = { 2, 1, 2 },
      s_i64[] = { 2 }, s_u8[] = { 5 }, s_empty[] = { 0, 4 };
  CbirSafetensorsWriter *w = cbir_safetensors_writer_new ();
  CbirSafetensors *st;
  CbirTensorView v;
  const char *const *names;

  /* U8 first with an odd size: the writer must still align the rest */
  cbir_safetensors_writer_add (w, "bytes", CBIR_DTYPE_U8, 1, s_u8, u8);
  cbir_safetensors_writer_add (w, "layers.0.weight", CBIR_DTYPE_F32, 2, s_f32,
      f32);
  cbir_safetensors_writer_add (w, "f64", CBIR_DTYPE_F64, 1, s_f64, f64);
  cbir_safetensors_writer_add (w, "i32", CBIR_DTYPE_I32, 3, s_i32, i32);
  cbir_safetensors_writer_add (w, "i64", CBIR_DTYPE_I64, 1, s_i64, i64);
  cbir_safetensors_writer_add (w, "scalar", CBIR_DTYPE_F32, 0, NULL, &scalar);
  cbir_safetensors_writer_add (w, "empty", CBIR_DTYPE_F32, 2, s_empty, NULL);
  cbir_safetensors_writer_set_metadata (w, "zeta", "last");
  cbir_safetensors_writer_set_metadata (w, "arch",
      "{\"layers\": [\"conv\"], \"q\": \"a\\\\b\"}\n\ttab \x01 é ∑");
  cbir_safetensors_writer_set_metadata (w, "empty", "");
  cbir_safetensors_writer_set_metadata (w, "zeta", "replaced");
  ck_assert_msg (cbir_safetensors_writer_write (w, path, &err), "%s",
      err ? err->message : "");
  cbir_safetensors_writer_free (w);

  st = cbir_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (cbir_safetensors_get_path (st), path);
  ck_assert_str_eq (cbir_safetensors_get_metadata (st, "zeta"), "replaced");
  ck_assert_str_eq (cbir_safetensors_get_metadata (st, "arch"),
      "{\"layers\": [\"conv\"], \"q\": \"a\\\\b\"}\n\ttab \x01 é ∑");
  ck_assert_str_eq (cbir_safetensors_get_metadata (st, "empty"), "");
  ck_assert_ptr_null (cbir_safetensors_get_metadata (st, "nope"));

  names = cbir_safetensors_list (st);
  ck_assert_uint_eq (g_strv_length ((char **) names), 7);
  /* data order: 8-byte types, 4-byte types, bytes; insertion order within */
  ck_assert_str_eq (names[0], "f64");
  ck_assert_str_eq (names[1], "i64");
  ck_assert_str_eq (names[2], "layers.0.weight");
  ck_assert_str_eq (names[3], "i32");
  ck_assert_str_eq (names[4], "scalar");
  ck_assert_str_eq (names[5], "empty");
  ck_assert_str_eq (names[6], "bytes");

  for (guint i = 0; names[i]; i++) {
    ck_assert (cbir_safetensors_get (st, names[i], &v));
    ck_assert_str_eq (v.name, names[i]);
    ck_assert_msg ((guintptr) v.data % cbir_dtype_size (v.dtype) == 0,
        "%s misaligned", names[i]);
  }

  ck_assert (cbir_safetensors_get (st, "layers.0.weight", &v));
  ck_assert_int_eq (v.dtype, CBIR_DTYPE_F32);
  ck_assert_uint_eq (v.ndim, 2);
  ck_assert_int_eq (v.shape[0], 2);
  ck_assert_int_eq (v.shape[1], 3);
  ck_assert_uint_eq (v.nbytes, sizeof f32);
  ck_assert_mem_eq (v.data, f32, sizeof f32);
  ck_assert (cbir_safetensors_get (st, "f64", &v));
  ck_assert_int_eq (v.dtype, CBIR_DTYPE_F64);
  ck_assert_mem_eq (v.data, f64, sizeof f64);
  ck_assert (cbir_safetensors_get (st, "i32", &v));
  ck_assert_int_eq (v.dtype, CBIR_DTYPE_I32);
  ck_assert_uint_eq (v.ndim, 3);
  ck_assert_mem_eq (v.data, i32, sizeof i32);
  ck_assert (cbir_safetensors_get (st, "i64", &v));
  ck_assert_int_eq (v.dtype, CBIR_DTYPE_I64);
  ck_assert_mem_eq (v.data, i64, sizeof i64);
  ck_assert (cbir_safetensors_get (st, "bytes", &v));
  ck_assert_int_eq (v.dtype, CBIR_DTYPE_U8);
  ck_assert_uint_eq (v.nbytes, 5);
  ck_assert_mem_eq (v.data, u8, sizeof u8);
  ck_assert (cbir_safetensors_get (st, "scalar", &v));
  ck_assert_uint_eq (v.ndim, 0);
  ck_assert_uint_eq (v.nbytes, 4);
  ck_assert_float_eq (*(const float *) v.data, 9.75f);
  ck_assert (cbir_safetensors_get (st, "empty", &v));
  ck_assert_uint_eq (v.ndim, 2);
  ck_assert_uint_eq (v.nbytes, 0);
  ck_assert (!cbir_safetensors_get (st, "missing", &v));
  cbir_safetensors_free (st);

  /* the data area starts 8-byte aligned, header padded with spaces */
  {
    gchar *contents;
    gsize len;
    guint64 hlen = 0;
    ck_assert (g_file_get_contents (path, &contents, &len, NULL));
    for (int i = 7; i >= 0; i--)
      hlen = (hlen << 8) | (guint8) contents[i];
    ck_assert_uint_eq ((8 + hlen) % 8, 0);
    ck_assert_int_eq (contents[8], '{');
    /* contiguous data area: exactly the sum of the tensors */
    ck_assert_uint_eq (len - 8 - hlen,
        sizeof f32 + sizeof f64 + sizeof i32 + sizeof i64 + sizeof u8 + 4);
    /* the metadata come first and their keys are sorted */
    ck_assert (g_str_has_prefix (contents + 8,
            "{\"__metadata__\":{\"arch\":"));
    ck_assert (strstr (contents + 8, "\"empty\":\"\",\"zeta\":\"replaced\"}"));
    g_free (contents);
  }
  g_free (path);
}
END_TEST

/* Same content, different insertion order of metadata -> same bytes. */
START_TEST (test_deterministic)
{
  char *p1 = tmp_path ("a.safetensors"), *p2 = tmp_path ("b.safetensors");
  gchar *c1, *c2;
  gsize l1, l2;
  float x[3] = { 1, 2, 3 };
  const gint64 shape[] = { 3 };

  for (int k = 0; k < 2; k++) {
    CbirSafetensorsWriter *w = cbir_safetensors_writer_new ();
    const char *keys[] = { "b", "a", "c" };
    for (int i = 0; i < 3; i++) {
      const char *key = keys[k ? 2 - i : i];
      cbir_safetensors_writer_set_metadata (w, key, key);
    }
    cbir_safetensors_writer_add (w, "x", CBIR_DTYPE_F32, 1, shape, x);
    ck_assert (cbir_safetensors_writer_write (w, k ? p2 : p1, NULL));
    cbir_safetensors_writer_free (w);
  }
  ck_assert (g_file_get_contents (p1, &c1, &l1, NULL));
  ck_assert (g_file_get_contents (p2, &c2, &l2, NULL));
  ck_assert_uint_eq (l1, l2);
  ck_assert_mem_eq (c1, c2, l1);
  g_free (c1);
  g_free (c2);
  g_free (p1);
  g_free (p2);
}
END_TEST

/* ------------------------------------------------------- foreign layout */

/* Bytes laid out by hand as PyTorch's save_file would: other key order in
 * the header and in each entry, "__metadata__" in the middle, no padding,
 * data at unaligned offsets, values written independently of our writer. */
START_TEST (test_foreign_file)
{
  char *path = tmp_path ("torch.safetensors");
  GError *err = NULL;
  const char *header =
      "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
      "\"__metadata__\":{\"format\":\"pt\"},"
      "\"labels\":{\"shape\":[3],\"data_offsets\":[0,3],\"dtype\":\"U8\"},"
      "\"step\":{\"data_offsets\":[11,19],\"dtype\":\"I64\",\"shape\":[]}}";
  const guint8 data[] = {
    7, 8, 9,                    /* labels */
    0x00, 0x00, 0x80, 0x3f,     /* 1.0f */
    0x00, 0x00, 0x20, 0xc1,     /* -10.0f */
    0x02, 0x01, 0, 0, 0, 0, 0, 0,       /* 258 */
  };
  CbirSafetensors *st;
  CbirTensorView v;
  float f[2];
  gint64 step;
  const gint64 want_w[] = { -1 };

  write_raw (path, header, data, sizeof data);
  st = cbir_safetensors_open (path, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (cbir_safetensors_get_metadata (st, "format"), "pt");
  ck_assert_str_eq (cbir_safetensors_list (st)[0], "labels");
  ck_assert_str_eq (cbir_safetensors_list (st)[1], "weight");
  ck_assert_str_eq (cbir_safetensors_list (st)[2], "step");
  ck_assert_ptr_null (cbir_safetensors_list (st)[3]);

  ck_assert (cbir_safetensors_require (st, "weight", CBIR_DTYPE_F32, 1,
          want_w, &v, &err));
  ck_assert_int_eq (v.shape[0], 2);
  memcpy (f, v.data, sizeof f);       /* unaligned in this file */
  ck_assert_float_eq (f[0], 1.0f);
  ck_assert_float_eq (f[1], -10.0f);
  ck_assert (cbir_safetensors_get (st, "labels", &v));
  ck_assert_int_eq (((const guint8 *) v.data)[2], 9);
  ck_assert (cbir_safetensors_require (st, "step", CBIR_DTYPE_I64, 0, NULL,
          &v, &err));
  memcpy (&step, v.data, 8);
  ck_assert_int_eq (step, 258);
  cbir_safetensors_free (st);
  g_free (path);
}
END_TEST

/* Holes between tensors and trailing bytes are tolerated by the reader. */
START_TEST (test_holes_tolerated)
{
  char *path = tmp_path ("holes.safetensors");
  const guint8 data[16] = { 1, 2, 0, 0, 0, 0, 0, 0, 3, 4 };
  CbirSafetensors *st;
  CbirTensorView v;

  write_raw (path, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],"
      "\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],"
      "\"data_offsets\":[8,10]}}   ", data, sizeof data);
  st = cbir_safetensors_open (path, NULL);
  ck_assert (st != NULL);
  ck_assert (cbir_safetensors_get (st, "b", &v));
  ck_assert_int_eq (((const guint8 *) v.data)[1], 4);
  cbir_safetensors_free (st);
  g_free (path);
}
END_TEST

/* ----------------------------------------------------------- corruption */

static const struct {
  const char *header;
  gsize data_len;
  const char *expect;           /* substring of the message */
} bad_headers[] = {
  {"", 0, "too small"},
  {"[]", 0, "not a JSON object"},
  {"\"str\"", 0, "not a JSON object"},
  {"{\"a\":", 0, "not valid JSON"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4,
      "not valid JSON"},
  {"{\"a\xff\":{}}", 0, "UTF-8"},
  {"{\"a\":[]}", 0, "'a': entry is not a JSON object"},
  {"{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
      "'a': unsupported dtype \"F16\""},
  {"{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      "'a': missing or non-string \"dtype\""},
  {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\""},
  {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"shape\""},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
      "'a': shape entry 0 is not a non-negative integer"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
      "'a': shape entry 0"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
      "'a': shape entry 0"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,2,3,4,5,6,7,8,9],"
      "\"data_offsets\":[0,4]}}", 4, "'a': 9 dimensions"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
      "\"data_offsets\":[0,4]}}", 4, "'a': shape's element count overflows"},
  {"{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
      "\"data_offsets\":[0,4]}}", 4, "'a': shape's byte size overflows"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
      "'a': \"data_offsets\" is not [begin, end]"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4,
      "'a': \"data_offsets\" is not [begin, end]"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4,
      "'a': \"data_offsets\" are not non-negative integers"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
      "'a': data_offsets [4, 0] end before begin"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 3,
      "'a': data_offsets [0, 4] past the end of the data (3 bytes"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":"
      "[18446744073709551615,18446744073709551615]}}", 4, "'a'"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
      "'a': data_offsets span 4 bytes but F32 [2] needs 8"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
      "tensors 'a' [0, 8) and 'b' [4, 12) overlap"},
  {"{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8,
      "tensors 'a' [0, 8) and 'b' [2, 6) overlap"},
  {"{\"__metadata__\":{\"k\":1}}", 0, "metadata 'k' is not a string"},
  {"{\"__metadata__\":{\"k\":null}}", 0, "metadata 'k' is not a string"},
  {"{\"__metadata__\":[\"k\"]}", 0, "\"__metadata__\" is not a JSON object"},
  {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
      "\"__metadata__\" has duplicate keys"},
  {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
      "duplicate names"},
  {"{\"a\":{\"dtype\":\"U8\",\"dtype\":\"F32\",\"shape\":[1],"
      "\"data_offsets\":[0,1]}}", 4, "'a': duplicate key"},
};

START_TEST (test_bad_header)
{
  char *path = tmp_path ("bad.safetensors");
  GError *err = NULL;
  guint8 data[64] = { 0 };
  gsize hlen = strlen (bad_headers[_i].header);
  CbirSafetensors *st;

  {
    GByteArray *b = g_byte_array_new ();
    guint8 len_le[8];
    for (int i = 0; i < 8; i++)
      len_le[i] = ((guint64) hlen >> (8 * i)) & 0xff;
    g_byte_array_append (b, len_le, 8);
    g_byte_array_append (b, (const guint8 *) bad_headers[_i].header, hlen);
    g_byte_array_append (b, data, bad_headers[_i].data_len);
    write_bytes (path, b->data, b->len);
    g_byte_array_unref (b);
  }
  st = cbir_safetensors_open (path, &err);
  ck_assert_msg (st == NULL, "case %d opened", _i);
  ck_assert (err != NULL);
  ck_assert (err->domain == CBIR_ERROR);
  ck_assert_msg (g_str_has_prefix (err->message, path),
      "case %d: '%s' does not name the file", _i, err->message);
  ck_assert_msg (strstr (err->message, bad_headers[_i].expect) != NULL,
      "case %d: '%s' lacks '%s'", _i, err->message, bad_headers[_i].expect);
  g_error_free (err);
  g_free (path);
}
END_TEST

START_TEST (test_bad_length)
{
  char *path = tmp_path ("len.safetensors");
  GError *err = NULL;
  const char *hdr = "{}      ";
  guint8 buf[16];

  /* shorter than 8 bytes */
  for (gsize n = 0; n < 8; n++) {
    memset (buf, 0, sizeof buf);
    write_bytes (path, buf, n);
    ck_assert (cbir_safetensors_open (path, &err) == NULL);
    ck_assert_msg (strstr (err->message, "too short"), "%s", err->message);
    ck_assert (g_str_has_prefix (err->message, path));
    g_clear_error (&err);
  }
  /* header length past the end: by one, and absurdly */
  memset (buf, 0, sizeof buf);
  buf[0] = 9;
  memcpy (buf + 8, hdr, 8);
  write_bytes (path, buf, 16);
  ck_assert (cbir_safetensors_open (path, &err) == NULL);
  ck_assert_msg (strstr (err->message, "header length 9 past end of file"),
      "%s", err->message);
  g_clear_error (&err);
  memset (buf, 0xff, 8);
  write_bytes (path, buf, 16);
  ck_assert (cbir_safetensors_open (path, &err) == NULL);
  ck_assert_msg (strstr (err->message, "past end of file"), "%s",
      err->message);
  g_clear_error (&err);
  /* a good one for contrast */
  memset (buf, 0, 8);
  buf[0] = 8;
  write_bytes (path, buf, 16);
  {
    CbirSafetensors *st = cbir_safetensors_open (path, &err);
    ck_assert_msg (st != NULL, "%s", err ? err->message : "");
    ck_assert_ptr_null (cbir_safetensors_list (st)[0]);
    cbir_safetensors_free (st);
  }
  /* a NUL byte inside the header */
  {
    static const char nul_hdr[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
        "\"data_offsets\":[0,1]}}\0      ";
    guint8 file[8 + sizeof nul_hdr];
    memset (file, 0, sizeof file);
    file[0] = sizeof nul_hdr - 1;
    memcpy (file + 8, nul_hdr, sizeof nul_hdr);  /* last byte: U8 data */
    write_bytes (path, file, sizeof file);
    ck_assert (cbir_safetensors_open (path, &err) == NULL);
    ck_assert_msg (strstr (err->message, "not valid UTF-8"), "%s",
        err->message);
    g_clear_error (&err);
  }
  /* missing file */
  g_unlink (path);
  ck_assert (cbir_safetensors_open (path, &err) == NULL);
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
  ck_assert (g_str_has_prefix (err->message, path));
  g_clear_error (&err);
  g_free (path);
}
END_TEST

static char *
write_sample (const char *name)
{
  char *path = tmp_path (name);
  float w[16 * 9];
  guint8 b[3] = { 1, 2, 3 };
  const gint64 sw[] = { 16, 1, 3, 3 }, sb[] = { 3 };
  CbirSafetensorsWriter *wr = cbir_safetensors_writer_new ();
  for (guint i = 0; i < G_N_ELEMENTS (w); i++)
    w[i] = i * 0.25f;
  cbir_safetensors_writer_add (wr, "layers.0.weight", CBIR_DTYPE_F32, 4, sw,
      w);
  cbir_safetensors_writer_add (wr, "labels", CBIR_DTYPE_U8, 1, sb, b);
  cbir_safetensors_writer_set_metadata (wr, "arch", "{\"x\": 1}");
  ck_assert (cbir_safetensors_writer_write (wr, path, NULL));
  cbir_safetensors_writer_free (wr);
  return path;
}

/* Every truncation of a good file is an error naming the file. */
START_TEST (test_truncated)
{
  char *path = write_sample ("good.safetensors");
  char *cut = tmp_path ("cut.safetensors");
  gchar *contents;
  gsize len;

  ck_assert (g_file_get_contents (path, &contents, &len, NULL));
  for (gsize n = 0; n < len; n++) {
    GError *err = NULL;
    write_bytes (cut, contents, n);
    ck_assert_msg (cbir_safetensors_open (cut, &err) == NULL,
        "truncated at %" G_GSIZE_FORMAT " opened", n);
    ck_assert_msg (g_str_has_prefix (err->message, cut), "%s",
        err->message);
    g_error_free (err);
  }
  g_free (contents);
  g_free (cut);
  g_free (path);
}
END_TEST

/* Every single-byte change in the header and length opens or fails
 * cleanly (the point is no crash or sanitizer report). */
START_TEST (test_flipped_bytes)
{
  char *path = write_sample ("good.safetensors");
  char *bad = tmp_path ("flip.safetensors");
  gchar *contents;
  gsize len;
  guint64 hlen = 0;
  const guint8 repl[] = { 0x00, 0xff, '"', '}', ']', '9', '-', ',' };
  guint n_ok = 0, n_err = 0;

  ck_assert (g_file_get_contents (path, &contents, &len, NULL));
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | (guint8) contents[i];
  for (gsize pos = 0; pos < 8 + hlen; pos++)
    for (guint r = 0; r < G_N_ELEMENTS (repl); r++) {
      GError *err = NULL;
      CbirSafetensors *st;
      gchar *copy = g_memdup2 (contents, len);
      if ((guint8) copy[pos] == repl[r]) {
        g_free (copy);
        continue;
      }
      copy[pos] = repl[r];
      write_bytes (bad, copy, len);
      st = cbir_safetensors_open (bad, &err);
      if (st) {
        const char *const *names = cbir_safetensors_list (st);
        for (guint i = 0; names[i]; i++) {
          CbirTensorView v;
          const guint8 *end = (const guint8 *) NULL;
          ck_assert (cbir_safetensors_get (st, names[i], &v));
          (void) end;
          /* touch every byte: must be inside the mapping */
          volatile guint8 sum = 0;
          for (gsize k = 0; k < v.nbytes; k++)
            sum += ((const guint8 *) v.data)[k];
          (void) sum;
        }
        cbir_safetensors_free (st);
        n_ok++;
      } else {
        ck_assert_msg (g_str_has_prefix (err->message, bad), "%s",
            err->message);
        g_error_free (err);
        n_err++;
      }
      g_free (copy);
    }
  ck_assert_uint_gt (n_err, 0);
  g_free (contents);
  g_free (bad);
  g_free (path);
}
END_TEST

/* --------------------------------------------------------------- require */

START_TEST (test_require)
{
  char *path = write_sample ("req.safetensors");
  GError *err = NULL;
  CbirSafetensors *st = cbir_safetensors_open (path, &err);
  CbirTensorView v;
  const gint64 exact[] = { 16, 1, 3, 3 }, wild[] = { -1, 1, -1, 3 },
      wrong[] = { 32, 1, 3, 3 };
  char *msg;

  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  ck_assert (cbir_safetensors_require (st, "layers.0.weight", CBIR_DTYPE_F32,
          4, exact, &v, &err));
  ck_assert_float_eq (((const float *) v.data)[5], 1.25f);
  ck_assert (cbir_safetensors_require (st, "layers.0.weight", CBIR_DTYPE_F32,
          4, wild, NULL, &err));

  ck_assert (!cbir_safetensors_require (st, "layers.0.weight",
          CBIR_DTYPE_F32, 4, wrong, &v, &err));
  msg = g_strdup_printf ("%s: tensor 'layers.0.weight' has shape [16,1,3,3],"
      " expected [32,1,3,3]", path);
  ck_assert_str_eq (err->message, msg);
  g_free (msg);
  g_clear_error (&err);

  ck_assert (!cbir_safetensors_require (st, "layers.0.weight",
          CBIR_DTYPE_F32, 3, wild, &v, &err));
  ck_assert_msg (strstr (err->message, "has shape [16,1,3,3], expected "
          "[*,1,*]"), "%s", err->message);
  g_clear_error (&err);

  ck_assert (!cbir_safetensors_require (st, "layers.0.weight",
          CBIR_DTYPE_F64, 4, exact, &v, &err));
  msg = g_strdup_printf ("%s: tensor 'layers.0.weight' has dtype F32, "
      "expected F64", path);
  ck_assert_str_eq (err->message, msg);
  g_free (msg);
  g_clear_error (&err);

  ck_assert (!cbir_safetensors_require (st, "layers.1.weight",
          CBIR_DTYPE_F32, 4, exact, &v, &err));
  msg = g_strdup_printf ("%s: tensor 'layers.1.weight' missing", path);
  ck_assert_str_eq (err->message, msg);
  g_free (msg);
  g_clear_error (&err);

  cbir_safetensors_free (st);
  g_free (path);
}
END_TEST

START_TEST (test_dtype_helpers)
{
  ck_assert_uint_eq (cbir_dtype_size (CBIR_DTYPE_U8), 1);
  ck_assert_uint_eq (cbir_dtype_size (CBIR_DTYPE_I32), 4);
  ck_assert_uint_eq (cbir_dtype_size (CBIR_DTYPE_I64), 8);
  ck_assert_uint_eq (cbir_dtype_size (CBIR_DTYPE_F32), 4);
  ck_assert_uint_eq (cbir_dtype_size (CBIR_DTYPE_F64), 8);
  ck_assert_str_eq (cbir_dtype_to_string (CBIR_DTYPE_U8), "U8");
  ck_assert_str_eq (cbir_dtype_to_string (CBIR_DTYPE_I32), "I32");
  ck_assert_str_eq (cbir_dtype_to_string (CBIR_DTYPE_I64), "I64");
  ck_assert_str_eq (cbir_dtype_to_string (CBIR_DTYPE_F32), "F32");
  ck_assert_str_eq (cbir_dtype_to_string (CBIR_DTYPE_F64), "F64");
}
END_TEST

/* ---------------------------------------------------------------- atomic */

static void
write_marker (const char *path)
{
  write_bytes (path, "OLD CONTENT", 11);
}

static void
assert_marker (const char *path)
{
  gchar *c;
  gsize len;
  ck_assert (g_file_get_contents (path, &c, &len, NULL));
  ck_assert_uint_eq (len, 11);
  ck_assert_mem_eq (c, "OLD CONTENT", 11);
  g_free (c);
}

START_TEST (test_atomic_success)
{
  char *path = tmp_path ("model.safetensors");
  char *listing;

  write_marker (path);
  g_free (write_sample ("model.safetensors"));  /* replaces it */
  listing = dir_listing (tmpdir);
  ck_assert_str_eq (listing, "model.safetensors");
  g_free (listing);
  {
    CbirSafetensors *st = cbir_safetensors_open (path, NULL);
    ck_assert (st != NULL);
    cbir_safetensors_free (st);
  }
  g_free (path);
}
END_TEST

/* Misuse of the writer is reported by write, which then writes nothing. */
START_TEST (test_writer_misuse)
{
  char *path = tmp_path ("model.safetensors");
  const gint64 s[] = { 1 }, neg[] = { -2 };
  float x = 1;
  const char *why[] = { "added twice", "invalid tensor name",
    "invalid shape", "invalid shape", "no data"
  };
  char *listing;

  for (guint k = 0; k < G_N_ELEMENTS (why); k++) {
    CbirSafetensorsWriter *w = cbir_safetensors_writer_new ();
    GError *err = NULL;
    write_marker (path);
    cbir_safetensors_writer_add (w, "x", CBIR_DTYPE_F32, 1, s, &x);
    switch (k) {
      case 0:
        cbir_safetensors_writer_add (w, "x", CBIR_DTYPE_F32, 1, s, &x);
        break;
      case 1:
        cbir_safetensors_writer_add (w, "__metadata__", CBIR_DTYPE_F32, 1, s,
            &x);
        break;
      case 2:
        cbir_safetensors_writer_add (w, "n", CBIR_DTYPE_F32, 1, neg, &x);
        break;
      case 3:
        cbir_safetensors_writer_add (w, "n", CBIR_DTYPE_F32, 9, s, &x);
        break;
      case 4:
        cbir_safetensors_writer_add (w, "n", CBIR_DTYPE_F32, 1, s, NULL);
        break;
    }
    ck_assert (!cbir_safetensors_writer_write (w, path, &err));
    ck_assert_msg (strstr (err->message, why[k]), "%s", err->message);
    ck_assert (g_str_has_prefix (err->message, path));
    g_error_free (err);
    cbir_safetensors_writer_free (w);
    assert_marker (path);
  }
  listing = dir_listing (tmpdir);
  ck_assert_str_eq (listing, "model.safetensors");
  g_free (listing);
  g_free (path);
}
END_TEST

START_TEST (test_atomic_failures)
{
  GError *err = NULL;
  float big[4096] = { 0 };
  const gint64 shape[] = { 4096 };
  char *path = tmp_path ("model.safetensors");
  char *sub = tmp_path ("sub");
  char *listing;
  CbirSafetensorsWriter *w = cbir_safetensors_writer_new ();
  cbir_safetensors_writer_add (w, "big", CBIR_DTYPE_F32, 1, shape, big);

  /* directory does not exist */
  {
    char *p = g_build_filename (tmpdir, "nodir", "m.safetensors", NULL);
    ck_assert (!cbir_safetensors_writer_write (w, p, &err));
    ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
    ck_assert (g_str_has_prefix (err->message, p));
    g_clear_error (&err);
    g_free (p);
  }
  /* the target is a directory: rename fails, temp removed */
  ck_assert_int_eq (g_mkdir (sub, 0755), 0);
  ck_assert (!cbir_safetensors_writer_write (w, sub, &err));
  ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
  g_clear_error (&err);
  ck_assert (g_file_test (sub, G_FILE_TEST_IS_DIR));
  g_rmdir (sub);

  /* write fails half way (file size limit): old target intact */
  write_marker (path);
  {
    struct rlimit old, lim;
    void (*old_handler) (int) = signal (SIGXFSZ, SIG_IGN);
    getrlimit (RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 1000;
    ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &lim), 0);
    ck_assert (!cbir_safetensors_writer_write (w, path, &err));
    setrlimit (RLIMIT_FSIZE, &old);
    signal (SIGXFSZ, old_handler);
    ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
    ck_assert_msg (strstr (err->message, "write failed"), "%s",
        err->message);
    g_clear_error (&err);
  }
  assert_marker (path);

  /* unwritable directory (meaningless for root, who may write anyway) */
  if (geteuid () != 0) {
    ck_assert_int_eq (g_chmod (tmpdir, 0555), 0);
    ck_assert (!cbir_safetensors_writer_write (w, path, &err));
    ck_assert (g_error_matches (err, CBIR_ERROR, CBIR_ERROR_IO));
    g_clear_error (&err);
    g_chmod (tmpdir, 0755);
    assert_marker (path);
  }

  listing = dir_listing (tmpdir);
  ck_assert_str_eq (listing, "model.safetensors");
  g_free (listing);
  cbir_safetensors_writer_free (w);
  g_free (sub);
  g_free (path);
}
END_TEST

/* ------------------------------------------------ independent implementation */

/* Runs tests/check/safetensors-compat.py (Python + numpy); FALSE when numpy
 * is not installed. */
static gboolean
run_compat (const char *cmd, const char *file, char **out)
{
  const char *root = g_getenv ("CBIR_SOURCE_ROOT");
  char *script = g_build_filename (root ? root : CBIR_SOURCE_DIR, "tests",
      "check", "safetensors-compat.py", NULL);
  const char *argv[] = { "/usr/bin/python3", script, cmd, file, NULL };
  char *err_out = NULL;
  int status = -1;
  GError *err = NULL;

  ck_assert_msg (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT,
          NULL, NULL, out, &err_out, &status, &err), "%s",
      err ? err->message : "");
  ck_assert_msg (g_spawn_check_wait_status (status, NULL), "%s %s: %s", cmd,
      file, err_out);
  g_free (err_out);
  g_free (script);
  return TRUE;
}

static gboolean
have_numpy (void)
{
  const char *argv[] = { "/usr/bin/python3", "-c", "import numpy", NULL };
  int status = -1;
  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL
          | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, &status, NULL)
      || !g_spawn_check_wait_status (status, NULL)) {
    g_print ("numpy not installed: cross-check with numpy skipped\n");
    return FALSE;
  }
  return TRUE;
}

/* Our file passes the official library's layout rules (contiguous, covering
 * the data, aligned) and numpy reads the same values; a file written by
 * numpy the way safetensors.numpy lays it out reads back here. */
START_TEST (test_numpy_compat)
{
  char *ours = tmp_path ("ours.safetensors");
  char *theirs = tmp_path ("numpy.safetensors");
  float f32[6] = { 0.5f, -1.25f, 3e-8f, 1e30f, -0.0f, 42.0f };
  double f64[2] = { 1.0 / 3.0, -2.5e300 };
  gint32 i32[3] = { -1, G_MAXINT32, G_MININT32 };
  gint64 i64[2] = { G_MAXINT64, -5 };
  guint8 u8[5] = { 0, 1, 127, 128, 255 };
  const gint64 s23[] = { 2, 3 }, s2[] = { 2 }, s3[] = { 3 }, s5[] = { 5 },
      s0[] = { 0 };
  const char *md = "{\"k\": \"v\\\\\"}\n\té ∑";
  CbirSafetensorsWriter *w;
  char *out = NULL;
  JsonParser *parser;
  JsonObject *root, *tensors;
  CbirSafetensors *st;
  CbirTensorView v;
  GError *err = NULL;

  if (!have_numpy ())
    return;
  w = cbir_safetensors_writer_new ();
  cbir_safetensors_writer_add (w, "u8", CBIR_DTYPE_U8, 1, s5, u8);
  cbir_safetensors_writer_add (w, "f32", CBIR_DTYPE_F32, 2, s23, f32);
  cbir_safetensors_writer_add (w, "i32", CBIR_DTYPE_I32, 1, s3, i32);
  cbir_safetensors_writer_add (w, "empty", CBIR_DTYPE_F32, 1, s0, NULL);
  cbir_safetensors_writer_add (w, "f64", CBIR_DTYPE_F64, 1, s2, f64);
  cbir_safetensors_writer_add (w, "i64", CBIR_DTYPE_I64, 1, s2, i64);
  cbir_safetensors_writer_set_metadata (w, "arch", md);
  ck_assert (cbir_safetensors_writer_write (w, ours, NULL));
  cbir_safetensors_writer_free (w);

  run_compat ("check", ours, &out);
  parser = json_parser_new ();
  ck_assert (json_parser_load_from_data (parser, out, -1, NULL));
  root = json_node_get_object (json_parser_get_root (parser));
  ck_assert_str_eq (json_object_get_string_member (json_object_get_object_member
          (root, "metadata"), "arch"), md);
  tensors = json_object_get_object_member (root, "tensors");
  ck_assert_uint_eq (json_object_get_size (tensors), 6);
#define VALUES(name) json_object_get_array_member ( \
      json_object_get_object_member (tensors, name), "values")
  for (guint i = 0; i < 6; i++)
    ck_assert (json_array_get_double_element (VALUES ("f32"), i) ==
        (double) f32[i]);
  for (guint i = 0; i < 2; i++)
    ck_assert (json_array_get_double_element (VALUES ("f64"), i) == f64[i]);
  for (guint i = 0; i < 3; i++)
    ck_assert_int_eq (json_array_get_int_element (VALUES ("i32"), i), i32[i]);
  for (guint i = 0; i < 2; i++)
    ck_assert_int_eq (json_array_get_int_element (VALUES ("i64"), i), i64[i]);
  for (guint i = 0; i < 5; i++)
    ck_assert_int_eq (json_array_get_int_element (VALUES ("u8"), i), u8[i]);
  ck_assert_uint_eq (json_array_get_length (VALUES ("empty")), 0);
#undef VALUES
  g_object_unref (parser);
  g_free (out);

  run_compat ("write", theirs, NULL);
  st = cbir_safetensors_open (theirs, &err);
  ck_assert_msg (st != NULL, "%s", err ? err->message : "");
  ck_assert_str_eq (cbir_safetensors_get_metadata (st, "format"), "np");
  {
    const gint64 ws[] = { 2, 3, 4 };
    ck_assert (cbir_safetensors_require (st, "encoder.0.weight",
            CBIR_DTYPE_F32, 3, ws, &v, &err));
    for (guint i = 0; i < 24; i++)
      ck_assert_float_eq (((const float *) v.data)[i], i / 8.0f);
  }
  ck_assert (cbir_safetensors_require (st, "labels", CBIR_DTYPE_U8, 1, s5,
          &v, &err));
  ck_assert_mem_eq (v.data, "\3\1\4\1\5", 5);
  ck_assert (cbir_safetensors_require (st, "ids", CBIR_DTYPE_I64, 1, s2, &v,
          &err));
  ck_assert_int_eq (((const gint64 *) v.data)[0], -7);
  ck_assert_int_eq (((const gint64 *) v.data)[1], G_GINT64_CONSTANT (1) << 40);
  ck_assert (cbir_safetensors_require (st, "mean", CBIR_DTYPE_F64, 0, NULL,
          &v, &err));
  ck_assert_double_eq (*(const double *) v.data, 0.25);
  cbir_safetensors_free (st);
  g_free (ours);
  g_free (theirs);
}
END_TEST

static Suite *
safetensors_suite (void)
{
  Suite *s = suite_create ("safetensors");
  TCase *tc = tcase_create ("safetensors");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_round_trip);
  tcase_add_test (tc, test_deterministic);
  tcase_add_test (tc, test_foreign_file);
  tcase_add_test (tc, test_holes_tolerated);
  tcase_add_test (tc, test_numpy_compat);
  tcase_add_loop_test (tc, test_bad_header, 0, G_N_ELEMENTS (bad_headers));
  tcase_add_test (tc, test_bad_length);
  tcase_add_test (tc, test_truncated);
  tcase_add_test (tc, test_flipped_bytes);
  tcase_add_test (tc, test_require);
  tcase_add_test (tc, test_dtype_helpers);
  tcase_add_test (tc, test_atomic_success);
  tcase_add_test (tc, test_writer_misuse);
  tcase_add_test (tc, test_atomic_failures);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  Suite *s = safetensors_suite ();
  SRunner *sr = srunner_create (s);
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? 0 : 1;
}

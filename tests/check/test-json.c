/* The JSON number writers (src/json-util.c) against printf: a float comes
 * out as the shortest of %.6g to %.9g that reads back as the same float
 * (the writer does not use printf: it is slow in a process with
 * libquadmath's printf extensions), integers as %lld / %llu. */
#include "config.h"

#include "json-util.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* the reference: what the writer printed with g_ascii_formatd */
static void
reference_float (char *buf, size_t size, float v)
{
  for (int prec = 6; prec <= 9; prec++) {
    char fmt[8];
    g_snprintf (fmt, sizeof fmt, "%%.%dg", prec);
    g_ascii_formatd (buf, size, fmt, v);
    if ((float) g_ascii_strtod (buf, NULL) == v)
      return;
  }
}

static void
check_float (float v, guint * differ)
{
  char ref[G_ASCII_DTOSTR_BUF_SIZE];
  GString *s = g_string_new (NULL);

  cbir_json_append_float (s, v);
  reference_float (ref, sizeof ref, v);
  /* it reads back exactly, never longer than printf's shortest */
  ck_assert_msg ((float) g_ascii_strtod (s->str, NULL) == v,
      "%s does not read back as %.9g", s->str, v);
  ck_assert_msg (s->len <= strlen (ref), "%s longer than %s", s->str, ref);
  if (strcmp (s->str, ref) != 0)
    (*differ)++;
  g_string_free (s, TRUE);
}

START_TEST (test_float_edges)
{
  const float values[] = { 1, -1, 0.5f, 0.1f, 0.8f, 1e-5f, 1e-4f, 9.9999e-5f,
    123456, 1234567, 12345678, 123456792.f, 1e6f, 1e7f, 999999.5f, 0.12311351f,
    0.5703654f, FLT_MAX, -FLT_MAX, FLT_MIN, FLT_TRUE_MIN, 1e38f, 3.0e-45f,
    100, 1000, 0.001f, 9.5f, 99.5f, 0.25f, 65536, 16777216, 1.0e-40f
  };
  guint differ = 0;
  GString *s = g_string_new (NULL);

  for (size_t i = 0; i < G_N_ELEMENTS (values); i++)
    check_float (values[i], &differ);
  ck_assert_uint_eq (differ, 0);
  cbir_json_append_float (s, 0.0f);
  g_string_append_c (s, ' ');
  cbir_json_append_float (s, -0.0f);
  g_string_append_c (s, ' ');
  cbir_json_append_float (s, NAN);
  g_string_append_c (s, ' ');
  cbir_json_append_float (s, -INFINITY);
  ck_assert_str_eq (s->str, "0 -0 null null");
  g_string_free (s, TRUE);
}
END_TEST

/* every exponent, random mantissas: same text as printf's in all but a
 * handful (a product's last bit), and those still read back and are no
 * longer */
START_TEST (test_float_random)
{
  GRand *r = g_rand_new_with_seed (13);
  guint differ = 0, n = 400000;

  for (guint i = 0; i < n; i++) {
    guint32 bits = g_rand_int (r);
    float v;

    memcpy (&v, &bits, sizeof v);
    if (!isfinite (v))
      continue;
    check_float (v, &differ);
  }
  ck_assert_msg (differ <= n / 10000, "%u of %u differ from printf", differ,
      n);
  g_rand_free (r);
}
END_TEST

START_TEST (test_ints)
{
  const gint64 ints[] = { 0, 1, -1, 9, 10, -10, 1234567890123LL, G_MAXINT64,
    G_MININT64
  };
  GString *s = g_string_new (NULL);
  char ref[32];

  for (size_t i = 0; i < G_N_ELEMENTS (ints); i++) {
    g_string_truncate (s, 0);
    cbir_json_append_int (s, ints[i]);
    g_snprintf (ref, sizeof ref, "%" G_GINT64_FORMAT, ints[i]);
    ck_assert_str_eq (s->str, ref);
  }
  g_string_truncate (s, 0);
  cbir_json_append_uint (s, G_MAXUINT64);
  ck_assert_str_eq (s->str, "18446744073709551615");
  g_string_truncate (s, 0);
  cbir_json_append_uint (s, 0);
  ck_assert_str_eq (s->str, "0");
  g_string_free (s, TRUE);
}
END_TEST

static Suite *
json_suite (void)
{
  Suite *s = suite_create ("json-util");
  TCase *tc = tcase_create ("numbers");
  tcase_add_test (tc, test_float_edges);
  tcase_add_test (tc, test_float_random);
  tcase_add_test (tc, test_ints);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (json_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? 0 : 1;
}

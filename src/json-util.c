/* Appending JSON values to a GString (model and training-info JSON). */
#include "config.h"

#include "json-util.h"

#include "cbir/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void
cbir_json_append_double (GString *s, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (!isfinite (v)) {
    g_string_append (s, "null");
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    char fmt[8];
    g_snprintf (fmt, sizeof fmt, "%%.%dg", prec);
    g_ascii_formatd (buf, sizeof buf, fmt, v);
    if (g_ascii_strtod (buf, NULL) == v)
      break;
  }
  g_string_append (s, buf);
}

/* v's P significant digits, correctly rounded (but for a product's last
 * bit: a string that does not read back is found by the caller), in
 * printf's %.Pg form: fixed for exponents -4 to P - 1, else d.ddde+XX;
 * trailing zeros dropped. a = |v| > 0, x = floor (log10 (a)). */
static void
format_g (char *out, double a, int negative, int x, int prec)
{
  char dig[12];
  int n, i;
  /* (ties to even, as printf) */
  guint64 m = (guint64) llrint (a * pow (10.0, prec - 1 - x));

  if (m >= (guint64) llround (pow (10.0, prec))) {
    m = (m + 5) / 10;
    x++;
  }
  /* its digits, most significant first, trailing zeros dropped */
  for (n = prec; n > 0; n--, m /= 10)
    dig[n - 1] = (char) ('0' + m % 10);
  for (n = prec; n > 1 && dig[n - 1] == '0'; n--);
  if (negative)
    *out++ = '-';
  if (x < -4 || x >= prec) {
    *out++ = dig[0];
    if (n > 1) {
      *out++ = '.';
      memcpy (out, dig + 1, (size_t) n - 1);
      out += n - 1;
    }
    *out++ = 'e';
    *out++ = x < 0 ? '-' : '+';
    x = abs (x);
    if (x >= 100)
      *out++ = (char) ('0' + x / 100);
    *out++ = (char) ('0' + x / 10 % 10);
    *out++ = (char) ('0' + x % 10);
    *out = '\0';
    return;
  }
  if (x < 0) {
    *out++ = '0';
    *out++ = '.';
    for (i = -1; i > x; i--)
      *out++ = '0';
    memcpy (out, dig, (size_t) n);
    out += n;
  } else {
    for (i = 0; i <= x; i++)
      *out++ = i < n ? dig[i] : '0';
    if (n > x + 1) {
      *out++ = '.';
      memcpy (out, dig + x + 1, (size_t) (n - x - 1));
      out += n - x - 1;
    }
  }
  *out = '\0';
}

void
cbir_json_append_float (GString *s, float v)
{
  char buf[32];
  double a = fabs ((double) v);
  int x;

  if (!isfinite (v)) {
    g_string_append (s, "null");
    return;
  }
  if (v == 0) {
    g_string_append (s, signbit (v) ? "-0" : "0");
    return;
  }
  /* without printf (which is slow in a process where libquadmath, loaded
   * with OpenBLAS, has registered its printf extensions): most floats
   * need 6 to 9 digits, 9 always read back */
  x = (int) floor (log10 (a));
  if (a < pow (10.0, x))        /* (log10's rounding) */
    x--;
  else if (a >= pow (10.0, x + 1))
    x++;
  for (int prec = 6; prec <= 9; prec++) {
    format_g (buf, a, v < 0, x, prec);
    if ((float) g_ascii_strtod (buf, NULL) == v)
      break;
  }
  g_string_append (s, buf);
}

void
cbir_json_append_uint (GString *s, guint64 v)
{
  char buf[24], *p = buf + sizeof buf;

  do {
    *--p = (char) ('0' + v % 10);
    v /= 10;
  } while (v);
  g_string_append_len (s, p, buf + sizeof buf - p);
}

void
cbir_json_append_int (GString *s, gint64 v)
{
  if (v < 0)
    g_string_append_c (s, '-');
  /* (the magnitude in unsigned arithmetic: G_MININT64 too) */
  cbir_json_append_uint (s, v < 0 ? (guint64) 0 - (guint64) v : (guint64) v);
}

void
cbir_json_append_string (GString *s, const char *str)
{
  g_string_append_c (s, '"');
  for (const char *p = str; *p; p++) {
    unsigned char c = (unsigned char) *p;
    if (c == '"' || c == '\\')
      g_string_append_printf (s, "\\%c", c);
    else if (c < 0x20)
      g_string_append_printf (s, "\\u%04x", c);
    else
      g_string_append_c (s, (char) c);
  }
  g_string_append_c (s, '"');
}

static int
hex4 (const char *p, const char *end)
{
  int v = 0;
  for (int i = 0; i < 4; i++) {
    if (p + i >= end || !g_ascii_isxdigit (p[i]))
      return -1;
    v = v * 16 + g_ascii_xdigit_value (p[i]);
  }
  return v;
}

gboolean
cbir_json_parse_strict (JsonParser *parser, const char *text, gssize len,
    GError **error)
{
  gsize n = len < 0 ? strlen (text) : (gsize) len;
  const char *end = text + n, *bad = NULL, *why = NULL;
  gboolean in_string = FALSE;

  if (!g_utf8_validate (text, n, &bad)) {
    why = "text that is not UTF-8";
    goto fail;
  }
  for (const char *p = text; p < end; p++) {
    if (*p == '"') {
      in_string = !in_string;
    } else if (in_string && *p == '\\') {
      bad = p;
      if (p + 1 >= end) {
        why = "a string that ends in a backslash";
        goto fail;
      }
      switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
          p++;
          break;
        case 'u':{
          int u = hex4 (p + 2, end);
          if (u < 0) {
            why = "a \\u escape without four hex digits";
            goto fail;
          }
          if (u >= 0xDC00 && u <= 0xDFFF) {
            why = "a lone UTF-16 low surrogate";
            goto fail;
          }
          if (u >= 0xD800 && u <= 0xDBFF) {
            int lo = p + 7 < end && p[6] == '\\' && p[7] == 'u'
                ? hex4 (p + 8, end) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) {
              why = "a lone UTF-16 high surrogate";
              goto fail;
            }
            p += 6;
          }
          p += 5;
          break;
        }
        default:
          why = "an escape JSON does not have (only \\\" \\\\ \\/ \\b "
              "\\f \\n \\r \\t \\uXXXX)";
          goto fail;
      }
    }
  }
  return json_parser_load_from_data (parser, text, (gssize) n, error);

fail:
  {
    guint line = 1, col = 1;
    for (const char *p = text; p < bad; p++) {
      if (*p == '\n') {
        line++;
        col = 1;
      } else {
        col++;
      }
    }
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT, "%u:%u: %s", line,
        col, why);
    return FALSE;
  }
}

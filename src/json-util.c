/* Appending JSON values to a GString (model and training-info JSON). */
#include "config.h"

#include "json-util.h"

#include "cbir/common.h"

#include <math.h>
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

void
cbir_json_append_float (GString *s, float v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (!isfinite (v)) {
    g_string_append (s, "null");
    return;
  }
  /* most floats need 6 to 9 digits: start at 6 */
  for (int prec = 6; prec <= 9; prec++) {
    char fmt[8];
    g_snprintf (fmt, sizeof fmt, "%%.%dg", prec);
    g_ascii_formatd (buf, sizeof buf, fmt, v);
    if ((float) g_ascii_strtod (buf, NULL) == v)
      break;
  }
  g_string_append (s, buf);
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

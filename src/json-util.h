/* Internal (not installed): appending JSON values to a GString, and
 * parsing JSON text strictly. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* The shortest decimal that reads back as the same double; null for NaN
 * and infinities (which JSON cannot hold). */
void cbir_json_append_double (GString *s, double v);

/* The same for a float: the shortest decimal (6 to 9 digits) that reads
 * back as the same float. */
void cbir_json_append_float (GString *s, float v);

/* Integers, without printf. */
void cbir_json_append_int (GString *s, gint64 v);
void cbir_json_append_uint (GString *s, guint64 v);

/* A JSON string: '"' and '\\' escaped, other control characters as \u00XX. */
void cbir_json_append_string (GString *s, const char *str);

/* json_parser_load_from_data () for RFC 8259 JSON only: the text must be
 * UTF-8 and its string escapes JSON's (json-glib also takes GScanner's
 * octal "\214", which makes a byte that is not UTF-8, and lone UTF-16
 * surrogates). FALSE with an error naming the line and column. */
gboolean cbir_json_parse_strict (JsonParser *parser, const char *text,
    gssize len, GError **error);

G_END_DECLS

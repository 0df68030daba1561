/* Internal (not installed): appending JSON values to a GString. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The shortest decimal that reads back as the same double; null for NaN
 * and infinities (which JSON cannot hold). */
void cbir_json_append_double (GString *s, double v);

/* A JSON string: '"' and '\\' escaped, other control characters as \u00XX. */
void cbir_json_append_string (GString *s, const char *str);

G_END_DECLS

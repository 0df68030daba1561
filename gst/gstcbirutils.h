/* gst-cbir: small helpers shared by the plugin's elements (internal).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <string.h>

G_BEGIN_DECLS

/* For set_property, called with the object lock held: a property flagged
 * GST_PARAM_MUTABLE_READY may not change once the element is past READY.
 * Then it unlocks, warns (debug log and an element warning on the bus) and
 * returns TRUE: the caller returns without touching the property. */
static inline gboolean
gst_cbir_refuse_if_running_unlocked (GstElement * element, GParamSpec * pspec)
{
  if (!(pspec->flags & GST_PARAM_MUTABLE_READY) ||
      GST_STATE (element) <= GST_STATE_READY)
    return FALSE;
  GST_OBJECT_UNLOCK (element);
  GST_WARNING_OBJECT (element, "refusing to change %s while running",
      pspec->name);
  GST_ELEMENT_WARNING (element, CORE, STATE_CHANGE,
      ("Property \"%s\" can only be changed in the NULL or READY state.",
          pspec->name), (NULL));
  return TRUE;
}

/* "host" or "host:port" (a broker's address): TRUE with *host (to free)
 * and *port (default_port when none is given). */
static inline gboolean
gst_cbir_parse_host_port (const gchar * address, guint default_port,
    gchar ** host, guint * port)
{
  const gchar *colon = strrchr (address, ':');
  guint64 p;

  if (colon == NULL) {
    *host = g_strdup (address);
    *port = default_port;
    return *address != '\0';
  }
  if (colon == address || !g_ascii_string_to_unsigned (colon + 1, 10, 1,
          65535, &p, NULL))
    return FALSE;
  *host = g_strndup (address, colon - address);
  *port = (guint) p;
  return TRUE;
}

G_END_DECLS

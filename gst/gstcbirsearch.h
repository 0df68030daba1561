/* gst-cbir: cbirsearch element.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

#define GST_TYPE_CBIR_SEARCH (gst_cbir_search_get_type ())
G_DECLARE_FINAL_TYPE (GstCbirSearch, gst_cbir_search, GST, CBIR_SEARCH, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE (cbirsearch);

G_END_DECLS

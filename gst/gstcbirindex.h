/* gst-cbir: cbirindex element.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstbasesink.h>

G_BEGIN_DECLS

#define GST_TYPE_CBIR_INDEX (gst_cbir_index_get_type ())
G_DECLARE_FINAL_TYPE (GstCbirIndex, gst_cbir_index, GST, CBIR_INDEX, GstBaseSink)

GST_ELEMENT_REGISTER_DECLARE (cbirindex);

G_END_DECLS

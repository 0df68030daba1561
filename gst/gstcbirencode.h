/* gst-cbir: cbirencode element.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

#define GST_TYPE_CBIR_ENCODE (gst_cbir_encode_get_type ())
G_DECLARE_FINAL_TYPE (GstCbirEncode, gst_cbir_encode, GST, CBIR_ENCODE, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE (cbirencode);

G_END_DECLS

/* gst-cbir: cbiridxsrc element.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstpushsrc.h>

G_BEGIN_DECLS

#define GST_TYPE_CBIR_IDXSRC (gst_cbir_idxsrc_get_type ())
G_DECLARE_FINAL_TYPE (GstCbirIdxSrc, gst_cbir_idxsrc, GST, CBIR_IDXSRC, GstPushSrc)

GST_ELEMENT_REGISTER_DECLARE (cbiridxsrc);

G_END_DECLS

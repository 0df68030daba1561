/* gst-cbir: cbiroverlay, draws the retrieval result on the video.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GST_TYPE_CBIR_OVERLAY (gst_cbir_overlay_get_type ())
G_DECLARE_FINAL_TYPE (GstCbirOverlay, gst_cbir_overlay, GST, CBIR_OVERLAY,
    GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE (cbiroverlay);

G_END_DECLS

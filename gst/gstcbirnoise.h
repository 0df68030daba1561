/* gst-cbir: cbirnoise element.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GST_TYPE_CBIR_NOISE (gst_cbir_noise_get_type ())
G_DECLARE_FINAL_TYPE (GstCbirNoise, gst_cbir_noise, GST, CBIR_NOISE, GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE (cbirnoise);

G_END_DECLS

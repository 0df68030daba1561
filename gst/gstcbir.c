/* gst-cbir: the "cbir" plugin (libgstcbir.so): content-based image
 * retrieval elements.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <gst/gst.h>

#include "gstcbirmeta.h"
#include "gstcbiridxsrc.h"
#include "gstcbirnoise.h"
#include "gstcbirencode.h"
#include "gstcbirsearch.h"
#include "gstcbirindex.h"
#include "gstcbirpublish.h"
#ifdef HAVE_CAIRO
#include "gstcbiroverlay.h"
#endif

static gboolean
plugin_init (GstPlugin * plugin)
{
  gboolean ret = FALSE;

  gst_cbir_meta_register_all ();

  ret |= GST_ELEMENT_REGISTER (cbiridxsrc, plugin);
  ret |= GST_ELEMENT_REGISTER (cbirnoise, plugin);
  ret |= GST_ELEMENT_REGISTER (cbirencode, plugin);
  ret |= GST_ELEMENT_REGISTER (cbirsearch, plugin);
  ret |= GST_ELEMENT_REGISTER (cbirindex, plugin);
  ret |= GST_ELEMENT_REGISTER (cbirpublish, plugin);
#ifdef HAVE_CAIRO
  ret |= GST_ELEMENT_REGISTER (cbiroverlay, plugin);
#endif

  return ret;
}

/* The file is libgstcbir.so: the loader looks for gst_plugin_cbir_get_desc. */
GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, cbir,
    "Content-based image retrieval: denoising-autoencoder codes and k-NN "
    "gallery search", plugin_init, VERSION, GST_LICENSE, GST_PACKAGE_NAME,
    GST_PACKAGE_ORIGIN)

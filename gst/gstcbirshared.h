/* gst-cbir: galleries shared by the elements of one process (internal).
 *
 * Every cbirsearch of a process that opens the same gallery file (the same
 * file by its real path) with the same journal gets one copy: the gallery
 * is opened and validated once, the match score's reference built once per
 * metric, and one set of enrolments serves them all, so an item enrolled
 * through one element is found by the next frame of every other (several
 * cameras, one gallery). The last element to stop releases it.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <cbir/enrolment.h>
#include <cbir/openset.h>

G_BEGIN_DECLS

typedef struct _GstCbirSharedGallery GstCbirSharedGallery;

/* The shared gallery of path (opened on first use) and journal (NULL:
 * GALLERY.journal), with a reference for the caller; NULL with an error
 * (CBIR_ERROR from the engine). Enrolments of galleries of bit codes are
 * NULL. */
GstCbirSharedGallery *gst_cbir_shared_gallery_get (const gchar * path,
    const gchar * journal, GError ** error);
void gst_cbir_shared_gallery_unref (GstCbirSharedGallery * sg);

CbirGallery *gst_cbir_shared_gallery_gallery (GstCbirSharedGallery * sg);
CbirEnrolments *gst_cbir_shared_gallery_enrolments (GstCbirSharedGallery *
    sg);
/* The match score's reference for a metric (built by the first caller; the
 * others wait for it); NULL with an error. */
CbirMatchScorer *gst_cbir_shared_gallery_scorer (GstCbirSharedGallery * sg,
    CbirMetric metric, GError ** error);
/* How many elements hold it now. */
guint gst_cbir_shared_gallery_users (GstCbirSharedGallery * sg);

G_END_DECLS

/* Enrolment: a gallery that grows while it is searched.
 *
 * A gallery file is immutable (mmap, shared); what is enrolled, removed or
 * relabelled while it is in use goes to its journal (GALLERY.journal, see
 * journal.h), durably, and lives here in memory: visible to the very next
 * search, replayed the next time the gallery is opened.
 *
 * Ids: an enrolled item has the id its enrolment gave; a gallery item is
 * named "#INDEX" or by its source id (cbir_gallery_get_id). Enrolling an
 * id that is already enrolled does nothing (enrolments can be replayed,
 * e.g. from another machine); removing or relabelling an unknown id is an
 * error.
 *
 * Search: the gallery's own structures (its k-NN graph included) stay as
 * they were built; enrolled items are searched exactly, with the gallery's
 * metric, beside them. cbir_enrolments_merge () combines one query's hits
 * from the gallery's searcher with them: removed items are dropped,
 * relabelled ones take their new label, and enrolled items nearer than the
 * gallery's first hit (the plain nearest item, also after diffusion) go
 * first, by distance; the other enrolled hits follow the gallery's, by
 * distance. An enrolled item's hit index is the gallery's size plus its
 * slot (0, 1, ... in enrolment order; a removed one keeps its slot).
 * Enrolled items join the graph only when the gallery is rebuilt from
 * their sources (nothing folds a journal into its gallery yet). Galleries of float codes only; enrolled items are matched with
 * the l2 or cosine metric (a Hamming search gets none of them).
 * Thread-safe: enrolments may come from any thread while others search,
 * with any metric. */
#pragma once

#include <cbir/gallery.h>
#include <cbir/journal.h>
#include <cbir/search.h>

G_BEGIN_DECLS

typedef struct _CbirEnrolments CbirEnrolments;

/* The enrolments of g, from journal_path (NULL: GALLERY.journal beside the
 * gallery file), replayed when it exists; the journal is created at the
 * first enrolment. */
CbirEnrolments *cbir_enrolments_new (const CbirGallery *g,
    const char *journal_path, GError **error);
void cbir_enrolments_free (CbirEnrolments *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirEnrolments, cbir_enrolments_free)

const char *cbir_enrolments_get_journal_path (const CbirEnrolments *e);
/* Enrolled items now (not removed). */
guint cbir_enrolments_n_enrolled (const CbirEnrolments *e);
/* Gallery items removed: a search should ask the gallery for this many
 * more hits than it wants. */
guint cbir_enrolments_n_removed (const CbirEnrolments *e);

gboolean cbir_enrolments_enrol (CbirEnrolments *e, const char *id,
    gint32 label, const float *code, GError **error);
gboolean cbir_enrolments_remove (CbirEnrolments *e, const char *id,
    GError **error);
/* Any record (e.g. received from another machine): written to the journal
 * and applied, unless its operation id was applied before (a duplicate
 * delivery) or it enrols an id already enrolled: then TRUE with *applied
 * FALSE. Removing or relabelling an unknown id is an error. */
gboolean cbir_enrolments_apply (CbirEnrolments *e,
    const CbirJournalRecord *r, gboolean *applied, GError **error);
gboolean cbir_enrolments_relabel (CbirEnrolments *e, const char *id,
    gint32 label, GError **error);

/* One query: the gallery's hits base[0..n-1] (rank order) merged with the
 * enrolled items (see above); at most k into out (which may not be base).
 * Returns the number written. */
guint cbir_enrolments_merge (CbirEnrolments *e, CbirMetric metric,
    const float *query, const CbirHit *base, guint n, guint k, CbirHit *out);

/* sizes[i]: how many items carry hits[i].label now (the gallery's items
 * not removed, under their label now, and the enrolled ones): what
 * cbir_vote_local_mean judges each label by. */
void cbir_enrolments_label_sizes (CbirEnrolments *e, const CbirHit *hits,
    guint n, guint *sizes);

/* The id of hit index i (gallery item or enrolled), newly allocated, or
 * NULL when i is out of range. */
char *cbir_enrolments_get_id (CbirEnrolments *e, guint i);

G_END_DECLS

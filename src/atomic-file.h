/* Internal (not installed): writing a file atomically and durably.
 *
 * The data goes to an unnamed file in the target's directory (O_TMPFILE)
 * where the file system and /proc allow it, else to a named temporary
 * ".BASE.tmp-PID@HOST-XXXXXX" beside the target. Commit syncs the data,
 * gives the unnamed file a temporary name (linkat), renames it over the
 * target and syncs the directory, so that a power cut after commit keeps
 * the new file. A process killed before commit leaves nothing behind with
 * an unnamed file (the kernel frees it); a named temporary of a process
 * of this host that no longer runs is removed by the next writer of the
 * same target. On any failure the target is left as it was.
 *
 *   CbirAtomicFile f;
 *   if (!cbir_atomic_file_open (&f, path, 0666, error)) return FALSE;
 *   if (!write everything to f.fd) { cbir_atomic_file_abort (&f); ... }
 *   return cbir_atomic_file_commit (&f, error);
 *
 * Every failing function sets `error` (whose message starts with `path`)
 * and leaves errno as the failing call set it, so a caller that wants its
 * own wording may pass a NULL error and report errno itself. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  int fd;                       /* open for writing until commit/abort */
  char *path;                   /* the target */
  char *dir;                    /* its directory */
  char *tmp;                    /* the named temporary, NULL while unnamed */
} CbirAtomicFile;

/* Opens a temporary for `path` with `mode` (less the umask). FALSE (and
 * nothing to clean up) if it cannot be created. */
gboolean cbir_atomic_file_open   (CbirAtomicFile *f, const char *path,
                                  int mode, GError **error);

/* fsync ()s the data, names and renames the file over the target, fsync ()s
 * the directory and closes everything. On failure removes the temporary
 * (the target is untouched unless the rename was done). Always consumes
 * `f`. */
gboolean cbir_atomic_file_commit (CbirAtomicFile *f, GError **error);

/* Closes and removes the temporary; keeps errno. Consumes `f`. */
void     cbir_atomic_file_abort  (CbirAtomicFile *f);

/* For tests: FALSE makes later opens use a named temporary as on a file
 * system without O_TMPFILE (TRUE, the default: unnamed where possible). */
void     cbir_atomic_file_set_allow_unnamed (gboolean allow);

G_END_DECLS

/* Internal (not installed): writing a file atomically.  The data goes to a
 * temporary file next to the target, which is synced, closed and renamed
 * over the target; on any failure the temporary is removed and the target
 * is left as it was.
 *
 *   fd = cbir_atomic_file_open (path, 0666, &tmp, error);
 *   if (fd < 0) return FALSE;
 *   if (!write everything to fd) { cbir_atomic_file_abort (fd, tmp); ... }
 *   return cbir_atomic_file_commit (fd, tmp, path, error);
 *
 * Every failing function sets `error` (whose message starts with `path`)
 * and leaves errno as the failing call set it, so a caller that wants its
 * own wording may pass a NULL error and report errno itself. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Creates "DIR/.BASE.tmp-XXXXXX" for `path` with `mode` (less the umask),
 * open for writing.  Returns the descriptor and the name in *tmp_out (free
 * it), or -1. */
int      cbir_atomic_file_open       (const char *path, int mode,
                                      char **tmp_out, GError **error);

/* fsync()s and closes `fd` (always consumed); on failure removes `tmp`. */
gboolean cbir_atomic_file_sync_close (int fd, const char *tmp,
                                      const char *path, GError **error);

/* Renames `tmp` to `path`; on failure removes `tmp`. */
gboolean cbir_atomic_file_rename     (const char *tmp, const char *path,
                                      GError **error);

/* cbir_atomic_file_sync_close () then cbir_atomic_file_rename (). */
gboolean cbir_atomic_file_commit     (int fd, const char *tmp,
                                      const char *path, GError **error);

/* Closes `fd` (if >= 0) and removes `tmp` (if not NULL); keeps errno. */
void     cbir_atomic_file_abort      (int fd, const char *tmp);

G_END_DECLS

/* Writing a file atomically: temp file next to the target, then rename. */
#include "config.h"

#include "atomic-file.h"

#include "cbir/common.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <glib/gstdio.h>

int
cbir_atomic_file_open (const char *path, int mode, char **tmp_out,
    GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  char *tmp = g_strdup_printf ("%s/.%s.tmp-XXXXXX", dir, base);
  int fd = g_mkstemp_full (tmp, O_RDWR | O_CLOEXEC, mode);

  if (fd < 0) {
    int e = errno;
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO,
        "%s: cannot create a temporary file in %s: %s", path, dir,
        g_strerror (e));
    g_free (tmp);
    errno = e;
    return -1;
  }
  *tmp_out = tmp;
  return fd;
}

gboolean
cbir_atomic_file_sync_close (int fd, const char *tmp, const char *path,
    GError **error)
{
  int e;

  if (fsync (fd) != 0) {
    e = errno;
    cbir_atomic_file_abort (fd, tmp);
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: fsync failed: %s",
        path, g_strerror (e));
    errno = e;
    return FALSE;
  }
  if (close (fd) != 0) {
    e = errno;
    cbir_atomic_file_abort (-1, tmp);
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: close failed: %s",
        path, g_strerror (e));
    errno = e;
    return FALSE;
  }
  return TRUE;
}

gboolean
cbir_atomic_file_rename (const char *tmp, const char *path, GError **error)
{
  if (g_rename (tmp, path) != 0) {
    int e = errno;
    cbir_atomic_file_abort (-1, tmp);
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot rename %s "
        "to it: %s", path, tmp, g_strerror (e));
    errno = e;
    return FALSE;
  }
  return TRUE;
}

gboolean
cbir_atomic_file_commit (int fd, const char *tmp, const char *path,
    GError **error)
{
  return cbir_atomic_file_sync_close (fd, tmp, path, error)
      && cbir_atomic_file_rename (tmp, path, error);
}

void
cbir_atomic_file_abort (int fd, const char *tmp)
{
  int e = errno;

  if (fd >= 0)
    close (fd);
  if (tmp != NULL)
    g_unlink (tmp);
  errno = e;
}

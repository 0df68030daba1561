/* Writing a file atomically and durably: an unnamed (O_TMPFILE) or named
 * temporary next to the target, synced, renamed over it, directory
 * synced. See atomic-file.h. */
#include "config.h"

#include "atomic-file.h"

#include "cbir/common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

static gint allow_unnamed = TRUE;

void
cbir_atomic_file_set_allow_unnamed (gboolean allow)
{
  g_atomic_int_set (&allow_unnamed, allow);
}

static void
clear (CbirAtomicFile *f)
{
  g_clear_pointer (&f->path, g_free);
  g_clear_pointer (&f->dir, g_free);
  g_clear_pointer (&f->tmp, g_free);
  f->fd = -1;
}

/* "DIR/.BASE.tmp-PID@HOST-": the prefix of this process's temporaries; the
 * pid and host let a later writer tell a dead process's leftovers. */
static char *
tmp_prefix (const CbirAtomicFile *f, const char *base)
{
  return g_strdup_printf ("%s/.%s.tmp-%ld@%s-", f->dir, base,
      (long) getpid (), g_get_host_name ());
}

/* Removes ".BASE.tmp-PID@HOST-XXXXXX" files of `base` left by processes
 * of this host that no longer run (killed between creating and renaming
 * a named temporary). Others' files, this host's live processes' and
 * names of another form are left alone. Best effort. */
static void
remove_stale (const CbirAtomicFile *f, const char *base)
{
  g_autofree char *want = g_strdup_printf (".%s.tmp-", base);
  const char *host = g_get_host_name ();
  GDir *d = g_dir_open (f->dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d))) {
    if (!g_str_has_prefix (name, want))
      continue;
    const char *p = name + strlen (want);
    char *end = NULL;
    errno = 0;
    long pid = strtol (p, &end, 10);
    if (errno || end == p || pid <= 0 || *end != '@')
      continue;
    gsize hl = strlen (host);
    if (strncmp (end + 1, host, hl) != 0 || end[1 + hl] != '-'
        || strlen (end + 2 + hl) != 6)
      continue;
    if (pid == (long) getpid () || kill ((pid_t) pid, 0) == 0
        || errno != ESRCH)
      continue;
    g_autofree char *full = g_build_filename (f->dir, name, NULL);
    if (g_unlink (full) == 0)
      g_debug ("%s: removed %s, left by process %ld", f->path, full, pid);
  }
  if (d)
    g_dir_close (d);
}

gboolean
cbir_atomic_file_open (CbirAtomicFile *f, const char *path, int mode,
    GError **error)
{
  g_autofree char *base = g_path_get_basename (path);
  int e;

  f->fd = -1;
  f->path = g_strdup (path);
  f->dir = g_path_get_dirname (path);
  f->tmp = NULL;

#ifdef O_TMPFILE
  /* linkat () names it through /proc (AT_EMPTY_PATH needs a privilege) */
  if (g_atomic_int_get (&allow_unnamed)
      && g_file_test ("/proc/self/fd", G_FILE_TEST_IS_DIR)) {
    f->fd = open (f->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
    if (f->fd >= 0)
      return TRUE;
    e = errno;
    /* not supported here: a named temporary; any other error is final */
    if (e != EOPNOTSUPP && e != EISDIR && e != EINVAL && e != ENOSYS)
      goto fail;
  }
#endif
  remove_stale (f, base);
  {
    g_autofree char *prefix = tmp_prefix (f, base);
    f->tmp = g_strconcat (prefix, "XXXXXX", NULL);
  }
  f->fd = g_mkstemp_full (f->tmp, O_RDWR | O_CLOEXEC, mode);
  if (f->fd >= 0)
    return TRUE;
  e = errno;

fail:
  g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO,
      "%s: cannot create a temporary file in %s: %s", path, f->dir,
      g_strerror (e));
  clear (f);
  errno = e;
  return FALSE;
}

/* Gives the unnamed file f->fd a fresh temporary name in its directory. */
static gboolean
name_unnamed (CbirAtomicFile *f)
{
  g_autofree char *base = g_path_get_basename (f->path);
  g_autofree char *prefix = tmp_prefix (f, base);
  g_autofree char *proc = g_strdup_printf ("/proc/self/fd/%d", f->fd);
  static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
      "VWXYZ0123456789";

  for (int attempt = 0; attempt < 100; attempt++) {
    char suffix[7];
    for (int i = 0; i < 6; i++)
      suffix[i] = chars[g_random_int_range (0, sizeof chars - 1)];
    suffix[6] = '\0';
    char *tmp = g_strconcat (prefix, suffix, NULL);
    if (linkat (AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0) {
      f->tmp = tmp;
      return TRUE;
    }
    int e = errno;
    g_free (tmp);
    if (e != EEXIST) {
      errno = e;
      return FALSE;
    }
  }
  errno = EEXIST;
  return FALSE;
}

/* fsync () of the directory, so that the rename survives a power cut.
 * File systems that cannot sync a directory (EINVAL) are not an error. */
static gboolean
sync_dir (const char *dir)
{
  int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return errno == EACCES;     /* a write-only directory: nothing to do */
  int r = fsync (dfd), e = errno;
  close (dfd);
  errno = e;
  return r == 0 || e == EINVAL || e == EROFS;
}

gboolean
cbir_atomic_file_commit (CbirAtomicFile *f, GError **error)
{
  const char *what;
  int e;

  what = "fsync failed";
  if (fsync (f->fd) != 0)
    goto fail;
  what = "cannot name the temporary file";
  if (!f->tmp && !name_unnamed (f))
    goto fail;
  what = "close failed";
  {
    int fd = f->fd;
    f->fd = -1;
    if (close (fd) != 0)
      goto fail;
  }
  what = "cannot rename the temporary file to it";
  if (g_rename (f->tmp, f->path) != 0)
    goto fail;
  g_clear_pointer (&f->tmp, g_free);    /* it is the target now */
  what = "cannot sync its directory";
  if (!sync_dir (f->dir)) {
    e = errno;
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: written, but %s: %s",
        f->path, what, g_strerror (e));
    clear (f);
    errno = e;
    return FALSE;
  }
  clear (f);
  return TRUE;

fail:
  e = errno;
  g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s: %s", f->path, what,
      g_strerror (e));
  cbir_atomic_file_abort (f);
  errno = e;
  return FALSE;
}

void
cbir_atomic_file_abort (CbirAtomicFile *f)
{
  int e = errno;

  if (f->fd >= 0)
    close (f->fd);
  if (f->tmp != NULL)
    g_unlink (f->tmp);
  clear (f);
  errno = e;
}

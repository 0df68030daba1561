/* The atomic writer (src/atomic-file.c): a commit replaces the target with
 * the whole new content; a process killed before its commit leaves
 * nothing behind (unnamed O_TMPFILE) or a named temporary that the next
 * writer of the target removes; others' temporaries are left alone. */
#include "config.h"

#include "atomic-file.h"

#include <check.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *tmpdir;

static void
setup (void)
{
  tmpdir = g_dir_make_tmp ("test-atomic-XXXXXX", NULL);
  ck_assert_ptr_nonnull (tmpdir);
  cbir_atomic_file_set_allow_unnamed (TRUE);
}

static void
teardown (void)
{
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *p = g_build_filename (tmpdir, name, NULL);
    g_unlink (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
}

/* The names in tmpdir, sorted, joined by spaces ("" when empty). */
static char *
listing (void)
{
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    g_ptr_array_add (names, g_strdup (name));
  if (d)
    g_dir_close (d);
  g_ptr_array_sort (names, (GCompareFunc) g_ascii_strcasecmp);
  g_ptr_array_add (names, NULL);
  char *s = g_strjoinv (" ", (char **) names->pdata);
  g_ptr_array_free (names, TRUE);
  return s;
}

static gboolean
write_file (const char *path, const char *text, GError **error)
{
  CbirAtomicFile f;
  if (!cbir_atomic_file_open (&f, path, 0644, error))
    return FALSE;
  gsize n = strlen (text);
  if (write (f.fd, text, n) != (gssize) n) {
    cbir_atomic_file_abort (&f);
    return FALSE;
  }
  return cbir_atomic_file_commit (&f, error);
}

/* A child opens a temporary for `path`, writes 1 MB and is killed with
 * SIGKILL before its commit. Returns whether its temporary was unnamed. */
static gboolean
killed_writer (const char *path)
{
  int pipefd[2];
  char named = '?';
  ck_assert_int_eq (pipe (pipefd), 0);
  pid_t pid = fork ();
  ck_assert (pid >= 0);
  if (pid == 0) {
    static char block[1 << 20];
    CbirAtomicFile f;
    close (pipefd[0]);
    if (!cbir_atomic_file_open (&f, path, 0644, NULL))
      _exit (2);
    memset (block, 'x', sizeof block);
    if (write (f.fd, block, sizeof block) != (gssize) sizeof block)
      _exit (3);
    char c = f.tmp ? 'n' : 'u';
    if (write (pipefd[1], &c, 1) != 1)
      _exit (4);
    raise (SIGKILL);
    _exit (5);
  }
  close (pipefd[1]);
  ck_assert_int_eq (read (pipefd[0], &named, 1), 1);
  close (pipefd[0]);
  int st = 0;
  ck_assert (waitpid (pid, &st, 0) == pid);
  ck_assert (WIFSIGNALED (st) && WTERMSIG (st) == SIGKILL);
  return named == 'u';
}

START_TEST (test_commit_replaces)
{
  g_autofree char *path = g_build_filename (tmpdir, "t.bin", NULL);
  g_autoptr (GError) err = NULL;
  g_autofree char *text = NULL;
  for (int unnamed = 1; unnamed >= 0; unnamed--) {
    cbir_atomic_file_set_allow_unnamed (unnamed);
    ck_assert_msg (write_file (path, "old", &err), "%s", err ? err->message
        : "");
    ck_assert_msg (write_file (path, "new content", &err), "%s",
        err ? err->message : "");
    ck_assert (g_file_get_contents (path, &text, NULL, NULL));
    ck_assert_str_eq (text, "new content");
    g_clear_pointer (&text, g_free);
    g_autofree char *ls = listing ();
    ck_assert_str_eq (ls, "t.bin");
    /* the mode asked for, less the umask */
    struct stat sb;
    mode_t um = umask (022);
    umask (um);
    ck_assert_int_eq (g_stat (path, &sb), 0);
    ck_assert_int_eq (sb.st_mode & 0777, 0644 & ~um);
    /* an aborted write leaves the target and nothing else */
    CbirAtomicFile f;
    ck_assert (cbir_atomic_file_open (&f, path, 0644, NULL));
    ck_assert (write (f.fd, "partial", 7) == 7);
    cbir_atomic_file_abort (&f);
    ck_assert (g_file_get_contents (path, &text, NULL, NULL));
    ck_assert_str_eq (text, "new content");
    g_clear_pointer (&text, g_free);
    g_autofree char *ls2 = listing ();
    ck_assert_str_eq (ls2, "t.bin");
  }
  /* a missing directory: an error naming the target */
  g_autofree char *bad = g_build_filename (tmpdir, "no", "t.bin", NULL);
  ck_assert (!write_file (bad, "x", &err));
  ck_assert_msg (strstr (err->message, bad) != NULL, "%s", err->message);
}
END_TEST

/* Killed before its commit, an unnamed temporary leaves nothing at all. */
START_TEST (test_killed_unnamed_leaves_nothing)
{
  g_autofree char *path = g_build_filename (tmpdir, "g.safetensors", NULL);
  if (!killed_writer (path)) {
    /* this file system has no O_TMPFILE: the named case is tested below */
    g_autofree char *ls = listing ();
    ck_assert_msg (strstr (ls, ".g.safetensors.tmp-") != NULL, "%s", ls);
    return;
  }
  g_autofree char *ls = listing ();
  ck_assert_str_eq (ls, "");
}
END_TEST

/* Killed before its commit, a named temporary stays until the next writer
 * of the same target removes it; live or foreign temporaries stay. */
START_TEST (test_killed_named_cleaned_by_next_writer)
{
  g_autofree char *path = g_build_filename (tmpdir, "g.safetensors", NULL);
  cbir_atomic_file_set_allow_unnamed (FALSE);
  ck_assert (!killed_writer (path));
  g_autofree char *ls = listing ();
  ck_assert_msg (g_str_has_prefix (ls, ".g.safetensors.tmp-")
      && strchr (ls, ' ') == NULL, "%s", ls);

  /* others' temporaries: a live process (our parent), another host, an
   * old-style name, another target */
  const char *host = g_get_host_name ();
  g_autofree char *live = g_strdup_printf (".g.safetensors.tmp-%ld@%s-aaaaaa",
      (long) getppid (), host);
  g_autofree char *foreign = g_strdup_printf (".g.safetensors.tmp-%ld@%s-x-"
      "bbbbbb", (long) 999999, host);
  const char *keep[] = { live, foreign, ".g.safetensors.tmp-cccccc",
    ".h.safetensors.tmp-1@x-dddddd"
  };
  for (guint i = 0; i < G_N_ELEMENTS (keep); i++) {
    g_autofree char *p = g_build_filename (tmpdir, keep[i], NULL);
    ck_assert (g_file_set_contents (p, "", 0, NULL));
  }
  g_autoptr (GError) err = NULL;
  ck_assert_msg (write_file (path, "ok", &err), "%s", err ? err->message
      : "");
  for (guint i = 0; i < G_N_ELEMENTS (keep); i++) {
    g_autofree char *p = g_build_filename (tmpdir, keep[i], NULL);
    ck_assert_msg (g_file_test (p, G_FILE_TEST_EXISTS), "removed %s",
        keep[i]);
  }
  g_autofree char *after = listing ();
  ck_assert_msg (strstr (after, ls) == NULL, "stale %s kept: %s", ls, after);
  ck_assert (g_file_test (path, G_FILE_TEST_EXISTS));
}
END_TEST

static Suite *
atomic_suite (void)
{
  Suite *s = suite_create ("atomic-file");
  TCase *tc = tcase_create ("core");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_commit_replaces);
  tcase_add_test (tc, test_killed_unnamed_leaves_nothing);
  tcase_add_test (tc, test_killed_named_cleaned_by_next_writer);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (atomic_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? 0 : 1;
}

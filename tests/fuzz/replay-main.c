/* A main () for the fuzz harnesses without libFuzzer (any compiler): runs
 * LLVMFuzzerTestOneInput once on every file named on the command line and
 * every file in the directories named there (sorted, not recursive), like
 * libFuzzer's StandaloneFuzzTargetMain. Arguments starting with '-' are
 * ignored (libFuzzer flags). Used as the regression test of each harness
 * on its committed corpus, and to replay a reproducer:
 *   replay-gallery crash-1234...
 * Exit status: 0 when every input ran; 1 when an input could not be read
 * (or was refused, with -expect_accepted) or no input was found (a
 * missing corpus must not pass silently).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv) __attribute__ ((weak));
extern int cbir_fuzz_accepted;    /* fuzz-common.h */

static gboolean expect_accepted;

static gboolean
run_file (const char *path)
{
  gchar *contents = NULL;
  gsize len = 0;
  GError *err = NULL;
  if (!g_file_get_contents (path, &contents, &len, &err)) {
    fprintf (stderr, "replay: %s\n", err->message);
    g_error_free (err);
    return FALSE;
  }
  /* an exact-size copy, so that ASan sees a read past the input's end */
  uint8_t *data = malloc (len ? len : 1);
  memcpy (data, contents, len);
  g_free (contents);
  fprintf (stderr, "replay: %s (%zu bytes)\n", path, (size_t) len);
  LLVMFuzzerTestOneInput (data, len);
  free (data);
  if (expect_accepted && !cbir_fuzz_accepted) {
    fprintf (stderr, "replay: %s: refused, but -expect_accepted (a seed "
        "made by an older format? regenerate with "
        "tests/fuzz/make-corpus.sh)\n", path);
    return FALSE;
  }
  return TRUE;
}

static gint
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

int
main (int argc, char **argv)
{
  guint ran = 0, failed = 0;

  g_setenv ("CBIR_FUZZ_VERBOSE", "1", FALSE);
  if (LLVMFuzzerInitialize)
    LLVMFuzzerInitialize (&argc, &argv);
  for (int i = 1; i < argc; i++)
    if (strcmp (argv[i], "-expect_accepted") == 0)
      expect_accepted = TRUE;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] == '-')
      continue;
    if (g_file_test (arg, G_FILE_TEST_IS_DIR)) {
      GError *err = NULL;
      GDir *dir = g_dir_open (arg, 0, &err);
      if (!dir) {
        fprintf (stderr, "replay: %s\n", err->message);
        g_error_free (err);
        failed++;
        continue;
      }
      GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
      const char *name;
      while ((name = g_dir_read_name (dir))) {
        char *p = g_build_filename (arg, name, NULL);
        if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
          g_ptr_array_add (files, p);
        else
          g_free (p);
      }
      g_dir_close (dir);
      g_ptr_array_sort (files, cmp_str);
      for (guint j = 0; j < files->len; j++) {
        if (run_file (files->pdata[j]))
          ran++;
        else
          failed++;
      }
      g_ptr_array_unref (files);
    } else if (run_file (arg)) {
      ran++;
    } else {
      failed++;
    }
  }
  fprintf (stderr, "replay: %u inputs ran, %u failed\n", ran, failed);
  return failed == 0 && ran > 0 ? 0 : 1;
}

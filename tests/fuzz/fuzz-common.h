/* Shared by the fuzz harnesses (tests/fuzz/fuzz-*.c): the engine's readers
 * take paths, so each input is written to a file first. One memfd per slot
 * and process, rewritten in place for every input (no file system traffic,
 * nothing left behind), opened by the readers as /proc/self/fd/N; a temp
 * file (unlinked at exit) where memfd_create is not available.
 *
 * Every harness is built twice: with libFuzzer (fuzz-NAME, -Dfuzzing=true,
 * clang) and with replay-main.c (replay-NAME, any compiler), which runs it
 * once on each file of the committed corpus as a regression test.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_SLOTS 2

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

typedef struct
{
  gboolean open;
  int fd;
  char path[4096];
} FuzzSlot;

static FuzzSlot fuzz_slots[FUZZ_SLOTS];

/* Set by the harness when its reader accepted the input (replay-main.c's
 * -expect_accepted checks it: the committed seeds must all load). */
int cbir_fuzz_accepted;
static gboolean fuzz_verbose;
static gboolean fuzz_inited;

static void
fuzz_cleanup (void)
{
  for (guint i = 0; i < FUZZ_SLOTS; i++) {
    if (fuzz_slots[i].open) {
      close (fuzz_slots[i].fd);
      if (!g_str_has_prefix (fuzz_slots[i].path, "/proc/"))
        g_unlink (fuzz_slots[i].path);
      fuzz_slots[i].open = FALSE;
    }
  }
}

/* Once per process: one worker thread everywhere (the harness measures the
 * readers, not thread start-up; results do not depend on it), criticals
 * and warnings fatal (a g_return_if_fail reached from file content is a
 * bug). */
static void
fuzz_init (void)
{
  if (fuzz_inited)
    return;
  fuzz_inited = TRUE;
  fuzz_verbose = g_getenv ("CBIR_FUZZ_VERBOSE") != NULL;
  g_setenv ("CBIR_THREADS", "1", TRUE);
  g_setenv ("OPENBLAS_NUM_THREADS", "1", FALSE);
  g_log_set_always_fatal (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL
      | G_LOG_LEVEL_WARNING);
  atexit (fuzz_cleanup);
}

static void
fuzz_die (const char *what)
{
  fprintf (stderr, "fuzz harness: %s: %s\n", what, g_strerror (errno));
  abort ();
}

/* Writes the input to slot `slot` and returns a path the readers can
 * open. The file holds exactly `size` bytes. */
static const char *
fuzz_write_input (guint slot, const uint8_t *data, size_t size)
{
  FuzzSlot *s;

  g_assert (slot < FUZZ_SLOTS);
  fuzz_init ();
  if (slot == 0)
    cbir_fuzz_accepted = 0;
  s = &fuzz_slots[slot];
  if (!s->open) {
    char name[32];
    g_snprintf (name, sizeof (name), "cbir-fuzz-%u", slot);
    s->fd = memfd_create (name, MFD_CLOEXEC);
    if (s->fd >= 0) {
      g_snprintf (s->path, sizeof (s->path), "/proc/self/fd/%d", s->fd);
      if (access (s->path, R_OK) != 0) {  /* no /proc */
        close (s->fd);
        s->fd = -1;
      }
    }
    if (s->fd < 0) {
      char *tmpl = g_build_filename (g_get_tmp_dir (),
          "cbir-fuzz-XXXXXX", NULL);
      s->fd = g_mkstemp (tmpl);
      if (s->fd < 0)
        fuzz_die ("cannot create the input file");
      g_strlcpy (s->path, tmpl, sizeof (s->path));
      g_free (tmpl);
    }
    s->open = TRUE;
  }
  if (ftruncate (s->fd, 0) != 0)
    fuzz_die ("ftruncate");
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite (s->fd, data + done, size - done, (off_t) done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      fuzz_die ("pwrite");
    done += (size_t) n;
  }
  return s->path;
}

/* An error from a refused input: nothing to do but free it (printed with
 * CBIR_FUZZ_VERBOSE set, as the replay does). */
static inline void
fuzz_drop_error (GError **error)
{
  if (*error) {
    g_assert ((*error)->message != NULL);
    if (fuzz_verbose)
      fprintf (stderr, "  refused: %s\n", (*error)->message);
    else
      (void) strlen ((*error)->message);
    g_clear_error (error);
  }
}

/* A cheap consumer of bytes the readers hand back, so that reading them
 * is not optimised away (ASan then checks every byte). */
static inline guint8
fuzz_touch (const void *p, gsize n)
{
  const volatile guint8 *b = p;
  guint8 acc = 0;
  for (gsize i = 0; i < n; i++)
    acc ^= b[i];
  return acc;
}

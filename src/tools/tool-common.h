/* Shared by the command-line tools (not installed).  Define CBIR_TOOL_NAME
 * ("cbir-train", ...) before including this. */
#pragma once

#include <glib.h>
#include <stdarg.h>
#include <stdio.h>

#ifndef CBIR_TOOL_NAME
#error "define CBIR_TOOL_NAME before including tool-common.h"
#endif

/* fail (): the tools' error exit.  Prints "TOOL: MESSAGE" on one line
 * (newlines become spaces) to stderr and returns 1, the exit status. */
static inline int fail (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static inline int
fail (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  for (char *p = msg; *p; p++)
    if (*p == '\n')
      *p = ' ';
  fprintf (stderr, "%s: %s\n", CBIR_TOOL_NAME, msg);
  return 1;
}

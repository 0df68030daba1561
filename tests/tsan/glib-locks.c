/* ThreadSanitizer builds only (-Db_sanitize=thread): makes GLib's locks
 * visible to TSan. Debian's GLib implements GMutex, GRWLock and GCond on
 * futexes, which TSan cannot see, so every field our elements and the
 * engine guard with them would be reported as a race. Linked into the test
 * programs (exported, so the PLT calls of GStreamer and of our code resolve
 * here first), each wrapper calls GLib's own function and tells TSan about
 * the acquire/release on the lock's address. GLib's calls to itself do not
 * come here (no PLT): what it hands between threads internally stays
 * invisible, hence tsan.supp. A deliberate unlocked read of a cbirsearch
 * property in the streaming thread is reported (checked by hand).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <glib.h>
#include <sanitizer/tsan_interface.h>

/* GLib's own function, looked up once (atomically: several threads may
 * take their first lock at the same time) */
#define REAL(ret, name, args) \
  static ret (*real_ptr) args; \
  ret (*real_fn) args = __atomic_load_n (&real_ptr, __ATOMIC_ACQUIRE); \
  if (G_UNLIKELY (!real_fn)) { \
    real_fn = (ret (*) args) dlsym (RTLD_NEXT, name); \
    __atomic_store_n (&real_ptr, real_fn, __ATOMIC_RELEASE); \
  }

void
g_mutex_lock (GMutex * m)
{
  REAL (void, "g_mutex_lock", (GMutex *));
  real_fn (m);
  __tsan_acquire (m);
}

gboolean
g_mutex_trylock (GMutex * m)
{
  REAL (gboolean, "g_mutex_trylock", (GMutex *));
  gboolean ok = real_fn (m);
  if (ok)
    __tsan_acquire (m);
  return ok;
}

void
g_mutex_unlock (GMutex * m)
{
  REAL (void, "g_mutex_unlock", (GMutex *));
  __tsan_release (m);
  real_fn (m);
}

void
g_rec_mutex_lock (GRecMutex * m)
{
  REAL (void, "g_rec_mutex_lock", (GRecMutex *));
  real_fn (m);
  __tsan_acquire (m);
}

gboolean
g_rec_mutex_trylock (GRecMutex * m)
{
  REAL (gboolean, "g_rec_mutex_trylock", (GRecMutex *));
  gboolean ok = real_fn (m);
  if (ok)
    __tsan_acquire (m);
  return ok;
}

void
g_rec_mutex_unlock (GRecMutex * m)
{
  REAL (void, "g_rec_mutex_unlock", (GRecMutex *));
  __tsan_release (m);
  real_fn (m);
}

void
g_rw_lock_writer_lock (GRWLock * l)
{
  REAL (void, "g_rw_lock_writer_lock", (GRWLock *));
  real_fn (l);
  __tsan_acquire (l);
}

gboolean
g_rw_lock_writer_trylock (GRWLock * l)
{
  REAL (gboolean, "g_rw_lock_writer_trylock", (GRWLock *));
  gboolean ok = real_fn (l);
  if (ok)
    __tsan_acquire (l);
  return ok;
}

void
g_rw_lock_writer_unlock (GRWLock * l)
{
  REAL (void, "g_rw_lock_writer_unlock", (GRWLock *));
  __tsan_release (l);
  real_fn (l);
}

void
g_rw_lock_reader_lock (GRWLock * l)
{
  REAL (void, "g_rw_lock_reader_lock", (GRWLock *));
  real_fn (l);
  __tsan_acquire (l);
}

gboolean
g_rw_lock_reader_trylock (GRWLock * l)
{
  REAL (gboolean, "g_rw_lock_reader_trylock", (GRWLock *));
  gboolean ok = real_fn (l);
  if (ok)
    __tsan_acquire (l);
  return ok;
}

void
g_rw_lock_reader_unlock (GRWLock * l)
{
  REAL (void, "g_rw_lock_reader_unlock", (GRWLock *));
  __tsan_release (l);
  real_fn (l);
}

void
g_cond_wait (GCond * c, GMutex * m)
{
  REAL (void, "g_cond_wait", (GCond *, GMutex *));
  __tsan_release (m);
  real_fn (c, m);
  __tsan_acquire (m);
  __tsan_acquire (c);
}

gboolean
g_cond_wait_until (GCond * c, GMutex * m, gint64 end_time)
{
  REAL (gboolean, "g_cond_wait_until", (GCond *, GMutex *, gint64));
  __tsan_release (m);
  gboolean ok = real_fn (c, m, end_time);
  __tsan_acquire (m);
  __tsan_acquire (c);
  return ok;
}

void
g_cond_signal (GCond * c)
{
  REAL (void, "g_cond_signal", (GCond *));
  __tsan_release (c);
  real_fn (c);
}

void
g_cond_broadcast (GCond * c)
{
  REAL (void, "g_cond_broadcast", (GCond *));
  __tsan_release (c);
  real_fn (c);
}

/* GAsyncQueue (GstHarness hands buffers and events to the test thread
 * through one): a push releases the queue, a pop acquires it. */
void
g_async_queue_push (GAsyncQueue * q, gpointer data)
{
  REAL (void, "g_async_queue_push", (GAsyncQueue *, gpointer));
  __tsan_release (q);
  real_fn (q, data);
}

gpointer
g_async_queue_pop (GAsyncQueue * q)
{
  REAL (gpointer, "g_async_queue_pop", (GAsyncQueue *));
  gpointer d = real_fn (q);
  __tsan_acquire (q);
  return d;
}

gpointer
g_async_queue_try_pop (GAsyncQueue * q)
{
  REAL (gpointer, "g_async_queue_try_pop", (GAsyncQueue *));
  gpointer d = real_fn (q);
  __tsan_acquire (q);
  return d;
}

gpointer
g_async_queue_timeout_pop (GAsyncQueue * q, guint64 timeout)
{
  REAL (gpointer, "g_async_queue_timeout_pop", (GAsyncQueue *, guint64));
  gpointer d = real_fn (q, timeout);
  __tsan_acquire (q);
  return d;
}

/* Exact k-NN search over a gallery: squared L2 and cosine on float
 * features, Hamming on packed bits, and a two-stage search (Hamming
 * shortlist, exact re-rank).
 *
 * - Kernels come in ISA variants (AVX-512 / AVX2+FMA / popcnt / generic)
 *   picked once at run time from the CPU (never -march=native); the
 *   environment variable CBIR_SEARCH_ISA=generic|popcnt|avx2|avx512 or
 *   cbir_search_set_isa() forces a lower level (tests run each path).
 * - A single query scans the gallery in blocks: a distance kernel fills a
 *   block, a vectorisable count finds whether anything in it beats the
 *   current k-th best, and only then are candidates pushed into a bounded
 *   max-heap. Large galleries are split over a persistent thread pool.
 * - Batches of float queries are blocked like a GEMM: each pool task
 *   takes a block of queries and, one gallery block at a time, has
 *   OpenBLAS (kept to one thread meanwhile) compute their dot products,
 *   turns them into ||q||^2 - 2 q.g + ||g||^2 with precomputed gallery
 *   norms and pushes what can enter the heaps (SIMD compare against the
 *   current k-th distance) while the block is still in cache.
 * - Ties are broken by gallery index: the order is (distance, index). */
#include "cbir/search.h"
#include "cbir/diffusion.h"
#include "cbir/model.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__clang__)
#pragma clang fp contract(fast)
#else
#pragma GCC optimize ("fp-contract=fast")
#endif

#define BLOCK 1024              /* items per distance block (single query) */
#define BATCH_QB 256            /* queries per GEMM block */
#define BATCH_GB 2048           /* gallery items per GEMM block */

/* ---------------------------------------------------------------------- */
/* Kernels */

typedef float v16sf __attribute__ ((vector_size (64)));
typedef float v16sf_u __attribute__ ((vector_size (64), aligned (4),
        may_alias));

/* out[r] = q . g[r] for rows consecutive rows of dim floats. */
static inline __attribute__ ((always_inline)) void
dots_body (const float *restrict q, const float *restrict g, gsize dim,
    guint rows, float *restrict out)
{
  gsize dv = dim & ~(gsize) 15;
  guint r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *g0 = g + r * dim, *g1 = g0 + dim, *g2 = g1 + dim,
        *g3 = g2 + dim;
    v16sf a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
    for (gsize j = 0; j < dv; j += 16) {
      v16sf qv = *(const v16sf_u *) (q + j);
      a0 += qv * *(const v16sf_u *) (g0 + j);
      a1 += qv * *(const v16sf_u *) (g1 + j);
      a2 += qv * *(const v16sf_u *) (g2 + j);
      a3 += qv * *(const v16sf_u *) (g3 + j);
    }
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int l = 0; l < 16; l++) {
      s0 += a0[l];
      s1 += a1[l];
      s2 += a2[l];
      s3 += a3[l];
    }
    for (gsize j = dv; j < dim; j++) {
      s0 += q[j] * g0[j];
      s1 += q[j] * g1[j];
      s2 += q[j] * g2[j];
      s3 += q[j] * g3[j];
    }
    out[r] = s0;
    out[r + 1] = s1;
    out[r + 2] = s2;
    out[r + 3] = s3;
  }
  for (; r < rows; r++) {
    const float *g0 = g + r * dim;
    v16sf a0 = { 0 };
    for (gsize j = 0; j < dv; j += 16)
      a0 += *(const v16sf_u *) (q + j) * *(const v16sf_u *) (g0 + j);
    float s0 = 0;
    for (int l = 0; l < 16; l++)
      s0 += a0[l];
    for (gsize j = dv; j < dim; j++)
      s0 += q[j] * g0[j];
    out[r] = s0;
  }
}

static inline guint64
load64 (const guint8 *p)
{
  guint64 v;
  memcpy (&v, p, 8);
  return v;
}

/* out[r] = popcount (q XOR codes[r]) for rows codes of `bytes` bytes. */
static inline __attribute__ ((always_inline)) void
hamming_body_fill (const guint8 *restrict q, const guint8 *restrict codes,
    gsize bytes, guint rows, guint16 *restrict out)
{
  if (bytes == 8) {
    guint64 q0 = load64 (q);
    for (guint r = 0; r < rows; r++)
      out[r] = (guint16) __builtin_popcountll (q0 ^ load64 (codes + 8 * r));
    return;
  }
  gsize words = bytes / 8, tail = bytes % 8;
  if (bytes < 8) {
    for (guint r = 0; r < rows; r++) {
      guint d = 0;
      for (gsize j = 0; j < bytes; j++)
        d += __builtin_popcount (q[j] ^ codes[r * bytes + j]);
      out[r] = (guint16) d;
    }
    return;
  }
  /* the tail: the last 8 bytes of the row, keeping only the `tail` bytes
   * past the last full word (little endian: the high bytes) */
  guint64 tmask = tail ? ~(guint64) 0 << (8 * (8 - tail)) : 0;
  guint64 qt = tail ? load64 (q + bytes - 8) & tmask : 0;
  if (words == 2 && !tail) {
    guint64 q0 = load64 (q), q1 = load64 (q + 8);
    for (guint r = 0; r < rows; r++) {
      const guint8 *c = codes + 16 * r;
      out[r] = (guint16) (__builtin_popcountll (q0 ^ load64 (c))
          + __builtin_popcountll (q1 ^ load64 (c + 8)));
    }
    return;
  }
  for (guint r = 0; r < rows; r++) {
    const guint8 *c = codes + r * bytes;
    guint64 d = 0;
    for (gsize w = 0; w < words; w++)
      d += __builtin_popcountll (load64 (q + 8 * w) ^ load64 (c + 8 * w));
    d += __builtin_popcountll (qt ^ (load64 (c + bytes - 8) & tmask));
    out[r] = (guint16) d;
  }
}

typedef void (*DotsFunc) (const float *q, const float *g, gsize dim,
    guint rows, float *out);
/* Returns the smallest distance of the block (65535 if rows == 0). */
typedef guint (*HammingFunc) (const guint8 *q, const guint8 *codes,
    gsize bytes, guint rows, guint16 *out);

static inline __attribute__ ((always_inline)) guint
hamming_body (const guint8 *restrict q, const guint8 *restrict codes,
    gsize bytes, guint rows, guint16 *restrict out)
{
  hamming_body_fill (q, codes, bytes, rows, out);
  guint m = 65535;
  for (guint r = 0; r < rows; r++)
    m = out[r] < m ? out[r] : m;
  return m;
}

static void
dots_generic (const float *q, const float *g, gsize dim, guint rows,
    float *out)
{
  dots_body (q, g, dim, rows, out);
}

__attribute__ ((target ("avx2,fma"))) static void
dots_avx2 (const float *q, const float *g, gsize dim, guint rows, float *out)
{
  dots_body (q, g, dim, rows, out);
}

__attribute__ ((target ("avx512f"))) static void
dots_avx512 (const float *q, const float *g, gsize dim, guint rows,
    float *out)
{
  dots_body (q, g, dim, rows, out);
}

static guint
hamming_generic (const guint8 *q, const guint8 *codes, gsize bytes,
    guint rows, guint16 *out)
{
  return hamming_body (q, codes, bytes, rows, out);
}

__attribute__ ((target ("popcnt"))) static guint
hamming_popcnt (const guint8 *q, const guint8 *codes, gsize bytes,
    guint rows, guint16 *out)
{
  return hamming_body (q, codes, bytes, rows, out);
}

/* AVX-512 VPOPCNTDQ: 64-bit codes 8 items per instruction; other widths
 * one row per 64-byte masked load (no reads past the row). */
#define AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512vpopcntdq,popcnt,sse4.1"

/* The lane sums of 8 vectors of 8 u64, as 8 u16 (a transpose-add tree). */
__attribute__ ((target (AVX512_TARGET))) static inline __m128i
reduce8_epi64 (__m512i p0, __m512i p1, __m512i p2, __m512i p3, __m512i p4,
    __m512i p5, __m512i p6, __m512i p7)
{
  __m512i a01 = _mm512_add_epi64 (_mm512_unpacklo_epi64 (p0, p1),
      _mm512_unpackhi_epi64 (p0, p1));
  __m512i a23 = _mm512_add_epi64 (_mm512_unpacklo_epi64 (p2, p3),
      _mm512_unpackhi_epi64 (p2, p3));
  __m512i a45 = _mm512_add_epi64 (_mm512_unpacklo_epi64 (p4, p5),
      _mm512_unpackhi_epi64 (p4, p5));
  __m512i a67 = _mm512_add_epi64 (_mm512_unpacklo_epi64 (p6, p7),
      _mm512_unpackhi_epi64 (p6, p7));
  __m512i b03 = _mm512_add_epi64 (_mm512_shuffle_i64x2 (a01, a23, 0x88),
      _mm512_shuffle_i64x2 (a01, a23, 0xDD));
  __m512i b47 = _mm512_add_epi64 (_mm512_shuffle_i64x2 (a45, a67, 0x88),
      _mm512_shuffle_i64x2 (a45, a67, 0xDD));
  __m512i c = _mm512_add_epi64 (_mm512_shuffle_i64x2 (b03, b47, 0x88),
      _mm512_shuffle_i64x2 (b03, b47, 0xDD));
  return _mm512_cvtepi64_epi16 (c);
}

__attribute__ ((target (AVX512_TARGET))) static guint
hamming_avx512 (const guint8 *q, const guint8 *codes, gsize bytes,
    guint rows, guint16 *out)
{
  guint m = 65535;
  guint r = 0;
  if (bytes == 8) {
    __m512i qv = _mm512_set1_epi64 ((long long) load64 (q));
    __m128i mn = _mm_set1_epi16 (-1);
    for (; r + 8 <= rows; r += 8) {
      __m512i c = _mm512_loadu_si512 ((const void *) (codes + 8 * r));
      __m512i p = _mm512_popcnt_epi64 (_mm512_xor_si512 (c, qv));
      __m128i p16 = _mm512_cvtepi64_epi16 (p);
      _mm_storeu_si128 ((__m128i *) (out + r), p16);
      mn = _mm_min_epu16 (mn, p16);
    }
    m = (guint) _mm_extract_epi16 (_mm_minpos_epu16 (mn), 0);
    guint64 q0 = load64 (q);
    for (; r < rows; r++) {
      out[r] = (guint16) __builtin_popcountll (q0 ^ load64 (codes + 8 * r));
      m = MIN (m, out[r]);
    }
    return m;
  }
  if (bytes <= 64) {
    __mmask64 mask = bytes == 64 ? ~(__mmask64) 0
        : (((__mmask64) 1 << bytes) - 1);
    __m512i qv = _mm512_maskz_loadu_epi8 (mask, q);
    __m128i mn = _mm_set1_epi16 (-1);
    for (; r + 8 <= rows; r += 8) {
      const guint8 *c = codes + r * bytes;
#define ROW_POP(i) _mm512_popcnt_epi64 (_mm512_xor_si512 (qv, \
          _mm512_maskz_loadu_epi8 (mask, c + (i) * bytes)))
      __m128i d = reduce8_epi64 (ROW_POP (0), ROW_POP (1), ROW_POP (2),
          ROW_POP (3), ROW_POP (4), ROW_POP (5), ROW_POP (6), ROW_POP (7));
#undef ROW_POP
      _mm_storeu_si128 ((__m128i *) (out + r), d);
      mn = _mm_min_epu16 (mn, d);
    }
    m = (guint) _mm_extract_epi16 (_mm_minpos_epu16 (mn), 0);
    for (; r < rows; r++) {
      __m512i c = _mm512_maskz_loadu_epi8 (mask, codes + r * bytes);
      __m512i p = _mm512_popcnt_epi64 (_mm512_xor_si512 (c, qv));
      guint d = (guint) _mm512_reduce_add_epi64 (p);
      out[r] = (guint16) d;
      m = MIN (m, d);
    }
    return m;
  }
  gsize full = bytes / 64, rest = bytes % 64;
  __mmask64 mask = (((__mmask64) 1 << rest) - 1);
  for (; r < rows; r++) {
    const guint8 *c = codes + r * bytes;
    __m512i acc = _mm512_setzero_si512 ();
    for (gsize w = 0; w < full; w++) {
      __m512i x = _mm512_xor_si512 (_mm512_loadu_si512 ((const void *) (c +
                  64 * w)), _mm512_loadu_si512 ((const void *) (q + 64 * w)));
      acc = _mm512_add_epi64 (acc, _mm512_popcnt_epi64 (x));
    }
    if (rest) {
      __m512i x = _mm512_xor_si512 (_mm512_maskz_loadu_epi8 (mask,
              c + 64 * full), _mm512_maskz_loadu_epi8 (mask, q + 64 * full));
      acc = _mm512_add_epi64 (acc, _mm512_popcnt_epi64 (x));
    }
    guint d = (guint) _mm512_reduce_add_epi64 (acc);
    out[r] = (guint16) d;
    m = MIN (m, d);
  }
  return m;
}

typedef enum
{
  ISA_GENERIC = 0,
  ISA_POPCNT,
  ISA_AVX2,
  ISA_AVX512,
} Isa;

static const char *const isa_names[] = { "generic", "popcnt", "avx2",
  "avx512"
};

static Isa
isa_detect (void)
{
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("avx512f")
      && __builtin_cpu_supports ("avx512bw")
      && __builtin_cpu_supports ("avx512vl")
      && __builtin_cpu_supports ("avx512vpopcntdq")
      && __builtin_cpu_supports ("popcnt"))
    return ISA_AVX512;
  if (__builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")
      && __builtin_cpu_supports ("popcnt"))
    return ISA_AVX2;
  if (__builtin_cpu_supports ("popcnt"))
    return ISA_POPCNT;
  return ISA_GENERIC;
}

static gint isa_current = -1;   /* atomic */

static gboolean
isa_from_name (const char *name, Isa *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (isa_names); i++) {
    if (g_ascii_strcasecmp (name, isa_names[i]) == 0) {
      *out = (Isa) i;
      return TRUE;
    }
  }
  return FALSE;
}

static Isa
isa_get (void)
{
  gint v = g_atomic_int_get (&isa_current);
  if (v >= 0)
    return (Isa) v;
  Isa best = isa_detect ();
  const char *env = g_getenv ("CBIR_SEARCH_ISA");
  Isa forced;
  if (env && *env && isa_from_name (env, &forced) && forced < best)
    best = forced;
  g_atomic_int_set (&isa_current, (gint) best);
  return best;
}

const char *
cbir_search_get_isa (void)
{
  return isa_names[isa_get ()];
}

gboolean
cbir_search_set_isa (const char *name)
{
  Isa want, best = isa_detect ();
  if (name == NULL) {
    g_atomic_int_set (&isa_current, -1);
    return TRUE;
  }
  if (!isa_from_name (name, &want) || want > best)
    return FALSE;
  g_atomic_int_set (&isa_current, (gint) want);
  return TRUE;
}

static DotsFunc
dots_for (Isa isa)
{
  return isa >= ISA_AVX512 ? dots_avx512 : isa >= ISA_AVX2 ? dots_avx2
      : dots_generic;
}

static HammingFunc
hamming_for (Isa isa)
{
  return isa >= ISA_AVX512 ? hamming_avx512 : isa >= ISA_POPCNT
      ? hamming_popcnt : hamming_generic;
}

/* ---------------------------------------------------------------------- */
/* Persistent thread pool: `run` hands n_tasks task indices to the workers
 * and the calling thread, and returns when all are done. One job at a
 * time; a caller that finds the pool busy runs its job alone. */

typedef void (*TaskFunc) (gpointer ctx, guint task);

typedef struct
{
  GMutex lock;
  GCond wake;
  GCond done;
  GMutex job_lock;              /* held by the caller running a job */
  GThread **threads;
  guint n_workers;
  guint64 generation;
  gboolean quit;
  TaskFunc func;
  gpointer ctx;
  guint n_tasks;
  gint next;                    /* atomic */
  guint busy;                   /* workers still on the current job */
} Pool;

static void
pool_drain (Pool *p, TaskFunc func, gpointer ctx, guint n_tasks)
{
  for (;;) {
    guint t = (guint) g_atomic_int_add (&p->next, 1);
    if (t >= n_tasks)
      break;
    func (ctx, t);
  }
}

static gpointer
pool_worker (gpointer data)
{
  Pool *p = data;
  guint64 seen = 0;
  g_mutex_lock (&p->lock);
  for (;;) {
    while (!p->quit && p->generation == seen)
      g_cond_wait (&p->wake, &p->lock);
    if (p->quit)
      break;
    seen = p->generation;
    TaskFunc func = p->func;
    gpointer ctx = p->ctx;
    guint n = p->n_tasks;
    g_mutex_unlock (&p->lock);
    pool_drain (p, func, ctx, n);
    g_mutex_lock (&p->lock);
    if (--p->busy == 0)
      g_cond_signal (&p->done);
  }
  g_mutex_unlock (&p->lock);
  return NULL;
}

static Pool *
pool_new (guint n_threads)
{
  Pool *p = g_new0 (Pool, 1);
  g_mutex_init (&p->lock);
  g_mutex_init (&p->job_lock);
  g_cond_init (&p->wake);
  g_cond_init (&p->done);
  p->n_workers = n_threads > 1 ? n_threads - 1 : 0;
  p->threads = g_new0 (GThread *, MAX (p->n_workers, 1));
  for (guint i = 0; i < p->n_workers; i++)
    p->threads[i] = g_thread_new ("cbir-search", pool_worker, p);
  return p;
}

static void
pool_free (Pool *p)
{
  g_mutex_lock (&p->lock);
  p->quit = TRUE;
  g_cond_broadcast (&p->wake);
  g_mutex_unlock (&p->lock);
  for (guint i = 0; i < p->n_workers; i++)
    g_thread_join (p->threads[i]);
  g_free (p->threads);
  g_mutex_clear (&p->lock);
  g_mutex_clear (&p->job_lock);
  g_cond_clear (&p->wake);
  g_cond_clear (&p->done);
  g_free (p);
}

static void
pool_run (Pool *p, TaskFunc func, gpointer ctx, guint n_tasks)
{
  if (n_tasks == 0)
    return;
  if (p->n_workers == 0 || n_tasks == 1 || !g_mutex_trylock (&p->job_lock)) {
    for (guint t = 0; t < n_tasks; t++)
      func (ctx, t);
    return;
  }
  g_mutex_lock (&p->lock);
  p->func = func;
  p->ctx = ctx;
  p->n_tasks = n_tasks;
  g_atomic_int_set (&p->next, 0);
  p->busy = p->n_workers;
  p->generation++;
  g_cond_broadcast (&p->wake);
  g_mutex_unlock (&p->lock);
  pool_drain (p, func, ctx, n_tasks);
  g_mutex_lock (&p->lock);
  while (p->busy > 0)
    g_cond_wait (&p->done, &p->lock);
  g_mutex_unlock (&p->lock);
  g_mutex_unlock (&p->job_lock);
}

/* ---------------------------------------------------------------------- */
/* Bounded max-heap of the k best (distance, index) pairs. */

typedef struct
{
  float d;
  guint idx;
} Cand;

static inline gboolean
cand_worse (Cand a, Cand b)
{
  return a.d > b.d || (a.d == b.d && a.idx > b.idx);
}

typedef struct
{
  Cand *c;
  guint n;
  guint cap;
} Heap;

static void
heap_init (Heap *h, Cand *storage, guint cap)
{
  h->c = storage;
  h->n = 0;
  h->cap = cap;
}

static inline void
heap_sift_down (Heap *h, guint i)
{
  Cand x = h->c[i];
  for (;;) {
    guint l = 2 * i + 1;
    if (l >= h->n)
      break;
    guint m = l;
    if (l + 1 < h->n && cand_worse (h->c[l + 1], h->c[l]))
      m = l + 1;
    if (!cand_worse (h->c[m], x))
      break;
    h->c[i] = h->c[m];
    i = m;
  }
  h->c[i] = x;
}

static inline void
heap_push (Heap *h, Cand x)
{
  if (h->n < h->cap) {
    guint i = h->n++;
    while (i > 0) {
      guint par = (i - 1) / 2;
      if (!cand_worse (x, h->c[par]))
        break;
      h->c[i] = h->c[par];
      i = par;
    }
    h->c[i] = x;
  } else if (h->cap > 0 && cand_worse (h->c[0], x)) {
    h->c[0] = x;
    heap_sift_down (h, 0);
  }
}

/* The distance a candidate must be at most to enter the heap. */
static inline float
heap_bound (const Heap *h)
{
  return h->n < h->cap ? INFINITY : h->c[0].d;
}

static int
cand_cmp (const void *a, const void *b)
{
  Cand x = *(const Cand *) a, y = *(const Cand *) b;
  if (x.d < y.d)
    return -1;
  if (x.d > y.d)
    return 1;
  return (x.idx > y.idx) - (x.idx < y.idx);
}

/* Sorts the heap's content ascending; returns the count. */
static guint
heap_sort (Heap *h)
{
  qsort (h->c, h->n, sizeof (Cand), cand_cmp);
  return h->n;
}

/* Pushes block distances d[0..n) of items base.. that can enter. */
static inline void
heap_push_block_f (Heap *h, const float *d, guint n, guint base)
{
  float bound = heap_bound (h);
  guint hits = 0;
  for (guint i = 0; i < n; i++)
    hits += d[i] <= bound;
  if (hits == 0)
    return;
  for (guint i = 0; i < n; i++) {
    if (d[i] <= bound) {
      Cand c = { d[i], base + i };
      heap_push (h, c);
      bound = heap_bound (h);
    }
  }
}

static inline void
heap_push_block_u16 (Heap *h, const guint16 *d, guint n, guint base,
    guint block_min)
{
  float fb = heap_bound (h);
  guint bound = fb >= 65535.f ? 65535u : (guint) fb;
  if (block_min > bound)
    return;
  for (guint i = 0; i < n; i++) {
    if (d[i] <= bound) {
      Cand c = { (float) d[i], base + i };
      heap_push (h, c);
      fb = heap_bound (h);
      bound = fb >= 65535.f ? 65535u : (guint) fb;
    }
  }
}

/* ---------------------------------------------------------------------- */
/* The searcher */

struct _CbirSearcher
{
  const CbirGallery *g;
  CbirMetric metric;
  guint shortlist;
  guint n;
  guint dim;
  guint code_bytes;
  guint code_bits;              /* floats in a query code for Hamming */
  const float *feat;
  const guint8 *codes;
  const float *thresholds;
  const gint32 *labels;
  float *gnorm;                 /* L2: ||g||^2; cosine: 1 / ||g|| (0 if 0) */
  DotsFunc dots;
  HammingFunc hamming;
  Isa isa;
  Pool *pool;
  guint n_threads;
  gsize par_bytes;              /* split one query over threads past this */
  guint qe_k;                   /* query expansion: neighbours, 0 = off */
  float qe_alpha;
  const CbirGraph *graph;       /* diffusion over it, or NULL */
  CbirDiffusionParams dp;
  gint32 *owned_labels;         /* raw searchers (DBA): zeros */
};

/* Floats in one query: the code's bits for Hamming, else the features'. */
static inline guint
query_dim (const CbirSearcher *s)
{
  return s->metric == CBIR_METRIC_HAMMING ? s->code_bits : s->dim;
}

const char *
cbir_metric_to_string (CbirMetric m)
{
  switch (m) {
    case CBIR_METRIC_L2:
      return "l2";
    case CBIR_METRIC_COSINE:
      return "cosine";
    case CBIR_METRIC_HAMMING:
      return "hamming";
  }
  return "unknown";
}

gboolean
cbir_metric_from_string (const char *s, CbirMetric *out)
{
  if (g_strcmp0 (s, "l2") == 0)
    *out = CBIR_METRIC_L2;
  else if (g_strcmp0 (s, "cosine") == 0)
    *out = CBIR_METRIC_COSINE;
  else if (g_strcmp0 (s, "hamming") == 0)
    *out = CBIR_METRIC_HAMMING;
  else
    return FALSE;
  return TRUE;
}

static void searcher_setup (CbirSearcher *s, gboolean need_feat,
    guint n_threads);

CbirSearcher *
cbir_searcher_new (const CbirGallery *g, CbirMetric metric, guint shortlist,
    GError **error)
{
  return cbir_searcher_new_full (g, metric, shortlist, 0, error);
}

CbirSearcher *
cbir_searcher_new_full (const CbirGallery *g, CbirMetric metric,
    guint shortlist, guint n_threads, GError **error)
{
  g_return_val_if_fail (g != NULL, NULL);
  const char *path = cbir_gallery_get_path (g);
  gboolean need_feat = metric != CBIR_METRIC_HAMMING;
  gboolean need_codes = metric == CBIR_METRIC_HAMMING || shortlist > 0;
  if (metric > CBIR_METRIC_HAMMING) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "unknown metric %d", (int) metric);
    return NULL;
  }
  if (need_feat && !cbir_gallery_get_features (g)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: metric \"%s\" needs float features, the gallery has only "
        "packed bits", path, cbir_metric_to_string (metric));
    return NULL;
  }
  if (need_codes && !cbir_gallery_get_codes (g)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: %s needs packed bit codes, the gallery has none", path,
        metric == CBIR_METRIC_HAMMING ? "Hamming search"
        : "a Hamming shortlist");
    return NULL;
  }
  if (need_codes && cbir_gallery_get_code_bits (g) > 65535) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "%s: codes of %u bits are longer than the 65535 supported", path,
        cbir_gallery_get_code_bits (g));
    return NULL;
  }
  if (metric == CBIR_METRIC_HAMMING && shortlist > 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "a shortlist needs an exact re-rank metric (l2 or cosine), not "
        "hamming");
    return NULL;
  }

  CbirSearcher *s = g_new0 (CbirSearcher, 1);
  s->g = g;
  s->metric = metric;
  s->shortlist = shortlist;
  s->n = cbir_gallery_size (g);
  s->dim = cbir_gallery_get_dim (g);
  s->code_bytes = cbir_gallery_get_code_bytes (g);
  s->code_bits = cbir_gallery_get_code_bits (g);
  s->feat = cbir_gallery_get_features (g);
  s->codes = cbir_gallery_get_codes (g);
  s->thresholds = cbir_gallery_get_bit_thresholds (g);
  s->labels = cbir_gallery_get_labels (g);
  searcher_setup (s, need_feat, n_threads);
  return s;
}

/* Kernels, norms and the thread pool of a searcher whose data fields are
 * set. */
static void
searcher_setup (CbirSearcher *s, gboolean need_feat, guint n_threads)
{
  CbirMetric metric = s->metric;
  Isa isa = isa_get ();
  s->dots = dots_for (isa);
  s->hamming = hamming_for (isa);
  s->isa = isa;
  if (need_feat) {
    s->gnorm = g_new (float, MAX (s->n, 1));
    for (guint i = 0; i < s->n; i++) {
      const float *x = s->feat + (gsize) i * s->dim;
      double acc = 0;
      for (guint j = 0; j < s->dim; j++)
        acc += (double) x[j] * x[j];
      if (metric == CBIR_METRIC_L2)
        s->gnorm[i] = (float) acc;
      else
        s->gnorm[i] = acc > 0 ? (float) (1.0 / sqrt (acc)) : 0.f;
    }
  }
  s->n_threads = n_threads ? n_threads : cbir_default_threads ();
  s->pool = pool_new (s->n_threads);
  s->par_bytes = 1 << 21;
  const char *env = g_getenv ("CBIR_SEARCH_PAR_BYTES");
  if (env && *env)
    s->par_bytes = g_ascii_strtoull (env, NULL, 10);
}

void
cbir_searcher_free (CbirSearcher *s)
{
  if (!s)
    return;
  pool_free (s->pool);
  g_free (s->gnorm);
  g_free (s->owned_labels);
  g_free (s);
}

guint
cbir_searcher_get_threads (const CbirSearcher *s)
{
  return s->n_threads;
}

/* A prepared query. */
typedef struct
{
  const float *q;
  float qnorm;                  /* L2: ||q||^2; cosine: 1/||q|| */
  guint8 *bits;                 /* packed query (Hamming, shortlist) */
} Query;

static float
query_norm (const CbirSearcher *s, const float *q)
{
  double acc = 0;
  for (guint j = 0; j < s->dim; j++)
    acc += (double) q[j] * q[j];
  if (s->metric == CBIR_METRIC_L2)
    return (float) acc;
  return acc > 0 ? (float) (1.0 / sqrt (acc)) : 0.f;
}

static void
query_prepare (const CbirSearcher *s, const float *q, guint8 *bits_storage,
    Query *out)
{
  out->q = q;
  out->qnorm = s->metric != CBIR_METRIC_HAMMING ? query_norm (s, q) : 0.f;
  out->bits = NULL;
  if (s->metric == CBIR_METRIC_HAMMING || s->shortlist > 0) {
    cbir_codes_pack_bits (q, 1, s->code_bits, s->thresholds, bits_storage);
    out->bits = bits_storage;
  }
}

/* Float distances of items [base, base+rows) from dot products. */
static inline void
finish_float (const CbirSearcher *s, const Query *qq, guint base, guint rows,
    float *d)
{
  const float *gn = s->gnorm + base;
  if (s->metric == CBIR_METRIC_L2) {
    float qn = qq->qnorm;
    for (guint i = 0; i < rows; i++) {
      float v = qn + gn[i] - 2.f * d[i];
      d[i] = v > 0.f ? v : 0.f;
    }
  } else {
    float qi = qq->qnorm;
    for (guint i = 0; i < rows; i++)
      d[i] = 1.f - d[i] * qi * gn[i];
  }
}

/* Scans items [a, b) into heap h. */
static void
scan_range (const CbirSearcher *s, const Query *qq, guint a, guint b,
    Heap *h)
{
  if (s->metric == CBIR_METRIC_HAMMING) {
    guint16 d[BLOCK];
    for (guint i = a; i < b; i += BLOCK) {
      guint rows = MIN (BLOCK, b - i);
      guint mn = s->hamming (qq->bits, s->codes + (gsize) i * s->code_bytes,
          s->code_bytes, rows, d);
      heap_push_block_u16 (h, d, rows, i, mn);
    }
  } else {
    float d[BLOCK];
    for (guint i = a; i < b; i += BLOCK) {
      guint rows = MIN (BLOCK, b - i);
      s->dots (qq->q, s->feat + (gsize) i * s->dim, s->dim, rows, d);
      finish_float (s, qq, i, rows, d);
      heap_push_block_f (h, d, rows, i);
    }
  }
}

/* Exact distance of one item (re-rank). */
static inline float
item_distance (const CbirSearcher *s, const Query *qq, guint i)
{
  float d;
  s->dots (qq->q, s->feat + (gsize) i * s->dim, s->dim, 1, &d);
  finish_float (s, qq, i, 1, &d);
  return d;
}

typedef struct
{
  const CbirSearcher *s;
  const Query *qq;
  guint n_parts;
  Heap *heaps;
} SplitCtx;

static void
split_task (gpointer data, guint t)
{
  SplitCtx *c = data;
  guint n = c->s->n;
  /* part boundaries on BLOCK multiples */
  guint blocks = (n + BLOCK - 1) / BLOCK;
  guint a = (guint) ((guint64) blocks * t / c->n_parts) * BLOCK;
  guint b = (guint) ((guint64) blocks * (t + 1) / c->n_parts) * BLOCK;
  scan_range (c->s, c->qq, MIN (a, n), MIN (b, n), &c->heaps[t]);
}

/* Top-`cap` of the first stage (the whole metric for one-stage searches,
 * the Hamming shortlist for two-stage ones) into h, sorted. */
static void
first_stage (CbirSearcher *s, const Query *qq, Heap *h, gboolean may_split)
{
  gsize row_bytes = s->metric == CBIR_METRIC_HAMMING || s->shortlist
      ? s->code_bytes : (gsize) s->dim * sizeof (float);
  guint parts = s->n_threads;
  if (!may_split || parts < 2 || (gsize) s->n * row_bytes < s->par_bytes
      || s->n < parts * BLOCK) {
    if (s->shortlist > 0 && s->metric != CBIR_METRIC_HAMMING) {
      /* Hamming shortlist: scan codes as a Hamming searcher would */
      CbirSearcher hs = *s;
      hs.metric = CBIR_METRIC_HAMMING;
      scan_range (&hs, qq, 0, s->n, h);
    } else {
      scan_range (s, qq, 0, s->n, h);
    }
    heap_sort (h);
    return;
  }
  CbirSearcher hs = *s;
  if (s->shortlist > 0)
    hs.metric = CBIR_METRIC_HAMMING;
  Heap heaps[parts];
  Cand *store = g_new (Cand, (gsize) parts * h->cap);
  for (guint t = 0; t < parts; t++)
    heap_init (&heaps[t], store + (gsize) t * h->cap, h->cap);
  SplitCtx c = { &hs, qq, parts, heaps };
  pool_run (s->pool, split_task, &c, parts);
  for (guint t = 0; t < parts; t++)
    for (guint i = 0; i < heaps[t].n; i++)
      heap_push (h, heaps[t].c[i]);
  g_free (store);
  heap_sort (h);
}

static guint
search_one (CbirSearcher *s, const Query *qq, guint k, CbirHit *hits,
    gboolean may_split)
{
  if (k == 0 || s->n == 0)
    return 0;
  guint cap1 = s->shortlist > 0 ? MAX (s->shortlist, k) : k;
  cap1 = MIN (cap1, s->n);
  Cand stack_store[128];
  Cand *store = cap1 <= 128 ? stack_store : g_new (Cand, cap1);
  Heap h;
  heap_init (&h, store, cap1);
  first_stage (s, qq, &h, may_split);
  guint n = h.n;
  if (s->shortlist > 0) {
    /* exact re-rank of the shortlist */
    Cand kstore_stack[128];
    guint kc = MIN (k, n);
    Cand *kstore = kc <= 128 ? kstore_stack : g_new (Cand, kc);
    Heap hk;
    heap_init (&hk, kstore, kc);
    for (guint i = 0; i < n; i++) {
      Cand c = { item_distance (s, qq, h.c[i].idx), h.c[i].idx };
      heap_push (&hk, c);
    }
    n = heap_sort (&hk);
    for (guint i = 0; i < n; i++) {
      hits[i].index = hk.c[i].idx;
      hits[i].label = s->labels[hk.c[i].idx];
      hits[i].distance = hk.c[i].d;
    }
    if (kstore != kstore_stack)
      g_free (kstore);
  } else {
    n = MIN (n, k);
    for (guint i = 0; i < n; i++) {
      hits[i].index = h.c[i].idx;
      hits[i].label = s->labels[h.c[i].idx];
      hits[i].distance = h.c[i].d;
    }
  }
  if (store != stack_store)
    g_free (store);
  return n;
}

static guint
search_plain (CbirSearcher *s, const float *query, guint k, CbirHit *hits)
{
  guint8 bits_stack[256];
  guint8 *bits = s->code_bytes <= sizeof (bits_stack) ? bits_stack
      : g_malloc (s->code_bytes);
  Query qq;
  query_prepare (s, query, bits, &qq);
  guint n = search_one (s, &qq, k, hits, TRUE);
  if (bits != bits_stack)
    g_free (bits);
  return n;
}

guint
cbir_searcher_search_codes (CbirSearcher *s, const guint8 *code, guint k,
    CbirHit *hits)
{
  g_return_val_if_fail (s != NULL && code != NULL, 0);
  g_return_val_if_fail (s->metric == CBIR_METRIC_HAMMING, 0);
  Query qq = { NULL, 0.f, (guint8 *) code };
  return search_one (s, &qq, k, hits, TRUE);
}

/* ---- batches ---- */

typedef struct
{
  CbirSearcher *s;
  const float *queries;
  guint nq;
  guint k;
  CbirHit *hits;
  guint *n_hits;
  guint per_task;
  float *out;                   /* diffusion's distances_batch, or NULL */
} BatchCtx;

static void
batch_task_each (gpointer data, guint t)
{
  BatchCtx *c = data;
  CbirSearcher *s = c->s;
  guint a = t * c->per_task, b = MIN (c->nq, a + c->per_task);
  guint dq = query_dim (s);
  guint8 *bits = g_malloc (MAX (s->code_bytes, 1));
  for (guint i = a; i < b; i++) {
    Query qq;
    query_prepare (s, c->queries + (gsize) i * dq, bits, &qq);
    guint n = search_one (s, &qq, c->k, c->hits + (gsize) i * c->k, FALSE);
    if (c->n_hits)
      c->n_hits[i] = n;
  }
  g_free (bits);
}

/* L2 batch rows: d[i] <- max (qn + gn[i] - 2 d[i], 0), bit for bit as
 * finish_float (written as (qn + gn) - (d + d): no product to contract),
 * and every item that can enter h is pushed; vectorised compare, so the
 * (rare, once the heap is full) candidates are found without a scalar
 * pass over the row. */
static inline float
l2_finish1 (float qn, float gn, float x)
{
  float v = (qn + gn) - (x + x);
  return v > 0.f ? v : 0.f;
}

static inline void
push_bits (Heap *h, const float *d, guint base, guint i0, guint64 mask,
    float *bound)
{
  while (mask) {
    guint i = i0 + (guint) __builtin_ctzll (mask);
    mask &= mask - 1;
    if (d[i] <= *bound) {
      Cand c = { d[i], base + i };
      heap_push (h, c);
      *bound = heap_bound (h);
    }
  }
}

/* The scalar rest of a row, items i0..n-1. */
static inline void
l2_finish_push_tail (const float *gn, float qn, float *d, guint i0, guint n,
    Heap *h, guint base, float *bound)
{
  for (guint i = i0; i < n; i++) {
    d[i] = l2_finish1 (qn, gn[i], d[i]);
    if (d[i] <= *bound)
      push_bits (h, d, base, i, 1, bound);
  }
}

static void
l2_finish_push_sse (const float *gn, float qn, float *d, guint n, Heap *h,
    guint base)
{
  float bound = heap_bound (h);
  __m128 q = _mm_set1_ps (qn), zero = _mm_setzero_ps ();
  guint i = 0;
  for (; i + 16 <= n; i += 16) {
    guint64 m = 0;
    for (guint j = 0; j < 16; j += 4) {
      __m128 x = _mm_loadu_ps (d + i + j);
      __m128 v = _mm_sub_ps (_mm_add_ps (q, _mm_loadu_ps (gn + i + j)),
          _mm_add_ps (x, x));
      v = _mm_max_ps (v, zero);
      _mm_storeu_ps (d + i + j, v);
      m |= (guint64) _mm_movemask_ps (_mm_cmple_ps (v,
              _mm_set1_ps (bound))) << j;
    }
    if (m)
      push_bits (h, d, base, i, m, &bound);
  }
  l2_finish_push_tail (gn, qn, d, i, n, h, base, &bound);
}

__attribute__ ((target ("avx512f"))) static void
l2_finish_push_avx512 (const float *gn, float qn, float *d, guint n,
    Heap *h, guint base)
{
  float bound = heap_bound (h);
  __m512 q = _mm512_set1_ps (qn), zero = _mm512_setzero_ps ();
  guint i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 x0 = _mm512_loadu_ps (d + i), x1 = _mm512_loadu_ps (d + i + 16);
    __m512 v0 = _mm512_sub_ps (_mm512_add_ps (q, _mm512_loadu_ps (gn + i)),
        _mm512_add_ps (x0, x0));
    __m512 v1 = _mm512_sub_ps (_mm512_add_ps (q,
            _mm512_loadu_ps (gn + i + 16)), _mm512_add_ps (x1, x1));
    v0 = _mm512_max_ps (v0, zero);
    v1 = _mm512_max_ps (v1, zero);
    _mm512_storeu_ps (d + i, v0);
    _mm512_storeu_ps (d + i + 16, v1);
    __m512 b = _mm512_set1_ps (bound);
    guint64 m = _mm512_cmp_ps_mask (v0, b, _CMP_LE_OQ)
        | ((guint64) _mm512_cmp_ps_mask (v1, b, _CMP_LE_OQ) << 16);
    if (m)
      push_bits (h, d, base, i, m, &bound);
  }
  l2_finish_push_tail (gn, qn, d, i, n, h, base, &bound);
}

/* GEMM-blocked float batch. Each pool task owns a block of queries: it
 * runs its own single-threaded sgemm against one gallery block at a time
 * (the dot block stays in the core's L2) and turns the rows into
 * distances and heap pushes (or full distance rows) right away, while
 * they are in cache. No hand-off between a BLAS thread team and the pool
 * per gallery block; OpenBLAS is kept to one thread meanwhile. */
typedef struct
{
  CbirSearcher *s;
  const float *queries;
  guint nq;
  guint qb;                     /* queries per task */
  Heap *heaps;                  /* nq heaps, or NULL */
  float *full;                  /* distances_batch: nq rows of n, or NULL */
} GemmCtx;

static void
gemm_task (gpointer data, guint t)
{
  GemmCtx *c = data;
  const CbirSearcher *s = c->s;
  guint q0 = t * c->qb, qb = MIN (c->qb, c->nq - q0);
  const float *queries = c->queries + (gsize) q0 * s->dim;
  float qnorm[BATCH_QB];
  for (guint i = 0; i < qb; i++)
    qnorm[i] = query_norm (s, queries + (gsize) i * s->dim);
  float *dotbuf = g_malloc (sizeof (float) * (gsize) qb * BATCH_GB);
  for (guint g0 = 0; g0 < s->n; g0 += BATCH_GB) {
    guint gb = MIN (BATCH_GB, s->n - g0);
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) qb, (int) gb,
        (int) s->dim, 1.f, queries, (int) s->dim,
        s->feat + (gsize) g0 * s->dim, (int) s->dim, 0.f, dotbuf, BATCH_GB);
    for (guint i = 0; i < qb; i++) {
      float *d = dotbuf + (gsize) i * BATCH_GB;
      if (!c->full && s->metric == CBIR_METRIC_L2) {
        if (s->isa >= ISA_AVX512)
          l2_finish_push_avx512 (s->gnorm + g0, qnorm[i], d, gb,
              &c->heaps[q0 + i], g0);
        else
          l2_finish_push_sse (s->gnorm + g0, qnorm[i], d, gb,
              &c->heaps[q0 + i], g0);
        continue;
      }
      Query qq = { NULL, qnorm[i], NULL };
      finish_float (s, &qq, g0, gb, d);
      if (c->full)
        memcpy (c->full + (gsize) (q0 + i) * s->n + g0, d,
            sizeof (float) * gb);
      else
        heap_push_block_f (&c->heaps[q0 + i], d, gb, g0);
    }
  }
  g_free (dotbuf);
}

/* Queries [0, nq): fills heaps (nq of them) or full distance rows. */
static void
gemm_run (CbirSearcher *s, const float *queries, guint nq, Heap *heaps,
    float *full)
{
  /* at least 2 tasks per thread for balance; otherwise blocks as thick
   * as BATCH_QB allows (each task rereads the whole gallery: thinner
   * blocks measured slower, most at large dims), at least 16 */
  guint qb = (nq + s->n_threads * 2 - 1) / (s->n_threads * 2);
  qb = CLAMP (qb, MIN (16, nq), BATCH_QB);
  guint tasks = (nq + qb - 1) / qb;
  GemmCtx c = { s, queries, nq, qb, heaps, full };
  int blas_threads = openblas_get_num_threads ();
  if (blas_threads != 1)
    openblas_set_num_threads (1);
  pool_run (s->pool, gemm_task, &c, tasks);
  if (blas_threads != 1)
    openblas_set_num_threads (blas_threads);
}

static void
search_batch_plain (CbirSearcher *s, const float *queries, guint nq,
    guint k, CbirHit *hits, guint *n_hits)
{
  if (nq == 0)
    return;
  if (k == 0 || s->n == 0) {
    if (n_hits)
      memset (n_hits, 0, sizeof (guint) * nq);
    return;
  }
  if (s->metric == CBIR_METRIC_HAMMING || s->shortlist > 0 || nq < 4) {
    /* queries spread over the pool, each scanned alone */
    BatchCtx c = { s, queries, nq, k, hits, n_hits, 1, NULL };
    c.per_task = MAX (1, nq / (s->n_threads * 8));
    guint tasks = (nq + c.per_task - 1) / c.per_task;
    if (nq < 4) {
      for (guint i = 0; i < nq; i++) {
        guint n = search_plain (s, queries + (gsize) i *
            query_dim (s), k,
            hits + (gsize) i * k);
        if (n_hits)
          n_hits[i] = n;
      }
      return;
    }
    pool_run (s->pool, batch_task_each, &c, tasks);
    return;
  }
  guint kc = MIN (k, s->n);
  /* in query chunks, so that the heaps stay bounded for huge batches */
  const guint chunk = 1 << 16;
  Cand *store = g_new (Cand, (gsize) MIN (nq, chunk) * kc);
  Heap *heaps = g_new (Heap, MIN (nq, chunk));
  for (guint q0 = 0; q0 < nq; q0 += chunk) {
    guint qb = MIN (chunk, nq - q0);
    for (guint i = 0; i < qb; i++)
      heap_init (&heaps[i], store + (gsize) i * kc, kc);
    gemm_run (s, queries + (gsize) q0 * s->dim, qb, heaps, NULL);
    for (guint i = 0; i < qb; i++) {
      guint n = heap_sort (&heaps[i]);
      CbirHit *out = hits + (gsize) (q0 + i) * k;
      for (guint j = 0; j < n; j++) {
        out[j].index = heaps[i].c[j].idx;
        out[j].label = s->labels[heaps[i].c[j].idx];
        out[j].distance = heaps[i].c[j].d;
      }
      if (n_hits)
        n_hits[q0 + i] = n;
    }
  }
  g_free (heaps);
  g_free (store);
}

/* ---- full distance lists (for evaluation) ---- */

static void
distances_one (CbirSearcher *s, const float *query, float *out)
{
  guint8 *bits = g_malloc (MAX (s->code_bytes, 1));
  Query qq;
  query_prepare (s, query, bits, &qq);
  if (s->metric == CBIR_METRIC_HAMMING || s->shortlist > 0) {
    guint16 d[BLOCK];
    for (guint i = 0; i < s->n; i += BLOCK) {
      guint rows = MIN (BLOCK, s->n - i);
      s->hamming (qq.bits, s->codes + (gsize) i * s->code_bytes,
          s->code_bytes, rows, d);
      for (guint j = 0; j < rows; j++)
        out[i + j] = d[j];
    }
  } else {
    for (guint i = 0; i < s->n; i += BLOCK) {
      guint rows = MIN (BLOCK, s->n - i);
      s->dots (qq.q, s->feat + (gsize) i * s->dim, s->dim, rows, out + i);
      finish_float (s, &qq, i, rows, out + i);
    }
  }
  if (s->shortlist > 0 && s->n > 0) {
    /* shortlisted items: exact distance; the others after all of them,
     * in Hamming order */
    guint m = MIN (s->shortlist, s->n);
    Cand *store = g_new (Cand, m);
    Heap h;
    heap_init (&h, store, m);
    for (guint i = 0; i < s->n; i++) {
      Cand c = { out[i], i };
      heap_push (&h, c);
    }
    float maxd = 0.f;
    float *exact = g_new (float, h.n);
    for (guint i = 0; i < h.n; i++) {
      exact[i] = item_distance (s, &qq, h.c[i].idx);
      maxd = MAX (maxd, exact[i]);
    }
    for (guint i = 0; i < s->n; i++)
      out[i] += maxd + 1.f;
    for (guint i = 0; i < h.n; i++)
      out[h.c[i].idx] = exact[i];
    g_free (exact);
    g_free (store);
  }
  g_free (bits);
}

typedef struct
{
  CbirSearcher *s;
  const float *queries;
  guint dq;
  float *out;
} DistCtx;

static void
dist_task (gpointer data, guint t)
{
  DistCtx *c = data;
  distances_one (c->s, c->queries + (gsize) t * c->dq,
      c->out + (gsize) t * c->s->n);
}

static void
distances_batch_plain (CbirSearcher *s, const float *queries, guint nq,
    float *out)
{
  if (nq == 0 || s->n == 0)
    return;
  if (s->metric == CBIR_METRIC_HAMMING || s->shortlist > 0) {
    DistCtx c = { s, queries,
      query_dim (s), out
    };
    pool_run (s->pool, dist_task, &c, nq);
    return;
  }
  gemm_run (s, queries, nq, NULL, out);
}

/* ---- query expansion and database-side augmentation ----
 *
 * Both replace a vector by a weighted combination of itself and its k
 * nearest gallery items (research/lib.py: alpha_qe, dba):
 *   cosine: v' = l2n (v/|v| + sum_i w_i g_i/|g_i|)
 *   l2:     v' = (v + sum_i w_i g_i) / (1 + sum_i w_i)
 * with w_i = max (cos (v, g_i), 0)^alpha. Weights and sums are computed
 * in double from the vectors themselves (not from the search's float
 * distances), so single, batched and distance-list paths expand a query
 * to the same vector. */

#define QE_CHUNK_HITS (1 << 22)         /* hits buffered per chunk */

static inline double
vec_dot (const float *a, const float *b, guint dim)
{
  double acc = 0;
  for (guint j = 0; j < dim; j++)
    acc += (double) a[j] * b[j];
  return acc;
}

/* out (dim floats) = the expansion of v with the items idx[0..m). */
static void
expand_from_hits (const float *feat, guint dim, CbirMetric metric,
    float alpha, const float *v, const guint *idx, guint m, double *acc,
    float *out)
{
  double vv = vec_dot (v, v, dim);
  double vinv = vv > 0 ? 1.0 / sqrt (vv) : 0.0;
  gboolean cosine = metric != CBIR_METRIC_L2;
  double wsum = 1.0;
  for (guint j = 0; j < dim; j++)
    acc[j] = cosine ? v[j] * vinv : v[j];
  for (guint i = 0; i < m; i++) {
    const float *g = feat + (gsize) idx[i] * dim;
    double gg = vec_dot (g, g, dim);
    double ginv = gg > 0 ? 1.0 / sqrt (gg) : 0.0;
    double c = vec_dot (v, g, dim) * vinv * ginv;
    double w = pow (c > 0 ? c : 0.0, alpha);
    if (cosine) {
      double f = w * ginv;
      for (guint j = 0; j < dim; j++)
        acc[j] += f * g[j];
    } else {
      for (guint j = 0; j < dim; j++)
        acc[j] += w * g[j];
      wsum += w;
    }
  }
  double scale;
  if (cosine) {
    double nn = 0;
    for (guint j = 0; j < dim; j++)
      nn += acc[j] * acc[j];
    scale = nn > 0 ? 1.0 / sqrt (nn) : 0.0;
  } else {
    scale = 1.0 / wsum;
  }
  for (guint j = 0; j < dim; j++)
    out[j] = (float) (acc[j] * scale);
}

gboolean
cbir_searcher_set_query_expansion (CbirSearcher *s, guint k, float alpha,
    GError **error)
{
  g_return_val_if_fail (s != NULL, FALSE);
  if (k > 0 && s->metric == CBIR_METRIC_HAMMING) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "query expansion needs float features (metric l2 or cosine), not "
        "hamming");
    return FALSE;
  }
  if (!(alpha >= 0.f && alpha <= 1000.f)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "query expansion alpha must be in 0..1000, not %g", alpha);
    return FALSE;
  }
  if (k > 0 && s->graph) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "query expansion and diffusion are two re-rankings: choose one");
    return FALSE;
  }
  s->qe_k = k;
  s->qe_alpha = alpha;
  return TRUE;
}

guint
cbir_searcher_get_query_expansion (const CbirSearcher *s, float *alpha)
{
  if (alpha)
    *alpha = s->qe_alpha;
  return s->qe_k;
}

/* Expands nq queries (plain top-qe_k searches, batched) into out. */
static void
expand_batch (CbirSearcher *s, const float *queries, guint nq, float *out)
{
  guint kk = MIN (s->qe_k, s->n);
  gsize dim = s->dim;
  if (kk == 0) {
    memcpy (out, queries, sizeof (float) * dim * nq);
    return;
  }
  guint chunk = MAX (1, MIN (nq, QE_CHUNK_HITS / kk));
  CbirHit *hits = g_new (CbirHit, (gsize) chunk * kk);
  guint *nh = g_new (guint, chunk);
  guint *idx = g_new (guint, kk);
  double *acc = g_new (double, dim);
  for (guint q0 = 0; q0 < nq; q0 += chunk) {
    guint c = MIN (chunk, nq - q0);
    search_batch_plain (s, queries + q0 * dim, c, kk, hits, nh);
    for (guint i = 0; i < c; i++) {
      const CbirHit *h = hits + (gsize) i * kk;
      for (guint j = 0; j < nh[i]; j++)
        idx[j] = h[j].index;
      expand_from_hits (s->feat, s->dim, s->metric, s->qe_alpha,
          queries + (q0 + i) * dim, idx, nh[i], acc, out + (q0 + i) * dim);
    }
  }
  g_free (acc);
  g_free (idx);
  g_free (nh);
  g_free (hits);
}

static void
expand_one (CbirSearcher *s, const float *query, float *out)
{
  guint kk = MIN (s->qe_k, s->n);
  if (kk == 0) {
    memcpy (out, query, sizeof (float) * s->dim);
    return;
  }
  CbirHit hstack[64];
  guint istack[64];
  CbirHit *hits = kk <= 64 ? hstack : g_new (CbirHit, kk);
  guint *idx = kk <= 64 ? istack : g_new (guint, kk);
  double *acc = g_new (double, s->dim);
  guint n = search_plain (s, query, kk, hits);
  for (guint j = 0; j < n; j++)
    idx[j] = hits[j].index;
  expand_from_hits (s->feat, s->dim, s->metric, s->qe_alpha, query, idx, n,
      acc, out);
  g_free (acc);
  if (hits != hstack)
    g_free (hits);
  if (idx != istack)
    g_free (idx);
}

void
cbir_searcher_expand_query (CbirSearcher *s, const float *query, float *out)
{
  g_return_if_fail (s != NULL && query != NULL && out != NULL);
  g_return_if_fail (s->metric != CBIR_METRIC_HAMMING);
  expand_one (s, query, out);
}

/* ---- diffusion over the gallery's graph (diffusion.h) ----
 *
 * The query's query_k nearest items (the plain search, shortlist
 * included) seed y with max (cos, 0)^power; f solves (I - alpha S) f = y.
 * Hits: the plain search's first keep_first hits, then the items of
 * largest f (f > 0), then, if fewer than k were reached, the plain nearest
 * of the others; each hit keeps its plain distance to the query. The full
 * ranking (distances, distances_batch) is the same order: the kept hits
 * below -(max f + 1), -f for reached items (all negative), and the plain
 * distance (>= 0) for the others. */

gboolean
cbir_searcher_set_diffusion (CbirSearcher *s, const CbirGraph *graph,
    const CbirDiffusionParams *params, GError **error)
{
  g_return_val_if_fail (s != NULL, FALSE);
  if (!graph) {
    s->graph = NULL;
    return TRUE;
  }
  if (s->metric == CBIR_METRIC_HAMMING) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "diffusion needs float features (metric l2 or cosine), not "
        "hamming");
    return FALSE;
  }
  if (params && params->low_rank && cbir_graph_get_rank (graph) == 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "low-rank diffusion needs the graph's spectrum (a gallery built "
        "with a graph rank)");
    return FALSE;
  }
  /* (without it the solver would start from the previous query's scores) */
  if (params && params->warm_start && !params->low_rank) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "a warm start of diffusion starts from the low-rank form: it needs "
        "low_rank");
    return FALSE;
  }
  if (cbir_graph_size (graph) != s->n) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "the graph has %u items, the gallery %u", cbir_graph_size (graph),
        s->n);
    return FALSE;
  }
  if (s->qe_k > 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "query expansion and diffusion are two re-rankings: choose one");
    return FALSE;
  }
  CbirDiffusionParams p;
  if (params)
    p = *params;
  else
    cbir_diffusion_params_init (&p);
  if (!cbir_diffusion_params_check (&p, error))
    return FALSE;
  s->graph = graph;
  s->dp = p;
  return TRUE;
}

const CbirGraph *
cbir_searcher_get_diffusion (const CbirSearcher *s,
    CbirDiffusionParams *params)
{
  if (params && s->graph)
    *params = s->dp;
  return s->graph;
}

/* Scratch of one diffusion: f and the solver's 4 n, the seeds. */
typedef struct
{
  float *f;
  float *solver;
  CbirHit *seeds;
  guint *seed_idx;
  float *seed_w;
  guint8 *bits;
} DiffScratch;

static void
diff_scratch_init (const CbirSearcher *s, DiffScratch *d)
{
  guint m = MIN (s->dp.query_k, s->n);
  d->f = g_new (float, MAX ((gsize) s->n * 5, 1));
  d->solver = d->f + s->n;
  d->seeds = g_new (CbirHit, MAX (m, 1));
  d->seed_idx = g_new (guint, MAX (m, 1));
  d->seed_w = g_new (float, MAX (m, 1));
  d->bits = g_malloc (MAX (s->code_bytes, 1));
}

static void
diff_scratch_clear (DiffScratch *d)
{
  g_free (d->f);
  g_free (d->seeds);
  g_free (d->seed_idx);
  g_free (d->seed_w);
  g_free (d->bits);
}

static void
diffusion_runner (gpointer pool, CbirTaskFunc func, gpointer ctx,
    guint n_tasks)
{
  pool_run (pool, func, ctx, n_tasks);
}

/* Diffuses one query into d->f; qq is prepared with d->bits; d->seeds
 * get the plain nearest query_k items (returns how many). */
static guint
diffuse_one (CbirSearcher *s, const float *query, Query *qq,
    gboolean may_split, DiffScratch *d)
{
  query_prepare (s, query, d->bits, qq);
  guint m = search_one (s, qq, MIN (s->dp.query_k, s->n), d->seeds,
      may_split);
  double qn = vec_dot (query, query, s->dim);
  double qinv = qn > 0 ? 1.0 / sqrt (qn) : 0.0;
  float power = cbir_graph_get_power (s->graph);
  guint ms = 0;
  for (guint i = 0; i < m; i++) {
    const float *g = s->feat + (gsize) d->seeds[i].index * s->dim;
    double gg = vec_dot (g, g, s->dim);
    double c = vec_dot (query, g, s->dim) * qinv
        * (gg > 0 ? 1.0 / sqrt (gg) : 0.0);
    float w = c > 0 ? (float) pow (MIN (c, 1.0), power) : 0.f;
    if (w > 0.f) {
      d->seed_idx[ms] = d->seeds[i].index;
      d->seed_w[ms++] = w;
    }
  }
  if (s->dp.low_rank) {
    cbir_diffusion_low_rank (s->graph, d->seed_idx, d->seed_w, ms,
        s->dp.alpha, d->f);
    if (!s->dp.warm_start)
      return m;
  }
  /* a single query spreads the solver's row blocks over the pool when
   * there are at least 4 a thread: each of the 40 passes ends with the
   * threads waiting on each other, which costs more than it saves on a
   * few blocks (MNIST-10k, 5 blocks: 2 threads slower than 1, the whole
   * pipeline 255 against 320 frames/s; 60,000 items, 30 blocks: faster) */
  gboolean split = may_split && s->n_threads > 1 &&
      cbir_graph_size (s->graph) >= 4 * CBIR_DIFFUSION_BLOCK_ROWS * s->n_threads;
  cbir_diffusion_solve_full (s->graph, d->seed_idx, d->seed_w, ms, &s->dp,
      d->f, d->solver, split ? diffusion_runner : NULL, s->pool);
  return m;
}

static guint
diffuse_search (CbirSearcher *s, const float *query, guint k, CbirHit *hits,
    gboolean may_split, DiffScratch *d)
{
  if (k == 0 || s->n == 0)
    return 0;
  Query qq;
  guint m = diffuse_one (s, query, &qq, may_split, d);
  guint kc = MIN (k, s->n);
  /* the plain search's first keep_first hits stay first */
  guint kept = MIN (MIN (s->dp.keep_first, m), kc), n = kept;
  for (guint i = 0; i < kept; i++) {
    hits[i] = d->seeds[i];
    d->f[hits[i].index] = 0.f;
  }
  guint kd = kc - kept;
  Cand stack_store[128];
  Cand *store = kd <= 128 ? stack_store : g_new (Cand, MAX (kd, 1));
  Heap h;
  heap_init (&h, store, kd);
  for (guint i = 0; i < s->n && kd > 0; i++) {
    if (d->f[i] > 0.f) {
      Cand c = { -d->f[i], i };
      if (h.n < h.cap || cand_worse (h.c[0], c))
        heap_push (&h, c);
    }
  }
  guint nd = heap_sort (&h);
  for (guint i = 0; i < nd; i++, n++) {
    guint idx = h.c[i].idx;
    hits[n].index = idx;
    hits[n].label = s->labels[idx];
    hits[n].distance = item_distance (s, &qq, idx);
  }
  if (n < kc) {
    /* fewer than k reached: the plain nearest of the others */
    guint want = MIN (s->n, kc + n);
    CbirHit *plain = g_new (CbirHit, want);
    guint np = search_one (s, &qq, want, plain, may_split);
    for (guint i = 0; i < np && n < kc; i++) {
      gboolean taken = d->f[plain[i].index] > 0.f;
      for (guint j = 0; j < kept && !taken; j++)
        taken = plain[i].index == hits[j].index;
      if (!taken)
        hits[n++] = plain[i];
    }
    g_free (plain);
  }
  if (store != stack_store)
    g_free (store);
  return n;
}

static void
diffuse_distances (CbirSearcher *s, const float *query, float *out,
    DiffScratch *d)
{
  Query qq;
  guint m = diffuse_one (s, query, &qq, FALSE, d);
  distances_one (s, query, out);
  float fmax = 0.f;
  for (guint i = 0; i < s->n; i++) {
    out[i] = d->f[i] > 0.f ? -d->f[i] : MAX (out[i], 0.f);
    fmax = MAX (fmax, d->f[i]);
  }
  /* kept first hits: before every diffused item, in plain order */
  guint kept = MIN (s->dp.keep_first, m);
  for (guint i = 0; i < kept; i++)
    out[d->seeds[i].index] = -(fmax + 1.f) * (float) (kept - i);
}

static void
diff_batch_task (gpointer data, guint t)
{
  BatchCtx *c = data;
  CbirSearcher *s = c->s;
  DiffScratch d;
  diff_scratch_init (s, &d);
  guint q0 = t * c->per_task, q1 = MIN (c->nq, q0 + c->per_task);
  for (guint q = q0; q < q1; q++) {
    const float *query = c->queries + (gsize) q * s->dim;
    if (c->out) {
      diffuse_distances (s, query, c->out + (gsize) q * s->n, &d);
    } else {
      guint n = diffuse_search (s, query, c->k, c->hits + (gsize) q * c->k,
          FALSE, &d);
      if (c->n_hits)
        c->n_hits[q] = n;
    }
  }
  diff_scratch_clear (&d);
}

static void
diffuse_batch (CbirSearcher *s, const float *queries, guint nq, guint k,
    CbirHit *hits, guint *n_hits, float *out)
{
  BatchCtx c = { s, queries, nq, k, hits, n_hits, 1, out };
  c.per_task = MAX (1, nq / (s->n_threads * 8));
  pool_run (s->pool, diff_batch_task, &c, (nq + c.per_task - 1) / c.per_task);
}

/* A query holding NaN or an infinite value matches nothing. */
static inline gboolean
query_ok (const CbirSearcher *s, const float *query)
{
  guint n = query_dim (s);
  return cbir_first_non_finite (query, n) == n;
}

/* After a batch: the rows of non-finite queries hold no hits (n_hits 0,
 * hits {G_MAXUINT, -1, +inf}) and +inf distances. */
static void
clear_bad_queries (const CbirSearcher *s, const float *queries, guint nq,
    guint k, CbirHit *hits, guint *n_hits, float *dist)
{
  for (guint q = 0; q < nq; q++) {
    if (query_ok (s, queries + (gsize) q * query_dim (s)))
      continue;
    if (n_hits)
      n_hits[q] = 0;
    for (guint j = 0; hits && j < k; j++)
      hits[(gsize) q * k + j] = (CbirHit) { G_MAXUINT, -1, INFINITY };
    for (guint i = 0; dist && i < s->n; i++)
      dist[(gsize) q * s->n + i] = INFINITY;
  }
}

float
cbir_searcher_nearest_distance (CbirSearcher *s, const float *query)
{
  g_return_val_if_fail (s != NULL && query != NULL, INFINITY);
  CbirHit hit;
  if (cbir_searcher_search_plain (s, query, 1, &hit) == 0)
    return INFINITY;
  return hit.distance;
}

guint
cbir_searcher_search_plain (CbirSearcher *s, const float *query, guint k,
    CbirHit *hits)
{
  g_return_val_if_fail (s != NULL && query != NULL, 0);
  if (!query_ok (s, query))
    return 0;
  return search_plain (s, query, k, hits);
}

guint
cbir_searcher_search (CbirSearcher *s, const float *query, guint k,
    CbirHit *hits)
{
  g_return_val_if_fail (s != NULL && query != NULL, 0);
  if (!query_ok (s, query))
    return 0;
  if (s->graph && k > 0 && s->n > 0) {
    DiffScratch d;
    diff_scratch_init (s, &d);
    guint n = diffuse_search (s, query, k, hits, TRUE, &d);
    diff_scratch_clear (&d);
    return n;
  }
  if (s->qe_k == 0 || k == 0 || s->n == 0)
    return search_plain (s, query, k, hits);
  float stack[256];
  float *eq = s->dim <= 256 ? stack : g_new (float, s->dim);
  expand_one (s, query, eq);
  guint n = search_plain (s, eq, k, hits);
  if (eq != stack)
    g_free (eq);
  return n;
}

/* Queries per expansion chunk of the batched entry points. */
static guint
qe_batch_chunk (const CbirSearcher *s, guint nq)
{
  return MAX (1, MIN (nq, (1u << 24) / MAX (s->dim, 1)));
}

static void
search_batch_any (CbirSearcher *s, const float *queries, guint nq, guint k,
    CbirHit *hits, guint *n_hits)
{
  if (s->graph && k > 0 && s->n > 0 && nq > 0) {
    diffuse_batch (s, queries, nq, k, hits, n_hits, NULL);
    return;
  }
  if (s->qe_k == 0 || k == 0 || s->n == 0 || nq == 0) {
    search_batch_plain (s, queries, nq, k, hits, n_hits);
    return;
  }
  guint chunk = qe_batch_chunk (s, nq);
  float *eq = g_new (float, (gsize) chunk * s->dim);
  for (guint q0 = 0; q0 < nq; q0 += chunk) {
    guint c = MIN (chunk, nq - q0);
    expand_batch (s, queries + (gsize) q0 * s->dim, c, eq);
    search_batch_plain (s, eq, c, k, hits + (gsize) q0 * k,
        n_hits ? n_hits + q0 : NULL);
  }
  g_free (eq);
}

void
cbir_searcher_search_batch (CbirSearcher *s, const float *queries, guint nq,
    guint k, CbirHit *hits, guint *n_hits)
{
  g_return_if_fail (s != NULL);
  search_batch_any (s, queries, nq, k, hits, n_hits);
  clear_bad_queries (s, queries, nq, k, hits, n_hits, NULL);
}

void
cbir_searcher_distances (CbirSearcher *s, const float *query, float *out)
{
  g_return_if_fail (s != NULL && query != NULL && out != NULL);
  if (!query_ok (s, query)) {
    for (guint i = 0; i < s->n; i++)
      out[i] = INFINITY;
    return;
  }
  if (s->graph && s->n > 0) {
    DiffScratch d;
    diff_scratch_init (s, &d);
    diffuse_distances (s, query, out, &d);
    diff_scratch_clear (&d);
    return;
  }
  if (s->qe_k == 0 || s->n == 0) {
    distances_one (s, query, out);
    return;
  }
  float *eq = g_new (float, s->dim);
  expand_one (s, query, eq);
  distances_one (s, eq, out);
  g_free (eq);
}

static void
distances_batch_any (CbirSearcher *s, const float *queries, guint nq,
    float *out)
{
  if (s->graph && s->n > 0 && nq > 0) {
    diffuse_batch (s, queries, nq, 0, NULL, NULL, out);
    return;
  }
  if (s->qe_k == 0 || s->n == 0 || nq == 0) {
    distances_batch_plain (s, queries, nq, out);
    return;
  }
  guint chunk = qe_batch_chunk (s, nq);
  float *eq = g_new (float, (gsize) chunk * s->dim);
  for (guint q0 = 0; q0 < nq; q0 += chunk) {
    guint c = MIN (chunk, nq - q0);
    expand_batch (s, queries + (gsize) q0 * s->dim, c, eq);
    distances_batch_plain (s, eq, c, out + (gsize) q0 * s->n);
  }
  g_free (eq);
}

void
cbir_searcher_distances_batch (CbirSearcher *s, const float *queries,
    guint nq, float *out)
{
  g_return_if_fail (s != NULL);
  distances_batch_any (s, queries, nq, out);
  clear_bad_queries (s, queries, nq, 0, NULL, NULL, out);
}

gboolean
cbir_knn_self (const float *features, guint n, guint dim, CbirMetric metric,
    guint k, guint n_threads, guint *idx, float *dist, GError **error)
{
  g_return_val_if_fail (n == 0 || (features != NULL && idx != NULL), FALSE);
  g_return_val_if_fail (dim > 0, FALSE);
  if (metric != CBIR_METRIC_L2 && metric != CBIR_METRIC_COSINE) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "the gallery's own k-NN needs metric l2 or cosine, not %s",
        cbir_metric_to_string (metric));
    return FALSE;
  }
  guint kk = n > 0 ? MIN (k, n - 1) : 0;
  if (kk == 0)
    return TRUE;
  /* a searcher over the raw features: each item's k+1 nearest, itself
   * dropped (or the last when ties put it further) */
  CbirSearcher *s = g_new0 (CbirSearcher, 1);
  s->metric = metric;
  s->n = n;
  s->dim = dim;
  s->feat = features;
  s->owned_labels = g_new0 (gint32, n);
  s->labels = s->owned_labels;
  searcher_setup (s, TRUE, n_threads);
  guint kq = kk + 1;
  guint chunk = MAX (1, MIN (n, QE_CHUNK_HITS / kq));
  CbirHit *hits = g_new (CbirHit, (gsize) chunk * kq);
  guint *nh = g_new (guint, chunk);
  for (guint q0 = 0; q0 < n; q0 += chunk) {
    guint c = MIN (chunk, n - q0);
    search_batch_plain (s, features + (gsize) q0 * dim, c, kq, hits, nh);
    for (guint i = 0; i < c; i++) {
      guint self = q0 + i, m = 0;
      const CbirHit *h = hits + (gsize) i * kq;
      guint *row = idx + (gsize) self * kk;
      float *drow = dist ? dist + (gsize) self * kk : NULL;
      for (guint j = 0; j < nh[i] && m < kk; j++) {
        if (h[j].index == self)
          continue;
        if (drow)
          drow[m] = h[j].distance;
        row[m++] = h[j].index;
      }
      g_assert (m == kk);
    }
  }
  g_free (nh);
  g_free (hits);
  cbir_searcher_free (s);
  return TRUE;
}

gboolean
cbir_dba_compute (const float *features, guint n, guint dim,
    CbirMetric metric, guint k, float alpha, guint n_threads, float *out,
    GError **error)
{
  g_return_val_if_fail (n == 0 || (features != NULL && out != NULL), FALSE);
  g_return_val_if_fail (dim > 0, FALSE);
  if (metric != CBIR_METRIC_L2 && metric != CBIR_METRIC_COSINE) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "database-side augmentation needs metric l2 or cosine, not %s",
        cbir_metric_to_string (metric));
    return FALSE;
  }
  if (!(alpha >= 0.f && alpha <= 1000.f)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "augmentation alpha must be in 0..1000, not %g", alpha);
    return FALSE;
  }
  if (n == 0)
    return TRUE;
  guint kk = MIN (k, n - 1);
  guint *nbr = g_new (guint, MAX ((gsize) n * kk, 1));
  if (!cbir_knn_self (features, n, dim, metric, kk, n_threads, nbr, NULL,
          error)) {
    g_free (nbr);
    return FALSE;
  }
  double *acc = g_new (double, dim);
  for (guint i = 0; i < n; i++)
    expand_from_hits (features, dim, metric, alpha,
        features + (gsize) i * dim, nbr + (gsize) i * kk, kk, acc,
        out + (gsize) i * dim);
  g_free (acc);
  g_free (nbr);
  return TRUE;
}

/* ---- vote ---- */

#define VOTE_EPS 1e-6f

/* a hit's weight in a vote: 1/(eps + d) */
static inline double
vote_weight (const CbirHit *h)
{
  return 1.0 / (VOTE_EPS + MAX (h->distance, 0.f));
}

void
cbir_vote (const CbirHit *hits, guint n, gint32 *label, float *confidence)
{
  gint32 best = -1;
  double best_w = 0, total = 0;
  for (guint i = 0; i < n; i++)
    total += vote_weight (&hits[i]);
  /* labels in order of first appearance; ties go to the earlier one
   * (the nearer hit) */
  for (guint i = 0; i < n; i++) {
    gboolean seen = FALSE;
    for (guint j = 0; j < i && !seen; j++)
      seen = hits[j].label == hits[i].label;
    if (seen)
      continue;
    double w = 0;
    for (guint j = i; j < n; j++)
      if (hits[j].label == hits[i].label)
        w += vote_weight (&hits[j]);
    if (best == -1 && i == 0) {
      best = hits[i].label;
      best_w = w;
    } else if (w > best_w) {
      best = hits[i].label;
      best_w = w;
    }
  }
  if (label)
    *label = n ? best : -1;
  if (confidence) {
    float c = n && total > 0 ? (float) (best_w / total) : 0.f;
    *confidence = CLAMP (c, 0.f, 1.f);
  }
}

void
cbir_hits_label_sizes (GHashTable *counts, const CbirHit *hits, guint n,
    guint *sizes)
{
  for (guint i = 0; i < n; i++)
    sizes[i] = GPOINTER_TO_UINT (g_hash_table_lookup (counts,
            GINT_TO_POINTER (hits[i].label)));
}

typedef struct
{
  gint32 label;
  float key;
  guint pos;
  guint size;                   /* items of the label in the gallery */
} LabelKey;

/* by label, then key, then rank */
static int
cmp_label_key (const void *a, const void *b)
{
  const LabelKey *x = a, *y = b;
  if (x->label != y->label)
    return x->label < y->label ? -1 : 1;
  if (x->key != y->key)
    return x->key < y->key ? -1 : 1;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The best label of the candidates s[0..n-1] (sorted by cmp_label_key),
 * each judged by the mean of its MIN (m, size) first keys, into *label;
 * FALSE when no label has that many. */
static gboolean
local_mean_winner (const LabelKey *s, guint n, guint m, gint32 *label)
{
  double best_mean = INFINITY;
  guint best_pos = G_MAXUINT;

  for (guint a = 0, b; a < n; a = b) {
    guint first = G_MAXUINT, need = MIN (m, MAX (s[a].size, 1));
    double sum = 0;
    for (b = a; b < n && s[b].label == s[a].label; b++)
      first = MIN (first, s[b].pos);
    if (b - a < need)
      continue;
    for (guint i = a; i < a + need; i++)
      sum += s[i].key;
    double mean = sum / need;
    if (best_pos == G_MAXUINT || mean < best_mean ||
        (mean == best_mean && first < best_pos)) {
      *label = s[a].label;
      best_mean = mean;
      best_pos = first;
    }
  }
  return best_pos != G_MAXUINT;
}

void
cbir_vote_local_mean (const CbirHit *hits, const float *keys,
    const guint *sizes, guint n, guint k, gint32 *label, float *confidence)
{
  gint32 best = -1;
  double best_w = 0, total = 0;

  if (n > 0 && k > 0) {
    guint exact = n;
    for (guint i = 0; i < n; i++)
      if (hits[i].distance <= VOTE_EPS && (exact == n ||
              hits[i].distance < hits[exact].distance))
        exact = i;
    if (exact < n) {
      /* the query is a gallery item: its label, as the weighted vote's
       * 1/eps would have it */
      best = hits[exact].label;
    } else {
      g_autofree LabelKey *s = g_new (LabelKey, n);
      guint m = 0;
      for (guint i = 0; i < n; i++) {
        float key = keys ? keys[i] : hits[i].distance;
        s[i].label = hits[i].label;
        s[i].key = isnan (key) ? INFINITY : key;
        s[i].pos = i;
        s[i].size = sizes ? sizes[i] : k;
      }
      qsort (s, n, sizeof (LabelKey), cmp_label_key);
      if (!local_mean_winner (s, n, k, &best)) {
        /* none has its k: m is the most candidates any label has */
        for (guint a = 0, b; a < n; a = b) {
          for (b = a; b < n && s[b].label == s[a].label; b++);
          m = MAX (m, b - a);
        }
        for (guint i = 0; i < n; i++)
          s[i].size = G_MAXUINT;
        local_mean_winner (s, n, MIN (m, k), &best);
      }
    }
    /* confidence: the winner's weight share among the k first-ranked */
    for (guint i = 0; i < MIN (n, k); i++) {
      total += vote_weight (&hits[i]);
      if (hits[i].label == best)
        best_w += vote_weight (&hits[i]);
    }
  }
  if (label)
    *label = best;
  if (confidence) {
    float c = total > 0 ? (float) (best_w / total) : 0.f;
    *confidence = CLAMP (c, 0.f, 1.f);
  }
}

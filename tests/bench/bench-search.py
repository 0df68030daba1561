#!/usr/bin/python3
"""k-NN search speed of FAISS (IndexFlatL2, IndexBinaryFlat) and a numpy
brute force on the sizes bench-search.c uses: a 60,000-item gallery, float
codes of 64, 128 and 1568 dims and bit codes of 64 and 392 bits, k = 10,
single queries and a batch; and a 1,000,000-item gallery (float 64: build
time, memory, search).

Run with the fast BLAS, as the seeds note says:
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread \
    /usr/bin/python3 tests/bench/bench-search.py [--n 60000] [--queries 1000]
Needs Debian python3-numpy and python3-faiss. Run bench-search (C) in the
same session to compare.
"""
import argparse
import os
import resource
import time

import numpy as np

try:
    import faiss
except ImportError:  # pragma: no cover
    faiss = None

K = 10


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def timed_single(fn, queries, seconds):
    fn(queries[:1])
    done, t0 = 0, time.perf_counter()
    while True:
        fn(queries[done % len(queries):done % len(queries) + 1])
        done += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and done >= 5:
            return done / dt


def timed_batch(fn, queries):
    t0 = time.perf_counter()
    fn(queries)
    return len(queries) / (time.perf_counter() - t0)


def numpy_l2(g, gn):
    def search(q):
        d = gn[None, :] - 2.0 * (q @ g.T) + (q * q).sum(1)[:, None]
        idx = np.argpartition(d, K, axis=1)[:, :K]
        part = np.take_along_axis(d, idx, 1)
        order = np.argsort(part, axis=1, kind="stable")
        return np.take_along_axis(idx, order, 1)
    return search


POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def numpy_hamming(codes):
    def search(q):
        out = []
        for row in q:
            d = POP8[np.bitwise_xor(codes, row)].sum(1, dtype=np.uint16)
            idx = np.argpartition(d, K)[:K]
            out.append(idx[np.argsort(d[idx], kind="stable")])
        return out
    return search


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--big", type=int, default=1000000)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    n, nq = args.n, args.queries
    print(f"bench-search.py: gallery {n} items, k = {K}, batch {nq} queries; "
          f"numpy {np.__version__}, faiss "
          f"{faiss.__version__ if faiss else 'missing'}, "
          f"omp threads {faiss.omp_get_max_threads() if faiss else '-'}, "
          f"LD_LIBRARY_PATH={os.environ.get('LD_LIBRARY_PATH', '')}")
    print(f"{'codes':<18} {'impl':<16} {'single q/s':>12} {'batch q/s':>12}")
    for dim in (64, 128, 1568):
        g = rng.random((n, dim), dtype=np.float32)
        q = rng.random((nq if dim < 512 else nq // 2, dim), dtype=np.float32)
        rows = []
        if faiss:
            index = faiss.IndexFlatL2(dim)
            index.add(g)
            fn = lambda x: index.search(x, K)  # noqa: E731
            rows.append(("faiss FlatL2", timed_single(fn, q, args.seconds),
                         timed_batch(fn, q)))
        gn = (g * g).sum(1)
        fn = numpy_l2(g, gn)
        bq = q[:200]
        rows.append(("numpy", timed_single(fn, q, args.seconds),
                     timed_batch(fn, bq)))
        for name, s, b in rows:
            print(f"{'float %d l2' % dim:<18} {name:<16} {s:12.0f} {b:12.0f}")
    for bits in (64, 392):
        nb = bits // 8
        codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
        q = rng.integers(0, 256, (nq * 4, nb), dtype=np.uint8)
        rows = []
        if faiss:
            index = faiss.IndexBinaryFlat(bits)
            index.add(codes)
            fn = lambda x: index.search(x, K)  # noqa: E731
            rows.append(("faiss BinaryFlat", timed_single(fn, q, args.seconds),
                         timed_batch(fn, q)))
        fn = numpy_hamming(codes)
        rows.append(("numpy", timed_single(fn, q, args.seconds),
                     timed_batch(fn, q[:200])))
        for name, s, b in rows:
            print(f"{'bits %d hamming' % bits:<18} {name:<16} {s:12.0f} "
                  f"{b:12.0f}")
    if args.big > 0 and faiss:
        dim = 64
        r0 = rss_mb()
        g = rng.random((args.big, dim), dtype=np.float32)
        t0 = time.perf_counter()
        index = faiss.IndexFlatL2(dim)
        index.add(g)
        t_build = time.perf_counter() - t0
        del g
        q = rng.random((max(nq // 4, 10), dim), dtype=np.float32)
        fn = lambda x: index.search(x, K)  # noqa: E731
        s = timed_single(fn, q, args.seconds)
        b = timed_batch(fn, q)
        print(f"\n{args.big}-item float 64 l2, faiss IndexFlatL2 (in memory): "
              f"add {t_build * 1e3:.0f} ms, RSS +{rss_mb() - r0:.0f} MB, "
              f"single {s:.1f} q/s, batch {b:.1f} q/s")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"peak RSS {ru.ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

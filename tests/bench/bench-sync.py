#!/usr/bin/python3
"""How fast an enrolment reaches every machine that shares a gallery.

N pipelines (separate processes, the workers of tests/gst/test-sync.py:
appsrc ! cbirencode ! cbirsearch sync-address=... ! appsink), each with its
own copy of the gallery and journal, share one mosquitto (started here on
127.0.0.1 and a free port). Pipeline 0 enrols ENROLS items one after the
other; for each, the time from the enrol call's return until every
pipeline's `enrolled` count shows it (polled every millisecond) is taken.
Prints, for each N, the median and 90th percentile of that time.

usage: bench-sync.py [--model M] [--gallery G] [--n 2,8,16] [--enrols 20]
(defaults: out/default.safetensors, out/gallery-mnist.safetensors; bash
scripts/main.sh makes them). On one machine all N pipelines and the broker
share its cores, so the figures include that contention.
"""
import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("CBIR_TEST_DATA", os.path.join(ROOT, "tests", "data"))
spec = importlib.util.spec_from_file_location(
    "test_sync", os.path.join(ROOT, "tests", "gst", "test-sync.py"))
test_sync = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_sync)


def converge(workers, want, limit=30.0):
    """seconds until every worker has `want` enrolled items"""
    start = time.monotonic()
    pending = list(workers)
    while pending:
        pending = [w for w in pending if w.ask("count")["enrolled"] < want]
        if time.monotonic() - start > limit:
            raise SystemExit("bench-sync: %d pipelines never saw item %d"
                             % (len(pending), want))
        if pending:
            time.sleep(0.001)
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "out", "default.safetensors"))
    ap.add_argument("--gallery", default=os.path.join(ROOT, "out", "gallery-mnist.safetensors"))
    ap.add_argument("--n", default="2,8,16")
    ap.add_argument("--enrols", type=int, default=20)
    args = ap.parse_args()
    for f in (args.model, args.gallery):
        if not os.path.exists(f):
            raise SystemExit("bench-sync: %s not found (bash scripts/main.sh makes it)" % f)
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(mosquitto, os.X_OK):
        raise SystemExit("bench-sync: mosquitto not found (bash scripts/setup.sh)")
    os.environ.setdefault("GST_PLUGIN_PATH", os.path.join(ROOT, "build", "gst"))
    print("%-10s %12s %12s" % ("pipelines", "median ms", "p90 ms"))
    for n in (int(x) for x in args.n.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            broker, port = test_sync.start_broker(mosquitto, tmp)
            workers = []
            try:
                for i in range(n):
                    d = os.path.join(tmp, "m%d" % i)
                    os.mkdir(d)
                    g = os.path.join(d, "gallery.safetensors")
                    shutil.copy(args.gallery, g)
                    workers.append(test_sync.Worker(args.model, g, port, "bench-%d" % i))
                for w in workers:           # all running and connected
                    w.ask("push 0")
                time.sleep(1.0)
                times = []
                for e in range(1, args.enrols + 1):
                    assert workers[0].ask("enrol item%d %d" % (e, e % 10))["ok"]
                    times.append(converge(workers, e))
                times.sort()
                print("%-10d %12.1f %12.1f" % (
                    n, 1000 * statistics.median(times),
                    1000 * times[int(0.9 * (len(times) - 1))]))
                sys.stdout.flush()
            finally:
                for w in workers:
                    try:
                        w.quit()
                    except Exception:
                        w.kill()
                broker.terminate()
                broker.wait()


if __name__ == "__main__":
    main()

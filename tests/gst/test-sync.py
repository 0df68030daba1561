#!/usr/bin/python3
# Galleries of two pipelines in separate processes converge through one
# mosquitto (started here on 127.0.0.1 and a free port): an item enrolled in
# A is found by B's next frames; B is killed (SIGKILL) while A enrols and
# removes; B, started again, catches up (the broker kept what it missed)
# and so does its journal; A sees its own operations once. Env from
# tests/gst/meson.build. Run as a worker: test-sync.py --worker MODEL
# GALLERY PORT CLIENT_ID (commands on stdin, one JSON answer a line).
import gzip
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

DATA = os.environ.get("CBIR_TEST_DATA", "tests/data")
IMAGES = os.path.join(DATA, "mnist-64-images.idx3-ubyte.gz")
LABELS = os.path.join(DATA, "mnist-64-labels.idx1-ubyte.gz")


def images():
    raw = gzip.open(IMAGES).read()
    n = struct.unpack(">I", raw[4:8])[0]
    return [raw[16 + i * 784:16 + (i + 1) * 784] for i in range(n)]


def worker(model, gallery, port, client_id):
    Gst.init(None)
    pix = images()
    p = Gst.parse_launch(
        "appsrc name=src format=time caps=video/x-raw,format=GRAY8,width=28,"
        "height=28,framerate=10/1 ! cbirencode model=%s ! cbirsearch name=search "
        "gallery=%s k=3 sync-address=127.0.0.1:%s sync-client-id=%s ! "
        "appsink name=sink sync=false" % (model, gallery, port, client_id))
    src, sink, search = (p.get_by_name(n) for n in ("src", "sink", "search"))
    p.set_state(Gst.State.PLAYING)
    frame = 0
    out = sys.stdout
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "push":
            buf = Gst.Buffer.new_wrapped(pix[int(cmd[1])])
            buf.pts = frame * Gst.SECOND // 10
            buf.duration = Gst.SECOND // 10
            frame += 1
            src.emit("push-buffer", buf)
            b = sink.emit("pull-sample").get_buffer()
            st = b.get_custom_meta("GstCbirResultStructureMeta").get_structure()
            ids = st.get_value("ids")
            items = st.get_value("item-ids") if st.has_field("item-ids") else None
            ans = {"first": ids[0], "label": st.get_value("label"),
                   "item": items[0] if items else None}
        elif cmd[0] == "enrol":
            ans = {"ok": search.emit("enrol", cmd[1], int(cmd[2]), -1)}
        elif cmd[0] == "remove":
            ans = {"ok": search.emit("remove", cmd[1])}
        elif cmd[0] == "count":
            ans = {"enrolled": search.get_property("enrolled")}
        else:
            break
        out.write(json.dumps(ans) + "\n")
        out.flush()
    src.emit("end-of-stream")
    p.get_bus().timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS)
    p.set_state(Gst.State.NULL)


class Worker:
    def __init__(self, model, gallery, port, name):
        self.p = subprocess.Popen(
            [sys.executable, __file__, "--worker", model, gallery, str(port), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, "worker died on %r" % cmd
        return json.loads(line)

    def until(self, cmd, pred, what, seconds=15):
        end = time.time() + seconds
        while True:
            ans = self.ask(cmd)
            if pred(ans):
                return ans
            assert time.time() < end, "%s: last answer %s" % (what, ans)
            time.sleep(0.1)

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()

    def quit(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        assert self.p.wait(timeout=30) == 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_broker(mosquitto, tmp):
    """mosquitto on 127.0.0.1 and a free port, listening: (process, port)"""
    port = free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\n" % port)
    broker = subprocess.Popen([mosquitto, "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return broker, port


def main():
    Gst.init(None)
    mosquitto = os.environ.get("CBIR_MOSQUITTO") or shutil.which("mosquitto") \
        or "/usr/sbin/mosquitto"
    assert os.access(mosquitto, os.X_OK), "mosquitto not found (bash scripts/setup.sh)"
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.safetensors")
        subprocess.run([os.environ["CBIR_GST_FIXTURE"], "model", "keras-dae", model],
                       check=True, stdout=subprocess.DEVNULL)
        galleries = []
        for name in ("a", "b"):
            os.mkdir(os.path.join(tmp, name))
            galleries.append(os.path.join(tmp, name, "gallery.safetensors"))
        p = Gst.parse_launch(
            "cbiridxsrc images=%s labels=%s count=32 ! cbirencode model=%s ! "
            "cbirindex location=%s" % (IMAGES, LABELS, model, galleries[0]))
        p.set_state(Gst.State.PLAYING)
        m = p.get_bus().timed_pop_filtered(60 * Gst.SECOND,
                                           Gst.MessageType.EOS | Gst.MessageType.ERROR)
        p.set_state(Gst.State.NULL)
        assert m and m.type == Gst.MessageType.EOS, "gallery"
        shutil.copy(galleries[0], galleries[1])   # the same gallery, two machines

        broker, port = start_broker(mosquitto, tmp)
        try:
            a = Worker(model, galleries[0], port, "cbir-test-a")
            b = Worker(model, galleries[1], port, "cbir-test-b")
            assert a.ask("push 40")["first"] < 32       # image 40: not in the gallery
            assert b.ask("push 40")["first"] < 32
            assert a.ask("enrol forty 66")["ok"]
            ans = a.ask("push 40")
            assert ans["first"] == 32 and ans["label"] == 66, ans
            b.until("push 40", lambda x: x["first"] == 32 and x["label"] == 66,
                    "B never saw A's enrolment")
            assert b.ask("push 40")["item"] == "forty"

            # B dies; A goes on
            b.kill()
            assert a.ask("push 41")["first"] < 32
            assert a.ask("enrol fortyone 67")["ok"]
            assert a.ask("remove forty")["ok"]
            # B comes back under the same client id: it catches up
            b = Worker(model, galleries[1], port, "cbir-test-b")
            ans = b.until("push 41", lambda x: x["label"] == 67,
                          "B did not catch up after its restart")
            assert ans["item"] == "fortyone", ans
            b.until("count", lambda x: x["enrolled"] == 1, "B still has 'forty'")
            assert b.ask("push 40")["item"] != "forty"
            # A applied its own operations once
            assert a.ask("count")["enrolled"] == 1
            a.quit()
            b.quit()
            # B's journal has all of it: a pipeline without the broker
            # replays it
            b = Worker(model, galleries[1], free_port(), "cbir-test-c")
            ans = b.ask("push 41")
            assert ans["label"] == 67 and ans["item"] == "fortyone", ans
            assert b.ask("count")["enrolled"] == 1
            b.quit()
        finally:
            broker.terminate()
            broker.wait()
    print("sync: two pipelines converged, the restarted one caught up")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:6])
    else:
        sys.exit(main())

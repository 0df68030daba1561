#!/usr/bin/python3
# Python client, as an application would be: builds a gallery with
# cbirindex, runs cbiridxsrc ! cbirnoise ! cbirencode ! cbirsearch, reads
# the "cbir-result" messages from the bus and the GstCustomMeta
# "GstCbirResultStructureMeta" from the buffers (no C binding of ours),
# and checks that both say the same; then checks that cbirsearch with
# default properties, on a gallery cbirindex built with default properties,
# returns exactly the top-k that cbir-eval with no re-ranking flags ranks
# (diffusion over the gallery's k-NN graph), and that cbir-eval's own
# gallery carries the same graph. Debian python3-gst-1.0, GStreamer 1.22.
# Env from tests/gst/meson.build (CBIR_GST_FIXTURE, CBIR_TEST_DATA, and
# CBIR_TOOLS_DIR with PYTHONPATH for tests/tools' safetensors reader).
import os
import struct
import subprocess
import sys
import tempfile

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402
from tools_common import read_safetensors  # noqa: E402

Gst.init(None)
DATA = os.environ["CBIR_TEST_DATA"]
IMAGES = os.path.join(DATA, "mnist-64-images.idx3-ubyte.gz")
LABELS = os.path.join(DATA, "mnist-64-labels.idx1-ubyte.gz")
N = 16


def run(pipeline, on_element=None):
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while True:
            msg = bus.timed_pop_filtered(
                60 * Gst.SECOND,
                Gst.MessageType.EOS | Gst.MessageType.ERROR | Gst.MessageType.ELEMENT)
            assert msg is not None, "pipeline timed out"
            if msg.type == Gst.MessageType.ERROR:
                err, dbg = msg.parse_error()
                raise AssertionError("pipeline error: %s (%s)" % (err.message, dbg))
            if msg.type == Gst.MessageType.EOS:
                return
            if on_element:
                on_element(msg.get_structure())
    finally:
        pipeline.set_state(Gst.State.NULL)


def values(s, name):
    """A GstValueArray field as a Python list."""
    return list(s.get_value(name))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.safetensors")
        gallery = os.path.join(tmp, "gallery.safetensors")
        subprocess.run([os.environ["CBIR_GST_FIXTURE"], "model", "keras-dae", model],
                       check=True, stdout=subprocess.DEVNULL)

        # 1. gallery of the 64 fixture digits, progress read from the bus
        progress = []
        run(Gst.parse_launch(
            "cbiridxsrc images=%s labels=%s ! cbirencode model=%s ! "
            "cbirindex location=%s progress-interval=32" % (IMAGES, LABELS, model, gallery)),
            lambda s: progress.append((s.get_name(), s.get_value("count"), s.get_value("done"))))
        assert progress == [("cbir-index-progress", 32, False),
                            ("cbir-index-progress", 64, False),
                            ("cbir-index-progress", 64, True)], progress

        # 2. search noisy digits; results from the bus and from the buffers
        p = Gst.parse_launch(
            "cbiridxsrc images=%s labels=%s count=%d ! cbirnoise level=0.2 seed=3 ! "
            "cbirencode model=%s ! cbirsearch gallery=%s k=4 ! "
            "videoconvert ! video/x-raw,format=RGB ! fakesink name=sink"
            % (IMAGES, LABELS, N, model, gallery))
        from_bus, from_meta = [], []

        def probe(pad, info):
            buf = info.get_buffer()
            meta = buf.get_custom_meta("GstCbirResultStructureMeta")
            assert meta is not None, "buffer without result meta"
            s = meta.get_structure()
            from_meta.append((s.get_value("frame"), s.get_value("label"),
                              values(s, "ids"), values(s, "distances")))
            return Gst.PadProbeReturn.OK

        p.get_by_name("sink").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)

        def on_result(s):
            if s.get_name() != "cbir-result":
                return
            ids, labels, dists = values(s, "ids"), values(s, "labels"), values(s, "distances")
            assert len(ids) == len(labels) == len(dists) == 4, s.to_string()
            # the gallery has cbirindex's default k-NN graph: hits come in
            # diffusion order, the first being the plain nearest item, and
            # each keeps its plain distance to the query
            assert s.get_value("rerank") == "diffusion", s.to_string()
            assert dists[0] == min(dists), dists
            assert 0.0 <= s.get_value("confidence") <= 1.0
            assert s.get_value("running-time") == s.get_value("timestamp")
            assert labels[0] in range(10)
            from_bus.append((s.get_value("frame"), s.get_value("label"), ids, dists))

        run(p, on_result)
        assert len(from_bus) == N, len(from_bus)
        assert [r[0] for r in from_bus] == list(range(N)), from_bus
        # the meta survived videoconvert and says what the bus said
        assert from_meta == from_bus, (from_meta, from_bus)
        print("ok: %d results from the bus and the buffer metas agree" % N)

        # 3. cbirsearch (default properties) = cbir-eval (no re-ranking
        # flags): the same top-k for every query of the fixture
        K = 10
        hits = []
        run(Gst.parse_launch(
            "cbiridxsrc images=%s labels=%s ! cbirencode model=%s ! "
            "cbirsearch gallery=%s k=%d ! fakesink" % (IMAGES, LABELS, model, gallery, K)),
            lambda s: hits.append(values(s, "ids"))
            if s.get_name() == "cbir-result" else None)
        assert len(hits) == 64, len(hits)
        dump = os.path.join(tmp, "dump.safetensors")
        own = os.path.join(tmp, "eval-gallery.safetensors")
        ev = subprocess.run(
            [os.environ["CBIR_EVAL"], "--model", model, "--gallery-file", gallery,
             "--queries", IMAGES, "--query-labels", LABELS, "--quiet",
             "--single-seconds", "0.01", "--dump", dump],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        assert ev.returncode == 0, ev.stderr
        dist = read_tensor(dump, "distances")
        n = len(dist) // 64
        for q in range(64):
            row = dist[q * n:(q + 1) * n]
            want = sorted(range(n), key=lambda i: (row[i], i))[:K]
            assert hits[q] == want, "query %d: cbirsearch %s, cbir-eval %s" % (q, hits[q], want)
        ev = subprocess.run(
            [os.environ["CBIR_EVAL"], "--model", model, "--gallery", IMAGES,
             "--gallery-labels", LABELS, "--queries", IMAGES, "--query-labels", LABELS,
             "--quiet", "--single-seconds", "0.01", "--save-gallery", own],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        assert ev.returncode == 0, ev.stderr
        for name in ("graph_offsets", "graph_neighbours", "graph_weights"):
            assert read_tensor(own, name) == read_tensor(gallery, name), name
        print("ok: cbirsearch's top-%d = cbir-eval's ranking for 64 queries; "
              "same graph" % K)


def read_tensor(path, name):
    """One tensor of a safetensors file (layout checked by tests/tools'
    reader) as a flat list (F32 or I32)."""
    dtype, _, raw = read_safetensors(path)[1][name]
    fmt = {"F32": "f", "I32": "i"}[dtype]
    return list(struct.unpack("<%d%s" % (len(raw) // 4, fmt), raw))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL:", e)
        sys.exit(1)

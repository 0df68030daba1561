#!/usr/bin/python3
# Several digits a frame, end to end: simulated camera frames with 1-3
# digits (cbir-simcam, with their truth) through
#   pngdec ! videoconvert ! GRAY8 ! cbirencode preprocess=mnist regions=digits
#   ! cbirsearch ! videoconvert ! cbiroverlay ! videoconvert ! appsink
# checks one "cbir-result" message per region (region-id, box, n-regions),
# the regions against the truth's digits (count and boxes), the per-region
# results still on the ROIs after videoconvert + cbiroverlay (equal to the
# messages), and the labels found. Env from tests/gst/meson.build; run by
# hand with MODEL, GALLERY, IMAGES, LABELS (e.g. a trained model and the
# MNIST query split), FRAMES, MIN_RIGHT (fraction of digits voted right).
import json
import os
import subprocess
import sys
import tempfile

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402

Gst.init(None)
DATA = os.environ.get("CBIR_TEST_DATA", "tests/data")
IMAGES = os.environ.get("IMAGES", os.path.join(DATA, "mnist-64-images.idx3-ubyte.gz"))
LABELS = os.environ.get("LABELS", os.path.join(DATA, "mnist-64-labels.idx1-ubyte.gz"))
FRAMES = int(os.environ.get("FRAMES", "12"))


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / float(aw * ah + bw * bh - w * h)


def run(desc, tmp):
    pipeline = Gst.parse_launch(desc)
    sink = pipeline.get_by_name("sink")
    frames = []

    def on_sample(s):
        buf = s.emit("pull-sample").get_buffer()
        regions = []
        # the overlay's output: the ROIs (copied by videoconvert, ids 0..)
        # with their "cbir-result" params
        n = buf.get_n_meta(GstVideo.VideoRegionOfInterestMeta.get_info().api)
        for i in range(64):
            roi = GstVideo.buffer_get_video_region_of_interest_meta_id(buf, i)
            if roi is None:
                continue
            p = roi.get_param("cbir-result")
            regions.append((roi.id, (roi.x, roi.y, roi.w, roi.h),
                            p.get_value("label") if p else None))
        assert len(regions) == n, (len(regions), n)
        frames.append(regions)
        return Gst.FlowReturn.OK

    sink.set_property("emit-signals", True)
    sink.connect("new-sample", on_sample)
    messages = []
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while True:
            msg = bus.timed_pop_filtered(
                120 * Gst.SECOND,
                Gst.MessageType.EOS | Gst.MessageType.ERROR | Gst.MessageType.ELEMENT)
            assert msg is not None, "pipeline timed out"
            if msg.type == Gst.MessageType.ERROR:
                err, dbg = msg.parse_error()
                raise AssertionError("pipeline error: %s (%s)" % (err.message, dbg))
            if msg.type == Gst.MessageType.EOS:
                break
            s = msg.get_structure()
            if s.get_name() == "cbir-result":
                messages.append(s.copy())
    finally:
        pipeline.set_state(Gst.State.NULL)
    return frames, messages


def main():
    with tempfile.TemporaryDirectory() as tmp:
        model = os.environ.get("MODEL")
        gallery = os.environ.get("GALLERY")
        if not model:
            model = os.path.join(tmp, "model.safetensors")
            gallery = os.path.join(tmp, "gallery.safetensors")
            subprocess.run([os.environ["CBIR_GST_FIXTURE"], "model", "default", model],
                           check=True, stdout=subprocess.DEVNULL)
            p = Gst.parse_launch(
                "cbiridxsrc images=%s labels=%s ! cbirencode model=%s ! "
                "cbirindex location=%s thumbnails=true" % (IMAGES, LABELS, model, gallery))
            p.set_state(Gst.State.PLAYING)
            m = p.get_bus().timed_pop_filtered(60 * Gst.SECOND,
                                               Gst.MessageType.EOS | Gst.MessageType.ERROR)
            p.set_state(Gst.State.NULL)
            assert m is not None and m.type == Gst.MessageType.EOS, "gallery"

        cam = os.path.join(tmp, "cam")
        subprocess.run([os.environ.get("CBIR_SIMCAM", "build/src/tools/cbir-simcam"),
                        "-i", IMAGES, "-l", LABELS, "-n", str(FRAMES), "--digits", "1-3",
                        "--seed", os.environ.get("SEED", "2"), "-o", cam],
                       check=True, stdout=subprocess.DEVNULL)
        truth = [json.loads(line) for line in open(os.path.join(cam, "truth.jsonl"))]
        png = os.environ.get("OVERLAY_PNG")
        tail = ("tee name=t t. ! queue ! appsink name=sink sync=false "
                "t. ! queue ! pngenc ! multifilesink location=%s" % png) if png else \
            "appsink name=sink sync=false"
        frames, messages = run(
            "multifilesrc location=%s/frame-%%05d.png caps=image/png,framerate=10/1 ! "
            "pngdec ! videoconvert ! video/x-raw,format=GRAY8 ! "
            "cbirencode model=%s preprocess=mnist regions=digits ! "
            "cbirsearch gallery=%s k=3 ! videoconvert ! "
            "cbiroverlay gallery=%s preprocess=mnist ! videoconvert ! "
            "video/x-raw,format=RGB ! %s" % (cam, model, gallery, gallery, tail), tmp)

    assert len(frames) == len(truth) == FRAMES, (len(frames), len(truth))
    # one message per region, in frame order, region order within a frame
    assert len(messages) == sum(len(f) for f in frames), \
        (len(messages), [len(f) for f in frames])
    it = iter(messages)
    digits = found = right = 0
    for i, (t, regions) in enumerate(zip(truth, frames)):
        for rid, box, label in regions:
            m = next(it)
            assert m.get_value("frame") == i, (m.get_value("frame"), i)
            assert m.get_value("region-id") == rid
            assert m.get_value("n-regions") == len(regions)
            assert (m.get_value("x"), m.get_value("y"), m.get_value("width"),
                    m.get_value("height")) == box, "box changed through videoconvert"
            assert label is not None, "frame %d region %d lost its result" % (i, rid)
            assert label == m.get_value("label")
        # regions against the truth's digits (both left to right)
        digits += len(t["labels"])
        for want, box in zip(t["labels"], t["boxes"]):
            best = max(regions, key=lambda r: iou(r[1], box), default=None)
            if best is not None and iou(best[1], box) >= 0.5:
                found += 1
                right += best[2] == want
    n_ok = sum(len(r) == len(t["labels"]) for r, t in zip(frames, truth))
    print("frames %d (right number of regions in %d), digits %d, found %d "
          "(box IoU >= 0.5), voted right %d" % (len(frames), n_ok, digits, found, right))
    # measured with the untrained fixture model (seed 2, 12 frames): 11/12
    # frames with the right number of regions, 19/21 digits found, 15 of
    # them voted right (the gallery holds the digits shown); a trained model
    # is held to MIN_RIGHT
    assert found >= digits * 0.8, "only %d of %d digits found" % (found, digits)
    assert n_ok >= len(frames) * 0.75, "region count wrong in %d frames" % (len(frames) - n_ok)
    min_right = float(os.environ.get("MIN_RIGHT", "0.5"))
    assert right >= found * min_right, "voted right %d of %d" % (right, found)
    return 0


if __name__ == "__main__":
    sys.exit(main())

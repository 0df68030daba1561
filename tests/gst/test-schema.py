#!/usr/bin/python3
# The result schema holds what cbirpublish writes: every JSON line of
#   1. whole frames (cbiridxsrc ! cbirencode ! cbirsearch ! cbirpublish
#      embedding=true), a gallery with label names, and
#   2. camera frames with 0-3 digits (every 4th blank) (cbir-simcam, regions=digits,
#      empty-frames=true),
# validates against schema/cbir-result-1.schema.json (Draft 2020-12), and
# every key written is one the schema documents. Env from
# tests/gst/meson.build.
import json
import os
import subprocess
import sys
import tempfile

import gi
import jsonschema

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

Gst.init(None)
ROOT = os.environ.get("CBIR_SOURCE_ROOT", ".")
DATA = os.environ.get("CBIR_TEST_DATA", "tests/data")
IMAGES = os.path.join(DATA, "mnist-64-images.idx3-ubyte.gz")
LABELS = os.path.join(DATA, "mnist-64-labels.idx1-ubyte.gz")


def run(desc):
    p = Gst.parse_launch(desc)
    p.set_state(Gst.State.PLAYING)
    m = p.get_bus().timed_pop_filtered(120 * Gst.SECOND,
                                       Gst.MessageType.EOS | Gst.MessageType.ERROR)
    p.set_state(Gst.State.NULL)
    assert m is not None, "timed out: " + desc
    if m.type == Gst.MessageType.ERROR:
        err, dbg = m.parse_error()
        raise AssertionError("%s: %s (%s)" % (desc, err.message, dbg))


def documented_keys(schema, obj, where):
    """Every key of obj is in the schema's properties (recursively)."""
    props = schema["properties"]
    for k, v in obj.items():
        assert k in props, "%s: key %r is not in the schema" % (where, k)
    for r in obj.get("regions", []):
        rprops = schema["$defs"]["region"]["properties"]
        for k in r:
            assert k in rprops, "%s: region key %r is not in the schema" % (where, k)


def main():
    schema = json.load(open(os.path.join(ROOT, "schema", "cbir-result-1.schema.json")))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.safetensors")
        gallery = os.path.join(tmp, "gallery.safetensors")
        subprocess.run([os.environ["CBIR_GST_FIXTURE"], "model", "default", model],
                       check=True, stdout=subprocess.DEVNULL)
        names = ",".join("n%d" % i for i in range(10))
        run("cbiridxsrc images=%s labels=%s ! cbirencode model=%s ! "
            "cbirindex location=%s thumbnails=true label-names=%s"
            % (IMAGES, LABELS, model, gallery, names))

        whole = os.path.join(tmp, "whole.jsonl")
        run("cbiridxsrc images=%s labels=%s count=16 ! cbirencode model=%s ! "
            "cbirsearch gallery=%s k=3 ! cbirpublish location=%s embedding=true"
            % (IMAGES, LABELS, model, gallery, whole))
        cam = os.path.join(tmp, "cam")
        subprocess.run([os.environ["CBIR_SIMCAM"], "-i", IMAGES, "-l", LABELS,
                        "-n", "8", "--digits", "1-3", "--blank-every", "4", "--seed", "3",
                        "-o", cam],
                       check=True, stdout=subprocess.DEVNULL)
        regions = os.path.join(tmp, "regions.jsonl")
        run("multifilesrc location=%s/frame-%%05d.png caps=image/png,framerate=10/1 ! "
            "pngdec ! videoconvert ! video/x-raw,format=GRAY8 ! "
            "cbirencode model=%s preprocess=mnist regions=digits ! "
            "cbirsearch gallery=%s ! cbirpublish location=%s empty-frames=true"
            % (cam, model, gallery, regions))

        n_regions = n_empty = 0
        for path, n in ((whole, 16), (regions, 8)):
            lines = open(path).read().splitlines()
            assert len(lines) == n, (path, len(lines))
            for i, line in enumerate(lines):
                obj = json.loads(line)
                where = "%s:%d" % (os.path.basename(path), i + 1)
                errors = sorted(validator.iter_errors(obj), key=str)
                assert not errors, "%s: %s" % (where, errors[0])
                documented_keys(schema, obj, where)
                n_regions += len(obj["regions"])
                n_empty += not obj["regions"]
                if path == whole:
                    r = obj["regions"][0]
                    assert len(r["embedding"]) > 0 and r["x"] is None
                    assert r["label_names"] == ["n%d" % lab for lab in r["labels"]], r
                else:
                    for r in obj["regions"]:
                        assert r["x"] is not None and r["width"] > 0
    # the camera set has frames without a digit and frames with several
    assert n_empty >= 1 and n_regions > 16 + 8, (n_empty, n_regions)
    print("schema: %d frames, %d regions valid (%d empty frames)"
          % (24, n_regions, n_empty))


if __name__ == "__main__":
    sys.exit(main())

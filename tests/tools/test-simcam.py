#!/usr/bin/python3
"""cbir-simcam end to end: a few small frames as PNG and as GRAY8, the truth
lines (frame, labels from the label file, source indices, boxes inside the
frame), the seed (same seed -> same frames, another -> other frames), and
bad arguments -> one-line error, nothing written; and
pipelines/camera-model.sh on the fixture: the images and their camera
renderings paired in the training (cbir-data cat, cbir-train --inputs)."""

import filecmp
import gzip
import json
import os
import re
import subprocess

from tools_common import (FIX_IMAGES, FIX_LABELS, TOOLS, check, check_png,
                          expect_error, finish, fixture, listing, np,
                          read_safetensors, run_ok, tmpdir, write_idx)

images, labels = fixture()
W, H = 160, 120
SMALL = ['--width', W, '--height', H]


def read_truth(path, frames):
    try:
        with open(path) as f:
            lines = [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError) as e:
        check(False, '%s: %s' % (path, e))
        return []
    check(len(lines) == frames, '%s: %d lines, expected %d' %
          (path, len(lines), frames))
    for i, t in enumerate(lines):
        check(t.get('frame') == i, 'truth line %d: frame %r' %
              (i, t.get('frame')))
        n = len(t.get('source_indices', []))
        check(len(t.get('labels', [])) == n and len(t.get('boxes', [])) == n,
              'truth line %d: %r' % (i, t))
        for box in t.get('boxes', []):
            x, y, w, h = box
            check(w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and
                  y + h <= H, 'truth line %d: box %r outside %dx%d' %
                  (i, box, W, H))
    return lines


HAVE_CAIRO = os.environ.get('CBIR_HAVE_CAIRO', '1') == '1'

with tmpdir() as d:
    # ---- PNG frames with labels (cairo builds)
    a = os.path.join(d, 'a')
    if not HAVE_CAIRO:
        print('SKIP (built without cairo): PNG frames')
        expect_error('cbir-simcam', ['--images', FIX_IMAGES, '--out-dir', a],
                     d, ['cairo'], 'PNG without cairo')
    else:
        run_ok('cbir-simcam', ['--images', FIX_IMAGES, '--labels',
                               FIX_LABELS, '--out-dir', a, '--frames', 3]
               + SMALL)
        check(listing(a) == {'frame-00000.png', 'frame-00001.png',
                             'frame-00002.png', 'truth.jsonl'},
              'PNG run wrote %s' % sorted(listing(a)))
        for i in range(3):
            size = check_png(os.path.join(a, 'frame-%05d.png' % i))
            check(size == (W, H), 'frame %d: size %r, expected %dx%d' %
                  (i, size, W, H))
        truth = read_truth(os.path.join(a, 'truth.jsonl'), 3)
        for t in truth:
            for src, lab in zip(t['source_indices'], t['labels']):
                check(0 <= src < 64 and lab == labels[src],
                      'frame %d: label %r of image %r, the label file says '
                      '%r' % (t['frame'], lab, src,
                              labels[src] if 0 <= src < 64 else None))

    # ---- GRAY8 with labels: the labels in the truth come from the file
    a8 = os.path.join(d, 'a8')
    run_ok('cbir-simcam', ['-i', FIX_IMAGES, '-l', FIX_LABELS, '-o', a8,
                           '-n', 3, '-f', 'gray8'] + SMALL)
    for t in read_truth(os.path.join(a8, 'truth.jsonl'), 3):
        for src, lab in zip(t['source_indices'], t['labels']):
            check(0 <= src < 64 and lab == labels[src],
                  'gray8 frame %d: label %r of image %r' %
                  (t['frame'], lab, src))

    # ---- GRAY8, two digits a frame, a blank frame, sequential, no labels
    b = os.path.join(d, 'b')
    run_ok('cbir-simcam', ['-i', FIX_IMAGES, '-o', b, '-n', 4, '-f', 'gray8',
                           '--digits', 2, '--sequential', '--blank-every', 4]
           + SMALL)
    check(listing(b) == {'frames.gray', 'truth.jsonl'},
          'GRAY8 run wrote %s' % sorted(listing(b)))
    check(os.path.getsize(os.path.join(b, 'frames.gray')) == 4 * W * H,
          'frames.gray: %d bytes, expected %d' %
          (os.path.getsize(os.path.join(b, 'frames.gray')), 4 * W * H))
    truth = read_truth(os.path.join(b, 'truth.jsonl'), 4)
    counts = [len(t.get('source_indices', [])) for t in truth]
    check(counts == [2, 2, 2, 0], 'digits per frame %r, expected '
          '[2, 2, 2, 0] (every 4th blank)' % counts)
    check(all(l == -1 for t in truth for l in t.get('labels', [])),
          'labels without a label file: %r' % [t.get('labels') for t in truth])
    srcs = [s for t in truth for s in t.get('source_indices', [])]
    check(srcs == list(range(len(srcs))), '--sequential: images %r' % srcs)
    if np is not None:
        with open(os.path.join(b, 'frames.gray'), 'rb') as f:
            fr = np.frombuffer(f.read(), np.uint8).reshape(4, H, W)
        check(all(fr[i].std() > 1 for i in range(4)),
              'a flat GRAY8 frame (no paper texture, noise or digit)')

    # ---- idx: each shown digit as the camera path normalises it, with its
    #      label (two digits a frame, a blank frame: 3 x 2 crops)
    e = os.path.join(d, 'e')
    run_ok('cbir-simcam', ['-i', FIX_IMAGES, '-l', FIX_LABELS, '-o', e,
                           '-n', 4, '-f', 'idx', '--digits', 2,
                           '--sequential', '--blank-every', 4] + SMALL)
    check(listing(e) == {'digits-images.idx3-ubyte',
                         'digits-labels.idx1-ubyte', 'truth.jsonl'},
          'idx run wrote %s' % sorted(listing(e)))
    with open(os.path.join(e, 'digits-labels.idx1-ubyte'), 'rb') as f:
        raw = f.read()
    truth = read_truth(os.path.join(e, 'truth.jsonl'), 4)
    want = [l for t in truth for l in t.get('labels', [])]
    check(raw[:4] == b'\x00\x00\x08\x01' and list(raw[8:]) == want,
          'idx labels %r, the shown digits are %r' % (list(raw[8:]), want))
    with open(os.path.join(e, 'digits-images.idx3-ubyte'), 'rb') as f:
        img = f.read()
    check(len(img) == 16 + 28 * 28 * len(want) and
          all(max(img[16 + k * 784:16 + (k + 1) * 784]) > 128
              for k in range(len(want))),
          'idx images: %d bytes for %d digits, or one without ink' %
          (len(img), len(want)))
    expect_error('cbir-simcam', ['-i', FIX_IMAGES, '-o',
                                 os.path.join(d, 'e2'), '-f', 'idx'], d,
                 ['--labels'], 'idx without labels')

    # ---- idx --keep-missed: digits 12 px high, most too small for the
    #      camera path; each missed one is written as its source image, so
    #      the file holds every shown digit in order, and the found ones are
    #      the crops of the run without the option
    def idx_run(name, extra):
        out = os.path.join(d, name)
        run_ok('cbir-simcam', ['-i', FIX_IMAGES, '-l', FIX_LABELS, '-o', out,
                               '-n', 6, '-f', 'idx', '--sequential',
                               '--min-height', 12, '--max-height', 12]
               + SMALL + extra)
        with open(os.path.join(out, 'digits-images.idx3-ubyte'), 'rb') as f:
            img = f.read()[16:]
        with open(os.path.join(out, 'digits-labels.idx1-ubyte'), 'rb') as f:
            lab = list(f.read()[8:])
        return [img[k * 784:(k + 1) * 784] for k in range(len(img) // 784)], lab
    found, _ = idx_run('k1', [])
    kept, kept_labels = idx_run('k2', ['--keep-missed'])
    with gzip.open(FIX_IMAGES, 'rb') as f:
        src = f.read()[16:]
    check(len(kept) == 6 and kept_labels == [labels[i] for i in range(6)],
          '--keep-missed: %d images, labels %r; expected 6, %r' %
          (len(kept), kept_labels, [labels[i] for i in range(6)]))
    check(0 < len(found) < 6, 'the 12 px run found %d of 6 digits: the test '
          'needs some found and some missed' % len(found))
    if len(kept) == 6:
        missed = [k for k in range(6) if kept[k] == src[k * 784:(k + 1) * 784]]
        check(len(missed) == 6 - len(found) and
              [kept[k] for k in range(6) if k not in missed] == found,
              '--keep-missed: source images at %r, %d found without it' %
              (missed, len(found)))
    expect_error('cbir-simcam', ['-i', FIX_IMAGES, '-l', FIX_LABELS, '-o',
                                 os.path.join(d, 'k3'), '--keep-missed',
                                 '-f', 'gray8'], d,
                 ['--keep-missed', 'idx'], '--keep-missed without idx')

    # ---- seeds
    c1, c2, c3 = (os.path.join(d, x) for x in ('c1', 'c2', 'c3'))
    for dirname, seed in ((c1, 5), (c2, 5), (c3, 6)):
        run_ok('cbir-simcam', ['-i', FIX_IMAGES, '-o', dirname, '-n', 2,
                               '-f', 'gray8', '--seed', seed] + SMALL)
    same = filecmp.cmp(os.path.join(c1, 'frames.gray'),
                       os.path.join(c2, 'frames.gray'), shallow=False)
    check(same and filecmp.cmp(os.path.join(c1, 'truth.jsonl'),
                               os.path.join(c2, 'truth.jsonl'),
                               shallow=False), 'same seed, other frames')
    check(not filecmp.cmp(os.path.join(c1, 'frames.gray'),
                          os.path.join(c3, 'frames.gray'), shallow=False),
          'seeds 5 and 6 give the same frames')

    # ---- errors
    z = os.path.join(d, 'z')
    ok = ['--images', FIX_IMAGES, '--out-dir', z]
    notdir = os.path.join(d, 'afile')
    with open(notdir, 'w') as f:
        f.write('x')
    cases = [
        (['--out-dir', z], ['--images'], 'missing --images'),
        (['--images', FIX_IMAGES], ['--out-dir'], 'missing --out-dir'),
        (['--images', os.path.join(d, 'none.idx')] + ok[2:],
         [os.path.join(d, 'none.idx')], 'missing images'),
        (ok + ['--labels', FIX_IMAGES], [FIX_IMAGES], 'images as labels'),
        (ok + ['--frames', 0], ['--frames'], 'zero frames'),
        (ok + ['--format', 'jpeg'], ['jpeg'], 'unknown format'),
        (ok + ['--digits', 'many'], ['many'], 'bad --digits'),
        (ok + ['--digits', '3-1'], ['3..1'], 'reversed --digits range'),
        (ok + ['--digits', 40], ['40'], 'too many digits'),
        (ok + ['--width', 0], ['--width'], 'zero width'),
        (ok + ['--blur', -1], ['--blur'], 'negative blur'),
        (ok + ['--noise', -2], ['--noise'], 'negative noise'),
        (ok + ['--rotation', -5], ['--rotation'], 'negative rotation'),
        (ok + ['--frames', 'x'], ['x'], 'non-numeric frames'),
        (['--images', FIX_IMAGES, '--out-dir', notdir], [notdir],
         'out-dir is a file'),
    ]
    for args, names, what in cases:
        expect_error('cbir-simcam', args, d, names, what)
    check(not os.path.exists(z), 'errors created %s' % z)


# ---- pipelines/camera-model.sh: the fixture as the gallery split (two
# camera seeds, 1 epoch): a deskewing model whose training paired 3 x 64
# images, recorded in its training info; the same run again gives the same
# model; without data, a one-line error and no model
PIPELINES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                         '..', 'pipelines')
with tmpdir() as d:
    mn = os.path.join(d, 'data', 'mnist')
    os.makedirs(mn)
    write_idx(os.path.join(mn, 'gallery-images.idx3-ubyte'), [64, 28, 28],
              images)
    write_idx(os.path.join(mn, 'gallery-labels.idx1-ubyte'), [64], labels)
    write_idx(os.path.join(mn, 'query-images.idx3-ubyte'), [64, 28, 28],
              images)
    env = dict(os.environ, CBIR_DATA=os.path.join(d, 'data'),
               CBIR_SIMCAM=os.path.join(TOOLS, 'cbir-simcam'),
               CBIR_DATA_TOOL=os.path.join(TOOLS, 'cbir-data'),
               CBIR_TRAIN=os.path.join(TOOLS, 'cbir-train'),
               SEEDS='203 204', EPOCHS='1')

    def camera_model(out, **extra):
        return subprocess.run(['sh', os.path.join(PIPELINES,
                                                  'camera-model.sh'), out],
                              env=dict(env, **extra), cwd=d,
                              stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=600)

    models = []
    for name in ('a', 'b'):
        out = os.path.join(d, name + '.safetensors')
        p = camera_model(out)
        check(p.returncode == 0, 'camera-model.sh: exit %d: %s' %
              (p.returncode, p.stderr.decode(errors='replace')[-500:]))
        models.append(out)
        check(b'on 192 images paired with' in p.stdout,
              'camera-model.sh: header %r' % p.stdout[:300])
    if all(os.path.exists(m) for m in models):
        meta, tensors = read_safetensors(models[0])
        arch = json.loads(meta.get('architecture', '{}'))
        training = json.loads(meta.get('training', '{}'))
        check(arch.get('normalisation', {}).get('deskew') is True,
              'camera-model.sh: not a deskewing model')
        check(training.get('train_images') == 192 and
              training.get('inputs_sha256', 'none') != 'none',
              'camera-model.sh: training info %r' % training)
        check(filecmp.cmp(models[0], models[1], shallow=False),
              'camera-model.sh: two runs, two models')
    # TRAIN_ON=gallery: also what camera-gallery.sh indexes besides MNIST
    # (cbir-glyphs' printed digits, letters and shapes, shrunk here), each
    # with its two renderings; the count is read from cbir-glyphs' own
    # files. cbir-glyphs is built only with cairo and fontconfig.
    if (os.environ.get('CBIR_HAVE_GLYPHS', '1') != '1'
            or not os.path.exists(os.path.join(TOOLS, 'cbir-glyphs'))):
        print('camera-model.sh TRAIN_ON=gallery not checked: no cbir-glyphs')
    else:
        genv = dict(TRAIN_ON='gallery', VARIANTS='1', LETTERS='AB',
                    LETTER_VARIANTS='1', SHAPES='1',
                    CBIR_GLYPHS=os.path.join(TOOLS, 'cbir-glyphs'))
        # the fonts as the scripts name them (pipelines/common.sh)
        with open(os.path.join(PIPELINES, 'common.sh')) as f:
            fonts = re.search(r'^GALLERY_FONTS="([^"]+)"', f.read(),
                              re.M).group(1)
        glyphs = 0
        for args in (['--variants', '1', '--seed', '7'],
                     ['--chars', 'AB', '--variants', '1', '--seed', '15'],
                     ['--chars', '', '--shapes', '1', '--seed', '16']):
            prefix = os.path.join(d, 'glyphs')
            run_ok('cbir-glyphs', ['--fonts', fonts, '--out', prefix] + args)
            glyphs += os.path.getsize(prefix + '-labels.idx1-ubyte') - 8
        check(glyphs > 16, 'cbir-glyphs drew only %d images' % glyphs)
        out = os.path.join(d, 'g.safetensors')
        p = camera_model(out, **genv)
        check(p.returncode == 0 and os.path.exists(out),
              'camera-model.sh TRAIN_ON=gallery: exit %d: %s' %
              (p.returncode, p.stderr.decode(errors='replace')[-500:]))
        if os.path.exists(out):
            meta = read_safetensors(out)[0]
            training = json.loads(meta.get('training', '{}'))
            check(training.get('train_images') == 3 * (64 + glyphs),
                  'camera-model.sh TRAIN_ON=gallery: %r images, expected '
                  '3 x (64 + %d)' % (training.get('train_images'), glyphs))
    out = os.path.join(d, 'bad.safetensors')
    p = camera_model(out, TRAIN_ON='letters')
    err = p.stderr.decode(errors='replace').strip()
    check(p.returncode == 2 and not os.path.exists(out) and
          "TRAIN_ON must be mnist or gallery, not 'letters'" in err,
          'camera-model.sh TRAIN_ON=letters: exit %d, %r' % (p.returncode, err))

    os.unlink(os.path.join(mn, 'gallery-labels.idx1-ubyte'))
    out = os.path.join(d, 'c.safetensors')
    p = camera_model(out)
    err = p.stderr.decode(errors='replace').strip()
    check(p.returncode != 0 and 'gallery-labels' in err
          and not os.path.exists(out),
          'camera-model.sh without labels: exit %d, %r' % (p.returncode, err))

finish()

#!/usr/bin/python3
"""cbir-data end to end: info on the fixture (count, size, mean pixel and
label histogram against the files themselves), info errors, import-npm on
synthetic npm-like digit files (the count check and the value checks fail
cleanly: one-line error naming the file, nothing written)."""

import gzip
import json
import os
import re
import shutil

from tools_common import (FIX_IMAGES, FIX_LABELS, check, expect_error,
                          finish, fixture, run_ok, tmpdir)

images, labels = fixture()

# ---- info on the committed fixture (raw and gzip)
with tmpdir() as d:
    raw_images = os.path.join(d, 'images.idx3-ubyte')
    raw_labels = os.path.join(d, 'labels.idx1-ubyte')
    with open(raw_images, 'wb') as f:
        f.write(gzip.open(FIX_IMAGES).read())
    with open(raw_labels, 'wb') as f:
        f.write(gzip.open(FIX_LABELS).read())

    hist = {}
    for b in labels:
        hist[b] = hist.get(b, 0) + 1
    want_hist = ' '.join('%d:%d' % (c, hist[c]) for c in sorted(hist))
    want_mean = '%.3f' % (sum(images) / len(images))

    for im, lb, kind in ((FIX_IMAGES, FIX_LABELS, 'gzip'),
                         (raw_images, raw_labels, 'raw')):
        out, _ = run_ok('cbir-data', ['info', im, lb])
        fields = dict(line.split(': ', 1) for line in out.splitlines()
                      if ': ' in line)
        check(fields.get('count') == '64', 'info %s: count %r' %
              (kind, fields.get('count')))
        check(fields.get('size') == '28x28', 'info %s: size %r' %
              (kind, fields.get('size')))
        check(fields.get('mean pixel') == want_mean,
              'info %s: mean pixel %r, expected %s' %
              (kind, fields.get('mean pixel'), want_mean))
        check(fields.get('classes') == str(len(hist)), 'info %s: classes %r' %
              (kind, fields.get('classes')))
        check(fields.get('histogram') == want_hist,
              'info %s: histogram %r, expected %r' %
              (kind, fields.get('histogram'), want_hist))
        size = os.path.getsize(im)
        check(re.search(r'\(%s, %d bytes\)' % (kind, size),
                        fields.get('images', '')) is not None,
              'info %s: images line %r' % (kind, fields.get('images')))

    # images only: no label lines
    out, _ = run_ok('cbir-data', ['info', raw_images])
    check('count: 64' in out and 'histogram' not in out,
          'info without labels: %r' % out)

    # ---- info errors
    trunc = os.path.join(d, 'trunc.idx3-ubyte')
    with open(raw_images, 'rb') as f:
        data = f.read()
    with open(trunc, 'wb') as f:
        f.write(data[:5000])
    expect_error('cbir-data', ['info', trunc], d, [trunc], 'truncated IDX')
    short_labels = os.path.join(d, 'short.idx1-ubyte')
    with open(short_labels, 'wb') as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 10]) + bytes(10))
    expect_error('cbir-data', ['info', raw_images, short_labels], d,
                 [short_labels], 'label count mismatch')
    expect_error('cbir-data', ['info', raw_labels, raw_labels], d,
                 [raw_labels], 'labels given as images')
    missing = os.path.join(d, 'missing.idx3-ubyte')
    expect_error('cbir-data', ['info', missing], d, [missing], 'missing file')
    expect_error('cbir-data', ['frobnicate'], d, ['frobnicate'],
                 'unknown command')
    expect_error('cbir-data', [], d, ['command'], 'no command')
    expect_error('cbir-data', ['info'], d, ['info'], 'info without files')

    # ---- cat: the files one after the other (raw and gzip in, gzip out),
    # byte for byte; errors name the file, write nothing
    cat = os.path.join(d, 'cat.idx3-ubyte.gz')
    out, _ = run_ok('cbir-data', ['cat', cat, raw_images, FIX_IMAGES,
                                  raw_images])
    check('128' not in out and '192 images of 28x28 from 3 files' in out,
          'cat: %r' % out)
    got = gzip.open(cat).read()
    check(got[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 192, 0, 0, 0, 28, 0, 0, 0,
                             28]), 'cat: header %r' % got[:16])
    check(got[16:] == data[16:] * 3, 'cat: the images differ from the '
          'inputs, in order')
    small = os.path.join(d, 'small.idx3-ubyte')
    with open(small, 'wb') as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4]) +
                bytes(32))
    nope = os.path.join(d, 'nope.idx3-ubyte')
    expect_error('cbir-data', ['cat', nope, raw_images, small], d,
                 [small, '4x4', '28x28'], 'cat of two image sizes')
    expect_error('cbir-data', ['cat', nope, raw_images, trunc], d, [trunc],
                 'cat of a truncated file')
    expect_error('cbir-data', ['cat', nope, raw_labels], d, [raw_labels],
                 'cat of labels')
    expect_error('cbir-data', ['cat', nope], d, ['cat'], 'cat without inputs')
    expect_error('cbir-data', ['cat', os.path.join(d, 'no', 'x.idx'),
                               raw_images], d, [os.path.join(d, 'no')],
                 'cat into a missing directory')

# ---- import-npm: synthetic npm-like digit files (10 images each, from the
# fixture), so the 10,000-image count check must refuse them
with tmpdir() as d:
    digits = os.path.join(d, 'digits')
    out_dir = os.path.join(d, 'out')
    os.mkdir(digits)
    per_digit = {c: [] for c in range(10)}
    for i, c in enumerate(labels):
        per_digit[c].append(images[i * 784:(i + 1) * 784])
    for c in range(10):
        vals = []
        for k in range(10):
            img = per_digit[c][k % len(per_digit[c])]
            vals.extend(round(v / 255.0, 6) for v in img)
        with open(os.path.join(digits, '%d.json' % c), 'w') as f:
            json.dump({'data': vals}, f)

    err = expect_error('cbir-data', ['import-npm', digits, out_dir], d,
                       [digits, '100 images', '10000'], 'count check')
    check(not os.path.exists(out_dir),
          'import-npm: output directory created despite the error')

    # a value outside [0, 1] in one file: that file is named
    bad = os.path.join(digits, '3.json')
    shutil.copy(bad, bad + '.orig')
    with open(bad) as f:
        obj = json.load(f)
    obj['data'][5] = 1.5
    with open(bad, 'w') as f:
        json.dump(obj, f)
    expect_error('cbir-data', ['import-npm', digits, out_dir], d,
                 [bad, '1.5'], 'value out of range')
    # a non-number
    obj['data'][5] = 'x'
    with open(bad, 'w') as f:
        json.dump(obj, f)
    expect_error('cbir-data', ['import-npm', digits, out_dir], d,
                 [bad, 'not a number'], 'non-number value')
    # not a multiple of 784 values
    obj['data'] = obj['data'][:-1]
    with open(bad, 'w') as f:
        json.dump(obj, f)
    expect_error('cbir-data', ['import-npm', digits, out_dir], d,
                 [bad, '784'], 'partial image')
    # broken JSON
    with open(bad, 'w') as f:
        f.write('{"data": [0.0, 0.5,')
    expect_error('cbir-data', ['import-npm', digits, out_dir], d,
                 [bad], 'broken JSON')
    # a missing digit file
    os.remove(bad)
    expect_error('cbir-data', ['import-npm', digits, out_dir], d,
                 [bad], 'missing digit file')
    # not a directory
    expect_error('cbir-data', ['import-npm', os.path.join(d, 'nope'),
                               out_dir], d, [os.path.join(d, 'nope')],
                 'missing digits directory')
    expect_error('cbir-data', ['import-npm', digits], d, ['import-npm'],
                 'missing OUT-DIR')
    check(not os.path.exists(out_dir),
          'import-npm: output directory created despite the errors')

finish()

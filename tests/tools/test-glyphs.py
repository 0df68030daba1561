#!/usr/bin/python3
"""cbir-glyphs end to end: the IDX files (headers, counts), the labels
(digits 0-9, other characters their code point, shapes 255), the images
(ink, centred, different between variants), the seed (same arguments ->
same bytes, another seed -> other bytes), blank renderings skipped, and bad
arguments (unknown font, bad numbers, nothing to render, unwritable output)
-> one-line error, nothing written. Skips (77) when the tool was not built
(no cairo or no fontconfig)."""

import filecmp
import os
import struct
import sys

from tools_common import (check, expect_error, finish, read_idx, run,
                          run_ok, tmpdir, tool)

if (os.environ.get('CBIR_HAVE_GLYPHS', '1') != '1'
        or not os.path.exists(tool('cbir-glyphs'))):
    print('SKIP: cbir-glyphs was not built (it needs cairo and fontconfig)')
    sys.exit(77)

FONT = 'DejaVu Sans'
G = 'cbir-glyphs'
SIDE = 28

rc, out, err = run(G, ['--list-fonts'])
check(rc == 0, '--list-fonts: exit %d, stderr: %s' % (rc, err.strip()))
families = out.splitlines()
check(families == sorted(set(families)),
      '--list-fonts: not sorted and unique: %r' % families[:20])
if FONT not in families:
    print('SKIP: font family %r is not installed (--list-fonts: %r)' %
          (FONT, families[:10]))
    sys.exit(77)


def read_set(prefix, n):
    """(images as a list of 784-byte strings, labels as a list of ints),
    checking the raw headers and the counts."""
    ipath = prefix + '-images.idx3-ubyte'
    lpath = prefix + '-labels.idx1-ubyte'
    with open(ipath, 'rb') as f:
        ihead = f.read(16)
    with open(lpath, 'rb') as f:
        lhead = f.read(8)
    check(ihead[:4] == b'\x00\x00\x08\x03' and
          struct.unpack('>III', ihead[4:]) == (n, SIDE, SIDE),
          '%s: header %r, expected %d x 28 x 28 u8' % (ipath, ihead, n))
    check(lhead[:4] == b'\x00\x00\x08\x01' and
          struct.unpack('>I', lhead[4:]) == (n,),
          '%s: header %r, expected %d u8' % (lpath, lhead, n))
    idims, ipay = read_idx(ipath)
    ldims, lpay = read_idx(lpath)
    imgs = [ipay[i * SIDE * SIDE:(i + 1) * SIDE * SIDE]
            for i in range(idims[0])]
    return imgs, list(lpay)


def check_image(img, what):
    """Ink (white on black, anti-aliased) centred as MNIST is."""
    ink = sum(img)
    strong = sum(1 for v in img if v > 128)
    check(strong >= 15 and max(img) == 255 and min(img) == 0,
          '%s: %d strong ink pixels, range %d..%d' %
          (what, strong, min(img), max(img)))
    if ink:
        cx = sum(v * (i % SIDE) for i, v in enumerate(img)) / ink
        cy = sum(v * (i // SIDE) for i, v in enumerate(img)) / ink
        check(abs(cx - 13.5) < 2 and abs(cy - 13.5) < 2,
              '%s: centre of mass (%.1f, %.1f), not centred' % (what, cx, cy))


with tmpdir() as d:
    # ---- digits, a letter and shapes
    a = os.path.join(d, 'a')
    chars = '0123456789A'
    V, K = 3, 2
    out, _ = run_ok(G, ['--chars', chars, '--fonts', FONT, '--variants', V,
                        '--shapes', K, '--out', a])
    n = len(chars) * V + 5 * K
    check(('%d images' % n) in out and len(out.splitlines()) == 1,
          'output line %r does not say %d images' % (out, n))
    imgs, labels = read_set(a, n)
    want = [int(c) if c.isdigit() else ord(c) for c in chars for _ in
            range(V)] + [255] * (5 * K)
    check(labels == want, 'labels %r, expected %r' % (labels, want))
    for i, img in enumerate(imgs):
        check_image(img, 'image %d (label %d)' % (i, labels[i]))
    for c in range(len(chars)):
        vs = imgs[c * V:(c + 1) * V]
        check(len(set(vs)) == V, '%r: variants are not all different' %
              chars[c])
    shapes = imgs[len(chars) * V:]
    check(len(set(shapes)) == len(shapes), 'shapes repeat')

    # ---- same arguments -> same bytes; another seed -> other bytes
    b, c = os.path.join(d, 'b'), os.path.join(d, 'c')
    run_ok(G, ['--chars', chars, '--fonts', FONT, '--variants', V,
               '--shapes', K, '--out', b])
    run_ok(G, ['--chars', chars, '--fonts', FONT, '--variants', V,
               '--shapes', K, '--out', c, '--seed', 2])
    for suffix in ('-images.idx3-ubyte', '-labels.idx1-ubyte'):
        check(filecmp.cmp(a + suffix, b + suffix, shallow=False),
              'same arguments, different %s' % suffix)
    check(not filecmp.cmp(a + '-images.idx3-ubyte', c + '-images.idx3-ubyte',
                          shallow=False), 'seeds 1 and 2 give the same images')
    check(filecmp.cmp(a + '-labels.idx1-ubyte', c + '-labels.idx1-ubyte',
                      shallow=False), 'seed 2 changed the labels')

    # ---- shapes only; two fonts; a blank character skipped
    s = os.path.join(d, 's')
    run_ok(G, ['--chars', '', '--shapes', 1, '--out', s])
    imgs, labels = read_set(s, 5)
    check(labels == [255] * 5, 'shapes only: labels %r' % labels)
    t = os.path.join(d, 't')
    out, _ = run_ok(G, ['--chars', ' 7%', '--fonts', 'DejaVu Sans,' + FONT +
                        ', DejaVu Serif', '--variants', 2, '--out', t])
    n_serif = 2 if 'DejaVu Serif' in families else 0
    imgs, labels = read_set(t, 2 * (2 + n_serif))
    check(labels == [7] * (2 + n_serif) + [37] * (2 + n_serif),
          'labels of " 7%%": %r' % labels)
    check(('%d blank skipped' % (2 + n_serif)) in out,
          'the blank space is not counted as skipped: %r' % out)

    # ---- errors
    z = os.path.join(d, 'z')
    cases = [
        ([], ['--out'], 'missing --out'),
        (['--out', z, '--fonts', 'No Such Family Xq'], ['No Such Family Xq'],
         'unknown font'),
        (['--out', z, '--fonts', FONT + ',Nope Sans Zz'], ['Nope Sans Zz'],
         'second font unknown'),
        (['--out', z, '--variants', 0], ['--variants'], 'zero variants'),
        (['--out', z, '--variants', -3], ['--variants'], 'negative variants'),
        (['--out', z, '--variants', 'many'], ['many'], 'bad --variants'),
        (['--out', z, '--shapes', -1], ['--shapes'], 'negative shapes'),
        (['--out', z, '--max-rotation', -1], ['--max-rotation'],
         'negative rotation'),
        (['--out', z, '--max-stroke', 'x'], ['x'], 'bad --max-stroke'),
        (['--out', z, '--chars', ''], ['nothing to render'],
         'nothing to render'),
        (['--out', z, '--chars', '1\u0100'], ['U+0100'], 'char above 254'),
        (['--out', z, '--chars', '\t'], ['U+0009'], 'control char'),
        (['--out', z, '--fonts', ' , '], ['--fonts'], 'no font'),
        (['--out', os.path.join(d, 'nodir', 'x')], [os.path.join(d, 'nodir')],
         'unwritable output'),
        (['--out', z, 'extra'], ['extra'], 'extra argument'),
    ]
    for args, names, what in cases:
        expect_error(G, args, d, names, what)

finish()

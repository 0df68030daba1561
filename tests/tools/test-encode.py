#!/usr/bin/python3
"""cbir-encode end to end: a codes file from a freshly trained model, read
back by hand (safetensors header + raw tensors): shape [64, D], labels equal
to the fixture's, metadata naming the model; --bits packs the codes by the
documented rule (float model: > per-dimension median, bit model: > 0, LSB
first); --limit; errors (corrupt model or images, mismatches) -> one-line
error naming the file, nothing written."""

import gzip
import os

from tools_common import (FIX_IMAGES, FIX_LABELS, check, expect_error,
                          finish, fixture, np, read_safetensors, run_ok,
                          skip_numeric, tensor_array, tmpdir, train)

images, labels = fixture()

with tmpdir() as d:
    fmodel = train(d, 'float', preset='sicara')
    bmodel = train(d, 'bits', preset='binary-xor')
    models = {}
    for m in (fmodel, bmodel):
        meta, _ = read_safetensors(m)
        models[m] = meta
    fdim = int(models[fmodel]['code_dim'])
    bdim = int(models[bmodel]['code_dim'])
    check(models[fmodel].get('code_type') == 'float'
          and models[bmodel].get('code_type') == 'bits',
          'code types %r %r' % (models[fmodel].get('code_type'),
                                models[bmodel].get('code_type')))

    # ---- float codes with labels
    codes = os.path.join(d, 'codes.safetensors')
    out, err = run_ok('cbir-encode', ['--model', fmodel, '--images',
                                      FIX_IMAGES, '--labels', FIX_LABELS,
                                      '--out', codes])
    check(out.startswith('wrote %s: 64 float codes of %d' % (codes, fdim)),
          'encode: output %r' % out)
    meta, t = read_safetensors(codes)
    check(meta.get('format') == 'gst-cbir-codes', 'codes format %r' %
          meta.get('format'))
    check(meta.get('model_fingerprint') == models[fmodel]['fingerprint'],
          'codes: model_fingerprint %r, model %r' %
          (meta.get('model_fingerprint'), models[fmodel]['fingerprint']))
    check(meta.get('code_dim') == str(fdim) and meta.get('code_type') ==
          'float', 'codes metadata %r' % meta)
    check(t['codes'][0] == 'F32' and t['codes'][1] == [64, fdim],
          'codes tensor %s %s, expected F32 [64, %d]' %
          (t['codes'][0], t['codes'][1], fdim))
    check(t['labels'][0] == 'I32' and t['labels'][1] == [64],
          'labels tensor %s %s' % (t['labels'][0], t['labels'][1]))
    check('thresholds' not in t, 'float codes carry thresholds')

    # ---- --bits on the float model, on the bit model; --limit; no labels
    fbits = os.path.join(d, 'fbits.safetensors')
    run_ok('cbir-encode', ['-m', fmodel, '-i', FIX_IMAGES, '-l', FIX_LABELS,
                           '-o', fbits, '--bits'])
    bcodes = os.path.join(d, 'bcodes.safetensors')
    run_ok('cbir-encode', ['-m', bmodel, '-i', FIX_IMAGES, '-o', bcodes])
    bbits = os.path.join(d, 'bbits.safetensors')
    run_ok('cbir-encode', ['-m', bmodel, '-i', FIX_IMAGES, '-o', bbits,
                           '--bits'])
    limited = os.path.join(d, 'limited.safetensors')
    run_ok('cbir-encode', ['-m', fmodel, '-i', FIX_IMAGES, '-l', FIX_LABELS,
                           '-o', limited, '--limit', 5, '--threads', 1])
    fb_meta, fb = read_safetensors(fbits)
    bc_meta, bc = read_safetensors(bcodes)
    bb_meta, bb = read_safetensors(bbits)
    li_meta, li = read_safetensors(limited)
    check(fb['codes'][0] == 'U8' and fb['codes'][1] == [64, (fdim + 7) // 8],
          '--bits (float model): %s %s' % (fb['codes'][0], fb['codes'][1]))
    check(fb_meta.get('code_type') == 'bits' and fb_meta.get('bit_rule') ==
          'value > median', '--bits metadata %r' % fb_meta)
    check(fb['thresholds'][1] == [fdim], '--bits thresholds shape %s' %
          fb['thresholds'][1])
    check(bc['codes'][1] == [64, bdim] and 'labels' not in bc,
          'bit model float codes: %s, tensors %s' % (bc['codes'][1],
                                                     sorted(bc)))
    check(bb['codes'][0] == 'U8' and bb['codes'][1] == [64, (bdim + 7) // 8]
          and bb_meta.get('bit_rule') == 'value > 0' and 'thresholds' not in
          bb, '--bits (bit model): %s %s %r' %
          (bb['codes'][0], bb['codes'][1], bb_meta.get('bit_rule')))
    check(li['codes'][1] == [5, fdim] and li['labels'][1] == [5],
          '--limit 5: %s %s' % (li['codes'][1], li['labels'][1]))

    if np is None:
        skip_numeric('code values, labels, bit packing')
    else:
        c = tensor_array(t['codes'])
        check(np.all(np.isfinite(c)), 'codes not all finite')
        check(np.ptp(c) > 0, 'all codes equal')
        check(np.array_equal(tensor_array(t['labels']),
                             np.frombuffer(labels, np.uint8).astype(np.int32)),
              'labels differ from the fixture')
        # each image encodes the same whatever the batch and thread count
        check(np.allclose(tensor_array(li['codes']), c[:5], rtol=1e-5,
                          atol=1e-6), '--limit 5 codes differ from the first 5')
        check(np.array_equal(tensor_array(li['labels']),
                             tensor_array(t['labels'])[:5]),
              '--limit 5 labels differ')
        # float model --bits: value > the per-dimension median (the upper
        # one, n/2 of the sorted column) of these codes
        thr = tensor_array(fb['thresholds'])
        check(np.array_equal(thr, np.sort(c, axis=0)[32]),
              'thresholds are not the per-dimension medians')
        want = np.packbits(c > thr, axis=1, bitorder='little')
        check(np.array_equal(tensor_array(fb['codes']), want),
              '--bits (float model) bits differ from codes > medians')
        check(np.array_equal(tensor_array(fb['labels']),
                             tensor_array(t['labels'])),
              '--bits labels differ')
        bcf = tensor_array(bc['codes'])
        want = np.packbits(bcf > 0, axis=1, bitorder='little')
        check(np.array_equal(tensor_array(bb['codes']), want),
              '--bits (bit model) bits differ from codes > 0')

    # ---- errors
    src = os.path.join(d, 'src')
    outd = os.path.join(d, 'out')
    os.mkdir(src)
    os.mkdir(outd)
    with open(fmodel, 'rb') as f:
        mbytes = f.read()
    cut_header = os.path.join(src, 'cut-header.safetensors')
    with open(cut_header, 'wb') as f:
        f.write(mbytes[:100])
    cut_data = os.path.join(src, 'cut-data.safetensors')
    with open(cut_data, 'wb') as f:
        f.write(mbytes[:-64])
    garbage = os.path.join(src, 'garbage.safetensors')
    with open(garbage, 'wb') as f:
        f.write(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": nonsense}')
    codes_as_model = codes
    trunc = os.path.join(src, 'trunc.idx3-ubyte')
    raw = gzip.open(FIX_IMAGES).read()
    with open(trunc, 'wb') as f:
        f.write(raw[:3000])
    small = os.path.join(src, 'small.idx3-ubyte')
    with open(small, 'wb') as f:
        f.write(b'\x00\x00\x08\x03' + (2).to_bytes(4, 'big') +
                (14).to_bytes(4, 'big') + (14).to_bytes(4, 'big') +
                bytes(2 * 14 * 14))
    out = os.path.join(outd, 'c.safetensors')
    ok = ['--images', FIX_IMAGES, '--out', out]
    cases = [
        (['--model', cut_header] + ok, [cut_header], 'truncated model header'),
        (['--model', cut_data] + ok, [cut_data], 'truncated model data'),
        (['--model', garbage] + ok, [garbage], 'model with bad JSON'),
        (['--model', codes_as_model] + ok, [codes_as_model],
         'codes file as model'),
        (['--model', os.path.join(src, 'none')] + ok,
         [os.path.join(src, 'none')], 'missing model'),
        (['--model', fmodel, '--images', trunc, '--out', out], [trunc],
         'truncated images'),
        (['--model', fmodel, '--images', small, '--out', out], [small, '14'],
         'wrong image size'),
        (['--model', fmodel, '--labels', FIX_IMAGES] + ok, [FIX_IMAGES],
         'images as labels'),
        (['--model', fmodel, '--images', FIX_IMAGES], ['--out'],
         'missing --out'),
        (['--model', fmodel, '--limit', -2] + ok, ['--limit'],
         'negative limit'),
        (['--model', fmodel, '--threads', 1000] + ok, ['--threads'],
         'too many threads'),
        (['--model', fmodel, 'stray'] + ok, ['stray'], 'stray argument'),
    ]
    for args, names, what in cases:
        expect_error('cbir-encode', args, d, names, what)
    nodir = os.path.join(d, 'nodir', 'c.safetensors')
    expect_error('cbir-encode', ['--model', fmodel, '--images', FIX_IMAGES,
                                 '--out', nodir], d, [nodir],
                 'missing output directory')

finish()

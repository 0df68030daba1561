#!/usr/bin/python3
"""cbir-train end to end on the 64-digit fixture: model + loss/recon PNGs
written, progress lines on a non-tty stdout, same seed -> identical files,
--resume from a checkpoint == an uninterrupted run byte for byte, and bad
arguments -> one-line error naming the problem, non-zero exit, no output
(and no temporary) file left."""

import filecmp
import gzip
import json
import os
import re

from tools_common import (FIX_IMAGES, check, check_png,
                          expect_error, finish, listing, read_safetensors,
                          run, run_ok, tmpdir)

COMMON = ['--data', FIX_IMAGES, '--limit', 64, '--batch-size', 16,
          '--threads', 2]


def model_meta(path):
    meta, tensors = read_safetensors(path)
    check(meta.get('format') == 'gst-cbir-model',
          '%s: format %r' % (path, meta.get('format')))
    check(len(tensors) > 0, '%s: no tensors' % path)
    # every JSON-valued metadata entry must be strict JSON (Python's parser)
    for k, v in meta.items():
        if v[:1] in ('{', '['):
            try:
                json.loads(v)
            except ValueError as e:
                check(False, '%s: metadata %r is not valid JSON: %s' %
                      (path, k, e))
    return meta


with tmpdir() as d:
    # ---- a 2-epoch run of two presets: files, progress, metadata
    PRESETS = ['sicara', 'binary-xor', 'default']
    for preset in PRESETS:
        model = os.path.join(d, preset + '.safetensors')
        out, err = run_ok('cbir-train', COMMON + ['--preset', preset,
                                                  '--epochs', 2,
                                                  '--out', model])
        check(err == '', '%s: unexpected stderr %r' % (preset, err))
        lines = out.splitlines()
        epoch_lines = [l for l in lines if re.match(r'epoch \d+/2: ', l)]
        check(len(epoch_lines) == 2 and epoch_lines[0].startswith(
            'epoch 1/2: ') and epoch_lines[1].startswith('epoch 2/2: '),
            '%s: epoch lines %r' % (preset, epoch_lines))
        check('\r' not in out and '\033' not in out,
              '%s: terminal control characters on a non-tty stdout' % preset)
        check(lines and lines[0].startswith('training %s ' % preset)
              and 'on 58 images, validating on 6' in lines[0],
              '%s: first line %r' % (preset, lines[:1]))
        check(any(l.startswith('wrote %s ' % model) for l in lines),
              '%s: no "wrote" line' % preset)
        for l in epoch_lines:
            m = re.search(r': (bce|mse) ([0-9.]+) val ([0-9.]+) ', l)
            check(m is not None, '%s: epoch line without losses: %r' %
                  (preset, l))
        meta = model_meta(model)
        check(meta.get('name') == preset, '%s: name %r' %
              (preset, meta.get('name')))
        training = json.loads(meta.get('training', '{}'))
        check(training.get('epochs_done') == 2, '%s: epochs_done %r' %
              (preset, training.get('epochs_done')))
        check(len(training.get('train_losses', [])) == 2,
              '%s: train_losses %r' % (preset, training.get('train_losses')))
        loss_png = os.path.join(d, preset + '-loss.png')
        recon_png = os.path.join(d, preset + '-recon.png')
        check_png(loss_png, min_side=100, max_side=4000)
        size = check_png(recon_png, min_side=28 * 3, max_side=4000)
        if size:
            # 3 rows (noisy, reconstruction, clean) of up to 10 28x28 digits
            check(size[0] >= 6 * 28 and size[1] >= 3 * 28,
                  '%s: recon PNG %dx%d too small' % (preset, *size))
        check(sorted(listing(d)) == sorted(
            f for p in PRESETS[:PRESETS.index(preset) + 1]
            for f in (p + '.safetensors', p + '-loss.png', p + '-recon.png')),
            '%s: files in the output directory: %s' %
            (preset, sorted(listing(d))))

    # ---- --quiet: nothing on stdout; --png-prefix
    quiet = os.path.join(d, 'quiet.safetensors')
    prefix = os.path.join(d, 'pics', 'q')
    os.mkdir(os.path.join(d, 'pics'))
    out, err = run_ok('cbir-train', COMMON + ['--preset', 'sicara',
                                              '--epochs', 2, '--out', quiet,
                                              '--quiet', '--png-prefix',
                                              prefix])
    check(out == '' and err == '', '--quiet: output %r %r' % (out, err))
    check(os.path.exists(prefix + '-loss.png')
          and os.path.exists(prefix + '-recon.png')
          and not os.path.exists(os.path.join(d, 'quiet-loss.png')),
          '--png-prefix: PNGs not where asked')

    # ---- --rotate and --lr-schedule: recorded in the model, change it
    jit = os.path.join(d, 'jit.safetensors')
    run_ok('cbir-train', COMMON + ['--preset', 'sicara', '--epochs', 2,
                                   '--out', jit, '--quiet', '--rotate', 15,
                                   '--lr-schedule', 'cosine'])
    arch = json.loads(model_meta(jit).get('architecture', '{}'))
    tr = arch.get('training', {})
    check(tr.get('rotate') == 15 and tr.get('lr_schedule') == 'cosine',
          '--rotate/--lr-schedule not in the arch: %r' % tr)
    check(not filecmp.cmp(jit, quiet, shallow=False),
          '--rotate 15 --lr-schedule cosine: same model as without')

    # ---- --consistency: two views a step, recorded, shown while training
    cons = os.path.join(d, 'cons.safetensors')
    out, _ = run_ok('cbir-train', COMMON + ['--preset', 'pyimagesearch',
                                            '--epochs', 2, '--out', cons,
                                            '--consistency', 0.5])
    arch = json.loads(model_meta(cons).get('architecture', '{}'))
    check(arch.get('training', {}).get('consistency') == 0.5,
          '--consistency not in the arch: %r' % arch.get('training'))
    check('consistency 0.5' in out and ' views 0.' in out,
          '--consistency: not in the header or no view spread per epoch: %r'
          % out)

    # ---- --deskew: recorded in the normalisation, shown, changes the model
    dsk = os.path.join(d, 'dsk.safetensors')
    out, _ = run_ok('cbir-train', COMMON + ['--preset', 'sicara',
                                            '--epochs', 2, '--out', dsk,
                                            '--deskew'])
    arch = json.loads(model_meta(dsk).get('architecture', '{}'))
    check(arch.get('normalisation', {}).get('deskew') is True,
          '--deskew not in the normalisation: %r' % arch.get('normalisation'))
    check('deskewed input' in out, '--deskew: not in the header: %r' % out)
    check(not filecmp.cmp(dsk, quiet, shallow=False),
          '--deskew: same model as without')

    # ---- --inputs: paired inputs. The fixture paired with itself trains
    # the weights of no pairing (the quiet run), and says so in the header
    # and the training info; paired with its mirror image, another model
    same = os.path.join(d, 'same.safetensors')
    out, _ = run_ok('cbir-train', COMMON + ['--preset', 'sicara',
                                            '--epochs', 2, '--out', same,
                                            '--inputs', FIX_IMAGES])
    check('paired with %s' % FIX_IMAGES in out,
          '--inputs: not in the header: %r' % out[:300])
    _, tq = read_safetensors(quiet)
    ms, ts = read_safetensors(same)
    check(tq == ts, '--inputs of the data themselves changed the weights')
    training = json.loads(ms.get('training', '{}'))
    check(re.fullmatch(r'[0-9a-f]{64}', training.get('inputs_sha256', '')),
          '--inputs: training info inputs_sha256 %r' %
          training.get('inputs_sha256'))
    check(json.loads(model_meta(quiet).get('training', '{}'))
          .get('inputs_sha256') == 'none', 'no --inputs: inputs_sha256 not '
          '"none"')
    raw = gzip.open(FIX_IMAGES).read()
    mirror = os.path.join(d, 'mirror.idx3-ubyte')
    with open(mirror, 'wb') as f:
        f.write(raw[:16] + b''.join(raw[16 + 784 * i:16 + 784 * (i + 1)][::-1]
                                    for i in range(64)))
    mir = os.path.join(d, 'mir.safetensors')
    run_ok('cbir-train', COMMON + ['--preset', 'sicara', '--epochs', 2,
                                   '--out', mir, '--inputs', mirror,
                                   '--quiet'])
    _, tm = read_safetensors(mir)
    check(tm != tq, '--inputs of other images: the same weights')

    # ---- same seed -> identical model; another seed -> another model
    first = os.path.join(d, 'sicara.safetensors')
    again = os.path.join(d, 'again.safetensors')
    run_ok('cbir-train', COMMON + ['--preset', 'sicara', '--epochs', 2,
                                   '--out', again, '--quiet'])
    check(filecmp.cmp(first, again, shallow=False),
          'same seed, same settings: model files differ')
    check(filecmp.cmp(os.path.join(d, 'sicara-recon.png'),
                      os.path.join(d, 'again-recon.png'), shallow=False),
          'same seed, same settings: recon PNGs differ')
    seeded = os.path.join(d, 'seed7.safetensors')
    run_ok('cbir-train', COMMON + ['--preset', 'sicara', '--epochs', 2,
                                   '--out', seeded, '--quiet', '--seed', 7])
    check(not filecmp.cmp(first, seeded, shallow=False),
          '--seed 7 gives the same model as the default seed')

with tmpdir() as d:
    # ---- checkpoint + resume == uninterrupted
    full = os.path.join(d, 'full.safetensors')
    part = os.path.join(d, 'part.safetensors')
    resumed = os.path.join(d, 'resumed.safetensors')
    run_ok('cbir-train', COMMON + ['--preset', 'sicara', '--epochs', 3,
                                   '--out', full, '--quiet'])
    ckpt = os.path.join(d, 'part-ckpt.safetensors')
    run_ok('cbir-train', COMMON + ['--preset', 'sicara', '--epochs', 2,
                                   '--out', part, '--quiet',
                                   '--checkpoint-every', 1,
                                   '--checkpoint', ckpt])
    check(os.path.exists(ckpt), 'no checkpoint file %s' % ckpt)
    out, err = run_ok('cbir-train', ['--data', FIX_IMAGES, '--limit', 64,
                                     '--threads', 2, '--resume', ckpt,
                                     '--epochs', 3, '--out', resumed])
    check('(resumed)' in out, 'resume: no "(resumed)" in %r' % out)
    epoch_lines = re.findall(r'^epoch (\d+)/3: ', out, re.M)
    check(epoch_lines == ['3'], 'resume: epochs run %r, expected [3]' %
          epoch_lines)
    check(filecmp.cmp(full, resumed, shallow=False),
          'resumed model differs from the uninterrupted one')
    for suffix in ('-loss.png', '-recon.png'):
        a = full[:-len('.safetensors')] + suffix
        b = resumed[:-len('.safetensors')] + suffix
        check(filecmp.cmp(a, b, shallow=False),
              'resume: %s differs from the uninterrupted run' % suffix)
    # default checkpoint name: <out without .safetensors>-checkpoint...
    dflt = os.path.join(d, 'dflt.safetensors')
    run_ok('cbir-train', COMMON + ['--preset', 'sicara', '--epochs', 1,
                                   '--out', dflt, '--quiet',
                                   '--checkpoint-every', 1])
    check(os.path.exists(os.path.join(d, 'dflt-checkpoint.safetensors')),
          'default checkpoint path not written')
    # resuming must not take other settings
    expect_error('cbir-train', ['--data', FIX_IMAGES, '--resume', ckpt,
                                '--out', os.path.join(d, 'x.safetensors'),
                                '--preset', 'sicara'], d, ['--resume'],
                 'resume with --preset')
    expect_error('cbir-train', ['--data', FIX_IMAGES, '--resume', ckpt,
                                '--out', os.path.join(d, 'x.safetensors'),
                                '--lr', '0.5'], d, ['--resume'],
                 'resume with --lr')
    for opt in (['--rotate', '10'], ['--lr-schedule', 'cosine'],
                ['--consistency', '1'], ['--deskew']):
        expect_error('cbir-train', ['--data', FIX_IMAGES, '--resume', ckpt,
                                    '--out', os.path.join(d, 'x.safetensors')]
                     + opt, d, ['--resume'], 'resume with ' + opt[0])

# ---- errors: one line naming the problem, non-zero exit, nothing written
with tmpdir() as d:
    src = os.path.join(d, 'src')
    outd = os.path.join(d, 'out')
    os.mkdir(src)
    os.mkdir(outd)
    raw = gzip.open(FIX_IMAGES).read()
    trunc = os.path.join(src, 'trunc.idx3-ubyte')
    with open(trunc, 'wb') as f:
        f.write(raw[:5000])
    badmagic = os.path.join(src, 'badmagic.idx3-ubyte')
    with open(badmagic, 'wb') as f:
        f.write(b'\x00\x00\x0d\x03' + raw[4:])
    badjson = os.path.join(src, 'bad.json')
    with open(badjson, 'w') as f:
        f.write('{"name": "x", "layers": [')
    # GScanner's octal escape, which json-glib takes: refused when parsed,
    # not after the whole training
    badesc = os.path.join(src, 'badesc.json')
    with open(badesc, 'w') as f:
        f.write('{"name": "a\\214b", "input": [1, 28, 28], "code_layer": 0, '
                '"layers": [{"type": "conv2d", "filters": 1, '
                '"padding": "same"}]}')
    noinput = os.path.join(src, 'noinput.json')
    with open(noinput, 'w') as f:
        f.write('{"name": "x", "layers": []}')
    few = os.path.join(src, 'few.idx3-ubyte')
    with open(few, 'wb') as f:
        f.write(raw[:4] + (10).to_bytes(4, 'big') + raw[8:16 + 10 * 784])
    notckpt = os.path.join(src, 'notckpt.safetensors')
    with open(notckpt, 'wb') as f:
        f.write(raw[:2000])
    missing = os.path.join(src, 'missing.idx3-ubyte')
    model = os.path.join(outd, 'm.safetensors')
    base = ['--out', model, '--limit', 64, '--threads', 2, '--quiet']
    data = ['--data', FIX_IMAGES]
    cases = [
        (data + ['--preset', 'nosuch'], ['nosuch'], 'unknown preset'),
        (['--preset', 'sicara'], ['--data'], 'missing --data'),
        (['--data', missing, '--preset', 'sicara'], [missing],
         'nonexistent data'),
        (['--data', trunc, '--preset', 'sicara'], [trunc], 'truncated IDX'),
        (['--data', badmagic, '--preset', 'sicara'], [badmagic],
         'bad IDX magic'),
        (data + ['--preset', 'sicara', '--labels', FIX_IMAGES], [FIX_IMAGES],
         'images as labels'),
        (data + ['--preset', 'sicara', '--epochs', -1], ['--epochs'],
         'negative epochs'),
        (data + ['--preset', 'sicara', '--epochs', 0], ['--epochs'],
         'zero epochs'),
        (data + ['--preset', 'sicara', '--epochs', 'two'], ['two'],
         'non-numeric epochs'),
        (data + ['--preset', 'sicara', '--batch-size', -1], ['--batch-size'],
         'negative batch size'),
        (data + ['--preset', 'sicara', '--seed', -1], ['--seed'],
         'negative seed'),
        (data + ['--preset', 'sicara', '--lr', -1], ['--lr'],
         'negative learning rate'),
        (data + ['--preset', 'sicara', '--val-split', -0.5], ['--val-split'],
         'negative validation split'),
        (data + ['--preset', 'sicara', '--noise-level', 2],
         ['--noise-level'], 'noise level above 1'),
        (data + ['--preset', 'sicara', '--optimizer', 'rmsprop'],
         ['rmsprop'], 'unknown optimizer'),
        (data + ['--preset', 'sicara', '--loss', 'hinge'], ['hinge'],
         'unknown loss'),
        (data + ['--preset', 'sicara', '--noise', 'pink'], ['pink'],
         'unknown noise'),
        (data + ['--preset', 'sicara', '--rotate', -5], ['rotate'],
         'negative rotation'),
        (data + ['--preset', 'sicara', '--rotate', 400], ['rotate'],
         'rotation above 180 degrees'),
        (data + ['--preset', 'sicara', '--consistency', -1],
         ['consistency'], 'negative consistency weight'),
        (data + ['--preset', 'sicara', '--consistency', 101],
         ['consistency', '100'], 'consistency weight above 100'),
        (data + ['--preset', 'sicara', '--lr-schedule', 'step'], ['step'],
         'unknown learning-rate schedule'),
        (data + ['--arch', badjson], [badjson], 'invalid arch JSON'),
        (data + ['--arch', badesc, '--epochs', 50], [badesc, '1:12',
                                                     'escape'],
         'invalid escape in arch JSON'),
        (data + ['--arch', noinput], [noinput], 'arch JSON without input'),
        (data + ['--arch', os.path.join(src, 'none.json')],
         [os.path.join(src, 'none.json')], 'missing arch file'),
        (data + ['--arch', noinput, '--preset', 'sicara'], ['--arch'],
         'both --arch and --preset'),
        (data + ['--preset', 'sicara', '--inputs', missing], [missing],
         'nonexistent paired inputs'),
        (data + ['--preset', 'sicara', '--inputs', trunc], [trunc],
         'truncated paired inputs'),
        (data + ['--preset', 'sicara', '--inputs', few], [few, '10', '64'],
         'paired inputs of another count'),
        (data + ['--resume', notckpt], [notckpt], 'corrupt checkpoint'),
        (data + ['--preset', 'sicara', 'stray'], ['stray'],
         'stray argument'),
        # SGD at lr 1e10: the loss stays finite while a BN running variance
        # becomes infinite; nothing could load such a model
        (data + ['--preset', 'default', '--lr', '1e10', '--optimizer', 'sgd',
                 '--epochs', 1], ['diverged', '1e+10'],
         'diverged weights'),
    ]
    for args, names, what in cases:
        expect_error('cbir-train', args + base, d, names, what)
    # output into a missing directory
    nodir = os.path.join(d, 'nodir', 'm.safetensors')
    expect_error('cbir-train', data + ['--preset', 'sicara', '--out', nodir,
                                       '--quiet'], d, [nodir],
                 'missing output directory')
    expect_error('cbir-train', data + ['--preset', 'sicara', '--quiet'], d,
                 ['--out'], 'missing --out')
    check(listing(outd) == set(), 'files left in the output directory: %s' %
          sorted(listing(outd)))

    # ---- informational options
    rc, out, err = run('cbir-train', ['--list-presets'])
    check(rc == 0 and all(p in out for p in ('sicara', 'binary-xor',
                                             'default')),
          '--list-presets: %d %r' % (rc, out))
    rc, out, err = run('cbir-train', ['--show-preset', 'sicara'])
    try:
        arch = json.loads(out)
    except ValueError:
        arch = {}
    check(rc == 0 and arch.get('name') == 'sicara',
          '--show-preset sicara: not the architecture JSON: %r' % out[:200])
    # the shown JSON is a valid --arch file giving the same model
    arch_file = os.path.join(src, 'sicara.json')
    with open(arch_file, 'w') as f:
        f.write(out)
    a = os.path.join(outd, 'arch.safetensors')
    p = os.path.join(outd, 'preset.safetensors')
    run_ok('cbir-train', data + ['--arch', arch_file, '--epochs', 1, '--out',
                                 a, '--batch-size', 16] + base[2:])
    run_ok('cbir-train', data + ['--preset', 'sicara', '--epochs', 1,
                                 '--out', p, '--batch-size', 16] + base[2:])
    ma, _ = read_safetensors(a)
    mp, _ = read_safetensors(p)
    check(ma.get('fingerprint') == mp.get('fingerprint'),
          '--arch of --show-preset sicara: fingerprint %r, preset %r' %
          (ma.get('fingerprint'), mp.get('fingerprint')))
    expect_error('cbir-train', ['--show-preset', 'nosuch'], d, ['nosuch'],
                 'show unknown preset')

finish()

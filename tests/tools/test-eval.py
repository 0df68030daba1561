#!/usr/bin/python3
"""cbir-eval end to end on the fixture split in two (gallery = first 48,
queries = last 16): the table, --json (valid, same figures), --baselines
rows, the model's mAP and P@1 recomputed with numpy from cbir-encode's codes
(sklearn's label ranking AP, ties pessimistic), --save-gallery then
--gallery-file gives the same mAP, a gallery file of another model is
refused naming both fingerprints, other errors. The default re-ranking,
diffusion over the gallery's mutual k-NN graph: the graph in the saved
gallery against one built with numpy from the codes, the diffusion scores
of a converged solve against numpy's dense linear solve (to 1e-4), the
default 20-step ranking against numpy's own conjugate gradients, and the
flags' errors."""

import zlib

import json
import os

from tools_common import (check, expect_error, finish, fixture, np, run,
                          read_safetensors, run_ok, skip_numeric,
                          tensor_array, tmpdir, train, write_idx)

images, labels = fixture()
NG = 48
FAST = ['--single-seconds', '0.01', '--threads', 2]


def parse_table(out):
    """{method: {column: value}} of the main table."""
    lines = out.splitlines()
    rows = {}
    try:
        start = next(i for i, l in enumerate(lines) if l.startswith('method'))
    except StopIteration:
        return rows
    for l in lines[start + 1:]:
        if not l.strip():
            break
        # method names may hold one space ("raw pixels"): split from the right
        parts = l.split()
        tail = parts[-14:]
        name = ' '.join(parts[:-14])
        rows[name] = {'code': tail[0] + ' ' + tail[1], 'metric': tail[2],
                      'map': float(tail[4]), 'p1': float(tail[5])}
    return rows


def lrap(dist, glab, qlab):
    """sklearn label_ranking_average_precision_score with score = -dist
    (ties counted against: rank = number of items at least as close)."""
    aps = []
    for i in range(dist.shape[0]):
        rel = glab == qlab[i]
        d = dist[i]
        ap = 0.0
        for j in np.flatnonzero(rel):
            at_least = d <= d[j]
            ap += np.count_nonzero(at_least & rel) / np.count_nonzero(at_least)
        aps.append(ap / np.count_nonzero(rel))
    return float(np.mean(aps))


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        check(False, '%s: not valid JSON: %s' % (path, e))
        return {'methods': []}


with tmpdir() as d:
    g_img, g_lab = os.path.join(d, 'g-img.idx3'), os.path.join(d, 'g-lab.idx1')
    q_img, q_lab = os.path.join(d, 'q-img.idx3'), os.path.join(d, 'q-lab.idx1')
    write_idx(g_img, [NG, 28, 28], images[:NG * 784])
    write_idx(g_lab, [NG], labels[:NG])
    write_idx(q_img, [64 - NG, 28, 28], images[NG * 784:])
    write_idx(q_lab, [64 - NG], labels[NG:])
    split = ['--gallery', g_img, '--gallery-labels', g_lab,
             '--queries', q_img, '--query-labels', q_lab]
    model = train(d, 'm', preset='sicara')
    model_name = read_safetensors(model)[0]['name']

    # ---- table + JSON + baselines + saved gallery
    js = os.path.join(d, 'eval.json')
    gal = os.path.join(d, 'gallery.safetensors')
    out, err = run_ok('cbir-eval', ['--model', model] + split + FAST +
                      ['--baselines', '--json', js, '--save-gallery', gal,
                       '--rerank', 'none'])
    check(out.startswith('gallery %d items, %d queries' % (NG, 64 - NG)),
          'table head %r' % out[:80])
    table = parse_table(out)
    want_rows = [model_name, 'raw pixels', 'PCA-32', 'PCA-64', 'ITQ-64']
    check(list(table) == want_rows, 'table rows %s, expected %s' %
          (list(table), want_rows))
    for name, r in table.items():
        check(0 <= r['map'] <= 1 and 0 <= r['p1'] <= 1,
              '%s: mAP %s, P@1 %s outside [0, 1]' % (name, r['map'], r['p1']))
    check('per-class AP' in out, 'no per-class AP table')
    check('wrote %s (%d items)' % (gal, NG) in err, 'no "wrote" progress line')
    res = load_json(js)
    check(res.get('gallery_size') == NG and res.get('queries') == 64 - NG,
          'JSON sizes %r %r' % (res.get('gallery_size'), res.get('queries')))
    methods = {m['name']: m for m in res.get('methods', [])}
    check(list(methods) == want_rows, 'JSON methods %s' % list(methods))
    for name, m in methods.items():
        check(0 <= m['map'] <= 1, '%s: JSON mAP %r' % (name, m['map']))
        if name in table:
            check(abs(m['map'] - table[name]['map']) <= 0.00005 and
                  abs(m['precision_at_1'] - table[name]['p1']) <= 0.00005,
                  '%s: JSON mAP %r / P@1 %r, table %r / %r' %
                  (name, m['map'], m['precision_at_1'], table[name]['map'],
                   table[name]['p1']))
        classes = m.get('class_ap', {})
        check(sorted(classes) == sorted(str(c) for c in set(labels[NG:])),
              '%s: class_ap keys %s' % (name, sorted(classes)))
    check(methods.get(model_name, {}).get('metric') == 'l2' and
          methods.get('ITQ-64', {}).get('metric') == 'hamming',
          'metrics %r' % {k: v.get('metric') for k, v in methods.items()})
    model_map = methods.get(model_name, {}).get('map', -1)

    # ---- the model's mAP and P@1 recomputed from cbir-encode's codes
    if np is None:
        skip_numeric('mAP recomputed from the codes')
    else:
        gc_path = os.path.join(d, 'gc.safetensors')
        qc_path = os.path.join(d, 'qc.safetensors')
        run_ok('cbir-encode', ['-m', model, '-i', g_img, '-l', g_lab,
                               '-o', gc_path])
        run_ok('cbir-encode', ['-m', model, '-i', q_img, '-l', q_lab,
                               '-o', qc_path])
        _, gt = read_safetensors(gc_path)
        _, qt = read_safetensors(qc_path)
        gcodes = tensor_array(gt['codes']).astype(np.float64)
        qcodes = tensor_array(qt['codes']).astype(np.float64)
        glab = tensor_array(gt['labels'])
        qlab = tensor_array(qt['labels'])
        dist = ((qcodes[:, None, :] - gcodes[None, :, :]) ** 2).sum(-1)
        want = lrap(dist, glab, qlab)
        check(abs(model_map - want) < 1e-4,
              'model mAP %r, recomputed from the codes %r' % (model_map, want))
        p1 = float(np.mean(glab[np.argmin(dist, axis=1)] == qlab))
        got = methods.get(model_name, {}).get('precision_at_1')
        check(got is not None and abs(got - p1) < 1e-9,
              'model P@1 %r, recomputed %r' % (got, p1))
        gpx = np.frombuffer(images[:NG * 784], np.uint8).reshape(NG, 784)
        qpx = np.frombuffer(images[NG * 784:], np.uint8).reshape(-1, 784)
        pdist = ((qpx[:, None, :].astype(np.float64) - gpx[None]) ** 2).sum(-1)
        want = lrap(pdist, glab, qlab)
        got = methods.get('raw pixels', {}).get('map', -1)
        check(abs(got - want) < 1e-4,
              'raw pixels mAP %r, recomputed %r' % (got, want))

    # ---- the saved gallery gives the same mAP
    meta, t = read_safetensors(gal)
    check(meta.get('format') == 'gst-cbir-gallery' and
          meta.get('model_fingerprint') ==
          read_safetensors(model)[0]['fingerprint'],
          'saved gallery metadata %r' % meta)
    check(t.get('labels', (0, [0]))[1] == [NG] and
          t.get('thumbnails', (0, [0]))[1] == [NG, 28, 28],
          'saved gallery tensors %r' % {k: v[1] for k, v in t.items()})
    if np is not None:
        check(np.array_equal(tensor_array(t['labels']),
                             np.frombuffer(labels[:NG], np.uint8)),
              'saved gallery labels differ from the gallery\'s')
        check(np.array_equal(tensor_array(t['thumbnails']).reshape(-1),
                             np.frombuffer(images[:NG * 784], np.uint8)),
              'saved gallery thumbnails differ from the gallery images')
    js2 = os.path.join(d, 'eval2.json')
    out, err = run_ok('cbir-eval', ['--model', model, '--gallery-file', gal,
                                    '--queries', q_img, '--query-labels',
                                    q_lab, '--json', js2, '--quiet'] + FAST)
    check('graph' not in read_safetensors(gal)[0],
          '--rerank none saved a graph')
    check(err == '', '--quiet: stderr %r' % err)
    res2 = load_json(js2)
    m2 = {m['name']: m for m in res2.get('methods', [])}
    check(list(m2) == [model_name], '--gallery-file methods %s' % list(m2))
    check(res2.get('gallery_size') == NG, '--gallery-file size %r' %
          res2.get('gallery_size'))
    got = m2.get(model_name, {}).get('map', -2)
    check(abs(got - model_map) < 1e-12, '--gallery-file mAP %r, from images %r'
          % (got, model_map))

    # ---- other code types: bits of a float model, a bit model, two-stage
    out, _ = run_ok('cbir-eval', ['--model', model, '--code', 'bits',
                                  '--quiet'] + split + FAST)
    r = parse_table(out).get(model_name, {})
    check(r.get('metric') == 'hamming' and r.get('code') == 'bits %d' %
          int(read_safetensors(model)[0]['code_dim']) and
          0 <= r.get('map', -1) <= 1, '--code bits: row %r' % r)
    bmodel = train(d, 'b', preset='binary-xor')
    out, _ = run_ok('cbir-eval', ['--model', bmodel, '--quiet'] + split +
                    FAST)
    r = parse_table(out).get('binary-xor', {})
    check(r.get('metric') == 'hamming' and 0 <= r.get('map', -1) <= 1,
          'bit model: row %r' % r)
    js3 = os.path.join(d, 'eval3.json')
    run_ok('cbir-eval', ['--model', model, '--shortlist', 20, '--metric',
                         'l2', '--quiet', '--json', js3, '--limit-queries',
                         8, '--rerank', 'none'] + split + FAST)
    res3 = load_json(js3)
    m3 = res3.get('methods', [{}])[0]
    check(res3.get('queries') == 8, '--limit-queries 8: %r' %
          res3.get('queries'))
    check(m3.get('name') == model_name + '+2stage' and m3.get('shortlist') ==
          20 and m3.get('recall_at_k') is not None and
          0 <= m3['recall_at_k'] <= 1, '--shortlist row %r' %
          {k: m3.get(k) for k in ('name', 'shortlist', 'recall_at_k')})

    # ---- a gallery file of another model: refused, both fingerprints named
    other = train(d, 'other', preset='sicara', extra=['--seed', 7])
    fp_model = read_safetensors(model)[0]['fingerprint']
    fp_other = read_safetensors(other)[0]['fingerprint']
    check(fp_model != fp_other, 'two seeds, one fingerprint')
    outd = os.path.join(d, 'out')
    os.mkdir(outd)
    q = ['--queries', q_img, '--query-labels', q_lab, '--quiet']
    js_out = os.path.join(outd, 'e.json')
    expect_error('cbir-eval', ['--model', other, '--gallery-file', gal,
                               '--json', js_out] + q + FAST, d,
                 [gal, fp_model, fp_other], 'gallery of another model')

    # ---- other errors: one line, named, nothing written
    with open(gal, 'rb') as f:
        gbytes = f.read()
    cut = os.path.join(d, 'cut.safetensors')
    with open(cut, 'wb') as f:
        f.write(gbytes[:len(gbytes) // 2])
    nodir = os.path.join(d, 'nodir', 'e.json')
    cases = [
        (['--model', model, '--gallery-file', cut] + q, [cut],
         'truncated gallery file'),
        (['--model', model, '--gallery-file', model] + q, [model],
         'model as gallery file'),
        (['--model', model, '--gallery', g_img, '--gallery-labels', q_lab]
         + q, [q_lab], 'gallery label count'),
        (['--model', model, '--gallery', g_img] + q, ['--gallery-labels'],
         'missing gallery labels'),
        (['--model', model] + q, ['--gallery'], 'no gallery'),
        (['--model', model] + split[:4] + ['--quiet'], ['--queries'],
         'no queries'),
        (['--model', model, '--metric', 'manhattan'] + split, ['manhattan'],
         'unknown metric'),
        (['--model', model, '--code', 'ternary'] + split, ['ternary'],
         'unknown code type'),
        (['--model', model, '--code', 'bits', '--metric', 'l2'] + split,
         ['hamming'], 'bits with l2'),
        (['--model', model, '--k', 0] + split, ['--k'], 'k = 0'),
        (['--model', os.path.join(d, 'none.safetensors')] + split,
         [os.path.join(d, 'none.safetensors')], 'missing model'),
        (['--model', cut] + split, [cut], 'corrupt model'),
        (['--model', model, '--json', nodir, '--quiet'] + split, [nodir],
         'JSON into a missing directory'),
        (['--model', model, '--save-gallery', nodir, '--quiet'] + split,
         [nodir], 'gallery into a missing directory'),
    ]
    for args, names, what in cases:
        expect_error('cbir-eval', args + FAST + ['--quiet'], d, names, what)

    # ---- diffusion, the default: graph and scores against numpy
    gald = os.path.join(d, 'gallery-diff.safetensors')
    jsd = os.path.join(d, 'eval-diff.json')
    out, err = run_ok('cbir-eval', ['--model', model, '--json', jsd,
                                    '--save-gallery', gald] + split + FAST)
    md = load_json(jsd).get('methods', [{}])[0]
    check(md.get('name') == model_name + ' +diff5' and
          md.get('rerank') == 'diffusion' and md.get('graph_k') == 5,
          'default row %r' % {k: md.get(k) for k in ('name', 'rerank',
                                                     'graph_k')})
    dmeta, dt = read_safetensors(gald)
    check(dmeta.get('graph') == 'k=5,power=3,rule=auto',
          'graph metadata %r' % dmeta.get('graph'))
    if np is None:
        skip_numeric('diffusion against numpy')
    else:
        # the graph, built here from cbir-encode's codes
        x = gcodes / np.linalg.norm(gcodes, axis=1, keepdims=True)
        cos = x @ x.T
        n, k = len(x), 5
        knn = []
        for i in range(n):
            order = sorted((j for j in range(n) if j != i),
                           key=lambda j: (-cos[i, j], j))
            knn.append(set(order[:k]))
        W = np.zeros((n, n))
        for i in range(n):
            for j in knn[i]:
                if i in knn[j] and cos[i, j] > 0:
                    W[i, j] = cos[i, j] ** 3
        deg = W.sum(1)
        inv = np.where(deg > 0, 1 / np.sqrt(np.where(deg > 0, deg, 1)), 0)
        S = W * inv[:, None] * inv[None, :]
        off = tensor_array(dt['graph_offsets'])
        nb = tensor_array(dt['graph_neighbours'])
        wt = tensor_array(dt['graph_weights'])
        Sf = np.zeros((n, n))
        for i in range(n):
            Sf[i, nb[off[i]:off[i + 1]]] = wt[off[i]:off[i + 1]]
        check(np.array_equal(Sf > 0, S > 0),
              'graph edges differ from numpy\'s mutual %d-NN graph' % k)
        check(np.allclose(Sf, S, atol=1e-6),
              'graph weights differ from numpy\'s by %g' %
              np.abs(Sf - S).max())
        raw = open(gald, 'rb').read()
        hl = int.from_bytes(raw[:8], 'little')
        import json as _json
        hdr = _json.loads(raw[8:8 + hl])
        crc = 0
        for name in ('graph_offsets', 'graph_neighbours', 'graph_weights'):
            b, e = hdr[name]['data_offsets']
            crc = zlib.crc32(raw[8 + hl + b:8 + hl + e], crc)
        check(dmeta.get('graph_crc32') == '%08x' % crc,
              'graph_crc32 %r, computed %08x' % (dmeta.get('graph_crc32'),
                                                  crc))

        # the query's seeds: its 10 nearest items, weight cos^3
        qx = qcodes / np.linalg.norm(qcodes, axis=1, keepdims=True)
        def seeds(i):
            dq = ((qcodes[i] - gcodes) ** 2).sum(1)
            near = sorted(range(n), key=lambda j: (dq[j], j))[:10]
            y = np.zeros(n)
            for j in near:
                c = qx[i] @ x[j]
                if c > 0:
                    y[j] = c ** 3
            return y, near

        A = np.eye(n) - 0.99 * S
        # a converged solve against the dense solution
        dump = os.path.join(d, 'dump.safetensors')
        run_ok('cbir-eval', ['--model', model, '--gallery-file', gald,
                             '--queries', q_img, '--query-labels', q_lab,
                             '--quiet', '--dump', dump,
                             '--diffusion-iterations', 2000,
                             '--diffusion-keep-first', 0] + FAST)
        dd = tensor_array(read_safetensors(dump)[1]['distances']).reshape(-1, n)
        worst = 0.0
        for i in range(len(qcodes)):
            y, _ = seeds(i)
            f = np.linalg.solve(A, y)
            got = np.where(dd[i] < 0, -dd[i], 0.0)
            worst = max(worst, np.abs(got - np.where(f > 0, f, 0)).max() /
                        f.max())
        check(worst < 1e-4, 'converged diffusion differs from numpy\'s '
              'dense solve by %g (relative to the largest score)' % worst)

        # the default: 20 conjugate-gradient steps, the nearest item first
        run_ok('cbir-eval', ['--model', model, '--gallery-file', gald,
                             '--queries', q_img, '--query-labels', q_lab,
                             '--quiet', '--dump', dump] + FAST)
        dd = tensor_array(read_safetensors(dump)[1]['distances']).reshape(-1, n)
        worst = 0.0
        first_ok = True
        for i in range(len(qcodes)):
            y, near = seeds(i)
            f, r = np.zeros(n), y.copy()
            p, rr = r.copy(), r @ r
            for _ in range(20):
                ap = A @ p
                a = rr / (p @ ap)
                f += a * p
                r -= a * ap
                rr, rr_old = r @ r, rr
                p = r + rr / rr_old * p
            first_ok &= int(np.argmin(dd[i])) == near[0]
            f[near[0]] = 0
            got = np.where(dd[i] < 0, -dd[i], 0.0)
            got[near[0]] = 0
            worst = max(worst, np.abs(got - np.where(f > 0, f, 0)).max() /
                        f.max())
        check(first_ok, 'the first hit is not the plain nearest item')
        check(worst < 1e-3, '20-step diffusion differs from numpy\'s '
              'conjugate gradients by %g' % worst)

    # ---- flags
    for args, msg in ((['--rerank', 'sideways'], 'unknown --rerank'),
                      (['--rerank', 'qe'], '--rerank qe needs --qe'),
                      (['--qe', 3, '--rerank', 'diffusion'], '--qe is query'),
                      (['--no-graph', '--rerank', 'diffusion'], 'needs the gallery'),
                      (['--graph-k', 5000], '--graph-k must be'),
                      (['--diffusion-alpha', 1], 'diffusion alpha'),
                      (['--diffusion-keep-first', 11], 'keep-first')):
        rc, _, err = run('cbir-eval', ['--model', model, '--quiet'] + split +
                         FAST + args)
        check(rc != 0 and msg in err, '%s: rc %d, %r' % (args, rc, err))
    out, _ = run_ok('cbir-eval', ['--model', model, '--quiet', '--no-graph'] +
                    split + FAST)
    check(model_name in parse_table(out), '--no-graph row %r' %
          list(parse_table(out)))
    out, _ = run_ok('cbir-eval', ['--model', model, '--quiet', '--qe', 3] +
                    split + FAST)
    check(model_name + ' +qe3' in parse_table(out), '--qe row %r' %
          list(parse_table(out)))

finish()

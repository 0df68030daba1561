"""Shared helpers for the end-to-end tests of the command-line tools.

The tests run the built tools (CBIR_TOOLS_DIR, set by tests/tools/meson.build)
on the committed fixture (CBIR_TEST_DATA) and on files derived from it in a
temporary directory. Readers for IDX, safetensors (by hand: 8-byte little-
endian header length + JSON header + raw tensors) and PNG (signature, chunk
CRCs, IHDR, inflated IDAT size) use only the standard library; numpy, when
available, only for the numeric checks.
"""

import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

try:
    import numpy as np
except ImportError:  # numeric checks are skipped with a message
    np = None

TOOLS = os.environ.get('CBIR_TOOLS_DIR')
DATA = os.environ.get('CBIR_TEST_DATA')
if not TOOLS or not DATA:
    sys.exit('CBIR_TOOLS_DIR and CBIR_TEST_DATA must be set '
             '(run with: meson test --suite tools)')

FIX_IMAGES = os.path.join(DATA, 'mnist-64-images.idx3-ubyte.gz')
FIX_LABELS = os.path.join(DATA, 'mnist-64-labels.idx1-ubyte.gz')
TIMEOUT = 60

_failures = []
_checks = 0


def check(cond, what):
    """Records a check; prints failures (the test goes on, fails at the end)."""
    global _checks
    _checks += 1
    if not cond:
        _failures.append(what)
        print('FAIL: ' + what, flush=True)
    return bool(cond)


def finish():
    if _failures:
        print('%d of %d checks failed' % (len(_failures), _checks))
        sys.exit(1)
    print('all %d checks passed' % _checks)
    sys.exit(0)


def skip_numeric(what):
    print('SKIP (no numpy in %s): %s' % (sys.executable, what))


def tool(name):
    return os.path.join(TOOLS, name)


def run(name, args, cwd=None):
    """Runs a tool; returns (rc, stdout, stderr) (text)."""
    p = subprocess.run([tool(name)] + [str(a) for a in args], cwd=cwd,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=TIMEOUT)
    return (p.returncode, p.stdout.decode('utf-8', 'replace'),
            p.stderr.decode('utf-8', 'replace'))


def run_ok(name, args, cwd=None):
    rc, out, err = run(name, args, cwd)
    check(rc == 0, '%s %s: exit %d, stderr: %s' %
          (name, ' '.join(map(str, args)), rc, err.strip()))
    return out, err


def listing(d):
    """All files under d (relative paths), for 'nothing written' checks."""
    out = set()
    for root, _dirs, files in os.walk(d):
        for f in files:
            out.add(os.path.relpath(os.path.join(root, f), d))
    return out


def expect_error(name, args, watch_dir, names=(), what=None, cwd=None):
    """The tool must fail: non-zero exit, exactly one line on stderr starting
    with '<name>: ' that contains every string in names, and no file added
    to (or removed from) watch_dir."""
    what = what or ' '.join(map(str, args))
    before = listing(watch_dir)
    rc, out, err = run(name, args, cwd)
    lines = err.splitlines()
    label = '%s [%s]' % (name, what)
    check(rc != 0, '%s: exit status 0, expected an error' % label)
    check(len(lines) == 1, '%s: %d stderr lines, expected 1: %r' %
          (label, len(lines), err))
    if lines:
        check(lines[0].startswith(name + ': '),
              '%s: stderr does not start with "%s: ": %r' %
              (label, name, lines[0]))
    for n in names:
        check(n in err, '%s: error does not name %r: %r' % (label, n, err))
    after = listing(watch_dir)
    check(after == before, '%s: files changed in %s: added %s, removed %s' %
          (label, watch_dir, sorted(after - before), sorted(before - after)))
    return err


def read_maybe_gz(path):
    with open(path, 'rb') as f:
        data = f.read()
    if data[:2] == b'\x1f\x8b':
        data = gzip.decompress(data)
    return data


def read_idx(path):
    """Returns (dims, payload bytes) of an unsigned-byte IDX file."""
    data = read_maybe_gz(path)
    zero, dtype, rank = struct.unpack('>HBB', data[:4])
    assert zero == 0 and dtype == 0x08, path
    dims = struct.unpack('>%dI' % rank, data[4:4 + 4 * rank])
    payload = data[4 + 4 * rank:]
    n = 1
    for d in dims:
        n *= d
    assert len(payload) == n, path
    return list(dims), payload


def write_idx(path, dims, payload):
    head = struct.pack('>HBB', 0, 0x08, len(dims))
    head += struct.pack('>%dI' % len(dims), *dims)
    with open(path, 'wb') as f:
        f.write(head + bytes(payload))


def fixture():
    """(images as bytes of 64*784, labels as bytes of 64)."""
    idims, images = read_idx(FIX_IMAGES)
    ldims, labels = read_idx(FIX_LABELS)
    assert idims == [64, 28, 28] and ldims == [64]
    return images, labels


_ST_DTYPES = {'F32': ('<f4', 4), 'F64': ('<f8', 8), 'I32': ('<i4', 4),
              'U8': ('u1', 1), 'I64': ('<i8', 8)}


def read_safetensors(path):
    """Returns (metadata dict, {name: (dtype, shape, raw bytes)}), checking
    the layout: header length, JSON, offsets in order, inside the file."""
    with open(path, 'rb') as f:
        data = f.read()
    (hlen,) = struct.unpack('<Q', data[:8])
    assert 8 + hlen <= len(data), '%s: header past the end' % path
    header = json.loads(data[8:8 + hlen].decode('utf-8'))
    meta = header.pop('__metadata__', {})
    body = data[8 + hlen:]
    tensors = {}
    for name, t in header.items():
        b, e = t['data_offsets']
        count = 1
        for d in t['shape']:
            count *= d
        assert 0 <= b <= e <= len(body), '%s: %s outside the data' % (path,
                                                                      name)
        assert e - b == count * _ST_DTYPES[t['dtype']][1], \
            '%s: %s size does not match its shape' % (path, name)
        tensors[name] = (t['dtype'], list(t['shape']), body[b:e])
    return meta, tensors


def tensor_array(t):
    """numpy array of a read_safetensors tensor (needs numpy)."""
    dtype, shape, raw = t
    return np.frombuffer(raw, dtype=_ST_DTYPES[dtype][0]).reshape(shape)


def check_png(path, min_side=16, max_side=8192):
    """Checks a PNG fully (signature, chunk CRCs, IHDR, IEND, inflated IDAT
    size); returns (width, height) or None."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        check(False, '%s: %s' % (path, e))
        return None
    if not check(data[:8] == b'\x89PNG\r\n\x1a\n', '%s: no PNG signature' %
                 path):
        return None
    pos, chunks, idat = 8, [], b''
    ihdr = None
    while pos + 12 <= len(data):
        (length,) = struct.unpack('>I', data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack('>I', data[pos + 8 + length:pos + 12 + length])
        if not check(zlib.crc32(ctype + body) == crc and len(body) == length,
                     '%s: bad chunk %r' % (path, ctype)):
            return None
        chunks.append(ctype)
        if ctype == b'IHDR':
            ihdr = struct.unpack('>IIBBBBB', body)
        elif ctype == b'IDAT':
            idat += body
        pos += 12 + length
    if not check(chunks and chunks[0] == b'IHDR' and chunks[-1] == b'IEND'
                 and pos == len(data), '%s: chunks %r' % (path, chunks)):
        return None
    w, h, depth, ctype, _comp, _filt, interlace = ihdr
    check(min_side <= w <= max_side and min_side <= h <= max_side,
          '%s: size %dx%d not in %d..%d' % (path, w, h, min_side, max_side))
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    if check(channels is not None and interlace == 0,
             '%s: colour type %d, interlace %d' % (path, ctype, interlace)):
        raw = zlib.decompress(idat)
        row = (w * channels * depth + 7) // 8
        check(len(raw) == h * (1 + row), '%s: %d inflated bytes, expected %d'
              % (path, len(raw), h * (1 + row)))
    return (w, h)


def tmpdir():
    return tempfile.TemporaryDirectory(prefix='cbir-tools-test-')


def train(out_dir, name, extra=(), preset='sicara', epochs=1, data=None):
    """Trains a tiny model on the fixture; returns its path."""
    model = os.path.join(out_dir, name + '.safetensors')
    run_ok('cbir-train', ['--data', data or FIX_IMAGES, '--preset', preset,
                          '--out', model, '--epochs', epochs, '--limit', 64,
                          '--batch-size', 16, '--threads', 2, '--quiet']
           + list(extra))
    return model

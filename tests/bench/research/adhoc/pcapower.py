"""PCA power-whitening of saved codes (research): mAP of the first N queries
for code -> L2n(diag(var^-p) V^T (code - mean)) with PCA fitted on the gallery.
usage: pcapower.py GALLERY.safetensors QUERIES.safetensors [N] (galleries from
cbir-eval --save-gallery; features already as the model emits them)."""
import sys, json, struct
import numpy as np

def load(path):
    with open(path, 'rb') as f:
        data = f.read()
    (h,) = struct.unpack('<Q', data[:8])
    hdr = json.loads(data[8:8 + h]); hdr.pop('__metadata__', None)
    body = data[8 + h:]
    def arr(name, dt):
        b, e = hdr[name]['data_offsets']
        return np.frombuffer(body[b:e], dtype=dt).reshape(hdr[name]['shape'])
    return arr('features', '<f4').astype(np.float64), arr('labels', '<i4')

def lrap(q, ql, g, gl):
    aps = []
    for i in range(len(q)):
        d = ((g - q[i]) ** 2).sum(1)
        rel = gl == ql[i]
        # pessimistic ties: rank of a relevant item = number of items with d <= its d
        ds = np.sort(d)
        dr = np.sort(d[rel])
        rank_all = np.searchsorted(ds, dr, side='right')
        rank_rel = np.arange(1, len(dr) + 1)  # ties among relevant: searchsorted right on dr
        rank_rel = np.searchsorted(dr, dr, side='right')
        aps.append((rank_rel / rank_all).mean())
    return float(np.mean(aps))

g, gl = load(sys.argv[1]); q, ql = load(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
q, ql = q[:n], ql[:n]
mu = g.mean(0)
cov = np.cov((g - mu).T)
w, V = np.linalg.eigh(cov)
def l2n(x): return x / np.linalg.norm(x, axis=1, keepdims=True)
print('as emitted', round(lrap(q, ql, g, gl), 4))
for p in (0.1, 0.15, 0.2, 0.25, 0.35):
    t = lambda x: l2n(((x - mu) @ V) * w ** -p)
    print('pca power', p, round(lrap(t(q), ql, t(g), gl), 4))

"""Research helpers: data loading, retrieval metrics, search-side variants.

mAP = full-list label-ranking average precision (sklearn LRAP semantics,
relevance = same label, ties ranked pessimistically).
"""
import gzip
import os
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository root


def read_idx(path):
    op = gzip.open if path.endswith('.gz') else open
    with op(path, 'rb') as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(ds):
    if ds == 'mnist':
        d = os.path.join(ROOT, 'data/mnist')
        gx = read_idx(d + '/gallery-images.idx3-ubyte')
        gy = read_idx(d + '/gallery-labels.idx1-ubyte')
        qx = read_idx(d + '/query-images.idx3-ubyte')
        qy = read_idx(d + '/query-labels.idx1-ubyte')
    else:
        d = '/usr/share/datasets/fashion-mnist'
        gx = read_idx(d + '/train-images-idx3-ubyte.gz')
        gy = read_idx(d + '/train-labels-idx1-ubyte.gz')
        qx = read_idx(d + '/t10k-images-idx3-ubyte.gz')
        qy = read_idx(d + '/t10k-labels-idx1-ubyte.gz')
    f = lambda x: x.astype(np.float32) / 255.0
    return f(gx), gy.astype(np.int64), f(qx), qy.astype(np.int64)


# ---------------------------------------------------------------- distances
def l2_dist(q, g):
    q = torch.as_tensor(q, dtype=torch.float32)
    g = torch.as_tensor(g, dtype=torch.float32)
    d = (q * q).sum(1, keepdim=True) + (g * g).sum(1)[None, :] - 2 * q @ g.T
    return d.clamp_min_(0)


def ham_dist(bq, bg):
    bq = torch.as_tensor(bq, dtype=torch.float32)
    bg = torch.as_tensor(bg, dtype=torch.float32)
    return bq @ (1 - bg).T + (1 - bq) @ bg.T


def evaluate(distfn, q, qy, g, gy, chunk=1000):
    """distfn(qchunk) -> [c, N] distances. Returns mAP, P@1, P@10, P@100."""
    gy_t = torch.as_tensor(gy)
    aps, p1, p10, p100 = [], [], [], []
    for s in range(0, len(q), chunk):
        d = distfn(q[s:s + chunk])
        ql = torch.as_tensor(qy[s:s + chunk])
        sd, order = torch.sort(d, dim=1, stable=True)
        rel = (gy_t[order] == ql[:, None])
        cum = rel.cumsum(1).double()
        n = sd.shape[1]
        # pessimistic ties: index of the last element of each tie group
        idx = torch.arange(n).expand_as(sd)
        boundary = torch.ones_like(sd, dtype=torch.bool)
        boundary[:, :-1] = sd[:, 1:] != sd[:, :-1]
        endidx = torch.where(boundary, idx, torch.full_like(idx, n))
        endidx = torch.flip(torch.cummin(torch.flip(endidx, [1]), 1).values, [1])
        cum_end = torch.gather(cum, 1, endidx)
        prec = cum_end / (endidx + 1).double()
        relf = rel.double()
        aps.append(((prec * relf).sum(1) / relf.sum(1)).numpy())
        p1.append(rel[:, :1].double().mean(1).numpy())
        p10.append(rel[:, :10].double().mean(1).numpy())
        p100.append(rel[:, :100].double().mean(1).numpy())
    c = lambda a: float(np.concatenate(a).mean())
    return dict(mAP=c(aps), P1=c(p1), P10=c(p10), P100=c(p100))


def knn(q, g, k, chunk=2000, exclude_self=False):
    out_i, out_d = [], []
    for s in range(0, len(q), chunk):
        d = l2_dist(q[s:s + chunk], g)
        if exclude_self:
            d[torch.arange(d.shape[0]), torch.arange(s, s + d.shape[0])] = float('inf')
        v, i = torch.topk(d, k, dim=1, largest=False)
        out_i.append(i)
        out_d.append(v)
    return torch.cat(out_d), torch.cat(out_i)


def l2n(x):
    x = torch.as_tensor(x, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def pca_whiten(g, q, dims=None, eps=1e-6):
    g = torch.as_tensor(g, dtype=torch.float64)
    q = torch.as_tensor(q, dtype=torch.float64)
    mu = g.mean(0)
    gc = g - mu
    cov = gc.T @ gc / len(g)
    ev, evec = torch.linalg.eigh(cov)
    ev, evec = ev.flip(0), evec.flip(1)
    if dims:
        ev, evec = ev[:dims], evec[:, :dims]
    W = evec / torch.sqrt(ev + eps * ev[0])
    return (gc @ W).float(), ((q - mu) @ W).float()


def alpha_qe(q, g, k, alpha=3.0):
    """alpha-QE on L2-normalised codes (Radenovic et al.); k neighbours."""
    qn, gn = l2n(q), l2n(g)
    out = []
    for s in range(0, len(qn), 2000):
        sim = qn[s:s + 2000] @ gn.T
        v, i = torch.topk(sim, k, dim=1)
        w = v.clamp_min(0) ** alpha
        out.append(qn[s:s + 2000] + (w[:, :, None] * gn[i]).sum(1))
    return l2n(torch.cat(out))


def dba(g, k, alpha=3.0):
    """Database-side augmentation: each gallery code -> weighted mean of its kNN (incl. itself)."""
    gn = l2n(g)
    out = []
    for s in range(0, len(gn), 2000):
        sim = gn[s:s + 2000] @ gn.T
        v, i = torch.topk(sim, k + 1, dim=1)   # includes itself
        w = v.clamp_min(0) ** alpha
        out.append((w[:, :, None] * gn[i]).sum(1))
    return l2n(torch.cat(out))


def variants(gc, qc, gy, qy, full=True):
    """All search-side variants. Returns dict name -> metrics."""
    gc = torch.as_tensor(gc, dtype=torch.float32)
    qc = torch.as_tensor(qc, dtype=torch.float32)
    res = {}
    ev = lambda G, Q: evaluate(lambda qq: l2_dist(qq, G), Q, qy, G, gy)
    res['L2'] = ev(gc, qc)
    if not full:
        return res
    res['cos'] = ev(l2n(gc), l2n(qc))
    gw, qw = pca_whiten(gc, qc)
    res['pcaw'] = ev(gw, qw)
    res['pcaw+l2n'] = ev(l2n(gw), l2n(qw))
    med = gc.median(0).values
    bg, bq = (gc > med).float(), (qc > med).float()
    res['bits>med,ham'] = evaluate(lambda qq: ham_dist(qq, bg), bq, qy, bg, gy)
    # bits of whitened (PCA sign) -- only meaningful when dims are few
    if gc.shape[1] <= 256:
        res['bits pcaw sign,ham'] = evaluate(lambda qq: ham_dist(qq, (gw > 0).float()),
                                             (qw > 0).float(), qy, (gw > 0).float(), gy)
    # query expansion on the best plain space (pcaw+l2n and cos)
    for name, G, Q in (('cos', gc, qc), ('pcaw+l2n', gw, qw)):
        Gn, Qn = l2n(G), l2n(Q)
        res[name + ' +aQE10'] = ev(Gn, alpha_qe(Qn, Gn, 10))
        Gd = dba(Gn, 10)
        res[name + ' +DBA10+aQE10'] = ev(Gd, alpha_qe(Qn, Gd, 10))
    return res

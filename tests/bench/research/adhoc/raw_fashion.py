"""Raw-pixel retrieval variants on Fashion-MNIST (first 2,000 queries, 60k
gallery): intensity normalisations, gamma, blur. The checks behind the
model's input gamma (results.md, session 2).
usage: raw_fashion.py [norm|gamma|blur ...] (default: all)"""
import os, sys
import torch, torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from lib import load, evaluate, l2_dist, l2n  # noqa: E402
torch.set_num_threads(1)
gx, gy, qx, qy = load('fashion')
nq = 2000
qx, qy = qx[:nq], qy[:nq]
G = torch.as_tensor(gx)[:, None]
Q = torch.as_tensor(qx)[:, None]
parts = sys.argv[1:] or ['norm', 'gamma', 'blur']


def ev(name, g, q, cos=True):
    g, q = g.flatten(1), q.flatten(1)
    if cos:
        g, q = l2n(g), l2n(q)
    r = evaluate(lambda qq: l2_dist(qq, g), q, qy, g, gy)
    print(f'{name:24s} {r["mAP"]:.4f} {r["P10"]:.4f}', flush=True)


def gblur(x, s):
    k = torch.arange(-3, 4).float(); k = torch.exp(-k ** 2 / (2 * s * s)); k /= k.sum()
    x = F.conv2d(F.pad(x, (3, 3, 0, 0)), k.view(1, 1, 1, 7))
    return F.conv2d(F.pad(x, (0, 0, 3, 3)), k.view(1, 1, 7, 1))


if 'norm' in parts:
    ev('raw l2', G, Q, cos=False)
    ev('raw cos', G, Q)
    mx = lambda x: x / x.flatten(1).max(1).values.clamp_min(1e-6)[:, None, None, None]
    ev('max-norm l2', mx(G), mx(Q), cos=False)
    z = lambda x: (x - x.mean((1, 2, 3), keepdim=True)) / x.std((1, 2, 3), keepdim=True)
    ev('zscore (=centred cos)', z(G), z(Q))
    ev('silhouette cos', (G > 0.05).float(), (Q > 0.05).float())
if 'gamma' in parts:
    for gm in (0.2, 0.35, 0.5, 0.7):
        ev(f'gamma {gm} cos', G ** gm, Q ** gm)
if 'blur' in parts:
    for s in (1.0, 2.0):
        ev(f'sqrt blur {s} cos', gblur(G.sqrt(), s), gblur(Q.sqrt(), s))
    ev('sqrt avgpool2 cos', F.avg_pool2d(G.sqrt(), 2), F.avg_pool2d(Q.sqrt(), 2))

"""Extra search-side variants on saved codes: python3 reeval.py tag [ds]"""
import sys, os, json, torch, numpy as np
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from lib import *
tag = sys.argv[1]; ds = sys.argv[2] if len(sys.argv) > 2 else 'mnist'
_, gy, _, qy = load(ds)
gc = torch.as_tensor(np.load(f'codes/{tag}.gc.npy')); qc = torch.as_tensor(np.load(f'codes/{tag}.qc.npy'))
ev = lambda G, Q: evaluate(lambda qq: l2_dist(qq, G), Q, qy, G, gy)
out = {}
def pw(g, q, p):
    g = g.double(); q = q.double(); mu = g.mean(0); gc_ = g - mu
    e, V = torch.linalg.eigh(gc_.T @ gc_ / len(g)); W = V / (e.clamp_min(1e-6 * e.max()) ** p)
    return (gc_ @ W).float(), ((q - mu) @ W).float()
for p in (0.25,):
    G, Q = pw(gc, qc, p); out[f'pcaw^{p}'] = ev(G, Q); out[f'pcaw^{p}+l2n'] = ev(l2n(G), l2n(Q))
Gn, Qn = l2n(gc), l2n(qc)
mu = gc.mean(0); out['center+l2n'] = ev(l2n(gc - mu), l2n(qc - mu))
bg, bq = (gc > mu).float(), (qc > mu).float(); out['bits>mean,ham'] = evaluate(lambda qq: ham_dist(qq, bg), bq, qy, bg, gy)
for k in (5, 20):
    out[f'cos +aQE{k}'] = ev(Gn, alpha_qe(Qn, Gn, k))
for k in (5, 20):
    Gd = dba(Gn, k); out[f'cos +DBA{k}'] = ev(Gd, Qn); out[f'cos +DBA{k}+aQE{k}'] = ev(Gd, alpha_qe(Qn, Gd, k))
for k, v in out.items(): print(f'{tag} {k:24s} mAP {v["mAP"]:.4f} P10 {v["P10"]:.4f}')
with open('reeval.jsonl', 'a') as f: f.write(json.dumps(dict(tag=tag, ds=ds, res=out)) + '\n')

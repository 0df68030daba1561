import os, sys, json, torch, numpy as np
torch.set_num_threads(1)
from lib import *
ds = sys.argv[1]; nq = int(sys.argv[2]) if len(sys.argv) > 2 else 0
gx, gy, qx, qy = load(ds)
g = gx.reshape(len(gx), -1); q = qx.reshape(len(qx), -1)
if nq: q, qy = q[:nq], qy[:nq]
res = {}
ev = lambda G, Q: evaluate(lambda qq: l2_dist(qq, G), Q, qy, G, gy)
G, Q = torch.as_tensor(g), torch.as_tensor(q)
res['L2'] = ev(G, Q); Gn, Qn = l2n(G), l2n(Q); res['cos'] = ev(Gn, Qn)
res['cos +aQE10'] = ev(Gn, alpha_qe(Qn, Gn, 10))
Gd = dba(Gn, 10); res['cos +DBA10+aQE10'] = ev(Gd, alpha_qe(Qn, Gd, 10))
for k, v in res.items(): print(f'raw {ds} {k:20s} mAP {v["mAP"]:.4f} P10 {v["P10"]:.4f}')
open('raw.jsonl', 'a').write(json.dumps(dict(ds=ds, nq=nq, res=res)) + '\n')

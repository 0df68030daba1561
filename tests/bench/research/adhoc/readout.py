import json,struct,sys,time,os
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
import engine_weights
from lib import load, evaluate, l2_dist, l2n
torch.set_num_threads(2)
path=sys.argv[1]; ds=sys.argv[2]; nq=int(sys.argv[3])
W=engine_weights.load(path)
def trunk(x): return engine_weights.trunk(W, x)
gx,gy,qx,qy=load(ds)
qx,qy=qx[:nq],qy[:nq]
def feats(X):
    out={}
    with torch.no_grad():
        for s in range(0,len(X),5000):
            x=torch.as_tensor(X[s:s+5000])[:,None]
            a1,a2,p=trunk(x)
            code=p.flatten(1)@W['layers.9.weight'].T+W['layers.9.bias']
            d=dict(code=code, conv=p.flatten(1), conv_avg=F.avg_pool2d(a2,2).flatten(1), gap=p.mean((2,3)),
                   pool3=F.adaptive_avg_pool2d(p,3).flatten(1), l1=a1.flatten(1))
            for k,v in d.items(): out.setdefault(k,[]).append(v)
    return {k:torch.cat(v) for k,v in out.items()}
t=time.time(); G=feats(gx); Q=feats(qx); print('enc',time.time()-t,flush=True)
def ev(name,g,q):
    r=evaluate(lambda qq: l2_dist(qq,g),q,qy,g,gy)
    print(f'{name:28s} mAP {r["mAP"]:.4f} P@10 {r["P10"]:.4f}',flush=True)
for k in ['code','conv','pool3','gap','conv_avg','l1']:
    g,q=G[k],Q[k]
    if k=='code': ev(k+' l2',g,q)
    ev(k+' cos',l2n(g),l2n(q))
    mu=g.mean(0); ev(k+' centred cos',l2n(g-mu),l2n(q-mu))
    if k in ('conv','l1'):
        s=g.sqrt(); ev(k+' sqrt cos',l2n(s),l2n(q.sqrt()))

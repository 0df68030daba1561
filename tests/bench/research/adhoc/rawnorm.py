import sys, torch
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__import__('os').path.abspath(__file__)), '..'))
from lib import load, evaluate, l2_dist, l2n
torch.set_num_threads(1)
gx,gy,qx,qy=load('fashion'); nq=2000
qx,qy=qx[:nq],qy[:nq]
G=torch.as_tensor(gx).flatten(1); Q=torch.as_tensor(qx).flatten(1)
def ev(name,g,q):
    r=evaluate(lambda qq: l2_dist(qq,g),q,qy,g,gy); print(f'{name:20s} {r["mAP"]:.4f} {r["P10"]:.4f}',flush=True)
ev('raw l2',G,Q)
ev('raw cos',l2n(G),l2n(Q))
mx=lambda x: x/x.max(1,keepdim=True).values.clamp_min(1e-6)
ev('max-norm l2',mx(G),mx(Q))
z=lambda x: (x-x.mean(1,keepdim=True))/x.std(1,keepdim=True)
ev('zscore (=centred cos)',l2n(z(G)),l2n(z(Q)))
ev('sqrt cos',l2n(G.sqrt()),l2n(Q.sqrt()))
b=lambda x:(x>0.05).float()
ev('silhouette cos',l2n(b(G)),l2n(b(Q)))

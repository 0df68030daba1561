import sys, torch, torch.nn.functional as F
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__import__('os').path.abspath(__file__)), '..'))
from lib import load, evaluate, l2_dist, l2n
torch.set_num_threads(1)
gx,gy,qx,qy=load('fashion'); nq=2000
qx,qy=qx[:nq],qy[:nq]
G=torch.as_tensor(gx)[:,None]**0.5; Q=torch.as_tensor(qx)[:,None]**0.5
def ev(name,g,q):
    g=g.flatten(1); q=q.flatten(1)
    r=evaluate(lambda qq: l2_dist(qq,l2n(g)),l2n(q),qy,l2n(g),gy); print(f'{name:20s} {r["mAP"]:.4f} {r["P10"]:.4f}',flush=True)
def gblur(x,s):
    k=torch.arange(-3,4).float(); k=torch.exp(-k**2/(2*s*s)); k/=k.sum()
    x=F.conv2d(F.pad(x,(3,3,0,0)),k.view(1,1,1,7)); return F.conv2d(F.pad(x,(0,0,3,3)),k.view(1,1,7,1))
for s in (1.0,2.0):
    ev(f'sqrt blur {s}',gblur(G,s),gblur(Q,s))
ev('sqrt avgpool2',F.avg_pool2d(G,2),F.avg_pool2d(Q,2))

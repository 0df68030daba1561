import sys, torch
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__import__('os').path.abspath(__file__)), '..'))
from lib import load, evaluate, l2_dist, l2n
torch.set_num_threads(1)
gx,gy,qx,qy=load('fashion'); nq=2000
qx,qy=qx[:nq],qy[:nq]
G=torch.as_tensor(gx).flatten(1); Q=torch.as_tensor(qx).flatten(1)
def ev(name,g,q):
    r=evaluate(lambda qq: l2_dist(qq,g),q,qy,g,gy); print(f'{name:20s} {r["mAP"]:.4f} {r["P10"]:.4f}',flush=True)
for gm in [0.2,0.35,0.7]:
    ev(f'gamma {gm} cos',l2n(G**gm),l2n(Q**gm))

import json,struct,sys,time,os
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
import engine_weights
from lib import load, evaluate, l2_dist, l2n
torch.set_num_threads(1)
# usage: readout2.py MODEL mnist|fashion NQUERIES GAMMA [tta]
#   tta: test-time averaging over one-pixel shifts / the mirror image instead
path=sys.argv[1]; ds=sys.argv[2]; nq=int(sys.argv[3]); gamma=float(sys.argv[4])
tta=len(sys.argv)>5 and sys.argv[5]=='tta'
W=engine_weights.load(path)
def enc(x): return engine_weights.code(W, x)
gx,gy,qx,qy=load(ds)
qx,qy=qx[:nq],qy[:nq]
lut=torch.tensor(np.round(255*(np.arange(256)/255)**gamma)/255,dtype=torch.float32)
def codes(X):
    X=lut[torch.as_tensor(np.round(X*255)).long()]
    with torch.no_grad(): return torch.cat([enc(X[s:s+5000][:,None]) for s in range(0,len(X),5000)])
G=codes(gx); Q=codes(qx)
def ev(name,g,q):
    r=evaluate(lambda qq: l2_dist(qq,g),q,qy,g,gy); print(f'{name:28s} mAP {r["mAP"]:.4f} P@10 {r["P10"]:.4f}',flush=True)
if not tta:
    ev('cos',l2n(G),l2n(Q))
    mu=G.mean(0); sd=G.std(0)
    ev('centred cos',l2n(G-mu),l2n(Q-mu))
    ev('standardised cos',l2n((G-mu)/sd),l2n((Q-mu)/sd))
    Gn=l2n(G); Qn=l2n(Q); mu2=Gn.mean(0)
    ev('l2n,centre,l2n',l2n(Gn-mu2),l2n(Qn-mu2))
    C=((G-mu).T@(G-mu))/len(G); e,V=torch.linalg.eigh(C.double()); V=V.float(); e=e.float()
    for p in (0.25,0.15):
        ev(f'pca^{p} cos',l2n((G-mu)@V/e**p),l2n((Q-mu)@V/e**p))
if tta:
    def sh(x,dx,dy):
        p=F.pad(x,(1,1,1,1)); return p[:,:,1+dy:29+dy,1+dx:29+dx]
    def tta_codes(X, shifts, flip=False):
        X=lut[torch.as_tensor(np.round(X*255)).long()][:,None]
        out=[]
        with torch.no_grad():
            for s in range(0,len(X),5000):
                x=X[s:s+5000]; acc=0
                for dx,dy in shifts:
                    acc=acc+l2n(enc(sh(x,dx,dy)))
                    if flip: acc=acc+l2n(enc(sh(x,dx,dy).flip(-1)))
                out.append(acc)
        return torch.cat(out)
    S1=[(0,0)]; S5=[(0,0),(1,0),(-1,0),(0,1),(0,-1)]
    for name,S,fl in (('base',S1,False),('tta5',S5,False),('flip',S1,True)):
        G=tta_codes(gx,S,fl); Q=tta_codes(qx,S,fl)
        ev(name,l2n(G),l2n(Q))
        mu=l2n(G).mean(0); ev(name+' centred',l2n(l2n(G)-mu),l2n(l2n(Q)-mu))

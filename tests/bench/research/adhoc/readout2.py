import json,struct,sys,time,os
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__import__('os').path.abspath(__file__)), '..'))
from lib import load, evaluate, l2_dist, l2n
torch.set_num_threads(1)
path=sys.argv[1]; ds=sys.argv[2]; nq=int(sys.argv[3]); gamma=float(sys.argv[4])
f=open(path,'rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); base=8+n
raw=open(path,'rb').read()
W={}
for k,v in h.items():
    if k=='__metadata__': continue
    a,b=v['data_offsets']; W[k]=torch.from_numpy(np.frombuffer(raw[base+a:base+b],dtype=np.float32).reshape(v['shape']).copy())
def bn(x,i): return F.batch_norm(x,W[f'layers.{i}.running_mean'],W[f'layers.{i}.running_var'],W[f'layers.{i}.weight'],W[f'layers.{i}.bias'],False,0,1e-5)
def enc(x):
    x=F.max_pool2d(F.relu(bn(F.conv2d(x,W['layers.0.weight'],W['layers.0.bias'],padding=1),1)),2)
    x=F.max_pool2d(F.relu(bn(F.conv2d(x,W['layers.4.weight'],W['layers.4.bias'],padding=1),5)),2)
    return x.flatten(1)@W['layers.9.weight'].T+W['layers.9.bias']
gx,gy,qx,qy=load(ds)
qx,qy=qx[:nq],qy[:nq]
lut=torch.tensor(np.round(255*(np.arange(256)/255)**gamma)/255,dtype=torch.float32)
def codes(X):
    X=lut[torch.as_tensor(np.round(X*255)).long()]
    with torch.no_grad(): return torch.cat([enc(X[s:s+5000][:,None]) for s in range(0,len(X),5000)])
G=codes(gx); Q=codes(qx)
def ev(name,g,q):
    r=evaluate(lambda qq: l2_dist(qq,g),q,qy,g,gy); print(f'{name:28s} mAP {r["mAP"]:.4f} P@10 {r["P10"]:.4f}',flush=True)
ev('cos',l2n(G),l2n(Q))
mu=G.mean(0); sd=G.std(0)
ev('centred cos',l2n(G-mu),l2n(Q-mu))
ev('standardised cos',l2n((G-mu)/sd),l2n((Q-mu)/sd))
Gn=l2n(G); Qn=l2n(Q); mu2=Gn.mean(0)
ev('l2n,centre,l2n',l2n(Gn-mu2),l2n(Qn-mu2))
C=((G-mu).T@(G-mu))/len(G); e,V=torch.linalg.eigh(C.double()); V=V.float(); e=e.float()
for p in (0.25,0.15):
    ev(f'pca^{p} cos',l2n((G-mu)@V/e**p),l2n((Q-mu)@V/e**p))

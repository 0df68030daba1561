import json,struct,sys
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
def sh(x,dx,dy):
    p=F.pad(x,(1,1,1,1)); return p[:,:,1+dy:29+dy,1+dx:29+dx]
def codes(X, shifts, flip=False):
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
def ev(name,g,q):
    r=evaluate(lambda qq: l2_dist(qq,g),q,qy,g,gy); print(f'{name:28s} mAP {r["mAP"]:.4f} P@10 {r["P10"]:.4f}',flush=True)
S1=[(0,0)]; S5=[(0,0),(1,0),(-1,0),(0,1),(0,-1)]
for name,S,fl in (('base',S1,False),('tta5',S5,False),('flip',S1,True)):
    G=codes(gx,S,fl); Q=codes(qx,S,fl)
    ev(name,l2n(G),l2n(Q))
    mu=l2n(G).mean(0); ev(name+' centred',l2n(l2n(G)-mu),l2n(l2n(Q)-mu))

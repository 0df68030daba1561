"""Convolutional denoising autoencoder prototype restricted to the C engine's ops.

usage: dae.py --ds mnist --arch dense --code 64 --width 32,64 --noise gauss:0.3 --shift 2 ...
Appends a JSON line to research/runs.jsonl.
"""
import argparse, json, math, os, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import load, variants, l2_dist, evaluate


class SameConv(nn.Module):
    """Keras/TF 'same' conv (asymmetric pad for stride 2) or 'valid'."""
    def __init__(self, cin, cout, k=3, stride=1, pad='same'):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.k, self.s, self.pad = k, stride, pad

    def forward(self, x):
        if self.pad == 'same':
            h = x.shape[-1]
            out = math.ceil(h / self.s)
            tot = max((out - 1) * self.s + self.k - h, 0)
            x = F.pad(x, (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2))
        return self.conv(x)


def act(name):
    return {'relu': nn.ReLU(), 'lrelu': nn.LeakyReLU(0.2)}[name]


def block(cin, cout, a, bn, stride=1):
    L = [SameConv(cin, cout, 3, stride)]
    if bn:
        L.append(nn.BatchNorm2d(cout))
    L.append(act(a))
    return L


class DAE(nn.Module):
    def __init__(self, arch, widths, code, a='relu', bn=False, code_act='linear'):
        super().__init__()
        w1, w2 = widths[0], widths[1]
        enc, dec = [], []
        if arch in ('mp', 'mpdense'):          # conv-maxpool (Keras blog style)
            enc += block(1, w1, a, bn) + [nn.MaxPool2d(2)] + block(w1, w2, a, bn) + [nn.MaxPool2d(2)]
        elif arch in ('s2', 's2dense'):        # strided convs (pyimagesearch style)
            enc += block(1, w1, a, bn, 2) + block(w1, w2, a, bn, 2)
        elif arch in ('mp3dense',):            # conv-conv-mp x2 (deeper)
            enc += block(1, w1, a, bn) + block(w1, w1, a, bn) + [nn.MaxPool2d(2)] \
                + block(w1, w2, a, bn) + block(w2, w2, a, bn) + [nn.MaxPool2d(2)]
        self.dense = arch.endswith('dense')
        if self.dense:
            enc += [nn.Flatten(), nn.Linear(7 * 7 * w2, code)]
            if code_act == 'sigmoid':
                enc.append(nn.Sigmoid())
            dec += [nn.Linear(code, 7 * 7 * w2), nn.ReLU(), nn.Unflatten(1, (w2, 7, 7))]
        if arch.startswith('s2'):
            dec += [nn.ConvTranspose2d(w2, w2, 3, 2, 1, 1)] + ([nn.BatchNorm2d(w2)] if bn else []) + [act(a)]
            dec += [nn.ConvTranspose2d(w2, w1, 3, 2, 1, 1)] + ([nn.BatchNorm2d(w1)] if bn else []) + [act(a)]
            dec += [SameConv(w1, 1, 3), nn.Sigmoid()]
        else:
            dec += block(w2, w2, a, bn) + [nn.Upsample(scale_factor=2, mode='nearest')]
            dec += block(w2, w1, a, bn) + [nn.Upsample(scale_factor=2, mode='nearest')]
            dec += [SameConv(w1, 1, 3), nn.Sigmoid()]
        self.enc = nn.Sequential(*enc)
        self.dec = nn.Sequential(*dec)

    def forward(self, x):
        return self.dec(self.enc(x))


def shift_batch(x, maxs):
    """Random integer translation in [-maxs, maxs] per image, zero fill."""
    n = x.shape[0]
    p = F.pad(x, (maxs, maxs, maxs, maxs))
    dx = torch.randint(0, 2 * maxs + 1, (n,))
    dy = torch.randint(0, 2 * maxs + 1, (n,))
    out = torch.empty_like(x)
    for i in range(n):  # cheap enough at 28x28
        out[i] = p[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return out


def corrupt(x, spec, shift, erase):
    if shift:
        x = shift_batch(x, shift)
    if erase:  # random erase one square of side `erase` per image (set to 0)
        n = x.shape[0]
        ys = torch.randint(0, 28 - erase + 1, (n,))
        xs = torch.randint(0, 28 - erase + 1, (n,))
        x = x.clone()
        for i in range(n):
            x[i, :, ys[i]:ys[i] + erase, xs[i]:xs[i] + erase] = 0
    for part in spec.split('+'):
        if part in ('none', ''):
            continue
        kind, lvl = part.split(':')
        lvl = float(lvl)
        if kind == 'gauss':
            x = (x + lvl * torch.randn_like(x)).clamp(0, 1)
        elif kind == 'sp':
            r = torch.rand_like(x)
            x = x.clone()
            x[r < lvl / 2] = 0
            x[r > 1 - lvl / 2] = 1
        elif kind == 'mask':   # pixel dropout
            x = x * (torch.rand_like(x) >= lvl)
    return x


def encode(model, x, bs=1000):
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), bs):
            out.append(model.enc(torch.as_tensor(x[s:s + bs])[:, None]).flatten(1))
    return torch.cat(out).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--ds', default='mnist')
    ap.add_argument('--arch', default='mpdense')
    ap.add_argument('--width', default='32,64')
    ap.add_argument('--code', type=int, default=64)
    ap.add_argument('--act', default='relu')
    ap.add_argument('--code-act', default='linear')
    ap.add_argument('--bn', type=int, default=0)
    ap.add_argument('--loss', default='bce')
    ap.add_argument('--opt', default='adam')
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--bs', type=int, default=128)
    ap.add_argument('--epochs', type=int, default=20)
    ap.add_argument('--noise', default='gauss:0.3')
    ap.add_argument('--shift', type=int, default=0)
    ap.add_argument('--erase', type=int, default=0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--full', type=int, default=1)
    ap.add_argument('--qsub', type=int, default=0)
    ap.add_argument('--evalevery', type=int, default=0)
    ap.add_argument('--tag', default='')
    ap.add_argument('--save', default='')
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    gx, gy, qx, qy = load(a.ds)
    model = DAE(a.arch, [int(v) for v in a.width.split(',')], a.code, a.act, bool(a.bn), a.code_act)
    if a.opt == 'adam':
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    elif a.opt == 'adadelta':
        opt = torch.optim.Adadelta(model.parameters(), lr=a.lr, rho=0.95)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    X = torch.as_tensor(gx)[:, None]
    t0 = time.time()
    hist = []
    for ep in range(a.epochs):
        model.train()
        perm = torch.randperm(len(X))
        tot = 0.0
        for s in range(0, len(X), a.bs):
            clean = X[perm[s:s + a.bs]]
            noisy = corrupt(clean, a.noise, a.shift, a.erase)
            rec = model(noisy)
            if a.loss == 'bce':
                loss = F.binary_cross_entropy(rec, clean)
            else:
                loss = F.mse_loss(rec, clean)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(clean)
        line = f'ep {ep + 1} loss {tot / len(X):.4f} t {time.time() - t0:.0f}s'
        if a.evalevery and (ep + 1) % a.evalevery == 0 and ep + 1 < a.epochs:
            gc, qc = encode(model, gx), encode(model, qx)
            line += ' mAP %.4f' % evaluate(lambda qq: l2_dist(qq, gc), qc, qy, gc, gy)['mAP']
            hist.append((ep + 1, line))
        print(line, flush=True)
    ttrain = time.time() - t0
    model.eval()
    with torch.no_grad():
        xs = torch.as_tensor(qx[:1000])[:, None]
        rec = model(xs)
        mse = F.mse_loss(rec, xs).item()
        zero = (xs ** 2).mean().item()
    gc, qc = encode(model, gx), encode(model, qx)
    # encode speed at batch 1 (encoder only)
    with torch.no_grad():
        x1 = torch.as_tensor(qx[:200])[:, None]
        t = time.time()
        for i in range(200):
            model.enc(x1[i:i + 1])
        us1 = (time.time() - t) / 200 * 1e6
    if a.qsub and a.qsub < len(qc):
        res = {'L2 all queries': evaluate(lambda qq: l2_dist(qq, gc), qc, qy, gc, gy)}
        res.update(variants(gc, qc[:a.qsub], gy, qy[:a.qsub], full=bool(a.full)))
    else:
        res = variants(gc, qc, gy, qy, full=bool(a.full))
    out = dict(args=vars(a), train_s=round(ttrain, 1), epochs=a.epochs, dim=int(gc.shape[1]),
               test_mse=mse, zero_mse=zero, enc_us_b1=round(us1, 1), hist=hist, res=res)
    print(json.dumps(out))
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'runs.jsonl'), 'a') as f:
        f.write(json.dumps(out) + '\n')
    cd = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'codes')
    os.makedirs(cd, exist_ok=True)
    np.save(os.path.join(cd, a.tag + '.gc.npy'), gc)
    np.save(os.path.join(cd, a.tag + '.qc.npy'), qc)
    torch.save(model.state_dict(), os.path.join(cd, a.tag + '.pt'))


if __name__ == '__main__':
    main()

"""Writes Fashion-MNIST with square-root-compressed intensities (and, with
--blur, a Gaussian sigma-1 blur after it) as raw IDX files under
out/research/data-fsqrt[blur]/ for engine-curve.sh's fsqrt/fsqrtblur sets
(the experiment that preceded the model's "gamma" normalisation)."""
import gzip, os, sys
import numpy as np, torch, torch.nn.functional as F
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '../../../..'))
blur = '--blur' in sys.argv
src = os.path.join(ROOT, 'data/fashion')
dst = os.path.join(ROOT, 'out/research/data-fsqrt' + ('blur' if blur else ''))
os.makedirs(dst, exist_ok=True)
k = torch.arange(-3, 4).float(); k = torch.exp(-k ** 2 / 2); k /= k.sum()
for n in ['train-images-idx3-ubyte.gz', 't10k-images-idx3-ubyte.gz']:
    d = gzip.open(f'{src}/{n}').read()
    a = torch.tensor(np.frombuffer(d, np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32)) / 255
    x = a.sqrt()
    if blur:
        x = F.conv2d(F.pad(x, (3, 3, 0, 0)), k.view(1, 1, 1, 7))
        x = F.conv2d(F.pad(x, (0, 0, 3, 3)), k.view(1, 1, 7, 1))
    b = (x * 255).round().clamp(0, 255).byte().numpy()
    open(f'{dst}/{n[:-3]}', 'wb').write(d[:16] + b.tobytes())
for n in ['train-labels-idx1-ubyte.gz', 't10k-labels-idx1-ubyte.gz']:
    if not os.path.exists(f'{dst}/{n}'):
        os.symlink(f'{src}/{n}', f'{dst}/{n}')

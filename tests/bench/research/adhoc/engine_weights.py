"""Loads a gst-cbir model file (safetensors, PyTorch layout) into torch
tensors and runs the encoder of the previous default's architecture
(Conv16-BN-ReLU-MP-Conv32-BN-ReLU-MP-Dense32) in eval mode."""
import json, os, struct, sys
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))


def load(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    W = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        a, b = v['data_offsets']
        W[k] = torch.from_numpy(np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32)
                                .reshape(v['shape']).copy())
    return W


def bn(W, x, i):
    return F.batch_norm(x, W[f'layers.{i}.running_mean'], W[f'layers.{i}.running_var'],
                        W[f'layers.{i}.weight'], W[f'layers.{i}.bias'], False, 0, 1e-5)


def trunk(W, x):
    """(first pooled map, second conv map before pooling, second pooled map)"""
    x = F.max_pool2d(F.relu(bn(W, F.conv2d(x, W['layers.0.weight'], W['layers.0.bias'], padding=1), 1)), 2)
    x2 = F.relu(bn(W, F.conv2d(x, W['layers.4.weight'], W['layers.4.bias'], padding=1), 5))
    return x, x2, F.max_pool2d(x2, 2)


def code(W, x):
    return trunk(W, x)[2].flatten(1) @ W['layers.9.weight'].T + W['layers.9.bias']

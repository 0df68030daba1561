import time, numpy as np, torch
torch.set_num_threads(2)
from lib import *
from sklearn.metrics import label_ranking_average_precision_score as lrap
gx, gy, qx, qy = load('mnist')
g, q = gx.reshape(len(gx), -1), qx.reshape(len(qx), -1)
t = time.time(); r = evaluate(lambda qq: l2_dist(qq, g), q, qy, g, gy); print('raw', r, time.time() - t)
# sklearn cross-check on 100 queries, float and hamming (ties)
d = l2_dist(q[:100], g).numpy(); Y = (qy[:100, None] == gy[None, :])
print('sk float', lrap(Y, -d), evaluate(lambda qq: l2_dist(qq, g), q[:100], qy[:100], g, gy)['mAP'])
b = (g > 0.5).astype(np.float32); bq = (q[:100] > 0.5).astype(np.float32)
dh = ham_dist(bq, b).numpy()
print('sk ham', lrap(Y, -dh), evaluate(lambda qq: ham_dist(qq, b), bq, qy[:100], b, gy)['mAP'])

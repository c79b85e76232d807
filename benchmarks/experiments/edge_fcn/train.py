"""Train EdgeNet on BSDS train with handcrafted input channels. Usage: python train.py OUT_NAME MINUTES [rgbonly]"""

import math
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
cv2.setNumThreads(1)
sys.path.insert(0, ".")
from feats import NFEAT, EdgeNet, features

from subobject_vlm.data import load_bsds
from subobject_vlm.image_utils import load_image

name, minutes = sys.argv[1], float(sys.argv[2])
rgbonly = len(sys.argv) > 3 and sys.argv[3] == "rgbonly"
torch.manual_seed(0)
rng = np.random.default_rng(0)
t0 = time.time()
X, Y = [], []
k = np.ones((3, 3), np.uint8)
for s in load_bsds(split="train"):
    img = load_image(s.image_path)
    f = features(img)
    if rgbonly:
        f = f[:3]
    X.append(f.astype(np.float16))
    y = np.mean([cv2.dilate(b.astype(np.uint8), k) for b in s.boundaries], 0).astype(np.float32)
    Y.append(y)
print(f"precompute {time.time() - t0:.1f}s", flush=True)
cin = 3 if rgbonly else NFEAT
model = EdgeNet(cin=cin, use_classical=not rgbonly)
print("params", sum(p.numel() for p in model.parameters()), flush=True)
opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
B = 4
budget = minutes * 60
tstart = time.time()
step = 0
log = []
ema = None


def sample_batch():
    cs = int(rng.integers(256, 321)) // 8 * 8
    xs, ys = [], []
    for _ in range(B):
        i = int(rng.integers(len(X)))
        x, y = X[i], Y[i]
        H, W = y.shape
        c = min(cs, H, W)
        r0 = int(rng.integers(H - c + 1))
        c0 = int(rng.integers(W - c + 1))
        x = x[:, r0 : r0 + c, c0 : c0 + c].astype(np.float32)
        y = y[r0 : r0 + c, c0 : c0 + c]
        flips = 0
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
            y = y[:, ::-1]
            flips += 1
        if rng.random() < 0.5:
            x = x[:, ::-1, :]
            y = y[::-1, :]
            flips += 1
        x = np.ascontiguousarray(x)
        if flips % 2 and not rgbonly:
            for ch in (7, 11, 15):
                x[ch] = -x[ch]  # 2*jxy orientation channel changes sign under a single flip
        xs.append(x)
        ys.append(np.ascontiguousarray(y))
    c = min(a.shape[-1] for a in ys)
    c2 = min(a.shape[-2] for a in ys)
    return torch.from_numpy(np.stack([a[:, :c2, :c] for a in xs])), torch.from_numpy(
        np.stack([a[:c2, :c] for a in ys])
    )[:, None]


def loss_fn(logit, y):
    pos = (y >= 0.3).float()
    neg = (y == 0).float()
    npos, nneg = pos.sum(), neg.sum()
    w = pos * nneg / (npos + nneg) + neg * 1.1 * npos / (npos + nneg)
    return F.binary_cross_entropy_with_logits(logit, pos, weight=w, reduction="sum") / B


while time.time() - tstart < budget:
    frac = (time.time() - tstart) / budget
    lr = 2e-3 * (min(1.0, step / 100)) * 0.5 * (1 + math.cos(math.pi * frac))
    for g in opt.param_groups:
        g["lr"] = lr
    x, y = sample_batch()
    fused, sides = model(x)
    loss = loss_fn(fused, y) + sum(loss_fn(s, y) for s in sides) * 0.5
    opt.zero_grad()
    loss.backward()
    opt.step()
    step += 1
    l = float(loss) / 1000
    ema = l if ema is None else 0.98 * ema + 0.02 * l
    if step % 50 == 0 or step == 1:
        log.append((step, round(time.time() - tstart), l, ema))
        print(
            f"step {step} t={time.time() - tstart:.0f}s loss/1k={l:.3f} ema={ema:.3f} lr={lr:.2e}", flush=True
        )
torch.save(
    {"state": model.state_dict(), "cin": cin, "rgbonly": rgbonly, "steps": step, "log": log}, f"{name}.pt"
)
print("done steps", step, "train s", time.time() - tstart, flush=True)

"""Evaluate boundary maps on BSDS val with the project's eval_bsds. Usage: python evalrun.py WHICH THRESH [ckpt]
WHICH: classical | classical_nms | model | model_nms"""

import json
import sys
import time

import cv2
import numpy as np
import torch

torch.set_num_threads(1)
cv2.setNumThreads(1)
sys.path.insert(0, ".")
from feats import EdgeNet, features, predict

from subobject_vlm.evaluation import eval_bsds
from subobject_vlm.segmentation.gradient import gradient_boundary_probs


def nms(E, r=1, m=1.01):
    """Structured-Edge style non-maximum suppression (orientation from second derivatives of the smoothed map)."""
    Es = cv2.GaussianBlur(E, (0, 0), 2.0)
    Oy, Ox = np.gradient(Es)
    Oxy, Oxx = np.gradient(Ox)
    Oyy, _ = np.gradient(Oy)
    O = np.mod(np.arctan(Oyy * np.sign(-Oxy) / (Oxx + 1e-5)), np.pi)
    H, W = E.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    c, s = np.cos(O).astype(np.float32), np.sin(O).astype(np.float32)
    out = E.copy()
    for d in (-r, r):
        e = cv2.remap(E, xx + d * c, yy + d * s, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out[E * m < e] = 0
    return out


which, thr = sys.argv[1], int(sys.argv[2])
ckpt = sys.argv[3] if len(sys.argv) > 3 else "hc.pt"
times = []
if which.startswith("model"):
    ck = torch.load(ckpt)
    model = EdgeNet(cin=ck["cin"], use_classical=not ck["rgbonly"])
    model.load_state_dict(ck["state"])
    model.eval()
    ff = (lambda im: features(im)[:3]) if ck["rgbonly"] else features

    def base(img):
        t = time.perf_counter()
        p = predict(model, img, ff)
        times.append(time.perf_counter() - t)
        return p
else:

    def base(img):
        t = time.perf_counter()
        p = gradient_boundary_probs(img)
        times.append(time.perf_counter() - t)
        return p


fn = (lambda img: nms(base(img))) if which.endswith("_nms") else base
fn.__name__ = which
t = time.time()
r = eval_bsds(
    split="val",
    budgets=(64,),
    baselines=(),
    out_dir=f"ev_{which}_{thr}_{ckpt.replace('.pt', '')}",
    thresholds=thr,
    boundary_probs_fn=fn,
    workers=1,
    progress=False,
)
b = r["boundary"]
res = dict(
    which=which,
    ckpt=ckpt if which.startswith("model") else None,
    thresholds=thr,
    ODS=b["ODS"]["f"],
    ODS_thr=b["ODS"]["threshold"],
    OIS=b["OIS"]["f"],
    AP=b["AP"],
    R50=b.get("R50"),
    n=b["num_images"],
    probs_s_per_img=float(np.mean(times)),
    eval_s=time.time() - t,
)
print(json.dumps(res), flush=True)
open("results.jsonl", "a").write(json.dumps(res) + "\n")

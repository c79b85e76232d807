"""Cheap handcrafted channels + the small FCN for the edge prototype."""

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from subobject_vlm.segmentation.gradient import gradient_boundary_probs


def features(img):
    """img (H,W,3) uint8 RGB -> (C,H,W) float32."""
    H, W = img.shape[:2]
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    chans = [(img.astype(np.float32) / 255.0 - 0.45) / 0.25]  # 3 RGB
    chans = [c for c in np.moveaxis(chans[0], 2, 0)]
    chans.append(gradient_boundary_probs(img) * 2 - 1)  # classical map
    for s in (1.0, 2.0, 4.0):
        b = cv2.GaussianBlur(lab, (0, 0), s)
        gx = cv2.Sobel(b, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(b, cv2.CV_32F, 0, 1, ksize=3)
        # L channel magnitude and chroma magnitude separately
        mL = np.sqrt(gx[..., 0] ** 2 + gy[..., 0] ** 2) * s
        mC = np.sqrt(gx[..., 1] ** 2 + gy[..., 1] ** 2 + gx[..., 2] ** 2 + gy[..., 2] ** 2) * s
        m = np.sqrt(mL**2 + mC**2)
        ref = max(float(np.percentile(m, 99)), 1e-3)
        chans += [mL / ref, mC / ref]
        # orientation (doubled angle), weighted by structure tensor coherence
        jxx = cv2.GaussianBlur((gx**2).sum(2), (0, 0), s)
        jyy = cv2.GaussianBlur((gy**2).sum(2), (0, 0), s)
        jxy = cv2.GaussianBlur((gx * gy).sum(2), (0, 0), s)
        den = jxx + jyy + 1e-3
        chans += [(jxx - jyy) / den, 2 * jxy / den]
    # DoG on L (blob/texture)
    L = lab[..., 0] / 255.0
    for s in (1.0, 3.0):
        d = cv2.GaussianBlur(L, (0, 0), s) - cv2.GaussianBlur(L, (0, 0), 2 * s)
        chans.append(d * 10)
    # local variance of L (texture energy) at sigma 3
    m1 = cv2.GaussianBlur(L, (0, 0), 3)
    m2 = cv2.GaussianBlur(L * L, (0, 0), 3)
    chans.append(np.sqrt(np.maximum(m2 - m1 * m1, 0)) * 5)
    return np.stack(chans).astype(np.float32)


NFEAT = 3 + 1 + 3 * 4 + 2 + 1  # 19


def cbr(i, o, d=1):
    return nn.Sequential(
        nn.Conv2d(i, o, 3, padding=d, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)
    )


class EdgeNet(nn.Module):
    """Tiny HED/U-Net hybrid: full-res, 1/2, 1/4, 1/8 stages; side outputs fused with the input classical map."""

    def __init__(self, cin=NFEAT, w=(16, 32, 48, 64), use_classical=True):
        super().__init__()
        self.use_classical = use_classical
        self.s1 = nn.Sequential(cbr(cin, w[0]), cbr(w[0], w[0]))
        self.s2 = nn.Sequential(cbr(w[0], w[1]), cbr(w[1], w[1]))
        self.s3 = nn.Sequential(cbr(w[1], w[2]), cbr(w[2], w[2], 2))
        self.s4 = nn.Sequential(cbr(w[2], w[3]), cbr(w[3], w[3], 2), cbr(w[3], w[3], 4))
        self.side = nn.ModuleList([nn.Conv2d(c, 1, 1) for c in w])
        self.fuse = nn.Conv2d(len(w) + (1 if use_classical else 0), 1, 1)

    def forward(self, x):
        H, W = x.shape[-2:]
        f1 = self.s1(x)
        f2 = self.s2(F.max_pool2d(f1, 2))
        f3 = self.s3(F.max_pool2d(f2, 2))
        f4 = self.s4(F.max_pool2d(f3, 2))
        sides = [s(f) for s, f in zip(self.side, (f1, f2, f3, f4))]
        sides = [
            sd
            if sd.shape[-2:] == (H, W)
            else F.interpolate(sd, size=(H, W), mode="bilinear", align_corners=False)
            for sd in sides
        ]
        cat = sides + ([x[:, 3:4]] if self.use_classical else [])
        fused = self.fuse(torch.cat(cat, 1))
        return fused, sides


def predict(model, img, feat_fn=features):
    x = torch.from_numpy(feat_fn(img))[None]
    H, W = x.shape[-2:]
    ph, pw = (-H) % 8, (-W) % 8
    x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    with torch.no_grad():
        out, _ = model(x)
    return torch.sigmoid(out)[0, 0, :H, :W].numpy()

"""Region pooling cost: label-map MaskPooledEmbedding vs the upstream dense-mask + roi_align pipeline.

Workload: 256 regions (a Voronoi partition) of a 1024x1024 label map, a 384-channel 32x32 feature map, R = 8.

* ``ours``: ``MaskPooledEmbedding.region_features`` (content means, boxes and R x R shapes from the label map:
  the projector inputs, without the MLP).
* ``upstream``: as in subobjects-VLM ``model/visual_token_embedding.py``: features bilinearly upsampled to the
  label map size, boxes from dense (N, M, H, W) masks (``torch.where`` over coordinate grids), torchvision
  ``roi_align`` of the upsampled features and of every dense mask, masked average. Its time excludes
  building the dense masks (upstream receives them as input); its memory includes them.

Each method runs in its own subprocess. Peak extra memory = peak RSS during the method minus RSS just
before it (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``). This sees every allocation (torch's CPU allocator included), unlike tracemalloc. Time is
the best of several runs (the machine is shared), with 1 and with 2 torch threads for both methods.

Run: ``python benchmarks/bench_pooling.py`` -> prints a table, writes ``benchmarks/results/pooling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "pooling.json"


def make_inputs(size: int, regions: int, channels: int, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (1, C, g, g) float32 (smooth + noise) and a Voronoi label map (1, S, S) int32 with n labels."""
    generator = torch.Generator().manual_seed(0)
    seeds = torch.rand(regions, 2, generator=generator) * size  # (n, 2) y, x
    coords = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij"), -1).float()
    labels = torch.empty(size * size, dtype=torch.int64)
    flat = coords.view(-1, 2) + 0.5
    for start in range(0, flat.shape[0], 65536):  # nearest seed, in chunks
        labels[start : start + 65536] = torch.cdist(flat[start : start + 65536], seeds).argmin(1)
    labels = torch.unique(labels, return_inverse=True)[1].view(1, size, size).int()
    smooth = torch.randn(1, channels, 8, 8, generator=generator)
    features = torch.nn.functional.interpolate(
        smooth, size=(grid, grid), mode="bilinear", align_corners=False
    )
    features = features + 0.3 * torch.randn(1, channels, grid, grid, generator=generator)
    return features, labels


def ours(features: torch.Tensor, labels: torch.Tensor, resolution: int) -> torch.Tensor:
    from subobject_vlm.embedding import MaskPooledEmbedding

    embedding = MaskPooledEmbedding(features.shape[1], 8, shape_resolution=resolution)
    with torch.no_grad():
        inputs, _ = embedding.region_features(features, labels)
    return inputs[:, : features.shape[1]]  # (n, C) content means


def dense_masks(labels: torch.Tensor) -> torch.Tensor:
    """(1, H, W) label map -> (1, M, H, W) float32 dense masks, as upstream stores its segmentations."""
    num = int(labels.max()) + 1
    return (labels[:, None] == torch.arange(num, dtype=labels.dtype)[None, :, None, None]).float()


def upstream(features: torch.Tensor, masks: torch.Tensor, resolution: int) -> torch.Tensor:
    """The upstream pipeline (same operations as subobjects-VLM VisualTokenEmbedding.forward)."""
    import torch.nn.functional as F
    import torchvision.ops as ops

    batch, _, size, _ = masks.shape
    upsampled = F.interpolate(features, size=(size, size), mode="bilinear")  # (N, C, S, S)
    n, m, h, w = masks.shape
    y_coords = torch.arange(h).view(1, 1, h, 1).expand(n, m, h, w)
    x_coords = torch.arange(w).view(1, 1, 1, w).expand(n, m, h, w)
    present = masks > 0
    big, small = torch.iinfo(torch.int64).max, torch.iinfo(torch.int64).min
    y_min = torch.where(present, y_coords, torch.full_like(y_coords, big)).view(n, m, -1).min(-1).values
    y_max = torch.where(present, y_coords, torch.full_like(y_coords, small)).view(n, m, -1).max(-1).values
    x_min = torch.where(present, x_coords, torch.full_like(x_coords, big)).view(n, m, -1).min(-1).values
    x_max = torch.where(present, x_coords, torch.full_like(x_coords, small)).view(n, m, -1).max(-1).values
    x_max, y_max = torch.clamp(x_max + 1, max=w - 1), torch.clamp(y_max + 1, max=h - 1)
    boxes = [b.float() for b in torch.stack([x_min, y_min, x_max, y_max], -1)]  # N x (M, 4)
    roi_features = ops.roi_align(
        upsampled.float(), boxes, output_size=(resolution, resolution), sampling_ratio=1
    )
    roi_features = roi_features.view(n, m, -1, resolution, resolution)
    flat_masks = masks.reshape(n * m, 1, h, w)
    mask_boxes = torch.cat([torch.arange(n * m).float()[:, None], torch.cat(boxes).float()], 1)  # (N*M, 5)
    roi_masks = ops.roi_align(
        flat_masks, mask_boxes, output_size=resolution, spatial_scale=1.0, sampling_ratio=0, aligned=True
    )
    roi_masks = (roi_masks.reshape(n, m, 1, resolution, resolution) > 0).float()
    pooled = (roi_features * roi_masks).sum((-2, -1)) / roi_masks.sum((-2, -1)).clamp(min=1e-6)
    return pooled[0]  # (M, C)


def _rss_kb() -> int:
    """Current resident set size in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _start_peak_tracking() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) so that it measures from now on."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _peak_kb() -> int:
    """Peak resident set size in KiB since the last reset."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def worker(method: str, args: argparse.Namespace, out: Path) -> None:
    """Run one method in this (fresh) process: peak extra memory of the first call, best time of all calls."""
    torch.set_num_threads(args.threads)
    features, labels = make_inputs(args.size, args.regions, args.channels, args.grid)
    ours(
        features[..., :2, :2], labels[:, :8, :8] * 0, args.resolution
    )  # import and warm up outside the measure
    before = _rss_kb()
    _start_peak_tracking()
    if method == "upstream":
        masks = dense_masks(labels)  # part of upstream's memory, not of its time (it receives them)

        def run() -> torch.Tensor:
            return upstream(features, masks, args.resolution)
    else:

        def run() -> torch.Tensor:
            return ours(features, labels, args.resolution)

    times = []
    for i in range(args.repeats[method]):
        start = time.perf_counter()
        content = run()
        times.append(time.perf_counter() - start)
        if i == 0:
            peak = _peak_kb()
    torch.save(content, out.with_suffix(".pt"))
    out.write_text(
        json.dumps({"seconds": min(times), "peak_extra_mb": (peak - before) / 1024, "runs": len(times)})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--regions", type=int, default=256)
    parser.add_argument("--channels", type=int, default=384)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=8)
    parser.add_argument("--ours-repeats", type=int, default=20)
    parser.add_argument("--upstream-repeats", type=int, default=2)
    parser.add_argument("--threads", default="1,2", help="torch thread counts to measure, comma-separated")
    parser.add_argument("--worker", choices=["ours", "upstream"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.repeats = {"ours": args.ours_repeats, "upstream": args.upstream_repeats}
    if args.worker:
        args.threads = int(args.threads)
        worker(args.worker, args, args.out)
        return

    rows = [measure(args, int(threads)) for threads in str(args.threads).split(",")]
    print(f"{'threads':>7} {'method':<10}{'seconds':>10}{'peak extra MB':>15}{'speedup':>9}{'memory':>9}")
    for row in rows:
        for method in ("ours", "upstream"):
            res = row[method]
            ratios = f"{row['speedup']:>8.0f}x{100 * row['memory_ratio']:>8.2f}%" if method == "ours" else ""
            print(
                f"{row['threads']:>7} {method:<10}{res['seconds']:>10.4f}{res['peak_extra_mb']:>15.1f}{ratios}"
            )
    agreement = rows[0]["content_agreement"]
    print(
        f"content agreement (ours vs upstream means): cosine mean {agreement['mean_cosine']:.4f} "
        f"min {agreement['min_cosine']:.4f}, mean relative L2 {agreement['mean_relative_l2']:.4f}"
    )
    summary = {
        "workload": {k: getattr(args, k) for k in ("size", "regions", "channels", "grid", "resolution")},
        "memory_method": "peak RSS (VmHWM after clear_refs) minus RSS before, one subprocess per method",
        "time_method": "best of several runs; upstream time excludes building its dense masks",
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")


def measure(args: argparse.Namespace, threads: int) -> dict:
    """Both methods with ``threads`` torch threads, each in a fresh subprocess; ratios and agreement."""
    results, contents = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("ours", "upstream"):
            out = Path(tmp) / f"{method}.json"
            command = [
                sys.executable,
                __file__,
                "--worker",
                method,
                "--out",
                str(out),
                f"--threads={threads}",
            ]
            command += [
                f"--{k}={getattr(args, k)}" for k in ("size", "regions", "channels", "grid", "resolution")
            ]
            command += [f"--ours-repeats={args.ours_repeats}", f"--upstream-repeats={args.upstream_repeats}"]
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
            subprocess.run(command, check=True, env=env)
            results[method] = json.loads(out.read_text())
            contents[method] = torch.load(out.with_suffix(".pt"))
    a, b = contents["ours"], contents["upstream"]
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    return {
        "threads": threads,
        "ours": results["ours"],
        "upstream": results["upstream"],
        "speedup": results["upstream"]["seconds"] / results["ours"]["seconds"],
        "memory_ratio": results["ours"]["peak_extra_mb"] / max(results["upstream"]["peak_extra_mb"], 1e-9),
        "content_agreement": {
            "mean_cosine": cosine.mean().item(),
            "min_cosine": cosine.min().item(),
            "mean_relative_l2": ((a - b).norm(dim=1) / b.norm(dim=1)).mean().item(),
        },
    }


if __name__ == "__main__":
    main()

"""EPOC post-processing vs the upstream-style way, measured in the same run.

Upstream style (the paper's tokenizer code): 4-connected components of ``probs <= t`` (OpenCV),
scikit-image ``watershed`` on the probabilities, one dense boolean (H, W) mask per region built in a
Python loop, masks sorted by area and cut at ``max_tokens`` (the rest dropped).
Ours: ``subobject_vlm.epoc`` -> one (H, W) int32 label map; regions beyond ``max_tokens`` are merged
across their weakest boundary (nothing dropped).

    python benchmarks/bench_epoc.py            # writes benchmarks/results/epoc.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree
from skimage.segmentation import watershed

from subobject_vlm import epoc


def synthetic_boundary_map(size: int, regions: int, seed: int = 0) -> np.ndarray:
    """Voronoi cells whose borders are Gaussian ridges (~3 px wide) plus mild noise: ``(size, size)`` float32."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, size, (regions, 2))
    yy, xx = np.mgrid[:size, :size]
    distances, _ = cKDTree(points).query(np.stack([yy.ravel(), xx.ravel()], 1), k=2)
    gap = (distances[:, 1] - distances[:, 0]).reshape(size, size)
    probs = np.exp(-(gap**2) / 4.0) + rng.uniform(0, 0.05, (size, size))
    return np.clip(probs, 0, 1).astype(np.float32)


def upstream_style(probs: np.ndarray, threshold: float, max_tokens: int) -> np.ndarray:
    """(N, H, W) bool masks, as the upstream tokenizer builds them."""
    num, seeds = cv2.connectedComponents((probs <= threshold).astype(np.uint8), connectivity=4)
    labels = watershed(probs, markers=seeds)
    masks = np.zeros((num - 1, *probs.shape), dtype=bool)
    for i in range(1, num):
        masks[i - 1] = labels == i
    areas = masks.sum(axis=(1, 2))
    return masks[np.argsort(areas)[::-1]][:max_tokens]


def partition_agreement(label_map: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of pixels whose region, mapped to its majority reference region, matches the reference."""
    n_ref = int(reference.max()) + 1
    pairs = label_map.ravel().astype(np.int64) * n_ref + reference.ravel()
    overlap = np.bincount(pairs, minlength=(int(label_map.max()) + 1) * n_ref).reshape(-1, n_ref)
    return float(overlap.max(axis=1).sum() / label_map.size)


_RSS_SNIPPET = """
import sys
from pathlib import Path
sys.path.insert(0, {bench_dir!r})
import bench_epoc
import subobject_vlm.segmentation.epoc as epoc_module
from subobject_vlm import epoc
if {numpy_flood}:
    epoc_module._flood = None  # time the numpy flooding loop
probs = bench_epoc.synthetic_boundary_map({size}, {regions})
run = {run}
run()  # warm-up: lazy imports, first-call allocations
def kb(field):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
before = kb("VmRSS")
run()
print((kb("VmHWM") - before) * 1024)
"""


def rss_peak_bytes(size: int, regions: int, run: str, numpy_flood: bool = False) -> int | None:
    """Peak resident-memory growth of one call of ``run`` (source of a no-argument lambda over ``probs``)
    in a fresh process: every allocation counts, C/C++ ones (OpenCV, the compiled kernel) included. Large
    blocks are forced to ``mmap`` so freed memory leaves the process. ``None`` where this cannot be
    measured (not Linux)."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    code = _RSS_SNIPPET.format(
        bench_dir=str(Path(__file__).parent), size=size, regions=regions, run=run, numpy_flood=numpy_flood
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return int(result.stdout.split()[-1]) if result.returncode == 0 else None


def measure(fn, repeats: int) -> tuple[float, int, object]:
    """Median seconds over ``repeats`` runs, the peak bytes Python/numpy allocated during one run
    (tracemalloc), and the result."""
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--regions", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--numpy-flood",
        action="store_true",
        help="time EPOC with its numpy flooding loop, as on an install without the compiled kernel",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "epoc.json"))
    args = parser.parse_args()

    rows = []
    epoc_module = importlib.import_module("subobject_vlm.segmentation.epoc")
    if args.numpy_flood:
        epoc_module._flood = None
    kernel = "compiled" if epoc_module._flood else "numpy"
    print(f"EPOC flooding kernel: {kernel}")
    header = (
        f"{'size':>5} {'regions':>7} | {'upstream s':>10} {'MB':>7} | {'ours s':>7} {'MB':>6} {'B/px':>5} "
        f"{'RSS B/px':>8} | {'speed-up':>8} {'agree':>6}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for regions in args.regions:
            probs = synthetic_boundary_map(size, regions)
            up_s, up_peak, masks = measure(
                lambda probs=probs: upstream_style(probs, args.threshold, args.max_tokens),
                max(1, args.repeats // 2),
            )
            ours_s, ours_peak, _ = measure(
                lambda probs=probs: epoc(probs, args.threshold, max_tokens=args.max_tokens), args.repeats
            )
            nearest_s, _, _ = measure(
                lambda probs=probs: epoc(probs, args.threshold, max_tokens=args.max_tokens, assign="nearest"),
                args.repeats,
            )
            # same partition before the budget? compare our watershed with skimage's (no max_tokens)
            num, seeds = cv2.connectedComponents((probs <= args.threshold).astype(np.uint8), connectivity=4)
            reference = watershed(probs, markers=seeds)
            agreement = partition_agreement(epoc(probs, args.threshold), reference)
            up_rss = rss_peak_bytes(
                size,
                regions,
                f"lambda: bench_epoc.upstream_style(probs, {args.threshold}, {args.max_tokens})",
            )
            ours_rss = rss_peak_bytes(
                size, regions, f"lambda: epoc(probs, {args.threshold}, max_tokens={args.max_tokens})"
            )
            row = {
                "size": size,
                "regions": int(num - 1),
                "max_tokens": args.max_tokens,
                "upstream_seconds": up_s,
                "upstream_peak_bytes": up_peak,
                "ours_seconds": ours_s,
                "ours_peak_bytes": ours_peak,
                "ours_peak_bytes_per_pixel": ours_peak / size**2,
                "upstream_rss_peak_bytes": up_rss,
                "ours_rss_peak_bytes": ours_rss,
                "ours_rss_peak_bytes_per_pixel": None if ours_rss is None else ours_rss / size**2,
                "ours_nearest_seconds": nearest_s,
                "speedup": up_s / ours_s,
                "speedup_nearest": up_s / nearest_s,
                "memory_ratio": ours_peak / up_peak,
                "pixel_agreement_with_skimage_watershed": agreement,
                "upstream_pixels_dropped": int(size**2 - masks.sum()),
            }
            rows.append(row)
            print(
                f"{size:>5} {row['regions']:>7} | {up_s:>10.3f} {up_peak / 2**20:>7.0f} | {ours_s:>7.4f} "
                f"{ours_peak / 2**20:>6.1f} {row['ours_peak_bytes_per_pixel']:>5.1f} "
                f"{row['ours_rss_peak_bytes_per_pixel'] or float('nan'):>8.1f} | {row['speedup']:>7.0f}x {agreement:>6.3f}"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"rows": rows, "flooding_kernel": kernel, "args": vars(args)}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""BSDS boundary benchmark: scores and wall time of a colour-gradient map on a split, and matcher speed.

    python benchmarks/bench_bsds_eval_speed.py --split val                 # full benchmark, 99 thresholds
    python benchmarks/bench_bsds_eval_speed.py --split val --matchers 5    # + exact vs CSA on 5 images

The boundary map is a plain Sobel gradient magnitude of the Lab image (max over channels, Gaussian
smoothed, scaled to [0, 1] by its 99th percentile): a classical reference point, not a learned model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np


def sobel_lab_probs(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` float32 in [0, 1]: Sobel magnitude of Lab, max over channels."""
    from scipy import ndimage as ndi
    from skimage.color import rgb2lab

    lab = rgb2lab(image).astype(np.float32)
    lab = ndi.gaussian_filter(lab, sigma=(sigma, sigma, 0))
    magnitude = np.zeros(image.shape[:2], dtype=np.float32)
    for c in range(3):
        gx, gy = ndi.sobel(lab[..., c], axis=1), ndi.sobel(lab[..., c], axis=0)
        magnitude = np.maximum(magnitude, np.hypot(gx, gy))
    return np.clip(magnitude / (np.percentile(magnitude, 99) + 1e-6), 0.0, 1.0)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def compare_matchers(samples, probs, thresholds=(0.1, 0.3, 0.5, 0.7)) -> dict:
    """Exact matcher vs pyEdgeEval's CSA on the same thinned maps: seconds and counts."""
    from subobject_vlm.evaluation.boundary_benchmark import boundary_counts
    from subobject_vlm.evaluation.edges import thin

    seconds = {"exact": 0.0, "csa": 0.0}
    totals = {"exact": np.zeros(4, np.int64), "csa": np.zeros(4, np.int64)}
    calls = 0
    for sample, p in zip(samples, probs):
        for t in thresholds:
            bmap = thin(p >= t)
            for matcher in ("exact", "csa"):
                start = time.perf_counter()
                totals[matcher] += boundary_counts(bmap, sample.boundaries, matcher=matcher)
                seconds[matcher] += time.perf_counter() - start
            calls += 1
    return {
        "maps": calls,
        "annotator_matchings": calls * float(np.mean([len(s.boundaries) for s in samples])),
        "seconds_per_map": {m: s / calls for m, s in seconds.items()},
        "speedup": seconds["csa"] / seconds["exact"],
        "counts [cntR, sumR, cntP, sumP]": {m: c.tolist() for m, c in totals.items()},
    }


def main() -> None:
    from subobject_vlm.data.bsds import load_bsds
    from subobject_vlm.evaluation.boundary_benchmark import benchmark_boundaries
    from subobject_vlm.image_utils import load_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--thresholds", type=int, default=99)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--matchers", type=int, default=0, help="compare exact vs CSA on N images")
    parser.add_argument("--out", default="benchmarks/results/bsds_eval_speed.json")
    args = parser.parse_args()

    samples = load_bsds(args.root, args.split, args.limit)
    start = time.perf_counter()
    probs = [sobel_lab_probs(load_image(s.image_path)) for s in samples]
    probs_seconds = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    result = benchmark_boundaries(
        probs,
        [s.boundaries for s in samples],
        thresholds=args.thresholds,
        workers=args.workers,
        names=[s.name for s in samples],
    )
    bench_seconds = time.perf_counter() - start
    cpu_seconds = _cpu_seconds() - cpu_start
    load = os.getloadavg()[0]
    report = {
        "split": args.split,
        "images": len(samples),
        "thresholds": args.thresholds,
        "ODS": result["ODS"],
        "OIS": result["OIS"],
        "AP": result["AP"],
        "R50": result["R50"],
        "seconds_boundary_maps": round(probs_seconds, 2),
        "seconds_benchmark": round(bench_seconds, 2),
        "cpu_seconds_benchmark": round(cpu_seconds, 2),
        "load_average_1min_after": round(load, 2),
    }
    print(
        f"{len(samples)} images, {args.thresholds} thresholds: ODS {result['ODS']['f']:.4f}  "
        f"OIS {result['OIS']['f']:.4f}  AP {result['AP']:.4f}  R50 {result['R50']:.4f}  "
        f"benchmark wall time {bench_seconds:.1f} s, CPU time {cpu_seconds:.1f} s (all processes), "
        f"load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    if args.matchers:
        try:
            report["matchers"] = compare_matchers(samples[: args.matchers], probs[: args.matchers])
            print(json.dumps(report["matchers"], indent=1))
        except ImportError as error:
            print(f"CSA comparison skipped: {error}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Cost of EPOC's budget merge on its worst case: white noise, ``seeds="minima"`` vs ``seeds="threshold"``.

On white noise almost every pixel is near a regional minimum, so ``seeds="minima"`` starts from tens of
thousands of regions per 256² (about one per 5 pixels) and the ``max_tokens`` merge does nearly all the work;
threshold seeds (components of ``probs <= t``) start from fewer. Both are timed on the same maps,
interleaved (the machine is shared and noisy), and the ratio minima / threshold is reported per size: a merge
whose cost grows faster than the number of regions shows up as a ratio that grows with the size.

    python benchmarks/bench_epoc_merge.py          # writes benchmarks/results/epoc_merge.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from pathlib import Path

import numpy as np

from subobject_vlm import epoc
from subobject_vlm.segmentation import region_adjacency


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "epoc_merge.json"))
    args = parser.parse_args()

    kernel = "compiled" if importlib.import_module("subobject_vlm.segmentation.epoc")._flood else "numpy"
    print(f"EPOC flooding kernel: {kernel}")
    header = (
        f"{'size':>5} | {'seeds thr':>9} {'minima':>7} {'edges':>7} | {'thr s':>6} {'minima s':>8} | ratio"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for size in args.sizes:
        probs = np.random.default_rng(size).random((size, size), dtype=np.float32)  # white noise
        counts = {}
        for seeds in ("threshold", "minima"):
            unmerged = epoc(probs, args.threshold, seeds=seeds)  # also the warm-up
            counts[seeds] = (int(unmerged.max()) + 1, len(region_adjacency(unmerged, probs)[0]))
        times = {"threshold": [], "minima": []}
        for _ in range(args.repeats):  # interleaved: both modes see the same machine load
            for seeds in times:
                start = time.perf_counter()
                label_map = epoc(probs, args.threshold, max_tokens=args.max_tokens, seeds=seeds)
                times[seeds].append(time.perf_counter() - start)
                assert int(label_map.max()) + 1 == args.max_tokens
        threshold_s, minima_s = (statistics.median(times[s]) for s in ("threshold", "minima"))
        row = {
            "size": size,
            "regions_threshold": counts["threshold"][0],
            "regions_minima": counts["minima"][0],
            "edges_threshold": counts["threshold"][1],
            "edges_minima": counts["minima"][1],
            "threshold_seconds": threshold_s,
            "minima_seconds": minima_s,
            "threshold_seconds_all": times["threshold"],
            "minima_seconds_all": times["minima"],
            "ratio_minima_over_threshold": minima_s / threshold_s,
        }
        rows.append(row)
        print(
            f"{size:>5} | {row['regions_threshold']:>9} {row['regions_minima']:>7} {row['edges_minima']:>7} | "
            f"{threshold_s:>6.2f} {minima_s:>8.2f} | {row['ratio_minima_over_threshold']:.2f}x"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"rows": rows, "flooding_kernel": kernel, "args": vars(args)}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

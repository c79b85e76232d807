"""Does EPOC's fast flooding or its merging cost quality? Measured on BSDS500 val.

For every val image, one boundary map (``--model``, default: the embedded default) is cut into tokens
with the same seeds and the same budgets in several ways:

- assignment of boundary pixels: our vectorised flooding (``assign="watershed"``, the default), the
  reference scikit-image ``watershed``, and nearest seed (``assign="nearest"``);
- merging under ``max_tokens``: weakest boundary first (default) vs smallest region first.

Reported per budget: boundary recall at 2 px, boundary precision at 2 px, and ASA against the human
annotations, averaged over images.

    python benchmarks/bench_epoc_quality.py [--limit N]     # writes benchmarks/results/epoc_quality.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from skimage.segmentation import watershed
from tqdm import tqdm

from subobject_vlm import epoc, merge_regions
from subobject_vlm.data import load_bsds
from subobject_vlm.evaluation import achievable_segmentation_accuracy, boundary_precision, boundary_recall
from subobject_vlm.image_utils import load_image
from subobject_vlm.segmentation import load_boundary_model


def skimage_reference(probs: np.ndarray, threshold: float, max_tokens: int) -> np.ndarray:
    """Seeds as EPOC, boundary pixels by scikit-image's watershed, then the same budget merge."""
    _, seeds = cv2.connectedComponents((probs <= threshold).astype(np.uint8), connectivity=4)
    return merge_regions(watershed(probs, markers=seeds), probs, max_tokens=max_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "epoc_quality.json"))
    args = parser.parse_args()

    model = load_boundary_model(args.model)
    variants = {
        "watershed (ours)": lambda p, n: epoc(p, args.threshold, max_tokens=n),
        "skimage watershed": lambda p, n: skimage_reference(p, args.threshold, n),
        "nearest seed": lambda p, n: epoc(p, args.threshold, max_tokens=n, assign="nearest"),
        "smallest-region merge": lambda p, n: epoc(p, args.threshold, max_tokens=n, merge="smallest_region"),
    }
    scores = {
        name: {n: {"recall": [], "precision": [], "asa": [], "tokens": []} for n in args.budgets}
        for name in variants
    }
    samples = load_bsds(split=args.split, limit=args.limit)
    for sample in tqdm(samples, desc="BSDS " + args.split):
        [probs] = model.predict([load_image(sample.image_path)])
        for name, tokenize in variants.items():
            for budget in args.budgets:
                label_map = tokenize(probs, budget)
                entry = scores[name][budget]
                entry["recall"].append(boundary_recall(label_map, sample.boundaries, tolerance=2))
                entry["precision"].append(boundary_precision(label_map, sample.boundaries, tolerance=2))
                entry["asa"].append(achievable_segmentation_accuracy(label_map, sample.segmentations))
                entry["tokens"].append(int(label_map.max()) + 1)
    summary = {
        name: {
            budget: {k: float(np.mean(v)) for k, v in entry.items()} for budget, entry in per_budget.items()
        }
        for name, per_budget in scores.items()
    }
    print(f"{args.split}: {len(samples)} images, model {args.model}, threshold {args.threshold}")
    print(f"{'variant':>22} {'budget':>6} {'tokens':>7} {'recall@2px':>10} {'prec@2px':>9} {'ASA':>6}")
    for name, per_budget in summary.items():
        for budget, row in per_budget.items():
            print(
                f"{name:>22} {budget:>6} {row['tokens']:>7.1f} {row['recall']:>10.3f} {row['precision']:>9.3f} {row['asa']:>6.3f}"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"args": vars(args), "images": len(samples), "summary": summary}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

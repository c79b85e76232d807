"""Tune a boundary model's EPOC operating point (threshold, merge order, min_area) on BSDS500 val.

The boundary map of every image is computed once; then for each setting and token budget the map is cut with
``epoc`` and scored against the human annotations with the same token metrics as ``eval-bsds``: the
segmentation's boundary F (BSDS protocol), boundary recall / precision at 2 px, ASA, and the tokens used.
Optionally a baseline (``--baseline slic``) is run at exactly the same per-image token counts, so settings that
use fewer tokens are not favoured.

    python benchmarks/tune_operating_point.py --model default --thresholds 0.05 0.1 0.2 0.3 0.5
        # writes benchmarks/results/operating_point_<model>.json and a PNG of F and ASA per setting
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from subobject_vlm import epoc
from subobject_vlm.data import load_bsds
from subobject_vlm.evaluation import segmentation_metrics
from subobject_vlm.image_utils import load_image
from subobject_vlm.segmentation import load_boundary_model, segment

METRICS = (
    "tokens",
    "boundary_f",
    "boundary_recall_2px",
    "boundary_precision_2px",
    "achievable_segmentation_accuracy",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--merges", nargs="+", default=["weakest_boundary", "smallest_region"])
    parser.add_argument("--min-areas", type=int, nargs="+", default=[0])
    parser.add_argument("--seeds", nargs="+", default=["threshold"], help="threshold and/or minima")
    parser.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--baseline", default=None, help="e.g. slic: also scored at equal per-image counts")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    model = load_boundary_model(args.model)
    samples = load_bsds(split=args.split, limit=args.limit)
    settings = list(itertools.product(args.thresholds, args.merges, args.min_areas, args.seeds))
    rows: dict[tuple, dict[str, list[float]]] = {}
    for sample in tqdm(samples, desc=f"BSDS {args.split}"):
        image = load_image(sample.image_path)
        [probs] = model.predict([image])
        for (threshold, merge, min_area, seeds), budget in itertools.product(settings, args.budgets):
            label_map = epoc(probs, threshold, max_tokens=budget, merge=merge, min_area=min_area, seeds=seeds)
            metrics = segmentation_metrics(label_map, sample.segmentations, sample.boundaries)
            entry = rows.setdefault((threshold, merge, min_area, seeds, budget), {m: [] for m in METRICS})
            for m in METRICS:
                entry[m].append(metrics[m])
            if args.baseline:
                baseline = segment(image, args.baseline, max_tokens=metrics["tokens"])
                base = segmentation_metrics(baseline, sample.segmentations, sample.boundaries)
                for m in METRICS[1:]:
                    entry.setdefault(f"{args.baseline}_{m}", []).append(base[m])
    summary = [
        {
            "threshold": t,
            "merge": mg,
            "min_area": ma,
            "seeds": sd,
            "budget": b,
            **{k: float(np.mean(v)) for k, v in e.items()},
        }
        for (t, mg, ma, sd, b), e in rows.items()
    ]
    print(f"{args.split}: {len(samples)} images, model {args.model}")
    header = f"{'thr':>5} {'merge':>17} {'min_area':>8} {'seeds':>9} {'budget':>6} {'tokens':>7} {'F':>6} {'R@2':>6} {'P@2':>6} {'ASA':>6}"
    print(header + (f" {args.baseline + ' F':>8} {'ASA':>6}" if args.baseline else ""))
    for row in summary:
        line = (
            f"{row['threshold']:>5.2f} {row['merge']:>17} {row['min_area']:>8} {row['seeds']:>9} {row['budget']:>6} {row['tokens']:>7.1f} "
            f"{row['boundary_f']:>6.3f} {row['boundary_recall_2px']:>6.3f} {row['boundary_precision_2px']:>6.3f} "
            f"{row['achievable_segmentation_accuracy']:>6.3f}"
        )
        if args.baseline:
            line += f" {row[args.baseline + '_boundary_f']:>8.3f} {row[args.baseline + '_achievable_segmentation_accuracy']:>6.3f}"
        print(line)
    name = Path(str(args.model)).name
    out = Path(args.out or Path(__file__).parent / "results" / f"operating_point_{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "images": len(samples), "summary": summary}, indent=1))
    plot(summary, args.budgets, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(summary: list[dict], budgets: list[int], path: Path) -> None:
    """Boundary F and ASA against threshold, one line per (merge, min_area, seeds) and budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    variants = sorted({(r["merge"], r["min_area"]) for r in summary})
    for (merge, min_area), budget in itertools.product(variants, budgets):
        rows = sorted(
            (r for r in summary if (r["merge"], r["min_area"], r["budget"]) == (merge, min_area, budget)),
            key=lambda r: r["threshold"],
        )
        label = f"{merge}, min_area {min_area}, {budget} tokens"
        style = "-" if merge == "weakest_boundary" else "--"
        for ax, metric in zip(axes, ("boundary_f", "achievable_segmentation_accuracy")):
            ax.plot([r["threshold"] for r in rows], [r[metric] for r in rows], style, marker="o", label=label)
    for ax, title in zip(axes, ("segmentation boundary F (BSDS)", "ASA")):
        ax.set_xlabel("EPOC threshold")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

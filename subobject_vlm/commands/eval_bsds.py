"""``subobject-vlm eval-bsds``: the BSDS500 boundary benchmark and token metrics against the baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..segmentation.settings import BASELINES

NAME = "eval-bsds"
HELP = "BSDS500 boundary benchmark (ODS/OIS/AP) and token metrics vs baselines at equal counts"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``subobject-vlm eval-bsds`` (for the CLI to mount on its subcommand parser)."""
    parser.add_argument(
        "--root", default=None, help="BSDS500 folder (default: $BSDS500_ROOT or ../shared/data)"
    )
    parser.add_argument("--split", default="val", help="train, val or test")
    parser.add_argument("--model", default="default", help="boundary model name / path, or a baseline name")
    parser.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 256], help="max_tokens values")
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=list(BASELINES),
        help="baselines at equal per-image token counts",
    )
    parser.add_argument("--out", default="eval_bsds", help="output folder")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--thresholds", type=int, default=99, help="boundary benchmark thresholds (0: skip)")
    parser.add_argument("--threshold", type=float, default=None, help="EPOC boundary threshold")
    parser.add_argument("--seeds", choices=("threshold", "minima"), default=None, help="EPOC seeds")
    parser.add_argument("--min-area", type=int, default=None, help="EPOC min_area (pixels)")
    parser.add_argument(
        "--no-nms",
        dest="nms",
        action="store_false",
        help="benchmark the raw map (default: after non-maximum suppression)",
    )
    parser.add_argument("--matcher", choices=("exact", "csa"), default="exact",
                        help="pixel matching: exact (fast) or pyEdgeEval CSA (the reference, needs .[eval])")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    parser.add_argument("--resolution", type=int, default=None, help="DirectSAM input resolution")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``eval_bsds`` from parsed arguments; prints the headline numbers. Returns the exit status."""
    from ..evaluation.bsds_eval import eval_bsds

    model_options = {"resolution": args.resolution} if args.resolution else {}
    report = eval_bsds(
        args.root,
        args.split,
        args.model,
        args.budgets,
        args.baselines,
        args.out,
        args.limit,
        args.thresholds or None,
        segment_options={
            key: value
            for key, value in (
                ("threshold", args.threshold),
                ("seeds", args.seeds),
                ("min_area", args.min_area),
            )
            if value is not None
        },
        nms=args.nms,
        matcher=args.matcher,
        workers=args.workers,
        **model_options,
    )
    if report["boundary"]:
        b = report["boundary"]
        print(f"boundary ODS {b['ODS']['f']:.4f}  OIS {b['OIS']['f']:.4f}  AP {b['AP']:.4f}")
    for name, per_budget in report["tokens"].items():
        for budget, m in per_budget.items():
            print(
                f"{name:>14s} @{budget:>4s}: tokens {m['tokens']:.1f}  BR {m['boundary_recall']:.3f}  "
                f"BP {m['boundary_precision']:.3f}  UE {m['undersegmentation_error']:.3f}  "
                f"ASA {m['achievable_segmentation_accuracy']:.3f}"
            )
    print(f"wrote {Path(args.out) / 'metrics.json'} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":  # python -m subobject_vlm.commands.eval_bsds ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("eval_bsds"))

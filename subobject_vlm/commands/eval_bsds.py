"""``subobject-vlm eval-bsds``: the BSDS500 boundary benchmark and token metrics against the baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_named_option_argument, add_segmentation_arguments, named_options

NAME = "eval-bsds"
HELP = "BSDS500 boundary benchmark (ODS/OIS/AP) and token metrics vs baselines at equal counts"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``subobject-vlm eval-bsds`` (for the CLI to mount on its subcommand parser)."""
    from ..segmentation.registry import LABEL_MAP, registered_names  # (light: no torch at --help)

    parser.add_argument(
        "--root", default=None, help="BSDS500 folder (default: $BSDS500_ROOT or ../shared/data)"
    )
    parser.add_argument("--split", default="val", help="train, val or test")
    add_segmentation_arguments(parser, max_tokens_sweep=[64, 128, 256])
    # --budgets: the old name of --max-tokens here, kept working
    parser.add_argument("--budgets", dest="max_tokens", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=None,
        help="label-map tokenizers run at our per-image token counts, e.g. sam:CHECKPOINT (default: every "
        f"registered one: {' '.join(registered_names(LABEL_MAP, families=False))}; "
        "--baselines alone: none)",
    )
    add_named_option_argument(parser, "--baseline-option", of="--baselines")
    parser.add_argument("--out", default="eval_bsds", help="output folder")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--thresholds", type=int, default=99, help="boundary benchmark thresholds (0: skip)")
    parser.add_argument(
        "--no-nms",
        dest="nms",
        action="store_false",
        help="benchmark the raw map (default: after non-maximum suppression)",
    )
    parser.add_argument(
        "--matcher",
        choices=("exact", "csa"),
        default="exact",
        help="pixel matching: exact (fast) or pyEdgeEval CSA (the reference, needs .[eval])",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``eval_bsds`` from parsed arguments; prints the headline numbers. Returns the exit status."""
    from ..segmentation.settings import SegmentationSettings

    # every option but the budget, which eval_bsds sweeps over args.max_tokens (and checks, building the settings)
    settings = SegmentationSettings.from_args(args, max_tokens=None)
    from ..evaluation.bsds_eval import eval_bsds

    report = eval_bsds(
        args.root,
        args.split,
        settings.boundary_model,
        args.max_tokens,
        args.baselines,
        args.out,
        args.limit,
        args.thresholds or None,
        segment_options={k: v for k, v in settings.epoc_options.items() if k != "max_tokens"},
        baseline_options=named_options(args.baseline_option, "--baseline-option"),
        nms=args.nms,
        matcher=args.matcher,
        workers=args.workers,
        **settings.model_options,
    )
    if report["boundary"]:
        b = report["boundary"]
        print(f"boundary ODS {b['ODS']['f']:.4f}  OIS {b['OIS']['f']:.4f}  AP {b['AP']:.4f}")
    for name, per_max_tokens in report["tokens"].items():
        for max_tokens, m in per_max_tokens.items():
            print(
                f"{name:>14s} @{max_tokens:>4s}: tokens {m['tokens']:.1f}  BR {m['boundary_recall']:.3f}  "
                f"BP {m['boundary_precision']:.3f}  UE {m['undersegmentation_error']:.3f}  "
                f"ASA {m['achievable_segmentation_accuracy']:.3f}"
            )
    print(f"wrote {Path(args.out) / 'metrics.json'} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":  # python -m subobject_vlm.commands.eval_bsds ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("eval_bsds"))

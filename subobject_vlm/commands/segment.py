"""``subobject-vlm segment INPUTS... --out DIR``: label maps and pictures of images, with any tokenizer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..segmentation.settings import DEFAULT_MAX_TOKENS, DEFAULT_SEEDS
from ._files import (
    add_model_arguments,
    check_model_arguments,
    collect_inputs,
    load_model,
    model_options,
    run_over_files,
)

if TYPE_CHECKING:
    from ..segmentation.settings import SegmentationSettings

NAME = "segment"
HELP = "segment images into subobjects; writes PNGs, label maps, summary.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, baselines=True)
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_MAX_TOKENS,
        help="at most N tokens per image, a cap (regions are merged, never dropped); the baselines make "
        "exactly N",
    )
    parser.add_argument("--threshold", type=float, default=0.1, help="EPOC boundary threshold")
    parser.add_argument("--min-area", type=int, default=0, help="merge regions smaller than this many pixels")
    parser.add_argument("--merge", default="weakest_boundary", choices=["weakest_boundary", "smallest_region"],
                        help="which regions merge first to meet --max-tokens")  # fmt: skip
    parser.add_argument("--assign", default="watershed", choices=["watershed", "nearest"],
                        help="how boundary pixels join a region: flooding the map, or the nearest seed")  # fmt: skip
    parser.add_argument(
        "--seeds",
        default=DEFAULT_SEEDS,
        choices=["threshold", "minima"],
        help="EPOC seeds: components under the threshold, or also every regional minimum (fills the budget)",
    )
    parser.add_argument(
        "--save-labels",
        choices=["npy", "png"],
        default=None,
        help="also write the label maps (npy: int32; png: 16-bit)",
    )


def run(args: argparse.Namespace) -> int:
    check_model_arguments(args, baselines=True)  # before anything heavy loads
    from ..atomic import save_npy, write_bytes
    from ..image_utils import encode_label_map, load_image
    from ..segmentation import SegmentationSettings, segment_image
    from ..segmentation.visualize import save_composite

    settings = SegmentationSettings(  # validated before any model loads or file is read
        args.model,
        model_options(args),
        threshold=args.threshold,
        max_tokens=args.max_tokens,
        min_area=args.min_area,
        merge=args.merge,
        assign=args.assign,
        seeds=args.seeds,
    )
    paths = collect_inputs(args.inputs)  # before any model loads
    model = load_model(args)

    def process(path: Path, outputs: list[Path]) -> dict:
        image = load_image(path)
        probs = None if model is None else model.predict([image])[0]
        label_map = segment_image(image, settings, boundary_probs=probs)
        if args.save_labels == "npy":
            save_npy(outputs[1], label_map.astype(np.int32))
        elif args.save_labels == "png":
            try:
                png = encode_label_map(label_map)
            except ValueError as error:
                raise ValueError(f"{path}: {error}; use --save-labels npy") from None
            write_bytes(outputs[1], png)
        save_composite(outputs[0], image, label_map, probs, args.threshold)
        return {"tokens": int(label_map.max()) + 1, "height": image.shape[0], "width": image.shape[1]}

    suffixes = [".png"] + {"npy": [".npy"], "png": ["_labels.png"], None: []}[args.save_labels]
    run_settings = {**settings.to_dict(), "save_labels": args.save_labels}
    result = run_over_files(args, paths, process, "segment", suffixes, run_settings)
    if result.done:
        tokens = describe_tokens([r["tokens"] for r in result.done], settings)
        seconds = np.mean([r["seconds"] for r in result.done])
        print(
            f"segmented {len(result.done)} image(s) into {tokens}, {seconds:.2f} s/image; wrote {args.out}",
            file=sys.stderr,
        )
    return result.report()


def describe_tokens(tokens: list[int], settings: SegmentationSettings) -> str:
    """How many tokens the images got, and what the budget was: ``31-72 tokens per image (mean 50.2;
    --max-tokens 128 is a cap, not reached by 3 of 3)``."""
    low, high = min(tokens), max(tokens)
    notes = [] if low == high else [f"mean {np.mean(tokens):.1f}"]
    if not settings.is_baseline:  # (a baseline makes exactly --max-tokens regions)
        cap = settings.max_tokens
        fewer = sum(cap is None or count < cap for count in tokens)
        if cap is None:
            notes.append("no --max-tokens cap")
        elif fewer:
            notes.append(f"--max-tokens {cap} is a cap, not reached by {fewer} of {len(tokens)}")
    counts = f"{low} tokens each" if low == high else f"{low}-{high} tokens per image"
    return f"{counts} ({'; '.join(notes)})" if notes else counts


if __name__ == "__main__":  # python -m subobject_vlm.commands.segment ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("segment"))

"""``subobject-vlm segment INPUTS... --out DIR``: label maps and pictures of images, with any tokenizer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._files import add_file_arguments, add_resume_arguments, collect_inputs, load_model, run_over_files
from ._options import add_segmentation_arguments

if TYPE_CHECKING:
    from ..segmentation.settings import SegmentationSettings

NAME = "segment"
HELP = "segment images into subobjects; writes PNGs, label maps, summary.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_arguments(parser)
    add_segmentation_arguments(parser)
    add_resume_arguments(parser)
    parser.add_argument(
        "--save-labels",
        choices=["npy", "png"],
        default=None,
        help="also write the label maps (npy: int32; png: 16-bit)",
    )


def run(args: argparse.Namespace) -> int:
    from ..segmentation.settings import SegmentationSettings

    settings = SegmentationSettings.from_args(args)  # validated before torch, any model or any file loads
    paths = collect_inputs(args.inputs)  # before any model loads
    import numpy as np

    from ..atomic import save_npy, write_bytes
    from ..image_utils import encode_label_map, load_image
    from ..segmentation.registry import BOUNDARY
    from ..segmentation.segmenter import Segmenter
    from ..segmentation.visualize import save_composite

    load_model(settings)  # the device checked, the model loaded: before the first file
    segmenter = Segmenter(settings, cache_size=1)  # each image's boundary map, kept for its label map

    def process(path: Path, outputs: list[Path]) -> dict:
        image = load_image(path)
        probs = segmenter.boundary_maps([image])[0] if settings.kind == BOUNDARY else None
        label_map = segmenter.label_maps([image])[0]
        if args.save_labels == "npy":
            save_npy(outputs[1], label_map.astype(np.int32))
        elif args.save_labels == "png":
            try:
                png = encode_label_map(label_map)
            except ValueError as error:
                raise ValueError(f"{path}: {error}; use --save-labels npy") from None
            write_bytes(outputs[1], png)
        save_composite(outputs[0], image, label_map, probs, settings.threshold)
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
    notes = [] if low == high else [f"mean {sum(tokens) / len(tokens):.1f}"]
    cap = settings.max_tokens
    fewer = sum(cap is not None and count < cap for count in tokens)
    if cap is None:
        notes.append("no --max-tokens cap")
    elif fewer:  # (never for the baselines, which make exactly --max-tokens regions where pixels allow)
        notes.append(f"--max-tokens {cap} is a cap, not reached by {fewer} of {len(tokens)}")
    counts = f"{low} tokens each" if low == high else f"{low}-{high} tokens per image"
    return f"{counts} ({'; '.join(notes)})" if notes else counts


if __name__ == "__main__":  # python -m subobject_vlm.commands.segment ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("segment"))

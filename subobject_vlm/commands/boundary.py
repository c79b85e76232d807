"""``subobject-vlm boundary INPUTS... --out DIR``: 8-bit boundary probability maps at the images' size."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ._files import add_model_arguments, collect_inputs, load_model, run_over_files

NAME = "boundary"
HELP = "write 8-bit boundary probability maps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, baselines=False)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..image_utils import load_image
    from ..segmentation.settings import BASELINES

    if args.model in BASELINES:
        print(f"error: {args.model} is a baseline tokenizer and has no boundary map", file=sys.stderr)
        return 2
    paths = collect_inputs(args.inputs)  # before any model loads
    model = load_model(args)

    def process(path: Path, stem: str, out_dir: Path) -> dict:
        image = load_image(path)
        [probs] = model.predict([image])
        Image.fromarray(np.round(probs * 255).astype(np.uint8)).save(out_dir / f"{stem}.png")
        return {"height": image.shape[0], "width": image.shape[1]}

    done, failed = run_over_files(args, paths, process, "boundary")
    if failed:
        print(f"{len(failed)} file(s) failed: {', '.join(f['file'] for f in failed)}", file=sys.stderr)
    return 1 if failed or not done else 0


if __name__ == "__main__":  # python -m subobject_vlm.commands.boundary ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("boundary"))

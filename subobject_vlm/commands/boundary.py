"""``subobject-vlm boundary INPUTS... --out DIR``: 8-bit boundary probability maps at the images' size."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ._files import (
    add_model_arguments,
    check_model_arguments,
    collect_inputs,
    load_model,
    model_options,
    run_over_files,
)

NAME = "boundary"
HELP = "write 8-bit boundary probability maps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, baselines=False)


def run(args: argparse.Namespace) -> int:
    check_model_arguments(args, baselines=False)  # before anything heavy loads
    from PIL import Image

    from ..atomic import save_image
    from ..image_utils import load_image

    paths = collect_inputs(args.inputs)  # before any model loads
    model = load_model(args)

    def process(path: Path, outputs: list[Path]) -> dict:
        image = load_image(path)
        [probs] = model.predict([image])
        save_image(outputs[0], Image.fromarray(np.round(probs * 255).astype(np.uint8)))
        return {"height": image.shape[0], "width": image.shape[1]}

    settings = {"boundary_model": args.model, "boundary_model_options": model_options(args)}
    result = run_over_files(args, paths, process, "boundary", [".png"], settings)
    return result.report()


if __name__ == "__main__":  # python -m subobject_vlm.commands.boundary ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("boundary"))

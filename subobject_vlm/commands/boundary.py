"""``subobject-vlm boundary INPUTS... --out DIR``: 8-bit boundary probability maps at the images' size."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._files import add_file_arguments, add_resume_arguments, collect_inputs, load_model, run_over_files
from ._options import add_segmentation_arguments

NAME = "boundary"
HELP = "write 8-bit boundary probability maps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_arguments(parser)
    add_segmentation_arguments(parser, baselines=False, epoc=False)
    add_resume_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..segmentation.registry import LABEL_MAP
    from ..segmentation.settings import SegmentationSettings

    settings = SegmentationSettings.from_args(args)  # before anything heavy loads
    if settings.kind == LABEL_MAP:
        raise ValueError(f"{settings.boundary_model} is a label-map tokenizer and has no boundary map")
    paths = collect_inputs(args.inputs)  # before any model loads
    import numpy as np
    from PIL import Image

    from ..atomic import save_image
    from ..image_utils import load_image

    model = load_model(settings)

    def process(path: Path, outputs: list[Path]) -> dict:
        image = load_image(path)
        [probs] = model.predict([image])
        save_image(outputs[0], Image.fromarray(np.round(probs * 255).astype(np.uint8)))
        return {"height": image.shape[0], "width": image.shape[1]}

    model_settings = {
        "boundary_model": settings.boundary_model,
        "boundary_model_options": settings.model_options,
    }
    result = run_over_files(args, paths, process, "boundary", [".png"], model_settings)
    return result.report()


if __name__ == "__main__":  # python -m subobject_vlm.commands.boundary ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("boundary"))

"""``subobject-vlm convert SRC DST``: a SubobjectLlava from a VLM checkpoint of a supported family
(LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision, Idefics3 / SmolVLM, PaliGemma, Gemma 3, Qwen2-VL / Qwen2.5-VL)."""

from __future__ import annotations

import argparse

from ..families import supported_model_types
from ..segmentation.settings import DEFAULT_MAX_TOKENS
from ._files import DTYPE_NAMES

NAME = "convert"
HELP = "build a SubobjectLlava from a LLaVA, SmolVLM, PaliGemma, Gemma 3 or Qwen2-VL checkpoint"
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)  # "auto": the checkpoint's own


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``subobject-vlm convert SRC DST``."""
    parser.add_argument(
        "src",
        help="VLM checkpoint, hub id or folder, of a supported family (model_type "
        f"{', '.join(supported_model_types())}; e.g. llava-hf/llava-1.5-7b-hf)",
    )
    parser.add_argument("dst", help="output folder for the SubobjectLlava checkpoint")
    parser.add_argument(
        "--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="at most N regions per image"
    )
    parser.add_argument("--shape-resolution", type=int, default=8, help="side of the region shape picture")
    parser.add_argument("--label-size", type=int, default=None, help="label map side (default: image size)")
    parser.add_argument("--boundary-model", default="default", help="image processor boundary model")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help="weights dtype")
    parser.add_argument(
        "--no-reuse-projector",
        dest="reuse_projector",
        action="store_false",
        help="initialise the region embedding at random instead of from the source's projector",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the new weights")
    parser.add_argument(
        "--no-memory-check",
        dest="check_memory",
        action="store_false",
        help="convert even when the source's weights look larger than the memory available now",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``subobject-vlm convert``; prints the output folder. Exit status 2 on a bad source or option."""
    from ..conversion import convert_checkpoint

    dst = convert_checkpoint(
        args.src,
        args.dst,
        max_tokens=args.max_tokens,
        shape_resolution=args.shape_resolution,
        label_size=args.label_size,
        boundary_model=args.boundary_model,
        reuse_projector=args.reuse_projector,
        dtype=args.dtype,
        seed=args.seed,
        check_memory=args.check_memory,
    )
    print(dst)
    return 0


if __name__ == "__main__":  # python -m subobject_vlm.commands.convert ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("convert"))

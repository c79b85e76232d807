"""What the image commands share: the tokenizer options, the model they load, and the walk over input files."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

DTYPE_NAMES = (
    "float32",
    "bfloat16",
    "float16",
)  # devices.DTYPES, named without importing torch (tested equal)


def add_model_arguments(parser: argparse.ArgumentParser, baselines: bool) -> None:
    from ..segmentation.registry import describe_names

    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--model", default="default", help=f"tokenizer: {describe_names(baselines)}")
    parser.add_argument(
        "--resolution", type=int, default=None, help="boundary model input size (None: the checkpoint's own)"
    )
    parser.add_argument(
        "--keep-aspect",
        action="store_true",
        default=None,
        help="resize keeping the aspect ratio (None: the checkpoint's choice; EdgeNet keeps it)",
    )
    parser.add_argument(
        "--pyramid-layers", type=int, default=0, help="extra crop-pyramid passes of the boundary model"
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device of the boundary model: cpu, cuda, cuda:N, mps"
    )
    parser.add_argument("--dtype", default="float32", choices=DTYPE_NAMES,
                        help="boundary model dtype (half precision only pays on a GPU)")  # fmt: skip


def model_options(args: argparse.Namespace) -> dict:
    options = {"device": args.device, "dtype": args.dtype}
    if args.keep_aspect is not None:
        options["keep_aspect"] = args.keep_aspect
    if args.resolution is not None:
        options["resolution"] = args.resolution
    if args.pyramid_layers:
        options["pyramid_layers"] = args.pyramid_layers
    return options


def output_stems(paths: list[Path]) -> list[str]:
    """Output name per input: its stem, or ``stem.ext`` where two inputs share a stem."""
    stems = [p.stem for p in paths]
    return [p.name if stems.count(p.stem) > 1 else p.stem for p in paths]


def collect_inputs(inputs: list[str]) -> list[Path]:
    """The image files named by ``inputs`` (files, folders), checked before any model loads: a path that does
    not exist, or no image at all, is a ``ValueError`` in one line."""
    from ..image_utils import list_image_files

    missing = [item for item in inputs if not Path(item).exists()]
    if missing:
        raise ValueError(f"input not found: {', '.join(missing)}")
    paths = list_image_files(inputs)
    if not paths:
        raise ValueError(f"no image files in {', '.join(inputs)}")
    return paths


def run_over_files(
    args: argparse.Namespace, paths: list[Path], process: Callable[[Path, str, Path], dict], what: str
) -> tuple[list[dict], list[dict]]:
    """Apply ``process(path, stem, out_dir)`` to every input; bad files are reported and skipped."""
    from tqdm import tqdm

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    done, failed = [], []
    for path, stem in zip(tqdm(paths, desc=what, unit="img", file=sys.stderr), output_stems(paths)):
        try:
            start = time.perf_counter()
            record = process(path, stem, out_dir)
            record.update(file=str(path), seconds=round(time.perf_counter() - start, 4))
            done.append(record)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            tqdm.write(f"skipped {message}", file=sys.stderr)
            failed.append({"file": str(path), "error": message})
    return done, failed


def quiet_third_parties() -> None:
    """Keep other libraries' progress bars and deprecation chatter out of a command's output: the command's
    own progress bar and its one-line errors are what a user reads."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=".*NumPy array is not writable.*")


def load_model(args: argparse.Namespace):
    from ..segmentation import BASELINES, load_boundary_model

    if args.model in BASELINES:
        return None
    quiet_third_parties()
    return load_boundary_model(args.model, **model_options(args))

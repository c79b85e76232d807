"""What the image commands share: their file arguments, the model they load, and the walk over input files."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..segmentation.settings import SegmentationSettings

DTYPE_NAMES = (
    "float32",
    "bfloat16",
    "float16",
)  # devices.DTYPES, named without importing torch (tested equal)


def add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs and ``--out`` of a command that walks over image files."""
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--allow-inputs-in-out`` of ``run_over_files``."""
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs whose outputs in --out are complete and were made with the same settings",
    )
    parser.add_argument(
        "--allow-inputs-in-out",
        action="store_true",
        help="accept an --out folder that holds inputs (they are never overwritten)",
    )


def collect_inputs(inputs: list[str]) -> list[Path]:
    """The image files named by ``inputs`` (files, folders), checked before any model loads: a path that does
    not exist, or no image at all, is a ``ValueError`` in one line. A file named twice is kept once."""
    from ..image_utils import list_image_files

    missing = [item for item in inputs if not Path(item).exists()]
    if missing:
        raise ValueError(f"input not found: {', '.join(missing)}")
    paths = list_image_files(inputs)
    if not paths:
        raise ValueError(f"no image files in {', '.join(inputs)}")
    seen, unique = set(), []
    for path in paths:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


@dataclass
class FilesRun:
    """What ``run_over_files`` did: records of the images done now, failures, inputs skipped as already
    done (``--resume``), the signal that stopped the run early (``None`` when it ran to the end), the output
    folder and the number of inputs."""

    done: list[dict]
    failed: list[dict]
    skipped: int
    stopped_by: int | None
    out: str
    total: int

    def report(self) -> int:
        """Print the run's last lines on stderr; returns the exit status."""
        if self.skipped:
            print(f"{self.skipped} image(s) already done in {self.out} (--resume)", file=sys.stderr)
        if self.failed:
            print(
                f"{len(self.failed)} file(s) failed: {', '.join(f['file'] for f in self.failed)}",
                file=sys.stderr,
            )
        if self.stopped_by is not None:
            name = signal.Signals(self.stopped_by).name
            finished = len(self.done) + len(self.failed) + self.skipped
            print(
                f"stopped by {name} after {finished} of {self.total} image(s); summary.json is current; rerun with "
                "--resume to finish",
                file=sys.stderr,
            )
            return 128 + self.stopped_by
        return 1 if self.failed or not (self.done or self.skipped) else 0


def run_over_files(
    args: argparse.Namespace,
    paths: list[Path],
    process: Callable[[Path, list[Path]], dict],
    what: str,
    suffixes: list[str],
    settings: dict,
) -> FilesRun:
    """Apply ``process(path, outputs)`` to every input, where ``outputs`` are the files it must write, one per
    suffix (named by ``_outputs.plan_output_names``: unique, never an input). Bad files are reported and
    skipped; ``summary.json`` is kept current; SIGINT / SIGTERM stop after the current file. ``settings`` say
    how the outputs are made; ``--resume`` compares only the boundary-model options that change them
    (``settings.output_options``: not the device)."""
    from tqdm import tqdm

    from ..segmentation.settings import output_options
    from ._outputs import (
        OutputFolder,
        StopRequests,
        check_out_holds_no_inputs,
        input_changed,
        input_fingerprint,
    )

    out_dir = Path(args.out)
    inputs = [Path(os.path.abspath(p)) for p in paths]
    given = dict(zip(inputs, map(str, paths)))
    check_out_holds_no_inputs(inputs, out_dir, args.allow_inputs_in_out)
    settings = {
        **settings,
        "boundary_model_options": output_options(settings.get("boundary_model_options", {})),
    }
    done, failed = [], []
    with OutputFolder(out_dir, what, settings, suffixes) as folder, StopRequests() as stop:
        to_do, already_done = folder.plan(inputs, resume=args.resume)
        stopped_by = None
        for path, outputs in tqdm(to_do, desc=what, unit="img", file=sys.stderr):
            if stop.signal is not None:
                stopped_by = stop.signal
                break
            try:
                start = time.perf_counter()
                # as read: a file replaced meanwhile no longer matches its record, and --resume redoes it
                fingerprint = input_fingerprint(path)
                record = process(path, outputs)
                record.update(seconds=round(time.perf_counter() - start, 4))
                folder.done(path, given[path], outputs, record, fingerprint)
                done.append({"file": given[path], **record})
                if input_changed(path, fingerprint):
                    tqdm.write(
                        f"{given[path]} changed while it was read; --resume will redo it", file=sys.stderr
                    )
            except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
                message = str(error) if given[path] in str(error) else f"{given[path]}: {error}"
                tqdm.write(f"skipped {message}", file=sys.stderr)
                folder.failed(path, given[path], message)
                failed.append({"file": given[path], "error": message})
        return FilesRun(done, failed, len(already_done), stopped_by, str(out_dir), len(paths))


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


def load_model(settings: SegmentationSettings):
    """The tokenizer of ``settings``, loaded (``api.load_tokenizer``: later loads get this one); the device is
    checked before it loads."""
    from ..devices import check_device

    check_device(settings.model_options.get("device", "cpu"))  # right after torch loads: before the weights
    from ..segmentation import load_tokenizer

    quiet_third_parties()
    return load_tokenizer(settings.boundary_model, **settings.model_options)

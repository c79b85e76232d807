"""The ``subobject-vlm`` command line.

subobject-vlm segment INPUTS... --out DIR [--model NAME_OR_PATH] [--max-tokens N] [--threshold T]
                                [--resolution R] [--save-labels npy|png]
subobject-vlm boundary INPUTS... --out DIR [--model NAME_OR_PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _add_model_arguments(parser: argparse.ArgumentParser, baselines: bool) -> None:
    from .segmentation.registry import describe_names

    names = (
        describe_names()
        if baselines
        else describe_names().replace(", patch, slic, felzenszwalb (baselines)", "")
    )
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--model", default="default", help=f"tokenizer: {names} (default: default)")
    parser.add_argument("--resolution", type=int, default=None, help="boundary model input size (DirectSAM)")
    parser.add_argument(
        "--keep-aspect",
        action="store_true",
        default=None,
        help="resize keeping the aspect ratio (DirectSAM; EdgeNet checkpoints do by default)",
    )
    parser.add_argument("--pyramid-layers", type=int, default=0, help="extra crop-pyramid passes (DirectSAM)")
    parser.add_argument("--device", default="cpu", help="torch device for DirectSAM, e.g. cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])


def _model_options(args: argparse.Namespace) -> dict:
    options = {"device": args.device, "dtype": args.dtype}
    if args.keep_aspect is not None:
        options["keep_aspect"] = args.keep_aspect
    if args.resolution is not None:
        options["resolution"] = args.resolution
    if args.pyramid_layers:
        options["pyramid_layers"] = args.pyramid_layers
    return options


def _output_stems(paths: list[Path]) -> list[str]:
    """Output name per input: its stem, or ``stem.ext`` where two inputs share a stem."""
    stems = [p.stem for p in paths]
    return [p.name if stems.count(p.stem) > 1 else p.stem for p in paths]


def _run_over_files(
    args: argparse.Namespace, process: Callable[[Path, str, Path], dict], what: str
) -> tuple[list[dict], list[dict]]:
    """Apply ``process(path, stem, out_dir)`` to every input; bad files are reported and skipped."""
    from tqdm import tqdm

    from .image_utils import list_image_files

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = list_image_files(args.inputs)
    if not paths:
        print(f"error: no images found in {args.inputs}", file=sys.stderr)
    done, failed = [], []
    for path, stem in zip(tqdm(paths, desc=what, unit="img", file=sys.stderr), _output_stems(paths)):
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


def _load_model(args: argparse.Namespace):
    from .segmentation import BASELINES, load_boundary_model

    if args.model in BASELINES:
        return None
    return load_boundary_model(args.model, **_model_options(args))


def cmd_segment(args: argparse.Namespace) -> int:
    from PIL import Image

    from .image_utils import load_image
    from .segmentation import SegmentationSettings, segment_image
    from .segmentation.visualize import save_composite

    settings = SegmentationSettings(  # validated before any model loads or file is read
        args.model,
        _model_options(args),
        threshold=args.threshold,
        max_tokens=args.max_tokens,
        min_area=args.min_area,
        merge=args.merge,
        assign=args.assign,
        seeds=args.seeds,
    )
    model = _load_model(args)

    def process(path: Path, stem: str, out_dir: Path) -> dict:
        image = load_image(path)
        probs = None if model is None else model.predict([image])[0]
        label_map = segment_image(image, settings, boundary_probs=probs)
        save_composite(out_dir / f"{stem}.png", image, label_map, probs, args.threshold)
        if args.save_labels == "npy":
            np.save(out_dir / f"{stem}.npy", label_map.astype(np.int32))
        elif args.save_labels == "png":
            if label_map.max() > 65535:
                raise ValueError(
                    f"{path}: {label_map.max() + 1} regions do not fit a 16-bit PNG; use --save-labels npy"
                )
            Image.fromarray(label_map.astype(np.uint16)).save(out_dir / f"{stem}_labels.png")
        return {"tokens": int(label_map.max()) + 1, "height": image.shape[0], "width": image.shape[1]}

    done, failed = _run_over_files(args, process, "segment")
    summary = {
        "model": args.model,
        "threshold": args.threshold,
        "max_tokens": args.max_tokens,
        "images": done,
        "failed": failed,
    }
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    if done:
        tokens = [r["tokens"] for r in done]
        seconds = [r["seconds"] for r in done]
        print(
            f"segmented {len(done)} image(s) into {np.mean(tokens):.1f} tokens on average "
            f"({np.mean(seconds):.2f} s/image); wrote {args.out}",
            file=sys.stderr,
        )
    if failed:
        print(f"{len(failed)} file(s) failed: {', '.join(f['file'] for f in failed)}", file=sys.stderr)
    return 1 if failed or not done else 0


def cmd_boundary(args: argparse.Namespace) -> int:
    from PIL import Image

    from .image_utils import load_image
    from .segmentation import BASELINES

    if args.model in BASELINES:
        print(f"error: {args.model} is a baseline tokenizer and has no boundary map", file=sys.stderr)
        return 2
    model = _load_model(args)

    def process(path: Path, stem: str, out_dir: Path) -> dict:
        image = load_image(path)
        [probs] = model.predict([image])
        Image.fromarray(np.round(probs * 255).astype(np.uint8)).save(out_dir / f"{stem}.png")
        return {"height": image.shape[0], "width": image.shape[1]}

    done, failed = _run_over_files(args, process, "boundary")
    if failed:
        print(f"{len(failed)} file(s) failed: {', '.join(f['file'] for f in failed)}", file=sys.stderr)
    return 1 if failed or not done else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="subobject-vlm", description="Subobject-level image tokenization.")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser(
        "segment", help="segment images into subobjects; writes PNGs, label maps, summary.json"
    )
    _add_model_arguments(seg, baselines=True)
    seg.add_argument(
        "--max-tokens", type=int, default=None, help="at most N tokens (regions are merged, never dropped)"
    )
    seg.add_argument("--threshold", type=float, default=0.1, help="EPOC boundary threshold (default 0.1)")
    seg.add_argument("--min-area", type=int, default=0, help="merge regions smaller than this many pixels")
    seg.add_argument("--merge", default="weakest_boundary", choices=["weakest_boundary", "smallest_region"])
    seg.add_argument("--assign", default="watershed", choices=["watershed", "nearest"])
    seg.add_argument(
        "--seeds",
        default="threshold",
        choices=["threshold", "minima"],
        help="EPOC seeds: components under the threshold, or also every regional minimum (fills the budget)",
    )
    seg.add_argument("--save-labels", choices=["npy", "png"], default=None, help="also write the label maps")
    seg.set_defaults(func=cmd_segment)

    bnd = sub.add_parser("boundary", help="write 8-bit boundary probability maps")
    _add_model_arguments(bnd, baselines=False)
    bnd.set_defaults(func=cmd_boundary)

    from .evaluation.bsds_eval import add_eval_bsds_arguments, cmd_eval_bsds

    evaluate = sub.add_parser(
        "eval-bsds",
        help="BSDS500 boundary benchmark (ODS/OIS/AP) and token metrics vs baselines at equal counts",
    )
    add_eval_bsds_arguments(evaluate).set_defaults(func=cmd_eval_bsds)

    from .training.train_boundary import add_train_boundary_parser

    add_train_boundary_parser(sub)

    from .conversion import add_convert_arguments, cmd_convert
    from .training.train_vlm import add_train_arguments, cmd_train

    convert = sub.add_parser("convert", help="build a SubobjectLlava from a llava-hf LLaVA checkpoint")
    add_convert_arguments(convert).set_defaults(func=cmd_convert)
    train = sub.add_parser("train", help="fine-tune a SubobjectLlava with LoRA from a YAML config")
    add_train_arguments(train).set_defaults(func=cmd_train)

    from .evaluation.token_efficiency import add_compare_arguments, cmd_compare

    compare = sub.add_parser(
        "compare-tokenizers",
        help="train the same small VLM per tokenizer and token budget; compare val perplexity and accuracy",
    )
    add_compare_arguments(compare).set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "max_tokens", None) is not None and args.max_tokens < 1:
        parser.error("--max-tokens must be a positive integer")
    try:
        return args.func(args)
    except (ValueError, OSError) as error:  # bad model name, unreadable checkpoint, ...: one clear line
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

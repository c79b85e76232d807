"""``subobject-vlm precompute INPUT --out DIR``: the label maps of a whole dataset, once, as sharded Arrow files.

One machine: ``subobject-vlm precompute llava.json --out tokens --num-workers 4``. Several machines (or GPUs):
``torchrun --nnodes N --nproc_per_node K -m subobject_vlm.commands.precompute llava.json --out tokens`` (rank 0
merges when every rank is done), or ``--shard i/n`` on each machine, then ``subobject-vlm precompute-merge
tokens``. Rerun the same command to resume after a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading

from ..segmentation.settings import DEFAULT_LABEL_SIZE, MERGE_ORDERS, SegmentationSettings
from ._options import add_segmentation_arguments

NAME = "precompute"
HELP = "segment a dataset once (image folder, LLaVA JSON/JSONL, HF dataset) into sharded Arrow label maps"
DESCRIPTION = __doc__.split("\n\n", 1)[1].strip().replace("``", "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", help="an image folder, a LLaVA .json/.jsonl file, or an HF dataset folder/name"
    )
    parser.add_argument("--out", required=True, help="output folder (created; a rerun resumes there)")
    data = parser.add_argument_group("input")
    data.add_argument(
        "--image-folder",
        default=None,
        help="LLaVA file: the folder of its image paths (default: the file's folder)",
    )
    data.add_argument("--split", default="train", help="HF dataset: the split")
    data.add_argument("--image-column", default="image", help="LLaVA file / HF dataset: the image column")
    data.add_argument(
        "--key-column", default=None, help="HF dataset: a column of unique ids (default: row index)"
    )
    tokenizer = parser.add_argument_group(
        "tokenizer (default: a saved --processor's settings, else those shown)"
    )
    tokenizer.add_argument(
        "--processor",
        default=None,
        help="take every setting from a saved image processor or model checkpoint folder (the options below "
        "override it)",
    )
    add_segmentation_arguments(tokenizer)
    # --merge-order: the old name of --merge here, kept working
    tokenizer.add_argument("--merge-order", dest="merge", choices=MERGE_ORDERS, help=argparse.SUPPRESS)
    tokenizer.add_argument(
        "--label-size",
        type=int,
        nargs="+",
        default=None,
        metavar="SIZE",
        help="label map size: H (square) or H W (default: a --processor's, else "
        f"{DEFAULT_LABEL_SIZE[0]} {DEFAULT_LABEL_SIZE[1]})",
    )
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--num-workers", type=int, default=1, help="processes on this machine")
    run_group.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="this machine's part (default: RANK / WORLD_SIZE of torchrun or accelerate, else 0/1)",
    )
    run_group.add_argument("--shard-size", type=int, default=1000, help="images per output shard")
    run_group.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="images per boundary-model call (1: exactly the maps of processor(image); more: of "
        "processor.segment(batch))",
    )
    run_group.add_argument("--threads", type=int, default=None, help="torch threads per worker")


def _settings(args: argparse.Namespace) -> tuple[SegmentationSettings, tuple[int, int]]:
    """How the label maps are made: a saved processor's settings (``--processor``, else the processor's
    defaults), the options given replacing theirs; ``(settings, (label_height, label_width))``."""
    from ..image_processing_subobject import SubobjectImageProcessor

    if args.processor is None:
        processor = SubobjectImageProcessor(cache_size=0)
    else:
        from transformers import AutoImageProcessor

        import subobject_vlm  # noqa: F401 - registers the Auto classes

        processor = AutoImageProcessor.from_pretrained(args.processor)
        if not hasattr(processor, "segmentation_settings"):
            raise ValueError(
                f"{args.processor} holds a {type(processor).__name__}, not a SubobjectImageProcessor"
            )
    base, label_size = processor.segmentation_settings()
    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per torchrun process
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    settings = SegmentationSettings.from_args(args, base=base, device=device)
    if args.label_size is not None:
        if len(args.label_size) not in (1, 2) or min(args.label_size) < 1:
            raise ValueError(
                f"--label-size takes H or H W, positive numbers of pixels, got {args.label_size}"
            )
        label_size = tuple((args.label_size * 2)[:2])
    return settings, label_size


RUN_NUMBERS = ("num_workers", "shard_size", "batch_size", "threads")  # positive integers (threads: or None)


def _check_run_numbers(args: argparse.Namespace) -> None:
    for name in RUN_NUMBERS:
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")


@contextlib.contextmanager
def _sigterm_stops_the_run():
    """While the block runs, SIGTERM ends it as Ctrl-C does (workers stopped, the shards in progress dropped,
    the complete ones kept), with one line and exit status 143, instead of killing this process outright."""

    class Terminated(SystemExit):
        pass

    def stop(signum, frame):
        raise Terminated(128 + signal.SIGTERM)

    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except Terminated:
        print("precompute: stopped by SIGTERM; complete shards are kept: rerun to resume", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    _check_run_numbers(args)
    from ..data.precompute import open_source, precompute, resolve_rank
    from ._files import quiet_third_parties

    rank, world_size = resolve_rank(args.shard)
    settings = _settings(args)  # validated here, before any image is read
    source = open_source(args.input, args.image_folder, args.split, args.image_column, args.key_column)
    quiet_third_parties()
    with _sigterm_stops_the_run():
        summary = precompute(
            source,
            args.out,
            settings,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            rank=rank,
            world_size=world_size,
            torch_threads=args.threads,
        )
    if "merged" not in summary and args.shard is None:  # under torchrun: the last rank's work ends in a merge
        merged = _merge_when_every_rank_is_done(args.out, rank, world_size)
        if merged is not None:
            summary["merged"] = merged
    rate = summary["images_made"] / summary["seconds"] if summary["seconds"] else 0.0
    print(
        f"rank {rank}/{world_size}: {summary['shards']} shard(s), {summary['shards_made']} made now "
        f"({summary['images_made']} images, {rate:.1f} images/s)",
        file=sys.stderr,
    )
    for line in summary["redone"]:
        print(f"redid {line}", file=sys.stderr)
    for failure in summary["failed_now"][:10]:
        print(f"skipped {failure['key']}: {failure['error']}", file=sys.stderr)
    if "merged" in summary:
        index = summary["merged"]
        print(
            f"wrote {args.out}: {index['num_rows']} label maps, {index['num_failed']} failed image(s) "
            f"(listed in {args.out}/precompute.json)",
            file=sys.stderr,
        )
        print(json.dumps({k: index[k] for k in ("num_images", "num_rows", "num_failed")}))
    elif rank != 0 and "MASTER_ADDR" in os.environ and args.shard is None:
        print(f"rank {rank}: done; rank 0 merges {args.out}", file=sys.stderr)
    else:
        print(f"when every rank is done: subobject-vlm precompute-merge {args.out}", file=sys.stderr)
    return 0


def _merge_when_every_rank_is_done(out: str, rank: int, world_size: int) -> dict | None:
    """Under torchrun (``MASTER_ADDR`` set, several ranks): wait for every rank at a gloo barrier, then rank 0
    merges; the merged index on rank 0, ``None`` elsewhere or where no process group can be formed (ranks
    started by hand with ``--shard``, or by a launcher without a rendezvous: merge with ``precompute-merge``)."""
    if world_size <= 1 or "MASTER_ADDR" not in os.environ:
        return None
    from datetime import timedelta

    import torch.distributed as dist

    from ..data.precompute import merge_precomputed

    try:  # a corpus may take the ranks days, and they finish at different times
        dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(days=7))
    except (RuntimeError, ValueError) as error:
        print(f"rank {rank}: no process group ({error}); merge with precompute-merge", file=sys.stderr)
        return None
    try:
        dist.barrier()
        merged = None
        if rank == 0:
            try:
                merged = merge_precomputed(out)
            except ValueError as error:  # e.g. each machine wrote its own folder: the shards are all fine
                print(f"rank 0: not merged ({error})", file=sys.stderr)
        dist.barrier()  # no rank exits (and tears the group down) before the merge is written
        return merged
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":  # python -m subobject_vlm.commands.precompute ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("precompute"))

"""The run: plan the shards of a source, check what an earlier run left in the output folder, make the shards
of this rank that are missing, broken or stale (in this process or a pool of workers), and merge."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ...atomic import remove_stale_temporaries, write_json
from ...caching import digest, file_fingerprint
from ...image_utils import MAX_PNG_LABELS
from ...segmentation.registry import LABEL_MAP
from ...segmentation.settings import DEFAULT_MAX_TOKENS, SegmentationSettings
from .format import FORMAT, PLAN_NAME, describe_difference, open_shard, read_plan, settings_record, shard_name
from .maker import Job, ShardMaker
from .merge import merge_precomputed

Entries = list[tuple[str, str | int]]  # (key, reference) per image, in the source's order


def precompute(
    source,
    out: str | os.PathLike,
    settings: tuple[SegmentationSettings, tuple[int, int]],
    *,
    shard_size: int = 1000,
    batch_size: int = 1,
    num_workers: int = 1,
    rank: int = 0,
    world_size: int = 1,
    torch_threads: int | None = None,
    merge: bool | None = None,
    progress: bool = True,
) -> dict:
    """Make (or finish) the shards of rank ``rank`` of ``world_size`` in ``out``; returns a summary.

    Args:
        source: the images: an ``ImageSource`` (see :func:`open_source`) or ``RowImages``.
        out: output folder (created); reruns resume there.
        settings: ``(SegmentationSettings, (label_height, label_width))``, e.g. a processor's
            ``segmentation_settings()``.
        shard_size: images per shard (memory holds one shard's rows per worker).
        batch_size: images per boundary-model call. 1 gives exactly the label maps of
            ``processor(image)``; larger batches those of ``processor.segment(batch)`` (images of different sizes
            are padded together, which moves boundary probabilities slightly).
        num_workers: processes, each loading the boundary model once.
        rank, world_size: this process's part: shards ``s`` with ``s % world_size == rank``.
        torch_threads: threads per worker (default: the cores shared out among the workers).
        merge: merge when done (default: when ``world_size == 1``).
    """
    segmentation, label_size = settings
    _check_positive_integers(
        shard_size=shard_size,
        batch_size=batch_size,
        num_workers=num_workers,
        torch_threads=1 if torch_threads is None else torch_threads,
    )
    _check_png_capacity(segmentation, label_size)
    entries = source.entries()
    if not entries:
        raise ValueError(f"no images in {source.path}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = [entries[start : start + shard_size] for start in range(0, len(entries), shard_size)]
    plan = _plan(source, settings_record(segmentation, label_size), shards, shard_size, batch_size)
    _write_or_check_plan(out, plan)

    mine = [s for s in range(len(shards)) if s % world_size == rank]
    remove_stale_temporaries(out, [shard_name(s, len(shards)) for s in mine])
    settings_digest = digest(plan["settings"])
    redone = {s: why for s in mine if (why := _why_remake(out, s, shards[s], plan, settings_digest))}
    threads = torch_threads or (max(1, (os.cpu_count() or 1) // num_workers) if num_workers > 1 else None)
    job = Job(source, segmentation, label_size, str(out), len(shards), settings_digest, batch_size, threads)
    start = time.perf_counter()
    label = f"precompute (rank {rank}/{world_size})" if world_size > 1 else "precompute"
    results = _make_shards(job, list(redone), shards, mine, num_workers, label, progress)
    summary = {
        "rank": rank,
        "world_size": world_size,
        "shards": len(mine),
        "shards_made": len(redone),
        "images_made": sum(r["made"] for r in results),
        "failed_now": [f for r in results for f in r["failed"]],
        "redone": [f"{shard_name(s, len(shards))}: {why}" for s, why in redone.items() if why != "missing"],
        "seconds": round(time.perf_counter() - start, 3),
        "out": str(out),
    }
    if merge if merge is not None else world_size == 1:
        summary["merged"] = merge_precomputed(out)
    return summary


def _check_positive_integers(**numbers: int) -> None:
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_png_capacity(settings: SegmentationSettings, label_size: tuple[int, int]) -> None:
    """Refuse, before any work, settings that could give more regions than a 16-bit PNG holds."""
    max_tokens = settings.max_tokens or (DEFAULT_MAX_TOKENS if settings.kind == LABEL_MAP else None)
    if (max_tokens is None or max_tokens > MAX_PNG_LABELS) and label_size[0] * label_size[1] > MAX_PNG_LABELS:
        raise ValueError(
            f"label maps are stored as 16-bit PNGs (at most {MAX_PNG_LABELS} regions): set max_tokens <= "
            f"{MAX_PNG_LABELS} (got {settings.max_tokens})"
        )


def _plan(source, record: dict, shards: list[Entries], shard_size: int, batch_size: int) -> dict:
    """The plan of the run: what decides the shards' content, and which images each shard holds."""
    from ... import __version__

    return {
        "format": FORMAT,
        "version": __version__,
        "settings": record,
        "source": source.describe(),
        "num_images": sum(len(shard) for shard in shards),
        "shard_size": shard_size,
        "batch_size": batch_size,  # batches of images of different sizes are padded together: part of the result
        "num_shards": len(shards),
        "shard_digests": [digest([key for key, _ in shard]) for shard in shards],
    }


def _write_or_check_plan(out: Path, plan: dict) -> None:
    """Write the plan, or check that the one already in ``out`` describes the same run."""
    path = out / PLAN_NAME
    if not path.exists():
        write_json(path, plan)  # several ranks may write it at once: same content, atomic
        return
    existing = read_plan(out)
    if existing.get("settings") != plan["settings"]:
        raise ValueError(
            f"{out} holds label maps made with other settings ({describe_difference(existing['settings'], plan['settings'])}); "
            "use another output folder, or the same settings to resume"
        )
    for key, what in (
        ("num_images", "images"),
        ("shard_size", "shard size"),
        ("batch_size", "batch size"),
        ("shard_digests", "images (same count, other keys or order)"),
    ):
        if existing.get(key) != plan[key]:
            raise ValueError(
                f"{out} was started for other {what} ({PLAN_NAME}: {key} {existing.get(key) if key != 'shard_digests' else '...'}); "
                "use another output folder, or the same input, --shard-size and --batch-size to resume"
            )


def _why_remake(out: Path, shard: int, entries: Entries, plan: dict, settings_digest: str) -> str:
    """Why shard ``shard`` must be made (again): ``"missing"``, unreadable, other settings or images, images changed
    since (by ``caching.file_fingerprint``); ``""`` if it is complete and current."""
    path = out / shard_name(shard, plan["num_shards"])
    if not path.exists():
        return "missing"
    try:
        found = open_shard(path)
    except ValueError as error:
        return str(error).removeprefix(f"{path} is ")
    if found.metadata["settings_digest"] != settings_digest:
        return "made with other settings"
    if found.metadata["keys_digest"] != plan["shard_digests"][shard]:
        return "made for other images"
    before = found.fingerprints()
    changed = [key for key, reference in entries if file_fingerprint(reference) != before[key]]
    if changed:
        more = ", ..." if len(changed) > 3 else ""
        return f"{len(changed)} image(s) changed since it was made ({', '.join(changed[:3])}{more})"
    return ""


def _make_shards(
    job: Job,
    todo: list[int],
    shards: list[Entries],
    mine: list[int],
    num_workers: int,
    label: str,
    progress: bool,
) -> list[dict]:
    """Make the shards ``todo`` (of this rank's ``mine``) in this process or a pool; progress per image."""
    from tqdm import tqdm

    from .workers import run_in_pool

    bar = tqdm(
        total=sum(len(shards[s]) for s in mine),
        initial=sum(len(shards[s]) for s in mine if s not in todo),
        desc=label,
        unit="img",
        file=sys.stderr,
        disable=not progress,
    )
    with bar:
        if not todo:
            return []
        if num_workers == 1:
            maker = ShardMaker(job, bar.update)
            return [maker.make_shard(s, shards[s]) for s in todo]
        return run_in_pool(job, num_workers, todo, dict(enumerate(shards)), bar)


def resolve_rank(shard: str | None = None, environ: dict | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` from ``--shard i/n``, else torchrun / accelerate's ``RANK`` and ``WORLD_SIZE``,
    else ``(0, 1)``. Both given and different is an error."""
    environ = os.environ if environ is None else environ
    from_env = None
    if "WORLD_SIZE" in environ or "RANK" in environ:
        try:
            from_env = int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1"))
        except ValueError:
            raise ValueError(
                f"RANK / WORLD_SIZE must be integers, got {environ.get('RANK')!r}, {environ.get('WORLD_SIZE')!r}"
            ) from None
    if shard is None:
        rank, world = from_env or (0, 1)
    else:
        try:
            rank, world = (int(part) for part in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must be i/n (e.g. 0/4), got {shard!r}") from None
        if from_env is not None and from_env[1] > 1 and from_env != (rank, world):
            raise ValueError(f"--shard {shard} contradicts RANK={from_env[0]} WORLD_SIZE={from_env[1]}")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world size): got rank {rank} of {world}")
    return rank, world


__all__ = ["precompute", "resolve_rank"]

"""The merge: check that the shards of an output folder make one complete run (every shard there and readable,
made with the plan's settings for the plan's images, every image once), and write its index."""

from __future__ import annotations

import os
from pathlib import Path

from ...atomic import write_json
from ...caching import digest
from .format import FORMAT, INDEX_NAME, PLAN_NAME, open_shard, read_plan, shard_name

OLD_DATASET_FILES = ("dataset_info.json", "state.json")  # written by hand by earlier versions: removed


def merge_precomputed(out: str | os.PathLike) -> dict:
    """Check the shards of ``out`` and write its index (``precompute.json``); returns the index.

    Raises ``ValueError`` naming what is wrong: a broken plan, a missing or unreadable shard, one made with
    other settings or for other images, an image present twice.
    """
    out = Path(out)
    if not (out / PLAN_NAME).is_file():
        raise ValueError(f"{out} has no {PLAN_NAME}: not the output folder of subobject-vlm precompute")
    plan = read_plan(out)
    names = [shard_name(s, plan["num_shards"]) for s in range(plan["num_shards"])]
    _check_every_shard_is_there(out, names)
    num_rows, failed = _check_shards(out, plan, names)
    index = {
        "format": FORMAT,
        "version": plan["version"],
        "settings": plan["settings"],
        "source": plan["source"],
        "num_images": plan["num_images"],
        "num_rows": num_rows,
        "num_failed": len(failed),
        "failed": failed,
        "shards": names,
    }
    for name in OLD_DATASET_FILES:  # they would describe the shards as they were: datasets' state, stale
        (out / name).unlink(missing_ok=True)
    write_json(out / INDEX_NAME, index)  # last: its presence means merged and complete
    return index


def _check_every_shard_is_there(out: Path, names: list[str]) -> None:
    missing = [name for name in names if not (out / name).is_file()]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(names)} shards are missing in {out} ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): run precompute again (it resumes) on every rank"
        )


def _check_shards(out: Path, plan: dict, names: list[str]) -> tuple[int, list[dict]]:
    """Open and check every shard against the plan; ``(rows, failures)`` over all of them."""
    settings_digest = digest(plan["settings"])
    seen: set[str] = set()
    failed: list[dict] = []
    num_rows = 0
    for s, name in enumerate(names):
        try:
            shard = open_shard(out / name)
        except ValueError as error:
            raise ValueError(f"{error}: rerun precompute (it makes broken shards again)") from None
        metadata = shard.metadata
        if metadata["settings_digest"] != settings_digest:
            raise ValueError(f"{out / name} was made with other settings than {PLAN_NAME} names")
        if metadata["keys_digest"] != plan["shard_digests"][s]:
            raise ValueError(f"{out / name} does not hold the images {PLAN_NAME} assigns to shard {s}")
        keys = shard.fingerprints()  # every image of the shard (rows and failures)
        twice = seen.intersection(keys)
        if twice:
            raise ValueError(f"images in more than one shard: {', '.join(sorted(twice)[:5])}")
        seen.update(keys)
        num_rows += len(shard.columns["key"])
        failed += [{k: f.get(k) for k in ("key", "error", "fingerprint")} for f in metadata["failed"]]
    if len(seen) != plan["num_images"]:  # pragma: no cover - implied by the digests
        raise ValueError(f"{out}: {len(seen)} images in the shards, {plan['num_images']} planned")
    return num_rows, failed


__all__ = ["merge_precomputed"]

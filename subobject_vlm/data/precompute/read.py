"""Reading a merged output folder: its index, its rows as a memory-mapped ``datasets.Dataset`` (built by
``datasets`` itself from the shard files), and the check that it was made with given settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...segmentation.settings import SegmentationSettings
from .format import (
    INDEX_FIELDS,
    INDEX_NAME,
    PLAN_NAME,
    describe_difference,
    features,
    read_record,
    settings_record,
)


def read_index(path: str | os.PathLike) -> dict:
    """The ``precompute.json`` of a merged output folder (``ValueError`` if the folder is not one)."""
    path = Path(path)
    if not (path / INDEX_NAME).is_file():
        hint = (
            "run subobject-vlm precompute-merge on it first"
            if (path / PLAN_NAME).is_file()
            else "not a subobject-vlm precompute output"
        )
        raise ValueError(f"{path} has no {INDEX_NAME}: {hint}")
    index = read_record(path / INDEX_NAME, INDEX_FIELDS)
    if not all(isinstance(f, dict) and isinstance(f.get("key"), str) for f in index["failed"]):
        raise ValueError(f"{path / INDEX_NAME}: field 'failed' must list objects with a 'key' and an 'error'")
    return index


def load_precomputed(path: str | os.PathLike):
    """The precomputed dataset of a merged output folder: a ``datasets.Dataset`` memory-mapping its shards, one
    row per image in the source's order (failed images left out); its ``info.description`` is the JSON of the
    settings and package version, its fingerprint ``datasets``' own (it changes when a shard is made again)."""
    import datasets

    index = read_index(path)
    summary = {k: index[k] for k in ("format", "version", "settings", "num_rows", "num_failed")}
    info = datasets.DatasetInfo(description=json.dumps(summary), features=features())
    shards = [datasets.Dataset.from_file(str(Path(path) / name), info=info) for name in index["shards"]]
    return shards[0] if len(shards) == 1 else datasets.concatenate_datasets(shards, info=info)


def check_settings(path: str | os.PathLike, settings: tuple[SegmentationSettings, tuple[int, int]]) -> dict:
    """The index of ``path`` if its label maps were made with ``settings``; else ``ValueError`` naming the
    settings that differ."""
    index = read_index(path)
    ours = settings_record(*settings)
    if index["settings"] != ours:
        raise ValueError(
            f"{path} was precomputed with other settings than the image processor's "
            f"({describe_difference(index['settings'], ours)})"
        )
    return index


__all__ = ["check_settings", "load_precomputed", "read_index"]

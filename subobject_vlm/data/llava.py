"""LLaVA-format records: reading ``.json`` / ``.jsonl`` files, their image keys, their turns and images.

The one place these are read, below both training (``training/vlm_data/``) and dataset tokenization
(``data/precompute/``), so data flows one way.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import Any

import numpy as np

from ..image_utils import load_image, to_rgb_uint8

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class DataError(ValueError):
    """Training data that cannot be used (missing images, broken records); the message names the problem."""


def read_records(path: Path) -> list[dict]:
    """The records of a LLaVA ``.json`` (a list) or ``.jsonl`` (one record a line) file."""
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    records = json.loads(text)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


def printable_name(name: str) -> str:
    """``name`` as valid UTF-8: the bytes of a file name that is not UTF-8 (``os.fsdecode``'s surrogate escapes,
    or lone surrogates read from JSON) written as ``\\xNN`` / ``\\udcNN``; other names unchanged."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        try:
            return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return name.encode("utf-8", "backslashreplace").decode("utf-8")


def image_key(name: str | os.PathLike) -> str:
    """The key of an image file named by a LLaVA record (or relative to an image folder): its normalised posix
    path, e.g. ``"coco/train2017/1.jpg"``, in valid UTF-8 (:func:`printable_name`); how precomputed label maps
    are found again."""
    return printable_name(posixpath.normpath(str(name).replace("\\", "/")))


def record_images(record: Any, column: str, where: str) -> list[str]:
    """The image file names of a LLaVA record: ``[]`` without image (no ``column``, ``None``, ``""``, ``[]``),
    ``[name]`` for a string, the names of a list of strings. Anything else is a ``DataError`` naming ``where``
    (e.g. ``"data.json: record 3"``)."""
    if not isinstance(record, dict):
        raise DataError(
            f"{where} is a JSON {type(record).__name__}, not an object with {column!r} and conversations"
        )
    value = record.get(column)
    names = value if isinstance(value, list) else [value] if value not in (None, "") else []
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise DataError(
            f"{where}: {column!r} must be an image file name or a list of them, got "
            f"{type(value).__name__} {json.dumps(value)[:80]}"
        )
    return names


def normalise_turns(turns: Any, where: str) -> list[dict[str, str]]:
    """LLaVA ``{from, value}`` or chat ``{role, content}`` turns -> ``[{"from": ..., "value": ...}]``."""
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: conversations must be a non-empty list of turns")
    out = []
    for turn in turns:
        speaker = turn.get("from", turn.get("role")) if isinstance(turn, dict) else None
        value = turn.get("value", turn.get("content")) if isinstance(turn, dict) else None
        if speaker not in ROLES or not isinstance(value, str):
            raise DataError(
                f"{where}: bad turn {turn!r}; expected {{'from': human|gpt|system, 'value': str}}"
            )
        out.append({"from": speaker, "value": value})
    return out


def load_rgb(image: Any, where: str) -> np.ndarray:
    """(H, W, 3) uint8 from a path, PIL image or array; ``DataError`` naming ``where`` if unreadable."""
    try:
        return load_image(image) if isinstance(image, (str, os.PathLike)) else to_rgb_uint8(image, name=where)
    except Exception as error:  # noqa: BLE001 - name the sample whatever went wrong
        raise DataError(
            f"{where}: cannot read image {image if isinstance(image, str) else ''}: {error}"
        ) from None


__all__ = [
    "ROLES",
    "DataError",
    "image_key",
    "load_rgb",
    "normalise_turns",
    "printable_name",
    "read_records",
    "record_images",
]

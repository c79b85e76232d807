"""Reading the training conversations: a LLaVA JSON/JSONL file, a ``save_to_disk`` folder or a hub dataset, as a
``datasets.Dataset`` with the columns ``image`` and ``conversations`` (and ``image_key``, on request)."""

from __future__ import annotations

import os
from pathlib import Path

from ...data.llava import DataError, image_key, normalise_turns, read_records, record_images


def load_conversations(
    path: str | os.PathLike,
    image_folder: str | os.PathLike | None = None,
    split: str = "train",
    image_column: str = "image",
    conversations_column: str = "conversations",
    limit: int | None = None,
    with_keys: bool = False,
):
    """A ``datasets.Dataset`` with columns ``image`` (absolute path, PIL image or ``None``) and ``conversations``.

    ``path``: a LLaVA ``.json``/``.jsonl`` file (image paths relative to ``image_folder``, default the file's
    folder), a ``save_to_disk`` folder, or a dataset name for ``load_dataset``. Raises ``DataError`` naming
    missing image files. ``with_keys`` adds ``image_key`` (``None`` without image): :func:`image_key` of the
    record's image for a LLaVA file, the row index for a dataset, as ``subobject-vlm precompute`` names them.
    """
    path = Path(path)
    if path.suffix in (".json", ".jsonl"):
        if not path.is_file():
            raise DataError(f"conversation file {path} does not exist")
        folder = Path(image_folder) if image_folder is not None else path.parent
        return _from_llava_file(path, folder, image_column, conversations_column, limit, with_keys)
    return _from_dataset(path, split, image_column, conversations_column, limit, with_keys)


def _from_llava_file(
    path: Path, folder: Path, image_column: str, conversations_column: str, limit: int | None, with_keys: bool
):
    """The records of a LLaVA file, one image (or none) each, its path made absolute; missing files named."""
    import datasets

    images, keys, conversations = [], [], []
    for i, record in enumerate(read_records(path)[:limit]):
        where = f"{path}: record {i}"
        if not isinstance(record, dict) or conversations_column not in record:
            raise DataError(f"{where} has no {conversations_column!r} list")
        names = record_images(record, image_column, where)
        if len(names) > 1:  # the model takes several per sample; this pipeline's columns hold one
            raise DataError(
                f"{where} has {len(names)} images; training takes one image per sample "
                "(split the record, or keep one image)"
            )
        images.append(str((folder / names[0]).resolve()) if names else None)
        keys.append(image_key(names[0]) if names else None)
        conversations.append(normalise_turns(record[conversations_column], where))
    missing = [p for p in images if p is not None and not Path(p).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {path} are missing from {folder}: {', '.join(missing[:5])}"
        )
    columns = {"image": images, "conversations": conversations}
    if with_keys:
        columns["image_key"] = keys
    return datasets.Dataset.from_dict(columns)


def _from_dataset(
    path: Path, split: str, image_column: str, conversations_column: str, limit: int | None, with_keys: bool
):
    """A ``save_to_disk`` folder (a dataset, or a dataset dict and its ``split``) or a hub dataset, its two
    columns renamed ``image`` and ``conversations``."""
    import datasets

    if path.is_dir() and (path / "dataset_dict.json").exists():
        dataset = datasets.load_from_disk(str(path))[split]
    elif path.is_dir() and (path / "dataset_info.json").exists():
        dataset = datasets.load_from_disk(str(path))
    else:
        dataset = datasets.load_dataset(str(path), split=split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    for column in (image_column, conversations_column):
        if column not in dataset.column_names:
            raise DataError(f"dataset {path} has no column {column!r} (columns: {dataset.column_names})")
    dataset = dataset.select_columns([image_column, conversations_column])
    if image_column != "image":
        dataset = dataset.rename_column(image_column, "image")
    if conversations_column != "conversations":
        dataset = dataset.rename_column(conversations_column, "conversations")
    if with_keys:  # the row index (before ``limit``, which keeps the first rows)
        dataset = dataset.add_column("image_key", [str(i) for i in range(len(dataset))])
    return dataset


__all__ = ["load_conversations"]

"""Where the images are: an image folder, a LLaVA JSON/JSONL file, an HF dataset (:class:`ImageSource`), or the
image column of a ``datasets.Dataset`` already open (:class:`RowImages`, training's conversations). Each lists its
images as ``(key, reference)`` pairs in a fixed order, and tells a worker how to read a reference."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...caching import digest
from ...image_utils import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class ImageSource:
    """Where the images are: ``kind`` is ``folder`` (image files under ``path``, recursively), ``llava`` (the
    ``image`` entries of a LLaVA JSON/JSONL file, relative to ``image_folder``) or ``dataset`` (an HF dataset:
    a ``save_to_disk`` folder or a hub name; key = ``key_column`` or the row index)."""

    kind: str
    path: str
    image_folder: str | None = None
    split: str = "train"
    image_column: str = "image"
    key_column: str | None = None

    def entries(self) -> list[tuple[str, str | int]]:
        """``(key, reference)`` per image, in a fixed order: reference is a file path or a row index."""
        from ..llava import image_key, printable_name, read_records, record_images

        if self.kind == "folder":  # a file name that is not UTF-8 gets a printable key (and fails by it)
            return [(printable_name(k), os.path.join(self.path, k)) for k in _walk_images(Path(self.path))]
        if self.kind == "llava":
            folder = Path(self.image_folder) if self.image_folder else Path(self.path).parent
            seen: dict[str, str] = {}
            for i, record in enumerate(read_records(Path(self.path))):
                for name in record_images(record, self.image_column, f"{self.path}: record {i}"):
                    seen.setdefault(image_key(name), str(folder / name))  # shared images are segmented once
            return list(seen.items())
        dataset = self.open_dataset()
        if self.key_column is None:
            return [(str(i), i) for i in range(len(dataset))]
        keys = [printable_name(str(k)) for k in dataset[self.key_column]]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.path}: the key column {self.key_column!r} holds duplicate values")
        return [(key, i) for i, key in enumerate(keys)]

    def open_dataset(self):
        """The HF dataset (``kind == "dataset"``), its image column checked."""
        dataset = _open_dataset(self.path, self.split)
        for column in (self.image_column, self.key_column):
            if column is not None and column not in dataset.column_names:
                raise ValueError(
                    f"dataset {self.path} has no column {column!r} (columns: {dataset.column_names})"
                )
        return dataset

    def reader(self) -> Callable[[str | int], Any] | None:
        """How a worker reads a reference (called once in each worker): ``None`` for file paths, read as they
        are; a dataset's row index gives the row's image (a PIL image or a path)."""
        if self.kind != "dataset":
            return None
        return _RowReader(self.open_dataset(), self.image_column)

    def describe(self) -> dict:
        """The source as the plan records it."""
        return asdict(self)


class RowImages:
    """The images of the ``column`` of a ``datasets.Dataset`` already open (training's conversations): a file
    path is keyed by itself, an image held in the row by the row index; a row without image (a text-only sample)
    has none. ``keys`` holds each row's key, ``entries()`` each distinct image once."""

    kind = "rows"

    def __init__(self, dataset, column: str = "image") -> None:
        from ..llava import printable_name

        self.path = f"the {column!r} column of the training data"
        self.column = column
        if getattr(dataset.features.get(column), "dtype", None) == "string":  # file paths: read as they are
            self.keys = [None if p is None else printable_name(str(p)) for p in dataset[column]]
            self._references = dict(zip(self.keys, dataset[column]))
            self._rows = None
            identity = None  # a file is checked by its fingerprint (size, modification time)
        else:  # images held in the rows: keyed by the row, the dataset's own fingerprint names its content
            present = dataset.with_format("arrow")[column].is_valid().to_pylist()  # no image decoded
            self.keys = [str(i) if has_image else None for i, has_image in enumerate(present)]
            self._references = {key: int(key) for key in self.keys if key is not None}
            self._rows = dataset.select_columns([column])
            identity = dataset._fingerprint  # datasets' content key (read, never written)
        self._references.pop(None, None)
        self.identity = digest([column, list(self._references), identity])

    def entries(self) -> list[tuple[str, str | int]]:
        return list(self._references.items())

    def __getstate__(self) -> dict:
        """What a worker process receives: how to read a reference, not the lists of keys."""
        return {"column": self.column, "_rows": self._rows}

    def reader(self) -> Callable[[str | int], Any] | None:
        return None if self._rows is None else _RowReader(self._rows, self.column)

    def describe(self) -> dict:
        return {"kind": self.kind, "column": self.column, "images": self.identity}


@dataclass(frozen=True)
class _RowReader:
    """A dataset's row index -> the row's image (a PIL image or a path)."""

    dataset: Any
    column: str

    def __call__(self, row: int) -> Any:
        image = self.dataset[row][self.column]
        if image is None:
            raise ValueError("this row has no image")
        return image


def _walk_images(root: Path) -> list[str]:
    """Image files under ``root`` (recursively, by extension), as sorted posix paths relative to ``root``."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        relative = Path(folder).relative_to(root)
        found += [
            (relative / f).as_posix() for f in sorted(files) if Path(f).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found)


def _open_dataset(path: str, split: str):
    import datasets

    folder = Path(path)
    if folder.is_dir() and (folder / "dataset_dict.json").exists():
        dataset_dict = datasets.load_from_disk(str(folder))
        if split not in dataset_dict:
            raise ValueError(f"{path} has no split {split!r} (splits: {list(dataset_dict)})")
        return dataset_dict[split]
    if folder.is_dir():
        return datasets.load_from_disk(str(folder))
    _check_hub_reachable(path)
    try:
        return datasets.load_dataset(path, split=split)
    except Exception as error:  # noqa: BLE001 - offline, unknown name, gated...: one line naming the dataset
        raise OSError(
            f"cannot load the dataset {path!r} from the Hugging Face Hub ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); download it and pass its save_to_disk folder"
        ) from None


def _check_hub_reachable(name: str) -> None:
    """Fail in seconds, not after a minute of retries, when the Hub cannot be reached (offline mode is left to
    ``datasets``, which then reads its cache)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=5).close()
    except OSError as error:
        raise OSError(
            f"cannot load the dataset {name!r}: the Hugging Face Hub ({constants.ENDPOINT}) is unreachable "
            f"({error}); download it elsewhere and pass its save_to_disk folder"
        ) from None


def open_source(
    path: str | os.PathLike,
    image_folder: str | os.PathLike | None = None,
    split: str = "train",
    image_column: str = "image",
    key_column: str | None = None,
) -> ImageSource:
    """An :class:`ImageSource` for ``path``: an image folder, a LLaVA ``.json``/``.jsonl`` file, a
    ``save_to_disk`` folder (holding ``dataset_info.json`` or ``dataset_dict.json``) or a hub dataset name."""
    from ...segmentation.registry import is_hub_id

    folder = Path(path)
    options = {"split": split, "image_column": image_column, "key_column": key_column}
    if folder.suffix in (".json", ".jsonl"):
        if not folder.is_file():
            raise ValueError(f"conversation file {folder} does not exist")
        if image_folder is not None and not Path(image_folder).is_dir():
            raise ValueError(f"image folder {image_folder} is not a folder")
        return ImageSource(
            "llava", str(folder), None if image_folder is None else str(image_folder), **options
        )
    if folder.is_dir() and any(
        (folder / name).exists() for name in ("dataset_info.json", "dataset_dict.json")
    ):
        return ImageSource("dataset", str(folder), **options)
    if folder.is_dir():
        return ImageSource("folder", str(folder))
    if is_hub_id(str(path)):
        return ImageSource("dataset", str(path), **options)
    raise ValueError(f"input not found: {path} (an image folder, a .json/.jsonl file or a dataset folder)")


__all__ = ["ImageSource", "RowImages", "open_source"]

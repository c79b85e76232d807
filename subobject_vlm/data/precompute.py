"""Tokenize a dataset once: the label map of every image of a folder, a LLaVA JSON/JSONL file or an HF dataset,
written as Arrow shards that ``datasets.load_from_disk`` opens memory-mapped.

>>> source = open_source("llava.json")                     # or an image folder, or a save_to_disk folder
>>> precompute(source, "tokens", processor.segmentation_settings(), num_workers=2)
>>> dataset = load_precomputed("tokens")                   # key, label_map (16-bit PNG), num_tokens, boxes, ...
>>> label_map = decode_label_map(dataset[0]["label_map"])  # (h, w) int32, equal to the processor's

Layout of the output folder::

    precompute-plan.json                the run: settings, package version, source, shard size, key digests
    data-00000-of-00012.arrow, ...      one shard per ``shard_size`` images (Arrow stream, HF features); its
                                        schema metadata names the shard, its keys and its failed images
                                        (each row and failure with its image file's size and mtime)
    precompute.json                     written by the merge: settings, version, counts, failed images
    dataset_info.json, state.json       written by the merge: ``datasets.load_from_disk(folder)``

Every image goes to shard ``position // shard_size`` (position in the source's order), so a shard's content
depends on nothing but the source and the settings: any number of worker processes or ranks (rank ``r`` of
``n`` makes the shards ``s`` with ``s % n == r``) writes the same files. A shard is written to a temporary name
and renamed when complete, so a run killed at any point leaves complete shards and temporaries; a rerun removes
the temporaries of its shards, keeps the complete ones and makes the rest. It checks every shard: one that
is cut short or unreadable is made again, and so is every batch of images whose file changed since (size or
modification time, ``caching.file_fingerprint``), the rest of its shard kept. The merge checks that every shard is
there, readable, made with the same settings, and that every image is in exactly one shard (as a row, or as a
failure). Worker processes end with the process that started them, however it ends.

Memory: one shard's rows (PNG bytes, a few KB an image) per worker, plus the list of image keys.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_open, remove_stale_temporaries, write_json
from ..caching import digest, file_fingerprint
from ..image_utils import IMAGE_EXTENSIONS, MAX_PNG_LABELS, decode_label_map, encode_label_map, to_rgb_uint8  # noqa: F401 - also ours
from ..segmentation.settings import DEFAULT_MAX_TOKENS, SegmentationSettings, output_options

FORMAT = "subobject_vlm.precompute/2"  # 2: each row and failure holds its file's fingerprint
PLAN_NAME = "precompute-plan.json"
INDEX_NAME = "precompute.json"
METADATA_KEY = b"subobject_vlm"


# --------------------------------------------------------------------------------------------------- format


def features():
    """The HF features of a precomputed dataset: one row per image."""
    import datasets

    sequence = getattr(datasets, "List", None) or datasets.Sequence  # List since datasets 4: same Arrow type
    return datasets.Features(
        {
            "key": datasets.Value("string"),  # relative path of the image, or the dataset row id
            "label_map": datasets.Value("binary"),  # 16-bit PNG of the (h, w) label map at label_size
            "num_tokens": datasets.Value("int32"),
            "boxes": sequence(sequence(datasets.Value("float32"), length=4)),  # (n, 4) cx, cy, w, h
            "height": datasets.Value("int32"),  # the image's own size (EXIF-rotated)
            "width": datasets.Value("int32"),
            "fingerprint": datasets.Value("string"),  # file_fingerprint of the image when read (None: a row)
        }
    )


# ---------------------------------------------------------------------------------------------- settings


def settings_record(settings: SegmentationSettings, label_size: tuple[int, int]) -> dict[str, Any]:
    """The JSON record of how label maps are made, without execution options (device, batch size) and with
    ``dtype: float32`` (every model's default) left out: equal records mean equal tokenizers."""
    segmentation = {**settings.to_dict(), "boundary_model_options": output_options(settings.model_options)}
    return {"segmentation": segmentation, "label_size": {"height": label_size[0], "width": label_size[1]}}


def describe_difference(ours: dict, theirs: dict) -> str:
    """``key: a != b`` for every setting that differs between two settings records."""
    flat_ours = {**ours["segmentation"], "label_size": ours["label_size"]}
    flat_theirs = {**theirs["segmentation"], "label_size": theirs["label_size"]}
    keys = sorted(set(flat_ours) | set(flat_theirs))
    return ", ".join(
        f"{k}: {flat_ours.get(k)!r} != {flat_theirs.get(k)!r}"
        for k in keys
        if flat_ours.get(k) != flat_theirs.get(k)
    )


# ------------------------------------------------------------------------------------------------ sources


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
        from .llava import image_key, printable_name, read_records, record_images

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
    from ..segmentation.registry import is_hub_id

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


# ------------------------------------------------------------------------------------------------- shards


def shard_name(shard: int, num_shards: int) -> str:
    return f"data-{shard:05d}-of-{num_shards:05d}.arrow"


@dataclass(frozen=True)
class _Shard:
    """A checked shard file: its metadata, and some of its columns (``key`` and ``fingerprint``, or all)."""

    metadata: dict
    columns: dict[str, list]

    def fingerprints(self) -> dict[str, str | None]:
        """The file fingerprint of every image of the shard (rows and failures) when its label map was made."""
        found = dict(zip(self.columns["key"], self.columns["fingerprint"]))
        return {**found, **{f["key"]: f.get("fingerprint") for f in self.metadata["failed"]}}


def _open_shard(path: Path, columns: tuple[str, ...] = ("key", "fingerprint")) -> _Shard:
    """Read and check a shard file; ``ValueError`` naming it if it is unreadable (cut short, not Arrow, of an
    older format), or if its rows and failures are not the images its metadata lists. Memory-mapped: the size of
    every record batch is checked against the file, but only ``columns`` are read (the keys: a few KB a shard)."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as handle:
            reader = pa.ipc.open_stream(handle)
            table = reader.read_all()
            found = {name: table.column(name).to_pylist() for name in columns}
            num_rows = table.num_rows
        metadata = json.loads(reader.schema.metadata[METADATA_KEY])
        ordered = list(found["key"])  # the shard's images in source order: rows, failures put back in place
        for failure in metadata["failed"]:
            ordered.insert(failure["position"], failure["key"])
        whole = len(ordered) == metadata["num_images"] and digest(ordered) == metadata["keys_digest"]
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:  # ArrowInvalid: a ValueError
        raise ValueError(f"{path} is unreadable (cut short?): {_one_line(error)}") from None
    if not whole:
        raise ValueError(
            f"{path} is incomplete: {num_rows} rows and {len(metadata['failed'])} failures, not the "
            f"{metadata['num_images']} images its metadata lists (cut short?)"
        )
    return _Shard(metadata, found)


def _write_shard(path: Path, rows: dict[str, list], metadata: dict) -> None:
    """One Arrow stream file with the HF features and our metadata, published atomically."""
    import pyarrow as pa

    schema = features().arrow_schema
    schema = schema.with_metadata({**(schema.metadata or {}), METADATA_KEY: json.dumps(metadata).encode()})
    boxes = np.concatenate(rows["boxes"]) if rows["boxes"] else np.zeros((0, 4), np.float32)  # (sum n, 4)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in rows["boxes"]])]).astype(np.int32)
    columns = {
        "key": pa.array(rows["key"], pa.string()),
        "label_map": pa.array(rows["label_map"], pa.binary()),
        "num_tokens": pa.array(rows["num_tokens"], pa.int32()),
        "boxes": pa.ListArray.from_arrays(
            pa.array(offsets), pa.FixedSizeListArray.from_arrays(pa.array(boxes.reshape(-1), pa.float32()), 4)
        ),
        "height": pa.array(rows["height"], pa.int32()),
        "width": pa.array(rows["width"], pa.int32()),
    }
    columns["fingerprint"] = pa.array(rows["fingerprint"], pa.string())
    table = pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
    with atomic_open(path) as handle, pa.ipc.new_stream(handle, schema) as writer:
        writer.write_table(table)


@dataclass(frozen=True)
class _Job:
    """What a worker needs to make shards (picklable: sent once to each worker process)."""

    source: ImageSource
    settings: SegmentationSettings
    label_size: tuple[int, int]
    out: str
    num_shards: int
    settings_digest: str
    batch_size: int
    torch_threads: int | None


class _Worker:
    """Makes whole shards; holds the segmenter (and so the boundary model) for the process's life."""

    def __init__(self, job: _Job, progress=None) -> None:
        from ..segmentation.segmenter import Segmenter

        if job.torch_threads:
            import torch

            torch.set_num_threads(job.torch_threads)
        self.job = job
        self.progress = progress  # callable(count) or a queue
        settings = job.settings
        self.segmenter = Segmenter(settings, job.label_size, cache_size=0)  # every image once: no cache
        if not settings.is_baseline:
            # now: a model that cannot load stops the run instead of failing every image
            from ..segmentation import load_boundary_model

            load_boundary_model(settings.boundary_model, **settings.model_options)  # cached for the segmenter
        self.dataset = job.source.open_dataset() if job.source.kind == "dataset" else None

    def _report(self, count: int) -> None:
        if self.progress is None:
            return
        if callable(self.progress):
            self.progress(count)
        else:
            self.progress.put(count)

    def _load(self, reference: str | int, key: str) -> np.ndarray:
        """``(H, W, 3)`` uint8 of a file path or a dataset row; ``ImageLoadError`` names the file or key."""
        from .llava import printable_name

        if self.dataset is not None:
            reference = self.dataset[reference][self.job.source.image_column]  # PIL image or path
            if reference is None:
                raise ValueError("this row has no image")
        if isinstance(reference, str) and printable_name(reference) != reference:  # Arrow keys must be UTF-8
            raise ValueError(f"the file name is not valid UTF-8: rename {printable_name(reference)}")
        return to_rgb_uint8(reference, name=key)

    def _segment(self, images: list[np.ndarray]) -> list[np.ndarray | str]:
        """Label maps of a batch (one batched call); if it fails, image by image: a map or the error."""
        try:
            return self.segmenter.label_maps(images)
        except Exception:  # noqa: BLE001 - find the image that fails; the others go on
            results: list[np.ndarray | str] = []
            for image in images:
                try:
                    results.append(self.segmenter.label_maps([image])[0])
                except Exception as error:  # noqa: BLE001
                    results.append(_one_line(error))
            return results

    def _previous(self, path: Path, digest_of_keys: str) -> dict[str, tuple[str, dict]]:
        """What a complete earlier version of shard ``path`` holds, by key: ``("row", columns)`` or
        ``("failed", failure)``, each with its ``fingerprint``; empty if there is none (or it is unusable)."""
        try:
            shard = _open_shard(path, tuple(features()))
        except ValueError:
            return {}
        if (
            shard.metadata["settings_digest"] != self.job.settings_digest
            or shard.metadata["keys_digest"] != digest_of_keys
        ):
            return {}
        columns = shard.columns
        found = {
            key: ("row", {name: columns[name][i] for name in columns}) for i, key in enumerate(columns["key"])
        }
        return {**found, **{f["key"]: ("failed", f) for f in shard.metadata["failed"]}}

    def make_shard(self, shard: int, entries: list[tuple[str, str | int]]) -> dict:
        """Segment ``entries`` and write shard ``shard``; returns its summary (rows, failed, images made).

        Batches (of ``batch_size``, at fixed positions: a batch's label maps depend on its images) whose files are
        all unchanged since an earlier complete version of the shard are copied from it, not segmented again.
        """
        path = Path(self.job.out) / shard_name(shard, self.job.num_shards)
        previous = self._previous(path, digest([key for key, _ in entries])) if path.exists() else {}
        rows: dict[str, list] = {name: [] for name in features()}
        failed, failed_now, made = [], [], 0
        for start in range(0, len(entries), self.job.batch_size):
            batch = entries[start : start + self.job.batch_size]
            fingerprints = [file_fingerprint(reference) for _, reference in batch]  # before reading the files
            kept = [previous.get(key) for key, _ in batch]
            if all(
                old is not None and old[1].get("fingerprint") == now for old, now in zip(kept, fingerprints)
            ):
                for position, (kind, old) in enumerate(kept, start):
                    if kind == "row":
                        for name, values in rows.items():
                            value = old[name]
                            values.append(
                                np.asarray(value, np.float32).reshape(-1, 4) if name == "boxes" else value
                            )
                    else:
                        failed.append({**old, "position": position})
            else:
                new = self._make_batch(batch, start, fingerprints, rows)
                failed += new
                failed_now += new
                made += len(batch)
            self._report(len(batch))
        failed.sort(key=lambda f: f["position"])
        metadata = {
            "shard": shard,
            "num_shards": self.job.num_shards,
            "settings_digest": self.job.settings_digest,
            "keys_digest": digest([key for key, _ in entries]),
            "num_images": len(entries),
            "failed": failed,
        }
        _write_shard(path, rows, metadata)
        return {"shard": shard, "rows": len(rows["key"]), "failed": failed_now, "made": made}

    def _make_batch(self, batch: list, start: int, fingerprints: list, rows: dict[str, list]) -> list[dict]:
        """Load and segment one batch (positions ``start``, ...), appending its rows; returns its failures."""
        import torch

        from ..embedding import region_boxes

        images, loaded, failed = [], [], []
        for position, (key, reference), fingerprint in zip(
            range(start, start + len(batch)), batch, fingerprints
        ):
            try:
                images.append(self._load(reference, key))
                loaded.append((position, key, fingerprint))
            except Exception as error:  # noqa: BLE001 - a bad image is recorded, not fatal
                failed.append(
                    {"key": key, "position": position, "error": _one_line(error), "fingerprint": fingerprint}
                )
        results = self._segment(images) if images else []
        good = []
        for (position, key, fingerprint), image, result in zip(loaded, images, results):
            error = result if isinstance(result, str) else None
            if error is None:
                try:
                    png = encode_label_map(result)
                except ValueError as too_many:
                    error = str(too_many)
            if error is not None:
                failed.append({"key": key, "position": position, "error": error, "fingerprint": fingerprint})
                continue
            good.append(result)
            rows["key"].append(key)
            rows["label_map"].append(png)
            rows["num_tokens"].append(int(result.max()) + 1)
            rows["height"].append(image.shape[0])
            rows["width"].append(image.shape[1])
            rows["fingerprint"].append(fingerprint)
        if good:  # boxes as the processor computes them: one region_boxes call over the batch
            label_maps = torch.from_numpy(np.stack(good).astype(np.int64))  # (B, h, w)
            num_tokens = torch.tensor(rows["num_tokens"][-len(good) :], dtype=torch.int64)  # (B,)
            boxes = region_boxes(label_maps, num_tokens)  # (sum n, 4)
            rows["boxes"] += [b.numpy() for b in torch.split(boxes, num_tokens.tolist())]
        return failed


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


_WORKER: _Worker | None = None
_WORKER_ERROR = ""


def _die_with_parent(parent: int) -> None:
    """End this worker process when ``parent`` (the process running the pool) ends, however it ends (SIGKILL
    included): Linux's parent-death signal, and a thread that watches for a new parent pid (other systems, and a
    parent gone before the signal was set)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # orphaned: what it would write, nobody merges; a rerun removes its temporaries

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _init_worker(job: _Job, queue, parent: int) -> None:
    global _WORKER, _WORKER_ERROR
    if hasattr(signal, "pthread_sigmask"):  # held while the parent started us (see _stop_signals_held)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent stops us
    try:
        _WORKER = _Worker(job, queue)
    except Exception as error:  # noqa: BLE001 - reported by the first shard, in one line, not as a broken pool
        _WORKER_ERROR = str(error)


def _run_shard(shard: int, entries: list[tuple[str, str | int]]) -> dict:
    if _WORKER is None:
        raise ValueError(f"a worker process could not start: {_WORKER_ERROR}")
    return _WORKER.make_shard(shard, entries)


# ---------------------------------------------------------------------------------------------------- run


def resolve_rank(shard: str | None = None, environ: dict | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` from ``--shard i/n``, else torchrun / accelerate's ``RANK`` and ``WORLD_SIZE``,
    else ``(0, 1)``. Both given and different is an error."""
    environ = os.environ if environ is None else environ
    from_env = None
    if "WORLD_SIZE" in environ or "RANK" in environ:
        try:
            from_env = int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1"))
        except ValueError:
            raise ValueError(f"RANK / WORLD_SIZE must be integers, got {environ.get('RANK')!r}, "
                             f"{environ.get('WORLD_SIZE')!r}") from None  # fmt: skip
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


PLAN_FIELDS = {"format": str, "version": str, "settings": dict, "source": dict, "num_images": int,
               "shard_size": int, "batch_size": int, "num_shards": int, "shard_digests": list}  # fmt: skip
INDEX_FIELDS = {"format": str, "version": str, "settings": dict, "num_images": int, "num_rows": int,
                "num_failed": int, "failed": list, "shards": list}  # fmt: skip


def _read_record(path: Path, fields: dict[str, type]) -> dict:
    """A JSON object of ours (the plan or the index), its fields checked; ``ValueError`` naming the file and the
    field at fault, and refusing one written by another format version."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path} is not readable JSON ({_one_line(error)})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    for name, kind in fields.items():
        value = record.get(name)
        if name not in record:
            raise ValueError(f"{path}: field {name!r} is missing")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(
                f"{path}: field {name!r} must be a JSON {_JSON_NAMES[kind]}, got {json.dumps(value)[:60]}"
            )
    if record["format"] != FORMAT:
        raise ValueError(
            f"{path} was written by another version of subobject-vlm precompute (format {record['format']!r}, this "
            f"one reads {FORMAT!r}): precompute again into a new folder"
        )
    settings = record["settings"]
    if not (isinstance(settings.get("segmentation"), dict) and isinstance(settings.get("label_size"), dict)):
        raise ValueError(f"{path}: field 'settings' must hold the objects 'segmentation' and 'label_size'")
    return record


_JSON_NAMES = {str: "string", dict: "object", int: "integer", list: "list"}


def _read_plan(out: Path) -> dict:
    """The checked ``precompute-plan.json`` of ``out``."""
    path = out / PLAN_NAME
    plan = _read_record(path, PLAN_FIELDS)
    digests = plan["shard_digests"]
    if (
        plan["num_shards"] < 1
        or len(digests) != plan["num_shards"]
        or not all(isinstance(d, str) for d in digests)
    ):
        raise ValueError(
            f"{path}: field 'shard_digests' must list one string per shard ({plan['num_shards']})"
        )
    return plan


def _check_plan(out: Path, plan: dict) -> None:
    """Write the plan, or check that the one already in ``out`` describes the same run."""
    path = out / PLAN_NAME
    if not path.exists():
        write_json(path, plan)  # several ranks may write it at once: same content, atomic
        return
    existing = _read_plan(out)
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


def precompute(
    source: ImageSource,
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
        source: the images (see :func:`open_source`).
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
    from tqdm import tqdm

    segmentation, label_size = settings
    numbers = (("shard_size", shard_size), ("batch_size", batch_size), ("num_workers", num_workers),
               ("torch_threads", 1 if torch_threads is None else torch_threads))  # fmt: skip
    for name, value in numbers:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    max_tokens = segmentation.max_tokens or (DEFAULT_MAX_TOKENS if segmentation.is_baseline else None)
    if (max_tokens is None or max_tokens > MAX_PNG_LABELS) and label_size[0] * label_size[1] > MAX_PNG_LABELS:
        raise ValueError(
            f"label maps are stored as 16-bit PNGs (at most {MAX_PNG_LABELS} regions): set max_tokens <= "
            f"{MAX_PNG_LABELS} (got {segmentation.max_tokens})"
        )
    entries = source.entries()
    if not entries:
        raise ValueError(f"no images in {source.path}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from .. import __version__

    record = settings_record(segmentation, label_size)
    num_shards = -(-len(entries) // shard_size)
    shards = {s: entries[s * shard_size : (s + 1) * shard_size] for s in range(num_shards)}
    plan = {
        "format": FORMAT,
        "version": __version__,
        "settings": record,
        "source": asdict(source),
        "num_images": len(entries),
        "shard_size": shard_size,
        "batch_size": batch_size,  # batches of images of different sizes are padded together: part of the result
        "num_shards": num_shards,
        "shard_digests": [digest([key for key, _ in shards[s]]) for s in range(num_shards)],
    }
    _check_plan(out, plan)
    settings_digest = digest(record)

    mine = [s for s in range(num_shards) if s % world_size == rank]
    remove_stale_temporaries(out, [shard_name(s, num_shards) for s in mine])
    redone = {s: why for s in mine if (why := _why_remake(out, s, shards[s], plan, settings_digest))}
    todo = list(redone)
    job = _Job(source, segmentation, label_size, str(out), num_shards, settings_digest, batch_size,
               torch_threads or (max(1, (os.cpu_count() or 1) // num_workers) if num_workers > 1 else None))  # fmt: skip
    bar = tqdm(
        total=sum(len(shards[s]) for s in mine),
        initial=sum(len(shards[s]) for s in mine if s not in todo),
        desc=f"precompute (rank {rank}/{world_size})" if world_size > 1 else "precompute",
        unit="img",
        file=sys.stderr,
        disable=not progress,
    )
    start = time.perf_counter()
    results = []
    with bar:
        if todo and num_workers == 1:
            worker = _Worker(job, bar.update)
            results = [worker.make_shard(s, shards[s]) for s in todo]
        elif todo:
            results = _run_in_pool(job, num_workers, todo, shards, bar)
    seconds = time.perf_counter() - start
    summary = {
        "rank": rank,
        "world_size": world_size,
        "shards": len(mine),
        "shards_made": len(todo),
        "images_made": sum(r["made"] for r in results),
        "failed_now": [f for r in results for f in r["failed"]],
        "redone": [f"{shard_name(s, num_shards)}: {why}" for s, why in redone.items() if why != "missing"],
        "seconds": round(seconds, 3),
        "out": str(out),
    }
    if merge if merge is not None else world_size == 1:
        summary["merged"] = merge_precomputed(out)
    return summary


def _why_remake(
    out: Path, shard: int, entries: list[tuple[str, str | int]], plan: dict, settings_digest: str
) -> str:
    """Why shard ``shard`` must be made (again): ``"missing"``, unreadable, other settings or images, images changed
    since (by ``caching.file_fingerprint``); ``""`` if it is complete and current."""
    path = out / shard_name(shard, plan["num_shards"])
    if not path.exists():
        return "missing"
    try:
        found = _open_shard(path)
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


def _run_in_pool(job: _Job, num_workers: int, todo: list[int], shards: dict, bar) -> list[dict]:
    """Shards across ``num_workers`` spawned processes (each loads the model once); progress per image. The
    first error stops the run (shards not started are cancelled; those written are kept for a rerun); an
    interruption (Ctrl-C, or SIGTERM made an exception by the command) stops the workers at once."""
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    queue = context.Queue()
    results = []
    pool = concurrent.futures.ProcessPoolExecutor(
        num_workers, mp_context=context, initializer=_init_worker, initargs=(job, queue, os.getpid())
    )
    try:
        with _stop_signals_held():  # no worker left half-started, none interrupted in its start-up
            pending = {pool.submit(_run_shard, s, shards[s]) for s in todo}
        try:
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=0.2, return_when="FIRST_COMPLETED")
                while not queue.empty():
                    bar.update(queue.get())
                results += [future.result() for future in done]  # a worker's error (a full disk...) stops it
        except concurrent.futures.process.BrokenProcessPool:
            raise OSError(
                "a worker process died (out of memory?); the shards written are kept: rerun to resume"
            ) from None
        finally:
            for future in pending:
                future.cancel()
    except (KeyboardInterrupt, SystemExit):
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True)  # after an error, the shards being made are finished and kept
    while not queue.empty():
        bar.update(queue.get())
    return results


@contextlib.contextmanager
def _stop_signals_held():
    """Hold SIGINT and SIGTERM back from this thread for the block (one that arrives meanwhile is delivered after
    it), so that starting a worker is never cut off half-way. The processes started inherit the mask: Ctrl-C,
    sent to the whole process group, never reaches a worker; each unblocks SIGTERM when it starts running our
    code. No-op where signal masks do not exist."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Terminate the pool's processes now (the shard each was writing is dropped; its temporary is removed by
    the next run) and wait for them to end."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # Python 3.14: terminate_workers()
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
    if manager is not None:
        manager.join(5)


# -------------------------------------------------------------------------------------------------- merge


def merge_precomputed(out: str | os.PathLike) -> dict:
    """Check the shards of ``out`` and write its index (``precompute.json``) and ``load_from_disk`` files.

    Raises ``ValueError`` naming what is wrong: a broken plan, a missing or unreadable shard, one made with
    other settings or for other images, an image present twice. Returns the index.
    """
    out = Path(out)
    plan_path = out / PLAN_NAME
    if not plan_path.is_file():
        raise ValueError(f"{out} has no {PLAN_NAME}: not the output folder of subobject-vlm precompute")
    plan = _read_plan(out)
    num_shards = plan["num_shards"]
    names = [shard_name(s, num_shards) for s in range(num_shards)]
    missing = [name for name in names if not (out / name).is_file()]
    if missing:
        raise ValueError(
            f"{len(missing)} of {num_shards} shards are missing in {out} ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): run precompute again (it resumes) on every rank"
        )
    settings_digest = digest(plan["settings"])
    seen: set[str] = set()
    failed: list[dict] = []
    rows = 0
    fingerprints = []
    for s, name in enumerate(names):
        try:
            shard = _open_shard(out / name)
        except ValueError as error:
            raise ValueError(f"{error}: rerun precompute (it makes broken shards again)") from None
        metadata = shard.metadata
        if metadata["settings_digest"] != settings_digest:
            raise ValueError(f"{out / name} was made with other settings than {PLAN_NAME} names")
        if metadata["keys_digest"] != plan["shard_digests"][s]:
            raise ValueError(f"{out / name} does not hold the images {PLAN_NAME} assigns to shard {s}")
        ordered = shard.fingerprints()  # every image of the shard (rows and failures)
        twice = seen.intersection(ordered)
        if twice:
            raise ValueError(f"images in more than one shard: {', '.join(sorted(twice)[:5])}")
        seen.update(ordered)
        rows += len(shard.columns["key"])
        failed += [{k: f.get(k) for k in ("key", "error", "fingerprint")} for f in metadata["failed"]]
        fingerprints.append(digest(sorted(ordered.items(), key=lambda item: item[0])))
    if len(seen) != plan["num_images"]:  # pragma: no cover - implied by the digests
        raise ValueError(f"{out}: {len(seen)} images in the shards, {plan['num_images']} planned")

    index = {
        "format": FORMAT,
        "version": plan["version"],
        "settings": plan["settings"],
        "source": plan["source"],
        "num_images": plan["num_images"],
        "num_rows": rows,
        "num_failed": len(failed),
        "failed": failed,
        "shards": names,
    }
    description = json.dumps(
        {k: index[k] for k in ("format", "version", "settings", "num_rows", "num_failed")}
    )
    write_json(out / "dataset_info.json", {"description": description, "features": features().to_dict()})
    state = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": digest([settings_digest, plan["shard_digests"], fingerprints]),  # any image changed
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    write_json(out / "state.json", state)
    write_json(out / INDEX_NAME, index)  # last: its presence means merged and complete
    return index


# ---------------------------------------------------------------------------------------------------- read


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
    index = _read_record(path / INDEX_NAME, INDEX_FIELDS)
    if not all(isinstance(f, dict) and isinstance(f.get("key"), str) for f in index["failed"]):
        raise ValueError(f"{path / INDEX_NAME}: field 'failed' must list objects with a 'key' and an 'error'")
    return index


def load_precomputed(path: str | os.PathLike):
    """The precomputed dataset of a merged output folder (memory-mapped ``datasets.Dataset``; its
    ``info.description`` is the JSON of the settings and package version)."""
    import datasets

    read_index(path)
    return datasets.load_from_disk(str(path))


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


__all__ = [
    "ImageSource",
    "check_settings",
    "decode_label_map",
    "encode_label_map",
    "features",
    "load_precomputed",
    "merge_precomputed",
    "open_source",
    "precompute",
    "read_index",
    "resolve_rank",
    "settings_record",
]

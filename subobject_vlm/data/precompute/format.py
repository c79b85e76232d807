"""The on-disk format of a precomputed dataset: file names, the HF features of a row, the settings record, the
shard files (Arrow streams with our metadata) and the two JSON records (the plan and the index), each read and
checked in one place."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import atomic_open
from ...caching import digest
from ...segmentation.settings import SegmentationSettings, output_options

FORMAT = "subobject_vlm.precompute/2"  # 2: each row and failure holds its file's fingerprint
PLAN_NAME = "precompute-plan.json"
INDEX_NAME = "precompute.json"
METADATA_KEY = b"subobject_vlm"
PLAN_FIELDS = {
    "format": str,
    "version": str,
    "settings": dict,
    "source": dict,
    "num_images": int,
    "shard_size": int,
    "batch_size": int,
    "num_shards": int,
    "shard_digests": list,
}
INDEX_FIELDS = {
    "format": str,
    "version": str,
    "settings": dict,
    "num_images": int,
    "num_rows": int,
    "num_failed": int,
    "failed": list,
    "shards": list,
}
_JSON_NAMES = {str: "string", dict: "object", int: "integer", list: "list"}


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


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``: how a failed image or an unreadable file is reported."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


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


# ------------------------------------------------------------------------------------------------- shards


def shard_name(shard: int, num_shards: int) -> str:
    return f"data-{shard:05d}-of-{num_shards:05d}.arrow"


@dataclass(frozen=True)
class Shard:
    """A checked shard file: its metadata, and some of its columns (``key`` and ``fingerprint``, or all)."""

    metadata: dict
    columns: dict[str, list]

    def fingerprints(self) -> dict[str, str | None]:
        """The file fingerprint of every image of the shard (rows and failures) when its label map was made."""
        found = dict(zip(self.columns["key"], self.columns["fingerprint"]))
        return {**found, **{f["key"]: f.get("fingerprint") for f in self.metadata["failed"]}}


def open_shard(path: Path, columns: tuple[str, ...] = ("key", "fingerprint")) -> Shard:
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
        raise ValueError(f"{path} is unreadable (cut short?): {one_line(error)}") from None
    if not whole:
        raise ValueError(
            f"{path} is incomplete: {num_rows} rows and {len(metadata['failed'])} failures, not the "
            f"{metadata['num_images']} images its metadata lists (cut short?)"
        )
    return Shard(metadata, found)


def write_shard(path: Path, rows: dict[str, list], metadata: dict) -> None:
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


# ------------------------------------------------------------------------------------------------ records


def read_record(path: Path, fields: dict[str, type]) -> dict:
    """A JSON object of ours (the plan or the index), its fields checked; ``ValueError`` naming the file and the
    field at fault, and refusing one written by another format version."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path} is not readable JSON ({one_line(error)})") from None
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


def read_plan(out: Path) -> dict:
    """The checked ``precompute-plan.json`` of ``out``."""
    path = out / PLAN_NAME
    plan = read_record(path, PLAN_FIELDS)
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


__all__ = [
    "FORMAT",
    "INDEX_NAME",
    "PLAN_NAME",
    "Shard",
    "describe_difference",
    "features",
    "one_line",
    "open_shard",
    "read_plan",
    "read_record",
    "settings_record",
    "shard_name",
    "write_shard",
]

"""The label maps of the training images, kept in one store: the format of ``subobject-vlm precompute`` (Arrow
shards of 16-bit PNGs, a plan and an index). Training makes its own store under its cache folder on first use
(:func:`precompute_segmentations`), or reads one made by the command (:func:`use_precomputed_segmentations`);
either way the samples get ``label_map_png`` and ``num_tokens`` by one cached ``datasets.map``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ...caching import digest
from ...data.llava import DataError

logger = logging.getLogger(__name__)


def precompute_segmentations(
    dataset, image_processor, cache_dir: str | os.PathLike, batch_size: int = 16, num_proc: int | None = None
):
    """Add ``label_map_png`` (the 16-bit PNG of the label map at the processor's ``label_size``; ``None`` for
    text-only samples) and ``num_tokens`` (int32, 0 without image), segmenting each distinct image once.

    The label maps are kept in ``cache_dir/label-maps-<key>``, a ``subobject-vlm precompute`` output (readable by
    ``data.precompute.load_precomputed``), keyed by the settings record (the options that decide the maps: the
    device and batch size of the boundary model are not among them) and the images: a second run, another rank,
    another device or another ``batch_size`` reads it. An image file changed since (size or modification time)
    is segmented again, in batches of the size the store was made with (``batch_size`` images per boundary-model
    call when it is made). ``num_proc``: worker processes, each loading the model once. An image that cannot be
    read or segmented is a ``DataError`` naming it.
    """
    from ...data.precompute import RowImages, precompute, settings_record
    from ...data.precompute.format import PLAN_NAME, read_plan

    settings = image_processor.segmentation_settings()
    images = RowImages(dataset)
    if not images.entries():  # text-only samples: nothing to segment
        return _attach(dataset, images.keys, None, cache_dir)
    store = Path(cache_dir) / f"label-maps-{digest([settings_record(*settings), images.identity])}"
    if (store / PLAN_NAME).is_file():  # a store keeps the batch size it was made with: part of its plan
        batch_size = read_plan(store)["batch_size"]
    summary = precompute(images, store, settings, batch_size=batch_size, num_workers=num_proc or 1)
    failed = summary["merged"]["failed"]
    if failed:
        raise DataError(
            f"{len(failed)} image(s) of the training data cannot be used (e.g. {failed[0]['key']}: "
            f"{failed[0]['error']}); repair or remove them (their label maps are made again once changed)"
        )
    return _attach(dataset, images.keys, store, cache_dir)


def use_precomputed_segmentations(dataset, precomputed: str | os.PathLike, image_processor, cache_dir):
    """Add ``label_map_png`` and ``num_tokens`` (as :func:`precompute_segmentations`) from a ``subobject-vlm
    precompute`` output, instead of segmenting: the boundary model is never run.

    ``dataset`` needs ``image_key`` (``load_conversations(..., with_keys=True)``). The precomputed settings
    must equal the image processor's (``DataError`` naming the difference). Samples whose image failed to
    precompute are dropped (logged); an image that was never precomputed, or whose file changed since (size or
    modification time), is a ``DataError``.
    """
    from ...data.precompute import check_settings, load_precomputed

    try:
        index = check_settings(precomputed, image_processor.segmentation_settings())
    except ValueError as error:
        raise DataError(str(error)) from None
    table = load_precomputed(precomputed).select_columns(["key", "fingerprint"]).data
    stored = dict(zip(table.column("key").to_pylist(), table.column("fingerprint").to_pylist()))
    failed = {f["key"]: f.get("fingerprint") for f in index["failed"]}
    keys = dataset["image_key"]
    missing = sorted({k for k in keys if k is not None and k not in stored and k not in failed})
    if missing:
        raise DataError(
            f"{len(missing)} image(s) of the training data are not in the precomputed dataset {precomputed} "
            f"(e.g. {', '.join(missing[:3])}): precompute the same images (same file, image folder or split)"
        )
    _check_unchanged(dataset, {**stored, **failed}, precomputed)
    dropped = {i for i, k in enumerate(keys) if k in failed}
    if dropped:
        logger.warning(
            f"dropped {len(dropped)} sample(s) whose image failed to precompute (see {precomputed}/precompute.json)"
        )
        dataset = dataset.select([i for i in range(len(dataset)) if i not in dropped])
    return _attach(dataset, dataset["image_key"], Path(precomputed), cache_dir)


def _attach(dataset, keys: list[str | None], store: Path | None, cache_dir: str | os.PathLike):
    """``dataset`` + ``label_map_png`` and ``num_tokens`` of the row ``keys[i]`` of the store (``None`` and 0 for
    a sample without image), by one ``datasets.map`` cached under ``cache_dir`` (named after the dataset and
    the store's content)."""
    import datasets

    from ...data.precompute import load_precomputed

    table, row_of, content = None, {}, None  # no store: a dataset without images, nothing to read
    if store is not None:
        table = load_precomputed(store).select_columns(["key", "label_map", "num_tokens"])
        row_of = {key: row for row, key in enumerate(table.data.column("key").to_pylist())}
        # datasets' own key of the shards (their paths and modification times), and where the store is
        content = [table._fingerprint, str(store.resolve())]

    def attach(batch: dict, indices: list[int]) -> dict:
        rows = [row_of.get(keys[i]) for i in indices]
        present = [r for r in rows if r is not None]
        found = table[present] if present else {"label_map": [], "num_tokens": []}
        pngs, counts = iter(found["label_map"]), iter(found["num_tokens"])
        batch["label_map_png"] = [None if r is None else next(pngs) for r in rows]
        batch["num_tokens"] = [0 if r is None else next(counts) for r in rows]
        return batch

    features = dataset.features.copy()
    features["label_map_png"] = datasets.Value("binary")
    features["num_tokens"] = datasets.Value("int32")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = digest([dataset._fingerprint, content])
    return dataset.map(
        attach,
        batched=True,
        with_indices=True,
        features=features,
        cache_file_name=str(cache_dir / f"precomputed-{key}.arrow"),
        new_fingerprint=f"precomputed-{key}",
        desc="reading the label maps",
    )


def _files_of(dataset) -> list[str | None]:
    """``caching.file_fingerprint`` of every image file of ``dataset`` (none for an HF dataset's images)."""
    from ...caching import file_fingerprint

    if getattr(dataset.features.get("image"), "dtype", None) != "string":
        return []
    return [file_fingerprint(path) for path in dataset["image"]]


def _check_unchanged(dataset, stored: dict[str, str | None], precomputed: str | os.PathLike) -> None:
    """``DataError`` naming the image files that changed since their label maps were precomputed: ``stored`` maps
    each key to ``caching.file_fingerprint`` at precompute time (``None``: a dataset row, not checked)."""
    now = _files_of(dataset) if any(fingerprint is not None for fingerprint in stored.values()) else []
    if not now:
        return  # no image files (an HF dataset's rows), or none fingerprinted
    changed = sorted(
        {
            path
            for key, path, fingerprint in zip(dataset["image_key"], dataset["image"], now)
            if stored.get(key) is not None and fingerprint != stored[key]
        }
    )
    if changed:
        raise DataError(
            f"{len(changed)} image(s) changed since they were precomputed into {precomputed} (e.g. "
            f"{', '.join(changed[:3])}): rerun subobject-vlm precompute with the same input and --out (it "
            "makes them again)"
        )


__all__ = ["precompute_segmentations", "use_precomputed_segmentations"]

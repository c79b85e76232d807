"""Making one shard: read a batch of images, segment it (image by image if the batch fails), encode the label
maps and boxes, and copy from an earlier complete version of the shard the batches whose files are unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...caching import digest, file_fingerprint
from ...image_utils import encode_label_map, to_rgb_uint8
from ...segmentation.settings import SegmentationSettings
from .format import features, one_line, open_shard, shard_name, write_shard


@dataclass(frozen=True)
class Job:
    """What a shard maker needs (picklable: sent once to each worker process). ``source``: an ``ImageSource`` or
    ``RowImages`` (its ``reader()`` is called in the worker)."""

    source: Any
    settings: SegmentationSettings
    label_size: tuple[int, int]
    out: str
    num_shards: int
    settings_digest: str
    batch_size: int
    torch_threads: int | None


class ShardMaker:
    """Makes whole shards; holds the segmenter (and so the boundary model) for the process's life."""

    def __init__(self, job: Job, progress=None) -> None:
        from ...segmentation.segmenter import Segmenter

        if job.torch_threads:
            import torch

            torch.set_num_threads(job.torch_threads)
        self.job = job
        self.progress = progress  # callable(count) or a queue
        settings = job.settings
        self.segmenter = Segmenter(settings, job.label_size, cache_size=0)  # every image once: no cache
        # now: a tokenizer that cannot load stops the run instead of failing every image
        from ...segmentation import load_tokenizer

        load_tokenizer(settings.boundary_model, **settings.model_options)  # cached for the segmenter
        self.read = job.source.reader()  # None: references are file paths

    def make_shard(self, shard: int, entries: list[tuple[str, str | int]]) -> dict:
        """Segment ``entries`` and write shard ``shard``; returns its summary (rows, failed, images made).

        Batches (of ``batch_size``, at fixed positions: a batch's label maps depend on its images) whose files are
        all unchanged since an earlier complete version of the shard are copied from it, not segmented again.
        """
        path = Path(self.job.out) / shard_name(shard, self.job.num_shards)
        keys_digest = digest([key for key, _ in entries])
        previous = self._previous(path, keys_digest) if path.exists() else {}
        rows: dict[str, list] = {name: [] for name in features()}
        failed, failed_now, made = [], [], 0
        for start in range(0, len(entries), self.job.batch_size):
            batch = entries[start : start + self.job.batch_size]
            fingerprints = [file_fingerprint(reference) for _, reference in batch]  # before reading the files
            kept = [previous.get(key) for key, _ in batch]
            if all(
                old is not None and old[1].get("fingerprint") == now for old, now in zip(kept, fingerprints)
            ):
                failed += _copy_batch(kept, start, rows)
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
            "keys_digest": keys_digest,
            "num_images": len(entries),
            "failed": failed,
        }
        write_shard(path, rows, metadata)
        return {"shard": shard, "rows": len(rows["key"]), "failed": failed_now, "made": made}

    def _report(self, count: int) -> None:
        if self.progress is None:
            return
        if callable(self.progress):
            self.progress(count)
        else:
            self.progress.put(count)

    def _previous(self, path: Path, keys_digest: str) -> dict[str, tuple[str, dict]]:
        """What a complete earlier version of shard ``path`` holds, by key: ``("row", columns)`` or
        ``("failed", failure)``, each with its ``fingerprint``; empty if there is none (or it is unusable)."""
        try:
            shard = open_shard(path, tuple(features()))
        except ValueError:
            return {}
        metadata = shard.metadata
        if metadata["settings_digest"] != self.job.settings_digest or metadata["keys_digest"] != keys_digest:
            return {}
        columns = shard.columns
        found = {
            key: ("row", {name: columns[name][i] for name in columns}) for i, key in enumerate(columns["key"])
        }
        return {**found, **{f["key"]: ("failed", f) for f in metadata["failed"]}}

    def _load(self, reference: str | int, key: str) -> np.ndarray:
        """``(H, W, 3)`` uint8 of a file path or a dataset row; ``ImageLoadError`` names the file or key."""
        from ..llava import printable_name

        if self.read is not None:
            reference = self.read(reference)  # PIL image or path
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
                    results.append(one_line(error))
            return results

    def _make_batch(self, batch: list, start: int, fingerprints: list, rows: dict[str, list]) -> list[dict]:
        """Load and segment one batch (positions ``start``, ...), appending its rows; returns its failures."""
        images, loaded, failed = [], [], []
        for position, (key, reference), fingerprint in zip(
            range(start, start + len(batch)), batch, fingerprints
        ):
            try:
                images.append(self._load(reference, key))
                loaded.append((position, key, fingerprint))
            except Exception as error:  # noqa: BLE001 - a bad image is recorded, not fatal
                failed.append(_failure(key, position, one_line(error), fingerprint))
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
                failed.append(_failure(key, position, error, fingerprint))
                continue
            good.append(result)
            rows["key"].append(key)
            rows["label_map"].append(png)
            rows["num_tokens"].append(int(result.max()) + 1)
            rows["height"].append(image.shape[0])
            rows["width"].append(image.shape[1])
            rows["fingerprint"].append(fingerprint)
        rows["boxes"] += _boxes(good, rows["num_tokens"][len(rows["num_tokens"]) - len(good) :])
        return failed


def _failure(key: str, position: int, error: str, fingerprint: str | None) -> dict:
    return {"key": key, "position": position, "error": error, "fingerprint": fingerprint}


def _copy_batch(kept: list[tuple[str, dict]], start: int, rows: dict[str, list]) -> list[dict]:
    """Append a batch's rows as an earlier version of the shard holds them; returns its failures."""
    failed = []
    for position, (kind, old) in enumerate(kept, start):
        if kind == "failed":
            failed.append({**old, "position": position})
            continue
        for name, values in rows.items():
            values.append(np.asarray(old[name], np.float32).reshape(-1, 4) if name == "boxes" else old[name])
    return failed


def _boxes(label_maps: list[np.ndarray], num_tokens: list[int]) -> list[np.ndarray]:
    """Each label map's region boxes, ``(n, 4)`` float32, as the processor computes them: one ``region_boxes``
    call over the batch."""
    if not label_maps:
        return []
    import torch

    from ...embedding import region_boxes

    maps = torch.from_numpy(np.stack(label_maps).astype(np.int64))  # (B, h, w)
    counts = torch.tensor(num_tokens, dtype=torch.int64)  # (B,)
    boxes = region_boxes(maps, counts)  # (sum n, 4)
    return [b.numpy() for b in torch.split(boxes, counts.tolist())]


__all__ = ["Job", "ShardMaker"]

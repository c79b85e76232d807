"""Tokenize a dataset once: the label map of every image of a folder, a LLaVA JSON/JSONL file or an HF dataset,
written as Arrow shards that ``load_precomputed`` opens memory-mapped as a ``datasets.Dataset``.

>>> source = open_source("llava.json")                     # or an image folder, or a save_to_disk folder
>>> precompute(source, "tokens", processor.segmentation_settings(), num_workers=2)
>>> dataset = load_precomputed("tokens")                   # key, label_map (16-bit PNG), num_tokens, boxes, ...
>>> label_map = decode_label_map(dataset[0]["label_map"])  # (h, w) int32, equal to the processor's

Layout of the output folder::

    precompute-plan.json                the run: settings, package version, source, shard size, key digests
    data-00000-of-00012.arrow, ...      one shard per ``shard_size`` images (Arrow stream, HF features); its
                                        schema metadata names the shard, its keys and its failed images
                                        (each row and failure with its image file's size and mtime)
    precompute.json                     written by the merge: settings, version, counts, failed images, shards

Every image goes to shard ``position // shard_size`` (position in the source's order), so a shard's content
depends on nothing but the source and the settings: any number of worker processes or ranks (rank ``r`` of
``n`` makes the shards ``s`` with ``s % n == r``) writes the same files. A shard is written to a temporary name
and renamed when complete, so a run killed at any point leaves complete shards and temporaries; a rerun removes
the temporaries of its shards, keeps the complete ones and makes the rest. It checks every shard: one that
is cut short or unreadable is made again, and so is every batch of images whose file changed since (size or
modification time, ``caching.file_fingerprint``), the rest of its shard kept. The merge checks that every shard is
there, readable, made with the same settings, and that every image is in exactly one shard (as a row, or as a
failure). Worker processes end with the process that started them, however it ends.

Training keeps its label maps the same way (``training.vlm_data.precompute_segmentations``: one such folder per
settings record and set of images, made from ``RowImages``).

Memory: one shard's rows (PNG bytes, a few KB an image) per worker, plus the list of image keys.

The roles, one module each: ``format`` (file names, features, settings record, shard and JSON files),
``sources`` (the images and how to read them), ``maker`` (making one shard), ``workers`` (the process pool),
``merge`` (checking and indexing the shards), ``read`` (opening a merged folder), ``run`` (``precompute``).
"""

from ...image_utils import decode_label_map, encode_label_map
from .format import features, settings_record
from .merge import merge_precomputed
from .read import check_settings, load_precomputed, read_index
from .run import precompute, resolve_rank
from .sources import ImageSource, RowImages, open_source

__all__ = [
    "ImageSource",
    "RowImages",
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

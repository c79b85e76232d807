"""Training data for boundary models, one role per module: ``targets`` (label maps -> boundary lines),
``decoding`` (label maps from files, BSDS ``.mat``, COCO RLE), ``sources`` (BSDS500, folders, ``datasets`` as
items), ``geometry`` (augmentation of a sample) and ``dataset`` (:class:`BoundaryDataset`).

An *item* is a pair of zero-argument loaders ``(load_image, load_label_maps)``:
``load_image() -> (H, W, 3) uint8`` and ``load_label_maps() -> (K, H, W) int32`` (one label map per
annotator; ``K = 1`` for most datasets, several for BSDS). Geometry (scale, crop, flip) is applied to the image
and the label maps together; the boundary target is drawn afterwards, at the training resolution, so lines
keep their thickness whatever the scale. Pixels outside the image (crop padding) are ignored by the loss.

>>> items = bsds_items(split="train")
>>> dataset = BoundaryDataset(items, resolution=320, augment=True)
>>> sample = dataset[0]   # {"pixel_values": (3, 320, 320) float32, "labels": (320, 320) float32, -1 = ignore}
"""

from ..._lazy import lazy_exports

_EXPORTS = {
    "IGNORE_INDEX": "...segmentation.losses",
    "BoundaryDataset": ".dataset",
    "BoundaryItem": ".sources",
    "annotation_to_boundary": ".targets",
    "bsds_items": ".sources",
    "combine_annotators": ".targets",
    "decode_rle": ".decoding",
    "folder_items": ".sources",
    "hf_items": ".sources",
    "label_image_to_label_map": ".decoding",
    "load_bsds_label_maps": ".decoding",
    "load_label_map_file": ".decoding",
    "masks_to_label_map": ".targets",
    "transform_sample": ".geometry",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)

"""subobject_vlm: subobject-level image tokenization (DirectSAM + EPOC) for Hugging Face VLMs."""

__version__ = "0.1.0"

from .segmentation import epoc, merge_regions, relabel_by_area  # noqa: E402

__all__ = ["__version__", "epoc", "merge_regions", "relabel_by_area"]

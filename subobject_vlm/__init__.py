"""subobject_vlm: subobject-level image tokenization (DirectSAM + EPOC) for Hugging Face VLMs."""

__version__ = "0.1.0"

from .image_processing_subobject import SubobjectImageProcessor  # noqa: E402
from .segmentation import epoc, merge_regions, relabel_by_area  # noqa: E402

__all__ = ["SubobjectImageProcessor", "__version__", "epoc", "merge_regions", "relabel_by_area"]

"""subobject_vlm: subobject-level image tokenization (DirectSAM + EPOC) for Hugging Face VLMs.

Importing the package registers its classes with the transformers Auto classes (AutoConfig,
AutoImageProcessor, AutoProcessor, AutoModel, AutoModelForImageTextToText, AutoModelForSemanticSegmentation)
as soon as transformers is loaded: at once if it already is, else right after your first ``import
transformers`` (``_auto.py`` says why and how). Everything else is imported on first use, so ``from subobject_vlm
import epoc`` needs numpy and OpenCV only, and ``subobject-vlm --help`` starts without torch.
"""

from __future__ import annotations

from ._auto import register_auto_classes, register_when_transformers_loads
from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "EdgeNetConfig": ".segmentation.edgenet",
    "EdgeNetForBoundaryDetection": ".segmentation.edgenet",
    "MaskPooledEmbedding": ".embedding",
    "PixelFeaturesConfig": ".modeling_pixel_features",
    "PixelFeaturesModel": ".modeling_pixel_features",
    "SegmentationSettings": ".segmentation.settings",
    "SubobjectImageProcessor": ".image_processing_subobject",
    "SubobjectLlavaConfig": ".configuration_subobject_llava",
    "SubobjectLlavaForConditionalGeneration": ".modeling_subobject_llava",
    "SubobjectLlavaModel": ".modeling_subobject_llava",
    "SubobjectLlavaProcessor": ".processing_subobject_llava",
    "epoc": ".segmentation.epoc",
    "mask_pool": ".embedding",
    "merge_regions": ".segmentation.regions",
    "num_image_placeholders": ".configuration_subobject_llava",
    "region_boxes": ".embedding",
    "region_shapes": ".embedding",
    "relabel_by_area": ".segmentation.regions",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

register_when_transformers_loads()

__all__ = ["__version__", "register_auto_classes", *_EXPORTS]

"""subobject_vlm: subobject-level image tokenization (DirectSAM + EPOC) for Hugging Face VLMs.

Importing the package registers its classes with the transformers Auto classes (AutoConfig,
AutoImageProcessor, AutoProcessor, AutoModel, AutoModelForImageTextToText, AutoModelForSemanticSegmentation).
"""

__version__ = "0.1.0"

from .configuration_subobject_llava import SubobjectLlavaConfig, num_image_placeholders  # noqa: E402
from .embedding import MaskPooledEmbedding, mask_pool, region_boxes, region_shapes  # noqa: E402
from .image_processing_subobject import SubobjectImageProcessor  # noqa: E402
from .modeling_pixel_features import PixelFeaturesConfig, PixelFeaturesModel  # noqa: E402
from .modeling_subobject_llava import (  # noqa: E402
    SubobjectLlavaForConditionalGeneration,
    SubobjectLlavaModel,
)
from .processing_subobject_llava import SubobjectLlavaProcessor  # noqa: E402
from .segmentation import (  # noqa: E402
    EdgeNetConfig,
    EdgeNetForBoundaryDetection,
    epoc,
    merge_regions,
    relabel_by_area,
)

__all__ = [
    "EdgeNetConfig",
    "EdgeNetForBoundaryDetection",
    "MaskPooledEmbedding",
    "PixelFeaturesConfig",
    "PixelFeaturesModel",
    "SubobjectImageProcessor",
    "SubobjectLlavaConfig",
    "SubobjectLlavaForConditionalGeneration",
    "SubobjectLlavaModel",
    "SubobjectLlavaProcessor",
    "__version__",
    "epoc",
    "mask_pool",
    "merge_regions",
    "num_image_placeholders",
    "region_boxes",
    "region_shapes",
    "relabel_by_area",
]

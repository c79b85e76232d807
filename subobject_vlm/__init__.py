"""subobject_vlm: subobject-level image tokenization (DirectSAM + EPOC) for Hugging Face VLMs.

Importing the package registers its classes with the transformers Auto classes (AutoConfig,
AutoImageProcessor, AutoProcessor, AutoModel, AutoModelForImageTextToText, AutoModelForSemanticSegmentation)
as soon as transformers is loaded: at once if it already is, else right after your first ``import
transformers``. Everything else is imported on first use, so ``from subobject_vlm import epoc`` needs numpy and
OpenCV only, and ``subobject-vlm --help`` starts without torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings

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

# Modules whose import registers a class with a transformers Auto class (each registers itself at import).
_AUTO_REGISTERED = (
    ".configuration_subobject_llava",
    ".modeling_pixel_features",
    ".segmentation.edgenet",
    ".image_processing_subobject",
    ".processing_subobject_llava",
    ".modeling_subobject_llava",
)


def register_auto_classes() -> None:
    """Register every class of the package with the transformers Auto classes (idempotent).

    Each module of ``_AUTO_REGISTERED`` also calls this on its last line, so that importing any one of them (the
    usual first importer of transformers) registers them all.
    """
    for module in _AUTO_REGISTERED:
        importlib.import_module(module, __name__)


def _registered_module_initializing() -> bool:
    """Whether one of ``_AUTO_REGISTERED`` is half imported (it will register everything on its last line)."""
    for module in _AUTO_REGISTERED:
        loaded = sys.modules.get(importlib.util.resolve_name(module, __name__))
        if loaded is not None and getattr(getattr(loaded, "__spec__", None), "_initializing", False):
            return True
    return False


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Runs ``register_auto_classes`` right after the ``transformers`` package is first imported."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)  # once; and the lookup below must not come back here
        spec = importlib.util.find_spec("transformers")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module) -> None:
            exec_module(module)
            if _registered_module_initializing():
                return  # e.g. transformers imported by configuration_subobject_llava's first lines
            try:
                register_auto_classes()
            except Exception as error:  # noqa: BLE001 - say so, but never break `import transformers`
                warnings.warn(
                    f"subobject_vlm could not register with the transformers Auto classes: {error!r}",
                    stacklevel=2,
                )

        spec.loader.exec_module = exec_then_register
        return spec


if "transformers" in sys.modules:
    register_auto_classes()
elif not any(isinstance(finder, _RegisterAfterTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())

__all__ = [
    "EdgeNetConfig",
    "EdgeNetForBoundaryDetection",
    "MaskPooledEmbedding",
    "PixelFeaturesConfig",
    "PixelFeaturesModel",
    "SegmentationSettings",
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
    "register_auto_classes",
    "relabel_by_area",
]

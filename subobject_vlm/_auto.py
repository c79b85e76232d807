"""The package's classes in the transformers Auto classes: the one place that registers them.

After ``import subobject_vlm``, ``AutoConfig``, ``AutoImageProcessor``, ``AutoProcessor``, ``AutoModel``,
``AutoModelForImageTextToText`` and ``AutoModelForSemanticSegmentation`` ``.from_pretrained(saved_dir)`` return
our classes. Registering needs the classes, and so torch and transformers' Llava code: measured on 2 shared CPU
cores, ``import subobject_vlm; import transformers`` with registration takes 8.5-9.4 s, ``import transformers``
alone 0.9-1.9 s, ``import subobject_vlm`` alone 0.08 s (2.4 ms in ``-X importtime``) and ``subobject-vlm --help``
0.18 s. So registering at ``import subobject_vlm`` would make ``--help`` and every light use (``epoc``, the
settings) pay seconds for transformers they never load. Hence :func:`register_when_transformers_loads`: at once
when transformers is loaded already, else through one import hook (:class:`_RegisterWhenTransformersLoads`, the
package's only one) that registers right after transformers has loaded, or, when a module of ours imported it,
right after that module has finished (registering mid-way would import it half-initialized). The hook leaves
``sys.meta_path`` once it has registered. No module registers anything itself.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings

_PACKAGE = __name__.rpartition(".")[0]


def register_auto_classes() -> None:
    """Register every class of the package with the transformers Auto classes (idempotent; loads torch and
    transformers)."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageTextToText,
        AutoModelForSemanticSegmentation,
        AutoProcessor,
    )

    from .configuration_subobject_llava import SubobjectLlavaConfig
    from .image_processing_subobject import SubobjectImageProcessor
    from .modeling_pixel_features import PixelFeaturesConfig, PixelFeaturesModel
    from .modeling_subobject_llava import SubobjectLlavaForConditionalGeneration, SubobjectLlavaModel
    from .processing_subobject_llava import SubobjectLlavaProcessor
    from .segmentation.edgenet import EdgeNetConfig, EdgeNetForBoundaryDetection

    for config in (SubobjectLlavaConfig, PixelFeaturesConfig, EdgeNetConfig):
        AutoConfig.register(config.model_type, config, exist_ok=True)
    AutoModel.register(PixelFeaturesConfig, PixelFeaturesModel, exist_ok=True)
    AutoModel.register(SubobjectLlavaConfig, SubobjectLlavaModel, exist_ok=True)
    AutoModelForImageTextToText.register(
        SubobjectLlavaConfig, SubobjectLlavaForConditionalGeneration, exist_ok=True
    )
    AutoModelForSemanticSegmentation.register(EdgeNetConfig, EdgeNetForBoundaryDetection, exist_ok=True)
    AutoImageProcessor.register(
        SubobjectLlavaConfig, image_processor_classes={"torchvision": SubobjectImageProcessor}, exist_ok=True
    )
    AutoProcessor.register(SubobjectLlavaConfig, SubobjectLlavaProcessor, exist_ok=True)


class _RegisterWhenTransformersLoads(importlib.abc.MetaPathFinder):
    """Watches the loading of ``transformers`` and of the package's own modules; registers once transformers is
    loaded and no module of ours is mid-way through its code, then leaves ``sys.meta_path``."""

    def __init__(self) -> None:
        self.loading = 0  # modules of this package whose code is running

    def find_spec(self, fullname, path=None, target=None):
        ours = fullname.startswith(f"{_PACKAGE}.")
        if fullname != "transformers" and not ours:
            return None
        spec = self._spec_from_other_finders(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module) -> None:
            self.loading += ours
            try:
                exec_module(module)
            finally:
                self.loading -= ours
            if self.loading == 0 and "transformers" in sys.modules and self in sys.meta_path:
                self._register()

        spec.loader.exec_module = exec_then_register
        return spec

    def _spec_from_other_finders(self, fullname, path, target):
        for finder in list(sys.meta_path):
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    return spec
        return None

    def _register(self) -> None:
        sys.meta_path.remove(self)  # once, and the imports below must not come back here
        try:
            register_auto_classes()
        except Exception as error:  # noqa: BLE001 - say so, but never break the import that brought us here
            warnings.warn(
                f"subobject_vlm could not register with the transformers Auto classes: {error!r}",
                stacklevel=3,
            )


def register_when_transformers_loads() -> None:
    """Register now if transformers is loaded, else right after it loads (see the module docstring)."""
    if "transformers" in sys.modules:
        register_auto_classes()
    elif not any(isinstance(finder, _RegisterWhenTransformersLoads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenTransformersLoads())


__all__ = ["register_auto_classes", "register_when_transformers_loads"]

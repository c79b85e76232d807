"""Boundary models (DirectSAM SegFormers, EdgeNet, classical gradients), baselines, and boundary -> label map post-processing."""

from .._lazy import lazy_exports

_EXPORTS = {
    "BASELINES": ".registry",
    "BoundaryModel": ".api",
    "LabelMapTokenizer": ".api",
    "load_tokenizer": ".api",
    "register_boundary_model": ".registry",
    "register_label_map_tokenizer": ".registry",
    "register_tokenizer_family": ".registry",
    "registered_names": ".registry",
    "tokenizer_kind": ".registry",
    "DEFAULT_WEIGHTS_DIR": ".registry",
    "BoundaryPredictor": ".predictor",
    "EdgeNetConfig": ".edgenet",
    "EdgeNetForBoundaryDetection": ".edgenet",
    "GradientBoundaryModel": ".gradient",
    "as_boundary_probs": ".epoc",
    "epoc": ".epoc",
    "felzenszwalb": ".baselines",
    "gradient_boundary_probs": ".gradient",
    "has_embedded_weights": ".registry",
    "load_boundary_model": ".api",
    "merge_regions": ".regions",
    "patch_grid": ".baselines",
    "region_adjacency": ".regions",
    "relabel_by_area": ".regions",
    "run_baseline": ".baselines",
    "SegmentationSettings": ".settings",
    "Segmenter": ".segmenter",
    "segment": ".api",
    "segment_image": ".api",
    "slic": ".baselines",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)

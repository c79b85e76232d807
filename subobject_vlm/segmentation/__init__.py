"""Boundary models (DirectSAM, EdgeNet, classical gradients), baselines, and boundary -> label map post-processing."""

from .api import (
    DEFAULT_WEIGHTS_DIR,
    BoundaryModel,
    has_embedded_weights,
    load_boundary_model,
    segment,
    segment_image,
)
from .baselines import felzenszwalb, patch_grid, run_baseline, slic
from .directsam import DirectSAM
from .edgenet import EdgeNetConfig, EdgeNetForBoundaryDetection
from .epoc import as_boundary_probs, epoc
from .gradient import GradientBoundaryModel, gradient_boundary_probs
from .regions import merge_regions, region_adjacency, relabel_by_area
from .settings import BASELINES, SegmentationSettings

__all__ = [
    "BASELINES",
    "BoundaryModel",
    "DEFAULT_WEIGHTS_DIR",
    "DirectSAM",
    "EdgeNetConfig",
    "EdgeNetForBoundaryDetection",
    "GradientBoundaryModel",
    "as_boundary_probs",
    "epoc",
    "felzenszwalb",
    "gradient_boundary_probs",
    "has_embedded_weights",
    "load_boundary_model",
    "merge_regions",
    "patch_grid",
    "region_adjacency",
    "relabel_by_area",
    "run_baseline",
    "SegmentationSettings",
    "segment",
    "segment_image",
    "slic",
]

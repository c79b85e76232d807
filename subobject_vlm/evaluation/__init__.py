"""BSDS500 evaluation: the boundary benchmark (ODS / OIS / AP) and token metrics of label maps."""

from .boundary_benchmark import (
    benchmark_boundaries,
    boundary_counts,
    correspond_pixels,
    evaluate_boundary_image,
    maximum_matching,
    non_maximum_suppression,
    summarize_boundary_counts,
    thin,
)
from .bsds_eval import eval_bsds
from .region_metrics import (
    achievable_segmentation_accuracy,
    boundary_precision,
    boundary_recall,
    num_tokens,
    segmentation_boundaries,
    segmentation_metrics,
    undersegmentation_error,
)

__all__ = [
    "achievable_segmentation_accuracy",
    "benchmark_boundaries",
    "boundary_counts",
    "boundary_precision",
    "boundary_recall",
    "correspond_pixels",
    "eval_bsds",
    "evaluate_boundary_image",
    "maximum_matching",
    "non_maximum_suppression",
    "num_tokens",
    "segmentation_boundaries",
    "segmentation_metrics",
    "summarize_boundary_counts",
    "thin",
    "undersegmentation_error",
]

"""BSDS500 evaluation: the boundary benchmark (ODS / OIS / AP) and token metrics of label maps."""

from .._lazy import lazy_exports

_EXPORTS = {
    "achievable_segmentation_accuracy": ".region_metrics",
    "benchmark_boundaries": ".boundary_benchmark",
    "boundary_counts": ".boundary_benchmark",
    "boundary_precision": ".region_metrics",
    "boundary_recall": ".region_metrics",
    "correspond_pixels": ".matching",
    "eval_bsds": ".bsds_eval",
    "evaluate_boundary_image": ".boundary_benchmark",
    "maximum_matching": ".matching",
    "non_maximum_suppression": ".edges",
    "num_tokens": ".region_metrics",
    "segmentation_boundaries": ".region_metrics",
    "segmentation_metrics": ".region_metrics",
    "summarize_boundary_counts": ".boundary_benchmark",
    "thin": ".edges",
    "undersegmentation_error": ".region_metrics",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)

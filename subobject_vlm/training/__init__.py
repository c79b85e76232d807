"""Training: boundary models (DirectSAM SegFormers, EdgeNet) (``train_boundary``) and their data."""

from .._lazy import lazy_exports

_EXPORTS = {
    "BoundaryDataset": ".boundary_data",
    "BoundaryTrainingConfig": ".boundary_config",
    "ConfigError": ".config",
    "annotation_to_boundary": ".boundary_data",
    "bsds_items": ".boundary_data",
    "combine_annotators": ".boundary_data",
    "folder_items": ".boundary_data",
    "hf_items": ".boundary_data",
    "load_config": ".boundary_config",
    "masks_to_label_map": ".boundary_data",
    "train_boundary": ".train_boundary",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)

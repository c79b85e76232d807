"""Training: boundary models (DirectSAM SegFormers, EdgeNet) (``train_boundary``) and their data."""

from .._lazy import lazy_exports

_EXPORTS = {
    "BoundaryDataset": ".boundary_data.dataset",
    "BoundaryTrainingConfig": ".boundary_config",
    "ConfigError": ".config",
    "annotation_to_boundary": ".boundary_data.targets",
    "bsds_items": ".boundary_data.sources",
    "combine_annotators": ".boundary_data.targets",
    "folder_items": ".boundary_data.sources",
    "hf_items": ".boundary_data.sources",
    "load_config": ".boundary_config",
    "masks_to_label_map": ".boundary_data.targets",
    "train_boundary": ".train_boundary",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)

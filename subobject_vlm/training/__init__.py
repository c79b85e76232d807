"""Training: DirectSAM boundary models (``train_boundary``) and their data."""

from .boundary_data import (
    BoundaryDataset,
    annotation_to_boundary,
    bsds_items,
    combine_annotators,
    folder_items,
    hf_items,
    masks_to_label_map,
)
from .train_boundary import BoundaryTrainingConfig, ConfigError, load_config, train_boundary

__all__ = [
    "BoundaryDataset",
    "BoundaryTrainingConfig",
    "ConfigError",
    "annotation_to_boundary",
    "bsds_items",
    "combine_annotators",
    "folder_items",
    "hf_items",
    "load_config",
    "masks_to_label_map",
    "train_boundary",
]

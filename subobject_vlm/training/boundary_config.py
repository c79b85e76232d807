"""The boundary-training config (``subobject-vlm train-boundary --config X``): typed sections, keys checked by
name. See ``training/train_boundary.py`` for the layout of the YAML file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..segmentation.losses import CLASS_BALANCE
from .boundary_data import BoundaryItem, bsds_items, folder_items, hf_items
from .config import ConfigError, build_dataclass, check_trainer_section, load_yaml_config

SEGFORMER_SIZES: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}
ARCHITECTURES = ("segformer", "edgenet")
SOURCE_KINDS = ("bsds", "folders", "hf")


def _config_class(architecture: str):
    if architecture == "edgenet":
        from ..segmentation.edgenet import EdgeNetConfig

        return EdgeNetConfig
    from transformers import SegformerConfig

    return SegformerConfig


@dataclass
class ModelSection:
    """``architecture``: ``segformer`` (DirectSAM) or ``edgenet`` (``EdgeNetForBoundaryDetection``, a small FCN
    that trains from scratch on a CPU). ``pretrained``: a hub id or local folder to fine-tune; ``None`` builds
    the model from scratch (``size`` b0-b5 for SegFormer). ``overrides``: fields of the architecture's config
    (``SegformerConfig``, e.g. ``hidden_sizes``; ``EdgeNetConfig``, e.g. ``widths``) applied on top."""

    architecture: str = "segformer"
    pretrained: str | None = None
    size: str = "b0"
    overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"model.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.architecture == "segformer" and self.pretrained is None and self.size not in SEGFORMER_SIZES:
            raise ConfigError(f"model.size must be one of {list(SEGFORMER_SIZES)}, got {self.size!r}")
        known = _config_class(self.architecture)().to_dict()
        unknown = sorted(set(self.overrides) - set(known))
        if unknown:
            raise ConfigError(
                f"model.overrides: unknown {_config_class(self.architecture).__name__} fields {unknown}"
            )


@dataclass
class DataSource:
    """One data source. ``bsds``: ``root`` (default: found automatically), ``split``; ``folders``: ``images``
    and ``labels`` folders (label-map PNGs matched by stem); ``hf``: ``path`` (``load_from_disk`` folder or a
    dataset name), ``split``, ``image_column`` and one of ``masks_column`` / ``label_map_column``."""

    kind: str
    root: str | None = None
    split: str = "train"
    images: str | None = None
    labels: str | None = None
    path: str | None = None
    image_column: str = "image"
    masks_column: str | None = None
    label_map_column: str | None = None
    limit: int | None = None

    def validate(self, where: str) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ConfigError(f"{where}.kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{where}.limit must be >= 1, got {self.limit}")
        if self.kind == "folders":
            for key in ("images", "labels"):
                folder = getattr(self, key)
                if folder is None:
                    raise ConfigError(f"{where}: kind 'folders' needs {key!r}")
                if not Path(folder).is_dir():
                    raise ConfigError(f"{where}.{key}: data folder {folder} does not exist")
        if self.kind == "hf":
            if self.path is None:
                raise ConfigError(f"{where}: kind 'hf' needs 'path'")
            if (self.masks_column is None) == (self.label_map_column is None):
                raise ConfigError(f"{where}: kind 'hf' needs exactly one of masks_column / label_map_column")
        if self.kind == "bsds":
            from ..data.bsds import find_bsds_root

            try:
                root = find_bsds_root(self.root)
            except FileNotFoundError as error:
                raise ConfigError(f"{where}: {error}") from None
            if not (root / "groundTruth" / self.split).is_dir():
                raise ConfigError(f"{where}: BSDS split {self.split!r} is not in {root}")

    def items(self) -> list[BoundaryItem]:
        if self.kind == "bsds":
            return bsds_items(self.root, self.split, self.limit)
        if self.kind == "folders":
            return folder_items(self.images, self.labels, self.limit)
        import datasets

        if Path(self.path).is_dir() and (Path(self.path) / "dataset_info.json").exists():
            dataset = datasets.load_from_disk(self.path)
        elif Path(self.path).is_dir() and (Path(self.path) / "dataset_dict.json").exists():
            dataset = datasets.load_from_disk(self.path)[self.split]
        else:
            dataset = datasets.load_dataset(self.path, split=self.split)
        return hf_items(dataset, self.image_column, self.masks_column, self.label_map_column, self.limit)


@dataclass
class DataSection:
    train: list[DataSource]
    val: list[DataSource] = field(default_factory=list)
    resolution: int = 512
    crop_size: int | None = None
    thickness: int = 3
    annotators: str = "union"
    scale_range: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True
    color_jitter: float = 0.3

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("data.train needs at least one source")
        if self.resolution < 32 or self.resolution % 32:
            raise ConfigError(f"data.resolution must be a multiple of 32 (>= 32), got {self.resolution}")
        if self.crop_size is not None and (self.crop_size < 32 or self.crop_size % 32):
            raise ConfigError(f"data.crop_size must be a multiple of 32 (>= 32), got {self.crop_size}")
        if self.thickness < 1:
            raise ConfigError(f"data.thickness must be >= 1, got {self.thickness}")
        if self.annotators not in ("union", "soft"):
            raise ConfigError(f"data.annotators must be 'union' or 'soft', got {self.annotators!r}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ConfigError(
                f"data.scale_range must be [low, high] with 0 < low <= high, got {self.scale_range}"
            )
        if not 0 <= self.color_jitter < 1:
            raise ConfigError(f"data.color_jitter must be in [0, 1), got {self.color_jitter}")
        for split in ("train", "val"):
            for i, source in enumerate(getattr(self, split)):
                source.validate(f"data.{split}[{i}]")


@dataclass
class LossSection:
    """``class_balance``: ``none`` (plain BCE), ``pos_weight`` (positives weighted by the batch's
    negative/positive ratio, clipped to ``max_pos_weight``), ``hed`` (HED's balanced BCE) or ``rcf`` (RCF's:
    targets ``>= positive_threshold`` are positives, 0 are negatives, in between ignored; balanced, negatives
    x1.1). ``side_weight``: weight of the deep-supervision losses of models with side outputs (EdgeNet)."""

    class_balance: str = "none"
    max_pos_weight: float = 10.0
    positive_threshold: float = 0.3
    side_weight: float = 0.5

    def validate(self) -> None:
        if self.class_balance not in CLASS_BALANCE:
            raise ConfigError(
                f"loss.class_balance must be one of {CLASS_BALANCE}, got {self.class_balance!r}"
            )
        if self.max_pos_weight < 1:
            raise ConfigError(f"loss.max_pos_weight must be >= 1, got {self.max_pos_weight}")
        if not 0 < self.positive_threshold <= 1:
            raise ConfigError(f"loss.positive_threshold must be in (0, 1], got {self.positive_threshold}")
        if self.side_weight < 0:
            raise ConfigError(f"loss.side_weight must be >= 0, got {self.side_weight}")


@dataclass
class BoundaryTrainingConfig:
    output_dir: str
    data: DataSection
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossSection = field(default_factory=LossSection)
    training: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    torch_threads: int | None = None
    resume_from_checkpoint: bool | str | None = None

    def validate(self) -> None:

        self.model.validate()
        self.data.validate()
        self.loss.validate()
        check_trainer_section(self.training, self.torch_threads)


def _convert(cls, name: str, value: Any, path: str) -> Any:
    """Typed values of a boundary-training config: nested sections and lists of sources."""
    nested = {"data": DataSection, "model": ModelSection, "loss": LossSection}
    if cls is BoundaryTrainingConfig and name in nested:
        return build_dataclass(nested[name], value or {}, path, _convert)
    if cls is DataSection and name in ("train", "val"):
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list of sources")
        return [
            build_dataclass(DataSource, source, f"{path}[{i}]", _convert) for i, source in enumerate(value)
        ]
    return value  # scalars, lists and scale_range: checked against the field types by build_dataclass


def load_config(config: str | os.PathLike | dict) -> BoundaryTrainingConfig:
    """A YAML file or a dict -> validated ``BoundaryTrainingConfig`` (``ConfigError`` on any problem)."""
    return load_yaml_config(config, BoundaryTrainingConfig, _convert)


__all__ = [
    "ARCHITECTURES",
    "BoundaryTrainingConfig",
    "ConfigError",
    "DataSection",
    "DataSource",
    "LossSection",
    "ModelSection",
    "SEGFORMER_SIZES",
    "SOURCE_KINDS",
    "load_config",
]

"""The boundary-training config (``subobject-vlm train-boundary --config X``): typed sections, keys checked by
name. See ``training/train_boundary.py`` for the layout of the YAML file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..segmentation.losses import CLASS_BALANCE
from .boundary_data.sources import BoundaryItem, bsds_items, folder_items, hf_items
from .config import (
    MAX_SEED,
    ConfigError,
    bounded,
    build_dataclass,
    check_config_overrides,
    check_trainer_section,
    load_yaml_config,
)

SEGFORMER_SIZES: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}
SEGFORMER_STAGE_KEYS = (  # one value per encoder block
    "depths",
    "sr_ratios",
    "hidden_sizes",
    "patch_sizes",
    "strides",
    "num_attention_heads",
    "mlp_ratios",
)
BOUNDARY_LABELS = {"num_labels": 1, "id2label": {0: "boundary"}, "label2id": {"boundary": 0}}
MAX_RESOLUTION = 4096  # training crops are resolution^2 per image (DirectSAM's largest public model: 1800 px)
MAX_SCALE = 8  # the largest zoom of scale_range (an image is scaled to scale x resolution before its crop)
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
        check_config_overrides(self.overrides, _config_class(self.architecture), "model.overrides")
        if self.architecture == "segformer":
            self._check_segformer_stages()
        if self.pretrained is None:
            self._check_buildable()

    def scratch_config(self):
        """The config of a model built from scratch: the architecture's (SegFormer: of ``size``) with the
        overrides, one boundary label."""
        if self.architecture == "edgenet":
            return _config_class("edgenet")(**self.overrides)
        return _config_class("segformer")(
            **{**SEGFORMER_SIZES[self.size], **self.overrides, **BOUNDARY_LABELS}
        )

    def _check_segformer_stages(self) -> None:
        """Every per-block list holds ``num_encoder_blocks`` positive integers, each hidden size a multiple of
        its block's attention heads (transformers' own errors name no key: an IndexError at build time)."""
        from transformers import SegformerConfig

        size = {} if self.pretrained is not None else SEGFORMER_SIZES[self.size]
        merged = {**SegformerConfig().to_dict(), **size, **self.overrides}
        blocks = merged["num_encoder_blocks"]
        if blocks < 1:
            raise ConfigError(f"model.overrides.num_encoder_blocks must be >= 1, got {blocks}")
        for key in SEGFORMER_STAGE_KEYS:
            values = list(merged[key])
            if key not in self.overrides and len(values) != blocks:
                raise ConfigError(
                    f"model.overrides.num_encoder_blocks is {blocks} but {key} has {len(values)} values "
                    f"{values}: override {key} too, one value per encoder block"
                )
            if len(values) != blocks or min(values) < 1:
                raise ConfigError(
                    f"model.overrides.{key} must be {blocks} positive integers (one per encoder block, "
                    f"num_encoder_blocks={blocks}), got {values!r}"
                )
        for i, (hidden, heads) in enumerate(zip(merged["hidden_sizes"], merged["num_attention_heads"])):
            if hidden % heads:
                raise ConfigError(
                    f"model.overrides: hidden_sizes[{i}] = {hidden} is not a multiple of "
                    f"num_attention_heads[{i}] = {heads}"
                )

    def _check_buildable(self) -> None:
        """Build the model from scratch on the meta device (no memory, no weights): any other inconsistency of
        the overrides is one line here, not a traceback after the data is loaded."""
        import torch
        from transformers import AutoModelForSemanticSegmentation

        try:
            with torch.device("meta"):
                AutoModelForSemanticSegmentation.from_config(self.scratch_config())
        except Exception as error:  # noqa: BLE001 - whatever the library raises, one line naming the section
            message = " ".join(str(error).split())
            raise ConfigError(f"model.overrides: cannot build the model from them ({message})") from None


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
    limit: int | None = bounded(None, 1)

    def validate(self, where: str) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ConfigError(f"{where}.kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
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
    resolution: int = bounded(512, 32, MAX_RESOLUTION, multiple_of=32)
    crop_size: int | None = bounded(None, 32, MAX_RESOLUTION, multiple_of=32)
    thickness: int = bounded(3, 1, 64)
    annotators: str = "union"
    scale_range: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True
    color_jitter: float = bounded(0.3, 0, 1, open_high=True)

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("data.train needs at least one source")
        if self.annotators not in ("union", "soft"):
            raise ConfigError(f"data.annotators must be 'union' or 'soft', got {self.annotators!r}")
        low, high = self.scale_range
        if not 0 < low <= high <= MAX_SCALE:
            raise ConfigError(
                f"data.scale_range must be [low, high] with 0 < low <= high <= {MAX_SCALE}, got {self.scale_range}"
            )
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
    max_pos_weight: float = bounded(10.0, 1)
    positive_threshold: float = bounded(0.3, 0, 1, open_low=True)
    side_weight: float = bounded(0.5, 0)

    def validate(self) -> None:
        if self.class_balance not in CLASS_BALANCE:
            raise ConfigError(
                f"loss.class_balance must be one of {CLASS_BALANCE}, got {self.class_balance!r}"
            )


@dataclass
class BoundaryTrainingConfig:
    output_dir: str
    data: DataSection
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossSection = field(default_factory=LossSection)
    training: dict[str, Any] = field(default_factory=dict)
    seed: int = bounded(0, 0, MAX_SEED)
    torch_threads: int | None = bounded(None, 1)
    resume_from_checkpoint: bool | str | None = None

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.loss.validate()
        check_trainer_section(self.training)


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
    "BOUNDARY_LABELS",
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

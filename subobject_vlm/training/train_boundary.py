"""Train a DirectSAM boundary model (a one-label SegFormer, or the small EdgeNet FCN) with the Hugging Face ``Trainer``, from a YAML config.

>>> output_dir = train_boundary("configs/boundary_bsds_b0.yaml")
>>> model = SegformerForSemanticSegmentation.from_pretrained(output_dir)   # or DirectSAM.from_pretrained(...)

From a shell: ``python -m subobject_vlm.training.train_boundary --config X`` (or ``torchrun --nproc_per_node N
-m subobject_vlm.training.train_boundary --config X``; the Trainer handles DDP). The output
folder gets the final (or best, with ``load_best_model_at_end``) model as safetensors, its
``preprocessor_config.json`` (``SegformerImageProcessor`` at the training resolution), ``checkpoint-*``
folders, ``log_history.json`` and ``loss_curve.png``.

Config layout (every section is optional except ``output_dir`` and ``data.train``; unknown keys are errors)::

    output_dir: runs/boundary_bsds_b0
    seed: 0
    torch_threads: null            # torch.set_num_threads, e.g. 1 on a shared CPU
    resume_from_checkpoint: null   # true (latest checkpoint in output_dir), "auto" (if one exists) or a path
    model: {architecture: segformer, pretrained: null, size: b0, overrides: {}}   # or architecture: edgenet
    data:
      train: [{kind: bsds, split: train}]   # kinds: bsds (root, split), folders (images, labels),
      val: [{kind: bsds, split: val}]       #        hf (path, split, image_column, masks_column|label_map_column)
      resolution: 320              # scale 1 fits the longer image side to this
      crop_size: null              # random crops of this size (default: resolution)
      thickness: 2
      annotators: union            # union | soft (several annotators per image, BSDS)
      scale_range: [0.75, 1.5]
      hflip: true
      color_jitter: 0.3
    loss: {class_balance: none, max_pos_weight: 10.0, positive_threshold: 0.3, side_weight: 0.5}
                                   # class_balance: none | pos_weight | hed | rcf
    training: {max_steps: 4000, learning_rate: 1e-3, ...}   # any transformers.TrainingArguments field
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..evaluation.plots import plot_loss_curve
from ..segmentation.losses import CLASS_BALANCE, supervised_loss
from .boundary_data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BoundaryDataset,
    BoundaryItem,
    bsds_items,
    folder_items,
    hf_items,
)
from .config import (
    ConfigError,
    build_dataclass,
    check_trainer_section,
    load_yaml_config,
    make_training_arguments,
    resolve_resume,
)

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


# ------------------------------------------------------------------------------------------------ config


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
    """Typed values of a boundary-training config: nested sections, lists of sources, ``scale_range``."""
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
    if name == "scale_range":
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise ConfigError(f"{path} must be [low, high], got {value!r}")
        return (float(value[0]), float(value[1]))
    return value


def load_config(config: str | os.PathLike | dict) -> BoundaryTrainingConfig:
    """A YAML file or a dict -> validated ``BoundaryTrainingConfig`` (``ConfigError`` on any problem)."""
    return load_yaml_config(config, BoundaryTrainingConfig, _convert)


# ------------------------------------------------------------------------------------------ model + loss


def build_model(section: ModelSection):
    """A one-label boundary model (SegFormer or EdgeNet), from scratch or from a checkpoint."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    if section.architecture == "edgenet":
        from ..segmentation.edgenet import EdgeNetConfig, EdgeNetForBoundaryDetection

        if section.pretrained is None:
            return EdgeNetForBoundaryDetection(EdgeNetConfig(**section.overrides))
        return EdgeNetForBoundaryDetection.from_pretrained(
            section.pretrained, use_safetensors=True, **section.overrides
        )
    labels = {"num_labels": 1, "id2label": {0: "boundary"}, "label2id": {"boundary": 0}}
    if section.pretrained is None:
        config = SegformerConfig(**{**SEGFORMER_SIZES[section.size], **section.overrides, **labels})
        return SegformerForSemanticSegmentation(config)
    return SegformerForSemanticSegmentation.from_pretrained(
        section.pretrained, ignore_mismatched_sizes=True, use_safetensors=True, **section.overrides, **labels
    )


def _trainer_class():
    from transformers import Trainer

    class BoundaryTrainer(Trainer):
        """``Trainer`` whose loss is ``supervised_loss``: ``boundary_loss`` on the logits plus ``side_weight`` times
        it on each side output of models that have them (the model only sees ``pixel_values``); an EdgeNet's
        ``forward(labels=...)`` computes the same loss, with the options kept in its config."""

        loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides by the accumulation steps

        def __init__(self, *args, loss_section: LossSection, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_section = loss_section

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(pixel_values=inputs["pixel_values"])
            side_logits = getattr(outputs, "side_logits", None)  # deep supervision (EdgeNet)
            loss = supervised_loss(outputs.logits, side_logits, inputs["labels"], **asdict(self.loss_section))
            return (loss, outputs) if return_outputs else loss

        # transformers 5 saves SegFormer weights under their legacy names (as the public DirectSAM checkpoints)
        # but the Trainer reloads checkpoints with a plain ``load_state_dict``, which matches no key and silently
        # keeps the current weights. Load through ``from_pretrained``, which converts the names, instead.
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            _load_weights(model if model is not None else self.model, resume_from_checkpoint)

        def _load_best_model(self):
            _load_weights(self.model, self.state.best_model_checkpoint)

    return BoundaryTrainer


def _load_weights(model: torch.nn.Module, checkpoint: str | os.PathLike) -> None:
    """Copy the weights of a saved checkpoint folder into ``model`` (all keys must match)."""
    loaded = type(model).from_pretrained(str(checkpoint), use_safetensors=True)
    model.load_state_dict(loaded.state_dict(), strict=True)


# ------------------------------------------------------------------------------------------------ train


def _training_arguments(config: BoundaryTrainingConfig, has_val: bool):

    defaults: dict[str, Any] = {
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 6e-5 if config.model.pretrained else 1e-3,
        "weight_decay": 0.01,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0,
        "max_grad_norm": 1.0,
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 500,
        "save_total_limit": 2,
        "dataloader_num_workers": 0,
        "report_to": "none",
        "remove_unused_columns": False,
        "prediction_loss_only": True,
    }
    if has_val:
        defaults.update(eval_strategy="steps", eval_steps=500, metric_for_best_model="eval_loss")
    if not has_val and config.training.get("load_best_model_at_end"):
        raise ConfigError("training.load_best_model_at_end needs validation data (data.val)")
    return make_training_arguments(defaults, config.training, config.output_dir, config.seed)


def train_boundary(config: str | os.PathLike | dict) -> Path:
    """Train a boundary model as described by ``config`` (a YAML path or a dict); returns the output folder.

    Raises ``ConfigError`` (a ``ValueError``) with the offending key for a bad config, before any training.
    """
    from transformers import SegformerImageProcessor, set_seed

    config = load_config(config)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    data = config.data
    args = _training_arguments(config, has_val=bool(data.val))
    resume = resolve_resume(config.resume_from_checkpoint, config.output_dir)

    train_items = [item for source in data.train for item in source.items()]
    val_items = [item for source in data.val for item in source.items()]
    global_batch = (
        args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    )
    if args.max_steps <= 0:  # always count in steps: one (virtual) epoch covers the whole run
        args.max_steps = math.ceil(args.num_train_epochs * len(train_items) / global_batch)
    repeats = max(1, math.ceil(args.max_steps * global_batch / len(train_items)))
    common = {
        "thickness": data.thickness,
        "annotators": data.annotators,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
    }
    train_dataset = BoundaryDataset(
        train_items,
        data.resolution,
        augment=True,
        crop_size=data.crop_size,
        scale_range=data.scale_range,
        hflip=data.hflip,
        color_jitter=data.color_jitter,
        seed=config.seed,
        repeats=repeats,
        **common,
    )
    val_dataset = BoundaryDataset(val_items, data.resolution, **common) if val_items else None

    set_seed(config.seed)  # reproducible initialisation of a model built from scratch
    model = build_model(config.model)
    if hasattr(
        model.config, "loss"
    ):  # an EdgeNet keeps the loss it is trained with: forward(labels=) computes it
        model.config.loss = asdict(config.loss)
    processor = SegformerImageProcessor(
        size={"height": data.resolution, "width": data.resolution},
        do_reduce_labels=False,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=val_dataset,
        processing_class=processor,
        loss_section=config.loss,
    )
    trainer.train(resume_from_checkpoint=resume)
    output_dir = Path(args.output_dir)
    trainer.save_model(str(output_dir))  # final model, or the best one with load_best_model_at_end
    if trainer.is_world_process_zero():
        history = trainer.state.log_history
        (output_dir / "log_history.json").write_text(json.dumps(history, indent=1))
        plot_loss_curve(history, output_dir / "loss_curve.png")
    return output_dir


__all__ = [
    "SEGFORMER_SIZES",
    "BoundaryTrainingConfig",
    "ConfigError",
    "build_model",
    "load_config",
    "train_boundary",
]

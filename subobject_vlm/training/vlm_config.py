"""The VLM training config (``subobject-vlm train --config X``): typed sections, every key checked by name.

See ``training/train_vlm.py`` for the layout of the YAML file.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..devices import DTYPES
from .config import (
    MAX_SEED,
    Bounds,
    ConfigError,
    bounded,
    build_dataclass,
    check_config_overrides,
    check_trainer_section,
    check_type,
    load_yaml_config,
)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TRAINED_MODULES = ("multi_modal_projector", "image_boundary_embeddings")
SYNTHETIC_BOUNDS = {"num_images": Bounds(1), "size": Bounds(8, 4096), "seed": Bounds(0, MAX_SEED)}


@dataclass
class ModelSection:
    """Exactly one of ``pretrained``, ``text_model`` + ``vision_model``, or ``tiny``."""

    pretrained: str | None = None
    text_model: str | None = None
    vision_model: str | None = None
    tiny: bool = False
    config_overrides: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    chat_template: str | None = None
    train_vision_tower: bool = False

    def validate(self) -> None:
        built = self.text_model is not None or self.vision_model is not None
        if sum([self.pretrained is not None, built, bool(self.tiny)]) != 1:
            raise ConfigError(
                "model: set exactly one of 'pretrained', 'text_model' + 'vision_model', or 'tiny'"
            )
        if built and (self.text_model is None or self.vision_model is None):
            raise ConfigError("model: building a model needs both 'text_model' and 'vision_model'")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        from ..configuration_subobject_llava import SubobjectLlavaConfig

        check_config_overrides(self.config_overrides, SubobjectLlavaConfig, "model.config_overrides")


@dataclass
class LoraSection:
    r: int = bounded(16, 1)
    alpha: int = bounded(32, 1)
    dropout: float = bounded(0.05, 0, 1, open_high=True)
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    modules_to_save: list[str] = field(default_factory=list)
    """Extra modules trained in full, e.g. ``lm_head`` for a random tiny model (whose head is too weak to learn
    through adapters alone); the embedding and start/end vectors always are."""

    def validate(self) -> None:
        if not self.target_modules or not all(
            isinstance(t, str) and t.isidentifier() for t in self.target_modules
        ):
            raise ConfigError(
                f"lora.target_modules must be a list of module names, got {self.target_modules!r}"
            )


@dataclass
class DataSource:
    """``path`` (LLaVA .json/.jsonl, ``save_to_disk`` folder or dataset name) or ``synthetic`` options."""

    path: str | None = None
    image_folder: str | None = None
    split: str = "train"
    image_column: str = "image"
    conversations_column: str = "conversations"
    limit: int | None = bounded(None, 1)
    synthetic: dict[str, Any] | None = None

    def validate(self, where: str) -> None:
        if (self.path is None) == (self.synthetic is None):
            raise ConfigError(f"{where}: set exactly one of 'path' or 'synthetic'")
        if self.synthetic is not None:
            unknown = sorted(set(self.synthetic) - set(SYNTHETIC_BOUNDS))
            if unknown:
                raise ConfigError(
                    f"{where}.synthetic: unknown keys {unknown} (known: num_images, size, seed)"
                )
            for key, value in self.synthetic.items():
                check_type(value, int, f"{where}.synthetic.{key}")
                SYNTHETIC_BOUNDS[key].check(value, f"{where}.synthetic.{key}")
        if (
            self.path is not None
            and Path(self.path).suffix in (".json", ".jsonl")
            and not Path(self.path).is_file()
        ):
            raise ConfigError(f"{where}.path: conversation file {self.path} does not exist")
        if self.image_folder is not None and not Path(self.image_folder).is_dir():
            raise ConfigError(f"{where}.image_folder: {self.image_folder} is not a folder")


@dataclass
class DataSection:
    train: DataSource
    val: DataSource | None = None
    max_length: int | None = bounded(2048, 8)
    segment_batch_size: int = bounded(16, 1)
    num_proc: int | None = bounded(None, 1)
    precomputed: str | None = None
    """A ``subobject-vlm precompute`` output holding the label maps of the train (and val) images: training then
    reads them and never runs the boundary model."""

    def validate(self) -> None:
        self.train.validate("data.train")
        if self.val is not None:
            self.val.validate("data.val")
        if self.precomputed is not None and not (Path(self.precomputed) / "precompute.json").is_file():
            raise ConfigError(
                f"data.precomputed: {self.precomputed} has no precompute.json (run subobject-vlm precompute, "
                "and precompute-merge after a sharded run)"
            )


@dataclass
class VLMTrainingConfig:
    output_dir: str
    data: DataSection
    model: ModelSection = field(default_factory=ModelSection)
    image_processor: dict[str, Any] = field(default_factory=dict)
    lora: LoraSection = field(default_factory=LoraSection)
    training: dict[str, Any] = field(default_factory=dict)
    merge: bool = False
    seed: int = bounded(0, 0, MAX_SEED)
    torch_threads: int | None = bounded(None, 1)
    resume_from_checkpoint: bool | str | None = None

    def validate(self) -> None:
        from ..image_processing_subobject import SubobjectImageProcessor

        self.model.validate()
        self.lora.validate()
        self.data.validate()
        check_trainer_section(self.training)
        kwarg_types = typing.get_type_hints(SubobjectImageProcessor.valid_kwargs)
        bad = sorted(set(self.image_processor) - set(kwarg_types))
        if bad:
            raise ConfigError(f"image_processor: unknown SubobjectImageProcessor settings {bad}")
        for (
            key,
            value,
        ) in self.image_processor.items():  # None: the processor's default, as for every HF kwarg
            self.image_processor[key] = check_type(value, kwarg_types[key] | None, f"image_processor.{key}")
        settings = {key: value for key, value in self.image_processor.items() if value is not None}
        try:  # its own checks (sizes, EPOC options, tokenizer name): cheap, nothing is loaded
            SubobjectImageProcessor(**settings)
        except ValueError as error:
            raise ConfigError(f"image_processor: {error}") from None


_NESTED = {
    (VLMTrainingConfig, "model"): ModelSection,
    (VLMTrainingConfig, "lora"): LoraSection,
    (VLMTrainingConfig, "data"): DataSection,
    (DataSection, "train"): DataSource,
    (DataSection, "val"): DataSource,
}


def _convert(cls, name: str, value: Any, path: str) -> Any:
    """Typed values of a VLM training config: the nested sections."""
    nested = _NESTED.get((cls, name))
    if nested is not None and value is not None:
        return build_dataclass(nested, value, path, _convert)
    return value


def load_config(config: str | os.PathLike | dict) -> VLMTrainingConfig:
    """A YAML file or a dict -> validated ``VLMTrainingConfig`` (``ConfigError`` on any problem)."""
    return load_yaml_config(config, VLMTrainingConfig, _convert)


__all__ = [
    "ConfigError",
    "DataSection",
    "DataSource",
    "LORA_TARGETS",
    "LoraSection",
    "ModelSection",
    "TRAINED_MODULES",
    "VLMTrainingConfig",
    "load_config",
]
